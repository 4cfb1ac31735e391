//! OM76.MCSS — the Multi-Calendar Sync Service.
//!
//! When an event appears, moves or disappears on one connected Google calendar, the service
//! keeps a private "block" event in step on every other connected calendar.
//!
//! # Layout
//! - [`config`]: one typed [`config::Settings`] read from the environment (and `.env`), every
//!   variable validated at start with a one-line error naming it.
//! - [`telemetry`]: tracing subscriber (JSON with span lists, or pretty) and the panic hook.
//! - [`metrics`]: every Prometheus metric name and description, and the recorder.
//! - [`domain`]: validated ids (`AccountId`, `CalendarId`, `EventId`, `ChannelId`, `BlockId`)
//!   and the `SyncId` that names one change in the logs.
//! - [`store`]: sea-orm entities and named queries over PostgreSQL or SQLite — accounts,
//!   channels, sync state, source events, the outbox and its writer protocol, the sync log;
//!   refresh tokens encrypted at rest.
//! - [`google`]: the Calendar v3 and OAuth client with classified errors.
//! - [`sync`]: the pure sync pass — what was listed and what is stored in, one plan out — and
//!   the planner beneath it (rules, the per-occurrence model of series, block bodies, ids).
//! - [`actors`]: the ractor tree — `SyncSupervisor`, one `CalendarActor` per calendar (its
//!   sync job and watch channel), one `BlockWriter` per target calendar — and `Control`, the
//!   one handle everything else drives it through.
//! - [`ops`]: whole-calendar operations (connect, purge, remove, reconcile) that write
//!   through the outbox like everything else.
//! - [`services`]: the long-lived collaborators (settings, store, Google client, token cache)
//!   shared by every actor, command and page.
//! - [`http`]: the thin hyper ingress — health, metrics, webhooks (with replay protection),
//!   OAuth onboarding, the admin dashboard.
//! - [`coordinator`]: Redis (optional): webhook de-duplication across replicas.
//! - [`startup`]: [`startup::Application`] wires store, actors and HTTP; [`shutdown`] stops
//!   them in order under one deadline.
//! - [`commands`]: what each `mcss` subcommand does (`main.rs` only parses).
//! - [`demo`]: `mcss demo` — the emulator, a temporary SQLite database and five calendars.
#![forbid(unsafe_code)]

pub mod actors;
pub mod commands;
pub mod config;
pub mod coordinator;
pub mod demo;
pub mod domain;
pub mod google;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod services;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod sync;
pub mod telemetry;
