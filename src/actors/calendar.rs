//! `CalendarActor`: one per connected calendar. It owns the calendar's watch channel and
//! decides when to sync; the sync itself ([`SyncJob`]: list → read → pass → commit → wake)
//! runs in a spawned task that casts [`CalendarMsg::SyncFinished`] back, so the mailbox stays
//! free while Google answers.
//!
//! Triggers: a push ping, the backstop poll (`POLL_INTERVAL_SECS`, with or without push), a
//! manual sync, a start or resume, a full resync, an operator's confirmation of held
//! deletions. An idle actor syncs at once; any trigger that arrives during a sync sets
//! `follow_up`, and exactly one more sync runs after the current one (coalescing a burst of
//! pings into one).
//!
//! Lifecycle: `pre_start` only loads the account row and its client (local work);
//! `post_start` ensures the watch channel (when `WEBHOOK_BASE_URL` is set), starts the poll
//! timer and casts the first sync. Nothing held here is needed after a crash: the sync token,
//! source events and outbox are in the store, the channel is in the store, timers restart.
//! Revoked consent (`invalid_grant`) marks the account `needs_reauth` and the actor idles.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::Instrument as _;

use super::channel::{self, Ensured};
use super::sync_job::{SyncError, SyncJob, SyncReport};
use super::ActorNames;
use crate::domain::{AccountId, SyncId};
use crate::google::{AccountClient, GoogleError};
use crate::metrics::{CALENDAR_STARTS, SYNCS_IN_FLIGHT};
use crate::services::Services;
use crate::store::Account;

/// What asked for a sync; carries the moment it was asked, where that is the start of a
/// propagation latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A push notification received at this instant; its id names the change in the logs.
    Ping(Instant, SyncId),
    /// The backstop poll.
    Poll,
    /// An operator or a test asked.
    Manual(Instant),
    /// The actor started (after a spawn or a restart).
    Start,
    /// The account was resumed.
    Resume,
    /// List everything again, whatever the stored token.
    FullResync(Instant),
    /// An operator confirmed the deletions a full resync held back: list everything again
    /// and apply them, whatever their number.
    ConfirmDeletions(Instant),
    /// A writer found a block of this calendar gone at Google: look at what the calendar
    /// lists (a user deletion is then recorded as an exclusion).
    BlockVanished,
    /// The calendar's blocks must be planned again (its group, a link or a rule changed);
    /// the sync sees the stored request and plans every stored event.
    Replan,
}

impl Trigger {
    fn at(self) -> Option<Instant> {
        match self {
            Self::Ping(at, _)
            | Self::Manual(at)
            | Self::FullResync(at)
            | Self::ConfirmDeletions(at) => Some(at),
            Self::Poll | Self::Start | Self::Resume | Self::BlockVanished | Self::Replan => None,
        }
    }

    fn sync_id(self) -> Option<SyncId> {
        match self {
            Self::Ping(_, id) => Some(id),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ping(..) => "ping",
            Self::Poll => "poll",
            Self::Manual(_) => "manual",
            Self::Start => "start",
            Self::Resume => "resume",
            Self::FullResync(_) => "full_resync",
            Self::ConfirmDeletions(_) => "confirm_deletions",
            Self::BlockVanished => "block_vanished",
            Self::Replan => "replan",
        }
    }
}

/// Everything a `CalendarActor` understands.
pub enum CalendarMsg {
    Sync(Trigger),
    /// Internal: the spawned sync task is done.
    SyncFinished(Box<Result<SyncReport, SyncError>>),
    /// Internal: time to create a new watch channel (or retry creating one).
    RenewChannel,
}

impl std::fmt::Debug for CalendarMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sync(t) => write!(f, "Sync({t:?})"),
            Self::SyncFinished(_) => f.write_str("SyncFinished"),
            Self::RenewChannel => f.write_str("RenewChannel"),
        }
    }
}

/// Start-up input.
#[derive(Clone)]
pub struct CalendarArgs {
    pub services: Services,
    pub names: ActorNames,
    pub account: AccountId,
}

/// The actor; its dependencies are in [`CalendarArgs`], its mutable data in [`CalendarState`].
pub struct CalendarActor;

