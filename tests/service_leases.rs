//! Leases on both backends ("nothing lost"): a batch item whose worker died is taken
//! over once its lease runs out and finished exactly once, heartbeats, requeueing, the
//! batch's concurrency counting live leases only, a race of workers that abandon items;
//! and, for coding jobs, `release` (a claim handed back without spending an attempt) and
//! `cancel` (a pending job failed before any worker takes it).

mod common;
mod session_support;

use forge_db::entity::ids::{BatchId, BatchItemId, ConversationId, JobId, ProfileId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{TestDb, signup, stored_items};
use forge_db::entity::batch_items::{self, ItemStatus};
use forge_db::entity::batch_jobs::{self, BatchConfiguration, BatchStatus};
use forge_db::entity::coding_jobs::JobStatus;
use forge_db::entity::conversations::ConversationTier;
use forge_db::sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QuerySelect,
};
use forge_db::service::batch_items::{self as items, ClaimedItem};
use forge_db::service::batches::{self, NewBatch, NewBatchItem};
use forge_db::service::jobs::{self, NewJob};
use forge_db::service::testing::fixtures;
use forge_db::service::{Access, Actor, ForgeError, run_as};
use session_support::SharedDb;

const SVC: Actor = Actor::Service;
/// A lease no test outlives.
const LONG: Duration = Duration::from_secs(60);
/// A lease a test waits out (long enough for the calls made while it must still hold).
const SHORT: Duration = Duration::from_secs(2);

on_both_backends! {
    a_dead_workers_item_is_taken_over_and_finished_once => a_dead_workers_item_is_taken_over_and_finished_once;
    heartbeat_extends_a_live_lease_only => heartbeat_extends_a_live_lease_only;
    requeue_releases_the_lease => requeue_releases_the_lease;
    release_keeps_retry_count_and_the_job_is_claimable_at_once => release_keeps_retry_count_and_the_job_is_claimable_at_once;
    cancel_fails_pending_jobs_only => cancel_fails_pending_jobs_only;
    eight_workers_abandoning_items_finish_each_exactly_once => eight_workers_abandoning_items_finish_each_exactly_once;
    the_lease_migration_goes_down_and_up_again => the_lease_migration_goes_down_and_up_again;
}

/// A batch of `owner`'s with `n` items, at most `cap` leases live at once.
async fn create_batch(db: &DatabaseConnection, owner: ProfileId, n: usize, cap: u32) -> BatchId {
    let mut configuration = BatchConfiguration::new(ConversationTier::Scenario);
    configuration.concurrent_processing = cap;
    let items = (1..=n)
        .map(|i| NewBatchItem::new(format!("topic {i}")))
        .collect();
    let new = NewBatch {
        owner: Some(owner),
        ..NewBatch::new("leases", configuration, items)
    };
    batches::create(db, SVC, new).await.unwrap().id
}

/// A conversation of `owner`'s, for completing items.
async fn conversation(db: &DatabaseConnection, owner: ProfileId) -> ConversationId {
    fixtures::conversation_with_turns(db, owner, 2)
        .await
        .unwrap()
        .conversation
        .id
}

async fn claim(db: &DatabaseConnection, worker: &str, lease: Duration) -> Option<ClaimedItem> {
    items::claim_next(db, SVC, worker, lease).await.unwrap()
}

async fn batch(db: &DatabaseConnection, id: BatchId) -> batch_jobs::Model {
    batches::get(db, SVC, id).await.unwrap()
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
    let rows = stored_items(db, id).await;
    let of = |s: ItemStatus| rows.iter().filter(|i| i.status == s).count() as i32;
    let (ok, bad) = (of(ItemStatus::Completed), of(ItemStatus::Failed));
    assert_eq!(
        counters(&batch(db, id).await),
        (rows.len() as i32, ok + bad, ok, bad),
        "counters equal the items"
    );
}

/// Sleeps until `until` has passed (plus a margin).
async fn sleep_past(until: Option<DateTime<Utc>>) {
    let until = until.expect("a lease end");
    let left = (until - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(50)).await;
}

