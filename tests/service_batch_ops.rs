//! forge_service::batches on both backends: deleting a batch (never while it runs) and the
//! workers' estimate of its time remaining, and on PostgreSQL the database wall agreeing
//! with each refusal when an end user sends the SQL directly.

mod common;
use common::signup as profile;

use std::time::Duration;

use common::{TestDb, stored_items};
use forge_db::entity::batch_jobs::{self, BatchConfiguration, BatchPriority, BatchStatus};
use forge_db::entity::conversations::ConversationTier;
use forge_db::entity::ids::{BatchId, BatchItemId, ProfileId};
use forge_db::sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
use forge_db::service::batches::{self as repo, NewBatch, NewBatchItem};
use forge_db::service::testing::fixtures;
use forge_db::service::{Actor, ForgeError, batch_items, conversations};

on_both_backends! {
    delete_refuses_a_running_batch => delete_refuses_a_running_batch;
    delete_is_the_owners_or_the_services => delete_is_the_owners_or_the_services;
    estimated_time_remaining_is_the_services => estimated_time_remaining_is_the_services;
}

const LEASE: Duration = Duration::from_secs(60);

/// Runs `sql` on PostgreSQL as `authenticated` with `user`'s JWT claims, as an end user
/// reaching the table directly (PostgREST) would, in a transaction that is rolled back:
/// the rows it changed, or the database's refusal.
async fn as_end_user(t: &TestDb, user: ProfileId, sql: &str) -> Result<u64, String> {
    let txn = t.owner.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "SET LOCAL ROLE authenticated; \
         SELECT set_config('request.jwt.claims', '{{\"sub\":\"{user}\",\"role\":\"authenticated\"}}', true), \
                set_config('request.jwt.claim.sub', '{user}', true);"
    ))
    .await
    .unwrap();
    let outcome = txn
        .execute_unprepared(sql)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| e.to_string());
    txn.rollback().await.unwrap();
    outcome
}

fn not_found<T: std::fmt::Debug>(result: Result<T, ForgeError>) {
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

fn invalid_state<T: std::fmt::Debug>(result: Result<T, ForgeError>, from: BatchStatus, to: &str) {
    match result {
        Err(ForgeError::InvalidTransition {
            entity: "batch",
            from: f,
            to: t,
        }) => assert_eq!((f.as_str(), t.as_str()), (from.as_str(), to)),
        other => panic!("expected InvalidTransition {from} → {to}: {other:?}"),
    }
}

/// A batch of `owner` with `items` items that a worker has started: `processing`, with
/// one item claimed. The batch, the worker and the item it holds.
async fn running_batch(
    t: &TestDb,
    owner: ProfileId,
    items: usize,
) -> (batch_jobs::Model, String, BatchItemId) {
    // High priority: claimed before any other batch of the test.
    let new = NewBatch {
        priority: BatchPriority::High,
        ..NewBatch::new(
            "Running",
            BatchConfiguration::new(ConversationTier::Template),
            (1..=items)
                .map(|n| NewBatchItem::new(format!("topic {n}")))
                .collect(),
        )
    };
    let batch = repo::create(&t.db, Actor::User(owner), new).await.unwrap();
    let worker = format!("worker-{}", batch.id);
    let claimed = batch_items::claim_next(&t.db, Actor::Service, &worker, LEASE)
        .await
        .unwrap()
        .expect("an item to claim");
    assert_eq!(claimed.batch.id, batch.id);
    assert_eq!(claimed.batch.status, BatchStatus::Processing);
    (claimed.batch, worker, claimed.item.id)
}

async fn delete_refuses_a_running_batch(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let ua = Actor::User(a);

    // A queued batch goes, with its items.
    let queued = fixtures::batch_with_items(db, a, 3).await.unwrap();
    assert_eq!(stored_items(db, queued.id).await.len(), 3);
    repo::delete(db, ua, queued.id).await.unwrap();
    not_found(repo::get(db, ua, queued.id).await);
    assert!(
        stored_items(db, queued.id).await.is_empty(),
        "the items went too"
    );
    not_found(repo::delete(db, ua, queued.id).await);

    // A running one stays, for its owner and the service alike, until it is paused.
    let (running, worker, held) = running_batch(t, a, 2).await;
    for actor in [ua, Actor::Service] {
        invalid_state(
            repo::delete(db, actor, running.id).await,
            BatchStatus::Processing,
            "deleted",
        );
    }
    assert_eq!(stored_items(db, running.id).await.len(), 2);
    repo::pause(db, ua, running.id).await.unwrap();
    repo::delete(db, ua, running.id).await.unwrap();
    not_found(repo::get(db, Actor::Service, running.id).await);
    // The item its worker still held went with it: finishing it finds nothing, and the
    // conversation the worker made stays its owner's.
    let made = fixtures::conversation_with_turns(db, a, 2)
        .await
        .unwrap()
        .conversation;
    let err = batch_items::fail(db, Actor::Service, held, &worker, "gave up")
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }), "{err:?}");
    assert!(
        conversations::find(db, ua, made.id)
            .await
            .unwrap()
            .is_some()
    );

    // Ended batches go: completed, cancelled.
    let (finishing, worker, item) = running_batch(t, a, 1).await;
    let conversation = fixtures::conversation_with_turns(db, a, 2)
        .await
        .unwrap()
        .conversation;
    batch_items::complete(db, Actor::Service, item, &worker, conversation.id)
        .await
        .unwrap();
    let done = repo::get(db, ua, finishing.id).await.unwrap();
    assert_eq!(done.status, BatchStatus::Completed);
    repo::delete(db, ua, finishing.id).await.unwrap();
    assert!(
        conversations::find(db, ua, conversation.id)
            .await
            .unwrap()
            .is_some(),
        "the conversations its items made stay"
    );
    let cancelled = fixtures::batch_with_items(db, a, 1).await.unwrap();
    repo::cancel(db, ua, cancelled.id).await.unwrap();
    repo::delete(db, ua, cancelled.id).await.unwrap();
    not_found(repo::get(db, ua, cancelled.id).await);
}

