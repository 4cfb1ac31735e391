//! The per-occurrence model: what one target must hold for one source series.
//!
//! A source series is a [`Family`]: its master (when known and not deleted) and every
//! exception the source calendar has made of it — moved, retitled, cancelled, made free,
//! declined. For each target, [`plan_family`] states the whole desired picture at once:
//!
//! - **The block series is wanted** (the master is mirrored onto the target): one block
//!   series with the master's recurrence; every exception that is mirrored becomes a live
//!   (moved) occurrence of it, and every exception that must not be blocked — cancelled,
//!   free, declined, filtered, the same meeting on the target, ended — becomes a
//!   **cancelled** occurrence. "Must not be blocked" is therefore always written, never left
//!   as a missing row. Occurrences that started before the look-back cutoff are left as they
//!   are (no write for history).
//! - **The block series is not wanted** (the master was deleted, made free, declined,
//!   filtered, ended, or is held by the target): the block series goes, and with it, at
//!   Google, all its occurrences. Each exception that is still busy on its own gets a
//!   **detached** single block ([`BlockRole::Detached`], id from
//!   [`super::ids::detached_block_id`]), so the busy time stays blocked; when the series is
//!   wanted again the detached blocks go and the occurrences come back.
//!
//! So, after every change, the blocked instants on a target equal the busy instants of the
//! source, occurrence by occurrence (the property test in `sync/proptests.rs` checks this over
//! random sequences of series edits). Pure: no I/O, no clock.

use crate::domain::EventId;

use super::block::{cancelled_occurrence_body, live_body};
use super::ids::detached_block_id;
use super::model::{EventTime, SourceEvent, TargetAccount, TargetHoldings};
use super::plan::{BlockRole, DesiredBlock, PlanContext, PlannedBlock};
use super::rules::{beyond_series_end, Decision, SkipReason};

/// One source series as far as it is known: its master and its exceptions.
#[derive(Debug, Clone, Default)]
pub struct Family<'a> {
    /// The series id (the master's event id).
    pub series_id: Option<EventId>,
    /// `None` when the master is deleted or was never seen.
    pub master: Option<&'a SourceEvent>,
    /// Every known exception, cancelled ones included.
    pub exceptions: Vec<&'a SourceEvent>,
    /// The master was deleted: the series and every exception are gone.
    pub deleted: bool,
}

impl<'a> Family<'a> {
    pub fn new(series_id: EventId) -> Self {
        Self {
            series_id: Some(series_id),
            ..Self::default()
        }
    }

    /// Puts an event of the series in its place: the master, or one more exception.
    pub fn add(&mut self, event: &'a SourceEvent) {
        if event.is_instance() {
            self.exceptions.push(event);
        } else {
            self.master = Some(event);
        }
    }
}

/// The desired blocks of one family on one target: the block series, one row per exception
/// as an occurrence of it, and one detached row per exception.
pub fn plan_family(
    ctx: &PlanContext<'_>,
    family: &Family<'_>,
    target: &TargetAccount,
    holdings: &TargetHoldings,
) -> Vec<PlannedBlock> {
    let Some(series_id) = &family.series_id else {
        return Vec::new();
    };
    let master = family.master.filter(|_| !family.deleted);
    let series = plan_series_row(ctx, series_id, master, target, holdings);
    let series_wanted = series.desired.is_some();
    let series_block = series.block_id.clone();
    let mut planned = vec![series];
    for exception in &family.exceptions {
        // History is left as it is: no write for an occurrence long past.
        let Some(original) = exception.original_start.as_ref() else {
            continue;
        };
        if ctx.is_past(original) {
            continue;
        }
        if master.is_some_and(|m| past_its_series(ctx, m, original)) {
            // Google shows it no more: whatever stood for it goes, and nothing replaces it.
            let gone = Decision::Skip(SkipReason::Cancelled);
            planned.extend(plan_occurrence_row(
                ctx,
                exception,
                target,
                gone,
                false,
                &series_block,
            ));
            planned.push(plan_detached_row(ctx, exception, target, gone, false));
            continue;
        }
        let decision = if family.deleted {
            Decision::Skip(SkipReason::Cancelled)
        } else {
            ctx.decide(exception, target, holdings)
        };
        if family.deleted {
            // The block series goes, and its occurrences with it: only detached blocks
            // need a word.
            planned.push(plan_detached_row(ctx, exception, target, decision, false));
            continue;
        }
        if let Some(occurrence) = plan_occurrence_row(
            ctx,
            exception,
            target,
            decision,
            series_wanted,
            &series_block,
        ) {
            planned.push(occurrence);
        }
        planned.push(plan_detached_row(
            ctx,
            exception,
            target,
            decision,
            series_wanted,
        ));
    }
    planned
}

