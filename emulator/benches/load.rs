//! Load benchmark: 10,000 accounts in one emulator, a mixed read/write workload over loopback
//! from concurrent clients, bounded in requests and time. Prints throughput, latency
//! percentiles and resident memory. Run with `cargo bench -p gcal-emulator`.
use gcal_emulator::{Emulator, EmulatorConfig, Settings};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 10_000;
const WORKERS: usize = 64;
const TOTAL_REQUESTS: usize = 40_000;
const TIME_LIMIT: Duration = Duration::from_secs(60);

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let started = Instant::now();
    let handle = Emulator::start(EmulatorConfig {
        accounts: ACCOUNTS,
        settings: Settings::default(),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let shared = handle.shared().clone();
    let tokens: Vec<(String, String)> = handle
        .accounts()
        .into_iter()
        .map(|a| {
            let scopes = vec!["https://www.googleapis.com/auth/calendar".to_string()];
            let (t, _) = shared.mint_access_token(&a.email, handle.client_id(), scopes, None);
            (a.email, t)
        })
        .collect();
    println!(
        "setup: {ACCOUNTS} accounts in {:.2?}, rss {:.1} MiB",
        started.elapsed(),
        rss_mib()
    );
    let tokens = Arc::new(tokens);
    let base = handle.base_url().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + TIME_LIMIT;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (tokens, base, next) = (tokens.clone(), base.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().pool_max_idle_per_host(4).build().expect("client");
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut my_events: Vec<(usize, String)> = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= TOTAL_REQUESTS || Instant::now() > deadline {
                    break;
                }
                let acct = (n * 7919 + w) % tokens.len();
                let (_, token) = &tokens[acct];
                let t = Instant::now();
                let status = match n % 10 {
                    0..=3 => {
                        let body = json!({"summary": "load", "start": {"dateTime": "2030-01-01T10:00:00Z"}, "end": {"dateTime": "2030-01-01T11:00:00Z"}});
                        let r = http.post(format!("{base}/calendar/v3/calendars/primary/events")).bearer_auth(token).json(&body).send().await;
                        match r {
                            Ok(r) => {
                                let s = r.status();
                                if let Ok(v) = r.json::<serde_json::Value>().await {
                                    if let Some(id) = v["id"].as_str() {
                                        my_events.push((acct, id.to_string()));
                                    }
                                }
                                s.as_u16()
                            }
                            Err(_) => 0,
                        }
                    }
                    4..=5 if !my_events.is_empty() => {
                        let (a, id) = &my_events[n % my_events.len()];
                        let r = http
                            .patch(format!("{base}/calendar/v3/calendars/primary/events/{id}"))
                            .bearer_auth(&tokens[*a].1)
                            .json(&json!({"summary": "patched"}))
                            .send()
                            .await;
                        r.map(|r| r.status().as_u16()).unwrap_or(0)
                    }
                    _ => {
                        let r = http.get(format!("{base}/calendar/v3/calendars/primary/events?maxResults=50")).bearer_auth(token).send().await;
                        match r {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                let _ = r.bytes().await;
                                s
                            }
                            Err(_) => 0,
                        }
                    }
                };
                lat.push(t.elapsed());
                if status != 200 {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("worker");
        all.extend(l);
        errors += e;
    }
    let elapsed = t0.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "load: {} requests ({} non-200) from {WORKERS} concurrent clients in {:.2?} = {:.0} req/s",
        all.len(),
        errors,
        elapsed,
        all.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency: p50 {:.2?}  p90 {:.2?}  p99 {:.2?}  max {:.2?}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        all.last().copied().unwrap_or_default()
    );
    println!(
        "memory: rss {:.1} MiB (server and clients in one process)",
        rss_mib()
    );
    handle.shutdown().await;
}
