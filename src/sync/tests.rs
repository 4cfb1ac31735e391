//! Table tests: one row per rule of docs/sync-rules.md, then the shape of a block.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone as _, Utc};
use regex::Regex;
use serde_json::json;

use crate::config::{BlockDetails, SyncSettings};
use crate::domain::{AccountId, CalendarId, EventId};

use super::*;

const INSTALLATION: &str = "inst-1";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn cfg() -> PlannerConfig {
    PlannerConfig::new(INSTALLATION)
}

fn account(n: i64) -> Account {
    Account {
        id: AccountId::new(n),
        alias: format!("Calendar {n:02}"),
        calendar_id: CalendarId::parse(&format!("cal{n}@example.com")).unwrap(),
        time_zone: Some("Europe/Berlin".to_owned()),
        rules: Rules::default(),
    }
}

fn id(raw: &str) -> EventId {
    EventId::parse(raw).unwrap()
}

fn timed(date_time: &str, zone: Option<&str>) -> EventTime {
    EventTime::parse_timed(date_time, zone).unwrap()
}

fn date(raw: &str) -> EventTime {
    EventTime::parse_date(raw).unwrap()
}

/// A one-hour meeting in New York, four days after `now`.
fn meeting() -> SourceEvent {
    let mut event = SourceEvent::new(
        id("meeting1"),
        timed("2026-03-05T10:00:00-05:00", Some("America/New_York")),
        timed("2026-03-05T11:00:00-05:00", Some("America/New_York")),
    );
    event.summary = Some("Design review".to_owned());
    event.location = Some("Room 4".to_owned());
    event.ical_uid = Some("meeting1@google.com".to_owned());
    event.html_link = Some("https://www.google.com/calendar/event?eid=abc".to_owned());
    event
}

fn weekly_series() -> SourceEvent {
    let mut event = SourceEvent::new(
        id("series1"),
        timed("2025-01-06T09:00:00+01:00", Some("Europe/Berlin")),
        timed("2025-01-06T09:30:00+01:00", Some("Europe/Berlin")),
    );
    event.summary = Some("Standup".to_owned());
    event.recurrence = vec!["RRULE:FREQ=WEEKLY;BYDAY=MO".to_owned()];
    event.ical_uid = Some("series1@google.com".to_owned());
    event
}

/// The 2026-03-09 occurrence of [`weekly_series`], moved by an hour.
fn moved_occurrence() -> SourceEvent {
    let mut event = SourceEvent::new(
        id("series1_20260309T080000Z"),
        timed("2026-03-09T10:00:00+01:00", Some("Europe/Berlin")),
        timed("2026-03-09T10:30:00+01:00", Some("Europe/Berlin")),
    );
    event.summary = Some("Standup".to_owned());
    event.recurring_event_id = Some(id("series1"));
    event.original_start = Some(timed("2026-03-09T09:00:00+01:00", Some("Europe/Berlin")));
    event.ical_uid = Some("series1@google.com".to_owned());
    event
}

fn decide_with(cfg: &PlannerConfig, event: &SourceEvent, holdings: &TargetHoldings) -> Decision {
    mirror_decision(cfg, &account(1), event, &account(2), holdings, now())
}

fn decide(cfg: &PlannerConfig, event: &SourceEvent) -> Decision {
    decide_with(cfg, event, &TargetHoldings::new())
}

fn plan(cfg: &PlannerConfig, event: &SourceEvent) -> Option<DesiredBlock> {
    plan_event(
        cfg,
        &account(1),
        event,
        &account(2),
        &TargetHoldings::new(),
        now(),
    )
}

/// The rows the pass plans onto Calendar 02 for `listed` of Calendar 01.
fn plan_onto_2(listed: &[SourceEvent]) -> Vec<PlannedBlock> {
    testing::plan_listed(
        &cfg(),
        &account(1),
        listed,
        &[account(1), account(2)],
        &[],
        now(),
    )
}

/// The one row of the pass's plan for `listed` whose role matches.
fn row_of(listed: &[SourceEvent], role: fn(&BlockRole) -> bool) -> PlannedBlock {
    let planned = plan_onto_2(listed);
    let rows = testing::row_ending(&planned, AccountId::new(2), role);
    assert_eq!(rows.len(), 1, "one row of that role in {planned:#?}");
    rows[0].clone()
}

