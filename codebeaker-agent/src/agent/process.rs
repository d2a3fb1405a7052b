//! Running one command: spawn it as the command user in its own process group with
//! rlimits, stream its output under a cap, feed its stdin, kill the whole group on
//! timeout or cancel, and report how it ended with the rusage of its processes.

use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use crate::agent::{Control, Outbox, Runtime};
use crate::protocol::{
    AgentMessage, ErrorKind, ErrorReply, ExecCommand, ExecExited, ExecRequest, Frame, FrameKind, Rlimits, Usage,
    MAX_DATA_CHUNK,
};

/// How long output is still read after the command's main process ended: long enough
/// for what it wrote just before exiting, short enough that a background child holding
/// the pipes open cannot hold the answer.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

/// Default `RLIMIT_NOFILE` of commands.
pub(crate) const DEFAULT_NOFILE: u64 = 1024;

/// Runs `request` to its end, sending `started`, output frames and `exited` (or an error).
pub(crate) async fn run(
    runtime: Arc<Runtime>,
    id: u64,
    request: ExecRequest,
    out: Outbox,
    control: mpsc::Receiver<Control>,
) {
    let message = match execute(&runtime, id, request, &out, control).await {
        Ok(exited) => AgentMessage::Exited(exited),
        Err(reply) => AgentMessage::Error(reply),
    };
    super::reply_to(&out, id, message).await;
}

async fn execute(
    runtime: &Runtime,
    id: u64,
    request: ExecRequest,
    out: &Outbox,
    mut control: mpsc::Receiver<Control>,
) -> Result<ExecExited, ErrorReply> {
    let cwd = runtime.workspace.open_dir(request.cwd.as_deref().unwrap_or("."))?;
    let mut command = match &request.command {
        ExecCommand::Argv(argv) => {
            let Some((program, args)) = argv.split_first() else {
                return Err(ErrorReply::new(ErrorKind::InvalidInput, "exec needs a program to run"));
            };
            let mut command = Command::new(program);
            command.args(args);
            command
        }
        ExecCommand::Shell(line) => {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(line);
            command
        }
    };
    command.env_clear().envs(runtime.base_env.iter().map(|(k, v)| (k, v))).envs(&request.env);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    prepare_child(&mut command, runtime.user, cwd, request.rlimits);
    let mut child = command.spawn().map_err(|e| spawn_error(&request.command, &e))?;
    let pid = child.id();
    let reaped = reap(pid);
    send(out, id, &AgentMessage::Started { pid }).await?;

    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        kill_tree(pid);
        return Err(ErrorReply::new(ErrorKind::Internal, "the command's pipes were not created"));
    };
    let cap = request.output_cap;
    let stdout = tokio::spawn(pump(receiver(stdout.into())?, out.clone(), id, FrameKind::Stdout, cap));
    let stderr = tokio::spawn(pump(receiver(stderr.into())?, out.clone(), id, FrameKind::Stderr, cap));
    let (stdin_tx, stdin_rx) = mpsc::channel::<(Vec<u8>, bool)>(16);
    let initial = request.stdin.map(|bytes| bytes.0).unwrap_or_default();
    let feeder = tokio::spawn(feed_stdin(sender(stdin.into())?, initial, request.stdin_stream, stdin_rx));

    let deadline = tokio::time::sleep(Duration::from_millis(request.timeout_ms));
    tokio::pin!(deadline);
    let mut reaped = std::pin::pin!(reaped);
    let mut timed_out = false;
    let status = loop {
        tokio::select! {
            status = &mut reaped => break status,
            () = &mut deadline, if !timed_out => {
                timed_out = true;
                kill_tree(pid);
            }
            item = control.recv() => match item {
                Some(Control::Cancel) => kill_tree(pid),
                Some(Control::Stdin(bytes, end)) => { let _ = stdin_tx.send((bytes, end)).await; }
                None => {}
            },
        }
    };
    if timed_out {
        // Whatever of the group survived the first kill (forked meanwhile) goes too.
        kill_tree(pid);
    }
    feeder.abort();
    let (code, signal, rusage) = status.map_err(|e| ErrorReply::new(ErrorKind::Internal, format!("wait4: {e}")))?;
    let grace = tokio::time::sleep(DRAIN_AFTER_EXIT);
    tokio::pin!(grace);
    let mut output_bytes = 0;
    let mut truncated = false;
    for pump in [stdout, stderr] {
        let abort = pump.abort_handle();
        tokio::select! {
            counted = pump => if let Ok((bytes, cut)) = counted { output_bytes += bytes; truncated |= cut; },
            () = &mut grace => abort.abort(),
        }
    }
    let usage = Usage { output_bytes, ..rusage };
    Ok(ExecExited { code, signal, timed_out, truncated, usage })
}

async fn send(out: &Outbox, id: u64, message: &AgentMessage) -> Result<(), ErrorReply> {
    let frame = Frame::message(id, message).map_err(|e| ErrorReply::new(ErrorKind::Internal, e.to_string()))?;
    let _ = out.send(frame).await;
    Ok(())
}

