//! PostgreSQL-only behaviour of the migrations: SQL written for the seeds' databases runs
//! unchanged, triggers, row-level security, Supabase compatibility, and a clean `down`.

mod common;

use common::{TestDb, expect_sql_error, query_i64, query_string};
use forge_db::sea_orm::{ConnectionTrait, TransactionTrait};
use forge_db::{Migrator, MigratorTrait, migration::TABLES};

const USER_A: &str = "11111111-1111-4111-8111-111111111111";
const USER_B: &str = "22222222-2222-4222-8222-222222222222";

async fn insert_profile<C: ConnectionTrait>(db: &C, id: &str, email: &str) {
    db.execute_unprepared(&format!(
        "INSERT INTO profiles (id, email, display_name) VALUES ('{id}', '{email}', 'x')"
    ))
    .await
    .expect("insert profile");
}

/// Seed 002, step 9, verbatim (after a profile exists, as its comment says).
const SEED_002_STEP_9: &str = r#"
INSERT INTO projects (id, user_id, name, description)
VALUES (
  gen_random_uuid(),
  (SELECT id FROM profiles LIMIT 1),
  'Test Todo App',
  'A sample todo application for testing'
);

INSERT INTO coding_sessions (
  id, user_id, project_id,
  initial_prompt, expires_at
)
VALUES (
  gen_random_uuid(),
  (SELECT id FROM profiles LIMIT 1),
  (SELECT id FROM projects LIMIT 1),
  'Build a todo app with React',
  NOW() + INTERVAL '1 hour'
);

INSERT INTO coding_jobs (session_id, prompt)
VALUES (
  (SELECT id FROM coding_sessions LIMIT 1),
  'Build a todo app with React'
);

INSERT INTO session_events (session_id, event_type, data)
VALUES
  (
    (SELECT id FROM coding_sessions LIMIT 1),
    'thinking',
    '{"message": "Planning the todo app structure..."}'::jsonb
  ),
  (
    (SELECT id FROM coding_sessions LIMIT 1),
    'terminal',
    '{"command": "npm install", "output": "Installing dependencies..."}'::jsonb
  );
"#;

#[tokio::test]
async fn seed_002_step_9_runs_unchanged() {
    let t = TestDb::postgres().await;
    insert_profile(&t.owner, USER_A, "a@example.com").await;
    t.owner
        .execute_unprepared(SEED_002_STEP_9)
        .await
        .expect("seed 002 step 9");

    // The database filled in what the seed leaves out.
    let job_status = query_string(&t.owner, "SELECT status FROM coding_jobs").await;
    assert_eq!(job_status.as_deref(), Some("pending"));
    assert_eq!(
        query_i64(&t.owner, "SELECT max_retries::bigint FROM coding_jobs").await,
        3
    );
    let seqs = query_string(
        &t.owner,
        "SELECT string_agg(seq::text || ':' || event_type, ',' ORDER BY seq) FROM session_events",
    )
    .await;
    assert_eq!(seqs.as_deref(), Some("1:thinking,2:terminal"));
    let status = query_string(&t.owner, "SELECT status FROM coding_sessions").await;
    assert_eq!(status.as_deref(), Some("pending"));
    t.finish().await;
}

#[tokio::test]
async fn seed_003_batch_items_columns_insert_unchanged() {
    let t = TestDb::postgres().await;
    insert_profile(&t.owner, USER_A, "a@example.com").await;
    t.owner.execute_unprepared(&format!(
        r#"INSERT INTO batch_jobs (id, created_by, name, configuration)
           VALUES ('33333333-3333-4333-8333-333333333333', '{USER_A}', 'batch',
                   '{{"tier":"template","shared_parameters":{{}},"concurrent_processing":3,"error_handling":"continue"}}'::jsonb);
           INSERT INTO batch_items (batch_job_id, position, topic, tier, parameters, status)
           VALUES ('33333333-3333-4333-8333-333333333333', 1, 'Conversation', 'template', '{{}}'::jsonb, 'queued');"#
    ))
    .await
    .expect("seed 003 style insert");
    assert_eq!(
        query_i64(&t.owner, "SELECT progress::bigint FROM batch_items").await,
        0,
        "progress defaults to 0"
    );
    // Seed 003's CREATE TABLE IF NOT EXISTS is a no-op over ours.
    t.owner.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS public.batch_items (id UUID PRIMARY KEY DEFAULT gen_random_uuid())",
    )
    .await
    .expect("seed 003 DDL is idempotent over Forge's table");
    t.finish().await;
}

