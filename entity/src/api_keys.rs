//! `api_keys`: keys for programmatic access (seed 004; SCHEMA.md "Accounts").
//!
//! The full key is shown once, at creation; the table keeps its `key_prefix` (unique,
//! shown in lists) and a hash of the secret (`key_hash`, unique; users cannot read it). A
//! key is usable until `revoked_at` (set once, never cleared) or `expires_at`. At most 10
//! unrevoked keys per user.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, ProfileId};

/// A row of `api_keys`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ApiKeyId,
    /// The owner, → `profiles.id` (ON DELETE CASCADE).
    pub user_id: ProfileId,
    /// A name the user chose: not blank, at most 100 characters.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// The first characters of the key, shown in lists (unique).
    #[sea_orm(column_type = "Text", unique)]
    pub key_prefix: String,
    /// A hash of the key's secret (unique; the secret itself is never stored).
    #[sea_orm(column_type = "Text", unique)]
    pub key_hash: String,
    /// The scope names the key grants (a JSON array of strings, default `[]`).
    #[sea_orm(column_type = "JsonBinary")]
    pub scopes: Json,
    /// When the key was last used to authenticate (kept to the minute).
    pub last_used_at: Option<DateTimeUtc>,
    /// When the key stops working, if ever.
    pub expires_at: Option<DateTimeUtc>,
    /// When the key was revoked (set once).
    pub revoked_at: Option<DateTimeUtc>,
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
