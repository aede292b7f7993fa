//! A fresh, migrated database per test, on SQLite or PostgreSQL.
//!
//! PostgreSQL tests need `FORGE_TEST_DATABASE_URL` (a superuser URL; `scripts/test.sh`
//! starts a throwaway cluster and sets it). Without it they fail: they never skip.
#![allow(dead_code)]

use forge_db::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use forge_db::{Migrator, MigratorTrait, connect};

/// A migrated database that exists only for one test.
pub struct TestDb {
    pub db: DatabaseConnection,
    /// PostgreSQL: the admin URL and the database name, to drop it in [`TestDb::finish`].
    pg: Option<(String, String)>,
}

/// The admin URL of the test PostgreSQL cluster.
pub fn pg_admin_url() -> String {
    match std::env::var("FORGE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "FORGE_TEST_DATABASE_URL is not set: PostgreSQL tests need a server. \
             Run scripts/test.sh, which starts a throwaway PostgreSQL and sets it."
        ),
    }
}

/// `admin_url` with its database name replaced by `name`.
pub fn url_for_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

impl TestDb {
    /// An in-memory SQLite database, migrated.
    pub async fn sqlite() -> Self {
        let db = connect("sqlite::memory:").await.expect("open SQLite");
        Migrator::up(&db, None).await.expect("migrate SQLite");
        Self { db, pg: None }
    }

    /// A new, empty PostgreSQL database (not migrated).
    pub async fn postgres_empty() -> Self {
        let admin_url = pg_admin_url();
        let admin = connect(&admin_url)
            .await
            .expect("connect to the test PostgreSQL");
        let name = format!("forge_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let db = connect(&url_for_database(&admin_url, &name))
            .await
            .expect("connect to the test database");
        Self {
            db,
            pg: Some((admin_url, name)),
        }
    }

    /// A new PostgreSQL database, migrated.
    pub async fn postgres() -> Self {
        let t = Self::postgres_empty().await;
        Migrator::up(&t.db, None).await.expect("migrate PostgreSQL");
        t
    }

    /// The URL of this test's database (PostgreSQL only).
    pub fn pg_url(&self) -> Option<String> {
        self.pg
            .as_ref()
            .map(|(admin, name)| url_for_database(admin, name))
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Drops the PostgreSQL database. (A failed test leaves it behind; the test cluster is
    /// thrown away as a whole.)
    pub async fn finish(self) {
        let Self { db, pg } = self;
        db.close().await.ok();
        if let Some((admin_url, name)) = pg {
            let admin = connect(&admin_url).await.expect("reconnect as admin");
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop test database");
            admin.close().await.ok();
        }
    }
}

/// A user signed up through the service; their profile id.
pub async fn signup(db: &DatabaseConnection, email: &str) -> uuid::Uuid {
    forge_db::service::profiles::create(
        db,
        forge_db::service::Actor::Service,
        forge_db::service::profiles::NewProfile::new(email),
    )
    .await
    .expect("signup")
    .id
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
