//! `BlockWriter`: one per target calendar. It makes Google match the outbox rows of its
//! calendar, one write at a time, under a token bucket, and records what it applied.
//!
//! Each `Converge` (from a sync's commit, from `Control`, from itself or its retry timer)
//! claims a batch of due rows ([`Store::claim_due`](crate::store::Store::claim_due): block
//! series and single blocks before occurrences) and, for each:
//! - a block never applied is inserted (a 409 means the id exists, deleted or not: it is
//!   fetched and restored with a patch); one applied before is patched (a 404 falls back to
//!   an insert); a row that wants no block is deleted (404/410 count as done);
//! - an occurrence of a block series is written only once its series is at Google: it waits
//!   while the series is pending, follows the series into exclusion, and is dropped when the
//!   series is gone. A 404/410 on an occurrence whose series was applied is a planning fact,
//!   not a retry for ever: the calendar's own sync is asked to look (a user deletion becomes
//!   an exclusion), and if the series is still missing after that, it is restored.
//!
//! The whole batch is then recorded in one transaction with its audit lines
//! ([`Store::record_writes`](crate::store::Store::record_writes)). A rate limit or a
//! transient failure schedules a retry with truncated exponential backoff and jitter
//! (Google's `Retry-After` wins); a permanent refusal marks the row failed; revoked consent
//! marks the account `needs_reauth` and the writer idles. A full batch casts `Converge` to
//! itself, so a stop can interleave; otherwise a timer is set for the next due row. When the
//! queue drains after a triggered `Converge`, the propagation latency (trigger → now) is
//! recorded.
//!
//! Lifecycle: `pre_start` loads the account and its client; `post_start` converges once, so
//! retries scheduled before a restart are picked up (unless the start's warm read found
//! nothing pending for the calendar: [`Services::writer_starts_idle`]). Every write is
//! idempotent (deterministic ids), so a crash between Google's answer and the store's
//! record costs nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::Rng as _;
use tokio::task::AbortHandle;

use super::calendar::{CalendarMsg, Trigger};
use super::latency::{LatencyRing, LatencySample};
use super::ActorNames;
use crate::coordinator::Standing;
use crate::domain::{AccountId, BlockId, EventId};
use crate::google::{AccountClient, Event, GoogleError};
use crate::metrics::{BLOCK_OPERATIONS, PENDING_OPERATIONS, PROPAGATION_LATENCY};
use crate::services::Services;
use crate::store::{
    log_kind, Account, BlockState, Claim, Fence, LogResult, NewLogEntry, OutboxRow, PendingOutlook,
    RowRole, StoreError, WriteOutcome, WriteReport,
};
use crate::sync::BlockBody;

/// Rows taken per batch.
const BATCH: u64 = 20;
/// First retry delay; doubled per attempt up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// Calendar usage limits reset slowly; retrying soon does not help.
const QUOTA_RETRY: Duration = Duration::from_secs(3600);
/// After a store failure, look again this soon.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// How long an occurrence waits after its series' next attempt before looking again.
const SERIES_WAIT: chrono::TimeDelta = chrono::TimeDelta::seconds(1);
/// Attempts on an occurrence whose applied series is missing at Google before the series
/// is restored (the calendar's own sync has had that long to record a user deletion).
const VANISHED_SERIES_PATIENCE: u32 = 2;
/// Attempts after which an occurrence Google keeps refusing is given up on (its series is
/// there, but Google has no such instance: the series' rule changed under it).
const VANISHED_OCCURRENCE_LIMIT: u32 = 6;

/// How long writes wait for the trigger of their source's change before they are not
/// measured (they came from a reconciliation or an operation, which has none).
const UNCLAIMED_WRITES: Duration = Duration::from_secs(60);

/// The writes made for one source's changes since the writer last drained.
struct SourceWrites {
    count: u32,
    /// The sync that queued the latest of them.
    sync_id: Option<String>,
    first: Instant,
}

/// Everything a `BlockWriter` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterMsg {
    /// Look at the due rows. `trigger` is when the change that queued them was noticed
    /// (for the latency measurement), `source` the account it came from.
    Converge {
        trigger: Option<Instant>,
        source: Option<AccountId>,
    },
}

