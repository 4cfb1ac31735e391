//! The sync pass: everything one sync of one calendar decides, as one pure function.
//!
//! Input ([`PassInput`]): what `events.list` returned, what the store holds of this calendar
//! (and of the other calendars' copies of the same meetings), the outbox rows on this
//! calendar that the listing shows deleted, the mass-deletion guard's state, the planner
//! config and `now`. Output ([`SyncPlan`]): the events to store and to forget, the desired
//! state of every affected (target, block id), the blocks the user deleted (exclusions),
//! what becomes of the mass-deletion hold, and the facts worth a line in the sync log.
//!
//! The rules that live here, each with table tests in `sync/pass_tests.rs`:
//! - **Exclusions**: a block of ours that the listing shows deleted while the outbox says it
//!   was written and is still wanted was deleted by the user; it stays deleted.
//! - **Mass-deletion guard**: a full listing that no longer shows known events whose blocks
//!   number more than the threshold deletes nothing; the hold stays until an operator
//!   confirms, and a confirmed full listing applies the deletions whatever their number.
//! - **Families**: an exception or a master that changed re-plans its whole series on every
//!   target ([`super::occurrences`]); a deleted master takes its exceptions with it.
//! - **Same meeting**: a changed meeting here re-plans the other calendars' copies of it
//!   onto this calendar, since what this calendar holds decides whether they need a block.
//!
//! Collaborators: the `CalendarActor`'s sync job reads the input from Google and the store,
//! calls [`sync_pass`], commits the plan in one transaction and wakes the writers.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::domain::{AccountId, BlockId, EventId};

use super::marker::{is_block, is_ours};
use super::model::{
    EventStatus, PlannerConfig, SourceAccount, SourceEvent, TargetAccount, TargetHoldings,
};
use super::occurrences::{plan_family, Family};
use super::plan::{plan_single, PlanContext, PlannedBlock};

/// One event as `events.list` returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedEvent {
    pub event: SourceEvent,
    /// The wire event, which the store keeps so a stored event can be planned again.
    pub data: serde_json::Value,
    /// Google's `updated`.
    pub google_updated: Option<DateTime<Utc>>,
}

/// An outbox row on this calendar, as the exclusion rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowView {
    /// The row wants a live (not cancelled) block.
    pub wants_live: bool,
    /// The writer wrote it, and the row is applied or pending (not excluded or failed).
    pub written: bool,
    /// Google's `updated` of that last write, when known.
    pub written_at: Option<DateTime<Utc>>,
}

/// The mass-deletion guard's state before this pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardInput {
    /// A hold is in place from an earlier full listing.
    pub held: bool,
    /// An operator confirmed the held deletions: apply them whatever their number.
    pub confirmed: bool,
    /// At most this many blocks may be retracted by one full listing without a hold.
    pub threshold: u64,
    /// Live blocks per source event of this calendar (needed on a full listing only).
    pub live_blocks: HashMap<EventId, u64>,
}

/// Everything one pass reads.
#[derive(Debug, Clone)]
pub struct PassInput<'a> {
    pub cfg: &'a PlannerConfig,
    pub now: DateTime<Utc>,
    /// The calendar that was listed.
    pub source: SourceAccount,
    /// A full listing (every event) rather than an incremental one.
    pub full: bool,
    pub listed: Vec<ListedEvent>,
    /// Stored events of this calendar: all of them after a full listing; after an
    /// incremental one, at least the listed ids and every event of their series.
    pub known: Vec<SourceEvent>,
    /// The calendars this calendar's events block.
    pub targets: Vec<TargetAccount>,
    /// The calendars whose events block this calendar.
    pub sources_of_me: Vec<SourceAccount>,
    /// Stored events of any calendar (this one included) that share an iCalUID with a
    /// changed event of this calendar, with the calendar they are on.
    pub meetings: Vec<(AccountId, SourceEvent)>,
    /// Outbox rows on this calendar for the block ids the listing shows deleted.
    pub rows_on_me: HashMap<BlockId, RowView>,
    pub guard: GuardInput,
    /// Plan every stored event again, not only the listed ones (the calendar joined a group,
    /// a link or a rule changed). `known` then holds every stored event.
    pub replan_all: bool,
}

/// An event to store (insert or update).
#[derive(Debug, Clone, PartialEq)]
pub struct EventUpsert {
    pub event_id: EventId,
    pub ical_uid: Option<String>,
    pub recurring_event_id: Option<EventId>,
    pub status: EventStatus,
    pub data: serde_json::Value,
    pub google_updated: Option<DateTime<Utc>>,
}

