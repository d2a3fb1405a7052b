//! Tar bodies for the archive API: what `write_file` and `create_directory` upload, and
//! how a downloaded file is read back. Downloads are capped while they stream (see
//! [`crate::files`]); nothing here sizes a buffer from what a header claims.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use codebeaker::workspace::MAX_TRANSFER_BYTES;

use crate::error::DockerError;

/// Bytes an archive of one file carries beyond the file itself: its header, a GNU long
/// name record, padding and the end-of-archive blocks. A download longer than
/// `MAX_TRANSFER_BYTES` plus this is cut.
pub(crate) const ARCHIVE_OVERHEAD: u64 = 16 * 1024;

/// Ownership and mode of what the backend uploads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// Builds an archive of `dirs` (created in order, e.g. `a`, `a/b`) and optionally one
/// file, all relative to the directory it will be extracted in. `shown` names the
/// command's path in errors.
pub(crate) fn build(
    owner: Owner,
    dirs: &[String],
    file: Option<(&str, &[u8], u32)>,
    shown: &str,
) -> Result<Vec<u8>, DockerError> {
    let mtime = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut builder = tar::Builder::new(Vec::new());
    let fail = |source: std::io::Error| DockerError::Archive { path: shown.to_owned(), source };
    for dir in dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_uid(owner.uid);
        header.set_gid(owner.gid);
        header.set_mtime(mtime);
        header.set_size(0);
        builder.append_data(&mut header, format!("{dir}/"), std::io::empty()).map_err(fail)?;
    }
    if let Some((name, data, mode)) = file {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_uid(owner.uid);
        header.set_gid(owner.gid);
        header.set_mtime(mtime);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, data).map_err(fail)?;
    }
    builder.into_inner().map_err(fail)
}

/// The content of the single regular file in a downloaded archive, at most `limit` bytes
/// (the header's size is checked before anything is read; the read itself is bounded too).
pub(crate) fn single_file(archive: &[u8], shown: &str, limit: u64) -> Result<Vec<u8>, DockerError> {
    let fail = |source: std::io::Error| DockerError::Archive { path: shown.to_owned(), source };
    let mut archive = tar::Archive::new(archive);
    let mut entries = archive.entries().map_err(fail)?;
    let Some(entry) = entries.next() else {
        let empty = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the engine sent an empty archive");
        return Err(fail(empty));
    };
    let entry = entry.map_err(fail)?;
    match entry.header().entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => {}
        tar::EntryType::Directory => return Err(DockerError::IsADirectory { path: shown.to_owned() }),
        _ => return Err(DockerError::NotARegularFile { path: shown.to_owned() }),
    }
    let size = entry.size();
    if size > limit.min(MAX_TRANSFER_BYTES) {
        return Err(DockerError::TooLarge { path: shown.to_owned(), size: Some(size) });
    }
    let mut data = Vec::new();
    entry.take(limit).read_to_end(&mut data).map_err(fail)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: Owner = Owner { uid: 1000, gid: 1000 };

    #[test]
    fn built_archives_read_back() {
        let tar = build(OWNER, &["a".into(), "a/b".into()], Some(("a/b/f.txt", b"hello", 0o644)), "x").unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                assert_eq!(e.header().uid().unwrap(), 1000);
                e.path().unwrap().to_string_lossy().into_owned()
            })
            .collect();
        assert_eq!(names, ["a/", "a/b/", "a/b/f.txt"]);
        let one = build(OWNER, &[], Some(("f.txt", b"hello", 0o644)), "x").unwrap();
        assert_eq!(single_file(&one, "/workspace/f.txt", 100).unwrap(), b"hello");
    }

    #[test]
    fn single_file_refuses_directories() {
        let tar = build(OWNER, &["d".into()], None, "x").unwrap();
        assert!(matches!(single_file(&tar, "/workspace/d", 100), Err(DockerError::IsADirectory { .. })));
    }

    #[test]
    fn a_header_claiming_a_huge_size_is_refused_before_reading() {
        // A header that says 1 PiB (what a sparse file looks like) and no data behind it.
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_path("huge").unwrap();
        header.set_size(1 << 50);
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(&[0; 1024]);
        let err = single_file(&tar, "/workspace/huge", MAX_TRANSFER_BYTES).unwrap_err();
        assert!(matches!(err, DockerError::TooLarge { size: Some(s), .. } if s == 1 << 50), "{err}");
    }
}
