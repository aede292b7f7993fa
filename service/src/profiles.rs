//! Profiles: one per user, keyed by the auth user's id.
//!
//! Invariants: the email is stored trimmed and lower-cased and is unique (a second
//! profile with the same email is a [`ForgeError::Conflict`]); the display name defaults
//! to the email's local part. Users read and edit only their own profile; creating one
//! (signup) and changing tier or `sessions_limit` are the service's.

use forge_entity::ids::ProfileId;
use forge_entity::profiles::{self, Tier};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Select, Set};

use crate::scoped::{self, Scoped};
use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};
use crate::validate;

/// Longest accepted email, display name and avatar URL.
const MAX_EMAIL: usize = 320;
const MAX_DISPLAY_NAME: usize = 100;
const MAX_URL: usize = 2048;

/// A profile to create on signup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProfile {
    /// The auth user's id (`None`: a fresh id).
    pub id: Option<ProfileId>,
    /// The email; trimmed and lower-cased before it is stored.
    pub email: String,
    /// The display name (`None`: the email's local part).
    pub display_name: Option<String>,
}

impl NewProfile {
    /// A profile for `email` with a fresh id and the default display name.
    pub fn new(email: impl Into<String>) -> Self {
        Self {
            id: None,
            email: email.into(),
            display_name: None,
        }
    }
}

/// What a user may change on their own profile. `None` leaves a field as it is;
/// `avatar_url: Some(None)` clears the avatar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfilePatch {
    /// A new display name.
    pub display_name: Option<String>,
    /// A new avatar URL, or `Some(None)` to remove it.
    pub avatar_url: Option<Option<String>>,
}

/// Profiles visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<profiles::Entity> {
    scoped::owned_by(actor, profiles::Column::Id)
}

impl Scoped for profiles::Entity {
    const NAME: &'static str = "profile";

    fn key() -> Self::Column {
        profiles::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

fn normalise_email(email: &str) -> Result<String> {
    // Lower-cased before the length check: lower-casing may lengthen it ('İ' → "i̇").
    let email = validate::text("email", &email.to_lowercase(), MAX_EMAIL)?;
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(email)
        }
        _ => Err(ForgeError::invalid("email", "must look like name@domain")),
    }
}

/// Creates a profile on signup (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a malformed
/// email or display name, [`ForgeError::Conflict`] when the email (or id) is taken.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "create"))]
pub async fn create<C>(db: &C, actor: Actor, new: NewProfile) -> Result<profiles::Model>
where
    C: Connection,
{
    actor.require_service("creating a profile")?;
    let email = normalise_email(&new.email)?;
    let display_name = match new.display_name.as_deref() {
        Some(name) => validate::text("display_name", name, MAX_DISPLAY_NAME)?,
        None => email.split('@').next().unwrap_or_default().to_owned(),
    };
    let mut row = profiles::ActiveModel {
        email: Set(email),
        display_name: Set(display_name),
        ..Default::default()
    };
    if let Some(id) = new.id {
        row.id = Set(id);
    }
    run_as(db, actor, Access::Write, |txn| {
        Box::pin(async move { Ok(row.insert(txn).await?) })
    })
    .await
}

/// The profile `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: ProfileId) -> Result<Option<profiles::Model>>
where
    C: Connection,
{
    scoped::find::<profiles::Entity, C>(db, actor, id).await}

/// The profile `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: ProfileId) -> Result<profiles::Model>
where
    C: Connection,
{
    scoped::get::<profiles::Entity, C, _>(db, actor, id).await}

/// The profile with this email (matched trimmed and case-insensitively), if visible.
///
/// # Errors
/// [`ForgeError::Validation`] for a malformed email.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "find_by_email"))]
pub async fn find_by_email<C>(db: &C, actor: Actor, email: &str) -> Result<Option<profiles::Model>>
where
    C: Connection,
{
    let email = normalise_email(email)?;
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            Ok(visible_to(actor)
                .filter(profiles::Column::Email.eq(email))
                .one(txn)
                .await?)
        })
    })
    .await
}

/// Changes display name and/or avatar of profile `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it is not `actor`'s, [`ForgeError::Validation`] for a
/// blank or over-long value.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "update", id = %id))]
pub async fn update<C>(
    db: &C,
    actor: Actor,
    id: ProfileId,
    patch: ProfilePatch,
) -> Result<profiles::Model>
where
    C: Connection,
{
    let display_name = validate::optional_text(
        "display_name",
        patch.display_name.as_deref(),
        MAX_DISPLAY_NAME,
    )?;
    let avatar_url = match patch.avatar_url {
        Some(Some(url)) => Some(Some(validate::text("avatar_url", &url, MAX_URL)?)),
        other => other,
    };
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = visible_to(actor)
                .filter(profiles::Column::Id.eq(id))
                .one(txn)
                .await?
                .ok_or_else(|| ForgeError::not_found("profile", id))?;
            let mut row: profiles::ActiveModel = current.into();
            if let Some(name) = display_name {
                row.display_name = Set(name);
            }
            if let Some(url) = avatar_url {
                row.avatar_url = Set(url);
            }
            Ok(row.update(txn).await?)
        })
    })
    .await
}

/// Sets tier and concurrent-session limit of profile `id` (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a negative
/// limit, [`ForgeError::NotFound`] for an unknown profile.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "set_plan", id = %id))]
pub async fn set_plan<C>(
    db: &C,
    actor: Actor,
    id: ProfileId,
    tier: Tier,
    sessions_limit: i32,
) -> Result<profiles::Model>
where
    C: Connection,
{
    actor.require_service("setting a profile's tier and limit")?;
    validate::in_range(
        "sessions_limit",
        i64::from(sessions_limit),
        0,
        i64::from(i32::MAX),
    )?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = profiles::Entity::find_by_id(id)
                .one(txn)
                .await?
                .ok_or_else(|| ForgeError::not_found("profile", id))?;
            let mut row: profiles::ActiveModel = current.into();
            row.tier = Set(tier);
            row.sessions_limit = Set(sessions_limit);
            Ok(row.update(txn).await?)
        })
    })
    .await
}
