//! Black-box tests of `mcss::store`, each run on SQLite (a temp file) and on PostgreSQL.
//!
//! PostgreSQL variants need `MCSS_TEST_POSTGRES_URL` (a server URL such as
//! `postgres://postgres@127.0.0.1:55432/postgres`); each test creates its own database
//! `mcss_test_<uuid>` there and drops it afterwards. Without the variable they print
//! "skipped" and pass, so a laptop without PostgreSQL can still run the SQLite half.

use chrono::{Duration, Utc};
use mcss::config::{EncryptionKey, Settings};
use mcss::domain::{AccountId, BlockId, CalendarId, ChannelId, EventId};
use mcss::store::entities::{accounts, credentials, desired_blocks};
use mcss::store::{
    log_kind, now, AccountStatus, BlockState, Claim, LogQuery, LogResult, NewAccount, NewChannel,
    NewLogEntry, OutboxRow, OutboxUpsert, PendingOutlook, RowRole, Store, StoreError,
    StoredEventUpsert, SyncCommit, WriteOutcome, WriteReport,
};
use sea_orm::{ColumnTrait as _, ConnectionTrait as _, EntityTrait as _, QueryFilter as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use crate::support::{Backend, PostgresDb};

// ---------------------------------------------------------------------------------------
// Test databases
// ---------------------------------------------------------------------------------------

/// A migrated store on its own database, removed when dropped.
struct StoreDb {
    store: Store,
    settings: Settings,
    _dir: Option<tempfile::TempDir>,
    /// Dropped last: the database goes once the pools above are closed.
    _postgres: Option<PostgresDb>,
}

fn settings(vars: &[(&str, &str)]) -> Settings {
    Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .expect("test settings are valid")
}

impl StoreDb {
    async fn start(backend: Backend, test: &str) -> Option<StoreDb> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite().await),
            Backend::Postgres => Self::postgres(test).await,
        }
    }

    /// A SQLite file in a temp dir, without ENCRYPTION_KEY (so the key file is exercised).
    async fn sqlite() -> StoreDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("mcss.db").display());
        let settings = settings(&[("DATABASE_URL", &url)]);
        let store = Store::connect(&settings).await.expect("connect to SQLite");
        store.migrate().await.expect("migrate SQLite");
        StoreDb {
            store,
            settings,
            _dir: Some(dir),
            _postgres: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a note) when no server is configured.
    async fn postgres(test: &str) -> Option<StoreDb> {
        let guard = PostgresDb::create(test, "mcss_test_").await?;
        let key = EncryptionKey::generate().to_hex();
        let settings = settings(&[("DATABASE_URL", &guard.url), ("ENCRYPTION_KEY", &key)]);
        let store = Store::connect(&settings)
            .await
            .expect("connect to PostgreSQL");
        store.migrate().await.expect("migrate PostgreSQL");
        Some(StoreDb {
            store,
            settings,
            _dir: None,
            _postgres: Some(guard),
        })
    }
}

on_both_backends!(
    setup = super::StoreDb::start;
    migrations_run_twice_without_harm,
    a_changed_encryption_key_is_refused_at_migrate,
    an_account_round_trips_with_its_token_encrypted_at_rest,
    account_status_and_token_changes_are_stored,
    a_duplicate_alias_is_a_conflict,
    deleting_an_account_removes_what_belongs_to_it,
    a_commit_writes_events_blocks_and_the_token_together,
    a_failed_commit_keeps_the_old_sync_token_and_writes_nothing,
    an_unchanged_desired_hash_leaves_the_row_alone,
    outbox_rows_move_through_pending_applied_failed_and_back,
    an_excluded_block_stays_excluded_until_its_source_is_gone,
    applying_stale_content_keeps_the_row_pending,
    a_deleted_block_row_goes_away_unless_its_source_came_back,
    due_blocks_come_oldest_first_and_respect_next_attempt_at,
    queue_depths_count_pending_rows_per_target,
    retracting_a_source_queues_deletes_for_all_its_blocks,
    the_sync_log_pages_newest_first_and_filters,
    the_installation_id_is_generated_once_and_config_wins,
    channels_are_saved_found_stopped_and_listed_by_expiry,
    events_are_found_by_ical_uid_across_accounts,
    concurrent_writers_do_not_fail,
    two_calendars_of_one_google_account_share_one_stored_token,
    a_token_stored_before_credentials_is_moved_to_one_on_start,
    the_migration_from_the_first_schema_keeps_every_block,
    duplicate_credentials_of_one_address_are_merged_by_the_migration,
    calendars_added_at_once_to_one_new_group_all_join_it,
    an_echo_token_is_read_at_once_written_later_and_never_over_a_newer_one,
    a_change_mirrored_onto_four_calendars_costs_a_statement_per_kind_not_per_row,
    one_failing_commit_among_many_at_once_costs_a_few_transactions_not_one_each,
    a_commit_finds_its_rows_through_the_target_and_block_index,
);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

async fn add_account(store: &Store, alias: &str) -> AccountId {
    store
        .create_account(NewAccount {
            group: mcss::store::DEFAULT_GROUP.to_owned(),
            rules: mcss::store::CalendarRules::default(),
            alias: alias.to_owned(),
            email: Some(format!("{}@example.com", alias.replace(' ', "."))),
            calendar_id: CalendarId::parse(&format!("{}@example.com", alias.replace(' ', ".")))
                .expect("valid calendar id"),
            refresh_token: SecretString::from(format!("1//refresh-token-of-{alias}")),
            time_zone: Some("Europe/Berlin".to_owned()),
        })
        .await
        .expect("create account")
        .id
}

fn event_id(raw: &str) -> EventId {
    EventId::parse(raw).expect("valid event id")
}

fn block_id(n: u32) -> BlockId {
    BlockId::parse(&format!("b{n:025}")).expect("valid block id")
}

fn source_event(id: &str, ical_uid: Option<&str>) -> StoredEventUpsert {
    StoredEventUpsert {
        event_id: event_id(id),
        ical_uid: ical_uid.map(str::to_owned),
        recurring_event_id: None,
        status: "confirmed".to_owned(),
        data: json!({ "start": "2030-01-01T09:00:00Z", "end": "2030-01-01T10:00:00Z" }),
        google_updated: Some(now()),
    }
}

fn desired(
    source: AccountId,
    target: AccountId,
    source_event: &str,
    block: u32,
    version: Option<&str>,
) -> OutboxUpsert {
    OutboxUpsert {
        target_account_id: target,
        source_account_id: source,
        source_event_id: event_id(source_event),
        block_id: block_id(block),
        role: RowRole::Single,
        series_block_id: None,
        body: version.map(|v| json!({ "summary": "Calendar 01 Block", "v": v })),
        desired_hash: version.map(|v| format!("hash-{v}")),
    }
}

/// The writer of these tests: it takes rows with [`hold`] and reports with [`report`].
const WRITER: &str = "test-writer";

/// Makes [`WRITER`] hold the row's claim (a real writer gets it from `claim_due`).
async fn hold(store: &Store, row: &OutboxRow) -> OutboxRow {
    desired_blocks::Entity::update_many()
        .col_expr(desired_blocks::Column::ClaimedBy, WRITER.into())
        .col_expr(
            desired_blocks::Column::ClaimExpiresAt,
            Some(now() + Duration::minutes(5)).into(),
        )
        .filter(desired_blocks::Column::Id.eq(row.id.get()))
        .exec(store.connection())
        .await
        .expect("hold the claim");
    store.block(row.id).await.expect("read").expect("row")
}

/// Reports one write of `row` by [`WRITER`]; returns whether the report was taken.
async fn report(store: &Store, row: &OutboxRow, outcome: WriteOutcome) -> bool {
    let row = hold(store, row).await;
    let reports = [WriteReport { row, outcome }];
    store
        .record_writes(WRITER, &reports, Vec::new())
        .await
        .expect("record")
        == 1
}

fn applied(hash: &str, etag: Option<&str>) -> WriteOutcome {
    WriteOutcome::Applied {
        hash: Some(hash.to_owned()),
        etag: etag.map(str::to_owned),
        updated: None,
        recreated: false,
    }
}

fn retry_at(at: chrono::DateTime<Utc>, error: &str) -> WriteOutcome {
    WriteOutcome::Retry {
        at,
        error: error.to_owned(),
    }
}

