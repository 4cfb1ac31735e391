//! The admin pages and OAuth onboarding at the HTTP level, against `gcal-emulator`:
//! sign-in, sessions, CSRF, the login limit, and the consent `state` rules.
//!
//! Each test starts its own demo (emulator + service on a temporary SQLite database) and
//! talks to it with a cookie-keeping reqwest client that never follows redirects, so every
//! hop can be checked.

use std::collections::HashMap;
use std::time::Duration;

use mcss::demo::{Demo, DemoOptions};
use mcss::shutdown::Shutdown;
use mcss::store::{AccountStatus, Store};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};

const PASSWORD: &str = "correct horse battery staple";

struct TestApp {
    base: String,
    store: Store,
    emulator_base: String,
    shutdown: Shutdown,
    _emulator: gcal_emulator::EmulatorHandle,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

struct Options {
    connect: usize,
    session_ttl: Option<Duration>,
}

async fn spawn_app(options: Options) -> TestApp {
    let dir = tempfile::tempdir().expect("a temp dir");
    let Demo {
        emulator, mut app, ..
    } = Demo::start(DemoOptions {
        port: 0,
        host: None,
        connect: options.connect,
        data_dir: dir.path().to_owned(),
        admin_password: Some(PASSWORD.to_owned()),
        log_level: "warn".into(),
        two_people: false,
    })
    .await
    .expect("the demo starts");
    if let Some(ttl) = options.session_ttl {
        app.admin_config_mut().session_ttl = ttl;
    }
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    let shutdown = app.shutdown();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        store,
        emulator_base: emulator.base_url().to_owned(),
        shutdown,
        _emulator: emulator,
        _dir: dir,
    }
}

async fn app() -> TestApp {
    spawn_app(Options {
        connect: 1,
        session_ttl: None,
    })
    .await
}

