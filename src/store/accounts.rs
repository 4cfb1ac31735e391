//! Accounts (connected calendars): create, read, status changes, and the refresh token
//! they reach Google with — one per Google account, kept in `credentials` and shared by every
//! calendar of that account.

use std::collections::HashMap;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, Set,
};
use secrecy::{ExposeSecret as _, SecretString};

use super::crypto::{account_aad, credential_aad};
use super::entities::{accounts, credentials, sync_state};
use super::groups::{ensure_group, group_names};
use super::{now, Account, AccountStatus, CalendarRules, NewAccount, Store, StoreError};
use crate::config::BlockDetails;
use crate::domain::{AccountId, CalendarId};

pub(super) fn to_record(
    row: accounts::Model,
    groups: &HashMap<i64, String>,
) -> Result<Account, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("account {}: {e}", row.id));
    let rules = CalendarRules {
        block_details: row
            .block_details
            .as_deref()
            .map(|raw| BlockDetails::parse(raw).ok_or_else(|| corrupt(format!("details {raw:?}"))))
            .transpose()?,
        block_title_template: row.block_title_template,
        skip_all_day: row.skip_all_day,
        skip_out_of_office: row.skip_out_of_office,
        skip_focus_time: row.skip_focus_time,
        exclude_title_regex: row.exclude_title_regex,
        look_back_days: row.look_back_days.and_then(|d| u32::try_from(d).ok()),
    };
    Ok(Account {
        id: AccountId::new(row.id),
        calendar_id: CalendarId::parse(&row.calendar_id).map_err(|e| corrupt(e.to_string()))?,
        status: AccountStatus::from_db(&row.status)?,
        group: row
            .group_id
            .and_then(|g| groups.get(&g).cloned())
            .unwrap_or_else(|| super::DEFAULT_GROUP.to_owned()),
        credential_id: row.credential_id,
        alias: row.alias,
        email: row.email,
        status_reason: row.status_reason,
        time_zone: row.time_zone,
        created_at: row.created_at,
        updated_at: row.updated_at,
        rules,
    })
}

/// The rule columns of a row, from rules (set fields only).
pub(super) fn rule_columns(
    rules: &CalendarRules,
) -> Vec<(accounts::Column, sea_orm::sea_query::SimpleExpr)> {
    use accounts::Column as C;
    let mut columns = Vec::new();
    if let Some(v) = &rules.block_title_template {
        columns.push((C::BlockTitleTemplate, v.clone().into()));
    }
    if let Some(v) = rules.block_details {
        columns.push((C::BlockDetails, v.as_str().into()));
    }
    if let Some(v) = rules.skip_all_day {
        columns.push((C::SkipAllDay, v.into()));
    }
    if let Some(v) = rules.skip_out_of_office {
        columns.push((C::SkipOutOfOffice, v.into()));
    }
    if let Some(v) = rules.skip_focus_time {
        columns.push((C::SkipFocusTime, v.into()));
    }
    if let Some(v) = &rules.exclude_title_regex {
        columns.push((C::ExcludeTitleRegex, v.clone().into()));
    }
    if let Some(v) = rules.look_back_days {
        columns.push((C::LookBackDays, i32::try_from(v).unwrap_or(i32::MAX).into()));
    }
    columns
}

impl Store {
    /// Adds an account (status `active`) in its group (created when new), with its empty
    /// sync state, reached through the credential of its Google account: the one with the
    /// same e-mail address when there is one (its token is replaced by this newer one), a
    /// new one otherwise. The calendars of the group are asked to plan their blocks onto it
    /// (a backfill).
    ///
    /// Fails with [`StoreError::Conflict`] when the alias is taken.
    #[tracing::instrument(name = "store.create_account", skip_all, fields(alias = %new.alias))]
    pub async fn create_account(&self, new: NewAccount) -> Result<Account, StoreError> {
        // Its replan request updates the sync state of the whole group, which a group
        // commit of those calendars' syncs may hold in another order: PostgreSQL then
        // aborts one of the two with a deadlock, and the account is simply added again.
        super::retry_deadlocks("adding an account", || {
            self.create_account_once(new.clone())
        })
        .await
    }

