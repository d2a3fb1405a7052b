//! The MCP server (Model Context Protocol, with the official Rust SDK `rmcp`): the tools
//! an agent needs to run code in CodeBeaker sandboxes, over stdio
//! (`codebeaker-server mcp`, for agent hosts that spawn their tools) and streamable HTTP
//! at `/mcp` (behind the same origin check and token/tenant authentication as the
//! WebSocket). The tool list and its semantics are in `docs/protocol.md`.
//!
//! Every tool calls the server's [`Api`], the same typed layer the JSON-RPC methods call,
//! so timeouts, tenants, caps, metrics and the audit log behave the same on both.
//!
//! One [`McpTools`] serves one MCP session. It remembers the session it uses per
//! language (so `run_code` keeps state across calls without ceremony) and every session
//! created through it; when the MCP session ends (stdio closed, HTTP session deleted or
//! expired, server shutdown), those sessions are closed.

mod params;
mod render;
pub mod transport;

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codebeaker::command::{ExecuteShell, ListDirectory, ReadFile, WriteFile};
use codebeaker::{
    Command, Encoding, Language, ProcessCommand, ProcessEvent, ProcessSignal, ProcessSpec, ProcessState, SessionConfig,
    WorkspacePath, WriteMode,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, Implementation, InitializeRequestParams, InitializeResult, ProtocolVersion, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use tokio::runtime::Handle;

use crate::api::{Api, ApiError, Caller, ProcessAction};
use crate::metrics::ConnectionGuard;
use crate::protocol::{
    ProcessChunk, ProcessDone, ProcessOutputRead, ProcessStarted, SessionClosed, SessionCreated, SessionForked,
    SessionList,
};
use crate::shares::Place;
use codebeaker::snapshot::SnapshotInfo;
use transport::SessionPlace;

/// Protocol revisions offered: those with the `initialize` handshake, whose streamable
/// HTTP transport has sessions (`Mcp-Session-Id`). Per-language sessions and "close what
/// this MCP session created" need a session to hang on; the stateless 2026-07-28
/// revision has none, and clients that speak it fall back to the handshake.
const PROTOCOL_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

/// What the server tells agents about itself at `initialize`.
const INSTRUCTIONS: &str = "CodeBeaker runs code in isolated sandboxes. Use run_code with a language \
(python, javascript, typescript, go, csharp) and code; calls in the same language share one session, so \
variables and files persist where the backend keeps state (typescript always). Files live under /workspace: \
write_file, read_file and list_directory act in the same session (give language or session_id). \
run_shell runs a shell command in a container session (not typescript). start_process runs a program in the \
background (servers, watchers, an interactive shell with pty): read_process_output, write_process_input and \
kill_process work with it. create_session/close_session/\
list_sessions manage sessions explicitly; sessions created here close when this MCP session ends.";

/// The tools of one MCP session (see the module docs). Cheap to clone: clones share the
/// session's state.
#[derive(Clone)]
pub struct McpTools {
    state: Arc<McpSession>,
    tool_router: ToolRouter<McpTools>,
}

/// What one MCP session holds; dropping it (with the last clone of its [`McpTools`])
/// closes the sessions it created.
struct McpSession {
    api: Api,
    /// Who acts when the transport carries no caller of its own (stdio).
    caller: Caller,
    /// The session used per language when a tool names none.
    defaults: tokio::sync::Mutex<HashMap<Language, String>>,
    /// Sessions created through this MCP session, with the caller that owns them.
    created: Mutex<Vec<(String, Caller)>>,
    runtime: Handle,
    _connection: Option<ConnectionGuard>,
    /// The place this session holds under the MCP session caps (HTTP only), taken from
    /// its `initialize` request; given back when the session ends.
    place: Mutex<Option<Place>>,
}

impl Drop for McpSession {
    fn drop(&mut self) {
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        if created.is_empty() {
            return;
        }
        let api = self.api.clone();
        self.runtime.spawn(async move {
            for (session_id, caller) in created {
                // Already closed by a tool or expired: nothing to do.
                if api.close(&caller, &session_id).await.is_ok() {
                    tracing::debug!(session = %session_id, "closed with its MCP session");
                }
            }
        });
    }
}

impl McpTools {
    /// The tools of a new MCP session over `api`. `caller` acts when the transport does not
    /// say who the client is (stdio); `connection` keeps it counted in the metrics. Must be
    /// called inside a Tokio runtime.
    pub fn new(api: Api, caller: Caller, connection: Option<ConnectionGuard>) -> Self {
        let state = McpSession {
            api,
            caller,
            defaults: tokio::sync::Mutex::default(),
            created: Mutex::default(),
            runtime: Handle::current(),
            _connection: connection,
            place: Mutex::default(),
        };
        McpTools { state: Arc::new(state), tool_router: Self::tool_router() + Self::lifecycle_router() }
    }

    /// The caller of a request: the one the HTTP guard attached, else this session's.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Caller {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .cloned()
            .unwrap_or_else(|| self.state.caller.clone())
    }

    /// Creates a session and remembers to close it with this MCP session.
    async fn create(&self, caller: &Caller, config: codebeaker::SessionConfig) -> Result<String, ApiError> {
        let info = self.state.api.create(caller, config).await?;
        self.remember(caller, &info.session_id);
        Ok(info.session_id.into())
    }

    fn remember(&self, caller: &Caller, session_id: &str) {
        let mut created = self.state.created.lock().unwrap_or_else(|p| p.into_inner());
        created.push((session_id.to_owned(), caller.clone()));
    }

    /// The session a tool acts in: the one named, else this MCP session's session for the
    /// language (created on first use), else its only session. The note says when a
    /// session was started.
    async fn resolve(
        &self,
        caller: &Caller,
        session_id: Option<String>,
        language: Option<&str>,
        fallback: Option<Language>,
    ) -> Result<(String, Option<String>), String> {
        if let Some(id) = session_id {
            return Ok((id, None));
        }
        let language = match language {
            Some(name) => Some(parse_language(name)?),
            None => None,
        };
        let mut defaults = self.state.defaults.lock().await;
        let language = match (language, defaults.len()) {
            (Some(language), _) => language,
            (None, 1) => *defaults.keys().next().ok_or("no session")?,
            (None, _) => fallback.ok_or_else(|| {
                "name the session: give session_id, or language (python, javascript, typescript, go, csharp)".to_owned()
            })?,
        };
        if let Some(id) = defaults.get(&language) {
            if self.state.api.manager().info(id).is_ok() {
                return Ok((id.clone(), None));
            }
            defaults.remove(&language);
        }
        let config = SessionConfig::new(language);
        let id = self.create(caller, config).await.map_err(|e| e.to_string())?;
        defaults.insert(language, id.clone());
        Ok((id.clone(), Some(format!("Started a new {language} session {id}."))))
    }

    /// Runs `command` in the session `target` resolves to.
    async fn run(
        &self,
        context: &RequestContext<RoleServer>,
        target: params::Target,
        fallback: Option<Language>,
        command: Command,
        timeout_ms: Option<u64>,
    ) -> CallToolResult {
        let caller = self.caller(context);
        let (session_id, note) =
            match self.resolve(&caller, target.session_id, target.language.as_deref(), fallback).await {
                Ok(resolved) => resolved,
                Err(message) => return render::error(message),
            };
        let timeout = timeout_ms.map(Duration::from_millis);
        match self.state.api.execute(&caller, &session_id, command, timeout, None).await {
            Ok(outcome) => render::outcome(&outcome, note),
            Err(error) => render::error(error.to_string()),
        }
    }
}

