//! Read-only views for the admin dashboard: how each calendar's writes stand, the outbox rows
//! of one event, the audit rows of one event, the blocks that should be live.
//!
//! Role: the dashboard (`http/admin`) asks questions the engine never needs — "is anything
//! failing on this calendar, and why?", "what happened to this event?" — and the SQL for them
//! lives here, next to the tables. Nothing here writes. Collaborators: the outbox
//! (`desired_blocks`) as the writers leave it (`writes.rs`), and the sync log as the writers
//! word it (`block <id> <result> (from <account> event <event>, sync <sync id>)`, see
//! `actors/block_writer.rs`).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::LikeExpr;
use sea_orm::{
    ColumnTrait as _, Condition, EntityTrait as _, FromQueryResult, QueryFilter as _,
    QueryOrder as _, QuerySelect as _,
};

use super::entities::{desired_blocks, sync_log};
use super::outbox::records;
use super::{log_kind, BlockState, LogEntry, LogResult, OutboxRow, Store, StoreError};
use crate::domain::{AccountId, EventId};

/// Ids per `IN (…)` list: well under SQLite's bound-variable limit.
const CHUNK: usize = 200;

/// How the writes to one target calendar stand: what waits, what keeps failing and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetWrites {
    pub target: AccountId,
    /// Rows waiting for a write (due or not).
    pub pending: u64,
    /// The earliest time a waiting row that has not failed yet fell due: a writer that keeps
    /// up leaves none due for long.
    pub oldest_due: Option<DateTime<Utc>>,
    /// Waiting rows whose last attempt failed (a retry is scheduled).
    pub retrying: u64,
    /// The most failed attempts among them.
    pub attempts: u32,
    /// The soonest of their retries.
    pub next_retry: Option<DateTime<Utc>>,
    /// Google's answer to the most recent failed attempt, as the writer recorded it.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Rows given up after a permanent refusal (retried when their event changes).
    pub gave_up: u64,
    pub gave_up_error: Option<String>,
}

impl Default for TargetWrites {
    /// Nothing waiting, nothing failing (on no account in particular).
    fn default() -> Self {
        Self {
            target: AccountId::new(0),
            pending: 0,
            oldest_due: None,
            retrying: 0,
            attempts: 0,
            next_retry: None,
            last_error: None,
            last_error_at: None,
            gave_up: 0,
            gave_up_error: None,
        }
    }
}

#[derive(Debug, FromQueryResult)]
struct WriteRow {
    target_account_id: i64,
    state: String,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    updated_at: DateTime<Utc>,
}

impl TargetWrites {
    fn add(&mut self, row: WriteRow) {
        let attempts = u32::try_from(row.attempts).unwrap_or(0);
        if row.state == BlockState::Failed.as_str() {
            self.gave_up += 1;
            if self.gave_up_error.is_none() {
                self.gave_up_error = row.last_error;
            }
            return;
        }
        self.pending += 1;
        if attempts == 0 {
            if let Some(due) = row.next_attempt_at {
                self.oldest_due = Some(self.oldest_due.map_or(due, |d| d.min(due)));
            }
            return;
        }
        self.retrying += 1;
        self.attempts = self.attempts.max(attempts);
        if let Some(at) = row.next_attempt_at {
            self.next_retry = Some(self.next_retry.map_or(at, |n| n.min(at)));
        }
        if self.last_error_at.is_none_or(|seen| row.updated_at > seen) && row.last_error.is_some() {
            self.last_error = row.last_error;
            self.last_error_at = Some(row.updated_at);
        }
    }
}

impl Store {
    /// How the writes of every target with something waiting or given up stand, by target
    /// (targets with neither are absent).
    pub async fn write_health(&self) -> Result<Vec<TargetWrites>, StoreError> {
        use desired_blocks::Column as C;
        let rows = desired_blocks::Entity::find()
            .select_only()
            .columns([
                C::TargetAccountId,
                C::State,
                C::Attempts,
                C::NextAttemptAt,
                C::LastError,
                C::UpdatedAt,
            ])
            .filter(C::State.is_in([BlockState::Pending.as_str(), BlockState::Failed.as_str()]))
            .order_by_asc(C::TargetAccountId)
            .order_by_desc(C::UpdatedAt)
            .into_model::<WriteRow>()
            .all(self.connection())
            .await?;
        let mut out: Vec<TargetWrites> = Vec::new();
        for row in rows {
            let target = AccountId::new(row.target_account_id);
            if out.last().is_none_or(|t| t.target != target) {
                out.push(TargetWrites {
                    target,
                    ..TargetWrites::default()
                });
            }
            if let Some(health) = out.last_mut() {
                health.add(row);
            }
        }
        Ok(out)
    }

