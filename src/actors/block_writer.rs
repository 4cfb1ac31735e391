//! `BlockWriter`: one per target calendar. It makes Google match the outbox rows of its
//! calendar, one write at a time, under a token bucket, and records what it applied.
//!
//! Each `Converge` (from a CalendarActor's commit, from itself, or from its retry timer)
//! takes a batch of due rows from [`Store::due_blocks`](crate::store::Store::due_blocks) and
//! for each: inserts a block never applied (a 409 means the id exists, deleted or not: it
//! is fetched and restored with a patch), patches one applied before (a 404 falls back to an
//! insert), patches an occurrence of a block series, or deletes a block no longer wanted
//! (404/410 count as done). Then it reports with `mark_applied`/`mark_deleted`. A rate limit
//! or a transient failure schedules a retry with truncated exponential backoff and jitter
//! (Google's `Retry-After` wins); a permanent refusal marks the row failed; revoked consent
//! marks the account `needs_reauth` and the writer idles.
//!
//! A full batch casts `Converge` to itself, so a stop can interleave; otherwise a timer is
//! set for the next due row. When the queue drains after a triggered `Converge`, the
//! propagation latency (trigger → now) is recorded.
//!
//! Lifecycle: `pre_start` loads the account and its client; `post_start` converges once, so
//! retries scheduled before a restart are picked up. Every write is idempotent (deterministic
//! ids), so a crash between Google's answer and the store's record costs nothing.

use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::Rng as _;
use tokio::task::AbortHandle;

use super::control::{LatencyRing, LatencySample};
use crate::domain::{AccountId, EventId};
use crate::google::{AccountClient, Event, GoogleError};
use crate::metrics::{BLOCK_OPERATIONS, PENDING_OPERATIONS, PROPAGATION_LATENCY};
use crate::services::Services;
use crate::store::{log_kind, Account, LogResult, NewLogEntry, OutboxRow, StoreError};
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

/// Start-up input.
#[derive(Clone)]
pub struct WriterArgs {
    pub services: Services,
    pub account: AccountId,
    pub latency: LatencyRing,
}

pub struct BlockWriter;

pub struct WriterState {
    services: Services,
    account: Account,
    client: AccountClient,
    latency: LatencyRing,
    bucket: TokenBucket,
    timer: Option<AbortHandle>,
    /// No write before this instant (a rate limit or quota answer applies to the calendar).
    paused_until: Option<Instant>,
    /// The earliest trigger whose writes are not yet all applied, and its source account.
    waiting_since: Option<(Instant, Option<AccountId>)>,
    /// Writes made since `waiting_since` was set.
    writes: u32,
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
        let account = args.services.store.account(args.account).await?;
        let client = args.services.account_client(args.account).await?;
        let rate = args.services.settings.sync.writes_per_second;
        Ok(WriterState {
            services: args.services,
            account,
            client,
            latency: args.latency,
            bucket: TokenBucket::new(rate),
            timer: None,
            paused_until: None,
            waiting_since: None,
            writes: 0,
            halted: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = myself.cast(WriterMsg::Converge {
            trigger: None,
            source: None,
        });
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let WriterMsg::Converge { trigger, source } = msg;
        if let Some(at) = trigger {
            state.waiting_since = match state.waiting_since {
                Some((earlier, s)) if earlier <= at => Some((earlier, s)),
                _ => Some((at, source)),
            };
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

/// What became of one row.
enum Step {
    /// Written (or nothing left to write); go on.
    Done,
    /// Not written; the row is rescheduled. `pause` stops the whole batch for that long.
    Retry { pause: Option<Duration> },
    /// Consent revoked: stop writing.
    Halt,
}

impl WriterState {
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
        let rows = match store.due_blocks(target, crate::store::now(), BATCH).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(account_id = %target, error = %e, "cannot read the outbox; retrying");
                self.schedule(myself, STORE_RETRY);
                return;
            }
        };
        let full_batch = rows.len() as u64 == BATCH;
        for row in &rows {
            if let Some(wait) = self.bucket.take(Instant::now()) {
                self.schedule(myself, wait);
                return;
            }
            match self.apply(row).await {
                Step::Done => self.writes = self.writes.saturating_add(1),
                Step::Retry { pause: None } => {}
                Step::Retry { pause: Some(pause) } => {
                    self.paused_until = Some(Instant::now() + pause);
                    self.schedule(myself, pause);
                    self.update_gauge().await;
                    return;
                }
                Step::Halt => {
                    self.halted = true;
                    return;
                }
            }
        }
        self.update_gauge().await;
        if full_batch {
            let _ = myself.cast(WriterMsg::Converge {
                trigger: None,
                source: None,
            });
            return;
        }
        match store.next_due_at(target).await {
            Ok(Some(at)) => {
                let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if wait.is_zero() {
                    let _ = myself.cast(WriterMsg::Converge {
                        trigger: None,
                        source: None,
                    });
                    return;
                }
                self.schedule(myself, wait);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(account_id = %target, error = %e, "cannot read the outbox; retrying");
                self.schedule(myself, STORE_RETRY);
                return;
            }
        }
        self.drained();
    }

    /// Nothing is due now: the writes a trigger caused are all done.
    fn drained(&mut self) {
        let Some((since, source)) = self.waiting_since.take() else {
            return;
        };
        let writes = std::mem::take(&mut self.writes);
        if writes == 0 {
            return;
        }
        let latency = since.elapsed();
        metrics::histogram!(PROPAGATION_LATENCY).record(latency.as_secs_f64());
        self.latency.push(LatencySample {
            at: Utc::now(),
            account: source.unwrap_or(self.account.id),
            latency,
            writes,
        });
    }

    fn schedule(&mut self, myself: &ActorRef<WriterMsg>, after: Duration) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        self.timer = Some(
            myself
                .send_after(after, || WriterMsg::Converge {
                    trigger: None,
                    source: None,
                })
                .abort_handle(),
        );
    }

