//! The operator's workspace size ([`Policy::workspace_mb`](crate::Policy::workspace_mb)),
//! as uploads of unknown length and file commands run into it.

use super::{ok, Suite};
use crate::command::Command;
use crate::error::ErrorKind;
use crate::manager::{ManagerConfig, SessionManager};
use crate::result::CommandResult;

/// The workspace size the check's sessions get, in MiB.
const WORKSPACE_MB: u64 = 4;

impl Suite {
    /// With a workspace of [`WORKSPACE_MB`]: a streamed upload that outgrows it (its
    /// length not known beforehand, as with a chunked HTTP body) fails with
    /// [`ErrorKind::LimitReached`] and leaves nothing of itself; a `write_file` that does not
    /// fit fails the same way; files that fit are written as usual, and the session works
    /// on. A backend that does not stream files is checked with `write_file` alone.
    pub async fn workspace_quota(&self) {
        let mut config = ManagerConfig::default();
        config.policy.workspace_mb = WORKSPACE_MB;
        let manager = SessionManager::new(vec![self.backend.clone()], config);
        let id = self.session(&manager).await;
        let too_big = vec![b'q'; (WORKSPACE_MB as usize + 2) * 1024 * 1024];
        let body: crate::workspace::UploadBody = Box::pin(std::io::Cursor::new(too_big.clone()));
        let uploaded = manager.upload_as(None, &id, "quota/big.bin", false, body).await;
        match uploaded.as_ref().map_err(|e| e.kind()) {
            Err(ErrorKind::Unsupported) => {}
            Err(ErrorKind::LimitReached) => {
                let listed = Self::run(&manager, &id, Command::list_directory("quota").expect("a path")).await;
                let left = match &listed.result {
                    Some(CommandResult::ListDirectory(list)) => list.entries.len(),
                    _ => 0,
                };
                assert_eq!(left, 0, "nothing of a refused upload stays: {:?}", listed.to_json());
            }
            _ => panic!(
                "an upload of {} bytes into a workspace of {WORKSPACE_MB} MiB must fail with LimitReached: {uploaded:?}",
                too_big.len()
            ),
        }
        let text = String::from_utf8(too_big).expect("ASCII");
        let refused = Self::run(&manager, &id, Command::write_file("quota/big.txt", text).expect("a path")).await;
        assert!(
            !refused.success && refused.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::LimitReached),
            "a write_file bigger than the workspace fails with LimitReached: {:?}",
            refused.to_json().get("error")
        );
        let fits = Self::run(&manager, &id, Command::write_file("quota/small.txt", "fits").expect("a path")).await;
        ok(fits, "a small write after the refusals");
        manager.close(&id).await.expect("close");
    }
}
