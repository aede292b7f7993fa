//! Batch items, the worker side: claiming queued items, reporting progress, and finishing
//! them with a conversation or an error. Claiming and finishing are the service's; a user
//! may read an item of their own batch ([`find`], [`get`]), and another user's item is
//! [`ForgeError::NotFound`].
//!
//! Claiming takes the next `queued` items of batches that are `queued` or `processing`,
//! ordered by batch priority (high, normal, low), then batch age, then item position.
//! A batch never has more than `configuration.concurrent_processing` items `processing`
//! at once, however many workers race: on PostgreSQL a claim locks the batch row
//! (`FOR UPDATE`) before it counts the batch's items in flight and marks the next ones
//! `processing` (picked with `FOR UPDATE SKIP LOCKED`), so claims on one batch are
//! serialised; on SQLite the write transaction (`BEGIN IMMEDIATE`) serialises them. A
//! claim waits for a batch lock only while it holds none (further batches of a
//! [`claim_many`] are locked with `SKIP LOCKED`), so claims never deadlock. The first
//! claim of a `queued` batch moves it to `processing` and sets `started_at`. Paused,
//! cancelled, completed and failed batches give nothing.
//!
//! Finishing an item ([`complete`], [`fail`]) moves the item out of `processing` and the
//! batch's counters by one, in the same transaction, with SQL increments — the counters
//! always equal what the items say. When the last item finishes, a running batch
//! (`queued`, `processing` or `paused`) becomes `completed`; with `error_handling =
//! 'stop'` the first failure makes it `failed` at once, and its queued items stay queued
//! and unclaimed. Both set `completed_at`.
//!
//! Items already in flight when their batch is paused, cancelled or failed may still
//! report progress and finish: their counters move, the batch's status stays as it is.
//! `batch_items` has no lease column (SCHEMA.md), so the `worker` name of a claim is
//! recorded in the trace only, and an item whose worker died stays `processing` (and
//! counts against the batch's concurrency) until the service finishes or [`requeue`]s it.

use forge_entity::batch_items::{self, ItemStatus};
use forge_entity::batch_jobs::{self, BatchPriority, BatchStatus, ErrorHandling};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, Order,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, UpdateMany,
};
use uuid::Uuid;

use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};
use crate::{batches, validate};

const ITEM: &str = "batch item";
/// The most items one [`claim_many`] call takes.
pub const MAX_CLAIM: u32 = 100;
const MAX_WORKER: usize = 200;
const MAX_ERROR: usize = 10_000;

/// Batch states whose queued items may be claimed.
const CLAIMABLE: &[BatchStatus] = &[BatchStatus::Queued, BatchStatus::Processing];
/// Batch states that a finishing item may still end (`completed` or `failed`).
const RUNNING: &[BatchStatus] = &[
    BatchStatus::Queued,
    BatchStatus::Processing,
    BatchStatus::Paused,
];

/// An item a worker now holds (`processing`), with its batch as the claim left it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClaimedItem {
    /// The item, `processing`.
    pub item: batch_items::Model,
    /// Its batch: configuration for the generation, status `processing`.
    pub batch: batch_jobs::Model,
}

/// A finished item with its batch's counters and status right after it finished.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FinishedItem {
    /// The item, `completed` or `failed`.
    pub item: batch_items::Model,
    /// Its batch, counters moved; `completed` or `failed` when this item ended it.
    pub batch: batch_jobs::Model,
}

/// How an item finishes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Completed(Uuid),
    Failed(String),
}

/// Items visible to `actor`: those of their own batches, or all for the service.
pub fn visible_to(actor: Actor) -> Select<batch_items::Entity> {
    let select = batch_items::Entity::find();
    match actor {
        Actor::User(_) => {
            let own_batches = batches::visible_to(actor)
                .select_only()
                .column(batch_jobs::Column::Id)
                .into_query();
            select.filter(batch_items::Column::BatchJobId.in_subquery(own_batches))
        }
        Actor::Service => select,
    }
}

