//! Property tests: what must hold for every event, not just the ones in the tables.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone as _, Utc};
use proptest::prelude::*;

use crate::config::BlockDetails;
use crate::domain::{AccountId, CalendarId, EventId};

use super::*;

const INSTALLATION: &str = "inst-prop";
const ZONES: [&str; 5] = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Pacific/Auckland",
    "UTC",
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
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

fn event_id() -> impl Strategy<Value = EventId> {
    "[a-v0-9]{5,30}".prop_map(|raw| EventId::parse(&raw).unwrap())
}

fn calendar_id() -> impl Strategy<Value = CalendarId> {
    "[a-z0-9.]{1,20}@[a-z]{1,10}\\.com".prop_map(|raw| CalendarId::parse(&raw).unwrap())
}

/// Start and end of a future event: all-day (1–5 days) or timed (up to a day) in a zone
/// (or with only an offset).
fn times() -> impl Strategy<Value = (EventTime, EventTime)> {
    let all_day = (1i64..2000, 1i64..6).prop_map(|(offset, days)| {
        let first = NaiveDate::from_ymd_opt(2026, 3, 3).unwrap() + TimeDelta::days(offset);
        (
            EventTime::all_day(first),
            EventTime::all_day(first + TimeDelta::days(days)),
        )
    });
    let timed = (
        1i64..2_000_000,
        0i64..1440,
        prop::option::of(0usize..ZONES.len()),
    )
        .prop_map(|(minutes, length, zone)| {
            let start = now() + TimeDelta::minutes(minutes);
            let zone = zone.map(|z| ZONES[z]);
            (
                EventTime::from_instant(start, zone),
                EventTime::from_instant(start + TimeDelta::minutes(length), zone),
            )
        });
    prop_oneof![all_day, timed]
}

/// Any event the rules mirror: live, busy, not declined, a default-ish type, in the future.
fn mirrored_event() -> impl Strategy<Value = SourceEvent> {
    (
        event_id(),
        times(),
        prop::option::of(".{0,40}"),
        prop::option::of(".{0,40}"),
        prop::bool::ANY,
        prop::bool::ANY,
        prop::option::of("[a-z0-9]{5,20}@google\\.com"),
    )
        .prop_map(
            |(id, (start, end), summary, location, tentative, series, ical_uid)| {
                let mut event = SourceEvent::new(id, start, end);
                event.summary = summary;
                event.location = location;
                event.ical_uid = ical_uid;
                if tentative {
                    event.status = EventStatus::Tentative;
                }
                if series {
                    event.recurrence = vec!["RRULE:FREQ=WEEKLY".to_owned()];
                }
                event
            },
        )
}

