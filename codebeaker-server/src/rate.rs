//! Request rate limiting (`--rate-limit REQUESTS_PER_SEC`, `--rate-burst N`) with
//! `governor`'s GCRA, keyed by who asks ([`RateKey::of`]): a tenant, the `--token` holder
//! (one key, whatever connection it uses), or, on a server without auth, the source
//! address. No key is a connection: reconnecting never refills a budget, so one client
//! cannot starve the others by flooding.
//!
//! Every request counts once: each JSON-RPC request (each element of a batch), each MCP
//! message. A refused JSON-RPC request is answered with `-32002` whose data names the
//! rate; an MCP/HTTP request with `429 Too Many Requests` and `Retry-After`. Nothing is
//! queued: a refused request costs the server only the check.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;

use crate::api::Caller;
use crate::shares::client_address;

/// How often (in checks) keys that are back at a full burst are forgotten, so a stream
/// of one-off connections cannot grow the limiter's map without bound.
const PRUNE_EVERY: u64 = 4096;

/// The `--rate-limit` / `--rate-burst` flags.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct RateArgs {
    /// Requests per second allowed per tenant (per address without auth); off when unset.
    #[arg(long = "rate-limit", env = "CODEBEAKER_RATE_LIMIT", value_name = "REQUESTS_PER_SEC")]
    pub rate_limit: Option<f64>,

    /// Requests allowed at once above the steady rate (default: one second's worth, at least 1).
    #[arg(long = "rate-burst", env = "CODEBEAKER_RATE_BURST", value_name = "N")]
    pub rate_burst: Option<u32>,
}

/// A rate: `per_second` requests per second, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Steady requests per second.
    pub per_second: f64,
    /// Requests allowed at once.
    pub burst: u32,
}

/// `--rate-limit` is not a usable rate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--rate-limit must be a number of requests per second between 0.001 and 1000000, got {0}")]
pub struct InvalidRate(pub f64);

impl RateArgs {
    /// The configured rate, `None` when rate limiting is off.
    pub fn rate(&self) -> Result<Option<Rate>, InvalidRate> {
        let Some(per_second) = self.rate_limit else { return Ok(None) };
        if !(per_second.is_finite() && (0.001..=1_000_000.0).contains(&per_second)) {
            return Err(InvalidRate(per_second));
        }
        let default_burst = per_second.ceil().max(1.0) as u32;
        Ok(Some(Rate { per_second, burst: self.rate_burst.unwrap_or(default_burst).max(1) }))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests/s (burst {})", self.per_second, self.burst)
    }
}

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// An authenticated tenant (all its connections together).
    Tenant(String),
    /// The holder of the single `--token` (all its connections together).
    Operator,
    /// A source address of a server without auth (all its connections together; an IPv6
    /// client is its /64, see [`client_address`]).
    Address(IpAddr),
}

impl RateKey {
    /// The key of `caller`: its tenant; else the `--token` holder if it authenticated;
    /// else its address (without auth every client is the operator, and the address is
    /// all that tells clients apart). A caller with neither (stdio) is the operator.
    pub fn of(caller: &Caller) -> RateKey {
        match (&caller.tenant, caller.authenticated, caller.remote) {
            (Some(tenant), _, _) => RateKey::Tenant(tenant.clone()),
            (None, false, Some(remote)) => RateKey::Address(client_address(remote.ip())),
            (None, _, _) => RateKey::Operator,
        }
    }
}

impl std::fmt::Display for RateKey {
    /// The key's name in the cluster's Redis: `tenant:NAME`, `operator`, `address:IP`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateKey::Tenant(tenant) => write!(f, "tenant:{tenant}"),
            RateKey::Operator => f.write_str("operator"),
            RateKey::Address(ip) => write!(f, "address:{ip}"),
        }
    }
}

/// A request over the rate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rate limit of {rate} exceeded; retry in {} ms", retry_after.as_millis())]
pub struct RateLimited {
    /// The rate that was exceeded.
    pub rate: Rate,
    /// When the next request would be allowed.
    pub retry_after: Duration,
}

