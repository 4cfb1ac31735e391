//! `SCALE_KEEP=DIR`: what a run leaves behind to find where a slow change waited.
//!
//! While a load runs, a sampler records every second the service's gauges (syncs in flight,
//! pending block operations) and every 250 ms, on PostgreSQL, the service's sessions in
//! `pg_stat_activity` (by state and wait event, and the oldest open transactions with their
//! statement). Where PostgreSQL loads `pg_stat_statements`, the statements of each load are
//! counted and timed too. After the load, each measured change is written with its answer time and
//! latency, and the run's slowest seconds are printed beside the samples taken then.
//! `serve`'s logs and a `/metrics` dump after each rate are kept too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use sea_orm::{ConnectionTrait as _, Database, Statement};
use serde_json::{json, Value};

use crate::google::epoch_ms;
use crate::metric;

/// The directory of one backend and size under `SCALE_KEEP`, when it is set.
pub fn keep_dir(backend: &str, calendars: usize) -> Option<PathBuf> {
    let root = PathBuf::from(std::env::var("SCALE_KEEP").ok()?);
    let dir = root.join(format!("{backend}-{calendars}"));
    std::fs::create_dir_all(&dir).expect("SCALE_KEEP can be created");
    Some(dir)
}

/// A running sampler; [`Sampler::finish`] stops it and returns its samples.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Samples `serve` on `port` (and the database at `postgres_url`) until finished.
    pub async fn start(port: u16, postgres_url: Option<String>) -> Sampler {
        let samples: Arc<Mutex<Vec<Value>>> = Arc::default();
        let db = match postgres_url {
            Some(url) => Database::connect(&url).await.ok(),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let into = samples.clone();
        let task = tokio::spawn(async move {
            // `/metrics` renders a gauge per calendar: once a second, to stay out of the way.
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut text = String::new();
            for n in 0u64.. {
                tick.tick().await;
                let t = epoch_ms(SystemTime::now());
                if n % 4 == 0 {
                    text = match http
                        .get(format!("http://127.0.0.1:{port}/metrics"))
                        .send()
                        .await
                    {
                        Ok(r) => r.text().await.unwrap_or_default(),
                        Err(_) => String::new(),
                    };
                }
                let mut sample = json!({
                    "t": t,
                    "syncs": metric(&text, "mcss_syncs_in_flight", &[]),
                    "pending": metric(&text, "mcss_pending_operations", &[]),
                });
                if let Some(db) = &db {
                    sample["pg"] = postgres_sample(db).await;
                }
                into.lock().push(sample);
            }
        });
        Sampler { samples, task }
    }

    pub fn finish(self) -> Vec<Value> {
        self.task.abort();
        std::mem::take(&mut *self.samples.lock())
    }
}

/// Starts counting PostgreSQL's statements afresh, where `pg_stat_statements` is loaded
/// (`shared_preload_libraries`); elsewhere nothing.
pub async fn statements_reset(url: &str) {
    if let Ok(db) = Database::connect(url).await {
        let _ = db
            .execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await;
        let _ = db
            .execute_unprepared("SELECT pg_stat_statements_reset()")
            .await;
        let _ = db.close().await;
    }
}

/// The statements PostgreSQL ran since [`statements_reset`], by total time: written to
/// `statements-RATE.tsv`, the top ten printed per change.
pub async fn statements_report(url: &str, dir: &Path, rate: f64, changes: usize) {
    let Ok(db) = Database::connect(url).await else {
        return;
    };
    let statement = Statement::from_string(
        db.get_database_backend(),
        "SELECT calls::bigint AS calls, total_exec_time::float8 AS ms, \
                left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS query \
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database \
                                               WHERE datname = current_database()) \
         ORDER BY total_exec_time DESC"
            .to_owned(),
    );
    let Ok(rows) = db.query_all_raw(statement).await else {
        return;
    };
    let _ = db.close().await;
    let n = changes.max(1) as f64;
    let mut text = String::from("calls\tms\tquery\n");
    println!("    PostgreSQL's statements (per change: calls, ms of execution):");
    for (i, row) in rows.iter().enumerate() {
        let calls: i64 = row.try_get("", "calls").unwrap_or_default();
        let ms: f64 = row.try_get("", "ms").unwrap_or_default();
        let query: String = row.try_get("", "query").unwrap_or_default();
        text.push_str(&format!("{calls}\t{ms:.1}\t{query}\n"));
        if i < 10 {
            println!(
                "      {:>6.2} {:>6.3}  {}",
                calls as f64 / n,
                ms / n,
                query.chars().take(110).collect::<String>()
            );
        }
    }
    std::fs::write(dir.join(format!("statements-{rate}.tsv")), text)
        .expect("SCALE_KEEP is writable");
}

/// A session's state and what it waits for, as columns `state` and `wait`.
const SESSION: &str = "coalesce(state, '') AS state, \
                       coalesce(wait_event_type || ':' || wait_event, '') AS wait";
/// The service's sessions (not the sampler's own).
const THE_SERVICE: &str = "datname = current_database() AND pid <> pg_backend_pid()";

fn state_and_wait(row: &sea_orm::QueryResult) -> (String, String) {
    (
        row.try_get("", "state").unwrap_or_default(),
        row.try_get("", "wait").unwrap_or_default(),
    )
}

