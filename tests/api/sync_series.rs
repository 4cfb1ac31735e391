//! Series edits end to end, against the emulator: after each edit the instants blocked on
//! every other calendar are exactly the instants the source calendar is busy — one test per
//! way the engine once got it wrong (a free occurrence kept its block; a busy occurrence
//! under a series made free lost its block for good; move one, free all, busy all lost the
//! moved occurrence's block), on SQLite and PostgreSQL.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::{eventually, id_of, marker_of, spawn_app, AppOptions, Backend, TestApp};

/// The window every check looks at: the series below lives in it.
fn window() -> (String, String) {
    let from = chrono::Utc::now();
    let to = from + chrono::TimeDelta::days(60);
    (from.to_rfc3339(), to.to_rfc3339())
}

type Spans = BTreeSet<(String, String)>;

fn span(event: &Value) -> (String, String) {
    let instant = |t: &Value| {
        t["dateTime"]
            .as_str()
            .map(|raw| {
                chrono::DateTime::parse_from_rfc3339(raw)
                    .expect("an RFC 3339 time")
                    .with_timezone(&chrono::Utc)
                    .to_rfc3339()
            })
            .or_else(|| t["date"].as_str().map(str::to_owned))
            .expect("a start or end")
    };
    (instant(&event["start"]), instant(&event["end"]))
}

/// Busy instants of calendar `n`: live, opaque, not declined, not blocks.
async fn busy(app: &TestApp, n: usize) -> Spans {
    let (from, to) = window();
    app.user(n)
        .list_expanded(&from, &to)
        .await
        .iter()
        .filter(|e| marker_of(e).is_none())
        .filter(|e| e["status"] != "cancelled" && e["transparency"] != "transparent")
        .map(span)
        .collect()
}

/// Instants blocked on calendar `n` by blocks of calendar `source`.
async fn blocked(app: &TestApp, n: usize, source: usize) -> Spans {
    let (from, to) = window();
    let source_account = app.calendars[source].account.to_string();
    app.user(n)
        .list_expanded(&from, &to)
        .await
        .iter()
        .filter(|e| e["status"] != "cancelled")
        .filter(|e| marker_of(e).is_some_and(|(account, _)| account == source_account))
        .map(span)
        .collect()
}

/// Waits until every other calendar blocks exactly what calendar 0 has busy.
async fn in_step(app: &TestApp, what: &str) {
    let expected = busy(app, 0).await;
    eventually(what, || async {
        for n in 1..app.calendars.len() {
            if blocked(app, n, 0).await != expected {
                return None;
            }
        }
        Some(())
    })
    .await;
    app.writers_idle().await;
    for n in 1..app.calendars.len() {
        assert_eq!(blocked(app, n, 0).await, expected, "{what}: calendar {n}");
    }
}

async fn three_calendars(name: &'static str, backend: Backend) -> Option<TestApp> {
    let app = spawn_app(AppOptions::new(name).backend(backend).accounts(3)).await?;
    app.first_syncs_done().await;
    Some(app)
}

/// A weekly series of four, starting next Monday-ish at 09:00 UTC.
async fn weekly_series_of_four(app: &TestApp) -> (String, Vec<Value>) {
    let (start, end) = crate::support::hour_slot(3, 9);
    let series = app
        .user(0)
        .insert(json!({
            "summary": "Weekly sync",
            "start": {"dateTime": start, "timeZone": "UTC"},
            "end": {"dateTime": end, "timeZone": "UTC"},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"],
        }))
        .await;
    let id = id_of(&series);
    let instances = app.user(0).instances(&id).await;
    assert_eq!(instances.len(), 4);
    in_step(app, "the series' blocks").await;
    (id, instances)
}

/// The patch of one occurrence, with its own times (so it does not depend on how the
/// emulator starts an exception) and `extra` fields.
fn occurrence_patch(instance: &Value, shift_hours: i64, extra: Value) -> Value {
    let shift = |t: &Value| {
        let at = chrono::DateTime::parse_from_rfc3339(t["dateTime"].as_str().unwrap()).unwrap()
            + chrono::TimeDelta::hours(shift_hours);
        json!({"dateTime": at.to_rfc3339(), "timeZone": "UTC"})
    };
    let mut patch = json!({"start": shift(&instance["start"]), "end": shift(&instance["end"])});
    if let (Value::Object(patch), Value::Object(extra)) = (&mut patch, extra) {
        patch.extend(extra);
    }
    patch
}

async fn a_free_occurrence_of_a_series_is_not_blocked(backend: Backend) {
    let Some(app) = three_calendars("series_free_occurrence", backend).await else {
        return;
    };
    let (_, instances) = weekly_series_of_four(&app).await;

    app.user(0)
        .patch(
            &id_of(&instances[1]),
            occurrence_patch(&instances[1], 0, json!({"transparency": "transparent"})),
        )
        .await;

    assert_eq!(busy(&app, 0).await.len(), 3);
    in_step(&app, "the free occurrence to lose its block").await;
}

async fn a_busy_occurrence_under_a_series_made_free_keeps_its_block(backend: Backend) {
    let Some(app) = three_calendars("series_free_keeps_busy_exception", backend).await else {
        return;
    };
    let (id, instances) = weekly_series_of_four(&app).await;
    app.user(0)
        .patch(
            &id_of(&instances[2]),
            occurrence_patch(&instances[2], 2, json!({})),
        )
        .await;
    in_step(&app, "the moved occurrence's block").await;
    // The whole series made free: the moved occurrence follows (it never chose otherwise).
    app.user(0)
        .patch(&id, json!({"transparency": "transparent"}))
        .await;
    assert!(busy(&app, 0).await.is_empty());
    in_step(&app, "the free series to lose every block").await;

    // That one occurrence is busy after all, under a series that stays free.
    app.user(0)
        .patch(
            &id_of(&instances[2]),
            occurrence_patch(&instances[2], 2, json!({"transparency": "opaque"})),
        )
        .await;

    let busy_now = busy(&app, 0).await;
    assert_eq!(
        busy_now.len(),
        1,
        "only the moved occurrence is busy: {busy_now:?}"
    );
    in_step(&app, "the busy occurrence of a free series to be blocked").await;
    app.user(0)
        .patch(&id, json!({"transparency": "opaque"}))
        .await;
    assert_eq!(busy(&app, 0).await.len(), 4);
    in_step(
        &app,
        "the series busy again, the moved occurrence where it moved",
    )
    .await;
}

async fn moving_one_then_freeing_and_rebusying_the_series_blocks_every_occurrence_again(
    backend: Backend,
) {
    let Some(app) = three_calendars("series_move_free_busy", backend).await else {
        return;
    };
    let (id, instances) = weekly_series_of_four(&app).await;
    app.user(0)
        .patch(
            &id_of(&instances[1]),
            occurrence_patch(&instances[1], 3, json!({})),
        )
        .await;
    in_step(&app, "the moved occurrence's block").await;
    app.user(0)
        .patch(&id, json!({"transparency": "transparent"}))
        .await;
    in_step(&app, "the series made free").await;

    app.user(0)
        .patch(&id, json!({"transparency": "opaque"}))
        .await;

    assert_eq!(busy(&app, 0).await.len(), 4);
    in_step(
        &app,
        "every occurrence blocked again, the moved one where it moved",
    )
    .await;
    app.assert_no_duplicates().await;
    app.assert_no_orphans().await;
}

on_both_backends!(
    a_free_occurrence_of_a_series_is_not_blocked,
    a_busy_occurrence_under_a_series_made_free_keeps_its_block,
    moving_one_then_freeing_and_rebusying_the_series_blocks_every_occurrence_again,
);
