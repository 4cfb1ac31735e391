//! Crash safety of the real binary: `mcss serve` is killed with SIGKILL in the middle of a
//! burst of changes, started again, and the calendars still converge with zero duplicates,
//! zero orphans and every block present — on SQLite, and on PostgreSQL when configured.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::support::{
    base_vars, eventually_within, hour_slot, Backend, Calendar, Observer, TestDb,
};
use gcal_emulator::{Emulator, EmulatorConfig, EmulatorHandle, Settings as EmuSettings};
use mcss::config::Settings;
use mcss::store::Store;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_mcss");

/// The emulator for a real `mcss serve`: it pushes over plain http to loopback and sets no
/// quota, with `accounts` connected users.
pub(crate) async fn push_emulator(accounts: usize) -> EmulatorHandle {
    Emulator::start(EmulatorConfig {
        accounts,
        settings: EmuSettings {
            allow_http_webhooks: true,
            rate_limit_per_minute: None,
            ..EmuSettings::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts")
}

/// The environment of a real `mcss serve` on `port`, pushing to its own webhook, with JSON
/// logs at `info` (no title may show at any level) and a backstop poll every `poll_secs`.
pub(crate) fn serve_env(
    emulator: &EmulatorHandle,
    database_url: &str,
    port: u16,
    poll_secs: u64,
) -> Vec<(String, String)> {
    let mut env = base_vars(emulator, database_url);
    let own = ["PORT", "LOG_LEVEL", "POLL_INTERVAL_SECS", "ENABLE_METRICS"];
    env.retain(|(k, _)| !own.contains(&k.as_str()));
    env.extend([
        ("PORT".to_owned(), port.to_string()),
        (
            "WEBHOOK_BASE_URL".to_owned(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("POLL_INTERVAL_SECS".to_owned(), poll_secs.to_string()),
        ("LOG_FORMAT".to_owned(), "json".to_owned()),
        ("LOG_LEVEL".to_owned(), "info".to_owned()),
    ]);
    env
}

/// A free loopback port (bound, read, released): the service keeps one port across its
/// restarts so the push channels it opened still reach it.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub(crate) struct Service {
    pub(crate) env: Vec<(String, String)>,
    pub(crate) port: u16,
    pub(crate) log: std::path::PathBuf,
}

impl Service {
    fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    pub(crate) fn add_account(&self, alias: &str, token: &str, calendar_id: &str) {
        let output = self
            .command()
            .args([
                "accounts",
                "add",
                "--alias",
                alias,
                "--calendar-id",
                calendar_id,
            ])
            .env("MCSS_REFRESH_TOKEN", token)
            .output()
            .expect("mcss accounts add runs");
        assert!(
            output.status.success(),
            "mcss accounts add failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `mcss ARGS` (a CLI command beside the service), waiting for it to finish.
    pub(crate) fn run(&self, args: &[&str]) -> std::process::Output {
        self.command()
            .args(args)
            .output()
            .expect("the mcss binary runs")
    }

    pub(crate) fn serve(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the service log file");
        // The service logs to stdout; panics also reach stderr.
        let stdout = log.try_clone().expect("the service log file, twice");
        self.command()
            .arg("serve")
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("mcss serve starts")
    }

    pub(crate) async fn healthy(&self, http: &reqwest::Client) {
        let url = format!("http://127.0.0.1:{}/health", self.port);
        eventually_within(
            "mcss serve to answer /health",
            Duration::from_secs(60),
            || async {
                let r = http.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
    }
}

/// Kills the child with SIGKILL (what `Child::kill` sends on Unix) when the test ends.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn token(
    emulator: &EmulatorHandle,
    http: &reqwest::Client,
    refresh: &str,
) -> String {
    let answer: Value = http
        .post(emulator.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", emulator.client_id()),
            ("client_secret", emulator.client_secret()),
        ])
        .send()
        .await
        .expect("the token endpoint answers")
        .json()
        .await
        .expect("a token response");
    answer["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// One user action of the burst; failures are not expected (no faults are injected).
async fn act(
    emulator: &EmulatorHandle,
    http: &reqwest::Client,
    calendar: &Calendar,
    request: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let url = format!(
        "{}/calendar/v3/calendars/{}/events{path}",
        emulator.base_url(),
        calendar.calendar_id
    );
    let mut builder = http
        .request(request, url)
        .bearer_auth(token(emulator, http, &calendar.refresh_token).await);
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    let response = builder.send().await.expect("the emulator answers");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap_or(Value::Null)
}

async fn a_kill_in_the_middle_of_a_burst_loses_nothing_and_duplicates_nothing(backend: Backend) {
    let Some(db) = TestDb::create(backend, "crash_restart").await else {
        return;
    };
    let emulator = push_emulator(5).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let port = free_port();
    let mut env = serve_env(&emulator, &db.url(), port, 5);
    env.push((
        "ADMIN_PASSWORD".to_owned(),
        "crash-test-password".to_owned(),
    ));
    let service = Service {
        env: env.clone(),
        port,
        log: dir.path().join("serve.log"),
    };
    let settings = Settings::from_vars(env).expect("valid settings");

    // Accounts are added with the real command, before the service starts.
    for (n, info) in emulator.accounts().iter().enumerate() {
        service.add_account(
            &format!("Calendar {:02}", n + 1),
            &info.refresh_token,
            &info.calendar_id,
        );
    }
    let store = Store::connect(&settings)
        .await
        .expect("the test reads the store");
    let accounts = store.list_accounts().await.expect("the accounts");
    let calendars: Vec<Calendar> = emulator
        .accounts()
        .into_iter()
        .enumerate()
        .map(|(n, info)| Calendar {
            alias: format!("Calendar {:02}", n + 1),
            account: accounts
                .iter()
                .find(|a| a.calendar_id.as_str() == info.calendar_id)
                .expect("every account was added")
                .id,
            email: info.email,
            calendar_id: info.calendar_id,
            refresh_token: info.refresh_token,
        })
        .collect();
    let http = reqwest::Client::new();
    let observer = Observer {
        http: http.clone(),
        base_url: emulator.base_url().to_owned(),
        calendars: calendars.clone(),
    };

    let mut running = Running(service.serve());
    service.healthy(&http).await;

    // The burst: creations on every calendar, some moved, some deleted. The service is
    // killed after a third of it and restarted after two thirds.
    let mut created: Vec<(usize, String)> = Vec::new();
    let steps = 30;
    for step in 0..steps {
        let n = step % calendars.len();
        let calendar = &calendars[n];
        match step % 3 {
            0 | 1 => {
                let (start, end) = hour_slot(1 + (step as i64 % 9), 7 + (step as u32 % 10));
                let event = act(
                    &emulator,
                    &http,
                    calendar,
                    reqwest::Method::POST,
                    "",
                    Some(json!({
                        "summary": format!("Burst {step}"),
                        "start": {"dateTime": start},
                        "end": {"dateTime": end},
                    })),
                )
                .await;
                created.push((n, event["id"].as_str().expect("an id").to_owned()));
            }
            _ => {
                // The oldest live event: moved (and kept) or deleted (and forgotten).
                let (owner, id) = created.remove(0);
                if step % 2 == 0 {
                    created.push((owner, id.clone()));
                    let (start, end) = hour_slot(12, 18);
                    act(
                        &emulator,
                        &http,
                        &calendars[owner],
                        reqwest::Method::PATCH,
                        &format!("/{id}"),
                        Some(json!({
                            "summary": format!("Moved by {step}"),
                            "start": {"dateTime": start},
                            "end": {"dateTime": end},
                        })),
                    )
                    .await;
                } else {
                    act(
                        &emulator,
                        &http,
                        &calendars[owner],
                        reqwest::Method::DELETE,
                        &format!("/{id}"),
                        None,
                    )
                    .await;
                }
            }
        }
        if step == steps / 3 {
            // SIGKILL: no shutdown hook runs, whatever was in flight is cut off.
            running.0.kill().expect("SIGKILL the service");
            running.0.wait().expect("reap the service");
        }
        if step == 2 * steps / 3 {
            running = Running(service.serve());
            service.healthy(&http).await;
        }
    }

    let report = eventually_within(
        "the calendars to converge after the restart",
        Duration::from_secs(90),
        || async {
            let report = observer.check().await;
            report.holds().then_some(report)
        },
    )
    .await;
    assert!(report.holds());
    // And it stays converged: nothing is left pending that could still add a duplicate.
    eventually_within("the outbox to drain", Duration::from_secs(30), || async {
        (store.pending_count(None).await.ok()? == 0).then_some(())
    })
    .await;
    let report = observer.check().await;
    assert!(report.holds(), "after draining: {report:?}");
    let total: usize = {
        let mut total = 0;
        for n in 0..calendars.len() {
            total += observer.blocks_on(n).await.len();
        }
        total
    };
    assert!(total > 0, "the burst produced blocks");
    drop(running);
    store.close().await;
    let _ = std::fs::read_to_string(Path::new(&service.log)).map(|log| {
        assert!(!log.contains("panicked"), "the service panicked:\n{log}");
    });
}

on_both_backends!(a_kill_in_the_middle_of_a_burst_loses_nothing_and_duplicates_nothing);
