//! [`SyncId`]: the name of one change's journey through the service.
//!
//! A webhook ping gets one when it arrives; the sync it triggers (or, for a poll or a manual
//! sync, the sync itself) carries it, stamps it on every outbox row it queues, and every
//! block write logs it. So `sync_id=…` in the JSON logs follows one change from the ping to
//! its last write, across actors and restarts.

use std::fmt;

/// 64 random bits, shown as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncId(u64);

impl SyncId {
    pub fn random() -> Self {
        Self(rand::random())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 16)
            .then(|| u64::from_str_radix(raw, 16).ok())
            .flatten()
            .map(Self)
    }
}

impl fmt::Display for SyncId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_id_reads_back_what_it_prints() {
        let id = SyncId::random();
        assert_eq!(SyncId::parse(&id.to_string()), Some(id));
        assert_eq!(SyncId::parse("xyz"), None);
    }
}
