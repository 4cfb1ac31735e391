//! The initial schema: accounts, watch channels, sync state, source events, the desired-block
//! outbox, the audit log and a small key/value table.
//!
//! Portability notes (PostgreSQL and SQLite):
//! - foreign keys are declared inline in `CREATE TABLE`, because SQLite cannot add them later;
//! - timestamps are `timestamp with time zone` (PostgreSQL `timestamptz`, SQLite RFC 3339 text
//!   in UTC, which sorts in time order);
//! - JSON payloads are plain text, so both backends store them byte for byte;
//! - every statement says `IF NOT EXISTS`, so a half-applied run on SQLite (which has no
//!   transactional DDL through the migrator) can simply be run again.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Alias,
    Email,
    CalendarId,
    RefreshTokenEnc,
    Status,
    StatusReason,
    TimeZone,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WatchChannels {
    Table,
    Id,
    AccountId,
    ChannelId,
    ResourceId,
    TokenHash,
    ExpiresAt,
    CreatedAt,
    StoppedAt,
}

#[derive(DeriveIden)]
enum SyncState {
    Table,
    AccountId,
    SyncToken,
    LastFullSyncAt,
    LastIncrementalSyncAt,
    LastResult,
    LastError,
    MassDeleteHold,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SourceEvents {
    Table,
    Id,
    AccountId,
    EventId,
    IcalUid,
    RecurringEventId,
    Status,
    IsBlock,
    Data,
    GoogleUpdated,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DesiredBlocks {
    Table,
    Id,
    TargetAccountId,
    SourceAccountId,
    SourceEventId,
    BlockId,
    Body,
    DesiredHash,
    AppliedHash,
    GoogleEtag,
    State,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SyncLog {
    Table,
    Id,
    At,
    AccountId,
    Kind,
    Result,
    Detail,
    Count,
    DurationMs,
}

#[derive(DeriveIden)]
enum Kv {
    Table,
    Key,
    Value,
}

/// A foreign key from `table.column` to `accounts.id` that goes away with the account.
fn account_fk(
    name: &str,
    table: impl IntoIden,
    column: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, column)
        .to(Accounts::Table, Accounts::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .on_update(ForeignKeyAction::Cascade)
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Accounts::Id))
                    .col(string_uniq(Accounts::Alias))
                    .col(string_null(Accounts::Email))
                    .col(text(Accounts::CalendarId))
                    .col(text(Accounts::RefreshTokenEnc))
                    .col(string(Accounts::Status))
                    .col(text_null(Accounts::StatusReason))
                    .col(string_null(Accounts::TimeZone))
                    .col(timestamp_with_time_zone(Accounts::CreatedAt))
                    .col(timestamp_with_time_zone(Accounts::UpdatedAt))
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(WatchChannels::Table)
                    .if_not_exists()
                    .col(big_pk_auto(WatchChannels::Id))
                    .col(big_integer(WatchChannels::AccountId))
                    .col(string_uniq(WatchChannels::ChannelId))
                    .col(text(WatchChannels::ResourceId))
                    .col(string_null(WatchChannels::TokenHash))
                    .col(timestamp_with_time_zone(WatchChannels::ExpiresAt))
                    .col(timestamp_with_time_zone(WatchChannels::CreatedAt))
                    .col(timestamp_with_time_zone_null(WatchChannels::StoppedAt))
                    .foreign_key(&mut account_fk(
                        "fk_watch_channels_account",
                        WatchChannels::Table,
                        WatchChannels::AccountId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_watch_channels_account")
                    .table(WatchChannels::Table)
                    .col(WatchChannels::AccountId)
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_watch_channels_expires")
                    .table(WatchChannels::Table)
                    .col(WatchChannels::ExpiresAt)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SyncState::Table)
                    .if_not_exists()
                    .col(big_integer(SyncState::AccountId).primary_key())
                    .col(text_null(SyncState::SyncToken))
                    .col(timestamp_with_time_zone_null(SyncState::LastFullSyncAt))
                    .col(timestamp_with_time_zone_null(
                        SyncState::LastIncrementalSyncAt,
                    ))
                    .col(string_null(SyncState::LastResult))
                    .col(text_null(SyncState::LastError))
                    .col(boolean(SyncState::MassDeleteHold).default(false))
                    .col(timestamp_with_time_zone(SyncState::UpdatedAt))
                    .foreign_key(&mut account_fk(
                        "fk_sync_state_account",
                        SyncState::Table,
                        SyncState::AccountId,
                    ))
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SourceEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(SourceEvents::Id))
                    .col(big_integer(SourceEvents::AccountId))
                    .col(text(SourceEvents::EventId))
                    .col(text_null(SourceEvents::IcalUid))
                    .col(text_null(SourceEvents::RecurringEventId))
                    .col(string(SourceEvents::Status))
                    .col(boolean(SourceEvents::IsBlock).default(false))
                    .col(text(SourceEvents::Data))
                    .col(timestamp_with_time_zone_null(SourceEvents::GoogleUpdated))
                    .col(timestamp_with_time_zone(SourceEvents::UpdatedAt))
                    .foreign_key(&mut account_fk(
                        "fk_source_events_account",
                        SourceEvents::Table,
                        SourceEvents::AccountId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .unique()
                    .name("uq_source_events_account_event")
                    .table(SourceEvents::Table)
                    .col(SourceEvents::AccountId)
                    .col(SourceEvents::EventId)
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_source_events_ical_uid")
                    .table(SourceEvents::Table)
                    .col(SourceEvents::IcalUid)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DesiredBlocks::Table)
                    .if_not_exists()
                    .col(big_pk_auto(DesiredBlocks::Id))
                    .col(big_integer(DesiredBlocks::TargetAccountId))
                    .col(big_integer(DesiredBlocks::SourceAccountId))
                    .col(text(DesiredBlocks::SourceEventId))
                    .col(text(DesiredBlocks::BlockId))
                    .col(text_null(DesiredBlocks::Body))
                    .col(string_null(DesiredBlocks::DesiredHash))
                    .col(string_null(DesiredBlocks::AppliedHash))
                    .col(string_null(DesiredBlocks::GoogleEtag))
                    .col(string(DesiredBlocks::State))
                    .col(integer(DesiredBlocks::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(DesiredBlocks::NextAttemptAt))
                    .col(text_null(DesiredBlocks::LastError))
                    .col(timestamp_with_time_zone(DesiredBlocks::CreatedAt))
                    .col(timestamp_with_time_zone(DesiredBlocks::UpdatedAt))
                    .foreign_key(&mut account_fk(
                        "fk_desired_blocks_target",
                        DesiredBlocks::Table,
                        DesiredBlocks::TargetAccountId,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .unique()
                    .name("uq_desired_blocks_target_block")
                    .table(DesiredBlocks::Table)
                    .col(DesiredBlocks::TargetAccountId)
                    .col(DesiredBlocks::BlockId)
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_desired_blocks_due")
                    .table(DesiredBlocks::Table)
                    .col(DesiredBlocks::TargetAccountId)
                    .col(DesiredBlocks::State)
                    .col(DesiredBlocks::NextAttemptAt)
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_desired_blocks_source")
                    .table(DesiredBlocks::Table)
                    .col(DesiredBlocks::SourceAccountId)
                    .col(DesiredBlocks::SourceEventId)
                    .take(),
            )
            .await?;

        // No foreign key on account_id: the audit trail outlives a removed account.
        manager
            .create_table(
                Table::create()
                    .table(SyncLog::Table)
                    .if_not_exists()
                    .col(big_pk_auto(SyncLog::Id))
                    .col(timestamp_with_time_zone(SyncLog::At))
                    .col(big_integer_null(SyncLog::AccountId))
                    .col(string(SyncLog::Kind))
                    .col(string(SyncLog::Result))
                    .col(text(SyncLog::Detail))
                    .col(big_integer_null(SyncLog::Count))
                    .col(big_integer_null(SyncLog::DurationMs))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_sync_log_account_at")
                    .table(SyncLog::Table)
                    .col(SyncLog::AccountId)
                    .col(SyncLog::At)
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_sync_log_at")
                    .table(SyncLog::Table)
                    .col(SyncLog::At)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Kv::Table)
                    .if_not_exists()
                    .col(string(Kv::Key).primary_key())
                    .col(text(Kv::Value))
                    .take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Kv::Table.into_iden(),
            SyncLog::Table.into_iden(),
            DesiredBlocks::Table.into_iden(),
            SourceEvents::Table.into_iden(),
            SyncState::Table.into_iden(),
            WatchChannels::Table.into_iden(),
            Accounts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
