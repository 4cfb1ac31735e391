//! The admin dashboard under `/admin`: server-rendered HTML (maud), no CDN — the stylesheet
//! and the one small script (`live.js`, which refreshes the live parts of a page) are
//! compiled into the binary. Every page works without JavaScript.
//!
//! Role: show every calendar honestly — a status word, a sentence, the next action
//! ([`status`]) — draw the week ([`week`]), trace any event to its blocks ([`trace`]), show
//! the activity and the live propagation, change a calendar's group, rules and links
//! ([`settings`]), and turn an operator's button press into one [`Control`] call, after a
//! confirmation step for remove, purge, full resync and confirming held deletions
//! ([`accounts::Confirmable`]). Collaborators: [`Control`] (sync now, full resync, pause,
//! resume, remove, latency samples, set group, rules and links), the
//! [`crate::store::Store`] (accounts, sync state, channels, the outbox and its views in
//! `store/views.rs`, the sync log), the planner's rules (`sync::mirror_decision`, to explain
//! a missing block), the OAuth onboarding in [`super::oauth`] (the Connect and Reconnect
//! buttons lead there; an account with several calendars comes back to [`connect`] to pick
//! them) and, in `mcss demo` only, the demo panel ([`DemoActions`], which `mcss demo`
//! implements).
//!
//! Layout: `pages` (layout, formatting), `status` (the honest status), `accounts` (overview,
//! account page, confirmations), `activity`, `live`, `calendar` + `model` (occurrences and
//! what the week and events pages read), `week`, `trace` (events list and trace),
//! `settings` (a calendar's group and rules, each group's links), `connect` (picking the
//! calendars of a Google account after its consent), `demo_panel`. Source event titles are
//! shown only with "show titles" ticked and are never logged.
//!
//! Security: sign-in with `ADMIN_PASSWORD` (constant-time compare, at most
//! [`AdminConfig::login_attempts_per_minute`] attempts per client per minute, then 429), a
//! server-side session named by a signed, HttpOnly, SameSite=Strict cookie (Secure when the
//! service is reached over HTTPS) that expires after [`AdminConfig::session_ttl`], and a
//! per-session CSRF token in every POST form. Without `ADMIN_PASSWORD` every admin route
//! answers 404 with a plain note (and `serve` logs that the pages are off).
//!
//! Lifecycle: one [`Runtime`] (sessions, login limiter, pending OAuth consents, calendars
//! being picked) is built with the router and lives as long as the server; sessions, login
//! limits and consents are kept in the database, so every replica serves every signed-in
//! request (the calendars being picked after a consent are this process's own).

mod accounts;
mod activity;
mod calendar;
mod connect;
mod demo_panel;
mod live;
mod model;
mod pages;
mod session;
mod settings;
mod status;
mod trace;
mod week;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use chrono::{NaiveDate, TimeDelta, Utc};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use super::AppState;
use crate::actors::control::{Control, ControlError};
use crate::config::Settings;
use crate::domain::{AccountId, BlockId, EventId};
use crate::store::{LogEntry, LogQuery, LogResult, StoreError};
use pages::{Calendars, Flash, Zone};

pub(crate) use connect::offer_calendars;
pub use demo_panel::{DemoAction, DemoActions};
pub(crate) use pages::message as pages_message;
pub(crate) use session::{same_secret, SessionInfo};

/// Admin page settings that are not environment variables: the demo panel and knobs tests
/// shorten. Built from [`Settings`] by `Application::build`; adjust it through
/// `Application::admin_config_mut` before serving.
#[derive(Clone)]
pub struct AdminConfig {
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// Login attempts accepted per client address per minute; more get 429.
    pub login_attempts_per_minute: u32,
    /// The demo panel's actions; `Some` only in `mcss demo`.
    pub demo: Option<Arc<dyn DemoActions>>,
}

