//! `job_events`: the append-only log of a pipeline run (seeds 000 and 001).
//!
//! Each event belongs to a run (`run_id` → `jobs.run_id`, ON DELETE CASCADE) and names
//! the bot that wrote it (`bot_name`) and what happened (`event_type`, free text), with
//! an optional JSON `payload`. `owner_id` is always the run's owner: on PostgreSQL the
//! database fills it in when an insert leaves it out, and on both backends it refuses any
//! other value, so row-level security can read it directly. Events never change and are
//! deleted only with their run, so there is no `updated_at`. The table keeps the seeds'
//! name, `job_events`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ProfileId, RunEventId, RunId};

/// A row of `job_events`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "job_events")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: RunEventId,
    /// The run, → `jobs.run_id` (ON DELETE CASCADE).
    #[sea_orm(column_type = "Text")]
    pub run_id: RunId,
    /// The bot that logged the event.
    #[sea_orm(column_type = "Text")]
    pub bot_name: String,
    /// What happened (free text, e.g. `started`, `progress`, `error`).
    #[sea_orm(column_type = "Text")]
    pub event_type: String,
    /// Free-form JSON payload.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub payload: Option<Json>,
    /// The run's owner (kept equal to it by the database).
    pub owner_id: ProfileId,
    /// When the event was logged.
    pub created_at: DateTimeUtc,
}

/// Relations of `job_events`.
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
