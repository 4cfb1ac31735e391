//! Purging blocks by marker, and removing an account with its blocks.
//!
//! Both find the blocks at Google by their marker (no outbox state needed to find them),
//! then queue the deletions in the outbox and let the writers apply them ([`BlockWrites`]),
//! so they go through the same token bucket, backoff, claims and audit as every sync.

use std::fmt;

use super::listing::{list_blocks, list_installation_blocks, ListedBlock};
use super::writes::{BlockWrites, DRAIN_DEADLINE};
use super::{chain, note_invalid_grant, OpsError};
use crate::domain::{AccountId, BlockId, EventId};
use crate::services::Services;
use crate::store::{log_kind, Account, Deletion, LogResult, NewLogEntry, RowRole};
use crate::sync::MARKER_SOURCE_ACCOUNT_KEY;

/// What [`purge_account`] found and did on one calendar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub dry_run: bool,
    /// Live blocks of this installation found by marker.
    pub found: u64,
    /// Deleted now (0 in a dry run).
    pub deleted: u64,
    /// Outbox rows that wanted a block no longer there (a writer or the user was first).
    pub already_gone: u64,
    /// Outbox rows targeting this calendar that were retracted.
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

/// The deletions for the live blocks listed on a calendar: block series and single blocks
/// (a series' occurrences go with it at Google), and occurrences whose series was not
/// listed (deleted on their own).
pub(super) fn deletions_for(blocks: &[&ListedBlock]) -> Vec<Deletion> {
    let series: std::collections::HashSet<&str> = blocks
        .iter()
        .filter(|b| !b.is_occurrence())
        .map(|b| b.id.as_str())
        .collect();
    blocks
        .iter()
        .filter(|b| {
            !b.event
                .recurring_event_id
                .as_ref()
                .is_some_and(|s| series.contains(s.as_str()))
        })
        .filter_map(|b| deletion_of(b))
        .collect()
}

fn deletion_of(block: &ListedBlock) -> Option<Deletion> {
    let block_id = BlockId::parse(block.id.as_str()).ok()?;
    let role = if block
        .event
        .recurrence
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        RowRole::Series
    } else {
        RowRole::Single
    };
    let source_event = EventId::parse(&block.marker.source_event)
        .ok()
        .or_else(|| EventId::parse(block.id.as_str()).ok())?;
    Some(Deletion {
        source_account: AccountId::parse(&block.marker.source_account)
            .unwrap_or_else(|_| AccountId::new(0)),
        source_event,
        block_id,
        role,
        series_block_id: None,
    })
}

/// Deletes every block this installation made on the account's calendar, found by marker
/// (`privateExtendedProperty=mcssInstallation=<installation>`), through the outbox: the
/// rows targeting the calendar are retracted (so no writer puts them back), the blocks found
/// are queued for deletion, and the calendar's writer applies them. A dry run only counts.
#[tracing::instrument(name = "ops.purge_account", skip(services, writes, account), fields(account = %account.id))]
pub async fn purge_account(
    services: &Services,
    writes: &dyn BlockWrites,
    account: &Account,
    dry_run: bool,
) -> Result<PurgeReport, OpsError> {
    let mut report = queue_purge(services, account, dry_run).await?;
    if dry_run {
        return Ok(report);
    }
    writes.wake(account.id).await;
    finish_purge(services, writes, account, &mut report).await;
    Ok(report)
}

/// Finds the blocks and queues their deletion (or, in a dry run, only counts).
async fn queue_purge(
    services: &Services,
    account: &Account,
    dry_run: bool,
) -> Result<PurgeReport, OpsError> {
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
    services.store.retract_blocks_on_target(account.id).await?;
    let deletions = deletions_for(&live);
    services
        .store
        .queue_deletions(account.id, &deletions)
        .await?;
    let known: std::collections::HashSet<&str> =
        deletions.iter().map(|d| d.block_id.as_str()).collect();
    report.already_gone = rows
        .iter()
        .filter(|r| r.series_block_id.is_none() && !known.contains(r.block_id.as_str()))
        .count() as u64;
    Ok(report)
}

/// Waits for the writer, then reports and logs.
async fn finish_purge(
    services: &Services,
    writes: &dyn BlockWrites,
    account: &Account,
    report: &mut PurgeReport,
) {
    let waiting = writes.drained(&[account.id], DRAIN_DEADLINE).await;
    if waiting.is_empty() {
        report.deleted = report.found;
    } else {
        report.error = Some(format!(
            "the deletions on {} are queued but not all done yet (see `mcss accounts list`)",
            account.alias
        ));
    }
    services
        .store
        .log_best_effort(
            NewLogEntry::new(log_kind::PURGE, LogResult::Ok, "blocks purged by marker")
                .account(account.id)
                .count(i64::try_from(report.deleted).unwrap_or(i64::MAX)),
        )
        .await;
}