#[tokio::test]
async fn updated_at_trigger_keeps_it_current() {
    let t = TestDb::postgres().await;
    insert_profile(&t.owner, USER_A, "a@example.com").await;
    t.owner.execute_unprepared(
        "UPDATE profiles SET updated_at = '2000-01-01T00:00:00Z', created_at = '2000-01-01T00:00:00Z'",
    )
    .await
    .unwrap();
    let age = query_i64(
        &t.owner,
        "SELECT extract(epoch FROM now() - updated_at)::bigint FROM profiles",
    )
    .await;
    assert!(
        age < 60,
        "the trigger overrode the stale updated_at (age {age}s)"
    );
    let created = query_string(&t.owner, "SELECT created_at::date::text FROM profiles").await;
    assert_eq!(
        created.as_deref(),
        Some("2000-01-01"),
        "created_at is left alone"
    );
    t.finish().await;
}

#[tokio::test]
async fn rls_is_enabled_with_the_policies_of_schema_md() {
    let t = TestDb::postgres().await;
    for table in TABLES {
        let on = query_string(
            &t.owner,
            &format!(
                "SELECT relrowsecurity::text FROM pg_class WHERE oid = 'public.{table}'::regclass"
            ),
        )
        .await;
        assert_eq!(on.as_deref(), Some("true"), "RLS on {table}");
    }
    let policies = query_string(
        &t.owner,
        "SELECT string_agg(tablename || ':' || cmd, ',' ORDER BY tablename, cmd)
         FROM pg_policies WHERE schemaname = 'public' AND roles = '{authenticated}'",
    )
    .await
    .unwrap_or_default();
    // Turns and items are written by their parent's owner only on insert (SCHEMA.md).
    let expected = [
        "activity_logs:SELECT",
        "api_keys:SELECT",
        "api_keys:UPDATE",
        "artifacts:SELECT",
        "batch_items:INSERT",
        "batch_items:SELECT",
        "batch_jobs:DELETE",
        "batch_jobs:INSERT",
        "batch_jobs:SELECT",
        "batch_jobs:UPDATE",
        "coding_jobs:SELECT",
        "coding_sessions:INSERT",
        "coding_sessions:SELECT",
        "coding_sessions:UPDATE",
        "conversation_turns:INSERT",
        "conversation_turns:SELECT",
        "conversations:DELETE",
        "conversations:INSERT",
        "conversations:SELECT",
        "conversations:UPDATE",
        "credit_accounts:SELECT",
        "credit_transactions:SELECT",
        "edge_cases:DELETE",
        "edge_cases:INSERT",
        "edge_cases:SELECT",
        "edge_cases:UPDATE",
        "export_logs:SELECT",
        "generation_logs:SELECT",
        "job_events:SELECT",
        "jobs:INSERT",
        "jobs:SELECT",
        "jobs:UPDATE",
        "notification_preferences:SELECT",
        "notification_preferences:UPDATE",
        "notifications:DELETE",
        "notifications:SELECT",
        "notifications:UPDATE",
        "profiles:SELECT",
        "profiles:UPDATE",
        "projects:DELETE",
        "projects:INSERT",
        "projects:SELECT",
        "projects:UPDATE",
        "prompts:SELECT",
        "scenarios:DELETE",
        "scenarios:INSERT",
        "scenarios:SELECT",
        "scenarios:UPDATE",
        "session_events:SELECT",
        "templates:INSERT",
        "templates:SELECT",
        "templates:UPDATE",
        "usage_metrics:SELECT",
    ]
    .join(",");
    assert_eq!(policies, expected);
    for role in ["anon", "authenticated", "service_role"] {
        assert_eq!(
            query_i64(
                &t.owner,
                &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")
            )
            .await,
            1,
            "role {role}"
        );
    }
    t.finish().await;
}

/// Runs `sql` as `authenticated` with `uid`'s claims, in a transaction that is rolled back.
async fn as_user_count(t: &TestDb, uid: &str, sql: &str) -> i64 {
    let txn = t.owner.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "SET LOCAL ROLE authenticated; SELECT set_config('request.jwt.claims', '{{\"sub\":\"{uid}\"}}', true);"
    ))
    .await
    .unwrap();
    let n = query_i64(&txn, sql).await;
    txn.rollback().await.unwrap();
    n
}

