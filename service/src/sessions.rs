//! Coding sessions: an AI coding session on one of the owner's projects.
//!
//! Invariants:
//! - A session starts only on an `active` project of its owner, with a non-blank prompt
//!   and an expiry in the future.
//! - A user never has more *live* sessions (`pending`, `active`, `paused`) than their
//!   profile's `sessions_limit`, even when many starts race on several connections. The
//!   database holds this rule (and the project rule above) for every writer: a trigger
//!   locks the owner's profile row, counts the live sessions and refuses the insert
//!   (PostgreSQL; on SQLite a trigger counts inside the `BEGIN IMMEDIATE` write
//!   transaction, which serialises writers). [`start`] is one `INSERT`.
//! - A user's session expires at most 24 hours after it starts (the database refuses
//!   more for `authenticated` on PostgreSQL; [`start`] refuses it on both backends).
//! - `status` only moves along [`SessionStatus::can_transition_to`] (SCHEMA.md:
//!   pending→active, active⇄paused, any live state → completed, failed or expired).
//!   [`transition`] applies a change with a conditional `UPDATE … WHERE status = <read>`,
//!   so of two racing transitions from the same state only one wins.
//! - A session that ends (completed, failed, expired — by [`transition`] or
//!   [`expire_overdue`]) fails its pending and in-flight jobs in the same transaction, so
//!   it leaves no claimable job behind (see [`crate::jobs`]).
//! - Users see and change only their own sessions; sessions cannot be deleted through this
//!   module (the `authenticated` role has no DELETE on them). Expiring overdue sessions is
//!   the service's.

use chrono::TimeDelta;
use forge_entity::coding_sessions::{self, SessionStatus};
use forge_entity::ids::{ProfileId, ProjectId, SessionId};
use forge_entity::{profiles, projects};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait, FromQueryResult, QueryFilter, QueryTrait, Select, Set,
};
use serde_json::Value as Json;

use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::validate;

/// Longest accepted initial prompt, in characters.
const MAX_PROMPT: usize = 100_000;
/// The longest a user's session may live (SCHEMA.md); the service may set any expiry.
pub const MAX_USER_TTL: TimeDelta = TimeDelta::hours(24);
/// Longest accepted preview URL, in characters.
const MAX_URL: usize = 2048;

/// A session to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// The owner; a user may only start sessions for themselves.
    pub owner: ProfileId,
    /// The project to work on: the owner's, and `active`.
    pub project_id: ProjectId,
    /// What the session should do; trimmed, must not be blank.
    pub initial_prompt: String,
    /// How long the session lives from now (`expires_at = now + ttl`); must be positive,
    /// and end the session by the year 9999.
    pub ttl: TimeDelta,
    /// A JSON object of free-form metadata (`None`: `{}`).
    pub metadata: Option<Json>,
}

impl NewSession {
    /// A session for `owner` on `project_id` living one hour, with no metadata.
    pub fn new(owner: ProfileId, project_id: ProjectId, initial_prompt: impl Into<String>) -> Self {
        Self {
            owner,
            project_id,
            initial_prompt: initial_prompt.into(),
            ttl: TimeDelta::hours(1),
            metadata: None,
        }
    }
}

/// Which sessions [`list`] returns. `None` fields do not filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only sessions in this state.
    pub status: Option<SessionStatus>,
    /// Only sessions on this project.
    pub project_id: Option<ProjectId>,
}

/// The owner condition for `actor`: their own sessions, or all for the service.
fn owned_by(actor: Actor) -> Condition {
    scoped::owner_is(actor, coding_sessions::Column::UserId)
}

/// Sessions visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<coding_sessions::Entity> {
    scoped::owned_by(actor, coding_sessions::Column::UserId)
}

impl Scoped for coding_sessions::Entity {
    const NAME: &'static str = "session";

