//! Google's wire event in, the planner's [`SourceEvent`] out.
//!
//! Role: the one place that reads a listed `calendar#event` ([`google::Event`]) into the
//! planner's own types, applying Google's "absent means default" rules. The CalendarActor
//! converts every listed event with [`source_event`] and stores the wire event as the
//! source event's `data` ([`stored_data`]), so a stored event can be planned again later
//! (same-meeting re-planning, holdings of a target) with [`from_stored`]. Pure: no I/O.

use chrono::{SecondsFormat, Utc};

use crate::google::{self, EventDateTime};

use super::marker::Marker;
use super::model::{
    EventStatus, EventTime, EventType, ResponseStatus, SourceEvent, Transparency, Visibility,
};

/// Why a listed event cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// Google always sends an id; an event without one is malformed.
    #[error("the event has no id")]
    MissingId,
    /// A live event must have a start and an end (tombstones may lack both).
    #[error("event {0}: a live event needs both a start and an end")]
    MissingTime(String),
    /// Neither `date` nor `dateTime` is set on a boundary that is present.
    #[error("event {0}: a time has neither `date` nor `dateTime`")]
    EmptyTime(String),
    /// Stored data that is no longer a wire event.
    #[error("stored event data is not a Google event: {0}")]
    Stored(String),
}

/// The planner's view of a listed event.
pub fn source_event(event: &google::Event) -> Result<SourceEvent, ConvertError> {
    let id = event.id.clone().ok_or(ConvertError::MissingId)?;
    let status = EventStatus::from_wire(event.status.as_ref().map(google::EventStatus::as_str));
    let time = |t: &Option<EventDateTime>| -> Result<Option<EventTime>, ConvertError> {
        t.as_ref()
            .map(|t| event_time(t).ok_or_else(|| ConvertError::EmptyTime(id.to_string())))
            .transpose()
    };
    let start = time(&event.start)?;
    let end = time(&event.end)?;
    if status != EventStatus::Cancelled && (start.is_none() || end.is_none()) {
        return Err(ConvertError::MissingTime(id.to_string()));
    }
    Ok(SourceEvent {
        status,
        summary: event.summary.clone(),
        description: event.description.clone(),
        location: event.location.clone(),
        start,
        end,
        recurrence: event.recurrence.clone().unwrap_or_default(),
        recurring_event_id: event.recurring_event_id.clone(),
        original_start: time(&event.original_start_time)?,
        ical_uid: event.ical_uid.clone(),
        transparency: Transparency::from_wire(event.transparency.as_ref().map(|t| t.as_str())),
        visibility: Visibility::from_wire(event.visibility.as_ref().map(|v| v.as_str())),
        event_type: EventType::from_wire(event.event_type.as_ref().map(|t| t.as_str())),
        self_response: event
            .self_response()
            .and_then(|r| ResponseStatus::from_wire(r.as_str())),
        marker: event
            .extended_properties
            .as_ref()
            .and_then(|p| Marker::from_private_properties(&p.private)),
        html_link: event.html_link.clone(),
        id,
    })
}

/// What is stored as a source event's `data`: the wire event itself, so a later change of
/// the conversion rules applies to stored events too.
pub fn stored_data(event: &google::Event) -> serde_json::Value {
    serde_json::to_value(event).unwrap_or(serde_json::Value::Null)
}

/// Reads back what [`stored_data`] stored.
pub fn from_stored(data: &serde_json::Value) -> Result<SourceEvent, ConvertError> {
    let event: google::Event =
        serde_json::from_value(data.clone()).map_err(|e| ConvertError::Stored(e.to_string()))?;
    source_event(&event)
}

