//! `credentials`: one row per Google account, holding the refresh token its calendars share.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credentials")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub email: Option<String>,
    /// base64 of nonce || ChaCha20-Poly1305 ciphertext, bound to the row id; see
    /// `store::crypto`.
    #[sea_orm(column_type = "Text")]
    pub refresh_token_enc: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
