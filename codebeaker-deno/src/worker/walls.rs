//! The kernel's walls around a worker, beneath the permission checks of the ops: a bug in
//! those checks must not be enough to reach a file outside the grant, start a process or
//! open a socket the session was not granted.
//!
//! - At start, before the engine exists: `PR_SET_NO_NEW_PRIVS`, no core dumps, `SIGXFSZ`
//!   ignored (a write over `RLIMIT_FSIZE` then fails with `EFBIG` instead of killing).
//! - At assignment, before any guest code, while the worker has a single thread (Landlock
//!   restricts the calling thread and its future children only), in this order:
//!   1. rlimits sized from the session (`RLIMIT_DATA` from `memoryLimitMB` plus the
//!      runtime's overhead, `RLIMIT_FSIZE` = the workspace quota, `RLIMIT_NOFILE`);
//!   2. a Landlock ruleset (opened while still root, so a grant the session's uid cannot
//!      open still gives a clear `EACCES` at use rather than a refused session): the
//!      filesystem confined to the workspace's lineage directory (the workspace and its
//!      live forks', each of its own uid) and the granted paths; TCP `bind` refused,
//!      TCP `connect` refused without `allowNet` and limited to its ports when every
//!      `allowNet` entry names one (ABI 4+); signals and abstract Unix sockets scoped to
//!      the worker (ABI 6+);
//!   3. the session's uid and no capability left (`privileges`);
//!   4. the live fork's gate, whose listener goes to the host (`notify`);
//!   5. the seccomp lock on every thread, under the allowlist the zygote attached before
//!      forking (`syscalls`).
//! - A live fork's copy inherits them all and, before its first cell, takes its own
//!   session's uid in a user namespace of its own ([`for_fork`]).
//!
//! Landlock is best effort where the kernel lacks it (logged once); the identity, the
//! seccomp filter and the rlimits are required: a worker that cannot raise them refuses the
//! session.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Once;

use codebeaker::{Allowlist, WORKSPACE_ROOT};
use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use super::ipc::WorkerSetup;
use super::syscalls::SyscallFilters;

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
/// The port of DNS over TCP, open beside `allowNet`'s ports (a resolver falls back to TCP
/// for long answers).
const DNS_PORT: u16 = 53;

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
    /// The identity or capabilities are not what dropping them should have left.
    #[error("cannot drop the worker's privileges: {0}")]
    Capabilities(&'static str),
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
/// Returns the listener of the live fork's gate (see `notify`), for the host.
pub(crate) fn for_session(setup: &WorkerSetup, filters: &SyscallFilters) -> Result<OwnedFd, WallError> {
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
    confine(setup, net)?;
    super::privileges::drop_to(setup.identity)?;
    let gate = filters.gate_forks()?;
    filters.lock(net)?;
    Ok(gate)
}

/// Walls of a live fork's copy, which inherited every wall of its original (rlimits,
/// Landlock, seccomp, no capability): in its own user namespace, whose map the host wrote,
/// it becomes its session's uid and drops the namespace's capabilities. The copy is
/// single-threaded by its making (a `clone` copies the calling thread only; Landlock
/// hides `/proc` from it, so it could not count its threads anyway); `zygote` is its
/// parent.
pub(crate) fn for_fork(setup: &WorkerSetup, zygote: libc::pid_t) -> Result<(), WallError> {
    super::privileges::become_mapped(setup.identity, zygote)
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

/// The TCP ports `connect` may reach: `None` when any port may be (`allowNet` all, or an
/// entry without a port), else the ports its entries name plus DNS; empty without `allowNet`.
fn connect_ports(allow_net: &Allowlist) -> Option<Vec<u16>> {
    match allow_net {
        Allowlist::None => Some(Vec::new()),
        Allowlist::All => None,
        Allowlist::Only(entries) => {
            let mut ports = entries.iter().map(|entry| explicit_port(entry)).collect::<Option<Vec<u16>>>()?;
            ports.push(DNS_PORT);
            ports.sort_unstable();
            ports.dedup();
            Some(ports)
        }
    }
}

/// The port an `allowNet` entry names (`host:443`, `[::1]:8080`), if any.
fn explicit_port(entry: &str) -> Option<u16> {
    let port = match entry.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once("]:")?.1,
        None => {
            let (host, port) = entry.rsplit_once(':')?;
            if host.contains(':') {
                // A bare IPv6 address: its colons name no port.
                return None;
            }
            port
        }
    };
    port.parse().ok()
}

fn confine(setup: &WorkerSetup, net: bool) -> Result<(), WallError> {
    let all = AccessFs::from_all(LANDLOCK_ABI);
    let read = AccessFs::from_read(LANDLOCK_ABI);
    let hosts = |paths: &[String]| paths.iter().map(|p| host_path(&setup.workspace, p)).collect::<Vec<_>>();
    let mut readable = hosts(&setup.permissions.allow_read);
    if net {
        readable.extend(RESOLVER_FILES.iter().chain(LIBRARY_DIRS).map(PathBuf::from));
    }
    let mut writable = hosts(&setup.permissions.allow_write);
    // The lineage's directory, not the workspace alone: a live fork's copy inherits this
    // rule and must reach its own workspace beside its original's (the uids keep them
    // apart; see `workspaces`).
    writable.push(crate::workspaces::lineage_of(&setup.workspace).to_path_buf());
    let ports = connect_ports(&setup.permissions.allow_net);
    let mut tcp: BitFlags<AccessNet> = AccessNet::BindTcp.into();
    if ports.is_some() {
        tcp |= AccessNet::ConnectTcp;
    }
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .handle_access(tcp)?
        .scope(Scope::from_all(LANDLOCK_ABI))?
        .create()?
        .add_rules(path_beneath_rules(readable, read))?
        .add_rules(path_beneath_rules(writable, all))?;
    for port in ports.unwrap_or_default() {
        ruleset = ruleset.add_rule(NetPort::new(port, AccessNet::ConnectTcp))?;
    }
    let status = ruleset.restrict_self()?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            tracing::warn!(status = ?status.ruleset, "Landlock is not fully enforced by this kernel: deno workers rely on the permission checks and seccomp for the filesystem");
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_is_limited_only_when_every_allow_net_entry_names_a_port() {
        assert_eq!(connect_ports(&Allowlist::None), Some(vec![]));
        assert_eq!(connect_ports(&Allowlist::All), None);
        let only = |entries: &[&str]| Allowlist::Only(entries.iter().map(|e| e.to_string()).collect());
        assert_eq!(
            connect_ports(&only(&["example.com:443", "[::1]:8080", "10.0.0.1:80"])),
            Some(vec![53, 80, 443, 8080])
        );
        assert_eq!(connect_ports(&only(&["example.com:443", "example.org"])), None);
        // A bare IPv6 address names no port.
        assert_eq!(connect_ports(&only(&["::1"])), None);
        assert_eq!(connect_ports(&only(&["host:notaport"])), None);
    }
}
