//! Propagation benchmark (`cargo bench --bench propagation`), loopback only, bounded in time.
//!
//! 1. Latency: five calendars with push; 30 changes (insert, move, delete) through the plain
//!    Google API; for each, the service's own measurement from the push ping to the last
//!    block write (`Control::latency_samples`) and the writes it made, against the floor —
//!    one ping delivery + one `events.list` + one `events.insert` round trip to the emulator.
//! 2. Scale: `BENCH_ACCOUNTS` (default 1,000) accounts in one process, polling only: the
//!    time until every account finished its first sync and the resident memory.
//! 3. Replicas (PostgreSQL, `MCSS_TEST_POSTGRES_URL`; `./scripts/test.sh` is not needed,
//!    any server where the bench may create a database): `BENCH_REPLICA_CALENDARS` (default
//!    10,000) calendars, polling only, first on one real `mcss serve`, then on three (two
//!    join, the first is replaced by a fresh one as in a deploy): how many calendars each
//!    owns and each process's resident memory.
//!
//! `BENCH_ONLY=latency,scale` (or `replicas`) runs only the sections named.
//! `BENCH_LOG_DIR=DIR` keeps each replica's log as `DIR/replica-N.log` (else they are dropped),
//! at `BENCH_LOG_LEVEL` (default `warn`).
//!
//! Figures are printed, never asserted (speed is measured by benchmarks, never asserted by tests).

#[path = "../tests/api/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{base_vars, hour_slot, id_of, spawn_app, AppOptions, Backend, TestDb};

const CHANGES: usize = 30;

fn rss_mib() -> f64 {
    rss_of("self")
}

/// The resident memory of process `pid` (`self` for this one), in MiB.
fn rss_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn latency() {
    let app = spawn_app(AppOptions::new("bench_latency").var("POLL_INTERVAL_SECS", "3600"))
        .await
        .expect("SQLite is always available");
    app.writers_idle().await;

    // The floor: what the emulator needs for one list and one write, plus one webhook POST
    // to the service (the ping's own delivery).
    let user = app.user(0);
    let probe = user.insert_meeting("floor probe", 20).await;
    let mut floors = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let _ = user.get(&id_of(&probe)).await; // includes a token fetch, like a cold call
        floors.push(started.elapsed());
    }
    floors.sort();
    let ping = {
        let started = Instant::now();
        let _ = app
            .http
            .post(format!("http://127.0.0.1:{}/webhooks/google", app.port))
            .header("X-Goog-Resource-State", "exists")
            .send()
            .await;
        started.elapsed()
    };
    app.await_blocks_everywhere(0, &id_of(&probe)).await;
    app.writers_idle().await;
    let round_trip = percentile(&floors, 0.5);
    let floor = ping + round_trip * 2;

    let mut latencies = Vec::new();
    let mut writes = Vec::new();
    let mut wall = Vec::new();
    let mut live: Vec<(usize, String)> = Vec::new();
    let started_all = Instant::now();
    for change in 0..CHANGES {
        let before = app.control.latency_samples().len();
        let n = change % app.calendars.len();
        let started = Instant::now();
        match change % 3 {
            0 | 1 if live.len() < 3 || change % 3 == 0 => {
                let (start, end) = hour_slot(1 + change as i64 % 7, 8 + (change % 9) as u32);
                let event = app
                    .user(n)
                    .insert(json!({
                        "summary": format!("Bench {change}"),
                        "start": {"dateTime": start},
                        "end": {"dateTime": end},
                    }))
                    .await;
                let id = id_of(&event);
                app.await_blocks_everywhere(n, &id).await;
                live.push((n, id));
            }
            1 => {
                let (owner, id) = live[0].clone();
                let (start, end) = hour_slot(9, 17);
                app.user(owner)
                    .patch(
                        &id,
                        json!({
                            "summary": format!("Bench moved {change}"),
                            "start": {"dateTime": start},
                            "end": {"dateTime": end},
                        }),
                    )
                    .await;
                let summary = json!(format!("Bench moved {change}"));
                app.await_synced(owner, &id, "summary", &summary).await;
            }
            _ => {
                let (owner, id) = live.remove(0);
                app.user(owner).delete(&id).await;
                app.await_no_blocks_anywhere(owner, &id).await;
            }
        }
        app.writers_idle().await;
        wall.push(started.elapsed());
        let samples = app.control.latency_samples();
        let new = &samples[before.min(samples.len())..];
        if let Some(worst) = new.iter().map(|s| s.latency).max() {
            latencies.push(worst);
        }
        writes.push(new.iter().map(|s| s.writes).sum::<u32>());
    }
    let elapsed = started_all.elapsed();
    latencies.sort();
    wall.sort();
    let p50 = percentile(&latencies, 0.5);
    println!(
        "propagation: {CHANGES} changes on 5 calendars in {:.1} s",
        elapsed.as_secs_f64()
    );
    println!(
        "  ping -> last block write: p50 {}  p95 {}  max {}  ({} measured)",
        ms(p50),
        ms(percentile(&latencies, 0.95)),
        ms(latencies.last().copied().unwrap_or_default()),
        latencies.len()
    );
    println!(
        "  user write -> blocks seen (test side): p50 {}  p95 {}",
        ms(percentile(&wall, 0.5)),
        ms(percentile(&wall, 0.95))
    );
    println!(
        "  floor (ping {} + list {} + write {}): {}  ->  p50 / floor = {:.2}",
        ms(ping),
        ms(round_trip),
        ms(round_trip),
        ms(floor),
        p50.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
    println!(
        "  block writes per change: {:?} (expected 4 for a mirrored change)",
        writes
    );
    drop(app);
}

