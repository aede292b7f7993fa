//! `coding_jobs`: the work queue of coding sessions (seed 002, step 6).
//!
//! Each job belongs to a session (ON DELETE CASCADE). Workers claim the
//! highest-`priority` `'pending'` job, FIFO by `created_at` within a priority, whose
//! `run_after` has passed (retry back-off); on PostgreSQL with
//! `FOR UPDATE SKIP LOCKED`. A claim sets `locked_by` (the worker) and
//! `locked_until` (the lease end): a job still `'processing'` after its lease is
//! claimable again. `retry_count` and `max_retries` are ≥ 0.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{JobId, SessionId};

text_enum! {
    /// The state of a queued job (`coding_jobs.status`, default `'pending'`).
    #[derive(Default)]
    pub enum JobStatus {
        /// `'pending'`: waiting to be claimed.
        #[default]
        Pending = "pending",
        /// `'processing'`: claimed by a worker holding the lease.
        Processing = "processing",
        /// `'completed'`: done, `result` set.
        Completed = "completed",
        /// `'failed'`: gave up, `error_message` set.
        Failed = "failed",
    }
}

/// A row of `coding_jobs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "coding_jobs")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: JobId,
    /// The session, → `coding_sessions.id` (ON DELETE CASCADE).
    pub session_id: SessionId,
    /// What to do.
    #[sea_orm(column_type = "Text")]
    pub prompt: String,
    /// Current state.
    pub status: JobStatus,
    /// Higher runs first (default 0).
    pub priority: i32,
    /// How many times the job has been retried (≥ 0).
    pub retry_count: i32,
    /// How many retries are allowed (≥ 0, default 3).
    pub max_retries: i32,
    /// The job is not claimable before this instant.
    pub run_after: DateTimeUtc,
    /// The worker holding the lease.
    #[sea_orm(column_type = "Text", nullable)]
    pub locked_by: Option<String>,
    /// When the lease ends.
    pub locked_until: Option<DateTimeUtc>,
    /// Free-form JSON result of a completed job.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub result: Option<Json>,
    /// Why the job failed.
    #[sea_orm(column_type = "Text", nullable)]
    pub error_message: Option<String>,
    /// When processing started.
    pub started_at: Option<DateTimeUtc>,
    /// When the job completed or failed.
    pub completed_at: Option<DateTimeUtc>,
    /// When the row was created (FIFO order within a priority).
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `coding_jobs`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The session (`session_id`).
    #[sea_orm(
        belongs_to = "super::coding_sessions::Entity",
        from = "Column::SessionId",
        to = "super::coding_sessions::Column::Id",
        on_delete = "Cascade"
    )]
    CodingSession,
}

impl Related<super::coding_sessions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CodingSession.def()
    }
}

stamped_active_model_behavior!(updated_at);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_round_trip() {
        crate::test_support::assert_round_trips!(JobStatus);
        assert_eq!(JobStatus::default(), JobStatus::Pending);
    }
}
