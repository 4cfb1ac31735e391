//! Finding blocks on a calendar by their marker (reads only: deletes go through the outbox).

use crate::domain::{CalendarId, EventId};
use crate::google::{AccountClient, Event, EventStatus, EventsQuery, GoogleError};
use crate::sync::{Marker, MARKER_INSTALLATION_KEY};

/// A block of this installation as listed on a calendar.
#[derive(Debug, Clone)]
pub(crate) struct ListedBlock {
    pub id: EventId,
    pub marker: Marker,
    pub event: Event,
}

impl ListedBlock {
    /// Not a tombstone nor a cancelled occurrence.
    pub fn is_live(&self) -> bool {
        !matches!(self.event.status, Some(EventStatus::Cancelled))
    }

    /// An occurrence of a block series (a modified or cancelled exception).
    pub fn is_occurrence(&self) -> bool {
        self.event.recurring_event_id.is_some()
    }
}

/// The marker an event carries, if any.
pub(crate) fn marker_of(event: &Event) -> Option<Marker> {
    Marker::from_private_properties(&event.extended_properties.as_ref()?.private)
}

/// Every event on `calendar` whose private property `key` is `value` and whose marker names
/// `installation` (the filter alone would also match another installation's blocks when the
/// key is not the installation's). Series stay unexpanded; tombstones are included, because
/// `showDeleted` is always sent.
pub(crate) async fn list_blocks(
    client: &AccountClient,
    calendar: &CalendarId,
    installation: &str,
    key: &str,
    value: &str,
) -> Result<Vec<ListedBlock>, GoogleError> {
    let query = EventsQuery {
        private_extended_property: Some(format!("{key}={value}")),
        single_events: false,
        ..EventsQuery::default()
    };
    let listing = client.list_all(calendar, &query).await?;
    Ok(listing
        .events
        .into_iter()
        .filter_map(|event| {
            let marker = marker_of(&event)?;
            let id = event.id.clone()?;
            (marker.installation == installation).then_some(ListedBlock { id, marker, event })
        })
        .collect())
}

/// Every block of `installation` on `calendar`.
pub(crate) async fn list_installation_blocks(
    client: &AccountClient,
    calendar: &CalendarId,
    installation: &str,
) -> Result<Vec<ListedBlock>, GoogleError> {
    list_blocks(
        client,
        calendar,
        installation,
        MARKER_INSTALLATION_KEY,
        installation,
    )
    .await
}
