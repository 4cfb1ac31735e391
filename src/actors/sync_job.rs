//! One sync of one calendar: list → read → pass → commit → wake.
//!
//! The `CalendarActor` spawns a [`SyncJob`] per sync and gets its [`SyncReport`] back as a
//! message, so its mailbox stays free while Google answers. The job only moves data: it
//! lists the calendar (incrementally from the stored sync token, or fully), reads what the
//! pure pass ([`crate::sync::pass`]) needs from the store, calls the pass, commits its plan
//! in ONE transaction (events, desired blocks, exclusions, the mass-deletion hold, the
//! sync-log lines and the new token), and wakes the writers of the calendars that got work.
//! Every decision is the pass's.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use chrono::Utc;
use tokio::sync::OwnedSemaphorePermit;

use super::block_writer::WriterMsg;
use super::ActorNames;
use crate::coordinator::Standing;
use crate::domain::{AccountId, BlockId, EventId, SyncId};
use crate::google::{self, AccountClient, EventsQuery, GoogleError};
use crate::metrics::{SYNCS, SYNC_DURATION};
use crate::services::{Services, ServicesError};
use crate::store::{
    log_kind, Account, CalendarRules, Claim, CommitOutcome, HoldWrite, LogResult, NewLogEntry,
    OutboxUpsert, RowRole, StoreError, StoredEventUpsert, SyncCommit, SyncFence,
};
use crate::sync::{
    self, convert, BlockRole, GuardChange, GuardInput, ListedEvent, PassInput, RowView,
    SourceEvent, SyncPlan,
};

/// How long the rows a sync queues stay claimed for this process's writers.
pub(crate) const CLAIM_TTL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// What one sync did, for the log line and the sync log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub full: bool,
    pub listed: usize,
    pub upserted: usize,
    pub deleted: usize,
    pub planned: usize,
    pub blocks_queued: u64,
    pub excluded: u64,
    /// A full listing would have retracted more blocks than allowed; deletions were held.
    pub mass_delete_held: bool,
    pub woken: Vec<AccountId>,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Google(#[from] GoogleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another replica owns the calendar now (or this one's lease ran out): not synced here.
    #[error("calendar {0} is owned by another replica")]
    NotOwner(AccountId),
}

impl From<ServicesError> for SyncError {
    fn from(e: ServicesError) -> Self {
        match e {
            ServicesError::Store(e) => Self::Store(e),
            ServicesError::Google(e) => Self::Google(e),
        }
    }
}

/// Everything one sync needs; built by the actor, consumed by [`SyncJob::run`].
pub(super) struct SyncJob {
    pub services: Services,
    pub names: ActorNames,
    pub account: Account,
    pub client: AccountClient,
    /// List everything, whatever the stored token.
    pub full: bool,
    /// An operator confirmed the deletions a full listing held back.
    pub deletions_confirmed: bool,
    /// When the change was noticed (the start of its propagation latency).
    pub trigger: Instant,
    pub sync_id: SyncId,
    /// Why the sync runs, for the log line.
    pub reason: &'static str,
}

/// What `events.list` gave.
struct Listing {
    full: bool,
    events: Vec<google::Event>,
    next_sync_token: Option<String>,
    time_zone: Option<String>,
    /// A replan was asked for at this instant: every stored event is planned again.
    replan: Option<chrono::DateTime<Utc>>,
    /// The stored token an incremental listing continued from.
    from_token: Option<String>,
    /// The mass-deletion hold as stored when the listing began.
    held: bool,
    /// A full listing's turn (`MAX_CONCURRENT_FULL_SYNCS`), held until its commit.
    full_turn: Option<OwnedSemaphorePermit>,
}

