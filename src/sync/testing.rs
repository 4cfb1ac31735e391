//! Helpers shared by the planner's table and property tests: running the whole pass over a
//! few listed events, as an incremental sync of one calendar would.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::AccountId;

use super::*;

/// The pass over `listed` (an incremental listing of `source`, nothing stored yet) onto
/// `targets`, with `held` the other calendars' stored events (the same-meeting rule).
pub(crate) fn plan_listed(
    cfg: &PlannerConfig,
    source: &Account,
    listed: &[SourceEvent],
    targets: &[Account],
    held: &[(AccountId, SourceEvent)],
    now: DateTime<Utc>,
) -> Vec<PlannedBlock> {
    let input = PassInput {
        cfg,
        now,
        source: source.clone(),
        full: false,
        listed: listed.iter().map(listed_event).collect(),
        known: Vec::new(),
        targets: targets.to_vec(),
        sources_of_me: Vec::new(),
        meetings: held.to_vec(),
        rows_on_me: HashMap::new(),
        guard: GuardInput::default(),
        replan_all: false,
    };
    sync_pass(&input)
        .blocks
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// A listed event as the pass receives it (the wire JSON is not needed by the rules).
pub(crate) fn listed_event(event: &SourceEvent) -> ListedEvent {
    ListedEvent {
        event: event.clone(),
        data: serde_json::Value::Null,
        google_updated: None,
    }
}

/// The planned rows on `target` whose role matches.
pub(crate) fn row_ending(
    planned: &[PlannedBlock],
    target: AccountId,
    role: fn(&BlockRole) -> bool,
) -> Vec<&PlannedBlock> {
    planned
        .iter()
        .filter(|p| p.target == target && role(&p.role))
        .collect()
}
