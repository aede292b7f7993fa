//! forge_service::batch_items on both backends: claiming in priority and position order
//! within each batch's concurrency limit, progress, completing and failing items with
//! the batch's counters and status following, error handling `stop` and `continue`,
//! isolation, and races of many workers on separate connections.

mod common;
#[path = "session_support/mod.rs"]
mod session_support;

use forge_db::entity::ids::{BatchId, BatchItemId, ConversationId, ProfileId};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::signup as profile;
use common::{TestDb, as_service, stored_items};
use forge_db::entity::batch_items::{self, ItemStatus};
use forge_db::entity::batch_jobs::{
    self, BatchConfiguration, BatchPriority, BatchStatus, ErrorHandling,
};
use forge_db::entity::conversations::ConversationTier;
use forge_db::sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter,
};
use forge_db::service::batch_items::{self as repo, ClaimedItem, FinishedItem, MAX_CLAIM};
use forge_db::service::batches::{self, NewBatch, NewBatchItem};
use forge_db::service::conversations::{self, NewConversation};
use forge_db::service::{Actor, ForgeError};
use session_support::SharedDb;
use uuid::Uuid;

const SERVICE: Actor = Actor::Service;
/// How long a claim holds an item (no lease runs out in these tests).
const LEASE: Duration = Duration::from_secs(60);

on_both_backends! {
    claims_by_priority_then_age_then_position => claims_by_priority_then_age_then_position;
    paused_cancelled_and_finished_batches_give_nothing => paused_cancelled_and_finished_batches_give_nothing;
    at_most_concurrent_processing_in_flight => at_most_concurrent_processing_in_flight;
    progress_of_processing_items_only => progress_of_processing_items_only;
    refused_finishes_change_nothing => refused_finishes_change_nothing;
    batch_completes_with_its_last_item => batch_completes_with_its_last_item;
    error_handling_stop_fails_the_batch => error_handling_stop_fails_the_batch;
    users_cannot_work_items_and_b_cannot_see_a_items => users_cannot_work_items_and_b_cannot_see_a_items;
    eight_workers_drain_two_thousand_items_exactly_once => eight_workers_drain_two_thousand_items_exactly_once;
    racing_workers_with_failures_keep_counters_exact => racing_workers_with_failures_keep_counters_exact;
}

/// A batch of `owner`'s with `n` items, at most `cap` in flight.
fn new_batch(owner: ProfileId, name: &str, n: usize, cap: u32) -> NewBatch {
    let mut configuration = BatchConfiguration::new(ConversationTier::Scenario);
    configuration.concurrent_processing = cap;
    let items = (1..=n)
        .map(|i| NewBatchItem::new(format!("{name} topic {i}")))
        .collect();
    NewBatch {
        owner: Some(owner),
        ..NewBatch::new(name, configuration, items)
    }
}

async fn create(db: &DatabaseConnection, new: NewBatch) -> batch_jobs::Model {
    batches::create(db, SERVICE, new).await.unwrap()
}

/// A conversation of `owner`'s, as a generator would store it.
async fn conversation(db: &DatabaseConnection, owner: ProfileId) -> ConversationId {
    let new = NewConversation {
        owner: Some(owner),
        conversation_id: format!("conv-{}", Uuid::new_v4().simple()),
        title: None,
        tier: ConversationTier::Scenario,
        persona: "retiree".into(),
        emotion: "calm".into(),
        topic: "pensions".into(),
        intent: "plan".into(),
        tone: "warm".into(),
        category: vec![],
        parameters: serde_json::Value::Null,
        turns: vec![],
    };
    conversations::create(db, SERVICE, new)
        .await
        .unwrap()
        .conversation
        .id
}

async fn claim(db: &DatabaseConnection) -> Option<ClaimedItem> {
    repo::claim_next(db, SERVICE, "worker-1", LEASE)
        .await
        .unwrap()
}

/// (batch name, position) of a claim.
fn label(c: &ClaimedItem) -> (String, i32) {
    (c.batch.name.clone(), c.item.position)
}

