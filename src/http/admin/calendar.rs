//! When events and blocks take time inside a window: the occurrences of a single event or a
//! series (with its changed and cancelled occurrences), for the week view and the events list.
//!
//! Role: the store keeps source events as Google's wire events (`sync::convert`) and blocks
//! as the bodies Google should hold (`sync::BlockBody`); both name a start, an end and, for a
//! series, RFC 5545 recurrence lines. Series are expanded with the recurrence engine of
//! `gcal-emulator` (the same crate the demo runs; its rules follow Google's documented
//! behaviour, see docs/emulator.md), in the zone of the series' start. Pure: no I/O, no clock.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use gcal_emulator::recurrence::{expand, Start};

use crate::sync::{BlockBody, EventTime, SourceEvent, StartKey};

/// Occurrences of one series expanded at most.
const MAX_OCCURRENCES: usize = 1000;

/// When something takes time: an instant range, or whole days (`end` exclusive, as Google).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Timed {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    AllDay {
        first: NaiveDate,
        end: NaiveDate,
    },
}

impl When {
    pub fn of(start: &EventTime, end: &EventTime) -> Option<When> {
        match (start, end) {
            (EventTime::AllDay { date: first }, EventTime::AllDay { date: end }) => {
                Some(When::AllDay {
                    first: *first,
                    end: (*end).max(*first + TimeDelta::days(1)),
                })
            }
            (EventTime::Timed { instant: s, .. }, EventTime::Timed { instant: e, .. }) => {
                Some(When::Timed {
                    start: *s,
                    end: (*e).max(*s),
                })
            }
            _ => None,
        }
    }

    fn of_starts(start: &Start, end: &Start) -> Option<When> {
        match (start, end) {
            (Start::Date(first), Start::Date(end)) => Some(When::AllDay {
                first: *first,
                end: *end,
            }),
            (Start::DateTime(_), Start::DateTime(_)) => Some(When::Timed {
                start: start.to_utc(),
                end: end.to_utc(),
            }),
            _ => None,
        }
    }

    pub fn overlaps(&self, window: &Window) -> bool {
        match *self {
            When::Timed { start, end } => {
                start < window.end
                    && (end > window.start || (end == start && start >= window.start))
            }
            When::AllDay { first, end } => first < window.end_day && end > window.first_day,
        }
    }

    /// The start, for sorting: all-day at midnight UTC of its first day.
    pub fn sort_key(&self) -> DateTime<Utc> {
        match *self {
            When::Timed { start, .. } => start,
            When::AllDay { first, .. } => first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
        }
    }
}

/// A span of time in the operator's zone: instants for timed things, local dates for
/// all-day ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub first_day: NaiveDate,
    /// Exclusive.
    pub end_day: NaiveDate,
}

/// What takes time: a single event or a whole series (its rule and its first occurrence).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shape {
    pub start: EventTime,
    pub end: EventTime,
    pub recurrence: Vec<String>,
}

impl Shape {
    pub fn of_event(event: &SourceEvent) -> Option<Shape> {
        Some(Shape {
            start: event.start.clone()?,
            end: event.end.clone()?,
            recurrence: event.recurrence.clone(),
        })
    }
}

/// A changed occurrence of a series: which one (its original start), and when it takes time
/// now (`None`: cancelled).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Override {
    pub original: StartKey,
    pub when: Option<When>,
}

/// One occurrence found in the window; `exception` names the override it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub when: When,
    pub exception: Option<usize>,
}

/// Every occurrence of `shape` (a series or not) and of its overrides inside `window`.
/// `zone` reads a series whose start names no zone (the calendar's zone); UTC otherwise.
pub(crate) fn spans(
    shape: Option<&Shape>,
    overrides: &[Override],
    zone: Option<&str>,
    window: &Window,
) -> Vec<Span> {
    let mut out = Vec::new();
    if let Some(shape) = shape {
        for (key, when) in occurrences(shape, zone, window) {
            if overrides.iter().any(|o| o.original == key) {
                continue;
            }
            if when.overlaps(window) {
                out.push(Span {
                    when,
                    exception: None,
                });
            }
        }
    }
    for (i, o) in overrides.iter().enumerate() {
        if let Some(when) = o.when.filter(|w| w.overlaps(window)) {
            out.push(Span {
                when,
                exception: Some(i),
            });
        }
    }
    out.sort_by_key(|s| s.when.sort_key());
    out
}

/// The occurrences of `shape` near `window`, keyed by their original start.
fn occurrences(shape: &Shape, zone: Option<&str>, window: &Window) -> Vec<(StartKey, When)> {
    let single = || {
        When::of(&shape.start, &shape.end)
            .map(|w| vec![(shape.start.start_key(), w)])
            .unwrap_or_default()
    };
    if shape.recurrence.is_empty() {
        return single();
    }
    let (Some(start), Some(end)) = (
        start_of(&shape.start, zone),
        start_of(&shape.end, shape.start.time_zone().or(zone)),
    ) else {
        return single();
    };
    let margin = TimeDelta::days(2);
    match expand(
        &shape.recurrence,
        &start,
        &end,
        Some(window.start - margin),
        Some(window.end + margin),
        MAX_OCCURRENCES,
    ) {
        Ok(found) => found
            .iter()
            .filter_map(|o| Some((key_of(&o.start), When::of_starts(&o.start, &o.end)?)))
            .collect(),
        // A rule the engine cannot read: show at least the first occurrence.
        Err(_) => single(),
    }
}

