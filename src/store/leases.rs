//! Replicas and calendar leases: which running `mcss serve` owns which calendar, and the
//! fence every write of a calendar's state checks.
//!
//! Role: with several replicas on one PostgreSQL database, each calendar is owned by one live
//! replica at a time through a lease row `(owner, epoch, expires_at)` in `calendar_leases`.
//! The epoch goes up every time the lease changes hands, so a [`Fence`] — the
//! `(calendar, owner, epoch)` a replica holds — names one tenure exactly. The sync commit
//! (the source calendar's fence) and every outbox transition of the writers (claim and
//! record: the target calendar's fence) check it in their own transaction
//! ([`check_fence`]): a replica that lost its lease (paused, partitioned, killed and
//! restarted under a new id) can no longer move state.
//!
//! The check takes the lease row `FOR KEY SHARE`: it never waits on the owner's own renewals
//! (plain updates of non-key columns), but a change of owner — [`Store::acquire_leases`],
//! [`Store::hand_over_leases`], [`Store::release_leases`], which lock the row `FOR UPDATE`
//! first — waits until every fenced transaction of the old tenure has ended, so nothing of an
//! old tenure commits after a new one began. Takeovers skip rows that are busy (`SKIP
//! LOCKED`) and try again on the next tick.
//!
//! Time is the database's (`now()`): replicas' clocks never have to agree.
//!
//! Collaborators: `actors::ownership` drives everything here (heartbeat, acquire, renew, hand
//! over); `sync_state.rs` and `writes.rs` call [`check_fence`]; `http::forward` reads
//! [`Store::lease_owners`] to find where to send a ping. PostgreSQL only: SQLite runs one
//! replica (`sqlite_lock.rs`) and needs no fence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait};

use super::{Store, StoreError};
use crate::domain::AccountId;

/// The lease of `calendar` as `owner` holds it during one tenure (`epoch`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub calendar: AccountId,
    pub owner: Arc<str>,
    pub epoch: i64,
}

/// A lease this replica holds, as the database answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    pub calendar: AccountId,
    pub epoch: i64,
}

/// One row of `calendar_leases`, as the ownership loop sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub calendar: AccountId,
    /// The owner, when the lease has not expired.
    pub owner: Option<String>,
    pub epoch: i64,
}

/// A lease that changed hands in [`Store::hand_over_leases`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOver {
    pub calendar: AccountId,
    pub to: String,
}

/// How long an owner change may wait for the fenced transactions of the old tenure.
const HANDOVER_LOCK_TIMEOUT: &str = "2s";

fn pg(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// `1,2,3`: a list of ids as one text parameter, read back with `string_to_array`.
fn id_list(ids: impl IntoIterator<Item = AccountId>) -> String {
    ids.into_iter()
        .map(|id| id.get().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn held_rows(rows: Vec<sea_orm::QueryResult>) -> Result<Vec<HeldLease>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(HeldLease {
                calendar: AccountId::new(r.try_get::<i64>("", "account_id")?),
                epoch: r.try_get::<i64>("", "epoch")?,
            })
        })
        .collect()
}

impl Store {
    /// Registers `replica` or renews its heartbeat: live until `ttl` from now. A draining
    /// replica stays draining.
    pub async fn heartbeat_replica(&self, replica: &str, ttl: Duration) -> Result<(), StoreError> {
        self.connection()
            .execute_raw(pg(
                "INSERT INTO replicas (id, started_at, heartbeat_at, expires_at, draining) \
                 VALUES ($1, now(), now(), now() + $2 * interval '1 millisecond', false) \
                 ON CONFLICT (id) DO UPDATE \
                 SET heartbeat_at = now(), expires_at = EXCLUDED.expires_at",
                vec![replica.into(), millis(ttl).into()],
            ))
            .await?;
        Ok(())
    }