impl WriterMsg {
    /// A `Converge` with no latency to measure.
    pub fn converge() -> Self {
        Self::Converge {
            trigger: None,
            source: None,
        }
    }
}

/// Start-up input.
#[derive(Clone)]
pub struct WriterArgs {
    pub services: Services,
    pub names: ActorNames,
    pub account: AccountId,
    pub latency: LatencyRing,
}

pub struct BlockWriter;

pub struct WriterState {
    services: Services,
    names: ActorNames,
    account: Account,
    client: AccountClient,
    latency: LatencyRing,
    bucket: TokenBucket,
    timer: Option<AbortHandle>,
    /// No write before this instant (a rate limit or quota answer applies to the calendar).
    paused_until: Option<Instant>,
    /// Per source account (`None`: a trigger that named none), the earliest trigger whose
    /// writes are not yet all applied.
    waiting_since: HashMap<Option<AccountId>, Instant>,
    /// Writes made since the first of `waiting_since`, per source account of the row: how
    /// many, the sync id of the latest, and when the first was made.
    writes: HashMap<AccountId, SourceWrites>,
    /// Consent was revoked: nothing more to do until the account is reconnected.
    halted: bool,
}

#[ractor::async_trait]
impl Actor for BlockWriter {
    type Msg = WriterMsg;
    type State = WriterState;
    type Arguments = WriterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: WriterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let account = args.services.account(args.account).await?;
        let client = args.services.account_client(args.account).await?;
        let rate = args.services.settings.sync.writes_per_second;
        Ok(WriterState {
            services: args.services,
            names: args.names,
            account,
            client,
            latency: args.latency,
            bucket: TokenBucket::new(rate),
            timer: None,
            paused_until: None,
            waiting_since: HashMap::new(),
            writes: HashMap::new(),
            halted: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if state.services.writer_starts_idle(state.account.id) {
            // The start read the outbox moments ago and found nothing for this calendar;
            // a sync queueing work since wakes this writer.
            state.set_gauge(0);
            return Ok(());
        }
        let _ = myself.cast(WriterMsg::converge());
        Ok(())
    }

    #[tracing::instrument(name = "writer", skip_all, fields(account_id = %state.account.id))]
    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let WriterMsg::Converge { trigger, source } = msg;
        if let Some(at) = trigger {
            let earliest = state.waiting_since.entry(source).or_insert(at);
            *earliest = (*earliest).min(at);
        }
        state.converge(&myself).await;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        Ok(())
    }
}

/// What the batch loop does after one row.
enum Next {
    /// Go on with the next row.
    Continue,
    /// Stop the batch: the calendar is rate limited for this long.
    Pause(Duration),
    /// Consent revoked: stop writing.
    Halt,
}

/// One row's result: what to record, one audit line, what the loop does next.
struct Applied {
    outcome: WriteOutcome,
    audit: Option<NewLogEntry>,
    next: Next,
    /// A Google write was made (for the latency sample).
    wrote: bool,
}

impl Applied {
    fn quiet(outcome: WriteOutcome) -> Self {
        Self {
            outcome,
            audit: None,
            next: Next::Continue,
            wrote: false,
        }
    }
}

impl WriterState {
    fn claim(&self) -> Claim {
        Claim {
            owner: self.services.writer_id.to_string(),
            until: crate::store::now() + super::sync_job::CLAIM_TTL,
        }
    }

