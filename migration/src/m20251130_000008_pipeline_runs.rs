//! Pipeline runs (seeds 000 and 001; SCHEMA.md "Pipeline runs"): `jobs`, `job_events`,
//! `artifacts` and `prompts`, with the seeds' own table and column names so that their SQL
//! and the edge functions' queries run unchanged.
//!
//! On both backends:
//! - `jobs.run_id` is a `text` primary key, not blank, at most 200 characters;
//!   `project_spec` is a JSON object; `status` is one of pending, running, completed,
//!   failed, cancelled; `job_events.run_id` and `artifacts.run_id` reference it
//!   `ON DELETE CASCADE`, and `jobs.owner_id` references `profiles(id)` the same way;
//! - `artifacts.file_size` ≥ 0, `artifacts.checksum` is `sha256:` and 64 lowercase hex
//!   digits when set; JSON documents are at most [`JSON_MAX_BYTES`];
//! - triggers raising `forge:<kind>:…` hold the run transitions (pending → running →
//!   completed | failed, pending | running → cancelled, nothing leaves an end state), set
//!   `started_at` on entering running and `completed_at` on entering an end state, allow
//!   `error_message` only on a failed run, keep a run's owner, make `job_events` and
//!   `artifacts` carry their run's owner, and keep `job_events` append-only.
//!
//! PostgreSQL (`sql/pipeline_up.sql`) also fills in `job_events.owner_id` and
//! `artifacts.owner_id` from the run when an insert leaves them out (seed 000's inserts do),
//! and `jobs.owner_id` from `auth.uid()`; SQLite (`sql/pipeline_sqlite_up.sql`) cannot
//! change the row a `BEFORE` trigger sees, so there the writer gives the owner and the
//! database checks it. PostgreSQL gets the `updated_at` triggers, row-level security
//! (enabled and forced) and the privileges of the contract: owners read their runs,
//! events and artifacts, create their own runs as `pending` and cancel them; the service
//! writes everything else; `prompts` are readable by `authenticated`; `anon` gets nothing.
//!
//! `down` drops the four tables, then the functions.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::schema::{SQLITE_NOW, TableDef, drop_tables};

/// Tables of this migration, parents first.
const TABLES: &[&str] = &["jobs", "job_events", "artifacts", "prompts"];

/// The JSON columns the size cap applies to.
const JSON_COLUMNS: &[(&str, &str)] = &[
    ("jobs", "project_spec"),
    ("job_events", "payload"),
    ("artifacts", "meta"),
];

/// The states of a run, as `jobs.status` stores them.
const RUN_STATUSES: &[&str] = &["pending", "running", "completed", "failed", "cancelled"];

/// Creates the pipeline tables with their rules.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// SQLite's triggers: the invariants, then the JSON caps (as the database wall does).
fn sqlite_up() -> String {
    let mut sql = include_str!("sql/pipeline_sqlite_up.sql").replace("{now}", SQLITE_NOW);
    sql.push_str(&crate::schema::sqlite_json_caps(JSON_COLUMNS));
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let postgres = backend == DbBackend::Postgres;

        TableDef::with_text_key(backend, "jobs", "run_id")
            .jsonb("project_spec")
            .uuid("owner_id")
            .text_default("status", "pending")
            .timestamp_null("started_at")
            .timestamp_null("completed_at")
            .text_null("error_message")
            .timestamps()
            .references("owner_id", "profiles", ForeignKeyAction::Cascade)
            .check(
                "run_id_check",
                "length(trim(run_id)) > 0 AND length(run_id) <= 200",
            )
            .check(
                "project_spec_check",
                if postgres {
                    "jsonb_typeof(project_spec) = 'object'"
                } else {
                    "json_type(project_spec) = 'object'"
                },
            )
            .one_of("status", RUN_STATUSES)
            .index("owner_id", "owner_id", None)
            .index("status", "status", None)
            .index("created_at", "created_at DESC", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "job_events")
            .text("run_id")
            .text("bot_name")
            .text("event_type")
            .jsonb_null("payload")
            .uuid("owner_id")
            .timestamp_now("created_at")
            .references_key("run_id", "jobs", "run_id", ForeignKeyAction::Cascade)
            .index("run_id", "run_id, created_at", None)
            .index("owner_id", "owner_id", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "artifacts")
            .text("run_id")
            .text("kind")
            .text_null("url")
            .jsonb_null("meta")
            .uuid("owner_id")
            .big_integer_null("file_size")
            .text_null("content_type")
            .text_null("checksum")
            .timestamp_now("created_at")
            .references_key("run_id", "jobs", "run_id", ForeignKeyAction::Cascade)
            .check("file_size_check", "file_size >= 0")
            .check(
                "checksum_check",
                if postgres {
                    "checksum ~ '^sha256:[0-9a-f]{64}$'"
                } else {
                    "length(checksum) = 71 AND substr(checksum, 1, 7) = 'sha256:' \
                     AND substr(checksum, 8) NOT GLOB '*[^0-9a-f]*'"
                },
            )
            .index("run_id", "run_id", None)
            .index("owner_id", "owner_id", None)
            .create(manager)
            .await?;

        TableDef::with_text_key(backend, "prompts", "id")
            .text("category")
            .text("context")
            .text("prompt_text")
            .timestamps()
            .check("id_check", "length(trim(id)) > 0 AND length(id) <= 200")
            .create(manager)
            .await?;

        let sql = match backend {
            DbBackend::Postgres => include_str!("sql/pipeline_up.sql").to_owned(),
            DbBackend::Sqlite => sqlite_up(),
            _ => return Ok(()),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping a table drops its triggers, policies and grants (SQLite: its triggers).
        let children_first: Vec<&str> = TABLES.iter().rev().copied().collect();
        drop_tables(manager, &children_first).await?;
        crate::postgres_only(manager, include_str!("sql/pipeline_down.sql")).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_entity::JSON_MAX_BYTES;

    #[test]
    fn sqlite_triggers_cover_every_json_column() {
        let up = sqlite_up();
        for (table, column) in JSON_COLUMNS {
            assert!(
                up.contains(&format!("{table}_{column}_size_insert")),
                "{up}"
            );
            assert!(
                up.contains(&format!("{table}_{column}_size_update")),
                "{up}"
            );
        }
        assert!(!up.contains("{now}"), "{up}");
    }

    #[test]
    fn postgres_caps_every_json_column() {
        let up = include_str!("sql/pipeline_up.sql");
        for (table, column) in JSON_COLUMNS {
            assert!(
                up.contains(&format!(
                    "{table}_{column}_size_check\n  CHECK (octet_length({column}::text) <= {JSON_MAX_BYTES})"
                )),
                "{table}.{column}"
            );
        }
    }
}
