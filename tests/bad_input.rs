//! Issue 10, "Bad input, one rule": every input the public repositories take is either
//! accepted on both backends (and then reads back as it was given) or refused with
//! `ForgeError::Validation` naming the field at fault, before anything is written. A raw
//! `ForgeError::Db` (or a panic) caused by input is a bug.
//!
//! One battery per backend runs every case against one database: for each refused case it
//! compares a fingerprint of every table (all rows, raw, read by the owner) before and
//! after the call. It collects every failure and panics once at the end, listing them all.
//!
//! Covered: every public function of `profiles`, `projects`, `sessions`, `events`, `jobs`,
//! `conversations`, `batches` and `batch_items` that takes text, JSON or numbers (the
//! others take only ids and enums): NUL characters in every text field, blank and
//! over-long text where a limit exists, JSON with U+0000 in a string or a key, over
//! 64 KiB (also only once escaped, or only as PostgreSQL prints its numbers), nested
//! deeper than a reader can read back, or not an object where an object is asked for;
//! numbers at the extremes of their types, counters that would overflow, page sizes 0 and
//! huge, durations and instants out of range.

mod common;

use forge_db::entity::ids::{JobId, ProfileId, SessionId};
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::TestDb;
use forge_db::entity::JSON_MAX_BYTES;
use forge_db::entity::batch_jobs::BatchConfiguration;
use forge_db::entity::conversation_turns::TurnRole;
use forge_db::entity::conversations::ConversationTier;
use forge_db::entity::profiles::Tier;
use forge_db::entity::session_events::EventType;
use forge_db::entity::{
    batch_items as item_rows, batch_jobs as batch_rows, coding_jobs as job_rows,
    coding_sessions as session_rows, conversations as conversation_rows, profiles as profile_rows,
    projects as project_rows, session_events as event_rows,
};
use forge_db::sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PrimaryKeyTrait, Statement,
};
use forge_db::service::batches::{ItemPageRequest, NewBatch, NewBatchItem};
use forge_db::service::conversations::{ConversationFilter, NewConversation, NewTurn};
use forge_db::service::events::NewEvent;
use forge_db::service::jobs::{JobFilter, NewJob, RetryPolicy};
use forge_db::service::profiles::{NewProfile, ProfilePatch};
use forge_db::service::projects::{ListProjects, NewProject, ProjectPatch};
use forge_db::service::sessions::{NewSession, SessionFilter};
use forge_db::service::testing::fixtures;
use forge_db::service::{
    Actor, Cursor, ForgeError, PageRequest, batch_items, batches, conversations, events, jobs,
    profiles, projects, sessions,
};
use serde_json::{Value as Json, json};
use uuid::Uuid;

on_both_backends! {
    bad_input_is_refused_before_any_write => battery;
}

/// Every table of the schema, fingerprinted whole.
const TABLES: &[&str] = &[
    "profiles",
    "projects",
    "coding_sessions",
    "coding_jobs",
    "session_events",
    "conversations",
    "conversation_turns",
    "batch_jobs",
    "batch_items",
];

/// A lease that is always fine.
const LEASE: Duration = Duration::from_secs(60);

/// A `'static` future running `$body` with `$d` bound to (a clone of) the pool `$db`, so
/// that the battery can run it as a task of its own and survive a panic.
macro_rules! call {
    ($db:expr, $d:ident => $body:expr) => {{
        let pool = $db.clone();
        async move {
            let $d = &pool;
            $body.await
        }
    }};
}

/// The cases run so far on one backend and what went wrong.
struct Battery {
    owner: DatabaseConnection,
    backend: DbBackend,
    cases: usize,
    accepted: usize,
    failures: Vec<String>,
}

impl Battery {
    fn new(t: &TestDb) -> Self {
        Self {
            owner: t.owner.clone(),
            backend: t.backend(),
            cases: 0,
            accepted: 0,
            failures: Vec::new(),
        }
    }

    fn backend_name(&self) -> &'static str {
        match self.backend {
            DbBackend::Postgres => "postgres",
            DbBackend::Sqlite => "sqlite",
            _ => "other",
        }
    }

    fn fail(&mut self, case: &str, what: String) {
        self.failures.push(format!("{case}: {what}"));
    }

    /// Runs `call` and expects `Validation { field }` with nothing changed in any table.
    async fn refused<T, F>(&mut self, case: impl AsRef<str>, field: &'static str, call: F)
    where
        T: Debug + Send + 'static,
        F: Future<Output = Result<T, ForgeError>> + Send + 'static,
    {
        let case = case.as_ref();
        self.cases += 1;
        let before = fingerprint(&self.owner).await;
        let outcome = tokio::spawn(call).await;
        let after = fingerprint(&self.owner).await;
        match outcome {
            Ok(Err(ForgeError::Validation { field: got, .. })) if got == field => {}
            Ok(other) => self.fail(
                case,
                format!(
                    "expected Validation {{ field: {field:?} }}, got {}",
                    short(&format!("{other:?}"), 400)
                ),
            ),
            Err(join) => self.fail(
                case,
                format!(
                    "expected Validation {{ field: {field:?} }}, it panicked: {}",
                    panic_message(join)
                ),
            ),
        }
        match (before, after) {
            (Ok(before), Ok(after)) if before == after => {}
            (Ok(before), Ok(after)) => {
                let changed = difference(&before, &after);
                self.fail(case, format!("the database changed: {changed}"));
            }
            (Err(e), _) | (_, Err(e)) => self.fail(case, format!("reading the tables: {e}")),
        }
    }

    /// Runs `call`, which must succeed: its result, for the caller to read back.
    async fn accepted<T, F>(&mut self, case: impl AsRef<str>, call: F) -> Option<T>
    where
        T: Debug + Send + 'static,
        F: Future<Output = Result<T, ForgeError>> + Send + 'static,
    {
        let case = case.as_ref();
        self.cases += 1;
        self.accepted += 1;
        match tokio::spawn(call).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                let e = short(&format!("{e:?}"), 400);
                self.fail(case, format!("expected it to be accepted, got Err({e})"));
                None
            }
            Err(join) => {
                let message = panic_message(join);
                self.fail(
                    case,
                    format!("expected it to be accepted, it panicked: {message}"),
                );
                None
            }
        }
    }

    /// Records a failure unless `stored` (read back from the database) equals `expected`.
    fn reads_back<V: PartialEq + Debug>(&mut self, case: &str, stored: Option<V>, expected: V) {
        match stored {
            Some(v) if v == expected => {}
            Some(v) => {
                let (v, e) = (format!("{v:?}"), format!("{expected:?}"));
                self.fail(
                    case,
                    format!(
                        "stored value reads back as {}, not {}",
                        short(&v, 200),
                        short(&e, 200)
                    ),
                );
            }
            None => self.fail(case, "the stored row could not be read back".to_owned()),
        }
    }

    /// Prints the summary line and panics once with every failure.
    fn finish(self) {
        let backend = self.backend_name();
        if self.failures.is_empty() {
            println!(
                "bad input: {} cases, all refused before any write ({backend}; {} of them \
                 legitimately accepted and read back equal)",
                self.cases, self.accepted
            );
            return;
        }
        let list = self.failures.join("\n  - ");
        println!(
            "bad input: {} cases, {} failures ({backend}):\n  - {list}",
            self.cases,
            self.failures.len()
        );
        panic!(
            "bad input ({backend}): {} of {} cases failed:\n  - {list}",
            self.failures.len(),
            self.cases
        );
    }
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}… ({} chars)", s.chars().count())
}

