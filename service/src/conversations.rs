//! Conversations and their turns, and the review workflow.
//!
//! A conversation is created with all its turns in one transaction; afterwards turns are
//! only appended. Invariants this module keeps:
//! - turns are numbered 1, 2, 3 … in order with no gaps, and `total_turns` /
//!   `total_tokens` always equal the count and token sum of the turns (set from the turns
//!   on create, moved by SQL increments in the same transaction on append);
//! - turns are added only while the conversation is editable (`draft`, `generated` or
//!   `needs_revision`); one submitted, approved, rejected or failed is frozen;
//! - the review states move only along `draft|generated|needs_revision → pending_review`
//!   (submit) and `pending_review → approved|rejected|needs_revision` (review), each by
//!   one conditional `UPDATE`, so two racing reviewers cannot both apply; every step
//!   appends a [`ReviewAction`] (who, what, when, why) to `review_history`;
//! - `failed` is the generator's verdict, from `draft`, `generated` or `needs_revision`
//!   ([`mark_failed`]); nothing leaves it.
//!
//! Who may do what: the owner (or the service for them) creates, reads, appends turns and
//! submits for review. Deciding a review (approve, reject, request a revision) is the
//! service's, acting for a reviewer profile it names: an owner never reviews their own
//! work. The owner edits the fields SCHEMA.md grants them ([`update`]) while the
//! conversation is `draft` or `needs_revision`, and deletes it ([`delete`]) in any state;
//! marking it failed and scoring it ([`score`]) are the service's. A user sees only their
//! own conversations and turns; another user's conversation is [`ForgeError::NotFound`].

use chrono::{DateTime, Utc};
use forge_entity::conversation_turns::{self, TurnRole};
use forge_entity::conversations::{
    self, Categories, ConversationStatus, ConversationTier, ReviewAction, ReviewActionKind,
    ReviewHistory,
};
use forge_entity::ids::{ConversationId, ProfileId, TurnId};
use forge_entity::profiles;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, Set, Statement,
};
use serde_json::Value as Json;

use crate::actor::{Access, Actor, Connection, owner_of_new, run_as};
use crate::batches::insert_chunked;
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::validate;

const MAX_HUMAN_ID: usize = 200;
const MAX_TITLE: usize = 500;
/// Longest persona, emotion, topic, intent, tone and category name.
const MAX_LABEL: usize = 200;
const MAX_CATEGORIES: usize = 50;
const MAX_TURNS: usize = 1_000;
const MAX_CONTENT: usize = 100_000;
const MAX_COMMENT: usize = 5_000;

/// The states in which turns may be added and from which a conversation may be submitted.
const EDITABLE: &[ConversationStatus] = &[
    ConversationStatus::Draft,
    ConversationStatus::Generated,
    ConversationStatus::NeedsRevision,
];
const UNDER_REVIEW: &[ConversationStatus] = &[ConversationStatus::PendingReview];
/// What a user may edit and submit: `generated` is the generator's (SCHEMA.md), so only
/// the service submits or extends a generated conversation.
const USER_EDITABLE: &[ConversationStatus] =
    &[ConversationStatus::Draft, ConversationStatus::NeedsRevision];

/// The states in which `actor` may add turns and submit.
fn editable_by(actor: Actor) -> &'static [ConversationStatus] {
    match actor {
        Actor::Service => EDITABLE,
        Actor::User(_) => USER_EDITABLE,
    }
}

/// One turn to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTurn {
    /// The turn's number, if the caller tracks it; it must then be the next one (1, 2, 3 …
    /// on create; `total_turns + 1` on append). `None`: numbered automatically.
    pub turn_number: Option<i32>,
    /// Who speaks.
    pub role: TurnRole,
    /// What is said; must not be blank.
    pub content: String,
    /// Tokens in `content` (≥ 0).
    pub token_count: i32,
}

impl NewTurn {
    /// A turn numbered automatically.
    pub fn new(role: TurnRole, content: impl Into<String>, token_count: i32) -> Self {
        Self {
            turn_number: None,
            role,
            content: content.into(),
            token_count,
        }
    }
}

