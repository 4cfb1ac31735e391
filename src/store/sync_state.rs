//! Sync state and the atomic commit of one sync's results.
//!
//! [`Store::commit_sync`] is the heart of crash safety (DESIGN.md §1 "Commit"): the changed
//! source events, the recomputed desired blocks and the new sync token are written in ONE
//! transaction, so the token never moves ahead of the desired state. After a crash the
//! actor resumes from the old token and recomputes the same rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DatabaseTransaction, EntityTrait as _, QueryFilter as _, Set,
};

use super::entities::{desired_blocks, source_events, sync_state};
use super::{
    now, BlockState, CommitOutcome, OutboxUpsert, Store, StoreError, StoredEventUpsert, SyncCommit,
    SyncState,
};
use crate::domain::AccountId;

/// Rows per multi-row statement: well under SQLite's bound-variable limit.
const CHUNK: usize = 100;

fn to_record(row: sync_state::Model) -> SyncState {
    SyncState {
        account_id: AccountId::new(row.account_id),
        sync_token: row.sync_token,
        last_full_sync_at: row.last_full_sync_at,
        last_incremental_sync_at: row.last_incremental_sync_at,
        last_result: row.last_result,
        last_error: row.last_error,
        mass_delete_hold: row.mass_delete_hold,
        updated_at: row.updated_at,
    }
}

impl Store {
    /// The sync state of an account (created with the account).
    pub async fn sync_state(&self, account_id: AccountId) -> Result<SyncState, StoreError> {
        sync_state::Entity::find_by_id(account_id.get())
            .one(self.connection())
            .await?
            .map(to_record)
            .ok_or_else(|| StoreError::not_found("sync state", account_id))
    }

    /// Writes one sync's results atomically; see the module docs.
    ///
    /// Desired-block rules, per `(target_account_id, block_id)`:
    /// - no row yet: inserted as `pending`, due now — unless `body` is `None` (nothing to
    ///   delete that we know of);
    /// - same `desired_hash` as the row: the row is left alone (a no-op change costs no write);
    /// - row `excluded` (the user deleted that block): stays excluded with the new content
    ///   recorded, or is dropped when `body` is `None`;
    /// - otherwise: new content, `pending`, `attempts` 0, due now — or straight to `applied`
    ///   when the new hash is what was last applied (a change undone before the writer ran).
    ///
    /// On any error nothing is written: the old token and old rows stay.
    #[tracing::instrument(name = "store.commit_sync", skip(self, commit), fields(
        events = commit.upserted_source_events.len(),
        deleted = commit.deleted_source_event_ids.len(),
        blocks = commit.desired_blocks.len(),
        full = commit.full,
    ))]
    pub async fn commit_sync(
        &self,
        account_id: AccountId,
        commit: SyncCommit,
    ) -> Result<CommitOutcome, StoreError> {
        let txn = self.write_txn().await?;
        match write_commit(&txn, account_id, commit).await {
            Ok(outcome) => {
                txn.commit().await?;
                Ok(outcome)
            }
            Err(err) => {
                // Rolling back explicitly returns the connection clean; the error that
                // matters is the first one.
                let _ = txn.rollback().await;
                Err(err)
            }
        }
    }

    /// Records a failed sync without touching the token or any other state.
    pub async fn record_sync_error(
        &self,
        account_id: AccountId,
        error: &str,
    ) -> Result<(), StoreError> {
        self.update_sync_state(
            account_id,
            vec![
                (sync_state::Column::LastResult, "error".into()),
                (sync_state::Column::LastError, error.into()),
            ],
        )
        .await
    }

    /// Forgets the sync token (after 410 Gone), so the next sync lists everything. Source
    /// events and blocks stay: the full resync reconciles them instead of starting empty.
    pub async fn reset_sync_token(&self, account_id: AccountId) -> Result<(), StoreError> {
        self.update_sync_state(
            account_id,
            vec![(sync_state::Column::SyncToken, Option::<String>::None.into())],
        )
        .await
    }

    /// Sets or clears the hold placed when a full resync would delete too many blocks.
    pub async fn set_mass_delete_hold(
        &self,
        account_id: AccountId,
        hold: bool,
    ) -> Result<(), StoreError> {
        self.update_sync_state(
            account_id,
            vec![(sync_state::Column::MassDeleteHold, hold.into())],
        )
        .await
    }

    async fn update_sync_state(
        &self,
        account_id: AccountId,
        values: Vec<(sync_state::Column, sea_orm::sea_query::SimpleExpr)>,
    ) -> Result<(), StoreError> {
        let mut update = sync_state::Entity::update_many()
            .col_expr(sync_state::Column::UpdatedAt, now().into())
            .filter(sync_state::Column::AccountId.eq(account_id.get()));
        for (column, value) in values {
            update = update.col_expr(column, value);
        }
        let result = update.exec(self.connection()).await?;
        if result.rows_affected == 0 {
            return Err(StoreError::not_found("sync state", account_id));
        }
        Ok(())
    }
}

