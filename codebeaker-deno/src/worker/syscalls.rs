//! The worker's seccomp filter: an allowlist. A worker with its session may make the system
//! calls its engine (deno_core on QuickJS), tokio, the ops and (with `allowNet`) reqwest
//! and the system resolver need, and nothing else: every other call fails with `EPERM`.
//! Among what is refused that way: process creation (`fork`, `vfork`, `execve*`, a `clone`
//! that is not a thread or that asks for a namespace; a live fork's own copy is a question
//! the host answers, see `notify`), `unshare` (but for that copy's user namespace, gated
//! the same way), `setns`, `io_uring_*`
//! (its socket operation would sidestep the socket rule), `bpf`, `perf_event_open`,
//! `ptrace`, `process_vm_*`, `keyctl`/`add_key`/`request_key`, `mount` and friends,
//! module loading, `kexec_*`, `userfaultfd`, `kill` (`tgkill` is left for the runtime's
//! threads; Landlock's signal scope keeps it within the worker), and every
//! `set*id`/`capset` (the worker already dropped its identity and capabilities; see
//! [`lock`] for what a live fork's copy keeps).
//!
//! Two filters make the list: the allowlist proper, attached once by the zygote (so it also
//! covers the zygote, which never runs guest code) and inherited by every worker, which
//! also allows what the zygote and the walls' set-up need; and a short lock each worker
//! attaches once its walls are up, refusing those set-up calls again. Attaching the long
//! list per worker would cost ~0.3 ms of every session's start.
//!
//! `clone3` carries its flags in memory a filter cannot read: a filter of its own refuses
//! it with `ENOSYS`, so the C library falls back to `clone`, whose flags are checked here.
//! `socket` is allowed only with `allowNet`, and only for `AF_INET`/`AF_INET6` (a Unix
//! socket could reach the host's daemons). `ioctl`, `prctl` and `prlimit64` are allowed
//! only for the few requests the runtime makes (non-blocking and close-on-exec flags,
//! bytes readable; naming a thread; reading a limit).
//!
//! The list was found by running the crate's whole test-suite with the filter logging
//! (`SECCOMP_RET_LOG`) rather than refusing.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::notify::{FORK_FLAGS, USERNS_FLAGS};
use super::walls::WallError;

/// System calls every worker may make, whatever their arguments.
const ALLOWED: &[libc::c_long] = &[
    // Files and descriptors (Landlock and the permission checks decide which files).
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_openat,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_lseek,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_utimensat,
    libc::SYS_getcwd,
    libc::SYS_pipe2,
    libc::SYS_eventfd2,
    // Memory.
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    // Threads, signals, time.
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_rseq,
    libc::SYS_set_tid_address,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // A signal to a thread (Landlock's signal scope keeps it within the worker).
    libc::SYS_tgkill,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getppid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getrusage,
    libc::SYS_getrandom,
    // Restricted by the lock to naming a thread and reading a limit.
    libc::SYS_prctl,
    libc::SYS_prlimit64,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    // Event loops (tokio's epoll, `poll` of the standard library).
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    // Traffic on descriptors the worker already has (its channel; with `allowNet` its
    // internet sockets): no new socket comes from these.
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
];

