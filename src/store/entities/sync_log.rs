//! `sync_log`: the audit trail shown on the admin pages. Never holds event titles.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: DateTimeUtc,
    pub account_id: Option<i64>,
    pub kind: String,
    /// ok | error | skipped
    pub result: String,
    #[sea_orm(column_type = "Text")]
    pub detail: String,
    pub count: Option<i64>,
    pub duration_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