/// An id of a leased row, and the entity `LeaseLost` names for it.
trait Leased: std::fmt::Display {
    const ENTITY: &'static str;
}

impl Leased for JobId {
    const ENTITY: &'static str = "job";
}

impl Leased for BatchItemId {
    const ENTITY: &'static str = "batch item";
}

fn assert_lease_lost<T: std::fmt::Debug, I: Leased>(
    out: Result<T, ForgeError>,
    id: I,
    worker: &str,
) {
    match out {
        Err(ForgeError::LeaseLost {
            entity,
            id: got,
            worker: w,
        }) => {
            assert_eq!(
                (entity, got, w.as_str()),
                (I::ENTITY, id.to_string(), worker)
            );
        }
        other => panic!("expected LeaseLost for {worker}, got {other:?}"),
    }
}

fn assert_transition<T: std::fmt::Debug>(
    out: Result<T, ForgeError>,
    what: &str,
    from: &str,
    to: &str,
) {
    assert!(
        matches!(&out, Err(ForgeError::InvalidTransition { entity, from: f, to: t })
            if *entity == what && f == from && t == to),
        "expected {what} {from} → {to} refused: {out:?}"
    );
}

fn assert_forbidden<T: std::fmt::Debug>(out: Result<T, ForgeError>) {
    assert!(
        matches!(out, Err(ForgeError::Forbidden { .. })),
        "expected Forbidden: {out:?}"
    );
}

fn assert_invalid<T: std::fmt::Debug>(out: Result<T, ForgeError>, field: &str) {
    assert!(
        matches!(&out, Err(ForgeError::Validation { field: f, .. }) if *f == field),
        "expected Validation({field}): {out:?}"
    );
}

async fn a_dead_workers_item_is_taken_over_and_finished_once(t: &TestDb) {
    let db = &t.db;
    let owner = signup(db, "ada@example.com").await;
    let conv = conversation(db, owner).await;
    let b = create_batch(db, owner, 3, 2).await;

    // "dead" claims item 1 on a short lease, reports progress, and dies.
    let dead = claim(db, "dead", SHORT).await.unwrap();
    let id = dead.item.id;
    assert_eq!(dead.item.position, 1);
    assert_eq!(dead.item.locked_by.as_deref(), Some("dead"));
    let lease_end = dead.item.locked_until.unwrap();
    assert!(
        lease_end > dead.item.updated_at,
        "the lease ends after the claim"
    );
    items::set_progress(db, SVC, id, "dead", 40).await.unwrap();

    // While its lease is live it holds one of the batch's two slots.
    let second = claim(db, "alive", LONG).await.unwrap();
    assert_eq!(second.item.position, 2);
    assert!(
        claim(db, "alive", LONG).await.is_none(),
        "two live leases: the cap"
    );

    // Its lease runs out: the slot is free again and the item is claimable, before the
    // queued item 3 (position order), started over.
    sleep_past(dead.item.locked_until).await;
    let taken = claim(db, "alive", LONG).await.unwrap();
    assert_eq!(taken.item.id, id, "the dead worker's item is taken over");
    assert_eq!(
        (
            taken.item.status,
            taken.item.locked_by.as_deref(),
            taken.item.progress
        ),
        (ItemStatus::Processing, Some("alive"), Some(0))
    );
    assert!(taken.item.locked_until.unwrap() > lease_end);
    assert!(
        claim(db, "other", LONG).await.is_none(),
        "two live leases again: item 3 waits"
    );
    assert_eq!(counters(&batch(db, b).await), (3, 0, 0, 0));

    // The dead worker comes back: every call is refused and nothing changes.
    let before = (batch(db, b).await, stored_items(db, b).await);
    assert_lease_lost(items::complete(db, SVC, id, "dead", conv).await, id, "dead");
    assert_lease_lost(items::fail(db, SVC, id, "dead", "late").await, id, "dead");
    assert_lease_lost(
        items::set_progress(db, SVC, id, "dead", 90).await,
        id,
        "dead",
    );
    assert_lease_lost(
        items::heartbeat(db, SVC, id, "dead", LONG).await,
        id,
        "dead",
    );
    assert_eq!(
        (batch(db, b).await, stored_items(db, b).await),
        before,
        "refusals change nothing"
    );

    // The new holder finishes it, once; the dead worker still cannot.
    let done = items::complete(db, SVC, id, "alive", conv).await.unwrap();
    assert_eq!(
        (
            done.item.status,
            done.item.locked_by.as_deref(),
            done.item.locked_until,
            done.item.progress
        ),
        (ItemStatus::Completed, Some("alive"), None, Some(100))
    );
    assert_eq!(counters(&done.batch), (3, 1, 1, 0));
    assert_lease_lost(items::complete(db, SVC, id, "dead", conv).await, id, "dead");
    assert_lease_lost(items::fail(db, SVC, id, "dead", "late").await, id, "dead");
    assert_transition(
        items::complete(db, SVC, id, "alive", conv).await,
        "batch item",
        "completed",
        "completed",
    );
    assert_eq!(counters(&batch(db, b).await), (3, 1, 1, 0));

    // The rest of the batch.
    items::fail(db, SVC, second.item.id, "alive", "model refused")
        .await
        .unwrap();
    let third = claim(db, "other", LONG).await.unwrap();
    assert_eq!(third.item.position, 3);
    let last = items::complete(db, SVC, third.item.id, "other", conv)
        .await
        .unwrap();
    assert_eq!(
        (last.batch.status, counters(&last.batch)),
        (BatchStatus::Completed, (3, 3, 2, 1))
    );
    assert_counters_match_items(db, b).await;
    assert!(
        stored_items(db, b)
            .await
            .iter()
            .all(|i| i.locked_until.is_none()),
        "finished items hold no lease"
    );
}