pub struct CalendarState {
    services: Services,
    names: ActorNames,
    account: Account,
    client: AccountClient,
    /// A sync task is running; triggers meanwhile only set `follow_up`.
    syncing: bool,
    /// Exactly one more sync is wanted after the running one.
    follow_up: bool,
    /// The next sync must list everything (a FullResync trigger arrived).
    full_requested: bool,
    /// The next full sync applies held deletions (an operator confirmed them).
    deletions_confirmed: bool,
    /// The earliest trigger instant not yet covered by a started sync.
    trigger_started: Option<Instant>,
    /// The id of the first ping not yet covered by a started sync.
    pending_sync_id: Option<SyncId>,
    /// Consent was revoked: nothing more to do until the account is reconnected.
    halted: bool,
    sync_task: Option<JoinHandle<()>>,
    /// Failed syncs in a row; spaces the retries out.
    failures: u32,
    retry_timer: Option<AbortHandle>,
    poll_timer: Option<AbortHandle>,
    renew_timer: Option<AbortHandle>,
}

/// Counts a running sync in the `mcss_syncs_in_flight` gauge while it lives.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!(SYNCS_IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(SYNCS_IN_FLIGHT).decrement(1.0);
    }
}

/// First retry delay after a failed sync; doubled per failure, capped at the poll interval.
const SYNC_RETRY_BASE: Duration = Duration::from_secs(15);

#[ractor::async_trait]
impl Actor for CalendarActor {
    type Msg = CalendarMsg;
    type State = CalendarState;
    type Arguments = CalendarArgs;

    /// Local work only: the account row and its client (read from the store, or from what
    /// [`Services::warm`](crate::services::Services::warm) just read for a large start).
    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: CalendarArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let account = args.services.account(args.account).await?;
        let client = args.services.account_client(args.account).await?;
        Ok(CalendarState {
            services: args.services,
            names: args.names,
            account,
            client,
            syncing: false,
            follow_up: false,
            full_requested: false,
            deletions_confirmed: false,
            trigger_started: None,
            pending_sync_id: None,
            halted: false,
            sync_task: None,
            failures: 0,
            retry_timer: None,
            poll_timer: None,
            renew_timer: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.ensure_channel(&myself).await;
        metrics::counter!(CALENDAR_STARTS).increment(1);
        if state.halted {
            return Ok(());
        }
        let poll = state.services.settings.sync.poll_interval;
        state.poll_timer = Some(
            myself
                .send_interval(poll, || CalendarMsg::Sync(Trigger::Poll))
                .abort_handle(),
        );
        state.request_sync(&myself, Trigger::Start);
        Ok(())
    }

    #[tracing::instrument(name = "calendar", skip_all, fields(account_id = %state.account.id, msg = ?msg))]
    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CalendarMsg::Sync(trigger) => state.request_sync(&myself, trigger),
            CalendarMsg::SyncFinished(result) => state.sync_finished(&myself, *result).await,
            CalendarMsg::RenewChannel => state.ensure_channel(&myself).await,
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A sync still running would otherwise race the next incarnation's; an aborted
        // commit rolls back, and the next sync recomputes the same rows.
        if let Some(task) = state.sync_task.take() {
            task.abort();
        }
        state.stop_timers();
        Ok(())
    }
}

impl CalendarState {
    fn request_sync(&mut self, myself: &ActorRef<CalendarMsg>, trigger: Trigger) {
        if self.halted {
            tracing::debug!(?trigger, "sync ignored: account needs reauth");
            return;
        }
        if matches!(
            trigger,
            Trigger::FullResync(_) | Trigger::ConfirmDeletions(_)
        ) {
            self.full_requested = true;
        }
        if matches!(trigger, Trigger::ConfirmDeletions(_)) {
            self.deletions_confirmed = true;
        }
        if let Some(at) = trigger.at() {
            self.trigger_started = Some(self.trigger_started.map_or(at, |t| t.min(at)));
        }
        if let Some(id) = trigger.sync_id() {
            if self.pending_sync_id.is_some() {
                tracing::info!(sync_id = %id, "ping coalesced into a pending sync");
            }
            self.pending_sync_id.get_or_insert(id);
        }
        if self.syncing {
            self.follow_up = true;
            return;
        }
        self.start_sync(myself, trigger.name());
    }

