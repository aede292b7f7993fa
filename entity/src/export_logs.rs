//! `export_logs`: one row per dataset export (seed 003, part 6; SCHEMA.md "Generation
//! sources and exports").
//!
//! Belongs to a profile (`user_id`, ON DELETE CASCADE); `export_id` is the unique
//! human-facing id; `scope` is the filter that chose the conversations. `completed_at` is
//! set by the database on entering completed or failed (SQLite: right after the row is
//! written), and a processing export has none. Written by the service only; on PostgreSQL
//! users read their own.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ExportId, ProfileId};

text_enum! {
    /// The file format (`export_logs.format`).
    pub enum ExportFormat {
        /// `'jsonl'`: one JSON document per line.
        Jsonl = "jsonl",
        /// `'json'`.
        Json = "json",
        /// `'csv'`.
        Csv = "csv",
        /// `'markdown'`.
        Markdown = "markdown",
    }
}

text_enum! {
    /// The state of an export (`export_logs.status`, default `'processing'`).
    #[derive(Default)]
    pub enum ExportStatus {
        /// `'processing'`: being written.
        #[default]
        Processing = "processing",
        /// `'completed'`: done; `completed_at` is set.
        Completed = "completed",
        /// `'failed'`: ended by an error (`error_message`); `completed_at` is set.
        Failed = "failed",
    }
}

/// A row of `export_logs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "export_logs")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ExportId,
    /// The human-facing export id (unique).
    #[sea_orm(column_type = "Text", unique)]
    pub export_id: String,
    /// Who exported, → `profiles.id` (ON DELETE CASCADE).
    pub user_id: ProfileId,
    /// The file format.
    pub format: ExportFormat,
    /// The filter that chose the conversations (default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub scope: Json,
    /// How many conversations were exported (≥ 0).
    pub conversation_count: i32,
    /// The file's size in bytes (≥ 0).
    pub file_size: i64,
    /// The export's state.
    pub status: ExportStatus,
    /// Why the export failed.
    #[sea_orm(column_type = "Text", nullable)]
    pub error_message: Option<String>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the export completed or failed (set by the database).
    pub completed_at: Option<DateTimeUtc>,
}

/// Relations of `export_logs`.
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
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Profile.def()
    }
}

stamped_active_model_behavior!();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        crate::test_support::assert_round_trips!(ExportFormat, ExportStatus);
        assert_eq!(ExportStatus::default(), ExportStatus::Processing);
    }
}
