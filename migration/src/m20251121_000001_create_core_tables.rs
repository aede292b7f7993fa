//! Profiles, projects, coding sessions, their job queue and their event stream
//! (seed 002, steps 3–7; SCHEMA.md).

use sea_orm_migration::prelude::*;

use crate::schema::{TableDef, drop_tables};

/// Creates `profiles`, `projects`, `coding_sessions`, `coding_jobs` and `session_events`.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables of this migration, parents first.
const TABLES: &[&str] = &[
    "profiles",
    "projects",
    "coding_sessions",
    "coding_jobs",
    "session_events",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();

        TableDef::new(backend, "profiles")
            .text("email")
            .text("display_name")
            .text_null("avatar_url")
            .text_default("tier", "free")
            .integer_default("sessions_limit", 3)
            .text_null("stripe_customer_id")
            .timestamps()
            .unique(&["email"])
            .unique(&["stripe_customer_id"])
            .one_of("tier", &["free", "pro", "enterprise"])
            .check("sessions_limit_check", "sessions_limit >= 0")
            .index("tier", "tier", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "projects")
            .uuid("user_id")
            .text("name")
            .text_null("description")
            .text_null("template_id")
            .jsonb_default("expo_config", "{}")
            .text_null("sandbox_id")
            .text_default("status", "active")
            .timestamps()
            .references("user_id", "profiles", ForeignKeyAction::Cascade)
            .check(
                "name_check",
                "length(trim(name)) > 0 AND length(name) <= 200",
            )
            .one_of("status", &["active", "archived", "deleted"])
            .index("user_id", "user_id", None)
            .index("status", "status", None)
            .index("created_at", "created_at DESC", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "coding_sessions")
            .uuid("user_id")
            .uuid("project_id")
            .text("initial_prompt")
            .text_default("status", "pending")
            .timestamp("expires_at")
            .jsonb_default("metadata", "{}")
            .text_null("eas_update_url")
            .text_null("webview_url")
            .timestamps()
            .references("user_id", "profiles", ForeignKeyAction::Cascade)
            .references("project_id", "projects", ForeignKeyAction::Cascade)
            .one_of(
                "status",
                &[
                    "pending",
                    "active",
                    "paused",
                    "completed",
                    "failed",
                    "expired",
                ],
            )
            .index("user_id", "user_id", None)
            .index("project_id", "project_id", None)
            .index("status", "status", None)
            .index("expires_at", "expires_at", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "coding_jobs")
            .uuid("session_id")
            .text("prompt")
            .text_default("status", "pending")
            .integer_default("priority", 0)
            .integer_default("retry_count", 0)
            .integer_default("max_retries", 3)
            .timestamp_now("run_after")
            .text_null("locked_by")
            .timestamp_null("locked_until")
            .jsonb_null("result")
            .text_null("error_message")
            .timestamp_null("started_at")
            .timestamp_null("completed_at")
            .timestamps()
            .references("session_id", "coding_sessions", ForeignKeyAction::Cascade)
            .one_of("status", &["pending", "processing", "completed", "failed"])
            .check("retry_count_check", "retry_count >= 0")
            .check("max_retries_check", "max_retries >= 0")
            .index("status_priority", "status, priority DESC, created_at", None)
            .index("session_id", "session_id, created_at", None)
            // The claim query's hot path: only pending jobs, in claim order.
            .index(
                "pending",
                "priority DESC, created_at",
                Some("status = 'pending'"),
            )
            .create(manager)
            .await?;

        TableDef::new(backend, "session_events")
            .uuid("session_id")
            .big_integer("seq")
            .text("event_type")
            .jsonb_default("data", "{}")
            .timestamp_now("created_at")
            .references("session_id", "coding_sessions", ForeignKeyAction::Cascade)
            .unique(&["session_id", "seq"])
            .check("seq_check", "seq >= 1")
            .one_of(
                "event_type",
                &[
                    "thinking",
                    "terminal",
                    "file_change",
                    "preview_ready",
                    "completion",
                    "error",
                ],
            )
            .index("created_at", "created_at DESC", None)
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
