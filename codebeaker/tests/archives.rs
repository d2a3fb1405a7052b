//! Workspace archives of host workspaces (`Archives` on `HostWorkspace`): a round trip
//! keeps files, directories and links; every hostile entry kind is refused with nothing
//! left outside and nothing partial inside.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use codebeaker::workspace::{archive_error, UploadBody};
use codebeaker::{Archives as _, ErrorKind, HostWorkspace};
use tokio::io::AsyncReadExt as _;

/// What a tree holds, links as links: path → ("dir" | "file:<content>" | "link:<target>").
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link:{}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".into()
            } else if meta.is_file() {
                format!("file:{}", String::from_utf8_lossy(&std::fs::read(&path).unwrap()))
            } else {
                "special".into()
            };
            found.insert(name, what);
        }
    }
    found
}

fn mkfifo(path: &Path) {
    let made = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(made.as_ptr(), 0o600) }, 0);
}

async fn export(ws: &HostWorkspace, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut download = ws.export(limit).await.unwrap();
    let mut bytes = Vec::new();
    download.reader.read_to_end(&mut bytes).await.map(|_| bytes)
}

fn body(bytes: Vec<u8>) -> UploadBody {
    Box::pin(std::io::Cursor::new(bytes))
}

#[tokio::test]
async fn a_workspace_round_trips_with_its_links_and_without_its_fifos() {
    let tmp = tempfile::tempdir().unwrap();
    let from = HostWorkspace::open(tmp.path().join("from")).unwrap();
    let root = from.root();
    std::fs::create_dir_all(root.join(".local/lib/python3.11/site-packages/tiny")).unwrap();
    std::fs::write(root.join(".local/lib/python3.11/site-packages/tiny/__init__.py"), "X = 1\n").unwrap();
    std::fs::write(root.join("main.py"), "print('hi')\n").unwrap();
    std::fs::write(root.join("empty"), "").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(root.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("main.py", root.join("alias.py")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", root.join("python")).unwrap();
    std::os::unix::fs::symlink(".", root.join("loop")).unwrap();
    mkfifo(&root.join("pipe"));
    let long = "d".repeat(120) + "/" + &"f".repeat(130);
    std::fs::create_dir(root.join("d".repeat(120))).unwrap();
    std::fs::write(root.join(&long), "long name").unwrap();

    let archive = export(&from, 64 * 1024 * 1024).await.unwrap();
    let to = HostWorkspace::open(tmp.path().join("to")).unwrap().with_quota(64 * 1024 * 1024);
    let written = to.import(body(archive)).await.unwrap();
    assert_eq!(written, "X = 1\n".len() as u64 + 12 + 10 + 9);
    let mut expected = tree(from.root());
    expected.remove("pipe");
    assert_eq!(tree(to.root()), expected);
    assert!(std::fs::symlink_metadata(to.root().join("python")).unwrap().file_type().is_symlink());
    let mode = std::fs::metadata(to.root().join("run.sh")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "executables stay executable, privately");
}

#[tokio::test]
async fn an_export_past_its_limit_ends_with_limit_reached_even_for_a_sparse_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = HostWorkspace::open(tmp.path().join("ws")).unwrap();
    let sparse = std::fs::File::create(ws.root().join("sparse")).unwrap();
    sparse.set_len(1 << 40).unwrap();
    let err = export(&ws, 4 * 1024 * 1024).await.unwrap_err();
    assert_eq!(archive_error(err, "export").kind(), ErrorKind::LimitReached);
    // What came before the error is no archive an extractor would take as whole: fed
    // straight into an import, the failure reaches it and nothing remains.
    let to = HostWorkspace::open(tmp.path().join("to")).unwrap();
    let err = to.import(ws.export(4 * 1024 * 1024).await.unwrap().reader).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::LimitReached | ErrorKind::InvalidInput), "{err:?}");
    assert!(tree(to.root()).is_empty());
}

/// A tar entry of `kind` named `name` byte for byte (the `tar` crate's own path setters
/// refuse the hostile names this test needs).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, data: &[u8], link: &str) {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A hand-made entry: its name, kind and link target.
type Entry<'a> = (String, tar::EntryType, &'a str);

