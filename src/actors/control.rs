//! [`Control`]: the one handle through which HTTP handlers, commands and tests drive the actor
//! tree — start, pause, resume and remove accounts, ask for a sync, hand over a push ping,
//! list the children, read recent propagation latencies.
//!
//! Collaborators: the [`SyncSupervisor`](super::supervisor::SyncSupervisor) (children are
//! added and removed through it), the running actors (found by name through ractor's
//! registry, see [`ActorNames`]), the store (account status, channels, outbox) and
//! `crate::ops::purge_account` for a removal with purge.
//!
//! Lifecycle: built once by [`super::start`] next to the supervisor and cloned into
//! `AppState`; every method is safe to call while actors restart (a missing actor is either
//! an error the caller sees or a no-op, as documented per method).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use ractor::{ActorRef, RpcReplyPort};
use subtle::ConstantTimeEq as _;

use super::block_writer::WriterMsg;
use super::calendar::{self, CalendarMsg, Trigger};
use super::supervisor::{ChildKey, ChildStatus, SupervisorMsg};
use super::ActorNames;
use crate::domain::{AccountId, ChannelId};
use crate::google::GoogleError;
use crate::ops::OpsError;
use crate::services::Services;
use crate::store::{log_kind, Account, AccountStatus, LogResult, NewLogEntry, StoreError};

/// How many latency samples [`Control::latency_samples`] keeps.
const LATENCY_RING: usize = 512;

/// Upper bound on asking the supervisor something (status, lookups).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

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
}

/// What became of a ping; the webhook handler maps it to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingOutcome {
    /// A change notification of a known channel: a sync was asked for.
    Accepted,
    /// The initial `sync` message of a new channel: nothing to do.
    Sync,
    /// No such channel, or it was stopped.
    UnknownChannel,
    /// The channel exists but the token does not match.
    BadToken,
}

/// One measured propagation: from the trigger (ping received, poll tick, manual sync) of a
/// source account's sync to the last block write it caused on one target calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencySample {
    pub at: DateTime<Utc>,
    /// The source account whose change was propagated (the target's own id when unknown).
    pub account: AccountId,
    pub latency: Duration,
    /// Block writes the target's writer made between the trigger and the drained queue.
    pub writes: u32,
}

/// The shared ring of recent latency samples; writers push, [`Control`] reads.
#[derive(Debug, Clone, Default)]
pub struct LatencyRing(Arc<Mutex<VecDeque<LatencySample>>>);