fn panic_message(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return join.to_string();
    }
    let payload = join.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Every row of every table as the database holds it, raw (no decoding), read as the
/// owner: `table|row` strings, sorted.
async fn fingerprint(owner: &DatabaseConnection) -> Result<Vec<String>, String> {
    let backend = owner.get_database_backend();
    let mut rows = Vec::new();
    for table in TABLES {
        let sql = match backend {
            DbBackend::Postgres => format!("SELECT t::text FROM public.{table} AS t"),
            _ => {
                let columns = text_rows(
                    owner,
                    format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
                )
                .await?;
                let row = columns
                    .iter()
                    .map(|c| format!("quote(\"{c}\")"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                format!("SELECT {row} FROM {table}")
            }
        };
        rows.extend(
            text_rows(owner, sql)
                .await?
                .into_iter()
                .map(|row| format!("{table}|{row}")),
        );
    }
    rows.sort();
    Ok(rows)
}

async fn text_rows(owner: &DatabaseConnection, sql: String) -> Result<Vec<String>, String> {
    let backend = owner.get_database_backend();
    let rows = owner
        .query_all_raw(Statement::from_string(backend, sql.clone()))
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).map_err(|e| e.to_string()))
        .collect()
}

/// The rows only in `before` and only in `after` (the first few, shortened).
fn difference(before: &[String], after: &[String]) -> String {
    let gone: Vec<_> = before.iter().filter(|r| !after.contains(r)).collect();
    let new: Vec<_> = after.iter().filter(|r| !before.contains(r)).collect();
    let show = |rows: &[&String]| {
        rows.iter()
            .take(3)
            .map(|r| short(r, 160))
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "{} row(s) gone [{}], {} row(s) new or changed [{}]",
        gone.len(),
        show(&gone),
        new.len(),
        show(&new)
    )
}

/// The row `id` of `E`, read by the owner.
async fn stored<E>(
    owner: &DatabaseConnection,
    id: <E::PrimaryKey as PrimaryKeyTrait>::ValueType,
) -> Option<E::Model>
where
    E: EntityTrait,
{
    E::find_by_id(id).one(owner).await.ok().flatten()
}

/// Text that must be refused where at most `max` characters are allowed: a NUL character,
/// blank, and one character too many (two-byte characters, so bytes and characters
/// differ).
fn bad_texts(max: usize) -> Vec<(&'static str, String)> {
    vec![
        ("with a NUL character", "a\0b".to_owned()),
        ("blank", " \t\n ".to_owned()),
        ("over-long", "é".repeat(max + 1)),
    ]
}

/// The longest text allowed, in two-byte characters.
fn longest(max: usize) -> String {
    "é".repeat(max)
}

/// `{"k": {"k": … 1}}`, `levels` objects deep.
fn nested(levels: usize) -> Json {
    let mut doc = json!(1);
    for _ in 0..levels {
        doc = json!({ "k": doc });
    }
    doc
}

/// JSON documents every JSON input refuses.
fn bad_documents() -> Vec<(&'static str, Json)> {
    vec![
        ("a string with U+0000", json!({"k": "a\u{0}b"})),
        ("a key with U+0000", json!({"a\u{0}b": 1})),
        (
            "U+0000 deep inside arrays",
            json!({"k": [1, {"j": ["x", "\u{0}"]}]}),
        ),
        ("over 64 KiB", json!({ "k": "x".repeat(JSON_MAX_BYTES) })),
        (
            "over 64 KiB only once escaped",
            json!({ "k": "\u{1}".repeat(JSON_MAX_BYTES / 6 + 1) }),
        ),
        (
            "over 64 KiB only as PostgreSQL prints its numbers",
            json!({ "k": vec![1e308; 300] }),
        ),
        ("nested 200 levels deep", nested(200)),
    ]
}

/// JSON documents every JSON-object input refuses.
fn bad_objects() -> Vec<(&'static str, Json)> {
    let mut docs = bad_documents();
    docs.push(("an array, not an object", json!([1, 2])));
    docs.push(("a string, not an object", json!("text")));
    docs
}

/// A JSON object just under the cap (as PostgreSQL prints it).
fn near_cap() -> Json {
    json!({
        "k": "x".repeat(JSON_MAX_BYTES - 1000),
        "n": [1e300, -2.5e-10, 0.1, 100.0, u64::MAX, i64::MIN],
    })
}

/// Page sizes every list refuses.
fn bad_limits() -> Vec<u64> {
    vec![0, forge_db::service::MAX_PAGE_SIZE + 1, u64::MAX]
}

async fn battery(t: &TestDb) {
    let mut b = Battery::new(t);
    let db = t.db.clone();
    profiles_cases(&mut b, &db).await;
    projects_cases(&mut b, &db).await;
    sessions_cases(&mut b, &db).await;
    events_cases(&mut b, &db).await;
    jobs_cases(&mut b, &db).await;
    conversations_cases(&mut b, &db).await;
    batches_cases(&mut b, &db).await;
    batch_items_cases(&mut b, &db).await;
    b.finish();
}

/// A user whose plan allows many live sessions.
async fn roomy_user(db: &DatabaseConnection) -> ProfileId {
    let user = fixtures::user(db, &fixtures::unique_email())
        .await
        .expect("user")
        .id;
    profiles::set_plan(db, Actor::Service, user, Tier::Pro, 1000)
        .await
        .expect("set_plan");
    user
}

