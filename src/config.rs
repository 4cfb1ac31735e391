//! Configuration: one typed [`Settings`] read from the environment (and `.env` when present).
//!
//! Every variable is parsed here and nowhere else, and every one of them at start, so a bad
//! value stops the process before anything happens. [`VARIABLES`] lists them all (the
//! README's configuration table is checked against it). A bad value is reported as a
//! [`ConfigError`] naming the variable and what is wrong with it, in one line and never
//! echoing a secret, so `main` can print it and exit with status 2; the store and the Redis
//! coordinator use the same error when a `DATABASE_URL` or `REDIS_URL` cannot be reached.
//! Secrets are held as [`SecretString`] or [`EncryptionKey`], whose `Debug` output is
//! redacted. [`findings`] names what a valid configuration still leaves out (`mcss check`).

mod findings;
mod log_filter;

pub use findings::{Finding, Severity};
pub use log_filter::{named_targets as log_filter_targets, LEVELS as LOG_LEVELS};

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use regex::Regex;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::domain::CalendarId;

/// Google's production endpoints; tests and the demo point these at the emulator.
pub const GOOGLE_API_BASE_URL: &str = "https://www.googleapis.com";
pub const GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const GOOGLE_REVOKE_URL: &str = "https://oauth2.googleapis.com/revoke";

/// The default database: a SQLite file in the working directory, created when missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://mcss.db?mode=rwc";

/// Every environment variable [`Settings`] reads. `CALENDAR_NN_ID` stands for the numbered
/// family `CALENDAR_01_ID`, `CALENDAR_02_ID`, …
pub const VARIABLES: &[&str] = &[
    "PORT",
    "DATABASE_URL",
    "DB_CONNECT_TIMEOUT_SECS",
    "REDIS_URL",
    "ENCRYPTION_KEY",
    "WEBHOOK_BASE_URL",
    "WEBHOOK_SECRET",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "GOOGLE_REDIRECT_URI",
    "GOOGLE_API_BASE_URL",
    "GOOGLE_AUTH_URL",
    "GOOGLE_TOKEN_URL",
    "GOOGLE_REVOKE_URL",
    "GOOGLE_REQUEST_TIMEOUT_SECS",
    "CALENDAR_NN_ID",
    "ADMIN_PASSWORD",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "ENABLE_METRICS",
    "INSTALLATION_ID",
    "BLOCK_TITLE_TEMPLATE",
    "BLOCK_DETAILS",
    "SKIP_ALL_DAY",
    "SKIP_OUT_OF_OFFICE",
    "SKIP_FOCUS_TIME",
    "EXCLUDE_TITLE_REGEX",
    "SYNC_LOOKBACK_DAYS",
    "POLL_INTERVAL_SECS",
    "RECONCILE_INTERVAL_SECS",
    "TOKEN_FLUSH_INTERVAL_SECS",
    "WRITES_PER_SECOND",
    "MAX_CONCURRENT_SYNCS",
    "MAX_CONCURRENT_FULL_SYNCS",
    "MAX_CONCURRENT_GOOGLE_REQUESTS",
    "MASS_DELETE_THRESHOLD",
    "CHANNEL_RENEW_BEFORE_SECS",
    "CHANNEL_TTL_SECS",
    "RESTART_BACKOFF_INITIAL_MS",
    "RESTART_BACKOFF_MAX_SECS",
    "RESTART_MAX",
    "RESTART_WINDOW_SECS",
    "SHUTDOWN_TIMEOUT_SECS",
    "LEASE_TTL_SECS",
    "MAX_BODY_BYTES",
    "REQUEST_TIMEOUT_SECS",
];

/// The shortest accepted `ADMIN_PASSWORD`: the dashboard can remove accounts.
pub const MIN_ADMIN_PASSWORD_LEN: usize = 12;
/// The shortest accepted `WEBHOOK_SECRET`: it keys the HMAC of every channel token.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;
/// The longest accepted `BLOCK_TITLE_TEMPLATE`.
const MAX_TITLE_TEMPLATE_LEN: usize = 200;

/// A configuration value that cannot be used, with the variable that holds it.
///
/// Displayed as `VARIABLE: problem`, always on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

impl ConfigError {
    /// The problem is folded to one line: library errors (the regex parser's, a driver's)
    /// may span several.
    pub fn new(variable: impl Into<String>, problem: impl AsRef<str>) -> Self {
        Self {
            variable: variable.into(),
            problem: one_line(problem.as_ref()),
        }
    }
}

