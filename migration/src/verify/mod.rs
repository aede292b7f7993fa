//! `forge-migration verify`: is this database exactly the schema Forge expects?
//!
//! The expected schema comes from the code, never from a hand-written list: [`verify()`]
//! migrates a scratch database with [`Migrator`] (SQLite: in memory;
//! PostgreSQL: a temporary database on the live server, dropped afterwards) and reads it
//! back with the same introspection it applies to the live database. Then it compares
//! - the migrations: pending ones, unknown ones (applied but not in this binary), and
//!   migrations edited after they were applied (their checksum differs; see below);
//! - tables (an unexpected one is a warning that `--allow-extra` accepts), columns (type,
//!   nullability, default), primary keys, foreign keys with their `ON DELETE` rule, unique
//!   and CHECK constraints, indexes and triggers;
//! - on PostgreSQL also row-level security per table (enabled and forced), every policy
//!   (command, roles, expressions), the functions of `public` (the `updated_at` and `seq`
//!   triggers' ones among them; body, `SECURITY DEFINER` and `SET` options such as
//!   `search_path`), `auth.uid()`, the roles the grants and policies name, each table's
//!   storage parameters, and the privileges granted to other roles than the owner (and to
//!   `PUBLIC`) on every table of `public` (the bookkeeping tables included), column,
//!   sequence and those functions: one finding per object and grantee;
//! - the entities of `forge-entity` against the freshly migrated schema, so a column added
//!   to an entity without a migration is reported even on a database that matches the
//!   migrations.
//!
//! Checksums: every migration records `fnv1a64:…` of its source (its `.rs` file and the
//! `.sql` files it includes) in `forge_migration_checksums` when it is applied. A database
//! migrated before Forge kept checksums gets a warning per migration, which does not fail
//! the check.
//!
//! `verify` reads the live database and never writes it: a SQLite file is opened read-only.

pub(crate) mod checksum;
mod entities;
mod migrations;
mod model;
mod postgres;
mod query;
mod sqlite;

use std::fmt;

use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::{DatabaseConnection, DbBackend, DbErr};
use serde::Serialize;

use crate::{Backend, ConnectError, Migrator, connect, redact_url};
use model::{Snapshot, kind};
pub use postgres::url_for_database;

/// How serious a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The database differs from what the code expects.
    Error,
    /// Worth knowing; fails the check only when it is an unexpected object (a table, or a
    /// function in `public`) and `--allow-extra` is not given.
    Warning,
}

/// One difference between the database and what the code expects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// What kind of object: `table`, `column`, `foreign key`, `check`, `index`, `policy`,
    /// `grant`, `migration`, `checksum`, `entity column`, …
    pub kind: String,
    /// The table the object belongs to; `None` for database-wide objects.
    pub table: Option<String>,
    /// The object's name (empty for the table itself, its primary key or its RLS switch;
    /// for a grant what it is on and to whom: `to anon`, `on column tier to authenticated`,
    /// `on function forge_set_updated_at() to PUBLIC`).
    pub object: String,
    /// What the code expects; `None` when the object should not exist.
    pub expected: Option<String>,
    /// What the database has; `None` when the object is missing.
    pub found: Option<String>,
    /// An unexpected table or function: a warning `--allow-extra` accepts.
    pub extra: bool,
}

impl Finding {
    fn new(
        severity: Severity,
        kind: &str,
        table: Option<&str>,
        object: &str,
        expected: Option<String>,
        found: Option<String>,
    ) -> Self {
        Self {
            severity,
            kind: kind.to_owned(),
            table: table.map(str::to_owned),
            object: object.to_owned(),
            expected,
            found,
            extra: false,
        }
    }

    /// A difference that fails the check.
    pub(crate) fn drift(
        kind: &str,
        table: Option<&str>,
        object: &str,
        expected: Option<String>,
        found: Option<String>,
    ) -> Self {
        Self::new(Severity::Error, kind, table, object, expected, found)
    }

    /// An object the code does not know of: fails the check unless extras are allowed.
    pub(crate) fn extra(kind: &str, table: Option<&str>, object: &str, found: String) -> Self {
        Self {
            extra: true,
            ..Self::new(Severity::Warning, kind, table, object, None, Some(found))
        }
    }

    /// A database-wide warning that never fails the check.
    pub(crate) fn warning(kind: &str, object: &str, expected: String, found: String) -> Self {
        Self::new(
            Severity::Warning,
            kind,
            None,
            object,
            Some(expected),
            Some(found),
        )
    }

    /// Whether this finding fails the check.
    pub fn fails(&self, allow_extra: bool) -> bool {
        match self.severity {
            Severity::Error => true,
            Severity::Warning => self.extra && !allow_extra,
        }
    }
}

