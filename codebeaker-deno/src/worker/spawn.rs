//! Starting and killing worker processes.
//!
//! Workers are forked by a zygote (see `zygote`), one per worker program, started the
//! first time a worker of that program is asked for. Every zygote is started and spoken to
//! from one thread that lives as long as the process: a zygote asks the kernel for
//! `SIGKILL` when its parent goes (`PR_SET_PDEATHSIG`), and "parent" there means the thread
//! that started it, so a short-lived thread would take it, and every worker, with it. A
//! zygote found dead is started again on the next request.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::{fdpass, log_pipe, WORKER_ENV, WORKER_FD};

/// How long a fork may take, the zygote's first (which builds its engine) included.
const FORK_WAIT: Duration = Duration::from_secs(60);

/// A started worker: its process and the host's end of its channel.
pub(crate) struct Spawned {
    pub process: WorkerProcess,
    pub channel: UnixStream,
}

/// A worker process, killed when dropped (its zygote reaps it).
pub(crate) struct WorkerProcess {
    killer: Killer,
}

/// Kills one worker from anywhere, safely even after it was reaped (a pidfd never names
/// another process).
#[derive(Clone)]
pub(crate) struct Killer {
    pidfd: Arc<OwnedFd>,
    pid: u32,
}

impl Killer {
    /// Sends `SIGKILL`; a worker already gone is no error.
    pub fn kill(&self) {
        let _ = self.signal(libc::SIGKILL);
    }

    /// Sends `signal` to the worker (through its pidfd: never to another process).
    pub fn signal(&self, signal: libc::c_int) -> std::io::Result<()> {
        // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Whether the worker has ended (its pidfd reads as ready once it has).
    pub fn exited(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(&*self.pidfd, rustix::event::PollFlags::IN)];
        let now = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(ready) if ready > 0)
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl WorkerProcess {
    /// The worker `pid` this process did not ask the zygote for (a live fork's copy, the
    /// zygote's child): its pidfd, opened now. Killed when dropped, like any worker.
    pub fn adopt(pid: u32) -> std::io::Result<WorkerProcess> {
        let raw = rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "pid 0 is no worker"))?;
        let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())?;
        Ok(WorkerProcess { killer: Killer { pidfd: Arc::new(pidfd), pid } })
    }

    /// What kills this worker from another task.
    pub fn killer(&self) -> Killer {
        self.killer.clone()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.killer.kill();
    }
}

type Reply = Box<dyn FnOnce(std::io::Result<Spawned>) + Send>;

enum Job {
    Spawn(PathBuf, Reply),
}

/// The spawning thread.
pub(crate) struct Procs {
    spawn: Mutex<mpsc::Sender<Job>>,
}

/// The process's one spawning thread, started on first use.
pub(crate) fn procs() -> &'static Procs {
    static PROCS: OnceLock<Procs> = OnceLock::new();
    PROCS.get_or_init(|| {
        raise_open_files_limit();
        let (spawn, jobs) = mpsc::channel::<Job>();
        let spawner = std::thread::Builder::new().name("cb-deno-spawner".into()).spawn(move || {
            let mut zygotes = HashMap::new();
            for Job::Spawn(program, reply) in jobs {
                reply(fork_worker(&mut zygotes, &program));
            }
        });
        if let Err(error) = spawner {
            tracing::error!(%error, "cannot start the deno worker spawning thread; workers cannot start");
        }
        Procs { spawn: Mutex::new(spawn) }
    })
}

impl Procs {
    /// Starts `program` as a worker on the spawning thread; `reply` gets the outcome there.
    pub fn spawn(&self, program: &Path, reply: Reply) {
        let job = Job::Spawn(program.to_path_buf(), reply);
        let sent = self.spawn.lock().unwrap_or_else(|p| p.into_inner()).send(job);
        if let Err(mpsc::SendError(Job::Spawn(_, reply))) = sent {
            reply(Err(std::io::Error::other("the deno worker spawning thread is gone")));
        }
    }

    /// Starts a worker and waits for it to be started (not yet ready).
    pub async fn spawn_now(&self, program: &Path) -> std::io::Result<Spawned> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn(
            program,
            Box::new(move |spawned| {
                let _ = tx.send(spawned);
            }),
        );
        rx.await.map_err(|_| std::io::Error::other("the deno worker spawning thread is gone"))?
    }
}

/// Each worker holds two descriptors in the host (its channel and its pidfd): lift the
/// host's soft limit of open files to the hard one so a thousand sessions fit.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!(
                    "cannot raise the open files limit for deno workers: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// A worker of `program`, forked by its zygote; a zygote found dead is started again once.
fn fork_worker(zygotes: &mut HashMap<PathBuf, Zygote>, program: &Path) -> std::io::Result<Spawned> {
    if let Some(zygote) = zygotes.get_mut(program) {
        let error = match zygote.fork() {
            Ok(spawned) => return Ok(spawned),
            Err(error) => error,
        };
        let late = matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
        if zygote.alive() && !late {
            return Err(error);
        }
        // Dead, or so slow that its answer could come late and be taken for the next one's.
        tracing::warn!(%error, program = %program.display(), "the deno worker zygote failed; starting another");
        zygotes.remove(program);
        if late {
            return Err(error);
        }
    }
    let zygote = zygotes.entry(program.to_path_buf()).or_insert(Zygote::start(program)?);
    zygote.fork()
}

/// A zygote process and the host's end of its control socket.
struct Zygote {
    process: Child,
    control: UnixStream,
}

impl Zygote {
    /// Starts `program` as a zygote with its end of a new socketpair as fd 3, an empty
    /// environment (but for [`WORKER_ENV`]), `/dev/null` as stdin and stdout, and a pipe
    /// read into the log as stderr.
    fn start(program: &Path) -> std::io::Result<Zygote> {
        let (host, zygote) = UnixStream::pair()?;
        host.set_read_timeout(Some(FORK_WAIT))?;
        let zygote_fd = zygote.as_raw_fd();
        let mut command = Command::new(program);
        // An environment built from nothing: no variable of the server (its token, its
        // proxies, its paths) reaches the zygote or any worker.
        command
            .env_clear()
            .env(WORKER_ENV, format!("{WORKER_FD}:{}", std::process::id()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if zygote_fd == WORKER_FD {
                    if libc::fcntl(WORKER_FD, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(zygote_fd, WORKER_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut process = command.spawn()?;
        if let Some(stderr) = process.stderr.take() {
            log_pipe::forward(stderr, process.id());
        }
        Ok(Zygote { process, control: host })
    }

    /// Asks for one worker: its channel goes to the zygote, its pid and pidfd come back.
    fn fork(&mut self) -> std::io::Result<Spawned> {
        let (host, worker) = UnixStream::pair()?;
        fdpass::send(&self.control, &[1], Some(worker.as_fd()))?;
        drop(worker);
        let mut answer = [0u8; 4];
        let (len, pidfd) = fdpass::receive(&self.control, &mut answer)?;
        let pid = u32::from_le_bytes(answer);
        match pidfd {
            Some(pidfd) if len == answer.len() && pid != 0 => {
                let killer = Killer { pidfd: Arc::new(pidfd), pid };
                Ok(Spawned { process: WorkerProcess { killer }, channel: host })
            }
            _ if len == 0 => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the deno worker zygote exited")),
            _ => Err(std::io::Error::other("the deno worker zygote could not fork a worker")),
        }
    }

    /// Whether the zygote is still running.
    fn alive(&mut self) -> bool {
        matches!(self.process.try_wait(), Ok(None))
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
