//! [`LocalWriters`]: `BlockWriter`s started for one operation of the command line (`mcss
//! purge`, `reconcile`, `accounts remove`) — or for a calendar whose supervised writer is
//! stopped — and stopped afterwards. They are the same actors as under `serve`, so the
//! operation's writes go through the same token bucket, backoff, claims and audit; the claims
//! keep them from ever applying a row that a running `serve` applies at the same time.
//!
//! With leases (PostgreSQL) a calendar owned by a live replica is never written here: its
//! rows stay queued and its owner is woken to write them. A calendar nobody owns (paused,
//! being removed, no `serve` running) is leased for the operation — held pinned, so the
//! ownership loop of this process neither moves nor releases it, renewed while the operation
//! runs, and released at [`LocalWriters::shutdown`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use ractor::{Actor, ActorRef};

use super::block_writer::{BlockWriter, WriterArgs, WriterMsg};
use super::latency::LatencyRing;
use super::ownership::{tick_interval, valid_until};
use super::ActorNames;
use crate::domain::AccountId;
use crate::ops::BlockWrites;
use crate::services::Services;

/// How long a stopping writer may take to finish the write in flight.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often [`LocalWriters::drained`] looks at the outbox (and tries again to lease a
/// calendar whose owner let go of it).
const DRAIN_POLL: Duration = Duration::from_millis(250);
/// Every this many polls, a target still pending and not written here is leased or its
/// owner woken again (about every two seconds).
const RETRY_EVERY: u32 = 8;

/// Writers started on demand, one per target calendar.
pub struct LocalWriters {
    services: Services,
    names: ActorNames,
    latency: LatencyRing,
    /// Held only to look up or insert, never across an await.
    running: Mutex<HashMap<AccountId, ActorRef<WriterMsg>>>,
    /// With leases: the calendars pinned for this operation, and those it leased itself.
    leases: Arc<Mutex<Leases>>,
    renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct Leases {
    pinned: BTreeSet<AccountId>,
    acquired: BTreeSet<AccountId>,
}

impl LocalWriters {
    pub fn new(services: Services) -> Self {
        Self {
            services,
            names: ActorNames::unique(),
            latency: LatencyRing::default(),
            running: Mutex::new(HashMap::new()),
            leases: Arc::default(),
            renewer: Mutex::new(None),
        }
    }

    /// Stops every writer started here (each finishes the write in flight) and hands its
    /// claims back.
    pub async fn shutdown(&self) {
        let writers: Vec<ActorRef<WriterMsg>> =
            self.running.lock().drain().map(|(_, w)| w).collect();
        for writer in writers {
            let _ = writer.stop_and_wait(None, Some(STOP_GRACE)).await;
        }
        if let Some(renewer) = self.renewer.lock().take() {
            renewer.abort();
        }
        let leases = std::mem::take(&mut *self.leases.lock());
        let replica = &self.services.replica;
        for calendar in &leases.pinned {
            replica.unpin(*calendar);
        }
        if !leases.acquired.is_empty() {
            let acquired: Vec<AccountId> = leases.acquired.into_iter().collect();
            replica.forget(&acquired);
            if let Err(e) = self
                .services
                .store
                .release_leases(replica.id(), Some(&acquired))
                .await
            {
                tracing::warn!(error = %e, "cannot release the leases of an operation; they expire on their own");
            }
        }
        let _ = self
            .services
            .store
            .release_claims(&self.services.writer_id)
            .await;
    }

    /// With leases: whether `target` may be written here — its lease held (pinned for the
    /// operation) or taken now because nobody holds it.
    async fn lease(&self, target: AccountId) -> bool {
        let replica = &self.services.replica;
        if !replica.is_leased() || self.leases.lock().pinned.contains(&target) {
            return true;
        }
        if replica.pin(target) {
            self.leases.lock().pinned.insert(target);
            return true;
        }
        let ttl = self.services.settings.lease_ttl;
        let sent = Instant::now();
        let taken = match self
            .services
            .store
            .acquire_leases(replica.id(), &[target], ttl)
            .await
        {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(account_id = %target, error = %e, "cannot lease a calendar for an operation");
                return false;
            }
        };
        if taken.is_empty() {
            return false;
        }
        replica.hold(
            taken.iter().map(|l| (l.calendar, l.epoch)),
            valid_until(sent, ttl),
        );
        replica.pin(target);
        {
            let mut leases = self.leases.lock();
            leases.pinned.insert(target);
            leases.acquired.insert(target);
        }
        self.ensure_renewer();
        true
    }

    /// Renews the leases this operation took, for as long as it runs (under `serve` the
    /// ownership loop renews them too; renewing twice is harmless).
    fn ensure_renewer(&self) {
        let mut renewer = self.renewer.lock();
        if renewer.is_some() {
            return;
        }
        let services = self.services.clone();
        let leases = self.leases.clone();
        *renewer = Some(tokio::spawn(async move {
            let ttl = services.settings.lease_ttl;
            loop {
                tokio::time::sleep(tick_interval(ttl)).await;
                let sent = Instant::now();
                let replica = &services.replica;
                match services.store.renew_leases(replica.id(), ttl).await {
                    Ok(renewed) => {
                        let ours: Vec<(AccountId, i64)> = {
                            let leases = leases.lock();
                            renewed
                                .iter()
                                .filter(|l| leases.acquired.contains(&l.calendar))
                                .map(|l| (l.calendar, l.epoch))
                                .collect()
                        };
                        replica.hold(ours, valid_until(sent, ttl));
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the leases of an operation"),
                }
            }
        }));
    }

    async fn writer(&self, target: AccountId) -> Option<ActorRef<WriterMsg>> {
        if let Some(writer) = self.running.lock().get(&target).cloned() {
            return Some(writer);
        }
        if !self.lease(target).await {
            // A live replica owns it: its own writer writes the rows.
            let store = &self.services.store;
            self.services.replica.wake_elsewhere(store, &[target]).await;
            return None;
        }
        let args = WriterArgs {
            services: self.services.clone(),
            names: self.names.clone(),
            account: target,
            latency: self.latency.clone(),
        };
        match Actor::spawn(None, BlockWriter, args).await {
            Ok((writer, _)) => {
                self.running.lock().insert(target, writer.clone());
                Some(writer)
            }
            Err(e) => {
                tracing::warn!(account_id = %target, error = %e, "cannot start a writer");
                None
            }
        }
    }
}

#[async_trait]
impl BlockWrites for LocalWriters {
    async fn wake(&self, target: AccountId) {
        if let Some(writer) = self.writer(target).await {
            let _ = writer.cast(WriterMsg::converge());
        }
    }

    async fn drained(&self, targets: &[AccountId], deadline: Duration) -> Vec<AccountId> {
        if !self.services.replica.is_leased() {
            return crate::ops::writes::wait_until_drained(&self.services.store, targets, deadline)
                .await;
        }
        // A target's owner may let go of it meanwhile (an account being removed): then it is
        // leased and written here.
        let until = tokio::time::Instant::now() + deadline;
        let mut rounds: u32 = 0;
        loop {
            rounds = rounds.wrapping_add(1);
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let waiting = crate::ops::writes::wait_until_drained(
                &self.services.store,
                targets,
                left.min(DRAIN_POLL),
            )
            .await;
            if waiting.is_empty() || left <= DRAIN_POLL {
                return waiting;
            }
            if !rounds.is_multiple_of(RETRY_EVERY) {
                continue;
            }
            for target in &waiting {
                let here = self.running.lock().contains_key(target);
                if !here {
                    self.wake(*target).await;
                }
            }
        }
    }
}
