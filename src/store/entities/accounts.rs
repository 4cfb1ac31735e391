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
    /// base64 of nonce || ChaCha20-Poly1305 ciphertext; see `store::crypto`.
    #[sea_orm(column_type = "Text")]
    pub refresh_token_enc: String,
    /// active | paused | needs_reauth | degraded
    pub status: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub status_reason: Option<String>,
    pub time_zone: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
