//! Where Deno sessions keep their files on the host: a backend root (0700, the server's
//! own), one directory per backend instance in it (`<pid>-<uuid>`), one per *lineage* in
//! that (`l-<uuid>`: a session and the live forks made of it), and one per session in its
//! lineage's (`deno-<uuid>`), each created 0700 and never reused. A worker's Landlock rule
//! names its lineage's directory, so a live fork (a copy of the worker, walls and all)
//! reaches its own workspace beside its original's; no other session's is beneath it.
//!
//! When workers run as uids of their own (a root server, process isolation), the root,
//! the instance and the lineage directories are 0710 with the workers' passage group: a
//! worker may pass through them, not list, read or write them; each session's directory
//! belongs to its uid, so a session and its forks are kept apart by their uids too.
//!
//! A root that already exists must be a real directory (not a symlink), owned by the
//! server's user and closed to others and (but for the passage group's search right) to
//! group: a root another user could read, or could have prepared, is refused rather than
//! used as found.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use codebeaker::workspace::PRIVATE_DIR_MODE;
use codebeaker::{Error, HostWorkspace, Result};

use crate::worker::identity::{hand_over, Identity};

/// Mode of the root and instance directories when workers of other uids pass through.
const PASSAGE_DIR_MODE: u32 = 0o710;

fn unusable(root: &Path, why: String) -> Error {
    Error::backend_unavailable(
        "deno",
        format!(
            "workspace root {} {why}; refusing to keep sessions' files there (remove it to let CodeBeaker create it, or name another)",
            root.display()
        ),
    )
}

/// The default backend root: `codebeaker-deno-<uid>` in the temporary directory (one per
/// user, so a user's root is never one another user made).
pub(crate) fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("codebeaker-deno-{uid}"))
}

/// Creates the backend root (0700) or checks that an existing one is private and ours (a
/// search right for the workers' `group` is allowed); with `passage`, then opens it to that
/// group's search right (0710).
pub(crate) fn prepare_root(root: &Path, group: u32, passage: bool) -> Result<()> {
    let shown = root.display().to_string();
    let metadata = match std::fs::symlink_metadata(root) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(PRIVATE_DIR_MODE)
                .create(root)
                .map_err(|e| Error::from_io(&shown, e))?;
            std::fs::symlink_metadata(root).map_err(|e| Error::from_io(&shown, e))?
        }
        Err(e) => return Err(Error::from_io(&shown, e)),
    };
    check_private(root, &metadata, group)?;
    if !passage {
        return Ok(());
    }
    check_passable(root)?;
    open_passage(root, Some(group))
}

