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
//! `CalendarActor`; it syncs incrementally, plans, and commits source events, desired blocks
//! and the new sync token in one transaction, then casts "converge" to the `BlockWriter` of
//! each target calendar, which makes Google match the desired blocks, one write at a time.
//! Admin and health pages ask the supervisor ([`supervisor::SupervisorMsg::Children`],
//! [`supervisor::SupervisorMsg::Lookup`]) with `call` and a timeout.
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
//! Wiring for `serve`: [`start`] builds the supervisor with a [`StoreDegradedSink`] (marks
//! the account `degraded` in the store) and [`stop`] ends the tree under the shutdown
//! deadline.

pub mod restart;
pub mod supervisor;

pub use supervisor::{start_supervisor, stop};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ractor::{ActorCell, ActorRef, SpawnErr};
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::shutdown::Shutdown;
use crate::store::{AccountStatus, Store};
use supervisor::{ChildFactory, ChildKey, DegradedSink, SupervisorArgs, SupervisorMsg};

/// Upper bound on recording a degraded account, so a slow database cannot stall the
/// supervisor's mailbox.
const DEGRADED_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the root supervisor for `serve`.
///
/// Interim wiring: `CalendarActor` and `BlockWriter` do not exist yet, so no children are
/// added here and the factory refuses every key. Once they exist, this builds their factory
/// and sends `AddChild(Calendar(id))` and `AddChild(Writer(id))` per active account.
pub async fn start(
    settings: Arc<Settings>,
    store: Store,
    _shutdown: Shutdown,
) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
    let args = SupervisorArgs {
        settings: settings.supervision.clone(),
        factory: Arc::new(NoActorsYet),
        degraded: Arc::new(StoreDegradedSink { store }),
        // Calendars and then writers each get a share, leaving room for the pools.
        stop_grace: settings.shutdown_timeout / 3,
    };
    start_supervisor(args).await
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

/// Placeholder factory until the production actors exist: every spawn fails.
struct NoActorsYet;

#[async_trait]
impl ChildFactory for NoActorsYet {
    async fn spawn(&self, key: ChildKey, _supervisor: ActorCell) -> Result<ActorCell, SpawnErr> {
        Err(SpawnErr::StartupFailed(
            format!("no actor is implemented yet for {key}").into(),
        ))
    }
}
