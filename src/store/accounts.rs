//! Accounts: create, read, status changes and the encrypted refresh token.

use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    Set,
};
use secrecy::{ExposeSecret as _, SecretString};

use super::crypto::account_aad;
use super::entities::{accounts, sync_state};
use super::{now, Account, AccountStatus, NewAccount, Store, StoreError};
use crate::domain::{AccountId, CalendarId};

fn to_record(row: accounts::Model) -> Result<Account, StoreError> {
    Ok(Account {
        id: AccountId::new(row.id),
        calendar_id: CalendarId::parse(&row.calendar_id)
            .map_err(|e| StoreError::Corrupt(format!("account {}: {e}", row.id)))?,
        status: AccountStatus::from_db(&row.status)?,
        alias: row.alias,
        email: row.email,
        status_reason: row.status_reason,
        time_zone: row.time_zone,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

impl Store {
    /// Adds an account (status `active`) with its token encrypted, and its empty sync state.
    ///
    /// Fails with [`StoreError::Conflict`] when the alias is taken.
    #[tracing::instrument(name = "store.create_account", skip_all, fields(alias = %new.alias))]
    pub async fn create_account(&self, new: NewAccount) -> Result<Account, StoreError> {
        let sealed = self
            .cipher()
            .seal(new.refresh_token.expose_secret(), &account_aad(&new.alias))?;
        let at = now();
        let txn = self.write_txn().await?;
        let alias = new.alias.clone();
        let row = accounts::ActiveModel {
            alias: Set(new.alias),
            email: Set(new.email),
            calendar_id: Set(new.calendar_id.into_string()),
            refresh_token_enc: Set(sealed),
            status: Set(AccountStatus::Active.as_str().to_owned()),
            status_reason: Set(None),
            time_zone: Set(new.time_zone),
            created_at: Set(at),
            updated_at: Set(at),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(|e| {
            StoreError::conflict_or_db(e, || format!("an account named {alias:?} already exists"))
        })?;
        sync_state::ActiveModel {
            account_id: Set(row.id),
            sync_token: Set(None),
            last_full_sync_at: Set(None),
            last_incremental_sync_at: Set(None),
            last_result: Set(None),
            last_error: Set(None),
            mass_delete_hold: Set(false),
            updated_at: Set(at),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        to_record(row)
    }

    /// The account with `id`, or [`StoreError::NotFound`].
    pub async fn account(&self, id: AccountId) -> Result<Account, StoreError> {
        self.account_row(id).await.and_then(to_record)
    }

    /// The account with this alias, if any.
    pub async fn account_by_alias(&self, alias: &str) -> Result<Option<Account>, StoreError> {
        accounts::Entity::find()
            .filter(accounts::Column::Alias.eq(alias))
            .one(self.connection())
            .await?
            .map(to_record)
            .transpose()
    }

    /// Accounts on this calendar (normally at most one), for reconnecting after re-consent.
    pub async fn accounts_by_calendar(
        &self,
        calendar_id: &CalendarId,
    ) -> Result<Vec<Account>, StoreError> {
        accounts::Entity::find()
            .filter(accounts::Column::CalendarId.eq(calendar_id.as_str()))
            .order_by_asc(accounts::Column::Id)
            .all(self.connection())
            .await?
            .into_iter()
            .map(to_record)
            .collect()
    }

    /// Every account, oldest first.
    pub async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        accounts::Entity::find()
            .order_by_asc(accounts::Column::Id)
            .all(self.connection())
            .await?
            .into_iter()
            .map(to_record)
            .collect()
    }

    /// Changes an account's status; `reason` is shown to the operator (plain words, no secrets).
    #[tracing::instrument(name = "store.set_account_status", skip(self, reason))]
    pub async fn set_account_status(
        &self,
        id: AccountId,
        status: AccountStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let result = accounts::Entity::update_many()
            .col_expr(accounts::Column::Status, status.as_str().into())
            .col_expr(
                accounts::Column::StatusReason,
                reason.map(str::to_owned).into(),
            )
            .col_expr(accounts::Column::UpdatedAt, now().into())
            .filter(accounts::Column::Id.eq(id.get()))
            .exec(self.connection())
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::not_found("account", id));
        }
        Ok(())
    }

    /// Stores a new refresh token (after re-consent) and makes the account active again.
    #[tracing::instrument(name = "store.set_refresh_token", skip(self, token))]
    pub async fn set_refresh_token(
        &self,
        id: AccountId,
        token: &SecretString,
    ) -> Result<(), StoreError> {
        let row = self.account_row(id).await?;
        let sealed = self
            .cipher()
            .seal(token.expose_secret(), &account_aad(&row.alias))?;
        let result = accounts::Entity::update_many()
            .col_expr(accounts::Column::RefreshTokenEnc, sealed.into())
            .col_expr(
                accounts::Column::Status,
                AccountStatus::Active.as_str().into(),
            )
            .col_expr(
                accounts::Column::StatusReason,
                Option::<String>::None.into(),
            )
            .col_expr(accounts::Column::UpdatedAt, now().into())
            .filter(accounts::Column::Id.eq(id.get()))
            // The alias is the AAD: if it changed meanwhile, this ciphertext would not open.
            .filter(accounts::Column::Alias.eq(row.alias.as_str()))
            .exec(self.connection())
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::Conflict(format!(
                "account {id} changed while its token was being replaced"
            )));
        }
        Ok(())
    }

    /// The decrypted refresh token of an account.
    pub async fn refresh_token(&self, id: AccountId) -> Result<SecretString, StoreError> {
        let row = self.account_row(id).await?;
        Ok(self
            .cipher()
            .open(&row.refresh_token_enc, &account_aad(&row.alias))?)
    }

    /// Removes an account and, by cascade, its channels, sync state, source events and the
    /// outbox rows targeting it. Blocks it was the *source* of stay in the outbox: retract
    /// them first with [`Store::retract_blocks_from_source`] so the writers delete them.
    #[tracing::instrument(name = "store.delete_account", skip(self))]
    pub async fn delete_account(&self, id: AccountId) -> Result<(), StoreError> {
        let result = accounts::Entity::delete_by_id(id.get())
            .exec(self.connection())
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::not_found("account", id));
        }
        Ok(())
    }

    async fn account_row(&self, id: AccountId) -> Result<accounts::Model, StoreError> {
        accounts::Entity::find_by_id(id.get())
            .one(self.connection())
            .await?
            .ok_or_else(|| StoreError::not_found("account", id))
    }
}
