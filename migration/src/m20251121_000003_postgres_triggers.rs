//! PostgreSQL only: `updated_at` triggers and the `session_events.seq` trigger.
//!
//! On SQLite this migration records itself and does nothing: `updated_at` is kept by the
//! entities' `ActiveModelBehavior`, and the repositories assign `seq`.

use sea_orm_migration::prelude::*;

use crate::postgres_only;

/// Installs `forge_set_updated_at()` on every table with `updated_at`, and
/// `forge_session_events_assign_seq()` on `session_events`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only(manager, include_str!("sql/triggers_up.sql")).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only(manager, include_str!("sql/triggers_down.sql")).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
