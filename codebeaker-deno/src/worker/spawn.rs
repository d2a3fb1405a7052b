//! Starting and reaping worker processes.
//!
//! Every worker is started from one thread that lives as long as the process: a worker
//! asks the kernel for `SIGKILL` when its parent goes (`PR_SET_PDEATHSIG`), and "parent"
//! there means the thread that forked it, so a short-lived thread would take its workers
//! with it. Killed workers are reaped by a second long-lived thread, so no zombie stays and
//! no async task ever blocks in `waitpid`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use super::{WORKER_ENV, WORKER_FD};

/// A started worker: its process and the host's end of its channel.
pub(crate) struct Spawned {
    pub process: WorkerProcess,
    pub channel: UnixStream,
}

/// A worker process, killed and reaped when dropped.
pub(crate) struct WorkerProcess {
    child: Option<Child>,
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
        // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl WorkerProcess {
    /// What kills this worker from another task.
    pub fn killer(&self) -> Killer {
        self.killer.clone()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.killer.kill();
        if let Some(child) = self.child.take() {
            procs().reap(child);
        }
    }
}

type Reply = Box<dyn FnOnce(std::io::Result<Spawned>) + Send>;

enum Job {
    Spawn(PathBuf, Reply),
}

/// The spawning and reaping threads.
pub(crate) struct Procs {
    spawn: Mutex<mpsc::Sender<Job>>,
    reap: Mutex<mpsc::Sender<Child>>,
}

/// The process's one pair of threads, started on first use.
pub(crate) fn procs() -> &'static Procs {
    static PROCS: OnceLock<Procs> = OnceLock::new();
    PROCS.get_or_init(|| {
        raise_open_files_limit();
        let (spawn, jobs) = mpsc::channel::<Job>();
        let (reap, dead) = mpsc::channel::<Child>();
        let spawner = std::thread::Builder::new().name("cb-deno-spawner".into()).spawn(move || {
            for Job::Spawn(program, reply) in jobs {
                reply(start(&program));
            }
        });
        let reaper = std::thread::Builder::new().name("cb-deno-reaper".into()).spawn(move || {
            for mut child in dead {
                let _ = child.kill();
                let _ = child.wait();
            }
        });
        if let Err(error) = spawner.and(reaper) {
            tracing::error!(%error, "cannot start the deno worker threads; workers cannot start");
        }
        Procs { spawn: Mutex::new(spawn), reap: Mutex::new(reap) }
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

    fn reap(&self, child: Child) {
        let _ = self.reap.lock().unwrap_or_else(|p| p.into_inner()).send(child);
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

/// Forks and executes `program` with the worker end of a new socketpair as fd 3.
fn start(program: &Path) -> std::io::Result<Spawned> {
    let (host, worker) = UnixStream::pair()?;
    let worker_fd = worker.as_raw_fd();
    let mut command = Command::new(program);
    command
        .env(WORKER_ENV, format!("{WORKER_FD}:{}", std::process::id()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if worker_fd == WORKER_FD {
                if libc::fcntl(WORKER_FD, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(worker_fd, WORKER_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    drop(worker);
    let pid = child.id();
    // SAFETY: pidfd_open of our own unreaped child; a non-negative result is a new fd we own.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        let error = std::io::Error::last_os_error();
        let _ = child.kill();
        let _ = child.wait();
        return Err(error);
    }
    // SAFETY: the kernel just handed us this descriptor.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let killer = Killer { pidfd: Arc::new(pidfd), pid };
    Ok(Spawned { process: WorkerProcess { child: Some(child), killer }, channel: host })
}
