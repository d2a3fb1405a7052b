//! One command's way through the manager: its turn in the session's queue, its checked
//! timeout, the sandbox call under the manager's backstop, and the outcome reported to
//! the observer. Every command, on every backend, takes this path.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::session::Session;
use super::turns::Ticket;
use super::{ExecOptions, Inner};
use crate::backend::{ExecContext, OutputSink, Sandbox};
use crate::command::Command;
use crate::config::SessionConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::observer::CloseReason;
use crate::result::{CommandOutcome, CommandResult};

impl Inner {
    /// The command's timeout: the request's, else the session's, else the operator's
    /// default, checked by [`Policy::command_timeout`](crate::Policy::command_timeout).
    fn timeout_for(&self, config: &SessionConfig, requested: Option<Duration>) -> Result<Duration> {
        let policy = &self.config.policy;
        let timeout =
            requested.or_else(|| config.default_timeout()).unwrap_or_else(|| policy.default_command_timeout());
        policy.command_timeout("timeoutMs", timeout.as_millis().try_into().unwrap_or(u64::MAX))
    }

    /// One command, from its turn to its outcome. Runs in a task of its own (see
    /// [`SessionManager::execute_as`]): `abandoned` fires when the caller went away, which
    /// matters only while the command still waits for its turn.
    pub(super) async fn run(
        self: Arc<Self>,
        session: Arc<Session>,
        ticket: Ticket,
        command: Command,
        options: ExecOptions,
        abandoned: CancellationToken,
    ) -> Result<CommandOutcome> {
        let kind = command.kind();
        // The outcome's fields are recorded on the span when it ends (OpenTelemetry
        // attributes where traces are exported): never output or file content.
        let span = tracing::info_span!(
            "command",
            session = %session.id,
            kind,
            success = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            "codebeaker.usage.cpu_ms" = tracing::field::Empty,
            "codebeaker.usage.max_rss_kb" = tracing::field::Empty,
            "codebeaker.usage.output_bytes" = tracing::field::Empty,
            "codebeaker.usage.egress_refused" = tracing::field::Empty,
        );
        async move {
            tokio::select! {
                biased;
                _ = session.closing.cancelled() => return Err(Error::session_closed(session.id.to_string())),
                _ = abandoned.cancelled() => return Err(Error::internal("the caller went away")),
                _ = ticket.wait() => {}
            }
            if session.closing.is_cancelled() {
                return Err(Error::session_closed(session.id.to_string()));
            }
            let started = Instant::now();
            let (result, limit) = {
                let _busy = session.busy();
                let ready = self.unpaused(&session).await;
                match ready.and_then(|()| self.context(&session.config, options.timeout, options.output)) {
                    Ok(context) => {
                        let limit = context.timeout;
                        (self.dispatch(&session, command, context).await, Some(limit))
                    }
                    Err(error) => (Err(error), None),
                }
            };
            drop(ticket);
            let elapsed = started.elapsed();
            let outcome = match (result, limit) {
                (Err(error), _) if error.kind() == ErrorKind::SessionClosed => return Err(error),
                (result, Some(limit)) => CommandOutcome::from_run(result, elapsed_ms(started), limit),
                (result, None) => CommandOutcome::from_result(result, elapsed_ms(started)),
            };
            self.observe(|o| o.command_finished(&session.info(), kind, &outcome, elapsed));
            record_outcome(&tracing::Span::current(), &outcome);
            if let Some(error) = outcome.error.as_ref().filter(|e| e.kind() == ErrorKind::SandboxFailed) {
                // A dead sandbox cannot serve the session again: close it now, and say why.
                tracing::warn!(reason = %error, "sandbox failed; closing its session");
                if self.registry().remove(&session.id).is_some() {
                    self.retire(&session, CloseReason::Failed).await;
                }
            }
            tracing::debug!(success = outcome.success, duration_ms = outcome.duration_ms, "command finished");
            Ok(outcome)
        }
        .instrument(span)
        .await
    }

    async fn dispatch(&self, session: &Session, command: Command, context: ExecContext) -> Result<CommandResult> {
        tokio::select! {
            _ = session.closing.cancelled() => Err(Error::session_closed(session.id.to_string())),
            ran = guarded(session.sandbox.as_ref(), command, context, self.config.policy.stop_grace()) => ran,
        }
    }

    /// How a command runs: its checked timeout, the output limit, and where to stream.
    pub(super) fn context(
        &self,
        config: &SessionConfig,
        timeout: Option<Duration>,
        output: Option<OutputSink>,
    ) -> Result<ExecContext> {
        Ok(ExecContext { timeout: self.timeout_for(config, timeout)?, output_limit: self.config.output_limit, output })
    }
}

/// Runs a command with the manager's backstop: a sandbox that has not stopped the command
/// `grace` after its own timeout is taken for broken.
pub(super) async fn guarded(
    sandbox: &dyn Sandbox,
    command: Command,
    context: ExecContext,
    grace: Duration,
) -> Result<CommandResult> {
    let timeout = context.timeout;
    match tokio::time::timeout(timeout + grace, sandbox.execute(command, context)).await {
        Ok(result) => result,
        Err(_) => Err(Error::sandbox_failed(format!(
            "the sandbox did not stop the command within {} ms of its {} ms timeout",
            grace.as_millis(),
            timeout.as_millis()
        ))),
    }
}

/// Records how a command ended on its span: success, the error's kind, and its usage.
fn record_outcome(span: &tracing::Span, outcome: &CommandOutcome) {
    span.record("success", outcome.success);
    if let Some(error) = &outcome.error {
        span.record("error.type", error.kind().name());
    }
    if let Some(usage) = outcome.usage() {
        // As i64: exported, a u64 becomes a string attribute.
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        span.record("codebeaker.usage.cpu_ms", int(usage.cpu_ms));
        span.record("codebeaker.usage.max_rss_kb", int(usage.max_rss_kb));
        span.record("codebeaker.usage.output_bytes", int(usage.output_bytes));
        span.record("codebeaker.usage.egress_refused", int(usage.egress_refused));
    }
}

pub(super) fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}
