//! The overview (one row per calendar, under a first line that says whether everything is in
//! step), the account page, and the confirmation step before remove, purge, full resync and
//! confirming held deletions.
//!
//! Every status shown is [`status::status`] of the facts read here: the account row, its
//! sync state, its push channel, how its writes stand ([`TargetWrites`]), its blocks and the
//! newest error its log holds. Both pages refresh their status part by themselves.

use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::activity::{log_table, BlockLine, BlockNotes};
use super::pages::{ago, layout, live_region, post_button, time, until, Calendars, Page};
use super::status::{self, google_reason, Action, Facts, Status};
use crate::domain::AccountId;
use crate::http::AppState;
use crate::store::views::TargetWrites;
use crate::store::{
    Account, AccountStatus, BlockState, LogEntry, LogQuery, LogResult, StoreError, SyncState,
};

/// One calendar with what the overview and its page show about it.
pub(crate) struct AccountRow {
    pub account: Account,
    pub sync: Option<SyncState>,
    pub channel_expires: Option<DateTime<Utc>>,
    pub writes: Option<TargetWrites>,
    /// Blocks of other calendars that Google holds on this one.
    pub blocks: u64,
    /// The newest error in this calendar's log.
    pub last_problem: Option<LogEntry>,
    pub status: Status,
}

pub(crate) async fn load_rows(state: &AppState) -> Result<Vec<AccountRow>, StoreError> {
    let (accounts, health) =
        tokio::try_join!(state.store.list_accounts(), state.store.write_health())?;
    let mut rows = Vec::with_capacity(accounts.len());
    for account in accounts {
        let writes = health.iter().find(|h| h.target == account.id).cloned();
        rows.push(row_of(state, account, writes).await?);
    }
    Ok(rows)
}

