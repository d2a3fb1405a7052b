//! The behaviour every [`Backend`] must show, as async checks its own tests call.
//!
//! A backend is done when [`Suite::run_all`] passes against it. Each check drives the
//! backend through a [`SessionManager`], the way users reach it, and asserts what a user
//! would see, with the evidence in the failure message. For a custom backend:
//!
//! ```no_run
//! # async fn demo(backend: std::sync::Arc<dyn codebeaker::Backend>) {
//! use codebeaker::conformance::{Programs, Shell, Suite};
//! use codebeaker::Language;
//!
//! let programs = Programs {
//!     hello: "print('hello from codebeaker')".into(),
//!     fails: "print('partial', flush=True)\nraise ValueError('boom')".into(),
//!     spins: "while True: pass".into(),
//!     counts: "for i in range(1, 6): print(f'line {i}', flush=True)".into(),
//! };
//! Suite::new(backend, Language::Python, programs, Shell::Posix).run_all().await;
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use crate::backend::{Backend, OutputStream};
use crate::command::{Command, Encoding, ReadFile, WriteFile, WriteMode};
use crate::config::SessionConfig;
use crate::error::Error;
use crate::language::Language;
use crate::manager::{ExecEvent, ExecOptions, ManagerConfig, SessionManager, SessionState};
use crate::result::{CommandOutcome, CommandResult, EntryType};

/// Programs in the backend's language that the checks run.
#[derive(Debug, Clone)]
pub struct Programs {
    /// Prints exactly `hello from codebeaker` and a newline.
    pub hello: String,
    /// Prints `partial`, then fails with an error whose message contains `boom`.
    pub fails: String,
    /// Never finishes on its own (a busy loop).
    pub spins: String,
    /// Prints `line 1` … `line 5`, one line each.
    pub counts: String,
}

/// What `execute_shell` does in the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// Runs programs with a POSIX `sh`, `echo`, `cat`, `pwd`, `head` and `env` on `PATH`.
    Posix,
    /// Refuses with [`Error::Unsupported`] (Deno sessions).
    Unsupported,
}

/// The conformance suite for one backend and language.
pub struct Suite {
    backend: Arc<dyn Backend>,
    language: Language,
    programs: Programs,
    shell: Shell,
}

/// A command that must succeed: its typed result, or a panic that shows the outcome.
fn ok(outcome: CommandOutcome, what: &str) -> CommandResult {
    assert!(outcome.success, "{what}: expected success, got {:?}", outcome.to_json());
    outcome.result.unwrap_or_else(|| panic!("{what}: success without a result"))
}

impl Suite {
    /// A suite for `language` on `backend`.
    pub fn new(backend: Arc<dyn Backend>, language: Language, programs: Programs, shell: Shell) -> Self {
        Suite { backend, language, programs, shell }
    }

    fn manager(&self) -> SessionManager {
        SessionManager::new(vec![self.backend.clone()], ManagerConfig::default())
    }

    async fn session(&self, manager: &SessionManager) -> String {
        match manager.create(SessionConfig::new(self.language)).await {
            Ok(info) => info.session_id,
            Err(e) => panic!("creating a {} session on {} failed: {e}", self.language, self.backend.name()),
        }
    }

    async fn run(manager: &SessionManager, id: &str, command: Command) -> CommandOutcome {
        let what = format!("{command:?}");
        manager.execute(id, command, ExecOptions::default()).await.unwrap_or_else(|e| panic!("{what} did not run: {e}"))
    }

    /// Runs every check, one after another.
    pub async fn run_all(&self) {
        self.write_and_read().await;
        self.directories_and_copies().await;
        self.missing_files_and_escapes().await;
        self.execute_code().await;
        self.streaming().await;
        self.timeouts().await;
        self.shell().await;
        self.isolation().await;
        self.lifecycle().await;
        self.one_shot().await;
    }