async fn heartbeat_extends_a_live_lease_only(t: &TestDb) {
    let db = &t.db;
    let owner = signup(db, "ada@example.com").await;
    let conv = conversation(db, owner).await;
    let b = create_batch(db, owner, 2, 1).await;

    let c = claim(db, "w1", SHORT).await.unwrap();
    let id = c.item.id;
    items::set_progress(db, SVC, id, "w1", 30).await.unwrap();
    let renewed = items::heartbeat(db, SVC, id, "w1", LONG).await.unwrap();
    assert!(renewed.locked_until.unwrap() > c.item.locked_until.unwrap() + SHORT);
    assert_eq!(
        (
            renewed.status,
            renewed.locked_by.as_deref(),
            renewed.progress
        ),
        (ItemStatus::Processing, Some("w1"), Some(30))
    );

    // Past the first lease's end the renewed lease still holds the batch's only slot.
    sleep_past(c.item.locked_until).await;
    assert!(claim(db, "w2", LONG).await.is_none());
    assert_lease_lost(items::heartbeat(db, SVC, id, "w2", LONG).await, id, "w2");
    assert_invalid(
        items::heartbeat(db, SVC, id, "w1", Duration::ZERO).await,
        "lease",
    );
    assert_invalid(items::heartbeat(db, SVC, id, "  ", LONG).await, "worker");
    let unknown = items::heartbeat(db, SVC, BatchItemId::new(), "w1", LONG).await;
    assert!(
        matches!(unknown, Err(ForgeError::NotFound { .. })),
        "{unknown:?}"
    );
    for user in [Actor::User(owner), Actor::User(ProfileId::new())] {
        assert_forbidden(items::heartbeat(db, user, id, "w1", LONG).await);
        assert_forbidden(items::claim_next(db, user, "w1", LONG).await);
    }
    assert_eq!(
        stored_items(db, b).await[0],
        renewed,
        "refusals change nothing"
    );
    items::complete(db, SVC, id, "w1", conv).await.unwrap();
    assert_transition(
        items::heartbeat(db, SVC, id, "w1", LONG).await,
        "batch item",
        "completed",
        "processing",
    );

    // A lease that ran out is not renewed (its slot went back to the batch), but until
    // another worker takes the item over its worker may still finish it.
    let c2 = claim(db, "w1", SHORT).await.unwrap();
    sleep_past(c2.item.locked_until).await;
    let id2 = c2.item.id;
    assert_lease_lost(items::heartbeat(db, SVC, id2, "w1", LONG).await, id2, "w1");
    assert_eq!(stored_items(db, b).await[1], c2.item, "nothing renewed");
    let done = items::complete(db, SVC, id2, "w1", conv).await.unwrap();
    assert_eq!(
        (done.batch.status, counters(&done.batch)),
        (BatchStatus::Completed, (2, 2, 2, 0))
    );
}

