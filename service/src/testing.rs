//! Test helpers for applications built on Forge (feature `testing`).
//!
//! [`TestDb`] gives each test its own freshly migrated database and removes it when the
//! test ends, so tests run in parallel with no cleanup code:
//!
//! - by default an in-memory SQLite database;
//! - with `FORGE_TEST_DATABASE_URL=postgres://…` (a role allowed to create databases) a
//!   new PostgreSQL database cloned with `CREATE DATABASE … TEMPLATE` from a template
//!   that is migrated once per cluster (`forge_template_<hash of the migration names>`;
//!   parallel test binaries serialize its creation on an advisory lock). The database is
//!   dropped when the [`TestDb`] is dropped (or by [`TestDb::finish`]).
//!
//! The [`fixtures`] build a valid row of every aggregate through the repositories, e.g.
//! a user with a project and a live session in one line.
//!
//! ```no_run
//! use forge_service::testing::{TestDb, fixtures};
//! use forge_service::{Actor, sessions};
//!
//! # async fn a_test() -> Result<(), Box<dyn std::error::Error>> {
//! let t = TestDb::new().await?;
//! let (user, _project, session) = fixtures::user_with_project_and_session(t.db()).await?;
//! let seen = sessions::get(t.db(), Actor::User(user.id), session.id).await?;
//! assert_eq!(seen.id, session.id);
//! # Ok(()) }
//! ```
//!
//! Invariants: a [`TestDb`] never touches a database it did not create (other than the
//! shared template, which it only creates and clones); the template is only cloned once
//! it is completely migrated (it is marked `IS_TEMPLATE` last, and a half-built one left
//! by a crashed run is rebuilt). The template is named by the migrations' *names*: on a
//! long-lived cluster, drop `forge_template_*` (`ALTER DATABASE … IS_TEMPLATE false`,
//! then `DROP DATABASE`) after editing a migration in place.

pub mod fixtures;
mod postgres;

use forge_migration::{ConnectError, Migrator, MigratorTrait, connect};
use sea_orm::{DatabaseConnection, DbBackend, DbErr};

/// The environment variable naming the PostgreSQL cluster tests run against.
pub const TEST_DATABASE_URL_ENV: &str = "FORGE_TEST_DATABASE_URL";

/// The environment variable naming a transaction-mode pooler (PgBouncer) in front of that
/// cluster, any database reachable through it by name (`scripts/with-postgres.sh` with
/// `FORGE_TEST_POOLER=1` starts one).
pub const TEST_POOLER_URL_ENV: &str = "FORGE_TEST_POOLER_URL";

/// When this environment variable is `1`, [`TestDb::db`] (the application role's pool)
/// goes through the pooler of [`TEST_POOLER_URL_ENV`] in `Pooling::Transaction` mode; the
/// owner's pool stays direct, as migrations need.
pub const TEST_THROUGH_POOLER_ENV: &str = "FORGE_TEST_THROUGH_POOLER";

/// Why a [`TestDb`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TestDbError {
    /// The database server could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A statement (creating, migrating, dropping the database) failed.
    #[error("test database: {0}")]
    Db(#[from] DbErr),
    /// [`TEST_THROUGH_POOLER_ENV`] is `1` but [`TEST_POOLER_URL_ENV`] names no pooler.
    #[error(
        "FORGE_TEST_THROUGH_POOLER is 1 but FORGE_TEST_POOLER_URL is not set \
             (scripts/with-postgres.sh starts a pooler with FORGE_TEST_POOLER=1)"
    )]
    NoPooler,
    /// A PostgreSQL test database was asked for with a URL that is not PostgreSQL's.
    #[error("not a PostgreSQL URL (postgres://…): {url}")]
    NotPostgres {
        /// The URL, password removed.
        url: String,
    },
}

/// A migrated database that exists only for one test; dropped with it.
#[derive(Debug)]
pub struct TestDb {
    db: DatabaseConnection,
    owner: DatabaseConnection,
    /// PostgreSQL: the admin URL and the name of the database to drop at the end.
    pg: Option<postgres::Owned>,
}