#[tool_router]
impl McpTools {
    /// Runs code in a session of its language.
    #[tool(
        description = "Run code in a sandbox and return its output. Calls with the same language reuse one session \
                       (state and files persist where the backend keeps them: typescript always); give session_id \
                       to run in a specific session. Languages: python, javascript (Node.js), typescript (Deno), go, \
                       csharp. Images the code produces come back as image content."
    )]
    async fn run_code(
        &self,
        Parameters(p): Parameters<params::RunCode>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let language = match parse_language(&p.language) {
            Ok(language) => language,
            Err(message) => return Ok(render::error(message)),
        };
        let target = params::Target { session_id: p.session_id, language: Some(language.as_str().to_owned()) };
        Ok(self.run(&context, target, None, Command::code(p.code), p.timeout_ms).await)
    }

    /// Runs a shell command line.
    #[tool(description = "Run a shell command line (sh -c) in a container session's /workspace and return its exit \
                       code, stdout and stderr. Uses this connection's python session unless session_id or language \
                       names another; typescript (Deno) sessions have no shell.")]
    async fn run_shell(
        &self,
        Parameters(p): Parameters<params::RunShell>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut shell = ExecuteShell::new("sh", ["-c".to_owned(), p.command]);
        if let Some(directory) = p.working_directory {
            shell.working_directory = match WorkspacePath::new(&directory) {
                Ok(directory) => directory,
                Err(error) => return Ok(render::error(error.to_string())),
            };
        }
        shell.stdin = p.stdin;
        let command = Command::ExecuteShell(shell);
        Ok(self.run(&context, p.target, Some(Language::Python), command, p.timeout_ms).await)
    }

    /// Writes a file into a session's workspace.
    #[tool(description = "Write a file in a session's /workspace (text, or base64 for binary data), replacing it or \
                          appending to it.")]
    async fn write_file(
        &self,
        Parameters(p): Parameters<params::WriteFile>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let path = match WorkspacePath::new(&p.path) {
            Ok(path) => path,
            Err(error) => return Ok(render::error(error.to_string())),
        };
        let command = Command::WriteFile(WriteFile {
            path,
            content: p.content,
            mode: if p.append { WriteMode::Append } else { WriteMode::Create },
            encoding: if p.base64 { Encoding::Base64 } else { Encoding::Utf8 },
        });
        Ok(self.run(&context, p.target, None, command, None).await)
    }

    /// Reads a file from a session's workspace.
    #[tool(description = "Read a file from a session's /workspace and return its content (base64 when asked).")]
    async fn read_file(
        &self,
        Parameters(p): Parameters<params::ReadFile>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let encoding = if p.base64 { Encoding::Base64 } else { Encoding::Utf8 };
        let path = match WorkspacePath::new(&p.path) {
            Ok(path) => path,
            Err(error) => return Ok(render::error(error.to_string())),
        };
        let command = Command::ReadFile(ReadFile { path, encoding, offset: p.offset, length: p.length });
        Ok(self.run(&context, p.target, None, command, None).await)
    }

    /// Lists a directory of a session's workspace.
    #[tool(description = "List a directory of a session's /workspace: a JSON object with each entry's name, type \
                          (file, directory, symlink) and size.")]
    async fn list_directory(
        &self,
        Parameters(p): Parameters<params::ListDirectory>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let path = match p.path.as_deref().map(WorkspacePath::new).transpose() {
            Ok(path) => path.unwrap_or_else(WorkspacePath::root),
            Err(error) => return Ok(render::error(error.to_string())),
        };
        let command = Command::ListDirectory(ListDirectory { path });
        Ok(self.run(&context, p.target, None, command, None).await)
    }

    /// Creates a session.
    #[tool(
        description = "Create a sandbox session and return it as JSON (sessionId, language, config, capabilities), \
                       the reply of session.create. It is closed when this MCP session ends, or by close_session.",
        output_schema = schema_for_output::<SessionCreated>()
    )]
    async fn create_session(
        &self,
        Parameters(p): Parameters<params::CreateSession>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = self.caller(&context);
        let language = match parse_language(&p.language) {
            Ok(language) => language,
            Err(message) => return Ok(render::error(message)),
        };
        let mut config = SessionConfig::new(language);
        if let Some(mb) = p.memory_limit_mb {
            config.memory_limit_mb = mb;
        }
        if let Some(minutes) = p.idle_timeout_minutes {
            config.idle_timeout_minutes = minutes;
        }
        if let Some(ms) = p.default_timeout_ms {
            config.default_timeout_ms = Some(ms);
        }
        config.from_snapshot = p.from_snapshot;
        let info = match self.state.api.create(&caller, config).await {
            Ok(info) => info,
            Err(error) => return Ok(render::error(error.to_string())),
        };
        self.remember(&caller, &info.session_id);
        Ok(render::reply(&SessionCreated::from(&info)))
    }

    /// Closes a session.
    #[tool(
        description = "Close a session; its sandbox and files are removed. Returns {sessionId, closed: true}.",
        output_schema = schema_for_output::<SessionClosed>()
    )]
    async fn close_session(
        &self,
        Parameters(p): Parameters<params::CloseSession>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = self.caller(&context);
        match self.state.api.close(&caller, &p.session_id).await {
            Ok(()) => {
                self.state.defaults.lock().await.retain(|_, id| *id != p.session_id);
                Ok(render::reply(&SessionClosed::new(p.session_id)))
            }
            Err(error) => Ok(render::error(error.to_string())),
        }
    }

    /// Lists the caller's sessions.
    #[tool(
        description = "List your open sessions as JSON, the reply of session.list: {count, sessions: [{sessionId, \
                       language, state, executionCount, idleMinutes, capabilities, ...}]}.",
        output_schema = schema_for_output::<SessionList>()
    )]
    async fn list_sessions(&self, context: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        Ok(render::reply(&SessionList::from(self.state.api.list(&self.caller(&context)))))
    }

    /// Starts a background process.
    #[tool(
        description = "Start a program in the background (a dev server, a watcher, a long build, an interactive \
                       shell with pty) and return {pid} at once; it runs until it ends or its session closes. Read \
                       what it prints with read_process_output, feed it with write_process_input, stop it with \
                       kill_process. Uses this connection's python session unless session_id or language names \
                       another (container sessions only).",
        output_schema = schema_for_output::<ProcessStarted>()
    )]
    async fn start_process(
        &self,
        Parameters(p): Parameters<params::StartProcess>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = self.caller(&context);
        let cwd = match p.cwd.as_deref().map(WorkspacePath::new).transpose() {
            Ok(cwd) => cwd.unwrap_or_else(WorkspacePath::root),
            Err(error) => return Ok(render::error(error.to_string())),
        };
        let (session_id, _) = match self
            .resolve(&caller, p.target.session_id, p.target.language.as_deref(), Some(Language::Python))
            .await
        {
            Ok(resolved) => resolved,
            Err(message) => return Ok(render::error(message)),
        };
        let command = ProcessCommand { command_name: p.command_name, args: p.args, env: p.env, cwd };
        let spec = ProcessSpec { command, pty: p.pty, timeout_ms: p.timeout_ms };
        Ok(match self.state.api.start_process(&caller, &session_id, spec).await {
            Ok(info) => render::reply(&ProcessStarted { pid: info.pid }),
            Err(error) => render::error(error.to_string()),
        })
    }

    /// Reads a background process's output.
    #[tool(
        description = "Read what a background process wrote from fromOffset on (at most 256 KiB per call; pass the \
                       answer's nextOffset to read on), whether it still runs, and its exit once it ended. waitMs \
                       waits for something new.",
        output_schema = schema_for_output::<ProcessOutputRead>()
    )]
    async fn read_process_output(
        &self,
        Parameters(p): Parameters<params::ReadProcessOutput>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = self.caller(&context);
        let api = &self.state.api;
        let mut attachment = match api.attach_process(&caller, &p.session_id, p.pid, p.from_offset).await {
            Ok(attachment) => attachment,
            Err(error) => return Ok(render::error(error.to_string())),
        };
        let wait = Duration::from_millis(p.wait_ms.min(MAX_READ_WAIT_MS));
        let mut read = ProcessOutputRead {
            pid: p.pid,
            state: ProcessState::Running,
            chunks: Vec::new(),
            next_offset: p.from_offset,
            dropped: attachment.dropped_at_attach(),
            exit: None,
        };
        let mut bytes = 0;
        let mut first = if wait.is_zero() {
            attachment.try_next()
        } else {
            tokio::time::timeout(wait, attachment.next()).await.ok().flatten()
        };
        while let Some(event) =
            first.take().or_else(|| (bytes < READ_OUTPUT_BYTES).then(|| attachment.try_next()).flatten())
        {
            match event {
                ProcessEvent::Output(chunk) => {
                    bytes += chunk.data.len();
                    read.dropped += chunk.dropped;
                    read.next_offset = read.next_offset.max(chunk.offset + chunk.data.len() as u64);
                    read.chunks.push(ProcessChunk { stream: chunk.stream, offset: chunk.offset, data: chunk.data });
                }
                ProcessEvent::Exit(exit) => {
                    read.exit = Some(exit);
                    break;
                }
            }
        }
        let listed = api.list_processes(&caller, &p.session_id).unwrap_or_default();
        if let Some(info) = listed.iter().find(|info| info.pid == p.pid) {
            read.state = info.state;
        }
        Ok(render::reply(&read))
    }

    /// Writes to a background process's stdin.
    #[tool(description = "Write text to a background process's stdin (its terminal's input with pty: \\r is \
                          Enter, \\u0003 Ctrl-C), and optionally close its stdin after it.")]
    async fn write_process_input(
        &self,
        Parameters(p): Parameters<params::WriteProcessInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = self.caller(&context);
        let api = &self.state.api;
        let mut done = Ok(());
        if !p.data.is_empty() {
            let action = ProcessAction::Write(p.data.into_bytes());
            done = api.control_process(&caller, "process.write", &p.session_id, p.pid, action).await;
        }
        if done.is_ok() && p.close_stdin {
            done = api
                .control_process(&caller, "process.closeStdin", &p.session_id, p.pid, ProcessAction::CloseStdin)
                .await;
        }
        Ok(match done {
            Ok(()) => render::reply(&ProcessDone::default()),
            Err(error) => render::error(error.to_string()),
        })
    }

    /// Signals a background process.
    #[tool(description = "Stop a background process: send it a signal (KILL by default; TERM, INT, HUP) and \
                          return its exit once it ended (within 5 s).")]
    async fn kill_process(
        &self,
        Parameters(p): Parameters<params::KillProcess>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = self.caller(&context);
        let api = &self.state.api;
        let signal = ProcessAction::Signal(p.signal.unwrap_or(ProcessSignal::Kill));
        if let Err(error) = api.control_process(&caller, "process.signal", &p.session_id, p.pid, signal).await {
            return Ok(render::error(error.to_string()));
        }
        Ok(match api.wait_process(&caller, &p.session_id, p.pid, KILL_WAIT).await {
            Ok(exit) => render::reply(&exit),
            Err(error) => render::error(error.to_string()),
        })
    }
}

