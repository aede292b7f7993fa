//! `templates`: the sources conversations are generated from (seed 003, part 1 §5, its 27
//! columns; SCHEMA.md "Generation sources and exports").
//!
//! Owned by a profile (`created_by`, ON DELETE CASCADE); `last_modified_by` names who made
//! the latest content change and becomes NULL when that profile is deleted. A template's
//! `template_text` has `{{name}}` placeholders, each named in `variables`. Its scenarios
//! ([`scenarios`](crate::scenarios)) are deleted with it; conversations and generation logs
//! that name it keep their row with `template_id = NULL`.
//!
//! The database keeps `version` (+1 on every change of a content column: every column from
//! `template_name` to `applicable_topics`), `last_modified` and `last_modified_by` (the
//! acting user on PostgreSQL, else the profile the writer names in that update); whatever a
//! writer puts there otherwise is ignored. On SQLite they are written right after the
//! row, so read the row again after an update to see them. `usage_count`, `rating` and
//! `success_rate` are the service's. On PostgreSQL users read active templates and their
//! own, and create and edit their own.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::conversations::ConversationTier;
use crate::ids::{ProfileId, TemplateId};

/// A JSON array of strings (`templates.variables`, `required_elements`,
/// `applicable_personas`, `applicable_emotions`, `applicable_topics`), `[]` by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(transparent)]
pub struct StringList(pub Vec<String>);

impl From<Vec<String>> for StringList {
    fn from(items: Vec<String>) -> Self {
        Self(items)
    }
}

impl<'a> From<&[&'a str]> for StringList {
    fn from(items: &[&'a str]) -> Self {
        Self(items.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl FromIterator<String> for StringList {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// A row of `templates`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "templates")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: TemplateId,
    /// Not blank, at most 200 characters.
    #[sea_orm(column_type = "Text")]
    pub template_name: String,
    /// What the template is for.
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    /// A free-form category, e.g. "Financial Planning".
    #[sea_orm(column_type = "Text")]
    pub category: String,
    /// The tier of the conversations it generates.
    pub tier: ConversationTier,
    /// The prompt, with `{{name}}` placeholders named in `variables`.
    #[sea_orm(column_type = "Text")]
    pub template_text: String,
    /// The conversation's structure, e.g. "Introduction → … → Success".
    #[sea_orm(column_type = "Text", nullable)]
    pub structure: Option<String>,
    /// The placeholder names of `template_text`.
    #[sea_orm(column_type = "JsonBinary")]
    pub variables: StringList,
    /// The tone.
    #[sea_orm(column_type = "Text", nullable)]
    pub tone: Option<String>,
    /// 1 to 10.
    pub complexity_baseline: Option<i32>,
    /// Notes on style.
    #[sea_orm(column_type = "Text", nullable)]
    pub style_notes: Option<String>,
    /// An example conversation.
    #[sea_orm(column_type = "Text", nullable)]
    pub example_conversation: Option<String>,
    /// 0 to 10.
    pub quality_threshold: Option<f64>,
    /// Elements every generated conversation must have.
    #[sea_orm(column_type = "JsonBinary")]
    pub required_elements: StringList,
    /// Personas it suits.
    #[sea_orm(column_type = "JsonBinary")]
    pub applicable_personas: StringList,
    /// Emotions it suits.
    #[sea_orm(column_type = "JsonBinary")]
    pub applicable_emotions: StringList,
    /// Topics it suits.
    #[sea_orm(column_type = "JsonBinary")]
    pub applicable_topics: StringList,
    /// How often it was used (≥ 0; the service's).
    pub usage_count: i32,
    /// 0 to 5 (the service's).
    pub rating: f64,
    /// 0 to 1 (the service's).
    pub success_rate: Option<f64>,
    /// 1, +1 on every content change (kept by the database).
    pub version: i32,
    /// Offered to everyone (an active template is readable by every signed-in user).
    pub is_active: bool,
    /// The owner, → `profiles.id` (ON DELETE CASCADE).
    pub created_by: ProfileId,
    /// Who made the latest content change, → `profiles.id` (ON DELETE SET NULL; kept by
    /// the database).
    pub last_modified_by: Option<ProfileId>,
    /// When the content last changed (kept by the database).
    pub last_modified: DateTimeUtc,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `templates`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner (`created_by`).
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::CreatedBy",
        to = "super::profiles::Column::Id",
        on_delete = "Cascade"
    )]
    Owner,
    /// Who made the latest content change (`last_modified_by`).
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::LastModifiedBy",
        to = "super::profiles::Column::Id",
        on_delete = "SetNull"
    )]
    LastModifiedBy,
    /// Its scenarios (`scenarios.parent_template_id`).
    #[sea_orm(has_many = "super::scenarios::Entity")]
    Scenarios,
    /// The generation logs naming it (`generation_logs.template_id`).
    #[sea_orm(has_many = "super::generation_logs::Entity")]
    GenerationLogs,
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Owner.def()
    }
}

impl Related<super::scenarios::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Scenarios.def()
    }
}

impl Related<super::generation_logs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GenerationLogs.def()
    }
}

stamped_active_model_behavior!(updated_at);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_lists_are_json_arrays() -> Result<(), serde_json::Error> {
        let list = StringList::from(&["persona", "topic"][..]);
        let value = serde_json::to_value(&list)?;
        assert_eq!(value, serde_json::json!(["persona", "topic"]));
        assert_eq!(serde_json::from_value::<StringList>(value)?, list);
        Ok(())
    }
}