/// The item `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: Uuid) -> Result<Option<batch_items::Model>>
where
    C: Connection,
{
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            Ok(visible_to(actor)
                .filter(batch_items::Column::Id.eq(id))
                .one(txn)
                .await?)
        })
    })
    .await
}

/// The item `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or its batch is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: Uuid) -> Result<batch_items::Model>
where
    C: Connection,
{
    find(db, actor, id)
        .await?
        .ok_or_else(|| ForgeError::not_found(ITEM, id))
}

/// Claims the next queued item for `worker` (service only): see the module docs for the
/// order and the per-batch concurrency limit. `None` when no claimable batch has both a
/// queued item and a free slot right now.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a blank or
/// over-long worker name.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "claim_next", worker = %worker))]
pub async fn claim_next<C>(db: &C, actor: Actor, worker: &str) -> Result<Option<ClaimedItem>>
where
    C: Connection,
{
    let claimed = claim_up_to(db, actor, worker, 1).await?;
    Ok(claimed.into_iter().next())
}

/// Claims up to `limit` queued items at once for `worker` (service only), in claim order,
/// in one transaction; each batch still gives at most its free slots.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a `limit` outside
/// `1..=`[`MAX_CLAIM`] or a blank or over-long worker name.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "claim_many", worker = %worker, limit))]
pub async fn claim_many<C>(
    db: &C,
    actor: Actor,
    worker: &str,
    limit: u32,
) -> Result<Vec<ClaimedItem>>
where
    C: Connection,
{
    validate::in_range("limit", i64::from(limit), 1, i64::from(MAX_CLAIM))?;
    claim_up_to(db, actor, worker, u64::from(limit)).await
}

async fn claim_up_to<C>(db: &C, actor: Actor, worker: &str, limit: u64) -> Result<Vec<ClaimedItem>>
where
    C: Connection,
{
    actor.require_service("claiming batch items")?;
    validate::text("worker", worker, MAX_WORKER)?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move { claim(txn, limit).await })
    })
    .await
}

/// Claims up to `limit` items, batch after batch in claim order.
async fn claim(txn: &DatabaseTransaction, limit: u64) -> Result<Vec<ClaimedItem>> {
    let mut claimed = Vec::new();
    let mut tried = Vec::new();
    while (claimed.len() as u64) < limit {
        // Wait for a batch's lock only while holding none, so claims never deadlock.
        let wait = tried.is_empty();
        let Some(batch) = next_batch(txn, &tried, wait).await? else {
            break;
        };
        tried.push(batch.id);
        let ids = claim_from(txn, &batch, limit - claimed.len() as u64).await?;
        if !ids.is_empty() {
            claimed.extend(read_claimed(txn, batch.id, ids).await?);
        }
    }
    Ok(claimed)
}

/// `configuration.concurrent_processing` of the batch row in SQL, read as the entity
/// reads it (snake_case key, the TypeScript app's camelCase key, or the default).
fn concurrency_sql(backend: DbBackend) -> String {
    let default = batch_jobs::BatchConfiguration::DEFAULT_CONCURRENCY;
    match backend {
        DbBackend::Postgres => format!(
            "COALESCE(batch_jobs.configuration->>'concurrent_processing', \
                      batch_jobs.configuration->>'concurrentProcessing', '{default}')::int"
        ),
        _ => format!(
            "COALESCE(json_extract(batch_jobs.configuration, '$.concurrent_processing'), \
                      json_extract(batch_jobs.configuration, '$.concurrentProcessing'), {default})"
        ),
    }
}

/// The batch row has a queued item and fewer items in flight than it allows. On
/// PostgreSQL this reads the statement's snapshot, so [`claim_from`] counts again under
/// the batch lock; on SQLite it is already exact.
fn has_work_and_room(backend: DbBackend) -> Expr {
    let items_in = |status: ItemStatus| {
        format!(
            "FROM batch_items i WHERE i.batch_job_id = batch_jobs.id AND i.status = '{}'",
            status.as_str()
        )
    };
    Expr::cust(format!(
        "EXISTS (SELECT 1 {queued}) AND (SELECT count(*) {processing}) < {cap}",
        queued = items_in(ItemStatus::Queued),
        processing = items_in(ItemStatus::Processing),
        cap = concurrency_sql(backend),
    ))
}

