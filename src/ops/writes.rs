//! The one Google write path of the operations: they queue their deletes and repairs in the
//! outbox, and the `BlockWriter`s apply them (token bucket, backoff, claims, metrics and
//! audit lines) exactly as they apply a sync's.
//!
//! [`BlockWrites`] is how an operation reaches the writers without depending on the actor
//! tree: `serve` passes its `Control` (the running writers), the command line passes
//! `actors::LocalWriters` (writers started for the occasion and stopped afterwards).

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::AccountId;

/// How long an operation waits for its writes by default.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

/// The writers of the calendars an operation queued work for.
#[async_trait]
pub trait BlockWrites: Send + Sync {
    /// The writer of `target` has due rows: wake it (starting it when needed).
    async fn wake(&self, target: AccountId);

    /// Waits until no row of `targets` is pending, or until `deadline` passes. Returns the
    /// targets that still have pending rows.
    async fn drained(&self, targets: &[AccountId], deadline: Duration) -> Vec<AccountId>;
}

/// Waits by looking at the outbox every 100 ms; shared by the implementations.
pub async fn wait_until_drained(
    store: &crate::store::Store,
    targets: &[AccountId],
    deadline: Duration,
) -> Vec<AccountId> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let mut waiting = Vec::new();
        for target in targets {
            match store.pending_count(Some(*target)).await {
                Ok(0) => {}
                Ok(_) | Err(_) => waiting.push(*target),
            }
        }
        if waiting.is_empty() || tokio::time::Instant::now() >= until {
            return waiting;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
