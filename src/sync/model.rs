//! The planner's own input types, independent of Google's wire types.
//!
//! A converter in `google/` turns a listed event into a [`SourceEvent`]; the store turns an
//! account row into an [`Account`]. Keeping these apart from the wire types means the rules
//! can be tested without JSON and the wire types can change without touching the rules.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeDelta, TimeZone as _, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::config::{BlockDetails, SyncSettings};
use crate::domain::{AccountId, CalendarId, EventId};

use super::marker::Marker;

/// `status` of an event. Unknown values are read as `Confirmed`, Google's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Confirmed,
    Tentative,
    Cancelled,
}

impl EventStatus {
    pub fn from_wire(raw: Option<&str>) -> Self {
        match raw {
            Some("tentative") => Self::Tentative,
            Some("cancelled") => Self::Cancelled,
            _ => Self::Confirmed,
        }
    }
}

/// `transparency`: Google omits it for busy events, so absence means `Opaque`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transparency {
    Opaque,
    Transparent,
}

impl Transparency {
    pub fn from_wire(raw: Option<&str>) -> Self {
        match raw {
            Some("transparent") => Self::Transparent,
            _ => Self::Opaque,
        }
    }
}

/// `visibility` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Default,
    Public,
    Private,
    Confidential,
}

impl Visibility {
    pub fn from_wire(raw: Option<&str>) -> Self {
        match raw {
            Some("public") => Self::Public,
            Some("private") => Self::Private,
            Some("confidential") => Self::Confidential,
            _ => Self::Default,
        }
    }
}

/// `eventType`. Unknown types are kept (not refused) because Google adds new ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    Default,
    OutOfOffice,
    FocusTime,
    WorkingLocation,
    Birthday,
    FromGmail,
    Other(String),
}

impl EventType {
    pub fn from_wire(raw: Option<&str>) -> Self {
        match raw {
            None | Some("default") => Self::Default,
            Some("outOfOffice") => Self::OutOfOffice,
            Some("focusTime") => Self::FocusTime,
            Some("workingLocation") => Self::WorkingLocation,
            Some("birthday") => Self::Birthday,
            Some("fromGmail") => Self::FromGmail,
            Some(other) => Self::Other(other.to_owned()),
        }
    }
}

/// `responseStatus` of the calendar owner's own attendee entry (`self: true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseStatus {
    NeedsAction,
    Declined,
    Tentative,
    Accepted,
}

impl ResponseStatus {
    pub fn from_wire(raw: &str) -> Option<Self> {
        match raw {
            "needsAction" => Some(Self::NeedsAction),
            "declined" => Some(Self::Declined),
            "tentative" => Some(Self::Tentative),
            "accepted" => Some(Self::Accepted),
            _ => None,
        }
    }
}

/// A time that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an RFC 3339 date-time (and no usable time zone given): {0:?}")]
    BadDateTime(String),
    #[error("not a yyyy-mm-dd date: {0:?}")]
    BadDate(String),
}

/// One end of an event (`start`, `end` or `originalStartTime`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventTime {
    /// An all-day boundary; an end date is exclusive, as at Google.
    AllDay { date: NaiveDate },
    /// A timed boundary.
    Timed {
        /// The instant, for comparisons (look-back, same meeting, instance ids).
        instant: DateTime<Utc>,
        /// The IANA zone Google reported; required at Google for a recurring series.
        time_zone: Option<String>,
        /// `dateTime` exactly as Google sent it, so the block repeats it byte for byte and its
        /// hash does not move when nothing changed.
        date_time: String,
    },
}

impl EventTime {
    pub fn all_day(date: NaiveDate) -> Self {
        Self::AllDay { date }
    }

    /// Reads a `date` field (`yyyy-mm-dd`).
    pub fn parse_date(raw: &str) -> Result<Self, TimeError> {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map(Self::all_day)
            .map_err(|_| TimeError::BadDate(raw.to_owned()))
    }