    /// `write_file` (create, append, base64, nested parents) and `read_file` round trips.
    pub async fn write_and_read(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let written =
            ok(Self::run(&manager, &id, Command::write_file("/workspace/hello.txt", "héllo ✓")).await, "write");
        assert!(
            matches!(&written, CommandResult::WriteFile(w) if w.path == "/workspace/hello.txt" && w.bytes == 10),
            "write_file must report the absolute path and the UTF-8 byte count: {written:?}"
        );
        let append = Command::WriteFile(WriteFile {
            path: "hello.txt".into(),
            content: "\nmore".into(),
            mode: WriteMode::Append,
            encoding: Encoding::Utf8,
        });
        ok(Self::run(&manager, &id, append).await, "append");
        let read = ok(Self::run(&manager, &id, Command::read_file("hello.txt")).await, "read");
        assert!(
            matches!(&read, CommandResult::ReadFile(r) if r.content == "héllo ✓\nmore" && r.bytes == 15),
            "relative and absolute paths name the same file, and Append appends: {read:?}"
        );
        let binary = Command::WriteFile(WriteFile {
            path: "data/blob.bin".into(),
            content: "AP8Q/w==".into(),
            mode: WriteMode::Create,
            encoding: Encoding::Base64,
        });
        ok(Self::run(&manager, &id, binary).await, "base64 write into a new directory");
        let blob = ok(
            Self::run(
                &manager,
                &id,
                Command::ReadFile(ReadFile { path: "data/blob.bin".into(), encoding: Encoding::Base64 }),
            )
            .await,
            "base64 read",
        );
        assert!(
            matches!(&blob, CommandResult::ReadFile(r) if r.content == "AP8Q/w==" && r.bytes == 4),
            "binary content must survive base64 both ways: {blob:?}"
        );
        ok(Self::run(&manager, &id, Command::write_file("hello.txt", "replaced")).await, "overwrite");
        let read = ok(Self::run(&manager, &id, Command::read_file("/workspace/hello.txt")).await, "read again");
        assert!(matches!(&read, CommandResult::ReadFile(r) if r.content == "replaced"), "Create replaces: {read:?}");
        manager.close(&id).await.expect("close");
    }

    /// `create_directory`, `list_directory`, `copy_file` and `delete_file`.
    pub async fn directories_and_copies(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let made = ok(Self::run(&manager, &id, Command::create_directory("src/app")).await, "mkdir");
        assert!(matches!(&made, CommandResult::CreateDirectory(d) if d.path == "/workspace/src/app"), "{made:?}");
        ok(Self::run(&manager, &id, Command::create_directory("src/app")).await, "mkdir of an existing directory");
        ok(Self::run(&manager, &id, Command::write_file("src/main.txt", "12345")).await, "write");
        let copied = ok(Self::run(&manager, &id, Command::copy_file("src/main.txt", "src/app/copy.txt")).await, "copy");
        assert!(
            matches!(&copied, CommandResult::CopyFile(c) if c.bytes == 5 && c.source_path == "/workspace/src/main.txt" && c.destination_path == "/workspace/src/app/copy.txt"),
            "{copied:?}"
        );
        let listed = ok(Self::run(&manager, &id, Command::list_directory("/workspace/src")).await, "list");
        let CommandResult::ListDirectory(listing) = &listed else { panic!("list_directory gave {listed:?}") };
        let entries: Vec<(&str, EntryType, u64)> =
            listing.entries.iter().map(|e| (e.name.as_str(), e.entry_type, e.size)).collect();
        assert_eq!(
            entries,
            [("app", EntryType::Directory, 0), ("main.txt", EntryType::File, 5)],
            "entries sorted by name with types and sizes"
        );
        let deleted = ok(Self::run(&manager, &id, Command::delete_file("src/main.txt")).await, "delete");
        assert!(matches!(&deleted, CommandResult::DeleteFile(d) if d.deleted && d.path == "/workspace/src/main.txt"));
        let gone = Self::run(&manager, &id, Command::read_file("src/main.txt")).await;
        assert!(matches!(&gone.error, Some(Error::NotFound { path }) if path == "/workspace/src/main.txt"), "{gone:?}");
        let copy = ok(Self::run(&manager, &id, Command::read_file("src/app/copy.txt")).await, "read copy");
        assert!(matches!(&copy, CommandResult::ReadFile(r) if r.content == "12345"), "{copy:?}");
        manager.close(&id).await.expect("close");
    }

