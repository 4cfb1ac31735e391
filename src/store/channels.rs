//! Push channels: the current watch of each account and the ones being retired.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _, Set};

use super::entities::watch_channels;
use super::{now, NewChannel, Store, StoreError, WatchChannel};
use crate::domain::{AccountId, ChannelId};

fn to_record(row: watch_channels::Model) -> Result<WatchChannel, StoreError> {
    Ok(WatchChannel {
        id: row.id,
        account_id: AccountId::new(row.account_id),
        channel_id: ChannelId::parse(&row.channel_id)
            .map_err(|e| StoreError::Corrupt(format!("watch channel {}: {e}", row.id)))?,
        resource_id: row.resource_id,
        token_hash: row.token_hash,
        expires_at: row.expires_at,
        created_at: row.created_at,
        stopped_at: row.stopped_at,
    })
}

impl Store {
    /// Records a newly opened channel. The previous one stays current until it is marked
    /// stopped, so pings on either are accepted during the handover.
    #[tracing::instrument(name = "store.save_channel", skip_all, fields(account = %channel.account_id))]
    pub async fn save_channel(&self, channel: NewChannel) -> Result<WatchChannel, StoreError> {
        let channel_id = channel.channel_id.clone();
        let row = watch_channels::Entity::insert(watch_channels::ActiveModel {
            account_id: Set(channel.account_id.get()),
            channel_id: Set(channel.channel_id.into_string()),
            resource_id: Set(channel.resource_id),
            token_hash: Set(channel.token_hash),
            expires_at: Set(channel.expires_at),
            created_at: Set(now()),
            stopped_at: Set(None),
            ..Default::default()
        })
        .exec_with_returning(self.connection())
        .await
        .map_err(|e| {
            StoreError::conflict_or_db(e, || format!("channel {channel_id} already exists"))
        })?;
        to_record(row)
    }

    /// The live channel of an account that expires last, if any.
    pub async fn current_channel(
        &self,
        account_id: AccountId,
    ) -> Result<Option<WatchChannel>, StoreError> {
        watch_channels::Entity::find()
            .filter(watch_channels::Column::AccountId.eq(account_id.get()))
            .filter(watch_channels::Column::StoppedAt.is_null())
            .order_by_desc(watch_channels::Column::ExpiresAt)
            .order_by_desc(watch_channels::Column::Id)
            .one(self.connection())
            .await?
            .map(to_record)
            .transpose()
    }

    /// [`Store::current_channel`] of many accounts in a few statements (a start of thousands
    /// of calendars); an account with no live channel is absent.
    pub async fn current_channels(
        &self,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, WatchChannel>, StoreError> {
        let mut current = HashMap::with_capacity(accounts.len());
        for chunk in accounts.chunks(500) {
            let rows = watch_channels::Entity::find()
                .filter(watch_channels::Column::AccountId.is_in(chunk.iter().map(|a| a.get())))
                .filter(watch_channels::Column::StoppedAt.is_null())
                .order_by_desc(watch_channels::Column::ExpiresAt)
                .order_by_desc(watch_channels::Column::Id)
                .all(self.connection())
                .await?;
            for row in rows {
                // The first row of an account is the one `current_channel` would answer.
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    current.entry(AccountId::new(row.account_id))
                {
                    slot.insert(to_record(row)?);
                }
            }
        }
        Ok(current)
    }

    /// The channel a webhook ping names (stopped ones included, so the caller can tell
    /// "stale" from "forged").
    pub async fn channel_by_id(
        &self,
        channel_id: &ChannelId,
    ) -> Result<Option<WatchChannel>, StoreError> {
        watch_channels::Entity::find()
            .filter(watch_channels::Column::ChannelId.eq(channel_id.as_str()))
            .one(self.connection())
            .await?
            .map(to_record)
            .transpose()
    }

    /// Marks a channel stopped (idempotent: the first stop time is kept).
    pub async fn mark_channel_stopped(
        &self,
        channel_id: &ChannelId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        watch_channels::Entity::update_many()
            .col_expr(watch_channels::Column::StoppedAt, Some(at).into())
            .filter(watch_channels::Column::ChannelId.eq(channel_id.as_str()))
            .filter(watch_channels::Column::StoppedAt.is_null())
            .exec(self.connection())
            .await?;
        Ok(())
    }

    /// Live channels that expire before `t` (to renew), soonest first.
    pub async fn channels_expiring_before(
        &self,
        t: DateTime<Utc>,
    ) -> Result<Vec<WatchChannel>, StoreError> {
        watch_channels::Entity::find()
            .filter(watch_channels::Column::StoppedAt.is_null())
            .filter(watch_channels::Column::ExpiresAt.lt(t))
            .order_by_asc(watch_channels::Column::ExpiresAt)
            .all(self.connection())
            .await?
            .into_iter()
            .map(to_record)
            .collect()
    }
}
