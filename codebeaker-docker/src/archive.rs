//! Tar bodies for the archive API: what `write_file` and `create_directory` upload, and
//! how downloaded archives are read back (one file, or one level of a directory).

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use codebeaker::result::{DirEntry, EntryType};
use codebeaker::Error;

/// Ownership and mode of what the backend uploads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// Builds an archive of `dirs` (created in order, e.g. `a`, `a/b`) and optionally one
/// file, all relative to the directory it will be extracted in.
pub(crate) fn build(owner: Owner, dirs: &[String], file: Option<(&str, &[u8], u32)>) -> Result<Vec<u8>, Error> {
    let mtime = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut builder = tar::Builder::new(Vec::new());
    let fail = |e: std::io::Error| Error::Internal(format!("cannot build an archive: {e}"));
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

/// The content of the single regular file in a downloaded archive.
pub(crate) fn single_file(archive: &[u8], shown: &str) -> Result<Vec<u8>, Error> {
    let fail = |e: std::io::Error| Error::Internal(format!("cannot read the archive of {shown}: {e}"));
    let mut archive = tar::Archive::new(archive);
    let mut entries = archive.entries().map_err(fail)?;
    let Some(entry) = entries.next() else {
        return Err(Error::Internal(format!("the engine sent an empty archive for {shown}")));
    };
    let mut entry = entry.map_err(fail)?;
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Err(Error::InvalidInput(format!("{shown} is not a regular file")));
    }
    let mut data = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    entry.read_to_end(&mut data).map_err(fail)?;
    Ok(data)
}

/// The direct children of the directory an archive was made of. The archive's first
/// component is the directory itself; deeper entries are skipped (their data is read
/// past, never kept), so memory stays small whatever the directory holds.
pub(crate) fn children(reader: impl Read, shown: &str) -> Result<Vec<DirEntry>, Error> {
    let fail = |e: std::io::Error| Error::Internal(format!("cannot read the archive of {shown}: {e}"));
    let mut archive = tar::Archive::new(reader);
    let mut entries = Vec::new();
    for entry in archive.entries().map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let path = entry.path().map_err(fail)?.to_string_lossy().into_owned();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() != 2 {
            continue;
        }
        let entry_type = match entry.header().entry_type() {
            tar::EntryType::Directory => EntryType::Directory,
            tar::EntryType::Symlink => EntryType::Symlink,
            _ => EntryType::File,
        };
        let size = if entry_type == EntryType::File { entry.size() } else { 0 };
        entries.push(DirEntry { name: parts[1].to_owned(), entry_type, size });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_archives_read_back() {
        let owner = Owner { uid: 1000, gid: 1000 };
        let tar = build(owner, &["a".into(), "a/b".into()], Some(("a/b/f.txt", b"hello", 0o644))).unwrap();
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
    }

    #[test]
    fn children_lists_one_level_sorted() {
        let owner = Owner { uid: 1, gid: 1 };
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in [
            ("src/", tar::EntryType::Directory, &b""[..]),
            ("src/z.txt", tar::EntryType::Regular, &b"12345"[..]),
            ("src/app/", tar::EntryType::Directory, &b""[..]),
            ("src/app/deep.txt", tar::EntryType::Regular, &b"x"[..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_uid(owner.uid);
            builder.append_data(&mut h, name, data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let entries = children(&tar[..], "/workspace/src").unwrap();
        let got: Vec<(&str, EntryType, u64)> =
            entries.iter().map(|e| (e.name.as_str(), e.entry_type, e.size)).collect();
        assert_eq!(got, [("app", EntryType::Directory, 0), ("z.txt", EntryType::File, 5)]);
    }

    #[test]
    fn single_file_refuses_directories() {
        let tar = build(Owner { uid: 1, gid: 1 }, &["d".into()], None).unwrap();
        assert!(matches!(single_file(&tar, "/workspace/d"), Err(Error::InvalidInput(_))));
    }
}