async fn batch(db: &DatabaseConnection, id: BatchId) -> batch_jobs::Model {
    batches::get(db, SERVICE, id).await.unwrap()
}

/// How many items of `batch` are in `status` (in the service's context).
async fn count_items(db: &DatabaseConnection, batch: BatchId, status: ItemStatus) -> u64 {
    as_service(db, move |txn| {
        Box::pin(async move {
            Ok(batch_items::Entity::find()
                .filter(batch_items::Column::BatchJobId.eq(batch))
                .filter(batch_items::Column::Status.eq(status))
                .count(txn)
                .await?)
        })
    })
    .await
}

/// (total, completed, successful, failed).
fn counters(b: &batch_jobs::Model) -> (i32, i32, i32, i32) {
    (
        b.total_items,
        b.completed_items,
        b.successful_items,
        b.failed_items,
    )
}

/// The batch's counters equal what its items say.
async fn assert_counters_match_items(db: &DatabaseConnection, id: BatchId) {
    let b = batch(db, id).await;
    let done = count_items(db, id, ItemStatus::Completed).await as i32;
    let failed = count_items(db, id, ItemStatus::Failed).await as i32;
    let total = stored_items(db, id).await.len() as i32;
    assert_eq!(
        counters(&b),
        (total, done + failed, done, failed),
        "counters equal the items"
    );
}

fn assert_item_transition<T: std::fmt::Debug>(
    result: Result<T, ForgeError>,
    from: ItemStatus,
    to: ItemStatus,
) {
    assert!(
        matches!(&result, Err(ForgeError::InvalidTransition { entity: "batch item", from: f, to: t })
            if f == from.as_str() && t == to.as_str()),
        "{from} → {to}: {result:?}"
    );
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, ForgeError>, what: &str) {
    assert!(
        matches!(&result, Err(ForgeError::NotFound { entity, .. }) if *entity == what),
        "expected {what} NotFound: {result:?}"
    );
}

fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, ForgeError>) {
    assert!(
        matches!(result, Err(ForgeError::Forbidden { .. })),
        "expected Forbidden: {result:?}"
    );
}

async fn claims_by_priority_then_age_then_position(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    for (name, priority) in [
        ("low", BatchPriority::Low),
        ("normal-1", BatchPriority::Normal),
        ("high", BatchPriority::High),
        ("normal-2", BatchPriority::Normal),
    ] {
        let new = NewBatch {
            priority,
            ..new_batch(a, name, 2, 10)
        };
        create(db, new).await;
    }

    let (mut order, mut started) = (Vec::new(), Vec::new());
    while let Some(c) = claim(db).await {
        started.push((c.batch.name.clone(), c.batch.started_at));
        assert_eq!(c.item.status, ItemStatus::Processing);
        assert_eq!(c.item.batch_job_id, c.batch.id);
        assert_eq!(
            c.batch.status,
            BatchStatus::Processing,
            "claiming starts it"
        );
        assert!(c.batch.started_at.is_some());
        order.push(label(&c));
    }
    let expected: Vec<(String, i32)> = ["high", "normal-1", "normal-2", "low"]
        .iter()
        .flat_map(|name| [(name.to_string(), 1), (name.to_string(), 2)])
        .collect();
    assert_eq!(order, expected);

    // `started_at` is set once, by the batch's first claim.
    for claims in started.chunk_by(|x, y| x.0 == y.0) {
        let first = &claims[0];
        assert!(
            claims.iter().all(|c| c == first),
            "{}: started once",
            first.0
        );
    }
}