async fn scale() {
    let accounts: usize = std::env::var("BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rss_before = rss_mib();
    let started = Instant::now();
    let app = spawn_app(
        AppOptions::new("bench_scale")
            .accounts(accounts)
            .polling_only()
            .var("POLL_INTERVAL_SECS", "3600"),
    )
    .await
    .expect("SQLite is always available");
    let ready = started.elapsed();
    let children = app.control.children().await.len();
    let rss_after = rss_mib();
    println!(
        "scale: {accounts} accounts ({children} actors) connected and first-synced in {:.1} s",
        ready.as_secs_f64()
    );
    println!(
        "  RSS {rss_after:.0} MiB (before {rss_before:.0} MiB; emulator, service and test client in one process)"
    );
    drop(app);
}

/// One `mcss serve` of the replicas bench.
struct Serve {
    child: std::process::Child,
    port: u16,
}

impl Serve {
    /// Starts replica number `n`; its log goes to `BENCH_LOG_DIR/replica-n.log` when set.
    fn start(env: &[(String, String)], n: usize) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mcss"));
        command.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        // The log goes to stdout, a panic or a refusal to start to stderr.
        let (stdout, stderr) = match std::env::var_os("BENCH_LOG_DIR") {
            Some(dir) => {
                let path = std::path::Path::new(&dir).join(format!("replica-{n}.log"));
                let log = std::fs::File::create(path).expect("BENCH_LOG_DIR is a writable folder");
                let copy = log.try_clone().expect("the log file");
                (log.into(), copy.into())
            }
            None => (std::process::Stdio::null(), std::process::Stdio::null()),
        };
        let child = command
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PORT", port.to_string())
            .arg("serve")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("mcss serve starts");
        Serve { child, port }
    }

    fn rss(&self) -> f64 {
        rss_of(&self.child.id().to_string())
    }

    /// This replica's `replica` key of `/health/detailed`, once it answers.
    async fn replica(&self, http: &reqwest::Client) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/health/detailed", self.port);
        let health: Value = http.get(url).send().await.ok()?.json().await.ok()?;
        Some(health["replica"].clone())
    }

    fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `serves` own every one of `calendars` between them, each as many as it
