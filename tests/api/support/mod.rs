//! The black-box harness of the sync integration tests: [`spawn_app`] starts the Google
//! emulator in process, gives the test its own database (PostgreSQL when
//! `MCSS_TEST_POSTGRES_URL` names a server, else a SQLite temp file), builds and runs the
//! real [`Application`] against both, and connects the emulator's accounts as
//! "Calendar 01".."Calendar NN" through `mcss::ops::connect_account`.
//!
//! Tests then act as a user through [`User`] (plain Calendar API requests with the account's
//! own token), look at Google's side through the emulator's raw dump ([`TestApp::blocks_on`])
//! and its request counters, wait with the bounded [`eventually`], and finish with the
//! invariant checks ([`TestApp::assert_no_duplicates`], [`TestApp::assert_no_orphans`],
//! [`TestApp::assert_all_blocks_present`]).
//!
//! Every test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use gcal_emulator::{Emulator, EmulatorConfig, EmulatorHandle, Settings as EmuSettings};
use mcss::actors::Control;
use mcss::config::{EncryptionKey, Settings};
use mcss::domain::{AccountId, CalendarId};
use mcss::ops::{connect_account, ConnectRequest};
use mcss::shutdown::Shutdown;
use mcss::startup::Application;
use mcss::store::Store;
use secrecy::SecretString;
use serde_json::{json, Value};

mod postgres;
pub use postgres::PostgresDb;

/// How long [`eventually`] waits by default: generous, because two cores run everything.
pub const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------

/// Polls `probe` every 50 ms until it yields `Some`, for at most `timeout`; panics naming
/// `what` otherwise. Never a sleep used as an assertion.
pub async fn eventually_within<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`eventually_within`] with [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, PATIENCE, probe).await
}

// ---------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A test's own database, removed when dropped.
pub enum TestDb {
    Postgres(PostgresDb),
    Sqlite(tempfile::TempDir),
}

impl TestDb {
    /// A fresh database of `backend`, or `None` (with a note) when PostgreSQL is asked for
    /// and `MCSS_TEST_POSTGRES_URL` is unset.
    pub async fn create(backend: Backend, test: &str) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::Sqlite(
                tempfile::tempdir().expect("a temp dir for SQLite"),
            )),
            Backend::Postgres => PostgresDb::create(test, "mcss_t_")
                .await
                .map(TestDb::Postgres),
        }
    }

    /// The `DATABASE_URL` of this database.
    pub fn url(&self) -> String {
        match self {
            TestDb::Postgres(pg) => pg.url.clone(),
            TestDb::Sqlite(dir) => {
                format!("sqlite://{}?mode=rwc", dir.path().join("mcss.db").display())
            }
        }
    }
}

/// Runs each scenario as two tests, `on_sqlite` and `on_postgres` (the latter passes with a
/// note when no PostgreSQL server is configured).
///
/// `on_both_backends!(a, b)` calls `async fn a(Backend)`; with a setup,
/// `on_both_backends!(setup = super::Env::start; a, b)` first builds the environment with
/// `async fn start(Backend, &str) -> Option<Env>` and calls `async fn a(&Env)`.
#[macro_export]
macro_rules! on_both_backends {
    (setup = $setup:path; $($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                let env = $setup($crate::support::Backend::Sqlite, stringify!($scenario))
                    .await
                    .expect("SQLite is always available");
                super::$scenario(&env).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                let Some(env) =
                    $setup($crate::support::Backend::Postgres, stringify!($scenario)).await
                else {
                    return;
                };
                super::$scenario(&env).await;
            }
        }
    )+};
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$scenario($crate::support::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$scenario($crate::support::Backend::Postgres).await;
            }
        }
    )+};
}

// ---------------------------------------------------------------------------------------
// The application
// ---------------------------------------------------------------------------------------

