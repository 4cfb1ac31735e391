//! `sync_state`: one row per account — its sync token and how the last sync went.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_state")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: i64,
    #[sea_orm(column_type = "Text", nullable)]
    pub sync_token: Option<String>,
    pub last_full_sync_at: Option<DateTimeUtc>,
    pub last_incremental_sync_at: Option<DateTimeUtc>,
    pub last_result: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    /// Set when a full resync would delete too many blocks; an operator clears it.
    pub mass_delete_hold: bool,
    pub updated_at: DateTimeUtc,
    /// The calendar's blocks must be planned again from its stored events (it joined a
    /// group, a link or a rule changed); cleared by the commit of that replan.
    pub replan_requested_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