impl SyncJob {
    /// Runs the sync and reports it (metrics, one log line, a sync-log row on failure).
    pub(super) async fn run(self) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let result = self.sync().await;
        let elapsed = started.elapsed();
        let kind = match &result {
            Ok(report) if report.full => "full",
            Ok(_) => "incremental",
            Err(_) if self.full => "full",
            Err(_) => "incremental",
        };
        let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(report) => {
                metrics::counter!(SYNCS, "kind" => kind, "result" => "ok").increment(1);
                metrics::histogram!(SYNC_DURATION, "kind" => kind).record(elapsed.as_secs_f64());
                tracing::info!(
                    kind,
                    trigger = self.reason,
                    listed = report.listed,
                    upserted = report.upserted,
                    deleted = report.deleted,
                    planned = report.planned,
                    queued = report.blocks_queued,
                    excluded = report.excluded,
                    held = report.mass_delete_held,
                    duration_ms,
                    "sync done"
                );
            }
            Err(SyncError::NotOwner(_)) => {
                tracing::debug!("sync skipped: another replica owns the calendar");
            }
            Err(e) => {
                metrics::counter!(SYNCS, "kind" => kind, "result" => "error").increment(1);
                tracing::warn!(kind, error = %e, duration_ms, "sync failed");
                self.record_failure(kind, e, elapsed).await;
            }
        }
        result
    }

    async fn record_failure(&self, kind: &str, error: &SyncError, elapsed: std::time::Duration) {
        let store = &self.services.store;
        let id = self.account.id;
        if !matches!(error, SyncError::Google(GoogleError::InvalidGrant)) {
            let _ = store.record_sync_error(id, &error.to_string()).await;
        }
        let log_kind = if kind == "full" {
            log_kind::FULL_SYNC
        } else {
            log_kind::INCREMENTAL_SYNC
        };
        store
            .log_best_effort(
                NewLogEntry::new(log_kind, LogResult::Error, error.to_string())
                    .account(id)
                    .duration(elapsed),
            )
            .await;
    }

    async fn sync(&self) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        if !self.services.replica.owns(self.account.id) {
            return Err(SyncError::NotOwner(self.account.id));
        }
        let mut listing = self.list().await?;
        // Held until the commit is done: the listing's events live until then.
        let _full_turn = listing.full_turn.take();
        let reads = Reads::gather(self, &listing).await?;
        let input = reads.input(self, &listing);
        let plan = sync::sync_pass(&input);
        let mut report = SyncReport {
            full: listing.full,
            listed: listing.events.len(),
            upserted: plan.upserts.len(),
            deleted: plan.forget.len(),
            planned: plan.blocks.len(),
            mass_delete_held: matches!(
                plan.guard,
                GuardChange::Hold { .. } | GuardChange::StillHeld { .. }
            ),
            ..SyncReport::default()
        };
        let commit = self.commit_of(plan, listing, &report, started.elapsed());
        let outcome = self.commit(commit).await?;
        report.blocks_queued = outcome.blocks_queued;
        report.excluded = outcome.excluded;
        self.wake(&outcome).await;
        report.woken = outcome.woken_targets;
        Ok(report)
    }

    /// Lists incrementally from the stored token; lists everything when asked to, when
    /// there is no token yet, or when Google expired it (410).
    async fn list(&self) -> Result<Listing, SyncError> {
        let store = &self.services.store;
        let me = &self.account;
        let state = self.services.sync_state(me.id).await?;
        let replan = state.replan_requested_at;
        let token = state.sync_token.filter(|_| !self.full);
        let (listed, full_turn) = match token.clone() {
            Some(token) => {
                match self
                    .client
                    .list_all(&me.calendar_id, &EventsQuery::incremental(token))
                    .await
                {
                    Err(GoogleError::SyncTokenExpired) => {
                        tracing::info!("sync token expired; listing everything");
                        store.reset_sync_token(me.id).await?;
                        self.list_everything().await?
                    }
                    other => (other?, None),
                }
            }
            None => self.list_everything().await?,
        };
        let full = full_turn.is_some();
        Ok(Listing {
            full,
            events: listed.events,
            next_sync_token: listed.next_sync_token,
            time_zone: listed.time_zone,
            replan,
            from_token: token.filter(|_| !full),
            held: state.mass_delete_hold,
            full_turn,
        })
    }

    /// Lists the whole calendar once it is a full listing's turn; the turn comes back with
    /// the listing, to be held until its commit.
    async fn list_everything(
        &self,
    ) -> Result<(google::EventsListing, Option<OwnedSemaphorePermit>), SyncError> {
        let turn = self
            .services
            .full_sync_permits
            .clone()
            .acquire_owned()
            .await
            .expect("the full-sync semaphore is never closed");
        let listed = self
            .client
            .list_all(&self.account.calendar_id, &EventsQuery::full())
            .await?;
        Ok((listed, Some(turn)))
    }

    /// The plan as one commit, with its sync-log lines.
    fn commit_of(
        &self,
        plan: SyncPlan,
        listing: Listing,
        report: &SyncReport,
        elapsed: std::time::Duration,
    ) -> SyncCommit {
        let me = self.account.id;
        let log = log_lines(me, &plan, report, elapsed);
        SyncCommit {
            upserted_source_events: plan
                .upserts
                .into_iter()
                .map(|u| StoredEventUpsert {
                    event_id: u.event_id,
                    ical_uid: u.ical_uid,
                    recurring_event_id: u.recurring_event_id,
                    status: status_word(u.status).to_owned(),
                    data: u.data,
                    google_updated: u.google_updated,
                })
                .collect(),
            deleted_source_event_ids: plan.forget,
            desired_blocks: plan
                .blocks
                .into_iter()
                .map(|(source, planned)| outbox_upsert(source, planned))
                .collect(),
            exclusions: plan.exclusions,
            hold: hold_write(plan.guard),
            log,
            new_sync_token: listing.next_sync_token,
            full: listing.full,
            sync_id: Some(self.sync_id.to_string()),
            claim_for: Some(Claim {
                owner: self.services.writer_id.to_string(),
                until: crate::store::now() + CLAIM_TTL,
            }),
            replan_done: listing.replan,
            listed_from: listing.from_token,
        }
    }

    /// Commits under the source calendar's lease when there are several replicas: nothing is
    /// written once this replica lost it, and only the rows of the targets it owns are
    /// claimed for its own writers.
    async fn commit(&self, commit: SyncCommit) -> Result<CommitOutcome, SyncError> {
        let store = &self.services.store;
        let replica = &self.services.replica;
        let fence = match replica.standing(self.account.id) {
            Standing::Sole => return Ok(store.commit_sync(self.account.id, commit).await?),
            Standing::Owner(fence) => fence,
            Standing::Elsewhere => return Err(SyncError::NotOwner(self.account.id)),
        };
        let fence = SyncFence {
            source: fence,
            claim_targets: replica
                .owned_among(commit.desired_blocks.iter().map(|b| b.target_account_id)),
        };
        match store
            .commit_sync_fenced(self.account.id, commit, Some(&fence))
            .await
        {
            Err(StoreError::Fenced { calendar }) => Err(SyncError::NotOwner(calendar)),
            other => Ok(other?),
        }
    }

    /// Wakes the writer of every target that got work: here when this replica owns it,
    /// through its owner otherwise.
    async fn wake(&self, outcome: &CommitOutcome) {
        let replica = &self.services.replica;
        let mut elsewhere = Vec::new();
        for target in &outcome.woken_targets {
            if !replica.owns(*target) {
                elsewhere.push(*target);
                continue;
            }
            self.services.expect_writes(*target);
            if let Some(writer) = self.names.writer_actor(*target) {
                let _ = writer.cast(WriterMsg::Converge {
                    trigger: Some(self.trigger),
                    source: Some(self.account.id),
                });
            }
        }
        replica
            .wake_elsewhere(&self.services.store, &elsewhere)
            .await;
    }
}

