//! [`LocalWriters`]: `BlockWriter`s started for one operation of the command line (`mcss
//! purge`, `reconcile`, `accounts remove`) — or for a calendar whose supervised writer is
//! stopped — and stopped afterwards. They are the same actors as under `serve`, so the
//! operation's writes go through the same token bucket, backoff, claims and audit; the claims
//! keep them from ever applying a row that a running `serve` applies at the same time.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use ractor::{Actor, ActorRef};

use super::block_writer::{BlockWriter, WriterArgs, WriterMsg};
use super::latency::LatencyRing;
use super::ActorNames;
use crate::domain::AccountId;
use crate::ops::BlockWrites;
use crate::services::Services;

/// How long a stopping writer may take to finish the write in flight.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Writers started on demand, one per target calendar.
pub struct LocalWriters {
    services: Services,
    names: ActorNames,
    latency: LatencyRing,
    /// Held only to look up or insert, never across an await.
    running: Mutex<HashMap<AccountId, ActorRef<WriterMsg>>>,
}

impl LocalWriters {
    pub fn new(services: Services) -> Self {
        Self {
            services,
            names: ActorNames::unique(),
            latency: LatencyRing::default(),
            running: Mutex::new(HashMap::new()),
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
        let _ = self
            .services
            .store
            .release_claims(&self.services.writer_id)
            .await;
    }

    async fn writer(&self, target: AccountId) -> Option<ActorRef<WriterMsg>> {
        if let Some(writer) = self.running.lock().get(&target).cloned() {
            return Some(writer);
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
        crate::ops::writes::wait_until_drained(&self.services.store, targets, deadline).await
    }
}
