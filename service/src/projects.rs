//! Projects: the apps a user builds, each owned by one profile (`user_id`).
//!
//! Invariants:
//! - `name` is stored trimmed, is never blank and has at most 200 characters; optional
//!   texts (description, template and sandbox ids) are trimmed and never blank (clear
//!   them with `Some(None)` in a [`ProjectPatch`]); `expo_config` is a JSON object.
//! - Deletion is soft: [`soft_delete`] sets `status = 'deleted'` and keeps the row. The
//!   status moves only along `active → archived`, `archived | deleted → active` and
//!   `active | archived → deleted`; anything else (archiving a deleted project, deleting
//!   twice, restoring an active one) is [`ForgeError::InvalidTransition`], and a deleted
//!   project cannot be edited until it is restored.
//! - A user creates, reads, lists and changes only their own projects; a project of
//!   someone else's looks exactly like a missing one ([`ForgeError::NotFound`]). The
//!   service may act on any project and create one for any owner.
//! - Lists are newest first by `(created_at, id)` with keyset pagination, and leave out
//!   deleted projects unless asked.

use forge_entity::ids::{ProfileId, ProjectId};
use forge_entity::projects::{self, ProjectStatus};
use sea_orm::prelude::Json;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter,
    Select, Set,
};

use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::{profiles, validate};

/// Longest accepted name (the schema's CHECK), description, and template/sandbox id.
const MAX_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 10_000;
const MAX_REF: usize = 255;

const ENTITY: &str = "project";

/// A project to create.
///
/// A user may only create projects for themself: an `owner` other than the acting user
/// is refused with [`ForgeError::NotFound`] for that profile, exactly as if it did not
/// exist. The service may name any existing profile.
#[derive(Clone, Debug, PartialEq)]
pub struct NewProject {
    /// The owning profile (`projects.user_id`).
    pub owner: ProfileId,
    /// The name; trimmed, not blank, at most 200 characters.
    pub name: String,
    /// A free-text description.
    pub description: Option<String>,
    /// The template the project starts from.
    pub template_id: Option<String>,
    /// Expo configuration, a JSON object (`None`: `{}`).
    pub expo_config: Option<Json>,
}

impl NewProject {
    /// A project called `name` for `owner`, with no description, template or config.
    pub fn new(owner: ProfileId, name: impl Into<String>) -> Self {
        Self {
            owner,
            name: name.into(),
            description: None,
            template_id: None,
            expo_config: None,
        }
    }
}

/// Changes to a project: rename, describe, configure. `None` leaves a field as it is;
/// `Some(None)` sets a nullable field to NULL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProjectPatch {
    /// A new name (trimmed, not blank, at most 200 characters).
    pub name: Option<String>,
    /// A new description, or `Some(None)` to remove it.
    pub description: Option<Option<String>>,
    /// A new template id, or `Some(None)` to remove it.
    pub template_id: Option<Option<String>>,
    /// A new Expo configuration (a JSON object), replacing the old one.
    pub expo_config: Option<Json>,
    /// The sandbox now running the project, or `Some(None)` when none is (service only:
    /// a user's patch naming it is [`ForgeError::Forbidden`]).
    pub sandbox_id: Option<Option<String>>,
}

/// Which projects [`list`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListProjects {
    /// Only this owner's projects. A user always lists their own only, so naming
    /// someone else gives an empty list; for the service `None` means every owner.
    pub owner: Option<ProfileId>,
    /// Only projects in this status. When set it wins over `include_deleted`, so
    /// `Some(ProjectStatus::Deleted)` lists the deleted ones.
    pub status: Option<ProjectStatus>,
    /// Include deleted projects (when no `status` is given); `false` leaves them out.
    pub include_deleted: bool,
}

/// Projects visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<projects::Entity> {
    scoped::owned_by(actor, projects::Column::UserId)
}

impl Scoped for projects::Entity {
    const NAME: &'static str = ENTITY;

