//! Fixture builders: a valid row of every aggregate, made through the repositories (so
//! every rule a real caller meets applies), in one call each.
//!
//! Every builder takes the pool (or a transaction) and returns the stored model. Names
//! and emails are unique per call, so fixtures never collide within one database.
//!
//! ```no_run
//! # use forge_service::testing::{TestDb, fixtures};
//! # async fn a_test(t: &TestDb) -> forge_service::Result<()> {
//! let (user, project, session) = fixtures::user_with_project_and_session(t.db()).await?;
//! let jobs = fixtures::queued_jobs(t.db(), session.id, 3).await?;
//! let chat = fixtures::conversation_with_turns(t.db(), user.id, 4).await?;
//! let batch = fixtures::batch_with_items(t.db(), user.id, 10).await?;
//! # let _ = (project, jobs, chat, batch); Ok(()) }
//! ```

use forge_entity::ids::{ProfileId, ProjectId, SessionId};
use forge_entity::{
    batch_jobs::BatchConfiguration,
    coding_jobs, coding_sessions,
    coding_sessions::SessionStatus,
    conversation_turns::TurnRole,
    conversations::ConversationTier,
    profiles, projects,
    session_events::{self, EventType},
};
use serde_json::json;
use uuid::Uuid;

use crate::batches::{NewBatch, NewBatchItem};
use crate::conversations::{ConversationWithTurns, NewConversation, NewTurn};
use crate::events::NewEvent;
use crate::jobs::NewJob;
use crate::projects::NewProject;
use crate::sessions::NewSession;
use crate::{Actor, Connection, Result};

/// A unique email address (`user-<uuid>@example.test`).
pub fn unique_email() -> String {
    format!("user-{}@example.test", Uuid::new_v4().simple())
}

/// A user signed up with `email` (by the service, as signup does): their profile.
///
/// # Errors
/// As [`crate::profiles::create`], e.g. [`crate::ForgeError::Conflict`] for an email in use.
pub async fn user<C: Connection>(db: &C, email: &str) -> Result<profiles::Model> {
    crate::profiles::create(db, Actor::Service, crate::profiles::NewProfile::new(email)).await
}

/// An active project of `owner`, created by the owner.
///
/// # Errors
/// As [`crate::projects::create`], e.g. [`crate::ForgeError::NotFound`] for an unknown owner.
pub async fn project<C: Connection>(db: &C, owner: ProfileId) -> Result<projects::Model> {
    crate::projects::create(db, Actor::User(owner), NewProject::new(owner, "Todo app")).await
}

/// A live (`active`) session of `owner` on `project_id`, started by the owner.
///
/// # Errors
/// As [`crate::sessions::start`], e.g. [`crate::ForgeError::LimitReached`] when the owner's
/// plan allows no more live sessions.
pub async fn session<C: Connection>(
    db: &C,
    owner: ProfileId,
    project_id: ProjectId,
) -> Result<coding_sessions::Model> {
    let actor = Actor::User(owner);
    let new = NewSession::new(owner, project_id, "Build a todo app with React");
    let started = crate::sessions::start(db, actor, new).await?;
    crate::sessions::transition(db, actor, started.id, SessionStatus::Active).await
}

/// A new user (unique email) with an active project and a live session on it.
///
/// # Errors
/// As [`user`], [`project`] and [`session`].
pub async fn user_with_project_and_session<C: Connection>(
    db: &C,
) -> Result<(profiles::Model, projects::Model, coding_sessions::Model)> {
    let user = user(db, &unique_email()).await?;
    let project = project(db, user.id).await?;
    let session = session(db, user.id, project.id).await?;
    Ok((user, project, session))
}

/// `count` pending coding jobs on session `session_id` (enqueued by the service), with
/// prompts `job 1` … `job n`.
///
/// # Errors
/// As [`crate::jobs::enqueue_many`], e.g. [`crate::ForgeError::Validation`] for `count = 0`.
pub async fn queued_jobs<C: Connection>(
    db: &C,
    session_id: SessionId,
    count: usize,
) -> Result<Vec<coding_jobs::Model>> {
    let jobs = (1..=count)
        .map(|n| NewJob::new(session_id, format!("job {n}")))
        .collect();
    crate::jobs::enqueue_many(db, Actor::Service, jobs).await
}

/// `count` `terminal` events appended to session `session_id` (by the service), with
/// `seq` 1…n on a fresh session.
///
/// # Errors
/// As [`crate::events::append_many`], e.g. [`crate::ForgeError::InvalidTransition`] when
/// the session has ended.
pub async fn events<C: Connection>(
    db: &C,
    session_id: SessionId,
    count: usize,
) -> Result<Vec<session_events::Model>> {
    let events = (1..=count)
        .map(|n| NewEvent::new(EventType::Terminal, json!({ "line": format!("step {n}") })))
        .collect();
    crate::events::append_many(db, Actor::Service, session_id, events).await
}

/// A `generated` conversation of `owner` with `turns` turns, alternating user and
/// assistant (`turns = 0`: a `draft`), stored by the service for the owner as a generator
/// does (`generated` is the generator's status: what a user writes stays a `draft`).
///
/// # Errors
/// As [`crate::conversations::create`], e.g. [`crate::ForgeError::Conflict`] when the owner
/// does not exist.
pub async fn conversation_with_turns<C: Connection>(
    db: &C,
    owner: ProfileId,
    turns: usize,
) -> Result<ConversationWithTurns> {
    let turns = (0..turns)
        .map(|n| {
            let role = if n % 2 == 0 {
                TurnRole::User
            } else {
                TurnRole::Assistant
            };
            NewTurn::new(role, format!("turn {}", n + 1), 10)
        })
        .collect();
    let new = NewConversation {
        owner: Some(owner),
        conversation_id: format!("conv-{}", Uuid::new_v4().simple()),
        title: Some("A test conversation".to_owned()),
        tier: ConversationTier::Template,
        persona: "first-time founder".to_owned(),
        emotion: "curious".to_owned(),
        topic: "pricing".to_owned(),
        intent: "learn".to_owned(),
        tone: "friendly".to_owned(),
        category: vec!["onboarding".to_owned()],
        parameters: json!({}),
        turns,
    };
    crate::conversations::create(db, Actor::Service, new).await
}

/// A `template`-tier batch of `owner` (created by the owner) with `items` queued items,
/// topics `topic 1` … `topic n`.
///
/// # Errors
/// As [`crate::batches::create`], e.g. [`crate::ForgeError::Validation`] for `items = 0`.
pub async fn batch_with_items<C: Connection>(
    db: &C,
    owner: ProfileId,
    items: usize,
) -> Result<forge_entity::batch_jobs::Model> {
    let items = (1..=items)
        .map(|n| NewBatchItem::new(format!("topic {n}")))
        .collect();
    let mut new = NewBatch::new(
        "Test batch",
        BatchConfiguration::new(ConversationTier::Template),
        items,
    );
    new.owner = Some(owner);
    crate::batches::create(db, Actor::User(owner), new).await
}
