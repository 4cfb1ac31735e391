//! Indexes for the lookups that connecting a calendar makes: by calendar id (is it connected
//! already?), by group (a group's calendars, planned together) and a credential by e-mail
//! (calendars of one Google account share it). Without them each lookup scanned its table,
//! and `accounts import` of 10,000 calendars was quadratic (178 s).
//!
//! `IF NOT EXISTS`, so a half-applied run on SQLite can be run again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    CalendarId,
    GroupId,
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    Email,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, column) in indexes() {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(name)
                        .table(table)
                        .col(column)
                        .take(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in indexes() {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

fn indexes() -> [(&'static str, DynIden, DynIden); 3] {
    [
        (
            "idx_accounts_calendar_id",
            Accounts::Table.into_iden(),
            Accounts::CalendarId.into_iden(),
        ),
        (
            "idx_accounts_group_id",
            Accounts::Table.into_iden(),
            Accounts::GroupId.into_iden(),
        ),
        (
            "idx_credentials_email",
            Credentials::Table.into_iden(),
            Credentials::Email.into_iden(),
        ),
    ]
}
