//! The writer's side of the outbox: claiming due rows, and recording what Google answered.
//!
//! Protocol, for one `BlockWriter` (the `owner`) and its target calendar:
//! 1. [`Store::claim_due`] claims the due pending rows — block series and single blocks
//!    before occurrences, so an occurrence is never written before its series. A row is
//!    claimed when nobody holds it, its claim expired, or the owner holds it already (a sync
//!    commit claims the rows it queues for the writer it is about to wake, which saves a
//!    transaction). On PostgreSQL the candidates are locked `FOR UPDATE SKIP LOCKED`, so two
//!    writers never wait on, let alone take, the same row.
//! 2. The writer applies each row at Google.
//! 3. [`Store::record_writes`] records the whole batch in ONE transaction, with its audit
//!    lines. Every report checks that the owner still holds the claim and releases it; a
//!    report for a row the owner no longer holds is dropped (someone else owns it now).
//!
//! The series rules live in step 3: a block series written where it did not exist (an insert,
//! or a restore of a deleted one) puts its occurrence rows back to pending, since Google has
//! none of them; a block series deleted at Google takes its occurrence rows with it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, SimpleExpr};
use sea_orm::{
    ColumnTrait as _, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait as _,
    Order, QueryFilter as _, QueryOrder as _, QuerySelect as _, Statement,
};

use super::entities::desired_blocks::{self, Column, Entity};
use super::group_commit::{Done, Job};
use super::outbox::records;
use super::{
    now, BlockState, Claim, Fence, NewLogEntry, OutboxId, OutboxRow, RowRole, Store, StoreError,
};
use crate::domain::{AccountId, BlockId};

/// What became of one claimed row at Google.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Google holds the content `hash` (insert, patch, restore). `recreated`: the block did
    /// not exist at Google before (an insert or a restore), so a block series' occurrences
    /// must be written again.
    Applied {
        hash: Option<String>,
        etag: Option<String>,
        /// Google's `updated` of the written event.
        updated: Option<DateTime<Utc>>,
        recreated: bool,
    },
    /// The block is gone at Google (deleted now, or already).
    Deleted,
    /// A transient failure: try again at `at`; counts an attempt.
    Retry { at: DateTime<Utc>, error: String },
    /// A permanent refusal: given up until the desired content changes.
    Failed { error: String },
    /// Nothing to write and nothing to keep: an occurrence whose block series is gone.
    Dropped,
    /// Not written now, and not an attempt: wait until `at` (an occurrence waits for its
    /// block series to be written).
    Deferred {
        at: DateTime<Utc>,
        reason: Option<String>,
    },
    /// What this row depends on (its block series) was deleted by the user: it stays deleted.
    Excluded,
}

/// One row's report: the row as it was claimed, and what became of it.
#[derive(Debug, Clone)]
pub struct WriteReport {
    pub row: OutboxRow,
    pub outcome: WriteOutcome,
}

impl Store {
    /// Claims up to `limit` due pending rows of `target` for `claim.owner`; see the module
    /// docs. Rows come oldest due first, series and single blocks before occurrences.
    pub async fn claim_due(
        &self,
        target: AccountId,
        claim: &Claim,
        limit: u64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.claim_due_fenced(target, claim, limit, None).await
    }

    /// [`Store::claim_due`] under the target's lease (PostgreSQL with several replicas): the
    /// lease is checked in the same statement (nothing is claimed when it was lost), and the
    /// lease holder takes any due row, whoever claimed it in an earlier tenure.
    #[tracing::instrument(name = "store.claim_due", skip(self, claim, fence), fields(target_account = %target))]
    pub async fn claim_due_fenced(
        &self,
        target: AccountId,
        claim: &Claim,
        limit: u64,
        fence: Option<&Fence>,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let at = now();
        // A sync commit claims the rows it queues for this process's writers: then the
        // due rows are ours already, and taking them needs no write transaction (under a
        // lease, a read of the lease stands in for the fenced claim). Under a lease the look
        // also counts rows another owner holds, since rows claimed in an earlier tenure are
        // the fenced claim's to take over; so nothing due at all is nothing to claim, with
        // no write (a writer woken again after its last pass took the rows).
        let held = self
            .held_already(target, claim, at, limit, fence.is_some())
            .await?;
        if let Some(rows) = held {
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            if let Some(fence) = fence {
                match super::leases::check_fence(self.connection(), fence).await {
                    // As the fenced claim: a lost lease claims nothing.
                    Err(StoreError::Fenced { .. }) => return Ok(Vec::new()),
                    checked => checked?,
                }
            }
            return records(rows);
        }
        let txn = self.write_txn().await?;
        let ids = match (self.backend(), fence) {
            (DbBackend::Postgres, Some(fence)) => {
                claim_postgres_fenced(&txn, target, claim, at, limit, fence).await?
            }
            (DbBackend::Postgres, None) => claim_postgres(&txn, target, claim, at, limit).await?,
            _ => claim_portable(&txn, target, claim, at, limit).await?,
        };
        let rows = Entity::find()
            .filter(Column::Id.is_in(ids))
            .order_by_asc(Column::NextAttemptAt)
            .order_by(occurrences_last(), Order::Asc)
            .order_by_asc(Column::Id)
            .all(&txn)
            .await?;
        txn.commit().await?;
        records(rows)
    }

