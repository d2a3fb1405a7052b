//! The behaviour every [`Backend`] must show, as async checks its own tests call.
//!
//! A backend is done when [`Suite::run_all`] passes against it. Each check drives the
//! backend through a [`SessionManager`], the way users reach it, and asserts what a user
//! would see, with the evidence in the failure message. For a custom backend:
//!
//! ```no_run
//! # async fn demo(backend: std::sync::Arc<dyn codebeaker::Backend>) {
//! use codebeaker::conformance::{Programs, Suite};
//! use codebeaker::Language;
//!
//! let programs = Programs {
//!     hello: "print('hello from codebeaker')".into(),
//!     fails: "print('partial', flush=True)\nraise ValueError('boom')".into(),
//!     spins: "while True: pass".into(),
//!     counts: "import time\nfor i in range(1, 6):\n    print(f'line {i}', flush=True)\n    time.sleep(0.05)".into(),
//!     define_state: "def answer():\n    return 42".into(),
//!     use_state: "print(answer())".into(),
//!     rich: None,
//! };
//! Suite::new(backend, Language::Python, programs).run_all().await;
//! # }
//! ```
//!
//! # The capabilities contract
//!
//! The suite is not told what the backend can do: it reads the [`Capabilities`] that
//! the created session's [`SessionInfo`](crate::SessionInfo) declares (the `capabilities`
//! object of `session.create` and `session.list` answers), which must be the backend's
//! [`Backend::capabilities`] for the language. A declaration is a promise both ways:
//!
//! | capability | declared: the suite checks that | not declared: the suite checks that |
//! |---|---|---|
//! | `shell` | `execute_shell` runs argv with a POSIX `sh`, `echo`, `cat`, `pwd`, `head`, `tr` and `env` on `PATH`: exit codes, stderr, working directory, env, output caps | every `execute_shell` is refused with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) |
//! | `stdin` (only with `shell`) | `stdin` of `execute_shell` reaches the program (`cat` echoes it) | a non-empty `stdin` is refused with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), never silently dropped (with `shell` alone) |
//! | `persistent_state` | a function defined by one `execute_code` is callable in the next; after a timeout the state is kept, or the result says `stateReset: true` | each `execute_code` starts afresh |
//! | `streaming` | output of `execute_code` arrives in several chunks before the result, and the chunks add up to the result's output | the streamed command still ends with the complete result |
//! | `rich_outputs` | [`Programs::rich`] gives a result with at least one well-formed `outputs` entry (a MIME type, base64 data for binary types) | `execute_code` results carry no `outputs` |
//! | `pause` | a paused session says `Paused`, refuses a command with an error saying so, and once resumed has its files and (with `persistent_state`) its state | `pause` is refused with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) |
//! | `snapshots` | a snapshot keeps the files as they were; a session created from it has them; a fork has them and diverges | `snapshot` and `fork` are refused with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) |
//!
//! Whatever is declared, state never crosses sessions: a function defined in one session
//! is unknown in another.

mod capabilities;
mod parking;
mod processes;
mod quota;

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::command::{Command, Encoding, ReadFile, WriteFile, WriteMode};
use crate::config::SessionConfig;
use crate::error::{Error, ErrorKind};
use crate::language::Language;
use crate::manager::{ExecOptions, ManagerConfig, SessionManager, SessionState};
use crate::result::{Capabilities, CommandOutcome, CommandResult, EntryType};
use crate::workspace::WorkspacePath;

/// Programs in the backend's language that the checks run.
#[derive(Debug, Clone)]
pub struct Programs {
    /// Prints exactly `hello from codebeaker` and a newline.
    pub hello: String,
    /// Prints `partial`, then fails with an error whose message contains `boom`.
    pub fails: String,
    /// Never finishes on its own (a busy loop).
    pub spins: String,
    /// Prints `line 1` … `line 5`, one line each, pausing briefly (tens of milliseconds)
    /// between lines so that a streaming backend delivers them in several chunks.
    pub counts: String,
    /// Defines state that a later `execute_code` of the same session uses (e.g. a
    /// function `answer` returning 42), printing nothing.
    pub define_state: String,
    /// Prints exactly `42` using the state [`Programs::define_state`] made, and fails
    /// (`success: false`) where that state does not exist.
    pub use_state: String,
    /// Produces at least one rich output (e.g. a matplotlib figure as `image/png`);
    /// required when the backend declares `rich_outputs`, `None` otherwise.
    pub rich: Option<String>,
}

