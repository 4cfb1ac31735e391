//! Smoke test of the sync engine end to end: the real `Application` (SQLite, actors, HTTP)
//! against the in-process Google emulator, with push notifications delivered to the app's
//! own webhook. The full behaviour suite lives in `tests/sync_*.rs`.

use std::time::Duration;

use gcal_emulator::{
    AccountInfo, Emulator, EmulatorConfig, EmulatorHandle, Settings as EmuSettings,
};
use mcss::actors::Control;
use mcss::config::Settings;
use mcss::domain::CalendarId;
use mcss::startup::Application;
use mcss::store::NewAccount;
use secrecy::SecretString;
use serde_json::{json, Value};

/// Polls `probe` until it yields `Some`, for at most 20 s.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct TestApp {
    emulator: EmulatorHandle,
    control: Control,
    /// The application's HTTP port.
    port: u16,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// An emulator with two accounts and the app serving, both accounts connected.
    async fn spawn() -> (TestApp, Vec<AccountInfo>) {
        let emulator = Emulator::start(EmulatorConfig {
            accounts: 2,
            settings: EmuSettings {
                allow_http_webhooks: true,
                ..EmuSettings::default()
            },
            ..EmulatorConfig::default()
        })
        .await
        .expect("the emulator starts");
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = dir.path().join("mcss.db");
        let base = emulator.base_url().to_owned();
        let vars = [
            ("PORT", "0".to_owned()),
            (
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            ),
            ("GOOGLE_API_BASE_URL", base.clone()),
            ("GOOGLE_AUTH_URL", emulator.auth_url()),
            ("GOOGLE_TOKEN_URL", emulator.token_url()),
            ("GOOGLE_CLIENT_ID", emulator.client_id().to_owned()),
            ("GOOGLE_CLIENT_SECRET", emulator.client_secret().to_owned()),
            // Port 0: the application substitutes the port it bound.
            ("WEBHOOK_BASE_URL", "http://127.0.0.1:0".to_owned()),
            ("WEBHOOK_SECRET", "engine-test-secret".to_owned()),
            // Only push can make this test pass in time.
            ("POLL_INTERVAL_SECS", "3600".to_owned()),
            ("WRITES_PER_SECOND", "50".to_owned()),
        ];
        let settings = Settings::from_vars(vars.into_iter().map(|(k, v)| (k.to_owned(), v)))
            .expect("valid settings");
        let app = Application::build(settings).await.expect("the app builds");
        let control = app.state().control.clone();
        let port = app.port();
        tokio::spawn(app.run_until_stopped());

        let accounts = emulator.accounts();
        for (n, info) in accounts.iter().enumerate() {
            let account = control
                .services()
                .store
                .create_account(NewAccount {
                    group: mcss::store::DEFAULT_GROUP.to_owned(),
                    rules: mcss::store::CalendarRules::default(),
                    alias: format!("Calendar {:02}", n + 1),
                    email: Some(info.email.clone()),
                    calendar_id: CalendarId::parse(&info.calendar_id).expect("a calendar id"),
                    refresh_token: SecretString::from(info.refresh_token.clone()),
                    time_zone: Some("UTC".to_owned()),
                })
                .await
                .expect("the account is stored");
            control
                .start_account(account.id)
                .await
                .expect("the account starts");
        }
        let app = TestApp {
            emulator,
            control,
            port,
            http: reqwest::Client::new(),
            _dir: dir,
        };
        (app, accounts)
    }

    async fn access_token(&self, account: &AccountInfo) -> String {
        let answer: Value = self
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
            .expect("an access token")
            .to_owned()
    }

    fn events_url(&self, account: &AccountInfo) -> String {
        format!(
            "{}/calendar/v3/calendars/{}/events",
            self.emulator.base_url(),
            account.calendar_id
        )
    }

    async fn insert_event(&self, account: &AccountInfo, body: Value) -> String {
        let token = self.access_token(account).await;
        let created: Value = self
            .http
            .post(self.events_url(account))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("insert answers")
            .error_for_status()
            .expect("insert succeeds")
            .json()
            .await
            .expect("an event");
        created["id"].as_str().expect("an id").to_owned()
    }

    async fn delete_event(&self, account: &AccountInfo, id: &str) {
        let token = self.access_token(account).await;
        self.http
            .delete(format!("{}/{id}", self.events_url(account)))
            .bearer_auth(token)
            .send()
            .await
            .expect("delete answers")
            .error_for_status()
            .expect("delete succeeds");
    }

    /// The live events on a calendar.
    async fn live_events(&self, account: &AccountInfo) -> Vec<Value> {
        let token = self.access_token(account).await;
        let page: Value = self
            .http
            .get(self.events_url(account))
            .bearer_auth(token)
            .send()
            .await
            .expect("list answers")
            .json()
            .await
            .expect("a page");
        page["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["status"] != "cancelled")
            .collect()
    }
}

impl TestApp {
    /// Waits until both accounts have an open push channel.
    async fn channels_open(&self) {
        eventually("both push channels", || async {
            let store = &self.control.services().store;
            let mut open = 0;
            for account in store.list_accounts().await.ok()? {
                if store.current_channel(account.id).await.ok()?.is_some() {
                    open += 1;
                }
            }
            (open == 2).then_some(())
        })
        .await;
    }

