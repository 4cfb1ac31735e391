//! The block marker: private extended properties that say "this event is a block".
//!
//! Every block carries the marker; every source event is checked for it before anything else,
//! so a block never produces a block — ours or another installation's. The marker also lets
//! `purge` and reconciliation find and re-derive blocks without any database state.

use std::collections::BTreeMap;

use crate::domain::{AccountId, EventId};

use super::ids::is_block_id;
use super::model::SourceEvent;

/// Private extended property keys (Google drops keys longer than 44 characters).
pub const MARKER_INSTALLATION_KEY: &str = "mcssInstallation";
pub const MARKER_SOURCE_ACCOUNT_KEY: &str = "mcssSourceAccount";
pub const MARKER_SOURCE_EVENT_KEY: &str = "mcssSourceEvent";

/// Who made a block and from what. Fields are kept as read (strings), because a marker of
/// another installation — or one a user edited — must still be recognised as a marker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Marker {
    pub installation: String,
    pub source_account: String,
    pub source_event: String,
}

impl Marker {
    pub fn new(installation: &str, source_account: AccountId, source_event: &EventId) -> Self {
        Self {
            installation: installation.to_owned(),
            source_account: source_account.to_string(),
            source_event: source_event.as_str().to_owned(),
        }
    }

    /// Reads a marker from an event's `extendedProperties.private`. Any one marker key makes
    /// it a marker (missing keys read as empty), so a partly edited block is still a block.
    pub fn from_private_properties<K, V>(props: impl IntoIterator<Item = (K, V)>) -> Option<Self>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut marker = Self {
            installation: String::new(),
            source_account: String::new(),
            source_event: String::new(),
        };
        let mut found = false;
        for (key, value) in props {
            let slot = match key.as_ref() {
                MARKER_INSTALLATION_KEY => &mut marker.installation,
                MARKER_SOURCE_ACCOUNT_KEY => &mut marker.source_account,
                MARKER_SOURCE_EVENT_KEY => &mut marker.source_event,
                _ => continue,
            };
            value.as_ref().clone_into(slot);
            found = true;
        }
        found.then_some(marker)
    }

    /// The `extendedProperties.private` map a block carries.
    pub fn to_private_properties(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                MARKER_INSTALLATION_KEY.to_owned(),
                self.installation.clone(),
            ),
            (
                MARKER_SOURCE_ACCOUNT_KEY.to_owned(),
                self.source_account.clone(),
            ),
            (
                MARKER_SOURCE_EVENT_KEY.to_owned(),
                self.source_event.clone(),
            ),
        ])
    }

    pub fn source_account_id(&self) -> Option<AccountId> {
        AccountId::parse(&self.source_account).ok()
    }

    pub fn source_event_id(&self) -> Option<EventId> {
        EventId::parse(&self.source_event).ok()
    }
}

/// Whether `event` is a block made by this installation: it carries our marker, or (for
/// tombstones, which carry no properties) its id is one of our block ids.
pub fn is_ours(event: &SourceEvent, installation: &str) -> bool {
    match &event.marker {
        Some(marker) => marker.installation == installation,
        None => has_block_id(event, installation),
    }
}

/// Whether `event` is a block of any installation (loop prevention).
pub fn is_block(event: &SourceEvent, installation: &str) -> bool {
    event.marker.is_some() || has_block_id(event, installation)
}

fn has_block_id(event: &SourceEvent, installation: &str) -> bool {
    is_block_id(installation, event.id.as_str())
        || event
            .recurring_event_id
            .as_ref()
            .is_some_and(|series| is_block_id(installation, series.as_str()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_marker_round_trips_through_private_properties() {
        let marker = Marker::new("inst-1", AccountId::new(7), &EventId::parse("abc").unwrap());
        let props = marker.to_private_properties();
        assert_eq!(
            Marker::from_private_properties(&props),
            Some(marker.clone())
        );
        assert_eq!(marker.source_account_id(), Some(AccountId::new(7)));
        assert_eq!(marker.source_event_id().unwrap().as_str(), "abc");
    }

    #[test]
    fn marker_keys_fit_googles_44_character_limit() {
        for key in [
            MARKER_INSTALLATION_KEY,
            MARKER_SOURCE_ACCOUNT_KEY,
            MARKER_SOURCE_EVENT_KEY,
        ] {
            assert!(key.len() <= 44, "{key}");
        }
    }

    #[test]
    fn any_single_marker_key_is_a_marker_and_other_keys_are_not() {
        let partial = HashMap::from([(MARKER_SOURCE_EVENT_KEY, "x")]);
        let marker = Marker::from_private_properties(&partial).unwrap();
        assert_eq!(marker.source_event, "x");
        assert!(marker.installation.is_empty());
        let foreign = HashMap::from([("blocksync_src", "a:b")]);
        assert_eq!(Marker::from_private_properties(&foreign), None);
    }
}
