//! Batch items, the worker side: claiming items on a lease, heartbeats, progress, and
//! finishing them with a conversation or an error. All of it is the service's; a user may
//! read an item of their own batch ([`find`], [`get`]), and another user's item is
//! [`ForgeError::NotFound`].
//!
//! - **Claiming** ([`claim_next`], [`claim_many`]) takes the claimable items of batches
//!   that are `queued` or `processing`, ordered by batch priority (high, normal, low), then
//!   batch age, then item position. An item is claimable when it is `queued`, or when it
//!   is `processing` and its lease has run out (`locked_until` has passed; an item left
//!   `processing` from before leases existed has none and counts as run out): its worker
//!   is presumed dead and another one takes it over. A claim marks the item `processing`,
//!   records the worker (`locked_by`) and the end of the lease (`locked_until` = now +
//!   `lease`, at most [`crate::jobs::MAX_LEASE`]), and starts the item over at `progress`
//!   0. The first claim of a `queued` batch moves it to `processing` and sets `started_at`.
//!   Paused, cancelled, completed and failed batches give nothing: an item whose lease ran
//!   out in a paused batch is taken over once the batch is resumed.
//! - **Concurrency.** `configuration.concurrent_processing` bounds a batch's *live*
//!   leases: its items `processing` whose `locked_until` has not passed. An item whose
//!   lease runs out gives its slot back at that moment, so a dead worker does not slow
//!   its batch down for longer than one lease; in exchange the batch may show more items
//!   `processing` than its cap for a while (those whose workers stopped answering, until
//!   they are taken over). The cap holds for live leases at every instant, however many
//!   workers race: on PostgreSQL a claim locks the batch row (`FOR UPDATE`) before it
//!   reads the clock, counts the live leases and marks the next items `processing`
//!   (picked with `FOR UPDATE SKIP LOCKED`), and a [`heartbeat`] locks the batch row the
//!   same way while it judges and renews a lease, so a lease is never renewed after a
//!   claim counted it as run out; on SQLite the write transaction (`BEGIN IMMEDIATE`)
//!   serialises them. (A weaker `FOR KEY SHARE` for heartbeats deadlocks against the
//!   claims' `FOR UPDATE` on a batch row that finishing items keep updating.) A claim or
//!   heartbeat waits for a batch lock only while it holds no other lock (further batches
//!   of a [`claim_many`] are locked with `SKIP LOCKED`), so they never deadlock.
//! - **Leases.** A worker holds an item while it is `processing` with `locked_by` = the
//!   worker. [`heartbeat`] renews a lease that is still live; once it has run out the slot
//!   is gone and the heartbeat is refused with [`ForgeError::LeaseLost`] (stop working
//!   on the item). Until another worker takes the item over, the worker may still report
//!   progress and finish it ([`set_progress`], [`complete`], [`fail`]), so finished work
//!   is not thrown away; after that, or after [`requeue`], these are refused with
//!   [`ForgeError::LeaseLost`] and change nothing, so an item is finished exactly once.
//!   `locked_by` stays on the item after it finished or was requeued (the worker that
//!   claimed it last); `locked_until` is set only while it is `processing`.
//! - **Finishing** an item ([`complete`], [`fail`]) moves the item out of `processing` and
//!   the batch's counters by one, in the same transaction — the database keeps the
//!   counters equal to what the items say. When the last item finishes, a running batch
//!   (`queued`, `processing` or `paused`) becomes `completed`; with `error_handling =
//!   'stop'` the first failure makes it `failed` at once, and its queued items stay queued
//!   and unclaimed. Both set `completed_at`. Items already in flight when their batch is
//!   paused, cancelled or failed may still report progress and finish: their counters
//!   move, the batch's status stays as it is.
//!
//! Items carry no attempt counter (unlike coding jobs): an item whose generation kills
//! its worker every time is taken over again after every lease.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use forge_entity::batch_items::{self, ItemStatus};
use forge_entity::batch_jobs::{self, BatchPriority, BatchStatus, ErrorHandling};
use forge_entity::ids::{BatchId, BatchItemId, ConversationId};
use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, Func, LockBehavior, LockType, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, Order,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, UpdateMany,
};

