//! `forge-migration verify` as a user runs it: clean after migrating, and exit 2 naming the
//! object for each way a database can drift from the code, on SQLite and PostgreSQL.
//!
//! PostgreSQL tests need `FORGE_TEST_DATABASE_URL` (a superuser URL; run them with
//! `scripts/with-postgres.sh cargo test -p forge-migration --test verify`). Without it they
//! fail: they never skip.

use std::path::PathBuf;
use std::process::Command;

use forge_migration::sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use forge_migration::verify::url_for_database;
use forge_migration::{Migrator, MigratorTrait, connect};

/// A migrated database that exists only for one test, and its URL for the binary.
struct TestDb {
    db: DatabaseConnection,
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    /// The SQLite file's directory.
    Dir(PathBuf),
    /// The PostgreSQL database's name.
    Database(String),
}

/// What one run of the binary printed, and its exit code.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{tag}_{}_{nanos}", std::process::id())
}

fn pg_admin_url() -> String {
    match std::env::var("FORGE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "FORGE_TEST_DATABASE_URL is not set: PostgreSQL tests need a server. Run \
             scripts/with-postgres.sh cargo test -p forge-migration --test verify"
        ),
    }
}

async fn admin_exec(sql: &str) {
    let admin = connect(&pg_admin_url()).await.expect("connect as admin");
    admin.execute_unprepared(sql).await.expect(sql);
    admin.close().await.ok();
}

impl TestDb {
    /// A migrated SQLite file in a directory of its own.
    async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(unique("forge-verify"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/forge.db?mode=rwc", dir.display());
        Self::migrated(url, Cleanup::Dir(dir)).await
    }

    /// A migrated PostgreSQL database of its own.
    async fn postgres() -> Self {
        let admin = pg_admin_url();
        let name = unique("forge_verify_test");
        admin_exec(&format!("CREATE DATABASE {name}")).await;
        let url = url_for_database(&admin, &name);
        Self::migrated(url, Cleanup::Database(name)).await
    }

    async fn migrated(url: String, cleanup: Cleanup) -> Self {
        let db = connect(&url).await.expect("connect");
        Migrator::up(&db, None).await.expect("migrate");
        Self { db, url, cleanup }
    }

    fn is_postgres(&self) -> bool {
        matches!(self.cleanup, Cleanup::Database(..))
    }

    async fn exec(&self, sql: &str) {
        self.db.execute_unprepared(sql).await.expect(sql);
    }

    /// SQLite keeps a table's definition as its `CREATE TABLE` text; changing what ALTER
    /// TABLE cannot (a type, NOT NULL, a default, a foreign key, a CHECK) means editing it.
    async fn edit_sqlite_table(&self, table: &str, from: &str, to: &str) {
        let sql =
            format!("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '{table}'");
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .unwrap()
            .expect("the table exists");
        let create: String = row.try_get_by_index(0).unwrap();
        assert!(create.contains(from), "{from} not in {create}");
        let edited = create.replace(from, to).replace('\'', "''");
        self.exec("PRAGMA writable_schema = ON").await;
        self.exec(&format!(
            "UPDATE sqlite_master SET sql = '{edited}' WHERE type = 'table' AND name = '{table}'"
        ))
        .await;
        self.exec("PRAGMA writable_schema = OFF").await;
    }

    /// The first column of the first row `sql` returns, as text (`""` for NULL).
    async fn query_text(&self, sql: &str) -> String {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .expect(sql)
            .expect("one row");
        let value: Option<String> = row.try_get_by_index(0).expect(sql);
        value.unwrap_or_default()
    }

    /// PostgreSQL: whether the ACL `acl_sql` selects (one `aclitem[]`, NULL taken as
    /// `default`) has an entry giving `grantee` (a role, or `PUBLIC`) `privilege`.
    async fn acl_grants(
        &self,
        acl_sql: &str,
        default: &str,
        grantee: &str,
        privilege: &str,
    ) -> bool {
        let grantee = match grantee {
            "PUBLIC" => "0".to_owned(),
            role => format!("'{role}'::regrole::oid"),
        };
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM aclexplode(coalesce(({acl_sql}), {default})) a
                            WHERE a.grantee = {grantee} AND a.privilege_type = '{privilege}')::text"
        );
        self.query_text(&sql).await == "true"
    }

    /// PostgreSQL: `GRANT privilege ON on TO grantee`, or `REVOKE` when the migrations
    /// granted it already (`held`), so the privileges change whatever the migrations grant.
    /// Returns the statement run.
    async fn toggle_grant(&self, held: bool, privilege: &str, on: &str, grantee: &str) -> String {
        let sql = if held {
            format!("REVOKE {privilege} ON {on} FROM {grantee}")
        } else {
            format!("GRANT {privilege} ON {on} TO {grantee}")
        };
        self.exec(&sql).await;
        sql
    }

    /// Runs `forge-migration verify ARGS` against this database.
    async fn verify(&self, args: &[&str]) -> Run {
        run_verify(Some(self.url.clone()), args).await
    }

    /// Runs verify, expects exit 2, and a `drift:`/`warning:` line containing every needle.
    async fn expect_drift(&self, args: &[&str], needles: &[&str]) -> Run {
        let run = self.verify(args).await;
        assert_eq!(run.code, Some(2), "{run}");
        for needle in needles {
            assert!(
                run.stdout
                    .lines()
                    .any(|l| (l.starts_with("drift: ") || l.starts_with("warning: "))
                        && l.contains(needle)),
                "no line with {needle:?}\n{run}"
            );
        }
        run
    }

    async fn finish(self) {
        let Self { db, cleanup, .. } = self;
        db.close().await.ok();
        match cleanup {
            Cleanup::Dir(dir) => {
                std::fs::remove_dir_all(dir).ok();
            }
            Cleanup::Database(name) => {
                admin_exec(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            }
        }
    }
}

