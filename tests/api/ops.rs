//! `mcss::ops` against `gcal-emulator`: connecting accounts, purging blocks by marker and
//! reconciling calendars with the outbox.
//!
//! Every scenario runs on SQLite (a temp file) and on PostgreSQL when
//! `MCSS_TEST_POSTGRES_URL` names a server (each test creates and drops its own database;
//! without the variable the PostgreSQL half prints "skipped" and passes).

use std::collections::BTreeMap;
use std::sync::Arc;

use gcal_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use mcss::actors::LocalWriters;
use mcss::config::{EncryptionKey, Settings};
use mcss::domain::{AccountId, BlockId, CalendarId, EventId};
use mcss::google::{AccountClient, GoogleError};
use mcss::ops::{self, BlockWrites as _, ConnectRequest, OpsError};
use mcss::services::Services;
use mcss::store::entities::accounts;
use mcss::store::{
    Account, AccountStatus, BlockState, Claim, OutboxUpsert, RowRole, Store, SyncCommit,
    WriteOutcome, WriteReport,
};
use mcss::sync::{block_id, Marker};
use sea_orm::EntityTrait as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{json, Value};

use crate::support::{Backend, PostgresDb};

// ---------------------------------------------------------------------------------------
// Environment: an emulator, a migrated store and the services built on both
// ---------------------------------------------------------------------------------------

struct TestEnv {
    emulator: EmulatorHandle,
    services: Services,
    _dir: Option<tempfile::TempDir>,
    /// Dropped last: the database goes once the pools above are closed.
    _postgres: Option<PostgresDb>,
}

impl TestEnv {
    async fn start(backend: Backend, test: &str) -> Option<TestEnv> {
        let emulator = Emulator::start(EmulatorConfig {
            accounts: 3,
            ..EmulatorConfig::default()
        })
        .await
        .expect("the emulator starts");
        let (database_url, key, dir, postgres) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("mcss.db").display());
                (url, None, Some(dir), None)
            }
            Backend::Postgres => {
                let guard = PostgresDb::create(test, "mcss_test_").await?;
                (
                    guard.url.clone(),
                    Some(EncryptionKey::generate().to_hex()),
                    None,
                    Some(guard),
                )
            }
        };
        let base = emulator.base_url().to_owned();
        let mut vars = vec![
            ("DATABASE_URL".to_owned(), database_url),
            (
                "GOOGLE_CLIENT_ID".to_owned(),
                emulator.client_id().to_owned(),
            ),
            (
                "GOOGLE_CLIENT_SECRET".to_owned(),
                emulator.client_secret().to_owned(),
            ),
            ("GOOGLE_API_BASE_URL".to_owned(), base.clone()),
            ("GOOGLE_AUTH_URL".to_owned(), emulator.auth_url()),
            ("GOOGLE_TOKEN_URL".to_owned(), emulator.token_url()),
            ("GOOGLE_REVOKE_URL".to_owned(), format!("{base}/revoke")),
        ];
        if let Some(key) = key {
            vars.push(("ENCRYPTION_KEY".to_owned(), key));
        }
        let settings = Settings::from_vars(vars).expect("test settings are valid");
        let store = Store::connect(&settings).await.expect("connect");
        store.migrate().await.expect("migrate");
        let services = Services::build(Arc::new(settings), store)
            .await
            .expect("services build");
        Some(TestEnv {
            emulator,
            services,
            _dir: dir,
            _postgres: postgres,
        })
    }

    fn store(&self) -> &Store {
        &self.services.store
    }

    fn installation(&self) -> &str {
        &self.services.installation
    }

    /// Connects seeded emulator account `n` under `alias`.
    async fn connect(&self, n: usize, alias: &str) -> Account {
        let info = &self.emulator.accounts()[n];
        ops::connect_account(
            &self.services,
            ConnectRequest {
                group: None,
                alias: alias.to_owned(),
                refresh_token: SecretString::from(info.refresh_token.clone()),
                calendar_id: None,
                email: None,
            },
        )
        .await
        .expect("the account connects")
    }

    async fn client(&self, account: &Account) -> AccountClient {
        self.services
            .account_client(account.id)
            .await
            .expect("an account client")
    }

    /// Inserts `body` on the account's calendar through the plain API; returns the event id.
    async fn insert(&self, account: &Account, body: Value) -> EventId {
        let event = self
            .client(account)
            .await
            .events_insert(&account.calendar_id, &body)
            .await
            .expect("the event is inserted");
        event.id.expect("Google returns the id")
    }

    /// (status, summary) of an event, as `events.get` returns it (tombstones included).
    async fn status(&self, account: &Account, id: &str) -> Option<(String, Option<String>)> {
        status_with(&self.client(account).await, account, id).await
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.emulator.base_url()))
            .json(&body)
            .send()
            .await
            .expect("the control API answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }
}