fn cfg(busy_only: bool) -> PlannerConfig {
    let mut cfg = PlannerConfig::new(INSTALLATION);
    if busy_only {
        cfg.details = BlockDetails::BusyOnly;
    }
    cfg
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

/// The block as the target's own sync would list it: a source event on the target.
fn listed_on_target(block: &DesiredBlock) -> SourceEvent {
    let json = block.body.to_json();
    let time = |field: &str| {
        let value = &json[field];
        match value.get("date").and_then(|d| d.as_str()) {
            Some(date) => EventTime::parse_date(date).unwrap(),
            None => EventTime::parse_timed(
                value["dateTime"].as_str().unwrap(),
                value.get("timeZone").and_then(|z| z.as_str()),
            )
            .unwrap(),
        }
    };
    let private: HashMap<String, String> =
        serde_json::from_value(json["extendedProperties"]["private"].clone()).unwrap();
    let mut event = SourceEvent::new(
        EventId::parse(block.block_id.as_str()).unwrap(),
        time("start"),
        time("end"),
    );
    event.summary = block.body.summary.clone();
    event.recurrence = block.body.recurrence.clone();
    event.marker = Marker::from_private_properties(&private);
    event
}

proptest! {
    #[test]
    fn block_ids_are_deterministic_base32hex_and_long_enough(
        installation in "[a-z0-9-]{1,32}", source in calendar_id(), event in event_id(), target in calendar_id(),
    ) {
        let id = block_id(&installation, &source, &event, &target);
        prop_assert_eq!(&id, &block_id(&installation, &source, &event, &target));
        prop_assert!(id.as_str().len() >= 26);
        prop_assert!(id.as_str().chars().all(|c| matches!(c, '0'..='9' | 'a'..='v')));
        prop_assert!(is_block_id(&installation, id.as_str()));
    }

    #[test]
    fn block_ids_differ_when_any_input_differs(
        a in ("[a-z0-9-]{1,12}", calendar_id(), event_id(), calendar_id()),
        b in ("[a-z0-9-]{1,12}", calendar_id(), event_id(), calendar_id()),
    ) {
        prop_assume!(a != b);
        prop_assert_ne!(block_id(&a.0, &a.1, &a.2, &a.3), block_id(&b.0, &b.1, &b.2, &b.3));
    }

    #[test]
    fn an_occurrence_id_maps_onto_the_block_series_id(series in event_id(), day in 0i64..3000, hour in 0u32..24) {
        let start = Utc.with_ymd_and_hms(2025, 1, 1, hour, 0, 0).unwrap() + TimeDelta::days(day);
        let suffix = start.format("%Y%m%dT%H%M%SZ").to_string();
        let occurrence = EventId::parse(&format!("{series}_{suffix}")).unwrap();
        let (source, target) = (account(1).calendar_id, account(2).calendar_id);
        let id = block_id(INSTALLATION, &source, &occurrence, &target);
        let series_block = block_id(INSTALLATION, &source, &series, &target);
        prop_assert_eq!(id.series(), series_block.as_str());
        prop_assert_eq!(id.as_str().split_once('_').map(|(_, s)| s), Some(suffix.as_str()));
    }

    #[test]
    fn a_block_never_produces_a_block(event in mirrored_event(), busy_only in prop::bool::ANY) {
        let cfg = cfg(busy_only);
        let block = plan(&cfg, &event).expect("a mirrored event has a block");
        let listed = listed_on_target(&block);
        for target in [account(1), account(3)] {
            let planned = plan_event(&cfg, &account(2), &listed, &target, &TargetHoldings::new(), now());
            prop_assert_eq!(planned, None);
        }
        let changes = testing::plan_listed(&cfg, &account(2), &[listed], &[account(1), account(3)], &[], now());
        prop_assert!(changes.is_empty());
    }

    #[test]
    fn the_plan_never_targets_the_source_account(event in mirrored_event(), source in 1i64..5) {
        let targets: Vec<Account> = (1..5).map(account).collect();
        let planned = testing::plan_listed(&cfg(false), &account(source), std::slice::from_ref(&event), &targets, &[], now());
        // One row per other target; a series also plans nothing more (it has no exceptions).
        prop_assert_eq!(planned.len(), 3);
        prop_assert!(planned.iter().all(|p| p.target != AccountId::new(source)));
        prop_assert!(planned.iter().all(|p| p.desired.as_ref().is_none_or(|d| d.target == p.target && d.block_id == p.block_id)));
    }

    #[test]
    fn the_hash_is_stable_and_follows_time_and_title(event in mirrored_event(), shift in 1i64..10_000, title in "[A-Za-z]{1,10}") {
        let full = cfg(false);
        let first = plan(&full, &event).unwrap();
        prop_assert_eq!(&plan(&full, &event.clone()).unwrap().hash, &first.hash);

        let mut moved = event.clone();
        moved.end = Some(match moved.end.take().unwrap() {
            EventTime::AllDay { date } => EventTime::all_day(date + TimeDelta::days(shift)),
            EventTime::Timed { instant, time_zone, .. } => EventTime::from_instant(instant + TimeDelta::minutes(shift), time_zone.as_deref()),
        });
        let moved_block = plan(&full, &moved).unwrap();
        prop_assert_ne!(&moved_block.hash, &first.hash);
        prop_assert_eq!(&moved_block.block_id, &first.block_id);

        let mut renamed = event.clone();
        renamed.summary = Some(format!("{} {title}", event.summary.clone().unwrap_or_default()));
        prop_assert_ne!(&plan(&full, &renamed).unwrap().hash, &first.hash);
        // Busy-only blocks do not show the title, so a rename costs no write.
        prop_assert_eq!(plan(&cfg(true), &renamed).unwrap().hash, plan(&cfg(true), &event).unwrap().hash);
    }

    #[test]
    fn every_live_block_is_private_opaque_silent_and_marked(event in mirrored_event(), busy_only in prop::bool::ANY) {
        let block = plan(&cfg(busy_only), &event).unwrap();
        let json = block.body.to_json();
        prop_assert_eq!(&json["visibility"], "private");
        prop_assert_eq!(&json["transparency"], "opaque");
        prop_assert_eq!(&json["reminders"], &serde_json::json!({"useDefault": false}));
        prop_assert_eq!(&json["status"], "confirmed");
        prop_assert!(json.get("attendees").is_none() && json.get("location").is_none());
        prop_assert_eq!(&json["summary"], "Calendar 01 Block");
        prop_assert_eq!(block.body.description.is_none(), busy_only);
        let marker = block.body.marker().expect("a live block is marked");
        prop_assert_eq!(marker.installation.as_str(), INSTALLATION);
        prop_assert_eq!(marker.source_event.as_str(), event.id.as_str());
        prop_assert!(is_ours(&listed_on_target(&block), INSTALLATION));
    }

    #[test]
    fn all_day_stays_all_day_and_the_time_zone_is_kept(event in mirrored_event()) {
        let block = plan(&cfg(false), &event).unwrap();
        let listed = listed_on_target(&block);
        for (copy, original) in [(&listed.start, &event.start), (&listed.end, &event.end)] {
            let (copy, original) = (copy.as_ref().unwrap(), original.as_ref().unwrap());
            prop_assert_eq!(copy.start_key(), original.start_key());
            if let (EventTime::Timed { date_time: a, .. }, EventTime::Timed { date_time: b, .. }) = (copy, original) {
                prop_assert_eq!(a, b);
            }
        }
        let json = block.body.to_json();
        match event.start.as_ref().unwrap() {
            EventTime::AllDay { .. } => {
                prop_assert!(json["start"].get("dateTime").is_none());
                prop_assert!(json["start"].get("timeZone").is_none());
            }
            EventTime::Timed { time_zone, .. } => {
                prop_assert!(json["start"].get("date").is_none());
                // Google needs a zone to expand a series: the calendar's zone fills a gap.
                let expected = time_zone.as_deref().or(event.is_series().then_some("Europe/Berlin"));
                prop_assert_eq!(json["start"].get("timeZone").and_then(|z| z.as_str()), expected);
            }
        }
        prop_assert_eq!(&block.body.recurrence, &event.recurrence);
    }
}
