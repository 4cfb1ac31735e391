//! The event resource: validation, Google's defaults, PATCH/PUT merging, rendering and
//! recurring-series instances.
//!
//! Events are stored as the JSON object Google would hold (so unknown-but-valid fields survive
//! a round trip) next to parsed copies of the fields the server reasons about (times, status,
//! series links). Rendering applies what Google does on output: times with offsets in the
//! display zone, default values omitted, minimal tombstones in incremental feeds.
use crate::error::ApiError;
use crate::recurrence::{self, Start};
use crate::state::{random_token, Calendar};
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{json, Map, Value};

/// Longest extended-property key kept; longer keys are dropped silently, as Google does
/// (docs/emulator.md, "Validation").
pub const EXT_KEY_MAX: usize = 44;
/// Longest extended-property value; longer values are truncated silently.
pub const EXT_VALUE_MAX: usize = 1024;
const EXT_COUNT_MAX: usize = 300;
const EXT_BYTES_MAX: usize = 32 * 1024;
/// Most instances produced for one series in one expansion.
pub const MAX_INSTANCES: usize = 5000;

const EVENT_TYPES: &[&str] = &[
    "default",
    "birthday",
    "focusTime",
    "fromGmail",
    "outOfOffice",
    "workingLocation",
];

/// Fields a client may not set: the server owns them.
const READ_ONLY: &[&str] = &[
    "kind",
    "etag",
    "created",
    "updated",
    "htmlLink",
    "creator",
    "organizer",
    "hangoutLink",
    "locked",
];

/// A parsed `start`/`end`/`originalStartTime`.
#[derive(Debug, Clone, PartialEq)]
pub enum EvTime {
    Date(NaiveDate),
    Timed { at: DateTime<Utc>, tz: Option<Tz> },
}

impl EvTime {
    /// The instant used for ordering and time-window filters (all-day: midnight in `zone`).
    pub fn instant(&self, zone: Tz) -> DateTime<Utc> {
        match self {
            EvTime::Date(d) => zone
                .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| {
                    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
                }),
            EvTime::Timed { at, .. } => *at,
        }
    }

    pub fn is_date(&self) -> bool {
        matches!(self, EvTime::Date(_))
    }

    /// The recurrence engine's view: the instant read in the series' zone (`fallback` when the
    /// time names none). The instant is kept, so a time in a repeated hour keeps its offset.
    pub fn to_start(&self, fallback: Tz) -> Start {
        match self {
            EvTime::Date(d) => Start::Date(*d),
            EvTime::Timed { at, tz } => Start::DateTime(at.with_timezone(&tz.unwrap_or(fallback))),
        }
    }

    pub fn from_start(s: &Start) -> EvTime {
        match s {
            Start::Date(d) => EvTime::Date(*d),
            Start::DateTime(at) => EvTime::Timed {
                at: at.with_timezone(&Utc),
                tz: Some(at.timezone()),
            },
        }
    }

    /// The JSON kept in a stored body: `dateTime` with the offset of the time's own zone (UTC
    /// when it names none), so that parsing it back gives the same instant.
    pub fn stored(&self) -> Value {
        match self {
            EvTime::Date(_) => self.render(Tz::UTC),
            EvTime::Timed { tz, .. } => self.render(tz.unwrap_or(Tz::UTC)),
        }
    }

    /// JSON as Google renders it: `dateTime` with the offset of `display`, `timeZone` kept.
    pub fn render(&self, display: Tz) -> Value {
        match self {
            EvTime::Date(d) => json!({"date": d.format("%Y-%m-%d").to_string()}),
            EvTime::Timed { at, tz } => {
                let text = at
                    .with_timezone(&display)
                    .to_rfc3339_opts(SecondsFormat::Secs, true);
                let mut v = json!({ "dateTime": text });
                if let Some(tz) = tz {
                    v["timeZone"] = json!(tz.name());
                }
                v
            }
        }
    }
}