/// A conversation to create, with all its turns.
#[derive(Clone, Debug, PartialEq)]
pub struct NewConversation {
    /// The owner (`None`: the acting user; the service must name one).
    pub owner: Option<ProfileId>,
    /// The unique human-facing id.
    pub conversation_id: String,
    /// An optional title.
    pub title: Option<String>,
    /// How it is generated.
    pub tier: ConversationTier,
    /// The persona of the user side.
    pub persona: String,
    /// The emotion conveyed.
    pub emotion: String,
    /// What it is about.
    pub topic: String,
    /// The user's intent.
    pub intent: String,
    /// The tone.
    pub tone: String,
    /// Category names (each trimmed, not blank).
    pub category: Vec<String>,
    /// Free-form generation parameters: a JSON object (`Json::Null` stores `{}`).
    pub parameters: Json,
    /// The turns, in order. With turns the conversation starts `generated`, without
    /// them `draft`.
    pub turns: Vec<NewTurn>,
}

/// Which conversations [`list`] returns; `None` fields do not filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConversationFilter {
    /// Only this review state.
    pub status: Option<ConversationStatus>,
    /// Only this tier.
    pub tier: Option<ConversationTier>,
}

impl ConversationFilter {
    /// A filter from a caller's strings (e.g. query parameters).
    ///
    /// # Errors
    /// [`ForgeError::Validation`] for a string that names no status or tier.
    pub fn parse(status: Option<&str>, tier: Option<&str>) -> Result<Self> {
        Ok(Self {
            status: status
                .map(|s| validate::parse_enum("status", s))
                .transpose()?,
            tier: tier.map(|s| validate::parse_enum("tier", s)).transpose()?,
        })
    }
}

/// A conversation with its turns in order.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ConversationWithTurns {
    /// The conversation.
    pub conversation: conversations::Model,
    /// Its turns, by `turn_number`.
    pub turns: Vec<conversation_turns::Model>,
}

/// The owner condition for `actor`: their own rows, or none for the service.
fn owned_by(actor: Actor) -> Condition {
    scoped::owner_is(actor, conversations::Column::CreatedBy)
}

/// Conversations visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<conversations::Entity> {
    scoped::owned_by(actor, conversations::Column::CreatedBy)
}

impl Scoped for conversations::Entity {
    const NAME: &'static str = "conversation";