    /// Missing files are `NotFound` with the guide's message; every file command refuses
    /// paths outside `/workspace`; directories and files are not confused.
    pub async fn missing_files_and_escapes(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let missing = Self::run(&manager, &id, Command::read_file("/workspace/missing.py")).await;
        assert!(!missing.success && missing.result.is_none(), "{missing:?}");
        assert_eq!(missing.to_json()["error"], "File not found: /workspace/missing.py", "the guide's exact message");
        for target in ["../etc/passwd", "/etc/passwd", "/workspace/../etc/shadow", "a/../../root/.ssh/id_rsa"] {
            for command in [
                Command::read_file(target),
                Command::write_file(target, "owned"),
                Command::create_directory(target),
                Command::copy_file("/workspace/x", target),
                Command::copy_file(target, "/workspace/x"),
                Command::delete_file(target),
                Command::list_directory(target),
            ] {
                let kind = command.kind();
                let outcome = Self::run(&manager, &id, command).await;
                assert!(
                    matches!(&outcome.error, Some(Error::PermissionDenied(m)) if m.contains("outside /workspace")),
                    "{kind} of {target:?} must be refused as outside /workspace, got {:?}",
                    outcome.to_json()
                );
            }
        }
        ok(Self::run(&manager, &id, Command::write_file("file.txt", "x")).await, "write");
        let listing = Self::run(&manager, &id, Command::list_directory("file.txt")).await;
        assert!(matches!(&listing.error, Some(Error::InvalidInput(_))), "listing a file: {:?}", listing.to_json());
        let reading = Self::run(&manager, &id, Command::read_file("/workspace")).await;
        assert!(matches!(&reading.error, Some(Error::InvalidInput(_))), "reading a directory: {:?}", reading.to_json());
        let deleting = Self::run(&manager, &id, Command::delete_file("/workspace")).await;
        assert!(!deleting.success, "the workspace root must not be deletable: {:?}", deleting.to_json());
        ok(Self::run(&manager, &id, Command::read_file("file.txt")).await, "the session still works");
        manager.close(&id).await.expect("close");
    }

    /// `execute_code`: output on success; `success:false` with the program's message and
    /// the output printed before the failure.
    pub async fn execute_code(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let hello = Self::run(&manager, &id, Command::code(&self.programs.hello)).await;
        assert_eq!(hello.to_json()["result"], "hello from codebeaker", "{:?}", hello.to_json());
        assert!(hello.success && hello.error.is_none());
        let failed = Self::run(&manager, &id, Command::code(&self.programs.fails)).await;
        assert!(!failed.success, "a failing program is success:false: {:?}", failed.to_json());
        let message = failed.error.as_ref().map(Error::to_string).unwrap_or_default();
        assert!(message.contains("boom"), "the error carries the program's message: {:?}", failed.to_json());
        assert!(
            matches!(&failed.result, Some(CommandResult::ExecuteCode(c)) if c.output.contains("partial")),
            "output printed before the failure is kept: {:?}",
            failed.result
        );
        manager.close(&id).await.expect("close");
    }

    /// Streaming: chunks arrive before the outcome and add up to the final output.
    pub async fn streaming(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let mut events = manager.execute_stream(&id, Command::code(&self.programs.counts), None);
        let mut streamed = String::new();
        let mut outcome = None;
        while let Some(event) = events.next().await {
            assert!(outcome.is_none(), "an event came after Finished: {event:?}");
            match event {
                ExecEvent::Output(chunk) => {
                    assert_eq!(chunk.stream, OutputStream::Stdout, "{chunk:?}");
                    streamed.push_str(&chunk.data);
                }
                ExecEvent::Finished(result) => outcome = Some(result.expect("streamed command ran")),
            }
        }
        let outcome = outcome.expect("the stream ends with Finished");
        let expected = "line 1\nline 2\nline 3\nline 4\nline 5";
        assert_eq!(outcome.to_json()["result"], expected, "{:?}", outcome.to_json());
        assert_eq!(streamed.trim_end(), expected, "streamed chunks add up to the output");
        manager.close(&id).await.expect("close");
    }

    /// A program past its timeout is stopped with `TimedOut`; the session stays usable.
    pub async fn timeouts(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let options = ExecOptions { timeout: Some(Duration::from_millis(1500)), output: None };
        let spun = manager.execute(&id, Command::code(&self.programs.spins), options).await.expect("ran");
        assert!(matches!(spun.error, Some(Error::TimedOut(_))), "a busy loop must time out: {:?}", spun.to_json());
        assert!(!spun.success);
        assert_eq!(spun.to_json()["error"], "Command timed out after 1500 ms", "the limit, not the time it took");
        assert!(spun.duration_ms >= 1500, "stopped no earlier than the timeout: {} ms", spun.duration_ms);
        let after = Self::run(&manager, &id, Command::code(&self.programs.hello)).await;
        assert_eq!(after.to_json()["result"], "hello from codebeaker", "usable after a timeout: {:?}", after.to_json());
        manager.close(&id).await.expect("close");
    }

    /// `execute_shell`: argv without a shell, exit codes, stderr, working directory, env,
    /// stdin and output caps; or a clear refusal where the backend has no shell.
    pub async fn shell(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        match self.shell {
            Shell::Unsupported => {
                let refused = Self::run(&manager, &id, Command::shell("echo", ["hi"])).await;
                assert!(matches!(&refused.error, Some(Error::Unsupported(_))), "{:?}", refused.to_json());
            }
            Shell::Posix => self.posix_shell(&manager, &id).await,
        }
        manager.close(&id).await.expect("close");
    }