/// `text` with every run of whitespace, line breaks included, turned into one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// What a block's description holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockDetails {
    /// The source's title, time, location and calendar, visible only to the owner.
    Full,
    /// Nothing but the generic title.
    BusyOnly,
}

impl BlockDetails {
    /// The word of `BLOCK_DETAILS`, the CLI and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::BusyOnly => "busy-only",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "full" => Some(Self::Full),
            "busy-only" => Some(Self::BusyOnly),
            _ => None,
        }
    }
}

/// Which kind of database `DATABASE_URL` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Postgres,
    Sqlite,
}

/// The 32-byte key that encrypts refresh tokens at rest.
#[derive(Clone)]
pub struct EncryptionKey([u8; 32]);

impl EncryptionKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key (the demo and tests use one).
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Accepts 64 hex digits or the standard/URL-safe base64 of 32 bytes.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let bytes = if raw.len() == 64 && raw.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(raw).map_err(|e| e.to_string())?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
                .map_err(|_| {
                    "must be 32 bytes as 64 hex digits or base64 (try `openssl rand -hex 32`)"
                        .to_owned()
                })?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|v: Vec<u8>| {
            format!(
                "must be exactly 32 bytes, got {} (try `openssl rand -hex 32`)",
                v.len()
            )
        })?;
        Ok(Self(bytes))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([REDACTED])")
    }
}

/// Google endpoints and OAuth client credentials.
#[derive(Debug, Clone)]
pub struct GoogleSettings {
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// Where Google sends the browser back after consent (`…/auth/callback`).
    pub redirect_uri: Option<Url>,
    pub api_base_url: Url,
    pub auth_url: Url,
    pub token_url: Url,
    pub revoke_url: Url,
    /// Upper bound on any single Google request, connect to last byte.
    pub request_timeout: Duration,
}

/// The user-visible sync rules (docs/sync-rules.md) that an operator may change.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Summary template of a block; `{alias}` becomes the source account's alias.
    pub block_title_template: String,
    pub block_details: BlockDetails,
    pub skip_all_day: bool,
    pub skip_out_of_office: bool,
    pub skip_focus_time: bool,
    /// Source events whose title matches are not mirrored.
    pub exclude_title_regex: Option<Regex>,
    /// Events that ended up to this long ago are still mirrored.
    pub look_back: Duration,
    /// Backstop poll interval of each calendar (also the only trigger without push).
    pub poll_interval: Duration,
    /// How often a full reconciliation compares the store with the calendars.
    pub reconcile_interval: Duration,
    /// Longest an echo's sync token waits in memory before it is written
    /// (`store::deferred`).
    pub token_flush_interval: Duration,
    /// Write rate of one BlockWriter (token bucket refill per second).
    pub writes_per_second: f64,
    /// A full resync that would delete more than this many blocks of one account is held
    /// back until an operator confirms.
    pub mass_delete_threshold: u32,
    /// Renew a watch channel when less than this is left before it expires.
    pub channel_renew_before: Duration,
    /// Requested lifetime of a watch channel.
    pub channel_ttl: Duration,
}

/// How much work one process keeps in flight; beyond it, work waits its turn instead of
/// piling up as tasks (back-pressure).
#[derive(Debug, Clone, Copy)]
pub struct ConcurrencySettings {
    /// Calendar syncs running at once; a calendar waiting for its turn holds one pending
    /// sync, however many pings arrive meanwhile.
    pub max_syncs: usize,
    /// Of those, syncs that list a whole calendar at once: each holds every event of its
    /// calendar until it commits, so these bound the memory of a first start.
    pub max_full_syncs: usize,
    /// Google requests in flight at once. Google's latency, not the CPU, sets how many are
    /// worth having in flight: hundreds.
    pub max_google_requests: usize,
}

/// How the supervisor restarts failed children.
#[derive(Debug, Clone)]
pub struct SupervisionSettings {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// More than this many failures within `window` marks the child degraded.
    pub max_restarts: u32,
    pub window: Duration,
}

impl Default for SupervisionSettings {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            max_restarts: 5,
            window: Duration::from_secs(300),
        }
    }
}

