//! The application's integration test, written the way an application would: a fresh
//! database per test from `TestDb::new()` (SQLite, or PostgreSQL with
//! `FORGE_TEST_DATABASE_URL`), fixtures for everything else, no cleanup code.

use forge_db::entity::coding_sessions::SessionStatus;
use forge_db::service::testing::{TestDb, fixtures};
use forge_db::service::{Actor, ForgeError, sessions};
use forge_downstream_example::start_coding;

#[tokio::test]
async fn a_user_starts_coding_on_a_new_project() {
    let t = TestDb::new().await.expect("test database");
    let user = fixtures::user(t.db(), &fixtures::unique_email())
        .await
        .expect("user");

    let (project, session) = start_coding(t.db(), user.id, "Todo app", "Build a todo app")
        .await
        .expect("start coding");

    assert_eq!(session.project_id, project.id);
    assert_eq!(session.status, SessionStatus::Pending);
    let seen = sessions::get(t.db(), Actor::User(user.id), session.id)
        .await
        .expect("the user sees their session");
    assert_eq!(seen.initial_prompt, "Build a todo app");
}

#[tokio::test]
async fn a_blank_prompt_is_refused() {
    let t = TestDb::new().await.expect("test database");
    let user = fixtures::user(t.db(), &fixtures::unique_email())
        .await
        .expect("user");

    let refused = start_coding(t.db(), user.id, "Todo app", "   ").await;

    assert!(matches!(refused, Err(ForgeError::Validation { .. })));
}

#[tokio::test]
async fn another_users_session_is_not_found() {
    let t = TestDb::new().await.expect("test database");
    let (_alice, _project, session) = fixtures::user_with_project_and_session(t.db())
        .await
        .expect("alice with a live session");
    let bob = fixtures::user(t.db(), &fixtures::unique_email())
        .await
        .expect("bob");

    let seen = sessions::get(t.db(), Actor::User(bob.id), session.id).await;

    assert!(matches!(seen, Err(ForgeError::NotFound { .. })));
}
