//! The entry points for one event: [`plan_event`] (one event onto one target, for tests and
//! for explaining a decision), and the [`PlannedBlock`]s that the per-occurrence model
//! ([`super::occurrences`]) and the sync pass ([`super::pass`]) produce.

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::{AccountId, BlockId, EventId};

use super::block::{live_body, BlockBody};
use super::ids::block_id;
use super::model::{
    EventTime, PlannerConfig, SourceAccount, SourceEvent, TargetAccount, TargetHoldings,
};
use super::rules::{mirror_decision, Decision};

/// The block one target calendar must hold for one source event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBlock {
    pub target: AccountId,
    pub block_id: BlockId,
    pub body: BlockBody,
    /// [`BlockBody::hash`]: equal hashes mean no write is needed.
    pub hash: String,
}

impl DesiredBlock {
    pub(crate) fn new(target: AccountId, block_id: BlockId, body: BlockBody) -> Self {
        Self {
            target,
            block_id,
            hash: body.hash(),
            body,
        }
    }
}

/// What a block id stands for on its target, which decides how the writer may write it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BlockRole {
    /// The block of a single event: inserted, patched, deleted on its own.
    Single,
    /// A block series, the copy of a source series.
    Series,
    /// One occurrence of the block series `series`, addressed by Google's instance id; only
    /// written once that series exists, and gone with it.
    Occurrence { series: BlockId },
    /// A single block standing in for a busy exception of a series whose block series must
    /// not exist (see [`super::ids::detached_block_id`]).
    Detached,
}

/// The planner's verdict on one (source event, target) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBlock {
    pub target: AccountId,
    pub block_id: BlockId,
    pub source_event_id: EventId,
    pub role: BlockRole,
    /// `None`: this block must not exist (source deleted, declined, free, filtered out, ended,
    /// or the target holds the same meeting). An occurrence that must not be blocked while
    /// its block series stays is never `None`: it is a cancelled occurrence body.
    pub desired: Option<DesiredBlock>,
    /// Why, for logs, metrics and the dashboard's trace.
    pub decision: Decision,
}

/// The block `target` must hold for the single (non-recurring) `event` of `source` at `now`,
/// or `None` when it must hold none. Occurrences of a series are planned with their series
/// by [`super::occurrences::plan_family`].
pub fn plan_event(
    cfg: &PlannerConfig,
    source: &SourceAccount,
    event: &SourceEvent,
    target: &TargetAccount,
    holdings: &TargetHoldings,
    now: DateTime<Utc>,
) -> Option<DesiredBlock> {
    let ctx = PlanContext { cfg, source, now };
    plan_single(&ctx, event, target, holdings).desired
}

/// What every planning step of one source calendar shares.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    pub cfg: &'a PlannerConfig,
    pub source: &'a SourceAccount,
    pub now: DateTime<Utc>,
}

impl PlanContext<'_> {
    pub(crate) fn decide(
        &self,
        event: &SourceEvent,
        target: &TargetAccount,
        holdings: &TargetHoldings,
    ) -> Decision {
        mirror_decision(self.cfg, self.source, event, target, holdings, self.now)
    }

    pub(crate) fn block_id(&self, event: &EventId, target: &TargetAccount) -> BlockId {
        block_id(
            &self.cfg.installation,
            &self.source.calendar_id,
            event,
            &target.calendar_id,
        )
    }

    /// A cancelled occurrence has no end; one that started over a day before the look-back
    /// cutoff is treated as ended, so a full resync does not rewrite a series' whole history.
    pub(crate) fn is_past(&self, original: &EventTime) -> bool {
        let zone = original.time_zone().or(self.source.time_zone.as_deref());
        let cutoff = self
            .now
            .checked_sub_signed(self.cfg.look_back)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        original.latest_instant(zone) + TimeDelta::days(1) <= cutoff
    }
}

/// A single event (or a lone exception whose series is unknown) onto one target.
pub(crate) fn plan_single(
    ctx: &PlanContext<'_>,
    event: &SourceEvent,
    target: &TargetAccount,
    holdings: &TargetHoldings,
) -> PlannedBlock {
    let decision = ctx.decide(event, target, holdings);
    let block_id = ctx.block_id(&event.id, target);
    let desired = (decision == Decision::Mirror)
        .then(|| live_body(ctx.cfg, ctx.source, event, None))
        .flatten()
        .map(|body| DesiredBlock::new(target.id, block_id.clone(), body));
    PlannedBlock {
        target: target.id,
        block_id,
        source_event_id: event.id.clone(),
        role: BlockRole::Single,
        desired,
        decision,
    }
}
