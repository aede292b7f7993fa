//! Forge's migrations and the connection rules every Forge process shares.
//!
//! [`Migrator`] creates the whole schema of SCHEMA.md on SQLite and on PostgreSQL; on
//! PostgreSQL it also installs the `updated_at` triggers, the `session_events.seq`
//! trigger and row-level security. [`connect`] opens a database the way Forge expects
//! (SQLite with foreign keys enforced on every connection).
//!
//! ```no_run
//! use forge_migration::{Migrator, MigratorTrait, connect};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let db = connect("sqlite::memory:").await?;
//! Migrator::up(&db, None).await?;
//! # Ok(()) }
//! ```
//!
//! The `forge-migration` binary wraps the same migrator: `up`, `down`, `status`, `fresh`,
//! `refresh`, `reset`, `verify`, with `DATABASE_URL` (or `-u`) choosing the database and
//! [`DEFAULT_DATABASE_URL`] when neither is given. [`verify()`] (the `verify` command)
//! checks that a live database is exactly the schema these migrations and the entities
//! describe. `seed` loads development data ([`seed()`]) and `schema-doc` regenerates
//! `docs/schema.md` from the entities ([`schema_doc`]).
#![warn(missing_docs)]

mod connect;
mod m20251121_000001_create_core_tables;
mod m20251121_000002_create_conversation_tables;
mod m20251121_000003_postgres_triggers;
mod m20251121_000004_postgres_rls;
mod m20251122_000005_queue_tuning;
mod m20251130_000006_database_wall;
mod m20251130_000007_batch_item_leases;
mod m20251130_000008_pipeline_runs;
mod m20251130_000009_generation_sources;
mod m20261130_000010_keyset_indexes;
mod m20261201_000011_batch_delete_rule;
mod m20261201_000012_accounts;
mod m20261201_000013_event_notify;
mod migrate;
mod schema;
pub mod schema_doc;
pub mod seed;
pub mod verify;

pub use connect::{
    Backend, CHECK_AFTER_IDLE, ConnectError, DEFAULT_DATABASE_URL, IDLE_IN_TRANSACTION_TIMEOUT,
    Pooling, connect, connect_with, connections_discarded, is_pooled, redact_url, url_from_env,
};
pub use m20251130_000006_database_wall::JSON_MAX_BYTES;
pub use m20261201_000012_accounts::{
    CREDITS_LOW_THRESHOLD, MAX_UNREVOKED_API_KEYS, SIGNUP_BONUS_CREDITS,
};
pub use m20261201_000013_event_notify::EVENTS_CHANNEL;
pub use migrate::{MIGRATION_LOCK_KEY, MigrateError, MigrationLock, migrate, migrate_with};
pub use sea_orm_migration::{MigratorTrait, sea_orm};
pub use seed::{SeedError, SeedReport, seed};
pub use verify::{Finding, Report, Severity, VerifyError, verify};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// Every Forge migration, oldest first. Each one records a checksum of its source when
/// applied (see [`verify()`]).
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        verify::checksum::checksummed(sources())
    }
}

/// A migration module and the files its checksum covers: its own `.rs` file, plus the
/// files it `include_str!`s (a unit test fails when one is left out).
macro_rules! source {
    ($module:ident $(, $include:literal)* $(,)?) => {
        verify::checksum::Source {
            migration: Box::new($module::Migration),
            files: &[include_str!(concat!(stringify!($module), ".rs")) $(, include_str!($include))*],
        }
    };
}

/// Every migration with its source, oldest first.
pub(crate) fn sources() -> Vec<verify::checksum::Source> {
    vec![
        source!(m20251121_000001_create_core_tables),
        source!(m20251121_000002_create_conversation_tables),
        source!(
            m20251121_000003_postgres_triggers,
            "sql/triggers_up.sql",
            "sql/triggers_down.sql"
        ),
        source!(
            m20251121_000004_postgres_rls,
            "sql/rls_up.sql",
            "sql/rls_down.sql"
        ),
        source!(m20251122_000005_queue_tuning),
        source!(
            m20251130_000006_database_wall,
            "sql/wall_up.sql",
            "sql/wall_down.sql",
            "sql/wall_sqlite_up.sql"
        ),
        source!(m20251130_000007_batch_item_leases),
        source!(
            m20251130_000008_pipeline_runs,
            "sql/pipeline_up.sql",
            "sql/pipeline_down.sql",
            "sql/pipeline_sqlite_up.sql"
        ),
        source!(
            m20251130_000009_generation_sources,
            "sql/generation_up.sql",
            "sql/generation_down.sql",
            "sql/generation_sqlite_up.sql"
        ),
        source!(m20261130_000010_keyset_indexes),
        source!(m20261201_000011_batch_delete_rule),
        source!(
            m20261201_000012_accounts,
            "sql/accounts_up.sql",
            "sql/accounts_down.sql",
            "sql/accounts_sqlite_up.sql"
        ),
        source!(m20261201_000013_event_notify),
    ]
}

/// The tables Forge owns, parents before children.
pub const TABLES: &[&str] = &[
    "profiles",
    "projects",
    "coding_sessions",
    "coding_jobs",
    "session_events",
    "conversations",
    "conversation_turns",
    "batch_jobs",
    "batch_items",
    "jobs",
    "job_events",
    "artifacts",
    "prompts",
    "templates",
    "scenarios",
    "edge_cases",
    "generation_logs",
    "export_logs",
    "credit_accounts",
    "credit_transactions",
    "api_keys",
    "notifications",
    "notification_preferences",
    "usage_metrics",
    "activity_logs",
];

/// Runs a script of PostgreSQL statements, and nothing on other backends.
async fn postgres_only(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}
