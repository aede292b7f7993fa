//! `notification_preferences`: what notifications a user wants (seed 004; SCHEMA.md
//! "Accounts").
//!
//! One row per profile, keyed by the profile's id and created with it at signup. Users
//! change their own channels and `muted_types`; the service creates and deletes rows.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::ProfileId;

/// A row of `notification_preferences`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "notification_preferences")]
pub struct Model {
    /// Primary key, → `profiles.id` (ON DELETE CASCADE).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: ProfileId,
    /// Whether e-mail notifications are wanted (default true).
    pub email_enabled: bool,
    /// Whether in-app notifications are wanted (default true).
    pub in_app_enabled: bool,
    /// Notification types the user does not want (a JSON array of type names, default `[]`).
    #[sea_orm(column_type = "JsonBinary")]
    pub muted_types: Json,
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

keyed_active_model_behavior!(updated_at);
