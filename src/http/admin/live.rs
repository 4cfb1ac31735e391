//! The Live page and `/admin/api/live`: what waits for each calendar, and one row per change
//! that propagated — its source calendar, the calendars it wrote to, how many writes, and
//! the time from the change being noticed to its last write. Times in UTC, named.
//!
//! The writers measure propagation per target (`actors::LatencySample`: one sample per
//! source account and target, from that source's trigger); [`changes`] puts the samples of
//! one change on every target back together by source and trigger instant — every writer a
//! change wakes is handed the same trigger, while the sync ids of a burst of changes merged
//! by one writer differ from writer to writer.

use std::time::Duration;

use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Serialize;

use super::control;
use super::pages::{clock, layout, live_region, millis, Calendars, Page};
use crate::actors::LatencySample;
use crate::domain::AccountId;
use crate::http::AppState;
use crate::store::StoreError;

/// Changes shown on the page.
const RECENT_CHANGES: usize = 20;
/// Samples of one source whose triggers are this close are one change (the trigger is read
/// back from the sample's time and latency, to within a few milliseconds).
const SAME_TRIGGER: chrono::TimeDelta = chrono::TimeDelta::milliseconds(100);

/// One change as it reached the calendars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// When its last write was made.
    pub at: DateTime<Utc>,
    pub source: AccountId,
    pub sync_id: Option<String>,
    /// The calendars written to, by id.
    pub targets: Vec<AccountId>,
    pub writes: u32,
    /// From the change being noticed to its last write.
    pub to_last_write: Duration,
}

fn trigger_of(s: &LatencySample) -> DateTime<Utc> {
    s.at - chrono::TimeDelta::from_std(s.latency).unwrap_or_default()
}

/// The samples (oldest first) grouped into changes, newest first.
pub(crate) fn changes(samples: &[LatencySample]) -> Vec<Change> {
    let mut out: Vec<(DateTime<Utc>, Change)> = Vec::new();
    for sample in samples {
        let trigger = trigger_of(sample);
        let same = out
            .iter_mut()
            .rev()
            .find(|(t, c)| c.source == sample.account && (trigger - *t).abs() <= SAME_TRIGGER);
        match same {
            Some((_, change)) => {
                change.at = change.at.max(sample.at);
                if change.sync_id.is_none() {
                    change.sync_id.clone_from(&sample.sync_id);
                }
                if !change.targets.contains(&sample.target) {
                    change.targets.push(sample.target);
                }
                change.writes = change.writes.saturating_add(sample.writes);
                change.to_last_write = change.to_last_write.max(sample.latency);
            }
            None => out.push((
                trigger,
                Change {
                    at: sample.at,
                    source: sample.account,
                    sync_id: sample.sync_id.clone(),
                    targets: vec![sample.target],
                    writes: sample.writes,
                    to_last_write: sample.latency,
                },
            )),
        }
    }
    for (_, change) in &mut out {
        change.targets.sort();
    }
    out.sort_by_key(|(_, c)| std::cmp::Reverse(c.at));
    out.into_iter().map(|(_, c)| c).collect()
}

/// The JSON of `/admin/api/live`.
#[derive(Debug, Serialize)]
pub(crate) struct LiveSnapshot {
    pub pending_total: u64,
    pub queue: Vec<QueueDepth>,
    pub latency: LatencySummary,
    /// The recent changes, newest first.
    pub changes: Vec<ChangeJson>,
}

#[derive(Debug, Serialize)]
pub(crate) struct QueueDepth {
    pub account: i64,
    pub alias: String,
    pub pending: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct LatencySummary {
    /// Changes measured (one per change, however many calendars it wrote to).
    pub samples: usize,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChangeJson {
    pub at: DateTime<Utc>,
    pub source: String,
    pub targets: Vec<String>,
    pub writes: u32,
    pub to_last_write_ms: u64,
    pub sync_id: Option<String>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The live numbers, read once for the page and the JSON alike.
pub(crate) struct Live {
    pub calendars: Calendars,
    pub depths: Vec<(AccountId, u64)>,
    pub changes: Vec<Change>,
}

impl Live {
    pub async fn read(state: &AppState) -> Result<Live, StoreError> {
        let (accounts, depths) =
            tokio::try_join!(state.store.list_accounts(), state.store.queue_depths())?;
        Ok(Live {
            calendars: Calendars::new(accounts),
            depths,
            changes: changes(&control(state).latency_samples()),
        })
    }

    fn pending(&self, id: AccountId) -> u64 {
        self.depths
            .iter()
            .find(|(a, _)| *a == id)
            .map_or(0, |(_, d)| *d)
    }

    fn percentile(&self, p: f64) -> Option<u64> {
        let mut sorted: Vec<u64> = self.changes.iter().map(|c| ms(c.to_last_write)).collect();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return None;
        }
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }

    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            pending_total: self.depths.iter().map(|(_, d)| d).sum(),
            queue: self
                .calendars
                .list
                .iter()
                .map(|a| QueueDepth {
                    account: a.id.get(),
                    alias: a.alias.clone(),
                    pending: self.pending(a.id),
                })
                .collect(),
            latency: LatencySummary {
                samples: self.changes.len(),
                p50_ms: self.percentile(0.5),
                p95_ms: self.percentile(0.95),
                max_ms: self.percentile(1.0),
            },
            changes: self
                .changes
                .iter()
                .take(RECENT_CHANGES)
                .map(|c| ChangeJson {
                    at: c.at,
                    source: self.calendars.alias(c.source),
                    targets: c.targets.iter().map(|t| self.calendars.alias(*t)).collect(),
                    writes: c.writes,
                    to_last_write_ms: ms(c.to_last_write),
                    sync_id: c.sync_id.clone(),
                })
                .collect(),
        }
    }
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| millis(Duration::from_millis(v)))
}