async fn run_verify(url: Option<String>, args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-migration"));
        cmd.arg("verify").args(&args).env_remove("DATABASE_URL");
        if let Some(url) = url {
            cmd.env("DATABASE_URL", url);
        }
        let out = cmd.output().expect("run forge-migration");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// `mod $case { sqlite, postgres }`, each running `$case(&TestDb)` on a fresh database.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                let t = super::TestDb::sqlite().await;
                super::$case(&t).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                let t = super::TestDb::postgres().await;
                super::$case(&t).await;
                t.finish().await;
            }
        }
    )*};
}

/// `mod $case { postgres }`.
macro_rules! on_postgres {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                let t = super::TestDb::postgres().await;
                super::$case(&t).await;
                t.finish().await;
            }
        }
    )*};
}

on_both_backends!(
    a_fresh_database_is_clean,
    a_dropped_column,
    an_unexpected_column,
    a_changed_column_type,
    a_dropped_not_null,
    a_changed_default,
    a_dropped_default,
    a_dropped_index,
    a_dropped_foreign_key,
    a_changed_on_delete_rule,
    a_dropped_check,
    an_extra_table_is_a_warning_that_allow_extra_accepts,
    a_pending_migration,
    an_unknown_migration,
    an_edited_migration,
    a_missing_checksum_is_only_a_warning,
    json_output_has_the_findings,
);

on_postgres!(
    rls_switched_off,
    a_dropped_policy,
    a_dropped_updated_at_trigger,
    a_dropped_auth_uid,
    a_changed_policy,
    changed_storage_parameters,
    a_hand_edited_trigger_function,
    an_extra_function_is_a_warning_that_allow_extra_accepts,
    without_createdb_it_cannot_check,
    forced_rls_flipped,
    a_stray_table_grant,
    a_stray_column_grant,
    a_stray_function_grant,
    execute_revoked_from_public,
    a_grant_on_a_bookkeeping_table,
    a_changed_function_search_path,
    a_flipped_security_definer,
);

async fn a_fresh_database_is_clean(t: &TestDb) {
    let run = t.verify(&[]).await;
    assert_eq!(run.code, Some(0), "{run}");
    let backend = if t.is_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let last = run.stdout.lines().last().unwrap_or_default();
    let n = Migrator::migrations().len();
    assert!(
        last.starts_with(&format!(
            "ok: {backend} database matches ({n} migrations, 25 tables"
        )),
        "{run}"
    );
    assert!(
        !run.stdout.contains("drift:") && !run.stdout.contains("warning:"),
        "{run}"
    );
}

