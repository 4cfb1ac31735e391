//! Reconciliation: what the calendars actually hold (found by marker) against the outbox.
//!
//! For each usable account (paused and `needs_reauth` ones are skipped):
//! - **duplicates**: several live blocks with the same (source account, source event) marker
//!   but different ids — all but the one the outbox knows (else the deterministic id) go;
//! - **orphans**: a live block with no outbox row, or whose row wants it gone — deleted;
//! - **user deletions**: an applied row whose block is a cancelled tombstone — excluded, so
//!   it is not put back;
//! - **missing**: an applied row whose block does not exist at all — requeued;
//! - **drift**: an applied row whose block's summary, description, start or end differ from
//!   the body — requeued (the writer patches it back).
//!
//! Rows that are pending, failed or excluded are left to the writers. A dry run only counts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone as _, Utc};

use super::listing::{list_installation_blocks, ListedBlock};
use super::purge::deletions_for;
use super::writes::BlockWrites;
use super::{chain, note_invalid_grant, usable, OpsError};
use crate::domain::{AccountId, EventId};
use crate::google::{AccountClient, Event, EventDateTime, EventStatus, GoogleError};
use crate::services::Services;
use crate::store::{log_kind, Account, BlockState, LogResult, NewLogEntry, OutboxRow, StoreError};
use crate::sync::{block_id, BlockBody, BlockTime};

/// What reconciliation found and did on one calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountReconcile {
    pub account: AccountId,
    pub alias: String,
    /// Live blocks of this installation on the calendar.
    pub blocks_seen: u64,
    pub orphans_deleted: u64,
    pub duplicates_deleted: u64,
    pub requeued: u64,
    pub excluded: u64,
    /// Why the calendar was not looked at (paused, needs_reauth).
    pub skipped: Option<String>,
    /// Why the calendar could not be reconciled (the others still were).
    pub error: Option<String>,
}

/// What [`reconcile`] found and did, in total and per account. In a dry run the counts say
/// what would have been done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub dry_run: bool,
    pub orphans_deleted: u64,
    pub duplicates_deleted: u64,
    pub requeued: u64,
    pub excluded: u64,
    pub accounts: Vec<AccountReconcile>,
}

impl AccountReconcile {
    fn new(account: &Account) -> Self {
        Self {
            account: account.id,
            alias: account.alias.clone(),
            blocks_seen: 0,
            orphans_deleted: 0,
            duplicates_deleted: 0,
            requeued: 0,
            excluded: 0,
            skipped: None,
            error: None,
        }
    }
}

impl AccountReconcile {
    /// Rows this account got to write.
    fn changed(&self) -> u64 {
        self.orphans_deleted + self.duplicates_deleted + self.requeued
    }
}

impl ReconcileReport {
    /// Accounts that failed (not the skipped ones).
    pub fn failures(&self) -> usize {
        self.accounts.iter().filter(|a| a.error.is_some()).count()
    }

    fn add(&mut self, account: AccountReconcile) {
        self.orphans_deleted += account.orphans_deleted;
        self.duplicates_deleted += account.duplicates_deleted;
        self.requeued += account.requeued;
        self.excluded += account.excluded;
        self.accounts.push(account);
    }
}

impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (delete, requeue, exclude) = if self.dry_run {
            ("would delete", "would requeue", "would exclude")
        } else {
            ("deleted", "requeued", "excluded")
        };
        writeln!(
            f,
            "reconcile{}: {delete} {} orphans and {} duplicates, {requeue} {}, {exclude} {}",
            if self.dry_run { " (dry run)" } else { "" },
            self.orphans_deleted,
            self.duplicates_deleted,
            self.requeued,
            self.excluded
        )?;
        for a in &self.accounts {
            write!(f, "  {:<14} ", a.alias)?;
            match (&a.skipped, &a.error) {
                (Some(why), _) => writeln!(f, "skipped: {why}")?,
                (_, Some(error)) => writeln!(f, "failed: {error}")?,
                _ => writeln!(
                    f,
                    "{} blocks; orphans {}, duplicates {}, requeued {}, excluded {}",
                    a.blocks_seen, a.orphans_deleted, a.duplicates_deleted, a.requeued, a.excluded
                )?,
            }
        }
        Ok(())
    }
}

