//! Picking calendars after a consent: a Google account with several calendars (its primary
//! one and secondary ones it owns or sees) may connect several of them, each under its own
//! name, through the one refresh token the consent gave.
//!
//! Role: the OAuth callback ([`super::super::oauth`]) hands over the granted token when the
//! account sees more than one calendar ([`offer_calendars`]); the token waits in the store
//! ([`Picks`], `store::web_state`: sealed, for [`PICK_TTL`] at most) under a random id, so
//! the replica that answers the form need not be the one that got the callback. The
//! callback arrives without the session cookie (a cross-site navigation), so its page only
//! moves on to `GET /admin/connect/pick/{id}`, a same-site navigation where the session and
//! its CSRF token are known. That page lists the account's calendars (`calendarList.list`),
//! marks those already connected, and POSTs the chosen ones with a name each; every name and
//! the group are checked before anything is connected. Each chosen calendar is connected through
//! `ops::connect_account` with the account's e-mail, so the store keeps ONE credential for
//! the Google account (`store::accounts::save_credential`), then started through `Control`.
//!
//! The refresh token is never shown, logged or put in a page; the pick id alone names it.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup, DOCTYPE};
use secrecy::SecretString;

use super::pages::{self, Page};
use super::{control, internal, Admin, Runtime};
use crate::domain::CalendarId;
use crate::google::{CalendarListEntry, TokenSource};
use crate::http::AppState;
use crate::ops::{self, ConnectRequest, MAX_ALIAS_LEN};
use crate::store::web_state::{secret_hash, PendingPick};
use crate::store::{Account, Store, StoreError};

/// How long a granted token waits for the operator's pick.
pub(crate) const PICK_TTL: Duration = Duration::from_secs(600);
/// Picks kept waiting at most; older ones are dropped first.
const MAX_PICKS: u64 = 50;
/// The bound on listing the account's calendars during the callback.
const LIST_TIMEOUT: Duration = Duration::from_secs(15);

/// A consent whose calendars are being picked, taken out of the store to be connected.
struct Pick {
    refresh_token: SecretString,
    /// The Google account's e-mail: the primary calendar's id, or the id token's.
    email: Option<String>,
}

/// Picks waiting for the operator, in the store by the hash of their id.
pub(crate) struct Picks {
    store: Store,
}

impl Picks {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Keeps the granted token and the account's calendars; returns the pick's new id.
    async fn insert(
        &self,
        refresh_token: &SecretString,
        email: Option<String>,
        alias: &str,
        calendars: &[CalendarListEntry],
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let calendars = serde_json::to_string(calendars)
            .map_err(|e| StoreError::Corrupt(format!("a calendar list as JSON: {e}")))?;
        let pick = PendingPick {
            email,
            alias: alias.to_owned(),
            calendars,
        };
        self.store
            .put_pick(&secret_hash(&id), refresh_token, &pick, PICK_TTL, MAX_PICKS)
            .await?;
        Ok(id)
    }

    /// What the page shows of a live pick (no token): the asked name and the calendars.
    async fn view(&self, id: &str) -> Result<Option<(String, Vec<CalendarListEntry>)>, StoreError> {
        let Some(pick) = self.store.pick(&secret_hash(id)).await? else {
            return Ok(None);
        };
        let calendars = calendars_of(&pick)?;
        Ok(Some((pick.alias, calendars)))
    }

    /// Takes the pick out: it connects once.
    async fn take(&self, id: &str) -> Result<Option<Pick>, StoreError> {
        let taken = self.store.take_pick(&secret_hash(id)).await?;
        Ok(taken.map(|(refresh_token, pick)| Pick {
            refresh_token,
            email: pick.email,
        }))
    }
}

fn calendars_of(pick: &PendingPick) -> Result<Vec<CalendarListEntry>, StoreError> {
    serde_json::from_str(&pick.calendars)
        .map_err(|e| StoreError::Corrupt(format!("a pick's calendar list: {e}")))
}