async fn a_dropped_column(t: &TestDb) {
    t.exec("ALTER TABLE projects DROP COLUMN sandbox_id").await;
    t.expect_drift(
        &[],
        &["drift: table projects: column sandbox_id: missing; expected text NULL"],
    )
    .await;
}

async fn an_unexpected_column(t: &TestDb) {
    t.exec("ALTER TABLE projects ADD COLUMN nickname text")
        .await;
    t.expect_drift(
        &[],
        &["drift: table projects: column nickname: unexpected; found text NULL"],
    )
    .await;
}

async fn a_changed_column_type(t: &TestDb) {
    if t.is_postgres() {
        t.exec("ALTER TABLE coding_jobs ALTER COLUMN priority TYPE bigint")
            .await;
    } else {
        t.edit_sqlite_table("coding_jobs", "\"priority\" integer", "\"priority\" bigint")
            .await;
    }
    t.expect_drift(
        &[],
        &[
            "drift: table coding_jobs: column priority: expected integer NOT NULL DEFAULT 0, \
             found bigint NOT NULL DEFAULT 0",
        ],
    )
    .await;
}

async fn a_dropped_not_null(t: &TestDb) {
    if t.is_postgres() {
        t.exec("ALTER TABLE projects ALTER COLUMN name DROP NOT NULL")
            .await;
    } else {
        t.edit_sqlite_table("projects", "\"name\" text NOT NULL", "\"name\" text NULL")
            .await;
    }
    t.expect_drift(
        &[],
        &["drift: table projects: column name: expected text NOT NULL, found text NULL"],
    )
    .await;
}

async fn a_changed_default(t: &TestDb) {
    if t.is_postgres() {
        t.exec("ALTER TABLE profiles ALTER COLUMN sessions_limit SET DEFAULT 5")
            .await;
    } else {
        t.edit_sqlite_table("profiles", "NOT NULL DEFAULT 3", "NOT NULL DEFAULT 5")
            .await;
    }
    t.expect_drift(
        &[],
        &[
            "drift: table profiles: column sessions_limit: expected integer NOT NULL DEFAULT 3, \
             found integer NOT NULL DEFAULT 5",
        ],
    )
    .await;
}

async fn a_dropped_default(t: &TestDb) {
    if t.is_postgres() {
        t.exec("ALTER TABLE coding_jobs ALTER COLUMN max_retries DROP DEFAULT")
            .await;
    } else {
        t.edit_sqlite_table(
            "coding_jobs",
            "\"max_retries\" integer NOT NULL DEFAULT 3",
            "\"max_retries\" integer NOT NULL",
        )
        .await;
    }
    t.expect_drift(
        &[],
        &[
            "drift: table coding_jobs: column max_retries: expected integer NOT NULL DEFAULT 3, \
             found integer NOT NULL",
        ],
    )
    .await;
}

async fn a_dropped_index(t: &TestDb) {
    t.exec("DROP INDEX idx_profiles_tier").await;
    t.expect_drift(
        &[],
        &["drift: table profiles: index idx_profiles_tier: missing; expected CREATE INDEX"],
    )
    .await;
}

async fn a_dropped_foreign_key(t: &TestDb) {
    let object = if t.is_postgres() {
        t.exec("ALTER TABLE projects DROP CONSTRAINT projects_user_id_fkey")
            .await;
        "foreign key projects_user_id_fkey"
    } else {
        t.edit_sqlite_table(
            "projects",
            ", FOREIGN KEY (\"user_id\") REFERENCES \"profiles\" (\"id\") ON DELETE CASCADE ON UPDATE NO ACTION",
            "",
        )
        .await;
        "foreign key (user_id)"
    };
    t.expect_drift(
        &[],
        &[&format!(
            "drift: table projects: {object}: missing; expected"
        )],
    )
    .await;
}