use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};
use crate::scoped::{self, Scoped};
use crate::{jobs, validate};

const ITEM: &str = "batch item";
/// The most items one [`claim_many`] call takes.
pub const MAX_CLAIM: u32 = 100;
const MAX_WORKER: usize = 200;
const MAX_ERROR: usize = 10_000;

/// Batch states whose claimable items may be claimed.
const CLAIMABLE: &[BatchStatus] = &[BatchStatus::Queued, BatchStatus::Processing];
/// Batch states that a finishing item may still end (`completed` or `failed`).
const RUNNING: &[BatchStatus] = &[
    BatchStatus::Queued,
    BatchStatus::Processing,
    BatchStatus::Paused,
];

/// An item a worker now holds (`processing`, leased to it), with its batch as the claim
/// left it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClaimedItem {
    /// The item, `processing`, `locked_by` the worker, `locked_until` the end of the lease.
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
    Completed(ConversationId),
    Failed(String),
}

/// Items visible to `actor`: those of their own batches, or all for the service.
pub fn visible_to(actor: Actor) -> Select<batch_items::Entity> {
    scoped::owned_through::<_, batch_jobs::Entity>(
        actor,
        batch_items::Column::BatchJobId,
        batch_jobs::Column::Id,
    )
}

impl Scoped for batch_items::Entity {
    const NAME: &'static str = ITEM;

    fn key() -> Self::Column {
        batch_items::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

/// The item `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: BatchItemId) -> Result<Option<batch_items::Model>>
where
    C: Connection,
{
    scoped::find::<batch_items::Entity, C>(db, actor, id).await
}

/// The item `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or its batch is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: BatchItemId) -> Result<batch_items::Model>
where
    C: Connection,
{
    scoped::get::<batch_items::Entity, C, _>(db, actor, id).await
}

/// Claims the next claimable item for `worker`, holding it for `lease` (service only):
/// see the module docs for the order, the takeover of run-out leases and the per-batch
/// concurrency limit. `None` when no claimable batch has both a claimable item and a free
/// slot right now.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a blank or
/// over-long worker name or a zero or longer than [`crate::jobs::MAX_LEASE`] `lease`.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "claim_next", worker = %worker))]
pub async fn claim_next<C>(
    db: &C,
    actor: Actor,
    worker: &str,
    lease: Duration,
) -> Result<Option<ClaimedItem>>
where
    C: Connection,
{
    let claimed = claim_up_to(db, actor, worker, lease, 1).await?;
    Ok(claimed.into_iter().next())
}

/// Claims up to `limit` claimable items at once for `worker`, each held for `lease`
/// (service only), in claim order, in one transaction; each batch still gives at most its
/// free slots.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a `limit` outside
/// `1..=`[`MAX_CLAIM`], a blank or over-long worker name, or a zero or longer than
/// [`crate::jobs::MAX_LEASE`] `lease`.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "claim_many", worker = %worker, limit))]
pub async fn claim_many<C>(
    db: &C,
    actor: Actor,
    worker: &str,
    lease: Duration,
    limit: u32,
) -> Result<Vec<ClaimedItem>>
where
    C: Connection,
{
    validate::in_range("limit", i64::from(limit), 1, i64::from(MAX_CLAIM))?;
    claim_up_to(db, actor, worker, lease, u64::from(limit)).await
}

/// The worker name as stored in `locked_by`.
fn worker_name(worker: &str) -> Result<String> {
    validate::text("worker", worker, MAX_WORKER)
}

async fn claim_up_to<C>(
    db: &C,
    actor: Actor,
    worker: &str,
    lease: Duration,
    limit: u64,
) -> Result<Vec<ClaimedItem>>
where
    C: Connection,
{
    actor.require_service("claiming batch items")?;
    let worker = worker_name(worker)?;
    let lease = jobs::lease_delta("lease", lease)?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move { claim(txn, &worker, lease, limit).await })
    })
    .await
}