    /// The due pending rows of `target` (in claim order; with `held_by_anyone`, also those
    /// another owner holds), when every one is held by `claim.owner` for at least half the
    /// claim's length still; `None` otherwise.
    async fn held_already(
        &self,
        target: AccountId,
        claim: &Claim,
        at: DateTime<Utc>,
        limit: u64,
        held_by_anyone: bool,
    ) -> Result<Option<Vec<desired_blocks::Model>>, StoreError> {
        let mut due = due_rows(target, at, limit);
        if !held_by_anyone {
            due = due.filter(claimable(&claim.owner, at));
        }
        let rows = due.all(self.connection()).await?;
        let all_held = rows.iter().all(|r| {
            r.claimed_by.as_deref() == Some(claim.owner.as_str())
                && r.claim_expires_at
                    .is_some_and(|until| !needs_renewal(until, claim, at))
        });
        Ok(all_held.then_some(rows))
    }

    /// The rows of `target`'s block series named by `series`, by block id.
    pub async fn series_rows(
        &self,
        target: AccountId,
        series: &[&BlockId],
    ) -> Result<Vec<OutboxRow>, StoreError> {
        if series.is_empty() {
            return Ok(Vec::new());
        }
        records(
            Entity::find()
                .filter(Column::TargetAccountId.eq(target.get()))
                .filter(Column::BlockId.is_in(series.iter().map(|s| s.as_str())))
                .all(self.connection())
                .await?,
        )
    }

    /// Records a batch of writes and their audit lines in one transaction; see the module
    /// docs. Returns how many reports applied (the others had lost their claim).
    pub async fn record_writes(
        &self,
        owner: &str,
        reports: &[WriteReport],
        log: Vec<NewLogEntry>,
    ) -> Result<usize, StoreError> {
        self.record_writes_fenced(owner, reports, log, None).await
    }

    /// [`Store::record_writes`] under the target's lease: the whole batch is refused
    /// ([`StoreError::Fenced`], nothing recorded) when this replica lost it.
    #[tracing::instrument(name = "store.record_writes", skip_all, fields(reports = reports.len()))]
    pub async fn record_writes_fenced(
        &self,
        owner: &str,
        reports: &[WriteReport],
        log: Vec<NewLogEntry>,
        fence: Option<&Fence>,
    ) -> Result<usize, StoreError> {
        let job = Job::Record {
            owner: owner.to_owned(),
            reports: reports.to_vec(),
            log,
            fence: fence.cloned(),
        };
        match self.group_commit(job).await? {
            Done::Recorded(recorded) => Ok(recorded),
            _ => unreachable!("a record job is answered with its record"),
        }
    }

    /// Releases every claim `owner` holds (a writer that stops hands its rows back).
    pub async fn release_claims(&self, owner: &str) -> Result<u64, StoreError> {
        let result = Entity::update_many()
            .col_expr(Column::ClaimedBy, Option::<String>::None.into())
            .col_expr(Column::ClaimExpiresAt, Option::<DateTime<Utc>>::None.into())
            .filter(Column::ClaimedBy.eq(owner))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected)
    }
}