async fn a_changed_on_delete_rule(t: &TestDb) {
    let object = if t.is_postgres() {
        t.exec(
            "ALTER TABLE batch_items DROP CONSTRAINT batch_items_conversation_id_fkey;
             ALTER TABLE batch_items ADD CONSTRAINT batch_items_conversation_id_fkey
               FOREIGN KEY (conversation_id) REFERENCES conversations(id) ON DELETE CASCADE",
        )
        .await;
        "foreign key batch_items_conversation_id_fkey"
    } else {
        t.edit_sqlite_table(
            "batch_items",
            "REFERENCES \"conversations\" (\"id\") ON DELETE SET NULL",
            "REFERENCES \"conversations\" (\"id\") ON DELETE CASCADE",
        )
        .await;
        "foreign key (conversation_id)"
    };
    let run = t
        .expect_drift(
            &[],
            &[&format!("drift: table batch_items: {object}: expected")],
        )
        .await;
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(object))
        .unwrap_or_default();
    let (expected, found) = line.split_once(", found ").unwrap_or_default();
    assert!(expected.contains("ON DELETE SET NULL"), "{line}");
    assert!(found.contains("ON DELETE CASCADE"), "{line}");
}

async fn a_dropped_check(t: &TestDb) {
    if t.is_postgres() {
        t.exec("ALTER TABLE profiles DROP CONSTRAINT profiles_tier_check")
            .await;
    } else {
        t.edit_sqlite_table(
            "profiles",
            ", CONSTRAINT \"profiles_tier_check\" CHECK (tier IN ('free', 'pro', 'enterprise'))",
            "",
        )
        .await;
    }
    t.expect_drift(
        &[],
        &["drift: table profiles: check profiles_tier_check: missing; expected CHECK"],
    )
    .await;
}

async fn an_extra_table_is_a_warning_that_allow_extra_accepts(t: &TestDb) {
    t.exec("CREATE TABLE scratch_notes (id integer PRIMARY KEY, body text)")
        .await;
    let run = t
        .expect_drift(
            &[],
            &["warning: table scratch_notes: unexpected; found table with 2 columns"],
        )
        .await;
    assert!(
        !run.stdout.contains("\ndrift: table"),
        "only a warning\n{run}"
    );

    let run = t.verify(&["--allow-extra"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("warning: table scratch_notes"), "{run}");
    assert!(
        run.stdout
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("ok: "),
        "{run}"
    );
}

fn last_migration() -> String {
    let all = Migrator::migrations();
    all.last().map(|m| m.name().to_owned()).unwrap_or_default()
}

fn first_migration() -> String {
    let all = Migrator::migrations();
    all.first().map(|m| m.name().to_owned()).unwrap_or_default()
}

async fn a_pending_migration(t: &TestDb) {
    let last = last_migration();
    t.exec(&format!(
        "DELETE FROM seaql_migrations WHERE version = '{last}'"
    ))
    .await;
    t.expect_drift(
        &[],
        &[&format!(
            "drift: database: migration {last}: expected applied, found pending"
        )],
    )
    .await;
}

async fn an_unknown_migration(t: &TestDb) {
    t.exec(
        "INSERT INTO seaql_migrations (version, applied_at)
         VALUES ('m20990101_000001_from_a_newer_build', 0)",
    )
    .await;
    t.expect_drift(
        &[],
        &[
            "drift: database: migration m20990101_000001_from_a_newer_build: unexpected; \
           found applied, but not in this binary",
        ],
    )
    .await;
}

async fn an_edited_migration(t: &TestDb) {
    let first = first_migration();
    t.exec(&format!(
        "UPDATE forge_migration_checksums SET checksum = 'fnv1a64:0000000000000000'
         WHERE version = '{first}'"
    ))
    .await;
    t.expect_drift(
        &[],
        &[
            &format!("drift: database: checksum {first}: expected fnv1a64:"),
            "found fnv1a64:0000000000000000 (the migration was edited after it was applied)",
        ],
    )
    .await;
}

async fn a_missing_checksum_is_only_a_warning(t: &TestDb) {
    let first = first_migration();
    t.exec(&format!(
        "DELETE FROM forge_migration_checksums WHERE version = '{first}'"
    ))
    .await;
    let run = t.verify(&[]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout.contains(&format!(
            "warning: database: checksum {first}: expected fnv1a64:"
        )) && run.stdout.contains("none recorded"),
        "{run}"
    );
}

async fn json_output_has_the_findings(t: &TestDb) {
    t.exec("DROP INDEX idx_profiles_tier").await;
    t.exec("CREATE TABLE scratch_notes (id integer)").await;
    let run = t.verify(&["--format", "json"]).await;
    assert_eq!(run.code, Some(2), "{run}");
    let doc: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["status"], "drift");
    let backend = if t.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(doc["backend"], backend);
    let findings = doc["findings"].as_array().expect("findings");
    let index = findings
        .iter()
        .find(|f| f["kind"] == "index")
        .expect("the index finding");
    assert_eq!(index["table"], "profiles");
    assert_eq!(index["object"], "idx_profiles_tier");
    assert_eq!(index["severity"], "error");
    assert!(index["found"].is_null());
    assert!(
        index["expected"]
            .as_str()
            .unwrap_or_default()
            .contains("CREATE INDEX")
    );
    let extra = findings
        .iter()
        .find(|f| f["kind"] == "table")
        .expect("the extra table");
    assert_eq!(extra["table"], "scratch_notes");
    assert_eq!(extra["severity"], "warning");
    assert!(extra["expected"].is_null());

    let run = t.verify(&["--format", "json", "--allow-extra"]).await;
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["status"], "drift", "the index still fails it");
}

