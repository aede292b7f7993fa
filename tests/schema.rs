//! The schema of SCHEMA.md, checked through the entities on SQLite and PostgreSQL:
//! every table round-trips, the CHECKs refuse bad rows, foreign keys hold and cascade.

mod common;

use chrono::{Duration, Utc};
use common::{TestDb, expect_sql_error, query_i64};
use forge_db::entity::batch_items::ItemStatus;
use forge_db::entity::batch_jobs::{BatchConfiguration, BatchPriority, BatchStatus, ErrorHandling};
use forge_db::entity::coding_jobs::JobStatus;
use forge_db::entity::coding_sessions::SessionStatus;
use forge_db::entity::conversation_turns::TurnRole;
use forge_db::entity::conversations::{
    Categories, ConversationStatus, ConversationTier, QualityMetrics, ReviewAction,
    ReviewActionKind, ReviewHistory,
};
use forge_db::entity::ids::{BatchId, ProfileId, ProjectId, SessionId};
use forge_db::entity::profiles::Tier;
use forge_db::entity::projects::ProjectStatus;
use forge_db::entity::session_events::EventType;
use forge_db::entity::{
    batch_items, batch_jobs, coding_jobs, coding_sessions, conversation_turns, conversations,
    profiles, projects, session_events,
};
use forge_db::sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    ModelTrait, PaginatorTrait, QueryFilter, Set, Statement, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

on_both_backends! {
    every_table_round_trips => every_table_round_trips;
    checks_refuse_bad_rows => checks_refuse_bad_rows;
    a_session_cannot_reference_a_missing_project => a_session_cannot_reference_a_missing_project;
    unique_constraints_hold => unique_constraints_hold;
    deleting_a_profile_cascades_to_everything_it_owns => deleting_a_profile_cascades;
    set_null_foreign_keys => set_null_foreign_keys;
    rows_filled_by_database_defaults_read_back => database_defaults_read_back;
    session_transitions_are_the_same_in_rust_and_in_the_database => session_transitions_pinned;
}

/// The session state machine lives twice: `SessionStatus::can_transition_to` (the
/// repositories' conditional updates and error messages) and the database's trigger
/// (every writer). This pins the two to each other over all 36 pairs, as the owner (so
/// only the invariant, not the end-user rules, applies).
async fn session_transitions_pinned(t: &TestDb) {
    let db = &t.owner;
    let w = world(db, "ada@example.com").await;
    db.execute_unprepared("UPDATE profiles SET sessions_limit = 100")
        .await
        .unwrap();
    for &from in SessionStatus::ALL {
        for &to in SessionStatus::ALL {
            let session = coding_sessions::ActiveModel {
                user_id: Set(w.profile.id),
                project_id: Set(w.project.id),
                initial_prompt: Set(format!("{from} to {to}")),
                status: Set(from),
                expires_at: Set(Utc::now() + Duration::hours(1)),
                ..Default::default()
            }
            .insert(db)
            .await
            .unwrap();
            let mut row: coding_sessions::ActiveModel = session.into();
            row.status = Set(to);
            let moved = row.update(db).await;
            let allowed = from == to || from.can_transition_to(to);
            assert_eq!(
                moved.is_ok(),
                allowed,
                "{from} → {to}: the database said {moved:?}, Rust says allowed = {allowed}"
            );
            if let Err(err) = moved {
                assert!(
                    err.to_string().contains("forge:transition:session"),
                    "{err}"
                );
            }
        }
    }
}

struct World {
    profile: profiles::Model,
    project: projects::Model,
    session: coding_sessions::Model,
}

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

