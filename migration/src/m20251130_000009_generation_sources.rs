//! Generation sources and exports (seed 003, parts 1–2 and 6; SCHEMA.md "Generation
//! sources and exports"): `templates` (seed 003's 27 columns), their `scenarios`, the
//! scenarios' `edge_cases`, the append-only `generation_logs` and the `export_logs`.
//!
//! On both backends:
//! - the columns, defaults, CHECKs, foreign keys and indexes of the contract. JSON columns
//!   that hold lists (`variables`, `required_elements`, `applicable_*`) are JSON arrays of
//!   strings; every JSON document is at most [`JSON_MAX_BYTES`];
//! - `generation_logs.cost_usd` is `numeric(12,6)` on PostgreSQL and `real(12, 6)` on
//!   SQLite (what sea-query writes for a decimal there: REAL affinity, a double). The
//!   entity reads it as a `Decimal` (SeaORM's `with-rust_decimal`; sqlx cannot read a
//!   `numeric` into an `f64`). PostgreSQL keeps 6 decimal places, SQLite a double;
//! - `templates.version` (+1), `last_modified` and `last_modified_by` are kept by the
//!   database: a change of a content column ([`CONTENT_COLUMNS`]) bumps them, any other
//!   update (`usage_count`, `rating`, `success_rate`, `is_active`) leaves them as they were,
//!   and no writer sets them by hand. `last_modified_by` is the acting user (`auth.uid()`,
//!   PostgreSQL) when there is one, else what the writer gave in that update (else NULL).
//!   A new template is version 1: PostgreSQL sets it (and `last_modified` = now,
//!   `last_modified_by` = the acting user, else the given one, else the author); SQLite,
//!   whose triggers cannot change the row being inserted, refuses any other version;
//! - `export_logs.completed_at` is set on entering `completed` or `failed` (unless the
//!   writer gave it), and a `processing` export has none (a CHECK);
//! - `generation_logs` is append-only: an entry never changes, except that the foreign keys'
//!   `ON DELETE SET NULL` clears `conversation_id` / `template_id`; it is deleted only with
//!   its user (PostgreSQL; SQLite's triggers cannot tell a cascade from a direct delete);
//! - `conversations.template_id` references `templates(id) ON DELETE SET NULL`. The
//!   migration first clears the ids that name no template and reports how many, on stderr
//!   (`forge-migration: m20251130_000009_generation_sources: cleared N dangling
//!   conversations.template_id`) and, on PostgreSQL, as a `NOTICE` too. PostgreSQL gets a
//!   real foreign key (`conversations_template_id_fkey`) and an index behind it. SQLite
//!   cannot add a foreign key to an existing table without rebuilding it (and rebuilding
//!   `conversations` would mean dropping and re-creating every trigger of the database wall
//!   that names it), so there the same rule is two triggers on `conversations` (an insert or
//!   update naming a missing template is refused with `forge:not_found:template`) and one on
//!   `templates` (deleting a template sets `template_id` to NULL), plus the same index.
//!
//! PostgreSQL (`sql/generation_up.sql`) also gets the `updated_at` triggers, row-level
//! security (enabled and forced) and the contract's privileges: users read active
//! templates and their own, create and edit (content columns only) their own templates,
//! scenarios and edge cases — a scenario only under an own template, an edge case only
//! under an own scenario — delete their scenarios and edge cases, and read their own
//! generation and export logs; everything else is the service's; `anon` gets nothing.
//!
//! `down` removes the foreign key (SQLite: its triggers) and the index from
//! `conversations`, drops the five tables, then the functions.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

use crate::schema::{SQLITE_NOW, TableDef, drop_tables};

/// Tables of this migration, parents first.
const TABLES: &[&str] = &[
    "templates",
    "scenarios",
    "edge_cases",
    "generation_logs",
    "export_logs",
];

/// Every JSON column (the size cap applies to each).
const JSON_COLUMNS: &[(&str, &str)] = &[
    ("templates", "variables"),
    ("templates", "required_elements"),
    ("templates", "applicable_personas"),
    ("templates", "applicable_emotions"),
    ("templates", "applicable_topics"),
    ("scenarios", "parameter_values"),
    ("edge_cases", "last_test_result"),
    ("generation_logs", "request_payload"),
    ("generation_logs", "response_payload"),
    ("generation_logs", "parameters"),
    ("export_logs", "scope"),
];