    fn key() -> Self::Column {
        conversations::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

fn turn_content(content: &str) -> Result<()> {
    validate::no_nul("content", content)?;
    if content.trim().is_empty() {
        return Err(ForgeError::invalid("content", "must not be blank"));
    }
    let len = content.chars().count();
    if len > MAX_CONTENT {
        return Err(ForgeError::invalid(
            "content",
            format!("is {len} characters long, at most {MAX_CONTENT} allowed"),
        ));
    }
    Ok(())
}

/// Checks one turn; `expected` is its number when known before the transaction.
fn check_turn(turn: &NewTurn, expected: Option<i32>) -> Result<()> {
    turn_content(&turn.content)?;
    validate::in_range(
        "token_count",
        i64::from(turn.token_count),
        0,
        i64::from(i32::MAX),
    )?;
    match (turn.turn_number, expected) {
        (Some(n), Some(e)) if n != e => Err(ForgeError::invalid(
            "turn_number",
            format!("turn {n} given where turn {e} comes next: turns must be 1, 2, 3 … in order"),
        )),
        _ => Ok(()),
    }
}

fn turn_row(
    conversation: ConversationId,
    number: i32,
    turn: NewTurn,
    now: DateTime<Utc>,
) -> conversation_turns::Model {
    conversation_turns::Model {
        id: TurnId::new(),
        conversation_id: conversation,
        turn_number: number,
        role: turn.role,
        content: turn.content,
        token_count: turn.token_count,
        created_at: now,
    }
}

fn labels(new: &NewConversation) -> Result<[String; 5]> {
    Ok([
        validate::text("persona", &new.persona, MAX_LABEL)?,
        validate::text("emotion", &new.emotion, MAX_LABEL)?,
        validate::text("topic", &new.topic, MAX_LABEL)?,
        validate::text("intent", &new.intent, MAX_LABEL)?,
        validate::text("tone", &new.tone, MAX_LABEL)?,
    ])
}

fn categories(names: &[String]) -> Result<Categories> {
    if names.len() > MAX_CATEGORIES {
        return Err(ForgeError::invalid(
            "category",
            format!(
                "{} categories, at most {MAX_CATEGORIES} allowed",
                names.len()
            ),
        ));
    }
    names
        .iter()
        .map(|c| validate::text("category", c, MAX_LABEL))
        .collect()
}

/// Validates `new` into the conversation row and its turn rows.
fn prepare(
    actor: Actor,
    new: NewConversation,
) -> Result<(conversations::ActiveModel, Vec<conversation_turns::Model>)> {
    let owner = owner_of_new(actor, new.owner)?;
    let human_id = validate::text("conversation_id", &new.conversation_id, MAX_HUMAN_ID)?;
    let title = validate::optional_text("title", new.title.as_deref(), MAX_TITLE)?;
    let [persona, emotion, topic, intent, tone] = labels(&new)?;
    let category = categories(&new.category)?;
    let parameters = validate::json_object("parameters", new.parameters)?;
    if new.turns.len() > MAX_TURNS {
        return Err(ForgeError::invalid(
            "turns",
            format!("{} turns, at most {MAX_TURNS} allowed", new.turns.len()),
        ));
    }
    let id = ConversationId::new();
    let now = crate::now();
    let mut turns = Vec::with_capacity(new.turns.len());
    for (number, turn) in (1..).zip(new.turns) {
        check_turn(&turn, Some(number))?;
        turns.push(turn_row(id, number, turn, now));
    }
    let tokens: i64 = turns.iter().map(|t| i64::from(t.token_count)).sum();
    i32::try_from(tokens)
        .map_err(|_| ForgeError::invalid("token_count", "the turns' token sum is too large"))?;
    // `generated` is the generator's status: what a user writes stays a draft until it is
    // submitted (SCHEMA.md).
    let generated = actor == Actor::Service && !turns.is_empty();
    let mut row = conversations::ActiveModel {
        id: Set(id),
        conversation_id: Set(human_id),
        created_by: Set(owner),
        title: Set(title),
        status: Set(if generated {
            ConversationStatus::Generated
        } else {
            ConversationStatus::Draft
        }),
        tier: Set(new.tier),
        persona: Set(persona),
        emotion: Set(emotion),
        topic: Set(topic),
        intent: Set(intent),
        tone: Set(tone),
        category: Set(category),
        parameters: Set(parameters),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    // Only the generator's rows name `generated_at` (a user may not write it).
    if generated {
        row.generated_at = Set(Some(now));
    }
    Ok((row, turns))
}

/// Creates a conversation with all its turns in one transaction; totals are set from the
/// turns, which are numbered 1..n in the order given.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long field, a non-object `parameters`,
/// a blank turn, a negative token count or turn numbers out of order;
/// [`ForgeError::NotFound`] (`"profile"`) when a user creates for someone else;
/// [`ForgeError::Conflict`] when the `conversation_id` is taken (or the owner does not
/// exist). A refused call stores nothing.
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "create"))]
pub async fn create<C>(db: &C, actor: Actor, new: NewConversation) -> Result<ConversationWithTurns>
where
    C: Connection,
{
    let (row, turns) = prepare(actor, new)?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let id = row.insert(txn).await?.id;
            let active = turns
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model);
            insert_chunked(txn, active.collect()).await?;
            // Read back: the database counted the turns into the totals.
            let conversation = visible_row(txn, actor, id).await?;
            Ok(ConversationWithTurns {
                conversation,
                turns,
            })
        })
    })
    .await
}

fn by_id(actor: Actor, id: ConversationId) -> Select<conversations::Entity> {
    visible_to(actor).filter(conversations::Column::Id.eq(id))
}

async fn visible_row(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: ConversationId,
) -> Result<conversations::Model> {
    by_id(actor, id)
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found("conversation", id))
}

/// The conversation `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "find", id = %id))]
pub async fn find<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
) -> Result<Option<conversations::Model>>
where
    C: Connection,
{
    scoped::find::<conversations::Entity, C>(db, actor, id).await
}

/// The conversation `id` (without turns).
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: ConversationId) -> Result<conversations::Model>
where
    C: Connection,
{
    scoped::get::<conversations::Entity, C, _>(db, actor, id).await
}

/// The conversation `id` with its turns in order, in two queries (the conversation, then
/// all its turns).
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "get_with_turns", id = %id))]
pub async fn get_with_turns<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
) -> Result<ConversationWithTurns>
where
    C: Connection,
{
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            let conversation = visible_row(txn, actor, id).await?;
            let turns = conversation_turns::Entity::find()
                .filter(conversation_turns::Column::ConversationId.eq(id))
                .order_by_asc(conversation_turns::Column::TurnNumber)
                .all(txn)
                .await?;
            Ok(ConversationWithTurns {
                conversation,
                turns,
            })
        })
    })
    .await
}

