//! `desired_blocks`: the outbox — what each target calendar should hold, and what was applied.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "desired_blocks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub target_account_id: i64,
    pub source_account_id: i64,
    #[sea_orm(column_type = "Text")]
    pub source_event_id: String,
    #[sea_orm(column_type = "Text")]
    pub block_id: String,
    /// JSON event resource to write; NULL means the block must not exist.
    #[sea_orm(column_type = "Text", nullable)]
    pub body: Option<String>,
    pub desired_hash: Option<String>,
    pub applied_hash: Option<String>,
    pub google_etag: Option<String>,
    /// pending | applied | excluded | failed
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// single | series | occurrence | detached
    pub role: String,
    /// On an occurrence: the block id of its block series.
    #[sea_orm(column_type = "Text", nullable)]
    pub series_block_id: Option<String>,
    /// The writer (process) that may apply this row until `claim_expires_at`.
    pub claimed_by: Option<String>,
    pub claim_expires_at: Option<DateTimeUtc>,
    /// The sync that last queued this row, for following one change through the logs.
    pub sync_id: Option<String>,
    /// Google's `updated` of the last write of this block by a writer.
    pub applied_updated: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
