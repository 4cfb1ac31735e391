//! The mirror rules of docs/sync-rules.md as a user sees them on Google: what gets a block, what
//! does not, and what a block of a series, an all-day event or a zoned event looks like.

use crate::support::{hour_slot, id_of, marker_of, spawn_app, AppOptions, TestApp};
use serde_json::{json, Value};

async fn five_calendars(name: &'static str) -> TestApp {
    spawn_app(AppOptions::new(name))
        .await
        .expect("SQLite is always available")
}

/// Waits until the service has seen `event` of calendar `n` and every writer is idle, so
/// "no block" is a settled fact and not a race.
async fn settled(app: &TestApp, n: usize, event: &Value) {
    app.await_synced(n, &id_of(event), "summary", &event["summary"])
        .await;
    app.writers_idle().await;
}

async fn total_blocks(app: &TestApp) -> usize {
    let mut total = 0;
    for n in 0..app.calendars.len() {
        total += app.blocks_on(n).await.len();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_never_produces_a_block() {
    let app = five_calendars("a_block_never_produces_a_block").await;
    let source = app.user(0).insert_meeting("Review", 2).await;
    let source_id = id_of(&source);
    let blocks = app.await_blocks_everywhere(0, &source_id).await;

    // The blocks were themselves synced by their calendars' actors (a sync of each target).
    assert_eq!(blocks.len(), 4);
    for n in 1..5 {
        app.await_seen(n).await;
    }
    app.writers_idle().await;

    assert!(
        app.blocks_on(0).await.is_empty(),
        "no block comes back to the source"
    );
    for n in 1..5 {
        assert_eq!(app.blocks_on(n).await.len(), 1, "only the one block");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_another_installations_marker_is_never_mirrored() {
    let app = five_calendars("another_installations_marker").await;
    let (start, end) = hour_slot(2, 11);
    let foreign = app
        .user(2)
        .insert(json!({
            "summary": "Someone else's block",
            "start": {"dateTime": start},
            "end": {"dateTime": end},
            "extendedProperties": {"private": {
                "mcssInstallation": "another-installation",
                "mcssSourceAccount": "1",
                "mcssSourceEvent": "abcdefabcdef",
            }},
        }))
        .await;

    app.await_seen(2).await;
    app.writers_idle().await;

    assert!(marker_of(&foreign).is_some());
    assert_eq!(total_blocks(&app).await, 1, "only the foreign block itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_invitation_and_a_free_event_produce_no_block() {
    let app = five_calendars("declined_and_free_produce_no_block").await;
    let me = app.calendars[0].email.clone();
    let (start, end) = hour_slot(2, 13);
    let declined = app
        .user(0)
        .insert(json!({
            "summary": "Declined invitation",
            "start": {"dateTime": start},
            "end": {"dateTime": end},
            "attendees": [
                {"email": "boss@example.test", "organizer": true, "responseStatus": "accepted"},
                {"email": me, "self": true, "responseStatus": "declined"},
            ],
        }))
        .await;
    let (start, end) = hour_slot(2, 15);
    let free = app
        .user(0)
        .insert(json!({
            "summary": "Free time",
            "transparency": "transparent",
            "start": {"dateTime": start},
            "end": {"dateTime": end},
        }))
        .await;

    settled(&app, 0, &declined).await;
    settled(&app, 0, &free).await;

    assert_eq!(total_blocks(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_switches_to_free_loses_its_blocks() {
    let app = five_calendars("switch_to_free_removes_blocks").await;
    let source = app.user(1).insert_meeting("Lunch", 2).await;
    let source_id = id_of(&source);
    app.await_blocks_everywhere(1, &source_id).await;

    app.user(1)
        .patch(&source_id, json!({"transparency": "transparent"}))
        .await;

    app.await_no_blocks_anywhere(1, &source_id).await;
    app.assert_no_duplicates().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_the_owner_declines_loses_its_blocks() {
    let app = five_calendars("declining_removes_blocks").await;
    let me = app.calendars[1].email.clone();
    let (start, end) = hour_slot(3, 10);
    let attendees = |answer: &str| {
        json!([
            {"email": "boss@example.test", "organizer": true, "responseStatus": "accepted"},
            {"email": me, "self": true, "responseStatus": answer},
        ])
    };
    let source = app
        .user(1)
        .insert(json!({
            "summary": "All hands",
            "start": {"dateTime": start},
            "end": {"dateTime": end},
            "attendees": attendees("accepted"),
        }))
        .await;
    let source_id = id_of(&source);
    app.await_blocks_everywhere(1, &source_id).await;

    app.user(1)
        .patch(&source_id, json!({"attendees": attendees("declined")}))
        .await;

    app.await_no_blocks_anywhere(1, &source_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_meeting_on_two_calendars_produces_no_block_between_them() {
    let app = five_calendars("same_meeting_on_two_calendars").await;
    let (start, end) = hour_slot(2, 16);
    let meeting = |summary: &str| {
        json!({
            "summary": summary,
            "iCalUID": "weekly-sync-4711@example.test",
            "start": {"dateTime": start},
            "end": {"dateTime": end},
        })
    };
    let on_one = app.user(0).insert(meeting("Sync with partners")).await;
    let one_id = id_of(&on_one);
    // Calendar 02 first gets a block for calendar 01's copy …
    app.await_blocks_everywhere(0, &one_id).await;

    // … which must go once calendar 02 holds the meeting itself.
    let on_two = app.user(1).insert(meeting("Sync with partners")).await;
    let two_id = id_of(&on_two);

    crate::support::eventually("no block between the two copies", || async {
        let one_on_two = app.blocks_for(1, 0, &one_id).await;
        let two_on_one = app.blocks_for(0, 1, &two_id).await;
        (one_on_two.is_empty() && two_on_one.is_empty()).then_some(())
    })
    .await;
    settled(&app, 1, &on_two).await;
    assert!(app.blocks_for(1, 0, &one_id).await.is_empty());
    assert!(app.blocks_for(0, 1, &two_id).await.is_empty());
    for n in 2..5 {
        let held =
            app.blocks_for(n, 0, &one_id).await.len() + app.blocks_for(n, 1, &two_id).await.len();
        assert!(
            held >= 1,
            "{} is still blocked for the meeting",
            app.calendars[n].alias
        );
    }
    app.assert_no_duplicates().await;
}

/// The instance-id suffix (`YYYYMMDDTHHMMSSZ`) of an occurrence id.
fn suffix(instance_id: &str) -> &str {
    instance_id
        .rsplit_once('_')
        .map(|(_, s)| s)
        .expect("an instance id has a suffix")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recurring_series_with_a_moved_and_a_cancelled_occurrence_becomes_one_block_series() {
    let app = five_calendars("recurring_series").await;
    let first_day = (chrono::Utc::now() + chrono::TimeDelta::days(3)).date_naive();
    let series = app
        .user(0)
        .insert(json!({
            "summary": "Weekly one-on-one",
            "start": {"dateTime": format!("{first_day}T09:30:00"), "timeZone": "America/New_York"},
            "end": {"dateTime": format!("{first_day}T10:00:00"), "timeZone": "America/New_York"},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=6"],
        }))
        .await;
    let series_id = id_of(&series);
    let instances = app.user(0).instances(&series_id).await;
    assert_eq!(instances.len(), 6);
    let moved_id = id_of(&instances[1]);
    let cancelled_id = id_of(&instances[2]);
    let moved_day = first_day + chrono::TimeDelta::days(8);
    let moved = app
        .user(0)
        .patch(
            &moved_id,
            json!({
                "start": {"dateTime": format!("{moved_day}T15:00:00"), "timeZone": "America/New_York"},
                "end": {"dateTime": format!("{moved_day}T15:30:00"), "timeZone": "America/New_York"},
            }),
        )
        .await;
    app.user(0).delete(&cancelled_id).await;

    let blocks = app.await_blocks_everywhere(0, &series_id).await;
    for (n, block) in (1..5).zip(&blocks) {
        assert_eq!(
            block["recurrence"], series["recurrence"],
            "one block series with the same rule on {}",
            app.calendars[n].alias
        );
        assert_eq!(block["start"]["timeZone"], "America/New_York");
        let block_id = id_of(block);
        let expected_moved = format!("{block_id}_{}", suffix(&moved_id));
        let expected_cancelled = format!("{block_id}_{}", suffix(&cancelled_id));
        let user = app.user(n);
        crate::support::eventually(
            "the moved and the cancelled occurrence on the block",
            || async {
                let occurrences = user.instances(&block_id).await;
                let find = |id: &str| occurrences.iter().find(|o| o["id"] == id).cloned();
                let moved_block = find(&expected_moved)?;
                let cancelled_block = find(&expected_cancelled)?;
                let live = occurrences
                    .iter()
                    .filter(|o| o["status"] != "cancelled")
                    .count();
                (moved_block["start"]["dateTime"] == moved["start"]["dateTime"]
                    && cancelled_block["status"] == "cancelled"
                    && live == 5)
                    .then_some(())
            },
        )
        .await;
    }
    app.writers_idle().await;
    app.assert_no_duplicates().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_day_event_stays_all_day_and_a_zoned_event_keeps_its_zone() {
    let app = five_calendars("all_day_and_time_zone").await;
    let day = (chrono::Utc::now() + chrono::TimeDelta::days(5)).date_naive();
    let all_day = app
        .user(2)
        .insert(json!({
            "summary": "Holiday",
            "start": {"date": day.to_string()},
            "end": {"date": (day + chrono::TimeDelta::days(1)).to_string()},
        }))
        .await;
    let zoned = app
        .user(2)
        .insert(json!({
            "summary": "Call with Tokyo",
            "start": {"dateTime": format!("{day}T09:00:00"), "timeZone": "Asia/Tokyo"},
            "end": {"dateTime": format!("{day}T10:00:00"), "timeZone": "Asia/Tokyo"},
        }))
        .await;

    for block in app.await_blocks_everywhere(2, &id_of(&all_day)).await {
        assert_eq!(block["start"], json!({"date": day.to_string()}), "{block}");
        assert_eq!(
            block["end"],
            json!({"date": (day + chrono::TimeDelta::days(1)).to_string()})
        );
    }
    for block in app.await_blocks_everywhere(2, &id_of(&zoned)).await {
        assert_eq!(block["start"]["timeZone"], "Asia/Tokyo", "{block}");
        assert_eq!(block["end"]["timeZone"], "Asia/Tokyo", "{block}");
        assert_eq!(block["start"]["dateTime"], zoned["start"]["dateTime"]);
    }
}
