//! The outbox: desired blocks per target calendar, and what the `BlockWriter` did with them.
//!
//! Rows are written by a sync's commit (`sync_state.rs`), by operations that queue deletions
//! and repairs (purge, removal, reconciliation: [`Store::queue_deletions`],
//! [`Store::retract_blocks_on_target`], [`Store::retract_blocks_from_source`],
//! [`Store::requeue_applied_block`]) and by the writers' protocol (`writes.rs`: claim, then
//! record). This file holds those operator-side transitions and the reads (counts, queue
//! depths, a calendar's rows, a source event's rows).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait as _, Condition, EntityTrait as _, FromQueryResult, PaginatorTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _, Set,
};

use super::entities::desired_blocks::{self, Column};
use super::{now, BlockState, Deletion, OutboxId, OutboxRow, RowRole, Store, StoreError};
use crate::domain::{AccountId, BlockId, EventId};

pub(super) fn to_record(row: desired_blocks::Model) -> Result<OutboxRow, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("desired block {}: {e}", row.id));
    Ok(OutboxRow {
        id: OutboxId::new(row.id),
        target_account_id: AccountId::new(row.target_account_id),
        source_account_id: AccountId::new(row.source_account_id),
        source_event_id: EventId::parse(&row.source_event_id)
            .map_err(|e| corrupt(e.to_string()))?,
        block_id: BlockId::parse(&row.block_id).map_err(|e| corrupt(e.to_string()))?,
        body: row
            .body
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        state: BlockState::from_db(&row.state)?,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        desired_hash: row.desired_hash,
        applied_hash: row.applied_hash,
        google_etag: row.google_etag,
        next_attempt_at: row.next_attempt_at,
        last_error: row.last_error,
        created_at: row.created_at,
        updated_at: row.updated_at,
        role: RowRole::from_db(&row.role)?,
        series_block_id: row
            .series_block_id
            .as_deref()
            .map(BlockId::parse)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        claimed_by: row.claimed_by,
        claim_expires_at: row.claim_expires_at,
        sync_id: row.sync_id,
        applied_updated: row.applied_updated,
    })
}

pub(super) fn records(rows: Vec<desired_blocks::Model>) -> Result<Vec<OutboxRow>, StoreError> {
    rows.into_iter().map(to_record).collect()
}

#[derive(Debug, FromQueryResult)]
struct LiveCount {
    source_event_id: String,
    live: i64,
}

/// A target's pending rows, as its writer looks at them after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingOutlook {
    /// Pending rows, due or not.
    pub count: u64,
    /// When the first of them is due.
    pub next_due: Option<DateTime<Utc>>,
}

#[derive(Debug, FromQueryResult)]
struct Outlook {
    count: i64,
    next_due: Option<DateTime<Utc>>,
}

#[derive(Debug, FromQueryResult)]
struct Depth {
    target_account_id: i64,
    depth: i64,
}

impl Store {
    /// The user deleted this block (reconciliation found its tombstone): it is not put
    /// back.
    pub async fn mark_excluded(&self, id: OutboxId) -> Result<(), StoreError> {
        self.update_block(
            id,
            vec![
                (Column::State, BlockState::Excluded.as_str().into()),
                (Column::NextAttemptAt, Option::<DateTime<Utc>>::None.into()),
            ],
        )
        .await
    }

    /// Puts failed rows (of one target, or all) back to pending, due now. Returns how many.
    pub async fn requeue_failed(&self, target: Option<AccountId>) -> Result<u64, StoreError> {
        let mut update = desired_blocks::Entity::update_many()
            .col_expr(Column::State, BlockState::Pending.as_str().into())
            .col_expr(Column::Attempts, Expr::value(0))
            .col_expr(Column::NextAttemptAt, Some(now()).into())
            .col_expr(Column::UpdatedAt, now().into())
            .filter(Column::State.eq(BlockState::Failed.as_str()));
        if let Some(target) = target {
            update = update.filter(Column::TargetAccountId.eq(target.get()));
        }
        Ok(update.exec(self.connection()).await?.rows_affected)
    }