/// [`TestEnv::status`] through a client kept from before the account was removed.
async fn status_with(
    client: &AccountClient,
    account: &Account,
    id: &str,
) -> Option<(String, Option<String>)> {
    match client
        .events_get(&account.calendar_id, &EventId::parse(id).unwrap())
        .await
    {
        Ok(event) => Some((event.status.unwrap().to_string(), event.summary)),
        Err(GoogleError::NotFound) => None,
        Err(e) => panic!("events.get failed: {e}"),
    }
}

on_both_backends!(
    setup = super::TestEnv::start;
    connecting_resolves_the_real_calendar_id_and_time_zone_and_encrypts_the_token,
    reconnecting_replaces_the_token_and_reactivates_a_needs_reauth_account,
    an_alias_of_another_calendar_or_an_empty_alias_is_refused,
    a_revoked_refresh_token_is_a_clear_error_and_stores_nothing,
    purge_deletes_only_this_installations_blocks_and_a_dry_run_deletes_nothing,
    removing_an_account_retracts_its_blocks_from_the_other_calendars,
    reconcile_repairs_orphans_duplicates_drift_missing_blocks_and_user_deletions,
    reconcile_skips_paused_accounts,
);

// ---------------------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------------------

async fn connecting_resolves_the_real_calendar_id_and_time_zone_and_encrypts_the_token(
    env: &TestEnv,
) {
    let created = env
        .control(
            reqwest::Method::POST,
            "/emulator/accounts",
            json!({"email": "zurich@example.test", "timeZone": "Europe/Zurich"}),
        )
        .await;
    let token = created["refresh_token"].as_str().unwrap().to_owned();

    let account = ops::connect_account(
        &env.services,
        ConnectRequest {
            group: None,
            alias: "Calendar 01".into(),
            refresh_token: SecretString::from(token.clone()),
            calendar_id: None,
            email: None,
        },
    )
    .await
    .expect("the account connects");

    assert_eq!(account.calendar_id.as_str(), "zurich@example.test");
    assert_eq!(account.time_zone.as_deref(), Some("Europe/Zurich"));
    assert_eq!(account.email.as_deref(), Some("zurich@example.test"));
    assert_eq!(account.status, AccountStatus::Active);
    let row = accounts::Entity::find_by_id(account.id.get())
        .one(env.store().connection())
        .await
        .unwrap()
        .unwrap();
    assert!(!row.refresh_token_enc.contains(&token), "stored in clear");
    assert_eq!(
        env.store()
            .refresh_token(account.id)
            .await
            .unwrap()
            .expose_secret(),
        token
    );
}

async fn reconnecting_replaces_the_token_and_reactivates_a_needs_reauth_account(env: &TestEnv) {
    let account = env.connect(0, "Calendar 01").await;
    env.store()
        .set_account_status(account.id, AccountStatus::NeedsReauth, Some("revoked"))
        .await
        .unwrap();
    let email = env.emulator.accounts()[0].email.clone();
    let fresh = env.emulator.add_account(Some(&email)).refresh_token;

    // Same calendar, another alias: still the same account.
    let again = ops::connect_account(
        &env.services,
        ConnectRequest {
            group: None,
            alias: "Another name".into(),
            refresh_token: SecretString::from(fresh.clone()),
            calendar_id: Some(CalendarId::primary()),
            email: None,
        },
    )
    .await
    .expect("the account reconnects");

    assert_eq!(again.id, account.id);
    assert_eq!(again.alias, "Calendar 01");
    assert_eq!(again.status, AccountStatus::Active);
    assert_eq!(again.status_reason, None);
    assert_eq!(
        env.store()
            .refresh_token(account.id)
            .await
            .unwrap()
            .expose_secret(),
        fresh
    );
    assert_eq!(env.store().list_accounts().await.unwrap().len(), 1);
}

