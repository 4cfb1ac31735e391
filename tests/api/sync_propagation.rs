//! Propagation end to end, on PostgreSQL and on SQLite: an event created, changed and deleted
//! on one calendar through the plain Google API has its private block created, patched in
//! place and deleted on the four others, with exactly one write per target calendar.

use crate::support::{id_of, spawn_app, AppOptions, Backend};
use serde_json::{json, Value};

const CALENDARS: usize = 5;
const TARGETS: u64 = (CALENDARS - 1) as u64;

async fn create_update_and_delete_propagate_to_all_four_other_calendars(backend: Backend) {
    let Some(app) =
        spawn_app(AppOptions::new("create_update_and_delete_propagate").backend(backend)).await
    else {
        return;
    };
    let user = app.user(0);

    // Create.
    app.writers_idle().await;
    app.reset_counters().await;
    let (start, end) = crate::support::hour_slot(3, 9);
    let source = user
        .insert(json!({
            "summary": "Dentist",
            "location": "Main street 1",
            "description": "bring the card",
            "start": {"dateTime": start, "timeZone": "Europe/Berlin"},
            "end": {"dateTime": end, "timeZone": "Europe/Berlin"},
            "attendees": [{"email": "friend@example.test"}],
            "reminders": {"useDefault": false, "overrides": [{"method": "popup", "minutes": 10}]},
        }))
        .await;
    let source_id = id_of(&source);
    let blocks = app.await_blocks_everywhere(0, &source_id).await;
    app.writers_idle().await;
    let counters = app.counters().await;
    assert_eq!(
        crate::support::count_2xx(&counters, "events.insert"),
        1 + TARGETS,
        "the user's insert plus exactly one insert per other calendar: {counters}"
    );
    for write in ["events.patch", "events.update", "events.delete"] {
        assert_eq!(
            crate::support::count_2xx(&counters, write),
            0,
            "no {write}: {counters}"
        );
    }
    for block in &blocks {
        a_block_has_the_generic_private_shape(block, "Calendar 01 Block", "Dentist");
        assert_eq!(block["start"]["dateTime"], source["start"]["dateTime"]);
        assert_eq!(block["end"]["dateTime"], source["end"]["dateTime"]);
    }
    let created_ids: Vec<String> = blocks.iter().map(id_of).collect();

    // Update: a new time and a new title patch the blocks in place.
    app.reset_counters().await;
    let (new_start, new_end) = crate::support::hour_slot(4, 14);
    let moved = user
        .patch(
            &source_id,
            json!({
                "summary": "Dentist (moved)",
                "start": {"dateTime": new_start, "timeZone": "Europe/Berlin"},
                "end": {"dateTime": new_end, "timeZone": "Europe/Berlin"},
            }),
        )
        .await;
    let patched = crate::support::eventually("the blocks to move", || async {
        let blocks = app.await_blocks_everywhere(0, &source_id).await;
        blocks
            .iter()
            .all(|b| {
                b["start"]["dateTime"] == moved["start"]["dateTime"]
                    && b["description"]
                        .as_str()
                        .is_some_and(|d| d.contains("Dentist (moved)"))
            })
            .then_some(blocks)
    })
    .await;
    app.writers_idle().await;
    let counters = app.counters().await;
    assert_eq!(
        crate::support::count_2xx(&counters, "events.patch"),
        1 + TARGETS,
        "the user's patch plus exactly one patch per other calendar: {counters}"
    );
    for write in ["events.insert", "events.update", "events.delete"] {
        assert_eq!(
            crate::support::count_2xx(&counters, write),
            0,
            "no {write}: {counters}"
        );
    }
    let patched_ids: Vec<String> = patched.iter().map(id_of).collect();
    assert_eq!(
        patched_ids, created_ids,
        "the same block ids, patched in place"
    );
    for block in &patched {
        a_block_has_the_generic_private_shape(block, "Calendar 01 Block", "Dentist (moved)");
    }

    // Delete.
    app.reset_counters().await;
    user.delete(&source_id).await;
    app.await_no_blocks_anywhere(0, &source_id).await;
    app.writers_idle().await;
    let counters = app.counters().await;
    assert_eq!(
        crate::support::count_2xx(&counters, "events.delete"),
        1 + TARGETS,
        "the user's delete plus exactly one delete per other calendar: {counters}"
    );
    app.assert_no_duplicates().await;
    app.assert_no_orphans().await;
}

/// The shape docs/sync-rules.md gives every block.
fn a_block_has_the_generic_private_shape(block: &Value, title: &str, details: &str) {
    assert_eq!(block["summary"], title, "the generic title: {block}");
    assert_eq!(block["visibility"], "private", "private: {block}");
    assert!(
        block["transparency"].is_null() || block["transparency"] == "opaque",
        "busy (opaque): {block}"
    );
    assert_eq!(
        block["reminders"],
        json!({"useDefault": false}),
        "no reminders: {block}"
    );
    assert!(block["attendees"].is_null(), "no attendees: {block}");
    assert!(block["location"].is_null(), "no location: {block}");
    assert!(block["conferenceData"].is_null(), "no conference: {block}");
    let description = block["description"].as_str().unwrap_or_default();
    assert!(
        description.contains(details),
        "the original title is in the description: {block}"
    );
}

async fn a_change_that_does_not_touch_the_block_makes_no_write(backend: Backend) {
    let Some(app) =
        spawn_app(AppOptions::new("a_no_op_change_makes_no_write").backend(backend)).await
    else {
        return;
    };
    let user = app.user(1);
    let source = user.insert_meeting("Planning", 2).await;
    let source_id = id_of(&source);
    app.await_blocks_everywhere(1, &source_id).await;
    app.writers_idle().await;

    app.reset_counters().await;
    // The source's own description is not part of a block.
    user.patch(&source_id, json!({"description": "agenda attached"}))
        .await;
    app.await_synced(1, &source_id, "description", &json!("agenda attached"))
        .await;
    app.writers_idle().await;

    let counters = app.counters().await;
    for write in ["events.insert", "events.update", "events.delete"] {
        assert_eq!(
            crate::support::count_2xx(&counters, write),
            0,
            "no {write}: {counters}"
        );
    }
    assert_eq!(
        crate::support::count_2xx(&counters, "events.patch"),
        1,
        "only the user's own patch: {counters}"
    );
}

async fn blocks_stay_consistent_after_changes_on_every_calendar(backend: Backend) {
    let Some(app) = spawn_app(AppOptions::new("changes_on_every_calendar").backend(backend)).await
    else {
        return;
    };
    let mut ids = Vec::new();
    for n in 0..CALENDARS {
        let event = app
            .user(n)
            .insert_meeting(&format!("Meeting {n}"), 1 + n as i64)
            .await;
        ids.push(id_of(&event));
    }
    for (n, id) in ids.iter().enumerate() {
        let blocks = app.await_blocks_everywhere(n, id).await;
        let alias = format!("Calendar {:02} Block", n + 1);
        assert!(blocks.iter().all(|b| b["summary"] == alias.as_str()));
    }
    app.assert_converged().await;
}

on_both_backends!(
    create_update_and_delete_propagate_to_all_four_other_calendars,
    a_change_that_does_not_touch_the_block_makes_no_write,
    blocks_stay_consistent_after_changes_on_every_calendar,
);