    async fn update_gauge(&self) {
        if let Ok(pending) = self
            .services
            .store
            .pending_count(Some(self.account.id))
            .await
        {
            metrics::gauge!(PENDING_OPERATIONS, "target" => self.account.id.to_string())
                .set(pending as f64);
        }
    }

    /// One row: one Google write (two for a restore), then the store's record of it.
    async fn apply(&mut self, row: &OutboxRow) -> Step {
        let event_id = match EventId::parse(row.block_id.as_str()) {
            Ok(id) => id,
            Err(e) => return self.fail(row, "write", &format!("bad block id: {e}")).await,
        };
        let Some(json) = &row.body else {
            return self.delete(row, &event_id).await;
        };
        let body: BlockBody = match serde_json::from_value(json.clone()) {
            Ok(body) => body,
            Err(e) => {
                return self
                    .fail(row, "write", &format!("stored body unreadable: {e}"))
                    .await
            }
        };
        let is_instance = row.block_id.series() != row.block_id.as_str();
        let (op, result) = if is_instance {
            ("patch", self.patch(&event_id, &body).await)
        } else if row.applied_hash.is_none() {
            self.insert_or_restore(&event_id, &body).await
        } else {
            match self.patch(&event_id, &body).await {
                Err(GoogleError::NotFound) => self.insert_or_restore(&event_id, &body).await,
                other => ("patch", other),
            }
        };
        match result {
            Ok(event) => {
                self.record(row, op, "ok");
                let settled = self
                    .services
                    .store
                    .mark_applied(row.id, row.desired_hash.as_deref(), event.etag.as_deref())
                    .await;
                self.store_result(row, settled.map(drop))
            }
            // A cancelled occurrence that is already gone needs nothing more.
            Err(GoogleError::Gone) if body.is_cancelled() => {
                self.record(row, op, "gone");
                let settled = self
                    .services
                    .store
                    .mark_applied(row.id, row.desired_hash.as_deref(), None)
                    .await;
                self.store_result(row, settled.map(drop))
            }
            Err(e) => self.failed(row, op, e).await,
        }
    }

