//! The `forge-migration` binary as a user runs it.

use std::path::PathBuf;

use forge_migration::sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use forge_migration::verify::url_for_database;
use forge_migration::{Migrator, MigratorTrait, TABLES, connect};

/// How many migrations the binary carries.
fn total() -> usize {
    Migrator::migrations().len()
}
use std::process::{Command, Output};

fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("forge-cli-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(dir: &PathBuf, url: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-migration"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DIRECT_URL");
    if let Some(url) = url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn without_database_url_it_migrates_the_embedded_sqlite_file_and_says_so() {
    let dir = scratch_dir("default");
    let out = run(&dir, None, &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("sqlite://forge.db?mode=rwc"), "{stdout}");
    assert!(stdout.contains("default"), "{stdout}");
    assert!(stdout.contains(&format!("{} applied", total())), "{stdout}");
    assert!(dir.join("forge.db").exists());

    let status = text(&run(&dir, None, &["status"]).stdout);
    assert_eq!(status.matches("applied  m20").count(), total(), "{status}");

    let down = run(&dir, None, &["down"]);
    assert!(
        text(&down.stdout).contains("1 rolled back"),
        "{}",
        text(&down.stdout)
    );
    let status = text(&run(&dir, None, &["status"]).stdout);
    assert_eq!(status.matches("pending  m20").count(), 1, "{status}");

    let reset = run(&dir, None, &["reset"]);
    assert!(reset.status.success());
    let none = format!("0 of {} migrations now applied", total());
    assert!(text(&reset.stdout).contains(&none));

    let fresh = run(&dir, None, &["fresh"]);
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
    let refresh = run(&dir, None, &["refresh"]);
    assert!(refresh.status.success(), "{}", text(&refresh.stderr));
    let all = format!(
        "{n} applied, {n} rolled back; {n} of {n} migrations now applied",
        n = total()
    );
    assert!(
        text(&refresh.stdout).contains(&all),
        "{}",
        text(&refresh.stdout)
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn assert_one_line_failure(out: &Output, expect: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(expect), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_url_is_one_clear_line_and_exit_1() {
    let dir = scratch_dir("bad");
    assert_one_line_failure(
        &run(&dir, Some("mysql://db/forge"), &["status"]),
        "unsupported database URL",
    );
    assert_one_line_failure(
        &run(&dir, Some("not a url"), &["up"]),
        "unsupported database URL",
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A pooler URL (`pgbouncer=true`) is refused before anything is opened, naming
/// `DIRECT_URL`; with `DIRECT_URL` set, that is the database migrated.
#[test]
fn a_pooler_url_needs_a_direct_url() {
    let dir = scratch_dir("pooler");
    let pooler = "postgres://forge:secret@pooler.invalid:6543/forge?pgbouncer=true";
    let out = run(&dir, Some(pooler), &["up"]);
    assert_one_line_failure(&out, "DIRECT_URL");
    assert!(!text(&out.stderr).contains("secret"), "password shown");
    assert!(!dir.join("forge.db").exists());

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-migration"));
    let out = cmd
        .current_dir(&dir)
        .arg("up")
        .env("DATABASE_URL", pooler)
        .env("DIRECT_URL", "sqlite://direct.db?mode=rwc")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("direct.db?mode=rwc (DIRECT_URL"),
        "{stdout}"
    );
    assert!(dir.join("direct.db").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_unreachable_database_is_one_clear_line_and_exit_1() {
    let dir = scratch_dir("unreachable");
    let out = run(
        &dir,
        Some("postgres://forge:hunter2@127.0.0.1:1/forge"),
        &["status"],
    );
    assert_one_line_failure(
        &out,
        "cannot connect to postgres://forge:***@127.0.0.1:1/forge",
    );
    assert!(
        !text(&out.stderr).contains("hunter2"),
        "the password is never printed"
    );
    let out = run(&dir, Some("sqlite:///nonexistent-dir/forge.db"), &["up"]);
    assert_one_line_failure(&out, "cannot connect to sqlite:///nonexistent-dir/forge.db");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// Destructive commands (`fresh`, `refresh`, `reset`, `down`) on SQLite and PostgreSQL.
// PostgreSQL tests need `FORGE_TEST_DATABASE_URL` (scripts/with-postgres.sh sets it);
// without it they fail, never skip.

/// A database of its own for one test, and a connection to inspect it.
struct Scratch {
    url: String,
    dir: PathBuf,
    db: DatabaseConnection,
    /// The PostgreSQL database's name (`None` on SQLite).
    database: Option<String>,
}

fn server() -> String {
    match std::env::var("FORGE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "FORGE_TEST_DATABASE_URL is not set: PostgreSQL tests need a server. Run \
             scripts/with-postgres.sh cargo test -p forge-migration --test cli"
        ),
    }
}

async fn on_server(sql: &str) {
    let admin = connect(&server()).await.expect("connect to the server");
    admin.execute_unprepared(sql).await.expect(sql);
    admin.close().await.ok();
}

impl Scratch {
    async fn sqlite(tag: &str) -> Self {
        let dir = scratch_dir(tag);
        let url = format!("sqlite://{}/forge.db?mode=rwc", dir.display());
        Self::open(url, dir, None).await
    }

    async fn postgres(tag: &str) -> Self {
        let dir = scratch_dir(tag);
        let name = format!(
            "forge_cli_{tag}_{}",
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .rsplit('-')
                .next()
                .unwrap()
        );
        on_server(&format!("CREATE DATABASE {name}")).await;
        let url = url_for_database(&server(), &name);
        Self::open(url, dir, Some(name)).await
    }

    async fn open(url: String, dir: PathBuf, database: Option<String>) -> Self {
        let db = connect(&url).await.expect("connect");
        Self {
            url,
            dir,
            db,
            database,
        }
    }

    fn is_postgres(&self) -> bool {
        self.database.is_some()
    }

    /// `forge-migration ARGS` against this database.
    async fn run(&self, args: &[&str]) -> Output {
        self.run_at(&self.url, args).await
    }

    /// `forge-migration ARGS` with `DATABASE_URL` = `url`.
    async fn run_at(&self, url: &str, args: &[&str]) -> Output {
        let (dir, url) = (self.dir.clone(), url.to_owned());
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&dir, Some(&url), &args)
        })
        .await
        .unwrap()
    }

    /// `forge-migration ARGS`, which must exit 0; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}\n{}", shown(&out));
        text(&out.stdout)
    }

    async fn exec(&self, sql: &str) {
        self.db.execute_unprepared(sql).await.expect(sql);
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let stmt = Statement::from_string(self.db.get_database_backend(), sql.to_owned());
        let row = self.db.query_one_raw(stmt).await.unwrap().expect("a row");
        row.try_get_by_index::<i64>(0).unwrap()
    }

    /// Rows in every Forge table, in `TABLES` order.
    async fn counts(&self) -> Vec<(&'static str, i64)> {
        let mut out = Vec::new();
        for table in TABLES {
            out.push((
                *table,
                self.scalar(&format!("SELECT COUNT(*) FROM {table}")).await,
            ));
        }
        out
    }

    async fn applied(&self) -> usize {
        Migrator::get_applied_migrations_read_only(&self.db)
            .await
            .unwrap()
            .len()
    }

    /// `forge-migration verify ARGS` must pass.
    async fn assert_verify_clean(&self, args: &[&str]) {
        let mut all = vec!["verify"];
        all.extend_from_slice(args);
        self.ok(&all).await;
    }

    async fn remove(self) {
        self.db.close().await.ok();
        std::fs::remove_dir_all(&self.dir).ok();
        if let Some(name) = self.database {
            on_server(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

fn shown(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// How a destructive command lists a Forge table and its rows.
fn rows_line(table: &str, n: i64) -> String {
    let unit = if n == 1 { "row" } else { "rows" };
    format!("  {table:<20} {n} {unit}\n")
}

/// The summary line a migration command ends with.
fn summary(applied: usize, rolled_back: usize, now: usize) -> String {
    format!(
        "forge-migration: {applied} applied, {rolled_back} rolled back; {now} of {} migrations now applied",
        total()
    )
}

/// How many migrations `down -n N` must roll back to undo `name` (and all after it).
fn depth_of(name: &str) -> usize {
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let at = names.iter().position(|n| n == name).expect(name);
    names.len() - at
}

/// Runs an async test body once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let t = Scratch::sqlite(stringify!($name)).await;
                super::$name(&t).await;
                t.remove().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let t = Scratch::postgres(stringify!($name)).await;
                super::$name(&t).await;
                t.remove().await;
            }
        }
    };
}

/// A migrated database with the development data set in it.
async fn migrated_with_data(t: &Scratch) -> Vec<(&'static str, i64)> {
    t.ok(&["up"]).await;
    t.ok(&["seed"]).await;
    let counts = t.counts().await;
    assert!(counts.iter().all(|(_, n)| *n > 0), "{counts:?}");
    counts
}

on_both_backends!(without_yes_destructive_commands_refuse_a_database_with_data);
async fn without_yes_destructive_commands_refuse_a_database_with_data(t: &Scratch) {
    let counts = migrated_with_data(t).await;
    // Down to and through the database wall.
    let wall = depth_of("m20251130_000006_database_wall");
    let through_wall = wall.to_string();
    for args in [
        &["fresh"][..],
        &["refresh"],
        &["reset"],
        &["down", "-n", &through_wall],
    ] {
        let out = t.run(args).await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{}", shown(&out));
        // The refusal is one line; only a PostgreSQL `down` through the wall adds a warning.
        let warns = t.is_postgres() && args[0] == "down";
        assert_eq!(
            stderr.lines().count(),
            if warns { 2 } else { 1 },
            "{args:?}\n{stderr}"
        );
        let refusal = stderr.lines().last().unwrap();
        assert!(
            refusal.contains(&format!("refusing to run {}", args[0])),
            "{refusal}"
        );
        assert!(refusal.contains("Forge's tables hold"), "{refusal}");
        assert!(refusal.contains("nothing was changed"), "{refusal}");
        assert!(refusal.contains("--yes"), "{refusal}");
        // What it would have rolled back and dropped.
        let planned = if args[0] == "down" { wall } else { total() };
        assert_eq!(
            stdout.matches("  roll back   m20").count(),
            planned,
            "{stdout}"
        );
        for (table, n) in &counts {
            assert!(stdout.contains(&rows_line(table, *n)), "{table}\n{stdout}");
        }
        // Nothing changed: data, migrations, schema.
        assert_eq!(t.counts().await, counts, "{args:?}");
        assert_eq!(t.applied().await, total(), "{args:?}");
    }
    t.assert_verify_clean(&[]).await;
}

on_both_backends!(with_yes_destructive_commands_act_and_count_what_they_did);
async fn with_yes_destructive_commands_act_and_count_what_they_did(t: &Scratch) {
    let n = total();
    migrated_with_data(t).await;
    let out = t.ok(&["down", "-n", "5", "--yes"]).await;
    assert!(out.contains(&summary(0, 5, n - 5)), "{out}");
    assert_eq!(out.matches("  rolled back m20").count(), 5, "{out}");
    let out = t.ok(&["up"]).await;
    assert!(out.contains(&summary(5, 0, n)), "{out}");

    let out = t.ok(&["refresh", "--yes"]).await;
    assert!(out.contains(&summary(n, n, n)), "{out}");
    assert!(t.counts().await.iter().all(|(_, rows)| *rows == 0));
    t.assert_verify_clean(&[]).await;

    migrated_with_data(t).await;
    let out = t.ok(&["reset", "--yes"]).await;
    assert!(out.contains(&summary(0, n, 0)), "{out}");
    assert_eq!(t.applied().await, 0);

    migrated_with_data(t).await;
    let out = t.ok(&["fresh", "-y"]).await;
    assert!(out.contains(&summary(n, n, n)), "{out}");
    assert!(t.counts().await.iter().all(|(_, rows)| *rows == 0));
    t.assert_verify_clean(&[]).await;
}

on_both_backends!(fresh_drops_only_what_forge_created);
async fn fresh_drops_only_what_forge_created(t: &Scratch) {
    migrated_with_data(t).await;
    t.exec("CREATE TABLE my_own (id int)").await;
    t.exec("INSERT INTO my_own (id) VALUES (42)").await;
    let out = t.ok(&["fresh", "--yes"]).await;
    assert!(!out.contains("my_own"), "{out}");
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM my_own WHERE id = 42").await,
        1
    );
    assert!(t.counts().await.iter().all(|(_, rows)| *rows == 0));
    t.assert_verify_clean(&["--allow-extra"]).await;
}

on_both_backends!(an_empty_database_resets_without_yes);
async fn an_empty_database_resets_without_yes(t: &Scratch) {
    t.ok(&["up"]).await;
    let out = t.run(&["reset"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    assert!(text(&out.stderr).is_empty(), "{}", shown(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&summary(0, total(), 0)), "{stdout}");
    assert!(stdout.contains(&rows_line("profiles", 0)), "{stdout}");
    assert_eq!(t.applied().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_rolling_back_the_wall_or_rls_warns_and_needs_yes_even_when_empty() {
    let t = Scratch::postgres("walloff").await;
    t.ok(&["up"]).await;
    let wall = depth_of("m20251130_000006_database_wall");
    let rls = depth_of("m20251121_000004_postgres_rls");
    for (depth, what) in [
        (wall, "the database's rules OFF"),
        (rls, "row-level security OFF"),
    ] {
        let n = depth.to_string();
        let out = t.run(&["down", "-n", &n]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
        assert_eq!(stderr.lines().count(), 2, "{stderr}");
        let warning = stderr.lines().next().unwrap();
        assert!(
            warning.starts_with("forge-migration: WARNING: "),
            "{warning}"
        );
        assert!(warning.contains(what), "{warning}");
        assert!(stderr.contains("refusing to run down"), "{stderr}");
        assert!(stderr.contains("nothing was changed"), "{stderr}");
        assert_eq!(t.applied().await, total(), "nothing rolled back");

        let out = t.run(&["down", "-n", &n, "--yes"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("WARNING") && stderr.contains(what),
            "{stderr}"
        );
        assert!(
            text(&out.stdout).contains(&summary(0, depth, total() - depth)),
            "{}",
            shown(&out)
        );
        t.ok(&["up"]).await;
    }
    t.assert_verify_clean(&[]).await;
    t.remove().await;
}

#[tokio::test]
async fn on_sqlite_a_down_needs_no_yes_on_an_empty_database_and_warns_of_nothing() {
    let t = Scratch::sqlite("sqlitedown").await;
    t.ok(&["up"]).await;
    let n = depth_of("m20251121_000004_postgres_rls").to_string();
    let out = t.run(&["down", "-n", &n]).await;
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    assert!(text(&out.stderr).is_empty(), "{}", shown(&out));
    t.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_owner_under_forced_row_level_security_still_counts_every_row() {
    // The two-role setup: the migrating role owns the tables but is neither a superuser
    // nor BYPASSRLS, so FORCE ROW LEVEL SECURITY would hide every row from a plain count.
    // The roles the RLS migration uses must exist (BYPASSRLS needs a superuser).
    on_server(
        "DO $$ BEGIN
           CREATE ROLE anon NOLOGIN NOINHERIT;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         DO $$ BEGIN
           CREATE ROLE authenticated NOLOGIN NOINHERIT;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         DO $$ BEGIN
           CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;",
    )
    .await;
    let t = Scratch::postgres("owner").await;
    let database = t.database.clone().unwrap();
    let owner = format!("{database}_owner");
    on_server(&format!("CREATE ROLE {owner} LOGIN")).await;
    on_server(&format!("ALTER DATABASE {database} OWNER TO {owner}")).await;
    let (_, host_and_db) = t.url.split_once('@').expect("user@host in the test URL");
    let as_owner = format!("postgres://{owner}@{host_and_db}");

    let out = t.run_at(&as_owner, &["up"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    // Rows the owner's policies do not show it (written by the superuser): a profile, and
    // what signup gives it (a credit account, its bonus, its preferences).
    t.exec(
        "INSERT INTO profiles (id, email, display_name) \
         VALUES (gen_random_uuid(), 'hidden@example.com', 'hidden')",
    )
    .await;
    let out = t.run_at(&as_owner, &["reset"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(
        text(&out.stdout).contains(&rows_line("profiles", 1)),
        "{}",
        shown(&out)
    );
    assert!(
        text(&out.stdout).contains(&rows_line("credit_transactions", 1)),
        "{}",
        shown(&out)
    );
    assert!(
        text(&out.stderr).contains("Forge's tables hold 4 rows;"),
        "{}",
        shown(&out)
    );
    assert_eq!(t.applied().await, total(), "nothing rolled back");
    // Counting lifted FORCE only inside a rolled-back transaction.
    t.assert_verify_clean(&[]).await;

    t.exec("DELETE FROM profiles").await;
    let out = t.run_at(&as_owner, &["reset"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    assert!(
        text(&out.stdout).contains(&summary(0, total(), 0)),
        "{}",
        shown(&out)
    );
    t.remove().await;
    on_server(&format!("DROP ROLE IF EXISTS {owner}")).await;
}
