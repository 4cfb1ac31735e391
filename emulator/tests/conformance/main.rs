//! The emulator's one integration-test binary: every conformance area is a module here, so the
//! crate links a single test executable (each file under `tests/` would otherwise be its own).
//!
//! `support` holds the shared scaffolding (an emulator per test, an authorized client, a push
//! receiver, bounded `eventually`); the other modules are areas of the Google surface.

mod auth;
mod binary;
mod control_and_batch;
mod events;
mod faults;
mod push;
mod recurrence_differential;
mod series;
mod stock_client;
mod support;
mod sync;
mod types;