/// Compares every calendar's blocks (by marker) with the outbox: orphans and duplicates
/// queued for deletion, drift and missing blocks re-queued, user deletions excluded, and the
/// writers of the calendars with new work woken (`writes`: they apply it). Dry run only
/// reports. A calendar that cannot be reached is reported in its [`AccountReconcile`].
#[tracing::instrument(name = "ops.reconcile", skip(services, writes))]
pub async fn reconcile(
    services: &Services,
    writes: &dyn BlockWrites,
    dry_run: bool,
) -> Result<ReconcileReport, OpsError> {
    let started = std::time::Instant::now();
    let accounts = services.store.list_accounts().await?;
    let by_id: HashMap<AccountId, &Account> = accounts.iter().map(|a| (a.id, a)).collect();
    let mut report = ReconcileReport {
        dry_run,
        ..ReconcileReport::default()
    };
    for account in &accounts {
        let mut outcome = AccountReconcile::new(account);
        if !usable(account) {
            outcome.skipped = Some(format!("status {}", account.status));
            report.add(outcome);
            continue;
        }
        match reconcile_account(services, account, &by_id, dry_run, &mut outcome).await {
            Ok(()) => {}
            Err(e) if e.is_per_account() => {
                note_invalid_grant(services, account.id, &e).await;
                outcome.error = Some(chain(&e));
            }
            Err(e) => return Err(e),
        }
        if !dry_run && outcome.changed() > 0 {
            writes.wake(account.id).await;
        }
        report.add(outcome);
    }
    if !dry_run {
        let changed =
            report.orphans_deleted + report.duplicates_deleted + report.requeued + report.excluded;
        let result = if report.failures() == 0 {
            LogResult::Ok
        } else {
            LogResult::Error
        };
        let entry = NewLogEntry::new(
            log_kind::RECONCILE,
            result,
            format!(
                "orphans {}, duplicates {}, requeued {}, excluded {}, failed accounts {}",
                report.orphans_deleted,
                report.duplicates_deleted,
                report.requeued,
                report.excluded,
                report.failures()
            ),
        )
        .count(i64::try_from(changed).unwrap_or(i64::MAX))
        .duration(started.elapsed());
        services.store.log_best_effort(entry).await;
    }
    tracing::info!(
        orphans = report.orphans_deleted,
        duplicates = report.duplicates_deleted,
        requeued = report.requeued,
        excluded = report.excluded,
        dry_run,
        "reconciled"
    );
    Ok(report)
}

/// One calendar's blocks as listed (by marker) beside its outbox rows.
struct Calendar<'a> {
    account: &'a Account,
    client: AccountClient,
    rows: HashMap<String, OutboxRow>,
    live: BTreeMap<String, &'a ListedBlock>,
    cancelled: HashSet<&'a str>,
}

impl Calendar<'_> {
    /// The outbox wants a block under this id.
    fn wanted(&self, id: &str) -> bool {
        self.rows.get(id).is_some_and(|row| row.body.is_some())
    }
}

async fn reconcile_account(
    services: &Services,
    account: &Account,
    accounts: &HashMap<AccountId, &Account>,
    dry_run: bool,
    out: &mut AccountReconcile,
) -> Result<(), OpsError> {
    let client = services.account_client(account.id).await?;
    let listed = list_installation_blocks(&client, &account.calendar_id, &services.installation)
        .await
        .map_err(|e| OpsError::google(format!("cannot list the blocks on {}", account.alias), e))?;
    let rows = services
        .store
        .blocks_for_target(account.id)
        .await?
        .into_iter()
        .map(|row| (row.block_id.as_str().to_owned(), row))
        .collect();
    let mut calendar = Calendar {
        account,
        client,
        rows,
        live: BTreeMap::new(),
        cancelled: HashSet::new(),
    };
    for block in &listed {
        if block.is_live() {
            calendar.live.insert(block.id.as_str().to_owned(), block);
        } else {
            calendar.cancelled.insert(block.id.as_str());
        }
    }
    out.blocks_seen = calendar.live.len() as u64;
    let mut doomed = duplicates(services, accounts, &calendar);
    doomed.extend(orphans(&calendar, &doomed));
    queue_doomed(services, &calendar, &doomed, dry_run, out).await?;
    check_applied_rows(services, &calendar, dry_run, out).await
}

/// Several live blocks with the same (source account, source event) marker: all but the one
/// the outbox knows (else the deterministic id) go. Occurrences share their series' marker
/// and are left out.
fn duplicates(
    services: &Services,
    accounts: &HashMap<AccountId, &Account>,
    calendar: &Calendar<'_>,
) -> Vec<(EventId, Kind)> {
    let mut groups: BTreeMap<(&str, &str), Vec<&ListedBlock>> = BTreeMap::new();
    for block in calendar.live.values().filter(|b| !b.is_occurrence()) {
        groups
            .entry((&block.marker.source_account, &block.marker.source_event))
            .or_default()
            .push(block);
    }
    let mut doomed = Vec::new();
    for ((source_account, source_event), blocks) in &groups {
        if blocks.len() < 2 {
            continue;
        }
        let deterministic = deterministic_id(
            services,
            accounts,
            calendar.account,
            source_account,
            source_event,
        );
        let keeper = blocks
            .iter()
            .find(|b| calendar.wanted(b.id.as_str()))
            .or_else(|| {
                blocks
                    .iter()
                    .find(|b| deterministic.as_deref() == Some(b.id.as_str()))
            });
        // Without a keeper every copy is an orphan, which `orphans` finds.
        if let Some(keeper) = keeper {
            for b in blocks.iter().filter(|b| b.id != keeper.id) {
                doomed.push((b.id.clone(), Kind::Duplicate));
            }
        }
    }
    doomed
}