async fn requeue_releases_the_lease(t: &TestDb) {
    let db = &t.db;
    let owner = signup(db, "ada@example.com").await;
    let conv = conversation(db, owner).await;
    let b = create_batch(db, owner, 2, 1).await;
    let c = claim(db, "w1", LONG).await.unwrap();
    let id = c.item.id;
    items::set_progress(db, SVC, id, "w1", 70).await.unwrap();

    let back = items::requeue(db, SVC, id).await.unwrap();
    assert_eq!(
        (
            back.status,
            back.progress,
            back.locked_until,
            back.locked_by.as_deref()
        ),
        (ItemStatus::Queued, Some(0), None, Some("w1")),
        "queued, lease gone, the last holder on record"
    );
    // The worker that held it has lost it; the freed slot takes it again first.
    assert_lease_lost(items::complete(db, SVC, id, "w1", conv).await, id, "w1");
    assert_lease_lost(items::set_progress(db, SVC, id, "w1", 80).await, id, "w1");
    let again = claim(db, "w2", LONG).await.unwrap();
    assert_eq!(again.item.id, id);
    assert_lease_lost(items::complete(db, SVC, id, "w1", conv).await, id, "w1");
    items::complete(db, SVC, id, "w2", conv).await.unwrap();
    assert_eq!(counters(&batch(db, b).await), (2, 1, 1, 0));
    assert_counters_match_items(db, b).await;
}

async fn release_keeps_retry_count_and_the_job_is_claimable_at_once(t: &TestDb) {
    let db = &t.db;
    let (user, _, session) = fixtures::user_with_project_and_session(db).await.unwrap();
    let first = NewJob {
        priority: 5,
        ..NewJob::new(session.id, "first")
    };
    let job = jobs::enqueue(db, SVC, first).await.unwrap();
    jobs::enqueue(db, SVC, NewJob::new(session.id, "second"))
        .await
        .unwrap();

    let held = jobs::claim(db, SVC, "w1", LONG).await.unwrap().unwrap();
    assert_eq!((held.id, held.retry_count), (job.id, 0));
    assert_lease_lost(jobs::release(db, SVC, job.id, "w2").await, job.id, "w2");
    assert_forbidden(jobs::release(db, Actor::User(user.id), job.id, "w1").await);
    assert_invalid(jobs::release(db, SVC, job.id, " ").await, "worker");
    let unknown = JobId::new();
    assert_lease_lost(jobs::release(db, SVC, unknown, "w1").await, unknown, "w1");
    assert_eq!(
        jobs::get(db, SVC, job.id).await.unwrap(),
        held,
        "refusals change nothing"
    );

    let back = jobs::release(db, SVC, job.id, "w1").await.unwrap();
    assert_eq!(
        (
            back.status,
            back.retry_count,
            back.locked_by.as_deref(),
            back.locked_until
        ),
        (JobStatus::Pending, 0, None, None)
    );
    assert_eq!(
        back.started_at, held.started_at,
        "first started when it did"
    );
    assert!(back.run_after <= Utc::now());
    // Claimable at once, in its old place (before the second job).
    let again = jobs::claim(db, SVC, "w2", LONG).await.unwrap().unwrap();
    assert_eq!(
        (again.id, again.retry_count, again.locked_by.as_deref()),
        (job.id, 0, Some("w2"))
    );
    assert_lease_lost(jobs::release(db, SVC, job.id, "w1").await, job.id, "w1");
    jobs::release(db, SVC, job.id, "w2").await.unwrap();

    // A takeover counts the dead holder's attempt; releasing the takeover spends none.
    let dead = jobs::claim(db, SVC, "dead", SHORT).await.unwrap().unwrap();
    assert_eq!((dead.id, dead.retry_count), (job.id, 0));
    sleep_past(dead.locked_until).await;
    let taken = jobs::claim(db, SVC, "w3", LONG).await.unwrap().unwrap();
    assert_eq!((taken.id, taken.retry_count), (job.id, 1));
    let back = jobs::release(db, SVC, job.id, "w3").await.unwrap();
    assert_eq!((back.status, back.retry_count), (JobStatus::Pending, 1));
    let last = jobs::claim(db, SVC, "w4", LONG).await.unwrap().unwrap();
    assert_eq!((last.id, last.retry_count), (job.id, 1));
    let done = jobs::complete(db, SVC, job.id, "w4", serde_json::json!({"ok": true}))
        .await
        .unwrap();
    assert_eq!((done.status, done.retry_count), (JobStatus::Completed, 1));
    assert_lease_lost(jobs::release(db, SVC, job.id, "w4").await, job.id, "w4");
}

