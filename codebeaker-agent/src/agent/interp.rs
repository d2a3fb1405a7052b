//! Persistent interpreters: one python3 and one node per session, started on first use as
//! the command user, keeping their state across `run_code` requests.
//!
//! Each interpreter runs a driver script embedded in this binary (`driver.py`,
//! `driver.js`), reads requests on fd 3 and answers on fd 4, while its fds 1 and 2 are
//! pipes the agent reads, so output written at fd level (C extensions, subprocesses) is
//! captured. A run ends when the answer came *and* the run's end marker was read on both
//! output pipes. On timeout (or cancel) the interpreter is interrupted (SIGINT:
//! `KeyboardInterrupt`, state kept) and every process the run started beneath it is
//! killed (a fork bomb's copies included); if it has not answered within the request's
//! `grace_ms` (the operator's interrupt grace, as the host passes it down) it is killed
//! with all it started, and the next run starts a fresh interpreter (`state_reset`).
//! Output is awaited `drain_ms` after the answer (the markers normally follow at once).

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;

use crate::agent::process::{boot_ticks_now, clock_ticks_per_second, prepare_child, receiver, spawn_guest, KillScope};
use crate::agent::reaper::Exit;
use crate::agent::{instant_after, AgentConfig, Control, Outbox, Runtime};
use crate::protocol::{
    AgentMessage, CodeDone, CodeError, CodeLanguage, ErrorKind, ErrorReply, Frame, FrameKind, RichOutput,
    RunCodeRequest, Usage, MAX_DATA_CHUNK,
};

const PYTHON_DRIVER: &str = include_str!("driver.py");
const NODE_DRIVER: &str = include_str!("driver.js");

/// Longest answer line read from a driver (figures travel in it as base64).
const MAX_ANSWER_BYTES: u64 = 32 * 1024 * 1024;

static MARKER_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The session's interpreters, one slot per language.
pub(crate) struct Interpreters {
    python: Mutex<Option<Interpreter>>,
    node: Mutex<Option<Interpreter>>,
    python_path: String,
    node_path: String,
}

impl Interpreters {
    pub(crate) fn new(config: &AgentConfig) -> Interpreters {
        Interpreters {
            python: Mutex::new(None),
            node: Mutex::new(None),
            python_path: config.python.clone(),
            node_path: config.node.clone(),
        }
    }

    /// Kills every idle interpreter (running ones die with the agent).
    pub(crate) fn shutdown(&self) {
        for slot in [&self.python, &self.node] {
            if let Ok(mut slot) = slot.try_lock() {
                slot.take();
            }
        }
    }
}

/// One live interpreter.
struct Interpreter {
    pid: u32,
    /// Its end, from the agent's reaper.
    exit: oneshot::Receiver<Exit>,
    requests: pipe::Sender,
    answers: BufReader<pipe::Receiver>,
    output: mpsc::Receiver<(FrameKind, Vec<u8>)>,
}

