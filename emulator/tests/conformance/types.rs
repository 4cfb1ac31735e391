//! JSON types of an Event body are checked as Google checks them (docs/emulator.md, "JSON
//! types"): this module walks the `Event` schema of the repository's copy of the discovery document
//! (`emulator/data/calendar.v3.json`) and sends one wrong-typed value per field, on insert,
//! patch and update.

use crate::support::{error_reason, TestEmu};
use reqwest::Method;
use serde_json::{json, Map, Value};

const EV: &str = "/calendar/v3/calendars/primary/events";

fn discovery() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/calendar.v3.json");
    let text = std::fs::read_to_string(path).expect("the discovery document is in the repository");
    serde_json::from_str(&text).expect("JSON")
}

/// One step into a body: an object member or the first array element.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    First,
}

/// Every field reachable from `Event`, with a value of the wrong JSON type for it. Shared
/// schemas are followed at most twice along one path (the schema has no cycles today, but a
/// walk must not depend on that).
fn wrong_typed_fields(doc: &Value) -> Vec<(Vec<Step>, Value)> {
    let schemas = doc["schemas"].as_object().expect("schemas");
    let mut out = Vec::new();
    walk(
        schemas,
        &doc["schemas"]["Event"],
        &mut Vec::new(),
        &mut Vec::new(),
        &mut out,
    );
    out
}

fn walk(
    schemas: &Map<String, Value>,
    schema: &Value,
    path: &mut Vec<Step>,
    refs: &mut Vec<String>,
    out: &mut Vec<(Vec<Step>, Value)>,
) {
    if let Some(name) = schema.get("$ref").and_then(Value::as_str) {
        if refs.iter().filter(|r| *r == name).count() >= 2 {
            return;
        }
        refs.push(name.to_string());
        walk(schemas, &schemas[name], path, refs, out);
        refs.pop();
        return;
    }
    let is_object = schema.get("properties").is_some()
        || schema.get("additionalProperties").is_some()
        || schema["type"] == "object";
    if is_object {
        if !path.is_empty() {
            out.push((path.clone(), json!("an object was expected")));
        }
        let members = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (key, member) in &members {
            path.push(Step::Key(key.clone()));
            walk(schemas, member, path, refs, out);
            path.pop();
        }
        if let Some(additional) = schema.get("additionalProperties") {
            path.push(Step::Key("somekey".into()));
            walk(schemas, additional, path, refs, out);
            path.pop();
        }
        return;
    }
    let wrong = match (schema["type"].as_str(), schema["format"].as_str()) {
        (Some("array"), _) => {
            out.push((path.clone(), json!({"not": "an array"})));
            path.push(Step::First);
            walk(schemas, &schema["items"], path, refs, out);
            path.pop();
            return;
        }
        (Some("boolean"), _) => json!("yes"),
        (Some("integer"), _) => json!("ten"),
        (Some("number"), _) => json!("many"),
        (Some("string"), Some("date" | "date-time")) => json!("soon"),
        (Some("string"), _) => json!({"not": "a string"}),
        _ => return, // `any`: every value is of the right type
    };
    out.push((path.clone(), wrong));
}

fn describe(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => format!(".{k}"),
            Step::First => "[0]".into(),
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// `base` with `value` placed at `path` (objects and one-element arrays created as needed).
fn with_value(base: &Value, path: &[Step], value: Value) -> Value {
    let mut body = base.clone();
    let mut slot = &mut body;
    for step in path {
        slot = match step {
            Step::Key(k) => {
                if !slot.is_object() {
                    *slot = json!({});
                }
                slot.as_object_mut()
                    .expect("object")
                    .entry(k.clone())
                    .or_insert(Value::Null)
            }
            Step::First => {
                if !slot.is_array() {
                    *slot = json!([null]);
                }
                &mut slot.as_array_mut().expect("array")[0]
            }
        };
    }
    *slot = value;
    body
}

fn event() -> Value {
    json!({"summary": "typed", "start": {"dateTime": "2030-01-01T10:00:00Z"},
        "end": {"dateTime": "2030-01-01T11:00:00Z"}})
}

fn assert_invalid(r: &crate::support::Resp, method: &str, field: &str) {
    assert_eq!(r.status, 400, "{method} {field}: {}", r.text);
    assert_eq!(error_reason(r), "invalid", "{method} {field}: {}", r.text);
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("Invalid value for: {field}")),
        "{method} {field}: {message}"
    );
    assert_eq!(r.body["error"]["errors"][0]["domain"], "global");
    assert_eq!(r.body["error"]["code"], 400);
}

#[tokio::test]
async fn every_event_field_of_the_wrong_json_type_is_refused_on_insert_patch_and_update() {
    // Arrange
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let cases = wrong_typed_fields(&discovery());
    assert!(
        cases.len() > 100,
        "the walk reaches nested fields: {}",
        cases.len()
    );
    let target = emu.insert(&t, event()).await;
    let id = target["id"].as_str().unwrap().to_string();

    for (path, wrong) in &cases {
        let field = describe(path);
        // Act + Assert: insert and update send a whole event, patch only the wrong field.
        let insert = emu
            .call(
                Method::POST,
                EV,
                &t,
                Some(with_value(&event(), path, wrong.clone())),
            )
            .await;
        assert_invalid(&insert, "insert", &field);
        let update = emu
            .call(
                Method::PUT,
                &format!("{EV}/{id}"),
                &t,
                Some(with_value(&event(), path, wrong.clone())),
            )
            .await;
        assert_invalid(&update, "update", &field);
        let patch = emu
            .call(
                Method::PATCH,
                &format!("{EV}/{id}"),
                &t,
                Some(with_value(&json!({}), path, wrong.clone())),
            )
            .await;
        assert_invalid(&patch, "patch", &field);
    }

    // Nothing was stored by any refused request.
    let (items, _) = emu.list_all(&t, "").await;
    assert_eq!(items.len(), 1);
    let get = emu.call(Method::GET, &format!("{EV}/{id}"), &t, None).await;
    assert_eq!(get.body["etag"], target["etag"]);
}

#[tokio::test]
async fn the_two_measured_cases_get_googles_400() {
    // Arrange
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let mut body = event();
    body["guestsCanModify"] = json!("yes");
    let mut other = event();
    other["anyoneCanAddSelf"] = json!(1);

    // Act
    let a = emu.call(Method::POST, EV, &t, Some(body)).await;
    let b = emu.call(Method::POST, EV, &t, Some(other)).await;

    // Assert
    assert_eq!(
        a.body["error"]["message"],
        "Invalid value for: guestsCanModify: expected a boolean, got a string"
    );
    assert_eq!(
        b.body["error"]["message"],
        "Invalid value for: anyoneCanAddSelf: expected a boolean, got a number"
    );
}

#[tokio::test]
async fn members_the_schema_does_not_name_are_ignored_as_google_ignores_them() {
    // Arrange
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let mut body = event();
    body["colour"] = json!("red");
    body["start"]["zone"] = json!(5);

    // Act
    let created = emu.insert(&t, body).await;
    let id = created["id"].as_str().unwrap();
    let patched = emu
        .call(
            Method::PATCH,
            &format!("{EV}/{id}"),
            &t,
            Some(json!({"flavour": {"deep": true}})),
        )
        .await;

    // Assert
    assert!(created.get("colour").is_none(), "{created}");
    assert!(created["start"].get("zone").is_none(), "{created}");
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert!(patched.body.get("flavour").is_none());
}