/// Explains why a guarded update of a visible conversation changed nothing.
async fn refusal(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: ConversationId,
    to: ConversationStatus,
) -> ForgeError {
    match visible_row(txn, actor, id).await {
        Ok(current) => ForgeError::InvalidTransition {
            entity: "conversation",
            from: current.status.to_string(),
            to: to.to_string(),
        },
        Err(err) => err,
    }
}

/// Appends a turn to conversation `id` as the next `turn_number`; the database moves
/// `total_turns` and `total_tokens` in the same transaction. The conversation row is
/// locked first, so concurrent appends are numbered one after the other.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank turn, a negative token count or a
/// `turn_number` that is not the next one; [`ForgeError::NotFound`] when the conversation
/// is not `actor`'s; [`ForgeError::Conflict`] when it is not editable (`draft`,
/// `generated` or `needs_revision`).
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "append_turn", id = %id))]
pub async fn append_turn<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
    turn: NewTurn,
) -> Result<conversation_turns::Model>
where
    C: Connection,
{
    check_turn(&turn, None)?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let now = crate::now();
            // Locking the conversation numbers concurrent appends one after the other.
            let current = by_id(actor, id)
                .lock_exclusive()
                .one(txn)
                .await?
                .ok_or_else(|| ForgeError::not_found("conversation", id))?;
            if !editable_by(actor).contains(&current.status) {
                return Err(ForgeError::InvalidTransition {
                    entity: "conversation",
                    from: current.status.to_string(),
                    to: "a new turn".to_owned(),
                });
            }
            let number = current.total_turns + 1;
            check_turn(&turn, Some(number))?;
            if current.total_tokens.checked_add(turn.token_count).is_none() {
                return Err(ForgeError::invalid(
                    "token_count",
                    "the conversation's token total would overflow",
                ));
            }
            // The database moves total_turns and total_tokens (a trigger on the turns).
            let row = turn_row(id, number, turn, now);
            row.clone().into_active_model().insert(txn).await?;
            Ok(row)
        })
    })
    .await
}

/// `actor`'s conversations, newest first, filtered by status and tier.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE`.
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "list"))]
pub async fn list<C>(
    db: &C,
    actor: Actor,
    filter: ConversationFilter,
    page: &PageRequest,
) -> Result<Page<conversations::Model>>
where
    C: Connection,
{
    let mut select = visible_to(actor);
    if let Some(status) = filter.status {
        select = select.filter(conversations::Column::Status.eq(status));
    }
    if let Some(tier) = filter.tier {
        select = select.filter(conversations::Column::Tier.eq(tier));
    }
    conversation_page(db, actor, select, Direction::NewestFirst, page).await
}