/// Claims up to `limit` items, batch after batch in claim order.
async fn claim(
    txn: &DatabaseTransaction,
    worker: &str,
    lease: TimeDelta,
    limit: u64,
) -> Result<Vec<ClaimedItem>> {
    let mut claimed = Vec::new();
    let mut tried = Vec::new();
    while (claimed.len() as u64) < limit {
        // Wait for a batch's lock only while holding none, so claims never deadlock.
        let wait = tried.is_empty();
        let Some(batch) = next_batch(txn, &tried, wait).await? else {
            break;
        };
        tried.push(batch.id);
        let wanted = limit - claimed.len() as u64;
        let ids = claim_from(txn, &batch, wanted, worker, lease).await?;
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

/// Items that may be claimed at `now`: queued, or processing with a lease that has run
/// out (or none, from before leases existed).
fn claimable_at(now: DateTime<Utc>) -> Condition {
    use batch_items::Column as Col;
    Condition::any()
        .add(Col::Status.eq(ItemStatus::Queued))
        .add(
            Condition::all()
                .add(Col::Status.eq(ItemStatus::Processing))
                .add(
                    Condition::any()
                        .add(Col::LockedUntil.is_null())
                        .add(Col::LockedUntil.lt(now)),
                ),
        )
}

/// Items whose lease is live at `now`: the ones that take a slot of their batch.
fn live_at(now: DateTime<Utc>) -> Condition {
    use batch_items::Column as Col;
    Condition::all()
        .add(Col::Status.eq(ItemStatus::Processing))
        .add(Col::LockedUntil.gte(now))
}

/// The batch row has a claimable item and fewer live leases than it allows, at `now`.
/// On PostgreSQL this reads the statement's snapshot, so [`claim_from`] counts again
/// under the batch lock; on SQLite it is already exact.
fn has_work_and_room(backend: DbBackend, now: DateTime<Utc>) -> Expr {
    let of_this_batch = || {
        Query::select()
            .from(batch_items::Entity)
            .and_where(
                Expr::col((batch_items::Entity, batch_items::Column::BatchJobId))
                    .equals((batch_jobs::Entity, batch_jobs::Column::Id)),
            )
            .to_owned()
    };
    let work = of_this_batch()
        .expr(Expr::val(1))
        .cond_where(claimable_at(now))
        .to_owned();
    let live = of_this_batch()
        .expr(Func::count(Expr::col(Asterisk)))
        .cond_where(live_at(now))
        .to_owned();
    Expr::exists(work).and(Expr::from(live).lt(Expr::cust(concurrency_sql(backend))))
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
    tried: &[BatchId],
    wait: bool,
) -> Result<Option<batch_jobs::Model>> {
    use batch_jobs::Column as Col;
    let select = batch_jobs::Entity::find()
        .filter(Col::Status.is_in(CLAIMABLE.iter().copied()))
        .filter(Col::Id.is_not_in(tried.iter().copied()))
        .filter(has_work_and_room(txn.get_database_backend(), crate::now()))
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

/// Leases up to `wanted` of the locked `batch`'s claimable items to `worker`, by
/// position, within its free slots, and starts the batch if it was queued; the ids
/// claimed. The clock is read under the batch lock, so no heartbeat of this batch
/// renews a lease between the moment it is judged run out here and the commit.
async fn claim_from(
    txn: &DatabaseTransaction,
    batch: &batch_jobs::Model,
    wanted: u64,
    worker: &str,
    lease: TimeDelta,
) -> Result<Vec<BatchItemId>> {
    use batch_items::Column as Col;
    let now = crate::now();
    let live = batch_items::Entity::find()
        .filter(Col::BatchJobId.eq(batch.id))
        .filter(live_at(now))
        .count(txn)
        .await?;
    let free = u64::from(batch.configuration.concurrent_processing).saturating_sub(live);
    let room = Ord::min(free, wanted);
    if room == 0 {
        return Ok(Vec::new());
    }
    let ids: Vec<BatchItemId> = batch_items::Entity::find()
        .select_only()
        .column(Col::Id)
        .filter(Col::BatchJobId.eq(batch.id))
        .filter(claimable_at(now))
        .order_by_asc(Col::Position)
        .limit(room)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_tuple()
        .all(txn)
        .await?;
    if ids.is_empty() {
        return Ok(ids);
    }
    batch_items::Entity::update_many()
        .col_expr(Col::Status, Expr::val(ItemStatus::Processing.as_str()))
        .col_expr(Col::LockedBy, Expr::val(worker))
        .col_expr(Col::LockedUntil, Expr::val(now + lease))
        .col_expr(Col::Progress, Expr::val(0))
        .col_expr(Col::UpdatedAt, Expr::val(now))
        .filter(Col::Id.is_in(ids.iter().copied()))
        .filter(claimable_at(now))
        .exec(txn)
        .await?;
    start_batch(txn, batch.id, now).await?;
    Ok(ids)
}

/// `queued → processing` for batch `id`, `started_at` set once.
async fn start_batch(txn: &DatabaseTransaction, id: BatchId, now: DateTime<Utc>) -> Result<()> {
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
    batch: BatchId,
    ids: Vec<BatchItemId>,
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

async fn item_row(txn: &DatabaseTransaction, id: BatchItemId) -> Result<batch_items::Model> {
    batch_items::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found(ITEM, id))
}

async fn batch_row(txn: &DatabaseTransaction, id: BatchId) -> Result<batch_jobs::Model> {
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

/// Whether `worker` holds `item`: processing and leased to it (a lease that ran out but
/// was not taken over still counts; see [`heartbeat`] for the one call it does not).
fn holds(item: &batch_items::Model, worker: &str) -> bool {
    item.status == ItemStatus::Processing && item.locked_by.as_deref() == Some(worker)
}

/// The items `worker` holds: `id`, processing, leased to it.
fn held_by(id: BatchItemId, worker: &str) -> Condition {
    use batch_items::Column as Col;
    Condition::all()
        .add(Col::Id.eq(id))
        .add(Col::Status.eq(ItemStatus::Processing))
        .add(Col::LockedBy.eq(worker))
}

/// Why `worker`, which does not hold `item`, may not move it to `to`:
/// [`ForgeError::LeaseLost`] when someone else holds it or claimed it after `worker`,
/// or it was requeued after `worker`'s claim; [`ForgeError::InvalidTransition`] when it
/// was never claimed, or `worker` itself finished it.
fn not_held(item: &batch_items::Model, worker: &str, to: ItemStatus) -> ForgeError {
    let lost = match item.locked_by.as_deref() {
        Some(holder) if holder != worker => true,
        Some(_) => item.status == ItemStatus::Queued,
        None => item.status == ItemStatus::Processing,
    };
    if lost {
        ForgeError::LeaseLost {
            entity: "batch item",
            id: item.id.to_string(),
            worker: worker.to_owned(),
        }
    } else {
        transition(item.status, to)
    }
}

/// Why a write to item `id` guarded by [`held_by`] changed nothing, read afresh.
async fn refusal(
    txn: &DatabaseTransaction,
    id: BatchItemId,
    worker: &str,
    to: ItemStatus,
) -> ForgeError {
    match item_row(txn, id).await {
        Ok(item) => not_held(&item, worker, to),
        Err(err) => err,
    }
}

/// Renews `worker`'s lease on item `id` to `lease` from now (service only), while the
/// lease is still live. Call it well within the lease while the work goes on.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a bad `worker` or
/// `lease`; [`ForgeError::NotFound`] for an unknown item; [`ForgeError::LeaseLost`] when
/// `worker` does not hold the item, or its lease has already run out (its slot went back
/// to the batch, and another worker may be taking the item over: stop working on it;
/// [`complete`] and [`fail`] still accept the result until someone does);
/// [`ForgeError::InvalidTransition`] for an item that was never claimed or that `worker`
/// finished itself.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "heartbeat", id = %id))]
pub async fn heartbeat<C>(
    db: &C,
    actor: Actor,
    id: BatchItemId,
    worker: &str,
    lease: Duration,
) -> Result<batch_items::Model>
where
    C: Connection,
{
    actor.require_service("extending a batch item lease")?;
    let worker = worker_name(worker)?;
    let lease = jobs::lease_delta("lease", lease)?;
    use batch_items::Column as Col;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            // Serialised with the claims of the batch, which lock its row FOR UPDATE too
            // (the first lock this transaction takes), so that the clock read next judges
            // the lease as a concurrent claim would.
            let batch_of_item = Query::select()
                .column(Col::BatchJobId)
                .from(batch_items::Entity)
                .and_where(Col::Id.eq(id))
                .to_owned();
            batch_jobs::Entity::find()
                .filter(batch_jobs::Column::Id.in_subquery(batch_of_item))
                .lock(LockType::Update)
                .one(txn)
                .await?;
            let now = crate::now();
            let renewed = batch_items::Entity::update_many()
                .col_expr(Col::LockedUntil, Expr::val(now + lease))
                .col_expr(Col::UpdatedAt, Expr::val(now))
                .filter(held_by(id, &worker))
                .filter(Col::LockedUntil.gte(now))
                .exec_with_returning(txn)
                .await?;
            if let Some(item) = renewed.into_iter().next() {
                return Ok(item);
            }
            let item = item_row(txn, id).await?;
            Err(if holds(&item, &worker) {
                ForgeError::LeaseLost {
                    entity: "batch item",
                    id: id.to_string(),
                    worker: worker.clone(),
                }
            } else {
                not_held(&item, &worker, ItemStatus::Processing)
            })
        })
    })
    .await
}

