//! What the week and the events pages read, put in the shape they draw: a calendar's stored
//! events as families (a single event, or a series with its changed occurrences), the blocks
//! each calendar should hold, and the planner's reason why an event gets no block.
//!
//! Collaborators: the store (stored source events, the outbox rows that want a block, the
//! same meeting's copies on other calendars), [`sync::mirror_decision`] (the very rule the
//! engine applies, asked again here to explain a missing block) and [`super::calendar`]
//! (the occurrences inside a window).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use super::calendar::{body_original, body_times, spans, Override, Shape, Span, When, Window};
use crate::domain::{AccountId, EventId};
use crate::http::AppState;
use crate::store::{Account, OutboxRow, RowRole, StoreError, StoredEvent};
use crate::sync::{
    self, convert, BlockBody, Decision, EventStatus, SkipReason, SourceEvent, TargetHoldings,
};

/// A stored source event with the planner's reading of it.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub stored: StoredEvent,
    pub event: SourceEvent,
}

/// A single event, or a series with the occurrences its calendar changed.
#[derive(Debug, Clone)]
pub(crate) struct Family {
    /// The event's id, or the series' id.
    pub id: EventId,
    /// `None` for exceptions whose series is not stored (deleted, or not listed yet).
    pub master: Option<Source>,
    pub exceptions: Vec<Source>,
}

impl Family {
    /// Every occurrence inside `window`, with the stored event it came from.
    pub fn spans(&self, zone: Option<&str>, window: &Window) -> Vec<(Span, &Source)> {
        let shape = self.master.as_ref().and_then(|m| Shape::of_event(&m.event));
        let overrides: Vec<Override> = self
            .exceptions
            .iter()
            .filter_map(|e| {
                let original = e.event.original_start.as_ref()?.start_key();
                let when = match (e.event.status, &e.event.start, &e.event.end) {
                    (EventStatus::Cancelled, _, _) => None,
                    (_, Some(start), Some(end)) => When::of(start, end),
                    _ => None,
                };
                Some(Override { original, when })
            })
            .collect();
        let with_original: Vec<&Source> = self
            .exceptions
            .iter()
            .filter(|e| e.event.original_start.is_some())
            .collect();
        spans(shape.as_ref(), &overrides, zone, window)
            .into_iter()
            .filter_map(|span| {
                let from = match span.exception {
                    Some(i) => *with_original.get(i)?,
                    None => self.master.as_ref()?,
                };
                Some((span, from))
            })
            .collect()
    }

    /// Whether the source is a series.
    pub fn is_series(&self) -> bool {
        self.master.as_ref().is_some_and(|m| m.event.is_series()) || self.master.is_none()
    }
}

/// `stored`'s non-block events grouped into families, by id.
pub(crate) fn families(stored: Vec<StoredEvent>) -> Vec<Family> {
    let mut by_id: BTreeMap<String, Family> = BTreeMap::new();
    for row in stored.into_iter().filter(|s| !s.is_block) {
        let Ok(event) = convert::from_stored(&row.data) else {
            continue;
        };
        let series = row.recurring_event_id.clone();
        let id = series.clone().unwrap_or_else(|| row.event_id.clone());
        let family = by_id.entry(id.to_string()).or_insert_with(|| Family {
            id,
            master: None,
            exceptions: Vec::new(),
        });
        let source = Source { stored: row, event };
        if series.is_some() {
            family.exceptions.push(source);
        } else {
            family.master = Some(source);
        }
    }
    by_id.into_values().collect()
}

/// A block a calendar should hold, and where it stands.
#[derive(Debug, Clone)]
pub(crate) struct BlockFamily {
    pub row: OutboxRow,
    pub body: BlockBody,
    /// The occurrence rows of a block series.
    pub occurrences: Vec<(OutboxRow, BlockBody)>,
}

