//! The soak's users: a seeded script of the edits people make to their calendars, played
//! one at a time against the Calendar API as the calendar owners ([`Owners`]).
//!
//! [`Users`] keeps a small model of what each owner created (ids, times, series rules), so
//! every edit is a valid request about an event that exists; what Google then holds is read
//! by the checker, never taken from this model. Every created event gets a unique title
//! ("Dentist s1234 #17"), so the checker can tell a title that leaked into a block summary.
//!
//! The mix: single timed, all-day and status events inserted, moved, retitled, switched
//! free↔busy, declined↔accepted, switched timed↔all-day and deleted; series (weekly/daily,
//! COUNT and open-ended, timed in three zones and all-day) inserted, moved, retitled, made
//! free/busy, deleted and split "this and following" (the old series gets an UNTIL, a new
//! one starts: two requests, as Google's own clients do it); single occurrences moved,
//! cancelled, made free, declined and made busy again. [`Mix`] switches singles, their
//! timed ↔ all-day switches and series.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use rand::distributions::WeightedIndex;
use rand::prelude::*;
use serde_json::{json, Value};

use super::client::{Owners, Refused};
use super::invariants::Span;

/// Live single events per calendar the script keeps at most.
const SINGLES_PER_CALENDAR: usize = 8;
/// Live series per calendar the script keeps at most.
const SERIES_PER_CALENDAR: usize = 3;
/// Events are placed this many days ahead at most (the checker's window is longer).
const DAYS_AHEAD: i64 = 40;
/// Occurrences further ahead than this are not picked for an edit.
const EDIT_HORIZON_DAYS: i64 = 50;
const ZONES: [&str; 3] = ["UTC", "Europe/Berlin", "America/New_York"];
const NOUNS: [&str; 10] = [
    "Dentist",
    "Standup",
    "Lunch with Ana",
    "Offsite",
    "1:1 Bob",
    "Gym",
    "Board review",
    "School run",
    "Flight LH400",
    "Design crit",
];

/// Which edits are in the script.
#[derive(Debug, Clone)]
pub struct Mix {
    pub singles: bool,
    /// Timed ↔ all-day switches among the single-event edits.
    pub reshape: bool,
    pub series: bool,
    /// Edit kinds left out, by name.
    pub skip: Vec<String>,
}

/// What one edit of the script did.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: &'static str,
    /// "Calendar 02: move occurrence … of \"Standup s1 #3\" by 90 min"
    pub what: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The faults refused a request of the edit every time (nothing, or for a split only
    /// the first half, changed).
    Refused(u16),
    /// The picked series had no occurrence to edit.
    NothingToDo,
}

/// How many edits of each kind were applied and refused.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub applied: BTreeMap<&'static str, u64>,
    pub refused: BTreeMap<&'static str, u64>,
    pub nothing_to_do: u64,
}

