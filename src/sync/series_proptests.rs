//! The property of the per-occurrence model: for random sequences of series edits — move
//! one, cancel one, free one, decline one, busy one, move all, free all, busy all, delete,
//! this-and-following split — the set of blocked instants on each target equals the set of
//! busy source instants, after every step.
//!
//! The source calendar is a small model of Google's (a series: master + exceptions keyed by
//! their original start); each step lists only what the edit changed, as an incremental
//! sync would, and the pass runs against what earlier steps stored. Its plan is applied to a
//! model of each target calendar with the outbox's rules (a block series that goes takes its
//! occurrences with it). Both calendars are then expanded the same way — an exception
//! replaces or cancels the instance with its original start — and compared.
//!
//! The second property mixes settings changes into the edits — a link to either target
//! turned off or on, the source's skip-all-day and exclude-title rules, a target's title
//! template — each applied as the store and the replan apply it: blocked instants on each
//! target equal the busy instants of the source when the link is on and no rule skips the
//! events, none otherwise, and every block carries its target's title.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone as _, Utc};
use proptest::prelude::*;

use crate::domain::{AccountId, BlockId, CalendarId, EventId};

use super::testing::listed_event;
use super::*;

const INSTALLATION: &str = "inst-series";
/// Every event of the model is a stand-up (an exclude-title rule can match them).
const TITLE: &str = "Standup";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn account_with(n: i64, rules: Rules) -> Account {
    Account {
        id: AccountId::new(n),
        alias: format!("Calendar {n:02}"),
        calendar_id: CalendarId::parse(&format!("cal{n}@example.com")).unwrap(),
        time_zone: Some("UTC".to_owned()),
        rules,
    }
}

/// A busy or blocked stretch of time: all-day by dates, timed by instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Span {
    Days(NaiveDate, NaiveDate),
    Instants(DateTime<Utc>, DateTime<Utc>),
}

// -- the source model -----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exception {
    Moved(i64),
    Cancelled,
    Free,
    Declined,
    Busy,
}

#[derive(Debug, Clone)]
struct Series {
    id: String,
    all_day: bool,
    /// First start: midnight UTC of the first day for an all-day series.
    start: DateTime<Utc>,
    period_days: i64,
    count: i64,
    free: bool,
    declined: bool,
    deleted: bool,
    /// By original start, as Google keys exceptions.
    exceptions: BTreeMap<DateTime<Utc>, Exception>,
}

impl Series {
    fn original(&self, k: i64) -> DateTime<Utc> {
        self.start + TimeDelta::days(self.period_days * k)
    }

    fn length(&self) -> TimeDelta {
        if self.all_day {
            TimeDelta::days(1)
        } else {
            TimeDelta::hours(1)
        }
    }

    fn time(&self, at: DateTime<Utc>) -> EventTime {
        if self.all_day {
            EventTime::all_day(at.date_naive())
        } else {
            EventTime::from_instant(at, Some("UTC"))
        }
    }

    fn span(&self, start: DateTime<Utc>) -> Span {
        let end = start + self.length();
        if self.all_day {
            Span::Days(start.date_naive(), end.date_naive())
        } else {
            Span::Instants(start, end)
        }
    }

    fn suffix(&self, original: DateTime<Utc>) -> String {
        if self.all_day {
            original.format("%Y%m%d").to_string()
        } else {
            original.format("%Y%m%dT%H%M%SZ").to_string()
        }
    }

    fn master_event(&self) -> SourceEvent {
        let id = EventId::parse(&self.id).unwrap();
        if self.deleted {
            let mut tombstone = SourceEvent::tombstone(id);
            tombstone.ical_uid = Some(format!("{}@model", self.id));
            return tombstone;
        }
        let mut event = SourceEvent::new(
            id,
            self.time(self.start),
            self.time(self.start + self.length()),
        );
        let freq = if self.period_days == 1 {
            "DAILY"
        } else {
            "WEEKLY"
        };
        event.recurrence = vec![format!("RRULE:FREQ={freq};COUNT={}", self.count)];
        event.summary = Some(TITLE.to_owned());
        event.ical_uid = Some(format!("{}@model", self.id));
        if self.free {
            event.transparency = Transparency::Transparent;
        }
        if self.declined {
            event.self_response = Some(ResponseStatus::Declined);
        }
        event
    }

