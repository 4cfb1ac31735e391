//! OM76.MCSS — the Multi-Calendar Sync Service.
//!
//! When an event appears, moves or disappears on one connected Google calendar, the service
//! keeps a private "block" event in step on every other connected calendar.
//!
//! # Layout
//! - [`config`]: one typed [`config::Settings`] read from the environment (and `.env`).
//! - [`telemetry`]: tracing subscriber (JSON or pretty) and the panic hook.
//! - [`metrics`]: every Prometheus metric name and description, and the recorder.
//! - [`domain`]: validated ids (`AccountId`, `CalendarId`, `EventId`, `ChannelId`, `BlockId`).
//! - [`store`]: sea-orm entities and named queries over PostgreSQL or SQLite; refresh tokens
//!   are encrypted at rest.
//! - [`google`]: the Calendar v3 and OAuth client with classified errors.
//! - [`sync`]: the pure planner — source event in, desired block out.
//! - [`actors`]: the ractor tree — `SyncSupervisor`, one `CalendarActor` per account, one
//!   `BlockWriter` per target calendar.
//! - [`http`]: the thin hyper ingress — health, metrics, webhooks, OAuth, admin.
//! - [`startup`]: [`startup::Application`] wires store, actors and HTTP; [`shutdown`] stops
//!   them in order under one deadline.
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
