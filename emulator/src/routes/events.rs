//! `events.*`: insert, get, patch, update, delete, list (full and incremental) and instances.
//!
//! Each handler authorizes through [`crate::auth::authorize`], then works under the target
//! calendar's lock: a change takes its sequence number while holding that lock, and a listing
//! reads its snapshot number under the same lock, so a sync token never skips a change.
//!
//! Bodies are type-checked against the discovery document ([`crate::schema`]) before anything
//! else. A write to an occurrence id of a series starts from that occurrence (see
//! [`crate::events::virtual_instance`]); a write to a series reaches its stored exceptions:
//! deletion cancels them, other changes carry over to the fields they do not override.
use crate::auth::{authorize, resolve_calendar, scopes, Caller};
use crate::error::ApiError;
use crate::events::{
    fill_defaults, fmt_ms, make_etag, matches_ext, matches_q, merge_patch, new_event_id,
    parse_query_time, same_instance, series_occurrences, strip_nulls, strip_read_only,
    valid_event_id, validate, virtual_instance, EvTime, StoredEvent, WriteTarget, MAX_INSTANCES,
};
use crate::push;
use crate::recurrence::{self, InstanceKey};
use crate::routes::{b64d, b64e, json_object, json_response, Params};
use crate::schema;
use crate::state::{Calendar, CalendarData, Shared};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde_json::{json, Map, Value};
use std::sync::Arc;

type Result<T> = std::result::Result<T, ApiError>;

const SEND_UPDATES: &[&str] = &["all", "externalOnly", "none"];
/// Parameters that may not be combined with `syncToken` (docs/emulator.md, "List / sync").
const NOT_WITH_SYNC_TOKEN: &[&str] = &[
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
];

fn zone_of(cal: &Calendar) -> Tz {
    cal.time_zone.parse().unwrap_or(Tz::UTC)
}

fn display_zone(cal: &Calendar, p: &Params) -> Result<Tz> {
    match p.get("timeZone") {
        None => Ok(zone_of(cal)),
        Some(z) => z
            .parse()
            .map_err(|_| ApiError::invalid("Invalid time zone definition.").param("timeZone")),
    }
}

