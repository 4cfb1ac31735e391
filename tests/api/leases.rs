//! Calendar leases and their fences, at the store (PostgreSQL: SQLite serves one replica and
//! has none). A replica that lost a calendar's lease — it expired while the replica was
//! paused, or another replica took it — must not move that calendar's state any more: its
//! sync commit, its outbox claims and its write records are refused in their own
//! transaction, and the new owner takes the rows over at once.

use std::collections::HashSet;
use std::time::Duration;

use mcss::config::{EncryptionKey, Settings};
use mcss::domain::{AccountId, BlockId, CalendarId, EventId};
use mcss::store::{
    now, BlockState, Claim, Fence, NewAccount, OutboxRow, OutboxUpsert, RowRole, Store, StoreError,
    SyncCommit, SyncFence, WriteOutcome, WriteReport,
};
use secrecy::SecretString;
use serde_json::json;

use crate::support::PostgresDb;

const TTL: Duration = Duration::from_secs(30);

struct Db {
    store: Store,
    _guard: PostgresDb,
}

async fn db(test: &str) -> Option<Db> {
    let guard = PostgresDb::create(test, "mcss_lease_").await?;
    let settings = Settings::from_vars([
        ("DATABASE_URL".to_owned(), guard.url.clone()),
        (
            "ENCRYPTION_KEY".to_owned(),
            EncryptionKey::generate().to_hex(),
        ),
    ])
    .unwrap();
    let store = Store::connect(&settings).await.unwrap();
    store.migrate().await.unwrap();
    Some(Db {
        store,
        _guard: guard,
    })
}

async fn account(store: &Store, n: u32) -> AccountId {
    store
        .create_account(NewAccount {
            alias: format!("Calendar {n:02}"),
            email: None,
            calendar_id: CalendarId::parse(&format!("c{n}@example.com")).unwrap(),
            refresh_token: SecretString::from(format!("1//token-{n}")),
            time_zone: None,
            group: mcss::store::DEFAULT_GROUP.to_owned(),
            rules: mcss::store::CalendarRules::default(),
        })
        .await
        .unwrap()
        .id
}

/// The fence `owner` got for `calendar`.
async fn take(store: &Store, owner: &str, calendar: AccountId) -> Fence {
    let taken = store.acquire_leases(owner, &[calendar], TTL).await.unwrap();
    assert_eq!(taken.len(), 1, "{owner} takes the free lease of {calendar}");
    Fence {
        calendar,
        owner: owner.into(),
        epoch: taken[0].epoch,
    }
}

fn block(source: AccountId, target: AccountId, version: &str) -> OutboxUpsert {
    OutboxUpsert {
        target_account_id: target,
        source_account_id: source,
        source_event_id: EventId::parse("ev1").unwrap(),
        block_id: BlockId::parse(&format!("b{:025}", 1)).unwrap(),
        role: RowRole::Single,
        series_block_id: None,
        body: Some(json!({ "summary": "Calendar 01 Block", "v": version })),
        desired_hash: Some(format!("hash-{version}")),
    }
}

fn commit(source: AccountId, target: AccountId, version: &str, token: &str) -> SyncCommit {
    SyncCommit {
        desired_blocks: vec![block(source, target, version)],
        new_sync_token: Some(token.to_owned()),
        ..Default::default()
    }
}

fn claim(owner: &str) -> Claim {
    Claim {
        owner: owner.to_owned(),
        until: now() + chrono::TimeDelta::seconds(60),
    }
}

/// A source queued one row onto a target, and replica A, owning the target, claimed it:
/// the target, A's fence and the claimed rows.
async fn a_claims_the_one_row_of_a_target(store: &Store) -> (AccountId, Fence, Vec<OutboxRow>) {
    let (source, target) = (account(store, 1).await, account(store, 2).await);
    store
        .commit_sync(source, commit(source, target, "1", "t"))
        .await
        .unwrap();
    let a = take(store, "replica-a", target).await;
    let held = store
        .claim_due_fenced(target, &claim("replica-a"), 10, Some(&a))
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    (target, a, held)
}

