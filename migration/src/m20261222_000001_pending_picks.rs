//! `pending_picks`: consents granted for a Google account with several calendars, waiting
//! for the operator to choose which of them to connect. The callback that makes one and the
//! form that completes it may reach different replicas, so the wait is in the database.
//!
//! A pick is named by the SHA-256 of its random id (the id itself is only in the admin's
//! page), and its refresh token is sealed with the accounts' key, bound to that hash. The
//! table is bounded and swept by the application; nothing references it.
//!
//! `IF NOT EXISTS`, so a half-applied run on SQLite can be run again.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PendingPicks {
    Table,
    IdHash,
    RefreshTokenEnc,
    Email,
    Alias,
    Calendars,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PendingPicks::Table)
                    .if_not_exists()
                    .col(string(PendingPicks::IdHash).primary_key())
                    .col(text(PendingPicks::RefreshTokenEnc))
                    .col(string_null(PendingPicks::Email))
                    .col(string(PendingPicks::Alias))
                    .col(text(PendingPicks::Calendars))
                    .col(timestamp_with_time_zone(PendingPicks::CreatedAt))
                    .col(timestamp_with_time_zone(PendingPicks::ExpiresAt))
                    .take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PendingPicks::Table).if_exists().take())
            .await?;
        Ok(())
    }
}