#[tool_router(router = lifecycle_router)]
impl McpTools {
    /// Snapshots a session.
    #[tool(
        description = "Keep a session's workspace (its files and the packages it installed) as a snapshot and \
                       return {snapshotId, bytes, ...}; create_session with from_snapshot starts a session with \
                       those files. Snapshots are yours, survive restarts, and count against your quota.",
        output_schema = schema_for_output::<SnapshotInfo>()
    )]
    async fn snapshot_session(
        &self,
        Parameters(p): Parameters<params::SnapshotSession>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = self.caller(&context);
        Ok(match self.state.api.snapshot(&caller, &p.session_id).await {
            Ok(info) => render::reply(&info),
            Err(error) => render::error(error.to_string()),
        })
    }

    /// Forks a session.
    #[tool(
        description = "Copy a session into a new one (closed with this MCP session) and return it like \
                       create_session, plus stateReset: false when variables and state were copied too (Deno), \
                       true when only the files and installed packages were.",
        output_schema = schema_for_output::<SessionForked>()
    )]
    async fn fork_session(
        &self,
        Parameters(p): Parameters<params::ForkSession>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = self.caller(&context);
        Ok(match self.state.api.fork(&caller, &p.session_id).await {
            Ok(forked) => {
                self.remember(&caller, &forked.info.session_id);
                let session = SessionCreated::from(&forked.info);
                render::reply(&SessionForked { session, forked_from: p.session_id, state_reset: forked.state_reset })
            }
            Err(error) => render::error(error.to_string()),
        })
    }
}

