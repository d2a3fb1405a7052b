//! The cluster's shared state in Redis: what each node writes of itself and reads of the
//! others. Every time is Redis's own clock (`TIME` inside the scripts), so nodes on
//! machines whose clocks disagree still agree on who is live.
//!
//! Keys (all under `codebeaker:`):
//! - `nodes`: a sorted set, each node's URL scored by its last heartbeat (ms);
//! - `node:{url}`: a hash of the node's load (`languages`, `backends`, `sessions`,
//!   `memoryFree`, `started`);
//! - `sessions:{url}`: a hash of the node's sessions, id → tenant (`""` for none), with
//!   `pending:{uuid}` fields for sessions being created (the global cap counts them);
//! - `snapshots`: a hash, snapshot id → the URL of the node whose disk holds it;
//! - `rate:{key}`: the theoretical arrival time of one caller's next request (GCRA).
//!
//! A node's `node:` and `sessions:` keys expire [`RETENTION`] after its last heartbeat:
//! until then its sessions are known to be on a lost node (and answer `-32003`), after
//! that they are unknown.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};
use tokio::sync::Mutex;

/// How long a stopped node's entries stay after its last heartbeat.
pub const RETENTION: Duration = Duration::from_secs(3600);

/// The prefix of every key.
const PREFIX: &str = "codebeaker:";

/// How long connecting to Redis, and each command, may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

fn nodes_key() -> String {
    format!("{PREFIX}nodes")
}

fn node_key(url: &str) -> String {
    format!("{PREFIX}node:{url}")
}

fn sessions_key(url: &str) -> String {
    format!("{PREFIX}sessions:{url}")
}

fn snapshots_key() -> String {
    format!("{PREFIX}snapshots")
}

/// The prefix of the `pending:` fields of a sessions hash.
pub const PENDING: &str = "pending:";

/// What a node says of itself at each heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Load {
    /// Languages it serves (its backends that are up).
    pub languages: Vec<String>,
    /// Backends that are up.
    pub backends: Vec<String>,
    /// Open sessions.
    pub sessions: usize,
    /// Free memory of its machine, in bytes.
    pub memory_free: u64,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
}

/// One node as the registry holds it.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    /// Its URL.
    pub url: String,
    /// Milliseconds since its last heartbeat (Redis's clock).
    pub since_heartbeat_ms: u64,
    /// What it said of itself.
    pub load: Load,
}

/// The connection to the cluster's Redis: one multiplexed connection, made again after
/// an error that lost it.
pub struct Registry {
    client: Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    heartbeat: Script,
    nodes: Script,
    reserve: Script,
    rate: Script,
}

const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], 'languages', ARGV[3], 'backends', ARGV[4], 'sessions', ARGV[5], 'memoryFree', ARGV[6], 'started', ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return now
"#;

const NODES: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #members, 2 do
  local url = members[i]
  local fields = redis.call('HGETALL', ARGV[1] .. url)
  table.insert(out, {url, tostring(now - tonumber(members[i + 1])), fields})
end
return out
"#;

/// Counts the tenant's sessions on live nodes; refuses at the cap, else marks a pending
/// session of this node. Returns -1 when reserved, else the count that refused it.
const RESERVE: &str = r#"
local cap = tonumber(ARGV[2])
if cap > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[4]), '+inf')
  local own = false
  local count = 0
  for _, url in ipairs(live) do
    if ARGV[6] .. url == KEYS[2] then own = true end
    for _, owner in ipairs(redis.call('HVALS', ARGV[6] .. url)) do
      if owner == ARGV[1] then count = count + 1 end
    end
  end
  if not own then
    for _, owner in ipairs(redis.call('HVALS', KEYS[2])) do
      if owner == ARGV[1] then count = count + 1 end
    end
  end
  if count >= cap then return count end
end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return -1
"#;

/// GCRA: `ARGV[1]` the emission interval and `ARGV[2]` the burst tolerance, in µs.
/// Returns 0 when the request is allowed, else the µs until it would be.
const RATE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat - tonumber(ARGV[2])
if now < allowed_at then return math.ceil(allowed_at - now) end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
"#;