impl Drop for Interpreter {
    /// A dropped interpreter's group goes at once (what escaped it was killed by the run
    /// that lost it, see [`KillScope`]).
    fn drop(&mut self) {
        // SAFETY: plain signal sends to our own child's group; a gone group gives ESRCH.
        unsafe {
            libc::killpg(self.pid as libc::pid_t, libc::SIGKILL);
            libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// Runs one request and sends its output and `code_done` (or an error).
pub(crate) async fn run(
    runtime: &Runtime,
    id: u64,
    request: RunCodeRequest,
    out: &Outbox,
    control: mpsc::Receiver<Control>,
) {
    let message = match execute(runtime, id, request, out, control).await {
        Ok(done) => AgentMessage::CodeDone(done),
        Err(reply) => AgentMessage::Error(reply),
    };
    super::reply_to(out, id, message).await;
}

async fn execute(
    runtime: &Runtime,
    id: u64,
    request: RunCodeRequest,
    out: &Outbox,
    mut control: mpsc::Receiver<Control>,
) -> Result<CodeDone, ErrorReply> {
    let interpreters = &runtime.interpreters;
    let slot = match request.language {
        CodeLanguage::Python => &interpreters.python,
        CodeLanguage::Javascript => &interpreters.node,
    };
    let mut slot = slot.lock().await;
    let marker = format!("\u{1e}codebeaker-end-{}-{}\u{1e}", id, MARKER_SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let line = serde_json::json!({ "id": id, "code": request.code, "marker": marker }).to_string() + "\n";
    // An interpreter that died between runs (guest code killed it) is replaced at once:
    // this run goes to a fresh one and says the state was lost.
    let mut replaced = false;
    let interpreter = loop {
        if slot.is_none() {
            *slot = Some(spawn(runtime, &request).await?);
        }
        let Some(interpreter) = slot.as_mut() else {
            return Err(ErrorReply::new(ErrorKind::Internal, "interpreter slot empty after start"));
        };
        // Killed but not yet exited counts as ended too: right after guest code killed it
        // (`kill -9 -1`), the run would otherwise go into a dying interpreter's pipe.
        let ended =
            !matches!(interpreter.exit.try_recv(), Err(oneshot::error::TryRecvError::Empty)) || dying(interpreter.pid);
        // Output a background child wrote between runs is not this run's.
        while interpreter.output.try_recv().is_ok() {}
        if !ended && interpreter.requests.write_all(line.as_bytes()).await.is_ok() {
            break interpreter;
        }
        if replaced {
            slot.take();
            return Ok(died("InterpreterExited", "the interpreter exited as soon as it started"));
        }
        slot.take();
        replaced = true;
    };
    let cpu_before = proc_cpu_ms(interpreter.pid);
    let reaper = &runtime.reaper;
    let since = boot_ticks_now();
    // What an interrupt kills: the run's own processes beneath the interpreter; what a
    // kill kills: the interpreter too.
    let interrupted = KillScope { root: interpreter.pid, spare_root: true, since };
    let whole = KillScope { spare_root: false, ..interrupted };
    let grace = Duration::from_millis(request.grace_ms);

    let mut streams = [Stream::new(&marker), Stream::new(&marker)];
    let mut answer: Option<Answer> = None;
    let mut answer_line = Vec::new();
    let deadline = instant_after(Duration::from_millis(request.timeout_ms));
    let mut kill_at: Option<Instant> = None;
    let mut marker_deadline: Option<Instant> = None;
    let mut timed_out = false;
    let outcome = loop {
        if answer.is_some() && streams.iter().all(|s| s.done) {
            break Outcome::Finished;
        }
        let wake = [Some(deadline).filter(|_| kill_at.is_none()), kill_at, marker_deadline].into_iter().flatten().min();
        tokio::select! {
            chunk = interpreter.output.recv() => match chunk {
                Some((kind, bytes)) => {
                    let stream = if kind == FrameKind::Stdout { &mut streams[0] } else { &mut streams[1] };
                    for forward in stream.feed(&bytes, request.output_cap) {
                        let _ = out.send(Frame::data(kind, id, forward, false)).await;
                    }
                }
                None => break Outcome::Died,
            },
            read = read_answer(&mut interpreter.answers, &mut answer_line), if answer.is_none() => match read {
                // Only the driver knows the id: a line user code wrote to fd 4 is not the answer.
                Ok(Some(parsed)) if parsed.id == Some(id) => {
                    answer = Some(parsed);
                    let markers_by = instant_after(Duration::from_millis(request.drain_ms));
                    marker_deadline = Some(kill_at.map_or(markers_by, |at| at.min(markers_by)));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break Outcome::Died,
            },
            item = control.recv() => if let (Some(Control::Cancel), None) = (item, kill_at) {
                kill_at = Some(instant_after(grace));
                interrupt(interpreter.pid);
                // One round: the interpreter may fork on until it takes the interrupt.
                interrupted.kill_until(reaper, Instant::now()).await;
            },
            () = sleep_until(wake) => {
                let now = Instant::now();
                if marker_deadline.is_some_and(|at| at <= now) {
                    break Outcome::Finished;
                }
                if kill_at.is_some_and(|at| at <= now) {
                    break Outcome::Killed;
                }
                if kill_at.is_none() && deadline <= now {
                    timed_out = true;
                    kill_at = Some(now + grace);
                    interrupt(interpreter.pid);
                    // One round: the interpreter may fork on until it takes the interrupt.
                    interrupted.kill_until(reaper, now).await;
                }
            }
        }
    };
    let usage = Usage {
        cpu_ms: proc_cpu_ms(interpreter.pid).saturating_sub(cpu_before),
        max_rss_kb: proc_peak_rss_kb(interpreter.pid),
        output_bytes: streams.iter().map(|s| s.total).sum(),
    };
    let truncated = streams.iter().any(|s| s.total > request.output_cap);
    let mut done = match outcome {
        Outcome::Finished => {
            if let Some(kill_at) = kill_at {
                // What the run forked between the interrupt and its answer goes too.
                interrupted.kill_until(reaper, kill_at).await;
            }
            let answer = answer.unwrap_or_default();
            CodeDone {
                error: answer.error,
                outputs: answer.outputs,
                result: answer.result,
                timed_out,
                state_reset: false,
                truncated,
                usage: None,
            }
        }
        Outcome::Killed => {
            whole.kill(reaper).await;
            slot.take();
            let name = if timed_out { "TimeoutError" } else { "KeyboardInterrupt" };
            let message = format!(
                "the interpreter did not stop within {} ms of being interrupted and was restarted; its state was reset",
                grace.as_millis()
            );
            died(name, &message)
        }
        Outcome::Died => {
            // Its pipes closed: normally it ended (and is reaped at once); one that closed
            // them and lives on is killed when the run's time is up.
            let by = kill_at.unwrap_or(deadline);
            let ended = tokio::time::timeout_at(by, &mut interpreter.exit).await.ok().and_then(Result::ok);
            whole.kill(reaper).await;
            slot.take();
            let how = match ended.and_then(|exit| crate::protocol::signal_note(exit.code, exit.signal)) {
                Some(note) => note.replacen("the program", "the interpreter", 1),
                None => match ended.and_then(|exit| exit.code) {
                    Some(code) => format!("the interpreter exited with code {code}"),
                    None => "the interpreter exited".to_owned(),
                },
            };
            died("InterpreterExited", &format!("{how}; its state was reset and it restarts on the next run"))
        }
    };
    done.timed_out = timed_out;
    done.state_reset |= replaced;
    done.truncated |= truncated;
    done.usage = Some(usage);
    Ok(done)
}

/// Sleeps until `wake`, or forever without one.
async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(wake) => tokio::time::sleep_until(wake).await,
        None => std::future::pending().await,
    }
}

enum Outcome {
    Finished,
    Killed,
    Died,
}

/// A run that lost the interpreter: the error, written as the traceback too.
fn died(name: &str, message: &str) -> CodeDone {
    CodeDone {
        error: Some(CodeError {
            name: name.to_owned(),
            value: message.to_owned(),
            traceback: format!("{name}: {message}\n"),
        }),
        state_reset: true,
        ..CodeDone::default()
    }
}

/// One output stream of a run: what is forwarded (under the cap) until the end marker.
struct Stream {
    marker: Vec<u8>,
    pending: Vec<u8>,
    forwarded: u64,
    total: u64,
    done: bool,
}

impl Stream {
    fn new(marker: &str) -> Stream {
        Stream { marker: marker.as_bytes().to_vec(), pending: Vec::new(), forwarded: 0, total: 0, done: false }
    }

    /// Takes a chunk; returns the bytes to forward. Holds back a tail that could be the
    /// start of the marker, and drops what follows the marker (a background writer's).
    fn feed(&mut self, bytes: &[u8], cap: u64) -> Vec<Vec<u8>> {
        if self.done {
            return Vec::new();
        }
        self.pending.extend_from_slice(bytes);
        let release = match find(&self.pending, &self.marker) {
            Some(at) => {
                self.done = true;
                at
            }
            None => self.pending.len().saturating_sub(self.marker.len() - 1),
        };
        let released: Vec<u8> = self.pending.drain(..release).collect();
        if self.done {
            self.pending.clear();
        }
        self.total += released.len() as u64;
        let room = cap.saturating_sub(self.forwarded) as usize;
        let kept = &released[..released.len().min(room)];
        self.forwarded += kept.len() as u64;
        kept.chunks(MAX_DATA_CHUNK).map(<[u8]>::to_vec).collect()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// What a driver answers.
#[derive(Debug, Default, serde::Deserialize)]
struct Answer {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    error: Option<CodeError>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    outputs: Vec<RichOutput>,
}

/// Reads one answer line (bounded); `Ok(None)` at end of stream. A line that does not
/// parse (user code writing to fd 4) is skipped.
///
/// Cancel-safe: a partly read line stays in `line` for the next call.
async fn read_answer(reader: &mut BufReader<pipe::Receiver>, line: &mut Vec<u8>) -> io::Result<Option<Answer>> {
    loop {
        let room = MAX_ANSWER_BYTES.saturating_sub(line.len() as u64).max(1);
        let n = (&mut *reader).take(room).read_until(b'\n', line).await?;
        if n == 0 && line.is_empty() {
            return Ok(None);
        }
        let complete = line.ends_with(b"\n") || line.len() as u64 >= MAX_ANSWER_BYTES || n == 0;
        if !complete {
            continue;
        }
        let parsed = serde_json::from_slice::<Answer>(line);
        line.clear();
        if let Ok(answer) = parsed {
            return Ok(Some(answer));
        }
    }
}

fn interrupt(pid: u32) {
    // SAFETY: a plain signal send to our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
}

fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that only we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

async fn spawn(runtime: &Runtime, request: &RunCodeRequest) -> Result<Interpreter, ErrorReply> {
    let internal = |what: &str, e: io::Error| ErrorReply::new(ErrorKind::Internal, format!("{what}: {e}"));
    let (program, mut command) = match request.language {
        CodeLanguage::Python => {
            let mut command = Command::new(&runtime.interpreters.python_path);
            command.arg("-u").arg("-c").arg(PYTHON_DRIVER);
            (&runtime.interpreters.python_path, command)
        }
        CodeLanguage::Javascript => {
            let mut command = Command::new(&runtime.interpreters.node_path);
            command.arg("-e").arg(NODE_DRIVER);
            (&runtime.interpreters.node_path, command)
        }
    };
    let (request_read, request_write) = pipe_pair().map_err(|e| internal("pipe", e))?;
    let (answer_read, answer_write) = pipe_pair().map_err(|e| internal("pipe", e))?;
    command.env_clear().envs(runtime.base_env.iter().map(|(k, v)| (k, v)));
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let cwd = runtime.workspace.open_dir(".")?;
    prepare_child(&mut command, runtime.user, cwd, request.rlimits, false);
    let (child_in, child_out) = (request_read.as_raw_fd(), answer_write.as_raw_fd());
    // SAFETY: between fork and exec, only fcntl, dup2 and close (async-signal-safe).
    // Both ends are first moved above 9 so placing one at 3 cannot clobber the other.
    unsafe {
        command.pre_exec(move || {
            let high_in = libc::fcntl(child_in, libc::F_DUPFD, 10);
            let high_out = libc::fcntl(child_out, libc::F_DUPFD, 10);
            if high_in < 0 || high_out < 0 || libc::dup2(high_in, 3) < 0 || libc::dup2(high_out, 4) < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::close(high_in);
            libc::close(high_out);
            Ok(())
        });
    }
    let (mut child, exit) =
        spawn_guest(runtime, &mut command, Duration::from_millis(request.grace_ms)).await.map_err(|e| {
            match e.kind() {
                io::ErrorKind::NotFound => {
                    ErrorReply::new(ErrorKind::Unsupported, format!("{program} is not available in this sandbox: {e}"))
                }
                _ => internal(&format!("starting {program}"), e),
            }
        })?;
    drop((request_read, answer_write));
    let pid = child.id();
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        // SAFETY: a plain signal send to our own child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        return Err(ErrorReply::new(ErrorKind::Internal, "the interpreter's pipes were not created"));
    };
    let (tx, output) = mpsc::channel(256);
    for (kind, fd) in [(FrameKind::Stdout, OwnedFd::from(stdout)), (FrameKind::Stderr, OwnedFd::from(stderr))] {
        let mut pipe = receiver(fd)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; MAX_DATA_CHUNK];
            while let Ok(n) = pipe.read(&mut buffer).await {
                if n == 0 || tx.send((kind, buffer[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
    }
    let requests = pipe::Sender::from_owned_fd(request_write).map_err(|e| internal("request pipe", e))?;
    let answers = BufReader::new(receiver(answer_read)?);
    tracing::info!(pid, %program, "interpreter started");
    Ok(Interpreter { pid, exit, requests, answers, output })
}

/// CPU time of a process and its reaped children, from `/proc` (ms).
fn proc_cpu_ms(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    // After the name: state is field 3; utime..cstime are fields 14..17.
    let ticks: u64 = rest.split_whitespace().skip(11).take(4).filter_map(|f| f.parse::<u64>().ok()).sum();
    ticks * 1000 / clock_ticks_per_second()
}

/// Whether process `pid` is gone or on its way out: no longer in `/proc`, a zombie, or a
/// `SIGKILL` pending that it has not yet acted on.
fn dying(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return true };
    let kill_bit = 1u64 << (libc::SIGKILL - 1);
    status.lines().any(|line| {
        if let Some(state) = line.strip_prefix("State:") {
            return matches!(state.trim_start().chars().next(), Some('Z' | 'X'));
        }
        let pending = line.strip_prefix("SigPnd:").or_else(|| line.strip_prefix("ShdPnd:"));
        pending.and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok()).is_some_and(|mask| mask & kill_bit != 0)
    })
}

/// Peak resident set of a process, from `/proc` (KiB).
fn proc_peak_rss_kb(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}
