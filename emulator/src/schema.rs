//! JSON type checks of request bodies against Google's discovery document.
//!
//! Role: Google parses an `Event` body against its published schema before anything else, so
//! a value of the wrong JSON type (`"guestsCanModify": "yes"`, `"anyoneCanAddSelf": 1`, a
//! string where `start` should be an object) is a 400, and a field the schema does not know
//! is ignored. This module does the same from the copy of the discovery document kept in
//! `emulator/data/calendar.v3.json`, embedded at build time, so every field of every nested
//! object is covered without a hand-written list.
//!
//! Collaborators: `routes::events` calls [`check_event`] on the raw body of `events.insert`,
//! `events.patch` and `events.update`, before the semantic checks of `events::validate`.
//! Lifecycle: the document is parsed once, on first use.
//!
//! Rules: `null` is accepted for any object member (PATCH deletes with it; insert and PUT
//! treat it as not sent) but not as an array element; integers must be JSON integers within
//! their format's range (a quoted number is refused); `date` and `date-time` strings must
//! parse (a `date-time` may omit its offset, as `EventDateTime.dateTime` allows with a
//! `timeZone`); `any` accepts everything; members the schema does not name are dropped.
use crate::error::ApiError;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// Google's discovery document for Calendar v3 (revision 20261030), as published.
pub const DISCOVERY_JSON: &str = include_str!("../data/calendar.v3.json");

/// The `schemas` section of the discovery document.
static SCHEMAS: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    let doc: Value =
        serde_json::from_str(DISCOVERY_JSON).expect("the embedded discovery document is JSON");
    doc.get("schemas")
        .and_then(Value::as_object)
        .cloned()
        .expect("the discovery document has schemas")
});

/// Checks an `Event` request body in place: wrong types are a 400 `invalid` naming the field,
/// unknown members are removed.
pub fn check_event(body: &mut Map<String, Value>) -> Result<(), ApiError> {
    let event = schema_named("Event");
    let mut path = String::new();
    check_object(body, event, &mut path)
}

fn schema_named(name: &str) -> &'static Value {
    SCHEMAS
        .get(name)
        .unwrap_or_else(|| panic!("schema {name} is in the discovery document"))
}

/// Follows `$ref`s to the schema that says what a value is.
fn resolve(schema: &'static Value) -> &'static Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(name) => resolve(schema_named(name)),
        None => schema,
    }
}

fn check_object(
    object: &mut Map<String, Value>,
    schema: &'static Value,
    path: &mut String,
) -> Result<(), ApiError> {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let mut unknown = Vec::new();
    for (key, value) in object.iter_mut() {
        let member = properties.and_then(|p| p.get(key)).or(additional);
        let Some(member) = member else {
            unknown.push(key.clone());
            continue;
        };
        if value.is_null() {
            continue;
        }
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        check_value(value, member, path)?;
        path.truncate(len);
    }
    for key in unknown {
        object.remove(&key);
    }
    Ok(())
}

