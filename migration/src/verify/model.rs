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
    pub(crate) const GRANT: &str = "grant";
    pub(crate) const ROLE: &str = "role";
    pub(crate) const MIGRATION: &str = "migration";
    pub(crate) const CHECKSUM: &str = "checksum";
    pub(crate) const ENTITY: &str = "entity";
    pub(crate) const ENTITY_COLUMN: &str = "entity column";
}

/// `(kind, name)` → description.
pub(crate) type Objects = BTreeMap<(&'static str, String), String>;

/// What privileges are granted on: `(table, object)`. A table is `(Some(table), "")`, one
/// of its columns `(Some(table), "column name")`, a function or a sequence `(None,
/// "function name(args)")` / `(None, "sequence name")`.
pub(crate) type GrantTarget = (Option<String>, String);

/// Grantee (`PUBLIC` or a role's name) → the privileges it holds (`SELECT`, `UPDATE WITH
/// GRANT OPTION`, …).
pub(crate) type Acl = BTreeMap<String, BTreeSet<String>>;

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
    /// PostgreSQL: the privileges granted to other roles than the owner on every table
    /// (the bookkeeping tables included), column, sequence and compared function. Every
    /// such object has an entry, an empty one when nothing is granted on it.
    pub(crate) grants: BTreeMap<GrantTarget, Acl>,
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
    diff_grants(expected, found, true, &mut out);
    diff_objects(None, &expected.globals, &found.globals, true, &mut out);
    diff_grants(expected, found, false, &mut out);
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

/// One finding per `(object, grantee)` whose privileges differ, on the tables and their
/// columns (`on_tables`) or on the database-wide objects. Objects only one side has are
/// skipped: the missing or unexpected table, column or function is reported already (and
/// an extra function `--allow-extra` accepts must not fail the check by its grants).
fn diff_grants(expected: &Snapshot, found: &Snapshot, on_tables: bool, out: &mut Vec<Finding>) {
    for (target @ (table, object), e_acl) in &expected.grants {
        if table.is_some() != on_tables {
            continue;
        }
        let Some(f_acl) = found.grants.get(target) else {
            continue;
        };
        let grantees: BTreeSet<&String> = e_acl.keys().chain(f_acl.keys()).collect();
        for grantee in grantees {
            let (e, f) = (e_acl.get(grantee), f_acl.get(grantee));
            if e == f {
                continue;
            }
            let name = match object.as_str() {
                "" => format!("to {grantee}"),
                object => format!("on {object} to {grantee}"),
            };
            out.push(Finding::drift(
                kind::GRANT,
                table.as_deref(),
                &name,
                e.map(privileges),
                f.map(privileges),
            ));
        }
    }
}

/// `DELETE, INSERT, SELECT WITH GRANT OPTION`.
fn privileges(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sql` with every run of whitespace turned into one space.
pub(crate) fn squash(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(
        snap: &mut Snapshot,
        table: Option<&str>,
        object: &str,
        grantee: &str,
        privs: &[&str],
    ) {
        let acl = snap
            .grants
            .entry((table.map(str::to_owned), object.to_owned()))
            .or_default();
        if !privs.is_empty() {
            let set = acl.entry(grantee.to_owned()).or_default();
            set.extend(privs.iter().map(|p| (*p).to_owned()));
        }
    }

    fn lines(findings: &[Finding]) -> Vec<String> {
        findings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn grants_differ_per_object_and_grantee() {
        let mut expected = Snapshot::default();
        grant(
            &mut expected,
            Some("profiles"),
            "",
            "authenticated",
            &["SELECT", "UPDATE"],
        );
        grant(&mut expected, Some("profiles"), "column tier", "", &[]);
        grant(&mut expected, None, "function f()", "PUBLIC", &["EXECUTE"]);
        let mut found = Snapshot::default();
        grant(
            &mut found,
            Some("profiles"),
            "",
            "authenticated",
            &["SELECT", "UPDATE", "INSERT"],
        );
        grant(&mut found, Some("profiles"), "", "anon", &["INSERT"]);
        grant(
            &mut found,
            Some("profiles"),
            "column tier",
            "authenticated",
            &["UPDATE"],
        );
        grant(&mut found, None, "function f()", "", &[]);
        assert_eq!(
            lines(&diff(&expected, &found)),
            [
                "drift: table profiles: grant to anon: unexpected; found INSERT",
                "drift: table profiles: grant to authenticated: expected SELECT, UPDATE, \
                 found INSERT, SELECT, UPDATE",
                "drift: table profiles: grant on column tier to authenticated: unexpected; \
                 found UPDATE",
                "drift: database: grant on function f() to PUBLIC: missing; expected EXECUTE",
            ]
        );
    }

    #[test]
    fn grants_on_objects_only_one_side_has_are_left_to_those_objects() {
        let mut expected = Snapshot::default();
        grant(&mut expected, Some("notes"), "", "anon", &["SELECT"]);
        let mut found = Snapshot::default();
        grant(
            &mut found,
            None,
            "function answer()",
            "PUBLIC",
            &["EXECUTE"],
        );
        assert!(diff(&expected, &found).is_empty());
    }
}
