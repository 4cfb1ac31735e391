//! Wire types of Calendar API v3: what Google sends and what we send back.
//!
//! These mirror the JSON of Google's Calendar API v3 reference and nothing more: no sync
//! rules live here. Two quirks shape them:
//! - Google **omits default values** (`transparency: opaque`, `visibility: default`,
//!   `status: confirmed`, `eventType: default`), so those fields are `Option`s and the
//!   accessors ([`Event::transparency`], …) apply the documented default. The same structs
//!   are used as request bodies, where an absent field must stay absent (PATCH semantics).
//! - Enum values Google adds later must not break a sync, so every enum keeps an unknown
//!   value as `Other(String)` and writes it back unchanged.
//!
//! Unknown fields are ignored on input.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone as _, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::{CalendarId, ChannelId, EventId};

/// Declares a string enum whose unknown values survive a round trip.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($variant,)+
            /// A value this version does not know; kept verbatim.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Other(raw) => raw,
                }
            }
        }

        impl From<String> for $name {
            fn from(raw: String) -> Self {
                match raw.as_str() {
                    $($wire => Self::$variant,)+
                    _ => Self::Other(raw),
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                match value {
                    $name::Other(raw) => raw,
                    known => known.as_str().to_owned(),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// `cancelled` means deleted, or a cancelled occurrence of a live series (Google's events resource docs).
    EventStatus { Confirmed => "confirmed", Tentative => "tentative", Cancelled => "cancelled" }
);
wire_enum!(
    /// `opaque` blocks time; absence means `opaque`.
    Transparency { Opaque => "opaque", Transparent => "transparent" }
);
wire_enum!(
    /// Absence means `default` (the calendar's default visibility).
    Visibility {
        Default => "default",
        Public => "public",
        Private => "private",
        Confidential => "confidential",
    }
);
wire_enum!(
    /// Immutable after creation; absence means `default`.
    EventType {
        Default => "default",
        Birthday => "birthday",
        FocusTime => "focusTime",
        FromGmail => "fromGmail",
        OutOfOffice => "outOfOffice",
        WorkingLocation => "workingLocation",
    }
);
wire_enum!(
    /// An attendee's answer to an invitation.
    ResponseStatus {
        NeedsAction => "needsAction",
        Declined => "declined",
        Tentative => "tentative",
        Accepted => "accepted",
    }
);

/// `start`/`end`/`originalStartTime`: either an all-day `date` or a timed `dateTime`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDateTime {
    /// All-day: `yyyy-mm-dd`; an end date is exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<NaiveDate>,
    /// Timed: RFC 3339 with the offset Google rendered it in (kept, not converted to UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_time: Option<DateTime<FixedOffset>>,
    /// IANA zone; required by Google for recurring events, meaningless for all-day ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

impl EventDateTime {
    pub fn is_all_day(&self) -> bool {
        self.date.is_some() && self.date_time.is_none()
    }
}

/// `organizer` and `creator`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// True when this is the calendar whose copy is being read.
    #[serde(default, rename = "self", skip_serializing_if = "is_false")]
    pub is_self: bool,
}

/// One entry of `attendees[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attendee {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// True on the entry of the calendar whose copy is being read: its answer decides
    /// whether the event is declined for that calendar.
    #[serde(default, rename = "self", skip_serializing_if = "is_false")]
    pub is_self: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub organizer: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub resource: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
}

/// `extendedProperties`: string maps; `private` is bound to this calendar's copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedProperties {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub private: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shared: BTreeMap<String, String>,
}

/// `reminders`; blocks send `{"useDefault": false}` so nobody is alerted twice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reminders {
    #[serde(default)]
    pub use_default: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<ReminderOverride>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderOverride {
    pub method: String,
    pub minutes: u32,
}