async fn cancel_fails_pending_jobs_only(t: &TestDb) {
    let db = &t.db;
    let (user, _, session) = fixtures::user_with_project_and_session(db).await.unwrap();
    let queued = fixtures::queued_jobs(db, session.id, 3).await.unwrap();
    let (p, q, r) = (&queued[0], &queued[1], &queued[2]);

    for actor in [Actor::User(user.id), Actor::User(ProfileId::new())] {
        assert_forbidden(jobs::cancel(db, actor, p.id).await);
    }
    let cancelled = jobs::cancel(db, SVC, p.id).await.unwrap();
    assert_eq!(
        (
            cancelled.status,
            cancelled.error_message.as_deref(),
            cancelled.locked_until
        ),
        (JobStatus::Failed, Some(jobs::CANCELLED), None)
    );
    assert!(cancelled.completed_at.is_some());
    assert_eq!(cancelled.retry_count, 0);
    assert_transition(jobs::cancel(db, SVC, p.id).await, "job", "failed", "failed");

    // Never claimed: the next claim takes the next job.
    let running = jobs::claim(db, SVC, "w", LONG).await.unwrap().unwrap();
    assert_eq!(running.id, q.id);
    assert_transition(
        jobs::cancel(db, SVC, q.id).await,
        "job",
        "processing",
        "failed",
    );
    assert_eq!(jobs::get(db, SVC, q.id).await.unwrap(), running);
    jobs::complete(db, SVC, q.id, "w", serde_json::json!(1))
        .await
        .unwrap();
    assert_transition(
        jobs::cancel(db, SVC, q.id).await,
        "job",
        "completed",
        "failed",
    );
    let unknown = jobs::cancel(db, SVC, JobId::new()).await;
    assert!(
        matches!(unknown, Err(ForgeError::NotFound { entity: "job", .. })),
        "{unknown:?}"
    );

    assert_eq!(
        jobs::claim(db, SVC, "w", LONG).await.unwrap().map(|j| j.id),
        Some(r.id)
    );
    assert_eq!(jobs::claim(db, SVC, "w", LONG).await.unwrap(), None);
    assert_eq!(
        jobs::get(db, SVC, p.id).await.unwrap(),
        cancelled,
        "the cancelled job stays as it was"
    );
}

/// How many lease columns `batch_items` has, and whether their index exists (as the
/// owner).
async fn lease_schema(t: &TestDb) -> (i64, i64) {
    let (columns, index) = match t.backend() {
        DbBackend::Postgres => (
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' \
             AND table_name = 'batch_items' AND column_name IN ('locked_by', 'locked_until')",
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_batch_items_lease'",
        ),
        _ => (
            "SELECT count(*) FROM pragma_table_info('batch_items') \
             WHERE name IN ('locked_by', 'locked_until')",
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' \
             AND name = 'idx_batch_items_lease'",
        ),
    };
    (
        common::query_i64(&t.owner, columns).await,
        common::query_i64(&t.owner, index).await,
    )
}

