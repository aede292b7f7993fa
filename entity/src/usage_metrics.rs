//! `usage_metrics`: what a user did, per UTC day (seed 004; SCHEMA.md "Accounts").
//!
//! One row per user and day (`(user_id, day)` unique). The database counts, in the same
//! transaction as the action: sessions started, jobs completed, conversations created,
//! tokens of the conversations' turns, and credits spent. Users read their own rows.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ProfileId, UsageMetricId};

/// A row of `usage_metrics`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "usage_metrics")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: UsageMetricId,
    /// The user, → `profiles.id` (ON DELETE CASCADE).
    pub user_id: ProfileId,
    /// The UTC day counted.
    pub day: Date,
    /// Coding sessions started.
    pub sessions_started: i32,
    /// Coding jobs completed.
    pub jobs_completed: i32,
    /// Conversations created.
    pub conversations_created: i32,
    /// Tokens of the conversation turns written.
    pub tokens: i64,
    /// Credits spent.
    pub credits_spent: i64,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of the table.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner (`user_id`).
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::UserId",
        to = "super::profiles::Column::Id",
        on_delete = "Cascade"
    )]
    Profile,
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Profile.def()
    }
}

stamped_active_model_behavior!(updated_at);