/// What becomes of the mass-deletion hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuardChange {
    /// Nothing to do with the guard.
    #[default]
    Unchanged,
    /// A full listing misses `missing` events with too many blocks: nothing is deleted.
    Hold { missing: usize },
    /// Still held from before; nothing is deleted.
    StillHeld { missing: usize },
    /// An operator confirmed: the hold is lifted and the deletions are applied.
    Released { missing: usize },
}

/// Everything one pass decided; committed in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncPlan {
    pub upserts: Vec<EventUpsert>,
    pub forget: Vec<EventId>,
    /// The desired state of each affected (target, block id), with the source calendar.
    pub blocks: Vec<(AccountId, PlannedBlock)>,
    /// Rows on this calendar to mark excluded (the user deleted those blocks).
    pub exclusions: Vec<BlockId>,
    pub guard: GuardChange,
    /// Listed events that were changes of this calendar's own (non-block) events.
    pub changed: usize,
}

/// Decides everything one sync of `input.source` does; see the module docs.
pub fn sync_pass(input: &PassInput<'_>) -> SyncPlan {
    let mut plan = SyncPlan::default();
    let installation = input.cfg.installation.as_str();
    let listed_ids: HashSet<&EventId> = input.listed.iter().map(|l| &l.event.id).collect();
    let known = KnownIndex::new(&input.known);

    plan.exclusions = exclusions(input, installation);
    let missing = missing_events(input, &listed_ids);
    plan.guard = guard_change(&input.guard, input.full, &missing);
    let tombstones: Vec<SourceEvent> = match plan.guard {
        GuardChange::Hold { .. } | GuardChange::StillHeld { .. } => Vec::new(),
        _ => missing.iter().map(|e| tombstone_of(e)).collect(),
    };

    let missing_ids: HashSet<&EventId> = missing.iter().map(|e| &e.id).collect();
    let replanned = input.known.iter().filter(|e| {
        input.replan_all && !listed_ids.contains(&e.id) && !missing_ids.contains(&e.id)
    });
    let changed: Vec<&SourceEvent> = input
        .listed
        .iter()
        .map(|l| &l.event)
        .chain(&tombstones)
        .chain(replanned)
        .collect();
    let families = gather_families(&changed, &known);
    record_events(&mut plan, input, &families, &tombstones, installation);

    let mine: Vec<&SourceEvent> = changed
        .iter()
        .copied()
        .filter(|e| !is_block(e, installation))
        .collect();
    plan.changed = mine.len();
    let holdings = holdings_by_calendar(input, &families);
    plan_onto_targets(&mut plan, input, &mine, &families, &holdings);
    replan_copies_onto_me(&mut plan, input, &holdings);
    plan
}

/// Our blocks that the listing shows deleted although the outbox wrote them and still wants
/// them, deleted after our last write of them: the user deleted them. A tombstone older than
/// our last write is our own delete seen late (the block was restored since).
fn exclusions(input: &PassInput<'_>, installation: &str) -> Vec<BlockId> {
    input
        .listed
        .iter()
        .filter(|l| l.event.status == EventStatus::Cancelled && is_ours(&l.event, installation))
        .filter_map(|l| Some((BlockId::parse(l.event.id.as_str()).ok()?, l.google_updated)))
        .filter(|(id, deleted_at)| {
            input.rows_on_me.get(id).is_some_and(|row| {
                let after_our_write = match (deleted_at, row.written_at) {
                    (Some(deleted), Some(written)) => *deleted > written,
                    _ => true,
                };
                row.wants_live && row.written && after_our_write
            })
        })
        .map(|(id, _)| id)
        .collect()
}

/// After a full listing: the stored events of this calendar (not blocks) it no longer shows.
fn missing_events<'a>(
    input: &'a PassInput<'_>,
    listed: &HashSet<&EventId>,
) -> Vec<&'a SourceEvent> {
    if !input.full {
        return Vec::new();
    }
    input
        .known
        .iter()
        .filter(|e| !listed.contains(&e.id))
        .collect()
}

/// The mass-deletion guard (see the module docs).
fn guard_change(guard: &GuardInput, full: bool, missing: &[&SourceEvent]) -> GuardChange {
    if !full {
        return GuardChange::Unchanged;
    }
    let count = missing.len();
    if guard.confirmed {
        return if guard.held {
            GuardChange::Released { missing: count }
        } else {
            GuardChange::Unchanged
        };
    }
    if count == 0 {
        return GuardChange::Unchanged;
    }
    if guard.held {
        return GuardChange::StillHeld { missing: count };
    }
    let retracted: u64 = missing
        .iter()
        .map(|e| guard.live_blocks.get(&e.id).copied().unwrap_or(0))
        .sum();
    if retracted > guard.threshold {
        GuardChange::Hold { missing: count }
    } else {
        GuardChange::Unchanged
    }
}

