//! What keeps the service fast with many calendars, checked (not timed) against the real
//! application: the bounds on concurrent syncs, full listings and Google requests, the echo
//! of our own block costing one `events.list` and nothing in the store but the new sync
//! token, and a start reading once what its writers and first syncs need.

use std::time::{Duration, Instant};

use mcss::google::{GoogleClient, TokenSource};
use mcss::store::StoreCounters;
use secrecy::SecretString;

use crate::support::{count_2xx, eventually, id_of, spawn_app, AppOptions, TestApp};

/// Waits until calendar `n` finished an incremental sync that started after `after`.
async fn synced_since(app: &TestApp, n: usize, after: chrono::DateTime<chrono::Utc>) {
    let account = app.calendars[n].account;
    eventually("the requested sync to finish", || async {
        let state = app.store().sync_state(account).await.ok()?;
        (state.last_incremental_sync_at? > after).then_some(())
    })
    .await;
}

/// Google's time per call in the concurrency tests.
const SLOW_GOOGLE: Duration = Duration::from_millis(400);

/// Six calendars, polling only, first-synced; `limit` set to 2; then Google takes
/// [`SLOW_GOOGLE`] per call. Returns the app and the moment after that.
async fn six_calendars_two_at_a_time(
    name: &'static str,
    limit: &'static str,
) -> (TestApp, chrono::DateTime<chrono::Utc>) {
    let app = spawn_app(
        AppOptions::new(name)
            .accounts(6)
            .polling_only()
            .var("POLL_INTERVAL_SECS", "3600")
            .var(limit, "2"),
    )
    .await
    .expect("SQLite is always available");
    app.first_syncs_done().await;
    app.put_emulator_settings(serde_json::json!({"latencyMs": SLOW_GOOGLE.as_millis()}))
        .await;
    (app, chrono::Utc::now())
}

#[tokio::test]
async fn no_more_syncs_run_at_once_than_max_concurrent_syncs() {
    // Arrange: six calendars, at most two syncs at once, and Google taking 400 ms per call.
    let (app, before) =
        six_calendars_two_at_a_time("max_concurrent_syncs", "MAX_CONCURRENT_SYNCS").await;

    // Act: every calendar is asked to sync at the same moment.
    let started = Instant::now();
    for calendar in &app.calendars {
        app.control
            .sync_now(calendar.account)
            .await
            .expect("the sync is asked for");
    }
    for n in 0..app.calendars.len() {
        synced_since(&app, n, before).await;
    }
    let elapsed = started.elapsed();

    // Assert: each sync lists once (400 ms); two at a time makes three rounds. Without the
    // bound all six list at once and finish in about one round.
    assert!(
        elapsed >= SLOW_GOOGLE * 3,
        "six syncs of one 400 ms list each, two at a time, took only {elapsed:?}"
    );
}

#[tokio::test]
async fn no_more_full_listings_run_at_once_than_max_concurrent_full_syncs() {
    // Arrange: six calendars, two full listings at once (any number of syncs), and Google
    // taking 400 ms per call.
    let (app, before) =
        six_calendars_two_at_a_time("max_concurrent_full_syncs", "MAX_CONCURRENT_FULL_SYNCS").await;

    // Act: every calendar is asked to list everything again at the same moment.
    let started = Instant::now();
    for calendar in &app.calendars {
        app.control
            .full_resync(calendar.account)
            .await
            .expect("the resync is asked for");
    }
    for calendar in &app.calendars {
        eventually("the full resync to finish", || async {
            let state = app.store().sync_state(calendar.account).await.ok()?;
            (state.last_full_sync_at? > before).then_some(())
        })
        .await;
    }
    let elapsed = started.elapsed();

    // Assert: each lists once (400 ms); two at a time makes three rounds. Without the bound
    // all six list at once and finish in about one round.
    assert!(
        elapsed >= SLOW_GOOGLE * 3,
        "six full listings of 400 ms each, two at a time, took only {elapsed:?}"
    );
}

