//! Notifications: messages to a user, and what each user wants to receive.
//!
//! Invariants:
//! - The service writes notifications ([`create`]); so does the database itself, for
//!   `credits_low` (see [`crate::credits`]). Both honour the recipient's
//!   [`preferences`]: nothing is stored while `in_app_enabled` is false or the
//!   type is in `muted_types` ([`create`] then returns `Ok(None)`). The rule is decided in
//!   the one `INSERT … SELECT` from the preferences row, so a change of preferences racing
//!   a notification either applies to it or does not, never half.
//! - A title is at most 200 characters and not blank, a body at most 2000 characters,
//!   `data` a JSON object.
//! - Users read, mark read ([`mark_read`], [`mark_all_read`]) and delete ([`delete`]) only
//!   their own notifications; someone else's looks exactly like a missing one
//!   ([`ForgeError::NotFound`]). Marking read is idempotent: `read_at` keeps the first time.
//! - Every profile has one preferences row, created with it. Users change their own
//!   channels and `muted_types` ([`update_preferences`]); `muted_types` holds only known
//!   [`NotificationType`] names, each once, in declaration order.
//! - Lists are newest first by `(created_at, id)` with keyset pagination.
//!
//! Every call here is one statement (one message on a PostgreSQL pool); the ones that
//! find nothing to change read once more to say why.

use forge_entity::ids::{NotificationId, ProfileId};
use forge_entity::notification_preferences;
use forge_entity::notifications::{self, NotificationType};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    QueryTrait, Select, Statement,
};
use serde_json::Value as Json;

use crate::actor::{Access, Actor, Connection};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::validate;

/// Longest accepted title and body, in characters (the schema's CHECKs).
pub const MAX_TITLE: usize = 200;
/// Longest accepted body, in characters.
pub const MAX_BODY: usize = 2000;

const ENTITY: &str = "notification";

/// A notification to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    /// The recipient.
    pub user: ProfileId,
    /// What it is about.
    pub kind: NotificationType,
    /// Its title: trimmed, not blank, at most [`MAX_TITLE`] characters.
    pub title: String,
    /// Its text, at most [`MAX_BODY`] characters (may be empty).
    pub body: String,
    /// A JSON object of details (`None`: `{}`).
    pub data: Option<Json>,
}

impl NewNotification {
    /// A notification of `kind` for `user` with `title` and `body`, and no data.
    pub fn new(
        user: ProfileId,
        kind: NotificationType,
        title: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        Self {
            user,
            kind,
            title: title.into(),
            body: body.into(),
            data: None,
        }
    }
}

/// Which of a user's notifications [`list`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListNotifications {
    /// Only those not read yet.
    pub unread_only: bool,
}

/// Changes to a user's notification preferences; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreferencesPatch {
    /// Whether e-mail notifications are wanted.
    pub email_enabled: Option<bool>,
    /// Whether in-app notifications are wanted (false: [`create`] stores nothing).
    pub in_app_enabled: Option<bool>,
    /// The notification types not wanted, by name (`"credits_low"`, …), replacing the
    /// current list; every name must be a [`NotificationType`]. Duplicates count once.
    pub muted_types: Option<Vec<String>>,
}

/// Notifications visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<notifications::Entity> {
    scoped::owned_by(actor, notifications::Column::UserId)
}

impl Scoped for notifications::Entity {
    const NAME: &'static str = ENTITY;