fn is_occurrence(role: &BlockRole) -> bool {
    matches!(role, BlockRole::Occurrence { .. })
}

fn is_detached(role: &BlockRole) -> bool {
    matches!(role, BlockRole::Detached)
}

fn with(f: impl FnOnce(&mut SourceEvent)) -> SourceEvent {
    let mut event = meeting();
    f(&mut event);
    event
}

fn cfg_with(f: impl FnOnce(&mut PlannerConfig)) -> PlannerConfig {
    let mut cfg = cfg();
    f(&mut cfg);
    cfg
}

/// One row of a decision table: what it shows, the planner's settings, the event, the
/// decision (each rule is one of docs/sync-rules.md's "Which events get a block").
type DecisionRow = (&'static str, PlannerConfig, SourceEvent, Decision);

fn check_decisions(rows: Vec<DecisionRow>) {
    for (name, cfg, event, expected) in rows {
        assert_eq!(decide(&cfg, &event), expected, "{name}");
    }
}

#[test]
fn a_meeting_is_mirrored_by_its_status_and_answer() {
    use Decision::{Mirror, Skip};
    check_decisions(vec![
        (
            "a confirmed busy meeting is mirrored",
            cfg(),
            meeting(),
            Mirror,
        ),
        (
            "a tentative meeting is mirrored",
            cfg(),
            with(|e| e.status = EventStatus::Tentative),
            Mirror,
        ),
        (
            "a cancelled meeting is not",
            cfg(),
            with(|e| e.status = EventStatus::Cancelled),
            Skip(SkipReason::Cancelled),
        ),
        (
            "a declined invitation is not",
            cfg(),
            with(|e| e.self_response = Some(ResponseStatus::Declined)),
            Skip(SkipReason::Declined),
        ),
        (
            "an accepted invitation is",
            cfg(),
            with(|e| e.self_response = Some(ResponseStatus::Accepted)),
            Mirror,
        ),
        (
            "an unanswered invitation is",
            cfg(),
            with(|e| e.self_response = Some(ResponseStatus::NeedsAction)),
            Mirror,
        ),
        (
            "a maybe is",
            cfg(),
            with(|e| e.self_response = Some(ResponseStatus::Tentative)),
            Mirror,
        ),
        (
            "a free event is not",
            cfg(),
            with(|e| e.transparency = Transparency::Transparent),
            Skip(SkipReason::Transparent),
        ),
    ]);
}

#[test]
fn event_kinds_are_mirrored_or_skipped_by_the_source_rules() {
    use Decision::{Mirror, Skip};
    check_decisions(vec![
        (
            "a working location is not",
            cfg(),
            with(|e| e.event_type = EventType::WorkingLocation),
            Skip(SkipReason::WorkingLocation),
        ),
        (
            "a birthday is not",
            cfg(),
            with(|e| e.event_type = EventType::Birthday),
            Skip(SkipReason::Birthday),
        ),
        (
            "out of office is mirrored by default",
            cfg(),
            with(|e| e.event_type = EventType::OutOfOffice),
            Mirror,
        ),
        (
            "out of office is skipped when configured",
            cfg_with(|c| c.skip_out_of_office = true),
            with(|e| e.event_type = EventType::OutOfOffice),
            Skip(SkipReason::OutOfOffice),
        ),
        (
            "focus time is mirrored by default",
            cfg(),
            with(|e| e.event_type = EventType::FocusTime),
            Mirror,
        ),
        (
            "focus time is skipped when configured",
            cfg_with(|c| c.skip_focus_time = true),
            with(|e| e.event_type = EventType::FocusTime),
            Skip(SkipReason::FocusTime),
        ),
        (
            "an event from Gmail is mirrored",
            cfg(),
            with(|e| e.event_type = EventType::FromGmail),
            Mirror,
        ),
        (
            "an unknown event type is mirrored",
            cfg(),
            with(|e| e.event_type = EventType::Other("newKind".into())),
            Mirror,
        ),
    ]);
}

#[test]
fn all_day_and_title_rules_of_the_source_decide() {
    use Decision::{Mirror, Skip};
    check_decisions(vec![
        (
            "an all-day event is mirrored by default",
            cfg(),
            with(|e| {
                e.start = Some(date("2026-03-05"));
                e.end = Some(date("2026-03-06"));
            }),
            Mirror,
        ),
        (
            "an all-day event is skipped when configured",
            cfg_with(|c| c.skip_all_day = true),
            with(|e| {
                e.start = Some(date("2026-03-05"));
                e.end = Some(date("2026-03-06"));
            }),
            Skip(SkipReason::AllDay),
        ),
        (
            "a title matching the exclusion is skipped",
            cfg_with(|c| c.exclude_title = Some(Regex::new("(?i)review").unwrap())),
            meeting(),
            Skip(SkipReason::TitleExcluded),
        ),
        (
            "a title not matching the exclusion is mirrored",
            cfg_with(|c| c.exclude_title = Some(Regex::new("^Lunch").unwrap())),
            meeting(),
            Mirror,
        ),
    ]);
}

#[test]
fn an_event_is_mirrored_until_it_ends_or_its_look_back_passes() {
    use Decision::{Mirror, Skip};
    let look_back_two_days = cfg_with(|c| c.look_back = TimeDelta::days(2));
    check_decisions(vec![
        (
            "an event that ended exactly now is not",
            cfg(),
            with(|e| {
                e.start = Some(EventTime::from_instant(now() - TimeDelta::hours(1), None));
                e.end = Some(EventTime::from_instant(now(), None));
            }),
            Skip(SkipReason::Ended),
        ),
        (
            "an event still running is",
            cfg(),
            with(|e| {
                e.start = Some(EventTime::from_instant(now() - TimeDelta::hours(1), None));
                e.end = Some(EventTime::from_instant(now() + TimeDelta::seconds(1), None));
            }),
            Mirror,
        ),
        (
            "an event that ended yesterday is within a two-day look-back",
            look_back_two_days.clone(),
            with(|e| {
                e.start = Some(EventTime::from_instant(now() - TimeDelta::hours(25), None));
                e.end = Some(EventTime::from_instant(now() - TimeDelta::hours(24), None));
            }),
            Mirror,
        ),
        (
            "an event that ended three days ago is outside it",
            look_back_two_days,
            with(|e| {
                e.start = Some(EventTime::from_instant(now() - TimeDelta::hours(73), None));
                e.end = Some(EventTime::from_instant(now() - TimeDelta::hours(72), None));
            }),
            Skip(SkipReason::Ended),
        ),
        (
            "an all-day event of today is still running",
            cfg(),
            with(|e| {
                e.start = Some(date("2026-03-01"));
                e.end = Some(date("2026-03-02"));
            }),
            Mirror,
        ),
        (
            "an all-day event of yesterday has ended",
            cfg(),
            with(|e| {
                e.start = Some(date("2026-02-28"));
                e.end = Some(date("2026-03-01"));
            }),
            Skip(SkipReason::Ended),
        ),
    ]);
}

#[test]
fn blocks_and_malformed_events_are_never_mirrored() {
    use Decision::Skip;
    let our_marker = Marker::new(INSTALLATION, AccountId::new(9), &id("x"));
    let foreign_marker = Marker::new("someone-else", AccountId::new(9), &id("x"));
    let block_tombstone = block_id(
        INSTALLATION,
        &account(3).calendar_id,
        &id("e"),
        &account(1).calendar_id,
    );
    check_decisions(vec![
        (
            "our own block is never mirrored",
            cfg(),
            with(|e| e.marker = Some(our_marker.clone())),
            Skip(SkipReason::IsBlock),
        ),
        (
            "another installation's block is never mirrored",
            cfg(),
            with(|e| e.marker = Some(foreign_marker.clone())),
            Skip(SkipReason::IsBlock),
        ),
        (
            "a tombstone of our block is recognised by its id",
            cfg(),
            SourceEvent::tombstone(id(block_tombstone.as_str())),
            Skip(SkipReason::IsBlock),
        ),
        (
            "an event without times cannot be mirrored",
            cfg(),
            with(|e| e.start = None),
            Skip(SkipReason::Malformed),
        ),
        (
            "an event mixing all-day and timed cannot be mirrored",
            cfg(),
            with(|e| e.end = Some(date("2026-03-06"))),
            Skip(SkipReason::Malformed),
        ),
        (
            "an event ending before it starts cannot be mirrored",
            cfg(),
            with(|e| std::mem::swap(&mut e.start, &mut e.end)),
            Skip(SkipReason::Malformed),
        ),
    ]);
}

#[test]
fn a_series_is_judged_by_its_last_occurrence_not_its_first() {
    use Decision::{Mirror, Skip};
    let series = |rule: &str| {
        let mut event = weekly_series();
        event.recurrence = vec![
            rule.to_owned(),
            "EXDATE;TZID=Europe/Berlin:20250113T090000".to_owned(),
        ];
        event
    };
    let rows = [
        ("RRULE:FREQ=WEEKLY;BYDAY=MO", Mirror),
        (
            "RRULE:FREQ=WEEKLY;UNTIL=20250301T000000Z",
            Skip(SkipReason::Ended),
        ),
        ("RRULE:FREQ=WEEKLY;UNTIL=20270301T000000Z", Mirror),
        ("RRULE:FREQ=WEEKLY;UNTIL=20250301", Skip(SkipReason::Ended)),
        ("RRULE:FREQ=DAILY;COUNT=3", Skip(SkipReason::Ended)),
        (
            "RRULE:FREQ=WEEKLY;COUNT=10;BYDAY=MO,WE",
            Skip(SkipReason::Ended),
        ),
        ("RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=40", Mirror),
        ("RRULE:FREQ=MONTHLY;COUNT=3;BYMONTHDAY=31", Mirror),
    ];
    for (rule, expected) in rows {
        assert_eq!(decide(&cfg(), &series(rule)), expected, "{rule}");
    }
    let mut with_rdate = series("RRULE:FREQ=DAILY;COUNT=3");
    with_rdate
        .recurrence
        .push("RDATE;VALUE=DATE:20270101".to_owned());
    assert_eq!(
        decide(&cfg(), &with_rdate),
        Mirror,
        "an RDATE may add later dates"
    );
}

#[test]
fn a_meeting_the_target_already_holds_gets_no_block_there() {
    let target_copy = meeting();
    let holdings = TargetHoldings::from_events([&target_copy]);
    assert_eq!(
        decide_with(&cfg(), &meeting(), &holdings),
        Decision::Skip(SkipReason::SameMeetingOnTarget)
    );
    let planned = plan_event(
        &cfg(),
        &account(1),
        &meeting(),
        &account(2),
        &holdings,
        now(),
    );
    assert_eq!(planned, None);
}

#[test]
fn only_a_live_accepted_opaque_non_block_copy_counts_as_held() {
    let not_holding: Vec<(&str, SourceEvent)> = vec![
        (
            "declined",
            with(|e| e.self_response = Some(ResponseStatus::Declined)),
        ),
        (
            "unanswered",
            with(|e| e.self_response = Some(ResponseStatus::NeedsAction)),
        ),
        (
            "maybe",
            with(|e| e.self_response = Some(ResponseStatus::Tentative)),
        ),
        ("free", with(|e| e.transparency = Transparency::Transparent)),
        ("cancelled", with(|e| e.status = EventStatus::Cancelled)),
        (
            "a block",
            with(|e| e.marker = Some(Marker::new("x", AccountId::new(1), &id("y")))),
        ),
        (
            "another meeting",
            with(|e| e.ical_uid = Some("other@google.com".to_owned())),
        ),
    ];
    for (name, copy) in not_holding {
        let holdings = TargetHoldings::from_events([&copy]);
        assert_eq!(
            decide_with(&cfg(), &meeting(), &holdings),
            Decision::Mirror,
            "{name}"
        );
    }
    let accepted = with(|e| e.self_response = Some(ResponseStatus::Accepted));
    assert!(!TargetHoldings::from_events([&accepted]).is_empty());
}

#[test]
fn an_occurrence_is_held_by_the_same_occurrence_or_the_whole_series() {
    let occurrence = moved_occurrence();
    let same = TargetHoldings::from_events([&moved_occurrence()]);
    assert_eq!(
        decide_with(&cfg(), &occurrence, &same),
        Decision::Skip(SkipReason::SameMeetingOnTarget)
    );
    let series = TargetHoldings::from_events([&weekly_series()]);
    assert_eq!(
        decide_with(&cfg(), &occurrence, &series),
        Decision::Skip(SkipReason::SameMeetingOnTarget)
    );
    let mut other_week = moved_occurrence();
    other_week.original_start = Some(timed("2026-03-16T09:00:00+01:00", Some("Europe/Berlin")));
    let other = TargetHoldings::from_events([&other_week]);
    assert_eq!(decide_with(&cfg(), &occurrence, &other), Decision::Mirror);
    assert_eq!(
        decide_with(&cfg(), &weekly_series(), &other),
        Decision::Mirror,
        "one occurrence does not hold the series"
    );
}

#[test]
fn nothing_is_mirrored_onto_its_own_calendar() {
    let own = account(1);
    let planned = plan_event(
        &cfg(),
        &own,
        &meeting(),
        &own,
        &TargetHoldings::new(),
        now(),
    );
    assert_eq!(planned, None);
    let same_calendar_twice = Account {
        id: AccountId::new(5),
        ..account(1)
    };
    assert_eq!(
        mirror_decision(
            &cfg(),
            &own,
            &meeting(),
            &same_calendar_twice,
            &TargetHoldings::new(),
            now()
        ),
        Decision::Skip(SkipReason::OwnCalendar)
    );
}

#[test]
fn a_block_has_exactly_the_shape_google_should_hold() {
    let block = plan(&cfg(), &meeting()).expect("a meeting is mirrored");
    assert_eq!(block.target, AccountId::new(2));
    assert_eq!(
        block.block_id,
        block_id(
            INSTALLATION,
            &account(1).calendar_id,
            &id("meeting1"),
            &account(2).calendar_id
        )
    );
    assert_eq!(
        block.body.to_json(),
        json!({
            "status": "confirmed",
            "summary": "Calendar 01 Block",
            "description": "Design review\nWhen: Thu 2026-03-05 10:00–11:00 (America/New_York)\nWhere: Room 4\nCalendar: Calendar 01\nOpen: https://www.google.com/calendar/event?eid=abc",
            "start": {"dateTime": "2026-03-05T10:00:00-05:00", "timeZone": "America/New_York"},
            "end": {"dateTime": "2026-03-05T11:00:00-05:00", "timeZone": "America/New_York"},
            "visibility": "private",
            "transparency": "opaque",
            "reminders": {"useDefault": false},
            "extendedProperties": {"private": {
                "mcssInstallation": "inst-1",
                "mcssSourceAccount": "1",
                "mcssSourceEvent": "meeting1"
            }}
        })
    );
    assert_eq!(block.hash, block.body.hash());
    assert_eq!(block.hash.len(), 64);
}

#[test]
fn a_block_never_carries_attendees_location_or_conference_data() {
    let json = plan(&cfg(), &meeting()).unwrap().body.to_json();
    for field in [
        "attendees",
        "location",
        "conferenceData",
        "hangoutLink",
        "id",
    ] {
        assert!(json.get(field).is_none(), "{field}");
    }
}

#[test]
fn busy_only_blocks_hide_every_detail_and_a_patch_clears_an_old_description() {
    let cfg = cfg_with(|c| c.details = BlockDetails::BusyOnly);
    let block = plan(&cfg, &meeting()).unwrap();
    assert_eq!(block.body.description, None);
    let text = block.body.to_json().to_string();
    assert!(
        !text.contains("Design review") && !text.contains("Room 4"),
        "{text}"
    );
    let patch = block.body.to_patch_json();
    assert_eq!(patch["description"], serde_json::Value::Null);
    assert!(patch.as_object().unwrap().contains_key("description"));
}

#[test]
fn the_title_template_names_the_source_alias() {
    let cfg = cfg_with(|c| c.title_template = "Busy ({alias})".to_owned());
    assert_eq!(
        plan(&cfg, &meeting()).unwrap().body.summary.as_deref(),
        Some("Busy (Calendar 01)")
    );
}

#[test]
fn an_all_day_event_becomes_an_all_day_block() {
    let event = with(|e| {
        e.start = Some(date("2026-03-05"));
        e.end = Some(date("2026-03-08"));
    });
    let json = plan(&cfg(), &event).unwrap().body.to_json();
    assert_eq!(json["start"], json!({"date": "2026-03-05"}));
    assert_eq!(json["end"], json!({"date": "2026-03-08"}));
    assert!(json["description"]
        .as_str()
        .unwrap()
        .contains("Thu 2026-03-05 – Sat 2026-03-07 (all day)"));
}

#[test]
fn a_timed_event_without_a_zone_keeps_its_offset_and_gets_no_zone() {
    let event = with(|e| {
        e.start = Some(timed("2026-03-05T10:00:00+05:30", None));
        e.end = Some(timed("2026-03-05T11:00:00+05:30", None));
    });
    let body = plan(&cfg(), &event).unwrap().body;
    assert_eq!(
        body.start.unwrap(),
        BlockTime {
            date: None,
            date_time: Some("2026-03-05T10:00:00+05:30".into()),
            time_zone: None
        }
    );
    assert!(body.description.unwrap().contains("(UTC+05:30)"));
}

#[test]
fn a_series_becomes_one_block_series_with_the_same_rules_and_zone() {
    let block = plan(&cfg(), &weekly_series()).expect("a live series is mirrored");
    let json = block.body.to_json();
    assert_eq!(json["recurrence"], json!(["RRULE:FREQ=WEEKLY;BYDAY=MO"]));
    assert_eq!(
        json["start"],
        json!({"dateTime": "2025-01-06T09:00:00+01:00", "timeZone": "Europe/Berlin"})
    );
    assert!(json.get("recurringEventId").is_none());
    assert!(!block.block_id.as_str().contains('_'));
}

#[test]
fn a_series_without_a_zone_takes_the_source_calendars_zone() {
    let mut series = weekly_series();
    series.start = Some(timed("2025-01-06T09:00:00+01:00", None));
    series.end = Some(timed("2025-01-06T09:30:00+01:00", None));
    let body = plan(&cfg(), &series).unwrap().body;
    assert_eq!(
        body.start.unwrap().time_zone.as_deref(),
        Some("Europe/Berlin")
    );
}

#[test]
fn a_moved_occurrence_patches_the_matching_occurrence_of_the_block_series() {
    let series_block = plan(&cfg(), &weekly_series()).unwrap();
    let row = row_of(&[weekly_series(), moved_occurrence()], is_occurrence);
    let block = row.desired.expect("a moved occurrence is mirrored");
    assert_eq!(
        block.block_id.as_str(),
        format!("{}_20260309T080000Z", series_block.block_id)
    );
    assert_eq!(
        row.role,
        BlockRole::Occurrence {
            series: series_block.block_id.clone()
        }
    );
    let json = block.body.to_json();
    assert_eq!(json["start"]["dateTime"], "2026-03-09T10:00:00+01:00");
    assert_eq!(json["recurringEventId"], series_block.block_id.as_str());
    assert_eq!(
        json["originalStartTime"],
        json!({"dateTime": "2026-03-09T09:00:00+01:00", "timeZone": "Europe/Berlin"})
    );
    assert!(json.get("recurrence").is_none());
    assert_eq!(json["status"], "confirmed");
    assert_eq!(json["visibility"], "private");
}

fn cancelled_occurrence() -> SourceEvent {
    let mut cancelled = SourceEvent::tombstone(id("series1_20260309T080000Z"));
    cancelled.recurring_event_id = Some(id("series1"));
    cancelled.original_start = Some(timed("2026-03-09T09:00:00+01:00", Some("Europe/Berlin")));
    cancelled
}

#[test]
fn a_cancelled_occurrence_cancels_the_matching_occurrence_of_the_block_series() {
    let series_block = plan(&cfg(), &weekly_series()).unwrap();
    let block = row_of(&[weekly_series(), cancelled_occurrence()], is_occurrence)
        .desired
        .expect("a cancelled occurrence is a cancelled block occurrence");
    assert_eq!(
        block.block_id.as_str(),
        format!("{}_20260309T080000Z", series_block.block_id)
    );
    assert_eq!(
        block.body.to_json(),
        json!({
            "status": "cancelled",
            "recurringEventId": series_block.block_id.as_str(),
            "originalStartTime": {"dateTime": "2026-03-09T09:00:00+01:00", "timeZone": "Europe/Berlin"}
        })
    );
    assert!(block.body.is_cancelled());
}

#[test]
fn a_cancelled_occurrence_long_past_needs_no_write() {
    let mut cancelled = SourceEvent::tombstone(id("series1_20250113T080000Z"));
    cancelled.recurring_event_id = Some(id("series1"));
    cancelled.original_start = Some(timed("2025-01-13T09:00:00+01:00", Some("Europe/Berlin")));
    let planned = plan_onto_2(&[weekly_series(), cancelled]);
    assert!(testing::row_ending(&planned, AccountId::new(2), is_occurrence).is_empty());
    assert!(testing::row_ending(&planned, AccountId::new(2), is_detached).is_empty());
}

#[test]
fn a_cancelled_all_day_occurrence_uses_the_date_suffix() {
    let mut yearly = SourceEvent::new(id("yearly"), date("2026-03-10"), date("2026-03-11"));
    yearly.recurrence = vec!["RRULE:FREQ=YEARLY".to_owned()];
    let mut cancelled = SourceEvent::tombstone(id("yearly_20260310"));
    cancelled.recurring_event_id = Some(id("yearly"));
    cancelled.original_start = Some(date("2026-03-10"));
    let block = row_of(&[yearly, cancelled], is_occurrence).desired.unwrap();
    assert!(block.block_id.as_str().ends_with("_20260310"));
    assert_eq!(
        block.body.original_start_time.unwrap().date.as_deref(),
        Some("2026-03-10")
    );
}

#[test]
fn a_deleted_event_or_series_must_have_no_block() {
    assert_eq!(plan(&cfg(), &SourceEvent::tombstone(id("meeting1"))), None);
    let mut deleted_series = weekly_series();
    deleted_series.status = EventStatus::Cancelled;
    assert_eq!(plan(&cfg(), &deleted_series), None);
}

#[test]
fn replanning_an_unchanged_event_gives_the_same_hash_and_a_change_moves_it() {
    let first = plan(&cfg(), &meeting()).unwrap();
    assert_eq!(plan(&cfg(), &meeting()).unwrap(), first);
    let renamed = with(|e| e.summary = Some("Design review (moved)".to_owned()));
    assert_ne!(plan(&cfg(), &renamed).unwrap().hash, first.hash);
    let later =
        with(|e| e.end = Some(timed("2026-03-05T11:30:00-05:00", Some("America/New_York"))));
    assert_ne!(plan(&cfg(), &later).unwrap().hash, first.hash);
    assert_eq!(
        plan(&cfg(), &later).unwrap().block_id,
        first.block_id,
        "a change patches in place"
    );
}

#[test]
fn the_pass_covers_every_other_target_and_says_which_blocks_must_go() {
    let targets = [account(1), account(2), account(3)];
    let declined = {
        let mut e = meeting();
        e.id = id("declined1");
        e.ical_uid = Some("declined1@google.com".to_owned());
        e.self_response = Some(ResponseStatus::Declined);
        e
    };
    let our_block = with(|e| {
        e.id = id("blockonsource");
        e.marker = Some(Marker::new(INSTALLATION, AccountId::new(2), &id("z")));
    });
    let held = [(AccountId::new(3), meeting())];
    let planned = testing::plan_listed(
        &cfg(),
        &account(1),
        &[meeting(), declined, our_block],
        &targets,
        &held,
        now(),
    );

    let mut summary: Vec<(i64, &str, bool)> = planned
        .iter()
        .map(|p| {
            (
                p.target.get(),
                p.source_event_id.as_str(),
                p.desired.is_some(),
            )
        })
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        vec![
            (2, "declined1", false),
            (2, "meeting1", true),
            (3, "declined1", false),
            (3, "meeting1", false),
        ]
    );
    let decision = |target: i64, event: &str| {
        planned
            .iter()
            .find(|p| p.target.get() == target && p.source_event_id.as_str() == event)
            .unwrap()
            .decision
    };
    assert_eq!(
        decision(3, "meeting1"),
        Decision::Skip(SkipReason::SameMeetingOnTarget)
    );
    assert_eq!(
        decision(2, "declined1"),
        Decision::Skip(SkipReason::Declined)
    );
    let declined_on_3 = planned
        .iter()
        .find(|p| p.target.get() == 3 && p.source_event_id.as_str() == "declined1")
        .unwrap();
    assert_eq!(
        declined_on_3.block_id,
        block_id(
            INSTALLATION,
            &account(1).calendar_id,
            &id("declined1"),
            &account(3).calendar_id
        )
    );
}

