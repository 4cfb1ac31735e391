//! The thin HTTP ingress: validate, translate into an actor message or a store read, answer.
//!
//! Served by hyper (through axum's router). Every route is behind a body-size limit and a
//! request timeout; webhook pings are answered before any Google call is made, and replayed
//! ones are dropped ([`replay`]). The HTML pages (`/admin/*`, `/auth/*`) carry the same
//! security headers ([`security`]).
//! Routes: `/health`, `/health/detailed`, `/metrics`, `/webhooks/google`, `/auth/*`, `/admin/*`.
//! With several replicas, [`forward`] receives what the others send this one (pings of the
//! calendars it owns, writer wake-ups).

mod admin;
pub mod forward;
mod health;
mod oauth;
mod replay;
pub(crate) mod security;
mod webhook;

pub use admin::{AdminConfig, DemoAction, DemoActions};

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use ractor::ActorRef;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument as _;

use crate::actors::supervisor::SupervisorMsg;
use crate::actors::Control;
use crate::config::Settings;
use crate::coordinator::Coordinator;
use crate::metrics as names;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// What every handler may reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub coordinator: Option<Coordinator>,
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Drives the actors: webhook pings, account start/pause/resume/remove, sync requests.
    pub control: Control,
    pub prometheus: PrometheusHandle,
    pub started_at: Instant,
    pub shutdown: Shutdown,
    /// Admin page knobs: session lifetime, login limit, and the demo panel (demo only).
    pub admin: AdminConfig,
    /// Recent pings, shared by the webhook route and the pings other replicas forward here
    /// ([`forward`]), so each is handled once.
    pub(crate) pings: Arc<replay::PingMemory>,
    /// Signs the admin pages' cookies; the same on every replica (kept in the store).
    pub(crate) cookie_key: Arc<[u8; 64]>,
}

/// Builds the router with every route and the cross-cutting layers.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    let timeout = state.settings.request_timeout;
    let admin = admin::Runtime::new(&state);
    Router::new()
        .merge(admin::routes(admin.clone()))
        .merge(oauth::routes(admin))
        .route("/health", get(health::live))
        .route("/health/detailed", get(health::detailed))
        .route("/metrics", get(metrics))
        .route(
            "/webhooks/google",
            post(webhook::google).layer(Extension(state.pings.clone())),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(track))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    if !state.settings.enable_metrics {
        return (
            StatusCode::NOT_FOUND,
            "metrics are disabled (ENABLE_METRICS=false)\n",
        )
            .into_response();
    }
    metrics::gauge!(names::UPTIME).set(state.started_at.elapsed().as_secs_f64());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
        .into_response()
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found\n")
}

/// Runs every request in a `request` span (method, route template, status, and the
/// `sync_id` a webhook ping is given), and counts and times it by its route template (never
/// the raw path, which would let a caller create unbounded label values).
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        status = tracing::field::Empty,
        sync_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    let status = response.status().as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Binds `[::]:port`, falling back to `0.0.0.0:port` on hosts without IPv6.
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    match TcpListener::bind(("::", port)).await {
        Ok(listener) => Ok(listener),
        Err(_) => TcpListener::bind(("0.0.0.0", port)).await,
    }
}

/// Serves until `shutdown` trips, then stops accepting and lets in-flight requests finish
/// (bounded by the caller's deadline).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    // The peer address feeds the admin login limit (per client IP).
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.wait())
    .await
}

/// Upper bound on a health check's dependency pings.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(2);
