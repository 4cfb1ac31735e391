//! Push: events.watch validations, the sync message, exists notifications with every
//! X-Goog-* header, retries, expiry and channels.stop (docs/emulator.md, "Push").

use crate::support::{error_reason, eventually, timed, Receiver, TestEmu};
use reqwest::Method;
use serde_json::json;

const WATCH: &str = "/calendar/v3/calendars/primary/events/watch";
const EV: &str = "/calendar/v3/calendars/primary/events";

#[tokio::test]
async fn watch_validates_id_type_address_and_token() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let r = emu
        .call(
            Method::POST,
            WATCH,
            &t,
            Some(
                json!({"id": "c".repeat(65), "type": "web_hook", "address": "https://x.example/h"}),
            ),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = emu
        .call(
            Method::POST,
            WATCH,
            &t,
            Some(json!({"id": "c1", "type": "email", "address": "https://x.example/h"})),
        )
        .await;
    assert_eq!(error_reason(&r), "push.channelTypeNotSupported");
    let r = emu.call(Method::POST, WATCH, &t, Some(json!({"id": "c1", "type": "web_hook", "address": "https://x.example/h", "token": "t".repeat(257)}))).await;
    assert_eq!(r.status, 400);
    let r = emu
        .call(
            Method::POST,
            WATCH,
            &t,
            Some(json!({"type": "web_hook", "address": "https://x.example/h"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(error_reason(&r), "required");
}

#[tokio::test]
async fn http_webhooks_are_refused_unless_allowed() {
    let emu = TestEmu::with_settings(1, gcal_emulator::Settings::default()).await;
    let t = emu.token(0).await;
    let r = emu
        .call(
            Method::POST,
            WATCH,
            &t,
            Some(json!({"id": "c1", "type": "web_hook", "address": "http://127.0.0.1:9/h"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(error_reason(&r), "push.webhookUrlNotHttps");
    assert_eq!(
        r.body["error"]["message"],
        "WebHook callback must be HTTPS: http://127.0.0.1:9/h"
    );
}

#[tokio::test]
async fn channel_ids_cannot_be_reused() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let rx = Receiver::start().await;
    let body = json!({"id": "same-id", "type": "web_hook", "address": rx.url});
    assert_eq!(
        emu.call(Method::POST, WATCH, &t, Some(body.clone()))
            .await
            .status,
        200
    );
    let again = emu.call(Method::POST, WATCH, &t, Some(body)).await;
    assert_eq!(again.status, 400);
    assert_eq!(error_reason(&again), "channelIdNotUnique");
}

#[tokio::test]
async fn watch_answers_a_channel_with_string_expiration_and_sends_sync_then_one_exists_per_change()
{
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let rx = Receiver::start().await;
    let r = emu
        .call(Method::POST, WATCH, &t, Some(json!({"id": "chan-1", "type": "web_hook", "address": rx.url, "token": "tok", "params": {"ttl": "3600"}})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["kind"], "api#channel");
    assert_eq!(r.body["id"], "chan-1");
    assert_eq!(r.body["token"], "tok");
    let exp: i64 = r.body["expiration"]
        .as_str()
        .expect("expiration is a string")
        .parse()
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    assert!((exp - now - 3_600_000).abs() < 60_000);
    assert!(r.body["resourceUri"]
        .as_str()
        .unwrap()
        .contains("/calendar/v3/calendars/"));
    let resource_id = r.body["resourceId"].as_str().unwrap().to_string();
    eventually("the sync message", || async { rx.count() == 1 }).await;
    {
        let got = rx.got.lock();
        let h = &got[0].headers;
        assert_eq!(h["x-goog-resource-state"], "sync");
        assert_eq!(h["x-goog-message-number"], "1");
    }
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
    eventually("two exists messages", || async { rx.count() == 3 }).await;
    let got = rx.got.lock().clone();
    let mut numbers = Vec::new();
    for n in &got[1..] {
        let h = &n.headers;
        assert_eq!(h["x-goog-resource-state"], "exists");
        assert_eq!(h["x-goog-channel-id"], "chan-1");
        assert_eq!(h["x-goog-channel-token"], "tok");
        assert_eq!(h["x-goog-resource-id"].to_str().unwrap(), resource_id);
        assert!(h["x-goog-resource-uri"]
            .to_str()
            .unwrap()
            .contains("/events"));
        assert!(h["x-goog-channel-expiration"]
            .to_str()
            .unwrap()
            .ends_with("GMT"));
        assert!(h["user-agent"].to_str().unwrap().starts_with("APIs-Google"));
        assert_eq!(n.body_len, 0);
        numbers.push(
            h["x-goog-message-number"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    numbers.sort();
    assert!(numbers[0] > 1 && numbers[1] > numbers[0]);
}

#[tokio::test]
async fn resource_id_is_stable_per_calendar() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let rx = Receiver::start().await;
    let a = emu
        .call(
            Method::POST,
            WATCH,
            &t,
            Some(json!({"id": "a", "type": "web_hook", "address": rx.url})),
        )
        .await;
    let b = emu
        .call(
            Method::POST,
            WATCH,
            &t,
            Some(json!({"id": "b", "type": "webhook", "address": rx.url})),
        )
        .await;
    assert_eq!(a.body["resourceId"], b.body["resourceId"]);
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let rx = Receiver::start().await;
    rx.script.lock().extend([503, 500]);
    emu.call(
        Method::POST,
        WATCH,
        &t,
        Some(json!({"id": "r", "type": "web_hook", "address": rx.url})),
    )
    .await;
    eventually("sync delivered after two retries", || async {
        rx.count() == 3
    })
    .await;
    rx.script.lock().push(404);
    emu.insert(
        &t,
        timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
    )
    .await;
    eventually("the 404 answer is recorded as a failure", || async {
        let c = emu.control(Method::GET, "/emulator/channels", None).await;
        c.body["channels"][0]["failed"] == 1
    })
    .await;
    assert_eq!(rx.count(), 4);
}

#[tokio::test]
async fn expired_and_stopped_channels_send_nothing() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let rx = Receiver::start().await;
    let ch = emu
        .call(
            Method::POST,
            WATCH,
            &t,
            Some(
                json!({"id": "e", "type": "web_hook", "address": rx.url, "params": {"ttl": "60"}}),
            ),
        )
        .await;
    eventually("sync", || async { rx.count() == 1 }).await;
    emu.control(
        Method::POST,
        "/emulator/clock/advance",
        Some(json!({"seconds": 61})),
    )
    .await;
    emu.insert(
        &t,
        timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
    )
    .await;
    let c = emu.control(Method::GET, "/emulator/channels", None).await;
    assert_eq!(c.body["channels"][0]["live"], false);
    // Stopping an expired channel: it still exists for its owner, so stop succeeds.
    let stop = emu
        .call(
            Method::POST,
            "/calendar/v3/channels/stop",
            &emu.token(0).await,
            Some(json!({"id": "e", "resourceId": ch.body["resourceId"]})),
        )
        .await;
    assert_eq!(stop.status, 204);
    assert_eq!(rx.count(), 1);
}

#[tokio::test]
async fn channels_stop_needs_matching_ids_and_the_creating_user() {
    let emu = TestEmu::start(2).await;
    let t = emu.token(0).await;
    let rx = Receiver::start().await;
    let ch = emu
        .call(
            Method::POST,
            WATCH,
            &t,
            Some(json!({"id": "s", "type": "web_hook", "address": rx.url})),
        )
        .await;
    let rid = ch.body["resourceId"].clone();
    let missing = emu
        .call(
            Method::POST,
            "/calendar/v3/channels/stop",
            &t,
            Some(json!({"id": "s"})),
        )
        .await;
    assert_eq!(missing.status, 400);
    let other = emu
        .call(
            Method::POST,
            "/calendar/v3/channels/stop",
            &emu.token(1).await,
            Some(json!({"id": "s", "resourceId": rid})),
        )
        .await;
    assert_eq!(other.status, 404);
    let unknown = emu
        .call(
            Method::POST,
            "/calendar/v3/channels/stop",
            &t,
            Some(json!({"id": "nope", "resourceId": rid})),
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.body["error"]["message"],
        "Channel 'nope' not found for project '424242424242'"
    );
    let ok = emu
        .call(
            Method::POST,
            "/calendar/v3/channels/stop",
            &t,
            Some(json!({"id": "s", "resourceId": rid})),
        )
        .await;
    assert_eq!(ok.status, 204);
    assert!(ok.text.is_empty());
    eventually("sync", || async { rx.count() == 1 }).await;
    emu.insert(
        &t,
        timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
    )
    .await;
    let again = emu
        .call(
            Method::POST,
            "/calendar/v3/channels/stop",
            &t,
            Some(json!({"id": "s", "resourceId": rid})),
        )
        .await;
    assert_eq!(again.status, 404);
    assert_eq!(rx.count(), 1);
}

#[tokio::test]
async fn notification_faults_drop_and_duplicate() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let rx = Receiver::start().await;
    emu.call(
        Method::POST,
        WATCH,
        &t,
        Some(json!({"id": "f", "type": "web_hook", "address": rx.url})),
    )
    .await;
    eventually("sync", || async { rx.count() == 1 }).await;
    emu.fault(json!({"kind": "dropNotification", "count": 1}))
        .await;
    emu.insert(
        &t,
        timed("dropped", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
    )
    .await;
    emu.fault(json!({"kind": "duplicateNotification", "count": 1}))
        .await;
    emu.insert(
        &t,
        timed("twice", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
    )
    .await;
    eventually("the duplicated notification", || async { rx.count() == 3 }).await;
    let c = emu.control(Method::GET, "/emulator/channels", None).await;
    assert_eq!(c.body["channels"][0]["dropped"], 1);
}

#[tokio::test]
async fn delayed_notifications_still_arrive() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let rx = Receiver::start().await;
    emu.call(
        Method::POST,
        WATCH,
        &t,
        Some(json!({"id": "d", "type": "web_hook", "address": rx.url})),
    )
    .await;
    eventually("sync", || async { rx.count() == 1 }).await;
    emu.fault(json!({"kind": "delayNotification", "delayMs": 50, "count": 1}))
        .await;
    emu.insert(
        &t,
        timed("late", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
    )
    .await;
    eventually("the delayed exists message", || async {
        rx.states() == ["sync", "exists"]
    })
    .await;
}

#[tokio::test]
async fn watch_rejects_list_parameters_google_rejects() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let r = emu
        .call(
            Method::POST,
            &format!("{WATCH}?orderBy=startTime"),
            &t,
            Some(json!({"id": "w", "type": "web_hook", "address": "https://x.example/h"})),
        )
        .await;
    assert_eq!(r.status, 400);
}
