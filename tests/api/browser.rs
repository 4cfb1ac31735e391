//! The admin dashboard in real headless Chromium, driven through chromedriver (WebDriver) by
//! fantoccini over plain HTTP on loopback.
//!
//! Each test starts a demo (emulator + service on a temporary SQLite database), its own
//! chromedriver on a free port and a Chromium with a fresh profile. Paths come from
//! `MCSS_TEST_CHROMEDRIVER` (default `/usr/bin/chromedriver`) and `MCSS_TEST_CHROMIUM`
//! (default `/usr/bin/chromium`). With `MCSS_SCREENSHOTS=1` the dashboard pages are saved
//! as PNG files in `docs/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use mcss::demo::{Demo, DemoOptions};
use mcss::http::{DemoAction, DemoActions as _};
use mcss::shutdown::Shutdown;
use mcss::store::{AccountStatus, Store};

const PASSWORD: &str = "browser-test-password";
/// Upper bound for anything the tests wait for.
const PATIENCE: Duration = Duration::from_secs(30);

/// A chromedriver process, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 100 ms until it returns `Some`, for at most [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, PATIENCE, check).await
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `patience`.
async fn eventually_within<T, F, Fut>(what: &str, patience: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_browser() -> (Driver, Client) {
    let driver_path =
        std::env::var("MCSS_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let chromium =
        std::env::var("MCSS_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&driver_path).exists(),
        "chromedriver not found at {driver_path}: install it (apt-get install -y --no-install-recommends chromium chromium-driver) or set MCSS_TEST_CHROMEDRIVER"
    );
    let port = free_port();
    let child = Command::new(&driver_path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    let status_url = format!("{}/status", driver.url);
    eventually("chromedriver to answer", || {
        let url = status_url.clone();
        async move {
            reqwest::get(&url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic",
                format!("--user-data-dir={}", driver._profile.path().display()),
                "--window-size=1280,943",
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    (driver, client)
}

struct App {
    base: String,
    store: Store,
    demo_actions: std::sync::Arc<mcss::demo::EmulatorDemo>,
    shutdown: Shutdown,
    emulator: gcal_emulator::EmulatorHandle,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn start_demo(connect: usize) -> App {
    start_demo_with(connect, false).await
}

/// A demo with `connect` of the five calendars, and with `two_people` the second person's
/// three calendars in group `family` too.
async fn start_demo_with(connect: usize, two_people: bool) -> App {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(DemoOptions {
        port: 0,
        host: None,
        connect,
        data_dir: dir.path().to_owned(),
        admin_password: Some(PASSWORD.into()),
        log_level: "warn".into(),
        two_people,
    })
    .await
    .expect("the demo starts");
    let base = format!("http://127.0.0.1:{}", demo.app.port());
    let store = demo.app.state().store.clone();
    let shutdown = demo.app.shutdown();
    tokio::spawn(demo.app.run_until_stopped());
    App {
        base,
        store,
        demo_actions: demo.actions,
        shutdown,
        emulator: demo.emulator,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

async fn log_in(browser: &Client, app: &App) {
    browser.goto(&format!("{}/admin", app.base)).await.unwrap();
    let password = browser.find(Locator::Css("#password")).await.unwrap();
    password.send_keys(PASSWORD).await.unwrap();
    browser
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("table.accounts, p.empty"))
        .await
        .expect("the overview after signing in");
}

/// The number in the "Blocks here" cell of `alias`'s row, after a reload.
async fn blocks_of(browser: &Client, app: &App, alias: &str) -> Option<u64> {
    browser.goto(&format!("{}/admin", app.base)).await.ok()?;
    let cell = browser
        .find(Locator::Css(&format!(
            "tr[data-alias=\"{alias}\"] td.blocks"
        )))
        .await
        .ok()?;
    cell.text().await.ok()?.trim().parse().ok()
}

fn screenshots_wanted() -> bool {
    std::env::var("MCSS_SCREENSHOTS").is_ok_and(|v| v == "1")
}

async fn save_screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_and_connects_a_calendar_through_the_consent_page() {
    let app = start_demo(2).await;
    let (_driver, browser) = start_browser().await;

    log_in(&browser, &app).await;
    browser
        .goto(&format!("{}/admin/connect", app.base))
        .await
        .unwrap();
    browser
        .find(Locator::Css("#alias"))
        .await
        .unwrap()
        .send_keys("Calendar 03")
        .await
        .unwrap();
    browser
        .find(Locator::Css("button.primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The emulator's consent page lists its accounts; pick the third.
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(
            "a.account[data-email=\"user03@example.test\"]",
        ))
        .await
        .expect("the consent page")
        .click()
        .await
        .unwrap();
    // Back on the service: the callback page moves on to the account page.
    let heading = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("p.crumbs"))
        .await
        .expect("the account page after the consent");
    assert!(heading.text().await.unwrap().contains("Calendar 03"));
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .path()
        .starts_with("/admin/accounts/"));

    browser.goto(&format!("{}/admin", app.base)).await.unwrap();
    let row = browser
        .find(Locator::Css("tr[data-alias=\"Calendar 03\"]"))
        .await
        .expect("the new account on the overview");
    assert_eq!(
        row.attr("data-status").await.unwrap().as_deref(),
        Some("active")
    );
    let account = app
        .store
        .account_by_alias("Calendar 03")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.email.as_deref(), Some("user03@example.test"));
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_event_shows_up_as_counted_blocks_and_an_account_can_be_paused_and_resumed() {
    let app = start_demo(3).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;

    // A meeting on Calendar 01, made with the demo panel.
    browser
        .find(Locator::Css("#demo-calendar"))
        .await
        .expect("the demo panel")
        .select_by_value("Calendar 01")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#demo button[value=meeting]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("p.flash"))
        .await
        .expect("a notice after the demo action");
    assert!(flash
        .text()
        .await
        .unwrap()
        .contains("Created a one-hour meeting"));

    // Its blocks are counted on the other two calendars.
    for alias in ["Calendar 02", "Calendar 03"] {
        eventually(&format!("a block counted on {alias}"), || async {
            blocks_of(&browser, &app, alias).await.filter(|n| *n == 1)
        })
        .await;
    }
    assert_eq!(blocks_of(&browser, &app, "Calendar 01").await, Some(0));

    // Pause Calendar 02 from its page, then resume it.
    let account = app
        .store
        .account_by_alias("Calendar 02")
        .await
        .unwrap()
        .unwrap();
    let page = format!("{}/admin/accounts/{}", app.base, account.id);
    browser.goto(&page).await.unwrap();
    browser
        .find(Locator::Css(&format!(
            "form[action=\"/admin/accounts/{}/pause\"] button",
            account.id
        )))
        .await
        .expect("a Pause button")
        .click()
        .await
        .unwrap();
    let state = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("p.state[data-status=paused]"))
        .await
        .expect("the account shown as paused");
    assert!(state
        .text()
        .await
        .unwrap()
        .contains("Paused by an operator"));
    assert_eq!(
        app.store.account(account.id).await.unwrap().status,
        AccountStatus::Paused
    );

    browser
        .find(Locator::Css(&format!(
            "form[action=\"/admin/accounts/{}/resume\"] button.primary",
            account.id
        )))
        .await
        .expect("a Resume button")
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("p.state[data-status=active]"))
        .await
        .expect("the account shown as active again");
    assert_eq!(
        app.store.account(account.id).await.unwrap().status,
        AccountStatus::Active
    );

    browser.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The operator's view: honest status, live pages, the week, the trace, safety, the demo
// ---------------------------------------------------------------------------------------

impl App {
    /// An access token of emulator account `n` (0 is user01), as its owner's own app gets one.
    async fn owner_token(&self, n: usize) -> String {
        let account = &self.emulator.accounts()[n];
        let answer: serde_json::Value = self
            .http
            .post(self.emulator.token_url())
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", account.refresh_token.as_str()),
                ("client_id", self.emulator.client_id()),
                ("client_secret", self.emulator.client_secret()),
            ])
            .send()
            .await
            .expect("the token endpoint answers")
            .json()
            .await
            .expect("a token response");
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("an access token: {answer}"))
            .to_owned()
    }

    /// Creates `body` on emulator calendar `n` through the Calendar API, as its owner would.
    async fn create_event(&self, n: usize, body: serde_json::Value) -> serde_json::Value {
        let calendar = self.emulator.accounts()[n].calendar_id.clone();
        let response = self
            .http
            .post(format!(
                "{}/calendar/v3/calendars/{calendar}/events",
                self.emulator.base_url()
            ))
            .bearer_auth(self.owner_token(n).await)
            .json(&body)
            .send()
            .await
            .expect("events.insert answers");
        assert!(
            response.status().is_success(),
            "insert: {}",
            response.status()
        );
        response.json().await.expect("the created event")
    }

    /// A call to the emulator's control API (`/emulator/...`).
    async fn emulator_control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) {
        let mut request = self.http.request(
            method,
            format!("{}/emulator/{path}", self.emulator.base_url()),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the emulator answers");
        assert!(
            response.status().is_success(),
            "emulator {path}: {}",
            response.status()
        );
    }

    /// The titles of the live events on emulator calendar `n`, read as its owner would.
    async fn titles_on(&self, n: usize) -> Vec<String> {
        let calendar = self.emulator.accounts()[n].calendar_id.clone();
        let response = self
            .http
            .get(format!(
                "{}/calendar/v3/calendars/{calendar}/events",
                self.emulator.base_url()
            ))
            .bearer_auth(self.owner_token(n).await)
            .send()
            .await
            .expect("events.list answers");
        assert!(
            response.status().is_success(),
            "list: {}",
            response.status()
        );
        let page: serde_json::Value = response.json().await.expect("an events page");
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["status"].as_str() != Some("cancelled"))
            .filter_map(|e| e["summary"].as_str().map(str::to_owned))
            .collect()
    }

    async fn account_id(&self, alias: &str) -> mcss::domain::AccountId {
        self.store
            .account_by_alias(alias)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{alias} is connected"))
            .id
    }
}

/// A one-hour meeting body at `start` (UTC).
fn meeting_at(start: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    serde_json::json!({
        "summary": "Quarterly planning",
        "start": {"dateTime": fmt(start), "timeZone": "UTC"},
        "end": {"dateTime": fmt(start + chrono::TimeDelta::hours(1)), "timeZone": "UTC"},
    })
}

/// Tomorrow at `hour`:00 UTC.
fn tomorrow_at(hour: u32) -> chrono::DateTime<chrono::Utc> {
    (chrono::Utc::now().date_naive() + chrono::TimeDelta::days(1))
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
}

/// The text of the first element matching `css`, without navigating.
async fn text_of(browser: &Client, css: &str) -> Option<String> {
    browser
        .find(Locator::Css(css))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// An attribute of the first element matching `css`, without navigating.
async fn attr_of(browser: &Client, css: &str, name: &str) -> Option<String> {
    browser
        .find(Locator::Css(css))
        .await
        .ok()?
        .attr(name)
        .await
        .ok()?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_blocks_of_a_new_event_without_a_reload() {
    let app = start_demo(3).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    browser
        .execute("window.mcssTestMarker = 42; return 1;", vec![])
        .await
        .unwrap();

    app.create_event(1, meeting_at(tomorrow_at(9))).await;

    eventually(
        "the block counted on Calendar 01 without a reload",
        || async {
            let text = text_of(&browser, "tr[data-alias=\"Calendar 01\"] td.blocks").await?;
            (text.trim() == "1").then_some(())
        },
    )
    .await;
    let marker = browser
        .execute("return window.mcssTestMarker;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, serde_json::json!(42), "the page was not reloaded");
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_writes_are_shown_with_googles_reason_and_clear_when_the_fault_does() {
    let app = start_demo(5).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    app.emulator_control(
        reqwest::Method::POST,
        "faults",
        Some(serde_json::json!({
            "kind": "backendError", "status": 503,
            "account": "user05@example.test", "methods": ["events.insert"],
        })),
    )
    .await;

    let event = app.create_event(0, meeting_at(tomorrow_at(11))).await;

    let row = "tr[data-alias=\"Calendar 05\"]";
    eventually("Calendar 05 shown with failing writes", || async {
        let health = attr_of(&browser, row, "data-health").await?;
        let text = text_of(&browser, row).await?;
        (health == "writes-failing" && text.contains("503") && text.contains("backendError"))
            .then_some(())
    })
    .await;
    let summary = text_of(&browser, "#summary").await.unwrap();
    assert!(
        summary.contains("Calendar 05"),
        "the first line names it: {summary}"
    );

    // The trace of the event says the same for that target.
    let source = app.account_id("Calendar 01").await;
    let trace = format!(
        "{}/admin/events/{}/{}",
        app.base,
        source,
        event["id"].as_str().unwrap()
    );
    browser.goto(&trace).await.unwrap();
    let target = app.account_id("Calendar 05").await;
    let cell = format!("table.targets tr[data-target=\"{target}\"]");
    assert_eq!(
        attr_of(&browser, &cell, "data-state").await.as_deref(),
        Some("failing")
    );
    assert!(text_of(&browser, &cell).await.unwrap().contains("503"));

    // The activity of Calendar 05 names the failed writes' source, and Google's answer.
    browser
        .goto(&format!(
            "{}/admin/activity?account={target}&result=error",
            app.base
        ))
        .await
        .unwrap();
    let log = text_of(&browser, "table.log").await.unwrap();
    assert!(log.contains("503 backendError"), "{log}");
    assert!(log.contains("Calendar 01"), "{log}");
    if screenshots_wanted() {
        browser.goto(&format!("{}/admin", app.base)).await.unwrap();
        save_screenshot(&browser, "overview-failing").await;
    }

    app.emulator_control(reqwest::Method::DELETE, "faults", None)
        .await;
    browser.goto(&format!("{}/admin", app.base)).await.unwrap();
    eventually_within(
        "Calendar 05 back to active",
        Duration::from_secs(90),
        || async { (attr_of(&browser, row, "data-health").await? == "active").then_some(()) },
    )
    .await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_account_is_shown_as_needing_reauth_with_why_and_a_reconnect_button() {
    let app = start_demo(3).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    app.emulator_control(
        reqwest::Method::POST,
        "accounts/user02@example.test/revoke",
        None,
    )
    .await;

    // A change elsewhere makes Calendar 02's writer call Google with the dead token.
    app.create_event(0, meeting_at(tomorrow_at(13))).await;

    let row = "tr[data-alias=\"Calendar 02\"]";
    eventually("Calendar 02 shown as needing reauth", || async {
        (attr_of(&browser, row, "data-health").await? == "needs-reauth").then_some(())
    })
    .await;
    let reconnect = browser
        .find(Locator::Css(&format!(
            "{row} a.button[href^=\"/auth/google/start\"]"
        )))
        .await
        .expect("a Reconnect button in the row");
    assert_eq!(reconnect.text().await.unwrap().trim(), "Reconnect");
    assert!(text_of(&browser, row)
        .await
        .unwrap()
        .contains("needs reauth"));

    let id = app.account_id("Calendar 02").await;
    browser
        .goto(&format!("{}/admin/accounts/{id}", app.base))
        .await
        .unwrap();
    let problem = text_of(&browser, "dd.last-error").await.unwrap();
    assert!(
        problem.contains("invalid_grant") || problem.contains("revoked"),
        "the account page says why: {problem}"
    );
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_week_shows_an_event_and_its_four_blocks_and_the_trace_has_them_in_step() {
    let app = start_demo(5).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    let start = tomorrow_at(10);
    let event = app.create_event(0, meeting_at(start)).await;
    let event_id = event["id"].as_str().unwrap().to_owned();
    let monday = start.date_naive()
        - chrono::TimeDelta::days(i64::from(
            chrono::Datelike::weekday(&start.date_naive()).num_days_from_monday(),
        ));
    let week = format!("{}/admin/week?start={monday}", app.base);
    let when = start.format("%Y-%m-%dT%H:%M:%SZ").to_string();

    let (blocks, own) = eventually(
        "the event and its four blocks drawn in the week",
        || async {
            browser.goto(&week).await.ok()?;
            let found = browser
                .find_all(Locator::Css(&format!(
                    "a.item[data-kind=block][data-source-event=\"{event_id}\"]"
                )))
                .await
                .ok()?;
            let own = browser
                .find(Locator::Css(&format!(
                    "a.item[data-kind=event][data-source-event=\"{event_id}\"]"
                )))
                .await
                .ok()?;
            (found.len() == 4).then_some((found, own))
        },
    )
    .await;
    assert_eq!(
        own.attr("data-start").await.unwrap().as_deref(),
        Some(when.as_str())
    );
    let own_y = own
        .find(Locator::Css("rect"))
        .await
        .unwrap()
        .attr("y")
        .await
        .unwrap();
    let mut lanes = std::collections::BTreeSet::new();
    for block in &blocks {
        assert_eq!(
            block.attr("data-start").await.unwrap().as_deref(),
            Some(when.as_str())
        );
        let y = block
            .find(Locator::Css("rect"))
            .await
            .unwrap()
            .attr("y")
            .await
            .unwrap();
        assert_eq!(y, own_y, "a block is drawn at its event's time");
        lanes.insert(block.attr("data-account").await.unwrap());
    }
    assert_eq!(lanes.len(), 4, "one block on each other calendar");

    // The block links to its source's trace, which lists four targets in step.
    let href = blocks[0].attr("href").await.unwrap().expect("a link");
    browser.goto(&format!("{}{href}", app.base)).await.unwrap();
    eventually("four targets in step on the trace", || async {
        let rows = browser
            .find_all(Locator::Css("table.targets tr[data-target]"))
            .await
            .ok()?;
        let mut in_step = 0;
        for row in &rows {
            if row.attr("data-state").await.ok()?.as_deref() == Some("in-step") {
                in_step += 1;
            }
        }
        (rows.len() == 4 && in_step == 4).then_some(())
    })
    .await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_account_asks_for_confirmation_before_anything_happens() {
    let app = start_demo(3).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    let id = app.account_id("Calendar 02").await;
    browser
        .goto(&format!("{}/admin/accounts/{id}", app.base))
        .await
        .unwrap();

    browser
        .find(Locator::Css("form.remove input[name=purge]"))
        .await
        .expect("the purge box")
        .click()
        .await
        .unwrap();
    browser
        .find(Locator::Css("form.remove button.danger"))
        .await
        .expect("the Remove button")
        .click()
        .await
        .unwrap();

    // The old page's heading may still be there (or go stale) while the next page loads:
    // read the heading until it is the confirmation's.
    eventually("the confirmation page", || async {
        text_of(&browser, "h1")
            .await
            .filter(|heading| heading.contains("Remove Calendar 02"))
    })
    .await;
    if screenshots_wanted() {
        save_screenshot(&browser, "confirm-remove").await;
    }
    assert!(
        app.store.account(id).await.is_ok(),
        "nothing is removed before the confirmation"
    );
    browser
        .find(Locator::Css("form.confirm button.danger"))
        .await
        .expect("a confirm button")
        .click()
        .await
        .unwrap();
    eventually("the account removed after the confirmation", || async {
        app.store
            .account_by_alias("Calendar 02")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_connects_a_sixth_calendar_through_a_new_test_account() {
    let app = start_demo(5).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    browser
        .goto(&format!("{}/admin/connect", app.base))
        .await
        .unwrap();
    browser
        .find(Locator::Css("#alias"))
        .await
        .unwrap()
        .send_keys("Calendar 06")
        .await
        .unwrap();
    browser
        .find(Locator::Css("button.primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let email = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("form#add-account input[name=email]"))
        .await
        .expect("the consent page offers a new test account");
    if screenshots_wanted() {
        save_screenshot(&browser, "consent").await;
    }
    assert_eq!(
        email.prop("value").await.unwrap().as_deref(),
        Some("user06@example.test")
    );
    browser
        .find(Locator::Css("form#add-account button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let crumbs = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("p.crumbs"))
        .await
        .expect("the new account's page");
    assert!(crumbs.text().await.unwrap().contains("Calendar 06"));
    let account = app
        .store
        .account_by_alias("Calendar 06")
        .await
        .unwrap()
        .expect("a sixth calendar");
    assert_eq!(account.email.as_deref(), Some("user06@example.test"));

    // The demo panel acts on it like on the others: its meeting is blocked on all five.
    browser.goto(&format!("{}/admin", app.base)).await.unwrap();
    browser
        .find(Locator::Css("#demo-calendar"))
        .await
        .unwrap()
        .select_by_value("Calendar 06")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#demo button[value=meeting]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for n in 1..=5 {
        let alias = format!("Calendar {n:02}");
        eventually(&format!("a block of Calendar 06 on {alias}"), || async {
            blocks_of(&browser, &app, &alias).await.filter(|b| *b == 1)
        })
        .await;
    }
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_with_five_calendars_and_their_events() {
    let app = start_demo(5).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    for scenario in ["busy-week", "recurring", "conflict"] {
        app.demo_actions.scenario(scenario).await.unwrap();
    }
    app.demo_actions
        .perform("Calendar 04", None, DemoAction::AllDay)
        .await
        .unwrap();
    eventually("the scenarios' blocks written", || async {
        let waiting = app.store.pending_count(None).await.ok()?;
        let blocks = app
            .store
            .block_count(None, mcss::store::BlockState::Applied)
            .await
            .ok()?;
        (waiting == 0 && blocks >= 40).then_some(())
    })
    .await;
    let shots = screenshots_wanted();

    browser.goto(&format!("{}/admin", app.base)).await.unwrap();
    let rows = browser
        .find_all(Locator::Css("table.accounts tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    let summary = text_of(&browser, "#summary").await.unwrap();
    assert!(summary.contains("Everything is in step"), "{summary}");
    if shots {
        save_screenshot(&browser, "overview").await;
    }

    let id = app.account_id("Calendar 01").await;
    browser
        .goto(&format!("{}/admin/accounts/{id}", app.base))
        .await
        .unwrap();
    browser
        .find(Locator::Css("p.state[data-health=active]"))
        .await
        .unwrap();
    if shots {
        save_screenshot(&browser, "account").await;
    }

    let day = chrono::Utc::now().date_naive() + chrono::TimeDelta::days(1);
    browser
        .goto(&format!("{}/admin/week?start={day}", app.base))
        .await
        .unwrap();
    let items = browser
        .find_all(Locator::Css("svg.week a.item"))
        .await
        .unwrap();
    assert!(
        items.len() >= 20,
        "the week is drawn: {} items",
        items.len()
    );
    if shots {
        save_screenshot(&browser, "week").await;
    }

    browser
        .goto(&format!("{}/admin/events", app.base))
        .await
        .unwrap();
    let lines = browser
        .find_all(Locator::Css("table.events tbody tr"))
        .await
        .unwrap();
    assert!(!lines.is_empty(), "events are listed");
    let trace = browser
        .find(Locator::Css(
            "table.events tbody tr a[href^=\"/admin/events/\"]",
        ))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    if shots {
        save_screenshot(&browser, "events").await;
    }
    browser.goto(&format!("{}{trace}", app.base)).await.unwrap();
    browser.find(Locator::Css("table.targets")).await.unwrap();
    if shots {
        save_screenshot(&browser, "trace").await;
    }

    browser
        .goto(&format!("{}/admin/activity", app.base))
        .await
        .unwrap();
    let linked = browser
        .find_all(Locator::Css("table.log a.trace"))
        .await
        .unwrap();
    assert!(!linked.is_empty(), "block writes link to their trace");
    if shots {
        save_screenshot(&browser, "activity").await;
    }

    browser
        .goto(&format!("{}/admin/live", app.base))
        .await
        .unwrap();
    let changes = browser
        .find_all(Locator::Css("table.changes tbody tr"))
        .await
        .unwrap();
    assert!(!changes.is_empty(), "the changes are listed");
    if shots {
        save_screenshot(&browser, "live").await;
    }
    browser.close().await.unwrap();
}

/// Submits the form around `css` by clicking it, and waits for the next page's heading.
async fn click_and_wait(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("{css} on the page"))
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("main h1"))
        .await
        .expect("the next page");
}

/// Replaces the value of the input `css`.
async fn fill(browser: &Client, css: &str, value: &str) {
    let input = browser.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_changed_on_the_settings_page_retitles_the_blocks_and_a_bad_regex_changes_nothing() {
    let app = start_demo(3).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    app.create_event(0, meeting_at(tomorrow_at(11))).await;
    eventually("the block titled by the default template", || async {
        app.titles_on(1)
            .await
            .contains(&"Calendar 01 Block".to_owned())
            .then_some(())
    })
    .await;
    let target = app.account_id("Calendar 02").await;
    let settings = format!("{}/admin/settings/{target}", app.base);

    // A bad regex: one line naming the field, and nothing changes.
    browser.goto(&settings).await.unwrap();
    fill(&browser, "#block_title", "Busy ({alias})").await;
    fill(&browser, "#exclude_title_regex", "(unclosed").await;
    click_and_wait(&browser, "form.settings button[type=submit]").await;
    let error = text_of(&browser, "p.flash.error")
        .await
        .expect("an error line");
    assert!(
        error.starts_with("Nothing was changed. exclude title regex: is not a valid regex"),
        "{error}"
    );
    assert!(!error.contains('\n'), "one line: {error}");
    let kept = browser
        .find(Locator::Css("#exclude_title_regex"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("(unclosed"), "what was typed is kept");
    if screenshots_wanted() {
        save_screenshot(&browser, "settings-error").await;
    }
    let stored = app.store.account(target).await.unwrap();
    assert_eq!(
        stored.rules.block_title_template.as_deref(),
        Some("{alias} Block"),
        "the title template was not changed with the bad regex"
    );

    // A good change: the block on Calendar 02 is retitled at Google, the one on 03 is not.
    browser.goto(&settings).await.unwrap();
    fill(&browser, "#block_title", "Busy ({alias})").await;
    click_and_wait(&browser, "form.settings button[type=submit]").await;
    let done = eventually("a notice", || text_of(&browser, "p.flash.done")).await;
    assert!(done.contains("Settings of Calendar 02 saved"), "{done}");
    eventually("the block retitled on Calendar 02", || async {
        let titles = app.titles_on(1).await;
        (titles.contains(&"Busy (Calendar 01)".to_owned())
            && !titles.contains(&"Calendar 01 Block".to_owned()))
        .then_some(())
    })
    .await;
    assert!(app
        .titles_on(2)
        .await
        .contains(&"Calendar 01 Block".to_owned()));
    if screenshots_wanted() {
        browser.goto(&settings).await.unwrap();
        save_screenshot(&browser, "settings").await;
    }
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_a_link_off_in_the_matrix_removes_exactly_its_blocks() {
    let app = start_demo(4).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    let event = app.create_event(0, meeting_at(tomorrow_at(9))).await;
    app.create_event(1, meeting_at(tomorrow_at(13))).await;
    let block = |alias: &str| format!("{alias} Block");
    eventually("the blocks of both events everywhere", || async {
        let on_02 = app.titles_on(1).await;
        let on_03 = app.titles_on(2).await;
        (on_02.contains(&block("Calendar 01")) && on_03.contains(&block("Calendar 02")))
            .then_some(())
    })
    .await;

    browser
        .goto(&format!("{}/admin/links", app.base))
        .await
        .unwrap();
    assert!(
        browser
            .find(Locator::Css(
                "button[data-link=\"Calendar 01 → Calendar 01\"]"
            ))
            .await
            .is_err(),
        "no link from a calendar to itself is offered"
    );
    click_and_wait(&browser, "button[data-link=\"Calendar 01 → Calendar 02\"]").await;
    let done = eventually("a notice", || text_of(&browser, "p.flash.done")).await;
    assert!(done.contains("Calendar 01 → Calendar 02 is off"), "{done}");
    assert_eq!(
        text_of(&browser, "button[data-link=\"Calendar 01 → Calendar 02\"]")
            .await
            .as_deref(),
        Some("off")
    );

    eventually("Calendar 01's block gone from Calendar 02", || async {
        (!app.titles_on(1).await.contains(&block("Calendar 01"))).then_some(())
    })
    .await;
    // Every other block stays: 01 still blocks 03 and 04, 02 still blocks 01, 03, 04.
    assert!(app.titles_on(2).await.contains(&block("Calendar 01")));
    assert!(app.titles_on(3).await.contains(&block("Calendar 01")));
    assert!(app.titles_on(0).await.contains(&block("Calendar 02")));
    assert!(app.titles_on(2).await.contains(&block("Calendar 02")));
    assert!(app.titles_on(3).await.contains(&block("Calendar 02")));

    // The event's trace says why Calendar 02 has no block.
    let (source, target) = (
        app.account_id("Calendar 01").await,
        app.account_id("Calendar 02").await,
    );
    let trace = format!(
        "{}/admin/events/{source}/{}",
        app.base,
        event["id"].as_str().unwrap()
    );
    browser.goto(&trace).await.unwrap();
    let why = text_of(
        &browser,
        &format!("table.targets tr[data-target=\"{target}\"]"),
    )
    .await
    .expect("Calendar 02 is listed on the trace");
    assert!(why.contains("the link to it is off"), "{why}");
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_calendar_is_connected_through_the_picker_on_the_accounts_token() {
    let app = start_demo(5).await;
    let secondary = app
        .emulator
        .shared()
        .create_secondary_calendar("user01@example.test", "Team rota".into(), None)
        .expect("user01 exists");
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    browser
        .goto(&format!(
            "{}/auth/google/start?alias=Team%20rota&login_hint=user01%40example.test",
            app.base
        ))
        .await
        .unwrap();

    // The emulator approves a known login hint at once; the picker lists both calendars.
    let row = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(&format!(
            "table.pick tr[data-calendar=\"{}\"]",
            secondary.id
        )))
        .await
        .expect("the picker lists the secondary calendar");
    let primary = text_of(
        &browser,
        "table.pick tr[data-calendar=\"user01@example.test\"]",
    )
    .await
    .unwrap();
    assert!(primary.contains("as Calendar 01"), "{primary}");
    let ticked = row
        .find(Locator::Css("input[type=checkbox]"))
        .await
        .unwrap();
    assert_eq!(
        ticked.prop("checked").await.unwrap().as_deref(),
        Some("true")
    );
    if screenshots_wanted() {
        save_screenshot(&browser, "connect-pick").await;
    }
    click_and_wait(&browser, "table.pick ~ p button.primary").await;

    let done = eventually("a notice", || text_of(&browser, "p.flash.done")).await;
    assert!(done.contains("Connected Team rota"), "{done}");
    let rota = app
        .store
        .account_by_alias("Team rota")
        .await
        .unwrap()
        .expect("the secondary calendar is connected");
    let first = app
        .store
        .account_by_alias("Calendar 01")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rota.calendar_id.as_str(), secondary.id);
    assert!(rota.credential_id.is_some());
    assert_eq!(
        rota.credential_id, first.credential_id,
        "one refresh token for the Google account"
    );
    // It takes part: a meeting on Calendar 02 is blocked on it.
    app.create_event(1, meeting_at(tomorrow_at(15))).await;
    eventually("a block on the secondary calendar", || async {
        let rows = app.store.wanted_blocks().await.ok()?;
        rows.iter()
            .any(|r| r.target_account_id == rota.id && r.state == mcss::store::BlockState::Applied)
            .then_some(())
    })
    .await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_people_the_links_and_the_week_keep_each_group_to_itself() {
    let app = start_demo_with(5, true).await;
    let (_driver, browser) = start_browser().await;
    log_in(&browser, &app).await;
    app.demo_actions.scenario("two-people").await.unwrap();
    eventually("the scenario's blocks written", || async {
        let waiting = app.store.pending_count(None).await.ok()?;
        let blocks = app
            .store
            .block_count(None, mcss::store::BlockState::Applied)
            .await
            .ok()?;
        // 4 blocks of the planning meeting, 2 of the dentist, 2 of the school play.
        (waiting == 0 && blocks == 8).then_some(())
    })
    .await;

    browser
        .goto(&format!("{}/admin/links", app.base))
        .await
        .unwrap();
    let groups = browser
        .find_all(Locator::Css("section[data-group]"))
        .await
        .unwrap();
    assert_eq!(groups.len(), 2, "one matrix per group");
    let family = text_of(&browser, "section[data-group=family]")
        .await
        .unwrap();
    assert!(
        family.contains("Kids") && !family.contains("Calendar 01"),
        "{family}"
    );
    assert!(browser
        .find(Locator::Css("button[data-link=\"Partner → Calendar 01\"]"))
        .await
        .is_err());
    if screenshots_wanted() {
        save_screenshot(&browser, "links").await;
    }

    let start = tomorrow_at(10);
    let monday = start.date_naive()
        - chrono::TimeDelta::days(i64::from(
            chrono::Datelike::weekday(&start.date_naive()).num_days_from_monday(),
        ));
    browser
        .goto(&format!("{}/admin/week?start={monday}", app.base))
        .await
        .unwrap();
    let partner = app.account_id("Partner").await;
    let first = app.account_id("Calendar 01").await;
    let on_partner = browser
        .find_all(Locator::Css(&format!(
            "a.item[data-kind=block][data-account=\"{partner}\"]"
        )))
        .await
        .unwrap();
    assert_eq!(on_partner.len(), 1, "only the school play blocks Partner");
    let on_first = browser
        .find_all(Locator::Css(&format!(
            "a.item[data-kind=block][data-account=\"{first}\"]"
        )))
        .await
        .unwrap();
    assert!(
        on_first.is_empty(),
        "nothing of the family blocks Calendar 01"
    );
    if screenshots_wanted() {
        save_screenshot(&browser, "week-two-people").await;
    }
    browser.close().await.unwrap();
}
