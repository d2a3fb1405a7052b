//! Names and descriptions of Linux signals, so that a process killed by one says which
//! and why (`SIGXFSZ: file size limit exceeded`) instead of a bare number.
//!
//! The descriptions are glibc's `strsignal` texts (lower-cased as the kernel's own
//! messages are); real-time signals are named `SIGRTMIN+n` as `kill -l` names them.

/// The standard signals of x86-64 and aarch64 Linux: number, name, description.
const SIGNALS: [(i32, &str, &str); 31] = [
    (1, "SIGHUP", "hangup"),
    (2, "SIGINT", "interrupt"),
    (3, "SIGQUIT", "quit"),
    (4, "SIGILL", "illegal instruction"),
    (5, "SIGTRAP", "trace/breakpoint trap"),
    (6, "SIGABRT", "aborted"),
    (7, "SIGBUS", "bus error"),
    (8, "SIGFPE", "floating point exception"),
    (9, "SIGKILL", "killed"),
    (10, "SIGUSR1", "user defined signal 1"),
    (11, "SIGSEGV", "segmentation fault"),
    (12, "SIGUSR2", "user defined signal 2"),
    (13, "SIGPIPE", "broken pipe"),
    (14, "SIGALRM", "alarm clock"),
    (15, "SIGTERM", "terminated"),
    (16, "SIGSTKFLT", "stack fault"),
    (17, "SIGCHLD", "child exited"),
    (18, "SIGCONT", "continued"),
    (19, "SIGSTOP", "stopped (signal)"),
    (20, "SIGTSTP", "stopped"),
    (21, "SIGTTIN", "stopped (tty input)"),
    (22, "SIGTTOU", "stopped (tty output)"),
    (23, "SIGURG", "urgent I/O condition"),
    (24, "SIGXCPU", "CPU time limit exceeded"),
    (25, "SIGXFSZ", "file size limit exceeded"),
    (26, "SIGVTALRM", "virtual timer expired"),
    (27, "SIGPROF", "profiling timer expired"),
    (28, "SIGWINCH", "window changed"),
    (29, "SIGIO", "I/O possible"),
    (30, "SIGPWR", "power failure"),
    (31, "SIGSYS", "bad system call"),
];

/// First real-time signal number as the kernel counts (glibc reserves 32 and 33 for
/// itself, and its `SIGRTMIN` is 34; `kill -l` names from 34 on).
const RT_FIRST: i32 = 34;
/// Last signal number.
const RT_LAST: i32 = 64;

/// `SIGXFSZ: file size limit exceeded` for 25; `None` for a number that is no signal.
///
/// ```
/// use codebeaker_agent::protocol::describe_signal;
///
/// assert_eq!(describe_signal(25).as_deref(), Some("SIGXFSZ: file size limit exceeded"));
/// assert_eq!(describe_signal(9).as_deref(), Some("SIGKILL: killed"));
/// assert_eq!(describe_signal(36).as_deref(), Some("SIGRTMIN+2: real-time signal 2"));
/// assert_eq!(describe_signal(0), None);
/// ```
pub fn describe_signal(signal: i32) -> Option<String> {
    if let Some((_, name, text)) = SIGNALS.iter().find(|(number, _, _)| *number == signal) {
        return Some(format!("{name}: {text}"));
    }
    match signal {
        32 | 33 => Some(format!("signal {signal}: real-time signal reserved by the C library")),
        RT_FIRST..=RT_LAST => {
            let n = signal - RT_FIRST;
            Some(format!("SIGRTMIN+{n}: real-time signal {n}"))
        }
        _ => None,
    }
}

/// What an exit status says about a signal: the signal that killed the process itself,
/// else the one a shell reported as `128 + n` (a shell whose last command was killed
/// exits that way). `None` for an ordinary exit.
///
/// ```
/// use codebeaker_agent::protocol::signal_note;
///
/// assert_eq!(
///     signal_note(None, Some(25)).as_deref(),
///     Some("the program was killed by SIGXFSZ: file size limit exceeded")
/// );
/// assert_eq!(
///     signal_note(Some(153), None).as_deref(),
///     Some("exit code 153: a process it ran was killed by SIGXFSZ: file size limit exceeded")
/// );
/// assert_eq!(signal_note(Some(1), None), None);
/// ```
pub fn signal_note(code: Option<i32>, signal: Option<i32>) -> Option<String> {
    if let Some(description) = signal.and_then(describe_signal) {
        return Some(format!("the program was killed by {description}"));
    }
    let code = code?;
    let description = code.checked_sub(128).filter(|n| *n > 0).and_then(describe_signal)?;
    Some(format!("exit code {code}: a process it ran was killed by {description}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_number_has_a_name_and_description() {
        for signal in 1..=RT_LAST {
            let text = describe_signal(signal).unwrap_or_else(|| panic!("signal {signal} has no description"));
            assert!(text.contains(": ") && text.len() > 8, "{signal}: {text}");
        }
        assert_eq!(describe_signal(65), None);
        assert_eq!(describe_signal(-1), None);
        assert_eq!(describe_signal(11).as_deref(), Some("SIGSEGV: segmentation fault"));
    }

    #[test]
    fn ordinary_exits_carry_no_note() {
        assert_eq!(signal_note(Some(0), None), None);
        assert_eq!(signal_note(Some(127), None), None);
        assert_eq!(signal_note(Some(128), None), None);
        assert_eq!(signal_note(Some(255), None), None);
        assert_eq!(signal_note(None, None), None);
        assert!(signal_note(Some(137), None).is_some_and(|n| n.contains("SIGKILL")));
    }
}
