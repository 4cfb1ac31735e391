//! Room on each page of `calendar_leases` for the renewals (PostgreSQL; SQLite has no leases
//! in use and no fill factor).
//!
//! A replica renews every lease it holds every third of the lease's time: one UPDATE of
//! every row it owns (10,000 with 10,000 calendars). On full pages each new row version
//! goes to another page and every index gets a new entry; with half of each page free it
//! stays on its page without touching the indexes (a "HOT" update), several times cheaper.
//! Pages written from now on keep that room; the pages of today's rows get it as their rows
//! move on the next renewals.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, "ALTER TABLE calendar_leases SET (fillfactor = 50)").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, "ALTER TABLE calendar_leases RESET (fillfactor)").await
    }
}

/// Runs `sql` on PostgreSQL; nothing on SQLite.
async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}