async fn an_alias_of_another_calendar_or_an_empty_alias_is_refused(env: &TestEnv) {
    env.connect(0, "Calendar 01").await;
    let other = env.emulator.accounts()[1].refresh_token.clone();
    let request = |alias: &str| ConnectRequest {
        group: None,
        alias: alias.to_owned(),
        refresh_token: SecretString::from(other.clone()),
        calendar_id: None,
        email: None,
    };

    let taken = ops::connect_account(&env.services, request("Calendar 01")).await;
    let empty = ops::connect_account(&env.services, request("  ")).await;

    assert!(
        matches!(&taken, Err(OpsError::AliasTaken { existing, .. }) if existing == "user01@example.test"),
        "{taken:?}"
    );
    assert!(matches!(empty, Err(OpsError::InvalidAlias(_))), "{empty:?}");
    assert_eq!(env.store().list_accounts().await.unwrap().len(), 1);
}

async fn a_revoked_refresh_token_is_a_clear_error_and_stores_nothing(env: &TestEnv) {
    let info = env.emulator.accounts()[0].clone();
    env.control(
        reqwest::Method::POST,
        &format!("/emulator/accounts/{}/revoke", info.email),
        json!({}),
    )
    .await;

    let result = ops::connect_account(
        &env.services,
        ConnectRequest {
            group: None,
            alias: "Calendar 01".into(),
            refresh_token: SecretString::from(info.refresh_token),
            calendar_id: None,
            email: None,
        },
    )
    .await;

    let err = result.expect_err("a revoked token cannot connect");
    assert!(matches!(err, OpsError::InvalidGrant), "{err:?}");
    assert!(
        err.to_string()
            .contains("Google refused this refresh token (revoked or expired)"),
        "{err}"
    );
    assert!(env.store().list_accounts().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// Purge and removal
// ---------------------------------------------------------------------------------------

fn event_body(summary: &str, day: u32, private: BTreeMap<String, String>) -> Value {
    let mut body = json!({
        "summary": summary,
        "start": {"dateTime": format!("2030-01-{day:02}T10:00:00Z")},
        "end": {"dateTime": format!("2030-01-{day:02}T11:00:00Z")},
    });
    if !private.is_empty() {
        body["extendedProperties"] = json!({ "private": private });
    }
    body
}

fn marker(installation: &str, source: AccountId, event: &str) -> BTreeMap<String, String> {
    Marker::new(installation, source, &EventId::parse(event).unwrap()).to_private_properties()
}

async fn purge_deletes_only_this_installations_blocks_and_a_dry_run_deletes_nothing(env: &TestEnv) {
    let a = env.connect(0, "Calendar 01").await;
    let b = env.connect(1, "Calendar 02").await;
    let ours_1 = env
        .insert(
            &a,
            event_body(
                "Calendar 02 Block",
                1,
                marker(env.installation(), b.id, "src1"),
            ),
        )
        .await;
    let ours_2 = env
        .insert(
            &a,
            event_body(
                "Calendar 02 Block",
                2,
                marker(env.installation(), b.id, "src2"),
            ),
        )
        .await;
    let foreign = env
        .insert(
            &a,
            event_body(
                "Other Block",
                3,
                marker("another-installation", b.id, "src3"),
            ),
        )
        .await;
    let plain = env
        .insert(&a, event_body("Dentist", 4, BTreeMap::new()))
        .await;
    let block = block_id(
        env.installation(),
        &b.calendar_id,
        &EventId::parse("src1").unwrap(),
        &a.calendar_id,
    );
    queue_block(
        env,
        &b,
        &a,
        "src1",
        &block,
        &block_json(env, &b, "src1", 1, "x"),
    )
    .await;

    let writers = LocalWriters::new(env.services.clone());
    let dry = ops::purge_account(&env.services, &writers, &a, true)
        .await
        .unwrap();

    assert_eq!((dry.found, dry.deleted, dry.outbox_rows_dropped), (2, 0, 1));
    for id in [&ours_1, &ours_2] {
        assert_eq!(env.status(&a, id.as_str()).await.unwrap().0, "confirmed");
    }
    assert_eq!(env.store().blocks_for_target(a.id).await.unwrap().len(), 1);

    let done = ops::purge_account(&env.services, &writers, &a, false)
        .await
        .unwrap();

    assert_eq!(
        (done.found, done.deleted, done.outbox_rows_dropped),
        (2, 2, 1)
    );
    for id in [&ours_1, &ours_2] {
        assert_eq!(env.status(&a, id.as_str()).await.unwrap().0, "cancelled");
    }
    for id in [&foreign, &plain] {
        assert_eq!(env.status(&a, id.as_str()).await.unwrap().0, "confirmed");
    }
    assert!(env
        .store()
        .blocks_for_target(a.id)
        .await
        .unwrap()
        .is_empty());
    // Calendar 02 held no blocks; purge_all says so and touches nothing more.
    let all = ops::purge_all(&env.services, &writers, false)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|(_, r)| r.found == 0 && r.error.is_none()));
    writers.shutdown().await;
}

