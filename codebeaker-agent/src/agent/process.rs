//! Running one command: spawn it as the command user in its own process group with
//! rlimits, stream its output under a cap, feed its stdin, and report how it ended with
//! the rusage of its processes.
//!
//! On timeout or cancel everything the command started is killed ([`KillScope`]: its
//! group, its descendants, and what escaped them with `setsid` and a double fork), and
//! the answer goes out within the request's `grace_ms` (the operator's interrupt grace,
//! as the host passes it down). Output is still read `drain_ms` after the main process
//! ended. The agent keeps no timing of its own: every wait is the request's.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::pty::{Pty, PtyReader, PtyWriter};
use crate::agent::reaper::Reaper;
use crate::agent::sys;
use crate::agent::{instant_after, Control, Outbox, Runtime};
use crate::protocol::{
    AgentMessage, ErrorKind, ErrorReply, ExecCommand, ExecExited, ExecRequest, Frame, FrameKind, PtySize, Rlimits,
    Usage, MAX_DATA_CHUNK,
};

/// Nice value of every guest process (the lowest priority). The agent, at 0, then keeps
/// most of the CPU it needs while hundreds of guest processes spin (a fork bomb that
/// catches its errors): at equal priority it got a two-hundredth share and answered
/// seconds late. Guest code loses nothing otherwise: only the agent shares its cgroup.
/// It cannot raise its priority back (that needs `CAP_SYS_NICE`).
const GUEST_NICE: libc::c_int = 19;

/// `TERM` of a command on a terminal, unless its request sets one: what the host's
/// terminal emulators (xterm.js and the like) understand.
const DEFAULT_TERM: &str = "xterm-256color";

