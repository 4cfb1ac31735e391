//! `SyncSupervisor`: the root of the actor tree. It spawns one child per [`ChildKey`], restarts
//! a child that fails with backoff, and gives up on (degrades) a child that keeps failing
//! while its siblings keep running.
//!
//! Collaborators: a [`ChildFactory`] builds the actual actor for a key (production: a
//! `CalendarActor` or `BlockWriter`; tests: small test actors), a [`DegradedSink`] records a
//! child that was given up on (production: the account's status in the store), and
//! [`RestartTracker`] decides between "restart after a delay" and "degrade".
//!
//! Lifecycle: [`start_supervisor`] spawns it unnamed with cheap `pre_start` work only; the
//! caller then sends [`SupervisorMsg::AddChild`] per account. [`SupervisorMsg::Shutdown`]
//! stops the calendars, drains the writers (so accepted writes are flushed) and then stops
//! the supervisor; a plain `stop` does the same in `post_stop`. A killed supervisor kills its
//! children (ractor does that, skipping their `post_stop`). Whoever runs the process watches
//! the supervisor's `JoinHandle` with [`wait_for_root_exit`] and exits with
//! [`supervisor_exit_code`]: a root supervisor that ends without a requested shutdown must
//! end the process with a non-zero code, never leave a server up that looks healthy.
//!
//! Why the key is the whole child spec: after a crash nothing a child held in memory
//! survives (ractor hands back no state on failure), so each child reloads what it needs
//! from the store in its own start-up, and the supervisor only has to remember *which*
//! children should exist.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use futures::StreamExt as _;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use super::restart::{RestartDecision, RestartTracker};
use crate::config::SupervisionSettings;
use crate::domain::AccountId;
use crate::metrics::ACTOR_RESTARTS;
use crate::shutdown::Shutdown;

/// How many children of one [`SupervisorMsg::AddChildren`] start at once: each spawn waits
/// for its actor's `pre_start` on another task, and 20,000 of those one after another took
/// seconds at start-up.
pub const SPAWN_CONCURRENCY: usize = 64;

// ------------------------------------------------------------------------------------------
// Public types
// ------------------------------------------------------------------------------------------

/// Which child this is. Also the child's whole spec: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKey {
    /// The `CalendarActor` of one connected account.
    Calendar(AccountId),
    /// The `BlockWriter` of one target calendar (the primary calendar of that account).
    Writer(AccountId),
}

impl ChildKey {
    pub fn account_id(self) -> AccountId {
        match self {
            Self::Calendar(id) | Self::Writer(id) => id,
        }
    }

    pub fn kind(self) -> ChildKind {
        match self {
            Self::Calendar(_) => ChildKind::Calendar,
            Self::Writer(_) => ChildKind::Writer,
        }
    }
}

impl fmt::Display for ChildKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind().as_str(), self.account_id())
    }
}

/// The kind of a child, as used in metric labels and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildKind {
    Calendar,
    Writer,
}

impl ChildKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calendar => "calendar",
            Self::Writer => "writer",
        }
    }
}

/// Where a child is in its life, as reported by [`SupervisorMsg::Children`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    Running,
    /// Failed; a respawn is scheduled after a backoff delay.
    Restarting,
    /// Failed too often within the window; not restarted until
    /// [`SupervisorMsg::ResetDegraded`].
    Degraded,
    /// Stopped by a shutdown.
    Stopped,
}

/// One child as the admin pages and `/health/detailed` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStatus {
    pub key: ChildKey,
    pub state: ChildState,
    /// Respawns since the child was added (backoff restarts and operator resumes).
    pub restarts: u32,
    /// Why it last failed, if it ever did.
    pub last_failure: Option<String>,
}

/// Builds the actor for a key.
///
/// The implementation must spawn the child *linked* to `supervisor` (`Actor::spawn_linked(None,
/// .., supervisor)`), unnamed or with a per-application prefix, and keep its `pre_start` cheap:
/// the supervisor awaits this call, so a slow start stalls every other child's restart.
/// Network work belongs in the child's `post_start` or first message, where a failure is a
/// supervision event. An `Err` (for example `SpawnErr::StartupFailed` from `pre_start`) counts
/// as a failure and is retried with backoff.
#[async_trait]
pub trait ChildFactory: Send + Sync + 'static {
    async fn spawn(&self, key: ChildKey, supervisor: ActorCell) -> Result<ActorCell, SpawnErr>;
}