    /// The ids of the live replicas (heartbeat not lapsed, not draining), in order.
    pub async fn live_replicas(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .connection()
            .query_all_raw(pg(
                "SELECT id FROM replicas WHERE expires_at > now() AND NOT draining ORDER BY id",
                vec![],
            ))
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String>("", "id").map_err(StoreError::from))
            .collect()
    }

    /// `replica` is stopping: the others stop counting it as live at once.
    pub async fn mark_replica_draining(&self, replica: &str) -> Result<(), StoreError> {
        self.connection()
            .execute_raw(pg(
                "UPDATE replicas SET draining = true WHERE id = $1",
                vec![replica.into()],
            ))
            .await?;
        Ok(())
    }

    /// Forgets `replica`, and replicas whose heartbeat lapsed an hour ago.
    pub async fn remove_replica(&self, replica: &str) -> Result<(), StoreError> {
        self.connection()
            .execute_raw(pg(
                "DELETE FROM replicas WHERE id = $1 OR expires_at < now() - interval '1 hour'",
                vec![replica.into()],
            ))
            .await?;
        Ok(())
    }

    /// Every lease row; `owner` only where the lease has not expired.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let rows = self
            .connection()
            .query_all_raw(pg(
                "SELECT account_id, epoch, \
                   CASE WHEN expires_at > now() THEN owner END AS owner \
                 FROM calendar_leases",
                vec![],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LeaseRow {
                    calendar: AccountId::new(r.try_get::<i64>("", "account_id")?),
                    owner: r.try_get::<Option<String>>("", "owner")?,
                    epoch: r.try_get::<i64>("", "epoch")?,
                })
            })
            .collect()
    }

    /// Extends every unexpired lease of `owner` to `ttl` from now, and returns them — those
    /// handed to `owner` by another replica included. A lease that expired meanwhile is not
    /// renewed: it is lost, and only a new acquisition (a new epoch) brings it back.
    pub async fn renew_leases(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<HeldLease>, StoreError> {
        let rows = self
            .connection()
            .query_all_raw(pg(
                "UPDATE calendar_leases \
                 SET expires_at = now() + $2 * interval '1 millisecond', updated_at = now() \
                 WHERE owner = $1 AND expires_at > now() \
                 RETURNING account_id, epoch",
                vec![owner.into(), millis(ttl).into()],
            ))
            .await?;
        held_rows(rows)
    }

    /// Takes the leases of `calendars` that nobody holds (never leased, released, or
    /// expired) for `owner`, each under a new epoch; returns those taken. A lease whose row
    /// is busy (an old tenure's transaction still runs) is skipped, for the next attempt.
    pub async fn acquire_leases(
        &self,
        owner: &str,
        calendars: &[AccountId],
        ttl: Duration,
    ) -> Result<Vec<HeldLease>, StoreError> {
        if calendars.is_empty() {
            return Ok(Vec::new());
        }
        let ids = id_list(calendars.iter().copied());
        let txn = self.connection().begin().await?;
        txn.execute_raw(pg(
            "INSERT INTO calendar_leases (account_id, owner, epoch, expires_at, updated_at) \
             SELECT id, NULL, 0, NULL, now() FROM unnest(string_to_array($1, ',')::bigint[]) AS id \
             ON CONFLICT (account_id) DO NOTHING",
            vec![ids.clone().into()],
        ))
        .await?;
        let rows = txn
            .query_all_raw(pg(
                "UPDATE calendar_leases \
                 SET owner = $2, epoch = epoch + 1, \
                     expires_at = now() + $3 * interval '1 millisecond', updated_at = now() \
                 WHERE account_id IN ( \
                   SELECT account_id FROM calendar_leases \
                   WHERE account_id = ANY(string_to_array($1, ',')::bigint[]) \
                     AND (owner IS NULL OR expires_at IS NULL OR expires_at <= now()) \
                   FOR UPDATE SKIP LOCKED) \
                 RETURNING account_id, epoch",
                vec![ids.into(), owner.into(), millis(ttl).into()],
            ))
            .await?;
        txn.commit().await?;
        held_rows(rows)
    }

    /// Gives leases of `owner` straight to other replicas (`(calendar, new owner)`), each
    /// under a new epoch and live for `ttl`, so the new owner can start at once. With `wait`
    /// (a stopping replica) it waits briefly for its own fenced transactions to end;
    /// otherwise (rebalancing) a busy lease is skipped and moves on a later tick.
    pub async fn hand_over_leases(
        &self,
        owner: &str,
        moves: &[(AccountId, String)],
        ttl: Duration,
        wait: bool,
    ) -> Result<Vec<HandedOver>, StoreError> {
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        let ids = id_list(moves.iter().map(|(id, _)| *id));
        let owners = moves
            .iter()
            .map(|(_, to)| to.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let txn = self.connection().begin().await?;
        let lock = lock_clause(&txn, wait).await?;
        let rows = txn
            .query_all_raw(pg(
                &format!(
                    "UPDATE calendar_leases AS l \
                     SET owner = m.new_owner, epoch = l.epoch + 1, \
                         expires_at = now() + $4 * interval '1 millisecond', updated_at = now() \
                     FROM (SELECT unnest(string_to_array($2, ',')::bigint[]) AS account_id, \
                                  unnest(string_to_array($3, ',')) AS new_owner) AS m \
                     WHERE l.account_id = m.account_id AND l.account_id IN ( \
                       SELECT account_id FROM calendar_leases \
                       WHERE owner = $1 AND account_id = ANY(string_to_array($2, ',')::bigint[]) \
                       {lock}) \
                     RETURNING l.account_id, l.owner"
                ),
                vec![owner.into(), ids.into(), owners.into(), millis(ttl).into()],
            ))
            .await?;
        txn.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(HandedOver {
                    calendar: AccountId::new(r.try_get::<i64>("", "account_id")?),
                    to: r.try_get::<String>("", "owner")?,
                })
            })
            .collect()
    }

    /// Lets go of leases of `owner` — `calendars`, or all of them when `None` — so anyone
    /// may take them at once. Waits briefly for `owner`'s own fenced transactions, like a
    /// stopping hand-over. Returns how many were released.
    pub async fn release_leases(
        &self,
        owner: &str,
        calendars: Option<&[AccountId]>,
    ) -> Result<u64, StoreError> {
        let txn = self.connection().begin().await?;
        let lock = lock_clause(&txn, true).await?;
        let (only, mut values): (&str, Vec<sea_orm::Value>) = match calendars {
            Some(ids) => (
                "AND account_id = ANY(string_to_array($2, ',')::bigint[])",
                vec![id_list(ids.iter().copied()).into()],
            ),
            None => ("", vec![]),
        };
        values.insert(0, owner.into());
        let result = txn
            .execute_raw(pg(
                &format!(
                    "UPDATE calendar_leases SET owner = NULL, expires_at = NULL, updated_at = now() \
                     WHERE account_id IN (SELECT account_id FROM calendar_leases \
                       WHERE owner = $1 {only} {lock})"
                ),
                values,
            ))
            .await?;
        txn.commit().await?;
        Ok(result.rows_affected())
    }

    /// Who holds the unexpired leases of `calendars` (calendars nobody holds are left out).
    pub async fn lease_owners(
        &self,
        calendars: &[AccountId],
    ) -> Result<Vec<(AccountId, String)>, StoreError> {
        if calendars.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .connection()
            .query_all_raw(pg(
                "SELECT account_id, owner FROM calendar_leases \
                 WHERE account_id = ANY(string_to_array($1, ',')::bigint[]) \
                   AND owner IS NOT NULL AND expires_at > now()",
                vec![id_list(calendars.iter().copied()).into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    AccountId::new(r.try_get::<i64>("", "account_id")?),
                    r.try_get::<String>("", "owner")?,
                ))
            })
            .collect()
    }

    /// Sends `payload` on the `NOTIFY` channel `channel` (delivered when the transaction —
    /// here this one statement — commits).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        self.connection()
            .execute_raw(pg(
                "SELECT pg_notify($1, $2)",
                vec![channel.into(), payload.into()],
            ))
            .await?;
        Ok(())
    }

    /// Deletes the lease rows of accounts that no longer exist.
    pub async fn sweep_leases(&self) -> Result<u64, StoreError> {
        let result = self
            .connection()
            .execute_raw(pg(
                "DELETE FROM calendar_leases WHERE account_id NOT IN (SELECT id FROM accounts)",
                vec![],
            ))
            .await?;
        Ok(result.rows_affected())
    }
}