/// High before normal before low.
fn priority_rank() -> Expr {
    let priority = batch_jobs::Column::Priority;
    Expr::case(priority.eq(BatchPriority::High), 0)
        .case(priority.eq(BatchPriority::Normal), 1)
        .finally(2)
        .into()
}

/// The first claimable batch not in `tried`, locked: waiting for its lock when `wait`,
/// else skipping locked batches.
async fn next_batch(
    txn: &DatabaseTransaction,
    tried: &[Uuid],
    wait: bool,
) -> Result<Option<batch_jobs::Model>> {
    use batch_jobs::Column as Col;
    let select = batch_jobs::Entity::find()
        .filter(Col::Status.is_in(CLAIMABLE.iter().copied()))
        .filter(Col::Id.is_not_in(tried.iter().copied()))
        .filter(has_work_and_room(txn.get_database_backend()))
        .order_by(priority_rank(), Order::Asc)
        .order_by_asc(Col::CreatedAt)
        .order_by_asc(Col::Id)
        .limit(1);
    let select = if wait {
        select.lock(LockType::Update)
    } else {
        select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
    };
    Ok(select.one(txn).await?)
}

/// Marks up to `wanted` of the locked `batch`'s next queued items `processing`, within
/// its free slots, and starts the batch if it was queued; the ids claimed.
async fn claim_from(
    txn: &DatabaseTransaction,
    batch: &batch_jobs::Model,
    wanted: u64,
) -> Result<Vec<Uuid>> {
    use batch_items::Column as Col;
    let in_flight = batch_items::Entity::find()
        .filter(Col::BatchJobId.eq(batch.id))
        .filter(Col::Status.eq(ItemStatus::Processing))
        .count(txn)
        .await?;
    let free = u64::from(batch.configuration.concurrent_processing).saturating_sub(in_flight);
    let room = Ord::min(free, wanted);
    if room == 0 {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = batch_items::Entity::find()
        .select_only()
        .column(Col::Id)
        .filter(Col::BatchJobId.eq(batch.id))
        .filter(Col::Status.eq(ItemStatus::Queued))
        .order_by_asc(Col::Position)
        .limit(room)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_tuple()
        .all(txn)
        .await?;
    if ids.is_empty() {
        return Ok(ids);
    }
    let now = crate::now();
    batch_items::Entity::update_many()
        .col_expr(Col::Status, Expr::val(ItemStatus::Processing.as_str()))
        .col_expr(Col::UpdatedAt, Expr::val(now))
        .filter(Col::Id.is_in(ids.iter().copied()))
        .filter(Col::Status.eq(ItemStatus::Queued))
        .exec(txn)
        .await?;
    start_batch(txn, batch.id, now).await?;
    Ok(ids)
}

/// `queued → processing` for batch `id`, `started_at` set once.
async fn start_batch(
    txn: &DatabaseTransaction,
    id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    use batch_jobs::Column as Col;
    batch_jobs::Entity::update_many()
        .col_expr(Col::Status, Expr::val(BatchStatus::Processing.as_str()))
        .col_expr(
            Col::StartedAt,
            Expr::col(Col::StartedAt).if_null(Expr::val(now)),
        )
        .col_expr(Col::UpdatedAt, Expr::val(now))
        .filter(Col::Id.eq(id))
        .filter(Col::Status.eq(BatchStatus::Queued))
        .exec(txn)
        .await?;
    Ok(())
}

/// The claimed items, by position, each with the batch as it is now.
async fn read_claimed(
    txn: &DatabaseTransaction,
    batch: Uuid,
    ids: Vec<Uuid>,
) -> Result<Vec<ClaimedItem>> {
    let batch = batch_row(txn, batch).await?;
    let items = batch_items::Entity::find()
        .filter(batch_items::Column::Id.is_in(ids))
        .order_by_asc(batch_items::Column::Position)
        .all(txn)
        .await?;
    Ok(items
        .into_iter()
        .map(|item| ClaimedItem {
            item,
            batch: batch.clone(),
        })
        .collect())
}

async fn item_row(txn: &DatabaseTransaction, id: Uuid) -> Result<batch_items::Model> {
    batch_items::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found(ITEM, id))
}

