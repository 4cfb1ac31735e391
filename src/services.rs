//! [`Services`]: the long-lived collaborators every actor, command and page needs, built once
//! from [`Settings`] and shared by cheap clones.
//!
//! It also keeps one [`TokenSource`] per account, so an account's `CalendarActor`, its
//! `BlockWriter` and the admin pages share one cached access token and one refresh; and,
//! for a few seconds after [`Services::warm`], the account rows and live push channels just
//! read in one go, so thousands of actors start without three reads each.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::Settings;
use crate::coordinator::Replica;
use crate::domain::AccountId;
use crate::google::{AccountClient, GoogleClient, GoogleError, OAuthClient, TokenSource};
use crate::store::{
    log_kind, Account, AccountStatus, LogResult, NewLogEntry, Store, StoreError, SyncState,
    WatchChannel,
};
use crate::sync::PlannerConfig;

/// Why a service could not be built or an account client made.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Google(#[from] GoogleError),
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub google: GoogleClient,
    pub oauth: OAuthClient,
    /// Written into every block's marker and id; stable for the life of the database.
    pub installation: Arc<str>,
    /// Who this process is when it claims outbox rows: unique per process start, so two
    /// processes on one database never apply the same row at once. Also the replica id.
    pub writer_id: Arc<str>,
    /// This process among the replicas: the calendars it owns and their fences.
    pub replica: Replica,
    pub planner: Arc<PlannerConfig>,
    /// One permit per running calendar sync (`MAX_CONCURRENT_SYNCS`).
    pub sync_permits: Arc<tokio::sync::Semaphore>,
    /// One more per running full listing (`MAX_CONCURRENT_FULL_SYNCS`).
    pub full_sync_permits: Arc<tokio::sync::Semaphore>,
    tokens: Arc<Mutex<TokenCache>>,
    warm: Arc<Warmed<Account>>,
    /// The live push channel of each warmed account (`None`: it has none), for its
    /// actor's first `channel::ensure` only.
    warm_channels: Arc<Warmed<Option<WatchChannel>>>,
    /// The warmed accounts that had no pending outbox row, for their writers' first
    /// converge only (see [`Services::writer_starts_idle`]).
    writer_marks: Arc<Mutex<WriterMarks>>,
    /// The sync state of each warmed account, for its first sync only.
    warm_sync_states: Arc<Warmed<SyncState>>,
    /// Channel opens at once (`events.watch` and its record), so a start of thousands of
    /// calendars does not hold thousands of half-done opens waiting for the database.
    pub(crate) channel_permits: Arc<tokio::sync::Semaphore>,
}

/// How long a row read by [`Services::warm`] stands in for a fresh read: long enough for the
/// supervisor to start every actor of a large start, short enough that a change made
/// meanwhile (by the operator) is read by the next start.
const WARM_FOR: Duration = Duration::from_secs(10);

/// Push channels opened at once. Google's latency decides how many are worth having in
/// flight; more only wait for the database, each holding its request and answer.
const CHANNEL_OPENS: usize = 128;

/// Rows [`Services::warm`] read for the actors about to start, each with when it was read;
/// a row stands in for a fresh read for [`WARM_FOR`].
struct Warmed<T>(Mutex<HashMap<AccountId, (Instant, T)>>);

impl<T> Default for Warmed<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: Clone> Warmed<T> {
    /// Keeps `rows`, read at `at`, and forgets the rows older than [`WARM_FOR`].
    fn keep(&self, at: Instant, rows: impl IntoIterator<Item = (AccountId, T)>) {
        let mut warm = self.0.lock();
        warm.retain(|_, (read, _)| at.duration_since(*read) < WARM_FOR);
        warm.extend(rows.into_iter().map(|(id, row)| (id, (at, row))));
    }

    /// `id`'s row, if read less than [`WARM_FOR`] ago.
    fn get(&self, id: AccountId) -> Option<T> {
        let warm = self.0.lock();
        let (read, row) = warm.get(&id)?;
        (read.elapsed() < WARM_FOR).then(|| row.clone())
    }

    /// [`Warmed::get`], once: the row is forgotten.
    fn take(&self, id: AccountId) -> Option<T> {
        let (read, row) = self.0.lock().remove(&id)?;
        (read.elapsed() < WARM_FOR).then_some(row)
    }
}

/// Which writers about to start found nothing to do ([`Services::warm`]), and which were
/// given work while a warm read was under way (so its "nothing pending" is stale for them).
#[derive(Default)]
struct WriterMarks {
    /// Warm reads under way.
    warming: usize,
    /// Accounts whose outbox was empty, and when that was read.
    idle: HashMap<AccountId, Instant>,
    /// Accounts given work while `warming > 0`.
    woken: HashSet<AccountId>,
}