/// Parses an `EventDateTime` object; `which` is "start" or "end" for messages.
pub fn parse_time(v: &Value, which: &str) -> Result<EvTime, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid(format!("Invalid {which} time.")))?;
    let tz = match obj.get("timeZone") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.parse::<Tz>().map_err(|_| {
            ApiError::invalid(format!("Invalid time zone definition for {which} time."))
        })?),
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "Invalid time zone definition for {which} time."
            )))
        }
    };
    let date = obj.get("date").filter(|v| !v.is_null());
    let date_time = obj.get("dateTime").filter(|v| !v.is_null());
    match (date, date_time) {
        (Some(_), Some(_)) | (None, None) => {
            Err(ApiError::bad_request(format!("Invalid {which} time.")))
        }
        (Some(d), None) => {
            let d = d
                .as_str()
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .ok_or_else(|| ApiError::invalid(format!("Invalid {which} time.")))?;
            Ok(EvTime::Date(d))
        }
        (None, Some(dt)) => {
            let s = dt
                .as_str()
                .ok_or_else(|| ApiError::invalid(format!("Invalid {which} time.")))?;
            if let Ok(at) = DateTime::parse_from_rfc3339(s) {
                return Ok(EvTime::Timed {
                    at: at.with_timezone(&Utc),
                    tz,
                });
            }
            let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .map_err(|_| ApiError::invalid(format!("Invalid {which} time.")))?;
            let zone = tz.ok_or_else(|| {
                ApiError::required(format!("Missing time zone definition for {which} time."))
            })?;
            let at = zone
                .from_local_datetime(&local)
                .earliest()
                .ok_or_else(|| ApiError::invalid(format!("Invalid {which} time.")))?;
            Ok(EvTime::Timed {
                at: at.with_timezone(&Utc),
                tz,
            })
        }
    }
}

/// Parses an RFC 3339 query timestamp (offset required), or 400 `invalid` naming the parameter.
pub fn parse_query_time(s: &str, name: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::bad_request("Bad Request").param(name))
}

/// One stored event: a single event, a series master, an exception, or a tombstone of any.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: String,
    /// The resource as stored (server fields included, `etag`/`updated` rendered on output).
    pub body: Map<String, Value>,
    /// Position in the global change sequence of the last change.
    pub seq: u64,
    pub etag: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub start: EvTime,
    pub end: EvTime,
    /// Deleted by `events.delete` (or with its series): a tombstone.
    pub deleted: bool,
    pub recurring_event_id: Option<String>,
    pub original_start: Option<EvTime>,
}

impl StoredEvent {
    pub fn status(&self) -> &str {
        self.body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("confirmed")
    }
    pub fn is_cancelled(&self) -> bool {
        self.deleted || self.status() == "cancelled"
    }
    pub fn recurrence(&self) -> Option<Vec<String>> {
        let arr = self.body.get("recurrence")?.as_array()?;
        let lines: Vec<String> = arr
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        (!lines.is_empty()).then_some(lines)
    }
    pub fn is_series(&self) -> bool {
        self.recurrence().is_some() && self.recurring_event_id.is_none()
    }
    /// A series with an RRULE that has neither `COUNT` nor `UNTIL`: only such a series is cut
    /// at the expansion horizon when a listing gives no `timeMax`.
    pub fn is_open_ended(&self) -> bool {
        self.recurrence()
            .is_some_and(|lines| recurrence::is_open_ended(&lines))
    }
    pub fn event_type(&self) -> &str {
        self.body
            .get("eventType")
            .and_then(Value::as_str)
            .unwrap_or("default")
    }

    /// The resource as Google returns it from get/insert/patch/update and full listings.
    pub fn render_full(&self, display: Tz) -> Value {
        let mut m = self.body.clone();
        m.insert("kind".into(), json!("calendar#event"));
        m.insert("etag".into(), json!(self.etag));
        m.insert("id".into(), json!(self.id));
        m.insert("created".into(), json!(fmt_ms(self.created)));
        m.insert("updated".into(), json!(fmt_ms(self.updated)));
        m.insert("start".into(), self.start.render(display));
        m.insert("end".into(), self.end.render(display));
        if let Some(os) = &self.original_start {
            m.insert("originalStartTime".into(), os.render(display));
        }
        if let Some(r) = &self.recurring_event_id {
            m.insert("recurringEventId".into(), json!(r));
        }
        if self.deleted {
            m.insert("status".into(), json!("cancelled"));
        }
        omit_defaults(&mut m);
        Value::Object(m)
    }

    /// The minimal tombstone of incremental feeds: `{kind, etag, id, status}` plus the series
    /// link for cancelled exceptions.
    pub fn render_minimal(&self, display: Tz) -> Value {
        let mut v = json!({"kind": "calendar#event", "etag": self.etag, "id": self.id, "status": "cancelled"});
        if let Some(r) = &self.recurring_event_id {
            v["recurringEventId"] = json!(r);
        }
        if let Some(os) = &self.original_start {
            v["originalStartTime"] = os.render(display);
        }
        v
    }
}

