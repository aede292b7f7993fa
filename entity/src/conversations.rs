//! `conversations`: generated training conversations (seed 003, part 2 §1).
//!
//! Owned by a profile (`created_by`, ON DELETE CASCADE); `approved_by` points at the
//! approver and becomes NULL when that profile is deleted. `conversation_id` is the
//! unique human-facing id. `total_turns` and `total_tokens` always equal the count and
//! the token sum of its `conversation_turns`. `quality_score`, when set, is between 0
//! and 10. `category` is a JSON array of strings and `review_history` a JSON array of
//! [`ReviewAction`]s, both `[]` by default. Deleting a conversation deletes its turns
//! and leaves the batch items that produced it with `conversation_id = NULL`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, ProfileId, TemplateId};

text_enum! {
    /// The review state of a conversation (`conversations.status`, default `'draft'`).
    #[derive(Default)]
    pub enum ConversationStatus {
        /// `'draft'`: not generated yet.
        #[default]
        Draft = "draft",
        /// `'generated'`: turns exist, not submitted for review.
        Generated = "generated",
        /// `'pending_review'`: waiting for a reviewer.
        PendingReview = "pending_review",
        /// `'approved'`: accepted by a reviewer.
        Approved = "approved",
        /// `'rejected'`: refused by a reviewer.
        Rejected = "rejected",
        /// `'needs_revision'`: sent back for changes.
        NeedsRevision = "needs_revision",
        /// `'failed'`: generation failed.
        Failed = "failed",
    }
}

text_enum! {
    /// How a conversation is generated (`conversations.tier`, `batch_items.tier` and
    /// [`BatchConfiguration::tier`](crate::batch_jobs::BatchConfiguration::tier)).
    pub enum ConversationTier {
        /// `'template'`: from a template.
        Template = "template",
        /// `'scenario'`: from a scenario.
        Scenario = "scenario",
        /// `'edge_case'`: from an edge case.
        EdgeCase = "edge_case",
    }
}

text_enum! {
    /// What a reviewer did, in a [`ReviewAction`]. Stored only inside the
    /// `review_history` JSON.
    pub enum ReviewActionKind {
        /// `'submitted'`: sent for review.
        Submitted = "submitted",
        /// `'approved'`: accepted.
        Approved = "approved",
        /// `'rejected'`: refused.
        Rejected = "rejected",
        /// `'revision_requested'`: sent back for changes.
        RevisionRequested = "revision_requested",
    }
}

/// One entry of [`ReviewHistory`]: who did what, when, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewAction {
    /// What was done.
    pub action: ReviewActionKind,
    /// The profile that did it.
    pub performed_by: ProfileId,
    /// When it was done.
    pub at: DateTimeUtc,
    /// The reviewer's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `conversations.review_history`: the review actions in the order they happened,
/// stored as a JSON array (`[]` by default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(transparent)]
pub struct ReviewHistory(pub Vec<ReviewAction>);

impl From<Vec<ReviewAction>> for ReviewHistory {
    fn from(actions: Vec<ReviewAction>) -> Self {
        Self(actions)
    }
}

/// `conversations.category`: a JSON array of category names (`[]` by default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(transparent)]
pub struct Categories(pub Vec<String>);

impl From<Vec<String>> for Categories {
    fn from(categories: Vec<String>) -> Self {
        Self(categories)
    }
}