/// An event resource (`calendar#event`). Every field a sync reads; absent stays absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<EventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EventStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<EventDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<EventDateTime>,
    /// The end is not really known; `end` is still present for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_unspecified: Option<bool>,
    /// RRULE/EXRULE/RDATE/EXDATE lines; only on a series' parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Vec<String>>,
    /// On an occurrence: the id of its series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurring_event_id: Option<EventId>,
    /// On an occurrence: the start the rule gave it, even after it was moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_start_time: Option<EventDateTime>,
    /// Shared by every copy of the same meeting on every calendar.
    #[serde(default, rename = "iCalUID", skip_serializing_if = "Option::is_none")]
    pub ical_uid: Option<String>,
    /// A quoted token (`"\"3480…\""`), used verbatim in `If-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparency: Option<Transparency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<EventType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attendees: Option<Vec<Attendee>>,
    /// True when the attendee list was cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attendees_omitted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizer: Option<Person>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<Person>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_properties: Option<ExtendedProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminders: Option<Reminders>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html_link: Option<String>,
}

impl Event {
    /// `confirmed` when Google left the field out.
    pub fn status(&self) -> EventStatus {
        self.status.clone().unwrap_or(EventStatus::Confirmed)
    }

    pub fn is_cancelled(&self) -> bool {
        self.status == Some(EventStatus::Cancelled)
    }

    /// `opaque` (busy) when Google left the field out.
    pub fn transparency(&self) -> Transparency {
        self.transparency.clone().unwrap_or(Transparency::Opaque)
    }

    /// `default` when Google left the field out.
    pub fn visibility(&self) -> Visibility {
        self.visibility.clone().unwrap_or(Visibility::Default)
    }

    /// `default` when Google left the field out.
    pub fn event_type(&self) -> EventType {
        self.event_type.clone().unwrap_or(EventType::Default)
    }

    /// The answer of this calendar's own attendee entry, if it is an attendee at all.
    pub fn self_response(&self) -> Option<&ResponseStatus> {
        self.attendees
            .as_deref()?
            .iter()
            .find(|a| a.is_self)
            .and_then(|a| a.response_status.as_ref())
    }

    pub fn is_all_day(&self) -> bool {
        self.start.as_ref().is_some_and(EventDateTime::is_all_day)
    }

    /// A private extended property, e.g. the block marker.
    pub fn private_property(&self, key: &str) -> Option<&str> {
        self.extended_properties
            .as_ref()?
            .private
            .get(key)
            .map(String::as_str)
    }
}

/// One page of `events.list` or `events.instances` (`calendar#events`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsPage {
    #[serde(default)]
    pub items: Vec<Event>,
    /// More pages follow; repeat the identical query with this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
    /// Only on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_token: Option<String>,
    /// The calendar's zone; available with only the `calendar.events` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The calendar's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// The body of `events.watch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchRequest {
    pub id: ChannelId,
    /// Always `web_hook`.
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
    /// Echoed in `X-Goog-Channel-Token`; authenticates and routes pings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<WatchParams>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchParams {
    /// Seconds, as a string.
    pub ttl: String,
}

/// A push channel as `events.watch` returns it (`api#channel`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub id: ChannelId,
    /// Needed by `channels.stop`; the same for every channel on one calendar.
    pub resource_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Milliseconds since the epoch. Google encodes int64 as a JSON string; a number is
    /// accepted too (the reference page shows one).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "int64_as_string::serialize",
        deserialize_with = "int64_as_string::deserialize"
    )]
    pub expiration: Option<i64>,
}

impl Channel {
    /// When Google stops delivering on this channel; the returned value is authoritative.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        Utc.timestamp_millis_opt(self.expiration?).single()
    }
}

/// `calendars.get` (`calendar#calendar`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Calendar {
    /// For `primary`, the account's e-mail address.
    pub id: CalendarId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// `calendarList.get` (`calendar#calendarListEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalendarListEntry {
    /// For the primary calendar, the account's e-mail address.
    pub id: CalendarId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// `freeBusyReader` | `reader` | `writerWithoutPrivateAccess` | `writer` | `owner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_role: Option<String>,
    /// Omitted (false) on every entry but the primary one.
    #[serde(default, skip_serializing_if = "is_false")]
    pub primary: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub hidden: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