fn failed(error: &str) -> WriteOutcome {
    WriteOutcome::Failed {
        error: error.to_owned(),
    }
}

/// Due rows of `target` as a writer would claim them.
async fn due(
    store: &Store,
    target: AccountId,
    at: chrono::DateTime<Utc>,
    limit: u64,
) -> Vec<OutboxRow> {
    let claim = Claim {
        owner: format!("due-{}", uuid::Uuid::new_v4().simple()),
        until: at + Duration::seconds(1),
    };
    let rows = store.claim_due(target, &claim, limit).await.expect("claim");
    // Hand the claims back so the test's writer can take the rows.
    store.release_claims(&claim.owner).await.expect("release");
    rows.into_iter()
        .filter(|r| r.next_attempt_at <= Some(at))
        .collect()
}

/// Commits just these desired blocks for `source`.
async fn commit_blocks(store: &Store, source: AccountId, blocks: Vec<OutboxUpsert>) {
    store
        .commit_sync(
            source,
            SyncCommit {
                desired_blocks: blocks,
                ..Default::default()
            },
        )
        .await
        .expect("commit");
}

async fn only_block(store: &Store, target: AccountId) -> mcss::store::OutboxRow {
    let mut blocks = store.blocks_for_target(target).await.expect("blocks");
    assert_eq!(
        blocks.len(),
        1,
        "expected exactly one block row: {blocks:?}"
    );
    blocks.remove(0)
}

/// Two accounts: A (source) and B (target).
async fn two_accounts(store: &Store) -> (AccountId, AccountId) {
    (
        add_account(store, "Calendar 01").await,
        add_account(store, "Calendar 02").await,
    )
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

async fn a_changed_encryption_key_is_refused_at_migrate(db: &StoreDb) {
    let mut other = db.settings.clone();
    other.encryption_key = Some(EncryptionKey::generate());
    let store = Store::connect(&other).await.expect("connect");

    let result = store.migrate().await;

    assert!(
        matches!(
            result,
            Err(StoreError::Crypto(mcss::store::CryptoError::WrongKey))
        ),
        "{result:?}"
    );
    db.store
        .migrate()
        .await
        .expect("the right key still passes");
}

async fn migrations_run_twice_without_harm(db: &StoreDb) {
    let a = add_account(&db.store, "Calendar 01").await;

    db.store
        .migrate()
        .await
        .expect("second migrate on the same pool");
    let again = Store::connect(&db.settings).await.expect("reconnect");
    again
        .migrate()
        .await
        .expect("migrate from a new connection");

    again.ping().await.expect("ping");
    assert_eq!(
        again.account(a).await.expect("account survives").alias,
        "Calendar 01"
    );
    // The same key (file or ENCRYPTION_KEY) is found again, so old tokens still open.
    assert_eq!(
        again.refresh_token(a).await.expect("token").expose_secret(),
        "1//refresh-token-of-Calendar 01"
    );
}

async fn an_account_round_trips_with_its_token_encrypted_at_rest(db: &StoreDb) {
    let store = &db.store;
    let id = add_account(store, "Calendar 01").await;

    let account = store.account(id).await.expect("get");
    assert_eq!(account.alias, "Calendar 01");
    assert_eq!(account.status, AccountStatus::Active);
    assert_eq!(account.calendar_id.as_str(), "Calendar.01@example.com");
    assert_eq!(account.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(
        store
            .account_by_alias("Calendar 01")
            .await
            .expect("by alias"),
        Some(account.clone())
    );
    assert_eq!(
        store
            .account_by_alias("Calendar 99")
            .await
            .expect("by alias"),
        None
    );
    assert_eq!(
        store.list_accounts().await.expect("list"),
        vec![account.clone()]
    );
    assert_eq!(
        store
            .accounts_by_calendar(&account.calendar_id)
            .await
            .expect("by calendar"),
        vec![account]
    );

    let raw = accounts::Entity::find_by_id(id.get())
        .one(store.connection())
        .await
        .expect("raw row")
        .expect("row exists");
    // The token lives with its Google account's credential, sealed.
    assert!(raw.refresh_token_enc.is_empty());
    let credential = credentials::Entity::find_by_id(raw.credential_id.expect("a credential"))
        .one(store.connection())
        .await
        .expect("raw credential")
        .expect("credential exists");
    assert!(!credential.refresh_token_enc.contains("refresh-token"));
    assert!(!credential.refresh_token_enc.is_empty());
    assert_eq!(
        store
            .refresh_token(id)
            .await
            .expect("decrypt")
            .expose_secret(),
        "1//refresh-token-of-Calendar 01"
    );

    let state = store
        .sync_state(id)
        .await
        .expect("sync state made with the account");
    assert_eq!(state.sync_token, None);
    assert!(!state.mass_delete_hold);
}

async fn account_status_and_token_changes_are_stored(db: &StoreDb) {
    let store = &db.store;
    let id = add_account(store, "Calendar 01").await;

    store
        .set_account_status(
            id,
            AccountStatus::NeedsReauth,
            Some("Google refused the refresh token"),
        )
        .await
        .expect("set status");
    let account = store.account(id).await.expect("get");
    assert_eq!(account.status, AccountStatus::NeedsReauth);
    assert_eq!(
        account.status_reason.as_deref(),
        Some("Google refused the refresh token")
    );

    store
        .set_refresh_token(id, &SecretString::from("1//new-token".to_owned()))
        .await
        .expect("replace token");
    let account = store.account(id).await.expect("get");
    assert_eq!(account.status, AccountStatus::Active);
    assert_eq!(account.status_reason, None);
    assert_eq!(
        store
            .refresh_token(id)
            .await
            .expect("token")
            .expose_secret(),
        "1//new-token"
    );

    assert!(matches!(
        store
            .set_account_status(AccountId::new(999), AccountStatus::Paused, None)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn a_duplicate_alias_is_a_conflict(db: &StoreDb) {
    add_account(&db.store, "Calendar 01").await;
    let again = db
        .store
        .create_account(NewAccount {
            group: mcss::store::DEFAULT_GROUP.to_owned(),
            rules: mcss::store::CalendarRules::default(),
            alias: "Calendar 01".to_owned(),
            email: None,
            calendar_id: CalendarId::primary(),
            refresh_token: SecretString::from("x".to_owned()),
            time_zone: None,
        })
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(db.store.list_accounts().await.expect("list").len(), 1);
}

async fn deleting_an_account_removes_what_belongs_to_it(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, Some("v1"))]).await;

    store.delete_account(b).await.expect("delete");

    assert!(matches!(
        store.account(b).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.sync_state(b).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.blocks_for_target(b).await.expect("blocks").is_empty());
    assert!(matches!(
        store.delete_account(b).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_accounts().await.expect("list").len(), 1);
}

async fn a_commit_writes_events_blocks_and_the_token_together(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    let c = add_account(store, "Calendar 03").await;

    let outcome = store
        .commit_sync(
            a,
            SyncCommit {
                upserted_source_events: vec![
                    source_event("ev1", Some("uid1")),
                    source_event("ev2", None),
                ],
                deleted_source_event_ids: vec![],
                desired_blocks: vec![
                    desired(a, b, "ev1", 1, Some("v1")),
                    desired(a, c, "ev1", 2, Some("v1")),
                    // "Must not exist" for a block never written: nothing to do.
                    desired(a, b, "ev2", 3, None),
                ],
                new_sync_token: Some("token-1".to_owned()),
                full: true,
                ..Default::default()
            },
        )
        .await
        .expect("commit");

    assert_eq!(outcome.woken_targets, vec![b, c]);
    assert_eq!(outcome.blocks_queued, 2);
    let state = store.sync_state(a).await.expect("state");
    assert_eq!(state.sync_token.as_deref(), Some("token-1"));
    assert!(state.last_full_sync_at.is_some());
    assert_eq!(state.last_incremental_sync_at, None);
    // Read many at once (a start), the states are the same.
    let states = store.sync_states(&[a, b, c]).await.expect("states");
    assert_eq!(states.len(), 3);
    assert_eq!(states[&a].sync_token.as_deref(), Some("token-1"));
    assert_eq!(states[&a].last_full_sync_at, state.last_full_sync_at);
    assert_eq!(states[&b].sync_token, None);
    assert_eq!(store.source_events(a).await.expect("events").len(), 2);
    let block = only_block(store, b).await;
    assert_eq!(block.state, BlockState::Pending);
    assert_eq!(
        block.body,
        Some(json!({ "summary": "Calendar 01 Block", "v": "v1" }))
    );

    // An incremental commit: ev2 deleted, ev1 changed, no new token keeps the old one.
    store
        .commit_sync(
            a,
            SyncCommit {
                upserted_source_events: vec![StoredEventUpsert {
                    status: "tentative".to_owned(),
                    ..source_event("ev1", Some("uid1"))
                }],
                deleted_source_event_ids: vec![event_id("ev2")],
                new_sync_token: None,
                full: false,
                ..Default::default()
            },
        )
        .await
        .expect("second commit");
    let state = store.sync_state(a).await.expect("state");
    assert_eq!(state.sync_token.as_deref(), Some("token-1"));
    assert!(state.last_incremental_sync_at.is_some());
    let events = store.source_events(a).await.expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].status, "tentative");
    assert_eq!(
        store
            .source_event(a, &event_id("ev1"))
            .await
            .expect("get")
            .map(|e| e.ical_uid),
        Some(Some("uid1".to_owned()))
    );
    assert_eq!(
        store.source_event(a, &event_id("ev2")).await.expect("get"),
        None
    );
}

async fn a_failed_commit_keeps_the_old_sync_token_and_writes_nothing(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    store
        .commit_sync(
            a,
            SyncCommit {
                new_sync_token: Some("old-token".to_owned()),
                full: true,
                ..Default::default()
            },
        )
        .await
        .expect("first commit");

    let failed = store
        .commit_sync(
            a,
            SyncCommit {
                upserted_source_events: vec![source_event("ev1", None)],
                desired_blocks: vec![
                    desired(a, b, "ev1", 1, Some("v1")),
                    // No such target account: the foreign key fails the whole commit.
                    desired(a, AccountId::new(4242), "ev1", 2, Some("v1")),
                ],
                new_sync_token: Some("new-token".to_owned()),
                ..Default::default()
            },
        )
        .await;

    assert!(matches!(failed, Err(StoreError::Database(_))), "{failed:?}");
    assert_eq!(
        store
            .sync_state(a)
            .await
            .expect("state")
            .sync_token
            .as_deref(),
        Some("old-token")
    );
    assert!(store.source_events(a).await.expect("events").is_empty());
    let rows = desired_blocks::Entity::find()
        .all(store.connection())
        .await
        .expect("raw rows");
    assert!(rows.is_empty(), "{rows:?}");
    // The pool is healthy after the rollback.
    store.ping().await.expect("ping");
}

async fn an_unchanged_desired_hash_leaves_the_row_alone(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, Some("v1"))]).await;
    let row = only_block(store, b).await;
    assert!(
        report(
            store,
            &row,
            retry_at(now() + Duration::hours(1), "HTTP 503")
        )
        .await
    );
    let before = only_block(store, b).await;

    let outcome = store
        .commit_sync(
            a,
            SyncCommit {
                desired_blocks: vec![desired(a, b, "ev1", 1, Some("v1"))],
                ..Default::default()
            },
        )
        .await
        .expect("commit");

    assert_eq!(outcome.blocks_queued, 0);
    assert_eq!(outcome.blocks_unchanged, 1);
    assert!(outcome.woken_targets.is_empty());
    assert_eq!(only_block(store, b).await, before);
}