async fn paused_cancelled_and_finished_batches_give_nothing(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let conv = conversation(db, a).await;
    let b = create(db, new_batch(a, "b", 3, 3)).await;

    batches::pause(db, SERVICE, b.id).await.unwrap();
    assert!(
        claim(db).await.is_none(),
        "a paused queued batch gives nothing"
    );
    assert_eq!(
        batches::resume(db, SERVICE, b.id).await.unwrap().status,
        BatchStatus::Queued
    );
    let first = claim(db).await.unwrap();
    assert_eq!(first.item.position, 1);

    // Paused while item 1 is in flight: nothing more is claimed, item 1 still finishes.
    batches::pause(db, SERVICE, b.id).await.unwrap();
    assert!(claim(db).await.is_none());
    repo::set_progress(db, SERVICE, first.item.id, "worker-1", 50)
        .await
        .unwrap();
    let done = repo::complete(db, SERVICE, first.item.id, "worker-1", conv)
        .await
        .unwrap();
    assert_eq!(done.batch.status, BatchStatus::Paused);
    assert_eq!(counters(&done.batch), (3, 1, 1, 0));

    // Resumed, the batch is queued again (SCHEMA.md: `paused → queued`); the next claim
    // moves it back to processing, keeping when processing first started.
    let started_at = first.batch.started_at;
    assert!(started_at.is_some());
    let resumed = batches::resume(db, SERVICE, b.id).await.unwrap();
    assert_eq!(
        (resumed.status, resumed.started_at),
        (BatchStatus::Queued, started_at)
    );
    let second = claim(db).await.unwrap();
    assert_eq!(second.item.position, 2);
    assert_eq!(
        (second.batch.status, second.batch.started_at),
        (BatchStatus::Processing, started_at)
    );

    // Cancelled: the queued item fails, the one in flight finishes, nothing is claimable.
    batches::cancel(db, SERVICE, b.id).await.unwrap();
    assert!(claim(db).await.is_none());
    let done = repo::complete(db, SERVICE, second.item.id, "worker-1", conv)
        .await
        .unwrap();
    assert_eq!(done.batch.status, BatchStatus::Cancelled);
    assert_eq!(counters(&done.batch), (3, 3, 2, 1));
    assert_counters_match_items(db, b.id).await;

    // Completed and failed batches give nothing either.
    let finished = create(db, new_batch(a, "finished", 1, 1)).await;
    let only = claim(db).await.unwrap();
    assert_eq!(only.batch.id, finished.id);
    repo::complete(db, SERVICE, only.item.id, "worker-1", conv)
        .await
        .unwrap();
    let mut stop = new_batch(a, "stopped", 2, 1);
    stop.configuration.error_handling = ErrorHandling::Stop;
    let stopped = create(db, stop).await;
    let item = claim(db).await.unwrap();
    repo::fail(db, SERVICE, item.item.id, "worker-1", "model refused")
        .await
        .unwrap();
    assert_eq!(batch(db, stopped.id).await.status, BatchStatus::Failed);
    assert_eq!(count_items(db, stopped.id, ItemStatus::Queued).await, 1);
    assert!(claim(db).await.is_none());
}