/// The review queue: conversations in `pending_review`, oldest first (for a user, their
/// own waiting conversations; for the service, everyone's).
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE`.
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "review_queue"))]
pub async fn review_queue<C>(
    db: &C,
    actor: Actor,
    page: &PageRequest,
) -> Result<Page<conversations::Model>>
where
    C: Connection,
{
    let select = visible_to(actor)
        .filter(conversations::Column::Status.eq(ConversationStatus::PendingReview));
    conversation_page(db, actor, select, Direction::OldestFirst, page).await
}

async fn conversation_page<C>(
    db: &C,
    actor: Actor,
    select: Select<conversations::Entity>,
    direction: Direction,
    page: &PageRequest,
) -> Result<Page<conversations::Model>>
where
    C: Connection,
{
    let columns = (conversations::Column::CreatedAt, conversations::Column::Id);
    pagination::fetch_page(db, actor, select, columns, direction, page, |c| {
        (c.created_at, c.id)
    })
    .await
}

/// One step of the review workflow.
struct ReviewStep {
    action: ReviewActionKind,
    from: &'static [ConversationStatus],
    to: ConversationStatus,
    /// The reviewer named by the service; `None` for a submission (recorded as the
    /// acting user, or as the owner when the service submits for them).
    reviewer: Option<ProfileId>,
    comment: Option<String>,
}

/// `review_history` with `action` appended, computed by the database.
fn append_to_history(backend: DbBackend, action: &ReviewAction) -> Result<Expr> {
    let entry = serde_json::to_value(action).map_err(|e| DbErr::Json(e.to_string()))?;
    Ok(match backend {
        DbBackend::Postgres => {
            Expr::cust_with_values(r#""review_history" || $1"#, [Json::Array(vec![entry])])
        }
        _ => Expr::cust_with_values(
            r#"json_insert("review_history", '$[#]', json(?))"#,
            [entry.to_string()],
        ),
    })
}

/// Bytes an entry of `review_history` may take beyond what its Rust form prints as: the
/// database writes a user's submission itself, with `at` as `…+00:00` instead of `…Z`.
const HISTORY_ENTRY_SLACK: usize = 8;

/// Refuses `action` when `review_history` would outgrow the cap of a JSON column with it
/// ([`forge_entity::JSON_MAX_BYTES`]), before anything is written: as a `comment` when
/// it has one, else as `review_history` (the conversation's history is full).
fn history_has_room(history: ReviewHistory, action: &ReviewAction) -> Result<()> {
    let field = if action.comment.is_some() {
        "comment"
    } else {
        "review_history"
    };
    let mut entries = history.0;
    entries.push(action.clone());
    let slack = HISTORY_ENTRY_SLACK * entries.len();
    let grown = serde_json::to_value(&entries).map_err(|e| DbErr::Json(e.to_string()))?;
    if validate::json_size(&grown) + slack > forge_entity::JSON_MAX_BYTES {
        return Err(ForgeError::invalid(
            field,
            format!(
                "the conversation's review_history would grow past {} bytes",
                forge_entity::JSON_MAX_BYTES
            ),
        ));
    }
    Ok(())
}

async fn require_profile(txn: &DatabaseTransaction, id: ProfileId) -> Result<()> {
    let found = profiles::Entity::find_by_id(id).count(txn).await?;
    if found == 0 {
        return Err(ForgeError::not_found("profile", id));
    }
    Ok(())
}

/// Applies `step` to conversation `id` with one conditional `UPDATE` (status in
/// `step.from`), appending the review action in SQL.
async fn review<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
    step: ReviewStep,
) -> Result<conversations::Model>
where
    C: Connection,
{
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            use conversations::Column as Col;
            let current = visible_row(txn, actor, id).await?;
            let performed_by = match step.reviewer {
                Some(reviewer) => {
                    require_profile(txn, reviewer).await?;
                    reviewer
                }
                None => actor.user_id().unwrap_or(current.created_by),
            };
            let now = crate::now();
            let action = ReviewAction {
                action: step.action,
                performed_by,
                at: now,
                comment: step.comment,
            };
            history_has_room(current.review_history, &action)?;
            let mut update = conversations::Entity::update_many()
                .col_expr(Col::Status, Expr::val(step.to.as_str()))
                .col_expr(Col::UpdatedAt, Expr::val(now));
            let backend = txn.get_database_backend();
            if backend == DbBackend::Postgres && actor != Actor::Service {
                // A user may not write review_history on PostgreSQL: the database
                // records their submission itself, with this comment.
                txn.execute_raw(Statement::from_sql_and_values(
                    backend,
                    "SELECT set_config('forge.review_comment', $1, true)",
                    [action.comment.clone().unwrap_or_default().into()],
                ))
                .await?;
            } else {
                update = update.col_expr(Col::ReviewHistory, append_to_history(backend, &action)?);
            }
            if step.to == ConversationStatus::Approved {
                update = update
                    .col_expr(Col::ApprovedAt, Expr::val(now))
                    .col_expr(Col::ApprovedBy, Expr::val(performed_by));
            }
            let applied = update
                .filter(Col::Id.eq(id))
                .filter(owned_by(actor))
                .filter(Col::Status.is_in(step.from.iter().copied()))
                .exec(txn)
                .await?;
            if applied.rows_affected == 0 {
                return Err(refusal(txn, actor, id, step.to).await);
            }
            visible_row(txn, actor, id).await
        })
    })
    .await
}

/// A reviewer's decision on a conversation under review (service only).
async fn decide<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
    reviewer: ProfileId,
    decision: (ReviewActionKind, ConversationStatus),
    comment: Option<String>,
) -> Result<conversations::Model>
where
    C: Connection,
{
    actor.require_service("reviewing a conversation")?;
    let (action, to) = decision;
    let step = ReviewStep {
        action,
        from: UNDER_REVIEW,
        to,
        reviewer: Some(reviewer),
        comment,
    };
    review(db, actor, id, step).await
}

/// A reason that must be given (rejection, revision request).
fn reason(reason: &str) -> Result<Option<String>> {
    validate::text("comment", reason, MAX_COMMENT).map(Some)
}

/// Submits conversation `id` for review (`draft|generated|needs_revision →
/// pending_review`), by its owner or by the service on the owner's behalf (recorded as
/// the owner).
///
/// # Errors
/// [`ForgeError::NotFound`] when it is not `actor`'s, [`ForgeError::InvalidTransition`]
/// from any other state, [`ForgeError::Validation`] for an over-long or blank comment,
/// or when `review_history` has no room left for this step (`comment`, or
/// `review_history` without one: it is kept under 64 KiB).
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "submit_for_review", id = %id))]
pub async fn submit_for_review<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
    comment: Option<&str>,
) -> Result<conversations::Model>
where
    C: Connection,
{
    let step = ReviewStep {
        action: ReviewActionKind::Submitted,
        from: editable_by(actor),
        to: ConversationStatus::PendingReview,
        reviewer: None,
        comment: validate::optional_text("comment", comment, MAX_COMMENT)?,
    };
    review(db, actor, id, step).await
}