/// Whether the exception's original start lies past the end of its master's rules (the
/// series was ended before it, as "this and following" does).
fn past_its_series(ctx: &PlanContext<'_>, master: &SourceEvent, original: &EventTime) -> bool {
    let Some(start) = master.start.as_ref() else {
        return false;
    };
    let zone = start.time_zone().or(ctx.source.time_zone.as_deref());
    beyond_series_end(&master.recurrence, start, original, zone)
}

fn plan_series_row(
    ctx: &PlanContext<'_>,
    series_id: &EventId,
    master: Option<&SourceEvent>,
    target: &TargetAccount,
    holdings: &TargetHoldings,
) -> PlannedBlock {
    let block_id = ctx.block_id(series_id, target);
    let decision = master.map_or(Decision::Skip(SkipReason::Cancelled), |m| {
        ctx.decide(m, target, holdings)
    });
    let desired = master
        .filter(|_| decision == Decision::Mirror)
        .and_then(|m| live_body(ctx.cfg, ctx.source, m, None))
        .map(|body| DesiredBlock::new(target.id, block_id.clone(), body));
    PlannedBlock {
        target: target.id,
        block_id,
        source_event_id: series_id.clone(),
        role: BlockRole::Series,
        desired,
        decision,
    }
}

/// The exception as an occurrence of the block series: live when mirrored, cancelled when
/// not, absent once the series is not wanted (it goes at Google, and its occurrences with
/// it).
fn plan_occurrence_row(
    ctx: &PlanContext<'_>,
    exception: &SourceEvent,
    target: &TargetAccount,
    decision: Decision,
    series_wanted: bool,
    series_block: &crate::domain::BlockId,
) -> Option<PlannedBlock> {
    let block_id = ctx.block_id(&exception.id, target);
    if block_id.as_str() == series_block.as_str() {
        return None; // an "exception" without an instance suffix cannot be addressed
    }
    let original = exception.original_start.as_ref()?;
    let body = if !series_wanted {
        None
    } else if decision == Decision::Mirror {
        live_body(ctx.cfg, ctx.source, exception, Some(series_block.as_str()))
    } else {
        Some(cancelled_occurrence_body(series_block.as_str(), original))
    };
    Some(PlannedBlock {
        target: target.id,
        source_event_id: exception.id.clone(),
        role: BlockRole::Occurrence {
            series: series_block.clone(),
        },
        desired: body.map(|b| DesiredBlock::new(target.id, block_id.clone(), b)),
        block_id,
        decision,
    })
}

/// The exception as a single block of its own: only while its series has no block series
/// and it is itself mirrored.
fn plan_detached_row(
    ctx: &PlanContext<'_>,
    exception: &SourceEvent,
    target: &TargetAccount,
    decision: Decision,
    series_wanted: bool,
) -> PlannedBlock {
    let block_id = detached_block_id(
        &ctx.cfg.installation,
        &ctx.source.calendar_id,
        &exception.id,
        &target.calendar_id,
    );
    let desired = (!series_wanted && decision == Decision::Mirror)
        .then(|| live_body(ctx.cfg, ctx.source, exception, None))
        .flatten()
        .map(|body| DesiredBlock::new(target.id, block_id.clone(), body));
    PlannedBlock {
        target: target.id,
        block_id,
        source_event_id: exception.id.clone(),
        role: BlockRole::Detached,
        desired,
        decision,
    }
}
