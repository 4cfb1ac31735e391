//! The outbox learns what each row stands for and who is writing it:
//! - `role` (`single` | `series` | `occurrence` | `detached`) and, on an occurrence,
//!   `series_block_id`: the writer writes an occurrence only once its block series exists,
//!   and a block series that goes takes its occurrence rows with it;
//! - `claimed_by` / `claim_expires_at`: a writer claims the rows it is about to apply, so no
//!   two writers (two processes, a CLI beside `serve`) ever apply the same row at once;
//! - `sync_id`: the sync that queued the row, carried into every write's log line.
//!
//! Existing rows: an id with Google's instance suffix is an occurrence of the series before
//! the `_`; every other row reads as `single` until its source is planned again.
//! Source events that are blocks are no longer stored (they are never planned): the old
//! rows go.
//!
//! One column per `ALTER TABLE`, because SQLite accepts no more; each is skipped when it
//! exists, so an interrupted run can be run again.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DesiredBlocks {
    Table,
    TargetAccountId,
    Role,
    SeriesBlockId,
    ClaimedBy,
    ClaimExpiresAt,
    SyncId,
}

#[derive(DeriveIden)]
enum SourceEvents {
    Table,
    IsBlock,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            ("role", string(DesiredBlocks::Role).default("single").take()),
            (
                "series_block_id",
                text_null(DesiredBlocks::SeriesBlockId).take(),
            ),
            ("claimed_by", string_null(DesiredBlocks::ClaimedBy).take()),
            (
                "claim_expires_at",
                timestamp_with_time_zone_null(DesiredBlocks::ClaimExpiresAt).take(),
            ),
            ("sync_id", string_null(DesiredBlocks::SyncId).take()),
        ];
        for (name, mut column) in columns {
            // A half-applied run on SQLite (no transactional DDL) is simply run again.
            if manager.has_column("desired_blocks", name).await? {
                continue;
            }
            manager
                .alter_table(
                    Table::alter()
                        .table(DesiredBlocks::Table)
                        .add_column(&mut column)
                        .take(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_desired_blocks_series")
                    .table(DesiredBlocks::Table)
                    .col(DesiredBlocks::TargetAccountId)
                    .col(DesiredBlocks::SeriesBlockId)
                    .take(),
            )
            .await?;
        let db = manager.get_connection();
        // An instance id is `<series>_<suffix>`: the series is everything before the last `_`
        // (block ids are base32hex, so that is the only one).
        let split = match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => "split_part(block_id, '_', 1)",
            _ => "substr(block_id, 1, instr(block_id, '_') - 1)",
        };
        db.execute_unprepared(&format!(
            "UPDATE desired_blocks SET role = 'occurrence', series_block_id = {split} \
             WHERE block_id LIKE '%\\_%' ESCAPE '\\'"
        ))
        .await?;
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(SourceEvents::Table)
                    .and_where(Expr::col(SourceEvents::IsBlock).eq(true))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_desired_blocks_series")
                    .table(DesiredBlocks::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            DesiredBlocks::SyncId,
            DesiredBlocks::ClaimExpiresAt,
            DesiredBlocks::ClaimedBy,
            DesiredBlocks::SeriesBlockId,
            DesiredBlocks::Role,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(DesiredBlocks::Table)
                        .drop_column(column)
                        .take(),
                )
                .await?;
        }
        Ok(())
    }
}
