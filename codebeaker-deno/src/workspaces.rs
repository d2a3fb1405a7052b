//! Where Deno sessions keep their files on the host: a backend root (0700, the server's
//! own), one directory per backend instance in it (`<pid>-<uuid>`), one per session in
//! that (`deno-<uuid>`), each created 0700 and never reused.
//!
//! A root that already exists must be a real directory (not a symlink), owned by the
//! server's user and closed to group and others: a root another user could read, or
//! could have prepared, is refused rather than used as found.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use codebeaker::workspace::PRIVATE_DIR_MODE;
use codebeaker::{Error, HostWorkspace, Result};

fn unusable(root: &Path, why: String) -> Error {
    Error::BackendUnavailable {
        backend: "deno".into(),
        reason: format!(
            "workspace root {} {why}; refusing to keep sessions' files there (remove it to let CodeBeaker create it, or name another)",
            root.display()
        ),
    }
}

/// The default backend root: `codebeaker-deno-<uid>` in the temporary directory (one per
/// user, so a user's root is never one another user made).
pub(crate) fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("codebeaker-deno-{uid}"))
}

/// Creates the backend root (0700) or checks that an existing one is private and ours.
pub(crate) fn prepare_root(root: &Path) -> Result<()> {
    let shown = root.display().to_string();
    let metadata = match std::fs::symlink_metadata(root) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(PRIVATE_DIR_MODE)
                .create(root)
                .map_err(|e| Error::from_io(&shown, &e))?;
            std::fs::symlink_metadata(root).map_err(|e| Error::from_io(&shown, &e))?
        }
        Err(e) => return Err(Error::from_io(&shown, &e)),
    };
    check_private(root, &metadata)
}

/// The checks on an existing root, separate for the tests.
fn check_private(root: &Path, metadata: &std::fs::Metadata) -> Result<()> {
    if metadata.file_type().is_symlink() {
        return Err(unusable(root, "is a symlink".into()));
    }
    if !metadata.is_dir() {
        return Err(unusable(root, "is not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if metadata.uid() != uid {
        return Err(unusable(root, format!("belongs to uid {}, not to the server's uid {uid}", metadata.uid())));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(unusable(root, format!("is accessible to group or others (mode {mode:04o}, expected 0700)")));
    }
    Ok(())
}

/// Creates this backend instance's directory in `root`: `<pid>-<uuid>`, 0700, new.
pub(crate) fn create_instance_dir(root: &Path) -> Result<PathBuf> {
    let dir = root.join(format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    create_private_dir(&dir)?;
    Ok(dir)
}

/// Creates the workspace of session `id` in `instance` (0700, must not exist yet) with a
/// quota of `quota_bytes`.
pub(crate) fn open_session(instance: &Path, id: &str, quota_bytes: u64) -> Result<HostWorkspace> {
    let root = instance.join(id);
    create_private_dir(&root)?;
    Ok(HostWorkspace::open(root)?.with_quota(quota_bytes))
}

/// `mkdir` with mode 0700 that fails when the path exists (no reuse of what someone made).
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|e| Error::from_io(&dir.display().to_string(), &e))?;
    // The umask may have taken bits away, never added them; set the mode exactly anyway.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
        .map_err(|e| Error::from_io(&dir.display().to_string(), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn roots_and_workspaces_are_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/deno");
        prepare_root(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        let instance = create_instance_dir(&root).unwrap();
        assert_eq!(mode(&instance), 0o700);
        let workspace = open_session(&instance, "deno-1", 1 << 20).unwrap();
        assert_eq!(mode(workspace.root()), 0o700);
        assert_eq!(workspace.quota().map(|q| q.limit()), Some(1 << 20));
        // An existing session directory is never reused.
        assert!(open_session(&instance, "deno-1", 1 << 20).is_err());
        // A private root of ours is reused.
        prepare_root(&root).unwrap();
    }

    #[test]
    fn open_or_foreign_roots_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = prepare_root(&open).unwrap_err().to_string();
        assert!(err.contains("mode 0755") && err.contains(&open.display().to_string()), "{err}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        assert!(prepare_root(&link).unwrap_err().to_string().contains("is a symlink"));
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(prepare_root(&file).unwrap_err().to_string().contains("not a directory"));
        // A private directory of another user (only root can make one to test with).
        if unsafe { libc::geteuid() } == 0 {
            let foreign = tmp.path().join("foreign");
            std::fs::create_dir(&foreign).unwrap();
            std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap();
            let err = prepare_root(&foreign).unwrap_err().to_string();
            assert!(err.contains("belongs to uid 65534"), "{err}");
        }
    }
}