/// The report of `row` written as version 1.
fn applied(row: &OutboxRow) -> WriteReport {
    WriteReport {
        row: row.clone(),
        outcome: WriteOutcome::Applied {
            hash: Some("hash-1".into()),
            etag: None,
            recreated: true,
            updated: None,
        },
    }
}

#[tokio::test]
async fn a_sync_commit_under_a_lease_handed_to_another_replica_writes_nothing() {
    // Arrange: replica A held the source calendar, then handed it to B.
    let Some(db) = db("fenced_commit").await else {
        return;
    };
    let store = &db.store;
    let (source, target) = (account(store, 1).await, account(store, 2).await);
    let old = take(store, "replica-a", source).await;
    let fenced = |fence: &Fence| SyncFence {
        source: fence.clone(),
        claim_targets: HashSet::new(),
    };
    store
        .commit_sync_fenced(
            source,
            commit(source, target, "1", "token-1"),
            Some(&fenced(&old)),
        )
        .await
        .expect("the owner commits");
    let moved = store
        .hand_over_leases("replica-a", &[(source, "replica-b".to_owned())], TTL, true)
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);

    // Act: A's late commit, and B's own.
    let late = store
        .commit_sync_fenced(
            source,
            commit(source, target, "2", "token-2"),
            Some(&fenced(&old)),
        )
        .await;
    let new = Fence {
        epoch: old.epoch + 1,
        owner: "replica-b".into(),
        calendar: source,
    };
    store
        .commit_sync_fenced(
            source,
            commit(source, target, "3", "token-3"),
            Some(&fenced(&new)),
        )
        .await
        .expect("the new owner commits");

    // Assert: A's was refused whole; B's is what the store holds.
    assert!(
        matches!(late, Err(StoreError::Fenced { calendar }) if calendar == source),
        "{late:?}"
    );
    let state = store.sync_state(source).await.unwrap();
    assert_eq!(state.sync_token.as_deref(), Some("token-3"));
    let rows = store.blocks_for_target(target).await.unwrap();
    assert_eq!(rows[0].desired_hash.as_deref(), Some("hash-3"));
}

#[tokio::test]
async fn a_commit_under_a_lapsed_lease_fails_alone_and_the_others_still_commit_together() {
    // Arrange: replica A holds eight source calendars; one of them has since been handed to B.
    let Some(db) = db("lapsed_in_a_batch").await else {
        return;
    };
    let store = &db.store;
    let mut calendars = Vec::new();
    for n in 1..=8 {
        let (source, target) = (account(store, n).await, account(store, 10 + n).await);
        let fence = SyncFence {
            source: take(store, "replica-a", source).await,
            claim_targets: HashSet::new(),
        };
        calendars.push((source, target, fence));
    }
    let stale = calendars[3].0;
    store
        .hand_over_leases("replica-a", &[(stale, "replica-b".to_owned())], TTL, true)
        .await
        .unwrap();
    let before = store.counters();

    // Act: A's eight commits at once, as a busy replica's syncs end side by side.
    let results = futures::future::join_all(calendars.iter().map(|(source, target, fence)| {
        store.commit_sync_fenced(
            *source,
            commit(*source, *target, "1", "token-1"),
            Some(fence),
        )
    }))
    .await;

    // Assert: only the stale one is refused; the seven are written, and it took a few
    // transactions, not one per commit (one failed joint try, then the seven together).
    for ((source, _, _), result) in calendars.iter().zip(&results) {
        if *source == stale {
            assert!(
                matches!(result, Err(StoreError::Fenced { calendar }) if *calendar == stale),
                "{result:?}"
            );
            assert_eq!(store.sync_state(stale).await.unwrap().sync_token, None);
        } else {
            assert!(result.is_ok(), "{result:?}");
            let state = store.sync_state(*source).await.unwrap();
            assert_eq!(state.sync_token.as_deref(), Some("token-1"));
        }
    }
    let spent = store.counters().write_transactions - before.write_transactions;
    assert!(spent <= 4, "{spent} write transactions for eight commits");
}

