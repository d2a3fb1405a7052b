//! A cluster of servers behind one endpoint, coordinated by Redis (`--cluster-redis`;
//! see `docs/cluster.md`).
//!
//! Every node registers in Redis and heartbeats its load ([`registry`]); each keeps a
//! table of the nodes as of its last look ([`NodeTable`]), where a node whose last
//! heartbeat is older than [`ClusterConfig::lost_after`] is lost. Any node serves any
//! client: `session.create` is placed on the lighter of K sampled live nodes serving the
//! language, a request about a session held elsewhere is forwarded to its node over an
//! authenticated node-to-node link ([`link`], served at [`LINK_PATH`] by `serve`), and
//! `route` decides which. A node holds its own sessions' records: it writes them when
//! it creates one, forgets them when they close, and makes the registry agree with what
//! it holds at each heartbeat.
//!
//! Without Redis a node keeps serving the sessions it holds; what needs the cluster
//! (placing, finding sessions elsewhere, listing) answers `-32003` until Redis is back,
//! and the next heartbeat registers the node again.

pub mod link;
pub(crate) mod proxy;
pub mod registry;
pub(crate) mod route;
pub(crate) mod serve;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codebeaker::{Error, Language, SessionManager};
use rand::seq::IndexedRandom as _;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::Caller;
use crate::metrics::Metrics;
use crate::rpc::{Request, RpcError};
use registry::{Load, Registry, PENDING};
use serde_json::Value;

/// The path of the node-to-node link endpoint.
pub const LINK_PATH: &str = "/cluster/link";
/// Nodes sampled for each placement (`--cluster-sample`).
pub const DEFAULT_SAMPLE: usize = 2;
/// Time between heartbeats (`--cluster-heartbeat-ms`).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Heartbeats between two checks of the backends' health (which languages a node serves).
const HEALTH_EVERY: u32 = 5;
/// Longest a check of the backends' health may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most session locations a node remembers (beyond, it forgets them all and asks Redis).
const MAX_LOCATIONS: usize = 100_000;

/// How a node joins a cluster.
#[derive(Clone)]
pub struct ClusterConfig {
    /// The cluster's Redis (`redis://HOST:PORT[/DB]`).
    pub redis_url: String,
    /// The URL other nodes reach this node at (`ws://ADDR:PORT`): its name in the cluster.
    pub node_url: String,
    /// The shared secret of node-to-node links.
    pub secret: String,
    /// How many live nodes each placement samples (at least 1).
    pub sample: usize,
    /// Time between heartbeats.
    pub heartbeat: Duration,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, nor the Redis URL (it may hold a password).
        f.debug_struct("ClusterConfig")
            .field("node_url", &self.node_url)
            .field("sample", &self.sample)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// A node silent this long is lost: two and a half heartbeats, so that with the
    /// table read twice per heartbeat every node sees it lost within three.
    pub fn lost_after(&self) -> Duration {
        self.heartbeat * 5 / 2
    }

    /// Checks the flags: a node URL other nodes can connect to (`ws://HOST:PORT`), a
    /// secret, a sample and a heartbeat in range, a Redis URL.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.node_url.as_str();
        let authority = url.strip_prefix("ws://").unwrap_or_default();
        if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
            return Err(format!(
                "--node-url {url:?} must be ws://HOST:PORT, the address other nodes reach this one at"
            ));
        }
        if self.secret.trim().is_empty() {
            return Err("the cluster secret file (--cluster-secret-file) is empty".into());
        }
        if self.sample == 0 {
            return Err("--cluster-sample must be at least 1".into());
        }
        if self.heartbeat < Duration::from_millis(50) || self.heartbeat > Duration::from_secs(60) {
            return Err("--cluster-heartbeat-ms must be between 50 and 60000".into());
        }
        redis::Client::open(self.redis_url.as_str())
            .map(drop)
            .map_err(|error| format!("--cluster-redis is not a Redis URL: {error}"))
    }

    /// `ws://HOST:PORT` of a `--node-url` given with another scheme (`http`, `wss`,
    /// `https`) or a path (`/ws/jsonrpc`): the node's name is its address alone.
    pub fn canonical_node_url(given: &str) -> String {
        let rest = ["ws://", "wss://", "http://", "https://"]
            .iter()
            .find_map(|scheme| given.strip_prefix(scheme))
            .unwrap_or(given);
        let authority = rest.split('/').next().unwrap_or_default();
        format!("ws://{authority}")
    }
}