async fn at_most_concurrent_processing_in_flight(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let conv = conversation(db, a).await;
    let b = create(db, new_batch(a, "capped", 5, 2)).await;

    let first = claim(db).await.unwrap();
    let second = claim(db).await.unwrap();
    assert!(claim(db).await.is_none(), "two in flight: the limit");
    assert_eq!(count_items(db, b.id, ItemStatus::Processing).await, 2);
    let many = repo::claim_many(db, SERVICE, "w", LEASE, 10).await.unwrap();
    assert!(many.is_empty());

    repo::complete(db, SERVICE, first.item.id, "worker-1", conv)
        .await
        .unwrap();
    assert_eq!(claim(db).await.unwrap().item.position, 3);
    assert!(claim(db).await.is_none());
    repo::fail(db, SERVICE, second.item.id, "worker-1", "timeout")
        .await
        .unwrap();
    let third = claim(db).await.unwrap();
    assert_eq!(third.item.position, 4);
    assert!(claim(db).await.is_none());

    // Batched claims take each batch's free slots, batch after batch.
    let other = create(db, new_batch(a, "wide", 4, 3)).await;
    let positions: Vec<(String, i32)> = repo::claim_many(db, SERVICE, "w", LEASE, 10)
        .await
        .unwrap()
        .iter()
        .map(label)
        .collect();
    assert_eq!(
        positions,
        [
            ("wide".to_string(), 1),
            ("wide".to_string(), 2),
            ("wide".to_string(), 3)
        ]
    );
    assert_eq!(count_items(db, other.id, ItemStatus::Processing).await, 3);
    assert_eq!(count_items(db, b.id, ItemStatus::Processing).await, 2);

    // A requeued item (its worker stopped) frees its slot and is claimed again first.
    repo::set_progress(db, SERVICE, third.item.id, "worker-1", 60)
        .await
        .unwrap();
    let back = repo::requeue(db, SERVICE, third.item.id).await.unwrap();
    assert_eq!((back.status, back.progress), (ItemStatus::Queued, Some(0)));
    assert_item_transition(
        repo::requeue(db, SERVICE, third.item.id).await,
        ItemStatus::Queued,
        ItemStatus::Queued,
    );
    let again = claim(db).await.unwrap();
    assert_eq!((again.item.id, again.item.position), (third.item.id, 4));
    assert!(claim(db).await.is_none());

    for limit in [0, MAX_CLAIM + 1] {
        let err = repo::claim_many(db, SERVICE, "w", LEASE, limit)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { field: "limit", .. }),
            "{err:?}"
        );
    }
    let err = repo::claim_next(db, SERVICE, "  ", LEASE)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::Validation {
                field: "worker",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn progress_of_processing_items_only(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let conv = conversation(db, a).await;
    let b = create(db, new_batch(a, "b", 2, 1)).await;
    let queued = stored_items(db, b.id).await[1].clone();

    let c = claim(db).await.unwrap();
    assert_eq!(c.item.progress, Some(0));
    for p in [0, 40, 100, 75] {
        let item = repo::set_progress(db, SERVICE, c.item.id, "worker-1", p)
            .await
            .unwrap();
        assert_eq!(item.progress, Some(p));
        assert_eq!(item.status, ItemStatus::Processing);
    }
    for p in [-1, 101] {
        let err = repo::set_progress(db, SERVICE, c.item.id, "worker-1", p)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ForgeError::Validation {
                    field: "progress",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(
        repo::get(db, SERVICE, c.item.id).await.unwrap().progress,
        Some(75)
    );
    assert_item_transition(
        repo::set_progress(db, SERVICE, queued.id, "worker-1", 10).await,
        ItemStatus::Queued,
        ItemStatus::Processing,
    );
    assert_not_found(
        repo::set_progress(db, SERVICE, BatchItemId::new(), "worker-1", 10).await,
        "batch item",
    );

    let done = repo::complete(db, SERVICE, c.item.id, "worker-1", conv)
        .await
        .unwrap();
    assert_eq!(done.item.progress, Some(100));
    assert_eq!(done.item.conversation_id, Some(conv));
    assert_item_transition(
        repo::set_progress(db, SERVICE, c.item.id, "worker-1", 10).await,
        ItemStatus::Completed,
        ItemStatus::Processing,
    );
    assert_eq!(
        stored_items(db, b.id).await[1],
        queued,
        "the queued item is untouched"
    );
}

async fn refused_finishes_change_nothing(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b_user = profile(db, "b@example.com").await;
    let conv = conversation(db, a).await;
    let b_conv = conversation(db, b_user).await;
    let b = create(db, new_batch(a, "b", 3, 2)).await;
    let queued = stored_items(db, b.id).await[2].clone();
    let c = claim(db).await.unwrap();
    let before = (batch(db, b.id).await, stored_items(db, b.id).await);

    assert_not_found(
        repo::complete(db, SERVICE, c.item.id, "worker-1", ConversationId::new()).await,
        "conversation",
    );
    let err = repo::complete(db, SERVICE, c.item.id, "worker-1", b_conv)
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Conflict { .. }), "{err:?}");
    for error in ["", "   ", &"e".repeat(10_001)] {
        let err = repo::fail(db, SERVICE, c.item.id, "worker-1", error)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { field: "error", .. }),
            "{err:?}"
        );
    }
    assert_item_transition(
        repo::complete(db, SERVICE, queued.id, "worker-1", conv).await,
        ItemStatus::Queued,
        ItemStatus::Completed,
    );
    assert_item_transition(
        repo::fail(db, SERVICE, queued.id, "worker-1", "boom").await,
        ItemStatus::Queued,
        ItemStatus::Failed,
    );
    assert_not_found(
        repo::complete(db, SERVICE, BatchItemId::new(), "worker-1", conv).await,
        "batch item",
    );
    assert_not_found(
        repo::fail(db, SERVICE, BatchItemId::new(), "worker-1", "boom").await,
        "batch item",
    );
    assert_eq!(
        (batch(db, b.id).await, stored_items(db, b.id).await),
        before,
        "refusals change nothing"
    );

    // Finished once: a second finish, of either kind, is refused.
    repo::complete(db, SERVICE, c.item.id, "worker-1", conv)
        .await
        .unwrap();
    let after = batch(db, b.id).await;
    assert_item_transition(
        repo::complete(db, SERVICE, c.item.id, "worker-1", conv).await,
        ItemStatus::Completed,
        ItemStatus::Completed,
    );
    assert_item_transition(
        repo::fail(db, SERVICE, c.item.id, "worker-1", "late").await,
        ItemStatus::Completed,
        ItemStatus::Failed,
    );
    assert_eq!(counters(&batch(db, b.id).await), counters(&after));
    assert_eq!(counters(&after), (3, 1, 1, 0));
}

