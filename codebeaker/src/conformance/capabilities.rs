//! The checks that depend on what a session declares it can do (see the capabilities
//! contract in the parent module): each declared capability must hold, and each
//! undeclared one must be refused clearly or be absent, never half there.

use base64::Engine as _;
use futures::StreamExt as _;

use super::{ok, Suite};
use crate::backend::OutputStream;
use crate::command::{Command, ExecuteShell};
use crate::error::ErrorKind;
use crate::manager::{ExecEvent, SessionManager};
use crate::result::{CommandOutcome, CommandResult};
use crate::workspace::WorkspacePath;

/// MIME types whose `data` is text rather than base64.
fn is_text_mime(mime: &str) -> bool {
    mime.starts_with("text/") || mime.ends_with("+xml") || mime.ends_with("/json")
}

impl Suite {
    /// The session info declares the backend's capabilities for the language, the same
    /// in the answer to create, in `info` and in `list`, and as a camelCase
    /// `capabilities` object on the wire; `stdin` is only declared with `shell`.
    pub async fn capabilities_reported(&self) {
        let manager = self.manager();
        let created = manager.create(crate::SessionConfig::new(self.language)).await.expect("create");
        let expected = self.backend.capabilities(self.language);
        assert_eq!(created.capabilities, expected, "session.create reports the backend's capabilities");
        assert!(
            !expected.stdin || expected.shell,
            "stdin is a property of execute_shell: {expected:?} declares it alone"
        );
        assert_eq!(Self::declared(&manager, &created.session_id), expected, "info reports them too");
        let listed = manager.list();
        assert!(listed.iter().all(|s| s.capabilities == expected), "list reports them too: {listed:?}");
        let json = serde_json::to_value(&created).expect("session info serializes");
        let wire = &json["capabilities"];
        for (key, value) in [
            ("persistentState", expected.persistent_state),
            ("stdin", expected.stdin),
            ("streaming", expected.streaming),
            ("richOutputs", expected.rich_outputs),
            ("shell", expected.shell),
            ("processes", expected.processes),
            ("pty", expected.pty),
        ] {
            assert_eq!(wire[key], value, "capabilities.{key} on the wire: {json}");
        }
        manager.close(&created.session_id).await.expect("close");
    }

