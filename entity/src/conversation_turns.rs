//! `conversation_turns`: the messages of a conversation (seed 003, part 2 §2).
//!
//! Each turn belongs to a conversation (ON DELETE CASCADE). `turn_number` starts at 1
//! and is unique within its conversation; `token_count` is ≥ 0. The parent's
//! `total_turns` and `total_tokens` always equal the count and token sum of its turns.
//! Turns have no `updated_at`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, TurnId};

text_enum! {
    /// Who speaks in a turn (`conversation_turns.role`).
    pub enum TurnRole {
        /// `'user'`.
        User = "user",
        /// `'assistant'`.
        Assistant = "assistant",
    }
}

/// A row of `conversation_turns`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "conversation_turns")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: TurnId,
    /// The conversation, → `conversations.id` (ON DELETE CASCADE).
    #[sea_orm(unique_key = "conversation_id_turn_number")]
    pub conversation_id: ConversationId,
    /// Position in the conversation, from 1, unique within it.
    #[sea_orm(unique_key = "conversation_id_turn_number")]
    pub turn_number: i32,
    /// Who speaks.
    pub role: TurnRole,
    /// What is said.
    #[sea_orm(column_type = "Text")]
    pub content: String,
    /// Tokens in `content` (≥ 0).
    pub token_count: i32,
    /// When the turn was stored.
    pub created_at: DateTimeUtc,
}

/// Relations of `conversation_turns`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The conversation (`conversation_id`).
    #[sea_orm(
        belongs_to = "super::conversations::Entity",
        from = "Column::ConversationId",
        to = "super::conversations::Column::Id",
        on_delete = "Cascade"
    )]
    Conversation,
}

impl Related<super::conversations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Conversation.def()
    }
}

stamped_active_model_behavior!();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_strings_round_trip() {
        crate::test_support::assert_round_trips!(TurnRole);
    }
}