/// Bytes of input a command has not taken that the agent holds for it; beyond them it
/// stops reading the host's messages for the command (and so, in time, the host's
/// frames), as a pipe that is full would.
const STDIN_BACKLOG: usize = 1 << 20;

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
    command.env_clear().envs(runtime.base_env.iter().map(|(k, v)| (k, v)));
    let terminal = match request.pty {
        Some(size) => {
            let (pty, slave) = Pty::open(size, runtime.user)
                .map_err(|e| ErrorReply::new(ErrorKind::Internal, format!("cannot open a terminal: {e}")))?;
            let stdio = || {
                slave
                    .try_clone()
                    .map(Stdio::from)
                    .map_err(|e| ErrorReply::new(ErrorKind::Internal, format!("cannot open a terminal: {e}")))
            };
            command.env("TERM", DEFAULT_TERM).stdin(stdio()?).stdout(stdio()?).stderr(stdio()?);
            Some(pty)
        }
        None => {
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            None
        }
    };
    command.envs(&request.env);
    prepare_child(&mut command, runtime.user, cwd, request.rlimits, terminal.is_some());
    let since = boot_ticks_now();
    let spawned = spawn_guest(runtime, &mut command, Duration::from_millis(request.grace_ms)).await;
    // The agent's copies of the terminal's slave go now: the master reads EIO, the end of
    // output, once the command's own are closed.
    drop(command);
    let (mut child, exited) = spawned.map_err(|e| spawn_error(&request.command, &e))?;
    let pid = child.id();
    let scope = KillScope { root: pid, spare_root: false, since };
    send(out, id, &AgentMessage::Started { pid }).await?;

    let cap = request.output_cap;
    let initial = request.stdin.map(|bytes| bytes.0).unwrap_or_default();
    let (stdin_tx, stdin_rx) = mpsc::channel::<(Vec<u8>, bool)>(16);
    let (pumps, feeder) = match &terminal {
        Some(pty) => {
            let output = tokio::spawn(pump(PtyReader(pty.clone()), out.clone(), id, FrameKind::Stdout, cap));
            let input = PtyWriter(pty.clone());
            let eof = Some(pty.eof_char());
            (vec![output], tokio::spawn(feed_stdin(input, initial, request.stdin_stream, stdin_rx, eof)))
        }
        None => {
            let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                scope.kill(&runtime.reaper).await;
                return Err(ErrorReply::new(ErrorKind::Internal, "the command's pipes were not created"));
            };
            let stdout = tokio::spawn(pump(receiver(stdout.into())?, out.clone(), id, FrameKind::Stdout, cap));
            let stderr = tokio::spawn(pump(receiver(stderr.into())?, out.clone(), id, FrameKind::Stderr, cap));
            let input = sender(stdin.into())?;
            (vec![stdout, stderr], tokio::spawn(feed_stdin(input, initial, request.stdin_stream, stdin_rx, None)))
        }
    };

    let grace = Duration::from_millis(request.grace_ms);
    let deadline = instant_after(Duration::from_millis(request.timeout_ms));
    // Once stopping (timeout or cancel): the time by which the answer goes out.
    let mut answer_by: Option<Instant> = None;
    let mut timed_out = false;
    let mut exited = std::pin::pin!(exited);
    // Input the command has not taken yet: held here, never awaited in the loop, so a
    // command that does not read cannot keep it from its timeout, exit or cancel.
    let mut backlog: VecDeque<(Vec<u8>, bool)> = VecDeque::new();
    let mut backlog_bytes = 0usize;
    let status = loop {
        let wake = answer_by.unwrap_or(deadline);
        let stop = tokio::select! {
            biased;
            status = &mut exited => break status.ok(),
            () = tokio::time::sleep_until(wake) => {
                if answer_by.is_some() {
                    // Killed, yet not reaped within the grace (stuck in the kernel).
                    break None;
                }
                timed_out = true;
                true
            }
            permit = stdin_tx.reserve(), if !backlog.is_empty() => {
                match (permit, backlog.pop_front()) {
                    (Ok(permit), Some(input)) => {
                        backlog_bytes -= input.0.len();
                        permit.send(input);
                    }
                    // Input ended, or the command closed its end: what is left goes nowhere.
                    _ => {
                        backlog.clear();
                        backlog_bytes = 0;
                    }
                }
                false
            }
            item = control.recv(), if backlog_bytes < STDIN_BACKLOG => match item {
                Some(Control::Cancel) => answer_by.is_none(),
                Some(Control::Input(bytes, end)) => {
                    backlog_bytes += bytes.len();
                    backlog.push_back((bytes, end));
                    false
                }
                Some(Control::Signal(signal)) => {
                    // SAFETY: a plain signal send to the command's group (its session on a
                    // terminal), which lives on until its main process is reaped.
                    unsafe { libc::killpg(pid as libc::pid_t, signal) };
                    false
                }
                Some(Control::Resize(cols, rows)) => {
                    if let Some(pty) = &terminal {
                        pty.resize(PtySize { cols, rows });
                    }
                    false
                }
                None => false,
            },
        };
        if stop {
            answer_by = Some(instant_after(grace));
            scope.kill(&runtime.reaper).await;
        }
    };
    if answer_by.is_some() {
        // What the tree forked while the main process was dying goes too.
        scope.kill(&runtime.reaper).await;
    }
    feeder.abort();
    // Long enough for what it wrote just before exiting; a background child holding the
    // pipes open cannot hold the answer longer.
    let drain = Duration::from_millis(request.drain_ms);
    let drain_until = match answer_by {
        Some(answer_by) => answer_by.min(instant_after(drain)),
        None => instant_after(drain),
    };
    let grace = tokio::time::sleep_until(drain_until);
    tokio::pin!(grace);
    let mut output_bytes = 0;
    let mut truncated = false;
    for pump in pumps {
        let abort = pump.abort_handle();
        tokio::select! {
            counted = pump => if let Ok((bytes, cut)) = counted { output_bytes += bytes; truncated |= cut; },
            () = &mut grace => abort.abort(),
        }
    }
    let (code, signal, usage) = match status {
        Some(exit) => (exit.code, exit.signal, Usage { output_bytes, ..exit.usage }),
        None => (None, None, Usage { output_bytes, ..Usage::default() }),
    };
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
/// rlimits, no core dumps, the lowest priority ([`GUEST_NICE`]), death with the agent.
/// With `terminal` its stdin (already the terminal's slave) becomes its controlling
/// terminal, in a session of its own; either way its pid is its process group's id.
pub(crate) fn prepare_child(
    command: &mut Command,
    user: Option<(u32, u32)>,
    cwd: OwnedFd,
    rlimits: Rlimits,
    terminal: bool,
) {
    if let Some((uid, gid)) = user {
        // std drops supplementary groups (setgroups(0)) when switching uid from root.
        command.uid(uid).gid(gid);
    }
    if !terminal {
        // Not with a terminal: setsid fails (EPERM) for a group leader, and makes the
        // child lead a new group anyway.
        command.process_group(0);
    }
    let limits = [
        (libc::RLIMIT_CORE, Some(0)),
        (libc::RLIMIT_NOFILE, Some(rlimits.nofile.unwrap_or(DEFAULT_NOFILE))),
        (libc::RLIMIT_FSIZE, rlimits.fsize),
        (libc::RLIMIT_NPROC, rlimits.nproc),
    ];
    // SAFETY: the closure runs between fork and exec (after std set up stdio and the
    // user) and calls only async-signal-safe functions (setsid, ioctl, fchdir, getrlimit,
    // setrlimit, setpriority, prctl); `cwd` stays open until exec, where close-on-exec
    // closes it.
    unsafe {
        command.pre_exec(move || {
            if terminal && (libc::setsid() < 0 || libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0) != 0) {
                return Err(io::Error::last_os_error());
            }
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
            if libc::setpriority(libc::PRIO_PROCESS, 0, GUEST_NICE) != 0 {
                return Err(io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Starts a guest process. When its user's processes fill its `RLIMIT_NPROC` (or the
/// container's pids limit), what left them there is a runaway: leftovers of finished
/// commands and runs (a fork bomb whose first process exited, copies of an interpreter
/// forked by its code). They are killed, all but the interpreters and running commands'
/// own processes, round after round until a round finds none it has not signalled or
/// `grace` (the request's) has passed (a leftover bomb refills a limit faster than one
/// round clears it), and the start is tried once more, so that the session stays usable.
pub(crate) async fn spawn_guest(
    runtime: &Runtime,
    command: &mut Command,
    grace: Duration,
) -> io::Result<(std::process::Child, tokio::sync::oneshot::Receiver<crate::agent::reaper::Exit>)> {
    match runtime.reaper.spawn(command) {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
            // SAFETY: getpid has no failure modes.
            let agent = unsafe { libc::getpid() } as u32;
            tracing::warn!("the guest's processes fill its limit; killing those no command or interpreter owns");
            KillScope { root: agent, spare_root: true, since: 0 }
                .kill_until(&runtime.reaper, instant_after(grace))
                .await;
            runtime.reaper.spawn(command)
        }
        other => other,
    }
}

/// Ticks of the clock `/proc/PID/stat` counts process start times in (since boot).
pub(crate) fn boot_ticks_now() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer; CLOCK_BOOTTIME always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    let per_second = clock_ticks_per_second();
    (now.tv_sec as u64) * per_second + (now.tv_nsec as u64) * per_second / 1_000_000_000
}

/// `sysconf(_SC_CLK_TCK)`.
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1)
}

/// What a kill reaches: the processes a command or a run started.
///
/// That is the tree under `root` (its process group and every descendant by parent
/// chain, however it left the group), and every process the agent adopted (its parent
/// died: a child that `setsid`'d and double-forked away) that started at or after
/// `since` (boot ticks), with its descendants. Never the agent, and never a process the
/// agent waits for (another running command's main process, an interpreter).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KillScope {
    /// The command's main process, or the interpreter.
    pub root: u32,
    /// Whether `root` and its group live on (an interrupted interpreter keeps its state):
    /// then only what started at or after `since` beneath it goes.
    pub spare_root: bool,
    /// When the command or run started, in boot ticks ([`boot_ticks_now`]).
    pub since: u64,
}

