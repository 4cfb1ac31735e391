//! Who blocks whom: groups, links and per-calendar rules, and the replans they cause.
//!
//! Every calendar is in exactly one group; within a group every ordered pair is a link,
//! on unless a `disabled_links` row turns it off. A change here is written in ONE
//! transaction with its consequences:
//! - the blocks that no longer belong are retracted (their outbox rows want no block: the
//!   writers delete them) — a link turned off retracts that link's blocks, a calendar that
//!   moves to another group retracts every block it placed and every block placed on it;
//! - the calendars whose blocks must be planned again are flagged
//!   (`sync_state.replan_requested_at`): their `CalendarActor` plans them from the stored
//!   events, without asking Google, and clears the flag in the same commit. A flag survives a
//!   restart, and a running `serve` notices flags set by another process (`mcss accounts
//!   set`, `mcss links set`) within its account-watch interval.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, Condition, ConnectionTrait, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, Set,
};

use super::accounts::rule_columns;
use super::entities::{accounts, desired_blocks, disabled_links, groups, sync_state};
use super::{now, BlockState, CalendarRules, Group, SettingsChange, Store, StoreError};
use crate::domain::AccountId;

/// Group names by id.
pub(super) async fn group_names(
    conn: &impl ConnectionTrait,
) -> Result<HashMap<i64, String>, StoreError> {
    Ok(groups::Entity::find()
        .all(conn)
        .await?
        .into_iter()
        .map(|g| (g.id, g.name))
        .collect())
}