    async fn converge(&mut self, myself: &ActorRef<WriterMsg>) {
        if self.halted {
            return;
        }
        if let Some(until) = self.paused_until {
            let now = Instant::now();
            if until > now {
                self.schedule(myself, until - now);
                return;
            }
            self.paused_until = None;
        }
        let store = self.services.store.clone();
        let target = self.account.id;
        let fence = match self.services.replica.standing(target) {
            Standing::Sole => None,
            Standing::Owner(fence) => Some(fence),
            Standing::Elsewhere => {
                tracing::debug!("not converging: another replica owns this calendar");
                return;
            }
        };
        let rows = match store
            .claim_due_fenced(target, &self.claim(), BATCH, fence.as_ref())
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox; retrying");
                self.schedule(myself, STORE_RETRY);
                return;
            }
        };
        let full_batch = rows.len() as u64 == BATCH;
        let stopped = self.write_batch(myself, rows, fence.as_ref()).await;
        // One look at what is left serves the gauge and the next pass.
        let outlook = store.pending_outlook(target).await;
        if let Ok(outlook) = &outlook {
            self.set_gauge(outlook.count);
        }
        if stopped {
            return;
        }
        if full_batch {
            let _ = myself.cast(WriterMsg::converge());
            return;
        }
        self.schedule_next(myself, outlook);
    }

    /// Writes the claimed rows in order and records them in one transaction (under the
    /// target's lease, `fence`, when there are several replicas). Returns whether the batch
    /// stopped early (paused, halted or out of tokens: a timer is set; or the lease ran out:
    /// the rest is left to the next owner).
    async fn write_batch(
        &mut self,
        myself: &ActorRef<WriterMsg>,
        rows: Vec<OutboxRow>,
        fence: Option<&Fence>,
    ) -> bool {
        let mut series = self.series_of(&rows).await;
        let mut reports = Vec::with_capacity(rows.len());
        let mut audit = Vec::new();
        let mut stopped = false;
        for row in rows {
            if fence.is_some() && !self.services.replica.owns(self.account.id) {
                // The lease's local deadline passed (a pause, a slow renewal): no write may
                // start that the next owner could be making too.
                tracing::info!("lease ran out; leaving the rest of the batch to the next owner");
                stopped = true;
                break;
            }
            if let Some(wait) = self.bucket.take(Instant::now()) {
                self.schedule(myself, wait);
                stopped = true;
                break;
            }
            let applied = self.apply(&row, &series).await;
            if applied.wrote {
                self.count_write(&row);
            }
            if row.role == RowRole::Series {
                remember_series(&mut series, &row, &applied.outcome);
            }
            audit.extend(applied.audit);
            let next = applied.next;
            reports.push(WriteReport {
                row,
                outcome: applied.outcome,
            });
            match next {
                Next::Continue => {}
                Next::Pause(pause) => {
                    self.paused_until = Some(Instant::now() + pause);
                    self.schedule(myself, pause);
                    stopped = true;
                    break;
                }
                Next::Halt => {
                    self.halted = true;
                    stopped = true;
                    break;
                }
            }
        }
        let recorded = self
            .services
            .store
            .record_writes_fenced(&self.services.writer_id, &reports, audit, fence)
            .await;
        if let Err(StoreError::Fenced { .. }) = recorded {
            // Google has the writes; the next owner finds the rows pending and repeats them
            // idempotently (deterministic ids).
            tracing::info!(
                writes = reports.len(),
                "lease lost before the batch was recorded; the next owner takes the rows"
            );
            return true;
        }
        if let Err(e) = recorded {
            // Google has the writes; the rows stay pending and the next pass repeats them
            // idempotently once the claim is ours again.
            tracing::warn!(error = %e, "cannot record a batch of block writes");
            self.schedule(myself, STORE_RETRY);
            return true;
        }
        stopped
    }

    /// Counts a write made for `row`'s source while a trigger waits for its writes.
    fn count_write(&mut self, row: &OutboxRow) {
        if self.waiting_since.is_empty() {
            return;
        }
        let counted = self
            .writes
            .entry(row.source_account_id)
            .or_insert_with(|| SourceWrites {
                count: 0,
                sync_id: None,
                first: Instant::now(),
            });
        counted.count = counted.count.saturating_add(1);
        if row.sync_id.is_some() {
            counted.sync_id.clone_from(&row.sync_id);
        }
    }

    /// The block series rows of the occurrences in `rows`.
    async fn series_of(&self, rows: &[OutboxRow]) -> HashMap<BlockId, OutboxRow> {
        let wanted: Vec<&BlockId> = rows
            .iter()
            .filter_map(|r| r.series_block_id.as_ref())
            .collect();
        match self
            .services
            .store
            .series_rows(self.account.id, &wanted)
            .await
        {
            Ok(found) => found.into_iter().map(|r| (r.block_id.clone(), r)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the block series rows");
                HashMap::new()
            }
        }
    }

    fn schedule_next(
        &mut self,
        myself: &ActorRef<WriterMsg>,
        outlook: Result<PendingOutlook, StoreError>,
    ) {
        match outlook.map(|o| o.next_due) {
            Ok(Some(at)) => {
                let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if wait.is_zero() {
                    let _ = myself.cast(WriterMsg::converge());
                    return;
                }
                self.schedule(myself, wait);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox; retrying");
                self.schedule(myself, STORE_RETRY);
                return;
            }
        }
        self.drained();
    }

    /// Nothing is due now: the writes the triggers caused are all done. One sample per
    /// source account, measured from that source's own trigger (or from a trigger that named
    /// no source). Writes of a source whose trigger has not arrived yet (another source's
    /// wake-up claimed its rows first) wait for it, for at most [`UNCLAIMED_WRITES`].
    fn drained(&mut self) {
        let triggers = std::mem::take(&mut self.waiting_since);
        let writes = std::mem::take(&mut self.writes);
        for (source, counted) in writes {
            let Some(since) = triggers
                .get(&Some(source))
                .or_else(|| triggers.get(&None))
                .copied()
            else {
                if counted.first.elapsed() < UNCLAIMED_WRITES {
                    self.writes.insert(source, counted);
                }
                continue;
            };
            let latency = since.elapsed();
            metrics::histogram!(PROPAGATION_LATENCY).record(latency.as_secs_f64());
            self.latency.push(LatencySample {
                at: Utc::now(),
                account: source,
                target: self.account.id,
                latency,
                writes: counted.count,
                sync_id: counted.sync_id,
            });
        }
    }

    fn schedule(&mut self, myself: &ActorRef<WriterMsg>, after: Duration) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        self.timer = Some(myself.send_after(after, WriterMsg::converge).abort_handle());
    }

    fn set_gauge(&self, pending: u64) {
        metrics::gauge!(PENDING_OPERATIONS, "target" => self.account.id.to_string())
            .set(pending as f64);
    }

    /// One row: the dependency rules of an occurrence, then one Google write (two for a
    /// restore).
    async fn apply(&mut self, row: &OutboxRow, series: &HashMap<BlockId, OutboxRow>) -> Applied {
        if row.role == RowRole::Occurrence {
            let series_row = row.series_block_id.as_ref().and_then(|s| series.get(s));
            if let Some(waiting) = occurrence_waits(row, series_row) {
                return Applied::quiet(waiting);
            }
        }
        let event_id = match EventId::parse(row.block_id.as_str()) {
            Ok(id) => id,
            Err(e) => return self.refused(row, "write", format!("bad block id: {e}")),
        };
        let Some(json) = &row.body else {
            return self.delete(row, &event_id).await;
        };
        let body: BlockBody = match serde_json::from_value(json.clone()) {
            Ok(body) => body,
            Err(e) => return self.refused(row, "write", format!("stored body unreadable: {e}")),
        };
        let (op, result) = if row.role == RowRole::Occurrence {
            ("patch", self.patch(&event_id, &body).await)
        } else if row.applied_hash.is_none() {
            self.insert_or_restore(&event_id, &body).await
        } else {
            match self.patch(&event_id, &body).await {
                Err(GoogleError::NotFound) => self.insert_or_restore(&event_id, &body).await,
                other => ("patch", other),
            }
        };
        let recreated = matches!(op, "insert" | "restore");
        match result {
            Ok(event) => self.done(row, op, "ok", Some(event), recreated),
            // A cancelled occurrence that is already gone (or was never an instance of the
            // series) is what is wanted.
            Err(GoogleError::Gone | GoogleError::NotFound) if body.is_cancelled() => {
                self.done(row, op, "gone", None, false)
            }
            Err(GoogleError::Gone | GoogleError::NotFound) if row.role == RowRole::Occurrence => {
                self.series_vanished(row, op).await
            }
            Err(e) => self.failed(row, op, e).await,
        }
    }

    fn done(
        &self,
        row: &OutboxRow,
        op: &'static str,
        result: &'static str,
        written: Option<Event>,
        recreated: bool,
    ) -> Applied {
        let (etag, updated) = written.map_or((None, None), |e| (e.etag, e.updated));
        Applied {
            outcome: WriteOutcome::Applied {
                hash: row.desired_hash.clone(),
                etag,
                updated,
                recreated,
            },
            audit: Some(self.audit(row, op, result)),
            next: Next::Continue,
            wrote: true,
        }
    }

    async fn delete(&mut self, row: &OutboxRow, event_id: &EventId) -> Applied {
        let result = self
            .client
            .events_delete(&self.account.calendar_id, event_id)
            .await;
        match result {
            Ok(()) | Err(GoogleError::Gone) | Err(GoogleError::NotFound) => Applied {
                outcome: WriteOutcome::Deleted,
                audit: Some(self.audit(row, "delete", if result.is_ok() { "ok" } else { "gone" })),
                next: Next::Continue,
                wrote: true,
            },
            Err(e) => self.failed(row, "delete", e).await,
        }
    }

    async fn patch(&self, event_id: &EventId, body: &BlockBody) -> Result<Event, GoogleError> {
        self.client
            .events_patch(
                &self.account.calendar_id,
                event_id,
                &body.to_patch_json(),
                None,
            )
            .await
    }

    /// Inserts with the deterministic id; a 409 means the id exists at Google (live, or a
    /// deleted block whose id stays reserved): fetch it and patch it back to the wanted
    /// content, `status: confirmed` included.
    async fn insert_or_restore(
        &self,
        event_id: &EventId,
        body: &BlockBody,
    ) -> (&'static str, Result<Event, GoogleError>) {
        let mut json = body.to_json();
        if let serde_json::Value::Object(map) = &mut json {
            map.insert("id".into(), serde_json::Value::String(event_id.to_string()));
        }
        match self
            .client
            .events_insert(&self.account.calendar_id, &json)
            .await
        {
            Err(GoogleError::Conflict) => {}
            other => return ("insert", other),
        }
        let existing = match self
            .client
            .events_get(&self.account.calendar_id, event_id)
            .await
        {
            Ok(existing) => existing,
            Err(e) => return ("restore", Err(e)),
        };
        let op = if existing.is_cancelled() {
            "restore"
        } else {
            "patch"
        };
        (op, self.patch(event_id, body).await)
    }

    /// An occurrence whose applied block series is missing at Google. First the calendar's
    /// own sync is asked to look (a user deletion of the series is then recorded, and the
    /// occurrence follows it into exclusion); if the series is still missing after that,
    /// it is written again.
    async fn series_vanished(&mut self, row: &OutboxRow, op: &'static str) -> Applied {
        if row.attempts >= VANISHED_OCCURRENCE_LIMIT {
            return Applied {
                outcome: WriteOutcome::Failed {
                    error: "Google has no such occurrence of its block series".to_owned(),
                },
                audit: Some(self.audit(row, op, "failed")),
                next: Next::Continue,
                wrote: false,
            };
        }
        if let Some(calendar) = self.names.calendar_actor(self.account.id) {
            let _ = calendar.cast(CalendarMsg::Sync(Trigger::BlockVanished));
        }
        if row.attempts >= VANISHED_SERIES_PATIENCE {
            if let Some(series) = &row.series_block_id {
                if let Err(e) = self
                    .services
                    .store
                    .requeue_vanished_series(self.account.id, series)
                    .await
                {
                    tracing::warn!(error = %e, "cannot requeue a vanished block series");
                }
            }
        }
        let delay = backoff(row.attempts);
        Applied {
            outcome: WriteOutcome::Retry {
                at: later(delay),
                error: "its block series is missing at Google; looking again".to_owned(),
            },
            audit: Some(self.audit(row, op, "series_missing")),
            next: Next::Continue,
            wrote: true,
        }
    }

    /// Classifies a failed write: retry later, give up on the row, or stop the writer.
    async fn failed(&mut self, row: &OutboxRow, op: &'static str, error: GoogleError) -> Applied {
        let reason = error.to_string();
        let (outcome, next, result) = match error {
            GoogleError::InvalidGrant => {
                self.services.mark_needs_reauth(self.account.id).await;
                let outcome = WriteOutcome::Retry {
                    at: later(BACKOFF_BASE),
                    error: reason,
                };
                (outcome, Next::Halt, "invalid_grant")
            }
            GoogleError::RateLimited { retry_after } => {
                let delay = retry_after.unwrap_or_else(|| backoff(row.attempts));
                let outcome = WriteOutcome::Retry {
                    at: later(delay),
                    error: reason,
                };
                (outcome, Next::Pause(delay), "rate_limited")
            }
            GoogleError::QuotaExceeded => {
                let outcome = WriteOutcome::Retry {
                    at: later(QUOTA_RETRY),
                    error: reason,
                };
                (outcome, Next::Pause(QUOTA_RETRY), "quota_exceeded")
            }
            GoogleError::Transient(_)
            | GoogleError::Unauthorized
            | GoogleError::Malformed(_)
            | GoogleError::PreconditionFailed
            | GoogleError::NotFound
            | GoogleError::Conflict
            | GoogleError::Gone => {
                let kind = error.kind();
                let outcome = WriteOutcome::Retry {
                    at: later(backoff(row.attempts)),
                    error: reason,
                };
                (outcome, Next::Continue, kind)
            }
            GoogleError::SyncTokenExpired
            | GoogleError::Permanent { .. }
            | GoogleError::Config(_) => (
                WriteOutcome::Failed { error: reason },
                Next::Continue,
                "failed",
            ),
        };
        Applied {
            outcome,
            audit: Some(self.audit(row, op, result)),
            next,
            wrote: false,
        }
    }

    /// A row that cannot be written as stored: give up on it until it is planned again.
    fn refused(&self, row: &OutboxRow, op: &'static str, reason: String) -> Applied {
        Applied {
            outcome: WriteOutcome::Failed { error: reason },
            audit: Some(self.audit(row, op, "failed")),
            next: Next::Continue,
            wrote: false,
        }
    }

    /// One log line and one counter per block operation, and the audit row; never a title.
    fn audit(&self, row: &OutboxRow, op: &'static str, result: &'static str) -> NewLogEntry {
        metrics::counter!(BLOCK_OPERATIONS, "op" => op, "result" => result).increment(1);
        let sync_id = row.sync_id.as_deref().unwrap_or("-");
        tracing::info!(
            op,
            result,
            target_account = %self.account.id,
            source_account = %row.source_account_id,
            block_id = %row.block_id,
            sync_id,
            attempts = row.attempts,
            "block write"
        );
        let log_result = if matches!(result, "ok" | "gone") {
            LogResult::Ok
        } else {
            LogResult::Error
        };
        if result == "failed" {
            tracing::warn!(
                op,
                target_account = %self.account.id,
                block_id = %row.block_id,
                sync_id,
                "a block write was refused for good; it is retried when its content changes"
            );
        }
        NewLogEntry::new(
            log_kind_of(op),
            log_result,
            format!(
                "block {} {result} (from {} event {}, sync {sync_id})",
                row.block_id, row.source_account_id, row.source_event_id
            ),
        )
        .account(self.account.id)
    }
}

