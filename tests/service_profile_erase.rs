//! forge_service::profiles on both backends: the service's Stripe customer id, and erasing
//! a user with everything they own in one transaction while every other user's data stays
//! (what only pointed at the erased user is detached), and on PostgreSQL the database wall
//! agreeing that both are the service's.

mod common;
use common::signup as profile;

use std::collections::{BTreeMap, BTreeSet};

use common::TestDb;
use forge_db::entity::conversation_turns::TurnRole;
use forge_db::entity::conversations::{ConversationStatus, ConversationTier};
use forge_db::entity::export_logs::ExportFormat;
use forge_db::entity::ids::{ConversationId, ProfileId, TemplateId};
use forge_db::entity::notifications::NotificationType;
use forge_db::migration::TABLES;
use forge_db::sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use forge_db::service::api_keys::{self, NewApiKey, Scope};
use forge_db::service::conversations::{self, NewConversation, NewTurn};
use forge_db::service::credits::{self, CreditChange};
use forge_db::service::exports::{self, ExportRequest};
use forge_db::service::generation::{
    self, GenerationOutcome, GenerationSource, NewGeneration, RecordedGeneration,
};
use forge_db::service::notifications::{self, NewNotification};
use forge_db::service::pipeline::{self, NewArtifact, NewRun, NewRunEvent};
use forge_db::service::profiles::{self as repo, DetachedRows, ErasureReport};
use forge_db::service::prompts::{self, NewPrompt};
use forge_db::service::scenarios::{self, NewEdgeCase, NewScenario};
use forge_db::service::templates::{self, NewTemplate};
use forge_db::service::testing::fixtures;
use forge_db::service::{Actor, ForgeError};
use serde_json::json;
use uuid::Uuid;

on_both_backends! {
    stripe_customer_id_is_the_services => stripe_customer_id_is_the_services;
    erase_takes_one_users_rows_and_nothing_else => erase_takes_one_users_rows_and_nothing_else;
    erase_refuses_users_unknown_ids_and_others_rows => erase_refuses_users_unknown_ids_and_others_rows;
    erase_is_one_transaction => erase_is_one_transaction;
}

/// Runs `sql` on PostgreSQL as `authenticated` with `user`'s JWT claims, as an end user
/// reaching the table directly (PostgREST) would, in a transaction that is rolled back:
/// the rows it changed, or the database's refusal.
async fn as_end_user(t: &TestDb, user: ProfileId, sql: &str) -> Result<u64, String> {
    let txn = t.owner.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "SET LOCAL ROLE authenticated; \
         SELECT set_config('request.jwt.claims', '{{\"sub\":\"{user}\",\"role\":\"authenticated\"}}', true), \
                set_config('request.jwt.claim.sub', '{user}', true);"
    ))
    .await
    .unwrap();
    let outcome = txn
        .execute_unprepared(sql)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| e.to_string());
    txn.rollback().await.unwrap();
    outcome
}

/// The database refuses `sql` from `user` for want of a privilege.
async fn denied(t: &TestDb, user: ProfileId, sql: &str) {
    match as_end_user(t, user, sql).await {
        Err(e) => assert!(e.contains("permission denied"), "{sql}: {e}"),
        Ok(n) => panic!("{sql}: the database let it through ({n} rows)"),
    }
}

