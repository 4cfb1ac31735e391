//! Coordination between replicas: who this process is ([`Replica`]: its id, the calendars it
//! owns now and the fence of each), how it reaches the others ([`Note`]s, sent through Redis
//! pub/sub when `REDIS_URL` is set, PostgreSQL `NOTIFY` otherwise), and the optional Redis
//! connection itself ([`Coordinator`], fred): webhook de-duplication across replicas, pub/sub,
//! the admin pages' shared state, health reporting.
//!
//! [`Replica`] is shared by every actor through `Services`. On SQLite the process is the only
//! replica ([`Replica::sole`]: it owns every calendar, nothing is fenced); on PostgreSQL
//! ([`Replica::leased`]) it owns what `actors::ownership` acquired, each calendar until the
//! local deadline of its lease — set a margin before the database's expiry, so a paused or
//! partitioned replica stops writing on its own before anyone else may start.
//!
//! Without `REDIS_URL` nothing here needs Redis. Every Redis command has a timeout, so a slow
//! Redis degrades `/health/detailed`, never a request. A Redis that cannot be reached at
//! start is a [`ConfigError`] naming `REDIS_URL` and its host (never the password the URL may
//! hold).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::domain::AccountId;
use crate::store::{Fence, Store, StoreError};

use std::time::Duration;

use fred::prelude::*;
use fred::types::{Expiration, SetOptions};
use secrecy::{ExposeSecret, SecretString};

use crate::config::ConfigError;

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// `REDIS_URL` cannot be used: not a Redis URL, or nothing answers there.
    #[error("{0}")]
    Unusable(#[from] ConfigError),
    #[error("Redis command failed: {0}")]
    Command(#[from] fred::error::Error),
}

impl CoordinatorError {
    fn unusable(problem: String) -> Self {
        Self::Unusable(ConfigError::new("REDIS_URL", problem))
    }
}

/// A small pool of Redis connections.
#[derive(Clone)]
pub struct Coordinator {
    pool: Pool,
    /// Kept to open a dedicated subscriber connection ([`Coordinator::subscribe`]).
    config: Config,
    timeout: Duration,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Coordinator")
    }
}

const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

impl Coordinator {
    /// Connects, failing within `timeout` when Redis is not there.
    pub async fn connect(url: &SecretString, timeout: Duration) -> Result<Self, CoordinatorError> {
        let place = describe(url.expose_secret());
        let config = Config::from_url(url.expose_secret()).map_err(|e| {
            CoordinatorError::unusable(format!("is not a usable Redis URL: {}", e.details()))
        })?;
        let pool = Builder::from_config(config.clone())
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = COMMAND_TIMEOUT;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 10_000, 2))
            .build_pool(2)
            .map_err(|e| {
                CoordinatorError::unusable(format!("is not a usable Redis URL: {}", e.details()))
            })?;
        match tokio::time::timeout(timeout, pool.init()).await {
            Ok(Ok(_)) => Ok(Self {
                pool,
                config,
                timeout,
            }),
            Ok(Err(e)) => {
                // The reconnect policy keeps trying in the background unless told to stop.
                let _ = pool.quit().await;
                Err(CoordinatorError::unusable(format!(
                    "{place} is unreachable: {}",
                    io_words(e.details())
                )))
            }
            Err(_) => {
                let _ = pool.quit().await;
                Err(CoordinatorError::unusable(format!(
                    "{place} did not answer within {} s",
                    timeout.as_secs()
                )))
            }
        }
    }

    pub async fn ping(&self) -> Result<(), CoordinatorError> {
        let _: String = self.pool.ping(None).await?;
        Ok(())
    }

    /// True the first time `key` is seen within `ttl`: used to drop a webhook ping that
    /// another replica (or a Google retry) already handled.
    pub async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, CoordinatorError> {
        let set: Option<String> = self
            .pool
            .set(
                seen_key(key),
                "1",
                Some(Expiration::EX(ttl.as_secs().max(1) as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.is_some())
    }

    /// Undoes [`Self::first_seen`] of `key`: the ping it stood for was not handled, so
    /// Google's retry of it must not be dropped as already seen.
    pub async fn forget_seen(&self, key: &str) -> Result<(), CoordinatorError> {
        let _removed: i64 = self.pool.del(seen_key(key)).await?;
        Ok(())
    }

    pub async fn quit(&self) {
        let _ = self.pool.quit().await;
    }

    /// Publishes `payload` on `channel`; returns how many subscribers got it.
    pub async fn publish(&self, channel: &str, payload: String) -> Result<i64, CoordinatorError> {
        Ok(self.pool.next().publish(channel, payload).await?)
    }

    /// A dedicated connection subscribed to `channel`, resubscribing after every reconnect.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, CoordinatorError> {
        let client = Builder::from_config(self.config.clone())
            .with_connection_config(|c| {
                c.connection_timeout = self.timeout;
                c.internal_command_timeout = COMMAND_TIMEOUT;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 10_000, 2))
            .build()?;
        let messages = client.message_rx();
        match tokio::time::timeout(self.timeout, client.init()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                let _ = client.quit().await;
                return Err(CoordinatorError::unusable(format!(
                    "Redis did not answer within {} s",
                    self.timeout.as_secs()
                )));
            }
        }
        client.subscribe(channel).await?;
        let again = client.clone();
        let name = channel.to_owned();
        let resubscribe = client.on_reconnect(move |_| {
            let client = again.clone();
            let name = name.clone();
            async move {
                if let Err(e) = client.subscribe(name).await {
                    tracing::warn!(error = %e, "cannot subscribe again after a Redis reconnect");
                }
                Ok(())
            }
        });
        Ok(Subscription {
            client,
            messages,
            resubscribe,
        })
    }
}