/// Told when a child is given up on. Production marks the account degraded in the store.
///
/// Called from inside the supervisor's handler: keep it bounded (a timeout around any I/O),
/// and handle its own errors, since there is no one to return them to.
#[async_trait]
pub trait DegradedSink: Send + Sync + 'static {
    async fn child_degraded(&self, key: ChildKey, reason: String);
}

/// Start-up input of [`SyncSupervisor`].
#[derive(Clone)]
pub struct SupervisorArgs {
    pub settings: SupervisionSettings,
    pub factory: Arc<dyn ChildFactory>,
    pub degraded: Arc<dyn DegradedSink>,
    /// How long a child gets to stop (calendars) or drain (writers) when it is removed or at
    /// shutdown, before it is killed.
    pub stop_grace: Duration,
}

impl fmt::Debug for SupervisorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorArgs")
            .field("settings", &self.settings)
            .field("stop_grace", &self.stop_grace)
            .finish_non_exhaustive()
    }
}

/// Everything [`SyncSupervisor`] understands.
pub enum SupervisorMsg {
    /// Spawn a child for this key (no-op when it already exists).
    AddChild(ChildKey),
    /// [`SupervisorMsg::AddChild`], answered once the child runs (or failed to start), so
    /// the caller can find it by name right after.
    Ensure(ChildKey, RpcReplyPort<()>),
    /// [`SupervisorMsg::AddChild`] for many keys at once: their `pre_start`s run
    /// [`SPAWN_CONCURRENCY`] at a time instead of one after another, writers before
    /// calendars. Answered (when a port is given) once every one runs or failed to start.
    AddChildren(Vec<ChildKey>, Option<RpcReplyPort<()>>),
    /// Stop the child and forget it; a normal stop, never followed by a restart. The reply
    /// comes once the child has stopped (or was killed after `stop_grace`).
    RemoveChild(ChildKey, RpcReplyPort<()>),
    /// Internal: a backoff delay is over, spawn the child again. Sent by the supervisor's own
    /// timer; a stale one (the child was removed or reset meanwhile) is ignored.
    Respawn(ChildKey),
    /// Every child's status, ordered by key.
    Children(RpcReplyPort<Vec<ChildStatus>>),
    /// The running actor of a child, if it is running now. It may go stale after a restart:
    /// look it up again rather than keeping it.
    Lookup(ChildKey, RpcReplyPort<Option<ActorCell>>),
    /// An operator resumes a degraded child: forget its failures and spawn it at once.
    ResetDegraded(ChildKey),
    /// Stop every child gracefully, then the supervisor itself. The reply comes when the
    /// children are down; the supervisor's `JoinHandle` completes right after.
    Shutdown(RpcReplyPort<()>),
}

impl fmt::Debug for SupervisorMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddChild(key) => write!(f, "AddChild({key})"),
            Self::Ensure(key, _) => write!(f, "Ensure({key})"),
            Self::AddChildren(keys, _) => write!(f, "AddChildren({} keys)", keys.len()),
            Self::RemoveChild(key, _) => write!(f, "RemoveChild({key})"),
            Self::Respawn(key) => write!(f, "Respawn({key})"),
            Self::Children(_) => f.write_str("Children"),
            Self::Lookup(key, _) => write!(f, "Lookup({key})"),
            Self::ResetDegraded(key) => write!(f, "ResetDegraded({key})"),
            Self::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

// ------------------------------------------------------------------------------------------
// The actor
// ------------------------------------------------------------------------------------------

/// The root supervisor. Stateless itself; everything mutable is in [`SupervisorState`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncSupervisor;

/// Mutable state of [`SyncSupervisor`].
pub struct SupervisorState {
    settings: SupervisionSettings,
    factory: Arc<dyn ChildFactory>,
    degraded: Arc<dyn DegradedSink>,
    stop_grace: Duration,
    /// Every child that should exist, ordered so status listings are stable.
    children: BTreeMap<ChildKey, Child>,
    /// Which child a running actor is: supervision events carry only the actor's cell, and
    /// ids (not names) keep tests and restarts free of registry collisions.
    by_actor: HashMap<ActorId, ChildKey>,
    /// Set once shutdown began: terminations are then expected and never restarted.
    shutting_down: bool,
}

