//! Keyset indexes for the owner-scoped lists, on both backends.
//!
//! Every list a user pages through (`forge_service::pagination`) filters by the row's owner
//! and orders newest first by `(created_at, id)`, 51 rows for a page of 50. With only an
//! index on the owner, or on `created_at` alone, the first page of a small tenant either
//! reads and sorts all of that tenant's rows, or walks the whole table newest first past
//! every other tenant's rows until it has found 51 of its own. An index over
//! `(owner, created_at DESC, id DESC)` ([`KEYSETS`]) gives exactly the page: the owner's rows,
//! already in list order, and the scan stops after 51 (the next page starts from the
//! cursor, inside the same range). Read backwards, the same index serves the lists that run
//! oldest first by the same key (the review queue, the export's pages). PostgreSQL may
//! still fetch an owner's few rows with a bitmap scan of the index and sort them when it
//! knows there are only a few; either way it reads no other owner's rows.
//!
//! | list | table | index |
//! |---|---|---|
//! | `projects::list` | `projects` | `idx_projects_user_id_keyset` |
//! | `sessions::list` | `coding_sessions` | `idx_coding_sessions_user_id_keyset` |
//! | `conversations::list`, `review_queue`, `exports::write` | `conversations` | `idx_conversations_created_by_keyset` |
//! | `batches::list` | `batch_jobs` | `idx_batch_jobs_created_by_keyset` |
//! | `pipeline::list` (key `run_id`) | `jobs` | `idx_jobs_owner_id_keyset` |
//! | `templates::list` by creator | `templates` | `idx_templates_created_by_keyset` |
//! | `scenarios::list` | `scenarios` | `idx_scenarios_created_by_keyset` |
//! | `scenarios::list_edge_cases` | `edge_cases` | `idx_edge_cases_created_by_keyset` |
//! | `exports::logs` | `export_logs` | `idx_export_logs_user_id_keyset` |
//!
//! `generation_logs` has had its keyset index since it was created
//! (`idx_generation_logs_user_id`). Lists that are not scoped by an owner column are left
//! as they are: a session's jobs and events, a run's events and artifacts, a batch's items
//! (each scoped by its parent), and the active templates everyone reads.
//!
//! Each new index makes the owner's old index a redundant prefix, so `up` drops it (after
//! creating the new one) and `down` puts it back as it was. Every foreign key keeps an
//! index whose leading column is its column (Supabase's `unindexed_foreign_keys` lint): the
//! new index leads with the owner, which is the foreign key column in every table above.
//! `idx_export_logs_user_id` was `(user_id, created_at DESC)`: without `id` the tie-break
//! still needed a sort.
//!
//! On PostgreSQL the indexes are built inside the migration's transaction (`CREATE INDEX`
//! holds a `SHARE` lock: reads go on, writes to the table wait until the index is built).

use sea_orm_migration::prelude::*;

/// One owner-scoped list and its index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keyset {
    /// The table the list reads.
    pub(crate) table: &'static str,
    /// The owner column the list filters by (a foreign key to `profiles`).
    pub(crate) owner: &'static str,
    /// The list's tie-break key after `created_at` (the primary key).
    pub(crate) key: &'static str,
    /// The owner's index this one makes redundant: its name and column list, exactly as
    /// the migration that created it wrote them (so `down` restores the same definition).
    pub(crate) replaces: (&'static str, &'static str),
}

impl Keyset {
    /// `idx_{table}_{owner}_keyset`.
    pub(crate) fn name(&self) -> String {
        format!("idx_{}_{}_keyset", self.table, self.owner)
    }

    /// `{owner}, created_at DESC, {key} DESC`: the list's filter, then its order.
    pub(crate) fn columns(&self) -> String {
        format!("{}, created_at DESC, {} DESC", self.owner, self.key)
    }
}

/// Every owner-scoped list that pages newest first by `(created_at, key)`.
pub(crate) const KEYSETS: &[Keyset] = &[
    Keyset {
        table: "projects",
        owner: "user_id",
        key: "id",
        replaces: ("idx_projects_user_id", "user_id"),
    },
    Keyset {
        table: "coding_sessions",
        owner: "user_id",
        key: "id",
        replaces: ("idx_coding_sessions_user_id", "user_id"),
    },
    Keyset {
        table: "conversations",
        owner: "created_by",
        key: "id",
        replaces: ("idx_conversations_created_by", "created_by"),
    },
    Keyset {
        table: "batch_jobs",
        owner: "created_by",
        key: "id",
        replaces: ("idx_batch_jobs_created_by", "created_by"),
    },
    Keyset {
        table: "jobs",
        owner: "owner_id",
        key: "run_id",
        replaces: ("idx_jobs_owner_id", "owner_id"),
    },
    Keyset {
        table: "templates",
        owner: "created_by",
        key: "id",
        replaces: ("idx_templates_created_by", "created_by"),
    },
    Keyset {
        table: "scenarios",
        owner: "created_by",
        key: "id",
        replaces: ("idx_scenarios_created_by", "created_by"),
    },
    Keyset {
        table: "edge_cases",
        owner: "created_by",
        key: "id",
        replaces: ("idx_edge_cases_created_by", "created_by"),
    },
    Keyset {
        table: "export_logs",
        owner: "user_id",
        key: "id",
        replaces: ("idx_export_logs_user_id", "user_id, created_at DESC"),
    },
];

/// `CREATE INDEX` in the form `TableDef::index` writes (SQLite keeps the statement's text,
/// so `down` must write the old index exactly as its migration did).
fn create_index(name: &str, table: &str, columns: &str) -> String {
    format!("CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns});\n")
}

fn drop_index(name: &str) -> String {
    format!("DROP INDEX IF EXISTS {name};\n")
}

/// Each keyset index, then the index it replaces dropped (the same on both backends).
fn up_sql() -> String {
    KEYSETS
        .iter()
        .flat_map(|k| {
            [
                create_index(&k.name(), k.table, &k.columns()),
                drop_index(k.replaces.0),
            ]
        })
        .collect()
}

/// The old indexes back first (no foreign key is ever without one), then the keyset ones
/// dropped.
fn down_sql() -> String {
    KEYSETS
        .iter()
        .rev()
        .flat_map(|k| {
            [
                create_index(k.replaces.0, k.table, k.replaces.1),
                drop_index(&k.name()),
            ]
        })
        .collect()
}

/// Creates the keyset indexes of the owner-scoped lists.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&up_sql())
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&down_sql())
            .await?;
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
    fn each_replaced_index_is_a_prefix_of_its_keyset_index() {
        for k in KEYSETS {
            assert!(k.columns().starts_with(k.replaces.1), "{k:?}");
            assert!(k.replaces.1.starts_with(k.owner), "{k:?}");
        }
    }

    #[test]
    fn down_restores_what_the_earlier_migrations_wrote() {
        // The old indexes, as `TableDef::index` wrote them in their own migrations.
        let earlier: String = crate::sources()
            .iter()
            .flat_map(|s| s.files.iter().copied())
            .collect();
        for k in KEYSETS {
            let suffix = k
                .replaces
                .0
                .trim_start_matches(&format!("idx_{}_", k.table));
            let call = format!(".index(\"{suffix}\", \"{}\", None)", k.replaces.1);
            assert!(earlier.contains(&call), "no {call} for {}", k.table);
            assert!(down_sql().contains(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({});",
                k.replaces.0, k.table, k.replaces.1
            )));
        }
    }
}
