//! The entities of `forge-entity` against the freshly migrated schema: every entity has its
//! table, every entity column exists with a compatible type and the same nullability, and
//! every migrated column is in its entity. This is what catches a column added to an
//! entity without a migration, even on a database that matches the migrations exactly.

use sea_orm_migration::sea_orm::sea_query::{
    PostgresQueryBuilder, SqliteQueryBuilder, TableBuilder,
};
use sea_orm_migration::sea_orm::{
    ColumnTrait, ColumnType, DbBackend, EntityTrait, IdenStatic, Iterable,
};

use super::Finding;
use super::model::{Snapshot, kind};

/// One column as an entity declares it.
#[derive(Clone, Debug)]
pub(crate) struct EntityColumn {
    pub(crate) name: String,
    pub(crate) ty: ColumnType,
    pub(crate) nullable: bool,
}

/// An entity's table and columns.
#[derive(Clone, Debug)]
pub(crate) struct EntityColumns {
    pub(crate) table: String,
    pub(crate) columns: Vec<EntityColumn>,
}

/// The table and columns of entity `E`.
pub(crate) fn of<E: EntityTrait>() -> EntityColumns {
    let columns = E::Column::iter()
        .map(|c| {
            let def = c.def();
            EntityColumn {
                name: c.as_str().to_owned(),
                ty: def.get_column_type().clone(),
                nullable: def.is_null(),
            }
        })
        .collect();
    EntityColumns {
        table: E::default().table_name().to_owned(),
        columns,
    }
}

/// Every entity of `forge-entity`. (A table without an entity is reported by [`check`],
/// so forgetting one here does not go unnoticed.)
pub(crate) fn forge() -> Vec<EntityColumns> {
    use forge_entity::*;
    vec![
        of::<profiles::Entity>(),
        of::<projects::Entity>(),
        of::<coding_sessions::Entity>(),
        of::<coding_jobs::Entity>(),
        of::<session_events::Entity>(),
        of::<conversations::Entity>(),
        of::<conversation_turns::Entity>(),
        of::<batch_jobs::Entity>(),
        of::<batch_items::Entity>(),
        of::<pipeline_runs::Entity>(),
        of::<pipeline_events::Entity>(),
        of::<artifacts::Entity>(),
        of::<prompts::Entity>(),
        of::<templates::Entity>(),
        of::<scenarios::Entity>(),
        of::<edge_cases::Entity>(),
        of::<generation_logs::Entity>(),
        of::<export_logs::Entity>(),
        of::<credit_accounts::Entity>(),
        of::<credit_transactions::Entity>(),
        of::<api_keys::Entity>(),
        of::<notifications::Entity>(),
        of::<notification_preferences::Entity>(),
        of::<usage_metrics::Entity>(),
        of::<activity_logs::Entity>(),
    ]
}

/// Differences between `entities` and the migrated `schema` of `backend`.
pub(crate) fn check(
    entities: &[EntityColumns],
    schema: &Snapshot,
    backend: DbBackend,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for entity in entities {
        let Some(table) = schema.tables.get(&entity.table) else {
            out.push(Finding::drift(
                kind::ENTITY,
                Some(&entity.table),
                "",
                Some("the entity's table".to_owned()),
                Some("no such table after migrating".to_owned()),
            ));
            continue;
        };
        for column in &entity.columns {
            let declared = describe(&render(&column.ty, backend), !column.nullable);
            let migrated = table
                .columns
                .get(&column.name)
                .map(|c| describe(&canonical(&c.ty), c.not_null));
            if migrated.as_deref() != Some(declared.as_str()) {
                out.push(Finding::drift(
                    kind::ENTITY_COLUMN,
                    Some(&entity.table),
                    &column.name,
                    Some(format!("{declared} (the entity)")),
                    Some(match migrated {
                        Some(m) => format!("{m} (after migrating)"),
                        None => "no such column after migrating".to_owned(),
                    }),
                ));
            }
        }
        for (name, column) in &table.columns {
            if !entity.columns.iter().any(|c| &c.name == name) {
                out.push(Finding::drift(
                    kind::ENTITY_COLUMN,
                    Some(&entity.table),
                    name,
                    Some(format!("{column} (after migrating)")),
                    Some("not in the entity".to_owned()),
                ));
            }
        }
    }
    for name in schema.tables.keys() {
        if !entities.iter().any(|e| &e.table == name) {
            out.push(Finding::drift(
                kind::ENTITY,
                Some(name),
                "",
                Some("an entity in forge-entity".to_owned()),
                Some("none".to_owned()),
            ));
        }
    }
    out
}

