//! The container a sandbox runs in, hardened by default.
//!
//! Every setting here is a security decision; none can be changed by sandboxed code:
//! - network mode `none` (no interface but loopback);
//! - memory limit = the session's accepted `memoryLimitMB`, with memory+swap equal (no swap);
//! - a hard CPU quota (`NanoCpus`, the operator's `cpus`) beside the session's `cpuShares`
//!   weight, a pids limit (fork bombs), no core dumps, and `RLIMIT_FSIZE` = the workspace
//!   size (no single file can outgrow the workspace, wherever it is written);
//! - the agent ([`AgentBinary`], bind-mounted read-only from the host or baked into the
//!   image) is the container's PID 1 (no Docker init: it reaps orphans itself), talking
//!   over the attach stream (stdin/stdout, no TTY, log driver `none`). It runs as root
//!   *inside* the container with every capability dropped but [`AGENT_CAPABILITIES`]
//!   (`SETUID`/`SETGID` to start guest processes and take the guest's file-system
//!   identity, `KILL` to kill guest trees, `SYS_NICE` to run above them) and is not
//!   dumpable;
//! - guest code (commands, interpreters, compilers) runs as a uid of the sandbox's own,
//!   with no capability: it can neither signal, trace nor open `/proc/1/fd` of the agent,
//!   so the protocol channel is the agent's alone. The uid (also the gid) is drawn at
//!   random from [`DockerConfig::sandbox_uids`] (far above host accounts), recorded as
//!   the container's [`LABEL_UID`], checked against every live container on the engine
//!   that carries one, and passed to the agent (`--user UID:GID`) and to the workspace
//!   volume's options: per-uid kernel limits (inotify instances, message queues,
//!   `RLIMIT_NPROC`) of one sandbox never touch another's or a host user's, and custom
//!   images need no particular user;
//! - `no-new-privileges` (setuid binaries gain nothing);
//! - a read-only root filesystem. The writable places are a size-limited `/tmp` (tmpfs)
//!   and `/workspace`, an anonymous volume whose local driver mounts a tmpfs of the
//!   operator's workspace size owned by the sandbox's uid. Removing the container with
//!   `v=true` removes the volume.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, ResourcesUlimits,
};
use codebeaker::{Language, SessionLimits, WORKSPACE_ROOT};

use crate::config::{AgentBinary, DockerConfig, AGENT_PATH_IN_CONTAINER};
use crate::egress;

/// Label naming the backend instance (see [`DockerConfig::owner`]).
pub const LABEL_OWNER: &str = "org.codebeaker.owner";
/// Label holding the sandbox's language.
pub const LABEL_LANGUAGE: &str = "org.codebeaker.language";
/// Label saying what the container was created as: `session` or `pool`.
pub const LABEL_ROLE: &str = "org.codebeaker.role";
/// Label holding the uid (and gid) the container's guest code runs as.
pub const LABEL_UID: &str = "org.codebeaker.uid";

/// The only capabilities a sandbox keeps, all for its agent (PID 1, root in the
/// container): `SETUID` and `SETGID` to start guest processes as the sandbox's uid and to
/// take that uid for file operations (`setfsuid`), `KILL` to kill the guest's process
/// trees, `SYS_NICE` to run at a higher priority than every guest process (so a fork
/// bomb under the sandbox's CPU quota cannot starve it). Guest processes lose them when
/// they switch to the sandbox's uid.
pub const AGENT_CAPABILITIES: [&str; 4] = ["SETUID", "SETGID", "KILL", "SYS_NICE"];

/// What a sandbox needs beyond the backend-wide [`DockerConfig`]: the session's image and
/// the limits the operator's policy resolved for it. A warm spare is handed out only for
/// an equal spec.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SandboxSpec {
    pub language: Language,
    pub image: String,
    pub memory_limit_mb: u64,
    pub cpu_shares: u64,
    /// Hard CPU quota in billionths of a CPU (Docker `NanoCpus`).
    pub nano_cpus: i64,
    /// Size of the `/workspace` tmpfs and `RLIMIT_FSIZE`, in bytes.
    pub workspace_bytes: u64,
    /// The operator's timings (the agent client's answer deadline among them).
    pub graces: codebeaker::Graces,
    /// The operator's extra CA bundle on the host, mounted read-only for TLS interception.
    pub ca_bundle: Option<std::path::PathBuf>,
}