/// The id of the group `name`, created when new.
pub(super) async fn ensure_group(
    conn: &impl ConnectionTrait,
    name: &str,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let find = || {
        groups::Entity::find()
            .filter(groups::Column::Name.eq(name))
            .one(conn)
    };
    if let Some(group) = find().await? {
        return Ok(group.id);
    }
    // Two transactions may create the same new group at once (an import of many lines):
    // the second insert waits for the first and then does nothing, and the select after it
    // finds the group either made.
    groups::Entity::insert(groups::ActiveModel {
        name: Set(name.to_owned()),
        created_at: Set(at),
        ..Default::default()
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::column(groups::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    find()
        .await?
        .map(|group| group.id)
        .ok_or_else(|| StoreError::Corrupt(format!("the group {name:?} was not created")))
}

/// Flags every calendar of the group for a replan (someone joined it).
pub(super) async fn request_replan_of_group(
    conn: &impl ConnectionTrait,
    group: i64,
    at: DateTime<Utc>,
) -> Result<Vec<AccountId>, StoreError> {
    let members: Vec<AccountId> = accounts::Entity::find()
        .filter(accounts::Column::GroupId.eq(group))
        .all(conn)
        .await?
        .into_iter()
        .map(|a| AccountId::new(a.id))
        .collect();
    request_replan(conn, &members, at).await?;
    Ok(members)
}

/// Flags these calendars for a replan.
pub(super) async fn request_replan(
    conn: &impl ConnectionTrait,
    calendars: &[AccountId],
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    use sea_orm::sea_query::{LockType, Order, Query};
    use sync_state::Column as C;
    if calendars.is_empty() {
        return Ok(());
    }
    let ids = calendars.iter().map(|c| c.get());
    let which = if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        // Rows locked in account order: two requests at once (two calendars joining one
        // group) then queue on their first common row instead of each holding one the other
        // wants, which PostgreSQL breaks by aborting one. (SQLite has one writer.)
        C::AccountId.in_subquery(
            Query::select()
                .column(C::AccountId)
                .from(sync_state::Entity)
                .and_where(C::AccountId.is_in(ids))
                .order_by(C::AccountId, Order::Asc)
                .lock(LockType::Update)
                .to_owned(),
        )
    } else {
        C::AccountId.is_in(ids)
    };
    sync_state::Entity::update_many()
        .col_expr(C::ReplanRequestedAt, Some(at).into())
        .filter(which)
        .exec(conn)
        .await?;
    Ok(())
}

/// The outbox rows matching `which` now want no block (excluded ones are dropped: their
/// block is gone already). Returns how many wait for a delete.
async fn retract(
    conn: &impl ConnectionTrait,
    which: Condition,
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    use desired_blocks::Column as C;
    desired_blocks::Entity::delete_many()
        .filter(which.clone())
        .filter(C::State.eq(BlockState::Excluded.as_str()))
        .exec(conn)
        .await?;
    let result = desired_blocks::Entity::update_many()
        .col_expr(C::Body, Option::<String>::None.into())
        .col_expr(C::DesiredHash, Option::<String>::None.into())
        .col_expr(C::State, BlockState::Pending.as_str().into())
        .col_expr(C::Attempts, sea_orm::sea_query::Expr::value(0))
        .col_expr(C::NextAttemptAt, Some(at).into())
        .col_expr(C::LastError, Option::<String>::None.into())
        .col_expr(C::ClaimedBy, Option::<String>::None.into())
        .col_expr(C::ClaimExpiresAt, Option::<DateTime<Utc>>::None.into())
        .col_expr(C::UpdatedAt, at.into())
        .filter(which)
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

impl Store {
    /// Every group, by name.
    pub async fn groups(&self) -> Result<Vec<Group>, StoreError> {
        Ok(groups::Entity::find()
            .order_by_asc(groups::Column::Name)
            .all(self.connection())
            .await?
            .into_iter()
            .map(|g| Group {
                id: g.id,
                name: g.name,
            })
            .collect())
    }

    /// The links turned off, as (source, target) pairs.
    pub async fn disabled_links(&self) -> Result<HashSet<(AccountId, AccountId)>, StoreError> {
        Ok(disabled_links::Entity::find()
            .all(self.connection())
            .await?
            .into_iter()
            .map(|l| {
                (
                    AccountId::new(l.source_account_id),
                    AccountId::new(l.target_account_id),
                )
            })
            .collect())
    }

    /// Moves a calendar to the group `name` (created when new). Its blocks in the old group
    /// go (those it placed and those placed on it), and its links there are forgotten; the
    /// new group plans onto it and it onto the new group. A move to its own group changes
    /// nothing.
    #[tracing::instrument(name = "store.set_group", skip(self))]
    pub async fn set_group(&self, id: AccountId, name: &str) -> Result<SettingsChange, StoreError> {
        super::retry_deadlocks("moving a calendar", || self.set_group_once(id, name)).await
    }

    async fn set_group_once(
        &self,
        id: AccountId,
        name: &str,
    ) -> Result<SettingsChange, StoreError> {
        let at = now();
        let txn = self.write_txn().await?;
        let row = accounts::Entity::find_by_id(id.get())
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::not_found("account", id))?;
        let group = ensure_group(&txn, name, at).await?;
        if row.group_id == Some(group) {
            txn.rollback().await?;
            return Ok(SettingsChange::default());
        }
        accounts::Entity::update_many()
            .col_expr(accounts::Column::GroupId, Some(group).into())
            .col_expr(accounts::Column::UpdatedAt, at.into())
            .filter(accounts::Column::Id.eq(id.get()))
            .exec(&txn)
            .await?;
        disabled_links::Entity::delete_many()
            .filter(
                Condition::any()
                    .add(disabled_links::Column::SourceAccountId.eq(id.get()))
                    .add(disabled_links::Column::TargetAccountId.eq(id.get())),
            )
            .exec(&txn)
            .await?;
        let involving = Condition::any()
            .add(desired_blocks::Column::SourceAccountId.eq(id.get()))
            .add(desired_blocks::Column::TargetAccountId.eq(id.get()));
        let retracted = retract(&txn, involving, at).await?;
        let replanned = request_replan_of_group(&txn, group, at).await?;
        txn.commit().await?;
        Ok(SettingsChange {
            replanned,
            retracted,
        })
    }

    /// Changes a calendar's rules (the set fields of `patch`). A source-side change replans
    /// the calendar; a target-side change replans every calendar of its group that blocks
    /// it. The writers then write only the blocks whose body changed.
    #[tracing::instrument(name = "store.set_rules", skip(self, patch))]
    pub async fn set_rules(
        &self,
        id: AccountId,
        patch: &CalendarRules,
    ) -> Result<SettingsChange, StoreError> {
        super::retry_deadlocks("changing the rules of a calendar", || {
            self.set_rules_once(id, patch)
        })
        .await
    }

    async fn set_rules_once(
        &self,
        id: AccountId,
        patch: &CalendarRules,
    ) -> Result<SettingsChange, StoreError> {
        let at = now();
        let before = self.account(id).await?;
        let after = before.rules.patched(patch);
        let columns = rule_columns(patch);
        if columns.is_empty() || after == before.rules {
            return Ok(SettingsChange::default());
        }
        let txn = self.write_txn().await?;
        let mut update = accounts::Entity::update_many()
            .col_expr(accounts::Column::UpdatedAt, at.into())
            .filter(accounts::Column::Id.eq(id.get()));
        for (column, value) in columns {
            update = update.col_expr(column, value);
        }
        update.exec(&txn).await?;
        let mut replanned = Vec::new();
        if before.rules.source_side_differs(&after) {
            replanned.push(id);
        }
        if before.rules.target_side_differs(&after) {
            replanned.extend(self.sources_of_in(&txn, id).await?);
        }
        replanned.sort();
        replanned.dedup();
        request_replan(&txn, &replanned, at).await?;
        txn.commit().await?;
        Ok(SettingsChange {
            replanned,
            retracted: 0,
        })
    }

    /// Turns the link `source → target` on or off (both in one group, not the same
    /// calendar — the caller checks). Off retracts exactly the blocks `source` placed on
    /// `target`; on replans `source`, which backfills `target`.
    #[tracing::instrument(name = "store.set_link", skip(self))]
    pub async fn set_link(
        &self,
        source: AccountId,
        target: AccountId,
        on: bool,
    ) -> Result<SettingsChange, StoreError> {
        super::retry_deadlocks("turning a link on or off", || {
            self.set_link_once(source, target, on)
        })
        .await
    }

    async fn set_link_once(
        &self,
        source: AccountId,
        target: AccountId,
        on: bool,
    ) -> Result<SettingsChange, StoreError> {
        let at = now();
        let txn = self.write_txn().await?;
        let pair = Condition::all()
            .add(disabled_links::Column::SourceAccountId.eq(source.get()))
            .add(disabled_links::Column::TargetAccountId.eq(target.get()));
        let was_off = disabled_links::Entity::find()
            .filter(pair.clone())
            .one(&txn)
            .await?
            .is_some();
        let mut change = SettingsChange::default();
        if on && was_off {
            disabled_links::Entity::delete_many()
                .filter(pair)
                .exec(&txn)
                .await?;
            request_replan(&txn, &[source], at).await?;
            change.replanned = vec![source];
        } else if !on && !was_off {
            disabled_links::ActiveModel {
                source_account_id: Set(source.get()),
                target_account_id: Set(target.get()),
                created_at: Set(at),
            }
            .insert(&txn)
            .await?;
            let placed = Condition::all()
                .add(desired_blocks::Column::SourceAccountId.eq(source.get()))
                .add(desired_blocks::Column::TargetAccountId.eq(target.get()));
            change.retracted = retract(&txn, placed, at).await?;
        }
        txn.commit().await?;
        Ok(change)
    }

    /// Asks for a replan of these calendars (an operator's "plan again", a new calendar).
    pub async fn request_replans(&self, calendars: &[AccountId]) -> Result<(), StoreError> {
        super::retry_deadlocks("asking for replans", || {
            request_replan(self.connection(), calendars, now())
        })
        .await
    }

    /// Calendars waiting for a replan.
    pub async fn replans_requested(&self) -> Result<Vec<AccountId>, StoreError> {
        Ok(sync_state::Entity::find()
            .filter(sync_state::Column::ReplanRequestedAt.is_not_null())
            .order_by_asc(sync_state::Column::AccountId)
            .all(self.connection())
            .await?
            .into_iter()
            .map(|s| AccountId::new(s.account_id))
            .collect())
    }

    /// The calendars of `target`'s group that block it (links on).
    async fn sources_of_in(
        &self,
        conn: &impl ConnectionTrait,
        target: AccountId,
    ) -> Result<Vec<AccountId>, StoreError> {
        let row = accounts::Entity::find_by_id(target.get())
            .one(conn)
            .await?
            .ok_or_else(|| StoreError::not_found("account", target))?;
        let off: HashSet<i64> = disabled_links::Entity::find()
            .filter(disabled_links::Column::TargetAccountId.eq(target.get()))
            .all(conn)
            .await?
            .into_iter()
            .map(|l| l.source_account_id)
            .collect();
        Ok(accounts::Entity::find()
            .filter(accounts::Column::GroupId.eq(row.group_id))
            .filter(accounts::Column::Id.ne(target.get()))
            .all(conn)
            .await?
            .into_iter()
            .filter(|a| !off.contains(&a.id))
            .map(|a| AccountId::new(a.id))
            .collect())
    }

    /// Puts calendars without a group into `default` (at start-up, after the migration that
    /// introduced groups). Idempotent.
    pub(super) async fn adopt_default_group(&self) -> Result<(), StoreError> {
        let group = ensure_group(self.connection(), super::DEFAULT_GROUP, now()).await?;
        accounts::Entity::update_many()
            .col_expr(accounts::Column::GroupId, Some(group).into())
            .filter(accounts::Column::GroupId.is_null())
            .exec(self.connection())
            .await?;
        Ok(())
    }
}
