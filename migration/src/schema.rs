//! Building blocks shared by the table migrations.
//!
//! Every table is declared once, with sea-query's schema builder, and rendered for the
//! backend the migration runs on. The helpers here keep the per-backend differences in one
//! place: PostgreSQL gets `uuid`, `timestamptz`, `jsonb` and `DEFAULT gen_random_uuid()` /
//! `now()`; SQLite gets the types SeaORM maps those to, with equivalent defaults.
//!
//! Constraint names follow PostgreSQL's own defaults (`{table}_{column}_check`,
//! `{table}_{column}_fkey`, `{table}_{column}_key`) so a database migrated by Forge looks
//! like one written by hand, and SQL written against the seeds keeps working.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// SQLite's equivalent of `now()`, in the RFC 3339 text form SeaORM writes for `DateTimeUtc`
/// (so values written by the database and by the application sort together).
pub(crate) const SQLITE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')";

/// SQLite's "now" written exactly as the application writes an instant (RFC 3339 with
/// the fraction left out on a whole second, as chrono prints it), so a row the database
/// stamps compares equal to a page cursor naming it. [`SQLITE_NOW`] always writes
/// `.000`, which sorts after the cursor's `…:00+00:00` and made a keyset page skip rows
/// stamped on a whole second. Tables from migration 12 on use this one
/// ([`TableDef::exact_now`]); earlier ones keep theirs (their defaults are part of the
/// schema `verify` compares).
pub(crate) const SQLITE_NOW_EXACT: &str = "(CASE WHEN strftime('%f', 'now') LIKE '%.000' \
    THEN strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now') \
    ELSE strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now') END)";

/// A table being declared for one backend.
pub(crate) struct TableDef {
    backend: DbBackend,
    name: &'static str,
    stmt: TableCreateStatement,
    indexes: Vec<String>,
    exact_now: bool,
}

impl TableDef {
    /// Starts a table with its `id uuid PRIMARY KEY` column.
    pub(crate) fn new(backend: DbBackend, name: &'static str) -> Self {
        let mut def = Self::empty(backend, name);
        let mut id = ColumnDef::new(Alias::new("id"));
        id.uuid().not_null().primary_key();
        if backend == DbBackend::Postgres {
            id.default(Expr::cust("gen_random_uuid()"));
        }
        def.stmt.col(id);
        def
    }

    /// Starts a table whose primary key is the `text` column `key` (a key the application
    /// chooses, such as `jobs.run_id`), with no default.
    pub(crate) fn with_text_key(backend: DbBackend, name: &'static str, key: &str) -> Self {
        let mut def = Self::empty(backend, name);
        def.stmt.col(
            ColumnDef::new(Alias::new(key))
                .text()
                .not_null()
                .primary_key(),
        );
        def
    }

    /// Starts a table whose primary key is the `uuid` column `key`, with no default: a key
    /// that is also a foreign key (`notification_preferences.user_id`, one row per profile).
    pub(crate) fn with_uuid_key(backend: DbBackend, name: &'static str, key: &str) -> Self {
        let mut def = Self::empty(backend, name);
        def.stmt.col(
            ColumnDef::new(Alias::new(key))
                .uuid()
                .not_null()
                .primary_key(),
        );
        def
    }

    fn empty(backend: DbBackend, name: &'static str) -> Self {
        let mut stmt = Table::create();
        stmt.table(Alias::new(name)).if_not_exists();
        Self {
            backend,
            name,
            stmt,
            indexes: Vec::new(),
            exact_now: false,
        }
    }

    /// From here on, SQLite's `DEFAULT now` columns use [`SQLITE_NOW_EXACT`].
    pub(crate) fn exact_now(&mut self) -> &mut Self {
        self.exact_now = true;
        self
    }

    fn column(&mut self, mut col: ColumnDef) -> &mut Self {
        self.stmt.col(&mut col);
        self
    }

    /// `name uuid NOT NULL`.
    pub(crate) fn uuid(&mut self, name: &str) -> &mut Self {
        self.column(ColumnDef::new(Alias::new(name)).uuid().not_null().take())
    }

    /// `name uuid NULL`.
    pub(crate) fn uuid_null(&mut self, name: &str) -> &mut Self {
        self.column(ColumnDef::new(Alias::new(name)).uuid().null().take())
    }

    /// `name text NOT NULL`.
    pub(crate) fn text(&mut self, name: &str) -> &mut Self {
        self.column(ColumnDef::new(Alias::new(name)).text().not_null().take())
    }

    /// `name text NULL`.
    pub(crate) fn text_null(&mut self, name: &str) -> &mut Self {
        self.column(ColumnDef::new(Alias::new(name)).text().null().take())
    }