/// Where [`Coordinator::first_seen`] keeps `key`.
fn seen_key(key: &str) -> String {
    format!("mcss:seen:{key}")
}

/// A Redis subscription: its messages, until [`Subscription::close`].
pub struct Subscription {
    client: Client,
    messages: tokio::sync::broadcast::Receiver<fred::types::Message>,
    resubscribe: tokio::task::JoinHandle<Result<(), fred::error::Error>>,
}

impl Subscription {
    /// The next message's text; `None` once the connection is gone for good.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            match self.messages.recv().await {
                Ok(message) => {
                    if let Some(text) = message.value.as_string() {
                        return Some(text);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "Redis subscription lagged; notes were lost");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    pub async fn close(self) {
        self.resubscribe.abort();
        let _ = self.client.quit().await;
    }
}

// ------------------------------------------------------------------------------------------
// This replica
// ------------------------------------------------------------------------------------------

/// The channel a replica listens on (a PostgreSQL `NOTIFY` channel and a Redis channel).
pub fn replica_channel(replica: &str) -> String {
    format!("mcss:replica:{replica}")
}

/// What one replica tells another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// A push ping of a calendar the receiver owns, authenticated by the replica it reached;
    /// the owner de-duplicates it by (channel, message number) like a ping it got itself.
    Ping(ForwardedPing),
    /// Rows of these target calendars were queued elsewhere: wake their writers.
    Wake { targets: Vec<AccountId> },
    /// An operator asked for a sync of a calendar the receiver owns.
    Sync { calendar: AccountId, ask: SyncAsk },
    /// Leases were handed to the receiver: look at them now rather than at the next tick.
    Leases,
}

/// A push ping on its way to the owner of its calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedPing {
    pub calendar: AccountId,
    pub channel_id: String,
    pub token: Option<String>,
    pub resource_id: Option<String>,
    pub resource_state: String,
    pub message_number: Option<u64>,
    pub sync_id: String,
}

/// Which operator request a [`Note::Sync`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncAsk {
    Manual,
    FullResync,
    ConfirmDeletions,
}

/// Where a calendar stands for this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The only replica (SQLite): it owns every calendar, and nothing is fenced.
    Sole,
    /// This replica holds the lease: its writes carry the fence.
    Owner(Fence),
    /// Another replica owns it, nobody does, or this replica's lease ran out.
    Elsewhere,
}

/// One held lease: its tenure and how long this replica may act on it without renewing.
#[derive(Debug, Clone, Copy)]
struct Tenure {
    epoch: i64,
    valid_until: Instant,
    /// Held for writers started for an operation (`LocalWriters`): not moved or released
    /// by the ownership loop while pinned.
    pins: u32,
}

/// Who this process is among the replicas; cheap to clone, shared through `Services`.
#[derive(Clone)]
pub struct Replica {
    inner: Arc<ReplicaInner>,
}