/// The JSON columns of `templates` that are arrays of strings.
const STRING_LISTS: &[&str] = &[
    "variables",
    "required_elements",
    "applicable_personas",
    "applicable_emotions",
    "applicable_topics",
];

/// The columns of `templates` whose change is a new version of the template.
pub(crate) const CONTENT_COLUMNS: &[&str] = &[
    "template_name",
    "description",
    "category",
    "tier",
    "template_text",
    "structure",
    "variables",
    "tone",
    "complexity_baseline",
    "style_notes",
    "example_conversation",
    "quality_threshold",
    "required_elements",
    "applicable_personas",
    "applicable_emotions",
    "applicable_topics",
];

/// What the migration prints before the count of cleared ids.
const REPORT: &str = "forge-migration: m20251130_000009_generation_sources: cleared";

/// Creates the generation sources and export tables with their rules.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(NEW.a, …) IS DISTINCT FROM (OLD.a, …)` over the content columns (PostgreSQL).
fn postgres_content_changed() -> String {
    let new: Vec<String> = CONTENT_COLUMNS.iter().map(|c| format!("NEW.{c}")).collect();
    let old: Vec<String> = CONTENT_COLUMNS.iter().map(|c| format!("OLD.{c}")).collect();
    format!("({}) IS DISTINCT FROM ({})", new.join(", "), old.join(", "))
}

/// `(NEW.a IS NOT OLD.a OR …)` over the content columns (SQLite).
fn sqlite_content_changed() -> String {
    let parts: Vec<String> = CONTENT_COLUMNS
        .iter()
        .map(|c| format!("NEW.{c} IS NOT OLD.{c}"))
        .collect();
    format!("({})", parts.join(" OR "))
}

/// PostgreSQL's script, with the content-change test filled in.
fn postgres_up() -> String {
    include_str!("sql/generation_up.sql").replace("{content_changed}", &postgres_content_changed())
}

/// SQLite's triggers: the rules of `sql/generation_sqlite_up.sql`, then the JSON caps and
/// the string-list element checks (as the pipeline migration does).
fn sqlite_up() -> String {
    let mut sql = include_str!("sql/generation_sqlite_up.sql")
        .replace("{now}", SQLITE_NOW)
        .replace("{content_changed}", &sqlite_content_changed());
    sql.push_str(&crate::schema::sqlite_json_caps(JSON_COLUMNS));
    for column in STRING_LISTS {
        for (when, event) in [
            ("insert", "INSERT".to_owned()),
            ("update", format!("UPDATE OF {column}")),
        ] {
            sql.push_str(&format!(
                "\nCREATE TRIGGER templates_{column}_strings_{when} BEFORE {event} ON templates\n\
                 WHEN json_valid(NEW.{column}) AND json_type(NEW.{column}) = 'array'\n\
                 AND EXISTS (SELECT 1 FROM json_each(NEW.{column}) e WHERE e.type <> 'text')\n\
                 BEGIN\n  SELECT RAISE(ABORT, 'forge:invalid:{column}:a JSON array of strings');\nEND;\n"
            ));
        }
    }
    sql
}