/// `FOR UPDATE` with a bounded wait, or `FOR UPDATE SKIP LOCKED`.
async fn lock_clause(txn: &DatabaseTransaction, wait: bool) -> Result<&'static str, StoreError> {
    if !wait {
        return Ok("FOR UPDATE SKIP LOCKED");
    }
    txn.execute_unprepared(&format!(
        "SET LOCAL lock_timeout = '{HANDOVER_LOCK_TIMEOUT}'"
    ))
    .await?;
    Ok("FOR UPDATE")
}

/// Fails with [`StoreError::Fenced`] unless `fence` is still the live lease of its calendar;
/// holds the lease row `FOR KEY SHARE` until `txn` ends (see the module docs).
pub(crate) async fn check_fence<C: ConnectionTrait>(
    conn: &C,
    fence: &Fence,
) -> Result<(), StoreError> {
    check_fences(conn, &[fence]).await
}

/// [`check_fence`] of many fences in one statement. Fails with the first calendar whose
/// fence is not its live lease. The rows are found by their key alone: `owner` is the same
/// in every row one replica holds, and an index on it would lead the planner to read them all.
pub(crate) async fn check_fences<C: ConnectionTrait>(
    conn: &C,
    fences: &[&Fence],
) -> Result<(), StoreError> {
    if fences.is_empty() {
        return Ok(());
    }
    let rows = conn
        .query_all_raw(pg(
            "SELECT account_id, epoch, CASE WHEN expires_at > now() THEN owner END AS owner \
             FROM calendar_leases \
             WHERE account_id = ANY(string_to_array($1, ',')::bigint[]) \
             FOR KEY SHARE",
            vec![id_list(fences.iter().map(|f| f.calendar)).into()],
        ))
        .await?;
    let mut live: HashMap<i64, (i64, String)> = HashMap::new();
    for row in rows {
        if let Some(owner) = row.try_get::<Option<String>>("", "owner")? {
            live.insert(
                row.try_get::<i64>("", "account_id")?,
                (row.try_get::<i64>("", "epoch")?, owner),
            );
        }
    }
    let held = |f: &Fence| {
        live.get(&f.calendar.get())
            .is_some_and(|(epoch, owner)| *epoch == f.epoch && **owner == *f.owner)
    };
    match fences.iter().find(|f| !held(f)) {
        Some(lapsed) => Err(StoreError::Fenced {
            calendar: lapsed.calendar,
        }),
        None => Ok(()),
    }
}