/// `drift: table coding_jobs: column priority: expected integer NOT NULL DEFAULT 0, found
/// bigint NULL` (or `warning: …`); one line.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "drift",
            Severity::Warning => "warning",
        };
        match &self.table {
            Some(table) => write!(f, "{level}: table {table}: ")?,
            None => write!(f, "{level}: database: ")?,
        }
        match (self.kind.as_str(), self.object.as_str()) {
            (kind::TABLE, _) => {}
            (kind, "") => write!(f, "{kind}: ")?,
            (kind, object) => write!(f, "{kind} {object}: ")?,
        }
        match (&self.expected, &self.found) {
            (Some(e), Some(found)) => write!(f, "expected {e}, found {found}"),
            (Some(e), None) => write!(f, "missing; expected {e}"),
            (None, Some(found)) if self.extra => {
                write!(f, "unexpected; found {found} (--allow-extra accepts it)")
            }
            (None, Some(found)) => write!(f, "unexpected; found {found}"),
            (None, None) => f.write_str("differs"),
        }
    }
}

/// How much the expected schema holds, for the one-line summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Migrations in this binary.
    pub migrations: usize,
    /// Tables.
    pub tables: usize,
    /// Columns.
    pub columns: usize,
    /// Primary keys, foreign keys, unique and CHECK constraints.
    pub constraints: usize,
    /// Indexes that back no constraint.
    pub indexes: usize,
    /// Row-level security policies (PostgreSQL).
    pub policies: usize,
    /// Triggers.
    pub triggers: usize,
}

impl Summary {
    fn of(expected: &Snapshot) -> Self {
        let constraints = [
            kind::PRIMARY_KEY,
            kind::FOREIGN_KEY,
            kind::UNIQUE,
            kind::CHECK,
        ]
        .iter()
        .map(|k| expected.count(k))
        .sum();
        Self {
            migrations: Migrator::migrations().len(),
            tables: expected.tables.len(),
            columns: expected.count(kind::COLUMN),
            constraints,
            indexes: expected.count(kind::INDEX),
            policies: expected.count(kind::POLICY),
            triggers: expected.count(kind::TRIGGER),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} migrations, {} tables, {} columns, {} constraints, {} indexes, {} policies, {} triggers",
            self.migrations,
            self.tables,
            self.columns,
            self.constraints,
            self.indexes,
            self.policies,
            self.triggers
        )
    }
}

/// The outcome of [`verify()`].
#[derive(Clone, Debug)]
pub struct Report {
    /// The live database's backend.
    pub backend: Backend,
    /// Every difference found, migrations first, then tables in name order.
    pub findings: Vec<Finding>,
    /// What the expected schema holds.
    pub summary: Summary,
}

impl Report {
    /// Whether the database passes: no error, and no unexpected object unless
    /// `allow_extra`.
    pub fn passes(&self, allow_extra: bool) -> bool {
        !self.findings.iter().any(|f| f.fails(allow_extra))
    }

    /// `ok: SQLite database matches (5 migrations, 9 tables, …)` when it passes, else
    /// `drift: N differences …`.
    pub fn summary_line(&self, allow_extra: bool) -> String {
        let warnings = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count();
        let note = match warnings {
            0 => String::new(),
            n => format!("; {n} warning(s)"),
        };
        if self.passes(allow_extra) {
            format!(
                "ok: {} database matches ({}{note})",
                self.backend, self.summary
            )
        } else {
            let failing = self
                .findings
                .iter()
                .filter(|f| f.fails(allow_extra))
                .count();
            format!(
                "drift: {} database differs in {failing} place(s){note}",
                self.backend
            )
        }
    }

    /// The report as JSON: `{"status": "ok"|"drift", "backend", "summary", "findings": [{
    /// "kind", "table", "object", "expected", "found", "severity", "extra"}]}`.
    pub fn to_json(&self, allow_extra: bool) -> serde_json::Value {
        serde_json::json!({
            "status": if self.passes(allow_extra) { "ok" } else { "drift" },
            "backend": backend_id(self.backend),
            "summary": self.summary,
            "findings": self.findings,
        })
    }
}

/// `sqlite` or `postgres`, for JSON.
pub fn backend_id(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// Why [`verify()`] could not check a database. One line, no password.
#[derive(Debug)]
pub enum VerifyError {
    /// The live database could not be opened.
    Connect(ConnectError),
    /// The scratch database for the expected schema could not be created, migrated or
    /// dropped (PostgreSQL: the role lacks CREATEDB, for instance).
    Scratch {
        /// What went wrong.
        reason: String,
    },
    /// A catalog query failed (permission denied, for instance).
    Read {
        /// What was being read.
        what: &'static str,
        /// What the database said.
        reason: String,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(err) => write!(f, "{err}"),
            Self::Scratch { reason } => write!(f, "cannot build the expected schema: {reason}"),
            Self::Read { what, reason } => write!(f, "cannot read {what}: {reason}"),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(err) => Some(err),
            _ => None,
        }
    }
}