/// The service's sessions by state and wait, and its three oldest open transactions.
async fn postgres_sample(db: &sea_orm::DatabaseConnection) -> Value {
    let backend = db.get_database_backend();
    let rows = |sql: &str| {
        let statement = Statement::from_string(backend, sql.to_owned());
        db.query_all_raw(statement)
    };
    let by_state = rows(&format!(
        "SELECT {SESSION}, count(*)::bigint AS n FROM pg_stat_activity \
         WHERE {THE_SERVICE} GROUP BY 1, 2"
    ))
    .await
    .unwrap_or_default()
    .iter()
    .map(|r| {
        let (state, wait) = state_and_wait(r);
        let n: i64 = r.try_get("", "n").unwrap_or_default();
        json!([state, wait, n])
    })
    .collect::<Vec<_>>();
    let oldest = rows(&format!(
        "SELECT {SESSION}, \
                (extract(epoch FROM now() - xact_start) * 1000)::bigint AS age_ms, \
                left(regexp_replace(query, '\\s+', ' ', 'g'), 140) AS query \
         FROM pg_stat_activity \
         WHERE {THE_SERVICE} AND xact_start IS NOT NULL \
         ORDER BY xact_start LIMIT 3"
    ))
    .await
    .unwrap_or_default()
    .iter()
    .map(|r| {
        let (state, wait) = state_and_wait(r);
        let age: i64 = r.try_get("", "age_ms").unwrap_or_default();
        let query: String = r.try_get("", "query").unwrap_or_default();
        json!({"state": state, "wait": wait, "age_ms": age, "query": query})
    })
    .collect::<Vec<_>>();
    json!({"sessions": by_state, "oldest": oldest})
}

/// CPU seconds every running process has used so far, summed by command name.
pub fn cpu_by_command() -> BTreeMap<String, f64> {
    let mut by = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map_or("?", |(name, _)| name);
        *by.entry(name.to_owned()).or_default() += crate::procs::cpu_seconds(pid);
    }
    by
}

/// What one load left to look at.
pub struct Load<'a> {
    pub rate: f64,
    pub seconds: f64,
    pub samples: &'a [Value],
    pub timeline: &'a [(i64, u64)],
    pub metrics_before: &'a str,
    pub metrics_after: &'a str,
    pub cpu_before: &'a BTreeMap<String, f64>,
    pub cpu_after: &'a BTreeMap<String, f64>,
}

/// Writes the samples, the changes' timeline and the metrics of one rate; prints the CPU
/// each process used during the load, and the slowest seconds beside what was sampled then.
pub fn report(dir: &Path, load: &Load) {
    let Load {
        rate,
        samples,
        timeline,
        ..
    } = *load;
    let lines = |values: Vec<String>| values.join("\n") + "\n";
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).expect("SCALE_KEEP is writable");
    };
    write(
        &format!("samples-{rate}.jsonl"),
        lines(samples.iter().map(Value::to_string).collect()),
    );
    write(
        &format!("changes-{rate}.tsv"),
        lines(
            timeline
                .iter()
                .map(|(t, ms)| format!("{t}\t{ms}"))
                .collect(),
        ),
    );
    write(
        &format!("metrics-{rate}-before.prom"),
        load.metrics_before.to_owned(),
    );
    write(
        &format!("metrics-{rate}.prom"),
        load.metrics_after.to_owned(),
    );
    let mut cpu: Vec<(f64, &String)> = load
        .cpu_after
        .iter()
        .map(|(name, after)| (after - load.cpu_before.get(name).unwrap_or(&0.0), name))
        .filter(|(used, _)| *used > 0.05)
        .collect();
    cpu.sort_by(|a, b| b.0.total_cmp(&a.0));
    let shares: Vec<String> = cpu
        .iter()
        .take(8)
        .map(|(used, name)| format!("{name} {:.2}", used / load.seconds))
        .collect();
    println!("    cores used during the load: {}", shares.join(", "));
    let delta =
        |name: &str| metric(load.metrics_after, name, &[]) - metric(load.metrics_before, name, &[]);
    let batches = delta("mcss_db_group_commit_duration_seconds_count").max(1.0);
    let waits = delta("mcss_db_commit_wait_seconds_count").max(1.0);
    println!(
        "    group commits: {batches:.0}, {:.1} jobs each, {:.1} ms each; a commit waited {:.1} ms on average",
        delta("mcss_db_group_commit_jobs_total") / batches,
        delta("mcss_db_group_commit_duration_seconds_sum") / batches * 1000.0,
        delta("mcss_db_commit_wait_seconds_sum") / waits * 1000.0,
    );
    let mut seconds: std::collections::BTreeMap<i64, (u64, usize)> = Default::default();
    for (t, ms) in timeline {
        let entry = seconds.entry(t / 1000).or_default();
        entry.0 = entry.0.max(*ms);
        entry.1 += 1;
    }
    let mut slowest: Vec<(i64, (u64, usize))> = seconds.into_iter().collect();
    slowest.sort_by_key(|(_, (max, _))| std::cmp::Reverse(*max));
    println!(
        "    slowest seconds (changes answered then; kept in {}):",
        dir.display()
    );
    for (second, (max, n)) in slowest.iter().take(5) {
        println!("      {second}: max {max} ms over {n} changes");
        let from = second * 1000;
        for s in samples.iter().filter(|s| {
            let t = s["t"].as_i64().unwrap_or(0);
            t >= from - 250 && t < from + 1000 + i64::try_from(*max).unwrap_or(0)
        }) {
            println!(
                "        +{} ms syncs {} pending {} pg {}",
                s["t"].as_i64().unwrap_or(0) - from,
                s["syncs"],
                s["pending"],
                s.get("pg").map(Value::to_string).unwrap_or_default()
            );
        }
    }
}
