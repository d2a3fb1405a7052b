//! The eight command types of `session.execute`, exactly as they travel on the wire.
//!
//! JSON shape: an object tagged by `type` (`write_file`, `read_file`, …) with camelCase
//! fields. Unknown fields are refused so that a typo such as `workingDir` fails loudly
//! instead of silently running somewhere else. Defaults follow `docs/protocol.md`
//! (`mode: Create`, `args: []`, `workingDirectory: /workspace`); extension fields
//! (`encoding`, `env`, `stdin`) are left out when they hold their default, so clients
//! written against the original guide see the shapes they know.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::workspace::{IntoWorkspacePath, WorkspacePath};

/// One command to run in a session.
///
/// Non-exhaustive: command kinds are added without a breaking change (see "Versioning"
/// in `docs/protocol.md`); a backend answers a kind it does not know with
/// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Create or append to a file.
    WriteFile(WriteFile),
    /// Read a file.
    ReadFile(ReadFile),
    /// Run a program (argv, no shell unless the program is one).
    ExecuteShell(ExecuteShell),
    /// Run source code in the session's language.
    ExecuteCode(ExecuteCode),
    /// Create a directory and its parents.
    CreateDirectory(CreateDirectory),
    /// Copy a file.
    CopyFile(CopyFile),
    /// Delete a file (or an empty directory).
    DeleteFile(DeleteFile),
    /// List a directory.
    ListDirectory(ListDirectory),
}

impl Command {
    /// The wire name of this command's type, e.g. `write_file`.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::WriteFile(_) => "write_file",
            Command::ReadFile(_) => "read_file",
            Command::ExecuteShell(_) => "execute_shell",
            Command::ExecuteCode(_) => "execute_code",
            Command::CreateDirectory(_) => "create_directory",
            Command::CopyFile(_) => "copy_file",
            Command::DeleteFile(_) => "delete_file",
            Command::ListDirectory(_) => "list_directory",
        }
    }
}

/// The members of a command's JSON that name workspace paths.
const PATH_FIELDS: [&str; 4] = ["path", "sourcePath", "destinationPath", "workingDirectory"];

/// Where a request enters: the refusal of the first path in a command's JSON that is not
/// a workspace path (one climbing out of `/workspace`, or malformed), `None` when every
/// path it names is one. The server answers such a command as one that failed
/// (`success: false` with this error), as the protocol has it, rather than as malformed
/// params; every other defect of the command stays an invalid-params error.
pub fn refused_path(command: &serde_json::Value) -> Option<Error> {
    let object = command.as_object()?;
    PATH_FIELDS
        .iter()
        .filter_map(|field| object.get(*field)?.as_str())
        .find_map(|path| WorkspacePath::parse(path).err())
}

/// How `write_file` treats an existing file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WriteMode {
    /// Create the file, replacing any existing content (the default).
    #[default]
    Create,
    /// Append to the file, creating it when missing.
    Append,
}

/// How file content is carried in JSON (extension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The content is the text itself (the default).
    #[default]
    Utf8,
    /// The content is standard base64 of the bytes, for binary files.
    Base64,
}

impl Encoding {
    fn is_default(&self) -> bool {
        *self == Encoding::Utf8
    }
}

/// `write_file`: result `{path, bytes}`.
///
/// On the wire, `append: true` (extension) says the same as `mode: "Append"`; a request
/// that sets both ways differently is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", try_from = "WriteFileWire")]
pub struct WriteFile {
    /// Target path (absolute under `/workspace` or relative to it on the wire).
    pub path: WorkspacePath,
    /// What to write, encoded as `encoding` says.
    pub content: String,
    /// Replace (default) or append.
    #[serde(default)]
    pub mode: WriteMode,
    /// How `content` is encoded (extension).
    #[serde(default, skip_serializing_if = "Encoding::is_default")]
    pub encoding: Encoding,
}

/// What a `write_file` request may carry: [`WriteFile`]'s fields, with the mode given
/// as `mode` or as `append`.
/// It is also the schema of `write_file` requests.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WriteFileWire {
    /// Target path (absolute under `/workspace` or relative to it).
    path: WorkspacePath,
    /// What to write, encoded as `encoding` says.
    content: String,
    /// `Create` (the default) replaces the file, `Append` appends to it.
    #[serde(default)]
    mode: Option<WriteMode>,
    /// `true` is the same as `mode: "Append"` (extension); it must not contradict `mode`.
    #[serde(default)]
    append: Option<bool>,
    /// How `content` is encoded (extension).
    #[serde(default)]
    encoding: Encoding,
}

impl TryFrom<WriteFileWire> for WriteFile {
    type Error = String;

    fn try_from(wire: WriteFileWire) -> std::result::Result<Self, Self::Error> {
        let mode = match (wire.mode, wire.append) {
            (Some(WriteMode::Create), Some(true)) | (Some(WriteMode::Append), Some(false)) => {
                return Err("`append` and `mode` disagree; give one of them".to_owned())
            }
            (Some(mode), _) => mode,
            (None, Some(true)) => WriteMode::Append,
            (None, _) => WriteMode::Create,
        };
        Ok(WriteFile { path: wire.path, content: wire.content, mode, encoding: wire.encoding })
    }
}

