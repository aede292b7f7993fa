//! A tiny application on Forge: what a "New project" button does.
#![warn(missing_docs)]

use forge_db::entity::ids::ProfileId;
use forge_db::entity::{coding_sessions, projects};
use forge_db::service::projects::NewProject;
use forge_db::service::sessions::NewSession;
use forge_db::service::{Actor, Connection, Result};

/// Creates `user`'s project `name` and starts its first coding session with `prompt`,
/// acting as that user (so every repository rule for users applies).
///
/// # Errors
/// As `projects::create` and `sessions::start`: e.g. a validation error for a blank name
/// or prompt, `LimitReached` when the user's plan allows no more live sessions.
pub async fn start_coding<C: Connection>(
    db: &C,
    user: ProfileId,
    name: &str,
    prompt: &str,
) -> Result<(projects::Model, coding_sessions::Model)> {
    let actor = Actor::User(user);
    let project =
        forge_db::service::projects::create(db, actor, NewProject::new(user, name)).await?;
    let session =
        forge_db::service::sessions::start(db, actor, NewSession::new(user, project.id, prompt))
            .await?;
    Ok((project, session))
}
