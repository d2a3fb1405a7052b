//! [`Server`]: the listening socket, the accept loop with its connection limits, the
//! per-socket HTTP step, and the orderly shutdown described in [`crate::shutdown`].

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use codebeaker::SessionManager;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument as _};

use crate::backends::Backends;
use crate::config::ServerConfig;
use crate::http::{self, Route};
use crate::limits::Limits;
use crate::methods::Methods;
use crate::rpc::{Response, RpcError};
use crate::{connection, rpc};

/// Sockets that may be in their HTTP step beyond [`Limits::max_connections`], so that
/// `/health` and clear refusals still get through when every connection is taken.
const HANDSHAKE_SLACK: usize = 64;

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) manager: SessionManager,
    pub(crate) methods: Methods,
    pub(crate) limits: Limits,
    token: Option<String>,
    backends_off: Vec<(String, String)>,
    /// One permit per open WebSocket connection.
    connections: Arc<Semaphore>,
}

/// A bound CodeBeaker server, ready to [`run`](Server::run).
///
/// ```no_run
/// use codebeaker_server::{Backends, BackendOptions, Server, ServerConfig};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let backends = Backends::start(BackendOptions::default()).await?;
/// let server = Server::bind(ServerConfig::ephemeral(), backends).await?;
/// println!("listening on ws://{}/ws/jsonrpc", server.local_addr());
/// let handle = server.spawn();
/// // … talk to it …
/// handle.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `config.listen` and creates the session manager over `backends`. Must be
    /// called inside a Tokio runtime.
    pub async fn bind(config: ServerConfig, backends: Backends) -> io::Result<Server> {
        let listener = TcpListener::bind(config.listen).await?;
        let Backends { enabled, disabled } = backends;
        let manager = SessionManager::new(enabled, config.manager);
        let shared = Arc::new(Shared {
            methods: Methods::new(manager.clone(), config.command_timeout),
            manager,
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            limits: config.limits,
            token: config.token,
            backends_off: disabled,
        });
        Ok(Server { listener, shared })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The session manager behind the server.
    pub fn manager(&self) -> &SessionManager {
        &self.shared.manager
    }

    /// Serves until `shutdown` completes, then shuts down gracefully (see
    /// [`crate::shutdown`]): every session is closed before this returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, shared } = self;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let sockets = Arc::new(Semaphore::new(shared.limits.max_connections + HANDSHAKE_SLACK));
        tokio::pin!(shutdown);
        info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = sockets.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // the semaphore is never closed
                },
            };
            let (socket, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let shared = shared.clone();
            let stop = stop.child_token();
            tracker.spawn(handle_socket(socket, shared, stop, permit).instrument(info_span!("connection", %peer)));
        }
        drop(listener);
        info!(sessions = shared.manager.count(), "shutting down");
        stop.cancel();
        tracker.close();
        let connections = async {
            let limit = shared.limits.shutdown_grace + Duration::from_secs(5);
            if tokio::time::timeout(limit, tracker.wait()).await.is_err() {
                warn!("some connections did not close in time");
            }
        };
        tokio::join!(shared.manager.shutdown(), connections);
        info!("shut down: every session closed");
    }

    /// Runs the server in a task of its own; the handle shuts it down.
    pub fn spawn(self) -> ServerHandle {
        let addr = self.local_addr();
        let manager = self.shared.manager.clone();
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task = tokio::spawn(self.run(async move { signal.cancelled().await }));
        ServerHandle { addr, manager, stop, task }
    }
}

/// A server running in the background (see [`Server::spawn`]).
pub struct ServerHandle {
    addr: SocketAddr,
    manager: SessionManager,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/ws/jsonrpc`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, http::WS_PATH)
    }

    /// The session manager behind the server.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// Shuts the server down gracefully and waits until it has.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            warn!(%error, "the server task failed");
        }
    }
}

/// The HTTP step of one socket, then its WebSocket connection.
async fn handle_socket(
    mut socket: TcpStream,
    shared: Arc<Shared>,
    stop: CancellationToken,
    _place: OwnedSemaphorePermit,
) {
    // Small frames go out at once: round trips matter more than packet counts here.
    let _ = socket.set_nodelay(true);
    let limits = &shared.limits;
    let head = tokio::select! {
        _ = stop.cancelled() => return,
        head = tokio::time::timeout(limits.http_head_timeout, http::read_head(&mut socket, limits.max_http_head_bytes)) => head,
    };
    let (head, rest) = match head {
        Ok(Ok(read)) => read,
        Ok(Err(http::HeadError::TooLarge(max))) => {
            let reason = format!("the request head is larger than {max} bytes");
            let _ = http::write_response(&mut socket, 431, "text/plain", &reason, true).await;
            return;
        }
        Ok(Err(http::HeadError::Malformed(reason))) => {
            let _ = http::write_response(&mut socket, 400, "text/plain", &reason, true).await;
            return;
        }
        Ok(Err(error)) => return debug!(%error, "no request head"),
        Err(_) => {
            let _ = http::write_response(&mut socket, 408, "text/plain", "request head timed out", true).await;
            return;
        }
    };
    match http::route(&head, shared.token.as_deref()) {
        Route::Health => {
            let body = rpc::to_text(&health(&shared).await);
            let _ = http::write_response(&mut socket, 200, "application/json", &body, head.method != "HEAD").await;
        }
        Route::Refuse { status, reason } => {
            debug!(status, path = %head.path, "request refused");
            let _ = http::write_response(&mut socket, status, "text/plain", &reason, true).await;
        }
        Route::Upgrade { accept } => {
            let permit = shared.connections.clone().try_acquire_owned();
            if http::write_upgrade(&mut socket, &accept).await.is_err() {
                return;
            }
            let config = WebSocketConfig::default()
                .max_message_size(Some(limits.max_message_bytes))
                .max_frame_size(Some(limits.max_message_bytes));
            let mut ws = WebSocketStream::from_partially_read(socket, rest, Role::Server, Some(config)).await;
            let Ok(_connection) = permit else {
                return refuse_connection(&mut ws, limits.max_connections).await;
            };
            debug!("connection open");
            connection::serve(ws, shared.clone(), stop).await;
            debug!("connection closed");
        }
    }
}

/// Over the connection limit: one `-32002` error, then a close frame saying the same.
async fn refuse_connection(ws: &mut WebSocketStream<TcpStream>, max: usize) {
    use futures::SinkExt as _;
    let detail = format!("{max} connections are open, the maximum; try again later");
    warn!("connection refused: {detail}");
    let error = Response::error(Value::Null, RpcError::limit_reached(detail.clone()));
    let _ = ws.send(Message::text(error.to_text())).await;
    let _ = ws.close(Some(CloseFrame { code: CloseCode::Again, reason: detail.into() })).await;
}

/// The `/health` body: `{"status":"ok","sessions":N,"backends":{name: state}}`.
async fn health(shared: &Shared) -> Value {
    let mut backends: BTreeMap<String, String> =
        shared.backends_off.iter().map(|(name, reason)| (name.clone(), format!("unavailable: {reason}"))).collect();
    for (name, state) in shared.manager.health().await {
        backends.insert(name.to_owned(), state.describe());
    }
    json!({"status": "ok", "sessions": shared.manager.count(), "backends": backends})
}