/// should, and every calendar has synced once; returns what each owns.
async fn spread(
    http: &reqwest::Client,
    store: &mcss::store::Store,
    serves: &[&Serve],
    calendars: usize,
) -> Vec<u64> {
    use mcss::store::entities::sync_state;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    loop {
        let mut owned = Vec::new();
        let mut ids = Vec::new();
        for serve in serves {
            if let Some(replica) = serve.replica(http).await {
                owned.push(replica["owned_calendars"].as_u64().unwrap_or(0));
                ids.push(replica["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        let live = mcss::actors::ownership::LiveSet::new(&ids);
        let leases = store.leases().await.unwrap_or_default();
        let placed = leases
            .iter()
            .filter(|l| {
                let want = mcss::actors::ownership::desired_owner(l.calendar, &live);
                l.owner.is_some() && l.owner.as_deref() == want
            })
            .count();
        let synced = sync_state::Entity::find()
            .filter(sync_state::Column::SyncToken.is_not_null())
            .count(store.connection())
            .await
            .unwrap_or(0);
        if owned.len() == serves.len()
            && placed == calendars
            && owned.iter().sum::<u64>() == calendars as u64
            && synced == calendars as u64
        {
            // The moved calendars' actors start and sync right after their leases move.
            tokio::time::sleep(Duration::from_secs(5)).await;
            return owned;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn replicas() {
    let calendars: usize = std::env::var("BENCH_REPLICA_CALENDARS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let Some(db) = TestDb::create(Backend::Postgres, "bench_replicas").await else {
        println!("replicas: skipped (MCSS_TEST_POSTGRES_URL unset)");
        return;
    };
    let emulator = gcal_emulator::Emulator::start(gcal_emulator::EmulatorConfig {
        accounts: calendars,
        settings: gcal_emulator::Settings {
            rate_limit_per_minute: None,
            ..gcal_emulator::Settings::default()
        },
        ..gcal_emulator::EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts");
    let mut env: Vec<(String, String)> = base_vars(&emulator, &db.url());
    env.retain(|(k, _)| k != "POLL_INTERVAL_SECS");
    env.push(("POLL_INTERVAL_SECS".into(), "3600".into()));
    env.push(("LEASE_TTL_SECS".into(), "6".into()));
    if let Ok(level) = std::env::var("BENCH_LOG_LEVEL") {
        env.retain(|(k, _)| k != "LOG_LEVEL");
        env.push(("LOG_LEVEL".into(), level));
    }
    let settings = mcss::config::Settings::from_vars(env.clone()).expect("valid settings");
    let store = mcss::store::Store::connect(&settings)
        .await
        .expect("the store");
    store.migrate().await.expect("migrations");
    // Groups of ten calendars, as a user's few calendars are.
    for (n, info) in emulator.accounts().into_iter().enumerate() {
        store
            .create_account(mcss::store::NewAccount {
                alias: format!("Calendar {n:05}"),
                email: Some(info.email),
                calendar_id: mcss::domain::CalendarId::parse(&info.calendar_id).unwrap(),
                refresh_token: secrecy::SecretString::from(info.refresh_token),
                time_zone: None,
                group: format!("group-{}", n / 10),
                rules: mcss::store::CalendarRules::default(),
            })
            .await
            .expect("the calendar is added");
    }
    let http = reqwest::Client::new();

    let started = Instant::now();
    let mut first = Serve::start(&env, 1);
    let alone = spread(&http, &store, &[&first], calendars).await;
    let rss_alone = first.rss();
    println!(
        "replicas: {calendars} calendars on one replica: owns {}, RSS {rss_alone:.0} MiB ({:.0} s to first-sync all)",
        alone[0],
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let second = Serve::start(&env, 2);
    let third = Serve::start(&env, 3);
    spread(&http, &store, &[&first, &second, &third], calendars).await;
    let fresh = Serve::start(&env, 4);
    spread(&http, &store, &[&first, &second, &third, &fresh], calendars).await;
    first.terminate();
    let shares = spread(&http, &store, &[&second, &third, &fresh], calendars).await;
    let rss: Vec<String> = [&second, &third, &fresh]
        .iter()
        .map(|s| format!("{:.0}", s.rss()))
        .collect();
    println!(
        "  on three replicas: own {shares:?} ({:.0} %–{:.0} % each), RSS {} MiB ({:.0} s to spread and replace the first)",
        100.0 * *shares.iter().min().unwrap_or(&0) as f64 / calendars as f64,
        100.0 * *shares.iter().max().unwrap_or(&0) as f64 / calendars as f64,
        rss.join(" / "),
        started.elapsed().as_secs_f64()
    );
    drop((second, third, fresh));
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    // `BENCH_ONLY=replicas` (a comma-separated list) runs only the sections named.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let runs = |section: &str| only.is_empty() || only.split(',').any(|s| s.trim() == section);
    runtime.block_on(async {
        let bounded = Duration::from_secs(240);
        if runs("latency") && tokio::time::timeout(bounded, latency()).await.is_err() {
            println!("propagation: did not finish within {bounded:?}");
        }
        if runs("scale") && tokio::time::timeout(bounded, scale()).await.is_err() {
            println!("scale: did not finish within {bounded:?}");
        }
        let bounded = Duration::from_secs(900);
        if runs("replicas") && tokio::time::timeout(bounded, replicas()).await.is_err() {
            println!("replicas: did not finish within {bounded:?}");
        }
    });
}
