//! What the operator reads: the real `mcss serve` with JSON logs. One change on one
//! calendar is followed from Google's push ping through its sync to every block write by
//! one `sync_id`, and no event title ever reaches the log.

use std::time::Duration;

use gcal_emulator::{Emulator, EmulatorConfig, Settings as EmuSettings};
use serde_json::{json, Value};

use crate::crash_restart::{free_port, token, Running, Service};
use crate::support::{base_vars, eventually_within, Backend, TestDb};

const TITLE: &str = "Quarterly numbers with the auditors";

/// The JSON lines of the service's log (panics and non-JSON lines are skipped).
fn log_lines(service: &Service) -> Vec<Value> {
    std::fs::read_to_string(&service.log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn has_sync_span(line: &Value, sync_id: &str) -> bool {
    line["spans"].as_array().is_some_and(|spans| {
        spans
            .iter()
            .any(|s| s["name"] == "sync" && s["sync_id"] == sync_id)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sync_id_follows_a_change_from_its_ping_to_every_block_write() {
    let db = TestDb::create(Backend::Sqlite, "logs_sync_id")
        .await
        .expect("SQLite needs no server");
    let emulator = Emulator::start(EmulatorConfig {
        accounts: 3,
        settings: EmuSettings {
            allow_http_webhooks: true,
            rate_limit_per_minute: None,
            ..EmuSettings::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts");
    let dir = tempfile::tempdir().expect("a temp dir");
    let port = free_port();
    let mut env = base_vars(&emulator, &db.url());
    env.retain(|(k, _)| !["PORT", "LOG_LEVEL", "POLL_INTERVAL_SECS"].contains(&k.as_str()));
    env.extend([
        ("PORT".to_owned(), port.to_string()),
        (
            "WEBHOOK_BASE_URL".to_owned(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("LOG_FORMAT".to_owned(), "json".to_owned()),
        ("LOG_LEVEL".to_owned(), "info".to_owned()),
        // Only the push may start the sync of the change.
        ("POLL_INTERVAL_SECS".to_owned(), "3600".to_owned()),
    ]);
    let service = Service {
        env,
        port,
        log: dir.path().join("serve.log"),
    };
    let accounts = emulator.accounts();
    for (n, info) in accounts.iter().enumerate() {
        service.add_account(
            &format!("Calendar {:02}", n + 1),
            &info.refresh_token,
            &info.calendar_id,
        );
    }
    let http = reqwest::Client::new();
    let _running = Running(service.serve());
    service.healthy(&http).await;
    let base = emulator.base_url().to_owned();
    eventually_within(
        "a live push channel per calendar",
        Duration::from_secs(30),
        || async {
            let listed: Value = http
                .get(format!("{base}/emulator/channels"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let live = listed["channels"]
                .as_array()?
                .iter()
                .filter(|c| c["live"] == true);
            (live.count() == accounts.len()).then_some(())
        },
    )
    .await;

    let access = token(&emulator, &http, &accounts[0].refresh_token).await;
    let response = http
        .post(format!("{base}/calendar/v3/calendars/primary/events"))
        .bearer_auth(&access)
        .json(&json!({
            "summary": TITLE,
            "start": {"dateTime": "2030-03-04T10:00:00Z"},
            "end": {"dateTime": "2030-03-04T11:00:00Z"},
        }))
        .send()
        .await
        .expect("the emulator answers");
    assert!(response.status().is_success(), "{}", response.status());

    // The two block writes of this change, as the log tells them.
    let writes = eventually_within(
        "both block writes in the log",
        Duration::from_secs(30),
        || async {
            let writes: Vec<Value> = log_lines(&service)
                .into_iter()
                .filter(|l| {
                    l["message"] == "block write" && l["op"] == "insert" && l["result"] == "ok"
                })
                .collect();
            (writes.len() == 2).then_some(writes)
        },
    )
    .await;

    let sync_id = writes[0]["sync_id"].as_str().expect("a sync id").to_owned();
    assert_ne!(sync_id, "-", "{writes:?}");
    assert!(
        writes.iter().all(|w| w["sync_id"] == sync_id.as_str()),
        "{writes:?}"
    );
    let mut targets: Vec<String> = writes
        .iter()
        .map(|w| w["target_account"].to_string())
        .collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), 2, "one write per other calendar: {writes:?}");
    let lines = log_lines(&service);
    let same: Vec<&Value> = lines
        .iter()
        .filter(|l| l.to_string().contains(&sync_id))
        .collect();
    assert!(
        same.iter()
            .any(|l| l["message"] == "push ping accepted; a sync follows"),
        "the ping starts the trail: {same:#?}"
    );
    assert!(
        same.iter().any(|l| has_sync_span(l, &sync_id)),
        "the sync's own lines carry it in their span: {same:#?}"
    );
    let log = std::fs::read_to_string(&service.log).expect("the log");
    assert!(!log.contains(TITLE), "an event title reached the log");
}