/// Sets the progress (0–100) of item `id`, which `worker` holds (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a progress
/// outside 0..=100 or a bad `worker`, [`ForgeError::NotFound`] for an unknown item,
/// [`ForgeError::LeaseLost`] when `worker` does not hold the item (another worker took it
/// over, finished it, or it was requeued), [`ForgeError::InvalidTransition`] when it was
/// never claimed or `worker` finished it itself.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "set_progress", id = %id, progress))]
pub async fn set_progress<C>(
    db: &C,
    actor: Actor,
    id: BatchItemId,
    worker: &str,
    progress: i32,
) -> Result<batch_items::Model>
where
    C: Connection,
{
    actor.require_service("reporting batch item progress")?;
    let worker = worker_name(worker)?;
    validate::in_range("progress", i64::from(progress), 0, 100)?;
    use batch_items::Column as Col;
    let update = batch_items::Entity::update_many()
        .col_expr(Col::Progress, Expr::val(progress))
        .col_expr(Col::UpdatedAt, Expr::val(crate::now()))
        .filter(held_by(id, &worker));
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let rows = update.exec_with_returning(txn).await?;
            match rows.into_iter().next() {
                Some(item) => Ok(item),
                None => Err(refusal(txn, id, &worker, ItemStatus::Processing).await),
            }
        })
    })
    .await
}