/// The older calls x86_64 keeps beside their `*at` forms (the C library still uses some).
#[cfg(target_arch = "x86_64")]
const ALLOWED_X86_64: &[libc::c_long] = &[
    libc::SYS_open,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_readlink,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_unlink,
    libc::SYS_rename,
    libc::SYS_dup2,
    libc::SYS_pipe,
    libc::SYS_poll,
    libc::SYS_select,
    libc::SYS_epoll_wait,
    libc::SYS_getrlimit,
    libc::SYS_time,
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_X86_64: &[libc::c_long] = &[];

/// Calls a session with `allowNet` also needs (its sockets' set-up; DNS and TLS).
const ALLOWED_WITH_NET: &[libc::c_long] = &[libc::SYS_connect, libc::SYS_setsockopt];

/// Calls only the zygote and a worker's set-up make (forking and reaping, the walls
/// themselves, dropping the identity): allowed by the allowlist, refused by the lock.
const SETUP_ONLY: &[libc::c_long] = &[
    libc::SYS_wait4,
    libc::SYS_pidfd_open,
    libc::SYS_kill,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self,
    libc::SYS_setgroups,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_capset,
    libc::SYS_capget,
    libc::SYS_seccomp,
];
#[cfg(target_arch = "x86_64")]
const SETUP_ONLY_X86_64: &[libc::c_long] = &[libc::SYS_setrlimit];
#[cfg(not(target_arch = "x86_64"))]
const SETUP_ONLY_X86_64: &[libc::c_long] = &[];

/// `ioctl` requests the runtime makes: non-blocking and close-on-exec flags, bytes readable.
const IOCTLS: &[libc::c_ulong] = &[libc::FIONBIO, libc::FIOCLEX, libc::FIONCLEX, libc::FIONREAD];

/// `clone` flags that would make a new namespace.
const NAMESPACE_FLAGS: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP;

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, WallError> {
    Ok(SeccompRule::new(conditions)?)
}

fn arg(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, WallError> {
    Ok(SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)?)
}

fn arg32(index: u8, value: u64) -> Result<SeccompCondition, WallError> {
    Ok(SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)?)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    otherwise: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, WallError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    Ok(SeccompFilter::new(rules, otherwise, matched, arch)?.try_into()?)
}

/// The allowlist, installed by the zygote and so inherited by every worker: what a worker
/// needs with or without `allowNet`, and what the zygote and a worker's set-up need (see
/// [`SETUP_ONLY`]), which the lock filter takes away again before guest code.
fn allowlist() -> Result<BpfProgram, WallError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_X86_64)
        .chain(ALLOWED_WITH_NET)
        .chain(SETUP_ONLY)
        .chain(SETUP_ONLY_X86_64)
        .map(|&call| (call, Vec::new()))
        .collect();
    // Refused with ENOSYS by the filter installed before this one (see `install_in_zygote`).
    rules.insert(libc::SYS_clone3, Vec::new());
    // No namespace from `clone`, ever; a new process only until the lock (the zygote
    // forks), and then only the live fork's copy, which the host must let through.
    rules.insert(libc::SYS_clone, vec![rule(vec![arg(0, SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS as u64), 0)?])?]);
    // A user namespace alone: a live fork's copy entering its own (the host must let it
    // through, see `notify`).
    rules.insert(libc::SYS_unshare, vec![rule(vec![arg(0, SeccompCmpOp::Eq, USERNS_FLAGS)?])?]);
    rules.insert(
        libc::SYS_ioctl,
        IOCTLS.iter().map(|&request| rule(vec![arg32(1, request)?])).collect::<Result<_, _>>()?,
    );
    // Internet sockets only: a Unix socket could reach the host's daemons. Without
    // `allowNet`, the lock refuses every socket.
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![arg32(0, libc::AF_INET as u64)?])?, rule(vec![arg32(0, libc::AF_INET6 as u64)?])?],
    );
    compile(rules, refusal(), SeccompAction::Allow)
}

/// Calls of [`SETUP_ONLY`] a live fork's copy makes after the lock, with the arguments
/// it makes them with (see [`lock`]).
const FORK_SETUP: &[libc::c_long] = &[libc::SYS_setresuid, libc::SYS_setresgid, libc::SYS_capset, libc::SYS_capget];

