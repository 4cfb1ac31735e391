//! sea-orm entities, one per table created by the `migration` crate.
//!
//! These are the raw rows. Code outside `store` works with the validated records in
//! [`super::records`] instead, so that an id read from the database is parsed once, here at
//! the edge, and a refresh token never leaves the store encrypted or unencrypted by accident.

pub mod accounts;
pub mod credentials;
pub mod desired_blocks;
pub mod disabled_links;
pub mod groups;
pub mod kv;
pub mod source_events;
pub mod sync_log;
pub mod sync_state;
pub mod watch_channels;