impl AdminConfig {
    pub fn from_settings(_settings: &Settings) -> Self {
        Self {
            session_ttl: Duration::from_secs(12 * 3600),
            login_attempts_per_minute: 5,
            demo: None,
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("session_ttl", &self.session_ttl)
            .field("login_attempts_per_minute", &self.login_attempts_per_minute)
            .field("demo", &self.demo.is_some())
            .finish()
    }
}

/// The admin pages' state (kept in the store), shared by the admin and OAuth routers.
pub(crate) struct Runtime {
    pub enabled: bool,
    pub sessions: session::Sessions,
    pub limiter: session::LoginLimiter,
    pub consents: super::oauth::PendingConsents,
    /// Granted consents whose calendars the operator is choosing.
    pub picks: connect::Picks,
}

impl Runtime {
    pub fn new(state: &AppState) -> Arc<Self> {
        let settings = &state.settings;
        let https = settings
            .google
            .redirect_uri
            .as_ref()
            .or(settings.webhook_base_url.as_ref())
            .is_some_and(|u| u.scheme() == "https");
        Arc::new(Self {
            enabled: settings.admin_password.is_some(),
            sessions: session::Sessions::new(
                state.store.clone(),
                &state.cookie_key,
                state.admin.session_ttl,
                https,
            ),
            limiter: session::LoginLimiter::new(
                state.store.clone(),
                state.admin.login_attempts_per_minute,
            ),
            consents: super::oauth::PendingConsents::new(state.store.clone()),
            picks: connect::Picks::new(state.store.clone()),
        })
    }
}

/// The OAuth callback's success page (it moves on to the account page by itself, unless
/// the calendar kept another name than `asked`, which the page then says).
pub(crate) fn connected_page(
    account: &crate::store::Account,
    reconnected: bool,
    asked: &str,
) -> Response {
    let mut response = pages::connected(account, reconnected, asked).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The one handle the pages act through.
pub(crate) fn control(state: &AppState) -> &Control {
    &state.control
}

/// The admin routes; the [`Runtime`] travels as an extension.
pub(crate) fn routes(runtime: Arc<Runtime>) -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/", get(overview))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/accounts/{id}", get(account_page))
        .route("/admin/accounts/{id}/{action}", post(account_action))
        .route("/admin/activity", get(activity))
        .route("/admin/live", get(live_page))
        .route("/admin/api/live", get(live_json))
        .route("/admin/week", get(week_page))
        .route("/admin/events", get(events_page))
        .route("/admin/events/{account}/{event}", get(trace_page))
        .route("/admin/settings", get(settings::settings_index))
        .route(
            "/admin/settings/{id}",
            get(settings::settings_page).post(settings::save_settings),
        )
        .route(
            "/admin/links",
            get(settings::links_page).post(settings::set_link),
        )
        .route("/admin/connect", get(connect_page))
        .route(
            "/admin/connect/pick/{id}",
            get(connect::pick_page).post(connect::pick_connect),
        )
        .route("/admin/demo", post(demo_action))
        .route("/admin/static/style.css", get(stylesheet))
        .route("/admin/static/live.js", get(live_script))
        .route("/admin/{*rest}", get(unknown_page))
        .layer(axum::middleware::map_response(super::security::headers))
        .layer(Extension(runtime))
}

/// The plain 404 of a service whose admin pages are off.
pub(crate) fn disabled() -> Response {
    (
        StatusCode::NOT_FOUND,
        "the admin pages are off: set ADMIN_PASSWORD to turn them on\n",
    )
        .into_response()
}

/// A signed-in operator: the extractor every page but login uses. Without a live session a
/// page redirects to the login form (the JSON endpoint answers 401).
pub(crate) struct Admin {
    pub runtime: Arc<Runtime>,
    pub session: SessionInfo,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        let runtime = parts
            .extensions
            .get::<Arc<Runtime>>()
            .cloned()
            .ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
        if !runtime.enabled {
            return Err(disabled());
        }
        match runtime.sessions.current(&parts.headers).await {
            Some(session) => Ok(Admin { runtime, session }),
            None if parts.uri.path().starts_with("/admin/api/") => {
                Err((StatusCode::UNAUTHORIZED, "sign in at /admin/login\n").into_response())
            }
            None => Err(Redirect::to("/admin/login").into_response()),
        }
    }
}

impl Admin {
    /// The refusal of a POST whose form token is not this session's (`None`: it is).
    fn refuse_bad_csrf(&self, submitted: &str) -> Option<Response> {
        if same_secret(&self.session.csrf, submitted) {
            None
        } else {
            Some(pages::message(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The page was open too long or came from somewhere else. Go back, reload it and try again.",
                Some(("/admin", "Back to the overview")),
            ))
        }
    }

