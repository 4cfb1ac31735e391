//! `disabled_links`: the links (source → target, within a group) turned off; every other
//! ordered pair of a group is on.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "disabled_links")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub source_account_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub target_account_id: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
