//! What the [`Sandbox`](super::Sandbox) calls return, in the SDKs' (and E2B's) shapes:
//! [`Execution`] with its [`Result`]s, [`Logs`] and [`ExecutionError`];
//! [`CommandResult`]; [`EntryInfo`].

use std::collections::BTreeMap;

use codebeaker::{CommandOutcome, EntryType, ErrorKind, RichOutput};

use crate::error::ClientError;

/// Output MIME types and the [`Result`] fields that hold them (the SDKs' table).
const MIME_FIELDS: [&str; 9] = [
    "text/plain",
    "text/html",
    "text/markdown",
    "text/latex",
    "image/png",
    "image/jpeg",
    "image/svg+xml",
    "application/json",
    "application/javascript",
];

/// One rich result of a run: a figure, or ([`Result::is_main_result`]) the trailing
/// value. Binary types (`png`, `jpeg`) are base64 text, as notebooks carry them.
///
/// E2B's name; it is not re-exported at the crate root, where `Result` is the crate's
/// result alias: name it `codebeaker_client::sandbox::Result`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Result {
    /// `text/plain`.
    pub text: Option<String>,
    /// `text/html`.
    pub html: Option<String>,
    /// `text/markdown`.
    pub markdown: Option<String>,
    /// `text/latex`.
    pub latex: Option<String>,
    /// `image/png`, base64.
    pub png: Option<String>,
    /// `image/jpeg`, base64.
    pub jpeg: Option<String>,
    /// `image/svg+xml`.
    pub svg: Option<String>,
    /// `application/json`.
    pub json: Option<String>,
    /// `application/javascript`.
    pub javascript: Option<String>,
    /// Whether this is the run's trailing value (its `text/plain`).
    pub is_main_result: bool,
    /// Other MIME types, by type.
    pub extra: BTreeMap<String, String>,
}

impl Result {
    /// The field of MIME type `mime`, if it has one.
    fn field(&mut self, mime: &str) -> Option<&mut Option<String>> {
        let fields = [
            &mut self.text,
            &mut self.html,
            &mut self.markdown,
            &mut self.latex,
            &mut self.png,
            &mut self.jpeg,
            &mut self.svg,
            &mut self.json,
            &mut self.javascript,
        ];
        MIME_FIELDS.iter().zip(fields).find(|(known, _)| **known == mime).map(|(_, field)| field)
    }

    /// The formats this result has: its fields' names (`text`, `png`…), then the MIME
    /// types of [`Result::extra`].
    pub fn formats(&self) -> Vec<&str> {
        let fields = [
            ("text", &self.text),
            ("html", &self.html),
            ("markdown", &self.markdown),
            ("latex", &self.latex),
            ("png", &self.png),
            ("jpeg", &self.jpeg),
            ("svg", &self.svg),
            ("json", &self.json),
            ("javascript", &self.javascript),
        ];
        let names = fields.into_iter().filter(|(_, value)| value.is_some()).map(|(name, _)| name);
        names.chain(self.extra.keys().map(String::as_str)).collect()
    }

    /// The PNG decoded, if there is one.
    pub fn png_bytes(&self) -> crate::Result<Option<Vec<u8>>> {
        self.png.as_deref().map(|png| codebeaker::Encoding::Base64.decode(png).map_err(ClientError::Failed)).transpose()
    }
}

/// The envelope's `outputs` as results: each figure a result of its own, and the
/// trailing value (its `text/plain`) the main result.
fn results_from(outputs: &[RichOutput]) -> Vec<Result> {
    outputs
        .iter()
        .map(|output| {
            let mut result = Result { is_main_result: output.mime == "text/plain", ..Result::default() };
            match result.field(&output.mime) {
                Some(field) => *field = Some(output.data.clone()),
                None => {
                    result.extra.insert(output.mime.clone(), output.data.clone());
                }
            }
            result
        })
        .collect()
}

/// What a run printed, in the chunks it arrived in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logs {
    /// Standard output.
    pub stdout: Vec<String>,
    /// Standard error.
    pub stderr: Vec<String>,
}

/// The error a run raised: its type's name, its message, and the traceback text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionError {
    /// The error's type (`ReferenceError`, `ZeroDivisionError`…; `Error` when the
    /// message names none).
    pub name: String,
    /// Its message.
    pub value: String,
    /// What the run wrote to standard error, or else the whole message.
    pub traceback: String,
}

impl ExecutionError {
    /// The error of a program that failed with `message` (`Name: value`), having written
    /// `logs`.
    fn from_message(message: String, logs: &Logs) -> Self {
        let (name, value) = match message.split_once(": ") {
            Some((name, value)) if !value.is_empty() && !name.contains(' ') => (name.to_owned(), value.to_owned()),
            _ => ("Error".to_owned(), message.clone()),
        };
        let stderr = logs.stderr.concat();
        ExecutionError { name, value, traceback: if stderr.is_empty() { message } else { stderr } }
    }
}

