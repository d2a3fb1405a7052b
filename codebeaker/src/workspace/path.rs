//! [`WorkspacePath`]: a normalised path that cannot point outside `/workspace`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where a sandbox's files live, as its code sees them.
pub const WORKSPACE_ROOT: &str = "/workspace";

/// Longest path accepted, in bytes (Linux's `PATH_MAX`).
const MAX_PATH_BYTES: usize = 4096;
/// Longest file name accepted, in bytes (Linux's `NAME_MAX`).
const MAX_NAME_BYTES: usize = 255;

/// A path inside the workspace, normalised: no `.`, no `..`, no empty components.
///
/// It can only be built by [`WorkspacePath::parse`] (also reached as
/// [`WorkspacePath::new`], `TryFrom<&str>`, `str::parse` and serde), so holding one
/// proves the path stays under `/workspace` lexically. Commands carry it, so a path is
/// checked once, where a request enters (deserialization or an SDK constructor), and
/// backends use it as it is. Symlinks are the backend's job: they are resolved where the
/// files are.
///
/// In JSON it is a string, written back normalised (`"src/../main.py"` comes back as
/// `"/workspace/main.py"`); a string that leaves the workspace does not deserialize.
///
/// ```
/// use codebeaker::WorkspacePath;
/// assert_eq!(WorkspacePath::new("src/../main.py").unwrap().to_string(), "/workspace/main.py");
/// assert!(WorkspacePath::try_from("../../etc/passwd").is_err());
/// assert!("/etc/passwd".parse::<WorkspacePath>().is_err());
/// let refused = serde_json::from_str::<WorkspacePath>(r#""/etc/passwd""#).unwrap_err();
/// assert!(refused.to_string().contains("/etc/passwd is outside /workspace"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspacePath {
    /// Components joined by `/`, empty for the workspace root.
    relative: String,
}

impl WorkspacePath {
    /// The workspace root itself.
    pub fn root() -> Self {
        WorkspacePath { relative: String::new() }
    }

    /// [`WorkspacePath::parse`], by the name SDK users look for first.
    pub fn new(input: &str) -> Result<Self> {
        Self::parse(input)
    }

    /// Resolves `input` (absolute under `/workspace`, or relative to it) and refuses it with
    /// [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied) if it leaves the workspace, or [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if
    /// it is empty, too long or contains a NUL byte.
    pub fn parse(input: &str) -> Result<Self> {
        if input.is_empty() {
            return Err(Error::invalid_input("path must not be empty"));
        }
        if input.len() > MAX_PATH_BYTES {
            return Err(Error::invalid_input(format!("path is longer than {MAX_PATH_BYTES} bytes")));
        }
        if input.contains('\0') {
            return Err(Error::invalid_input(format!("path {input:?} contains a NUL byte")));
        }
        let relative = match input.strip_prefix(WORKSPACE_ROOT) {
            Some("") => "",
            Some(rest) if rest.starts_with('/') => rest,
            _ if input.starts_with('/') => return Err(outside(input)),
            _ => input,
        };
        let mut parts: Vec<&str> = Vec::new();
        for component in relative.split('/') {
            match component {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(outside(input));
                    }
                }
                name if name.len() > MAX_NAME_BYTES => {
                    return Err(Error::invalid_input(format!(
                        "path component of {} bytes exceeds {MAX_NAME_BYTES}",
                        name.len()
                    )))
                }
                name => parts.push(name),
            }
        }
        Ok(WorkspacePath { relative: parts.join("/") })
    }

    /// The path relative to the workspace root (`""` for the root).
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// Whether this is the workspace root.
    pub fn is_root(&self) -> bool {
        self.relative.is_empty()
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        (!self.is_root()).then(|| self.relative.rsplit('/').next().unwrap_or(&self.relative))
    }

    /// The containing directory, or `None` for the root.
    pub fn parent(&self) -> Option<WorkspacePath> {
        if self.is_root() {
            return None;
        }
        let parent = self.relative.rsplit_once('/').map_or("", |(parent, _)| parent);
        Some(WorkspacePath { relative: parent.to_owned() })
    }

    /// This path under a host directory that stands for `/workspace`.
    pub fn on_host(&self, host_root: &Path) -> PathBuf {
        if self.is_root() {
            host_root.to_path_buf()
        } else {
            host_root.join(&self.relative)
        }
    }

    /// The path relative to the root for directory-handle APIs (`.` for the root).
    pub(crate) fn relative_or_dot(&self) -> &str {
        if self.is_root() {
            "."
        } else {
            &self.relative
        }
    }
}