async fn the_lease_migration_goes_down_and_up_again(t: &TestDb) {
    use forge_db::{Migrator, MigratorTrait};
    let owner = signup(&t.db, "ada@example.com").await;
    create_batch(&t.db, owner, 2, 1).await;
    let old = claim(&t.db, "w1", LONG).await.unwrap().item;
    assert_eq!(lease_schema(t).await, (2, 1));

    // Down to before the leases (as the owner), with the item still processing: the
    // columns and the index go, the rows stay.
    let depth = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name() == "m20251130_000007_batch_item_leases")
        .expect("the lease migration")
        + 1;
    Migrator::down(&t.owner, Some(depth as u32)).await.unwrap();
    assert_eq!(lease_schema(t).await, (0, 0));
    Migrator::up(&t.owner, None).await.unwrap();
    assert_eq!(lease_schema(t).await, (2, 1));

    // An item left processing from before leases existed has none: it takes no slot and
    // is claimable at once; the worker of before has lost it.
    let taken = claim(&t.db, "w2", LONG).await.unwrap().item;
    assert_eq!((taken.id, taken.locked_by.as_deref()), (old.id, Some("w2")));
    assert_lease_lost(
        items::fail(&t.db, SVC, old.id, "w1", "late").await,
        old.id,
        "w1",
    );
    items::fail(&t.db, SVC, old.id, "w2", "done").await.unwrap();
}

/// PostgreSQL: the lease columns are the service's. The wall grants `authenticated`
/// column-level INSERT on a list of `batch_items` columns and no UPDATE, so a user can
/// neither set nor change them, whatever SQL they send; `service_role` can.
#[tokio::test]
async fn users_cannot_write_the_lease_columns() {
    let t = TestDb::postgres().await;
    let owner = signup(&t.db, "ada@example.com").await;
    let b = create_batch(&t.db, owner, 1, 1).await;

    for column in ["locked_by", "locked_until"] {
        for (role, held) in [("authenticated", false), ("service_role", true)] {
            for privilege in ["INSERT", "UPDATE"] {
                let sql = format!(
                    "SELECT has_column_privilege('{role}', 'public.batch_items', '{column}', \
                     '{privilege}')::int::bigint"
                );
                assert_eq!(
                    common::query_i64(&t.owner, &sql).await == 1,
                    held,
                    "{role}: {privilege} ({column})"
                );
            }
        }
    }

    let as_user = |sql: String| {
        run_as(&t.db, Actor::User(owner), Access::Write, move |txn| {
            Box::pin(async move { Ok(txn.execute_unprepared(&sql).await?.rows_affected()) })
        })
    };
    let insert = |extra_columns: &str, extra_values: &str| {
        format!(
            "INSERT INTO public.batch_items (id, batch_job_id, position, topic, tier{extra_columns})
             VALUES (gen_random_uuid(), '{b}', 2, 'mine', 'scenario'{extra_values})"
        )
    };
    let refused = [
        insert(", locked_by", ", 'me'"),
        insert(", locked_until", ", now() + interval '1 hour'"),
        format!(
            "UPDATE public.batch_items SET locked_by = 'me', locked_until = now() + interval '1 hour'
              WHERE batch_job_id = '{b}'"
        ),
    ];
    for sql in refused {
        let err = as_user(sql.clone()).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }
    // The same insert without them is the user's to make (an own queued batch).
    assert_eq!(as_user(insert("", "")).await.unwrap(), 1);
    let stored = stored_items(&t.db, b).await;
    assert_eq!(stored.len(), 2);
    assert!(
        stored
            .iter()
            .all(|i| i.locked_by.is_none() && i.locked_until.is_none())
    );
    t.finish().await;
}

/// The value of the repository call `$call` (a `Result`), made again while SQLite's write
/// lock stays busy past the busy timeout (`$busy` counts how often): only `BEGIN
/// IMMEDIATE` can be refused, before anything changed, so a retry is safe.
macro_rules! retry_busy {
    ($busy:expr, $call:expr) => {
        loop {
            match $call.await {
                Err(ForgeError::Db(e)) if e.to_string().contains("database is locked") => {
                    $busy += 1;
                }
                other => break other,
            }
        }
    };
}

