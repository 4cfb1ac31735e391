//! The validated records the store hands out and takes in.
//!
//! Rows are parsed into these at the store's edge: ids become [`AccountId`], [`EventId`],
//! [`BlockId`]…, statuses become enums, JSON text becomes [`serde_json::Value`]. A row that
//! cannot be parsed is reported as [`super::StoreError::Corrupt`] rather than passed on.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::config::BlockDetails;
use crate::domain::{AccountId, BlockId, CalendarId, ChannelId, EventId};

use super::StoreError;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                match raw {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            pub(crate) fn from_db(raw: &str) -> Result<Self, StoreError> {
                Self::parse(raw).ok_or_else(|| {
                    StoreError::Corrupt(format!(concat!("unknown ", stringify!($name), " {:?}"), raw))
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Whether an account is being synced, and if not, why.
    AccountStatus {
        /// Synced normally.
        Active = "active",
        /// Stopped by the operator; its blocks stay.
        Paused = "paused",
        /// Google refused the refresh token (`invalid_grant`); the owner must reconnect.
        NeedsReauth = "needs_reauth",
        /// Its actor kept failing and was given up on by the supervisor.
        Degraded = "degraded",
    }
);

text_enum!(
    /// Where a desired block stands in the outbox.
    BlockState {
        /// Google does not yet match `body`; the writer should act at `next_attempt_at`.
        Pending = "pending",
        /// Google matches `body` (as of `applied_hash`).
        Applied = "applied",
        /// The user deleted this block; it is not put back.
        Excluded = "excluded",
        /// Gave up after a permanent error; retried only when the desired content changes.
        Failed = "failed",
    }
);

text_enum!(
    /// What an outbox row stands for on its target (see `sync::BlockRole`).
    RowRole {
        /// The block of a single event.
        Single = "single",
        /// A block series.
        Series = "series",
        /// One occurrence of a block series (`series_block_id`).
        Occurrence = "occurrence",
        /// A single block standing in for a busy exception of an unblocked series.
        Detached = "detached",
    }
);

text_enum!(
    /// Outcome of a logged action.
    LogResult {
        Ok = "ok",
        Error = "error",
        Skipped = "skipped",
    }
);

/// The `kind` words of the sync log, in one place so the admin filter and the writers agree.
pub mod log_kind {
    pub const FULL_SYNC: &str = "full_sync";
    pub const INCREMENTAL_SYNC: &str = "incremental_sync";
    pub const BLOCK_INSERT: &str = "block_insert";
    pub const BLOCK_PATCH: &str = "block_patch";
    pub const BLOCK_DELETE: &str = "block_delete";
    pub const BLOCK_RESTORE: &str = "block_restore";
    pub const BLOCK_EXCLUDED: &str = "block_excluded";
    pub const ACCOUNT_ADDED: &str = "account_added";
    pub const ACCOUNT_REMOVED: &str = "account_removed";
    pub const ACCOUNT_STATUS: &str = "account_status";
    pub const REAUTH_NEEDED: &str = "reauth_needed";
    pub const CHANNEL_CREATED: &str = "channel_created";
    pub const CHANNEL_STOPPED: &str = "channel_stopped";
    pub const RECONCILE: &str = "reconcile";
    pub const MASS_DELETE_HOLD: &str = "mass_delete_hold";
    pub const PURGE: &str = "purge";
}

/// The group every calendar joins unless told otherwise.
pub const DEFAULT_GROUP: &str = "default";

/// A connected calendar, without its token (ask [`super::Store::refresh_token`] for that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub alias: String,
    pub email: Option<String>,
    pub calendar_id: CalendarId,
    pub status: AccountStatus,
    /// Plain words for the operator, e.g. "Google refused the refresh token".
    pub status_reason: Option<String>,
    pub time_zone: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The group's name; blocks never cross groups.
    pub group: String,
    /// The Google account this calendar is reached through (shared by its calendars).
    pub credential_id: Option<i64>,
    pub rules: CalendarRules,
}

/// A calendar's own rules. `None` follows the environment's default; an empty
/// `exclude_title_regex` means "no regex" whatever the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarRules {
    /// As a target: the block title, `{alias}` being the source calendar's alias.
    pub block_title_template: Option<String>,
    /// As a target: `full` or `busy-only`.
    pub block_details: Option<BlockDetails>,
    /// As a source: events of these kinds are not mirrored.
    pub skip_all_day: Option<bool>,
    pub skip_out_of_office: Option<bool>,
    pub skip_focus_time: Option<bool>,
    /// As a source: events whose title matches are not mirrored.
    pub exclude_title_regex: Option<String>,
    /// As a source: events that ended this many days ago are still mirrored.
    pub look_back_days: Option<u32>,
}

impl CalendarRules {
    /// The environment's defaults written out, for a newly connected calendar.
    pub fn from_settings(sync: &crate::config::SyncSettings) -> Self {
        Self {
            block_title_template: Some(sync.block_title_template.clone()),
            block_details: Some(sync.block_details),
            skip_all_day: Some(sync.skip_all_day),
            skip_out_of_office: Some(sync.skip_out_of_office),
            skip_focus_time: Some(sync.skip_focus_time),
            exclude_title_regex: Some(
                sync.exclude_title_regex
                    .as_ref()
                    .map(|r| r.as_str().to_owned())
                    .unwrap_or_default(),
            ),
            look_back_days: Some(u32::try_from(sync.look_back.as_secs() / 86_400).unwrap_or(0)),
        }
    }

    /// `other`'s set fields over these.
    pub fn patched(&self, other: &CalendarRules) -> Self {
        Self {
            block_title_template: other
                .block_title_template
                .clone()
                .or_else(|| self.block_title_template.clone()),
            block_details: other.block_details.or(self.block_details),
            skip_all_day: other.skip_all_day.or(self.skip_all_day),
            skip_out_of_office: other.skip_out_of_office.or(self.skip_out_of_office),
            skip_focus_time: other.skip_focus_time.or(self.skip_focus_time),
            exclude_title_regex: other
                .exclude_title_regex
                .clone()
                .or_else(|| self.exclude_title_regex.clone()),
            look_back_days: other.look_back_days.or(self.look_back_days),
        }
    }

    /// Whether a change to these touches the calendar as a source (its own events' blocks).
    pub fn source_side_differs(&self, other: &CalendarRules) -> bool {
        (
            self.skip_all_day,
            self.skip_out_of_office,
            self.skip_focus_time,
            &self.exclude_title_regex,
            self.look_back_days,
        ) != (
            other.skip_all_day,
            other.skip_out_of_office,
            other.skip_focus_time,
            &other.exclude_title_regex,
            other.look_back_days,
        )
    }

    /// Whether a change to these touches the calendar as a target (the blocks on it).
    pub fn target_side_differs(&self, other: &CalendarRules) -> bool {
        (&self.block_title_template, self.block_details)
            != (&other.block_title_template, other.block_details)
    }
}

/// What [`super::Store::create_account`] needs; the token is encrypted before it is stored.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub alias: String,
    pub email: Option<String>,
    pub calendar_id: CalendarId,
    pub refresh_token: SecretString,
    pub time_zone: Option<String>,
    /// The group to join (created when new); [`DEFAULT_GROUP`] by default.
    pub group: String,
    /// Usually the environment's defaults ([`CalendarRules::from_settings`]).
    pub rules: CalendarRules,
}