async fn batch_completes_with_its_last_item(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let conv = conversation(db, a).await;
    let b = create(db, new_batch(a, "b", 3, 3)).await;
    let claimed = repo::claim_many(db, SERVICE, "w", LEASE, 3).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.item.position).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    let FinishedItem { item, batch: after } =
        repo::complete(db, SERVICE, claimed[0].item.id, "w", conv)
            .await
            .unwrap();
    assert_eq!(item.status, ItemStatus::Completed);
    assert_eq!(
        (after.status, counters(&after)),
        (BatchStatus::Processing, (3, 1, 1, 0))
    );
    assert!(after.completed_at.is_none());

    let failed = repo::fail(db, SERVICE, claimed[1].item.id, "w", "  model refused ")
        .await
        .unwrap();
    assert_eq!(failed.item.status, ItemStatus::Failed);
    assert_eq!(failed.item.error.as_deref(), Some("model refused"));
    assert_eq!(failed.item.conversation_id, None);
    assert_eq!(
        (failed.batch.status, counters(&failed.batch)),
        (BatchStatus::Processing, (3, 2, 1, 1)),
        "'continue': a failure does not stop the batch"
    );

    let last = repo::complete(db, SERVICE, claimed[2].item.id, "w", conv)
        .await
        .unwrap();
    assert_eq!(
        (last.batch.status, counters(&last.batch)),
        (BatchStatus::Completed, (3, 3, 2, 1))
    );
    assert!(last.batch.completed_at.is_some());
    assert_eq!(batch(db, b.id).await, last.batch);
    assert_counters_match_items(db, b.id).await;
    assert!(claim(db).await.is_none());
}

async fn error_handling_stop_fails_the_batch(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let conv = conversation(db, a).await;
    let mut new = new_batch(a, "strict", 5, 2);
    new.configuration.error_handling = ErrorHandling::Stop;
    let b = create(db, new).await;
    let later = create(db, new_batch(a, "later", 1, 1)).await;

    let first = claim(db).await.unwrap();
    let second = claim(db).await.unwrap();
    let failed = repo::fail(db, SERVICE, first.item.id, "worker-1", "model refused")
        .await
        .unwrap();
    assert_eq!(failed.batch.status, BatchStatus::Failed);
    assert!(failed.batch.completed_at.is_some());
    assert_eq!(counters(&failed.batch), (5, 1, 0, 1));

    // The failed batch gives nothing more; the next batch's item comes next.
    let next = claim(db).await.unwrap();
    assert_eq!(next.batch.id, later.id);
    assert!(claim(db).await.is_none());

    // The item already in flight still finishes; the batch stays failed.
    let done = repo::complete(db, SERVICE, second.item.id, "worker-1", conv)
        .await
        .unwrap();
    assert_eq!(done.batch.status, BatchStatus::Failed);
    assert_eq!(done.batch.completed_at, failed.batch.completed_at);
    assert_eq!(counters(&done.batch), (5, 2, 1, 1));
    assert_eq!(count_items(db, b.id, ItemStatus::Queued).await, 3);
    assert_counters_match_items(db, b.id).await;
}

