//! [`ExecutionStream`]: a command's output as a `Stream` of chunks, then its outcome.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backend::OutputChunk;
use crate::error::{Error, Result};
use crate::result::CommandOutcome;

/// One event of a streamed command.
// The outcome is large but comes once per command; boxing it would only make every
// caller's match clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ExecEvent {
    /// Output written while the command runs.
    Output(OutputChunk),
    /// The command's outcome; always the last event. It carries the complete (possibly
    /// truncated) output again.
    Finished(Result<CommandOutcome>),
}

/// The events of one streamed command. See [`crate::SessionManager::execute_stream`].
pub struct ExecutionStream {
    chunks: mpsc::UnboundedReceiver<OutputChunk>,
    task: Option<JoinHandle<Result<CommandOutcome>>>,
    outcome: Option<Result<CommandOutcome>>,
}

impl ExecutionStream {
    pub(crate) fn new(chunks: mpsc::UnboundedReceiver<OutputChunk>, task: JoinHandle<Result<CommandOutcome>>) -> Self {
        ExecutionStream { chunks, task: Some(task), outcome: None }
    }
}

impl Stream for ExecutionStream {
    type Item = ExecEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ExecEvent>> {
        let this = &mut *self;
        if let Some(task) = this.task.as_mut() {
            if let Poll::Ready(joined) = Pin::new(task).poll(cx) {
                this.task = None;
                this.outcome = Some(
                    joined.unwrap_or_else(|e| Err(Error::internal(format!("command task failed: {e}")).with_source(e))),
                );
            }
        }
        match this.outcome.take() {
            // Still running: pass chunks on as they come.
            None if this.task.is_some() => match this.chunks.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => Poll::Ready(Some(ExecEvent::Output(chunk))),
                _ => Poll::Pending,
            },
            // Finished: everything the backend sent is queued already; drain it first so
            // no chunk comes after the outcome.
            Some(outcome) => match this.chunks.try_recv() {
                Ok(chunk) => {
                    this.outcome = Some(outcome);
                    Poll::Ready(Some(ExecEvent::Output(chunk)))
                }
                Err(_) => Poll::Ready(Some(ExecEvent::Finished(outcome))),
            },
            None => Poll::Ready(None),
        }
    }
}