impl Programs {
    /// The programs in the script language of the temp-dir test backend
    /// ([`TempDirBackend`](crate::testing::TempDirBackend)), for running the suite on it
    /// or on a backend built over it. The language has no variables: nothing is kept
    /// between commands, so using state fails.
    pub fn tempdir_script() -> Programs {
        Programs {
            hello: "print hello from codebeaker".into(),
            fails: "print partial\nthrow boom".into(),
            spins: "spin".into(),
            counts: (1..=5).map(|i| format!("print line {i}\nsleep 5\n")).collect(),
            define_state: "sleep 0".into(),
            use_state: "throw answer is not defined".into(),
            rich: None,
        }
    }
}

/// The conformance suite for one backend and language.
pub struct Suite {
    backend: Arc<dyn Backend>,
    language: Language,
    programs: Programs,
}

/// A command that must succeed: its typed result, or a panic that shows the outcome.
fn ok(outcome: CommandOutcome, what: &str) -> CommandResult {
    assert!(outcome.success, "{what}: expected success, got {:?}", outcome.to_json());
    outcome.result.unwrap_or_else(|| panic!("{what}: success without a result"))
}

impl Suite {
    /// A suite for `language` on `backend`.
    pub fn new(backend: Arc<dyn Backend>, language: Language, programs: Programs) -> Self {
        Suite { backend, language, programs }
    }

    fn manager(&self) -> SessionManager {
        SessionManager::new(vec![self.backend.clone()], ManagerConfig::default())
    }

    async fn session(&self, manager: &SessionManager) -> crate::SessionId {
        match manager.create(SessionConfig::new(self.language)).await {
            Ok(info) => info.session_id,
            Err(e) => panic!("creating a {} session on {} failed: {e}", self.language, self.backend.name()),
        }
    }

    /// The capabilities session `id` declares in its info.
    fn declared(manager: &SessionManager, id: &str) -> Capabilities {
        manager.info(id).unwrap_or_else(|e| panic!("the info of session {id} is missing: {e}")).capabilities
    }

    async fn run(manager: &SessionManager, id: &str, command: Command) -> CommandOutcome {
        let what = format!("{command:?}");
        manager.execute(id, command, ExecOptions::default()).await.unwrap_or_else(|e| panic!("{what} did not run: {e}"))
    }

    /// Runs every check, one after another.
    pub async fn run_all(&self) {
        self.write_and_read().await;
        self.ranges_and_appends().await;
        self.file_streams().await;
        self.workspace_quota().await;
        self.directories_and_copies().await;
        self.missing_files_and_escapes().await;
        self.execute_code().await;
        self.capabilities_reported().await;
        self.streaming().await;
        self.timeouts().await;
        self.shell().await;
        self.processes().await;
        self.stdin().await;
        self.persistent_state().await;
        self.rich_outputs().await;
        self.isolation().await;
        self.pause_and_snapshots().await;
        self.lifecycle().await;
        self.one_shot().await;
    }

