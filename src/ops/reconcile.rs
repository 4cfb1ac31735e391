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

async fn reconcile_account(
    services: &Services,
    account: &Account,
    accounts: &HashMap<AccountId, &Account>,
    dry_run: bool,
    out: &mut AccountReconcile,
) -> Result<(), OpsError> {
    let calendar = &account.calendar_id;
    let client = services.account_client(account.id).await?;
    let google = |what: &str| {
        let context = format!("cannot {what} on {}", account.alias);
        move |e: GoogleError| OpsError::google(context, e)
    };
    let listed = list_installation_blocks(&client, calendar, &services.installation)
        .await
        .map_err(google("list the blocks"))?;
    let rows: HashMap<String, OutboxRow> = services
        .store
        .blocks_for_target(account.id)
        .await?
        .into_iter()
        .map(|row| (row.block_id.as_str().to_owned(), row))
        .collect();
    let wanted = |id: &str| rows.get(id).is_some_and(|row| row.body.is_some());

    let mut live: BTreeMap<String, &ListedBlock> = BTreeMap::new();
    let mut cancelled: HashSet<&str> = HashSet::new();
    for block in &listed {
        if block.is_live() {
            live.insert(block.id.as_str().to_owned(), block);
        } else {
            cancelled.insert(block.id.as_str());
        }
    }
    out.blocks_seen = live.len() as u64;

    // Duplicates: same source marker, different ids; occurrences share their series' marker
    // and are left out.
    let mut groups: BTreeMap<(&str, &str), Vec<&ListedBlock>> = BTreeMap::new();
    for block in live.values().filter(|b| !b.is_occurrence()) {
        groups
            .entry((&block.marker.source_account, &block.marker.source_event))
            .or_default()
            .push(block);
    }
    let mut doomed: Vec<(EventId, Kind)> = Vec::new();
    for ((source_account, source_event), blocks) in &groups {
        if blocks.len() < 2 {
            continue;
        }
        let deterministic =
            deterministic_id(services, accounts, account, source_account, source_event);
        let keeper = blocks
            .iter()
            .find(|b| wanted(b.id.as_str()))
            .or_else(|| {
                blocks
                    .iter()
                    .find(|b| deterministic.as_deref() == Some(b.id.as_str()))
            })
            .map(|b| b.id.as_str().to_owned());
        // Without a keeper every copy is an orphan, which the next step handles.
        if let Some(keeper) = keeper {
            for b in blocks.iter().filter(|b| b.id.as_str() != keeper) {
                doomed.push((b.id.clone(), Kind::Duplicate));
            }
        }
    }
    let duplicate_ids: HashSet<String> = doomed.iter().map(|(id, _)| id.to_string()).collect();

    // Orphans: live blocks nobody wants. An occurrence belongs to its series' row.
    for (id, block) in &live {
        if duplicate_ids.contains(id) || wanted(id) {
            continue;
        }
        let series_wanted = block
            .event
            .recurring_event_id
            .as_ref()
            .is_some_and(|s| wanted(s.as_str()));
        if !series_wanted {
            doomed.push((block.id.clone(), Kind::Orphan));
        }
    }
    for (_, kind) in &doomed {
        match kind {
            Kind::Duplicate => out.duplicates_deleted += 1,
            Kind::Orphan => out.orphans_deleted += 1,
        }
    }
    if !dry_run && !doomed.is_empty() {
        let blocks: Vec<&ListedBlock> = doomed
            .iter()
            .filter_map(|(id, _)| live.get(id.as_str()).copied())
            .collect();
        services
            .store
            .queue_deletions(account.id, &deletions_for(&blocks))
            .await?;
    }

    // Applied rows: is their block there, and as written?
    for row in rows.values() {
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
        let id = row.block_id.as_str();
        let state = if let Some(block) = live.get(id) {
            Found::Live(Box::new(block.event.clone()))
        } else if cancelled.contains(id) {
            Found::Deleted
        } else {
            let event_id = EventId::parse(id)
                .map_err(|e| OpsError::Store(StoreError::Corrupt(format!("block id {id}: {e}"))))?;
            look_up(&client, account, &event_id).await?
        };
        match state {
            Found::Live(event) if drifted(&body, &event) => {
                requeue(services, row, dry_run, out).await?;
            }
            Found::Live(_) => {}
            Found::Deleted => {
                out.excluded += 1;
                if !dry_run {
                    services.store.mark_excluded(row.id).await?;
                    let entry = NewLogEntry::new(
                        log_kind::BLOCK_EXCLUDED,
                        LogResult::Ok,
                        format!("block {id} was deleted by the user; it stays deleted"),
                    )
                    .account(account.id);
                    services.store.log_best_effort(entry).await;
                }
            }
            Found::Missing => requeue(services, row, dry_run, out).await?,
        }
    }
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