/// What [`spawn_app`] builds.
pub struct AppOptions {
    pub name: &'static str,
    pub accounts: usize,
    pub backend: Backend,
    /// Push channels to the app's own webhook (else polling only).
    pub push: bool,
    /// Extra or overriding environment variables of the service.
    pub vars: Vec<(&'static str, String)>,
    pub emulator: EmuSettings,
    /// Only the first this many emulator accounts are connected at start (all when `None`);
    /// the others are there to be connected later ([`TestApp::emulator_calendar`]).
    pub connected: Option<usize>,
}

/// An emulator with `accounts` accounts and no per-user quota (these tests check the
/// engine, not the quota).
pub async fn unlimited_emulator(accounts: usize) -> EmulatorHandle {
    Emulator::start(EmulatorConfig {
        accounts,
        settings: EmuSettings {
            rate_limit_per_minute: None,
            ..EmuSettings::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts")
}

impl AppOptions {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            accounts: 5,
            backend: Backend::Sqlite,
            push: true,
            vars: Vec::new(),
            emulator: EmuSettings {
                allow_http_webhooks: true,
                // The tests check the engine, not the per-user quota (one test turns it on).
                rate_limit_per_minute: None,
                ..EmuSettings::default()
            },
            connected: None,
        }
    }

    /// Connects only the first `n` emulator accounts at start.
    pub fn connected(mut self, n: usize) -> Self {
        self.connected = Some(n);
        self
    }

    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    pub fn accounts(mut self, n: usize) -> Self {
        self.accounts = n;
        self
    }

    pub fn polling_only(mut self) -> Self {
        self.push = false;
        self
    }

    pub fn var(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.vars.push((name, value.into()));
        self
    }
}

/// One connected calendar: the emulator account and the service's account row.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub alias: String,
    pub email: String,
    pub calendar_id: String,
    pub refresh_token: String,
    pub account: AccountId,
}

/// A running service, its emulator and its database.
pub struct TestApp {
    pub control: Control,
    pub calendars: Vec<Calendar>,
    pub port: u16,
    pub http: reqwest::Client,
    pub emulator: EmulatorHandle,
    shutdown: Shutdown,
    app_task: Option<tokio::task::JoinHandle<()>>,
    /// Last: the database outlives the pools that use it.
    _db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.app_task.take() {
            task.abort();
        }
    }
}

/// The service variables every test shares, pointing at `emulator` and `db`.
pub fn base_vars(emulator: &EmulatorHandle, database_url: &str) -> Vec<(String, String)> {
    vec![
        ("PORT".into(), "0".into()),
        ("DATABASE_URL".into(), database_url.to_owned()),
        ("ENCRYPTION_KEY".into(), EncryptionKey::generate().to_hex()),
        ("GOOGLE_API_BASE_URL".into(), emulator.base_url().to_owned()),
        ("GOOGLE_AUTH_URL".into(), emulator.auth_url()),
        ("GOOGLE_TOKEN_URL".into(), emulator.token_url()),
        (
            "GOOGLE_REVOKE_URL".into(),
            format!("{}/revoke", emulator.base_url()),
        ),
        ("GOOGLE_CLIENT_ID".into(), emulator.client_id().to_owned()),
        (
            "GOOGLE_CLIENT_SECRET".into(),
            emulator.client_secret().to_owned(),
        ),
        ("WEBHOOK_SECRET".into(), "sync-tests-webhook-secret".into()),
        ("POLL_INTERVAL_SECS".into(), "5".into()),
        ("WRITES_PER_SECOND".into(), "100".into()),
        ("LOG_LEVEL".into(), "warn".into()),
        ("ENABLE_METRICS".into(), "false".into()),
    ]
}

