//! `generation_logs`: one row per model call of the generator (seed 003; SCHEMA.md
//! "Generation sources and exports"). Append-only.
//!
//! Belongs to the user whose generation it was (`user_id`, ON DELETE CASCADE); names the
//! conversation and the template when there are any (both ON DELETE SET NULL), and a
//! pipeline `run_id` as plain text. The database refuses every change of an entry (but
//! the foreign keys' SET NULL) and, on PostgreSQL, every delete but the user's cascade.
//! Written by the service only; on PostgreSQL users read their own.
//!
//! `cost_usd` is `numeric(12,6)` on PostgreSQL (6 decimal places are kept) and `real(12, 6)`
//! on SQLite (REAL affinity: a double); the entity reads it as a [`Decimal`] on both (SeaORM's
//! `with-rust_decimal`: PostgreSQL's `numeric` cannot be read into an `f64`, and a cast in
//! the select would break `RETURNING` on SQLite).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, GenerationLogId, ProfileId, TemplateId};

/// A row of `generation_logs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "generation_logs")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: GenerationLogId,
    /// Whose generation, → `profiles.id` (ON DELETE CASCADE).
    pub user_id: ProfileId,
    /// The conversation generated, → `conversations.id` (ON DELETE SET NULL).
    pub conversation_id: Option<ConversationId>,
    /// A pipeline run id, as text.
    #[sea_orm(column_type = "Text", nullable)]
    pub run_id: Option<String>,
    /// The template used, → `templates.id` (ON DELETE SET NULL).
    pub template_id: Option<TemplateId>,
    /// What was sent to the model.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub request_payload: Option<Json>,
    /// What the model answered.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub response_payload: Option<Json>,
    /// Generation parameters (default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub parameters: Json,
    /// What the call cost, in US dollars (≥ 0; `numeric(12,6)` on PostgreSQL).
    #[sea_orm(column_type = "Decimal(Some((12, 6)))")]
    pub cost_usd: Decimal,
    /// Tokens sent (≥ 0).
    pub input_tokens: i32,
    /// Tokens received (≥ 0).
    pub output_tokens: i32,
    /// How long the call took, in milliseconds (≥ 0).
    pub duration_ms: i32,
    /// Why the call failed.
    #[sea_orm(column_type = "Text", nullable)]
    pub error_message: Option<String>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
}

/// Relations of `generation_logs`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The user (`user_id`).
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::UserId",
        to = "super::profiles::Column::Id",
        on_delete = "Cascade"
    )]
    Profile,
    /// The conversation (`conversation_id`).
    #[sea_orm(
        belongs_to = "super::conversations::Entity",
        from = "Column::ConversationId",
        to = "super::conversations::Column::Id",
        on_delete = "SetNull"
    )]
    Conversation,
    /// The template (`template_id`).
    #[sea_orm(
        belongs_to = "super::templates::Entity",
        from = "Column::TemplateId",
        to = "super::templates::Column::Id",
        on_delete = "SetNull"
    )]
    Template,
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Profile.def()
    }
}

impl Related<super::conversations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Conversation.def()
    }
}

impl Related<super::templates::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Template.def()
    }
}

stamped_active_model_behavior!();
