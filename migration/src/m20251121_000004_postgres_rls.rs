//! PostgreSQL only: the row-level security of SCHEMA.md.
//!
//! Creates the Supabase roles (`anon`, `authenticated`, `service_role`), schema `auth` and
//! `auth.uid()` where missing, enables RLS on every table with the policies and grants of
//! SCHEMA.md, and installs `on_auth_user_created` where `auth.users` exists. Re-running it
//! over an existing setup is harmless. `down` leaves the roles (they are cluster-wide) and
//! drops `auth` objects only when this migration created them.

use sea_orm_migration::prelude::*;

use crate::postgres_only;

/// Enables row-level security with Forge's policies.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only(manager, include_str!("sql/rls_up.sql")).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only(manager, include_str!("sql/rls_down.sql")).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