async fn outbox_rows_move_through_pending_applied_failed_and_back(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, Some("v1"))]).await;
    let row = only_block(store, b).await;
    assert_eq!(row.state, BlockState::Pending);
    assert_eq!(row.attempts, 0);
    assert!(row.next_attempt_at.is_some());

    assert!(report(store, &row, applied("hash-v1", Some("\"etag-1\""))).await);
    let row = only_block(store, b).await;
    assert_eq!(row.state, BlockState::Applied);
    assert_eq!(row.applied_hash.as_deref(), Some("hash-v1"));
    assert_eq!(row.google_etag.as_deref(), Some("\"etag-1\""));
    assert_eq!(row.next_attempt_at, None);
    assert_eq!(store.pending_count(Some(b)).await.expect("count"), 0);

    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, Some("v2"))]).await;
    let row = only_block(store, b).await;
    assert_eq!(row.state, BlockState::Pending);
    assert_eq!(row.desired_hash.as_deref(), Some("hash-v2"));
    assert_eq!(row.applied_hash.as_deref(), Some("hash-v1"));

    assert!(report(store, &row, failed("HTTP 400 invalid")).await);
    let row = only_block(store, b).await;
    assert_eq!(row.state, BlockState::Failed);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error.as_deref(), Some("HTTP 400 invalid"));
    assert!(due(store, b, now(), 10).await.is_empty());
    assert_eq!(
        store
            .block_count(Some(b), BlockState::Failed)
            .await
            .expect("count"),
        1
    );

    // New content gives a failed row a fresh start.
    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, Some("v3"))]).await;
    let row = only_block(store, b).await;
    assert_eq!(row.state, BlockState::Pending);
    assert_eq!(row.attempts, 0);
    assert_eq!(row.last_error, None);

    // Going back to what was last recorded as applied is written again: a write of v3 may
    // have reached Google unrecorded (a crash between the answer and the record), and
    // trusting the record would leave v3 there for good (found by the chaos soak).
    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, Some("v1"))]).await;
    assert_eq!(only_block(store, b).await.state, BlockState::Pending);

    assert!(report(store, &row, failed("HTTP 400")).await);
    assert_eq!(store.requeue_failed(Some(b)).await.expect("requeue"), 1);
    assert_eq!(only_block(store, b).await.state, BlockState::Pending);
    assert_eq!(
        store.block(row.id).await.expect("by id").map(|r| r.id),
        Some(row.id)
    );
    assert_eq!(
        store
            .block_on_target(b, &block_id(1))
            .await
            .expect("by block id")
            .map(|r| r.id),
        Some(row.id)
    );
}

async fn an_excluded_block_stays_excluded_until_its_source_is_gone(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, Some("v1"))]).await;
    let row = only_block(store, b).await;
    assert!(report(store, &row, applied("hash-v1", None)).await);
    store.mark_excluded(row.id).await.expect("excluded");

    let outcome = store
        .commit_sync(
            a,
            SyncCommit {
                desired_blocks: vec![desired(a, b, "ev1", 1, Some("v2"))],
                ..Default::default()
            },
        )
        .await
        .expect("commit");

    assert_eq!(outcome.blocks_queued, 0);
    assert!(outcome.woken_targets.is_empty());
    let row = only_block(store, b).await;
    assert_eq!(row.state, BlockState::Excluded);
    assert!(due(store, b, now(), 10).await.is_empty());

    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, None)]).await;
    assert!(store.blocks_for_target(b).await.expect("blocks").is_empty());
}

async fn applying_stale_content_keeps_the_row_pending(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, Some("v1"))]).await;
    let row = only_block(store, b).await;
    // The writer is busy writing v1 when the sync commits v2.
    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, Some("v2"))]).await;

    assert!(report(store, &row, applied("hash-v1", Some("\"e1\""))).await);

    let row = only_block(store, b).await;
    assert_eq!(row.state, BlockState::Pending);
    assert_eq!(row.applied_hash.as_deref(), Some("hash-v1"));
    assert_eq!(row.google_etag.as_deref(), Some("\"e1\""));
    assert_eq!(row.claimed_by, None, "the report hands the claim back");
    assert_eq!(due(store, b, now(), 10).await.len(), 1);
    // A report for a row the writer does not hold is not taken.
    let reports = [WriteReport {
        row: row.clone(),
        outcome: applied("hash-v2", None),
    }];
    assert_eq!(
        store
            .record_writes("someone-else", &reports, Vec::new())
            .await
            .expect("record"),
        0
    );
    assert_eq!(
        only_block(store, b).await.applied_hash.as_deref(),
        Some("hash-v1")
    );
}