impl Registry {
    /// A registry in the Redis at `url` (`redis://HOST:PORT[/DB]`); nothing is connected yet.
    pub fn new(url: &str) -> Result<Registry, RedisError> {
        Ok(Registry {
            client: Client::open(url)?,
            connection: Mutex::new(None),
            heartbeat: Script::new(HEARTBEAT),
            nodes: Script::new(NODES),
            reserve: Script::new(RESERVE),
            rate: Script::new(RATE),
        })
    }

    /// The connection, made if there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut held = self.connection.lock().await;
        if let Some(connection) = held.as_ref() {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let connection = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        *held = Some(connection.clone());
        Ok(connection)
    }

    /// Drops the connection after an error that may have lost it; the next call connects.
    async fn checked<T>(&self, result: Result<T, RedisError>) -> Result<T, RedisError> {
        if let Err(error) = &result {
            if error.is_io_error()
                || error.is_connection_dropped()
                || error.is_timeout()
                || error.is_unrecoverable_error()
            {
                *self.connection.lock().await = None;
            }
        }
        result
    }

    /// Runs `script` on a connection (made if needed).
    async fn run<T: redis::FromRedisValue>(&self, invocation: redis::ScriptInvocation<'_>) -> Result<T, RedisError> {
        let mut connection = self.connection().await?;
        let result = invocation.invoke_async(&mut connection).await;
        self.checked(result).await
    }

    /// Runs a pipeline on a connection (made if needed).
    async fn query<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, RedisError> {
        let mut connection = self.connection().await?;
        let result = pipe.query_async(&mut connection).await;
        self.checked(result).await
    }

    /// Announces node `url` with `load`; its entries now expire [`RETENTION`] from now.
    pub async fn heartbeat(&self, url: &str, load: &Load) -> Result<(), RedisError> {
        let mut invocation = self.heartbeat.key(nodes_key());
        invocation
            .key(node_key(url))
            .key(sessions_key(url))
            .arg(url)
            .arg(RETENTION.as_millis() as u64)
            .arg(load.languages.join(","))
            .arg(load.backends.join(","))
            .arg(load.sessions)
            .arg(load.memory_free)
            .arg(load.started_ms);
        self.run::<u64>(invocation).await.map(drop)
    }

