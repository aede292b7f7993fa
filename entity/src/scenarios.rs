//! `scenarios`: a template filled in for one situation (seed 003; SCHEMA.md "Generation
//! sources and exports").
//!
//! Belongs to a template (`parent_template_id`, ON DELETE CASCADE) and a profile
//! (`created_by`, ON DELETE CASCADE); `parameter_values` gives values for the template's
//! variables. `generation_status`, `conversation_id` (the generated conversation, NULL
//! once it is deleted), `error_message` and `quality_score` (0 to 10) are the service's.
//! On PostgreSQL a user creates scenarios only under their own templates. Its edge cases
//! are deleted with it.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, ProfileId, ScenarioId, TemplateId};

text_enum! {
    /// Whether a conversation was generated from the scenario
    /// (`scenarios.generation_status`, default `'not_generated'`).
    #[derive(Default)]
    pub enum GenerationStatus {
        /// `'not_generated'`: nothing generated yet.
        #[default]
        NotGenerated = "not_generated",
        /// `'generated'`: `conversation_id` names the conversation.
        Generated = "generated",
        /// `'error'`: generation failed (`error_message`).
        Error = "error",
    }
}

text_enum! {
    /// The life of a scenario (`scenarios.status`, default `'draft'`).
    #[derive(Default)]
    pub enum ScenarioStatus {
        /// `'draft'`: being written.
        #[default]
        Draft = "draft",
        /// `'active'`: in use.
        Active = "active",
        /// `'archived'`: retired.
        Archived = "archived",
    }
}

/// A row of `scenarios`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "scenarios")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ScenarioId,
    /// At most 200 characters.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// What the scenario is about.
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    /// The situation.
    #[sea_orm(column_type = "Text", nullable)]
    pub context: Option<String>,
    /// The template, → `templates.id` (ON DELETE CASCADE).
    pub parent_template_id: TemplateId,
    /// Values for the template's variables (a JSON object, default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub parameter_values: Json,
    /// The topic.
    #[sea_orm(column_type = "Text")]
    pub topic: String,
    /// The persona.
    #[sea_orm(column_type = "Text")]
    pub persona: String,
    /// The emotional arc.
    #[sea_orm(column_type = "Text")]
    pub emotional_arc: String,
    /// Whether a conversation was generated (the service's).
    pub generation_status: GenerationStatus,
    /// The generated conversation, → `conversations.id` (ON DELETE SET NULL; the service's).
    pub conversation_id: Option<ConversationId>,
    /// Why generation failed (the service's).
    #[sea_orm(column_type = "Text", nullable)]
    pub error_message: Option<String>,
    /// The scenario's state.
    pub status: ScenarioStatus,
    /// 0 to 10 (the service's).
    pub quality_score: Option<f64>,
    /// The owner, → `profiles.id` (ON DELETE CASCADE).
    pub created_by: ProfileId,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `scenarios`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The template (`parent_template_id`).
    #[sea_orm(
        belongs_to = "super::templates::Entity",
        from = "Column::ParentTemplateId",
        to = "super::templates::Column::Id",
        on_delete = "Cascade"
    )]
    Template,
    /// The generated conversation (`conversation_id`).
    #[sea_orm(
        belongs_to = "super::conversations::Entity",
        from = "Column::ConversationId",
        to = "super::conversations::Column::Id",
        on_delete = "SetNull"
    )]
    Conversation,
    /// The owner (`created_by`).
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::CreatedBy",
        to = "super::profiles::Column::Id",
        on_delete = "Cascade"
    )]
    Owner,
    /// Its edge cases (`edge_cases.scenario_id`).
    #[sea_orm(has_many = "super::edge_cases::Entity")]
    EdgeCases,
}

impl Related<super::templates::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Template.def()
    }
}

impl Related<super::conversations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Conversation.def()
    }
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Owner.def()
    }
}

impl Related<super::edge_cases::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::EdgeCases.def()
    }
}

stamped_active_model_behavior!(updated_at);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_round_trip() {
        crate::test_support::assert_round_trips!(GenerationStatus, ScenarioStatus);
        assert_eq!(GenerationStatus::default(), GenerationStatus::NotGenerated);
        assert_eq!(ScenarioStatus::default(), ScenarioStatus::Draft);
    }
}
