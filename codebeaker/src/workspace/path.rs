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
/// It can only be built by [`WorkspacePath::parse`] (or from another `WorkspacePath`), so
/// holding one proves the path stays under `/workspace` lexically. Symlinks are the
/// backend's job: they are resolved where the files are.
///
/// ```
/// use codebeaker::WorkspacePath;
/// assert_eq!(WorkspacePath::parse("src/../main.py").unwrap().to_string(), "/workspace/main.py");
/// assert!(WorkspacePath::parse("../../etc/passwd").is_err());
/// assert!(WorkspacePath::parse("/etc/passwd").is_err());
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

    /// Resolves `input` (absolute under `/workspace`, or relative to it) and refuses it with
    /// [`Error::PermissionDenied`] if it leaves the workspace, or [`Error::InvalidInput`] if
    /// it is empty, too long or contains a NUL byte.
    pub fn parse(input: &str) -> Result<Self> {
        if input.is_empty() {
            return Err(Error::InvalidInput("path must not be empty".into()));
        }
        if input.len() > MAX_PATH_BYTES {
            return Err(Error::InvalidInput(format!("path is longer than {MAX_PATH_BYTES} bytes")));
        }
        if input.contains('\0') {
            return Err(Error::InvalidInput(format!("path {input:?} contains a NUL byte")));
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
                    return Err(Error::InvalidInput(format!(
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
    Error::PermissionDenied(format!("{input} is outside {WORKSPACE_ROOT}"))
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

#[cfg(test)]
mod tests {
    use super::*;

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
                matches!(&err, Error::PermissionDenied(m) if m.contains(attack) && m.contains("outside /workspace")),
                "{attack:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn malformed_paths_are_invalid_input() {
        assert!(matches!(WorkspacePath::parse(""), Err(Error::InvalidInput(_))));
        assert!(matches!(WorkspacePath::parse("a\0b"), Err(Error::InvalidInput(_))));
        assert!(matches!(WorkspacePath::parse(&"a".repeat(300)), Err(Error::InvalidInput(_))));
        assert!(matches!(WorkspacePath::parse(&"a/".repeat(3000)), Err(Error::InvalidInput(_))));
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
                (Err(error), _) if input.is_empty() => proptest::prop_assert!(matches!(error, Error::InvalidInput(_))),
                (Err(error), Some(_)) => proptest::prop_assert!(false, "{:?} was refused: {}", input, error),
                (Err(error), None) => proptest::prop_assert!(matches!(error, Error::PermissionDenied(_)), "{:?}", error),
            }
        }
    }
}
