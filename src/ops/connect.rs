//! Connecting an account from a refresh token (the CLI's `accounts add`, the OAuth callback).
//!
//! The one Google call of a connect (calendarList.get) rides out rate limits and transient
//! failures with its own bounded backoff, honouring `Retry-After`, and tells the caller each
//! time it waits ([`connect_account_with`]): the CLI prints it, so an operator sees why the
//! command takes a while instead of watching it hang.

use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::OpsError;
use crate::domain::CalendarId;
use crate::google::{AccountClient, CalendarListEntry, GoogleError, RetryPolicy, TokenSource};
use crate::services::Services;
use crate::store::{log_kind, Account, CalendarRules, LogResult, NewAccount, NewLogEntry};

/// The longest alias accepted; it is shown in block titles and on the dashboard.
pub const MAX_ALIAS_LEN: usize = 64;

/// The longest group name accepted.
pub const MAX_GROUP_LEN: usize = 64;

/// A group name: 1 to [`MAX_GROUP_LEN`] characters, no control characters.
pub fn validate_group(raw: &str) -> Result<String, OpsError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(OpsError::InvalidSetting {
            field: "group",
            problem: "must not be empty".to_owned(),
        });
    }
    if name.chars().count() > MAX_GROUP_LEN || name.chars().any(char::is_control) {
        return Err(OpsError::InvalidSetting {
            field: "group",
            problem: format!("must be 1 to {MAX_GROUP_LEN} printable characters"),
        });
    }
    Ok(name.to_owned())
}

/// Waits after a rate limit or a transient failure, before giving up: 2, 4, 8, 16, 30 s.
pub const CONNECT_RETRIES: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(2);
const LONGEST_WAIT: Duration = Duration::from_secs(30);
/// No wait is started that would end later than this after the first attempt.
const RETRY_BUDGET: Duration = Duration::from_secs(90);

/// Told about every wait before it starts: the failure and how long the wait is.
pub type RetryNotice<'a> = &'a (dyn Fn(&GoogleError, Duration) + Send + Sync);

/// What [`connect_account`] needs.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The operator's name for the calendar, e.g. "Calendar 01" (used in block titles).
    pub alias: String,
    pub refresh_token: SecretString,
    /// Which calendar of the Google account; `None` is `primary`.
    pub calendar_id: Option<CalendarId>,
    /// The account's e-mail, when known (from the id token of a consent).
    pub email: Option<String>,
    /// The group the calendar joins ([`crate::store::DEFAULT_GROUP`] when `None`); ignored on
    /// a reconnect.
    pub group: Option<String>,
}

/// Resolves the calendar's real id and time zone through calendarList.get, then creates the
/// account — or, when an account with the same alias or the same calendar exists, replaces
/// its refresh token and sets it active (a reconnect after `needs_reauth`). Does not start
/// actors.
///
/// The real id matters: block ids hash the calendar ids, and "primary" would be the same
/// string for every account.
pub async fn connect_account(
    services: &Services,
    req: ConnectRequest,
) -> Result<Account, OpsError> {
    let notice = |err: &GoogleError, wait: Duration| {
        tracing::info!(error = %err, wait_secs = wait.as_secs(), "connecting: Google asked to wait; retrying");
    };
    connect_account_with(services, req, &notice).await
}

/// [`connect_account`], telling `on_retry` about each wait for a rate limit or a transient
/// failure of Google.
#[tracing::instrument(name = "ops.connect_account", skip_all, fields(alias = %req.alias))]
pub async fn connect_account_with(
    services: &Services,
    req: ConnectRequest,
    on_retry: RetryNotice<'_>,
) -> Result<Account, OpsError> {
    let alias = validate_alias(&req.alias)?;
    let group = match req.group.as_deref().map(str::trim) {
        Some(name) => validate_group(name)?,
        None => crate::store::DEFAULT_GROUP.to_owned(),
    };
    let wanted = req.calendar_id.clone().unwrap_or_else(CalendarId::primary);
    let (entry, email) = resolve_calendar(services, &req, &wanted, on_retry).await?;
    let account = match existing_account(services, &alias, &entry.id).await? {
        Some(account) => reconnect(services, account, &req.refresh_token).await?,
        None => {
            let account = services
                .store
                .create_account(NewAccount {
                    alias,
                    email,
                    calendar_id: entry.id,
                    refresh_token: req.refresh_token,
                    time_zone: entry.time_zone,
                    group,
                    rules: CalendarRules::from_settings(&services.settings.sync),
                })
                .await?;
            log(services, &account, "connected").await;
            account
        }
    };
    tracing::info!(account = %account.id, calendar = %account.calendar_id, "account connected");
    Ok(account)
}

