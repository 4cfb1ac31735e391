//! Sync state and the atomic commit of one sync's results.
//!
//! [`Store::commit_sync`] is the heart of crash safety: the changed source events, the
//! recomputed desired blocks, the exclusions, the mass-deletion hold, the sync-log lines and
//! the new sync token are written in ONE transaction, so the token never moves ahead of the
//! desired state. After a crash the actor resumes from the old token and recomputes the same
//! rows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict, SimpleExpr};
use sea_orm::{
    ColumnTrait as _, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait as _,
    QueryFilter as _, Set,
};

use super::entities::{accounts, desired_blocks, source_events, sync_state};
use super::{
    now, BlockState, Claim, CommitOutcome, Fence, HoldWrite, OutboxUpsert, Store, StoreError,
    StoredEventUpsert, SyncCommit, SyncState,
};
use crate::domain::{AccountId, BlockId};

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
        replan_requested_at: row.replan_requested_at,
    }
}

impl Store {
    /// The sync state of an account (created with the account), with its deferred token
    /// (`deferred.rs`) if an echo left one not yet written.
    pub async fn sync_state(&self, account_id: AccountId) -> Result<SyncState, StoreError> {
        sync_state::Entity::find_by_id(account_id.get())
            .one(self.connection())
            .await?
            .map(|row| self.deferred.read_through(to_record(row)))
            .ok_or_else(|| StoreError::not_found("sync state", account_id))
    }

    /// [`Store::sync_state`] of many accounts in a few statements (a start of thousands of
    /// calendars); an account with no sync state is absent.
    pub async fn sync_states(
        &self,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, SyncState>, StoreError> {
        let mut states = HashMap::with_capacity(accounts.len());
        for chunk in accounts.chunks(500) {
            let rows = sync_state::Entity::find()
                .filter(sync_state::Column::AccountId.is_in(chunk.iter().map(|a| a.get())))
                .all(self.connection())
                .await?;
            states.extend(rows.into_iter().map(|row| {
                let state = to_record(row);
                (state.account_id, state)
            }));
        }
        Ok(states)
    }

    /// `state`, read earlier, as the calendar's next sync should see it: with the token an
    /// echo deferred since, if any.
    pub fn with_deferred_token(&self, state: SyncState) -> SyncState {
        self.deferred.read_through(state)
    }

    /// Writes one sync's results atomically; see the module docs.
    ///
    /// Desired-block rules, per `(target_account_id, block_id)`:
    /// - no row yet: inserted as `pending`, due now — unless `body` is `None` (nothing to
    ///   delete that we know of);
    /// - same `desired_hash` as the row: the row is left alone (a no-op change costs no write);
    /// - row `excluded` (the user deleted that block): stays excluded with the new content
    ///   recorded, or is dropped when `body` is `None`;
    /// - otherwise: new content, `pending`, `attempts` 0, due now (even when it is what was
    ///   last recorded as applied: a write may have happened since that was not recorded).
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
        self.commit_sync_fenced(account_id, commit, None).await
    }

    /// [`Store::commit_sync`] under a lease (PostgreSQL with several replicas): `fence.source`
    /// is checked in the same transaction (nothing is written when this replica lost the
    /// source calendar, [`StoreError::Fenced`]), and the queued rows are claimed for this
    /// replica's writers only on the targets it owns (`fence.claim_targets`); the others'
    /// owners claim their own.
    pub async fn commit_sync_fenced(
        &self,
        account_id: AccountId,
        commit: SyncCommit,
        fence: Option<&SyncFence>,
    ) -> Result<CommitOutcome, StoreError> {
        if commit.is_token_only() {
            // The echo of our own writes: the token waits for the next write (`deferred.rs`).
            if let (Some(from), Some(to)) = (commit.listed_from, commit.new_sync_token) {
                self.deferred.defer(account_id, Some(from), to);
            }
            return Ok(CommitOutcome::default());
        }
        // This commit's token supersedes a deferred one (it was listed from it).
        self.deferred.forget(account_id);
        // Shares its transaction with the commits and records queued meanwhile
        // (`group_commit.rs`); on any error of its own, nothing of it is written.
        let job = super::group_commit::Job::Sync {
            account: account_id,
            commit: Box::new(commit),
            fence: fence.cloned(),
        };
        match self.group_commit(job).await? {
            super::group_commit::Done::Synced(outcome) => Ok(outcome),
            _ => {
                unreachable!("a sync job is answered with its outcome")
            }
        }
    }

