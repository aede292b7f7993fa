//! `forge-migration seed` and `forge-migration schema-doc` as a developer runs them.
//!
//! Seeding runs on SQLite (a temporary file) and on PostgreSQL (a database of its own per
//! test). PostgreSQL tests need `FORGE_TEST_DATABASE_URL` (a superuser URL; run them with
//! `scripts/with-postgres.sh cargo test -p forge-migration --test seed_and_docs`). Without
//! it they fail: they never skip.

use std::path::PathBuf;
use std::process::{Command, Output};

use forge_migration::schema_doc::{self, SCHEMA_DOC_COMMAND, SCHEMA_DOC_PATH};
use forge_migration::sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use forge_migration::verify::url_for_database;
use forge_migration::{Migrator, MigratorTrait, TABLES, connect};

/// A scratch database for one test: a SQLite file in its own directory, or a PostgreSQL
/// database of its own, created empty (not migrated).
struct Scratch {
    db: DatabaseConnection,
    url: String,
    /// SQLite: the directory to remove. PostgreSQL: the database to drop.
    dir: Option<PathBuf>,
    database: Option<String>,
}

/// A name no other test (or test run) uses.
fn fresh_name(prefix: &str) -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{stamp}", std::process::id())
}

/// The PostgreSQL server's superuser URL; PostgreSQL tests fail without it.
fn server() -> String {
    std::env::var("FORGE_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect(
            "FORGE_TEST_DATABASE_URL must point at a PostgreSQL server: run \
             scripts/with-postgres.sh cargo test -p forge-migration --test seed_and_docs",
        )
}

/// Runs one statement on the server's maintenance database.
async fn on_server(sql: String) {
    let conn = connect(&server()).await.expect("connect to the server");
    conn.execute_unprepared(&sql)
        .await
        .expect("server statement");
    conn.close().await.ok();
}

impl Scratch {
    async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(fresh_name("forge-seed"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/dev.db?mode=rwc", dir.display());
        Self::open(url, Some(dir), None).await
    }

    async fn postgres() -> Self {
        let name = fresh_name("forge_seed");
        on_server(format!("CREATE DATABASE {name}")).await;
        let url = url_for_database(&server(), &name);
        Self::open(url, None, Some(name)).await
    }

    async fn open(url: String, dir: Option<PathBuf>, database: Option<String>) -> Self {
        let db = connect(&url)
            .await
            .expect("connect to the scratch database");
        Self {
            db,
            url,
            dir,
            database,
        }
    }

    async fn migrate(&self) {
        Migrator::up(&self.db, None).await.expect("migrate");
    }

    /// `forge-migration ARGS` with `DATABASE_URL` set to this database.
    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-migration"));
        cmd.args(args).env("DATABASE_URL", &self.url);
        tokio::task::spawn_blocking(move || cmd.output().expect("run forge-migration"))
            .await
            .unwrap()
    }

