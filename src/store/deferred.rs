//! Deferred sync tokens: the echo of our own writes costs no write transaction of its own.
//!
//! When a calendar's incremental listing shows nothing but our own blocks (the echo of a
//! writer's insert, patch or delete), the sync has nothing to store but the new sync token.
//! [`Store::commit_sync`] then keeps that token here, in memory, instead of writing it, and
//! [`Store::sync_state`] reads it through, so the calendar's next sync continues from it.
//! Deferred tokens are written in bulk: with the next write transaction of the group commit
//! (`group_commit.rs`), by [`Store::flush_deferred_tokens`] (called every second by
//! `serve`), and by [`Store::close`].
//!
//! Why this is safe: a stored token may lag behind, never run ahead. A token lost in a
//! crash only makes the next sync list the same echoes again, which plan nothing. And each
//! deferred token is written only over the token it was listed from (`from`), so it never
//! overwrites a newer commit (of this replica, or of the calendar's next owner).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DbBackend, EntityTrait as _, QueryFilter as _, Statement,
};

use super::entities::sync_state;
use super::{StoreError, SyncState};
use crate::domain::AccountId;

/// A token listed but not written yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Deferred {
    /// The stored token it continues from (the one in the database).
    pub from: Option<String>,
    pub to: String,
    pub at: DateTime<Utc>,
}

/// The deferred tokens of one store (shared by its clones).
#[derive(Debug, Default)]
pub(super) struct DeferredTokens {
    tokens: Mutex<HashMap<AccountId, Deferred>>,
}

impl DeferredTokens {
    /// Keeps `to`, listed from `listed_from`. A second echo before the first is written
    /// keeps the first one's `from` (the database still holds it).
    pub fn defer(&self, account: AccountId, listed_from: Option<String>, to: String) {
        let at = Utc::now();
        let mut tokens = self.tokens.lock();
        let from = match tokens.remove(&account) {
            Some(earlier) => earlier.from,
            None => listed_from,
        };
        tokens.insert(account, Deferred { from, to, at });
    }

    /// Drops `account`'s deferred token: a commit of its own, a reset or an error wrote
    /// the state that counts.
    pub fn forget(&self, account: AccountId) -> Option<Deferred> {
        self.tokens.lock().remove(&account)
    }

    /// Every deferred token, taken out for writing.
    pub fn take_all(&self) -> Vec<(AccountId, Deferred)> {
        self.tokens.lock().drain().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.lock().is_empty()
    }

    /// `state` as the calendar's next sync should see it.
    pub fn read_through(&self, mut state: SyncState) -> SyncState {
        if let Some(deferred) = self.tokens.lock().get(&state.account_id) {
            state.sync_token = Some(deferred.to.clone());
            state.last_incremental_sync_at = Some(deferred.at);
            state.last_result = Some("ok".to_owned());
            state.last_error = None;
        }
        state
    }
}

/// Writes `tokens`, each only over the token it continues from; returns how many were
/// written (the others were overtaken by a newer commit, or the calendar is gone).
pub(super) async fn write_tokens(
    conn: &impl ConnectionTrait,
    tokens: &[(AccountId, Deferred)],
) -> Result<u64, StoreError> {
    if conn.get_database_backend() == DbBackend::Postgres {
        return write_tokens_postgres(conn, tokens).await;
    }
    // SQLite answers in process: a statement per token costs no round trip.
    let mut written = 0;
    for (account, deferred) in tokens {
        let from = match &deferred.from {
            Some(token) => sync_state::Column::SyncToken.eq(token.as_str()),
            None => sync_state::Column::SyncToken.is_null(),
        };
        let result = sync_state::Entity::update_many()
            .col_expr(
                sync_state::Column::SyncToken,
                Expr::value(deferred.to.clone()),
            )
            .col_expr(
                sync_state::Column::LastIncrementalSyncAt,
                Expr::value(deferred.at),
            )
            .col_expr(sync_state::Column::LastResult, Expr::value("ok"))
            .col_expr(
                sync_state::Column::LastError,
                Expr::value(Option::<String>::None),
            )
            .col_expr(sync_state::Column::UpdatedAt, Expr::value(deferred.at))
            .filter(sync_state::Column::AccountId.eq(account.get()))
            .filter(from)
            .exec(conn)
            .await?;
        written += result.rows_affected;
    }
    Ok(written)
}

/// [`write_tokens`] on PostgreSQL: one statement per thousand tokens.
async fn write_tokens_postgres(
    conn: &impl ConnectionTrait,
    tokens: &[(AccountId, Deferred)],
) -> Result<u64, StoreError> {
    let mut written = 0;
    for chunk in tokens.chunks(1000) {
        let mut rows = Vec::with_capacity(chunk.len());
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 4);
        for (i, (account, deferred)) in chunk.iter().enumerate() {
            let n = i * 4;
            rows.push(format!(
                "(${}::bigint, ${}::text, ${}::text, ${}::timestamptz)",
                n + 1,
                n + 2,
                n + 3,
                n + 4
            ));
            values.extend([
                account.get().into(),
                deferred.from.clone().into(),
                deferred.to.clone().into(),
                deferred.at.into(),
            ]);
        }
        let sql = format!(
            "UPDATE sync_state AS s \
             SET sync_token = v.to_token, last_incremental_sync_at = v.at, \
                 last_result = 'ok', last_error = NULL, updated_at = v.at \
             FROM (VALUES {}) AS v (account_id, from_token, to_token, at) \
             WHERE s.account_id = v.account_id \
               AND s.sync_token IS NOT DISTINCT FROM v.from_token",
            rows.join(", ")
        );
        let result = conn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await?;
        written += result.rows_affected();
    }
    Ok(written)
}
