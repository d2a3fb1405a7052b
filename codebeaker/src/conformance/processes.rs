//! Background processes as a session's capabilities declare them: where `processes` is
//! declared (with a POSIX shell), a program started in the background takes stdin, is
//! read from an offset and ends with its exit code; `pty` gives it a terminal of the
//! size asked for. Where `processes` is not declared, `process.start` is refused with
//! `Unsupported` at once, never a hang.

use std::time::Duration;

use super::Suite;
use crate::error::ErrorKind;
use crate::process::{ProcessCommand, ProcessEvent, ProcessSpec};
use crate::{Process, Session};

/// Longest any step of these checks may take.
const STEP: Duration = Duration::from_secs(60);

impl Suite {
    /// See the module docs.
    pub async fn processes(&self) {
        let manager = self.manager();
        let session = manager.open(crate::SessionConfig::new(self.language)).await.expect("open");
        let declared = session.info().expect("info").capabilities;
        assert!(!declared.pty || declared.processes, "pty is a kind of background process: {declared:?}");
        let sh = |script: &str| ProcessSpec::new(ProcessCommand::new("sh", ["-c", script]));
        if !declared.processes {
            let refused = tokio::time::timeout(STEP, session.spawn(sh("true"))).await.expect("an answer, not a hang");
            let kind = refused.map(|_| ()).unwrap_err().kind();
            assert_eq!(kind, ErrorKind::Unsupported, "a session without `processes` refuses them as Unsupported");
        } else if declared.shell {
            let echo = session.spawn(sh("echo started; read line; echo \"got $line\"; exit 4")).await.expect("start");
            echo.write("fed\n").await.expect("write");
            echo.close_stdin().await.expect("close stdin");
            let exit = tokio::time::timeout(STEP, echo.wait(STEP)).await.expect("in time").expect("wait");
            assert_eq!(exit.exit_code, Some(4), "{exit:?}");
            assert_eq!(read_all(&echo, 0).await, "started\ngot fed\n");
            assert_eq!(read_all(&echo, 8).await, "got fed\n", "a replay from an offset");
            if declared.pty {
                terminal(&session).await;
            }
        }
        session.close().await.expect("close");
    }
}

/// A terminal has the size asked for.
async fn terminal(session: &Session) {
    let spec = ProcessSpec::new(ProcessCommand::new("stty", ["size"])).with_pty(91, 17);
    let stty = session.spawn(spec).await.expect("start on a terminal");
    let exit = tokio::time::timeout(STEP, stty.wait(STEP)).await.expect("in time").expect("wait");
    assert_eq!(exit.exit_code, Some(0), "{exit:?}");
    assert_eq!(read_all(&stty, 0).await.trim(), "17 91");
}

/// Everything an ended process wrote from `from` on.
async fn read_all(process: &Process, from: u64) -> String {
    let mut attachment = process.attach(from).expect("attach");
    let mut text = String::new();
    while let Some(event) = tokio::time::timeout(STEP, attachment.next()).await.expect("in time") {
        match event {
            ProcessEvent::Output(chunk) => text.push_str(&chunk.data),
            ProcessEvent::Exit(_) => break,
        }
    }
    text
}
