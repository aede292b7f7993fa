//! One migration at a time: several `forge-migration up` processes, or several
//! `forge_migration::migrate` calls, started together on one new database all succeed, and
//! the database they leave is exactly Forge's schema.
//!
//! PostgreSQL tests need `FORGE_TEST_DATABASE_URL` (a superuser URL; run them with
//! `scripts/with-postgres.sh cargo test -p forge-migration --test concurrency`). Without
//! it they fail: they never skip.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use forge_migration::sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use forge_migration::verify::url_for_database;
use forge_migration::{
    MIGRATION_LOCK_KEY, MigrationLock, Migrator, MigratorTrait, connect, migrate, verify,
};

/// Databases migrated per test, each one new.
const ROUNDS: usize = 5;
/// Processes (or tasks) racing on each database.
const RACERS: usize = 4;

fn total() -> usize {
    Migrator::migrations().len()
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{tag}_{}_{nanos}", std::process::id())
}

fn server() -> String {
    match std::env::var("FORGE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "FORGE_TEST_DATABASE_URL is not set: PostgreSQL tests need a server. Run \
             scripts/with-postgres.sh cargo test -p forge-migration --test concurrency"
        ),
    }
}

/// Runs one statement on the server's maintenance database.
async fn on_server(sql: &str) {
    let admin = connect(&server()).await.expect("connect to the server");
    admin.execute_unprepared(sql).await.expect(sql);
    admin.close().await.ok();
}

/// A new, empty PostgreSQL database: its name and URL.
async fn new_postgres(tag: &str) -> (String, String) {
    let name = unique(tag);
    on_server(&format!("CREATE DATABASE {name}")).await;
    let url = url_for_database(&server(), &name);
    (name, url)
}

async fn drop_postgres(name: &str) {
    on_server(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// A new directory with the URL of a SQLite file (not created yet) in it.
fn new_sqlite(tag: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(unique(tag));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/forge.db?mode=rwc", dir.display());
    (dir, url)
}

/// `forge-migration ARGS` against `url`, started and not waited for.
fn start(url: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_forge-migration"))
        .args(args)
        .env("DATABASE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start forge-migration")
}

async fn finish(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait for forge-migration"))
        .await
        .unwrap()
}

fn shown(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// N of the summary line "forge-migration: N applied, M rolled back; …".
fn applied_by(out: &Output) -> usize {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("forge-migration: "))
        .find(|l| l.contains(" applied, "))
        .unwrap_or_else(|| panic!("no summary line\n{}", shown(out)));
    line.split(' ').next().unwrap().parse().unwrap()
}

/// `RACERS` `forge-migration up` processes started together on `url`: every one exits 0,
/// together they apply each migration once, and `verify` passes afterwards. Returns how
/// many said they waited for another one.
async fn race_processes(url: &str, round: usize) -> usize {
    let children: Vec<Child> = (0..RACERS).map(|_| start(url, &["up"])).collect();
    let mut outputs = Vec::new();
    for child in children {
        outputs.push(finish(child).await);
    }
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}, process {i}\n{}",
            shown(out)
        );
    }
    let applied: usize = outputs.iter().map(applied_by).sum();
    assert_eq!(
        applied,
        total(),
        "round {round}: each migration applied once"
    );
    let verified = finish(start(url, &["verify"])).await;
    assert_eq!(
        verified.status.code(),
        Some(0),
        "round {round}\n{}",
        shown(&verified)
    );
    outputs
        .iter()
        .filter(|out| String::from_utf8_lossy(&out.stdout).contains("waited for another"))
        .count()
}

