//! [`Control`]: the one handle through which HTTP handlers, commands and tests drive the actor
//! tree — start, pause, resume and remove accounts, ask for a sync, hand over a push ping,
//! list the children, read recent propagation latencies.
//!
//! Collaborators: the [`SyncSupervisor`](super::supervisor::SyncSupervisor) (children are
//! added and removed through it), the running actors (found by name through ractor's
//! registry, see [`ActorNames`] — the one way to find an actor), the store (account status,
//! channels, outbox) and `crate::ops` (it is the operations' [`BlockWrites`] under `serve`).
//!
//! Lifecycle: built once by [`super::start`] next to the supervisor and cloned into
//! `AppState`; every method is safe to call while actors restart (a missing actor is either
//! an error the caller sees or a no-op, as documented per method).
//!
//! With several replicas (`coordinator::Replica` is leased) a calendar's actors run only on
//! its owner: a ping, a writer's wake-up or an operator's sync for a calendar owned
//! elsewhere is sent to the owner as a `coordinator::Note`, and actors are started only for
//! calendars owned here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ractor::{ActorRef, RpcReplyPort};
use subtle::ConstantTimeEq as _;

use super::block_writer::WriterMsg;
use super::calendar::{CalendarMsg, Trigger};
use super::channel;
use super::latency::{LatencyRing, LatencySample};
use super::local_writers::LocalWriters;
use super::supervisor::{ChildKey, ChildStatus, SupervisorMsg};
use super::ActorNames;
use crate::coordinator::{ForwardedPing, Note, SyncAsk};
use crate::domain::{AccountId, ChannelId, SyncId};
use crate::google::GoogleError;
use crate::ops::{BlockWrites, OpsError};
use crate::services::Services;
use crate::store::{
    log_kind, Account, AccountStatus, CalendarRules, LogResult, NewLogEntry, SettingsChange,
    StoreError,
};

/// Upper bound on asking the supervisor something (status, lookups).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Calendars per [`SupervisorMsg::AddChildren`]: between batches the supervisor answers
/// everything else that waits (supervision events, status listings).
pub(crate) const START_BATCH: usize = 256;
/// How long one batch of [`START_BATCH`] calendars may take to start.
const START_BATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The keys of both actors of every calendar in `ids`.
pub(crate) fn child_keys(ids: &[AccountId]) -> Vec<ChildKey> {
    ids.iter()
        .flat_map(|&id| [ChildKey::Writer(id), ChildKey::Calendar(id)])
        .collect()
}

/// What went wrong with a control request.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("account {0} not found")]
    NotFound(AccountId),
    #[error("account {id} is {status}; only an active or degraded account can be started")]
    NotActive {
        id: AccountId,
        status: AccountStatus,
    },
    #[error("account {0} has no running calendar actor")]
    NotRunning(AccountId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the actor system did not answer: {0}")]
    Actor(String),
    #[error(transparent)]
    Google(#[from] GoogleError),
    #[error(transparent)]
    Ops(#[from] OpsError),
}

/// A push notification, parsed from the `X-Goog-*` headers by the webhook handler.
#[derive(Debug, Clone)]
pub struct WebhookPing {
    pub channel_id: String,
    pub token: Option<String>,
    pub resource_id: Option<String>,
    pub resource_state: String,
    pub message_number: Option<u64>,
    /// When the request arrived: the start of the propagation latency.
    pub received: Instant,
    /// Names the change this ping announces, in every log line it causes.
    pub sync_id: SyncId,
}

/// What became of a ping; the webhook handler maps it to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingOutcome {
    /// A change notification of a known channel: a sync was asked for.
    Accepted,
    /// The initial `sync` message of a channel: nothing to do, nothing looked up.
    Sync,
    /// No such channel, or it was stopped.
    UnknownChannel,
    /// The channel exists but the token does not match.
    BadToken,
}

/// The handle; cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    supervisor: ActorRef<SupervisorMsg>,
    services: Services,
    names: ActorNames,
    latency: LatencyRing,
}

