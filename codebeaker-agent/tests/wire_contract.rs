//! The wire format, pinned: every message of protocol version 1 against its recorded
//! bytes in `tests/fixtures/protocol-v1.txt`. A change that old peers would misread fails
//! here, not in a user's session. Adding an optional field changes the encoding of the
//! example that sets it: re-record deliberately with `CODEBEAKER_UPDATE_FIXTURES=1`, and
//! only when the old line still decodes to the old value (checked below for every line).

use std::collections::{BTreeMap, BTreeSet};

use codebeaker_agent::protocol::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/protocol-v1.txt");

fn host_examples() -> Vec<(&'static str, HostMessage)> {
    let mut exec = ExecRequest::new(ExecCommand::Argv(vec!["ls".into(), "-la".into()]), 5000, 1 << 20);
    exec.env.insert("A".into(), "1".into());
    exec.cwd = Some("src".into());
    exec.stdin = Some(Base64Bytes(b"input".to_vec()));
    exec.rlimits = Rlimits { fsize: Some(1 << 30), nofile: Some(1024), nproc: None };
    exec.grace_ms = 1000;
    vec![
        ("host.hello", HostMessage::Hello { protocol: 1, host: "0.1.0".into(), tunnel_decision_ms: 20_000 }),
        ("host.exec.argv", HostMessage::Exec(exec)),
        ("host.exec.shell", HostMessage::Exec(ExecRequest::new(ExecCommand::Shell("echo hi".into()), 1000, 100))),
        (
            "host.fs.write",
            HostMessage::Fs(FsRequest::Write { path: "a/b.txt".into(), data: Base64Bytes(vec![0, 255]), append: true }),
        ),
        (
            "host.fs.read",
            HostMessage::Fs(FsRequest::Read { path: "a.txt".into(), max_bytes: 16, offset: 0, length: None }),
        ),
        (
            "host.fs.read_range",
            HostMessage::Fs(FsRequest::Read { path: "a.txt".into(), max_bytes: 16, offset: 4, length: Some(8) }),
        ),
        ("host.fs.download", HostMessage::Fs(FsRequest::Download { path: "big.bin".into(), offset: 7 })),
        ("host.fs.upload", HostMessage::Fs(FsRequest::Upload { path: "big.bin".into(), append: true })),
        ("host.fs.archive", HostMessage::Fs(FsRequest::Archive { limit: 1 << 30 })),
        ("host.fs.unarchive", HostMessage::Fs(FsRequest::Unarchive)),
        ("host.fs.mkdir", HostMessage::Fs(FsRequest::Mkdir { path: "d".into() })),
        ("host.fs.copy", HostMessage::Fs(FsRequest::Copy { from: "a".into(), to: "b".into(), max_bytes: 9 })),
        ("host.fs.delete", HostMessage::Fs(FsRequest::Delete { path: "a".into() })),
        ("host.fs.list", HostMessage::Fs(FsRequest::List { path: ".".into() })),
        ("host.fs.stat", HostMessage::Fs(FsRequest::Stat { path: "a".into() })),
        (
            "host.run_code",
            HostMessage::RunCode(RunCodeRequest {
                language: CodeLanguage::Python,
                code: "1+1".into(),
                timeout_ms: 2000,
                grace_ms: 1000,
                drain_ms: 500,
                output_cap: 4096,
                rlimits: Rlimits::default(),
            }),
        ),
        ("host.exec.pty", HostMessage::Exec(pty_exec())),
        ("host.cancel", HostMessage::Cancel),
        ("host.signal", HostMessage::Signal { signal: 15 }),
        ("host.resize", HostMessage::Resize { cols: 120, rows: 40 }),
        ("host.ping", HostMessage::Ping),
        ("host.shutdown", HostMessage::Shutdown { kill_ms: 1500 }),
        ("host.tunnel_reply", HostMessage::TunnelReply(TunnelReply { accepted: false, message: Some("no".into()) })),
        ("host.tunnel_close", HostMessage::TunnelClose { reason: None }),
    ]
}

