//! Recurring series (docs/emulator.md, "Recurring series"): writes to single occurrences,
//! what happens to exceptions when their series is deleted, restored or changed, the
//! expansion horizon, and times in the repeated hour of a DST fall-back.

use crate::support::{error_reason, TestEmu};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};

const EV: &str = "/calendar/v3/calendars/primary/events";
const NY: &str = "America/New_York";

/// The instant an `EventDateTime` with a `dateTime` denotes.
fn instant(time: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time["dateTime"].as_str().expect("a dateTime"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instant")
        .with_timezone(&Utc)
}

/// A daily 09:00–09:30 New York series of `count` from 2030-03-08, across the 2030-03-10
/// spring-forward: EST (14:00Z) before, EDT (13:00Z) after.
async fn daily_across_dst(emu: &TestEmu, t: &str, count: u32) -> String {
    let s = emu
        .insert(
            t,
            json!({"summary": "standup", "location": "room 1",
                "start": {"dateTime": "2030-03-08T09:00:00", "timeZone": NY},
                "end": {"dateTime": "2030-03-08T09:30:00", "timeZone": NY},
                "recurrence": [format!("RRULE:FREQ=DAILY;COUNT={count}")]}),
        )
        .await;
    s["id"].as_str().expect("id").to_string()
}

async fn patch(emu: &TestEmu, t: &str, id: &str, body: Value) -> Value {
    let r = emu
        .call(Method::PATCH, &format!("{EV}/{id}"), t, Some(body))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn instances(emu: &TestEmu, t: &str, sid: &str, query: &str) -> Vec<Value> {
    let r = emu
        .call(
            Method::GET,
            &format!("{EV}/{sid}/instances?{query}"),
            t,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect()
}

// ---- writes to one occurrence ----------------------------------------------------------------

#[tokio::test]
async fn patching_only_the_transparency_of_an_occurrence_keeps_that_occurrences_times() {
    // Arrange: the fourth occurrence is on 2030-03-11, after the DST change (13:00Z).
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let sid = daily_across_dst(&emu, &t, 5).await;
    let occurrence = format!("{sid}_20300311T130000Z");

    // Act
    let got = patch(
        &emu,
        &t,
        &occurrence,
        json!({"transparency": "transparent"}),
    )
    .await;

    // Assert: its own start and end, the series link and the master's other fields.
    assert_eq!(got["id"], json!(occurrence));
    assert_eq!(instant(&got["start"]), utc("2030-03-11T13:00:00Z"));
    assert_eq!(instant(&got["end"]), utc("2030-03-11T13:30:00Z"));
    assert_eq!(got["start"]["timeZone"], NY);
    assert_eq!(
        instant(&got["originalStartTime"]),
        utc("2030-03-11T13:00:00Z")
    );
    assert_eq!(got["recurringEventId"], json!(sid));
    assert_eq!(got["transparency"], "transparent");
    assert_eq!(got["summary"], "standup");
    assert_eq!(got["location"], "room 1");
    assert!(got.get("recurrence").is_none());
}

#[tokio::test]
async fn patching_the_summary_of_an_occurrence_keeps_that_occurrences_times() {
    // Arrange: the second occurrence is before the DST change (14:00Z).
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let sid = daily_across_dst(&emu, &t, 5).await;
    let occurrence = format!("{sid}_20300309T140000Z");

    // Act
    let got = patch(&emu, &t, &occurrence, json!({"summary": "moved standup"})).await;

    // Assert
    assert_eq!(got["summary"], "moved standup");
    assert_eq!(instant(&got["start"]), utc("2030-03-09T14:00:00Z"));
    assert_eq!(instant(&got["end"]), utc("2030-03-09T14:30:00Z"));
    assert_eq!(
        instant(&got["originalStartTime"]),
        utc("2030-03-09T14:00:00Z")
    );
    let get = emu
        .call(Method::GET, &format!("{EV}/{occurrence}"), &t, None)
        .await;
    assert_eq!(get.body, got);
}

#[tokio::test]
async fn patching_an_occurrence_of_an_all_day_series_keeps_its_date() {
    // Arrange: weekly all-day from Monday 2030-01-07.
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let s = emu
        .insert(
            &t,
            json!({"summary": "bins", "start": {"date": "2030-01-07"}, "end": {"date": "2030-01-08"},
                "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"]}),
        )
        .await;
    let sid = s["id"].as_str().unwrap();
    let occurrence = format!("{sid}_20300121");

    // Act
    let got = patch(
        &emu,
        &t,
        &occurrence,
        json!({"transparency": "transparent"}),
    )
    .await;

    // Assert
    assert_eq!(got["start"], json!({"date": "2030-01-21"}));
    assert_eq!(got["end"], json!({"date": "2030-01-22"}));
    assert_eq!(got["originalStartTime"], json!({"date": "2030-01-21"}));
    assert_eq!(got["recurringEventId"], json!(sid));
}

#[tokio::test]
async fn a_put_of_an_occurrence_replaces_it_and_keeps_its_series_link() {
    // Arrange
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let sid = daily_across_dst(&emu, &t, 5).await;
    let occurrence = format!("{sid}_20300312T130000Z");

    // Act: an hour later, new summary, nothing else.
    let r = emu
        .call(
            Method::PUT,
            &format!("{EV}/{occurrence}"),
            &t,
            Some(json!({"summary": "late standup",
                "start": {"dateTime": "2030-03-12T10:00:00", "timeZone": NY},
                "end": {"dateTime": "2030-03-12T10:30:00", "timeZone": NY}})),
        )
        .await;

    // Assert
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(instant(&r.body["start"]), utc("2030-03-12T14:00:00Z"));
    assert_eq!(
        instant(&r.body["originalStartTime"]),
        utc("2030-03-12T13:00:00Z")
    );
    assert_eq!(r.body["recurringEventId"], json!(sid));
    assert!(r.body.get("location").is_none(), "PUT resets what it omits");
}

#[tokio::test]
async fn a_cancelled_occurrence_patched_back_to_confirmed_returns_at_its_own_time() {
    // Arrange
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let sid = daily_across_dst(&emu, &t, 5).await;
    let occurrence = format!("{sid}_20300311T130000Z");
    let d = emu
        .call(Method::DELETE, &format!("{EV}/{occurrence}"), &t, None)
        .await;
    assert_eq!(d.status, 204);
    assert_eq!(instances(&emu, &t, &sid, "").await.len(), 4);

    // Act
    let got = patch(&emu, &t, &occurrence, json!({"status": "confirmed"})).await;

    // Assert
    assert_eq!(got["status"], "confirmed");
    assert_eq!(instant(&got["start"]), utc("2030-03-11T13:00:00Z"));
    assert_eq!(instant(&got["end"]), utc("2030-03-11T13:30:00Z"));
    let listed = instances(&emu, &t, &sid, "").await;
    assert_eq!(listed.len(), 5);
    assert_eq!(listed[3]["id"], json!(occurrence));
}

#[tokio::test]
async fn an_exception_lists_with_its_series_link_and_the_other_instances_are_unchanged() {
    // Arrange
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let sid = daily_across_dst(&emu, &t, 5).await;
    let before = instances(&emu, &t, &sid, "").await;
    let occurrence = format!("{sid}_20300310T130000Z");

    // Act
    patch(
        &emu,
        &t,
        &occurrence,
        json!({"transparency": "transparent"}),
    )
    .await;

    // Assert: the full listing has master + exception; the exception carries its links.
    let (items, _) = emu.list_all(&t, "").await;
    assert_eq!(items.len(), 2);
    let exception = items.iter().find(|i| i["id"] == json!(occurrence)).unwrap();
    assert_eq!(exception["recurringEventId"], json!(sid));
    assert_eq!(
        instant(&exception["originalStartTime"]),
        utc("2030-03-10T13:00:00Z")
    );
    let after = instances(&emu, &t, &sid, "").await;
    assert_eq!(ids(&after), ids(&before));
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a["start"], b["start"]);
        assert_eq!(a["end"], b["end"]);
        if a["id"] != json!(occurrence) {
            assert_eq!(a, b);
        }
    }
}

