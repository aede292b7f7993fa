//! The pipeline runs of SCHEMA.md (seeds 000 and 001): `jobs`, `job_events`, `artifacts`
//! and `prompts`. Seed 001's column list against a migrated PostgreSQL's
//! `information_schema`; the seeds' SQL and the edge functions' queries unchanged; and the
//! rules the database holds for every writer, on both backends: the run transitions
//! (every pair), the timestamps and `error_message`, the owner of events and artifacts,
//! append-only events, and the CHECKs.

mod common;

use chrono::{Duration, Utc};
use common::{TestDb, expect_sql_error, query_i64, query_string};
use forge_db::entity::ids::{ProfileId, PromptId, RunId};
use forge_db::entity::pipeline_runs::RunStatus;
use forge_db::entity::{artifacts, pipeline_events, pipeline_runs, profiles, prompts};
use forge_db::sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    ModelTrait, NotSet, PaginatorTrait, Set, Statement, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

on_both_backends! {
    run_transitions_are_the_same_in_rust_and_in_the_database => run_transitions_pinned;
    the_database_sets_the_run_timestamps => run_timestamps;
    error_message_only_on_a_failed_run => error_message_only_when_failed;
    a_run_keeps_its_owner => a_run_keeps_its_owner;
    events_and_artifacts_carry_the_runs_owner => owner_is_the_runs;
    job_events_are_append_only => job_events_append_only;
    checks_refuse_bad_rows => checks_refuse_bad_rows;
    deleting_a_run_or_its_owner_cascades => cascades;
    prompts_round_trip => prompts_round_trip;
}

// ---------------------------------------------------------------------------------------
// Helpers.