/// Leases of the race: short, so abandoned items come back quickly.
const RACE_LEASE: Duration = Duration::from_millis(200);
/// Every item whose position is a multiple of this is abandoned by the first worker that
/// claims it (that worker "dies" and comes back under a new name).
const ABANDON_EVERY: i32 = 8;

/// What the race's workers share and report.
#[derive(Default)]
struct Race {
    /// Items abandoned by the position rule (each once).
    abandoned: Mutex<HashSet<BatchItemId>>,
    /// (dead worker, item) for every item a worker died holding.
    ghosts: Mutex<Vec<(String, BatchItemId)>>,
    /// (worker, item) for every successful `complete`.
    completed: Mutex<Vec<(String, BatchItemId)>>,
    /// Calls refused with `LeaseLost` (a slow worker whose item was taken over).
    lost: Mutex<u32>,
    /// Calls retried on a busy SQLite lock.
    busy: Mutex<u32>,
}

/// Progress, heartbeat and completion of `id`, which `worker` claimed.
async fn work_item(
    db: &DatabaseConnection,
    worker: &str,
    id: BatchItemId,
    conv: ConversationId,
    busy: &mut u32,
) -> Result<(), ForgeError> {
    retry_busy!(*busy, items::set_progress(db, SVC, id, worker, 50))?;
    retry_busy!(*busy, items::heartbeat(db, SVC, id, worker, RACE_LEASE))?;
    retry_busy!(*busy, items::complete(db, SVC, id, worker, conv))?;
    Ok(())
}

/// One worker of the race: claims (`per_claim` at a time) and finishes items until the
/// batch is completed, abandoning items by the position rule.
async fn race_worker(
    db: DatabaseConnection,
    n: usize,
    batch: BatchId,
    conv: ConversationId,
    per_claim: u32,
    race: Arc<Race>,
) {
    let (mut incarnation, mut busy) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(180);
    'claiming: loop {
        assert!(
            Instant::now() < deadline,
            "worker {n}: the race takes too long"
        );
        let name = format!("worker-{n}.{incarnation}");
        let claimed = retry_busy!(
            busy,
            items::claim_many(&db, SVC, &name, RACE_LEASE, per_claim)
        )
        .unwrap_or_else(|e| panic!("{name}: claim: {e:?}"));
        if claimed.is_empty() {
            let b = retry_busy!(busy, batches::get(&db, SVC, batch)).unwrap();
            if b.status == BatchStatus::Completed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        for (k, c) in claimed.iter().enumerate() {
            let id = c.item.id;
            let abandon =
                c.item.position % ABANDON_EVERY == 0 && race.abandoned.lock().unwrap().insert(id);
            if abandon {
                // This incarnation dies holding this item and the rest of its claim.
                let mut ghosts = race.ghosts.lock().unwrap();
                ghosts.extend(claimed[k..].iter().map(|c| (name.clone(), c.item.id)));
                incarnation += 1;
                continue 'claiming;
            }
            match work_item(&db, &name, id, conv, &mut busy).await {
                Ok(()) => race.completed.lock().unwrap().push((name.clone(), id)),
                Err(ForgeError::LeaseLost { .. }) => *race.lost.lock().unwrap() += 1,
                Err(e) => panic!("{name}: item {id}: {e:?}"),
            }
        }
    }
    *race.busy.lock().unwrap() += busy;
    db.close().await.ok();
}

/// The most live leases (processing, `locked_until` not passed) of `batch` a sampler saw,
/// polling until `stop`, and the most items `processing`. The clock is read after each
/// read, so every claim the read sees judged run-out leases at an earlier instant.
async fn sample_leases(
    db: DatabaseConnection,
    batch: BatchId,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let (mut max_live, mut max_processing) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let read = run_as(&db, SVC, Access::Read, move |txn| {
            Box::pin(async move {
                Ok(batch_items::Entity::find()
                    .select_only()
                    .column(batch_items::Column::LockedUntil)
                    .filter(batch_items::Column::BatchJobId.eq(batch))
                    .filter(batch_items::Column::Status.eq(ItemStatus::Processing))
                    .into_tuple::<Option<DateTime<Utc>>>()
                    .all(txn)
                    .await?)
            })
        })
        .await;
        let Ok(leases) = read else {
            continue; // a busy SQLite lock: read again
        };
        let now = Utc::now();
        let live = leases
            .iter()
            .filter(|l| l.is_some_and(|l| l >= now))
            .count() as u64;
        max_live = max_live.max(live);
        max_processing = max_processing.max(leases.len() as u64);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    db.close().await.ok();
    (max_live, max_processing)
}

