//! The seeded chaos soak: the real `mcss serve` (push on, a 5 s backstop poll) against the
//! emulator, edited by a seeded script of users ([`users`]), disrupted by Google faults and
//! SIGKILLs ([`chaos`]), and judged by the exact invariant checker ([`invariants`]) over
//! Google's side only.
//!
//! Lifecycle of a [`Soak`]: [`Soak::start`] gives it a database, an emulator with N
//! accounts, connects them with `mcss accounts add`, starts `mcss serve` on a fixed port
//! (so the push channels survive restarts) and waits for every push channel. Then either
//! [`Soak::chaos`] (edits and disruptions for `MCSS_SOAK_SECS`, then [`Soak::calm`] and
//! [`Soak::settle`]) or [`Soak::walk`] (one edit at a time, each settled and checked on its
//! own). [`Soak::finish`] stops the service and reads its log. The process side reuses
//! `crash_restart`'s `Service`; the seed and every knob come from [`SoakConfig`], and every
//! failure message carries [`SoakConfig::replay`].
//!
//! It lives beside the shared harness but is a submodule of the `soak` test module
//! (`#[path]` in `tests/api/soak.rs`): it drives the real binary with `crash_restart`'s
//! helpers, which the benches, which include `support/`, do not have.

pub mod chaos;
pub mod client;
pub mod config;
pub mod invariants;
pub mod users;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use gcal_emulator::EmulatorHandle;
use mcss::config::Settings;
use mcss::store::Store;
use serde_json::Value;
use tokio::time::Instant;

use crate::crash_restart::{free_port, push_emulator, serve_env, Running, Service};
use crate::support::{count_status, eventually_within, Backend, Calendar, Observer, TestDb};
use chaos::{Chaos, ChaosTally, Disruption};
use client::Owners;
pub use config::SoakConfig;
use invariants::{Checker, Finding, OccurrenceKey, Report, Topology, Window};
use mcss::domain::{AccountId, EventId};
use users::{Mix, Outcome, Step, Users};

/// The checker compares occurrences starting within this many days of the start.
const WINDOW_DAYS: i64 = 60;
/// Pause between two checks while settling: a check reads every calendar twice.
const CHECK_EVERY: Duration = Duration::from_millis(400);
/// Steps of the history shown in a failure message.
const HISTORY_SHOWN: usize = 40;
/// Warnings of the service log shown in a failure message.
const LOG_SHOWN: usize = 12;
/// Source events whose outbox rows a failure message shows.
const OUTBOX_SHOWN: usize = 8;

/// A running soak: service, emulator, database and the checker over them.
pub struct Soak {
    pub config: SoakConfig,
    backend: Backend,
    emulator: Arc<EmulatorHandle>,
    service: Service,
    running: Option<Running>,
    store: Store,
    owners: Arc<Owners>,
    checker: Checker,
    http: reqwest::Client,
    history: Vec<String>,
    /// Restarts of the service still owed after a kill: edits left before it comes back.
    down_for: Option<usize>,
    _log_dir: tempfile::TempDir,
    /// Last: the database outlives the store's pool.
    _db: TestDb,
}

/// What the calendars looked like when a soak ran out of patience.
#[derive(Debug)]
pub struct Unsettled {
    pub report: Report,
    /// Block writes still pending when the invariants last held (`None`: they did not hold,
    /// or the store did not answer).
    pub pending: Option<u64>,
}

/// The figures of one settled soak.
#[derive(Debug)]
pub struct Settled {
    /// From the end of the disruptions (or of the edit) to the first converged check.
    pub after: Duration,
    pub report: Report,
}

