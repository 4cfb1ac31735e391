//! Conformance: events.list, pagination, sync tokens and the recurrence views
//! (docs/emulator.md, "List / sync").

use crate::support::{error_reason, timed, TestEmu};
use reqwest::Method;
use serde_json::{json, Value};

const EV: &str = "/calendar/v3/calendars/primary/events";

fn ids(items: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn short_and_empty_pages_still_lead_to_every_item_and_one_sync_token() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    for i in 0..7 {
        emu.insert(
            &t,
            timed(
                &format!("e{i}"),
                "2030-01-01T10:00:00Z",
                "2030-01-01T11:00:00Z",
            ),
        )
        .await;
    }
    emu.settings(json!({"pageSizeCap": 2, "emptyPageEvery": 2}))
        .await;
    let first = emu
        .call(Method::GET, &format!("{EV}?maxResults=5"), &t, None)
        .await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    assert!(first.body.get("nextPageToken").is_some() && first.body.get("nextSyncToken").is_none());
    let (items, token) = emu.list_all(&t, "maxResults=5").await;
    assert_eq!(items.len(), 7);
    assert!(!token.is_empty());
}

#[tokio::test]
async fn max_results_defaults_to_250_and_is_clamped_to_2500() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let zero = emu
        .call(Method::GET, &format!("{EV}?maxResults=0"), &t, None)
        .await;
    assert_eq!(zero.status, 400);
    let big = emu
        .call(Method::GET, &format!("{EV}?maxResults=100000"), &t, None)
        .await;
    assert_eq!(big.status, 200);
}

#[tokio::test]
async fn sync_token_cannot_be_combined_with_filtering_parameters() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let (_, token) = emu.list_all(&t, "").await;
    for bad in [
        "iCalUID=x",
        "orderBy=updated",
        "privateExtendedProperty=a%3Db",
        "q=x",
        "sharedExtendedProperty=a%3Db",
        "timeMin=2030-01-01T00:00:00Z",
        "timeMax=2030-01-01T00:00:00Z",
        "updatedMin=2030-01-01T00:00:00Z",
    ] {
        let r = emu
            .call(
                Method::GET,
                &format!("{EV}?syncToken={token}&{bad}"),
                &t,
                None,
            )
            .await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(error_reason(&r), "invalid");
    }
}