/// Starts the emulator, the database and the service, and connects every account.
/// `None` when the test asked for PostgreSQL and none is configured.
pub async fn spawn_app(options: AppOptions) -> Option<TestApp> {
    let db = TestDb::create(options.backend, options.name).await?;
    let emulator = Emulator::start(EmulatorConfig {
        accounts: options.accounts,
        settings: options.emulator.clone(),
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts");

    let mut vars: BTreeMap<String, String> = base_vars(&emulator, &db.url()).into_iter().collect();
    if options.push {
        // Port 0: the application substitutes the port it bound.
        vars.insert("WEBHOOK_BASE_URL".into(), "http://127.0.0.1:0".into());
    }
    for (name, value) in &options.vars {
        vars.insert((*name).to_owned(), value.clone());
    }
    let settings = Settings::from_vars(vars).expect("the test settings are valid");
    let app = Application::build(settings)
        .await
        .expect("the application builds");
    let control = app.state().control.clone();
    let shutdown = app.shutdown();
    let port = app.port();
    let app_task = tokio::spawn(async move {
        if let Err(e) = app.run_until_stopped().await {
            eprintln!("the application stopped with an error: {e}");
        }
    });

    let mut calendars = Vec::new();
    let connected = options.connected.unwrap_or(usize::MAX);
    for (n, info) in emulator.accounts().into_iter().enumerate().take(connected) {
        let alias = format!("Calendar {:02}", n + 1);
        let account = connect_account(
            control.services(),
            ConnectRequest {
                group: None,
                alias: alias.clone(),
                refresh_token: SecretString::from(info.refresh_token.clone()),
                calendar_id: Some(CalendarId::parse(&info.calendar_id).expect("a calendar id")),
                email: Some(info.email.clone()),
            },
        )
        .await
        .expect("the account connects");
        calendars.push(Calendar {
            alias,
            email: info.email,
            calendar_id: info.calendar_id,
            refresh_token: info.refresh_token,
            account: account.id,
        });
    }
    for calendar in &calendars {
        control
            .start_account(calendar.account)
            .await
            .expect("the account starts");
    }
    let app = TestApp {
        control,
        calendars,
        port,
        http: reqwest::Client::new(),
        emulator,
        shutdown,
        app_task: Some(app_task),
        _db: db,
    };
    app.first_syncs_done().await;
    if options.push {
        app.channels_open().await;
    }
    Some(app)
}

// ---------------------------------------------------------------------------------------
// Acting as a user
// ---------------------------------------------------------------------------------------

/// A Calendar API client acting as one emulator account, as a person's own app would.
pub struct User<'a> {
    app: &'a TestApp,
    calendar: &'a Calendar,
}

impl User<'_> {
    async fn token(&self) -> String {
        let answer: Value = self
            .app
            .http
            .post(self.app.emulator.token_url())
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", self.calendar.refresh_token.as_str()),
                ("client_id", self.app.emulator.client_id()),
                ("client_secret", self.app.emulator.client_secret()),
            ])
            .send()
            .await
            .expect("the token endpoint answers")
            .json()
            .await
            .expect("a token response");
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("an access token for {}: {answer}", self.calendar.email))
            .to_owned()
    }

    fn events_url(&self) -> String {
        format!(
            "{}/calendar/v3/calendars/{}/events",
            self.app.emulator.base_url(),
            self.calendar.calendar_id
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Value {
        let response = request
            .bearer_auth(self.token().await)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what} answers: {e}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{what} failed with {status}: {body}");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// events.insert that may fail (a storm test's user meets the storm too): the event, or
    /// the status Google answered.
    pub async fn try_insert(&self, body: &Value) -> Result<Value, u16> {
        let response = self
            .app
            .http
            .post(self.events_url())
            .bearer_auth(self.token().await)
            .json(body)
            .send()
            .await
            .map_err(|_| 0u16)?;
        let status = response.status();
        if !status.is_success() {
            return Err(status.as_u16());
        }
        response.json().await.map_err(|_| 0u16)
    }

    /// events.insert; returns the created event.
    pub async fn insert(&self, body: Value) -> Value {
        self.send(self.app.http.post(self.events_url()).json(&body), "insert")
            .await
    }

    /// events.patch of an event or an instance id.
    pub async fn patch(&self, id: &str, body: Value) -> Value {
        self.send(
            self.app
                .http
                .patch(format!("{}/{id}", self.events_url()))
                .json(&body),
            "patch",
        )
        .await
    }

    pub async fn delete(&self, id: &str) {
        self.send(
            self.app.http.delete(format!("{}/{id}", self.events_url())),
            "delete",
        )
        .await;
    }

    pub async fn get(&self, id: &str) -> Value {
        self.send(
            self.app.http.get(format!("{}/{id}", self.events_url())),
            "get",
        )
        .await
    }

    /// events.instances with deleted (cancelled) occurrences included.
    pub async fn instances(&self, id: &str) -> Vec<Value> {
        let page = self
            .send(
                self.app
                    .http
                    .get(format!("{}/{id}/instances", self.events_url()))
                    .query(&[("showDeleted", "true"), ("maxResults", "2500")]),
                "instances",
            )
            .await;
        page["items"].as_array().cloned().unwrap_or_default()
    }

    /// events.list with series expanded into instances (`singleEvents=true`), live ones only,
    /// between `time_min` and `time_max` (RFC 3339), every page.
    pub async fn list_expanded(&self, time_min: &str, time_max: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![
                ("singleEvents", "true".to_owned()),
                ("timeMin", time_min.to_owned()),
                ("timeMax", time_max.to_owned()),
                ("maxResults", "2500".to_owned()),
            ];
            if let Some(token) = &page_token {
                query.push(("pageToken", token.clone()));
            }
            let page = self
                .send(
                    self.app.http.get(self.events_url()).query(&query),
                    "list expanded",
                )
                .await;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["nextPageToken"].as_str() {
                Some(token) => page_token = Some(token.to_owned()),
                None => return items,
            }
        }
    }

    /// A timed, busy event `days_ahead` days from now at 10:00 UTC, one hour long.
    pub async fn insert_meeting(&self, summary: &str, days_ahead: i64) -> Value {
        let (start, end) = hour_slot(days_ahead, 10);
        self.insert(json!({
            "summary": summary,
            "start": {"dateTime": start},
            "end": {"dateTime": end},
        }))
        .await
    }
}

