//! PostgreSQL test databases: the migrated template, clones of it, and dropping them.

use std::sync::Mutex;
use std::time::Duration;

use forge_migration::{Backend, Migrator, MigratorTrait, connect, redact_url};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};

use super::{TestDbError, url_for_database};

/// The advisory lock key under which a cluster's template is built ("forge" in ASCII).
const TEMPLATE_LOCK: i64 = 0x66_6f_72_67_65;
/// How often cloning is retried while the template is briefly in use, and how long apart.
const CLONE_ATTEMPTS: u32 = 20;
const CLONE_RETRY: Duration = Duration::from_millis(100);

/// The templates this process already knows to be complete (`"<template> <admin url>"`).
static READY: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A database this process created and must drop.
#[derive(Debug)]
pub(super) struct Owned {
    admin_url: String,
    name: String,
}

impl Owned {
    /// The URL of the database, as the cluster's admin (the owner of everything in it).
    pub(super) fn url(&self) -> String {
        url_for_database(&self.admin_url, &self.name)
    }

    /// Drops the database (closing every connection to it).
    pub(super) async fn drop_now(self) -> Result<(), TestDbError> {
        let admin = admin(&self.admin_url).await?;
        let dropped = drop_database(&admin, &self.name).await;
        admin.close().await.ok();
        dropped
    }

    /// Drops the database from a helper thread with its own runtime, waiting for it:
    /// usable from `Drop`, inside or outside an async runtime.
    pub(super) fn drop_blocking(self) {
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(self.drop_now()).map_err(|e| e.to_string())
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => eprintln!("forge testing: could not drop database {name}: {reason}"),
            Err(_) => eprintln!("forge testing: dropping database {name} panicked"),
        }
    }
}

/// The name of the template for the current set of migrations.
fn template_name() -> String {
    // FNV-1a: stable across processes and toolchains (std's hasher is not promised to be).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for migration in Migrator::migrations() {
        for byte in migration.name().bytes().chain(std::iter::once(b'\n')) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("forge_template_{hash:016x}")
}

/// One connection to the cluster's admin database (session-level advisory locks need
/// every statement on the same connection).
async fn admin(admin_url: &str) -> Result<DatabaseConnection, TestDbError> {
    if Backend::from_url(admin_url) != Some(Backend::Postgres) {
        return Err(TestDbError::NotPostgres {
            url: redact_url(admin_url),
        });
    }
    let mut options = ConnectOptions::new(admin_url);
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(60));
    Ok(Database::connect(options).await?)
}

async fn drop_database(admin: &DatabaseConnection, name: &str) -> Result<(), TestDbError> {
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// Makes sure the cluster of `admin_url` has the migrated template; returns its name.
pub(super) async fn ensure_template(admin_url: &str) -> Result<String, TestDbError> {
    let name = template_name();
    let key = format!("{name} {admin_url}");
    if READY.lock().is_ok_and(|ready| ready.contains(&key)) {
        return Ok(name);
    }
    let admin = admin(admin_url).await?;
    let built = build_template_locked(&admin, admin_url, &name).await;
    admin.close().await.ok();
    built?;
    if let Ok(mut ready) = READY.lock() {
        ready.push(key);
    }
    Ok(name)
}

/// [`build_template`] under the cluster-wide advisory lock, so parallel test binaries
/// build it once.
async fn build_template_locked(
    admin: &DatabaseConnection,
    admin_url: &str,
    name: &str,
) -> Result<(), TestDbError> {
    admin
        .execute_unprepared(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})"))
        .await?;
    let mut built = build_template(admin, admin_url, name).await;
    if built.is_ok() {
        built = ensure_app_role(admin).await;
    }
    admin
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})"))
        .await
        .ok();
    built
}

/// The application role test databases are used through: a login role that owns nothing
/// and holds no privilege of its own, member of `authenticated` and `service_role` (the
/// two-role setup of the README; its password is its name — test clusters only).
pub(super) const APP_ROLE: &str = "forge_test_app";