/// A group and its members, for the links matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: i64,
    pub name: String,
}

/// What changed when a calendar's settings changed, so the caller can say so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// Calendars whose blocks are planned again.
    pub replanned: Vec<AccountId>,
    /// Outbox rows now waiting for a delete (blocks that no longer belong).
    pub retracted: u64,
}

/// An account's sync cursor and how its last sync went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub account_id: AccountId,
    /// `None` until the first full sync finished (or after a reset): the next sync is full.
    pub sync_token: Option<String>,
    pub last_full_sync_at: Option<DateTime<Utc>>,
    pub last_incremental_sync_at: Option<DateTime<Utc>>,
    pub last_result: Option<String>,
    pub last_error: Option<String>,
    /// A full resync wanted to delete too many blocks; nothing is deleted until cleared.
    pub mass_delete_hold: bool,
    pub updated_at: DateTime<Utc>,
    /// The calendar's blocks must be planned again from its stored events.
    pub replan_requested_at: Option<DateTime<Utc>>,
}

/// A source event as the sync saw it, to be stored by [`super::Store::commit_sync`].
/// Blocks are never stored; a cancelled exception of a live series is.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEventUpsert {
    pub event_id: EventId,
    pub ical_uid: Option<String>,
    pub recurring_event_id: Option<EventId>,
    /// Google's status: confirmed | tentative | cancelled.
    pub status: String,
    /// The wire event the planner reads again later (stored as JSON text).
    pub data: serde_json::Value,
    pub google_updated: Option<DateTime<Utc>>,
}

