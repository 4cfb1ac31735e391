//! The control API under `/emulator/` (no auth): accounts, settings, faults, sync-token
//! invalidation, the clock, request counters, channels and a raw dump of calendars.
//! Every endpoint is documented in `docs/emulator.md`; keep the two in step.
use crate::faults::FaultRule;
use crate::state::{Settings, Shared};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("{what} not found")})),
    )
        .into_response()
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
}

/// `GET /emulator/accounts`
pub async fn list_accounts(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({"accounts": shared.account_infos()})).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NewAccount {
    pub email: Option<String>,
    pub time_zone: Option<String>,
    pub scopes: Option<Vec<String>>,
}

/// `POST /emulator/accounts` → `{email, calendar_id, refresh_token}`
pub async fn create_account(
    State(shared): State<Arc<Shared>>,
    body: Option<Json<NewAccount>>,
) -> Response {
    let req = body.map(|b| b.0).unwrap_or_default();
    if let Some(tz) = &req.time_zone {
        if tz.parse::<chrono_tz::Tz>().is_err() {
            return bad_request(format!("unknown time zone {tz}"));
        }
    }
    if req.email.as_deref().is_some_and(|e| !e.contains('@')) {
        return bad_request("email must contain @".into());
    }
    let info = shared.create_account(req.email, req.time_zone, req.scopes);
    (StatusCode::CREATED, Json(info)).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NewCalendar {
    pub summary: Option<String>,
    pub time_zone: Option<String>,
}

/// `POST /emulator/accounts/{email}/calendars` → a secondary calendar.
pub async fn create_calendar(
    State(shared): State<Arc<Shared>>,
    Path(email): Path<String>,
    body: Option<Json<NewCalendar>>,
) -> Response {
    let req = body.map(|b| b.0).unwrap_or_default();
    match shared.create_secondary_calendar(
        &email,
        req.summary.unwrap_or_else(|| "Secondary".into()),
        req.time_zone,
    ) {
        Some(cal) => (
            StatusCode::CREATED,
            Json(json!({"id": cal.id, "summary": cal.summary, "timeZone": cal.time_zone})),
        )
            .into_response(),
        None => not_found("account"),
    }
}

/// `POST /emulator/accounts/{email}/revoke`: every refresh token of the account is revoked.
pub async fn revoke_account(
    State(shared): State<Arc<Shared>>,
    Path(email): Path<String>,
) -> Response {
    if shared.account(&email).is_none() {
        return not_found("account");
    }
    let n = shared.revoke_account(&email);
    Json(json!({"revoked": n})).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NewTokens {
    pub scopes: Option<Vec<String>>,
}

/// `POST /emulator/accounts/{email}/tokens` → a fresh refresh token and access token.
pub async fn mint_tokens(
    State(shared): State<Arc<Shared>>,
    Path(email): Path<String>,
    body: Option<Json<NewTokens>>,
) -> Response {
    if shared.account(&email).is_none() {
        return not_found("account");
    }
    let scopes = body.and_then(|b| b.0.scopes).unwrap_or_else(|| {
        crate::state::DEFAULT_SCOPES
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let client = shared.client_id.clone();
    let refresh = shared.mint_refresh_token(&email, &client, scopes.clone());
    let (access, ttl) =
        shared.mint_access_token(&email, &client, scopes.clone(), Some(refresh.clone()));
    Json(json!({"refresh_token": refresh, "access_token": access, "expires_in": ttl, "scope": scopes.join(" ")})).into_response()
}

/// `GET /emulator/settings`
pub async fn get_settings(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.settings()).into_response()
}

/// `PUT /emulator/settings`: merges the given fields into the current settings.
pub async fn put_settings(State(shared): State<Arc<Shared>>, Json(patch): Json<Value>) -> Response {
    let mut current = serde_json::to_value(shared.settings()).unwrap_or_default();
    if let (Some(c), Some(p)) = (current.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            c.insert(k.clone(), v.clone());
        }
    }
    match serde_json::from_value::<Settings>(current) {
        Ok(s) => {
            *shared.settings.write() = s.clone();
            Json(s).into_response()
        }
        Err(e) => bad_request(e.to_string()),
    }
}

/// `GET /emulator/faults`
pub async fn list_faults(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({"faults": shared.faults.list()})).into_response()
}

/// `POST /emulator/faults` → the rule with its id.
pub async fn add_fault(State(shared): State<Arc<Shared>>, Json(rule): Json<FaultRule>) -> Response {
    if rule.probability.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        return bad_request("probability must be within [0, 1]".into());
    }
    (StatusCode::CREATED, Json(shared.faults.add(rule))).into_response()
}