/// What an occurrence row does instead of a write while its block series is not at Google
/// as it should be; `None` when it may be written now.
fn occurrence_waits(row: &OutboxRow, series: Option<&OutboxRow>) -> Option<WriteOutcome> {
    let Some(series) = series else {
        // No block series is planned: the occurrence cannot exist at Google.
        return Some(WriteOutcome::Dropped);
    };
    if series.state == BlockState::Excluded {
        return Some(WriteOutcome::Excluded);
    }
    if series.body.is_none() {
        // The series is being deleted and takes its occurrences with it.
        return Some(if row.body.is_none() {
            WriteOutcome::Deferred {
                at: series.next_attempt_at.unwrap_or_else(crate::store::now) + SERIES_WAIT,
                reason: None,
            }
        } else {
            WriteOutcome::Dropped
        });
    }
    if series.state == BlockState::Failed {
        return Some(WriteOutcome::Failed {
            error: "its block series could not be written".to_owned(),
        });
    }
    let behind = series.state == BlockState::Pending && series.applied_hash != series.desired_hash;
    if series.applied_hash.is_some() && behind && row.body.is_some() {
        // Its series has a change still to write: a new time at Google drops the series'
        // exceptions, so an occurrence written before it would be lost (found by the soak).
        return Some(WriteOutcome::Deferred {
            at: series
                .next_attempt_at
                .unwrap_or_else(crate::store::now)
                .max(crate::store::now())
                + SERIES_WAIT,
            reason: Some("waiting for its block series to be written".to_owned()),
        });
    }
    if series.applied_hash.is_none() {
        // Not at Google yet: nothing to delete, and nothing to patch before it exists.
        return Some(if row.body.is_none() {
            WriteOutcome::Dropped
        } else {
            WriteOutcome::Deferred {
                at: series
                    .next_attempt_at
                    .unwrap_or_else(crate::store::now)
                    .max(crate::store::now())
                    + SERIES_WAIT,
                reason: Some("waiting for its block series to be written".to_owned()),
            }
        });
    }
    None
}

