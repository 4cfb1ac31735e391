//! The persistence layer: sea-orm over PostgreSQL or SQLite.
//!
//! Role: every SQL statement of the service lives here, behind named query functions on
//! [`Store`] that take and return validated ids and records ([`records`]). Collaborators: the
//! `CalendarActor` (sync state, source events, [`Store::commit_sync`], channels), the
//! `BlockWriter` (the outbox: [`Store::claim_due`], [`Store::record_writes`]), operations
//! (queued deletions and repairs), the CLI and the admin pages (accounts, the sync log, queue
//! depths). The schema itself belongs to the `migration` crate.
//!
//! Lifecycle: [`Store::connect`] opens a pool once at start (creating the SQLite file and its
//! key file when missing), [`Store::migrate`] brings the schema up to date, and clones of the
//! `Store` are handed to every actor; [`Store::close`] drains the pool at shutdown. Nothing an
//! actor keeps in memory is needed after a crash: it is all here.
//!
//! Concurrency: writes that read before they write run in one transaction that, on SQLite,
//! starts `BEGIN IMMEDIATE` (takes the write lock up front, so a busy database makes it wait
//! for the busy timeout instead of failing half-way with `SQLITE_BUSY`); SQLite runs in WAL
//! mode so readers never block the single writer.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, Utc};
use sea_orm::{
    ConnectOptions, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, Set,
    SqlErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use secrecy::ExposeSecret as _;

use crate::config::{one_line, ConfigError, DatabaseKind, EncryptionKey, Settings};

mod accounts;
mod channels;
mod counters;
pub mod crypto;
mod deferred;
pub mod entities;
mod events;
mod group_commit;
mod groups;
pub mod leases;
mod outbox;
pub use outbox::PendingOutlook;
pub mod records;
pub mod sqlite_lock;
mod sync_log;
mod sync_state;
pub mod views;
pub mod web_state;
mod writes;

pub use counters::StoreCounters;
pub use crypto::{CryptoError, TokenCipher};
pub use leases::{Fence, HandedOver, HeldLease, LeaseRow};
pub use records::*;
#[doc(hidden)]
pub use sync_state::rows_of as outbox_rows_of;
pub use sync_state::SyncFence;
pub use writes::{WriteOutcome, WriteReport};

/// What went wrong in the store, in the terms a caller branches on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached; usually worth a retry later.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// A refresh token could not be sealed or opened, or the key file is unusable.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The named row does not exist.
    #[error("{what} not found: {key}")]
    NotFound { what: &'static str, key: String },
    /// The write would break a uniqueness rule (e.g. an alias already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row holds a value the code cannot interpret (an invalid id, unknown status, bad JSON).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// `DATABASE_URL` cannot be used at start: no answer, refused, a missing folder.
    #[error("{0}")]
    Unusable(#[from] ConfigError),
    /// This replica no longer holds the lease of the calendar (see [`leases`]): nothing was
    /// written.
    #[error("calendar {calendar} is no longer owned by this replica")]
    Fenced { calendar: crate::domain::AccountId },
}

impl StoreError {
    pub(crate) fn not_found(what: &'static str, key: impl ToString) -> Self {
        Self::NotFound {
            what,
            key: key.to_string(),
        }
    }

    /// PostgreSQL aborted the transaction to break a deadlock (SQLSTATE 40P01) or a
    /// serialization conflict (40001): running it again is the remedy.
    pub(crate) fn is_deadlock(&self) -> bool {
        let Self::Database(
            DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
            | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)),
        ) = self
        else {
            return false;
        };
        e.as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code == "40P01" || code == "40001")
    }

    /// Turns a unique-constraint violation into [`StoreError::Conflict`] with `message`.
    pub(crate) fn conflict_or_db(err: DbErr, message: impl FnOnce() -> String) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::Conflict(message()),
            _ => Self::Database(err),
        }
    }
}