/// Puts processing item `id` back in the queue (service only), progress 0, lease
/// released: for an item whose worker is known to have stopped, so it need not wait for
/// its lease to run out. It is claimed again in its position order and frees its batch's
/// slot at once; the worker that held it gets [`ForgeError::LeaseLost`] from then on.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::NotFound`] for an unknown item,
/// [`ForgeError::InvalidTransition`] when the item is not processing.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "requeue", id = %id))]
pub async fn requeue<C>(db: &C, actor: Actor, id: BatchItemId) -> Result<batch_items::Model>
where
    C: Connection,
{
    actor.require_service("requeueing batch items")?;
    use batch_items::Column as Col;
    let update = batch_items::Entity::update_many()
        .col_expr(Col::Status, Expr::val(ItemStatus::Queued.as_str()))
        .col_expr(Col::Progress, Expr::val(0))
        .col_expr(Col::LockedUntil, Expr::val(Option::<DateTime<Utc>>::None))
        .col_expr(Col::UpdatedAt, Expr::val(crate::now()))
        .filter(Col::Id.eq(id))
        .filter(Col::Status.eq(ItemStatus::Processing));
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let rows = update.exec_with_returning(txn).await?;
            match rows.into_iter().next() {
                Some(item) => Ok(item),
                None => Err(transition(
                    item_row(txn, id).await?.status,
                    ItemStatus::Queued,
                )),
            }
        })
    })
    .await
}