async fn users_cannot_work_items_and_b_cannot_see_a_items(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b_user = profile(db, "b@example.com").await;
    let conv = conversation(db, a).await;
    let b = create(db, new_batch(a, "a's", 3, 3)).await;
    let c = claim(db).await.unwrap();
    let before = (batch(db, b.id).await, stored_items(db, b.id).await);
    let item = before.1[1].clone();

    for user in [Actor::User(a), Actor::User(b_user)] {
        assert_forbidden(repo::claim_next(db, user, "w", LEASE).await);
        assert_forbidden(repo::claim_many(db, user, "w", LEASE, 2).await);
        assert_forbidden(repo::set_progress(db, user, c.item.id, "worker-1", 5).await);
        assert_forbidden(repo::complete(db, user, c.item.id, "worker-1", conv).await);
        assert_forbidden(repo::fail(db, user, c.item.id, "worker-1", "no").await);
        assert_forbidden(repo::requeue(db, user, c.item.id).await);
    }
    // A reads the items of their own batch; to B they do not exist.
    let ua = Actor::User(a);
    let ub = Actor::User(b_user);
    assert_eq!(repo::get(db, ua, item.id).await.unwrap(), item);
    assert_eq!(repo::get(db, SERVICE, item.id).await.unwrap(), item);
    assert!(repo::find(db, ub, item.id).await.unwrap().is_none());
    assert_not_found(repo::get(db, ub, c.item.id).await, "batch item");
    assert_not_found(repo::get(db, ua, BatchItemId::new()).await, "batch item");

    assert_eq!(
        (batch(db, b.id).await, stored_items(db, b.id).await),
        before,
        "nothing changed"
    );
}