    fn exception_event(&self, original: DateTime<Utc>) -> SourceEvent {
        let state = self.exceptions[&original];
        let id = EventId::parse(&format!("{}_{}", self.id, self.suffix(original))).unwrap();
        let start = match state {
            Exception::Moved(hours) if !self.all_day => original + TimeDelta::hours(hours),
            Exception::Moved(days) => original + TimeDelta::days(days),
            _ => original,
        };
        let mut event = if state == Exception::Cancelled {
            SourceEvent::tombstone(id)
        } else {
            SourceEvent::new(id, self.time(start), self.time(start + self.length()))
        };
        event.recurring_event_id = Some(EventId::parse(&self.id).unwrap());
        if state != Exception::Cancelled {
            event.summary = Some(TITLE.to_owned());
        }
        event.original_start = Some(self.time(original));
        event.ical_uid = Some(format!("{}@model", self.id));
        match state {
            Exception::Free => event.transparency = Transparency::Transparent,
            Exception::Declined => event.self_response = Some(ResponseStatus::Declined),
            _ => {}
        }
        event
    }

    /// What the source calendar shows as busy.
    fn busy(&self) -> Vec<Span> {
        if self.deleted {
            return Vec::new();
        }
        let mut spans = Vec::new();
        for k in 0..self.count {
            let original = self.original(k);
            match self.exceptions.get(&original) {
                Some(Exception::Moved(n)) => {
                    let shift = if self.all_day {
                        TimeDelta::days(*n)
                    } else {
                        TimeDelta::hours(*n)
                    };
                    spans.push(self.span(original + shift));
                }
                Some(Exception::Busy) => spans.push(self.span(original)),
                Some(_) => {}
                None if !self.free && !self.declined => spans.push(self.span(original)),
                None => {}
            }
        }
        spans
    }
}

/// One edit of the source calendar, as a user (or a client doing "this and following")
/// makes it.
#[derive(Debug, Clone)]
enum Edit {
    MoveOne(i64, i64),
    CancelOne(i64),
    FreeOne(i64),
    DeclineOne(i64),
    BusyOne(i64),
    MoveAll(i64),
    FreeAll,
    BusyAll,
    DeclineAll,
    Delete,
    Split(i64),
    /// A split as a client that only shortens the old series makes it: the old series'
    /// later exceptions stay stored (and unlisted) but are past its end.
    SplitKeepingExceptions(i64),
    /// The whole series moved by a client after which Google kept the old exceptions
    /// stored: they no longer match any occurrence.
    MoveAllKeepingExceptions(i64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0i64..8, 1i64..4).prop_map(|(k, n)| Edit::MoveOne(k, n)),
        (0i64..8).prop_map(Edit::CancelOne),
        (0i64..8).prop_map(Edit::FreeOne),
        (0i64..8).prop_map(Edit::DeclineOne),
        (0i64..8).prop_map(Edit::BusyOne),
        (1i64..5).prop_map(Edit::MoveAll),
        Just(Edit::FreeAll),
        Just(Edit::BusyAll),
        Just(Edit::DeclineAll),
        Just(Edit::Delete),
        (1i64..7).prop_map(Edit::Split),
        (1i64..7).prop_map(Edit::SplitKeepingExceptions),
        (1i64..5).prop_map(Edit::MoveAllKeepingExceptions),
    ]
}

/// The calendar: one or two series (two after a split).
#[derive(Debug, Clone)]
struct Calendar {
    series: Vec<Series>,
}