/// One token source per Google account (credential), found through the calendar.
#[derive(Default)]
struct TokenCache {
    keys: HashMap<AccountId, TokenKey>,
    sources: HashMap<TokenKey, TokenSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TokenKey {
    Credential(i64),
    /// A calendar whose token is not in a credential yet.
    Account(AccountId),
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("installation", &self.installation)
            .finish_non_exhaustive()
    }
}

impl Services {
    pub async fn build(settings: Arc<Settings>, store: Store) -> Result<Self, ServicesError> {
        let google = GoogleClient::new(&settings.google)?
            .with_concurrency_limit(settings.concurrency.max_google_requests);
        let oauth = google.oauth(&settings.google)?;
        if !oauth.is_configured() {
            tracing::warn!(
                "GOOGLE_CLIENT_ID is not set: accounts cannot be connected or refreshed"
            );
        }
        let installation: Arc<str> = store.installation_id(&settings).await?.into();
        let planner = Arc::new(PlannerConfig::from_settings(
            &settings.sync,
            installation.to_string(),
        ));
        let writer_id: Arc<str> = new_writer_id().into();
        // One SQLite file serves one replica (`store::sqlite_lock`); on PostgreSQL calendars
        // are owned through leases.
        let replica = match store.backend() {
            sea_orm::DbBackend::Postgres => Replica::leased(writer_id.clone()),
            _ => Replica::sole(writer_id.clone()),
        };
        let sync_permits = Arc::new(tokio::sync::Semaphore::new(
            settings.concurrency.max_syncs.max(1),
        ));
        let full_sync_permits = Arc::new(tokio::sync::Semaphore::new(
            settings.concurrency.max_full_syncs.max(1),
        ));
        Ok(Self {
            settings,
            store,
            google,
            oauth,
            installation,
            planner,
            writer_id,
            replica,
            sync_permits,
            full_sync_permits,
            tokens: Arc::default(),
            warm: Arc::default(),
            warm_channels: Arc::default(),
            writer_marks: Arc::default(),
            warm_sync_states: Arc::default(),
            channel_permits: Arc::new(tokio::sync::Semaphore::new(CHANNEL_OPENS)),
        })
    }

