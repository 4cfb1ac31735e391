//! `/health` answers liveness with no I/O (Railway's health check and restarts use it);
//! `/health/detailed` pings every dependency and answers 503 when one is down, and says who
//! this replica is under `"replica"`: its `id`, the `live` replicas' ids (itself alone on
//! SQLite), how many calendars it owns (`owned_calendars`) and whether it is the `leader`
//! (the one that runs the periodic reconciliation).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{AppState, PING_TIMEOUT};

pub(super) async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub(super) async fn detailed(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = probe(state.store.ping()).await;
    let redis = match &state.coordinator {
        None => json!({ "status": "not_configured" }),
        Some(c) => probe(c.ping()).await,
    };
    let supervisor_alive = matches!(
        state.supervisor.get_status(),
        ractor::ActorStatus::Running
            | ractor::ActorStatus::Starting
            | ractor::ActorStatus::Upgrading
    );
    let queues = match tokio::time::timeout(PING_TIMEOUT, state.store.queue_depths()).await {
        Ok(Ok(depths)) => json!(depths
            .into_iter()
            .map(|(account, pending)| json!({ "account": account, "pending": pending }))
            .collect::<Vec<_>>()),
        _ => Value::Null,
    };
    let replica = replica(&state).await;
    let healthy = database["status"] == "ok"
        && redis["status"] != "down"
        && supervisor_alive
        && !state.shutdown.is_triggered();
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started_at.elapsed().as_secs(),
        "database": database,
        "redis": redis,
        "supervisor": { "status": if supervisor_alive { "ok" } else { "down" } },
        "queues": queues,
        "replica": replica,
        "shutting_down": state.shutdown.is_triggered(),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// This replica among the others; `live` is `null` when the database does not answer.
async fn replica(state: &AppState) -> Value {
    let replica = &state.control.services().replica;
    let (live, owned) = if replica.is_leased() {
        let live = match tokio::time::timeout(PING_TIMEOUT, state.store.live_replicas()).await {
            Ok(Ok(live)) => json!(live),
            _ => Value::Null,
        };
        (live, json!(replica.held_count()))
    } else {
        let owned = match tokio::time::timeout(PING_TIMEOUT, state.store.list_accounts()).await {
            Ok(Ok(accounts)) => json!(accounts
                .iter()
                .filter(|a| crate::actors::control::wants_actors(a.status))
                .count()),
            _ => Value::Null,
        };
        (json!([replica.id().as_ref()]), owned)
    };
    json!({
        "id": replica.id().as_ref(),
        "mode": if replica.is_leased() { "leased" } else { "sole" },
        "live": live,
        "owned_calendars": owned,
        "leader": replica.is_leader(),
    })
}

/// `{"status": "ok"}`, or `down` with the reason, bounded by [`PING_TIMEOUT`].
async fn probe<E: std::fmt::Display>(
    ping: impl std::future::Future<Output = Result<(), E>>,
) -> Value {
    match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(())) => json!({ "status": "ok" }),
        Ok(Err(e)) => json!({ "status": "down", "error": e.to_string() }),
        Err(_) => {
            json!({ "status": "down", "error": format!("no answer within {}s", PING_TIMEOUT.as_secs()) })
        }
    }
}
