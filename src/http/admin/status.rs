//! The honest status of one calendar: a status word, one sentence, and the one thing to do.
//!
//! Role: the overview, the account page and the first line of the overview all say the same
//! thing about a calendar, decided here from the facts the store holds — the account's
//! status (set by the engine: paused, needs reauth, degraded), its sync state (last error,
//! the mass-deletion hold) and how the writes to it stand ([`TargetWrites`], as its writer
//! left the outbox). Pure: `now` is an argument, so every word is table-tested below.
//!
//! The first problem found wins, in this order: needs reauth, paused, degraded, held,
//! writes failing, sync failing, behind; otherwise active (or starting, before the first
//! full sync).

use chrono::{DateTime, Utc};

use crate::store::views::TargetWrites;
use crate::store::{Account, AccountStatus, LogEntry, SyncState};

/// Writes due for longer than this mean the writer is behind.
pub(crate) const BEHIND_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// What a calendar's state is, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// Connected, the first full sync has not finished.
    Starting,
    Active,
    /// Writes due for more than [`BEHIND_AFTER`] are not written yet.
    Behind,
    /// The last attempts of some writes to this calendar failed (or gave up).
    WritesFailing,
    /// The last sync of this calendar failed.
    SyncFailing,
    NeedsReauth,
    Paused,
    /// The supervisor gave up on its actors.
    Degraded,
    /// The mass-deletion guard holds deletions back until an operator confirms.
    Held,
}

impl Health {
    /// The status word shown to the operator.
    pub fn word(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Active => "active",
            Health::Behind => "behind",
            Health::WritesFailing => "writes failing",
            Health::SyncFailing => "sync failing",
            Health::NeedsReauth => "needs reauth",
            Health::Paused => "paused",
            Health::Degraded => "degraded",
            Health::Held => "held",
        }
    }

    /// The same word for attributes and CSS (`data-health`).
    pub fn slug(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Active => "active",
            Health::Behind => "behind",
            Health::WritesFailing => "writes-failing",
            Health::SyncFailing => "sync-failing",
            Health::NeedsReauth => "needs-reauth",
            Health::Paused => "paused",
            Health::Degraded => "degraded",
            Health::Held => "held",
        }
    }

    /// `ok`, `warn` or `bad`: the colour of the word.
    pub fn class(self) -> &'static str {
        match self {
            Health::Starting | Health::Active => "ok",
            Health::Behind | Health::Paused | Health::Held | Health::SyncFailing => "warn",
            Health::WritesFailing | Health::NeedsReauth | Health::Degraded => "bad",
        }
    }

    /// Whether the calendar is in step (nothing for the operator to look at).
    pub fn in_step(self) -> bool {
        matches!(self, Health::Starting | Health::Active)
    }
}

/// The one thing to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// A POST form (with the CSRF token) to `href`.
    Post { href: String, label: &'static str },
    /// A plain link.
    Link { href: String, label: &'static str },
}

/// A calendar's status: the word, a sentence saying why, the next action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub health: Health,
    pub sentence: String,
    pub action: Option<Action>,
}

/// Everything the status is decided from.
pub(crate) struct Facts<'a> {
    pub account: &'a Account,
    pub sync: Option<&'a SyncState>,
    pub writes: Option<&'a TargetWrites>,
    /// The newest error the sync log holds for this account.
    pub last_problem: Option<&'a LogEntry>,
    /// Where the Reconnect button leads.
    pub reconnect_href: String,
    pub now: DateTime<Utc>,
}

pub(crate) fn status(f: &Facts<'_>) -> Status {
    let writes = f.writes.cloned().unwrap_or_default();
    account_problem(f)
        .or_else(|| engine_problem(f, &writes))
        .unwrap_or_else(|| settled(f, &writes))
}

impl Status {
    fn new(health: Health, sentence: String, action: Option<Action>) -> Self {
        Self {
            health,
            sentence,
            action,
        }
    }
}

/// A POST button on the account's own `action` route.
fn post(f: &Facts<'_>, action: &str, label: &'static str) -> Option<Action> {
    Some(Action::Post {
        href: format!("/admin/accounts/{}/{action}", f.account.id),
        label,
    })
}