/// The most items of `batch` a sampler saw processing at once, polling until `stop`.
async fn sample_in_flight(db: DatabaseConnection, batch: BatchId, stop: Arc<AtomicBool>) -> u64 {
    let mut max = 0;
    while !stop.load(Ordering::Relaxed) {
        max = max.max(count_items(&db, batch, ItemStatus::Processing).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    db.close().await.ok();
    max
}

/// The value of the repository call `$call`, made again while SQLite's write lock stays
/// busy past the busy timeout (`$retries` counts how often). Several connections writing
/// one SQLite file queue on its lock, and under a sustained load one of them may wait
/// longer than the timeout; in WAL mode only `BEGIN IMMEDIATE` can be refused, before
/// anything changed, so a retry is safe, as it is for a real worker.
macro_rules! retry_busy {
    ($retries:ident, $call:expr) => {
        loop {
            match $call.await {
                Ok(value) => break value,
                Err(ForgeError::Db(e)) if e.to_string().contains("database is locked") => {
                    $retries += 1;
                }
                Err(e) => panic!("worker call failed: {e:?}"),
            }
        }
    };
}

/// A worker: claims (up to `per_claim` at a time) and finishes items until nothing of
/// `batch` is queued any more; the ids it claimed, and how often SQLite's lock was busy.
/// Items whose position is a multiple of `fail_every` fail, the others complete.
async fn work(
    db: DatabaseConnection,
    name: String,
    batch: BatchId,
    conv: ConversationId,
    per_claim: u32,
    fail_every: i32,
) -> (Vec<BatchItemId>, u32) {
    let (mut claimed, mut busy) = (Vec::new(), 0);
    loop {
        let items = retry_busy!(
            busy,
            repo::claim_many(&db, SERVICE, &name, LEASE, per_claim)
        );
        if items.is_empty() {
            if count_items(&db, batch, ItemStatus::Queued).await == 0 {
                break;
            }
            // Every slot is taken: poll again.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        for c in items {
            let id = c.item.id;
            claimed.push(id);
            if c.item.position % fail_every == 0 {
                retry_busy!(
                    busy,
                    repo::fail(&db, SERVICE, id, &name, "generation failed")
                );
            } else {
                retry_busy!(busy, repo::complete(&db, SERVICE, id, &name, conv));
            }
        }
    }
    db.close().await.ok();
    (claimed, busy)
}

struct Race {
    items: usize,
    workers: usize,
    cap: u32,
    per_claim: u32,
    fail_every: i32,
}

/// Runs `race` on a database several pools share; checks every item was claimed exactly
/// once, the cap held, and the counters; returns the finished batch.
async fn run_race(t: &TestDb, race: Race) -> batch_jobs::Model {
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    if t.backend() == DbBackend::Sqlite {
        // Several processes writing one SQLite file: write-ahead logging, so readers never
        // block a writer and a commit is one append (the journal mode stays with the file).
        setup
            .execute_unprepared("PRAGMA journal_mode = WAL")
            .await
            .unwrap();
    }
    let a = profile(&setup, "race@example.com").await;
    let conv = conversation(&setup, a).await;
    let b = create(&setup, new_batch(a, "race", race.items, race.cap)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_in_flight(shared.pool().await, b.id, stop.clone()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for (w, db) in shared.pools(race.workers).await.into_iter().enumerate() {
        workers.push(tokio::spawn(work(
            db,
            format!("worker-{w}"),
            b.id,
            conv,
            race.per_claim,
            race.fail_every,
        )));
    }
    let (mut claimed, mut busy) = (Vec::new(), 0);
    for w in workers {
        let (mine, retries) = w.await.unwrap();
        claimed.extend(mine);
        busy += retries;
    }
    stop.store(true, Ordering::Relaxed);
    let max_in_flight = sampler.await.unwrap();
    eprintln!(
        "{:?}: {} workers drained {} items in {:?}, at most {max_in_flight} in flight \
         (cap {}), {busy} calls retried on a busy SQLite lock",
        t.backend(),
        race.workers,
        race.items,
        started.elapsed(),
        race.cap
    );

    let unique: HashSet<BatchItemId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), race.items, "no item claimed twice");
    let all: HashSet<BatchItemId> = stored_items(&setup, b.id)
        .await
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(unique, all, "every item claimed, none lost");
    assert!(
        max_in_flight <= u64::from(race.cap),
        "{max_in_flight} in flight, cap {}",
        race.cap
    );
    assert_eq!(count_items(&setup, b.id, ItemStatus::Queued).await, 0);
    assert_eq!(count_items(&setup, b.id, ItemStatus::Processing).await, 0);
    assert_counters_match_items(&setup, b.id).await;
    let done = batch(&setup, b.id).await;
    assert_eq!(done.status, BatchStatus::Completed);
    assert!(done.completed_at.is_some());
    setup.close().await.ok();
    shared.finish();
    done
}

async fn eight_workers_drain_two_thousand_items_exactly_once(t: &TestDb) {
    let done = run_race(
        t,
        Race {
            items: 2_000,
            workers: 8,
            cap: 5,
            per_claim: 1,
            fail_every: i32::MAX,
        },
    )
    .await;
    assert_eq!(counters(&done), (2_000, 2_000, 2_000, 0));
}

async fn racing_workers_with_failures_keep_counters_exact(t: &TestDb) {
    let done = run_race(
        t,
        Race {
            items: 600,
            workers: 6,
            cap: 8,
            per_claim: 3,
            fail_every: 5,
        },
    )
    .await;
    assert_eq!(counters(&done), (600, 600, 480, 120));
}
