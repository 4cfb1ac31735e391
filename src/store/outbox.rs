//! The outbox: desired blocks per target calendar, and what the `BlockWriter` did with them.
//!
//! A writer loop reads [`Store::due_blocks`], makes Google match each row, and reports back
//! with exactly one of [`Store::mark_applied`], [`Store::mark_deleted`],
//! [`Store::schedule_retry`], [`Store::mark_failed`] or [`Store::mark_excluded`]. The
//! `mark_applied`/`mark_deleted` reports are conditional on the row still wanting what was
//! written, because a sync may have committed newer content while the write was in flight:
//! such a row stays `pending` and is picked up again.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, SimpleExpr};
use sea_orm::{
    ColumnTrait as _, Condition, EntityTrait as _, FromQueryResult, PaginatorTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
};

use super::entities::desired_blocks::{self, Column};
use super::{now, BlockState, OutboxId, OutboxRow, Store, StoreError};
use crate::domain::{AccountId, BlockId, EventId};

fn to_record(row: desired_blocks::Model) -> Result<OutboxRow, StoreError> {
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
    })
}

fn records(rows: Vec<desired_blocks::Model>) -> Result<Vec<OutboxRow>, StoreError> {
    rows.into_iter().map(to_record).collect()
}

/// `desired_hash` equals `hash`, NULL matching NULL.
fn desired_hash_is(hash: Option<&str>) -> SimpleExpr {
    match hash {
        Some(hash) => Column::DesiredHash.eq(hash),
        None => Column::DesiredHash.is_null(),
    }
}

#[derive(Debug, FromQueryResult)]
struct Depth {
    target_account_id: i64,
    depth: i64,
}

#[derive(Debug, FromQueryResult)]
struct Earliest {
    earliest: Option<DateTime<Utc>>,
}

impl Store {
    /// Pending rows of `target` due at `now`, oldest due first, at most `limit`.
    pub async fn due_blocks(
        &self,
        target: AccountId,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        records(
            desired_blocks::Entity::find()
                .filter(Column::TargetAccountId.eq(target.get()))
                .filter(Column::State.eq(BlockState::Pending.as_str()))
                .filter(Column::NextAttemptAt.lte(now))
                .order_by_asc(Column::NextAttemptAt)
                .order_by_asc(Column::Id)
                .limit(limit)
                .all(self.connection())
                .await?,
        )
    }

    /// When the next pending row of `target` falls due (`None`: nothing pending).
    pub async fn next_due_at(
        &self,
        target: AccountId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = desired_blocks::Entity::find()
            .select_only()
            .column_as(Column::NextAttemptAt.min(), "earliest")
            .filter(Column::TargetAccountId.eq(target.get()))
            .filter(Column::State.eq(BlockState::Pending.as_str()))
            .into_model::<Earliest>()
            .one(self.connection())
            .await?;
        Ok(row.and_then(|r| r.earliest))
    }

    /// Reports a successful insert/patch of content `applied_hash`, with Google's etag.
    ///
    /// Returns `true` when the row is now `applied`; `false` when newer content was committed
    /// meanwhile (the row stays pending, its applied hash and etag updated).
    #[tracing::instrument(name = "store.mark_applied", skip(self, etag))]
    pub async fn mark_applied(
        &self,
        id: OutboxId,
        applied_hash: Option<&str>,
        etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let txn = self.write_txn().await?;
        let at = now();
        let updated = desired_blocks::Entity::update_many()
            .col_expr(Column::AppliedHash, applied_hash.map(str::to_owned).into())
            .col_expr(Column::GoogleEtag, etag.map(str::to_owned).into())
            .col_expr(Column::UpdatedAt, at.into())
            .filter(Column::Id.eq(id.get()))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::not_found("desired block", id));
        }
        let settled = desired_blocks::Entity::update_many()
            .col_expr(Column::State, BlockState::Applied.as_str().into())
            .col_expr(Column::Attempts, Expr::value(0))
            .col_expr(Column::NextAttemptAt, Option::<DateTime<Utc>>::None.into())
            .col_expr(Column::LastError, Option::<String>::None.into())
            .filter(Column::Id.eq(id.get()))
            .filter(desired_hash_is(applied_hash))
            .filter(Column::State.ne(BlockState::Excluded.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(settled.rows_affected == 1)
    }

    /// Reports that the block was deleted at Google (or was already gone).
    ///
    /// The row is removed when it still wants the block gone (`body` NULL) and `true` is
    /// returned. If the source came back meanwhile, the row stays pending with no applied
    /// content (the next write is an insert, which Google answers 409 → restore) and
    /// `false` is returned.
    #[tracing::instrument(name = "store.mark_deleted", skip(self))]
    pub async fn mark_deleted(&self, id: OutboxId) -> Result<bool, StoreError> {
        let txn = self.write_txn().await?;
        let deleted = desired_blocks::Entity::delete_many()
            .filter(Column::Id.eq(id.get()))
            .filter(Column::Body.is_null())
            .exec(&txn)
            .await?;
        if deleted.rows_affected == 1 {
            txn.commit().await?;
            return Ok(true);
        }
        let updated = desired_blocks::Entity::update_many()
            .col_expr(Column::AppliedHash, Option::<String>::None.into())
            .col_expr(Column::GoogleEtag, Option::<String>::None.into())
            .col_expr(Column::UpdatedAt, now().into())
            .filter(Column::Id.eq(id.get()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::not_found("desired block", id));
        }
        Ok(false)
    }

    /// Removes an outbox row outright (cleanup; writers normally use [`Store::mark_deleted`]).
    pub async fn delete_block_row(&self, id: OutboxId) -> Result<(), StoreError> {
        let result = desired_blocks::Entity::delete_by_id(id.get())
            .exec(self.connection())
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::not_found("desired block", id));
        }
        Ok(())
    }

    /// A transient failure: try again at `at`; counts the attempt and keeps the error.
    pub async fn schedule_retry(
        &self,
        id: OutboxId,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.update_block(
            id,
            vec![
                (Column::Attempts, Expr::col(Column::Attempts).add(1)),
                (Column::NextAttemptAt, Some(at).into()),
                (Column::LastError, error.into()),
            ],
        )
        .await
    }

    /// A permanent failure: stop trying until the desired content changes (or an operator
    /// calls [`Store::requeue_failed`]).
    pub async fn mark_failed(&self, id: OutboxId, error: &str) -> Result<(), StoreError> {
        self.update_block(
            id,
            vec![
                (Column::State, BlockState::Failed.as_str().into()),
                (Column::Attempts, Expr::col(Column::Attempts).add(1)),
                (Column::NextAttemptAt, Option::<DateTime<Utc>>::None.into()),
                (Column::LastError, error.into()),
            ],
        )
        .await
    }

    /// The user deleted this block: remember not to put it back.
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
        let at = now();
        let result = desired_blocks::Entity::update_many()
            .col_expr(Column::Body, Option::<String>::None.into())
            .col_expr(Column::DesiredHash, Option::<String>::None.into())
            .col_expr(Column::State, BlockState::Pending.as_str().into())
            .col_expr(Column::Attempts, Expr::value(0))
            .col_expr(Column::NextAttemptAt, Some(at).into())
            .col_expr(Column::LastError, Option::<String>::None.into())
            .col_expr(Column::UpdatedAt, at.into())
            .filter(Column::SourceAccountId.eq(source.get()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(result.rows_affected)
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