#[test]
fn is_ours_tells_our_blocks_from_foreign_ones() {
    let ours = with(|e| e.marker = Some(Marker::new(INSTALLATION, AccountId::new(2), &id("z"))));
    let foreign = with(|e| e.marker = Some(Marker::new("other", AccountId::new(2), &id("z"))));
    assert!(is_ours(&ours, INSTALLATION));
    assert!(!is_ours(&foreign, INSTALLATION));
    assert!(is_block(&foreign, INSTALLATION));
    assert!(!is_ours(&meeting(), INSTALLATION));
    let block = plan(&cfg(), &meeting()).unwrap();
    let instance = format!("{}_20260309T080000Z", block.block_id);
    let mut tombstone = SourceEvent::tombstone(id(&instance));
    tombstone.recurring_event_id = Some(id(block.block_id.as_str()));
    assert!(is_ours(&tombstone, INSTALLATION));
    assert_eq!(block.body.marker().unwrap().installation, INSTALLATION);
}

#[test]
fn the_planner_config_follows_the_sync_settings() {
    let settings = SyncSettings {
        block_title_template: "Held: {alias}".to_owned(),
        block_details: BlockDetails::BusyOnly,
        skip_all_day: true,
        skip_out_of_office: true,
        skip_focus_time: false,
        exclude_title_regex: Some(Regex::new("^x").unwrap()),
        look_back: Duration::from_secs(2 * 86_400),
        poll_interval: Duration::from_secs(300),
        reconcile_interval: Duration::from_secs(3600),
        token_flush_interval: Duration::from_secs(1),
        writes_per_second: 5.0,
        mass_delete_threshold: 25,
        channel_renew_before: Duration::from_secs(86_400),
        channel_ttl: Duration::from_secs(7 * 86_400),
    };
    let cfg = PlannerConfig::from_settings(&settings, "prod");
    assert_eq!(cfg.installation, "prod");
    assert_eq!(cfg.title_template, "Held: {alias}");
    assert_eq!(cfg.details, BlockDetails::BusyOnly);
    assert!(cfg.skip_all_day && cfg.skip_out_of_office && !cfg.skip_focus_time);
    assert_eq!(cfg.look_back, TimeDelta::days(2));
    assert!(cfg.exclude_title.unwrap().is_match("xyz"));
}