struct Child {
    phase: Phase,
    tracker: RestartTracker,
    restarts: u32,
    last_failure: Option<String>,
}

type RespawnTimer = JoinHandle<Result<(), MessagingErr<SupervisorMsg>>>;

enum Phase {
    Running(ActorCell),
    /// The timer is kept so removing or resetting the child can cancel it.
    Restarting(RespawnTimer),
    Degraded,
    Stopped,
}

impl Phase {
    fn state(&self) -> ChildState {
        match self {
            Self::Running(_) => ChildState::Running,
            Self::Restarting(_) => ChildState::Restarting,
            Self::Degraded => ChildState::Degraded,
            Self::Stopped => ChildState::Stopped,
        }
    }
}

#[ractor::async_trait]
impl Actor for SyncSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    /// Only builds the state: children are added by messages, so a slow or failing child
    /// never keeps the root from starting.
    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            settings: args.settings,
            factory: args.factory,
            degraded: args.degraded,
            stop_grace: args.stop_grace,
            children: BTreeMap::new(),
            by_actor: HashMap::new(),
            shutting_down: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::AddChild(key) => state.add_child(&myself, key).await,
            SupervisorMsg::Ensure(key, reply) => {
                state.add_child(&myself, key).await;
                let _ = reply.send(());
            }
            SupervisorMsg::AddChildren(keys, reply) => {
                state.add_children(&myself, keys).await;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            SupervisorMsg::RemoveChild(key, reply) => {
                state.remove_child(key).await;
                let _ = reply.send(());
            }
            SupervisorMsg::Respawn(key) => state.respawn(&myself, key).await,
            SupervisorMsg::Children(reply) => {
                let _ = reply.send(state.statuses());
            }
            SupervisorMsg::Lookup(key, reply) => {
                let _ = reply.send(state.running_actor(key));
            }
            SupervisorMsg::ResetDegraded(key) => state.reset_degraded(&myself, key).await,
            SupervisorMsg::Shutdown(reply) => {
                state.stop_all_children().await;
                myself.stop(Some("shutdown requested".to_owned()));
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    /// Overridden because ractor's default stops the supervisor when any child ends.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorStarted(cell) => {
                tracing::trace!(actor = %cell.get_id(), "child started");
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                let reason = format!("failed: {err}");
                state.child_ended(&myself, cell.get_id(), reason).await;
            }
            SupervisionEvent::ActorTerminated(cell, _last_state, exit_reason) => {
                // A child we removed or stopped for shutdown is already out of `by_actor`, so
                // only an unrequested stop gets here: a child is meant to run until told.
                let reason = match exit_reason {
                    Some(why) => format!("stopped unexpectedly: {why}"),
                    None => "stopped unexpectedly".to_owned(),
                };
                state.child_ended(&myself, cell.get_id(), reason).await;
            }
            SupervisionEvent::ProcessGroupChanged(_) => {
                // The supervisor joins no process group; nothing to do.
            }
        }
        Ok(())
    }

    /// A stop that did not come through [`SupervisorMsg::Shutdown`] still stops the children
    /// gracefully; without this, ractor would kill them and skip their `post_stop`.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if !state.shutting_down {
            state.stop_all_children().await;
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn add_child(&mut self, myself: &ActorRef<SupervisorMsg>, key: ChildKey) {
        if self.supervise(key) {
            self.spawn_child(myself, key).await;
        }
    }

    /// Starts supervising `key`; false (nothing to spawn) during shutdown or when it is
    /// supervised already.
    fn supervise(&mut self, key: ChildKey) -> bool {
        if self.shutting_down {
            tracing::debug!(child = %key, "not adding a child during shutdown");
            return false;
        }
        if self.children.contains_key(&key) {
            tracing::debug!(child = %key, "child already supervised");
            return false;
        }
        self.children.insert(
            key,
            Child {
                phase: Phase::Stopped,
                tracker: RestartTracker::new(&self.settings),
                restarts: 0,
                last_failure: None,
            },
        );
        true
    }

    /// See [`SupervisorMsg::AddChildren`]. The children are indexed only after their
    /// spawns returned, but before any supervision event is handled: events wait in the
    /// supervisor's mailbox until this handler returns, so none is missed.
    async fn add_children(&mut self, myself: &ActorRef<SupervisorMsg>, keys: Vec<ChildKey>) {
        let (writers, calendars): (Vec<ChildKey>, Vec<ChildKey>) = keys
            .into_iter()
            .partition(|k| matches!(k, ChildKey::Writer(_)));
        for kind in [writers, calendars] {
            let new: Vec<ChildKey> = kind.into_iter().filter(|k| self.supervise(*k)).collect();
            let factory = self.factory.clone();
            let spawns = new.into_iter().map(|key| {
                let (factory, cell) = (factory.clone(), myself.get_cell());
                async move { (key, factory.spawn(key, cell).await) }
            });
            let spawned: Vec<_> = futures::stream::iter(spawns)
                .buffer_unordered(SPAWN_CONCURRENCY)
                .collect()
                .await;
            for (key, result) in spawned {
                self.spawned(myself, key, result).await;
            }
        }
    }

    async fn remove_child(&mut self, key: ChildKey) {
        let Some(child) = self.children.remove(&key) else {
            tracing::debug!(child = %key, "removing a child that is not supervised");
            return;
        };
        match child.phase {
            Phase::Running(cell) => {
                // Unindex first: the termination event that follows is then not a failure.
                self.by_actor.remove(&cell.get_id());
                stop_child(key, cell, "removed", self.stop_grace).await;
            }
            Phase::Restarting(timer) => timer.abort(),
            Phase::Degraded | Phase::Stopped => {}
        }
        tracing::info!(account_id = %key.account_id(), kind = key.kind().as_str(), "child removed");
    }

    async fn respawn(&mut self, myself: &ActorRef<SupervisorMsg>, key: ChildKey) {
        let Some(child) = self.children.get_mut(&key) else {
            return; // removed while the timer ran
        };
        if !matches!(child.phase, Phase::Restarting(_)) {
            return; // reset or already running: a stale timer
        }
        child.restarts += 1;
        metrics::counter!(ACTOR_RESTARTS, "kind" => key.kind().as_str()).increment(1);
        tracing::info!(
            account_id = %key.account_id(),
            kind = key.kind().as_str(),
            restarts = child.restarts,
            "restarting child"
        );
        self.spawn_child(myself, key).await;
    }

    async fn reset_degraded(&mut self, myself: &ActorRef<SupervisorMsg>, key: ChildKey) {
        let Some(child) = self.children.get_mut(&key) else {
            tracing::debug!(child = %key, "resetting a child that is not supervised");
            return;
        };
        if !matches!(child.phase, Phase::Degraded) {
            tracing::debug!(child = %key, "resetting a child that is not degraded");
            return;
        }
        child.tracker.reset();
        child.restarts += 1;
        metrics::counter!(ACTOR_RESTARTS, "kind" => key.kind().as_str()).increment(1);
        tracing::info!(
            account_id = %key.account_id(),
            kind = key.kind().as_str(),
            "operator resumed degraded child"
        );
        self.spawn_child(myself, key).await;
    }

    /// Asks the factory for the child's actor. A spawn error is a failure like any other:
    /// applying `?` here would take the whole supervisor down for one bad account.
    async fn spawn_child(&mut self, myself: &ActorRef<SupervisorMsg>, key: ChildKey) {
        let result = self.factory.spawn(key, myself.get_cell()).await;
        self.spawned(myself, key, result).await;
    }

    /// Books the outcome of a child's spawn.
    async fn spawned(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        key: ChildKey,
        result: Result<ActorCell, SpawnErr>,
    ) {
        match result {
            Ok(cell) => {
                self.by_actor.insert(cell.get_id(), key);
                if let Some(child) = self.children.get_mut(&key) {
                    child.phase = Phase::Running(cell);
                }
            }
            Err(err) => {
                self.child_failed(myself, key, format!("could not start: {err}"))
                    .await;
            }
        }
    }

    /// A supervised actor ended; events about actors we no longer track (removed, replaced,
    /// stopped for shutdown) are ignored.
    async fn child_ended(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        actor: ActorId,
        reason: String,
    ) {
        let Some(key) = self.by_actor.remove(&actor) else {
            tracing::debug!(%actor, %reason, "ignoring the end of an actor we no longer track");
            return;
        };
        let is_current = self.children.get(&key).is_some_and(
            |child| matches!(&child.phase, Phase::Running(cell) if cell.get_id() == actor),
        );
        if !is_current || self.shutting_down {
            return;
        }
        self.child_failed(myself, key, reason).await;
    }

    async fn child_failed(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        key: ChildKey,
        reason: String,
    ) {
        let Some(child) = self.children.get_mut(&key) else {
            return;
        };
        child.last_failure = Some(reason.clone());
        match child.tracker.record_failure(Instant::now()) {
            RestartDecision::RestartAfter(delay) => {
                tracing::warn!(
                    account_id = %key.account_id(),
                    kind = key.kind().as_str(),
                    %reason,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "child failed; restarting after backoff"
                );
                let timer = myself.send_after(delay, move || SupervisorMsg::Respawn(key));
                child.phase = Phase::Restarting(timer);
            }
            RestartDecision::Degrade => {
                child.phase = Phase::Degraded;
                tracing::error!(
                    account_id = %key.account_id(),
                    kind = key.kind().as_str(),
                    %reason,
                    max_restarts = self.settings.max_restarts,
                    window_s = self.settings.window.as_secs(),
                    "child failed too often; degraded, siblings keep running"
                );
                self.degraded.child_degraded(key, reason).await;
            }
        }
    }

    fn statuses(&self) -> Vec<ChildStatus> {
        self.children
            .iter()
            .map(|(key, child)| ChildStatus {
                key: *key,
                state: child.phase.state(),
                restarts: child.restarts,
                last_failure: child.last_failure.clone(),
            })
            .collect()
    }

    fn running_actor(&self, key: ChildKey) -> Option<ActorCell> {
        match &self.children.get(&key)?.phase {
            Phase::Running(cell) => Some(cell.clone()),
            _ => None,
        }
    }

    /// Calendars first, so no new work reaches the writers; then the writers drain, so the
    /// writes they already accepted reach Google. Each group stops concurrently, every child
    /// under `stop_grace`, so the whole takes at most about twice `stop_grace`.
    async fn stop_all_children(&mut self) {
        self.shutting_down = true;
        self.by_actor.clear();
        let mut calendars = Vec::new();
        let mut writers = Vec::new();
        for (key, child) in &mut self.children {
            match std::mem::replace(&mut child.phase, Phase::Stopped) {
                Phase::Running(cell) => match key.kind() {
                    ChildKind::Calendar => calendars.push((*key, cell)),
                    ChildKind::Writer => writers.push((*key, cell)),
                },
                Phase::Restarting(timer) => timer.abort(),
                // A degraded child stays degraded in the listing; it has no actor to stop.
                Phase::Degraded => child.phase = Phase::Degraded,
                Phase::Stopped => {}
            }
        }
        let grace = self.stop_grace;
        join_all(
            calendars
                .into_iter()
                .map(|(key, cell)| stop_child(key, cell, "shutdown", grace)),
        )
        .await;
        join_all(
            writers
                .into_iter()
                .map(|(key, cell)| stop_child(key, cell, "shutdown", grace)),
        )
        .await;
    }
}