/// Approves conversation `id` (`pending_review → approved`) for `reviewer`, setting
/// `approved_at` and `approved_by` (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::NotFound`] for an unknown
/// conversation or reviewer profile, [`ForgeError::InvalidTransition`] unless it is
/// pending review, [`ForgeError::Validation`] for an over-long or blank comment, or when
/// `review_history` has no room left for this step (as for [`submit_for_review`]).
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "approve", id = %id))]
pub async fn approve<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
    reviewer: ProfileId,
    comment: Option<&str>,
) -> Result<conversations::Model>
where
    C: Connection,
{
    let comment = validate::optional_text("comment", comment, MAX_COMMENT)?;
    let decision = (ReviewActionKind::Approved, ConversationStatus::Approved);
    decide(db, actor, id, reviewer, decision, comment).await
}

/// Rejects conversation `id` (`pending_review → rejected`) for `reviewer`, who must say
/// why (service only).
///
/// # Errors
/// As [`approve`]; a blank `why` is a [`ForgeError::Validation`].
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "reject", id = %id))]
pub async fn reject<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
    reviewer: ProfileId,
    why: &str,
) -> Result<conversations::Model>
where
    C: Connection,
{
    let decision = (ReviewActionKind::Rejected, ConversationStatus::Rejected);
    decide(db, actor, id, reviewer, decision, reason(why)?).await
}

/// Sends conversation `id` back for changes (`pending_review → needs_revision`) for
/// `reviewer`, who must say what to change (service only).
///
/// # Errors
/// As [`approve`]; a blank `why` is a [`ForgeError::Validation`].
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "request_revision", id = %id))]
pub async fn request_revision<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
    reviewer: ProfileId,
    why: &str,
) -> Result<conversations::Model>
where
    C: Connection,
{
    let decision = (
        ReviewActionKind::RevisionRequested,
        ConversationStatus::NeedsRevision,
    );
    decide(db, actor, id, reviewer, decision, reason(why)?).await
}

// ---------------------------------------------------------------------------------------
// Editing, failing, scoring and deleting
// ---------------------------------------------------------------------------------------

/// The states the service may mark a conversation `failed` from: those its generator works
/// in (writing it, or rewriting it after a reviewer asked for a revision). Once submitted,
/// reviewed or failed, its generation is over.
const FAILABLE: &[ConversationStatus] = EDITABLE;

/// The highest `quality_score` (SCHEMA.md: between 0 and 10).
pub const MAX_QUALITY_SCORE: f64 = 10.0;

/// A change to the fields of a conversation its owner may edit ([`update`]): exactly the
/// columns SCHEMA.md grants a user `UPDATE` on, besides `status`. `None` leaves a field as
/// it is; `title: Some(None)` removes the title. Values are checked as on [`create`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConversationChanges {
    /// A new title, or `Some(None)` to remove it.
    pub title: Option<Option<String>>,
    /// A new persona of the user side.
    pub persona: Option<String>,
    /// A new emotion.
    pub emotion: Option<String>,
    /// A new topic.
    pub topic: Option<String>,
    /// A new intent.
    pub intent: Option<String>,
    /// A new tone.
    pub tone: Option<String>,
    /// New category names (each trimmed, not blank), replacing the old ones.
    pub category: Option<Vec<String>>,
    /// New generation parameters, replacing the old ones: a JSON object (`Json::Null`
    /// stores `{}`).
    pub parameters: Option<Json>,
}