async fn rls_switched_off(t: &TestDb) {
    t.exec("ALTER TABLE projects DISABLE ROW LEVEL SECURITY")
        .await;
    t.expect_drift(
        &[],
        &[
            "drift: table projects: row level security: expected enabled",
            ", found disabled",
        ],
    )
    .await;
}

async fn a_dropped_policy(t: &TestDb) {
    t.exec("DROP POLICY projects_select_own ON projects").await;
    t.expect_drift(
        &[],
        &["drift: table projects: policy projects_select_own: missing; expected PERMISSIVE FOR SELECT TO authenticated"],
    )
    .await;
}

async fn a_changed_policy(t: &TestDb) {
    t.exec(
        "DROP POLICY projects_select_own ON projects;
         CREATE POLICY projects_select_own ON projects FOR SELECT TO authenticated USING (true)",
    )
    .await;
    t.expect_drift(
        &[],
        &["drift: table projects: policy projects_select_own: expected PERMISSIVE FOR SELECT TO authenticated USING ((user_id = ( SELECT auth.uid() AS uid))), found PERMISSIVE FOR SELECT TO authenticated USING (true)"],
    )
    .await;
}

async fn a_dropped_updated_at_trigger(t: &TestDb) {
    t.exec("DROP TRIGGER profiles_set_updated_at ON profiles")
        .await;
    t.expect_drift(
        &[],
        &["drift: table profiles: trigger profiles_set_updated_at: missing; expected CREATE TRIGGER"],
    )
    .await;
}

async fn a_dropped_auth_uid(t: &TestDb) {
    // CASCADE: the policies call it.
    t.exec("DROP FUNCTION auth.uid() CASCADE").await;
    t.expect_drift(
        &[],
        &[
            "drift: database: function auth.uid(): missing; expected present",
            "drift: table profiles: policy profiles_select_own: missing",
        ],
    )
    .await;
}

async fn changed_storage_parameters(t: &TestDb) {
    t.exec("ALTER TABLE profiles SET (fillfactor = 50)").await;
    t.expect_drift(
        &[],
        &["drift: table profiles: storage parameters: unexpected; found fillfactor=50"],
    )
    .await;
}

async fn a_hand_edited_trigger_function(t: &TestDb) {
    t.exec(
        "CREATE OR REPLACE FUNCTION public.forge_set_updated_at() RETURNS trigger
         LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$",
    )
    .await;
    t.expect_drift(
        &[],
        &["drift: database: function forge_set_updated_at(): expected returns trigger language plpgsql body md5"],
    )
    .await;
}

async fn an_extra_function_is_a_warning_that_allow_extra_accepts(t: &TestDb) {
    t.exec("CREATE FUNCTION public.answer() RETURNS integer LANGUAGE sql AS 'SELECT 42'")
        .await;
    t.expect_drift(
        &[],
        &["warning: database: function answer(): unexpected; found returns integer language sql"],
    )
    .await;
    let run = t.verify(&["--allow-extra"]).await;
    assert_eq!(run.code, Some(0), "{run}");
}

