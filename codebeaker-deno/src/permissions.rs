//! Deno-style permissions of one session: which paths code may read and write, which
//! hosts `fetch` may reach, which environment variables it may see.
//!
//! Code sees two kinds of absolute paths: `/workspace/...`, which maps to the session's own
//! host directory, and every other path, which is the host path itself and is reachable
//! only when `allowRead`/`allowWrite` list it. A path is checked after resolving `.`, `..`
//! and symlinks, so neither `../` nor a link planted inside an allowed directory leads
//! anywhere else. Denials use Deno's words (`Requires read access to "/etc/passwd"`).

use std::path::{Component, Path, PathBuf};

use crate::DenoPermissions;
use codebeaker::{Allowlist, WORKSPACE_ROOT};

/// What a path is needed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reading files, listing directories, `stat`, importing modules.
    Read,
    /// Creating, changing and removing files and directories.
    Write,
}

impl Access {
    fn word(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// A refused operation, worded as Deno words it; becomes a `Deno.errors.PermissionDenied`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied(pub String);

/// A path code named, resolved: what code calls it and where it is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedPath {
    /// The normalised path as code sees it (`/workspace/a.txt`, `/etc/passwd`).
    pub shown: String,
    /// The host path, symlinks resolved as far as the path exists.
    pub host: PathBuf,
}

/// The permissions of one session, with its allowed roots resolved on the host.
#[derive(Debug, Clone)]
pub(crate) struct Permissions {
    workspace: PathBuf,
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    net: Allowlist,
    env: Allowlist,
}

impl Permissions {
    /// Permissions for a session whose `/workspace` is `workspace` on the host. The
    /// workspace is always readable and writable; `/workspace` in a list means it too.
    pub fn new(workspace: &Path, granted: &DenoPermissions) -> Self {
        let workspace = workspace.canonicalize().unwrap_or_else(|_| workspace.to_path_buf());
        let roots = |paths: &[String]| {
            let mut roots = vec![workspace.clone()];
            for path in paths {
                let virtual_path = normalize(&absolute(path));
                // Resolved like checked paths are, so a granted path through a symlink works.
                roots.push(resolve_symlinks(&host_of(&workspace, &virtual_path)));
            }
            roots.dedup();
            roots
        };
        Permissions {
            read: roots(&granted.allow_read),
            write: roots(&granted.allow_write),
            net: granted.allow_net.clone(),
            env: granted.allow_env.clone(),
            workspace,
        }
    }

    /// The host directory standing for `/workspace`.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Resolves `path` (relative paths are under `/workspace`, code's working directory)
    /// and checks it for `access`.
    pub fn check_path(&self, path: &str, access: Access) -> Result<ResolvedPath, Denied> {
        let shown = normalize(&absolute(path));
        let host = resolve_symlinks(&host_of(&self.workspace, &shown));
        let roots = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        };
        if roots.iter().any(|root| host.starts_with(root)) {
            Ok(ResolvedPath { shown, host })
        } else {
            Err(Denied(format!("Requires {} access to \"{shown}\"", access.word())))
        }
    }

    /// The session's `allowNet`.
    pub fn net_allowlist(&self) -> &Allowlist {
        &self.net
    }

    /// Checks that `fetch` may reach `host` (with `port` when the URL names one).
    pub fn check_net(&self, host: &str, port: Option<u16>) -> Result<(), Denied> {
        let with_port = port.map(|p| format!("{host}:{p}"));
        let allowed = self.net.allows(host) || with_port.as_deref().is_some_and(|h| self.net.allows(h));
        if allowed {
            Ok(())
        } else {
            Err(Denied(format!("Requires net access to \"{}\"", with_port.as_deref().unwrap_or(host))))
        }
    }

    /// Checks that code may read or set the variable `name` of its environment.
    pub fn check_env(&self, name: &str) -> Result<(), Denied> {
        if self.env.allows(name) {
            Ok(())
        } else {
            Err(Denied(format!("Requires env access to \"{name}\"")))
        }
    }

