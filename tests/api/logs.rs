//! What the operator reads: the real `mcss serve` with JSON logs. One change on one
//! calendar is followed from Google's push ping through its sync to every block write by
//! one `sync_id`, and no event title ever reaches the log.

use std::time::Duration;

use gcal_emulator::EmulatorHandle;
use serde_json::{json, Value};

use crate::crash_restart::{free_port, push_emulator, serve_env, token, Running, Service};
use crate::support::{eventually_within, Backend, TestDb};

const TITLE: &str = "Quarterly numbers with the auditors";

/// The JSON lines of the service's log (panics and non-JSON lines are skipped).
pub(crate) fn log_lines(service: &Service) -> Vec<Value> {
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

/// The real `mcss serve` on SQLite with JSON logs at `info`, `n` calendars added with the
/// CLI ("Calendar 01"…), each with a live push channel, and no poll to race the pushes.
pub(crate) struct Served {
    pub(crate) emulator: EmulatorHandle,
    pub(crate) service: Service,
    pub(crate) http: reqwest::Client,
    _running: Running,
    _dir: tempfile::TempDir,
    _db: TestDb,
}

impl Served {
    pub(crate) async fn start(name: &str, n: usize) -> Served {
        let db = TestDb::create(Backend::Sqlite, name)
            .await
            .expect("SQLite needs no server");
        let emulator = push_emulator(n).await;
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        // Only pushes start syncs.
        let env = serve_env(&emulator, &db.url(), port, 3600);
        let service = Service {
            env,
            port,
            log: dir.path().join("serve.log"),
        };
        for (n, info) in emulator.accounts().iter().enumerate() {
            service.add_account(
                &format!("Calendar {:02}", n + 1),
                &info.refresh_token,
                &info.calendar_id,
            );
        }
        let http = reqwest::Client::new();
        let running = Running(service.serve());
        service.healthy(&http).await;
        let served = Served {
            emulator,
            service,
            http,
            _running: running,
            _dir: dir,
            _db: db,
        };
        served.await_channels(n).await;
        served.await_first_syncs(n).await;
        served
    }

    /// Waits until every calendar's first sync is done, so a change made next is found by
    /// the sync its ping starts, not by a first sync still listing.
    async fn await_first_syncs(&self, n: usize) {
        eventually_within("every first sync", Duration::from_secs(30), || async {
            let done = log_lines(&self.service)
                .iter()
                .filter(|l| l["message"] == "sync done" && l["kind"] == "full")
                .count();
            (done >= n).then_some(())
        })
        .await;
    }

    async fn await_channels(&self, n: usize) {
        let base = self.emulator.base_url().to_owned();
        eventually_within(
            "a live push channel per calendar",
            Duration::from_secs(30),
            || async {
                let listed: Value = self
                    .http
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
                (live.count() == n).then_some(())
            },
        )
        .await;
    }

    /// Inserts a one-hour event on calendar `n`'s primary calendar; its id.
    pub(crate) async fn insert(&self, n: usize, title: &str, start: &str, end: &str) -> String {
        let refresh = &self.emulator.accounts()[n].refresh_token;
        let access = token(&self.emulator, &self.http, refresh).await;
        let response = self
            .http
            .post(format!(
                "{}/calendar/v3/calendars/primary/events",
                self.emulator.base_url()
            ))
            .bearer_auth(&access)
            .json(&json!({
                "summary": title,
                "start": {"dateTime": start},
                "end": {"dateTime": end},
            }))
            .send()
            .await
            .expect("the emulator answers");
        assert!(response.status().is_success(), "{}", response.status());
        let created: Value = response.json().await.expect("the created event");
        created["id"].as_str().expect("an id").to_owned()
    }

    /// `mcss ARGS` against the running service's database; panics unless it succeeds.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let output = self.service.run(args);
        assert!(
            output.status.success(),
            "mcss {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sync_id_follows_a_change_from_its_ping_to_every_block_write() {
    let served = Served::start("logs_sync_id", 3).await;
    let service = &served.service;

    served
        .insert(0, TITLE, "2030-03-04T10:00:00Z", "2030-03-04T11:00:00Z")
        .await;

    // The two block writes of this change, as the log tells them.
    let writes = eventually_within(
        "both block writes in the log",
        Duration::from_secs(30),
        || async {
            let writes: Vec<Value> = log_lines(service)
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
    let lines = log_lines(service);
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