async fn delete_is_the_owners_or_the_services(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let ua = Actor::User(a);
    let theirs = fixtures::batch_with_items(db, b, 2).await.unwrap();

    // Another user's batch, or none, is not found, whatever its state; it stays.
    not_found(repo::delete(db, ua, theirs.id).await);
    not_found(repo::delete(db, ua, BatchId::new()).await);
    not_found(repo::delete(db, Actor::Service, BatchId::new()).await);
    let (running, ..) = running_batch(t, b, 1).await;
    not_found(repo::delete(db, ua, running.id).await);
    assert_eq!(
        repo::get(db, Actor::Service, theirs.id).await.unwrap(),
        theirs
    );
    assert_eq!(stored_items(db, theirs.id).await.len(), 2);

    if t.backend() == DbBackend::Postgres {
        // Directly, another user's batch is out of reach; one's own may be deleted.
        let sql = format!("DELETE FROM batch_jobs WHERE id = '{}'", theirs.id);
        assert_eq!(as_end_user(t, a, &sql).await, Ok(0));
        assert_eq!(as_end_user(t, b, &sql).await, Ok(1));
    }

    // The service deletes anyone's.
    repo::delete(db, Actor::Service, theirs.id).await.unwrap();
    not_found(repo::get(db, Actor::Service, theirs.id).await);
}

async fn estimated_time_remaining_is_the_services(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let ua = Actor::User(a);
    let service = Actor::Service;
    let batch = fixtures::batch_with_items(db, a, 2).await.unwrap();
    assert_eq!(batch.estimated_time_remaining, None);

    let set = repo::set_estimated_time_remaining(db, service, batch.id, Some(120))
        .await
        .unwrap();
    assert_eq!(set.estimated_time_remaining, Some(120));
    assert_eq!(
        (set.status, set.total_items),
        (BatchStatus::Queued, 2),
        "nothing else moved"
    );
    assert_eq!(repo::get(db, ua, batch.id).await.unwrap(), set, "as stored");

    // While it runs, and paused; zero is an estimate too; `None` clears it.
    let (running, ..) = running_batch(t, a, 1).await;
    let now = repo::set_estimated_time_remaining(db, service, running.id, Some(0))
        .await
        .unwrap();
    assert_eq!(
        (now.status, now.estimated_time_remaining),
        (BatchStatus::Processing, Some(0))
    );
    repo::pause(db, ua, running.id).await.unwrap();
    let paused = repo::set_estimated_time_remaining(db, service, running.id, Some(i32::MAX))
        .await
        .unwrap();
    assert_eq!(paused.estimated_time_remaining, Some(i32::MAX));
    let cleared = repo::set_estimated_time_remaining(db, service, running.id, None)
        .await
        .unwrap();
    assert_eq!(cleared.estimated_time_remaining, None);

    // Refused: a negative estimate, a user, an unknown batch; nothing changes.
    let err = repo::set_estimated_time_remaining(db, service, batch.id, Some(-1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::Validation {
                field: "estimated_time_remaining",
                ..
            }
        ),
        "{err:?}"
    );
    let err = repo::set_estimated_time_remaining(db, ua, batch.id, Some(5))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    not_found(repo::set_estimated_time_remaining(db, service, BatchId::new(), Some(5)).await);
    not_found(repo::set_estimated_time_remaining(db, service, BatchId::new(), None).await);
    assert_eq!(repo::get(db, ua, batch.id).await.unwrap(), set);

    // An ended batch gets no estimate (a late report cannot put one back), but clearing
    // one works.
    repo::cancel(db, ua, batch.id).await.unwrap();
    invalid_state(
        repo::set_estimated_time_remaining(db, service, batch.id, Some(30)).await,
        BatchStatus::Cancelled,
        "an estimated time remaining",
    );
    assert_eq!(
        repo::get(db, ua, batch.id)
            .await
            .unwrap()
            .estimated_time_remaining,
        Some(120)
    );
    let cleared = repo::set_estimated_time_remaining(db, service, batch.id, None)
        .await
        .unwrap();
    assert_eq!(
        (cleared.status, cleared.estimated_time_remaining),
        (BatchStatus::Cancelled, None)
    );

    if t.backend() == DbBackend::Postgres {
        // The owner holds no privilege on the column.
        let sql = format!(
            "UPDATE batch_jobs SET estimated_time_remaining = 1 WHERE id = '{}'",
            running.id
        );
        match as_end_user(t, a, &sql).await {
            Err(e) => assert!(e.contains("permission denied"), "{e}"),
            Ok(n) => panic!("the database let it through ({n} rows)"),
        }
    }
}