async fn removing_an_account_retracts_its_blocks_from_the_other_calendars(env: &TestEnv) {
    let a = env.connect(0, "Calendar 01").await;
    let b = env.connect(1, "Calendar 02").await;
    let c = env.connect(2, "Calendar 03").await;
    let from_a_on_b = env
        .insert(
            &b,
            event_body(
                "Calendar 01 Block",
                1,
                marker(env.installation(), a.id, "e1"),
            ),
        )
        .await;
    let from_a_on_c = env
        .insert(
            &c,
            event_body(
                "Calendar 01 Block",
                1,
                marker(env.installation(), a.id, "e1"),
            ),
        )
        .await;
    let from_c_on_b = env
        .insert(
            &b,
            event_body(
                "Calendar 03 Block",
                2,
                marker(env.installation(), c.id, "e2"),
            ),
        )
        .await;
    let from_b_on_a = env
        .insert(
            &a,
            event_body(
                "Calendar 02 Block",
                3,
                marker(env.installation(), b.id, "e3"),
            ),
        )
        .await;

    let client_a = env.client(&a).await;

    let writers = LocalWriters::new(env.services.clone());
    let report = ops::remove_account(&env.services, &writers, &a, true)
        .await
        .unwrap();
    writers.shutdown().await;

    assert_eq!(report.retracted.deleted(), 2);
    assert_eq!(report.purged.as_ref().map(|p| p.deleted), Some(1));
    for (account, id) in [(&b, &from_a_on_b), (&c, &from_a_on_c)] {
        assert_eq!(
            env.status(account, id.as_str()).await.unwrap().0,
            "cancelled"
        );
    }
    let own = status_with(&client_a, &a, from_b_on_a.as_str()).await;
    assert_eq!(own.unwrap().0, "cancelled");
    assert_eq!(
        env.status(&b, from_c_on_b.as_str()).await.unwrap().0,
        "confirmed"
    );
    let left: Vec<String> = env
        .store()
        .list_accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.alias)
        .collect();
    assert_eq!(left, ["Calendar 02", "Calendar 03"]);
}

// ---------------------------------------------------------------------------------------
// Reconciliation
// ---------------------------------------------------------------------------------------

/// The body the planner would want on `target` for `source`'s event `event`.
fn block_json(env: &TestEnv, source: &Account, event: &str, day: u32, details: &str) -> Value {
    json!({
        "status": "confirmed",
        "summary": format!("{} Block", source.alias),
        "description": details,
        "start": {"dateTime": format!("2030-01-{day:02}T10:00:00Z")},
        "end": {"dateTime": format!("2030-01-{day:02}T11:00:00Z")},
        "visibility": "private",
        "transparency": "opaque",
        "reminders": {"useDefault": false},
        "extendedProperties": {"private": marker(env.installation(), source.id, event)},
    })
}