    fn key() -> Self::Column {
        notifications::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

/// Preferences are keyed by their profile: a user sees their own row only.
impl Scoped for notification_preferences::Entity {
    const NAME: &'static str = "notification preferences";

    fn key() -> Self::Column {
        notification_preferences::Column::UserId
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        scoped::owned_by(actor, notification_preferences::Column::UserId)
    }
}

/// The muted types of a preferences row, in declaration order; names the database holds
/// that this version does not know are left out.
pub fn muted_types(preferences: &notification_preferences::Model) -> Vec<NotificationType> {
    let names: Vec<&str> = preferences
        .muted_types
        .as_array()
        .map(|items| items.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    NotificationType::ALL
        .iter()
        .copied()
        .filter(|t| names.contains(&t.as_str()))
        .collect()
}

/// `names` as known notification types: a JSON array of their names, each once, in
/// declaration order.
fn checked_muted_types(names: &[String]) -> Result<Json> {
    let mut muted = Vec::with_capacity(names.len());
    for name in names {
        validate::no_nul("muted_types", name)?;
        muted.push(validate::parse_enum::<NotificationType>(
            "muted_types",
            name.trim(),
        )?);
    }
    Ok(Json::Array(
        NotificationType::ALL
            .iter()
            .filter(|t| muted.contains(t))
            .map(|t| Json::from(t.as_str()))
            .collect(),
    ))
}

/// A body: at most [`MAX_BODY`] characters, no NUL; kept as written (it may be empty).
fn checked_body(body: String) -> Result<String> {
    validate::no_nul("body", &body)?;
    let len = body.chars().count();
    if len > MAX_BODY {
        return Err(ForgeError::invalid(
            "body",
            format!("is {len} characters long, at most {MAX_BODY} allowed"),
        ));
    }
    Ok(body)
}

/// The one statement that stores `new` unless its recipient's preferences refuse it: an
/// `INSERT … SELECT` from the preferences row, so a disabled channel, a muted type or an
/// unknown user inserts nothing. Values are cast on PostgreSQL, where an
/// `INSERT … SELECT` list is not typed by its target columns.
fn create_statement(backend: DbBackend, new: NewNotification, data: Json) -> Statement {
    let columns = "id, user_id, type, title, body, data, read_at, created_at";
    let kind = new.kind.as_str();
    let (title, body) = (new.title, new.body);
    let id = NotificationId::new();
    let now = crate::now();
    match backend {
        DbBackend::Postgres => Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO notifications (id, user_id, type, title, body, data, created_at) \
                 SELECT CAST($1 AS uuid), p.user_id, $2, $3, $4, CAST($5 AS jsonb), \
                        CAST($6 AS timestamptz) \
                 FROM notification_preferences p \
                 WHERE p.user_id = CAST($7 AS uuid) AND p.in_app_enabled \
                   AND NOT p.muted_types @> jsonb_build_array(CAST($2 AS text)) \
                 RETURNING {columns}"
            ),
            [
                id.into(),
                kind.into(),
                title.into(),
                body.into(),
                data.into(),
                now.into(),
                new.user.into(),
            ],
        ),
        _ => Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO notifications (id, user_id, type, title, body, data, created_at) \
                 SELECT ?, p.user_id, ?, ?, ?, ?, ? \
                 FROM notification_preferences p \
                 WHERE p.user_id = ? AND p.in_app_enabled \
                   AND NOT EXISTS (SELECT 1 FROM json_each(p.muted_types) m \
                                   WHERE m.value = ?) \
                 RETURNING {columns}"
            ),
            [
                id.into(),
                kind.into(),
                title.into(),
                body.into(),
                data.into(),
                now.into(),
                new.user.into(),
                kind.into(),
            ],
        ),
    }
}

/// Sends `new` to its recipient (service only), unless their preferences refuse it:
/// `Ok(None)` when in-app notifications are disabled or the type is muted.
///
/// One statement; a refused one reads the preferences once more to tell a muted type from
/// an unknown user.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a blank or
/// over-long `title`, an over-long `body` or `data` that is not a JSON object;
/// [`ForgeError::NotFound`] (`"profile"`) when the recipient does not exist.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "create", user = %new.user, kind = %new.kind))]
pub async fn create<C>(
    db: &C,
    actor: Actor,
    mut new: NewNotification,
) -> Result<Option<notifications::Model>>
where
    C: Connection,
{
    actor.require_service("sending notifications")?;
    let data = validate::json_object("data", new.data.take().unwrap_or(Json::Null))?;
    new.title = validate::text("title", &new.title, MAX_TITLE)?;
    new.body = checked_body(new.body)?;
    let user = new.user;
    let stmt = create_statement(db.get_database_backend(), new, data);
    let rows = scoped::rows(db, actor, Access::Write, stmt).await?;
    match rows.first() {
        Some(row) => Ok(Some(notifications::Model::from_query_result(row, "")?)),
        // Nothing stored: a preference said no, or there is no such user.
        None => match scoped::find::<notification_preferences::Entity, C>(db, actor, user).await? {
            Some(_) => Ok(None),
            None => Err(ForgeError::not_found("profile", user)),
        },
    }
}

