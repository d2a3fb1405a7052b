//! `console.*` output: formatted in JS (`js/inspect.js`), captured here per command.

use codebeaker::OutputStream;
use deno_core::OpState;

use super::CommandOutput;

/// Appends text to the running command's output (stderr when `is_err`). The collector
/// caps it, marks truncation and streams it; outside a command it is dropped.
#[deno_core::op2(fast)]
pub(crate) fn op_cb_print(state: &mut OpState, #[string] text: &str, is_err: bool) {
    if let Some(collector) = state.borrow_mut::<CommandOutput>().0.as_mut() {
        let stream = if is_err { OutputStream::Stderr } else { OutputStream::Stdout };
        collector.push(stream, text.as_bytes());
    }
}