fn start_of(time: &EventTime, zone: Option<&str>) -> Option<Start> {
    match time {
        EventTime::AllDay { date } => Some(Start::Date(*date)),
        EventTime::Timed {
            instant, time_zone, ..
        } => {
            let tz: Tz = time_zone
                .as_deref()
                .or(zone)
                .and_then(|z| z.parse().ok())
                .unwrap_or(Tz::UTC);
            Some(Start::DateTime(instant.with_timezone(&tz)))
        }
    }
}

fn key_of(start: &Start) -> StartKey {
    match start {
        Start::Date(date) => StartKey::Date(*date),
        Start::DateTime(_) => StartKey::Instant(start.to_utc()),
    }
}

/// A block body's start and end, read as the planner's times.
pub(crate) fn body_times(body: &BlockBody) -> Option<(EventTime, EventTime)> {
    Some((
        block_time(body.start.as_ref()?)?,
        block_time(body.end.as_ref()?)?,
    ))
}

/// The original start of a block occurrence.
pub(crate) fn body_original(body: &BlockBody) -> Option<StartKey> {
    block_time(body.original_start_time.as_ref()?).map(|t| t.start_key())
}

fn block_time(t: &crate::sync::BlockTime) -> Option<EventTime> {
    match (&t.date_time, &t.date) {
        (Some(dt), _) => EventTime::parse_timed(dt, t.time_zone.as_deref()).ok(),
        (None, Some(d)) => EventTime::parse_date(d).ok(),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        raw.parse().unwrap()
    }

    fn week() -> Window {
        Window {
            start: at("2026-03-02T00:00:00Z"),
            end: at("2026-03-09T00:00:00Z"),
            first_day: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            end_day: NaiveDate::from_ymd_opt(2026, 3, 9).unwrap(),
        }
    }

    fn timed(raw: &str) -> EventTime {
        EventTime::parse_timed(raw, Some("UTC")).unwrap()
    }

    #[test]
    fn a_single_event_in_the_week_is_one_span_and_one_outside_is_none() {
        let inside = Shape {
            start: timed("2026-03-05T10:00:00Z"),
            end: timed("2026-03-05T11:00:00Z"),
            recurrence: vec![],
        };
        let outside = Shape {
            start: timed("2026-03-12T10:00:00Z"),
            end: timed("2026-03-12T11:00:00Z"),
            recurrence: vec![],
        };

        let found = spans(Some(&inside), &[], None, &week());

        assert_eq!(
            found,
            [Span {
                when: When::Timed {
                    start: at("2026-03-05T10:00:00Z"),
                    end: at("2026-03-05T11:00:00Z")
                },
                exception: None
            }]
        );
        assert!(spans(Some(&outside), &[], None, &week()).is_empty());
    }

    #[test]
    fn a_daily_series_shows_each_day_with_its_moved_and_cancelled_occurrences() {
        let series = Shape {
            start: timed("2026-03-02T09:00:00Z"),
            end: timed("2026-03-02T09:15:00Z"),
            recurrence: vec!["RRULE:FREQ=DAILY;COUNT=5".into()],
        };
        let moved = Override {
            original: StartKey::Instant(at("2026-03-03T09:00:00Z")),
            when: Some(When::Timed {
                start: at("2026-03-03T15:00:00Z"),
                end: at("2026-03-03T15:15:00Z"),
            }),
        };
        let cancelled = Override {
            original: StartKey::Instant(at("2026-03-04T09:00:00Z")),
            when: None,
        };

        let found = spans(Some(&series), &[moved, cancelled], None, &week());

        let starts: Vec<DateTime<Utc>> = found.iter().map(|s| s.when.sort_key()).collect();
        assert_eq!(
            starts,
            [
                at("2026-03-02T09:00:00Z"),
                at("2026-03-03T15:00:00Z"),
                at("2026-03-05T09:00:00Z"),
                at("2026-03-06T09:00:00Z"),
            ]
        );
        assert_eq!(found[1].exception, Some(0));
    }

    #[test]
    fn an_all_day_event_counts_by_its_dates() {
        let day = Shape {
            start: EventTime::parse_date("2026-03-08").unwrap(),
            end: EventTime::parse_date("2026-03-09").unwrap(),
            recurrence: vec![],
        };

        let found = spans(Some(&day), &[], None, &week());

        assert_eq!(found.len(), 1);
        assert!(matches!(found[0].when, When::AllDay { .. }));
    }
}
