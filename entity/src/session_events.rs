//! `session_events`: the append-only event log of a coding session (seed 002, step 7).
//!
//! Each event belongs to a session (ON DELETE CASCADE). `seq` numbers a session's
//! events 1, 2, 3 … with no gaps, unique per session; on PostgreSQL the database
//! assigns it when an insert leaves it `NotSet`. A reader tailing "events after seq N"
//! never skips an event, even while several writers append at once. Events never
//! change, so there is no `updated_at`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{EventId, SessionId};

text_enum! {
    /// What an event reports (`session_events.event_type`).
    pub enum EventType {
        /// `'thinking'`: the agent's reasoning.
        Thinking = "thinking",
        /// `'terminal'`: terminal output.
        Terminal = "terminal",
        /// `'file_change'`: a file was written.
        FileChange = "file_change",
        /// `'preview_ready'`: a preview can be opened.
        PreviewReady = "preview_ready",
        /// `'completion'`: the session's work finished.
        Completion = "completion",
        /// `'error'`: something went wrong.
        Error = "error",
    }
}

/// A row of `session_events`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "session_events")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: EventId,
    /// The session, → `coding_sessions.id` (ON DELETE CASCADE).
    #[sea_orm(unique_key = "session_id_seq")]
    pub session_id: SessionId,
    /// Position in the session's log: 1, 2, 3 … without gaps.
    #[sea_orm(unique_key = "session_id_seq")]
    pub seq: i64,
    /// What the event reports.
    pub event_type: EventType,
    /// Free-form JSON payload (default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub data: Json,
    /// When the event was appended.
    pub created_at: DateTimeUtc,
}

/// Relations of `session_events`.
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

stamped_active_model_behavior!();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_strings_round_trip() {
        crate::test_support::assert_round_trips!(EventType);
    }
}
