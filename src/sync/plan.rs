//! The entry points: one event onto one target ([`plan_event`]), or a batch of changed
//! events of one account onto all its targets ([`plan_changes`]).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::{AccountId, BlockId, EventId};

use super::block::{cancelled_occurrence_body, live_body, BlockBody};
use super::ids::block_id;
use super::marker::is_block;
use super::model::{
    EventTime, PlannerConfig, SourceAccount, SourceEvent, TargetAccount, TargetHoldings,
};
use super::rules::{is_own_calendar, mirror_decision, Decision, SkipReason};

/// The block one target calendar must hold for one source event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBlock {
    pub target: AccountId,
    pub block_id: BlockId,
    pub body: BlockBody,
    /// [`BlockBody::hash`]: equal hashes mean no write is needed.
    pub hash: String,
}

/// The planner's verdict on one (source event, target) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBlock {
    pub target: AccountId,
    pub block_id: BlockId,
    pub source_event_id: EventId,
    /// `None`: this block must not exist (source deleted, declined, free, filtered out, ended,
    /// or the target holds the same meeting). For an occurrence id that means the block
    /// series' occurrence is cancelled, which is what a delete of an instance does at Google.
    pub desired: Option<DesiredBlock>,
    /// Why, for logs and metrics; `Skip(Cancelled)` with a desired body is a cancelled
    /// occurrence of a series.
    pub decision: Decision,
}

/// The block `target` must hold for `event` of `source` at `now`, or `None` when it must
/// hold none.
pub fn plan_event(
    cfg: &PlannerConfig,
    source: &SourceAccount,
    event: &SourceEvent,
    target: &TargetAccount,
    holdings: &TargetHoldings,
    now: DateTime<Utc>,
) -> Option<DesiredBlock> {
    let decision = mirror_decision(cfg, source, event, target, holdings, now);
    desired_for(cfg, source, event, target, holdings, now, decision)
}

/// Plans every changed event of `source` onto every other target. Blocks listed on the
/// source (any marker, or our block id on a tombstone) yield no entries at all: no block
/// ever exists for a block, so there is nothing to create or delete. A target without an
/// entry in `holdings_by_target` is taken to hold nothing.
pub fn plan_changes(
    cfg: &PlannerConfig,
    source: &SourceAccount,
    changed_events: &[SourceEvent],
    targets: &[TargetAccount],
    holdings_by_target: &HashMap<AccountId, TargetHoldings>,
    now: DateTime<Utc>,
) -> Vec<PlannedBlock> {
    let nothing = TargetHoldings::new();
    let mut planned = Vec::new();
    for event in changed_events {
        if is_block(event, &cfg.installation) {
            continue;
        }
        for target in targets.iter().filter(|t| !is_own_calendar(source, t)) {
            let holdings = holdings_by_target.get(&target.id).unwrap_or(&nothing);
            let decision = mirror_decision(cfg, source, event, target, holdings, now);
            planned.push(PlannedBlock {
                target: target.id,
                block_id: block_id(
                    &cfg.installation,
                    &source.calendar_id,
                    &event.id,
                    &target.calendar_id,
                ),
                source_event_id: event.id.clone(),
                desired: desired_for(cfg, source, event, target, holdings, now, decision),
                decision,
            });
        }
    }
    planned
}

fn desired_for(
    cfg: &PlannerConfig,
    source: &SourceAccount,
    event: &SourceEvent,
    target: &TargetAccount,
    holdings: &TargetHoldings,
    now: DateTime<Utc>,
    decision: Decision,
) -> Option<DesiredBlock> {
    let id = block_id(
        &cfg.installation,
        &source.calendar_id,
        &event.id,
        &target.calendar_id,
    );
    // Only an id with Google's instance suffix addresses an occurrence of the block series.
    let series_id =
        (event.is_instance() && id.series() != id.as_str()).then(|| id.series().to_owned());
    let body = match decision {
        Decision::Mirror => live_body(cfg, source, event, series_id.as_deref())?,
        Decision::Skip(SkipReason::Cancelled) => {
            let series_id = series_id?;
            let original = event.original_start.as_ref()?;
            if occurrence_is_past(cfg, source, original, now)
                || event
                    .ical_uid
                    .as_deref()
                    .is_some_and(|uid| holdings.holds(uid, Some(original.start_key())))
            {
                return None;
            }
            cancelled_occurrence_body(&series_id, original)
        }
        Decision::Skip(_) => return None,
    };
    Some(DesiredBlock {
        target: target.id,
        block_id: id,
        hash: body.hash(),
        body,
    })
}

/// A cancelled occurrence has no end; one that started over a day before the look-back
/// cutoff is treated as ended, so a full resync does not rewrite a series' whole history.
fn occurrence_is_past(
    cfg: &PlannerConfig,
    source: &SourceAccount,
    original: &EventTime,
    now: DateTime<Utc>,
) -> bool {
    let zone = original.time_zone().or(source.time_zone.as_deref());
    let cutoff = now
        .checked_sub_signed(cfg.look_back)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    original.latest_instant(zone) + TimeDelta::days(1) <= cutoff
}
