//! Conformance: routing, format and event semantics (docs/emulator.md, "Google API surface"
//! and "Events").

use crate::support::{error_reason, timed, TestEmu};
use reqwest::Method;
use serde_json::{json, Value};

const EV: &str = "/calendar/v3/calendars/primary/events";

#[tokio::test]
async fn primary_and_percent_encoded_calendar_ids_reach_the_same_calendar() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let ev = emu
        .insert(
            &t,
            timed("a", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    let encoded = emu.email(0).replace('@', "%40");
    let r = emu
        .call(
            Method::GET,
            &format!(
                "/calendar/v3/calendars/{encoded}/events/{}",
                ev["id"].as_str().unwrap()
            ),
            &t,
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["summary"], "a");
    let cal = emu
        .call(Method::GET, "/calendar/v3/calendars/primary", &t, None)
        .await;
    assert_eq!(cal.status, 200);
    assert_eq!(cal.body["id"], json!(emu.email(0)));
    assert_eq!(cal.body["kind"], "calendar#calendar");
}

#[tokio::test]
async fn another_users_calendar_is_not_found() {
    let emu = TestEmu::start(2).await;
    let t = emu.token(0).await;
    let r = emu
        .call(
            Method::GET,
            &format!("/calendar/v3/calendars/{}/events", emu.email(1)),
            &t,
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(error_reason(&r), "notFound");
}

#[tokio::test]
async fn writes_answer_200_with_json_and_delete_answers_204_with_an_empty_body() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let ev = emu
        .insert(
            &t,
            timed("a", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    let id = ev["id"].as_str().unwrap();
    let p = emu
        .call(
            Method::PATCH,
            &format!("{EV}/{id}"),
            &t,
            Some(json!({"summary": "b"})),
        )
        .await;
    assert_eq!(p.status, 200);
    assert!(p.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let d = emu
        .call(Method::DELETE, &format!("{EV}/{id}"), &t, None)
        .await;
    assert_eq!(d.status, 204);
    assert!(d.text.is_empty());
}

#[tokio::test]
async fn errors_use_googles_envelope() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let r = emu
        .call(Method::GET, &format!("{EV}/doesnotexist1"), &t, None)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        json!({"error": {"errors": [{"domain": "global", "reason": "notFound", "message": "Not Found"}], "code": 404, "message": "Not Found"}})
    );
    assert_eq!(r.headers["content-type"], "application/json; charset=UTF-8");
}

#[tokio::test]
async fn etags_are_quoted_with_an_etag_header_and_times_have_offsets_and_millisecond_updates() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let ev = emu
        .insert(&t, json!({"start": {"dateTime": "2030-03-05T10:00:00-05:00", "timeZone": "America/New_York"}, "end": {"dateTime": "2030-03-05T11:00:00-05:00", "timeZone": "America/New_York"}}))
        .await;
    let etag = ev["etag"].as_str().unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let r = emu
        .call(
            Method::GET,
            &format!("{EV}/{}", ev["id"].as_str().unwrap()),
            &t,
            None,
        )
        .await;
    assert_eq!(
        r.headers["etag"].to_str().unwrap(),
        r.body["etag"].as_str().unwrap()
    );
    let updated = ev["updated"].as_str().unwrap();
    assert!(
        updated.ends_with('Z') && updated.len() == "2030-01-01T00:00:00.000Z".len(),
        "{updated}"
    );
    // The calendar is in UTC, so the instant is rendered with a Z offset; the zone is kept.
    assert_eq!(
        ev["start"],
        json!({"dateTime": "2030-03-05T15:00:00Z", "timeZone": "America/New_York"})
    );
    let ny = emu
        .call(
            Method::GET,
            &format!(
                "{EV}/{}?timeZone=America/New_York",
                ev["id"].as_str().unwrap()
            ),
            &t,
            None,
        )
        .await;
    assert_eq!(ny.body["start"]["dateTime"], "2030-03-05T10:00:00-05:00");
}

#[tokio::test]
async fn client_ids_must_be_base32hex_of_5_to_1024_chars() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    for bad in ["abcd", "ABCDEFG", "abcdwxyz", &"a".repeat(1025)] {
        let mut b = timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z");
        b["id"] = json!(bad);
        let r = emu.call(Method::POST, EV, &t, Some(b)).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(
            r.body,
            json!({"error": {"errors": [{"domain": "global", "reason": "invalid", "message": "Invalid resource id value."}], "code": 400, "message": "Invalid resource id value."}})
        );
    }
    let mut ok = timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z");
    ok["id"] = json!("0123456789abcdefuv");
    assert_eq!(emu.insert(&t, ok).await["id"], "0123456789abcdefuv");
    let gen = emu
        .insert(
            &t,
            timed("y", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    let id = gen["id"].as_str().unwrap();
    assert_eq!(id.len(), 26);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b)));
    assert_eq!(gen["iCalUID"], json!(format!("{id}@google.com")));
}