/// A browser stand-in: keeps cookies by name, never follows redirects.
struct Client {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Client {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, response: &Response) {
        for header in response.headers().get_all(SET_COOKIE) {
            let text = header.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    async fn get(&mut self, url: &str) -> Response {
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

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Response {
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

    /// Opens the login form and submits `password` with the form's token.
    async fn log_in(&mut self, app: &TestApp, password: &str) -> Response {
        let page = self.get(&format!("{}/admin/login", app.base)).await;
        let token = csrf_of(&page.text().await.unwrap());
        self.post(
            &format!("{}/admin/login", app.base),
            &[("password", password), ("csrf", &token)],
        )
        .await
    }

    /// The CSRF token of a signed-in page.
    async fn csrf(&mut self, app: &TestApp) -> String {
        let page = self.get(&format!("{}/admin", app.base)).await;
        assert_eq!(page.status(), StatusCode::OK);
        csrf_of(&page.text().await.unwrap())
    }
}

fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    html[start..start + 64].to_owned()
}

fn location(response: &Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .expect("a redirect")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_opens_no_session() {
    let app = app().await;
    let mut client = Client::new();

    let response = client.log_in(&app, "not the password").await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.text().await.unwrap().contains("Wrong password"));
    let overview = client.get(&format!("{}/admin", app.base)).await;
    assert_eq!(overview.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&overview), "/admin/login");
}

#[tokio::test]
async fn the_right_password_opens_the_overview_with_a_strict_httponly_cookie() {
    let app = app().await;
    let mut client = Client::new();

    let response = client.log_in(&app, PASSWORD).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("mcss_admin="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Strict"));
    let overview = client.get(&format!("{}/admin", app.base)).await;
    assert_eq!(overview.status(), StatusCode::OK);
    let html = overview.text().await.unwrap();
    assert!(html.contains("Calendar 01"));
    assert!(
        !html.contains("https://cdn"),
        "nothing is loaded from a CDN"
    );
}

#[tokio::test]
async fn a_login_form_without_its_token_is_refused() {
    let app = app().await;
    let mut client = Client::new();

    let response = client
        .post(
            &format!("{}/admin/login", app.base),
            &[("password", PASSWORD)],
        )
        .await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_action_without_or_with_a_wrong_csrf_token_changes_nothing() {
    let app = app().await;
    let mut client = Client::new();
    client.log_in(&app, PASSWORD).await;
    let account = app
        .store
        .account_by_alias("Calendar 01")
        .await
        .unwrap()
        .unwrap();
    let pause = format!("{}/admin/accounts/{}/pause", app.base, account.id);

    let missing = client.post(&pause, &[]).await;
    let wrong = client.post(&pause, &[("csrf", &"0".repeat(64))]).await;

    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let status = app.store.account(account.id).await.unwrap().status;
    assert_eq!(status, AccountStatus::Active);

    let token = client.csrf(&app).await;
    let right = client.post(&pause, &[("csrf", &token)]).await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let status = app.store.account(account.id).await.unwrap().status;
    assert_eq!(status, AccountStatus::Paused);
}

#[tokio::test]
async fn an_expired_session_is_sent_back_to_the_login_form() {
    let app = spawn_app(Options {
        connect: 0,
        session_ttl: Some(Duration::ZERO),
    })
    .await;
    let mut client = Client::new();

    let response = client.log_in(&app, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let overview = client.get(&format!("{}/admin", app.base)).await;

    assert_eq!(overview.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&overview), "/admin/login");
}

#[tokio::test]
async fn login_attempts_beyond_five_a_minute_get_429_even_with_the_right_password() {
    let app = spawn_app(Options {
        connect: 0,
        session_ttl: None,
    })
    .await;
    let mut client = Client::new();

    for _ in 0..5 {
        let response = client.log_in(&app, "guess").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = client.log_in(&app, PASSWORD).await;

    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn starting_a_consent_needs_a_session() {
    let app = app().await;
    let mut client = Client::new();

    let response = client
        .get(&format!(
            "{}/auth/google/start?alias=Calendar%2009",
            app.base
        ))
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/admin/login");
}

#[tokio::test]
async fn a_forged_oauth_state_is_refused() {
    let app = app().await;
    let mut client = Client::new();

    let response = client
        .get(&format!(
            "{}/auth/callback?state=forged&code=whatever",
            app.base
        ))
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("not valid"));
}

/// Signs in, starts a consent and returns the emulator's consent-page URL.
async fn begin_consent(client: &mut Client, app: &TestApp, query: &str) -> String {
    client.log_in(app, PASSWORD).await;
    let start = client
        .get(&format!("{}/auth/google/start?{query}", app.base))
        .await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let consent = location(&start);
    assert!(consent.starts_with(&app.emulator_base));
    for wanted in [
        "code_challenge_method=S256",
        "access_type=offline",
        "prompt=consent",
        "state=",
    ] {
        assert!(consent.contains(wanted), "{wanted} in {consent}");
    }
    consent
}

#[tokio::test]
async fn a_consent_connects_the_account_and_its_state_cannot_be_replayed() {
    let app = app().await;
    let mut client = Client::new();
    let consent = begin_consent(
        &mut client,
        &app,
        "alias=Calendar%2002&login_hint=user02%40example.test",
    )
    .await;

    // With a known login_hint the emulator approves at once.
    let approved = client.get(&consent).await;
    let callback = location(&approved);
    assert!(callback.contains("/auth/callback?"));
    let first = client.get(&callback).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first
        .text()
        .await
        .unwrap()
        .contains("Connected Calendar 02"));
    let account = app.store.account_by_alias("Calendar 02").await.unwrap();
    assert_eq!(
        account.unwrap().email.as_deref(),
        Some("user02@example.test")
    );

    let replay = client.get(&callback).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
}

/// The approve and deny links of the emulator's consent page.
async fn consent_links(client: &mut Client, app: &TestApp, consent: &str) -> (String, String) {
    let page = client.get(consent).await.text().await.unwrap();
    let approve = page
        .split('"')
        .find(|s| s.contains("/approve?") && s.contains("user03"))
        .expect("an approve link for user03")
        .replace("&amp;", "&");
    let deny = page
        .split('"')
        .find(|s| s.contains("/deny?"))
        .expect("a deny link")
        .replace("&amp;", "&");
    (
        format!("{}{approve}", app.emulator_base),
        format!("{}{deny}", app.emulator_base),
    )
}

#[tokio::test]
async fn a_declined_consent_gets_a_clear_page_and_changes_nothing() {
    let app = app().await;
    let mut client = Client::new();
    let consent = begin_consent(&mut client, &app, "alias=Calendar%2003").await;
    let (_, deny) = consent_links(&mut client, &app, &consent).await;

    let denied = client.get(&deny).await;
    let page = client.get(&location(&denied)).await;

    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Access was not granted"));
    assert!(app
        .store
        .account_by_alias("Calendar 03")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_partial_grant_names_the_missing_permission() {
    let app = app().await;
    let mut client = Client::new();
    let consent = begin_consent(&mut client, &app, "alias=Calendar%2003").await;
    let (approve, _) = consent_links(&mut client, &app, &consent).await;

    let partial = format!(
        "{approve}&scope={}",
        "https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcalendar.events%20openid%20email"
    );
    let granted = client.get(&partial).await;
    let page = client.get(&location(&granted)).await;

    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let html = page.text().await.unwrap();
    assert!(html.contains("Some permissions are missing"));
    assert!(html.contains("calendar.calendarlist.readonly"));
    assert!(app
        .store
        .account_by_alias("Calendar 03")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn the_live_endpoint_answers_json_to_a_session_and_401_without() {
    let app = app().await;
    let mut client = Client::new();

    let anonymous = client.get(&format!("{}/admin/api/live", app.base)).await;
    client.log_in(&app, PASSWORD).await;
    let signed_in = client.get(&format!("{}/admin/api/live", app.base)).await;

    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(signed_in.status(), StatusCode::OK);
    let body: serde_json::Value = signed_in.json().await.unwrap();
    assert_eq!(body["queue"][0]["alias"], "Calendar 01");
    assert!(body["latency"]["samples"].is_u64());
}

#[tokio::test]
async fn without_an_admin_password_the_admin_pages_are_off() {
    let emulator = gcal_emulator::Emulator::start(gcal_emulator::EmulatorConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("PORT", "0".to_owned()),
        (
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display()),
        ),
        ("GOOGLE_CLIENT_ID", emulator.client_id().to_owned()),
        ("GOOGLE_CLIENT_SECRET", emulator.client_secret().to_owned()),
        ("GOOGLE_API_BASE_URL", emulator.base_url().to_owned()),
        ("GOOGLE_TOKEN_URL", emulator.token_url()),
        ("GOOGLE_AUTH_URL", emulator.auth_url()),
    ];
    let settings = mcss::config::Settings::from_vars(vars.map(|(k, v)| (k.to_owned(), v))).unwrap();
    let app = mcss::startup::Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown();
    tokio::spawn(app.run_until_stopped());
    let mut client = Client::new();

    let admin = client.get(&format!("{base}/admin")).await;
    let start = client
        .get(&format!("{base}/auth/google/start?alias=x"))
        .await;

    assert_eq!(admin.status(), StatusCode::NOT_FOUND);
    assert!(admin.text().await.unwrap().contains("ADMIN_PASSWORD"));
    assert_eq!(start.status(), StatusCode::NOT_FOUND);
    shutdown.trigger();
}

#[tokio::test]
async fn every_demo_scenario_runs_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(DemoOptions {
        port: 0,
        host: None,
        connect: 0,
        data_dir: dir.path().to_owned(),
        admin_password: None,
        log_level: "warn".into(),
        two_people: true,
    })
    .await
    .unwrap();
    assert_eq!(demo.password.len(), 16, "a generated password");

    for (name, _) in mcss::demo::SCENARIOS {
        let lines = demo.actions.scenario(name).await.unwrap();
        assert!(lines.len() >= 3, "{name} reports each step");
    }
    assert!(demo.actions.scenario("nonsense").await.is_err());
}

/// The security headers of `response`, by name.
fn security_headers(response: &Response) -> Vec<(String, String)> {
    [
        "content-security-policy",
        "x-frame-options",
        "x-content-type-options",
        "referrer-policy",
        "cache-control",
    ]
    .into_iter()
    .map(|name| {
        let value = response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (name.to_owned(), value)
    })
    .collect()
}

#[tokio::test]
async fn the_auth_pages_carry_the_same_security_headers_as_the_admin_pages() {
    let app = app().await;
    let mut client = Client::new();

    let admin = client.get(&format!("{}/admin/login", app.base)).await;
    let start = client
        .get(&format!(
            "{}/auth/google/start?alias=Calendar%2009",
            app.base
        ))
        .await;
    let callback = client
        .get(&format!("{}/auth/callback?state=forged&code=x", app.base))
        .await;

    let expected = security_headers(&admin);
    assert!(
        expected.iter().all(|(_, value)| !value.is_empty()),
        "{expected:?}"
    );
    assert_eq!(security_headers(&start), expected, "/auth/google/start");
    assert_eq!(security_headers(&callback), expected, "/auth/callback");
}

#[tokio::test]
async fn a_garbage_authorization_code_is_a_clear_400_asking_to_start_again() {
    let app = app().await;
    let mut client = Client::new();
    let consent = begin_consent(
        &mut client,
        &app,
        "alias=Calendar%2002&login_hint=user02%40example.test",
    )
    .await;
    let approved = client.get(&consent).await;
    let mut callback = reqwest::Url::parse(&location(&approved)).unwrap();
    let state = callback
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("the callback carries the state");
    callback
        .query_pairs_mut()
        .clear()
        .append_pair("state", &state)
        .append_pair("code", "garbage-code");

    let response = client.get(callback.as_str()).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = response.text().await.unwrap();
    assert!(page.contains("authorization code was refused"), "{page}");
    assert!(page.contains("Start again"), "{page}");
    assert!(!page.contains("refresh token"), "{page}");
    assert!(app
        .store
        .account_by_alias("Calendar 02")
        .await
        .unwrap()
        .is_none());
}

// ---------------------------------------------------------------------------------------
// Confirmation steps, the new pages and the demo panel's POST
// ---------------------------------------------------------------------------------------

async fn signed_in(app: &TestApp) -> (Client, String) {
    let mut client = Client::new();
    client.log_in(app, PASSWORD).await;
    let token = client.csrf(app).await;
    (client, token)
}

#[tokio::test]
async fn removing_an_account_first_shows_what_it_does_and_removes_only_when_confirmed() {
    let app = app().await;
    let (mut client, token) = signed_in(&app).await;
    let account = app
        .store
        .account_by_alias("Calendar 01")
        .await
        .unwrap()
        .unwrap();
    let remove = format!("{}/admin/accounts/{}/remove", app.base, account.id);

    let asked = client
        .post(&remove, &[("csrf", &token), ("purge", "1")])
        .await;

    assert_eq!(asked.status(), StatusCode::OK);
    let page = asked.text().await.unwrap();
    assert!(page.contains("Remove Calendar 01?"), "{page}");
    assert!(
        page.contains("own calendar"),
        "the purge is spelled out: {page}"
    );
    assert!(
        app.store.account(account.id).await.is_ok(),
        "nothing removed yet"
    );

    let confirmed = client
        .post(
            &remove,
            &[("csrf", &token), ("purge", "1"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);
    assert!(app
        .store
        .account_by_alias("Calendar 01")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_full_resync_and_confirming_held_deletions_ask_first() {
    let app = app().await;
    let (mut client, token) = signed_in(&app).await;
    let account = app
        .store
        .account_by_alias("Calendar 01")
        .await
        .unwrap()
        .unwrap();
    // Incremental syncs may move the token meanwhile; only a full resync moves this.
    let before = crate::support::eventually("the first full sync", || async {
        app.store
            .sync_state(account.id)
            .await
            .ok()?
            .last_full_sync_at
    })
    .await;
    let before = Some(before);

    for action in ["resync", "confirm-deletions"] {
        let url = format!("{}/admin/accounts/{}/{action}", app.base, account.id);
        let asked = client.post(&url, &[("csrf", &token)]).await;
        assert_eq!(asked.status(), StatusCode::OK, "{action}");
        assert!(
            asked
                .text()
                .await
                .unwrap()
                .contains("form class=\"confirm\""),
            "{action}"
        );
    }
    let after = app.store.sync_state(account.id).await.unwrap();
    assert!(
        after.sync_token.is_some(),
        "the sync token is kept until confirmed"
    );
    assert_eq!(after.last_full_sync_at, before, "no full listing ran");
}

#[tokio::test]
async fn a_confirmed_action_still_needs_a_session_and_the_csrf_token() {
    let app = app().await;
    let (mut client, _) = signed_in(&app).await;
    let account = app
        .store
        .account_by_alias("Calendar 01")
        .await
        .unwrap()
        .unwrap();
    let remove = format!("{}/admin/accounts/{}/remove", app.base, account.id);

    let refused = client.post(&remove, &[("confirm", "yes")]).await;
    let anonymous = Client::new()
        .post(&remove, &[("confirm", "yes"), ("csrf", &"0".repeat(64))])
        .await;

    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&anonymous), "/admin/login");
    assert!(app.store.account(account.id).await.is_ok());
}

#[tokio::test]
async fn the_demo_panel_needs_a_session_and_a_csrf_token() {
    let app = app().await;
    let mut anonymous = Client::new();
    let demo = format!("{}/admin/demo", app.base);

    let without_session = anonymous
        .post(&demo, &[("calendar", "Calendar 01"), ("action", "meeting")])
        .await;
    let (mut client, _) = signed_in(&app).await;
    let without_token = client
        .post(&demo, &[("calendar", "Calendar 01"), ("action", "meeting")])
        .await;

    assert_eq!(without_session.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&without_session), "/admin/login");
    assert_eq!(without_token.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_failed_demo_action_is_shown_as_an_error() {
    let app = app().await;
    let (mut client, token) = signed_in(&app).await;

    let done = client
        .post(
            &format!("{}/admin/demo", app.base),
            &[
                ("csrf", &token),
                ("calendar", "Calendar 01"),
                ("action", "delete-last"),
            ],
        )
        .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let page = client.get(&format!("{}/admin", app.base)).await;
    let html = page.text().await.unwrap();

    assert!(html.contains("class=\"flash error\""), "{html}");
    assert!(html.contains("role=\"alert\""), "{html}");
}

#[tokio::test]
async fn the_week_and_event_pages_need_a_session_and_answer_to_one() {
    let app = app().await;
    let mut anonymous = Client::new();
    for page in ["/admin/week", "/admin/events"] {
        let response = anonymous.get(&format!("{}{page}", app.base)).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{page}");
        assert_eq!(location(&response), "/admin/login", "{page}");
    }
    let (mut client, _) = signed_in(&app).await;
    for page in [
        "/admin/week",
        "/admin/week?tz=Europe%2FBerlin&titles=1",
        "/admin/events",
    ] {
        let response = client.get(&format!("{}{page}", app.base)).await;
        assert_eq!(response.status(), StatusCode::OK, "{page}");
    }
    let bad_zone = client
        .get(&format!("{}/admin/week?tz=Mars%2FOlympus", app.base))
        .await;
    assert_eq!(bad_zone.status(), StatusCode::BAD_REQUEST);
    assert!(bad_zone.text().await.unwrap().contains("Mars/Olympus"));
}

#[tokio::test]
async fn connecting_a_calendar_that_is_already_connected_under_another_name_says_so() {
    let app = app().await;
    let mut client = Client::new();
    let consent = begin_consent(
        &mut client,
        &app,
        "alias=Calendar%2009&login_hint=user01%40example.test",
    )
    .await;

    let approved = client.get(&consent).await;
    let page = client.get(&location(&approved)).await;

    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("already connected as Calendar 01"), "{html}");
    assert!(
        html.contains("Calendar 09"),
        "the unused name is named: {html}"
    );
    assert!(app
        .store
        .account_by_alias("Calendar 09")
        .await
        .unwrap()
        .is_none());
}

/// The settings form of `alias` with `changes` over good values.
fn settings_form<'a>(token: &'a str, changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("csrf", token),
        ("group", "default"),
        ("block_title", "{alias} Block"),
        ("details", "full"),
        ("exclude_title_regex", ""),
        ("look_back_days", "0"),
    ];
    for (key, value) in changes {
        form.retain(|(k, _)| k != key);
        form.push((key, value));
    }
    form
}

#[tokio::test]
async fn the_settings_form_needs_a_session_and_its_csrf_token_and_a_bad_value_changes_nothing() {
    let app = spawn_app(Options {
        connect: 2,
        session_ttl: None,
    })
    .await;
    let account = app
        .store
        .account_by_alias("Calendar 02")
        .await
        .unwrap()
        .unwrap();
    let url = format!("{}/admin/settings/{}", app.base, account.id);
    let before = account.rules.clone();

    let anonymous = Client::new()
        .post(&url, &settings_form("x", &[("block_title", "Busy")]))
        .await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&anonymous), "/admin/login");

    let (mut client, token) = signed_in(&app).await;
    let forged = client
        .post(
            &url,
            &settings_form(&"0".repeat(64), &[("block_title", "Busy")]),
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    for (field, bad, named) in [
        ("exclude_title_regex", "(", "exclude title regex: "),
        ("look_back_days", "999", "look back days: "),
        ("look_back_days", "soon", "look back days: "),
        ("details", "everything", "details: "),
        ("block_title", "{owner} Block", "block title: "),
        ("group", "   ", "group: "),
    ] {
        let refused = client
            .post(
                &url,
                &settings_form(&token, &[("block_title", "Busy"), (field, bad)]),
            )
            .await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{field}");
        let page = refused.text().await.unwrap();
        let typed = if field == "block_title" { bad } else { "Busy" };
        assert!(
            page.contains(&format!("value=\"{typed}\"")),
            "what was typed is shown again: {page}"
        );
        let line = page
            .split("role=\"alert\">")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .unwrap_or_else(|| panic!("an error line for {field}: {page}"));
        assert!(line.starts_with("Nothing was changed. "), "{line}");
        assert!(line.contains(named), "{field}: {line}");
        let stored = app.store.account(account.id).await.unwrap();
        assert_eq!(stored.rules, before, "{field}={bad:?} changed nothing");
        assert_eq!(stored.group, "default");
    }

    let saved = client
        .post(
            &url,
            &settings_form(
                &token,
                &[
                    ("block_title", "Busy ({alias})"),
                    ("details", "busy-only"),
                    ("skip_all_day", "1"),
                    ("exclude_title_regex", "^Private"),
                    ("look_back_days", "3"),
                ],
            ),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let rules = app.store.account(account.id).await.unwrap().rules;
    assert_eq!(
        rules.block_title_template.as_deref(),
        Some("Busy ({alias})")
    );
    assert_eq!(
        rules.block_details,
        Some(mcss::config::BlockDetails::BusyOnly)
    );
    assert_eq!(rules.skip_all_day, Some(true));
    assert_eq!(rules.skip_focus_time, Some(false));
    assert_eq!(rules.exclude_title_regex.as_deref(), Some("^Private"));
    assert_eq!(rules.look_back_days, Some(3));

    let moved = client
        .post(&url, &settings_form(&token, &[("group", "family")]))
        .await;
    assert_eq!(moved.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.store.account(account.id).await.unwrap().group, "family");
}

#[tokio::test]
async fn the_links_form_needs_a_session_and_its_csrf_token_and_never_links_a_calendar_to_itself() {
    let app = spawn_app(Options {
        connect: 3,
        session_ttl: None,
    })
    .await;
    let url = format!("{}/admin/links", app.base);
    fn link<'a>(token: &'a str, target: &'a str, state: &'a str) -> [(&'a str, &'a str); 4] {
        [
            ("csrf", token),
            ("source", "Calendar 01"),
            ("target", target),
            ("state", state),
        ]
    }
    let id = |alias: &'static str| {
        let store = app.store.clone();
        async move { store.account_by_alias(alias).await.unwrap().unwrap().id }
    };
    let (one, two) = (id("Calendar 01").await, id("Calendar 02").await);

    let anonymous = Client::new()
        .post(&url, &link("x", "Calendar 02", "off"))
        .await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&anonymous), "/admin/login");
    let (mut client, token) = signed_in(&app).await;
    let forged = client
        .post(&url, &link(&"0".repeat(64), "Calendar 02", "off"))
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(app.store.disabled_links().await.unwrap().is_empty());

    let page = client.get(&url).await.text().await.unwrap();
    assert!(page.contains("data-link=\"Calendar 01 → Calendar 02\""));
    assert!(
        !page.contains("data-link=\"Calendar 01 → Calendar 01\""),
        "no link from a calendar to itself is offered"
    );
    let to_itself = client.post(&url, &link(&token, "Calendar 01", "off")).await;
    assert_eq!(to_itself.status(), StatusCode::SEE_OTHER);
    let page = client.get(&url).await.text().await.unwrap();
    assert!(page.contains("cannot block itself"), "{page}");
    assert!(app.store.disabled_links().await.unwrap().is_empty());

    let off = client.post(&url, &link(&token, "Calendar 02", "off")).await;
    assert_eq!(off.status(), StatusCode::SEE_OTHER);
    let disabled = app.store.disabled_links().await.unwrap();
    assert_eq!(disabled.len(), 1);
    assert!(disabled.contains(&(one, two)));
    let on = client.post(&url, &link(&token, "Calendar 02", "on")).await;
    assert_eq!(on.status(), StatusCode::SEE_OTHER);
    assert!(app.store.disabled_links().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_consent_for_an_account_with_several_calendars_offers_them_and_connects_the_picked_ones_on_one_token(
) {
    let app = app().await;
    let shared = app._emulator.shared();
    let rota = shared
        .create_secondary_calendar("user02@example.test", "Rota".into(), None)
        .unwrap();
    let club = shared
        .create_secondary_calendar("user02@example.test", "Club".into(), None)
        .unwrap();
    let mut client = Client::new();
    let consent = begin_consent(
        &mut client,
        &app,
        "alias=Calendar%2002&login_hint=user02%40example.test",
    )
    .await;
    let approved = client.get(&consent).await;
    let callback = client.get(&location(&approved)).await;
    assert_eq!(callback.status(), StatusCode::OK);
    let html = callback.text().await.unwrap();
    let pick = html
        .split('"')
        .find(|s| s.starts_with("/admin/connect/pick/"))
        .unwrap_or_else(|| panic!("the callback moves on to the picker: {html}"))
        .to_owned();
    assert!(
        app.store
            .account_by_alias("Calendar 02")
            .await
            .unwrap()
            .is_none(),
        "nothing is connected before the pick"
    );

    let page = client.get(&format!("{}{pick}", app.base)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    for id in ["user02@example.test", rota.id.as_str(), club.id.as_str()] {
        assert!(page.contains(id), "{id} offered: {page}");
    }
    let token = csrf_of(&page);
    let url = format!("{}{pick}", app.base);
    let choice = |csrf: String| {
        vec![
            ("csrf".to_owned(), csrf),
            ("group".to_owned(), "default".to_owned()),
            ("pick_0".to_owned(), "1".to_owned()),
            ("alias_0".to_owned(), "Calendar 02".to_owned()),
            ("pick_1".to_owned(), "1".to_owned()),
            ("alias_1".to_owned(), "Rota".to_owned()),
            ("alias_2".to_owned(), "Club".to_owned()),
        ]
    };

    let forged = client
        .http
        .post(&url)
        .header(COOKIE, client.cookie_header())
        .form(&choice("0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let anonymous = Client::new()
        .http
        .post(&url)
        .form(&choice(token.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&anonymous), "/admin/login");

    // Two calendars under one name: refused in one line, nothing connected.
    let mut twice = choice(token.clone());
    twice[5].1 = "Calendar 02".into();
    let refused = client
        .http
        .post(&url)
        .header(COOKIE, client.cookie_header())
        .form(&twice)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
    assert!(app
        .store
        .account_by_alias("Calendar 02")
        .await
        .unwrap()
        .is_none());

    let connected = client
        .http
        .post(&url)
        .header(COOKIE, client.cookie_header())
        .form(&choice(token))
        .send()
        .await
        .unwrap();
    assert_eq!(connected.status(), StatusCode::SEE_OTHER);
    let primary = app
        .store
        .account_by_alias("Calendar 02")
        .await
        .unwrap()
        .expect("the primary calendar is connected");
    let second = app
        .store
        .account_by_alias("Rota")
        .await
        .unwrap()
        .expect("the ticked secondary calendar is connected");
    assert!(
        app.store.account_by_alias("Club").await.unwrap().is_none(),
        "not ticked"
    );
    assert_eq!(second.calendar_id.as_str(), rota.id);
    assert_eq!(primary.email.as_deref(), Some("user02@example.test"));
    assert_eq!(second.email.as_deref(), Some("user02@example.test"));
    assert!(primary.credential_id.is_some());
    assert_eq!(
        primary.credential_id, second.credential_id,
        "one token per Google account"
    );

    let again = client.get(&url).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND, "a pick is used once");
}
