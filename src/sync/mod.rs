//! The pure sync pass and the planner beneath it.
//!
//! [`sync_pass`] is everything one sync of one calendar decides: given what was listed, what
//! the store holds, the planner config and `now`, it returns one [`SyncPlan`] — events to
//! store and forget, the desired state of every affected (target, block id), exclusions, the
//! mass-deletion hold. Beneath it, the per-occurrence model ([`plan_family`]) plans a whole
//! series onto a target at once, and [`mirror_decision`] judges one event. Nothing here does
//! I/O or reads a clock (`now` is an argument), so every rule below is covered by table
//! tests (`tests.rs`, `pass_tests.rs`) and property tests (`proptests.rs`,
//! `series_proptests.rs`).
//!
//! # The rules, in plain words (docs/sync-rules.md)
//!
//! An event is **mirrored** onto every *other* connected calendar when all of these hold:
//! - it is not a block: anything carrying a block marker (ours or another installation's)
//!   is never mirrored, and neither is a tombstone whose id is one of our block ids;
//! - it is confirmed or tentative (a cancelled event has no block);
//! - the calendar's owner has not declined it;
//! - it is not a working-location or birthday entry, nor — when so configured — an
//!   out-of-office or focus-time entry;
//! - it is busy (opaque), not free (transparent);
//! - it is not all-day, when all-day events are configured to be skipped;
//! - its title does not match the exclusion regex, when one is configured;
//! - it ends after `now − look_back` (for a series: its last occurrence, which is only known
//!   when the rule ends by UNTIL or by a simple COUNT — otherwise the series counts as live);
//! - the target does not already hold a live, accepted, opaque copy of the same meeting
//!   (same iCalUID and, for an occurrence, the same original start; a target holding the
//!   whole series holds each of its occurrences).
//!
//! A **block** is private, opaque, without reminders, attendees, location or conference;
//! titled by the template (`"{alias} Block"` by default); its description holds the source's
//! title, time, location, calendar and link unless the mode is busy-only; it keeps the
//! source's start and end exactly (all-day stays all-day, a timed event keeps its `dateTime`
//! and `timeZone`) and a series keeps its recurrence lines. Private extended properties mark
//! it with the installation, source account and source event.
//!
//! Its **id** is derived from (installation, source calendar, source event id, target
//! calendar), so every retry and every replica computes the same id. An occurrence of a
//! series keeps Google's instance suffix, so a moved occurrence patches the matching
//! occurrence of the block series and a cancelled one cancels it.
//!
//! **Series** are planned occurrence by occurrence ([`occurrences`]): an occurrence that must
//! not be blocked is always a cancelled block occurrence; a series whose block must go takes
//! its occurrences with it, and each of its exceptions that is still busy gets a detached
//! single block.
//!
//! # Collaborators and lifecycle
//! The CalendarActor's sync job (`actors/sync_job.rs`) converts listed events into
//! [`SourceEvent`]s ([`convert`]), reads what the pass needs from the store, calls
//! [`sync_pass`] and commits the plan with the sync token; the BlockWriter converges Google
//! to each [`DesiredBlock`] and compares [`DesiredBlock::hash`] with what it applied. Nothing
//! here holds state between calls.

mod block;
pub mod convert;
mod ids;
mod marker;
mod model;
mod occurrences;
pub mod pass;
mod plan;
mod rules;

#[cfg(test)]
mod pass_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod series_proptests;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use block::{BlockBody, BlockTime, ExtendedProperties, Reminders};
pub use ids::{block_id, detached_block_id, is_block_id, split_instance_id, BLOCK_ID_LEN};
pub use marker::{
    is_block, is_ours, Marker, MARKER_INSTALLATION_KEY, MARKER_SOURCE_ACCOUNT_KEY,
    MARKER_SOURCE_EVENT_KEY,
};
pub use model::{
    Account, EventStatus, EventTime, EventType, MeetingKey, PlannerConfig, ResponseStatus, Rules,
    SourceAccount, SourceEvent, StartKey, TargetAccount, TargetHoldings, TimeError, Transparency,
    Visibility,
};
pub use occurrences::{plan_family, Family};
pub use pass::{sync_pass, GuardChange, GuardInput, ListedEvent, PassInput, RowView, SyncPlan};
pub use plan::{plan_event, BlockRole, DesiredBlock, PlanContext, PlannedBlock};
pub use rules::{mirror_decision, Decision, SkipReason};