#[tokio::test]
async fn incremental_sync_returns_changes_with_minimal_tombstones() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let keep = emu
        .insert(
            &t,
            timed("keep", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    let gone = emu
        .insert(
            &t,
            timed("gone", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    let (_, token) = emu.list_all(&t, "").await;
    let (nothing, token2) = emu.list_all(&t, &format!("syncToken={token}")).await;
    assert!(nothing.is_empty());
    assert_eq!(token2, token);
    emu.call(
        Method::DELETE,
        &format!("{EV}/{}", gone["id"].as_str().unwrap()),
        &t,
        None,
    )
    .await;
    let added = emu
        .insert(
            &t,
            timed("new", "2030-01-02T10:00:00Z", "2030-01-02T11:00:00Z"),
        )
        .await;
    let (changes, _) = emu.list_all(&t, &format!("syncToken={token}")).await;
    assert_eq!(ids(&changes), ids(&[gone.clone(), added.clone()]));
    let tomb = changes.iter().find(|c| c["id"] == gone["id"]).unwrap();
    let tomb_keys: Vec<&String> = tomb.as_object().unwrap().keys().collect();
    assert_eq!(tomb_keys.len(), 4, "{tomb}");
    assert_eq!(tomb["status"], "cancelled");
    assert!(!changes.iter().any(|c| c["id"] == keep["id"]));
    let (full_deleted, _) = emu
        .list_all(&t, &format!("syncToken={token}&showDeleted=true"))
        .await;
    let full = full_deleted.iter().find(|c| c["id"] == gone["id"]).unwrap();
    assert_eq!(full["summary"], "gone");
}

#[tokio::test]
async fn invalidated_sync_tokens_get_410_full_sync_required() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let (_, token) = emu.list_all(&t, "").await;
    let r = emu
        .control(
            Method::POST,
            "/emulator/sync-tokens/invalidate",
            Some(json!({"calendarId": emu.email(0)})),
        )
        .await;
    assert_eq!(r.status, 200);
    let g = emu
        .call(Method::GET, &format!("{EV}?syncToken={token}"), &t, None)
        .await;
    assert_eq!(g.status, 410);
    assert_eq!(
        g.body,
        json!({"error": {"errors": [{"domain": "calendar", "reason": "fullSyncRequired", "message": "Sync token is no longer valid, a full sync is required.",
            "locationType": "parameter", "location": "syncToken"}], "code": 410, "message": "Sync token is no longer valid, a full sync is required."}})
    );
    let garbage = emu
        .call(Method::GET, &format!("{EV}?syncToken=nonsense"), &t, None)
        .await;
    assert_eq!(garbage.status, 410);
}

#[tokio::test]
async fn updated_min_too_long_ago_is_410_and_recent_updated_min_includes_deletions() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let r = emu
        .call(
            Method::GET,
            &format!("{EV}?updatedMin=2000-01-01T00:00:00Z"),
            &t,
            None,
        )
        .await;
    assert_eq!(r.status, 410);
    assert_eq!(error_reason(&r), "updatedMinTooLongAgo");
    let ev = emu
        .insert(
            &t,
            timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    emu.call(
        Method::DELETE,
        &format!("{EV}/{}", ev["id"].as_str().unwrap()),
        &t,
        None,
    )
    .await;
    let since = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let (items, _) = emu
        .list_all(&t, &format!("updatedMin={}", urlencode(&since)))
        .await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "cancelled");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn order_by_start_time_needs_single_events_and_time_range_must_not_be_empty() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let r = emu
        .call(Method::GET, &format!("{EV}?orderBy=startTime"), &t, None)
        .await;
    assert_eq!(r.status, 400);
    let e = emu
        .call(
            Method::GET,
            &format!("{EV}?timeMin=2030-01-02T00:00:00Z&timeMax=2030-01-01T00:00:00Z"),
            &t,
            None,
        )
        .await;
    assert_eq!(e.status, 400);
    assert_eq!(error_reason(&e), "timeRangeEmpty");
    emu.insert(
        &t,
        timed("late", "2030-01-03T10:00:00Z", "2030-01-03T11:00:00Z"),
    )
    .await;
    emu.insert(
        &t,
        timed("early", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
    )
    .await;
    emu.insert(
        &t,
        timed("out", "2031-01-01T10:00:00Z", "2031-01-01T11:00:00Z"),
    )
    .await;
    let (items, _) = emu
        .list_all(&t, "singleEvents=true&orderBy=startTime&timeMin=2030-01-01T10:30:00Z&timeMax=2030-12-01T00:00:00Z")
        .await;
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["summary"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["early", "late"]);
}

#[tokio::test]
async fn list_response_carries_calendar_metadata() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let r = emu.call(Method::GET, EV, &t, None).await;
    for k in [
        "kind",
        "etag",
        "summary",
        "updated",
        "timeZone",
        "accessRole",
        "defaultReminders",
        "items",
    ] {
        assert!(r.body.get(k).is_some(), "{k}");
    }
    assert_eq!(r.body["kind"], "calendar#events");
    assert_eq!(r.body["accessRole"], "owner");
}

#[tokio::test]
async fn extended_property_event_type_ical_uid_and_q_filters_select_events() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let mut a = timed(
        "Dentist appointment",
        "2030-01-01T10:00:00Z",
        "2030-01-01T11:00:00Z",
    );
    a["extendedProperties"] = json!({"private": {"src": "a1"}, "shared": {"s": "x"}});
    let a = emu.insert(&t, a).await;
    let b = emu
        .insert(
            &t,
            timed("Lunch", "2030-01-01T12:00:00Z", "2030-01-01T13:00:00Z"),
        )
        .await;
    let (r, _) = emu.list_all(&t, "privateExtendedProperty=src%3Da1").await;
    assert_eq!(ids(&r), ids(std::slice::from_ref(&a)));
    let (r, _) = emu.list_all(&t, "sharedExtendedProperty=s%3Dx").await;
    assert_eq!(ids(&r), ids(std::slice::from_ref(&a)));
    let (r, _) = emu.list_all(&t, "q=lunch").await;
    assert_eq!(ids(&r), ids(std::slice::from_ref(&b)));
    let (r, _) = emu
        .list_all(
            &t,
            &format!("iCalUID={}", urlencode(b["iCalUID"].as_str().unwrap())),
        )
        .await;
    assert_eq!(ids(&r), ids(std::slice::from_ref(&b)));
    let (r, _) = emu.list_all(&t, "eventTypes=focusTime").await;
    assert!(r.is_empty());
    let bad = emu
        .call(Method::GET, &format!("{EV}?eventTypes=nope"), &t, None)
        .await;
    assert_eq!(bad.status, 400);
}

