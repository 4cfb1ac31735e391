//! Finding and deleting blocks on a calendar by their marker.

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

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    Now,
    /// 410 or 404: someone (a writer, the user, a deleted series) was first.
    AlreadyGone,
}

/// Deletes one event (`sendUpdates=none`); an event that is already gone is not an error.
pub(crate) async fn delete_event(
    client: &AccountClient,
    calendar: &CalendarId,
    id: &EventId,
) -> Result<Deleted, GoogleError> {
    match client.events_delete(calendar, id).await {
        Ok(()) => Ok(Deleted::Now),
        Err(GoogleError::Gone | GoogleError::NotFound) => Ok(Deleted::AlreadyGone),
        Err(e) => Err(e),
    }
}

/// Deletes blocks series first, then occurrences whose series was not among them (deleting a
/// series already cancels its exceptions). Returns (deleted now, already gone).
pub(crate) async fn delete_blocks(
    client: &AccountClient,
    calendar: &CalendarId,
    blocks: &[&ListedBlock],
) -> Result<(u64, u64), GoogleError> {
    let mut ordered: Vec<&&ListedBlock> = blocks.iter().collect();
    ordered.sort_by_key(|b| b.is_occurrence());
    let series: std::collections::HashSet<&str> = blocks
        .iter()
        .filter(|b| !b.is_occurrence())
        .map(|b| b.id.as_str())
        .collect();
    let (mut now, mut gone) = (0, 0);
    for block in ordered {
        let covered = block
            .event
            .recurring_event_id
            .as_ref()
            .is_some_and(|s| series.contains(s.as_str()));
        if covered {
            now += 1;
            continue;
        }
        match delete_event(client, calendar, &block.id).await? {
            Deleted::Now => now += 1,
            Deleted::AlreadyGone => gone += 1,
        }
    }
    Ok((now, gone))
}