#[tokio::test]
async fn a_writer_under_a_lease_with_nothing_due_claims_without_a_write_transaction() {
    // Arrange: replica A owns a target whose one row it has already written.
    let Some(db) = db("nothing_due").await else {
        return;
    };
    let store = &db.store;
    let (target, a, held) = a_claims_the_one_row_of_a_target(store).await;
    store
        .record_writes_fenced("replica-a", &[applied(&held[0])], Vec::new(), Some(&a))
        .await
        .unwrap();
    let before = store.counters();

    // Act: the writer is woken again (a second wake-up of the change it already wrote).
    let again = store
        .claim_due_fenced(target, &claim("replica-a"), 10, Some(&a))
        .await
        .unwrap();

    // Assert: nothing, found by one read.
    assert!(again.is_empty());
    let spent = store.counters() - before;
    assert_eq!(spent.write_transactions, 0);
    assert_eq!(spent.statements, 1);
}

#[tokio::test]
async fn a_writer_whose_lease_was_taken_claims_nothing_and_its_records_are_refused() {
    // Arrange: A owns the target and claimed its due row; then A's lease lapsed (released
    // here, as an expiry would) and B took it.
    let Some(db) = db("fenced_writer").await else {
        return;
    };
    let store = &db.store;
    let (target, a, held) = a_claims_the_one_row_of_a_target(store).await;
    store
        .release_leases("replica-a", Some(&[target]))
        .await
        .unwrap();
    let b = take(store, "replica-b", target).await;

    // Act
    let a_claims = store
        .claim_due_fenced(target, &claim("replica-a"), 10, Some(&a))
        .await
        .unwrap();
    let report = applied(&held[0]);
    let a_records = store
        .record_writes_fenced(
            "replica-a",
            std::slice::from_ref(&report),
            Vec::new(),
            Some(&a),
        )
        .await;
    let b_claims = store
        .claim_due_fenced(target, &claim("replica-b"), 10, Some(&b))
        .await
        .unwrap();

    // Assert: A gets nothing and records nothing; B takes the row A had claimed.
    assert!(a_claims.is_empty());
    assert!(
        matches!(a_records, Err(StoreError::Fenced { .. })),
        "{a_records:?}"
    );
    assert_eq!(
        b_claims.len(),
        1,
        "the new owner takes the row over at once"
    );
    let row = &store.blocks_for_target(target).await.unwrap()[0];
    assert_eq!(row.state, BlockState::Pending);
    let b_report = WriteReport {
        row: b_claims[0].clone(),
        ..report
    };
    let recorded = store
        .record_writes_fenced("replica-b", &[b_report], Vec::new(), Some(&b))
        .await
        .unwrap();
    assert_eq!(recorded, 1);
}

#[tokio::test]
async fn an_expired_lease_is_free_for_another_replica_and_not_renewed_for_its_old_owner() {
    // Arrange: A's lease lasts one second.
    let Some(db) = db("expired_lease").await else {
        return;
    };
    let store = &db.store;
    let calendar = account(store, 1).await;
    store
        .acquire_leases("replica-a", &[calendar], Duration::from_secs(1))
        .await
        .unwrap();
    assert!(store
        .acquire_leases("replica-b", &[calendar], TTL)
        .await
        .unwrap()
        .is_empty());

    // Act: past its expiry.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let renewed = store.renew_leases("replica-a", TTL).await.unwrap();
    let taken = store
        .acquire_leases("replica-b", &[calendar], TTL)
        .await
        .unwrap();

    // Assert
    assert!(renewed.is_empty());
    assert_eq!(taken.len(), 1);
    assert_eq!(
        store.lease_owners(&[calendar]).await.unwrap(),
        vec![(calendar, "replica-b".to_owned())]
    );
}