    fn key() -> Self::Column {
        projects::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

/// An optional text field trimmed and checked; `Some(None)` and `None` pass through.
fn optional_field(
    field: &'static str,
    value: Option<Option<String>>,
    max_chars: usize,
) -> Result<Option<Option<String>>> {
    match value {
        Some(Some(v)) => Ok(Some(Some(validate::text(field, &v, max_chars)?))),
        other => Ok(other),
    }
}

fn expo_config(value: Json) -> Result<Json> {
    validate::json_object("expo_config", value)
}

/// Creates a project for `new.owner`.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long name or text, or an `expo_config`
/// that is not a JSON object; [`ForgeError::NotFound`] (entity `"profile"`) when the
/// owner does not exist or, for a user, is not the user themself.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "create"))]
pub async fn create<C>(db: &C, actor: Actor, new: NewProject) -> Result<projects::Model>
where
    C: Connection,
{
    let owner = new.owner;
    // Whole microseconds, as PostgreSQL stores them, so that a page cursor (which keeps
    // microseconds) names this row exactly on SQLite too, where the text keeps nanoseconds.
    let now = crate::now();
    let mut row = projects::ActiveModel {
        user_id: Set(owner),
        created_at: Set(now),
        updated_at: Set(now),
        name: Set(validate::text("name", &new.name, MAX_NAME)?),
        description: Set(validate::optional_text(
            "description",
            new.description.as_deref(),
            MAX_DESCRIPTION,
        )?),
        template_id: Set(validate::optional_text(
            "template_id",
            new.template_id.as_deref(),
            MAX_REF,
        )?),
        ..Default::default()
    };
    if let Some(config) = new.expo_config {
        row.expo_config = Set(expo_config(config)?);
    }
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            // A user sees only their own profile, so another owner is "not found".
            profiles::visible_to(actor)
                .filter(forge_entity::profiles::Column::Id.eq(owner))
                .one(txn)
                .await?
                .ok_or_else(|| ForgeError::not_found("profile", owner))?;
            Ok(row.insert(txn).await?)
        })
    })
    .await
}

/// The project `id` (in any status, deleted included), if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: ProjectId) -> Result<Option<projects::Model>>
where
    C: Connection,
{
    scoped::find::<projects::Entity, C>(db, actor, id).await
}

/// The project `id` (in any status, deleted included).
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: ProjectId) -> Result<projects::Model>
where
    C: Connection,
{
    scoped::get::<projects::Entity, C, _>(db, actor, id).await
}

/// One page of the projects `actor` may see, newest first, filtered by `filter`.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size of 0 or above
/// [`MAX_PAGE_SIZE`](crate::MAX_PAGE_SIZE).
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "list"))]
pub async fn list<C>(
    db: &C,
    actor: Actor,
    filter: &ListProjects,
    request: &PageRequest,
) -> Result<Page<projects::Model>>
where
    C: Connection,
{
    let mut select = visible_to(actor);
    if let Some(owner) = filter.owner {
        select = select.filter(projects::Column::UserId.eq(owner));
    }
    select = match filter.status {
        Some(status) => select.filter(projects::Column::Status.eq(status)),
        None if !filter.include_deleted => {
            select.filter(projects::Column::Status.ne(ProjectStatus::Deleted))
        }
        None => select,
    };
    pagination::fetch_page(
        db,
        actor,
        select,
        (projects::Column::CreatedAt, projects::Column::Id),
        Direction::NewestFirst,
        request,
        |p| (p.created_at, p.id),
    )
    .await
}