/// Google leaves out fields that hold their default value.
fn omit_defaults(m: &mut Map<String, Value>) {
    for (k, default) in [
        ("transparency", json!("opaque")),
        ("visibility", json!("default")),
        ("guestsCanInviteOthers", json!(true)),
        ("guestsCanSeeOtherGuests", json!(true)),
        ("guestsCanModify", json!(false)),
        ("anyoneCanAddSelf", json!(false)),
        ("privateCopy", json!(false)),
        ("endTimeUnspecified", json!(false)),
    ] {
        if m.get(k) == Some(&default) {
            m.remove(k);
        }
    }
}

/// `2026-03-01T09:00:00.112Z`: the millisecond UTC form of `created`/`updated`.
pub fn fmt_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A quoted etag token, unique per change.
pub fn make_etag(updated: DateTime<Utc>, seq: u64) -> String {
    format!("\"{}{:03}\"", updated.timestamp_micros(), seq % 1000)
}

/// True when `id` is a valid client-supplied event id (base32hex, 5–1024 chars).
pub fn valid_event_id(id: &str) -> bool {
    (5..=1024).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
}

/// Recursive JSON merge-patch: objects merge key by key, `null` deletes, arrays and scalars
/// replace (Google's PATCH semantics).
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => match target.get_mut(k) {
                Some(Value::Object(t)) => merge_patch(t, p),
                _ => {
                    let mut fresh = Map::new();
                    merge_patch(&mut fresh, p);
                    target.insert(k.clone(), Value::Object(fresh));
                }
            },
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

/// Removes `null`s everywhere (PUT treats `null` as "not sent").
pub fn strip_nulls(m: &mut Map<String, Value>) {
    m.retain(|_, v| !v.is_null());
    for v in m.values_mut() {
        if let Value::Object(o) = v {
            strip_nulls(o);
        }
    }
}

/// Where a write lands; decides which event types are allowed and who the organizer is.
pub struct WriteTarget<'a> {
    pub calendar: &'a Calendar,
}

/// The validated essentials of an event body.
pub struct Validated {
    pub start: EvTime,
    pub end: EvTime,
}

/// Validates a complete (merged) event body and normalises it in place: drops over-long
/// extended-property keys, truncates values, checks times, enums, event-type rules and the
/// recurrence.
pub fn validate(
    body: &mut Map<String, Value>,
    target: &WriteTarget<'_>,
    is_instance: bool,
) -> Result<Validated, ApiError> {
    let start_v = body
        .get("start")
        .cloned()
        .ok_or_else(|| ApiError::required("Missing start time."))?;
    let end_v = body
        .get("end")
        .cloned()
        .ok_or_else(|| ApiError::required("Missing end time."))?;
    let start = parse_time(&start_v, "start")?;
    let end = parse_time(&end_v, "end")?;
    if start.is_date() != end.is_date() {
        return Err(ApiError::bad_request(
            "Start and end times must either both be date or both be dateTime.",
        ));
    }
    let zone: Tz = target.calendar.time_zone.parse().unwrap_or(Tz::UTC);
    if end.instant(zone) < start.instant(zone) {
        return Err(ApiError::time_range_empty("end"));
    }
    for (field, allowed) in [
        ("status", &["confirmed", "tentative", "cancelled"][..]),
        ("transparency", &["opaque", "transparent"][..]),
        (
            "visibility",
            &["default", "public", "private", "confidential"][..],
        ),
    ] {
        if let Some(v) = body.get(field) {
            if !v.as_str().is_some_and(|s| allowed.contains(&s)) {
                return Err(ApiError::invalid(format!("Invalid value for: {field}")));
            }
        }
    }
    for field in ["summary", "description", "location", "colorId", "iCalUID"] {
        if let Some(v) = body.get(field) {
            if !v.is_string() {
                return Err(ApiError::invalid(format!("Invalid value for: {field}")));
            }
        }
    }
    if let Some(seq) = body.get("sequence") {
        if seq.as_i64().is_none_or(|n| n < 0) {
            return Err(ApiError::invalid("Invalid sequence value."));
        }
    }
    if let Some(r) = body.get("recurrence") {
        let lines = r
            .as_array()
            .ok_or_else(|| ApiError::invalid("Invalid recurrence rule."))?;
        let lines: Vec<String> = lines
            .iter()
            .map(|l| {
                l.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::invalid("Invalid recurrence rule."))
            })
            .collect::<Result<_, _>>()?;
        if !lines.is_empty() {
            if is_instance {
                return Err(ApiError::invalid("Invalid recurrence rule."));
            }
            if lines.iter().any(|l| {
                l.to_ascii_uppercase().starts_with("DTSTART")
                    || l.to_ascii_uppercase().starts_with("DTEND")
            }) {
                return Err(ApiError::invalid("Invalid recurrence rule."));
            }
            if let EvTime::Timed { tz: None, .. } = start {
                return Err(ApiError::required(
                    "Missing time zone definition for start time.",
                ));
            }
            let s = start.to_start(zone);
            let e = end.to_start(zone);
            recurrence::expand(&lines, &s, &e, None, None, 1)
                .map_err(|_| ApiError::invalid("Invalid recurrence rule."))?;
        }
    }
    validate_reminders(body)?;
    validate_attendees(body)?;
    normalise_extended_properties(body)?;
    validate_event_type(body, target, &start, &end)?;
    Ok(Validated { start, end })
}

