//! Configuration: one typed [`Settings`] read from the environment (and `.env` when present).
//!
//! Every variable is parsed here and nowhere else. A bad value is reported as a
//! [`ConfigError`] naming the variable and what is wrong with it — never echoing a secret —
//! so `main` can print one line and exit non-zero. Secrets are held as [`SecretString`] or
//! [`EncryptionKey`], whose `Debug` output is redacted.

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

/// A configuration value that cannot be used, with the variable that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

impl ConfigError {
    fn new(variable: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            problem: problem.into(),
        }
    }
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

/// The user-visible sync rules of docs/sync-rules.md that an operator may change.
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
    pub supervision: SupervisionSettings,
    /// Deadline for a graceful stop after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
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
        let vars = Vars(
            vars.into_iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .collect(),
        );
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
        let redis_url = vars
            .get("REDIS_URL")
            .map(|raw| {
                let scheme = raw.split("://").next().unwrap_or_default();
                if matches!(
                    scheme,
                    "redis" | "rediss" | "redis-cluster" | "redis-sentinel"
                ) && raw.contains("://")
                {
                    Ok(SecretString::from(raw.to_owned()))
                } else {
                    Err(ConfigError::new(
                        "REDIS_URL",
                        "must be a redis:// or rediss:// URL",
                    ))
                }
            })
            .transpose()?;
        let google = GoogleSettings {
            client_id: vars.get("GOOGLE_CLIENT_ID").map(str::to_owned),
            client_secret: vars.secret("GOOGLE_CLIENT_SECRET"),
            redirect_uri: vars.url_opt("GOOGLE_REDIRECT_URI")?,
            api_base_url: vars.url("GOOGLE_API_BASE_URL", GOOGLE_API_BASE_URL)?,
            auth_url: vars.url("GOOGLE_AUTH_URL", GOOGLE_AUTH_URL)?,
            token_url: vars.url("GOOGLE_TOKEN_URL", GOOGLE_TOKEN_URL)?,
            revoke_url: vars.url("GOOGLE_REVOKE_URL", GOOGLE_REVOKE_URL)?,
            request_timeout: vars.secs("GOOGLE_REQUEST_TIMEOUT_SECS", 30, 1, 300)?,
        };
        let sync = SyncSettings {
            block_title_template: vars
                .get("BLOCK_TITLE_TEMPLATE")
                .unwrap_or("{alias} Block")
                .to_owned(),
            block_details: match vars.get("BLOCK_DETAILS").unwrap_or("full") {
                "full" => BlockDetails::Full,
                "busy-only" => BlockDetails::BusyOnly,
                _ => {
                    return Err(ConfigError::new(
                        "BLOCK_DETAILS",
                        "must be `full` or `busy-only`",
                    ))
                }
            },
            skip_all_day: vars.flag("SKIP_ALL_DAY", false)?,
            skip_out_of_office: vars.flag("SKIP_OUT_OF_OFFICE", false)?,
            skip_focus_time: vars.flag("SKIP_FOCUS_TIME", false)?,
            exclude_title_regex: vars
                .get("EXCLUDE_TITLE_REGEX")
                .map(|raw| {
                    Regex::new(raw).map_err(|e| {
                        ConfigError::new(
                            "EXCLUDE_TITLE_REGEX",
                            format!("is not a valid regex: {e}"),
                        )
                    })
                })
                .transpose()?,
            look_back: Duration::from_secs(
                u64::from(vars.number("SYNC_LOOKBACK_DAYS", 0u32, 0, 365)?) * 86_400,
            ),
            poll_interval: vars.secs("POLL_INTERVAL_SECS", 300, 5, 86_400)?,
            reconcile_interval: vars.secs("RECONCILE_INTERVAL_SECS", 6 * 3600, 1, 7 * 86_400)?,
            writes_per_second: vars.number("WRITES_PER_SECOND", 5.0f64, 0.1, 100.0)?,
            mass_delete_threshold: vars.number("MASS_DELETE_THRESHOLD", 25u32, 1, 100_000)?,
            channel_renew_before: vars.secs("CHANNEL_RENEW_BEFORE_SECS", 86_400, 60, 6 * 86_400)?,
            channel_ttl: vars.secs("CHANNEL_TTL_SECS", 7 * 86_400, 300, 30 * 86_400)?,
        };
        let supervision = SupervisionSettings {
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
        Ok(Self {
            port: vars.number("PORT", 3000u16, 0, u16::MAX)?,
            database_url: SecretString::from(database_url.to_owned()),
            redis_url,
            webhook_base_url: vars.url_opt("WEBHOOK_BASE_URL")?,
            google,
            declared_calendars: declared_calendars(&vars)?,
            encryption_key,
            webhook_secret: vars.secret("WEBHOOK_SECRET"),
            admin_password: vars.secret("ADMIN_PASSWORD"),
            installation_id: vars
                .get("INSTALLATION_ID")
                .map(|raw| {
                    if raw.len() <= 32 && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    {
                        Ok(raw.to_owned())
                    } else {
                        Err(ConfigError::new(
                            "INSTALLATION_ID",
                            "must be at most 32 characters of letters, digits and '-'",
                        ))
                    }
                })
                .transpose()?,
            log_level: vars.get("LOG_LEVEL").unwrap_or("info").to_owned(),
            log_format: match vars.get("LOG_FORMAT") {
                None => None,
                Some("json") => Some(LogFormat::Json),
                Some("pretty") => Some(LogFormat::Pretty),
                Some(_) => {
                    return Err(ConfigError::new("LOG_FORMAT", "must be `json` or `pretty`"))
                }
            },
            enable_metrics: vars.flag("ENABLE_METRICS", true)?,
            sync,
            supervision,
            shutdown_timeout: vars.secs("SHUTDOWN_TIMEOUT_SECS", 8, 1, 300)?,
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

fn declared_calendars(vars: &Vars) -> Result<Vec<(String, CalendarId)>, ConfigError> {
    let mut found: Vec<(u32, String, CalendarId)> = Vec::new();
    for (name, value) in &vars.0 {
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

struct Vars(HashMap<String, String>);

impl Vars {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim())
    }

    fn secret(&self, name: &str) -> Option<SecretString> {
        self.get(name).map(|v| SecretString::from(v.to_owned()))
    }

    fn url(&self, name: &str, default: &str) -> Result<Url, ConfigError> {
        Ok(self
            .url_opt(name)?
            .unwrap_or_else(|| Url::parse(default).expect("default URLs are valid")))
    }

    fn url_opt(&self, name: &str) -> Result<Option<Url>, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let url = Url::parse(raw)
            .map_err(|e| ConfigError::new(name, format!("is not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::new(name, "must be an http:// or https:// URL"));
        }
        Ok(Some(url))
    }

    fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(_) => Err(ConfigError::new(name, "must be true or false")),
        }
    }

    fn number<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
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

    fn secs(&self, name: &str, default: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
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
        assert!(err
            .to_string()
            .starts_with("invalid configuration: DATABASE_URL:"));
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
            ("ADMIN_PASSWORD", "hunter2"),
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
    fn the_webhook_url_is_derived_from_the_base() {
        let s = settings(&[("WEBHOOK_BASE_URL", "https://mcss.example.com")]).unwrap();
        assert_eq!(
            s.webhook_url().unwrap().as_str(),
            "https://mcss.example.com/webhooks/google"
        );
    }
}
