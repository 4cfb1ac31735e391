//! RFC 5545 recurrence for the emulator: parsing, expansion and instance ids.
//!
//! Role: Google stores a series' `recurrence` as RFC 5545 lines (`RRULE`, `EXRULE`, `RDATE`,
//! `EXDATE`) and expands them in the zone of the series' `start.timeZone`. This module turns
//! those lines plus the master's start/end into concrete occurrences, and names occurrences
//! the way Google does (`<seriesId>_<YYYYMMDDTHHMMSSZ>` / `<seriesId>_<YYYYMMDD>`).
//!
//! Collaborators: the event store and routes call [`validate`] on writes, [`expand`] for
//! `singleEvents=true` and `events.instances`, and [`instance_id`] / [`parse_instance_id`] to
//! address single occurrences. Lifecycle: pure functions, no state, no clock.
//!
//! Decisions (Google documents none of these precisely; each follows RFC 5545 unless noted):
//! - The master start (DTSTART) is always the first occurrence and counts towards `COUNT`,
//!   even when it does not match the rule (RFC 5545 §3.8.5.3). `UNTIL` and `EXDATE` can still
//!   remove it.
//! - Timed series expand in wall-clock time of the master start's zone, so 09:00 stays 09:00
//!   across DST changes. A nonexistent local time is read with the offset in force before the
//!   gap, which moves it forward by the gap (02:30 on a spring-forward day becomes 03:30); an
//!   ambiguous local time the rule generates takes its first (earlier) instant (RFC 5545
//!   §3.3.5). A value that carries its own instant keeps it: the master start (which has an
//!   offset), a UTC or `TZID` `RDATE`/`EXDATE` and a UTC `UNTIL` are never re-read through the
//!   wall clock, so the second 01:30 of a fall-back night stays the second one.
//! - Occurrences keep the master's duration: in wall-clock time when start and end share a zone,
//!   in elapsed time when they do not, in days for all-day series.
//! - Windows: an occurrence is kept when `end > window_start` and `start < window_end`.
//!   All-day occurrences are compared at midnight UTC of their start and end dates, because
//!   an all-day series carries no zone of its own.
//! - Termination: an open rule (no `COUNT`, no `UNTIL`) with no `window_end` is expanded up to
//!   [`OPEN_HORIZON_YEARS`] years after the later of the master start and `window_start`; no
//!   rule is ever expanded more than [`HARD_HORIZON_YEARS`] years after the master start.
//! - Value forms: `UNTIL` may be a DATE, a UTC DATE-TIME or a floating DATE-TIME (read in the
//!   series zone). A DATE-valued `RDATE` on a timed series takes the master's time of day; a
//!   DATE-valued `EXDATE` on a timed series removes every occurrence on that local date. A
//!   DATE-TIME `RDATE`/`EXDATE` on an all-day series is reduced to the date as written.
//! - Not supported, rejected as invalid: `FREQ=SECONDLY|MINUTELY|HOURLY`, `BYWEEKNO`,
//!   `VALUE=PERIOD`, `DTSTART`/`DTEND` lines (Google rejects those too), and `BYHOUR`,
//!   `BYMINUTE`, `BYSECOND` on all-day series.

use std::collections::{HashSet, VecDeque};
use std::iter::Peekable;

use chrono::{
    DateTime, Datelike, Days, MappedLocalTime, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeDelta, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;

/// Years an open rule is expanded past its start when the caller gives no `window_end`.
pub const OPEN_HORIZON_YEARS: u32 = 5;

/// Years past the master start after which no rule is expanded at all: it bounds the work done
/// for rules that can never match (e.g. `BYMONTH=2;BYMONTHDAY=30;COUNT=5`).
pub const HARD_HORIZON_YEARS: u32 = 1000;

/// The start (or end) of an event or occurrence, in the form Google's `EventDateTime` has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// All-day: `{"date": "2026-03-06"}`.
    Date(NaiveDate),
    /// Timed: an instant read in an IANA zone (`{"dateTime": .., "timeZone": ..}`). The offset
    /// is part of the value, so both readings of an ambiguous wall time can be held.
    DateTime(DateTime<Tz>),
}

/// One occurrence of a series, as the rule places it (before any exception overrides it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub start: Start,
    pub end: Start,
}

/// What identifies an occurrence inside its series: its original start, in UTC for timed
/// series and as a date for all-day ones (the same data the instance id suffix carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstanceKey {
    Date(NaiveDate),
    Utc(DateTime<Utc>),
}

/// Why a recurrence cannot be used; the message is fit for a 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    #[error("invalid recurrence: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> RecurrenceError {
    RecurrenceError::Invalid(message.into())
}

impl Start {
    /// A timed start from a wall-clock time, resolved the RFC 5545 way ([`resolve_local`]).
    pub fn local(local: NaiveDateTime, tz: Tz) -> Start {
        Start::DateTime(resolve_local(local, tz))
    }

    /// The instant this start denotes; all-day dates map to midnight UTC.
    pub fn to_utc(&self) -> DateTime<Utc> {
        match self {
            Start::Date(date) => midnight_utc(*date),
            Start::DateTime(at) => at.with_timezone(&Utc),
        }
    }

    /// The key that identifies an occurrence starting here.
    pub fn key(&self) -> InstanceKey {
        match self {
            Start::Date(date) => InstanceKey::Date(*date),
            Start::DateTime(_) => InstanceKey::Utc(self.to_utc()),
        }
    }

    /// Whether this is an all-day (`date`) value.
    pub fn is_all_day(&self) -> bool {
        matches!(self, Start::Date(_))
    }
}