/// Called by the OAuth callback for a new name: when the account sees more than one
/// calendar, keeps the token for a pick and answers with the page that moves on to the
/// picker. `None`: one calendar only (or the list cannot be read) — the callback connects
/// the primary calendar as before.
pub(crate) async fn offer_calendars(
    state: &AppState,
    runtime: &Runtime,
    alias: &str,
    refresh_token: &SecretString,
    email: Option<String>,
) -> Option<Response> {
    let services = control(state).services();
    let client = services.google.clone().account(TokenSource::new(
        services.oauth.clone(),
        refresh_token.clone(),
    ));
    let calendars = match tokio::time::timeout(LIST_TIMEOUT, client.calendar_list()).await {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot list the account's calendars; connecting its primary one");
            return None;
        }
        Err(_) => {
            tracing::warn!("listing the account's calendars timed out; connecting its primary one");
            return None;
        }
    };
    let calendars: Vec<CalendarListEntry> = calendars.into_iter().filter(|c| !c.deleted).collect();
    if calendars.len() < 2 {
        return None;
    }
    let email = calendars
        .iter()
        .find(|c| c.primary && c.id.as_str().contains('@'))
        .map(|c| c.id.to_string())
        .or(email);
    let id = match runtime
        .picks
        .insert(refresh_token, email, alias, &calendars)
        .await
    {
        Ok(id) => id,
        // The consent is used up: the operator starts again, as the page says.
        Err(e) => return Some(internal(e)),
    };
    tracing::info!("consent granted for an account with several calendars; waiting for the pick");
    let mut response = moving_on(&format!("/admin/connect/pick/{id}")).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(response)
}

/// The callback's page: on to the picker, a same-site navigation that carries the session.
fn moving_on(href: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content={ "0; url=" (href) };
                title { "Choose calendars · MCSS admin" }
                link rel="stylesheet" href="/admin/static/style.css";
            }
            body { main {
                h1 { "Access granted" }
                p { "This Google account has several calendars. " a.button href=(href) { "Choose which to connect" } }
            } }
        }
    }
}

fn expired() -> Response {
    pages::message(
        StatusCode::NOT_FOUND,
        "This choice has expired",
        "A granted access waits 10 minutes for its calendars to be chosen, and can be used once. Nothing was connected. Start again.",
        Some(("/admin/connect", "Start again")),
    )
}

/// `GET /admin/connect/pick/{id}`
pub(super) async fn pick_page(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let (alias, calendars) = match admin.runtime.picks.view(&id).await {
        Ok(Some(pick)) => pick,
        Ok(None) => return expired(),
        Err(e) => return internal(e),
    };
    let connected = match state.store.list_accounts().await {
        Ok(list) => list,
        Err(e) => return internal(e),
    };
    let page = admin.page(&state).await;
    picker(&page, &id, &alias, &calendars, &connected).into_response()
}

fn connected_as<'a>(connected: &'a [Account], calendar: &CalendarId) -> Option<&'a Account> {
    connected.iter().find(|a| &a.calendar_id == calendar)
}

fn picker(
    page: &Page,
    id: &str,
    alias: &str,
    calendars: &[CalendarListEntry],
    connected: &[Account],
) -> Markup {
    // The asked name goes to the first calendar not connected yet (the primary one first).
    let first_free = calendars
        .iter()
        .position(|c| connected_as(connected, &c.id).is_none());
    pages::layout(
        "Choose calendars",
        Some(page),
        html! {
            h1 { "Choose calendars to connect" }
            p { "This Google account sees " (calendars.len()) " calendars. Tick each one to keep in step and give it a name for the dashboard and for block titles. They share the one access just granted." }
            form.card method="post" action={ "/admin/connect/pick/" (id) } {
                input type="hidden" name="csrf" value=(page.csrf);
                table.pick {
                    thead { tr { th { "Connect" } th { "Calendar" } th { "Name" } } }
                    tbody {
                        @for (i, cal) in calendars.iter().enumerate() {
                            @let title = cal.summary_override.as_deref().or(cal.summary.as_deref()).unwrap_or(cal.id.as_str());
                            tr data-calendar=(cal.id.as_str()) {
                                @match connected_as(connected, &cal.id) {
                                    Some(account) => {
                                        td { span.status.muted { "connected" } }
                                        td { (title) @if cal.primary { " " span.muted { "(primary)" } } br; span.small.muted { (cal.id.as_str()) } }
                                        td { "as " a href={ "/admin/accounts/" (account.id) } { (account.alias) } }
                                    }
                                    None => {
                                        td { input type="checkbox" name={ "pick_" (i) } value="1" id={ "pick_" (i) } checked[Some(i) == first_free]; }
                                        td { label for={ "pick_" (i) } { (title) } @if cal.primary { " " span.muted { "(primary)" } } br; span.small.muted { (cal.id.as_str()) } }
                                        td { input type="text" name={ "alias_" (i) } maxlength=(MAX_ALIAS_LEN) value=(if Some(i) == first_free { alias.to_owned() } else { title.chars().take(MAX_ALIAS_LEN).collect::<String>() }); }
                                    }
                                }
                            }
                        }
                    }
                }
                label for="group" { "Group of the calendars connected now (blocks never cross groups)" }
                input #group name="group" value=(crate::store::DEFAULT_GROUP) maxlength="64";
                p { button.primary type="submit" { "Connect the ticked calendars" } }
            }
        },
    )
}

