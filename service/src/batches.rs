//! Batches of conversations to generate, and their items.
//!
//! A batch is created with all its items in one transaction: the items go in as chunked
//! multi-row inserts, each chunk sized under the backend's bind-parameter limit, so
//! thousands of items take a handful of statements. Items are numbered by `position`
//! 1, 2, 3 … in the order given.
//!
//! States: `pause` takes a `queued` or `processing` batch to `paused`; `resume` takes it
//! back to `queued` (its next claim moves it to `processing` again, `started_at` kept);
//! `cancel` takes a `queued`, `processing` or `paused` batch to `cancelled`. Each change is
//! one conditional `UPDATE`, so racing calls cannot both apply. Processing items
//! (claiming, finishing) belongs to the job queue, not here.
//!
//! The database keeps the counters (forge-migration's database wall, on both backends):
//! a batch is inserted with all counters at zero, and triggers on its items move
//! `total_items`, `completed_items`, `successful_items` and `failed_items` with every
//! item inserted, finished or deleted, so they always equal what the items say; on
//! PostgreSQL nothing else may write them. A cancelled batch gets its `completed_at` and
//! its still-queued items become `failed` (error `"batch cancelled"`) by the database
//! too, in the same statement; items already being processed are left to their worker.
//!
//! A batch is deleted with its items ([`delete`]) in any state but `processing` (pause or
//! cancel it first). Its `estimated_time_remaining` is the workers' (service only,
//! [`set_estimated_time_remaining`]).
//!
//! A user sees and changes only their own batches and, through them, their items;
//! another user's batch is [`ForgeError::NotFound`].

use chrono::{DateTime, Utc};
use forge_entity::batch_items::{self, ItemStatus};
use forge_entity::batch_jobs::{self, BatchConfiguration, BatchPriority, BatchStatus};
use forge_entity::conversations::ConversationTier;
use forge_entity::ids::{BatchId, BatchItemId, ProfileId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait, Iterable, QueryFilter, QueryOrder, QuerySelect, Select, Set,
};
use serde_json::Value as Json;

use crate::actor::{Access, Actor, Connection, owner_of_new, run_as};
use crate::error::{ForgeError, Result};
use crate::pagination::{Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::validate;

const MAX_NAME: usize = 200;
const MAX_TOPIC: usize = 500;
/// The most items one batch may hold.
pub const MAX_ITEMS: usize = 100_000;
/// The most items a batch may generate at once.
pub const MAX_CONCURRENCY: u32 = 100;

/// Bind parameters one statement may carry. SQLite's limit is 32 766 in builds since
/// 3.32 (999 before); PostgreSQL's is 65 535. Both budgets stay well under.
const SQLITE_BIND_BUDGET: usize = 16_000;
const POSTGRES_BIND_BUDGET: usize = 60_000;

/// The states a batch may be paused from, resumed from and cancelled from.
const PAUSABLE: &[BatchStatus] = &[BatchStatus::Queued, BatchStatus::Processing];
const RESUMABLE: &[BatchStatus] = &[BatchStatus::Paused];
const CANCELLABLE: &[BatchStatus] = &[
    BatchStatus::Queued,
    BatchStatus::Processing,
    BatchStatus::Paused,
];

/// The error stored on items failed by a cancellation.
pub const CANCELLED_ITEM_ERROR: &str = "batch cancelled";

/// One item to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct NewBatchItem {
    /// What the conversation is about; must not be blank.
    pub topic: String,
    /// Its tier (`None`: the batch configuration's tier).
    pub tier: Option<ConversationTier>,
    /// Item parameters: a JSON object (`Json::Null` stores `{}`).
    pub parameters: Json,
}

impl NewBatchItem {
    /// An item on `topic` with the batch's tier and no parameters.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            tier: None,
            parameters: Json::Null,
        }
    }
}

/// A batch to create, with all its items.
#[derive(Clone, Debug, PartialEq)]
pub struct NewBatch {
    /// The owner (`None`: the acting user; the service must name one).
    pub owner: Option<ProfileId>,
    /// Display name; must not be blank.
    pub name: String,
    /// How urgent it is.
    pub priority: BatchPriority,
    /// How its items are generated (`concurrent_processing` in
    /// `1..=`[`MAX_CONCURRENCY`], `shared_parameters` a JSON object).
    pub configuration: BatchConfiguration,
    /// The items, in order (at least one, at most [`MAX_ITEMS`]).
    pub items: Vec<NewBatchItem>,
}