/// The notification `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "find", id = %id))]
pub async fn find<C>(
    db: &C,
    actor: Actor,
    id: NotificationId,
) -> Result<Option<notifications::Model>>
where
    C: Connection,
{
    scoped::find::<notifications::Entity, C>(db, actor, id).await
}

/// The notification `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: NotificationId) -> Result<notifications::Model>
where
    C: Connection,
{
    scoped::get::<notifications::Entity, C, _>(db, actor, id).await
}

/// One page of `user`'s notifications, newest first. A user sees only their own: naming
/// someone else gives an empty page.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE` or a cursor
/// that no page returned.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "list", user = %user))]
pub async fn list<C>(
    db: &C,
    actor: Actor,
    user: ProfileId,
    filter: ListNotifications,
    request: &PageRequest,
) -> Result<Page<notifications::Model>>
where
    C: Connection,
{
    let select = visible_to(actor)
        .filter(notifications::Column::UserId.eq(user))
        .apply_if(filter.unread_only.then_some(()), |q, ()| {
            q.filter(notifications::Column::ReadAt.is_null())
        });
    pagination::fetch_page(
        db,
        actor,
        select,
        (notifications::Column::CreatedAt, notifications::Column::Id),
        Direction::NewestFirst,
        request,
        |n| (n.created_at, n.id),
    )
    .await
}

/// How many of `user`'s notifications are unread (0 for a user naming someone else).
/// One `SELECT count(*)`, served by the partial index on unread rows.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "unread_count", user = %user))]
pub async fn unread_count<C>(db: &C, actor: Actor, user: ProfileId) -> Result<u64>
where
    C: Connection,
{
    let stmt = visible_to(actor)
        .filter(notifications::Column::UserId.eq(user))
        .filter(notifications::Column::ReadAt.is_null())
        .select_only()
        .column_as(Expr::col(notifications::Column::Id).count(), "unread")
        .build(db.get_database_backend());
    let rows = scoped::rows(db, actor, Access::Read, stmt).await?;
    let unread: i64 = match rows.first() {
        Some(row) => row.try_get("", "unread")?,
        None => 0,
    };
    Ok(u64::try_from(unread).unwrap_or(0))
}

/// Marks notification `id` read and returns it. Marking it again changes nothing:
/// `read_at` keeps the first time.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "mark_read", id = %id))]
pub async fn mark_read<C>(db: &C, actor: Actor, id: NotificationId) -> Result<notifications::Model>
where
    C: Connection,
{
    let update = notifications::Entity::update_many()
        .col_expr(notifications::Column::ReadAt, Expr::value(crate::now()));
    let only_if = Condition::all().add(notifications::Column::ReadAt.is_null());
    match scoped::update_returning::<notifications::Entity, C, _>(db, actor, id, update, only_if)
        .await?
    {
        Some(read) => Ok(read),
        // Already read, or not there for `actor`.
        None => get(db, actor, id).await,
    }
}

