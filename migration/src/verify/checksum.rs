//! Checksums of applied migrations, kept in `forge_migration_checksums`.
//!
//! sea-orm-migration records only which versions ran (`seaql_migrations`), so a migration
//! edited after it was applied goes unnoticed. Every migration in [`crate::Migrator`] is
//! wrapped in [`Checksummed`]: its `up` runs the migration and then records the checksum of
//! the migration's source (its `.rs` file and the `.sql` files it includes) in the same
//! transaction; its `down` removes the row, and drops the table once it is empty, so
//! `up → reset → up` leaves no trace and `seaql_migrations` is untouched.
//!
//! The hash is FNV-1a (64 bit) over the source with line endings normalised to `\n`: it
//! needs no dependency, is stable across platforms and Rust versions, and 64 bits make an
//! accidental collision between two versions of a file vanishingly unlikely. It is not a
//! defence against someone who can write the database: they could rewrite the row too.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

/// The bookkeeping table.
pub(crate) const CHECKSUM_TABLE: &str = "forge_migration_checksums";

/// A migration together with the source files its checksum covers.
pub struct Source {
    /// The migration.
    pub migration: Box<dyn MigrationTrait>,
    /// The text of its `.rs` file first, then of every file it includes.
    pub files: &'static [&'static str],
}

impl Source {
    /// `fnv1a64:` and 16 hex digits: the checksum of [`Source::files`].
    pub fn checksum(&self) -> String {
        checksum_of(self.files)
    }
}

/// The checksum of a migration's source files, in the form stored in the database.
pub(crate) fn checksum_of(files: &[&str]) -> String {
    // `\r\n` → `\n`: a Windows checkout of the same commit has the same checksum. Each
    // file ends with a 0 byte, so moving text from one file to the next changes the hash.
    let bytes = files.iter().flat_map(|file| {
        let normalised = file.replace("\r\n", "\n");
        normalised.into_bytes().into_iter().chain([0u8])
    });
    format!("fnv1a64:{:016x}", fnv1a64(bytes))
}

/// FNV-1a, 64 bit (<http://www.isthe.com/chongo/tech/comp/fnv/>).
fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Wraps every migration so that applying it records its checksum.
pub(crate) fn checksummed(sources: Vec<Source>) -> Vec<Box<dyn MigrationTrait>> {
    sources
        .into_iter()
        .map(|source| {
            let checksum = source.checksum();
            Box::new(Checksummed {
                inner: source.migration,
                checksum,
            }) as Box<dyn MigrationTrait>
        })
        .collect()
}

/// A migration that records its checksum when applied and forgets it when rolled back.
struct Checksummed {
    inner: Box<dyn MigrationTrait>,
    checksum: String,
}

impl MigrationName for Checksummed {
    fn name(&self) -> &str {
        self.inner.name()
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Checksummed {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        self.inner.up(manager).await?;
        record(manager, self.inner.name(), &self.checksum).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        self.inner.down(manager).await?;
        forget(manager, self.inner.name()).await
    }

    fn use_transaction(&self) -> Option<bool> {
        self.inner.use_transaction()
    }
}

fn table() -> Alias {
    Alias::new(CHECKSUM_TABLE)
}

/// Creates the table when missing, then upserts `version`'s checksum.
async fn record(manager: &SchemaManager<'_>, version: &str, checksum: &str) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    if !manager.has_table(CHECKSUM_TABLE).await? {
        manager
            .create_table(
                Table::create()
                    .table(table())
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Alias::new("version"))
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Alias::new("checksum")).text().not_null())
                    .col(
                        ColumnDef::new(Alias::new("applied_at"))
                            .big_integer()
                            .not_null(),
                    )
                    .take(),
            )
            .await?;
        if backend == DbBackend::Postgres {
            // Supabase exposes tables in `public` through its API; with RLS on and no
            // policy, only the owner and service_role can read this one.
            manager
                .get_connection()
                .execute_unprepared(&format!(
                    "ALTER TABLE public.{CHECKSUM_TABLE} ENABLE ROW LEVEL SECURITY"
                ))
                .await?;
        }
    }
    let applied_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| <i64 as TryFrom<u64>>::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let insert = Query::insert()
        .into_table(table())
        .columns([
            Alias::new("version"),
            Alias::new("checksum"),
            Alias::new("applied_at"),
        ])
        .values([version.into(), checksum.into(), applied_at.into()])
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .on_conflict(
            OnConflict::column(Alias::new("version"))
                .update_columns([Alias::new("checksum"), Alias::new("applied_at")])
                .to_owned(),
        )
        .to_owned();
    manager.get_connection().execute(&insert).await?;
    Ok(())
}

/// Deletes `version`'s row; drops the table when no row is left.
async fn forget(manager: &SchemaManager<'_>, version: &str) -> Result<(), DbErr> {
    if !manager.has_table(CHECKSUM_TABLE).await? {
        return Ok(());
    }
    let db = manager.get_connection();
    let delete = Query::delete()
        .from_table(table())
        .and_where(Expr::col(Alias::new("version")).eq(version))
        .to_owned();
    db.execute(&delete).await?;
    let backend = manager.get_database_backend();
    let left = db
        .query_one_raw(Statement::from_string(
            backend,
            format!("SELECT count(*) FROM {CHECKSUM_TABLE}"),
        ))
        .await?
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or_default();
    if left == 0 {
        manager
            .drop_table(Table::drop().table(table()).if_exists().take())
            .await?;
    }
    Ok(())
}

/// The recorded checksums, by version (empty when the table does not exist).
pub(crate) async fn recorded<C: ConnectionTrait>(
    db: &C,
    table_exists: bool,
) -> Result<std::collections::BTreeMap<String, String>, DbErr> {
    if !table_exists {
        return Ok(Default::default());
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT version, checksum FROM {CHECKSUM_TABLE}"),
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get_by_index::<String>(0)?,
                row.try_get_by_index::<String>(1)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(checksum_of(&[]), "fnv1a64:cbf29ce484222325");
        assert_ne!(checksum_of(&["a"]), checksum_of(&["b"]));
        assert_ne!(checksum_of(&["ab", ""]), checksum_of(&["a", "b"]));
        assert_eq!(checksum_of(&["x\r\ny\n"]), checksum_of(&["x\ny\n"]));
    }

    /// Every `include_str!("…")` in a migration's `.rs` file is covered by its checksum, so
    /// editing a migration's SQL is detected too. Fails when a migration gains a `.sql` file
    /// that `lib.rs` does not list next to it.
    #[test]
    fn checksums_cover_every_included_file() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for source in crate::sources() {
            let Some(rs) = source.files.first() else {
                panic!("{} lists no files", source.migration.name());
            };
            for include in rs.split("include_str!(\"").skip(1) {
                let path = include.split('"').next().unwrap_or_default();
                let text = std::fs::read_to_string(src.join(path))
                    .unwrap_or_else(|e| panic!("read {path}: {e}"));
                assert!(
                    source.files.contains(&text.as_str()),
                    "{}: its checksum does not cover {path}; list it in lib.rs",
                    source.migration.name()
                );
            }
        }
    }
}