/// Creates [`APP_ROLE`] on the cluster if it is missing (roles are cluster-wide; the
/// template's migrations created the roles it joins).
async fn ensure_app_role(admin: &DatabaseConnection) -> Result<(), TestDbError> {
    admin
        .execute_unprepared(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                 BEGIN
                   CREATE ROLE {APP_ROLE} LOGIN NOINHERIT PASSWORD '{APP_ROLE}';
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                 END;
               END IF;
             END $$;
             GRANT authenticated, service_role TO {APP_ROLE};"
        ))
        .await?;
    Ok(())
}

/// `url` (a direct URL of one database) as it is reached through the test pooler, with
/// `pgbouncer=true`, when [`TEST_THROUGH_POOLER_ENV`](super::TEST_THROUGH_POOLER_ENV) is
/// `1`; otherwise `url` itself.
///
/// # Errors
/// [`TestDbError::NoPooler`] when the pooler is asked for and
/// [`TEST_POOLER_URL_ENV`](super::TEST_POOLER_URL_ENV) is not set: a run meant to go
/// through the pooler must not quietly go direct.
pub(super) fn through_pooler(url: &str) -> Result<String, TestDbError> {
    if std::env::var(super::TEST_THROUGH_POOLER_ENV).as_deref() != Ok("1") {
        return Ok(url.to_owned());
    }
    let pooler = std::env::var(super::TEST_POOLER_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .ok_or(TestDbError::NoPooler)?;
    let database = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, path)| path.split('?').next().unwrap_or(path))
        .unwrap_or("postgres");
    let direct = url_for_database(&pooler, database);
    let separator = if direct.contains('?') { '&' } else { '?' };
    Ok(format!("{direct}{separator}pgbouncer=true"))
}

/// `url` with its user and password replaced by [`APP_ROLE`]'s.
pub(super) fn app_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{APP_ROLE}:{APP_ROLE}@{host}")
}

/// Creates and migrates the template unless a complete one exists; a half-built one (not
/// marked `IS_TEMPLATE`, left by a crashed run) is rebuilt.
async fn build_template(
    admin: &DatabaseConnection,
    admin_url: &str,
    name: &str,
) -> Result<(), TestDbError> {
    let state = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT datistemplate FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await?
        .map(|row| row.try_get_by_index::<bool>(0))
        .transpose()?;
    match state {
        Some(true) => return Ok(()),
        Some(false) => drop_database(admin, name).await?,
        None => {}
    }
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let db = connect(&url_for_database(admin_url, name)).await?;
    let migrated = Migrator::up(&db, None).await;
    db.close().await.ok();
    migrated?;
    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} WITH IS_TEMPLATE true"))
        .await?;
    Ok(())
}

/// Creates a new database on the cluster of `admin_url`, empty or cloned from `template`.
pub(super) async fn create_database(
    admin_url: &str,
    template: Option<&str>,
) -> Result<Owned, TestDbError> {
    let name = format!("forge_test_{}", uuid::Uuid::new_v4().simple());
    let sql = match template {
        Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
        None => format!("CREATE DATABASE {name}"),
    };
    let admin = admin(admin_url).await?;
    let created = create_retrying(&admin, &sql).await;
    admin.close().await.ok();
    created?;
    Ok(Owned {
        admin_url: admin_url.to_owned(),
        name,
    })
}

/// Runs `CREATE DATABASE`, retrying while the template is briefly in use by another
/// session (PostgreSQL refuses to clone a database someone is connected to).
async fn create_retrying(admin: &DatabaseConnection, sql: &str) -> Result<(), TestDbError> {
    let mut attempt = 1;
    loop {
        match admin.execute_unprepared(sql).await {
            Ok(_) => return Ok(()),
            Err(e)
                if attempt < CLONE_ATTEMPTS
                    && e.to_string().contains("accessed by other users") =>
            {
                attempt += 1;
                tokio::time::sleep(CLONE_RETRY).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_url_swaps_the_user() {
        assert_eq!(
            app_url("postgres://postgres:secret@127.0.0.1:5432/forge_x?sslmode=disable"),
            "postgres://forge_test_app:forge_test_app@127.0.0.1:5432/forge_x?sslmode=disable"
        );
        assert_eq!(
            app_url("postgres://127.0.0.1/db"),
            "postgres://forge_test_app:forge_test_app@127.0.0.1/db"
        );
    }
}