    /// The calendars of `id`'s group, `id` included, oldest first: what a sync plans with.
    /// Reads the group's rows only (not every account, not every group), so its cost does
    /// not grow with the number of calendars connected.
    pub async fn group_of(&self, id: AccountId) -> Result<Vec<super::Account>, StoreError> {
        use super::entities::groups;
        use sea_orm::QueryOrder as _;
        let me = accounts::Entity::find_by_id(id.get())
            .one(self.connection())
            .await?
            .ok_or_else(|| StoreError::not_found("account", id))?;
        let (rows, names) = match me.group_id {
            Some(group) => {
                let rows = accounts::Entity::find()
                    .filter(accounts::Column::GroupId.eq(group))
                    .order_by_asc(accounts::Column::Id)
                    .all(self.connection())
                    .await?;
                let names: HashMap<i64, String> = groups::Entity::find_by_id(group)
                    .one(self.connection())
                    .await?
                    .map(|g| (g.id, g.name))
                    .into_iter()
                    .collect();
                (rows, names)
            }
            // Not adopted into a group yet (see `Store::migrate`): the default group's
            // calendars are those without one.
            None => (
                accounts::Entity::find()
                    .filter(accounts::Column::GroupId.is_null())
                    .order_by_asc(accounts::Column::Id)
                    .all(self.connection())
                    .await?,
                HashMap::new(),
            ),
        };
        rows.into_iter()
            .map(|row| super::accounts::to_record(row, &names))
            .collect()
    }

    /// Records a failed sync without touching the token or any other state.
    pub async fn record_sync_error(
        &self,
        account_id: AccountId,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut values = vec![
            (sync_state::Column::LastResult, "error".into()),
            (sync_state::Column::LastError, error.into()),
        ];
        // The next sync continues from a token an earlier echo deferred.
        if let Some(deferred) = self.deferred.forget(account_id) {
            values.push((sync_state::Column::SyncToken, deferred.to.into()));
        }
        self.update_sync_state(account_id, values).await
    }