    /// Reads a `dateTime` (+ optional `timeZone`) pair. The offset may only be missing when a
    /// known IANA zone is given, as Google's own rule says.
    pub fn parse_timed(date_time: &str, time_zone: Option<&str>) -> Result<Self, TimeError> {
        let bad = || TimeError::BadDateTime(date_time.to_owned());
        let instant = match DateTime::parse_from_rfc3339(date_time) {
            Ok(parsed) => parsed.with_timezone(&Utc),
            Err(_) => {
                let tz: chrono_tz::Tz = time_zone.and_then(|z| z.parse().ok()).ok_or_else(bad)?;
                let naive = NaiveDateTime::parse_from_str(date_time, "%Y-%m-%dT%H:%M:%S%.f")
                    .map_err(|_| bad())?;
                tz.from_local_datetime(&naive)
                    .earliest()
                    .ok_or_else(bad)?
                    .with_timezone(&Utc)
            }
        };
        Ok(Self::Timed {
            instant,
            time_zone: time_zone.map(str::to_owned),
            date_time: date_time.to_owned(),
        })
    }

    /// A timed boundary rendered in `time_zone` when it is a known IANA zone, else in UTC.
    pub fn from_instant(instant: DateTime<Utc>, time_zone: Option<&str>) -> Self {
        let local = time_zone
            .and_then(|z| z.parse::<chrono_tz::Tz>().ok())
            .map_or_else(
                || instant.fixed_offset(),
                |tz| instant.with_timezone(&tz).fixed_offset(),
            );
        Self::Timed {
            instant,
            time_zone: time_zone.map(str::to_owned),
            date_time: local.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    pub fn is_all_day(&self) -> bool {
        matches!(self, Self::AllDay { .. })
    }

    pub fn time_zone(&self) -> Option<&str> {
        match self {
            Self::AllDay { .. } => None,
            Self::Timed { time_zone, .. } => time_zone.as_deref(),
        }
    }

    /// What identifies this boundary regardless of how it was rendered.
    pub fn start_key(&self) -> StartKey {
        match self {
            Self::AllDay { date } => StartKey::Date(*date),
            Self::Timed { instant, .. } => StartKey::Instant(*instant),
        }
    }

    /// The latest instant this boundary can denote. An all-day date is read in `zone` when it
    /// is a known IANA zone; otherwise as the last midnight of that date anywhere on Earth.
    pub(crate) fn latest_instant(&self, zone: Option<&str>) -> DateTime<Utc> {
        match self {
            Self::Timed { instant, .. } => *instant,
            Self::AllDay { date } => {
                let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
                zone.and_then(|z| z.parse::<chrono_tz::Tz>().ok())
                    .and_then(|tz| tz.from_local_datetime(&midnight).latest())
                    .map(|local| local.with_timezone(&Utc))
                    .unwrap_or_else(|| midnight.and_utc() + TimeDelta::hours(12))
            }
        }
    }

    /// The boundary as a local wall-clock time with its offset, for descriptions.
    pub(crate) fn local(&self) -> Option<DateTime<FixedOffset>> {
        match self {
            Self::AllDay { .. } => None,
            Self::Timed {
                instant,
                time_zone,
                date_time,
            } => Some(DateTime::parse_from_rfc3339(date_time).unwrap_or_else(|_| {
                time_zone
                    .as_deref()
                    .and_then(|z| z.parse::<chrono_tz::Tz>().ok())
                    .map_or_else(
                        || instant.fixed_offset(),
                        |tz| instant.with_timezone(&tz).fixed_offset(),
                    )
            })),
        }
    }
}

/// A rendering-independent start: what makes two calendars' copies of one occurrence equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartKey {
    Date(NaiveDate),
    Instant(DateTime<Utc>),
}

/// One event of a source calendar as the planner needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceEvent {
    pub id: EventId,
    pub status: EventStatus,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    /// `None` only on tombstones (cancelled events, where Google guarantees little but the id).
    pub start: Option<EventTime>,
    pub end: Option<EventTime>,
    /// RRULE/EXRULE/RDATE/EXDATE lines of a series; empty on single events and instances.
    pub recurrence: Vec<String>,
    /// Set on an instance or exception: the id of its series.
    pub recurring_event_id: Option<EventId>,
    /// Set on an instance or exception: the start the RRULE gave it, even after a move.
    pub original_start: Option<EventTime>,
    /// Shared by every calendar's copy of one meeting; used for the same-meeting rule.
    pub ical_uid: Option<String>,
    pub transparency: Transparency,
    pub visibility: Visibility,
    pub event_type: EventType,
    /// The calendar owner's own attendee entry, when the event has attendees.
    pub self_response: Option<ResponseStatus>,
    /// The block marker read from private extended properties, if any installation set one.
    pub marker: Option<Marker>,
    pub html_link: Option<String>,
}

