//! forge_service::batches on both backends: bulk creation, items by position, pause /
//! resume / cancel with counters that follow the items, and isolation between users.

mod common;
use common::signup as profile;
use forge_db::entity::ids::{BatchId, ProfileId};

use std::time::{Duration, Instant};

use common::{TestDb, as_service, stored_items};
use forge_db::entity::batch_items::{self, ItemStatus};
use forge_db::entity::batch_jobs::{self, BatchConfiguration, BatchPriority, BatchStatus};
use forge_db::entity::conversations::ConversationTier;
use forge_db::sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, Set,
};
use forge_db::service::batch_items::claim_next;
use forge_db::service::batches::{
    self as repo, CANCELLED_ITEM_ERROR, ItemPage, ItemPageRequest, NewBatch, NewBatchItem,
};
use forge_db::service::{Access, Actor, ForgeError, PageRequest, run_as};
use serde_json::json;

on_both_backends! {
    five_thousand_items_in_one_call => five_thousand_items_in_one_call;
    refused_input_inserts_nothing => refused_input_inserts_nothing;
    items_page_by_position => items_page_by_position;
    pause_resume_cancel => pause_resume_cancel;
    cancel_fails_queued_items_and_counters_follow => cancel_fails_queued_items_and_counters_follow;
    batches_list_newest_first => batches_list_newest_first;
    user_b_cannot_see_or_touch_a_batches => user_b_cannot_see_or_touch_a_batches;
}

fn items(n: usize) -> Vec<NewBatchItem> {
    (1..=n)
        .map(|i| NewBatchItem::new(format!("topic {i}")))
        .collect()
}

fn new_batch(name: &str, n: usize) -> NewBatch {
    NewBatch::new(
        name,
        BatchConfiguration::new(ConversationTier::Scenario),
        items(n),
    )
}

/// How many items `batch` has (in `status`), counted in the service's context (the test
/// pool may do nothing outside one on PostgreSQL).
async fn item_count(db: &DatabaseConnection, batch: BatchId, status: Option<ItemStatus>) -> u64 {
    as_service(db, move |txn| {
        Box::pin(async move {
            let mut select =
                batch_items::Entity::find().filter(batch_items::Column::BatchJobId.eq(batch));
            if let Some(status) = status {
                select = select.filter(batch_items::Column::Status.eq(status));
            }
            Ok(select.count(txn).await?)
        })
    })
    .await
}

/// `actor` may not create a batch in `owner`'s name.
async fn assert_cannot_create_for(db: &DatabaseConnection, actor: Actor, owner: ProfileId) {
    let new = NewBatch {
        owner: Some(owner),
        ..new_batch("in someone else's name", 1)
    };
    let err = repo::create(db, actor, new).await.unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "profile",
                ..
            }
        ),
        "{err:?}"
    );
}

/// The call found no batch (it does not exist, or is someone else's).
fn assert_no_batch<T: std::fmt::Debug>(result: Result<T, ForgeError>) {
    assert!(
        matches!(
            result,
            Err(ForgeError::NotFound {
                entity: "batch",
                ..
            })
        ),
        "expected NotFound: {result:?}"
    );
}

/// The batch's counters equal what its items say.
async fn assert_counters_match_items(db: &DatabaseConnection, batch: &batch_jobs::Model) {
    let failed = item_count(db, batch.id, Some(ItemStatus::Failed)).await as i32;
    let done = item_count(db, batch.id, Some(ItemStatus::Completed)).await as i32;
    assert_eq!(
        (
            batch.total_items,
            batch.successful_items,
            batch.failed_items,
            batch.completed_items
        ),
        (
            item_count(db, batch.id, None).await as i32,
            done,
            failed,
            done + failed
        ),
        "counters equal the items"
    );
}