/// Live blocks nobody wants. An occurrence belongs to its series' row.
fn orphans(calendar: &Calendar<'_>, duplicates: &[(EventId, Kind)]) -> Vec<(EventId, Kind)> {
    let duplicate_ids: HashSet<&str> = duplicates.iter().map(|(id, _)| id.as_str()).collect();
    calendar
        .live
        .iter()
        .filter(|(id, _)| !duplicate_ids.contains(id.as_str()) && !calendar.wanted(id))
        .filter(|(_, block)| {
            !block
                .event
                .recurring_event_id
                .as_ref()
                .is_some_and(|s| calendar.wanted(s.as_str()))
        })
        .map(|(_, block)| (block.id.clone(), Kind::Orphan))
        .collect()
}

/// Counts the doomed blocks and, unless dry, queues their deletion for the writer.
async fn queue_doomed(
    services: &Services,
    calendar: &Calendar<'_>,
    doomed: &[(EventId, Kind)],
    dry_run: bool,
    out: &mut AccountReconcile,
) -> Result<(), OpsError> {
    for (_, kind) in doomed {
        match kind {
            Kind::Duplicate => out.duplicates_deleted += 1,
            Kind::Orphan => out.orphans_deleted += 1,
        }
    }
    if dry_run || doomed.is_empty() {
        return Ok(());
    }
    let blocks: Vec<&ListedBlock> = doomed
        .iter()
        .filter_map(|(id, _)| calendar.live.get(id.as_str()).copied())
        .collect();
    services
        .store
        .queue_deletions(calendar.account.id, &deletions_for(&blocks))
        .await?;
    Ok(())
}

/// Applied rows: is their block there, and as written? Drifted and missing blocks are
/// requeued; a block the user deleted is excluded.
async fn check_applied_rows(
    services: &Services,
    calendar: &Calendar<'_>,
    dry_run: bool,
    out: &mut AccountReconcile,
) -> Result<(), OpsError> {
    for row in calendar.rows.values() {
        if row.state != BlockState::Applied {
            continue;
        }
        let Some(body) = row.body.as_ref() else {
            continue;
        };
        let body: BlockBody = match serde_json::from_value(body.clone()) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(row = %row.id, error = %e, "outbox body does not parse; requeued");
                requeue(services, row, dry_run, out).await?;
                continue;
            }
        };
        if body.is_cancelled() {
            continue;
        }
        match found(calendar, row).await? {
            Found::Live(event) if drifted(&body, &event) => {
                requeue(services, row, dry_run, out).await?;
            }
            Found::Live(_) => {}
            Found::Deleted => exclude(services, calendar.account, row, dry_run, out).await?,
            Found::Missing => requeue(services, row, dry_run, out).await?,
        }
    }
    Ok(())
}

/// What the calendar holds under a row's block id.
async fn found(calendar: &Calendar<'_>, row: &OutboxRow) -> Result<Found, OpsError> {
    let id = row.block_id.as_str();
    if let Some(block) = calendar.live.get(id) {
        return Ok(Found::Live(Box::new(block.event.clone())));
    }
    if calendar.cancelled.contains(id) {
        return Ok(Found::Deleted);
    }
    let event_id = EventId::parse(id)
        .map_err(|e| OpsError::Store(StoreError::Corrupt(format!("block id {id}: {e}"))))?;
    look_up(&calendar.client, calendar.account, &event_id).await
}

/// The user deleted this block: it stays deleted.
async fn exclude(
    services: &Services,
    account: &Account,
    row: &OutboxRow,
    dry_run: bool,
    out: &mut AccountReconcile,
) -> Result<(), OpsError> {
    out.excluded += 1;
    if dry_run {
        return Ok(());
    }
    services.store.mark_excluded(row.id).await?;
    let entry = NewLogEntry::new(
        log_kind::BLOCK_EXCLUDED,
        LogResult::Ok,
        format!(
            "block {} was deleted by the user; it stays deleted",
            row.block_id
        ),
    )
    .account(account.id);
    services.store.log_best_effort(entry).await;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Duplicate,
    Orphan,
}

