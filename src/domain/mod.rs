//! Domain vocabulary shared by every layer: validated identifiers, and the [`SyncId`] that
//! names one change's way through the service.
//!
//! Ids are parsed once at the edge (HTTP, Google responses, the store) so that a malformed id
//! cannot travel far into the system.

mod ids;
mod sync_id;

pub use ids::{AccountId, BlockId, CalendarId, ChannelId, EventId, IdError};
pub use sync_id::SyncId;