async fn five_thousand_items_in_one_call(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let mut items = items(5_000);
    items[7].tier = Some(ConversationTier::EdgeCase);
    items[8].parameters = json!({"persona": "retiree"});
    let new = NewBatch {
        priority: BatchPriority::High,
        ..NewBatch::new(
            "  Big batch ",
            BatchConfiguration::new(ConversationTier::Scenario),
            items,
        )
    };
    let started = Instant::now();
    let batch = repo::create(db, Actor::User(a), new).await.unwrap();
    eprintln!(
        "{:?}: created a batch of 5000 items in {:?}",
        t.backend(),
        started.elapsed()
    );

    assert_eq!(batch.name, "Big batch");
    assert_eq!(batch.created_by, a);
    assert_eq!(
        (batch.status, batch.priority, batch.total_items),
        (BatchStatus::Queued, BatchPriority::High, 5_000)
    );
    let got = repo::get(db, Actor::User(a), batch.id).await.unwrap();
    assert_eq!(got, batch);
    assert_counters_match_items(db, &got).await;

    let stored = stored_items(db, batch.id).await;
    assert_eq!(
        stored.iter().map(|i| i.position).collect::<Vec<_>>(),
        (1..=5_000).collect::<Vec<_>>(),
        "positions 1..=5000, each once"
    );
    assert_eq!(stored[4_999].topic, "topic 5000");
    assert!(
        stored
            .iter()
            .all(|i| i.status == ItemStatus::Queued && i.progress == Some(0))
    );
    assert_eq!(stored[7].tier, ConversationTier::EdgeCase);
    assert_eq!(
        stored[6].tier,
        ConversationTier::Scenario,
        "the batch's tier"
    );
    assert_eq!(stored[8].parameters, json!({"persona": "retiree"}));
    assert_eq!(stored[9].parameters, json!({}));
}

async fn refused_input_inserts_nothing(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let ua = Actor::User(a);

    let mut bad_item = new_batch("late failure", 5_000);
    bad_item.items[3_000].topic = "   ".into();
    let mut bad_params = new_batch("bad parameters", 10);
    bad_params.items[9].parameters = json!("not an object");
    // JSON documents hold at most 64 KiB.
    let mut big_params = new_batch("big parameters", 10);
    big_params.items[4].parameters = json!({ "blob": "x".repeat(70_000) });
    let mut idle = new_batch("idle", 1);
    idle.configuration.concurrent_processing = 0;
    let mut greedy = new_batch("greedy", 1);
    greedy.configuration.concurrent_processing = repo::MAX_CONCURRENCY + 1;
    let mut shared = new_batch("shared", 1);
    shared.configuration.shared_parameters = json!([1]);
    let cases = [
        ("topic", bad_item),
        ("parameters", bad_params),
        ("parameters", big_params),
        ("concurrent_processing", idle),
        ("concurrent_processing", greedy),
        ("shared_parameters", shared),
        ("name", new_batch(" \t", 1)),
        ("name", new_batch(&"n".repeat(201), 1)),
        ("items", new_batch("empty", 0)),
    ];
    for (field, new) in cases {
        let err = repo::create(db, ua, new).await.unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { field: f, .. } if f == field),
            "{field}: {err:?}"
        );
    }
    assert_cannot_create_for(db, ua, b).await;
    let err = repo::create(db, Actor::Service, new_batch("no owner", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForgeError::Validation { field: "owner", .. }),
        "{err:?}"
    );

    let owner = &t.owner;
    assert_eq!(batch_jobs::Entity::find().count(owner).await.unwrap(), 0);
    assert_eq!(batch_items::Entity::find().count(owner).await.unwrap(), 0);

    // The service creates for a named owner, with the bounds inclusive.
    let mut edge = new_batch("edge", 1);
    edge.owner = Some(a);
    edge.configuration.concurrent_processing = repo::MAX_CONCURRENCY;
    let batch = repo::create(db, Actor::Service, edge).await.unwrap();
    assert_eq!(batch.created_by, a);
    assert_eq!(
        batch.configuration.concurrent_processing,
        repo::MAX_CONCURRENCY
    );
}