/// What the account's own status says, unless it is active.
fn account_problem(f: &Facts<'_>) -> Option<Status> {
    let status = match f.account.status {
        AccountStatus::NeedsReauth => Status::new(
            Health::NeedsReauth,
            format!(
                "Google refused this account's access{}. Nothing syncs until its owner reconnects it; its blocks stay where they are.",
                since(f.last_problem.map(|p| p.at), f.now)
            ),
            Some(Action::Link {
                href: f.reconnect_href.clone(),
                label: "Reconnect",
            }),
        ),
        AccountStatus::Paused => {
            let why = match f.account.status_reason.as_deref() {
                None | Some("paused by the operator") => " by an operator".to_owned(),
                Some(other) => format!(" ({other})"),
            };
            Status::new(
                Health::Paused,
                format!("Paused{why}: nothing syncs; its blocks stay where they are."),
                post(f, "resume", "Resume"),
            )
        }
        AccountStatus::Degraded => Status::new(
            Health::Degraded,
            format!(
                "Its sync kept failing and was stopped{}. Read the last error, then resume.",
                f.account
                    .status_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            post(f, "resume", "Resume"),
        ),
        AccountStatus::Active => return None,
    };
    Some(status)
}

/// What the sync and the writes of an active account say, when something is wrong.
fn engine_problem(f: &Facts<'_>, writes: &TargetWrites) -> Option<Status> {
    if f.sync.is_some_and(|s| s.mass_delete_hold) {
        return Some(Status::new(
            Health::Held,
            "A full listing found far fewer events than known; no block was deleted. Check the calendar: if the events really are gone, confirm the deletions.".into(),
            post(f, "confirm-deletions", "Confirm deletions"),
        ));
    }
    if writes.retrying > 0 || writes.gave_up > 0 {
        return Some(Status::new(
            Health::WritesFailing,
            failing_sentence(writes, f.now),
            Some(Action::Link {
                href: format!("/admin/activity?account={}&result=error", f.account.id),
                label: "See the failed writes",
            }),
        ));
    }
    if let Some(error) = f.sync.and_then(|s| s.last_error.as_deref()) {
        return Some(Status::new(
            Health::SyncFailing,
            format!(
                "The last sync failed: {}. It is retried by itself.",
                google_reason(error)
            ),
            post(f, "sync", "Sync now"),
        ));
    }
    let due = writes
        .oldest_due
        .filter(|due| f.now - *due > BEHIND_AFTER)?;
    Some(Status::new(
        Health::Behind,
        format!(
            "{} waiting, the oldest due for {}: its writer is behind.",
            plural(writes.pending, "write"),
            super::pages::human((f.now - due).to_std().unwrap_or_default())
        ),
        Some(Action::Link {
            href: "/admin/live".into(),
            label: "Watch the queue",
        }),
    ))
}

/// Nothing wrong: starting (before the first full sync) or active.
fn settled(f: &Facts<'_>, writes: &TargetWrites) -> Status {
    if f.sync.is_none_or(|s| s.last_full_sync_at.is_none()) {
        return Status::new(
            Health::Starting,
            "Connected; the first full sync is under way.".into(),
            None,
        );
    }
    let sentence = match writes.pending {
        0 => "In step: nothing waiting.".to_owned(),
        n => format!("In step; {} being made now.", plural(n, "write")),
    };
    Status::new(Health::Active, sentence, None)
}

fn failing_sentence(writes: &TargetWrites, now: DateTime<Utc>) -> String {
    let mut parts = Vec::new();
    if writes.retrying > 0 {
        let reason = writes
            .last_error
            .as_deref()
            .map(google_reason)
            .unwrap_or_else(|| "an error".into());
        let retry = match writes.next_retry {
            Some(at) if at > now => format!(
                "retrying in {}",
                super::pages::human((at - now).to_std().unwrap_or_default())
            ),
            _ => "retrying now".into(),
        };
        parts.push(format!(
            "{} to this calendar failing: Google answered {reason}; {retry} ({} so far).",
            plural(writes.retrying, "write"),
            plural(u64::from(writes.attempts), "failed attempt")
        ));
    }
    if writes.gave_up > 0 {
        let reason = writes
            .gave_up_error
            .as_deref()
            .map(google_reason)
            .unwrap_or_else(|| "a permanent error".into());
        parts.push(format!(
            "{} given up after {reason}; tried again when their event changes or at the next reconciliation.",
            plural(writes.gave_up, "write")
        ));
    }
    parts.join(" ")
}

/// " 3 min ago", or nothing when the time is unknown.
fn since(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    at.map(|at| {
        format!(
            " {} ago",
            super::pages::human((now - at).to_std().unwrap_or_default())
        )
    })
    .unwrap_or_default()
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Google's status and reason from an error the engine recorded ("transient failure: 503
/// backendError Backend Error" → "503 backendError"); the text itself when it names none.
pub(crate) fn google_reason(error: &str) -> String {
    if error.contains("invalid_grant") {
        return "invalid_grant (access revoked or expired)".into();
    }
    let words: Vec<&str> = error
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ':' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    for (i, word) in words.iter().enumerate() {
        let is_status = word.len() == 3
            && word.chars().all(|c| c.is_ascii_digit())
            && matches!(word.as_bytes()[0], b'1'..=b'5');
        if !is_status {
            continue;
        }
        let reason = words.get(i + 1).filter(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        return match reason {
            Some(reason) => format!("{word} {reason}"),
            None => (*word).to_owned(),
        };
    }
    if error.contains("rate limited") {
        return "rate limited (429 or 403 rateLimitExceeded)".into();
    }
    let mut text: String = error.chars().take(160).collect();
    if error.chars().count() > 160 {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::domain::{AccountId, CalendarId};
    use crate::store::LogResult;

    fn now() -> DateTime<Utc> {
        "2026-03-05T10:00:00Z".parse().unwrap()
    }

    fn account(status: AccountStatus) -> Account {
        Account {
            id: AccountId::new(5),
            alias: "Calendar 05".into(),
            email: None,
            calendar_id: CalendarId::parse("user05@example.test").unwrap(),
            status,
            status_reason: None,
            time_zone: None,
            created_at: now(),
            updated_at: now(),
            group: crate::store::DEFAULT_GROUP.to_owned(),
            credential_id: None,
            rules: crate::store::CalendarRules::default(),
        }
    }

    fn synced() -> SyncState {
        SyncState {
            account_id: AccountId::new(5),
            sync_token: Some("t".into()),
            last_full_sync_at: Some(now() - TimeDelta::minutes(5)),
            last_incremental_sync_at: Some(now() - TimeDelta::minutes(1)),
            last_result: Some("ok".into()),
            last_error: None,
            mass_delete_hold: false,
            replan_requested_at: None,
            updated_at: now(),
        }
    }

    fn decide(
        account: &Account,
        sync: Option<&SyncState>,
        writes: Option<&TargetWrites>,
        problem: Option<&LogEntry>,
    ) -> Status {
        status(&Facts {
            account,
            sync,
            writes,
            last_problem: problem,
            reconnect_href: "/auth/google/start?alias=Calendar+05".into(),
            now: now(),
        })
    }

    #[test]
    fn a_synced_calendar_with_nothing_waiting_is_active_and_in_step() {
        let s = decide(&account(AccountStatus::Active), Some(&synced()), None, None);

        assert_eq!(s.health, Health::Active);
        assert_eq!(s.sentence, "In step: nothing waiting.");
        assert_eq!(s.action, None);
    }

    #[test]
    fn failing_writes_name_googles_status_reason_retry_and_count() {
        let writes = TargetWrites {
            pending: 1,
            retrying: 1,
            attempts: 3,
            next_retry: Some(now() + TimeDelta::seconds(20)),
            last_error: Some("transient failure: 503 backendError Backend Error".into()),
            ..TargetWrites::default()
        };

        let s = decide(
            &account(AccountStatus::Active),
            Some(&synced()),
            Some(&writes),
            None,
        );

        assert_eq!(s.health, Health::WritesFailing);
        assert_eq!(
            s.sentence,
            "1 write to this calendar failing: Google answered 503 backendError; retrying in 20 s (3 failed attempts so far)."
        );
    }

    #[test]
    fn writes_due_for_over_thirty_seconds_are_behind() {
        let writes = TargetWrites {
            pending: 4,
            oldest_due: Some(now() - TimeDelta::seconds(45)),
            ..TargetWrites::default()
        };
        let fresh = TargetWrites {
            pending: 4,
            oldest_due: Some(now() - TimeDelta::seconds(3)),
            ..TargetWrites::default()
        };

        let behind = decide(
            &account(AccountStatus::Active),
            Some(&synced()),
            Some(&writes),
            None,
        );
        let busy = decide(
            &account(AccountStatus::Active),
            Some(&synced()),
            Some(&fresh),
            None,
        );

        assert_eq!(behind.health, Health::Behind);
        assert!(behind
            .sentence
            .starts_with("4 writes waiting, the oldest due for 45 s"));
        assert_eq!(busy.health, Health::Active);
        assert_eq!(busy.sentence, "In step; 4 writes being made now.");
    }

    #[test]
    fn a_revoked_account_says_when_and_offers_reconnect() {
        let problem = LogEntry {
            id: 1,
            at: now() - TimeDelta::minutes(2),
            account_id: Some(AccountId::new(5)),
            kind: "reauth_needed".into(),
            result: LogResult::Error,
            detail: "Google says access was revoked — Reconnect".into(),
            count: None,
            duration_ms: None,
        };

        let s = decide(
            &account(AccountStatus::NeedsReauth),
            Some(&synced()),
            None,
            Some(&problem),
        );

        assert_eq!(s.health, Health::NeedsReauth);
        assert!(s.sentence.contains("2 min ago"), "{}", s.sentence);
        assert!(matches!(
            s.action,
            Some(Action::Link {
                label: "Reconnect",
                ..
            })
        ));
    }

    #[test]
    fn the_mass_deletion_hold_wins_over_failing_writes_and_asks_for_a_confirmation() {
        let held = SyncState {
            mass_delete_hold: true,
            ..synced()
        };
        let writes = TargetWrites {
            retrying: 1,
            ..TargetWrites::default()
        };

        let s = decide(
            &account(AccountStatus::Active),
            Some(&held),
            Some(&writes),
            None,
        );

        assert_eq!(s.health, Health::Held);
        assert!(matches!(
            s.action,
            Some(Action::Post {
                label: "Confirm deletions",
                ..
            })
        ));
    }

    #[test]
    fn a_failed_sync_and_the_first_sync_have_their_own_words() {
        let failed = SyncState {
            last_error: Some("transient failure: timed out".into()),
            ..synced()
        };
        let first = SyncState {
            last_full_sync_at: None,
            ..synced()
        };

        let failing = decide(&account(AccountStatus::Active), Some(&failed), None, None);
        let starting = decide(&account(AccountStatus::Active), Some(&first), None, None);

        assert_eq!(failing.health, Health::SyncFailing);
        assert!(failing.sentence.contains("timed out"));
        assert_eq!(starting.health, Health::Starting);
    }

    #[test]
    fn googles_status_and_reason_are_found_in_the_engines_error_texts() {
        assert_eq!(
            google_reason("transient failure: 503 backendError Backend Error"),
            "503 backendError"
        );
        assert_eq!(
            google_reason("Google refused the request: 400 invalid: Bad value"),
            "400 invalid"
        );
        assert_eq!(
            google_reason("Calendar usage limits exceeded (403 quotaExceeded)"),
            "403 quotaExceeded"
        );
        assert_eq!(google_reason("not found (404)"), "404");
        assert_eq!(
            google_reason("rate limited by Google"),
            "rate limited (429 or 403 rateLimitExceeded)"
        );
        assert_eq!(
            google_reason("the refresh token was revoked or has expired (invalid_grant)"),
            "invalid_grant (access revoked or expired)"
        );
        assert_eq!(
            google_reason("transient failure: connection failed"),
            "transient failure: connection failed"
        );
    }
}
