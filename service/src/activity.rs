//! Activity: the log of what a user did (`activity_logs`), written by the database.
//!
//! Invariants:
//! - Nothing here writes, and no repository does: the database appends an entry in the
//!   same transaction as the action, on both backends (a project created, archived or
//!   deleted; a session started or ended; an API key created or revoked; a batch created
//!   or cancelled). An action that is refused or rolled back, inside a caller's
//!   transaction too, leaves no entry; each action leaves exactly one. Entries never
//!   change; they go only with their user's profile ([`crate::profiles::erase`]). On
//!   PostgreSQL `authenticated` may only read its own entries.
//! - A user reads only their own log: listing someone else's gives an empty page (as
//!   `projects::list` and `credits::history` do), and another user's entry by id is
//!   [`ForgeError::NotFound`], exactly like a missing one, so ids cannot be probed. The
//!   service reads anyone's.
//! - [`list`] is newest first by `(created_at, id)` with keyset pagination, one statement
//!   a page (one message on a PostgreSQL pool) on the `(user_id, created_at DESC, id DESC)`
//!   index.

use forge_entity::activity_logs::{self, Column};
use forge_entity::ids::{ActivityId, ProfileId};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ColumnTrait, QueryFilter, Select};
use uuid::Uuid;

use crate::actor::{Actor, Connection};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::validate;

const ENTITY: &str = "activity";

/// Longest accepted action prefix and entity type in a filter.
const MAX_FILTER_TEXT: usize = 100;

/// Which entries [`list`] returns; the default is all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityFilter {
    /// Only actions starting with this text, compared exactly (case-sensitive, no
    /// wildcards): `"project."` for everything done to projects, `"session.ended"` for
    /// one action. At most 100 characters.
    pub action_prefix: Option<String>,
    /// Only entries about this kind of row (`entity_type`, e.g. `"project"`), at most 100
    /// characters.
    pub entity_type: Option<String>,
    /// Only entries about the row with this id (`entity_id`).
    pub entity_id: Option<Uuid>,
}

impl ActivityFilter {
    /// Entries whose action starts with `prefix`.
    pub fn action(prefix: impl Into<String>) -> Self {
        Self {
            action_prefix: Some(prefix.into()),
            ..Self::default()
        }
    }

    /// Entries about the row `id` of kind `entity_type` (any typed id).
    pub fn entity(entity_type: impl Into<String>, id: impl Into<Uuid>) -> Self {
        Self {
            entity_type: Some(entity_type.into()),
            entity_id: Some(id.into()),
            ..Self::default()
        }
    }
}

/// Activity entries visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<activity_logs::Entity> {
    scoped::owned_by(actor, Column::UserId)
}

impl Scoped for activity_logs::Entity {
    const NAME: &'static str = ENTITY;

    fn key() -> Self::Column {
        Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

/// A filter text checked: not empty, no NUL, at most [`MAX_FILTER_TEXT`] characters.
/// Kept as given (not trimmed): it is compared exactly.
fn filter_text(field: &'static str, value: &str) -> Result<String> {
    validate::no_nul(field, value)?;
    let len = value.chars().count();
    if len == 0 || len > MAX_FILTER_TEXT {
        return Err(ForgeError::invalid(
            field,
            format!("is {len} characters long, 1..={MAX_FILTER_TEXT} allowed"),
        ));
    }
    Ok(value.to_owned())
}

/// One page of `user`'s activity, newest first, filtered by `filter`. A user naming
/// someone else gets an empty page.
///
/// # Errors
/// [`ForgeError::Validation`] for an empty or over-long `action_prefix` or `entity_type`,
/// a page size outside `1..=MAX_PAGE_SIZE` or a bad cursor.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "list", user = %user))]
pub async fn list<C>(
    db: &C,
    actor: Actor,
    user: ProfileId,
    filter: &ActivityFilter,
    request: &PageRequest,
) -> Result<Page<activity_logs::Model>>
where
    C: Connection,
{
    let mut select = visible_to(actor).filter(Column::UserId.eq(user));
    if let Some(prefix) = &filter.action_prefix {
        let prefix = filter_text("action_prefix", prefix)?;
        // `substr(…) = prefix` rather than LIKE: no wildcards to escape, and case-sensitive
        // on both backends (SQLite's LIKE ignores ASCII case).
        let length = i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX);
        let head = Func::cust("substr")
            .arg(Expr::col(Column::Action))
            .arg(1)
            .arg(length);
        select = select.filter(Expr::expr(head).eq(prefix));
    }
    if let Some(kind) = &filter.entity_type {
        select = select.filter(Column::EntityType.eq(filter_text("entity_type", kind)?));
    }
    if let Some(id) = filter.entity_id {
        select = select.filter(Column::EntityId.eq(id));
    }
    pagination::fetch_page(
        db,
        actor,
        select,
        (Column::CreatedAt, Column::Id),
        Direction::NewestFirst,
        request,
        |a| (a.created_at, a.id),
    )
    .await
}

/// Activity entry `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: ActivityId) -> Result<Option<activity_logs::Model>>
where
    C: Connection,
{
    scoped::find::<activity_logs::Entity, C>(db, actor, id).await
}

/// Activity entry `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: ActivityId) -> Result<activity_logs::Model>
where
    C: Connection,
{
    scoped::get::<activity_logs::Entity, C, _>(db, actor, id).await
}
