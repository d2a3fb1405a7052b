//! Snapshots: a session's workspace (its files and the packages it installed beneath it)
//! kept on the host as a tar archive, owned by a tenant, under a per-tenant quota, and
//! surviving a restart of the process (each is two files in the store's directory).
//!
//! Layout: `<root>/<tenant>/<snapshotId>.tar` and `<snapshotId>.json` (its
//! [`SnapshotInfo`]), the tenant directory named by the hex of the tenant's name
//! (`operator` for the operator's own). An archive is written to a `.partial` file and
//! renamed once complete, so a crash never leaves a half snapshot listed; a
//! `.partial` left by a crash is removed when the store opens.
//!
//! A tenant's snapshots are taken one at a time ([`SnapshotStore::reserve`]): the room
//! left of its quota is read and filled under one lock, so concurrent snapshots cannot
//! together pass the quota, and a tenant keeps at most a bounded number of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use crate::error::{Error, Result};
use crate::language::Language;

/// Default per-tenant quota of a store: 1 GiB.
pub const DEFAULT_SNAPSHOT_QUOTA: u64 = 1024 * 1024 * 1024;

/// Default number of snapshots one tenant may keep: every listing and quota check reads
/// each of them, so their count is bounded as well as their bytes.
pub const DEFAULT_MAX_SNAPSHOTS: usize = 1000;

/// A snapshot as `snapshot.list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    /// Its id (what `session.create`'s `fromSnapshot` names).
    pub snapshot_id: String,
    /// The language of the session it was taken of (sessions made from it have it too).
    pub language: Language,
    /// The backend that ran that session (sessions made from it run there too).
    pub backend: String,
    /// Size of its archive in bytes (what counts against the quota).
    pub bytes: u64,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
}

/// The snapshots of one process, on disk under one directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
    quota: u64,
    max_count: usize,
    /// One lock per tenant directory, held from reading the room left to storing the
    /// archive (see [`SnapshotStore::reserve`]); one entry per tenant ever seen.
    writers: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
}

/// The right to store one snapshot for a tenant, with the room its quota leaves
/// ([`SnapshotStore::reserve`]); the tenant's other snapshots wait until it is used or
/// dropped.
#[derive(Debug)]
pub struct SnapshotSlot<'a> {
    store: &'a SnapshotStore,
    tenant: Option<&'a str>,
    room: u64,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl SnapshotStore {
    /// A store under `root` (created, private to this user), each tenant holding at most
    /// `quota` bytes of archives and [`DEFAULT_MAX_SNAPSHOTS`] of them
    /// ([`SnapshotStore::with_max_count`]).
    pub fn open(root: impl Into<PathBuf>, quota: u64) -> Result<SnapshotStore> {
        let root = root.into();
        let shown = root.display().to_string();
        std::fs::create_dir_all(&root).map_err(|e| Error::from_io(&shown, e))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::from_io(&shown, e))?;
        let store = SnapshotStore { root, quota, max_count: DEFAULT_MAX_SNAPSHOTS, writers: Arc::default() };
        store.remove_partials();
        Ok(store)
    }

    /// The directory it keeps snapshots in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The quota of each tenant, in bytes.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// The same store with each tenant keeping at most `max_count` snapshots (at least 1).
    #[must_use]
    pub fn with_max_count(mut self, max_count: usize) -> SnapshotStore {
        self.max_count = max_count.max(1);
        self
    }

    /// How many snapshots each tenant may keep.
    pub fn max_count(&self) -> usize {
        self.max_count
    }

    fn remove_partials(&self) {
        let Ok(tenants) = std::fs::read_dir(&self.root) else { return };
        for tenant in tenants.flatten() {
            let Ok(files) = std::fs::read_dir(tenant.path()) else { continue };
            for file in files.flatten() {
                if file.path().extension().is_some_and(|ext| ext == "partial") {
                    let _ = std::fs::remove_file(file.path());
                }
            }
        }
    }

    fn tenant_dir(&self, tenant: Option<&str>) -> PathBuf {
        let name = match tenant {
            None => "operator".to_owned(),
            Some(tenant) => format!("t-{}", tenant.bytes().map(|b| format!("{b:02x}")).collect::<String>()),
        };
        self.root.join(name)
    }

    /// The snapshots `tenant` owns, oldest first.
    pub fn list(&self, tenant: Option<&str>) -> Vec<SnapshotInfo> {
        let Ok(files) = std::fs::read_dir(self.tenant_dir(tenant)) else { return Vec::new() };
        let mut found: Vec<SnapshotInfo> = files
            .flatten()
            .filter(|file| file.path().extension().is_some_and(|ext| ext == "json"))
            .filter_map(|file| std::fs::read(file.path()).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        found.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.snapshot_id.cmp(&b.snapshot_id)));
        found
    }

    /// Where snapshot `id` of `tenant` lives; `Err` for an id that is not one of ours
    /// (so no client string ever becomes a path).
    fn paths(&self, tenant: Option<&str>, id: &str) -> Result<(PathBuf, PathBuf)> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found(id));
        }
        let dir = self.tenant_dir(tenant);
        Ok((dir.join(format!("{id}.tar")), dir.join(format!("{id}.json"))))
    }

    /// Snapshot `id`, if `tenant` owns it.
    pub fn get(&self, tenant: Option<&str>, id: &str) -> Result<SnapshotInfo> {
        let (_, meta) = self.paths(tenant, id)?;
        let bytes = std::fs::read(&meta).map_err(|_| not_found(id))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::internal(format!("snapshot {id}: {e}")).with_source(e))
    }

    /// Waits for `tenant`'s turn to store a snapshot and returns it with the room its
    /// quota leaves; fails with [`ErrorKind::LimitReached`](crate::ErrorKind::LimitReached)
    /// when the tenant already keeps [`SnapshotStore::max_count`] snapshots.
    pub async fn reserve<'a>(&'a self, tenant: Option<&'a str>) -> Result<SnapshotSlot<'a>> {
        let lock = {
            let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
            writers.entry(self.tenant_dir(tenant)).or_default().clone()
        };
        let turn = lock.lock_owned().await;
        let held = self.list(tenant);
        if held.len() >= self.max_count {
            return Err(Error::limit_reached(format!(
                "this tenant keeps {} snapshots, the most it may; snapshot.delete some first",
                held.len()
            )));
        }
        let room = self.quota.saturating_sub(held.iter().map(|info| info.bytes).sum());
        Ok(SnapshotSlot { store: self, tenant, room, _turn: turn })
    }

    /// Snapshot `id`'s archive, to read, if `tenant` owns it.
    pub async fn open_archive(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> Result<(SnapshotInfo, Pin<Box<dyn AsyncRead + Send>>)> {
        let info = self.get(tenant, id)?;
        let (tar, _) = self.paths(tenant, id)?;
        let file = tokio::fs::File::open(&tar).await.map_err(|_| not_found(id))?;
        Ok((info, Box::pin(file)))
    }

    /// Deletes snapshot `id` of `tenant`.
    pub fn delete(&self, tenant: Option<&str>, id: &str) -> Result<()> {
        let (tar, meta) = self.paths(tenant, id)?;
        std::fs::remove_file(&meta).map_err(|_| not_found(id))?;
        let _ = std::fs::remove_file(tar);
        Ok(())
    }
}

