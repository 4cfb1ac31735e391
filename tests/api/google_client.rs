//! The Google client against `gcal-emulator`: every method, every error class the sync
//! engine branches on, retries, token refresh and the consent flow.
//!
//! Each test starts its own emulator on a free port, so tests run in parallel.

use std::time::Duration;

use gcal_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use mcss::config::GoogleSettings;
use mcss::domain::{CalendarId, ChannelId, EventId};
use mcss::google::{
    AccountClient, EventsQuery, GoogleClient, GoogleError, InstancesQuery, OAuthClient,
    RetryPolicy, TokenSource, SCOPES,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use url::Url;

struct TestEnv {
    emulator: EmulatorHandle,
    settings: GoogleSettings,
    google: GoogleClient,
    oauth: OAuthClient,
    control: reqwest::Client,
}

/// A fast retry policy: the same shape as production, milliseconds instead of seconds.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(20),
        max_elapsed: Duration::from_secs(10),
    }
}

async fn spawn() -> TestEnv {
    let emulator = Emulator::start(EmulatorConfig {
        accounts: 2,
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts");
    let base = Url::parse(emulator.base_url()).unwrap();
    let settings = GoogleSettings {
        client_id: Some(emulator.client_id().to_owned()),
        client_secret: Some(SecretString::from(emulator.client_secret().to_owned())),
        redirect_uri: Some(base.join("/auth/callback").unwrap()),
        api_base_url: base.clone(),
        auth_url: Url::parse(&emulator.auth_url()).unwrap(),
        token_url: Url::parse(&emulator.token_url()).unwrap(),
        revoke_url: base.join("/revoke").unwrap(),
        request_timeout: Duration::from_secs(10),
    };
    let google = GoogleClient::new(&settings)
        .unwrap()
        .with_retry_policy(fast_retries());
    let oauth = google.oauth(&settings).unwrap();
    TestEnv {
        emulator,
        settings,
        google,
        oauth,
        control: reqwest::Client::new(),
    }
}

impl TestEnv {
    /// The client of seeded account `n` and its primary calendar's real id (an e-mail, so
    /// every path exercises the percent-encoding of `@`).
    fn account(&self, n: usize) -> (AccountClient, CalendarId) {
        let info = &self.emulator.accounts()[n];
        let tokens = TokenSource::new(
            self.oauth.clone(),
            SecretString::from(info.refresh_token.clone()),
        );
        (
            self.google.account(tokens),
            CalendarId::parse(&info.calendar_id).unwrap(),
        )
    }

    fn email(&self, n: usize) -> String {
        self.emulator.accounts()[n].email.clone()
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .control
            .request(
                method,
                format!("{}/emulator{path}", self.emulator.base_url()),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "control {path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    async fn put_settings(&self, body: Value) {
        self.control(reqwest::Method::PUT, "/settings", body).await;
    }

    async fn add_fault(&self, rule: Value) {
        self.control(reqwest::Method::POST, "/faults", rule).await;
    }

    /// How many requests of `method` the emulator answered with `status`.
    async fn count(&self, method: &str, status: u16) -> u64 {
        let counters: Value = self
            .control
            .get(format!("{}/emulator/counters", self.emulator.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        counters["byMethod"][method][status.to_string()]
            .as_u64()
            .unwrap_or(0)
    }
}

/// A deterministic base32hex id, as the block writer makes them.
fn block_id(n: u32) -> EventId {
    EventId::parse(&format!("blk{n:05}0123456789abcdefghijklmnop")).unwrap()
}

fn block(id: &EventId, hour: u32) -> Value {
    json!({
        "id": id.as_str(),
        "summary": "Calendar 01 Block",
        "start": {"dateTime": format!("2031-03-05T{hour:02}:00:00+01:00"), "timeZone": "Europe/Zurich"},
        "end": {"dateTime": format!("2031-03-05T{hour:02}:30:00+01:00"), "timeZone": "Europe/Zurich"},
        "visibility": "private",
        "transparency": "opaque",
        "reminders": {"useDefault": false},
        "extendedProperties": {"private": {"mcssInstallation": "test"}},
    })
}

fn ids(events: &[mcss::google::Event]) -> Vec<String> {
    let mut ids: Vec<String> = events
        .iter()
        .filter_map(|e| e.id.as_ref().map(|id| id.to_string()))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_full_list_follows_every_page_and_an_incremental_list_returns_only_the_change() {
    let env = spawn().await;
    env.put_settings(json!({"emptyPageEvery": 2})).await;
    let (account, calendar) = env.account(0);
    for n in 0..3 {
        account
            .events_insert(&calendar, &block(&block_id(n), 9 + n))
            .await
            .unwrap();
    }

    let full = account
        .list_all(
            &calendar,
            &EventsQuery {
                max_results: Some(1),
                ..EventsQuery::full()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&full.events), ids_of(&[0, 1, 2]));
    let token = full
        .next_sync_token
        .expect("the last page carries a sync token");
    assert!(
        env.count("events.list", 200).await >= 4,
        "several pages were fetched"
    );

    account
        .events_insert(&calendar, &block(&block_id(3), 14))
        .await
        .unwrap();
    let incremental = account
        .list_all(
            &calendar,
            &EventsQuery {
                max_results: Some(1),
                ..EventsQuery::incremental(token.clone())
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&incremental.events), ids_of(&[3]));
    let next = incremental.next_sync_token.unwrap();
    assert_ne!(next, token);

    let nothing = account
        .list_all(&calendar, &EventsQuery::incremental(next))
        .await
        .unwrap();
    assert!(nothing.events.is_empty());
}

fn ids_of(ns: &[u32]) -> Vec<String> {
    ns.iter().map(|n| block_id(*n).to_string()).collect()
}

#[tokio::test]
async fn an_inserted_block_reads_back_with_googles_omitted_defaults() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    let inserted = account
        .events_insert(&calendar, &block(&block_id(1), 9))
        .await
        .unwrap();
    let read = account.events_get(&calendar, &block_id(1)).await.unwrap();
    assert_eq!(read.etag, inserted.etag);
    assert_eq!(read.transparency(), mcss::google::Transparency::Opaque);
    assert_eq!(read.visibility(), mcss::google::Visibility::Private);
    assert_eq!(read.private_property("mcssInstallation"), Some("test"));
    assert_eq!(
        read.start.unwrap().time_zone.as_deref(),
        Some("Europe/Zurich")
    );
}

#[tokio::test]
async fn inserting_an_existing_id_is_a_conflict() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    account
        .events_insert(&calendar, &block(&block_id(1), 9))
        .await
        .unwrap();
    let again = account
        .events_insert(&calendar, &block(&block_id(1), 9))
        .await;
    assert_eq!(again.unwrap_err(), GoogleError::Conflict);
}

#[tokio::test]
async fn a_patch_changes_only_what_it_sends_and_a_stale_etag_is_refused() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    let inserted = account
        .events_insert(&calendar, &block(&block_id(1), 9))
        .await
        .unwrap();
    let old_etag = inserted.etag.clone().unwrap();

    let patched = account
        .events_patch(
            &calendar,
            &block_id(1),
            &json!({"summary": "Calendar 02 Block"}),
            Some(&old_etag),
        )
        .await
        .unwrap();
    assert_eq!(patched.summary.as_deref(), Some("Calendar 02 Block"));
    assert_eq!(patched.visibility, inserted.visibility);
    assert_ne!(patched.etag.as_deref(), Some(old_etag.as_str()));

    let stale = account
        .events_patch(
            &calendar,
            &block_id(1),
            &json!({"summary": "x"}),
            Some(&old_etag),
        )
        .await;
    assert_eq!(stale.unwrap_err(), GoogleError::PreconditionFailed);
}

#[tokio::test]
async fn an_update_replaces_the_event() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    account
        .events_insert(&calendar, &block(&block_id(1), 9))
        .await
        .unwrap();
    let mut body = block(&block_id(1), 11);
    body.as_object_mut().unwrap().remove("extendedProperties");
    let updated = account
        .events_update(&calendar, &block_id(1), &body, None)
        .await
        .unwrap();
    assert_eq!(updated.private_property("mcssInstallation"), None);
    // Google renders times in the calendar's zone: compare instants.
    assert_eq!(
        updated.start.unwrap().date_time.unwrap(),
        chrono::DateTime::parse_from_rfc3339("2031-03-05T11:00:00+01:00").unwrap()
    );
}

#[tokio::test]
async fn a_second_delete_is_gone_and_the_tombstone_reads_as_cancelled() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    account
        .events_insert(&calendar, &block(&block_id(1), 9))
        .await
        .unwrap();
    account
        .events_delete(&calendar, &block_id(1))
        .await
        .unwrap();
    assert_eq!(
        account
            .events_delete(&calendar, &block_id(1))
            .await
            .unwrap_err(),
        GoogleError::Gone
    );
    assert!(account
        .events_get(&calendar, &block_id(1))
        .await
        .unwrap()
        .is_cancelled());
    // The id stays reserved.
    assert_eq!(
        account
            .events_insert(&calendar, &block(&block_id(1), 9))
            .await
            .unwrap_err(),
        GoogleError::Conflict
    );
}

#[tokio::test]
async fn an_unknown_event_is_not_found() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    assert_eq!(
        account
            .events_get(&calendar, &block_id(9))
            .await
            .unwrap_err(),
        GoogleError::NotFound
    );
}

