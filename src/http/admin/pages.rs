//! The admin pages' HTML (maud) and the reads behind them.
//!
//! Every page shares [`layout`]; forms that POST carry the session's CSRF token. Statuses are
//! translated into plain words with the thing to do next ([`advice`]). Nothing here writes.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use serde::Serialize;

use super::control;
use crate::domain::AccountId;
use crate::http::AppState;
use crate::store::{
    log_kind, Account, AccountStatus, BlockState, LogEntry, LogResult, StoreError, SyncState,
};

/// What every signed-in page needs from the session.
pub(crate) struct Page {
    pub csrf: String,
    pub flash: Option<String>,
    pub demo: bool,
}

/// One account with what the overview shows about it.
pub(crate) struct AccountRow {
    pub account: Account,
    pub sync: Option<SyncState>,
    pub channel_expires: Option<DateTime<Utc>>,
    /// Writes waiting for this calendar.
    pub pending: u64,
    /// Blocks of other calendars that Google holds on this one.
    pub blocks: u64,
    /// Writes to this calendar that gave up after a permanent error.
    pub failed: u64,
}

pub(crate) async fn load_rows(state: &AppState) -> Result<Vec<AccountRow>, StoreError> {
    let mut rows = Vec::new();
    for account in state.store.list_accounts().await? {
        rows.push(row_of(state, account).await?);
    }
    Ok(rows)
}