impl Calendar {
    /// Applies `edit` to the newest live series; returns the events the edit changed (what
    /// an incremental listing shows).
    fn apply(&mut self, edit: &Edit) -> Vec<SourceEvent> {
        let Some(index) = self.series.iter().rposition(|s| !s.deleted) else {
            return Vec::new();
        };
        let next_id = format!("split{}", self.series.len());
        let series = &mut self.series[index];
        let set = |series: &mut Series, k: i64, state: Exception| {
            let original = series.original(k.min(series.count - 1));
            series.exceptions.insert(original, state);
            vec![series.exception_event(original)]
        };
        match *edit {
            Edit::MoveOne(k, n) => set(series, k, Exception::Moved(n)),
            Edit::CancelOne(k) => set(series, k, Exception::Cancelled),
            Edit::FreeOne(k) => set(series, k, Exception::Free),
            Edit::DeclineOne(k) => set(series, k, Exception::Declined),
            Edit::BusyOne(k) => set(series, k, Exception::Busy),
            Edit::MoveAll(hours) => {
                // Google drops the exceptions of a series whose time changes: the client
                // sees them cancelled.
                let mut changed = Vec::new();
                for original in series.exceptions.keys().copied().collect::<Vec<_>>() {
                    series.exceptions.insert(original, Exception::Cancelled);
                    changed.push(series.exception_event(original));
                }
                let shift = if series.all_day {
                    TimeDelta::days(hours)
                } else {
                    TimeDelta::hours(hours)
                };
                series.start += shift;
                changed.push(series.master_event());
                changed
            }
            Edit::MoveAllKeepingExceptions(hours) => {
                let shift = if series.all_day {
                    TimeDelta::days(hours)
                } else {
                    TimeDelta::hours(hours)
                };
                series.start += shift;
                vec![series.master_event()]
            }
            Edit::FreeAll => {
                (series.free, series.declined) = (true, false);
                vec![series.master_event()]
            }
            Edit::BusyAll => {
                (series.free, series.declined) = (false, false);
                vec![series.master_event()]
            }
            Edit::DeclineAll => {
                series.declined = true;
                vec![series.master_event()]
            }
            Edit::Delete => {
                series.deleted = true;
                let mut changed = vec![series.master_event()];
                for original in series.exceptions.keys().copied().collect::<Vec<_>>() {
                    series.exceptions.insert(original, Exception::Cancelled);
                    changed.push(series.exception_event(original));
                }
                changed
            }
            Edit::Split(k) => self.split(index, k, next_id, true),
            Edit::SplitKeepingExceptions(k) => self.split(index, k, next_id, false),
        }
    }

    /// "This and following" from occurrence `k`: the old series ends before it (its later
    /// exceptions are cancelled), a new series starts there.
    fn split(&mut self, index: usize, k: i64, id: String, cancel_later: bool) -> Vec<SourceEvent> {
        let old = &mut self.series[index];
        if k >= old.count {
            return Vec::new();
        }
        let cut = old.original(k);
        let mut changed = Vec::new();
        let later: Vec<DateTime<Utc>> = old.exceptions.range(cut..).map(|(o, _)| *o).collect();
        for original in later.into_iter().filter(|_| cancel_later) {
            old.exceptions.insert(original, Exception::Cancelled);
            changed.push(old.exception_event(original));
        }
        let mut new = old.clone();
        (new.id, new.start, new.count) = (id, cut, old.count - k);
        new.exceptions.clear();
        old.count = k;
        changed.push(old.master_event());
        changed.push(new.master_event());
        self.series.push(new);
        changed
    }

    fn busy(&self) -> Vec<Span> {
        let mut spans: Vec<Span> = self.series.iter().flat_map(Series::busy).collect();
        spans.sort();
        spans
    }
}

// -- the target model -----------------------------------------------------------------------

/// What a target calendar holds, by block id, with the outbox's rules applied.
#[derive(Debug, Default)]
struct Target {
    blocks: HashMap<BlockId, (BlockRole, BlockBody)>,
}

