//! `accounts`: one row per connected Google calendar.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Operator-facing name such as "Calendar 01"; also the AAD of the token ciphertext.
    #[sea_orm(unique)]
    pub alias: String,
    pub email: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub calendar_id: String,
    /// The token before credentials existed (empty once moved to `credentials`).
    #[sea_orm(column_type = "Text")]
    pub refresh_token_enc: String,
    /// active | paused | needs_reauth | degraded
    pub status: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub status_reason: Option<String>,
    pub time_zone: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub group_id: Option<i64>,
    /// The Google account (and refresh token) this calendar is reached through.
    pub credential_id: Option<i64>,
    // The calendar's own rules; NULL follows the environment's default.
    #[sea_orm(column_type = "Text", nullable)]
    pub block_title_template: Option<String>,
    pub block_details: Option<String>,
    pub skip_all_day: Option<bool>,
    pub skip_out_of_office: Option<bool>,
    pub skip_focus_time: Option<bool>,
    #[sea_orm(column_type = "Text", nullable)]
    pub exclude_title_regex: Option<String>,
    pub look_back_days: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
