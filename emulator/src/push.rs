//! Push channels and the delivery of Google-style notifications.
//!
//! `events.watch` creates a [`Channel`] on a calendar; every change in that calendar then
//! calls [`notify`] once per live channel, which spawns one delivery task: an empty-body POST
//! with all `X-Goog-*` headers, retried with exponential backoff on 500/502/503/504 and on
//! connection errors, given up on any other status. Deliveries stop after the channel's
//! expiration (emulator clock) or once it is stopped. Notification faults (drop, duplicate,
//! delay) are applied here.
use crate::faults::FaultKind;
use crate::state::Shared;
use rand::Rng;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One watch channel.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub id: String,
    pub resource_id: String,
    pub resource_uri: String,
    pub token: Option<String>,
    /// Milliseconds since the epoch, emulator clock.
    pub expiration_ms: i64,
    pub address: String,
    pub calendar_id: String,
    /// The user and OAuth client that created it: only they may stop it.
    pub owner: String,
    pub client_id: String,
    pub stopped: AtomicBool,
    /// Last message number used; numbers grow with gaps like Google's.
    #[serde(skip)]
    pub message_number: AtomicU64,
    /// Notifications acknowledged with a success status.
    pub delivered: AtomicU64,
    /// Notifications given up (non-retryable status or attempts exhausted).
    pub failed: AtomicU64,
    /// Notifications dropped by a fault rule.
    pub dropped: AtomicU64,
    /// HTTP attempts made, retries included.
    pub attempts: AtomicU64,
}

impl Channel {
    pub fn is_live(&self, now_ms: i64) -> bool {
        !self.stopped.load(Ordering::Relaxed) && now_ms < self.expiration_ms
    }

    fn next_message_number(&self, state: &str) -> u64 {
        if state == "sync" {
            return self.message_number.fetch_max(1, Ordering::SeqCst).max(1);
        }
        let gap = rand::thread_rng().gen_range(1..=7);
        self.message_number.fetch_add(gap, Ordering::SeqCst) + gap
    }
}

/// Sends one notification (`sync` or `exists`) on a channel, in the background.
pub fn notify(shared: &Arc<Shared>, channel: &Arc<Channel>, state: &'static str) {
    let mut copies = 1;
    let mut delay_ms = 0;
    if !shared.faults.is_empty() {
        let kinds = [
            FaultKind::DropNotification,
            FaultKind::DuplicateNotification,
            FaultKind::DelayNotification,
        ];
        if let Some(rule) = shared
            .faults
            .pick(Some(&channel.owner), "push.notify", &kinds)
        {
            match rule.kind {
                FaultKind::DropNotification => {
                    channel.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                FaultKind::DuplicateNotification => copies = 2,
                _ => delay_ms = rule.delay_ms.unwrap_or(1000),
            }
        }
    }
    for _ in 0..copies {
        let number = channel.next_message_number(state);
        let shared = shared.clone();
        let channel = channel.clone();
        tokio::spawn(async move {
            if delay_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            }
            deliver(&shared, &channel, state, number).await;
        });
    }
}

async fn deliver(shared: &Shared, channel: &Channel, state: &str, number: u64) {
    let (base_ms, max_attempts) = {
        let s = shared.settings.read();
        (s.push_retry_base_ms, s.push_max_attempts.max(1))
    };
    let expiration = chrono::DateTime::from_timestamp_millis(channel.expiration_ms)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default();
    for attempt in 0..max_attempts {
        if !channel.is_live(shared.clock.now_ms()) {
            return;
        }
        channel.attempts.fetch_add(1, Ordering::Relaxed);
        let mut req = shared
            .push_client
            .post(&channel.address)
            .header("Content-Type", "application/json; utf-8")
            .header("Content-Length", "0")
            .header("X-Goog-Channel-ID", &channel.id)
            .header("X-Goog-Message-Number", number.to_string())
            .header("X-Goog-Resource-ID", &channel.resource_id)
            .header("X-Goog-Resource-State", state)
            .header("X-Goog-Resource-URI", &channel.resource_uri)
            .header("X-Goog-Channel-Expiration", &expiration);
        if let Some(t) = &channel.token {
            req = req.header("X-Goog-Channel-Token", t);
        }
        let retry = match req.send().await {
            Ok(resp) => match resp.status().as_u16() {
                200 | 201 | 202 | 204 | 102 => {
                    channel.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                500 | 502 | 503 | 504 => true,
                _ => false,
            },
            Err(_) => true,
        };
        if !retry || attempt + 1 == max_attempts {
            break;
        }
        let backoff = base_ms.saturating_mul(1 << attempt.min(16));
        let jitter = rand::thread_rng().gen_range(0..=base_ms / 4 + 1);
        tokio::time::sleep(std::time::Duration::from_millis(backoff + jitter)).await;
    }
    channel.failed.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(channel = %channel.id, "push notification given up");
}

/// Fans one change of a calendar out to its live channels.
pub fn calendar_changed(shared: &Arc<Shared>, channels: &[Arc<Channel>]) {
    let now = shared.clock.now_ms();
    for ch in channels.iter().filter(|c| c.is_live(now)) {
        notify(shared, ch, "exists");
    }
}
