//! The ractor tree: who runs, who restarts whom, and how messages flow.
//!
//! ```text
//!                         SyncSupervisor  (root; supervisor::start_supervisor)
//!             spawn_linked │  one child per ChildKey, built by a ChildFactory
//!        ┌─────────────────┼────────────────────┬─────────────────────┐
//!        ▼                 ▼                    ▼                     ▼
//!  CalendarActor      CalendarActor        BlockWriter          BlockWriter
//!  Calendar(acct 1)   Calendar(acct 2) …   Writer(acct 1)       Writer(acct 2) …
//!  (one per account)                       (one per target calendar)
//! ```
//!
//! Message flow: ingress casts a webhook ping (or a poll tick fires) to the account's
//! `CalendarActor`; its [`sync_job`] lists, reads, runs the pure sync pass and commits its
//! plan (source events, desired blocks, exclusions, the new sync token) in one transaction,
//! then casts "converge" to the `BlockWriter` of each target calendar, which claims its due
//! rows and makes Google match them, one write at a time. Admin and health pages ask the
//! supervisor for its children's statuses ([`supervisor::SupervisorMsg::Children`]) with
//! `call` and a timeout.
//!
//! Dependencies run one way: `supervisor` ← `factory` → (`calendar` → `sync_job`,
//! `channel`), `block_writer` → `latency`; `control` drives them all; `background` and
//! `local_writers` use `control` and `block_writer`. Nothing calls back up.
//!
//! Restart policy ([`restart`]): a child that fails (error or panic in a handler, a failed
//! `post_start`, a `pre_start` error at spawn, or any stop nobody asked for) is respawned
//! after a truncated exponential backoff with jitter between `backoff_initial` and
//! `backoff_max`. More than `max_restarts` failures within `window` marks that child
//! degraded (and, through the `DegradedSink`, its account in the store); its siblings keep
//! running untouched, and an operator's `ResetDegraded` brings it back. A removed child is
//! stopped normally and never restarted. Children keep nothing that matters in memory: they
//! reload from the store when they start, so a restart loses nothing.
//!
//! Shutdown: `Shutdown` stops the calendars, drains the writers, then stops the root. If the
//! root supervisor ends any other way, the process exits non-zero
//! ([`supervisor::wait_for_root_exit`], [`supervisor::supervisor_exit_code`]).
//!
//! Wiring for `serve`: [`start`] builds the supervisor with the [`factory::ProductionFactory`]
//! and a [`StoreDegradedSink`] (marks the account `degraded` in the store), starts the actors
//! of every active account, watches the accounts table for changes made by other processes,
//! and hands back a [`control::Control`]; [`stop`] ends the tree under the shutdown deadline.
//! On PostgreSQL several replicas may share the database: [`ownership`] then decides which
//! calendars run here (leases, rendezvous hashing, hand-over at SIGTERM), and the actors of
//! the others run on their owners.
//!
//! Finding an actor: by name, and only by name. Running children are registered in
//! ractor's registry as `{prefix}/calendar-{account}` and `{prefix}/writer-{account}`
//! ([`ActorNames`]). The prefix is unique per [`start`], because the registry is
//! process-wide and tests run several applications in one process.

mod background;
pub mod block_writer;
pub mod calendar;
mod channel;
pub mod control;
pub mod factory;
pub mod latency;
pub mod local_writers;
pub mod ownership;
pub mod restart;
pub mod supervisor;
pub mod sync_job;

pub use control::{Control, ControlError, PingOutcome, WebhookPing};
pub use latency::{LatencyRing, LatencySample};
pub use local_writers::LocalWriters;
pub use supervisor::{start_supervisor, stop};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ractor::{ActorRef, SpawnErr};
use tokio::task::JoinHandle;

use crate::domain::AccountId;
use crate::services::Services;
use crate::shutdown::Shutdown;
use crate::store::{AccountStatus, Store, StoreError};
use block_writer::WriterMsg;
use calendar::CalendarMsg;
use supervisor::{ChildKey, DegradedSink, SupervisorArgs, SupervisorMsg};

/// Upper bound on recording a degraded account, so a slow database cannot stall the
/// supervisor's mailbox.
const DEGRADED_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the accounts table is compared with the running actors.
pub(crate) const ACCOUNT_WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// Why the actor tree could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot spawn the supervisor: {0}")]
    Spawn(#[from] SpawnErr),
    #[error("cannot list the accounts: {0}")]
    Store(#[from] StoreError),
}

/// Registry names of the running actors of one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorNames {
    prefix: Arc<str>,
}