impl NewBatch {
    /// A normal-priority batch of the acting user's.
    pub fn new(
        name: impl Into<String>,
        configuration: BatchConfiguration,
        items: Vec<NewBatchItem>,
    ) -> Self {
        Self {
            owner: None,
            name: name.into(),
            priority: BatchPriority::default(),
            configuration,
            items,
        }
    }
}

/// Which items [`list_items`] returns: by position, after `after_position`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemPageRequest {
    /// Start after this position (`None`: from the first item). Pass back
    /// [`ItemPage::next_position`].
    pub after_position: Option<i32>,
    /// Items per page (`None`: `DEFAULT_PAGE_SIZE`; at most `MAX_PAGE_SIZE`).
    pub limit: Option<u64>,
    /// Only items in this state.
    pub status: Option<ItemStatus>,
}

/// One page of a batch's items.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ItemPage {
    /// The items, by position.
    pub items: Vec<batch_items::Model>,
    /// Where the next page starts (`after_position`), `None` on the last page.
    pub next_position: Option<i32>,
}

fn owned_by(actor: Actor) -> Condition {
    scoped::owner_is(actor, batch_jobs::Column::CreatedBy)
}

/// Batches visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<batch_jobs::Entity> {
    scoped::owned_by(actor, batch_jobs::Column::CreatedBy)
}

impl Scoped for batch_jobs::Entity {
    const NAME: &'static str = "batch";

    fn key() -> Self::Column {
        batch_jobs::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

fn bind_budget(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Postgres => POSTGRES_BIND_BUDGET,
        _ => SQLITE_BIND_BUDGET,
    }
}

/// Inserts `rows` with multi-row `INSERT`s, as many rows per statement as the backend's
/// bind-parameter budget allows for the columns the rows set. Every row must set the
/// same columns; `ActiveModelBehavior` does not run, so ids and timestamps must be set.
pub(crate) async fn insert_chunked<A>(txn: &DatabaseTransaction, rows: Vec<A>) -> Result<u64>
where
    A: ActiveModelTrait + Send,
{
    let Some(first) = rows.first() else {
        return Ok(0);
    };
    let columns = <A::Entity as EntityTrait>::Column::iter()
        .filter(|c| first.get(*c).is_set())
        .count()
        .max(1);
    let per_statement = (bind_budget(txn.get_database_backend()) / columns).max(1);
    let mut inserted = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(per_statement).collect();
        inserted += A::Entity::insert_many(chunk)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(inserted)
}

fn check_configuration(mut config: BatchConfiguration) -> Result<BatchConfiguration> {
    validate::in_range(
        "concurrent_processing",
        i64::from(config.concurrent_processing),
        1,
        i64::from(MAX_CONCURRENCY),
    )?;
    config.shared_parameters =
        validate::json_object("shared_parameters", config.shared_parameters)?;
    // The whole configuration is one JSON column under the cap: `shared_parameters` is
    // the only part of it whose size the caller chooses.
    let stored = serde_json::to_value(&config)
        .map_err(|e| ForgeError::invalid("configuration", e.to_string()))?;
    validate::json_fits("shared_parameters", &stored)?;
    Ok(config)
}

/// Validates the items into rows of batch `batch`, positions 1..n.
fn item_rows(
    batch: BatchId,
    default_tier: ConversationTier,
    items: Vec<NewBatchItem>,
    now: DateTime<Utc>,
) -> Result<Vec<batch_items::ActiveModel>> {
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(ForgeError::invalid(
            "items",
            format!("{} items, 1..={MAX_ITEMS} allowed", items.len()),
        ));
    }
    (1..)
        .zip(items)
        .map(|(position, item)| {
            Ok(batch_items::ActiveModel {
                id: Set(BatchItemId::new()),
                batch_job_id: Set(batch),
                position: Set(position),
                topic: Set(validate::text("topic", &item.topic, MAX_TOPIC)?),
                tier: Set(item.tier.unwrap_or(default_tier)),
                parameters: Set(validate::json_object("parameters", item.parameters)?),
                status: Set(ItemStatus::Queued),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            })
        })
        .collect()
}

