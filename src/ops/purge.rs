//! Purging blocks by marker, and removing an account with its blocks.

use std::fmt;

use super::listing::{delete_blocks, list_blocks, list_installation_blocks, ListedBlock};
use super::{chain, note_invalid_grant, OpsError};
use crate::services::Services;
use crate::store::{log_kind, Account, LogResult, NewLogEntry};
use crate::sync::MARKER_SOURCE_ACCOUNT_KEY;

/// What [`purge_account`] found and did on one calendar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub dry_run: bool,
    /// Live blocks of this installation found by marker.
    pub found: u64,
    /// Deleted now (0 in a dry run).
    pub deleted: u64,
    /// Already gone when deleted (a writer or the user was first).
    pub already_gone: u64,
    /// Outbox rows targeting this calendar that were dropped (counted only in a dry run).
    pub outbox_rows_dropped: u64,
    /// Set when the calendar could not be purged (the other calendars still were).
    pub error: Option<String>,
}

impl fmt::Display for PurgeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(error) = &self.error {
            return write!(f, "failed: {error}");
        }
        if self.dry_run {
            write!(
                f,
                "{} blocks would be deleted, {} outbox rows dropped",
                self.found, self.outbox_rows_dropped
            )
        } else {
            write!(
                f,
                "{} blocks found, {} deleted, {} already gone, {} outbox rows dropped",
                self.found, self.deleted, self.already_gone, self.outbox_rows_dropped
            )
        }
    }
}

