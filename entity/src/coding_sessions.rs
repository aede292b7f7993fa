//! `coding_sessions`: one AI coding session on a project (seed 002, step 5).
//!
//! Owned by a profile (`user_id`) and tied to a project (`project_id`), both ON DELETE
//! CASCADE; the project must belong to `user_id`. A session is *live* while it is
//! `'pending'`, `'active'` or `'paused'`, and a user never has more live sessions than
//! their profile's `sessions_limit`, even under concurrent starts. `status` only moves
//! along [`SessionStatus::can_transition_to`]; nothing leaves `'completed'`, `'failed'`
//! or `'expired'`. `eas_update_url` and `webview_url` are set when the preview is
//! ready. Its jobs and events are deleted with it.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ProfileId, ProjectId, SessionId};

text_enum! {
    /// The state of a coding session (`coding_sessions.status`, default `'pending'`).
    #[derive(Default)]
    pub enum SessionStatus {
        /// `'pending'`: created, not started yet. Live.
        #[default]
        Pending = "pending",
        /// `'active'`: running. Live.
        Active = "active",
        /// `'paused'`: suspended, may resume. Live.
        Paused = "paused",
        /// `'completed'`: finished normally. Final.
        Completed = "completed",
        /// `'failed'`: ended by an error. Final.
        Failed = "failed",
        /// `'expired'`: ran past `expires_at`. Final.
        Expired = "expired",
    }
}

impl SessionStatus {
    /// The live states, which count against the profile's `sessions_limit`.
    pub const LIVE: &'static [Self] = &[Self::Pending, Self::Active, Self::Paused];

    /// Whether a session in this state counts against `sessions_limit`.
    pub const fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::Active | Self::Paused)
    }

    /// Whether `status` may change from `self` to `to`: pending→active,
    /// active⇄paused, and any live state → completed, failed or expired. Staying in
    /// the same state is not a transition, and final states never change.
    pub const fn can_transition_to(self, to: SessionStatus) -> bool {
        matches!(
            (self, to),
            (Self::Pending, Self::Active)
                | (Self::Active, Self::Paused)
                | (Self::Paused, Self::Active)
                | (
                    Self::Pending | Self::Active | Self::Paused,
                    Self::Completed | Self::Failed | Self::Expired
                )
        )
    }
}

/// A row of `coding_sessions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "coding_sessions")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: SessionId,
    /// The owner, → `profiles.id` (ON DELETE CASCADE).
    pub user_id: ProfileId,
    /// The project worked on, → `projects.id` (ON DELETE CASCADE); owned by `user_id`.
    pub project_id: ProjectId,
    /// The prompt the session started from.
    #[sea_orm(column_type = "Text")]
    pub initial_prompt: String,
    /// Current state.
    pub status: SessionStatus,
    /// When the session expires.
    pub expires_at: DateTimeUtc,
    /// Free-form JSON object (default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub metadata: Json,
    /// EAS Update URL of the preview, once ready.
    #[sea_orm(column_type = "Text", nullable)]
    pub eas_update_url: Option<String>,
    /// Web preview URL, once ready.
    #[sea_orm(column_type = "Text", nullable)]
    pub webview_url: Option<String>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `coding_sessions`.
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
    /// The project (`project_id`).
    #[sea_orm(
        belongs_to = "super::projects::Entity",
        from = "Column::ProjectId",
        to = "super::projects::Column::Id",
        on_delete = "Cascade"
    )]
    Project,
    /// The session's queued work (`coding_jobs.session_id`).
    #[sea_orm(has_many = "super::coding_jobs::Entity")]
    CodingJobs,
    /// The session's event log (`session_events.session_id`).
    #[sea_orm(has_many = "super::session_events::Entity")]
    SessionEvents,
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Profile.def()
    }
}

impl Related<super::projects::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Project.def()
    }
}

impl Related<super::coding_jobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CodingJobs.def()
    }
}

impl Related<super::session_events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SessionEvents.def()
    }
}

stamped_active_model_behavior!(updated_at);

#[cfg(test)]
mod tests {
    use super::SessionStatus::{self, *};

    #[test]
    fn status_strings_round_trip() {
        crate::test_support::assert_round_trips!(SessionStatus);
        assert_eq!(SessionStatus::default(), Pending);
    }

    #[test]
    fn live_states_are_pending_active_paused() {
        let live: Vec<_> = SessionStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.is_live())
            .collect();
        assert_eq!(live, [Pending, Active, Paused]);
        assert_eq!(SessionStatus::LIVE, live.as_slice());
    }

    #[test]
    fn transitions_follow_the_schema_table() {
        // SCHEMA.md: pending→active, active⇄paused,
        // pending|active|paused→completed|failed|expired; nothing else.
        const ALLOWED: &[(SessionStatus, SessionStatus)] = &[
            (Pending, Active),
            (Active, Paused),
            (Paused, Active),
            (Pending, Completed),
            (Pending, Failed),
            (Pending, Expired),
            (Active, Completed),
            (Active, Failed),
            (Active, Expired),
            (Paused, Completed),
            (Paused, Failed),
            (Paused, Expired),
        ];
        for &from in SessionStatus::ALL {
            for &to in SessionStatus::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    ALLOWED.contains(&(from, to)),
                    "{from} → {to}"
                );
            }
        }
    }
}