    /// Forgets the sync token (after 410 Gone), so the next sync lists everything. Source
    /// events and blocks stay: the full resync reconciles them instead of starting empty.
    pub async fn reset_sync_token(&self, account_id: AccountId) -> Result<(), StoreError> {
        self.deferred.forget(account_id);
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

/// A sync commit's lease: the source calendar's [`Fence`], and the targets this replica owns
/// (only their rows are claimed for its writers).
#[derive(Debug, Clone)]
pub struct SyncFence {
    pub source: Fence,
    pub claim_targets: HashSet<AccountId>,
}

pub(super) async fn write_commit(
    txn: &DatabaseTransaction,
    account_id: AccountId,
    commit: SyncCommit,
    claim_targets: Option<&HashSet<AccountId>>,
) -> Result<CommitOutcome, StoreError> {
    let at = now();
    upsert_source_events(txn, account_id, commit.upserted_source_events, at).await?;
    delete_source_events(txn, account_id, &commit.deleted_source_event_ids).await?;
    let queued = Queued {
        at,
        sync_id: commit.sync_id.clone(),
        claim: commit.claim_for.clone(),
        claim_targets,
    };
    let mut outcome = upsert_desired_blocks(txn, commit.desired_blocks, &queued).await?;
    outcome.excluded = exclude_blocks(txn, account_id, &commit.exclusions, at).await?;
    write_hold(txn, account_id, &commit.hold, at).await?;
    if let Some(asked_by) = commit.replan_done {
        // A replan asked for after this one read the store is still to come.
        sync_state::Entity::update_many()
            .col_expr(
                sync_state::Column::ReplanRequestedAt,
                Option::<DateTime<Utc>>::None.into(),
            )
            .filter(sync_state::Column::AccountId.eq(account_id.get()))
            .filter(sync_state::Column::ReplanRequestedAt.lte(asked_by))
            .exec(txn)
            .await?;
    }

    let mut state = sync_state::ActiveModel {
        account_id: Set(account_id.get()),
        sync_token: Set(commit.new_sync_token.clone()),
        last_full_sync_at: Set(None),
        last_incremental_sync_at: Set(None),
        last_result: Set(Some("ok".to_owned())),
        last_error: Set(None),
        mass_delete_hold: Set(false),
        updated_at: Set(at),
        replan_requested_at: Set(None),
    };
    let mut update = vec![
        sync_state::Column::LastResult,
        sync_state::Column::LastError,
        sync_state::Column::UpdatedAt,
    ];
    if commit.new_sync_token.is_some() {
        update.push(sync_state::Column::SyncToken);
    }
    match commit.hold {
        HoldWrite::Unchanged => {}
        HoldWrite::Place { .. } => {
            state.mass_delete_hold = Set(true);
            update.push(sync_state::Column::MassDeleteHold);
        }
        HoldWrite::Lift => update.push(sync_state::Column::MassDeleteHold),
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
                is_block: Set(false),
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

/// What every row a commit queues is stamped with.
struct Queued<'a> {
    at: DateTime<Utc>,
    sync_id: Option<String>,
    claim: Option<Claim>,
    /// Under a lease: the targets whose rows take `claim` (`None`: every target).
    claim_targets: Option<&'a HashSet<AccountId>>,
}

impl Queued<'_> {
    /// The claim a row queued for `target` gets.
    fn claim_on(&self, target: i64) -> Option<&Claim> {
        let ours = self
            .claim_targets
            .is_none_or(|targets| targets.contains(&AccountId::new(target)));
        self.claim.as_ref().filter(|_| ours)
    }

    /// Columns of a row of `target` put (back) to pending by this commit.
    fn pending_columns(&self, target: i64) -> Vec<(desired_blocks::Column, SimpleExpr)> {
        use desired_blocks::Column as C;
        let claim = self.claim_on(target);
        vec![
            (C::State, BlockState::Pending.as_str().into()),
            (C::Attempts, Expr::value(0)),
            (C::NextAttemptAt, Some(self.at).into()),
            (C::LastError, Option::<String>::None.into()),
            (C::SyncId, self.sync_id.clone().into()),
            (C::ClaimedBy, claim.map(|c| c.owner.clone()).into()),
            (C::ClaimExpiresAt, claim.map(|c| c.until).into()),
        ]
    }
}

async fn upsert_desired_blocks(
    txn: &impl ConnectionTrait,
    upserts: Vec<OutboxUpsert>,
    queued: &Queued<'_>,
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
    let existing = existing_rows(txn, latest.keys()).await?;
    let mut outcome = CommitOutcome::default();
    let mut woken = BTreeSet::new();
    let mut new_rows = Vec::new();
    for (key, upsert) in latest {
        let target = upsert.target_account_id;
        let queued_now = match existing.get(&key) {
            None => match new_row(upsert, queued)? {
                Some(row) => {
                    new_rows.push(row);
                    true
                }
                None => false,
            },
            Some(row) => update_row(txn, row, upsert, queued).await?,
        };
        if queued_now {
            outcome.blocks_queued += 1;
            woken.insert(target);
        } else {
            outcome.blocks_unchanged += 1;
        }
    }
    for chunk in new_rows.chunks(CHUNK) {
        desired_blocks::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    outcome.woken_targets = woken.into_iter().collect();
    Ok(outcome)
}

/// The outbox rows of these `(target, block)` keys (and maybe a few more: rows of one key's
/// target with another key's block). Both columns are constrained, so the lookup goes
/// through the `(target, block)` index; by the block alone it read the whole index.
#[doc(hidden)]
pub fn rows_of<'a>(
    keys: impl Iterator<Item = &'a (i64, String)> + Clone,
) -> sea_orm::Select<desired_blocks::Entity> {
    let targets: BTreeSet<i64> = keys.clone().map(|(t, _)| *t).collect();
    desired_blocks::Entity::find()
        .filter(desired_blocks::Column::TargetAccountId.is_in(targets))
        .filter(desired_blocks::Column::BlockId.is_in(keys.map(|(_, b)| b.as_str())))
}

async fn existing_rows<'a>(
    txn: &impl ConnectionTrait,
    keys: impl Iterator<Item = &'a (i64, String)>,
) -> Result<HashMap<(i64, String), desired_blocks::Model>, StoreError> {
    let keys: Vec<&(i64, String)> = keys.collect();
    let mut existing = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let rows = rows_of(chunk.iter().copied()).all(txn).await?;
        for row in rows {
            existing.insert((row.target_account_id, row.block_id.clone()), row);
        }
    }
    Ok(existing)
}

