//! `projects`: an app a user builds (seed 002, step 4).
//!
//! Owned by a profile (`user_id`, ON DELETE CASCADE). `name` is not blank and at most
//! 200 characters. Deleting a project is soft: `status` becomes `'deleted'` and the
//! row stays; `'archived'` hides it without deleting. Its coding sessions are deleted
//! with it only when the row itself is deleted (ON DELETE CASCADE).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ProfileId, ProjectId};

text_enum! {
    /// The lifecycle state of a project (`projects.status`, default `'active'`).
    #[derive(Default)]
    pub enum ProjectStatus {
        /// `'active'`: in use, the state of a new project.
        #[default]
        Active = "active",
        /// `'archived'`: kept but out of the way.
        Archived = "archived",
        /// `'deleted'`: soft-deleted.
        Deleted = "deleted",
    }
}

/// A row of `projects`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "projects")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ProjectId,
    /// The owner, → `profiles.id` (ON DELETE CASCADE).
    pub user_id: ProfileId,
    /// Display name: not blank, at most 200 characters.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// Free-text description.
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    /// The template the project was created from, if any.
    #[sea_orm(column_type = "Text", nullable)]
    pub template_id: Option<String>,
    /// Expo configuration (free-form JSON object, default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub expo_config: Json,
    /// The sandbox running the project, if any.
    #[sea_orm(column_type = "Text", nullable)]
    pub sandbox_id: Option<String>,
    /// Lifecycle state; deletion is soft.
    pub status: ProjectStatus,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `projects`.
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
    /// The project's coding sessions (`coding_sessions.project_id`).
    #[sea_orm(has_many = "super::coding_sessions::Entity")]
    CodingSessions,
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Profile.def()
    }
}

impl Related<super::coding_sessions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CodingSessions.def()
    }
}

stamped_active_model_behavior!(updated_at);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_round_trip() {
        crate::test_support::assert_round_trips!(ProjectStatus);
        assert_eq!(ProjectStatus::default(), ProjectStatus::Active);
    }
}
