//! Two replicas in one test process: two real `Application`s on one PostgreSQL database (the
//! same `ENCRYPTION_KEY`, no Redis), each on its own port, against one emulator. What one
//! replica knows, the other must too: which calendars it runs (each on exactly one of
//! them), the pings it received (one sync per message number, wherever the copies land), the
//! admin sessions and login attempts it saw, the consents it started.
//!
//! PostgreSQL only (SQLite serves one replica): without `MCSS_TEST_POSTGRES_URL` every test
//! here passes with a note. The multi-process scenarios (kills, pauses, deploys) are in
//! `replicas_processes.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use gcal_emulator::{Emulator, EmulatorConfig, EmulatorHandle, Settings as EmuSettings};
use hmac::{Hmac, Mac as _};
use mcss::actors::Control;
use mcss::config::{EncryptionKey, Settings};
use mcss::domain::{AccountId, CalendarId};
use mcss::ops::{connect_account, ConnectRequest};
use mcss::shutdown::Shutdown;
use mcss::startup::Application;
use mcss::store::Store;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use secrecy::SecretString;
use sha2::Sha256;

use crate::support::{
    base_vars, count_2xx, eventually, eventually_within, unlimited_emulator, Backend, TestDb,
};

const PASSWORD: &str = "replicas-admin-password";
/// The `WEBHOOK_SECRET` of `support::base_vars`, which keys every channel token.
const WEBHOOK_SECRET: &str = "sync-tests-webhook-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One running `Application`.
struct Node {
    control: Control,
    port: u16,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The accounts whose calendar actor runs on this node.
    async fn running(&self) -> BTreeSet<AccountId> {
        self.control
            .children()
            .await
            .iter()
            .map(|c| c.key.account_id())
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.trigger();
        self.task.abort();
    }
}

/// The emulator, the shared database and two nodes.
struct Pair {
    nodes: Vec<Node>,
    accounts: Vec<AccountId>,
    emulator: EmulatorHandle,
    http: reqwest::Client,
    store: Store,
    _db: TestDb,
}

impl Pair {
    /// `calendars` emulator accounts, all but `spare` of them connected (through node 0) and
    /// started on both nodes.
    async fn start(test: &str, calendars: usize, spare: usize) -> Option<Pair> {
        let db = TestDb::create(Backend::Postgres, test).await?;
        let emulator = Emulator::start(EmulatorConfig {
            accounts: calendars,
            settings: EmuSettings {
                allow_http_webhooks: true,
                rate_limit_per_minute: None,
                ..EmuSettings::default()
            },
            ..EmulatorConfig::default()
        })
        .await
        .expect("the emulator starts");
        let ports = [free_port(), free_port()];
        let mut vars: BTreeMap<String, String> =
            base_vars(&emulator, &db.url()).into_iter().collect();
        for (k, v) in [
            ("ENCRYPTION_KEY", EncryptionKey::generate().to_hex()),
            ("POLL_INTERVAL_SECS", "3600".to_owned()),
            ("LEASE_TTL_SECS", "3".to_owned()),
            ("ADMIN_PASSWORD", PASSWORD.to_owned()),
            (
                "GOOGLE_REDIRECT_URI",
                format!("http://127.0.0.1:{}/auth/callback", ports[1]),
            ),
        ] {
            vars.insert(k.to_owned(), v);
        }
        let mut nodes = Vec::new();
        for port in ports {
            let mut own = vars.clone();
            own.insert("PORT".into(), port.to_string());
            own.insert(
                "WEBHOOK_BASE_URL".into(),
                format!("http://127.0.0.1:{port}"),
            );
            nodes.push(start_node(own).await);
        }
        let services = nodes[0].control.services().clone();
        let mut accounts = Vec::new();
        for (n, info) in emulator
            .accounts()
            .into_iter()
            .enumerate()
            .take(calendars - spare)
        {
            let account = connect_account(
                &services,
                ConnectRequest {
                    alias: format!("Calendar {:02}", n + 1),
                    refresh_token: SecretString::from(info.refresh_token.clone()),
                    calendar_id: Some(CalendarId::parse(&info.calendar_id).unwrap()),
                    email: Some(info.email.clone()),
                    group: None,
                },
            )
            .await
            .expect("the account connects");
            // As an operator might, on whichever replica the dashboard reached.
            for node in &nodes {
                node.control
                    .start_account(account.id)
                    .await
                    .expect("the account starts");
            }
            accounts.push(account.id);
        }
        let store = services.store.clone();
        let pair = Pair {
            nodes,
            accounts,
            emulator,
            http: reqwest::Client::new(),
            store,
            _db: db,
        };
        pair.settled().await;
        Some(pair)
    }