impl Tally {
    pub fn applied_total(&self) -> u64 {
        self.applied.values().sum()
    }
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// A series' RRULE, in the few shapes the script writes.
#[derive(Debug, Clone)]
struct Rule {
    weekly: bool,
    interval: u32,
    end: RuleEnd,
}

#[derive(Debug, Clone)]
enum RuleEnd {
    Count(u32),
    /// RFC 5545 UNTIL, as written (`YYYYMMDD` or `YYYYMMDDTHHMMSSZ`).
    Until(String),
    Never,
}

impl Rule {
    fn line(&self) -> String {
        let mut line = format!(
            "RRULE:FREQ={}",
            if self.weekly { "WEEKLY" } else { "DAILY" }
        );
        if self.interval > 1 {
            line.push_str(&format!(";INTERVAL={}", self.interval));
        }
        match &self.end {
            RuleEnd::Count(n) => line.push_str(&format!(";COUNT={n}")),
            RuleEnd::Until(until) => line.push_str(&format!(";UNTIL={until}")),
            RuleEnd::Never => {}
        }
        line
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    OutOfOffice,
    WorkingLocation,
}

#[derive(Debug, Clone)]
enum Shape {
    Single {
        span: Span,
        free: bool,
        /// `Some(declined)` once the owner is an attendee.
        declined: Option<bool>,
        special: Option<Special>,
    },
    Series {
        /// The first occurrence.
        span: Span,
        /// The zone a timed series expands in.
        zone: Option<&'static str>,
        rule: Rule,
    },
}

#[derive(Debug, Clone)]
struct Thing {
    calendar: usize,
    id: String,
    title: String,
    shape: Shape,
}

impl Thing {
    fn is_series(&self) -> bool {
        matches!(self.shape, Shape::Series { .. })
    }
    fn is_plain_single(&self) -> bool {
        matches!(self.shape, Shape::Single { special: None, .. })
    }
}

const RESHAPE: &str = "switch event timed/all-day";
const SPLIT: &str = "split series this-and-following";

/// The edit kinds with their weights in the mix.
const SINGLE_EDITS: [(&str, u32); 9] = [
    ("insert timed event", 6),
    ("insert all-day event", 2),
    ("insert status event", 1),
    ("move event", 5),
    ("retitle event", 1),
    ("switch event free/busy", 3),
    ("decline/accept event", 2),
    (RESHAPE, 1),
    ("delete event", 3),
];
const SERIES_EDITS: [(&str, u32); 12] = [
    ("insert series", 4),
    ("move occurrence", 3),
    ("cancel occurrence", 2),
    ("free occurrence", 3),
    ("decline occurrence", 2),
    ("make occurrence busy again", 2),
    ("move series", 2),
    ("retitle series", 1),
    ("free series", 2),
    ("busy series", 2),
    ("delete series", 1),
    (SPLIT, 2),
];

/// The seeded script and the model it keeps.
pub struct Users {
    rng: StdRng,
    mix: Mix,
    /// Each calendar's owner (alias, e-mail), for the attendee entry marked `self`.
    owners: Vec<(String, String)>,
    things: Vec<Thing>,
    titles: BTreeSet<String>,
    /// Part of every title: the seed, so titles of two runs never mix.
    tag: u64,
    created: u64,
    first_day: NaiveDate,
    pub tally: Tally,
}

/// One played edit: whose calendar, what it did (for the history), how it went.
struct Edit {
    calendar: usize,
    what: String,
    outcome: Outcome,
}

impl Edit {
    fn done<T>(calendar: usize, what: String, result: Result<T, Refused>) -> Self {
        let outcome = match result {
            Ok(_) => Outcome::Applied,
            Err(refused) => Outcome::Refused(refused.status),
        };
        Self {
            calendar,
            what,
            outcome,
        }
    }

    fn nothing(calendar: usize, what: String) -> Self {
        Self {
            calendar,
            what,
            outcome: Outcome::NothingToDo,
        }
    }
}

impl Users {
    pub fn new(seed: u64, mix: Mix, owners: Vec<(String, String)>) -> Self {
        let kinds: Vec<&str> = SINGLE_EDITS
            .iter()
            .chain(SERIES_EDITS.iter())
            .map(|(k, _)| *k)
            .collect();
        for skipped in &mix.skip {
            assert!(
                kinds.contains(&skipped.as_str()),
                "MCSS_SOAK_SKIP names no edit kind {skipped:?}; the kinds are: {}",
                kinds.join(", ")
            );
        }
        Self {
            rng: StdRng::seed_from_u64(seed),
            mix,
            owners,
            things: Vec::new(),
            titles: BTreeSet::new(),
            tag: seed % 10_000,
            created: 0,
            first_day: Utc::now().date_naive() + TimeDelta::days(1),
            tally: Tally::default(),
        }
    }

    /// Every title any event of the script ever had.
    pub fn titles(&self) -> &BTreeSet<String> {
        &self.titles
    }

    /// Plays the next edit of the script.
    pub async fn step(&mut self, owners: &Owners) -> Step {
        let kind = self.pick_kind();
        let Edit {
            calendar,
            what,
            outcome,
        } = self.edit(kind, owners).await;
        match outcome {
            Outcome::Applied => *self.tally.applied.entry(kind).or_default() += 1,
            Outcome::Refused(_) => *self.tally.refused.entry(kind).or_default() += 1,
            Outcome::NothingToDo => self.tally.nothing_to_do += 1,
        }
        Step {
            kind,
            what: format!("{}: {kind} {what}", self.owners[calendar].0),
            outcome,
        }
    }

    fn pick_kind(&mut self) -> &'static str {
        let mut options: Vec<(&'static str, u32)> = Vec::new();
        if self.mix.singles {
            options.extend(
                SINGLE_EDITS
                    .iter()
                    .filter(|(k, _)| self.mix.reshape || *k != RESHAPE),
            );
        }
        if self.mix.series {
            options.extend(SERIES_EDITS.iter());
        }
        options.retain(|(k, _)| !self.mix.skip.iter().any(|s| s == k) && self.possible(k));
        let weights = WeightedIndex::new(options.iter().map(|(_, w)| *w))
            .expect("no edit is possible: MCSS_SOAK_SKIP leaves out every insert");
        options[weights.sample(&mut self.rng)].0
    }