fn write_params(p: &Params) -> Result<()> {
    p.one_of("sendUpdates", SEND_UPDATES)?;
    p.bool("sendNotifications")?;
    p.int("conferenceDataVersion", 0, 1)?;
    p.int("maxAttendees", 1, i64::from(i32::MAX))?;
    Ok(())
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `If-Match`: `*` or the exact current etag, else 412.
fn check_if_match(h: &HeaderMap, etag: &str) -> Result<()> {
    match header_str(h, "if-match") {
        None => Ok(()),
        Some(v) if v.trim() == "*" || v.split(',').any(|t| t.trim() == etag) => Ok(()),
        Some(_) => Err(ApiError::condition_not_met()),
    }
}

/// Finds a stored event or builds the virtual instance a series id suffix names.
fn find_event(data: &CalendarData, id: &str, zone: Tz) -> Option<(StoredEvent, bool)> {
    if let Some(ev) = data.events.get(id) {
        return Some((ev.clone(), true));
    }
    let (series_id, key) = recurrence::parse_instance_id(id)?;
    let master = data.events.get(series_id).filter(|m| m.is_series())?;
    let center = match key {
        InstanceKey::Utc(t) => t,
        InstanceKey::Date(d) => EvTime::Date(d).instant(zone),
    };
    let occ = series_occurrences(
        master,
        zone,
        Some(center - Duration::days(2)),
        Some(center + Duration::days(2)),
        MAX_INSTANCES,
    );
    let (s, e) = occ
        .into_iter()
        .find(|(s, _)| s.to_start(zone).key() == key)?;
    let inst = virtual_instance(master, s, e, zone);
    (inst.id == id).then_some((inst, false))
}

/// Stores a changed event and tells the calendar's channels; returns the stored copy.
fn commit(
    shared: &Arc<Shared>,
    data: &mut CalendarData,
    mut ev: StoredEvent,
    bump_updated: bool,
) -> StoredEvent {
    let seq = shared.next_seq();
    let now = shared.clock.now();
    ev.seq = seq;
    if bump_updated {
        ev.updated = now;
    }
    ev.etag = make_etag(now, seq);
    data.events.insert(ev.id.clone(), ev.clone());
    ev
}

fn notify_after(shared: &Arc<Shared>, channels: Vec<Arc<push::Channel>>) {
    if !channels.is_empty() {
        push::calendar_changed(shared, &channels);
    }
}

fn event_response(ev: &StoredEvent, display: Tz) -> Response {
    json_response(&ev.render_full(display), Some(&ev.etag))
}

async fn enter(
    shared: &Shared,
    headers: &HeaderMap,
    method: &'static str,
    accepted: &[&str],
    calendar_id: &str,
) -> Result<(Caller, Arc<Calendar>)> {
    let caller = authorize(shared, headers, method, accepted).await?;
    let cal = resolve_calendar(shared, &caller, calendar_id)?;
    Ok((caller, cal))
}

pub async fn insert(
    State(shared): State<Arc<Shared>>,
    Path(calendar_id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let (_caller, cal) = enter(
        &shared,
        &headers,
        "events.insert",
        scopes::EVENTS_WRITE,
        &calendar_id,
    )
    .await?;
    let p = Params::parse(q.as_deref());
    write_params(&p)?;
    let display = display_zone(&cal, &p)?;
    let mut body = json_object(&body)?;
    schema::check_event(&mut body)?;
    strip_read_only(&mut body);
    strip_nulls(&mut body);
    body.remove("recurringEventId");
    body.remove("originalStartTime");
    let id = match body.get("id") {
        Some(Value::String(id)) if valid_event_id(id) => id.clone(),
        Some(_) => return Err(ApiError::invalid_id()),
        None => new_event_id(),
    };
    let v = validate(&mut body, &WriteTarget { calendar: &cal }, false)?;
    fill_defaults(&mut body, &id, &cal);
    let (stored, channels) = {
        let mut data = cal.data.lock();
        if data.events.contains_key(&id) {
            return Err(ApiError::duplicate());
        }
        let now = shared.clock.now();
        let deleted = body.get("status").and_then(Value::as_str) == Some("cancelled");
        let ev = StoredEvent {
            id: id.clone(),
            body,
            seq: 0,
            etag: String::new(),
            created: now,
            updated: now,
            start: v.start,
            end: v.end,
            deleted,
            recurring_event_id: None,
            original_start: None,
        };
        (commit(&shared, &mut data, ev, true), data.channels.clone())
    };
    notify_after(&shared, channels);
    Ok(event_response(&stored, display))
}

pub async fn get(
    State(shared): State<Arc<Shared>>,
    Path((calendar_id, event_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let (_caller, cal) = enter(
        &shared,
        &headers,
        "events.get",
        scopes::EVENTS_READ,
        &calendar_id,
    )
    .await?;
    let p = Params::parse(q.as_deref());
    p.int("maxAttendees", 1, i64::from(i32::MAX))?;
    let display = display_zone(&cal, &p)?;
    let zone = zone_of(&cal);
    let (ev, _) = find_event(&cal.data.lock(), &event_id, zone).ok_or_else(ApiError::not_found)?;
    if let Some(inm) = header_str(&headers, "if-none-match") {
        if inm
            .split(',')
            .any(|t| t.trim() == ev.etag || t.trim() == "*")
        {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = ev.etag.parse() {
                resp.headers_mut().insert(axum::http::header::ETAG, v);
            }
            return Ok(resp);
        }
    }
    Ok(event_response(&ev, display))
}

pub async fn patch(
    State(shared): State<Arc<Shared>>,
    Path((calendar_id, event_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    modify(shared, calendar_id, event_id, q, headers, body, false).await
}

pub async fn update(
    State(shared): State<Arc<Shared>>,
    Path((calendar_id, event_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    modify(shared, calendar_id, event_id, q, headers, body, true).await
}

/// PATCH (merge) and PUT (replace) share everything but how the new body is built.
async fn modify(
    shared: Arc<Shared>,
    calendar_id: String,
    event_id: String,
    q: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    replace: bool,
) -> Result<Response> {
    let method = if replace {
        "events.update"
    } else {
        "events.patch"
    };
    let (_caller, cal) = enter(
        &shared,
        &headers,
        method,
        scopes::EVENTS_WRITE,
        &calendar_id,
    )
    .await?;
    let p = Params::parse(q.as_deref());
    write_params(&p)?;
    let display = display_zone(&cal, &p)?;
    let zone = zone_of(&cal);
    let mut incoming = json_object(&body)?;
    schema::check_event(&mut incoming)?;
    strip_read_only(&mut incoming);
    incoming.remove("recurringEventId");
    incoming.remove("originalStartTime");
    if let Some(id) = incoming.remove("id") {
        if id.as_str() != Some(event_id.as_str()) && !id.is_null() {
            return Err(ApiError::invalid_id());
        }
    }
    let (stored, channels) = {
        let mut data = cal.data.lock();
        let (current, _) = find_event(&data, &event_id, zone).ok_or_else(ApiError::not_found)?;
        check_if_match(&headers, &current.etag)?;
        let old_type = current.event_type().to_string();
        let mut new_body: Map<String, Value> = if replace {
            strip_nulls(&mut incoming);
            let mut b = incoming.clone();
            for keep in [
                "id",
                "iCalUID",
                "creator",
                "organizer",
                "htmlLink",
                "sequence",
            ] {
                if let (false, Some(v)) = (b.contains_key(keep), current.body.get(keep)) {
                    b.insert(keep.into(), v.clone());
                }
            }
            b.entry("status").or_insert(json!("confirmed"));
            b.entry("reminders").or_insert(json!({"useDefault": true}));
            if !b.contains_key("eventType") {
                if old_type != "default" {
                    return Err(ApiError::invalid("Event type cannot be changed."));
                }
                b.insert("eventType".into(), json!("default"));
            }
            b
        } else {
            let mut b = current.body.clone();
            merge_patch(&mut b, &incoming);
            b
        };
        if new_body
            .get("eventType")
            .and_then(Value::as_str)
            .unwrap_or("default")
            != old_type
        {
            return Err(ApiError::invalid("Event type cannot be changed."));
        }
        let is_instance = current.recurring_event_id.is_some();
        let v = validate(&mut new_body, &WriteTarget { calendar: &cal }, is_instance)?;
        let time_changed = v.start != current.start
            || v.end != current.end
            || new_body.get("recurrence") != current.body.get("recurrence");
        if time_changed && !incoming.contains_key("sequence") {
            let seq = current
                .body
                .get("sequence")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new_body.insert("sequence".into(), json!(seq + 1));
        }
        let only_reminders = {
            let mut a = current.body.clone();
            let mut b = new_body.clone();
            a.remove("reminders");
            b.remove("reminders");
            a == b && !time_changed
        };
        let cancelled = new_body.get("status").and_then(Value::as_str) == Some("cancelled");
        let was_series = current.is_series() && !current.deleted;
        let old_body = current.body.clone();
        let mut ev = current;
        ev.body = new_body;
        ev.start = v.start;
        ev.end = v.end;
        ev.deleted = cancelled && !is_instance;
        let stored = commit(&shared, &mut data, ev, !only_reminders);
        if was_series && stored.deleted {
            cancel_exceptions(&shared, &mut data, &stored.id);
        } else if was_series {
            propagate_to_exceptions(&shared, &mut data, &stored.id, &old_body, &stored.body);
        }
        (stored, data.channels.clone())
    };
    notify_after(&shared, channels);
    Ok(event_response(&stored, display))
}

pub async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((calendar_id, event_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let (_caller, cal) = enter(
        &shared,
        &headers,
        "events.delete",
        scopes::EVENTS_WRITE,
        &calendar_id,
    )
    .await?;
    let p = Params::parse(q.as_deref());
    p.one_of("sendUpdates", SEND_UPDATES)?;
    p.bool("sendNotifications")?;
    let zone = zone_of(&cal);
    let channels = {
        let mut data = cal.data.lock();
        let (mut ev, _) = find_event(&data, &event_id, zone).ok_or_else(ApiError::not_found)?;
        if ev.is_cancelled() {
            return Err(ApiError::deleted());
        }
        check_if_match(&headers, &ev.etag)?;
        ev.body.insert("status".into(), json!("cancelled"));
        let is_series = ev.is_series();
        if ev.recurring_event_id.is_none() {
            ev.deleted = true;
        }
        let id = ev.id.clone();
        commit(&shared, &mut data, ev, true);
        if is_series {
            cancel_exceptions(&shared, &mut data, &id);
        }
        data.channels.clone()
    };
    notify_after(&shared, channels);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The ids of the stored exceptions of `series_id`.
fn exception_ids(data: &CalendarData, series_id: &str) -> Vec<String> {
    data.events
        .values()
        .filter(|e| e.recurring_event_id.as_deref() == Some(series_id))
        .map(|e| e.id.clone())
        .collect()
}

/// A deleted series takes its exceptions with it: each live exception becomes a tombstone (a
/// change of its own, so incremental syncs list it); an exception that was already cancelled
/// is only marked deleted, since nothing a client can see changes.
fn cancel_exceptions(shared: &Arc<Shared>, data: &mut CalendarData, series_id: &str) {
    for id in exception_ids(data, series_id) {
        let Some(mut exc) = data.events.get(&id).cloned() else {
            continue;
        };
        if exc.deleted {
            continue;
        }
        let was_cancelled = exc.is_cancelled();
        exc.deleted = true;
        exc.body.insert("status".into(), json!("cancelled"));
        if was_cancelled {
            data.events.insert(id, exc);
        } else {
            commit(shared, data, exc, true);
        }
    }
}

/// Fields of a series that never carry over to its exceptions: each occurrence has its own
/// times and identity, and deletion is handled by [`cancel_exceptions`].
const NOT_PROPAGATED: &[&str] = &[
    "id",
    "start",
    "end",
    "recurrence",
    "sequence",
    "status",
    "iCalUID",
    "eventType",
];

/// A change to a series reaches every live exception that did not override the changed field
/// (its value still equals the series' old one); fields an exception overrides stay its own.
fn propagate_to_exceptions(
    shared: &Arc<Shared>,
    data: &mut CalendarData,
    series_id: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) {
    let changed: std::collections::BTreeSet<&String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| !NOT_PROPAGATED.contains(&k.as_str()) && old.get(*k) != new.get(*k))
        .collect();
    // As for any event, a reminders-only change leaves `updated` alone.
    let bump_updated = changed.iter().any(|k| k.as_str() != "reminders");
    if changed.is_empty() {
        return;
    }
    for id in exception_ids(data, series_id) {
        let Some(mut exc) = data.events.get(&id).cloned() else {
            continue;
        };
        if exc.is_cancelled() {
            continue;
        }
        let mut touched = false;
        for key in &changed {
            if exc.body.get(*key) != old.get(*key) {
                continue;
            }
            match new.get(*key) {
                Some(v) => exc.body.insert((*key).clone(), v.clone()),
                None => exc.body.remove(*key),
            };
            touched = true;
        }
        if touched {
            commit(shared, data, exc, bump_updated);
        }
    }
}

/// The parsed and validated parameters of `events.list` / `events.watch`.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub max_results: usize,
    pub page_token: Option<PageToken>,
    pub sync_since: Option<u64>,
    pub show_deleted: bool,
    pub single_events: bool,
    pub order_by: Option<String>,
    pub time_min: Option<DateTime<Utc>>,
    pub time_max: Option<DateTime<Utc>>,
    pub updated_min: Option<DateTime<Utc>>,
    pub q: Option<String>,
    pub ical_uid: Option<String>,
    pub private_ext: Vec<String>,
    pub shared_ext: Vec<String>,
    pub event_types: Vec<String>,
}

/// What a page token carries: where the next page starts, the snapshot for the final sync
/// token, and the page number (for the empty-page knob).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct PageToken {
    o: usize,
    s: u64,
    p: u32,
}

fn encode_sync_token(calendar_id: &str, seq: u64) -> String {
    format!("CPemu{}", b64e(&format!("{calendar_id}\n{seq}")))
}

fn decode_sync_token(token: &str, calendar_id: &str) -> Option<u64> {
    let raw = b64d(token.strip_prefix("CPemu")?)?;
    let (cal, seq) = raw.split_once('\n')?;
    (cal == calendar_id).then(|| seq.parse().ok()).flatten()
}

/// Validates the list parameters (the 400s and 410s listed in docs/emulator.md).
pub fn parse_list_query(shared: &Shared, cal: &Calendar, p: &Params) -> Result<ListQuery> {
    let mut lq = ListQuery {
        max_results: p
            .int("maxResults", 1, i64::from(i32::MAX))?
            .unwrap_or(250)
            .min(2500) as usize,
        ..Default::default()
    };
    let sync_token = p.get("syncToken");
    if sync_token.is_some() {
        if let Some(bad) = NOT_WITH_SYNC_TOKEN.iter().find(|n| p.has(n)) {
            return Err(ApiError::invalid(format!(
                "The parameter {bad} cannot be used together with syncToken."
            ))
            .param(bad));
        }
    }
    lq.show_deleted = p.bool("showDeleted")?.unwrap_or(false);
    lq.single_events = p.bool("singleEvents")?.unwrap_or(false);
    p.bool("showHiddenInvitations")?;
    p.bool("alwaysIncludeEmail")?;
    p.int("maxAttendees", 1, i64::from(i32::MAX))?;
    lq.order_by = p.one_of("orderBy", &["startTime", "updated"])?;
    if lq.order_by.as_deref() == Some("startTime") && !lq.single_events {
        return Err(ApiError::bad_request(
            "The requested ordering is not available for the particular query.",
        )
        .param("orderBy"));
    }
    for t in p.all("eventTypes") {
        if ![
            "default",
            "birthday",
            "focusTime",
            "fromGmail",
            "outOfOffice",
            "workingLocation",
        ]
        .contains(&t)
        {
            return Err(
                ApiError::invalid(format!("Invalid value for eventTypes: {t}")).param("eventTypes"),
            );
        }
        lq.event_types.push(t.to_string());
    }
    lq.time_min = p
        .get("timeMin")
        .map(|s| parse_query_time(s, "timeMin"))
        .transpose()?;
    lq.time_max = p
        .get("timeMax")
        .map(|s| parse_query_time(s, "timeMax"))
        .transpose()?;
    if let (Some(a), Some(b)) = (lq.time_min, lq.time_max) {
        if a >= b {
            return Err(ApiError::time_range_empty("timeMax"));
        }
    }
    lq.updated_min = p
        .get("updatedMin")
        .map(|s| parse_query_time(s, "updatedMin"))
        .transpose()?;
    if let Some(u) = lq.updated_min {
        let window = shared.settings.read().updated_min_window_secs;
        if u < shared.clock.now() - Duration::seconds(window) {
            return Err(ApiError::updated_min_too_long_ago());
        }
    }
    lq.q = p.get("q").map(str::to_string);
    lq.ical_uid = p.get("iCalUID").map(str::to_string);
    lq.private_ext = p
        .all("privateExtendedProperty")
        .into_iter()
        .map(str::to_string)
        .collect();
    lq.shared_ext = p
        .all("sharedExtendedProperty")
        .into_iter()
        .map(str::to_string)
        .collect();
    if let Some(pt) = p.get("pageToken") {
        let tok = b64d(pt)
            .and_then(|s| serde_json::from_str::<PageToken>(&s).ok())
            .ok_or_else(|| ApiError::invalid("Invalid page token value.").param("pageToken"))?;
        lq.page_token = Some(tok);
    }
    if let Some(t) = sync_token {
        let seq = decode_sync_token(t, &cal.id).ok_or_else(ApiError::full_sync_required)?;
        if seq < cal.data.lock().sync_floor {
            return Err(ApiError::full_sync_required());
        }
        lq.sync_since = Some(seq);
    }
    Ok(lq)
}

/// Filters that only make sense on a full listing (they are refused with a sync token).
fn passes_filters(ev: &StoredEvent, lq: &ListQuery) -> bool {
    if let Some(q) = &lq.q {
        if !matches_q(ev, q) {
            return false;
        }
    }
    if let Some(uid) = &lq.ical_uid {
        if ev.body.get("iCalUID").and_then(Value::as_str) != Some(uid.as_str()) {
            return false;
        }
    }
    if !lq.private_ext.iter().all(|c| matches_ext(ev, "private", c))
        || !lq.shared_ext.iter().all(|c| matches_ext(ev, "shared", c))
    {
        return false;
    }
    if !lq.event_types.is_empty() && !lq.event_types.iter().any(|t| t == ev.event_type()) {
        return false;
    }
    true
}

fn in_window(start: &EvTime, end: &EvTime, lq: &ListQuery, zone: Tz) -> bool {
    lq.time_min.is_none_or(|m| end.instant(zone) > m)
        && lq.time_max.is_none_or(|m| start.instant(zone) < m)
}

struct Item {
    order: (i64, u64, String),
    value: Value,
}

/// Builds every item a listing returns, in order (before pagination).
fn collect_items(
    shared: &Shared,
    data: &CalendarData,
    lq: &ListQuery,
    zone: Tz,
    display: Tz,
) -> Vec<Item> {
    let since = lq.sync_since;
    let incremental = since.is_some() || lq.updated_min.is_some();
    let changed = |ev: &StoredEvent| match (since, lq.updated_min) {
        (Some(s), _) => ev.seq >= s,
        (None, Some(u)) => ev.updated >= u,
        _ => true,
    };
    let render = |ev: &StoredEvent| -> Value {
        if ev.is_cancelled() && incremental && !lq.show_deleted {
            ev.render_minimal(display)
        } else {
            ev.render_full(display)
        }
    };
    let order_key = |ev: &StoredEvent| -> (i64, u64, String) {
        match lq.order_by.as_deref() {
            Some("startTime") => (
                ev.start.instant(zone).timestamp_millis(),
                ev.seq,
                ev.id.clone(),
            ),
            Some("updated") => (ev.updated.timestamp_millis(), ev.seq, ev.id.clone()),
            _ => (0, ev.seq, ev.id.clone()),
        }
    };
    let horizon = shared.clock.now();
    let horizon_len = Duration::days(shared.settings.read().expansion_horizon_days);
    let mut out = Vec::new();
    let push = |ev: &StoredEvent, out: &mut Vec<Item>| {
        out.push(Item {
            order: order_key(ev),
            value: render(ev),
        })
    };

    for ev in data.events.values() {
        let is_exception = ev.recurring_event_id.is_some();
        let master_of = |ev: &StoredEvent| {
            ev.recurring_event_id
                .as_ref()
                .and_then(|m| data.events.get(m))
        };
        if !lq.single_events {
            if !changed(ev) {
                continue;
            }
            if !incremental && ev.deleted && !lq.show_deleted {
                continue;
            }
            if !incremental && !passes_filters(ev, lq) {
                continue;
            }
            let visible = if ev.is_series() {
                !series_occurrences(ev, zone, lq.time_min, lq.time_max, 1).is_empty() || ev.deleted
            } else {
                in_window(&ev.start, &ev.end, lq, zone)
            };
            if visible || incremental {
                push(ev, &mut out);
            }
            continue;
        }
        // singleEvents=true: series are replaced by their instances.
        if is_exception {
            // Exceptions are emitted with their series, unless only the exception changed.
            let master_changed = master_of(ev).is_some_and(changed);
            if incremental && changed(ev) && !master_changed {
                if !passes_filters(ev, lq) {
                    continue;
                }
                push(ev, &mut out);
            }
            continue;
        }
        if !ev.is_series() {
            if !changed(ev)
                || (!incremental && ev.deleted && !lq.show_deleted)
                || !passes_filters(ev, lq)
            {
                continue;
            }
            if incremental || in_window(&ev.start, &ev.end, lq, zone) {
                push(ev, &mut out);
            }
            continue;
        }
        if !changed(ev) || (!incremental && ev.deleted) || !passes_filters(ev, lq) {
            continue;
        }
        let window_end = lq.time_max.or_else(|| {
            ev.is_open_ended()
                .then(|| horizon.max(ev.start.instant(zone)) + horizon_len)
        });
        for (s, e) in series_occurrences(ev, zone, lq.time_min, window_end, MAX_INSTANCES) {
            if !in_window(&s, &e, lq, zone) {
                continue;
            }
            let id = crate::events::instance_id_for(&ev.id, &s, zone);
            let inst = match data.events.get(&id) {
                Some(exc)
                    if exc
                        .original_start
                        .as_ref()
                        .is_some_and(|os| same_instance(os, &s, zone)) =>
                {
                    exc.clone()
                }
                _ => virtual_instance(ev, s, e, zone),
            };
            if inst.is_cancelled() && !incremental && !lq.show_deleted {
                continue;
            }
            push(&inst, &mut out);
        }
    }
    out.sort_by(|a, b| a.order.cmp(&b.order));
    out
}

/// Runs a listing and renders one page of it.
fn list_page(shared: &Shared, cal: &Calendar, lq: &ListQuery, display: Tz) -> Value {
    let zone = zone_of(cal);
    let (items, snapshot, updated) = {
        let data = cal.data.lock();
        let snapshot = lq
            .page_token
            .map(|t| t.s)
            .unwrap_or_else(|| shared.current_seq());
        let updated = data.events.values().map(|e| e.updated).max();
        (
            collect_items(shared, &data, lq, zone, display),
            snapshot,
            updated,
        )
    };
    let settings = shared.settings.read().clone();
    let offset = lq.page_token.map(|t| t.o).unwrap_or(0).min(items.len());
    let page_no = lq.page_token.map(|t| t.p).unwrap_or(0);
    let mut size = lq.max_results;
    if let Some(cap) = settings.page_size_cap {
        size = size.min(cap.max(1));
    }
    let remaining = items.len() - offset;
    if settings.empty_page_every > 0
        && page_no % settings.empty_page_every == settings.empty_page_every - 1
        && remaining > 0
    {
        size = 0;
    }
    let end = (offset + size).min(items.len());
    let page: Vec<Value> = items[offset..end].iter().map(|i| i.value.clone()).collect();
    let mut resp = json!({
        "kind": "calendar#events",
        "etag": format!("\"{snapshot}\""),
        "summary": cal.summary,
        "updated": fmt_ms(updated.unwrap_or_else(|| shared.clock.now())),
        "timeZone": cal.time_zone,
        "accessRole": "owner",
        "defaultReminders": default_reminders(cal),
        "items": page,
    });
    if end < items.len() {
        let tok = PageToken {
            o: end,
            s: snapshot,
            p: page_no + 1,
        };
        resp["nextPageToken"] = json!(b64e(&serde_json::to_string(&tok).unwrap_or_default()));
    } else {
        resp["nextSyncToken"] = json!(encode_sync_token(&cal.id, snapshot));
    }
    resp
}

/// Google's default reminders: a 10-minute popup on primary calendars, none elsewhere.
pub fn default_reminders(cal: &Calendar) -> Value {
    if cal.primary {
        json!([{"method": "popup", "minutes": 10}])
    } else {
        json!([])
    }
}

pub async fn list(
    State(shared): State<Arc<Shared>>,
    Path(calendar_id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let (_caller, cal) = enter(
        &shared,
        &headers,
        "events.list",
        scopes::EVENTS_READ,
        &calendar_id,
    )
    .await?;
    let p = Params::parse(q.as_deref());
    let display = display_zone(&cal, &p)?;
    let lq = parse_list_query(&shared, &cal, &p)?;
    let page = list_page(&shared, &cal, &lq, display);
    Ok(json_response(&page, None))
}

pub async fn instances(
    State(shared): State<Arc<Shared>>,
    Path((calendar_id, event_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let (_caller, cal) = enter(
        &shared,
        &headers,
        "events.instances",
        scopes::EVENTS_READ,
        &calendar_id,
    )
    .await?;
    let p = Params::parse(q.as_deref());
    let display = display_zone(&cal, &p)?;
    let zone = zone_of(&cal);
    let max_results = p
        .int("maxResults", 1, i64::from(i32::MAX))?
        .unwrap_or(250)
        .min(2500) as usize;
    let show_deleted = p.bool("showDeleted")?.unwrap_or(false);
    let time_min = p
        .get("timeMin")
        .map(|s| parse_query_time(s, "timeMin"))
        .transpose()?;
    let time_max = p
        .get("timeMax")
        .map(|s| parse_query_time(s, "timeMax"))
        .transpose()?;
    if let (Some(a), Some(b)) = (time_min, time_max) {
        if a >= b {
            return Err(ApiError::time_range_empty("timeMax"));
        }
    }
    let original_start = match p.get("originalStart") {
        None => None,
        Some(s) => Some(
            crate::events::parse_time(&json!({"dateTime": s}), "start")
                .or_else(|_| crate::events::parse_time(&json!({"date": s}), "start"))
                .map_err(|_| {
                    ApiError::invalid("Invalid originalStart value.").param("originalStart")
                })?,
        ),
    };
    let offset = match p.get("pageToken") {
        None => 0,
        Some(t) => b64d(t)
            .and_then(|s| s.strip_prefix("i").and_then(|n| n.parse::<usize>().ok()))
            .ok_or_else(|| ApiError::invalid("Invalid page token value.").param("pageToken"))?,
    };
    let horizon_len = Duration::days(shared.settings.read().expansion_horizon_days);
    let (items, master_etag) = {
        let data = cal.data.lock();
        let master = data.events.get(&event_id).ok_or_else(ApiError::not_found)?;
        if master.deleted {
            return Err(ApiError::deleted());
        }
        if !master.is_series() {
            return Err(ApiError::invalid("The event is not a recurring event."));
        }
        let mut items = Vec::new();
        let horizon = shared.clock.now().max(master.start.instant(zone)) + horizon_len;
        let window_end = time_max.or_else(|| master.is_open_ended().then_some(horizon));
        for (s, e) in series_occurrences(master, zone, time_min, window_end, MAX_INSTANCES) {
            if time_min.is_some_and(|m| e.instant(zone) <= m)
                || time_max.is_some_and(|m| s.instant(zone) >= m)
            {
                continue;
            }
            if let Some(os) = &original_start {
                if !same_instance(os, &s, zone) {
                    continue;
                }
            }
            let id = crate::events::instance_id_for(&master.id, &s, zone);
            let inst = match data.events.get(&id) {
                Some(exc) => exc.clone(),
                None => virtual_instance(master, s, e, zone),
            };
            if inst.is_cancelled() && !show_deleted {
                continue;
            }
            items.push(inst.render_full(display));
        }
        (items, master.etag.clone())
    };
    let end = (offset + max_results).min(items.len());
    let mut resp = json!({
        "kind": "calendar#events",
        "etag": master_etag,
        "summary": cal.summary,
        "updated": fmt_ms(shared.clock.now()),
        "timeZone": cal.time_zone,
        "accessRole": "owner",
        "defaultReminders": default_reminders(&cal),
        "items": items[offset.min(end)..end].to_vec(),
    });
    if end < items.len() {
        resp["nextPageToken"] = json!(b64e(&format!("i{end}")));
    }
    Ok(json_response(&resp, None))
}