/// [`purge_account`] for every connected account, whatever its status (a paused account's
/// token still works): everything is queued first, then the writers work in parallel. A
/// calendar that cannot be reached is reported, not fatal.
pub async fn purge_all(
    services: &Services,
    writes: &dyn BlockWrites,
    dry_run: bool,
) -> Result<Vec<(Account, PurgeReport)>, OpsError> {
    let mut out = Vec::new();
    for account in services.store.list_accounts().await? {
        let report = match queue_purge(services, &account, dry_run).await {
            Ok(report) => report,
            Err(e) if e.is_per_account() => PurgeReport {
                dry_run,
                error: Some(chain(&e)),
                ..PurgeReport::default()
            },
            Err(e) => return Err(e),
        };
        if !dry_run && report.error.is_none() {
            writes.wake(account.id).await;
        }
        out.push((account, report));
    }
    if !dry_run {
        for (account, report) in out.iter_mut().filter(|(_, r)| r.error.is_none()) {
            finish_purge(services, writes, account, report).await;
        }
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

/// Queues the deletion of the blocks `source` placed on every other connected calendar
/// (found by `mcssSourceAccount=<id>` and our installation, and by the outbox rows made from
/// its events) and wakes those calendars' writers; it does not wait for them (the rows
/// outlive the account, so a paused calendar's blocks go when it runs again). A calendar that
/// cannot be reached is reported and left to reconciliation (its blocks are then orphans).
#[tracing::instrument(name = "ops.retract_source_blocks", skip(services, writes, source), fields(account = %source.id))]
pub async fn retract_source_blocks(
    services: &Services,
    writes: &dyn BlockWrites,
    source: &Account,
) -> Result<RetractReport, OpsError> {
    let mut report = RetractReport::default();
    services.store.retract_blocks_from_source(source.id).await?;
    for target in services.store.list_accounts().await? {
        if target.id == source.id {
            continue;
        }
        match queue_retraction(services, source, &target).await {
            Ok(n) => {
                writes.wake(target.id).await;
                report.targets.push((target.alias, n, None));
            }
            Err(e) if e.is_per_account() => {
                note_invalid_grant(services, target.id, &e).await;
                report.targets.push((target.alias, 0, Some(chain(&e))));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// Queues the deletion of `source`'s blocks found on `target`; returns how many were found.
async fn queue_retraction(
    services: &Services,
    source: &Account,
    target: &Account,
) -> Result<u64, OpsError> {
    let client = services.account_client(target.id).await?;
    let listed = list_blocks(
        &client,
        &target.calendar_id,
        &services.installation,
        MARKER_SOURCE_ACCOUNT_KEY,
        &source.id.to_string(),
    )
    .await
    .map_err(|e| OpsError::google(format!("cannot list the blocks on {}", target.alias), e))?;
    let live: Vec<&ListedBlock> = listed.iter().filter(|b| b.is_live()).collect();
    services
        .store
        .queue_deletions(target.id, &deletions_for(&live))
        .await?;
    Ok(live.len() as u64)
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

/// Removes an account (the command line's way, with the service stopped): retracts its
/// blocks from every other calendar and waits for those writes, with `purge` also deletes
/// every block on its own calendar, then deletes the account (its sync state, channels and
/// the outbox rows targeting it go by cascade).
///
/// When its own calendar cannot be purged the account is kept, so the purge can be retried.
#[tracing::instrument(name = "ops.remove_account", skip(services, writes, account), fields(account = %account.id))]
pub async fn remove_account(
    services: &Services,
    writes: &dyn BlockWrites,
    account: &Account,
    purge: bool,
) -> Result<RemoveReport, OpsError> {
    let mut retracted = retract_source_blocks(services, writes, account).await?;
    let others: Vec<Account> = services
        .store
        .list_accounts()
        .await?
        .into_iter()
        .filter(|a| a.id != account.id)
        .collect();
    let ids: Vec<AccountId> = others.iter().map(|a| a.id).collect();
    let waiting = writes.drained(&ids, DRAIN_DEADLINE).await;
    for other in others.iter().filter(|a| waiting.contains(&a.id)) {
        for target in retracted
            .targets
            .iter_mut()
            .filter(|t| t.0 == other.alias && t.2.is_none())
        {
            target.2 = Some("deletions queued; they finish when that calendar syncs again".into());
        }
    }
    let purged = if purge {
        let report = purge_account(services, writes, account, false).await?;
        if let Some(error) = &report.error {
            return Err(OpsError::Incomplete(error.clone()));
        }
        Some(report)
    } else {
        None
    };
    services.store.delete_account(account.id).await?;
    services.forget_tokens(account.id);
    services
        .store
        .log_best_effort(
            NewLogEntry::new(
                log_kind::ACCOUNT_REMOVED,
                LogResult::Ok,
                format!("account {} removed", account.id),
            )
            .account(account.id)
            .count(i64::try_from(retracted.deleted()).unwrap_or(i64::MAX)),
        )
        .await;
    Ok(RemoveReport { retracted, purged })
}