async fn profiles_cases(b: &mut Battery, db: &DatabaseConnection) {
    let svc = Actor::Service;
    let user = fixtures::user(db, &fixtures::unique_email())
        .await
        .expect("user")
        .id;
    let me = Actor::User(user);

    // create: email and display name.
    let mut emails = bad_texts(320);
    emails.push((
        "over-long once lower-cased ('İ' lower-cases to two characters)",
        format!("{}@x.test", "İ".repeat(300)),
    ));
    emails.push(("without an @", "ada.example.test".to_owned()));
    for (what, email) in emails {
        b.refused(
            format!("profiles::create email {what}"),
            "email",
            call!(db, d => profiles::create(d, svc, NewProfile::new(email))),
        )
        .await;
    }
    for (what, name) in bad_texts(100) {
        let new = NewProfile {
            display_name: Some(name),
            ..NewProfile::new(fixtures::unique_email())
        };
        b.refused(
            format!("profiles::create display_name {what}"),
            "display_name",
            call!(db, d => profiles::create(d, svc, new)),
        )
        .await;
    }
    let email = format!("  {}@Example.TEST ", "A".repeat(307));
    let new = NewProfile {
        display_name: Some(longest(100)),
        ..NewProfile::new(email.clone())
    };
    let case = "profiles::create 320-character email and 100-character display name";
    if let Some(p) = b
        .accepted(case, call!(db, d => profiles::create(d, svc, new)))
        .await
    {
        let row = stored::<profile_rows::Entity>(&b.owner, p.id).await;
        let expected = (email.trim().to_lowercase(), longest(100));
        b.reads_back(case, row.map(|r| (r.email, r.display_name)), expected);
    }

    // find_by_email
    for (what, email) in bad_texts(320) {
        b.refused(
            format!("profiles::find_by_email {what}"),
            "email",
            call!(db, d => profiles::find_by_email(d, svc, &email)),
        )
        .await;
    }

    // update: display name and avatar.
    for (what, name) in bad_texts(100) {
        let patch = ProfilePatch {
            display_name: Some(name),
            ..Default::default()
        };
        b.refused(
            format!("profiles::update display_name {what}"),
            "display_name",
            call!(db, d => profiles::update(d, me, user, patch)),
        )
        .await;
    }
    for (what, url) in bad_texts(2048) {
        let patch = ProfilePatch {
            avatar_url: Some(Some(url)),
            ..Default::default()
        };
        b.refused(
            format!("profiles::update avatar_url {what}"),
            "avatar_url",
            call!(db, d => profiles::update(d, me, user, patch)),
        )
        .await;
    }
    let patch = ProfilePatch {
        display_name: Some(longest(100)),
        avatar_url: Some(Some(longest(2048))),
    };
    let case = "profiles::update longest display_name and avatar_url";
    if b.accepted(case, call!(db, d => profiles::update(d, me, user, patch)))
        .await
        .is_some()
    {
        let row = stored::<profile_rows::Entity>(&b.owner, user).await;
        let expected = (longest(100), Some(longest(2048)));
        b.reads_back(case, row.map(|r| (r.display_name, r.avatar_url)), expected);
    }

    // set_plan: sessions_limit.
    for limit in [-1, i32::MIN] {
        b.refused(
            format!("profiles::set_plan sessions_limit {limit}"),
            "sessions_limit",
            call!(db, d => profiles::set_plan(d, svc, user, Tier::Pro, limit)),
        )
        .await;
    }
    for limit in [0, i32::MAX] {
        let case = format!("profiles::set_plan sessions_limit {limit}");
        if b.accepted(
            &case,
            call!(db, d => profiles::set_plan(d, svc, user, Tier::Enterprise, limit)),
        )
        .await
        .is_some()
        {
            let row = stored::<profile_rows::Entity>(&b.owner, user).await;
            b.reads_back(&case, row.map(|r| r.sessions_limit), limit);
        }
    }
}

async fn projects_cases(b: &mut Battery, db: &DatabaseConnection) {
    let owner = roomy_user(db).await;
    let me = Actor::User(owner);
    let svc = Actor::Service;

    // create
    for (what, name) in bad_texts(200) {
        b.refused(
            format!("projects::create name {what}"),
            "name",
            call!(db, d => projects::create(d, me, NewProject::new(owner, name))),
        )
        .await;
    }
    for (what, text) in bad_texts(10_000) {
        let new = NewProject {
            description: Some(text),
            ..NewProject::new(owner, "Todo")
        };
        b.refused(
            format!("projects::create description {what}"),
            "description",
            call!(db, d => projects::create(d, me, new)),
        )
        .await;
    }
    for (what, text) in bad_texts(255) {
        let new = NewProject {
            template_id: Some(text),
            ..NewProject::new(owner, "Todo")
        };
        b.refused(
            format!("projects::create template_id {what}"),
            "template_id",
            call!(db, d => projects::create(d, me, new)),
        )
        .await;
    }
    for (what, doc) in bad_objects() {
        let new = NewProject {
            expo_config: Some(doc),
            ..NewProject::new(owner, "Todo")
        };
        b.refused(
            format!("projects::create expo_config {what}"),
            "expo_config",
            call!(db, d => projects::create(d, me, new)),
        )
        .await;
    }
    let new = NewProject {
        description: Some(longest(10_000)),
        template_id: Some(longest(255)),
        expo_config: Some(near_cap()),
        ..NewProject::new(owner, longest(200))
    };
    let case = "projects::create longest texts and an expo_config just under 64 KiB";
    if let Some(p) = b
        .accepted(case, call!(db, d => projects::create(d, me, new)))
        .await
    {
        let row = stored::<project_rows::Entity>(&b.owner, p.id).await;
        let expected = (
            longest(200),
            Some(longest(10_000)),
            Some(longest(255)),
            near_cap(),
        );
        let row = row.map(|r| (r.name, r.description, r.template_id, r.expo_config));
        b.reads_back(case, row, expected);
    }

    // list: page sizes and cursors.
    for limit in bad_limits() {
        let filter = ListProjects::default();
        b.refused(
            format!("projects::list limit {limit}"),
            "limit",
            call!(db, d => projects::list(d, me, &filter, &PageRequest::with_limit(limit))),
        )
        .await;
    }
    for (what, text) in [
        ("with a NUL character", format!("{}\0", "0".repeat(47))),
        ("blank", " ".repeat(48)),
        ("garbage", "z".repeat(48)),
    ] {
        b.refused(
            format!("Cursor (projects::list's page) from text {what}"),
            "cursor",
            async move { text.parse::<Cursor>() },
        )
        .await;
    }
    let filter = ListProjects::default();
    b.accepted(
        "projects::list limit 200",
        call!(db, d => projects::list(d, me, &filter, &PageRequest::with_limit(200))),
    )
    .await;

    // update
    let project = fixtures::project(db, owner).await.expect("project").id;
    for (what, name) in bad_texts(200) {
        let patch = ProjectPatch {
            name: Some(name),
            ..Default::default()
        };
        b.refused(
            format!("projects::update name {what}"),
            "name",
            call!(db, d => projects::update(d, me, project, patch)),
        )
        .await;
    }
    for (what, text) in bad_texts(10_000) {
        let patch = ProjectPatch {
            description: Some(Some(text)),
            ..Default::default()
        };
        b.refused(
            format!("projects::update description {what}"),
            "description",
            call!(db, d => projects::update(d, me, project, patch)),
        )
        .await;
    }
    for (what, text) in bad_texts(255) {
        let patch = ProjectPatch {
            template_id: Some(Some(text)),
            ..Default::default()
        };
        b.refused(
            format!("projects::update template_id {what}"),
            "template_id",
            call!(db, d => projects::update(d, me, project, patch)),
        )
        .await;
    }
    for (what, text) in bad_texts(255) {
        let patch = ProjectPatch {
            sandbox_id: Some(Some(text)),
            ..Default::default()
        };
        b.refused(
            format!("projects::update sandbox_id {what}"),
            "sandbox_id",
            call!(db, d => projects::update(d, svc, project, patch)),
        )
        .await;
    }
    for (what, doc) in bad_objects() {
        let patch = ProjectPatch {
            expo_config: Some(doc),
            ..Default::default()
        };
        b.refused(
            format!("projects::update expo_config {what}"),
            "expo_config",
            call!(db, d => projects::update(d, me, project, patch)),
        )
        .await;
    }
    let patch = ProjectPatch {
        name: Some(longest(200)),
        description: Some(None),
        sandbox_id: Some(Some(longest(255))),
        expo_config: Some(near_cap()),
        ..Default::default()
    };
    let case = "projects::update longest name and sandbox_id, expo_config just under 64 KiB";
    if b.accepted(
        case,
        call!(db, d => projects::update(d, svc, project, patch)),
    )
    .await
    .is_some()
    {
        let row = stored::<project_rows::Entity>(&b.owner, project).await;
        let row = row.map(|r| (r.name, r.description, r.sandbox_id, r.expo_config));
        let expected = (longest(200), None, Some(longest(255)), near_cap());
        b.reads_back(case, row, expected);
    }
}