async fn profile<C: ConnectionTrait>(db: &C, email: &str) -> profiles::Model {
    profiles::ActiveModel {
        email: Set(email.to_owned()),
        display_name: Set(email.split('@').next().unwrap_or_default().to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert profile")
}

/// A run of `owner` inserted directly in `status` (as the owner of the database, so only
/// the invariants apply, not the end-user rules).
async fn insert_run<C: ConnectionTrait>(
    db: &C,
    owner: ProfileId,
    run_id: &str,
    status: RunStatus,
) -> Result<pipeline_runs::Model, DbErr> {
    pipeline_runs::ActiveModel {
        run_id: Set(RunId::new(run_id)),
        project_spec: Set(json!({"name": run_id})),
        owner_id: Set(owner),
        status: Set(status),
        ..Default::default()
    }
    .insert(db)
    .await
}

async fn run<C: ConnectionTrait>(db: &C, owner: ProfileId, run_id: &str) -> pipeline_runs::Model {
    insert_run(db, owner, run_id, RunStatus::Pending)
        .await
        .expect("insert run")
}

/// The run as stored now (SQLite sets timestamps after the row is written, so what an
/// `UPDATE … RETURNING` gave back may predate them).
async fn reread<C: ConnectionTrait>(db: &C, run_id: &str) -> pipeline_runs::Model {
    pipeline_runs::Entity::find_by_id(RunId::new(run_id))
        .one(db)
        .await
        .expect("read run")
        .expect("the run exists")
}

async fn set_status<C: ConnectionTrait>(
    db: &C,
    run: &pipeline_runs::Model,
    to: RunStatus,
) -> Result<pipeline_runs::Model, DbErr> {
    let mut row: pipeline_runs::ActiveModel = run.clone().into();
    row.status = Set(to);
    row.update(db).await?;
    Ok(reread(db, run.run_id.as_str()).await)
}

fn event(run: &pipeline_runs::Model, owner: ProfileId) -> pipeline_events::ActiveModel {
    pipeline_events::ActiveModel {
        run_id: Set(run.run_id.clone()),
        bot_name: Set("builder".to_owned()),
        event_type: Set("progress".to_owned()),
        payload: Set(Some(json!({"percent": 50}))),
        owner_id: Set(owner),
        ..Default::default()
    }
}

fn artifact(run: &pipeline_runs::Model, owner: ProfileId) -> artifacts::ActiveModel {
    artifacts::ActiveModel {
        run_id: Set(run.run_id.clone()),
        kind: Set("zip".to_owned()),
        url: Set(Some("https://storage.example.com/app.zip".to_owned())),
        owner_id: Set(owner),
        file_size: Set(Some(1024)),
        content_type: Set(Some("application/zip".to_owned())),
        checksum: Set(Some(format!("sha256:{}", "ab".repeat(32)))),
        ..Default::default()
    }
}

fn refused_with<T: std::fmt::Debug>(result: Result<T, DbErr>, needle: &str, what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected a refusal ({needle}), got {v:?}"),
        Err(e) => assert!(e.to_string().contains(needle), "{what}: {e}"),
    }
}

fn recent(at: Option<chrono::DateTime<Utc>>, what: &str) {
    let at = at.unwrap_or_else(|| panic!("{what} is not set"));
    let age = Utc::now() - at;
    assert!(
        age < Duration::minutes(1) && age > Duration::minutes(-1),
        "{what} = {at}"
    );
}

// ---------------------------------------------------------------------------------------
// Both backends.

/// The run state machine lives twice: `RunStatus::can_transition_to` and the database's
/// triggers. This pins them to each other over all 25 pairs, as the database's owner.
async fn run_transitions_pinned(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    for &from in RunStatus::ALL {
        for &to in RunStatus::ALL {
            let run = insert_run(db, ada.id, &format!("{from}-to-{to}"), from)
                .await
                .unwrap_or_else(|e| panic!("insert a {from} run: {e}"));
            let run = reread(db, run.run_id.as_str()).await;
            let moved = set_status(db, &run, to).await;
            let allowed = from == to || from.can_transition_to(to);
            assert_eq!(
                moved.is_ok(),
                allowed,
                "{from} → {to}: the database said {moved:?}, Rust says allowed = {allowed}"
            );
            match moved {
                Ok(after) => {
                    assert_eq!(after.status, to);
                    assert_eq!(
                        after.started_at.is_some(),
                        matches!(
                            to,
                            RunStatus::Running | RunStatus::Completed | RunStatus::Failed
                        ) || run.started_at.is_some(),
                        "{from} → {to}: started_at {after:?}"
                    );
                    assert_eq!(
                        after.completed_at.is_some(),
                        to.is_final(),
                        "{from} → {to}: completed_at {after:?}"
                    );
                }
                Err(err) => assert!(err.to_string().contains("forge:transition:run"), "{err}"),
            }
        }
    }
    assert_eq!(
        pipeline_runs::Entity::find().count(db).await.unwrap(),
        25,
        "one run per pair"
    );
}

/// `started_at` on entering running, `completed_at` on entering an end state, by the
/// database; a pending run has no `started_at`, a live one no `completed_at`.
async fn run_timestamps(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let pending = run(db, ada.id, "run-1").await;
    assert_eq!(pending.status, RunStatus::Pending, "the default status");
    assert_eq!((pending.started_at, pending.completed_at), (None, None));

    let running = set_status(db, &pending, RunStatus::Running).await.unwrap();
    recent(running.started_at, "started_at on entering running");
    assert_eq!(running.completed_at, None);
    let completed = set_status(db, &running, RunStatus::Completed)
        .await
        .unwrap();
    recent(completed.completed_at, "completed_at on entering completed");
    assert_eq!(completed.started_at, running.started_at, "started_at stays");

    let cancelled = set_status(db, &run(db, ada.id, "run-2").await, RunStatus::Cancelled)
        .await
        .unwrap();
    recent(cancelled.completed_at, "completed_at on cancelling");
    assert_eq!(cancelled.started_at, None, "cancelled before it started");

    // Inserted in a later state, the run gets the timestamps that state implies, and the
    // writer's own values are kept.
    let failed = insert_run(db, ada.id, "run-3", RunStatus::Failed)
        .await
        .unwrap();
    let failed = reread(db, failed.run_id.as_str()).await;
    recent(failed.started_at, "started_at of an inserted failed run");
    recent(
        failed.completed_at,
        "completed_at of an inserted failed run",
    );
    let then = Utc::now() - Duration::days(2);
    let given = pipeline_runs::ActiveModel {
        run_id: Set(RunId::new("run-4")),
        project_spec: Set(json!({})),
        owner_id: Set(ada.id),
        status: Set(RunStatus::Completed),
        started_at: Set(Some(then)),
        completed_at: Set(Some(then + Duration::minutes(5))),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let given = reread(db, given.run_id.as_str()).await;
    let kept = given.completed_at.map(|c| (c - then).num_seconds());
    assert!(
        matches!(kept, Some(299..=300)),
        "the writer's completed_at is kept: {kept:?}"
    );

    // Inconsistent timestamps are refused.
    let mut early = pipeline_runs::ActiveModel {
        run_id: Set(RunId::new("run-5")),
        project_spec: Set(json!({})),
        owner_id: Set(ada.id),
        started_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    refused_with(
        early.clone().insert(db).await,
        "forge:invalid:started_at",
        "a pending run with started_at",
    );
    early.started_at = Set(None);
    early.completed_at = Set(Some(Utc::now()));
    early.status = Set(RunStatus::Running);
    refused_with(
        early.insert(db).await,
        "forge:invalid:completed_at",
        "a running run with completed_at",
    );
    let mut row: pipeline_runs::ActiveModel = reread(db, "run-2").await.into();
    row.status = Set(RunStatus::Pending);
    refused_with(
        row.update(db).await,
        "forge:transition:run",
        "back to pending",
    );
}

/// `error_message` only with `failed`.
async fn error_message_only_when_failed(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    for status in [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Cancelled,
    ] {
        let row = pipeline_runs::ActiveModel {
            run_id: Set(RunId::new(format!("err-{status}"))),
            project_spec: Set(json!({})),
            owner_id: Set(ada.id),
            status: Set(status),
            error_message: Set(Some("boom".to_owned())),
            ..Default::default()
        };
        refused_with(
            row.insert(db).await,
            "forge:invalid:error_message",
            &format!("a {status} run with an error_message"),
        );
    }
    let running = insert_run(db, ada.id, "run-1", RunStatus::Running)
        .await
        .unwrap();
    let mut row: pipeline_runs::ActiveModel = running.clone().into();
    row.error_message = Set(Some("not yet".to_owned()));
    refused_with(
        row.update(db).await,
        "forge:invalid:error_message",
        "an error_message on a running run",
    );
    let mut row: pipeline_runs::ActiveModel = running.into();
    row.status = Set(RunStatus::Failed);
    row.error_message = Set(Some("build bot: exit 1".to_owned()));
    row.update(db).await.expect("fail with a reason");
    let failed = reread(db, "run-1").await;
    assert_eq!(failed.error_message.as_deref(), Some("build bot: exit 1"));
    recent(failed.completed_at, "completed_at of the failed run");

    let done = insert_run(db, ada.id, "run-2", RunStatus::Completed)
        .await
        .unwrap();
    let mut row: pipeline_runs::ActiveModel = done.into();
    row.error_message = Set(Some("late".to_owned()));
    refused_with(
        row.update(db).await,
        "forge:invalid:error_message",
        "an error_message on a completed run",
    );
}

/// A run never moves to another owner.
async fn a_run_keeps_its_owner(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let bob = profile(db, "bob@example.com").await;
    let r = run(db, ada.id, "run-1").await;
    let mut row: pipeline_runs::ActiveModel = r.into();
    row.owner_id = Set(bob.id);
    refused_with(
        row.update(db).await,
        "forge:invariant:a run's owner never changes",
        "moving a run",
    );
    refused_with(
        insert_run(db, ProfileId::new(), "orphan", RunStatus::Pending).await,
        "",
        "a run of no profile (foreign key)",
    );
}

/// `job_events.owner_id` and `artifacts.owner_id` are the run's owner: another value is
/// refused on both backends; PostgreSQL fills in a missing one.
async fn owner_is_the_runs(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let bob = profile(db, "bob@example.com").await;
    let r = insert_run(db, ada.id, "run-1", RunStatus::Running)
        .await
        .unwrap();

    refused_with(
        event(&r, bob.id).insert(db).await,
        "forge:conflict:owner_id",
        "an event with another owner",
    );
    refused_with(
        artifact(&r, bob.id).insert(db).await,
        "forge:conflict:owner_id",
        "an artifact with another owner",
    );
    let mut missing = r.clone();
    missing.run_id = RunId::new("no-such-run");
    refused_with(
        event(&missing, ada.id).insert(db).await,
        "forge:not_found:run",
        "an event of a missing run",
    );
    refused_with(
        artifact(&missing, ada.id).insert(db).await,
        "forge:not_found:run",
        "an artifact of a missing run",
    );

    let e = event(&r, ada.id).insert(db).await.expect("own event");
    assert_eq!(e.owner_id, ada.id);
    let a = artifact(&r, ada.id).insert(db).await.expect("own artifact");
    let mut moved: artifacts::ActiveModel = a.clone().into();
    moved.owner_id = Set(bob.id);
    refused_with(
        moved.update(db).await,
        "forge:conflict:owner_id",
        "an artifact moved to another owner",
    );
    let bobs = run(db, bob.id, "run-bob").await;
    let mut moved: artifacts::ActiveModel = a.into();
    moved.run_id = Set(bobs.run_id.clone());
    refused_with(
        moved.update(db).await,
        "forge:conflict:owner_id",
        "an artifact moved to another owner's run",
    );

    if t.backend() == DbBackend::Postgres {
        let mut e = event(&r, ada.id);
        e.owner_id = NotSet;
        let filled = e.insert(db).await.expect("an event without owner_id");
        assert_eq!(filled.owner_id, ada.id, "filled in from the run");
        let mut a = artifact(&r, ada.id);
        a.owner_id = NotSet;
        let filled = a.insert(db).await.expect("an artifact without owner_id");
        assert_eq!(filled.owner_id, ada.id, "filled in from the run");
    } else {
        let mut e = event(&r, ada.id);
        e.owner_id = NotSet;
        assert!(
            e.insert(db).await.is_err(),
            "SQLite cannot fill owner_id in"
        );
    }
}

/// Events never change; on PostgreSQL they are deleted only with their run.
async fn job_events_append_only(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let r = insert_run(db, ada.id, "run-1", RunStatus::Running)
        .await
        .unwrap();
    let e = event(&r, ada.id).insert(db).await.unwrap();
    let mut row: pipeline_events::ActiveModel = e.clone().into();
    row.event_type = Set("forged".to_owned());
    refused_with(
        row.update(db).await,
        "forge:invariant:job events never change",
        "updating an event",
    );
    if t.backend() == DbBackend::Postgres {
        refused_with(
            e.clone().delete(db).await,
            "forge:invariant:job events are deleted only with their run",
            "deleting an event",
        );
    }
    assert_eq!(
        pipeline_events::Entity::find().count(db).await.unwrap(),
        1,
        "the event is still there"
    );
}

/// The CHECKs: `run_id` not blank and ≤ 200 characters, `project_spec` a JSON object,
/// `status` one of five, `file_size` ≥ 0, `checksum` `sha256:` + 64 lowercase hex digits,
/// JSON documents ≤ 64 KiB.
async fn checks_refuse_bad_rows(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let bad_runs = [
        (String::new(), json!({}), "jobs_run_id_check"),
        ("   ".to_owned(), json!({}), "jobs_run_id_check"),
        ("r".repeat(201), json!({}), "jobs_run_id_check"),
        (
            "run-array".to_owned(),
            json!(["a"]),
            "jobs_project_spec_check",
        ),
        (
            "run-text".to_owned(),
            json!("spec"),
            "jobs_project_spec_check",
        ),
    ];
    for (run_id, spec, constraint) in bad_runs {
        let row = pipeline_runs::ActiveModel {
            run_id: Set(RunId::new(run_id.clone())),
            project_spec: Set(spec),
            owner_id: Set(ada.id),
            ..Default::default()
        };
        refused_with(row.insert(db).await, constraint, &format!("run {run_id:?}"));
    }
    let longest = "r".repeat(200);
    run(db, ada.id, &longest).await;
    let big = json!({"blob": "x".repeat(70_000)});
    let row = pipeline_runs::ActiveModel {
        run_id: Set(RunId::new("run-big")),
        project_spec: Set(big.clone()),
        owner_id: Set(ada.id),
        ..Default::default()
    };
    let size = if t.backend() == DbBackend::Postgres {
        "jobs_project_spec_size_check"
    } else {
        "forge:invalid:project_spec"
    };
    refused_with(row.insert(db).await, size, "a 70 KB project_spec");

    let raw_status = "UPDATE jobs SET status = 'paused'";
    let err = expect_sql_error(db, raw_status).await;
    assert!(
        err.contains("forge:transition:run") || err.contains("jobs_status_check"),
        "{err}"
    );
    let err = expect_sql_error(
        db,
        &format!(
            "INSERT INTO jobs (run_id, project_spec, owner_id, status) VALUES ('run-paused', '{{}}', {}, 'paused')",
            uuid_literal(t, ada.id)
        ),
    )
    .await;
    assert!(err.contains("jobs_status_check"), "{err}");

    let r = run(db, ada.id, "run-1").await;
    let hex = "0123456789abcdef".repeat(4);
    for (checksum, size, constraint) in [
        (
            format!("sha256:{}", hex.to_uppercase()),
            1,
            "artifacts_checksum_check",
        ),
        (
            format!("sha256:{}", &hex[1..]),
            1,
            "artifacts_checksum_check",
        ),
        (format!("sha256:{hex}0"), 1, "artifacts_checksum_check"),
        (format!("md5:{hex}"), 1, "artifacts_checksum_check"),
        (hex.clone(), 1, "artifacts_checksum_check"),
        (
            format!("sha256:{}g", &hex[1..]),
            1,
            "artifacts_checksum_check",
        ),
        (format!("sha256:{hex}"), -1, "artifacts_file_size_check"),
    ] {
        let mut row = artifact(&r, ada.id);
        row.checksum = Set(Some(checksum.clone()));
        row.file_size = Set(Some(size));
        refused_with(
            row.insert(db).await,
            constraint,
            &format!("checksum {checksum:?}, file_size {size}"),
        );
    }
    let mut ok = artifact(&r, ada.id);
    ok.checksum = Set(Some(format!("sha256:{hex}")));
    ok.file_size = Set(Some(0));
    ok.insert(db)
        .await
        .expect("a valid checksum and an empty file");
    let mut bare = artifact(&r, ada.id);
    bare.checksum = Set(None);
    bare.file_size = Set(None);
    bare.meta = Set(Some(big.clone()));
    let size = if t.backend() == DbBackend::Postgres {
        "artifacts_meta_size_check"
    } else {
        "forge:invalid:meta"
    };
    refused_with(bare.clone().insert(db).await, size, "a 70 KB meta");
    bare.meta = Set(None);
    bare.insert(db)
        .await
        .expect("no checksum, no size, no meta");
    let mut e = event(&r, ada.id);
    e.payload = Set(Some(big));
    let size = if t.backend() == DbBackend::Postgres {
        "job_events_payload_size_check"
    } else {
        "forge:invalid:payload"
    };
    refused_with(e.insert(db).await, size, "a 70 KB payload");

    for (id, constraint) in [("", "prompts_id_check"), ("  ", "prompts_id_check")] {
        let row = prompts::ActiveModel {
            id: Set(PromptId::new(id)),
            category: Set("copy".to_owned()),
            context: Set("nowhere".to_owned()),
            prompt_text: Set("hi".to_owned()),
            ..Default::default()
        };
        refused_with(row.insert(db).await, constraint, &format!("prompt {id:?}"));
    }
}

fn uuid_literal(t: &TestDb, id: impl Into<Uuid>) -> String {
    let id: Uuid = id.into();
    match t.backend() {
        DbBackend::Sqlite => format!("X'{}'", id.simple()),
        _ => format!("'{id}'"),
    }
}

/// Deleting a run deletes its events and artifacts; deleting a profile deletes its runs.
async fn cascades(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let bob = profile(db, "bob@example.com").await;
    for (owner, run_id) in [(ada.id, "ada-1"), (ada.id, "ada-2"), (bob.id, "bob-1")] {
        let r = insert_run(db, owner, run_id, RunStatus::Running)
            .await
            .unwrap();
        event(&r, owner).insert(db).await.unwrap();
        artifact(&r, owner).insert(db).await.unwrap();
    }
    let counts = |db: DatabaseConnection| async move {
        (
            pipeline_runs::Entity::find().count(&db).await.unwrap(),
            pipeline_events::Entity::find().count(&db).await.unwrap(),
            artifacts::Entity::find().count(&db).await.unwrap(),
        )
    };
    assert_eq!(counts(db.clone()).await, (3, 3, 3));
    pipeline_runs::Entity::delete_by_id("ada-1".to_owned())
        .exec(db)
        .await
        .expect("delete a run (its events go with it)");
    assert_eq!(counts(db.clone()).await, (2, 2, 2));
    ada.delete(db).await.expect("delete a profile");
    assert_eq!(counts(db.clone()).await, (1, 1, 1));
}

async fn prompts_round_trip(t: &TestDb) {
    let db = &t.owner;
    let p = prompts::ActiveModel {
        id: Set(PromptId::new("onboarding.welcome")),
        category: Set("copy".to_owned()),
        context: Set("the first screen".to_owned()),
        prompt_text: Set("Welcome!".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert a prompt");
    recent(Some(p.created_at), "created_at");
    assert_eq!(p.created_at, p.updated_at);
    let mut row: prompts::ActiveModel = p.clone().into();
    row.prompt_text = Set("Welcome back!".to_owned());
    let changed = row.update(db).await.unwrap();
    assert!(changed.updated_at >= p.updated_at);
    assert_eq!(changed.prompt_text, "Welcome back!");
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: seed 001's column list, and the seeds' SQL unchanged.

/// Seed 001's columns, with SCHEMA.md's nullability and defaults: (table, column,
/// data_type, is_nullable, column_default).
const SEED_001_COLUMNS: &[(&str, &str, &str, &str, Option<&str>)] = &[
    ("jobs", "run_id", "text", "NO", None),
    ("jobs", "project_spec", "jsonb", "NO", None),
    ("jobs", "owner_id", "uuid", "NO", None),
    ("jobs", "status", "text", "NO", Some("'pending'::text")),
    (
        "jobs",
        "started_at",
        "timestamp with time zone",
        "YES",
        None,
    ),
    (
        "jobs",
        "completed_at",
        "timestamp with time zone",
        "YES",
        None,
    ),
    ("jobs", "error_message", "text", "YES", None),
    (
        "jobs",
        "created_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    (
        "jobs",
        "updated_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    ("job_events", "id", "uuid", "NO", Some("gen_random_uuid()")),
    ("job_events", "run_id", "text", "NO", None),
    ("job_events", "bot_name", "text", "NO", None),
    ("job_events", "event_type", "text", "NO", None),
    ("job_events", "payload", "jsonb", "YES", None),
    ("job_events", "owner_id", "uuid", "NO", None),
    (
        "job_events",
        "created_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    ("artifacts", "id", "uuid", "NO", Some("gen_random_uuid()")),
    ("artifacts", "run_id", "text", "NO", None),
    ("artifacts", "kind", "text", "NO", None),
    ("artifacts", "url", "text", "YES", None),
    ("artifacts", "meta", "jsonb", "YES", None),
    ("artifacts", "owner_id", "uuid", "NO", None),
    ("artifacts", "file_size", "bigint", "YES", None),
    ("artifacts", "content_type", "text", "YES", None),
    ("artifacts", "checksum", "text", "YES", None),
    (
        "artifacts",
        "created_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    ("prompts", "id", "text", "NO", None),
    ("prompts", "category", "text", "NO", None),
    ("prompts", "context", "text", "NO", None),
    ("prompts", "prompt_text", "text", "NO", None),
    (
        "prompts",
        "created_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    (
        "prompts",
        "updated_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
];

async fn rows<C: ConnectionTrait>(db: &C, sql: &str) -> Vec<Vec<Option<String>>> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            (0..)
                .map_while(|i| r.try_get_by_index::<Option<String>>(i).ok())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn seed_001_columns_are_the_migrated_ones() {
    let t = TestDb::postgres().await;
    let db = &t.owner;
    let found = rows(
        db,
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text,
                column_default::text
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name IN ('jobs', 'job_events', 'artifacts', 'prompts')
         ORDER BY array_position(ARRAY['jobs', 'job_events', 'artifacts', 'prompts'], table_name::text),
                  ordinal_position",
    )
    .await;
    let expected: Vec<Vec<Option<String>>> = SEED_001_COLUMNS
        .iter()
        .map(|(t, c, ty, null, default)| {
            vec![
                Some((*t).to_owned()),
                Some((*c).to_owned()),
                Some((*ty).to_owned()),
                Some((*null).to_owned()),
                default.map(str::to_owned),
            ]
        })
        .collect();
    assert_eq!(found, expected);

    // Primary keys.
    let keys = query_string(
        db,
        "SELECT string_agg(tc.table_name || '.' || kcu.column_name, ',' ORDER BY tc.table_name)
         FROM information_schema.table_constraints tc
         JOIN information_schema.key_column_usage kcu
           ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
         WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY'
           AND tc.table_name IN ('jobs', 'job_events', 'artifacts', 'prompts')",
    )
    .await;
    assert_eq!(
        keys.as_deref(),
        Some("artifacts.id,job_events.id,jobs.run_id,prompts.id")
    );

    // Foreign keys, all ON DELETE CASCADE (seed 000 §4, SCHEMA.md).
    let fks = query_string(
        db,
        "SELECT string_agg(kcu.table_name || '.' || kcu.column_name || ' -> ' || ccu.table_name
                           || '.' || ccu.column_name || ' ' || rc.delete_rule, ', '
                           ORDER BY kcu.table_name, kcu.column_name)
         FROM information_schema.referential_constraints rc
         JOIN information_schema.key_column_usage kcu
           ON kcu.constraint_name = rc.constraint_name AND kcu.constraint_schema = rc.constraint_schema
         JOIN information_schema.constraint_column_usage ccu
           ON ccu.constraint_name = rc.constraint_name AND ccu.constraint_schema = rc.constraint_schema
         WHERE rc.constraint_schema = 'public'
           AND kcu.table_name IN ('jobs', 'job_events', 'artifacts', 'prompts')",
    )
    .await;
    assert_eq!(
        fks.as_deref(),
        Some(
            "artifacts.run_id -> jobs.run_id CASCADE, job_events.run_id -> jobs.run_id CASCADE, \
             jobs.owner_id -> profiles.id CASCADE"
        )
    );

    // CHECKs by name, and the indexes of SCHEMA.md.
    let checks = query_string(
        db,
        "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint
         WHERE contype = 'c' AND conrelid IN ('public.jobs'::regclass, 'public.job_events'::regclass,
                                              'public.artifacts'::regclass, 'public.prompts'::regclass)",
    )
    .await;
    assert_eq!(
        checks.as_deref(),
        Some(
            "artifacts_checksum_check,artifacts_file_size_check,artifacts_meta_size_check,\
             job_events_payload_size_check,jobs_project_spec_check,jobs_project_spec_size_check,\
             jobs_run_id_check,jobs_status_check,prompts_id_check"
        )
    );
    let indexes = query_string(
        db,
        "SELECT string_agg(indexname || ' ' || substring(indexdef FROM '\\((.*)\\)$'), ', ' ORDER BY indexname)
         FROM pg_indexes WHERE schemaname = 'public' AND indexname LIKE 'idx\\_%'
           AND tablename IN ('jobs', 'job_events', 'artifacts', 'prompts')",
    )
    .await;
    assert_eq!(
        indexes.as_deref(),
        Some(
            "idx_artifacts_owner_id owner_id, idx_artifacts_run_id run_id, \
             idx_job_events_owner_id owner_id, idx_job_events_run_id run_id, created_at, \
             idx_jobs_created_at created_at DESC, \
             idx_jobs_owner_id_keyset owner_id, created_at DESC, run_id DESC, \
             idx_jobs_status status"
        )
    );

    // Seed 000, step 2, verbatim.
    assert_eq!(
        query_i64(
            db,
            "SELECT count(*) FROM (SELECT tablename FROM pg_tables
             WHERE schemaname = 'public'
               AND tablename IN ('jobs', 'job_events', 'artifacts', 'prompts')) AS t"
        )
        .await,
        4
    );
    t.finish().await;
}

const USER_A: &str = "11111111-1111-4111-8111-111111111111";
const USER_B: &str = "22222222-2222-4222-8222-222222222222";

/// `steps` in one transaction as `role` (with `uid`'s JWT claims for `authenticated`),
/// committed; the rows of the last statement's first column, or the error.
async fn as_role(
    db: &DatabaseConnection,
    role: &str,
    uid: Option<&str>,
    steps: &[&str],
) -> Result<Vec<Option<String>>, String> {
    let txn = db.begin().await.map_err(|e| e.to_string())?;
    let mut prelude = format!("SET LOCAL ROLE {role};");
    if let Some(uid) = uid {
        prelude.push_str(&format!(
            "SELECT set_config('request.jwt.claims', '{{\"sub\":\"{uid}\",\"role\":\"{role}\"}}', true);"
        ));
    }
    txn.execute_unprepared(&prelude)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for sql in steps {
        match txn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                (*sql).to_owned(),
            ))
            .await
        {
            Ok(rows) => {
                out = rows
                    .iter()
                    .map(|r| r.try_get_by_index::<Option<String>>(0).unwrap_or(None))
                    .collect();
            }
            Err(e) => {
                txn.rollback().await.ok();
                return Err(e.to_string());
            }
        }
    }
    txn.commit().await.map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::test]
async fn seeds_000_and_001_sql_runs_unchanged() {
    let t = TestDb::postgres().await;
    let db = &t.owner;
    db.execute_unprepared(&format!(
        "INSERT INTO profiles (id, email, display_name) VALUES
           ('{USER_A}', 'a@example.com', 'a'), ('{USER_B}', 'b@example.com', 'b')"
    ))
    .await
    .unwrap();

    // Seed 000, step 3, as supabase-js sends it through PostgREST: the user creates a run
    // (with their JWT; the database makes them its owner) …
    let created = as_role(
        db,
        "authenticated",
        Some(USER_A),
        &[r#"INSERT INTO jobs (run_id, project_spec, status)
             VALUES ('test-run', '{"name": "test"}', 'pending') RETURNING owner_id::text"#],
    )
    .await
    .expect("seed 000 step 3: jobs");
    assert_eq!(created, vec![Some(USER_A.to_owned())]);
    // … and the bots (the service) log an event and an artifact, owned like the run.
    as_role(
        db,
        "service_role",
        None,
        &[
            "INSERT INTO job_events (run_id, bot_name, event_type) VALUES ('test-run', 'test-bot', 'test')",
            "INSERT INTO artifacts (run_id, kind, url) VALUES ('test-run', 'zip', 'http://test.com')",
        ],
    )
    .await
    .expect("seed 000 step 3: job_events and artifacts");
    for table in ["job_events", "artifacts"] {
        assert_eq!(
            query_string(db, &format!("SELECT owner_id::text FROM {table}")).await,
            Some(USER_A.to_owned()),
            "{table}.owner_id is the run's owner"
        );
    }
    // scripts/seed-comprehensive.mjs: run_id, project_spec, owner_id, status (the service).
    as_role(
        db,
        "service_role",
        None,
        &[&format!(
            r#"INSERT INTO jobs (run_id, project_spec, owner_id, status)
               VALUES ('seed-run-b', '{{"name": "b"}}', '{USER_B}', 'pending')"#
        )],
    )
    .await
    .expect("seed-comprehensive.mjs insert");

    // Seed 000, step 4: a user sees only their own jobs, the service all of them.
    let mine = as_role(
        db,
        "authenticated",
        Some(USER_A),
        &["SELECT run_id FROM jobs"],
    )
    .await
    .unwrap();
    assert_eq!(mine, vec![Some("test-run".to_owned())]);
    let all = as_role(
        db,
        "service_role",
        None,
        &["SELECT run_id FROM jobs ORDER BY run_id"],
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 2);

    // The edge functions' queries, as the user: get-jobs (SELECT *), get-job-events and
    // get-artifacts (by run_id), get-pipeline-status (jobs with their events and artifacts).
    for (name, sql, want_a, want_b) in [
        (
            "get-jobs",
            "SELECT string_agg(run_id, ',') FROM (SELECT * FROM jobs ORDER BY created_at DESC) j",
            Some("test-run"),
            Some("seed-run-b"),
        ),
        (
            "get-job-events",
            "SELECT count(*)::text FROM (SELECT * FROM job_events WHERE run_id = 'test-run' ORDER BY created_at) e",
            Some("1"),
            Some("0"),
        ),
        (
            "get-artifacts",
            "SELECT count(*)::text FROM (SELECT * FROM artifacts WHERE run_id = 'test-run') a",
            Some("1"),
            Some("0"),
        ),
        (
            "get-pipeline-status",
            "SELECT j.status || ':' || count(DISTINCT e.id) || ':' || count(DISTINCT a.id)
             || ':' || coalesce(max(a.meta::text), 'no meta')
             FROM jobs j LEFT JOIN job_events e ON e.run_id = j.run_id
             LEFT JOIN artifacts a ON a.run_id = j.run_id
             WHERE j.run_id = 'test-run' GROUP BY j.run_id, j.status",
            Some("pending:1:1:no meta"),
            None,
        ),
    ] {
        for (user, want) in [(USER_A, want_a), (USER_B, want_b)] {
            let got = as_role(db, "authenticated", Some(user), &[sql])
                .await
                .unwrap_or_else(|e| panic!("{name} as {user}: {e}"));
            let want: Vec<Option<String>> = want.map(|w| Some(w.to_owned())).into_iter().collect();
            assert_eq!(got, want, "{name} as {user}");
        }
    }

    // The user cancels their run; the database stamps it.
    let cancelled = as_role(
        db,
        "authenticated",
        Some(USER_A),
        &[
            "UPDATE jobs SET status = 'cancelled' WHERE run_id = 'test-run'
           RETURNING status || ':' || (completed_at IS NOT NULL)::text",
        ],
    )
    .await
    .expect("cancel own run");
    assert_eq!(cancelled, vec![Some("cancelled:true".to_owned())]);

    // Prompts: the service writes, every signed-in user reads, anon nothing.
    as_role(
        db,
        "service_role",
        None,
        &["INSERT INTO prompts (id, category, context, prompt_text)
           VALUES ('onboarding.welcome', 'copy', 'first screen', 'Welcome!')"],
    )
    .await
    .expect("the service writes prompts");
    let read = as_role(
        db,
        "authenticated",
        Some(USER_B),
        &["SELECT prompt_text FROM prompts"],
    )
    .await
    .unwrap();
    assert_eq!(read, vec![Some("Welcome!".to_owned())]);
    let err = as_role(db, "anon", None, &["SELECT prompt_text FROM prompts"])
        .await
        .expect_err("anon reads no prompt");
    assert!(err.contains("permission denied"), "{err}");
    t.finish().await;
}