impl BlockFamily {
    /// Every occurrence inside `window`, with the row it came from.
    pub fn spans(&self, zone: Option<&str>, window: &Window) -> Vec<(Span, &OutboxRow)> {
        let shape = body_times(&self.body).map(|(start, end)| Shape {
            start,
            end,
            recurrence: self.body.recurrence.clone(),
        });
        let usable: Vec<&(OutboxRow, BlockBody)> = self
            .occurrences
            .iter()
            .filter(|(_, b)| body_original(b).is_some())
            .collect();
        let overrides: Vec<Override> = usable
            .iter()
            .filter_map(|(_, b)| {
                Some(Override {
                    original: body_original(b)?,
                    when: if b.is_cancelled() {
                        None
                    } else {
                        body_times(b).and_then(|(s, e)| When::of(&s, &e))
                    },
                })
            })
            .collect();
        spans(shape.as_ref(), &overrides, zone, window)
            .into_iter()
            .filter_map(|span| {
                let row = match span.exception {
                    Some(i) => &usable.get(i)?.0,
                    None => &self.row,
                };
                Some((span, row))
            })
            .collect()
    }
}

/// The rows that want a block, per target, with series and their occurrences together.
pub(crate) fn block_families(rows: Vec<OutboxRow>) -> BTreeMap<AccountId, Vec<BlockFamily>> {
    let mut out: BTreeMap<AccountId, Vec<BlockFamily>> = BTreeMap::new();
    let mut occurrences = Vec::new();
    for row in rows {
        let Some(body) = row
            .body
            .clone()
            .and_then(|b| serde_json::from_value::<BlockBody>(b).ok())
        else {
            continue;
        };
        if row.role == RowRole::Occurrence {
            occurrences.push((row, body));
            continue;
        }
        out.entry(row.target_account_id)
            .or_default()
            .push(BlockFamily {
                row,
                body,
                occurrences: Vec::new(),
            });
    }
    for (row, body) in occurrences {
        let series = out.get_mut(&row.target_account_id).and_then(|families| {
            families.iter_mut().find(|f| {
                f.row.role == RowRole::Series
                    && Some(&f.row.block_id) == row.series_block_id.as_ref()
            })
        });
        if let Some(series) = series {
            series.occurrences.push((row, body));
        }
    }
    out
}

/// Asks the planner's rules again, to say why an event has no block: the source's and the
/// target's own rules (as the engine resolves them), the group and the links.
pub(crate) struct Explainer<'a> {
    pub services: &'a crate::services::Services,
    /// (source, target) links turned off.
    pub off: HashSet<(AccountId, AccountId)>,
    pub now: DateTime<Utc>,
}

/// Why an event gets no block on a calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoBlock {
    /// One of the planner's rules (free, declined, filtered, same meeting, …).
    Rule(SkipReason),
    /// The target is in another group; blocks never cross groups.
    OtherGroup,
    /// The link from the source to the target is turned off.
    LinkOff,
}