#[tokio::test]
async fn no_more_google_requests_are_in_flight_than_the_clients_limit() {
    // Arrange: a client limited to two requests in flight; Google takes 300 ms per call.
    let app = spawn_app(AppOptions::new("max_google_requests").accounts(1))
        .await
        .expect("SQLite is always available");
    app.put_emulator_settings(serde_json::json!({"latencyMs": 300}))
        .await;
    let services = app.control.services();
    let base = url::Url::parse(app.emulator.base_url()).expect("a URL");
    let client = GoogleClient::with_http(base, reqwest::Client::new()).with_concurrency_limit(2);
    let tokens = TokenSource::new(
        services.oauth.clone(),
        SecretString::from(app.calendars[0].refresh_token.clone()),
    );
    let account = client.account(tokens);
    let calendar =
        mcss::domain::CalendarId::parse(&app.calendars[0].calendar_id).expect("a calendar id");
    account
        .calendar_list_get(&calendar)
        .await
        .expect("a first call (and the token) succeeds");

    // Act: six calls at once.
    let started = Instant::now();
    let calls = (0..6).map(|_| account.calendar_list_get(&calendar));
    let results = futures::future::join_all(calls).await;
    let elapsed = started.elapsed();

    // Assert: two at a time is three rounds of 300 ms.
    assert!(results.iter().all(Result::is_ok));
    assert!(
        elapsed >= Duration::from_millis(900),
        "six 300 ms calls, two at a time, took only {elapsed:?}"
    );
}

/// One echo sync of calendar 1 (whose listing holds only the block we just wrote there):
/// the store's counters and Google's calls meanwhile.
async fn echo_sync(app: &TestApp) -> (StoreCounters, serde_json::Value) {
    app.reset_counters().await;
    let before = app.store().counters();
    let at = chrono::Utc::now();
    app.control
        .sync_now(app.calendars[1].account)
        .await
        .expect("the sync is asked for");
    synced_since(app, 1, at).await;
    (app.store().counters() - before, app.counters().await)
}

#[tokio::test]
async fn the_echo_of_our_own_block_costs_one_list_and_no_write_until_its_token_is_flushed() {
    // Arrange: two calendars, polling only (so no echo runs until we ask), echo tokens
    // flushed only when asked; a meeting on the first is mirrored onto the second.
    let app = spawn_app(
        AppOptions::new("echo_fast_path")
            .accounts(2)
            .polling_only()
            .var("POLL_INTERVAL_SECS", "3600")
            .var("TOKEN_FLUSH_INTERVAL_SECS", "86400"),
    )
    .await
    .expect("SQLite is always available");
    // A first sync or a replan still to run under load (the second calendar's connect
    // asked for one of the group) would write in the echoes' window.
    app.first_syncs_done().await;
    eventually("no replan left to run", || async {
        for calendar in &app.calendars {
            let state = app.store().sync_state(calendar.account).await.ok()?;
            if state.replan_requested_at.is_some() {
                return None;
            }
        }
        Some(())
    })
    .await;
    let meeting = app.user(0).insert_meeting("Planning", 2).await;
    app.control
        .sync_now(app.calendars[0].account)
        .await
        .expect("the source syncs");
    app.await_blocks_everywhere(0, &id_of(&meeting)).await;
    app.writers_idle().await;
    let stored_before = stored_token(&app, 1).await;

    // Act: the second calendar syncs twice; its listing shows only our new block, then
    // nothing. The account watcher reads the account list every 10 s; two echo windows
    // cannot both meet it. Then the deferred tokens are written.
    let (first, google) = echo_sync(&app).await;
    let (second, _) = echo_sync(&app).await;
    let after_echoes = app.store().sync_state(app.calendars[1].account).await;
    // A start's warm read finds the stored token; the first sync after it must still
    // continue from the deferred one.
    let services = app.control.services();
    let accounts = app.store().list_accounts().await.expect("the accounts");
    services.warm(&accounts).await.expect("the warm read");
    let warmed = services
        .sync_state(app.calendars[1].account)
        .await
        .expect("the warm sync state");
    let before_flush = app.store().counters();
    let flushed = app
        .store()
        .flush_deferred_tokens()
        .await
        .expect("the flush");
    let flush = app.store().counters() - before_flush;

    // Assert: one list, no other call; no write and no audit row per echo; the next sync
    // continues from the new token, which one transaction then stores.
    assert_eq!(count_2xx(&google, "events.list"), 1, "{google}");
    let other_calls: u64 = google["byMethod"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(method, _)| *method != "events.list")
        .map(|(method, _)| count_2xx(&google, method))
        .sum();
    assert_eq!(other_calls, 0, "{google}");
    for echo in [&first, &second] {
        assert_eq!(echo.write_transactions, 0, "{echo:?}");
        assert_eq!(echo.audit_rows, 0, "{echo:?}");
    }
    assert_eq!(
        first.account_list_reads.min(second.account_list_reads),
        0,
        "{first:?} {second:?}"
    );
    let next_token = after_echoes.expect("the sync state").sync_token;
    assert_ne!(next_token, stored_before);
    assert_eq!(warmed.sync_token, next_token);
    assert_eq!((flushed, flush.write_transactions), (1, 1));
    assert_eq!(stored_token(&app, 1).await, next_token);
}