impl LatencyRing {
    pub fn push(&self, sample: LatencySample) {
        let mut ring = self.0.lock();
        if ring.len() == LATENCY_RING {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    pub fn snapshot(&self) -> Vec<LatencySample> {
        self.0.lock().iter().cloned().collect()
    }
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
        self.add_children(id)
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
        self.add_children(id)?;
        // Queued behind the AddChild above, so the answer names the actor it started.
        if let Some(actor) = self.lookup_calendar(id).await? {
            let _ = actor.cast(CalendarMsg::Sync(Trigger::Resume));
        }
        self.log_status(id, "resumed").await;
        Ok(())
    }

    pub async fn sync_now(&self, id: AccountId) -> Result<(), ControlError> {
        self.account(id).await?;
        let actor = self
            .lookup_calendar(id)
            .await?
            .ok_or(ControlError::NotRunning(id))?;
        actor
            .cast(CalendarMsg::Sync(Trigger::Manual(Instant::now())))
            .map_err(|e| ControlError::Actor(e.to_string()))
    }

    /// Forget the sync token and list everything again (never deletes state first). When
    /// the account has no running actor, its next start does the full listing.
    pub async fn full_resync(&self, id: AccountId) -> Result<(), ControlError> {
        self.account(id).await?;
        self.store().reset_sync_token(id).await?;
        if let Some(actor) = self.lookup_calendar(id).await? {
            let _ = actor.cast(CalendarMsg::Sync(Trigger::FullResync(Instant::now())));
        }
        Ok(())
    }

    /// Confirms the deletions a full resync held back (the mass-deletion guard): the next
    /// full listing applies them whatever their number.
    pub async fn confirm_deletions(&self, id: AccountId) -> Result<(), ControlError> {
        self.account(id).await?;
        self.store().reset_sync_token(id).await?;
        let Some(actor) = self.lookup_calendar(id).await? else {
            return Err(ControlError::NotRunning(id));
        };
        let _ = actor.cast(CalendarMsg::Sync(Trigger::ConfirmDeletions(Instant::now())));
        Ok(())
    }

    /// Retract this account's blocks from every other calendar (their writers delete them),
    /// when `purge` also delete every block ON this account's calendar, stop its actors,
    /// stop its push channel and delete the account row.
    pub async fn remove_account(&self, id: AccountId, purge: bool) -> Result<(), ControlError> {
        let account = self.account(id).await?;
        // Not active any more, so the account watcher does not start it again meanwhile.
        self.store()
            .set_account_status(id, AccountStatus::Paused, Some("being removed"))
            .await?;
        self.remove_children(id).await?;
        let retracted = self.store().retract_blocks_from_source(id).await?;
        self.wake_all_writers(Some(id)).await?;
        if purge {
            purge_own_calendar(self.services(), &account).await?;
        }
        calendar::stop_current_channel(self.services(), &account).await;
        self.services().forget_tokens(id);
        self.store().delete_account(id).await?;
        let entry = NewLogEntry::new(
            log_kind::ACCOUNT_REMOVED,
            LogResult::Ok,
            format!("account {id} removed; its blocks elsewhere are being deleted"),
        )
        .account(id)
        .count(i64::try_from(retracted).unwrap_or(i64::MAX));
        if let Err(e) = self.store().append_log(entry).await {
            tracing::warn!(error = %e, "could not write the sync log");
        }
        tracing::info!(account_id = %id, purge, retracted, "account removed");
        Ok(())
    }

    /// A push notification: authenticated by the channel token, answered without any
    /// Google call; a change notification asks the account's CalendarActor for a sync.
    pub async fn ping(&self, ping: WebhookPing) -> Result<PingOutcome, ControlError> {
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
            let presented = ping.token.as_deref().map(calendar::token_hash);
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
        if ping.resource_state == "sync" {
            return Ok(PingOutcome::Sync);
        }
        match self.inner.names.calendar_actor(channel.account_id) {
            Some(actor) => {
                let _ = actor.cast(CalendarMsg::Sync(Trigger::Ping(ping.received)));
            }
            None => {
                tracing::debug!(account_id = %channel.account_id, "ping for an account without a running calendar actor");
            }
        }
        Ok(PingOutcome::Accepted)
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

    fn add_children(&self, id: AccountId) -> Result<(), ControlError> {
        self.cast_supervisor(SupervisorMsg::AddChild(ChildKey::Calendar(id)))?;
        self.cast_supervisor(SupervisorMsg::AddChild(ChildKey::Writer(id)))
    }

    /// Stops the calendar first (no new work), then the writer.
    async fn remove_children(&self, id: AccountId) -> Result<(), ControlError> {
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

    /// The running CalendarActor of `id`, asked of the supervisor so the answer comes after
    /// any child change queued before it.
    async fn lookup_calendar(
        &self,
        id: AccountId,
    ) -> Result<Option<ActorRef<CalendarMsg>>, ControlError> {
        let answer = self
            .inner
            .supervisor
            .call(
                |reply| SupervisorMsg::Lookup(ChildKey::Calendar(id), reply),
                Some(ASK_TIMEOUT),
            )
            .await
            .map_err(|e| ControlError::Actor(e.to_string()))?;
        match answer {
            ractor::rpc::CallResult::Success(cell) => Ok(cell.map(ActorRef::from)),
            ractor::rpc::CallResult::Timeout => {
                Err(ControlError::Actor("the supervisor timed out".into()))
            }
            ractor::rpc::CallResult::SenderError => {
                Err(ControlError::Actor("the supervisor is restarting".into()))
            }
        }
    }

    /// Casts `Converge` to the writer of every account except `except`.
    async fn wake_all_writers(&self, except: Option<AccountId>) -> Result<(), ControlError> {
        for account in self.store().list_accounts().await? {
            if Some(account.id) == except {
                continue;
            }
            if let Some(writer) = self.inner.names.writer_actor(account.id) {
                let _ = writer.cast(WriterMsg::Converge {
                    trigger: Some(Instant::now()),
                    source: except,
                });
            }
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
        if let Err(e) = self.store().append_log(entry).await {
            tracing::warn!(error = %e, "could not write the sync log");
        }
    }
}

/// Whether an account in this status should have running actors. Degraded accounts are
/// started too: the supervisor gave up on a child, not on the account, and they may recover.
pub(crate) fn wants_actors(status: AccountStatus) -> bool {
    matches!(status, AccountStatus::Active | AccountStatus::Degraded)
}

/// Deletes every block on the account's own calendar (by marker).
async fn purge_own_calendar(services: &Services, account: &Account) -> Result<(), ControlError> {
    let report = crate::ops::purge_account(services, account, false).await?;
    tracing::info!(account_id = %account.id, report = %report, "own calendar purged");
    Ok(())
}

/// Keeps the supervisor's children in step with the accounts table, so accounts added,
/// paused or removed by another process (`mcss accounts add` while `serve` runs) are noticed.
/// Runs until `shutdown` trips.
pub(crate) async fn watch_accounts(
    control: Control,
    every: Duration,
    shutdown: crate::shutdown::Shutdown,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; start() already added everyone
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = control.reconcile_children().await {
            tracing::warn!(error = %e, "could not compare accounts with running actors");
        }
    }
}

/// Runs [`crate::ops::reconcile`] every `every` (first one interval after start) and wakes
/// the writers of calendars where it re-queued blocks. Runs until `shutdown` trips; a failed
/// run is logged and the next one comes at its time.
pub(crate) async fn reconcile_periodically(
    control: Control,
    every: Duration,
    shutdown: crate::shutdown::Shutdown,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
        let report = tokio::select! {
            () = &mut stop => return,
            report = crate::ops::reconcile(control.services(), false) => report,
        };
        match report {
            Ok(report) => {
                tracing::info!(report = %report, "periodic reconciliation");
                for account in report.accounts.iter().filter(|a| a.requeued > 0) {
                    if let Some(writer) = control.inner.names.writer_actor(account.account) {
                        let _ = writer.cast(WriterMsg::Converge {
                            trigger: None,
                            source: None,
                        });
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "periodic reconciliation failed"),
        }
    }
}

impl Control {
    /// One pass of [`watch_accounts`].
    pub(crate) async fn reconcile_children(&self) -> Result<(), ControlError> {
        let accounts = self.store().list_accounts().await?;
        let children = self.children().await;
        // Sets, not scans: this runs every few seconds over every account.
        let running: std::collections::HashSet<AccountId> =
            children.iter().map(|c| c.key.account_id()).collect();
        let known: std::collections::HashSet<AccountId> = accounts.iter().map(|a| a.id).collect();
        for account in &accounts {
            let has = running.contains(&account.id);
            if wants_actors(account.status) && !has {
                tracing::info!(account_id = %account.id, "starting actors of a newly seen account");
                self.add_children(account.id)?;
            } else if !wants_actors(account.status) && has {
                tracing::info!(account_id = %account.id, status = %account.status, "stopping actors of an account that is no longer active");
                self.remove_children(account.id).await?;
            }
        }
        for child in &children {
            let id = child.key.account_id();
            if !known.contains(&id) {
                tracing::info!(account_id = %id, "stopping actors of a removed account");
                self.remove_children(id).await?;
            }
        }
        Ok(())
    }
}
