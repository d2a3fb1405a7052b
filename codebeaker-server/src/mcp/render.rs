//! Command outcomes as MCP tool results: text an agent reads, rich outputs as image
//! content, and every failure as a tool error (`isError: true`) carrying the same clear
//! message the JSON-RPC envelope's `error` has. Session tools answer with the JSON-RPC
//! method's own typed reply ([`reply`]).

use base64::Engine as _;
use codebeaker::result::CodeResult;
use codebeaker::{CommandOutcome, CommandResult, RichOutput};
use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;

/// Said when a command lost the session's interpreter state (extension `stateReset`).
const STATE_RESET: &str =
    "Note: the session's interpreter state was reset during this command (variables and imports are lost; workspace files are kept).";

/// A tool error with `message`.
pub(crate) fn error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// A successful tool result carrying a method's typed reply (see [`crate::protocol`]):
/// the same JSON the JSON-RPC method answers, as structured content and as its text.
pub(crate) fn reply(reply: &impl Serialize) -> CallToolResult {
    match serde_json::to_value(reply) {
        Ok(value) => CallToolResult::structured(value),
        Err(failure) => error(format!("Internal error: cannot serialize the reply: {failure}")),
    }
}

/// The tool result of a command's outcome: text and images for the agent (`note`, e.g.
/// that a new session was started, first when given), and the `session.execute` envelope
/// itself as structured content.
pub(crate) fn outcome(outcome: &CommandOutcome, note: Option<String>) -> CallToolResult {
    let mut result = blocks(outcome, note);
    result.structured_content = serde_json::to_value(outcome).ok();
    result
}

fn blocks(outcome: &CommandOutcome, note: Option<String>) -> CallToolResult {
    let mut blocks: Vec<ContentBlock> = note.into_iter().map(ContentBlock::text).collect();
    match &outcome.result {
        Some(CommandResult::ExecuteCode(code)) => code_blocks(code, &mut blocks),
        Some(CommandResult::ExecuteShell(shell)) => {
            let mut text = format!("exit code: {}", shell.exit_code);
            if shell.timed_out {
                text.push_str(" (killed: timed out)");
            }
            if shell.truncated {
                text.push_str(" (output truncated)");
            }
            for (name, stream) in [("stdout", &shell.stdout), ("stderr", &shell.stderr)] {
                if !stream.is_empty() {
                    text.push_str(&format!("\n--- {name} ---\n{stream}"));
                }
            }
            blocks.push(ContentBlock::text(text));
        }
        Some(CommandResult::ReadFile(read)) => blocks.push(ContentBlock::text(read.content.clone())),
        Some(CommandResult::WriteFile(write)) => {
            blocks.push(ContentBlock::text(format!("wrote {} bytes to {}", write.bytes, write.path)))
        }
        Some(other) => blocks.push(ContentBlock::text(other.to_json().to_string())),
        None => {}
    }
    match &outcome.error {
        Some(error) if !outcome.success => {
            // The message first: it is what an agent must read.
            blocks.insert(0, ContentBlock::text(error.to_string()));
            CallToolResult::error(blocks)
        }
        _ => {
            if blocks.is_empty() {
                blocks.push(ContentBlock::text("(no output)"));
            }
            CallToolResult::success(blocks)
        }
    }
}

fn code_blocks(code: &CodeResult, blocks: &mut Vec<ContentBlock>) {
    if !code.output.is_empty() {
        blocks.push(ContentBlock::text(code.output.clone()));
    }
    if code.truncated {
        blocks.push(ContentBlock::text("(output truncated at the server's output limit)"));
    }
    for output in &code.outputs {
        blocks.push(rich(output));
    }
    if code.state_reset {
        blocks.push(ContentBlock::text(STATE_RESET));
    }
}

/// Images become MCP image content (base64 data); everything else text.
fn rich(output: &RichOutput) -> ContentBlock {
    match output.mime.as_str() {
        // SVG travels as text on the wire; MCP images are base64.
        "image/svg+xml" => {
            ContentBlock::image(base64::engine::general_purpose::STANDARD.encode(&output.data), output.mime.clone())
        }
        mime if mime.starts_with("image/") => ContentBlock::image(output.data.clone(), output.mime.clone()),
        _ => ContentBlock::text(output.data.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codebeaker::Error;

    #[test]
    fn failures_are_tool_errors_with_the_message_first() {
        let code =
            CodeResult { output: "partial".into(), error: Some("ReferenceError: x".into()), ..CodeResult::default() };
        let result = outcome(&CommandOutcome::from_result(Ok(CommandResult::ExecuteCode(code)), 1), None);
        assert_eq!(result.is_error, Some(true));
        let text = serde_json::to_value(&result.content).unwrap();
        assert_eq!(text[0]["text"], "ReferenceError: x");
        assert_eq!(text[1]["text"], "partial");
        let missing = CommandOutcome::from_result(Err(Error::not_found("/workspace/a")), 1);
        let result = outcome(&missing, None);
        assert_eq!(result.is_error, Some(true));
        assert_eq!(serde_json::to_value(&result.content).unwrap()[0]["text"], "File not found: /workspace/a");
        assert_eq!(result.structured_content, Some(missing.to_json()), "the envelope, as session.execute answers");
    }

    #[test]
    fn images_become_image_content() {
        let code = CodeResult {
            outputs: vec![RichOutput { mime: "image/png".into(), data: "iVBORw0KGgo=".into() }],
            ..CodeResult::default()
        };
        let result = outcome(&CommandOutcome::from_result(Ok(CommandResult::ExecuteCode(code)), 1), None);
        let json = serde_json::to_value(&result.content).unwrap();
        assert_eq!(json[0]["type"], "image");
        assert_eq!(json[0]["mimeType"], "image/png");
        assert_eq!(json[0]["data"], "iVBORw0KGgo=");
    }
}