impl Control {
    pub(crate) fn new(
        supervisor: ActorRef<SupervisorMsg>,
        services: Services,
        names: ActorNames,
        latency: LatencyRing,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                supervisor,
                services,
                names,
                latency,
            }),
        }
    }

    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    pub fn supervisor(&self) -> ActorRef<SupervisorMsg> {
        self.inner.supervisor.clone()
    }

    /// Starts the CalendarActor and BlockWriter of an active (or degraded) account; a no-op
    /// for children that already exist.
    pub async fn start_account(&self, id: AccountId) -> Result<(), ControlError> {
        let account = self.account(id).await?;
        if !wants_actors(account.status) {
            return Err(ControlError::NotActive {
                id,
                status: account.status,
            });
        }
        self.add_children(id).await?;
        // A calendar that joins is backfilled: its group's calendars plan onto it now.
        for calendar in self.store().replans_requested().await? {
            self.replan(calendar);
        }
        Ok(())
    }

    /// Status paused + stop both actors. Blocks stay where they are.
    pub async fn pause(&self, id: AccountId) -> Result<(), ControlError> {
        self.account(id).await?;
        self.store()
            .set_account_status(id, AccountStatus::Paused, Some("paused by the operator"))
            .await?;
        self.remove_children(id).await?;
        self.log_status(id, "paused").await;
        Ok(())
    }

    /// Status active (from paused, degraded or needs_reauth) + start actors + an immediate
    /// sync (a fresh CalendarActor syncs as it starts; a running one is asked to).
    pub async fn resume(&self, id: AccountId) -> Result<(), ControlError> {
        self.account(id).await?;
        self.store()
            .set_account_status(id, AccountStatus::Active, None)
            .await?;
        for key in [ChildKey::Calendar(id), ChildKey::Writer(id)] {
            self.cast_supervisor(SupervisorMsg::ResetDegraded(key))?;
        }
        self.add_children(id).await?;
        if let Some(actor) = self.inner.names.calendar_actor(id) {
            let _ = actor.cast(CalendarMsg::Sync(Trigger::Resume));
        }
        self.log_status(id, "resumed").await;
        Ok(())
    }

    pub async fn sync_now(&self, id: AccountId) -> Result<(), ControlError> {
        self.account(id).await?;
        if self.ask_owner(id, SyncAsk::Manual).await? {
            return Ok(());
        }
        let actor = self
            .inner
            .names
            .calendar_actor(id)
            .ok_or(ControlError::NotRunning(id))?;
        actor
            .cast(CalendarMsg::Sync(Trigger::Manual(Instant::now())))
            .map_err(|e| ControlError::Actor(e.to_string()))
    }

    /// With several replicas, a sync of a calendar another replica owns is asked of that
    /// replica; `true` when it was.
    async fn ask_owner(&self, id: AccountId, ask: SyncAsk) -> Result<bool, ControlError> {
        let services = self.services();
        if services.replica.owns(id) {
            return Ok(false);
        }
        let Some(owner) = services.replica.owner_elsewhere(self.store(), id).await? else {
            return Ok(false);
        };
        let note = Note::Sync { calendar: id, ask };
        services.replica.send(self.store(), &owner, &note).await;
        Ok(true)
    }

    /// A sync asked by another replica (see [`Control::sync_now`]) of a calendar this one
    /// owns; ignored when it has no running calendar actor.
    pub(crate) fn sync_here(&self, id: AccountId, ask: SyncAsk) {
        let trigger = match ask {
            SyncAsk::Manual => Trigger::Manual(Instant::now()),
            SyncAsk::FullResync => Trigger::FullResync(Instant::now()),
            SyncAsk::ConfirmDeletions => Trigger::ConfirmDeletions(Instant::now()),
        };
        if let Some(actor) = self.inner.names.calendar_actor(id) {
            let _ = actor.cast(CalendarMsg::Sync(trigger));
        }
    }

    /// Forget the sync token and list everything again (never deletes state first). When
    /// the account has no running actor, its next start does the full listing.
    pub async fn full_resync(&self, id: AccountId) -> Result<(), ControlError> {
        self.account(id).await?;
        self.store().reset_sync_token(id).await?;
        if self.ask_owner(id, SyncAsk::FullResync).await? {
            return Ok(());
        }
        if let Some(actor) = self.inner.names.calendar_actor(id) {
            let _ = actor.cast(CalendarMsg::Sync(Trigger::FullResync(Instant::now())));
        }
        Ok(())
    }

    /// Confirms the deletions a full resync held back (the mass-deletion guard): the next
    /// full listing applies them whatever their number.
    pub async fn confirm_deletions(&self, id: AccountId) -> Result<(), ControlError> {
        self.account(id).await?;
        self.store().reset_sync_token(id).await?;
        if self.ask_owner(id, SyncAsk::ConfirmDeletions).await? {
            return Ok(());
        }
        let Some(actor) = self.inner.names.calendar_actor(id) else {
            return Err(ControlError::NotRunning(id));
        };
        let _ = actor.cast(CalendarMsg::Sync(Trigger::ConfirmDeletions(Instant::now())));
        Ok(())
    }

    /// Removes an account while `serve` runs: its actors stop, its blocks elsewhere are
    /// queued for deletion (the running writers apply them; the rows outlive the account),
    /// with `purge` every block ON its calendar is deleted first (by a writer started for
    /// that, since the account's own writer is stopped), then its channel is stopped and the
    /// account deleted.
    pub async fn remove_account(&self, id: AccountId, purge: bool) -> Result<(), ControlError> {
        let account = self.account(id).await?;
        // Not active any more, so the account watcher does not start it again meanwhile.
        self.store()
            .set_account_status(id, AccountStatus::Paused, Some("being removed"))
            .await?;
        self.remove_children(id).await?;
        let services = self.services();
        let retracted = crate::ops::retract_source_blocks(services, self, &account).await?;
        if purge {
            let local = LocalWriters::new(services.clone());
            let report = crate::ops::purge_account(services, &local, &account, false).await;
            local.shutdown().await;
            let report = report?;
            if let Some(error) = report.error {
                return Err(OpsError::Incomplete(error).into());
            }
            tracing::info!(report = %report, "own calendar purged");
        }
        channel::stop_current(services, &account).await;
        services.forget_tokens(id);
        self.store().delete_account(id).await?;
        self.store()
            .log_best_effort(
                NewLogEntry::new(
                    log_kind::ACCOUNT_REMOVED,
                    LogResult::Ok,
                    format!("account {id} removed; its blocks elsewhere are being deleted"),
                )
                .account(id)
                .count(i64::try_from(retracted.deleted()).unwrap_or(i64::MAX)),
            )
            .await;
        tracing::info!(account_id = %id, purge, "account removed");
        Ok(())
    }

    /// A push notification: authenticated by the channel token, answered without any
    /// Google call; a change notification asks the account's CalendarActor for a sync.
    pub async fn ping(&self, ping: WebhookPing) -> Result<PingOutcome, ControlError> {
        self.route_ping(ping, true).await
    }

    /// A ping another replica authenticated and forwarded here, the owner of its calendar
    /// (as that replica believed): checked again, and handled here or dropped — never
    /// forwarded twice (a calendar changing hands meanwhile is synced by its new owner as it
    /// starts).
    pub(crate) async fn ping_forwarded(
        &self,
        ping: WebhookPing,
    ) -> Result<PingOutcome, ControlError> {
        self.route_ping(ping, false).await
    }

    async fn route_ping(
        &self,
        ping: WebhookPing,
        may_forward: bool,
    ) -> Result<PingOutcome, ControlError> {
        if ping.resource_state == "sync" {
            // Sent once as a channel opens, it says nothing changed: nothing to look up or
            // do. A start-up that opens 10,000 channels brings 10,000 of these at once, and
            // their lookups, queued behind the first syncs, held every request in memory.
            return Ok(PingOutcome::Sync);
        }
        let Ok(channel_id) = ChannelId::parse(&ping.channel_id) else {
            return Ok(PingOutcome::UnknownChannel);
        };
        let Some(channel) = self.store().channel_by_id(&channel_id).await? else {
            return Ok(PingOutcome::UnknownChannel);
        };
        if channel.stopped_at.is_some() {
            return Ok(PingOutcome::UnknownChannel);
        }
        if let Some(expected) = &channel.token_hash {
            let presented = ping.token.as_deref().map(channel::token_hash);
            let matches = presented
                .is_some_and(|hash| bool::from(hash.as_bytes().ct_eq(expected.as_bytes())));
            if !matches {
                return Ok(PingOutcome::BadToken);
            }
        }
        if ping
            .resource_id
            .as_deref()
            .is_some_and(|r| r != channel.resource_id)
        {
            return Ok(PingOutcome::UnknownChannel);
        }
        let replica = &self.services().replica;
        if !replica.owns(channel.account_id) {
            if may_forward {
                self.forward_ping(channel.account_id, ping).await?;
            } else {
                tracing::debug!(account_id = %channel.account_id, "forwarded ping for a calendar this replica no longer owns");
                replica.nudge();
            }
            return Ok(PingOutcome::Accepted);
        }
        match self.inner.names.calendar_actor(channel.account_id) {
            Some(actor) => {
                let trigger = Trigger::Ping(ping.received, ping.sync_id);
                let _ = actor.cast(CalendarMsg::Sync(trigger));
            }
            None => {
                tracing::debug!(account_id = %channel.account_id, "ping for an account without a running calendar actor");
            }
        }
        Ok(PingOutcome::Accepted)
    }

    /// Sends an authenticated ping to the replica that owns its calendar. With no owner right
    /// now (a lease in passage) it is dropped: the next owner syncs the calendar as it starts.
    async fn forward_ping(
        &self,
        calendar: AccountId,
        ping: WebhookPing,
    ) -> Result<(), ControlError> {
        let replica = &self.services().replica;
        match replica.owner_elsewhere(self.store(), calendar).await? {
            Some(owner) => {
                let note = Note::Ping(ForwardedPing {
                    calendar,
                    channel_id: ping.channel_id,
                    token: ping.token,
                    resource_id: ping.resource_id,
                    resource_state: ping.resource_state,
                    message_number: ping.message_number,
                    sync_id: ping.sync_id.to_string(),
                });
                replica.send(self.store(), &owner, &note).await;
                tracing::debug!(account_id = %calendar, to = %owner, "ping forwarded to the calendar's owner");
            }
            None => {
                tracing::debug!(account_id = %calendar, "ping for a calendar nobody owns right now; its next owner syncs it as it starts");
            }
        }
        Ok(())
    }

    /// Every child's status, ordered by key; empty when the supervisor does not answer.
    pub async fn children(&self) -> Vec<ChildStatus> {
        match self
            .inner
            .supervisor
            .call(SupervisorMsg::Children, Some(ASK_TIMEOUT))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(children)) => children,
            other => {
                tracing::warn!(answer = ?other.map(|_| ()), "the supervisor did not list its children");
                Vec::new()
            }
        }
    }

    /// Recent propagation latencies (trigger → last block write applied), newest last.
    pub fn latency_samples(&self) -> Vec<LatencySample> {
        self.inner.latency.snapshot()
    }

    // --------------------------------------------------------------------------------------

    fn store(&self) -> &crate::store::Store {
        &self.inner.services.store
    }

    async fn account(&self, id: AccountId) -> Result<Account, ControlError> {
        match self.store().account(id).await {
            Ok(account) => Ok(account),
            Err(StoreError::NotFound { .. }) => Err(ControlError::NotFound(id)),
            Err(e) => Err(e.into()),
        }
    }

    fn cast_supervisor(&self, msg: SupervisorMsg) -> Result<(), ControlError> {
        self.inner
            .supervisor
            .cast(msg)
            .map_err(|e| ControlError::Actor(e.to_string()))
    }

    /// Starts both actors of `id` (a no-op for those running) and answers once they are
    /// registered, so a lookup by name right after finds them.
    pub(crate) async fn add_children(&self, id: AccountId) -> Result<(), ControlError> {
        self.add_children_of(&[id]).await
    }

    /// [`Control::add_children`] for many calendars, their actors started
    /// `SPAWN_CONCURRENCY` at a time, [`START_BATCH`] calendars per supervisor call.
    pub(crate) async fn add_children_of(&self, ids: &[AccountId]) -> Result<(), ControlError> {
        let services = self.services();
        let ttl = services.settings.lease_ttl;
        let mut here = Vec::with_capacity(ids.len());
        for &id in ids {
            if services.replica.owns(id)
                || services
                    .replica
                    .take_if_free(&services.store, id, ttl)
                    .await?
            {
                here.push(id);
            } else {
                // With several replicas only the owner runs a calendar's actors; another
                // one holds it (or this one stops).
                services.replica.nudge();
            }
        }
        let _held = hold_syncs_while_starting(services, here.len());
        for batch in here.chunks(START_BATCH) {
            let keys = child_keys(batch);
            self.inner
                .supervisor
                .call(
                    |reply: RpcReplyPort<()>| SupervisorMsg::AddChildren(keys, Some(reply)),
                    Some(START_BATCH_TIMEOUT),
                )
                .await
                .map_err(|e| ControlError::Actor(e.to_string()))?;
        }
        Ok(())
    }

    /// Stops the calendar first (no new work), then the writer.
    pub(crate) async fn remove_children(&self, id: AccountId) -> Result<(), ControlError> {
        let settings = &self.inner.services.settings;
        let wait = settings.shutdown_timeout + ASK_TIMEOUT;
        for key in [ChildKey::Calendar(id), ChildKey::Writer(id)] {
            self.inner
                .supervisor
                .call(
                    |reply: RpcReplyPort<()>| SupervisorMsg::RemoveChild(key, reply),
                    Some(wait),
                )
                .await
                .map_err(|e| ControlError::Actor(e.to_string()))?;
        }
        Ok(())
    }

    async fn log_status(&self, id: AccountId, what: &str) {
        let entry = NewLogEntry::new(
            log_kind::ACCOUNT_STATUS,
            LogResult::Ok,
            format!("account {id} {what}"),
        )
        .account(id);
        self.store().log_best_effort(entry).await;
    }

    /// Asks the running CalendarActor of `calendar`, if any, to sync; a stored replan
    /// request makes that sync plan every stored event.
    pub(crate) fn replan(&self, calendar: AccountId) {
        if let Some(actor) = self.inner.names.calendar_actor(calendar) {
            let _ = actor.cast(CalendarMsg::Sync(Trigger::Replan));
        }
    }

    /// Moves a calendar to another group (see `ops::settings::set_group`) and acts on it at
    /// once: its old blocks are deleted, the new group's made.
    pub async fn set_group(
        &self,
        alias: &str,
        group: &str,
    ) -> Result<SettingsChange, ControlError> {
        let change = crate::ops::settings::set_group(self.services(), alias, group).await?;
        self.apply(&change).await;
        Ok(change)
    }

    /// Changes a calendar's rules (see `ops::settings::set_rules`) and replans at once.
    pub async fn set_rules(
        &self,
        alias: &str,
        rules: &CalendarRules,
    ) -> Result<SettingsChange, ControlError> {
        let change = crate::ops::settings::set_rules(self.services(), alias, rules).await?;
        self.apply(&change).await;
        Ok(change)
    }

    /// Turns a link on or off (see `ops::settings::set_link`) and acts on it at once.
    pub async fn set_link(
        &self,
        source: &str,
        target: &str,
        on: bool,
    ) -> Result<SettingsChange, ControlError> {
        let change = crate::ops::settings::set_link(self.services(), source, target, on).await?;
        self.apply(&change).await;
        Ok(change)
    }

    /// Replans what a settings change asked for, and wakes the writers with queued work.
    async fn apply(&self, change: &SettingsChange) {
        for calendar in &change.replanned {
            self.replan(*calendar);
        }
        if change.retracted > 0 {
            if let Ok(depths) = self.store().queue_depths().await {
                for (target, _) in depths {
                    self.wake_writer(target);
                }
            }
        }
    }

    /// Casts `Converge` to the running writer of `target`, if any.
    pub(crate) fn wake_writer(&self, target: AccountId) {
        self.services().expect_writes(target);
        if let Some(writer) = self.inner.names.writer_actor(target) {
            let _ = writer.cast(WriterMsg::Converge {
                trigger: Some(Instant::now()),
                source: None,
            });
        }
    }
}