/// A stored source event (the planner's own view is `sync::SourceEvent`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub account_id: AccountId,
    pub event_id: EventId,
    pub ical_uid: Option<String>,
    pub recurring_event_id: Option<EventId>,
    pub status: String,
    pub is_block: bool,
    pub data: serde_json::Value,
    pub google_updated: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// The row key of an outbox entry (not a Google id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboxId(i64);

impl OutboxId {
    pub fn new(raw: i64) -> Self {
        Self(raw)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for OutboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What the planner wants target `target_account_id` to hold for one source event.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxUpsert {
    pub target_account_id: AccountId,
    pub source_account_id: AccountId,
    pub source_event_id: EventId,
    pub block_id: BlockId,
    pub role: RowRole,
    /// On an occurrence: its block series.
    pub series_block_id: Option<BlockId>,
    /// The event resource to write; `None` means "this block must not exist".
    pub body: Option<serde_json::Value>,
    /// Hash of `body` (`None` with `body: None`); equal hashes mean "nothing to do".
    pub desired_hash: Option<String>,
}

/// An outbox row: what one target calendar must hold under one block id, and what the
/// writer last applied (the planner's own view is `sync::DesiredBlock`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: OutboxId,
    pub target_account_id: AccountId,
    pub source_account_id: AccountId,
    pub source_event_id: EventId,
    pub block_id: BlockId,
    pub body: Option<serde_json::Value>,
    pub desired_hash: Option<String>,
    /// Hash of what was last written to Google successfully.
    pub applied_hash: Option<String>,
    pub google_etag: Option<String>,
    pub state: BlockState,
    /// Failed attempts since the desired content last changed.
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub role: RowRole,
    pub series_block_id: Option<BlockId>,
    pub claimed_by: Option<String>,
    pub claim_expires_at: Option<DateTime<Utc>>,
    pub sync_id: Option<String>,
    /// Google's `updated` of the writer's last write of this block.
    pub applied_updated: Option<DateTime<Utc>>,
}

impl OutboxRow {
    /// The row wants a live block (not a deletion, not a cancelled occurrence).
    pub fn wants_live(&self) -> bool {
        self.body
            .as_ref()
            .is_some_and(|b| b.get("status").and_then(|s| s.as_str()) != Some("cancelled"))
    }

    /// The writer wrote this content (or an earlier one) and the row is still in play.
    pub fn written(&self) -> bool {
        self.applied_hash.is_some()
            && matches!(self.state, BlockState::Applied | BlockState::Pending)
    }
}

/// A block found at Google (by marker) that must go: queued by purge, removal and
/// reconciliation with [`super::Store::queue_deletions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub block_id: BlockId,
    /// From the block's marker (0 when the marker names no account of ours).
    pub source_account: AccountId,
    pub source_event: EventId,
    pub role: RowRole,
    pub series_block_id: Option<BlockId>,
}

/// What a sync does to the mass-deletion hold, recorded with its commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HoldWrite {
    #[default]
    Unchanged,
    /// Place the hold, with words for the operator on the account.
    Place { reason: String },
    /// Lift the hold (an operator confirmed) and clear the account's reason.
    Lift,
}