    /// Checks that code may see its whole environment (`Deno.env.toObject()`).
    pub fn check_env_all(&self) -> Result<(), Denied> {
        if self.env == Allowlist::All {
            Ok(())
        } else {
            Err(Denied("Requires env access to all, run again with the --allow-env flag".into()))
        }
    }
}

/// Checks a session's path grants against the operator's policy at `session.create`: a
/// grant may name `/workspace` or a path in it, or a path beneath one of `grantable`
/// (the operator's `grantable-paths`, default none), judged after resolving `..` and
/// symlinks. Anything else (`/`, `/etc`, `../`, a link leading out) is
/// [`ErrorKind::InvalidInput`](codebeaker::ErrorKind::InvalidInput) naming the path and the policy.
pub fn check_grants(granted: &DenoPermissions, grantable: &[PathBuf]) -> codebeaker::Result<()> {
    let grantable: Vec<PathBuf> = grantable.iter().map(|root| resolve_symlinks(&lexical(root))).collect();
    for (list, paths) in [("allowRead", &granted.allow_read), ("allowWrite", &granted.allow_write)] {
        for path in paths {
            let shown = normalize(&absolute(path));
            if shown == WORKSPACE_ROOT || shown.starts_with(&format!("{WORKSPACE_ROOT}/")) {
                continue;
            }
            let host = resolve_symlinks(Path::new(&shown));
            if grantable.iter().any(|root| host.starts_with(root)) {
                continue;
            }
            let policy = if grantable.is_empty() {
                "the operator's policy grants no host paths (grantable-paths is empty)".to_owned()
            } else {
                let roots: Vec<String> = grantable.iter().map(|p| p.display().to_string()).collect();
                format!("the operator's policy grants only paths beneath grantable-paths = [{}]", roots.join(", "))
            };
            let resolved = if host.as_os_str() == shown.as_str() {
                String::new()
            } else {
                format!(" (resolves to {})", host.display())
            };
            return Err(codebeaker::Error::invalid_input(format!(
                "permissions.{list}: {path:?}{resolved} is outside the session's workspace; grants may name {WORKSPACE_ROOT} and paths in it, and {policy}"
            )));
        }
    }
    Ok(())
}

/// `path` as an absolute path of code's view (relative paths are under `/workspace`).
fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{WORKSPACE_ROOT}/{path}")
    }
}

/// Removes `.`, `..` and empty components lexically (`..` at the root stays at the root,
/// as the kernel does).
pub(crate) fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The host path of a normalised path of code's view.
fn host_of(workspace: &Path, shown: &str) -> PathBuf {
    match shown.strip_prefix(WORKSPACE_ROOT) {
        Some("") => workspace.to_path_buf(),
        Some(rest) if rest.starts_with('/') => workspace.join(&rest[1..]),
        _ => PathBuf::from(shown),
    }
}

/// Resolves symlinks of the longest existing prefix of `path` and appends the rest, so a
/// path to a file about to be created is checked where it will really be.
fn resolve_symlinks(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    // A dangling symlink must not be judged by its own location: resolve what it points to.
    if let Ok(target) = std::fs::read_link(path) {
        let base = path.parent().unwrap_or(Path::new("/"));
        let joined = lexical(&base.join(target));
        if joined != path {
            return resolve_symlinks(&joined);
        }
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => resolve_symlinks(parent).join(name),
        _ => path.to_path_buf(),
    }
}

