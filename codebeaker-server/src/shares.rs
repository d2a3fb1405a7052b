//! Fair shares: a resource the server holds for clients (WebSocket connections, MCP
//! sessions) is capped three ways at once, globally, per tenant and per source address,
//! so no single client can take every place.
//!
//! By default a tenant may hold a quarter of each global cap
//! ([`codebeaker::policy::tenant_share`], the same fraction as its sessions) and an
//! address half of it ([`address_share`]: several tenants may share one address, behind a
//! NAT or a gateway, and every client of a loopback server has the same one). The
//! operator (no auth, or the `--token` holder) is not a tenant: its share is bounded by
//! its addresses only.
//!
//! A place is taken with [`Shares::take`] and given back when its [`Place`] is dropped;
//! taking checks all three caps under one lock, so concurrent takers can never overshoot
//! any of them. A refusal ([`ShareFull`]) names the cap that is full, its value and the
//! flag that sets it. An address is a [`client_address`]: an IPv6 client is its /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::api::Caller;

/// The address a client is counted as: its IPv4 address (an IPv4-mapped IPv6 address
/// counts as the IPv4 one), or the /64 network of an IPv6 address, since one host
/// usually holds a whole /64 and could otherwise be a new client per address.
pub fn client_address(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64)))
        }
        other => other,
    }
}

/// What one source address may take of a global cap by default: half of it (at least 1).
pub const ADDRESS_SHARE_DIVISOR: usize = 2;

/// An address's default share of a global cap of `global` places (see
/// [`ADDRESS_SHARE_DIVISOR`]).
pub fn address_share(global: usize) -> usize {
    (global / ADDRESS_SHARE_DIVISOR).max(1)
}

/// The three caps of one resource, and the names the refusals use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareCaps {
    /// What is counted, plural (`"connections"`, `"MCP sessions"`).
    pub what: &'static str,
    /// The flag of the global cap (`"max-connections"`); the per-tenant and per-address
    /// flags are this with `-per-tenant` and `-per-address` appended.
    pub flag: &'static str,
    /// Most places in all.
    pub global: usize,
    /// Most places one tenant may hold.
    pub per_tenant: usize,
    /// Most places one source address may hold.
    pub per_address: usize,
}

/// A place refused: which cap is full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareFull {
    /// Every place of the server is taken.
    #[error("{held} {what} are open, the maximum ({flag}); try again later")]
    Global {
        /// What is counted.
        what: &'static str,
        /// The flag of the cap.
        flag: &'static str,
        /// Places held (the cap).
        held: usize,
    },
    /// The caller's tenant holds its share.
    #[error("this tenant holds {held} {what}, the maximum ({flag}-per-tenant); close one first")]
    Tenant {
        /// What is counted.
        what: &'static str,
        /// The flag of the global cap.
        flag: &'static str,
        /// Places held (the cap).
        held: usize,
    },
    /// The caller's address holds its share.
    #[error("this address holds {held} {what}, the maximum ({flag}-per-address); close one first")]
    Address {
        /// What is counted.
        what: &'static str,
        /// The flag of the global cap.
        flag: &'static str,
        /// Places held (the cap).
        held: usize,
    },
}

impl ShareFull {
    /// Whether the server as a whole is full (HTTP 503) rather than the caller over its
    /// own share (HTTP 429).
    pub fn is_global(&self) -> bool {
        matches!(self, ShareFull::Global { .. })
    }
}

/// The places of one resource (see the module docs). Cheap to share (`Arc<Shares>`).
#[derive(Debug)]
pub struct Shares {
    caps: ShareCaps,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    tenants: HashMap<String, usize>,
    addresses: HashMap<IpAddr, usize>,
}

impl Shares {
    /// No place taken yet under `caps`.
    pub fn new(caps: ShareCaps) -> Arc<Shares> {
        Arc::new(Shares { caps, held: Mutex::default() })
    }

    /// The caps.
    pub fn caps(&self) -> ShareCaps {
        self.caps
    }

    /// Places held now.
    pub fn held(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // Every update finishes before anything that could panic: a poisoned lock is
        // still consistent.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a place for `caller` (its tenant, if any, and its address, if known), or
    /// says which cap is full.
    pub fn take(self: &Arc<Self>, caller: &Caller) -> Result<Place, ShareFull> {
        let ShareCaps { what, flag, global, per_tenant, per_address } = self.caps;
        let address = caller.remote.map(|remote| client_address(remote.ip()));
        let mut held = self.lock();
        if held.total >= global {
            return Err(ShareFull::Global { what, flag, held: held.total });
        }
        if let Some(tenant) = &caller.tenant {
            let count = held.tenants.get(tenant).copied().unwrap_or(0);
            if count >= per_tenant {
                return Err(ShareFull::Tenant { what, flag, held: count });
            }
        }
        if let Some(address) = address {
            let count = held.addresses.get(&address).copied().unwrap_or(0);
            if count >= per_address {
                return Err(ShareFull::Address { what, flag, held: count });
            }
            *held.addresses.entry(address).or_insert(0) += 1;
        }
        if let Some(tenant) = &caller.tenant {
            *held.tenants.entry(tenant.clone()).or_insert(0) += 1;
        }
        held.total += 1;
        Ok(Place { shares: self.clone(), tenant: caller.tenant.clone(), address })
    }
}

/// One place held; given back on drop.
#[derive(Debug)]
pub struct Place {
    shares: Arc<Shares>,
    tenant: Option<String>,
    address: Option<IpAddr>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.shares.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(tenant) = &self.tenant {
            release(&mut held.tenants, tenant);
        }
        if let Some(address) = &self.address {
            release(&mut held.addresses, address);
        }
    }
}

/// One place of `key` given back; a key holding none is forgotten, so the maps hold only
/// the callers holding places now.
fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(tenant: Option<&str>, ip: [u8; 4]) -> Caller {
        Caller { tenant: tenant.map(str::to_owned), remote: Some((ip, 4000).into()), ..Caller::default() }
    }

    #[test]
    fn an_ipv6_client_is_its_64_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_address(a), client_address(b));
        assert_ne!(client_address(a), client_address(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_address(mapped), IpAddr::from([10, 0, 0, 1]));
        assert_eq!(client_address("::1".parse().unwrap()), "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn each_cap_refuses_with_its_flag_and_places_come_back() {
        let shares = Shares::new(ShareCaps {
            what: "connections",
            flag: "max-connections",
            global: 4,
            per_tenant: 2,
            per_address: 3,
        });
        let alice = caller(Some("alice"), [10, 0, 0, 1]);
        let first = shares.take(&alice).unwrap();
        let _second = shares.take(&alice).unwrap();
        let full = shares.take(&alice).unwrap_err();
        assert_eq!(
            full.to_string(),
            "this tenant holds 2 connections, the maximum (max-connections-per-tenant); close one first"
        );
        // The same address, another tenant: the address's third place.
        let _bob = shares.take(&caller(Some("bob"), [10, 0, 0, 1])).unwrap();
        let full = shares.take(&caller(None, [10, 0, 0, 1])).unwrap_err();
        assert!(full.to_string().contains("max-connections-per-address"), "{full}");
        assert!(!full.is_global());
        let _other = shares.take(&caller(None, [10, 0, 0, 2])).unwrap();
        let full = shares.take(&caller(None, [10, 0, 0, 3])).unwrap_err();
        assert!(full.is_global() && full.to_string().starts_with("4 connections are open"), "{full}");
        drop(first);
        assert_eq!(shares.held(), 3);
        shares.take(&alice).unwrap();
    }
}