/// Everything one sync produced, written atomically by [`super::Store::commit_sync`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncCommit {
    pub upserted_source_events: Vec<StoredEventUpsert>,
    pub deleted_source_event_ids: Vec<EventId>,
    pub desired_blocks: Vec<OutboxUpsert>,
    /// Rows on the synced calendar whose blocks the user deleted: they become excluded, and
    /// so do the occurrence rows of an excluded block series.
    pub exclusions: Vec<BlockId>,
    pub hold: HoldWrite,
    /// Sync-log lines written in the same transaction.
    pub log: Vec<NewLogEntry>,
    /// The token to continue from; `None` keeps the stored one.
    pub new_sync_token: Option<String>,
    /// A full listing (sets `last_full_sync_at`) rather than an incremental one.
    pub full: bool,
    /// Stamped on every row this commit queues.
    pub sync_id: Option<String>,
    /// Rows this commit queues are claimed for this writer at once (it is about to be woken).
    pub claim_for: Option<Claim>,
    /// A replan asked for at or before this instant is done by this commit.
    pub replan_done: Option<DateTime<Utc>>,
    /// The stored token an incremental listing continued from (`None`: a full listing, or
    /// unknown). A commit of nothing but a new token continuing from it is deferred
    /// (`deferred.rs`).
    pub listed_from: Option<String>,
}

impl SyncCommit {
    /// Nothing to store but the next token of an incremental listing: the echo of our own
    /// writes, or an idle poll.
    pub(super) fn is_token_only(&self) -> bool {
        !self.full
            && self.listed_from.is_some()
            && self.new_sync_token.is_some()
            && self.upserted_source_events.is_empty()
            && self.deleted_source_event_ids.is_empty()
            && self.desired_blocks.is_empty()
            && self.exclusions.is_empty()
            && matches!(self.hold, HoldWrite::Unchanged)
            && self.log.is_empty()
            && self.replan_done.is_none()
    }
}

/// Who may apply an outbox row, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub owner: String,
    pub until: DateTime<Utc>,
}

/// What a commit changed in the outbox, so the caller can wake the right writers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Rows newly marked excluded (occurrences of an excluded series included).
    pub excluded: u64,
    /// Targets that now have at least one newly pending block, ascending.
    pub woken_targets: Vec<AccountId>,
    /// Rows inserted or put back to pending.
    pub blocks_queued: u64,
    /// Rows left alone because their desired hash did not change (or they are excluded).
    pub blocks_unchanged: u64,
}

/// What [`super::Store::save_channel`] records about a newly opened push channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChannel {
    pub account_id: AccountId,
    pub channel_id: ChannelId,
    pub resource_id: String,
    pub token_hash: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// A stored push channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchChannel {
    pub id: i64,
    pub account_id: AccountId,
    pub channel_id: ChannelId,
    pub resource_id: String,
    pub token_hash: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}

/// A line for the sync log. `detail` must never hold event titles or other user content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogEntry {
    pub account_id: Option<AccountId>,
    /// One of [`log_kind`].
    pub kind: String,
    pub result: LogResult,
    pub detail: String,
    pub count: Option<i64>,
    pub duration_ms: Option<i64>,
}

impl NewLogEntry {
    pub fn new(kind: &str, result: LogResult, detail: impl Into<String>) -> Self {
        Self {
            account_id: None,
            kind: kind.to_owned(),
            result,
            detail: detail.into(),
            count: None,
            duration_ms: None,
        }
    }

    pub fn account(mut self, id: AccountId) -> Self {
        self.account_id = Some(id);
        self
    }

    pub fn count(mut self, count: i64) -> Self {
        self.count = Some(count);
        self
    }

    pub fn duration(mut self, elapsed: std::time::Duration) -> Self {
        self.duration_ms = Some(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX));
        self
    }
}

/// A stored sync log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub account_id: Option<AccountId>,
    pub kind: String,
    pub result: LogResult,
    pub detail: String,
    pub count: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// Filters and page of [`super::Store::recent_log`]; the default is the newest 50 of all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub account_id: Option<AccountId>,
    pub kind: Option<String>,
    pub result: Option<LogResult>,
    pub offset: u64,
    pub limit: u64,
}

impl Default for LogQuery {
    fn default() -> Self {
        Self {
            account_id: None,
            kind: None,
            result: None,
            offset: 0,
            limit: 50,
        }
    }
}
