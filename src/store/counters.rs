//! Process-wide counters of the store's work that the scale targets are stated in: write
//! transactions, statements, audit (sync-log) rows, reads of the whole account list, and
//! the deadlocks PostgreSQL broke. Each is also a Prometheus counter (`src/metrics.rs`), so
//! the benchmark reads them from `/metrics` of a running `serve`, and tests read them in
//! process through [`Store::counters`].
//!
//! They are process-wide rather than per [`Store`] because the statements that count them
//! (an audit row inside a caller's transaction, say) do not all have the store at hand.
//! Tests that compare them run one test per process (nextest), so deltas are their own.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Store;
use crate::metrics::{
    DB_ACCOUNT_LIST_READS, DB_AUDIT_ROWS, DB_DEADLOCKS, DB_STATEMENTS, DB_WRITE_TRANSACTIONS,
};

static WRITE_TRANSACTIONS: AtomicU64 = AtomicU64::new(0);
static STATEMENTS: AtomicU64 = AtomicU64::new(0);
static AUDIT_ROWS: AtomicU64 = AtomicU64::new(0);
static ACCOUNT_LIST_READS: AtomicU64 = AtomicU64::new(0);
static DEADLOCKS: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the counters; subtract two to get what happened in between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounters {
    /// Transactions that may write: every `BEGIN IMMEDIATE`/`BEGIN` of a write, and every
    /// write statement run on its own (autocommit).
    pub write_transactions: u64,
    /// Statements sent to the database (reads and writes; `BEGIN` and `COMMIT` not
    /// counted). On PostgreSQL each is a round trip.
    pub statements: u64,
    /// Sync-log (audit) rows inserted.
    pub audit_rows: u64,
    /// Reads of every account row (`Store::list_accounts`).
    pub account_list_reads: u64,
    /// Transactions PostgreSQL aborted to break a deadlock.
    pub deadlocks: u64,
}

impl std::ops::Sub for StoreCounters {
    type Output = StoreCounters;

    fn sub(self, earlier: StoreCounters) -> StoreCounters {
        StoreCounters {
            write_transactions: self.write_transactions - earlier.write_transactions,
            statements: self.statements - earlier.statements,
            audit_rows: self.audit_rows - earlier.audit_rows,
            account_list_reads: self.account_list_reads - earlier.account_list_reads,
            deadlocks: self.deadlocks - earlier.deadlocks,
        }
    }
}

impl Store {
    /// The counters as they are now (process-wide; see the module docs).
    pub fn counters(&self) -> StoreCounters {
        StoreCounters {
            write_transactions: WRITE_TRANSACTIONS.load(Ordering::Relaxed),
            statements: STATEMENTS.load(Ordering::Relaxed),
            audit_rows: AUDIT_ROWS.load(Ordering::Relaxed),
            account_list_reads: ACCOUNT_LIST_READS.load(Ordering::Relaxed),
            deadlocks: DEADLOCKS.load(Ordering::Relaxed),
        }
    }
}

pub(super) fn write_transaction() {
    WRITE_TRANSACTIONS.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(DB_WRITE_TRANSACTIONS).increment(1);
}

pub(super) fn statement() {
    STATEMENTS.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(DB_STATEMENTS).increment(1);
}

pub(super) fn audit_rows(n: usize) {
    let n = u64::try_from(n).unwrap_or(u64::MAX);
    AUDIT_ROWS.fetch_add(n, Ordering::Relaxed);
    metrics::counter!(DB_AUDIT_ROWS).increment(n);
}

pub(super) fn account_list_read() {
    ACCOUNT_LIST_READS.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(DB_ACCOUNT_LIST_READS).increment(1);
}

pub(super) fn deadlock() {
    DEADLOCKS.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(DB_DEADLOCKS).increment(1);
}