    /// Every outbox row made from these events of `source` (a series, its exceptions), by
    /// target and block id.
    pub async fn rows_for_source_events(
        &self,
        source: AccountId,
        events: &[&EventId],
    ) -> Result<Vec<OutboxRow>, StoreError> {
        use desired_blocks::Column as C;
        let mut out = Vec::new();
        for chunk in events.chunks(CHUNK) {
            let rows = desired_blocks::Entity::find()
                .filter(C::SourceAccountId.eq(source.get()))
                .filter(C::SourceEventId.is_in(chunk.iter().map(|id| id.as_str())))
                .order_by_asc(C::TargetAccountId)
                .order_by_asc(C::BlockId)
                .all(self.connection())
                .await?;
            out.extend(records(rows)?);
        }
        Ok(out)
    }

    /// Every outbox row made from `source`'s events, on every target.
    pub async fn rows_from_source(&self, source: AccountId) -> Result<Vec<OutboxRow>, StoreError> {
        use desired_blocks::Column as C;
        records(
            desired_blocks::Entity::find()
                .filter(C::SourceAccountId.eq(source.get()))
                .order_by_asc(C::SourceEventId)
                .order_by_asc(C::TargetAccountId)
                .all(self.connection())
                .await?,
        )
    }

    /// Every row that wants a block on its calendar (not a deletion, not excluded by the
    /// user): what the week view draws on each calendar.
    pub async fn wanted_blocks(&self) -> Result<Vec<OutboxRow>, StoreError> {
        use desired_blocks::Column as C;
        records(
            desired_blocks::Entity::find()
                .filter(C::Body.is_not_null())
                .filter(C::State.ne(BlockState::Excluded.as_str()))
                .order_by_asc(C::TargetAccountId)
                .order_by_asc(C::BlockId)
                .all(self.connection())
                .await?,
        )
    }

    /// The audit rows of the block writes made for `event` of `source` and for the
    /// occurrences of it (ids `<event>_<start>`), newest first, at most `limit`.
    pub async fn log_for_event(
        &self,
        source: AccountId,
        event: &EventId,
        limit: u64,
    ) -> Result<Vec<LogEntry>, StoreError> {
        use sync_log::Column as C;
        let prefix = format!("(from {source} event {}", like_escaped(event.as_str()));
        let exact = LikeExpr::new(format!("%{prefix}, sync %")).escape('\\');
        let instances = LikeExpr::new(format!("%{prefix}\\_%")).escape('\\');
        let rows = sync_log::Entity::find()
            .filter(C::Kind.is_in([
                log_kind::BLOCK_INSERT,
                log_kind::BLOCK_PATCH,
                log_kind::BLOCK_DELETE,
                log_kind::BLOCK_RESTORE,
            ]))
            .filter(
                Condition::any()
                    .add(C::Detail.like(exact))
                    .add(C::Detail.like(instances)),
            )
            .order_by_desc(C::At)
            .order_by_desc(C::Id)
            .limit(limit.min(1000))
            .all(self.connection())
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(LogEntry {
                    id: row.id,
                    at: row.at,
                    account_id: row.account_id.map(AccountId::new),
                    result: LogResult::from_db(&row.result)?,
                    kind: row.kind,
                    detail: row.detail,
                    count: row.count,
                    duration_ms: row.duration_ms,
                })
            })
            .collect()
    }
}

/// `raw` with LIKE's wildcards and the escape character escaped by `\`.
fn like_escaped(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_an_event_id_are_taken_literally() {
        assert_eq!(
            like_escaped("abc_20260305T100000Z"),
            "abc\\_20260305T100000Z"
        );
        assert_eq!(like_escaped("50%"), "50\\%");
    }
}