/// What the pass needs from the store, read after the listing.
struct Reads {
    listed: Vec<ListedEvent>,
    known: Vec<SourceEvent>,
    /// The calendars of this calendar's group (itself included), as the planner sees them.
    group: Vec<sync::Account>,
    /// Links turned off, as (source, target).
    disabled: HashSet<(AccountId, AccountId)>,
    meetings: Vec<(AccountId, SourceEvent)>,
    rows_on_me: HashMap<BlockId, RowView>,
    guard: GuardInput,
}

impl Reads {
    async fn gather(job: &SyncJob, listing: &Listing) -> Result<Self, SyncError> {
        let store = &job.services.store;
        let me = job.account.id;
        let installation: &str = &job.services.installation;
        let listed = convert_listing(&listing.events);
        let known = if listing.full || listing.replan.is_some() {
            store.source_events(me).await?
        } else {
            let mut ids: BTreeSet<&EventId> = listed.iter().map(|l| &l.event.id).collect();
            ids.extend(
                listed
                    .iter()
                    .filter_map(|l| l.event.recurring_event_id.as_ref()),
            );
            let ids: Vec<&EventId> = ids.into_iter().collect();
            store.events_and_their_series(me, &ids).await?
        };
        let known: Vec<SourceEvent> = known
            .iter()
            .filter_map(|row| convert::from_stored(&row.data).ok())
            .collect();
        let mine_changed = listed
            .iter()
            .map(|l| &l.event)
            .filter(|e| !sync::is_block(e, installation));
        let mut uids: BTreeSet<String> = mine_changed.filter_map(|e| e.ical_uid.clone()).collect();
        // Every known event is planned in a full listing or a replan, and a tombstone's
        // iCalUID is only in the store.
        uids.extend(known.iter().filter_map(|e| e.ical_uid.clone()));
        let something_to_plan = listed
            .iter()
            .any(|l| !sync::is_block(&l.event, installation))
            || ((listing.full || listing.replan.is_some()) && !known.is_empty());
        let (group, disabled) = if something_to_plan {
            read_group(job, listing.time_zone.as_deref()).await?
        } else {
            // An idle poll or the echo of our own writes: O(1) whatever the size.
            (Vec::new(), HashSet::new())
        };
        let meetings = if something_to_plan {
            read_meetings(job, &uids).await?
        } else {
            Vec::new()
        };
        Ok(Self {
            rows_on_me: read_rows_on_me(job, &listed).await?,
            guard: read_guard(job, listing).await?,
            listed,
            known,
            group,
            disabled,
            meetings,
        })
    }