/// Stops one child gracefully (a writer drains its mailbox first), killing it if it does not
/// finish within `grace`.
async fn stop_child(key: ChildKey, cell: ActorCell, why: &str, grace: Duration) {
    let stopped = match key.kind() {
        ChildKind::Calendar => cell
            .stop_and_wait(Some(why.to_owned()), Some(grace))
            .await
            .map_err(|err| err.to_string()),
        ChildKind::Writer => cell
            .drain_and_wait(Some(grace))
            .await
            .map_err(|err| err.to_string()),
    };
    if let Err(err) = stopped {
        tracing::warn!(
            account_id = %key.account_id(),
            kind = key.kind().as_str(),
            error = %err,
            "child did not stop within its grace period; killing it"
        );
        let _ = cell.kill_and_wait(Some(grace)).await;
    }
}

// ------------------------------------------------------------------------------------------
// Starting and watching the root
// ------------------------------------------------------------------------------------------

/// Spawns the supervisor, unnamed (names are process-wide, and tests run many supervisors in
/// one process). The `JoinHandle` completes when the supervisor ends: watch it with
/// [`wait_for_root_exit`].
pub async fn start_supervisor(
    args: SupervisorArgs,
) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
    Actor::spawn(None, SyncSupervisor, args).await
}

/// Why [`stop`] could not stop the tree in time.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("the supervisor tree did not stop within {0:?}; it was killed")]
    DeadlineMissed(Duration),
}