    async fn delete(&mut self, row: &OutboxRow, event_id: &EventId) -> Step {
        let result = self
            .client
            .events_delete(&self.account.calendar_id, event_id)
            .await;
        match result {
            Ok(()) | Err(GoogleError::Gone) | Err(GoogleError::NotFound) => {
                self.record(row, "delete", if result.is_ok() { "ok" } else { "gone" });
                let settled = self.services.store.mark_deleted(row.id).await;
                self.store_result(row, settled.map(drop))
            }
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

    /// Classifies a failed write: retry later, give up on the row, or stop the writer.
    async fn failed(&mut self, row: &OutboxRow, op: &'static str, error: GoogleError) -> Step {
        let store = &self.services.store;
        let reason = error.to_string();
        match error {
            GoogleError::InvalidGrant => {
                self.record(row, op, "invalid_grant");
                super::calendar::mark_needs_reauth(&self.services, self.account.id).await;
                Step::Halt
            }
            GoogleError::RateLimited { retry_after } => {
                self.record(row, op, "rate_limited");
                let delay = retry_after.unwrap_or_else(|| backoff(row.attempts));
                let _ = self.retry(row, delay, &reason).await;
                Step::Retry { pause: Some(delay) }
            }
            GoogleError::QuotaExceeded => {
                self.record(row, op, "quota_exceeded");
                let _ = self.retry(row, QUOTA_RETRY, &reason).await;
                Step::Retry {
                    pause: Some(QUOTA_RETRY),
                }
            }
            GoogleError::Transient(_)
            | GoogleError::Unauthorized
            | GoogleError::Malformed(_)
            | GoogleError::PreconditionFailed
            | GoogleError::NotFound
            | GoogleError::Conflict
            | GoogleError::Gone => {
                // NotFound here is an occurrence whose block series is not written yet, or
                // a read-after-write delay; both clear up.
                self.record(row, op, error.kind());
                let delay = backoff(row.attempts);
                if let Err(e) = self.retry(row, delay, &reason).await {
                    tracing::warn!(error = %e, "cannot schedule a retry");
                }
                Step::Retry { pause: None }
            }
            GoogleError::SyncTokenExpired
            | GoogleError::Permanent { .. }
            | GoogleError::Config(_) => {
                self.record(row, op, "failed");
                if let Err(e) = store.mark_failed(row.id, &reason).await {
                    tracing::warn!(error = %e, "cannot mark the block failed");
                }
                log(
                    &self.services,
                    NewLogEntry::new(
                        log_kind_of(op),
                        LogResult::Error,
                        format!("block {}: {reason}", row.block_id),
                    )
                    .account(self.account.id),
                )
                .await;
                Step::Done
            }
        }
    }

    async fn fail(&mut self, row: &OutboxRow, op: &'static str, reason: &str) -> Step {
        self.record(row, op, "failed");
        if let Err(e) = self.services.store.mark_failed(row.id, reason).await {
            tracing::warn!(error = %e, "cannot mark the block failed");
        }
        Step::Done
    }

    async fn retry(
        &self,
        row: &OutboxRow,
        delay: Duration,
        reason: &str,
    ) -> Result<(), StoreError> {
        let at = crate::store::now()
            + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::hours(1));
        self.services.store.schedule_retry(row.id, at, reason).await
    }

    fn store_result(&self, row: &OutboxRow, result: Result<(), StoreError>) -> Step {
        match result {
            Ok(()) | Err(StoreError::NotFound { .. }) => Step::Done,
            Err(e) => {
                // Google has the write; the row stays pending and the next pass repeats it
                // idempotently.
                tracing::warn!(account_id = %self.account.id, block_id = %row.block_id, error = %e, "cannot record a block write");
                Step::Retry {
                    pause: Some(STORE_RETRY),
                }
            }
        }
    }

    /// One log line and one counter per block operation; never a title.
    fn record(&self, row: &OutboxRow, op: &'static str, result: &'static str) {
        metrics::counter!(BLOCK_OPERATIONS, "op" => op, "result" => result).increment(1);
        tracing::info!(
            op,
            result,
            target = %self.account.id,
            source = %row.source_account_id,
            block_id = %row.block_id,
            attempts = row.attempts,
            "block write"
        );
        let services = self.services.clone();
        let log_result = if matches!(result, "ok" | "gone") {
            LogResult::Ok
        } else {
            LogResult::Error
        };
        let entry = NewLogEntry::new(
            log_kind_of(op),
            log_result,
            format!("block {} {result}", row.block_id),
        )
        .account(self.account.id);
        // The audit trail must not slow the write path down.
        tokio::spawn(async move { log(&services, entry).await });
    }
}

fn log_kind_of(op: &str) -> &'static str {
    match op {
        "insert" => log_kind::BLOCK_INSERT,
        "delete" => log_kind::BLOCK_DELETE,
        "restore" => log_kind::BLOCK_RESTORE,
        _ => log_kind::BLOCK_PATCH,
    }
}

async fn log(services: &Services, entry: NewLogEntry) {
    if let Err(e) = services.store.append_log(entry).await {
        tracing::warn!(error = %e, "could not write the sync log");
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