/// Lexical normalisation of a host path.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> (tempfile::TempDir, Permissions) {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let perms = Permissions::new(&ws, &DenoPermissions::default());
        (tmp, perms)
    }

    #[test]
    fn workspace_paths_map_to_the_session_directory() {
        let (_tmp, perms) = session();
        let read = perms.check_path("data/../a.txt", Access::Read).unwrap();
        assert_eq!(read.shown, "/workspace/a.txt");
        assert_eq!(read.host, perms.workspace().join("a.txt"));
        assert!(perms.check_path("/workspace", Access::Write).is_ok());
    }

    #[test]
    fn escapes_are_denied_in_deno_words() {
        let (tmp, perms) = session();
        let denied = perms.check_path("/etc/passwd", Access::Read).unwrap_err();
        assert_eq!(denied.0, "Requires read access to \"/etc/passwd\"");
        let denied = perms.check_path("../../etc/passwd", Access::Write).unwrap_err();
        assert_eq!(denied.0, "Requires write access to \"/etc/passwd\"");
        std::os::unix::fs::symlink(tmp.path(), perms.workspace().join("out")).unwrap();
        assert!(perms.check_path("out/secret", Access::Read).is_err());
        std::os::unix::fs::symlink("/nonexistent-dir/x", perms.workspace().join("dangling")).unwrap();
        assert!(perms.check_path("dangling", Access::Write).is_err());
    }

    #[test]
    fn granted_paths_through_symlinks_are_resolved_too() {
        let (tmp, _) = session();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("in.csv"), "x").unwrap();
        std::os::unix::fs::symlink(&data, tmp.path().join("data-link")).unwrap();
        let granted = DenoPermissions {
            allow_read: vec![tmp.path().join("data-link").display().to_string()],
            ..DenoPermissions::default()
        };
        let perms = Permissions::new(&tmp.path().join("ws"), &granted);
        let via_link = format!("{}/data-link/in.csv", tmp.path().display());
        assert!(perms.check_path(&via_link, Access::Read).is_ok());
        assert!(perms.check_path(&via_link, Access::Write).is_err());
    }

    #[test]
    fn grants_outside_the_workspace_need_the_operators_policy() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc", data.join("etc-link")).unwrap();
        let grant = |read: &[&str], write: &[&str]| DenoPermissions {
            allow_read: read.iter().map(|p| p.to_string()).collect(),
            allow_write: write.iter().map(|p| p.to_string()).collect(),
            ..DenoPermissions::default()
        };
        let none: &[PathBuf] = &[];
        for inside in ["/workspace", "/workspace/sub", "sub/dir", "./x", "/workspace/a/../b"] {
            check_grants(&grant(&[inside], &[inside]), none).unwrap();
        }
        for outside in ["/", "/etc", "../", "/workspace/../etc", "/workspacex", "/tmp"] {
            let err = check_grants(&grant(&[], &[outside]), none).unwrap_err();
            let message = err.to_string();
            assert!(err.kind() == codebeaker::ErrorKind::InvalidInput, "{outside}: {err:?}");
            assert!(message.contains("allowWrite") && message.contains("grantable-paths"), "{message}");
            assert!(message.contains(&format!("{outside:?}")), "{message}");
        }
        let data_shown = data.display().to_string();
        let policy = [data.clone()];
        check_grants(&grant(&[&data_shown, &format!("{data_shown}/sub/new")], &[]), &policy).unwrap();
        for escape in [format!("{data_shown}/../"), format!("{data_shown}/etc-link"), tmp.path().display().to_string()]
        {
            let err = check_grants(&grant(&[&escape], &[]), &policy).unwrap_err().to_string();
            assert!(err.contains("allowRead") && err.contains(&data_shown), "{err}");
        }
    }

    #[test]
    fn net_and_env_follow_the_allowlists() {
        let tmp = tempfile::tempdir().unwrap();
        let granted = DenoPermissions {
            allow_net: Allowlist::Only(vec!["127.0.0.1:8080".into(), "example.com".into()]),
            allow_env: Allowlist::Only(vec!["HOME".into()]),
            ..DenoPermissions::default()
        };
        let perms = Permissions::new(tmp.path(), &granted);
        assert!(perms.check_net("127.0.0.1", Some(8080)).is_ok());
        assert!(perms.check_net("example.com", Some(443)).is_ok());
        let denied = perms.check_net("api.github.com", None).unwrap_err();
        assert_eq!(denied.0, "Requires net access to \"api.github.com\"");
        assert!(perms.check_net("127.0.0.1", Some(9090)).is_err());
        assert!(perms.check_env("HOME").is_ok());
        assert!(perms.check_env("PATH").is_err());
        assert!(perms.check_env_all().is_err());
    }
}
