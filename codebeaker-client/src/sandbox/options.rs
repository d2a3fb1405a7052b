//! The options of the [`Sandbox`](super::Sandbox) calls: where to connect, how to create
//! a session, and what to do with a command's output as it comes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::error::Result;
use crate::Client;

/// Where [`Sandbox::create`](super::Sandbox::create) and
/// [`Sandbox::connect`](super::Sandbox::connect) connect when neither the options nor
/// `CODEBEAKER_URL` say.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:5000";

/// A handler of output text as it comes (a chunk at a time, never split inside a
/// UTF-8 character).
pub type OutputHandler = Box<dyn FnMut(&str) + Send>;

/// A handler of a terminal's output, as bytes (E2B's `on_data`).
pub type DataHandler = Box<dyn FnMut(&[u8]) + Send>;

/// Where to reach the server: [`Sandbox::connect`](super::Sandbox::connect)'s options,
/// and part of [`CreateOptions`].
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    url: Option<String>,
    token: Option<String>,
}

impl ConnectOptions {
    /// The defaults: the URL of `CODEBEAKER_URL` (else [`DEFAULT_URL`]), the token of
    /// `CODEBEAKER_TOKEN` (else none), read when connecting.
    pub fn new() -> Self {
        Self::default()
    }

    /// The server's URL: `ws://host:port` (the JSON-RPC path `/ws/jsonrpc` is added),
    /// the full `ws://host:port/ws/jsonrpc`, or `http://host:port` (`wss`/`https` for
    /// TLS).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The token to present (the server's `--token`, or a tenant's key).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// A client connected to the server these options name.
    pub(crate) async fn client(self) -> Result<Client> {
        let env = |name: &str| std::env::var(name).ok();
        let url = self.url.filter(|u| !u.is_empty()).or_else(|| env("CODEBEAKER_URL")).filter(|u| !u.is_empty());
        let token = self.token.or_else(|| env("CODEBEAKER_TOKEN")).filter(|t| !t.is_empty());
        let client = Client::connect(ws_url(url.as_deref().unwrap_or(DEFAULT_URL)));
        match token {
            Some(token) => client.token(token).await,
            None => client.await,
        }
    }
}

/// The WebSocket URL of the JSON-RPC API for a server URL given as the SDKs take it
/// (`ws://host:port`, with or without `/ws/jsonrpc`, or `http(s)://host:port`).
pub(crate) fn ws_url(url: &str) -> String {
    let base = url.trim_end_matches('/');
    let base = base.strip_suffix("/ws/jsonrpc").unwrap_or(base);
    let (scheme, rest) = base.split_once("://").unwrap_or(("ws", base));
    let scheme = if matches!(scheme, "wss" | "https") { "wss" } else { "ws" };
    format!("{scheme}://{rest}/ws/jsonrpc")
}

/// [`Sandbox::create`](super::Sandbox::create)'s options.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub(crate) language: String,
    pub(crate) connect: ConnectOptions,
    pub(crate) timeout: Option<Duration>,
    pub(crate) backend: Option<String>,
}

impl CreateOptions {
    /// A session of `language` (`python`, `javascript`, `typescript`, `go`, `csharp`, or
    /// an alias such as `py`, `ts`; `deno` is `typescript` on the Deno backend), on the
    /// server of [`ConnectOptions::new`]'s defaults.
    pub fn new(language: impl Into<String>) -> Self {
        CreateOptions { language: language.into(), connect: ConnectOptions::new(), timeout: None, backend: None }
    }

    /// The server's URL (see [`ConnectOptions::url`]).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.connect = self.connect.url(url);
        self
    }

    /// The token to present (see [`ConnectOptions::token`]).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.connect = self.connect.token(token);
        self
    }

    /// The default limit of the session's commands (sent as `defaultTimeoutMs`; the
    /// server's default otherwise).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The backend that must serve the session (`docker`, `deno`…); the server's routing
    /// table decides otherwise.
    pub fn backend(mut self, backend: impl Into<String>) -> Self {
        self.backend = Some(backend.into());
        self
    }
}

/// The output handlers and the limit of [`Sandbox::run_code_with`](super::Sandbox::run_code_with)
/// (and the handlers of [`Commands::connect_with`](super::Commands::connect_with)).
#[derive(Default)]
pub struct OutputOptions {
    /// Called with each chunk of standard output as it is written.
    pub on_stdout: Option<OutputHandler>,
    /// Called with each chunk of standard error as it is written.
    pub on_stderr: Option<OutputHandler>,
    /// This run's wall-clock limit (the sandbox's default otherwise).
    pub timeout: Option<Duration>,
}

impl OutputOptions {
    /// No handlers, the sandbox's limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `handler` with each chunk of standard output.
    pub fn on_stdout(mut self, handler: impl FnMut(&str) + Send + 'static) -> Self {
        self.on_stdout = Some(Box::new(handler));
        self
    }

    /// Calls `handler` with each chunk of standard error.
    pub fn on_stderr(mut self, handler: impl FnMut(&str) + Send + 'static) -> Self {
        self.on_stderr = Some(Box::new(handler));
        self
    }