async fn eight_workers_abandoning_items_finish_each_exactly_once(t: &TestDb) {
    const ITEMS: usize = 240;
    const CAP: u32 = 6;
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    if t.backend() == DbBackend::Sqlite {
        // Several pools on one SQLite file: write-ahead logging, so readers never block
        // the writer (the journal mode stays with the file).
        setup
            .execute_unprepared("PRAGMA journal_mode = WAL")
            .await
            .unwrap();
    }
    let owner = signup(&setup, "race@example.com").await;
    let conv = conversation(&setup, owner).await;
    let b = create_batch(&setup, owner, ITEMS, CAP).await;

    let race = Arc::new(Race::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_leases(shared.pool().await, b, stop.clone()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for (n, db) in shared.pools(8).await.into_iter().enumerate() {
        let per_claim = if n % 2 == 0 { 1 } else { 3 };
        workers.push(tokio::spawn(race_worker(
            db,
            n,
            b,
            conv,
            per_claim,
            race.clone(),
        )));
    }
    for w in workers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (max_live, max_processing) = sampler.await.unwrap();

    let completed = race.completed.lock().unwrap().clone();
    let ghosts = race.ghosts.lock().unwrap().clone();
    let abandoned = race.abandoned.lock().unwrap().len();
    eprintln!(
        "{:?}: 8 workers finished {ITEMS} items in {:?}: {} abandoned by the rule, {} held by \
         dead workers, {} calls refused LeaseLost, {} retried on a busy SQLite lock; at most \
         {max_live} live leases (cap {CAP}), {max_processing} items processing",
        t.backend(),
        started.elapsed(),
        abandoned,
        ghosts.len(),
        race.lost.lock().unwrap(),
        race.busy.lock().unwrap(),
    );

    // Every item completed exactly once, by the one worker whose `complete` succeeded.
    let mut by_item: HashMap<BatchItemId, Vec<&str>> = HashMap::new();
    for (worker, id) in &completed {
        by_item.entry(*id).or_default().push(worker);
    }
    let twice: Vec<_> = by_item.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(twice.is_empty(), "completed twice: {twice:?}");
    assert_eq!(completed.len(), ITEMS, "none lost");
    let rows = stored_items(&setup, b).await;
    assert_eq!(rows.len(), ITEMS);
    for row in &rows {
        assert_eq!(
            (
                row.status,
                row.progress,
                row.conversation_id,
                row.locked_until
            ),
            (ItemStatus::Completed, Some(100), Some(conv), None),
            "item {}",
            row.position
        );
        assert_eq!(row.locked_by.as_deref(), Some(by_item[&row.id][0]));
    }
    assert_eq!(abandoned, ITEMS / ABANDON_EVERY as usize);
    assert!(ghosts.len() >= abandoned);
    assert!(
        max_live <= u64::from(CAP),
        "{max_live} live leases, cap {CAP}"
    );

    let done = batch(&setup, b).await;
    assert_eq!(
        (done.status, counters(&done)),
        (
            BatchStatus::Completed,
            (ITEMS as i32, ITEMS as i32, ITEMS as i32, 0)
        )
    );
    assert!(done.completed_at.is_some());
    assert_counters_match_items(&setup, b).await;

    // The dead workers, coming back, finish nothing.
    for (worker, id) in &ghosts {
        assert_lease_lost(
            items::complete(&setup, SVC, *id, worker, conv).await,
            *id,
            worker,
        );
    }
    assert_eq!(counters(&batch(&setup, b).await), counters(&done));
    setup.close().await.ok();
    shared.finish();
}