/// The lock, installed by each worker once its walls are up: refuses, with `EPERM`, what
/// only the set-up needed, a process that is neither a thread nor a live fork's copy
/// (which `notify` gates), every `prctl` but naming a thread and arming the death signal,
/// setting a limit, and (`net` false) every socket.
///
/// A live fork's copy becomes its session's uid in its own user namespace: `setresuid`
/// and `setresgid` stay allowed with all three ids 0 (which outside such a namespace a
/// worker without capabilities is refused by the kernel), and `capset` (which can only
/// lower what a worker holds) and `capget` for it to drop the namespace's capabilities
/// and check they are gone.
fn lock(net: bool) -> Result<BpfProgram, WallError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = SETUP_ONLY
        .iter()
        .chain(SETUP_ONLY_X86_64)
        .filter(|call| !FORK_SETUP.contains(call))
        .map(|&call| (call, Vec::new()))
        .collect();
    for call in [libc::SYS_setresuid, libc::SYS_setresgid] {
        let not_root = (0..3).map(|index| rule(vec![arg(index, SeccompCmpOp::Ne, 0)?])).collect::<Result<_, _>>()?;
        rules.insert(call, not_root);
    }
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![
            arg(0, SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64), 0)?,
            arg(0, SeccompCmpOp::Ne, FORK_FLAGS)?,
        ])?],
    );
    rules.insert(
        libc::SYS_prctl,
        vec![rule(vec![
            arg(0, SeccompCmpOp::Ne, libc::PR_SET_NAME as u64)?,
            arg(0, SeccompCmpOp::Ne, libc::PR_GET_NAME as u64)?,
            arg(0, SeccompCmpOp::Ne, libc::PR_SET_PDEATHSIG as u64)?,
        ])?],
    );
    // A limit may be read (a null new limit), never set.
    rules.insert(libc::SYS_prlimit64, vec![rule(vec![arg(2, SeccompCmpOp::Ne, 0)?])?]);
    if !net {
        for call in [libc::SYS_socket, libc::SYS_socketpair].iter().chain(ALLOWED_WITH_NET) {
            rules.insert(*call, Vec::new());
        }
    }
    compile(rules, SeccompAction::Allow, refusal())
}

/// What a call off the list gets.
fn refusal() -> SeccompAction {
    SeccompAction::Errno(libc::EPERM as u32)
}

/// The worker's syscall filters. Attaching a long allowlist costs the kernel ~0.3 ms (it
/// evaluates the filter for every syscall number to cache what is always allowed), so the
/// zygote attaches it once, for itself and every worker it forks; each worker then only
/// attaches the short lock matching its session, compiled here once too.
pub(crate) struct SyscallFilters {
    lock_offline: BpfProgram,
    lock_online: BpfProgram,
    fork_gate: BpfProgram,
}

impl SyscallFilters {
    /// Compiles the locks of sessions without and with `allowNet`, and the live fork's
    /// gate (see `notify`).
    pub fn compile() -> Result<Self, WallError> {
        Ok(SyscallFilters { lock_offline: lock(false)?, lock_online: lock(true)?, fork_gate: super::notify::filter()? })
    }

    /// Attaches the live fork's gate to this (single-threaded) worker, before the lock:
    /// its listener, for the host.
    pub fn gate_forks(&self) -> Result<std::os::fd::OwnedFd, WallError> {
        super::notify::attach(&self.fork_gate)
    }

    /// Installs, on the (single-threaded) zygote, the filter refusing `clone3` with
    /// `ENOSYS`, then the allowlist. The allowlist lets `clone3` through so that the first
    /// filter's `ENOSYS` is the answer: the kernel runs every filter and takes the strictest
    /// action.
    pub fn install_in_zygote() -> Result<(), WallError> {
        let clone3: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
        seccompiler::apply_filter(&compile(clone3, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32))?)?;
        seccompiler::apply_filter(&allowlist()?)?;
        Ok(())
    }

    /// Installs the lock of a session without or with `allowNet` on every thread of the
    /// worker (TSYNC).
    pub fn lock(&self, net: bool) -> Result<(), WallError> {
        seccompiler::apply_filter_all_threads(if net { &self.lock_online } else { &self.lock_offline })?;
        Ok(())
    }
}