pub(crate) fn page(page: &Page, live: &Live) -> Markup {
    let snapshot = live.snapshot();
    layout(
        "Live",
        Some(page),
        html! {
            h1 { "Live" }
            p.muted { "Updates by itself. A change is timed from its push notification (or poll) to the last block write it caused. Times in UTC." }
            (live_region("live", html! {
                section.grid {
                    div.card.metric { h2 { "Writes waiting" } p.big #pending-total { (snapshot.pending_total) } }
                    div.card.metric { h2 { "To last write, p50" } p.big #latency-p50 { (or_dash(snapshot.latency.p50_ms)) } }
                    div.card.metric { h2 { "p95" } p.big #latency-p95 { (or_dash(snapshot.latency.p95_ms)) } }
                    div.card.metric { h2 { "Changes measured" } p.big #latency-count { (snapshot.latency.samples) } }
                }
                div.columns {
                section.card {
                    h2 { "Waiting, by calendar" }
                    table.live { thead { tr { th { "Calendar" } th.num { "Waiting" } } } tbody #queue {
                        @for q in &snapshot.queue {
                            tr data-alias=(q.alias) { td { (q.alias) } td.num { (q.pending) } }
                        }
                    } }
                }
                section.card {
                    h2 { "Recent changes" }
                    @if live.changes.is_empty() {
                        p.empty { "No change propagated since the service started." }
                    } @else {
                        table.live.changes {
                            thead { tr {
                                th { "When (UTC)" } th { "Change on" } th { "Blocks written on" }
                                th.num { "Writes" } th.num { "To last write" }
                            } }
                            tbody #recent {
                                @for c in live.changes.iter().take(RECENT_CHANGES) {
                                    tr data-source=(live.calendars.alias(c.source)) {
                                        td { (clock(c.at)) }
                                        td { (live.calendars.link(c.source)) }
                                        td {
                                            @for (i, t) in c.targets.iter().enumerate() {
                                                @if i > 0 { ", " }
                                                (live.calendars.link(*t))
                                            }
                                        }
                                        td.num { (c.writes) }
                                        td.num { (millis(c.to_last_write)) }
                                    }
                                }
                            }
                        }
                    }
                }
                }
            }))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        at_ms: i64,
        latency_ms: u64,
        source: i64,
        target: i64,
        sync: Option<&str>,
    ) -> LatencySample {
        let base: DateTime<Utc> = "2026-03-05T10:00:00Z".parse().unwrap();
        LatencySample {
            at: base + chrono::TimeDelta::milliseconds(at_ms),
            account: AccountId::new(source),
            target: AccountId::new(target),
            latency: Duration::from_millis(latency_ms),
            writes: 1,
            sync_id: sync.map(str::to_owned),
        }
    }

    #[test]
    fn one_change_on_four_targets_is_one_row_with_its_slowest_write() {
        let samples = [
            sample(30, 30, 1, 2, Some("s1")),
            sample(31, 31, 1, 3, Some("s1")),
            sample(35, 35, 1, 4, Some("s1")),
            sample(40, 40, 1, 5, Some("s1")),
        ];

        let rows = changes(&samples);

        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source, AccountId::new(1));
        assert_eq!(rows[0].targets.len(), 4);
        assert_eq!(rows[0].writes, 4);
        assert_eq!(rows[0].to_last_write, Duration::from_millis(40));
    }

    #[test]
    fn changes_of_different_calendars_stay_apart_and_come_newest_first() {
        let samples = [
            sample(30, 30, 1, 2, Some("s1")),
            sample(32, 20, 2, 1, Some("s2")),
            sample(40, 40, 1, 3, Some("s1")),
            sample(45, 33, 2, 3, Some("s2")),
        ];

        let rows = changes(&samples);

        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].source, AccountId::new(2));
        assert_eq!(rows[0].targets, [AccountId::new(1), AccountId::new(3)]);
        assert_eq!(rows[1].source, AccountId::new(1));
        assert_eq!(rows[1].targets, [AccountId::new(2), AccountId::new(3)]);
    }

    #[test]
    fn a_burst_merged_differently_by_two_writers_is_still_one_change() {
        let samples = [
            sample(30, 30, 1, 2, Some("s1")),
            sample(60, 60, 1, 3, Some("s2")),
        ];

        let rows = changes(&samples);

        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].writes, 2);
    }

    #[test]
    fn samples_without_a_sync_id_are_grouped_by_their_trigger() {
        let samples = [
            sample(100, 100, 1, 2, None),
            sample(120, 110, 1, 3, None),
            sample(5000, 100, 1, 2, None),
        ];

        let rows = changes(&samples);

        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].targets.len(), 2);
    }
}