async fn sessions_cases(b: &mut Battery, db: &DatabaseConnection) {
    let owner = roomy_user(db).await;
    let me = Actor::User(owner);
    let svc = Actor::Service;
    let project = fixtures::project(db, owner).await.expect("project").id;
    let new = move || NewSession::new(owner, project, "Build it");

    // start
    for (what, prompt) in bad_texts(100_000) {
        let new = NewSession {
            initial_prompt: prompt,
            ..new()
        };
        b.refused(
            format!("sessions::start initial_prompt {what}"),
            "initial_prompt",
            call!(db, d => sessions::start(d, me, new)),
        )
        .await;
    }
    for (what, doc) in bad_objects() {
        let new = NewSession {
            metadata: Some(doc),
            ..new()
        };
        b.refused(
            format!("sessions::start metadata {what}"),
            "metadata",
            call!(db, d => sessions::start(d, me, new)),
        )
        .await;
    }
    let ttls = [
        (me, "zero", TimeDelta::zero()),
        (me, "negative", TimeDelta::seconds(-1)),
        (svc, "TimeDelta::MIN", TimeDelta::MIN),
        (svc, "TimeDelta::MAX", TimeDelta::MAX),
        (me, "over a user's 24 hours", TimeDelta::hours(25)),
        (
            svc,
            "past the year 9999 (service)",
            TimeDelta::days(8_100 * 366),
        ),
        (
            svc,
            "past the year 200000 (service)",
            TimeDelta::days(200_000 * 366),
        ),
    ];
    for (actor, what, ttl) in ttls {
        let new = NewSession { ttl, ..new() };
        b.refused(
            format!("sessions::start ttl {what}"),
            "ttl",
            call!(db, d => sessions::start(d, actor, new)),
        )
        .await;
    }
    let started = Utc::now();
    let new = NewSession {
        initial_prompt: longest(100_000),
        metadata: Some(near_cap()),
        ttl: TimeDelta::days(365 * 100),
        ..new()
    };
    let case = "sessions::start longest prompt, metadata just under 64 KiB, a century's ttl";
    if let Some(s) = b
        .accepted(case, call!(db, d => sessions::start(d, svc, new)))
        .await
    {
        let row = stored::<session_rows::Entity>(&b.owner, s.id).await;
        let row = row.map(|r| (r.initial_prompt, r.metadata, r.expires_at == s.expires_at));
        b.reads_back(case, row, (longest(100_000), near_cap(), true));
        let lives = s.expires_at - started;
        if lives < TimeDelta::days(365 * 100) || lives > TimeDelta::days(365 * 100 + 1) {
            b.fail(case, format!("expires_at is {}", s.expires_at));
        }
    }

    // list
    for limit in bad_limits() {
        let request = PageRequest::with_limit(limit);
        b.refused(
            format!("sessions::list limit {limit}"),
            "limit",
            call!(db, d => sessions::list(d, me, SessionFilter::default(), request)),
        )
        .await;
    }

    // set_preview
    let session = fixtures::session(db, owner, project)
        .await
        .expect("session")
        .id;
    for (what, url) in bad_texts(2048) {
        b.refused(
            format!("sessions::set_preview eas_update_url {what}"),
            "eas_update_url",
            call!(db, d => sessions::set_preview(d, me, session, Some(url), None)),
        )
        .await;
    }
    for (what, url) in bad_texts(2048) {
        b.refused(
            format!("sessions::set_preview webview_url {what}"),
            "webview_url",
            call!(db, d => sessions::set_preview(d, me, session, None, Some(url))),
        )
        .await;
    }
    let case = "sessions::set_preview longest URLs";
    let (eas, web) = (Some(longest(2048)), Some(longest(2048)));
    if b.accepted(
        case,
        call!(db, d => sessions::set_preview(d, me, session, eas, web)),
    )
    .await
    .is_some()
    {
        let row = stored::<session_rows::Entity>(&b.owner, session).await;
        let row = row.map(|r| (r.eas_update_url, r.webview_url));
        b.reads_back(case, row, (Some(longest(2048)), Some(longest(2048))));
    }
}

async fn events_cases(b: &mut Battery, db: &DatabaseConnection) {
    let svc = Actor::Service;
    let (user, _, session) = fixtures::user_with_project_and_session(db)
        .await
        .expect("a live session");
    let (user, session) = (user.id, session.id);
    let mut docs = bad_documents();
    docs.push(("a top-level string with U+0000", json!("a\u{0}b")));

    // append
    for (what, doc) in docs.clone() {
        b.refused(
            format!("events::append data {what}"),
            "data",
            call!(db, d => events::append(d, svc, session, EventType::Terminal, doc)),
        )
        .await;
    }
    let accepted = [
        ("just under 64 KiB", near_cap()),
        ("null", Json::Null),
        ("a string", json!("plain text")),
        ("an empty array", json!([])),
        ("nested 64 levels deep", nested(64)),
    ];
    for (what, doc) in accepted {
        let case = format!("events::append data {what}");
        let data = doc.clone();
        if let Some(e) = b
            .accepted(
                &case,
                call!(db, d => events::append(d, svc, session, EventType::Terminal, data)),
            )
            .await
        {
            let row = stored::<event_rows::Entity>(&b.owner, e.id).await;
            b.reads_back(&case, row.map(|r| r.data), doc);
        }
    }

    // append_many: the bad event second, so that the first one would have gone in.
    for (what, doc) in docs {
        let batch = vec![
            NewEvent::new(EventType::Terminal, json!({"line": "fine"})),
            NewEvent::new(EventType::Terminal, doc),
        ];
        b.refused(
            format!("events::append_many second event's data {what}"),
            "data",
            call!(db, d => events::append_many(d, svc, session, batch)),
        )
        .await;
    }
    let too_many = events::MAX_EVENTS_PER_APPEND + 1;
    for (what, n) in [("no events", 0), ("too many events", too_many)] {
        let batch = vec![NewEvent::new(EventType::Thinking, json!({})); n];
        b.refused(
            format!("events::append_many {what}"),
            "events",
            call!(db, d => events::append_many(d, svc, session, batch)),
        )
        .await;
    }

    // after
    for seq in [-1, i64::MIN] {
        b.refused(
            format!("events::after after_seq {seq}"),
            "after_seq",
            call!(db, d => events::after(d, Actor::User(user), session, seq, 10)),
        )
        .await;
    }
    for limit in bad_limits() {
        b.refused(
            format!("events::after limit {limit}"),
            "limit",
            call!(db, d => events::after(d, Actor::User(user), session, 0, limit)),
        )
        .await;
    }
    let case = "events::after after_seq i64::MAX";
    if let Some(found) = b
        .accepted(
            case,
            call!(db, d => events::after(d, Actor::User(user), session, i64::MAX, 200)),
        )
        .await
        && !found.is_empty()
    {
        b.fail(case, format!("{} events after i64::MAX", found.len()));
    }
}

