//! The calendar picker's pending picks live in the database: after a consent for a Google
//! account with several calendars, the pick made by the replica that got the callback is
//! completed on another replica (PostgreSQL), its refresh token sealed at rest meanwhile;
//! an unknown or expired pick id gives the "expired" page and connects nothing, and the
//! table stays bounded (both backends).
//!
//! Each test runs real `Application`s (admin password set, polling only) against the
//! in-process emulator, whose consent screen approves a known login hint at once, and talks
//! to them with a cookie-keeping client that never follows redirects.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use gcal_emulator::EmulatorHandle;
use mcss::config::{EncryptionKey, Settings};
use mcss::shutdown::Shutdown;
use mcss::startup::Application;
use mcss::store::web_state::PendingPick;
use mcss::store::Store;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use sea_orm::ConnectionTrait as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::support::{base_vars, unlimited_emulator, Backend, TestDb};

const PASSWORD: &str = "picks-admin-password";
/// The emulator account whose consent is given; it gets a secondary calendar.
const OWNER: &str = "user01@example.test";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One running `Application`.
struct Node {
    port: u16,
    store: Store,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(vars: &BTreeMap<String, String>, port: u16) -> Node {
        let mut vars = vars.clone();
        vars.insert("PORT".into(), port.to_string());
        let app = Application::build(Settings::from_vars(vars).expect("valid settings"))
            .await
            .expect("the application builds");
        let store = app.state().store.clone();
        let shutdown = app.shutdown();
        let port = app.port();
        let task = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        Node {
            port,
            store,
            shutdown,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.trigger();
        self.task.abort();
    }
}

/// The emulator (its first account with a secondary calendar), the database and `nodes`
/// services on it, the OAuth callback being the first node's.
struct Env {
    nodes: Vec<Node>,
    secondary: String,
    _emulator: EmulatorHandle,
    _db: TestDb,
}

impl Env {
    async fn start(backend: Backend, test: &str, nodes: usize) -> Option<Env> {
        let db = TestDb::create(backend, test).await?;
        let emulator = unlimited_emulator(2).await;
        let secondary = emulator
            .shared()
            .create_secondary_calendar(OWNER, "Rota".into(), None)
            .expect("a secondary calendar")
            .id
            .clone();
        let ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let mut vars: BTreeMap<String, String> =
            base_vars(&emulator, &db.url()).into_iter().collect();
        for (k, v) in [
            // One key for every node: each must open what another sealed.
            ("ENCRYPTION_KEY", EncryptionKey::generate().to_hex()),
            ("POLL_INTERVAL_SECS", "3600".to_owned()),
            ("ADMIN_PASSWORD", PASSWORD.to_owned()),
            (
                "GOOGLE_REDIRECT_URI",
                format!("http://127.0.0.1:{}/auth/callback", ports[0]),
            ),
        ] {
            vars.insert(k.to_owned(), v);
        }
        let mut started = Vec::new();
        for port in ports {
            started.push(Node::start(&vars, port).await);
        }
        Some(Env {
            nodes: started,
            secondary,
            _emulator: emulator,
            _db: db,
        })
    }

    fn store(&self) -> &Store {
        &self.nodes[0].store
    }
}

/// A browser stand-in: keeps cookies by name, never follows redirects.
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

    async fn post(&mut self, url: &str, form: &[(String, String)]) -> reqwest::Response {
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

    async fn log_in(&mut self, node: &Node) {
        let page = self.get(&node.url("/admin/login")).await;
        let csrf = csrf_of(&page.text().await.unwrap());
        let form = [
            ("password".to_owned(), PASSWORD.to_owned()),
            ("csrf".to_owned(), csrf),
        ];
        let signed_in = self.post(&node.url("/admin/login"), &form).await;
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER, "signed in");
    }

