//! Which source events are mirrored onto which target (docs/sync-rules.md, "Which events get a block" and "Same
//! meeting"). [`mirror_decision`] answers with the first rule that applies, so a skipped
//! event always names one reason (logged and counted by the caller).

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, TimeZone as _, Utc};

use super::marker::is_block;
use super::model::{
    EventStatus, EventTime, EventType, PlannerConfig, ResponseStatus, SourceAccount, SourceEvent,
    TargetAccount, TargetHoldings, Transparency,
};

/// Whether a source event gets a live block on a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Mirror,
    Skip(SkipReason),
}

/// Why a source event gets no live block on a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The target is the source's own account (or the very same calendar).
    OwnCalendar,
    /// The event carries a block marker (ours or another installation's) or our block id.
    IsBlock,
    /// Deleted, or a cancelled occurrence of a series.
    Cancelled,
    /// The calendar owner declined the invitation.
    Declined,
    /// A `workingLocation` event says where, not that the time is taken.
    WorkingLocation,
    Birthday,
    /// Skipped only when `skip_out_of_office` is set.
    OutOfOffice,
    /// Skipped only when `skip_focus_time` is set.
    FocusTime,
    /// Free time (`transparency: transparent`).
    Transparent,
    /// Skipped only when `skip_all_day` is set.
    AllDay,
    /// The title matches the exclusion regex.
    TitleExcluded,
    /// No usable start/end (mixed all-day and timed, or end before start).
    Malformed,
    /// Ended at or before `now - look_back` (a series: its last occurrence did).
    Ended,
    /// The target holds a live, accepted, opaque copy of the same meeting.
    SameMeetingOnTarget,
}

impl SkipReason {
    /// A stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OwnCalendar => "own_calendar",
            Self::IsBlock => "is_block",
            Self::Cancelled => "cancelled",
            Self::Declined => "declined",
            Self::WorkingLocation => "working_location",
            Self::Birthday => "birthday",
            Self::OutOfOffice => "out_of_office",
            Self::FocusTime => "focus_time",
            Self::Transparent => "transparent",
            Self::AllDay => "all_day",
            Self::TitleExcluded => "title_excluded",
            Self::Malformed => "malformed",
            Self::Ended => "ended",
            Self::SameMeetingOnTarget => "same_meeting_on_target",
        }
    }
}

/// Whether `event` of `source` gets a live block on `target` at `now`.
pub fn mirror_decision(
    cfg: &PlannerConfig,
    source: &SourceAccount,
    event: &SourceEvent,
    target: &TargetAccount,
    holdings: &TargetHoldings,
    now: DateTime<Utc>,
) -> Decision {
    if is_own_calendar(source, target) {
        return Decision::Skip(SkipReason::OwnCalendar);
    }
    match source_decision(cfg, source, event, now) {
        Decision::Mirror => {}
        skip => return skip,
    }
    if event.ical_uid.as_deref().is_some_and(|uid| {
        holdings.holds(uid, event.original_start.as_ref().map(EventTime::start_key))
    }) {
        return Decision::Skip(SkipReason::SameMeetingOnTarget);
    }
    Decision::Mirror
}

/// The target-independent part of [`mirror_decision`].
pub(crate) fn source_decision(
    cfg: &PlannerConfig,
    source: &SourceAccount,
    event: &SourceEvent,
    now: DateTime<Utc>,
) -> Decision {
    let skip = Decision::Skip;
    if is_block(event, &cfg.installation) {
        return skip(SkipReason::IsBlock);
    }
    if event.status == EventStatus::Cancelled {
        return skip(SkipReason::Cancelled);
    }
    if event.self_response == Some(ResponseStatus::Declined) {
        return skip(SkipReason::Declined);
    }
    match event.event_type {
        EventType::WorkingLocation => return skip(SkipReason::WorkingLocation),
        EventType::Birthday => return skip(SkipReason::Birthday),
        EventType::OutOfOffice if cfg.skip_out_of_office => return skip(SkipReason::OutOfOffice),
        EventType::FocusTime if cfg.skip_focus_time => return skip(SkipReason::FocusTime),
        _ => {}
    }
    if event.transparency == Transparency::Transparent {
        return skip(SkipReason::Transparent);
    }
    let (Some(start), Some(end)) = (&event.start, &event.end) else {
        return skip(SkipReason::Malformed);
    };
    if !well_formed(start, end) {
        return skip(SkipReason::Malformed);
    }
    if cfg.skip_all_day && start.is_all_day() {
        return skip(SkipReason::AllDay);
    }
    if let Some(regex) = &cfg.exclude_title {
        if regex.is_match(event.summary.as_deref().unwrap_or_default()) {
            return skip(SkipReason::TitleExcluded);
        }
    }
    let zone = start.time_zone().or(source.time_zone.as_deref());
    let cutoff = now
        .checked_sub_signed(cfg.look_back)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let last_end = if event.is_series() {
        series_last_end(&event.recurrence, start, end, zone)
    } else {
        Some(end.latest_instant(zone))
    };
    if last_end.is_some_and(|last| last <= cutoff) {
        return skip(SkipReason::Ended);
    }
    Decision::Mirror
}