// ---- the series' own lifecycle -------------------------------------------------------------

/// A series with a summary-overriding exception (2nd), a transparency-only exception (3rd)
/// and a cancelled one (4th).
async fn series_with_three_exceptions(emu: &TestEmu, t: &str) -> (String, [String; 3]) {
    let sid = daily_across_dst(emu, t, 5).await;
    let renamed = format!("{sid}_20300309T140000Z");
    let freed = format!("{sid}_20300310T130000Z");
    let cancelled = format!("{sid}_20300311T130000Z");
    patch(emu, t, &renamed, json!({"summary": "renamed"})).await;
    patch(emu, t, &freed, json!({"transparency": "transparent"})).await;
    let d = emu
        .call(Method::DELETE, &format!("{EV}/{cancelled}"), t, None)
        .await;
    assert_eq!(d.status, 204);
    (sid, [renamed, freed, cancelled])
}

#[tokio::test]
async fn deleting_a_series_cancels_its_exceptions_and_an_incremental_sync_lists_each_tombstone() {
    // Arrange
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let (sid, exceptions) = series_with_three_exceptions(&emu, &t).await;
    let (_, token) = emu.list_all(&t, "").await;

    // Act
    let d = emu
        .call(Method::DELETE, &format!("{EV}/{sid}"), &t, None)
        .await;
    assert_eq!(d.status, 204);

    // Assert: the master's minimal tombstone, and one per live exception with its links.
    let (changes, _) = emu.list_all(&t, &format!("syncToken={token}")).await;
    let mut got = ids(&changes);
    got.sort();
    let mut want = vec![sid.clone(), exceptions[0].clone(), exceptions[1].clone()];
    want.sort();
    assert_eq!(got, want);
    for item in &changes {
        assert_eq!(item["status"], "cancelled");
        if item["id"] == json!(sid) {
            let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 4, "{item}");
        } else {
            assert_eq!(item["recurringEventId"], json!(sid));
            assert!(item["originalStartTime"]["dateTime"].is_string(), "{item}");
        }
    }
    for id in &exceptions {
        let get = emu.call(Method::GET, &format!("{EV}/{id}"), &t, None).await;
        assert_eq!(get.body["status"], "cancelled", "{id}");
    }
}