    fn possible(&self, kind: &str) -> bool {
        let has = |pred: fn(&Thing) -> bool| self.things.iter().any(pred);
        match kind {
            k if k.starts_with("insert") && k.ends_with("series") => {
                self.calendar_with_room(true).is_some()
            }
            k if k.starts_with("insert") => self.calendar_with_room(false).is_some(),
            "move event" | "retitle event" | "delete event" => has(|t| !t.is_series()),
            "switch event free/busy" | "decline/accept event" | RESHAPE => {
                has(Thing::is_plain_single)
            }
            SPLIT => !self.splittable().is_empty(),
            _ => has(Thing::is_series),
        }
    }

    /// Series that may be split: a split adds a series, so only where there is room.
    fn splittable(&self) -> Vec<usize> {
        let room = self.calendar_with_room(true).unwrap_or_default();
        (0..self.things.len())
            .filter(|i| self.things[*i].is_series() && room.contains(&self.things[*i].calendar))
            .collect()
    }

    fn calendar_with_room(&self, series: bool) -> Option<Vec<usize>> {
        let cap = if series {
            SERIES_PER_CALENDAR
        } else {
            SINGLES_PER_CALENDAR
        };
        let room: Vec<usize> = (0..self.owners.len())
            .filter(|c| {
                self.things
                    .iter()
                    .filter(|t| t.calendar == *c && t.is_series() == series)
                    .count()
                    < cap
            })
            .collect();
        (!room.is_empty()).then_some(room)
    }

    async fn edit(&mut self, kind: &'static str, owners: &Owners) -> Edit {
        match kind {
            "insert timed event" => self.insert_timed(owners).await,
            "insert all-day event" => self.insert_all_day(owners).await,
            "insert status event" => self.insert_status_event(owners).await,
            "move event" => self.move_event(owners).await,
            "retitle event" => self.retitle(owners, false).await,
            "switch event free/busy" => self.toggle_free(owners).await,
            "decline/accept event" => self.toggle_declined(owners).await,
            RESHAPE => self.reshape(owners).await,
            "delete event" => self.delete(owners, false).await,
            "insert series" => self.insert_series(owners).await,
            "move occurrence" => self.move_occurrence(owners).await,
            "cancel occurrence" => self.cancel_occurrence(owners).await,
            "free occurrence" => self.patch_occurrence(owners, "free").await,
            "decline occurrence" => self.patch_occurrence(owners, "decline").await,
            "make occurrence busy again" => self.patch_occurrence(owners, "busy").await,
            "move series" => self.move_series(owners).await,
            "retitle series" => self.retitle(owners, true).await,
            "free series" => self.series_transparency(owners, true).await,
            "busy series" => self.series_transparency(owners, false).await,
            "delete series" => self.delete(owners, true).await,
            SPLIT => self.split_series(owners).await,
            other => unreachable!("no edit named {other}"),
        }
    }

    // -- choosing --------------------------------------------------------------------------

    fn new_title(&mut self) -> String {
        self.created += 1;
        let noun = NOUNS[self.rng.gen_range(0..NOUNS.len())];
        let title = format!("{noun} s{:04} #{}", self.tag, self.created);
        self.titles.insert(title.clone());
        title
    }

    fn pick(&mut self, pred: fn(&Thing) -> bool) -> usize {
        let candidates: Vec<usize> = (0..self.things.len())
            .filter(|i| pred(&self.things[*i]))
            .collect();
        *candidates
            .choose(&mut self.rng)
            .expect("possible() checked there is a candidate")
    }

    fn room(&mut self, series: bool) -> usize {
        let room = self
            .calendar_with_room(series)
            .expect("possible() checked there is room");
        *room.choose(&mut self.rng).expect("a calendar with room")
    }

    fn day(&mut self, max_ahead: i64) -> NaiveDate {
        self.first_day + TimeDelta::days(self.rng.gen_range(0..max_ahead))
    }

    fn timed_span(&mut self) -> Span {
        let day = self.day(DAYS_AHEAD);
        let start = day
            .and_hms_opt(
                self.rng.gen_range(7..20),
                [0, 15, 30, 45][self.rng.gen_range(0..4)],
                0,
            )
            .expect("a valid time")
            .and_utc();
        let minutes = [30, 45, 60, 90, 120][self.rng.gen_range(0..5)];
        Span::Timed {
            start,
            end: start + TimeDelta::minutes(minutes),
        }
    }

    fn all_day_span(&mut self) -> Span {
        let start = self.day(DAYS_AHEAD);
        Span::AllDay {
            start,
            end: start + TimeDelta::days(self.rng.gen_range(1..=3)),
        }
    }

