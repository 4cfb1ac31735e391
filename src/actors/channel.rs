//! Push channels (`events.watch`): opening, renewing and stopping a calendar's channel, and
//! the channel token that authenticates its pings.
//!
//! Role: the `CalendarActor` calls [`ensure`] at start and whenever its renewal timer fires,
//! and schedules the next call from the answer; `Control` calls [`stop_current`] when an
//! account is removed and checks pings with [`token_hash`]. A channel is renewed well before
//! it expires (`CHANNEL_RENEW_BEFORE_SECS`) with a new channel id, and the old one is
//! stopped. Without `WEBHOOK_BASE_URL` there is no channel: the backstop poll alone triggers
//! syncs.

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret as _;
use sha2::{Digest, Sha256};

use crate::domain::ChannelId;
use crate::google::{AccountClient, GoogleError};
use crate::services::Services;
use crate::store::{log_kind, Account, LogResult, NewChannel, NewLogEntry, WatchChannel};

/// How long to wait before retrying a failed channel creation.
const CHANNEL_RETRY: Duration = Duration::from_secs(300);
/// Never renew sooner than this after a renewal (guards a tiny TTL or a clock skew).
const MIN_RENEW_DELAY: Duration = Duration::from_secs(30);

/// What [`ensure`] found or did, and so when to call it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ensured {
    /// No `WEBHOOK_BASE_URL`: no channel, nothing to renew.
    NoPush,
    /// A channel is open; renew it after this long.
    RenewIn(Duration),
    /// Google refused the account's refresh token.
    InvalidGrant,
}

/// Makes sure `account` has a push channel that is not about to expire.
pub(super) async fn ensure(
    services: &Services,
    client: &AccountClient,
    account: &Account,
) -> Ensured {
    let Some(address) = services.settings.webhook_url() else {
        return Ensured::NoPush;
    };
    let settings = &services.settings.sync;
    // The futures below are boxed: this one is awaited by every actor at once at a start,
    // and then holds no more than its wait for a permit.
    let current = match Box::pin(services.current_channel(account.id)).await {
        Ok(current) => current,
        Err(e) => {
            tracing::warn!(account_id = %account.id, error = %e, "cannot read the watch channel; retrying later");
            return Ensured::RenewIn(CHANNEL_RETRY);
        }
    };
    let renew_before = chrono::TimeDelta::from_std(settings.channel_renew_before)
        .unwrap_or(chrono::TimeDelta::zero());
    if let Some(channel) = &current {
        if let Ok(wait) = (channel.expires_at - renew_before - Utc::now()).to_std() {
            if !wait.is_zero() {
                return Ensured::RenewIn(wait);
            }
        }
    }
    // The semaphore is never closed.
    let _opening = services.channel_permits.acquire().await;
    let opened = match Box::pin(open(services, client, account, &address)).await {
        Ok(opened) => opened,
        Err(GoogleError::InvalidGrant) => return Ensured::InvalidGrant,
        Err(e) => {
            tracing::warn!(account_id = %account.id, error = %e, "cannot open a watch channel; polling meanwhile");
            Box::pin(
                services.store.log_best_effort(
                    NewLogEntry::new(log_kind::CHANNEL_CREATED, LogResult::Error, e.to_string())
                        .account(account.id),
                ),
            )
            .await;
            return Ensured::RenewIn(CHANNEL_RETRY);
        }
    };
    let Some(expires_at) = opened else {
        return Ensured::RenewIn(CHANNEL_RETRY);
    };
    if let Some(old) = current {
        Box::pin(stop(services, client, &old)).await;
    }
    let wait = (expires_at - renew_before - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO)
        .max(MIN_RENEW_DELAY);
    Ensured::RenewIn(wait)
}

/// Opens a new channel and records it; `Ok(None)` when it could not be recorded (it is
/// stopped again, since its pings would be refused as unknown).
async fn open(
    services: &Services,
    client: &AccountClient,
    account: &Account,
    address: &url::Url,
) -> Result<Option<chrono::DateTime<Utc>>, GoogleError> {
    let channel_id = ChannelId::random();
    let token = channel_token(services, &channel_id);
    let ttl = services.settings.sync.channel_ttl;
    let channel = client
        .events_watch(
            &account.calendar_id,
            &channel_id,
            address,
            Some(&token),
            Some(ttl),
        )
        .await?;
    let expires_at = channel.expires_at().unwrap_or_else(|| {
        Utc::now() + chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::days(7))
    });
    let saved = services
        .store
        .save_channel(NewChannel {
            account_id: account.id,
            channel_id: channel_id.clone(),
            resource_id: channel.resource_id.clone(),
            token_hash: Some(token_hash(&token)),
            expires_at,
        })
        .await;
    if let Err(e) = saved {
        tracing::warn!(account_id = %account.id, error = %e, "cannot record the watch channel; stopping it");
        let _ = client
            .channels_stop(&channel_id, &channel.resource_id)
            .await;
        return Ok(None);
    }
    tracing::info!(account_id = %account.id, channel = %channel_id, %expires_at, "watch channel opened");
    services
        .store
        .log_best_effort(
            NewLogEntry::new(
                log_kind::CHANNEL_CREATED,
                LogResult::Ok,
                format!("channel {channel_id}"),
            )
            .account(account.id),
        )
        .await;
    Ok(Some(expires_at))
}

/// Stops a channel at Google (a 404 means it is gone already) and marks it stopped.
async fn stop(services: &Services, client: &AccountClient, channel: &WatchChannel) {
    match client
        .channels_stop(&channel.channel_id, &channel.resource_id)
        .await
    {
        Ok(()) | Err(GoogleError::NotFound) => {}
        Err(e) => {
            tracing::warn!(channel = %channel.channel_id, error = %e, "could not stop the old watch channel; it will expire");
        }
    }
    if let Err(e) = services
        .store
        .mark_channel_stopped(&channel.channel_id, crate::store::now())
        .await
    {
        tracing::warn!(channel = %channel.channel_id, error = %e, "could not mark the channel stopped");
    }
    services
        .store
        .log_best_effort(
            NewLogEntry::new(
                log_kind::CHANNEL_STOPPED,
                LogResult::Ok,
                format!("channel {}", channel.channel_id),
            )
            .account(channel.account_id),
        )
        .await;
}

/// Stops the account's current channel, best effort (removal of an account).
pub(crate) async fn stop_current(services: &Services, account: &Account) {
    let Ok(Some(channel)) = services.store.current_channel(account.id).await else {
        return;
    };
    match services.account_client(account.id).await {
        Ok(client) => stop(services, &client, &channel).await,
        Err(e) => {
            tracing::warn!(account_id = %account.id, error = %e, "cannot stop the watch channel");
        }
    }
}

/// The channel token: hex HMAC-SHA256 of the channel id under `WEBHOOK_SECRET` (or, without
/// one, the installation id), so a ping can be checked without storing the token itself.
pub(crate) fn channel_token(services: &Services, channel: &ChannelId) -> String {
    let key: Vec<u8> = match &services.settings.webhook_secret {
        Some(secret) => secret.expose_secret().as_bytes().to_vec(),
        None => services.installation.as_bytes().to_vec(),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts a key of any length");
    mac.update(channel.as_str().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What the store keeps of a channel token: its SHA-256, hex.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