#[tokio::test]
async fn rls_wall_holds_without_any_filter() {
    let t = TestDb::postgres().await;
    insert_profile(&t.owner, USER_A, "a@example.com").await;
    insert_profile(&t.owner, USER_B, "b@example.com").await;
    t.owner.execute_unprepared(SEED_002_STEP_9).await.unwrap(); // all owned by one of them
    let owner = query_string(&t.owner, "SELECT user_id::text FROM projects")
        .await
        .unwrap();
    let other = if owner == USER_A { USER_B } else { USER_A };

    for table in [
        "profiles",
        "projects",
        "coding_sessions",
        "coding_jobs",
        "session_events",
    ] {
        let all = query_i64(&t.owner, &format!("SELECT count(*) FROM {table}")).await;
        let mine = as_user_count(&t, &owner, &format!("SELECT count(*) FROM {table}")).await;
        let theirs = as_user_count(&t, other, &format!("SELECT count(*) FROM {table}")).await;
        let expected_mine = if table == "profiles" { 1 } else { all };
        assert_eq!(mine, expected_mine, "owner sees own rows of {table}");
        assert_eq!(
            theirs,
            if table == "profiles" { 1 } else { 0 },
            "other user sees none of {table}"
        );
    }

    // The other user cannot start a session on the owner's project, even knowing its id.
    let project = query_string(&t.owner, "SELECT id::text FROM projects")
        .await
        .unwrap();
    let txn = t.owner.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "SET LOCAL ROLE authenticated; SELECT set_config('request.jwt.claim.sub', '{other}', true);"
    ))
    .await
    .unwrap();
    let err = expect_sql_error(
        &txn,
        &format!(
            "INSERT INTO coding_sessions (user_id, project_id, initial_prompt, expires_at)
             VALUES ('{other}', '{project}', 'steal', now() + interval '1 hour')"
        ),
    )
    .await;
    txn.rollback().await.unwrap();
    // The wall's trigger cannot see the project in the other user's context, so it is
    // missing to them (the insert policy would refuse it next).
    assert!(err.contains("forge:not_found:project"), "{err}");
    t.finish().await;
}

