//! Production topology (PostgreSQL): a transaction-mode pooler (a real PgBouncer) and a
//! streaming replica, both started by `scripts/with-postgres.sh` (`FORGE_TEST_POOLER=1`,
//! `FORGE_TEST_REPLICA=1`; `scripts/test.sh` sets both). These tests fail, never skip,
//! when either is missing.
//!
//! The rest of the service suite also runs through the pooler: `scripts/test.sh` runs the
//! isolation, queue, session-limit, credits and event-tail suites again with
//! `FORGE_TEST_THROUGH_POOLER=1`.

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use forge_db::MigratorTrait;
use forge_db::entity::ids::ProfileId;
use forge_db::entity::ids::ProjectId;
use forge_db::entity::projects as project_rows;
use forge_db::entity::projects::ProjectStatus;
use forge_db::migration::{MigrateError, Pooling, connect, connect_with, is_pooled, migrate_with};
use forge_db::sea_orm::sqlx::{self, Connection, Row};
use forge_db::sea_orm::{ActiveModelTrait, EntityTrait, Set};
use forge_db::sea_orm::{DatabaseConnection, DbBackend};
use forge_db::service::replicas::{Replicated, ServedBy, WalToken};
use forge_db::service::testing::TEST_POOLER_URL_ENV;
use forge_db::service::{Access, Actor, ForgeError, credits, projects, run_as};
use session_support::{owner, project, session};

mod session_support;

/// The pooler's URL; panics when the test run started none.
fn pooler_url() -> String {
    std::env::var(TEST_POOLER_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{TEST_POOLER_URL_ENV} is not set: run scripts/test.sh, or \
                 FORGE_TEST_POOLER=1 scripts/with-postgres.sh cargo test --test topology"
            )
        })
}

/// The replica's URL; panics when the test run started none.
fn replica_url() -> String {
    std::env::var("FORGE_TEST_REPLICA_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "FORGE_TEST_REPLICA_URL is not set: run scripts/test.sh, or \
                 FORGE_TEST_REPLICA=1 scripts/with-postgres.sh cargo test --test topology"
            )
        })
}

/// The name of `t`'s database.
fn database_name(t: &TestDb) -> String {
    let url = t.pg_url().expect("PostgreSQL");
    let path = url.rsplit_once('/').expect("a database in the URL").1;
    path.split('?').next().unwrap_or(path).to_owned()
}

/// `t`'s database as the application role, on the server `server_url` points at.
fn app_url_on(t: &TestDb, server_url: &str) -> String {
    let host = server_url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@').map(|(_, h)| h).or(Some(rest)))
        .and_then(|rest| rest.split('/').next())
        .expect("host:port");
    format!(
        "postgres://forge_test_app:forge_test_app@{host}/{}",
        database_name(t)
    )
}

/// The pooler's application-role pool of `t`'s database, in pooler mode.
async fn pooled(t: &TestDb) -> DatabaseConnection {
    let db = connect(&format!("{}?pgbouncer=true", app_url_on(t, &pooler_url())))
        .await
        .expect("connect through the pooler");
    assert!(is_pooled(&db));
    db
}

/// Every server connection the pooler holds for `t`'s database and the application role,
/// each asked (inside a transaction, so each is a different one) how many prepared
/// statements it keeps. Simple protocol only: this client prepares nothing itself.
async fn prepared_statements_per_server_connection(t: &TestDb) -> Vec<(i32, i64)> {
    let servers = common::query_i64(
        &t.owner,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE usename = 'forge_test_app' AND datname = current_database() \
           AND backend_type = 'client backend'",
    )
    .await;
    let url = app_url_on(t, &pooler_url());
    let mut held = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..servers.max(1) {
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("raw client");
        sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
        let row =
            sqlx::raw_sql("SELECT pg_backend_pid(), (SELECT count(*) FROM pg_prepared_statements)")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        seen.push((row.get::<i32, _>(0), row.get::<i64, _>(1)));
        held.push(conn);
    }
    for mut conn in held {
        sqlx::raw_sql("COMMIT").execute(&mut conn).await.ok();
        conn.close().await.ok();
    }
    seen
}