/// `date` is all-day; `dateTime` is rendered once, canonically, so the block's hash only
/// moves when the instant, offset or zone really changed.
fn event_time(t: &EventDateTime) -> Option<EventTime> {
    match (&t.date_time, t.date) {
        (Some(date_time), _) => Some(EventTime::Timed {
            instant: date_time.with_timezone(&Utc),
            time_zone: t.time_zone.clone(),
            date_time: date_time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        }),
        (None, Some(date)) => Some(EventTime::all_day(date)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone as _};
    use serde_json::json;

    use super::*;
    use crate::domain::{AccountId, EventId};
    use crate::sync::{MARKER_INSTALLATION_KEY, MARKER_SOURCE_ACCOUNT_KEY};

    fn wire(value: serde_json::Value) -> google::Event {
        serde_json::from_value(value).expect("test JSON is an event")
    }

    #[test]
    fn a_timed_event_keeps_its_instant_offset_and_zone() {
        let event = wire(json!({
            "id": "abc123",
            "summary": "Design review",
            "start": {"dateTime": "2026-03-05T10:00:00-05:00", "timeZone": "America/New_York"},
            "end": {"dateTime": "2026-03-05T11:00:00-05:00", "timeZone": "America/New_York"},
            "iCalUID": "abc123@google.com",
        }));

        let converted = source_event(&event).unwrap();

        assert_eq!(converted.id, EventId::parse("abc123").unwrap());
        assert_eq!(converted.summary.as_deref(), Some("Design review"));
        assert_eq!(
            converted.start,
            Some(EventTime::Timed {
                instant: Utc.with_ymd_and_hms(2026, 3, 5, 15, 0, 0).unwrap(),
                time_zone: Some("America/New_York".to_owned()),
                date_time: "2026-03-05T10:00:00-05:00".to_owned(),
            })
        );
        assert_eq!(converted.ical_uid.as_deref(), Some("abc123@google.com"));
    }

    #[test]
    fn absent_fields_read_as_googles_defaults() {
        let event = wire(json!({
            "id": "abc123",
            "start": {"date": "2026-03-05"},
            "end": {"date": "2026-03-06"},
        }));

        let converted = source_event(&event).unwrap();

        assert_eq!(converted.status, EventStatus::Confirmed);
        assert_eq!(converted.transparency, Transparency::Opaque);
        assert_eq!(converted.visibility, Visibility::Default);
        assert_eq!(converted.event_type, EventType::Default);
        assert_eq!(converted.self_response, None);
        assert_eq!(converted.marker, None);
        assert_eq!(
            converted.start,
            Some(EventTime::all_day(
                NaiveDate::from_ymd_opt(2026, 3, 5).unwrap()
            ))
        );
    }

    #[test]
    fn the_calendars_own_attendee_answer_is_the_self_response() {
        let event = wire(json!({
            "id": "abc123",
            "status": "tentative",
            "transparency": "transparent",
            "eventType": "focusTime",
            "start": {"dateTime": "2026-03-05T10:00:00Z"},
            "end": {"dateTime": "2026-03-05T11:00:00Z"},
            "attendees": [
                {"email": "boss@example.com", "responseStatus": "accepted"},
                {"email": "me@example.com", "self": true, "responseStatus": "declined"},
            ],
        }));

        let converted = source_event(&event).unwrap();

        assert_eq!(converted.status, EventStatus::Tentative);
        assert_eq!(converted.transparency, Transparency::Transparent);
        assert_eq!(converted.event_type, EventType::FocusTime);
        assert_eq!(converted.self_response, Some(ResponseStatus::Declined));
    }

    #[test]
    fn a_private_marker_makes_the_event_a_block() {
        let event = wire(json!({
            "id": "abc123",
            "start": {"dateTime": "2026-03-05T10:00:00Z"},
            "end": {"dateTime": "2026-03-05T11:00:00Z"},
            "extendedProperties": {"private": {
                MARKER_INSTALLATION_KEY: "inst-1",
                MARKER_SOURCE_ACCOUNT_KEY: "7",
            }},
        }));

        let marker = source_event(&event).unwrap().marker.unwrap();

        assert_eq!(marker.installation, "inst-1");
        assert_eq!(marker.source_account_id(), Some(AccountId::new(7)));
    }

    #[test]
    fn a_tombstone_needs_no_times_and_keeps_its_occurrence() {
        let event = wire(json!({
            "id": "series1_20260305T150000Z",
            "status": "cancelled",
            "recurringEventId": "series1",
            "originalStartTime": {"dateTime": "2026-03-05T15:00:00Z"},
        }));

        let converted = source_event(&event).unwrap();

        assert_eq!(converted.status, EventStatus::Cancelled);
        assert_eq!(converted.start, None);
        assert_eq!(
            converted.recurring_event_id,
            Some(EventId::parse("series1").unwrap())
        );
        assert!(converted.original_start.is_some());
        assert!(converted.is_instance());
    }

    #[test]
    fn a_live_event_without_times_or_id_is_refused() {
        let no_end = wire(json!({"id": "abc123", "start": {"date": "2026-03-05"}}));
        let no_id = wire(json!({"start": {"date": "2026-03-05"}, "end": {"date": "2026-03-06"}}));
        let empty_time = wire(json!({"id": "abc123", "start": {}, "end": {"date": "2026-03-06"}}));

        assert!(matches!(
            source_event(&no_end),
            Err(ConvertError::MissingTime(_))
        ));
        assert_eq!(source_event(&no_id), Err(ConvertError::MissingId));
        assert!(matches!(
            source_event(&empty_time),
            Err(ConvertError::EmptyTime(_))
        ));
    }

    #[test]
    fn a_series_keeps_its_recurrence_lines() {
        let event = wire(json!({
            "id": "series1",
            "start": {"dateTime": "2026-03-05T10:00:00+01:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2026-03-05T11:00:00+01:00", "timeZone": "Europe/Berlin"},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5"],
        }));

        let converted = source_event(&event).unwrap();

        assert!(converted.is_series());
        assert_eq!(converted.recurrence, vec!["RRULE:FREQ=WEEKLY;COUNT=5"]);
    }

    #[test]
    fn stored_data_reads_back_as_the_same_source_event() {
        let event = wire(json!({
            "id": "abc123",
            "summary": "Design review",
            "start": {"dateTime": "2026-03-05T10:00:00.500Z"},
            "end": {"dateTime": "2026-03-05T11:00:00Z"},
            "attendees": [{"email": "me@example.com", "self": true, "responseStatus": "accepted"}],
        }));

        let stored = stored_data(&event);

        assert_eq!(from_stored(&stored).unwrap(), source_event(&event).unwrap());
        assert!(matches!(
            from_stored(&json!([1, 2])),
            Err(ConvertError::Stored(_))
        ));
    }
}