/// The calendar `wanted` as Google names it, and the e-mail of its Google account.
async fn resolve_calendar(
    services: &Services,
    req: &ConnectRequest,
    wanted: &CalendarId,
    on_retry: RetryNotice<'_>,
) -> Result<(CalendarListEntry, Option<String>), OpsError> {
    let tokens = TokenSource::new(services.oauth.clone(), req.refresh_token.clone());
    // This loop does the waiting, so it can say so; the client's own retries would be silent.
    let client = services
        .google
        .clone()
        .with_retry_policy(RetryPolicy::no_retry())
        .account(tokens);
    let entry = read_calendar(&client, wanted, on_retry)
        .await
        .map_err(|e| OpsError::google(format!("cannot read calendar {wanted} from Google"), e))?;
    if entry.id.as_str() == "primary" || entry.deleted {
        return Err(OpsError::UnresolvedCalendar(wanted.to_string()));
    }
    // The primary calendar's id is the account's e-mail address (Google's calendarList docs):
    // it names the Google account, whose calendars share one refresh token.
    let email = match &req.email {
        Some(email) => Some(email.clone()),
        None if entry.primary => entry
            .id
            .as_str()
            .contains('@')
            .then(|| entry.id.to_string()),
        None => read_calendar(&client, &CalendarId::primary(), on_retry)
            .await
            .ok()
            .map(|primary| primary.id.to_string())
            .filter(|id| id.contains('@')),
    };
    Ok((entry, email))
}

/// The calendar already connected under `alias` or on `calendar_id`; an alias that names
/// another calendar is taken.
async fn existing_account(
    services: &Services,
    alias: &str,
    calendar_id: &CalendarId,
) -> Result<Option<Account>, OpsError> {
    let by_alias = services.store.account_by_alias(alias).await?;
    let by_calendar = services
        .store
        .accounts_by_calendar(calendar_id)
        .await?
        .into_iter()
        .next();
    match (by_alias, by_calendar) {
        (Some(a), _) if a.calendar_id != *calendar_id => Err(OpsError::AliasTaken {
            alias: alias.to_owned(),
            existing: a.calendar_id.into_string(),
        }),
        (Some(a), _) | (None, Some(a)) => Ok(Some(a)),
        (None, None) => Ok(None),
    }
}

/// A new refresh token for a connected calendar.
async fn reconnect(
    services: &Services,
    account: Account,
    refresh_token: &SecretString,
) -> Result<Account, OpsError> {
    services
        .store
        .set_refresh_token(account.id, refresh_token)
        .await?;
    // The actors must not keep using the old token's cache.
    services.forget_tokens(account.id);
    log(services, &account, "reconnected with a new refresh token").await;
    Ok(services.store.account(account.id).await?)
}

/// calendarList.get under [`CONNECT_RETRIES`] and [`RETRY_BUDGET`].
async fn read_calendar(
    client: &AccountClient,
    wanted: &CalendarId,
    on_retry: RetryNotice<'_>,
) -> Result<CalendarListEntry, GoogleError> {
    let started = Instant::now();
    let mut retry = 0;
    loop {
        let err = match client.calendar_list_get(wanted).await {
            Err(e) if e.is_retryable() && retry < CONNECT_RETRIES => e,
            other => return other,
        };
        let wait = backoff(retry, err.retry_after());
        if started.elapsed() + wait > RETRY_BUDGET {
            return Err(err);
        }
        on_retry(&err, wait);
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}

/// The wait before retry `retry` (0-based): doubling from [`FIRST_WAIT`] up to
/// [`LONGEST_WAIT`], never shorter than Google's `Retry-After`.
fn backoff(retry: u32, retry_after: Option<Duration>) -> Duration {
    let doubled = FIRST_WAIT.saturating_mul(2u32.saturating_pow(retry.min(16)));
    doubled
        .min(LONGEST_WAIT)
        .max(retry_after.unwrap_or_default())
}

fn validate_alias(raw: &str) -> Result<String, OpsError> {
    let alias = raw.trim();
    if alias.is_empty() {
        return Err(OpsError::InvalidAlias(
            "it must not be empty (e.g. \"Calendar 01\")".into(),
        ));
    }
    let len = alias.chars().count();
    if len > MAX_ALIAS_LEN {
        return Err(OpsError::InvalidAlias(format!(
            "it has {len} characters; at most {MAX_ALIAS_LEN} are allowed"
        )));
    }
    if alias.chars().any(char::is_control) {
        return Err(OpsError::InvalidAlias(
            "it must not contain control characters".into(),
        ));
    }
    Ok(alias.to_owned())
}

async fn log(services: &Services, account: &Account, detail: &str) {
    let entry =
        NewLogEntry::new(log_kind::ACCOUNT_ADDED, LogResult::Ok, detail).account(account.id);
    if let Err(e) = services.store.append_log(entry).await {
        tracing::warn!(error = %e, "could not write the sync log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_waits_double_up_to_a_cap_and_honour_retry_after() {
        let waits: Vec<u64> = (0..CONNECT_RETRIES)
            .map(|n| backoff(n, None).as_secs())
            .collect();

        assert_eq!(waits, [2, 4, 8, 16, 30]);
        assert_eq!(backoff(0, Some(Duration::from_secs(7))).as_secs(), 7);
    }

    #[test]
    fn an_alias_is_trimmed_and_must_be_short_printable_and_non_empty() {
        assert_eq!(validate_alias("  Calendar 01 ").unwrap(), "Calendar 01");
        assert!(matches!(
            validate_alias("   "),
            Err(OpsError::InvalidAlias(_))
        ));
        assert!(matches!(
            validate_alias(&"x".repeat(MAX_ALIAS_LEN + 1)),
            Err(OpsError::InvalidAlias(_))
        ));
        assert!(validate_alias(&"x".repeat(MAX_ALIAS_LEN)).is_ok());
        assert!(matches!(
            validate_alias("a\nb"),
            Err(OpsError::InvalidAlias(_))
        ));
    }
}
