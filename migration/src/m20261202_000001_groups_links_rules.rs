//! Who blocks whom: groups, links, per-calendar rules, and one refresh token per Google
//! account.
//!
//! - `groups`: every connected calendar belongs to exactly one; the application creates
//!   `default` at its first start after this migration and puts every existing calendar in
//!   it (`Store::migrate`), so an installation keeps working unchanged.
//! - `disabled_links`: within a group every ordered pair (source → target) is a link, on by
//!   default; a row here turns one off. Going with either calendar.
//! - rule columns on `accounts` (the calendar): as a target, the block title template and the
//!   details mode; as a source, the skip flags, the title regex and the look-back. NULL means
//!   "the environment's default": calendars connected before this migration keep following
//!   the environment until their rules are set; new ones get the defaults written in.
//! - `credentials`: one row per Google account, holding its refresh token; `accounts.
//!   credential_id` points at it. The tokens move there in the application's first start
//!   after this migration (`Store::migrate`), because moving them needs the encryption key.
//! - `desired_blocks.applied_updated`: Google's `updated` of the writer's last write of a
//!   block, so a tombstone listed later can be told from a deletion by the user (it is a
//!   user's only when Google deleted the block after our last write of it);
//! - `sync_state.replan_requested_at`: set when a calendar's blocks must be planned again
//!   from the stored events (it joined a group, a link or a rule changed); the calendar's
//!   actor does it and clears it in the same commit.
//!
//! Block ids are a function of (installation, source calendar, source event, target
//! calendar) and do not change: every existing block is kept. One column per `ALTER
//! TABLE` (SQLite); each is skipped when it exists, so an interrupted run can be run again.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Groups {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    Id,
    Email,
    RefreshTokenEnc,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DisabledLinks {
    Table,
    SourceAccountId,
    TargetAccountId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    GroupId,
    CredentialId,
    BlockTitleTemplate,
    BlockDetails,
    SkipAllDay,
    SkipOutOfOffice,
    SkipFocusTime,
    ExcludeTitleRegex,
    LookBackDays,
}

#[derive(DeriveIden)]
enum SyncState {
    Table,
    ReplanRequestedAt,
}

#[derive(DeriveIden)]
enum DesiredBlocks {
    Table,
    AppliedUpdated,
}

fn account_fk(name: &str, column: DisabledLinks) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(DisabledLinks::Table, column)
        .to(Accounts::Table, Accounts::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .on_update(ForeignKeyAction::Cascade)
        .take()
}

async fn add_column(
    manager: &SchemaManager<'_>,
    table: &str,
    name: &str,
    table_iden: impl IntoTableRef,
    mut column: ColumnDef,
) -> Result<(), DbErr> {
    if manager.has_column(table, name).await? {
        return Ok(());
    }
    manager
        .alter_table(
            Table::alter()
                .table(table_iden)
                .add_column(&mut column)
                .take(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Groups::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Groups::Id))
                    .col(string_uniq(Groups::Name))
                    .col(timestamp_with_time_zone(Groups::CreatedAt))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Credentials::Id))
                    .col(string_null(Credentials::Email))
                    .col(text(Credentials::RefreshTokenEnc))
                    .col(timestamp_with_time_zone(Credentials::CreatedAt))
                    .col(timestamp_with_time_zone(Credentials::UpdatedAt))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DisabledLinks::Table)
                    .if_not_exists()
                    .col(big_integer(DisabledLinks::SourceAccountId))
                    .col(big_integer(DisabledLinks::TargetAccountId))
                    .col(timestamp_with_time_zone(DisabledLinks::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(DisabledLinks::SourceAccountId)
                            .col(DisabledLinks::TargetAccountId),
                    )
                    .foreign_key(&mut account_fk(
                        "fk_disabled_links_source",
                        DisabledLinks::SourceAccountId,
                    ))
                    .foreign_key(&mut account_fk(
                        "fk_disabled_links_target",
                        DisabledLinks::TargetAccountId,
                    ))
                    .take(),
            )
            .await?;
        let account_columns = [
            ("group_id", big_integer_null(Accounts::GroupId)),
            ("credential_id", big_integer_null(Accounts::CredentialId)),
            (
                "block_title_template",
                text_null(Accounts::BlockTitleTemplate),
            ),
            ("block_details", string_null(Accounts::BlockDetails)),
            ("skip_all_day", boolean_null(Accounts::SkipAllDay)),
            (
                "skip_out_of_office",
                boolean_null(Accounts::SkipOutOfOffice),
            ),
            ("skip_focus_time", boolean_null(Accounts::SkipFocusTime)),
            (
                "exclude_title_regex",
                text_null(Accounts::ExcludeTitleRegex),
            ),
            ("look_back_days", integer_null(Accounts::LookBackDays)),
        ];
        for (name, column) in account_columns {
            add_column(manager, "accounts", name, Accounts::Table, column).await?;
        }
        add_column(
            manager,
            "sync_state",
            "replan_requested_at",
            SyncState::Table,
            timestamp_with_time_zone_null(SyncState::ReplanRequestedAt),
        )
        .await?;
        add_column(
            manager,
            "desired_blocks",
            "applied_updated",
            DesiredBlocks::Table,
            timestamp_with_time_zone_null(DesiredBlocks::AppliedUpdated),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DisabledLinks::Table.into_iden(),
            Credentials::Table.into_iden(),
            Groups::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