fn outside(input: &str) -> Error {
    Error::permission_denied(format!("{input} is outside {WORKSPACE_ROOT}"))
}

impl fmt::Display for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str(WORKSPACE_ROOT)
        } else {
            write!(f, "{WORKSPACE_ROOT}/{}", self.relative)
        }
    }
}

impl TryFrom<&str> for WorkspacePath {
    type Error = Error;

    fn try_from(input: &str) -> Result<Self> {
        Self::parse(input)
    }
}

impl TryFrom<String> for WorkspacePath {
    type Error = Error;

    fn try_from(input: String) -> Result<Self> {
        Self::parse(&input)
    }
}

impl std::str::FromStr for WorkspacePath {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        Self::parse(input)
    }
}

impl serde::Serialize for WorkspacePath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WorkspacePath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        // `Permission denied: ../x is outside /workspace`: the message names the path.
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What the command constructors ([`Command::write_file`](crate::Command::write_file) and
/// the others) take as a path: a [`WorkspacePath`], or a string checked into one.
pub trait IntoWorkspacePath {
    /// The checked path, or why the string is not one.
    fn into_workspace_path(self) -> Result<WorkspacePath>;
}

/// A path is a string: absolute under `/workspace` or relative to it, never climbing out
/// (requests with such a path are refused while being read).
impl schemars::JsonSchema for WorkspacePath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WorkspacePath".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A path in the session's workspace: absolute under /workspace or relative to it; a path that leaves /workspace is refused.",
            "type": "string",
            "minLength": 1,
        })
    }
}

impl IntoWorkspacePath for WorkspacePath {
    fn into_workspace_path(self) -> Result<WorkspacePath> {
        Ok(self)
    }
}

impl IntoWorkspacePath for &WorkspacePath {
    fn into_workspace_path(self) -> Result<WorkspacePath> {
        Ok(self.clone())
    }
}

impl IntoWorkspacePath for &str {
    fn into_workspace_path(self) -> Result<WorkspacePath> {
        WorkspacePath::parse(self)
    }
}

impl IntoWorkspacePath for String {
    fn into_workspace_path(self) -> Result<WorkspacePath> {
        WorkspacePath::parse(&self)
    }
}

