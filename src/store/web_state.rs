//! The admin pages' shared state: sign-in sessions, the per-client login limit, the OAuth
//! consents waiting for their callback, the granted consents whose calendars are being
//! picked, and the key that signs the pages' cookies.
//!
//! Role: behind a load balancer any replica answers any request, so none of this may live
//! in one process's memory. It is kept in the database, which every replica shares (SQLite
//! and PostgreSQL alike). Collaborators: `http::admin::session` (sessions, login limit,
//! cookie key), `http::oauth` (consents) and `http::admin::connect` (picks) are the only
//! callers; `http::admin::session` keeps the same in Redis when `REDIS_URL` is set.
//!
//! Secrets stay unusable at rest: a session id, a consent `state` and a pick id are stored
//! only as the SHA-256 of the value (a database reader cannot sign in with what it reads),
//! the consent's PKCE verifier, the pick's refresh token and the cookie key are sealed with
//! the refresh tokens' key (`crypto::TokenCipher`).
//!
//! Lifecycle: rows expire by time; every write sweeps the expired rows of its own table, so
//! the tables stay small without a background job.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait as _, DatabaseTransaction, EntityTrait, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Set,
};
use secrecy::{ExposeSecret as _, SecretString};

use super::{entities::kv, now, Store, StoreError};

/// The `kv` key of the sealed cookie-signing key.
const COOKIE_KEY: &str = "web_cookie_key";