/// How long a killed supervisor is given to finish dying; a kill interrupts handlers, so
/// this only covers the task getting scheduled.
const KILL_WAIT: Duration = Duration::from_secs(1);

/// The graceful end of the tree for the shutdown path: asks for [`SupervisorMsg::Shutdown`]
/// (calendars stop, writers drain), then waits for the supervisor's task, all within
/// `deadline`. When the deadline passes, the supervisor is killed (which kills its
/// children) and the miss is returned so the caller can log which step overran.
///
/// Give the supervisor a `stop_grace` of well under half of `deadline`: the calendars and
/// then the writers each get up to `stop_grace`.
pub async fn stop(
    supervisor: &ActorRef<SupervisorMsg>,
    handle: &mut JoinHandle<()>,
    deadline: Duration,
) -> Result<(), StopError> {
    if handle.is_finished() {
        // Already over; awaiting a handle that a `select!` consumed would panic.
        return Ok(());
    }
    let started = Instant::now();
    // Whatever the answer (done, timed out, already gone), the handle below has the final
    // word on whether the supervisor ended.
    let _ = supervisor
        .call(SupervisorMsg::Shutdown, Some(deadline))
        .await;
    let left = deadline.saturating_sub(started.elapsed());
    if tokio::time::timeout(left, &mut *handle).await.is_ok() {
        return Ok(());
    }
    let _ = supervisor.get_cell().kill_and_wait(Some(KILL_WAIT)).await;
    Err(StopError::DeadlineMissed(deadline))
}