/// Through PgBouncer in transaction mode, with 16 pools at once: users' reads and writes,
/// multi-statement transactions and refused ones all work, users stay isolated, and no
/// server connection is left holding a prepared statement.
#[tokio::test]
async fn a_pooled_pool_works_and_leaves_nothing_prepared() {
    let t = TestDb::postgres().await;
    let setup = pooled(&t).await;
    let a = owner(&setup, "a@example.com", 50).await;
    let b = owner(&setup, "b@example.com", 50).await;
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let db = pooled(&t).await;
        tasks.push(tokio::spawn(async move {
            let mut made: Vec<ProjectId> = Vec::new();
            for i in 0..10 {
                let id = project(&db, a, ProjectStatus::Active).await;
                made.push(id);
                // A read by key, a list page, a multi-statement write (a session start
                // with its usage and activity), and a refused transaction.
                assert_eq!(projects::get(&db, Actor::User(a), id).await.unwrap().id, id);
                let err = projects::get(&db, Actor::User(b), id).await.unwrap_err();
                assert!(matches!(err, ForgeError::NotFound { .. }), "{err:?}");
                if i == 0 {
                    session(&db, a, id).await;
                }
                // Transactions that fail: one refused by the closure after a statement,
                // one whose statement the database refuses (the transaction is aborted
                // when Forge cleans up); both leave nothing, prepared or written.
                let refused = run_as(&db, Actor::Service, Access::Write, move |txn| {
                    Box::pin(async move {
                        project_rows::Entity::find_by_id(id).one(txn).await?;
                        Err::<(), _>(ForgeError::invalid("test", "refused after a statement"))
                    })
                })
                .await;
                assert!(matches!(refused, Err(ForgeError::Validation { .. })));
                let orphan = run_as(&db, Actor::Service, Access::Write, move |txn| {
                    Box::pin(async move {
                        project_rows::ActiveModel {
                            user_id: Set(ProfileId::new()),
                            name: Set("orphan".into()),
                            ..Default::default()
                        }
                        .insert(txn)
                        .await?;
                        Ok(())
                    })
                })
                .await;
                assert!(orphan.is_err(), "no such owner");
                let spend = credits::spend(
                    &db,
                    Actor::Service,
                    credits::CreditChange::new(a, 1_000_000).idempotent(format!("w{worker}-{i}")),
                )
                .await
                .unwrap_err();
                assert!(
                    matches!(spend, ForgeError::InsufficientCredits { .. }),
                    "{spend:?}"
                );
            }
            db.close().await.ok();
            made.len()
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("worker");
    }
    assert_eq!(total, 160);
    let counted = common::query_i64(&t.owner, "SELECT count(*) FROM projects").await;
    assert_eq!(counted, 160);
    setup.close().await.ok();

    let servers = prepared_statements_per_server_connection(&t).await;
    assert!(!servers.is_empty());
    assert!(
        servers.iter().all(|&(_, prepared)| prepared == 0),
        "server connections keep prepared statements: {servers:?}"
    );
    t.finish().await;
}

/// The same calls on a pool opened without pooler mode leave statements prepared on the
/// pooler's server connections, which the check above would catch; and sqlx's default
/// startup options are refused by the pooler, as real poolers do.
#[tokio::test]
async fn without_pooler_mode_the_pooler_refuses_or_statements_stay() {
    let t = TestDb::postgres().await;
    let url = app_url_on(&t, &pooler_url());
    // Forge's direct mode sends `idle_in_transaction_session_timeout` as a startup option.
    let refused = connect_with(&url, Pooling::Direct).await.unwrap_err();
    assert!(
        refused.to_string().contains("options"),
        "the pooler names the refused startup parameter: {refused}"
    );
    // A plain SeaORM pool (statement cache on) through the pooler, in transactions: the
    // well-known failure (a statement name another client left on the server connection,
    // or a cached one missing there), or statements left behind for the next client.
    let plain = forge_db::sea_orm::Database::connect(&url).await.unwrap();
    let mut broke = Vec::new();
    for i in 0..20 {
        let made = forge_db::service::profiles::create(
            &plain,
            Actor::Service,
            forge_db::service::profiles::NewProfile::new(format!("plain{i}@example.com")),
        )
        .await;
        if let Err(err) = made {
            broke.push(err.to_string());
        }
    }
    plain.close().await.ok();
    let servers = prepared_statements_per_server_connection(&t).await;
    let left = servers.iter().any(|&(_, prepared)| prepared > 0);
    assert!(
        left || broke.iter().any(|e| e.contains("prepared statement")),
        "a cached pool through the pooler either breaks or leaves statements: {broke:?} {servers:?}"
    );
    t.finish().await;
}

/// Migrations refuse a pooled pool (their lock is session-scoped) unless given a direct
/// URL, which they then run over.
#[tokio::test]
async fn migrations_run_over_the_direct_url_not_the_pooler() {
    let t = TestDb::postgres_empty().await;
    let owner_through_pooler = format!(
        "{}?pgbouncer=true",
        common::url_for_database(&pooler_url(), &database_name(&t))
    );
    let db = connect(&owner_through_pooler).await.unwrap();
    assert!(is_pooled(&db));
    for direct in [None, Some(owner_through_pooler.as_str())] {
        let err = migrate_with(&db, direct).await.unwrap_err();
        assert!(matches!(err, MigrateError::ThroughPooler), "{err:?}");
        assert!(err.to_string().contains("DIRECT_URL"), "{err}");
    }
    let err = migrate_with(&db, Some("postgres://nobody@127.0.0.1:1/none"))
        .await
        .unwrap_err();
    assert!(matches!(err, MigrateError::DirectUrl(_)), "{err:?}");
    assert_eq!(
        common::query_i64(
            &t.owner,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        0,
        "nothing was migrated"
    );

    let applied = migrate_with(&db, Some(&t.pg_url().unwrap())).await.unwrap();
    assert_eq!(applied.len(), forge_db::Migrator::migrations().len());
    // The pooled pool works on the migrated database.
    let a = owner(&db, "after@example.com", 5).await;
    assert_eq!(
        forge_db::service::profiles::get(&db, Actor::Service, a)
            .await
            .unwrap()
            .id,
        a
    );
    db.close().await.ok();
    t.finish().await;
}

/// A replica pool for `t`'s database, as the application role: the database was created
/// on the primary a moment ago, so wait for the replica to have it.
async fn replica_pool(t: &TestDb) -> DatabaseConnection {
    let url = app_url_on(t, &replica_url());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connect(&url).await {
            Ok(db) => return db,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("the replica never had the test database: {err}"),
        }
    }
}

async fn in_recovery(db: &DatabaseConnection) -> bool {
    let row = sqlx::raw_sql("SELECT pg_is_in_recovery()")
        .fetch_one(db.get_postgres_connection_pool())
        .await
        .unwrap();
    row.get(0)
}

/// Write on the primary, take the token, read through `at_least`: every read sees its
/// write, whether the replica served it (after waiting for replay) or the primary did.
#[tokio::test]
async fn a_write_is_read_back_with_its_token() {
    let t = TestDb::postgres().await;
    let replicated = Replicated::new(t.db.clone(), vec![replica_pool(&t).await]);
    assert!(
        in_recovery(&replicated.replicas()[0]).await,
        "a real standby"
    );
    let a = owner(replicated.primary(), "rw@example.com", 5).await;
    let (mut by_replica, mut waits) = (0, Vec::new());
    for i in 0..100 {
        let id = project(replicated.primary(), a, ProjectStatus::Active).await;
        let token = replicated.token().await.unwrap();
        let routed = replicated.at_least(token).await.unwrap();
        let seen = projects::get(routed.db, Actor::User(a), id).await;
        assert_eq!(seen.map(|p| p.id).ok(), Some(id), "read {i} sees its write");
        if let ServedBy::Replica(0) = routed.served_by {
            by_replica += 1;
            waits.push(routed.waited);
        }
    }
    // The replica replays within the wait almost always on a local cluster.
    assert!(
        by_replica >= 50,
        "only {by_replica} of 100 reads went to the replica"
    );
    waits.sort();
    eprintln!(
        "replica served {by_replica}/100; wait for replay p50 {:?}, max {:?}",
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
    t.finish().await;
}

/// Lag-tolerant reads go to the replica; a position the replica has not reached within the
/// wait goes to the primary; the replica refuses writes and nothing changes.
#[tokio::test]
async fn lagging_reads_leave_the_primary_and_writes_cannot() {
    let t = TestDb::postgres().await;
    let replicated = Replicated::new(t.db.clone(), vec![replica_pool(&t).await])
        .with_max_wait(Duration::from_millis(20));
    assert!(in_recovery(replicated.lagging()).await);
    assert!(!in_recovery(replicated.primary()).await);

    let far = WalToken::from(u64::MAX);
    let routed = replicated.at_least(far).await.unwrap();
    assert_eq!(routed.served_by, ServedBy::Primary);
    assert!(routed.waited >= Duration::from_millis(20));
    assert_eq!(routed.db.get_database_backend(), DbBackend::Postgres);

    let a = owner(replicated.primary(), "lag@example.com", 5).await;
    // Once the replica has the profile, a write there is refused as read-only.
    let token = replicated.token().await.unwrap();
    let patient = Replicated::new(t.db.clone(), vec![replicated.replicas()[0].clone()])
        .with_max_wait(Duration::from_secs(30));
    let routed = patient.at_least(token).await.unwrap();
    assert_eq!(routed.served_by, ServedBy::Replica(0));
    let before = common::query_i64(&t.owner, "SELECT count(*) FROM projects").await;
    let err = projects::create(
        routed.db,
        Actor::User(a),
        projects::NewProject::new(a, "On a replica"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "database", "{err:?}");
    assert!(err.to_string().contains("read-only"), "{err}");
    let after = common::query_i64(&t.owner, "SELECT count(*) FROM projects").await;
    assert_eq!(before, after);
    t.finish().await;
}