/// Whether a node is heartbeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// It heartbeated within [`ClusterConfig::lost_after`].
    Live,
    /// It did not: its sessions answer `-32003`, new sessions avoid it.
    Lost,
}

/// A node as this node sees it (an entry of `/health`'s `cluster.nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// Its URL (`--node-url`).
    pub url: String,
    /// Live or lost.
    pub state: NodeState,
    /// Sessions it holds, as of its last heartbeat.
    pub sessions: usize,
    /// Languages it serves.
    pub languages: Vec<String>,
    /// Backends it runs.
    pub backends: Vec<String>,
    /// Free memory of its machine, in bytes.
    pub memory_free_bytes: u64,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_ms: u64,
}

/// The nodes as of the last look at the registry.
#[derive(Debug, Clone, Default)]
pub struct NodeTable {
    /// Every registered node, live or lost.
    pub nodes: Vec<NodeView>,
}

impl NodeTable {
    /// The node named `url`.
    pub fn get(&self, url: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|node| node.url == url)
    }

    /// Whether node `url` is known and live.
    pub fn is_live(&self, url: &str) -> bool {
        self.get(url).is_some_and(|node| node.state == NodeState::Live)
    }

    /// The live nodes.
    pub fn live(&self) -> impl Iterator<Item = &NodeView> {
        self.nodes.iter().filter(|node| node.state == NodeState::Live)
    }
}

/// What `/health` says of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealth {
    /// This node's URL.
    pub node: String,
    /// `ok`, or `unreachable: <reason>` when this node cannot reach Redis.
    pub redis: String,
    /// The nodes as this node sees them.
    pub nodes: Vec<NodeView>,
}