/// A missing event as an incremental listing would have shown its deletion.
fn tombstone_of(known: &SourceEvent) -> SourceEvent {
    let mut tombstone = SourceEvent::tombstone(known.id.clone());
    tombstone.recurring_event_id = known.recurring_event_id.clone();
    tombstone.original_start = known.original_start.clone();
    tombstone.ical_uid = known.ical_uid.clone();
    tombstone.marker = known.marker.clone();
    tombstone
}

/// What the store learns: listed events are stored (a cancelled exception of a live series
/// too, since its series still needs it), deleted events and everything of a deleted series
/// are forgotten.
fn record_events(
    plan: &mut SyncPlan,
    input: &PassInput<'_>,
    families: &Families<'_>,
    tombstones: &[SourceEvent],
    installation: &str,
) {
    let kept = |event: &SourceEvent| {
        event.status != EventStatus::Cancelled
            || (event.is_instance() && !families.is_deleted(event))
    };
    for listed in &input.listed {
        let event = &listed.event;
        if is_block(event, installation) {
            // Blocks are never planned: nothing about them is worth storing.
            continue;
        }
        if kept(event) {
            plan.upserts.push(EventUpsert {
                event_id: event.id.clone(),
                ical_uid: event.ical_uid.clone(),
                recurring_event_id: event.recurring_event_id.clone(),
                status: event.status,
                data: listed.data.clone(),
                google_updated: listed.google_updated,
            });
        } else {
            plan.forget.push(event.id.clone());
        }
    }
    // A full listing shows cancelled exceptions too (`showDeleted`): a missing event,
    // exceptions included, is gone.
    plan.forget.extend(tombstones.iter().map(|t| t.id.clone()));
    plan.forget.extend(families.deleted_exceptions());
    let mut seen = HashSet::new();
    plan.forget.retain(|id| seen.insert(id.clone()));
}

/// The changed events (listed, missing, or stored and replanned) grouped by series, each
/// family completed from the store.
struct Families<'a> {
    by_series: BTreeMap<EventId, Family<'a>>,
    singles: Vec<&'a SourceEvent>,
}

impl Families<'_> {
    /// An event of a series whose master this pass deletes.
    fn is_deleted(&self, event: &SourceEvent) -> bool {
        let series = event.recurring_event_id.as_ref().unwrap_or(&event.id);
        self.by_series.get(series).is_some_and(|f| f.deleted)
    }

    /// Every exception of the deleted series (they go with their master).
    fn deleted_exceptions(&self) -> impl Iterator<Item = EventId> + '_ {
        self.by_series
            .values()
            .filter(|f| f.deleted)
            .flat_map(|f| f.exceptions.iter().map(|e| e.id.clone()))
    }
}

/// The stored events of a calendar, by id and by series.
struct KnownIndex<'a> {
    by_id: HashMap<&'a EventId, &'a SourceEvent>,
    exceptions: HashMap<&'a EventId, Vec<&'a SourceEvent>>,
}

impl<'a> KnownIndex<'a> {
    fn new(events: impl IntoIterator<Item = &'a SourceEvent>) -> Self {
        let mut index = Self {
            by_id: HashMap::new(),
            exceptions: HashMap::new(),
        };
        for event in events {
            index.by_id.insert(&event.id, event);
            if let Some(series) = &event.recurring_event_id {
                index.exceptions.entry(series).or_default().push(event);
            }
        }
        index
    }
}

fn gather_families<'a>(changed: &[&'a SourceEvent], known: &KnownIndex<'a>) -> Families<'a> {
    let mut families = Families {
        by_series: BTreeMap::new(),
        singles: Vec::new(),
    };
    let changed_ids: HashSet<&EventId> = changed.iter().map(|e| &e.id).collect();
    let changed_series: HashSet<&EventId> = changed
        .iter()
        .filter_map(|e| e.recurring_event_id.as_ref())
        .collect();
    for event in changed {
        let is_master = event.is_series()
            || known.by_id.get(&event.id).is_some_and(|k| k.is_series())
            || known.exceptions.contains_key(&event.id)
            || changed_series.contains(&event.id);
        let series = match &event.recurring_event_id {
            Some(series) => series.clone(),
            None if is_master => event.id.clone(),
            None => {
                families.singles.push(event);
                continue;
            }
        };
        let family = families
            .by_series
            .entry(series.clone())
            .or_insert_with(|| Family::new(series));
        if event.is_instance() {
            family.exceptions.push(event);
        } else if event.status == EventStatus::Cancelled {
            family.deleted = true;
        } else {
            family.master = Some(event);
        }
    }
    for (series, family) in families.by_series.iter_mut() {
        complete_from_store(series, family, known, &changed_ids);
    }
    families
}