    fn start_sync(&mut self, myself: &ActorRef<CalendarMsg>, reason: &'static str) {
        self.syncing = true;
        self.follow_up = false;
        let sync_id = self.pending_sync_id.take().unwrap_or_else(SyncId::random);
        let job = SyncJob {
            services: self.services.clone(),
            names: self.names.clone(),
            account: self.account.clone(),
            client: self.client.clone(),
            full: std::mem::take(&mut self.full_requested),
            deletions_confirmed: std::mem::take(&mut self.deletions_confirmed),
            trigger: self.trigger_started.take().unwrap_or_else(Instant::now),
            sync_id,
            reason,
        };
        let myself = myself.clone();
        let permits = self.services.sync_permits.clone();
        // Timer ticks have no parent span: every sync gets its own, named by its id.
        let span = tracing::info_span!("sync", account_id = %self.account.id, sync_id = %sync_id);
        self.sync_task = Some(tokio::spawn(
            async move {
                // At most MAX_CONCURRENT_SYNCS run; this one waits its turn. The semaphore
                // is never closed, so the permit is always granted eventually.
                let _permit = permits.acquire_owned().await;
                let _in_flight = InFlight::enter();
                // Boxed once it may run: a waiting task then holds the job, not the
                // sync's whole state machine (kilobytes, times 10,000 at a start).
                let result = Box::pin(job.run()).await;
                let _ = myself.cast(CalendarMsg::SyncFinished(Box::new(result)));
            }
            .instrument(span),
        ));
    }

    async fn sync_finished(
        &mut self,
        myself: &ActorRef<CalendarMsg>,
        result: Result<SyncReport, SyncError>,
    ) {
        self.syncing = false;
        self.sync_task = None;
        match &result {
            Err(SyncError::Google(GoogleError::InvalidGrant)) => {
                self.needs_reauth().await;
                return;
            }
            Err(_) => self.schedule_retry(myself),
            Ok(_) => self.failures = 0,
        }
        if self.follow_up {
            self.start_sync(myself, "follow_up");
        }
    }

    /// Sooner than the backstop poll, but spaced out while the failure lasts.
    fn schedule_retry(&mut self, myself: &ActorRef<CalendarMsg>) {
        self.failures = self.failures.saturating_add(1);
        let poll = self.services.settings.sync.poll_interval;
        let delay = SYNC_RETRY_BASE
            .saturating_mul(1u32 << self.failures.min(10).saturating_sub(1))
            .min(poll);
        if let Some(timer) = self.retry_timer.take() {
            timer.abort();
        }
        self.retry_timer = Some(
            myself
                .send_after(delay, || CalendarMsg::Sync(Trigger::Poll))
                .abort_handle(),
        );
    }

    /// Google refused the refresh token: flag the account, stop syncing, keep its blocks.
    async fn needs_reauth(&mut self) {
        self.halted = true;
        self.stop_timers();
        self.services.mark_needs_reauth(self.account.id).await;
    }

    fn stop_timers(&mut self) {
        for timer in [
            self.poll_timer.take(),
            self.renew_timer.take(),
            self.retry_timer.take(),
        ]
        .into_iter()
        .flatten()
        {
            timer.abort();
        }
    }

    /// Makes sure a push channel exists that is not about to expire, and schedules its
    /// renewal (see [`channel::ensure`]).
    async fn ensure_channel(&mut self, myself: &ActorRef<CalendarMsg>) {
        if self.halted {
            return;
        }
        // Awaited in `post_start` by every actor of a start at once: kept small (see
        // `channel::ensure`).
        match channel::ensure(&self.services, &self.client, &self.account).await {
            Ensured::NoPush => {}
            Ensured::InvalidGrant => Box::pin(self.needs_reauth()).await,
            Ensured::RenewIn(after) => {
                if let Some(timer) = self.renew_timer.take() {
                    timer.abort();
                }
                self.renew_timer = Some(
                    myself
                        .send_after(after, || CalendarMsg::RenewChannel)
                        .abort_handle(),
                );
            }
        }
    }
}