/// How the root supervisor ended, as far as the process is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootExit {
    /// It ended after shutdown was requested: the normal way out.
    Requested,
    /// It ended while the service was meant to be running (killed, or its task failed):
    /// the process must exit non-zero so the platform restarts it.
    Unexpected { detail: String },
}

impl fmt::Display for RootExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requested => f.write_str("root supervisor stopped on request"),
            Self::Unexpected { detail } => {
                write!(f, "root supervisor ended unexpectedly: {detail}")
            }
        }
    }
}

/// Waits for the root supervisor's task to end and says whether that was asked for.
///
/// Meant for `tokio::select!` next to the HTTP server: taking the handle by `&mut` lets the
/// shutdown path still await it when the other branch wins.
pub async fn wait_for_root_exit(handle: &mut JoinHandle<()>, shutdown: &Shutdown) -> RootExit {
    classify_root_exit(handle.await, shutdown.is_triggered())
}

/// Pure part of [`wait_for_root_exit`].
pub fn classify_root_exit(joined: Result<(), JoinError>, shutdown_requested: bool) -> RootExit {
    match (joined, shutdown_requested) {
        (Ok(()), true) => RootExit::Requested,
        (Ok(()), false) => RootExit::Unexpected {
            detail: "it stopped without a shutdown request".to_owned(),
        },
        (Err(err), _) => RootExit::Unexpected {
            detail: format!("its task did not complete: {err}"),
        },
    }
}

/// The process exit code for how the root supervisor ended: 0 only for a requested
/// shutdown.
pub fn supervisor_exit_code(exit: &RootExit) -> i32 {
    match exit {
        RootExit::Requested => 0,
        RootExit::Unexpected { .. } => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_keys_name_their_kind_and_account() {
        let id = AccountId::new(7);

        assert_eq!(ChildKey::Calendar(id).to_string(), "calendar:7");
        assert_eq!(ChildKey::Writer(id).to_string(), "writer:7");
        assert_eq!(ChildKey::Writer(id).account_id(), id);
    }

    #[test]
    fn only_a_requested_stop_exits_with_code_zero() {
        let requested = classify_root_exit(Ok(()), true);
        let unrequested = classify_root_exit(Ok(()), false);

        assert_eq!(requested, RootExit::Requested);
        assert_eq!(supervisor_exit_code(&requested), 0);
        assert!(matches!(unrequested, RootExit::Unexpected { .. }));
        assert_eq!(supervisor_exit_code(&unrequested), 1);
    }

    #[tokio::test]
    async fn a_root_task_that_did_not_complete_is_unexpected_even_during_shutdown() {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let joined = task.await;

        let exit = classify_root_exit(joined, true);

        assert!(matches!(exit, RootExit::Unexpected { .. }));
        assert_eq!(supervisor_exit_code(&exit), 1);
    }
}