/// Fills in a family's unchanged master and exceptions from the store.
fn complete_from_store<'a>(
    series: &EventId,
    family: &mut Family<'a>,
    known: &KnownIndex<'a>,
    changed: &HashSet<&EventId>,
) {
    if family.master.is_none() && !family.deleted && !changed.contains(series) {
        family.master = known
            .by_id
            .get(series)
            .copied()
            .filter(|m| !m.is_instance());
    }
    let mut stored: Vec<&SourceEvent> = known
        .exceptions
        .get(series)
        .into_iter()
        .flatten()
        .copied()
        .filter(|k| !changed.contains(&k.id))
        .collect();
    stored.sort_by(|a, b| a.id.cmp(&b.id));
    family.exceptions.extend(stored);
}

/// What each calendar holds of the meetings in play, from the store and (for this
/// calendar) the listing.
fn holdings_by_calendar(
    input: &PassInput<'_>,
    families: &Families<'_>,
) -> HashMap<AccountId, TargetHoldings> {
    let me = input.source.id;
    let listed: HashMap<&EventId, &SourceEvent> = input
        .listed
        .iter()
        .map(|l| (&l.event.id, &l.event))
        .collect();
    let mut events: HashMap<AccountId, Vec<&SourceEvent>> = HashMap::new();
    for (calendar, event) in &input.meetings {
        if *calendar == me && (listed.contains_key(&event.id) || families.is_deleted(event)) {
            continue; // superseded by the listing below
        }
        events.entry(*calendar).or_default().push(event);
    }
    events
        .entry(me)
        .or_default()
        .extend(listed.values().copied().filter(|e| !families.is_deleted(e)));
    events
        .into_iter()
        .map(|(calendar, events)| (calendar, TargetHoldings::from_events(events)))
        .collect()
}

/// This calendar's changed events onto every calendar they block.
fn plan_onto_targets(
    plan: &mut SyncPlan,
    input: &PassInput<'_>,
    mine: &[&SourceEvent],
    families: &Families<'_>,
    holdings: &HashMap<AccountId, TargetHoldings>,
) {
    if mine.is_empty() {
        return;
    }
    let installation = input.cfg.installation.as_str();
    let nothing = TargetHoldings::new();
    let me = input.source.id;
    for target in input.targets.iter().filter(|t| t.id != me) {
        let cfg = input.cfg.for_pair(&input.source.rules, &target.rules);
        let ctx = PlanContext {
            cfg: &cfg,
            source: &input.source,
            now: input.now,
        };
        let held = holdings.get(&target.id).unwrap_or(&nothing);
        for single in families
            .singles
            .iter()
            .filter(|e| !is_block(e, installation))
        {
            plan.blocks
                .push((me, plan_single(&ctx, single, target, held)));
        }
        for family in families.by_series.values() {
            if family_is_blocks(family, installation) {
                continue;
            }
            for planned in plan_family(&ctx, family, target, held) {
                plan.blocks.push((me, planned));
            }
        }
    }
}

/// A "series" of blocks (ours or another installation's) is never planned.
fn family_is_blocks(family: &Family<'_>, installation: &str) -> bool {
    family.master.is_some_and(|m| is_block(m, installation))
        || family
            .series_id
            .as_ref()
            .is_some_and(|s| super::ids::is_block_id(installation, s.as_str()))
}

/// The other calendars' copies of the meetings that changed here, planned again onto this
/// calendar: whether this calendar now holds a meeting decides whether they need a block.
fn replan_copies_onto_me(
    plan: &mut SyncPlan,
    input: &PassInput<'_>,
    holdings: &HashMap<AccountId, TargetHoldings>,
) {
    let me = input.source.id;
    let me_as_target: TargetAccount = input.source.clone();
    let nothing = TargetHoldings::new();
    let my_holdings = holdings.get(&me).unwrap_or(&nothing);
    let installation = input.cfg.installation.as_str();
    for other in &input.sources_of_me {
        let events: Vec<&SourceEvent> = input
            .meetings
            .iter()
            .filter(|(calendar, e)| *calendar == other.id && !is_block(e, installation))
            .map(|(_, e)| e)
            .collect();
        if events.is_empty() {
            continue;
        }
        let cfg = input.cfg.for_pair(&other.rules, &me_as_target.rules);
        let ctx = PlanContext {
            cfg: &cfg,
            source: other,
            now: input.now,
        };
        let known = KnownIndex::new(events.iter().copied());
        let families = gather_families(&events, &known);
        for single in &families.singles {
            plan.blocks.push((
                other.id,
                plan_single(&ctx, single, &me_as_target, my_holdings),
            ));
        }
        for family in families.by_series.values() {
            for planned in plan_family(&ctx, family, &me_as_target, my_holdings) {
                plan.blocks.push((other.id, planned));
            }
        }
    }
}