/// The outcome of [`Sandbox::run_code`](super::Sandbox::run_code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Execution {
    /// Its rich results (figures, and the trailing value as the main result).
    pub results: Vec<Result>,
    /// What it printed.
    pub logs: Logs,
    /// The program's own error, if it raised one.
    pub error: Option<ExecutionError>,
    /// How many runs the sandbox has had, this one included.
    pub execution_count: u64,
}

impl Execution {
    /// The main result's text, if the run ended with a value.
    pub fn text(&self) -> Option<&str> {
        self.results.iter().find(|result| result.is_main_result).and_then(|result| result.text.as_deref())
    }

    /// The execution of an `execute_code` envelope, whose streamed output is `logs`: a
    /// failure of the program is [`Execution::error`], any other failure is `Err`.
    pub(crate) fn from_outcome(outcome: CommandOutcome, mut logs: Logs, execution_count: u64) -> crate::Result<Self> {
        let output = outcome.output().unwrap_or_default();
        if logs.stdout.is_empty() && logs.stderr.is_empty() && !output.is_empty() {
            logs.stdout.push(output.to_owned()); // a backend that does not stream
        }
        let code = outcome.result.as_ref().and_then(codebeaker::CommandResult::as_code);
        let results = code.map(|code| results_from(code.outputs())).unwrap_or_default();
        let error = match (outcome.success, outcome.error) {
            (true, _) => None,
            // A kind this client does not know (a newer server's) reads as the
            // program's own failure: `CommandOutcome` keeps its message either way.
            (false, Some(error)) if error.kind() != ErrorKind::ProgramFailed => return Err(ClientError::Failed(error)),
            (false, error) => {
                Some(ExecutionError::from_message(error.map(|e| e.to_string()).unwrap_or_default(), &logs))
            }
        };
        Ok(Execution { results, logs, error, execution_count })
    }
}

/// How a command ended: its exit code and everything it printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandResult {
    /// Its exit code (`-1` when its end is unknown).
    pub exit_code: i64,
    /// Its standard output (a terminal's output, for a pty).
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Why its end was not its own, when it was not (`the session closed`, a timeout).
    pub error: Option<String>,
}

impl CommandResult {
    /// The result of a command that exited with `exit_code`; a non-zero code is
    /// [`ClientError::CommandExit`].
    pub(crate) fn ended(self) -> crate::Result<Self> {
        if self.exit_code == 0 {
            return Ok(self);
        }
        Err(ClientError::CommandExit { exit_code: self.exit_code, stdout: self.stdout, stderr: self.stderr })
    }
}

/// An entry of [`Files::list`](super::Files::list), or what
/// [`Files::write`](super::Files::write) wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Its name (no directory part).
    pub name: String,
    /// File, directory or symlink (E2B's `type`).
    pub r#type: EntryType,
    /// Its size in bytes (0 for a directory).
    pub size: u64,
    /// Its path, as given or beneath the listed directory.
    pub path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(mime: &str, data: &str) -> RichOutput {
        RichOutput { mime: mime.into(), data: data.into() }
    }

    #[test]
    fn outputs_become_results_and_the_text_one_is_the_main_result() {
        let results = results_from(&[
            output("image/png", "iVBO"),
            output("application/x-thing", "t"),
            output("text/plain", "42"),
        ]);
        assert_eq!(results[0].png.as_deref(), Some("iVBO"));
        assert!(!results[0].is_main_result);
        assert_eq!(results[0].formats(), ["png"]);
        assert_eq!(results[1].extra.get("application/x-thing").map(String::as_str), Some("t"));
        assert_eq!(results[1].formats(), ["application/x-thing"]);
        assert!(results[2].is_main_result);
        let execution = Execution { results, ..Execution::default() };
        assert_eq!(execution.text(), Some("42"));
    }

    #[test]
    fn a_program_error_is_split_into_its_name_and_value_where_it_names_one() {
        let logs = Logs::default();
        let error = ExecutionError::from_message("ReferenceError: x is not defined".into(), &logs);
        assert_eq!((error.name.as_str(), error.value.as_str()), ("ReferenceError", "x is not defined"));
        assert_eq!(error.traceback, "ReferenceError: x is not defined");
        let error = ExecutionError::from_message("Uncaught Error: boom".into(), &logs);
        assert_eq!((error.name.as_str(), error.value.as_str()), ("Error", "Uncaught Error: boom"));
        let logs = Logs { stdout: vec![], stderr: vec!["trace\n".into(), "back\n".into()] };
        let error = ExecutionError::from_message("Program exited with code 3".into(), &logs);
        assert_eq!((error.name.as_str(), error.traceback.as_str()), ("Error", "trace\nback\n"));
    }
}