    /// `span` moved by a random amount, never before the first day of the script.
    fn shifted(&mut self, span: &Span, choices_min: &[i64], choices_days: &[i64]) -> Span {
        let floor = self.first_day.and_time(chrono::NaiveTime::MIN).and_utc();
        match span {
            Span::Timed { start, end } => {
                let by = TimeDelta::minutes(*choices_min.choose(&mut self.rng).expect("choices"));
                let by = if *start + by < floor { -by } else { by };
                Span::Timed {
                    start: *start + by,
                    end: *end + by,
                }
            }
            Span::AllDay { start, end } => {
                let by = TimeDelta::days(*choices_days.choose(&mut self.rng).expect("choices"));
                let by = if *start + by < self.first_day {
                    -by
                } else {
                    by
                };
                Span::AllDay {
                    start: *start + by,
                    end: *end + by,
                }
            }
        }
    }

    fn attendees(&self, calendar: usize, declined: bool) -> Value {
        json!([
            {"email": "organizer@example.test", "organizer": true, "responseStatus": "accepted"},
            {"email": self.owners[calendar].1, "self": true,
             "responseStatus": if declined { "declined" } else { "accepted" }},
        ])
    }

    // -- single events ---------------------------------------------------------------------

    async fn insert_single(
        &mut self,
        owners: &Owners,
        calendar: usize,
        thing: Thing,
        body: Value,
    ) -> Edit {
        let what = format!("{:?} at {}", thing.title, span_of(&thing));
        match owners.insert(calendar, &body).await {
            Ok(event) => {
                let id = event["id"].as_str().expect("an inserted event has an id");
                self.things.push(Thing {
                    id: id.to_owned(),
                    ..thing
                });
                Edit::done(calendar, what, Ok::<(), Refused>(()))
            }
            Err(refused) => Edit::done(calendar, what, Err::<(), Refused>(refused)),
        }
    }

    async fn insert_timed(&mut self, owners: &Owners) -> Edit {
        let calendar = self.room(false);
        let title = self.new_title();
        let span = self.timed_span();
        let (start, end) = times(&span, None);
        let mut body = json!({"summary": title, "start": start, "end": end});
        let (mut free, mut declined) = (false, None);
        match self.rng.gen_range(0..20) {
            0..=2 => {
                body["transparency"] = json!("transparent");
                free = true;
            }
            3..=4 => body["status"] = json!("tentative"),
            5..=6 => {
                let no = self.rng.gen_bool(0.5);
                body["attendees"] = self.attendees(calendar, no);
                declined = Some(no);
            }
            _ => {}
        }
        let shape = Shape::Single {
            span,
            free,
            declined,
            special: None,
        };
        let thing = Thing {
            calendar,
            id: String::new(),
            title,
            shape,
        };
        self.insert_single(owners, calendar, thing, body).await
    }

    async fn insert_all_day(&mut self, owners: &Owners) -> Edit {
        let calendar = self.room(false);
        let title = self.new_title();
        let span = self.all_day_span();
        let (start, end) = times(&span, None);
        let body = json!({"summary": title, "start": start, "end": end});
        let shape = Shape::Single {
            span,
            free: false,
            declined: None,
            special: None,
        };
        let thing = Thing {
            calendar,
            id: String::new(),
            title,
            shape,
        };
        self.insert_single(owners, calendar, thing, body).await
    }

    /// An out-of-office entry (blocked) or a working-location entry (never blocked).
    async fn insert_status_event(&mut self, owners: &Owners) -> Edit {
        let calendar = self.room(false);
        let title = self.new_title();
        let span = self.timed_span();
        let (start, end) = times(&span, None);
        let special = if self.rng.gen_bool(0.6) {
            Special::OutOfOffice
        } else {
            Special::WorkingLocation
        };
        let body = match special {
            Special::OutOfOffice => json!({
                "summary": title, "start": start, "end": end, "eventType": "outOfOffice",
                "outOfOfficeProperties": {"autoDeclineMode": "declineNone"},
            }),
            Special::WorkingLocation => json!({
                "summary": title, "start": start, "end": end, "eventType": "workingLocation",
                "workingLocationProperties": {"type": "homeOffice", "homeOffice": {}},
                "visibility": "public", "transparency": "transparent",
            }),
        };
        let shape = Shape::Single {
            span,
            free: special == Special::WorkingLocation,
            declined: None,
            special: Some(special),
        };
        let thing = Thing {
            calendar,
            id: String::new(),
            title,
            shape,
        };
        self.insert_single(owners, calendar, thing, body).await
    }