#[tokio::test]
async fn an_invalid_request_is_permanent_and_not_retried() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    let mut body = block(&block_id(1), 9);
    body["id"] = json!("NOT-BASE32HEX");
    let err = account.events_insert(&calendar, &body).await.unwrap_err();
    assert!(
        matches!(err, GoogleError::Permanent { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(env.count("events.insert", 400).await, 1);
}

#[tokio::test]
async fn an_invalidated_sync_token_asks_for_a_full_sync() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    let full = account
        .list_all(&calendar, &EventsQuery::full())
        .await
        .unwrap();
    let token = full.next_sync_token.unwrap();
    env.control(
        reqwest::Method::POST,
        "/sync-tokens/invalidate",
        json!({"calendarId": calendar.as_str()}),
    )
    .await;
    let err = account
        .list_all(&calendar, &EventsQuery::incremental(token))
        .await
        .unwrap_err();
    assert_eq!(err, GoogleError::SyncTokenExpired);
    assert!(account
        .list_all(&calendar, &EventsQuery::full())
        .await
        .is_ok());
}

#[tokio::test]
async fn a_storm_of_429s_is_retried_until_the_request_succeeds() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    env.add_fault(
        json!({"kind": "rateLimitExceeded", "status": 429, "count": 3,
        "methods": ["events.insert"]}),
    )
    .await;
    env.add_fault(json!({"kind": "backendError", "status": 503, "count": 1,
        "methods": ["events.list"]}))
        .await;
    env.add_fault(json!({"kind": "userRateLimitExceeded", "count": 1,
        "methods": ["events.list"]}))
        .await;

    account
        .events_insert(&calendar, &block(&block_id(1), 9))
        .await
        .unwrap();
    let listing = account
        .list_all(&calendar, &EventsQuery::full())
        .await
        .unwrap();

    assert_eq!(ids(&listing.events), ids_of(&[1]));
    assert_eq!(env.count("events.insert", 429).await, 3);
    assert_eq!(env.count("events.insert", 200).await, 1);
    assert_eq!(env.count("events.list", 503).await, 1);
    assert_eq!(env.count("events.list", 403).await, 1);
}