    /// Waits until every connected calendar runs on exactly one node, its first sync done
    /// and its push channel open.
    async fn settled(&self) {
        eventually("every calendar running on exactly one replica", || async {
            let mut seen: HashMap<AccountId, usize> = HashMap::new();
            for node in &self.nodes {
                for account in node.running().await {
                    *seen.entry(account).or_default() += 1;
                }
            }
            let once = self.accounts.iter().all(|a| seen.get(a) == Some(&1));
            (once && seen.len() == self.accounts.len()).then_some(())
        })
        .await;
        eventually("every first sync and push channel", || async {
            for account in &self.accounts {
                self.store.sync_state(*account).await.ok()?.sync_token?;
                self.store.current_channel(*account).await.ok()??;
            }
            Some(())
        })
        .await;
    }

    async fn events_lists(&self) -> u64 {
        let counters: serde_json::Value = self
            .http
            .get(format!("{}/emulator/counters", self.emulator.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        count_2xx(&counters, "events.list")
    }

    async fn reset_counters(&self) {
        self.http
            .delete(format!("{}/emulator/counters", self.emulator.base_url()))
            .send()
            .await
            .unwrap();
    }
}

async fn start_node(vars: BTreeMap<String, String>) -> Node {
    let settings = Settings::from_vars(vars).expect("valid settings");
    let app = Application::build(settings)
        .await
        .expect("the application builds");
    let control = app.state().control.clone();
    let shutdown = app.shutdown();
    let port = app.port();
    let task = tokio::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    Node {
        control,
        port,
        shutdown,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_each_run_only_their_own_calendars_and_keep_it_so() {
    // Arrange: two replicas, six calendars started on both.
    let Some(pair) = Pair::start("replicas_split", 6, 0).await else {
        return;
    };

    // Act: three ownership ticks (a third of LEASE_TTL_SECS=3 each) later.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Assert: still every calendar on exactly one replica, as its lease says.
    let first = pair.nodes[0].running().await;
    let second = pair.nodes[1].running().await;
    assert!(first.is_disjoint(&second), "{first:?} and {second:?}");
    let all: BTreeSet<AccountId> = first.union(&second).copied().collect();
    assert_eq!(all, pair.accounts.iter().copied().collect());
    let leases = pair.store.leases().await.expect("the leases");
    for (node, running) in pair.nodes.iter().zip([&first, &second]) {
        let id = node.control.services().replica.id().to_string();
        let owned: BTreeSet<AccountId> = leases
            .iter()
            .filter(|l| l.owner.as_deref() == Some(id.as_str()))
            .map(|l| l.calendar)
            .collect();
        assert_eq!(&owned, running, "replica {id}");
    }
}

/// The genuine ping headers of `account`'s open channel.
async fn channel_ping(store: &Store, account: AccountId) -> (String, String, String) {
    let channel = store
        .current_channel(account)
        .await
        .unwrap()
        .expect("an open channel");
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(channel.channel_id.as_str().as_bytes());
    (
        channel.channel_id.as_str().to_owned(),
        hex::encode(mac.finalize().into_bytes()),
        channel.resource_id,
    )
}

async fn deliver(http: &reqwest::Client, node: &Node, ping: &(String, String, String), n: u64) {
    let status = http
        .post(node.url("/webhooks/google"))
        .header("X-Goog-Channel-ID", &ping.0)
        .header("X-Goog-Channel-Token", &ping.1)
        .header("X-Goog-Resource-ID", &ping.2)
        .header("X-Goog-Resource-State", "exists")
        .header("X-Goog-Message-Number", n.to_string())
        .send()
        .await
        .expect("the webhook answers")
        .status();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_delivered_to_both_replicas_without_redis_syncs_its_calendar_once() {
    // Arrange: two replicas without Redis, one calendar.
    let Some(pair) = Pair::start("replicas_ping_once", 1, 0).await else {
        return;
    };
    let ping = channel_ping(&pair.store, pair.accounts[0]).await;
    let number = 10_000;
    pair.reset_counters().await;

    // Act: Google delivers message 10000 to one replica and retries it on the other; then
    // the channel's next message reaches the first one again.
    deliver(&pair.http, &pair.nodes[0], &ping, number).await;
    eventually("the first delivery's sync", || async {
        (pair.events_lists().await >= 1).then_some(())
    })
    .await;
    deliver(&pair.http, &pair.nodes[1], &ping, number).await;
    deliver(&pair.http, &pair.nodes[0], &ping, number + 1).await;
    eventually("the next message's sync", || async {
        (pair.events_lists().await >= 2).then_some(())
    })
    .await;
    // Whatever the retry still caused would have happened by now.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Assert: one listing per message number.
    assert_eq!(pair.events_lists().await, 2);
}

/// A cookie-keeping client that never follows redirects.
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for header in response.headers().get_all(SET_COOKIE) {
            let text = header.to_str().unwrap();
            let (name, value) = text.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let response = self
            .http
            .get(url)
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self
            .http
            .post(url)
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    /// Opens the login form on `node` and submits `password` with the form's token.
    async fn log_in(&mut self, node: &Node, password: &str) -> reqwest::Response {
        let page = self.get(&node.url("/admin/login")).await;
        let token = csrf_of(&page.text().await.unwrap());
        self.post(
            &node.url("/admin/login"),
            &[("password", password), ("csrf", &token)],
        )
        .await
    }
}

fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    html[start..start + 64].to_owned()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .expect("a redirect")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_replica_works_on_the_other_until_signed_out_there() {
    // Arrange
    let Some(pair) = Pair::start("replicas_session", 1, 0).await else {
        return;
    };
    let mut browser = Browser::new();

    // Act: sign in on the first replica, then open the overview on the second.
    let signed_in = browser.log_in(&pair.nodes[0], PASSWORD).await;
    let overview = browser.get(&pair.nodes[1].url("/admin")).await;

    // Assert
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(overview.status(), StatusCode::OK);
    let page = overview.text().await.unwrap();
    assert!(
        page.contains("Calendar 01"),
        "the overview lists the calendar"
    );

    // Signing out on the second replica ends the session on the first as well.
    let token = csrf_of(&page);
    let out = browser
        .post(&pair.nodes[1].url("/admin/logout"), &[("csrf", &token)])
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let mut stale = Browser::new();
    stale.cookies = browser.cookies.clone();
    let signed_out = stale.get(&pair.nodes[0].url("/admin")).await;
    assert_eq!(location(&signed_out), "/admin/login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_count_on_every_replica_so_the_sixth_in_a_minute_gets_429() {
    // Arrange
    let Some(pair) = Pair::start("replicas_login_limit", 1, 0).await else {
        return;
    };
    let mut browser = Browser::new();

    // Act: three wrong passwords on one replica, two on the other, then the right one.
    let mut statuses = Vec::new();
    for n in 0..5 {
        let node = &pair.nodes[n % 2];
        statuses.push(browser.log_in(node, "wrong password!").await.status());
    }
    let sixth = browser.log_in(&pair.nodes[1], PASSWORD).await;

    // Assert
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_started_on_one_replica_completes_on_the_other() {
    // Arrange: the OAuth callback is the second replica's (GOOGLE_REDIRECT_URI); one
    // emulator account is not connected yet.
    let Some(pair) = Pair::start("replicas_consent", 2, 1).await else {
        return;
    };
    let spare = pair.emulator.accounts()[1].email.clone();
    let mut browser = Browser::new();
    browser.log_in(&pair.nodes[0], PASSWORD).await;

    // Act: start on the first replica; the emulator approves at once (known login hint)
    // and sends the browser to the second.
    let start = browser
        .get(&pair.nodes[0].url(&format!(
            "/auth/google/start?alias=Calendar%2002&login_hint={}",
            spare.replace('@', "%40")
        )))
        .await;
    let approved = browser.get(&location(&start)).await;
    let callback = location(&approved);
    let done = browser.get(&callback).await;

    // Assert: connected, and the state cannot be used again on either replica.
    assert!(callback.starts_with(&pair.nodes[1].url("/auth/callback")));
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().await.unwrap().contains("Connected Calendar 02"));
    let replayed = browser
        .get(&callback.replace(&pair.nodes[1].url(""), &pair.nodes[0].url("")))
        .await;
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    let account = pair
        .store
        .account_by_alias("Calendar 02")
        .await
        .unwrap()
        .expect("the account exists");
    eventually_within(
        "the new calendar running on one replica",
        Duration::from_secs(20),
        || async {
            let mut on = 0;
            for node in &pair.nodes {
                on += usize::from(node.running().await.contains(&account.id));
            }
            (on == 1).then_some(())
        },
    )
    .await;
}

/// `calendars` calendars connected on `db` (one per account of a fresh emulator without
/// quota, in groups of five), and the variables of a service on them: polling hourly, a
/// free port, and `extra`. The store it connected them with is returned too.
async fn connected_calendars(
    db: &TestDb,
    calendars: usize,
    extra: &[(&str, &str)],
) -> (EmulatorHandle, BTreeMap<String, String>, Store) {
    let emulator = unlimited_emulator(calendars).await;
    let mut vars: BTreeMap<String, String> = base_vars(&emulator, &db.url()).into_iter().collect();
    vars.insert("POLL_INTERVAL_SECS".into(), "3600".into());
    vars.insert("PORT".into(), free_port().to_string());
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings = Settings::from_vars(vars.clone()).expect("valid settings");
    let store = Store::connect(&settings).await.expect("the store");
    store.migrate().await.expect("migrations");
    assert_eq!(connect_every_account(&store, &emulator).await, calendars);
    (emulator, vars, store)
}

/// Connects one calendar per emulator account, in groups of five, straight through the
/// store (eight at a time); returns how many.
async fn connect_every_account(store: &Store, emulator: &EmulatorHandle) -> usize {
    use futures::StreamExt as _;
    let creates = emulator
        .accounts()
        .into_iter()
        .enumerate()
        .map(|(n, info)| {
            let store = store.clone();
            async move {
                store
                    .create_account(mcss::store::NewAccount {
                        alias: format!("Calendar {n:04}"),
                        email: Some(info.email),
                        calendar_id: CalendarId::parse(&info.calendar_id).unwrap(),
                        refresh_token: SecretString::from(info.refresh_token),
                        time_zone: None,
                        group: format!("group-{}", n / 5),
                        rules: mcss::store::CalendarRules::default(),
                    })
                    .await
                    .expect("the calendar is added")
            }
        });
    futures::stream::iter(creates)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_start_gives_every_sync_permit_back_once_its_actors_are_up() {
    // Arrange: 300 calendars on SQLite, more than one start batch: the start holds most
    // sync permits back while it spawns their actors.
    const CALENDARS: usize = 300;
    let db = TestDb::create(Backend::Sqlite, "large_start")
        .await
        .expect("SQLite is always available");
    let (_emulator, vars, store) = connected_calendars(&db, CALENDARS, &[]).await;
    drop(store);

    // Act: the service starts them all, and each syncs a first time.
    let node = start_node(vars).await;
    let services = node.control.services();
    eventually_within(
        "every calendar's first sync",
        Duration::from_secs(120),
        || async {
            let accounts = services.store.list_accounts().await.ok()?;
            let ids: Vec<AccountId> = accounts.iter().map(|a| a.id).collect();
            let states = services.store.sync_states(&ids).await.ok()?;
            (states.len() == CALENDARS && states.values().all(|s| s.sync_token.is_some()))
                .then_some(())
        },
    )
    .await;

    // Assert: once the actors are up, every permit is free again (the hold ended): the
    // next syncs may run 512 at once, not 64.
    let max = services.settings.concurrency.max_syncs;
    eventually("every sync permit free", || async {
        (services.sync_permits.available_permits() == max).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_a_thousand_calendars_never_lets_their_leases_lapse() {
    // Arrange: 1,000 connected calendars and a lease TTL of 2 s (renewed every 667 ms):
    // starting their 2,000 actors takes longer than the TTL.
    const CALENDARS: usize = 1_000;
    let Some(db) = TestDb::create(Backend::Postgres, "replicas_slow_start").await else {
        return;
    };
    let (_emulator, vars, store) =
        connected_calendars(&db, CALENDARS, &[("LEASE_TTL_SECS", "2")]).await;

    // Act: one replica starts them all.
    let node = start_node(vars).await;
    eventually_within(
        "every calendar running",
        Duration::from_secs(120),
        || async { (node.running().await.len() == CALENDARS).then_some(()) },
    )
    .await;
    // Two more renewals after the last actor started.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Assert: every lease is still in its first tenure, held by this replica: none expired
    // while the actors started (an expired one is taken again under a new epoch).
    let me = node.control.services().replica.id().to_string();
    let leases = store.leases().await.expect("the leases");
    assert_eq!(leases.len(), CALENDARS);
    let lapsed: Vec<_> = leases
        .iter()
        .filter(|l| l.epoch != 1 || l.owner.as_deref() != Some(me.as_str()))
        .collect();
    assert!(
        lapsed.is_empty(),
        "{} of {CALENDARS} leases lapsed and were taken again, e.g. {:?}",
        lapsed.len(),
        lapsed.first()
    );
}