async fn jobs_cases(b: &mut Battery, db: &DatabaseConnection) {
    let svc = Actor::Service;
    let (user, _, session) = fixtures::user_with_project_and_session(db)
        .await
        .expect("a live session");
    let (user, session) = (user.id, session.id);
    let new = move || NewJob::new(session, "Add a map");

    // enqueue
    for (what, prompt) in bad_texts(100_000) {
        let job = NewJob { prompt, ..new() };
        b.refused(
            format!("jobs::enqueue prompt {what}"),
            "prompt",
            call!(db, d => jobs::enqueue(d, svc, job)),
        )
        .await;
    }
    for retries in [-1, jobs::MAX_RETRIES + 1, i32::MIN, i32::MAX] {
        let job = NewJob {
            max_retries: retries,
            ..new()
        };
        b.refused(
            format!("jobs::enqueue max_retries {retries}"),
            "max_retries",
            call!(db, d => jobs::enqueue(d, svc, job)),
        )
        .await;
    }
    let year_10000 = Utc
        .with_ymd_and_hms(10_000, 1, 1, 0, 0, 0)
        .single()
        .expect("a date");
    for (what, at) in [
        ("DateTime::MIN_UTC", DateTime::<Utc>::MIN_UTC),
        ("DateTime::MAX_UTC", DateTime::<Utc>::MAX_UTC),
        ("in the year 10000", year_10000),
    ] {
        let job = NewJob {
            run_after: Some(at),
            ..new()
        };
        b.refused(
            format!("jobs::enqueue run_after {what}"),
            "run_after",
            call!(db, d => jobs::enqueue(d, svc, job)),
        )
        .await;
    }
    let far = Utc
        .with_ymd_and_hms(9_999, 12, 31, 0, 0, 0)
        .single()
        .expect("a date");
    let accepted = [
        (
            "longest prompt, priority i32::MAX",
            NewJob {
                prompt: longest(100_000),
                priority: i32::MAX,
                ..new()
            },
        ),
        (
            "priority i32::MIN, max_retries 0",
            NewJob {
                priority: i32::MIN,
                max_retries: 0,
                ..new()
            },
        ),
        (
            "max_retries MAX_RETRIES, run_after in 9999",
            NewJob {
                max_retries: jobs::MAX_RETRIES,
                run_after: Some(far),
                ..new()
            },
        ),
    ];
    for (what, job) in accepted {
        let case = format!("jobs::enqueue {what}");
        let expected = (job.prompt.clone(), job.priority, job.max_retries);
        if let Some(j) = b
            .accepted(&case, call!(db, d => jobs::enqueue(d, svc, job)))
            .await
        {
            let row = stored::<job_rows::Entity>(&b.owner, j.id).await;
            b.reads_back(
                &case,
                row.map(|r| (r.prompt, r.priority, r.max_retries)),
                expected,
            );
            // Out of the way of the claims below.
            jobs::cancel(db, svc, j.id).await.expect("cancel");
        }
    }

    // enqueue_many
    let too_many = vec![new(); jobs::MAX_ENQUEUE + 1];
    b.refused(
        "jobs::enqueue_many too many jobs",
        "jobs",
        call!(db, d => jobs::enqueue_many(d, svc, too_many)),
    )
    .await;
    for (what, field, bad) in [
        (
            "second job's prompt with a NUL character",
            "prompt",
            NewJob {
                prompt: "a\0b".into(),
                ..new()
            },
        ),
        (
            "second job's max_retries -1",
            "max_retries",
            NewJob {
                max_retries: -1,
                ..new()
            },
        ),
        (
            "second job's run_after DateTime::MIN_UTC",
            "run_after",
            NewJob {
                run_after: Some(DateTime::<Utc>::MIN_UTC),
                ..new()
            },
        ),
    ] {
        let batch = vec![new(), bad];
        b.refused(
            format!("jobs::enqueue_many {what}"),
            field,
            call!(db, d => jobs::enqueue_many(d, svc, batch)),
        )
        .await;
    }

    // list
    for limit in bad_limits() {
        let request = PageRequest::with_limit(limit);
        b.refused(
            format!("jobs::list limit {limit}"),
            "limit",
            call!(db, d => jobs::list(d, Actor::User(user), JobFilter::default(), request)),
        )
        .await;
    }

    // claim and claim_many
    let bad_leases = [
        ("zero", Duration::ZERO),
        ("over MAX_LEASE", jobs::MAX_LEASE + Duration::from_secs(1)),
        ("Duration::MAX", Duration::MAX),
    ];
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("jobs::claim worker {what}"),
            "worker",
            call!(db, d => jobs::claim(d, svc, &worker, LEASE)),
        )
        .await;
    }
    for (what, lease) in bad_leases {
        b.refused(
            format!("jobs::claim lease {what}"),
            "lease",
            call!(db, d => jobs::claim(d, svc, "w1", lease)),
        )
        .await;
    }
    for n in [0, jobs::MAX_CLAIM + 1, u64::MAX] {
        b.refused(
            format!("jobs::claim_many n {n}"),
            "n",
            call!(db, d => jobs::claim_many(d, svc, "w1", LEASE, n)),
        )
        .await;
    }
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("jobs::claim_many worker {what}"),
            "worker",
            call!(db, d => jobs::claim_many(d, svc, &worker, LEASE, 2)),
        )
        .await;
    }

    // The lease calls, each on a job that worker w1 holds.
    let held = held_job(db, session).await;
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("jobs::heartbeat worker {what}"),
            "worker",
            call!(db, d => jobs::heartbeat(d, svc, held, &worker, LEASE)),
        )
        .await;
    }
    for (what, lease) in bad_leases {
        b.refused(
            format!("jobs::heartbeat lease {what}"),
            "lease",
            call!(db, d => jobs::heartbeat(d, svc, held, "w1", lease)),
        )
        .await;
    }
    let held = held_job(db, session).await;
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("jobs::complete worker {what}"),
            "worker",
            call!(db, d => jobs::complete(d, svc, held, &worker, json!({}))),
        )
        .await;
    }
    let mut results = bad_documents();
    results.push(("a top-level string with U+0000", json!("a\u{0}b")));
    for (what, doc) in results {
        b.refused(
            format!("jobs::complete result {what}"),
            "result",
            call!(db, d => jobs::complete(d, svc, held, "w1", doc)),
        )
        .await;
    }
    let held = held_job(db, session).await;
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("jobs::fail worker {what}"),
            "worker",
            call!(db, d => jobs::fail(d, svc, held, &worker, "boom", RetryPolicy::default())),
        )
        .await;
    }
    for (what, error) in bad_texts(100_000) {
        b.refused(
            format!("jobs::fail error {what}"),
            "error",
            call!(db, d => jobs::fail(d, svc, held, "w1", &error, RetryPolicy::default())),
        )
        .await;
    }
    let endless = RetryPolicy {
        base: Duration::MAX,
        max: Duration::MAX,
    };
    b.refused(
        "jobs::fail policy with base and max Duration::MAX",
        "policy",
        call!(db, d => jobs::fail(d, svc, held, "w1", "boom", endless)),
    )
    .await;
    let held = held_job(db, session).await;
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("jobs::release worker {what}"),
            "worker",
            call!(db, d => jobs::release(d, svc, held, &worker)),
        )
        .await;
    }
    let held = held_job(db, session).await;
    let case = "jobs::complete result just under 64 KiB";
    if let Some(j) = b
        .accepted(
            case,
            call!(db, d => jobs::complete(d, svc, held, "w1", near_cap())),
        )
        .await
    {
        let row = stored::<job_rows::Entity>(&b.owner, j.id).await;
        b.reads_back(case, row.map(|r| r.result), Some(near_cap()));
    }

    // purge_finished
    for size in [0, 100_001, u64::MAX] {
        b.refused(
            format!("jobs::purge_finished batch_size {size}"),
            "batch_size",
            call!(db, d => jobs::purge_finished(d, svc, LEASE, size)),
        )
        .await;
    }
    let years = |n: u64| Duration::from_secs(n * 366 * 24 * 60 * 60);
    for (what, age) in [
        ("Duration::MAX", Duration::MAX),
        ("100,000 years (before year 1)", years(100_000)),
    ] {
        b.refused(
            format!("jobs::purge_finished older_than {what}"),
            "older_than",
            call!(db, d => jobs::purge_finished(d, svc, age, 100)),
        )
        .await;
    }
    let case = "jobs::purge_finished older_than 1000 years";
    if let Some(n) = b
        .accepted(
            case,
            call!(db, d => jobs::purge_finished(d, svc, years(1000), 100)),
        )
        .await
        && n != 0
    {
        b.fail(case, format!("purged {n} jobs"));
    }
}

