//! What goes wrong at Google and what users do to blocks, and how the service still
//! converges: expired sync tokens, a revoked account, rate-limit storms, lost push
//! notifications, expiring channels, deleted blocks and a full resync that lists nothing.

use std::time::Duration;

use crate::support::{
    count_status, eventually, eventually_within, id_of, spawn_app, AppOptions, TestApp,
};
use mcss::store::AccountStatus;
use serde_json::json;

async fn app_with(options: AppOptions) -> TestApp {
    spawn_app(options)
        .await
        .expect("SQLite is always available")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_sync_token_is_recovered_by_a_full_resync_that_loses_nothing() {
    let app = app_with(AppOptions::new("sync_token_410")).await;
    let kept = app.user(0).insert_meeting("Kept", 2).await;
    let renamed = app.user(0).insert_meeting("Renamed", 3).await;
    let removed = app.user(0).insert_meeting("Removed", 4).await;
    for event in [&kept, &renamed, &removed] {
        app.await_blocks_everywhere(0, &id_of(event)).await;
    }
    app.writers_idle().await;
    app.reset_counters().await;

    app.invalidate_sync_tokens(None).await;
    let added = app.user(0).insert_meeting("Added", 5).await;
    app.user(0)
        .patch(&id_of(&renamed), json!({"summary": "Renamed again"}))
        .await;
    app.user(0).delete(&id_of(&removed)).await;

    app.await_blocks_everywhere(0, &id_of(&added)).await;
    app.await_no_blocks_anywhere(0, &id_of(&removed)).await;
    eventually("the renamed event's blocks to follow", || async {
        let blocks = app.await_blocks_everywhere(0, &id_of(&renamed)).await;
        blocks
            .iter()
            .all(|b| {
                b["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("Renamed again"))
            })
            .then_some(())
    })
    .await;
    let counters = app.counters().await;
    assert!(
        count_status(&counters, "events.list", 410) >= 1,
        "the service did meet the 410: {counters}"
    );
    app.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_isolates_one_account() {
    let app = app_with(AppOptions::new("revoked_token")).await;
    let before = app.user(1).insert_meeting("Before the revocation", 2).await;
    app.await_blocks_everywhere(1, &id_of(&before)).await;

    app.revoke(1).await;
    let after = app.user(0).insert_meeting("After the revocation", 3).await;

    let revoked = app.calendars[1].account;
    eventually("calendar 02 to need a reconnect", || async {
        let account = app.store().account(revoked).await.ok()?;
        (account.status == AccountStatus::NeedsReauth).then_some(())
    })
    .await;
    eventually("the others to get the new block", || async {
        for n in [2, 3, 4] {
            if app.blocks_for(n, 0, &id_of(&after)).await.len() != 1 {
                return None;
            }
        }
        Some(())
    })
    .await;
    let later = app.user(3).insert_meeting("Later still", 4).await;
    eventually("the others to keep syncing", || async {
        for n in [0, 2, 4] {
            if app.blocks_for(n, 3, &id_of(&later)).await.len() != 1 {
                return None;
            }
        }
        Some(())
    })
    .await;
    for n in [0, 2, 3, 4] {
        assert_eq!(
            app.blocks_for(n, 1, &id_of(&before)).await.len(),
            1,
            "the revoked account's blocks stay on {}",
            app.calendars[n].alias
        );
        let account = app
            .store()
            .account(app.calendars[n].account)
            .await
            .expect("the account");
        assert_eq!(account.status, AccountStatus::Active, "{}", account.alias);
    }
    app.assert_no_duplicates().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_429s_converges_with_no_duplicates() {
    let app = app_with(AppOptions::new("storm_of_429s")).await;
    app.reset_counters().await;
    app.add_fault(json!({
        "kind": "rateLimitExceeded",
        "status": 429,
        "methods": ["events.insert", "events.patch", "events.delete", "events.list", "events.get"],
        "probability": 0.5,
        "count": 60,
    }))
    .await;

    let mut ids = Vec::new();
    for round in 0..4 {
        for n in [0, 2] {
            // The user's own requests may meet the storm too: retried like an app would.
            let (start, end) = crate::support::hour_slot(2 + round, 8 + n as u32);
            let body = json!({
                "summary": format!("Storm {round} on {n}"),
                "start": {"dateTime": start},
                "end": {"dateTime": end},
            });
            let event = eventually("the user's insert to get through", || async {
                app.user(n).try_insert(&body).await.ok()
            })
            .await;
            ids.push((n, id_of(&event)));
        }
    }

    for (n, id) in &ids {
        app.await_blocks_everywhere(*n, id).await;
    }
    let counters = app.counters().await;
    let refused: u64 = ["events.insert", "events.patch", "events.list", "events.get"]
        .iter()
        .map(|m| count_status(&counters, m, 429))
        .sum();
    assert!(refused > 0, "the storm did happen: {counters}");
    app.clear_faults().await;
    app.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_push_notifications_are_recovered_by_the_backstop_poll() {
    let app = app_with(AppOptions::new("dropped_push").var("POLL_INTERVAL_SECS", "5")).await;
    app.add_fault(json!({"kind": "dropNotification"})).await;

    let lost = app.user(0).insert_meeting("Nobody told you", 2).await;

    app.await_blocks_everywhere(0, &id_of(&lost)).await;
    let dropped: u64 = app
        .channels()
        .await
        .iter()
        .filter_map(|c| c["dropped"].as_u64())
        .sum();
    assert!(dropped > 0, "the notification was really dropped");
    app.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_channels_are_renewed_with_a_new_id_before_they_expire() {
    // The emulator grants 65 s at most; renewing 60 s before expiry is due at once, and the
    // actor waits its minimum renewal delay (30 s) after opening a channel.
    let mut options = AppOptions::new("channel_renewal")
        .accounts(2)
        .var("POLL_INTERVAL_SECS", "3600")
        .var("CHANNEL_TTL_SECS", "300")
        .var("CHANNEL_RENEW_BEFORE_SECS", "60");
    options.emulator.channel_max_ttl_secs = 65;
    let app = app_with(options).await;
    let account = app.calendars[0].account;
    let first = app
        .store()
        .current_channel(account)
        .await
        .expect("the channel")
        .expect("an open channel");

    let renewed = eventually_within("a renewed channel", Duration::from_secs(60), || async {
        let current = app.store().current_channel(account).await.ok()??;
        (current.channel_id != first.channel_id).then_some(current)
    })
    .await;

    let at_google = app.channels().await;
    let old = at_google
        .iter()
        .find(|c| c["id"] == first.channel_id.as_str())
        .expect("the old channel at Google");
    let new = at_google
        .iter()
        .find(|c| c["id"] == renewed.channel_id.as_str())
        .expect("the new channel at Google");
    eventually("the old channel to be stopped", || async {
        let channels = app.channels().await;
        let old = channels
            .iter()
            .find(|c| c["id"] == first.channel_id.as_str())?;
        (old["stopped"] == true).then_some(())
    })
    .await;
    assert!(
        renewed.expires_at > first.expires_at,
        "the new channel outlives the old one"
    );
    assert_eq!(new["live"], true, "{new}");
    assert_ne!(old["id"], new["id"]);

    // Past the old channel's expiry (emulator clock), pushes still arrive on the new one.
    app.advance_clock(30).await;
    let event = app.user(0).insert_meeting("After the renewal", 2).await;
    app.await_blocks_everywhere(0, &id_of(&event)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_the_user_deletes_stays_deleted() {
    let app = app_with(AppOptions::new("user_deleted_block")).await;
    let source = app.user(0).insert_meeting("Standup", 2).await;
    let source_id = id_of(&source);
    let blocks = app.await_blocks_everywhere(0, &source_id).await;
    let unwanted = id_of(&blocks[0]);

    app.user(1).delete(&unwanted).await;
    eventually("the deletion to be recorded as an exclusion", || async {
        let id = mcss::domain::BlockId::parse(&unwanted).ok()?;
        let row = app
            .store()
            .block_on_target(app.calendars[1].account, &id)
            .await
            .ok()??;
        (row.state == mcss::store::BlockState::Excluded).then_some(())
    })
    .await;
    app.user(0)
        .patch(&source_id, json!({"summary": "Standup (new room)"}))
        .await;
    app.await_synced(0, &source_id, "summary", &json!("Standup (new room)"))
        .await;
    app.writers_idle().await;

    assert!(
        app.blocks_for(1, 0, &source_id).await.is_empty(),
        "the deleted block did not come back"
    );
    for n in [2, 3, 4] {
        let blocks = app.blocks_for(n, 0, &source_id).await;
        assert_eq!(blocks.len(), 1);
        assert!(blocks[0]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Standup (new room)")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_resync_that_lists_nothing_holds_deletions_until_an_operator_confirms() {
    let app =
        app_with(AppOptions::new("mass_delete_guard").var("MASS_DELETE_THRESHOLD", "3")).await;
    let mut ids = Vec::new();
    for day in 2..5 {
        let event = app
            .user(0)
            .insert_meeting(&format!("Known {day}"), day)
            .await;
        ids.push(id_of(&event));
    }
    for id in &ids {
        app.await_blocks_everywhere(0, id).await;
    }
    app.writers_idle().await;
    let account = app.calendars[0].account;

    // Google suddenly lists nothing: the events are gone without tombstones (as after a
    // purge of old tombstones, or a glitch), and the sync token is no longer valid.
    {
        let calendar = app
            .emulator
            .shared()
            .calendar(&app.calendars[0].calendar_id)
            .expect("calendar 01 at the emulator");
        calendar.data.lock().events.clear();
    }
    app.invalidate_sync_tokens(Some(0)).await;
    app.control.sync_now(account).await.expect("a sync");

    eventually("the deletion to be held for an operator", || async {
        app.store()
            .sync_state(account)
            .await
            .ok()?
            .mass_delete_hold
            .then_some(())
    })
    .await;
    app.writers_idle().await;
    for id in &ids {
        for n in 1..5 {
            assert_eq!(
                app.blocks_for(n, 0, id).await.len(),
                1,
                "the block of {id} is kept on {}",
                app.calendars[n].alias
            );
        }
    }
    app.assert_no_duplicates().await;

    // The operator looks, agrees the events are gone, and confirms: now the blocks go.
    app.control
        .confirm_deletions(account)
        .await
        .expect("the confirmation is accepted");
    eventually("the held deletions to be applied", || async {
        let hold = app.store().sync_state(account).await.ok()?.mass_delete_hold;
        let mut left = 0;
        for id in &ids {
            for n in 1..5 {
                left += app.blocks_for(n, 0, id).await.len();
            }
        }
        (!hold && left == 0).then_some(())
    })
    .await;
    app.assert_no_duplicates().await;
}