impl RateLimited {
    /// Whole seconds for an HTTP `Retry-After` header (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

/// The rate limiter of one server (see the module docs). On a cluster node
/// ([`RequestRateLimiter::with_cluster`]) [`RequestRateLimiter::check_everywhere`] counts
/// against one budget per key across the cluster, in Redis.
pub struct RequestRateLimiter {
    rate: Rate,
    cluster: Option<crate::cluster::Cluster>,
    limiter: DefaultKeyedRateLimiter<RateKey>,
    clock: DefaultClock,
    checks: AtomicU64,
    /// Counts every refusal (`codebeaker_requests_refused_total{reason="rate"}`).
    refused: Counter,
}

impl std::fmt::Debug for RequestRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestRateLimiter").field("rate", &self.rate).finish_non_exhaustive()
    }
}

impl RequestRateLimiter {
    /// A limiter allowing `rate` per key; `refused` counts the requests it refuses.
    pub fn new(rate: Rate, refused: Counter) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        // `with_period` only refuses a zero period, which `max` above rules out.
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst);
        RequestRateLimiter {
            rate,
            cluster: None,
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
            refused,
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Counts every key's requests across `cluster` (see
    /// [`RequestRateLimiter::check_everywhere`]).
    pub fn with_cluster(mut self, cluster: crate::cluster::Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Whether requests are counted across a cluster.
    pub fn clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// Counts one request of `key` against its budget across the cluster (one GCRA in
    /// Redis, atomic); without a cluster, or while Redis cannot be reached, against this
    /// node's own budget ([`RequestRateLimiter::check`]).
    pub async fn check_everywhere(&self, key: &RateKey) -> Result<(), RateLimited> {
        let Some(cluster) = &self.cluster else { return self.check(key) };
        let interval = Duration::from_secs_f64(1.0 / self.rate.per_second);
        match cluster.rate(&key.to_string(), interval, self.rate.burst).await {
            Ok(None) => Ok(()),
            Ok(Some(retry_after)) => {
                self.refused.inc();
                Err(RateLimited { rate: self.rate, retry_after })
            }
            Err(error) => {
                tracing::debug!(%error, "the cluster's rate cannot be asked; counting on this node");
                self.check(key)
            }
        }
    }

    /// Counts one request of `key`; `Err` when it is over the rate.
    pub fn check(&self, key: &RateKey) -> Result<(), RateLimited> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            self.refused.inc();
            RateLimited { rate: self.rate, retry_after: not_until.wait_time_from(self.clock.now()) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_naming_the_rate() {
        let limiter = RequestRateLimiter::new(Rate { per_second: 2.0, burst: 3 }, Counter::default());
        let alice = RateKey::Tenant("alice".into());
        for _ in 0..3 {
            limiter.check(&alice).unwrap();
        }
        let refused = limiter.check(&alice).unwrap_err();
        assert!(refused.to_string().starts_with("rate limit of 2 requests/s (burst 3) exceeded"), "{refused}");
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_millis(500));
        assert_eq!(refused.retry_after_secs(), 1);
        assert_eq!(limiter.refused.get(), 1);
        // Another key has its own budget.
        limiter.check(&RateKey::Tenant("bob".into())).unwrap();
    }

    #[test]
    fn keys_are_who_asks_never_a_connection() {
        let remote = |port| Some(std::net::SocketAddr::from(([10, 0, 0, 1], port)));
        let anonymous = |port| Caller { tenant: None, remote: remote(port), authenticated: false, forwarded: false };
        assert_eq!(RateKey::of(&anonymous(1)), RateKey::of(&anonymous(2)), "a reconnect keeps its budget");
        assert_eq!(RateKey::of(&anonymous(1)), RateKey::Address([10, 0, 0, 1].into()));
        let token = |port| Caller { authenticated: true, ..anonymous(port) };
        assert_eq!(RateKey::of(&token(1)), RateKey::Operator);
        let alice = Caller { tenant: Some("alice".into()), ..token(1) };
        assert_eq!(RateKey::of(&alice), RateKey::Tenant("alice".into()));
    }

    #[test]
    fn flags_make_a_rate() {
        let args = RateArgs { rate_limit: Some(0.5), rate_burst: None };
        assert_eq!(args.rate().unwrap(), Some(Rate { per_second: 0.5, burst: 1 }));
        assert_eq!(RateArgs::default().rate().unwrap(), None);
        assert!(RateArgs { rate_limit: Some(0.0), rate_burst: None }.rate().is_err());
        assert!(RateArgs { rate_limit: Some(f64::NAN), rate_burst: None }.rate().is_err());
    }
}