/// `RACERS` tasks, each with a pool of its own, calling `migrate` together on `url`.
async fn race_tasks(url: &str, round: usize) {
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let url = url.to_owned();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                // Every task reaches the barrier, also one whose connect failed, so a
                // failure is reported instead of leaving the others waiting forever.
                let db = connect(&url).await;
                barrier.wait().await;
                let db = db.map_err(|e| format!("connect: {e}"))?;
                let result = tokio::time::timeout(Duration::from_secs(120), migrate(&db)).await;
                db.close().await.ok();
                match result {
                    Ok(migrated) => migrated.map_err(|e| e.to_string()),
                    Err(_) => Err("migrate did not finish within 120 s".to_owned()),
                }
            })
        })
        .collect();
    let mut applied = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(names) => applied += names.len(),
            Err(err) => panic!("round {round}, task {i}: {err}"),
        }
    }
    assert_eq!(
        applied,
        total(),
        "round {round}: each migration applied once"
    );
    let report = verify(url).await.expect("verify");
    assert!(
        report.passes(false),
        "round {round}: {:?}",
        report
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_up_processes_started_together_on_a_new_postgres_database_all_succeed() {
    let mut waited = 0;
    for round in 1..=ROUNDS {
        let (name, url) = new_postgres("forge_race_up").await;
        waited += race_processes(&url, round).await;
        drop_postgres(&name).await;
    }
    // The processes really ran at the same time: some found the lock taken.
    assert!(waited > 0, "no process ever waited for another");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_tasks_calling_migrate_together_on_a_new_postgres_database_all_succeed() {
    for round in 1..=ROUNDS {
        let (name, url) = new_postgres("forge_race_migrate").await;
        race_tasks(&url, round).await;
        drop_postgres(&name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_up_processes_started_together_on_a_new_sqlite_file_all_succeed() {
    for round in 1..=ROUNDS {
        let (dir, url) = new_sqlite("forge-race-up");
        // SQLite's busy handler hides short waits, so there is no count to check here.
        race_processes(&url, round).await;
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_tasks_calling_migrate_together_on_a_new_sqlite_file_all_succeed() {
    for round in 1..=ROUNDS {
        let (dir, url) = new_sqlite("forge-race-migrate");
        race_tasks(&url, round).await;
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// A pool of one connection: `migrate` must not wait for a second one.
async fn single_connection_pool(url: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    Database::connect(options).await.expect("connect")
}

async fn migrate_over_one_connection(url: &str) {
    let db = single_connection_pool(url).await;
    let first = tokio::time::timeout(Duration::from_secs(60), migrate(&db))
        .await
        .expect("migrate over a one-connection pool finished")
        .expect("migrate");
    assert_eq!(first.len(), total());
    let again = migrate(&db).await.expect("migrate again");
    assert!(again.is_empty(), "nothing left to apply: {again:?}");
    db.close().await.ok();
}

#[tokio::test]
async fn migrate_over_a_pool_of_one_connection_does_not_deadlock_on_postgres() {
    let (name, url) = new_postgres("forge_pool_of_one").await;
    migrate_over_one_connection(&url).await;
    drop_postgres(&name).await;
}

#[tokio::test]
async fn migrate_over_a_pool_of_one_connection_does_not_deadlock_on_sqlite() {
    let (dir, url) = new_sqlite("forge-pool-of-one");
    migrate_over_one_connection(&url).await;
    std::fs::remove_dir_all(&dir).ok();
}

/// While the lock is held, `forge-migration up` waits; once `let_go` runs it finishes and
/// applies everything (and with `says_so`, says it waited).
async fn up_waits_for_the_lock<F: std::future::Future<Output = ()>>(
    url: &str,
    let_go: F,
    says_so: bool,
) {
    let mut child = start(url, &["up"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "`up` must wait while the lock is held"
    );
    let_go.await;
    let out = tokio::time::timeout(Duration::from_secs(60), finish(child))
        .await
        .expect("`up` finishes once the lock is free");
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    assert_eq!(applied_by(&out), total(), "{}", shown(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.contains("waited for another migration"),
        says_so,
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_waits_while_another_session_holds_the_documented_key_and_goes_on_when_it_dies() {
    let (name, url) = new_postgres("forge_lock_key").await;
    // Any session holding the documented key blocks Forge's migrations; when the session
    // ends (a killed process), the lock goes with it.
    let holder = single_connection_pool(&url).await;
    holder
        .execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .await
        .unwrap();
    // The wait (1.5 s) outlasts the URL's statement and lock timeouts (1 s): they must not
    // cut it short.
    let with_timeouts =
        format!("{url}?options=-c%20statement_timeout%3D1000%20-c%20lock_timeout%3D1000");
    up_waits_for_the_lock(
        &with_timeouts,
        async move {
            holder.close().await.unwrap();
        },
        true,
    )
    .await;
    drop_postgres(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_migration_lock_is_released_on_postgres() {
    let (name, url) = new_postgres("forge_lock_drop").await;
    let db = connect(&url).await.unwrap();
    let lock = MigrationLock::acquire(&db).await.unwrap();
    assert!(!lock.waited());
    up_waits_for_the_lock(&url, async move { drop(lock) }, true).await;
    db.close().await.ok();
    drop_postgres(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_waits_for_a_migration_in_progress_on_sqlite() {
    let (dir, url) = new_sqlite("forge-lock-wait");
    let db = connect(&url).await.unwrap();
    let lock = MigrationLock::acquire(&db).await.unwrap();
    // Released within SQLite's busy timeout: the wait happens inside SQLite, unreported.
    up_waits_for_the_lock(&url, async move { lock.release().await.unwrap() }, false).await;
    db.close().await.ok();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_failed_sqlite_run_leaves_the_file_as_it_was() {
    let (dir, url) = new_sqlite("forge-lock-abort");
    let db = connect(&url).await.unwrap();
    let lock = MigrationLock::acquire(&db).await.unwrap();
    Migrator::up(lock.connection(), None).await.unwrap();
    lock.abort().await.unwrap();
    let pending = Migrator::get_pending_migrations_read_only(&db)
        .await
        .unwrap();
    assert_eq!(pending.len(), total(), "the aborted run kept nothing");
    assert_eq!(migrate(&db).await.unwrap().len(), total());
    db.close().await.ok();
    std::fs::remove_dir_all(&dir).ok();
}
