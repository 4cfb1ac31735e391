//! `events.watch` and `channels.stop`, with Google's validations (docs/emulator.md, "Push").
use crate::auth::{authorize, resolve_calendar, scopes};
use crate::error::ApiError;
use crate::push::{self, Channel};
use crate::routes::events::parse_list_query;
use crate::routes::{json_object, json_response, Params};
use crate::state::Shared;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

type Result<T> = std::result::Result<T, ApiError>;

/// The project number shown in "Channel '<id>' not found for project '<n>'".
pub const PROJECT_NUMBER: &str = "424242424242";

fn int_field(v: Option<&Value>, name: &str) -> Result<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("Invalid value for: {name}"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("Invalid value for: {name}"))),
        Some(_) => Err(ApiError::invalid(format!("Invalid value for: {name}"))),
    }
}

pub async fn watch(
    State(shared): State<Arc<Shared>>,
    Path(calendar_id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let caller = authorize(&shared, &headers, "events.watch", scopes::EVENTS_READ).await?;
    let cal = resolve_calendar(&shared, &caller, &calendar_id)?;
    let p = Params::parse(q.as_deref());
    parse_list_query(&shared, &cal, &p)?;
    let body = json_object(&body)?;
    let id = match body.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ApiError::required("Required").param("id")),
    };
    if id.len() > 64 {
        return Err(ApiError::invalid("Channel id must be at most 64 characters.").param("id"));
    }
    match body.get("type").and_then(Value::as_str) {
        Some("web_hook") | Some("webhook") => {}
        Some(other) => {
            return Err(ApiError::new(
                400,
                "global",
                "push.channelTypeNotSupported",
                format!("Channel type '{other}' is not supported."),
            ))
        }
        None => return Err(ApiError::required("Required").param("type")),
    }
    let address = body
        .get("address")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::required("Required").param("address"))?;
    let parsed = url::Url::parse(address).map_err(|_| {
        ApiError::new(
            400,
            "global",
            "push.webhookUrlNoHostOrAddress",
            format!("WebHook callback must have a host: {address}"),
        )
    })?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::new(
            400,
            "global",
            "push.webhookUrlNoHostOrAddress",
            format!("WebHook callback must have a host: {address}"),
        ));
    }
    let allow_http = shared.settings.read().allow_http_webhooks;
    if parsed.scheme() != "https" && !(allow_http && parsed.scheme() == "http") {
        return Err(ApiError::new(
            400,
            "global",
            "push.webhookUrlNotHttps",
            format!("WebHook callback must be HTTPS: {address}"),
        ));
    }
    let token = match body.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.len() <= 256 => Some(t.clone()),
        Some(_) => {
            return Err(
                ApiError::invalid("Channel token must be at most 256 characters.").param("token"),
            )
        }
    };
    let settings = shared.settings();
    let now = shared.clock.now_ms();
    let ttl = int_field(body.get("params").and_then(|p| p.get("ttl")), "params.ttl")?;
    if ttl.is_some_and(|t| t <= 0) {
        return Err(ApiError::invalid("Invalid value for: params.ttl"));
    }
    let mut expiration = now
        + ttl
            .unwrap_or(settings.channel_default_ttl_secs)
            .min(settings.channel_max_ttl_secs)
            * 1000;
    if let Some(req) = int_field(body.get("expiration"), "expiration")? {
        if req <= now {
            return Err(
                ApiError::invalid("Channel expiration must be in the future.").param("expiration"),
            );
        }
        expiration = expiration.min(req);
    }
    let mut query: Vec<(String, String)> = vec![("alt".into(), "json".into())];
    query.extend(p.0.iter().filter(|(k, _)| k != "alt").cloned());
    let qs = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let base = shared.base_url.read().clone();
    let resource_uri = format!(
        "{base}/calendar/v3/calendars/{}/events?{qs}",
        url::form_urlencoded::byte_serialize(cal.id.as_bytes()).collect::<String>()
    );
    let channel = Arc::new(Channel {
        id: id.clone(),
        resource_id: cal.resource_id.clone(),
        resource_uri,
        token,
        expiration_ms: expiration,
        address: address.to_string(),
        calendar_id: cal.id.clone(),
        owner: caller.email.clone(),
        client_id: caller.client_id.clone(),
        stopped: AtomicBool::new(false),
        message_number: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        attempts: AtomicU64::new(0),
    });
    {
        let mut all = shared.channels.write();
        if all.contains_key(&id) {
            return Err(ApiError::new(
                400,
                "global",
                "channelIdNotUnique",
                format!("Channel id {id} not unique"),
            ));
        }
        all.insert(id.clone(), channel.clone());
    }
    {
        let mut data = cal.data.lock();
        data.channels.retain(|c| c.is_live(now));
        data.channels.push(channel.clone());
    }
    push::notify(&shared, &channel, "sync");
    let mut v = json!({
        "kind": "api#channel",
        "id": channel.id,
        "resourceId": channel.resource_id,
        "resourceUri": channel.resource_uri,
        "expiration": channel.expiration_ms.to_string(),
    });
    if let Some(t) = &channel.token {
        v["token"] = json!(t);
    }
    Ok(json_response(&v, None))
}

pub async fn stop(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let caller = authorize(&shared, &headers, "channels.stop", scopes::ANY).await?;
    let body = json_object(&body)?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::required("Required").param("id"))?;
    let resource_id = body
        .get("resourceId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::required("Required").param("resourceId"))?;
    let not_found = || {
        ApiError::new(
            404,
            "global",
            "notFound",
            format!("Channel '{id}' not found for project '{PROJECT_NUMBER}'"),
        )
    };
    let channel = shared
        .channels
        .read()
        .get(id)
        .cloned()
        .ok_or_else(not_found)?;
    if channel.resource_id != resource_id
        || channel.stopped.load(Ordering::Relaxed)
        || channel.owner != caller.email
        || channel.client_id != caller.client_id
    {
        return Err(not_found());
    }
    channel.stopped.store(true, Ordering::Relaxed);
    if let Some(cal) = shared.calendar(&channel.calendar_id) {
        cal.data.lock().channels.retain(|c| c.id != channel.id);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