/// RFC 3339 start and end of a one-hour slot `days_ahead` days from today at `hour`:00 UTC.
pub fn hour_slot(days_ahead: i64, hour: u32) -> (String, String) {
    let day = (chrono::Utc::now() + chrono::TimeDelta::days(days_ahead)).date_naive();
    let start = day.and_hms_opt(hour, 0, 0).expect("a valid hour").and_utc();
    let end = start + chrono::TimeDelta::hours(1);
    (
        start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        end.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// The id of an event resource.
pub fn id_of(event: &Value) -> String {
    event["id"].as_str().expect("an event id").to_owned()
}

/// The marker's (source account, source event) of a block, `None` for anything else.
pub fn marker_of(event: &Value) -> Option<(String, String)> {
    let private = &event["extendedProperties"]["private"];
    if !private["mcssInstallation"].is_string() {
        return None;
    }
    Some((
        private["mcssSourceAccount"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        private["mcssSourceEvent"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ))
}

/// One stored event of the emulator's raw dump.
#[derive(Debug, Clone)]
pub struct Stored {
    pub deleted: bool,
    pub is_exception: bool,
    pub event: Value,
}

impl Stored {
    pub fn is_live(&self) -> bool {
        !self.deleted && self.event["status"] != "cancelled"
    }
    pub fn id(&self) -> &str {
        self.event["id"].as_str().unwrap_or_default()
    }
}

impl TestApp {
    pub fn user(&self, n: usize) -> User<'_> {
        User {
            app: self,
            calendar: &self.calendars[n],
        }
    }

    pub fn store(&self) -> &Store {
        &self.control.services().store
    }

    // -- the emulator's control API ------------------------------------------------------

    fn control_url(&self, path: &str) -> String {
        format!("{}/emulator/{path}", self.emulator.base_url())
    }

    async fn emu_call(&self, request: reqwest::RequestBuilder, what: &str) -> Value {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("emulator {what}: {e}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "emulator {what}: {status}: {body}");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// Google's side of this app's calendars, seen through the emulator's dump.
    pub fn observer(&self) -> Observer {
        Observer {
            http: self.http.clone(),
            base_url: self.emulator.base_url().to_owned(),
            calendars: self.calendars.clone(),
        }
    }

    /// Every stored event of calendar `n`: tombstones and exceptions included.
    pub async fn dump(&self, n: usize) -> Vec<Stored> {
        self.observer().dump(n).await
    }

    /// The live blocks (series and single events, not exceptions) on calendar `n`.
    pub async fn blocks_on(&self, n: usize) -> Vec<Value> {
        self.observer().blocks_on(n).await
    }

    /// The live blocks on calendar `n` made for `source_event` of calendar `source`.
    pub async fn blocks_for(&self, n: usize, source: usize, source_event: &str) -> Vec<Value> {
        let account = self.calendars[source].account.to_string();
        self.blocks_on(n)
            .await
            .into_iter()
            .filter(|b| marker_of(b) == Some((account.clone(), source_event.to_owned())))
            .collect()
    }

    /// Waits until every other calendar holds exactly one block for `source_event` of
    /// calendar `source`, and returns them (in calendar order, the source's slot skipped).
    pub async fn await_blocks_everywhere(&self, source: usize, source_event: &str) -> Vec<Value> {
        let what = format!("blocks of {source_event} on every other calendar");
        eventually(&what, || async {
            let mut found = Vec::new();
            for n in (0..self.calendars.len()).filter(|n| *n != source) {
                let mut blocks = self.blocks_for(n, source, source_event).await;
                if blocks.len() != 1 {
                    return None;
                }
                found.push(blocks.remove(0));
            }
            Some(found)
        })
        .await
    }

    /// Waits until no calendar holds a live block for `source_event` of calendar `source`.
    pub async fn await_no_blocks_anywhere(&self, source: usize, source_event: &str) {
        let what = format!("no block of {source_event} anywhere");
        eventually(&what, || async {
            for n in 0..self.calendars.len() {
                if !self.blocks_for(n, source, source_event).await.is_empty() {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }

    /// Request counters: `{"total", "byMethod": {"events.insert": {"200": n}}}`.
    pub async fn counters(&self) -> Value {
        self.emu_call(self.http.get(self.control_url("counters")), "counters")
            .await
    }

    pub async fn reset_counters(&self) {
        self.emu_call(
            self.http.delete(self.control_url("counters")),
            "reset counters",
        )
        .await;
    }

    /// Successful (2xx) requests of `method` since the last reset.
    pub async fn ok_count(&self, method: &str) -> u64 {
        let counters = self.counters().await;
        count_2xx(&counters, method)
    }

    pub async fn add_fault(&self, rule: Value) -> Value {
        self.emu_call(
            self.http.post(self.control_url("faults")).json(&rule),
            "add fault",
        )
        .await
    }

    pub async fn clear_faults(&self) {
        self.emu_call(self.http.delete(self.control_url("faults")), "clear faults")
            .await;
    }

    /// Makes every sync token of calendar `n` (all calendars when `None`) answer 410.
    pub async fn invalidate_sync_tokens(&self, n: Option<usize>) {
        let body = match n {
            Some(n) => json!({"calendarId": self.calendars[n].calendar_id}),
            None => json!({}),
        };
        self.emu_call(
            self.http
                .post(self.control_url("sync-tokens/invalidate"))
                .json(&body),
            "invalidate sync tokens",
        )
        .await;
    }

    pub async fn advance_clock(&self, seconds: i64) {
        self.emu_call(
            self.http
                .post(self.control_url("clock/advance"))
                .json(&json!({"seconds": seconds})),
            "advance clock",
        )
        .await;
    }

    /// The emulator's view of every watch channel.
    pub async fn channels(&self) -> Vec<Value> {
        let answer = self
            .emu_call(self.http.get(self.control_url("channels")), "channels")
            .await;
        answer["channels"].as_array().cloned().unwrap_or_default()
    }

    /// Revokes every refresh token of calendar `n`'s account.
    pub async fn revoke(&self, n: usize) {
        let url = self.control_url(&format!("accounts/{}/revoke", self.calendars[n].email));
        self.emu_call(self.http.post(url), "revoke").await;
    }

    pub async fn put_emulator_settings(&self, settings: Value) {
        self.emu_call(
            self.http.put(self.control_url("settings")).json(&settings),
            "settings",
        )
        .await;
    }

    // -- the service's side --------------------------------------------------------------

    /// Waits until every account finished its first full sync.
    pub async fn first_syncs_done(&self) {
        let patience = PATIENCE.max(Duration::from_millis(100) * self.calendars.len() as u32);
        eventually_within("every account's first full sync", patience, || async {
            for calendar in &self.calendars {
                let state = self.store().sync_state(calendar.account).await.ok()?;
                state.sync_token.as_ref()?;
            }
            Some(())
        })
        .await;
    }

    /// Waits until every account has an open push channel.
    pub async fn channels_open(&self) {
        let patience = PATIENCE.max(Duration::from_millis(100) * self.calendars.len() as u32);
        eventually_within("a push channel for every account", patience, || async {
            for calendar in &self.calendars {
                self.store()
                    .current_channel(calendar.account)
                    .await
                    .ok()??;
            }
            Some(())
        })
        .await;
    }

    /// Waits until no block write is pending anywhere.
    pub async fn writers_idle(&self) {
        eventually("every writer to drain its queue", || async {
            (self.store().pending_count(None).await.ok()? == 0).then_some(())
        })
        .await;
    }

    /// Waits until the service stored `event_id` of calendar `n` with `field` = `value`:
    /// proof that a sync saw that change.
    pub async fn await_synced(&self, n: usize, event_id: &str, field: &str, value: &Value) {
        let id = mcss::domain::EventId::parse(event_id).expect("an event id");
        let account = self.calendars[n].account;
        let what = format!("the service to see {field} = {value} on {event_id}");
        eventually(&what, || async {
            let stored = self.store().source_event(account, &id).await.ok()??;
            (&stored.data[field] == value).then_some(())
        })
        .await;
    }

    /// Waits until calendar `n` was synced after everything written to it so far. Blocks
    /// are never stored, so their sync leaves no row to look for: a free (transparent)
    /// sentinel written now is stored by the next sync, which lists every earlier change
    /// too, and produces no block anywhere.
    pub async fn await_seen(&self, n: usize) {
        let (start, end) = hour_slot(400, 3);
        let sentinel = self
            .user(n)
            .insert(json!({
                "summary": "sentinel",
                "transparency": "transparent",
                "start": {"dateTime": start},
                "end": {"dateTime": end},
            }))
            .await;
        self.await_synced(n, &id_of(&sentinel), "summary", &json!("sentinel"))
            .await;
    }

    /// Connects one more calendar while the service runs (as the dashboard or `mcss
    /// accounts add` would) and starts it; returns its index in `calendars`.
    pub async fn connect_later(&mut self, calendar: Calendar, group: Option<&str>) -> usize {
        let account = connect_account(
            self.control.services(),
            ConnectRequest {
                group: group.map(str::to_owned),
                alias: calendar.alias.clone(),
                refresh_token: SecretString::from(calendar.refresh_token.clone()),
                calendar_id: Some(CalendarId::parse(&calendar.calendar_id).expect("a calendar id")),
                email: None,
            },
        )
        .await
        .expect("the calendar connects");
        self.control
            .start_account(account.id)
            .await
            .expect("the calendar starts");
        self.calendars.push(Calendar {
            account: account.id,
            ..calendar
        });
        self.calendars.len() - 1
    }

    /// Emulator account `n` (one not connected at start), as a calendar to connect.
    pub fn emulator_calendar(&self, n: usize, alias: &str) -> Calendar {
        let info = &self.emulator.accounts()[n];
        Calendar {
            alias: alias.to_owned(),
            email: info.email.clone(),
            calendar_id: info.calendar_id.clone(),
            refresh_token: info.refresh_token.clone(),
            account: AccountId::new(0),
        }
    }

    /// A new secondary calendar of emulator account `n` (same Google account, same token).
    pub async fn secondary_calendar(&self, n: usize, alias: &str) -> Calendar {
        let owner = &self.calendars[n];
        let url = self.control_url(&format!("accounts/{}/calendars", owner.email));
        let created = self
            .emu_call(
                self.http
                    .post(url)
                    .json(&json!({"summary": alias, "timeZone": "UTC"})),
                "create a secondary calendar",
            )
            .await;
        Calendar {
            alias: alias.to_owned(),
            email: owner.email.clone(),
            calendar_id: created["id"].as_str().expect("a calendar id").to_owned(),
            refresh_token: owner.refresh_token.clone(),
            account: owner.account,
        }
    }

    // -- invariants ----------------------------------------------------------------------

    /// No calendar holds two live blocks for the same source event (or the same occurrence).
    pub async fn assert_no_duplicates(&self) {
        let report = self.observer().check().await;
        assert!(report.duplicates.is_empty(), "duplicate blocks: {report:?}");
    }

    /// Every live block's source event is itself live on its source calendar.
    pub async fn assert_no_orphans(&self) {
        let report = self.observer().check().await;
        assert!(report.orphans.is_empty(), "orphan blocks: {report:?}");
    }

    /// Every live, busy, non-block event has its block on every other calendar (the tests
    /// that call this create only events the rules mirror).
    pub async fn assert_all_blocks_present(&self) {
        let report = self.observer().check().await;
        assert!(report.missing.is_empty(), "missing blocks: {report:?}");
    }

    /// The three invariants together, once the writers are idle.
    pub async fn assert_converged(&self) {
        self.writers_idle().await;
        self.assert_no_duplicates().await;
        self.assert_no_orphans().await;
        self.assert_all_blocks_present().await;
    }
}

/// Successful (2xx) requests of `method` in a counters snapshot.
pub fn count_2xx(counters: &Value, method: &str) -> u64 {
    counters["byMethod"][method]
        .as_object()
        .map(|by_status| {
            by_status
                .iter()
                .filter(|(status, _)| status.starts_with('2'))
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Requests of `method` that got `status`.
pub fn count_status(counters: &Value, method: &str, status: u16) -> u64 {
    counters["byMethod"][method][status.to_string()]
        .as_u64()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Google's side, from the emulator's raw dump
// ---------------------------------------------------------------------------------------

/// Reads the calendars through the emulator's control API only, so it also serves the tests
/// that run the service as a separate process.
#[derive(Clone)]
pub struct Observer {
    pub http: reqwest::Client,
    pub base_url: String,
    pub calendars: Vec<Calendar>,
}

/// What [`Observer::check`] found wrong; empty lists mean converged.
#[derive(Debug, Default)]
pub struct Invariants {
    /// (calendar alias, block ids) holding more than one block for one source (occurrence).
    pub duplicates: Vec<(String, Vec<String>)>,
    /// (calendar alias, block id) whose source event is gone.
    pub orphans: Vec<(String, String)>,
    /// (calendar alias, source account, source event) without its block.
    pub missing: Vec<(String, String, String)>,
}

impl Invariants {
    pub fn holds(&self) -> bool {
        self.duplicates.is_empty() && self.orphans.is_empty() && self.missing.is_empty()
    }
}

impl Observer {
    /// Every stored event of calendar `n`: tombstones and exceptions included.
    pub async fn dump(&self, n: usize) -> Vec<Stored> {
        let url = format!(
            "{}/emulator/calendars/{}/events",
            self.base_url, self.calendars[n].calendar_id
        );
        let dump: Value = self
            .http
            .get(url)
            .send()
            .await
            .expect("the emulator's dump answers")
            .json()
            .await
            .expect("a dump");
        dump["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|item| Stored {
                deleted: item["deleted"].as_bool().unwrap_or(false),
                is_exception: item["isException"].as_bool().unwrap_or(false),
                event: item["event"].clone(),
            })
            .collect()
    }

    /// The live blocks (series and single events, not exceptions) on calendar `n`.
    pub async fn blocks_on(&self, n: usize) -> Vec<Value> {
        self.dump(n)
            .await
            .into_iter()
            .filter(|s| s.is_live() && !s.is_exception && marker_of(&s.event).is_some())
            .map(|s| s.event)
            .collect()
    }

    /// Duplicates, orphans and missing blocks across every calendar.
    pub async fn check(&self) -> Invariants {
        let mut dumps = Vec::new();
        for n in 0..self.calendars.len() {
            dumps.push(self.dump(n).await);
        }
        // (source account, event id) of every live, busy, non-block, non-exception event.
        let mut sources = BTreeSet::new();
        for (calendar, dump) in self.calendars.iter().zip(&dumps) {
            for stored in dump {
                if stored.is_live()
                    && !stored.is_exception
                    && marker_of(&stored.event).is_none()
                    && stored.event["transparency"] != "transparent"
                {
                    sources.insert((calendar.account.to_string(), stored.id().to_owned()));
                }
            }
        }
        let mut report = Invariants::default();
        for (calendar, dump) in self.calendars.iter().zip(&dumps) {
            let mut seen: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
            for stored in dump.iter().filter(|s| s.is_live()) {
                let Some(marker) = marker_of(&stored.event) else {
                    continue;
                };
                let occurrence = if stored.is_exception {
                    stored.event["originalStartTime"].to_string()
                } else {
                    if !sources.contains(&marker) {
                        report
                            .orphans
                            .push((calendar.alias.clone(), stored.id().to_owned()));
                    }
                    String::new()
                };
                seen.entry((marker.0, marker.1, occurrence))
                    .or_default()
                    .push(stored.id().to_owned());
            }
            for ids in seen.values().filter(|ids| ids.len() > 1) {
                report
                    .duplicates
                    .push((calendar.alias.clone(), ids.clone()));
            }
            let own = calendar.account.to_string();
            for (account, event) in sources.iter().filter(|(account, _)| *account != own) {
                let held = seen.contains_key(&(account.clone(), event.clone(), String::new()));
                if !held {
                    report
                        .missing
                        .push((calendar.alias.clone(), account.clone(), event.clone()));
                }
            }
        }
        report
    }
}
