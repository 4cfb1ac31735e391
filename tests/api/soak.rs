//! Convergence, proven rather than claimed: the real `mcss serve` under a seeded script of
//! user edits, Google faults and SIGKILLs, then the exact invariant checker over Google's
//! side (the [`harness`] in `tests/api/support/soak/`). CI runs one short seed per backend;
//! `docs/testing.md` shows how to run a long one with any seed, and every failure prints the
//! line that replays it.
//!
//! Series edits and timed ↔ all-day switches are in the mix only with `MCSS_SOAK_SERIES=1`
//! and `MCSS_SOAK_RESHAPE=1` until the engine handles them (the `*_BY_DEFAULT` switches of
//! `harness::config`).

use std::time::Duration;

use crate::support::Backend;
use harness::users::Mix;
use harness::Soak;

// The soak's harness sits beside the shared one but belongs to this module: it drives the
// real binary with `crash_restart`'s helpers, which the benches (they include `support/`)
// do not have.
#[path = "support/soak/mod.rs"]
mod harness;

async fn a_seeded_chaos_soak_converges_to_exactly_the_busy_occurrences(backend: Backend) {
    let Some(mut soak) = Soak::start(backend, "soak_chaos").await else {
        return;
    };
    let mut users = soak.users(Mix {
        singles: true,
        reshape: soak.config.reshape,
        series: soak.config.series,
        skip: soak.config.skip.clone(),
    });

    let chaos = soak.chaos(&mut users).await;
    soak.calm().await;
    let settled = match soak.settle(&users, soak.config.settle).await {
        Ok(settled) => settled,
        Err(unsettled) => {
            let what = format!(
                "the calendars did not converge within {:?} after the chaos",
                soak.config.settle
            );
            panic!("{}", soak.failure(&what, &unsettled, &users).await);
        }
    };

    eprintln!("{}", soak.figures(&users, Some(&chaos), &settled).await);
    assert!(
        users.tally.applied_total() > 0 && settled.report.coverage.busy > 0,
        "the soak edited nothing that needs a block; replay: {}",
        soak.config.replay()
    );
    soak.finish(&users).await;
}

async fn every_step_of_a_seeded_edit_sequence_keeps_blocked_occurrences_equal_to_busy_ones(
    backend: Backend,
) {
    let Some(mut soak) = Soak::start(backend, "soak_steps").await else {
        return;
    };
    // The property is about series edits; without them the walk checks single events.
    let series = soak.config.series;
    let mut users = soak.users(Mix {
        singles: !series,
        reshape: soak.config.reshape,
        series,
        skip: soak.config.skip.clone(),
    });

    let mut took = soak.walk(&mut users).await;

    took.sort();
    let settled = match soak.settle(&users, soak.config.settle).await {
        Ok(settled) => settled,
        Err(unsettled) => panic!(
            "{}",
            soak.failure("the last check", &unsettled, &users).await
        ),
    };
    eprintln!(
        "{}; per step: median {:.1} s, slowest {:.1} s",
        soak.figures(&users, None, &settled).await,
        took.get(took.len() / 2).map_or(0.0, Duration::as_secs_f64),
        took.last().map_or(0.0, Duration::as_secs_f64),
    );
    soak.finish(&users).await;
}

on_both_backends!(
    a_seeded_chaos_soak_converges_to_exactly_the_busy_occurrences,
    every_step_of_a_seeded_edit_sequence_keeps_blocked_occurrences_equal_to_busy_ones,
);

// ---------------------------------------------------------------------------------------
// The checker itself
// ---------------------------------------------------------------------------------------

mod checker {
    //! The checker is only worth its verdicts if it sees every way blocks can be wrong and
    //! nothing else: blocks made by hand on a bare emulator (no service), first wrong in
    //! each way, then exactly right.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use chrono::{NaiveDate, TimeDelta, Utc};
    use gcal_emulator::{Emulator, EmulatorConfig, Settings as EmuSettings};
    use mcss::domain::AccountId;
    use serde_json::{json, Value};

