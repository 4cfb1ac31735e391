//! `gcal-emulator`: an emulator of the Google Calendar API v3, Google OAuth and push
//! notifications, strict where Google is strict, for tests, the demo and benchmarks.
//!
//! # Layout
//! - [`Emulator::start`] binds a listener (port 0 unless told), seeds accounts and serves
//!   until [`EmulatorHandle::shutdown`]; `main.rs` is a thin CLI over it.
//! - [`state`]: accounts, calendars (each with its own lock), OAuth grants, channels and the
//!   global change sequence that sync tokens point into.
//! - [`events`]: the event resource (validation, defaults, PATCH/PUT, rendering, instances).
//! - [`recurrence`]: pure RRULE/EXDATE/RDATE expansion and instance ids.
//! - [`schema`]: JSON type checks of request bodies against Google's discovery document.
//! - [`auth`]: bearer tokens, scopes, the per-user rate limiter, fault injection per request.
//! - [`push`]: watch channels and notification delivery with retries.
//! - [`faults`]: fault rules and request counters; [`clock`]: the advanceable clock.
//! - [`error`]: Google's error envelopes.
//! - [`routes`]: HTTP handlers (`events`, `calendars`, `channels`, `oauth`, `batch`, `control`).
#![forbid(unsafe_code)]

pub mod auth;
pub mod clock;
pub mod error;
pub mod events;
pub mod faults;
pub mod push;
pub mod recurrence;
pub mod routes;
pub mod schema;
pub mod state;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use state::Shared;
use std::net::SocketAddr;
use std::sync::Arc;

pub use faults::{CounterSnapshot, FaultKind, FaultRule};
pub use state::{AccountInfo, Settings};

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Port on 127.0.0.1; `None` or `Some(0)` picks a free one.
    pub port: Option<u16>,
    /// Number of accounts created at start (`user01@example.test`, …).
    pub accounts: usize,
    /// The one OAuth client the emulator knows.
    pub client_id: String,
    pub client_secret: String,
    /// Run-time knobs (also changeable through `PUT /emulator/settings`).
    pub settings: Settings,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            port: None,
            accounts: 0,
            client_id: "emulator-client.apps.googleusercontent.com".into(),
            client_secret: "emulator-secret".into(),
            settings: Settings::default(),
        }
    }
}

/// Errors of [`Emulator::start`].
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind 127.0.0.1:{port}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

/// Entry point.
pub struct Emulator;