    async fn move_event(&mut self, owners: &Owners) -> Edit {
        let i = self.pick(|t| !t.is_series());
        let Shape::Single { span, .. } = self.things[i].shape.clone() else {
            unreachable!("picked a single event")
        };
        let moved = self.shifted(
            &span,
            &[-120, -60, -30, 30, 60, 90, 180, 1440, 2880, -1440],
            &[-2, -1, 1, 2, 3],
        );
        let (start, end) = times(&moved, None);
        let thing = &self.things[i];
        let (calendar, id) = (thing.calendar, thing.id.clone());
        let what = format!("{:?} from {span} to {moved}", thing.title);
        let result = owners
            .patch(calendar, &id, &json!({"start": start, "end": end}))
            .await;
        if result.is_ok() {
            if let Shape::Single { span, .. } = &mut self.things[i].shape {
                *span = moved;
            }
        }
        Edit::done(calendar, what, result)
    }

    async fn retitle(&mut self, owners: &Owners, series: bool) -> Edit {
        let i = if series {
            self.pick(Thing::is_series)
        } else {
            self.pick(|t| !t.is_series())
        };
        let title = self.new_title();
        let (calendar, id) = (self.things[i].calendar, self.things[i].id.clone());
        let what = format!("{:?} to {title:?}", self.things[i].title);
        let result = owners
            .patch(calendar, &id, &json!({"summary": title}))
            .await;
        if result.is_ok() {
            self.things[i].title = title;
        }
        Edit::done(calendar, what, result)
    }

    async fn toggle_free(&mut self, owners: &Owners) -> Edit {
        let i = self.pick(Thing::is_plain_single);
        let Shape::Single { free, .. } = self.things[i].shape else {
            unreachable!("picked a single event")
        };
        let (calendar, id) = (self.things[i].calendar, self.things[i].id.clone());
        let to = if free { "opaque" } else { "transparent" };
        let what = format!("{:?} to {to}", self.things[i].title);
        let result = owners
            .patch(calendar, &id, &json!({"transparency": to}))
            .await;
        if result.is_ok() {
            if let Shape::Single { free, .. } = &mut self.things[i].shape {
                *free = !*free;
            }
        }
        Edit::done(calendar, what, result)
    }

    async fn toggle_declined(&mut self, owners: &Owners) -> Edit {
        let i = self.pick(Thing::is_plain_single);
        let Shape::Single { declined, .. } = self.things[i].shape else {
            unreachable!("picked a single event")
        };
        let decline = !declined.unwrap_or(false);
        let (calendar, id) = (self.things[i].calendar, self.things[i].id.clone());
        let what = format!(
            "{:?}: the owner {}",
            self.things[i].title,
            if decline { "declines" } else { "accepts" }
        );
        let body = json!({"attendees": self.attendees(calendar, decline)});
        let result = owners.patch(calendar, &id, &body).await;
        if result.is_ok() {
            if let Shape::Single { declined, .. } = &mut self.things[i].shape {
                *declined = Some(decline);
            }
        }
        Edit::done(calendar, what, result)
    }

    /// Timed → all-day (that day) or all-day → timed (09:00–10:00 on its first day); the
    /// other kind of time is nulled, as Google requires.
    async fn reshape(&mut self, owners: &Owners) -> Edit {
        let i = self.pick(Thing::is_plain_single);
        let Shape::Single { span, .. } = self.things[i].shape.clone() else {
            unreachable!("picked a single event")
        };
        let (reshaped, body) = match span {
            Span::Timed { start, .. } => {
                let day = start.date_naive();
                let to = Span::AllDay {
                    start: day,
                    end: day + TimeDelta::days(1),
                };
                let (s, e) = times(&to, None);
                let null_time = |mut v: Value| {
                    v["dateTime"] = Value::Null;
                    v["timeZone"] = Value::Null;
                    v
                };
                (to, json!({"start": null_time(s), "end": null_time(e)}))
            }
            Span::AllDay { start, .. } => {
                let at = start.and_hms_opt(9, 0, 0).expect("09:00").and_utc();
                let to = Span::Timed {
                    start: at,
                    end: at + TimeDelta::hours(1),
                };
                let (mut s, mut e) = times(&to, None);
                s["date"] = Value::Null;
                e["date"] = Value::Null;
                (to, json!({"start": s, "end": e}))
            }
        };
        let (calendar, id) = (self.things[i].calendar, self.things[i].id.clone());
        let what = format!("{:?} from {span} to {reshaped}", self.things[i].title);
        let result = owners.patch(calendar, &id, &body).await;
        if result.is_ok() {
            if let Shape::Single { span, .. } = &mut self.things[i].shape {
                *span = reshaped;
            }
        }
        Edit::done(calendar, what, result)
    }

