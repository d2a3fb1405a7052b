//! The eight command types of `session.execute`, exactly as they travel on the wire.
//!
//! JSON shape: an object tagged by `type` (`write_file`, `read_file`, …) with camelCase
//! fields. Unknown fields are refused so that a typo such as `workingDir` fails loudly
//! instead of silently running somewhere else. Defaults follow `docs/protocol.md`
//! (`mode: Create`, `args: []`, `workingDirectory: /workspace`); extension fields
//! (`encoding`, `env`, `stdin`) are left out when they hold their default, so clients
//! written against the original guide see the shapes they know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::workspace::WORKSPACE_ROOT;

/// One command to run in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
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

    /// The workspace paths this command names (empty for the execute commands, whose
    /// programs are contained by the sandbox rather than by path rules).
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Command::WriteFile(c) => vec![&c.path],
            Command::ReadFile(c) => vec![&c.path],
            Command::CreateDirectory(c) => vec![&c.path],
            Command::CopyFile(c) => vec![&c.source_path, &c.destination_path],
            Command::DeleteFile(c) => vec![&c.path],
            Command::ListDirectory(c) => vec![&c.path],
            Command::ExecuteShell(_) | Command::ExecuteCode(_) => Vec::new(),
        }
    }
}

/// How `write_file` treats an existing file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteMode {
    /// Create the file, replacing any existing content (the default).
    #[default]
    Create,
    /// Append to the file, creating it when missing.
    Append,
}

/// How file content is carried in JSON (extension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteFile {
    /// Target path (absolute under `/workspace` or relative to it).
    pub path: String,
    /// What to write, encoded as `encoding` says.
    pub content: String,
    /// Replace (default) or append.
    #[serde(default)]
    pub mode: WriteMode,
    /// How `content` is encoded (extension).
    #[serde(default, skip_serializing_if = "Encoding::is_default")]
    pub encoding: Encoding,
}

/// `read_file`: result `{content, bytes}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadFile {
    /// File to read.
    pub path: String,
    /// How to encode the returned content (extension).
    #[serde(default, skip_serializing_if = "Encoding::is_default")]
    pub encoding: Encoding,
}

/// `execute_shell`: result `{exitCode, stdout, stderr, durationMs, timedOut, truncated}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteShell {
    /// The program to run (looked up on the sandbox's `PATH`).
    pub command_name: String,
    /// Its arguments, passed as they are (no shell expansion).
    #[serde(default)]
    pub args: Vec<String>,
    /// Directory to run in.
    #[serde(default = "default_working_directory")]
    pub working_directory: String,
    /// Extra environment variables (extension).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Text fed to the program's standard input (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

fn default_working_directory() -> String {
    WORKSPACE_ROOT.to_owned()
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
            working_directory: default_working_directory(),
            env: BTreeMap::new(),
            stdin: None,
        }
    }
}

/// `execute_code`: result is the program's output as a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteCode {
    /// Source code in the session's language.
    pub code: String,
}

/// `create_directory`: result `{path}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDirectory {
    /// Directory to create, with its parents.
    pub path: String,
}

/// `copy_file`: result `{sourcePath, destinationPath, bytes}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CopyFile {
    /// File to copy.
    pub source_path: String,
    /// Where the copy goes (replaced if it exists).
    pub destination_path: String,
}

/// `delete_file`: result `{path, deleted}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteFile {
    /// File (or empty directory) to delete.
    pub path: String,
}

/// `list_directory`: result `{path, entries}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListDirectory {
    /// Directory to list.
    pub path: String,
}

/// Shorthands for building commands in code.
impl Command {
    /// `write_file` of UTF-8 text, replacing the file.
    pub fn write_file(path: impl Into<String>, content: impl Into<String>) -> Self {
        Command::WriteFile(WriteFile {
            path: path.into(),
            content: content.into(),
            mode: WriteMode::Create,
            encoding: Encoding::Utf8,
        })
    }

    /// `read_file` returning UTF-8 text.
    pub fn read_file(path: impl Into<String>) -> Self {
        Command::ReadFile(ReadFile { path: path.into(), encoding: Encoding::Utf8 })
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
    pub fn create_directory(path: impl Into<String>) -> Self {
        Command::CreateDirectory(CreateDirectory { path: path.into() })
    }

    /// `copy_file` from `source` to `destination`.
    pub fn copy_file(source: impl Into<String>, destination: impl Into<String>) -> Self {
        Command::CopyFile(CopyFile { source_path: source.into(), destination_path: destination.into() })
    }

    /// `delete_file`.
    pub fn delete_file(path: impl Into<String>) -> Self {
        Command::DeleteFile(DeleteFile { path: path.into() })
    }

    /// `list_directory`.
    pub fn list_directory(path: impl Into<String>) -> Self {
        Command::ListDirectory(ListDirectory { path: path.into() })
    }
}

impl WriteFile {
    /// The bytes to write, decoded from `content` per `encoding`.
    pub fn decoded_content(&self) -> crate::Result<Vec<u8>> {
        self.encoding.decode(&self.content)
    }
}

impl Encoding {
    /// Decodes wire content into bytes.
    pub fn decode(self, content: &str) -> crate::Result<Vec<u8>> {
        use base64::Engine as _;
        match self {
            Encoding::Utf8 => Ok(content.as_bytes().to_vec()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(content)
                .map_err(|e| crate::Error::InvalidInput(format!("content is not valid base64: {e}"))),
        }
    }

    /// Encodes file bytes for the wire; `path` names the file in the error when the bytes
    /// are not text and the encoding is `utf8`.
    pub fn encode(self, bytes: Vec<u8>, path: &str) -> crate::Result<String> {
        use base64::Engine as _;
        match self {
            Encoding::Utf8 => String::from_utf8(bytes).map_err(|_| {
                crate::Error::InvalidInput(format!(
                    "{path} is not valid UTF-8 text; read it with \"encoding\": \"base64\""
                ))
            }),
            Encoding::Base64 => Ok(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }
}
