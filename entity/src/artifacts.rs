//! `artifacts`: what a pipeline run produced — a zip, a file, … (seeds 000 and 001).
//!
//! Each artifact belongs to a run (`run_id` → `jobs.run_id`, ON DELETE CASCADE) and has
//! a `kind` (free text: `zip`, `file`, …), an optional `url` where it can be fetched and
//! free-form JSON `meta`. `file_size` is ≥ 0 when known, and `checksum`, when set, is
//! `sha256:` followed by 64 lowercase hex digits ([`is_sha256_checksum`]). `owner_id` is
//! always the run's owner: on PostgreSQL the database fills it in when an insert leaves
//! it out, and on both backends it refuses any other value. No `updated_at`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ArtifactId, ProfileId, RunId};

/// Whether `checksum` has the form the database accepts: `sha256:` and 64 lowercase hex
/// digits.
pub fn is_sha256_checksum(checksum: &str) -> bool {
    checksum.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// A row of `artifacts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "artifacts")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ArtifactId,
    /// The run, → `jobs.run_id` (ON DELETE CASCADE).
    #[sea_orm(column_type = "Text")]
    pub run_id: RunId,
    /// What it is (`zip`, `file`, …).
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    /// Where it can be fetched.
    #[sea_orm(column_type = "Text", nullable)]
    pub url: Option<String>,
    /// Free-form JSON metadata.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub meta: Option<Json>,
    /// The run's owner (kept equal to it by the database).
    pub owner_id: ProfileId,
    /// Size in bytes (≥ 0).
    pub file_size: Option<i64>,
    /// MIME type.
    #[sea_orm(column_type = "Text", nullable)]
    pub content_type: Option<String>,
    /// `sha256:` followed by 64 lowercase hex digits.
    #[sea_orm(column_type = "Text", nullable)]
    pub checksum: Option<String>,
    /// When the artifact was recorded.
    pub created_at: DateTimeUtc,
}

/// Relations of `artifacts`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The run (`run_id`).
    #[sea_orm(
        belongs_to = "super::pipeline_runs::Entity",
        from = "Column::RunId",
        to = "super::pipeline_runs::Column::RunId",
        on_delete = "Cascade"
    )]
    Run,
}

impl Related<super::pipeline_runs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Run.def()
    }
}

stamped_active_model_behavior!();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_sha256_in_lowercase_hex() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(is_sha256_checksum(&format!("sha256:{hex}")));
        assert!(!is_sha256_checksum(&format!(
            "sha256:{}",
            hex.to_uppercase()
        )));
        assert!(!is_sha256_checksum(&format!("sha256:{}", &hex[1..])));
        assert!(!is_sha256_checksum(&format!("md5:{hex}")));
        assert!(!is_sha256_checksum(&format!("sha256:{hex}0")));
    }
}