mod sessions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "web_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_hash: String,
        pub csrf: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub flash: Option<String>,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod attempts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "login_attempts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub client: String,
        pub at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod consents {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "pending_consents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub state_hash: String,
        #[sea_orm(column_type = "Text")]
        pub verifier: String,
        pub alias: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod picks {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "pending_picks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_hash: String,
        #[sea_orm(column_type = "Text")]
        pub refresh_token_enc: String,
        pub email: Option<String>,
        pub alias: String,
        #[sea_orm(column_type = "Text")]
        pub calendars: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A live session, as a page needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// A consent taken back by its callback.
#[derive(Debug)]
pub struct StoredConsent {
    pub verifier: SecretString,
    pub alias: String,
}

/// A granted consent whose calendars are being picked, as its page shows it (the refresh
/// token is apart: only [`Store::take_pick`] opens it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPick {
    /// The Google account's e-mail, when known.
    pub email: Option<String>,
    /// The name asked for on the Connect page.
    pub alias: String,
    /// The account's calendars, as JSON: read and written by `http::admin::connect` only.
    pub calendars: String,
}

/// The additional data a pick's sealed refresh token is bound to.
fn pick_aad(id_hash: &str) -> Vec<u8> {
    format!("pending_picks:{id_hash}").into_bytes()
}

/// The hex SHA-256 of a session id, consent state or pick id: what the tables key on.
pub fn secret_hash(secret: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn after(ttl: Duration) -> DateTime<Utc> {
    now() + TimeDelta::from_std(ttl).unwrap_or(TimeDelta::days(1))
}

impl Store {
    /// Opens a session named by `id_hash` for `ttl`, dropping expired ones and, beyond
    /// `max` sessions, the oldest (a flood of logins cannot grow the table without bound).
    pub async fn create_session(
        &self,
        id_hash: &str,
        csrf: &str,
        ttl: Duration,
        max: u64,
    ) -> Result<(), StoreError> {
        let at = now();
        let txn = self.write_txn().await?;
        make_room::<sessions::Entity>(
            &txn,
            at,
            [
                sessions::Column::ExpiresAt,
                sessions::Column::IdHash,
                sessions::Column::CreatedAt,
            ],
            max,
        )
        .await?;
        sessions::Entity::insert(sessions::ActiveModel {
            id_hash: Set(id_hash.to_owned()),
            csrf: Set(csrf.to_owned()),
            flash: Set(None),
            created_at: Set(at),
            expires_at: Set(after(ttl)),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The live session named by `id_hash`, if any.
    pub async fn session(&self, id_hash: &str) -> Result<Option<StoredSession>, StoreError> {
        let row = sessions::Entity::find_by_id(id_hash.to_owned())
            .filter(sessions::Column::ExpiresAt.gt(now()))
            .one(self.connection())
            .await?;
        Ok(row.map(|r| StoredSession {
            csrf: r.csrf,
            expires_at: r.expires_at,
        }))
    }

    pub async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sessions::Entity::delete_by_id(id_hash.to_owned())
            .exec(self.connection())
            .await?;
        Ok(())
    }

    /// Leaves a one-shot notice for the session's next page.
    pub async fn set_session_flash(&self, id_hash: &str, flash: &str) -> Result<(), StoreError> {
        sessions::Entity::update_many()
            .col_expr(sessions::Column::Flash, Some(flash.to_owned()).into())
            .filter(sessions::Column::IdHash.eq(id_hash))
            .exec(self.connection())
            .await?;
        Ok(())
    }

    /// Takes the session's notice out (it is shown once).
    pub async fn take_session_flash(&self, id_hash: &str) -> Result<Option<String>, StoreError> {
        let txn = self.write_txn().await?;
        let flash = sessions::Entity::find_by_id(id_hash.to_owned())
            .one(&txn)
            .await?
            .and_then(|r| r.flash);
        if flash.is_some() {
            sessions::Entity::update_many()
                .col_expr(sessions::Column::Flash, Option::<String>::None.into())
                .filter(sessions::Column::IdHash.eq(id_hash))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(flash)
    }

    /// Counts a login attempt of `client` in a sliding `window`; `false` (and not counted)
    /// when `client` already made `limit` attempts in it. The attempt is written before it
    /// is counted, so two racing attempts on two replicas can only both be refused, never
    /// both slip through.
    pub async fn allow_login_attempt(
        &self,
        client: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let at = now();
        let since = at - TimeDelta::from_std(window).unwrap_or(TimeDelta::minutes(1));
        attempts::Entity::delete_many()
            .filter(attempts::Column::At.lte(since))
            .exec(self.connection())
            .await?;
        let mine = attempts::Entity::insert(attempts::ActiveModel {
            client: Set(client.to_owned()),
            at: Set(at),
            ..Default::default()
        })
        .exec(self.connection())
        .await?
        .last_insert_id;
        let counted = attempts::Entity::find()
            .filter(attempts::Column::Client.eq(client))
            .filter(attempts::Column::At.gt(since))
            .count(self.connection())
            .await?;
        if counted > u64::from(limit) {
            attempts::Entity::delete_by_id(mine)
                .exec(self.connection())
                .await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Remembers a consent started for `alias` until `ttl` passes (at most `max` waiting).
    pub async fn put_consent(
        &self,
        state_hash: &str,
        verifier: &SecretString,
        alias: &str,
        ttl: Duration,
        max: u64,
    ) -> Result<(), StoreError> {
        let sealed = self
            .cipher()
            .seal(verifier.expose_secret(), state_hash.as_bytes())?;
        let at = now();
        let txn = self.write_txn().await?;
        make_room::<consents::Entity>(
            &txn,
            at,
            [
                consents::Column::ExpiresAt,
                consents::Column::StateHash,
                consents::Column::CreatedAt,
            ],
            max,
        )
        .await?;
        consents::Entity::insert(consents::ActiveModel {
            state_hash: Set(state_hash.to_owned()),
            verifier: Set(sealed),
            alias: Set(alias.to_owned()),
            created_at: Set(at),
            expires_at: Set(after(ttl)),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Takes the consent of `state_hash` out, so it can never be used twice; `None` when it
    /// is unknown, used or expired. Two callbacks racing on two replicas: only the one whose
    /// delete removed the row gets it.
    pub async fn take_consent(
        &self,
        state_hash: &str,
    ) -> Result<Option<StoredConsent>, StoreError> {
        let Some(row) = consents::Entity::find_by_id(state_hash.to_owned())
            .one(self.connection())
            .await?
        else {
            return Ok(None);
        };
        let deleted = consents::Entity::delete_by_id(state_hash.to_owned())
            .exec(self.connection())
            .await?;
        if deleted.rows_affected != 1 || row.expires_at <= now() {
            return Ok(None);
        }
        let verifier = self.cipher().open(&row.verifier, state_hash.as_bytes())?;
        Ok(Some(StoredConsent {
            verifier,
            alias: row.alias,
        }))
    }

    /// Keeps a granted consent for the operator's pick until `ttl` passes (at most `max`
    /// waiting; the oldest go first), its refresh token sealed.
    pub async fn put_pick(
        &self,
        id_hash: &str,
        refresh_token: &SecretString,
        pick: &PendingPick,
        ttl: Duration,
        max: u64,
    ) -> Result<(), StoreError> {
        let sealed = self
            .cipher()
            .seal(refresh_token.expose_secret(), &pick_aad(id_hash))?;
        let at = now();
        let txn = self.write_txn().await?;
        make_room::<picks::Entity>(
            &txn,
            at,
            [
                picks::Column::ExpiresAt,
                picks::Column::IdHash,
                picks::Column::CreatedAt,
            ],
            max,
        )
        .await?;
        picks::Entity::insert(picks::ActiveModel {
            id_hash: Set(id_hash.to_owned()),
            refresh_token_enc: Set(sealed),
            email: Set(pick.email.clone()),
            alias: Set(pick.alias.clone()),
            calendars: Set(pick.calendars.clone()),
            created_at: Set(at),
            expires_at: Set(after(ttl)),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The live pick of `id_hash`, without its token; `None` when unknown, used or expired.
    pub async fn pick(&self, id_hash: &str) -> Result<Option<PendingPick>, StoreError> {
        let row = picks::Entity::find_by_id(id_hash.to_owned())
            .filter(picks::Column::ExpiresAt.gt(now()))
            .one(self.connection())
            .await?;
        Ok(row.map(|r| PendingPick {
            email: r.email,
            alias: r.alias,
            calendars: r.calendars,
        }))
    }

    /// Takes the pick of `id_hash` out with its refresh token, so it connects once; `None`
    /// when it is unknown, used or expired. Two forms racing on two replicas: only the one
    /// whose delete removed the row gets it.
    pub async fn take_pick(
        &self,
        id_hash: &str,
    ) -> Result<Option<(SecretString, PendingPick)>, StoreError> {
        let Some(row) = picks::Entity::find_by_id(id_hash.to_owned())
            .one(self.connection())
            .await?
        else {
            return Ok(None);
        };
        let deleted = picks::Entity::delete_by_id(id_hash.to_owned())
            .exec(self.connection())
            .await?;
        if deleted.rows_affected != 1 || row.expires_at <= now() {
            return Ok(None);
        }
        let token = self
            .cipher()
            .open(&row.refresh_token_enc, &pick_aad(id_hash))?;
        Ok(Some((
            token,
            PendingPick {
                email: row.email,
                alias: row.alias,
                calendars: row.calendars,
            },
        )))
    }

    /// The 64-byte key that signs the admin pages' cookies, the same on every replica:
    /// generated and sealed into `kv` on first use.
    pub async fn cookie_key(&self) -> Result<[u8; 64], StoreError> {
        let aad = COOKIE_KEY.as_bytes();
        let stored = kv::Entity::find_by_id(COOKIE_KEY.to_owned())
            .one(self.connection())
            .await?;
        let sealed = match stored {
            Some(row) => row.value,
            None => {
                use rand::RngCore as _;
                let mut fresh = [0u8; 64];
                rand::thread_rng().fill_bytes(&mut fresh);
                let sealed = self.cipher().seal(&hex::encode(fresh), aad)?;
                kv::Entity::insert(kv::ActiveModel {
                    key: Set(COOKIE_KEY.to_owned()),
                    value: Set(sealed),
                })
                .on_conflict_do_nothing_on([kv::Column::Key])
                .exec_without_returning(self.connection())
                .await?;
                // Another replica may have won the race: the stored key is the one.
                kv::Entity::find_by_id(COOKIE_KEY.to_owned())
                    .one(self.connection())
                    .await?
                    .map(|row| row.value)
                    .ok_or_else(|| StoreError::not_found("kv", COOKIE_KEY))?
            }
        };
        let opened = self.cipher().open(&sealed, aad)?;
        let bytes = hex::decode(opened.expose_secret())
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or_else(|| StoreError::Corrupt("the cookie key is not 64 bytes".to_owned()))?;
        Ok(bytes)
    }
}

/// Makes room for one more row in a bounded table: its expired rows go and, when `max` are
/// still live, its oldest. `columns` are the table's expiry, key and creation columns.
async fn make_room<E: EntityTrait>(
    txn: &DatabaseTransaction,
    at: DateTime<Utc>,
    [expires, key, created]: [E::Column; 3],
    max: u64,
) -> Result<(), StoreError>
where
    E::Model: Sync,
{
    E::delete_many().filter(expires.lte(at)).exec(txn).await?;
    let live = E::find().count(txn).await?;
    if live >= max {
        let oldest: Vec<String> = E::find()
            .select_only()
            .column(key)
            .order_by_asc(created)
            .limit(live + 1 - max)
            .into_tuple()
            .all(txn)
            .await?;
        E::delete_many().filter(key.is_in(oldest)).exec(txn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_stored_only_as_its_hash() {
        let hash = secret_hash("session-id");

        assert_eq!(hash.len(), 64);
        assert_ne!(hash, "session-id");
        assert_eq!(hash, secret_hash("session-id"));
    }
}