fn validate_reminders(body: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(r) = body.get("reminders") else {
        return Ok(());
    };
    let r = r
        .as_object()
        .ok_or_else(|| ApiError::invalid("Invalid value for: reminders"))?;
    if let Some(o) = r.get("overrides") {
        let o = o
            .as_array()
            .ok_or_else(|| ApiError::invalid("Invalid value for: reminders.overrides"))?;
        if o.len() > 5 {
            return Err(ApiError::new(
                400,
                "calendar",
                "tooManyReminders",
                "Too many reminders.",
            ));
        }
        for item in o {
            let method_ok = item
                .get("method")
                .and_then(Value::as_str)
                .is_some_and(|m| m == "email" || m == "popup");
            let minutes_ok = item
                .get("minutes")
                .and_then(Value::as_i64)
                .is_some_and(|m| (0..=40320).contains(&m));
            if !method_ok {
                return Err(ApiError::new(
                    400,
                    "calendar",
                    "invalidReminderMethod",
                    "Invalid reminder method.",
                ));
            }
            if !minutes_ok {
                return Err(ApiError::invalid("Invalid reminder minutes value."));
            }
        }
        if r.get("useDefault") == Some(&json!(true)) && !o.is_empty() {
            return Err(ApiError::new(
                400,
                "calendar",
                "cannotUseDefaultRemindersAndSpecifyOverride",
                "Cannot specify both default reminders and overrides at the same time.",
            ));
        }
    }
    Ok(())
}

fn validate_attendees(body: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(a) = body.get("attendees") else {
        return Ok(());
    };
    let a = a
        .as_array()
        .ok_or_else(|| ApiError::invalid("Invalid value for: attendees"))?;
    for att in a {
        if !att
            .get("email")
            .and_then(Value::as_str)
            .is_some_and(|e| e.contains('@'))
        {
            return Err(ApiError::required("Missing attendee email."));
        }
    }
    Ok(())
}

/// Applies Google's extended-property limits: keys over 44 chars dropped, values over 1024
/// chars truncated, at most 300 properties and 32 kB in total.
fn normalise_extended_properties(body: &mut Map<String, Value>) -> Result<(), ApiError> {
    let Some(ep) = body.get_mut("extendedProperties") else {
        return Ok(());
    };
    let ep = ep
        .as_object_mut()
        .ok_or_else(|| ApiError::invalid("Invalid value for: extendedProperties"))?;
    let mut count = 0;
    let mut bytes = 0;
    for kind in ["private", "shared"] {
        let Some(map) = ep.get_mut(kind) else {
            continue;
        };
        let map = map.as_object_mut().ok_or_else(|| {
            ApiError::invalid(format!("Invalid value for: extendedProperties.{kind}"))
        })?;
        map.retain(|k, _| k.chars().count() <= EXT_KEY_MAX);
        for (k, v) in map.iter_mut() {
            let s = v.as_str().ok_or_else(|| {
                ApiError::invalid(format!("Invalid value for: extendedProperties.{kind}"))
            })?;
            if s.chars().count() > EXT_VALUE_MAX {
                *v = json!(s.chars().take(EXT_VALUE_MAX).collect::<String>());
            }
            count += 1;
            bytes += k.len() + v.as_str().map_or(0, str::len);
        }
    }
    if count > EXT_COUNT_MAX {
        return Err(ApiError::invalid(
            "The maximum number of extended properties (300) was exceeded.",
        ));
    }
    if bytes > EXT_BYTES_MAX {
        return Err(ApiError::invalid(
            "The total size of extended properties (32 kB) was exceeded.",
        ));
    }
    Ok(())
}