async fn a_deleted_block_row_goes_away_unless_its_source_came_back(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    commit_blocks(
        store,
        a,
        vec![
            desired(a, b, "ev1", 1, Some("v1")),
            desired(a, b, "ev2", 2, Some("v1")),
        ],
    )
    .await;
    for row in store.blocks_for_target(b).await.expect("rows") {
        assert!(report(store, &row, applied("hash-v1", None)).await);
    }
    commit_blocks(
        store,
        a,
        vec![desired(a, b, "ev1", 1, None), desired(a, b, "ev2", 2, None)],
    )
    .await;
    let rows = store.blocks_for_target(b).await.expect("rows");
    assert!(rows
        .iter()
        .all(|r| r.state == BlockState::Pending && r.body.is_none()));
    // ev2 comes back while its delete is in flight.
    commit_blocks(store, a, vec![desired(a, b, "ev2", 2, Some("v2"))]).await;

    assert!(report(store, &rows[0], WriteOutcome::Deleted).await);
    assert!(report(store, &rows[1], WriteOutcome::Deleted).await);

    let left = only_block(store, b).await;
    assert_eq!(left.source_event_id, event_id("ev2"));
    assert_eq!(left.state, BlockState::Pending);
    assert_eq!(left.applied_hash, None);
    assert_eq!(left.google_etag, None);
}

async fn due_blocks_come_oldest_first_and_respect_next_attempt_at(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    commit_blocks(
        store,
        a,
        (1..=4)
            .map(|n| desired(a, b, &format!("ev{n}"), n, Some("v1")))
            .collect(),
    )
    .await;
    let rows = store.blocks_for_target(b).await.expect("rows");
    let t0 = now();
    // Row 1 retries in 2 minutes, row 2 in 1 minute, rows 3 and 4 stay due now.
    assert!(report(store, &rows[0], retry_at(t0 + Duration::minutes(2), "503")).await);
    assert!(report(store, &rows[1], retry_at(t0 + Duration::minutes(1), "429")).await);

    let due_now: Vec<_> = due(store, b, now(), 10)
        .await
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(due_now, vec![rows[2].id, rows[3].id]);
    assert_eq!(due(store, b, now(), 1).await.len(), 1);
    assert!(due(store, a, now(), 10).await.is_empty());

    let retried = store.block(rows[0].id).await.expect("get").expect("exists");
    assert_eq!(retried.attempts, 1);
    assert_eq!(retried.last_error.as_deref(), Some("503"));
    assert_eq!(retried.next_attempt_at, Some(t0 + Duration::minutes(2)));

    for row in &rows[2..] {
        assert!(report(store, row, applied("hash-v1", None)).await);
    }
    // Two rows wait for their retry: the first at t0 + 1 min.
    let outlook = store.pending_outlook(b).await.expect("outlook");
    assert_eq!(outlook.count, 2);
    assert_eq!(outlook.next_due, Some(t0 + Duration::minutes(1)));
    assert_eq!(
        store.pending_outlook(a).await.expect("outlook"),
        PendingOutlook::default()
    );
}

async fn queue_depths_count_pending_rows_per_target(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    let c = add_account(store, "Calendar 03").await;
    commit_blocks(
        store,
        a,
        vec![
            desired(a, b, "ev1", 1, Some("v1")),
            desired(a, b, "ev2", 2, Some("v1")),
            desired(a, c, "ev1", 3, Some("v1")),
        ],
    )
    .await;
    let c_row = only_block(store, c).await;
    assert!(report(store, &c_row, applied("hash-v1", None)).await);

    assert_eq!(store.queue_depths().await.expect("depths"), vec![(b, 2)]);
    assert_eq!(store.pending_count(None).await.expect("count"), 2);
    assert_eq!(store.pending_count(Some(c)).await.expect("count"), 0);
    assert_eq!(
        store
            .blocks_for_source(a, &event_id("ev1"))
            .await
            .expect("by source")
            .len(),
        2
    );
}

async fn retracting_a_source_queues_deletes_for_all_its_blocks(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    commit_blocks(
        store,
        a,
        vec![
            desired(a, b, "ev1", 1, Some("v1")),
            desired(a, b, "ev2", 2, Some("v1")),
        ],
    )
    .await;
    let rows = store.blocks_for_target(b).await.expect("rows");
    assert!(report(store, &rows[0], applied("hash-v1", None)).await);
    store.mark_excluded(rows[1].id).await.expect("excluded");

    assert_eq!(
        store.retract_blocks_from_source(a).await.expect("retract"),
        1
    );

    let row = only_block(store, b).await;
    assert_eq!(row.id, rows[0].id);
    assert_eq!(row.state, BlockState::Pending);
    assert_eq!(row.body, None);
}

async fn the_sync_log_pages_newest_first_and_filters(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    for n in 0..5 {
        store
            .append_log(
                NewLogEntry::new(
                    log_kind::INCREMENTAL_SYNC,
                    LogResult::Ok,
                    format!("sync {n}"),
                )
                .account(a)
                .count(n)
                .duration(std::time::Duration::from_millis(12)),
            )
            .await
            .expect("append");
    }
    store
        .append_log(
            NewLogEntry::new(log_kind::BLOCK_INSERT, LogResult::Error, "HTTP 500").account(b),
        )
        .await
        .expect("append");
    store
        .append_log(NewLogEntry::new(
            log_kind::ACCOUNT_ADDED,
            LogResult::Ok,
            "added",
        ))
        .await
        .expect("append");

    let all = LogQuery::default();
    assert_eq!(store.log_count(&all).await.expect("count"), 7);
    let newest = store.recent_log(&all).await.expect("recent");
    assert_eq!(newest[0].detail, "added");
    assert_eq!(newest[0].account_id, None);

    let of_a = LogQuery {
        account_id: Some(a),
        limit: 2,
        ..Default::default()
    };
    assert_eq!(store.log_count(&of_a).await.expect("count"), 5);
    let page1 = store.recent_log(&of_a).await.expect("page 1");
    let page3 = store
        .recent_log(&LogQuery {
            offset: 4,
            ..of_a.clone()
        })
        .await
        .expect("page 3");
    assert_eq!(
        page1.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(),
        ["sync 4", "sync 3"]
    );
    assert_eq!(
        page3.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(),
        ["sync 0"]
    );
    assert_eq!(page1[0].count, Some(4));
    assert_eq!(page1[0].duration_ms, Some(12));
    assert_eq!(page1[0].kind, log_kind::INCREMENTAL_SYNC);

    let errors = LogQuery {
        result: Some(LogResult::Error),
        ..Default::default()
    };
    let errors = store.recent_log(&errors).await.expect("errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].account_id, Some(b));
    let by_kind = LogQuery {
        kind: Some(log_kind::ACCOUNT_ADDED.to_owned()),
        ..Default::default()
    };
    assert_eq!(store.log_count(&by_kind).await.expect("count"), 1);
    let none = LogQuery {
        account_id: Some(a),
        result: Some(LogResult::Error),
        ..Default::default()
    };
    assert_eq!(store.log_count(&none).await.expect("count"), 0);
}

async fn the_installation_id_is_generated_once_and_config_wins(db: &StoreDb) {
    let store = &db.store;
    let first = store.installation_id(&db.settings).await.expect("generate");
    let second = store
        .installation_id(&db.settings)
        .await
        .expect("read back");
    assert_eq!(first, second);
    assert!(!first.is_empty() && first.len() <= 32);
    assert!(first.chars().all(|c| c.is_ascii_alphanumeric()));

    let reconnected = Store::connect(&db.settings).await.expect("reconnect");
    assert_eq!(
        reconnected
            .installation_id(&db.settings)
            .await
            .expect("again"),
        first
    );

    let mut configured = db.settings.clone();
    configured.installation_id = Some("prod-eu-1".to_owned());
    assert_eq!(
        store.installation_id(&configured).await.expect("config"),
        "prod-eu-1"
    );
}

async fn channels_are_saved_found_stopped_and_listed_by_expiry(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    let t0 = now();
    let old = ChannelId::parse("old-channel").expect("id");
    let new = ChannelId::parse("new-channel").expect("id");
    for (account, channel, hours) in [(a, &old, 1), (a, &new, 48), (b, &ChannelId::random(), 24)] {
        store
            .save_channel(NewChannel {
                account_id: account,
                channel_id: channel.clone(),
                resource_id: "res-1".to_owned(),
                token_hash: Some("sha256:abc".to_owned()),
                expires_at: t0 + Duration::hours(hours),
            })
            .await
            .expect("save");
    }

    assert_eq!(
        store
            .current_channel(a)
            .await
            .expect("current")
            .map(|c| c.channel_id),
        Some(new.clone())
    );
    // Read for many accounts at once, each answer is the one read alone.
    let many = store
        .current_channels(&[a, b])
        .await
        .expect("current of both");
    assert_eq!(many.len(), 2);
    for account in [a, b] {
        assert_eq!(
            many.get(&account),
            store
                .current_channel(account)
                .await
                .expect("current")
                .as_ref()
        );
    }
    let expiring = store
        .channels_expiring_before(t0 + Duration::hours(25))
        .await
        .expect("expiring");
    assert_eq!(expiring.len(), 2);
    assert_eq!(expiring[0].channel_id, old);

    store.mark_channel_stopped(&old, t0).await.expect("stop");
    store.mark_channel_stopped(&new, t0).await.expect("stop");
    let stopped = store
        .channel_by_id(&old)
        .await
        .expect("by id")
        .expect("exists");
    assert_eq!(stopped.stopped_at, Some(t0));
    assert_eq!(stopped.token_hash.as_deref(), Some("sha256:abc"));
    assert_eq!(store.current_channel(a).await.expect("current"), None);
    let many = store
        .current_channels(&[a, b])
        .await
        .expect("current of both");
    assert_eq!(
        many.keys().copied().collect::<Vec<_>>(),
        vec![b],
        "a has none left"
    );
    assert_eq!(
        store
            .channels_expiring_before(t0 + Duration::hours(25))
            .await
            .expect("expiring")
            .len(),
        1
    );
    assert_eq!(
        store
            .channel_by_id(&ChannelId::parse("nope").expect("id"))
            .await
            .expect("by id"),
        None
    );

    let duplicate = store
        .save_channel(NewChannel {
            account_id: a,
            channel_id: old,
            resource_id: "res-2".to_owned(),
            token_hash: None,
            expires_at: t0,
        })
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "{duplicate:?}"
    );
}

