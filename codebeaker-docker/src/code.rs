//! `execute_code`: how each language's source is run, and how its failure is worded.
//!
//! Python and javascript run in the session's persistent interpreter ([`interpreter`]);
//! go and csharp compile and run a fresh program ([`runner`]). Its source travels on the
//! program's standard input, never on a command line (no length limit, no quoting): a
//! fixed `sh` script (the only shell used, and never with user text in it) saves stdin
//! to a fresh directory under `/tmp`, builds and runs it there from `/workspace`, and
//! removes it. Debian's images carry Go 1.19 and Mono's `mcs` (C# 7-ish).

use codebeaker::Language;
use codebeaker_agent::protocol::CodeLanguage;

/// Builds in a private temporary directory, runs, cleans up, and exits with the
/// program's code. `$1` is the build-and-run step.
const FILE_RUNNER: &str = r#"d=$(mktemp -d /tmp/codebeaker-XXXXXX) || exit 125
trap 'rm -rf "$d"' EXIT
cat > "$d/$2" || exit 125
cd /workspace || exit 125
eval "$1"
"#;

/// The agent's persistent interpreter for `language`, if it has one (python and
/// javascript); other languages compile and run with [`runner`].
pub(crate) fn interpreter(language: Language) -> Option<CodeLanguage> {
    match language {
        Language::Python => Some(CodeLanguage::Python),
        Language::JavaScript => Some(CodeLanguage::Javascript),
        _ => None,
    }
}

/// argv and extra environment that compile and run source fed on stdin for `language`
/// (`None` for the interpreted languages and those this backend does not run).
pub(crate) fn runner(language: Language) -> Option<(Vec<String>, Vec<String>)> {
    let sh = |step: &str, file: &str| -> Vec<String> {
        vec!["sh".into(), "-c".into(), FILE_RUNNER.into(), "codebeaker".into(), step.into(), file.into()]
    };
    Some(match language {
        Language::Go => (
            // Built, then run by the shell itself: the program's exit code, or 128 + the
            // signal that killed it, is the answer (`go run` turns both into 1).
            sh(r#"go build -o "$d/main" "$d/main.go" && "$d/main""#, "main.go"),
            vec![
                "GOCACHE=/tmp/go-cache".into(),
                "GOPATH=/tmp/go".into(),
                "GOFLAGS=-mod=mod".into(),
                "GO111MODULE=off".into(),
            ],
        ),
        Language::CSharp => {
            (sh(r#"mcs -nologo -out:"$d/main.exe" "$d/main.cs" >&2 && mono "$d/main.exe""#, "main.cs"), Vec::new())
        }
        _ => return None,
    })
}

/// The message of a failed run: the line of its standard error that names the error
/// (Python's last traceback line, Node's `Error: …` line, Go's `panic:` or compiler
/// error, Mono's exception or `error CS…`), else its last line, else the exit code.
pub(crate) fn failure_message(language: Language, stderr: &str, exit_code: i64) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    let pick = match language {
        Language::Python => lines.iter().rev().find(|l| !l.starts_with(' ')).copied(),
        Language::JavaScript | Language::TypeScript => {
            lines.iter().find(|l| is_error_headline(l) || l.starts_with("Uncaught ")).copied()
        }
        Language::Go => {
            lines.iter().find(|l| l.starts_with("panic: ") || (l.contains(".go:") && !l.starts_with('\t'))).copied()
        }
        Language::CSharp => {
            if let Some(line) = lines.iter().find(|l| l.contains("error CS")) {
                Some(*line)
            } else if let Some(at) = lines.iter().position(|l| l.trim() == "Unhandled Exception:") {
                lines.get(at + 1).copied()
            } else {
                lines.iter().find_map(|l| l.strip_prefix("[ERROR] FATAL UNHANDLED EXCEPTION: "))
            }
        }
        _ => None,
    };
    match pick.or(lines.last().copied()) {
        Some(line) => line.trim().to_owned(),
        None => format!("Program exited with code {exit_code}"),
    }
}

/// `TypeError: x`, `Error [ERR_X]: y`, `SyntaxError: z`: a JavaScript error's first line.
fn is_error_headline(line: &str) -> bool {
    let name: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    !name.is_empty()
        && (name.ends_with("Error") || name.ends_with("Exception"))
        && line[name.len()..].starts_with([':', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_traceback_gives_its_last_line() {
        let stderr = "Traceback (most recent call last):\n  File \"<stdin>\", line 2, in <module>\nValueError: boom\n";
        assert_eq!(failure_message(Language::Python, stderr, 1), "ValueError: boom");
    }

    #[test]
    fn node_error_gives_the_error_line() {
        let stderr = "[stdin]:2\nthrow new Error('boom')\n^\n\nError: boom\n    at [stdin]:2:7\n\nNode.js v18.19.0\n";
        assert_eq!(failure_message(Language::JavaScript, stderr, 1), "Error: boom");
    }

    #[test]
    fn go_panic_and_compile_errors() {
        assert_eq!(
            failure_message(
                Language::Go,
                "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/tmp/x/main.go:3 +0x25\nexit status 2\n",
                1
            ),
            "panic: boom"
        );
        assert_eq!(
            failure_message(Language::Go, "# command-line-arguments\n/tmp/x/main.go:3:2: undefined: x\n", 2),
            "/tmp/x/main.go:3:2: undefined: x"
        );
    }

    #[test]
    fn csharp_exception_and_compile_errors() {
        let stderr = "\nUnhandled Exception:\nSystem.Exception: boom\n  at H.Main () [0x00000] in <x>:0\n[ERROR] FATAL UNHANDLED EXCEPTION: System.Exception: boom\n";
        assert_eq!(failure_message(Language::CSharp, stderr, 1), "System.Exception: boom");
        assert_eq!(
            failure_message(
                Language::CSharp,
                "main.cs(1,20): error CS1525: Unexpected symbol `}'\nCompilation failed: 1 error(s), 0 warnings\n",
                1
            ),
            "main.cs(1,20): error CS1525: Unexpected symbol `}'"
        );
    }

    #[test]
    fn empty_stderr_names_the_exit_code() {
        assert_eq!(failure_message(Language::Python, "", 3), "Program exited with code 3");
    }
}
