//! `notifications`: messages to a user (seed 004; SCHEMA.md "Accounts").
//!
//! Written by the service (and by the database: `credits_low`); users read their own,
//! mark them read (`read_at`) and delete them.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{NotificationId, ProfileId};

text_enum! {
    /// What a notification is about (`notifications.type`).
    pub enum NotificationType {
        /// `'session_ready'`: a coding session is ready.
        SessionReady = "session_ready",
        /// `'session_failed'`: a coding session failed.
        SessionFailed = "session_failed",
        /// `'batch_completed'`: a batch finished.
        BatchCompleted = "batch_completed",
        /// `'batch_failed'`: a batch failed.
        BatchFailed = "batch_failed",
        /// `'credits_low'`: a spend took the balance under the low-credit threshold.
        CreditsLow = "credits_low",
        /// `'system'`: from the platform.
        System = "system",
    }
}

/// A row of `notifications`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: NotificationId,
    /// The recipient, → `profiles.id` (ON DELETE CASCADE).
    pub user_id: ProfileId,
    /// What it is about.
    #[sea_orm(column_name = "type")]
    pub kind: NotificationType,
    /// Its title: at most 200 characters.
    #[sea_orm(column_type = "Text")]
    pub title: String,
    /// Its text: at most 2000 characters.
    #[sea_orm(column_type = "Text")]
    pub body: String,
    /// Free-form JSON object (default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub data: Json,
    /// When the user read it, if they have.
    pub read_at: Option<DateTimeUtc>,
    /// When it was created.
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
