//! The keyset indexes (`m20261130_000010_keyset_indexes`), on SQLite and PostgreSQL, with
//! rows of many owners in every table and the statistics analysed:
//! - an owner's first page (the SQL the service's list runs: `WHERE owner = $1 [AND …]
//!   ORDER BY created_at DESC, id DESC LIMIT 51`) is read from the owner's range of the
//!   list's keyset index. SQLite: `EXPLAIN QUERY PLAN` names the index and builds no temp
//!   B-tree for the order. PostgreSQL (`EXPLAIN (ANALYZE, FORMAT JSON)`): for an owner with
//!   many rows an index scan in list order with no Sort node, stopping after the page; for
//!   a small owner, and in the generic plan of a prepared statement, only the owner's
//!   rows are read, through the same index;
//! - `down` puts back exactly the indexes that were there before, `up` again gives the
//!   same ones, no foreign key loses its index (Supabase's `unindexed_foreign_keys`), and
//!   `verify` is clean.
//!
//! PostgreSQL tests need `FORGE_TEST_DATABASE_URL` (a superuser URL; run them with
//! `scripts/with-postgres.sh cargo test -p forge-migration --test keyset`). Without it they
//! fail: they never skip.

use std::collections::BTreeMap;
use std::path::PathBuf;

use forge_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value,
};
use forge_migration::verify::url_for_database;
use forge_migration::{Migrator, MigratorTrait, connect, verify};
use serde_json::Value as Json;

/// A database that exists only for one test, migrated as the test says.
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
             scripts/with-postgres.sh cargo test -p forge-migration --test keyset"
        ),
    }
}

async fn admin_exec(sql: &str) {
    let admin = connect(&pg_admin_url()).await.expect("connect as admin");
    admin.execute_unprepared(sql).await.expect(sql);
    admin.close().await.ok();
}