/// Clears `conversations.template_id` where it names no template; how many were cleared.
async fn clear_dangling_template_ids(manager: &SchemaManager<'_>) -> Result<i64, DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let dangling = "FROM conversations c WHERE c.template_id IS NOT NULL \
                    AND NOT EXISTS (SELECT 1 FROM templates t WHERE t.id = c.template_id)";
    let count = db
        .query_one_raw(Statement::from_string(
            backend,
            format!("SELECT count(*) AS n {dangling}"),
        ))
        .await?
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    if backend == DbBackend::Postgres {
        db.execute_unprepared(
            "DO $$
             DECLARE
               n bigint;
             BEGIN
               UPDATE public.conversations c SET template_id = NULL
                WHERE c.template_id IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM public.templates t WHERE t.id = c.template_id);
               GET DIAGNOSTICS n = ROW_COUNT;
               RAISE NOTICE 'forge-migration: m20251130_000009_generation_sources: cleared % dangling conversations.template_id', n;
             END
             $$",
        )
        .await?;
    } else {
        db.execute_unprepared(
            "UPDATE conversations SET template_id = NULL WHERE template_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM templates t WHERE t.id = conversations.template_id)",
        )
        .await?;
    }
    if count > 0 {
        eprintln!("{REPORT} {count} dangling conversations.template_id");
    }
    Ok(count)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let postgres = backend == DbBackend::Postgres;
        let string_list = |column: &str| {
            if postgres {
                format!(
                    "jsonb_typeof({column}) = 'array' AND NOT jsonb_path_exists({column}, '$[*] ? (@.type() != \"string\")')"
                )
            } else {
                format!("json_valid({column}) AND json_type({column}) = 'array'")
            }
        };

        let mut templates = TableDef::new(backend, "templates");
        templates
            .text("template_name")
            .text_null("description")
            .text("category")
            .text("tier")
            .text("template_text")
            .text_null("structure")
            .jsonb_default("variables", "[]")
            .text_null("tone")
            .integer_null("complexity_baseline")
            .text_null("style_notes")
            .text_null("example_conversation")
            .double_null("quality_threshold")
            .jsonb_default("required_elements", "[]")
            .jsonb_default("applicable_personas", "[]")
            .jsonb_default("applicable_emotions", "[]")
            .jsonb_default("applicable_topics", "[]")
            .integer_default("usage_count", 0)
            .double_default("rating", 0.0)
            .double_null("success_rate")
            .integer_default("version", 1)
            .boolean_default("is_active", true)
            .uuid("created_by")
            .uuid_null("last_modified_by")
            .timestamp_now("last_modified")
            .timestamps()
            .references("created_by", "profiles", ForeignKeyAction::Cascade)
            .references("last_modified_by", "profiles", ForeignKeyAction::SetNull)
            .check(
                "template_name_check",
                "length(trim(template_name)) > 0 AND length(template_name) <= 200",
            )
            .one_of("tier", &["template", "scenario", "edge_case"])
            .check(
                "complexity_baseline_check",
                "complexity_baseline BETWEEN 1 AND 10",
            )
            .check(
                "quality_threshold_check",
                "quality_threshold BETWEEN 0 AND 10",
            )
            .check("usage_count_check", "usage_count >= 0")
            .check("rating_check", "rating BETWEEN 0 AND 5")
            .check("success_rate_check", "success_rate BETWEEN 0 AND 1")
            .check("version_check", "version >= 1");
        for column in STRING_LISTS {
            templates.check(&format!("{column}_check"), &string_list(column));
        }
        templates
            .index("tier_is_active", "tier, is_active", None)
            .index("created_by", "created_by", None)
            .index("last_modified_by", "last_modified_by", None)
            .index("category", "category", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "scenarios")
            .text("name")
            .text_null("description")
            .text_null("context")
            .uuid("parent_template_id")
            .jsonb_default("parameter_values", "{}")
            .text("topic")
            .text("persona")
            .text("emotional_arc")
            .text_default("generation_status", "not_generated")
            .uuid_null("conversation_id")
            .text_null("error_message")
            .text_default("status", "draft")
            .double_null("quality_score")
            .uuid("created_by")
            .timestamps()
            .references("parent_template_id", "templates", ForeignKeyAction::Cascade)
            .references(
                "conversation_id",
                "conversations",
                ForeignKeyAction::SetNull,
            )
            .references("created_by", "profiles", ForeignKeyAction::Cascade)
            .check("name_check", "length(name) <= 200")
            .one_of(
                "generation_status",
                &["not_generated", "generated", "error"],
            )
            .one_of("status", &["draft", "active", "archived"])
            .check("quality_score_check", "quality_score BETWEEN 0 AND 10")
            .index("parent_template_id", "parent_template_id", None)
            .index("conversation_id", "conversation_id", None)
            .index("created_by", "created_by", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "edge_cases")
            .text("name")
            .text_null("description")
            .uuid("scenario_id")
            .text("test_category")
            .text("expected_behavior")
            .text_default("complexity", "medium")
            .text_default("test_status", "not_tested")
            .jsonb_null("last_test_result")
            .uuid("created_by")
            .timestamps()
            .references("scenario_id", "scenarios", ForeignKeyAction::Cascade)
            .references("created_by", "profiles", ForeignKeyAction::Cascade)
            .one_of("complexity", &["low", "medium", "high"])
            .one_of("test_status", &["not_tested", "passed", "failed"])
            .index("scenario_id", "scenario_id", None)
            .index("created_by", "created_by", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "generation_logs")
            .uuid("user_id")
            .uuid_null("conversation_id")
            .text_null("run_id")
            .uuid_null("template_id")
            .jsonb_null("request_payload")
            .jsonb_null("response_payload")
            .jsonb_default("parameters", "{}")
            .decimal_zero("cost_usd", 12, 6)
            .integer_default("input_tokens", 0)
            .integer_default("output_tokens", 0)
            .integer_default("duration_ms", 0)
            .text_null("error_message")
            .timestamp_now("created_at")
            .references("user_id", "profiles", ForeignKeyAction::Cascade)
            .references(
                "conversation_id",
                "conversations",
                ForeignKeyAction::SetNull,
            )
            .references("template_id", "templates", ForeignKeyAction::SetNull)
            .check("cost_usd_check", "cost_usd >= 0")
            .check("input_tokens_check", "input_tokens >= 0")
            .check("output_tokens_check", "output_tokens >= 0")
            .check("duration_ms_check", "duration_ms >= 0")
            .index("user_id", "user_id, created_at DESC, id DESC", None)
            .index("conversation_id", "conversation_id", None)
            .index("template_id", "template_id", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "export_logs")
            .text("export_id")
            .uuid("user_id")
            .text("format")
            .jsonb_default("scope", "{}")
            .integer_default("conversation_count", 0)
            .big_integer_default("file_size", 0)
            .text_default("status", "processing")
            .text_null("error_message")
            .timestamp_now("created_at")
            .timestamp_null("completed_at")
            .references("user_id", "profiles", ForeignKeyAction::Cascade)
            .unique(&["export_id"])
            .one_of("format", &["jsonl", "json", "csv", "markdown"])
            .check("conversation_count_check", "conversation_count >= 0")
            .check("file_size_check", "file_size >= 0")
            .one_of("status", &["processing", "completed", "failed"])
            .check(
                "completed_at_check",
                "status <> 'processing' OR completed_at IS NULL",
            )
            .index("user_id", "user_id, created_at DESC", None)
            .create(manager)
            .await?;

        clear_dangling_template_ids(manager).await?;

        let sql = match backend {
            DbBackend::Postgres => postgres_up(),
            DbBackend::Sqlite => sqlite_up(),
            _ => return Ok(()),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "ALTER TABLE public.conversations DROP CONSTRAINT IF EXISTS conversations_template_id_fkey;
                     DROP INDEX IF EXISTS public.idx_conversations_template_id;",
                )
                .await?;
            }
            DbBackend::Sqlite => {
                db.execute_unprepared(
                    "DROP TRIGGER IF EXISTS conversations_template_id_insert;
                     DROP TRIGGER IF EXISTS conversations_template_id_update;
                     DROP INDEX IF EXISTS idx_conversations_template_id;",
                )
                .await?;
            }
            _ => {}
        }
        // Dropping a table drops its triggers, policies and grants (SQLite: its triggers).
        let children_first: Vec<&str> = TABLES.iter().rev().copied().collect();
        drop_tables(manager, &children_first).await?;
        crate::postgres_only(manager, include_str!("sql/generation_down.sql")).await
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
        assert!(
            !up.contains("{now}") && !up.contains("{content_changed}"),
            "{up}"
        );
    }

    #[test]
    fn postgres_caps_every_json_column() {
        let up = postgres_up();
        for (table, column) in JSON_COLUMNS {
            assert!(
                up.contains(&format!(
                    "{table}_{column}_size_check\n  CHECK (octet_length({column}::text) <= {JSON_MAX_BYTES})"
                )),
                "{table}.{column}"
            );
        }
        assert!(!up.contains("{content_changed}"));
    }
}