#[tokio::test]
async fn a_deleted_series_id_cannot_be_reinserted_but_patching_it_confirmed_restores_the_series() {
    // Arrange
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let (sid, [renamed, freed, cancelled]) = series_with_three_exceptions(&emu, &t).await;
    emu.call(Method::DELETE, &format!("{EV}/{sid}"), &t, None)
        .await;

    // Act
    let again = emu
        .call(
            Method::POST,
            EV,
            &t,
            Some(
                json!({"id": sid, "start": {"dateTime": "2030-03-08T09:00:00", "timeZone": NY},
                "end": {"dateTime": "2030-03-08T09:30:00", "timeZone": NY},
                "recurrence": ["RRULE:FREQ=DAILY;COUNT=5"]}),
            ),
        )
        .await;
    let restored = patch(&emu, &t, &sid, json!({"status": "confirmed"})).await;

    // Assert: 409 first; then the master is live and its unmodified occurrences are back,
    // while the exceptions deleted with it stay cancelled until each is restored itself.
    assert_eq!(again.status, 409);
    assert_eq!(error_reason(&again), "duplicate");
    assert_eq!(restored["status"], "confirmed");
    assert_eq!(restored["recurrence"], json!(["RRULE:FREQ=DAILY;COUNT=5"]));
    let live = ids(&instances(&emu, &t, &sid, "").await);
    assert_eq!(
        live,
        [
            format!("{sid}_20300308T140000Z"),
            format!("{sid}_20300312T130000Z")
        ]
    );
    for id in [&renamed, &freed, &cancelled] {
        let get = emu.call(Method::GET, &format!("{EV}/{id}"), &t, None).await;
        assert_eq!(get.body["status"], "cancelled", "{id}");
    }
    let back = patch(&emu, &t, &renamed, json!({"status": "confirmed"})).await;
    assert_eq!(back["summary"], "renamed");
    assert_eq!(instances(&emu, &t, &sid, "").await.len(), 3);
}

#[tokio::test]
async fn patching_a_master_keeps_the_fields_its_exceptions_override() {
    // Arrange
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let (sid, [renamed, freed, cancelled]) = series_with_three_exceptions(&emu, &t).await;
    let (_, token) = emu.list_all(&t, "").await;

    // Act
    patch(
        &emu,
        &t,
        &sid,
        json!({"summary": "daily sync", "location": "room 2"}),
    )
    .await;

    // Assert: the overriding exception keeps its summary but takes the new location; the
    // other exception takes both; the cancelled one stays cancelled.
    let get = |id: String| {
        let emu = &emu;
        let t = &t;
        async move {
            emu.call(Method::GET, &format!("{EV}/{id}"), t, None)
                .await
                .body
        }
    };
    let r = get(renamed.clone()).await;
    assert_eq!(
        (&r["summary"], &r["location"]),
        (&json!("renamed"), &json!("room 2"))
    );
    let f = get(freed.clone()).await;
    assert_eq!(
        (&f["summary"], &f["location"]),
        (&json!("daily sync"), &json!("room 2"))
    );
    assert_eq!(f["transparency"], "transparent");
    assert_eq!(get(cancelled.clone()).await["status"], "cancelled");
    let listed = instances(&emu, &t, &sid, "").await;
    let summaries: Vec<&str> = listed
        .iter()
        .map(|i| i["summary"].as_str().unwrap())
        .collect();
    assert_eq!(
        summaries,
        ["daily sync", "renamed", "daily sync", "daily sync"]
    );
    // The changed exceptions are changes of their own in an incremental sync.
    let (changes, _) = emu.list_all(&t, &format!("syncToken={token}")).await;
    let mut got = ids(&changes);
    got.sort();
    let mut want = vec![sid, renamed, freed];
    want.sort();
    assert_eq!(got, want);
}

