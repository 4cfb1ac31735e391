//! The one integration-test binary of `mcss` (one binary links once, which matters on two
//! cores). Each module is one area, black-box where it can be: the real `Application` or the
//! real `mcss` binary against the in-process Google emulator, on SQLite and PostgreSQL.
//! `support` holds the shared harness: `spawn_app`, `TestDb`, `eventually`, the
//! `on_both_backends!` macro and the invariant checks.

#[macro_use]
mod support;

mod admin_http;
mod browser;
mod cli;
mod config_env;
mod crash_restart;
mod demo_cli;
mod engine;
mod google_client;
mod groups;
mod import;
mod leases;
mod live_view;
mod logs;
mod ops;
mod picks;
mod replicas;
mod replicas_processes;
mod scale_limits;
mod serve;
mod soak;
mod store;
mod supervision;
mod sync_propagation;
mod sync_resilience;
mod sync_rules;
mod sync_series;
mod webhook_replay;
