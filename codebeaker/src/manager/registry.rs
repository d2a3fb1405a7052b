//! The registry of open sessions and the places reserved under the session caps.
//!
//! Two caps apply to every create and one-shot run: the manager's global `max_sessions`
//! and the policy's `max_sessions_per_tenant`. Both count open sessions plus places
//! reserved for sandboxes still being created, under the same lock that inserts and
//! removes sessions, so concurrent creates can never overshoot either cap.
//!
//! Tenants: a session created with `Some(tenant)` is visible only to that tenant (and to
//! the operator, `None`). Any other tenant asking for it gets exactly the answer an
//! unknown id gets, so session ids cannot be probed across tenants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::session::Session;
use crate::error::{Error, Result};

/// The open sessions and the reservations counted against the caps.
#[derive(Default)]
pub(super) struct Registry {
    sessions: HashMap<String, Arc<Session>>,
    /// Sandboxes being created or running one-shot code: they count against the caps.
    reserved: usize,
    /// Per tenant: its open sessions plus its reservations.
    per_tenant: HashMap<String, usize>,
}

/// Locks the registry. A panic while holding the lock cannot leave it half-updated
/// (each method finishes its updates before anything that could panic), so a poisoned
/// lock is still usable.
pub(super) fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// The session `id` as `tenant` may see it: `None` (the operator) sees every session,
    /// `Some(t)` only its own; any other id is [`ErrorKind::SessionNotFound`](crate::ErrorKind::SessionNotFound).
    pub(super) fn get(&self, tenant: Option<&str>, id: &str) -> Result<Arc<Session>> {
        self.sessions
            .get(id)
            .filter(|session| visible(session, tenant))
            .cloned()
            .ok_or_else(|| Error::session_not_found(id.to_owned()))
    }

    /// Removes the session `id` if `tenant` may see it.
    pub(super) fn remove_visible(&mut self, tenant: Option<&str>, id: &str) -> Result<Arc<Session>> {
        self.get(tenant, id)?;
        self.remove(id).ok_or_else(|| Error::session_not_found(id.to_owned()))
    }

    /// Removes the session `id`, giving its tenant's place back.
    pub(super) fn remove(&mut self, id: &str) -> Option<Arc<Session>> {
        let session = self.sessions.remove(id)?;
        if let Some(tenant) = &session.tenant {
            self.release_tenant(tenant);
        }
        Some(session)
    }

    /// Removes every session (shutdown). Reservations in flight keep their places until
    /// they are dropped.
    pub(super) fn drain(&mut self) -> Vec<Arc<Session>> {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// The sessions `tenant` may see.
    pub(super) fn visible(&self, tenant: Option<&str>) -> Vec<Arc<Session>> {
        self.sessions.values().filter(|session| visible(session, tenant)).cloned().collect()
    }

    /// Every open session.
    pub(super) fn all(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.sessions.values()
    }

    /// How many sessions are open.
    pub(super) fn len(&self) -> usize {
        self.sessions.len()
    }

    fn release_tenant(&mut self, tenant: &str) {
        if let Some(count) = self.per_tenant.get_mut(tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_tenant.remove(tenant);
            }
        }
    }
}

fn visible(session: &Session, tenant: Option<&str>) -> bool {
    tenant.is_none() || session.tenant.as_deref() == tenant
}

/// The caps a reservation is checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caps {
    /// The manager's `max_sessions`.
    pub(super) global: usize,
    /// [`crate::Policy::sessions_per_tenant`] of the global cap.
    pub(super) per_tenant: usize,
}

/// A counted place under the caps, given back on drop unless a registered session
/// takes it over.
pub(super) struct Reservation {
    registry: Arc<Mutex<Registry>>,
    tenant: Option<String>,
    held: bool,
}

impl Reservation {
    /// Takes a place for `tenant`, or refuses with [`ErrorKind::LimitReached`](crate::ErrorKind::LimitReached) naming the cap
    /// that is full and its value.
    pub(super) fn take(registry: &Arc<Mutex<Registry>>, caps: Caps, tenant: Option<&str>) -> Result<Reservation> {
        let mut guard = lock(registry);
        let used = guard.sessions.len() + guard.reserved;
        if used >= caps.global {
            return Err(Error::limit_reached(format!(
                "{used} sessions are open, the maximum is {} (max-sessions); close one first",
                caps.global
            )));
        }
        if let Some(tenant) = tenant {
            let held = guard.per_tenant.get(tenant).copied().unwrap_or(0);
            if held >= caps.per_tenant {
                return Err(Error::limit_reached(format!(
                    "this tenant holds {held} sessions, the maximum is {} (max-sessions-per-tenant); close one first",
                    caps.per_tenant
                )));
            }
            *guard.per_tenant.entry(tenant.to_owned()).or_insert(0) += 1;
        }
        guard.reserved += 1;
        Ok(Reservation { registry: registry.clone(), tenant: tenant.map(str::to_owned), held: true })
    }

    /// The tenant the place was taken for.
    pub(super) fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Registers `session` in this place (under the registry lock the caller holds); the
    /// session keeps the tenant's count until it is removed.
    pub(super) fn into_session(mut self, registry: &mut Registry, session: Arc<Session>) {
        registry.reserved -= 1;
        registry.sessions.insert(session.id.to_string(), session);
        self.held = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            let mut registry = lock(&self.registry);
            registry.reserved -= 1;
            if let Some(tenant) = &self.tenant {
                registry.release_tenant(tenant);
            }
        }
    }
}
