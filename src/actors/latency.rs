//! The propagation latencies the dashboard shows: a bounded ring of recent samples that the
//! `BlockWriter`s push into and `Control` reads.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use crate::domain::AccountId;

/// How many samples the ring keeps.
const LATENCY_RING: usize = 512;

/// One measured propagation: from the trigger (ping received, poll tick, manual sync) of a
/// source account's sync to the last block write it caused on one target calendar. When the
/// changes of several sources reach one writer before its queue drains, each source gets a
/// sample of its own with its own writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencySample {
    pub at: DateTime<Utc>,
    /// The source account whose change was propagated (the target's own id when unknown).
    pub account: AccountId,
    /// The target calendar whose writer measured it.
    pub target: AccountId,
    pub latency: Duration,
    /// Block writes for this source's changes the target's writer made between the trigger
    /// and the drained queue.
    pub writes: u32,
    /// The sync that queued the last of those writes, so the samples of one change on every
    /// target can be put together (the dashboard's Live page).
    pub sync_id: Option<String>,
}

/// The shared ring of recent latency samples; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LatencyRing(Arc<Mutex<VecDeque<LatencySample>>>);

impl LatencyRing {
    pub fn push(&self, sample: LatencySample) {
        // A std-like mutex held for a push or a copy only, never across an await.
        let mut ring = self.0.lock();
        if ring.len() == LATENCY_RING {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// Every sample, oldest first.
    pub fn snapshot(&self) -> Vec<LatencySample> {
        self.0.lock().iter().cloned().collect()
    }
}