    /// `name text NOT NULL DEFAULT 'value'`.
    pub(crate) fn text_default(&mut self, name: &str, value: &str) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .text()
                .not_null()
                .default(value)
                .take(),
        )
    }

    /// `name integer NOT NULL DEFAULT value`.
    pub(crate) fn integer_default(&mut self, name: &str, value: i32) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .integer()
                .not_null()
                .default(value)
                .take(),
        )
    }

    /// `name integer NOT NULL`.
    pub(crate) fn integer(&mut self, name: &str) -> &mut Self {
        self.column(ColumnDef::new(Alias::new(name)).integer().not_null().take())
    }

    /// `name integer NULL`.
    pub(crate) fn integer_null(&mut self, name: &str) -> &mut Self {
        self.column(ColumnDef::new(Alias::new(name)).integer().null().take())
    }

    /// `name integer NULL DEFAULT value` (seed 003's `batch_items.progress`).
    pub(crate) fn integer_null_default(&mut self, name: &str, value: i32) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .integer()
                .null()
                .default(value)
                .take(),
        )
    }

    /// `name bigint NOT NULL`.
    pub(crate) fn big_integer(&mut self, name: &str) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .big_integer()
                .not_null()
                .take(),
        )
    }

    /// `name bigint NULL`.
    pub(crate) fn big_integer_null(&mut self, name: &str) -> &mut Self {
        self.column(ColumnDef::new(Alias::new(name)).big_integer().null().take())
    }

    /// `name double precision NULL`.
    pub(crate) fn double_null(&mut self, name: &str) -> &mut Self {
        self.column(ColumnDef::new(Alias::new(name)).double().null().take())
    }

    /// `name bigint NOT NULL DEFAULT value`.
    pub(crate) fn big_integer_default(&mut self, name: &str, value: i64) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .big_integer()
                .not_null()
                .default(value)
                .take(),
        )
    }

    /// `name double precision NOT NULL DEFAULT value`.
    pub(crate) fn double_default(&mut self, name: &str, value: f64) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .double()
                .not_null()
                .default(value)
                .take(),
        )
    }

    /// `name numeric(precision, scale) NOT NULL DEFAULT 0` (SQLite: `real(precision,
    /// scale)`, what sea-query writes for a decimal there: REAL affinity).
    pub(crate) fn decimal_zero(&mut self, name: &str, precision: u32, scale: u32) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .decimal_len(precision, scale)
                .not_null()
                .default(Expr::cust("0"))
                .take(),
        )
    }

    /// `name boolean NOT NULL DEFAULT value`.
    pub(crate) fn boolean_default(&mut self, name: &str, value: bool) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .boolean()
                .not_null()
                .default(value)
                .take(),
        )
    }

    /// `name jsonb NOT NULL DEFAULT 'literal'` (`literal` is JSON text such as `{}`).
    pub(crate) fn jsonb_default(&mut self, name: &str, literal: &str) -> &mut Self {
        let default = match self.backend {
            DbBackend::Postgres => format!("'{literal}'::jsonb"),
            _ => format!("'{literal}'"),
        };
        self.column(
            ColumnDef::new(Alias::new(name))
                .json_binary()
                .not_null()
                .default(Expr::cust(default))
                .take(),
        )
    }

    /// `name jsonb NOT NULL` with no default.
    pub(crate) fn jsonb(&mut self, name: &str) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .json_binary()
                .not_null()
                .take(),
        )
    }

    /// `name jsonb NULL`.
    pub(crate) fn jsonb_null(&mut self, name: &str) -> &mut Self {
        self.column(ColumnDef::new(Alias::new(name)).json_binary().null().take())
    }

    /// `name date NOT NULL` (SQLite: what SeaORM maps a `Date` to, `YYYY-MM-DD` text).
    pub(crate) fn date(&mut self, name: &str) -> &mut Self {
        self.column(ColumnDef::new(Alias::new(name)).date().not_null().take())
    }

    /// `name timestamptz NOT NULL DEFAULT now()`.
    pub(crate) fn timestamp_now(&mut self, name: &str) -> &mut Self {
        let now = match self.backend {
            DbBackend::Postgres => "now()",
            _ if self.exact_now => SQLITE_NOW_EXACT,
            _ => SQLITE_NOW,
        };
        self.column(
            ColumnDef::new(Alias::new(name))
                .timestamp_with_time_zone()
                .not_null()
                .default(Expr::cust(now))
                .take(),
        )
    }

    /// `name timestamptz NOT NULL` with no default.
    pub(crate) fn timestamp(&mut self, name: &str) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .timestamp_with_time_zone()
                .not_null()
                .take(),
        )
    }

    /// `name timestamptz NULL`.
    pub(crate) fn timestamp_null(&mut self, name: &str) -> &mut Self {
        self.column(
            ColumnDef::new(Alias::new(name))
                .timestamp_with_time_zone()
                .null()
                .take(),
        )
    }

    /// `created_at` and `updated_at`, both `timestamptz NOT NULL DEFAULT now()`.
    pub(crate) fn timestamps(&mut self) -> &mut Self {
        self.timestamp_now("created_at").timestamp_now("updated_at")
    }

    /// A named `CHECK` constraint, `{table}_{suffix}` (suffix is usually `{column}_check`).
    pub(crate) fn check(&mut self, suffix: &str, sql: &str) -> &mut Self {
        let name = format!("{}_{suffix}", self.name);
        self.stmt
            .check((Alias::new(name), Expr::cust(sql.to_owned())));
        self
    }

    /// `CHECK (column IN (values…))`, the house rule for enum-like text columns.
    pub(crate) fn one_of(&mut self, column: &str, values: &[&str]) -> &mut Self {
        let list = values
            .iter()
            .map(|v| format!("'{v}'"))
            .collect::<Vec<_>>()
            .join(", ");
        self.check(&format!("{column}_check"), &format!("{column} IN ({list})"))
    }

    /// `FOREIGN KEY (column) REFERENCES target(id) ON DELETE rule`, named `{table}_{column}_fkey`.
    pub(crate) fn references(
        &mut self,
        column: &str,
        target: &str,
        on_delete: ForeignKeyAction,
    ) -> &mut Self {
        self.references_key(column, target, "id", on_delete)
    }

    /// `FOREIGN KEY (column) REFERENCES target(target_key) ON DELETE rule`, named
    /// `{table}_{column}_fkey`, for a parent whose key is not `id`.
    pub(crate) fn references_key(
        &mut self,
        column: &str,
        target: &str,
        target_key: &str,
        on_delete: ForeignKeyAction,
    ) -> &mut Self {
        let mut fk = ForeignKey::create();
        fk.name(format!("{}_{column}_fkey", self.name))
            .from_tbl(Alias::new(self.name))
            .from_col(Alias::new(column))
            .to_tbl(Alias::new(target))
            .to_col(Alias::new(target_key))
            .on_delete(on_delete)
            .on_update(ForeignKeyAction::NoAction);
        self.stmt.foreign_key(&mut fk);
        self
    }

    /// A `UNIQUE` constraint over `columns`, named `{table}_{columns joined by _}_key`.
    pub(crate) fn unique(&mut self, columns: &[&str]) -> &mut Self {
        let mut idx = Index::create();
        idx.name(format!("{}_{}_key", self.name, columns.join("_")))
            .unique();
        for c in columns {
            idx.col(Alias::new(*c));
        }
        self.stmt.index(&mut idx);
        self
    }

    /// A secondary index `idx_{table}_{suffix}` over the raw column list `columns_sql`
    /// (which may carry `DESC`), optionally partial (`WHERE …`). The syntax is the same on
    /// both backends.
    pub(crate) fn index(
        &mut self,
        suffix: &str,
        columns_sql: &str,
        filter: Option<&str>,
    ) -> &mut Self {
        let mut sql = format!(
            "CREATE INDEX IF NOT EXISTS idx_{table}_{suffix} ON {table} ({columns_sql})",
            table = self.name
        );
        if let Some(filter) = filter {
            sql.push_str(" WHERE ");
            sql.push_str(filter);
        }
        self.indexes.push(sql);
        self
    }

    /// Creates the table, then its indexes.
    pub(crate) async fn create(&mut self, manager: &SchemaManager<'_>) -> Result<(), DbErr> {
        manager.create_table(self.stmt.take()).await?;
        let db = manager.get_connection();
        for sql in &self.indexes {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// Drops the named tables, in order, if they exist.
pub(crate) async fn drop_tables(manager: &SchemaManager<'_>, tables: &[&str]) -> Result<(), DbErr> {
    for table in tables {
        manager
            .drop_table(Table::drop().table(Alias::new(*table)).if_exists().take())
            .await?;
    }
    Ok(())
}

/// SQLite triggers refusing a JSON document over [`forge_entity::JSON_MAX_BYTES`] in each
/// `(table, column)` on insert and on update of the column, raising the same
/// `forge:invalid:<column>:…` message as PostgreSQL's size CHECKs map to.
pub(crate) fn sqlite_json_caps(columns: &[(&str, &str)]) -> String {
    let max = forge_entity::JSON_MAX_BYTES;
    let mut sql = String::new();
    for (table, column) in columns {
        for (when, event) in [
            ("insert", "INSERT".to_owned()),
            ("update", format!("UPDATE OF {column}")),
        ] {
            sql.push_str(&format!(
                "\nCREATE TRIGGER {table}_{column}_size_{when} BEFORE {event} ON {table}\n\
                 WHEN length(CAST(NEW.{column} AS BLOB)) > {max}\n\
                 BEGIN\n  SELECT RAISE(ABORT, 'forge:invalid:{column}:a JSON document of at most 64 KiB');\nEND;\n"
            ));
        }
    }
    sql
}

/// `DROP TRIGGER IF EXISTS` for every `CREATE TRIGGER` in `sql` (a SQLite migration's
/// `down` undoing exactly what its `up` created).
pub(crate) fn sqlite_drop_triggers(sql: &str) -> String {
    sql.lines()
        .filter_map(|line| line.strip_prefix("CREATE TRIGGER "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|name| format!("DROP TRIGGER IF EXISTS {name};\n"))
        .collect()
}
