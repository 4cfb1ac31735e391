//! Several replicas on one database:
//! - `replicas`: every running `mcss serve` registers here and heartbeats (`expires_at`); a
//!   replica whose heartbeat lapsed, or that is `draining` (stopping), is not live;
//! - `calendar_leases`: which replica owns a calendar (`owner`), since when it changed hands
//!   (`epoch`, raised on every change of owner) and until when the owner holds it
//!   (`expires_at`). Writes of a calendar's state check `(owner, epoch)` in their own
//!   transaction. No foreign key to `accounts`: deleting an account must not wait on, or
//!   deadlock with, a transaction that holds the lease row; stale rows are swept instead;
//! - `web_sessions`, `login_attempts`, `pending_consents`: the admin pages' sign-ins, their
//!   per-client login limit and the OAuth consents waiting for their callback, so any replica
//!   answers any request. Session ids and consent states are stored only as hashes.
//!
//! Every statement says `IF NOT EXISTS`, so a half-applied run on SQLite can be run again.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Replicas {
    Table,
    Id,
    StartedAt,
    HeartbeatAt,
    ExpiresAt,
    Draining,
}

#[derive(DeriveIden)]
enum CalendarLeases {
    Table,
    AccountId,
    Owner,
    Epoch,
    ExpiresAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebSessions {
    Table,
    IdHash,
    Csrf,
    Flash,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum LoginAttempts {
    Table,
    Id,
    Client,
    At,
}

#[derive(DeriveIden)]
enum PendingConsents {
    Table,
    StateHash,
    Verifier,
    Alias,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Replicas::Table)
                    .if_not_exists()
                    .col(string(Replicas::Id).primary_key())
                    .col(timestamp_with_time_zone(Replicas::StartedAt))
                    .col(timestamp_with_time_zone(Replicas::HeartbeatAt))
                    .col(timestamp_with_time_zone(Replicas::ExpiresAt))
                    .col(boolean(Replicas::Draining).default(false))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CalendarLeases::Table)
                    .if_not_exists()
                    .col(big_integer(CalendarLeases::AccountId).primary_key())
                    .col(string_null(CalendarLeases::Owner))
                    .col(big_integer(CalendarLeases::Epoch).default(0))
                    .col(timestamp_with_time_zone_null(CalendarLeases::ExpiresAt))
                    .col(timestamp_with_time_zone(CalendarLeases::UpdatedAt))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_calendar_leases_owner")
                    .table(CalendarLeases::Table)
                    .col(CalendarLeases::Owner)
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebSessions::Table)
                    .if_not_exists()
                    .col(string(WebSessions::IdHash).primary_key())
                    .col(string(WebSessions::Csrf))
                    .col(text_null(WebSessions::Flash))
                    .col(timestamp_with_time_zone(WebSessions::CreatedAt))
                    .col(timestamp_with_time_zone(WebSessions::ExpiresAt))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_web_sessions_expires")
                    .table(WebSessions::Table)
                    .col(WebSessions::ExpiresAt)
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginAttempts::Table)
                    .if_not_exists()
                    .col(big_pk_auto(LoginAttempts::Id))
                    .col(string(LoginAttempts::Client))
                    .col(timestamp_with_time_zone(LoginAttempts::At))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_login_attempts_client_at")
                    .table(LoginAttempts::Table)
                    .col(LoginAttempts::Client)
                    .col(LoginAttempts::At)
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PendingConsents::Table)
                    .if_not_exists()
                    .col(string(PendingConsents::StateHash).primary_key())
                    .col(text(PendingConsents::Verifier))
                    .col(string(PendingConsents::Alias))
                    .col(timestamp_with_time_zone(PendingConsents::CreatedAt))
                    .col(timestamp_with_time_zone(PendingConsents::ExpiresAt))
                    .take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PendingConsents::Table.into_iden(),
            LoginAttempts::Table.into_iden(),
            WebSessions::Table.into_iden(),
            CalendarLeases::Table.into_iden(),
            Replicas::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