/// The body of [`Store::record_writes`] but its audit rows (the group commit writes those
/// of all its jobs at once), in the caller's transaction.
pub(super) async fn write_records(
    txn: &DatabaseTransaction,
    owner: &str,
    reports: &[WriteReport],
) -> Result<usize, StoreError> {
    let mut recorded = 0;
    for report in reports {
        if record_one(txn, owner, report).await? {
            recorded += 1;
        }
    }
    Ok(recorded)
}

/// `target`'s pending rows due at `at`, series and single blocks first, oldest first, at
/// most `limit` (whoever holds them: add [`claimable`] for the ones an owner may take).
fn due_rows(target: AccountId, at: DateTime<Utc>, limit: u64) -> sea_orm::Select<Entity> {
    Entity::find()
        .filter(Column::TargetAccountId.eq(target.get()))
        .filter(Column::State.eq(BlockState::Pending.as_str()))
        .filter(Column::NextAttemptAt.lte(at))
        .order_by_asc(Column::NextAttemptAt)
        .order_by(occurrences_last(), Order::Asc)
        .order_by_asc(Column::Id)
        .limit(limit)
}

/// `ORDER BY` term that puts occurrence rows after series and single blocks.
fn occurrences_last() -> sea_orm::sea_query::SimpleExpr {
    Expr::cust(format!(
        "CASE WHEN role = '{}' THEN 1 ELSE 0 END",
        RowRole::Occurrence.as_str()
    ))
}

/// Whether a claim of ours ending at `until` should be extended to `claim.until`: when less
/// than half of the claim's length is left.
fn needs_renewal(until: DateTime<Utc>, claim: &Claim, at: DateTime<Utc>) -> bool {
    until < at + (claim.until - at) / 2
}

/// A row `owner` may take: unclaimed, claimed by the owner, or with an expired claim.
fn claimable(owner: &str, at: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(Column::ClaimedBy.is_null())
        .add(Column::ClaimedBy.eq(owner))
        .add(Column::ClaimExpiresAt.lt(at))
}

async fn claim_portable(
    txn: &DatabaseTransaction,
    target: AccountId,
    claim: &Claim,
    at: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<i64>, StoreError> {
    // SQLite: `BEGIN IMMEDIATE` already holds the one write lock, so select-then-update is
    // atomic.
    let candidates: Vec<desired_blocks::Model> = due_rows(target, at, limit)
        .filter(claimable(&claim.owner, at))
        .all(txn)
        .await?;
    let ids: Vec<i64> = candidates.iter().map(|r| r.id).collect();
    // Rows the owner already holds long enough need no write.
    let renew: Vec<i64> = candidates
        .iter()
        .filter(|r| {
            r.claimed_by.as_deref() != Some(claim.owner.as_str())
                || r.claim_expires_at
                    .is_none_or(|until| needs_renewal(until, claim, at))
        })
        .map(|r| r.id)
        .collect();
    if !renew.is_empty() {
        set_claim(txn, &renew, claim).await?;
    }
    Ok(ids)
}

async fn claim_postgres(
    txn: &DatabaseTransaction,
    target: AccountId,
    claim: &Claim,
    at: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<i64>, StoreError> {
    let sql = format!(
        "UPDATE desired_blocks SET claimed_by = $1, claim_expires_at = $2 \
         WHERE id IN (SELECT id FROM desired_blocks \
           WHERE target_account_id = $3 AND state = $4 AND next_attempt_at <= $5 \
             AND (claimed_by IS NULL OR claimed_by = $1 OR claim_expires_at < $5) \
           ORDER BY next_attempt_at, CASE WHEN role = '{}' THEN 1 ELSE 0 END, id \
           LIMIT $6 FOR UPDATE SKIP LOCKED) \
         RETURNING id",
        RowRole::Occurrence.as_str()
    );
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [
            claim.owner.clone().into(),
            claim.until.into(),
            target.get().into(),
            BlockState::Pending.as_str().into(),
            at.into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ],
    );
    let rows = txn.query_all_raw(statement).await?;
    rows.iter()
        .map(|r| r.try_get::<i64>("", "id").map_err(StoreError::from))
        .collect()
}

async fn claim_postgres_fenced(
    txn: &DatabaseTransaction,
    target: AccountId,
    claim: &Claim,
    at: DateTime<Utc>,
    limit: u64,
    fence: &Fence,
) -> Result<Vec<i64>, StoreError> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        super::leases::fenced_claim_sql(RowRole::Occurrence.as_str()),
        [
            claim.owner.clone().into(),
            claim.until.into(),
            target.get().into(),
            BlockState::Pending.as_str().into(),
            at.into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
            fence.owner.to_string().into(),
            fence.epoch.into(),
        ],
    );
    let rows = txn.query_all_raw(statement).await?;
    rows.iter()
        .map(|r| r.try_get::<i64>("", "id").map_err(StoreError::from))
        .collect()
}