#[tokio::test]
async fn a_rate_limit_that_outlasts_the_retry_budget_is_returned_to_the_caller() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    let account = env
        .google
        .clone()
        .with_retry_policy(RetryPolicy {
            max_attempts: 3,
            ..fast_retries()
        })
        .account(account.tokens().clone());
    env.add_fault(json!({"kind": "rateLimitExceeded", "methods": ["events.list"]}))
        .await;
    let err = account
        .list_all(&calendar, &EventsQuery::full())
        .await
        .unwrap_err();
    assert!(matches!(err, GoogleError::RateLimited { .. }), "{err:?}");
    assert_eq!(env.count("events.list", 403).await, 3);
}

#[tokio::test]
async fn a_daily_quota_error_is_not_retried() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    env.add_fault(json!({"kind": "quotaExceeded", "methods": ["events.get"]}))
        .await;
    let err = account
        .events_get(&calendar, &block_id(1))
        .await
        .unwrap_err();
    assert_eq!(err, GoogleError::QuotaExceeded);
    assert_eq!(env.count("events.get", 403).await, 1);
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_transparently() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    account
        .list_all(&calendar, &EventsQuery::full())
        .await
        .unwrap();
    assert_eq!(env.count("oauth.token", 200).await, 1);

    // The emulator's clock moves past the token's expiry; our cache still thinks it valid.
    env.control(
        reqwest::Method::POST,
        "/clock/advance",
        json!({"seconds": 7200}),
    )
    .await;
    account
        .list_all(&calendar, &EventsQuery::full())
        .await
        .unwrap();

    assert_eq!(env.count("events.list", 401).await, 1);
    assert_eq!(env.count("oauth.token", 200).await, 2);
    assert_eq!(env.count("events.list", 200).await, 2);
}