/// Whether an account in this status should have running actors. Degraded accounts are
/// started too: the supervisor gave up on a child, not on the account, and they may recover.
pub(crate) fn wants_actors(status: AccountStatus) -> bool {
    matches!(status, AccountStatus::Active | AccountStatus::Degraded)
}

/// Under `serve`, operations reach the running writers: a wake is a `Converge`, and a
/// calendar whose writer is not running (paused, needs reauth) keeps its rows until it runs.
#[async_trait]
impl BlockWrites for Control {
    async fn wake(&self, target: AccountId) {
        let replica = &self.services().replica;
        if replica.owns(target) {
            self.wake_writer(target);
        } else {
            replica.wake_elsewhere(self.store(), &[target]).await;
        }
    }

    async fn drained(&self, targets: &[AccountId], deadline: Duration) -> Vec<AccountId> {
        crate::ops::writes::wait_until_drained(self.store(), targets, deadline).await
    }
}

/// Syncs that may run while the actors of a large start are still being spawned; the
/// rest of `MAX_CONCURRENT_SYNCS` waits until every actor is up (see
/// [`hold_syncs_while_starting`]).
const SYNCS_WHILE_STARTING: usize = 64;

/// The longest the start holds sync permits back, whatever the supervisor does.
pub(crate) const START_HOLD_MAX: Duration = Duration::from_secs(30);

/// Holds back all but [`SYNCS_WHILE_STARTING`] sync permits while `calendars` actors start
/// (more than one batch of them), until the returned permits are dropped: by `actors::start`
/// once the supervisor has spawned its last batch, by [`Control::add_children_of`] when it
/// returns. Spawning the actors and running their first syncs share the CPU: at 10,000
/// calendars, 512 syncs running beside the spawns took every actor 2.5 s to be up instead
/// of 1.4 s, and every calendar was synced no sooner. `None` when the permits are not all
/// free (syncs are running already: nothing is held).
pub(crate) fn hold_syncs_while_starting(
    services: &Services,
    calendars: usize,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let max = services.settings.concurrency.max_syncs;
    if calendars <= START_BATCH || max <= SYNCS_WHILE_STARTING {
        return None;
    }
    let hold = u32::try_from(max - SYNCS_WHILE_STARTING).ok()?;
    services
        .sync_permits
        .clone()
        .try_acquire_many_owned(hold)
        .ok()
}