/// Creates a batch with all its items in one transaction (chunked multi-row inserts);
/// `total_items` is the number of items, positions run 1..n in the order given.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank name, a configuration out of bounds, no items
/// or too many, or any invalid item (blank topic, non-object parameters);
/// [`ForgeError::NotFound`] (`"profile"`) when a user creates for someone else. A refused call
/// stores nothing.
#[tracing::instrument(skip_all, fields(entity = "batch", op = "create", items = new.items.len()))]
pub async fn create<C>(db: &C, actor: Actor, new: NewBatch) -> Result<batch_jobs::Model>
where
    C: Connection,
{
    let owner = owner_of_new(actor, new.owner)?;
    let name = validate::text("name", &new.name, MAX_NAME)?;
    let configuration = check_configuration(new.configuration)?;
    let id = BatchId::new();
    let stamp = crate::now();
    let items = item_rows(id, configuration.tier, new.items, stamp)?;
    let row = batch_jobs::ActiveModel {
        id: Set(id),
        created_by: Set(owner),
        name: Set(name),
        priority: Set(new.priority),
        configuration: Set(configuration),
        created_at: Set(stamp),
        updated_at: Set(stamp),
        ..Default::default()
    };
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            row.insert(txn).await?;
            insert_chunked(txn, items).await?;
            // Read back: the database counted the items into `total_items`.
            batch_jobs::Entity::find_by_id(id)
                .one(txn)
                .await?
                .ok_or_else(|| ForgeError::not_found("batch", id))
        })
    })
    .await
}

fn by_id(actor: Actor, id: BatchId) -> Select<batch_jobs::Entity> {
    visible_to(actor).filter(batch_jobs::Column::Id.eq(id))
}

async fn visible_row(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: BatchId,
) -> Result<batch_jobs::Model> {
    by_id(actor, id)
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found("batch", id))
}

/// The batch `id` with its counters, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = "batch", op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: BatchId) -> Result<Option<batch_jobs::Model>>
where
    C: Connection,
{
    scoped::find::<batch_jobs::Entity, C>(db, actor, id).await
}

/// The batch `id` with its counters.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: BatchId) -> Result<batch_jobs::Model>
where
    C: Connection,
{
    scoped::get::<batch_jobs::Entity, C, _>(db, actor, id).await
}

/// `actor`'s batches, newest first.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE`.
#[tracing::instrument(skip_all, fields(entity = "batch", op = "list"))]
pub async fn list<C>(db: &C, actor: Actor, page: &PageRequest) -> Result<Page<batch_jobs::Model>>
where
    C: Connection,
{
    let columns = (batch_jobs::Column::CreatedAt, batch_jobs::Column::Id);
    crate::pagination::fetch_page(
        db,
        actor,
        visible_to(actor),
        columns,
        Direction::NewestFirst,
        page,
        |b| (b.created_at, b.id),
    )
    .await
}

/// The items of batch `batch_id` by position, one page after `request.after_position`.
///
/// # Errors
/// [`ForgeError::NotFound`] when the batch is not `actor`'s, [`ForgeError::Validation`]
/// for a page size outside `1..=MAX_PAGE_SIZE`.
#[tracing::instrument(skip_all, fields(entity = "batch", op = "list_items", id = %batch_id))]
pub async fn list_items<C>(
    db: &C,
    actor: Actor,
    batch_id: BatchId,
    request: ItemPageRequest,
) -> Result<ItemPage>
where
    C: Connection,
{
    use batch_items::Column as Col;
    let size = PageRequest {
        after: None,
        limit: request.limit,
    }
    .page_size()?;
    let mut select = batch_items::Entity::find()
        .filter(Col::BatchJobId.eq(batch_id))
        .order_by_asc(Col::Position)
        .limit(size + 1);
    if let Some(after) = request.after_position {
        select = select.filter(Col::Position.gt(after));
    }
    if let Some(status) = request.status {
        select = select.filter(Col::Status.eq(status));
    }
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            visible_row(txn, actor, batch_id).await?;
            let mut items = select.all(txn).await?;
            let more = items.len() as u64 > size;
            items.truncate(size as usize);
            let next_position = if more {
                items.last().map(|i| i.position)
            } else {
                None
            };
            Ok(ItemPage {
                items,
                next_position,
            })
        })
    })
    .await
}