impl Soak {
    /// Starts everything for scenario `name` on `backend`; `None` when PostgreSQL is asked
    /// for and none is configured.
    pub async fn start(backend: Backend, name: &str) -> Option<Soak> {
        let config = SoakConfig::from_env();
        let db = TestDb::create(backend, name).await?;
        eprintln!(
            "soak {name} on {backend:?}: seed {}; replay with\n  {}",
            config.seed,
            config.replay()
        );
        let emulator = Arc::new(push_emulator(config.calendars).await);
        let log_dir = tempfile::tempdir().expect("a temp dir for the service log");
        let service = service(&emulator, &db, &log_dir);
        let settings = Settings::from_vars(service.env.clone()).expect("valid settings");
        for (n, info) in emulator.accounts().iter().enumerate() {
            service.add_account(&alias(n), &info.refresh_token, &info.calendar_id);
        }
        let store = Store::connect(&settings)
            .await
            .expect("the soak reads the store");
        let calendars = calendars(&emulator, &store).await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client");
        let owners = Arc::new(Owners::new(
            emulator.clone(),
            calendars.clone(),
            config.replay(),
        ));
        let checker = Checker {
            owners: owners.clone(),
            observer: Observer {
                http: http.clone(),
                base_url: emulator.base_url().to_owned(),
                calendars: calendars.clone(),
            },
            topology: Topology::everyone_blocks_everyone(calendars.len()),
            window: Window::days(chrono::Utc::now(), WINDOW_DAYS),
        };
        let mut soak = Soak {
            config,
            backend,
            emulator,
            service,
            running: None,
            store,
            owners,
            checker,
            http,
            history: Vec::new(),
            down_for: None,
            _log_dir: log_dir,
            _db: db,
        };
        soak.up().await;
        soak.channels_open().await;
        Some(soak)
    }

    /// The script of users for this run, with its own stream of the seed.
    pub fn users(&self, mix: Mix) -> Users {
        let owners = self
            .checker
            .observer
            .calendars
            .iter()
            .map(|c| (c.alias.clone(), c.email.clone()))
            .collect();
        Users::new(self.config.stream("users"), mix, owners)
    }

    // -- the service ------------------------------------------------------------------------

    async fn up(&mut self) {
        if self.running.is_none() {
            self.running = Some(Running(self.service.serve()));
        }
        self.service.healthy(&self.http).await;
    }