fn check_value(
    value: &mut Value,
    schema: &'static Value,
    path: &mut String,
) -> Result<(), ApiError> {
    let schema = resolve(schema);
    let is_object_schema = schema.get("properties").is_some()
        || schema.get("additionalProperties").is_some()
        || schema.get("type").and_then(Value::as_str) == Some("object");
    if is_object_schema {
        return match value {
            Value::Object(object) => check_object(object, schema, path),
            other => Err(wrong(path, "an object", other)),
        };
    }
    let format = schema.get("format").and_then(Value::as_str);
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => {
            let Value::Array(items) = value else {
                return Err(wrong(path, "an array", value));
            };
            let item_schema = schema.get("items").unwrap_or(&Value::Null);
            for (index, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                if item.is_null() {
                    return Err(wrong(path, "a value", item));
                }
                check_value(item, item_schema, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Some("boolean") if !value.is_boolean() => Err(wrong(path, "a boolean", value)),
        Some("integer") if !integer_fits(value, format) => {
            Err(wrong(path, integer_name(format), value))
        }
        Some("number") if !value.is_number() => Err(wrong(path, "a number", value)),
        Some("string") => check_string(value, format, path),
        _ => Ok(()),
    }
}

fn check_string(value: &Value, format: Option<&str>, path: &str) -> Result<(), ApiError> {
    let Some(text) = value.as_str() else {
        return Err(wrong(path, "a string", value));
    };
    let ok = match format {
        Some("date") => NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        Some("date-time") => {
            DateTime::parse_from_rfc3339(text).is_ok()
                || NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        }
        Some("int64") => text.parse::<i64>().is_ok(),
        Some("uint64") => text.parse::<u64>().is_ok(),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let expected = match format {
        Some("date") => "a date (yyyy-mm-dd)",
        Some("date-time") => "an RFC 3339 date-time",
        _ => "a decimal integer string",
    };
    Err(ApiError::invalid(format!(
        "Invalid value for: {path}: expected {expected}"
    )))
}

fn integer_fits(value: &Value, format: Option<&str>) -> bool {
    match format {
        Some("uint32") => value.as_u64().is_some_and(|n| u32::try_from(n).is_ok()),
        Some("int32") => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        _ => value.is_i64() || value.is_u64(),
    }
}

fn integer_name(format: Option<&str>) -> &'static str {
    match format {
        Some("int32") => "a 32-bit integer",
        Some("uint32") => "an unsigned 32-bit integer",
        _ => "an integer",
    }
}

/// Google's `invalid` shape; the message names the field and the JSON types, never the value
/// (it may be an event's text).
fn wrong(path: &str, expected: &str, got: &Value) -> ApiError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ApiError::invalid(format!(
        "Invalid value for: {path}: expected {expected}, got {got}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checked(body: Value) -> Result<Value, String> {
        let Value::Object(mut map) = body else {
            panic!("test bodies are objects");
        };
        check_event(&mut map)
            .map(|()| Value::Object(map))
            .map_err(|e| e.0.message.clone())
    }

    #[test]
    fn a_well_typed_event_passes_unchanged() {
        let body = json!({"summary": "x", "start": {"dateTime": "2030-01-01T10:00:00Z"},
            "end": {"dateTime": "2030-01-01T11:00:00", "timeZone": "UTC"},
            "attendees": [{"email": "a@example.test", "optional": true, "additionalGuests": 2}],
            "reminders": {"useDefault": false, "overrides": [{"method": "popup", "minutes": 5}]},
            "extendedProperties": {"private": {"k": "v"}}, "sequence": 3,
            "workingLocationProperties": {"homeOffice": {"anything": [1, 2]}}});
        assert_eq!(checked(body.clone()), Ok(body));
    }

    #[test]
    fn wrong_types_name_the_field_and_both_types() {
        assert_eq!(
            checked(json!({"guestsCanModify": "yes"})),
            Err("Invalid value for: guestsCanModify: expected a boolean, got a string".into())
        );
        assert_eq!(
            checked(json!({"attendees": [{"email": "a@b", "optional": 1}]})),
            Err(
                "Invalid value for: attendees[0].optional: expected a boolean, got a number".into()
            )
        );
        assert_eq!(
            checked(json!({"extendedProperties": {"shared": {"k": 5}}})),
            Err(
                "Invalid value for: extendedProperties.shared.k: expected a string, got a number"
                    .into()
            )
        );
        assert_eq!(
            checked(json!({"sequence": 4_294_967_296_u64})),
            Err("Invalid value for: sequence: expected a 32-bit integer, got a number".into())
        );
        assert_eq!(
            checked(json!({"start": {"date": "tomorrow"}})),
            Err("Invalid value for: start.date: expected a date (yyyy-mm-dd)".into())
        );
    }

    #[test]
    fn nulls_are_members_not_sent_but_never_array_elements() {
        assert!(checked(json!({"summary": null, "start": {"dateTime": null}})).is_ok());
        assert_eq!(
            checked(json!({"recurrence": [null]})),
            Err("Invalid value for: recurrence[0]: expected a value, got null".into())
        );
    }

    #[test]
    fn members_the_schema_does_not_name_are_dropped() {
        assert_eq!(
            checked(
                json!({"summary": "x", "colour": "red", "start": {"date": "2030-01-01", "tz": 1}})
            ),
            Ok(json!({"summary": "x", "start": {"date": "2030-01-01"}}))
        );
    }
}