impl<'a> Explainer<'a> {
    /// Reads the links; `now` decides what has ended.
    pub async fn new(state: &'a AppState) -> Result<Explainer<'a>, StoreError> {
        Ok(Explainer {
            services: state.control.services(),
            off: state.store.disabled_links().await?,
            now: Utc::now(),
        })
    }

    fn planner(&self, account: &Account) -> sync::Account {
        crate::actors::sync_job::planner_account(self.services, account, None)
    }

    /// The reason `event` of `source` gets no block on `target`, or `None` when it does.
    pub fn reason(
        &self,
        source: &Account,
        event: &SourceEvent,
        target: &Account,
        holdings: &TargetHoldings,
    ) -> Option<NoBlock> {
        if source.id != target.id && source.group != target.group {
            return Some(NoBlock::OtherGroup);
        }
        let (from, to) = (self.planner(source), self.planner(target));
        let cfg = self.services.planner.for_pair(&from.rules, &to.rules);
        match sync::mirror_decision(&cfg, &from, event, &to, holdings, self.now) {
            Decision::Skip(reason) => Some(NoBlock::Rule(reason)),
            Decision::Mirror if self.off.contains(&(source.id, target.id)) => {
                Some(NoBlock::LinkOff)
            }
            Decision::Mirror => None,
        }
    }

    /// The reason that holds for every calendar of the group (free, declined, …, or every
    /// link off), judged against a linked calendar without the same meeting; `None` when
    /// the event is mirrored somewhere.
    pub fn source_reason(
        &self,
        source: &Account,
        event: &SourceEvent,
        others: &[Account],
    ) -> Option<NoBlock> {
        let mut group = others
            .iter()
            .filter(|a| a.id != source.id && a.group == source.group)
            .peekable();
        group.peek()?;
        let mut verdict = Some(NoBlock::LinkOff);
        for target in group {
            match self.reason(source, event, target, &TargetHoldings::new()) {
                None | Some(NoBlock::Rule(SkipReason::SameMeetingOnTarget)) => return None,
                Some(NoBlock::LinkOff) => {}
                other => verdict = other,
            }
        }
        verdict
    }
}

/// What `target` holds of the meeting of `event` (the same-meeting rule), from the store.
pub(crate) async fn holdings(
    state: &AppState,
    event: &SourceEvent,
    target: AccountId,
) -> Result<TargetHoldings, StoreError> {
    let Some(uid) = event.ical_uid.as_deref() else {
        return Ok(TargetHoldings::new());
    };
    let copies = state.store.events_by_ical_uids(&[uid]).await?;
    let on_target: Vec<SourceEvent> = copies
        .iter()
        .filter(|c| c.account_id == target)
        .filter_map(|c| convert::from_stored(&c.data).ok())
        .collect();
    Ok(TargetHoldings::from_events(&on_target))
}

/// Why there is no block, in plain words; `target` names the calendar for the
/// same-meeting rule.
pub(crate) fn reason_words(reason: NoBlock, target: &str) -> String {
    let rule = match reason {
        NoBlock::OtherGroup => {
            return "it is in another group; blocks never cross groups".into();
        }
        NoBlock::LinkOff => return "the link to it is off (Links page)".into(),
        NoBlock::Rule(rule) => rule,
    };
    match rule {
        SkipReason::OwnCalendar => "it is this calendar's own event".into(),
        SkipReason::IsBlock => "it is a block itself; blocks are never mirrored".into(),
        SkipReason::Cancelled => "it is cancelled".into(),
        SkipReason::Declined => "the calendar's owner declined it".into(),
        SkipReason::WorkingLocation => "it is a working-location entry".into(),
        SkipReason::Birthday => "it is a birthday".into(),
        SkipReason::OutOfOffice => {
            "it is out of office, and its calendar's rules skip out of office".into()
        }
        SkipReason::FocusTime => {
            "it is focus time, and its calendar's rules skip focus time".into()
        }
        SkipReason::Transparent => "it is marked free".into(),
        SkipReason::AllDay => "it is all-day, and its calendar's rules skip all-day events".into(),
        SkipReason::TitleExcluded => "its title matches its calendar's exclude-title regex".into(),
        SkipReason::Malformed => "its start and end cannot be read".into(),
        SkipReason::Ended => "it ended before its calendar's look-back".into(),
        SkipReason::SameMeetingOnTarget => {
            format!("{target} is in the same meeting already (accepted and busy there)")
        }
    }
}

/// A short label of a skip reason (`free`, `declined`, …) for lists.
pub(crate) fn reason_label(reason: NoBlock) -> &'static str {
    let reason = match reason {
        NoBlock::OtherGroup => return "other group",
        NoBlock::LinkOff => return "links off",
        NoBlock::Rule(rule) => rule,
    };
    match reason {
        SkipReason::Transparent => "free",
        SkipReason::Declined => "declined",
        SkipReason::SameMeetingOnTarget => "same meeting",
        SkipReason::TitleExcluded
        | SkipReason::AllDay
        | SkipReason::OutOfOffice
        | SkipReason::FocusTime => "filtered",
        SkipReason::Ended => "ended",
        SkipReason::Cancelled => "cancelled",
        SkipReason::WorkingLocation | SkipReason::Birthday => "not busy time",
        SkipReason::IsBlock => "a block",
        SkipReason::Malformed => "unreadable",
        SkipReason::OwnCalendar => "own calendar",
    }
}