fn describe(ty: &str, not_null: bool) -> String {
    format!("{ty} {}", if not_null { "NOT NULL" } else { "NULL" })
}

/// The column type `backend`'s query builder writes for `ty` (what a migration declaring
/// the same type creates).
fn render(ty: &ColumnType, backend: DbBackend) -> String {
    let mut sql = String::new();
    match backend {
        DbBackend::Postgres => {
            TableBuilder::prepare_column_type(&PostgresQueryBuilder, ty, &mut sql)
        }
        _ => TableBuilder::prepare_column_type(&SqliteQueryBuilder, ty, &mut sql),
    }
    canonical(&sql)
}

/// One spelling per type: lower case, PostgreSQL's aliases replaced by the names
/// `format_type` prints.
fn canonical(ty: &str) -> String {
    const ALIASES: &[(&str, &str)] = &[
        ("varchar", "character varying"),
        ("timestamptz", "timestamp with time zone"),
        ("int8", "bigint"),
        ("int4", "integer"),
        ("int2", "smallint"),
        ("float8", "double precision"),
        ("float4", "real"),
        ("bool", "boolean"),
        ("decimal", "numeric"),
    ];
    // `numeric(12, 6)` (sea-query) and `numeric(12,6)` (`format_type`) are one type.
    let ty = ty.trim().to_lowercase().replace(", ", ",");
    ALIASES
        .iter()
        .find_map(|(alias, name)| {
            let rest = ty.strip_prefix(alias)?;
            (rest.is_empty() || rest.starts_with('(')).then(|| format!("{name}{rest}"))
        })
        .unwrap_or(ty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Migrator, MigratorTrait, connect};

    async fn migrated_sqlite() -> Result<Snapshot, Box<dyn std::error::Error>> {
        let db = connect("sqlite::memory:").await?;
        Migrator::up(&db, None).await?;
        Ok(super::super::sqlite::snapshot(&db).await?)
    }

    #[tokio::test]
    async fn the_entities_match_the_migrations() -> Result<(), Box<dyn std::error::Error>> {
        let schema = migrated_sqlite().await?;
        let findings = check(&forge(), &schema, DbBackend::Sqlite);
        assert!(findings.is_empty(), "{findings:#?}");
        Ok(())
    }

    #[tokio::test]
    async fn an_entity_column_without_a_migration_is_reported()
    -> Result<(), Box<dyn std::error::Error>> {
        let schema = migrated_sqlite().await?;
        let mut entities = forge();
        let profiles = entities
            .iter_mut()
            .find(|e| e.table == "profiles")
            .ok_or("no profiles entity")?;
        profiles.columns.push(EntityColumn {
            name: "nickname".to_owned(),
            ty: ColumnType::Text,
            nullable: true,
        });
        // `avatar_url` declared NOT NULL in the entity, NULL in the migration.
        if let Some(avatar) = profiles.columns.iter_mut().find(|c| c.name == "avatar_url") {
            avatar.nullable = false;
        }
        // And an entity forgotten entirely.
        entities.retain(|e| e.table != "batch_items");

        let lines: Vec<String> = check(&entities, &schema, DbBackend::Sqlite)
            .iter()
            .map(ToString::to_string)
            .collect();
        let expected = [
            "drift: table profiles: entity column avatar_url: expected text NOT NULL (the entity), \
             found text NULL (after migrating)",
            "drift: table profiles: entity column nickname: expected text NULL (the entity), \
             found no such column after migrating",
            "drift: table batch_items: entity: expected an entity in forge-entity, found none",
        ];
        assert_eq!(lines, expected, "{lines:#?}");
        Ok(())
    }

    #[test]
    fn postgres_aliases_are_canonical() {
        assert_eq!(canonical("varchar(20)"), "character varying(20)");
        assert_eq!(
            canonical("TIMESTAMP WITH TIME ZONE"),
            "timestamp with time zone"
        );
        assert_eq!(canonical("boolean"), "boolean");
        assert_eq!(canonical("int4"), "integer");
        assert_eq!(canonical("decimal(12, 6)"), "numeric(12,6)");
    }
}
