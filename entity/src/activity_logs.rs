//! `activity_logs`: the user-visible actions, append-only (seed 004; SCHEMA.md
//! "Accounts").
//!
//! Written by the database in the same transaction as the action (a project created,
//! archived or deleted; a session started or ended; an API key created or revoked; a batch
//! created or cancelled); users read their own log. Rows never change.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ActivityId, ProfileId};

/// A row of `activity_logs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "activity_logs")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ActivityId,
    /// Whose action, → `profiles.id` (ON DELETE CASCADE).
    pub user_id: ProfileId,
    /// What happened, e.g. `project.created`, `session.ended`, `api_key.revoked`.
    #[sea_orm(column_type = "Text")]
    pub action: String,
    /// The kind of row it happened to, e.g. `project`.
    #[sea_orm(column_type = "Text", nullable)]
    pub entity_type: Option<String>,
    /// The id of that row.
    pub entity_id: Option<Uuid>,
    /// Free-form JSON object (default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub metadata: Json,
    /// When it happened.
    pub created_at: DateTimeUtc,
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

stamped_active_model_behavior!();
