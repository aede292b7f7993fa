//! `prompts`: the AI prompts and product copy the pipeline's bots and the app use
//! (seeds 000 and 001).
//!
//! Keyed by a stable text `id` such as `onboarding.welcome` (not blank, at most 200
//! characters), with a `category`, the `context` where it is used, and the text itself
//! (`prompt_text`). On PostgreSQL every signed-in user may read them; only the service
//! writes them.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::PromptId;

/// A row of `prompts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "prompts")]
pub struct Model {
    /// Primary key: a stable key, e.g. `onboarding.welcome`.
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: PromptId,
    /// The prompt's category.
    #[sea_orm(column_type = "Text")]
    pub category: String,
    /// Where the prompt is used.
    #[sea_orm(column_type = "Text")]
    pub context: String,
    /// The prompt or copy itself.
    #[sea_orm(column_type = "Text")]
    pub prompt_text: String,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `prompts`: none.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

keyed_active_model_behavior!(updated_at);