/// Google's error envelope: `{"error": {"code", "message", "errors": [{"reason", …}]}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
    /// google.rpc code name (`UNAUTHENTICATED`, …); absent from Calendar's documented examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorItem {
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl ErrorEnvelope {
    /// `errors[0].reason`, the field Google's guides branch on.
    pub fn reason(&self) -> Option<&str> {
        self.error.errors.first().map(|e| e.reason.as_str())
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// int64 carried as a JSON string (`"1426325213000"`), Google's JSON convention.
pub(crate) mod int64_as_string {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Number(n)) => Ok(Some(n)),
            Some(Raw::Text(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("not an int64: {text:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as Google returns it after insert.
    const SAMPLE_BLOCK: &str = r#"{
      "kind": "calendar#event",
      "etag": "\"3480508598540894\"",
      "id": "bs0q2k4m6o8r0t2v4l6n8p0r2t",
      "status": "confirmed",
      "htmlLink": "https://www.google.com/calendar/event?eid=...",
      "created": "2026-03-01T09:00:00.000Z",
      "updated": "2026-03-01T09:00:00.112Z",
      "summary": "Busy",
      "creator": {"email": "bob@example.com", "self": true},
      "organizer": {"email": "bob@example.com", "self": true},
      "start": {"dateTime": "2026-03-05T10:00:00-05:00", "timeZone": "America/New_York"},
      "end":   {"dateTime": "2026-03-05T11:00:00-05:00", "timeZone": "America/New_York"},
      "visibility": "private",
      "iCalUID": "bs0q2k4m6o8r0t2v4l6n8p0r2t@google.com",
      "sequence": 0,
      "extendedProperties": {"private": {"blocksync_src": "alice@example.com:abc123"}},
      "reminders": {"useDefault": false},
      "eventType": "default"
    }"#;

    #[test]
    fn googles_sample_block_deserializes_with_every_field_a_sync_needs() {
        let event: Event = serde_json::from_str(SAMPLE_BLOCK).unwrap();
        assert_eq!(
            event.id.as_ref().unwrap().as_str(),
            "bs0q2k4m6o8r0t2v4l6n8p0r2t"
        );
        assert_eq!(event.etag.as_deref(), Some("\"3480508598540894\""));
        assert_eq!(event.status(), EventStatus::Confirmed);
        assert_eq!(event.visibility(), Visibility::Private);
        assert_eq!(event.event_type(), EventType::Default);
        assert_eq!(
            event.ical_uid.as_deref(),
            Some("bs0q2k4m6o8r0t2v4l6n8p0r2t@google.com")
        );
        assert_eq!(
            event.private_property("blocksync_src"),
            Some("alice@example.com:abc123")
        );
        assert_eq!(
            event.reminders,
            Some(Reminders {
                use_default: false,
                overrides: vec![]
            })
        );
        assert!(event.organizer.as_ref().unwrap().is_self);
        let start = event.start.as_ref().unwrap();
        assert_eq!(start.time_zone.as_deref(), Some("America/New_York"));
        assert_eq!(
            start.date_time.unwrap().to_rfc3339(),
            "2026-03-05T10:00:00-05:00"
        );
        assert!(!event.is_all_day());
        assert_eq!(event.sequence, Some(0));
        assert_eq!(
            event
                .updated
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "2026-03-01T09:00:00.112Z"
        );
    }

    #[test]
    fn an_omitted_transparency_means_busy_and_omitted_visibility_means_default() {
        let event: Event = serde_json::from_str(SAMPLE_BLOCK).unwrap();
        assert_eq!(event.transparency, None);
        assert_eq!(event.transparency(), Transparency::Opaque);
        let bare: Event = serde_json::from_str(r#"{"id": "abcde"}"#).unwrap();
        assert_eq!(bare.visibility(), Visibility::Default);
        assert_eq!(bare.status(), EventStatus::Confirmed);
        assert_eq!(bare.event_type(), EventType::Default);
    }

    #[test]
    fn a_free_event_reads_as_transparent() {
        let event: Event =
            serde_json::from_str(r#"{"id": "abcde", "transparency": "transparent"}"#).unwrap();
        assert_eq!(event.transparency(), Transparency::Transparent);
    }

    #[test]
    fn a_tombstone_with_only_an_id_and_status_deserializes() {
        let event: Event = serde_json::from_str(
            r#"{"kind":"calendar#event","etag":"\"1\"","id":"bs0q2k4m6o","status":"cancelled"}"#,
        )
        .unwrap();
        assert!(event.is_cancelled());
        assert!(event.start.is_none());
    }

    #[test]
    fn a_cancelled_occurrence_names_its_series_and_original_start() {
        let event: Event = serde_json::from_str(
            r#"{"id":"abcdef_20260826T110000Z","status":"cancelled","recurringEventId":"abcdef",
                "originalStartTime":{"dateTime":"2026-08-26T13:00:00+02:00","timeZone":"Europe/Zurich"}}"#,
        )
        .unwrap();
        assert_eq!(event.recurring_event_id.unwrap().as_str(), "abcdef");
        assert!(event.original_start_time.unwrap().date_time.is_some());
    }

    #[test]
    fn an_all_day_event_keeps_its_dates() {
        let event: Event = serde_json::from_str(
            r#"{"id":"abcde","start":{"date":"2026-03-06"},"end":{"date":"2026-03-07"}}"#,
        )
        .unwrap();
        assert!(event.is_all_day());
        assert_eq!(event.end.unwrap().date.unwrap().to_string(), "2026-03-07");
    }

    #[test]
    fn the_calendars_own_declined_answer_is_found_among_attendees() {
        let event: Event = serde_json::from_str(
            r#"{"id":"abcde","attendees":[
                {"email":"org@example.com","organizer":true,"responseStatus":"accepted"},
                {"email":"me@example.com","self":true,"responseStatus":"declined"}]}"#,
        )
        .unwrap();
        assert_eq!(event.self_response(), Some(&ResponseStatus::Declined));
    }

    #[test]
    fn unknown_enum_values_and_fields_are_tolerated_and_round_trip() {
        let event: Event = serde_json::from_str(
            r#"{"id":"abcde","eventType":"somethingNew","visibility":"secret","brandNew":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(event.event_type(), EventType::Other("somethingNew".into()));
        let back = serde_json::to_value(&event).unwrap();
        assert_eq!(back["eventType"], "somethingNew");
        assert_eq!(back["visibility"], "secret");
    }

    #[test]
    fn a_request_body_built_from_an_event_omits_what_was_not_set() {
        let body = Event {
            summary: Some("Calendar 01 Block".into()),
            visibility: Some(Visibility::Private),
            transparency: Some(Transparency::Opaque),
            reminders: Some(Reminders::default()),
            ..Event::default()
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "summary": "Calendar 01 Block",
                "visibility": "private",
                "transparency": "opaque",
                "reminders": {"useDefault": false}
            })
        );
    }

    #[test]
    fn a_channel_expiration_is_read_from_a_string_or_a_number() {
        let from_string: Channel = serde_json::from_str(
            r#"{"kind":"api#channel","id":"4ba78bf0-6a47","resourceId":"ret08u3rv24htgh289g",
                "resourceUri":"https://x/events?alt=json","expiration":"1426325213000"}"#,
        )
        .unwrap();
        assert_eq!(from_string.expiration, Some(1_426_325_213_000));
        assert_eq!(
            from_string.expires_at().unwrap().to_rfc3339(),
            "2015-03-14T09:26:53+00:00"
        );
        let from_number: Channel =
            serde_json::from_str(r#"{"id":"c1","resourceId":"r","expiration":1426325213000}"#)
                .unwrap();
        assert_eq!(from_number.expiration, Some(1_426_325_213_000));
        assert!(serde_json::from_str::<Channel>(
            r#"{"id":"c1","resourceId":"r","expiration":"soon"}"#
        )
        .is_err());
    }

    #[test]
    fn a_channel_expiration_is_written_as_a_string() {
        let channel = Channel {
            id: ChannelId::parse("c1").unwrap(),
            resource_id: "r".into(),
            resource_uri: None,
            token: None,
            expiration: Some(42),
        };
        assert_eq!(serde_json::to_value(&channel).unwrap()["expiration"], "42");
    }

    #[test]
    fn a_page_without_items_is_an_empty_page() {
        let page: EventsPage =
            serde_json::from_str(r#"{"kind":"calendar#events","nextPageToken":"p2"}"#).unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.next_page_token.as_deref(), Some("p2"));
    }

    #[test]
    fn the_error_envelope_exposes_the_first_reason() {
        let env: ErrorEnvelope = serde_json::from_str(
            r#"{"error":{"errors":[{"domain":"global","reason":"duplicate","message":"The requested identifier already exists."}],"code":409,"message":"The requested identifier already exists."}}"#,
        )
        .unwrap();
        assert_eq!(env.reason(), Some("duplicate"));
        assert_eq!(env.error.code, 409);
    }
}