/// A process as `/proc/PID/stat` shows it.
struct ProcStat {
    pid: libc::pid_t,
    ppid: libc::pid_t,
    /// Its state letter (`R`, `S`, `D`, ...).
    state: char,
    start: u64,
}

/// Every live process in this PID namespace: not a zombie, unless only its main thread
/// ended (by itself, not `exit_group`: `/proc` then shows the process `Z` while its other
/// threads run on, and forking, and a look that skipped it would leave them running).
fn processes() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The fields after the command name (which may hold spaces and parentheses):
        // state, ppid, pgrp, ... num_threads is the 18th of them, starttime the 20th.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields.first().and_then(|state| state.chars().next()).unwrap_or('?');
        let threads: u64 = fields.get(17).and_then(|s| s.parse().ok()).unwrap_or(0);
        if state == 'X' || (state == 'Z' && threads <= 1) {
            continue;
        }
        let (Some(ppid), Some(start)) =
            (fields.get(1).and_then(|s| s.parse().ok()), fields.get(19).and_then(|s| s.parse().ok()))
        else {
            continue;
        };
        found.push(ProcStat { pid, ppid, state, start });
    }
    found
}

impl KillScope {
    /// The processes this scope reaches now (see the type's docs), each as its pid and
    /// start time: a pid alone can name another process by the next round, since a
    /// fork bomb churning through the namespace's pids wraps them within seconds.
    fn targets(&self, reaper: &Reaper) -> Vec<(libc::pid_t, u64)> {
        // SAFETY: getpid has no failure modes.
        let agent = unsafe { libc::getpid() };
        let root = self.root as libc::pid_t;
        let all = processes();
        let mut seeds = vec![root];
        seeds.extend(
            all.iter()
                .filter(|p| {
                    p.ppid == agent && p.start >= self.since && p.pid != root && !reaper.is_waited_for(p.pid as u32)
                })
                .map(|p| p.pid),
        );
        let mut children: HashMap<libc::pid_t, Vec<&ProcStat>> = HashMap::new();
        for p in &all {
            children.entry(p.ppid).or_default().push(p);
        }
        let mut found: HashSet<libc::pid_t> = seeds.iter().copied().collect();
        let mut queue = seeds;
        while let Some(parent) = queue.pop() {
            for child in children.get(&parent).into_iter().flatten() {
                if (!self.spare_root || child.start >= self.since) && found.insert(child.pid) {
                    queue.push(child.pid);
                }
            }
        }
        // Processes the agent waits for (interpreters, running commands) go only as the
        // root of a scope that does not spare it.
        found.retain(|pid| {
            *pid != agent && if *pid == root { !self.spare_root } else { !reaper.is_waited_for(*pid as u32) }
        });
        all.iter().filter(|p| found.contains(&p.pid)).map(|p| (p.pid, p.start)).collect()
    }

