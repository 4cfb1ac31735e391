//! Webhook pings replayed against a running service without Redis: a genuine ping (right
//! channel, token and resource, as Google sends it) sent again and again must cost the
//! account no further `events.list` calls, counted at the emulator.

use hmac::{Hmac, Mac as _};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::support::{spawn_app, AppOptions, TestApp};

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
        app.http
            .post(format!("http://127.0.0.1:{}/webhooks/google", app.port))
            .header("X-Goog-Channel-ID", &self.channel_id)
            .header("X-Goog-Channel-Token", &self.token)
            .header("X-Goog-Resource-ID", &self.resource_id)
            .header("X-Goog-Resource-State", "exists")
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