/// One chosen calendar: its entry and its name.
struct Chosen<'a> {
    entry: &'a CalendarListEntry,
    alias: String,
}

/// Every ticked calendar with its checked name, or the first problem in one line.
fn chosen<'a>(
    form: &HashMap<String, String>,
    calendars: &'a [CalendarListEntry],
    connected: &[Account],
) -> Result<Vec<Chosen<'a>>, String> {
    let mut out: Vec<Chosen<'a>> = Vec::new();
    for (i, entry) in calendars.iter().enumerate() {
        if !form.contains_key(&format!("pick_{i}")) || connected_as(connected, &entry.id).is_some()
        {
            continue;
        }
        let raw = form.get(&format!("alias_{i}")).map_or("", String::as_str);
        let alias = super::super::oauth::check_alias(raw)
            .map_err(|problem| format!("name of {}: {problem}", entry.id))?;
        if out.iter().any(|c| c.alias == alias) {
            return Err(format!(
                "name {alias:?}: given to two calendars; each needs its own"
            ));
        }
        if let Some(taken) = connected.iter().find(|a| a.alias == alias) {
            return Err(format!(
                "name {alias:?}: already the name of {} (a connected calendar)",
                taken.calendar_id
            ));
        }
        out.push(Chosen { entry, alias });
    }
    if out.is_empty() {
        return Err("Tick at least one calendar that is not connected yet.".into());
    }
    Ok(out)
}

/// `POST /admin/connect/pick/{id}`: checks everything, then connects each chosen calendar.
pub(super) async fn pick_connect(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let form: HashMap<String, String> = form.into_iter().collect();
    if let Some(refused) = admin.refuse_bad_csrf(form.get("csrf").map_or("", String::as_str)) {
        return refused;
    }
    let back = format!("/admin/connect/pick/{id}");
    let calendars = match admin.runtime.picks.view(&id).await {
        Ok(Some((_, calendars))) => calendars,
        Ok(None) => return expired(),
        Err(e) => return internal(e),
    };
    let connected = match state.store.list_accounts().await {
        Ok(list) => list,
        Err(e) => return internal(e),
    };
    let group = match ops::validate_group(form.get("group").map_or("", String::as_str)) {
        Ok(group) => group,
        Err(e) => {
            admin.problem(format!("Nothing was connected. {e}")).await;
            return Redirect::to(&back).into_response();
        }
    };
    let picked = match chosen(&form, &calendars, &connected) {
        Ok(picked) => picked,
        Err(problem) => {
            admin
                .problem(format!("Nothing was connected. {problem}"))
                .await;
            return Redirect::to(&back).into_response();
        }
    };
    let pick = match admin.runtime.picks.take(&id).await {
        Ok(Some(pick)) => pick,
        Ok(None) => return expired(),
        Err(e) => return internal(e),
    };
    let mut done = Vec::new();
    for choice in &picked {
        match connect_one(&state, &pick, choice, &group).await {
            Ok(account) => done.push(account.alias),
            Err(problem) => {
                let so_far = if done.is_empty() {
                    "Nothing was connected.".to_owned()
                } else {
                    format!("Connected {} only.", done.join(", "))
                };
                admin
                    .problem(format!("{so_far} {}: {problem}", choice.alias))
                    .await;
                return Redirect::to("/admin").into_response();
            }
        }
    }
    admin
        .notice(format!(
            "Connected {} (group {group}); their blocks are being made.",
            done.join(", ")
        ))
        .await;
    Redirect::to("/admin").into_response()
}

async fn connect_one(
    state: &AppState,
    pick: &Pick,
    choice: &Chosen<'_>,
    group: &str,
) -> Result<Account, String> {
    let control = control(state);
    let services = control.services();
    let account = ops::connect_account(
        services,
        ConnectRequest {
            alias: choice.alias.clone(),
            refresh_token: pick.refresh_token.clone(),
            calendar_id: Some(choice.entry.id.clone()),
            email: pick.email.clone(),
            group: Some(group.to_owned()),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    services.forget_tokens(account.id);
    if let Err(e) = control.start_account(account.id).await {
        tracing::warn!(account = %account.id, error = %e, "connected, but its actors did not start");
    }
    tracing::info!(account = %account.id, alias = %account.alias, "calendar connected through the picker");
    Ok(account)
}
