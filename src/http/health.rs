//! `/health` answers liveness with no I/O (Railway's health check and restarts use it);
//! `/health/detailed` pings every dependency and answers 503 when one is down.

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
        "shutting_down": state.shutdown.is_triggered(),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
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
