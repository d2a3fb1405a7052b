//! [`BufferBudget`]: the memory a session's ops may hold outside the JS heap at once
//! (file contents on their way to JS, `fetch` bodies), charged before it is allocated.
//!
//! The JS heap has its own limit (`memoryLimitMB`); without this budget, ops run in
//! parallel could each allocate a large buffer and together take the process down. A
//! request for more than is free fails at once with a `RangeError` that says so; the
//! session goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use deno_error::JsErrorBox;

const MIB: u64 = 1024 * 1024;
/// The smallest budget, whatever the memory limit (small sessions still read small files).
const MIN_BUDGET_BYTES: u64 = 16 * MIB;

/// The op-buffer budget of one session.
#[derive(Debug, Clone)]
pub(crate) struct BufferBudget {
    total: u64,
    free: Arc<AtomicU64>,
}

/// Bytes taken from a [`BufferBudget`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct BufferGrant {
    budget: BufferBudget,
    bytes: u64,
}

impl BufferBudget {
    /// The budget of a session with a heap limit of `memory_mb`: a quarter of it on top
    /// of the heap, at least 16 MiB.
    pub fn for_memory_limit(memory_mb: u64) -> Self {
        BufferBudget::new((memory_mb.saturating_mul(MIB) / 4).max(MIN_BUDGET_BYTES))
    }

    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Self {
        BufferBudget { total, free: Arc::new(AtomicU64::new(total)) }
    }

    /// Takes `bytes` for `what` (`reading /workspace/x`), or fails without waiting.
    pub fn take(&self, bytes: u64, what: &str) -> Result<BufferGrant, JsErrorBox> {
        let mut grant = BufferGrant { budget: self.clone(), bytes: 0 };
        grant.grow_to(bytes, what)?;
        Ok(grant)
    }

    fn try_take(&self, bytes: u64) -> bool {
        self.free.fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| free.checked_sub(bytes)).is_ok()
    }

    fn exhausted(&self, bytes: u64, what: &str) -> JsErrorBox {
        let free = self.free.load(Ordering::Acquire);
        JsErrorBox::range_error(format!(
            "memory limit exceeded: {what} needs {} outside the JS heap, and {} of the session's {} for file and network buffers (a quarter of memoryLimitMB) is free; read less at once or raise memoryLimitMB",
            shown(bytes),
            shown(free),
            shown(self.total)
        ))
    }
}

impl BufferGrant {
    /// Makes the grant `bytes` in all (no-op when it is that big already).
    pub fn grow_to(&mut self, bytes: u64, what: &str) -> Result<(), JsErrorBox> {
        let more = bytes.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        if !self.budget.try_take(more) {
            return Err(self.budget.exhausted(bytes, what));
        }
        self.bytes = bytes;
        Ok(())
    }

    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for BufferGrant {
    fn drop(&mut self) {
        self.budget.free.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

fn shown(bytes: u64) -> String {
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_beyond_what_is_free_fail_and_drops_give_back() {
        let budget = BufferBudget::new(10 * MIB);
        let first = budget.take(6 * MIB, "reading /workspace/a").unwrap();
        let err = budget.take(6 * MIB, "reading /workspace/b").unwrap_err().to_string();
        assert!(err.contains("reading /workspace/b needs 6.0 MiB") && err.contains("4.0 MiB"), "{err}");
        let mut second = budget.take(4 * MIB, "reading /workspace/c").unwrap();
        assert!(second.grow_to(5 * MIB, "reading /workspace/c").is_err());
        assert_eq!(second.bytes(), 4 * MIB);
        drop(first);
        second.grow_to(10 * MIB, "reading /workspace/c").unwrap();
        drop(second);
        assert_eq!(budget.take(10 * MIB, "x").unwrap().bytes(), 10 * MIB);
        assert_eq!(BufferBudget::for_memory_limit(512).total, 128 * MIB);
        assert_eq!(BufferBudget::for_memory_limit(32).total, MIN_BUDGET_BYTES);
    }
}