async fn world<C: ConnectionTrait>(db: &C, email: &str) -> World {
    let profile = profile(db, email).await;
    let project = projects::ActiveModel {
        user_id: Set(profile.id),
        name: Set("Todo app".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert project");
    let session = coding_sessions::ActiveModel {
        user_id: Set(profile.id),
        project_id: Set(project.id),
        initial_prompt: Set("Build a todo app".to_owned()),
        expires_at: Set(Utc::now() + Duration::hours(1)),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert session");
    World {
        profile,
        project,
        session,
    }
}

async fn conversation<C: ConnectionTrait>(
    db: &C,
    owner: ProfileId,
    human_id: &str,
) -> conversations::Model {
    conversations::ActiveModel {
        conversation_id: Set(human_id.to_owned()),
        created_by: Set(owner),
        tier: Set(ConversationTier::Template),
        persona: Set("anxious first-time investor".to_owned()),
        emotion: Set("worried".to_owned()),
        topic: Set("retirement".to_owned()),
        intent: Set("reassurance".to_owned()),
        tone: Set("warm".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert conversation")
}

async fn batch<C: ConnectionTrait>(db: &C, owner: ProfileId) -> batch_jobs::Model {
    batch_jobs::ActiveModel {
        created_by: Set(owner),
        name: Set("Retirement set".to_owned()),
        configuration: Set(BatchConfiguration {
            concurrent_processing: 2,
            error_handling: ErrorHandling::Stop,
            ..BatchConfiguration::new(ConversationTier::Scenario)
        }),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert batch")
}

async fn item<C: ConnectionTrait>(db: &C, batch: BatchId, position: i32) -> batch_items::Model {
    batch_items::ActiveModel {
        batch_job_id: Set(batch),
        position: Set(position),
        topic: Set(format!("topic {position}")),
        tier: Set(ConversationTier::Scenario),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert item")
}

async fn every_table_round_trips(t: &TestDb) {
    let db = &t.owner;
    let w = world(db, "ada@example.com").await;

    // Database defaults come back typed.
    assert_eq!(w.profile.tier, Tier::Free);
    assert_eq!(w.profile.sessions_limit, 3);
    assert_eq!(w.profile.avatar_url, None);
    assert_eq!(w.project.status, ProjectStatus::Active);
    assert_eq!(w.project.expo_config, json!({}));
    assert_eq!(w.session.status, SessionStatus::Pending);
    assert_eq!(w.session.metadata, json!({}));
    assert!(w.session.expires_at > Utc::now());

    let job = coding_jobs::ActiveModel {
        session_id: Set(w.session.id),
        prompt: Set("Add a dark mode".to_owned()),
        priority: Set(5),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!((job.retry_count, job.max_retries), (0, 3));
    assert!(job.locked_by.is_none() && job.result.is_none());

    for (seq, kind) in [(1, EventType::Thinking), (2, EventType::FileChange)] {
        session_events::ActiveModel {
            session_id: Set(w.session.id),
            seq: Set(seq),
            event_type: Set(kind),
            data: Set(json!({ "n": seq })),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }

    let mut convo = conversation(db, w.profile.id, "conv-0001").await;
    assert_eq!(convo.status, ConversationStatus::Draft);
    assert_eq!(convo.category, Categories::default());
    assert_eq!(convo.review_history, ReviewHistory::default());
    for (n, role, tokens) in [(1, TurnRole::User, 12), (2, TurnRole::Assistant, 40)] {
        conversation_turns::ActiveModel {
            conversation_id: Set(convo.id),
            turn_number: Set(n),
            role: Set(role),
            content: Set(format!("turn {n}")),
            token_count: Set(tokens),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }
    let history = ReviewHistory(vec![ReviewAction {
        action: ReviewActionKind::Approved,
        performed_by: w.profile.id,
        at: Utc::now(),
        comment: Some("clear and kind".to_owned()),
    }]);
    let metrics = QualityMetrics {
        overall: 8.5,
        ..Default::default()
    };
    let mut active: conversations::ActiveModel = convo.clone().into();
    active.status = Set(ConversationStatus::Approved);
    active.category = Set(Categories(vec!["finance".into(), "retirement".into()]));
    active.review_history = Set(history.clone());
    active.quality_metrics = Set(Some(metrics.clone()));
    active.quality_score = Set(Some(8.5));
    active.total_turns = Set(2);
    active.total_tokens = Set(52);
    active.approved_by = Set(Some(w.profile.id));
    convo = active.update(db).await.unwrap();
    let reread = conversations::Entity::find_by_id(convo.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reread.review_history, history);
    assert_eq!(reread.quality_metrics, Some(metrics));
    assert_eq!(reread.category.0, vec!["finance", "retirement"]);
    assert!(reread.updated_at >= reread.created_at);

    let b = batch(db, w.profile.id).await;
    assert_eq!(
        (b.status, b.priority),
        (BatchStatus::Queued, BatchPriority::Normal)
    );
    assert_eq!(b.configuration.error_handling, ErrorHandling::Stop);
    assert_eq!(b.configuration.tier, ConversationTier::Scenario);
    let i1 = item(db, b.id, 1).await;
    item(db, b.id, 2).await;
    let b = batch_jobs::Entity::find_by_id(b.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.total_items, 2, "the database counts the items");
    assert_eq!(i1.status, ItemStatus::Queued);
    assert_eq!(i1.progress, Some(0));
    assert_eq!(i1.parameters, json!({}));

    // Relations, in both directions.
    let sessions = w
        .project
        .find_related(coding_sessions::Entity)
        .all(db)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    let events = w
        .session
        .find_related(session_events::Entity)
        .all(db)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    let jobs = w
        .session
        .find_related(coding_jobs::Entity)
        .count(db)
        .await
        .unwrap();
    assert_eq!(jobs, 1);
    let turns = convo
        .find_related(conversation_turns::Entity)
        .count(db)
        .await
        .unwrap();
    assert_eq!(turns, 2);
    let items = b.find_related(batch_items::Entity).count(db).await.unwrap();
    assert_eq!(items, 2);
    let owner = i1
        .find_related(batch_jobs::Entity)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.id, b.id);
    let projects = w
        .profile
        .find_related(projects::Entity)
        .count(db)
        .await
        .unwrap();
    assert_eq!(projects, 1);
}

/// An UPDATE that breaks one rule; the error must name the constraint.
async fn refused<C: ConnectionTrait>(db: &C, sql: &str, constraint: &str) {
    let err = expect_sql_error(db, sql).await;
    assert!(
        err.contains(constraint),
        "{sql}: expected {constraint}, got {err}"
    );
}

/// Switches off the triggers of the database wall (forge-migration's
/// m20251130_000006) in this throwaway database, so a test reaches the CHECK constraints
/// underneath them: the triggers refuse most of these rows first (a session going to
/// `running` is a bad transition before it is a bad status).
async fn without_triggers(db: &DatabaseConnection) {
    if db.get_database_backend() == DbBackend::Postgres {
        for table in forge_db::migration::TABLES {
            db.execute_unprepared(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))
                .await
                .expect("disable triggers");
        }
        return;
    }
    let triggers = db
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT name FROM sqlite_master WHERE type = 'trigger'",
        ))
        .await
        .expect("list triggers");
    for row in triggers {
        let name: String = row.try_get_by_index(0).expect("trigger name");
        db.execute_unprepared(&format!("DROP TRIGGER {name}"))
            .await
            .expect("drop trigger");
    }
}

async fn checks_refuse_bad_rows(t: &TestDb) {
    let db = &t.owner;
    without_triggers(db).await;
    let w = world(db, "ada@example.com").await;
    coding_jobs::ActiveModel {
        session_id: Set(w.session.id),
        prompt: Set("p".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    session_events::ActiveModel {
        session_id: Set(w.session.id),
        seq: Set(1),
        event_type: Set(EventType::Terminal),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let convo = conversation(db, w.profile.id, "conv-1").await;
    conversation_turns::ActiveModel {
        conversation_id: Set(convo.id),
        turn_number: Set(1),
        role: Set(TurnRole::User),
        content: Set("hi".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let b = batch(db, w.profile.id).await;
    item(db, b.id, 1).await;

    let cases = [
        ("UPDATE profiles SET tier = 'gold'", "profiles_tier_check"),
        (
            "UPDATE profiles SET sessions_limit = -1",
            "profiles_sessions_limit_check",
        ),
        ("UPDATE projects SET name = '   '", "projects_name_check"),
        ("UPDATE projects SET name = ''", "projects_name_check"),
        (
            "UPDATE projects SET status = 'gone'",
            "projects_status_check",
        ),
        (
            "UPDATE coding_sessions SET status = 'running'",
            "coding_sessions_status_check",
        ),
        (
            "UPDATE coding_jobs SET status = 'queued'",
            "coding_jobs_status_check",
        ),
        (
            "UPDATE coding_jobs SET retry_count = -1",
            "coding_jobs_retry_count_check",
        ),
        (
            "UPDATE coding_jobs SET max_retries = -1",
            "coding_jobs_max_retries_check",
        ),
        (
            "UPDATE session_events SET event_type = 'log'",
            "session_events_event_type_check",
        ),
        (
            "UPDATE session_events SET seq = 0",
            "session_events_seq_check",
        ),
        (
            "UPDATE conversations SET status = 'done'",
            "conversations_status_check",
        ),
        (
            "UPDATE conversations SET tier = 'gold'",
            "conversations_tier_check",
        ),
        (
            "UPDATE conversations SET quality_score = 10.5",
            "conversations_quality_score_check",
        ),
        (
            "UPDATE conversations SET quality_score = -0.1",
            "conversations_quality_score_check",
        ),
        (
            "UPDATE conversations SET total_turns = -1",
            "conversations_total_turns_check",
        ),
        (
            "UPDATE conversation_turns SET role = 'system'",
            "conversation_turns_role_check",
        ),
        (
            "UPDATE conversation_turns SET turn_number = 0",
            "conversation_turns_turn_number_check",
        ),
        (
            "UPDATE conversation_turns SET token_count = -1",
            "conversation_turns_token_count_check",
        ),
        (
            "UPDATE batch_jobs SET status = 'running'",
            "batch_jobs_status_check",
        ),
        (
            "UPDATE batch_jobs SET priority = 'urgent'",
            "batch_jobs_priority_check",
        ),
        (
            "UPDATE batch_jobs SET completed_items = 1",
            "batch_jobs_counters_check",
        ),
        (
            "UPDATE batch_jobs SET completed_items = 3, successful_items = 3",
            "batch_jobs_counters_check",
        ),
        (
            "UPDATE batch_jobs SET total_items = -1",
            "batch_jobs_counters_check",
        ),
        (
            "UPDATE batch_items SET progress = 101",
            "batch_items_progress_check",
        ),
        (
            "UPDATE batch_items SET progress = -1",
            "batch_items_progress_check",
        ),
        (
            "UPDATE batch_items SET status = 'done'",
            "batch_items_status_check",
        ),
        (
            "UPDATE batch_items SET tier = 'gold'",
            "batch_items_tier_check",
        ),
    ];
    for (sql, constraint) in cases {
        refused(db, sql, constraint).await;
    }

    // The boundaries themselves are allowed.
    let name_200 = "x".repeat(200);
    db.execute_unprepared(&format!("UPDATE projects SET name = '{name_200}'"))
        .await
        .expect("a 200-character name is allowed");
    refused(
        db,
        &format!("UPDATE projects SET name = '{name_200}y'"),
        "projects_name_check",
    )
    .await;
    db.execute_unprepared("UPDATE batch_items SET progress = 100")
        .await
        .unwrap();
    db.execute_unprepared("UPDATE batch_items SET progress = NULL")
        .await
        .unwrap();
    db.execute_unprepared("UPDATE conversations SET quality_score = 10")
        .await
        .unwrap();
    db.execute_unprepared(
        "UPDATE batch_jobs SET total_items = 2, completed_items = 2, successful_items = 1, \
         failed_items = 1",
    )
    .await
    .expect("completed = successful + failed = total is allowed");
    db.execute_unprepared("UPDATE profiles SET sessions_limit = 0")
        .await
        .unwrap();
}

/// The database refused a row because a referenced row does not exist.
fn assert_foreign_key_refusal(err: &forge_db::sea_orm::DbErr) {
    assert!(
        err.to_string().to_lowercase().contains("foreign key"),
        "{err}"
    );
}

async fn a_session_cannot_reference_a_missing_project(t: &TestDb) {
    let db = &t.owner;
    let w = world(db, "ada@example.com").await;
    let err = coding_sessions::ActiveModel {
        user_id: Set(w.profile.id),
        project_id: Set(ProjectId::new()),
        initial_prompt: Set("orphan".to_owned()),
        expires_at: Set(Utc::now() + Duration::hours(1)),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect_err("a session needs an existing project");
    // The database wall's trigger names the missing project before the foreign key would.
    assert!(err.to_string().contains("forge:not_found:project"), "{err}");

    let err = projects::ActiveModel {
        user_id: Set(ProfileId::new()),
        name: Set("nobody's".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect_err("a project needs an existing profile");
    assert_foreign_key_refusal(&err);

    let err = coding_jobs::ActiveModel {
        session_id: Set(SessionId::new()),
        prompt: Set("orphan".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect_err("a job needs an existing session");
    assert_foreign_key_refusal(&err);

    assert_eq!(
        coding_sessions::Entity::find().count(db).await.unwrap(),
        1,
        "nothing was written by the refused inserts"
    );
    if t.backend() == DbBackend::Sqlite {
        assert_eq!(query_i64(db, "PRAGMA foreign_keys").await, 1);
    }
}

async fn unique_constraints_hold(t: &TestDb) {
    let db = &t.owner;
    let w = world(db, "ada@example.com").await;
    let err = profiles::ActiveModel {
        email: Set("ada@example.com".to_owned()),
        display_name: Set("again".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect_err("duplicate email");
    assert!(
        err.to_string().contains("profiles_email_key")
            || err.to_string().contains("profiles.email"),
        "{err}"
    );

    let other = profile(db, "bob@example.com").await;
    let mut a: profiles::ActiveModel = w.profile.clone().into();
    a.stripe_customer_id = Set(Some("cus_1".to_owned()));
    a.update(db).await.unwrap();
    let mut b: profiles::ActiveModel = other.into();
    b.stripe_customer_id = Set(Some("cus_1".to_owned()));
    b.update(db).await.expect_err("duplicate stripe customer");

    let event = |seq| session_events::ActiveModel {
        session_id: Set(w.session.id),
        seq: Set(seq),
        event_type: Set(EventType::Terminal),
        ..Default::default()
    };
    event(1).insert(db).await.unwrap();
    event(1)
        .insert(db)
        .await
        .expect_err("duplicate (session_id, seq)");

    let convo = conversation(db, w.profile.id, "conv-1").await;
    let turn = || conversation_turns::ActiveModel {
        conversation_id: Set(convo.id),
        turn_number: Set(1),
        role: Set(TurnRole::User),
        content: Set("hi".to_owned()),
        ..Default::default()
    };
    turn().insert(db).await.unwrap();
    turn()
        .insert(db)
        .await
        .expect_err("duplicate (conversation_id, turn_number)");
    conversations::ActiveModel {
        conversation_id: Set("conv-1".to_owned()),
        created_by: Set(w.profile.id),
        tier: Set(ConversationTier::Template),
        persona: Set("p".into()),
        emotion: Set("e".into()),
        topic: Set("t".into()),
        intent: Set("i".into()),
        tone: Set("t".into()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect_err("duplicate human-facing conversation_id");
}

async fn deleting_a_profile_cascades(t: &TestDb) {
    let db = &t.owner;
    let w = world(db, "ada@example.com").await;
    let keep = world(db, "bob@example.com").await;
    for s in [&w.session, &keep.session] {
        coding_jobs::ActiveModel {
            session_id: Set(s.id),
            prompt: Set("p".to_owned()),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
        session_events::ActiveModel {
            session_id: Set(s.id),
            seq: Set(1),
            event_type: Set(EventType::Thinking),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }
    let convo = conversation(db, w.profile.id, "conv-1").await;
    conversation_turns::ActiveModel {
        conversation_id: Set(convo.id),
        turn_number: Set(1),
        role: Set(TurnRole::User),
        content: Set("hi".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let b = batch(db, w.profile.id).await;
    item(db, b.id, 1).await;

    let txn = db.begin().await.unwrap();
    w.profile.delete(&txn).await.unwrap();
    txn.commit().await.unwrap();

    for (table, remaining) in [
        ("profiles", 1),
        ("projects", 1),
        ("coding_sessions", 1),
        ("coding_jobs", 1),
        ("session_events", 1),
        ("conversations", 0),
        ("conversation_turns", 0),
        ("batch_jobs", 0),
        ("batch_items", 0),
    ] {
        let n = query_i64(db, &format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(n, remaining, "{table} after deleting one of two users");
    }
    let left = projects::Entity::find()
        .filter(projects::Column::UserId.eq(keep.profile.id))
        .count(db)
        .await
        .unwrap();
    assert_eq!(left, 1, "the other user's rows are untouched");

    // A project's deletion takes its sessions, their jobs and events along.
    keep.project.delete(db).await.unwrap();
    for table in ["coding_sessions", "coding_jobs", "session_events"] {
        assert_eq!(
            query_i64(db, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
}

async fn set_null_foreign_keys(t: &TestDb) {
    let db = &t.owner;
    let author = profile(db, "ada@example.com").await;
    let reviewer = profile(db, "rev@example.com").await;
    let convo = conversation(db, author.id, "conv-1").await;
    let mut a: conversations::ActiveModel = convo.clone().into();
    a.approved_by = Set(Some(reviewer.id));
    a.update(db).await.unwrap();

    let b = batch(db, author.id).await;
    let it = item(db, b.id, 1).await;
    let mut ai: batch_items::ActiveModel = it.clone().into();
    ai.conversation_id = Set(Some(convo.id));
    ai.update(db).await.unwrap();

    reviewer.delete(db).await.unwrap();
    let convo = conversations::Entity::find_by_id(convo.id)
        .one(db)
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(
        convo.approved_by, None,
        "deleting the approver only clears approved_by"
    );

    convo.delete(db).await.unwrap();
    let it = batch_items::Entity::find_by_id(it.id)
        .one(db)
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(
        it.conversation_id, None,
        "deleting the conversation only clears the link"
    );
}

/// A row written by plain SQL (as the seeds do), leaving every default to the database,
/// reads back through the entities: the defaults have the types the entities expect.
async fn database_defaults_read_back(t: &TestDb) {
    let db = &t.owner;
    let id = Uuid::new_v4();
    let literal = match t.backend() {
        DbBackend::Sqlite => format!("X'{}'", id.simple()),
        _ => format!("'{id}'"),
    };
    db.execute_unprepared(&format!(
        "INSERT INTO profiles (id, email, display_name) VALUES ({literal}, 'raw@example.com', 'raw')"
    ))
    .await
    .unwrap();
    let p = profiles::Entity::find_by_id(ProfileId::from(id))
        .one(db)
        .await
        .unwrap()
        .expect("found by id");
    assert_eq!(p.tier, Tier::Free);
    let age = Utc::now() - p.created_at;
    assert!(
        age < Duration::minutes(1) && age > Duration::minutes(-1),
        "created_at = {}",
        p.created_at
    );
    assert_eq!(p.created_at, p.updated_at);
}

/// SQLite: `reset` removes every table (the PostgreSQL twin, with `pg_dump`, is in
/// tests/postgres.rs), and `up` again recreates exactly the same schema.
#[tokio::test]
async fn sqlite_down_is_complete_and_up_again_is_identical() {
    use forge_db::sea_orm::Statement;
    use forge_db::{Migrator, MigratorTrait};

    async fn schema(db: &forge_db::sea_orm::DatabaseConnection) -> Vec<String> {
        db.query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect()
    }

    let t = TestDb::sqlite().await;
    let first = schema(&t.owner).await;
    // The twenty-five tables, seaql_migrations and forge_migration_checksums.
    assert_eq!(
        first.iter().filter(|s| s.starts_with("table ")).count(),
        27,
        "{first:#?}"
    );
    Migrator::reset(&t.owner).await.unwrap();
    assert_eq!(
        schema(&t.owner).await,
        Vec::<String>::new(),
        "reset leaves nothing"
    );
    Migrator::up(&t.owner, None).await.unwrap();
    assert_eq!(schema(&t.owner).await, first);
}