impl SourceEvent {
    /// A confirmed, opaque, default-type single event with nothing else set.
    pub fn new(id: EventId, start: EventTime, end: EventTime) -> Self {
        Self {
            id,
            status: EventStatus::Confirmed,
            summary: None,
            description: None,
            location: None,
            start: Some(start),
            end: Some(end),
            recurrence: Vec::new(),
            recurring_event_id: None,
            original_start: None,
            ical_uid: None,
            transparency: Transparency::Opaque,
            visibility: Visibility::Default,
            event_type: EventType::Default,
            self_response: None,
            marker: None,
            html_link: None,
        }
    }

    /// A tombstone as an incremental sync lists it: only the id (and, for a cancelled
    /// occurrence, its series and original start) are known.
    pub fn tombstone(id: EventId) -> Self {
        Self {
            start: None,
            end: None,
            status: EventStatus::Cancelled,
            ..Self::new(
                id,
                EventTime::all_day(NaiveDate::MIN),
                EventTime::all_day(NaiveDate::MIN),
            )
        }
    }

    /// A series master (has recurrence lines).
    pub fn is_series(&self) -> bool {
        !self.recurrence.is_empty() && self.recurring_event_id.is_none()
    }

    /// An instance or exception of a series.
    pub fn is_instance(&self) -> bool {
        self.recurring_event_id.is_some()
    }

    /// What identifies this meeting on any calendar, when Google gave an iCalUID.
    pub fn meeting_key(&self) -> Option<MeetingKey> {
        Some(MeetingKey {
            ical_uid: self.ical_uid.clone()?,
            original_start: self.original_start.as_ref().map(EventTime::start_key),
        })
    }
}

/// A connected account as the planner sees it, as a source or as a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// The user-facing name, e.g. "Calendar 01"; fills `{alias}` in block titles.
    pub alias: String,
    /// The resolved calendar id (an address, never `primary`, which means a different
    /// calendar for every account and would make block ids collide).
    pub calendar_id: CalendarId,
    /// The calendar's IANA zone; reads all-day dates and fills a series' missing zone.
    pub time_zone: Option<String>,
    /// The calendar's own rules: its source side decides which of its events are mirrored,
    /// its target side what the blocks on it look like.
    pub rules: Rules,
}

/// One calendar's rules, resolved (its own where set, the environment's defaults otherwise).
#[derive(Debug, Clone)]
pub struct Rules {
    /// As a target: `{alias}` becomes the source calendar's alias.
    pub title_template: String,
    /// As a target: what a block's description holds.
    pub details: BlockDetails,
    /// As a source: kinds of events that are not mirrored.
    pub skip_all_day: bool,
    pub skip_out_of_office: bool,
    pub skip_focus_time: bool,
    /// As a source: events whose title matches are not mirrored.
    pub exclude_title: Option<Regex>,
    /// As a source: events that ended up to this long before `now` are still mirrored.
    pub look_back: TimeDelta,
}

impl Default for Rules {
    /// The built-in defaults: `"{alias} Block"`, full details, nothing optional skipped.
    fn default() -> Self {
        Self {
            title_template: "{alias} Block".to_owned(),
            details: BlockDetails::Full,
            skip_all_day: false,
            skip_out_of_office: false,
            skip_focus_time: false,
            exclude_title: None,
            look_back: TimeDelta::zero(),
        }
    }
}

impl PartialEq for Rules {
    fn eq(&self, other: &Self) -> bool {
        let pattern = |r: &Option<Regex>| r.as_ref().map(|r| r.as_str().to_owned());
        self.title_template == other.title_template
            && self.details == other.details
            && self.skip_all_day == other.skip_all_day
            && self.skip_out_of_office == other.skip_out_of_office
            && self.skip_focus_time == other.skip_focus_time
            && pattern(&self.exclude_title) == pattern(&other.exclude_title)
            && self.look_back == other.look_back
    }
}

impl Eq for Rules {}

impl Rules {
    /// The environment's defaults (`BLOCK_TITLE_TEMPLATE`, `SKIP_ALL_DAY`, …).
    pub fn from_settings(settings: &SyncSettings) -> Self {
        Self {
            title_template: settings.block_title_template.clone(),
            details: settings.block_details,
            skip_all_day: settings.skip_all_day,
            skip_out_of_office: settings.skip_out_of_office,
            skip_focus_time: settings.skip_focus_time,
            exclude_title: settings.exclude_title_regex.clone(),
            look_back: look_back(settings.look_back),
        }
    }
}