#[tokio::test]
async fn concurrent_calls_share_one_token_refresh() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    let calls = (0..8).map(|_| account.calendars_get(&calendar));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(env.count("oauth.token", 200).await, 1);
}

#[tokio::test]
async fn a_revoked_refresh_token_is_an_invalid_grant_and_other_accounts_keep_working() {
    let env = spawn().await;
    let (revoked, revoked_calendar) = env.account(0);
    let (other, other_calendar) = env.account(1);
    env.control(
        reqwest::Method::POST,
        &format!("/accounts/{}/revoke", env.email(0)),
        json!({}),
    )
    .await;

    let err = revoked
        .list_all(&revoked_calendar, &EventsQuery::full())
        .await
        .unwrap_err();
    assert_eq!(err, GoogleError::InvalidGrant);
    assert!(other
        .list_all(&other_calendar, &EventsQuery::full())
        .await
        .is_ok());
}

#[tokio::test]
async fn the_primary_calendar_resolves_to_the_accounts_address_and_zone() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    let primary = account.calendars_get(&CalendarId::primary()).await.unwrap();
    assert_eq!(primary.id, calendar);
    assert!(primary.time_zone.is_some());
    let entry = account
        .calendar_list_get(&CalendarId::primary())
        .await
        .unwrap();
    assert_eq!(entry.id, calendar);
    assert!(entry.primary);
}

#[tokio::test]
async fn the_instances_of_a_series_are_listed() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    let mut series = block(&block_id(1), 9);
    series["recurrence"] = json!(["RRULE:FREQ=DAILY;COUNT=3"]);
    account.events_insert(&calendar, &series).await.unwrap();
    let page = account
        .events_instances(&calendar, &block_id(1), &InstancesQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert!(page
        .items
        .iter()
        .all(|i| i.recurring_event_id.as_ref() == Some(&block_id(1))));
}