    /// Gives consent for [`OWNER`] as "Calendar 01" from `node`; returns the picker's path
    /// the callback's page moves on to.
    async fn consent(&mut self, node: &Node) -> String {
        let start = self
            .get(
                &node
                    .url("/auth/google/start?alias=Calendar%2001&login_hint=user01%40example.test"),
            )
            .await;
        let approved = self.get(&location(&start)).await;
        let callback = self.get(&location(&approved)).await;
        assert_eq!(callback.status(), StatusCode::OK);
        let html = callback.text().await.unwrap();
        html.split('"')
            .find(|s| s.starts_with("/admin/connect/pick/"))
            .unwrap_or_else(|| panic!("the callback moves on to the picker: {html}"))
            .to_owned()
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

/// The calendar ids of the picker's rows, in the order of the form's fields.
fn rows_of(page: &str) -> Vec<String> {
    page.split("data-calendar=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The picker's form ticking every row, each under the name in `names` (by calendar id).
fn ticking(page: &str, names: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut form = vec![
        ("csrf".to_owned(), csrf_of(page)),
        ("group".to_owned(), "default".to_owned()),
    ];
    for (i, calendar) in rows_of(page).iter().enumerate() {
        let name = names
            .iter()
            .find(|(id, _)| id == calendar)
            .map_or_else(|| format!("Other {i}"), |(_, name)| (*name).to_owned());
        form.push((format!("pick_{i}"), "1".to_owned()));
        form.push((format!("alias_{i}"), name));
    }
    form
}

/// The stored refresh token column of the one waiting pick, as a database reader sees it.
async fn waiting_token(store: &Store) -> Option<String> {
    let row = store
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            store.backend(),
            "SELECT refresh_token_enc FROM pending_picks",
        ))
        .await
        .ok()??;
    row.try_get("", "refresh_token_enc").ok()
}

async fn connected(store: &Store) -> usize {
    store
        .list_accounts()
        .await
        .expect("the store answers")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pick_made_on_one_replica_is_completed_on_the_other_with_its_token_sealed_meanwhile() {
    // Arrange: two replicas on one PostgreSQL database; the callback is the first one's.
    let Some(env) = Env::start(Backend::Postgres, "pick_across_replicas", 2).await else {
        return;
    };
    let (first, second) = (&env.nodes[0], &env.nodes[1]);
    let mut browser = Browser::new();
    browser.log_in(first).await;
    let pick = browser.consent(first).await;

    // Act: the picker and its form are answered by the second replica; what the table holds
    // is read in between.
    let page = browser.get(&second.url(&pick)).await;
    let (status, page) = (page.status(), page.text().await.unwrap());
    assert_eq!(
        status,
        StatusCode::OK,
        "the second replica knows the pick: {page}"
    );
    let sealed = waiting_token(env.store()).await;
    let names = [(OWNER, "Calendar 01"), (env.secondary.as_str(), "Rota")];
    let done = browser
        .post(&second.url(&pick), &ticking(&page, &names))
        .await;

    // Assert: both calendars connected on the consent's one token, which was never stored
    // in plain text; the pick is used up on every replica.
    assert_eq!(
        rows_of(&page),
        vec![OWNER.to_owned(), env.secondary.clone()]
    );
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/admin");
    let store = env.store();
    let primary = store.account_by_alias("Calendar 01").await.unwrap();
    let rota = store.account_by_alias("Rota").await.unwrap();
    let (primary, rota) = (
        primary.expect("the primary calendar is connected"),
        rota.expect("the secondary calendar is connected"),
    );
    assert_eq!(rota.calendar_id.as_str(), env.secondary);
    assert!(primary.credential_id.is_some());
    assert_eq!(primary.credential_id, rota.credential_id, "one token");
    let token = store.refresh_token(primary.id).await.unwrap();
    let sealed = sealed.expect("the waiting pick is in pending_picks");
    assert!(
        !sealed.contains(token.expose_secret()),
        "the waiting token is sealed"
    );
    let again = browser.get(&first.url(&pick)).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND, "a pick is used once");
}

async fn an_unknown_or_expired_pick_shows_the_expired_page_and_connects_nothing(backend: Backend) {
    // Arrange: one service; a pick whose ten minutes are over, and an id never given out.
    let Some(env) = Env::start(backend, "pick_expired", 1).await else {
        return;
    };
    let node = &env.nodes[0];
    let mut browser = Browser::new();
    browser.log_in(node).await;
    let unknown = format!("/admin/connect/pick/{}", "0".repeat(32));
    let expired = browser.consent(node).await;
    let page = browser.get(&node.url(&expired)).await.text().await.unwrap();
    let form = ticking(&page, &[(OWNER, "Calendar 01")]);
    env.store()
        .connection()
        .execute_unprepared("UPDATE pending_picks SET expires_at = created_at")
        .await
        .expect("the pick is aged");

    // Act
    let mut answers = Vec::new();
    for pick in [&unknown, &expired] {
        let shown = browser.get(&node.url(pick)).await;
        let posted = browser.post(&node.url(pick), &form).await;
        answers.push((shown.status(), shown.text().await.unwrap()));
        answers.push((posted.status(), posted.text().await.unwrap()));
    }

    // Assert: every answer is the one clear page, and nothing was connected.
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::NOT_FOUND, "{body}");
        assert!(body.contains("This choice has expired"), "{body}");
        assert!(body.contains("Nothing was connected"), "{body}");
    }
    assert_eq!(connected(env.store()).await, 0);
}

on_both_backends!(an_unknown_or_expired_pick_shows_the_expired_page_and_connects_nothing);

async fn a_waiting_pick_is_taken_once_and_a_full_table_drops_the_oldest(backend: Backend) {
    // Arrange: room for two picks.
    let Some(env) = Env::start(backend, "pick_store", 1).await else {
        return;
    };
    let store = env.store();
    let pick = |alias: &str| PendingPick {
        email: Some(OWNER.to_owned()),
        alias: alias.to_owned(),
        calendars: "[]".to_owned(),
    };
    let token = |n: usize| SecretString::from(format!("refresh-token-{n}"));
    let ttl = Duration::from_secs(600);

    // Act: three picks in turn, then the second one taken twice.
    for n in 0..3 {
        let alias = format!("Pick {n}");
        store
            .put_pick(&format!("hash-{n}"), &token(n), &pick(&alias), ttl, 2)
            .await
            .expect("the pick is kept");
    }
    let oldest = store.pick("hash-0").await.unwrap();
    let newest = store.pick("hash-2").await.unwrap();
    let taken = store.take_pick("hash-1").await.unwrap();
    let twice = store.take_pick("hash-1").await.unwrap();

    // Assert
    assert_eq!(oldest, None, "the oldest made room");
    assert_eq!(newest, Some(pick("Pick 2")));
    let (secret, taken) = taken.expect("the second pick is taken");
    assert_eq!(secret.expose_secret(), "refresh-token-1");
    assert_eq!(taken, pick("Pick 1"));
    assert!(twice.is_none(), "a pick is taken once");
    assert_eq!(store.pick("hash-1").await.unwrap(), None);
}

on_both_backends!(a_waiting_pick_is_taken_once_and_a_full_table_drops_the_oldest);