/// Completes item `id`, which `worker` holds, with its generated conversation (service
/// only): progress 100, `conversation_id` set, lease released; the batch's
/// `completed_items` and `successful_items` move by one, and the batch completes with its
/// last item.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a bad `worker`,
/// [`ForgeError::NotFound`] for an unknown item or conversation,
/// [`ForgeError::Conflict`] when the conversation is not the batch owner's,
/// [`ForgeError::LeaseLost`] when `worker` does not hold the item (another worker took it
/// over after its lease ran out, finished it, or it was requeued): nothing changes;
/// [`ForgeError::InvalidTransition`] when it was never claimed or `worker` finished it
/// already.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "complete", id = %id))]
pub async fn complete<C>(
    db: &C,
    actor: Actor,
    id: BatchItemId,
    worker: &str,
    conversation_id: ConversationId,
) -> Result<FinishedItem>
where
    C: Connection,
{
    actor.require_service("completing batch items")?;
    let worker = worker_name(worker)?;
    finish(db, actor, id, worker, Outcome::Completed(conversation_id)).await
}

/// Fails item `id`, which `worker` holds, with `error` (service only), lease released:
/// the batch's `completed_items` and `failed_items` move by one; with `error_handling =
/// 'stop'` the batch fails, otherwise it completes with its last item.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a blank or
/// over-long error or a bad `worker`, [`ForgeError::NotFound`] for an unknown item,
/// [`ForgeError::LeaseLost`] when `worker` does not hold the item (as for [`complete`]),
/// [`ForgeError::InvalidTransition`] when it was never claimed or `worker` finished it
/// already.
#[tracing::instrument(skip_all, fields(entity = ITEM, op = "fail", id = %id))]
pub async fn fail<C>(
    db: &C,
    actor: Actor,
    id: BatchItemId,
    worker: &str,
    error: &str,
) -> Result<FinishedItem>
where
    C: Connection,
{
    actor.require_service("failing batch items")?;
    let worker = worker_name(worker)?;
    let error = validate::text("error", error, MAX_ERROR)?;
    finish(db, actor, id, worker, Outcome::Failed(error)).await
}

impl Outcome {
    fn status(&self) -> ItemStatus {
        match self {
            Self::Completed(_) => ItemStatus::Completed,
            Self::Failed(_) => ItemStatus::Failed,
        }
    }

    /// The item's update, applied only while `worker` holds it; `locked_by` stays, the
    /// record of who finished it.
    fn item_update(
        &self,
        id: BatchItemId,
        worker: &str,
        now: DateTime<Utc>,
    ) -> UpdateMany<batch_items::Entity> {
        use batch_items::Column as Col;
        let update = batch_items::Entity::update_many()
            .col_expr(Col::Status, Expr::val(self.status().as_str()))
            .col_expr(Col::LockedUntil, Expr::val(Option::<DateTime<Utc>>::None))
            .col_expr(Col::UpdatedAt, Expr::val(now))
            .filter(held_by(id, worker));
        match self {
            Self::Completed(conversation) => update
                .col_expr(Col::ConversationId, Expr::val(*conversation))
                .col_expr(Col::Progress, Expr::val(100))
                .col_expr(Col::Error, Expr::val(Option::<String>::None)),
            Self::Failed(error) => update.col_expr(Col::Error, Expr::val(error.clone())),
        }
    }
}

async fn finish<C>(
    db: &C,
    actor: Actor,
    id: BatchItemId,
    worker: String,
    outcome: Outcome,
) -> Result<FinishedItem>
where
    C: Connection,
{
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let item = item_row(txn, id).await?;
            if !holds(&item, &worker) {
                return Err(not_held(&item, &worker, outcome.status()));
            }
            let batch = batch_row(txn, item.batch_job_id).await?;
            let now = crate::now();
            let moved = outcome.item_update(id, &worker, now).exec(txn).await?;
            if moved.rows_affected == 0 {
                return Err(refusal(txn, id, &worker, outcome.status()).await);
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
async fn end_if_finished(txn: &DatabaseTransaction, id: BatchId, stop: bool) -> Result<()> {
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
