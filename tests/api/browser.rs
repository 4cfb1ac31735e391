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
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
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
                "--window-size=1280,900",
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
    _emulator: gcal_emulator::EmulatorHandle,
    _dir: tempfile::TempDir,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn start_demo(connect: usize) -> App {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(DemoOptions {
        port: 0,
        connect,
        data_dir: dir.path().to_owned(),
        admin_password: Some(PASSWORD.into()),
        log_level: "warn".into(),
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
        _emulator: demo.emulator,
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

    if screenshots_wanted() {
        // A little more to look at: a series and an all-day event elsewhere.
        let _ = app
            .demo_actions
            .perform("Calendar 02", DemoAction::Weekly)
            .await;
        let _ = app
            .demo_actions
            .perform("Calendar 03", DemoAction::AllDay)
            .await;
        eventually("blocks of the series and the all-day event", || async {
            blocks_of(&browser, &app, "Calendar 01")
                .await
                .filter(|n| *n == 2)
        })
        .await;
        save_screenshot(&browser, "overview").await;
    }

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

    if screenshots_wanted() {
        save_screenshot(&browser, "account").await;
        browser
            .goto(&format!("{}/admin/activity", app.base))
            .await
            .unwrap();
        browser.find(Locator::Css("table.log")).await.unwrap();
        save_screenshot(&browser, "activity").await;
        browser
            .goto(&format!("{}/admin/live", app.base))
            .await
            .unwrap();
        eventually("the live view to load", || async {
            let text = browser
                .find(Locator::Css("#pending-total"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (text != "…").then_some(())
        })
        .await;
        save_screenshot(&browser, "live").await;
    }
    browser.close().await.unwrap();
}
