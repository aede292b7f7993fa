//! A fresh, migrated database per test, on SQLite or PostgreSQL: a thin wrapper over
//! [`forge_db::service::testing::TestDb`], the helper applications use too.
//!
//! PostgreSQL tests need `FORGE_TEST_DATABASE_URL` (a superuser URL; `scripts/test.sh`
//! starts a throwaway cluster and sets it). Without it they fail: they never skip.
#![allow(dead_code)]

use forge_db::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use forge_db::service::testing::{self, TEST_DATABASE_URL_ENV};

/// A migrated database that exists only for one test (dropped with it).
pub struct TestDb {
    /// The pool Forge's calls use: on PostgreSQL the application role (two-role setup),
    /// which may do nothing outside a Forge context.
    pub db: DatabaseConnection,
    /// A pool as the database's owner, for raw setup and inspection.
    pub owner: DatabaseConnection,
    inner: testing::TestDb,
}

/// The admin URL of the test PostgreSQL cluster; panics when it is not set.
pub fn pg_admin_url() -> String {
    match std::env::var(TEST_DATABASE_URL_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{TEST_DATABASE_URL_ENV} is not set: PostgreSQL tests need a server. \
             Run scripts/test.sh, which starts a throwaway PostgreSQL and sets it."
        ),
    }
}

/// `admin_url` with its database name replaced by `name`.
pub fn url_for_database(admin_url: &str, name: &str) -> String {
    testing::url_for_database(admin_url, name)
}

impl TestDb {
    fn wrap(inner: Result<testing::TestDb, testing::TestDbError>) -> Self {
        let inner = inner.unwrap_or_else(|e| panic!("set up the test database: {e}"));

        Self {
            db: inner.db().clone(),
            owner: inner.owner().clone(),
            inner,
        }
    }

    /// An in-memory SQLite database, migrated.
    pub async fn sqlite() -> Self {
        Self::wrap(testing::TestDb::sqlite().await)
    }

    /// A new, empty PostgreSQL database (not migrated).
    pub async fn postgres_empty() -> Self {
        Self::wrap(testing::TestDb::postgres_empty(&pg_admin_url()).await)
    }

    /// A new PostgreSQL database, migrated (cloned from the migrated template).
    pub async fn postgres() -> Self {
        let t = Self::wrap(testing::TestDb::postgres(&pg_admin_url()).await);
        // A run meant to go through the pooler really does (scripts/test.sh).
        if std::env::var(testing::TEST_THROUGH_POOLER_ENV).as_deref() == Ok("1") {
            assert!(
                forge_db::migration::is_pooled(&t.db),
                "FORGE_TEST_THROUGH_POOLER=1 but the test pool is direct"
            );
        }
        t
    }

    /// The URL of this test's database, as its owner (PostgreSQL only).
    pub fn pg_url(&self) -> Option<String> {
        self.inner.pg_url()
    }

    /// The URL of this test's database as the application role that [`TestDb::db`]
    /// connects as (PostgreSQL only): more pools for Forge's calls.
    pub fn app_url(&self) -> Option<String> {
        self.inner.app_url()
    }

    pub fn backend(&self) -> DbBackend {
        self.inner.backend()
    }

    /// Closes the pool and drops the database now (dropping the `TestDb` does the same).
    pub async fn finish(self) {
        let Self { db, owner, inner } = self;
        db.close().await.ok();
        owner.close().await.ok();
        inner.finish().await.expect("drop the test database");
    }
}

/// A user signed up through the service; their profile id.
pub async fn signup(db: &DatabaseConnection, email: &str) -> forge_db::entity::ids::ProfileId {
    testing::fixtures::user(db, email).await.expect("signup").id
}

/// Runs `sql` and returns the error, panicking if it succeeded.
pub async fn expect_sql_error<C: ConnectionTrait>(db: &C, sql: &str) -> String {
    match db.execute_unprepared(sql).await {
        Ok(_) => panic!("expected the database to refuse: {sql}"),
        Err(e) => e.to_string(),
    }
}

/// One column of one row as a string (`NULL` → None).
pub async fn query_string<C: ConnectionTrait>(db: &C, sql: &str) -> Option<String> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")?;
    row.try_get_by_index::<Option<String>>(0)
        .expect("text column")
}

/// One integer of one row.
pub async fn query_i64<C: ConnectionTrait>(db: &C, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("integer column")
}

/// Defines `mod $name { sqlite, postgres }`, running `$body(&TestDb)` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident => $body:ident;)*) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let t = $crate::common::TestDb::sqlite().await;
                super::$body(&t).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn postgres() {
                let t = $crate::common::TestDb::postgres().await;
                super::$body(&t).await;
                t.finish().await;
            }
        }
    )*};
}

/// Runs raw SeaORM work on Forge's pool in the service's context. On PostgreSQL the
/// test pool connects as the application role of the two-role setup, which may do nothing
/// outside a Forge context, exactly like a production service's pool.
pub async fn as_service<T, F>(db: &DatabaseConnection, f: F) -> T
where
    T: Send,
    F: for<'t> FnOnce(
            &'t forge_db::sea_orm::DatabaseTransaction,
        ) -> forge_db::service::ScopedFuture<'t, T>
        + Send,
{
    use forge_db::service::{Access, Actor, run_as};
    run_as(db, Actor::Service, Access::Write, f)
        .await
        .expect("raw work in the service's context")
}

/// What every Supabase project has before any migration of Forge's runs: the three API
/// roles (created where missing; roles are cluster-wide and other tests create them
/// concurrently) and the platform's default privileges — `ALL` on every new table,
/// function and sequence in `public` for `anon`, `authenticated` and `service_role`.
pub const SUPABASE_PLATFORM: &str = r#"
-- Roles are cluster-wide and other databases are migrated concurrently: tolerate a
-- concurrent creator (as migration/src/sql/rls_up.sql does).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    BEGIN
      CREATE ROLE anon NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    BEGIN
      CREATE ROLE authenticated NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    BEGIN
      CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
"#;

/// The stored items of `batch`, by position, read in the service's context (the test pool
/// may do nothing outside one on PostgreSQL).
pub async fn stored_items(
    db: &DatabaseConnection,
    batch: forge_db::entity::ids::BatchId,
) -> Vec<forge_db::entity::batch_items::Model> {
    use forge_db::entity::batch_items;
    use forge_db::sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    as_service(db, move |txn| {
        Box::pin(async move {
            Ok(batch_items::Entity::find()
                .filter(batch_items::Column::BatchJobId.eq(batch))
                .order_by_asc(batch_items::Column::Position)
                .all(txn)
                .await?)
        })
    })
    .await
}

/// Runs `sql` on `owner`'s database as `authenticated` with `user`'s JWT claims, in a
/// transaction that is rolled back: the database's error, or the rows it affected.
pub async fn as_user(
    owner: &DatabaseConnection,
    user: forge_db::entity::ids::ProfileId,
    sql: &str,
) -> Result<u64, String> {
    use forge_db::sea_orm::TransactionTrait;
    let txn = owner.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "SET LOCAL ROLE authenticated; \
         SELECT set_config('request.jwt.claims', '{{\"sub\":\"{user}\",\"role\":\"authenticated\"}}', true), \
                set_config('request.jwt.claim.sub', '{user}', true);"
    ))
    .await
    .unwrap();
    let out = txn
        .execute_unprepared(sql)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| e.to_string());
    txn.rollback().await.unwrap();
    out
}