async fn events_are_found_by_ical_uid_across_accounts(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    let cancelled = StoredEventUpsert {
        status: "cancelled".to_owned(),
        ..source_event("ev3", Some("meeting"))
    };

    for (account, events) in [
        (
            a,
            vec![
                source_event("ev1", Some("meeting")),
                source_event("ev2", Some("other")),
            ],
        ),
        (b, vec![source_event("evb", Some("meeting")), cancelled]),
    ] {
        store
            .commit_sync(
                account,
                SyncCommit {
                    upserted_source_events: events,
                    ..Default::default()
                },
            )
            .await
            .expect("commit");
    }

    let found = store.events_by_ical_uids(&["meeting"]).await.expect("find");

    // Cancelled copies are found too: the planner reads their status (a cancelled
    // exception still shapes its series).
    let found: Vec<_> = found
        .iter()
        .map(|e| {
            (
                e.account_id,
                e.event_id.as_str().to_owned(),
                e.status.clone(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (a, "ev1".to_owned(), "confirmed".to_owned()),
            (b, "ev3".to_owned(), "cancelled".to_owned()),
            (b, "evb".to_owned(), "confirmed".to_owned()),
        ]
    );
    assert_eq!(store.source_event_count(b).await.expect("count"), 2);
}

async fn concurrent_writers_do_not_fail(db: &StoreDb) {
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    let mut tasks = Vec::new();
    for n in 0..16u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit_sync(
                    a,
                    SyncCommit {
                        upserted_source_events: vec![source_event(&format!("ev{n}"), None)],
                        desired_blocks: vec![desired(a, b, &format!("ev{n}"), n, Some("v1"))],
                        new_sync_token: Some(format!("token-{n}")),
                        ..Default::default()
                    },
                )
                .await?;
            store
                .append_log(
                    NewLogEntry::new(log_kind::INCREMENTAL_SYNC, LogResult::Ok, "ok").account(a),
                )
                .await?;
            let claim = Claim {
                owner: format!("writer-{n}"),
                until: now() + Duration::minutes(1),
            };
            let claimed = store.claim_due(b, &claim, 100).await?;
            if let Some(row) = claimed.first() {
                let reports = [WriteReport {
                    row: row.clone(),
                    outcome: WriteOutcome::Applied {
                        hash: row.desired_hash.clone(),
                        etag: None,
                        updated: None,
                        recreated: false,
                    },
                }];
                store
                    .record_writes(&claim.owner, &reports, Vec::new())
                    .await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for task in tasks {
        task.await.expect("task ran").expect("no write failed");
    }
    assert_eq!(store.source_events(a).await.expect("events").len(), 16);
    assert_eq!(store.blocks_for_target(b).await.expect("rows").len(), 16);
    assert_eq!(
        store.log_count(&LogQuery::default()).await.expect("count"),
        16
    );
}

// ---------------------------------------------------------------------------------------
// SQLite only
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_without_a_key_keeps_a_private_key_file_beside_the_database() {
    let db = StoreDb::sqlite().await;
    let dir = db._dir.as_ref().expect("SQLite test dir");
    let key_file = dir.path().join("mcss.db.key");

    let account = add_account(&db.store, "Calendar 01").await;

    let key = std::fs::read_to_string(&key_file).expect("key file exists");
    assert_eq!(key.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // With the key file gone the token cannot be opened (it is not in the database), and
    // start-up says so instead of failing account by account later.
    std::fs::remove_file(&key_file).expect("remove key file");
    let without_key = Store::connect(&db.settings).await.expect("reconnect");
    assert!(matches!(
        without_key.migrate().await,
        Err(StoreError::Crypto(mcss::store::CryptoError::WrongKey))
    ));
    assert!(matches!(
        without_key.refresh_token(account).await,
        Err(StoreError::Crypto(_))
    ));
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode() {
    let db = StoreDb::sqlite().await;
    let row = db
        .store
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await
        .expect("pragma")
        .expect("a row");
    let mode: String = row.try_get_by_index(0).expect("text");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn an_in_memory_sqlite_database_works() {
    let settings = settings(&[("DATABASE_URL", "sqlite::memory:")]);
    let store = Store::connect(&settings).await.expect("connect");
    store.migrate().await.expect("migrate");
    let id = add_account(&store, "Calendar 01").await;
    assert_eq!(
        store
            .refresh_token(id)
            .await
            .expect("token")
            .expose_secret(),
        "1//refresh-token-of-Calendar 01"
    );
}

async fn calendars_added_at_once_to_one_new_group_all_join_it(db: &StoreDb) {
    // Arrange: calendars of one group nobody made yet, as `accounts import` adds them, in
    // four waves of sixteen at once (each flags every calendar already in the group for a
    // replan, so later waves lock more rows).
    let new = |n: usize| NewAccount {
        group: "team-new".to_owned(),
        rules: mcss::store::CalendarRules::default(),
        alias: format!("Import {n:02}"),
        email: Some(format!("import{n}@example.com")),
        calendar_id: CalendarId::parse(&format!("import{n}@example.com")).expect("valid id"),
        refresh_token: SecretString::from(format!("1//token-{n}")),
        time_zone: None,
    };
    let before = db.store.counters();

    // Act: each wave all at once.
    let mut failed = Vec::new();
    for wave in 0..4 {
        let added = futures::future::join_all(
            (wave * 16..wave * 16 + 16).map(|n| db.store.create_account(new(n))),
        )
        .await;
        failed.extend(
            added
                .into_iter()
                .filter_map(|r| r.err().map(|e| e.to_string())),
        );
    }

    // Assert: none failed on the group's unique name, none met a deadlock, and all are in
    // the one group.
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(db.store.counters().deadlocks - before.deadlocks, 0);
    let accounts = db.store.list_accounts().await.unwrap();
    assert_eq!(
        accounts.iter().filter(|a| a.group == "team-new").count(),
        64
    );
}

/// The token as the database holds it (not read through the deferred tokens).
async fn stored_token(store: &Store, account: AccountId) -> Option<String> {
    mcss::store::entities::sync_state::Entity::find_by_id(account.get())
        .one(store.connection())
        .await
        .expect("the sync state reads")
        .expect("the sync state exists")
        .sync_token
}

/// A commit of nothing but a new token, listed incrementally from `from`: an echo.
fn echo(from: &str, to: &str) -> SyncCommit {
    SyncCommit {
        listed_from: Some(from.to_owned()),
        new_sync_token: Some(to.to_owned()),
        ..Default::default()
    }
}

async fn an_echo_token_is_read_at_once_written_later_and_never_over_a_newer_one(db: &StoreDb) {
    // Arrange: a calendar synced once (token-1).
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    let first = SyncCommit {
        new_sync_token: Some("token-1".to_owned()),
        full: true,
        ..Default::default()
    };
    store.commit_sync(a, first.clone()).await.expect("commit");
    store.commit_sync(b, first).await.expect("commit");

    // Act 1: two echoes of `a` in a row.
    let before = store.counters();
    store
        .commit_sync(a, echo("token-1", "token-2"))
        .await
        .expect("echo");
    store
        .commit_sync(a, echo("token-2", "token-3"))
        .await
        .expect("echo");

    // Assert 1: no write transaction; the next sync reads token-3, the database still holds
    // token-1; the flush writes token-3 in one transaction.
    assert_eq!((store.counters() - before).write_transactions, 0);
    let state = store.sync_state(a).await.expect("state");
    assert_eq!(state.sync_token.as_deref(), Some("token-3"));
    assert_eq!(stored_token(store, a).await.as_deref(), Some("token-1"));
    let before = store.counters();
    assert_eq!(store.flush_deferred_tokens().await.expect("flush"), 1);
    assert_eq!((store.counters() - before).write_transactions, 1);
    assert_eq!(stored_token(store, a).await.as_deref(), Some("token-3"));

    // Act 2: an echo of `b`, then (as a calendar's next owner would) a real commit that
    // moves `b` to token-9 from under it, then the flush.
    store
        .commit_sync(b, echo("token-1", "token-2"))
        .await
        .expect("echo");
    store
        .connection()
        .execute_unprepared(&format!(
            "UPDATE sync_state SET sync_token = 'token-9' WHERE account_id = {}",
            b.get()
        ))
        .await
        .expect("the newer token is written");
    let written = store.flush_deferred_tokens().await.expect("flush");

    // Assert 2: the echo's older token is not written over the newer one.
    assert_eq!(written, 0);
    assert_eq!(stored_token(store, b).await.as_deref(), Some("token-9"));

    // Act 3: an echo, then a failed sync, then a reset (410 Gone).
    store
        .commit_sync(a, echo("token-3", "token-4"))
        .await
        .expect("echo");
    store
        .record_sync_error(a, "Google answered 500")
        .await
        .expect("error");

    // Assert 3: the error keeps the echo's token; a reset forgets it.
    assert_eq!(stored_token(store, a).await.as_deref(), Some("token-4"));
    store
        .commit_sync(a, echo("token-4", "token-5"))
        .await
        .expect("echo");
    store.reset_sync_token(a).await.expect("reset");
    assert_eq!(store.sync_state(a).await.expect("state").sync_token, None);
    assert_eq!(store.flush_deferred_tokens().await.expect("flush"), 0);
    assert_eq!(stored_token(store, a).await, None);
}

/// Statements `act` sends to the database (each a round trip on PostgreSQL).
async fn statements_of<T>(store: &Store, act: impl std::future::Future<Output = T>) -> (T, u64) {
    let before = store.counters();
    let out = act.await;
    (out, (store.counters() - before).statements)
}

/// A sync of one new event that queues its block on `targets`, with its audit line.
fn one_event_onto(source: AccountId, targets: &[AccountId], n: u32) -> SyncCommit {
    let event = format!("ev{n}");
    SyncCommit {
        upserted_source_events: vec![source_event(&event, None)],
        desired_blocks: targets
            .iter()
            .zip(0u32..)
            .map(|(t, i)| desired(source, *t, &event, n * 10 + i, Some("v1")))
            .collect(),
        new_sync_token: Some(format!("token-{n}")),
        log: vec![NewLogEntry::new(
            log_kind::INCREMENTAL_SYNC,
            LogResult::Ok,
            "1 event",
        )],
        ..Default::default()
    }
}

async fn one_failing_commit_among_many_at_once_costs_a_few_transactions_not_one_each(db: &StoreDb) {
    // Arrange: sixteen calendars, each about to queue a block onto its own target; one
    // target has just been removed, so that commit must fail (its rows would point at
    // nothing).
    let store = &db.store;
    let mut pairs = Vec::new();
    for n in 0..16 {
        let source = add_account(store, &format!("Source {n:02}")).await;
        let target = add_account(store, &format!("Target {n:02}")).await;
        pairs.push((source, target));
    }
    let (broken, gone) = pairs[5];
    store.delete_account(gone).await.expect("remove the target");
    let before = store.counters();

    // Act: the sixteen commits at once, so they share group commits.
    let results =
        futures::future::join_all(pairs.iter().zip(0u32..).map(|((source, target), n)| {
            store.commit_sync(*source, one_event_onto(*source, &[*target], n))
        }))
        .await;

    // Assert: only the broken one failed; the others are written; and the failure was found
    // by halving the batch (a few transactions), not by running every commit alone (17).
    for ((source, _), result) in pairs.iter().zip(&results) {
        if *source == broken {
            assert!(result.is_err(), "the commit onto a removed target fails");
        } else {
            assert!(result.is_ok(), "{result:?}");
            assert!(store
                .sync_state(*source)
                .await
                .unwrap()
                .sync_token
                .is_some());
        }
    }
    let spent = (store.counters() - before).write_transactions;
    assert!(
        spent <= 12,
        "{spent} write transactions for sixteen commits"
    );
}

async fn a_change_mirrored_onto_four_calendars_costs_a_statement_per_kind_not_per_row(
    db: &StoreDb,
) {
    // Arrange: a source and four targets (a group of five).
    let store = &db.store;
    let source = add_account(store, "Calendar 01").await;
    let mut targets = Vec::new();
    for n in 2..=5 {
        targets.push(add_account(store, &format!("Calendar 0{n}")).await);
    }

    // Act 1: the source's commit of one event, queued onto one target, then onto four (after
    // a first commit: the source's first one also creates its sync state).
    store
        .commit_sync(source, one_event_onto(source, &targets[..1], 0))
        .await
        .expect("first commit");
    let (_, onto_one) = statements_of(
        store,
        store.commit_sync(source, one_event_onto(source, &targets[..1], 1)),
    )
    .await;
    let (outcome, onto_four) = statements_of(
        store,
        store.commit_sync(source, one_event_onto(source, &targets, 2)),
    )
    .await;

    // Assert 1: four new rows cost what one does (they were an insert each).
    let outcome = outcome.expect("commit");
    assert_eq!(outcome.blocks_queued, 4);
    assert_eq!(
        onto_four, onto_one,
        "statements of a commit onto 4 vs onto 1"
    );

    // Act 2: each target's writer records its write, all four in one batch, with an audit
    // line each.
    let mut reports = Vec::new();
    for target in &targets {
        let row = store
            .blocks_for_target(*target)
            .await
            .expect("blocks")
            .into_iter()
            .find(|r| r.source_event_id == event_id("ev2"))
            .expect("the row of ev2");
        reports.push(WriteReport {
            row: hold(store, &row).await,
            outcome: applied("hash-v1", Some("etag-1")),
        });
    }
    let audit = vec![NewLogEntry::new(log_kind::BLOCK_INSERT, LogResult::Ok, "written"); 4];
    let (recorded, statements) =
        statements_of(store, store.record_writes(WRITER, &reports, audit)).await;

    // Assert 2: one statement per report (it was two), and one for all the audit lines;
    // every row is applied and released.
    assert_eq!(recorded.expect("record"), 4);
    assert_eq!(statements, 4 + 1);
    for report in &reports {
        let row = store
            .block(report.row.id)
            .await
            .expect("read")
            .expect("row");
        assert_eq!(row.state, BlockState::Applied);
        assert_eq!(row.claimed_by, None);
        assert_eq!(row.google_etag.as_deref(), Some("etag-1"));
    }

    // Act 3: the four targets' first syncs, then their echoes, then the flush.
    for (n, target) in targets.iter().enumerate() {
        let first = SyncCommit {
            new_sync_token: Some(format!("start-{n}")),
            full: true,
            ..Default::default()
        };
        store.commit_sync(*target, first).await.expect("first sync");
    }
    for (n, target) in targets.iter().enumerate() {
        store
            .commit_sync(*target, echo(&format!("start-{n}"), &format!("echo-{n}")))
            .await
            .expect("echo");
    }
    let (written, statements) = statements_of(store, store.flush_deferred_tokens()).await;

    // Assert 3: every token written; on PostgreSQL in one statement (SQLite answers in
    // process, a statement per token).
    assert_eq!(written.expect("flush"), 4);
    let postgres = store.connection().get_database_backend() == sea_orm::DbBackend::Postgres;
    assert_eq!(statements, if postgres { 1 } else { 4 });
    for (n, target) in targets.iter().enumerate() {
        assert_eq!(
            stored_token(store, *target).await.as_deref(),
            Some(format!("echo-{n}").as_str())
        );
    }
}

async fn a_commit_finds_its_rows_through_the_target_and_block_index(db: &StoreDb) {
    use sea_orm::{QueryTrait as _, Statement, TransactionTrait as _};
    // Arrange: the lookup a sync commit makes for the rows it may update.
    let store = &db.store;
    let (a, b) = two_accounts(store).await;
    commit_blocks(store, a, vec![desired(a, b, "ev1", 1, Some("v1"))]).await;
    let keys = [(b.get(), block_id(1).as_str().to_owned())];
    let backend = store.connection().get_database_backend();
    let lookup = mcss::store::outbox_rows_of(keys.iter()).build(backend);

    // Act: the database's plan for it (PostgreSQL told to avoid a sequential scan, which it
    // prefers on a table this small).
    let txn = store.connection().begin().await.expect("begin");
    let explain = if backend == sea_orm::DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await
            .expect("set");
        format!("EXPLAIN {}", lookup.sql)
    } else {
        format!("EXPLAIN QUERY PLAN {}", lookup.sql)
    };
    let plan: Vec<String> = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            explain,
            lookup.values.map(|v| v.0).unwrap_or_default(),
        ))
        .await
        .expect("explain")
        .iter()
        .map(|row| {
            row.try_get::<String>("", "QUERY PLAN")
                .or_else(|_| row.try_get::<String>("", "detail"))
                .expect("a plan line")
        })
        .collect();
    txn.rollback().await.expect("rollback");

    // Assert: an index is searched by the target (before, the (target, block) index by the
    // block alone: it was read whole on every commit).
    let plan = plan.join("\n");
    let by_target = if backend == sea_orm::DbBackend::Postgres {
        plan.lines()
            .any(|line| line.contains("Index Cond") && line.contains("target_account_id"))
    } else {
        plan.contains("uq_desired_blocks_target_block (target_account_id=? AND block_id=?)")
    };
    assert!(by_target, "the lookup's plan:\n{plan}");
    assert_eq!(
        lookup_rows(store, &keys).await,
        vec![(b.get(), block_id(1).as_str().to_owned())]
    );
}

/// What the lookup finds, as keys.
async fn lookup_rows(store: &Store, keys: &[(i64, String)]) -> Vec<(i64, String)> {
    mcss::store::outbox_rows_of(keys.iter())
        .all(store.connection())
        .await
        .expect("the lookup")
        .into_iter()
        .map(|r| (r.target_account_id, r.block_id))
        .collect()
}

async fn two_calendars_of_one_google_account_share_one_stored_token(db: &StoreDb) {
    let store = &db.store;
    let calendar = |alias: &str, calendar: &str| NewAccount {
        group: mcss::store::DEFAULT_GROUP.to_owned(),
        rules: mcss::store::CalendarRules::default(),
        alias: alias.to_owned(),
        email: Some("ana@example.com".to_owned()),
        calendar_id: CalendarId::parse(calendar).expect("valid calendar id"),
        refresh_token: SecretString::from("1//first-token".to_owned()),
        time_zone: None,
    };
    let primary = store
        .create_account(calendar("Ana work", "ana@example.com"))
        .await
        .expect("primary");
    let secondary = store
        .create_account(calendar("Ana family", "family@group.calendar.google.com"))
        .await
        .expect("secondary");

    assert_eq!(primary.credential_id, secondary.credential_id);
    assert_eq!(
        credentials::Entity::find()
            .all(store.connection())
            .await
            .expect("credentials")
            .len(),
        1,
        "the token is stored once"
    );
    store
        .set_refresh_token(
            secondary.id,
            &SecretString::from("1//second-token".to_owned()),
        )
        .await
        .expect("reconnect");
    assert_eq!(
        store
            .refresh_token(primary.id)
            .await
            .expect("token")
            .expose_secret(),
        "1//second-token"
    );
    assert_eq!(
        store
            .calendars_sharing_token(primary.id)
            .await
            .expect("sharing"),
        vec![primary.id, secondary.id]
    );
}

async fn a_token_stored_before_credentials_is_moved_to_one_on_start(db: &StoreDb) {
    let store = &db.store;
    let id = add_account(store, "Calendar 01").await;
    // The row as an older version wrote it: the token sealed on the account, no credential.
    let sealed = sealed_on_account(db, "1//legacy-token", "Calendar 01");
    accounts::Entity::update_many()
        .col_expr(accounts::Column::RefreshTokenEnc, sealed.into())
        .col_expr(accounts::Column::CredentialId, Option::<i64>::None.into())
        .filter(accounts::Column::Id.eq(id.get()))
        .exec(store.connection())
        .await
        .expect("the old row");

    store.migrate().await.expect("start-up migration");

    let row = accounts::Entity::find_by_id(id.get())
        .one(store.connection())
        .await
        .expect("row")
        .expect("exists");
    assert!(row.credential_id.is_some());
    assert!(row.refresh_token_enc.is_empty());
    assert_eq!(
        store
            .refresh_token(id)
            .await
            .expect("token")
            .expose_secret(),
        "1//legacy-token"
    );
    assert_eq!(store.account(id).await.expect("account").group, "default");
}

/// The key the store seals tokens with: ENCRYPTION_KEY, or the key file beside SQLite.
fn key_of(db: &StoreDb) -> EncryptionKey {
    match &db.settings.encryption_key {
        Some(key) => key.clone(),
        None => {
            let dir = db._dir.as_ref().expect("SQLite test dir");
            let file = mcss::store::crypto::key_file_for(&dir.path().join("mcss.db"));
            mcss::store::crypto::load_or_create_key_file(&file).expect("the key file")
        }
    }
}

/// A refresh token sealed as releases before credentials kept it: on the account's row.
fn sealed_on_account(db: &StoreDb, token: &str, alias: &str) -> String {
    mcss::store::TokenCipher::new(&key_of(db))
        .seal(token, &mcss::store::crypto::account_aad(alias))
        .expect("seal")
}

/// The database as the first release left it: only the first migration applied, one
/// calendar with its token sealed on the account row, one single block and one occurrence
/// block applied at Google.
async fn first_release_database(db: &StoreDb) -> i64 {
    use migration::sea_orm_migration::MigratorTrait as _;
    let conn = db.store.connection();
    migration::Migrator::reset(conn)
        .await
        .expect("down to nothing");
    migration::Migrator::up(conn, Some(1))
        .await
        .expect("the first schema");
    let sealed = sealed_on_account(db, "1//first-release", "Work");
    let at = Utc::now();
    let backend = conn.get_database_backend();
    let insert = |sql: &str, values: Vec<sea_orm::Value>| {
        let sql = match backend {
            sea_orm::DatabaseBackend::Postgres => {
                let mut n = 0;
                sql.chars()
                    .map(|c| match c {
                        '?' => {
                            n += 1;
                            format!("${n}")
                        }
                        c => c.to_string(),
                    })
                    .collect()
            }
            _ => sql.to_owned(),
        };
        sea_orm::Statement::from_sql_and_values(backend, sql, values)
    };
    conn.execute_raw(insert(
        "INSERT INTO accounts (alias, email, calendar_id, refresh_token_enc, status, \
         created_at, updated_at) VALUES (?, ?, ?, ?, 'active', ?, ?)",
        vec![
            "Work".into(),
            "work@example.com".into(),
            "work@example.com".into(),
            sealed.into(),
            at.into(),
            at.into(),
        ],
    ))
    .await
    .expect("the first release's account");
    // The entity knows this release's columns, so the first schema is read raw.
    let account: i64 = conn
        .query_one_raw(insert("SELECT id FROM accounts", vec![]))
        .await
        .expect("read")
        .expect("the account")
        .try_get("", "id")
        .expect("its id");
    for block in ["aaaa1111", "bbbb2222_20261203T090000Z"] {
        conn.execute_raw(insert(
            "INSERT INTO desired_blocks (target_account_id, source_account_id, \
             source_event_id, block_id, body, desired_hash, applied_hash, state, attempts, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'h1', 'h1', 'applied', 0, ?, ?)",
            vec![
                account.into(),
                account.into(),
                "source-event".into(),
                block.into(),
                r#"{"summary":"Calendar 01 Block"}"#.into(),
                at.into(),
                at.into(),
            ],
        ))
        .await
        .expect("the first release's block");
    }
    account
}

async fn the_migration_from_the_first_schema_keeps_every_block(db: &StoreDb) {
    let account = first_release_database(db).await;

    db.store.migrate().await.expect("migrate to this release");

    let rows = desired_blocks::Entity::find()
        .all(db.store.connection())
        .await
        .expect("rows");
    let mut kept: Vec<(String, String, Option<String>, String)> = rows
        .into_iter()
        .map(|r| (r.block_id, r.role, r.series_block_id, r.state))
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![
            (
                "aaaa1111".to_owned(),
                "single".to_owned(),
                None,
                "applied".to_owned()
            ),
            (
                "bbbb2222_20261203T090000Z".to_owned(),
                "occurrence".to_owned(),
                Some("bbbb2222".to_owned()),
                "applied".to_owned()
            ),
        ],
        "every block kept with its id, its role read from the id"
    );
    let id = AccountId::new(account);
    let migrated = db.store.account(id).await.expect("the account");
    assert_eq!(migrated.group, mcss::store::DEFAULT_GROUP);
    assert_eq!(
        db.store
            .refresh_token(id)
            .await
            .expect("token")
            .expose_secret(),
        "1//first-release"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_group_replan_meets_a_deadlock_is_added_all_the_same() {
    use sea_orm::TransactionTrait as _;
    let Some(db) = StoreDb::postgres("deadlock_on_add").await else {
        return;
    };
    let store = &db.store;
    // Arrange: a calendar of the default group, and a transaction holding its sync state,
    // as a group commit of its sync does.
    let first = add_account(store, "Calendar 01").await;
    let holder = store.connection().begin().await.expect("a transaction");
    holder
        .execute_unprepared(&format!(
            "UPDATE sync_state SET updated_at = now() WHERE account_id = {}",
            first.get()
        ))
        .await
        .expect("the sync state is held");

    // Act: a second calendar of the same Google account joins the group. Its transaction
    // updates the shared credential, then waits for the held row to flag the group for a
    // replan; the holder then needs that credential: a deadlock, and PostgreSQL aborts the
    // one that waited first, the new account's.
    let adding = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .create_account(NewAccount {
                    group: mcss::store::DEFAULT_GROUP.to_owned(),
                    rules: mcss::store::CalendarRules::default(),
                    alias: "Calendar 02".to_owned(),
                    email: Some("Calendar.01@example.com".to_owned()),
                    calendar_id: CalendarId::parse("second@group.calendar.google.com")
                        .expect("valid calendar id"),
                    refresh_token: SecretString::from("1//refresh-token-of-the-same-account"),
                    time_zone: None,
                })
                .await
        }
    });
    crate::support::eventually(
        "the new account's transaction waits for the held row",
        || async { (lock_waiters(store).await? >= 1).then_some(()) },
    )
    .await;
    let crossed = holder
        .execute_unprepared(
            "UPDATE credentials SET updated_at = now() WHERE email = 'Calendar.01@example.com'",
        )
        .await;
    if crossed.is_ok() {
        holder.commit().await.expect("the holder commits");
    } else {
        holder.rollback().await.expect("the holder rolls back");
    }

    // Assert: the account is there, in the group, on the one credential.
    let added = adding
        .await
        .expect("the task ran")
        .expect("the account is added after the deadlock");
    let accounts = store.list_accounts().await.expect("the accounts");
    assert_eq!(accounts.len(), 2);
    let firsts = accounts.iter().find(|a| a.id == first).expect("the first");
    assert_eq!(added.credential_id, firsts.credential_id);
}

/// Sessions of this test's PostgreSQL database waiting for a lock.
async fn lock_waiters(store: &Store) -> Option<i64> {
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock' AND datname = current_database()";
    let row = store
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            waiting,
        ))
        .await
        .ok()??;
    row.try_get::<i64>("", "n").ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_first_connects_of_one_google_account_at_once_make_one_credential() {
    use sea_orm::TransactionTrait as _;
    let Some(db) = StoreDb::postgres("one_credential_at_once").await else {
        return;
    };
    let store = &db.store;
    // Arrange: a first connect of ana@example.com under way, its credential inserted but
    // not committed yet.
    let under_way = store.connection().begin().await.expect("a transaction");
    under_way
        .execute_unprepared(
            "INSERT INTO credentials (email, refresh_token_enc, created_at, updated_at) \
             VALUES ('ana@example.com', '', now(), now())",
        )
        .await
        .expect("the first connect's credential");

    // Act: another calendar of the same Google account connects meanwhile, in another
    // group; then the first connect commits.
    let adding = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .create_account(NewAccount {
                    group: "Family".to_owned(),
                    rules: mcss::store::CalendarRules::default(),
                    alias: "Ana family".to_owned(),
                    email: Some("ana@example.com".to_owned()),
                    calendar_id: CalendarId::parse("family@group.calendar.google.com")
                        .expect("valid calendar id"),
                    refresh_token: SecretString::from("1//second-connect"),
                    time_zone: None,
                })
                .await
        }
    });
    crate::support::eventually("the second connect to finish or to wait", || async {
        (adding.is_finished() || lock_waiters(store).await? >= 1).then_some(())
    })
    .await;
    under_way.commit().await.expect("the first connect commits");
    let added = adding
        .await
        .expect("the task ran")
        .expect("the calendar is added");

    // Assert: one credential for the address, holding the second connect's token.
    let stored = credentials::Entity::find()
        .filter(credentials::Column::Email.eq("ana@example.com"))
        .all(store.connection())
        .await
        .expect("credentials");
    assert_eq!(stored.len(), 1, "one credential per Google account");
    assert_eq!(added.credential_id, Some(stored[0].id));
    assert_eq!(
        store
            .refresh_token(added.id)
            .await
            .expect("token")
            .expose_secret(),
        "1//second-connect"
    );
}