/// What the batch learned about a block series it wrote, for the occurrences after it.
fn remember_series(
    series: &mut HashMap<BlockId, OutboxRow>,
    row: &OutboxRow,
    outcome: &WriteOutcome,
) {
    let mut known = row.clone();
    match outcome {
        WriteOutcome::Applied { hash, .. } => {
            known.applied_hash = hash.clone();
            known.state = BlockState::Applied;
        }
        WriteOutcome::Deleted => known.applied_hash = None,
        WriteOutcome::Failed { .. } => known.state = BlockState::Failed,
        _ => return,
    }
    series.insert(row.block_id.clone(), known);
}

fn later(delay: Duration) -> chrono::DateTime<Utc> {
    crate::store::now() + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::hours(1))
}

fn log_kind_of(op: &str) -> &'static str {
    match op {
        "insert" => log_kind::BLOCK_INSERT,
        "delete" => log_kind::BLOCK_DELETE,
        "restore" => log_kind::BLOCK_RESTORE,
        _ => log_kind::BLOCK_PATCH,
    }
}

/// Truncated exponential backoff with full jitter in the upper half: attempt 0 waits
/// 1–2 s, then doubling, capped at [`BACKOFF_MAX`].
fn backoff(attempts: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempts.min(16))
        .min(BACKOFF_MAX);
    let floor = ceiling / 2;
    rand::thread_rng().gen_range(floor..=ceiling)
}

