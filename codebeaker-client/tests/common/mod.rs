//! What the client's live tests share: a real `codebeaker-server` started in this process
//! with the real Deno backend.
#![allow(dead_code)]

use std::sync::Arc;

use codebeaker::Backend;
use codebeaker_deno::{DenoBackend, DenoConfig};
use codebeaker_server::{Backends, Server, ServerConfig, ServerHandle};

/// A temporary directory that Deno workers of other uids may pass through.
pub fn workspaces() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    root
}

/// A server with one Deno backend (workspaces under `root`), configured by `config`.
pub async fn deno_server(root: &tempfile::TempDir, config: ServerConfig) -> ServerHandle {
    let deno = DenoConfig { pool_size: 1, workspace_root: root.path().join("deno"), ..DenoConfig::default() };
    let backend: Arc<dyn Backend> = DenoBackend::new(deno).expect("deno backend");
    Server::bind(config, Backends::from_backends(vec![backend])).await.expect("bind").spawn()
}