    fn input<'a>(&'a self, job: &'a SyncJob, listing: &Listing) -> PassInput<'a> {
        let me = job.account.id;
        let source = self
            .group
            .iter()
            .find(|a| a.id == me)
            .cloned()
            .unwrap_or_else(|| {
                planner_account(&job.services, &job.account, listing.time_zone.as_deref())
            });
        let others = || self.group.iter().filter(|a| a.id != me);
        PassInput {
            cfg: &job.services.planner,
            now: Utc::now(),
            source,
            full: listing.full,
            listed: self.listed.clone(),
            known: self.known.clone(),
            targets: others()
                .filter(|t| !self.disabled.contains(&(me, t.id)))
                .cloned()
                .collect(),
            sources_of_me: others()
                .filter(|s| !self.disabled.contains(&(s.id, me)))
                .cloned()
                .collect(),
            meetings: self.meetings.clone(),
            rows_on_me: self.rows_on_me.clone(),
            guard: self.guard.clone(),
            replan_all: listing.replan.is_some(),
        }
    }
}

/// Converts every listed event; one that cannot be read is skipped with a warning (its
/// change is picked up when Google sends a readable version).
fn convert_listing(events: &[google::Event]) -> Vec<ListedEvent> {
    events
        .iter()
        .filter_map(|event| match convert::source_event(event) {
            Ok(converted) => Some(ListedEvent {
                event: converted,
                data: convert::stored_data(event),
                google_updated: event.updated,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an event that cannot be read");
                None
            }
        })
        .collect()
}

async fn read_meetings(
    job: &SyncJob,
    uids: &BTreeSet<String>,
) -> Result<Vec<(AccountId, SourceEvent)>, SyncError> {
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let uids: Vec<&str> = uids.iter().map(String::as_str).collect();
    let rows = job.services.store.events_by_ical_uids(&uids).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((row.account_id, convert::from_stored(&row.data).ok()?)))
        .collect())
}