    fn key() -> Self::Column {
        coding_sessions::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

/// The session `id` as `actor` sees it, or [`ForgeError::NotFound`].
pub(crate) async fn fetch(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: SessionId,
) -> Result<coding_sessions::Model> {
    visible_to(actor)
        .filter(coding_sessions::Column::Id.eq(id))
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found("session", id))
}

/// Validates `new` for `actor` and turns it into the row to insert.
fn new_row(actor: Actor, new: NewSession) -> Result<coding_sessions::ActiveModel> {
    if actor.user_id().is_some_and(|uid| uid != new.owner) {
        // Someone else's profile looks missing, like any row of theirs.
        return Err(ForgeError::not_found("profile", new.owner));
    }
    let prompt = validate::text("initial_prompt", &new.initial_prompt, MAX_PROMPT)?;
    // The expiry `now + ttl` must lie in the future, i.e. the ttl must be positive.
    let expires_at = crate::now()
        .checked_add_signed(new.ttl)
        .ok_or_else(|| ForgeError::invalid("ttl", "is too long"))?;
    let expires_at = validate::future("ttl", expires_at)?;
    // An expiry past the year 9999 would compare as already passed on SQLite (as text).
    let expires_at = validate::storable_instant("ttl", expires_at).map_err(|_| {
        ForgeError::invalid(
            "ttl",
            "is too long: the session would end after the year 9999",
        )
    })?;
    if actor.user_id().is_some() && new.ttl > MAX_USER_TTL {
        return Err(ForgeError::invalid(
            "ttl",
            "a user's session lives at most 24 hours",
        ));
    }
    let metadata = validate::json_object("metadata", new.metadata.unwrap_or(Json::Null))?;
    let now = crate::now();
    Ok(coding_sessions::ActiveModel {
        id: Set(SessionId::new()),
        created_at: Set(now),
        updated_at: Set(now),
        user_id: Set(new.owner),
        project_id: Set(new.project_id),
        initial_prompt: Set(prompt),
        status: Set(SessionStatus::Pending),
        expires_at: Set(expires_at),
        metadata: Set(metadata),
        ..Default::default()
    })
}

/// The `sessions_limit` of `owner`, to name it in a [`ForgeError::LimitReached`] whose
/// database message did not carry it (SQLite's triggers raise fixed messages).
async fn live_limit<C: Connection>(db: &C, owner: ProfileId) -> Result<i64> {
    let profile = scoped::find::<profiles::Entity, C>(db, Actor::Service, owner).await?;
    Ok(profile.map_or(-1, |p| i64::from(p.sessions_limit)))
}

/// Starts a session (status `pending`) on one of the owner's active projects.
///
/// # Errors
/// [`ForgeError::NotFound`] (`"profile"`) when a user starts a session for someone else;
/// [`ForgeError::Validation`] for a blank or over-long prompt (`initial_prompt`), a
/// non-positive `ttl` or one that would end the session after the year 9999, or
/// `metadata` that is not a JSON object; [`ForgeError::InvalidTransition`] (entity
/// `"project"`) when the project is archived or deleted;
/// [`ForgeError::NotFound`] when the owner's profile or the project does not exist or is
/// not the owner's; [`ForgeError::LimitReached`] (`"live sessions"`) when the owner
/// already has `sessions_limit` live sessions.
#[tracing::instrument(skip_all, fields(entity = "session", op = "start", project_id = %new.project_id))]
pub async fn start<C>(db: &C, actor: Actor, new: NewSession) -> Result<coding_sessions::Model>
where
    C: Connection,
{
    let (owner, project_id) = (new.owner, new.project_id);
    let row = new_row(actor, new)?;
    // One statement: the database holds the rules (forge-migration's database wall, on
    // both backends): the owner's own active project, and at most `sessions_limit` live
    // sessions — it locks the owner's profile row, so racing starts queue.
    let backend = db.get_database_backend();
    let mut insert = coding_sessions::Entity::insert(row).into_query();
    insert.returning_all();
    let inserted = scoped::rows(db, actor, Access::Write, backend.build(&insert)).await;
    match inserted {
        Ok(rows) => match rows.first() {
            Some(row) => Ok(coding_sessions::Model::from_query_result(row, "")?),
            None => Err(ForgeError::Db(sea_orm::DbErr::RecordNotInserted)),
        },
        Err(ForgeError::NotFound {
            entity: "project", ..
        }) => Err(ForgeError::not_found("project", project_id)),
        Err(ForgeError::NotFound {
            entity: "profile", ..
        }) => Err(ForgeError::not_found("profile", owner)),
        // SQLite's trigger cannot name the project's state or the limit: read them (off the
        // hot path).
        Err(ForgeError::InvalidTransition {
            entity: "project",
            from,
            to,
        }) if from == "not active" => {
            let project =
                scoped::find::<projects::Entity, C>(db, Actor::Service, project_id).await?;
            Err(ForgeError::InvalidTransition {
                entity: "project",
                from: project.map_or(from, |p| p.status.to_string()),
                to,
            })
        }
        Err(ForgeError::LimitReached { what, limit: -1 }) => Err(ForgeError::LimitReached {
            what,
            limit: live_limit(db, owner).await?,
        }),
        Err(err) => Err(err),
    }
}

/// The session `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = "session", op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: SessionId) -> Result<Option<coding_sessions::Model>>
where
    C: Connection,
{
    scoped::find::<coding_sessions::Entity, C>(db, actor, id).await
}

/// The session `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: SessionId) -> Result<coding_sessions::Model>
where
    C: Connection,
{
    scoped::get::<coding_sessions::Entity, C, _>(db, actor, id).await
}

/// `actor`'s sessions (all for the service), newest first, one page at a time.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE`.
#[tracing::instrument(skip_all, fields(entity = "session", op = "list"))]
pub async fn list<C>(
    db: &C,
    actor: Actor,
    filter: SessionFilter,
    request: PageRequest,
) -> Result<Page<coding_sessions::Model>>
where
    C: Connection,
{
    let select = visible_to(actor)
        .apply_if(filter.status, |q, s| {
            q.filter(coding_sessions::Column::Status.eq(s))
        })
        .apply_if(filter.project_id, |q, p| {
            q.filter(coding_sessions::Column::ProjectId.eq(p))
        });
    pagination::fetch_page(
        db,
        actor,
        select,
        (
            coding_sessions::Column::CreatedAt,
            coding_sessions::Column::Id,
        ),
        Direction::NewestFirst,
        &request,
        |s| (s.created_at, s.id),
    )
    .await
}

fn invalid_transition(from: SessionStatus, to: SessionStatus) -> ForgeError {
    ForgeError::InvalidTransition {
        entity: "session",
        from: from.to_string(),
        to: to.to_string(),
    }
}

/// Moves session `id` to `to`, if SCHEMA.md allows the change from its current state.
///
/// One conditional statement, `UPDATE … WHERE status IN (the states that may go to `to`)
/// RETURNING *`: when two callers race, the database decides on the state it holds, so
/// exactly one of two identical moves wins and the other is refused (on SQLite, inside the
/// write transaction that also fails an ended session's unfinished jobs; on PostgreSQL a
/// trigger does that in the same statement).
///
/// # Errors
/// [`ForgeError::NotFound`] when the session is not `actor`'s;
/// [`ForgeError::InvalidTransition`] (naming the current and the requested state) when
/// the state machine does not allow the change from the state the session is in.
#[tracing::instrument(skip_all, fields(entity = "session", op = "transition", id = %id, to = %to))]
pub async fn transition<C>(
    db: &C,
    actor: Actor,
    id: SessionId,
    to: SessionStatus,
) -> Result<coding_sessions::Model>
where
    C: Connection,
{
    let from: Vec<SessionStatus> = SessionStatus::ALL
        .iter()
        .copied()
        .filter(|s| s.can_transition_to(to))
        .collect();
    let mut update = coding_sessions::Entity::update_many()
        .col_expr(coding_sessions::Column::Status, Expr::value(to))
        .col_expr(
            coding_sessions::Column::UpdatedAt,
            Expr::value(crate::now()),
        )
        .filter(owned_by(actor))
        .filter(coding_sessions::Column::Id.eq(id))
        .filter(coding_sessions::Column::Status.is_in(from))
        .into_query();
    update.returning_all();
    let backend = db.get_database_backend();
    let stmt = backend.build(&update);
    let rows = if backend == DbBackend::Postgres {
        scoped::rows(db, actor, Access::Write, stmt).await?
    } else {
        run_as(db, actor, Access::Write, move |txn| {
            Box::pin(async move {
                let rows = txn.query_all_raw(stmt).await?;
                if !rows.is_empty() {
                    // An ended session leaves no claimable job behind.
                    crate::jobs::fail_jobs_of_ended_sessions(txn, Some(id), to).await?;
                }
                Ok(rows)
            })
        })
        .await?
    };
    match rows.first() {
        Some(row) => Ok(coding_sessions::Model::from_query_result(row, "")?),
        // Nothing moved: say why (off the hot path).
        None => Err(invalid_transition(get(db, actor, id).await?.status, to)),
    }
}

/// Sets the preview URLs of session `id` to exactly the given values (`None` clears one).
///
/// # Errors
/// [`ForgeError::NotFound`] when the session is not `actor`'s; [`ForgeError::Validation`]
/// for a blank or over-long URL (`eas_update_url`, `webview_url`).
#[tracing::instrument(skip_all, fields(entity = "session", op = "set_preview", id = %id))]
pub async fn set_preview<C>(
    db: &C,
    actor: Actor,
    id: SessionId,
    eas_update_url: Option<String>,
    webview_url: Option<String>,
) -> Result<coding_sessions::Model>
where
    C: Connection,
{
    let eas_update_url =
        validate::optional_text("eas_update_url", eas_update_url.as_deref(), MAX_URL)?;
    let webview_url = validate::optional_text("webview_url", webview_url.as_deref(), MAX_URL)?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let mut row: coding_sessions::ActiveModel = fetch(txn, actor, id).await?.into();
            row.eas_update_url = Set(eas_update_url);
            row.webview_url = Set(webview_url);
            Ok(row.update(txn).await?)
        })
    })
    .await
}

/// Expires every live session whose `expires_at` has passed, in one statement (service
/// only), and returns how many it expired. Ended sessions are left alone.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = "session", op = "expire_overdue"))]
pub async fn expire_overdue<C>(db: &C, actor: Actor) -> Result<u64>
where
    C: Connection,
{
    actor.require_service("expiring overdue sessions")?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let now = crate::now();
            let done = coding_sessions::Entity::update_many()
                .col_expr(
                    coding_sessions::Column::Status,
                    Expr::value(SessionStatus::Expired),
                )
                .col_expr(coding_sessions::Column::UpdatedAt, Expr::value(now))
                .filter(coding_sessions::Column::Status.is_in(SessionStatus::LIVE.iter().copied()))
                .filter(coding_sessions::Column::ExpiresAt.lte(now))
                .exec(txn)
                .await?;
            crate::jobs::fail_jobs_of_ended_sessions(txn, None, SessionStatus::Expired).await?;
            Ok(done.rows_affected)
        })
    })
    .await
}
