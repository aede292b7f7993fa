//! The database wall: the database itself holds every rule of SCHEMA.md ("Row Level
//! Security and who may write what"), whatever SQL reaches it.
//!
//! On **PostgreSQL** (`sql/wall_up.sql`):
//! - everything Forge owns (its nine tables, the bookkeeping tables `seaql_migrations` and
//!   `forge_migration_checksums`, its functions) is revoked from `PUBLIC`, `anon`,
//!   `authenticated` and `service_role` — Supabase's default privileges grant them `ALL`
//!   on every new object — and exactly the contract's grants are given back: column
//!   privileges for what `authenticated` may write, `SELECT/INSERT/UPDATE/DELETE` for
//!   `service_role`, nothing for `anon`, nothing on the bookkeeping tables;
//! - `FORCE ROW LEVEL SECURITY` on the nine tables, and the insert policies narrowed to
//!   the contract (a session starts `pending` on an active project, a conversation as a
//!   `draft`, turns only while it is editable, a batch `queued`, items only into a queued
//!   batch); users no longer update or delete turns and items;
//! - triggers for the invariants that hold for every role (session transitions and
//!   `sessions_limit` under concurrent starts, turn totals and batch counters kept by the
//!   database and writable by nothing else, an item's conversation belonging to the batch
//!   owner) and for the state rules of end users (any role subject to RLS): a session
//!   expires within 24 h, a conversation is edited only while `draft`/`needs_revision`
//!   and only submitted for review, a batch is only paused, resumed or cancelled;
//! - every Forge function with `search_path = ''` and no trigger function executable by
//!   anyone (triggers need no `EXECUTE` to fire);
//! - JSON documents capped at [`JSON_MAX_BYTES`] by `CHECK`s, and an index behind
//!   `conversations.approved_by` (the Supabase advisors want one behind every foreign key).
//!
//! On **SQLite** (`sql/wall_sqlite_up.sql`) the same invariants are triggers raising the same
//! messages (SQLite has no roles, so the end-user rules have no counterpart), and the JSON
//! caps are triggers too. Trigger errors read `forge:<kind>:<detail>`; forge-service maps
//! them to its typed errors.
//!
//! Existing databases are upgraded in place: totals and counters are recomputed from the
//! turns and items before the triggers take over.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::schema::SQLITE_NOW;

pub use forge_entity::JSON_MAX_BYTES;

/// The JSON columns the cap applies to.
const JSON_COLUMNS: &[(&str, &str)] = &[
    ("projects", "expo_config"),
    ("coding_sessions", "metadata"),
    ("coding_jobs", "result"),
    ("session_events", "data"),
    ("conversations", "category"),
    ("conversations", "parameters"),
    ("conversations", "quality_metrics"),
    ("conversations", "review_history"),
    ("batch_jobs", "configuration"),
    ("batch_items", "parameters"),
];

/// Makes the database enforce the contract by itself.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// SQLite's triggers: the invariants, then the JSON caps.
fn sqlite_up() -> String {
    let mut sql = include_str!("sql/wall_sqlite_up.sql").replace("{now}", SQLITE_NOW);
    sql.push_str(&crate::schema::sqlite_json_caps(JSON_COLUMNS));
    sql
}

/// Drops every trigger [`sqlite_up`] creates.
fn sqlite_down() -> String {
    crate::schema::sqlite_drop_triggers(&sqlite_up())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => include_str!("sql/wall_up.sql").to_owned(),
            DbBackend::Sqlite => sqlite_up(),
            _ => return Ok(()),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => include_str!("sql/wall_down.sql").to_owned(),
            DbBackend::Sqlite => sqlite_down(),
            _ => return Ok(()),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_down_drops_every_trigger_up_creates() {
        let up = sqlite_up();
        let created = up.matches("CREATE TRIGGER ").count();
        assert_eq!(sqlite_down().lines().count(), created);
        assert!(created >= 2 * JSON_COLUMNS.len() + 10, "{created} triggers");
    }
}