/// The outbox rows on this calendar for our blocks the listing shows deleted.
async fn read_rows_on_me(
    job: &SyncJob,
    listed: &[ListedEvent],
) -> Result<HashMap<BlockId, RowView>, SyncError> {
    let installation: &str = &job.services.installation;
    let ids: Vec<BlockId> = listed
        .iter()
        .map(|l| &l.event)
        .filter(|e| e.status == sync::EventStatus::Cancelled && sync::is_ours(e, installation))
        .filter_map(|e| BlockId::parse(e.id.as_str()).ok())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let refs: Vec<&BlockId> = ids.iter().collect();
    let rows = job
        .services
        .store
        .rows_on_target(job.account.id, &refs)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let view = RowView {
                wants_live: row.wants_live(),
                written: row.written(),
                written_at: row.applied_updated,
            };
            (row.block_id, view)
        })
        .collect())
}

/// The guard's input: the hold as the listing found it (one read of the sync state per
/// sync), and on a full listing the live blocks per target.
async fn read_guard(job: &SyncJob, listing: &Listing) -> Result<GuardInput, SyncError> {
    let store = &job.services.store;
    let live_blocks = if listing.full {
        store
            .live_block_counts(job.account.id)
            .await?
            .into_iter()
            .collect()
    } else {
        HashMap::new()
    };
    Ok(GuardInput {
        held: listing.held,
        confirmed: job.deletions_confirmed,
        threshold: u64::from(job.services.settings.sync.mass_delete_threshold),
        live_blocks,
    })
}

/// The calendars of this calendar's group and the links turned off: who blocks whom.
async fn read_group(
    job: &SyncJob,
    zone: Option<&str>,
) -> Result<(Vec<sync::Account>, HashSet<(AccountId, AccountId)>), SyncError> {
    let store = &job.services.store;
    let me = job.account.id;
    let group = store
        .group_of(me)
        .await?
        .iter()
        .map(|a| {
            let zone = (a.id == me).then_some(zone).flatten();
            planner_account(&job.services, a, zone)
        })
        .collect();
    Ok((group, store.disabled_links().await?))
}

/// The planner's view of an account: its own rules over the environment's defaults; `zone`
/// fills in a calendar time zone not yet stored.
pub(crate) fn planner_account(
    services: &Services,
    account: &Account,
    zone: Option<&str>,
) -> sync::Account {
    sync::Account {
        id: account.id,
        alias: account.alias.clone(),
        calendar_id: account.calendar_id.clone(),
        time_zone: account
            .time_zone
            .clone()
            .or_else(|| zone.map(str::to_owned)),
        rules: resolve_rules(&account.rules, &services.settings.sync),
    }
}

/// A calendar's rules: its own where set, the environment's otherwise. A stored regex that
/// no longer compiles (it was checked when set) falls back to no regex, with a warning.
pub(crate) fn resolve_rules(
    own: &CalendarRules,
    defaults: &crate::config::SyncSettings,
) -> sync::Rules {
    let base = sync::Rules::from_settings(defaults);
    let exclude_title = match own.exclude_title_regex.as_deref() {
        None => base.exclude_title,
        Some("") => None,
        Some(raw) => match regex::Regex::new(raw) {
            Ok(regex) => Some(regex),
            Err(e) => {
                tracing::warn!(error = %crate::config::one_line(&e.to_string()), "a calendar's title regex does not compile; ignored");
                None
            }
        },
    };
    sync::Rules {
        title_template: own
            .block_title_template
            .clone()
            .unwrap_or(base.title_template),
        details: own.block_details.unwrap_or(base.details),
        skip_all_day: own.skip_all_day.unwrap_or(base.skip_all_day),
        skip_out_of_office: own.skip_out_of_office.unwrap_or(base.skip_out_of_office),
        skip_focus_time: own.skip_focus_time.unwrap_or(base.skip_focus_time),
        exclude_title,
        look_back: own
            .look_back_days
            .map_or(base.look_back, |d| chrono::TimeDelta::days(i64::from(d))),
    }
}