impl FromIterator<String> for Categories {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// `conversations.quality_metrics`: the scores of a quality check. Missing scores
/// read as 0; keys this struct does not know are kept in `extra` and written back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(default)]
pub struct QualityMetrics {
    /// Overall score.
    pub overall: f64,
    /// How relevant the conversation is to its topic.
    pub relevance: f64,
    /// Factual accuracy.
    pub accuracy: f64,
    /// How natural the dialogue sounds.
    pub naturalness: f64,
    /// How coherent the turns are together.
    pub coherence: f64,
    /// The checker's confidence in these scores.
    pub confidence: f64,
    /// Any other keys, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Json>,
}

/// A row of `conversations`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ConversationId,
    /// The unique human-facing id.
    #[sea_orm(column_type = "Text", unique)]
    pub conversation_id: String,
    /// The owner, → `profiles.id` (ON DELETE CASCADE).
    pub created_by: ProfileId,
    /// Title.
    #[sea_orm(column_type = "Text", nullable)]
    pub title: Option<String>,
    /// Review state.
    pub status: ConversationStatus,
    /// How the conversation is generated.
    pub tier: ConversationTier,
    /// The persona of the user side.
    #[sea_orm(column_type = "Text")]
    pub persona: String,
    /// The emotion the conversation conveys.
    #[sea_orm(column_type = "Text")]
    pub emotion: String,
    /// What the conversation is about.
    #[sea_orm(column_type = "Text")]
    pub topic: String,
    /// The user's intent.
    #[sea_orm(column_type = "Text")]
    pub intent: String,
    /// The tone of the conversation.
    #[sea_orm(column_type = "Text")]
    pub tone: String,
    /// Category names.
    #[sea_orm(column_type = "JsonBinary")]
    pub category: Categories,
    /// Free-form generation parameters (default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub parameters: Json,
    /// The number of turns (always the count of its turns).
    pub total_turns: i32,
    /// The total token count (always the sum over its turns).
    pub total_tokens: i32,
    /// Quality score between 0 and 10.
    #[sea_orm(column_type = "Double", nullable)]
    pub quality_score: Option<f64>,
    /// Detailed quality scores.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub quality_metrics: Option<QualityMetrics>,
    /// The template it was generated from (no foreign key).
    pub template_id: Option<TemplateId>,
    /// The template, scenario or edge case it derives from (no foreign key; a bare uuid,
    /// since `parent_type` says which kind of id it is).
    pub parent_id: Option<Uuid>,
    /// What `parent_id` refers to.
    #[sea_orm(column_type = "Text", nullable)]
    pub parent_type: Option<String>,
    /// The review actions so far, oldest first.
    #[sea_orm(column_type = "JsonBinary")]
    pub review_history: ReviewHistory,
    /// When the turns were generated.
    pub generated_at: Option<DateTimeUtc>,
    /// When it was approved.
    pub approved_at: Option<DateTimeUtc>,
    /// The approver, → `profiles.id` (ON DELETE SET NULL).
    pub approved_by: Option<ProfileId>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `conversations`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner (`created_by`); the one `Related<profiles::Entity>` follows.
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::CreatedBy",
        to = "super::profiles::Column::Id",
        on_delete = "Cascade"
    )]
    CreatedBy,
    /// The approver (`approved_by`).
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::ApprovedBy",
        to = "super::profiles::Column::Id",
        on_delete = "SetNull"
    )]
    ApprovedBy,
    /// The turns (`conversation_turns.conversation_id`).
    #[sea_orm(has_many = "super::conversation_turns::Entity")]
    ConversationTurns,
    /// The batch items that produced it (`batch_items.conversation_id`).
    #[sea_orm(has_many = "super::batch_items::Entity")]
    BatchItems,
}

/// Through `created_by`, the owner; join on [`Relation::ApprovedBy`] for the approver.
impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CreatedBy.def()
    }
}

impl Related<super::conversation_turns::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ConversationTurns.def()
    }
}

impl Related<super::batch_items::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::BatchItems.def()
    }
}

stamped_active_model_behavior!(updated_at);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enum_strings_round_trip() {
        crate::test_support::assert_round_trips!(
            ConversationStatus,
            ConversationTier,
            ReviewActionKind
        );
        assert_eq!(ConversationStatus::default(), ConversationStatus::Draft);
    }

    #[test]
    fn review_history_is_a_json_array() -> Result<(), Box<dyn std::error::Error>> {
        let reviewer = ProfileId::new();
        let at = chrono::DateTime::parse_from_rfc3339("2025-11-04T10:00:00Z")?.to_utc();
        let history = ReviewHistory(vec![
            ReviewAction {
                action: ReviewActionKind::Submitted,
                performed_by: reviewer,
                at,
                comment: None,
            },
            ReviewAction {
                action: ReviewActionKind::RevisionRequested,
                performed_by: reviewer,
                at,
                comment: Some("shorter please".to_owned()),
            },
        ]);
        let value = serde_json::to_value(&history)?;
        assert_eq!(
            value,
            json!([
                {"action": "submitted", "performed_by": reviewer, "at": "2025-11-04T10:00:00Z"},
                {"action": "revision_requested", "performed_by": reviewer,
                 "at": "2025-11-04T10:00:00Z", "comment": "shorter please"},
            ])
        );
        assert_eq!(serde_json::from_value::<ReviewHistory>(value)?, history);
        assert_eq!(
            serde_json::from_value::<ReviewHistory>(json!([]))?,
            ReviewHistory::default()
        );
        Ok(())
    }

    #[test]
    fn categories_are_a_json_array_of_strings() -> Result<(), serde_json::Error> {
        let categories: Categories = ["finance".to_owned(), "planning".to_owned()]
            .into_iter()
            .collect();
        let value = serde_json::to_value(&categories)?;
        assert_eq!(value, json!(["finance", "planning"]));
        assert_eq!(serde_json::from_value::<Categories>(value)?, categories);
        Ok(())
    }

    #[test]
    fn quality_metrics_default_missing_scores_and_keep_unknown_keys()
    -> Result<(), serde_json::Error> {
        let metrics: QualityMetrics =
            serde_json::from_value(json!({"overall": 8.5, "coherence": 9.0, "empathy": 7}))?;
        assert_eq!(metrics.overall, 8.5);
        assert_eq!(metrics.relevance, 0.0);
        assert_eq!(metrics.extra.get("empathy"), Some(&json!(7)));
        let written = serde_json::to_value(&metrics)?;
        assert_eq!(written.get("empathy"), Some(&json!(7)));
        assert_eq!(written.get("accuracy"), Some(&json!(0.0)));
        Ok(())
    }
}