impl ConversationChanges {
    /// Whether these changes change nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The checked columns to set; nothing else is set.
    fn into_columns(self) -> Result<conversations::ActiveModel> {
        use sea_orm::ActiveValue::NotSet;
        let label = |field: &'static str, value: Option<String>| match value {
            Some(value) => validate::text(field, &value, MAX_LABEL).map(Set),
            None => Ok(NotSet),
        };
        let mut row = conversations::ActiveModel {
            persona: label("persona", self.persona)?,
            emotion: label("emotion", self.emotion)?,
            topic: label("topic", self.topic)?,
            intent: label("intent", self.intent)?,
            tone: label("tone", self.tone)?,
            ..Default::default()
        };
        if let Some(title) = self.title {
            let title = validate::optional_text("title", title.as_deref(), MAX_TITLE)?;
            row.title = Set(title);
        }
        if let Some(names) = self.category {
            row.category = Set(categories(&names)?);
        }
        if let Some(parameters) = self.parameters {
            row.parameters = Set(validate::json_object("parameters", parameters)?);
        }
        Ok(row)
    }
}

/// Runs `update` with `RETURNING *` for `actor` as one statement: the changed row, or
/// `None` when its filters matched nothing.
async fn update_returning<C>(
    db: &C,
    actor: Actor,
    mut update: sea_orm::UpdateMany<conversations::Entity>,
) -> Result<Option<conversations::Model>>
where
    C: Connection,
{
    use sea_orm::{FromQueryResult, QueryTrait};
    QueryTrait::query(&mut update).returning_all();
    let stmt = update.build(db.get_database_backend());
    let rows = scoped::rows(db, actor, Access::Write, stmt).await?;
    match rows.first() {
        Some(row) => Ok(Some(conversations::Model::from_query_result(row, "")?)),
        None => Ok(None),
    }
}

/// Why a conditional write of conversation `id` matched nothing: it is not `actor`'s, or
/// its state does not allow `to` (read once more, off the path of a write that applies).
async fn unchanged_because<C>(db: &C, actor: Actor, id: ConversationId, to: &str) -> ForgeError
where
    C: Connection,
{
    match find(db, actor, id).await {
        Ok(Some(current)) => ForgeError::InvalidTransition {
            entity: "conversation",
            from: current.status.to_string(),
            to: to.to_owned(),
        },
        Ok(None) => ForgeError::not_found("conversation", id),
        Err(err) => err,
    }
}

/// Changes the editable fields of conversation `id` ([`ConversationChanges`]) with one
/// conditional `UPDATE … RETURNING`; a refused call reads the conversation once more to
/// say why. Empty changes write nothing and return the conversation as it is.
///
/// Its owner edits it only while it is `draft` or `needs_revision` (SCHEMA.md; on
/// PostgreSQL the database refuses a user's edit in any other state too); the service
/// edits any conversation in any state. Turns, status, totals and the review columns are
/// not edited here.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long value, a bad category list or a
/// non-object `parameters` (nothing is written); [`ForgeError::NotFound`] when it does not
/// exist or is not `actor`'s; [`ForgeError::InvalidTransition`] (to `"edited"`, the
/// database's word for it) when a user's conversation is in any other state.
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "update", id = %id))]
pub async fn update<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
    changes: ConversationChanges,
) -> Result<conversations::Model>
where
    C: Connection,
{
    use conversations::Column as Col;
    if changes.is_empty() {
        return get(db, actor, id).await;
    }
    let mut row = changes.into_columns()?;
    row.updated_at = Set(crate::now());
    let mut update = conversations::Entity::update_many()
        .set(row)
        .filter(Col::Id.eq(id))
        .filter(owned_by(actor));
    if actor != Actor::Service {
        update = update.filter(Col::Status.is_in(USER_EDITABLE.iter().copied()));
    }
    match update_returning(db, actor, update).await? {
        Some(updated) => Ok(updated),
        None => Err(unchanged_because(db, actor, id, "edited").await),
    }
}

/// Marks conversation `id` `failed`: its generation failed (service only). Allowed from
/// `draft`, `generated` and `needs_revision`, the states its generator works in; nothing
/// leaves `failed` (delete the conversation, or generate a new one). One conditional
/// `UPDATE … RETURNING`.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::NotFound`] for an unknown
/// conversation; [`ForgeError::InvalidTransition`] (to `"failed"`) once it is
/// `pending_review`, `approved`, `rejected` or already `failed`.
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "mark_failed", id = %id))]
pub async fn mark_failed<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
) -> Result<conversations::Model>
where
    C: Connection,
{
    use conversations::Column as Col;
    actor.require_service("marking a conversation failed")?;
    let to = ConversationStatus::Failed;
    let update = conversations::Entity::update_many()
        .col_expr(Col::Status, Expr::val(to.as_str()))
        .col_expr(Col::UpdatedAt, Expr::val(crate::now()))
        .filter(Col::Id.eq(id))
        .filter(Col::Status.is_in(FAILABLE.iter().copied()));
    match update_returning(db, actor, update).await? {
        Some(failed) => Ok(failed),
        None => Err(unchanged_because(db, actor, id, to.as_str()).await),
    }
}