async fn write_commit(
    txn: &DatabaseTransaction,
    account_id: AccountId,
    commit: SyncCommit,
) -> Result<CommitOutcome, StoreError> {
    let at = now();
    upsert_source_events(txn, account_id, commit.upserted_source_events, at).await?;
    delete_source_events(txn, account_id, &commit.deleted_source_event_ids).await?;
    let outcome = upsert_desired_blocks(txn, commit.desired_blocks, at).await?;

    let mut state = sync_state::ActiveModel {
        account_id: Set(account_id.get()),
        sync_token: Set(commit.new_sync_token.clone()),
        last_full_sync_at: Set(None),
        last_incremental_sync_at: Set(None),
        last_result: Set(Some("ok".to_owned())),
        last_error: Set(None),
        mass_delete_hold: Set(false),
        updated_at: Set(at),
    };
    let mut update = vec![
        sync_state::Column::LastResult,
        sync_state::Column::LastError,
        sync_state::Column::UpdatedAt,
    ];
    if commit.new_sync_token.is_some() {
        update.push(sync_state::Column::SyncToken);
    }
    if commit.full {
        state.last_full_sync_at = Set(Some(at));
        update.push(sync_state::Column::LastFullSyncAt);
    } else {
        state.last_incremental_sync_at = Set(Some(at));
        update.push(sync_state::Column::LastIncrementalSyncAt);
    }
    sync_state::Entity::insert(state)
        .on_conflict(
            OnConflict::column(sync_state::Column::AccountId)
                .update_columns(update)
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(outcome)
}

async fn upsert_source_events(
    txn: &impl ConnectionTrait,
    account_id: AccountId,
    events: Vec<StoredEventUpsert>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    // One row per event id (the last wins): PostgreSQL refuses to upsert a row twice in
    // one statement.
    let mut latest: BTreeMap<String, source_events::ActiveModel> = BTreeMap::new();
    for event in events {
        let data = serde_json::to_string(&event.data)
            .map_err(|e| StoreError::Corrupt(format!("source event data: {e}")))?;
        latest.insert(
            event.event_id.as_str().to_owned(),
            source_events::ActiveModel {
                account_id: Set(account_id.get()),
                event_id: Set(event.event_id.into_string()),
                ical_uid: Set(event.ical_uid),
                recurring_event_id: Set(event.recurring_event_id.map(|id| id.into_string())),
                status: Set(event.status),
                is_block: Set(event.is_block),
                data: Set(data),
                google_updated: Set(event.google_updated),
                updated_at: Set(at),
                ..Default::default()
            },
        );
    }
    let rows: Vec<_> = latest.into_values().collect();
    for chunk in rows.chunks(CHUNK) {
        source_events::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    source_events::Column::AccountId,
                    source_events::Column::EventId,
                ])
                .update_columns([
                    source_events::Column::IcalUid,
                    source_events::Column::RecurringEventId,
                    source_events::Column::Status,
                    source_events::Column::IsBlock,
                    source_events::Column::Data,
                    source_events::Column::GoogleUpdated,
                    source_events::Column::UpdatedAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn delete_source_events(
    txn: &impl ConnectionTrait,
    account_id: AccountId,
    ids: &[crate::domain::EventId],
) -> Result<(), StoreError> {
    for chunk in ids.chunks(CHUNK) {
        source_events::Entity::delete_many()
            .filter(source_events::Column::AccountId.eq(account_id.get()))
            .filter(source_events::Column::EventId.is_in(chunk.iter().map(|id| id.as_str())))
            .exec(txn)
            .await?;
    }
    Ok(())
}

async fn upsert_desired_blocks(
    txn: &impl ConnectionTrait,
    upserts: Vec<OutboxUpsert>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<CommitOutcome, StoreError> {
    let mut latest: BTreeMap<(i64, String), OutboxUpsert> = BTreeMap::new();
    for upsert in upserts {
        latest.insert(
            (
                upsert.target_account_id.get(),
                upsert.block_id.as_str().to_owned(),
            ),
            upsert,
        );
    }

    let keys: Vec<&(i64, String)> = latest.keys().collect();
    let mut existing: HashMap<(i64, String), desired_blocks::Model> = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let rows = desired_blocks::Entity::find()
            .filter(desired_blocks::Column::BlockId.is_in(chunk.iter().map(|(_, b)| b.as_str())))
            .all(txn)
            .await?;
        for row in rows {
            existing.insert((row.target_account_id, row.block_id.clone()), row);
        }
    }

    let pending = BlockState::Pending.as_str();
    let mut outcome = CommitOutcome::default();
    let mut woken = BTreeSet::new();
    for (key, upsert) in latest {
        let body = upsert
            .body
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("block body: {e}")))?;
        let Some(row) = existing.get(&key) else {
            if body.is_none() {
                outcome.blocks_unchanged += 1;
                continue;
            }
            desired_blocks::Entity::insert(desired_blocks::ActiveModel {
                target_account_id: Set(upsert.target_account_id.get()),
                source_account_id: Set(upsert.source_account_id.get()),
                source_event_id: Set(upsert.source_event_id.into_string()),
                block_id: Set(upsert.block_id.into_string()),
                body: Set(body),
                desired_hash: Set(upsert.desired_hash),
                applied_hash: Set(None),
                google_etag: Set(None),
                state: Set(pending.to_owned()),
                attempts: Set(0),
                next_attempt_at: Set(Some(at)),
                last_error: Set(None),
                created_at: Set(at),
                updated_at: Set(at),
                ..Default::default()
            })
            .exec_without_returning(txn)
            .await?;
            outcome.blocks_queued += 1;
            woken.insert(upsert.target_account_id);
            continue;
        };

        if row.desired_hash == upsert.desired_hash {
            outcome.blocks_unchanged += 1;
            continue;
        }
        let by_id = desired_blocks::Column::Id.eq(row.id);
        if row.state == BlockState::Excluded.as_str() {
            if body.is_none() {
                desired_blocks::Entity::delete_many()
                    .filter(by_id)
                    .exec(txn)
                    .await?;
            } else {
                desired_blocks::Entity::update_many()
                    .col_expr(desired_blocks::Column::Body, body.into())
                    .col_expr(
                        desired_blocks::Column::DesiredHash,
                        upsert.desired_hash.into(),
                    )
                    .col_expr(desired_blocks::Column::UpdatedAt, at.into())
                    .filter(by_id)
                    .exec(txn)
                    .await?;
            }
            outcome.blocks_unchanged += 1;
            continue;
        }

        let already_applied =
            upsert.desired_hash.is_some() && upsert.desired_hash == row.applied_hash;
        let (state, next_attempt_at) = if already_applied {
            (BlockState::Applied, None)
        } else {
            (BlockState::Pending, Some(at))
        };
        desired_blocks::Entity::update_many()
            .col_expr(
                desired_blocks::Column::SourceAccountId,
                upsert.source_account_id.get().into(),
            )
            .col_expr(
                desired_blocks::Column::SourceEventId,
                upsert.source_event_id.into_string().into(),
            )
            .col_expr(desired_blocks::Column::Body, body.into())
            .col_expr(
                desired_blocks::Column::DesiredHash,
                upsert.desired_hash.into(),
            )
            .col_expr(desired_blocks::Column::State, state.as_str().into())
            .col_expr(desired_blocks::Column::Attempts, Expr::value(0))
            .col_expr(
                desired_blocks::Column::NextAttemptAt,
                next_attempt_at.into(),
            )
            .col_expr(
                desired_blocks::Column::LastError,
                Option::<String>::None.into(),
            )
            .col_expr(desired_blocks::Column::UpdatedAt, at.into())
            .filter(by_id)
            .exec(txn)
            .await?;
        if already_applied {
            outcome.blocks_unchanged += 1;
        } else {
            outcome.blocks_queued += 1;
            woken.insert(upsert.target_account_id);
        }
    }
    outcome.woken_targets = woken.into_iter().collect();
    Ok(outcome)
}