/// The fenced claim of [`Store::claim_due_fenced`] on PostgreSQL: the lease is checked in the
/// same statement, and the lease holder may take any due row (a claim by anyone else is left
/// over from an earlier tenure).
pub(crate) fn fenced_claim_sql(occurrence: &str) -> String {
    format!(
        "WITH fence AS (SELECT 1 FROM calendar_leases \
           WHERE account_id = $3 AND owner = $7 AND epoch = $8 AND expires_at > now() \
           FOR KEY SHARE) \
         UPDATE desired_blocks SET claimed_by = $1, claim_expires_at = $2 \
         WHERE id IN (SELECT id FROM desired_blocks \
           WHERE target_account_id = $3 AND state = $4 AND next_attempt_at <= $5 \
             AND EXISTS (SELECT 1 FROM fence) \
           ORDER BY next_attempt_at, CASE WHEN role = '{occurrence}' THEN 1 ELSE 0 END, id \
           LIMIT $6 FOR UPDATE SKIP LOCKED) \
         RETURNING id"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_travel_as_one_comma_separated_parameter() {
        let ids = [AccountId::new(3), AccountId::new(10), AccountId::new(7)];

        assert_eq!(id_list(ids), "3,10,7");
        assert_eq!(id_list([]), "");
    }
}