impl TestDb {
    /// A fresh migrated database: on the PostgreSQL cluster [`TEST_DATABASE_URL_ENV`]
    /// names when it is set (see [`TestDb::postgres`]), otherwise in-memory SQLite.
    ///
    /// # Errors
    /// [`TestDbError`] when the database cannot be created or migrated;
    /// [`TestDbError::NotPostgres`] when the variable is set to a non-PostgreSQL URL.
    pub async fn new() -> Result<Self, TestDbError> {
        match std::env::var(TEST_DATABASE_URL_ENV) {
            Ok(url) if !url.is_empty() => Self::postgres(&url).await,
            _ => Self::sqlite().await,
        }
    }

    /// A fresh, migrated in-memory SQLite database.
    ///
    /// # Errors
    /// [`TestDbError`] when SQLite cannot be opened or migrated.
    pub async fn sqlite() -> Result<Self, TestDbError> {
        let db = connect("sqlite::memory:").await?;
        Migrator::up(&db, None).await?;
        Ok(Self {
            owner: db.clone(),
            db,
            pg: None,
        })
    }

    /// A fresh, migrated PostgreSQL database on the cluster of `admin_url` (a role
    /// allowed to create databases), cloned from the migrated template.
    ///
    /// # Errors
    /// [`TestDbError`] when the cluster cannot be reached or the database not created.
    pub async fn postgres(admin_url: &str) -> Result<Self, TestDbError> {
        let template = postgres::ensure_template(admin_url).await?;
        Self::postgres_from(admin_url, Some(&template)).await
    }

    /// A fresh, empty (not migrated) PostgreSQL database on the cluster of `admin_url`,
    /// e.g. to test the migrations themselves.
    ///
    /// # Errors
    /// [`TestDbError`] when the cluster cannot be reached or the database not created.
    pub async fn postgres_empty(admin_url: &str) -> Result<Self, TestDbError> {
        Self::postgres_from(admin_url, None).await
    }

    async fn postgres_from(admin_url: &str, template: Option<&str>) -> Result<Self, TestDbError> {
        let owned = postgres::create_database(admin_url, template).await?;
        let url = owned.url();
        let pools = async {
            let owner = connect(&url).await?;
            // A migrated database is used as the application role; an empty one (for
            // testing the migrations) only as its owner.
            let db = match template {
                Some(_) => connect(&postgres::app_url(&postgres::through_pooler(&url)?)).await?,
                None => owner.clone(),
            };
            Ok::<_, TestDbError>((db, owner))
        };
        match pools.await {
            Ok((db, owner)) => Ok(Self {
                db,
                owner,
                pg: Some(owned),
            }),
            Err(e) => {
                owned.drop_now().await.ok();
                Err(e)
            }
        }
    }

    /// The connection pool of this test's database, for Forge's calls. On a migrated
    /// PostgreSQL database it connects as an application role that owns nothing and
    /// holds no privilege of its own (a member of `authenticated` and `service_role`,
    /// the two-role setup of the README): Forge's calls work, SQL sent outside a Forge
    /// context is refused.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// A pool connected as the database's owner (the role that migrated it), for a test's
    /// own setup and inspection in raw SQL. On SQLite the same pool as [`TestDb::db`].
    pub fn owner(&self) -> &DatabaseConnection {
        &self.owner
    }

    /// The owner's URL of this test's database (PostgreSQL only), to open more pools.
    pub fn pg_url(&self) -> Option<String> {
        self.pg.as_ref().map(postgres::Owned::url)
    }

    /// The application role's URL of this test's database (PostgreSQL only), to open
    /// more pools the way [`TestDb::db`] is opened (through the pooler, with
    /// `pgbouncer=true`, under [`TEST_THROUGH_POOLER_ENV`]).
    pub fn app_url(&self) -> Option<String> {
        self.pg
            .as_ref()
            .and_then(|owned| postgres::through_pooler(&owned.url()).ok())
            .map(|url| postgres::app_url(&url))
    }

    /// Which backend this database runs on.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Closes the pool and drops the database now, waiting for it (dropping the
    /// [`TestDb`] does the same from a helper thread).
    ///
    /// # Errors
    /// [`TestDbError::Db`] when the PostgreSQL database could not be dropped.
    pub async fn finish(mut self) -> Result<(), TestDbError> {
        self.db.clone().close().await.ok();
        self.owner.clone().close().await.ok();
        match self.pg.take() {
            Some(owned) => owned.drop_now().await,
            None => Ok(()),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(owned) = self.pg.take() {
            owned.drop_blocking();
        }
    }
}

/// `admin_url` with its database name replaced by `name` (query string kept).
pub use forge_migration::verify::url_for_database;
