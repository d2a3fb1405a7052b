//! [`WarmPool`]: containers created and started ahead of time, per language, so that a
//! session starts without paying for container start-up (~150 ms here).
//!
//! Spares have the language's default image and the limits a default session gets under
//! [`DockerConfig::policy`] (memory, CPU quota, workspace size); a session whose resolved
//! limits differ in anything gets a fresh container.
//! A spare is handed out once and never returns: closing a session removes its container.
//! Refilling happens in the background after every take.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use codebeaker::{Language, SessionConfig};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::config::{DockerConfig, DOCKER_LANGUAGES};
use crate::container::{self, short, Started};
use crate::hardening::{Role, SandboxSpec};

/// Started spare containers per language, refilled in the background.
pub struct WarmPool {
    docker: Docker,
    config: Arc<DockerConfig>,
    spares: Mutex<HashMap<Language, VecDeque<Started>>>,
    wake: Notify,
    closed: AtomicBool,
}

impl WarmPool {
    pub(crate) fn new(docker: Docker, config: Arc<DockerConfig>) -> Self {
        WarmPool { docker, config, spares: Mutex::default(), wake: Notify::new(), closed: AtomicBool::new(false) }
    }

    /// The spec every spare of `language` is made with, if the backend runs it: a default
    /// session's, under the configured policy.
    pub(crate) fn spec_for(config: &DockerConfig, language: Language) -> Option<SandboxSpec> {
        let image = config.image_for(language)?.to_owned();
        let session = SessionConfig::new(language);
        let limits = config.policy.limits_for(&session).ok()?;
        Some(SandboxSpec::new(language, image, session.cpu_shares, &limits))
    }

    /// How many spares are ready for `language` now.
    pub fn ready(&self, language: Language) -> usize {
        self.lock().get(&language).map_or(0, VecDeque::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Language, VecDeque<Started>>> {
        // A panic while holding this lock leaves a plain map of ids: still consistent.
        self.spares.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a running spare made for exactly `spec`, if one is ready, and wakes the refiller.
    pub(crate) async fn take(&self, spec: &SandboxSpec) -> Option<Started> {
        if Self::spec_for(&self.config, spec.language).as_ref() != Some(spec) {
            return None;
        }
        loop {
            let spare = self.lock().get_mut(&spec.language).and_then(VecDeque::pop_front)?;
            self.wake.notify_one();
            // A spare can die while it waits (engine restart, killed from outside); one
            // whose agent channel broke is not worth repairing.
            let agent_open = match &spare.agent {
                Some(link) => link.is_open().await,
                None => true,
            };
            let dead = match container::diagnose(&self.docker, &spare.id, spec.memory_limit_mb).await {
                None if agent_open => None,
                None => Some("its agent channel closed".to_owned()),
                Some(reason) => Some(reason),
            };
            match dead {
                None => return Some(spare),
                Some(reason) => {
                    warn!(container = %short(&spare.id), %reason, "dropping a dead spare");
                    container::remove(&self.docker, &spare.id).await;
                }
            }
        }
    }

    /// Creates spares until every language has its configured number; stops at the
    /// first failure (the engine is down or an image is missing) and reports it.
    pub(crate) async fn fill(&self) -> Result<(), codebeaker::Error> {
        for language in DOCKER_LANGUAGES {
            let Some(spec) = Self::spec_for(&self.config, language) else { continue };
            while !self.closed.load(Ordering::SeqCst) && self.ready(language) < self.config.pool_size_for(language) {
                let spare = container::create_and_start(&self.docker, &spec, &self.config, Role::Pool).await?;
                let id = spare.id.clone();
                // Checked under the lock `drain` takes, so no spare slips past it.
                let kept = {
                    let mut spares = self.lock();
                    let open = !self.closed.load(Ordering::SeqCst);
                    if open {
                        spares.entry(language).or_default().push_back(spare);
                    }
                    open
                };
                if !kept {
                    container::remove(&self.docker, &id).await;
                    return Ok(());
                }
                debug!(container = %short(&id), %language, "spare ready");
            }
        }
        Ok(())
    }

    /// Keeps the pool full until [`WarmPool::drain`]: refills when woken, and retries
    /// after a pause when the engine fails.
    pub(crate) async fn refill_forever(self: Arc<Self>) {
        let mut failing = false;
        while !self.closed.load(Ordering::SeqCst) {
            match self.fill().await {
                Ok(()) => failing = false,
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "warm pool cannot fill; retrying every 5 s");
                    }
                    failing = true;
                }
            }
            let pause = if failing { Duration::from_secs(5) } else { Duration::from_secs(60) };
            let _ = tokio::time::timeout(pause, self.wake.notified()).await;
        }
    }

    /// Stops refilling and removes every spare.
    pub(crate) async fn drain(&self) {
        let ids: Vec<String> = {
            let mut spares = self.lock();
            self.closed.store(true, Ordering::SeqCst);
            spares.drain().flat_map(|(_, spares)| spares).map(|spare| spare.id).collect()
        };
        self.wake.notify_one();
        futures::future::join_all(ids.iter().map(|id| container::remove(&self.docker, id))).await;
    }
}