    async fn delete(&mut self, owners: &Owners, series: bool) -> Edit {
        let i = if series {
            self.pick(Thing::is_series)
        } else {
            self.pick(|t| !t.is_series())
        };
        let (calendar, id) = (self.things[i].calendar, self.things[i].id.clone());
        let what = format!("{:?}", self.things[i].title);
        let result = owners.delete(calendar, &id).await;
        if result.is_ok() {
            self.things.remove(i);
        }
        Edit::done(calendar, what, result)
    }

    // -- series ----------------------------------------------------------------------------

    async fn insert_series(&mut self, owners: &Owners) -> Edit {
        let calendar = self.room(true);
        let title = self.new_title();
        let weekly = self.rng.gen_bool(0.6);
        let rule = Rule {
            weekly,
            interval: if self.rng.gen_bool(0.2) { 2 } else { 1 },
            end: if self.rng.gen_bool(0.6) {
                RuleEnd::Count(self.rng.gen_range(3..=if weekly { 8 } else { 10 }))
            } else {
                RuleEnd::Never
            },
        };
        let (span, zone) = if self.rng.gen_bool(0.7) {
            let zone = ZONES[self.rng.gen_range(0..ZONES.len())];
            let tz: chrono_tz::Tz = zone.parse().expect("a known zone");
            let local = self
                .day(20)
                .and_hms_opt(
                    self.rng.gen_range(8..19),
                    [0, 30][self.rng.gen_range(0..2)],
                    0,
                )
                .expect("a valid time");
            let start = tz
                .from_local_datetime(&local)
                .earliest()
                .expect("a local time that exists")
                .with_timezone(&Utc);
            let minutes = [30, 60, 90][self.rng.gen_range(0..3)];
            let span = Span::Timed {
                start,
                end: start + TimeDelta::minutes(minutes),
            };
            (span, Some(zone))
        } else {
            let start = self.day(20);
            let span = Span::AllDay {
                start,
                end: start + TimeDelta::days(1),
            };
            (span, None)
        };
        let (start, end) = times(&span, zone);
        let body = json!({
            "summary": title, "start": start, "end": end, "recurrence": [rule.line()],
        });
        let what = format!("{title:?} from {span} {}", rule.line());
        match owners.insert(calendar, &body).await {
            Ok(event) => {
                let id = event["id"].as_str().expect("an inserted series has an id");
                self.things.push(Thing {
                    calendar,
                    id: id.to_owned(),
                    title,
                    shape: Shape::Series { span, zone, rule },
                });
                Edit::done(calendar, what, Ok::<(), Refused>(()))
            }
            Err(refused) => Edit::done(calendar, what, Err::<(), Refused>(refused)),
        }
    }

    /// A live occurrence, in the edit horizon, of a random series (thing `i`): one that
    /// `prefer`s when there is one. `Err(edit)` is the edit that ends here: the listing
    /// was refused, or the series has no such occurrence.
    async fn occurrence(
        &mut self,
        owners: &Owners,
        prefer: fn(&Value) -> bool,
    ) -> Result<(usize, Value), Edit> {
        let i = self.pick(Thing::is_series);
        let (calendar, id) = (self.things[i].calendar, self.things[i].id.clone());
        let horizon = Utc::now() + TimeDelta::days(EDIT_HORIZON_DAYS);
        let instances = owners.instances(calendar, &id).await.map_err(|refused| {
            Edit::done(
                calendar,
                "(listing its occurrences)".into(),
                Err::<(), _>(refused),
            )
        })?;
        let live: Vec<Value> = instances
            .into_iter()
            .filter(|o| o["status"] != "cancelled")
            .filter(|o| Span::of(o).is_some_and(|s| start_of(&s) < horizon))
            .collect();
        let preferred: Vec<&Value> = live.iter().filter(|o| prefer(o)).collect();
        let chosen = if preferred.is_empty() {
            live.choose(&mut self.rng)
        } else {
            preferred.choose(&mut self.rng).copied()
        };
        match chosen {
            Some(occurrence) => Ok((i, occurrence.clone())),
            None => Err(Edit::nothing(
                calendar,
                format!("{:?}: no live occurrence", self.things[i].title),
            )),
        }
    }