/// `read_file`: result `{content, bytes, size, eof}`.
///
/// `offset` and `length` (extensions) read a range, so files of any size can be read
/// in pieces of at most [`MAX_TRANSFER_BYTES`](crate::workspace::MAX_TRANSFER_BYTES).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadFile {
    /// File to read.
    pub path: WorkspacePath,
    /// How to encode the returned content (extension).
    #[serde(default, skip_serializing_if = "Encoding::is_default")]
    pub encoding: Encoding,
    /// First byte to read (extension; default 0). Past the end of the file the content
    /// is empty.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// Most bytes to read (extension; default: the rest of the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// `execute_shell`: result `{exitCode, stdout, stderr, durationMs, timedOut, truncated}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteShell {
    /// The program to run (looked up on the sandbox's `PATH`).
    pub command_name: String,
    /// Its arguments, passed as they are (no shell expansion).
    #[serde(default)]
    pub args: Vec<String>,
    /// Directory to run in (default: the workspace root).
    #[serde(default = "WorkspacePath::root")]
    pub working_directory: WorkspacePath,
    /// Extra environment variables (extension).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Text fed to the program's standard input (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

impl ExecuteShell {
    /// A command running `program` with `args` in `/workspace`.
    pub fn new<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecuteShell {
            command_name: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            working_directory: WorkspacePath::root(),
            env: BTreeMap::new(),
            stdin: None,
        }
    }
}

/// `execute_code`: result is the program's output as a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteCode {
    /// Source code in the session's language.
    pub code: String,
}

/// `create_directory`: result `{path}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDirectory {
    /// Directory to create, with its parents.
    pub path: WorkspacePath,
}

/// `copy_file`: result `{sourcePath, destinationPath, bytes}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CopyFile {
    /// File to copy.
    pub source_path: WorkspacePath,
    /// Where the copy goes (replaced if it exists).
    pub destination_path: WorkspacePath,
}

/// `delete_file`: result `{path, deleted}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteFile {
    /// File (or empty directory) to delete.
    pub path: WorkspacePath,
}

/// `list_directory`: result `{path, entries}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListDirectory {
    /// Directory to list.
    pub path: WorkspacePath,
}

/// Shorthands for building commands in code. The file commands check their paths here,
/// as deserializing does: a path outside `/workspace` is refused before any command
/// exists ([`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied) naming it).
///
/// ```
/// use codebeaker::Command;
/// let write = Command::write_file("out.txt", "x")?;
/// assert!(Command::read_file("../etc/passwd").is_err());
/// # Ok::<(), codebeaker::Error>(())
/// ```
impl Command {
    /// `write_file` of UTF-8 text, replacing the file.
    pub fn write_file(path: impl IntoWorkspacePath, content: impl Into<String>) -> Result<Self> {
        Ok(Command::WriteFile(WriteFile {
            path: path.into_workspace_path()?,
            content: content.into(),
            mode: WriteMode::Create,
            encoding: Encoding::Utf8,
        }))
    }

    /// `read_file` returning UTF-8 text.
    pub fn read_file(path: impl IntoWorkspacePath) -> Result<Self> {
        Ok(Command::ReadFile(ReadFile {
            path: path.into_workspace_path()?,
            encoding: Encoding::Utf8,
            offset: 0,
            length: None,
        }))
    }

    /// `read_file` of at most `length` bytes from `offset`, as base64.
    pub fn read_range(path: impl IntoWorkspacePath, offset: u64, length: u64) -> Result<Self> {
        Ok(Command::ReadFile(ReadFile {
            path: path.into_workspace_path()?,
            encoding: Encoding::Base64,
            offset,
            length: Some(length),
        }))
    }

    /// `execute_shell` of `program` with `args` in `/workspace`.
    pub fn shell<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command::ExecuteShell(ExecuteShell::new(program, args))
    }

    /// `execute_code` in the session's language.
    pub fn code(code: impl Into<String>) -> Self {
        Command::ExecuteCode(ExecuteCode { code: code.into() })
    }

    /// `create_directory` (parents included).
    pub fn create_directory(path: impl IntoWorkspacePath) -> Result<Self> {
        Ok(Command::CreateDirectory(CreateDirectory { path: path.into_workspace_path()? }))
    }

    /// `copy_file` from `source` to `destination`.
    pub fn copy_file(source: impl IntoWorkspacePath, destination: impl IntoWorkspacePath) -> Result<Self> {
        Ok(Command::CopyFile(CopyFile {
            source_path: source.into_workspace_path()?,
            destination_path: destination.into_workspace_path()?,
        }))
    }

    /// `delete_file`.
    pub fn delete_file(path: impl IntoWorkspacePath) -> Result<Self> {
        Ok(Command::DeleteFile(DeleteFile { path: path.into_workspace_path()? }))
    }

    /// `list_directory`.
    pub fn list_directory(path: impl IntoWorkspacePath) -> Result<Self> {
        Ok(Command::ListDirectory(ListDirectory { path: path.into_workspace_path()? }))
    }
}

impl WriteFile {
    /// The bytes to write, decoded from `content` per `encoding`.
    pub fn decoded_content(&self) -> Result<Vec<u8>> {
        self.encoding.decode(&self.content)
    }
}

impl Encoding {
    /// Decodes wire content into bytes.
    pub fn decode(self, content: &str) -> Result<Vec<u8>> {
        use base64::Engine as _;
        match self {
            Encoding::Utf8 => Ok(content.as_bytes().to_vec()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(content)
                .map_err(|e| crate::Error::invalid_input(format!("content is not valid base64: {e}")).with_source(e)),
        }
    }

    /// Encodes file bytes for the wire; `path` names the file in the error when the bytes
    /// are not text and the encoding is `utf8`.
    pub fn encode(self, bytes: Vec<u8>, path: &str) -> Result<String> {
        use base64::Engine as _;
        match self {
            Encoding::Utf8 => String::from_utf8(bytes).map_err(|_| {
                crate::Error::invalid_input(format!(
                    "{path} is not valid UTF-8 text; read it with \"encoding\": \"base64\""
                ))
            }),
            Encoding::Base64 => Ok(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }
}