/// Renames, describes or configures project `id`; archived projects may be edited too.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long value or a non-object
/// `expo_config`; [`ForgeError::NotFound`] when the project is not `actor`'s;
/// [`ForgeError::InvalidTransition`] (from `deleted` to `updated`) when it is deleted;
/// [`ForgeError::Forbidden`] when a user sets `sandbox_id` (the service's).
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "update", id = %id))]
pub async fn update<C>(
    db: &C,
    actor: Actor,
    id: ProjectId,
    patch: ProjectPatch,
) -> Result<projects::Model>
where
    C: Connection,
{
    let name = validate::optional_text("name", patch.name.as_deref(), MAX_NAME)?;
    let description = optional_field("description", patch.description, MAX_DESCRIPTION)?;
    let template_id = optional_field("template_id", patch.template_id, MAX_REF)?;
    if patch.sandbox_id.is_some() {
        actor.require_service("setting a project's sandbox")?;
    }
    let sandbox_id = optional_field("sandbox_id", patch.sandbox_id, MAX_REF)?;
    let config = patch.expo_config.map(expo_config).transpose()?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = lock_visible(txn, actor, id).await?;
            if current.status == ProjectStatus::Deleted {
                return Err(refused(current.status, "updated"));
            }
            let mut row: projects::ActiveModel = current.into();
            if let Some(v) = name {
                row.name = Set(v);
            }
            if let Some(v) = description {
                row.description = Set(v);
            }
            if let Some(v) = template_id {
                row.template_id = Set(v);
            }
            if let Some(v) = sandbox_id {
                row.sandbox_id = Set(v);
            }
            if let Some(v) = config {
                row.expo_config = Set(v);
            }
            Ok(row.update(txn).await?)
        })
    })
    .await
}

/// Archives project `id` (`active → archived`).
///
/// # Errors
/// [`ForgeError::NotFound`] when it is not `actor`'s; [`ForgeError::InvalidTransition`]
/// when it is not active.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "archive", id = %id))]
pub async fn archive<C>(db: &C, actor: Actor, id: ProjectId) -> Result<projects::Model>
where
    C: Connection,
{
    set_status(db, actor, id, ProjectStatus::Archived).await
}

/// Restores project `id` (`archived | deleted → active`).
///
/// # Errors
/// [`ForgeError::NotFound`] when it is not `actor`'s; [`ForgeError::InvalidTransition`]
/// when it is already active.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "restore", id = %id))]
pub async fn restore<C>(db: &C, actor: Actor, id: ProjectId) -> Result<projects::Model>
where
    C: Connection,
{
    set_status(db, actor, id, ProjectStatus::Active).await
}

/// Soft-deletes project `id` (`active | archived → deleted`); the row stays.
///
/// # Errors
/// [`ForgeError::NotFound`] when it is not `actor`'s; [`ForgeError::InvalidTransition`]
/// when it is already deleted.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "soft_delete", id = %id))]
pub async fn soft_delete<C>(db: &C, actor: Actor, id: ProjectId) -> Result<projects::Model>
where
    C: Connection,
{
    set_status(db, actor, id, ProjectStatus::Deleted).await
}

/// Whether the status may go from `from` to `to`.
fn allowed(from: ProjectStatus, to: ProjectStatus) -> bool {
    use ProjectStatus::{Active, Archived, Deleted};
    matches!(
        (from, to),
        (Active, Archived) | (Archived | Deleted, Active) | (Active | Archived, Deleted)
    )
}

fn refused(from: ProjectStatus, to: &str) -> ForgeError {
    ForgeError::InvalidTransition {
        entity: ENTITY,
        from: from.as_str().to_owned(),
        to: to.to_owned(),
    }
}

/// Moves project `id` to `to` if the state machine allows it from its current status.
async fn set_status<C>(
    db: &C,
    actor: Actor,
    id: ProjectId,
    to: ProjectStatus,
) -> Result<projects::Model>
where
    C: Connection,
{
    let from: Vec<ProjectStatus> = ProjectStatus::ALL
        .iter()
        .copied()
        .filter(|s| allowed(*s, to))
        .collect();
    let update = projects::Entity::update_many()
        .col_expr(projects::Column::Status, Expr::value(to))
        .col_expr(projects::Column::UpdatedAt, Expr::value(crate::now()));
    let only_if = Condition::all().add(projects::Column::Status.is_in(from));
    match scoped::update_returning::<projects::Entity, C, _>(db, actor, id, update, only_if).await?
    {
        Some(changed) => Ok(changed),
        // Nothing changed: say why (off the hot path).
        None => Err(refused(get(db, actor, id).await?.status, to.as_str())),
    }
}

/// Project `id` if `actor` may see it, locked for the rest of the transaction
/// (`FOR UPDATE` on PostgreSQL; on SQLite the write transaction already holds the lock),
/// so the status checked is the status changed.
async fn lock_visible(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: ProjectId,
) -> Result<projects::Model> {
    scoped::lock::<projects::Entity, _>(txn, actor, id).await
}