#[tokio::test]
async fn ids_stay_reserved_after_delete_so_reinsert_gives_409_duplicate() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let mut b = timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z");
    b["id"] = json!("blockid00001");
    emu.insert(&t, b.clone()).await;
    let live = emu.call(Method::POST, EV, &t, Some(b.clone())).await;
    assert_eq!(live.status, 409);
    assert_eq!(
        live.body,
        json!({"error": {"errors": [{"domain": "global", "reason": "duplicate", "message": "The requested identifier already exists."}], "code": 409, "message": "The requested identifier already exists."}})
    );
    emu.call(Method::DELETE, &format!("{EV}/blockid00001"), &t, None)
        .await;
    let dead = emu.call(Method::POST, EV, &t, Some(b)).await;
    assert_eq!(dead.status, 409);
    assert_eq!(error_reason(&dead), "duplicate");
    let restored = emu
        .call(
            Method::PATCH,
            &format!("{EV}/blockid00001"),
            &t,
            Some(json!({"status": "confirmed"})),
        )
        .await;
    assert_eq!(restored.status, 200);
    assert_eq!(restored.body["status"], "confirmed");
}

#[tokio::test]
async fn start_and_end_are_required_of_one_kind_and_ordered() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let missing = emu
        .call(
            Method::POST,
            EV,
            &t,
            Some(json!({"start": {"date": "2030-01-01"}})),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(error_reason(&missing), "required");
    let mixed = emu.call(Method::POST, EV, &t, Some(json!({"start": {"date": "2030-01-01"}, "end": {"dateTime": "2030-01-02T00:00:00Z"}}))).await;
    assert_eq!(mixed.status, 400);
    let backwards = emu
        .call(
            Method::POST,
            EV,
            &t,
            Some(timed("x", "2030-01-01T11:00:00Z", "2030-01-01T10:00:00Z")),
        )
        .await;
    assert_eq!(backwards.status, 400);
    assert_eq!(error_reason(&backwards), "timeRangeEmpty");
    assert_eq!(
        backwards.body["error"]["message"],
        "The specified time range is empty."
    );
    let no_zone = emu
        .call(Method::POST, EV, &t, Some(json!({"start": {"dateTime": "2030-01-01T10:00:00Z"}, "end": {"dateTime": "2030-01-01T11:00:00Z"}, "recurrence": ["RRULE:FREQ=DAILY"]})))
        .await;
    assert_eq!(no_zone.status, 400);
    assert_eq!(error_reason(&no_zone), "required");
    let offsetless = emu
        .call(
            Method::POST,
            EV,
            &t,
            Some(timed("x", "2030-01-01T10:00:00", "2030-01-01T11:00:00")),
        )
        .await;
    assert_eq!(offsetless.status, 400);
}

#[tokio::test]
async fn google_defaults_are_filled_and_default_values_omitted() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let mut b = timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z");
    b["transparency"] = json!("opaque");
    b["visibility"] = json!("default");
    let ev = emu.insert(&t, b).await;
    assert_eq!(ev["kind"], "calendar#event");
    assert_eq!(ev["status"], "confirmed");
    assert_eq!(ev["eventType"], "default");
    assert_eq!(ev["reminders"], json!({"useDefault": true}));
    assert_eq!(ev["sequence"], 0);
    assert_eq!(ev["creator"], json!({"email": emu.email(0), "self": true}));
    assert_eq!(
        ev["organizer"],
        json!({"email": emu.email(0), "self": true})
    );
    assert!(ev["htmlLink"]
        .as_str()
        .unwrap()
        .starts_with("https://www.google.com/calendar/event?eid="));
    assert!(ev.get("transparency").is_none());
    assert!(ev.get("visibility").is_none());
    assert!(ev["created"].is_string() && ev["updated"].is_string());
}

