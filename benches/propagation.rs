//! Propagation benchmark (`cargo bench --bench propagation`), loopback only, bounded in time.
//!
//! 1. Latency: five calendars with push; 30 changes (insert, move, delete) through the plain
//!    Google API; for each, the service's own measurement from the push ping to the last
//!    block write (`Control::latency_samples`) and the writes it made, against the floor —
//!    one ping delivery + one `events.list` + one `events.insert` round trip to the emulator.
//! 2. Scale: `BENCH_ACCOUNTS` (default 1,000) accounts in one process, polling only: the
//!    time until every account finished its first sync and the resident memory.
//!
//! Figures are printed, never asserted (speed is measured by benchmarks, never asserted by tests).

#[path = "../tests/api/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{hour_slot, id_of, spawn_app, AppOptions};

const CHANGES: usize = 30;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
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

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let bounded = Duration::from_secs(240);
        if tokio::time::timeout(bounded, latency()).await.is_err() {
            println!("propagation: did not finish within {bounded:?}");
        }
        if tokio::time::timeout(bounded, scale()).await.is_err() {
            println!("scale: did not finish within {bounded:?}");
        }
    });
}
