//! What introspection yields, and the diff of two such snapshots.
//!
//! Both sides of a comparison are read by the same introspection code from the same
//! backend (the live database, and a scratch database migrated by this binary), so an
//! object only needs a stable key and a description that changes whenever the object
//! does; nothing here knows what Forge's schema looks like.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::Finding;

/// Kinds of objects, as they appear in findings.
pub(crate) mod kind {
    pub(crate) const TABLE: &str = "table";
    pub(crate) const COLUMN: &str = "column";
    pub(crate) const PRIMARY_KEY: &str = "primary key";
    pub(crate) const FOREIGN_KEY: &str = "foreign key";
    pub(crate) const UNIQUE: &str = "unique";
    pub(crate) const CHECK: &str = "check";
    pub(crate) const EXCLUSION: &str = "exclusion";
    pub(crate) const INDEX: &str = "index";
    pub(crate) const TRIGGER: &str = "trigger";
    pub(crate) const POLICY: &str = "policy";
    pub(crate) const RLS: &str = "row level security";
    pub(crate) const STORAGE: &str = "storage parameters";
    pub(crate) const FUNCTION: &str = "function";
    pub(crate) const ROLE: &str = "role";
    pub(crate) const MIGRATION: &str = "migration";
    pub(crate) const CHECKSUM: &str = "checksum";
    pub(crate) const ENTITY: &str = "entity";
    pub(crate) const ENTITY_COLUMN: &str = "entity column";
}

/// `(kind, name)` → description.
pub(crate) type Objects = BTreeMap<(&'static str, String), String>;

/// One column as the database describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Column {
    /// The type, lower case (PostgreSQL: `format_type`; SQLite: the declared type).
    pub(crate) ty: String,
    pub(crate) not_null: bool,
    /// The default expression, as the database prints it.
    pub(crate) default: Option<String>,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let null = if self.not_null { "NOT NULL" } else { "NULL" };
        write!(f, "{} {null}", self.ty)?;
        match &self.default {
            Some(default) => write!(f, " DEFAULT {default}"),
            None => Ok(()),
        }
    }
}

/// A table: its columns and every other object attached to it.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub(crate) columns: BTreeMap<String, Column>,
    /// Constraints, indexes, triggers, policies, RLS, storage parameters.
    pub(crate) objects: Objects,
}

impl Table {
    /// Columns and objects in one map.
    fn all_objects(&self) -> Objects {
        let mut all = self.objects.clone();
        for (name, column) in &self.columns {
            all.insert((kind::COLUMN, name.clone()), column.to_string());
        }
        all
    }

    fn summary(&self) -> String {
        match self.columns.len() {
            1 => "table with 1 column".to_owned(),
            n => format!("table with {n} columns"),
        }
    }
}

/// A database's schema, as far as `verify` compares it.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The tables of the managed schema (SQLite: `main`; PostgreSQL: `public`), without
    /// the migration bookkeeping tables.
    pub(crate) tables: BTreeMap<String, Table>,
    /// Database-wide objects (PostgreSQL: functions).
    pub(crate) globals: Objects,
    /// PostgreSQL: every role on the server when the snapshot was taken.
    pub(crate) roles: BTreeSet<String>,
    /// PostgreSQL: the roles named by the schema's grants and policies.
    pub(crate) referenced_roles: BTreeSet<String>,
}

impl Snapshot {
    /// The table `name`, created empty on first use.
    pub(crate) fn table(&mut self, name: &str) -> &mut Table {
        self.tables.entry(name.to_owned()).or_default()
    }

    /// Adds an object to an existing table; objects of tables not in the snapshot (the
    /// bookkeeping tables) are ignored.
    pub(crate) fn attach(&mut self, table: &str, kind: &'static str, name: String, desc: String) {
        if let Some(t) = self.tables.get_mut(table) {
            t.objects.insert((kind, name), desc);
        }
    }

    /// How many objects of `kind` the tables have (columns included).
    pub(crate) fn count(&self, of: &str) -> usize {
        self.tables
            .values()
            .map(|t| match of {
                kind::COLUMN => t.columns.len(),
                _ => t.objects.keys().filter(|(k, _)| *k == of).count(),
            })
            .sum()
    }
}

/// Every difference between what the code expects and what the database has.
pub(crate) fn diff(expected: &Snapshot, found: &Snapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = expected.tables.keys().chain(found.tables.keys()).collect();
    for name in names {
        match (expected.tables.get(name), found.tables.get(name)) {
            (Some(e), Some(f)) => diff_objects(
                Some(name),
                &e.all_objects(),
                &f.all_objects(),
                false,
                &mut out,
            ),
            (Some(e), None) => out.push(Finding::drift(
                kind::TABLE,
                Some(name),
                "",
                Some(e.summary()),
                None,
            )),
            (None, Some(f)) => out.push(Finding::extra(kind::TABLE, Some(name), "", f.summary())),
            (None, None) => {}
        }
    }
    diff_objects(None, &expected.globals, &found.globals, true, &mut out);
    for role in &expected.referenced_roles {
        if !found.roles.contains(role) {
            out.push(Finding::drift(
                kind::ROLE,
                None,
                role,
                Some("present".to_owned()),
                None,
            ));
        }
    }
    out
}

/// Missing, unexpected and changed objects. Unexpected objects are drift, or with
/// `unexpected_is_extra` warnings that `--allow-extra` accepts.
fn diff_objects(
    table: Option<&str>,
    expected: &Objects,
    found: &Objects,
    unexpected_is_extra: bool,
    out: &mut Vec<Finding>,
) {
    let keys: BTreeSet<&(&str, String)> = expected.keys().chain(found.keys()).collect();
    for key @ (kind, name) in keys {
        let (e, f) = (expected.get(key), found.get(key));
        if e == f {
            continue;
        }
        out.push(match (e, f) {
            (None, Some(f)) if unexpected_is_extra => Finding::extra(kind, table, name, f.clone()),
            _ => Finding::drift(kind, table, name, e.cloned(), f.cloned()),
        });
    }
}

/// `sql` with every run of whitespace turned into one space.
pub(crate) fn squash(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}
