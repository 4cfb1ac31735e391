//! What the Live page is built from: the writers' propagation samples. When the changes of
//! two calendars reach a third calendar's writer before its queue drains, each source must
//! get its own sample with its own writes — not one sample crediting both to the first.

use std::collections::BTreeMap;

use serde_json::json;

use crate::support::{eventually, id_of, spawn_app, AppOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calendars_changing_at_once_are_each_credited_with_their_own_writes() {
    let app = spawn_app(AppOptions::new("live_samples_per_source").accounts(3))
        .await
        .expect("SQLite is always available");
    let slow = app.calendars[2].email.clone();
    // Calendar 03's writes are slow, so the second change arrives while the first is written.
    app.add_fault(json!({
        "kind": "latency", "latencyMs": 1500,
        "account": slow, "methods": ["events.insert"],
    }))
    .await;
    let before = app.control.latency_samples().len();

    let one = app.user(0).insert_meeting("From Calendar 01", 2).await;
    let two = app.user(1).insert_meeting("From Calendar 02", 3).await;
    app.await_blocks_everywhere(0, &id_of(&one)).await;
    app.await_blocks_everywhere(1, &id_of(&two)).await;
    app.writers_idle().await;

    let target = app.calendars[2].account;
    let writes_by_source = eventually("both writes on Calendar 03 measured", || async {
        let samples = app.control.latency_samples();
        let mut by_source: BTreeMap<String, u32> = BTreeMap::new();
        for sample in samples[before..].iter().filter(|s| s.target == target) {
            *by_source.entry(sample.account.to_string()).or_default() += sample.writes;
        }
        (by_source.values().sum::<u32>() >= 2).then_some(by_source)
    })
    .await;
    let expected: BTreeMap<String, u32> = [
        (app.calendars[0].account.to_string(), 1),
        (app.calendars[1].account.to_string(), 1),
    ]
    .into();
    assert_eq!(
        writes_by_source, expected,
        "the writes on Calendar 03, by the calendar whose change they carry"
    );
}