async fn all_items(
    db: &DatabaseConnection,
    actor: Actor,
    batch: BatchId,
    req: ItemPageRequest,
) -> Vec<i32> {
    let mut req = req;
    let mut positions = Vec::new();
    loop {
        let ItemPage {
            items,
            next_position,
        } = repo::list_items(db, actor, batch, req).await.unwrap();
        positions.extend(items.iter().map(|i| i.position));
        match next_position {
            Some(p) => req.after_position = Some(p),
            None => return positions,
        }
    }
}

async fn items_page_by_position(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let ua = Actor::User(a);
    let batch = repo::create(db, ua, new_batch("b", 25)).await.unwrap();

    let first = repo::list_items(db, ua, batch.id, ItemPageRequest::default())
        .await
        .unwrap();
    assert_eq!(first.items.len(), 25);
    assert_eq!(first.next_position, None);
    let paged = all_items(
        db,
        ua,
        batch.id,
        ItemPageRequest {
            limit: Some(10),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(paged, (1..=25).collect::<Vec<_>>());

    // Items taken by a worker (simulated here, as the owner) can be listed by state.
    let owner = &t.owner;
    for position in [3, 17] {
        let item = batch_items::Entity::find()
            .filter(batch_items::Column::BatchJobId.eq(batch.id))
            .filter(batch_items::Column::Position.eq(position))
            .one(owner)
            .await
            .unwrap()
            .unwrap();
        let mut item = item.into_active_model();
        item.status = Set(ItemStatus::Processing);
        item.update(owner).await.unwrap();
    }
    let processing = all_items(
        db,
        ua,
        batch.id,
        ItemPageRequest {
            limit: Some(1),
            status: Some(ItemStatus::Processing),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(processing, [3, 17]);

    for limit in [0, 201] {
        let err = repo::list_items(
            db,
            ua,
            batch.id,
            ItemPageRequest {
                limit: Some(limit),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ForgeError::Validation { field: "limit", .. }));
    }
    assert_no_batch(repo::list_items(db, ua, BatchId::new(), ItemPageRequest::default()).await);
}

fn assert_transition(err: ForgeError, from: BatchStatus, to: BatchStatus) {
    assert!(
        matches!(&err, ForgeError::InvalidTransition { entity: "batch", from: f, to: t }
            if f == from.as_str() && t == to.as_str()),
        "{from} → {to}: {err:?}"
    );
}

async fn pause_resume_cancel(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let ua = Actor::User(a);
    let batch = repo::create(db, ua, new_batch("b", 3)).await.unwrap();
    let id = batch.id;

    let err = repo::resume(db, ua, id).await.unwrap_err();
    assert_transition(err, BatchStatus::Queued, BatchStatus::Queued);
    let paused = repo::pause(db, ua, id).await.unwrap();
    assert_eq!(paused.status, BatchStatus::Paused);
    let err = repo::pause(db, ua, id).await.unwrap_err();
    assert_transition(err, BatchStatus::Paused, BatchStatus::Paused);
    // Never started: back to the queue.
    assert_eq!(
        repo::resume(db, ua, id).await.unwrap().status,
        BatchStatus::Queued
    );

    // Once a worker has started it, resume still goes back to the queue (SCHEMA.md:
    // `paused → queued`); the next claim moves it to processing again, `started_at` kept.
    let claimed = claim_next(db, Actor::Service, "worker-1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("an item to claim");
    assert_eq!(claimed.batch.status, BatchStatus::Processing);
    let started_at = claimed.batch.started_at;
    assert!(started_at.is_some());
    assert_eq!(
        repo::pause(db, Actor::Service, id).await.unwrap().status,
        BatchStatus::Paused
    );
    let resumed = repo::resume(db, Actor::Service, id).await.unwrap();
    assert_eq!(
        (resumed.status, resumed.started_at),
        (BatchStatus::Queued, started_at)
    );
    assert!(resumed.updated_at >= batch.updated_at);
    let paused = repo::pause(db, ua, id).await.unwrap();
    assert_eq!(paused.status, BatchStatus::Paused);
    let resumed = repo::resume(db, ua, id).await.unwrap();
    assert_eq!(
        (resumed.status, resumed.started_at),
        (BatchStatus::Queued, started_at),
        "a user resumes to the queue too"
    );
    let next = claim_next(db, Actor::Service, "worker-1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("another item to claim");
    assert_eq!(
        (next.batch.id, next.item.position),
        (id, claimed.item.position + 1)
    );
    assert_eq!(
        (next.batch.status, next.batch.started_at),
        (BatchStatus::Processing, started_at),
        "claimed again: processing, started when it first started"
    );
    repo::pause(db, ua, id).await.unwrap();

    let cancelled = repo::cancel(db, ua, id).await.unwrap();
    assert_eq!(cancelled.status, BatchStatus::Cancelled);
    assert!(cancelled.completed_at.is_some());
    for (result, to) in [
        (repo::pause(db, ua, id).await, BatchStatus::Paused),
        (repo::resume(db, ua, id).await, BatchStatus::Queued),
        (repo::cancel(db, ua, id).await, BatchStatus::Cancelled),
    ] {
        assert_transition(result.unwrap_err(), BatchStatus::Cancelled, to);
    }
    assert_eq!(repo::get(db, ua, id).await.unwrap(), cancelled);

    assert_no_batch(repo::pause(db, ua, BatchId::new()).await);
}

async fn cancel_fails_queued_items_and_counters_follow(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let ua = Actor::User(a);
    let batch = repo::create(db, ua, new_batch("b", 6)).await.unwrap();
    let other = repo::create(db, ua, new_batch("untouched", 2))
        .await
        .unwrap();

    // A worker (simulated, as the owner) has finished item 1, failed item 2 and is on
    // item 3; the database moves the counters with the items.
    let owner = &t.owner;
    let rows = stored_items(db, batch.id).await;
    for (row, status) in rows.into_iter().zip([
        ItemStatus::Completed,
        ItemStatus::Failed,
        ItemStatus::Processing,
    ]) {
        let mut row = row.into_active_model();
        row.status = Set(status);
        row.update(owner).await.unwrap();
    }
    let worked = repo::get(db, ua, batch.id).await.unwrap();
    assert_eq!(
        (
            worked.total_items,
            worked.successful_items,
            worked.failed_items,
            worked.completed_items
        ),
        (6, 1, 1, 2),
        "the counters followed the items"
    );

    let cancelled = repo::cancel(db, ua, batch.id).await.unwrap();
    assert_eq!(
        (
            cancelled.successful_items,
            cancelled.failed_items,
            cancelled.completed_items
        ),
        (1, 4, 5),
        "three queued items failed; the one in progress is left to its worker"
    );
    assert_counters_match_items(db, &cancelled).await;
    assert_eq!(item_count(db, batch.id, Some(ItemStatus::Queued)).await, 0);
    assert_eq!(
        item_count(db, batch.id, Some(ItemStatus::Processing)).await,
        1
    );
    let failed = batch_items::Entity::find()
        .filter(batch_items::Column::BatchJobId.eq(batch.id))
        .filter(batch_items::Column::Position.gt(3))
        .all(owner)
        .await
        .unwrap();
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(
        |i| i.status == ItemStatus::Failed && i.error.as_deref() == Some(CANCELLED_ITEM_ERROR)
    ));

    let untouched = repo::get(db, ua, other.id).await.unwrap();
    assert_eq!(untouched, other, "another batch is not touched");
    assert_eq!(item_count(db, other.id, Some(ItemStatus::Queued)).await, 2);
}

async fn batches_list_newest_first(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    for i in 0..5 {
        repo::create(db, Actor::User(a), new_batch(&format!("a-{i}"), 1))
            .await
            .unwrap();
    }
    repo::create(db, Actor::User(b), new_batch("b-0", 1))
        .await
        .unwrap();
    let mut request = PageRequest::with_limit(2);
    let mut names = Vec::new();
    loop {
        let page = repo::list(db, Actor::User(a), &request).await.unwrap();
        names.extend(page.items.into_iter().map(|b| b.name));
        match page.next {
            Some(c) => request = request.next(c.to_string().parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(names, ["a-4", "a-3", "a-2", "a-1", "a-0"]);
    let all = repo::list(db, Actor::Service, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 6);
    assert_eq!(all.items[0].name, "b-0");
}

async fn user_b_cannot_see_or_touch_a_batches(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let (ua, ub) = (Actor::User(a), Actor::User(b));
    let batch = repo::create(db, ua, new_batch("a's", 4)).await.unwrap();
    let items_before = repo::list_items(db, ua, batch.id, ItemPageRequest::default())
        .await
        .unwrap();

    assert!(repo::find(db, ub, batch.id).await.unwrap().is_none());
    assert_no_batch(repo::get(db, ub, batch.id).await);
    assert_no_batch(repo::pause(db, ub, batch.id).await);
    assert_no_batch(repo::resume(db, ub, batch.id).await);
    assert_no_batch(repo::cancel(db, ub, batch.id).await);
    assert_no_batch(repo::list_items(db, ub, batch.id, ItemPageRequest::default()).await);
    assert!(
        repo::list(db, ub, &PageRequest::first())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_cannot_create_for(db, ub, a).await;

    assert_eq!(repo::get(db, ua, batch.id).await.unwrap(), batch);
    assert_eq!(
        repo::list_items(db, ua, batch.id, ItemPageRequest::default())
            .await
            .unwrap(),
        items_before,
        "A's items are unchanged"
    );
}

/// PostgreSQL: unfiltered queries in B's context see none of A's batches or items (the
/// RLS wall on its own), and change none of A's batches; items no user may update at all
/// (SCHEMA.md: every UPDATE of `batch_items` is the service's).
#[tokio::test]
async fn postgres_rls_hides_a_batches_from_b() {
    let t = TestDb::postgres().await;
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let batch = repo::create(db, Actor::User(a), new_batch("a's", 3))
        .await
        .unwrap();
    let before = repo::get(db, Actor::User(a), batch.id).await.unwrap();

    let (jobs, items, changed) = run_as(db, Actor::User(b), Access::Write, |txn| {
        Box::pin(async move {
            let jobs = batch_jobs::Entity::find().all(txn).await?;
            let items = batch_items::Entity::find().all(txn).await?;
            let changed = batch_jobs::Entity::update_many()
                .col_expr(
                    batch_jobs::Column::Status,
                    forge_db::sea_orm::sea_query::Expr::val("paused"),
                )
                .exec(txn)
                .await?
                .rows_affected;
            Ok((jobs, items, changed))
        })
    })
    .await
    .unwrap();
    assert!(
        jobs.is_empty() && items.is_empty(),
        "RLS alone hides A's rows"
    );
    assert_eq!(changed, 0);

    let refused = run_as(db, Actor::User(b), Access::Write, |txn| {
        Box::pin(async move {
            Ok(batch_items::Entity::update_many()
                .col_expr(
                    batch_items::Column::Status,
                    forge_db::sea_orm::sea_query::Expr::val("failed"),
                )
                .exec(txn)
                .await?
                .rows_affected)
        })
    })
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused:?}"
    );
    assert_eq!(item_count(db, batch.id, Some(ItemStatus::Queued)).await, 3);
    assert_eq!(
        repo::get(db, Actor::User(a), batch.id).await.unwrap(),
        before
    );
    t.finish().await;
}