    /// Kills everything in scope with `SIGKILL`, round after round, until a round finds
    /// nothing it has not already signalled: a process with `SIGKILL` pending cannot
    /// complete a fork, so a fork bomb's tree stops growing at the first round and what
    /// a round still finds is only dying. Yields between rounds so that the reaper
    /// collects the dead. A spared root may go on forking: then the rounds end at `until`
    /// (at least one round runs).
    pub(crate) async fn kill_until(&self, reaper: &Reaper, until: Instant) {
        let mut signalled: HashSet<(libc::pid_t, u64)> = HashSet::new();
        loop {
            if !self.spare_root {
                // SAFETY: a plain signal send; a group that is gone gives ESRCH.
                unsafe { libc::killpg(self.root as libc::pid_t, libc::SIGKILL) };
            }
            let fresh: Vec<(libc::pid_t, u64)> =
                self.targets(reaper).into_iter().filter(|process| !signalled.contains(process)).collect();
            if fresh.is_empty() {
                return;
            }
            for (pid, start) in fresh {
                // SAFETY: as above; a pid that just ended gives ESRCH.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                signalled.insert((pid, start));
            }
            if self.spare_root && Instant::now() >= until {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// [`KillScope::kill_until`] for a scope whose root goes too (its rounds end by
    /// themselves).
    pub(crate) async fn kill(&self, reaper: &Reaper) {
        debug_assert!(!self.spare_root);
        self.kill_until(reaper, Instant::now()).await;
    }
}

/// Kills every guest process, for the session's close (the reaper must be closed first,
/// so that the agent starts none meanwhile): every process beneath the agent (commands,
/// interpreters, whatever they forked, orphaned or `setsid`'d away: orphans come back to
/// the agent, a subreaper) and, when the agent is its PID namespace's init (a container)
/// and the guest runs as a uid of its own, every process of that uid however it got
/// there.
///
/// Each pass first sweeps: `SIGKILL` to every live guest process not yet signalled, scan
/// after scan, without yielding, until a scan finds none new. A process with `SIGKILL`
/// pending cannot complete a fork, so what a scan misses was born during it; and since
/// the reaper (on this thread) collects nothing meanwhile, the killed hold their slots of
/// the pids limit as zombies, and a fork bomb has no room to regrow between scans. (A
/// sweep that waited for exits between scans gave the few a scan missed the room the
/// dead freed, and a bomb outlived its close.) Then the pass waits for the signalled to
/// end, and the next looks again. Returns how many processes were killed, or an error
/// when some outlived `bound` of killing (stuck in the kernel: the host then stops the
/// container itself).
pub(crate) async fn kill_all(runtime: &Runtime, bound: Duration) -> Result<u32, ErrorReply> {
    // SAFETY: getpid and geteuid have no failure modes.
    let (agent, euid) = unsafe { (libc::getpid(), libc::geteuid()) };
    let guest_uid = runtime.user.map(|(uid, _)| uid).filter(|uid| *uid != euid && agent == 1);
    let give_up = instant_after(bound);
    let mut signalled: HashSet<(libc::pid_t, u64)> = HashSet::new();
    loop {
        let (alive, exits, unwatched) = sweep(agent, guest_uid, &mut signalled, give_up);
        if alive.is_empty() {
            return Ok(u32::try_from(signalled.len()).unwrap_or(u32::MAX));
        }
        if Instant::now() >= give_up {
            return Err(ErrorReply::new(
                ErrorKind::Internal,
                format!(
                    "{} guest processes still run {} ms after SIGKILL (states: {})",
                    alive.len(),
                    bound.as_millis(),
                    states(&alive)
                ),
            ));
        }
        // Woken at each exit through its pidfd, with no CPU spent polling that the dying
        // (at nice 19) need more.
        for pidfd in exits {
            // SAFETY: the `OwnedFd` moves into the `AsyncFd` and stays open, the same
            // descriptor, until it is dropped.
            let registered =
                unsafe { tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) };
            let Ok(exit) = registered else { continue };
            if tokio::time::timeout_at(give_up, exit.readable()).await.is_err() {
                break;
            }
        }
        if unwatched {
            // Some went without a pidfd (an old kernel or seccomp profile): look again once
            // the runtime has run what else is ready (the passes end at `give_up` anyway).
            tokio::task::yield_now().await;
        }
    }
}

/// One sweep of [`kill_all`]: `SIGKILL`, through a pidfd (no pid reuse can redirect the
/// signal), to every live guest process not in `signalled`, scan after scan until one
/// finds none new (or `give_up` passes). Returns the live guest processes the last scan
/// found, the pidfds of those this sweep signalled, and whether some of them (or of those
/// still alive) have none to wait on.
fn sweep(
    agent: libc::pid_t,
    guest_uid: Option<u32>,
    signalled: &mut HashSet<(libc::pid_t, u64)>,
    give_up: Instant,
) -> (Vec<ProcStat>, Vec<OwnedFd>, bool) {
    let mut exits = Vec::new();
    let mut unwatched = false;
    loop {
        let alive = guest_processes(agent, guest_uid);
        let fresh: Vec<&ProcStat> = alive.iter().filter(|p| !signalled.contains(&(p.pid, p.start))).collect();
        if fresh.is_empty() || Instant::now() >= give_up {
            // Alive, and signalled by an earlier sweep whose pidfds were waited on.
            unwatched |= exits.is_empty() && !alive.is_empty();
            return (alive, exits, unwatched);
        }
        for process in fresh {
            signalled.insert((process.pid, process.start));
            match sys::pidfd_open(process.pid) {
                Ok(pidfd) => {
                    let _ = sys::pidfd_kill(&pidfd);
                    exits.push(pidfd);
                }
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(_) => {
                    // SAFETY: a plain signal send; a pid that just ended gives ESRCH.
                    unsafe { libc::kill(process.pid, libc::SIGKILL) };
                    unwatched = true;
                }
            }
        }
    }
}

/// How many of `processes` are in each state, for an error ("R 2, D 1").
fn states(processes: &[ProcStat]) -> String {
    let mut counts: std::collections::BTreeMap<char, usize> = std::collections::BTreeMap::new();
    for process in processes {
        *counts.entry(process.state).or_default() += 1;
    }
    counts.iter().map(|(state, count)| format!("{state} {count}")).collect::<Vec<_>>().join(", ")
}

/// The live guest processes [`kill_all`] reaches (see there).
fn guest_processes(agent: libc::pid_t, guest_uid: Option<u32>) -> Vec<ProcStat> {
    let all = processes();
    let mut children: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
    for p in &all {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut found: HashSet<libc::pid_t> = HashSet::new();
    let mut queue = vec![agent];
    while let Some(parent) = queue.pop() {
        for child in children.get(&parent).into_iter().flatten() {
            if found.insert(*child) {
                queue.push(*child);
            }
        }
    }
    if let Some(uid) = guest_uid {
        found.extend(all.iter().filter(|p| p.pid != agent && runs_as(p.pid, uid)).map(|p| p.pid));
    }
    found.remove(&agent);
    all.into_iter().filter(|p| found.contains(&p.pid)).collect()
}

/// Whether any of the uids of process `pid` (real, effective, saved, file system) is
/// `uid` (from `/proc/PID/status`, which holds even for a process that made itself
/// undumpable).
fn runs_as(pid: libc::pid_t, uid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .is_some_and(|uids| uids.split_whitespace().any(|u| u.parse() == Ok(uid)))
}

pub(crate) fn receiver(fd: OwnedFd) -> Result<pipe::Receiver, ErrorReply> {
    pipe::Receiver::from_owned_fd(fd).map_err(|e| ErrorReply::new(ErrorKind::Internal, format!("output pipe: {e}")))
}

fn sender(fd: OwnedFd) -> Result<pipe::Sender, ErrorReply> {
    pipe::Sender::from_owned_fd(fd).map_err(|e| ErrorReply::new(ErrorKind::Internal, format!("input pipe: {e}")))
}

/// Forwards one output stream as data frames, at most `cap` bytes of it; returns the
/// bytes read in total and whether some were dropped.
pub(crate) async fn pump<R: AsyncRead + Unpin>(
    mut pipe: R,
    out: Outbox,
    id: u64,
    kind: FrameKind,
    cap: u64,
) -> (u64, bool) {
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

/// Writes `initial`, then (with `stream`) what comes from the host, to a command's stdin.
/// The input ends (the pipe closes) with the first piece marked as the end; on a
/// terminal, whose input cannot close, that piece is followed by its `eof` character
/// instead, and input goes on.
async fn feed_stdin<W: AsyncWrite + Unpin>(
    mut input: W,
    initial: Vec<u8>,
    stream: bool,
    mut more: mpsc::Receiver<(Vec<u8>, bool)>,
    eof: Option<u8>,
) {
    if !initial.is_empty() && input.write_all(&initial).await.is_err() {
        return;
    }
    if !stream {
        return;
    }
    while let Some((bytes, end)) = more.recv().await {
        if input.write_all(&bytes).await.is_err() {
            return;
        }
        match (end, eof) {
            (false, _) => {}
            (true, Some(eof)) => {
                if input.write_all(&[eof]).await.is_err() {
                    return;
                }
            }
            (true, None) => return,
        }
    }
}