/// A daily series in New York with one moved and one cancelled occurrence.
async fn series_with_exceptions(emu: &TestEmu, t: &str) -> (String, String, String) {
    let s = emu
        .insert(
            t,
            json!({"summary": "standup", "start": {"dateTime": "2030-03-01T09:00:00", "timeZone": "America/New_York"},
                "end": {"dateTime": "2030-03-01T09:30:00", "timeZone": "America/New_York"}, "recurrence": ["RRULE:FREQ=DAILY;COUNT=5"]}),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    let moved = format!("{sid}_20300302T140000Z");
    let cancelled = format!("{sid}_20300303T140000Z");
    let m = emu
        .call(
            Method::PATCH,
            &format!("{EV}/{moved}"),
            t,
            Some(json!({"summary": "moved standup"})),
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.text);
    assert_eq!(m.body["recurringEventId"], json!(sid));
    assert_eq!(
        m.body["originalStartTime"]["dateTime"],
        "2030-03-02T14:00:00Z"
    );
    let d = emu
        .call(Method::DELETE, &format!("{EV}/{cancelled}"), t, None)
        .await;
    assert_eq!(d.status, 204);
    (sid, moved, cancelled)
}

#[tokio::test]
async fn single_events_expands_series_with_instance_ids_and_applies_exceptions() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let (sid, moved, cancelled) = series_with_exceptions(&emu, &t).await;
    let (items, _) = emu
        .list_all(&t, "singleEvents=true&orderBy=startTime")
        .await;
    let got: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got.contains(&moved.as_str())
            && !got.contains(&cancelled.as_str())
            && !got.contains(&sid.as_str())
    );
    assert_eq!(items[0]["id"], json!(format!("{sid}_20300301T140000Z")));
    assert_eq!(items[0]["recurringEventId"], json!(sid));
    assert!(items[0].get("recurrence").is_none());
    let inst = emu
        .call(Method::GET, &format!("{EV}/{sid}/instances"), &t, None)
        .await;
    assert_eq!(inst.body["items"].as_array().unwrap().len(), 4);
    let with_deleted = emu
        .call(
            Method::GET,
            &format!("{EV}/{sid}/instances?showDeleted=true"),
            &t,
            None,
        )
        .await;
    assert_eq!(with_deleted.body["items"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn show_deleted_and_single_events_matrix_matches_google() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let (sid, moved, cancelled) = series_with_exceptions(&emu, &t).await;
    let single = emu
        .insert(
            &t,
            timed(
                "deleted single",
                "2030-03-01T10:00:00Z",
                "2030-03-01T11:00:00Z",
            ),
        )
        .await;
    let single_id = single["id"].as_str().unwrap().to_string();
    emu.call(Method::DELETE, &format!("{EV}/{single_id}"), &t, None)
        .await;

    // false × false: master + exceptions, the cancelled exception included, no deleted single.
    let (ff, _) = emu.list_all(&t, "").await;
    assert_eq!(ids(&ff), {
        let mut v = vec![sid.clone(), moved.clone(), cancelled.clone()];
        v.sort();
        v
    });
    // true × false: everything, the deleted single too.
    let (tf, _) = emu.list_all(&t, "showDeleted=true").await;
    assert_eq!(tf.len(), 4);
    // false × true: four live instances, no cancelled items.
    let (ft, _) = emu.list_all(&t, "singleEvents=true").await;
    assert_eq!(ft.len(), 4);
    assert!(ft.iter().all(|i| i["status"] != "cancelled"));
    // true × true: instances including the cancelled one and the deleted single, never a master.
    let (tt, _) = emu.list_all(&t, "singleEvents=true&showDeleted=true").await;
    assert_eq!(tt.len(), 6);
    assert!(!tt.iter().any(|i| i["id"] == json!(sid)));
}

#[tokio::test]
async fn deleting_a_series_reports_cancelled_instances_incrementally() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let (sid, _, _) = series_with_exceptions(&emu, &t).await;
    let (_, token) = emu.list_all(&t, "singleEvents=true&showDeleted=true").await;
    emu.call(Method::DELETE, &format!("{EV}/{sid}"), &t, None)
        .await;
    let (changes, _) = emu
        .list_all(
            &t,
            &format!("singleEvents=true&showDeleted=true&syncToken={token}"),
        )
        .await;
    assert_eq!(changes.len(), 5);
    assert!(changes
        .iter()
        .all(|c| c["status"] == "cancelled" && c["recurringEventId"] == json!(sid)));
}