enum Found {
    Live(Box<Event>),
    /// A tombstone: someone deleted it.
    Deleted,
    /// Never existed (or is not visible).
    Missing,
}

/// A block the listing did not show: a get tells a tombstone (a user deletion) from nothing.
async fn look_up(
    client: &AccountClient,
    account: &Account,
    id: &EventId,
) -> Result<Found, OpsError> {
    match client.events_get(&account.calendar_id, id).await {
        Ok(event) if matches!(event.status, Some(EventStatus::Cancelled)) => Ok(Found::Deleted),
        Ok(event) => Ok(Found::Live(Box::new(event))),
        Err(GoogleError::Gone) => Ok(Found::Deleted),
        Err(GoogleError::NotFound) => Ok(Found::Missing),
        Err(e) => Err(OpsError::google(
            format!("cannot read a block on {}", account.alias),
            e,
        )),
    }
}

/// The id the writer would have used for this marker, when its source account is known.
fn deterministic_id(
    services: &Services,
    accounts: &HashMap<AccountId, &Account>,
    target: &Account,
    source_account: &str,
    source_event: &str,
) -> Option<String> {
    let source = accounts.get(&AccountId::parse(source_account).ok()?)?;
    let event = EventId::parse(source_event).ok()?;
    Some(
        block_id(
            &services.installation,
            &source.calendar_id,
            &event,
            &target.calendar_id,
        )
        .into_string(),
    )
}

/// Puts an applied row back to pending, due now, forgetting what was applied so the writer
/// writes it again (without a stale `If-Match`).
async fn requeue(
    services: &Services,
    row: &OutboxRow,
    dry_run: bool,
    out: &mut AccountReconcile,
) -> Result<(), OpsError> {
    out.requeued += 1;
    if dry_run {
        return Ok(());
    }
    services.store.requeue_applied_block(row.id).await?;
    Ok(())
}

/// Whether the block on the calendar differs from the body in what a user sees.
fn drifted(body: &BlockBody, event: &Event) -> bool {
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    text(&body.summary) != text(&event.summary)
        || text(&body.description) != text(&event.description)
        || !same_time(body.start.as_ref(), event.start.as_ref())
        || !same_time(body.end.as_ref(), event.end.as_ref())
}

/// All-day dates must be equal; timed values must be the same instant (Google renders them
/// in the calendar's zone, so the text differs).
fn same_time(want: Option<&BlockTime>, have: Option<&EventDateTime>) -> bool {
    let (Some(want), Some(have)) = (want, have) else {
        return want.is_none() && have.is_none();
    };
    if let Some(date) = &want.date {
        return have
            .date
            .map(|d| d.format("%Y-%m-%d").to_string())
            .as_deref()
            == Some(date);
    }
    match (want.date_time.as_deref(), have.date_time) {
        (Some(raw), Some(have)) => instant(raw, want.time_zone.as_deref())
            .is_none_or(|want| want == have.with_timezone(&Utc)),
        (None, None) => true,
        _ => false,
    }
}

/// An RFC 3339 time, or a local time in `zone`; `None` when it cannot be read (then it is
/// not called drift: the writer would have been refused such a body anyway).
fn instant(raw: &str, zone: Option<&str>) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::<FixedOffset>::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let local = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S").ok()?;
    let zone: chrono_tz::Tz = zone?.parse().ok()?;
    zone.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(raw: &str) -> BlockTime {
        BlockTime {
            date: None,
            date_time: Some(raw.to_owned()),
            time_zone: Some("Europe/Zurich".to_owned()),
        }
    }

    fn google_time(raw: &str) -> EventDateTime {
        EventDateTime {
            date: None,
            date_time: Some(DateTime::parse_from_rfc3339(raw).unwrap()),
            time_zone: None,
        }
    }

    #[test]
    fn the_same_instant_in_another_offset_is_not_drift() {
        assert!(same_time(
            Some(&timed("2030-01-01T10:00:00+01:00")),
            Some(&google_time("2030-01-01T09:00:00Z"))
        ));
        assert!(same_time(
            Some(&timed("2030-01-01T10:00:00")),
            Some(&google_time("2030-01-01T09:00:00Z"))
        ));
    }

    #[test]
    fn a_moved_time_or_an_all_day_switch_is_drift() {
        assert!(!same_time(
            Some(&timed("2030-01-01T10:00:00+01:00")),
            Some(&google_time("2030-01-01T10:00:00Z"))
        ));
        let all_day = BlockTime {
            date: Some("2030-01-01".into()),
            date_time: None,
            time_zone: None,
        };
        assert!(!same_time(
            Some(&all_day),
            Some(&google_time("2030-01-01T10:00:00Z"))
        ));
    }
}