fn validate_event_type(
    body: &Map<String, Value>,
    target: &WriteTarget<'_>,
    start: &EvTime,
    end: &EvTime,
) -> Result<(), ApiError> {
    let et = body
        .get("eventType")
        .and_then(Value::as_str)
        .unwrap_or("default");
    if !EVENT_TYPES.contains(&et) {
        return Err(ApiError::invalid("Invalid event type.").param("eventType"));
    }
    for (prop, ty) in [
        ("outOfOfficeProperties", "outOfOffice"),
        ("focusTimeProperties", "focusTime"),
        ("workingLocationProperties", "workingLocation"),
        ("birthdayProperties", "birthday"),
    ] {
        if body.get(prop).is_some_and(|v| !v.is_null()) && et != ty {
            return Err(ApiError::bad_request(format!(
                "{prop} requires an event type of {ty}"
            )));
        }
    }
    let transparency = body
        .get("transparency")
        .and_then(Value::as_str)
        .unwrap_or("opaque");
    let visibility = body
        .get("visibility")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let restrict = |msg: String| Err(ApiError::event_type_restriction(msg));
    match et {
        "default" => Ok(()),
        "fromGmail" => {
            restrict("Events of type 'fromGmail' cannot be created through the API.".into())
        }
        "birthday" => {
            let has_private = body
                .get("extendedProperties")
                .and_then(|e| e.get("private"))
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty());
            if has_private {
                return restrict(
                    "'birthday' event type must not have private extended properties.".into(),
                );
            }
            let one_day = matches!((start, end), (EvTime::Date(s), EvTime::Date(e)) if *e == *s + chrono::Duration::days(1));
            let rec: Vec<&str> = body
                .get("recurrence")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let rec_ok = rec == ["RRULE:FREQ=YEARLY"]
                || rec == ["RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1"];
            if !one_day || visibility != "private" || transparency != "transparent" || !rec_ok {
                return restrict("Attempt made to modify 'birthday' event in a way that is not valid for this event type.".into());
            }
            Ok(())
        }
        status_type => {
            if !target.calendar.primary {
                return restrict(format!(
                    "'{status_type}' events can only be created on the primary calendar."
                ));
            }
            match status_type {
                "focusTime" | "outOfOffice" => {
                    if start.is_date() {
                        return restrict(format!(
                            "'{status_type}' events cannot be all-day events."
                        ));
                    }
                    if transparency != "opaque" {
                        return restrict(format!("'{status_type}' events must be opaque."));
                    }
                    if status_type == "outOfOffice"
                        && body
                            .get("attendees")
                            .and_then(Value::as_array)
                            .is_some_and(|a| !a.is_empty())
                    {
                        return restrict("'outOfOffice' events cannot have attendees.".into());
                    }
                    Ok(())
                }
                _ => {
                    if body
                        .get("workingLocationProperties")
                        .is_none_or(Value::is_null)
                    {
                        return Err(ApiError::required("Missing workingLocationProperties."));
                    }
                    if visibility != "public" || transparency != "transparent" {
                        return restrict(
                            "'workingLocation' events must be public and transparent.".into(),
                        );
                    }
                    if let (EvTime::Date(s), EvTime::Date(e)) = (start, end) {
                        if *e != *s + chrono::Duration::days(1) {
                            return restrict(
                                "All-day 'workingLocation' events must span exactly one day."
                                    .into(),
                            );
                        }
                    }
                    Ok(())
                }
            }
        }
    }
}