/// A state change of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Pause,
    Resume,
    Cancel,
}

impl Change {
    fn from(self) -> &'static [BatchStatus] {
        match self {
            Self::Pause => PAUSABLE,
            Self::Resume => RESUMABLE,
            Self::Cancel => CANCELLABLE,
        }
    }

    /// The new status. A resumed batch is `queued` again (SCHEMA.md: users resume
    /// `paused → queued`); its next claim moves it back to `processing`, `started_at`
    /// kept.
    fn status(self) -> BatchStatus {
        match self {
            Self::Pause => BatchStatus::Paused,
            Self::Cancel => BatchStatus::Cancelled,
            Self::Resume => BatchStatus::Queued,
        }
    }
}

/// Applies `change` to batch `id` with one conditional `UPDATE`.
async fn apply<C>(db: &C, actor: Actor, id: BatchId, change: Change) -> Result<batch_jobs::Model>
where
    C: Connection,
{
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            use batch_jobs::Column as Col;
            let now = crate::now();
            // On cancel the database sets `completed_at` and fails the queued items (the
            // counters follow through the items' trigger).
            let applied = batch_jobs::Entity::update_many()
                .col_expr(Col::Status, Expr::val(change.status().as_str()))
                .col_expr(Col::UpdatedAt, Expr::val(now))
                .filter(Col::Id.eq(id))
                .filter(owned_by(actor))
                .filter(Col::Status.is_in(change.from().iter().copied()))
                .exec(txn)
                .await?;
            let current = visible_row(txn, actor, id).await?;
            if applied.rows_affected == 0 {
                return Err(ForgeError::InvalidTransition {
                    entity: "batch",
                    from: current.status.to_string(),
                    to: change.status().to_string(),
                });
            }
            Ok(current)
        })
    })
    .await
}

/// Pauses batch `id` (`queued|processing → paused`).
///
/// # Errors
/// [`ForgeError::NotFound`] when it is not `actor`'s, [`ForgeError::InvalidTransition`]
/// from any other state.
#[tracing::instrument(skip_all, fields(entity = "batch", op = "pause", id = %id))]
pub async fn pause<C>(db: &C, actor: Actor, id: BatchId) -> Result<batch_jobs::Model>
where
    C: Connection,
{
    apply(db, actor, id, Change::Pause).await
}

/// Resumes paused batch `id` (`paused → queued`).
///
/// # Errors
/// [`ForgeError::NotFound`] when it is not `actor`'s, [`ForgeError::InvalidTransition`]
/// unless it is paused.
#[tracing::instrument(skip_all, fields(entity = "batch", op = "resume", id = %id))]
pub async fn resume<C>(db: &C, actor: Actor, id: BatchId) -> Result<batch_jobs::Model>
where
    C: Connection,
{
    apply(db, actor, id, Change::Resume).await
}

/// Cancels batch `id` (`queued|processing|paused → cancelled`, `completed_at` set); its
/// still-queued items become `failed` with error [`CANCELLED_ITEM_ERROR`] and the
/// counters follow.
///
/// # Errors
/// [`ForgeError::NotFound`] when it is not `actor`'s, [`ForgeError::InvalidTransition`]
/// once it is completed, failed or cancelled.
#[tracing::instrument(skip_all, fields(entity = "batch", op = "cancel", id = %id))]
pub async fn cancel<C>(db: &C, actor: Actor, id: BatchId) -> Result<batch_jobs::Model>
where
    C: Connection,
{
    apply(db, actor, id, Change::Cancel).await
}

// ---------------------------------------------------------------------------------------
// Deleting, and the workers' time estimate
// ---------------------------------------------------------------------------------------

/// The states a batch may be deleted from: every one but `processing`. While a batch runs,
/// workers hold leases on its items; pause or cancel it first.
const DELETABLE: &[BatchStatus] = &[
    BatchStatus::Queued,
    BatchStatus::Paused,
    BatchStatus::Completed,
    BatchStatus::Failed,
    BatchStatus::Cancelled,
];

/// The states in which a batch has time left to estimate: those it has not ended in.
const UNFINISHED: &[BatchStatus] = &[
    BatchStatus::Queued,
    BatchStatus::Processing,
    BatchStatus::Paused,
];