/// Everything the service can be told from outside.
#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub database_url: SecretString,
    /// How long the first connection to the database (or Redis) may take at start.
    pub db_connect_timeout: Duration,
    pub redis_url: Option<SecretString>,
    /// Public base URL of this service; when set, calendars get push channels at
    /// `{webhook_base_url}/webhooks/google`.
    pub webhook_base_url: Option<Url>,
    pub google: GoogleSettings,
    /// Calendars declared in `CALENDAR_NN_ID`, keyed by alias "Calendar NN".
    pub declared_calendars: Vec<(String, CalendarId)>,
    pub encryption_key: Option<EncryptionKey>,
    /// Signs channel tokens so forged webhook pings are refused.
    pub webhook_secret: Option<SecretString>,
    pub admin_password: Option<SecretString>,
    /// Stable name of this installation, written into every block's marker. When unset, the
    /// store keeps a generated one.
    pub installation_id: Option<String>,
    pub log_level: String,
    pub log_format: Option<LogFormat>,
    pub enable_metrics: bool,
    pub sync: SyncSettings,
    pub concurrency: ConcurrencySettings,
    pub supervision: SupervisionSettings,
    /// Deadline for a graceful stop after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// With several replicas on PostgreSQL: how long a calendar's lease lasts without being
    /// renewed, so how soon the calendars of a replica that died move to the others.
    pub lease_ttl: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Upper bound on handling one HTTP request.
    pub request_timeout: Duration,
}

impl Settings {
    /// Reads `.env` (when present) and then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_vars(std::env::vars())
    }

    /// Parses settings from explicit variables; unset variables take their defaults.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::parse(&Vars::new(vars))
    }

    fn parse(vars: &Vars) -> Result<Self, ConfigError> {
        let (database_url, encryption_key) = database(vars)?;
        let redis_url = vars
            .get("REDIS_URL")
            .map(|raw| redis_url(raw).map_err(|p| ConfigError::new("REDIS_URL", p)))
            .transpose()?;
        let concurrency = ConcurrencySettings {
            max_syncs: vars.number("MAX_CONCURRENT_SYNCS", 512usize, 1, 10_000)?,
            max_full_syncs: vars.number("MAX_CONCURRENT_FULL_SYNCS", 128usize, 1, 10_000)?,
            max_google_requests: vars.number(
                "MAX_CONCURRENT_GOOGLE_REQUESTS",
                512usize,
                1,
                10_000,
            )?,
        };
        Ok(Self {
            port: vars.number("PORT", 3000u16, 0, u16::MAX)?,
            database_url,
            db_connect_timeout: vars.secs("DB_CONNECT_TIMEOUT_SECS", 5, 1, 60)?,
            redis_url,
            webhook_base_url: vars.url_opt("WEBHOOK_BASE_URL")?,
            google: GoogleSettings::parse(vars)?,
            declared_calendars: declared_calendars(vars)?,
            encryption_key,
            webhook_secret: vars.secret_of_length("WEBHOOK_SECRET", MIN_WEBHOOK_SECRET_LEN)?,
            admin_password: vars.secret_of_length("ADMIN_PASSWORD", MIN_ADMIN_PASSWORD_LEN)?,
            installation_id: installation_id(vars)?,
            log_level: log_filter::check(vars.get("LOG_LEVEL").unwrap_or("info"))
                .map_err(|p| ConfigError::new("LOG_LEVEL", p))?,
            log_format: log_format(vars)?,
            enable_metrics: vars.flag("ENABLE_METRICS", true)?,
            sync: SyncSettings::parse(vars)?,
            concurrency,
            supervision: SupervisionSettings::parse(vars)?,
            shutdown_timeout: vars.secs("SHUTDOWN_TIMEOUT_SECS", 8, 1, 300)?,
            lease_ttl: vars.secs("LEASE_TTL_SECS", 10, 2, 300)?,
            max_body_bytes: vars.number(
                "MAX_BODY_BYTES",
                256 * 1024usize,
                1024,
                16 * 1024 * 1024,
            )?,
            request_timeout: vars.secs("REQUEST_TIMEOUT_SECS", 30, 1, 300)?,
        })
    }

    pub fn database_kind(&self) -> DatabaseKind {
        database_kind(self.database_url.expose_secret()).unwrap_or(DatabaseKind::Sqlite)
    }

    /// The callback address of push channels, when push is configured.
    pub fn webhook_url(&self) -> Option<Url> {
        self.webhook_base_url
            .as_ref()
            .and_then(|base| base.join("webhooks/google").ok())
    }
}