    /// Keeps `accounts` (just read) for the actors about to start, and reads their refresh
    /// tokens, live push channels, sync states and which of them have pending outbox rows,
    /// all in one go: a start of thousands of calendars then costs a few statements instead
    /// of several reads per calendar, each waited for by the supervisor or the pool.
    pub async fn warm(&self, accounts: &[Account]) -> Result<(), StoreError> {
        let at = Instant::now();
        self.warm
            .keep(at, accounts.iter().map(|a| (a.id, a.clone())));
        let cold: Vec<i64> = {
            let cache = self.tokens.lock();
            let mut ids: Vec<i64> = accounts
                .iter()
                .filter_map(|a| a.credential_id)
                .filter(|c| !cache.sources.contains_key(&TokenKey::Credential(*c)))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let ids: Vec<AccountId> = accounts.iter().map(|a| a.id).collect();
        let mut channels = self.store.current_channels(&ids).await?;
        self.warm_channels
            .keep(at, ids.iter().map(|id| (*id, channels.remove(id))));
        let states = self.store.sync_states(&ids).await?;
        self.warm_sync_states.keep(at, states);
        self.writer_marks.lock().warming += 1;
        let busy = self.store.queue_depths().await;
        {
            let mut marks = self.writer_marks.lock();
            marks.warming -= 1;
            if let Ok(busy) = &busy {
                let busy: HashSet<AccountId> = busy.iter().map(|(target, _)| *target).collect();
                let WriterMarks { idle, woken, .. } = &mut *marks;
                idle.retain(|_, read| at.duration_since(*read) < WARM_FOR);
                idle.extend(
                    ids.iter()
                        .filter(|id| !busy.contains(id) && !woken.contains(id))
                        .map(|id| (*id, at)),
                );
            }
            if marks.warming == 0 {
                marks.woken.clear();
            }
        }
        busy?;
        let tokens = self.store.credential_tokens(&cold).await?;
        let mut cache = self.tokens.lock();
        for account in accounts {
            let Some(credential) = account.credential_id else {
                continue;
            };
            let key = TokenKey::Credential(credential);
            if let Some(refresh) = tokens.get(&credential) {
                cache
                    .sources
                    .entry(key)
                    .or_insert_with(|| TokenSource::new(self.oauth.clone(), refresh.clone()));
            }
            if cache.sources.contains_key(&key) {
                cache.keys.insert(account.id, key);
            }
        }
        Ok(())
    }

    /// `id`'s account row: the one [`Services::warm`] read moments ago, or a fresh read.
    pub async fn account(&self, id: AccountId) -> Result<Account, StoreError> {
        match self.warm.get(id) {
            Some(account) => Ok(account),
            None => self.store.account(id).await,
        }
    }

    /// `id`'s live push channel: the one [`Services::warm`] read moments ago (once: a
    /// renewal later reads afresh), or a fresh read.
    pub async fn current_channel(&self, id: AccountId) -> Result<Option<WatchChannel>, StoreError> {
        match self.warm_channels.take(id) {
            Some(channel) => Ok(channel),
            None => self.store.current_channel(id).await,
        }
    }

    /// `id`'s sync state: the one [`Services::warm`] read moments ago (once: its first sync
    /// only, with any token an echo deferred since), or a fresh read.
    pub async fn sync_state(&self, id: AccountId) -> Result<SyncState, StoreError> {
        match self.warm_sync_states.take(id) {
            Some(state) => Ok(self.store.with_deferred_token(state)),
            None => self.store.sync_state(id).await,
        }
    }

    /// Whether `id`'s writer, starting now, may skip its first look at the outbox:
    /// [`Services::warm`] found nothing pending for it moments ago, and no sync has queued
    /// work for it since ([`Services::expect_writes`]). Answers once: a later start looks.
    pub fn writer_starts_idle(&self, id: AccountId) -> bool {
        self.writer_marks
            .lock()
            .idle
            .remove(&id)
            .is_some_and(|read| read.elapsed() < WARM_FOR)
    }

    /// Work was queued for `id`'s writer: its start, if still to come, must look at the
    /// outbox. Called before the writer is looked up to be woken, so a writer that was not
    /// running yet cannot miss the work.
    pub fn expect_writes(&self, id: AccountId) {
        let mut marks = self.writer_marks.lock();
        marks.idle.remove(&id);
        if marks.warming > 0 {
            marks.woken.insert(id);
        }
    }

    /// A Calendar client acting as `account`, sharing the token cache of its Google account
    /// (every calendar reached through one refresh token shares one access token).
    pub async fn account_client(&self, account: AccountId) -> Result<AccountClient, ServicesError> {
        if let Some(tokens) = self.cached_tokens(account) {
            return Ok(self.google.account(tokens));
        }
        let key = match self.store.account(account).await?.credential_id {
            Some(credential) => TokenKey::Credential(credential),
            None => TokenKey::Account(account),
        };
        let refresh = self.store.refresh_token(account).await?;
        let mut cache = self.tokens.lock();
        cache.keys.insert(account, key);
        let tokens = cache
            .sources
            .entry(key)
            .or_insert_with(|| TokenSource::new(self.oauth.clone(), refresh))
            .clone();
        Ok(self.google.account(tokens))
    }

    fn cached_tokens(&self, account: AccountId) -> Option<TokenSource> {
        let cache = self.tokens.lock();
        let key = cache.keys.get(&account)?;
        cache.sources.get(key).cloned()
    }

    /// Drops the cached token of `account`'s Google account (after a reconnect or a
    /// removal), for every calendar reached through it.
    pub fn forget_tokens(&self, account: AccountId) {
        let mut cache = self.tokens.lock();
        if let Some(key) = cache.keys.remove(&account) {
            cache.sources.remove(&key);
            cache.keys.retain(|_, k| *k != key);
        }
    }

    /// Google refused the account's refresh token: flag it `needs_reauth` with words for the
    /// operator, log it once, and drop its cached token. The one place every layer (sync,
    /// writers, operations) records a revoked consent.
    pub async fn mark_needs_reauth(&self, id: AccountId) {
        tracing::warn!(account_id = %id, "Google refused the refresh token; the account needs to be reconnected");
        let reason = "Google says access was revoked — Reconnect";
        // Every calendar reached through that token is cut off alike.
        let calendars = self
            .store
            .calendars_sharing_token(id)
            .await
            .unwrap_or_else(|_| vec![id]);
        for calendar in calendars {
            if let Err(e) = self
                .store
                .set_account_status(calendar, AccountStatus::NeedsReauth, Some(reason))
                .await
            {
                tracing::warn!(account_id = %calendar, error = %e, "cannot record needs_reauth");
            }
            self.store
                .log_best_effort(
                    NewLogEntry::new(log_kind::REAUTH_NEEDED, LogResult::Error, reason)
                        .account(calendar),
                )
                .await;
        }
        self.forget_tokens(id);
    }
}

/// `mcss-<pid>-<random>`: readable in the outbox, unique per process start.
fn new_writer_id() -> String {
    let random: u32 = rand::random();
    format!("mcss-{}-{random:08x}", std::process::id())
}