pub type SourceAccount = Account;
pub type TargetAccount = Account;

/// The sync options of docs/sync-rules.md for one (source, target) pair, plus the
/// installation id that marks our blocks ([`PlannerConfig::for_pair`]).
#[derive(Debug, Clone)]
pub struct PlannerConfig {
    pub installation: String,
    /// `{alias}` becomes the source account's alias.
    pub title_template: String,
    pub details: BlockDetails,
    pub skip_all_day: bool,
    pub skip_out_of_office: bool,
    pub skip_focus_time: bool,
    pub exclude_title: Option<Regex>,
    /// Events that ended up to this long before `now` are still mirrored.
    pub look_back: TimeDelta,
}

impl PlannerConfig {
    /// The defaults of `config.rs`: `"{alias} Block"`, full details, nothing optional skipped.
    pub fn new(installation: impl Into<String>) -> Self {
        Self {
            installation: installation.into(),
            title_template: "{alias} Block".to_owned(),
            details: BlockDetails::Full,
            skip_all_day: false,
            skip_out_of_office: false,
            skip_focus_time: false,
            exclude_title: None,
            look_back: TimeDelta::zero(),
        }
    }

    pub fn from_settings(settings: &SyncSettings, installation: impl Into<String>) -> Self {
        Self::from_rules(installation, &Rules::from_settings(settings))
    }

    fn from_rules(installation: impl Into<String>, rules: &Rules) -> Self {
        Self {
            installation: installation.into(),
            title_template: rules.title_template.clone(),
            details: rules.details,
            skip_all_day: rules.skip_all_day,
            skip_out_of_office: rules.skip_out_of_office,
            skip_focus_time: rules.skip_focus_time,
            exclude_title: rules.exclude_title.clone(),
            look_back: rules.look_back,
        }
    }

    /// The config of one (source, target) pair: the source calendar's rules decide what is
    /// mirrored, the target calendar's what its blocks look like.
    pub fn for_pair(&self, source: &Rules, target: &Rules) -> Self {
        Self {
            installation: self.installation.clone(),
            title_template: target.title_template.clone(),
            details: target.details,
            skip_all_day: source.skip_all_day,
            skip_out_of_office: source.skip_out_of_office,
            skip_focus_time: source.skip_focus_time,
            exclude_title: source.exclude_title.clone(),
            look_back: source.look_back,
        }
    }
}

fn look_back(raw: Duration) -> TimeDelta {
    // Settings cap the look-back at a year; saturate rather than fail on absurd values.
    TimeDelta::from_std(raw).unwrap_or(TimeDelta::MAX)
}

/// Identifies one meeting (or one occurrence of it) across calendars.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MeetingKey {
    pub ical_uid: String,
    /// `None` for a single event or a whole series; the occurrence's original start otherwise.
    pub original_start: Option<StartKey>,
}

/// What a target calendar already holds in its own right: its live, accepted, opaque
/// non-block events, by meeting. Used so a meeting on two calendars does not also get a block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetHoldings {
    held: HashSet<MeetingKey>,
}

impl TargetHoldings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps those of a target's own events that count as holding their meeting: confirmed or
    /// tentative, opaque, accepted by the owner (or with no attendee entry for the owner, i.e.
    /// the owner's own event), and not a block of any installation.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a SourceEvent>) -> Self {
        let mut holdings = Self::new();
        for event in events {
            if Self::counts(event) {
                if let Some(key) = event.meeting_key() {
                    holdings.hold(key);
                }
            }
        }
        holdings
    }

    fn counts(event: &SourceEvent) -> bool {
        event.status != EventStatus::Cancelled
            && event.transparency == Transparency::Opaque
            && matches!(event.self_response, None | Some(ResponseStatus::Accepted))
            && event.marker.is_none()
    }

    pub fn hold(&mut self, key: MeetingKey) {
        self.held.insert(key);
    }

    /// Whether the target holds this meeting. An occurrence is held when the target holds
    /// that occurrence or the whole series: in the latter case no block series exists on the
    /// target, so no block occurrence can exist either.
    pub fn holds(&self, ical_uid: &str, original_start: Option<StartKey>) -> bool {
        let key = |original_start| MeetingKey {
            ical_uid: ical_uid.to_owned(),
            original_start,
        };
        self.held.contains(&key(original_start))
            || (original_start.is_some() && self.held.contains(&key(None)))
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}