// ---- the expansion horizon -------------------------------------------------------------------

#[tokio::test]
async fn a_bounded_series_is_expanded_in_full_without_time_max() {
    // Arrange: the second Monday of April, six years from 2030: far past a 365-day horizon.
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let s = emu
        .insert(
            &t,
            json!({"summary": "audit", "start": {"dateTime": "2030-04-08T10:00:00", "timeZone": NY},
                "end": {"dateTime": "2030-04-08T11:00:00", "timeZone": NY},
                "recurrence": ["RRULE:FREQ=YEARLY;BYMONTH=4;BYDAY=2MO;COUNT=6"]}),
        )
        .await;
    let sid = s["id"].as_str().unwrap();

    // Act
    let listed = instances(&emu, &t, sid, "").await;
    let (single, _) = emu.list_all(&t, "singleEvents=true").await;

    // Assert
    let want = [
        "20300408T140000Z",
        "20310414T140000Z",
        "20320412T140000Z",
        "20330411T140000Z",
        "20340410T140000Z",
        "20350409T140000Z",
    ]
    .map(|k| format!("{sid}_{k}"));
    assert_eq!(ids(&listed), want);
    assert_eq!(ids(&single), want);
}

#[tokio::test]
async fn an_open_ended_series_is_still_cut_at_the_horizon() {
    // Arrange: a weekly series from 2030 without COUNT or UNTIL.
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let s = emu
        .insert(
            &t,
            json!({"summary": "weekly", "start": {"dateTime": "2030-01-07T10:00:00", "timeZone": NY},
                "end": {"dateTime": "2030-01-07T11:00:00", "timeZone": NY},
                "recurrence": ["RRULE:FREQ=WEEKLY"]}),
        )
        .await;

    // Act
    let listed = instances(&emu, &t, s["id"].as_str().unwrap(), "maxResults=2500").await;

    // Assert: 365 days from the series start hold 53 Mondays (2030-01-07 .. 2031-01-06).
    assert_eq!(listed.len(), 53);
}

// ---- the repeated hour of a fall-back ----------------------------------------------------------

#[tokio::test]
async fn a_series_starting_in_the_repeated_hour_keeps_the_offset_it_was_given() {
    // Arrange: 01:30 EST on 2030-11-03, the second 01:30 of that night (06:30Z).
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let s = emu
        .insert(
            &t,
            json!({"summary": "night shift",
                "start": {"dateTime": "2030-11-03T01:30:00-05:00", "timeZone": NY},
                "end": {"dateTime": "2030-11-03T02:30:00-05:00", "timeZone": NY},
                "recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]}),
        )
        .await;
    let sid = s["id"].as_str().unwrap();

    // Act
    let listed = instances(&emu, &t, sid, "").await;

    // Assert
    assert_eq!(instant(&s["start"]), utc("2030-11-03T06:30:00Z"));
    assert_eq!(
        ids(&listed),
        [
            format!("{sid}_20301103T063000Z"),
            format!("{sid}_20301104T063000Z")
        ]
    );
    assert_eq!(instant(&listed[0]["start"]), utc("2030-11-03T06:30:00Z"));
    assert_eq!(instant(&listed[0]["end"]), utc("2030-11-03T07:30:00Z"));
}

#[tokio::test]
async fn rdates_and_exdates_in_the_repeated_hour_keep_their_instants() {
    // Arrange: a daily 01:30 series from 2030-11-01 (EDT) whose DTSTART-like first slot on the
    // fall-back night is excluded by UTC instant, plus an RDATE at the second 01:30.
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let s = emu
        .insert(
            &t,
            json!({"summary": "night shift",
                "start": {"dateTime": "2030-11-01T01:30:00", "timeZone": NY},
                "end": {"dateTime": "2030-11-01T02:00:00", "timeZone": NY},
                "recurrence": ["RRULE:FREQ=DAILY;COUNT=4", "EXDATE:20301103T053000Z",
                    "RDATE:20301103T063000Z"]}),
        )
        .await;
    let sid = s["id"].as_str().unwrap();

    // Act
    let listed = instances(&emu, &t, sid, "").await;

    // Assert: the rule's 01:30 on the 3rd is the first one (EDT, 05:30Z) and is excluded;
    // the RDATE is the second one (EST, 06:30Z) and stays.
    assert_eq!(
        ids(&listed),
        [
            format!("{sid}_20301101T053000Z"),
            format!("{sid}_20301102T053000Z"),
            format!("{sid}_20301103T063000Z"),
            format!("{sid}_20301104T063000Z"),
        ]
    );
    assert_eq!(instant(&listed[2]["start"]), utc("2030-11-03T06:30:00Z"));
}
