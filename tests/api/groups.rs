//! Who blocks whom, end to end against the emulator, on SQLite and PostgreSQL: a calendar
//! connected later is backfilled; blocks never cross groups; a link turned off removes
//! exactly its blocks; a rule change writes only the blocks it changes; a group move cleans
//! up after itself; two calendars of one Google account share one token; every bad setting
//! is refused with its field named and nothing changed.

use mcss::ops::OpsError;
use mcss::store::CalendarRules;
use serde_json::Value;

use crate::support::{
    count_2xx, eventually, id_of, marker_of, spawn_app, AppOptions, Backend, TestApp,
};

/// The sources (by calendar index) of the live blocks on calendar `n`, sorted.
async fn sources_on(app: &TestApp, n: usize) -> Vec<usize> {
    let mut sources: Vec<usize> = app
        .blocks_on(n)
        .await
        .iter()
        .filter(|b| b["status"] != "cancelled")
        .filter_map(marker_of)
        .filter_map(|(account, _)| {
            app.calendars
                .iter()
                .position(|c| c.account.to_string() == account)
        })
        .collect();
    sources.sort();
    sources
}

/// Waits until calendar `n` holds blocks from exactly `expected` (by source index).
async fn await_sources(app: &TestApp, n: usize, expected: &[usize]) {
    let what = format!("calendar {n} to hold blocks from {expected:?}");
    eventually(&what, || async {
        (sources_on(app, n).await == expected).then_some(())
    })
    .await;
}

async fn meeting(app: &TestApp, n: usize, title: &str, days: i64) -> Value {
    app.user(n).insert_meeting(title, days).await
}

async fn a_calendar_connected_later_gets_blocks_for_existing_events(backend: Backend) {
    let options = AppOptions::new("groups_backfill")
        .backend(backend)
        .accounts(3)
        .connected(2);
    let Some(mut app) = spawn_app(options).await else {
        return;
    };
    let first = meeting(&app, 0, "Planning", 2).await;
    let second = meeting(&app, 1, "Review", 3).await;
    app.await_blocks_everywhere(0, &id_of(&first)).await;
    app.await_blocks_everywhere(1, &id_of(&second)).await;

    let late = app.emulator_calendar(2, "Calendar 03");
    let n = app.connect_later(late, None).await;

    await_sources(&app, n, &[0, 1]).await;
    // And its own events block the others, as for any calendar.
    let own = meeting(&app, n, "Dentist", 4).await;
    app.await_blocks_everywhere(n, &id_of(&own)).await;
    app.assert_no_duplicates().await;
}

async fn blocks_never_cross_groups(backend: Backend) {
    let options = AppOptions::new("groups_never_cross")
        .backend(backend)
        .accounts(4);
    let Some(app) = spawn_app(options).await else {
        return;
    };
    for alias in ["Calendar 03", "Calendar 04"] {
        app.control
            .set_group(alias, "bob")
            .await
            .expect("move to bob");
    }

    let ana = meeting(&app, 0, "Ana's meeting", 2).await;
    let bob = meeting(&app, 2, "Bob's meeting", 2).await;

    await_sources(&app, 1, &[0]).await;
    await_sources(&app, 3, &[2]).await;
    app.writers_idle().await;
    assert!(
        sources_on(&app, 2).await.is_empty(),
        "Bob's calendars hold none of Ana's"
    );
    assert_eq!(sources_on(&app, 0).await, Vec::<usize>::new());
    assert!(app.blocks_for(2, 0, &id_of(&ana)).await.is_empty());
    assert!(app.blocks_for(0, 2, &id_of(&bob)).await.is_empty());
}

async fn a_link_turned_off_removes_exactly_its_blocks(backend: Backend) {
    let options = AppOptions::new("groups_link_off")
        .backend(backend)
        .accounts(3);
    let Some(app) = spawn_app(options).await else {
        return;
    };
    let from_1 = meeting(&app, 0, "One", 2).await;
    let from_2 = meeting(&app, 1, "Two", 2).await;
    app.await_blocks_everywhere(0, &id_of(&from_1)).await;
    app.await_blocks_everywhere(1, &id_of(&from_2)).await;

    let change = app
        .control
        .set_link("Calendar 01", "Calendar 03", false)
        .await
        .expect("link off");

    assert_eq!(change.retracted, 1, "exactly the one block 01 placed on 03");
    await_sources(&app, 2, &[1]).await;
    assert_eq!(sources_on(&app, 1).await, vec![0], "01 still blocks 02");
    assert_eq!(sources_on(&app, 0).await, vec![1], "02 still blocks 01");
    // One-way: 03's events still block 01.
    let from_3 = meeting(&app, 2, "Three", 3).await;
    app.await_blocks_everywhere(2, &id_of(&from_3)).await;
    // New events of 01 do not reach 03 either.
    let later = meeting(&app, 0, "Later", 4).await;
    eventually("the later event's block on 02", || async {
        (!app.blocks_for(1, 0, &id_of(&later)).await.is_empty()).then_some(())
    })
    .await;
    app.writers_idle().await;
    assert!(app.blocks_for(2, 0, &id_of(&later)).await.is_empty());

    app.control
        .set_link("Calendar 01", "Calendar 03", true)
        .await
        .expect("link on");
    await_sources(&app, 2, &[0, 0, 1]).await;
}

