//! `batch_jobs`: a batch of conversations to generate (seed 003, part 2 §3).
//!
//! Owned by a profile (`created_by`, ON DELETE CASCADE); its items are deleted with it.
//! The counters are ≥ 0 with `completed_items = successful_items + failed_items ≤
//! total_items`, and always equal what its `batch_items` say, even with many workers
//! finishing items at once. `configuration` is a [`BatchConfiguration`];
//! `estimated_time_remaining` is in seconds.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::conversations::ConversationTier;
use crate::ids::{BatchId, ProfileId};

text_enum! {
    /// The state of a batch (`batch_jobs.status`, default `'queued'`).
    #[derive(Default)]
    pub enum BatchStatus {
        /// `'queued'`: not started.
        #[default]
        Queued = "queued",
        /// `'processing'`: items are being generated.
        Processing = "processing",
        /// `'paused'`: suspended, may resume.
        Paused = "paused",
        /// `'completed'`: every item is done.
        Completed = "completed",
        /// `'failed'`: stopped by an error.
        Failed = "failed",
        /// `'cancelled'`: stopped by the user.
        Cancelled = "cancelled",
    }
}

text_enum! {
    /// How urgent a batch is (`batch_jobs.priority`, default `'normal'`).
    #[derive(Default)]
    pub enum BatchPriority {
        /// `'high'`.
        High = "high",
        /// `'normal'`, the default.
        #[default]
        Normal = "normal",
        /// `'low'`.
        Low = "low",
    }
}

text_enum! {
    /// What a batch does when an item fails
    /// ([`BatchConfiguration::error_handling`], default `'continue'`).
    #[derive(Default)]
    pub enum ErrorHandling {
        /// `'continue'`: record the failure and go on with the other items.
        #[default]
        Continue = "continue",
        /// `'stop'`: stop the batch.
        Stop = "stop",
    }
}

/// `batch_jobs.configuration`: how the batch's items are generated. Keys are
/// snake_case; the camelCase keys of the original TypeScript app are accepted too,
/// and every field but `tier` has a default so older JSON still reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct BatchConfiguration {
    /// The tier of every conversation in the batch.
    pub tier: ConversationTier,
    /// Generation parameters shared by every item (a JSON object, default `{}`).
    #[serde(default = "empty_object", alias = "sharedParameters")]
    pub shared_parameters: Json,
    /// How many items are generated at once (default 3).
    #[serde(
        default = "BatchConfiguration::default_concurrency",
        alias = "concurrentProcessing"
    )]
    pub concurrent_processing: u32,
    /// What to do when an item fails (default `continue`).
    #[serde(default, alias = "errorHandling")]
    pub error_handling: ErrorHandling,
}

impl BatchConfiguration {
    /// The default of [`concurrent_processing`](Self::concurrent_processing).
    pub const DEFAULT_CONCURRENCY: u32 = 3;

    /// A configuration for `tier` with every other field at its default.
    pub fn new(tier: ConversationTier) -> Self {
        Self {
            tier,
            shared_parameters: empty_object(),
            concurrent_processing: Self::DEFAULT_CONCURRENCY,
            error_handling: ErrorHandling::default(),
        }
    }

    const fn default_concurrency() -> u32 {
        Self::DEFAULT_CONCURRENCY
    }
}

fn empty_object() -> Json {
    Json::Object(serde_json::Map::new())
}

/// A row of `batch_jobs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "batch_jobs")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: BatchId,
    /// The owner, → `profiles.id` (ON DELETE CASCADE).
    pub created_by: ProfileId,
    /// Display name.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// Current state.
    pub status: BatchStatus,
    /// How urgent the batch is.
    pub priority: BatchPriority,
    /// How many items the batch has.
    pub total_items: i32,
    /// How many items are finished (`successful_items + failed_items`).
    pub completed_items: i32,
    /// How many items succeeded.
    pub successful_items: i32,
    /// How many items failed.
    pub failed_items: i32,
    /// How the items are generated.
    #[sea_orm(column_type = "JsonBinary")]
    pub configuration: BatchConfiguration,
    /// Estimated seconds until the batch finishes.
    pub estimated_time_remaining: Option<i32>,
    /// When processing started.
    pub started_at: Option<DateTimeUtc>,
    /// When the batch finished.
    pub completed_at: Option<DateTimeUtc>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `batch_jobs`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner (`created_by`).
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::CreatedBy",
        to = "super::profiles::Column::Id",
        on_delete = "Cascade"
    )]
    CreatedBy,
    /// The batch's items (`batch_items.batch_job_id`).
    #[sea_orm(has_many = "super::batch_items::Entity")]
    BatchItems,
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CreatedBy.def()
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
        crate::test_support::assert_round_trips!(BatchStatus, BatchPriority, ErrorHandling);
        assert_eq!(BatchStatus::default(), BatchStatus::Queued);
        assert_eq!(BatchPriority::default(), BatchPriority::Normal);
        assert_eq!(ErrorHandling::default(), ErrorHandling::Continue);
    }

    #[test]
    fn configuration_round_trips_with_snake_case_keys() -> Result<(), serde_json::Error> {
        let config = BatchConfiguration {
            tier: ConversationTier::EdgeCase,
            shared_parameters: json!({"persona": "retiree", "temperature": 0.7}),
            concurrent_processing: 5,
            error_handling: ErrorHandling::Stop,
        };
        let value = serde_json::to_value(&config)?;
        assert_eq!(
            value,
            json!({
                "tier": "edge_case",
                "shared_parameters": {"persona": "retiree", "temperature": 0.7},
                "concurrent_processing": 5,
                "error_handling": "stop",
            })
        );
        assert_eq!(serde_json::from_value::<BatchConfiguration>(value)?, config);
        Ok(())
    }

    #[test]
    fn configuration_with_only_a_tier_takes_the_defaults() -> Result<(), serde_json::Error> {
        let config: BatchConfiguration = serde_json::from_value(json!({"tier": "template"}))?;
        assert_eq!(config, BatchConfiguration::new(ConversationTier::Template));
        assert_eq!(config.shared_parameters, json!({}));
        assert_eq!(config.concurrent_processing, 3);
        assert_eq!(config.error_handling, ErrorHandling::Continue);
        Ok(())
    }

    #[test]
    fn configuration_accepts_the_typescript_keys() -> Result<(), serde_json::Error> {
        let config: BatchConfiguration = serde_json::from_value(json!({
            "tier": "scenario",
            "sharedParameters": {"tone": "warm"},
            "concurrentProcessing": 2,
            "errorHandling": "stop",
        }))?;
        assert_eq!(config.shared_parameters, json!({"tone": "warm"}));
        assert_eq!(config.concurrent_processing, 2);
        assert_eq!(config.error_handling, ErrorHandling::Stop);
        Ok(())
    }

    #[test]
    fn configuration_without_a_tier_is_refused() {
        assert!(serde_json::from_value::<BatchConfiguration>(json!({})).is_err());
    }
}