/// Fills the server-owned fields and Google's defaults on a freshly inserted body.
pub fn fill_defaults(body: &mut Map<String, Value>, id: &str, calendar: &Calendar) {
    body.insert("id".into(), json!(id));
    body.entry("status").or_insert(json!("confirmed"));
    body.entry("eventType").or_insert(json!("default"));
    body.entry("reminders")
        .or_insert(json!({"useDefault": true}));
    body.entry("sequence").or_insert(json!(0));
    body.entry("iCalUID")
        .or_insert(json!(format!("{id}@google.com")));
    body.insert(
        "creator".into(),
        json!({"email": calendar.owner, "self": true}),
    );
    let organizer = if calendar.primary {
        json!({"email": calendar.id, "self": true})
    } else {
        json!({"email": calendar.id, "displayName": calendar.summary, "self": true})
    };
    body.insert("organizer".into(), organizer);
    let eid =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{id} {}", calendar.id));
    body.insert(
        "htmlLink".into(),
        json!(format!("https://www.google.com/calendar/event?eid={eid}")),
    );
}

/// Removes the fields a client may not write.
pub fn strip_read_only(body: &mut Map<String, Value>) {
    for k in READ_ONLY {
        body.remove(*k);
    }
}

/// A generated event id: 26 base32hex chars like Google's.
pub fn new_event_id() -> String {
    random_token(26)
}

/// The occurrences of a series as virtual instances (exceptions are applied by the caller).
pub fn series_occurrences(
    master: &StoredEvent,
    zone: Tz,
    window_start: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    max: usize,
) -> Vec<(EvTime, EvTime)> {
    let Some(lines) = master.recurrence() else {
        return Vec::new();
    };
    let s = master.start.to_start(zone);
    let e = master.end.to_start(zone);
    // An end that names no zone of its own stays without one on every occurrence.
    let end_zone_named = matches!(master.end, EvTime::Timed { tz: Some(_), .. });
    let end_time = |end: &Start| match EvTime::from_start(end) {
        EvTime::Timed { at, .. } if !end_zone_named => EvTime::Timed { at, tz: None },
        other => other,
    };
    match recurrence::expand(&lines, &s, &e, window_start, window_end, max) {
        Ok(occ) => occ
            .iter()
            .map(|o| (EvTime::from_start(&o.start), end_time(&o.end)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The id of the instance of `series_id` that originally starts at `start`.
pub fn instance_id_for(series_id: &str, start: &EvTime, zone: Tz) -> String {
    recurrence::instance_id(series_id, &start.to_start(zone))
}

/// A virtual (unmodified) instance of a series: the master's body with the occurrence's own
/// start and end. A PATCH or PUT of an instance starts from this, so a new exception begins
/// at its occurrence, not at the series' first start.
pub fn virtual_instance(master: &StoredEvent, start: EvTime, end: EvTime, zone: Tz) -> StoredEvent {
    let id = instance_id_for(&master.id, &start, zone);
    let mut body = master.body.clone();
    body.remove("recurrence");
    body.insert("id".into(), json!(id));
    body.insert("start".into(), start.stored());
    body.insert("end".into(), end.stored());
    StoredEvent {
        id,
        body,
        seq: master.seq,
        etag: master.etag.clone(),
        created: master.created,
        updated: master.updated,
        original_start: Some(start.clone()),
        start,
        end,
        deleted: master.deleted,
        recurring_event_id: Some(master.id.clone()),
    }
}

/// True when `occurrence` matches an instance key (used to find an instance by id).
pub fn same_instance(a: &EvTime, b: &EvTime, zone: Tz) -> bool {
    a.to_start(zone).key() == b.to_start(zone).key()
}

/// Free-text match over the fields Google's `q` searches (substring, case-insensitive).
pub fn matches_q(ev: &StoredEvent, q: &str) -> bool {
    let q = q.to_lowercase();
    let field = |k: &str| {
        ev.body
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_lowercase)
            .unwrap_or_default()
    };
    if ["summary", "description", "location"]
        .iter()
        .any(|k| field(k).contains(&q))
    {
        return true;
    }
    let people = |k: &str| {
        ev.body
            .get(k)
            .map(|v| v.to_string().to_lowercase().contains(&q))
            .unwrap_or(false)
    };
    people("attendees") || people("organizer")
}

/// `privateExtendedProperty=name=value` / `sharedExtendedProperty=…` constraint check.
pub fn matches_ext(ev: &StoredEvent, kind: &str, constraint: &str) -> bool {
    let Some((k, v)) = constraint.split_once('=') else {
        return false;
    };
    ev.body
        .get("extendedProperties")
        .and_then(|e| e.get(kind))
        .and_then(|m| m.get(k))
        .and_then(Value::as_str)
        == Some(v)
}