/// This node's part in a cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    registry: Registry,
    manager: SessionManager,
    metrics: Arc<Metrics>,
    table: watch::Sender<Arc<NodeTable>>,
    /// The last Redis failure, until a heartbeat succeeds again.
    redis_down: Mutex<Option<String>>,
    /// Where sessions of other nodes live, and their tenants, as found.
    locations: Mutex<HashMap<String, (String, String)>>,
    /// The languages and backends this node serves, as of the last health check.
    served: Mutex<(Vec<String>, Vec<String>)>,
    /// Placements sent to each node and not answered yet (they count as load).
    placing: Mutex<HashMap<String, u64>>,
    /// Nodes a link could not reach, and when: placements avoid them until their next
    /// heartbeat after that.
    unreachable: Mutex<HashMap<String, std::time::Instant>>,
    started_ms: u64,
    stop: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// Joins the cluster `config` describes with `manager`'s sessions: heartbeats start
    /// at once, in a task that ends at [`Cluster::leave`]. Must be called inside a Tokio
    /// runtime. Fails only on a malformed Redis URL: an unreachable Redis is retried.
    pub fn start(config: ClusterConfig, manager: SessionManager, metrics: Arc<Metrics>) -> Result<Cluster, String> {
        config.validate()?;
        if config.secret.trim().len() < 16 {
            warn!("the cluster secret is shorter than 16 characters: anyone who guesses it can act as a node");
        }
        let registry = Registry::new(&config.redis_url).map_err(|error| format!("--cluster-redis: {error}"))?;
        let started_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let cluster = Cluster {
            inner: Arc::new(Inner {
                config,
                registry,
                manager,
                metrics,
                table: watch::Sender::new(Arc::new(NodeTable::default())),
                redis_down: Mutex::new(Some("not connected yet".into())),
                locations: Mutex::new(HashMap::new()),
                placing: Mutex::new(HashMap::new()),
                served: Mutex::default(),
                unreachable: Mutex::new(HashMap::new()),
                started_ms,
                stop: CancellationToken::new(),
            }),
        };
        tokio::spawn(cluster.clone().heartbeats());
        Ok(cluster)
    }

    /// This node's URL.
    pub fn node_url(&self) -> &str {
        &self.inner.config.node_url
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The nodes as of the last look.
    pub fn table(&self) -> Arc<NodeTable> {
        self.inner.table.borrow().clone()
    }

    /// Changes of the node table.
    pub fn watch(&self) -> watch::Receiver<Arc<NodeTable>> {
        self.inner.table.subscribe()
    }

    /// The metrics forwarding is counted in.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// What `/health` shows of the cluster.
    pub fn health(&self) -> ClusterHealth {
        let redis = match lock(&self.inner.redis_down).clone() {
            None => "ok".to_owned(),
            Some(reason) => format!("unreachable: {reason}"),
        };
        ClusterHealth { node: self.node_url().to_owned(), redis, nodes: self.table().nodes.clone() }
    }

    /// Heartbeats every [`ClusterConfig::heartbeat`] and reads the node table twice as
    /// often, until [`Cluster::leave`].
    async fn heartbeats(self) {
        let inner = &self.inner;
        self.check_backends().await;
        let checks = self.clone();
        tokio::spawn(async move {
            let every = checks.inner.config.heartbeat * HEALTH_EVERY;
            loop {
                tokio::select! {
                    _ = checks.inner.stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => checks.check_backends().await,
                }
            }
        });
        let mut ticks = tokio::time::interval(inner.config.heartbeat / 2);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut swept = false;
        let mut beat = 0u64;
        loop {
            tokio::select! {
                _ = inner.stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let heartbeat = beat.is_multiple_of(2);
            beat += 1;
            let result = async {
                if !swept {
                    // What a previous run of this node left: its sessions are gone with it.
                    inner.registry.remove_node(self.node_url(), false).await?;
                    swept = true;
                    info!(node = %self.node_url(), "joined the cluster; sessions a previous run left are swept");
                }
                if heartbeat {
                    inner.registry.heartbeat(self.node_url(), &self.load()).await?;
                    inner.registry.reconcile(self.node_url(), || self.local_sessions()).await?;
                }
                inner.registry.nodes().await
            }
            .await;
            match result {
                Ok(records) => {
                    if lock(&inner.redis_down).take().is_some() {
                        info!(node = %self.node_url(), "the cluster's Redis is reachable; registered");
                    }
                    inner.metrics.cluster_redis_up(true);
                    self.update_table(records);
                }
                Err(error) => {
                    let reason = error.to_string();
                    let mut down = lock(&inner.redis_down);
                    if down.as_deref() != Some(reason.as_str()) {
                        warn!(%error, "the cluster's Redis is unreachable: serving this node's sessions only");
                    }
                    *down = Some(reason);
                    inner.metrics.cluster_redis_up(false);
                }
            }
        }
    }

    /// What this node says of itself: the languages and backends it serves (as of the
    /// last health check, see [`Cluster::check_backends`]) and its load.
    fn load(&self) -> Load {
        let (languages, backends) = lock(&self.inner.served).clone();
        Load {
            languages,
            backends,
            sessions: self.inner.manager.count(),
            memory_free: memory_available(),
            started_ms: self.inner.started_ms,
        }
    }

    /// Asks the backends whether they are up, for the languages this node serves: before
    /// the first heartbeat, then every [`HEALTH_EVERY`] heartbeats in a task of its own, so
    /// the heartbeat never waits on a backend. A check that does not finish within
    /// [`HEALTH_TIMEOUT`] (a hung Docker engine) leaves what the backends said last.
    async fn check_backends(&self) {
        let manager = &self.inner.manager;
        let Ok(health) = tokio::time::timeout(HEALTH_TIMEOUT, manager.health()).await else {
            warn!("the backends' health check did not finish in time; announcing what they said last");
            return;
        };
        let up: Vec<&'static str> = health
            .into_iter()
            .filter(|(_, health)| matches!(health, codebeaker::BackendHealth::Ok))
            .map(|(name, _)| name)
            .collect();
        let mut languages: Vec<String> = manager
            .backends()
            .iter()
            .filter(|backend| up.contains(&backend.name()))
            .flat_map(|backend| backend.languages().iter().map(|language| language.as_str().to_owned()))
            .collect();
        languages.sort();
        languages.dedup();
        *lock(&self.inner.served) = (languages, up.iter().map(|name| (*name).to_owned()).collect());
    }

    /// This node's sessions: id → tenant (`""` for none).
    fn local_sessions(&self) -> HashMap<String, String> {
        let sessions = self.inner.manager.list();
        sessions.into_iter().map(|info| (info.session_id.to_string(), info.tenant.unwrap_or_default())).collect()
    }

    fn update_table(&self, records: Vec<registry::NodeRecord>) {
        let lost_after = self.inner.config.lost_after().as_millis() as u64;
        let mut nodes: Vec<NodeView> = records
            .into_iter()
            .map(|record| NodeView {
                state: if record.since_heartbeat_ms <= lost_after { NodeState::Live } else { NodeState::Lost },
                url: record.url,
                sessions: record.load.sessions,
                languages: record.load.languages,
                backends: record.load.backends,
                memory_free_bytes: record.load.memory_free,
                last_heartbeat_ms: record.since_heartbeat_ms,
            })
            .collect();
        nodes.sort_by(|a, b| a.url.cmp(&b.url));
        let previous = self.table();
        for node in &nodes {
            let before = previous.get(&node.url).map(|n| n.state);
            if before != Some(node.state) {
                match node.state {
                    NodeState::Live => info!(node = %node.url, "cluster node is live"),
                    NodeState::Lost if before.is_some() => {
                        warn!(node = %node.url, silent_ms = node.last_heartbeat_ms, "cluster node lost")
                    }
                    NodeState::Lost => {}
                }
            }
        }
        self.inner.metrics.cluster_nodes(&nodes);
        self.inner.table.send_replace(Arc::new(NodeTable { nodes }));
    }

    /// The error of a request that needs Redis while it is unreachable.
    fn redis_error(&self, error: redis::RedisError) -> Error {
        self.unreachable(&error).with_source(error)
    }

    fn unreachable(&self, why: &dyn std::fmt::Display) -> Error {
        Error::backend_unavailable(
            "cluster",
            format!(
                "the cluster's Redis is unreachable ({why}); node {} serves the sessions it holds, and requests \
                 that need the cluster fail until Redis is back",
                self.node_url()
            ),
        )
    }

    /// `-32003` while this node cannot reach Redis (as of its last look).
    pub fn check_redis(&self) -> Result<(), Error> {
        match lock(&self.inner.redis_down).as_deref() {
            None => Ok(()),
            Some(why) => Err(self.unreachable(&why)),
        }
    }

    /// The error of a request for a session on node `url`, lost or unreachable (`why`).
    pub fn node_error(&self, url: &str, why: &str) -> Error {
        Error::backend_unavailable("cluster", format!("node {url} {why}"))
    }

    /// The error of a request for a session on a lost node, naming it.
    fn lost(&self, url: &str) -> Error {
        let silent = self.table().get(url).map_or(0, |node| node.last_heartbeat_ms);
        self.node_error(
            url,
            &format!("is lost (no heartbeat for {:.1} s): its sessions cannot be reached", silent as f64 / 1000.0),
        )
    }

    /// The node to create a session of `language` (on `backend`, if named) on: the
    /// lighter of [`ClusterConfig::sample`] live nodes sampled among those serving it.
    pub async fn place(&self, language: Language, backend: Option<&str>) -> Result<String, Error> {
        let table = self.table();
        let avoided = self.avoided();
        let serving: Vec<&NodeView> = table
            .live()
            .filter(|node| !avoided.contains(&node.url))
            .filter(|node| node.languages.iter().any(|l| l == language.as_str()))
            .filter(|node| backend.is_none_or(|wanted| node.backends.iter().any(|b| b == wanted)))
            .collect();
        self.check_redis()?;
        if serving.is_empty() {
            let live: Vec<&str> = table.live().map(|node| node.url.as_str()).collect();
            return Err(Error::backend_unavailable(
                "cluster",
                format!(
                    "no live node of the cluster serves {language}{} (live nodes: {})",
                    backend.map(|b| format!(" on backend {b}")).unwrap_or_default(),
                    if live.is_empty() { "none".to_owned() } else { live.join(", ") }
                ),
            ));
        }
        let sampled: Vec<String> =
            serving.choose_multiple(&mut rand::rng(), self.inner.config.sample).map(|node| node.url.clone()).collect();
        let loads = self.inner.registry.loads(&sampled).await.map_err(|e| self.redis_error(e))?;
        let placing = lock(&self.inner.placing);
        let chosen = sampled
            .iter()
            .zip(loads)
            .min_by_key(|(url, load)| load + placing.get(*url).copied().unwrap_or(0))
            .map(|(url, _)| url.clone());
        Ok(chosen.unwrap_or_else(|| self.node_url().to_owned()))
    }

    /// Marks node `url` unreachable (a connection to it could not be opened, `why`):
    /// placements avoid it until it heartbeats again. The `-32003` to answer.
    pub fn cannot_reach(&self, url: &str, why: impl std::fmt::Display) -> Error {
        lock(&self.inner.unreachable).insert(url.to_owned(), std::time::Instant::now());
        self.node_error(url, &format!("cannot be reached: {why}"))
    }

    /// Whether placements avoid node `url` (see [`Cluster::cannot_reach`]).
    pub fn avoids(&self, url: &str) -> bool {
        self.avoided().iter().any(|avoided| avoided == url)
    }

    /// The nodes found unreachable since their last heartbeat.
    fn avoided(&self) -> Vec<String> {
        let table = self.table();
        let mut unreachable = lock(&self.inner.unreachable);
        unreachable.retain(|url, since| {
            let heard = table.get(url).map(|node| Duration::from_millis(node.last_heartbeat_ms));
            // Heard from after it was found unreachable: placements may try it again.
            heard.is_some_and(|heard| heard > since.elapsed())
        });
        unreachable.keys().cloned().collect()
    }

    /// Counts a placement on `url` as its load until the guard is dropped.
    pub fn placing(&self, url: &str) -> Placing {
        *lock(&self.inner.placing).entry(url.to_owned()).or_default() += 1;
        Placing { cluster: self.clone(), url: url.to_owned() }
    }

    /// The node holding session `id` (not one of this node's), for a caller of `tenant`:
    /// its URL when it is live; `-32001` when no node holds it (or it is another tenant's:
    /// indistinguishable, as on one node); `-32003` naming its node when that node is
    /// lost, or naming Redis when Redis cannot be asked.
    pub async fn holder(&self, id: &str, tenant: Option<&str>) -> Result<String, Error> {
        let found = self.find(id).await?;
        // A tenant sees its own sessions only; without tenants (None) the caller sees all.
        let Some((url, _)) = found.filter(|(_, owner)| tenant.is_none_or(|tenant| tenant == owner)) else {
            return Err(Error::session_not_found(id));
        };
        if self.table().is_live(&url) {
            Ok(url)
        } else {
            Err(self.lost(&url))
        }
    }

    /// Which other node holds session `id` and for which tenant (`""`: none): as
    /// remembered, else as Redis says (then remembered).
    async fn find(&self, id: &str) -> Result<Option<(String, String)>, Error> {
        if let Some(found) = lock(&self.inner.locations).get(id).cloned() {
            return Ok(Some(found));
        }
        let others: Vec<String> =
            self.table().nodes.iter().map(|node| node.url.clone()).filter(|url| url != self.node_url()).collect();
        if others.is_empty() {
            return Ok(None);
        }
        let found = self.inner.registry.locate(id, &others).await.map_err(|e| self.redis_error(e))?;
        if let Some(found) = &found {
            let mut locations = lock(&self.inner.locations);
            if locations.len() >= MAX_LOCATIONS {
                locations.clear();
            }
            locations.insert(id.to_owned(), found.clone());
        }
        Ok(found)
    }

    /// Forgets where session `id` lives (it was not found there).
    pub fn forget_location(&self, id: &str) {
        lock(&self.inner.locations).remove(id);
    }

    /// Reserves a place for a session of `tenant` on this node, counted against the
    /// tenant's cap across the cluster (atomically in Redis).
    pub async fn reserve(&self, tenant: Option<&str>) -> Result<Reservation, Error> {
        let policy = &self.inner.manager.config().policy;
        let cap = match tenant {
            Some(_) => policy.sessions_per_tenant(self.inner.manager.config().max_sessions),
            None => 0,
        };
        let field = format!("{PENDING}{}", uuid::Uuid::new_v4());
        let tenant_name = tenant.unwrap_or_default();
        let reserved = self
            .inner
            .registry
            .reserve(self.node_url(), tenant_name, cap, &field, self.inner.config.lost_after())
            .await
            .map_err(|e| self.redis_error(e))?;
        if let Err(count) = reserved {
            return Err(Error::limit_reached(format!(
                "tenant {tenant_name} holds {count} sessions across the cluster, the most it may (max-sessions-per-tenant \
                 {cap})"
            )));
        }
        Ok(Reservation { cluster: self.clone(), field: Some(field), tenant: tenant_name.to_owned() })
    }

    /// Forgets session `id` of this node (closed).
    pub fn forget(&self, id: &str) {
        let cluster = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(error) = cluster.inner.registry.forget(cluster.node_url(), &id).await {
                // The next heartbeat's reconciliation removes it.
                tracing::debug!(%error, session = %id, "cannot forget a closed session in Redis yet");
            }
        });
    }

    /// Records that this node holds snapshot `id`.
    pub async fn record_snapshot(&self, id: &str) -> Result<(), Error> {
        self.inner.registry.record_snapshot(id, self.node_url()).await.map_err(|e| self.redis_error(e))
    }

    /// Forgets snapshot `id`.
    pub async fn forget_snapshot(&self, id: &str) -> Result<(), Error> {
        self.inner.registry.forget_snapshot(id).await.map_err(|e| self.redis_error(e))
    }

    /// The node holding snapshot `id`, when it is another live node (`Ok(None)`: this
    /// node, or none recorded it); `-32003` when that node is lost.
    pub async fn snapshot_node(&self, id: &str) -> Result<Option<String>, Error> {
        let node = self.inner.registry.snapshot_node(id).await.map_err(|e| self.redis_error(e))?;
        match node {
            Some(url) if url == self.node_url() => Ok(None),
            Some(url) if self.table().is_live(&url) => Ok(Some(url)),
            Some(url) => Err(self.lost(&url)),
            None => Ok(None),
        }
    }

    /// One request of `key` against the cluster-wide rate; `Ok(None)` when allowed,
    /// `Ok(Some(wait))` when over it.
    pub async fn rate(&self, key: &str, interval: Duration, burst: u32) -> Result<Option<Duration>, Error> {
        self.inner.registry.rate(key, interval, burst).await.map_err(|e| self.redis_error(e))
    }

    /// Sends one request (`method`, `params`) for `caller` to node `url` and waits for
    /// its answer, on a link of its own: the typed operations' way to another node
    /// (streamed output and other notifications are not wanted there, and dropped).
    pub async fn call(&self, url: &str, caller: &Caller, method: &str, params: Value) -> Result<Value, Error> {
        // Nobody reads this outbox: notifications are dropped.
        let (outbox, _) = crate::outbox::channel(1);
        let forwarder = link::Forwarder::new(self.clone(), caller.clone(), outbox);
        let request = Request { id: Some(Value::from(1)), method: method.to_owned(), params: Some(params) };
        forwarder.forward(request, link::Target::Node(url.to_owned()), None).await.map_err(sdk_error)
    }

    /// Leaves the cluster: heartbeats stop and this node's entries are removed, so the
    /// others see it gone at once (sessions are closed by the shutdown).
    pub async fn leave(&self) {
        self.inner.stop.cancel();
        let left = tokio::time::timeout(Duration::from_secs(3), self.inner.registry.remove_node(self.node_url(), true));
        match left.await {
            Ok(Ok(())) => info!(node = %self.node_url(), "left the cluster"),
            Ok(Err(error)) => warn!(%error, "cannot leave the cluster cleanly; the entries expire by themselves"),
            Err(_) => warn!("leaving the cluster timed out; the entries expire by themselves"),
        }
    }
}