/// Deletes every block this installation made on the account's calendar, found by marker
/// (`privateExtendedProperty=mcssInstallation=<installation>`), with `sendUpdates=none`, and
/// drops the outbox rows targeting the calendar so no writer puts them back. Needs no state
/// beyond the account's token. A dry run only counts.
#[tracing::instrument(name = "ops.purge_account", skip(services, account), fields(account = %account.id))]
pub async fn purge_account(
    services: &Services,
    account: &Account,
    dry_run: bool,
) -> Result<PurgeReport, OpsError> {
    let started = std::time::Instant::now();
    let client = services.account_client(account.id).await?;
    let listed = list_installation_blocks(&client, &account.calendar_id, &services.installation)
        .await
        .map_err(|e| OpsError::google(format!("cannot list the blocks of {}", account.alias), e));
    let listed = match listed {
        Ok(listed) => listed,
        Err(e) => {
            note_invalid_grant(services, account.id, &e).await;
            return Err(e);
        }
    };
    let live: Vec<&ListedBlock> = listed.iter().filter(|b| b.is_live()).collect();
    let rows = services.store.blocks_for_target(account.id).await?;
    let mut report = PurgeReport {
        dry_run,
        found: live.len() as u64,
        outbox_rows_dropped: rows.len() as u64,
        ..PurgeReport::default()
    };
    if dry_run {
        return Ok(report);
    }
    // Rows first: a writer that runs meanwhile then has nothing to re-create.
    for row in &rows {
        match services.store.delete_block_row(row.id).await {
            Ok(()) | Err(crate::store::StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (deleted, gone) = delete_blocks(&client, &account.calendar_id, &live)
        .await
        .map_err(|e| {
            OpsError::google(format!("cannot delete the blocks of {}", account.alias), e)
        })?;
    report.deleted = deleted;
    report.already_gone = gone;
    let entry = NewLogEntry::new(log_kind::PURGE, LogResult::Ok, "blocks purged by marker")
        .account(account.id)
        .count(i64::try_from(deleted).unwrap_or(i64::MAX))
        .duration(started.elapsed());
    if let Err(e) = services.store.append_log(entry).await {
        tracing::warn!(error = %e, "could not write the sync log");
    }
    Ok(report)
}

/// [`purge_account`] for every connected account, whatever its status (a paused account's
/// token still works). A calendar that cannot be reached is reported, not fatal.
pub async fn purge_all(
    services: &Services,
    dry_run: bool,
) -> Result<Vec<(Account, PurgeReport)>, OpsError> {
    let mut out = Vec::new();
    for account in services.store.list_accounts().await? {
        let report = match purge_account(services, &account, dry_run).await {
            Ok(report) => report,
            Err(e) if e.is_per_account() => PurgeReport {
                dry_run,
                error: Some(chain(&e)),
                ..PurgeReport::default()
            },
            Err(e) => return Err(e),
        };
        out.push((account, report));
    }
    Ok(out)
}

/// What [`retract_source_blocks`] did on each other calendar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetractReport {
    /// (target alias, blocks deleted, error) per other account.
    pub targets: Vec<(String, u64, Option<String>)>,
}

impl RetractReport {
    pub fn deleted(&self) -> u64 {
        self.targets.iter().map(|(_, n, _)| n).sum()
    }
}

/// Deletes, directly through the Google client, the blocks `source` placed on every other
/// connected calendar (found by `mcssSourceAccount=<id>` and our installation), and drops the
/// outbox rows made from `source`'s events. Used when removing an account without the
/// service running; a calendar that cannot be reached is reported and left to
/// reconciliation (its blocks are then orphans).
#[tracing::instrument(name = "ops.retract_source_blocks", skip(services, source), fields(account = %source.id))]
pub async fn retract_source_blocks(
    services: &Services,
    source: &Account,
) -> Result<RetractReport, OpsError> {
    let mut report = RetractReport::default();
    let source_key = source.id.to_string();
    for target in services.store.list_accounts().await? {
        if target.id == source.id {
            continue;
        }
        let result: Result<u64, OpsError> = async {
            let client = services.account_client(target.id).await?;
            let listed = list_blocks(
                &client,
                &target.calendar_id,
                &services.installation,
                MARKER_SOURCE_ACCOUNT_KEY,
                &source_key,
            )
            .await
            .map_err(|e| {
                OpsError::google(format!("cannot list the blocks on {}", target.alias), e)
            })?;
            let live: Vec<&ListedBlock> = listed.iter().filter(|b| b.is_live()).collect();
            let (deleted, _) = delete_blocks(&client, &target.calendar_id, &live)
                .await
                .map_err(|e| {
                    OpsError::google(format!("cannot delete the blocks on {}", target.alias), e)
                })?;
            Ok(deleted)
        }
        .await;
        match result {
            Ok(n) => report.targets.push((target.alias, n, None)),
            Err(e) if e.is_per_account() => {
                note_invalid_grant(services, target.id, &e).await;
                report.targets.push((target.alias, 0, Some(chain(&e))));
            }
            Err(e) => return Err(e),
        }
    }
    services.store.delete_blocks_from_source(source.id).await?;
    Ok(report)
}

/// What [`remove_account`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoveReport {
    pub retracted: RetractReport,
    /// Present when the account's own calendar was purged too.
    pub purged: Option<PurgeReport>,
}

impl fmt::Display for RemoveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "blocks removed from other calendars: {}",
            self.retracted.deleted()
        )?;
        for (alias, n, error) in &self.retracted.targets {
            match error {
                None => writeln!(f, "  {alias}: {n} deleted")?,
                Some(e) => writeln!(f, "  {alias}: failed: {e}")?,
            }
        }
        match &self.purged {
            Some(purged) => writeln!(f, "own calendar purged: {purged}"),
            None => writeln!(
                f,
                "own calendar: blocks left in place (use --purge to delete them)"
            ),
        }
    }
}

/// Removes an account without the service running: retracts its blocks from every other
/// calendar, with `purge` also deletes every block on its own calendar, then deletes the
/// account (its sync state, channels and the outbox rows targeting it go by cascade).
///
/// When its own calendar cannot be purged the account is kept, so the purge can be retried.
#[tracing::instrument(name = "ops.remove_account", skip(services, account), fields(account = %account.id))]
pub async fn remove_account(
    services: &Services,
    account: &Account,
    purge: bool,
) -> Result<RemoveReport, OpsError> {
    let retracted = retract_source_blocks(services, account).await?;
    let purged = if purge {
        Some(purge_account(services, account, false).await?)
    } else {
        None
    };
    services.store.delete_account(account.id).await?;
    services.forget_tokens(account.id);
    let entry = NewLogEntry::new(
        log_kind::ACCOUNT_REMOVED,
        LogResult::Ok,
        format!("account {} removed", account.id),
    )
    .account(account.id)
    .count(i64::try_from(retracted.deleted()).unwrap_or(i64::MAX));
    if let Err(e) = services.store.append_log(entry).await {
        tracing::warn!(error = %e, "could not write the sync log");
    }
    Ok(RemoveReport { retracted, purged })
}