async fn stripe_customer_id_is_the_services(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let service = Actor::Service;

    let set = repo::set_stripe_customer_id(db, service, a, Some("  cus_NffrFeUfNV2Hib "))
        .await
        .unwrap();
    assert_eq!(
        set.stripe_customer_id.as_deref(),
        Some("cus_NffrFeUfNV2Hib")
    );
    assert_eq!(
        (set.email.as_str(), set.display_name.as_str()),
        ("a@example.com", "a"),
        "nothing else moved"
    );
    assert_eq!(
        repo::get(db, Actor::User(a), a).await.unwrap(),
        set,
        "as stored"
    );

    // Unique: another profile cannot take it, and keeps what it had.
    let err = repo::set_stripe_customer_id(db, service, b, Some("cus_NffrFeUfNV2Hib"))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Conflict { .. }), "{err:?}");
    assert_eq!(
        repo::get(db, service, b).await.unwrap().stripe_customer_id,
        None
    );

    // Refused input changes nothing.
    for bad in ["", "   ", "cus 123", "cus_ü", "cus_\0x", &"c".repeat(256)] {
        let err = repo::set_stripe_customer_id(db, service, a, Some(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ForgeError::Validation {
                    field: "stripe_customer_id",
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
    }
    let err = repo::set_stripe_customer_id(db, Actor::User(a), a, Some("cus_mine"))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    let err = repo::set_stripe_customer_id(db, service, ProfileId::new(), Some("cus_x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "profile",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(repo::get(db, service, a).await.unwrap(), set);

    // Cleared, it is free for another profile.
    let cleared = repo::set_stripe_customer_id(db, service, a, None)
        .await
        .unwrap();
    assert_eq!(cleared.stripe_customer_id, None);
    let moved = repo::set_stripe_customer_id(db, service, b, Some("cus_NffrFeUfNV2Hib"))
        .await
        .unwrap();
    assert_eq!(
        moved.stripe_customer_id.as_deref(),
        Some("cus_NffrFeUfNV2Hib")
    );

    if t.backend() == DbBackend::Postgres {
        denied(
            t,
            a,
            &format!("UPDATE profiles SET stripe_customer_id = 'cus_free' WHERE id = '{a}'"),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------
// Erasure

/// What a user has, created through the repositories.
struct Data {
    template: TemplateId,
    generated: ConversationId,
    scenario: forge_db::entity::ids::ScenarioId,
}

fn new_turns() -> Vec<NewTurn> {
    vec![
        NewTurn::new(TurnRole::User, "How do annuities work?", 6),
        NewTurn::new(TurnRole::Assistant, "They pay you an income.", 7),
    ]
}

fn generated_conversation(human_id: &str) -> NewConversation {
    NewConversation {
        owner: None,
        conversation_id: human_id.to_owned(),
        title: None,
        tier: ConversationTier::Scenario,
        persona: "retiree".into(),
        emotion: "curious".into(),
        topic: "annuities".into(),
        intent: "learn".into(),
        tone: "warm".into(),
        category: vec!["finance".into()],
        parameters: json!({}),
        turns: new_turns(),
    }
}

async fn record(
    db: &forge_db::sea_orm::DatabaseConnection,
    new: NewGeneration,
) -> RecordedGeneration {
    generation::record_generation(db, Actor::Service, new)
        .await
        .unwrap()
}

/// A row in every table that belongs to a user, for `user` (named `tag` in texts).
async fn populate(t: &TestDb, user: ProfileId, tag: &str) -> Data {
    let db = &t.db;
    let ua = Actor::User(user);
    let project = fixtures::project(db, user).await.unwrap();
    let session = fixtures::session(db, user, project.id).await.unwrap();
    fixtures::queued_jobs(db, session.id, 2).await.unwrap();
    fixtures::events(db, session.id, 3).await.unwrap();
    fixtures::conversation_with_turns(db, user, 4)
        .await
        .unwrap();
    fixtures::conversation_with_turns(db, user, 0)
        .await
        .unwrap();
    fixtures::batch_with_items(db, user, 3).await.unwrap();

    let run = pipeline::start(db, ua, NewRun::new(user, json!({"app": tag})))
        .await
        .unwrap();
    for step in ["started", "progress"] {
        pipeline::append_event(
            db,
            Actor::Service,
            &run.run_id,
            NewRunEvent::new("builder", step, Some(json!({"tag": tag}))),
        )
        .await
        .unwrap();
    }
    pipeline::add_artifact(db, Actor::Service, &run.run_id, NewArtifact::new("zip"))
        .await
        .unwrap();

    let template = templates::create(
        db,
        ua,
        NewTemplate::new(
            format!("{tag} support"),
            "support",
            ConversationTier::Scenario,
            "Help {{persona}} with {{topic}}",
            ["persona", "topic"],
        ),
    )
    .await
    .unwrap();
    let mut values = serde_json::Map::new();
    values.insert("persona".into(), json!("a retiree"));
    values.insert("topic".into(), json!("annuities"));
    let scenario = scenarios::create(
        db,
        ua,
        NewScenario::new(
            "Retiree",
            template.id,
            values,
            "annuities",
            "retiree",
            "calm",
        ),
    )
    .await
    .unwrap();
    scenarios::create_edge_case(
        db,
        ua,
        NewEdgeCase::new("Angry", scenario.id, "emotion", "stays calm"),
    )
    .await
    .unwrap();
    // A generation from the scenario: a log, a conversation made from the template, and
    // the scenario pointing at it.
    let generated = record(
        db,
        NewGeneration::new(
            user,
            GenerationSource::Scenario(scenario.id),
            GenerationOutcome::Generated(Box::new(generated_conversation(&format!("{tag}-gen")))),
        ),
    )
    .await
    .conversation
    .expect("a conversation")
    .conversation
    .id;
    exports::write(db, ua, ExportRequest::new(ExportFormat::Jsonl), Vec::new())
        .await
        .unwrap();
    // Accounts (seed 004): signup opened the credit account with its bonus and the
    // preferences, the database counted the session and conversations (usage) and logged
    // the project and session (activity); a spend, an API key and a notification more.
    credits::spend(db, Actor::Service, CreditChange::new(user, 5))
        .await
        .unwrap();
    api_keys::create(db, ua, NewApiKey::new(format!("{tag} key"), [Scope::Read]))
        .await
        .unwrap();
    let hello = NewNotification::new(user, NotificationType::System, "Hello", tag);
    notifications::create(db, Actor::Service, hello)
        .await
        .unwrap();
    Data {
        template: template.id,
        generated,
        scenario: scenario.id,
    }
}

/// The SQL selecting the key (as text) of every row of `table` that `user` owns: their
/// own rows and the rows under them, written as joins, independently of the repository's
/// SQL. `None` for `prompts`, which belong to no one.
fn owned_sql(backend: DbBackend, table: &str, user: ProfileId) -> Option<String> {
    let u = lit(backend, user);
    let through = |parent: &str, fk: &str, key: &str, owner: &str| {
        format!(
            "SELECT {} FROM {table} c JOIN {parent} p ON p.{key} = c.{fk} WHERE p.{owner} = {u}",
            text_of(backend, "c.id")
        )
    };
    let own = |owner: &str, key: &str| {
        format!(
            "SELECT {} FROM {table} WHERE {owner} = {u}",
            text_of(backend, key)
        )
    };
    Some(match table {
        "profiles" => own("id", "id"),
        "projects" | "coding_sessions" => own("user_id", "id"),
        "coding_jobs" | "session_events" => {
            through("coding_sessions", "session_id", "id", "user_id")
        }
        "conversations" | "batch_jobs" | "templates" | "scenarios" | "edge_cases" => {
            own("created_by", "id")
        }
        "conversation_turns" => through("conversations", "conversation_id", "id", "created_by"),
        "batch_items" => through("batch_jobs", "batch_job_id", "id", "created_by"),
        "jobs" => own("owner_id", "run_id"),
        "job_events" | "artifacts" => through("jobs", "run_id", "run_id", "owner_id"),
        "generation_logs" | "export_logs" => own("user_id", "id"),
        "credit_accounts" | "api_keys" | "notifications" | "usage_metrics" | "activity_logs" => {
            own("user_id", "id")
        }
        "credit_transactions" => through("credit_accounts", "account_id", "id", "user_id"),
        "notification_preferences" => own("user_id", "user_id"),
        "prompts" => return None,
        other => panic!("a table this test does not know: {other}"),
    })
}

/// `id` as a literal of a uuid column: SQLite keeps a uuid's 16 bytes.
fn lit(backend: DbBackend, id: impl std::fmt::Display) -> String {
    let id = Uuid::parse_str(&id.to_string()).expect("a uuid");
    match backend {
        DbBackend::Sqlite => format!("X'{}'", id.simple()),
        _ => format!("'{id}'"),
    }
}

/// The SQL for `column` (a key or a uuid) as text.
fn text_of(backend: DbBackend, column: &str) -> String {
    match backend {
        DbBackend::Sqlite => {
            format!(
                "CASE WHEN typeof({column}) = 'blob' THEN lower(hex({column})) ELSE {column} END"
            )
        }
        _ => format!("CAST({column} AS TEXT)"),
    }
}

async fn keys(t: &TestDb, sql: &str) -> BTreeSet<String> {
    let backend = t.owner.get_database_backend();
    t.owner
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| {
            row.try_get_by_index::<String>(0)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
        .collect()
}

/// Every row of every table, by key.
async fn all_rows(t: &TestDb) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut rows = BTreeMap::new();
    for &table in TABLES {
        let key = match table {
            "jobs" => "run_id",
            "notification_preferences" => "user_id",
            _ => "id",
        };
        let sql = format!("SELECT {} FROM {table}", text_of(t.backend(), key));
        rows.insert(table, keys(t, &sql).await);
    }
    rows
}

/// `user`'s rows of every table, by key.
async fn owned_rows(t: &TestDb, user: ProfileId) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut rows = BTreeMap::new();
    for &table in TABLES {
        if let Some(sql) = owned_sql(t.backend(), table, user) {
            rows.insert(table, keys(t, &sql).await);
        }
    }
    rows
}

/// A uuid column of the row `id` of `table` (`NULL` → `None`).
async fn uuid_column(
    t: &TestDb,
    table: &str,
    column: &str,
    id: impl std::fmt::Display,
) -> Option<Uuid> {
    let backend = t.backend();
    let sql = format!(
        "SELECT {} FROM {table} WHERE id = {}",
        text_of(backend, column),
        lit(backend, id)
    );
    common::query_string(&t.owner, &sql)
        .await
        .map(|text| Uuid::parse_str(&text).expect("a uuid"))
}

async fn erase_takes_one_users_rows_and_nothing_else(t: &TestDb) {
    let db = &t.db;
    let service = Actor::Service;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let mine = populate(t, a, "ada").await;
    let theirs = populate(t, b, "bob").await;
    prompts::upsert(
        db,
        service,
        NewPrompt::new(
            "onboarding.welcome",
            "onboarding",
            "first screen",
            "Welcome!",
        ),
    )
    .await
    .unwrap();

    // Rows of B's that merely name A or one of A's rows:
    // - B's conversation, approved by A;
    conversations::submit_for_review(db, service, theirs.generated, None)
        .await
        .unwrap();
    conversations::approve(db, service, theirs.generated, a, Some("fine"))
        .await
        .unwrap();
    // - B's generation from A's (active, shared) template: B's conversation and log name it;
    let from_a = record(
        db,
        NewGeneration::new(
            b,
            GenerationSource::Template(mine.template),
            GenerationOutcome::Generated(Box::new(generated_conversation("bob-from-ada"))),
        ),
    )
    .await;
    let from_a_conversation = from_a.conversation.expect("a conversation").conversation;
    assert_eq!(from_a_conversation.template_id, Some(mine.template));
    // - B's template, last changed by A; B's scenario pointing at A's conversation.
    let backend = t.backend();
    let setup = [
        format!(
            "UPDATE templates SET tone = 'brisk', last_modified_by = {} WHERE id = {}",
            lit(backend, a),
            lit(backend, theirs.template)
        ),
        format!(
            "UPDATE scenarios SET conversation_id = {} WHERE id = {}",
            lit(backend, mine.generated),
            lit(backend, theirs.scenario)
        ),
    ];
    for sql in setup {
        t.owner.execute_unprepared(&sql).await.unwrap();
    }
    assert_eq!(
        uuid_column(t, "templates", "last_modified_by", theirs.template).await,
        Some(a.into_uuid())
    );
    // And A's conversation approved by B, which goes with A.
    let approved_by_b = fixtures::conversation_with_turns(db, a, 2)
        .await
        .unwrap()
        .conversation;
    conversations::submit_for_review(db, service, approved_by_b.id, None)
        .await
        .unwrap();
    conversations::approve(db, service, approved_by_b.id, b, None)
        .await
        .unwrap();

    let before = all_rows(t).await;
    let mine_before = owned_rows(t, a).await;
    let theirs_before = owned_rows(t, b).await;
    for (table, rows) in &mine_before {
        assert!(!rows.is_empty(), "fixture: A owns a row of {table}");
        assert!(
            !theirs_before[table].is_empty(),
            "fixture: B owns a row of {table}"
        );
    }

    let report = repo::erase(db, service, a).await.unwrap();

    // The report counts exactly A's rows, table by table.
    for (table, deleted) in report.deleted() {
        assert_eq!(deleted, mine_before[table].len() as u64, "{table}");
    }
    assert_eq!(
        report.total_deleted(),
        mine_before.values().map(|r| r.len() as u64).sum::<u64>()
    );
    assert_eq!(
        report.detached,
        DetachedRows {
            conversations: 2,
            templates: 1,
            scenarios: 1,
            generation_logs: 1,
        }
    );

    // A has no row anywhere; every other row is still there, B's included.
    let after = all_rows(t).await;
    for (table, rows) in &before {
        let expected: BTreeSet<String> = match mine_before.get(table) {
            Some(gone) => rows.difference(gone).cloned().collect(),
            None => rows.clone(),
        };
        assert_eq!(after[table], expected, "{table}: exactly A's rows went");
    }
    assert!(owned_rows(t, a).await.values().all(BTreeSet::is_empty));
    assert_eq!(owned_rows(t, b).await, theirs_before, "B's rows all stay");
    assert_eq!(after["prompts"].len(), 1);
    let err = repo::get(db, service, a).await.unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }), "{err:?}");

    // What named A or A's rows is detached, and otherwise as it was.
    let approved = conversations::get(db, service, theirs.generated)
        .await
        .unwrap();
    assert_eq!(
        (
            approved.status,
            approved.approved_by,
            approved.approved_at.is_some()
        ),
        (ConversationStatus::Approved, None, true)
    );
    let orphan = conversations::get(db, service, from_a_conversation.id)
        .await
        .unwrap();
    assert_eq!((orphan.template_id, orphan.total_turns), (None, 2));
    assert_eq!(
        uuid_column(t, "generation_logs", "template_id", from_a.log.id).await,
        None
    );
    assert_eq!(
        uuid_column(t, "templates", "last_modified_by", theirs.template).await,
        None
    );
    assert_eq!(
        uuid_column(t, "scenarios", "conversation_id", theirs.scenario).await,
        None
    );

    // Erasing again: there is no such profile any more.
    let err = repo::erase(db, service, a).await.unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "profile",
                ..
            }
        ),
        "{err:?}"
    );

    // A user with nothing but what signup gives: the profile, the credit account with
    // its bonus, the notification preferences.
    let c = profile(db, "c@example.com").await;
    let bare = repo::erase(db, service, c).await.unwrap();
    assert_eq!(
        bare,
        ErasureReport {
            profiles: 1,
            credit_accounts: 1,
            credit_transactions: 1,
            notification_preferences: 1,
            ..Default::default()
        }
    );
}