#[tokio::test]
async fn all_day_series_use_date_instance_ids() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let s = emu
        .insert(&t, json!({"summary": "weekly", "start": {"date": "2030-01-07"}, "end": {"date": "2030-01-08"}, "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"]}))
        .await;
    let sid = s["id"].as_str().unwrap();
    let inst = emu
        .call(Method::GET, &format!("{EV}/{sid}/instances"), &t, None)
        .await;
    let got: Vec<&str> = inst.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        [
            format!("{sid}_20300107"),
            format!("{sid}_20300114"),
            format!("{sid}_20300121")
        ]
    );
    let one = emu
        .call(Method::GET, &format!("{EV}/{sid}_20300114"), &t, None)
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["start"], json!({"date": "2030-01-14"}));
}

#[tokio::test]
async fn invalid_recurrence_is_400() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let r = emu
        .call(Method::POST, EV, &t, Some(json!({"start": {"dateTime": "2030-01-01T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2030-01-01T11:00:00", "timeZone": "UTC"}, "recurrence": ["RRULE:FREQ=SOMETIMES"]})))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["message"], "Invalid recurrence rule.");
}

#[tokio::test]
async fn dst_transition_keeps_local_wall_time_in_new_york() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let s = emu
        .insert(&t, json!({"start": {"dateTime": "2030-03-09T09:00:00", "timeZone": "America/New_York"}, "end": {"dateTime": "2030-03-09T10:00:00", "timeZone": "America/New_York"}, "recurrence": ["RRULE:FREQ=DAILY;COUNT=3"]}))
        .await;
    let sid = s["id"].as_str().unwrap();
    let inst = emu
        .call(
            Method::GET,
            &format!("{EV}/{sid}/instances?timeZone=America/New_York"),
            &t,
            None,
        )
        .await;
    let starts: Vec<&str> = inst.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["start"]["dateTime"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2030-03-09T09:00:00-05:00",
            "2030-03-10T09:00:00-04:00",
            "2030-03-11T09:00:00-04:00"
        ]
    );
}

#[tokio::test]
async fn dst_transition_keeps_local_wall_time_in_berlin() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let s = emu
        .insert(
            &t,
            json!({"start": {"dateTime": "2030-10-26T09:00:00", "timeZone": "Europe/Berlin"},
                "end": {"dateTime": "2030-10-26T10:00:00", "timeZone": "Europe/Berlin"}, "recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]}),
        )
        .await;
    let sid = s["id"].as_str().unwrap();
    let inst = emu
        .call(Method::GET, &format!("{EV}/{sid}/instances"), &t, None)
        .await;
    let got: Vec<&str> = inst.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        [
            format!("{sid}_20301026T070000Z"),
            format!("{sid}_20301027T080000Z")
        ]
    );
}

#[tokio::test]
async fn calendar_list_entry_and_timezone_setting_describe_the_primary_calendar() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let e = emu
        .call(
            Method::GET,
            "/calendar/v3/users/me/calendarList/primary",
            &t,
            None,
        )
        .await;
    assert_eq!(e.status, 200);
    assert_eq!(e.body["kind"], "calendar#calendarListEntry");
    assert_eq!(e.body["accessRole"], "owner");
    let s = emu
        .call(
            Method::GET,
            "/calendar/v3/users/me/settings/timezone",
            &t,
            None,
        )
        .await;
    assert_eq!(
        s.body,
        json!({"kind": "calendar#setting", "etag": s.body["etag"], "id": "timezone", "value": "UTC"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_slip_past_an_incremental_sync() {
    let emu = std::sync::Arc::new(TestEmu::start(1).await);
    let t = emu.token(0).await;
    let (_, mut token) = emu.list_all(&t, "").await;
    let mut writers = Vec::new();
    for w in 0..6 {
        let (emu, t) = (emu.clone(), t.clone());
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..20 {
                let ev = emu
                    .insert(
                        &t,
                        timed(
                            &format!("w{w}-{i}"),
                            "2030-01-01T10:00:00Z",
                            "2030-01-01T11:00:00Z",
                        ),
                    )
                    .await;
                ids.push(ev["id"].as_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut seen = std::collections::HashSet::new();
    while !writers.iter().all(|w| w.is_finished()) {
        let (items, next) = emu.list_all(&t, &format!("syncToken={token}")).await;
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_string()));
        token = next;
    }
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    let (items, _) = emu.list_all(&t, &format!("syncToken={token}")).await;
    seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_string()));
    assert_eq!(written.len(), 120);
    assert!(
        written.iter().all(|id| seen.contains(id)),
        "an insert was missed by incremental sync"
    );
}