    /// Puts an applied row back to pending, due now, forgetting what was applied so the
    /// writer writes it again without a stale `If-Match` (reconciliation found it drifted or
    /// missing). Only while still applied: a sync that committed new content meanwhile wins.
    /// Returns whether the row was re-queued.
    pub async fn requeue_applied_block(&self, id: OutboxId) -> Result<bool, StoreError> {
        let at = now();
        let result = desired_blocks::Entity::update_many()
            .col_expr(Column::State, BlockState::Pending.as_str().into())
            .col_expr(Column::AppliedHash, Option::<String>::None.into())
            .col_expr(Column::GoogleEtag, Option::<String>::None.into())
            .col_expr(Column::Attempts, Expr::value(0))
            .col_expr(Column::NextAttemptAt, Some(at).into())
            .col_expr(Column::UpdatedAt, at.into())
            .filter(Column::Id.eq(id.get()))
            .filter(Column::State.eq(BlockState::Applied.as_str()))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// A block series the store believes written is missing at Google (an occurrence write
    /// found it gone, and the calendar's own sync saw no user deletion): write it again.
    /// The insert meets Google's 409 and becomes a restore. Returns whether it was requeued.
    pub async fn requeue_vanished_series(
        &self,
        target: AccountId,
        series: &BlockId,
    ) -> Result<bool, StoreError> {
        let at = now();
        let result = desired_blocks::Entity::update_many()
            .col_expr(Column::State, BlockState::Pending.as_str().into())
            .col_expr(Column::AppliedHash, Option::<String>::None.into())
            .col_expr(Column::GoogleEtag, Option::<String>::None.into())
            .col_expr(Column::NextAttemptAt, Some(at).into())
            .col_expr(Column::UpdatedAt, at.into())
            .filter(Column::TargetAccountId.eq(target.get()))
            .filter(Column::BlockId.eq(series.as_str()))
            .filter(Column::Body.is_not_null())
            .filter(
                Condition::any()
                    .add(Column::State.eq(BlockState::Applied.as_str()))
                    .add(Column::State.eq(BlockState::Pending.as_str())),
            )
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Forgets every outbox row made from `source`'s events (after its blocks were deleted
    /// from the calendars directly, as `mcss accounts remove` does). Returns how many.
    pub async fn delete_blocks_from_source(&self, source: AccountId) -> Result<u64, StoreError> {
        let result = desired_blocks::Entity::delete_many()
            .filter(Column::SourceAccountId.eq(source.get()))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected)
    }

    /// Wants every block made from `source`'s events gone (before removing or pausing that
    /// account): rows become body NULL and pending, excluded rows are dropped. Returns how
    /// many rows now wait for a delete.
    #[tracing::instrument(name = "store.retract_blocks_from_source", skip(self))]
    pub async fn retract_blocks_from_source(&self, source: AccountId) -> Result<u64, StoreError> {
        let txn = self.write_txn().await?;
        desired_blocks::Entity::delete_many()
            .filter(Column::SourceAccountId.eq(source.get()))
            .filter(Column::State.eq(BlockState::Excluded.as_str()))
            .exec(&txn)
            .await?;
        let result = retract_columns(desired_blocks::Entity::update_many(), now())
            .filter(Column::SourceAccountId.eq(source.get()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(result.rows_affected)
    }

    /// Wants every block ON `target` gone (a purge): its rows become body NULL and pending,
    /// unclaimed. Returns how many rows now wait for a delete.
    #[tracing::instrument(name = "store.retract_blocks_on_target", skip(self))]
    pub async fn retract_blocks_on_target(&self, target: AccountId) -> Result<u64, StoreError> {
        let at = now();
        let result = retract_columns(desired_blocks::Entity::update_many(), at)
            .filter(Column::TargetAccountId.eq(target.get()))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected)
    }

    /// Queues the deletion of blocks found at Google (by marker) on `target`: an existing row
    /// becomes body NULL and pending; a block the outbox never knew (an orphan, a duplicate)
    /// gets a row of its own. The writers then delete them like any other. Returns how many
    /// rows now wait for a delete.
    #[tracing::instrument(name = "store.queue_deletions", skip(self, deletions), fields(n = deletions.len()))]
    pub async fn queue_deletions(
        &self,
        target: AccountId,
        deletions: &[Deletion],
    ) -> Result<u64, StoreError> {
        let at = now();
        let txn = self.write_txn().await?;
        let mut queued = 0;
        for deletion in deletions {
            let updated = retract_columns(desired_blocks::Entity::update_many(), at)
                .filter(Column::TargetAccountId.eq(target.get()))
                .filter(Column::BlockId.eq(deletion.block_id.as_str()))
                .exec(&txn)
                .await?;
            if updated.rows_affected == 0 {
                insert_deletion(&txn, target, deletion, at).await?;
            }
            queued += 1;
        }
        txn.commit().await?;
        Ok(queued)
    }

    /// Rows in `state`, for one target or all.
    pub async fn block_count(
        &self,
        target: Option<AccountId>,
        state: BlockState,
    ) -> Result<u64, StoreError> {
        let mut select = desired_blocks::Entity::find().filter(Column::State.eq(state.as_str()));
        if let Some(target) = target {
            select = select.filter(Column::TargetAccountId.eq(target.get()));
        }
        Ok(select.count(self.connection()).await?)
    }

    /// `target`'s pending rows: how many, and when the first is due (one statement).
    pub async fn pending_outlook(&self, target: AccountId) -> Result<PendingOutlook, StoreError> {
        let outlook = desired_blocks::Entity::find()
            .select_only()
            .column_as(Column::Id.count(), "count")
            .column_as(Column::NextAttemptAt.min(), "next_due")
            .filter(Column::TargetAccountId.eq(target.get()))
            .filter(Column::State.eq(BlockState::Pending.as_str()))
            .into_model::<Outlook>()
            .one(self.connection())
            .await?;
        Ok(
            outlook.map_or_else(PendingOutlook::default, |o| PendingOutlook {
                count: u64::try_from(o.count).unwrap_or(0),
                next_due: o.next_due,
            }),
        )
    }

    /// Pending rows, for one target or all (due or not).
    pub async fn pending_count(&self, target: Option<AccountId>) -> Result<u64, StoreError> {
        self.block_count(target, BlockState::Pending).await
    }

    /// Pending rows per target account, for `/health/detailed` and the dashboard. Targets
    /// with nothing pending are absent.
    pub async fn queue_depths(&self) -> Result<Vec<(AccountId, u64)>, StoreError> {
        let rows = desired_blocks::Entity::find()
            .select_only()
            .column(Column::TargetAccountId)
            .column_as(Column::Id.count(), "depth")
            .filter(Column::State.eq(BlockState::Pending.as_str()))
            .group_by(Column::TargetAccountId)
            .order_by_asc(Column::TargetAccountId)
            .into_model::<Depth>()
            .all(self.connection())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    AccountId::new(r.target_account_id),
                    u64::try_from(r.depth).unwrap_or(0),
                )
            })
            .collect())
    }

    /// One outbox row by its key.
    pub async fn block(&self, id: OutboxId) -> Result<Option<OutboxRow>, StoreError> {
        desired_blocks::Entity::find_by_id(id.get())
            .one(self.connection())
            .await?
            .map(to_record)
            .transpose()
    }

    /// The row of `target` for the Google event `block_id` (reconciliation looks these up).
    pub async fn block_on_target(
        &self,
        target: AccountId,
        block_id: &BlockId,
    ) -> Result<Option<OutboxRow>, StoreError> {
        desired_blocks::Entity::find()
            .filter(Column::TargetAccountId.eq(target.get()))
            .filter(Column::BlockId.eq(block_id.as_str()))
            .one(self.connection())
            .await?
            .map(to_record)
            .transpose()
    }

    /// The rows of `target` for these block ids (the exclusion rule reads them).
    pub async fn rows_on_target(
        &self,
        target: AccountId,
        block_ids: &[&BlockId],
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut out = Vec::new();
        for chunk in block_ids.chunks(200) {
            let rows = desired_blocks::Entity::find()
                .filter(Column::TargetAccountId.eq(target.get()))
                .filter(Column::BlockId.is_in(chunk.iter().map(|id| id.as_str())))
                .all(self.connection())
                .await?;
            out.extend(records(rows)?);
        }
        Ok(out)
    }

    /// Live blocks (wanted and not excluded) per source event of `source`, for the
    /// mass-deletion guard.
    pub async fn live_block_counts(
        &self,
        source: AccountId,
    ) -> Result<Vec<(EventId, u64)>, StoreError> {
        let rows = desired_blocks::Entity::find()
            .select_only()
            .column(Column::SourceEventId)
            .column_as(Column::Id.count(), "live")
            .filter(Column::SourceAccountId.eq(source.get()))
            .filter(Column::Body.is_not_null())
            .filter(Column::State.ne(BlockState::Excluded.as_str()))
            .group_by(Column::SourceEventId)
            .into_model::<LiveCount>()
            .all(self.connection())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let id = EventId::parse(&r.source_event_id).ok()?;
                Some((id, u64::try_from(r.live).unwrap_or(0)))
            })
            .collect())
    }

    /// Every row of a target calendar, by block id.
    pub async fn blocks_for_target(&self, target: AccountId) -> Result<Vec<OutboxRow>, StoreError> {
        records(
            desired_blocks::Entity::find()
                .filter(Column::TargetAccountId.eq(target.get()))
                .order_by_asc(Column::BlockId)
                .all(self.connection())
                .await?,
        )
    }

    /// Every row made from one source event (its blocks on all targets, and instances).
    pub async fn blocks_for_source(
        &self,
        source_account: AccountId,
        source_event_id: &EventId,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        records(
            desired_blocks::Entity::find()
                .filter(
                    Condition::all()
                        .add(Column::SourceAccountId.eq(source_account.get()))
                        .add(Column::SourceEventId.eq(source_event_id.as_str())),
                )
                .order_by_asc(Column::TargetAccountId)
                .order_by_asc(Column::BlockId)
                .all(self.connection())
                .await?,
        )
    }

    async fn update_block(
        &self,
        id: OutboxId,
        values: Vec<(Column, SimpleExpr)>,
    ) -> Result<(), StoreError> {
        let mut update = desired_blocks::Entity::update_many()
            .col_expr(Column::UpdatedAt, now().into())
            .filter(Column::Id.eq(id.get()));
        for (column, value) in values {
            update = update.col_expr(column, value);
        }
        if update.exec(self.connection()).await?.rows_affected == 0 {
            return Err(StoreError::not_found("desired block", id));
        }
        Ok(())
    }
}

