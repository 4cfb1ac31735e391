//! [`Application`]: builds everything `serve` needs from [`Settings`] — store (migrated),
//! optional Redis, the supervised actor tree and the HTTP listener (port 0 in tests) — and
//! runs it until shutdown, then stops it in order under one deadline:
//! stop intake (HTTP) → drain the actors → close the pools.
//!
//! The port is bound only once the database (and Redis, when configured) answered: until
//! then nothing listens, so a health check is refused at once instead of hanging on a
//! socket nobody serves, and a start that cannot reach its database exits without ever
//! having looked alive.
//!
//! Replicas: on SQLite the process first takes the file's serve lock (one replica per
//! file, `store::sqlite_lock`). On PostgreSQL it starts, beside the actors, the listeners of
//! other replicas' notes (`http::forward`) and the ownership loop (`actors::ownership`);
//! at shutdown the first step is to hand every lease over, so the next owners start while
//! this process still drains.

use std::sync::Arc;
use std::time::Instant;

use ractor::ActorRef;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::actors::ownership::OwnershipHandle;
use crate::actors::supervisor::SupervisorMsg;
use crate::config::{ConfigError, Settings};
use crate::coordinator::{Coordinator, CoordinatorError};
use crate::http::{self, AppState};
use crate::services::{Services, ServicesError};
use crate::shutdown::Shutdown;
use crate::store::sqlite_lock::ServeLock;
use crate::store::{Store, StoreError};

/// Why the service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Redis(#[from] CoordinatorError),
    /// The port cannot be listened on (in use, privileged); names `PORT`.
    #[error("{0}")]
    Bind(#[source] ConfigError),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot start the actor supervisor: {0}")]
    Supervisor(String),
    #[error("cannot build the services: {0}")]
    Services(#[from] ServicesError),
    #[error("the root supervisor stopped unexpectedly")]
    SupervisorDied,
    #[error("{0}")]
    Forward(#[from] crate::http::forward::ForwardError),
}

/// A built, not yet running, service.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    supervisor_handle: JoinHandle<()>,
    /// With leases: the ownership loop, handed over first at shutdown.
    ownership: Option<OwnershipHandle>,
    /// With leases: the listeners of other replicas' notes.
    listeners: Vec<JoinHandle<()>>,
    /// With SQLite: held until the process ends.
    _serve_lock: Option<ServeLock>,
}

impl Application {
    /// Connects and migrates the store, connects Redis when configured, binds the listener,
    /// then starts the supervisor with one child pair per active account.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_on(settings, None).await
    }

    /// [`Application::build`], listening on `host` only (`None`: every interface). `mcss
    /// demo` listens on loopback unless told otherwise.
    pub async fn build_on(
        settings: Settings,
        host: Option<std::net::IpAddr>,
    ) -> Result<Self, StartupError> {
        let started_at = Instant::now();
        let serve_lock = ServeLock::acquire(&settings)?;
        let store = Store::connect(&settings).await?;
        store.migrate().await?;
        let coordinator = match &settings.redis_url {
            Some(url) => Some(Coordinator::connect(url, settings.db_connect_timeout).await?),
            None => None,
        };
        // Bound before anything uses `WEBHOOK_BASE_URL`, so port 0 there can name the port.
        let (listener, port) = bind(settings.port, host).await?;
        let mut settings = settings;
        resolve_webhook_port(&mut settings, port);
        let settings = Arc::new(settings);
        let prometheus = crate::metrics::install();
        let shutdown = Shutdown::new();
        let services = Services::build(settings.clone(), store.clone()).await?;
        if let Some(redis) = &coordinator {
            services.replica.use_redis(redis.clone());
        }
        let (control, supervisor_handle) = crate::actors::start(services, shutdown.clone())
            .await
            .map_err(|e| StartupError::Supervisor(e.to_string()))?;
        let supervisor = control.supervisor();
        let pings = Arc::default();
        let cookie_key = Arc::new(store.cookie_key().await?);
        let mut listeners = Vec::new();
        let mut ownership = None;
        if control.services().replica.is_leased() {
            // Listening first: a lease handed over at once is announced on this channel.
            listeners = http::forward::start(
                control.clone(),
                Arc::clone(&pings),
                coordinator.clone(),
                shutdown.clone(),
            )
            .await?;
            ownership = Some(crate::actors::ownership::spawn(
                control.clone(),
                shutdown.clone(),
            ));
        }
        let state = AppState {
            admin: http::AdminConfig::from_settings(&settings),
            settings,
            store,
            coordinator,
            supervisor,
            control,
            prometheus,
            started_at,
            shutdown,
            pings,
            cookie_key,
        };
        Ok(Self {
            listener,
            port,
            state,
            supervisor_handle,
            ownership,
            listeners,
            _serve_lock: serve_lock,
        })
    }

    /// Runs until SIGTERM or SIGINT (logged by name), then stops in order.
    pub async fn run_with_signals(self) -> anyhow::Result<()> {
        let shutdown = self.shutdown();
        let mut signals = crate::shutdown::Signals::install()?;
        tokio::spawn(async move {
            let which = signals.recv().await;
            tracing::info!(signal = which, "shutting down");
            shutdown.trigger();
        });
        self.run_until_stopped().await?;
        Ok(())
    }

    /// The port actually bound (useful with `PORT=0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Adjusts the admin pages before serving (the demo's panel, short sessions in tests).
    pub fn admin_config_mut(&mut self) -> &mut http::AdminConfig {
        &mut self.state.admin
    }

    /// The latch that stops this application when tripped.
    pub fn shutdown(&self) -> Shutdown {
        self.state.shutdown.clone()
    }

    pub fn supervisor(&self) -> ActorRef<SupervisorMsg> {
        self.state.supervisor.clone()
    }

    /// Serves until the shutdown latch trips (Ok) or the root supervisor dies (Err), then
    /// stops everything under `SHUTDOWN_TIMEOUT_SECS`.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let Self {
            listener,
            port,
            state,
            mut supervisor_handle,
            ownership,
            listeners,
            _serve_lock,
        } = self;
        let shutdown = state.shutdown.clone();
        let deadline = state.settings.shutdown_timeout;
        let router = http::router(state.clone());
        let mut server = tokio::spawn(http::serve(listener, router, shutdown.clone()));
        tracing::info!(port, version = env!("CARGO_PKG_VERSION"), "serving");

        let outcome = tokio::select! {
            _ = shutdown.wait() => Ok(()),
            _ = &mut supervisor_handle => {
                tracing::error!("the root supervisor stopped unexpectedly; exiting");
                Err(StartupError::SupervisorDied)
            }
            result = &mut server => match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StartupError::Serve(e)),
                Err(e) => Err(StartupError::Serve(std::io::Error::other(e))),
            },
        };
        shutdown.trigger();
        stop_in_order(
            &state,
            ownership,
            server,
            supervisor_handle,
            listeners,
            deadline,
        )
        .await;
        outcome
    }
}