    /// `read_file` ranges (`offset`, `length`, `size`, `eof`) over a binary file built by
    /// base64 writes and appends.
    pub async fn ranges_and_appends(&self) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let manager = self.manager();
        let id = self.session(&manager).await;
        let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        for (part, mode) in [(&bytes[..1000], WriteMode::Create), (&bytes[1000..], WriteMode::Append)] {
            let write = Command::WriteFile(WriteFile {
                path: WorkspacePath::new("ranged/blob.bin").unwrap(),
                content: b64.encode(part),
                mode,
                encoding: Encoding::Base64,
            });
            ok(Self::run(&manager, &id, write).await, "base64 write and append");
        }
        let read = |offset: u64, length: u64| {
            Self::run(&manager, &id, Command::read_range("ranged/blob.bin", offset, length).unwrap())
        };
        for (offset, length, want, eof) in [
            (0, 10, 0..10, false),
            (1000, 100, 1000..1100, false),
            (2950, 100, 2950..3000, true),
            (2900, 100, 2900..3000, true),
            (3000, 10, 0..0, true),
            (9999, 10, 0..0, true),
        ] {
            let got = ok(read(offset, length).await, "ranged read");
            let CommandResult::ReadFile(r) = &got else { panic!("read_file answered {got:?}") };
            assert_eq!(
                (b64.decode(&r.content).ok(), r.bytes, r.size, r.eof),
                (Some(bytes[want.clone()].to_vec()), want.len() as u64, 3000, eof),
                "read_file at offset {offset} length {length}: content, bytes, size, eof"
            );
        }
        let text =
            ok(Self::run(&manager, &id, Command::write_file("ranged/text.txt", "0123456789").unwrap()).await, "text");
        assert!(matches!(text, CommandResult::WriteFile(_)));
        let tail = Command::ReadFile(ReadFile {
            path: WorkspacePath::new("ranged/text.txt").unwrap(),
            encoding: Encoding::Utf8,
            offset: 4,
            length: None,
        });
        let tail = ok(Self::run(&manager, &id, tail).await, "utf8 read from an offset");
        assert!(
            matches!(&tail, CommandResult::ReadFile(r) if r.content == "456789" && r.bytes == 6 && r.size == 10 && r.eof),
            "an offset without a length reads the rest: {tail:?}"
        );
        let huge = read(0, crate::workspace::MAX_TRANSFER_BYTES + 1).await;
        assert!(
            !huge.success && huge.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::InvalidInput),
            "a length over the transfer cap is refused as invalid input: {:?}",
            huge.to_json()
        );
        manager.close(&id).await.expect("close");
    }

    /// Streamed transfers ([`SessionManager::upload_as`], [`SessionManager::download_as`])
    /// of a file bigger than one chunk: replace, append, offsets, and the errors of a
    /// missing file and a directory. A backend that does not stream files must refuse both
    /// directions with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    pub async fn file_streams(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let bytes: Vec<u8> = (0..3 * 1024 * 1024 + 12345u32).map(|i| (i % 251) as u8).collect();
        let body = |data: Vec<u8>| -> crate::workspace::UploadBody { Box::pin(std::io::Cursor::new(data)) };
        let uploaded = manager.upload_as(None, &id, "streams/big.bin", false, body(bytes.clone())).await;
        if uploaded.as_ref().is_err_and(|e| e.kind() == ErrorKind::Unsupported) {
            let download = manager.download_as(None, &id, "streams/big.bin", 0).await;
            assert!(
                download.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::Unsupported),
                "uploads refused, downloads must be too: {download:?}"
            );
            manager.close(&id).await.expect("close");
            return;
        }
        assert_eq!(uploaded.ok(), Some(bytes.len() as u64), "upload of {} bytes", bytes.len());
        let appended = manager.upload_as(None, &id, "/workspace/streams/big.bin", true, body(b"tail".to_vec())).await;
        assert_eq!(appended.ok(), Some(4), "append upload");
        let mut expected = bytes.clone();
        expected.extend_from_slice(b"tail");
        for offset in [0u64, 1_000_000, expected.len() as u64 - 2, expected.len() as u64 + 5] {
            let mut download = manager
                .download_as(None, &id, "streams/big.bin", offset)
                .await
                .unwrap_or_else(|e| panic!("download from {offset}: {e}"));
            assert_eq!(download.size, expected.len() as u64, "the download reports the whole file's size");
            let mut got = Vec::new();
            while let Some(chunk) = download.chunks.recv().await {
                got.extend(chunk.unwrap_or_else(|e| panic!("download from {offset} broke: {e}")));
            }
            let from = (offset as usize).min(expected.len());
            assert!(
                got == expected[from..],
                "download from {offset}: {} bytes, expected {}",
                got.len(),
                expected.len() - from
            );
        }
        // What was streamed in is what the file commands see.
        let piece =
            ok(Self::run(&manager, &id, Command::read_range("streams/big.bin", 1_000_000, 3).unwrap()).await, "range");
        assert!(
            matches!(&piece, CommandResult::ReadFile(r) if r.bytes == 3 && r.size == expected.len() as u64 && !r.eof),
            "{piece:?}"
        );
        let missing = manager.download_as(None, &id, "streams/missing.bin", 0).await;
        assert!(
            missing.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::NotFound),
            "download of a missing file: {missing:?}"
        );
        let directory = manager.download_as(None, &id, "streams", 0).await;
        assert!(
            directory.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::InvalidInput),
            "download of a directory: {directory:?}"
        );
        let onto_directory = manager.upload_as(None, &id, "streams", false, body(b"x".to_vec())).await;
        assert!(onto_directory.is_err(), "an upload onto a directory is refused: {onto_directory:?}");
        let escape = manager.upload_as(None, &id, "../escape.txt", false, body(b"x".to_vec())).await;
        assert!(
            escape.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::PermissionDenied),
            "an upload outside /workspace: {escape:?}"
        );
        let mut dropped = manager.download_as(None, &id, "streams/big.bin", 0).await.expect("download");
        let _ = dropped.chunks.recv().await;
        drop(dropped);
        // A download given up half-way hands the session's turn on.
        let after = Self::run(&manager, &id, Command::read_range("streams/big.bin", 0, 1).unwrap()).await;
        assert!(after.success, "a command after an abandoned download: {:?}", after.to_json());
        manager.close(&id).await.expect("close");
    }

    /// `write_file` (create, append, base64, nested parents) and `read_file` round trips.
    pub async fn write_and_read(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let written = ok(
            Self::run(&manager, &id, Command::write_file("/workspace/hello.txt", "héllo ✓").unwrap()).await,
            "write",
        );
        assert!(
            matches!(&written, CommandResult::WriteFile(w) if w.path == "/workspace/hello.txt" && w.bytes == 10),
            "write_file must report the absolute path and the UTF-8 byte count: {written:?}"
        );
        let append = Command::WriteFile(WriteFile {
            path: WorkspacePath::new("hello.txt").unwrap(),
            content: "\nmore".into(),
            mode: WriteMode::Append,
            encoding: Encoding::Utf8,
        });
        ok(Self::run(&manager, &id, append).await, "append");
        let read = ok(Self::run(&manager, &id, Command::read_file("hello.txt").unwrap()).await, "read");
        assert!(
            matches!(&read, CommandResult::ReadFile(r) if r.content == "héllo ✓\nmore" && r.bytes == 15),
            "relative and absolute paths name the same file, and Append appends: {read:?}"
        );
        let binary = Command::WriteFile(WriteFile {
            path: WorkspacePath::new("data/blob.bin").unwrap(),
            content: "AP8Q/w==".into(),
            mode: WriteMode::Create,
            encoding: Encoding::Base64,
        });
        ok(Self::run(&manager, &id, binary).await, "base64 write into a new directory");
        let blob = ok(
            Self::run(
                &manager,
                &id,
                Command::ReadFile(ReadFile {
                    path: WorkspacePath::new("data/blob.bin").unwrap(),
                    encoding: Encoding::Base64,
                    offset: 0,
                    length: None,
                }),
            )
            .await,
            "base64 read",
        );
        assert!(
            matches!(&blob, CommandResult::ReadFile(r) if r.content == "AP8Q/w==" && r.bytes == 4),
            "binary content must survive base64 both ways: {blob:?}"
        );
        ok(Self::run(&manager, &id, Command::write_file("hello.txt", "replaced").unwrap()).await, "overwrite");
        let read =
            ok(Self::run(&manager, &id, Command::read_file("/workspace/hello.txt").unwrap()).await, "read again");
        assert!(matches!(&read, CommandResult::ReadFile(r) if r.content == "replaced"), "Create replaces: {read:?}");
        manager.close(&id).await.expect("close");
    }

    /// `create_directory`, `list_directory`, `copy_file` and `delete_file`.
    pub async fn directories_and_copies(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let made = ok(Self::run(&manager, &id, Command::create_directory("src/app").unwrap()).await, "mkdir");
        assert!(matches!(&made, CommandResult::CreateDirectory(d) if d.path == "/workspace/src/app"), "{made:?}");
        ok(
            Self::run(&manager, &id, Command::create_directory("src/app").unwrap()).await,
            "mkdir of an existing directory",
        );
        ok(Self::run(&manager, &id, Command::write_file("src/main.txt", "12345").unwrap()).await, "write");
        let copied =
            ok(Self::run(&manager, &id, Command::copy_file("src/main.txt", "src/app/copy.txt").unwrap()).await, "copy");
        assert!(
            matches!(&copied, CommandResult::CopyFile(c) if c.bytes == 5 && c.source_path == "/workspace/src/main.txt" && c.destination_path == "/workspace/src/app/copy.txt"),
            "{copied:?}"
        );
        let listed = ok(Self::run(&manager, &id, Command::list_directory("/workspace/src").unwrap()).await, "list");
        let CommandResult::ListDirectory(listing) = &listed else { panic!("list_directory gave {listed:?}") };
        let entries: Vec<(&str, EntryType, u64)> =
            listing.entries.iter().map(|e| (e.name.as_str(), e.entry_type, e.size)).collect();
        assert_eq!(
            entries,
            [("app", EntryType::Directory, 0), ("main.txt", EntryType::File, 5)],
            "entries sorted by name with types and sizes"
        );
        let deleted = ok(Self::run(&manager, &id, Command::delete_file("src/main.txt").unwrap()).await, "delete");
        assert!(matches!(&deleted, CommandResult::DeleteFile(d) if d.deleted && d.path == "/workspace/src/main.txt"));
        let gone = Self::run(&manager, &id, Command::read_file("src/main.txt").unwrap()).await;
        assert_eq!(gone.error, Some(Error::not_found("/workspace/src/main.txt")), "{gone:?}");
        let copy = ok(Self::run(&manager, &id, Command::read_file("src/app/copy.txt").unwrap()).await, "read copy");
        assert!(matches!(&copy, CommandResult::ReadFile(r) if r.content == "12345"), "{copy:?}");
        manager.close(&id).await.expect("close");
    }

    /// Missing files are `NotFound` with the guide's message; every file command refuses
    /// paths outside `/workspace`; directories and files are not confused.
    pub async fn missing_files_and_escapes(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let missing = Self::run(&manager, &id, Command::read_file("/workspace/missing.py").unwrap()).await;
        assert!(!missing.success && missing.result.is_none(), "{missing:?}");
        assert_eq!(missing.to_json()["error"], "File not found: /workspace/missing.py", "the guide's exact message");
        // A path that leaves the workspace cannot even make a command: every constructor
        // and the wire refuse it, naming the path, so no backend ever sees one.
        for target in ["../etc/passwd", "/etc/passwd", "/workspace/../etc/shadow", "a/../../root/.ssh/id_rsa"] {
            for (kind, made) in [
                ("read_file", Command::read_file(target)),
                ("write_file", Command::write_file(target, "owned")),
                ("create_directory", Command::create_directory(target)),
                ("copy_file to", Command::copy_file("/workspace/x", target)),
                ("copy_file from", Command::copy_file(target, "/workspace/x")),
                ("delete_file", Command::delete_file(target)),
                ("list_directory", Command::list_directory(target)),
            ] {
                assert!(
                    made.as_ref().err().is_some_and(|e| e.kind() == ErrorKind::PermissionDenied
                        && e.message().contains(target)
                        && e.message().contains("outside /workspace")),
                    "{kind} of {target:?} must be refused as outside /workspace, got {made:?}"
                );
            }
            let wire = serde_json::json!({"type": "read_file", "path": target});
            let refused = serde_json::from_value::<Command>(wire).expect_err("a path outside /workspace on the wire");
            assert!(refused.to_string().contains(target), "{refused}");
        }
        ok(Self::run(&manager, &id, Command::write_file("file.txt", "x").unwrap()).await, "write");
        let listing = Self::run(&manager, &id, Command::list_directory("file.txt").unwrap()).await;
        assert!(
            matches!(listing.error, Some(ref e) if e.kind() == crate::ErrorKind::InvalidInput),
            "listing a file: {:?}",
            listing.to_json()
        );
        let reading = Self::run(&manager, &id, Command::read_file("/workspace").unwrap()).await;
        assert!(
            matches!(reading.error, Some(ref e) if e.kind() == crate::ErrorKind::InvalidInput),
            "reading a directory: {:?}",
            reading.to_json()
        );
        let deleting = Self::run(&manager, &id, Command::delete_file("/workspace").unwrap()).await;
        assert!(!deleting.success, "the workspace root must not be deletable: {:?}", deleting.to_json());
        ok(Self::run(&manager, &id, Command::read_file("file.txt").unwrap()).await, "the session still works");
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

    /// A program past its timeout is stopped with `TimedOut`; the session stays usable,
    /// and a session with persistent state keeps it or says `stateReset: true`.
    pub async fn timeouts(&self) {
        let manager = self.manager();
        let id = self.session(&manager).await;
        let persistent = Self::declared(&manager, &id).persistent_state;
        if persistent {
            ok(Self::run(&manager, &id, Command::code(&self.programs.define_state)).await, "define_state");
        }
        let options = ExecOptions { timeout: Some(Duration::from_millis(1500)), output: None };
        let spun = manager.execute(&id, Command::code(&self.programs.spins), options).await.expect("ran");
        assert!(
            spun.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::TimedOut),
            "a busy loop must time out: {:?}",
            spun.to_json()
        );
        assert!(!spun.success);
        assert_eq!(spun.to_json()["error"], "Command timed out after 1500 ms", "the limit, not the time it took");
        assert!(spun.duration_ms >= 1500, "stopped no earlier than the timeout: {} ms", spun.duration_ms);
        let after = Self::run(&manager, &id, Command::code(&self.programs.hello)).await;
        assert_eq!(after.to_json()["result"], "hello from codebeaker", "usable after a timeout: {:?}", after.to_json());
        if persistent {
            let reset = matches!(&spun.result, Some(CommandResult::ExecuteCode(c)) if c.state_reset);
            let used = Self::run(&manager, &id, Command::code(&self.programs.use_state)).await;
            assert!(
                reset || (used.success && used.to_json()["result"] == "42"),
                "after a timeout the state is kept or the timed-out result says stateReset: true; \
                 timed out: {:?}, then use_state: {:?}",
                spun.to_json(),
                used.to_json()
            );
        }
        manager.close(&id).await.expect("close");
    }

    /// Sessions do not see each other's files or globals.
    pub async fn isolation(&self) {
        let manager = self.manager();
        let first = self.session(&manager).await;
        let second = self.session(&manager).await;
        let (a, b) = tokio::join!(
            Self::run(&manager, &first, Command::write_file("mine.txt", "first").unwrap()),
            Self::run(&manager, &second, Command::write_file("mine.txt", "second").unwrap()),
        );
        ok(a, "write in first");
        ok(b, "write in second");
        let read = ok(Self::run(&manager, &first, Command::read_file("mine.txt").unwrap()).await, "read");
        assert!(matches!(&read, CommandResult::ReadFile(r) if r.content == "first"), "sessions share files: {read:?}");
        ok(Self::run(&manager, &second, Command::write_file("only-second.txt", "x").unwrap()).await, "write");
        let absent = Self::run(&manager, &first, Command::read_file("only-second.txt").unwrap()).await;
        assert!(
            matches!(absent.error, Some(ref e) if e.kind() == crate::ErrorKind::NotFound),
            "{:?}",
            absent.to_json()
        );
        ok(Self::run(&manager, &first, Command::code(&self.programs.define_state)).await, "define_state");
        let foreign = Self::run(&manager, &second, Command::code(&self.programs.use_state)).await;
        assert!(!foreign.success, "state defined in one session is visible in another: {:?}", foreign.to_json());
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
        ok(Self::run(&manager, &created.session_id, Command::write_file("a.txt", "1").unwrap()).await, "write");
        let listed = manager.list();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!((listed[0].execution_count, listed[0].state), (1, SessionState::Idle), "{listed:?}");
        manager.close(&created.session_id).await.expect("close");
        let live = self.backend.live_sandboxes().await.expect("live sandboxes");
        assert!(!live.contains(&sandbox), "{sandbox} still alive after close: {live:?}");
        assert!(
            matches!(manager.close(&created.session_id).await, Err(ref e) if e.kind() == crate::ErrorKind::SessionNotFound),
            "second close"
        );
        let late =
            manager.execute(&created.session_id, Command::read_file("a.txt").unwrap(), ExecOptions::default()).await;
        assert!(
            matches!(late, Err(ref e) if e.kind() == crate::ErrorKind::SessionNotFound),
            "execute after close: {late:?}"
        );
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
