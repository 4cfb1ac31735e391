//! `source_events`: what the store last saw of each event on each account.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "source_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    #[sea_orm(column_type = "Text")]
    pub event_id: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub ical_uid: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub recurring_event_id: Option<String>,
    pub status: String,
    /// The event carries a block marker (ours or another installation's).
    pub is_block: bool,
    /// JSON of the normalized event the planner needs.
    #[sea_orm(column_type = "Text")]
    pub data: String,
    pub google_updated: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