/// A new job on `session`, first in claim order (whatever else is queued), claimed by
/// worker `w1`.
async fn held_job(db: &DatabaseConnection, session: SessionId) -> JobId {
    let job = NewJob {
        priority: i32::MAX,
        ..NewJob::new(session, "Hold it")
    };
    jobs::enqueue(db, Actor::Service, job)
        .await
        .expect("enqueue");
    jobs::claim(db, Actor::Service, "w1", LEASE)
        .await
        .expect("claim")
        .expect("a claimable job")
        .id
}

/// A valid conversation of `owner` with one turn of 10 tokens.
fn new_conversation(owner: ProfileId) -> NewConversation {
    NewConversation {
        owner: Some(owner),
        conversation_id: format!("conv-{}", Uuid::new_v4().simple()),
        title: Some("A title".to_owned()),
        tier: ConversationTier::Template,
        persona: "founder".to_owned(),
        emotion: "curious".to_owned(),
        topic: "pricing".to_owned(),
        intent: "learn".to_owned(),
        tone: "friendly".to_owned(),
        category: vec!["onboarding".to_owned()],
        parameters: json!({}),
        turns: vec![NewTurn::new(TurnRole::User, "Hello", 10)],
    }
}

async fn conversations_cases(b: &mut Battery, db: &DatabaseConnection) {
    let svc = Actor::Service;
    let owner = roomy_user(db).await;
    let me = Actor::User(owner);
    let reviewer = roomy_user(db).await;

    // create: every text field.
    type Setter = fn(&mut NewConversation, String);
    let texts: [(&'static str, usize, Setter); 8] = [
        ("conversation_id", 200, |c, v| c.conversation_id = v),
        ("title", 500, |c, v| c.title = Some(v)),
        ("persona", 200, |c, v| c.persona = v),
        ("emotion", 200, |c, v| c.emotion = v),
        ("topic", 200, |c, v| c.topic = v),
        ("intent", 200, |c, v| c.intent = v),
        ("tone", 200, |c, v| c.tone = v),
        ("category", 200, |c, v| c.category.push(v)),
    ];
    for (field, max, set) in texts {
        for (what, text) in bad_texts(max) {
            let mut new = new_conversation(owner);
            set(&mut new, text);
            b.refused(
                format!("conversations::create {field} {what}"),
                field,
                call!(db, d => conversations::create(d, svc, new)),
            )
            .await;
        }
    }
    let mut new = new_conversation(owner);
    new.category = vec!["c".to_owned(); 51];
    b.refused(
        "conversations::create 51 categories",
        "category",
        call!(db, d => conversations::create(d, svc, new)),
    )
    .await;
    for (what, doc) in bad_objects() {
        let new = NewConversation {
            parameters: doc,
            ..new_conversation(owner)
        };
        b.refused(
            format!("conversations::create parameters {what}"),
            "parameters",
            call!(db, d => conversations::create(d, svc, new)),
        )
        .await;
    }
    // create: turns.
    let turn = |content: &str, tokens: i32, number: Option<i32>| NewTurn {
        turn_number: number,
        ..NewTurn::new(TurnRole::Assistant, content, tokens)
    };
    let turn_cases: Vec<(String, &'static str, Vec<NewTurn>)> = bad_texts(100_000)
        .into_iter()
        .map(|(what, text)| {
            (
                format!("second turn's content {what}"),
                "content",
                vec![turn("Hi", 1, None), turn(&text, 1, None)],
            )
        })
        .chain([
            (
                "token_count -1".to_owned(),
                "token_count",
                vec![turn("Hi", -1, None)],
            ),
            (
                "token_count i32::MIN".to_owned(),
                "token_count",
                vec![turn("Hi", i32::MIN, None)],
            ),
            (
                "token counts summing past i32::MAX".to_owned(),
                "token_count",
                vec![turn("Hi", i32::MAX, None), turn("Ho", 1, None)],
            ),
            (
                "1001 turns".to_owned(),
                "turns",
                vec![turn("Hi", 1, None); 1001],
            ),
        ])
        .chain([2, 0, -1, i32::MAX, i32::MIN].into_iter().map(|n| {
            (
                format!("first turn numbered {n}"),
                "turn_number",
                vec![turn("Hi", 1, Some(n))],
            )
        }))
        .collect();
    for (what, field, turns) in turn_cases {
        let new = NewConversation {
            turns,
            ..new_conversation(owner)
        };
        b.refused(
            format!("conversations::create {what}"),
            field,
            call!(db, d => conversations::create(d, svc, new)),
        )
        .await;
    }
    let mut new = NewConversation {
        title: Some(longest(500)),
        persona: longest(200),
        emotion: longest(200),
        topic: longest(200),
        intent: longest(200),
        tone: longest(200),
        category: vec![longest(200); 50],
        parameters: near_cap(),
        turns: vec![turn(&longest(100_000), i32::MAX, Some(1))],
        ..new_conversation(owner)
    };
    new.conversation_id = longest(200);
    let case = "conversations::create longest texts, 50 categories, one turn of i32::MAX tokens";
    if let Some(c) = b
        .accepted(case, call!(db, d => conversations::create(d, svc, new)))
        .await
    {
        let row = stored::<conversation_rows::Entity>(&b.owner, c.conversation.id).await;
        let row = row.map(|r| {
            (
                r.conversation_id,
                r.title,
                [r.persona, r.emotion, r.topic, r.intent, r.tone],
                r.category.0,
                r.parameters,
                r.total_tokens,
            )
        });
        let expected = (
            longest(200),
            Some(longest(500)),
            [(); 5].map(|()| longest(200)),
            vec![longest(200); 50],
            near_cap(),
            i32::MAX,
        );
        b.reads_back(case, row, expected);
    }

    // ConversationFilter::parse (list's filter from a caller's strings)
    for (what, text) in bad_texts(50) {
        let status = text.clone();
        b.refused(
            format!("ConversationFilter::parse status {what}"),
            "status",
            async move { ConversationFilter::parse(Some(&status), None) },
        )
        .await;
        b.refused(
            format!("ConversationFilter::parse tier {what}"),
            "tier",
            async move { ConversationFilter::parse(None, Some(&text)) },
        )
        .await;
    }

    // list and review_queue
    for limit in bad_limits() {
        let request = PageRequest::with_limit(limit);
        b.refused(
            format!("conversations::list limit {limit}"),
            "limit",
            call!(db, d => conversations::list(d, me, ConversationFilter::default(), &request)),
        )
        .await;
        let request = PageRequest::with_limit(limit);
        b.refused(
            format!("conversations::review_queue limit {limit}"),
            "limit",
            call!(db, d => conversations::review_queue(d, svc, &request)),
        )
        .await;
    }

    // append_turn, up to a total of exactly i32::MAX tokens.
    let chat = fixtures::conversation_with_turns(db, owner, 1)
        .await
        .expect("conversation")
        .conversation
        .id;
    for (what, text) in bad_texts(100_000) {
        b.refused(
            format!("conversations::append_turn content {what}"),
            "content",
            call!(db, d => conversations::append_turn(d, svc, chat, turn(&text, 1, None))),
        )
        .await;
    }
    for (what, field, t) in [
        ("token_count -1", "token_count", turn("Hi", -1, None)),
        (
            "token_count i32::MIN",
            "token_count",
            turn("Hi", i32::MIN, None),
        ),
        (
            "token_count i32::MAX on 10 tokens",
            "token_count",
            turn("Hi", i32::MAX, None),
        ),
        ("turn_number 1 again", "turn_number", turn("Hi", 1, Some(1))),
        ("turn_number 3", "turn_number", turn("Hi", 1, Some(3))),
        ("turn_number 0", "turn_number", turn("Hi", 1, Some(0))),
        (
            "turn_number i32::MAX",
            "turn_number",
            turn("Hi", 1, Some(i32::MAX)),
        ),
        (
            "turn_number i32::MIN",
            "turn_number",
            turn("Hi", 1, Some(i32::MIN)),
        ),
    ] {
        b.refused(
            format!("conversations::append_turn {what}"),
            field,
            call!(db, d => conversations::append_turn(d, svc, chat, t)),
        )
        .await;
    }
    let case = "conversations::append_turn up to total_tokens i32::MAX";
    let fill = turn(&longest(100_000), i32::MAX - 10, Some(2));
    if b.accepted(
        case,
        call!(db, d => conversations::append_turn(d, svc, chat, fill)),
    )
    .await
    .is_some()
    {
        let row = stored::<conversation_rows::Entity>(&b.owner, chat).await;
        b.reads_back(
            case,
            row.map(|r| (r.total_turns, r.total_tokens)),
            (2, i32::MAX),
        );
    }
    b.refused(
        "conversations::append_turn one token past total_tokens i32::MAX",
        "token_count",
        call!(db, d => conversations::append_turn(d, svc, chat, turn("Hi", 1, None))),
    )
    .await;

    // submit_for_review, approve, reject, request_revision: comments.
    let draft = fixtures::conversation_with_turns(db, owner, 0)
        .await
        .expect("conversation")
        .conversation
        .id;
    for (actor, who) in [(me, "owner"), (svc, "service")] {
        for (what, comment) in bad_texts(5_000) {
            b.refused(
                format!("conversations::submit_for_review ({who}) comment {what}"),
                "comment",
                call!(db, d => conversations::submit_for_review(d, actor, draft, Some(&comment))),
            )
            .await;
        }
    }
    let waiting = fixtures::conversation_with_turns(db, owner, 0)
        .await
        .expect("conversation")
        .conversation
        .id;
    conversations::submit_for_review(db, svc, waiting, None)
        .await
        .expect("submit");
    for (what, comment) in bad_texts(5_000) {
        let why = comment.clone();
        b.refused(
            format!("conversations::approve comment {what}"),
            "comment",
            call!(db, d => conversations::approve(d, svc, waiting, reviewer, Some(&comment))),
        )
        .await;
        let reason = why.clone();
        b.refused(
            format!("conversations::reject why {what}"),
            "comment",
            call!(db, d => conversations::reject(d, svc, waiting, reviewer, &reason)),
        )
        .await;
        b.refused(
            format!("conversations::request_revision why {what}"),
            "comment",
            call!(db, d => conversations::request_revision(d, svc, waiting, reviewer, &why)),
        )
        .await;
    }

    // review_history grows with every step: comments at the limit (5000 characters that
    // JSON escapes to 6 bytes each) fill its 64 KiB in three steps.
    let loud = "\u{1}".repeat(5_000);
    let (c1, c2) = (loud.clone(), loud.clone());
    let case = "conversations::submit_for_review (owner) 5000-character comment";
    if b.accepted(
        case,
        call!(db, d => conversations::submit_for_review(d, me, draft, Some(&c1))),
    )
    .await
    .is_some()
    {
        let case = "conversations::request_revision 5000-character why";
        if b.accepted(
            case,
            call!(db, d => conversations::request_revision(d, svc, draft, reviewer, &c2)),
        )
        .await
        .is_some()
        {
            let row = stored::<conversation_rows::Entity>(&b.owner, draft).await;
            let comments = row.map(|r| {
                r.review_history
                    .0
                    .into_iter()
                    .map(|a| a.comment)
                    .collect::<Vec<_>>()
            });
            b.reads_back(case, comments, vec![Some(loud.clone()); 2]);
            for (actor, who) in [(me, "owner"), (svc, "service")] {
                let comment = loud.clone();
                b.refused(
                    format!(
                        "conversations::submit_for_review ({who}) comment past review_history's \
                         64 KiB"
                    ),
                    "comment",
                    call!(db, d => conversations::submit_for_review(d, actor, draft, Some(&comment))),
                )
                .await;
            }
        }
    }
}

async fn batches_cases(b: &mut Battery, db: &DatabaseConnection) {
    let owner = roomy_user(db).await;
    let me = Actor::User(owner);
    let new = || {
        NewBatch::new(
            "Batch",
            BatchConfiguration::new(ConversationTier::Template),
            vec![NewBatchItem::new("topic 1"), NewBatchItem::new("topic 2")],
        )
    };

    // create
    for (what, name) in bad_texts(200) {
        let batch = NewBatch { name, ..new() };
        b.refused(
            format!("batches::create name {what}"),
            "name",
            call!(db, d => batches::create(d, me, batch)),
        )
        .await;
    }
    for n in [0, batches::MAX_CONCURRENCY + 1, u32::MAX] {
        let mut batch = new();
        batch.configuration.concurrent_processing = n;
        b.refused(
            format!("batches::create concurrent_processing {n}"),
            "concurrent_processing",
            call!(db, d => batches::create(d, me, batch)),
        )
        .await;
    }
    let mut shared = bad_objects();
    // Under the cap by itself, over it inside the configuration document.
    let just_under = json!({ "k": "x".repeat(JSON_MAX_BYTES - 20) });
    shared.push(("over 64 KiB inside the configuration", just_under));
    for (what, doc) in shared {
        let mut batch = new();
        batch.configuration.shared_parameters = doc;
        b.refused(
            format!("batches::create shared_parameters {what}"),
            "shared_parameters",
            call!(db, d => batches::create(d, me, batch)),
        )
        .await;
    }
    for (what, n) in [("no items", 0), ("too many items", batches::MAX_ITEMS + 1)] {
        let batch = NewBatch {
            items: vec![NewBatchItem::new("t"); n],
            ..new()
        };
        b.refused(
            format!("batches::create {what}"),
            "items",
            call!(db, d => batches::create(d, me, batch)),
        )
        .await;
    }
    for (what, topic) in bad_texts(500) {
        let mut batch = new();
        batch.items[1].topic = topic;
        b.refused(
            format!("batches::create second item's topic {what}"),
            "topic",
            call!(db, d => batches::create(d, me, batch)),
        )
        .await;
    }
    for (what, doc) in bad_objects() {
        let mut batch = new();
        batch.items[1].parameters = doc;
        b.refused(
            format!("batches::create second item's parameters {what}"),
            "parameters",
            call!(db, d => batches::create(d, me, batch)),
        )
        .await;
    }
    let mut batch = NewBatch {
        name: longest(200),
        items: vec![NewBatchItem {
            topic: longest(500),
            tier: None,
            parameters: near_cap(),
        }],
        ..new()
    };
    batch.configuration.concurrent_processing = batches::MAX_CONCURRENCY;
    batch.configuration.shared_parameters = json!({ "k": "x".repeat(JSON_MAX_BYTES - 300) });
    let expected_config = batch.configuration.clone();
    let case = "batches::create longest name and topic, JSON just under 64 KiB";
    if let Some(created) = b
        .accepted(case, call!(db, d => batches::create(d, me, batch)))
        .await
    {
        let row = stored::<batch_rows::Entity>(&b.owner, created.id).await;
        b.reads_back(
            case,
            row.map(|r| (r.name, r.configuration)),
            (longest(200), expected_config),
        );
        let items = batches::list_items(db, me, created.id, ItemPageRequest::default())
            .await
            .map(|page| page.items)
            .unwrap_or_default();
        let mut item = None;
        if let Some(first) = items.first() {
            item = stored::<item_rows::Entity>(&b.owner, first.id).await;
        }
        b.reads_back(
            case,
            item.map(|i| (i.topic, i.parameters)),
            (longest(500), near_cap()),
        );
    }

    // list and list_items
    let batch = fixtures::batch_with_items(db, owner, 3)
        .await
        .expect("batch")
        .id;
    for limit in bad_limits() {
        let request = PageRequest::with_limit(limit);
        b.refused(
            format!("batches::list limit {limit}"),
            "limit",
            call!(db, d => batches::list(d, me, &request)),
        )
        .await;
        let request = ItemPageRequest {
            limit: Some(limit),
            ..Default::default()
        };
        b.refused(
            format!("batches::list_items limit {limit}"),
            "limit",
            call!(db, d => batches::list_items(d, me, batch, request)),
        )
        .await;
    }
    for (position, expected) in [(i32::MIN, 3), (i32::MAX, 0)] {
        let request = ItemPageRequest {
            after_position: Some(position),
            ..Default::default()
        };
        let case = format!("batches::list_items after_position {position}");
        if let Some(page) = b
            .accepted(
                &case,
                call!(db, d => batches::list_items(d, me, batch, request)),
            )
            .await
            && page.items.len() != expected
        {
            b.fail(&case, format!("{} items, not {expected}", page.items.len()));
        }
    }
}

async fn batch_items_cases(b: &mut Battery, db: &DatabaseConnection) {
    let svc = Actor::Service;
    let owner = roomy_user(db).await;
    let bad_leases = [
        ("zero", Duration::ZERO),
        ("over MAX_LEASE", jobs::MAX_LEASE + Duration::from_secs(1)),
        ("Duration::MAX", Duration::MAX),
    ];

    // claim_next and claim_many
    fixtures::batch_with_items(db, owner, 3)
        .await
        .expect("batch");
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("batch_items::claim_next worker {what}"),
            "worker",
            call!(db, d => batch_items::claim_next(d, svc, &worker, LEASE)),
        )
        .await;
    }
    for (what, lease) in bad_leases {
        b.refused(
            format!("batch_items::claim_next lease {what}"),
            "lease",
            call!(db, d => batch_items::claim_next(d, svc, "w1", lease)),
        )
        .await;
    }
    for limit in [0, batch_items::MAX_CLAIM + 1, u32::MAX] {
        b.refused(
            format!("batch_items::claim_many limit {limit}"),
            "limit",
            call!(db, d => batch_items::claim_many(d, svc, "w1", LEASE, limit)),
        )
        .await;
    }
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("batch_items::claim_many worker {what}"),
            "worker",
            call!(db, d => batch_items::claim_many(d, svc, &worker, LEASE, 2)),
        )
        .await;
    }
    for (what, lease) in bad_leases {
        b.refused(
            format!("batch_items::claim_many lease {what}"),
            "lease",
            call!(db, d => batch_items::claim_many(d, svc, "w1", lease, 2)),
        )
        .await;
    }

    // The lease calls, on an item that worker w1 holds.
    let held = batch_items::claim_next(db, svc, "w1", LEASE)
        .await
        .expect("claim")
        .expect("a claimable item")
        .item
        .id;
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("batch_items::heartbeat worker {what}"),
            "worker",
            call!(db, d => batch_items::heartbeat(d, svc, held, &worker, LEASE)),
        )
        .await;
    }
    for (what, lease) in bad_leases {
        b.refused(
            format!("batch_items::heartbeat lease {what}"),
            "lease",
            call!(db, d => batch_items::heartbeat(d, svc, held, "w1", lease)),
        )
        .await;
    }
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("batch_items::set_progress worker {what}"),
            "worker",
            call!(db, d => batch_items::set_progress(d, svc, held, &worker, 50)),
        )
        .await;
    }
    for progress in [-1, 101, i32::MIN, i32::MAX] {
        b.refused(
            format!("batch_items::set_progress progress {progress}"),
            "progress",
            call!(db, d => batch_items::set_progress(d, svc, held, "w1", progress)),
        )
        .await;
    }
    for progress in [0, 100] {
        let case = format!("batch_items::set_progress progress {progress}");
        if b.accepted(
            &case,
            call!(db, d => batch_items::set_progress(d, svc, held, "w1", progress)),
        )
        .await
        .is_some()
        {
            let row = stored::<item_rows::Entity>(&b.owner, held).await;
            b.reads_back(&case, row.map(|r| r.progress), Some(progress));
        }
    }
    let chat = fixtures::conversation_with_turns(db, owner, 1)
        .await
        .expect("conversation")
        .conversation
        .id;
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("batch_items::complete worker {what}"),
            "worker",
            call!(db, d => batch_items::complete(d, svc, held, &worker, chat)),
        )
        .await;
    }
    for (what, worker) in bad_texts(200) {
        b.refused(
            format!("batch_items::fail worker {what}"),
            "worker",
            call!(db, d => batch_items::fail(d, svc, held, &worker, "boom")),
        )
        .await;
    }
    for (what, error) in bad_texts(10_000) {
        b.refused(
            format!("batch_items::fail error {what}"),
            "error",
            call!(db, d => batch_items::fail(d, svc, held, "w1", &error)),
        )
        .await;
    }
    let case = "batch_items::fail longest error";
    if let Some(done) = b
        .accepted(
            case,
            call!(db, d => batch_items::fail(d, svc, held, "w1", &longest(10_000))),
        )
        .await
    {
        let row = stored::<item_rows::Entity>(&b.owner, done.item.id).await;
        b.reads_back(case, row.map(|r| r.error), Some(longest(10_000)));
    }
}