    /// `execute_shell` where `shell` is declared: argv without a shell, exit codes,
    /// stderr, working directory, env and output caps. Refused with `Unsupported` otherwise.
    pub async fn shell(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        if Self::declared(&manager, &id).shell {
            Self::posix_shell(&manager, &id).await;
        } else {
            for command in [Command::shell("echo", ["hi"]), Command::shell("sh", ["-c", "true"])] {
                let refused = Self::run(&manager, &id, command).await;
                assert!(
                    refused.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::Unsupported) && !refused.success,
                    "a session without `shell` refuses execute_shell with Unsupported: {:?}",
                    refused.to_json()
                );
            }
        }
        manager.close(&id).await.expect("close");
    }

    async fn posix_shell(manager: &SessionManager, id: &str) {
        let shell = |script: &str| Command::shell("sh", ["-c", script]);
        let result = ok(Self::run(manager, id, shell("echo out; echo err >&2; exit 3")).await, "sh");
        let CommandResult::ExecuteShell(r) = &result else { panic!("{result:?}") };
        assert_eq!(
            (r.exit_code, r.stdout.as_str(), r.stderr.as_str()),
            (3, "out\n", "err\n"),
            "non-zero exit is a result, not a failure"
        );
        let literal = ok(Self::run(manager, id, Command::shell("echo", ["$HOME", "*", "a b"])).await, "echo");
        assert!(
            matches!(&literal, CommandResult::ExecuteShell(r) if r.stdout == "$HOME * a b\n"),
            "args reach the program verbatim: {literal:?}"
        );
        ok(Self::run(manager, id, Command::create_directory("sub").unwrap()).await, "mkdir");
        let mut pwd = ExecuteShell::new("pwd", Vec::<String>::new());
        pwd.working_directory = WorkspacePath::new("/workspace/sub").unwrap();
        let here = ok(Self::run(manager, id, Command::ExecuteShell(pwd)).await, "pwd");
        assert!(matches!(&here, CommandResult::ExecuteShell(r) if r.stdout == "/workspace/sub\n"), "{here:?}");
        let mut env = ExecuteShell::new("sh", ["-c", "echo $GREETING"]);
        env.env.insert("GREETING".into(), "hi there".into());
        let greeted = ok(Self::run(manager, id, Command::ExecuteShell(env)).await, "env");
        assert!(matches!(&greeted, CommandResult::ExecuteShell(r) if r.stdout == "hi there\n"), "{greeted:?}");
        let flood = ok(Self::run(manager, id, shell("head -c 3000000 /dev/zero | tr '\\0' x")).await, "flood");
        let CommandResult::ExecuteShell(flood) = &flood else { panic!("{flood:?}") };
        let limit = manager.config().output_limit;
        assert!(
            flood.truncated && flood.stdout.len() == limit,
            "stdout capped at {limit} bytes: truncated={} len={}",
            flood.truncated,
            flood.stdout.len()
        );
        let missing = Self::run(manager, id, Command::shell("no-such-program-xyz", Vec::<String>::new())).await;
        let text = format!("{:?}", missing.to_json());
        assert!(text.contains("no-such-program-xyz"), "a missing program is named in the answer: {text}");
    }

    /// `stdin` of `execute_shell` reaches the program where `stdin` is declared; where only
    /// `shell` is, a non-empty `stdin` is refused with `Unsupported` rather than dropped.
    /// (Without `shell`, [`Suite::shell`] already checks that every `execute_shell` is refused.)
    pub async fn stdin(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let declared = Self::declared(&manager, &id);
        let mut cat = ExecuteShell::new("cat", Vec::<String>::new());
        cat.stdin = Some("from stdin\nline two\n".into());
        let outcome = Self::run(&manager, &id, Command::ExecuteShell(cat)).await;
        if declared.stdin {
            let echoed = ok(outcome, "cat with stdin");
            assert!(
                matches!(&echoed, CommandResult::ExecuteShell(r) if r.stdout == "from stdin\nline two\n" && r.exit_code == 0),
                "stdin reaches the program, and its end is an end of file: {echoed:?}"
            );
        } else if declared.shell {
            assert!(
                outcome.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::Unsupported) && !outcome.success,
                "a session without `stdin` refuses a non-empty stdin with Unsupported: {:?}",
                outcome.to_json()
            );
        }
        manager.close(&id).await.expect("close");
    }

    /// Where `persistent_state` is declared, a function defined by one `execute_code` is
    /// callable in the next; otherwise each `execute_code` starts afresh.
    pub async fn persistent_state(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        ok(Self::run(&manager, &id, Command::code(&self.programs.define_state)).await, "define_state");
        ok(Self::run(&manager, &id, Command::code(&self.programs.hello)).await, "a command in between");
        let used = Self::run(&manager, &id, Command::code(&self.programs.use_state)).await;
        if Self::declared(&manager, &id).persistent_state {
            assert!(
                used.success && used.to_json()["result"] == "42",
                "state defined by one execute_code is usable in a later one: {:?}",
                used.to_json()
            );
        } else {
            assert!(
                !used.success,
                "the session declares no persistent state, yet a later execute_code used it: {:?}",
                used.to_json()
            );
        }
        manager.close(&id).await.expect("close");
    }

    /// Where `streaming` is declared, output arrives in several chunks before the result
    /// and the chunks add up to its output; either way the stream ends with the result.
    pub async fn streaming(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let declared = Self::declared(&manager, &id).streaming;
        let mut events = manager.execute_stream(&id, Command::code(&self.programs.counts), None);
        let mut chunks = Vec::new();
        let mut outcome: Option<CommandOutcome> = None;
        while let Some(event) = events.next().await {
            assert!(outcome.is_none(), "an event came after Finished: {event:?}");
            match event {
                ExecEvent::Output(chunk) => {
                    assert_eq!(chunk.stream, OutputStream::Stdout, "{chunk:?}");
                    chunks.push(chunk.data);
                }
                ExecEvent::Finished(result) => outcome = Some(result.expect("streamed command ran")),
            }
        }
        let outcome = outcome.expect("the stream ends with Finished");
        let expected = "line 1\nline 2\nline 3\nline 4\nline 5";
        assert_eq!(outcome.to_json()["result"], expected, "{:?}", outcome.to_json());
        if declared {
            assert!(
                chunks.len() >= 2,
                "a streaming session delivers output as it is printed, not in one piece at the end: {chunks:?}"
            );
            assert_eq!(chunks.concat().trim_end(), expected, "streamed chunks add up to the output");
        }
        manager.close(&id).await.expect("close");
    }

    /// Where `rich_outputs` is declared, [`super::Programs::rich`] yields well-formed
    /// `outputs` entries; otherwise `execute_code` results carry none.
    pub async fn rich_outputs(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        if !Self::declared(&manager, &id).rich_outputs {
            let hello = ok(Self::run(&manager, &id, Command::code(&self.programs.hello)).await, "hello");
            assert!(
                matches!(&hello, CommandResult::ExecuteCode(c) if c.outputs.is_empty()),
                "a session without `rich_outputs` returns no outputs: {hello:?}"
            );
            manager.close(&id).await.expect("close");
            return;
        }
        let program = self.programs.rich.as_ref().unwrap_or_else(|| {
            panic!("{} declares rich_outputs for {}: Programs::rich must be given", self.backend.name(), self.language)
        });
        let outcome = Self::run(&manager, &id, Command::code(program)).await;
        let json = outcome.to_json();
        let result = ok(outcome, "the rich program");
        let CommandResult::ExecuteCode(code) = &result else { panic!("execute_code gave {result:?}") };
        assert!(!code.outputs.is_empty(), "the rich program produced no outputs: {json}");
        assert!(json["outputs"].is_array(), "outputs travel on the wire as a list: {json}");
        for output in &code.outputs {
            assert!(output.mime.contains('/') && !output.data.is_empty(), "a malformed output: {output:?}");
            if !is_text_mime(&output.mime) {
                let decoded = base64::engine::general_purpose::STANDARD.decode(&output.data);
                assert!(
                    decoded.as_ref().is_ok_and(|d| !d.is_empty()),
                    "{} data is not base64: {decoded:?}",
                    output.mime
                );
            }
        }
        manager.close(&id).await.expect("close");
    }
}
