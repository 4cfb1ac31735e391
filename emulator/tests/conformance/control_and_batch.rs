//! The control API and the batch endpoint.

use crate::support::{timed, TestEmu};
use reqwest::Method;
use serde_json::{json, Value};

const EV: &str = "/calendar/v3/calendars/primary/events";

#[tokio::test]
async fn accounts_can_be_listed_and_created_with_a_refresh_token() {
    let emu = TestEmu::start(2).await;
    let r = emu.control(Method::GET, "/emulator/accounts", None).await;
    assert_eq!(r.body["accounts"].as_array().unwrap().len(), 2);
    let c = emu
        .control(
            Method::POST,
            "/emulator/accounts",
            Some(json!({"email": "new@example.test", "timeZone": "Europe/Berlin"})),
        )
        .await;
    assert_eq!(c.status, 201);
    assert_eq!(c.body["email"], "new@example.test");
    assert_eq!(c.body["calendar_id"], "new@example.test");
    let t = emu
        .token_for(c.body["refresh_token"].as_str().unwrap())
        .await;
    let cal = emu
        .call(Method::GET, "/calendar/v3/calendars/primary", &t, None)
        .await;
    assert_eq!(cal.body["timeZone"], "Europe/Berlin");
    assert_eq!(emu.handle.accounts().len(), 3);
    let added = emu.handle.add_account(None);
    assert!(added.email.ends_with("@example.test"));
}

#[tokio::test]
async fn the_raw_dump_shows_tombstones_and_exceptions() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
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
    let s = emu
        .insert(&t, json!({"start": {"dateTime": "2030-01-01T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2030-01-01T11:00:00", "timeZone": "UTC"}, "recurrence": ["RRULE:FREQ=DAILY;COUNT=3"]}))
        .await;
    emu.call(
        Method::DELETE,
        &format!("{EV}/{}_20300102T100000Z", s["id"].as_str().unwrap()),
        &t,
        None,
    )
    .await;
    let d = emu
        .control(
            Method::GET,
            &format!("/emulator/calendars/{}/events", emu.email(0)),
            None,
        )
        .await;
    let items = d.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["deleted"], true);
    assert_eq!(items[2]["isException"], true);
    assert_eq!(items[2]["event"]["status"], "cancelled");
}

#[tokio::test]
async fn the_clock_can_be_read_and_advanced() {
    let emu = TestEmu::start(0).await;
    let r = emu
        .control(
            Method::POST,
            "/emulator/clock/advance",
            Some(json!({"seconds": 3600})),
        )
        .await;
    assert_eq!(r.body["offsetSeconds"], 3600);
    let g = emu.control(Method::GET, "/emulator/clock", None).await;
    assert_eq!(g.body["offsetSeconds"], 3600);
    let bad = emu
        .control(
            Method::POST,
            "/emulator/clock/advance",
            Some(json!({"seconds": -1})),
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn batch_runs_parts_in_order_with_response_content_ids_and_counts_each_part() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    emu.control(Method::DELETE, "/emulator/counters", None)
        .await;
    let ev = json!({"id": "batchid001", "start": {"dateTime": "2030-01-01T10:00:00Z"}, "end": {"dateTime": "2030-01-01T11:00:00Z"}});
    let body = format!(
        "--xyz\r\nContent-Type: application/http\r\nContent-ID: <item1>\r\n\r\nPOST {EV} HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{ev}\r\n\
         --xyz\r\nContent-Type: application/http\r\nContent-ID: <item2>\r\n\r\nGET {EV}/batchid001 HTTP/1.1\r\n\r\n\r\n\
         --xyz\r\nContent-Type: application/http\r\nContent-ID: <item3>\r\n\r\nGET {EV}/missing001 HTTP/1.1\r\n\r\n\r\n--xyz--\r\n"
    );
    let r = emu
        .http
        .post(emu.url("/batch/calendar/v3"))
        .bearer_auth(&t)
        .header("Content-Type", "multipart/mixed; boundary=xyz")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("multipart/mixed; boundary="));
    let text = r.text().await.unwrap();
    let p1 = text.find("Content-ID: <response-item1>").unwrap();
    let p2 = text.find("Content-ID: <response-item2>").unwrap();
    let p3 = text.find("Content-ID: <response-item3>").unwrap();
    assert!(p1 < p2 && p2 < p3);
    assert!(text.contains("HTTP/1.1 404 Not Found"));
    let c = emu.control(Method::GET, "/emulator/counters", None).await;
    assert_eq!(c.body["byMethod"]["events.insert"]["200"], 1);
    assert_eq!(c.body["byMethod"]["events.get"]["404"], 1);
    let bad = emu
        .http
        .post(emu.url("/batch/calendar/v3"))
        .bearer_auth(&t)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn settings_can_be_read_and_changed() {
    let emu = TestEmu::start(0).await;
    let s = emu.control(Method::GET, "/emulator/settings", None).await;
    assert_eq!(s.body["rateLimitPerMinute"], 600);
    assert_eq!(s.body["accessTokenTtlSecs"], 3600);
    let bad = emu
        .control(
            Method::PUT,
            "/emulator/settings",
            Some(json!({"accessTokenTtlSecs": "soon"})),
        )
        .await;
    assert_eq!(bad.status, 400);
    let _: Value = s.body;
}
