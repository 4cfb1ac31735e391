//! Webhook pings replayed against a running service: a genuine ping (right channel, token
//! and resource, as Google sends it) sent again and again must cost the account no further
//! `events.list` calls, counted at the emulator — and a ping the service could not handle
//! (answered 503, so Google retries it) must not be remembered as seen, in process or in
//! Redis, or Google's retry would be dropped as a replay.

use hmac::{Hmac, Mac as _};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use sea_orm::ConnectionTrait as _;

use crate::support::{spawn_app, AppOptions, Backend, TestApp};

/// The `WEBHOOK_SECRET` of `support::base_vars`, which keys every channel token.
const WEBHOOK_SECRET: &str = "sync-tests-webhook-secret";

/// The headers of one push notification on a channel.
struct Ping {
    channel_id: String,
    token: String,
    resource_id: String,
}

impl Ping {
    /// The genuine ping of calendar `n`'s open channel, its token checked against the
    /// hash the service stored.
    async fn of(app: &TestApp, n: usize) -> Ping {
        let channel = app
            .store()
            .current_channel(app.calendars[n].account)
            .await
            .expect("the store answers")
            .expect("an open channel");
        let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
        mac.update(channel.channel_id.as_str().as_bytes());
        let token = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            channel.token_hash.as_deref(),
            Some(hex::encode(Sha256::digest(token.as_bytes())).as_str()),
            "the token is the channel's own"
        );
        Ping {
            channel_id: channel.channel_id.as_str().to_owned(),
            token,
            resource_id: channel.resource_id,
        }
    }

    /// Delivers the ping with message `number`; returns the status the service answered.
    async fn send(&self, app: &TestApp, number: u64) -> u16 {
        self.send_state(app, number, "exists").await
    }

    /// [`Ping::send`] with another `X-Goog-Resource-State` (`sync`: the channel was opened).
    async fn send_state(&self, app: &TestApp, number: u64, state: &str) -> u16 {
        app.http
            .post(format!("http://127.0.0.1:{}/webhooks/google", app.port))
            .header("X-Goog-Channel-ID", &self.channel_id)
            .header("X-Goog-Channel-Token", &self.token)
            .header("X-Goog-Resource-ID", &self.resource_id)
            .header("X-Goog-Resource-State", state)
            .header("X-Goog-Message-Number", number.to_string())
            .send()
            .await
            .expect("the webhook answers")
            .status()
            .as_u16()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_ping_replayed_fifty_times_without_redis_causes_no_further_sync() {
    // Arrange: one calendar with push; the backstop poll far away.
    let app = spawn_app(
        AppOptions::new("a_genuine_ping_replayed_fifty_times")
            .accounts(1)
            .var("POLL_INTERVAL_SECS", "3600"),
    )
    .await
    .expect("SQLite is always available");
    let ping = Ping::of(&app, 0).await;
    // Above any number the emulator has used on this channel, so its own notifications
    // cannot be mistaken for this one.
    let number = 10_000;
    app.reset_counters().await;

    // Act: one delivery and 49 replays, each answered 200 so Google would not retry.
    let mut statuses = Vec::new();
    for _ in 0..50 {
        statuses.push(ping.send(&app, number).await);
    }
    // Then a change and the channel's next genuine ping: once the service has stored the
    // change, the actor has worked through every earlier ping too.
    let event = app
        .user(0)
        .insert(json!({
            "summary": "After the replays",
            "start": {"dateTime": "2030-01-07T10:00:00Z"},
            "end": {"dateTime": "2030-01-07T11:00:00Z"},
        }))
        .await;
    let next = ping.send(&app, number + 1).await;
    let id = event["id"].as_str().expect("an event id");
    app.await_synced(0, id, "summary", &json!("After the replays"))
        .await;

    // Assert: one events.list for the first delivery, one for the next ping; none for the
    // 49 replays.
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(next, 200);
    let lists = app.ok_count("events.list").await;
    assert!(
        (1..=2).contains(&lists),
        "{lists} events.list calls for 50 copies of one ping and the next"
    );
}

/// Makes every read of the push channels fail until [`restore_channels`]: the table is
/// renamed away, as real a store failure as a dropped connection, and on both backends.
async fn break_channels(app: &TestApp) {
    app.store()
        .connection()
        .execute_unprepared("ALTER TABLE watch_channels RENAME TO watch_channels_away")
        .await
        .expect("the table is renamed away");
}

async fn restore_channels(app: &TestApp) {
    app.store()
        .connection()
        .execute_unprepared("ALTER TABLE watch_channels_away RENAME TO watch_channels")
        .await
        .expect("the table is renamed back");
}

async fn a_ping_answered_503_is_handled_when_google_retries_it_with_redis(backend: Backend) {
    // Arrange: one calendar with push and Redis; the backstop poll far away, so only a
    // handled ping can sync the change made below.
    let Ok(redis) = std::env::var("MCSS_TEST_REDIS_URL") else {
        eprintln!("skipped: MCSS_TEST_REDIS_URL unset");
        return;
    };
    let Some(app) = spawn_app(
        AppOptions::new("a_ping_answered_503_is_handled_when_google_retries_it")
            .backend(backend)
            .accounts(1)
            .var("POLL_INTERVAL_SECS", "3600")
            .var("REDIS_URL", redis),
    )
    .await
    else {
        return;
    };
    let ping = Ping::of(&app, 0).await;
    let number = 10_000;
    // The emulator's own notification of the change is lost: only the pings sent here
    // can tell the service about it.
    app.add_fault(json!({"kind": "dropNotification"})).await;
    let event = app
        .user(0)
        .insert(json!({
            "summary": "Changed while the store was down",
            "start": {"dateTime": "2030-01-08T10:00:00Z"},
            "end": {"dateTime": "2030-01-08T11:00:00Z"},
        }))
        .await;
    let id = event["id"].as_str().expect("an event id");
    break_channels(&app).await;

    // Act: the ping arrives while the store is down, then Google retries the same message
    // number once the store is back.
    let first = ping.send(&app, number).await;
    restore_channels(&app).await;
    let retry = ping.send(&app, number).await;

    // Assert: the first answer asks Google to retry; the retry is handled, so the change is
    // synced.
    assert_eq!(first, 503, "the ping could not be handled");
    assert_eq!(retry, 200);
    app.await_synced(0, id, "summary", &json!("Changed while the store was down"))
        .await;
}

on_both_backends!(a_ping_answered_503_is_handled_when_google_retries_it_with_redis);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_message_of_a_new_channel_is_answered_without_reading_the_store() {
    // Arrange: one calendar with push, and the channel table out of reach, so any lookup
    // fails. (Opening 10,000 channels at start-up brings 10,000 of these messages at once;
    // their lookups queued behind the first syncs and held every request in memory.)
    let app = spawn_app(AppOptions::new("the_sync_message_of_a_new_channel").accounts(1))
        .await
        .expect("SQLite is always available");
    let ping = Ping::of(&app, 0).await;
    break_channels(&app).await;

    // Act: the `sync` message Google sends when a channel opens, then a change ping.
    let sync = ping.send_state(&app, 1, "sync").await;
    let change = ping.send(&app, 2).await;
    restore_channels(&app).await;

    // Assert: the sync message says nothing changed, so it needs no lookup and gets its
    // 200; the change ping needs the channel, and gets a 503 for Google to retry.
    assert_eq!(sync, 200, "the sync message is delivered");
    assert_eq!(
        change, 503,
        "a change ping is retried while the store is out of reach"
    );
}