    async fn create_account_once(&self, new: NewAccount) -> Result<Account, StoreError> {
        let at = now();
        let txn = self.write_txn().await?;
        let group = ensure_group(&txn, &new.group, at).await?;
        let credential = self
            .save_credential(&txn, new.email.as_deref(), &new.refresh_token)
            .await?;
        let alias = new.alias.clone();
        let mut row = accounts::ActiveModel {
            alias: Set(new.alias),
            email: Set(new.email),
            calendar_id: Set(new.calendar_id.into_string()),
            refresh_token_enc: Set(String::new()),
            status: Set(AccountStatus::Active.as_str().to_owned()),
            status_reason: Set(None),
            time_zone: Set(new.time_zone),
            created_at: Set(at),
            updated_at: Set(at),
            group_id: Set(Some(group)),
            credential_id: Set(Some(credential)),
            ..Default::default()
        };
        apply_rules(&mut row, &new.rules);
        let row = row.insert(&txn).await.map_err(|e| {
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
            replan_requested_at: Set(None),
        }
        .insert(&txn)
        .await?;
        super::groups::request_replan_of_group(&txn, group, at).await?;
        txn.commit().await?;
        let names = self.group_name_of(row.group_id).await?;
        to_record(row, &names)
    }

    /// Stores `token` as the credential of the Google account `email` (replacing its token)
    /// or as a new credential; returns its id.
    async fn save_credential(
        &self,
        txn: &impl ConnectionTrait,
        email: Option<&str>,
        token: &SecretString,
    ) -> Result<i64, StoreError> {
        let at = now();
        let fresh = || credentials::ActiveModel {
            email: Set(email.map(str::to_owned)),
            refresh_token_enc: Set(String::new()),
            created_at: Set(at),
            updated_at: Set(at),
            ..Default::default()
        };
        let id = match email {
            Some(email) => match credential_by_email(txn, email).await? {
                Some(id) => id,
                None => {
                    // A first connect of the same Google account may be under way beside
                    // this one: the unique e-mail makes this insert wait for it, and then
                    // do nothing, so both end with its credential.
                    credentials::Entity::insert(fresh())
                        .on_conflict(
                            OnConflict::column(credentials::Column::Email)
                                .do_nothing()
                                .to_owned(),
                        )
                        .exec_without_returning(txn)
                        .await?;
                    credential_by_email(txn, email)
                        .await?
                        .ok_or_else(|| StoreError::not_found("credential", "just stored"))?
                }
            },
            None => fresh().insert(txn).await?.id,
        };
        let sealed = self
            .cipher()
            .seal(token.expose_secret(), &credential_aad(id))?;
        credentials::Entity::update_many()
            .col_expr(credentials::Column::RefreshTokenEnc, sealed.into())
            .col_expr(credentials::Column::UpdatedAt, at.into())
            .filter(credentials::Column::Id.eq(id))
            .exec(txn)
            .await?;
        Ok(id)
    }

    /// The account with `id`, or [`StoreError::NotFound`].
    pub async fn account(&self, id: AccountId) -> Result<Account, StoreError> {
        let row = self.account_row(id).await?;
        // Only this row's group: every actor start reads its account, and reading every
        // group each time made a restart quadratic in the number of calendars.
        let names = self.group_name_of(row.group_id).await?;
        to_record(row, &names)
    }

    /// The name of group `id` (when set), as the map [`to_record`] takes.
    async fn group_name_of(&self, id: Option<i64>) -> Result<HashMap<i64, String>, StoreError> {
        let Some(id) = id else {
            return Ok(HashMap::new());
        };
        Ok(super::entities::groups::Entity::find_by_id(id)
            .one(self.connection())
            .await?
            .map(|g| (g.id, g.name))
            .into_iter()
            .collect())
    }

    /// The account with this alias, if any.
    pub async fn account_by_alias(&self, alias: &str) -> Result<Option<Account>, StoreError> {
        let Some(row) = accounts::Entity::find()
            .filter(accounts::Column::Alias.eq(alias))
            .one(self.connection())
            .await?
        else {
            return Ok(None);
        };
        let names = self.group_name_of(row.group_id).await?;
        to_record(row, &names).map(Some)
    }

    /// Accounts on this calendar (normally at most one), for reconnecting after re-consent.
    pub async fn accounts_by_calendar(
        &self,
        calendar_id: &CalendarId,
    ) -> Result<Vec<Account>, StoreError> {
        let rows = accounts::Entity::find()
            .filter(accounts::Column::CalendarId.eq(calendar_id.as_str()))
            .order_by_asc(accounts::Column::Id)
            .all(self.connection())
            .await?;
        let mut accounts = Vec::with_capacity(rows.len());
        for row in rows {
            let names = self.group_name_of(row.group_id).await?;
            accounts.push(to_record(row, &names)?);
        }
        Ok(accounts)
    }

    /// Every account, oldest first.
    pub async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        super::counters::account_list_read();
        let groups = group_names(self.connection()).await?;
        accounts::Entity::find()
            .order_by_asc(accounts::Column::Id)
            .all(self.connection())
            .await?
            .into_iter()
            .map(|row| to_record(row, &groups))
            .collect()
    }

