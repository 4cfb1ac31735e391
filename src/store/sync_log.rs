//! The sync log: an append-only audit trail for the operator.

use sea_orm::{
    ColumnTrait as _, ConnectionTrait, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Select, Set,
};

use super::entities::sync_log;
use super::{now, LogEntry, LogQuery, LogResult, NewLogEntry, Store, StoreError};
use crate::domain::AccountId;

/// Upper bound of one page, whatever the caller asks.
const MAX_PAGE: u64 = 1000;

fn to_record(row: sync_log::Model) -> Result<LogEntry, StoreError> {
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
}

fn filtered(query: &LogQuery) -> Select<sync_log::Entity> {
    let mut select = sync_log::Entity::find();
    if let Some(account) = query.account_id {
        select = select.filter(sync_log::Column::AccountId.eq(account.get()));
    }
    if let Some(kind) = &query.kind {
        select = select.filter(sync_log::Column::Kind.eq(kind.as_str()));
    }
    if let Some(result) = query.result {
        select = select.filter(sync_log::Column::Result.eq(result.as_str()));
    }
    select
}

impl Store {
    /// Appends a line, stamped now.
    pub async fn append_log(&self, entry: NewLogEntry) -> Result<(), StoreError> {
        super::counters::write_transaction();
        insert_log_rows(self.connection(), vec![entry]).await
    }

    /// Appends a line where the audit trail must not stop the work: a failure is logged as
    /// a warning and otherwise ignored.
    pub async fn log_best_effort(&self, entry: NewLogEntry) {
        if let Err(e) = self.append_log(entry).await {
            tracing::warn!(error = %e, "could not write the sync log");
        }
    }

    /// A page of matching lines, newest first (`limit` is capped at 1000).
    pub async fn recent_log(&self, query: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        filtered(query)
            .order_by_desc(sync_log::Column::At)
            .order_by_desc(sync_log::Column::Id)
            .offset(query.offset)
            .limit(query.limit.min(MAX_PAGE))
            .all(self.connection())
            .await?
            .into_iter()
            .map(to_record)
            .collect()
    }

    /// How many lines match the filters of `query` (its page is ignored).
    pub async fn log_count(&self, query: &LogQuery) -> Result<u64, StoreError> {
        Ok(filtered(query).count(self.connection()).await?)
    }
}

/// Inserts lines stamped now, in one statement, on `conn` (a transaction or the pool).
pub(super) async fn insert_log_rows(
    conn: &impl ConnectionTrait,
    entries: Vec<NewLogEntry>,
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    super::counters::audit_rows(entries.len());
    let at = now();
    let rows: Vec<sync_log::ActiveModel> = entries
        .into_iter()
        .map(|entry| sync_log::ActiveModel {
            at: Set(at),
            account_id: Set(entry.account_id.map(AccountId::get)),
            kind: Set(entry.kind),
            result: Set(entry.result.as_str().to_owned()),
            detail: Set(entry.detail),
            count: Set(entry.count),
            duration_ms: Set(entry.duration_ms),
            ..Default::default()
        })
        .collect();
    // Well under SQLite's bound-variable limit per statement.
    for chunk in rows.chunks(500) {
        sync_log::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}