impl ActorNames {
    /// Names under a fresh unique prefix.
    pub fn unique() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("mcss-{}", &id[..12]).into(),
        }
    }

    pub fn calendar(&self, account: AccountId) -> String {
        format!("{}/calendar-{account}", self.prefix)
    }

    pub fn writer(&self, account: AccountId) -> String {
        format!("{}/writer-{account}", self.prefix)
    }

    /// The running `CalendarActor` of `account`, if any (it may stop at any moment: a cast
    /// to it can fail, which callers ignore).
    pub fn calendar_actor(&self, account: AccountId) -> Option<ActorRef<CalendarMsg>> {
        ractor::registry::where_is(self.calendar(account)).map(ActorRef::from)
    }

    /// The running `BlockWriter` of `account`, if any.
    pub fn writer_actor(&self, account: AccountId) -> Option<ActorRef<WriterMsg>> {
        ractor::registry::where_is(self.writer(account)).map(ActorRef::from)
    }
}

/// Starts the tree for `serve`: the root supervisor with the production factory, the actors
/// of every active or degraded account, and the account watcher (until `shutdown`). With
/// leases (PostgreSQL) it starts no actor: [`ownership::spawn`] starts those of the calendars
/// this replica owns.
pub async fn start(
    services: Services,
    shutdown: Shutdown,
) -> Result<(Control, JoinHandle<()>), StartError> {
    let settings = services.settings.clone();
    let names = ActorNames::unique();
    let latency = LatencyRing::default();
    let args = SupervisorArgs {
        settings: settings.supervision.clone(),
        factory: Arc::new(factory::ProductionFactory {
            services: services.clone(),
            names: names.clone(),
            latency: latency.clone(),
        }),
        degraded: Arc::new(StoreDegradedSink {
            store: services.store.clone(),
        }),
        // Calendars and then writers each get a share, leaving room for the pools.
        stop_grace: settings.shutdown_timeout / 3,
    };
    let (supervisor, handle) = start_supervisor(args).await?;
    let control = Control::new(supervisor.clone(), services.clone(), names, latency);
    let accounts = match services.store.list_accounts().await {
        Ok(accounts) => accounts,
        Err(e) => {
            supervisor.stop(Some("could not list the accounts".into()));
            return Err(e.into());
        }
    };
    if services.replica.is_leased() {
        // Several replicas may share the database: `ownership` starts the actors of the
        // calendars this replica comes to own (the caller spawns it).
    } else {
        if let Err(e) = services.warm(&accounts).await {
            // Only a shortcut: each actor reads its own rows instead.
            tracing::warn!(error = %e, "could not read the calendars' tokens in one go");
        }
        let starting: Vec<AccountId> = accounts
            .iter()
            .filter(|a| control::wants_actors(a.status))
            .map(|a| a.id)
            .collect();
        let held = control::hold_syncs_while_starting(&services, starting.len());
        for batch in starting.chunks(control::START_BATCH) {
            let keys = control::child_keys(batch);
            let _ = supervisor.cast(SupervisorMsg::AddChildren(keys, None));
        }
        if let Some(held) = held {
            // The supervisor handles its messages in order: the answer to an empty batch
            // means every batch above is spawned.
            let (spawned, all_spawned) = ractor::concurrency::oneshot();
            let _ = supervisor.cast(SupervisorMsg::AddChildren(Vec::new(), Some(spawned.into())));
            tokio::spawn(async move {
                // Ends then, or when the supervisor is gone.
                let _ = tokio::time::timeout(control::START_HOLD_MAX, all_spawned).await;
                drop(held);
            });
        }
        tokio::spawn(background::watch_accounts(
            control.clone(),
            ACCOUNT_WATCH_INTERVAL,
            shutdown.clone(),
        ));
    }
    tokio::spawn(background::flush_tokens_periodically(
        services.store.clone(),
        settings.sync.token_flush_interval,
        shutdown.clone(),
    ));
    let every = control.services().settings.sync.reconcile_interval;
    tokio::spawn(background::reconcile_periodically(
        control.clone(),
        every,
        shutdown,
    ));
    Ok((control, handle))
}

/// Marks the account of a degraded child `degraded` in the store, for the operator to see
/// and resume.
#[derive(Debug, Clone)]
pub struct StoreDegradedSink {
    pub store: Store,
}

#[async_trait]
impl DegradedSink for StoreDegradedSink {
    async fn child_degraded(&self, key: ChildKey, reason: String) {
        let account = key.account_id();
        let reason = format!("{} actor kept failing: {reason}", key.kind().as_str());
        let write = self
            .store
            .set_account_status(account, AccountStatus::Degraded, Some(&reason));
        match tokio::time::timeout(DEGRADED_WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!(account_id = %account, error = ?err, "could not mark account degraded");
            }
            Err(_) => {
                tracing::error!(account_id = %account, "timed out marking account degraded");
            }
        }
    }
}