/// Most output bytes one `read_process_output` call returns.
pub const READ_OUTPUT_BYTES: usize = 256 * 1024;
/// Longest `waitMs` of `read_process_output`.
const MAX_READ_WAIT_MS: u64 = 30_000;
/// How long `kill_process` waits for the exit.
const KILL_WAIT: Duration = Duration::from_secs(5);

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpTools {
    /// The default handshake, after keeping the place the `initialize` request took under
    /// the MCP session caps (see [`transport`]) for as long as this session lives.
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let place = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<SessionPlace>())
            .and_then(SessionPlace::take);
        if place.is_some() {
            *self.state.place.lock().unwrap_or_else(|p| p.into_inner()) = place;
        }
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    /// Runs a tool call in a span of its own (`mcp.tool`), whose parent is the client's
    /// span when the HTTP request carried a `traceparent`: rmcp runs calls in its
    /// session's task, outside the span of the HTTP request that brought them.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        let tool: String = request.name.chars().take(64).collect();
        let span = tracing::info_span!("mcp.tool", "rpc.system" = "mcp", "rpc.method" = "tools/call", tool = %tool);
        let parts = context.extensions.get::<axum::http::request::Parts>();
        let header =
            |name: &str| parts.and_then(|p| p.headers.get(name)).and_then(|v| v.to_str().ok()).map(str::to_owned);
        crate::telemetry::adopt(&span, header("traceparent").as_deref(), header("tracestate").as_deref());
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        tracing::Instrument::instrument(self.tool_router.call(call), span).await
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("codebeaker", env!("CARGO_PKG_VERSION")))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .with_instructions(INSTRUCTIONS.to_owned())
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(PROTOCOL_VERSIONS)
    }
}

/// A language by name or alias; the error names the choices.
fn parse_language(name: &str) -> Result<Language, String> {
    Language::from_str(name).map_err(|error| error.to_string())
}
