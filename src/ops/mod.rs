//! Account onboarding and whole-calendar operations.
//!
//! Role: the operations an operator runs on accounts and on whole calendars, outside the
//! event-by-event flow of the sync actors:
//! - [`connect_account`] resolves a calendar's real id and time zone and stores the account
//!   (or replaces the token of an existing one: a reconnect after `needs_reauth`);
//! - [`purge_account`] / [`purge_all`] delete every block this installation made on a
//!   calendar, found by marker — finding them needs no outbox state, only the account's
//!   token;
//! - [`remove_account`] retracts an account's blocks from every other calendar, optionally
//!   purges its own calendar, then deletes it;
//! - [`reconcile`] compares what the calendars actually hold (by marker) with the outbox and
//!   repairs orphans, duplicates, drift, missing blocks and user deletions;
//!   `serve` runs it every `RECONCILE_INTERVAL_SECS` (see `actors::background`).
//!
//! One Google write path: operations only *read* Google directly (listings, gets); every
//! delete and repair is queued in the outbox and applied by the `BlockWriter`s, reached
//! through [`BlockWrites`] (the running writers under `serve`, writers started for the
//! occasion on the command line), with the same token bucket, backoff, claims and audit.
//!
//! Collaborators: [`Services`] (store, Google client, the installation id), the block
//! marker and deterministic ids of [`crate::sync`]. The CLI (`mcss accounts|reconcile|purge`),
//! the admin pages and `Control::remove_account` call these. Nothing here keeps state between
//! calls; every operation can be re-run safely (a second run finds nothing left to do).

mod connect;
mod listing;
mod purge;
mod reconcile;
pub mod settings;
pub mod writes;

use crate::domain::AccountId;
use crate::google::GoogleError;
use crate::services::{Services, ServicesError};
use crate::store::{Account, AccountStatus, StoreError};

pub use connect::{
    connect_account, connect_account_with, validate_group, ConnectRequest, RetryNotice,
    MAX_ALIAS_LEN,
};
pub use purge::{
    purge_account, purge_all, remove_account, retract_source_blocks, PurgeReport, RemoveReport,
    RetractReport,
};
pub use reconcile::{reconcile, AccountReconcile, ReconcileReport};
pub use writes::{BlockWrites, DRAIN_DEADLINE};

/// Why an operation failed, in the terms a caller (CLI, admin page) branches on.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The alias is empty, too long or holds control characters.
    #[error("invalid alias: {0}")]
    InvalidAlias(String),
    /// The token endpoint answered `invalid_grant`.
    #[error(
        "Google refused this refresh token (revoked or expired); get a new one by consenting again"
    )]
    InvalidGrant,
    /// The alias belongs to an account on another calendar.
    #[error("the alias {alias:?} is already used by the account on calendar {existing}; choose another alias")]
    AliasTaken { alias: String, existing: String },
    /// calendarList.get did not give a usable calendar id.
    #[error("Google did not resolve the calendar {0:?} to a real calendar id")]
    UnresolvedCalendar(String),
    /// No account has this alias.
    #[error("no account is named {0:?} (see `mcss accounts list`)")]
    UnknownAlias(String),
    /// A setting (a rule, a group, a link) was refused; nothing was changed.
    #[error("{field}: {problem}")]
    InvalidSetting {
        field: &'static str,
        problem: String,
    },
    /// The writes are queued but did not all finish in time; running it again completes it.
    #[error("{0}; run it again to finish")]
    Incomplete(String),
    /// Another Google failure; `context` says what was being done.
    #[error("{context}")]
    Google {
        context: String,
        #[source]
        source: GoogleError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OpsError {
    fn google(context: impl Into<String>, source: GoogleError) -> Self {
        match source {
            GoogleError::InvalidGrant => Self::InvalidGrant,
            source => Self::Google {
                context: context.into(),
                source,
            },
        }
    }

    /// A Google-side failure that concerns one account only (the others can go on).
    fn is_per_account(&self) -> bool {
        matches!(self, Self::InvalidGrant | Self::Google { .. })
    }
}

impl From<ServicesError> for OpsError {
    fn from(err: ServicesError) -> Self {
        match err {
            ServicesError::Store(e) => Self::Store(e),
            ServicesError::Google(e) => Self::google("cannot build the Google client", e),
        }
    }
}

/// The error text shown for one account in a report: the cause chain on one line.
fn chain(err: &OpsError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// When Google refuses an account's token during an operation, the account needs a new
/// consent: record it the same way the sync actors do, so the dashboard shows it.
async fn note_invalid_grant(services: &Services, account: AccountId, err: &OpsError) {
    if matches!(err, OpsError::InvalidGrant) {
        services.mark_needs_reauth(account).await;
    }
}

/// Whether an account's calendar can be worked on (its token is believed to work).
fn usable(account: &Account) -> bool {
    matches!(
        account.status,
        AccountStatus::Active | AccountStatus::Degraded
    )
}