/// Same account, or the same (resolved) calendar connected twice.
pub(crate) fn is_own_calendar(source: &SourceAccount, target: &TargetAccount) -> bool {
    source.id == target.id || source.calendar_id == target.calendar_id
}

fn well_formed(start: &EventTime, end: &EventTime) -> bool {
    match (start, end) {
        (EventTime::AllDay { date: s }, EventTime::AllDay { date: e }) => s < e,
        (EventTime::Timed { instant: s, .. }, EventTime::Timed { instant: e, .. }) => s <= e,
        _ => false,
    }
}

/// An upper bound on when the last occurrence of a series ends, or `None` when the series
/// may run forever (or its rules are beyond this simple reading). Only a bound that is
/// certain may skip a series: a wrong "ended" would silently drop a live meeting's blocks.
pub(crate) fn series_last_end(
    recurrence: &[String],
    start: &EventTime,
    end: &EventTime,
    zone: Option<&str>,
) -> Option<DateTime<Utc>> {
    let first_start = start.latest_instant(zone);
    let duration = end.latest_instant(zone) - first_start;
    let mut last: Option<DateTime<Utc>> = None;
    let mut rules = 0;
    for line in recurrence {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("RDATE") {
            return None;
        }
        let Some(rule) = upper.strip_prefix("RRULE:") else {
            continue;
        };
        rules += 1;
        // An extra day absorbs daylight-saving shifts of a series expanded in a local zone.
        let last_start = rule_last_start(rule, first_start, TimeDelta::days(1))?;
        let rule_end = last_start + duration;
        last = Some(last.map_or(rule_end, |l| l.max(rule_end)));
    }
    if rules == 0 {
        return None;
    }
    last
}

/// Whether an exception whose original start is `original` lies past the last occurrence
/// the rules of its series (starting `first_start`) still allow — a "this and following"
/// split ended the series before it, so Google shows it no more. Only a certain answer is
/// yes: rules beyond this simple reading (RDATE, BYMONTHDAY, …) keep it in its series.
pub(crate) fn beyond_series_end(
    recurrence: &[String],
    first_start: &EventTime,
    original: &EventTime,
    zone: Option<&str>,
) -> bool {
    // Dates of an all-day series are read alike, so their zone does not matter.
    let zone = match (first_start, original) {
        (EventTime::AllDay { .. }, EventTime::AllDay { .. }) => Some("UTC"),
        _ => zone,
    };
    let mut rules = 0;
    for line in recurrence {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("RDATE") {
            return false;
        }
        let Some(rule) = upper.strip_prefix("RRULE:") else {
            continue;
        };
        rules += 1;
        if !beyond_rule(rule, first_start, original, zone) {
            return false;
        }
    }
    rules > 0
}

fn beyond_rule(
    rule: &str,
    first_start: &EventTime,
    original: &EventTime,
    zone: Option<&str>,
) -> bool {
    let until = rule
        .split(';')
        .find_map(|p| p.strip_prefix("UNTIL="))
        .and_then(|raw| NaiveDate::parse_from_str(raw, "%Y%m%d").ok());
    if let (EventTime::AllDay { date }, Some(until)) = (original, until) {
        if *date > until {
            return true;
        }
    }
    if off_the_rule(rule, first_start, original, zone) {
        return true;
    }
    // Daylight saving moves a local occurrence by an hour at most (half an hour on Lord
    // Howe), so two hours past the last start is certainly past the series.
    let slack = TimeDelta::hours(2);
    rule_last_start(rule, first_start.latest_instant(zone), slack)
        .is_some_and(|last| earliest_instant(original, zone) > last)
}

/// Whether `original` is certainly no instance of a plain DAILY or WEEKLY rule (INTERVAL,
/// BYDAY on WEEKLY, COUNT and UNTIL allowed): a wall time of day, a day step or a weekday
/// the rule never produces — the series was moved after the exception was made. Any other
/// rule, or a zone that cannot be read, answers no.
fn off_the_rule(
    rule: &str,
    first_start: &EventTime,
    original: &EventTime,
    zone: Option<&str>,
) -> bool {
    let parts: Vec<(&str, &str)> = rule.split(';').filter_map(|p| p.split_once('=')).collect();
    let get = |name: &str| parts.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let plain = parts.iter().all(|(k, _)| {
        matches!(*k, "FREQ" | "INTERVAL" | "COUNT" | "UNTIL")
            || (*k == "BYDAY" && get("FREQ") == Some("WEEKLY"))
    });
    let interval: i64 = match get("INTERVAL").map_or(Some(1), |v| v.parse().ok()) {
        Some(n) if n >= 1 => n,
        _ => return false,
    };
    let (Some((first_day, first_time)), Some((day, time))) = (
        local_reading(first_start, zone),
        local_reading(original, zone),
    ) else {
        return false;
    };
    if !plain || in_a_gap(original, zone, day, first_time) {
        return false;
    }
    if time != first_time || day < first_day {
        return true; // every instance starts at the series' wall time, from its start on
    }
    let days = (day - first_day).num_days();
    match (get("FREQ"), get("BYDAY")) {
        (Some("DAILY"), _) => days % interval != 0,
        (Some("WEEKLY"), None) => days % (7 * interval) != 0,
        (Some("WEEKLY"), Some(by_day)) => {
            let weekday = day.format("%a").to_string()[..2].to_ascii_uppercase();
            let on_a_rule_day = by_day.split(',').any(|d| d == weekday);
            let weeks = (day.week(chrono::Weekday::Mon).first_day()
                - first_day.week(chrono::Weekday::Mon).first_day())
            .num_days()
                / 7;
            !on_a_rule_day || weeks % interval != 0
        }
        _ => false,
    }
}

