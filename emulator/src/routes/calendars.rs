//! `calendars.get`, `calendarList.list/get` and `settings.get`: the discovery calls a client
//! makes to learn its calendars, the primary id and time zones.
use crate::auth::{authorize, resolve_calendar, scopes};
use crate::error::ApiError;
use crate::routes::events::default_reminders;
use crate::routes::{b64d, b64e, json_response, Params};
use crate::state::{Calendar, Shared};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

type Result<T> = std::result::Result<T, ApiError>;

fn etag_of(cal: &Calendar) -> String {
    format!("\"{}\"", &cal.resource_id[..16.min(cal.resource_id.len())])
}

fn calendar_resource(cal: &Calendar) -> Value {
    json!({
        "kind": "calendar#calendar",
        "etag": etag_of(cal),
        "id": cal.id,
        "summary": cal.summary,
        "timeZone": cal.time_zone,
        "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
    })
}

fn list_entry(cal: &Calendar) -> Value {
    let mut v = json!({
        "kind": "calendar#calendarListEntry",
        "etag": etag_of(cal),
        "id": cal.id,
        "summary": cal.summary,
        "timeZone": cal.time_zone,
        "colorId": "14",
        "backgroundColor": "#9fe1e7",
        "foregroundColor": "#000000",
        "selected": true,
        "accessRole": "owner",
        "defaultReminders": default_reminders(cal),
        "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
    });
    if cal.primary {
        v["primary"] = json!(true);
        v["notificationSettings"] = json!({"notifications": [
            {"type": "eventCreation", "method": "email"}, {"type": "eventChange", "method": "email"},
            {"type": "eventCancellation", "method": "email"}, {"type": "eventResponse", "method": "email"}]});
    } else {
        v["dataOwner"] = json!(cal.owner);
    }
    v
}

pub async fn calendars_get(
    State(shared): State<Arc<Shared>>,
    Path(calendar_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let caller = authorize(&shared, &headers, "calendars.get", scopes::CALENDARS_GET).await?;
    let cal = resolve_calendar(&shared, &caller, &calendar_id)?;
    let v = calendar_resource(&cal);
    Ok(json_response(&v, v["etag"].as_str()))
}

pub async fn calendar_list(
    State(shared): State<Arc<Shared>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let caller = authorize(
        &shared,
        &headers,
        "calendarList.list",
        scopes::CALENDAR_LIST,
    )
    .await?;
    let p = Params::parse(q.as_deref());
    let max = p
        .int("maxResults", 1, i64::from(i32::MAX))?
        .unwrap_or(100)
        .min(250) as usize;
    p.one_of(
        "minAccessRole",
        &[
            "freeBusyReader",
            "owner",
            "reader",
            "writer",
            "writerWithoutPrivateAccess",
        ],
    )?;
    p.bool("showDeleted")?;
    p.bool("showHidden")?;
    if p.has("syncToken") {
        for bad in ["minAccessRole", "showOwnOrganizationOnly"] {
            if p.has(bad) {
                return Err(ApiError::invalid(format!(
                    "The parameter {bad} cannot be used together with syncToken."
                ))
                .param(bad));
            }
        }
    }
    let offset = match p.get("pageToken") {
        None => 0,
        Some(t) => b64d(t)
            .and_then(|s| s.strip_prefix('c').and_then(|n| n.parse::<usize>().ok()))
            .ok_or_else(|| ApiError::invalid("Invalid page token value.").param("pageToken"))?,
    };
    let ids = shared
        .account(&caller.email)
        .map(|a| a.calendars.read().clone())
        .unwrap_or_default();
    let entries: Vec<Value> = ids
        .iter()
        .filter_map(|id| shared.calendar(id))
        .map(|c| list_entry(&c))
        .collect();
    let end = (offset + max).min(entries.len());
    let mut v = json!({
        "kind": "calendar#calendarList",
        "etag": format!("\"{}\"", entries.len()),
        "items": entries[offset.min(end)..end].to_vec(),
    });
    if end < entries.len() {
        v["nextPageToken"] = json!(b64e(&format!("c{end}")));
    } else {
        v["nextSyncToken"] = json!(b64e(&format!("l{}", entries.len())));
    }
    Ok(json_response(&v, None))
}

pub async fn calendar_list_get(
    State(shared): State<Arc<Shared>>,
    Path(calendar_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let caller = authorize(&shared, &headers, "calendarList.get", scopes::CALENDAR_LIST).await?;
    let cal = resolve_calendar(&shared, &caller, &calendar_id)?;
    let v = list_entry(&cal);
    Ok(json_response(&v, v["etag"].as_str()))
}

pub async fn settings_get(
    State(shared): State<Arc<Shared>>,
    Path(setting): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let caller = authorize(&shared, &headers, "settings.get", scopes::SETTINGS).await?;
    let account = shared
        .account(&caller.email)
        .ok_or_else(ApiError::not_found)?;
    let value = match setting.as_str() {
        "timezone" => account.time_zone.clone(),
        "locale" => "en".to_string(),
        "weekStart" => "0".to_string(),
        "format24HourTime" => "false".to_string(),
        _ => return Err(ApiError::not_found()),
    };
    let v = json!({"kind": "calendar#setting", "etag": format!("\"{}\"", value.len()), "id": setting, "value": value});
    Ok(json_response(&v, None))
}