/// Compares the database at `url` with the schema this build's migrations and entities
/// describe, and returns every difference.
///
/// # Errors
/// [`VerifyError::Connect`] when the database cannot be opened (bad URL, unreachable,
/// refused login, missing SQLite file), [`VerifyError::Scratch`] when the expected schema
/// cannot be built (PostgreSQL: no permission to create a database), and
/// [`VerifyError::Read`] when a catalog query fails.
pub async fn verify(url: &str) -> Result<Report, VerifyError> {
    let backend = Backend::from_url(url).ok_or_else(|| {
        VerifyError::Connect(ConnectError::UnsupportedUrl {
            url: redact_url(url),
        })
    })?;
    let live = connect(&read_only(url))
        .await
        .map_err(VerifyError::Connect)?;
    let report = compare(&live, url, backend).await;
    // Closing is tidiness; the report stands either way.
    let _ = live.close().await;
    report
}

async fn compare(
    live: &DatabaseConnection,
    url: &str,
    backend: Backend,
) -> Result<Report, VerifyError> {
    // The live side first: building the expected schema on PostgreSQL creates the roles
    // the migrations need, which must not hide that the live server lacks them.
    let found = introspect(live)
        .await
        .map_err(read("the database's schema"))?;
    let applied = migrations::read(live)
        .await
        .map_err(read("the applied migrations"))?;
    let expected = expected_schema(live, url, backend).await?;

    let db_backend = live.get_database_backend();
    let mut findings = migrations::check(&applied);
    findings.extend(model::diff(&expected, &found));
    findings.extend(entities::check(&entities::forge(), &expected, db_backend));
    Ok(Report {
        backend,
        findings,
        summary: Summary::of(&expected),
    })
}

/// Reads the schema of `db`, whatever its backend.
async fn introspect(db: &DatabaseConnection) -> Result<Snapshot, DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => postgres::snapshot(db).await,
        _ => sqlite::snapshot(db).await,
    }
}

/// The schema a database migrated by this binary has, on `live`'s backend.
async fn expected_schema(
    live: &DatabaseConnection,
    url: &str,
    backend: Backend,
) -> Result<Snapshot, VerifyError> {
    match backend {
        Backend::Sqlite => migrate_and_read("sqlite::memory:").await,
        Backend::Postgres => {
            let scratch = postgres::Scratch::create(live, url).await?;
            let expected = migrate_and_read(scratch.url()).await;
            let dropped = scratch.drop(live).await;
            let expected = expected?;
            dropped.map(|()| expected)
        }
    }
}

async fn migrate_and_read(url: &str) -> Result<Snapshot, VerifyError> {
    let scratch_err = |reason: String| VerifyError::Scratch { reason };
    let db = connect(url).await.map_err(|e| scratch_err(e.to_string()))?;
    let result = match Migrator::up(&db, None).await {
        Ok(()) => introspect(&db)
            .await
            .map_err(read("the freshly migrated schema")),
        Err(e) => Err(scratch_err(format!(
            "migrating a scratch database failed: {}",
            one_line(&e)
        ))),
    };
    let _ = db.close().await;
    result
}

fn read(what: &'static str) -> impl Fn(DbErr) -> VerifyError {
    move |e| VerifyError::Read {
        what,
        reason: one_line(&e),
    }
}

/// A database error on one line.
fn one_line(err: &DbErr) -> String {
    err.to_string().replace('\n', " ")
}

/// Migration bookkeeping, left out of the table comparison (it is compared as migrations).
fn is_bookkeeping(table: &str) -> bool {
    table == migrations::MIGRATION_TABLE || table == checksum::CHECKSUM_TABLE
}

/// `url` opening a SQLite file read-only (never creating it); other URLs unchanged.
fn read_only(url: &str) -> String {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return url.to_owned();
    }
    match url.find("mode=") {
        Some(i) => {
            let (head, tail) = url.split_at(i);
            let rest = tail.find('&').map(|j| tail.get(j..).unwrap_or_default());
            format!("{head}mode=ro{}", rest.unwrap_or_default())
        }
        None if url.contains('?') => format!("{url}&mode=ro"),
        None => format!("{url}?mode=ro"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_files_are_opened_read_only() {
        assert_eq!(
            read_only("sqlite://forge.db?mode=rwc"),
            "sqlite://forge.db?mode=ro"
        );
        assert_eq!(
            read_only("sqlite://f.db?mode=rw&cache=shared"),
            "sqlite://f.db?mode=ro&cache=shared"
        );
        assert_eq!(read_only("sqlite://f.db"), "sqlite://f.db?mode=ro");
        assert_eq!(read_only("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(read_only("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn findings_read_as_one_line_each() {
        let f = Finding::drift(
            kind::COLUMN,
            Some("coding_jobs"),
            "priority",
            Some("integer NOT NULL DEFAULT 0".to_owned()),
            Some("bigint NULL".to_owned()),
        );
        assert_eq!(
            f.to_string(),
            "drift: table coding_jobs: column priority: expected integer NOT NULL DEFAULT 0, found bigint NULL"
        );
        let extra = Finding::extra(
            kind::TABLE,
            Some("notes"),
            "",
            "table with 2 columns".to_owned(),
        );
        assert_eq!(
            extra.to_string(),
            "warning: table notes: unexpected; found table with 2 columns (--allow-extra accepts it)"
        );
        assert!(extra.fails(false) && !extra.fails(true));
    }
}
