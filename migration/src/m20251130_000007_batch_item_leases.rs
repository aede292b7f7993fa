//! Leases for batch items, as coding jobs have: `batch_items.locked_by text NULL` (the
//! worker that claimed the item last) and `batch_items.locked_until timestamptz NULL` (the
//! end of its lease, set exactly while the item is `processing`), on both backends, and
//! `idx_batch_items_lease (locked_until) WHERE locked_until IS NOT NULL` like
//! `idx_coding_jobs_lease`: only items in flight hold a lease, so the index finds the
//! leases that ran out without walking over anything else.
//!
//! A worker that dies holding an item no longer leaves it `processing` for ever: once its
//! lease has run out another worker may claim it (`forge_service::batch_items`). Items that
//! were `processing` before this migration have no lease; the repositories treat that as
//! a lease that has run out, so they are claimable at once.
//!
//! Privileges need nothing new on PostgreSQL: the database wall grants `authenticated`
//! column-level `INSERT` on a list of columns of `batch_items` (and no `UPDATE`), so the new
//! columns are the service's alone; `service_role` holds table-wide privileges, which
//! cover new columns.
//!
//! `down` drops the index, then the columns (SQLite 3.35+ has `DROP COLUMN`).

use sea_orm_migration::prelude::*;

/// `batch_items` and its two new columns.
#[derive(DeriveIden)]
enum BatchItems {
    Table,
    LockedBy,
    LockedUntil,
}

/// The partial index on lease ends (the same SQL on both backends).
const CREATE_INDEX: &str = "CREATE INDEX IF NOT EXISTS idx_batch_items_lease \
                            ON batch_items (locked_until) WHERE locked_until IS NOT NULL";
const DROP_INDEX: &str = "DROP INDEX IF EXISTS idx_batch_items_lease";

/// Adds `locked_by` and `locked_until` to `batch_items`, with their index.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(BatchItems::Table)
                    .add_column(ColumnDef::new(BatchItems::LockedBy).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(BatchItems::Table)
                    .add_column(
                        ColumnDef::new(BatchItems::LockedUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(CREATE_INDEX)
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The index first: SQLite refuses to drop an indexed column.
        manager
            .get_connection()
            .execute_unprepared(DROP_INDEX)
            .await?;
        for column in [BatchItems::LockedUntil, BatchItems::LockedBy] {
            manager
                .alter_table(
                    Table::alter()
                        .table(BatchItems::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
