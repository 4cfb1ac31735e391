//! Every metric the service exports: its name, its description, and the recorder.
//!
//! Names live here and nowhere else, so dashboards and alerts have one place to look.
//! [`install`] puts a Prometheus recorder in place once per process; `/metrics` renders it.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "mcss_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "mcss_http_request_duration_seconds";
pub const WEBHOOK_PINGS: &str = "mcss_webhook_pings_total";
pub const SYNCS: &str = "mcss_syncs_total";
pub const SYNC_DURATION: &str = "mcss_sync_duration_seconds";
pub const GOOGLE_REQUESTS: &str = "mcss_google_requests_total";
pub const GOOGLE_REQUEST_DURATION: &str = "mcss_google_request_duration_seconds";
pub const BLOCK_OPERATIONS: &str = "mcss_block_operations_total";
pub const PENDING_OPERATIONS: &str = "mcss_pending_operations";
pub const ACTOR_RESTARTS: &str = "mcss_actor_restarts_total";
pub const PROPAGATION_LATENCY: &str = "mcss_propagation_latency_seconds";
pub const ACCOUNTS: &str = "mcss_accounts";
pub const UPTIME: &str = "mcss_uptime_seconds";
pub const LEASE_ACQUISITIONS: &str = "mcss_lease_acquisitions_total";
pub const LEASE_LOSSES: &str = "mcss_lease_losses_total";
pub const LEASE_HANDOVERS: &str = "mcss_lease_handovers_total";
pub const OWNED_CALENDARS: &str = "mcss_owned_calendars";
pub const REPLICA_NOTES: &str = "mcss_replica_notes_total";
pub const DB_WRITE_TRANSACTIONS: &str = "mcss_db_write_transactions_total";
pub const DB_STATEMENTS: &str = "mcss_db_statements_total";
pub const DB_AUDIT_ROWS: &str = "mcss_db_audit_rows_total";
pub const DB_ACCOUNT_LIST_READS: &str = "mcss_db_account_list_reads_total";
pub const DB_DEADLOCKS: &str = "mcss_db_deadlocks_total";
pub const CALENDAR_STARTS: &str = "mcss_calendar_actor_starts_total";
pub const SYNCS_IN_FLIGHT: &str = "mcss_syncs_in_flight";
pub const DB_COMMIT_WAIT: &str = "mcss_db_commit_wait_seconds";
pub const DB_GROUP_COMMIT_DURATION: &str = "mcss_db_group_commit_duration_seconds";
pub const DB_GROUP_COMMIT_JOBS: &str = "mcss_db_group_commit_jobs_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
                ])
                .expect("the bucket list is not empty")
                .install_recorder()
                .unwrap_or_else(|_| {
                    // Another recorder is already global (a test harness): keep a private one
                    // so /metrics still renders something consistent.
                    PrometheusBuilder::new().build_recorder().handle()
                });
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_service();
    describe_replicas();
    describe_database();
}

/// Requests, syncs, Google calls, block writes and actors.
fn describe_service() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests served, by route and status.");
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency by route."
    );
    describe_counter!(WEBHOOK_PINGS, "Push notifications received, by result.");
    describe_counter!(
        SYNCS,
        "Calendar syncs, by kind (full|incremental) and result."
    );
    describe_histogram!(
        SYNC_DURATION,
        Unit::Seconds,
        "Duration of one calendar sync, by kind."
    );
    describe_counter!(
        GOOGLE_REQUESTS,
        "Google API requests, by method and status."
    );
    describe_histogram!(
        GOOGLE_REQUEST_DURATION,
        Unit::Seconds,
        "Google API request latency, by method."
    );
    describe_counter!(
        BLOCK_OPERATIONS,
        "Block writes, by op (insert|patch|delete|restore) and result."
    );
    describe_gauge!(
        PENDING_OPERATIONS,
        "Desired blocks not yet applied, by target account."
    );
    describe_counter!(ACTOR_RESTARTS, "Actor restarts by the supervisor, by kind.");
    describe_histogram!(
        PROPAGATION_LATENCY,
        Unit::Seconds,
        "From a push ping (or poll) to the last block write it caused."
    );
    describe_gauge!(ACCOUNTS, "Connected accounts, by status.");
    describe_gauge!(UPTIME, "Seconds since the process started.");
    describe_counter!(
        CALENDAR_STARTS,
        "CalendarActors started (their post_start done), first starts and restarts."
    );
    describe_gauge!(
        SYNCS_IN_FLIGHT,
        "Calendar syncs running now (bounded by MAX_CONCURRENT_SYNCS)."
    );
}

/// Replicas and their calendar leases.
fn describe_replicas() {
    describe_counter!(
        LEASE_ACQUISITIONS,
        "Calendar leases this replica took, by how (free|handed)."
    );
    describe_counter!(
        LEASE_LOSSES,
        "Calendar leases this replica lost without giving them away (expired or taken)."
    );
    describe_counter!(
        LEASE_HANDOVERS,
        "Calendar leases this replica gave to another, by why (rebalance|shutdown)."
    );
    describe_gauge!(OWNED_CALENDARS, "Calendars this replica owns now.");
    describe_counter!(
        REPLICA_NOTES,
        "Notes received from other replicas, by kind (ping|wake|sync|leases) and result."
    );
}

/// The store: its transactions, statements, audit rows, deadlocks and group commits.
fn describe_database() {
    describe_counter!(
        DB_WRITE_TRANSACTIONS,
        "Database transactions that may write (write transactions and autocommit writes)."
    );
    describe_counter!(
        DB_STATEMENTS,
        "Statements sent to the database (each a round trip on PostgreSQL)."
    );
    describe_counter!(DB_AUDIT_ROWS, "Sync-log (audit) rows inserted.");
    describe_counter!(DB_ACCOUNT_LIST_READS, "Reads of the whole account list.");
    describe_counter!(
        DB_DEADLOCKS,
        "Transactions PostgreSQL aborted to break a deadlock (each is run again)."
    );
    describe_histogram!(
        DB_COMMIT_WAIT,
        Unit::Seconds,
        "From a sync's or a writer's commit being asked for to its group commit's answer."
    );
    describe_histogram!(
        DB_GROUP_COMMIT_DURATION,
        Unit::Seconds,
        "One group commit: its transaction, every job in it, and the commit."
    );
    describe_counter!(
        DB_GROUP_COMMIT_JOBS,
        "Jobs written by group commits (over the duration's count: jobs per transaction)."
    );
}
