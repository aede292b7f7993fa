//! `batch_items`: one conversation to generate within a batch (seed 003, part 7 §1,
//! whose DDL is the reference).
//!
//! Each item belongs to a batch (ON DELETE CASCADE) and, once generated, points at its
//! conversation (`conversation_id`, ON DELETE SET NULL). `progress` is between 0 and
//! 100 and, as in the seed's DDL, nullable with default 0. The batch's counters always
//! equal what its items say.
//!
//! Beyond seed 003's DDL, an item in flight carries a lease, as a coding job does
//! (migration `m20251130_000007_batch_item_leases`): `locked_by` is the worker that
//! claimed it, `locked_until` the end of its lease; an item still `processing` after
//! `locked_until` may be claimed by another worker.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::conversations::ConversationTier;
use crate::ids::{BatchId, BatchItemId, ConversationId};

text_enum! {
    /// The state of a batch item (`batch_items.status`, default `'queued'`).
    #[derive(Default)]
    pub enum ItemStatus {
        /// `'queued'`: waiting.
        #[default]
        Queued = "queued",
        /// `'processing'`: being generated.
        Processing = "processing",
        /// `'completed'`: generated, `conversation_id` set.
        Completed = "completed",
        /// `'failed'`: generation failed, `error` set.
        Failed = "failed",
    }
}

/// A row of `batch_items`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "batch_items")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: BatchItemId,
    /// The batch, → `batch_jobs.id` (ON DELETE CASCADE).
    pub batch_job_id: BatchId,
    /// Position within the batch.
    pub position: i32,
    /// What the conversation is about.
    #[sea_orm(column_type = "Text")]
    pub topic: String,
    /// How the conversation is generated.
    pub tier: ConversationTier,
    /// Free-form generation parameters (default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub parameters: Json,
    /// Current state.
    pub status: ItemStatus,
    /// Percent done, 0 to 100 (default 0; nullable as in the seed's DDL).
    pub progress: Option<i32>,
    /// Estimated seconds to generate the item.
    pub estimated_time: Option<i32>,
    /// The generated conversation, → `conversations.id` (ON DELETE SET NULL).
    pub conversation_id: Option<ConversationId>,
    /// Why generation failed.
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    /// The worker that claimed the item last (kept after it finished or was requeued).
    #[sea_orm(column_type = "Text", nullable)]
    pub locked_by: Option<String>,
    /// When the lease of the worker holding the item ends: set exactly while the item is
    /// `processing`; after it, another worker may claim the item.
    pub locked_until: Option<DateTimeUtc>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `batch_items`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The batch (`batch_job_id`).
    #[sea_orm(
        belongs_to = "super::batch_jobs::Entity",
        from = "Column::BatchJobId",
        to = "super::batch_jobs::Column::Id",
        on_delete = "Cascade"
    )]
    BatchJob,
    /// The generated conversation (`conversation_id`).
    #[sea_orm(
        belongs_to = "super::conversations::Entity",
        from = "Column::ConversationId",
        to = "super::conversations::Column::Id",
        on_delete = "SetNull"
    )]
    Conversation,
}

impl Related<super::batch_jobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::BatchJob.def()
    }
}

impl Related<super::conversations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Conversation.def()
    }
}

stamped_active_model_behavior!(updated_at);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_round_trip() {
        crate::test_support::assert_round_trips!(ItemStatus);
        assert_eq!(ItemStatus::default(), ItemStatus::Queued);
    }
}