fn spawn_error(command: &ExecCommand, err: &io::Error) -> ErrorReply {
    let program = match command {
        ExecCommand::Argv(argv) => argv.first().cloned().unwrap_or_default(),
        ExecCommand::Shell(_) => "/bin/sh".to_owned(),
    };
    let kind = match err.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Internal,
    };
    ErrorReply::new(kind, format!("cannot run {program}: {err}"))
}

/// Sets up the child between fork and exec: user, process group, working directory,
/// rlimits, no core dumps, death with the agent.
pub(crate) fn prepare_child(command: &mut Command, user: Option<(u32, u32)>, cwd: OwnedFd, rlimits: Rlimits) {
    if let Some((uid, gid)) = user {
        // std drops supplementary groups (setgroups(0)) when switching uid from root.
        command.uid(uid).gid(gid);
    }
    command.process_group(0);
    let limits = [
        (libc::RLIMIT_CORE, Some(0)),
        (libc::RLIMIT_NOFILE, Some(rlimits.nofile.unwrap_or(DEFAULT_NOFILE))),
        (libc::RLIMIT_FSIZE, rlimits.fsize),
        (libc::RLIMIT_NPROC, rlimits.nproc),
    ];
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (fchdir, getrlimit, setrlimit, prctl); `cwd` stays open until exec, where
    // close-on-exec closes it.
    unsafe {
        command.pre_exec(move || {
            if libc::fchdir(cwd.as_raw_fd()) != 0 {
                return Err(io::Error::last_os_error());
            }
            for (resource, value) in limits {
                let Some(value) = value else { continue };
                let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                libc::getrlimit(resource, &mut current);
                let value = value.min(current.rlim_max);
                let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// What waiting for a process gives: exit code or signal, and its rusage.
pub(crate) type Reaped = io::Result<(Option<i32>, Option<i32>, Usage)>;

/// Waits for `pid` on a blocking thread: exit code or signal, and the rusage of it and
/// the children it waited for.
pub(crate) fn reap(pid: u32) -> impl std::future::Future<Output = Reaped> + Send {
    let (tx, rx) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let _ = tx.send(wait4(pid));
    });
    async move { rx.await.unwrap_or_else(|_| Err(io::Error::other("the reaper thread stopped"))) }
}

fn wait4(pid: u32) -> Reaped {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid out-pointers; `pid` is our child.
        let ret = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut rusage) };
        if ret >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
    let cpu = |t: libc::timeval| (t.tv_sec as u64) * 1000 + (t.tv_usec as u64) / 1000;
    let usage = Usage {
        cpu_ms: cpu(rusage.ru_utime) + cpu(rusage.ru_stime),
        max_rss_kb: u64::try_from(rusage.ru_maxrss).unwrap_or(0),
        output_bytes: 0,
    };
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Ok((code, signal, usage))
}

/// Kills a process group and every descendant of its leader (a child that left the
/// group with `setsid` is still found through its parent chain).
pub(crate) fn kill_tree(pid: u32) {
    let pid = pid as libc::pid_t;
    let descendants = descendants_of(pid);
    // SAFETY: plain signal sends; stale pids are harmless (ESRCH).
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
        for child in descendants {
            libc::kill(child, libc::SIGKILL);
        }
    }
}

/// Pids whose parent chain leads to `root`, from `/proc`.
fn descendants_of(root: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut parents = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The fields after the command name (which may hold spaces and parentheses).
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { continue };
        let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse::<libc::pid_t>().ok()) else { continue };
        parents.push((pid, ppid));
    }
    let mut found = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, ppid) in &parents {
            if found.contains(ppid) && !found.contains(pid) {
                found.push(*pid);
                grew = true;
            }
        }
    }
    found.retain(|pid| *pid != root);
    found
}

pub(crate) fn receiver(fd: OwnedFd) -> Result<pipe::Receiver, ErrorReply> {
    pipe::Receiver::from_owned_fd(fd).map_err(|e| ErrorReply::new(ErrorKind::Internal, format!("output pipe: {e}")))
}

fn sender(fd: OwnedFd) -> Result<pipe::Sender, ErrorReply> {
    pipe::Sender::from_owned_fd(fd).map_err(|e| ErrorReply::new(ErrorKind::Internal, format!("input pipe: {e}")))
}

/// Forwards one output stream as data frames, at most `cap` bytes of it; returns the
/// bytes read in total and whether some were dropped.
pub(crate) async fn pump(mut pipe: pipe::Receiver, out: Outbox, id: u64, kind: FrameKind, cap: u64) -> (u64, bool) {
    let mut buffer = vec![0u8; MAX_DATA_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = cap.saturating_sub(total);
        total += n as u64;
        let forwarded = (n as u64).min(room) as usize;
        if forwarded > 0 && out.send(Frame::data(kind, id, buffer[..forwarded].to_vec(), false)).await.is_err() {
            break;
        }
    }
    (total, total > cap)
}

async fn feed_stdin(mut pipe: pipe::Sender, initial: Vec<u8>, stream: bool, mut more: mpsc::Receiver<(Vec<u8>, bool)>) {
    if !initial.is_empty() && pipe.write_all(&initial).await.is_err() {
        return;
    }
    if !stream {
        return;
    }
    while let Some((bytes, end)) = more.recv().await {
        if pipe.write_all(&bytes).await.is_err() || end {
            return;
        }
    }
}