#[tokio::test]
async fn a_watch_channel_is_created_and_stopped() {
    let env = spawn().await;
    env.put_settings(json!({"allowHttpWebhooks": true})).await;
    let (account, calendar) = env.account(0);
    let channel_id = ChannelId::random();
    let address = Url::parse(&format!("{}/webhooks/google", env.emulator.base_url())).unwrap();

    let channel = account
        .events_watch(
            &calendar,
            &channel_id,
            &address,
            Some("signed-token"),
            Some(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert_eq!(channel.id, channel_id);
    assert_eq!(channel.token.as_deref(), Some("signed-token"));
    let expires_at = channel.expires_at().expect("an expiration is returned");
    let lifetime = expires_at - chrono::Utc::now();
    assert!(
        lifetime <= chrono::Duration::seconds(3600 + 60),
        "{lifetime}"
    );
    assert!(
        lifetime >= chrono::Duration::seconds(3600 - 60),
        "{lifetime}"
    );

    account
        .channels_stop(&channel_id, &channel.resource_id)
        .await
        .unwrap();
    let channels = env
        .control(reqwest::Method::GET, "/channels", Value::Null)
        .await;
    let listed = channels["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == channel_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(listed["stopped"], true);
}

#[tokio::test]
async fn stopping_an_unknown_channel_is_not_found() {
    let env = spawn().await;
    let (account, _) = env.account(0);
    let err = account
        .channels_stop(&ChannelId::random(), "no-such-resource")
        .await
        .unwrap_err();
    assert_eq!(err, GoogleError::NotFound);
}

#[tokio::test]
async fn the_consent_flow_yields_a_refresh_token_the_granted_scopes_and_the_email() {
    let env = spawn().await;
    let email = env.email(1);
    let consent = env.oauth.consent_request(Some(&email)).unwrap();

    // The emulator approves at once for a known login_hint and redirects to the callback.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects.get(consent.url.clone()).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let query: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(query["state"], consent.state);
    assert!(location
        .as_str()
        .starts_with(env.settings.redirect_uri.as_ref().unwrap().as_str()));

    let granted = env
        .oauth
        .exchange_code(&query["code"], &consent.pkce_verifier)
        .await
        .unwrap();
    assert_eq!(granted.email.as_deref(), Some(email.as_str()));
    for scope in SCOPES {
        assert!(granted.has_scope(scope), "{scope} granted");
    }
    let refresh = granted
        .refresh_token
        .expect("offline access gives a refresh token");

    // The new refresh token works. (`calendars.get` needs a scope we do not ask for; the
    // calendar list entry resolves `primary` instead.)
    let account = env
        .google
        .account(TokenSource::new(env.oauth.clone(), refresh));
    let primary = account
        .calendar_list_get(&CalendarId::primary())
        .await
        .unwrap();
    assert_eq!(primary.id.as_str(), email);
    assert!(matches!(
        account.calendars_get(&CalendarId::primary()).await,
        Err(GoogleError::Permanent { status: 403, .. })
    ));

    // A code is single use.
    let again = env
        .oauth
        .exchange_code(&query["code"], &consent.pkce_verifier)
        .await
        .unwrap_err();
    assert_eq!(again, GoogleError::InvalidGrant);
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused() {
    let env = spawn().await;
    let consent = env.oauth.consent_request(Some(&env.email(0))).unwrap();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects.get(consent.url.clone()).send().await.unwrap();
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let wrong = SecretString::from("x".repeat(43));
    assert_ne!(wrong.expose_secret(), consent.pkce_verifier.expose_secret());
    assert_eq!(
        env.oauth.exchange_code(&code, &wrong).await.unwrap_err(),
        GoogleError::InvalidGrant
    );
}

#[tokio::test]
async fn an_answer_slower_than_the_request_timeout_is_a_transient_failure() {
    let env = spawn().await;
    let (account, calendar) = env.account(0);
    account.calendar_list_get(&calendar).await.unwrap();
    let impatient = GoogleClient::new(&GoogleSettings {
        request_timeout: Duration::from_millis(200),
        ..env.settings.clone()
    })
    .unwrap()
    .with_retry_policy(RetryPolicy::no_retry())
    .account(account.tokens().clone());
    env.add_fault(json!({"kind": "latency", "latencyMs": 2000, "count": 1,
        "methods": ["events.get"]}))
        .await;

    let err = impatient
        .events_get(&calendar, &block_id(1))
        .await
        .unwrap_err();

    assert!(matches!(err, GoogleError::Transient(_)), "{err:?}");
    assert!(err.is_retryable());
}
