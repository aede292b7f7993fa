//! Prompts: the AI prompts and product copy the pipeline's bots and the app use
//! (SCHEMA.md "Pipeline runs", table `prompts`), keyed by a stable id such as
//! `onboarding.welcome`.
//!
//! Invariants:
//! - Everyone signed in reads them (every user and the service; on PostgreSQL the
//!   `authenticated` role may only `SELECT`); only the service writes them, with
//!   [`upsert`].
//! - `id` is 1 to 200 characters with no whitespace and no NUL character; `category` (at
//!   most 100 characters), `context` (at most 1,000) and `prompt_text` (at most 100,000)
//!   are trimmed and never blank.
//! - An upsert of an existing id replaces its category, context and text and keeps its
//!   `created_at`.

use forge_entity::ids::PromptId;
use forge_entity::prompts;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QueryTrait, Set};

use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};
use crate::validate;

/// Longest prompt id, in characters.
pub const MAX_ID: usize = 200;
/// Longest category, in characters.
const MAX_CATEGORY: usize = 100;
/// Longest context, in characters.
const MAX_CONTEXT: usize = 1_000;
/// Longest prompt text, in characters.
const MAX_TEXT: usize = 100_000;

const ENTITY: &str = "prompt";

/// A prompt to create or replace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPrompt {
    /// The stable key, e.g. `onboarding.welcome`: no whitespace, at most 200 characters.
    pub id: PromptId,
    /// Its group, e.g. `onboarding`; trimmed, not blank, at most 100 characters.
    pub category: String,
    /// Where it is used; trimmed, not blank, at most 1,000 characters.
    pub context: String,
    /// The prompt or copy itself; trimmed, not blank, at most 100,000 characters.
    pub prompt_text: String,
}

impl NewPrompt {
    /// A prompt `id` in `category`, used in `context`, saying `prompt_text`.
    pub fn new(
        id: impl Into<PromptId>,
        category: impl Into<String>,
        context: impl Into<String>,
        prompt_text: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            category: category.into(),
            context: context.into(),
            prompt_text: prompt_text.into(),
        }
    }
}

/// A prompt id checked: not blank, at most [`MAX_ID`] characters, no whitespace or NUL.
fn checked_id(id: &PromptId) -> Result<PromptId> {
    let id = validate::text("id", id.as_str(), MAX_ID)?;
    if id.chars().any(char::is_whitespace) {
        return Err(ForgeError::invalid("id", "must not contain whitespace"));
    }
    Ok(PromptId::new(id))
}

/// The prompt `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when there is none; [`ForgeError::Validation`] (`id`) for an
/// id no prompt can have (blank, whitespace, NUL, over 200 characters).
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "get", id = %id))]
pub async fn get<C>(db: &C, actor: Actor, id: &PromptId) -> Result<prompts::Model>
where
    C: Connection,
{
    let id = checked_id(id)?;
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            prompts::Entity::find_by_id(id.clone())
                .one(txn)
                .await?
                .ok_or_else(|| ForgeError::not_found(ENTITY, id))
        })
    })
    .await
}

/// Every prompt, or those of `category` (matched exactly after trimming), ordered by id.
/// The catalogue is small, so this is one list, not pages.
///
/// # Errors
/// [`ForgeError::Validation`] (`category`) for a blank category or one with a NUL
/// character; [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "list"))]
pub async fn list<C>(db: &C, actor: Actor, category: Option<&str>) -> Result<Vec<prompts::Model>>
where
    C: Connection,
{
    let category = validate::optional_text("category", category, MAX_CATEGORY)?;
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            Ok(prompts::Entity::find()
                .apply_if(category, |q, c| q.filter(prompts::Column::Category.eq(c)))
                .order_by_asc(prompts::Column::Id)
                .all(txn)
                .await?)
        })
    })
    .await
}

/// Creates prompt `new.id`, or replaces its category, context and text (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a bad `id`, or a
/// blank or over-long `category`, `context` or `prompt_text`, or text with a NUL
/// character.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "upsert", id = %new.id))]
pub async fn upsert<C>(db: &C, actor: Actor, new: NewPrompt) -> Result<prompts::Model>
where
    C: Connection,
{
    actor.require_service("writing prompts")?;
    let id = checked_id(&new.id)?;
    let category = validate::text("category", &new.category, MAX_CATEGORY)?;
    let context = validate::text("context", &new.context, MAX_CONTEXT)?;
    let prompt_text = validate::text("prompt_text", &new.prompt_text, MAX_TEXT)?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let now = crate::now();
            let row = prompts::ActiveModel {
                id: Set(id.clone()),
                category: Set(category),
                context: Set(context),
                prompt_text: Set(prompt_text),
                created_at: Set(now),
                updated_at: Set(now),
            };
            prompts::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(prompts::Column::Id)
                        .update_columns([
                            prompts::Column::Category,
                            prompts::Column::Context,
                            prompts::Column::PromptText,
                            prompts::Column::UpdatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
            prompts::Entity::find_by_id(id.clone())
                .one(txn)
                .await?
                .ok_or_else(|| ForgeError::not_found(ENTITY, id))
        })
    })
    .await
}