/// A token bucket: `rate` writes per second on average, bursts up to `max(1, rate)`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled: Option<Instant>,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        let capacity = rate.max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            refilled: None,
        }
    }

    /// Takes one token; `Some(wait)` when none is left, the time until one is.
    pub(crate) fn take(&mut self, now: Instant) -> Option<Duration> {
        if let Some(last) = self.refilled {
            let earned = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.capacity);
        }
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(role: RowRole, desired: &str, applied: Option<&str>, state: BlockState) -> OutboxRow {
        let now = crate::store::now();
        OutboxRow {
            id: crate::store::OutboxId::new(1),
            target_account_id: AccountId::new(2),
            source_account_id: AccountId::new(1),
            source_event_id: EventId::parse("series").unwrap(),
            block_id: BlockId::parse("blockseries0123456789abcdefgh").unwrap(),
            body: Some(serde_json::json!({"summary": "Calendar 01 Block"})),
            desired_hash: Some(desired.to_owned()),
            applied_hash: applied.map(str::to_owned),
            google_etag: None,
            state,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            role,
            series_block_id: None,
            claimed_by: None,
            claim_expires_at: None,
            sync_id: None,
            applied_updated: None,
        }
    }

    #[test]
    fn an_occurrence_waits_while_its_series_has_a_change_to_write() {
        let occurrence = |series| {
            let mut row = row(RowRole::Occurrence, "o2", Some("o1"), BlockState::Pending);
            row.series_block_id = Some(BlockId::parse("blockseries0123456789abcdefgh").unwrap());
            occurrence_waits(&row, Some(series))
        };

        let behind = row(RowRole::Series, "s2", Some("s1"), BlockState::Pending);
        let in_step = row(RowRole::Series, "s2", Some("s2"), BlockState::Applied);

        assert!(matches!(
            occurrence(&behind),
            Some(WriteOutcome::Deferred { .. })
        ));
        assert_eq!(occurrence(&in_step), None);
    }

    #[test]
    fn a_bucket_allows_a_burst_then_paces_writes() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0);

        assert_eq!(bucket.take(start), None);
        assert_eq!(bucket.take(start), None);
        let wait = bucket.take(start).expect("the burst is spent");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
        assert_eq!(bucket.take(start + Duration::from_millis(500)), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= BACKOFF_BASE);
        assert!(backoff(3) >= BACKOFF_BASE * 4);
        assert!(backoff(40) <= BACKOFF_MAX);
        assert!(backoff(40) >= BACKOFF_MAX / 2);
    }
}