/// An interactive shell on a terminal, with no time or output limit (a background process).
fn pty_exec() -> ExecRequest {
    let mut exec = ExecRequest::new(ExecCommand::Argv(vec!["bash".into(), "-i".into()]), u64::MAX, u64::MAX);
    exec.stdin_stream = true;
    exec.pty = Some(PtySize { cols: 80, rows: 24 });
    exec
}

fn agent_examples() -> Vec<(&'static str, AgentMessage)> {
    vec![
        (
            "agent.hello",
            AgentMessage::Hello(AgentHello { protocol: 1, agent: "0.1.0".into(), capabilities: vec!["exec".into()] }),
        ),
        ("agent.started", AgentMessage::Started { pid: 42 }),
        (
            "agent.exited",
            AgentMessage::Exited(ExecExited {
                code: Some(0),
                signal: None,
                timed_out: false,
                truncated: true,
                usage: Usage { cpu_ms: 3, max_rss_kb: 2048, output_bytes: 10 },
            }),
        ),
        ("agent.fs.written", AgentMessage::Fs(FsReply::Written { bytes: 2 })),
        ("agent.fs.read", AgentMessage::Fs(FsReply::Read { data: Base64Bytes(b"hi".to_vec()), size: 0 })),
        ("agent.fs.read_sized", AgentMessage::Fs(FsReply::Read { data: Base64Bytes(b"hi".to_vec()), size: 9 })),
        ("agent.fs.opened", AgentMessage::Fs(FsReply::Opened { size: 1 << 30 })),
        ("agent.fs.sent", AgentMessage::Fs(FsReply::Sent { bytes: 1 << 30 })),
        ("agent.fs.made", AgentMessage::Fs(FsReply::Made)),
        ("agent.fs.copied", AgentMessage::Fs(FsReply::Copied { bytes: 9 })),
        ("agent.fs.deleted", AgentMessage::Fs(FsReply::Deleted)),
        (
            "agent.fs.listed",
            AgentMessage::Fs(FsReply::Listed {
                entries: vec![FsEntry { name: "a".into(), kind: EntryKind::Symlink, size: 1 }],
            }),
        ),
        (
            "agent.fs.stat",
            AgentMessage::Fs(FsReply::Stat(FsStat { kind: EntryKind::Directory, size: 0, mode: 0o755, mtime: 1 })),
        ),
        (
            "agent.code_done",
            AgentMessage::CodeDone(CodeDone {
                error: Some(CodeError { name: "ValueError".into(), value: "boom".into(), traceback: "tb".into() }),
                outputs: vec![RichOutput { mime: "image/png".into(), data: "iVBO".into() }],
                result: Some("2".into()),
                timed_out: false,
                state_reset: true,
                truncated: false,
                usage: Some(Usage::default()),
            }),
        ),
        ("agent.pong", AgentMessage::Pong),
        ("agent.stopped", AgentMessage::Stopped { killed: 3 }),
        (
            "agent.error",
            AgentMessage::Error(ErrorReply::at(ErrorKind::NotFound, "/workspace/x", "File not found: /workspace/x")),
        ),
        ("agent.tunnel_open", AgentMessage::TunnelOpen(TunnelOpen { host: "pypi.org".into(), port: 443 })),
        ("agent.tunnel_close", AgentMessage::TunnelClose { reason: Some("eof".into()) }),
    ]
}

fn encoded() -> BTreeMap<String, String> {
    let mut lines = BTreeMap::new();
    for (name, message) in host_examples() {
        lines.insert(name.to_owned(), serde_json::to_string(&message).unwrap());
    }
    for (name, message) in agent_examples() {
        lines.insert(name.to_owned(), serde_json::to_string(&message).unwrap());
    }
    let header = FrameHeader { kind: FrameKind::Stdout, flags: FLAG_END, len: 5, id: 0x0102_0304_0506_0708 };
    lines.insert("frame.header".to_owned(), header.encode().iter().map(|b| format!("{b:02x}")).collect());
    lines
}