impl SnapshotSlot<'_> {
    /// Bytes the tenant's quota leaves for this snapshot.
    pub fn room(&self) -> u64 {
        self.room
    }

    /// Stores `archive` as a new snapshot of a `language` session on `backend`; fails
    /// with [`ErrorKind::LimitReached`](crate::ErrorKind::LimitReached) (and keeps
    /// nothing) when it is larger than [`SnapshotSlot::room`].
    pub async fn save(
        self,
        language: Language,
        backend: &str,
        mut archive: Pin<Box<dyn AsyncRead + Send>>,
    ) -> Result<SnapshotInfo> {
        let (store, tenant) = (self.store, self.tenant);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (tar, meta) = store.paths(tenant, &id)?;
        let dir = store.tenant_dir(tenant);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| Error::from_io(&dir.display().to_string(), e))?;
        let partial = tar.with_extension("partial");
        let written = copy_bounded(&mut archive, &partial, self.room).await;
        let bytes = match written {
            Ok(bytes) => bytes,
            Err(error) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(error);
            }
        };
        let info =
            SnapshotInfo { snapshot_id: id, language, backend: backend.to_owned(), bytes, created_at: Utc::now() };
        let json = serde_json::to_vec(&info).map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        let stored = async {
            tokio::fs::rename(&partial, &tar).await?;
            tokio::fs::write(&meta, json).await
        };
        if let Err(e) = stored.await {
            let _ = tokio::fs::remove_file(&partial).await;
            let _ = tokio::fs::remove_file(&tar).await;
            return Err(Error::internal(format!("storing snapshot {}: {e}", info.snapshot_id)).with_source(e));
        }
        Ok(info)
    }
}

fn not_found(id: &str) -> Error {
    let shown: String = id.chars().take(64).collect();
    Error::invalid_input(format!("no snapshot {shown:?} (snapshot.list shows yours)"))
}

/// Copies `from` into a new file `to`, failing past `room` bytes.
async fn copy_bounded(from: &mut Pin<Box<dyn AsyncRead + Send>>, to: &Path, room: u64) -> Result<u64> {
    let shown = to.display().to_string();
    let mut file = tokio::fs::File::create(to).await.map_err(|e| Error::from_io(&shown, e))?;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => n,
            // The sandbox's own error (e.g. its archive passed the limit) says it best.
            Err(e) => return Err(from_archive_error(e)),
        };
        total += n as u64;
        if total > room {
            return Err(Error::limit_reached(format!(
                "the snapshot is larger than the {room} bytes left of this tenant's snapshot quota"
            )));
        }
        file.write_all(&buffer[..n]).await.map_err(|e| Error::from_io(&shown, e))?;
    }
    file.flush().await.map_err(|e| Error::from_io(&shown, e))?;
    file.sync_all().await.map_err(|e| Error::from_io(&shown, e))?;
    Ok(total)
}

fn from_archive_error(error: std::io::Error) -> Error {
    // A sandbox's archive reader carries its own error (e.g. the limit) inside the io one.
    crate::workspace::archive_error(error, "reading the workspace archive failed")
}