    async fn flash(&self) -> Option<Flash> {
        self.runtime
            .sessions
            .take_flash(&self.session.id)
            .await
            .map(Flash::decode)
    }

    /// A notice for the next page: what was done.
    async fn notice(&self, message: impl Into<String>) {
        self.runtime
            .sessions
            .set_flash(&self.session.id, Flash::Done(message.into()).encode())
            .await;
    }

    /// A notice for the next page that shows as an error.
    async fn problem(&self, message: impl Into<String>) {
        self.runtime
            .sessions
            .set_flash(&self.session.id, Flash::Failed(message.into()).encode())
            .await;
    }

    async fn page(&self, _state: &AppState) -> pages::Page {
        pages::Page {
            csrf: self.session.csrf.clone(),
            flash: self.flash().await,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------

async fn login_page(Extension(rt): Extension<Arc<Runtime>>, headers: HeaderMap) -> Response {
    if !rt.enabled {
        return disabled();
    }
    if rt.sessions.current(&headers).await.is_some() {
        return Redirect::to("/admin").into_response();
    }
    login_form(&rt, StatusCode::OK, None)
}

fn login_form(rt: &Runtime, status: StatusCode, problem: Option<&str>) -> Response {
    let (nonce, cookie) = rt.sessions.login_nonce();
    let mut response = (status, pages::login(&nonce, problem)).into_response();
    session::set_cookie(response.headers_mut(), cookie);
    response
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// Checks the nonce, the per-client limit, then the password.
struct LoginClient(std::net::IpAddr);

impl FromRequestParts<AppState> for LoginClient {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(LoginClient(session::client_ip(parts)))
    }
}

async fn login(
    State(state): State<AppState>,
    Extension(rt): Extension<Arc<Runtime>>,
    LoginClient(client): LoginClient,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(password) = state.settings.admin_password.as_ref() else {
        return disabled();
    };
    if !rt.limiter.allow(client).await {
        tracing::warn!(%client, "admin login refused: too many attempts");
        let mut response = login_form(
            &rt,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many sign-in attempts from your address. Wait a minute, then try again."),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return response;
    }
    if !rt.sessions.login_nonce_matches(&headers, &form.csrf) {
        return login_form(
            &rt,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired. Please try again."),
        );
    }
    if !same_secret(password.expose_secret(), &form.password) {
        tracing::info!(%client, "admin login failed: wrong password");
        return login_form(&rt, StatusCode::UNAUTHORIZED, Some("Wrong password."));
    }
    let Some((_, cookie)) = rt.sessions.create().await else {
        return login_form(
            &rt,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("The sign-in could not be stored (the database did not answer). Try again in a moment."),
        );
    };
    tracing::info!(%client, "admin signed in");
    let mut response = Redirect::to("/admin").into_response();
    session::set_cookie(response.headers_mut(), cookie);
    session::set_cookie(
        response.headers_mut(),
        rt.sessions.clear_cookie(session::LOGIN_COOKIE),
    );
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(admin: Admin, Form(form): Form<CsrfForm>) -> Response {
    if let Some(refused) = admin.refuse_bad_csrf(&form.csrf) {
        return refused;
    }
    admin.runtime.sessions.end(&admin.session.id).await;
    let mut response = Redirect::to("/admin/login").into_response();
    session::set_cookie(
        response.headers_mut(),
        admin.runtime.sessions.clear_cookie(session::SESSION_COOKIE),
    );
    response
}

// ---------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------

/// Store failures become an opaque 500 page; the cause goes to the log.
fn internal(err: impl std::fmt::Display) -> Response {
    tracing::error!(error = %err, "admin page failed");
    pages::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The service could not read its database. The log has the details.",
        Some(("/admin", "Back to the overview")),
    )
}

fn bad_request(text: &str, back: (&str, &str)) -> Response {
    pages::message(
        StatusCode::BAD_REQUEST,
        "That cannot be shown",
        text,
        Some(back),
    )
}

/// What the outbox says now about the blocks `entries` name (failed writes, deletions).
async fn block_notes(
    state: &AppState,
    entries: &[LogEntry],
) -> Result<activity::BlockNotes, StoreError> {
    let mut notes = activity::BlockNotes::new();
    for (target, blocks) in activity::blocks_to_look_up(entries) {
        let ids: Vec<BlockId> = blocks
            .iter()
            .filter_map(|b| BlockId::parse(b).ok())
            .collect();
        let refs: Vec<&BlockId> = ids.iter().collect();
        for row in state.store.rows_on_target(target, &refs).await? {
            notes.insert(
                (target, row.block_id.to_string()),
                activity::BlockNow::of(&row),
            );
        }
    }
    Ok(notes)
}

async fn overview(admin: Admin, State(state): State<AppState>) -> Response {
    let (rows, accounts) =
        match tokio::try_join!(accounts::load_rows(&state), state.store.list_accounts()) {
            Ok(found) => found,
            Err(e) => return internal(e),
        };
    let page = admin.page(&state).await;
    let panel = match &state.admin.demo {
        Some(demo) => {
            let (calendars, events) = tokio::join!(demo.calendars(), demo.events());
            Some(demo_panel::panel(&page, &calendars, &events))
        }
        None => None,
    };
    accounts::overview(&page, &rows, &Calendars::new(accounts), panel).into_response()
}

async fn account_page(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Response {
    let id = AccountId::new(id);
    let row = match accounts::load_row(&state, id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found_page(),
        Err(e) => return internal(e),
    };
    let query = LogQuery {
        account_id: Some(id),
        limit: 25,
        ..LogQuery::default()
    };
    let (log, list) =
        match tokio::try_join!(state.store.recent_log(&query), state.store.list_accounts()) {
            Ok(found) => found,
            Err(e) => return internal(e),
        };
    let notes = match block_notes(&state, &log).await {
        Ok(notes) => notes,
        Err(e) => return internal(e),
    };
    accounts::account(
        &admin.page(&state).await,
        &row,
        &Calendars::new(list),
        &log,
        &notes,
    )
    .into_response()
}

fn not_found_page() -> Response {
    pages::message(
        StatusCode::NOT_FOUND,
        "No such account",
        "It may have been removed.",
        Some(("/admin", "Back to the overview")),
    )
}

async fn unknown_page(_admin: Admin) -> Response {
    pages::message(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no admin page at this address.",
        Some(("/admin", "Back to the overview")),
    )
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// `remove` only: also delete the blocks on the account's own calendar.
    #[serde(default)]
    purge: Option<String>,
    /// `yes` on the second step of an action that asks first.
    #[serde(default)]
    confirm: Option<String>,
}

/// A failed action in words for the operator.
fn failure_words(action: &str, alias: &str, e: &ControlError) -> String {
    match e {
        ControlError::NotRunning(_) => format!(
            "Nothing was done: {alias} has no running sync right now (it is paused, degraded or needs reauth). Resume or reconnect it first."
        ),
        ControlError::NotActive { status, .. } => {
            format!("Nothing was done: {alias} is {status}. Resume or reconnect it first.")
        }
        other => format!("Could not {action} {alias}: {other}"),
    }
}

async fn account_action(
    admin: Admin,
    State(state): State<AppState>,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = admin.refuse_bad_csrf(&form.csrf) {
        return refused;
    }
    let id = AccountId::new(id);
    let account = match state.store.account(id).await {
        Ok(account) => account,
        Err(StoreError::NotFound { .. }) => return not_found_page(),
        Err(e) => return internal(e),
    };
    let purge = form.purge.is_some();
    if let Some(step) = accounts::Confirmable::of(&action) {
        if form.confirm.as_deref() != Some("yes") {
            return accounts::confirm(&admin.page(&state).await, &account, step, purge)
                .into_response();
        }
    }
    let control = control(&state);
    let alias = &account.alias;
    let (result, done) = match action.as_str() {
        "sync" => (
            control.sync_now(id).await,
            format!("A sync of {alias} started."),
        ),
        "resync" => (
            control.full_resync(id).await,
            format!("A full resync of {alias} started; nothing is deleted first."),
        ),
        "confirm-deletions" => (
            control.confirm_deletions(id).await,
            format!("Deletions confirmed: a full resync of {alias} now removes the blocks of events that are gone."),
        ),
        "pause" => (
            control.pause(id).await,
            format!("{alias} is paused. Its blocks stay where they are."),
        ),
        "resume" => (
            control.resume(id).await,
            format!("{alias} is syncing again."),
        ),
        "remove" => {
            let result = control.remove_account(id, purge).await;
            let done = if purge {
                format!("{alias} was removed; its blocks were retracted everywhere and purged from its own calendar.")
            } else {
                format!("{alias} was removed; its blocks were retracted from the other calendars.")
            };
            if result.is_ok() {
                tracing::info!(account = %id, purge, "account removed from the dashboard");
                admin.notice(done).await;
                return Redirect::to("/admin").into_response();
            }
            (result, done)
        }
        _ => return unknown_page(admin).await,
    };
    match result {
        Ok(()) => {
            tracing::info!(account = %id, action, "admin action");
            admin.notice(done).await;
        }
        Err(e) => {
            tracing::warn!(account = %id, action, error = %e, "admin action failed");
            admin.problem(failure_words(&action, alias, &e)).await;
        }
    }
    Redirect::to(&format!("/admin/accounts/{id}")).into_response()
}

#[derive(Deserialize, Default)]
struct ActivityQuery {
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    page: Option<u64>,
}

/// Log lines per activity page.
const ACTIVITY_PAGE: u64 = 50;

fn account_param(raw: Option<&str>) -> Option<AccountId> {
    raw.filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<i64>().ok())
        .map(AccountId::new)
}

async fn activity(
    admin: Admin,
    State(state): State<AppState>,
    Query(q): Query<ActivityQuery>,
) -> Response {
    let accounts = match state.store.list_accounts().await {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let account = account_param(q.account.as_deref());
    let kind = q.kind.filter(|k| activity::LOG_KINDS.contains(&k.as_str()));
    let result = q.result.as_deref().and_then(LogResult::parse);
    let page = q.page.unwrap_or(1).clamp(1, 100_000);
    let query = LogQuery {
        account_id: account,
        kind: kind.clone(),
        result,
        offset: (page - 1) * ACTIVITY_PAGE,
        limit: ACTIVITY_PAGE,
    };
    let (entries, total) = match tokio::try_join!(
        state.store.recent_log(&query),
        state.store.log_count(&query)
    ) {
        Ok(found) => found,
        Err(e) => return internal(e),
    };
    let notes = match block_notes(&state, &entries).await {
        Ok(notes) => notes,
        Err(e) => return internal(e),
    };
    let filter = activity::ActivityFilter {
        account,
        kind,
        result,
        page,
        pages: total.div_ceil(ACTIVITY_PAGE).max(1),
        total,
    };
    let calendars = Calendars::new(accounts.clone());
    activity::activity(
        &admin.page(&state).await,
        &accounts,
        &calendars,
        &entries,
        &notes,
        &filter,
    )
    .into_response()
}

async fn live_page(admin: Admin, State(state): State<AppState>) -> Response {
    match live::Live::read(&state).await {
        Ok(data) => live::page(&admin.page(&state).await, &data).into_response(),
        Err(e) => internal(e),
    }
}

/// `GET /admin/api/live`: queue depths and the recent changes as JSON.
async fn live_json(_admin: Admin, State(state): State<AppState>) -> Response {
    match live::Live::read(&state).await {
        Ok(data) => Json(data.snapshot()).into_response(),
        Err(e) => internal(e),
    }
}

/// The zone and title choice of the week and events pages.
#[derive(Deserialize, Default)]
struct ViewQuery {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    tz: Option<String>,
    #[serde(default)]
    titles: Option<String>,
}

impl ViewQuery {
    fn zone(&self) -> Result<Zone, String> {
        Zone::parse(self.tz.as_deref())
    }

    fn titles(&self) -> bool {
        self.titles.as_deref() == Some("1")
    }
}

fn date_param(raw: Option<&str>, name: &str) -> Result<Option<NaiveDate>, String> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| format!("The {name} \"{s}\" is not a date like 2026-03-05.")),
    }
}

async fn week_page(
    admin: Admin,
    State(state): State<AppState>,
    Query(q): Query<ViewQuery>,
) -> Response {
    let back = ("/admin/week", "Show this week in UTC");
    let zone = match q.zone() {
        Ok(zone) => zone,
        Err(problem) => return bad_request(&problem, back),
    };
    let start = match date_param(q.start.as_deref(), "week start") {
        Ok(start) => start,
        Err(problem) => return bad_request(&problem, back),
    };
    let view = week::WeekView::new(start, zone, q.titles());
    match week::Week::read(&state, view).await {
        Ok(data) => week::page(&admin.page(&state).await, &data).into_response(),
        Err(e) => internal(e),
    }
}

async fn events_page(
    admin: Admin,
    State(state): State<AppState>,
    Query(q): Query<ViewQuery>,
) -> Response {
    let back = ("/admin/events", "Show the coming two weeks");
    let zone = match q.zone() {
        Ok(zone) => zone,
        Err(problem) => return bad_request(&problem, back),
    };
    let (from, to) = match (
        date_param(q.from.as_deref(), "first day"),
        date_param(q.to.as_deref(), "last day"),
    ) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(problem), _) | (_, Err(problem)) => return bad_request(&problem, back),
    };
    let today = Utc::now().with_timezone(&zone.0).date_naive();
    let from = from.unwrap_or(today - TimeDelta::days(1));
    let to = to.unwrap_or(from + TimeDelta::days(14)).max(from);
    if (to - from).num_days() > 366 {
        return bad_request(
            "Choose at most a year between the first and the last day.",
            back,
        );
    }
    let query = trace::EventsQuery {
        account: account_param(q.account.as_deref()),
        from,
        to,
        link: trace::TraceLink {
            zone,
            titles: q.titles(),
        },
    };
    match trace::EventList::read(&state, query).await {
        Ok(list) => trace::list_page(&admin.page(&state).await, &list).into_response(),
        Err(e) => internal(e),
    }
}