/// `DATABASE_URL` and the `ENCRYPTION_KEY` it needs (required with PostgreSQL).
fn database(vars: &Vars) -> Result<(SecretString, Option<EncryptionKey>), ConfigError> {
    let database_url = vars.get("DATABASE_URL").unwrap_or(DEFAULT_DATABASE_URL);
    let database_kind = database_kind(database_url)
        .ok_or_else(|| ConfigError::new("DATABASE_URL", database_url_problem(database_url)))?;
    let encryption_key = vars
        .get("ENCRYPTION_KEY")
        .map(|raw| EncryptionKey::parse(raw).map_err(|p| ConfigError::new("ENCRYPTION_KEY", p)))
        .transpose()?;
    if database_kind == DatabaseKind::Postgres && encryption_key.is_none() {
        return Err(ConfigError::new(
            "ENCRYPTION_KEY",
            "is required when DATABASE_URL is PostgreSQL (32 bytes as 64 hex digits; try `openssl rand -hex 32`)",
        ));
    }
    Ok((SecretString::from(database_url.to_owned()), encryption_key))
}

fn installation_id(vars: &Vars) -> Result<Option<String>, ConfigError> {
    vars.get("INSTALLATION_ID")
        .map(|raw| {
            if raw.len() <= 32 && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                Ok(raw.to_owned())
            } else {
                Err(ConfigError::new(
                    "INSTALLATION_ID",
                    "must be at most 32 characters of letters, digits and '-'",
                ))
            }
        })
        .transpose()
}

fn log_format(vars: &Vars) -> Result<Option<LogFormat>, ConfigError> {
    match vars.get("LOG_FORMAT") {
        None => Ok(None),
        Some("json") => Ok(Some(LogFormat::Json)),
        Some("pretty") => Ok(Some(LogFormat::Pretty)),
        Some(_) => Err(ConfigError::new("LOG_FORMAT", "must be `json` or `pretty`")),
    }
}

impl GoogleSettings {
    fn parse(vars: &Vars) -> Result<Self, ConfigError> {
        let (client_id, client_secret) = oauth_client(vars)?;
        Ok(Self {
            client_id,
            client_secret,
            redirect_uri: redirect_uri(vars)?,
            api_base_url: vars.url("GOOGLE_API_BASE_URL", GOOGLE_API_BASE_URL)?,
            auth_url: vars.url("GOOGLE_AUTH_URL", GOOGLE_AUTH_URL)?,
            token_url: vars.url("GOOGLE_TOKEN_URL", GOOGLE_TOKEN_URL)?,
            revoke_url: vars.url("GOOGLE_REVOKE_URL", GOOGLE_REVOKE_URL)?,
            request_timeout: vars.secs("GOOGLE_REQUEST_TIMEOUT_SECS", 30, 1, 300)?,
        })
    }
}

impl SyncSettings {
    fn parse(vars: &Vars) -> Result<Self, ConfigError> {
        let sync = Self {
            block_title_template: vars
                .get("BLOCK_TITLE_TEMPLATE")
                .map(|raw| {
                    title_template(raw).map_err(|p| ConfigError::new("BLOCK_TITLE_TEMPLATE", p))
                })
                .transpose()?
                .unwrap_or_else(|| "{alias} Block".to_owned()),
            block_details: BlockDetails::parse(vars.get("BLOCK_DETAILS").unwrap_or("full"))
                .ok_or_else(|| {
                    ConfigError::new("BLOCK_DETAILS", "must be `full` or `busy-only`")
                })?,
            skip_all_day: vars.flag("SKIP_ALL_DAY", false)?,
            skip_out_of_office: vars.flag("SKIP_OUT_OF_OFFICE", false)?,
            skip_focus_time: vars.flag("SKIP_FOCUS_TIME", false)?,
            exclude_title_regex: exclude_title_regex(vars)?,
            look_back: Duration::from_secs(
                u64::from(vars.number("SYNC_LOOKBACK_DAYS", 0u32, 0, 365)?) * 86_400,
            ),
            poll_interval: vars.secs("POLL_INTERVAL_SECS", 300, 5, 86_400)?,
            reconcile_interval: vars.secs("RECONCILE_INTERVAL_SECS", 6 * 3600, 1, 7 * 86_400)?,
            token_flush_interval: vars.secs("TOKEN_FLUSH_INTERVAL_SECS", 1, 1, 86_400)?,
            writes_per_second: vars.number("WRITES_PER_SECOND", 5.0f64, 0.1, 100.0)?,
            mass_delete_threshold: vars.number("MASS_DELETE_THRESHOLD", 25u32, 1, 100_000)?,
            channel_renew_before: vars.secs("CHANNEL_RENEW_BEFORE_SECS", 86_400, 60, 6 * 86_400)?,
            channel_ttl: vars.secs("CHANNEL_TTL_SECS", 7 * 86_400, 300, 30 * 86_400)?,
        };
        if sync.channel_renew_before >= sync.channel_ttl {
            return Err(ConfigError::new(
                "CHANNEL_RENEW_BEFORE_SECS",
                format!(
                    "must be less than CHANNEL_TTL_SECS ({} s), or every channel is renewed as soon as it is opened",
                    sync.channel_ttl.as_secs()
                ),
            ));
        }
        Ok(sync)
    }
}