fn body_text(upsert: &OutboxUpsert) -> Result<Option<String>, StoreError> {
    upsert
        .body
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("block body: {e}")))
}

/// A row never seen, to be inserted queued; none when there is nothing to delete that we
/// know of.
fn new_row(
    upsert: OutboxUpsert,
    queued: &Queued<'_>,
) -> Result<Option<desired_blocks::ActiveModel>, StoreError> {
    let body = body_text(&upsert)?;
    if body.is_none() {
        return Ok(None);
    }
    let claim = queued.claim_on(upsert.target_account_id.get());
    Ok(Some(desired_blocks::ActiveModel {
        target_account_id: Set(upsert.target_account_id.get()),
        source_account_id: Set(upsert.source_account_id.get()),
        source_event_id: Set(upsert.source_event_id.into_string()),
        block_id: Set(upsert.block_id.into_string()),
        role: Set(upsert.role.as_str().to_owned()),
        series_block_id: Set(upsert.series_block_id.map(BlockId::into_string)),
        body: Set(body),
        desired_hash: Set(upsert.desired_hash),
        applied_hash: Set(None),
        google_etag: Set(None),
        state: Set(BlockState::Pending.as_str().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(Some(queued.at)),
        last_error: Set(None),
        created_at: Set(queued.at),
        updated_at: Set(queued.at),
        claimed_by: Set(claim.map(|c| c.owner.clone())),
        claim_expires_at: Set(claim.map(|c| c.until)),
        sync_id: Set(queued.sync_id.clone()),
        applied_updated: Set(None),
        ..Default::default()
    }))
}

/// New content for a known row (see [`Store::commit_sync`] for the rules). Returns whether
/// the row is now waiting for the writer.
async fn update_row(
    txn: &impl ConnectionTrait,
    row: &desired_blocks::Model,
    upsert: OutboxUpsert,
    queued: &Queued<'_>,
) -> Result<bool, StoreError> {
    use desired_blocks::Column as C;
    let by_id = C::Id.eq(row.id);
    let role = upsert.role.as_str();
    if row.desired_hash == upsert.desired_hash {
        if row.role != role {
            // Rows older than roles learn theirs the next time they are planned.
            desired_blocks::Entity::update_many()
                .col_expr(C::Role, role.into())
                .col_expr(
                    C::SeriesBlockId,
                    upsert.series_block_id.map(BlockId::into_string).into(),
                )
                .filter(by_id)
                .exec(txn)
                .await?;
        }
        return Ok(false);
    }
    let body = body_text(&upsert)?;
    if row.state == BlockState::Excluded.as_str() {
        if body.is_none() {
            delete_with_occurrences(txn, row).await?;
        } else {
            desired_blocks::Entity::update_many()
                .col_expr(C::Body, body.into())
                .col_expr(C::DesiredHash, upsert.desired_hash.into())
                .col_expr(C::UpdatedAt, queued.at.into())
                .filter(by_id)
                .exec(txn)
                .await?;
        }
        return Ok(false);
    }
    // No shortcut to `applied` when the new content is what was last recorded: a write may
    // have happened since (a crash between Google's answer and its record), so Google may
    // hold something newer. One more write is always safe; trusting the record is not.
    let mut update = desired_blocks::Entity::update_many()
        .col_expr(C::SourceAccountId, upsert.source_account_id.get().into())
        .col_expr(
            C::SourceEventId,
            upsert.source_event_id.into_string().into(),
        )
        .col_expr(C::Role, role.into())
        .col_expr(
            C::SeriesBlockId,
            upsert.series_block_id.map(BlockId::into_string).into(),
        )
        .col_expr(C::Body, body.into())
        .col_expr(C::DesiredHash, upsert.desired_hash.into())
        .col_expr(C::UpdatedAt, queued.at.into())
        .filter(by_id);
    for (column, value) in queued.pending_columns(row.target_account_id) {
        update = update.col_expr(column, value);
    }
    update.exec(txn).await?;
    Ok(true)
}

/// An excluded row whose source is gone: it goes, and an excluded block series takes its
/// (excluded) occurrence rows with it.
async fn delete_with_occurrences(
    txn: &impl ConnectionTrait,
    row: &desired_blocks::Model,
) -> Result<(), StoreError> {
    use desired_blocks::Column as C;
    desired_blocks::Entity::delete_many()
        .filter(
            Condition::any().add(C::Id.eq(row.id)).add(
                Condition::all()
                    .add(C::TargetAccountId.eq(row.target_account_id))
                    .add(C::SeriesBlockId.eq(row.block_id.as_str())),
            ),
        )
        .exec(txn)
        .await?;
    Ok(())
}

/// Marks the rows of the blocks the user deleted on `target` excluded — only while they
/// still want a live block and were written (a racing writer may have changed them) — and
/// with a block series, its occurrence rows too. Returns how many rows became excluded.
async fn exclude_blocks(
    txn: &impl ConnectionTrait,
    target: AccountId,
    block_ids: &[BlockId],
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    use desired_blocks::Column as C;
    let mut excluded = 0;
    for chunk in block_ids.chunks(CHUNK) {
        let ids = || chunk.iter().map(|id| id.as_str());
        let in_play = Condition::any()
            .add(C::State.eq(BlockState::Applied.as_str()))
            .add(C::State.eq(BlockState::Pending.as_str()));
        let rows = desired_blocks::Entity::update_many()
            .col_expr(C::State, BlockState::Excluded.as_str().into())
            .col_expr(C::NextAttemptAt, Option::<DateTime<Utc>>::None.into())
            .col_expr(C::UpdatedAt, at.into())
            .filter(C::TargetAccountId.eq(target.get()))
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(C::BlockId.is_in(ids()))
                            .add(C::AppliedHash.is_not_null()),
                    )
                    .add(C::SeriesBlockId.is_in(ids())),
            )
            .filter(C::Body.is_not_null())
            .filter(in_play)
            .exec(txn)
            .await?;
        excluded += rows.rows_affected;
    }
    Ok(excluded)
}

/// The account's words for the operator follow the hold.
async fn write_hold(
    txn: &impl ConnectionTrait,
    account: AccountId,
    hold: &HoldWrite,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let reason: Option<String> = match hold {
        HoldWrite::Unchanged => return Ok(()),
        HoldWrite::Place { reason } => Some(reason.clone()),
        HoldWrite::Lift => None,
    };
    accounts::Entity::update_many()
        .col_expr(accounts::Column::StatusReason, reason.into())
        .col_expr(accounts::Column::UpdatedAt, at.into())
        .filter(accounts::Column::Id.eq(account.get()))
        .exec(txn)
        .await?;
    Ok(())
}