    /// Every node of the registry, live or not.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, RedisError> {
        let mut invocation = self.nodes.key(nodes_key());
        invocation.arg(format!("{PREFIX}node:"));
        let rows: Vec<(String, String, HashMap<String, String>)> = self.run(invocation).await?;
        Ok(rows
            .into_iter()
            .map(|(url, since, fields)| {
                let list = |name: &str| -> Vec<String> {
                    let value = fields.get(name).map_or("", String::as_str);
                    value.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
                };
                let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                NodeRecord {
                    url,
                    since_heartbeat_ms: since.parse().unwrap_or(u64::MAX),
                    load: Load {
                        languages: list("languages"),
                        backends: list("backends"),
                        sessions: number("sessions") as usize,
                        memory_free: number("memoryFree"),
                        started_ms: number("started"),
                    },
                }
            })
            .collect())
    }

    /// The sessions each of `urls` holds (pending ones included), in order.
    pub async fn loads(&self, urls: &[String]) -> Result<Vec<u64>, RedisError> {
        let mut pipe = redis::pipe();
        for url in urls {
            pipe.hlen(sessions_key(url));
        }
        self.query(&pipe).await
    }

    /// Which of `urls` holds session `id`, and its tenant (`""` for none), if any does.
    pub async fn locate(&self, id: &str, urls: &[String]) -> Result<Option<(String, String)>, RedisError> {
        let mut pipe = redis::pipe();
        for url in urls {
            pipe.hget(sessions_key(url), id);
        }
        let found: Vec<Option<String>> = self.query(&pipe).await?;
        Ok(urls.iter().zip(found).find_map(|(url, tenant)| Some((url.clone(), tenant?))))
    }

    /// Marks a session of `tenant` being created on node `url` as `field`, unless the
    /// tenant holds `cap` sessions on live nodes already (`cap` 0: no cap); `Err(count)`
    /// then. Nodes are live when their last heartbeat is at most `lost_after` old.
    pub async fn reserve(
        &self,
        url: &str,
        tenant: &str,
        cap: usize,
        field: &str,
        lost_after: Duration,
    ) -> Result<Result<(), u64>, RedisError> {
        let mut invocation = self.reserve.key(nodes_key());
        invocation
            .key(sessions_key(url))
            .arg(tenant)
            .arg(cap)
            .arg(field)
            .arg(lost_after.as_millis() as u64)
            .arg(RETENTION.as_millis() as u64)
            .arg(format!("{PREFIX}sessions:"));
        let answer: i64 = self.run(invocation).await?;
        Ok(if answer < 0 { Ok(()) } else { Err(answer as u64) })
    }

    /// Replaces the pending `field` of node `url` with session `id` of `tenant` (or just
    /// removes it when `id` is `None`).
    pub async fn settle(&self, url: &str, field: &str, id: Option<&str>, tenant: &str) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        pipe.atomic().hdel(sessions_key(url), field).ignore();
        if let Some(id) = id {
            pipe.hset(sessions_key(url), id, tenant).ignore();
        }
        self.query(&pipe).await
    }

    /// Forgets session `id` of node `url`.
    pub async fn forget(&self, url: &str, id: &str) -> Result<(), RedisError> {
        self.query(redis::pipe().hdel(sessions_key(url), id).ignore()).await
    }

    /// Makes node `url`'s sessions hash say what `local` (id → tenant) holds, pending
    /// fields apart. Read first, then compared with `local()` (taken after the read): a
    /// session created meanwhile was written before the read or is in `local`.
    pub async fn reconcile(
        &self,
        url: &str,
        local: impl FnOnce() -> HashMap<String, String>,
    ) -> Result<(), RedisError> {
        let key = sessions_key(url);
        let stored: HashMap<String, String> = self.query(redis::pipe().hgetall(&key)).await.map(|(map,)| map)?;
        let local = local();
        let mut pipe = redis::pipe();
        let mut changes = 0;
        for id in stored.keys().filter(|id| !id.starts_with(PENDING) && !local.contains_key(*id)) {
            pipe.hdel(&key, id).ignore();
            changes += 1;
        }
        for (id, tenant) in &local {
            if stored.get(id) != Some(tenant) {
                pipe.hset(&key, id, tenant).ignore();
                changes += 1;
            }
        }
        if changes == 0 {
            return Ok(());
        }
        pipe.pexpire(&key, RETENTION.as_millis() as i64).ignore();
        self.query(&pipe).await
    }

    /// Removes what node `url` left in the registry (at start-up: sessions of a previous
    /// run are gone with it; at shutdown: the node leaves).
    pub async fn remove_node(&self, url: &str, leaving: bool) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(sessions_key(url)).ignore();
        if leaving {
            pipe.zrem(nodes_key(), url).ignore().del(node_key(url)).ignore();
        }
        self.query(&pipe).await
    }

    /// Records that node `url` holds snapshot `id`.
    pub async fn record_snapshot(&self, id: &str, url: &str) -> Result<(), RedisError> {
        self.query(redis::pipe().hset(snapshots_key(), id, url).ignore()).await
    }

    /// The node holding snapshot `id`, if one recorded it.
    pub async fn snapshot_node(&self, id: &str) -> Result<Option<String>, RedisError> {
        self.query(redis::pipe().hget(snapshots_key(), id)).await.map(|(node,)| node)
    }

    /// Forgets snapshot `id`.
    pub async fn forget_snapshot(&self, id: &str) -> Result<(), RedisError> {
        self.query(redis::pipe().hdel(snapshots_key(), id).ignore()).await
    }

    /// One request of `key` against a GCRA rate (`interval` between requests, bursts of
    /// `burst`): `None` when allowed, else how long until it would be.
    pub async fn rate(&self, key: &str, interval: Duration, burst: u32) -> Result<Option<Duration>, RedisError> {
        let interval_us = interval.as_micros().max(1) as u64;
        let tolerance_us = interval_us.saturating_mul(u64::from(burst.saturating_sub(1)));
        let mut invocation = self.rate.key(format!("{PREFIX}rate:{key}"));
        invocation.arg(interval_us).arg(tolerance_us);
        let wait_us: u64 = self.run(invocation).await?;
        Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
    }
}