#[tokio::test]
async fn seq_is_gapless_under_concurrent_writers() {
    let t = TestDb::postgres().await;
    insert_profile(&t.owner, USER_A, "a@example.com").await;
    t.owner.execute_unprepared(SEED_002_STEP_9).await.unwrap();
    // The seed appended seq 1 and 2 (events are append-only: they stay).
    let url = t.pg_url().unwrap();

    let mut writers = Vec::new();
    for w in 0..6 {
        let url = url.clone();
        writers.push(tokio::spawn(async move {
            let db = forge_db::connect(&url).await.unwrap();
            for i in 0..25 {
                db.execute_unprepared(&format!(
                    "INSERT INTO session_events (session_id, event_type, data)
                     SELECT id, 'terminal', '{{\"w\":{w},\"i\":{i}}}' FROM coding_sessions"
                ))
                .await
                .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(
        query_i64(&t.owner, "SELECT count(*) FROM session_events").await,
        152
    );
    assert_eq!(
        query_i64(&t.owner, "SELECT max(seq) FROM session_events").await,
        152
    );
    assert_eq!(
        query_i64(&t.owner, "SELECT min(seq) FROM session_events").await,
        1
    );
    t.finish().await;
}

/// The `pg_dump` of `pg_config --bindir`, else the one on `PATH`.
fn pg_dump_path() -> String {
    std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!("{}/pg_dump", String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| "pg_dump".to_owned())
}

fn pg_dump_schema(url: &str) -> String {
    let pg_dump = pg_dump_path();
    let out = std::process::Command::new(&pg_dump)
        .args(["--schema-only", "--no-owner", url])
        .output()
        .unwrap_or_else(|e| panic!("run {pg_dump}: {e}"));
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // pg_dump 15.14+ brackets its output with a random \restrict key.
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The major version of the `pg_dump` that [`pg_dump_schema`] runs.
fn pg_dump_major() -> Option<u32> {
    let out = std::process::Command::new(pg_dump_path())
        .arg("--version")
        .output()
        .ok()?;
    // "pg_dump (PostgreSQL) 15.18 (Debian …)"
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Every schema object of `public` (tables and their security flags, columns, constraints,
/// indexes, triggers, functions by definition, policies, enum types, table and column
/// privileges), one sorted line each, from the catalogs: what [`pg_dump_schema`] compares,
/// for a server newer than the `pg_dump` at hand (pg_dump refuses those).
async fn catalog_schema(db: &forge_db::sea_orm::DatabaseConnection) -> String {
    common::query_string(
        db,
        "SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
           SELECT 'table ' || c.relname || ' ' || c.relkind::text || ' rls=' || c.relrowsecurity::text
                  || ' force=' || c.relforcerowsecurity::text || ' acl=' || coalesce(c.relacl::text, '')
             FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
           UNION ALL
           SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' '
                  || udt_name || ' ' || is_nullable || ' ' || coalesce(column_default, '')
             FROM information_schema.columns WHERE table_schema = 'public'
           UNION ALL
           SELECT 'colacl ' || a.attrelid::regclass || '.' || a.attname || ' ' || a.attacl::text
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND a.attacl IS NOT NULL
           UNION ALL
           SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' '
                  || pg_get_constraintdef(oid)
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace
           UNION ALL
           SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
           UNION ALL
           SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace
           UNION ALL
           SELECT 'function ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid))
                  || ' acl=' || coalesce(p.proacl::text, '')
             FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
           UNION ALL
           SELECT 'policy ' || tablename || ' ' || policyname || ' ' || permissive || ' ' || cmd
                  || ' ' || array_to_string(roles, ',') || ' ' || coalesce(qual, '') || ' '
                  || coalesce(with_check, '')
             FROM pg_policies WHERE schemaname = 'public'
           UNION ALL
           SELECT 'type ' || t.typname || ' ' || array_to_string(array(
                    SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid
                     ORDER BY e.enumsortorder), ',')
             FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'e'
         ) s(line)",
    )
    .await
    .unwrap_or_default()
}

/// The schema of `t`'s database as text: `pg_dump --schema-only` when its major version
/// is the server's, else [`catalog_schema`] (PostgreSQL 18 runs here have a `pg_dump` 15).
async fn schema_text(t: &TestDb) -> String {
    let server = query_i64(
        &t.owner,
        "SELECT current_setting('server_version_num')::bigint",
    )
    .await;
    if pg_dump_major().map(i64::from) == Some(server / 10_000) {
        pg_dump_schema(&t.pg_url().unwrap())
    } else {
        eprintln!(
            "pg_dump is not PostgreSQL {}'s: comparing the catalogs",
            server / 10_000
        );
        catalog_schema(&t.owner).await
    }
}

#[tokio::test]
async fn down_is_complete_and_up_again_is_identical() {
    let t = TestDb::postgres().await;
    let first = schema_text(&t).await;
    assert!(
        first.contains("projects_select_own"),
        "the schema text has the policies"
    );
    assert!(first.lines().count() > 300, "{first}");

    Migrator::reset(&t.owner).await.expect("reset");
    let left = query_i64(
        &t.owner,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    )
    .await;
    assert_eq!(left, 0, "reset leaves no table");
    assert_eq!(
        query_i64(
            &t.owner,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'auth'"
        )
        .await,
        0,
        "the auth stand-in Forge created is gone"
    );
    assert_eq!(
        query_i64(
            &t.owner,
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'forge\\_%'"
        )
        .await,
        0,
        "Forge's functions are gone"
    );

    Migrator::up(&t.owner, None).await.expect("up again");
    let second = schema_text(&t).await;
    assert_eq!(first, second, "up → reset → up gives the same schema");
    t.finish().await;
}

#[tokio::test]
async fn supabase_auth_is_used_not_replaced() {
    let t = TestDb::postgres_empty().await;
    // What Supabase provides before any migration runs: its roles, `auth`, and the
    // platform's default privileges (ALL on every new table, function and sequence of
    // `public` to anon, authenticated and service_role).
    t.owner
        .execute_unprepared(common::SUPABASE_PLATFORM)
        .await
        .unwrap();
    t.owner
        .execute_unprepared(
            "CREATE SCHEMA auth;
         CREATE TABLE auth.users (id uuid PRIMARY KEY, email text, raw_user_meta_data jsonb);
         CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS
           $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
         COMMENT ON FUNCTION auth.uid() IS 'supabase';",
        )
        .await
        .unwrap();
    Migrator::up(&t.owner, None)
        .await
        .expect("migrate over Supabase's auth");

    let comment = query_string(
        &t.owner,
        "SELECT obj_description('auth.uid()'::regprocedure, 'pg_proc')",
    )
    .await;
    assert_eq!(
        comment.as_deref(),
        Some("supabase"),
        "Supabase's auth.uid() is kept"
    );

    // The default privileges were taken back: anon reaches nothing, authenticated only
    // what the contract grants, nobody but the owner the bookkeeping, and no trigger
    // function is executable.
    let mut tables: Vec<&str> = TABLES.to_vec();
    tables.extend(["seaql_migrations", "forge_migration_checksums"]);
    for table in tables {
        let reachable = query_i64(
            &t.owner,
            &format!(
                "SELECT count(*) FROM (VALUES ('anon'), ('authenticated'), ('service_role')) r(role)
                 WHERE has_table_privilege(r.role, 'public.{table}', 'TRUNCATE, REFERENCES, TRIGGER')
                    OR (r.role = 'anon' AND has_table_privilege(r.role, 'public.{table}', 'SELECT, INSERT, UPDATE, DELETE'))
                    OR ('{table}' LIKE '%migration%' AND has_table_privilege(r.role, 'public.{table}', 'SELECT, INSERT, UPDATE, DELETE'))"
            ),
        )
        .await;
        assert_eq!(reachable, 0, "a default privilege on {table} survived");
    }
    let executable = query_i64(
        &t.owner,
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
                (VALUES ('anon'), ('authenticated'), ('service_role')) r(role)
         WHERE n.nspname = 'public' AND p.proname LIKE 'forge\\_%'
           AND has_function_privilege(r.role, p.oid, 'EXECUTE')",
    )
    .await;
    assert_eq!(
        executable, 0,
        "a Forge function is executable by a client role"
    );

    // Signup creates the profile (seed 002 steps 2 and 8).
    t.owner
        .execute_unprepared(&format!(
            "INSERT INTO auth.users (id, email, raw_user_meta_data) VALUES
           ('{USER_A}', ' Ada@Example.com ', NULL),
           ('{USER_B}', 'bob@example.com', '{{\"display_name\":\"Bobby\"}}')"
        ))
        .await
        .expect("signup");
    let profiles = query_string(
        &t.owner,
        "SELECT string_agg(email || '=' || display_name, ',' ORDER BY email) FROM profiles",
    )
    .await;
    assert_eq!(
        profiles.as_deref(),
        Some("ada@example.com=ada,bob@example.com=Bobby")
    );

    Migrator::reset(&t.owner).await.expect("reset");
    assert_eq!(
        query_i64(
            &t.owner,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'on_auth_user_created'"
        )
        .await,
        0
    );
    let comment = query_string(
        &t.owner,
        "SELECT obj_description('auth.uid()'::regprocedure, 'pg_proc')",
    )
    .await;
    assert_eq!(
        comment.as_deref(),
        Some("supabase"),
        "reset leaves Supabase's auth alone"
    );
    Migrator::up(&t.owner, None).await.expect("up again");
    t.finish().await;
}

/// A user writes a batch's configuration on insert (PostgREST), so the database bounds it
/// exactly as the repositories do: `batches::MAX_CONCURRENCY` items in flight at most.
#[tokio::test]
async fn batch_configuration_is_bounded_by_the_database() {
    use forge_db::service::batches::MAX_CONCURRENCY;
    let t = TestDb::postgres().await;
    insert_profile(&t.owner, USER_A, "a@example.com").await;
    let insert = |config: String| {
        format!(
            "INSERT INTO batch_jobs (created_by, name, configuration)
             VALUES ('{USER_A}', 'b', '{config}'::jsonb)"
        )
    };
    let at_most = format!(r#"{{"tier":"scenario","concurrent_processing":{MAX_CONCURRENCY}}}"#);
    t.owner.execute_unprepared(&insert(at_most)).await.unwrap();
    let camel = r#"{"tier":"template","concurrentProcessing":5,"errorHandling":"stop"}"#;
    t.owner
        .execute_unprepared(&insert(camel.to_owned()))
        .await
        .expect("the original app's camelCase keys are accepted");
    let refused = [
        format!(
            r#"{{"tier":"scenario","concurrent_processing":{}}}"#,
            MAX_CONCURRENCY + 1
        ),
        r#"{"tier":"scenario","concurrent_processing":0}"#.to_owned(),
        r#"{"tier":"scenario","concurrent_processing":"many"}"#.to_owned(),
        r#"{"tier":"gold"}"#.to_owned(),
        r#"{"tier":"scenario","error_handling":"retry"}"#.to_owned(),
        "[]".to_owned(),
    ];
    for config in refused {
        let err = expect_sql_error(&t.owner, &insert(config.clone())).await;
        assert!(
            err.contains("batch_jobs_configuration_check"),
            "{config}: {err}"
        );
    }
    t.finish().await;
}

/// The live-session limit holds for raw SQL too, as a Supabase user would send it through
/// PostgREST: twelve connections insert a session for the same user at once, as
/// `authenticated` with the user's claims, against a limit of 3.
#[tokio::test]
async fn sessions_limit_holds_for_racing_raw_inserts() {
    let t = TestDb::postgres().await;
    insert_profile(&t.owner, USER_A, "a@example.com").await;
    t.owner
        .execute_unprepared(&format!(
            "INSERT INTO projects (user_id, name) VALUES ('{USER_A}', 'p')"
        ))
        .await
        .unwrap();
    let url = t.pg_url().unwrap();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(12));
    let mut racers = Vec::new();
    for _ in 0..12 {
        let (url, start) = (url.clone(), start.clone());
        racers.push(tokio::spawn(async move {
            let db = forge_db::connect(&url).await.unwrap();
            let txn = db.begin().await.unwrap();
            txn.execute_unprepared(&format!(
                "SET LOCAL ROLE authenticated;
                 SELECT set_config('request.jwt.claims', '{{\"sub\":\"{USER_A}\"}}', true),
                        set_config('request.jwt.claim.sub', '{USER_A}', true);"
            ))
            .await
            .unwrap();
            start.wait().await;
            let inserted = txn
                .execute_unprepared(&format!(
                    "INSERT INTO coding_sessions (user_id, project_id, initial_prompt, expires_at)
                     SELECT '{USER_A}', id, 'race', now() + interval '1 hour' FROM projects"
                ))
                .await;
            match inserted {
                Ok(_) => txn.commit().await.map(|()| true).unwrap(),
                Err(e) => {
                    assert!(e.to_string().contains("forge:limit:live sessions:3"), "{e}");
                    txn.rollback().await.unwrap();
                    false
                }
            }
        }));
    }
    let mut won = 0;
    for racer in racers {
        won += u32::from(racer.await.unwrap());
    }
    assert_eq!(won, 3, "exactly sessions_limit starts win");
    assert_eq!(
        query_i64(&t.owner, "SELECT count(*) FROM coding_sessions").await,
        3
    );
    t.finish().await;
}

/// A database migrated before the wall, with totals and counters that drifted (written by
/// hand, as the old privileges allowed), is brought in line by the upgrade, and verifies.
#[tokio::test]
async fn upgrading_reconciles_totals_and_counters() {
    let t = TestDb::postgres_empty().await;
    Migrator::up(&t.owner, Some(5)).await.unwrap();
    insert_profile(&t.owner, USER_A, "a@example.com").await;
    t.owner
        .execute_unprepared(&format!(
            "INSERT INTO conversations (id, conversation_id, created_by, tier, persona, emotion,
                                        topic, intent, tone, total_turns, total_tokens)
             VALUES ('{USER_B}', 'c-1', '{USER_A}', 'template', 'p', 'e', 't', 'i', 'n', 9, 999);
             INSERT INTO conversation_turns (conversation_id, turn_number, role, content, token_count)
             VALUES ('{USER_B}', 1, 'user', 'hi', 5), ('{USER_B}', 2, 'assistant', 'hello', 7);
             INSERT INTO batch_jobs (id, created_by, name, configuration, total_items, completed_items,
                                     successful_items)
             VALUES ('{USER_B}', '{USER_A}', 'b', '{{\"tier\":\"scenario\"}}', 7, 7, 7);
             INSERT INTO batch_items (batch_job_id, position, topic, tier, status)
             VALUES ('{USER_B}', 1, 'x', 'scenario', 'completed'),
                    ('{USER_B}', 2, 'y', 'scenario', 'failed'),
                    ('{USER_B}', 3, 'z', 'scenario', 'queued');"
        ))
        .await
        .unwrap();
    Migrator::up(&t.owner, None).await.expect("upgrade");
    assert_eq!(
        query_string(
            &t.owner,
            "SELECT total_turns || ',' || total_tokens FROM conversations"
        )
        .await
        .as_deref(),
        Some("2,12")
    );
    assert_eq!(
        query_string(
            &t.owner,
            "SELECT concat_ws(',', total_items, completed_items, successful_items, failed_items)
             FROM batch_jobs"
        )
        .await
        .as_deref(),
        Some("3,2,1,1")
    );
    let url = t.pg_url().unwrap();
    let report = forge_db::migration::verify(&url)
        .await
        .expect("verify runs");
    assert!(report.passes(false), "{report:?}");
    t.finish().await;
}