fn hash(body: &Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(body.to_string()))
}

/// Commits an outbox row (pending) for `source`'s `event` on `target`.
async fn queue_block(
    env: &TestEnv,
    source: &Account,
    target: &Account,
    event: &str,
    block: &BlockId,
    body: &Value,
) -> mcss::store::OutboxRow {
    env.store()
        .commit_sync(
            source.id,
            SyncCommit {
                desired_blocks: vec![OutboxUpsert {
                    target_account_id: target.id,
                    source_account_id: source.id,
                    source_event_id: EventId::parse(event).unwrap(),
                    block_id: block.clone(),
                    role: RowRole::Single,
                    series_block_id: None,
                    body: Some(body.clone()),
                    desired_hash: Some(hash(body)),
                }],
                ..SyncCommit::default()
            },
        )
        .await
        .unwrap();
    env.store()
        .block_on_target(target.id, block)
        .await
        .unwrap()
        .unwrap()
}

/// Queues a block, writes it to the target like a writer would and marks it applied.
/// With `write: false` the row says applied but nothing was written.
async fn applied_block(
    env: &TestEnv,
    source: &Account,
    target: &Account,
    event: &str,
    day: u32,
    write: bool,
) -> mcss::store::OutboxRow {
    let id = block_id(
        env.installation(),
        &source.calendar_id,
        &EventId::parse(event).unwrap(),
        &target.calendar_id,
    );
    let body = block_json(env, source, event, day, "Standup");
    let row = queue_block(env, source, target, event, &id, &body).await;
    let mut etag = None;
    if write {
        let mut with_id = body.clone();
        with_id["id"] = json!(id.as_str());
        let written = env.insert(target, with_id).await;
        assert_eq!(written.as_str(), id.as_str());
        etag = Some("\"written\"");
    }
    // Recorded as the writer records it: holding the claim, then reporting.
    let claim = Claim {
        owner: "test-writer".to_owned(),
        until: mcss::store::now() + chrono::TimeDelta::minutes(5),
    };
    let claimed = env.store().claim_due(target.id, &claim, 100).await.unwrap();
    let row = claimed
        .into_iter()
        .find(|r| r.id == row.id)
        .expect("the row is due");
    let reports = [WriteReport {
        row: row.clone(),
        outcome: WriteOutcome::Applied {
            hash: Some(hash(&body)),
            etag: etag.map(str::to_owned),
            updated: None,
            recreated: false,
        },
    }];
    assert_eq!(
        env.store()
            .record_writes(&claim.owner, &reports, Vec::new())
            .await
            .unwrap(),
        1
    );
    env.store().release_claims(&claim.owner).await.unwrap();
    row
}

async fn state_of(env: &TestEnv, row: &mcss::store::OutboxRow) -> BlockState {
    env.store().block(row.id).await.unwrap().unwrap().state
}