impl IntoWorkspacePath for &String {
    fn into_workspace_path(self) -> Result<WorkspacePath> {
        WorkspacePath::parse(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn resolved(input: &str) -> String {
        WorkspacePath::parse(input).unwrap().to_string()
    }

    #[test]
    fn relative_and_absolute_paths_resolve_under_the_workspace() {
        assert_eq!(resolved("hello.py"), "/workspace/hello.py");
        assert_eq!(resolved("./calculator.ts"), "/workspace/calculator.ts");
        assert_eq!(resolved("/workspace/hello.py"), "/workspace/hello.py");
        assert_eq!(resolved("/workspace"), "/workspace");
        assert_eq!(resolved("/workspace/"), "/workspace");
        assert_eq!(resolved("."), "/workspace");
        assert_eq!(resolved("a//b/./c/"), "/workspace/a/b/c");
        assert_eq!(resolved("a/b/../c"), "/workspace/a/c");
    }

    #[test]
    fn traversal_attempts_are_refused() {
        for attack in [
            "..",
            "../etc/passwd",
            "../../../../etc/passwd",
            "a/../../etc",
            "/workspace/../etc/passwd",
            "/workspace/a/../../root",
            "./../workspace2/x",
            "/etc/passwd",
            "/",
            "/workspace2/file",
            "/workspacefile",
            "/tmp/../workspace/x",
        ] {
            let err = WorkspacePath::parse(attack).unwrap_err();
            assert!(
                err.kind() == ErrorKind::PermissionDenied
                    && err.message().contains(attack)
                    && err.message().contains("outside /workspace"),
                "{attack:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn malformed_paths_are_invalid_input() {
        assert!(WorkspacePath::parse("").as_ref().err().map(|e| e.kind()) == Some(ErrorKind::InvalidInput));
        assert!(WorkspacePath::parse("a\0b").as_ref().err().map(|e| e.kind()) == Some(ErrorKind::InvalidInput));
        assert!(
            WorkspacePath::parse(&"a".repeat(300)).as_ref().err().map(|e| e.kind()) == Some(ErrorKind::InvalidInput)
        );
        assert!(
            WorkspacePath::parse(&"a/".repeat(3000)).as_ref().err().map(|e| e.kind()) == Some(ErrorKind::InvalidInput)
        );
    }

    #[test]
    fn parent_and_file_name() {
        let path = WorkspacePath::parse("src/app/main.py").unwrap();
        assert_eq!(path.file_name(), Some("main.py"));
        assert_eq!(path.parent().unwrap().to_string(), "/workspace/src/app");
        assert_eq!(WorkspacePath::parse("x").unwrap().parent(), Some(WorkspacePath::root()));
        assert_eq!(WorkspacePath::root().parent(), None);
        assert_eq!(WorkspacePath::root().file_name(), None);
        assert_eq!(path.on_host(Path::new("/srv/s1")), PathBuf::from("/srv/s1/src/app/main.py"));
    }

    /// Checks what every accepted path must satisfy.
    fn assert_contained(input: &str, path: &WorkspacePath) {
        let shown = path.to_string();
        assert!(shown == WORKSPACE_ROOT || shown.starts_with("/workspace/"), "{input:?} became {shown:?}");
        if !path.is_root() {
            for component in path.relative().split('/') {
                assert!(!matches!(component, "" | "." | ".."), "{input:?} kept component {component:?}");
            }
        }
        assert_eq!(WorkspacePath::parse(&shown).as_ref(), Ok(path), "{input:?}: parsing the result again changed it");
        let host = Path::new("/srv/session");
        assert!(path.on_host(host).starts_with(host), "{input:?} leaves the host root");
        let on_host = path.on_host(host);
        assert!(!on_host.components().any(|c| c == std::path::Component::ParentDir), "{input:?}");
    }

    /// A path-like string built from the pieces that matter to traversal.
    fn path_like() -> impl proptest::strategy::Strategy<Value = String> {
        let piece = proptest::prop_oneof![
            proptest::strategy::Just("..".to_owned()),
            proptest::strategy::Just(".".to_owned()),
            proptest::strategy::Just("".to_owned()),
            proptest::strategy::Just("workspace".to_owned()),
            proptest::strategy::Just("...".to_owned()),
            "[a-z.]{1,4}",
        ];
        (proptest::prelude::any::<bool>(), proptest::collection::vec(piece, 0..10))
            .prop_map(|(absolute, pieces)| format!("{}{}", if absolute { "/" } else { "" }, pieces.join("/")))
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #[test]
        fn arbitrary_strings_never_panic_and_never_escape(input in "\\PC{0,300}") {
            if let Ok(path) = WorkspacePath::parse(&input) {
                assert_contained(&input, &path);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_never_escape(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let input = String::from_utf8_lossy(&bytes);
            if let Ok(path) = WorkspacePath::parse(&input) {
                assert_contained(&input, &path);
            }
        }

        #[test]
        fn traversal_is_refused_exactly_when_it_climbs_out(input in path_like()) {
            // The model: an absolute path must begin with the `/workspace` component
            // literally; what follows is resolved against the workspace, and a `..` above
            // it is an escape.
            let relative = if input.starts_with('/') {
                input.strip_prefix(WORKSPACE_ROOT).filter(|rest| rest.is_empty() || rest.starts_with('/'))
            } else {
                Some(input.as_str())
            };
            let resolved = relative.and_then(|relative| {
                let mut stack: Vec<&str> = Vec::new();
                for component in relative.split('/') {
                    match component {
                        "" | "." => {}
                        ".." => { stack.pop()?; }
                        name => stack.push(name),
                    }
                }
                Some(stack)
            });
            match (WorkspacePath::parse(&input), resolved) {
                (Ok(path), Some(stack)) => {
                    assert_contained(&input, &path);
                    proptest::prop_assert_eq!(path.relative(), stack.join("/"));
                }
                (Ok(path), None) => proptest::prop_assert!(false, "{:?} was accepted as {}", input, path),
                (Err(error), _) if input.is_empty() => proptest::prop_assert!(error.kind() == ErrorKind::InvalidInput),
                (Err(error), Some(_)) => proptest::prop_assert!(false, "{:?} was refused: {}", input, error),
                (Err(error), None) => proptest::prop_assert!(error.kind() == ErrorKind::PermissionDenied, "{:?}", error),
            }
        }
    }
}
