//! Domain vocabulary shared by every layer: validated identifiers.
//!
//! Ids are parsed once at the edge (HTTP, Google responses, the store) so that a malformed id
//! cannot travel far into the system.

mod ids;

pub use ids::{AccountId, BlockId, CalendarId, ChannelId, EventId, IdError};