/// Why a conditional write of batch `id` matched nothing: it is not `actor`'s, or its
/// state does not allow `to` (read once more, off the path of a write that applies).
async fn unchanged_because<C>(db: &C, actor: Actor, id: BatchId, to: &str) -> ForgeError
where
    C: Connection,
{
    match find(db, actor, id).await {
        Ok(Some(current)) => ForgeError::InvalidTransition {
            entity: "batch",
            from: current.status.to_string(),
            to: to.to_owned(),
        },
        Ok(None) => ForgeError::not_found("batch", id),
        Err(err) => err,
    }
}

/// Deletes batch `id` with its items (its owner their own, the service any) unless it is
/// `processing`, with one conditional `DELETE … RETURNING`; a refused call reads the
/// batch once more to say why.
///
/// Its items go with it (ON DELETE CASCADE); the conversations they produced stay, their
/// owner's. Items still in flight in a paused or cancelled batch go too: their worker's
/// [`crate::batch_items::complete`] or [`crate::batch_items::fail`] then finds no item.
///
/// On PostgreSQL the database holds the same rule for end users reaching the table
/// directly (migration `m20261201_000011_batch_delete_rule`).
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s;
/// [`ForgeError::InvalidTransition`] (from `processing`, to `"deleted"`) while it runs.
#[tracing::instrument(skip_all, fields(entity = "batch", op = "delete", id = %id))]
pub async fn delete<C>(db: &C, actor: Actor, id: BatchId) -> Result<()>
where
    C: Connection,
{
    use batch_jobs::Column as Col;
    use sea_orm::QueryTrait;
    let mut delete = batch_jobs::Entity::delete_many()
        .filter(Col::Id.eq(id))
        .filter(owned_by(actor))
        .filter(Col::Status.is_in(DELETABLE.iter().copied()));
    QueryTrait::query(&mut delete).returning_col(Col::Id);
    let stmt = delete.build(db.get_database_backend());
    let deleted = scoped::rows(db, actor, Access::Write, stmt).await?;
    if deleted.is_empty() {
        return Err(unchanged_because(db, actor, id, "deleted").await);
    }
    Ok(())
}

/// Sets batch `id`'s `estimated_time_remaining`, in seconds, or clears it with `None`
/// (service only: the workers estimate it), with one conditional `UPDATE … RETURNING`.
/// An estimate is set only while the batch has not ended (`queued`, `processing` or
/// `paused`), so a late report of a worker cannot put one on a finished batch; clearing
/// works in every state.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`]
/// (`estimated_time_remaining`) for a negative number of seconds; [`ForgeError::NotFound`]
/// for an unknown batch; [`ForgeError::InvalidTransition`] (to `"an estimated time
/// remaining"`) for an estimate on a completed, failed or cancelled batch.
#[tracing::instrument(skip_all, fields(entity = "batch", op = "set_estimated_time_remaining", id = %id))]
pub async fn set_estimated_time_remaining<C>(
    db: &C,
    actor: Actor,
    id: BatchId,
    seconds: Option<i32>,
) -> Result<batch_jobs::Model>
where
    C: Connection,
{
    use batch_jobs::Column as Col;
    use sea_orm::{FromQueryResult, QueryTrait};
    actor.require_service("estimating a batch's time remaining")?;
    if let Some(seconds) = seconds {
        let max = i64::from(i32::MAX);
        validate::in_range("estimated_time_remaining", i64::from(seconds), 0, max)?;
    }
    let row = batch_jobs::ActiveModel {
        estimated_time_remaining: Set(seconds),
        updated_at: Set(crate::now()),
        ..Default::default()
    };
    let mut update = batch_jobs::Entity::update_many()
        .set(row)
        .filter(Col::Id.eq(id));
    if seconds.is_some() {
        update = update.filter(Col::Status.is_in(UNFINISHED.iter().copied()));
    }
    QueryTrait::query(&mut update).returning_all();
    let stmt = update.build(db.get_database_backend());
    let rows = scoped::rows(db, actor, Access::Write, stmt).await?;
    match rows.first() {
        Some(row) => Ok(batch_jobs::Model::from_query_result(row, "")?),
        None => Err(unchanged_because(db, actor, id, "an estimated time remaining").await),
    }
}