    async fn posix_shell(&self, manager: &SessionManager, id: &str) {
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
        ok(Self::run(manager, id, Command::create_directory("sub")).await, "mkdir");
        let mut pwd = crate::command::ExecuteShell::new("pwd", Vec::<String>::new());
        pwd.working_directory = "/workspace/sub".into();
        let here = ok(Self::run(manager, id, Command::ExecuteShell(pwd)).await, "pwd");
        assert!(matches!(&here, CommandResult::ExecuteShell(r) if r.stdout == "/workspace/sub\n"), "{here:?}");
        let mut env = crate::command::ExecuteShell::new("sh", ["-c", "echo $GREETING"]);
        env.env.insert("GREETING".into(), "hi there".into());
        let greeted = ok(Self::run(manager, id, Command::ExecuteShell(env)).await, "env");
        assert!(matches!(&greeted, CommandResult::ExecuteShell(r) if r.stdout == "hi there\n"), "{greeted:?}");
        let mut cat = crate::command::ExecuteShell::new("cat", Vec::<String>::new());
        cat.stdin = Some("from stdin\n".into());
        let echoed = ok(Self::run(manager, id, Command::ExecuteShell(cat)).await, "cat");
        assert!(matches!(&echoed, CommandResult::ExecuteShell(r) if r.stdout == "from stdin\n"), "{echoed:?}");
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

    /// Sessions do not see each other's files or globals.
    pub async fn isolation(&self) {
        let manager = self.manager();
        let first = self.session(&manager).await;
        let second = self.session(&manager).await;
        let (a, b) = tokio::join!(
            Self::run(&manager, &first, Command::write_file("mine.txt", "first")),
            Self::run(&manager, &second, Command::write_file("mine.txt", "second")),
        );
        ok(a, "write in first");
        ok(b, "write in second");
        let read = ok(Self::run(&manager, &first, Command::read_file("mine.txt")).await, "read");
        assert!(matches!(&read, CommandResult::ReadFile(r) if r.content == "first"), "sessions share files: {read:?}");
        ok(Self::run(&manager, &second, Command::write_file("only-second.txt", "x")).await, "write");
        let absent = Self::run(&manager, &first, Command::read_file("only-second.txt")).await;
        assert!(matches!(absent.error, Some(Error::NotFound { .. })), "{:?}", absent.to_json());
        manager.close(&first).await.expect("close");
        manager.close(&second).await.expect("close");
    }

    /// Create, list, count executions, close once, and nothing left behind.
    pub async fn lifecycle(&self) {
        let manager = self.manager();
        let created = manager.create(SessionConfig::new(self.language)).await.expect("create");
        assert_eq!(created.state, SessionState::Active, "a new session reports Active");
        assert_eq!(created.language, self.language);
        let sandbox = created.container_id.clone();
        assert!(!sandbox.is_empty(), "the sandbox id is reported");
        let live = self.backend.live_sandboxes().await.expect("live sandboxes");
        assert!(live.contains(&sandbox), "{sandbox} missing from the backend's live sandboxes {live:?}");
        ok(Self::run(&manager, &created.session_id, Command::write_file("a.txt", "1")).await, "write");
        let listed = manager.list();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!((listed[0].execution_count, listed[0].state), (1, SessionState::Idle), "{listed:?}");
        manager.close(&created.session_id).await.expect("close");
        let live = self.backend.live_sandboxes().await.expect("live sandboxes");
        assert!(!live.contains(&sandbox), "{sandbox} still alive after close: {live:?}");
        assert!(matches!(manager.close(&created.session_id).await, Err(Error::SessionNotFound(_))), "second close");
        let late = manager.execute(&created.session_id, Command::read_file("a.txt"), ExecOptions::default()).await;
        assert!(matches!(late, Err(Error::SessionNotFound(_))), "execute after close: {late:?}");
        assert_eq!(manager.count(), 0);
    }

    /// `execution.run`: a fresh sandbox, shell-shaped result, removed afterwards.
    pub async fn one_shot(&self) {
        let manager = self.manager();
        let before = self.backend.live_sandboxes().await.expect("live sandboxes");
        let outcome = manager.run_once(self.language, self.programs.hello.clone(), None).await.expect("run");
        let json = outcome.to_json();
        assert!(outcome.success, "{json:?}");
        assert_eq!(json["result"]["exitCode"], 0, "{json:?}");
        assert_eq!(json["result"]["stdout"], "hello from codebeaker\n", "{json:?}");
        let after = self.backend.live_sandboxes().await.expect("live sandboxes");
        assert_eq!(before.len(), after.len(), "the one-shot sandbox was removed: before {before:?}, after {after:?}");
    }
}