impl SandboxSpec {
    /// The spec of a session of `language` in `image` under `limits`.
    pub fn new(language: Language, image: String, cpu_shares: u64, limits: &SessionLimits) -> Self {
        SandboxSpec {
            language,
            image,
            memory_limit_mb: limits.memory_mb,
            cpu_shares,
            nano_cpus: limits.nano_cpus(),
            workspace_bytes: limits.workspace_bytes,
            graces: limits.graces,
            ca_bundle: limits.net.ca_bundle.clone(),
        }
    }
}

/// Why a container was created; recorded as [`LABEL_ROLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Session,
    Pool,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Session => "session",
            Role::Pool => "pool",
        }
    }
}

/// The labels every container and volume of this backend carries.
pub(crate) fn labels(config: &DockerConfig, language: Language, role: Role) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_OWNER.to_owned(), config.owner.clone()),
        (LABEL_LANGUAGE.to_owned(), language.as_str().to_owned()),
        (LABEL_ROLE.to_owned(), role.as_str().to_owned()),
    ])
}

/// The create request of a sandbox container whose guest code runs as `uid` (and gid).
pub(crate) fn container_body(spec: &SandboxSpec, config: &DockerConfig, role: Role, uid: u32) -> ContainerCreateBody {
    let mut labels = labels(config, spec.language, role);
    labels.insert(LABEL_UID.to_owned(), uid.to_string());
    let gid = uid;
    let memory = i64::try_from(spec.memory_limit_mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
    let file_size = i64::try_from(spec.workspace_bytes).unwrap_or(i64::MAX);
    let workspace = Mount {
        target: Some(WORKSPACE_ROOT.to_owned()),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions {
            labels: Some(labels.clone()),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some("local".to_owned()),
                options: Some(HashMap::from([
                    ("type".to_owned(), "tmpfs".to_owned()),
                    ("device".to_owned(), "tmpfs".to_owned()),
                    (
                        "o".to_owned(),
                        format!("size={},uid={uid},gid={gid},mode=0755,nosuid,nodev", spec.workspace_bytes),
                    ),
                ])),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // `exec` because compilers (go run, mcs) put their binaries in /tmp.
    let tmp = format!("rw,exec,nosuid,nodev,size={}m,mode=1777", config.tmp_size_mb);
    let mut mounts = vec![workspace];
    if let AgentBinary::Host(path) = &config.agent {
        mounts.push(Mount {
            target: Some(AGENT_PATH_IN_CONTAINER.to_owned()),
            source: Some(path.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if let Some(bundle) = &spec.ca_bundle {
        mounts.push(Mount {
            target: Some(egress::CA_BUNDLE_PATH.to_owned()),
            source: Some(bundle.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }
    // Proxy settings wherever the agent's proxy answers: with egress off it refuses at
    // once, saying so, instead of a program waiting on a network that is not there.
    let env: Vec<String> = egress::session_env(spec.language, true, spec.ca_bundle.is_some())
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    // Custom images may have an entrypoint, a CMD or a USER of their own: the main
    // process is ours, as root in the container, and it runs guest code as `uid`.
    let cmd = vec![AGENT_PATH_IN_CONTAINER.to_owned(), "--user".to_owned(), format!("{uid}:{gid}")];
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec![]),
        cmd: Some(cmd),
        env: (!env.is_empty()).then_some(env),
        user: Some("0:0".to_owned()),
        // The agent's protocol rides stdin/stdout: open, never closed after one attach,
        // no TTY (so stdout and stderr stay apart), and nothing logged.
        open_stdin: Some(true),
        stdin_once: Some(false),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        working_dir: Some(WORKSPACE_ROOT.to_owned()),
        hostname: Some("sandbox".to_owned()),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            memory: Some(memory),
            memory_swap: Some(memory),
            cpu_shares: i64::try_from(spec.cpu_shares).ok(),
            nano_cpus: Some(spec.nano_cpus),
            pids_limit: Some(config.pids_limit),
            ulimits: Some(vec![
                ResourcesUlimits { name: Some("core".to_owned()), soft: Some(0), hard: Some(0) },
                ResourcesUlimits { name: Some("fsize".to_owned()), soft: Some(file_size), hard: Some(file_size) },
            ]),
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(AGENT_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([("/tmp".to_owned(), tmp)])),
            mounts: Some(mounts),
            log_config: Some(HostConfigLogConfig { typ: Some("none".to_owned()), config: None }),
            // The agent is PID 1 and reaps orphans: no Docker init holding its channel.
            init: Some(false),
            ipc_mode: Some("private".to_owned()),
            // Under host memory pressure, sandboxes go before anything else.
            oom_score_adj: Some(500),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SandboxSpec {
        let mut config = codebeaker::SessionConfig::new(Language::Python);
        config.memory_limit_mb = 256;
        let policy = codebeaker::Policy { cpus: 0.5, workspace_mb: 64, ..Default::default() };
        let limits = policy.limits_for(&config).expect("limits");
        SandboxSpec::new(Language::Python, "codebeaker-python:latest".into(), 512, &limits)
    }

    const UID: u32 = 2_000_123_456;

    #[test]
    fn defaults_are_hardened() {
        let config = DockerConfig::default().with_agent(AgentBinary::InImage);
        let body = container_body(&spec(), &config, Role::Session, UID);
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.memory, Some(256 << 20));
        assert_eq!(host.memory_swap, host.memory, "no swap beyond the memory limit");
        assert_eq!(host.cpu_shares, Some(512));
        assert_eq!(host.nano_cpus, Some(500_000_000), "a hard quota of the operator's 0.5 CPU");
        assert_eq!(host.pids_limit, Some(256));
        let ulimits = host.ulimits.expect("ulimits");
        let fsize = ulimits.iter().find(|u| u.name.as_deref() == Some("fsize")).expect("RLIMIT_FSIZE");
        assert_eq!((fsize.soft, fsize.hard), (Some(64 << 20), Some(64 << 20)), "no file beyond the workspace size");
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            host.cap_add,
            Some(vec!["SETUID".to_owned(), "SETGID".to_owned(), "KILL".to_owned(), "SYS_NICE".to_owned()])
        );
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_owned()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.init, Some(false), "the agent is PID 1: no init holds its channel");
        assert!(host.privileged.is_none() && host.binds.is_none(), "no privilege, no host paths");
        let cmd = body.cmd.expect("cmd");
        assert_eq!(cmd, [AGENT_PATH_IN_CONTAINER, "--user", "2000123456:2000123456"], "guest code as its own uid");
        assert_eq!(body.labels.expect("labels").get(LABEL_UID).map(String::as_str), Some("2000123456"));
        let mounts = host.mounts.expect("mounts");
        assert_eq!(mounts[0].target.as_deref(), Some("/workspace"));
        let options =
            mounts[0].volume_options.as_ref().and_then(|o| o.driver_config.as_ref()).and_then(|d| d.options.as_ref());
        let o = options.and_then(|o| o.get("o")).expect("tmpfs options");
        assert!(o.contains(&format!("size={}", 64 << 20)) && o.contains("uid=2000123456,gid=2000123456"), "{o}");
    }

    #[test]
    fn the_agent_is_mounted_read_only_and_talks_over_stdin() {
        let config = DockerConfig::default().with_agent(AgentBinary::Host("/opt/build/codebeaker-agent".into()));
        let body = container_body(&spec(), &config, Role::Session, UID);
        assert_eq!(body.cmd.as_ref().map(|c| c[0].as_str()), Some(AGENT_PATH_IN_CONTAINER));
        assert_eq!(body.user.as_deref(), Some("0:0"), "root in the container, its capabilities cut to three");
        assert_eq!((body.open_stdin, body.stdin_once, body.tty), (Some(true), Some(false), Some(false)));
        let host = body.host_config.expect("host config");
        assert_eq!(host.log_config.and_then(|l| l.typ).as_deref(), Some("none"), "nothing logged twice");
        let mounts = host.mounts.expect("mounts");
        let agent = mounts.iter().find(|m| m.target.as_deref() == Some(AGENT_PATH_IN_CONTAINER)).expect("agent mount");
        assert_eq!(agent.source.as_deref(), Some("/opt/build/codebeaker-agent"));
        assert_eq!((agent.typ, agent.read_only), (Some(MountType::BIND), Some(true)));
        assert_eq!(host.network_mode.as_deref(), Some("none"), "the agent needs no network");
    }

    #[test]
    fn every_container_is_labelled_with_its_owner() {
        let config = DockerConfig::default().with_owner("test-owner");
        let body = container_body(&spec(), &config, Role::Pool, UID);
        let labels = body.labels.expect("labels");
        assert_eq!(labels.get(LABEL_OWNER).map(String::as_str), Some("test-owner"));
        assert_eq!(labels.get(LABEL_ROLE).map(String::as_str), Some("pool"));
        assert_eq!(labels.get(LABEL_LANGUAGE).map(String::as_str), Some("python"));
    }
}