async fn batch_row(txn: &DatabaseTransaction, id: Uuid) -> Result<batch_jobs::Model> {
    batch_jobs::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found("batch", id))
}

/// The refusal for an item in state `from` asked to go to `to`.
fn transition(from: ItemStatus, to: ItemStatus) -> ForgeError {
    ForgeError::InvalidTransition {
        entity: ITEM,
        from: from.to_string(),
        to: to.to_string(),
    }
}

/// Why a conditional update of a `processing` item `id` changed nothing: it is gone, or
/// no longer processing.
async fn refusal(txn: &DatabaseTransaction, id: Uuid, to: ItemStatus) -> ForgeError {
    match item_row(txn, id).await {
        Ok(item) => transition(item.status, to),
        Err(err) => err,
    }
}

/// Sets the progress (0–100) of processing item `id` (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a progress
/// outside 0..=100, [`ForgeError::NotFound`] for an unknown item,
/// [`ForgeError::InvalidTransition`] when the item is not processing.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "set_progress", id = %id, progress))]
pub async fn set_progress<C>(
    db: &C,
    actor: Actor,
    id: Uuid,
    progress: i32,
) -> Result<batch_items::Model>
where
    C: Connection,
{
    actor.require_service("reporting batch item progress")?;
    validate::in_range("progress", i64::from(progress), 0, 100)?;
    let update = batch_items::Entity::update_many()
        .col_expr(batch_items::Column::Progress, Expr::val(progress));
    change_processing(db, actor, id, ItemStatus::Processing, update).await
}

/// Puts processing item `id` back in the queue (service only), progress 0: for an item
/// whose worker stopped, since batch items carry no lease. It is claimed again in its
/// position order and frees its batch's slot at once.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::NotFound`] for an unknown item,
/// [`ForgeError::InvalidTransition`] when the item is not processing.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "requeue", id = %id))]
pub async fn requeue<C>(db: &C, actor: Actor, id: Uuid) -> Result<batch_items::Model>
where
    C: Connection,
{
    actor.require_service("requeueing batch items")?;
    use batch_items::Column as Col;
    let update = batch_items::Entity::update_many()
        .col_expr(Col::Status, Expr::val(ItemStatus::Queued.as_str()))
        .col_expr(Col::Progress, Expr::val(0));
    change_processing(db, actor, id, ItemStatus::Queued, update).await
}

/// Applies `update` to item `id` only while it is processing (a transition `to`).
async fn change_processing<C>(
    db: &C,
    actor: Actor,
    id: Uuid,
    to: ItemStatus,
    update: UpdateMany<batch_items::Entity>,
) -> Result<batch_items::Model>
where
    C: Connection,
{
    use batch_items::Column as Col;
    let update = update
        .col_expr(Col::UpdatedAt, Expr::val(crate::now()))
        .filter(Col::Id.eq(id))
        .filter(Col::Status.eq(ItemStatus::Processing));
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            if update.exec(txn).await?.rows_affected == 0 {
                return Err(refusal(txn, id, to).await);
            }
            item_row(txn, id).await
        })
    })
    .await
}

/// Completes processing item `id` with its generated conversation (service only):
/// progress 100, `conversation_id` set; the batch's `completed_items` and
/// `successful_items` move by one, and the batch completes with its last item.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::NotFound`] for an unknown item or
/// conversation, [`ForgeError::Conflict`] when the conversation is not the batch owner's,
/// [`ForgeError::InvalidTransition`] when the item is not processing (e.g. another
/// worker finished it).
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "complete", id = %id))]
pub async fn complete<C>(
    db: &C,
    actor: Actor,
    id: Uuid,
    conversation_id: Uuid,
) -> Result<FinishedItem>
where
    C: Connection,
{
    actor.require_service("completing batch items")?;
    finish(db, actor, id, Outcome::Completed(conversation_id)).await
}