struct ReplicaInner {
    id: Arc<str>,
    leased: bool,
    /// Held only to look up or update, never across an await.
    book: Mutex<HashMap<AccountId, Tenure>>,
    redis: OnceLock<Coordinator>,
    /// Asks the ownership loop for a tick now (leases were handed over, an account appeared).
    nudge: tokio::sync::Notify,
    /// Runs the chores one replica does for all (periodic reconciliation, sweeping).
    leader: AtomicBool,
    /// Stopping: it takes no lease any more.
    draining: AtomicBool,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.inner.id)
            .field("leased", &self.inner.leased)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// The only replica: every calendar is this process's (SQLite).
    pub fn sole(id: Arc<str>) -> Self {
        Self::new(id, false)
    }

    /// One of possibly several replicas: it owns the calendars whose leases it holds.
    pub fn leased(id: Arc<str>) -> Self {
        Self::new(id, true)
    }

    fn new(id: Arc<str>, leased: bool) -> Self {
        Self {
            inner: Arc::new(ReplicaInner {
                id,
                leased,
                book: Mutex::new(HashMap::new()),
                redis: OnceLock::new(),
                nudge: tokio::sync::Notify::new(),
                leader: AtomicBool::new(!leased),
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// The replica id: also the owner of its leases and of its writers' outbox claims.
    pub fn id(&self) -> &Arc<str> {
        &self.inner.id
    }

    /// Whether calendars are owned through leases (PostgreSQL).
    pub fn is_leased(&self) -> bool {
        self.inner.leased
    }

    /// Whether this replica does the chores one replica does for all: the first live
    /// replica by id (always, when it is the only one).
    pub fn is_leader(&self) -> bool {
        self.inner.leader.load(Ordering::Relaxed)
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        self.inner.leader.store(leader, Ordering::Relaxed);
    }

    /// Whether this replica is stopping (it takes no lease any more).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Takes the lease of `calendar` now if nobody holds it (an operator started or resumed
    /// it here: its actors start at once; the ownership loop moves it later if another
    /// replica should own it). `false` when another replica holds it, or this one stops.
    pub async fn take_if_free(
        &self,
        store: &Store,
        calendar: AccountId,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        if !self.inner.leased {
            return Ok(true);
        }
        if self.is_draining() {
            return Ok(false);
        }
        let sent = Instant::now();
        let taken = store
            .acquire_leases(&self.inner.id, &[calendar], ttl)
            .await?;
        self.hold(
            taken.iter().map(|l| (l.calendar, l.epoch)),
            crate::actors::ownership::valid_until(sent, ttl),
        );
        Ok(!taken.is_empty())
    }

    /// Notes go through Redis from now on (the receivers listen on both).
    pub fn use_redis(&self, redis: Coordinator) {
        let _ = self.inner.redis.set(redis);
    }

    /// Where `calendar` stands now; a lease past its local deadline is [`Standing::Elsewhere`].
    pub fn standing(&self, calendar: AccountId) -> Standing {
        if !self.inner.leased {
            return Standing::Sole;
        }
        match self.inner.book.lock().get(&calendar) {
            Some(t) if t.valid_until > Instant::now() => Standing::Owner(Fence {
                calendar,
                owner: self.inner.id.clone(),
                epoch: t.epoch,
            }),
            _ => Standing::Elsewhere,
        }
    }

    /// Whether this replica may act on `calendar` now.
    pub fn owns(&self, calendar: AccountId) -> bool {
        !matches!(self.standing(calendar), Standing::Elsewhere)
    }

    /// The calendars whose leases this replica holds (deadline not checked), in order.
    pub fn held(&self) -> Vec<AccountId> {
        let mut held: Vec<AccountId> = self.inner.book.lock().keys().copied().collect();
        held.sort();
        held
    }

    /// How many leases this replica holds.
    pub fn held_count(&self) -> usize {
        self.inner.book.lock().len()
    }

    /// Which of `calendars` this replica owns now.
    pub fn owned_among(
        &self,
        calendars: impl IntoIterator<Item = AccountId>,
    ) -> HashSet<AccountId> {
        calendars.into_iter().filter(|c| self.owns(*c)).collect()
    }

    /// Records leases as held until `valid_until` (acquired, renewed or handed over);
    /// returns those that were not held before.
    pub(crate) fn hold(
        &self,
        leases: impl IntoIterator<Item = (AccountId, i64)>,
        valid_until: Instant,
    ) -> Vec<AccountId> {
        let mut book = self.inner.book.lock();
        let mut new = Vec::new();
        for (calendar, epoch) in leases {
            match book.get_mut(&calendar) {
                Some(t) if t.epoch == epoch => t.valid_until = valid_until,
                Some(t) => {
                    *t = Tenure {
                        epoch,
                        valid_until,
                        pins: t.pins,
                    };
                }
                None => {
                    book.insert(
                        calendar,
                        Tenure {
                            epoch,
                            valid_until,
                            pins: 0,
                        },
                    );
                    new.push(calendar);
                }
            }
        }
        new
    }

    /// Forgets the leases of `calendars` (lost, handed over or released).
    pub(crate) fn forget(&self, calendars: &[AccountId]) {
        let mut book = self.inner.book.lock();
        for calendar in calendars {
            book.remove(calendar);
        }
    }

    /// Forgets every lease; returns the calendars held.
    pub(crate) fn forget_all(&self) -> Vec<AccountId> {
        let mut held: Vec<AccountId> = self.inner.book.lock().drain().map(|(c, _)| c).collect();
        held.sort();
        held
    }

    /// Whether writers started for an operation hold `calendar` pinned.
    pub(crate) fn is_pinned(&self, calendar: AccountId) -> bool {
        self.inner
            .book
            .lock()
            .get(&calendar)
            .is_some_and(|t| t.pins > 0)
    }

    /// Pins a held lease (see [`Tenure::pins`]); `false` when it is not held.
    pub fn pin(&self, calendar: AccountId) -> bool {
        match self.inner.book.lock().get_mut(&calendar) {
            Some(t) => {
                t.pins += 1;
                true
            }
            None => false,
        }
    }

    pub fn unpin(&self, calendar: AccountId) {
        if let Some(t) = self.inner.book.lock().get_mut(&calendar) {
            t.pins = t.pins.saturating_sub(1);
        }
    }

    /// Asks the ownership loop for a tick now.
    pub fn nudge(&self) {
        self.inner.nudge.notify_one();
    }

    /// Resolves at the next [`Replica::nudge`].
    pub async fn nudged(&self) {
        self.inner.nudge.notified().await;
    }

    /// Sends `note` to `replica` (Redis when configured, else PostgreSQL `NOTIFY`). A note
    /// that cannot be sent is logged and dropped: every note has a backstop (the owner's
    /// poll, its writers' timers, the next ownership tick).
    pub async fn send(&self, store: &Store, replica: &str, note: &Note) {
        let payload = match serde_json::to_string(note) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a note for another replica");
                return;
            }
        };
        let channel = replica_channel(replica);
        let sent = match self.inner.redis.get() {
            Some(redis) => redis
                .publish(&channel, payload)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => store
                .notify(&channel, &payload)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(error) = sent {
            tracing::warn!(%error, to = replica, "cannot send a note to another replica");
        }
    }

    /// Wakes the writers of `targets` on the replicas that own them (one note per owner).
    /// Targets nobody owns right now are left to their next owner, who converges as it starts.
    pub async fn wake_elsewhere(&self, store: &Store, targets: &[AccountId]) {
        if !self.inner.leased || targets.is_empty() {
            return;
        }
        let owners = match store.lease_owners(targets).await {
            Ok(owners) => owners,
            Err(e) => {
                tracing::warn!(error = %e, "cannot find the owners of target calendars");
                return;
            }
        };
        let mut by_owner: BTreeMap<String, Vec<AccountId>> = BTreeMap::new();
        for (target, owner) in owners {
            by_owner.entry(owner).or_default().push(target);
        }
        for (owner, targets) in by_owner {
            if *owner == *self.inner.id {
                // Handed to us since the caller looked: the next tick starts its writer.
                self.nudge();
                continue;
            }
            self.send(store, &owner, &Note::Wake { targets }).await;
        }
    }

    /// The replica that owns `calendar` now, if another one does.
    pub async fn owner_elsewhere(
        &self,
        store: &Store,
        calendar: AccountId,
    ) -> Result<Option<String>, StoreError> {
        if !self.inner.leased {
            return Ok(None);
        }
        let owner = store
            .lease_owners(&[calendar])
            .await?
            .into_iter()
            .map(|(_, owner)| owner)
            .next();
        Ok(owner.filter(|o| **o != *self.inner.id))
    }
}

/// "Redis at host:port", from a URL that may hold a password.
fn describe(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "Redis at {}:{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(6379)
        ),
        Err(_) => "Redis".to_owned(),
    }
}

/// fred reports an I/O failure as the `Debug` of `std::io::Error`
/// (`Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }`): keep the
/// message, which is what a person wants to read.
fn io_words(details: &str) -> String {
    details
        .split_once("message: \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(message, _)| message.to_owned())
        .unwrap_or_else(|| crate::config::one_line(details))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_failure_is_told_in_its_own_words_and_the_password_never() {
        let debug = r#"Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#;

        assert_eq!(io_words(debug), "Connection refused");
        assert_eq!(io_words("Timeout"), "Timeout");
        assert_eq!(
            describe("redis://:hunter2@cache.internal:6380/0"),
            "Redis at cache.internal:6380"
        );
    }
}
