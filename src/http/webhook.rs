//! `POST /webhooks/google`: Calendar push notifications.
//!
//! A ping carries no event data, only `X-Goog-*` headers naming the channel. The handler
//! parses them into a [`WebhookPing`], lets [`Control::ping`](crate::actors::Control::ping)
//! authenticate it (channel token) and hint the account's CalendarActor, and answers at once —
//! no Google call happens before the answer. Status codes follow Google's delivery rules:
//! 2xx is delivered; a 4xx is a failed delivery Google does not retry (unknown or stopped
//! channel: 404, wrong token: 403, malformed: 400); a 5xx would be retried, so it is only
//! used when the store cannot be read.
//!
//! Replays are dropped before `Control` sees them: in process by [`PingMemory`] (always) and
//! across replicas by Redis (when configured). A dropped replay is answered 200, so Google
//! does not retry it, and causes no sync. A ping that was refused or could not be handled is
//! forgotten by both before it is answered, so Google's retry of a 503 is handled.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Extension;

use super::replay::{Admission, PingMemory};
use super::AppState;
use crate::actors::{ControlError, PingOutcome, WebhookPing};
use crate::domain::SyncId;
use crate::metrics::WEBHOOK_PINGS;

const CHANNEL_ID: &str = "x-goog-channel-id";
const CHANNEL_TOKEN: &str = "x-goog-channel-token";
const RESOURCE_ID: &str = "x-goog-resource-id";
const RESOURCE_STATE: &str = "x-goog-resource-state";
const MESSAGE_NUMBER: &str = "x-goog-message-number";

pub(super) async fn google(
    State(state): State<AppState>,
    Extension(memory): Extension<Arc<PingMemory>>,
    headers: HeaderMap,
) -> (StatusCode, &'static str) {
    let received = Instant::now();
    let Some(ping) = parse(&headers, received) else {
        count("malformed");
        return (StatusCode::BAD_REQUEST, "missing X-Goog-Channel-ID\n");
    };
    let (channel, token, number) = (
        ping.channel_id.clone(),
        ping.token.clone(),
        ping.message_number,
    );
    let seen = seen_key(&state, &ping);
    if memory.admit(&channel, token.as_deref(), number) == Admission::Replay
        || is_duplicate(&state, seen.as_deref()).await
    {
        count("duplicate");
        return (StatusCode::OK, "");
    }
    let sync_id = ping.sync_id;
    tracing::Span::current().record("sync_id", tracing::field::display(sync_id));
    let outcome = state.control.ping(ping).await;
    if !matches!(outcome, Ok(PingOutcome::Accepted | PingOutcome::Sync)) {
        // Refused (forged, unknown) or not handled (store down, Google retries): the next
        // ping with this number must not count as a replay, here or on any replica.
        memory.forget(&channel, token.as_deref(), number);
        forget_seen(&state, seen.as_deref()).await;
    }
    answer(outcome, sync_id, &channel)
}

/// The status Google gets for what `Control` made of the ping.
fn answer(
    outcome: Result<PingOutcome, ControlError>,
    sync_id: SyncId,
    channel: &str,
) -> (StatusCode, &'static str) {
    match outcome {
        Ok(PingOutcome::Accepted) => {
            count("accepted");
            tracing::info!(%sync_id, channel, "push ping accepted; a sync follows");
            (StatusCode::OK, "")
        }
        Ok(PingOutcome::Sync) => {
            count("sync");
            (StatusCode::OK, "")
        }
        Ok(PingOutcome::UnknownChannel) => {
            count("unknown_channel");
            (StatusCode::NOT_FOUND, "unknown channel\n")
        }
        Ok(PingOutcome::BadToken) => {
            count("bad_token");
            tracing::warn!("webhook ping with a wrong channel token refused");
            (StatusCode::FORBIDDEN, "bad channel token\n")
        }
        Err(e) => {
            count("error");
            tracing::warn!(error = %e, "webhook ping could not be handled");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n")
        }
    }
}

/// The ping's de-duplication key in Redis; `None` without Redis or without a message
/// number. The key includes the token, so a forger without it cannot burn real message
/// numbers; only its hash is stored.
fn seen_key(state: &AppState, ping: &WebhookPing) -> Option<String> {
    state.coordinator.as_ref()?;
    let number = ping.message_number?;
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(ping.channel_id.as_bytes());
    hash.update([0]);
    hash.update(ping.token.as_deref().unwrap_or_default().as_bytes());
    hash.update([0]);
    hash.update(number.to_be_bytes());
    Some(format!("ping:{}", hex::encode(hash.finalize())))
}

/// With Redis, a ping already seen (Google retried it, or another replica got it) is
/// dropped. A Redis failure lets the ping through: an extra sync is harmless, a lost one not.
async fn is_duplicate(state: &AppState, key: Option<&str>) -> bool {
    let (Some(redis), Some(key)) = (&state.coordinator, key) else {
        return false;
    };
    match redis.first_seen(key, DEDUPE_WINDOW).await {
        Ok(first) => !first,
        Err(e) => {
            tracing::warn!(error = %e, "Redis could not de-duplicate a webhook ping");
            false
        }
    }
}

/// Forgets a ping that was not handled, before Google gets the answer that makes it retry.
/// Should Redis fail here, the retry is dropped until the key expires ([`DEDUPE_WINDOW`]);
/// the backstop poll still finds the change.
async fn forget_seen(state: &AppState, key: Option<&str>) {
    let (Some(redis), Some(key)) = (&state.coordinator, key) else {
        return;
    };
    if let Err(e) = redis.forget_seen(key).await {
        tracing::warn!(error = %e, "Redis could not forget an unhandled webhook ping");
    }
}

/// How long a delivered ping's message number is remembered.
const DEDUPE_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

fn count(result: &'static str) {
    metrics::counter!(WEBHOOK_PINGS, "result" => result).increment(1);
}

/// The ping in the headers; `None` without a channel id (nothing to route it by).
fn parse(headers: &HeaderMap, received: Instant) -> Option<WebhookPing> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Some(WebhookPing {
        channel_id: text(CHANNEL_ID)?,
        token: text(CHANNEL_TOKEN),
        resource_id: text(RESOURCE_ID),
        resource_state: text(RESOURCE_STATE).unwrap_or_else(|| "exists".to_owned()),
        message_number: text(MESSAGE_NUMBER).and_then(|n| n.parse().ok()),
        received,
        sync_id: SyncId::random(),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn a_ping_is_read_from_googles_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(CHANNEL_ID, HeaderValue::from_static("chan-1"));
        headers.insert(CHANNEL_TOKEN, HeaderValue::from_static("tok"));
        headers.insert(RESOURCE_ID, HeaderValue::from_static("res-1"));
        headers.insert(RESOURCE_STATE, HeaderValue::from_static("exists"));
        headers.insert(MESSAGE_NUMBER, HeaderValue::from_static("11414032"));

        let ping = parse(&headers, Instant::now()).unwrap();

        assert_eq!(ping.channel_id, "chan-1");
        assert_eq!(ping.token.as_deref(), Some("tok"));
        assert_eq!(ping.resource_id.as_deref(), Some("res-1"));
        assert_eq!(ping.resource_state, "exists");
        assert_eq!(ping.message_number, Some(11_414_032));
    }

    #[test]
    fn a_ping_without_a_channel_id_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(RESOURCE_STATE, HeaderValue::from_static("exists"));

        assert!(parse(&headers, Instant::now()).is_none());
    }
}