/// Calendar `n`'s sync token as the database holds it.
async fn stored_token(app: &TestApp, n: usize) -> Option<String> {
    use sea_orm::EntityTrait as _;
    mcss::store::entities::sync_state::Entity::find_by_id(app.calendars[n].account.get())
        .one(app.store().connection())
        .await
        .expect("the sync state reads")
        .expect("the sync state exists")
        .sync_token
}

#[tokio::test]
async fn a_start_lets_only_the_writers_with_nothing_pending_skip_their_first_outbox_read() {
    // Arrange: three linked calendars; Google refuses every insert on the third with a
    // rate limit, so the block a meeting on the first queues there stays pending.
    let app = spawn_app(
        AppOptions::new("idle_writers_at_start")
            .accounts(3)
            .polling_only()
            .var("POLL_INTERVAL_SECS", "3600"),
    )
    .await
    .expect("SQLite is always available");
    app.first_syncs_done().await;
    app.add_fault(serde_json::json!({
        "kind": "rateLimitExceeded", "status": 429,
        "account": app.calendars[2].email, "methods": ["events.insert"],
    }))
    .await;
    let meeting = app.user(0).insert_meeting("Planning", 2).await;
    app.control
        .sync_now(app.calendars[0].account)
        .await
        .expect("the source syncs");
    eventually("the block on the second calendar", || async {
        (!app.blocks_for(1, 0, &id_of(&meeting)).await.is_empty()).then_some(())
    })
    .await;
    let [first, second, third] = [0, 1, 2].map(|n| app.calendars[n].account);
    let services = app.control.services();
    eventually("the third calendar's block to be pending", || async {
        let depths = app.store().queue_depths().await.ok()?;
        depths
            .iter()
            .any(|(target, _)| *target == third)
            .then_some(())
    })
    .await;
    let accounts = app.store().list_accounts().await.expect("the accounts");

    // Act: a start's warm read.
    services.warm(&accounts).await.expect("the warm read");

    // Assert: only the writers with nothing pending may skip their first look, and each
    // is told so once.
    assert!(services.writer_starts_idle(first));
    assert!(services.writer_starts_idle(second));
    assert!(!services.writer_starts_idle(third), "its block is pending");
    assert!(!services.writer_starts_idle(first), "answered once");

    // Act: another warm read, then a sync queues work for the second calendar before its
    // writer starts.
    services.warm(&accounts).await.expect("the warm read");
    services.expect_writes(second);

    // Assert: that writer looks at the outbox after all.
    assert!(!services.writer_starts_idle(second));
    assert!(services.writer_starts_idle(first));
}