pub(crate) async fn load_row(
    state: &AppState,
    id: AccountId,
) -> Result<Option<AccountRow>, StoreError> {
    let account = match state.store.account(id).await {
        Ok(account) => account,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let writes = state
        .store
        .write_health()
        .await?
        .into_iter()
        .find(|h| h.target == id);
    Ok(Some(row_of(state, account, writes).await?))
}

async fn row_of(
    state: &AppState,
    account: Account,
    writes: Option<TargetWrites>,
) -> Result<AccountRow, StoreError> {
    let id = account.id;
    let store = &state.store;
    let sync = match store.sync_state(id).await {
        Ok(s) => Some(s),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let problems = LogQuery {
        account_id: Some(id),
        result: Some(LogResult::Error),
        limit: 1,
        ..LogQuery::default()
    };
    let (channel, blocks, problem) = tokio::try_join!(
        store.current_channel(id),
        store.block_count(Some(id), BlockState::Applied),
        store.recent_log(&problems),
    )?;
    let last_problem = problem.into_iter().next();
    let status = status::status(&Facts {
        account: &account,
        sync: sync.as_ref(),
        writes: writes.as_ref(),
        last_problem: last_problem.as_ref(),
        reconnect_href: reconnect_href(&account),
        now: Utc::now(),
    });
    Ok(AccountRow {
        channel_expires: channel.map(|c| c.expires_at),
        account,
        sync,
        writes,
        blocks,
        last_problem,
        status,
    })
}

pub(crate) fn reconnect_href(a: &Account) -> String {
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

/// A log entry in a few words, for "last problem".
fn problem_words(entry: &LogEntry, calendars: &Calendars) -> String {
    match BlockLine::parse(&entry.detail) {
        Some(line) => format!(
            "a block write for {}'s event failed ({})",
            calendars.alias(line.source),
            line.result
        ),
        None => google_reason(&entry.detail),
    }
}

fn action_markup(page: &Page, action: &Action) -> Markup {
    match action {
        Action::Post { href, label } => post_button(page, href, label, "small"),
        Action::Link { href, label } => html! { a.button.small href=(href) { (label) } },
    }
}

/// The status word, its sentence and the next action.
fn status_markup(page: &Page, status: &Status) -> Markup {
    html! {
        span class={ "status " (status.health.class()) } { (status.health.word()) }
        " "
        span.advice { (status.sentence) }
        @if let Some(action) = &status.action {
            " " (action_markup(page, action))
        }
    }
}

/// The overview's first line: in step, or which calendars need what.
fn summary(page: &Page, rows: &[AccountRow]) -> Markup {
    let attention: Vec<&AccountRow> = rows.iter().filter(|r| !r.status.health.in_step()).collect();
    let starting: Vec<&str> = rows
        .iter()
        .filter(|r| r.status.health == status::Health::Starting)
        .map(|r| r.account.alias.as_str())
        .collect();
    html! {
        @if attention.is_empty() {
            p #summary.summary.ok data-state="in-step" {
                @if rows.len() == 1 { "Everything is in step: the calendar is synced and nothing is waiting." }
                @else { "Everything is in step: all " (rows.len()) " calendars are synced and nothing is waiting." }
                @if !starting.is_empty() { " First full sync under way: " (starting.join(", ")) "." }
            }
        } @else {
            div #summary.summary.bad data-state="attention" {
                p { strong { (attention.len()) " of " (rows.len()) " calendars need attention:" } }
                ul {
                    @for row in &attention {
                        li {
                            a href={ "/admin/accounts/" (row.account.id) } { (row.account.alias) } ": "
                            (status_markup(page, &row.status))
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn overview(
    page: &Page,
    rows: &[AccountRow],
    calendars: &Calendars,
    demo_panel: Option<Markup>,
) -> Markup {
    layout(
        "Overview",
        Some(page),
        html! {
            h1 { "Calendars" }
            @if rows.is_empty() {
                p.empty { "No calendar is connected yet. " a href="/admin/connect" { "Connect an account" } " to start." }
            } @else {
                (live_region("overview", html! {
                    (summary(page, rows))
                    (accounts_table(page, rows, calendars))
                }))
            }
            @if let Some(panel) = demo_panel { (panel) }
        },
    )
}

fn accounts_table(page: &Page, rows: &[AccountRow], calendars: &Calendars) -> Markup {
    html! {
        table.accounts {
            thead { tr {
                th { "Calendar" } th { "Status" } th { "Last sync" } th { "Push channel" }
                th.num { "Waiting" } th.num { "Blocks here" } th { "Last problem" }
            } }
            tbody {
                @for row in rows {
                    @let a = &row.account;
                    tr data-alias=(a.alias) data-status=(a.status.as_str()) data-health=(row.status.health.slug()) {
                        td {
                            (super::week::swatch(calendars.color(a.id)))
                            a.alias href={ "/admin/accounts/" (a.id) } { (a.alias) }
                            br;
                            small.muted { (a.email.as_deref().unwrap_or(a.calendar_id.as_str())) }
                        }
                        td.state { (status_markup(page, &row.status)) }
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
                        td.num.pending { (row.writes.as_ref().map_or(0, |w| w.pending)) }
                        td.num.blocks data-blocks=(row.blocks) { (row.blocks) }
                        td.error {
                            @match &row.last_problem {
                                Some(p) => { (time(p.at, ago(p.at))) ": " (problem_words(p, calendars)) },
                                None => span.muted { "none" },
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn account(
    page: &Page,
    row: &AccountRow,
    calendars: &Calendars,
    log: &[LogEntry],
    notes: &BlockNotes,
) -> Markup {
    let a = &row.account;
    layout(
        &a.alias,
        Some(page),
        html! {
            p.crumbs { a href="/admin" { "Overview" } " › " (a.alias) }
            h1 { (a.alias) }
            (live_region("account", html! {
                section.card {
                    p.state data-status=(a.status.as_str()) data-health=(row.status.health.slug()) {
                        (status_markup(page, &row.status))
                    }
                    (account_facts(row))
                }
            }))
            (account_actions(page, row))
            section.card {
                h2 { "Recent sync log" }
                (log_table(log, calendars, notes, false))
                p { a href={ "/admin/activity?account=" (a.id) } { "All activity of " (a.alias) " ›" } }
            }
        },
    )
}

/// The account page's facts: the calendar, its sync, its channel and its writes.
fn account_facts(row: &AccountRow) -> Markup {
    let a = &row.account;
    let writes = row.writes.clone().unwrap_or_default();
    html! {
        dl.facts {
            dt { "Calendar" } dd { code { (a.calendar_id) } }
            dt { "E-mail" } dd { (a.email.as_deref().unwrap_or("—")) }
            dt { "Time zone" } dd { (a.time_zone.as_deref().unwrap_or("—")) }
            dt { "Connected" } dd { (time(a.created_at, super::pages::stamp(a.created_at))) }
            dt { "Last sync" } dd {
                @match row.sync.as_ref().and_then(|s| last_sync(s).map(|t| (t, s))) {
                    Some((at, s)) => { (time(at, ago(at))) @if let Some(r) = &s.last_result { ", " (r) } },
                    None => "not yet",
                }
            }
            dt { "Last error" } dd.last-error.error {
                @match &row.last_problem {
                    Some(p) => { (time(p.at, ago(p.at))) ": " (p.detail) },
                    None => span.muted { "none" },
                }
            }
            dt { "Push channel" } dd {
                @match row.channel_expires {
                    Some(at) => { "expires " (time(at, until(at))) },
                    None => "none (polling)",
                }
            }
            dt { "Writes waiting" } dd.pending { (writes.pending) }
            dt { "Writes failing" } dd {
                (writes.retrying)
                @if let Some(e) = &writes.last_error { " — last: " (google_reason(e)) }
            }
            dt { "Writes that gave up" } dd {
                (writes.gave_up)
                @if let Some(e) = &writes.gave_up_error { " — " (google_reason(e)) }
            }
            dt { "Blocks on this calendar" } dd.blocks { (row.blocks) }
        }
    }
}

/// The account page's buttons and the remove form.
fn account_actions(page: &Page, row: &AccountRow) -> Markup {
    let a = &row.account;
    let id = a.id;
    let stopped = matches!(a.status, AccountStatus::Paused | AccountStatus::Degraded);
    html! {
        section.card.actions {
            h2 { "Actions" }
            div.buttons {
                (post_button(page, &format!("/admin/accounts/{id}/sync"), "Sync now", ""))
                (post_button(page, &format!("/admin/accounts/{id}/resync"), "Full resync…", ""))
                @if row.sync.as_ref().is_some_and(|s| s.mass_delete_hold) {
                    (post_button(page, &format!("/admin/accounts/{id}/confirm-deletions"), "Confirm held deletions…", "danger"))
                }
                @if stopped {
                    (post_button(page, &format!("/admin/accounts/{id}/resume"), "Resume", "primary"))
                } @else {
                    (post_button(page, &format!("/admin/accounts/{id}/pause"), "Pause", ""))
                }
                a.button href=(reconnect_href(a)) { "Reconnect" }
                a.button href={ "/admin/events?account=" (id) } { "Its events" }
            }
            form.remove method="post" action={ "/admin/accounts/" (id) "/remove" } {
                input type="hidden" name="csrf" value=(page.csrf);
                label { input type="checkbox" name="purge" value="1"; " also delete every block on this account's own calendar" }
                button.danger type="submit" { "Remove account…" }
            }
            p.muted { "Remove, full resync and confirming deletions each ask once more before anything happens." }
        }
    }
}

/// The actions that ask for a confirmation first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirmable {
    Remove,
    Resync,
    ConfirmDeletions,
}

impl Confirmable {
    pub fn of(action: &str) -> Option<Self> {
        match action {
            "remove" => Some(Self::Remove),
            "resync" => Some(Self::Resync),
            "confirm-deletions" => Some(Self::ConfirmDeletions),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Remove => "remove",
            Self::Resync => "resync",
            Self::ConfirmDeletions => "confirm-deletions",
        }
    }
}

/// The page that says what an action will do and asks once more.
pub(crate) fn confirm(page: &Page, account: &Account, action: Confirmable, purge: bool) -> Markup {
    let alias = &account.alias;
    let (title, paragraphs, button): (String, Vec<String>, String) = match action {
        Confirmable::Remove => {
            let mut text = vec![
                format!("This deletes the blocks that {alias}'s events put on every other calendar and forgets {alias}'s token. The account's history in the log stays."),
                "It cannot be undone: connecting the calendar again starts from scratch.".to_owned(),
            ];
            if purge {
                text.push(format!("Purge is ticked: every block on {alias}'s own calendar (the blocks of the other calendars' events) is deleted too."));
            } else {
                text.push(format!("The blocks on {alias}'s own calendar stay where they are (purge is not ticked)."));
            }
            (format!("Remove {alias}?"), text, format!("Remove {alias}"))
        }
        Confirmable::Resync => (
            format!("Full resync of {alias}?"),
            vec![
                format!("This forgets {alias}'s sync token and lists the whole calendar again. Nothing is deleted first: blocks are planned again from what the listing finds, and only what differs is written."),
                "On a large calendar it takes a while and uses Google quota.".to_owned(),
            ],
            "Resync everything".to_owned(),
        ),
        Confirmable::ConfirmDeletions => (
            format!("Delete the held blocks of {alias}?"),
            vec![
                format!("A full listing of {alias} no longer found many events that were known, so their blocks were kept. Confirming lets the next full listing delete the blocks of every event that is gone, however many."),
                "Check the calendar first: if the events are only hidden (a sharing or permission change), do not confirm.".to_owned(),
            ],
            "Delete their blocks".to_owned(),
        ),
    };
    let href = format!("/admin/accounts/{}", account.id);
    layout(
        &title,
        Some(page),
        html! {
            p.crumbs { a href="/admin" { "Overview" } " › " a href=(href) { (alias) } " › confirm" }
            h1 { (title) }
            section.card.narrow.confirm-card {
                @for text in &paragraphs { p { (text) } }
                form.confirm method="post" action={ (href) "/" (action.path()) } {
                    input type="hidden" name="csrf" value=(page.csrf);
                    input type="hidden" name="confirm" value="yes";
                    @if purge { input type="hidden" name="purge" value="1"; }
                    button.danger type="submit" { (button) }
                    " "
                    a.button href=(href) { "Cancel" }
                }
            }
        },
    )
}
