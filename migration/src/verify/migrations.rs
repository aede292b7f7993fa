//! Applied migrations against the binary's: pending, unknown, and edited after applying.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm_migration::SchemaManager;
use sea_orm_migration::sea_orm::{DatabaseConnection, DbErr};

use super::Finding;
use super::checksum::{CHECKSUM_TABLE, recorded};
use super::model::kind;
use super::query::{col, rows};

/// The migration table sea-orm-migration keeps.
pub(crate) const MIGRATION_TABLE: &str = "seaql_migrations";

/// What a database records about its migrations.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    versions: BTreeSet<String>,
    checksums: BTreeMap<String, String>,
}

/// Reads `seaql_migrations` and `forge_migration_checksums`; a missing table counts as
/// empty. Never writes (unlike `Migrator::get_migration_with_status`, which creates the
/// migration table and fails on unknown versions).
pub(crate) async fn read(db: &DatabaseConnection) -> Result<Applied, DbErr> {
    let manager = SchemaManager::new(db);
    let mut applied = Applied::default();
    if manager.has_table(MIGRATION_TABLE).await? {
        let sql = format!("SELECT version FROM {MIGRATION_TABLE}");
        for row in rows(db, &sql, vec![], 1).await? {
            applied.versions.insert(col(&row, 0).to_owned());
        }
    }
    applied.checksums = recorded(db, manager.has_table(CHECKSUM_TABLE).await?).await?;
    Ok(applied)
}

/// Pending and unknown migrations, and checksums that differ or are missing.
pub(crate) fn check(applied: &Applied) -> Vec<Finding> {
    let mut out = Vec::new();
    let sources = crate::sources();
    for source in &sources {
        let name = source.migration.name();
        let expected = source.checksum();
        if !applied.versions.contains(name) {
            out.push(Finding::drift(
                kind::MIGRATION,
                None,
                name,
                Some("applied".to_owned()),
                Some("pending".to_owned()),
            ));
            continue;
        }
        match applied.checksums.get(name) {
            None => out.push(Finding::warning(
                kind::CHECKSUM,
                name,
                expected,
                "none recorded (applied before Forge kept checksums)".to_owned(),
            )),
            Some(found) if *found != expected => out.push(Finding::drift(
                kind::CHECKSUM,
                None,
                name,
                Some(expected),
                Some(format!(
                    "{found} (the migration was edited after it was applied)"
                )),
            )),
            Some(_) => {}
        }
    }
    for version in &applied.versions {
        if !sources.iter().any(|s| s.migration.name() == version) {
            out.push(Finding::drift(
                kind::MIGRATION,
                None,
                version,
                None,
                Some("applied, but not in this binary".to_owned()),
            ));
        }
    }
    out
}