async fn set_claim(
    txn: &DatabaseTransaction,
    ids: &[i64],
    claim: &Claim,
) -> Result<(), StoreError> {
    Entity::update_many()
        .col_expr(Column::ClaimedBy, claim.owner.clone().into())
        .col_expr(Column::ClaimExpiresAt, Some(claim.until).into())
        .filter(Column::Id.is_in(ids.iter().copied()))
        .exec(txn)
        .await?;
    Ok(())
}

/// The row, if `owner` still holds its claim.
fn held(id: OutboxId, owner: &str) -> Condition {
    Condition::all()
        .add(Column::Id.eq(id.get()))
        .add(Column::ClaimedBy.eq(owner))
}

/// An update of one held row that also releases the claim.
fn release(id: OutboxId, owner: &str) -> sea_orm::UpdateMany<Entity> {
    Entity::update_many()
        .col_expr(Column::ClaimedBy, Option::<String>::None.into())
        .col_expr(Column::ClaimExpiresAt, Option::<DateTime<Utc>>::None.into())
        .col_expr(Column::UpdatedAt, now().into())
        .filter(held(id, owner))
}

async fn record_one(
    txn: &DatabaseTransaction,
    owner: &str,
    report: &WriteReport,
) -> Result<bool, StoreError> {
    let row = &report.row;
    let id = row.id;
    let affected = match &report.outcome {
        WriteOutcome::Applied {
            hash,
            etag,
            updated,
            recreated,
        } => {
            let held =
                record_applied(txn, owner, row, hash.as_deref(), etag.as_deref(), *updated).await?;
            if held && *recreated && row.role == RowRole::Series {
                requeue_occurrences(txn, row).await?;
            }
            held
        }
        WriteOutcome::Deleted => record_deleted(txn, owner, row).await?,
        WriteOutcome::Retry { at, error } => {
            release(id, owner)
                .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
                .col_expr(Column::NextAttemptAt, Some(*at).into())
                .col_expr(Column::LastError, error.clone().into())
                .exec(txn)
                .await?
                .rows_affected
                == 1
        }
        WriteOutcome::Failed { error } => {
            release(id, owner)
                .col_expr(Column::State, BlockState::Failed.as_str().into())
                .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
                .col_expr(Column::NextAttemptAt, Option::<DateTime<Utc>>::None.into())
                .col_expr(Column::LastError, error.clone().into())
                .exec(txn)
                .await?
                .rows_affected
                == 1
        }
        WriteOutcome::Deferred { at, reason } => {
            release(id, owner)
                .col_expr(Column::NextAttemptAt, Some(*at).into())
                .col_expr(Column::LastError, reason.clone().into())
                .exec(txn)
                .await?
                .rows_affected
                == 1
        }
        WriteOutcome::Excluded => {
            release(id, owner)
                .col_expr(Column::State, BlockState::Excluded.as_str().into())
                .col_expr(Column::NextAttemptAt, Option::<DateTime<Utc>>::None.into())
                .exec(txn)
                .await?
                .rows_affected
                == 1
        }
        WriteOutcome::Dropped => {
            Entity::delete_many()
                .filter(held(id, owner))
                .exec(txn)
                .await?
                .rows_affected
                == 1
        }
    };
    if !affected {
        tracing::debug!(row = %id, owner, "a write report for a row no longer held is dropped");
    }
    Ok(affected)
}