impl Target {
    fn apply(&mut self, planned: &PlannedBlock) {
        match &planned.desired {
            Some(desired) => {
                self.blocks.insert(
                    planned.block_id.clone(),
                    (planned.role.clone(), desired.body.clone()),
                );
            }
            None => {
                if self.blocks.remove(&planned.block_id).is_some()
                    && planned.role == BlockRole::Series
                {
                    // A block series deleted at Google takes its occurrences with it.
                    let series = planned.block_id.clone();
                    self.blocks.retain(|_, (role, _)| {
                        !matches!(role, BlockRole::Occurrence { series: s } if *s == series)
                    });
                }
            }
        }
    }

    fn blocked(&self) -> Vec<Span> {
        let mut spans = Vec::new();
        for (id, (role, body)) in &self.blocks {
            if body.is_cancelled() {
                continue;
            }
            match role {
                BlockRole::Series => spans.extend(self.expand(id, body)),
                BlockRole::Single | BlockRole::Detached => spans.push(span_of(body)),
                BlockRole::Occurrence { .. } => {} // part of its series' expansion
            }
        }
        spans.sort();
        spans
    }

    /// The instances of a block series, each replaced or cancelled by its occurrence row.
    fn expand(&self, id: &BlockId, body: &BlockBody) -> Vec<Span> {
        let rule = body.recurrence[0].as_str();
        let count: i64 = rule.split("COUNT=").nth(1).unwrap().parse().unwrap();
        let period = if rule.contains("DAILY") { 1 } else { 7 };
        let first = span_of(body);
        (0..count)
            .filter_map(|k| {
                let shift = TimeDelta::days(period * k);
                let (instance, suffix) = match first {
                    Span::Days(s, e) => (
                        Span::Days(s + shift, e + shift),
                        (s + shift).format("%Y%m%d").to_string(),
                    ),
                    Span::Instants(s, e) => (
                        Span::Instants(s + shift, e + shift),
                        (s + shift).format("%Y%m%dT%H%M%SZ").to_string(),
                    ),
                };
                let occurrence = BlockId::parse(&format!("{id}_{suffix}")).unwrap();
                match self.blocks.get(&occurrence) {
                    Some((_, o)) if o.is_cancelled() => None,
                    Some((_, o)) => Some(span_of(o)),
                    None => Some(instance),
                }
            })
            .collect()
    }
}

fn span_of(body: &BlockBody) -> Span {
    let read = |t: &BlockTime| match (&t.date, &t.date_time) {
        (Some(date), _) => Err(NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap()),
        (None, Some(dt)) => Ok(DateTime::parse_from_rfc3339(dt)
            .unwrap()
            .with_timezone(&Utc)),
        _ => panic!("a block time without date or dateTime"),
    };
    match (
        read(body.start.as_ref().unwrap()),
        read(body.end.as_ref().unwrap()),
    ) {
        (Err(s), Err(e)) => Span::Days(s, e),
        (Ok(s), Ok(e)) => Span::Instants(s, e),
        _ => panic!("mixed all-day and timed block"),
    }
}

// -- the property ----------------------------------------------------------------------------

fn first_series(all_day: bool, daily: bool, count: i64) -> Series {
    let start = if all_day {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    } else {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
    };
    Series {
        id: "series0".to_owned(),
        all_day,
        start,
        period_days: if daily { 1 } else { 7 },
        count,
        free: false,
        declined: false,
        deleted: false,
        exceptions: BTreeMap::new(),
    }
}

/// Runs the pass over `listed` with `stored` as the store, applies its plan to the targets
/// and the store, as a sync and its writers would.
fn sync(
    cfg: &PlannerConfig,
    listed: &[SourceEvent],
    stored: &mut HashMap<EventId, SourceEvent>,
    targets: &mut HashMap<AccountId, Target>,
) {
    let links = Links::default();
    sync_linked(cfg, &links, listed, false, stored, targets);
}

