//! The agent binary running commands on a real terminal (a pseudo-terminal of the
//! kernel), steering running commands with signals, and commands without a time limit.

mod support;

use std::time::Duration;

use codebeaker_agent::client::{ExecControl, ExecEvent, ExecStream};
use codebeaker_agent::protocol::{CodeLanguage, ExecCommand, ExecExited, ExecRequest, PtySize, RunCodeRequest};
use support::{all_die, command_uid, Agent};

/// How long a test waits for output it expects (generous: the machine is shared).
const WAIT: Duration = Duration::from_secs(10);

/// `argv` on a terminal of `cols` x `rows`, its stdin streamed, with a 60 s timeout.
fn on_terminal(argv: &[&str], cols: u16, rows: u16) -> ExecRequest {
    let mut request =
        ExecRequest::new(ExecCommand::Argv(argv.iter().map(|a| (*a).to_owned()).collect()), 60_000, 1 << 20);
    request.pty = Some(PtySize { cols, rows });
    request.stdin_stream = true;
    request.grace_ms = 500;
    request
}

/// What a terminal shows, read as it comes.
struct Screen {
    stream: ExecStream,
    seen: Vec<u8>,
    /// The command's pid, once started.
    pid: Option<u32>,
}

impl Screen {
    /// Reads until `needle` shows up after what [`Screen::expect`] already matched;
    /// panics with the screen after [`WAIT`].
    async fn expect(&mut self, needle: &str) {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(at) = find(&self.seen, needle.as_bytes()) {
                    self.seen.drain(..at + needle.len());
                    return true;
                }
                match self.stream.next().await {
                    Some(Ok(ExecEvent::Stdout(bytes))) => self.seen.extend_from_slice(&bytes),
                    Some(Ok(ExecEvent::Started { pid })) => self.pid = Some(pid),
                    other => panic!("the terminal ended before {needle:?}: {other:?}"),
                }
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "no {needle:?} on the terminal within {WAIT:?}: {:?}",
            String::from_utf8_lossy(&self.seen)
        );
    }

    /// Reads to the end.
    async fn exited(mut self) -> ExecExited {
        tokio::time::timeout(WAIT, async {
            while let Some(event) = self.stream.next().await {
                if let ExecEvent::Exited(exited) = event.unwrap() {
                    return exited;
                }
            }
            panic!("the stream ended without an exit");
        })
        .await
        .expect("the process ends")
    }
}

/// The foreground process group of the terminal of process `pid` (`tpgid` in its stat).
fn foreground_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(5)?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[tokio::test]
async fn a_terminal_has_the_requested_size_term_and_belongs_to_the_command() {
    let agent = Agent::start().await;
    for offered in ["pty", "signal"] {
        assert!(agent.hello.capabilities.iter().any(|c| c == offered), "{offered}: {:?}", agent.hello.capabilities);
    }
    let out = agent.client.exec_collect(on_terminal(&["stty", "size"], 100, 30)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "30 100\r\n");
    assert_eq!(out.exited.code, Some(0));

    // Its controlling terminal, TERM, and a slave the command's user may reopen by name.
    let line = "tty -s && echo on-a-tty; echo TERM=$TERM; stat -c %u \"$(tty)\"; echo ok > \"$(tty)\" && echo reopened";
    let out = agent.client.exec_collect(on_terminal(&["sh", "-c", line], 80, 24)).await.unwrap();
    let expected = format!("on-a-tty\r\nTERM=xterm-256color\r\n{}\r\nok\r\nreopened\r\n", command_uid());
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    // A session of its own whose controlling terminal is that one: /dev/tty opens.
    let out = agent.client.exec_collect(on_terminal(&["sh", "-c", "echo x > /dev/tty && echo ctty"], 80, 24)).await;
    assert_eq!(String::from_utf8_lossy(&out.unwrap().stdout), "x\r\nctty\r\n");

    let mut request = on_terminal(&["sh", "-c", "echo TERM=$TERM"], 80, 24);
    request.env.insert("TERM".into(), "vt100".into());
    let out = agent.client.exec_collect(request).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "TERM=vt100\r\n");
}