/// Google holds `hash`: remember it, and settle the row when that is still what it wants
/// (a sync may have committed newer content meanwhile: then it stays pending). One
/// statement: the settling columns change only where the row still wants `hash`.
async fn record_applied(
    txn: &DatabaseTransaction,
    owner: &str,
    row: &OutboxRow,
    hash: Option<&str>,
    etag: Option<&str>,
    updated: Option<DateTime<Utc>>,
) -> Result<bool, StoreError> {
    let desired_is_hash = match hash {
        Some(hash) => Column::DesiredHash.eq(hash),
        None => Column::DesiredHash.is_null(),
    };
    let settled = Condition::all()
        .add(desired_is_hash)
        .add(Column::State.ne(BlockState::Excluded.as_str()));
    let settle = |column: Column, value: SimpleExpr| -> (Column, SimpleExpr) {
        let case = Expr::case(settled.clone(), value).finally(Expr::col(column));
        (column, case.into())
    };
    let mut update = release(row.id, owner)
        .col_expr(Column::AppliedHash, hash.map(str::to_owned).into())
        .col_expr(Column::GoogleEtag, etag.map(str::to_owned).into())
        .col_expr(Column::AppliedUpdated, updated.into());
    for (column, value) in [
        settle(Column::State, BlockState::Applied.as_str().into()),
        settle(Column::Attempts, Expr::value(0)),
        settle(Column::NextAttemptAt, Option::<DateTime<Utc>>::None.into()),
        settle(Column::LastError, Option::<String>::None.into()),
    ] {
        update = update.col_expr(column, value);
    }
    Ok(update.exec(txn).await?.rows_affected == 1)
}

/// The block is gone at Google. A row that still wants it gone is done; one whose source came
/// back meanwhile stays pending with nothing applied (the next write inserts, and Google's
/// 409 turns that into a restore). A block series takes its occurrences with it.
async fn record_deleted(
    txn: &DatabaseTransaction,
    owner: &str,
    row: &OutboxRow,
) -> Result<bool, StoreError> {
    let done = Entity::delete_many()
        .filter(held(row.id, owner))
        .filter(Column::Body.is_null())
        .exec(txn)
        .await?;
    let held_row = if done.rows_affected == 1 {
        true
    } else {
        release(row.id, owner)
            .col_expr(Column::AppliedHash, Option::<String>::None.into())
            .col_expr(Column::GoogleEtag, Option::<String>::None.into())
            .exec(txn)
            .await?
            .rows_affected
            == 1
    };
    if held_row && row.role != RowRole::Occurrence {
        // Google deleted the series' occurrences with it. A series that is done takes its
        // occurrence rows along; one wanted back writes again those that want something.
        let gone = occurrences_of(row);
        if done.rows_affected == 1 {
            gone.exec_delete(txn).await?;
        } else {
            gone.filter(Column::Body.is_null()).exec_delete(txn).await?;
            requeue_occurrences(txn, row).await?;
        }
    }
    Ok(held_row)
}

/// The occurrence rows of the block series `series` on its target.
fn occurrences_of(series: &OutboxRow) -> OccurrenceRows {
    OccurrenceRows {
        condition: Condition::all()
            .add(Column::TargetAccountId.eq(series.target_account_id.get()))
            .add(Column::SeriesBlockId.eq(series.block_id.as_str())),
    }
}

struct OccurrenceRows {
    condition: Condition,
}

impl OccurrenceRows {
    fn filter(mut self, condition: impl Into<Condition>) -> Self {
        self.condition = self.condition.add(condition.into());
        self
    }

    async fn exec_delete(self, txn: &DatabaseTransaction) -> Result<u64, StoreError> {
        Ok(Entity::delete_many()
            .filter(self.condition)
            .exec(txn)
            .await?
            .rows_affected)
    }
}

/// Google holds none of the series' occurrences (it was just created, restored or deleted):
/// every occurrence row that wants something is written again.
async fn requeue_occurrences(
    txn: &DatabaseTransaction,
    series: &OutboxRow,
) -> Result<(), StoreError> {
    let at = now();
    Entity::update_many()
        .col_expr(Column::State, BlockState::Pending.as_str().into())
        .col_expr(Column::AppliedHash, Option::<String>::None.into())
        .col_expr(Column::GoogleEtag, Option::<String>::None.into())
        .col_expr(Column::Attempts, Expr::value(0))
        .col_expr(Column::NextAttemptAt, Some(at).into())
        .col_expr(Column::UpdatedAt, at.into())
        .filter(occurrences_of(series).condition)
        .filter(Column::Body.is_not_null())
        .filter(Column::State.ne(BlockState::Excluded.as_str()))
        .exec(txn)
        .await?;
    Ok(())
}