fn exclude_title_regex(vars: &Vars) -> Result<Option<Regex>, ConfigError> {
    vars.get("EXCLUDE_TITLE_REGEX")
        .map(|raw| {
            Regex::new(raw).map_err(|e| {
                ConfigError::new(
                    "EXCLUDE_TITLE_REGEX",
                    format!("is not a valid regex: {}", regex_problem(&e)),
                )
            })
        })
        .transpose()
}

impl SupervisionSettings {
    fn parse(vars: &Vars) -> Result<Self, ConfigError> {
        let supervision = Self {
            backoff_initial: Duration::from_millis(vars.number(
                "RESTART_BACKOFF_INITIAL_MS",
                500u64,
                1,
                60_000,
            )?),
            backoff_max: vars.secs("RESTART_BACKOFF_MAX_SECS", 60, 1, 3600)?,
            max_restarts: vars.number("RESTART_MAX", 5u32, 1, 1000)?,
            window: vars.secs("RESTART_WINDOW_SECS", 300, 1, 86_400)?,
        };
        if supervision.backoff_initial > supervision.backoff_max {
            return Err(ConfigError::new(
                "RESTART_BACKOFF_INITIAL_MS",
                format!(
                    "must not exceed RESTART_BACKOFF_MAX_SECS ({} s)",
                    supervision.backoff_max.as_secs()
                ),
            ));
        }
        Ok(supervision)
    }
}

fn database_kind(url: &str) -> Option<DatabaseKind> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(DatabaseKind::Postgres)
    } else if url.starts_with("sqlite:") {
        Some(DatabaseKind::Sqlite)
    } else {
        None
    }
}

fn database_url_problem(url: &str) -> String {
    // Only the scheme is repeated back: the rest may hold a password.
    let scheme = url.split(':').next().unwrap_or_default();
    if url.contains("://") {
        format!("unsupported scheme `{scheme}`; use postgres://… or sqlite://…")
    } else {
        "is not a database URL; use postgres://user:pass@host/db or sqlite://file.db".to_owned()
    }
}

/// A Redis URL with a known scheme and a host; the text itself is a secret (it may hold a
/// password), so the problem never repeats it.
fn redis_url(raw: &str) -> Result<SecretString, &'static str> {
    const SCHEMES: [&str; 4] = ["redis", "rediss", "redis-cluster", "redis-sentinel"];
    let url = Url::parse(raw).map_err(|_| "must be a redis:// or rediss:// URL")?;
    if !SCHEMES.contains(&url.scheme()) {
        return Err("must be a redis:// or rediss:// URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("names no host; use redis://host:6379");
    }
    Ok(SecretString::from(raw.to_owned()))
}

/// `GOOGLE_CLIENT_ID` and `GOOGLE_CLIENT_SECRET`: both or neither, each one word.
fn oauth_client(vars: &Vars) -> Result<(Option<String>, Option<SecretString>), ConfigError> {
    let id = vars.get("GOOGLE_CLIENT_ID");
    let secret = vars.get("GOOGLE_CLIENT_SECRET");
    if id.is_some_and(|v| v.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(ConfigError::new(
            "GOOGLE_CLIENT_ID",
            "must be one word, like `1234-abc.apps.googleusercontent.com`",
        ));
    }
    if secret.is_some_and(|v| v.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(ConfigError::new(
            "GOOGLE_CLIENT_SECRET",
            "must be one word (copy it from the OAuth client's page)",
        ));
    }
    match (id, secret) {
        (Some(_), None) => Err(ConfigError::new(
            "GOOGLE_CLIENT_SECRET",
            "is required when GOOGLE_CLIENT_ID is set",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "GOOGLE_CLIENT_ID",
            "is required when GOOGLE_CLIENT_SECRET is set",
        )),
        (id, secret) => Ok((
            id.map(str::to_owned),
            secret.map(|s| SecretString::from(s.to_owned())),
        )),
    }
}