#[tokio::test]
async fn an_interactive_shell_prompts_answers_resizes_and_takes_ctrl_c() {
    let agent = Agent::start().await;
    // No rc file: the prompt is the one set here (Debian's /etc/bash.bashrc sets its own).
    let argv: &[&str] =
        if std::path::Path::new("/bin/bash").exists() { &["bash", "--norc", "-i"] } else { &["sh", "-i"] };
    let mut request = on_terminal(argv, 80, 24);
    request.env.insert("PS1".into(), "beaker$ ".into());
    let stream = agent.client.exec(request).await.unwrap();
    let control: ExecControl = stream.control();
    let mut screen = Screen { stream, seen: Vec::new(), pid: None };
    screen.expect("beaker$ ").await;

    control.write_stdin(b"echo $((6*7))\n".to_vec(), false).await.unwrap();
    // The terminal echoes the line as typed (`$((6*7))`), then the shell answers.
    screen.expect("42\r\n").await;
    screen.expect("beaker$ ").await;

    control.resize(120, 40).await.unwrap();
    control.write_stdin(b"stty size\n".to_vec(), false).await.unwrap();
    screen.expect("40 120\r\n").await;
    screen.expect("beaker$ ").await;

    control.write_stdin(b"sleep 30\n".to_vec(), false).await.unwrap();
    // ^C goes to the terminal's foreground group: wait until the shell made it the sleep's.
    let shell_pid = screen.pid.expect("started") as i32;
    let foreground = tokio::time::timeout(WAIT, async {
        while foreground_group(shell_pid) == Some(shell_pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    foreground.await.expect("the shell runs the sleep in the foreground");
    let interrupted = std::time::Instant::now();
    control.write_stdin(b"\x03".to_vec(), false).await.unwrap();
    control.write_stdin(b"echo after-$((1+1))\n".to_vec(), false).await.unwrap();
    screen.expect("after-2\r\n").await;
    assert!(interrupted.elapsed() < Duration::from_secs(20), "^C did not interrupt the sleep");

    // The end of input on a terminal is its EOF character: the shell exits.
    screen.expect("beaker$ ").await;
    control.write_stdin(Vec::new(), true).await.unwrap();
    let exited = screen.exited().await;
    assert!(!exited.timed_out && exited.signal.is_none(), "{exited:?}");
}

#[tokio::test]
async fn a_signal_reaches_the_process_group() {
    let agent = Agent::start().await;
    let stream =
        agent.client.exec(ExecRequest::new(ExecCommand::Argv(vec!["sleep".into(), "30".into()]), 60_000, 4096));
    let mut stream = stream.await.unwrap();
    let Some(Ok(ExecEvent::Started { .. })) = stream.next().await else { panic!("no start") };
    let control = stream.control();
    // Out of range: ignored, the process runs on.
    control.signal(0).await.unwrap();
    control.signal(65).await.unwrap();
    control.signal(libc::SIGTERM).await.unwrap();
    let out = tokio::time::timeout(WAIT, stream.collect(4096)).await.expect("the signal ends it").unwrap();
    assert_eq!(out.exited.signal, Some(libc::SIGTERM), "{:?}", out.exited);
    assert!(!out.exited.timed_out);
}

#[tokio::test]
async fn a_resize_of_a_command_on_pipes_is_ignored() {
    let agent = Agent::start().await;
    let mut request = ExecRequest::new(ExecCommand::Shell("read line; echo got $line".into()), 60_000, 4096);
    request.stdin_stream = true;
    let stream = agent.client.exec(request).await.unwrap();
    let control = stream.control();
    control.resize(10, 10).await.unwrap();
    control.write_stdin(b"it\n".to_vec(), true).await.unwrap();
    let out = tokio::time::timeout(WAIT, stream.collect(4096)).await.unwrap().unwrap();
    assert_eq!((out.stdout.as_slice(), out.exited.code), (&b"got it\n"[..], Some(0)));
}

#[tokio::test]
async fn no_timeout_and_no_output_cap_run_to_the_end() {
    let agent = Agent::start().await;
    let request =
        ExecRequest::new(ExecCommand::Shell("head -c 300000 /dev/zero; echo; echo done".into()), u64::MAX, u64::MAX);
    let out = agent.client.exec_collect(request).await.unwrap();
    assert_eq!(out.stdout.len(), 300_000 + 1 + 5);
    assert!(out.stdout.ends_with(b"\ndone\n"));
    assert_eq!(out.exited.code, Some(0));
    assert!(!out.exited.timed_out && !out.exited.truncated, "{:?}", out.exited);

    let mut request = on_terminal(&["sh", "-c", "echo done"], 80, 24);
    (request.timeout_ms, request.output_cap) = (u64::MAX, u64::MAX);
    let out = agent.client.exec_collect(request).await.unwrap();
    assert_eq!((out.stdout.as_slice(), out.exited.code), (&b"done\r\n"[..], Some(0)));

    let code = RunCodeRequest {
        language: CodeLanguage::Python,
        code: "print(6 * 7)".into(),
        timeout_ms: u64::MAX,
        grace_ms: 500,
        drain_ms: 500,
        output_cap: u64::MAX,
        rlimits: Default::default(),
    };
    let out = agent.client.run_code_collect(code).await.unwrap();
    assert_eq!(out.stdout, b"42\n");
    assert!(!out.done.timed_out);
}

#[tokio::test]
async fn cancel_kills_a_terminal_command_that_ignores_hangup_and_term() {
    let agent = Agent::start().await;
    let line = "trap '' HUP TERM INT; sleep 1000 & echo $! > sleep.pid; echo ready; wait; wait";
    let stream = agent.client.exec(on_terminal(&["sh", "-c", line], 80, 24)).await.unwrap();
    let control = stream.control();
    let mut screen = Screen { stream, seen: Vec::new(), pid: None };
    screen.expect("ready").await;
    // What it ignores changes nothing.
    control.signal(libc::SIGTERM).await.unwrap();
    control.signal(libc::SIGHUP).await.unwrap();
    control.cancel().await.unwrap();
    let exited = screen.exited().await;
    assert_eq!(exited.signal, Some(libc::SIGKILL), "{exited:?}");
    let sleeper: i32 = std::fs::read_to_string(agent.workspace.join("sleep.pid")).unwrap().trim().parse().unwrap();
    assert!(all_die(&[sleeper]).await, "the command's background child ({sleeper}) must die too");
}

#[tokio::test]
async fn a_command_that_never_reads_its_input_still_times_out_on_pipes_and_on_a_terminal() {
    let agent = Agent::start().await;
    for terminal in [false, true] {
        let mut request = on_terminal(&["sleep", "1000"], 80, 24);
        if !terminal {
            request.pty = None;
        }
        request.timeout_ms = 1000;
        let stream = agent.client.exec(request).await.unwrap();
        let control = stream.control();
        // Far more than a pipe or a terminal holds, and than the agent holds for it.
        let writer = tokio::spawn(async move {
            for _ in 0..128 {
                if control.write_stdin(vec![b'x'; 32 * 1024], false).await.is_err() {
                    break;
                }
            }
        });
        let out = tokio::time::timeout(WAIT, stream.collect(4096)).await.expect("an answer on time").unwrap();
        assert!(out.exited.timed_out, "terminal {terminal}: {:?}", out.exited);
        writer.abort();
        // The agent reads the host's frames again.
        assert_eq!(agent.sh("echo alive").await.stdout, b"alive\n", "terminal {terminal}");
    }
}

#[test]
fn exec_control_can_go_to_another_task() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<ExecControl>();
}
