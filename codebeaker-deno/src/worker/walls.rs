//! The kernel's walls around a worker, beneath the permission checks of the ops: a bug in
//! those checks must not be enough to reach a file outside the grant, start a process or
//! open a socket the session was not granted.
//!
//! - At start, before the engine exists: `PR_SET_NO_NEW_PRIVS`, no core dumps, `SIGXFSZ`
//!   ignored (a write over `RLIMIT_FSIZE` then fails with `EFBIG` instead of killing).
//! - At assignment, before any guest code, while the worker has a single thread (Landlock
//!   restricts the calling thread and its future children only): rlimits sized from the
//!   session (`RLIMIT_DATA` from `memoryLimitMB` plus the runtime's overhead,
//!   `RLIMIT_FSIZE` = the workspace quota, `RLIMIT_NOFILE`), a Landlock ruleset confining
//!   the filesystem to the workspace and the granted paths, and a seccomp filter on every
//!   thread forbidding process creation, `ptrace` and (without `allowNet`) sockets.
//!
//! Landlock is best effort where the kernel lacks it (logged once); the seccomp filter and
//! the rlimits are required: a worker that cannot raise them refuses the session.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use codebeaker::{Allowlist, WORKSPACE_ROOT};
use landlock::{
    path_beneath_rules, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::ipc::WorkerSetup;

/// Address space the runtime needs beyond the JS heap (engine, op buffers, stacks).
const RUNTIME_OVERHEAD_BYTES: u64 = 384 * 1024 * 1024;
/// Open files a worker may hold.
const MAX_OPEN_FILES: u64 = 256;
/// The newest Landlock ABI this code was written and tested against.
const LANDLOCK_ABI: ABI = ABI::V7;
/// Files the system resolver reads when a session may use the network.
const RESOLVER_FILES: &[&str] =
    &["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf", "/etc/ssl"];
/// Shared libraries the resolver may load (`libnss_*`).
const LIBRARY_DIRS: &[&str] = &["/lib", "/lib64", "/usr/lib", "/usr/lib64"];

/// Why a session's walls could not be raised.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WallError {
    /// A `setrlimit`/`prctl` call failed.
    #[error("cannot set {what}: {source}")]
    Sys {
        /// The call and its argument.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// The seccomp filter could not be built or installed.
    #[error("cannot install the seccomp filter: {0}")]
    Seccomp(#[from] seccompiler::Error),
    /// The seccomp filter could not be compiled.
    #[error("cannot compile the seccomp filter: {0}")]
    SeccompBackend(#[from] seccompiler::BackendError),
    /// The Landlock ruleset failed on a kernel that has Landlock.
    #[error("cannot apply the Landlock ruleset: {0}")]
    Landlock(#[from] landlock::RulesetError),
    /// Another thread exists: it would escape the Landlock ruleset.
    #[error("the process has {0} threads where it must have one (before a fork, or before the walls are up)")]
    Threads(usize),
}

fn check(what: &'static str, rc: libc::c_int) -> Result<(), WallError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(WallError::Sys { what, source: std::io::Error::last_os_error() })
    }
}

fn set_limit(what: &'static str, resource: libc::__rlimit_resource_t, value: u64) -> Result<(), WallError> {
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    check(what, unsafe { libc::setrlimit(resource, &limit) })
}

/// Walls that need no session: applied first thing in a new worker.
pub(crate) fn at_start() -> Result<(), WallError> {
    // SAFETY: plain prctl/signal calls on this process.
    unsafe {
        check("PR_SET_NO_NEW_PRIVS", libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    set_limit("RLIMIT_CORE 0", libc::RLIMIT_CORE, 0)
}

/// Walls of one session, raised before its first cell. The worker must be single-threaded.
pub(crate) fn for_session(setup: &WorkerSetup, filters: &SyscallFilters) -> Result<(), WallError> {
    single_threaded()?;
    let heap = setup.memory_limit_mb.saturating_mul(1024 * 1024);
    set_limit(
        "RLIMIT_DATA",
        libc::RLIMIT_DATA,
        data_in_use().saturating_add(heap).saturating_add(RUNTIME_OVERHEAD_BYTES),
    )?;
    set_limit("RLIMIT_FSIZE", libc::RLIMIT_FSIZE, setup.limits.workspace_bytes.max(1))?;
    set_limit("RLIMIT_NOFILE", libc::RLIMIT_NOFILE, MAX_OPEN_FILES)?;
    let net = !matches!(setup.permissions.allow_net, Allowlist::None);
    confine_files(setup, net)?;
    forbid_syscalls(filters, net)
}

/// Bytes of private writable memory the worker maps now (`VmData`), what `RLIMIT_DATA` counts.
/// Fails when the process has more than one thread: Landlock would not cover the others,
/// and a fork would copy only the calling one.
pub(crate) fn single_threaded() -> Result<(), WallError> {
    let threads = std::fs::read_dir("/proc/self/task").map(|tasks| tasks.count()).unwrap_or(1);
    if threads > 1 {
        return Err(WallError::Threads(threads));
    }
    Ok(())
}

fn data_in_use() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmData:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A path as code names it, on the host (`/workspace/...` is the session's directory).
fn host_path(workspace: &Path, granted: &str) -> PathBuf {
    let path = Path::new(granted);
    match path.strip_prefix(WORKSPACE_ROOT) {
        Ok(rest) => workspace.join(rest),
        Err(_) if path.is_absolute() => path.to_path_buf(),
        Err(_) => workspace.join(path),
    }
}

fn confine_files(setup: &WorkerSetup, net: bool) -> Result<(), WallError> {
    let all = AccessFs::from_all(LANDLOCK_ABI);
    let read = AccessFs::from_read(LANDLOCK_ABI);
    let hosts = |paths: &[String]| paths.iter().map(|p| host_path(&setup.workspace, p)).collect::<Vec<_>>();
    let mut readable = hosts(&setup.permissions.allow_read);
    if net {
        readable.extend(RESOLVER_FILES.iter().chain(LIBRARY_DIRS).map(PathBuf::from));
    }
    let mut writable = hosts(&setup.permissions.allow_write);
    writable.push(setup.workspace.clone());
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .scope(Scope::Signal)?
        .create()?
        .add_rules(path_beneath_rules(readable, read))?
        .add_rules(path_beneath_rules(writable, all))?
        .restrict_self()?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            tracing::warn!(status = ?status.ruleset, "Landlock is not fully enforced by this kernel: deno workers rely on the permission checks and seccomp for the filesystem");
        });
    }
    Ok(())
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, WallError> {
    Ok(SeccompRule::new(conditions)?)
}

fn filter(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, WallError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), arch)?;
    Ok(filter.try_into()?)
}

/// The worker's syscall filters, compiled once by the zygote (compiling takes longer than
/// installing): a worker only installs the pair its session needs.
pub(crate) struct SyscallFilters {
    offline: BpfProgram,
    online: BpfProgram,
    clone3: BpfProgram,
}

impl SyscallFilters {
    /// Compiles the filters of sessions without and with `allowNet`.
    pub fn compile() -> Result<Self, WallError> {
        // clone3 carries its flags in memory a filter cannot read: refuse it as unknown,
        // which makes the C library fall back to clone (checked below) for threads.
        let clone3: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
        Ok(SyscallFilters {
            offline: forbidden(false)?,
            online: forbidden(true)?,
            clone3: filter(clone3, libc::ENOSYS)?,
        })
    }
}

/// The filter refusing, with `EPERM`, what no worker may do (and sockets without `net`).
fn forbidden(net: bool) -> Result<BpfProgram, WallError> {
    let mut forbidden: BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_fork,
        libc::SYS_vfork,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
    ]
    .into_iter()
    .map(|syscall| (syscall, Vec::new()))
    .collect();
    // clone is how threads start too: only a clone that shares the thread group may pass.
    let not_a_thread =
        SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64), 0)?;
    forbidden.insert(libc::SYS_clone, vec![rule(vec![not_a_thread])?]);
    if net {
        // Internet sockets only: a Unix socket could reach the host's daemons.
        let not_inet = |family: i32| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, family as u64);
        let rules = vec![rule(vec![not_inet(libc::AF_INET)?, not_inet(libc::AF_INET6)?])?];
        forbidden.insert(libc::SYS_socket, rules);
        forbidden.insert(libc::SYS_socketpair, Vec::new());
    } else {
        forbidden.insert(libc::SYS_socket, Vec::new());
        forbidden.insert(libc::SYS_socketpair, Vec::new());
    }
    filter(forbidden, libc::EPERM)
}

/// Installs the syscall filters on every thread of the worker (TSYNC).
fn forbid_syscalls(filters: &SyscallFilters, net: bool) -> Result<(), WallError> {
    seccompiler::apply_filter_all_threads(if net { &filters.online } else { &filters.offline })?;
    seccompiler::apply_filter_all_threads(&filters.clone3)?;
    Ok(())
}