/// A placement in flight (see [`Cluster::placing`]).
pub struct Placing {
    cluster: Cluster,
    url: String,
}

impl Drop for Placing {
    fn drop(&mut self) {
        let mut placing = lock(&self.cluster.inner.placing);
        if let Some(count) = placing.get_mut(&self.url) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                placing.remove(&self.url);
            }
        }
    }
}

/// A session being created on this node, counted in Redis until it is settled (made a
/// session record, or dropped: released).
pub struct Reservation {
    cluster: Cluster,
    field: Option<String>,
    tenant: String,
}

impl Reservation {
    /// Turns the reservation into the record of session `id` (or releases it, `None`).
    pub async fn settle(mut self, id: Option<&str>) {
        let Some(field) = self.field.take() else { return };
        let registry = &self.cluster.inner.registry;
        if let Err(error) = registry.settle(self.cluster.node_url(), &field, id, &self.tenant).await {
            // The next heartbeat's reconciliation writes the session (not the pending field).
            tracing::debug!(%error, "cannot settle a session reservation in Redis yet");
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(field) = self.field.take() {
            let (cluster, tenant) = (self.cluster.clone(), std::mem::take(&mut self.tenant));
            tokio::spawn(async move {
                let _ = cluster.inner.registry.settle(cluster.node_url(), &field, None, &tenant).await;
            });
        }
    }
}

/// The SDK error a node's JSON-RPC error stands for: the kind its code maps from (see
/// [`crate::error_codes`]), the message its `data` carries verbatim.
pub fn sdk_error(error: RpcError) -> Error {
    use codebeaker::ErrorKind;
    let kind = match error.code {
        crate::rpc::SESSION_NOT_FOUND => ErrorKind::SessionNotFound,
        crate::rpc::SESSION_CLOSED => ErrorKind::SessionClosed,
        crate::rpc::LIMIT_REACHED => ErrorKind::LimitReached,
        crate::rpc::BACKEND_UNAVAILABLE => ErrorKind::BackendUnavailable,
        crate::rpc::INVALID_PARAMS => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    };
    Error::new(kind, error.data.unwrap_or_else(|| error.message.to_owned()))
}

/// `MemAvailable` of `/proc/meminfo`, in bytes (0 where it cannot be read).
fn memory_available() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else { return 0 };
    text.lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