/// `DELETE /emulator/faults/{id}`
pub async fn delete_fault(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> Response {
    if shared.faults.remove(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found("fault")
    }
}

/// `DELETE /emulator/faults`
pub async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Invalidate {
    pub calendar_id: Option<String>,
}

/// `POST /emulator/sync-tokens/invalidate` `{calendarId?}`: later lists with older tokens get 410.
pub async fn invalidate_sync_tokens(
    State(shared): State<Arc<Shared>>,
    body: Option<Json<Invalidate>>,
) -> Response {
    let target = body.and_then(|b| b.0.calendar_id);
    let calendars: Vec<_> = match &target {
        Some(id) => match shared.calendar(id) {
            Some(c) => vec![c],
            None => return not_found("calendar"),
        },
        None => shared.calendars.read().values().cloned().collect(),
    };
    for cal in &calendars {
        let mut data = cal.data.lock();
        data.sync_floor = shared.next_seq() + 1;
    }
    Json(json!({"invalidated": calendars.len()})).into_response()
}

#[derive(Debug, Deserialize)]
pub struct Advance {
    pub seconds: i64,
}

/// `POST /emulator/clock/advance` `{seconds}` → `{now, offsetSeconds}`
pub async fn advance_clock(State(shared): State<Arc<Shared>>, Json(a): Json<Advance>) -> Response {
    if a.seconds < 0 {
        return bad_request("seconds must be >= 0".into());
    }
    let now = shared.clock.advance(chrono::Duration::seconds(a.seconds));
    Json(json!({"now": crate::events::fmt_ms(now), "offsetSeconds": shared.clock.offset().num_seconds()})).into_response()
}

/// `GET /emulator/clock`
pub async fn get_clock(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({"now": crate::events::fmt_ms(shared.clock.now()), "offsetSeconds": shared.clock.offset().num_seconds()})).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct CounterQuery {
    pub account: Option<String>,
}

/// `GET /emulator/counters[?account=E]`
pub async fn get_counters(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<CounterQuery>,
) -> Response {
    Json(shared.counters.snapshot(q.account.as_deref())).into_response()
}

/// `DELETE /emulator/counters`
pub async fn reset_counters(State(shared): State<Arc<Shared>>) -> Response {
    shared.counters.reset();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /emulator/channels`: every channel ever created, with delivery statistics.
pub async fn list_channels(State(shared): State<Arc<Shared>>) -> Response {
    let now = shared.clock.now_ms();
    let chans: Vec<Value> = shared
        .channels
        .read()
        .values()
        .map(|c| {
            json!({
                "id": c.id, "resourceId": c.resource_id, "resourceUri": c.resource_uri, "calendarId": c.calendar_id,
                "address": c.address, "owner": c.owner, "expiration": c.expiration_ms.to_string(),
                "stopped": c.stopped.load(Ordering::Relaxed), "live": c.is_live(now),
                "delivered": c.delivered.load(Ordering::Relaxed), "failed": c.failed.load(Ordering::Relaxed),
                "dropped": c.dropped.load(Ordering::Relaxed), "attempts": c.attempts.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(json!({"channels": chans})).into_response()
}

/// `GET /emulator/calendars/{calendarId}/events`: every stored event, tombstones and
/// exceptions included, with internal fields, ordered by change sequence.
pub async fn dump_events(
    State(shared): State<Arc<Shared>>,
    Path(calendar_id): Path<String>,
) -> Response {
    let Some(cal) = shared.calendar(&calendar_id) else {
        return not_found("calendar");
    };
    let zone: chrono_tz::Tz = cal.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC);
    let data = cal.data.lock();
    let mut events: Vec<_> = data.events.values().collect();
    events.sort_by_key(|e| e.seq);
    let items: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq, "deleted": e.deleted, "isException": e.recurring_event_id.is_some(),
                "event": e.render_full(zone),
            })
        })
        .collect();
    Json(json!({
        "calendarId": cal.id, "owner": cal.owner, "timeZone": cal.time_zone, "primary": cal.primary,
        "resourceId": cal.resource_id, "syncFloor": data.sync_floor, "items": items,
    }))
    .into_response()
}