    async fn an_event_in_two_days(&self, account: &AccountInfo, summary: &str) -> String {
        let start = chrono::Utc::now() + chrono::TimeDelta::days(2);
        let end = start + chrono::TimeDelta::hours(1);
        self.insert_event(
            account,
            json!({
                "summary": summary,
                "start": {"dateTime": start.to_rfc3339()},
                "end": {"dateTime": end.to_rfc3339()},
            }),
        )
        .await
    }

    async fn post_ping(&self, headers: &[(&str, &str)]) -> u16 {
        let mut request = self
            .http
            .post(format!("http://127.0.0.1:{}/webhooks/google", self.port));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .send()
            .await
            .expect("the webhook answers")
            .status()
            .as_u16()
    }
}

fn is_block(event: &Value) -> bool {
    event["extendedProperties"]["private"]["mcssInstallation"].is_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_on_one_calendar_becomes_a_private_block_on_the_other_and_goes_away_with_it() {
    let (app, accounts) = TestApp::spawn().await;
    let (one, two) = (&accounts[0], &accounts[1]);
    app.channels_open().await;
    let start = chrono::Utc::now() + chrono::TimeDelta::days(2);
    let end = start + chrono::TimeDelta::hours(1);

    let source_id = app
        .insert_event(
            one,
            json!({
                "summary": "Dentist",
                "location": "Main street 1",
                "start": {"dateTime": start.to_rfc3339()},
                "end": {"dateTime": end.to_rfc3339()},
            }),
        )
        .await;

    let block = eventually("the block on calendar two", || async {
        app.live_events(two).await.into_iter().find(is_block)
    })
    .await;
    assert_eq!(block["summary"], "Calendar 01 Block");
    assert_eq!(block["visibility"], "private");
    assert_ne!(block["location"], "Main street 1");
    assert!(block["attendees"].is_null());
    assert!(
        app.live_events(one).await.iter().all(|e| !is_block(e)),
        "no block comes back to the source calendar"
    );

    app.delete_event(one, &source_id).await;

    eventually("the block to be deleted", || async {
        app.live_events(two)
            .await
            .iter()
            .all(|e| !is_block(e))
            .then_some(())
    })
    .await;
    assert!(
        !app.control.latency_samples().is_empty(),
        "the writes were measured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_the_user_deletes_stays_deleted_when_its_source_changes() {
    let (app, accounts) = TestApp::spawn().await;
    let (one, two) = (&accounts[0], &accounts[1]);
    app.channels_open().await;
    let source_id = app.an_event_in_two_days(one, "Standup").await;
    let block = eventually("the block on calendar two", || async {
        app.live_events(two).await.into_iter().find(is_block)
    })
    .await;
    let block_id = block["id"].as_str().expect("a block id").to_owned();

    app.delete_event(two, &block_id).await;
    let store = &app.control.services().store;
    let target = store
        .list_accounts()
        .await
        .expect("accounts")
        .into_iter()
        .find(|a| a.calendar_id.as_str() == two.calendar_id)
        .expect("account two");
    eventually("the deletion to be recorded as an exclusion", || async {
        let row = store
            .block_on_target(target.id, &mcss::domain::BlockId::parse(&block_id).ok()?)
            .await
            .ok()??;
        (row.state == mcss::store::BlockState::Excluded).then_some(())
    })
    .await;
    let token = app.access_token(one).await;
    app.http
        .patch(format!("{}/{source_id}", app.events_url(one)))
        .bearer_auth(token)
        .json(&json!({"summary": "Standup (moved room)"}))
        .send()
        .await
        .expect("patch answers")
        .error_for_status()
        .expect("patch succeeds");
    app.control
        .sync_now(target.id)
        .await
        .expect("a manual sync of the target");

    // The change is synced (the source's stored title moves) but no block comes back.
    let source = store
        .list_accounts()
        .await
        .expect("accounts")
        .into_iter()
        .find(|a| a.calendar_id.as_str() == one.calendar_id)
        .expect("account one");
    eventually("the source change to be synced", || async {
        let event = store
            .source_event(source.id, &mcss::domain::EventId::parse(&source_id).ok()?)
            .await
            .ok()??;
        (event.data["summary"] == "Standup (moved room)").then_some(())
    })
    .await;
    eventually("the writer to settle", || async {
        (store.pending_count(Some(target.id)).await.ok()? == 0).then_some(())
    })
    .await;
    assert!(app.live_events(two).await.iter().all(|e| !is_block(e)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_malformed_pings_are_refused_without_a_sync() {
    let (app, _accounts) = TestApp::spawn().await;
    app.channels_open().await;
    let store = &app.control.services().store;
    let account = store.list_accounts().await.expect("accounts")[0].clone();
    let channel = store
        .current_channel(account.id)
        .await
        .expect("the channel")
        .expect("an open channel");

    let forged = app
        .post_ping(&[
            ("X-Goog-Channel-ID", channel.channel_id.as_str()),
            ("X-Goog-Channel-Token", "not-the-token"),
            ("X-Goog-Resource-State", "exists"),
        ])
        .await;
    let unknown = app
        .post_ping(&[
            ("X-Goog-Channel-ID", "no-such-channel"),
            ("X-Goog-Resource-State", "exists"),
        ])
        .await;
    let headerless = app.post_ping(&[("X-Goog-Resource-State", "exists")]).await;

    assert_eq!(forged, 403);
    assert_eq!(unknown, 404);
    assert_eq!(headerless, 400);
}