pub(crate) async fn load_row(
    state: &AppState,
    id: AccountId,
) -> Result<Option<AccountRow>, StoreError> {
    match state.store.account(id).await {
        Ok(account) => Ok(Some(row_of(state, account).await?)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn row_of(state: &AppState, account: Account) -> Result<AccountRow, StoreError> {
    let id = account.id;
    let store = &state.store;
    let sync = match store.sync_state(id).await {
        Ok(s) => Some(s),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let (channel, pending, blocks, failed) = tokio::try_join!(
        store.current_channel(id),
        store.pending_count(Some(id)),
        store.block_count(Some(id), BlockState::Applied),
        store.block_count(Some(id), BlockState::Failed),
    )?;
    Ok(AccountRow {
        account,
        sync,
        channel_expires: channel.map(|c| c.expires_at),
        pending,
        blocks,
        failed,
    })
}

/// The words shown for an account's state, and the one thing to do about it.
pub(crate) struct Advice {
    pub class: &'static str,
    pub text: String,
    /// (href or form action, label, whether it is a POST form)
    pub action: Option<(String, &'static str, bool)>,
}

pub(crate) fn advice(row: &AccountRow) -> Advice {
    let a = &row.account;
    let id = a.id;
    match a.status {
        AccountStatus::NeedsReauth => Advice {
            class: "bad",
            text: "Google says access was revoked or expired — reconnect the account to resume syncing. Its blocks stay in place meanwhile.".into(),
            action: Some((reconnect_href(a), "Reconnect", false)),
        },
        AccountStatus::Paused => Advice {
            class: "warn",
            text: "Paused by an operator — no syncing; its blocks stay in place.".into(),
            action: Some((format!("/admin/accounts/{id}/resume"), "Resume", true)),
        },
        AccountStatus::Degraded => Advice {
            class: "bad",
            text: format!(
                "Kept failing and was stopped{} — check the error below, then resume.",
                a.status_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            action: Some((format!("/admin/accounts/{id}/resume"), "Resume", true)),
        },
        AccountStatus::Active => {
            if row.sync.as_ref().is_some_and(|s| s.mass_delete_hold) {
                Advice {
                    class: "warn",
                    text: "A full listing suddenly found far fewer events; no blocks were deleted. Check the calendar: if the events really are gone, confirm the deletions.".into(),
                    action: Some((format!("/admin/accounts/{id}/confirm-deletions"), "Confirm deletions", true)),
                }
            } else if row.sync.as_ref().is_some_and(|s| s.last_error.is_some()) {
                Advice {
                    class: "warn",
                    text: "Syncing, but the last attempt failed; it will be retried by itself.".into(),
                    action: Some((format!("/admin/accounts/{id}/sync"), "Sync now", true)),
                }
            } else if row.failed > 0 {
                Advice {
                    class: "warn",
                    text: format!("Syncing; {} block writes to this calendar gave up (see Activity).", row.failed),
                    action: None,
                }
            } else if row.sync.as_ref().is_none_or(|s| s.last_full_sync_at.is_none()) {
                Advice {
                    class: "ok",
                    text: "Connected; the first full sync is under way.".into(),
                    action: None,
                }
            } else {
                Advice {
                    class: "ok",
                    text: "Syncing normally.".into(),
                    action: None,
                }
            }
        }
    }
}

fn reconnect_href(a: &Account) -> String {
    let mut url = url::Url::parse("http://x/auth/google/start").expect("a fixed URL parses");
    url.query_pairs_mut().append_pair("alias", &a.alias);
    if let Some(email) = &a.email {
        url.query_pairs_mut().append_pair("login_hint", email);
    }
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

fn last_sync(s: &SyncState) -> Option<DateTime<Utc>> {
    match (s.last_incremental_sync_at, s.last_full_sync_at) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn ago(at: DateTime<Utc>) -> String {
    let secs = (Utc::now() - at).num_seconds();
    match secs {
        s if s < 0 => format!("in {}", human(Duration::from_secs(s.unsigned_abs()))),
        s if s < 5 => "just now".into(),
        s => format!("{} ago", human(Duration::from_secs(s.unsigned_abs()))),
    }
}

fn until(at: DateTime<Utc>) -> String {
    let secs = (at - Utc::now()).num_seconds();
    if secs <= 0 {
        "expired".into()
    } else {
        format!("in {}", human(Duration::from_secs(secs.unsigned_abs())))
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn time(at: DateTime<Utc>, text: String) -> Markup {
    html! { time datetime=(at.to_rfc3339()) title=(stamp(at)) { (text) } }
}

pub(crate) fn layout(title: &str, page: Option<&Page>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · MCSS admin" }
                link rel="stylesheet" href="/admin/static/style.css";
            }
            body {
                header.top {
                    a.brand href="/admin" { "MCSS" }
                    @if let Some(page) = page {
                        nav {
                            a href="/admin" { "Overview" }
                            a href="/admin/activity" { "Activity" }
                            a href="/admin/live" { "Live" }
                            a href="/admin/connect" { "Connect an account" }
                        }
                        form.logout method="post" action="/admin/logout" {
                            input type="hidden" name="csrf" value=(page.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    @if let Some(flash) = page.and_then(|p| p.flash.as_deref()) {
                        p.flash role="status" { (flash) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page with one message and a way on.
pub(crate) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let body = html! {
        h1 { (title) }
        p.message { (text) }
        @if let Some((href, label)) = link {
            p { a.button href=(href) { (label) } }
        }
    };
    (status, layout(title, None, body)).into_response()
}

pub(crate) fn login(nonce: &str, problem: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in" }
                @if let Some(problem) = problem {
                    p.error role="alert" { (problem) }
                }
                form method="post" action="/admin/login" {
                    input type="hidden" name="csrf" value=(nonce);
                    label for="password" { "Admin password" }
                    input #password type="password" name="password" autocomplete="current-password" required autofocus;
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

fn post_button(page: &Page, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(page.csrf);
            button class=(class) type="submit" { (label) }
        }
    }
}

fn advice_markup(page: &Page, row: &AccountRow) -> Markup {
    let advice = advice(row);
    html! {
        span class={ "status " (advice.class) } { (row.account.status.as_str()) }
        " "
        span.advice { (advice.text) }
        @if let Some((target, label, is_post)) = &advice.action {
            " "
            @if *is_post {
                (post_button(page, target, label, "small"))
            } @else {
                a.button.small href=(target) { (label) }
            }
        }
    }
}

pub(crate) fn overview(page: &Page, rows: &[AccountRow], demo_calendars: &[String]) -> Markup {
    layout(
        "Overview",
        Some(page),
        html! {
            h1 { "Accounts" }
            @if rows.is_empty() {
                p.empty { "No calendar is connected yet. " a href="/admin/connect" { "Connect an account" } " to start." }
            } @else {
                table.accounts {
                    thead { tr {
                        th { "Account" } th { "Status" } th { "Last sync" } th { "Push channel" }
                        th.num { "Pending" } th.num { "Blocks here" } th { "Last error" }
                    } }
                    tbody {
                        @for row in rows {
                            @let a = &row.account;
                            tr data-alias=(a.alias) data-status=(a.status.as_str()) {
                                td {
                                    a.alias href={ "/admin/accounts/" (a.id) } { (a.alias) }
                                    br;
                                    small.muted { (a.email.as_deref().unwrap_or(a.calendar_id.as_str())) }
                                }
                                td.state { (advice_markup(page, row)) }
                                td {
                                    @match row.sync.as_ref().and_then(|s| last_sync(s).map(|t| (t, s))) {
                                        Some((at, s)) => {
                                            (time(at, ago(at)))
                                            @if let Some(result) = &s.last_result { br; small.muted { (result) } }
                                        }
                                        None => span.muted { "not yet" },
                                    }
                                }
                                td {
                                    @match row.channel_expires {
                                        Some(at) => { "expires " (time(at, until(at))) },
                                        None => span.muted { "none (polling)" },
                                    }
                                }
                                td.num.pending { (row.pending) }
                                td.num.blocks data-blocks=(row.blocks) { (row.blocks) }
                                td.error {
                                    @match row.sync.as_ref().and_then(|s| s.last_error.as_deref()) {
                                        Some(e) => (e),
                                        None => span.muted { "—" },
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if page.demo {
                (demo_panel(page, demo_calendars))
            }
        },
    )
}

fn demo_panel(page: &Page, calendars: &[String]) -> Markup {
    html! {
        section.card.demo #demo {
            h2 { "Demo: make something happen" }
            p.muted { "These buttons act as the calendar's owner would, through the emulated Google API. Blocks appear on the other connected calendars within seconds; reload to see the counts change." }
            form method="post" action="/admin/demo" {
                input type="hidden" name="csrf" value=(page.csrf);
                label for="demo-calendar" { "On calendar" }
                select #demo-calendar name="calendar" {
                    @for c in calendars { option value=(c) { (c) } }
                }
                div.buttons {
                    @for action in super::DemoAction::ALL {
                        button type="submit" name="action" value=(action.as_str()) { (action.label()) }
                    }
                }
            }
        }
    }
}

pub(crate) fn account(page: &Page, row: &AccountRow, log: &[LogEntry]) -> Markup {
    let a = &row.account;
    let id = a.id;
    let is_paused = a.status == AccountStatus::Paused || a.status == AccountStatus::Degraded;
    layout(
        &a.alias,
        Some(page),
        html! {
            p.crumbs { a href="/admin" { "Overview" } " › " (a.alias) }
            h1 { (a.alias) }
            section.card {
                p.state data-status=(a.status.as_str()) { (advice_markup(page, row)) }
                dl.facts {
                    dt { "Calendar" } dd { code { (a.calendar_id) } }
                    dt { "E-mail" } dd { (a.email.as_deref().unwrap_or("—")) }
                    dt { "Time zone" } dd { (a.time_zone.as_deref().unwrap_or("—")) }
                    dt { "Connected" } dd { (time(a.created_at, stamp(a.created_at))) }
                    dt { "Last sync" } dd {
                        @match row.sync.as_ref().and_then(last_sync) {
                            Some(at) => (time(at, ago(at))),
                            None => "not yet",
                        }
                    }
                    dt { "Last result" } dd { (row.sync.as_ref().and_then(|s| s.last_result.as_deref()).unwrap_or("—")) }
                    dt { "Last error" } dd.error { (row.sync.as_ref().and_then(|s| s.last_error.as_deref()).unwrap_or("—")) }
                    dt { "Push channel" } dd {
                        @match row.channel_expires {
                            Some(at) => { "expires " (time(at, until(at))) },
                            None => "none (polling)",
                        }
                    }
                    dt { "Pending writes" } dd.pending { (row.pending) }
                    dt { "Blocks on this calendar" } dd.blocks { (row.blocks) }
                    dt { "Writes that gave up" } dd { (row.failed) }
                }
            }
            section.card.actions {
                h2 { "Actions" }
                div.buttons {
                    (post_button(page, &format!("/admin/accounts/{id}/sync"), "Sync now", ""))
                    (post_button(page, &format!("/admin/accounts/{id}/resync"), "Full resync", ""))
                    @if row.sync.as_ref().is_some_and(|s| s.mass_delete_hold) {
                        (post_button(page, &format!("/admin/accounts/{id}/confirm-deletions"), "Confirm held deletions", "danger"))
                    }
                    @if is_paused {
                        (post_button(page, &format!("/admin/accounts/{id}/resume"), "Resume", "primary"))
                    } @else {
                        (post_button(page, &format!("/admin/accounts/{id}/pause"), "Pause", ""))
                    }
                    a.button href=(reconnect_href(a)) { "Reconnect" }
                }
                form.remove method="post" action={ "/admin/accounts/" (id) "/remove" } {
                    input type="hidden" name="csrf" value=(page.csrf);
                    label { input type="checkbox" name="purge" value="1"; " also delete every block on this account's own calendar" }
                    button.danger type="submit" { "Remove account" }
                }
                p.muted { "Removing retracts this account's blocks from every other calendar and forgets its token." }
            }
            section.card {
                h2 { "Recent sync log" }
                (log_table(log, false))
                p { a href={ "/admin/activity?account=" (id) } { "All activity of " (a.alias) " ›" } }
            }
        },
    )
}

fn log_table(entries: &[LogEntry], with_account: bool) -> Markup {
    html! {
        @if entries.is_empty() {
            p.empty { "Nothing logged yet." }
        } @else {
            table.log {
                thead { tr {
                    th { "When" }
                    @if with_account { th { "Account" } }
                    th { "What" } th { "Result" } th.num { "Count" } th.num { "Took" } th { "Detail" }
                } }
                tbody {
                    @for e in entries {
                        tr data-kind=(e.kind) data-result=(e.result.as_str()) {
                            td { (time(e.at, stamp(e.at))) }
                            @if with_account {
                                td { @match e.account_id {
                                    Some(id) => a href={ "/admin/accounts/" (id) } { "#" (id) },
                                    None => span.muted { "—" },
                                } }
                            }
                            td { (kind_words(&e.kind)) }
                            td { span class={ "status " (result_class(e.result)) } { (e.result.as_str()) } }
                            td.num { (e.count.map(|c| c.to_string()).unwrap_or_default()) }
                            td.num { (e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default()) }
                            td.detail { (e.detail) }
                        }
                    }
                }
            }
        }
    }
}

fn result_class(r: LogResult) -> &'static str {
    match r {
        LogResult::Ok => "ok",
        LogResult::Error => "bad",
        LogResult::Skipped => "warn",
    }
}

/// Every log kind the activity filter offers.
pub(crate) const LOG_KINDS: &[&str] = &[
    log_kind::FULL_SYNC,
    log_kind::INCREMENTAL_SYNC,
    log_kind::BLOCK_INSERT,
    log_kind::BLOCK_PATCH,
    log_kind::BLOCK_DELETE,
    log_kind::BLOCK_RESTORE,
    log_kind::BLOCK_EXCLUDED,
    log_kind::ACCOUNT_ADDED,
    log_kind::ACCOUNT_REMOVED,
    log_kind::ACCOUNT_STATUS,
    log_kind::REAUTH_NEEDED,
    log_kind::CHANNEL_CREATED,
    log_kind::CHANNEL_STOPPED,
    log_kind::RECONCILE,
    log_kind::MASS_DELETE_HOLD,
    log_kind::PURGE,
];

fn kind_words(kind: &str) -> String {
    kind.replace('_', " ")
}

pub(crate) struct ActivityFilter {
    pub account: Option<AccountId>,
    pub kind: Option<String>,
    pub result: Option<LogResult>,
    pub page: u64,
    pub pages: u64,
    pub total: u64,
}

impl ActivityFilter {
    fn href(&self, page: u64) -> String {
        let mut url = url::Url::parse("http://x/admin/activity").expect("a fixed URL parses");
        {
            let mut q = url.query_pairs_mut();
            if let Some(a) = self.account {
                q.append_pair("account", &a.to_string());
            }
            if let Some(k) = &self.kind {
                q.append_pair("kind", k);
            }
            if let Some(r) = self.result {
                q.append_pair("result", r.as_str());
            }
            q.append_pair("page", &page.to_string());
        }
        format!("{}?{}", url.path(), url.query().unwrap_or_default())
    }
}

pub(crate) fn activity(
    page: &Page,
    accounts: &[Account],
    entries: &[LogEntry],
    filter: &ActivityFilter,
) -> Markup {
    layout(
        "Activity",
        Some(page),
        html! {
            h1 { "Activity" }
            form.filters method="get" action="/admin/activity" {
                label { "Account "
                    select name="account" {
                        option value="" { "all" }
                        @for a in accounts {
                            option value=(a.id) selected[filter.account == Some(a.id)] { (a.alias) }
                        }
                    }
                }
                label { "What "
                    select name="kind" {
                        option value="" { "all" }
                        @for k in LOG_KINDS {
                            option value=(k) selected[filter.kind.as_deref() == Some(*k)] { (kind_words(k)) }
                        }
                    }
                }
                label { "Result "
                    select name="result" {
                        option value="" { "all" }
                        @for r in LogResult::ALL {
                            option value=(r.as_str()) selected[filter.result == Some(*r)] { (r.as_str()) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            p.muted { (filter.total) " entries · page " (filter.page) " of " (filter.pages) }
            (log_table(entries, true))
            nav.pager {
                @if filter.page > 1 { a.button href=(filter.href(filter.page - 1)) { "‹ Newer" } }
                @if filter.page < filter.pages { a.button href=(filter.href(filter.page + 1)) { "Older ›" } }
            }
        },
    )
}

pub(crate) fn live(page: &Page) -> Markup {
    layout(
        "Live",
        Some(page),
        html! {
            h1 { "Live" }
            p.muted { "Refreshes every 2 seconds. Latency is measured from a push notification (or poll) to the last block write it caused." }
            section.grid {
                div.card.metric { h2 { "Pending writes" } p.big #pending-total { "…" } }
                div.card.metric { h2 { "Latency p50" } p.big #latency-p50 { "…" } }
                div.card.metric { h2 { "Latency p95" } p.big #latency-p95 { "…" } }
                div.card.metric { h2 { "Samples" } p.big #latency-count { "…" } }
            }
            section.card {
                h2 { "Queue depth by calendar" }
                table.live { thead { tr { th { "Calendar" } th.num { "Pending" } } } tbody #queue {} }
            }
            section.card {
                h2 { "Recent propagations" }
                table.live { thead { tr { th { "When" } th { "Calendar" } th.num { "Latency" } th.num { "Writes" } } } tbody #recent {} }
            }
            p.error #live-error hidden { "The live data could not be loaded; is the service still running?" }
            script src="/admin/static/live.js" {}
        },
    )
}

/// The JSON of `/admin/api/live`.
#[derive(Debug, Serialize)]
pub(crate) struct LiveSnapshot {
    pub pending_total: u64,
    pub queue: Vec<QueueDepth>,
    pub latency: LatencySummary,
}

#[derive(Debug, Serialize)]
pub(crate) struct QueueDepth {
    pub account: i64,
    pub alias: String,
    pub pending: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct LatencySummary {
    pub samples: usize,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub max_ms: Option<u64>,
    pub recent: Vec<LatencyPoint>,
}

#[derive(Debug, Serialize)]
pub(crate) struct LatencyPoint {
    pub at: DateTime<Utc>,
    pub alias: String,
    pub ms: u64,
    pub writes: u32,
}

pub(crate) async fn live_snapshot(state: &AppState) -> Result<LiveSnapshot, StoreError> {
    let (accounts, depths) =
        tokio::try_join!(state.store.list_accounts(), state.store.queue_depths())?;
    let alias = |id: AccountId| {
        accounts
            .iter()
            .find(|a| a.id == id)
            .map_or_else(|| format!("#{id}"), |a| a.alias.clone())
    };
    let queue: Vec<QueueDepth> = accounts
        .iter()
        .map(|a| QueueDepth {
            account: a.id.get(),
            alias: a.alias.clone(),
            pending: depths
                .iter()
                .find(|(id, _)| *id == a.id)
                .map_or(0, |(_, d)| *d),
        })
        .collect();
    let samples = control(state).latency_samples();
    let mut ms: Vec<u64> = samples
        .iter()
        .map(|s| u64::try_from(s.latency.as_millis()).unwrap_or(u64::MAX))
        .collect();
    ms.sort_unstable();
    let pct = |p: f64| -> Option<u64> {
        if ms.is_empty() {
            return None;
        }
        let rank = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
        Some(ms[rank - 1])
    };
    let recent = samples
        .iter()
        .rev()
        .take(20)
        .map(|s| LatencyPoint {
            at: s.at,
            alias: alias(s.account),
            ms: u64::try_from(s.latency.as_millis()).unwrap_or(u64::MAX),
            writes: s.writes,
        })
        .collect();
    Ok(LiveSnapshot {
        pending_total: depths.iter().map(|(_, d)| d).sum(),
        queue,
        latency: LatencySummary {
            samples: ms.len(),
            p50_ms: pct(0.5),
            p95_ms: pct(0.95),
            max_ms: ms.last().copied(),
            recent,
        },
    })
}

pub(crate) fn connect(page: &Page, alias: Option<&str>, oauth_ready: bool) -> Markup {
    layout(
        "Connect an account",
        Some(page),
        html! {
            h1 { "Connect an account" }
            section.card.narrow {
                @if !oauth_ready {
                    p.error { "Connecting through Google needs GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI (see docs/operations.md)." }
                }
                p { "You will be sent to Google to allow access to the calendar; Google then sends you back here. Connecting an alias that already exists replaces its token (a reconnect)." }
                form method="get" action="/auth/google/start" {
                    label for="alias" { "Name on the dashboard and in block titles" }
                    input #alias name="alias" required maxlength="64" placeholder="Calendar 06" value=(alias.unwrap_or(""));
                    label for="login_hint" { "Google account e-mail (optional)" }
                    input #login_hint name="login_hint" type="email" placeholder="name@example.com";
                    button.primary type="submit" { "Continue to Google" }
                }
            }
        },
    )
}

/// The page the OAuth callback shows on success: it moves on by itself (a same-site
/// navigation, so the SameSite=Strict session cookie is sent again).
pub(crate) fn connected(account: &Account, reconnected: bool) -> Markup {
    let href = format!("/admin/accounts/{}", account.id);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content={ "0; url=" (href) };
                title { "Connected · MCSS admin" }
                link rel="stylesheet" href="/admin/static/style.css";
            }
            body { main {
                h1 { @if reconnected { "Reconnected " } @else { "Connected " } (account.alias) }
                p { (account.email.as_deref().unwrap_or(account.calendar_id.as_str())) " is now syncing." }
                p { a.button href=(href) { "Open the account page" } }
            } }
        }
    }
}