async fn trace_page(
    admin: Admin,
    State(state): State<AppState>,
    Path((account, event)): Path<(i64, String)>,
    Query(q): Query<ViewQuery>,
) -> Response {
    let zone = match q.zone() {
        Ok(zone) => zone,
        Err(problem) => return bad_request(&problem, ("/admin/events", "Back to the events")),
    };
    let Ok(event) = EventId::parse(&event) else {
        return pages::message(
            StatusCode::NOT_FOUND,
            "No such event",
            "That is not an event id.",
            Some(("/admin/events", "Back to the events")),
        );
    };
    let source = match state.store.account(AccountId::new(account)).await {
        Ok(source) => source,
        Err(StoreError::NotFound { .. }) => return not_found_page(),
        Err(e) => return internal(e),
    };
    let link = trace::TraceLink {
        zone,
        titles: q.titles(),
    };
    match trace::Trace::read(&state, source, event, link).await {
        Ok(data) => trace::trace_page(&admin.page(&state).await, &data).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize, Default)]
struct ConnectQuery {
    #[serde(default)]
    alias: Option<String>,
}

async fn connect_page(
    admin: Admin,
    State(state): State<AppState>,
    Query(q): Query<ConnectQuery>,
) -> Response {
    let oauth_ready =
        state.settings.google.client_id.is_some() && state.settings.google.redirect_uri.is_some();
    pages::connect(&admin.page(&state).await, q.alias.as_deref(), oauth_ready).into_response()
}

#[derive(Deserialize)]
struct DemoForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    calendar: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    action: String,
}

async fn demo_action(
    admin: Admin,
    State(state): State<AppState>,
    Form(form): Form<DemoForm>,
) -> Response {
    if let Some(refused) = admin.refuse_bad_csrf(&form.csrf) {
        return refused;
    }
    let Some(demo) = state.admin.demo.clone() else {
        return unknown_page(admin).await;
    };
    let Some(action) = DemoAction::parse(&form.action) else {
        admin
            .problem("Nothing was done: unknown demo action.")
            .await;
        return Redirect::to("/admin").into_response();
    };
    let event = form.event.as_deref().filter(|e| !e.is_empty());
    if action.needs_event() && event.is_none() {
        admin
            .problem("Nothing was done: choose an event the demo made first.")
            .await;
        return Redirect::to("/admin#demo").into_response();
    }
    match demo.perform(&form.calendar, event, action).await {
        Ok(done) => admin.notice(done).await,
        Err(problem) => {
            admin
                .problem(format!("The demo action failed: {problem}"))
                .await
        }
    }
    Redirect::to("/admin").into_response()
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("style.css"),
    )
        .into_response()
}

async fn live_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("live.js"),
    )
        .into_response()
}