    async fn move_occurrence(&mut self, owners: &Owners) -> Edit {
        let (i, occurrence) = match self.occurrence(owners, |_| true).await {
            Ok(found) => found,
            Err(edit) => return edit,
        };
        let span = Span::of(&occurrence).expect("an occurrence has times");
        let moved = self.shifted(&span, &[-60, -30, 30, 60, 120, 1440], &[-1, 1]);
        let (start, end) = times(&moved, None);
        let (calendar, title) = (self.things[i].calendar, self.things[i].title.clone());
        let id = occurrence["id"].as_str().unwrap_or_default().to_owned();
        let what = format!("{id} of {title:?} from {span} to {moved}");
        let body = json!({"start": start, "end": end});
        Edit::done(calendar, what, owners.patch(calendar, &id, &body).await)
    }

    async fn cancel_occurrence(&mut self, owners: &Owners) -> Edit {
        let (i, occurrence) = match self.occurrence(owners, |_| true).await {
            Ok(found) => found,
            Err(edit) => return edit,
        };
        let (calendar, title) = (self.things[i].calendar, self.things[i].title.clone());
        let id = occurrence["id"].as_str().unwrap_or_default().to_owned();
        let what = format!("{id} of {title:?}");
        Edit::done(calendar, what, owners.delete(calendar, &id).await)
    }

    /// `how` = "free" (transparent), "decline" (the owner's attendee entry declines) or
    /// "busy" (opaque and accepted again; a free or declined occurrence when there is one).
    async fn patch_occurrence(&mut self, owners: &Owners, how: &str) -> Edit {
        let prefer: fn(&Value) -> bool = match how {
            "busy" => |o| o["transparency"] == "transparent" || declined_by_owner(o),
            _ => |o| o["transparency"] != "transparent" && !declined_by_owner(o),
        };
        let (i, occurrence) = match self.occurrence(owners, prefer).await {
            Ok(found) => found,
            Err(edit) => return edit,
        };
        let calendar = self.things[i].calendar;
        let mut body = match how {
            "free" => json!({"transparency": "transparent"}),
            "decline" => json!({"attendees": self.attendees(calendar, true)}),
            _ if occurrence["attendees"].is_array() => {
                json!({"transparency": "opaque", "attendees": self.attendees(calendar, false)})
            }
            _ => json!({"transparency": "opaque"}),
        };
        // The occurrence's own times, sent again: the emulator would otherwise place a new
        // exception at the series' first start (it re-reads the series' times).
        body["start"] = occurrence["start"].clone();
        body["end"] = occurrence["end"].clone();
        let id = occurrence["id"].as_str().unwrap_or_default().to_owned();
        let what = format!("{id} of {:?}", self.things[i].title);
        Edit::done(calendar, what, owners.patch(calendar, &id, &body).await)
    }

    async fn move_series(&mut self, owners: &Owners) -> Edit {
        let i = self.pick(Thing::is_series);
        let Shape::Series { span, zone, .. } = self.things[i].shape.clone() else {
            unreachable!("picked a series")
        };
        let moved = self.shifted(&span, &[-60, 60, 120, 1440], &[-1, 1, 2]);
        let (start, end) = times(&moved, zone);
        let (calendar, id) = (self.things[i].calendar, self.things[i].id.clone());
        let what = format!("{:?} from {span} to {moved}", self.things[i].title);
        let result = owners
            .patch(calendar, &id, &json!({"start": start, "end": end}))
            .await;
        if result.is_ok() {
            if let Shape::Series { span, .. } = &mut self.things[i].shape {
                *span = moved;
            }
        }
        Edit::done(calendar, what, result)
    }

    async fn series_transparency(&mut self, owners: &Owners, free: bool) -> Edit {
        let i = self.pick(Thing::is_series);
        let (calendar, id) = (self.things[i].calendar, self.things[i].id.clone());
        let what = format!("{:?}", self.things[i].title);
        let to = if free { "transparent" } else { "opaque" };
        let result = owners
            .patch(calendar, &id, &json!({"transparency": to}))
            .await;
        Edit::done(calendar, what, result)
    }

