//! Every entity under its table's name (the pipeline's `jobs` and `job_events` as
//! `PipelineRuns` and `PipelineEvents`, after their modules), plus every enum and typed
//! JSON struct.
//!
//! `use forge_entity::prelude::*;` also brings every typed id of [`ids`](crate::ids) and
//! SeaORM's `Json`, `Uuid` and `DateTimeUtc` aliases.

pub use sea_orm::prelude::{DateTimeUtc, Json, Uuid};

pub use crate::UnknownVariant;
pub use crate::activity_logs::Entity as ActivityLogs;
pub use crate::api_keys::Entity as ApiKeys;
pub use crate::artifacts::Entity as Artifacts;
pub use crate::batch_items::{Entity as BatchItems, ItemStatus};
pub use crate::batch_jobs::{
    BatchConfiguration, BatchPriority, BatchStatus, Entity as BatchJobs, ErrorHandling,
};
pub use crate::coding_jobs::{Entity as CodingJobs, JobStatus};
pub use crate::coding_sessions::{Entity as CodingSessions, SessionStatus};
pub use crate::conversation_turns::{Entity as ConversationTurns, TurnRole};
pub use crate::conversations::{
    Categories, ConversationStatus, ConversationTier, Entity as Conversations, QualityMetrics,
    ReviewAction, ReviewActionKind, ReviewHistory,
};
pub use crate::credit_accounts::Entity as CreditAccounts;
pub use crate::credit_transactions::{CreditKind, Entity as CreditTransactions};
pub use crate::edge_cases::{EdgeComplexity, Entity as EdgeCases, TestStatus};
pub use crate::export_logs::{Entity as ExportLogs, ExportFormat, ExportStatus};
pub use crate::generation_logs::Entity as GenerationLogs;
pub use crate::ids::{
    ActivityId, ApiKeyId, ArtifactId, BatchId, BatchItemId, ConversationId, CreditAccountId,
    CreditTransactionId, EdgeCaseId, EventId, ExportId, GenerationLogId, JobId, NotificationId,
    ProfileId, ProjectId, PromptId, RunEventId, RunId, ScenarioId, SessionId, TemplateId, TurnId,
    UsageMetricId,
};
pub use crate::notification_preferences::Entity as NotificationPreferences;
pub use crate::notifications::{Entity as Notifications, NotificationType};
pub use crate::pipeline_events::Entity as PipelineEvents;
pub use crate::pipeline_runs::{Entity as PipelineRuns, RunStatus};
pub use crate::profiles::{Entity as Profiles, Tier};
pub use crate::projects::{Entity as Projects, ProjectStatus};
pub use crate::prompts::Entity as Prompts;
pub use crate::scenarios::{Entity as Scenarios, GenerationStatus, ScenarioStatus};
pub use crate::session_events::{Entity as SessionEvents, EventType};
pub use crate::templates::{Entity as Templates, StringList};
pub use crate::usage_metrics::Entity as UsageMetrics;