    /// `forge-migration seed ARGS`, which must succeed; its stdout.
    async fn seed(&self, args: &[&str]) -> String {
        let mut all = vec!["seed"];
        all.extend_from_slice(args);
        let out = self.run(&all).await;
        assert!(out.status.success(), "{}", shown(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `forge-migration verify` must find nothing.
    async fn assert_verify_clean(&self) {
        let out = self.run(&["verify"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    }

    /// The single integer `sql` returns.
    async fn scalar(&self, sql: &str) -> i64 {
        let stmt = Statement::from_string(self.db.get_database_backend(), sql.to_owned());
        let row = self.db.query_one_raw(stmt).await.unwrap().expect("a row");
        row.try_get_by_index::<i64>(0).unwrap()
    }

    /// Rows in every Forge table, in `TABLES` order.
    async fn counts(&self) -> Vec<(&'static str, i64)> {
        let mut out = Vec::new();
        for table in TABLES {
            let n = self.scalar(&format!("SELECT COUNT(*) FROM {table}")).await;
            out.push((*table, n));
        }
        out
    }

    async fn remove(self) {
        self.db.close().await.ok();
        if let Some(dir) = self.dir {
            std::fs::remove_dir_all(dir).ok();
        }
        if let Some(name) = self.database {
            on_server(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

/// Exit code, stdout and stderr of a run, for assertion messages.
fn shown(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// For each case, a `sqlite` and a `postgres` test running it on a scratch database.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::Scratch;

            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                let db = Scratch::sqlite().await;
                super::$case(&db).await;
                db.remove().await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                let db = Scratch::postgres().await;
                super::$case(&db).await;
                db.remove().await;
            }
        }
    )*};
}

on_both_backends!(
    seeding_twice_leaves_the_same_rows,
    users_n_loads_n_times_the_set,
    the_seeded_data_keeps_the_schema_invariants,
    seeding_an_unmigrated_database_fails_and_says_what_to_run,
);

/// One user's set: the counts the seed promises, table by table.
const ONE_USER: [(&str, i64); 25] = [
    ("profiles", 1),
    ("projects", 1),
    ("coding_sessions", 1),
    ("coding_jobs", 3),
    ("session_events", 4),
    ("conversations", 7),
    ("conversation_turns", 24),
    ("batch_jobs", 1),
    ("batch_items", 6),
    ("jobs", 5),
    ("job_events", 8),
    ("artifacts", 3),
    // Shared by every user: loaded once, whatever `--users` says.
    ("prompts", 4),
    ("templates", 2),
    ("scenarios", 2),
    ("edge_cases", 2),
    ("generation_logs", 1),
    ("export_logs", 1),
    // Signup's account, its bonus and the seed's two spends and refund.
    ("credit_accounts", 1),
    ("credit_transactions", 4),
    ("api_keys", 2),
    // Two seeded, and the database's credits_low when the second spend crosses 10.
    ("notifications", 3),
    ("notification_preferences", 1),
    // One day's counters.
    ("usage_metrics", 1),
    // project.created, session.started, batch.created, api_key.created twice.
    ("activity_logs", 5),
];

async fn seeding_twice_leaves_the_same_rows(t: &Scratch) {
    t.migrate().await;
    let first = t.seed(&[]).await;
    assert!(first.contains("seeded 1 user"), "{first}");
    assert!(first.contains("conversation_turns"), "{first}");
    let after_first = t.counts().await;
    assert_eq!(after_first, ONE_USER.to_vec());

    let second = t.seed(&[]).await;
    assert!(second.contains(": 0 new rows"), "{second}");
    assert_eq!(t.counts().await, after_first);

    t.assert_verify_clean().await;
}

async fn users_n_loads_n_times_the_set(t: &Scratch) {
    t.migrate().await;
    t.seed(&["--users", "3"]).await;
    let tripled: Vec<_> = ONE_USER
        .iter()
        .map(|(table, n)| (*table, if *table == "prompts" { *n } else { n * 3 }))
        .collect();
    assert_eq!(t.counts().await, tripled);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM profiles WHERE email = 'dev3@forge.local'")
            .await,
        1
    );
    // Fewer users than already loaded changes nothing; running again adds nothing.
    t.seed(&["--users", "2"]).await;
    t.seed(&["--users", "3"]).await;
    assert_eq!(t.counts().await, tripled);

    t.assert_verify_clean().await;
}

async fn the_seeded_data_keeps_the_schema_invariants(t: &Scratch) {
    t.migrate().await;
    t.seed(&["--users", "2"]).await;
    // Every review status, for each user.
    let statuses = t
        .scalar("SELECT COUNT(DISTINCT status) FROM conversations")
        .await;
    assert_eq!(statuses, 7);
    // Totals equal the turns.
    let wrong_totals = t
        .scalar(
            "SELECT COUNT(*) FROM conversations c WHERE total_turns <> \
             (SELECT COUNT(*) FROM conversation_turns t WHERE t.conversation_id = c.id) \
             OR total_tokens <> (SELECT COALESCE(SUM(token_count), 0) \
             FROM conversation_turns t WHERE t.conversation_id = c.id)",
        )
        .await;
    assert_eq!(wrong_totals, 0);
    // Batch counters equal what the items say.
    let wrong_counters = t
        .scalar(
            "SELECT COUNT(*) FROM batch_jobs b WHERE \
             total_items <> (SELECT COUNT(*) FROM batch_items i WHERE i.batch_job_id = b.id) \
             OR successful_items <> (SELECT COUNT(*) FROM batch_items i \
                WHERE i.batch_job_id = b.id AND i.status = 'completed') \
             OR failed_items <> (SELECT COUNT(*) FROM batch_items i \
                WHERE i.batch_job_id = b.id AND i.status = 'failed')",
        )
        .await;
    assert_eq!(wrong_counters, 0);
    // Approved conversations name their approver; events are numbered 1..4 per session.
    let unapproved = t
        .scalar(
            "SELECT COUNT(*) FROM conversations WHERE status = 'approved' \
             AND (approved_by IS NULL OR approved_at IS NULL)",
        )
        .await;
    assert_eq!(unapproved, 0);
    assert_eq!(t.scalar("SELECT MAX(seq) FROM session_events").await, 4);
    // Each account's balance is its ledger's sum (25 after the bonus, two spends and a
    // refund), and the usage counters are what the seed did.
    let wrong_balances = t
        .scalar(
            "SELECT COUNT(*) FROM credit_accounts a WHERE balance <> 25 OR balance <> \
             (SELECT SUM(amount) FROM credit_transactions t WHERE t.account_id = a.id)",
        )
        .await;
    assert_eq!(wrong_balances, 0);
    let usage = t
        .scalar(
            "SELECT COUNT(*) FROM usage_metrics WHERE sessions_started = 1 \
             AND jobs_completed = 1 AND conversations_created = 7 AND credits_spent = 95 \
             AND tokens = (SELECT SUM(token_count) FROM conversation_turns) / 2",
        )
        .await;
    assert_eq!(usage, 2);
    let low = t
        .scalar("SELECT COUNT(*) FROM notifications WHERE type = 'credits_low'")
        .await;
    assert_eq!(low, 2);
}

async fn seeding_an_unmigrated_database_fails_and_says_what_to_run(t: &Scratch) {
    let out = t.run(&["seed"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert_eq!(stderr.lines().count(), 1, "{}", shown(&out));
    assert!(
        stderr.contains("run `forge-migration up` first"),
        "{}",
        shown(&out)
    );

    let zero = t.run(&["seed", "--users", "0"]).await;
    assert_eq!(
        zero.status.code(),
        Some(2),
        "clap rejects it: {}",
        shown(&zero)
    );
}

/// The workspace root (this crate is `migration/`).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

#[test]
fn docs_schema_md_is_up_to_date() {
    let path = workspace_root().join(SCHEMA_DOC_PATH);
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == schema_doc::render(),
        "{} is stale (or missing): regenerate it with `{SCHEMA_DOC_COMMAND}` from the \
         workspace root",
        path.display()
    );
}

#[test]
fn schema_doc_check_notices_a_stale_file() {
    let dir = std::env::temp_dir().join(fresh_name("forge-schema-doc"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("schema.md");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_forge-migration"))
            .arg("schema-doc")
            .arg("--output")
            .arg(&out)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&[]).status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), schema_doc::render());
    assert!(run(&["--check"]).status.success());
    std::fs::write(&out, "# edited by hand\n").unwrap();
    let stale = run(&["--check"]);
    assert_eq!(stale.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(stderr.contains(SCHEMA_DOC_COMMAND), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