/// Checks a quality check's result: the score in `0..=`[`MAX_QUALITY_SCORE`], every
/// metric a finite number, the whole document storable.
fn checked_quality(
    score: f64,
    metrics: conversations::QualityMetrics,
) -> Result<(f64, conversations::QualityMetrics)> {
    if !(0.0..=MAX_QUALITY_SCORE).contains(&score) {
        return Err(ForgeError::invalid(
            "quality_score",
            format!("{score} is outside 0..={MAX_QUALITY_SCORE}"),
        ));
    }
    let named = [
        ("overall", metrics.overall),
        ("relevance", metrics.relevance),
        ("accuracy", metrics.accuracy),
        ("naturalness", metrics.naturalness),
        ("coherence", metrics.coherence),
        ("confidence", metrics.confidence),
    ];
    // JSON has no NaN or infinity: serde_json would store `null`, which reads back as
    // an error.
    if let Some((name, _)) = named.iter().find(|(_, value)| !value.is_finite()) {
        return Err(ForgeError::invalid(
            "quality_metrics",
            format!("{name} must be a finite number"),
        ));
    }
    let document = serde_json::to_value(&metrics)
        .map_err(|e| ForgeError::invalid("quality_metrics", e.to_string()))?;
    validate::json_document("quality_metrics", document)?;
    Ok((score, metrics))
}

/// Records the quality check of conversation `id` (service only): sets `quality_score`
/// (`0..=`[`MAX_QUALITY_SCORE`]) and `quality_metrics`, replacing what was there, in any
/// state (a conversation may be scored again by a newer checker at any time). One
/// `UPDATE … RETURNING`.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] (`quality_score`)
/// for a score outside `0..=10` or NaN, (`quality_metrics`) for a metric that is not a
/// finite number or `extra` keys with a NUL character, nested too deeply or over 64 KiB
/// (nothing is written); [`ForgeError::NotFound`] for an unknown conversation.
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "score", id = %id))]
pub async fn score<C>(
    db: &C,
    actor: Actor,
    id: ConversationId,
    quality_score: f64,
    quality_metrics: conversations::QualityMetrics,
) -> Result<conversations::Model>
where
    C: Connection,
{
    actor.require_service("scoring a conversation")?;
    let (quality_score, quality_metrics) = checked_quality(quality_score, quality_metrics)?;
    let row = conversations::ActiveModel {
        quality_score: Set(Some(quality_score)),
        quality_metrics: Set(Some(quality_metrics)),
        updated_at: Set(crate::now()),
        ..Default::default()
    };
    let update = conversations::Entity::update_many()
        .set(row)
        .filter(conversations::Column::Id.eq(id));
    update_returning(db, actor, update)
        .await?
        .ok_or_else(|| ForgeError::not_found("conversation", id))
}

/// Deletes conversation `id` (its owner their own, the service any) in any state:
/// SCHEMA.md grants its owner `DELETE` without conditions. One `DELETE … RETURNING`.
///
/// Its turns go with it (ON DELETE CASCADE). The batch items, scenarios and generation
/// logs that name it stay, with `conversation_id` cleared (ON DELETE SET NULL): an item
/// that produced it stays `completed` and its batch's counters do not move.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = "conversation", op = "delete", id = %id))]
pub async fn delete<C>(db: &C, actor: Actor, id: ConversationId) -> Result<()>
where
    C: Connection,
{
    use conversations::Column as Col;
    use sea_orm::QueryTrait;
    let mut delete = conversations::Entity::delete_many()
        .filter(Col::Id.eq(id))
        .filter(owned_by(actor));
    QueryTrait::query(&mut delete).returning_col(Col::Id);
    let stmt = delete.build(db.get_database_backend());
    let deleted = scoped::rows(db, actor, Access::Write, stmt).await?;
    if deleted.is_empty() {
        return Err(ForgeError::not_found("conversation", id));
    }
    Ok(())
}