/// Whether the series' wall time does not exist on `day` (a daylight-saving gap moves that
/// instance to another wall time).
fn in_a_gap(time: &EventTime, zone: Option<&str>, day: NaiveDate, wall: chrono::NaiveTime) -> bool {
    let EventTime::Timed { .. } = time else {
        return false;
    };
    zone.and_then(|z| z.parse::<chrono_tz::Tz>().ok())
        .is_some_and(|tz| {
            tz.from_local_datetime(&day.and_time(wall))
                .single()
                .is_none()
        })
}

/// A boundary as (local date, local wall time) in `zone`; an all-day date at midnight.
fn local_reading(time: &EventTime, zone: Option<&str>) -> Option<(NaiveDate, chrono::NaiveTime)> {
    match time {
        EventTime::AllDay { date } => Some((*date, chrono::NaiveTime::MIN)),
        EventTime::Timed { instant, .. } => {
            let tz: chrono_tz::Tz = zone?.parse().ok()?;
            let local = instant.with_timezone(&tz).naive_local();
            Some((local.date(), local.time()))
        }
    }
}

/// The earliest instant a boundary can denote (an all-day date: its first midnight anywhere
/// on Earth unless its zone is known).
fn earliest_instant(time: &EventTime, zone: Option<&str>) -> DateTime<Utc> {
    match time {
        EventTime::Timed { instant, .. } => *instant,
        EventTime::AllDay { date } => {
            let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
            zone.and_then(|z| z.parse::<chrono_tz::Tz>().ok())
                .and_then(|tz| tz.from_local_datetime(&midnight).earliest())
                .map(|local| local.with_timezone(&Utc))
                .unwrap_or_else(|| midnight.and_utc() - TimeDelta::hours(14))
        }
    }
}

/// An upper bound on the last start a rule allows, `slack` past the exact one for counted
/// rules.
fn rule_last_start(
    rule: &str,
    first_start: DateTime<Utc>,
    slack: TimeDelta,
) -> Option<DateTime<Utc>> {
    let parts: Vec<(&str, &str)> = rule.split(';').filter_map(|p| p.split_once('=')).collect();
    let get = |name: &str| parts.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    if let Some(until) = get("UNTIL") {
        // A floating or date UNTIL is local time: allow the widest offset on Earth.
        return parse_until(until).map(
            |(at, exact)| {
                if exact {
                    at
                } else {
                    at + TimeDelta::hours(14)
                }
            },
        );
    }
    let count: i64 = get("COUNT")?.parse().ok()?;
    let interval: i64 = get("INTERVAL").map_or(Some(1), |v| v.parse().ok())?;
    let freq = get("FREQ")?;
    let by_parts_ok = parts.iter().all(|(k, _)| match *k {
        "FREQ" | "COUNT" | "INTERVAL" | "WKST" => true,
        // Every week holds at least one BYDAY occurrence, so a week per occurrence bounds it.
        "BYDAY" => freq == "WEEKLY",
        _ => false,
    });
    if !by_parts_ok {
        return None;
    }
    let period = match freq {
        "SECONDLY" => TimeDelta::seconds(1),
        "MINUTELY" => TimeDelta::minutes(1),
        "HOURLY" => TimeDelta::hours(1),
        "DAILY" => TimeDelta::days(1),
        "WEEKLY" => TimeDelta::weeks(1),
        "MONTHLY" => TimeDelta::days(31),
        "YEARLY" => TimeDelta::days(366),
        _ => return None,
    };
    let steps = count.checked_sub(1)?.checked_mul(interval.max(1))?;
    first_start.checked_add_signed(period.checked_mul(i32::try_from(steps).ok()?)? + slack)
}

/// `(instant, exact)`: exact for a UTC `…Z` value, a local reading otherwise.
fn parse_until(raw: &str) -> Option<(DateTime<Utc>, bool)> {
    if let Some(utc) = raw.strip_suffix('Z') {
        let at = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").ok()?;
        return Some((at.and_utc(), true));
    }
    if let Ok(at) = NaiveDateTime::parse_from_str(raw, "%Y%m%dT%H%M%S") {
        return Some((at.and_utc(), false));
    }
    let date = NaiveDate::parse_from_str(raw, "%Y%m%d").ok()?;
    // The whole UNTIL day may still hold an occurrence.
    Some((
        date.and_hms_opt(0, 0, 0)?.and_utc() + TimeDelta::days(1),
        false,
    ))
}