/// The settings of the property with links and rules: which targets the source blocks,
/// the source's rules, the targets' title templates.
#[derive(Debug, Clone)]
struct Links {
    on: [bool; 2],
    skip_all_day: bool,
    exclude_standups: bool,
    titles: [&'static str; 2],
}

impl Default for Links {
    fn default() -> Self {
        Self {
            on: [true, true],
            skip_all_day: false,
            exclude_standups: false,
            titles: ["{alias} Block", "{alias} Block"],
        }
    }
}

impl Links {
    fn source(&self) -> Account {
        let rules = Rules {
            skip_all_day: self.skip_all_day,
            exclude_title: self
                .exclude_standups
                .then(|| regex::Regex::new("^Standup$").unwrap()),
            ..Rules::default()
        };
        account_with(1, rules)
    }

    /// The linked targets (calendars 2 and 3), each with its own title.
    fn targets(&self) -> Vec<Account> {
        (0..2)
            .filter(|&i| self.on[i])
            .map(|i| {
                let rules = Rules {
                    title_template: self.titles[i].to_owned(),
                    ..Rules::default()
                };
                account_with(i as i64 + 2, rules)
            })
            .collect()
    }

    /// What target `n` must show blocked, given what the source shows busy.
    fn expected(&self, n: usize, all_day: bool, busy: &[Span]) -> Vec<Span> {
        let mirrored = self.on[n - 2] && !self.exclude_standups && !(self.skip_all_day && all_day);
        if mirrored {
            busy.to_vec()
        } else {
            Vec::new()
        }
    }
}

fn sync_linked(
    cfg: &PlannerConfig,
    links: &Links,
    listed: &[SourceEvent],
    replan_all: bool,
    stored: &mut HashMap<EventId, SourceEvent>,
    targets: &mut HashMap<AccountId, Target>,
) {
    let input = PassInput {
        cfg,
        now: now(),
        source: links.source(),
        full: false,
        listed: listed.iter().map(listed_event).collect(),
        known: stored.values().cloned().collect(),
        targets: links.targets(),
        sources_of_me: Vec::new(),
        meetings: Vec::new(),
        rows_on_me: HashMap::new(),
        guard: GuardInput::default(),
        replan_all,
    };
    let plan = sync_pass(&input);
    for id in &plan.forget {
        stored.remove(id);
    }
    for upsert in &plan.upserts {
        let event = listed.iter().find(|e| e.id == upsert.event_id).unwrap();
        stored.insert(event.id.clone(), event.clone());
    }
    for (source, planned) in &plan.blocks {
        assert_eq!(*source, AccountId::new(1));
        assert!(
            links.targets().iter().any(|t| t.id == planned.target),
            "only linked targets are planned onto: {planned:?}"
        );
        targets.entry(planned.target).or_default().apply(planned);
    }
}

/// A change of the settings, as `mcss accounts set` / `links set` or the dashboard makes it.
#[derive(Debug, Clone)]
enum Setting {
    Link(usize, bool),
    SkipAllDay(bool),
    ExcludeStandups(bool),
    Retitle(usize),
}

fn setting() -> impl Strategy<Value = Setting> {
    prop_oneof![
        (0usize..2, prop::bool::ANY).prop_map(|(n, on)| Setting::Link(n, on)),
        prop::bool::ANY.prop_map(Setting::SkipAllDay),
        prop::bool::ANY.prop_map(Setting::ExcludeStandups),
        (0usize..2).prop_map(Setting::Retitle),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Edit(Edit),
    Set(Setting),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => edit().prop_map(Step::Edit),
        1 => setting().prop_map(Step::Set),
    ]
}

/// Applies a settings change as the store and the replan do: a link turned off retracts
/// every block on its target (the store queues their deletion); then the source plans all
/// its stored events again against the new settings.
fn change_setting(
    cfg: &PlannerConfig,
    links: &mut Links,
    change: &Setting,
    stored: &mut HashMap<EventId, SourceEvent>,
    targets: &mut HashMap<AccountId, Target>,
) {
    match *change {
        Setting::Link(n, on) => {
            links.on[n] = on;
            if !on {
                targets.remove(&AccountId::new(n as i64 + 2));
            }
        }
        Setting::SkipAllDay(on) => links.skip_all_day = on,
        Setting::ExcludeStandups(on) => links.exclude_standups = on,
        Setting::Retitle(n) => {
            links.titles[n] = if links.titles[n] == "Busy" {
                "{alias} Block"
            } else {
                "Busy"
            }
        }
    }
    sync_linked(cfg, links, &[], true, stored, targets);
}

/// Every live block on a linked target has the title its template asks for.
fn titles_follow(links: &Links, targets: &HashMap<AccountId, Target>) -> Result<(), String> {
    for (i, template) in links.titles.iter().enumerate() {
        let Some(target) = targets.get(&AccountId::new(i as i64 + 2)) else {
            continue;
        };
        let want = template.replace("{alias}", "Calendar 01");
        for (id, (_, body)) in &target.blocks {
            if !body.is_cancelled() && body.summary.as_deref() != Some(want.as_str()) {
                return Err(format!(
                    "{id} on target {} is {:?}, not {want:?}",
                    i + 2,
                    body.summary
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn blocked_instants_equal_busy_instants_after_every_series_edit(
        all_day in prop::bool::ANY,
        daily in prop::bool::ANY,
        count in 3i64..9,
        edits in prop::collection::vec(edit(), 1..12),
    ) {
        let cfg = PlannerConfig::new(INSTALLATION);
        let mut calendar = Calendar { series: vec![first_series(all_day, daily, count)] };
        let mut stored = HashMap::new();
        let mut targets: HashMap<AccountId, Target> = HashMap::new();
        let created = vec![calendar.series[0].master_event()];
        sync(&cfg, &created, &mut stored, &mut targets);

        for (step, edit) in edits.iter().enumerate() {
            let listed = calendar.apply(edit);
            sync(&cfg, &listed, &mut stored, &mut targets);
            let busy = calendar.busy();
            for n in [2, 3] {
                let blocked = targets.entry(AccountId::new(n)).or_default().blocked();
                prop_assert_eq!(
                    &blocked, &busy,
                    "after step {} ({:?}) of {:?}, target {}", step, edit, edits, n
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn blocked_instants_follow_links_and_rules_through_series_edits(
        all_day in prop::bool::ANY,
        daily in prop::bool::ANY,
        count in 3i64..9,
        steps in prop::collection::vec(step(), 1..14),
    ) {
        let cfg = PlannerConfig::new(INSTALLATION);
        let mut links = Links::default();
        let mut calendar = Calendar { series: vec![first_series(all_day, daily, count)] };
        let mut stored = HashMap::new();
        let mut targets: HashMap<AccountId, Target> = HashMap::new();
        let created = vec![calendar.series[0].master_event()];
        sync_linked(&cfg, &links, &created, false, &mut stored, &mut targets);

        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Edit(edit) => {
                    let listed = calendar.apply(edit);
                    sync_linked(&cfg, &links, &listed, false, &mut stored, &mut targets);
                }
                Step::Set(change) => {
                    change_setting(&cfg, &mut links, change, &mut stored, &mut targets);
                }
            }
            let busy = calendar.busy();
            for n in [2, 3] {
                let blocked = targets.entry(AccountId::new(n as i64)).or_default().blocked();
                prop_assert_eq!(
                    &blocked, &links.expected(n, all_day, &busy),
                    "after step {} ({:?}) of {:?}, target {}, {:?}", i, step, steps, n, links
                );
            }
            if let Err(wrong) = titles_follow(&links, &targets) {
                prop_assert!(false, "after step {} ({:?}) of {:?}: {}", i, step, steps, wrong);
            }
        }
    }
}