async fn duplicate_credentials_of_one_address_are_merged_by_the_migration(db: &StoreDb) {
    use migration::sea_orm_migration::MigratorTrait as _;
    let store = &db.store;
    // Arrange: two calendars, then the schema as it was before the unique e-mail, with two
    // credentials of one address (two first connects at once), a calendar on each, and
    // one credential without an address.
    let conn = store.connection();
    let (first, second) = (
        add_account(store, "Ana work").await,
        add_account(store, "Ana family").await,
    );
    // The unique e-mail and the one migration after it.
    migration::Migrator::down(conn, Some(2))
        .await
        .expect("the schema before");
    let older = Utc::now() - Duration::minutes(5);
    let newer = Utc::now();
    let credential = |email: Option<&str>, at: chrono::DateTime<Utc>| credentials::ActiveModel {
        email: sea_orm::Set(email.map(str::to_owned)),
        refresh_token_enc: sea_orm::Set(String::new()),
        created_at: sea_orm::Set(at),
        updated_at: sea_orm::Set(at),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for (email, at) in [
        (Some("ana@example.com"), older),
        (Some("ana@example.com"), newer),
        (None, older),
    ] {
        let inserted = credentials::Entity::insert(credential(email, at))
            .exec(conn)
            .await
            .expect("a credential");
        ids.push(inserted.last_insert_id);
    }
    for (account, credential) in [(first, ids[0]), (second, ids[1])] {
        accounts::Entity::update_many()
            .col_expr(accounts::Column::CredentialId, Some(credential).into())
            .filter(accounts::Column::Id.eq(account.get()))
            .exec(conn)
            .await
            .expect("the calendar's credential");
    }

    // Act
    store.migrate().await.expect("migrate to this release");

    // Assert: the address has one credential, the one updated last, and both calendars
    // use it; the one without an address is left alone.
    let left = credentials::Entity::find()
        .all(conn)
        .await
        .expect("credentials");
    let of_ana: Vec<i64> = left
        .iter()
        .filter(|c| c.email.as_deref() == Some("ana@example.com"))
        .map(|c| c.id)
        .collect();
    assert_eq!(of_ana, vec![ids[1]]);
    assert!(left.iter().any(|c| c.id == ids[2]), "no address: kept");
    for account in [first, second] {
        let row = accounts::Entity::find_by_id(account.get())
            .one(conn)
            .await
            .expect("read")
            .expect("the calendar");
        assert_eq!(row.credential_id, Some(ids[1]));
    }
}
