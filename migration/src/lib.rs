//! Database migrations of the Multi-Calendar Sync Service.
//!
//! Role: creates and evolves the schema that `mcss::store` reads and writes, on PostgreSQL and
//! on SQLite alike. Collaborators: `mcss migrate` and `mcss serve` run [`Migrator`] through
//! `Store::migrate`; nothing here depends on the application's entities, so an old migration
//! keeps compiling however the entities change later.
//!
//! Lifecycle: migrations are append-only. A shipped migration is never edited; a change to the
//! schema is a new `mYYYYMMDD_NNNNNN_*` module added at the end of [`Migrator::migrations`].
//! sea-orm-migration records what ran in `seaql_migrations`, so running the migrator twice is a
//! no-op the second time.

pub use sea_orm_migration;
use sea_orm_migration::prelude::*;

mod m20250101_000001_create_tables;
mod m20261201_000001_outbox_roles_and_claims;
mod m20261202_000001_groups_links_rules;
mod m20261215_000001_replicas_leases_web_state;
mod m20261222_000001_pending_picks;
mod m20261223_000001_lookup_indexes;
mod m20261224_000001_unique_credential_email;
mod m20261226_000001_lease_fillfactor;

/// Every migration of the service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_tables::Migration),
            Box::new(m20261201_000001_outbox_roles_and_claims::Migration),
            Box::new(m20261202_000001_groups_links_rules::Migration),
            Box::new(m20261215_000001_replicas_leases_web_state::Migration),
            Box::new(m20261222_000001_pending_picks::Migration),
            Box::new(m20261223_000001_lookup_indexes::Migration),
            Box::new(m20261224_000001_unique_credential_email::Migration),
            Box::new(m20261226_000001_lease_fillfactor::Migration),
        ]
    }
}
