//! `CalendarActor`: one per connected account. It owns the account's watch channel and
//! decides when to sync; the sync itself (list → convert → plan → commit → wake writers) runs
//! in a spawned task that casts [`CalendarMsg::SyncFinished`] back, so the mailbox stays free
//! while Google answers.
//!
//! Triggers: a push ping, the backstop poll (every `SYNC_POLL_INTERVAL`, with or without
//! push), a manual sync, a start or resume, a full resync. An idle actor syncs at once; any
//! trigger that arrives during a sync sets `follow_up`, and exactly one more sync runs after
//! the current one (coalescing a burst of pings into one).
//!
//! Collaborators: [`Services`] (store, Google client, planner config), the pure planner in
//! [`crate::sync`], the account's [`BlockWriter`](super::block_writer) and every other
//! account's writer (found through [`ActorNames`]), which it wakes with `Converge`.
//!
//! Lifecycle: `pre_start` only loads the account row and its client (local work);
//! `post_start` ensures the watch channel (when `WEBHOOK_BASE_URL` is set), starts the poll
//! timer and casts the first sync. Nothing held here is needed after a crash: the sync token,
//! source events and outbox are in the store, the channel is in the store, timers restart.
//! Revoked consent (`invalid_grant`) marks the account `needs_reauth` and the actor idles.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use hmac::{Hmac, Mac};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use secrecy::ExposeSecret as _;
use sha2::{Digest, Sha256};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::Instrument as _;

use super::block_writer::WriterMsg;
use super::ActorNames;
use crate::domain::{AccountId, BlockId, ChannelId, EventId};
use crate::google::{AccountClient, EventsQuery, GoogleError};
use crate::metrics::{SYNCS, SYNC_DURATION};
use crate::services::{Services, ServicesError};
use crate::store::{
    log_kind, Account, AccountStatus, BlockState, LogResult, NewChannel, NewLogEntry, OutboxUpsert,
    StoreError, StoredEventUpsert, SyncCommit, WatchChannel,
};
use crate::sync::{
    self, convert, plan_changes, EventStatus, PlannedBlock, SourceEvent, TargetHoldings,
};

/// What asked for a sync; carries the moment it was asked, where that is the start of a
/// propagation latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A push notification received at this instant.
    Ping(Instant),
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
}

impl Trigger {
    fn at(self) -> Option<Instant> {
        match self {
            Self::Ping(at)
            | Self::Manual(at)
            | Self::FullResync(at)
            | Self::ConfirmDeletions(at) => Some(at),
            Self::Poll | Self::Start | Self::Resume => None,
        }
    }
}

/// Everything a `CalendarActor` understands.
pub enum CalendarMsg {
    Sync(Trigger),
    /// Internal: the spawned sync task is done.
    SyncFinished(Box<SyncOutcome>),
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

/// What one sync did, for the log line and the sync log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub full: bool,
    pub listed: usize,
    pub upserted: usize,
    pub deleted: usize,
    pub planned: usize,
    pub blocks_queued: u64,
    pub excluded: usize,
    /// A full listing would have retracted more blocks than allowed; deletions were held.
    pub mass_delete_held: bool,
    pub woken: Vec<AccountId>,
}