#[tokio::test]
async fn secondary_calendar_events_have_the_calendar_as_organizer() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let cal = emu
        .control(
            Method::POST,
            &format!("/emulator/accounts/{}/calendars", emu.email(0)),
            Some(json!({"summary": "Work"})),
        )
        .await;
    assert_eq!(cal.status, 201);
    let id = cal.body["id"].as_str().unwrap().to_string();
    let r = emu
        .call(
            Method::POST,
            &format!("/calendar/v3/calendars/{id}/events"),
            &t,
            Some(timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z")),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["organizer"],
        json!({"email": id, "displayName": "Work", "self": true})
    );
}

#[tokio::test]
async fn patch_merges_objects_replaces_arrays_and_null_deletes_while_put_replaces() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let mut b = timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z");
    b["description"] = json!("d");
    b["extendedProperties"] = json!({"private": {"a": "1", "b": "2"}});
    b["attendees"] = json!([{"email": "p@example.com"}, {"email": "q@example.com"}]);
    let ev = emu.insert(&t, b).await;
    let path = format!("{EV}/{}", ev["id"].as_str().unwrap());
    let p = emu
        .call(Method::PATCH, &path, &t, Some(json!({"extendedProperties": {"private": {"a": null, "c": "3"}}, "attendees": [{"email": "r@example.com"}], "description": null})))
        .await;
    assert_eq!(p.status, 200);
    assert_eq!(
        p.body["extendedProperties"]["private"],
        json!({"b": "2", "c": "3"})
    );
    assert_eq!(p.body["attendees"], json!([{"email": "r@example.com"}]));
    assert!(p.body.get("description").is_none());
    assert_eq!(p.body["summary"], "x");
    let u = emu
        .call(
            Method::PUT,
            &path,
            &t,
            Some(timed("y", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z")),
        )
        .await;
    assert_eq!(u.status, 200);
    assert!(u.body.get("extendedProperties").is_none());
    assert!(u.body.get("attendees").is_none());
    assert_eq!(u.body["summary"], "y");
    // Converting timed to all-day needs dateTime nulled.
    let conv = emu
        .call(
            Method::PATCH,
            &path,
            &t,
            Some(json!({"start": {"date": "2030-01-01"}, "end": {"date": "2030-01-02"}})),
        )
        .await;
    assert_eq!(conv.status, 400);
    let conv = emu
        .call(Method::PATCH, &path, &t, Some(json!({"start": {"date": "2030-01-01", "dateTime": null}, "end": {"date": "2030-01-02", "dateTime": null}})))
        .await;
    assert_eq!(conv.status, 200, "{}", conv.text);
    assert_eq!(conv.body["start"], json!({"date": "2030-01-01"}));
}

#[tokio::test]
async fn event_type_is_immutable_and_restricted_types_are_checked() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let ev = emu
        .insert(
            &t,
            timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    let path = format!("{EV}/{}", ev["id"].as_str().unwrap());
    let r = emu
        .call(
            Method::PATCH,
            &path,
            &t,
            Some(json!({"eventType": "focusTime"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["message"], "Event type cannot be changed.");
    let gmail = emu.call(Method::POST, EV, &t, Some(json!({"eventType": "fromGmail", "start": {"date": "2030-01-01"}, "end": {"date": "2030-01-02"}}))).await;
    assert_eq!(gmail.status, 400);
    assert_eq!(error_reason(&gmail), "eventTypeRestriction");
    let bday = json!({"eventType": "birthday", "start": {"date": "2030-01-01"}, "end": {"date": "2030-01-02"}, "visibility": "private",
        "transparency": "transparent", "recurrence": ["RRULE:FREQ=YEARLY"], "extendedProperties": {"private": {"k": "v"}}});
    let r = emu.call(Method::POST, EV, &t, Some(bday)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["error"]["message"],
        "'birthday' event type must not have private extended properties."
    );
    let ooo_all_day = json!({"eventType": "outOfOffice", "start": {"date": "2030-01-01"}, "end": {"date": "2030-01-02"}});
    assert_eq!(
        error_reason(&emu.call(Method::POST, EV, &t, Some(ooo_all_day)).await),
        "eventTypeRestriction"
    );
    let focus = json!({"eventType": "focusTime", "start": {"dateTime": "2030-01-01T10:00:00Z"}, "end": {"dateTime": "2030-01-01T11:00:00Z"}, "focusTimeProperties": {}});
    let f = emu.call(Method::POST, EV, &t, Some(focus)).await;
    assert_eq!(f.status, 200, "{}", f.text);
    let put = emu
        .call(
            Method::PUT,
            &format!("{EV}/{}", f.body["id"].as_str().unwrap()),
            &t,
            Some(timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z")),
        )
        .await;
    assert_eq!(put.status, 400);
    assert_eq!(
        put.body["error"]["message"],
        "Event type cannot be changed."
    );
}

#[tokio::test]
async fn extended_properties_drop_long_keys_truncate_long_values_and_cap_count() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let mut b = timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z");
    b["extendedProperties"] =
        json!({"private": {"k".repeat(45): "dropped", "ok": "v".repeat(2000)}});
    let ev = emu.insert(&t, b).await;
    let private = ev["extendedProperties"]["private"].as_object().unwrap();
    assert_eq!(private.len(), 1);
    assert_eq!(private["ok"].as_str().unwrap().len(), 1024);
    let many: serde_json::Map<String, Value> =
        (0..301).map(|i| (format!("k{i}"), json!("v"))).collect();
    let mut b = timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z");
    b["extendedProperties"] = json!({"shared": many});
    let r = emu.call(Method::POST, EV, &t, Some(b)).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn delete_leaves_a_tombstone_that_get_returns_and_a_second_delete_is_410() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let ev = emu
        .insert(
            &t,
            timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    let path = format!("{EV}/{}", ev["id"].as_str().unwrap());
    assert_eq!(emu.call(Method::DELETE, &path, &t, None).await.status, 204);
    let g = emu.call(Method::GET, &path, &t, None).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body["status"], "cancelled");
    assert_ne!(g.body["etag"], ev["etag"]);
    let again = emu.call(Method::DELETE, &path, &t, None).await;
    assert_eq!(again.status, 410);
    assert_eq!(
        again.body,
        json!({"error": {"errors": [{"domain": "global", "reason": "deleted", "message": "Resource has been deleted"}], "code": 410, "message": "Resource has been deleted"}})
    );
    let unknown = emu
        .call(Method::DELETE, &format!("{EV}/unknownid1"), &t, None)
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn if_match_mismatch_is_412_and_if_none_match_is_304() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let ev = emu
        .insert(
            &t,
            timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    let path = format!("{EV}/{}", ev["id"].as_str().unwrap());
    let etag = ev["etag"].as_str().unwrap();
    let nm = emu
        .call_with(Method::GET, &path, &t, None, &[("If-None-Match", etag)])
        .await;
    assert_eq!(nm.status, 304);
    let stale = "\"1\"";
    for m in [Method::PATCH, Method::PUT, Method::DELETE] {
        let body = (m != Method::DELETE)
            .then(|| timed("y", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"));
        let r = emu
            .call_with(m, &path, &t, body, &[("If-Match", stale)])
            .await;
        assert_eq!(r.status, 412);
        assert_eq!(
            r.body,
            json!({"error": {"errors": [{"domain": "global", "reason": "conditionNotMet", "message": "Precondition Failed", "locationType": "header", "location": "If-Match"}], "code": 412, "message": "Precondition Failed"}})
        );
    }
    let ok = emu
        .call_with(
            Method::PATCH,
            &path,
            &t,
            Some(json!({"summary": "z"})),
            &[("If-Match", etag)],
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn time_changes_bump_sequence_and_reminder_changes_keep_updated() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let ev = emu
        .insert(
            &t,
            timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    let path = format!("{EV}/{}", ev["id"].as_str().unwrap());
    let r = emu
        .call(
            Method::PATCH,
            &path,
            &t,
            Some(json!({"reminders": {"useDefault": false}})),
        )
        .await;
    assert_eq!(r.body["updated"], ev["updated"]);
    assert_ne!(r.body["etag"], ev["etag"]);
    let moved = emu
        .call(
            Method::PATCH,
            &path,
            &t,
            Some(json!({"start": {"dateTime": "2030-01-01T09:00:00Z"}})),
        )
        .await;
    assert_eq!(moved.body["sequence"], 1);
}