/// Marks every unread notification of `user` read, in one `UPDATE`, and returns how many
/// it marked (0 for a user naming someone else).
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "mark_all_read", user = %user))]
pub async fn mark_all_read<C>(db: &C, actor: Actor, user: ProfileId) -> Result<u64>
where
    C: Connection,
{
    let mut update = notifications::Entity::update_many()
        .col_expr(notifications::Column::ReadAt, Expr::value(crate::now()))
        .filter(scoped::owner_is(actor, notifications::Column::UserId))
        .filter(notifications::Column::UserId.eq(user))
        .filter(notifications::Column::ReadAt.is_null())
        .into_query();
    update.returning_col(notifications::Column::Id);
    let stmt = db.get_database_backend().build(&update);
    let marked = scoped::rows(db, actor, Access::Write, stmt).await?;
    Ok(marked.len() as u64)
}

/// Deletes notification `id`, in one `DELETE`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "delete", id = %id))]
pub async fn delete<C>(db: &C, actor: Actor, id: NotificationId) -> Result<()>
where
    C: Connection,
{
    let mut delete = notifications::Entity::delete_many()
        .filter(scoped::owner_is(actor, notifications::Column::UserId))
        .filter(notifications::Column::Id.eq(id))
        .into_query();
    delete.returning_col(notifications::Column::Id);
    let stmt = db.get_database_backend().build(&delete);
    if scoped::rows(db, actor, Access::Write, stmt)
        .await?
        .is_empty()
    {
        return Err(ForgeError::not_found(ENTITY, id));
    }
    Ok(())
}

/// The notification preferences of `user`.
///
/// # Errors
/// [`ForgeError::NotFound`] when `user` does not exist or is not `actor`.
#[tracing::instrument(skip_all, fields(entity = "notification preferences", op = "get", user = %user))]
pub async fn preferences<C>(
    db: &C,
    actor: Actor,
    user: ProfileId,
) -> Result<notification_preferences::Model>
where
    C: Connection,
{
    scoped::get::<notification_preferences::Entity, C, _>(db, actor, user).await
}

/// Changes the notification preferences of `user` and returns them: one conditional
/// `UPDATE … RETURNING` (an empty patch only reads them).
///
/// # Errors
/// [`ForgeError::Validation`] (`muted_types`) for a name that is not a
/// [`NotificationType`]; [`ForgeError::NotFound`] when `user` does not exist or is not
/// `actor`.
#[tracing::instrument(skip_all, fields(entity = "notification preferences", op = "update", user = %user))]
pub async fn update_preferences<C>(
    db: &C,
    actor: Actor,
    user: ProfileId,
    patch: PreferencesPatch,
) -> Result<notification_preferences::Model>
where
    C: Connection,
{
    use notification_preferences::Column;
    let muted = patch
        .muted_types
        .as_deref()
        .map(checked_muted_types)
        .transpose()?;
    if patch.email_enabled.is_none() && patch.in_app_enabled.is_none() && muted.is_none() {
        return preferences(db, actor, user).await;
    }
    let update = notification_preferences::Entity::update_many()
        .col_expr(Column::UpdatedAt, Expr::value(crate::now()))
        .apply_if(patch.email_enabled, |u, v| {
            u.col_expr(Column::EmailEnabled, Expr::value(v))
        })
        .apply_if(patch.in_app_enabled, |u, v| {
            u.col_expr(Column::InAppEnabled, Expr::value(v))
        })
        .apply_if(muted, |u, v| u.col_expr(Column::MutedTypes, Expr::value(v)));
    scoped::update_returning::<notification_preferences::Entity, C, _>(
        db,
        actor,
        user,
        update,
        Condition::all(),
    )
    .await?
    .ok_or_else(|| ForgeError::not_found("notification preferences", user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muted_types_are_known_names_once_in_order() {
        let names = ["system", " credits_low ", "system"].map(String::from);
        assert_eq!(
            checked_muted_types(&names).ok(),
            Some(serde_json::json!(["credits_low", "system"]))
        );
        assert!(matches!(
            checked_muted_types(&["credit_low".to_owned()]),
            Err(ForgeError::Validation {
                field: "muted_types",
                ..
            })
        ));
        assert_eq!(checked_muted_types(&[]).ok(), Some(serde_json::json!([])));
    }
}