#[tokio::test]
async fn hostile_entries_are_refused_leaving_nothing_outside_and_nothing_partial() {
    use tar::EntryType as T;
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let outside_str = outside.display().to_string();
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("absolute", vec![(format!("{outside_str}/abs"), T::Regular, "")]),
        ("dotdot", vec![("../outside/dotdot".into(), T::Regular, "")]),
        ("nested dotdot", vec![("sub/../../outside/dotdot".into(), T::Regular, "")]),
        ("hard link", vec![("hard".into(), T::Link, "/etc/passwd")]),
        ("fifo", vec![("fifo".into(), T::Fifo, "")]),
        ("char device", vec![("null".into(), T::Char, "")]),
        ("block device", vec![("disk".into(), T::Block, "")]),
        (
            "symlink escape then file",
            vec![("esc".into(), T::Symlink, &outside_str), ("esc/planted".into(), T::Regular, "")],
        ),
        (
            "relative escape then file",
            vec![("rel".into(), T::Symlink, "../outside"), ("rel/planted".into(), T::Regular, "")],
        ),
        (
            "inner link then file",
            vec![("sub".into(), T::Directory, ""), ("in".into(), T::Symlink, "sub"), ("in/x".into(), T::Regular, "")],
        ),
    ];
    for (case, entries) in cases {
        let ws = HostWorkspace::open(tmp.path().join("ws")).unwrap();
        std::fs::write(ws.root().join("keep.txt"), "kept").unwrap();
        std::fs::write(ws.root().join("replaced.txt"), "original").unwrap();
        std::os::unix::fs::symlink(&outside, ws.root().join("planted")).unwrap();
        let before = tree(ws.root());
        let mut archive = Vec::new();
        raw_entry(&mut archive, "new-dir/", T::Directory, b"", "");
        raw_entry(&mut archive, "new-dir/good.txt", T::Regular, b"good", "");
        raw_entry(&mut archive, "replaced.txt", T::Regular, b"from the archive", "");
        for (name, kind, link) in &entries {
            raw_entry(&mut archive, name, *kind, b"evil", link);
        }
        let err = ws.import(body(finish(archive))).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{case}: {err:?}");
        assert_eq!(tree(ws.root()), before, "{case}: the workspace is as it was");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "{case}: nothing outside");
        // A file through a link that was there before the import is refused too.
        let mut through = Vec::new();
        raw_entry(&mut through, "planted/x", T::Regular, b"evil", "");
        let err = ws.import(body(finish(through))).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        std::fs::remove_dir_all(ws.root()).unwrap();
    }
}

#[tokio::test]
async fn an_import_over_the_quota_is_refused_and_undone_sparse_entries_included() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = HostWorkspace::open(tmp.path().join("ws")).unwrap().with_quota(4 * 1024 * 1024);
    let mut archive = Vec::new();
    raw_entry(&mut archive, "small.txt", tar::EntryType::Regular, b"small", "");
    raw_entry(&mut archive, "big.bin", tar::EntryType::Regular, &vec![7u8; 5 * 1024 * 1024], "");
    let err = ws.import(body(finish(archive))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitReached, "{err:?}");
    assert!(tree(ws.root()).is_empty(), "{:?}", tree(ws.root()));

    // A GNU sparse entry: 512 bytes stored, claiming 8 GiB of holes.
    let mut header = tar::Header::new_gnu();
    header.set_path("sparse.bin").unwrap();
    header.set_entry_type(tar::EntryType::GNUSparse);
    header.set_mode(0o644);
    header.set_size(512);
    let gnu = header.as_gnu_mut().unwrap();
    let octal = |field: &mut [u8; 12], value: u64| field.copy_from_slice(format!("{value:011o}\0").as_bytes());
    octal(&mut gnu.sparse[0].offset, 0);
    octal(&mut gnu.sparse[0].numbytes, 512);
    octal(&mut gnu.realsize, (1 << 33) - 1);
    header.set_cksum();
    let mut archive = header.as_bytes().to_vec();
    archive.extend_from_slice(&[1u8; 512]);
    let err = ws.import(body(finish(archive))).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::LimitReached | ErrorKind::InvalidInput), "{err:?}");
    assert!(tree(ws.root()).is_empty(), "{:?}", tree(ws.root()));
    assert!(ws.quota().unwrap().usage().unwrap() == 0);
}

/// The file-system uid of the calling thread (`setfsuid` with an invalid id changes
/// nothing and returns the current one).
fn thread_fsuid() -> u32 {
    // SAFETY: an invalid id leaves the thread's ids as they are.
    unsafe { libc::setfsuid(u32::MAX) as u32 }
}

/// An archive body that notes the file-system uid of every thread that reads it.
struct Watched {
    inner: std::io::Cursor<Vec<u8>>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.seen.lock().unwrap().push(thread_fsuid());
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// An import into a workspace that acts as its sandbox's uid never reads the archive
/// (nor starts anything, e.g. `tokio::fs` reads' blocking threads) on the thread acting
/// as that uid: a thread started there inherits the uid, and the runtime's blocking
/// threads once served other sandboxes and the server's own file work under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_never_reads_its_archive_as_the_workspaces_owner() {
    // SAFETY: geteuid has no failure modes.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can act as another uid");
        return;
    }
    let from_dir = tempfile::tempdir().unwrap();
    std::fs::write(from_dir.path().join("a.txt"), "x".repeat(300_000)).unwrap();
    let archive = export(&HostWorkspace::open(from_dir.path()).unwrap(), 64 << 20).await.unwrap();

    let to_dir = tempfile::tempdir().unwrap();
    let owner = codebeaker::workspace::FsOwner { uid: 1_900_123_456, gid: 1_900_123_456 };
    std::os::unix::fs::chown(to_dir.path(), Some(owner.uid), Some(owner.gid)).unwrap();
    let to = HostWorkspace::open(to_dir.path()).unwrap().acting_as(Some(owner));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let body: UploadBody = Box::pin(Watched { inner: std::io::Cursor::new(archive), seen: seen.clone() });
    to.import(body).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|uid| *uid == 0), "the archive was read as uid {seen:?}");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata(to_dir.path().join("a.txt")).unwrap().uid(), owner.uid, "extracted as the owner");
}