fn recorded() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(FIXTURE).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, body)| (name.to_owned(), body.to_owned()))
        .collect()
}

#[test]
fn every_message_encodes_exactly_as_recorded() {
    let now = encoded();
    if std::env::var_os("CODEBEAKER_UPDATE_FIXTURES").is_some() {
        let text: String = now.iter().map(|(name, body)| format!("{name} {body}\n")).collect();
        std::fs::write(FIXTURE, text).unwrap();
    }
    let recorded = recorded();
    let names: BTreeSet<_> = now.keys().chain(recorded.keys()).collect();
    for name in names {
        assert_eq!(now.get(name), recorded.get(name), "{name}: the encoding differs from {FIXTURE}");
    }
}

#[test]
fn recorded_lines_still_decode_to_the_same_messages() {
    let recorded = recorded();
    for (name, message) in host_examples() {
        let line = recorded.get(name).unwrap_or_else(|| panic!("{name} is not recorded"));
        assert_eq!(serde_json::from_str::<HostMessage>(line).unwrap(), message, "{name}");
    }
    for (name, message) in agent_examples() {
        let line = recorded.get(name).unwrap_or_else(|| panic!("{name} is not recorded"));
        assert_eq!(serde_json::from_str::<AgentMessage>(line).unwrap(), message, "{name}");
    }
}

#[test]
fn optional_fields_may_be_absent_and_unknown_fields_are_ignored() {
    let minimal: HostMessage = serde_json::from_str(
        r#"{"type":"exec","command":{"shell":"true"},"timeout_ms":1,"output_cap":2,"added_later":true}"#,
    )
    .unwrap();
    assert_eq!(minimal, HostMessage::Exec(ExecRequest::new(ExecCommand::Shell("true".into()), 1, 2)));
    // An older host sends no timings: the policy's defaults apply, never the agent's own.
    let policy = codebeaker::Policy::default();
    let HostMessage::Exec(exec) = minimal else { unreachable!() };
    assert_eq!(exec.drain_ms, policy.output_drain_ms);
    let shutdown: HostMessage = serde_json::from_str(r#"{"type":"shutdown"}"#).unwrap();
    assert_eq!(shutdown, HostMessage::Shutdown { kill_ms: policy.close_kill_ms });
    let code: HostMessage =
        serde_json::from_str(r#"{"type":"run_code","language":"python","code":"1","timeout_ms":1,"output_cap":2}"#)
            .unwrap();
    assert!(matches!(code, HostMessage::RunCode(r) if r.drain_ms == policy.interpreter_drain_ms));
    let error: AgentMessage =
        serde_json::from_str(r#"{"type":"error","kind":"from_the_future","message":"m"}"#).unwrap();
    assert!(matches!(error, AgentMessage::Error(ErrorReply { kind: ErrorKind::Unknown, .. })), "{error:?}");
}

#[test]
fn errors_map_one_to_one_onto_sdk_errors() {
    use codebeaker::Error;
    let cases = [
        (ErrorKind::NotFound, "File not found: /workspace/x"),
        (ErrorKind::AlreadyExists, "Already exists: /workspace/x"),
        (ErrorKind::PermissionDenied, "Permission denied: m"),
        (ErrorKind::IsADirectory, "Invalid input: m"),
        (ErrorKind::NotADirectory, "Invalid input: m"),
        (ErrorKind::TooLarge, "Limit reached: m"),
        (ErrorKind::NoSpace, "Limit reached: m"),
        (ErrorKind::Unsupported, "Not supported: m"),
        (ErrorKind::Internal, "Internal error: m"),
    ];
    for (kind, shown) in cases {
        let error: Error = ErrorReply::at(kind, "/workspace/x", "m").into();
        assert_eq!(error.to_string(), shown, "{kind:?}");
    }
}