    /// "This and following" from a random later occurrence: the old series ends just before
    /// it (UNTIL), a new series (new title, sometimes an hour later) starts there with what
    /// is left of a COUNT.
    async fn split_series(&mut self, owners: &Owners) -> Edit {
        let i = *self
            .splittable()
            .choose(&mut self.rng)
            .expect("possible() checked there is a series to split");
        let thing = self.things[i].clone();
        let Shape::Series { span, zone, rule } = &thing.shape else {
            unreachable!("picked a series")
        };
        let all = match owners.instances(thing.calendar, &thing.id).await {
            Ok(all) => all,
            Err(refused) => {
                let what = "(listing its occurrences)".to_owned();
                return Edit::done(thing.calendar, what, Err::<(), _>(refused));
            }
        };
        let horizon = Utc::now() + TimeDelta::days(EDIT_HORIZON_DAYS);
        let originals: Vec<Span> = all
            .iter()
            .filter_map(|o| original_start(o, span))
            .filter(|s| start_of(s) < horizon)
            .collect();
        if originals.len() < 2 {
            let what = format!("{:?}: fewer than two occurrences", thing.title);
            return Edit::nothing(thing.calendar, what);
        }
        let k = self.rng.gen_range(1..originals.len());
        let from = originals[k].clone();
        let until = match &from {
            Span::Timed { start, .. } => (*start - TimeDelta::seconds(1))
                .format("%Y%m%dT%H%M%SZ")
                .to_string(),
            Span::AllDay { start, .. } => {
                (*start - TimeDelta::days(1)).format("%Y%m%d").to_string()
            }
        };
        let old_rule = Rule {
            end: RuleEnd::Until(until),
            ..rule.clone()
        };
        let new_rule = Rule {
            end: match &rule.end {
                RuleEnd::Count(n) => RuleEnd::Count(n.saturating_sub(k as u32).max(1)),
                other => other.clone(),
            },
            ..rule.clone()
        };
        let later = matches!(from, Span::Timed { .. }) && self.rng.gen_bool(0.5);
        let new_span = if later {
            self.shifted(&from, &[60], &[0])
        } else {
            from.clone()
        };
        let title = self.new_title();
        let what = format!(
            "{:?} at {from}: old {}, new {title:?} from {new_span} {}",
            thing.title,
            old_rule.line(),
            new_rule.line()
        );
        let truncated = owners
            .patch(
                thing.calendar,
                &thing.id,
                &json!({"recurrence": [old_rule.line()]}),
            )
            .await;
        if let Err(refused) = truncated {
            return Edit::done(thing.calendar, what, Err::<(), Refused>(refused));
        }
        if let Shape::Series { rule, .. } = &mut self.things[i].shape {
            *rule = old_rule;
        }
        let (start, end) = times(&new_span, *zone);
        let body = json!({
            "summary": title, "start": start, "end": end, "recurrence": [new_rule.line()],
        });
        match owners.insert(thing.calendar, &body).await {
            Ok(event) => {
                self.things.push(Thing {
                    calendar: thing.calendar,
                    id: event["id"].as_str().expect("an id").to_owned(),
                    title,
                    shape: Shape::Series {
                        span: new_span,
                        zone: *zone,
                        rule: new_rule,
                    },
                });
                Edit::done(thing.calendar, what, Ok::<(), Refused>(()))
            }
            Err(refused) => Edit::done(thing.calendar, what, Err::<(), Refused>(refused)),
        }
    }
}

/// Whether the calendar owner's own attendee entry declines the event.
fn declined_by_owner(event: &Value) -> bool {
    event["attendees"].as_array().is_some_and(|people| {
        people
            .iter()
            .any(|p| p["self"] == true && p["responseStatus"] == "declined")
    })
}

fn span_of(thing: &Thing) -> String {
    match &thing.shape {
        Shape::Single { span, .. } | Shape::Series { span, .. } => span.to_string(),
    }
}

fn start_of(span: &Span) -> DateTime<Utc> {
    match span {
        Span::Timed { start, .. } => *start,
        Span::AllDay { start, .. } => start.and_time(chrono::NaiveTime::MIN).and_utc(),
    }
}

/// The original start of an occurrence as a span with the series' duration.
fn original_start(occurrence: &Value, series: &Span) -> Option<Span> {
    let original = &occurrence["originalStartTime"];
    let probe = json!({"start": original, "end": original});
    match (Span::of(&probe)?, series) {
        (Span::Timed { start, .. }, Span::Timed { start: s, end: e }) => Some(Span::Timed {
            start,
            end: start + (*e - *s),
        }),
        (Span::AllDay { start, .. }, Span::AllDay { start: s, end: e }) => Some(Span::AllDay {
            start,
            end: start + (*e - *s),
        }),
        _ => None,
    }
}

/// `start` and `end` of an event resource for `span`; a series' timed start names its zone.
fn times(span: &Span, zone: Option<&str>) -> (Value, Value) {
    match span {
        Span::Timed { start, end } => {
            let at = |t: &DateTime<Utc>| {
                let mut v = json!({"dateTime": t.format("%Y-%m-%dT%H:%M:%SZ").to_string()});
                if let Some(zone) = zone {
                    v["timeZone"] = json!(zone);
                }
                v
            };
            (at(start), at(end))
        }
        Span::AllDay { start, end } => (
            json!({"date": start.format("%Y-%m-%d").to_string()}),
            json!({"date": end.format("%Y-%m-%d").to_string()}),
        ),
    }
}
