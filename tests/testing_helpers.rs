//! The test helpers applications use (`forge_service::testing`): every test gets its own
//! migrated database, it disappears afterwards, and the fixtures build valid aggregates.

mod common;

use common::TestDb;
use forge_db::entity::batch_items::ItemStatus;
use forge_db::entity::coding_jobs::JobStatus;
use forge_db::entity::coding_sessions::SessionStatus;
use forge_db::entity::conversations::ConversationStatus;
use forge_db::sea_orm::DbBackend;
use forge_db::service::testing::{self, fixtures};
use forge_db::service::{Actor, ForgeError, PageRequest, batches, conversations, sessions};

async fn fixtures_build_every_aggregate(t: &TestDb) {
    let (user, project, session) = fixtures::user_with_project_and_session(&t.db)
        .await
        .expect("user, project and session");
    assert_eq!(project.user_id, user.id);
    assert_eq!(session.project_id, project.id);
    assert_eq!(session.status, SessionStatus::Active);
    let me = Actor::User(user.id);
    assert_eq!(
        sessions::get(&t.db, me, session.id).await.expect("own").id,
        session.id
    );

    let jobs = fixtures::queued_jobs(&t.db, session.id, 3)
        .await
        .expect("jobs");
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j.status == JobStatus::Pending));
    let events = fixtures::events(&t.db, session.id, 2)
        .await
        .expect("events");
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);

    let chat = fixtures::conversation_with_turns(&t.db, user.id, 4)
        .await
        .expect("conversation");
    assert_eq!(chat.turns.len(), 4);
    assert_eq!(chat.conversation.status, ConversationStatus::Generated);
    let read = conversations::get_with_turns(&t.db, me, chat.conversation.id)
        .await
        .expect("read back");
    assert_eq!(read.turns.len(), 4);

    let batch = fixtures::batch_with_items(&t.db, user.id, 5)
        .await
        .expect("batch");
    assert_eq!(batch.total_items, 5);
    let items = batches::list_items(&t.db, me, batch.id, Default::default())
        .await
        .expect("items");
    assert_eq!(items.items.len(), 5);
    assert!(items.items.iter().all(|i| i.status == ItemStatus::Queued));
}

async fn fixtures_belong_to_their_user_only(t: &TestDb) {
    let (a, _, session) = fixtures::user_with_project_and_session(&t.db)
        .await
        .expect("a");
    let (b, _, _) = fixtures::user_with_project_and_session(&t.db)
        .await
        .expect("b");
    let batch = fixtures::batch_with_items(&t.db, a.id, 1)
        .await
        .expect("batch");
    let b_actor = Actor::User(b.id);
    assert!(matches!(
        sessions::get(&t.db, b_actor, session.id).await,
        Err(ForgeError::NotFound { .. })
    ));
    assert!(matches!(
        batches::get(&t.db, b_actor, batch.id).await,
        Err(ForgeError::NotFound { .. })
    ));
    let page = batches::list(&t.db, b_actor, &PageRequest::default())
        .await
        .expect("b's batches");
    assert!(page.items.is_empty());
}

async fn a_duplicate_email_is_a_conflict(t: &TestDb) {
    let email = fixtures::unique_email();
    fixtures::user(&t.db, &email).await.expect("first");
    assert!(matches!(
        fixtures::user(&t.db, &email).await,
        Err(ForgeError::Conflict { .. })
    ));
}

on_both_backends! {
    fixtures_build_all => fixtures_build_every_aggregate;
    fixtures_are_isolated => fixtures_belong_to_their_user_only;
    duplicate_email => a_duplicate_email_is_a_conflict;
}

/// Each test database starts empty: rows written in one are not in another.
#[tokio::test]
async fn every_test_database_is_its_own() {
    let one = testing::TestDb::new().await.expect("one");
    let two = testing::TestDb::new().await.expect("two");
    let email = fixtures::unique_email();
    fixtures::user(one.db(), &email).await.expect("user in one");
    fixtures::user(two.db(), &email)
        .await
        .expect("the same email is free in two");
}

/// `TestDb::new` uses SQLite without `FORGE_TEST_DATABASE_URL`, PostgreSQL with it.
#[tokio::test]
async fn new_follows_the_environment() {
    let t = testing::TestDb::new().await.expect("test database");
    let expected = match std::env::var(testing::TEST_DATABASE_URL_ENV) {
        Ok(url) if !url.is_empty() => DbBackend::Postgres,
        _ => DbBackend::Sqlite,
    };
    assert_eq!(t.backend(), expected);
    t.finish().await.expect("finish");
}

/// A PostgreSQL test database is gone once its `TestDb` is dropped (no cleanup code),
/// also when it is dropped outside any async runtime.
#[test]
fn a_dropped_postgres_database_is_gone() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let admin_url = common::pg_admin_url();
    let t = runtime
        .block_on(testing::TestDb::postgres(&admin_url))
        .expect("test database");
    let url = t.pg_url().expect("a PostgreSQL URL");
    let name = url.rsplit('/').next().expect("a name").to_owned();
    let count = |name: String| {
        let admin_url = admin_url.clone();
        runtime.block_on(async move {
            let admin = forge_db::connect(&admin_url).await.expect("admin");
            common::query_i64(
                &admin,
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
            )
            .await
        })
    };
    assert_eq!(count(name.clone()), 1);
    drop(t);
    assert_eq!(count(name), 0);
}

/// Many PostgreSQL test databases at once, cloned from one template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_databases_are_created_in_parallel() {
    let admin_url = common::pg_admin_url();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let admin_url = admin_url.clone();
            tokio::spawn(async move {
                let t = testing::TestDb::postgres(&admin_url).await.expect("clone");
                fixtures::user_with_project_and_session(t.db())
                    .await
                    .expect("fixtures");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}