/// Handle to the database; cheap to clone, one pool shared by all clones.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// PostgreSQL: the ownership loop's own small pool ([`Store::for_ownership`]).
    ownership_db: Option<DatabaseConnection>,
    /// Seals refresh tokens; the key comes from `ENCRYPTION_KEY` or the SQLite key file.
    cipher: Arc<TokenCipher>,
    /// The queue of write transactions that may share one (`group_commit.rs`).
    group: Arc<group_commit::GroupCommit>,
    /// Sync tokens of echoes, written with the next write (`deferred.rs`).
    deferred: Arc<deferred::DeferredTokens>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.db.get_database_backend())
            .finish_non_exhaustive()
    }
}

/// The `kv` key of the generated installation id.
const INSTALLATION_ID_KEY: &str = "installation_id";

/// The `kv` key of the canary that proves the token key matches the database.
const KEY_CHECK_KEY: &str = "token_key_check";

/// How often a transaction PostgreSQL aborted for a deadlock is tried in all.
const DEADLOCK_ATTEMPTS: u32 = 3;
/// The longest pause before a transaction aborted for a deadlock runs again, times its
/// attempt; the pause is random up to that, so the two sides do not meet again in step.
const DEADLOCK_PAUSE: Duration = Duration::from_millis(20);

/// Runs `run` (one whole transaction) again when PostgreSQL aborted it to break a deadlock,
/// up to [`DEADLOCK_ATTEMPTS`] in all; every deadlock met is counted
/// ([`StoreCounters::deadlocks`]).
async fn retry_deadlocks<T, Fut>(
    what: &'static str,
    mut run: impl FnMut() -> Fut,
) -> Result<T, StoreError>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    use rand::Rng as _;
    let mut attempt = 1;
    loop {
        match run().await {
            Err(e) if e.is_deadlock() => {
                counters::deadlock();
                if attempt == DEADLOCK_ATTEMPTS {
                    return Err(e);
                }
                tracing::info!(what, attempt, "PostgreSQL broke a deadlock; trying again");
                let most = DEADLOCK_PAUSE * attempt;
                let pause = rand::thread_rng().gen_range(Duration::ZERO..=most);
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// How long a PostgreSQL session may sit idle inside a transaction (see `connect`).
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "10s";

/// Connections of the ownership loop's pool: its statements run one at a time, and a
/// second covers a hand-over at shutdown while a tick still runs.
const OWNERSHIP_POOL_SIZE: u32 = 2;
/// A tick that cannot get a connection this soon fails, and the next one tries again.
const OWNERSHIP_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a pool with `options`, within `timeout`; a database that cannot be reached or does
/// not answer is [`StoreError::Unusable`], named by `place`.
async fn open_pool(
    options: ConnectOptions,
    url: &str,
    place: &str,
    timeout: Duration,
) -> Result<DatabaseConnection, StoreError> {
    match tokio::time::timeout(timeout, sea_orm::Database::connect(options)).await {
        Ok(Ok(mut db)) => {
            db.set_metric_callback(|_| counters::statement());
            Ok(db)
        }
        Ok(Err(DbErr::Conn(e))) => Err(unusable(format!(
            "cannot connect to {place}: {}",
            innermost(&e)
        ))),
        Ok(Err(e)) => Err(StoreError::Database(e)),
        Err(_) => Err(unusable(silence_problem(url, place, timeout).await)),
    }
}

/// The pool and connection settings of `url`'s backend.
fn pool_options(url: &str, kind: DatabaseKind) -> Result<ConnectOptions, StoreError> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        // Later waits for a pooled connection (busy moments) may be longer than the
        // first connect: the timeout below bounds that one.
        .acquire_timeout(Duration::from_secs(30))
        .idle_timeout(Duration::from_secs(600))
        .max_lifetime(Duration::from_secs(1800))
        .sqlx_logging(false);
    match kind {
        DatabaseKind::Postgres => {
            options.max_connections(10).min_connections(1);
            // A replica paused in the middle of a transaction (SIGSTOP, a frozen VM) must
            // not hold the row locks that fence its leases for ever: the server ends
            // such a session, and the others can take the leases over.
            options.map_sqlx_postgres_opts(|opts| {
                opts.options([(
                    "idle_in_transaction_session_timeout",
                    IDLE_IN_TRANSACTION_TIMEOUT,
                )])
            });
        }
        DatabaseKind::Sqlite => {
            // Each connection to `:memory:` would be its own empty database.
            let in_memory = sqlite_file(url)?.is_none();
            options
                .max_connections(if in_memory { 1 } else { 4 })
                .min_connections(1);
            if in_memory {
                // A pool that closed its last idle connection would lose the database.
                options
                    .idle_timeout(None::<Duration>)
                    .max_lifetime(None::<Duration>);
            }
            options.map_sqlx_sqlite_opts(|opts| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                opts.create_if_missing(true)
                    .foreign_keys(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    // With thousands of calendars the hot pages outgrow SQLite's 2 MiB
                    // default cache, and every miss is a `pread` copy: a profile of
                    // 1,000 calendars at 50 changes/s spent a quarter of its CPU there.
                    .pragma("cache_size", SQLITE_CACHE_KIB)
                    .pragma("mmap_size", SQLITE_MMAP_BYTES)
            });
        }
    }
    Ok(options)
}

/// SQLite page cache per connection (negative: KiB), 16 MiB.
const SQLITE_CACHE_KIB: &str = "-16384";
/// SQLite reads the file through a memory map of up to this size (no copy per page read).
const SQLITE_MMAP_BYTES: &str = "268435456";
/// How long a SQLite writer waits for the lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(15);

impl Store {
    /// Opens the pool for `settings.database_url` and resolves the token key.
    ///
    /// SQLite: the file is created when missing, WAL mode and a busy timeout are set, and
    /// without `ENCRYPTION_KEY` the key lives in `<db>.key` (see [`crypto`]). An in-memory
    /// SQLite database without a key gets a throwaway key: its tokens die with it anyway.
    ///
    /// The first connection must succeed within `DB_CONNECT_TIMEOUT_SECS`: a server that
    /// accepts the connection and then says nothing fails the start instead of hanging it.
    /// A database that cannot be used is [`StoreError::Unusable`], naming `DATABASE_URL`
    /// and where it points (never the credentials).
    #[tracing::instrument(name = "store.connect", skip_all, fields(kind = ?settings.database_kind()))]
    pub async fn connect(settings: &Settings) -> Result<Store, StoreError> {
        let url = settings.database_url.expose_secret().to_owned();
        let kind = settings.database_kind();
        let place = describe_database(&url, kind);
        if let Some(file) = sqlite_file(&url)? {
            check_sqlite_folder(&file)?;
        }
        let key = match (&settings.encryption_key, kind) {
            (Some(key), _) => key.clone(),
            (None, DatabaseKind::Postgres) => {
                // Config refuses this combination; keep the invariant visible here too.
                return Err(StoreError::Crypto(CryptoError::KeyFile {
                    path: "ENCRYPTION_KEY".into(),
                    problem: "is required with PostgreSQL".to_owned(),
                }));
            }
            (None, DatabaseKind::Sqlite) => match sqlite_file(&url)? {
                Some(file) => crypto::load_or_create_key_file(&crypto::key_file_for(&file))?,
                None => EncryptionKey::generate(),
            },
        };

        let timeout = settings.db_connect_timeout;
        let db = open_pool(pool_options(&url, kind)?, &url, &place, timeout).await?;
        let ownership_db = match kind {
            DatabaseKind::Postgres => {
                let mut options = pool_options(&url, kind)?;
                options
                    .max_connections(OWNERSHIP_POOL_SIZE)
                    .min_connections(0)
                    .acquire_timeout(OWNERSHIP_ACQUIRE_TIMEOUT)
                    // Only `serve` runs the ownership loop: commands never connect it.
                    .connect_lazy(true);
                Some(open_pool(options, &url, &place, timeout).await?)
            }
            DatabaseKind::Sqlite => None,
        };
        Ok(Store {
            db,
            ownership_db,
            cipher: Arc::new(TokenCipher::new(&key)),
            group: Arc::default(),
            deferred: Arc::default(),
        })
    }

    /// Runs every pending migration (a no-op when the schema is current), then checks that
    /// the token key is the one this database was written with.
    ///
    /// The check opens a canary sealed into `kv` on first use. A changed `ENCRYPTION_KEY` or a
    /// lost `<db>.key` file is thus reported at start, naming the cause, instead of later as
    /// every account failing to decrypt its token.
    #[tracing::instrument(name = "store.migrate", skip_all)]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        use migration::sea_orm_migration::MigratorTrait as _;
        migration::Migrator::up(&self.db, None).await?;
        self.check_key().await?;
        // Data steps that need the key or the application's names, after the schema.
        self.adopt_default_group().await?;
        let moved = self.adopt_legacy_tokens().await?;
        if moved > 0 {
            tracing::info!(
                moved,
                "refresh tokens moved to one credential per Google account"
            );
        }
        Ok(())
    }

    async fn check_key(&self) -> Result<(), StoreError> {
        let aad = KEY_CHECK_KEY.as_bytes();
        let stored = entities::kv::Entity::find_by_id(KEY_CHECK_KEY.to_owned())
            .one(&self.db)
            .await?;
        match stored {
            Some(row) => match self.cipher.open(&row.value, aad) {
                Ok(_) => Ok(()),
                Err(_) => Err(StoreError::Crypto(CryptoError::WrongKey)),
            },
            None => {
                let sealed = self.cipher.seal(KEY_CHECK_KEY, aad)?;
                entities::kv::Entity::insert(entities::kv::ActiveModel {
                    key: Set(KEY_CHECK_KEY.to_owned()),
                    value: Set(sealed),
                })
                .on_conflict_do_nothing_on([entities::kv::Column::Key])
                .exec_without_returning(&self.db)
                .await?;
                Ok(())
            }
        }
    }

    /// One round trip to the database, for `/health/detailed` and `mcss check`.
    #[tracing::instrument(name = "store.ping", skip_all)]
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await?;
        Ok(())
    }

    /// Closes the pool (shared by every clone); used at the end of graceful shutdown.
    ///
    /// A failure to close is logged, not returned: at that point nobody can act on it.
    pub async fn close(&self) {
        if let Err(err) = self.flush_deferred_tokens().await {
            // Only costs the next start a re-listing of the same echoes.
            tracing::warn!(error = %err, "could not write the deferred sync tokens");
        }
        if let Err(err) = self.db.close_by_ref().await {
            tracing::warn!(error = %err, "closing the database pool failed");
        }
        if let Some(pool) = &self.ownership_db {
            if let Err(err) = pool.close_by_ref().await {
                tracing::warn!(error = %err, "closing the ownership pool failed");
            }
        }
    }

    /// This store with every query on the ownership loop's own pool (PostgreSQL; the same
    /// store on SQLite). Heartbeats and lease renewals must never wait behind hundreds of
    /// syncs queued for the main pool's connections: a lease that is renewed late lapses,
    /// and every calendar it fenced stops and starts again. Only for `actors::ownership`.
    pub fn for_ownership(&self) -> Store {
        Store {
            db: self.ownership_db.clone().unwrap_or_else(|| self.db.clone()),
            ..self.clone()
        }
    }

    /// Which backend this store talks to.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The raw connection, for tests and for code that needs a query the store lacks
    /// (add a named function here instead when it is more than a one-off).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The installation id written into every block marker: `INSTALLATION_ID` when set,
    /// otherwise one generated on first use and kept in `kv`, so it survives restarts and is
    /// shared by every replica on the same database.
    #[tracing::instrument(name = "store.installation_id", skip_all)]
    pub async fn installation_id(&self, settings: &Settings) -> Result<String, StoreError> {
        if let Some(id) = &settings.installation_id {
            return Ok(id.clone());
        }
        if let Some(row) = entities::kv::Entity::find_by_id(INSTALLATION_ID_KEY.to_owned())
            .one(&self.db)
            .await?
        {
            return Ok(row.value);
        }
        // 20 lowercase hex digits: short enough for marker keys, ~80 bits of uniqueness.
        let generated: String = uuid::Uuid::new_v4().simple().to_string()[..20].to_owned();
        entities::kv::Entity::insert(entities::kv::ActiveModel {
            key: Set(INSTALLATION_ID_KEY.to_owned()),
            value: Set(generated),
        })
        .on_conflict_do_nothing_on([entities::kv::Column::Key])
        .exec_without_returning(&self.db)
        .await?;
        // Another replica may have won the race: the stored value is the truth.
        entities::kv::Entity::find_by_id(INSTALLATION_ID_KEY.to_owned())
            .one(&self.db)
            .await?
            .map(|row| row.value)
            .ok_or_else(|| StoreError::not_found("kv", INSTALLATION_ID_KEY))
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE` on SQLite, see the module docs).
    pub(crate) async fn write_txn(&self) -> Result<DatabaseTransaction, DbErr> {
        counters::write_transaction();
        self.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
    }

    pub(crate) fn cipher(&self) -> &TokenCipher {
        &self.cipher
    }
}

/// The file behind a SQLite URL, or `None` for an in-memory database.
fn sqlite_file(url: &str) -> Result<Option<std::path::PathBuf>, StoreError> {
    use sea_orm::sqlx::sqlite::SqliteConnectOptions;
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(None);
    }
    let opts: SqliteConnectOptions = url
        .parse()
        .map_err(|e| unusable(format!("is not a usable SQLite URL: {e}")))?;
    Ok(Some(opts.get_filename().to_owned()))
}

fn unusable(problem: String) -> StoreError {
    StoreError::Unusable(ConfigError::new("DATABASE_URL", problem))
}

/// SQLite creates the file but not its folder; saying so beats "unable to open database
/// file" (and the key file beside it would fail the same way first).
fn check_sqlite_folder(file: &std::path::Path) -> Result<(), StoreError> {
    match file.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(folder) if !folder.is_dir() => Err(unusable(format!(
            "the folder {} of the SQLite file does not exist",
            folder.display()
        ))),
        _ => Ok(()),
    }
}

/// Why a PostgreSQL connect timed out, in words: the pool retries a refused connection
/// until its deadline, so "refused" must be found out by trying once more by hand.
async fn silence_problem(url: &str, place: &str, timeout: Duration) -> String {
    let waited = format!("within {} s (DB_CONNECT_TIMEOUT_SECS)", timeout.as_secs());
    let Some(address) = postgres_address(url) else {
        return format!("{place} did not answer {waited}");
    };
    let probe = tokio::net::TcpStream::connect(address);
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Err(e)) => format!("cannot connect to {place}: {e}"),
        Ok(Ok(_)) => format!("{place} accepted the connection but did not answer {waited}"),
        Err(_) => format!("{place} did not answer {waited}"),
    }
}

/// PostgreSQL's host and port, when `url` is a PostgreSQL URL.
fn postgres_address(url: &str) -> Option<(String, u16)> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        return None;
    }
    Some((
        u.host_str().unwrap_or("localhost").to_owned(),
        u.port().unwrap_or(5432),
    ))
}

/// Where `url` points, for error messages: the SQLite file, or PostgreSQL's host, port and
/// database, without user or password.
fn describe_database(url: &str, kind: DatabaseKind) -> String {
    match kind {
        DatabaseKind::Sqlite => match sqlite_file(url) {
            Ok(Some(file)) => format!("the SQLite database {}", file.display()),
            _ => "the SQLite database".to_owned(),
        },
        DatabaseKind::Postgres => match (postgres_address(url), url::Url::parse(url)) {
            (Some((host, port)), Ok(u)) => format!("PostgreSQL at {host}:{port}{}", u.path()),
            _ => "PostgreSQL".to_owned(),
        },
    }
}

/// The deepest cause of `err`, in one line: the driver's own words ("Connection refused",
/// "password authentication failed …") without the wrappers that repeat them.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    one_line(&current.to_string())
}

/// Now, truncated to microseconds: PostgreSQL keeps no more, so a value read back compares
/// equal to the one written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