    use super::harness::client::Owners;
    use super::harness::invariants::{Checker, Finding, Topology, Window};
    use crate::support::{Calendar, Observer};

    fn day(n: i64) -> NaiveDate {
        Utc::now().date_naive() + TimeDelta::days(n)
    }

    fn at(n: i64, hour: u32) -> String {
        day(n)
            .and_hms_opt(hour, 0, 0)
            .expect("a time")
            .and_utc()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    /// A block event (as a service would write it) for `event` of `account`.
    fn block(id: &str, summary: &str, account: &str, event: &str, times: Value) -> Value {
        let mut body = json!({
            "id": id,
            "summary": summary,
            "visibility": "private",
            "extendedProperties": {"private": {
                "mcssInstallation": "checker-test",
                "mcssSourceAccount": account,
                "mcssSourceEvent": event,
            }},
        });
        for (k, v) in times.as_object().expect("times") {
            body[k] = v.clone();
        }
        body
    }

    fn timed(n: i64, from: u32, to: u32) -> Value {
        json!({"start": {"dateTime": at(n, from)}, "end": {"dateTime": at(n, to)}})
    }

    fn weekly_all_day(n: i64) -> Value {
        json!({
            "start": {"date": day(n).to_string()},
            "end": {"date": day(n + 1).to_string()},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checker_names_every_kind_of_wrong_block_and_accepts_right_ones() {
        // Arrange: three calendars; calendar 1 is the only one with real events.
        let emulator = Arc::new(
            Emulator::start(EmulatorConfig {
                accounts: 3,
                settings: EmuSettings {
                    rate_limit_per_minute: None,
                    ..EmuSettings::default()
                },
                ..EmulatorConfig::default()
            })
            .await
            .expect("the emulator starts"),
        );
        let calendars: Vec<Calendar> = emulator
            .accounts()
            .into_iter()
            .enumerate()
            .map(|(n, info)| Calendar {
                alias: format!("Calendar {:02}", n + 1),
                email: info.email,
                calendar_id: info.calendar_id,
                refresh_token: info.refresh_token,
                account: AccountId::new(n as i64 + 1),
            })
            .collect();
        let owners = Arc::new(Owners::new(
            emulator.clone(),
            calendars.clone(),
            "the checker's own test".into(),
        ));
        let checker = Checker {
            owners: owners.clone(),
            observer: Observer {
                http: reqwest::Client::new(),
                base_url: emulator.base_url().to_owned(),
                calendars,
            },
            topology: Topology::everyone_blocks_everyone(3),
            window: Window::days(Utc::now(), 60),
        };
        let insert = |n: usize, body: Value| {
            let owners = owners.clone();
            async move {
                let event = owners.insert(n, &body).await.expect("no faults here");
                event["id"].as_str().expect("an id").to_owned()
            }
        };
        let titles: BTreeSet<String> = ["Alpha #1", "Free #2", "Series #3"]
            .map(String::from)
            .into();
        let mut alpha = timed(3, 10, 11);
        alpha["summary"] = json!("Alpha #1");
        let alpha = insert(0, alpha).await;
        let mut free = timed(4, 10, 11);
        free["summary"] = json!("Free #2");
        free["transparency"] = json!("transparent");
        let free = insert(0, free).await;
        let mut series = weekly_all_day(5);
        series["summary"] = json!("Series #3");
        let series = insert(0, series).await;
        let moved = format!("{series}_{}", day(12).format("%Y%m%d"));
        let moved_times = json!({"start": {"date": day(13).to_string()},
                                 "end": {"date": day(14).to_string()}});
        owners.patch(0, &moved, &moved_times).await.expect("moved");

        // Calendar 2: a right block of Alpha, a second one showing its title, an orphan of
        // the free event, a block series of Series that missed the moved occurrence.
        insert(
            1,
            block(
                "blk2alpha01",
                "Calendar 01 Block",
                "1",
                &alpha,
                timed(3, 10, 11),
            ),
        )
        .await;
        let leak = insert(
            1,
            block("blk2alpha02", "Alpha #1", "1", &alpha, timed(3, 10, 11)),
        )
        .await;
        let orphan = insert(
            1,
            block(
                "blk2free001",
                "Calendar 01 Block",
                "1",
                &free,
                timed(4, 10, 11),
            ),
        )
        .await;
        let stale = insert(
            1,
            block(
                "blk2series1",
                "Calendar 01 Block",
                "1",
                &series,
                weekly_all_day(5),
            ),
        )
        .await;
        // Calendar 3: a right block of Alpha, no block of Series, a block of calendar 2's
        // block, and a block naming an account that is no source.
        insert(
            2,
            block(
                "blk3alpha01",
                "Calendar 01 Block",
                "1",
                &alpha,
                timed(3, 10, 11),
            ),
        )
        .await;
        let of_block = insert(
            2,
            block(
                "blk3ofblock",
                "Calendar 02 Block",
                "2",
                "blk2alpha01",
                timed(3, 10, 11),
            ),
        )
        .await;
        let foreign = insert(
            2,
            block(
                "blk3foreign",
                "Calendar 99 Block",
                "99",
                "whatever1",
                timed(6, 9, 10),
            ),
        )
        .await;

        // Act
        let report = checker.check(&titles).await;

        // Assert: each kind is named, with its target and occurrence.
        let kinds: BTreeSet<&str> = report.findings.iter().map(Finding::kind).collect();
        assert_eq!(
            kinds,
            [
                "spans differ",
                "missing",
                "duplicate",
                "orphan",
                "wrong time",
                "block of a block",
                "not from a source",
                "title in a block summary",
            ]
            .into(),
            "{report}"
        );
        let lines: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
        let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
        assert!(
            has(&format!("Calendar 02 ← Calendar 01: 2 blocks for {alpha}")),
            "{report}"
        );
        assert!(
            has(&format!("orphan block {orphan}")) && has("\"Free #2\" is not busy: it is free"),
            "{report}"
        );
        assert!(
            has(&format!("orphan block {of_block}")) && has("it is a block"),
            "{report}"
        );
        assert!(
            has(&format!("block {of_block} stands for blk2alpha01")),
            "{report}"
        );
        assert!(
            has(&format!("block {stale}_{}", day(12).format("%Y%m%d"))),
            "{report}"
        );
        assert!(
            has(&format!("block {leak} shows a source title")),
            "{report}"
        );
        assert!(
            has(&format!("block {foreign} names account \"99\"")),
            "{report}"
        );
        let missing = report
            .findings
            .iter()
            .filter(|f| matches!(f, Finding::Missing { target, .. } if target == "Calendar 03"))
            .count();
        assert_eq!(
            missing, 3,
            "the three occurrences of Series on Calendar 03: {report}"
        );

        // Act again: every block made right.
        for (n, id) in [(1, &leak), (1, &orphan), (2, &of_block), (2, &foreign)] {
            owners.delete(n, id).await.expect("deleted");
        }
        let stale_occurrence = format!("{stale}_{}", day(12).format("%Y%m%d"));
        owners
            .patch(1, &stale_occurrence, &moved_times)
            .await
            .expect("moved");
        let right = insert(
            2,
            block(
                "blk3series1",
                "Calendar 01 Block",
                "1",
                &series,
                weekly_all_day(5),
            ),
        )
        .await;
        let right_occurrence = format!("{right}_{}", day(12).format("%Y%m%d"));
        owners
            .patch(2, &right_occurrence, &moved_times)
            .await
            .expect("moved");

        // Assert: nothing left to name.
        let report = checker.check(&titles).await;
        assert!(report.holds(), "{report}");
        assert_eq!(
            report.coverage.busy,
            2 * 4,
            "Alpha and three occurrences, twice"
        );
    }
}