async fn without_createdb_it_cannot_check(t: &TestDb) {
    let role = unique("forge_verify_nocreatedb");
    admin_exec(&format!("CREATE ROLE {role} LOGIN NOCREATEDB")).await;
    let url = t.url.replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(url, t.url, "the test cluster's URL names user postgres");
    let run = run_verify(Some(url), &[]).await;
    admin_exec(&format!("DROP ROLE {role}")).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.stderr.lines().count(), 1, "{run}");
    assert!(run.stderr.contains("CREATEDB"), "{run}");
    assert!(run.stderr.contains("permission denied"), "{run}");
}

#[tokio::test]
async fn an_unreachable_database_cannot_be_checked() {
    let url = "postgres://forge:hunter2@127.0.0.1:1/forge".to_owned();
    let run = run_verify(Some(url.clone()), &[]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.stderr.lines().count(), 1, "{run}");
    assert!(
        run.stderr
            .contains("cannot verify: cannot connect to postgres://forge:***@127.0.0.1:1/forge"),
        "{run}"
    );
    assert!(!run.stderr.contains("hunter2") && !run.stdout.contains("hunter2"));

    let run = run_verify(Some(url), &["--format", "json"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(doc["status"], "error");
    assert!(
        doc["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot connect")
    );
}

#[tokio::test]
async fn a_missing_sqlite_file_is_not_created() {
    let dir = std::env::temp_dir().join(unique("forge-verify-missing"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("forge.db");
    let run = run_verify(Some(format!("sqlite://{}?mode=rwc", file.display())), &[]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("cannot verify"), "{run}");
    assert!(!file.exists(), "verify never writes, not even a new file");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_bad_url_cannot_be_checked() {
    let run = run_verify(Some("mysql://db/forge".to_owned()), &[]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("unsupported database URL"), "{run}");
}

/// The line of `run` containing `needle` (which must be there).
fn line_with<'a>(run: &'a Run, needle: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}\n{run}"))
}

/// `verify`'s description of a table's row-level security.
fn rls(enabled: bool, forced: bool) -> String {
    let enabled = if enabled { "enabled" } else { "disabled" };
    if forced {
        format!("{enabled}, forced")
    } else {
        enabled.to_owned()
    }
}

/// FORCE ROW LEVEL SECURITY flipped to the opposite of what the migrations set.
async fn forced_rls_flipped(t: &TestDb) {
    let flag = |column: &'static str| async move {
        t.query_text(&format!(
            "SELECT {column}::text FROM pg_class WHERE oid = 'public.projects'::regclass"
        ))
        .await
            == "true"
    };
    let (enabled, forced) = (
        flag("relrowsecurity").await,
        flag("relforcerowsecurity").await,
    );
    let switch = if forced { "NO FORCE" } else { "FORCE" };
    t.exec(&format!("ALTER TABLE projects {switch} ROW LEVEL SECURITY"))
        .await;
    t.expect_drift(
        &[],
        &[&format!(
            "drift: table projects: row level security: expected {}, found {}",
            rls(enabled, forced),
            rls(enabled, !forced)
        )],
    )
    .await;
}

const PROFILES_ACL: &str = "SELECT relacl FROM pg_class WHERE oid = 'public.profiles'::regclass";

async fn a_stray_table_grant(t: &TestDb) {
    let held = t.acl_grants(PROFILES_ACL, "NULL", "anon", "INSERT").await;
    t.toggle_grant(held, "INSERT", "profiles", "anon").await;
    let run = t
        .expect_drift(&[], &["drift: table profiles: grant to anon: "])
        .await;
    let line = line_with(&run, "grant to anon");
    assert!(line.contains("INSERT"), "{line}");
}

async fn a_stray_column_grant(t: &TestDb) {
    let acl = "SELECT attacl FROM pg_attribute
               WHERE attrelid = 'public.profiles'::regclass AND attname = 'tier'";
    let held = t.acl_grants(acl, "NULL", "authenticated", "UPDATE").await;
    t.toggle_grant(held, "UPDATE (tier)", "profiles", "authenticated")
        .await;
    let run = t
        .expect_drift(
            &[],
            &["drift: table profiles: grant on column tier to authenticated: "],
        )
        .await;
    let line = line_with(&run, "column tier to authenticated");
    assert!(line.contains("UPDATE"), "{line}");
    assert!(
        !run.stdout.contains("grant to authenticated"),
        "the table's own privileges did not change\n{run}"
    );
}

const SET_UPDATED_AT: &str = "public.forge_set_updated_at()";

fn set_updated_at_acl() -> String {
    format!("SELECT proacl FROM pg_proc WHERE oid = '{SET_UPDATED_AT}'::regprocedure")
}

fn set_updated_at_default_acl() -> String {
    format!(
        "(SELECT acldefault('f', proowner) FROM pg_proc
          WHERE oid = '{SET_UPDATED_AT}'::regprocedure)"
    )
}

async fn a_stray_function_grant(t: &TestDb) {
    let held = t
        .acl_grants(
            &set_updated_at_acl(),
            &set_updated_at_default_acl(),
            "authenticated",
            "EXECUTE",
        )
        .await;
    let on = format!("FUNCTION {SET_UPDATED_AT}");
    t.toggle_grant(held, "EXECUTE", &on, "authenticated").await;
    let run = t
        .expect_drift(
            &[],
            &["drift: database: grant on function forge_set_updated_at() to authenticated: "],
        )
        .await;
    let line = line_with(&run, "forge_set_updated_at() to authenticated");
    assert!(line.contains("EXECUTE"), "{line}");
}

/// A function's NULL ACL means PUBLIC may execute it: revoking that is drift too.
async fn execute_revoked_from_public(t: &TestDb) {
    let held = t
        .acl_grants(
            &set_updated_at_acl(),
            &set_updated_at_default_acl(),
            "PUBLIC",
            "EXECUTE",
        )
        .await;
    let on = format!("FUNCTION {SET_UPDATED_AT}");
    t.toggle_grant(held, "EXECUTE", &on, "PUBLIC").await;
    t.expect_drift(
        &[],
        &["drift: database: grant on function forge_set_updated_at() to PUBLIC: "],
    )
    .await;
}

async fn a_grant_on_a_bookkeeping_table(t: &TestDb) {
    let acl = "SELECT relacl FROM pg_class WHERE oid = 'public.seaql_migrations'::regclass";
    let held = t.acl_grants(acl, "NULL", "anon", "SELECT").await;
    t.toggle_grant(held, "SELECT", "seaql_migrations", "anon")
        .await;
    t.expect_drift(&[], &["drift: table seaql_migrations: grant to anon: "])
        .await;
}

async fn a_changed_function_search_path(t: &TestDb) {
    let config = t
        .query_text(&format!(
            "SELECT array_to_string(proconfig, ', ') FROM pg_proc
             WHERE oid = '{SET_UPDATED_AT}'::regprocedure"
        ))
        .await;
    let change = if config.contains("search_path=") {
        "RESET search_path"
    } else {
        "SET search_path = pg_temp"
    };
    t.exec(&format!("ALTER FUNCTION {SET_UPDATED_AT} {change}"))
        .await;
    let run = t
        .expect_drift(
            &[],
            &["drift: database: function forge_set_updated_at(): expected returns trigger"],
        )
        .await;
    let line = line_with(&run, "function forge_set_updated_at(): expected");
    assert!(line.contains("search_path="), "{line}");
}

async fn a_flipped_security_definer(t: &TestDb) {
    let definer = t
        .query_text(&format!(
            "SELECT prosecdef::text FROM pg_proc WHERE oid = '{SET_UPDATED_AT}'::regprocedure"
        ))
        .await
        == "true";
    let security = if definer { "INVOKER" } else { "DEFINER" };
    t.exec(&format!(
        "ALTER FUNCTION {SET_UPDATED_AT} SECURITY {security}"
    ))
    .await;
    let run = t
        .expect_drift(
            &[],
            &["drift: database: function forge_set_updated_at(): expected returns trigger"],
        )
        .await;
    let line = line_with(&run, "function forge_set_updated_at(): expected");
    assert!(line.contains("security definer"), "{line}");
}