    /// This run's wall-clock limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub(crate) fn into_parts(self) -> (Handlers, Option<Duration>) {
        (Handlers { on_stdout: self.on_stdout, on_stderr: self.on_stderr }, self.timeout)
    }
}

impl fmt::Debug for OutputOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputOptions")
            .field("on_stdout", &self.on_stdout.is_some())
            .field("on_stderr", &self.on_stderr.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The options of [`Commands::run_with`](super::Commands::run_with) and
/// [`Commands::run_background_with`](super::Commands::run_background_with): those of
/// [`OutputOptions`] (as the TypeScript SDK's `RunOptions` extends its `OutputOptions`),
/// the environment and the directory. Without a `timeout`, a foreground command has the
/// sandbox's default limit and a background one none (it runs until it ends or its
/// session does).
#[derive(Debug, Default)]
pub struct RunOptions {
    /// The output handlers and the wall-clock limit.
    pub output: OutputOptions,
    /// Environment variables added to the command's.
    pub envs: BTreeMap<String, String>,
    /// The directory to run in, beneath `/workspace` (its root otherwise).
    pub cwd: Option<String>,
}

impl RunOptions {
    /// No handlers, no extra environment, in `/workspace`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `handler` with each chunk of standard output.
    pub fn on_stdout(self, handler: impl FnMut(&str) + Send + 'static) -> Self {
        RunOptions { output: self.output.on_stdout(handler), ..self }
    }

    /// Calls `handler` with each chunk of standard error.
    pub fn on_stderr(self, handler: impl FnMut(&str) + Send + 'static) -> Self {
        RunOptions { output: self.output.on_stderr(handler), ..self }
    }

    /// The command's wall-clock limit.
    pub fn timeout(self, timeout: Duration) -> Self {
        RunOptions { output: self.output.timeout(timeout), ..self }
    }

    /// Adds environment variables.
    pub fn envs<K: Into<String>, V: Into<String>>(mut self, envs: impl IntoIterator<Item = (K, V)>) -> Self {
        self.envs.extend(envs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Runs in `cwd` (beneath `/workspace`).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }
}

/// The options of [`Pty::create_with`](super::Pty::create_with).
pub struct PtyOptions {
    /// The program to run on the terminal (`bash` by default).
    pub cmd: String,
    /// Environment variables added to its own.
    pub envs: BTreeMap<String, String>,
    /// The directory to run in, beneath `/workspace` (its root otherwise).
    pub cwd: Option<String>,
    /// Called with what the terminal shows, as it comes.
    pub on_data: Option<DataHandler>,
}

impl Default for PtyOptions {
    fn default() -> Self {
        PtyOptions { cmd: "bash".into(), envs: BTreeMap::new(), cwd: None, on_data: None }
    }
}

impl PtyOptions {
    /// `bash` in `/workspace`, no handler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `cmd` instead of `bash`.
    pub fn cmd(mut self, cmd: impl Into<String>) -> Self {
        self.cmd = cmd.into();
        self
    }

    /// Adds environment variables.
    pub fn envs<K: Into<String>, V: Into<String>>(mut self, envs: impl IntoIterator<Item = (K, V)>) -> Self {
        self.envs.extend(envs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Runs in `cwd` (beneath `/workspace`).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Calls `handler` with what the terminal shows.
    pub fn on_data(mut self, handler: impl FnMut(&[u8]) + Send + 'static) -> Self {
        self.on_data = Some(Box::new(handler));
        self
    }
}

impl fmt::Debug for PtyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PtyOptions")
            .field("cmd", &self.cmd)
            .field("envs", &self.envs)
            .field("cwd", &self.cwd)
            .field("on_data", &self.on_data.is_some())
            .finish()
    }
}

/// The output handlers of one command or process.
#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) on_stdout: Option<OutputHandler>,
    pub(crate) on_stderr: Option<OutputHandler>,
}

impl Handlers {
    /// Hands `data` to the handler of its stream (standard error, or else output).
    pub(crate) fn deliver(&mut self, stderr: bool, data: &str) {
        let handler = if stderr { &mut self.on_stderr } else { &mut self.on_stdout };
        if let Some(handler) = handler {
            handler(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ws_url;

    #[test]
    fn a_server_url_becomes_the_json_rpc_websocket_url() {
        assert_eq!(ws_url("ws://127.0.0.1:5000"), "ws://127.0.0.1:5000/ws/jsonrpc");
        assert_eq!(ws_url("ws://127.0.0.1:5000/"), "ws://127.0.0.1:5000/ws/jsonrpc");
        assert_eq!(ws_url("ws://127.0.0.1:5000/ws/jsonrpc"), "ws://127.0.0.1:5000/ws/jsonrpc");
        assert_eq!(ws_url("http://host:80"), "ws://host:80/ws/jsonrpc");
        assert_eq!(ws_url("https://host"), "wss://host/ws/jsonrpc");
        assert_eq!(ws_url("wss://host/ws/jsonrpc/"), "wss://host/ws/jsonrpc");
        assert_eq!(ws_url("host:5000"), "ws://host:5000/ws/jsonrpc");
    }
}