async fn reconcile_repairs_orphans_duplicates_drift_missing_blocks_and_user_deletions(
    env: &TestEnv,
) {
    let a = env.connect(0, "Calendar 01").await;
    let b = env.connect(1, "Calendar 02").await;
    let client_b = env.client(&b).await;
    let intact = applied_block(env, &a, &b, "e1", 1, true).await;
    let drifted = applied_block(env, &a, &b, "e2", 2, true).await;
    let deleted = applied_block(env, &a, &b, "e3", 3, true).await;
    let missing = applied_block(env, &a, &b, "e4", 4, false).await;
    // The user retitles one block and deletes another.
    client_b
        .events_patch(
            &b.calendar_id,
            &EventId::parse(drifted.block_id.as_str()).unwrap(),
            &json!({"summary": "Lunch"}),
            None,
        )
        .await
        .unwrap();
    client_b
        .events_delete(
            &b.calendar_id,
            &EventId::parse(deleted.block_id.as_str()).unwrap(),
        )
        .await
        .unwrap();
    // A block nobody wants any more, and a second copy of e1's block under another id.
    let orphan = env
        .insert(&b, block_json(env, &a, "e5", 5, "Gone meeting"))
        .await;
    let duplicate = env
        .insert(&b, block_json(env, &a, "e1", 1, "Standup"))
        .await;
    // Unmarked events are never touched.
    let plain = env
        .insert(&b, event_body("Dentist", 6, BTreeMap::new()))
        .await;

    let writers = LocalWriters::new(env.services.clone());
    let dry = ops::reconcile(&env.services, &writers, true).await.unwrap();

    assert_eq!(
        (
            dry.orphans_deleted,
            dry.duplicates_deleted,
            dry.requeued,
            dry.excluded
        ),
        (1, 1, 2, 1),
        "{dry}"
    );
    assert_eq!(
        env.status(&b, orphan.as_str()).await.unwrap().0,
        "confirmed"
    );
    assert_eq!(state_of(env, &drifted).await, BlockState::Applied);
    assert_eq!(state_of(env, &deleted).await, BlockState::Applied);

    let report = ops::reconcile(&env.services, &writers, false)
        .await
        .unwrap();
    // Reconciliation only queues; the writers apply (a wait the command line does too).
    assert!(writers
        .drained(&[a.id, b.id], ops::DRAIN_DEADLINE)
        .await
        .is_empty());

    assert_eq!(
        (
            report.orphans_deleted,
            report.duplicates_deleted,
            report.requeued,
            report.excluded
        ),
        (1, 1, 2, 1),
        "{report}"
    );
    assert_eq!(
        env.status(&b, orphan.as_str()).await.unwrap().0,
        "cancelled"
    );
    assert_eq!(
        env.status(&b, duplicate.as_str()).await.unwrap().0,
        "cancelled"
    );
    assert_eq!(
        env.status(&b, intact.block_id.as_str()).await.unwrap().0,
        "confirmed"
    );
    assert_eq!(env.status(&b, plain.as_str()).await.unwrap().0, "confirmed");
    assert_eq!(state_of(env, &intact).await, BlockState::Applied);
    // Drift is patched back and the missing block written again, by the writer.
    assert_eq!(state_of(env, &drifted).await, BlockState::Applied);
    assert_eq!(
        env.status(&b, drifted.block_id.as_str())
            .await
            .unwrap()
            .1
            .as_deref(),
        Some("Calendar 01 Block")
    );
    assert_eq!(state_of(env, &missing).await, BlockState::Applied);
    assert_eq!(
        env.status(&b, missing.block_id.as_str()).await.unwrap().0,
        "confirmed"
    );
    assert_eq!(state_of(env, &deleted).await, BlockState::Excluded);
    let per_account: Vec<(&str, u64)> = report
        .accounts
        .iter()
        .map(|x| (x.alias.as_str(), x.blocks_seen))
        .collect();
    assert_eq!(per_account, [("Calendar 01", 0), ("Calendar 02", 4)]);

    // Everything is repaired: a second run finds nothing to do.
    let again = ops::reconcile(&env.services, &writers, false)
        .await
        .unwrap();
    assert_eq!(
        (
            again.orphans_deleted,
            again.duplicates_deleted,
            again.requeued,
            again.excluded
        ),
        (0, 0, 0, 0),
        "{again}"
    );
    writers.shutdown().await;
}

async fn reconcile_skips_paused_accounts(env: &TestEnv) {
    let a = env.connect(0, "Calendar 01").await;
    let b = env.connect(1, "Calendar 02").await;
    let orphan = env
        .insert(&b, block_json(env, &a, "e9", 9, "Gone meeting"))
        .await;
    env.store()
        .set_account_status(b.id, AccountStatus::Paused, None)
        .await
        .unwrap();

    let writers = LocalWriters::new(env.services.clone());
    let report = ops::reconcile(&env.services, &writers, false)
        .await
        .unwrap();
    writers.shutdown().await;

    assert_eq!(report.orphans_deleted, 0);
    assert_eq!(
        report.accounts[1].skipped.as_deref(),
        Some("status paused"),
        "{report}"
    );
    assert!(report.to_string().contains("skipped: status paused"));
    assert_eq!(
        env.status(&b, orphan.as_str()).await.unwrap().0,
        "confirmed"
    );
}
