//! One credential per Google account, enforced: a unique index on `credentials.email`.
//!
//! Before it, two first connects of one Google account at the same moment (on PostgreSQL,
//! where they run side by side) could each find no credential and each insert one. Such
//! pairs are merged first: the calendars of the older rows move to the credential updated
//! last (the newest refresh token), and the older rows are deleted. Credentials without an
//! e-mail address stay as they are (NULLs never conflict).
//!
//! Each statement can run again, so a half-applied run on SQLite can be run again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Credentials {
    Table,
    Email,
}

const INDEX: &str = "uq_credentials_email";

/// Points every calendar of a duplicated credential at the one of its e-mail address that
/// was updated last.
const MOVE_CALENDARS: &str = "UPDATE accounts SET credential_id = ( \
       SELECT k.id FROM credentials c JOIN credentials k ON k.email = c.email \
       WHERE c.id = accounts.credential_id \
       ORDER BY k.updated_at DESC, k.id DESC LIMIT 1) \
     WHERE credential_id IN ( \
       SELECT c.id FROM credentials c WHERE c.email IS NOT NULL AND EXISTS ( \
         SELECT 1 FROM credentials d WHERE d.email = c.email AND d.id <> c.id))";

/// Deletes every credential of an e-mail address but the one updated last.
const DROP_OLDER: &str = "DELETE FROM credentials WHERE email IS NOT NULL AND EXISTS ( \
       SELECT 1 FROM credentials k WHERE k.email = credentials.email \
       AND (k.updated_at > credentials.updated_at \
         OR (k.updated_at = credentials.updated_at AND k.id > credentials.id)))";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(MOVE_CALENDARS).await?;
        db.execute_unprepared(DROP_OLDER).await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .unique()
                    .name(INDEX)
                    .table(Credentials::Table)
                    .col(Credentials::Email)
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(Credentials::Table)
                    .to_owned(),
            )
            .await
    }
}
