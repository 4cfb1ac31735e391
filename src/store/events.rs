//! Source events: what the store last saw on each account's calendar.

use sea_orm::{
    ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _, QueryOrder as _,
};

use super::entities::source_events;
use super::{Store, StoreError, StoredEvent};
use crate::domain::{AccountId, EventId};

fn to_record(row: source_events::Model) -> Result<StoredEvent, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("source event {}: {e}", row.id));
    Ok(StoredEvent {
        id: row.id,
        account_id: AccountId::new(row.account_id),
        event_id: EventId::parse(&row.event_id).map_err(|e| corrupt(e.to_string()))?,
        recurring_event_id: row
            .recurring_event_id
            .as_deref()
            .map(EventId::parse)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        data: serde_json::from_str(&row.data).map_err(|e| corrupt(e.to_string()))?,
        ical_uid: row.ical_uid,
        status: row.status,
        is_block: row.is_block,
        google_updated: row.google_updated,
        updated_at: row.updated_at,
    })
}

impl Store {
    /// Every stored event of an account, by event id.
    pub async fn source_events(
        &self,
        account_id: AccountId,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        source_events::Entity::find()
            .filter(source_events::Column::AccountId.eq(account_id.get()))
            .order_by_asc(source_events::Column::EventId)
            .all(self.connection())
            .await?
            .into_iter()
            .map(to_record)
            .collect()
    }

    /// One stored event of an account.
    pub async fn source_event(
        &self,
        account_id: AccountId,
        event_id: &EventId,
    ) -> Result<Option<StoredEvent>, StoreError> {
        source_events::Entity::find()
            .filter(source_events::Column::AccountId.eq(account_id.get()))
            .filter(source_events::Column::EventId.eq(event_id.as_str()))
            .one(self.connection())
            .await?
            .map(to_record)
            .transpose()
    }

    /// How many events are stored for an account (the base of the mass-delete check).
    pub async fn source_event_count(&self, account_id: AccountId) -> Result<u64, StoreError> {
        Ok(source_events::Entity::find()
            .filter(source_events::Column::AccountId.eq(account_id.get()))
            .count(self.connection())
            .await?)
    }

    /// Live (not cancelled, not a block) events with this iCalUID on any account, for the
    /// same-meeting rule: a target that already holds the meeting gets no block for it.
    /// Attendance, transparency and original start are in `data` for the planner to check.
    pub async fn live_events_by_ical_uid(
        &self,
        ical_uid: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        source_events::Entity::find()
            .filter(source_events::Column::IcalUid.eq(ical_uid))
            .filter(source_events::Column::Status.ne("cancelled"))
            .filter(source_events::Column::IsBlock.eq(false))
            .order_by_asc(source_events::Column::AccountId)
            .order_by_asc(source_events::Column::EventId)
            .all(self.connection())
            .await?
            .into_iter()
            .map(to_record)
            .collect()
    }
}
