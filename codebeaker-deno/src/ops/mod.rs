//! The ops the JS side may call, and the per-runtime state they share through `OpState`.
//!
//! These are the only native functions user code can reach, and only through the wrappers
//! in `js/`: the bootstrap captures them and then removes `Deno.core` (see `js/main.js`).
//! Every op that touches the host checks the session's [`Permissions`] first. Ops never
//! panic: a panic inside an op aborts the whole process.

mod budget;
mod console;
mod env;
mod fs;
mod net;
mod url;

use std::collections::HashMap;
use std::rc::Rc;

use codebeaker::workspace::WorkspaceQuota;
use codebeaker::{NetPolicy, OutputCollector, SessionLimits};
use deno_core::{v8, OpState};
use deno_error::JsErrorBox;
use serde::{Deserialize, Serialize};

pub(crate) use budget::BufferBudget;

use crate::permissions::{Denied, Permissions};

/// The part of the operator's [`SessionLimits`] the ops enforce; plain data, so it can
/// travel with the session's setup to wherever the runtime runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OpLimits {
    /// The session's `memoryLimitMB` (sizes the op-buffer budget).
    pub memory_mb: u64,
    /// The workspace's quota, in bytes.
    pub workspace_bytes: u64,
    /// Where `fetch` may connect.
    pub net: NetPolicy,
}

impl From<&SessionLimits> for OpLimits {
    fn from(limits: &SessionLimits) -> Self {
        OpLimits { memory_mb: limits.memory_mb, workspace_bytes: limits.workspace_bytes, net: limits.net.clone() }
    }
}

/// What a session gave its runtime: permissions, its own environment map, its HTTP client,
/// and the budgets its ops charge.
pub(crate) struct SessionContext {
    pub permissions: Rc<Permissions>,
    pub env: HashMap<String, String>,
    /// Created on first `fetch`, on the runtime's own thread (a client's connections live
    /// on the tokio runtime that opened them).
    pub http: Option<reqwest::Client>,
    /// Memory the ops may hold outside the JS heap.
    pub buffers: BufferBudget,
    /// The disk quota of `/workspace`, shared with the host's file commands through the
    /// directory itself.
    pub quota: WorkspaceQuota,
    /// The network rules of `fetch`.
    pub net: net::NetState,
}

impl SessionContext {
    /// The context of a session with `permissions` under `limits`.
    pub fn new(permissions: Rc<Permissions>, limits: &OpLimits) -> Self {
        let quota = WorkspaceQuota::new(permissions.workspace(), limits.workspace_bytes);
        let net = net::NetState::new(&permissions, &limits.net);
        SessionContext {
            permissions,
            env: HashMap::new(),
            http: None,
            buffers: BufferBudget::for_memory_limit(limits.memory_mb),
            quota,
            net,
        }
    }
}

/// Output of the command that runs now (`None` between commands: output is dropped).
#[derive(Default)]
pub(crate) struct CommandOutput(pub Option<OutputCollector>);

/// JS functions the bootstrap hands to Rust.
#[derive(Default)]
pub(crate) struct Hooks {
    /// Cancels every timer user code started (after a timeout, so nothing keeps running).
    pub cancel_timers: Option<v8::Global<v8::Function>>,
}

/// The session context, or a clear error when the runtime is still a pool spare.
pub(crate) fn session(state: &OpState) -> Result<&SessionContext, JsErrorBox> {
    state.try_borrow::<SessionContext>().ok_or_else(|| JsErrorBox::generic("this runtime has no session yet"))
}

/// Same as [`session`], mutable.
pub(crate) fn session_mut(state: &mut OpState) -> Result<&mut SessionContext, JsErrorBox> {
    state.try_borrow_mut::<SessionContext>().ok_or_else(|| JsErrorBox::generic("this runtime has no session yet"))
}

impl From<Denied> for JsErrorBox {
    fn from(denied: Denied) -> Self {
        JsErrorBox::new("PermissionDenied", denied.0)
    }
}

/// Registers the bootstrap's hooks; only the first call counts, so code that somehow got
/// hold of this op could not replace them.
#[deno_core::op2]
fn op_cb_register_hooks(state: &mut OpState, #[scoped] cancel_timers: v8::Global<v8::Function>) {
    let hooks = state.borrow_mut::<Hooks>();
    if hooks.cancel_timers.is_none() {
        hooks.cancel_timers = Some(cancel_timers);
    }
}

/// Four words from the operating system's generator: the seed of one session's
/// `Math.random` (never all zero, which xoshiro cannot leave).
#[deno_core::op2]
#[serde]
fn op_cb_random_seed() -> Result<Vec<u32>, JsErrorBox> {
    let mut seed = [0u32; 4];
    let len = std::mem::size_of_val(&seed);
    // SAFETY: getrandom writes at most `len` bytes into the array we own.
    let filled = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), len, 0) };
    if usize::try_from(filled).ok() != Some(len) {
        return Err(JsErrorBox::generic(format!("cannot seed Math.random: {}", std::io::Error::last_os_error())));
    }
    if seed == [0; 4] {
        seed[0] = 1;
    }
    Ok(seed.to_vec())
}

deno_core::extension!(
    codebeaker_deno,
    ops = [
        op_cb_register_hooks,
        op_cb_random_seed,
        console::op_cb_print,
        fs::op_cb_read_file,
        fs::op_cb_read_text_file,
        fs::op_cb_write_file,
        fs::op_cb_read_dir,
        fs::op_cb_mkdir,
        fs::op_cb_remove,
        fs::op_cb_stat,
        env::op_cb_env_get,
        env::op_cb_env_set,
        env::op_cb_env_delete,
        env::op_cb_env_object,
        net::op_cb_fetch,
        url::op_cb_url_parse,
    ],
    state = |state| {
        state.put(CommandOutput::default());
        state.put(Hooks::default());
    },
);

/// Specifier of the bootstrap module.
const BOOTSTRAP: &str = "ext:codebeaker_deno/bootstrap.js";

/// The bootstrap source: the parts of `src/js/` in order (see `js/prelude.js`).
const BOOTSTRAP_SOURCE: &str = concat!(
    include_str!("../js/prelude.js"),
    include_str!("../js/inspect.js"),
    include_str!("../js/console.js"),
    include_str!("../js/web.js"),
    include_str!("../js/fetch.js"),
    include_str!("../js/deno.js"),
    include_str!("../js/main.js"),
);

/// The extension every runtime is built with: the ops above and the bootstrap module.
pub(crate) fn extension() -> deno_core::Extension {
    static SOURCE: std::sync::OnceLock<std::sync::Arc<str>> = std::sync::OnceLock::new();
    let source = SOURCE.get_or_init(|| std::sync::Arc::from(BOOTSTRAP_SOURCE)).clone();
    let mut extension = codebeaker_deno::init();
    extension.esm_files =
        std::borrow::Cow::Owned(vec![deno_core::ExtensionFileSource::new_computed(BOOTSTRAP, source)]);
    extension.esm_entry_point = Some(BOOTSTRAP);
    extension
}
