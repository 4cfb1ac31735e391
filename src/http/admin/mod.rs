//! The admin dashboard under `/admin`: server-rendered HTML (maud), no CDN — the stylesheet
//! and the live view's small script are compiled into the binary.
//!
//! Role: show every account and what to do about it, and turn an operator's button press
//! into one [`Control`] call. Collaborators: [`Control`] (sync now, full resync, pause,
//! resume, remove, latency samples), the [`crate::store::Store`] (accounts, sync state,
//! channels, the outbox's queue depths, the sync log), the OAuth onboarding in
//! [`super::oauth`] (the Connect and Reconnect buttons lead there) and, in `mcss demo` only,
//! the demo panel ([`DemoActions`], which `mcss demo` implements).
//!
//! Security: sign-in with `ADMIN_PASSWORD` (constant-time compare, at most
//! [`AdminConfig::login_attempts_per_minute`] attempts per client per minute, then 429), a
//! server-side session named by a signed, HttpOnly, SameSite=Strict cookie (Secure when the
//! service is reached over HTTPS) that expires after [`AdminConfig::session_ttl`], and a
//! per-session CSRF token in every POST form. Without `ADMIN_PASSWORD` every admin route
//! answers 404 with a plain note (and `serve` logs that the pages are off).
//!
//! Lifecycle: one [`Runtime`] (sessions, login limiter, pending OAuth consents) is built with
//! the router and lives as long as the server; what it keeps is in the database, so every
//! replica serves every signed-in request.

mod demo_panel;
mod pages;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use super::AppState;
use crate::actors::control::Control;
use crate::config::Settings;
use crate::domain::AccountId;
use crate::store::{LogQuery, LogResult};

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
        })
    }
}

/// The OAuth callback's success page (it moves on to the account page by itself).
pub(crate) fn connected_page(account: &crate::store::Account, reconnected: bool) -> Response {
    let mut response = pages::connected(account, reconnected).into_response();
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
        .route("/admin/connect", get(connect_page))
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

    async fn flash(&self) -> Option<String> {
        self.runtime.sessions.take_flash(&self.session.id).await
    }

    async fn notice(&self, message: impl Into<String>) {
        self.runtime
            .sessions
            .set_flash(&self.session.id, message)
            .await;
    }

    async fn page(&self, state: &AppState) -> pages::Page {
        pages::Page {
            csrf: self.session.csrf.clone(),
            flash: self.flash().await,
            demo: state.admin.demo.is_some(),
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

async fn overview(admin: Admin, State(state): State<AppState>) -> Response {
    let accounts = match pages::load_rows(&state).await {
        Ok(rows) => rows,
        Err(e) => return internal(e),
    };
    let demo_calendars = state
        .admin
        .demo
        .as_ref()
        .map(|d| d.calendars())
        .unwrap_or_default();
    pages::overview(&admin.page(&state).await, &accounts, &demo_calendars).into_response()
}

async fn account_page(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Response {
    let id = AccountId::new(id);
    let row = match pages::load_row(&state, id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found_page(),
        Err(e) => return internal(e),
    };
    let log = match state
        .store
        .recent_log(&LogQuery {
            account_id: Some(id),
            limit: 25,
            ..LogQuery::default()
        })
        .await
    {
        Ok(log) => log,
        Err(e) => return internal(e),
    };
    pages::account(&admin.page(&state).await, &row, &log).into_response()
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
        Err(crate::store::StoreError::NotFound { .. }) => return not_found_page(),
        Err(e) => return internal(e),
    };
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
            let purge = form.purge.is_some();
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
            admin
                .notice(format!("Could not {action} {alias}: {e}"))
                .await;
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

async fn activity(
    admin: Admin,
    State(state): State<AppState>,
    Query(q): Query<ActivityQuery>,
) -> Response {
    let accounts = match state.store.list_accounts().await {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let account = q
        .account
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<i64>().ok())
        .map(AccountId::new);
    let kind = q.kind.filter(|k| pages::LOG_KINDS.contains(&k.as_str()));
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
    let filter = pages::ActivityFilter {
        account,
        kind,
        result,
        page,
        pages: total.div_ceil(ACTIVITY_PAGE).max(1),
        total,
    };
    pages::activity(&admin.page(&state).await, &accounts, &entries, &filter).into_response()
}

async fn live_page(admin: Admin, State(state): State<AppState>) -> Response {
    pages::live(&admin.page(&state).await).into_response()
}

/// `GET /admin/api/live`: queue depths and propagation latency for the live view.
async fn live_json(_admin: Admin, State(state): State<AppState>) -> Response {
    match pages::live_snapshot(&state).await {
        Ok(snapshot) => Json(snapshot).into_response(),
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
        admin.notice("Unknown demo action.").await;
        return Redirect::to("/admin").into_response();
    };
    match demo.perform(&form.calendar, action).await {
        Ok(done) => admin.notice(done).await,
        Err(problem) => {
            admin
                .notice(format!("The demo action failed: {problem}"))
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