/// Workers of other uids must be able to pass through every directory above the root.
fn check_passable(root: &Path) -> Result<()> {
    let absolute = std::path::absolute(root).map_err(|e| Error::from_io(&root.display().to_string(), e))?;
    for dir in absolute.ancestors().skip(1) {
        let Ok(metadata) = std::fs::metadata(dir) else { continue };
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o001 == 0 {
            return Err(unusable(
                root,
                format!(
                    "lies under {} (mode {mode:04o}), which other users may not pass: deno workers run as uids of their own and could not reach their workspaces",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Gives `dir` (ours) to the `passage` group with mode 0710, when there is one.
fn open_passage(dir: &Path, passage: Option<u32>) -> Result<()> {
    let Some(group) = passage else { return Ok(()) };
    let shown = dir.display().to_string();
    std::os::unix::fs::lchown(dir, None, Some(group)).map_err(|e| Error::from_io(&shown, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PASSAGE_DIR_MODE))
        .map_err(|e| Error::from_io(&shown, e))
}

/// The checks on an existing root, separate for the tests: only the workers' `group` may
/// have a right, and only to search.
fn check_private(root: &Path, metadata: &std::fs::Metadata, group: u32) -> Result<()> {
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
    let passage_only = mode & 0o077 == 0o010 && metadata.gid() == group;
    if mode & 0o077 != 0 && !passage_only {
        return Err(unusable(root, format!("is accessible to group or others (mode {mode:04o}, expected 0700)")));
    }
    Ok(())
}

/// Creates this backend instance's directory in `root`: `<pid>-<uuid>`, 0700 (0710 to the
/// `passage` group when there is one), new.
pub(crate) fn create_instance_dir(root: &Path, passage: Option<u32>) -> Result<PathBuf> {
    let dir = root.join(format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    create_private_dir(&dir)?;
    open_passage(&dir, passage)?;
    Ok(dir)
}

/// Creates the workspace of session `id` in a new lineage directory of `instance` (0700,
/// must not exist yet, given to `owner` when the session's workers have a uid of their
/// own) with a quota of `quota_bytes`. `passage` is the workers' group when they pass
/// through the lineage directory to their workspaces.
pub(crate) fn open_session(
    instance: &Path,
    id: &str,
    quota_bytes: u64,
    owner: Option<Identity>,
    passage: Option<u32>,
) -> Result<HostWorkspace> {
    let lineage = instance.join(format!("l-{}", uuid::Uuid::new_v4().simple()));
    create_private_dir(&lineage)?;
    open_passage(&lineage, passage)?;
    let opened = open_in_lineage(&lineage, id, quota_bytes, owner);
    if opened.is_err() {
        let _ = std::fs::remove_dir(&lineage);
    }
    opened
}

/// Creates the workspace of session `id` in the existing `lineage` directory (a live
/// fork's, beside its original's), as [`open_session`] does.
pub(crate) fn open_in_lineage(
    lineage: &Path,
    id: &str,
    quota_bytes: u64,
    owner: Option<Identity>,
) -> Result<HostWorkspace> {
    let root = lineage.join(id);
    create_private_dir(&root)?;
    if let Some(owner) = owner {
        hand_over(&root, owner).map_err(|e| Error::from_io(&root.display().to_string(), e))?;
    }
    Ok(HostWorkspace::open(root)?.with_quota(quota_bytes).acting_as(owner.map(Identity::file_owner)))
}

/// The lineage directory of a workspace made by [`open_session`] or [`open_in_lineage`].
pub(crate) fn lineage_of(workspace: &Path) -> &Path {
    workspace.parent().unwrap_or(workspace)
}

/// Removes a closed session's `workspace`, and its lineage directory once no session of
/// the lineage is left.
pub(crate) fn remove_session(workspace: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(workspace) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Fails (and is left) while a fork's workspace is still in it.
    let _ = std::fs::remove_dir(lineage_of(workspace));
    Ok(())
}

/// `mkdir` with mode 0700 that fails when the path exists (no reuse of what someone made).
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|e| Error::from_io(&dir.display().to_string(), e))?;
    // The umask may have taken bits away, never added them; set the mode exactly anyway.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
        .map_err(|e| Error::from_io(&dir.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: u32 = 1_900_000_000;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn roots_and_workspaces_are_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/deno");
        prepare_root(&root, GROUP, false).unwrap();
        assert_eq!(mode(&root), 0o700);
        let instance = create_instance_dir(&root, None).unwrap();
        assert_eq!(mode(&instance), 0o700);
        let workspace = open_session(&instance, "deno-1", 1 << 20, None, None).unwrap();
        assert_eq!(mode(workspace.root()), 0o700);
        let lineage = lineage_of(workspace.root());
        assert_eq!((mode(lineage), lineage.parent().unwrap()), (0o700, instance.as_path()));
        assert_eq!(workspace.quota().map(|q| q.limit()), Some(1 << 20));
        // An existing session directory is never reused.
        assert!(open_in_lineage(lineage, "deno-1", 1 << 20, None).is_err());
        let fork = open_in_lineage(lineage, "deno-2", 1 << 20, None).unwrap();
        // The lineage goes with its last session.
        remove_session(workspace.root()).unwrap();
        assert!(lineage.exists() && !workspace.root().exists());
        remove_session(fork.root()).unwrap();
        assert!(!lineage.exists());
        // A private root of ours is reused.
        prepare_root(&root, GROUP, false).unwrap();
    }

    #[test]
    fn only_the_workers_group_may_pass_through_a_root() {
        if unsafe { libc::geteuid() } != 0 {
            return; // Only root can give a directory to another group.
        }
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("deno");
        prepare_root(&root, GROUP, true).unwrap();
        let metadata = std::fs::metadata(&root).unwrap();
        assert_eq!((metadata.gid(), mode(&root)), (GROUP, 0o710));
        // Reused as it is, by a backend with or without workers of their own.
        prepare_root(&root, GROUP, true).unwrap();
        prepare_root(&root, GROUP, false).unwrap();
        // Another group's search right is not the workers'.
        std::os::unix::fs::chown(&root, None, Some(GROUP + 1)).unwrap();
        let err = prepare_root(&root, GROUP, false).unwrap_err().to_string();
        assert!(err.contains("mode 0710"), "{err}");
    }

    #[test]
    fn open_or_foreign_roots_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = prepare_root(&open, GROUP, false).unwrap_err().to_string();
        assert!(err.contains("mode 0755") && err.contains(&open.display().to_string()), "{err}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        assert!(prepare_root(&link, GROUP, false).unwrap_err().to_string().contains("is a symlink"));
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(prepare_root(&file, GROUP, false).unwrap_err().to_string().contains("not a directory"));
        // A private directory of another user (only root can make one to test with).
        if unsafe { libc::geteuid() } == 0 {
            let foreign = tmp.path().join("foreign");
            std::fs::create_dir(&foreign).unwrap();
            std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap();
            let err = prepare_root(&foreign, GROUP, false).unwrap_err().to_string();
            assert!(err.contains("belongs to uid 65534"), "{err}");
        }
    }
}