/// `GOOGLE_REDIRECT_URI` must reach this service's callback route, or consent never
/// completes.
fn redirect_uri(vars: &Vars) -> Result<Option<Url>, ConfigError> {
    let uri = vars.url_opt("GOOGLE_REDIRECT_URI")?;
    if uri
        .as_ref()
        .is_some_and(|u| u.path().trim_end_matches('/') != "/auth/callback")
    {
        return Err(ConfigError::new(
            "GOOGLE_REDIRECT_URI",
            "must end in /auth/callback, the service's OAuth callback (e.g. https://mcss.example.com/auth/callback)",
        ));
    }
    Ok(uri)
}

/// A block title: printable, not too long, and `{alias}` the only placeholder (any other
/// would appear verbatim in every block).
pub(crate) fn title_template(raw: &str) -> Result<String, String> {
    if raw.chars().count() > MAX_TITLE_TEMPLATE_LEN {
        return Err(format!(
            "is longer than {MAX_TITLE_TEMPLATE_LEN} characters"
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    let rest = raw.replace("{alias}", "");
    if let Some(start) = rest.find('{') {
        let placeholder: String = rest[start..].chars().take_while(|c| *c != '}').collect();
        return Err(format!(
            "has an unknown placeholder `{placeholder}}}`; only {{alias}} is replaced"
        ));
    }
    if rest.contains('}') {
        return Err("has a `}` without its `{`; only {alias} is replaced".to_owned());
    }
    Ok(raw.to_owned())
}

/// The regex parser's own message, without the pattern and caret lines it draws above it.
pub(crate) fn regex_problem(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error:"))
        .map(|m| m.trim().to_owned())
        .unwrap_or_else(|| one_line(&text))
}

fn declared_calendars(vars: &Vars) -> Result<Vec<(String, CalendarId)>, ConfigError> {
    let mut found: Vec<(u32, String, CalendarId)> = Vec::new();
    vars.asked.borrow_mut().insert("CALENDAR_NN_ID");
    for (name, value) in &vars.values {
        let Some(number) = name
            .strip_prefix("CALENDAR_")
            .and_then(|rest| rest.strip_suffix("_ID"))
        else {
            continue;
        };
        let n: u32 = number.parse().map_err(|_| {
            ConfigError::new(
                name.clone(),
                "must be named CALENDAR_NN_ID with NN a number",
            )
        })?;
        let id = CalendarId::parse(value.trim())
            .map_err(|e| ConfigError::new(name.clone(), e.to_string()))?;
        found.push((n, format!("Calendar {n:02}"), id));
    }
    found.sort_by_key(|(n, _, _)| *n);
    Ok(found
        .into_iter()
        .map(|(_, alias, id)| (alias, id))
        .collect())
}

/// The environment as given, empty values dropped (an empty variable means "unset").
struct Vars {
    values: HashMap<String, String>,
    /// Every name asked for, so a test can compare it with [`VARIABLES`].
    asked: std::cell::RefCell<std::collections::BTreeSet<&'static str>>,
}

impl Vars {
    fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            values: vars
                .into_iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .collect(),
            asked: Default::default(),
        }
    }

    fn get(&self, name: &'static str) -> Option<&str> {
        debug_assert!(
            VARIABLES.contains(&name),
            "{name} is read but missing from config::VARIABLES (and the README)"
        );
        self.asked.borrow_mut().insert(name);
        self.values.get(name).map(|v| v.trim())
    }

    /// A secret of at least `min` characters; the problem names the length, never the value.
    fn secret_of_length(
        &self,
        name: &'static str,
        min: usize,
    ) -> Result<Option<SecretString>, ConfigError> {
        match self.get(name) {
            Some(v) if v.chars().count() < min => Err(ConfigError::new(
                name,
                format!(
                    "must be at least {min} characters, got {} (try `openssl rand -hex 16`)",
                    v.chars().count()
                ),
            )),
            other => Ok(other.map(|v| SecretString::from(v.to_owned()))),
        }
    }

    fn url(&self, name: &'static str, default: &str) -> Result<Url, ConfigError> {
        Ok(self
            .url_opt(name)?
            .unwrap_or_else(|| Url::parse(default).expect("default URLs are valid")))
    }

    fn url_opt(&self, name: &'static str) -> Result<Option<Url>, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let url = Url::parse(raw)
            .map_err(|e| ConfigError::new(name, format!("is not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::new(name, "must be an http:// or https:// URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::new(name, "must not carry a query or fragment"));
        }
        Ok(Some(url))
    }

    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(_) => Err(ConfigError::new(name, "must be true or false")),
        }
    }

    fn number<T>(&self, name: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        let value: T = raw
            .parse()
            .map_err(|_| ConfigError::new(name, format!("must be a number, got {raw:?}")))?;
        if value < min || value > max {
            return Err(ConfigError::new(
                name,
                format!("must be between {min} and {max}, got {value}"),
            ));
        }
        Ok(value)
    }

    fn secs(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Duration, ConfigError> {
        self.number(name, default, min, max)
            .map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn no_environment_at_all_gives_the_sqlite_defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 3000);
        assert_eq!(s.database_kind(), DatabaseKind::Sqlite);
        assert!(s.redis_url.is_none());
        assert_eq!(
            s.google.api_base_url.as_str(),
            "https://www.googleapis.com/"
        );
        assert_eq!(s.sync.block_title_template, "{alias} Block");
        assert!(s.enable_metrics);
    }

    #[test]
    fn a_nonsense_database_url_names_the_variable() {
        let err = settings(&[("DATABASE_URL", "nonsense")]).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(err.to_string().starts_with("DATABASE_URL: "), "{err}");
    }

    #[test]
    fn a_database_password_is_never_repeated_in_the_error() {
        let err = settings(&[("DATABASE_URL", "mysql://u:hunter2@h/db")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn postgres_requires_an_encryption_key() {
        let err = settings(&[("DATABASE_URL", "postgres://u:p@localhost/db")]).unwrap_err();
        assert_eq!(err.variable, "ENCRYPTION_KEY");
        let key = "00".repeat(32);
        let s = settings(&[
            ("DATABASE_URL", "postgres://u:p@localhost/db"),
            ("ENCRYPTION_KEY", &key),
        ])
        .unwrap();
        assert_eq!(s.database_kind(), DatabaseKind::Postgres);
    }

    #[test]
    fn a_short_encryption_key_is_refused() {
        let err = settings(&[("ENCRYPTION_KEY", "abcd")]).unwrap_err();
        assert_eq!(err.variable, "ENCRYPTION_KEY");
    }

    #[test]
    fn out_of_range_numbers_and_bad_flags_are_refused() {
        assert_eq!(settings(&[("PORT", "70000")]).unwrap_err().variable, "PORT");
        assert_eq!(settings(&[("PORT", "http")]).unwrap_err().variable, "PORT");
        assert_eq!(
            settings(&[("SKIP_ALL_DAY", "maybe")]).unwrap_err().variable,
            "SKIP_ALL_DAY"
        );
        assert_eq!(
            settings(&[("LOG_FORMAT", "xml")]).unwrap_err().variable,
            "LOG_FORMAT"
        );
        assert_eq!(
            settings(&[("EXCLUDE_TITLE_REGEX", "(")])
                .unwrap_err()
                .variable,
            "EXCLUDE_TITLE_REGEX"
        );
        assert_eq!(
            settings(&[("REDIS_URL", "localhost:6379")])
                .unwrap_err()
                .variable,
            "REDIS_URL"
        );
    }

    #[test]
    fn declared_calendars_are_ordered_and_aliased() {
        let s = settings(&[
            ("CALENDAR_02_ID", "b@example.com"),
            ("CALENDAR_01_ID", "a@example.com"),
        ])
        .unwrap();
        let aliases: Vec<_> = s
            .declared_calendars
            .iter()
            .map(|(a, _)| a.as_str())
            .collect();
        assert_eq!(aliases, ["Calendar 01", "Calendar 02"]);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let key = "ab".repeat(32);
        let s = settings(&[
            ("ADMIN_PASSWORD", "hunter2-hunter2"),
            ("GOOGLE_CLIENT_ID", "id.apps.googleusercontent.com"),
            ("GOOGLE_CLIENT_SECRET", "topsecret"),
            ("ENCRYPTION_KEY", &key),
            ("DATABASE_URL", "sqlite://x.db?password=pw"),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"));
        assert!(!debug.contains("topsecret"));
        assert!(!debug.contains(&key));
        assert!(!debug.contains("password=pw"));
    }

    #[test]
    fn the_list_of_variables_is_exactly_what_the_parser_reads() {
        let vars = Vars::new(Vec::new());

        Settings::parse(&vars).expect("the defaults are valid");

        let asked: Vec<&str> = vars.asked.into_inner().into_iter().collect();
        let mut listed = VARIABLES.to_vec();
        listed.sort_unstable();
        assert_eq!(asked, listed);
    }

    #[test]
    fn a_log_level_that_is_not_a_level_is_refused_instead_of_silencing_the_logs() {
        for bad in ["loud", "verbose", "info,mcss=loud"] {
            let err = settings(&[("LOG_LEVEL", bad)]).unwrap_err();
            assert_eq!(err.variable, "LOG_LEVEL", "{bad}");
        }
        let s = settings(&[("LOG_LEVEL", "info,mcss=debug")]).unwrap();
        assert_eq!(s.log_level, "info,mcss=debug");
    }

    #[test]
    fn a_bad_regex_is_reported_in_one_line_without_the_parsers_drawing() {
        let err = settings(&[("EXCLUDE_TITLE_REGEX", "(unclosed")]).unwrap_err();

        assert_eq!(
            err.to_string(),
            "EXCLUDE_TITLE_REGEX: is not a valid regex: unclosed group"
        );
    }

    #[test]
    fn every_problem_is_folded_to_one_line() {
        let err = ConfigError::new("X", "first\n    second\n\tthird");
        assert_eq!(err.to_string(), "X: first second third");
    }

    #[test]
    fn an_oauth_client_needs_both_halves_each_one_word() {
        let only_id = settings(&[("GOOGLE_CLIENT_ID", "id")]).unwrap_err();
        let only_secret = settings(&[("GOOGLE_CLIENT_SECRET", "s")]).unwrap_err();
        let spaced =
            settings(&[("GOOGLE_CLIENT_ID", "my id"), ("GOOGLE_CLIENT_SECRET", "s")]).unwrap_err();

        assert_eq!(only_id.variable, "GOOGLE_CLIENT_SECRET");
        assert_eq!(only_secret.variable, "GOOGLE_CLIENT_ID");
        assert_eq!(spaced.variable, "GOOGLE_CLIENT_ID");
    }

    #[test]
    fn short_secrets_are_refused_without_repeating_them() {
        let err = settings(&[("ADMIN_PASSWORD", "hunter2")]).unwrap_err();
        assert_eq!(err.variable, "ADMIN_PASSWORD");
        assert!(!err.to_string().contains("hunter2"));
        let err = settings(&[("WEBHOOK_SECRET", "short")]).unwrap_err();
        assert_eq!(err.variable, "WEBHOOK_SECRET");
    }

    #[test]
    fn a_title_template_may_only_use_the_alias_placeholder() {
        assert!(settings(&[("BLOCK_TITLE_TEMPLATE", "Busy ({alias})")]).is_ok());
        let err = settings(&[("BLOCK_TITLE_TEMPLATE", "{name} Block")]).unwrap_err();
        assert!(err.problem.contains("`{name}`"), "{err}");
        assert!(settings(&[("BLOCK_TITLE_TEMPLATE", "Block }")]).is_err());
    }

    #[test]
    fn related_values_are_checked_against_each_other() {
        let renew = settings(&[
            ("CHANNEL_TTL_SECS", "3600"),
            ("CHANNEL_RENEW_BEFORE_SECS", "7200"),
        ])
        .unwrap_err();
        let backoff = settings(&[
            ("RESTART_BACKOFF_INITIAL_MS", "5000"),
            ("RESTART_BACKOFF_MAX_SECS", "1"),
        ])
        .unwrap_err();
        let redirect =
            settings(&[("GOOGLE_REDIRECT_URI", "https://x.example.com/oauth")]).unwrap_err();

        assert_eq!(renew.variable, "CHANNEL_RENEW_BEFORE_SECS");
        assert_eq!(backoff.variable, "RESTART_BACKOFF_INITIAL_MS");
        assert_eq!(redirect.variable, "GOOGLE_REDIRECT_URI");
    }

    #[test]
    fn a_redis_url_needs_a_scheme_and_a_host_and_is_never_echoed() {
        for bad in ["localhost:6379", "http://h:6379", "redis://:pw@/0"] {
            let err = settings(&[("REDIS_URL", bad)]).unwrap_err();
            assert_eq!(err.variable, "REDIS_URL", "{bad}");
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }

    #[test]
    fn the_webhook_url_is_derived_from_the_base() {
        let s = settings(&[("WEBHOOK_BASE_URL", "https://mcss.example.com")]).unwrap();
        assert_eq!(
            s.webhook_url().unwrap().as_str(),
            "https://mcss.example.com/webhooks/google"
        );
    }
}