async fn erase_refuses_users_unknown_ids_and_others_rows(t: &TestDb) {
    let db = &t.db;
    let service = Actor::Service;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let mine = populate(t, a, "ada").await;
    let theirs = populate(t, b, "bob").await;
    let before = all_rows(t).await;

    // Not a user's to do, even for themselves.
    for actor in [Actor::User(a), Actor::User(b)] {
        let err = repo::erase(db, actor, a).await.unwrap_err();
        assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    }
    let err = repo::erase(db, service, ProfileId::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "profile",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(all_rows(t).await, before);

    // A scenario of B's hanging under A's template (only raw SQL can do that) would go
    // with A's template: the erasure is refused and deletes nothing.
    let sql = format!(
        "UPDATE scenarios SET parent_template_id = {} WHERE id = {}",
        lit(t.backend(), mine.template),
        lit(t.backend(), theirs.scenario)
    );
    t.owner.execute_unprepared(&sql).await.unwrap();
    let err = repo::erase(db, service, a).await.unwrap_err();
    assert!(matches!(err, ForgeError::Conflict { .. }), "{err:?}");
    assert_eq!(all_rows(t).await, before);

    if t.backend() == DbBackend::Postgres {
        // An end user may not delete their profile directly either.
        denied(t, a, &format!("DELETE FROM profiles WHERE id = '{a}'")).await;
        assert_eq!(all_rows(t).await, before);
    }
}

async fn erase_is_one_transaction(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    populate(t, a, "ada").await;
    let before = all_rows(t).await;

    // Inside a caller's transaction: undone with it.
    let txn = db.begin().await.unwrap();
    let report = repo::erase(&txn, Actor::Service, a).await.unwrap();
    assert!(report.total_deleted() > 17);
    txn.rollback().await.unwrap();
    assert_eq!(all_rows(t).await, before);

    // Committed: gone.
    let txn = db.begin().await.unwrap();
    let committed = repo::erase(&txn, Actor::Service, a).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(committed, report);
    assert!(owned_rows(t, a).await.values().all(BTreeSet::is_empty));
}