/// The result a sync task casts back.
#[derive(Debug)]
pub struct SyncOutcome {
    result: Result<SyncReport, SyncError>,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Google(#[from] GoogleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ServicesError> for SyncError {
    fn from(e: ServicesError) -> Self {
        match e {
            ServicesError::Store(e) => Self::Store(e),
            ServicesError::Google(e) => Self::Google(e),
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
    /// Consent was revoked: nothing more to do until the account is reconnected.
    halted: bool,
    sync_task: Option<JoinHandle<()>>,
    /// Failed syncs in a row; spaces the retries out.
    failures: u32,
    retry_timer: Option<AbortHandle>,
    poll_timer: Option<AbortHandle>,
    renew_timer: Option<AbortHandle>,
}

/// How long to wait before retrying a failed channel creation.
const CHANNEL_RETRY: Duration = Duration::from_secs(300);
/// First retry delay after a failed sync; doubled per failure, capped at the poll interval.
const SYNC_RETRY_BASE: Duration = Duration::from_secs(15);
/// Never renew sooner than this after a renewal (guards a tiny TTL or a clock skew).
const MIN_RENEW_DELAY: Duration = Duration::from_secs(30);

#[ractor::async_trait]
impl Actor for CalendarActor {
    type Msg = CalendarMsg;
    type State = CalendarState;
    type Arguments = CalendarArgs;

    /// Local work only: the account row and its client (the token is read from the store).
    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: CalendarArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let account = args.services.store.account(args.account).await?;
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

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CalendarMsg::Sync(trigger) => state.request_sync(&myself, trigger),
            CalendarMsg::SyncFinished(outcome) => state.sync_finished(&myself, *outcome).await,
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
        for timer in [
            state.poll_timer.take(),
            state.renew_timer.take(),
            state.retry_timer.take(),
        ]
        .into_iter()
        .flatten()
        {
            timer.abort();
        }
        Ok(())
    }
}

impl CalendarState {
    fn request_sync(&mut self, myself: &ActorRef<CalendarMsg>, trigger: Trigger) {
        if self.halted {
            tracing::debug!(account_id = %self.account.id, ?trigger, "sync ignored: account needs reauth");
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
        if self.syncing {
            self.follow_up = true;
            return;
        }
        self.start_sync(myself, trigger);
    }

    fn start_sync(&mut self, myself: &ActorRef<CalendarMsg>, trigger: Trigger) {
        self.syncing = true;
        self.follow_up = false;
        let job = SyncJob {
            services: self.services.clone(),
            names: self.names.clone(),
            account: self.account.clone(),
            client: self.client.clone(),
            full: std::mem::take(&mut self.full_requested),
            deletions_confirmed: std::mem::take(&mut self.deletions_confirmed),
            trigger: self.trigger_started.take().unwrap_or_else(Instant::now),
            kind: trigger,
        };
        let myself = myself.clone();
        // Timer ticks have no parent span: every sync gets its own.
        let span = tracing::info_span!("sync", account_id = %self.account.id);
        self.sync_task = Some(tokio::spawn(
            async move {
                let result = job.run().await;
                let _ = myself.cast(CalendarMsg::SyncFinished(Box::new(SyncOutcome { result })));
            }
            .instrument(span),
        ));
    }

    async fn sync_finished(&mut self, myself: &ActorRef<CalendarMsg>, outcome: SyncOutcome) {
        self.syncing = false;
        self.sync_task = None;
        match &outcome.result {
            Err(SyncError::Google(GoogleError::InvalidGrant)) => {
                self.needs_reauth().await;
                return;
            }
            Err(_) => {
                // Sooner than the backstop poll, but spaced out while the failure lasts.
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
            Ok(_) => self.failures = 0,
        }
        if self.follow_up {
            self.start_sync(myself, Trigger::Poll);
        }
    }

    /// Google refused the refresh token: flag the account, stop syncing, keep its blocks.
    async fn needs_reauth(&mut self) {
        self.halted = true;
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
        mark_needs_reauth(&self.services, self.account.id).await;
    }

    /// Makes sure a push channel exists that is not about to expire, and schedules its
    /// renewal. Without `WEBHOOK_BASE_URL` nothing happens (the poll alone triggers syncs).
    async fn ensure_channel(&mut self, myself: &ActorRef<CalendarMsg>) {
        let Some(address) = self.services.settings.webhook_url() else {
            return;
        };
        if self.halted {
            return;
        }
        let settings = &self.services.settings.sync;
        let store = &self.services.store;
        let current = match store.current_channel(self.account.id).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!(account_id = %self.account.id, error = %e, "cannot read the watch channel; retrying later");
                self.schedule_renewal(myself, CHANNEL_RETRY);
                return;
            }
        };
        let renew_before = chrono::TimeDelta::from_std(settings.channel_renew_before)
            .unwrap_or(chrono::TimeDelta::zero());
        if let Some(channel) = &current {
            let renew_at = channel.expires_at - renew_before;
            if let Ok(wait) = (renew_at - Utc::now()).to_std() {
                if !wait.is_zero() {
                    self.schedule_renewal(myself, wait);
                    return;
                }
            }
        }
        let channel_id = ChannelId::random();
        let token = channel_token(&self.services, &channel_id);
        let ttl = settings.channel_ttl;
        let watched = self
            .client
            .events_watch(
                &self.account.calendar_id,
                &channel_id,
                &address,
                Some(&token),
                Some(ttl),
            )
            .await;
        let channel = match watched {
            Ok(channel) => channel,
            Err(GoogleError::InvalidGrant) => {
                self.needs_reauth().await;
                return;
            }
            Err(e) => {
                tracing::warn!(account_id = %self.account.id, error = %e, "cannot open a watch channel; polling meanwhile");
                log(
                    &self.services,
                    NewLogEntry::new(log_kind::CHANNEL_CREATED, LogResult::Error, e.to_string())
                        .account(self.account.id),
                )
                .await;
                self.schedule_renewal(myself, CHANNEL_RETRY);
                return;
            }
        };
        let expires_at = channel.expires_at().unwrap_or_else(|| {
            Utc::now() + chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::days(7))
        });
        let saved = store
            .save_channel(NewChannel {
                account_id: self.account.id,
                channel_id: channel_id.clone(),
                resource_id: channel.resource_id.clone(),
                token_hash: Some(token_hash(&token)),
                expires_at,
            })
            .await;
        if let Err(e) = saved {
            // Unrecorded, the channel's pings would be refused as unknown: stop it again.
            tracing::warn!(account_id = %self.account.id, error = %e, "cannot record the watch channel; stopping it");
            let _ = self
                .client
                .channels_stop(&channel_id, &channel.resource_id)
                .await;
            self.schedule_renewal(myself, CHANNEL_RETRY);
            return;
        }
        tracing::info!(account_id = %self.account.id, channel = %channel_id, %expires_at, "watch channel opened");
        log(
            &self.services,
            NewLogEntry::new(
                log_kind::CHANNEL_CREATED,
                LogResult::Ok,
                format!("channel {channel_id}"),
            )
            .account(self.account.id),
        )
        .await;
        if let Some(old) = current {
            stop_channel(&self.services, &self.client, &old).await;
        }
        let wait = (expires_at - renew_before - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(MIN_RENEW_DELAY);
        self.schedule_renewal(myself, wait);
    }

    fn schedule_renewal(&mut self, myself: &ActorRef<CalendarMsg>, after: Duration) {
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

/// Flags the account `needs_reauth` with words for the operator, and logs it once.
pub(crate) async fn mark_needs_reauth(services: &Services, id: AccountId) {
    tracing::warn!(account_id = %id, "Google refused the refresh token; the account needs to be reconnected");
    let reason = "Google says access was revoked — Reconnect";
    if let Err(e) = services
        .store
        .set_account_status(id, AccountStatus::NeedsReauth, Some(reason))
        .await
    {
        tracing::warn!(account_id = %id, error = %e, "cannot record needs_reauth");
    }
    log(
        services,
        NewLogEntry::new(log_kind::REAUTH_NEEDED, LogResult::Error, reason).account(id),
    )
    .await;
    services.forget_tokens(id);
}

/// Stops a channel at Google (a 404 means it is gone already) and marks it stopped.
async fn stop_channel(services: &Services, client: &AccountClient, channel: &WatchChannel) {
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
    log(
        services,
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
pub(crate) async fn stop_current_channel(services: &Services, account: &Account) {
    let Ok(Some(channel)) = services.store.current_channel(account.id).await else {
        return;
    };
    match services.account_client(account.id).await {
        Ok(client) => stop_channel(services, &client, &channel).await,
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

async fn log(services: &Services, entry: NewLogEntry) {
    if let Err(e) = services.store.append_log(entry).await {
        tracing::warn!(error = %e, "could not write the sync log");
    }
}

fn planner_account(account: &Account, zone: Option<&str>) -> sync::Account {
    sync::Account {
        id: account.id,
        alias: account.alias.clone(),
        calendar_id: account.calendar_id.clone(),
        time_zone: account
            .time_zone
            .clone()
            .or_else(|| zone.map(str::to_owned)),
    }
}

fn to_upsert(planned: PlannedBlock, source: AccountId) -> OutboxUpsert {
    OutboxUpsert {
        target_account_id: planned.target,
        source_account_id: source,
        source_event_id: planned.source_event_id,
        block_id: planned.block_id,
        body: planned.desired.as_ref().map(|d| d.body.to_json()),
        desired_hash: planned.desired.map(|d| d.hash),
    }
}

// ------------------------------------------------------------------------------------------
// The sync task
// ------------------------------------------------------------------------------------------

struct SyncJob {
    services: Services,
    names: ActorNames,
    account: Account,
    client: AccountClient,
    full: bool,
    deletions_confirmed: bool,
    trigger: Instant,
    kind: Trigger,
}

impl SyncJob {
    async fn run(self) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let result = self.sync().await;
        let elapsed = started.elapsed();
        let store = &self.services.store;
        let id = self.account.id;
        match &result {
            Ok(report) => {
                let kind = if report.full { "full" } else { "incremental" };
                metrics::counter!(SYNCS, "kind" => kind, "result" => "ok").increment(1);
                metrics::histogram!(SYNC_DURATION, "kind" => kind).record(elapsed.as_secs_f64());
                tracing::info!(
                    account_id = %id,
                    kind,
                    trigger = ?self.kind,
                    listed = report.listed,
                    upserted = report.upserted,
                    deleted = report.deleted,
                    planned = report.planned,
                    queued = report.blocks_queued,
                    excluded = report.excluded,
                    held = report.mass_delete_held,
                    duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    "sync done"
                );
                let log_kind = if report.full {
                    log_kind::FULL_SYNC
                } else {
                    log_kind::INCREMENTAL_SYNC
                };
                let detail = format!(
                    "{} listed, {} changed, {} removed, {} blocks queued",
                    report.listed, report.upserted, report.deleted, report.blocks_queued
                );
                log(
                    &self.services,
                    NewLogEntry::new(log_kind, LogResult::Ok, detail)
                        .account(id)
                        .count(i64::try_from(report.listed).unwrap_or(i64::MAX))
                        .duration(elapsed),
                )
                .await;
            }
            Err(e) => {
                let kind = if self.full { "full" } else { "incremental" };
                metrics::counter!(SYNCS, "kind" => kind, "result" => "error").increment(1);
                tracing::warn!(account_id = %id, kind, error = %e, "sync failed");
                if !matches!(e, SyncError::Google(GoogleError::InvalidGrant)) {
                    let _ = store.record_sync_error(id, &e.to_string()).await;
                }
                let log_kind = if self.full {
                    log_kind::FULL_SYNC
                } else {
                    log_kind::INCREMENTAL_SYNC
                };
                log(
                    &self.services,
                    NewLogEntry::new(log_kind, LogResult::Error, e.to_string())
                        .account(id)
                        .duration(elapsed),
                )
                .await;
            }
        }
        result
    }

    async fn sync(&self) -> Result<SyncReport, SyncError> {
        let store = &self.services.store;
        let me = &self.account;
        let installation: &str = &self.services.installation;
        let state = store.sync_state(me.id).await?;
        let mut full = self.full || state.sync_token.is_none();
        let listing = match (&state.sync_token, full) {
            (Some(token), false) => {
                match self
                    .client
                    .list_all(&me.calendar_id, &EventsQuery::incremental(token.clone()))
                    .await
                {
                    Ok(listing) => listing,
                    Err(GoogleError::SyncTokenExpired) => {
                        tracing::info!(account_id = %me.id, "sync token expired; listing everything");
                        store.reset_sync_token(me.id).await?;
                        full = true;
                        self.client
                            .list_all(&me.calendar_id, &EventsQuery::full())
                            .await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            _ => {
                self.client
                    .list_all(&me.calendar_id, &EventsQuery::full())
                    .await?
            }
        };
        let now = Utc::now();
        let mut report = SyncReport {
            full,
            listed: listing.events.len(),
            ..SyncReport::default()
        };

        // 1. Convert.
        let mut changed: Vec<SourceEvent> = Vec::new();
        let mut upserts: Vec<StoredEventUpsert> = Vec::new();
        let mut deleted_ids: Vec<EventId> = Vec::new();
        let mut listed_ids: HashSet<EventId> = HashSet::new();
        for event in &listing.events {
            let converted = match convert::source_event(event) {
                Ok(converted) => converted,
                Err(e) => {
                    tracing::warn!(account_id = %me.id, error = %e, "skipping an event that cannot be read");
                    continue;
                }
            };
            listed_ids.insert(converted.id.clone());
            if converted.status == EventStatus::Cancelled {
                deleted_ids.push(converted.id.clone());
            } else {
                upserts.push(StoredEventUpsert {
                    event_id: converted.id.clone(),
                    ical_uid: converted.ical_uid.clone(),
                    recurring_event_id: converted.recurring_event_id.clone(),
                    status: event.status().as_str().to_owned(),
                    is_block: sync::is_block(&converted, installation),
                    data: convert::stored_data(event),
                    google_updated: event.updated,
                });
            }
            changed.push(converted);
        }

        // 2. Our blocks the user deleted on this calendar stay deleted.
        for event in changed
            .iter()
            .filter(|e| e.status == EventStatus::Cancelled && sync::is_ours(e, installation))
        {
            let Ok(block_id) = BlockId::parse(event.id.as_str()) else {
                continue;
            };
            let Some(row) = store.block_on_target(me.id, &block_id).await? else {
                continue;
            };
            let wants_live = row
                .body
                .as_ref()
                .is_some_and(|b| b.get("status").and_then(|s| s.as_str()) != Some("cancelled"));
            let applied = row.applied_hash.is_some()
                && matches!(row.state, BlockState::Applied | BlockState::Pending);
            if wants_live && applied {
                store.mark_excluded(row.id).await?;
                report.excluded += 1;
                tracing::info!(account_id = %me.id, block_id = %block_id, "block deleted by the user; it stays deleted");
                log(
                    &self.services,
                    NewLogEntry::new(
                        log_kind::BLOCK_EXCLUDED,
                        LogResult::Ok,
                        format!("block {block_id} deleted by the user"),
                    )
                    .account(me.id),
                )
                .await;
            }
        }

        // 3. What a tombstone was: its iCalUID is only in the store.
        let mut known_uid: HashMap<EventId, String> = HashMap::new();
        if full {
            let known = store.source_events(me.id).await?;
            let missing: Vec<_> = known
                .into_iter()
                .filter(|k| !listed_ids.contains(&k.event_id))
                .collect();
            let hold = !self.deletions_confirmed
                && (state.mass_delete_hold || self.would_retract_too_many(&missing).await?);
            if self.deletions_confirmed && state.mass_delete_hold {
                self.release_mass_delete(missing.len()).await?;
            }
            if hold && !missing.is_empty() {
                report.mass_delete_held = true;
                self.hold_mass_delete(missing.len(), state.mass_delete_hold)
                    .await?;
            } else {
                for known in missing {
                    let mut tombstone = SourceEvent::tombstone(known.event_id.clone());
                    tombstone.recurring_event_id = known.recurring_event_id.clone();
                    if let Some(uid) = known.ical_uid.clone() {
                        known_uid.insert(known.event_id.clone(), uid);
                    }
                    deleted_ids.push(known.event_id);
                    changed.push(tombstone);
                }
            }
        }
        for event in changed
            .iter()
            .filter(|e| e.status == EventStatus::Cancelled && e.ical_uid.is_none())
        {
            if known_uid.contains_key(&event.id) || sync::is_block(event, installation) {
                continue;
            }
            if let Some(stored) = store.source_event(me.id, &event.id).await? {
                if let Some(uid) = stored.ical_uid {
                    known_uid.insert(event.id.clone(), uid);
                }
            }
        }
        report.upserted = upserts.len();
        report.deleted = deleted_ids.len();

        // 4. Plan this account's changes onto every other calendar. A sync that changed
        //    nothing (most polls) needs no account list: that keeps an idle poll O(1)
        //    however many accounts are connected.
        let accounts = if changed.is_empty() {
            Vec::new()
        } else {
            store.list_accounts().await?
        };
        let source = planner_account(me, listing.time_zone.as_deref());
        let targets: Vec<sync::Account> = accounts
            .iter()
            .filter(|a| a.id != me.id)
            .map(|a| planner_account(a, None))
            .collect();
        let mine: Vec<&SourceEvent> = changed
            .iter()
            .filter(|e| !sync::is_block(e, installation))
            .collect();
        let uids: BTreeSet<String> = mine
            .iter()
            .filter_map(|e| e.ical_uid.clone().or_else(|| known_uid.get(&e.id).cloned()))
            .collect();
        let mut same_meeting: Vec<crate::store::StoredEvent> = Vec::new();
        for uid in &uids {
            same_meeting.extend(store.live_events_by_ical_uid(uid).await?);
        }
        let mut holdings: HashMap<AccountId, TargetHoldings> = HashMap::new();
        let mut others: HashMap<AccountId, Vec<SourceEvent>> = HashMap::new();
        let mut my_events: HashMap<EventId, SourceEvent> = HashMap::new();
        for row in &same_meeting {
            let Ok(event) = convert::from_stored(&row.data) else {
                continue;
            };
            if row.account_id == me.id {
                my_events.insert(event.id.clone(), event);
            } else {
                others.entry(row.account_id).or_default().push(event);
            }
        }
        for (account, events) in &others {
            holdings.insert(*account, TargetHoldings::from_events(events.iter()));
        }
        let cfg = &self.services.planner;
        let mut desired: Vec<OutboxUpsert> =
            plan_changes(cfg, &source, &changed, &targets, &holdings, now)
                .into_iter()
                .map(|p| to_upsert(p, me.id))
                .collect();

        // 5. Same meeting: what this calendar now holds decides whether the other
        //    calendars' copies of those meetings need a block here.
        for event in &mine {
            if event.status == EventStatus::Cancelled {
                my_events.remove(&event.id);
            } else {
                my_events.insert(event.id.clone(), (*event).clone());
            }
        }
        let my_holdings = TargetHoldings::from_events(my_events.values());
        let me_as_target = HashMap::from([(me.id, my_holdings)]);
        for (other, events) in &others {
            let Some(account) = accounts.iter().find(|a| a.id == *other) else {
                continue;
            };
            let replanned = plan_changes(
                cfg,
                &planner_account(account, None),
                events,
                std::slice::from_ref(&source),
                &me_as_target,
                now,
            );
            desired.extend(replanned.into_iter().map(|p| to_upsert(p, *other)));
        }
        report.planned = desired.len();

        // 6. One transaction: events, blocks and the new token.
        let outcome = store
            .commit_sync(
                me.id,
                SyncCommit {
                    upserted_source_events: upserts,
                    deleted_source_event_ids: deleted_ids,
                    desired_blocks: desired,
                    new_sync_token: listing.next_sync_token,
                    full,
                },
            )
            .await?;
        report.blocks_queued = outcome.blocks_queued;
        for target in &outcome.woken_targets {
            if let Some(writer) = self.names.writer_actor(*target) {
                let _ = writer.cast(WriterMsg::Converge {
                    trigger: Some(self.trigger),
                    source: Some(me.id),
                });
            }
        }
        report.woken = outcome.woken_targets;
        Ok(report)
    }

    /// Whether deleting `missing` would retract more blocks than the threshold allows.
    async fn would_retract_too_many(
        &self,
        missing: &[crate::store::StoredEvent],
    ) -> Result<bool, SyncError> {
        let threshold = u64::from(self.services.settings.sync.mass_delete_threshold);
        let mut live = 0u64;
        for known in missing.iter().filter(|k| !k.is_block) {
            let rows = self
                .services
                .store
                .blocks_for_source(self.account.id, &known.event_id)
                .await?;
            live += rows
                .iter()
                .filter(|r| r.body.is_some() && r.state != BlockState::Excluded)
                .count() as u64;
            if live > threshold {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The operator confirmed: the hold is lifted and this sync applies the deletions.
    async fn release_mass_delete(&self, missing: usize) -> Result<(), SyncError> {
        let store = &self.services.store;
        let id = self.account.id;
        store.set_mass_delete_hold(id, false).await?;
        let status = store.account(id).await?.status;
        store.set_account_status(id, status, None).await?;
        tracing::warn!(account_id = %id, missing, "held deletions confirmed by an operator");
        log(
            &self.services,
            NewLogEntry::new(
                log_kind::MASS_DELETE_HOLD,
                LogResult::Ok,
                format!("an operator confirmed the deletion of {missing} missing events' blocks"),
            )
            .account(id)
            .count(i64::try_from(missing).unwrap_or(i64::MAX)),
        )
        .await;
        Ok(())
    }

    async fn hold_mass_delete(&self, missing: usize, already: bool) -> Result<(), SyncError> {
        let store = &self.services.store;
        let id = self.account.id;
        if already {
            tracing::info!(account_id = %id, missing, "deletions still held for operator confirmation");
            return Ok(());
        }
        store.set_mass_delete_hold(id, true).await?;
        let reason = format!(
            "A full resync no longer lists {missing} known events; their blocks are kept until an operator confirms"
        );
        tracing::warn!(account_id = %id, missing, "mass delete held back");
        let status = store.account(id).await?.status;
        store.set_account_status(id, status, Some(&reason)).await?;
        log(
            &self.services,
            NewLogEntry::new(log_kind::MASS_DELETE_HOLD, LogResult::Skipped, reason)
                .account(id)
                .count(i64::try_from(missing).unwrap_or(i64::MAX)),
        )
        .await;
        Ok(())
    }
}