impl TestDb {
    /// An empty SQLite file in a directory of its own (a file: `verify` opens it again).
    async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(unique("forge-keyset"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/forge.db?mode=rwc", dir.display());
        Self::open(url, Cleanup::Dir(dir)).await
    }

    /// An empty PostgreSQL database of its own.
    async fn postgres() -> Self {
        let admin = pg_admin_url();
        let name = unique("forge_keyset_test");
        admin_exec(&format!("CREATE DATABASE {name}")).await;
        let url = url_for_database(&admin, &name);
        Self::open(url, Cleanup::Database(name)).await
    }

    async fn open(url: String, cleanup: Cleanup) -> Self {
        let db = connect(&url).await.expect("connect");
        Self { db, url, cleanup }
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    fn is_postgres(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }

    async fn exec(&self, sql: &str) {
        self.db.execute_unprepared(sql).await.expect(sql);
    }

    /// Every row of `sql`, each column read as text.
    async fn texts(&self, sql: &str, values: Vec<Value>) -> Vec<Vec<String>> {
        let stmt = Statement::from_sql_and_values(self.backend(), sql, values);
        let rows = self.db.query_all_raw(stmt).await.expect(sql);
        rows.iter()
            .map(|row| {
                (0..)
                    .map_while(|i| row.try_get_by_index::<Option<String>>(i).ok())
                    .map(Option::unwrap_or_default)
                    .collect()
            })
            .collect()
    }

    /// Every index that backs no constraint: name → definition (as the catalog prints it).
    async fn indexes(&self) -> BTreeMap<String, String> {
        let sql = if self.is_postgres() {
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        } else {
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        };
        self.texts(sql, vec![])
            .await
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect()
    }

    /// Foreign keys with no index whose leading columns are theirs (PostgreSQL: the query
    /// of Supabase's `unindexed_foreign_keys` lint; SQLite: the same over its pragmas).
    async fn unindexed_foreign_keys(&self) -> Vec<String> {
        let sql = if self.is_postgres() {
            "SELECT c.conrelid::regclass::text || '.' || c.conname
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE c.contype = 'f' AND n.nspname = 'public'
               AND NOT EXISTS (
                 SELECT 1 FROM pg_index i
                 CROSS JOIN LATERAL (
                   SELECT array_agg(k.attnum) AS leading
                   FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, o)
                   WHERE k.o <= cardinality(c.conkey)) AS l
                 WHERE i.indrelid = c.conrelid AND l.leading @> c.conkey
                   AND l.leading <@ c.conkey)"
        } else {
            // Every foreign key of Forge's tables has one column.
            "SELECT t.name || '.' || f.\"from\"
             FROM sqlite_master t JOIN pragma_foreign_key_list(t.name) f
             WHERE t.type = 'table'
               AND NOT EXISTS (
                 SELECT 1 FROM pragma_index_list(t.name) l
                 JOIN pragma_index_info(l.name) i
                 WHERE i.seqno = 0 AND i.name = f.\"from\")"
        };
        self.texts(sql, vec![])
            .await
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
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

on_both_backends!(
    a_first_page_reads_only_the_owners_rows_from_the_keyset_index,
    down_restores_the_old_indexes_and_up_again_is_clean,
);

/// One owner-scoped list as the service runs it.
struct List {
    /// The service function, for messages.
    name: &'static str,
    table: &'static str,
    owner: &'static str,
    /// The tie-break after `created_at`.
    key: &'static str,
    /// The other conditions the list always adds (values the service binds, written out).
    extra: &'static str,
    /// `DESC` (newest first) or `ASC` (the review queue: the index read backwards).
    order: &'static str,
    /// One row in `one_in` of an owner's rows meets `extra`.
    one_in: u64,
    /// The index that must serve it.
    index: &'static str,
}

const LISTS: &[List] = &[
    List {
        name: "projects::list",
        table: "projects",
        owner: "user_id",
        key: "id",
        extra: " AND status <> 'deleted'",
        order: "DESC",
        one_in: 1,
        index: "idx_projects_user_id_keyset",
    },
    List {
        name: "sessions::list",
        table: "coding_sessions",
        owner: "user_id",
        key: "id",
        extra: "",
        order: "DESC",
        one_in: 1,
        index: "idx_coding_sessions_user_id_keyset",
    },
    List {
        name: "conversations::list",
        table: "conversations",
        owner: "created_by",
        key: "id",
        extra: "",
        order: "DESC",
        one_in: 1,
        index: "idx_conversations_created_by_keyset",
    },
    List {
        name: "conversations::review_queue",
        table: "conversations",
        owner: "created_by",
        key: "id",
        extra: " AND status = 'pending_review'",
        order: "ASC",
        one_in: 3,
        index: "idx_conversations_created_by_keyset",
    },
    List {
        name: "batches::list",
        table: "batch_jobs",
        owner: "created_by",
        key: "id",
        extra: "",
        order: "DESC",
        one_in: 1,
        index: "idx_batch_jobs_created_by_keyset",
    },
    List {
        name: "pipeline::list",
        table: "jobs",
        owner: "owner_id",
        key: "run_id",
        extra: "",
        order: "DESC",
        one_in: 1,
        index: "idx_jobs_owner_id_keyset",
    },
    List {
        name: "templates::list by creator",
        table: "templates",
        owner: "created_by",
        key: "id",
        extra: " AND is_active = true",
        order: "DESC",
        one_in: 1,
        index: "idx_templates_created_by_keyset",
    },
    List {
        name: "scenarios::list",
        table: "scenarios",
        owner: "created_by",
        key: "id",
        extra: "",
        order: "DESC",
        one_in: 1,
        index: "idx_scenarios_created_by_keyset",
    },
    List {
        name: "scenarios::list_edge_cases",
        table: "edge_cases",
        owner: "created_by",
        key: "id",
        extra: "",
        order: "DESC",
        one_in: 1,
        index: "idx_edge_cases_created_by_keyset",
    },
    List {
        name: "generation::list_logs",
        table: "generation_logs",
        owner: "user_id",
        key: "id",
        extra: "",
        order: "DESC",
        one_in: 1,
        index: "idx_generation_logs_user_id",
    },
    List {
        name: "exports::logs",
        table: "export_logs",
        owner: "user_id",
        key: "id",
        extra: "",
        order: "DESC",
        one_in: 1,
        index: "idx_export_logs_user_id_keyset",
    },
];

/// Rows per owner: one big tenant (a fifth of each table), one small one (a page and a
/// half), many tiny ones. Every owner's rows are spread over the same 30 days, so the
/// owners' rows interleave in `created_at` order as they do in a live database.
const BIG: u32 = 2000;
const SMALL: u32 = 80;
const TINY: u32 = 20;
const TINY_OWNERS: u32 = 400;
const SECONDS: u32 = 30 * 24 * 3600;
/// A page of 50 and the row that says whether there is a next one.
const PAGE: u32 = 51;

impl List {
    /// The first page's SQL, with the owner as parameter `param`.
    fn sql(&self, param: &str) -> String {
        format!(
            "SELECT * FROM {table} WHERE {owner} = {param}{extra} \
             ORDER BY created_at {order}, {key} {order} LIMIT {PAGE}",
            table = self.table,
            owner = self.owner,
            extra = self.extra,
            order = self.order,
            key = self.key,
        )
    }
}

/// `WITH RECURSIVE` rows `(owner, n, r)`: `n` = 1 … `r`, the owner's row count, for every
/// test owner; `{uuid}`, `{text_id}` and `{ago}` are filled in per backend.
const SLOTS: &str = "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < {big}), \
     owners(owner, r) AS ( \
       SELECT p.id, CASE p.email WHEN 'big@keyset.test' THEN {big} \
                                 WHEN 'small@keyset.test' THEN {small} ELSE {tiny} END \
       FROM profiles p WHERE p.email LIKE '%@keyset.test'), \
     slots(owner, n, r) AS (SELECT o.owner, k.n, o.r FROM owners o JOIN k ON k.n <= o.r) ";

/// One `INSERT … SELECT … FROM slots` per table, parents first.
const INSERTS: &[&str] = &[
    "INSERT INTO projects (id, user_id, name, created_at) \
     SELECT {uuid}, owner, 'project ' || n, {ago} FROM slots",
    // Ended sessions: the live-session limit does not apply to them.
    "INSERT INTO coding_sessions (id, user_id, project_id, initial_prompt, status, expires_at, created_at) \
     SELECT {uuid}, owner, (SELECT p.id FROM projects p WHERE p.user_id = slots.owner LIMIT 1), \
            'prompt', 'completed', {ago}, {ago} FROM slots",
    "INSERT INTO conversations (id, conversation_id, created_by, status, tier, persona, emotion, \
                                topic, intent, tone, created_at) \
     SELECT {uuid}, 'conv-' || {text_id}, owner, \
            CASE WHEN n % 3 = 0 THEN 'pending_review' ELSE 'draft' END, \
            'template', 'p', 'e', 't', 'i', 'tone', {ago} FROM slots",
    "INSERT INTO batch_jobs (id, created_by, name, configuration, created_at) \
     SELECT {uuid}, owner, 'batch ' || n, '{}', {ago} FROM slots",
    "INSERT INTO jobs (run_id, project_spec, owner_id, created_at) \
     SELECT 'run-' || {text_id}, '{}', owner, {ago} FROM slots",
    "INSERT INTO templates (id, template_name, category, tier, template_text, created_by, created_at) \
     SELECT {uuid}, 'template ' || n, 'c', 'template', 'text', owner, {ago} FROM slots",
    "INSERT INTO scenarios (id, name, parent_template_id, topic, persona, emotional_arc, created_by, created_at) \
     SELECT {uuid}, 'scenario ' || n, \
            (SELECT t.id FROM templates t WHERE t.created_by = slots.owner LIMIT 1), \
            't', 'p', 'a', owner, {ago} FROM slots",
    "INSERT INTO edge_cases (id, name, scenario_id, test_category, expected_behavior, created_by, created_at) \
     SELECT {uuid}, 'edge ' || n, \
            (SELECT s.id FROM scenarios s WHERE s.created_by = slots.owner LIMIT 1), \
            'c', 'b', owner, {ago} FROM slots",
    "INSERT INTO generation_logs (id, user_id, created_at) SELECT {uuid}, owner, {ago} FROM slots",
    "INSERT INTO export_logs (id, export_id, user_id, format, created_at) \
     SELECT {uuid}, 'export-' || {text_id}, owner, 'jsonl', {ago} FROM slots",
];

/// Fills the placeholders of `sql` for `t`'s backend.
fn render(t: &TestDb, sql: &str) -> String {
    let (uuid, text_id, ago) = if t.is_postgres() {
        (
            "gen_random_uuid()",
            "gen_random_uuid()::text",
            "now() - n * ({seconds} / r) * interval '1 second'",
        )
    } else {
        (
            "lower(hex(randomblob(16)))",
            "lower(hex(randomblob(16)))",
            "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-' || (n * ({seconds} / r)) || ' seconds')",
        )
    };
    sql.replace("{big}", &BIG.to_string())
        .replace("{small}", &SMALL.to_string())
        .replace("{tiny}", &TINY.to_string())
        .replace("{uuid}", uuid)
        .replace("{text_id}", text_id)
        .replace("{ago}", ago)
        .replace("{seconds}", &SECONDS.to_string())
}

/// A test owner: its id as the value to bind and as text, and how many rows it has.
struct Owner {
    value: Value,
    text: String,
    rows: u32,
}

impl Owner {
    async fn find(t: &TestDb, email: &str, rows: u32) -> Self {
        let find = format!("SELECT id FROM profiles WHERE email = '{email}'");
        let row =
            t.db.query_one_raw(Statement::from_string(t.backend(), find.clone()))
                .await
                .expect(&find)
                .expect("the owner");
        let (value, text) = if t.is_postgres() {
            let id = row.try_get_by_index::<uuid::Uuid>(0).expect("uuid");
            (id.into(), id.to_string())
        } else {
            let id = row.try_get_by_index::<String>(0).expect("text");
            (id.clone().into(), id)
        };
        Self { value, text, rows }
    }
}

/// Migrates `t`, fills every listed table with the rows of many owners, and analyses them;
/// returns the big owner and the small one.
async fn populate(t: &TestDb) -> (Owner, Owner) {
    Migrator::up(&t.db, None).await.expect("migrate");
    let profiles = "INSERT INTO profiles (id, email, display_name) \
                    SELECT {uuid}, 'tiny' || n || '@keyset.test', 'tiny' FROM k";
    t.exec(&render(
        t,
        &format!(
            "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < {TINY_OWNERS}) \
             {profiles}"
        ),
    ))
    .await;
    t.exec(&render(
        t,
        "INSERT INTO profiles (id, email, display_name) \
         VALUES ({uuid}, 'big@keyset.test', 'big'), ({uuid}, 'small@keyset.test', 'small')",
    ))
    .await;
    for insert in INSERTS {
        t.exec(&render(t, &format!("{SLOTS}{insert}"))).await;
    }
    // VACUUM too: without it the visibility map (which prices index scans) depends on
    // whether autovacuum happened to reach these tables first, and the plans with it.
    t.exec(if t.is_postgres() {
        "VACUUM ANALYZE"
    } else {
        "ANALYZE"
    })
    .await;
    (
        Owner::find(t, "big@keyset.test", BIG).await,
        Owner::find(t, "small@keyset.test", SMALL).await,
    )
}

/// Every node of a PostgreSQL JSON plan, depth first.
fn nodes(plan: &Json) -> Vec<&Json> {
    let mut out = vec![plan];
    if let Some(children) = plan.get("Plans").and_then(Json::as_array) {
        for child in children {
            out.extend(nodes(child));
        }
    }
    out
}

/// `Limit <- Index Scan idx_… (Forward, 51 rows + 0 removed)`: a plan on one line.
fn outline(plan: &Json) -> String {
    nodes(plan)
        .iter()
        .map(|n| {
            let mut s = n["Node Type"].as_str().unwrap_or("?").to_owned();
            if let Some(index) = n["Index Name"].as_str() {
                s.push_str(&format!(" {index}"));
            }
            if let Some(dir) = n["Scan Direction"].as_str() {
                s.push_str(&format!(" {dir}"));
            }
            if let Some(rows) = n["Actual Rows"].as_u64() {
                let removed = n["Rows Removed by Filter"].as_u64().unwrap_or(0);
                s.push_str(&format!(" ({rows} rows + {removed} removed)"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" <- ")
}

/// PostgreSQL: `EXPLAIN (ANALYZE, FORMAT JSON)` of `list`'s first page for `owner`, bound
/// as the service binds it (a custom plan); the top plan node.
async fn custom_plan(t: &TestDb, list: &List, owner: &Owner) -> Json {
    let sql = format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", list.sql("$1"));
    let stmt = Statement::from_sql_and_values(t.backend(), &sql, [owner.value.clone()]);
    let row = t.db.query_one_raw(stmt).await.expect(&sql).expect("a plan");
    let explained: Json = row.try_get_by_index(0).expect("json plan");
    explained[0]["Plan"].clone()
}

/// PostgreSQL: the generic plan of `list`'s first page (the plan a prepared statement may
/// switch to after five runs, made without knowing the owner); the top plan node.
async fn generic_plan(t: &TestDb, list: &List, owner: &Owner) -> Json {
    let txn = t.db.begin().await.expect("begin");
    txn.execute_unprepared(&format!(
        "SET LOCAL plan_cache_mode = force_generic_plan; PREPARE keyset_page(uuid) AS {}",
        list.sql("$1")
    ))
    .await
    .expect("prepare");
    let sql = format!(
        "EXPLAIN (FORMAT JSON) EXECUTE keyset_page('{}')",
        owner.text
    );
    let row = txn
        .query_one_raw(Statement::from_string(t.backend(), sql.clone()))
        .await
        .expect(&sql)
        .expect("a plan");
    let explained: Json = row.try_get_by_index(0).expect("json plan");
    txn.execute_unprepared("DEALLOCATE keyset_page")
        .await
        .expect("deallocate");
    txn.commit().await.expect("commit");
    explained[0]["Plan"].clone()
}

/// Asserts that `plan` reads the table through `list.index`: no sequential scan, and no
/// index scan of another index (a bitmap of another index may narrow the owner's rows).
fn assert_uses_index(list: &List, plan: &Json, what: &str) {
    let all = nodes(plan);
    for n in &all {
        let node = n["Node Type"].as_str().unwrap_or_default();
        assert!(
            node != "Seq Scan"
                && (!node.starts_with("Index") || n["Index Name"].as_str() == Some(list.index)),
            "{} ({what}): {node} {}: {}",
            list.name,
            n["Index Name"].as_str().unwrap_or_default(),
            outline(plan)
        );
    }
    assert!(
        all.iter()
            .any(|n| n["Index Name"].as_str() == Some(list.index)),
        "{} ({what}): {} unused: {}",
        list.name,
        list.index,
        outline(plan)
    );
}

/// Asserts that `plan` reads `list.index` in list order and sorts nothing; returns the
/// index scan.
fn assert_in_index_order<'p>(list: &List, plan: &'p Json, what: &str) -> &'p Json {
    assert_uses_index(list, plan, what);
    let all = nodes(plan);
    assert!(
        !all.iter()
            .any(|n| n["Node Type"].as_str().is_some_and(|t| t.contains("Sort"))),
        "{} ({what}): the plan sorts: {}",
        list.name,
        outline(plan)
    );
    let direction = if list.order == "DESC" {
        "Forward"
    } else {
        "Backward"
    };
    all.into_iter()
        .find(|n| {
            matches!(
                n["Node Type"].as_str(),
                Some("Index Scan" | "Index Only Scan")
            ) && n["Index Name"].as_str() == Some(list.index)
                && n["Scan Direction"].as_str() == Some(direction)
        })
        .unwrap_or_else(|| {
            panic!(
                "{} ({what}): no index scan {direction}: {}",
                list.name,
                outline(plan)
            )
        })
}

/// Rows of `table` the executed `plan` looked at: those its scans returned plus those the
/// list's other conditions (or a bitmap recheck) removed.
fn rows_read(plan: &Json, table: &str) -> u64 {
    nodes(plan)
        .iter()
        .filter(|n| n["Relation Name"].as_str() == Some(table))
        .map(|n| {
            [
                "Actual Rows",
                "Rows Removed by Filter",
                "Rows Removed by Index Recheck",
            ]
            .iter()
            .map(|k| n[*k].as_u64().unwrap_or(0))
            .sum::<u64>()
        })
        .sum()
}

/// SQLite: `EXPLAIN QUERY PLAN` of `list`'s first page for `owner`, one line per step.
async fn sqlite_plan(t: &TestDb, list: &List, owner: &Owner) -> Vec<String> {
    let sql = format!("EXPLAIN QUERY PLAN {}", list.sql("?"));
    let stmt = Statement::from_sql_and_values(t.backend(), &sql, [owner.value.clone()]);
    t.db.query_all_raw(stmt)
        .await
        .expect(&sql)
        .iter()
        .map(|row| row.try_get::<String>("", "detail").expect("detail"))
        .collect()
}

async fn a_first_page_reads_only_the_owners_rows_from_the_keyset_index(t: &TestDb) {
    let (big, small) = populate(t).await;
    for list in LISTS {
        if !t.is_postgres() {
            for owner in [&big, &small] {
                let plan = sqlite_plan(t, list, owner).await;
                let uses = format!("USING INDEX {} (", list.index);
                assert!(
                    plan.iter().any(|d| d.contains(&uses)),
                    "{}: {} unused: {plan:?}",
                    list.name,
                    list.index
                );
                assert!(
                    !plan.iter().any(|d| d.contains("TEMP B-TREE")),
                    "{}: the plan sorts: {plan:?}",
                    list.name
                );
                eprintln!("{} ({} rows): {}", list.name, owner.rows, plan.join(" | "));
            }
            continue;
        }

        // An owner with many rows: the first page is the first rows of its range, in
        // order; the scan stops once the page is full.
        let plan = custom_plan(t, list, &big).await;
        assert_in_index_order(list, &plan, "many rows");
        let read = rows_read(&plan, list.table);
        let bound = u64::from(PAGE) * list.one_in + list.one_in;
        assert!(
            read <= bound,
            "{}: read {read} rows for a page of {PAGE}: {}",
            list.name,
            outline(&plan)
        );
        eprintln!("{} ({} rows): {}", list.name, big.rows, outline(&plan));

        // A small owner: only its own rows are read, through the same index. (With exact
        // statistics PostgreSQL may fetch its few rows with a bitmap scan and sort them
        // rather than read them in index order; either way no other owner's row is read.)
        let plan = custom_plan(t, list, &small).await;
        assert_uses_index(list, &plan, "few rows");
        let read = rows_read(&plan, list.table);
        assert!(
            read <= u64::from(small.rows),
            "{}: read {read} rows of an owner with {}: {}",
            list.name,
            small.rows,
            outline(&plan)
        );
        eprintln!("{} ({} rows): {}", list.name, small.rows, outline(&plan));

        // The generic plan does not know the owner: it too reads only the owner's range of
        // the index (whether it reads it in order or sorts depends on how many rows the
        // average owner has; here 25, so it sorts them).
        let plan = generic_plan(t, list, &small).await;
        assert_uses_index(list, &plan, "generic plan");
        eprintln!("{} (generic): {}", list.name, outline(&plan));
    }
}

/// The keyset indexes `up` creates and the indexes they replace.
const CREATED: &[&str] = &[
    "idx_projects_user_id_keyset",
    "idx_coding_sessions_user_id_keyset",
    "idx_conversations_created_by_keyset",
    "idx_batch_jobs_created_by_keyset",
    "idx_jobs_owner_id_keyset",
    "idx_templates_created_by_keyset",
    "idx_scenarios_created_by_keyset",
    "idx_edge_cases_created_by_keyset",
    "idx_export_logs_user_id_keyset",
];
const REPLACED: &[&str] = &[
    "idx_projects_user_id",
    "idx_coding_sessions_user_id",
    "idx_conversations_created_by",
    "idx_batch_jobs_created_by",
    "idx_jobs_owner_id",
    "idx_templates_created_by",
    "idx_scenarios_created_by",
    "idx_edge_cases_created_by",
    "idx_export_logs_user_id",
];

async fn assert_verify_clean(t: &TestDb) {
    let report = verify(&t.url).await.expect("verify runs");
    let findings: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
    assert!(
        report.passes(false) && findings.is_empty(),
        "{}\n{}",
        report.summary_line(false),
        findings.join("\n")
    );
}

async fn down_restores_the_old_indexes_and_up_again_is_clean(t: &TestDb) {
    let all = Migrator::migrations().len();
    // The keyset migration is compared alone: later ones create their own tables' indexes.
    let at = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261130_000010_keyset_indexes")
        .expect("the keyset migration");
    Migrator::up(&t.db, Some(u32::try_from(at).unwrap()))
        .await
        .expect("migrate to the one before");
    let before = t.indexes().await;
    // PostgreSQL has an index behind every foreign key; SQLite lacks one for
    // `conversations.approved_by` (the database wall's index is PostgreSQL's only).
    let unindexed = t.unindexed_foreign_keys().await;
    if t.is_postgres() {
        assert_eq!(unindexed, Vec::<String>::new());
    }

    Migrator::up(&t.db, Some(1))
        .await
        .expect("up the keyset migration");
    let after = t.indexes().await;
    for name in CREATED {
        let def = after.get(*name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(def.contains("created_at DESC"), "{name}: {def}");
    }
    for name in REPLACED {
        assert!(!after.contains_key(*name), "{name} is still there");
    }
    // Names (sorted) of the indexes of `a` that `b` lacks or defines otherwise.
    let changed = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    };
    let sorted = |names: &[&str]| {
        let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(
        changed(&before, &after),
        sorted(REPLACED),
        "only the replaced go"
    );
    assert_eq!(
        changed(&after, &before),
        sorted(CREATED),
        "only the keyset ones come"
    );
    assert_eq!(
        t.unindexed_foreign_keys().await,
        unindexed,
        "every foreign key keeps its index"
    );
    Migrator::up(&t.db, None).await.expect("up");
    assert_verify_clean(t).await;

    Migrator::down(&t.db, Some(u32::try_from(all - at).unwrap()))
        .await
        .expect("down");
    assert_eq!(
        t.indexes().await,
        before,
        "down restores the indexes exactly"
    );

    Migrator::up(&t.db, Some(1)).await.expect("up again");
    assert_eq!(t.indexes().await, after);
    Migrator::up(&t.db, None).await.expect("up to the latest");
    assert_verify_clean(t).await;
}