/// The stop after the latch tripped, in order and all within `deadline`: hand the leases
/// over, drain HTTP, drain the actors, close the pools.
async fn stop_in_order(
    state: &AppState,
    ownership: Option<crate::actors::ownership::OwnershipHandle>,
    mut server: JoinHandle<std::io::Result<()>>,
    mut supervisor_handle: JoinHandle<()>,
    listeners: Vec<JoinHandle<()>>,
    deadline: std::time::Duration,
) {
    let stop_started = Instant::now();
    let remaining = || deadline.saturating_sub(stop_started.elapsed());

    // 0. With several replicas: hand every lease over, so the next owners start now.
    if let Some(ownership) = ownership {
        if tokio::time::timeout(remaining(), ownership.hand_over())
            .await
            .is_err()
        {
            tracing::warn!(
                step = "leases",
                "shutdown deadline passed while handing the leases over"
            );
        }
    }
    // 1. Stop intake: the server stops accepting and finishes in-flight requests.
    if !server.is_finished()
        && tokio::time::timeout(remaining(), &mut server)
            .await
            .is_err()
    {
        tracing::warn!(
            step = "http",
            "shutdown deadline passed while draining HTTP requests"
        );
        server.abort();
    }
    // 2. Drain the actors: writers finish the write in hand, nothing new starts.
    if !supervisor_handle.is_finished() {
        if let Err(missed) =
            crate::actors::stop(&state.supervisor, &mut supervisor_handle, remaining()).await
        {
            tracing::warn!(step = "actors", detail = %missed, "shutdown deadline passed while draining actors");
        }
    }
    // 3. Close the pools (the note listeners hold connections of both).
    for listener in listeners {
        let _ = tokio::time::timeout(remaining(), listener).await;
    }
    if let Some(c) = &state.coordinator {
        let _ = tokio::time::timeout(remaining(), c.quit()).await;
    }
    if tokio::time::timeout(remaining(), state.store.close())
        .await
        .is_err()
    {
        tracing::warn!(
            step = "store",
            "shutdown deadline passed while closing the database"
        );
    }
    tracing::info!(
        elapsed_ms = stop_started.elapsed().as_millis() as u64,
        "stopped"
    );
}

/// The listener on `port` (of `host`, or every interface) and the port it got (the one
/// asked for, or a free one for 0).
async fn bind(
    port: u16,
    host: Option<std::net::IpAddr>,
) -> Result<(TcpListener, u16), StartupError> {
    let refused = |e: std::io::Error| StartupError::Bind(bind_problem(port, &e));
    let listener = match host {
        Some(host) => TcpListener::bind((host, port)).await,
        None => http::bind(port).await,
    }
    .map_err(refused)?;
    let bound = listener.local_addr().map_err(refused)?.port();
    Ok((listener, bound))
}

/// One line for a port that cannot be listened on, with what to do about it. `mcss serve`
/// and `mcss demo` both take `--port` and `PORT`, and are the usual holders of the port.
pub fn bind_problem(port: u16, err: &std::io::Error) -> ConfigError {
    let problem = match err.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "port {port} is already in use; choose another with --port or PORT (is another `mcss serve` or `mcss demo` running?)"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "port {port} needs privileges this process lacks; choose one above 1023 with --port or PORT"
        ),
        _ => format!("cannot listen on port {port}: {err}; choose another with --port or PORT"),
    };
    ConfigError::new("PORT", problem)
}

/// A `WEBHOOK_BASE_URL` with port 0 (tests, the demo) means "this application's own port":
/// it is rewritten to the port actually bound, so push channels reach this process.
fn resolve_webhook_port(settings: &mut Settings, port: u16) {
    if let Some(url) = settings.webhook_base_url.as_mut() {
        if url.port() == Some(0) {
            let _ = url.set_port(Some(port));
        }
    }
}