    /// The calendars reached through the same Google account (credential) as `id`, `id`
    /// included.
    pub async fn calendars_sharing_token(
        &self,
        id: AccountId,
    ) -> Result<Vec<AccountId>, StoreError> {
        let row = self.account_row(id).await?;
        let Some(credential) = row.credential_id else {
            return Ok(vec![id]);
        };
        Ok(accounts::Entity::find()
            .filter(accounts::Column::CredentialId.eq(credential))
            .order_by_asc(accounts::Column::Id)
            .all(self.connection())
            .await?
            .into_iter()
            .map(|r| AccountId::new(r.id))
            .collect())
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

    /// Stores a new refresh token (after re-consent) for the Google account of `id`, and
    /// makes every calendar reached through it active again.
    #[tracing::instrument(name = "store.set_refresh_token", skip(self, token))]
    pub async fn set_refresh_token(
        &self,
        id: AccountId,
        token: &SecretString,
    ) -> Result<(), StoreError> {
        let row = self.account_row(id).await?;
        let txn = self.write_txn().await?;
        let credential = match row.credential_id {
            Some(credential) => {
                let sealed = self
                    .cipher()
                    .seal(token.expose_secret(), &credential_aad(credential))?;
                credentials::Entity::update_many()
                    .col_expr(credentials::Column::RefreshTokenEnc, sealed.into())
                    .col_expr(credentials::Column::UpdatedAt, now().into())
                    .filter(credentials::Column::Id.eq(credential))
                    .exec(&txn)
                    .await?;
                credential
            }
            None => {
                self.save_credential(&txn, row.email.as_deref(), token)
                    .await?
            }
        };
        accounts::Entity::update_many()
            .col_expr(accounts::Column::CredentialId, Some(credential).into())
            .col_expr(
                accounts::Column::Status,
                AccountStatus::Active.as_str().into(),
            )
            .col_expr(
                accounts::Column::StatusReason,
                Option::<String>::None.into(),
            )
            .col_expr(accounts::Column::UpdatedAt, now().into())
            .filter(
                sea_orm::Condition::any()
                    .add(accounts::Column::Id.eq(id.get()))
                    .add(accounts::Column::CredentialId.eq(credential)),
            )
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The decrypted refresh token an account reaches Google with.
    pub async fn refresh_token(&self, id: AccountId) -> Result<SecretString, StoreError> {
        let row = self.account_row(id).await?;
        let Some(credential) = row.credential_id else {
            // Not moved to a credential yet (see `Store::migrate`).
            return Ok(self
                .cipher()
                .open(&row.refresh_token_enc, &account_aad(&row.alias))?);
        };
        let sealed = credentials::Entity::find_by_id(credential)
            .one(self.connection())
            .await?
            .ok_or_else(|| StoreError::not_found("credential", credential))?;
        Ok(self
            .cipher()
            .open(&sealed.refresh_token_enc, &credential_aad(credential))?)
    }

    /// The refresh tokens of many credentials at once (a start with thousands of calendars
    /// reads them in a few statements instead of two reads per calendar).
    pub async fn credential_tokens(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, SecretString>, StoreError> {
        let mut tokens = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows = credentials::Entity::find()
                .filter(credentials::Column::Id.is_in(chunk.iter().copied()))
                .all(self.connection())
                .await?;
            for row in rows {
                let token = self
                    .cipher()
                    .open(&row.refresh_token_enc, &credential_aad(row.id))?;
                tokens.insert(row.id, token);
            }
        }
        Ok(tokens)
    }

    /// Moves the refresh tokens of calendars connected before credentials existed into
    /// credentials (one per e-mail address, or per token), at start-up. Idempotent.
    pub(super) async fn adopt_legacy_tokens(&self) -> Result<u64, StoreError> {
        let legacy = accounts::Entity::find()
            .filter(accounts::Column::CredentialId.is_null())
            .all(self.connection())
            .await?;
        let mut moved = 0;
        for row in legacy {
            let token = self
                .cipher()
                .open(&row.refresh_token_enc, &account_aad(&row.alias))?;
            let txn = self.write_txn().await?;
            let credential = self
                .save_credential(&txn, row.email.as_deref(), &token)
                .await?;
            accounts::Entity::update_many()
                .col_expr(accounts::Column::CredentialId, Some(credential).into())
                .col_expr(accounts::Column::RefreshTokenEnc, String::new().into())
                .filter(accounts::Column::Id.eq(row.id))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            moved += 1;
        }
        Ok(moved)
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

/// Sets the rule columns of a new row from `rules` (unset fields stay NULL).
fn apply_rules(row: &mut accounts::ActiveModel, rules: &CalendarRules) {
    row.block_title_template = Set(rules.block_title_template.clone());
    row.block_details = Set(rules.block_details.map(|d| d.as_str().to_owned()));
    row.skip_all_day = Set(rules.skip_all_day);
    row.skip_out_of_office = Set(rules.skip_out_of_office);
    row.skip_focus_time = Set(rules.skip_focus_time);
    row.exclude_title_regex = Set(rules.exclude_title_regex.clone());
    row.look_back_days = Set(rules.look_back_days.and_then(|d| i32::try_from(d).ok()));
}

/// The credential of the Google account `email`, if one is stored.
async fn credential_by_email(
    conn: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(credentials::Entity::find()
        .filter(credentials::Column::Email.eq(email))
        .one(conn)
        .await?
        .map(|row| row.id))
}