/// Fails processing item `id` with `error` (service only): the batch's `completed_items`
/// and `failed_items` move by one; with `error_handling = 'stop'` the batch fails,
/// otherwise it completes with its last item.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a blank or
/// over-long error, [`ForgeError::NotFound`] for an unknown item,
/// [`ForgeError::InvalidTransition`] when the item is not processing.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "fail", id = %id))]
pub async fn fail<C>(db: &C, actor: Actor, id: Uuid, error: &str) -> Result<FinishedItem>
where
    C: Connection,
{
    actor.require_service("failing batch items")?;
    let error = validate::text("error", error, MAX_ERROR)?;
    finish(db, actor, id, Outcome::Failed(error)).await
}

impl Outcome {
    fn status(&self) -> ItemStatus {
        match self {
            Self::Completed(_) => ItemStatus::Completed,
            Self::Failed(_) => ItemStatus::Failed,
        }
    }

    /// The item's update, applied only while it is processing.
    fn item_update(
        &self,
        id: Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> UpdateMany<batch_items::Entity> {
        use batch_items::Column as Col;
        let update = batch_items::Entity::update_many()
            .col_expr(Col::Status, Expr::val(self.status().as_str()))
            .col_expr(Col::UpdatedAt, Expr::val(now))
            .filter(Col::Id.eq(id))
            .filter(Col::Status.eq(ItemStatus::Processing));
        match self {
            Self::Completed(conversation) => update
                .col_expr(Col::ConversationId, Expr::val(*conversation))
                .col_expr(Col::Progress, Expr::val(100))
                .col_expr(Col::Error, Expr::val(Option::<String>::None)),
            Self::Failed(error) => update.col_expr(Col::Error, Expr::val(error.clone())),
        }
    }
}

async fn finish<C>(db: &C, actor: Actor, id: Uuid, outcome: Outcome) -> Result<FinishedItem>
where
    C: Connection,
{
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let item = item_row(txn, id).await?;
            if item.status != ItemStatus::Processing {
                return Err(transition(item.status, outcome.status()));
            }
            let batch = batch_row(txn, item.batch_job_id).await?;
            let now = crate::now();
            let moved = outcome.item_update(id, now).exec(txn).await?;
            if moved.rows_affected == 0 {
                return Err(refusal(txn, id, outcome.status()).await);
            }
            let stop = matches!(outcome, Outcome::Failed(_))
                && batch.configuration.error_handling == ErrorHandling::Stop;
            end_if_finished(txn, batch.id, stop).await?;
            Ok(FinishedItem {
                item: item_row(txn, id).await?,
                batch: batch_row(txn, batch.id).await?,
            })
        })
    })
    .await
}

/// Ends running batch `id` after one of its items finished (the database has moved the
/// counters already): `failed` at once when `stop`, else `completed` when this was its last
/// item. (The database sets `completed_at`.)
async fn end_if_finished(txn: &DatabaseTransaction, id: Uuid, stop: bool) -> Result<()> {
    use batch_jobs::Column as Col;
    let running = Col::Status.is_in(RUNNING.iter().copied());
    let (ends, end) = if stop {
        (running, BatchStatus::Failed)
    } else {
        let last = Expr::col(Col::CompletedItems).gte(Expr::col(Col::TotalItems));
        (running.and(last), BatchStatus::Completed)
    };
    batch_jobs::Entity::update_many()
        .col_expr(Col::Status, Expr::val(end.as_str()))
        .col_expr(Col::UpdatedAt, Expr::val(crate::now()))
        .filter(Col::Id.eq(id))
        .filter(ends)
        .exec(txn)
        .await?;
    Ok(())
}
