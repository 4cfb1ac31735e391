//! Source events: what the store last saw on each account's calendar.

use sea_orm::{
    ColumnTrait as _, Condition, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _,
};

use super::entities::source_events;
use super::{Store, StoreError, StoredEvent};
use crate::domain::{AccountId, EventId};

/// Ids per `IN (…)` list: well under SQLite's bound-variable limit.
const CHUNK: usize = 200;

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

    /// The stored events of `account` with these ids, and every event of the series among
    /// them (a listed exception brings its master and siblings, a listed master its
    /// exceptions): what a sync pass needs to re-plan whole series after an incremental
    /// listing.
    pub async fn events_and_their_series(
        &self,
        account_id: AccountId,
        ids: &[&EventId],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        use source_events::Column as C;
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let ids = || chunk.iter().map(|id| id.as_str());
            let rows = source_events::Entity::find()
                .filter(C::AccountId.eq(account_id.get()))
                .filter(
                    Condition::any()
                        .add(C::EventId.is_in(ids()))
                        .add(C::RecurringEventId.is_in(ids())),
                )
                .all(self.connection())
                .await?;
            out.extend(rows);
        }
        out.sort_by_key(|r| r.id);
        out.dedup_by_key(|r| r.id);
        out.into_iter().map(to_record).collect()
    }

    /// Every stored event on any account with one of these iCalUIDs, for the same-meeting
    /// rule: what each calendar holds of those meetings, and the other calendars' copies to
    /// re-plan. Attendance, transparency and original start are in `data`.
    pub async fn events_by_ical_uids(
        &self,
        ical_uids: &[&str],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        for chunk in ical_uids.chunks(CHUNK) {
            let rows = source_events::Entity::find()
                .filter(source_events::Column::IcalUid.is_in(chunk.iter().copied()))
                .filter(source_events::Column::IsBlock.eq(false))
                .order_by_asc(source_events::Column::AccountId)
                .order_by_asc(source_events::Column::EventId)
                .all(self.connection())
                .await?;
            out.extend(rows);
        }
        out.into_iter().map(to_record).collect()
    }
}