/// A running emulator.
pub struct EmulatorHandle {
    base_url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Binds, seeds `config.accounts` accounts and starts serving in the background.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, StartError> {
        let port = config.port.unwrap_or(0);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| StartError::Bind { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { port, source })?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared::new(
            config.client_id,
            config.client_secret,
            config.settings,
        ));
        *shared.base_url.write() = base_url.clone();
        for _ in 0..config.accounts {
            shared.create_account(None, None, None);
        }
        let app = router(shared.clone());
        *shared.router.write() = Some(app.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve =
                axum::serve(listener, app.into_make_service()).with_graceful_shutdown(async move {
                    let _ = rx.await;
                });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "emulator server stopped with an error");
            }
        });
        Ok(EmulatorHandle {
            base_url,
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT`: the API root (`/calendar/v3`), OAuth (`/o/oauth2/v2/auth`,
    /// `/token`) and control (`/emulator`) all live under it.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn auth_url(&self) -> String {
        format!("{}/o/oauth2/v2/auth", self.base_url)
    }
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url)
    }
    pub fn accounts(&self) -> Vec<AccountInfo> {
        self.shared.account_infos()
    }
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }
    pub fn client_secret(&self) -> &str {
        &self.shared.client_secret
    }
    /// Creates an account (or mints a fresh refresh token for an existing e-mail).
    pub fn add_account(&self, email: Option<&str>) -> AccountInfo {
        self.shared
            .create_account(email.map(str::to_string), None, None)
    }
    /// The shared state, for in-process tests that want to look inside.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
    /// Stops accepting requests and waits for the server task to finish.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        *self.shared.router.write() = None;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        *self.shared.router.write() = None;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The method name used by counters and fault rules for a route.
fn method_name(method: &axum::http::Method, path: &str) -> &'static str {
    use axum::http::Method as M;
    match (method.clone(), path) {
        (M::GET, "/calendar/v3/calendars/{calendarId}/events") => "events.list",
        (M::POST, "/calendar/v3/calendars/{calendarId}/events") => "events.insert",
        (M::POST, "/calendar/v3/calendars/{calendarId}/events/watch") => "events.watch",
        (M::GET, "/calendar/v3/calendars/{calendarId}/events/{eventId}") => "events.get",
        (M::PATCH, "/calendar/v3/calendars/{calendarId}/events/{eventId}") => "events.patch",
        (M::PUT, "/calendar/v3/calendars/{calendarId}/events/{eventId}") => "events.update",
        (M::DELETE, "/calendar/v3/calendars/{calendarId}/events/{eventId}") => "events.delete",
        (M::GET, "/calendar/v3/calendars/{calendarId}/events/{eventId}/instances") => {
            "events.instances"
        }
        (M::GET, "/calendar/v3/calendars/{calendarId}") => "calendars.get",
        (M::GET, "/calendar/v3/users/me/calendarList") => "calendarList.list",
        (M::GET, "/calendar/v3/users/me/calendarList/{calendarId}") => "calendarList.get",
        (M::GET, "/calendar/v3/users/me/settings/{setting}") => "settings.get",
        (M::POST, "/calendar/v3/channels/stop") => "channels.stop",
        (M::POST, "/batch/calendar/v3") => "batch",
        (M::POST, "/token") => "oauth.token",
        (M::POST, "/revoke") => "oauth.revoke",
        (M::GET, "/o/oauth2/v2/auth") => "oauth.authorize",
        _ => "other",
    }
}

/// Counts every non-control request by method, status and (when the token is known) account.
async fn count_requests(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let Some(path) = path.filter(|p| !p.starts_with("/emulator")) else {
        return next.run(req).await;
    };
    let name = method_name(req.method(), &path);
    let account = auth::bearer(req.headers(), None)
        .and_then(|t| shared.access_tokens.read().get(&t).map(|g| g.email.clone()));
    let resp = next.run(req).await;
    shared
        .counters
        .record(account.as_deref(), name, resp.status().as_u16());
    resp
}

async fn fallback() -> Response {
    error::ApiError::not_found().into_response()
}

/// All routes of the emulator.
pub fn router(shared: Arc<Shared>) -> Router {
    use routes::{batch, bulk, calendars, channels, control, events, oauth};
    let api = Router::new()
        .route(
            "/calendar/v3/calendars/{calendarId}",
            get(calendars::calendars_get),
        )
        .route(
            "/calendar/v3/calendars/{calendarId}/events",
            get(events::list).post(events::insert),
        )
        .route(
            "/calendar/v3/calendars/{calendarId}/events/watch",
            post(channels::watch),
        )
        .route(
            "/calendar/v3/calendars/{calendarId}/events/{eventId}",
            get(events::get)
                .patch(events::patch)
                .put(events::update)
                .delete(events::delete),
        )
        .route(
            "/calendar/v3/calendars/{calendarId}/events/{eventId}/instances",
            get(events::instances),
        )
        .route(
            "/calendar/v3/users/me/calendarList",
            get(calendars::calendar_list),
        )
        .route(
            "/calendar/v3/users/me/calendarList/{calendarId}",
            get(calendars::calendar_list_get),
        )
        .route(
            "/calendar/v3/users/me/settings/{setting}",
            get(calendars::settings_get),
        )
        .route("/calendar/v3/channels/stop", post(channels::stop))
        .route("/batch/calendar/v3", post(batch::batch))
        .route("/o/oauth2/v2/auth", get(oauth::authorize))
        .route("/o/oauth2/v2/auth/approve", get(oauth::approve))
        .route("/o/oauth2/v2/auth/deny", get(oauth::deny))
        .route("/token", post(oauth::token))
        .route("/revoke", post(oauth::revoke))
        .route("/oauth2/v3/userinfo", get(oauth::userinfo))
        .route("/oauth2/v2/userinfo", get(oauth::userinfo))
        .route(
            "/emulator/accounts",
            get(control::list_accounts).post(control::create_account),
        )
        .route("/emulator/accounts/bulk", post(bulk::create_accounts))
        .route(
            "/emulator/accounts/{email}/calendars",
            post(control::create_calendar),
        )
        .route(
            "/emulator/accounts/{email}/revoke",
            post(control::revoke_account),
        )
        .route(
            "/emulator/accounts/{email}/tokens",
            post(control::mint_tokens),
        )
        .route(
            "/emulator/settings",
            get(control::get_settings).put(control::put_settings),
        )
        .route(
            "/emulator/faults",
            get(control::list_faults)
                .post(control::add_fault)
                .delete(control::clear_faults),
        )
        .route("/emulator/faults/{id}", delete(control::delete_fault))
        .route(
            "/emulator/sync-tokens/invalidate",
            post(control::invalidate_sync_tokens),
        )
        .route("/emulator/clock", get(control::get_clock))
        .route("/emulator/clock/advance", post(control::advance_clock))
        .route(
            "/emulator/counters",
            get(control::get_counters).delete(control::reset_counters),
        )
        .route("/emulator/channels", get(control::list_channels))
        .route(
            "/emulator/calendars/{calendarId}/events",
            get(control::dump_events),
        )
        .fallback(fallback);
    api.layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        count_requests,
    ))
    .with_state(shared)
}