#[test]
fn event_times_read_googles_forms() {
    let with_offset = timed("2026-03-05T10:00:00-05:00", None);
    assert_eq!(
        with_offset.start_key(),
        StartKey::Instant(Utc.with_ymd_and_hms(2026, 3, 5, 15, 0, 0).unwrap())
    );
    let floating = timed("2026-03-05T10:00:00", Some("America/New_York"));
    assert_eq!(floating.start_key(), with_offset.start_key());
    assert!(EventTime::parse_timed("2026-03-05T10:00:00", None).is_err());
    assert!(EventTime::parse_date("2026-3-5x").is_err());
    assert_eq!(
        date("2026-03-05").start_key(),
        StartKey::Date(NaiveDate::from_ymd_opt(2026, 3, 5).unwrap())
    );
    let rendered = EventTime::from_instant(
        Utc.with_ymd_and_hms(2026, 7, 1, 8, 0, 0).unwrap(),
        Some("Europe/Berlin"),
    );
    assert!(
        matches!(rendered, EventTime::Timed { ref date_time, .. } if date_time == "2026-07-01T10:00:00+02:00")
    );
}

#[test]
fn wire_values_are_read_leniently() {
    assert_eq!(EventStatus::from_wire(None), EventStatus::Confirmed);
    assert_eq!(Transparency::from_wire(None), Transparency::Opaque);
    assert_eq!(EventType::from_wire(Some("birthday")), EventType::Birthday);
    assert_eq!(
        EventType::from_wire(Some("brandNew")),
        EventType::Other("brandNew".into())
    );
    assert_eq!(
        ResponseStatus::from_wire("declined"),
        Some(ResponseStatus::Declined)
    );
    assert_eq!(Visibility::from_wire(Some("private")), Visibility::Private);
}
