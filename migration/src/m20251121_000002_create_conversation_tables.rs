//! Training conversations, their turns, and batch generation (seed 003; SCHEMA.md).

use sea_orm_migration::prelude::*;

use crate::schema::{TableDef, drop_tables};

/// Creates `conversations`, `conversation_turns`, `batch_jobs` and `batch_items`.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables of this migration, parents first.
const TABLES: &[&str] = &[
    "conversations",
    "conversation_turns",
    "batch_jobs",
    "batch_items",
];

const TIERS: &[&str] = &["template", "scenario", "edge_case"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();

        TableDef::new(backend, "conversations")
            .text("conversation_id")
            .uuid("created_by")
            .text_null("title")
            .text_default("status", "draft")
            .text("tier")
            .text("persona")
            .text("emotion")
            .text("topic")
            .text("intent")
            .text("tone")
            .jsonb_default("category", "[]")
            .jsonb_default("parameters", "{}")
            .integer_default("total_turns", 0)
            .integer_default("total_tokens", 0)
            .double_null("quality_score")
            .jsonb_null("quality_metrics")
            .uuid_null("template_id")
            .uuid_null("parent_id")
            .text_null("parent_type")
            .jsonb_default("review_history", "[]")
            .timestamp_null("generated_at")
            .timestamp_null("approved_at")
            .uuid_null("approved_by")
            .timestamps()
            .unique(&["conversation_id"])
            .references("created_by", "profiles", ForeignKeyAction::Cascade)
            .references("approved_by", "profiles", ForeignKeyAction::SetNull)
            .one_of(
                "status",
                &[
                    "draft",
                    "generated",
                    "pending_review",
                    "approved",
                    "rejected",
                    "needs_revision",
                    "failed",
                ],
            )
            .one_of("tier", TIERS)
            .check("total_turns_check", "total_turns >= 0")
            .check("total_tokens_check", "total_tokens >= 0")
            .check(
                "quality_score_check",
                "quality_score >= 0 AND quality_score <= 10",
            )
            .index("created_by", "created_by", None)
            .index("status", "status", None)
            .index("tier", "tier", None)
            .index("created_at", "created_at DESC", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "conversation_turns")
            .uuid("conversation_id")
            .integer("turn_number")
            .text("role")
            .text("content")
            .integer_default("token_count", 0)
            .timestamp_now("created_at")
            .references(
                "conversation_id",
                "conversations",
                ForeignKeyAction::Cascade,
            )
            .unique(&["conversation_id", "turn_number"])
            .check("turn_number_check", "turn_number >= 1")
            .one_of("role", &["user", "assistant"])
            .check("token_count_check", "token_count >= 0")
            .create(manager)
            .await?;

        TableDef::new(backend, "batch_jobs")
            .uuid("created_by")
            .text("name")
            .text_default("status", "queued")
            .text_default("priority", "normal")
            .integer_default("total_items", 0)
            .integer_default("completed_items", 0)
            .integer_default("successful_items", 0)
            .integer_default("failed_items", 0)
            .jsonb("configuration")
            .integer_null("estimated_time_remaining")
            .timestamp_null("started_at")
            .timestamp_null("completed_at")
            .timestamps()
            .references("created_by", "profiles", ForeignKeyAction::Cascade)
            .one_of(
                "status",
                &[
                    "queued",
                    "processing",
                    "paused",
                    "completed",
                    "failed",
                    "cancelled",
                ],
            )
            .one_of("priority", &["high", "normal", "low"])
            .check(
                "counters_check",
                "total_items >= 0 AND successful_items >= 0 AND failed_items >= 0 \
                 AND completed_items = successful_items + failed_items \
                 AND completed_items <= total_items",
            )
            .index("created_by", "created_by", None)
            .index("status", "status", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "batch_items")
            .uuid("batch_job_id")
            .integer("position")
            .text("topic")
            .text("tier")
            .jsonb_default("parameters", "{}")
            .text_default("status", "queued")
            .integer_null_default("progress", 0)
            .integer_null("estimated_time")
            .uuid_null("conversation_id")
            .text_null("error")
            .timestamps()
            .references("batch_job_id", "batch_jobs", ForeignKeyAction::Cascade)
            .references(
                "conversation_id",
                "conversations",
                ForeignKeyAction::SetNull,
            )
            .one_of("tier", TIERS)
            .one_of("status", &["queued", "processing", "completed", "failed"])
            .check("progress_check", "progress BETWEEN 0 AND 100")
            // Index names as in seed 003's DDL, so a database that ran it is recognised.
            .index("job_id", "batch_job_id", None)
            .index("status", "status", None)
            .index(
                "conversation_id",
                "conversation_id",
                Some("conversation_id IS NOT NULL"),
            )
            .create(manager)
            .await?;

        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let children_first: Vec<&str> = TABLES.iter().rev().copied().collect();
        drop_tables(manager, &children_first).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