async fn a_title_template_change_on_one_target_rewrites_only_its_blocks(backend: Backend) {
    let options = AppOptions::new("groups_rule_change")
        .backend(backend)
        .accounts(3);
    let Some(app) = spawn_app(options).await else {
        return;
    };
    for (n, title) in [(0, "A"), (0, "B"), (1, "C")] {
        let event = meeting(&app, n, title, 2 + n as i64).await;
        app.await_blocks_everywhere(n, &id_of(&event)).await;
    }
    app.writers_idle().await;
    app.reset_counters().await;

    let rules = CalendarRules {
        block_title_template: Some("Busy ({alias})".to_owned()),
        ..CalendarRules::default()
    };
    app.control
        .set_rules("Calendar 03", &rules)
        .await
        .expect("new title on 03");

    eventually("the blocks on 03 to be retitled", || async {
        let blocks = app.blocks_on(2).await;
        let retitled = blocks.iter().filter(|b| {
            b["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("Busy ("))
        });
        (retitled.count() == 3).then_some(())
    })
    .await;
    app.writers_idle().await;
    let counters = app.counters().await;
    assert_eq!(
        count_2xx(&counters, "events.patch"),
        3,
        "one patch per block on 03: {counters}"
    );
    for write in ["events.insert", "events.delete"] {
        assert_eq!(count_2xx(&counters, write), 0, "{write}: {counters}");
    }
    for block in app.blocks_on(1).await {
        assert!(block["summary"]
            .as_str()
            .is_some_and(|s| s.ends_with(" Block")));
    }
}

async fn moving_a_calendar_to_another_group_cleans_up_and_fills_in(backend: Backend) {
    let options = AppOptions::new("groups_move").backend(backend).accounts(4);
    let Some(app) = spawn_app(options).await else {
        return;
    };
    app.control
        .set_group("Calendar 04", "bob")
        .await
        .expect("04 to bob");
    for n in 0..4 {
        meeting(&app, n, &format!("Event {n}"), 2 + n as i64).await;
    }
    await_sources(&app, 2, &[0, 1]).await;
    await_sources(&app, 3, &[]).await;

    let change = app
        .control
        .set_group("Calendar 03", "bob")
        .await
        .expect("03 to bob");

    assert!(change.retracted >= 3, "{change:?}");
    await_sources(&app, 2, &[3]).await;
    await_sources(&app, 3, &[2]).await;
    await_sources(&app, 0, &[1]).await;
    await_sources(&app, 1, &[0]).await;
    app.assert_no_orphans().await;
}

async fn two_calendars_of_one_google_account_share_one_token(backend: Backend) {
    let options = AppOptions::new("groups_shared_token")
        .backend(backend)
        .accounts(2);
    let Some(mut app) = spawn_app(options).await else {
        return;
    };
    let secondary = app.secondary_calendar(0, "Calendar 01 family").await;
    let n = app.connect_later(secondary, None).await;
    let store = app.store();
    let primary = store.account(app.calendars[0].account).await.unwrap();
    let family = store.account(app.calendars[n].account).await.unwrap();
    assert_eq!(
        primary.credential_id, family.credential_id,
        "one token, stored once"
    );

    let event = meeting(&app, n, "School play", 2).await;
    app.await_blocks_everywhere(n, &id_of(&event)).await;
    await_sources(&app, 0, &[n]).await;

    app.revoke(0).await;
    // Any use of the revoked token marks every calendar reached through it.
    app.control
        .sync_now(app.calendars[n].account)
        .await
        .unwrap();
    eventually("both calendars of the account to need reauth", || async {
        let a = store.account(primary.id).await.ok()?;
        let b = store.account(family.id).await.ok()?;
        (a.status.as_str() == "needs_reauth" && b.status.as_str() == "needs_reauth").then_some(())
    })
    .await;
    let other = store.account(app.calendars[1].account).await.unwrap();
    assert_eq!(other.status.as_str(), "active");
}

async fn every_bad_setting_is_refused_naming_its_field_and_changes_nothing(backend: Backend) {
    let options = AppOptions::new("groups_bad_input")
        .backend(backend)
        .accounts(3);
    let Some(app) = spawn_app(options).await else {
        return;
    };
    app.control.set_group("Calendar 03", "bob").await.unwrap();
    let rules = |f: fn(&mut CalendarRules)| {
        let mut rules = CalendarRules::default();
        f(&mut rules);
        rules
    };
    let before = app.store().list_accounts().await.unwrap();
    let links_before = app.store().disabled_links().await.unwrap();

    let cases: Vec<(&str, Result<_, mcss::actors::ControlError>)> = vec![
        (
            "no account is named \"Calendar 99\"",
            app.control.set_rules("Calendar 99", &CalendarRules::default()).await,
        ),
        (
            "exclude title regex: is not a valid regex",
            app.control
                .set_rules("Calendar 01", &rules(|r| r.exclude_title_regex = Some("(unclosed".into())))
                .await,
        ),
        (
            "block title: has an unknown placeholder `{title}`",
            app.control
                .set_rules("Calendar 01", &rules(|r| r.block_title_template = Some("{title} Block".into())))
                .await,
        ),
        (
            "look back days: must be between 0 and 365",
            app.control
                .set_rules("Calendar 01", &rules(|r| r.look_back_days = Some(999)))
                .await,
        ),
        (
            "link: \"Calendar 01\" cannot block itself",
            app.control.set_link("Calendar 01", "Calendar 01", false).await,
        ),
        (
            "link: \"Calendar 01\" (group \"default\") and \"Calendar 03\" (group \"bob\") are in different groups",
            app.control.set_link("Calendar 01", "Calendar 03", false).await,
        ),
        ("group: must not be empty", app.control.set_group("Calendar 01", "  ").await),
    ];
    for (expected, result) in cases {
        let error = result.expect_err(expected).to_string();
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
        assert!(!error.contains('\n'), "one line: {error:?}");
    }
    assert_eq!(app.store().list_accounts().await.unwrap(), before);
    assert_eq!(app.store().disabled_links().await.unwrap(), links_before);
    assert!(matches!(
        mcss::ops::settings::parse_details("sometimes"),
        Err(OpsError::InvalidSetting {
            field: "details",
            ..
        })
    ));
}

on_both_backends!(
    a_calendar_connected_later_gets_blocks_for_existing_events,
    blocks_never_cross_groups,
    a_link_turned_off_removes_exactly_its_blocks,
    a_title_template_change_on_one_target_rewrites_only_its_blocks,
    moving_a_calendar_to_another_group_cleans_up_and_fills_in,
    two_calendars_of_one_google_account_share_one_token,
    every_bad_setting_is_refused_naming_its_field_and_changes_nothing,
);

/// The running service's blocks on calendar `n`, read at the emulator.
async fn served_blocks(served: &crate::logs::Served, n: usize) -> Vec<Value> {
    let calendars = served
        .emulator
        .accounts()
        .into_iter()
        .enumerate()
        .map(|(i, info)| crate::support::Calendar {
            alias: format!("Calendar {:02}", i + 1),
            email: info.email,
            calendar_id: info.calendar_id,
            refresh_token: info.refresh_token,
            account: mcss::domain::AccountId::new(i as i64 + 1),
        })
        .collect();
    let observer = crate::support::Observer {
        http: served.http.clone(),
        base_url: served.emulator.base_url().to_owned(),
        calendars,
    };
    observer
        .blocks_on(n)
        .await
        .into_iter()
        .filter(|b| b["status"] != "cancelled")
        .collect()
}

/// Settings changed with the CLI beside a running `serve` (another process, no Control
/// handle) take effect without a restart: a link turned off removes its block, a new title
/// template retitles the blocks on its calendar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_serve_picks_up_links_and_rules_set_with_the_cli() {
    let served = crate::logs::Served::start("groups_cli_live", 3).await;
    served
        .insert(0, "Board", "2030-05-06T09:00:00Z", "2030-05-06T10:00:00Z")
        .await;
    for n in [1, 2] {
        eventually(&format!("the block on calendar {n}"), || async {
            (served_blocks(&served, n).await.len() == 1).then_some(())
        })
        .await;
    }

    served.cli(&["links", "set", "Calendar 01", "Calendar 03", "off"]);
    served.cli(&["accounts", "set", "Calendar 02", "--block-title", "Busy"]);

    crate::support::eventually_within(
        "the block on 03 gone and the one on 02 retitled",
        std::time::Duration::from_secs(20),
        || async {
            let on_2 = served_blocks(&served, 1).await;
            let on_3 = served_blocks(&served, 2).await;
            (on_3.is_empty() && on_2.len() == 1 && on_2[0]["summary"] == "Busy").then_some(())
        },
    )
    .await;
}