fn midnight_utc(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

/// Maps a wall-clock time in `tz` to an instant, the RFC 5545 way: an ambiguous time takes
/// its earlier instant, a nonexistent one is read with the offset in force before the gap.
pub fn resolve_local(local: NaiveDateTime, tz: Tz) -> DateTime<Tz> {
    match tz.from_local_datetime(&local) {
        MappedLocalTime::Single(instant) => instant,
        MappedLocalTime::Ambiguous(first, second) => first.min(second),
        MappedLocalTime::None => {
            // Walk back to the last valid wall time before the gap and borrow its offset.
            // Real gaps are at most a day long (Samoa 2011), so 49 hours always suffices.
            let step = TimeDelta::minutes(15);
            let mut probe = local;
            for _ in 0..(49 * 4) {
                probe -= step;
                if let Some(before) = tz.from_local_datetime(&probe).latest() {
                    let offset =
                        TimeDelta::seconds(i64::from(before.offset().fix().local_minus_utc()));
                    return Utc.from_utc_datetime(&(local - offset)).with_timezone(&tz);
                }
            }
            // No tzdb zone has a gap this long; reading the time as UTC keeps us total.
            Utc.from_utc_datetime(&local).with_timezone(&tz)
        }
    }
}

/// The id Google gives an occurrence of `series_id` whose original start is `original_start`.
pub fn instance_id(series_id: &str, original_start: &Start) -> String {
    match original_start.key() {
        InstanceKey::Date(date) => format!("{series_id}_{}", date.format("%Y%m%d")),
        InstanceKey::Utc(instant) => format!("{series_id}_{}", instant.format("%Y%m%dT%H%M%SZ")),
    }
}

/// Splits an instance id into its series id and key; `None` when it is not an instance id.
///
/// The split is at the last `_` (Google ids are base32hex and contain none themselves).
pub fn parse_instance_id(id: &str) -> Option<(&str, InstanceKey)> {
    let (series, suffix) = id.rsplit_once('_')?;
    if series.is_empty() {
        return None;
    }
    if let Some(date) = parse_compact_date(suffix) {
        return Some((series, InstanceKey::Date(date)));
    }
    let utc = suffix.strip_suffix('Z')?;
    let local = parse_compact_datetime(utc)?;
    Some((series, InstanceKey::Utc(Utc.from_utc_datetime(&local))))
}

/// `YYYYMMDD`, digits only (chrono's `%Y` would also take signs and longer years).
fn parse_compact_date(text: &str) -> Option<NaiveDate> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = text[0..4].parse().ok()?;
    let month = text[4..6].parse().ok()?;
    let day = text[6..8].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// `YYYYMMDDTHHMMSS`, digits only.
fn parse_compact_datetime(text: &str) -> Option<NaiveDateTime> {
    if text.len() != 15 || text.as_bytes()[8] != b'T' {
        return None;
    }
    let date = parse_compact_date(&text[0..8])?;
    let time = &text[9..15];
    if !time.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hour = time[0..2].parse().ok()?;
    let minute = time[2..4].parse().ok()?;
    let second = time[4..6].parse().ok()?;
    Some(date.and_time(NaiveTime::from_hms_opt(hour, minute, second)?))
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freq {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// The `UNTIL` bound in the form written; it is inclusive.
#[derive(Debug, Clone, Copy)]
enum Until {
    Date(NaiveDate),
    Utc(DateTime<Utc>),
    Floating(NaiveDateTime),
}

#[derive(Debug, Clone)]
struct Rule {
    freq: Freq,
    interval: u32,
    count: Option<u32>,
    until: Option<Until>,
    by_month: Vec<u32>,
    by_monthday: Vec<i32>,
    by_yearday: Vec<i32>,
    /// `(ordinal, weekday)`: `1MO` is `(Some(1), Mon)`, `FR` is `(None, Fri)`.
    by_day: Vec<(Option<i32>, Weekday)>,
    by_setpos: Vec<i32>,
    by_hour: Vec<u32>,
    by_minute: Vec<u32>,
    by_second: Vec<u32>,
    wkst: Weekday,
}

impl Rule {
    fn has_time_parts(&self) -> bool {
        !(self.by_hour.is_empty() && self.by_minute.is_empty() && self.by_second.is_empty())
    }
}

/// An `RDATE`/`EXDATE` value in the form written.
#[derive(Debug, Clone, Copy)]
enum Moment {
    Date(NaiveDate),
    Utc(DateTime<Utc>),
    Zoned(NaiveDateTime, Tz),
    Floating(NaiveDateTime),
}

#[derive(Debug, Default)]
struct Recurrence {
    rrules: Vec<Rule>,
    exrules: Vec<Rule>,
    rdates: Vec<Moment>,
    exdates: Vec<Moment>,
}

/// Checks that every line is a well-formed `RRULE`, `EXRULE`, `RDATE` or `EXDATE` this module
/// can expand. [`expand`] additionally rejects time parts (`BYHOUR`...) on all-day series.
pub fn validate(recurrence: &[String]) -> Result<(), RecurrenceError> {
    parse(recurrence).map(|_| ())
}

/// True when some `RRULE` has neither `COUNT` nor `UNTIL` (the series never ends); false for
/// bounded rules, RDATE-only sets and lines that do not parse.
pub fn is_open_ended(recurrence: &[String]) -> bool {
    parse(recurrence).is_ok_and(|parsed| {
        parsed
            .rrules
            .iter()
            .any(|rule| rule.count.is_none() && rule.until.is_none())
    })
}

fn parse(recurrence: &[String]) -> Result<Recurrence, RecurrenceError> {
    let mut parsed = Recurrence::default();
    for line in recurrence {
        parse_line(line, &mut parsed)?;
    }
    Ok(parsed)
}

fn parse_line(line: &str, out: &mut Recurrence) -> Result<(), RecurrenceError> {
    let (head, value) = line
        .split_once(':')
        .ok_or_else(|| invalid(format!("line {line:?} has no ':'")))?;
    let mut head_parts = head.split(';');
    let name = head_parts.next().unwrap_or_default().to_ascii_uppercase();
    let params = head_parts
        .map(|param| {
            param
                .split_once('=')
                .map(|(key, val)| (key.to_ascii_uppercase(), val))
                .ok_or_else(|| invalid(format!("parameter {param:?} in {line:?} has no '='")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match name.as_str() {
        "RRULE" | "EXRULE" => {
            if !params.is_empty() {
                return Err(invalid(format!("{name} takes no parameters: {line:?}")));
            }
            let rule = parse_rule(value).map_err(|e| invalid(format!("{e} in {line:?}")))?;
            if name == "RRULE" {
                out.rrules.push(rule);
            } else {
                out.exrules.push(rule);
            }
        }
        "RDATE" | "EXDATE" => {
            let moments =
                parse_moments(&params, value).map_err(|e| invalid(format!("{e} in {line:?}")))?;
            if name == "RDATE" {
                out.rdates.extend(moments);
            } else {
                out.exdates.extend(moments);
            }
        }
        "DTSTART" | "DTEND" => {
            return Err(invalid(format!(
                "{name} lines are not allowed in recurrence; use start and end"
            )))
        }
        _ => return Err(invalid(format!("unsupported recurrence line {line:?}"))),
    }
    Ok(())
}

fn parse_rule(value: &str) -> Result<Rule, String> {
    let mut seen = HashSet::new();
    let mut freq = None;
    let mut rule = Rule {
        freq: Freq::Daily,
        interval: 1,
        count: None,
        until: None,
        by_month: Vec::new(),
        by_monthday: Vec::new(),
        by_yearday: Vec::new(),
        by_day: Vec::new(),
        by_setpos: Vec::new(),
        by_hour: Vec::new(),
        by_minute: Vec::new(),
        by_second: Vec::new(),
        wkst: Weekday::Mon,
    };
    if value.is_empty() {
        return Err("empty rule".into());
    }
    for part in value.split(';') {
        let (key, val) = part
            .split_once('=')
            .ok_or_else(|| format!("rule part {part:?} has no '='"))?;
        let key = key.to_ascii_uppercase();
        if !seen.insert(key.clone()) {
            return Err(format!("{key} given twice"));
        }
        match key.as_str() {
            "FREQ" => {
                freq = Some(match val.to_ascii_uppercase().as_str() {
                    "DAILY" => Freq::Daily,
                    "WEEKLY" => Freq::Weekly,
                    "MONTHLY" => Freq::Monthly,
                    "YEARLY" => Freq::Yearly,
                    "SECONDLY" | "MINUTELY" | "HOURLY" => {
                        return Err(format!("FREQ={val} is not supported"))
                    }
                    _ => return Err(format!("unknown FREQ {val:?}")),
                })
            }
            "INTERVAL" => rule.interval = parse_positive(&key, val)?,
            "COUNT" => rule.count = Some(parse_positive(&key, val)?),
            "UNTIL" => {
                rule.until = Some(if let Some(date) = parse_compact_date(val) {
                    Until::Date(date)
                } else if let Some(utc) = val.strip_suffix('Z') {
                    let local =
                        parse_compact_datetime(utc).ok_or_else(|| format!("bad UNTIL {val:?}"))?;
                    Until::Utc(Utc.from_utc_datetime(&local))
                } else {
                    Until::Floating(
                        parse_compact_datetime(val).ok_or_else(|| format!("bad UNTIL {val:?}"))?,
                    )
                })
            }
            "BYDAY" => rule.by_day = parse_list(&key, val, parse_weekday_num)?,
            "BYMONTHDAY" => rule.by_monthday = parse_list(&key, val, |s| parse_signed(s, 31))?,
            "BYYEARDAY" => rule.by_yearday = parse_list(&key, val, |s| parse_signed(s, 366))?,
            "BYSETPOS" => rule.by_setpos = parse_list(&key, val, |s| parse_signed(s, 366))?,
            "BYMONTH" => rule.by_month = parse_list(&key, val, |s| parse_unsigned(s, 1, 12))?,
            "BYHOUR" => rule.by_hour = parse_list(&key, val, |s| parse_unsigned(s, 0, 23))?,
            "BYMINUTE" => rule.by_minute = parse_list(&key, val, |s| parse_unsigned(s, 0, 59))?,
            "BYSECOND" => rule.by_second = parse_list(&key, val, |s| parse_unsigned(s, 0, 59))?,
            "WKST" => rule.wkst = parse_weekday(val).ok_or_else(|| format!("bad WKST {val:?}"))?,
            "BYWEEKNO" => return Err("BYWEEKNO is not supported".into()),
            _ => return Err(format!("unknown rule part {key:?}")),
        }
    }
    rule.freq = freq.ok_or("FREQ is required")?;
    if rule.count.is_some() && rule.until.is_some() {
        return Err("COUNT and UNTIL cannot both be given".into());
    }
    let ordinals = rule.by_day.iter().any(|(n, _)| n.is_some());
    if ordinals && !matches!(rule.freq, Freq::Monthly | Freq::Yearly) {
        return Err("BYDAY ordinals need FREQ=MONTHLY or FREQ=YEARLY".into());
    }
    if !rule.by_monthday.is_empty() && rule.freq == Freq::Weekly {
        return Err("BYMONTHDAY cannot be used with FREQ=WEEKLY".into());
    }
    if !rule.by_yearday.is_empty() && rule.freq != Freq::Yearly {
        return Err("BYYEARDAY needs FREQ=YEARLY".into());
    }
    let other_by_parts = !(rule.by_month.is_empty()
        && rule.by_monthday.is_empty()
        && rule.by_yearday.is_empty()
        && rule.by_day.is_empty()
        && !rule.has_time_parts());
    if !rule.by_setpos.is_empty() && !other_by_parts {
        return Err("BYSETPOS needs another BYxxx part".into());
    }
    Ok(rule)
}

fn parse_list<T>(
    key: &str,
    value: &str,
    item: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, String> {
    value
        .split(',')
        .map(|s| item(s).ok_or_else(|| format!("bad {key} value {s:?}")))
        .collect()
}

fn parse_positive(key: &str, value: &str) -> Result<u32, String> {
    match parse_unsigned(value, 1, u32::MAX) {
        Some(n) => Ok(n),
        None => Err(format!("{key} must be a positive integer, not {value:?}")),
    }
}

fn parse_unsigned(text: &str, min: u32, max: u32) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| (min..=max).contains(n))
}

/// `[+|-]n` with `1 <= n <= max`.
fn parse_signed(text: &str, max: u32) -> Option<i32> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let n = i32::try_from(parse_unsigned(digits, 1, max)?).ok()?;
    Some(if negative { -n } else { n })
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    Some(match text.to_ascii_uppercase().as_str() {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    })
}

/// `MO`, `1MO`, `+2TU`, `-1FR`.
fn parse_weekday_num(text: &str) -> Option<(Option<i32>, Weekday)> {
    if !text.is_ascii() || text.len() < 2 {
        return None;
    }
    let (ordinal, day) = text.split_at(text.len() - 2);
    let weekday = parse_weekday(day)?;
    if ordinal.is_empty() {
        Some((None, weekday))
    } else {
        Some((Some(parse_signed(ordinal, 53)?), weekday))
    }
}

fn parse_moments(params: &[(String, &str)], value: &str) -> Result<Vec<Moment>, String> {
    let mut value_type: Option<bool> = None; // Some(true) = DATE, Some(false) = DATE-TIME
    let mut tzid: Option<Tz> = None;
    let mut seen = HashSet::new();
    for (key, val) in params {
        if !seen.insert(key.as_str()) {
            return Err(format!("parameter {key} given twice"));
        }
        match key.as_str() {
            "VALUE" => {
                value_type = Some(match val.to_ascii_uppercase().as_str() {
                    "DATE" => true,
                    "DATE-TIME" => false,
                    "PERIOD" => return Err("VALUE=PERIOD is not supported".into()),
                    _ => return Err(format!("unknown VALUE {val:?}")),
                })
            }
            "TZID" => {
                let name = val.trim_matches('"');
                tzid = Some(
                    name.parse::<Tz>()
                        .map_err(|_| format!("unknown time zone {name:?}"))?,
                );
            }
            _ => return Err(format!("unknown parameter {key:?}")),
        }
    }
    if value_type == Some(true) && tzid.is_some() {
        return Err("TZID cannot be used with VALUE=DATE".into());
    }
    value
        .split(',')
        .map(|item| {
            let bad = || format!("bad date value {item:?}");
            if value_type == Some(true) {
                return parse_compact_date(item).map(Moment::Date).ok_or_else(bad);
            }
            if value_type.is_none() && tzid.is_none() {
                // Lenient: a bare YYYYMMDD without VALUE=DATE is still read as a date.
                if let Some(date) = parse_compact_date(item) {
                    return Ok(Moment::Date(date));
                }
            }
            if let Some(utc) = item.strip_suffix('Z') {
                if tzid.is_some() {
                    return Err(format!("{item:?} is UTC but a TZID is given"));
                }
                let local = parse_compact_datetime(utc).ok_or_else(bad)?;
                return Ok(Moment::Utc(Utc.from_utc_datetime(&local)));
            }
            let local = parse_compact_datetime(item).ok_or_else(bad)?;
            Ok(match tzid {
                Some(tz) => Moment::Zoned(local, tz),
                None => Moment::Floating(local),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Expansion

/// How occurrences are placed in time and how long they last.
#[derive(Debug, Clone, Copy)]
enum Kind {
    AllDay {
        days: i64,
    },
    Timed {
        tz: Tz,
        end_tz: Tz,
        /// End minus start in wall-clock time (used when both share a zone).
        wall: TimeDelta,
        /// End minus start in elapsed time (used when the zones differ).
        elapsed: TimeDelta,
    },
}

/// A candidate start on the series' local timeline. `pinned` holds the instant when the value
/// came with one that differs from what the wall time resolves to (the second reading of an
/// ambiguous time); it is `None` otherwise, so equal candidates compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    local: NaiveDateTime,
    pinned: Option<DateTime<Utc>>,
}

impl Slot {
    fn floating(local: NaiveDateTime) -> Slot {
        Slot {
            local,
            pinned: None,
        }
    }
}

/// The series as the expander sees it: its first start on the local timeline, and its kind.
/// All-day series use local midnight on the same timeline, so one rule engine serves both.
#[derive(Debug, Clone, Copy)]
struct Series {
    dtstart: NaiveDateTime,
    /// The master start as a slot (pinned when it was given in the repeated hour).
    first: Slot,
    kind: Kind,
}

impl Series {
    fn new(start: &Start, end: &Start) -> Result<Self, RecurrenceError> {
        match (start, end) {
            (Start::Date(start), Start::Date(end)) => {
                let dtstart = start.and_time(NaiveTime::MIN);
                Ok(Series {
                    dtstart,
                    first: Slot::floating(dtstart),
                    kind: Kind::AllDay {
                        days: (*end - *start).num_days(),
                    },
                })
            }
            (Start::DateTime(start), Start::DateTime(end)) => {
                let start = start.with_nanosecond(0).unwrap_or(*start);
                let (tz, end_tz) = (start.timezone(), end.timezone());
                let local = start.naive_local();
                let kind = Kind::Timed {
                    tz,
                    end_tz,
                    wall: end.naive_local() - local,
                    elapsed: end.with_timezone(&Utc) - start.with_timezone(&Utc),
                };
                let mut series = Series {
                    dtstart: local,
                    first: Slot::floating(local),
                    kind,
                };
                series.first = series.slot_at(start.with_timezone(&Utc));
                Ok(series)
            }
            _ => Err(invalid(
                "start and end must both be dates or both be date-times",
            )),
        }
    }

    fn tz(&self) -> Option<Tz> {
        match self.kind {
            Kind::AllDay { .. } => None,
            Kind::Timed { tz, .. } => Some(tz),
        }
    }

    fn utc_of(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.tz() {
            None => midnight_utc(local.date()),
            Some(tz) => resolve_local(local, tz).with_timezone(&Utc),
        }
    }

    /// The instant a slot denotes.
    fn instant_of(&self, slot: Slot) -> DateTime<Utc> {
        slot.pinned.unwrap_or_else(|| self.utc_of(slot.local))
    }

    /// The slot of an exact instant of a timed series: its wall time, pinned when the wall
    /// time alone would resolve to another instant.
    fn slot_at(&self, instant: DateTime<Utc>) -> Slot {
        let Some(tz) = self.tz() else {
            return Slot::floating(instant.date_naive().and_time(NaiveTime::MIN));
        };
        let local = instant.with_timezone(&tz).naive_local();
        let pinned = (self.utc_of(local) != instant).then_some(instant);
        Slot { local, pinned }
    }

    /// Places an RDATE/EXDATE value on the series' local timeline.
    fn slot_of(&self, moment: Moment) -> Slot {
        let midnight = |date: NaiveDate| Slot::floating(date.and_time(NaiveTime::MIN));
        match (self.tz(), moment) {
            (None, Moment::Date(date)) => midnight(date),
            (None, Moment::Utc(instant)) => midnight(instant.date_naive()),
            (None, Moment::Zoned(local, _) | Moment::Floating(local)) => midnight(local.date()),
            (Some(_), Moment::Date(date)) => Slot::floating(date.and_time(self.dtstart.time())),
            (Some(_), Moment::Utc(instant)) => self.slot_at(instant),
            (Some(_), Moment::Zoned(local, zone)) => {
                self.slot_at(resolve_local(local, zone).with_timezone(&Utc))
            }
            (Some(_), Moment::Floating(local)) => Slot::floating(local),
        }
    }

    fn occurrence(&self, slot: Slot) -> Occurrence {
        match self.kind {
            Kind::AllDay { days } => {
                let start = slot.local.date();
                let end = start
                    .checked_add_signed(TimeDelta::days(days))
                    .unwrap_or(start);
                Occurrence {
                    start: Start::Date(start),
                    end: Start::Date(end),
                }
            }
            Kind::Timed {
                tz,
                end_tz,
                wall,
                elapsed,
            } => {
                let start = self.instant_of(slot).with_timezone(&tz);
                let by_elapsed = || (start.with_timezone(&Utc) + elapsed).with_timezone(&end_tz);
                let end = if end_tz == tz {
                    end_after(start.naive_local() + wall, start).unwrap_or_else(by_elapsed)
                } else {
                    by_elapsed()
                };
                Occurrence {
                    start: Start::DateTime(start),
                    end: Start::DateTime(end),
                }
            }
        }
    }

    fn past_until(&self, until: Until, slot: Slot) -> bool {
        match until {
            Until::Date(date) => slot.local.date() > date,
            Until::Floating(bound) => slot.local > bound,
            Until::Utc(bound) => self.instant_of(slot) > bound,
        }
    }
}

/// The end of an occurrence from its nominal wall time: the earliest reading not before
/// `start` (an end in the repeated hour follows a start in it), `None` when there is none.
fn end_after(nominal: NaiveDateTime, start: DateTime<Tz>) -> Option<DateTime<Tz>> {
    let tz = start.timezone();
    let candidates = match tz.from_local_datetime(&nominal) {
        MappedLocalTime::Single(one) => vec![one],
        MappedLocalTime::Ambiguous(a, b) => vec![a.min(b), a.max(b)],
        MappedLocalTime::None => vec![resolve_local(nominal, tz)],
    };
    candidates.into_iter().find(|end| *end >= start)
}

/// The per-day filters of a rule, with RFC 5545's defaults taken from DTSTART filled in.
#[derive(Debug)]
struct DayFilter {
    months: Vec<u32>,
    monthdays: Vec<i32>,
    yeardays: Vec<i32>,
    weekdays: Vec<(Option<i32>, Weekday)>,
    /// Whether `BYDAY` ordinals count within the month (else within the year).
    ordinal_in_month: bool,
}

impl DayFilter {
    fn new(rule: &Rule, dtstart: NaiveDate) -> Self {
        let mut filter = DayFilter {
            months: rule.by_month.clone(),
            monthdays: rule.by_monthday.clone(),
            yeardays: rule.by_yearday.clone(),
            weekdays: rule.by_day.clone(),
            ordinal_in_month: rule.freq == Freq::Monthly || !rule.by_month.is_empty(),
        };
        let no_day_parts =
            rule.by_monthday.is_empty() && rule.by_yearday.is_empty() && rule.by_day.is_empty();
        if no_day_parts {
            match rule.freq {
                Freq::Daily => {}
                Freq::Weekly => filter.weekdays = vec![(None, dtstart.weekday())],
                Freq::Monthly => filter.monthdays = vec![day_i32(dtstart.day())],
                Freq::Yearly => {
                    if filter.months.is_empty() {
                        filter.months = vec![dtstart.month()];
                    }
                    filter.monthdays = vec![day_i32(dtstart.day())];
                }
            }
        }
        filter
    }

    fn matches(&self, date: NaiveDate) -> bool {
        let day = day_i32(date.day());
        let month_len = days_in_month(date);
        let yearday = day_i32(date.ordinal());
        let year_len = if date.leap_year() { 366 } else { 365 };
        (self.months.is_empty() || self.months.contains(&date.month()))
            && (self.monthdays.is_empty()
                || self
                    .monthdays
                    .iter()
                    .any(|&md| md == day || md == day - month_len - 1))
            && (self.yeardays.is_empty()
                || self
                    .yeardays
                    .iter()
                    .any(|&yd| yd == yearday || yd == yearday - year_len - 1))
            && (self.weekdays.is_empty()
                || self.weekdays.iter().any(|&(ordinal, weekday)| {
                    weekday == date.weekday()
                        && ordinal.is_none_or(|n| {
                            let (index, len) = if self.ordinal_in_month {
                                (day, month_len)
                            } else {
                                (yearday, year_len)
                            };
                            if n > 0 {
                                (index - 1) / 7 + 1 == n
                            } else {
                                (len - index) / 7 + 1 == -n
                            }
                        })
                }))
    }
}

fn day_i32(n: u32) -> i32 {
    // Day and ordinal numbers are at most 366.
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn days_in_month(date: NaiveDate) -> i32 {
    let first = date.with_day(1).unwrap_or(date);
    first
        .checked_add_months(Months::new(1))
        .map(|next| day_i32(u32::try_from((next - first).num_days()).unwrap_or(31)))
        .unwrap_or(31)
}

/// Yields the local start times one rule generates, in order, already bounded by `COUNT`,
/// `UNTIL` and the expansion horizon.
struct RuleIter<'a> {
    rule: &'a Rule,
    series: Series,
    filter: DayFilter,
    times: Vec<NaiveTime>,
    /// RRULEs always yield DTSTART first; EXRULEs only yield what they match.
    include_dtstart: bool,
    started: bool,
    period: u64,
    pending: VecDeque<Slot>,
    emitted: u32,
    /// No period starting after this date is generated.
    stop_after: NaiveDate,
    done: bool,
}

impl<'a> RuleIter<'a> {
    fn new(rule: &'a Rule, series: Series, include_dtstart: bool, stop_after: NaiveDate) -> Self {
        let start = series.dtstart;
        let pick = |parts: &[u32], default: u32| {
            if parts.is_empty() {
                vec![default]
            } else {
                parts.to_vec()
            }
        };
        let mut times = Vec::new();
        for hour in pick(&rule.by_hour, start.hour()) {
            for minute in pick(&rule.by_minute, start.minute()) {
                for second in pick(&rule.by_second, start.second()) {
                    times.extend(NaiveTime::from_hms_opt(hour, minute, second));
                }
            }
        }
        times.sort();
        times.dedup();
        let stop_after = match rule.until {
            // A local date can be a day ahead of its UTC date; two days is a safe margin.
            Some(Until::Date(date)) => date.checked_add_days(Days::new(2)),
            Some(Until::Floating(local)) => local.date().checked_add_days(Days::new(2)),
            Some(Until::Utc(instant)) => instant.date_naive().checked_add_days(Days::new(2)),
            None => None,
        }
        .map_or(stop_after, |until| until.min(stop_after));
        RuleIter {
            rule,
            series,
            filter: DayFilter::new(rule, start.date()),
            times,
            include_dtstart,
            started: false,
            period: 0,
            pending: VecDeque::new(),
            emitted: 0,
            stop_after,
            done: false,
        }
    }

    /// First and last day of period number `k` (counted in INTERVAL steps from DTSTART's).
    fn period_days(&self, k: u64) -> Option<(NaiveDate, NaiveDate)> {
        let first_day = self.series.dtstart.date();
        let step = k.checked_mul(u64::from(self.rule.interval))?;
        match self.rule.freq {
            Freq::Daily => {
                let day = first_day.checked_add_days(Days::new(step))?;
                Some((day, day))
            }
            Freq::Weekly => {
                let back = (first_day.weekday().num_days_from_monday() + 7
                    - self.rule.wkst.num_days_from_monday())
                    % 7;
                let week_start = first_day
                    .checked_sub_days(Days::new(u64::from(back)))?
                    .checked_add_days(Days::new(step.checked_mul(7)?))?;
                Some((week_start, week_start.checked_add_days(Days::new(6))?))
            }
            Freq::Monthly => {
                let month_start = first_day
                    .with_day(1)?
                    .checked_add_months(Months::new(u32::try_from(step).ok()?))?;
                let month_end = month_start.checked_add_months(Months::new(1))?.pred_opt()?;
                Some((month_start, month_end))
            }
            Freq::Yearly => {
                let year = first_day.year().checked_add(i32::try_from(step).ok()?)?;
                Some((
                    NaiveDate::from_ymd_opt(year, 1, 1)?,
                    NaiveDate::from_ymd_opt(year, 12, 31)?,
                ))
            }
        }
    }

    /// Generates the next period's candidates into `pending`; false when the horizon is hit.
    fn fill(&mut self) -> bool {
        let Some((first, last)) = self.period_days(self.period) else {
            return false;
        };
        if first > self.stop_after {
            return false;
        }
        self.period += 1;
        let mut candidates = Vec::new();
        let mut day = first;
        while day <= last {
            if self.filter.matches(day) {
                candidates.extend(self.times.iter().map(|time| day.and_time(*time)));
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        if !self.rule.by_setpos.is_empty() {
            let len = candidates.len();
            let mut chosen: Vec<NaiveDateTime> = self
                .rule
                .by_setpos
                .iter()
                .filter_map(|&pos| {
                    let index = if pos > 0 {
                        usize::try_from(pos - 1).ok()?
                    } else {
                        len.checked_sub(usize::try_from(-pos).ok()?)?
                    };
                    candidates.get(index).copied()
                })
                .collect();
            chosen.sort();
            chosen.dedup();
            candidates = chosen;
        }
        let dtstart = self.series.dtstart;
        let include_dtstart = self.include_dtstart;
        self.pending.extend(
            candidates
                .into_iter()
                .filter(|c| {
                    if include_dtstart {
                        *c > dtstart
                    } else {
                        *c >= dtstart
                    }
                })
                .map(Slot::floating),
        );
        true
    }

    fn accept(&mut self, candidate: Slot) -> Option<Slot> {
        let counted_out = self.rule.count.is_some_and(|count| self.emitted >= count);
        let past_until = self
            .rule
            .until
            .is_some_and(|until| self.series.past_until(until, candidate));
        if counted_out || past_until || candidate.local.date() > self.stop_after {
            self.done = true;
            return None;
        }
        self.emitted += 1;
        Some(candidate)
    }
}

impl Iterator for RuleIter<'_> {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            if self.include_dtstart {
                return self.accept(self.series.first);
            }
        }
        loop {
            if let Some(candidate) = self.pending.pop_front() {
                return self.accept(candidate);
            }
            if !self.fill() {
                self.done = true;
                return None;
            }
        }
    }
}

type Source<'a> = Peekable<Box<dyn Iterator<Item = Slot> + 'a>>;

/// Expands a series into its occurrences, ordered by start; see the module docs for the rules.
///
/// `window_start`/`window_end` keep occurrences with `end > window_start` and
/// `start < window_end`; at most `max` occurrences are returned (the earliest ones).
pub fn expand(
    recurrence: &[String],
    master_start: &Start,
    master_end: &Start,
    window_start: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    max: usize,
) -> Result<Vec<Occurrence>, RecurrenceError> {
    let parsed = parse(recurrence)?;
    let series = Series::new(master_start, master_end)?;
    let all_rules = || parsed.rrules.iter().chain(&parsed.exrules);
    if series.tz().is_none() && all_rules().any(Rule::has_time_parts) {
        return Err(invalid(
            "BYHOUR, BYMINUTE and BYSECOND cannot be used in an all-day series",
        ));
    }
    if max == 0 {
        return Ok(Vec::new());
    }

    let first_day = series.dtstart.date();
    let years_after = |date: NaiveDate, years: u32| {
        date.checked_add_months(Months::new(years * 12))
            .unwrap_or(NaiveDate::MAX)
    };
    let hard_stop = years_after(first_day, HARD_HORIZON_YEARS);
    let stop_for = |rule: &Rule| {
        let stop = match window_end {
            Some(end) => end
                .date_naive()
                .checked_add_days(Days::new(2))
                .unwrap_or(NaiveDate::MAX),
            None if rule.count.is_none() && rule.until.is_none() => {
                let from = window_start.map_or(first_day, |ws| ws.date_naive().max(first_day));
                years_after(from, OPEN_HORIZON_YEARS)
            }
            None => NaiveDate::MAX,
        };
        stop.min(hard_stop)
    };

    let mut sources: Vec<Source<'_>> = Vec::new();
    if parsed.rrules.is_empty() {
        let only_start: Box<dyn Iterator<Item = Slot>> = Box::new(std::iter::once(series.first));
        sources.push(only_start.peekable());
    }
    for rule in &parsed.rrules {
        let iter: Box<dyn Iterator<Item = Slot>> =
            Box::new(RuleIter::new(rule, series, true, stop_for(rule)));
        sources.push(iter.peekable());
    }
    let mut rdates: Vec<Slot> = parsed.rdates.iter().map(|m| series.slot_of(*m)).collect();
    rdates.sort();
    let rdates: Box<dyn Iterator<Item = Slot>> = Box::new(rdates.into_iter());
    sources.push(rdates.peekable());

    let mut exrules: Vec<Peekable<RuleIter<'_>>> = parsed
        .exrules
        .iter()
        .map(|rule| RuleIter::new(rule, series, false, stop_for(rule)).peekable())
        .collect();
    let mut excluded_keys = HashSet::new();
    let mut excluded_days = HashSet::new();
    for moment in &parsed.exdates {
        match (series.tz(), moment) {
            (Some(_), Moment::Date(date)) => {
                excluded_days.insert(*date);
            }
            (Some(_), Moment::Utc(instant)) => {
                excluded_keys.insert(InstanceKey::Utc(*instant));
            }
            (Some(_), Moment::Zoned(local, zone)) => {
                let instant = resolve_local(*local, *zone).with_timezone(&Utc);
                excluded_keys.insert(InstanceKey::Utc(instant));
            }
            (Some(_), Moment::Floating(local)) => {
                excluded_keys.insert(InstanceKey::Utc(series.utc_of(*local)));
            }
            (None, _) => {
                excluded_keys.insert(InstanceKey::Date(series.slot_of(*moment).local.date()));
            }
        }
    }

    let mut out = Vec::new();
    let mut last = None;
    loop {
        let mut best: Option<(usize, Slot)> = None;
        for (index, source) in sources.iter_mut().enumerate() {
            if let Some(&candidate) = source.peek() {
                if best.is_none_or(|(_, current)| candidate < current) {
                    best = Some((index, candidate));
                }
            }
        }
        let Some((index, candidate)) = best else {
            break;
        };
        sources[index].next();
        if last == Some(candidate) {
            continue;
        }
        last = Some(candidate);

        // EXRULEs match wall times: an EXRULE that generates 01:30 removes both 01:30s.
        let by_exrule = exrules.iter_mut().any(|exrule| {
            while exrule.next_if(|c| c.local < candidate.local).is_some() {}
            exrule.peek().map(|c| c.local) == Some(candidate.local)
        });
        if by_exrule || excluded_days.contains(&candidate.local.date()) {
            continue;
        }
        let occurrence = series.occurrence(candidate);
        if excluded_keys.contains(&occurrence.start.key()) {
            continue;
        }
        if window_start.is_some_and(|ws| occurrence.end.to_utc() <= ws)
            || window_end.is_some_and(|we| occurrence.start.to_utc() >= we)
        {
            continue;
        }
        out.push(occurrence);
        if out.len() >= max {
            break;
        }
    }
    // Local order equals UTC order except around a DST gap with sub-hourly rules; make sure.
    out.sort_by_key(|occurrence| occurrence.start.key());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::Berlin};
    use proptest::prelude::*;

    fn lines(rules: &[&str]) -> Vec<String> {
        rules.iter().map(|line| (*line).to_owned()).collect()
    }

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("test local time")
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
    }

    fn timed(text: &str, tz: Tz) -> Start {
        Start::local(local(text), tz)
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    /// Expands a timed series that lasts an hour, with no window.
    fn expand_hour(rules: &[&str], start: &str, tz: Tz) -> Vec<Occurrence> {
        let begin = local(start);
        let end = Start::local(begin + TimeDelta::hours(1), tz);
        expand(&lines(rules), &timed(start, tz), &end, None, None, 1000).expect("valid rule")
    }

    /// Expands a one-day all-day series, with no window.
    fn expand_days(rules: &[&str], start: &str) -> Vec<Occurrence> {
        let first = day(start);
        let end = Start::Date(first + TimeDelta::days(1));
        expand(&lines(rules), &Start::Date(first), &end, None, None, 1000).expect("valid rule")
    }

    fn local_starts(occurrences: &[Occurrence]) -> Vec<String> {
        occurrences
            .iter()
            .map(|o| match &o.start {
                Start::DateTime(at) => at.naive_local().format("%Y-%m-%d %H:%M").to_string(),
                Start::Date(date) => date.format("%Y-%m-%d").to_string(),
            })
            .collect()
    }

    fn utc_starts(occurrences: &[Occurrence]) -> Vec<String> {
        occurrences
            .iter()
            .map(|o| o.start.to_utc().format("%Y-%m-%dT%H:%MZ").to_string())
            .collect()
    }

    fn rejects(rule: &str) -> bool {
        matches!(validate(&lines(&[rule])), Err(RecurrenceError::Invalid(_)))
    }

    // ---- frequencies, COUNT, UNTIL ----------------------------------------------------------

    #[test]
    fn a_daily_rule_with_count_yields_that_many_consecutive_days() {
        let got = expand_hour(&["RRULE:FREQ=DAILY;COUNT=3"], "2026-03-02 09:00", New_York);
        assert_eq!(
            local_starts(&got),
            ["2026-03-02 09:00", "2026-03-03 09:00", "2026-03-04 09:00"]
        );
    }

    #[test]
    fn an_interval_skips_periods() {
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;INTERVAL=3;COUNT=3"],
            "2026-03-30 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            ["2026-03-30 09:00", "2026-04-02 09:00", "2026-04-05 09:00"]
        );
    }

    #[test]
    fn a_weekly_rule_on_two_weekdays_walks_each_week() {
        let got = expand_hour(
            &["RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=5"],
            "2026-03-02 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            [
                "2026-03-02 09:00",
                "2026-03-04 09:00",
                "2026-03-09 09:00",
                "2026-03-11 09:00",
                "2026-03-16 09:00"
            ]
        );
    }

    #[test]
    fn a_weekly_rule_without_byday_repeats_the_start_weekday() {
        let got = expand_hour(&["RRULE:FREQ=WEEKLY;COUNT=3"], "2026-03-04 09:00", New_York);
        assert_eq!(
            local_starts(&got),
            ["2026-03-04 09:00", "2026-03-11 09:00", "2026-03-18 09:00"]
        );
    }

    #[test]
    fn wkst_changes_which_days_a_biweekly_rule_picks_as_in_rfc_5545() {
        // RFC 5545 §3.8.5.3 examples, DTSTART 1997-08-05 (a Tuesday).
        let monday = expand_hour(
            &["RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO"],
            "1997-08-05 09:00",
            New_York,
        );
        let sunday = expand_hour(
            &["RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU"],
            "1997-08-05 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&monday),
            [
                "1997-08-05 09:00",
                "1997-08-10 09:00",
                "1997-08-19 09:00",
                "1997-08-24 09:00"
            ]
        );
        assert_eq!(
            local_starts(&sunday),
            [
                "1997-08-05 09:00",
                "1997-08-17 09:00",
                "1997-08-19 09:00",
                "1997-08-31 09:00"
            ]
        );
    }

    #[test]
    fn a_monthly_rule_on_the_31st_skips_shorter_months() {
        let got = expand_hour(
            &["RRULE:FREQ=MONTHLY;COUNT=4"],
            "2026-01-31 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            [
                "2026-01-31 09:00",
                "2026-03-31 09:00",
                "2026-05-31 09:00",
                "2026-07-31 09:00"
            ]
        );
    }

    #[test]
    fn monthly_byday_ordinals_pick_the_first_monday_and_last_friday() {
        let first_monday = expand_hour(
            &["RRULE:FREQ=MONTHLY;BYDAY=1MO;COUNT=3"],
            "2026-01-05 09:00",
            New_York,
        );
        let last_friday = expand_hour(
            &["RRULE:FREQ=MONTHLY;BYDAY=-1FR;COUNT=3"],
            "2026-01-30 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&first_monday),
            ["2026-01-05 09:00", "2026-02-02 09:00", "2026-03-02 09:00"]
        );
        assert_eq!(
            local_starts(&last_friday),
            ["2026-01-30 09:00", "2026-02-27 09:00", "2026-03-27 09:00"]
        );
    }

    #[test]
    fn a_negative_bymonthday_counts_from_the_end_of_the_month() {
        let got = expand_hour(
            &["RRULE:FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=3"],
            "2026-01-31 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            ["2026-01-31 09:00", "2026-02-28 09:00", "2026-03-31 09:00"]
        );
    }

    #[test]
    fn bysetpos_picks_the_last_weekday_of_each_month() {
        let got = expand_hour(
            &["RRULE:FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;COUNT=3"],
            "2026-01-30 09:00",
            New_York,
        );
        // 2026-05-31 is a Sunday, so May's last weekday is Friday the 29th.
        let may = expand_hour(
            &["RRULE:FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;COUNT=1"],
            "2026-05-29 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            ["2026-01-30 09:00", "2026-02-27 09:00", "2026-03-31 09:00"]
        );
        assert_eq!(local_starts(&may), ["2026-05-29 09:00"]);
    }

    #[test]
    fn bysetpos_with_a_positive_position_picks_the_second_weekend_day() {
        let got = expand_hour(
            &["RRULE:FREQ=MONTHLY;BYDAY=SA,SU;BYSETPOS=2;COUNT=3"],
            "2026-03-07 09:00",
            New_York,
        );
        // March 2026: Sun 1, Sat 7 → second is the 7th; April: Sat 4, Sun 5 → 5th; May: Sat 2, Sun 3 → 3rd.
        assert_eq!(
            local_starts(&got),
            ["2026-03-07 09:00", "2026-04-05 09:00", "2026-05-03 09:00"]
        );
    }

    #[test]
    fn a_yearly_rule_repeats_the_start_date() {
        let got = expand_hour(&["RRULE:FREQ=YEARLY;COUNT=3"], "2026-06-15 09:00", Berlin);
        assert_eq!(
            local_starts(&got),
            ["2026-06-15 09:00", "2027-06-15 09:00", "2028-06-15 09:00"]
        );
    }

    #[test]
    fn a_yearly_rule_finds_the_last_sunday_of_march() {
        let got = expand_hour(
            &["RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU;COUNT=3"],
            "2026-03-29 12:00",
            Berlin,
        );
        assert_eq!(
            local_starts(&got),
            ["2026-03-29 12:00", "2027-03-28 12:00", "2028-03-26 12:00"]
        );
    }

    #[test]
    fn a_yearly_ordinal_without_bymonth_counts_within_the_year() {
        // RFC 5545: "Monday of week number 20" style example, 20th Monday of the year.
        let got = expand_hour(
            &["RRULE:FREQ=YEARLY;BYDAY=20MO;COUNT=3"],
            "1997-05-19 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            ["1997-05-19 09:00", "1998-05-18 09:00", "1999-05-17 09:00"]
        );
    }

    #[test]
    fn yearly_bymonth_expands_to_each_listed_month() {
        let got = expand_hour(
            &["RRULE:FREQ=YEARLY;BYMONTH=1,7;COUNT=4"],
            "2026-01-10 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            [
                "2026-01-10 09:00",
                "2026-07-10 09:00",
                "2027-01-10 09:00",
                "2027-07-10 09:00"
            ]
        );
    }

    #[test]
    fn byyearday_counts_from_either_end_of_the_year() {
        let got = expand_hour(
            &["RRULE:FREQ=YEARLY;BYYEARDAY=1,-1;COUNT=3"],
            "2026-01-01 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            ["2026-01-01 09:00", "2026-12-31 09:00", "2027-01-01 09:00"]
        );
    }

    #[test]
    fn byhour_expands_a_daily_rule_within_each_day() {
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;BYHOUR=9,15;COUNT=4"],
            "2026-03-02 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            [
                "2026-03-02 09:00",
                "2026-03-02 15:00",
                "2026-03-03 09:00",
                "2026-03-03 15:00"
            ]
        );
    }

    #[test]
    fn an_until_in_utc_is_inclusive() {
        // 09:00 New York in March after the 8th is 13:00Z.
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;UNTIL=20260311T130000Z"],
            "2026-03-09 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            ["2026-03-09 09:00", "2026-03-10 09:00", "2026-03-11 09:00"]
        );
    }

    #[test]
    fn an_until_in_utc_just_before_an_occurrence_excludes_it() {
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;UNTIL=20260311T125959Z"],
            "2026-03-09 09:00",
            New_York,
        );
        assert_eq!(local_starts(&got), ["2026-03-09 09:00", "2026-03-10 09:00"]);
    }

    #[test]
    fn an_until_date_includes_that_whole_local_day() {
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;UNTIL=20260311"],
            "2026-03-09 23:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            ["2026-03-09 23:00", "2026-03-10 23:00", "2026-03-11 23:00"]
        );
    }

    #[test]
    fn the_master_start_counts_as_the_first_occurrence_even_off_rule() {
        // 2026-03-03 is a Tuesday; the rule wants Mondays.
        let got = expand_hour(
            &["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3"],
            "2026-03-03 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            ["2026-03-03 09:00", "2026-03-09 09:00", "2026-03-16 09:00"]
        );
    }

    #[test]
    fn no_recurrence_lines_give_just_the_master() {
        let got = expand_hour(&[], "2026-03-03 09:00", New_York);
        assert_eq!(local_starts(&got), ["2026-03-03 09:00"]);
    }

    // ---- EXDATE, RDATE, EXRULE --------------------------------------------------------------

    #[test]
    fn an_exdate_with_tzid_removes_that_occurrence() {
        let got = expand_hour(
            &[
                "RRULE:FREQ=DAILY;COUNT=3",
                "EXDATE;TZID=America/New_York:20261110T090000",
            ],
            "2026-11-09 09:00",
            New_York,
        );
        assert_eq!(local_starts(&got), ["2026-11-09 09:00", "2026-11-11 09:00"]);
    }

    #[test]
    fn an_exdate_in_another_zone_removes_the_same_instant() {
        let got = expand_hour(
            &[
                "RRULE:FREQ=DAILY;COUNT=3",
                "EXDATE;TZID=Europe/Berlin:20261110T150000",
            ],
            "2026-11-09 09:00",
            New_York,
        );
        assert_eq!(local_starts(&got), ["2026-11-09 09:00", "2026-11-11 09:00"]);
    }

    #[test]
    fn an_exdate_in_utc_removes_that_occurrence() {
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;COUNT=3", "EXDATE:20261110T140000Z"],
            "2026-11-09 09:00",
            New_York,
        );
        assert_eq!(local_starts(&got), ["2026-11-09 09:00", "2026-11-11 09:00"]);
    }

    #[test]
    fn an_exdate_that_misses_every_occurrence_removes_nothing() {
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;COUNT=3", "EXDATE:20261110T150000Z"],
            "2026-11-09 09:00",
            New_York,
        );
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn a_date_exdate_on_a_timed_series_removes_that_local_day() {
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;COUNT=3", "EXDATE;VALUE=DATE:20261110"],
            "2026-11-09 09:00",
            New_York,
        );
        assert_eq!(local_starts(&got), ["2026-11-09 09:00", "2026-11-11 09:00"]);
    }

    #[test]
    fn a_date_exdate_removes_an_all_day_occurrence_and_keeps_count() {
        let got = expand_days(
            &["RRULE:FREQ=YEARLY;COUNT=3", "EXDATE;VALUE=DATE:20261225"],
            "2025-12-25",
        );
        // COUNT is applied before exclusion (RFC 5545), so only two remain.
        assert_eq!(local_starts(&got), ["2025-12-25", "2027-12-25"]);
    }

    #[test]
    fn an_exdate_can_remove_the_master_start() {
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;COUNT=2", "EXDATE:20261109T140000Z"],
            "2026-11-09 09:00",
            New_York,
        );
        assert_eq!(local_starts(&got), ["2026-11-10 09:00"]);
    }

    #[test]
    fn an_exdate_comma_list_removes_each_listed_occurrence() {
        let got = expand_hour(
            &[
                "RRULE:FREQ=DAILY;COUNT=4",
                "EXDATE;TZID=America/New_York:20261110T090000,20261111T090000",
            ],
            "2026-11-09 09:00",
            New_York,
        );
        assert_eq!(local_starts(&got), ["2026-11-09 09:00", "2026-11-12 09:00"]);
    }

    #[test]
    fn a_date_rdate_adds_an_all_day_occurrence_in_order() {
        let got = expand_days(
            &["RRULE:FREQ=YEARLY;COUNT=2", "RDATE;VALUE=DATE:20261224"],
            "2026-12-25",
        );
        assert_eq!(
            local_starts(&got),
            ["2026-12-24", "2026-12-25", "2027-12-25"]
        );
        assert_eq!(got[0].end, Start::Date(day("2026-12-25")));
    }

    #[test]
    fn an_rdate_list_in_another_zone_lands_at_the_same_instants() {
        let got = expand_hour(
            &[
                "RRULE:FREQ=WEEKLY;COUNT=1",
                "RDATE;TZID=Europe/Berlin:20261105T100000,20261106T100000",
            ],
            "2026-11-04 09:00",
            New_York,
        );
        // Berlin 10:00 CET is 09:00Z, which is 04:00 in New York (EST from Nov 1).
        assert_eq!(
            local_starts(&got),
            ["2026-11-04 09:00", "2026-11-05 04:00", "2026-11-06 04:00"]
        );
        assert_eq!(got[1].start.to_utc(), utc("2026-11-05T09:00:00Z"));
    }

    #[test]
    fn an_rdate_equal_to_a_rule_occurrence_is_not_doubled() {
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;COUNT=2", "RDATE:20261110T140000Z"],
            "2026-11-09 09:00",
            New_York,
        );
        assert_eq!(local_starts(&got), ["2026-11-09 09:00", "2026-11-10 09:00"]);
    }

    #[test]
    fn rdates_alone_add_to_the_master() {
        let got = expand_hour(&["RDATE:20261120T140000Z"], "2026-11-09 09:00", New_York);
        assert_eq!(local_starts(&got), ["2026-11-09 09:00", "2026-11-20 09:00"]);
    }

    #[test]
    fn an_exrule_removes_what_it_matches() {
        let got = expand_hour(
            &["RRULE:FREQ=DAILY;COUNT=7", "EXRULE:FREQ=WEEKLY;BYDAY=SA,SU"],
            "2026-03-02 09:00",
            New_York,
        );
        assert_eq!(
            local_starts(&got),
            [
                "2026-03-02 09:00",
                "2026-03-03 09:00",
                "2026-03-04 09:00",
                "2026-03-05 09:00",
                "2026-03-06 09:00"
            ]
        );
    }

    // ---- time zones and DST ------------------------------------------------------------------

    #[test]
    fn new_york_spring_forward_keeps_nine_o_clock_and_moves_the_utc_hour() {
        let got = expand_hour(&["RRULE:FREQ=DAILY;COUNT=3"], "2026-03-07 09:00", New_York);
        assert_eq!(
            local_starts(&got),
            ["2026-03-07 09:00", "2026-03-08 09:00", "2026-03-09 09:00"]
        );
        assert_eq!(
            utc_starts(&got),
            [
                "2026-03-07T14:00Z",
                "2026-03-08T13:00Z",
                "2026-03-09T13:00Z"
            ]
        );
    }

    #[test]
    fn new_york_fall_back_keeps_nine_o_clock_and_moves_the_utc_hour() {
        let got = expand_hour(&["RRULE:FREQ=DAILY;COUNT=2"], "2026-10-31 09:00", New_York);
        assert_eq!(utc_starts(&got), ["2026-10-31T13:00Z", "2026-11-01T14:00Z"]);
    }

    #[test]
    fn berlin_spring_forward_keeps_nine_o_clock_and_moves_the_utc_hour() {
        let got = expand_hour(&["RRULE:FREQ=DAILY;COUNT=2"], "2026-03-28 09:00", Berlin);
        assert_eq!(utc_starts(&got), ["2026-03-28T08:00Z", "2026-03-29T07:00Z"]);
    }

    #[test]
    fn berlin_fall_back_keeps_nine_o_clock_and_moves_the_utc_hour() {
        let got = expand_hour(&["RRULE:FREQ=DAILY;COUNT=2"], "2026-10-24 09:00", Berlin);
        assert_eq!(utc_starts(&got), ["2026-10-24T07:00Z", "2026-10-25T08:00Z"]);
    }

    #[test]
    fn a_weekly_series_across_a_dst_change_keeps_its_wall_clock_duration() {
        let got = expand_hour(&["RRULE:FREQ=WEEKLY;COUNT=3"], "2026-10-18 09:00", Berlin);
        for occurrence in &got {
            let (Start::DateTime(start), Start::DateTime(end)) =
                (&occurrence.start, &occurrence.end)
            else {
                panic!("timed series must give timed occurrences");
            };
            assert_eq!(end.naive_local() - start.naive_local(), TimeDelta::hours(1));
            assert_eq!(
                occurrence.end.to_utc() - occurrence.start.to_utc(),
                TimeDelta::hours(1)
            );
        }
        assert_eq!(
            utc_starts(&got),
            [
                "2026-10-18T07:00Z",
                "2026-10-25T08:00Z",
                "2026-11-01T08:00Z"
            ]
        );
    }

    #[test]
    fn a_nonexistent_local_time_moves_forward_by_the_gap() {
        let got = expand_hour(&["RRULE:FREQ=DAILY;COUNT=3"], "2026-03-07 02:30", New_York);
        // 02:30 does not exist on 2026-03-08; read with EST (-5) it is 07:30Z = 03:30 EDT.
        assert_eq!(
            local_starts(&got),
            ["2026-03-07 02:30", "2026-03-08 03:30", "2026-03-09 02:30"]
        );
        assert_eq!(
            utc_starts(&got),
            [
                "2026-03-07T07:30Z",
                "2026-03-08T07:30Z",
                "2026-03-09T06:30Z"
            ]
        );
        assert_eq!(got[1].end, timed("2026-03-08 04:30", New_York));
    }

    #[test]
    fn an_ambiguous_local_time_takes_its_first_instant() {
        let got = expand_hour(&["RRULE:FREQ=DAILY;COUNT=2"], "2026-10-31 01:30", New_York);
        // On 2026-11-01, 01:30 happens twice; the first is EDT (-4), 05:30Z.
        assert_eq!(utc_starts(&got), ["2026-10-31T05:30Z", "2026-11-01T05:30Z"]);
        assert_eq!(
            timed("2026-11-01 01:30", New_York).to_utc(),
            utc("2026-11-01T05:30:00Z")
        );
    }

    /// `at` (RFC 3339 with offset) read in `tz`: a start that carries its own instant.
    fn zoned(at: &str, tz: Tz) -> Start {
        Start::DateTime(utc(at).with_timezone(&tz))
    }

    #[test]
    fn a_start_in_the_repeated_hour_keeps_its_offset() {
        // The second 01:30 of 2026-11-01 in New York is EST (-5), 06:30Z.
        let start = zoned("2026-11-01T01:30:00-05:00", New_York);
        let end = zoned("2026-11-01T01:50:00-05:00", New_York);
        let got = expand(
            &lines(&["RRULE:FREQ=DAILY;COUNT=2"]),
            &start,
            &end,
            None,
            None,
            10,
        )
        .expect("valid rule");
        assert_eq!(utc_starts(&got), ["2026-11-01T06:30Z", "2026-11-02T06:30Z"]);
        // The end, also in the repeated hour, follows its start instead of preceding it.
        assert_eq!(got[0].end.to_utc(), utc("2026-11-01T06:50:00Z"));
        assert_eq!(
            instance_id("s1234", &got[0].start),
            "s1234_20261101T063000Z"
        );
    }

    #[test]
    fn utc_and_zoned_rdates_in_the_repeated_hour_keep_their_instants() {
        let got = expand_hour(
            &[
                "RRULE:FREQ=DAILY;COUNT=1",
                "RDATE:20261101T063000Z",
                "RDATE;TZID=UTC:20261101T064500",
                "RDATE;TZID=America/New_York:20261101T011500",
            ],
            "2026-10-30 01:30",
            New_York,
        );
        // The TZID=America/New_York value is ambiguous in its own zone: the first, 05:15Z.
        assert_eq!(
            utc_starts(&got),
            [
                "2026-10-30T05:30Z",
                "2026-11-01T05:15Z",
                "2026-11-01T06:30Z",
                "2026-11-01T06:45Z"
            ]
        );
    }

    #[test]
    fn a_utc_exdate_removes_the_occurrence_at_exactly_that_instant() {
        let start = zoned("2026-11-01T01:30:00-05:00", New_York);
        let end = zoned("2026-11-01T02:30:00-05:00", New_York);
        let both = |exdate: &str| {
            let got = expand(
                &lines(&["RRULE:FREQ=DAILY;COUNT=2", exdate]),
                &start,
                &end,
                None,
                None,
                10,
            )
            .expect("valid rule");
            utc_starts(&got)
        };
        assert_eq!(both("EXDATE:20261101T063000Z"), ["2026-11-02T06:30Z"]);
        // The first 01:30 (05:30Z) is another instant: nothing is removed.
        assert_eq!(
            both("EXDATE:20261101T053000Z"),
            ["2026-11-01T06:30Z", "2026-11-02T06:30Z"]
        );
    }

    #[test]
    fn a_utc_until_is_compared_with_the_instant_the_start_was_given() {
        let start = zoned("2026-11-01T01:30:00-05:00", New_York);
        let end = zoned("2026-11-01T02:30:00-05:00", New_York);
        let got = expand(
            &lines(&["RRULE:FREQ=DAILY;UNTIL=20261101T060000Z"]),
            &start,
            &end,
            None,
            None,
            10,
        )
        .expect("valid rule");
        // 06:30Z is past an UNTIL of 06:00Z, although the wall time's first reading is not.
        assert!(got.is_empty(), "{:?}", utc_starts(&got));
    }
    #[test]
    fn an_end_in_another_zone_keeps_the_elapsed_duration() {
        let start = timed("2026-03-07 09:00", New_York);
        let end = timed("2026-03-07 16:00", Berlin); // 15:00Z: an hour after 14:00Z
        let got = expand(
            &lines(&["RRULE:FREQ=DAILY;COUNT=2"]),
            &start,
            &end,
            None,
            None,
            10,
        )
        .expect("valid rule");
        assert_eq!(got[1].end, timed("2026-03-08 15:00", Berlin));
        assert_eq!(
            got[1].end.to_utc() - got[1].start.to_utc(),
            TimeDelta::hours(1)
        );
    }

    // ---- all-day series ----------------------------------------------------------------------

    #[test]
    fn a_weekly_all_day_series_gives_dates_with_exclusive_ends() {
        let got = expand_days(&["RRULE:FREQ=WEEKLY;BYDAY=FR;COUNT=3"], "2026-03-06");
        assert_eq!(
            local_starts(&got),
            ["2026-03-06", "2026-03-13", "2026-03-20"]
        );
        assert_eq!(got[2].end, Start::Date(day("2026-03-21")));
    }

    #[test]
    fn a_multi_day_all_day_series_keeps_its_length_in_days() {
        let first = day("2026-03-06");
        let got = expand(
            &lines(&["RRULE:FREQ=MONTHLY;COUNT=2"]),
            &Start::Date(first),
            &Start::Date(day("2026-03-09")),
            None,
            None,
            10,
        )
        .expect("valid rule");
        assert_eq!(got[1].start, Start::Date(day("2026-04-06")));
        assert_eq!(got[1].end, Start::Date(day("2026-04-09")));
    }

    #[test]
    fn a_yearly_series_on_february_29_skips_non_leap_years() {
        let got = expand_days(&["RRULE:FREQ=YEARLY;COUNT=3"], "2024-02-29");
        assert_eq!(
            local_starts(&got),
            ["2024-02-29", "2028-02-29", "2032-02-29"]
        );
    }

    #[test]
    fn googles_birthday_rule_for_february_29_lands_on_the_last_day_of_february() {
        let got = expand_days(
            &["RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1;COUNT=3"],
            "2024-02-29",
        );
        assert_eq!(
            local_starts(&got),
            ["2024-02-29", "2025-02-28", "2026-02-28"]
        );
    }

    #[test]
    fn an_all_day_until_date_is_inclusive() {
        let got = expand_days(&["RRULE:FREQ=DAILY;UNTIL=20261227"], "2026-12-25");
        assert_eq!(
            local_starts(&got),
            ["2026-12-25", "2026-12-26", "2026-12-27"]
        );
    }

    #[test]
    fn an_all_day_series_rejects_time_of_day_parts() {
        let first = Start::Date(day("2026-03-06"));
        let end = Start::Date(day("2026-03-07"));
        let got = expand(
            &lines(&["RRULE:FREQ=DAILY;BYHOUR=9"]),
            &first,
            &end,
            None,
            None,
            10,
        );
        assert!(matches!(got, Err(RecurrenceError::Invalid(_))));
    }

    #[test]
    fn a_master_mixing_date_and_date_time_is_rejected() {
        let got = expand(
            &lines(&["RRULE:FREQ=DAILY"]),
            &Start::Date(day("2026-03-06")),
            &timed("2026-03-06 10:00", New_York),
            None,
            None,
            10,
        );
        assert!(matches!(got, Err(RecurrenceError::Invalid(_))));
    }

    // ---- windows, max, termination -----------------------------------------------------------

    #[test]
    fn the_window_keeps_occurrences_overlapping_it() {
        let start = timed("2026-03-02 09:00", New_York);
        let end = timed("2026-03-02 10:00", New_York);
        // Window from the end of the 2nd occurrence (exclusive) to the start of the 5th.
        let got = expand(
            &lines(&["RRULE:FREQ=DAILY"]),
            &start,
            &end,
            Some(utc("2026-03-03T15:00:00Z")),
            Some(utc("2026-03-06T14:00:00Z")),
            100,
        )
        .expect("valid rule");
        assert_eq!(local_starts(&got), ["2026-03-04 09:00", "2026-03-05 09:00"]);
    }

    #[test]
    fn an_occurrence_straddling_the_window_start_is_kept() {
        let start = timed("2026-03-02 09:00", New_York);
        let end = timed("2026-03-02 10:00", New_York);
        let got = expand(
            &lines(&["RRULE:FREQ=DAILY;COUNT=5"]),
            &start,
            &end,
            Some(utc("2026-03-03T14:30:00Z")),
            None,
            100,
        )
        .expect("valid rule");
        assert_eq!(local_starts(&got)[0], "2026-03-03 09:00");
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn all_day_occurrences_are_windowed_at_midnight_utc() {
        let first = Start::Date(day("2026-03-06"));
        let end = Start::Date(day("2026-03-07"));
        let got = expand(
            &lines(&["RRULE:FREQ=DAILY;COUNT=10"]),
            &first,
            &end,
            Some(utc("2026-03-08T00:00:00Z")),
            Some(utc("2026-03-10T00:00:00Z")),
            100,
        )
        .expect("valid rule");
        assert_eq!(local_starts(&got), ["2026-03-08", "2026-03-09"]);
    }

    #[test]
    fn a_window_late_in_a_count_bounded_series_still_counts_from_the_start() {
        let start = timed("2026-03-02 09:00", New_York);
        let end = timed("2026-03-02 10:00", New_York);
        let got = expand(
            &lines(&["RRULE:FREQ=WEEKLY;COUNT=5"]),
            &start,
            &end,
            Some(utc("2026-03-20T00:00:00Z")),
            Some(utc("2027-01-01T00:00:00Z")),
            100,
        )
        .expect("valid rule");
        assert_eq!(local_starts(&got), ["2026-03-23 09:00", "2026-03-30 09:00"]);
    }

    #[test]
    fn max_keeps_only_the_earliest_occurrences() {
        let start = timed("2026-03-02 09:00", New_York);
        let end = timed("2026-03-02 10:00", New_York);
        let got =
            expand(&lines(&["RRULE:FREQ=DAILY"]), &start, &end, None, None, 2).expect("valid rule");
        assert_eq!(local_starts(&got), ["2026-03-02 09:00", "2026-03-03 09:00"]);
        let none =
            expand(&lines(&["RRULE:FREQ=DAILY"]), &start, &end, None, None, 0).expect("valid rule");
        assert!(none.is_empty());
    }

    #[test]
    fn an_open_rule_without_a_window_stops_at_the_horizon() {
        let first = Start::Date(day("2026-01-01"));
        let end = Start::Date(day("2026-01-02"));
        let got = expand(
            &lines(&["RRULE:FREQ=DAILY"]),
            &first,
            &end,
            None,
            None,
            100_000,
        )
        .expect("valid rule");
        let last = got.last().expect("some occurrences").start.clone();
        // Five years of days (2026..2030 inclusive plus Jan 1 2031): 1826 + 1 occurrences.
        assert_eq!(got.len(), 1827);
        assert_eq!(last, Start::Date(day("2031-01-01")));
    }

    #[test]
    fn a_rule_that_never_matches_terminates() {
        let got = expand_days(
            &["RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30;COUNT=5"],
            "2026-01-01",
        );
        assert_eq!(local_starts(&got), ["2026-01-01"]);
    }

    // ---- validation ----------------------------------------------------------------------------

    #[test]
    fn well_formed_google_lines_validate() {
        let good = lines(&[
            "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20261231T235959Z",
            "EXDATE;TZID=America/New_York:20261110T090000",
            "EXDATE;VALUE=DATE:20261225",
            "RDATE;VALUE=DATE:20261224",
            "RDATE;TZID=Europe/Berlin:20261105T100000,20261106T100000",
            "rrule:freq=monthly;byday=-1fr;wkst=su",
            "EXRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=25",
        ]);
        assert_eq!(validate(&good), Ok(()));
    }

    #[test]
    fn malformed_lines_are_rejected() {
        for bad in [
            "RRULE:FREQ=FORTNIGHTLY",
            "RRULE:FREQ=HOURLY",
            "RRULE:INTERVAL=2",
            "RRULE:FREQ=DAILY;COUNT=3;UNTIL=20261231",
            "RRULE:FREQ=DAILY;COUNT=0",
            "RRULE:FREQ=DAILY;INTERVAL=0",
            "RRULE:FREQ=DAILY;INTERVAL=-1",
            "RRULE:FREQ=DAILY;FREQ=WEEKLY",
            "RRULE:FREQ=WEEKLY;BYDAY=XX",
            "RRULE:FREQ=WEEKLY;BYDAY=1MO",
            "RRULE:FREQ=WEEKLY;BYMONTHDAY=1",
            "RRULE:FREQ=MONTHLY;BYMONTHDAY=0",
            "RRULE:FREQ=MONTHLY;BYMONTHDAY=32",
            "RRULE:FREQ=YEARLY;BYMONTH=13",
            "RRULE:FREQ=MONTHLY;BYSETPOS=1",
            "RRULE:FREQ=YEARLY;BYWEEKNO=20",
            "RRULE:FREQ=DAILY;UNTIL=2026-12-31",
            "RRULE:FREQ=DAILY;FOO=BAR",
            "RRULE:FREQ=DAILY;",
            "RRULE:",
            "RRULE FREQ=DAILY",
            "DTSTART:20260101T090000Z",
            "SUMMARY:hello",
            "EXDATE;TZID=Mars/Olympus:20261110T090000",
            "EXDATE;VALUE=DATE:2026112",
            "EXDATE;TZID=America/New_York:20261110T090000Z",
            "EXDATE;VALUE=DATE;TZID=America/New_York:20261110",
            "RDATE;VALUE=PERIOD:20261110T090000Z/PT1H",
            "RDATE:20261110T250000Z",
            "RDATE:20261110T090000Z,",
        ] {
            assert!(rejects(bad), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn expand_reports_invalid_lines() {
        let start = timed("2026-03-02 09:00", New_York);
        let got = expand(
            &lines(&["RRULE:FREQ=SOMETIMES"]),
            &start,
            &start,
            None,
            None,
            5,
        );
        let Err(RecurrenceError::Invalid(message)) = got else {
            panic!("expected an error");
        };
        assert!(message.contains("SOMETIMES"), "{message}");
    }

    // ---- instance ids --------------------------------------------------------------------------

    #[test]
    fn a_timed_instance_id_uses_the_utc_start() {
        let id = instance_id(
            "0kngo39kavkg0vvru71bsar1gf",
            &timed("2026-08-26 07:00", New_York),
        );
        assert_eq!(id, "0kngo39kavkg0vvru71bsar1gf_20260826T110000Z");
    }

    #[test]
    fn an_all_day_instance_id_uses_the_date() {
        let id = instance_id("abcde", &Start::Date(day("2026-12-25")));
        assert_eq!(id, "abcde_20261225");
    }

    #[test]
    fn instance_ids_parse_back_to_series_and_key() {
        let start = timed("2026-03-08 09:00", New_York);
        let id = instance_id("series1", &start);
        assert_eq!(parse_instance_id(&id), Some(("series1", start.key())));
        assert_eq!(
            parse_instance_id("abc_20261225"),
            Some(("abc", InstanceKey::Date(day("2026-12-25"))))
        );
        assert_eq!(
            parse_instance_id("a_b_20260826T110000Z"),
            Some(("a_b", InstanceKey::Utc(utc("2026-08-26T11:00:00Z"))))
        );
    }

    #[test]
    fn ids_without_a_valid_suffix_are_not_instance_ids() {
        for id in [
            "0kngo39kavkg0vvru71bsar1gf",
            "_20261225",
            "abc_",
            "abc_2026122",
            "abc_20261325",
            "abc_20260230",
            "abc_+0261225",
            "abc_20260826T110000",
            "abc_20260826T250000Z",
            "abc_20260826 110000Z",
            "abc_20260826T11000Z",
            "abc_20261225x",
        ] {
            assert_eq!(parse_instance_id(id), None, "{id:?}");
        }
    }

    // ---- properties ----------------------------------------------------------------------------

    fn zone() -> impl Strategy<Value = Tz> {
        prop::sample::select(vec![
            New_York,
            Berlin,
            chrono_tz::Australia::Sydney,
            chrono_tz::Asia::Kolkata,
            chrono_tz::UTC,
            chrono_tz::America::Sao_Paulo,
        ])
    }

    fn a_date() -> impl Strategy<Value = NaiveDate> {
        (2000i32..2040, 1u32..=12, 1u32..=28)
            .prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).expect("day 1..=28 exists"))
    }

    fn a_rule() -> impl Strategy<Value = String> {
        let freq = prop::sample::select(vec!["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]);
        let extra = prop::sample::select(vec![
            "",
            ";BYDAY=MO,WE,FR",
            ";BYMONTHDAY=1,15,-1",
            ";BYMONTH=1,6",
            ";BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1,-1",
        ]);
        (freq, 1u32..4, 1u32..40, extra).prop_map(|(f, i, c, e)| {
            // BYMONTHDAY is not allowed with FREQ=WEEKLY.
            let e = if f == "WEEKLY" && e.contains("BYMONTHDAY") {
                ""
            } else {
                e
            };
            format!("RRULE:FREQ={f};INTERVAL={i};COUNT={c}{e}")
        })
    }

    proptest! {
        #[test]
        fn instance_ids_round_trip(
            series in "[0-9a-v]{5,40}",
            date in a_date(),
            hour in 0u32..24,
            minute in 0u32..60,
            tz in zone(),
            all_day in any::<bool>(),
        ) {
            let start = if all_day {
                Start::Date(date)
            } else {
                Start::local(date.and_hms_opt(hour, minute, 0).expect("valid"), tz)
            };
            let id = instance_id(&series, &start);
            prop_assert_eq!(parse_instance_id(&id), Some((series.as_str(), start.key())));
        }

        #[test]
        fn expansions_are_strictly_ordered_and_bounded(
            rule in a_rule(),
            date in a_date(),
            hour in 0u32..24,
            tz in zone(),
            max in 1usize..60,
        ) {
            let local = date.and_hms_opt(hour, 30, 0).expect("valid");
            let start = Start::local(local, tz);
            let end = Start::local(local + TimeDelta::minutes(45), tz);
            let got = expand(&[rule], &start, &end, None, None, max).expect("generated rules are valid");
            prop_assert!(got.len() <= max);
            prop_assert!(!got.is_empty());
            prop_assert_eq!(got[0].start.key(), start.key());
            for pair in got.windows(2) {
                prop_assert!(pair[0].start.key() < pair[1].start.key());
            }
        }

        #[test]
        fn a_daily_count_gives_exactly_count_occurrences_at_the_same_wall_time(
            count in 1u32..200,
            date in a_date(),
            hour in 9u32..21,
            tz in zone(),
        ) {
            let local = date.and_hms_opt(hour, 0, 0).expect("valid");
            let start = Start::local(local, tz);
            let end = Start::local(local + TimeDelta::hours(1), tz);
            let rule = format!("RRULE:FREQ=DAILY;COUNT={count}");
            let got = expand(&[rule], &start, &end, None, None, 1000).expect("valid");
            prop_assert_eq!(got.len(), usize::try_from(count).expect("small"));
            for (n, occurrence) in got.iter().enumerate() {
                let expected = local + TimeDelta::days(i64::try_from(n).expect("small"));
                prop_assert_eq!(&occurrence.start, &Start::local(expected, tz));
            }
        }

        #[test]
        fn windowing_equals_filtering_the_full_expansion(
            rule in a_rule(),
            date in a_date(),
            tz in zone(),
            from_days in 0i64..400,
            len_days in 0i64..400,
        ) {
            let local = date.and_hms_opt(10, 0, 0).expect("valid");
            let start = Start::local(local, tz);
            let end = Start::local(local + TimeDelta::hours(2), tz);
            let ws = start.to_utc() + TimeDelta::days(from_days);
            let we = ws + TimeDelta::days(len_days);
            let recurrence = [rule];
            let full = expand(&recurrence, &start, &end, None, None, 10_000).expect("valid");
            let windowed = expand(&recurrence, &start, &end, Some(ws), Some(we), 10_000).expect("valid");
            let expected: Vec<Occurrence> = full
                .into_iter()
                .filter(|o| o.end.to_utc() > ws && o.start.to_utc() < we)
                .collect();
            prop_assert_eq!(windowed, expected);
        }
    }
}