fn status_word(status: sync::EventStatus) -> &'static str {
    match status {
        sync::EventStatus::Confirmed => "confirmed",
        sync::EventStatus::Tentative => "tentative",
        sync::EventStatus::Cancelled => "cancelled",
    }
}

fn outbox_upsert(source: AccountId, planned: sync::PlannedBlock) -> OutboxUpsert {
    let (role, series_block_id) = match planned.role {
        BlockRole::Single => (RowRole::Single, None),
        BlockRole::Series => (RowRole::Series, None),
        BlockRole::Occurrence { series } => (RowRole::Occurrence, Some(series)),
        BlockRole::Detached => (RowRole::Detached, None),
    };
    OutboxUpsert {
        target_account_id: planned.target,
        source_account_id: source,
        source_event_id: planned.source_event_id,
        block_id: planned.block_id,
        role,
        series_block_id,
        body: planned.desired.as_ref().map(|d| d.body.to_json()),
        desired_hash: planned.desired.map(|d| d.hash),
    }
}

fn hold_write(guard: GuardChange) -> HoldWrite {
    match guard {
        GuardChange::Hold { missing } => HoldWrite::Place {
            reason: format!(
                "A full resync no longer lists {missing} known events; their blocks are kept until an operator confirms"
            ),
        },
        GuardChange::Released { .. } => HoldWrite::Lift,
        GuardChange::StillHeld { .. } | GuardChange::Unchanged => HoldWrite::Unchanged,
    }
}

/// The sync-log lines of a pass: one per exclusion and hold change, and one for the sync
/// itself when it changed anything (an idle poll or an echo of our own writes writes none).
fn log_lines(
    me: AccountId,
    plan: &SyncPlan,
    report: &SyncReport,
    elapsed: std::time::Duration,
) -> Vec<NewLogEntry> {
    let mut lines: Vec<NewLogEntry> = plan
        .exclusions
        .iter()
        .map(|id| {
            NewLogEntry::new(
                log_kind::BLOCK_EXCLUDED,
                LogResult::Ok,
                format!("block {id} deleted by the user; it stays deleted"),
            )
            .account(me)
        })
        .collect();
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    match plan.guard {
        GuardChange::Hold { missing } => {
            tracing::warn!(missing, "mass delete held back");
            lines.push(
                NewLogEntry::new(
                    log_kind::MASS_DELETE_HOLD,
                    LogResult::Skipped,
                    format!("A full resync no longer lists {missing} known events; their blocks are kept until an operator confirms"),
                )
                .account(me)
                .count(count(missing)),
            );
        }
        GuardChange::Released { missing } => {
            tracing::warn!(missing, "held deletions confirmed by an operator");
            lines.push(
                NewLogEntry::new(
                    log_kind::MASS_DELETE_HOLD,
                    LogResult::Ok,
                    format!(
                        "an operator confirmed the deletion of {missing} missing events' blocks"
                    ),
                )
                .account(me)
                .count(count(missing)),
            );
        }
        GuardChange::StillHeld { missing } => {
            tracing::info!(missing, "deletions still held for operator confirmation");
        }
        GuardChange::Unchanged => {}
    }
    let changed = plan.changed > 0 || !plan.forget.is_empty() || !plan.exclusions.is_empty();
    if changed || report.full {
        let kind = if report.full {
            log_kind::FULL_SYNC
        } else {
            log_kind::INCREMENTAL_SYNC
        };
        let detail = format!(
            "{} listed, {} changed, {} removed, {} blocks planned",
            report.listed, report.upserted, report.deleted, report.planned
        );
        lines.push(
            NewLogEntry::new(kind, LogResult::Ok, detail)
                .account(me)
                .count(count(report.listed))
                .duration(elapsed),
        );
    }
    lines
}
