//! The load: Poisson changes at a rate over random calendars, and what became of each
//! change at Google (the last of its blocks in final form, by the blocks' `updated`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::google::{epoch_ms, Google};

/// The layout: calendar `i` is user `i`'s primary calendar, in group `i / GROUP_SIZE`.
pub const GROUP_SIZE: usize = 5;

/// One change the load made: the calendar, the event, and when Google answered the source
/// write (ms since the epoch). A change of an event inserted before is its deletion.
pub type Change = (usize, String, i64);

/// What a load phase measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub changes: usize,
    pub failed_writes: usize,
    /// Per measured change (the last change of each event): answered → last block final.
    pub latencies: Vec<Duration>,
    /// The same changes in the order measured: when the source write was answered (ms since
    /// the epoch) and the latency in ms.
    pub timeline: Vec<(i64, u64)>,
    /// Measured changes whose blocks were not all in final form when read.
    pub missing: usize,
    /// Measured changes whose last block reached its final form more than 5 s after the
    /// load stopped (or never).
    pub pending_after_5s: usize,
    pub inserts: usize,
    pub deletes: usize,
}

/// Makes `rate` changes per second (Poisson arrivals) for `duration` over `emails`: inserts,
/// and deletes of events inserted earlier (one change in five, where there is one). Returns
/// the changes and how many source writes Google refused.
pub async fn run(
    google: &Google,
    emails: &[String],
    rate: f64,
    duration: Duration,
    seed: u64,
) -> (Vec<Change>, usize) {
    let changes: Arc<Mutex<Vec<Change>>> = Arc::default();
    let live: Arc<Mutex<HashMap<usize, Vec<String>>>> = Arc::default();
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut at = Duration::ZERO;
    let mut tasks = Vec::new();
    let mut n = 0u64;
    loop {
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        at += Duration::from_secs_f64(-u.ln() / rate);
        if at >= duration {
            break;
        }
        tokio::time::sleep_until((started + at).into()).await;
        let calendar = rng.gen_range(0..emails.len());
        let victim = if rng.gen_bool(0.2) {
            let mut live = live.lock();
            live.get_mut(&calendar).and_then(|ids| ids.pop())
        } else {
            None
        };
        let (day, hour) = (rng.gen_range(1..28), rng.gen_range(7..19));
        n += 1;
        let (google, email) = (google.clone(), emails[calendar].clone());
        let (changes, live, failed) = (changes.clone(), live.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let (event, ok) = match victim {
                Some(id) => {
                    let ok = google.delete(&email, &id).await;
                    (id, ok)
                }
                None => match google
                    .insert(&email, &format!("Scale {n}"), day, hour)
                    .await
                {
                    Some(id) => {
                        live.lock().entry(calendar).or_default().push(id.clone());
                        (id, true)
                    }
                    None => (String::new(), false),
                },
            };
            if !ok {
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            changes
                .lock()
                .push((calendar, event, epoch_ms(SystemTime::now())));
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let changes = std::mem::take(&mut *changes.lock());
    (changes, failed.load(std::sync::atomic::Ordering::Relaxed))
}

/// Reads the blocks of every changed calendar's group mates and measures each event's last
/// change. `load_end_ms`: when the last source write was answered.
pub async fn evaluate(
    google: &Google,
    emails: &[String],
    rows: Vec<Change>,
    failed_writes: usize,
    load_end_ms: i64,
) -> LoadResult {
    // The last change of each event is the one measured; an event seen twice was deleted.
    let mut last: HashMap<String, (usize, bool, i64)> = HashMap::new();
    let mut inserts = 0;
    let mut deletes = 0;
    let changes = rows.len();
    let mut ordered = rows;
    ordered.sort_by_key(|r| r.2);
    for (calendar, event, answered) in ordered {
        let delete = last.contains_key(&event);
        if delete {
            deletes += 1;
        } else {
            inserts += 1;
        }
        last.insert(event, (calendar, delete, answered));
    }
    let mut targets: HashSet<usize> = HashSet::new();
    for (calendar, _, _) in last.values() {
        let group = calendar / GROUP_SIZE;
        for t in group * GROUP_SIZE..((group + 1) * GROUP_SIZE).min(emails.len()) {
            if t != *calendar {
                targets.insert(t);
            }
        }
    }
    let mut blocks: HashMap<String, Vec<(bool, i64)>> = HashMap::new();
    let targets: Vec<usize> = targets.into_iter().collect();
    for chunk in targets.chunks(64) {
        let dumped =
            futures::future::join_all(chunk.iter().map(|t| google.blocks_on(&emails[*t]))).await;
        for (source, deleted, updated) in dumped.into_iter().flatten() {
            blocks.entry(source).or_default().push((deleted, updated));
        }
    }
    let mut result = LoadResult {
        changes,
        failed_writes,
        inserts,
        deletes,
        ..LoadResult::default()
    };
    let expected = GROUP_SIZE - 1;
    for (event, (_, delete, answered)) in last {
        let found = blocks.get(&event).map(Vec::as_slice).unwrap_or_default();
        let final_form = found
            .iter()
            .filter(|(deleted, _)| *deleted == delete)
            .count();
        if final_form < expected {
            result.missing += 1;
            result.pending_after_5s += 1;
            continue;
        }
        let last_write = found.iter().map(|(_, u)| *u).max().unwrap_or(answered);
        if last_write > load_end_ms + 5_000 {
            result.pending_after_5s += 1;
        }
        let ms = u64::try_from((last_write - answered).max(0)).unwrap_or(0);
        result.latencies.push(Duration::from_millis(ms));
        result.timeline.push((answered, ms));
    }
    result.latencies.sort();
    result.timeline.sort();
    result
}