    /// SIGKILL: no shutdown hook runs, whatever was in flight is cut off.
    fn kill(&mut self) {
        if let Some(mut running) = self.running.take() {
            let pid = nix::unistd::Pid::from_raw(running.0.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
                .expect("SIGKILL the service");
            running.0.wait().expect("reap the killed service");
        }
    }

    /// Waits until every calendar has a live push channel to the service's port.
    async fn channels_open(&self) {
        let url = format!("{}/emulator/channels", self.emulator.base_url());
        let port = format!(":{}/", self.service.port);
        let calendars = &self.checker.observer.calendars;
        eventually_within(
            "a push channel for every calendar",
            Duration::from_secs(60),
            || async {
                let answer: Value = self.http.get(&url).send().await.ok()?.json().await.ok()?;
                let channels = answer["channels"].as_array()?;
                calendars
                    .iter()
                    .all(|c| {
                        channels.iter().any(|ch| {
                            ch["calendarId"] == c.calendar_id.as_str()
                                && ch["live"] == true
                                && ch["address"].as_str().is_some_and(|a| a.contains(&port))
                        })
                    })
                    .then_some(())
            },
        )
        .await;
    }

    // -- the emulator's control API ---------------------------------------------------------

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/emulator/{path}", self.emulator.base_url());
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .expect("the emulator's control API answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "emulator {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn disrupt(&mut self, disruption: Disruption) {
        match disruption {
            Disruption::Fault { label, rule } => {
                let account = rule["account"].as_str().unwrap_or_default().to_owned();
                self.control(reqwest::Method::POST, "faults", Some(rule))
                    .await;
                self.history.push(format!("fault: {label} for {account}"));
            }
            Disruption::ExpireSyncTokens { calendar } => {
                let calendar_id = self.checker.observer.calendars[calendar]
                    .calendar_id
                    .clone();
                let body = serde_json::json!({ "calendarId": calendar_id });
                self.control(reqwest::Method::POST, "sync-tokens/invalidate", Some(body))
                    .await;
                self.history
                    .push(format!("fault: sync tokens of {} expire", alias(calendar)));
            }
            Disruption::Kill { down_for_edits } => {
                self.kill();
                self.down_for = Some(down_for_edits);
                self.history.push(format!(
                    "SIGKILL mcss serve, back after {down_for_edits} edits"
                ));
            }
        }
    }

    /// One edit of the script, recorded in the history.
    async fn edit(&mut self, users: &mut Users) -> Step {
        let step = users.step(&self.owners).await;
        let outcome = match step.outcome {
            Outcome::Applied => String::new(),
            Outcome::Refused(status) => format!(" — refused ({status}) every time"),
            Outcome::NothingToDo => " — nothing to do".to_owned(),
        };
        self.history.push(format!("{}{outcome}", step.what));
        step
    }

    // -- the two ways to run ----------------------------------------------------------------

    /// Edits and disruptions for `MCSS_SOAK_SECS`; the service is restarted a few edits after
    /// each kill, so kills land in the middle of bursts.
    pub async fn chaos(&mut self, users: &mut Users) -> ChaosTally {
        let mut chaos = Chaos::new(
            self.config.stream("chaos"),
            self.checker
                .observer
                .calendars
                .iter()
                .map(|c| c.email.clone())
                .collect(),
            self.config.faults,
            self.config.kills,
        );
        let deadline = Instant::now() + self.config.chaos;
        while Instant::now() < deadline {
            self.edit(users).await;
            if let Some(left) = self.down_for.as_mut() {
                if *left == 0 {
                    self.down_for = None;
                    self.running = Some(Running(self.service.serve()));
                    self.history.push("mcss serve started again".to_owned());
                } else {
                    *left -= 1;
                }
            }
            if let Some(disruption) = chaos.after_edit(self.running.is_some()) {
                self.disrupt(disruption).await;
            }
            tokio::time::sleep(Duration::from_millis(chaos.pause_ms())).await;
        }
        chaos.tally
    }

    /// Ends the disruptions: no fault rule is left, the service is up and healthy.
    pub async fn calm(&mut self) {
        self.control(reqwest::Method::DELETE, "faults", None).await;
        self.down_for = None;
        self.up().await;
        self.history
            .push("faults cleared, mcss serve up".to_owned());
    }

    /// Waits, within `patience`, until the invariants hold, no block write is pending, and
    /// they still hold; otherwise what was last seen.
    pub async fn settle(&self, users: &Users, patience: Duration) -> Result<Settled, Unsettled> {
        let started = Instant::now();
        let mut last = Unsettled {
            report: Report::default(),
            pending: None,
        };
        while started.elapsed() < patience {
            last.report = self.checker.check(users.titles()).await;
            if last.report.holds() {
                let after = started.elapsed();
                last.pending = self.store.pending_count(None).await.ok();
                if last.pending == Some(0) {
                    let again = self.checker.check(users.titles()).await;
                    if again.holds() {
                        return Ok(Settled {
                            after,
                            report: again,
                        });
                    }
                    last.report = again;
                }
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
        Err(last)
    }

    /// `steps` edits, each settled and checked before the next: the property "blocked
    /// instants = busy instants after every step". Panics at the first step that does not
    /// converge, with the history. Returns the time each step took to converge.
    pub async fn walk(&mut self, users: &mut Users) -> Vec<Duration> {
        let patience = self.config.settle / 3;
        let mut took = Vec::new();
        for n in 1..=self.config.steps {
            let step = self.edit(users).await;
            match self.settle(users, patience).await {
                Ok(settled) => took.push(settled.after),
                Err(unsettled) => {
                    let what = format!(
                        "step {n} ({}) did not converge within {patience:?}",
                        step.kind
                    );
                    panic!("{}", self.failure(&what, &unsettled, users).await);
                }
            }
        }
        took
    }

    /// Stops the service and checks its log: no panic, no event title, no secret.
    pub async fn finish(mut self, users: &Users) {
        self.kill();
        self.store.close().await;
        let log = std::fs::read_to_string(&self.service.log).unwrap_or_default();
        let replay = self.config.replay();
        assert!(
            !log.contains("panicked"),
            "the service panicked; replay: {replay}\n{log}"
        );
        if let Some(title) = users.titles().iter().find(|t| log.contains(t.as_str())) {
            panic!("the service log shows the event title {title:?}; replay: {replay}");
        }
        let secrets = self
            .checker
            .observer
            .calendars
            .iter()
            .map(|c| c.refresh_token.as_str())
            .chain([self.emulator.client_secret()]);
        for secret in secrets {
            assert!(
                !log.contains(secret),
                "the service log shows a secret; replay: {replay}"
            );
        }
    }

    // -- reporting --------------------------------------------------------------------------

    /// A failure message: what failed, the seed and replay line, the findings, what Google
    /// refused, the service's last warnings and the recent history of edits and disruptions.
    pub async fn failure(&self, what: &str, unsettled: &Unsettled, users: &Users) -> String {
        let mut message = format!(
            "soak on {:?}, seed {}: {what}\nreplay: {}\n{}\nedits: {} applied, {} refused\n",
            self.backend,
            self.config.seed,
            self.config.replay(),
            unsettled.report,
            users.tally.applied_total(),
            users.tally.refused_total(),
        );
        if let Some(pending) = unsettled.pending.filter(|n| *n > 0) {
            let _ = writeln!(
                message,
                "the invariants held, but {pending} block writes were still pending"
            );
        }
        let counters = self.control(reqwest::Method::GET, "counters", None).await;
        let _ = writeln!(
            message,
            "Google's error answers: {}",
            error_answers(&counters)
        );
        let log = std::fs::read_to_string(&self.service.log).unwrap_or_default();
        // Failed block writes are logged at info: they are shown with the warnings.
        let marks = [
            "\"level\":\"WARN\"",
            "\"level\":\"ERROR\"",
            "\"result\":\"failed\"",
        ];
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| marks.iter().any(|mark| l.contains(mark)))
            .collect();
        let _ = writeln!(
            message,
            "the service's last warnings and failed block writes ({} in all):",
            warnings.len()
        );
        for line in warnings
            .iter()
            .skip(warnings.len().saturating_sub(LOG_SHOWN))
        {
            let _ = writeln!(message, "  {line}");
        }
        let _ = writeln!(message, "{}", self.outbox_rows(&unsettled.report).await);
        let _ = writeln!(message, "{}", self.keep_evidence(&unsettled.report, &log));
        let skip = self.history.len().saturating_sub(HISTORY_SHOWN);
        let _ = writeln!(
            message,
            "history ({} entries, the last {}):",
            self.history.len(),
            self.history.len() - skip
        );
        for (n, entry) in self.history.iter().enumerate().skip(skip) {
            let _ = writeln!(message, "  {:>4}. {entry}", n + 1);
        }
        message
    }

    /// The service's own view of the source events the findings name: its outbox rows
    /// (state, attempts, last error), read from the store. For debugging only: the verdict
    /// is the checker's.
    async fn outbox_rows(&self, report: &Report) -> String {
        let keys: std::collections::BTreeSet<&OccurrenceKey> =
            report.findings.iter().filter_map(Finding::key).collect();
        let mut text = String::from("the service's outbox for those source events:");
        for key in keys.iter().take(OUTBOX_SHOWN) {
            let Ok(account) = AccountId::parse(&key.account) else {
                continue;
            };
            let mut ids = vec![key.event.clone()];
            ids.extend(
                key.occurrence
                    .as_ref()
                    .map(|o| format!("{}_{o}", key.event)),
            );
            for id in ids.iter().filter_map(|id| EventId::parse(id).ok()) {
                for row in self
                    .store
                    .blocks_for_source(account, &id)
                    .await
                    .unwrap_or_default()
                {
                    let _ = write!(
                        text,
                        "\n  {id} → account {}: block {} {} (attempts {}, last error {:?}, updated {})",
                        row.target_account_id,
                        row.block_id,
                        row.state,
                        row.attempts,
                        row.last_error.as_deref().unwrap_or("none"),
                        row.updated_at.format("%H:%M:%S%.3f"),
                    );
                }
            }
        }
        text
    }

    /// Writes the whole history, the report and the service log under the temp directory
    /// (they outlive the test); says where.
    fn keep_evidence(&self, report: &Report, log: &str) -> String {
        let dir = std::env::temp_dir().join(format!(
            "mcss-soak-{}-{:?}-{}",
            self.config.seed,
            self.backend,
            std::process::id()
        ));
        let history: String = self
            .history
            .iter()
            .enumerate()
            .map(|(n, entry)| format!("{:>5}. {entry}\n", n + 1))
            .collect();
        let mut findings = format!("{}\n", self.config.replay());
        for finding in &report.findings {
            let _ = writeln!(findings, "{finding}");
        }
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            std::fs::write(dir.join("history.txt"), history)?;
            std::fs::write(dir.join("findings.txt"), findings)?;
            std::fs::write(dir.join("serve.log"), log)
        });
        match written {
            Ok(()) => format!(
                "the whole history, every finding and the service log are in {}",
                dir.display()
            ),
            Err(e) => format!("could not keep the evidence in {}: {e}", dir.display()),
        }
    }

    /// The soak's figures in one paragraph, for the test output and the report.
    pub async fn figures(
        &self,
        users: &Users,
        chaos: Option<&ChaosTally>,
        settled: &Settled,
    ) -> String {
        let counters = self.control(reqwest::Method::GET, "counters", None).await;
        let channels = self.control(reqwest::Method::GET, "channels", None).await;
        let dropped: u64 = channels["channels"]
            .as_array()
            .map(|list| list.iter().filter_map(|c| c["dropped"].as_u64()).sum())
            .unwrap_or(0);
        let methods: Vec<String> = counters["byMethod"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let hits = |status: u16| -> u64 {
            methods
                .iter()
                .map(|m| count_status(&counters, m, status))
                .sum()
        };
        let mut text =
            format!(
            "soak on {:?}, seed {}: {} edits applied {:?}, {} refused by faults, {} with nothing \
             to do, {} owner retries",
            self.backend,
            self.config.seed,
            users.tally.applied_total(),
            users.tally.applied,
            users.tally.refused_total(),
            users.tally.nothing_to_do,
            self.owners.retries.load(std::sync::atomic::Ordering::Relaxed),
        );
        if let Some(chaos) = chaos {
            let _ = write!(
                text,
                "; disruptions: {} kills, faults {:?}; answered 500×{} 503×{} 429×{} 403×{} \
                 410×{}, {} pushes dropped",
                chaos.kills,
                chaos.faults,
                hits(500),
                hits(503),
                hits(429),
                hits(403),
                hits(410),
                dropped,
            );
        }
        let _ = write!(
            text,
            "; converged {:.1} s after; invariants: {}",
            settled.after.as_secs_f64(),
            settled.report
        );
        text
    }
}

/// Every non-2xx answer in a counters snapshot, as "events.patch 400×3, …".
fn error_answers(counters: &Value) -> String {
    let mut answers = Vec::new();
    for (method, by_status) in counters["byMethod"].as_object().into_iter().flatten() {
        for (status, n) in by_status.as_object().into_iter().flatten() {
            if !status.starts_with('2') {
                answers.push(format!("{method} {status}×{}", n.as_u64().unwrap_or(0)));
            }
        }
    }
    if answers.is_empty() {
        "none".to_owned()
    } else {
        answers.join(", ")
    }
}

fn alias(n: usize) -> String {
    format!("Calendar {:02}", n + 1)
}

/// `mcss serve` on a fixed free port, pushing to its own webhook, polling every 5 s.
fn service(emulator: &EmulatorHandle, db: &TestDb, log_dir: &tempfile::TempDir) -> Service {
    let port = free_port();
    // The shortest backstop poll the service accepts: a dropped push costs at most 5 s.
    let mut env = serve_env(emulator, &db.url(), port, 5);
    env.push(("ADMIN_PASSWORD".to_owned(), "soak-test-password".to_owned()));
    Service {
        env,
        port,
        log: log_dir.path().join("serve.log"),
    }
}

/// The calendars as the service registered them (its account ids are in the markers).
async fn calendars(emulator: &EmulatorHandle, store: &Store) -> Vec<Calendar> {
    let accounts = store.list_accounts().await.expect("the accounts");
    emulator
        .accounts()
        .into_iter()
        .enumerate()
        .map(|(n, info)| Calendar {
            alias: alias(n),
            account: accounts
                .iter()
                .find(|a| a.calendar_id.as_str() == info.calendar_id)
                .expect("every account was added")
                .id,
            email: info.email,
            calendar_id: info.calendar_id,
            refresh_token: info.refresh_token,
        })
        .collect()
}