/// The columns of a row that now wants its block gone, due at `at`, unclaimed.
fn retract_columns(
    update: sea_orm::UpdateMany<desired_blocks::Entity>,
    at: DateTime<Utc>,
) -> sea_orm::UpdateMany<desired_blocks::Entity> {
    update
        .col_expr(Column::Body, Option::<String>::None.into())
        .col_expr(Column::DesiredHash, Option::<String>::None.into())
        .col_expr(Column::State, BlockState::Pending.as_str().into())
        .col_expr(Column::Attempts, Expr::value(0))
        .col_expr(Column::NextAttemptAt, Some(at).into())
        .col_expr(Column::LastError, Option::<String>::None.into())
        .col_expr(Column::ClaimedBy, Option::<String>::None.into())
        .col_expr(Column::ClaimExpiresAt, Option::<DateTime<Utc>>::None.into())
        .col_expr(Column::UpdatedAt, at.into())
}

async fn insert_deletion(
    txn: &impl sea_orm::ConnectionTrait,
    target: AccountId,
    deletion: &Deletion,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    desired_blocks::Entity::insert(desired_blocks::ActiveModel {
        target_account_id: Set(target.get()),
        source_account_id: Set(deletion.source_account.get()),
        source_event_id: Set(deletion.source_event.as_str().to_owned()),
        block_id: Set(deletion.block_id.as_str().to_owned()),
        role: Set(deletion.role.as_str().to_owned()),
        series_block_id: Set(deletion
            .series_block_id
            .as_ref()
            .map(|s| s.as_str().to_owned())),
        body: Set(None),
        desired_hash: Set(None),
        applied_hash: Set(None),
        google_etag: Set(None),
        state: Set(BlockState::Pending.as_str().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(Some(at)),
        last_error: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
        claimed_by: Set(None),
        claim_expires_at: Set(None),
        sync_id: Set(None),
        applied_updated: Set(None),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}
