//! `jobs`: a pipeline run (seeds 000 and 001; SCHEMA.md "Pipeline runs").
//!
//! A pipeline of bots turns a project specification (`project_spec`, a JSON object) into
//! artifacts, logging events as it goes. The run is keyed by its human-facing `run_id`
//! (not blank, at most 200 characters), chosen by whoever creates it, and owned by a
//! profile (`owner_id`, ON DELETE CASCADE); its events ([`pipeline_events`]) and
//! artifacts ([`artifacts`]) are deleted with it. The table keeps the seeds' name, `jobs`;
//! the module is `pipeline_runs` so as not to be confused with the coding-job queue
//! ([`coding_jobs`](crate::coding_jobs)).
//!
//! `status` only moves along [`RunStatus::can_transition_to`] — pending → running →
//! completed | failed, pending | running → cancelled — and the database holds that for
//! every writer. It also sets `started_at` on entering running and `completed_at` on
//! entering an end state (unless the writer gave them), allows `error_message` only on a
//! failed run, and never lets a run change owner. On PostgreSQL a user creates their own
//! runs as pending and may only cancel them; everything else is the service's (the bots').
//!
//! [`pipeline_events`]: crate::pipeline_events
//! [`artifacts`]: crate::artifacts

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ProfileId, RunId};

text_enum! {
    /// The state of a pipeline run (`jobs.status`, default `'pending'`).
    #[derive(Default)]
    pub enum RunStatus {
        /// `'pending'`: created, not picked up by a bot yet.
        #[default]
        Pending = "pending",
        /// `'running'`: the bots are at work; `started_at` is set.
        Running = "running",
        /// `'completed'`: finished; `completed_at` is set. Final.
        Completed = "completed",
        /// `'failed'`: ended by an error (`error_message`); `completed_at` is set. Final.
        Failed = "failed",
        /// `'cancelled'`: stopped by its owner or the service; `completed_at` is set. Final.
        Cancelled = "cancelled",
    }
}

impl RunStatus {
    /// The end states: nothing leaves them.
    pub const FINAL: &'static [Self] = &[Self::Completed, Self::Failed, Self::Cancelled];

    /// Whether this is an end state (completed, failed or cancelled).
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether `status` may change from `self` to `to`: pending → running, running →
    /// completed or failed, pending or running → cancelled. Staying in the same state is
    /// not a transition, and end states never change.
    pub const fn can_transition_to(self, to: RunStatus) -> bool {
        matches!(
            (self, to),
            (Self::Pending, Self::Running)
                | (Self::Running, Self::Completed | Self::Failed)
                | (Self::Pending | Self::Running, Self::Cancelled)
        )
    }
}

/// A row of `jobs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    /// Primary key: the human-facing run id, not blank, at most 200 characters.
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub run_id: RunId,
    /// The project specification the bots work from (a JSON object).
    #[sea_orm(column_type = "JsonBinary")]
    pub project_spec: Json,
    /// The owner, → `profiles.id` (ON DELETE CASCADE); never changes.
    pub owner_id: ProfileId,
    /// Current state.
    pub status: RunStatus,
    /// When the run entered running (set by the database).
    pub started_at: Option<DateTimeUtc>,
    /// When the run ended (set by the database on entering an end state).
    pub completed_at: Option<DateTimeUtc>,
    /// Why the run failed; only on a failed run.
    #[sea_orm(column_type = "Text", nullable)]
    pub error_message: Option<String>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `jobs`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner (`owner_id`).
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::OwnerId",
        to = "super::profiles::Column::Id",
        on_delete = "Cascade"
    )]
    Profile,
    /// The run's events (`job_events.run_id`).
    #[sea_orm(has_many = "super::pipeline_events::Entity")]
    Events,
    /// The run's artifacts (`artifacts.run_id`).
    #[sea_orm(has_many = "super::artifacts::Entity")]
    Artifacts,
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Profile.def()
    }
}

impl Related<super::pipeline_events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Events.def()
    }
}

impl Related<super::artifacts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Artifacts.def()
    }
}

keyed_active_model_behavior!(updated_at);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_round_trip() {
        crate::test_support::assert_round_trips!(RunStatus);
        assert_eq!(RunStatus::default(), RunStatus::Pending);
    }

    #[test]
    fn transitions_are_those_of_schema_md() {
        use RunStatus::*;
        let allowed: Vec<(RunStatus, RunStatus)> = RunStatus::ALL
            .iter()
            .flat_map(|from| RunStatus::ALL.iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| from.can_transition_to(*to))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Pending, Running),
                (Pending, Cancelled),
                (Running, Completed),
                (Running, Failed),
                (Running, Cancelled),
            ]
        );
        for end in RunStatus::FINAL {
            assert!(end.is_final());
        }
        assert!(!Pending.is_final() && !Running.is_final());
    }
}
