//! `jobs::complete_many` on both backends: a batch of held jobs completed in one
//! statement, the jobs whose lease was lost reported and left alone, bad batches refused
//! without a write, and a race of workers on separate connections claiming and completing
//! in batches (every job completed exactly once, by the worker that claimed it). On
//! PostgreSQL also: the queue's prepared statements are prepared again on a connection
//! that lost them.

mod common;
mod session_support;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestDb, as_service};
use forge_db::entity::coding_jobs::{self, JobStatus};
use forge_db::entity::ids::{JobId, SessionId};
use forge_db::sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, EntityTrait, Statement,
    TransactionTrait,
};
use forge_db::service::jobs::{self, CompletedMany, NewJob};
use forge_db::service::testing::fixtures;
use forge_db::service::{Actor, ForgeError};
use serde_json::{Value, json};
use session_support::SharedDb;

const SVC: Actor = Actor::Service;
/// A lease no test outlives.
const LONG: Duration = Duration::from_secs(60);

on_both_backends! {
    complete_many_completes_the_held_jobs_and_reports_the_lost => complete_many_completes_the_held_jobs_and_reports_the_lost;
    refused_batches_change_nothing => refused_batches_change_nothing;
    complete_many_joins_the_callers_transaction => complete_many_joins_the_callers_transaction;
    the_largest_batch_completes_in_one_call => the_largest_batch_completes_in_one_call;
    eight_workers_drain_500_jobs_in_batches_exactly_once => eight_workers_drain_500_jobs_in_batches_exactly_once;
}

/// A live session with `n` pending jobs, in claim order.
async fn queue(db: &DatabaseConnection, n: usize) -> (SessionId, Vec<coding_jobs::Model>) {
    let (_, _, session) = fixtures::user_with_project_and_session(db).await.unwrap();
    let jobs = fixtures::queued_jobs(db, session.id, n).await.unwrap();
    (session.id, jobs)
}

/// Every job, by id, as the service sees it (the test pool may do nothing outside a Forge
/// context on PostgreSQL).
async fn jobs_by_id(db: &DatabaseConnection) -> HashMap<JobId, coding_jobs::Model> {
    as_service(db, |txn| {
        Box::pin(async move { Ok(coding_jobs::Entity::find().all(txn).await?) })
    })
    .await
    .into_iter()
    .map(|j| (j.id, j))
    .collect()
}

fn result_of(worker: &str, i: usize) -> Value {
    json!({ "by": worker, "n": i })
}

fn assert_invalid<T: std::fmt::Debug>(out: Result<T, ForgeError>, field: &str, says: &str) {
    match &out {
        Err(ForgeError::Validation { field: f, reason }) if *f == field => {
            assert!(reason.contains(says), "{reason:?} should say {says:?}");
        }
        other => panic!("expected Validation({field}) saying {says:?}, got {other:?}"),
    }
}

async fn complete_many_completes_the_held_jobs_and_reports_the_lost(t: &TestDb) {
    let db = &t.db;
    let (_, queued) = queue(db, 5).await;
    let ids: Vec<JobId> = queued.iter().map(|j| j.id).collect();
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    let held = jobs::claim_many(db, SVC, "w1", LONG, 3).await.unwrap();
    assert_eq!(held.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a, b, c]);

    // w1's lease on `a` runs out and w2 takes it over (an attempt).
    jobs::heartbeat(db, SVC, a, "w1", Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let taken = jobs::claim(db, SVC, "w2", LONG).await.unwrap().unwrap();
    assert_eq!((taken.id, taken.retry_count), (a, 1));
    let before = jobs_by_id(db).await;

    // w1 completes its batch: `b` and `c` are still its own; `a` is w2's now, `d` was
    // never claimed, and the last one does not exist.
    let unknown = JobId::new();
    let out = jobs::complete_many(
        db,
        SVC,
        "w1",
        vec![
            (c, result_of("w1", 0)),
            (a, result_of("w1", 1)),
            (b, result_of("w1", 2)),
            (d, result_of("w1", 3)),
            (unknown, result_of("w1", 4)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        CompletedMany {
            completed: vec![c, b],
            lost: vec![a, d, unknown],
        },
        "each list in the order given"
    );
    let after = jobs_by_id(db).await;
    for (id, i) in [(c, 0), (b, 2)] {
        let job = &after[&id];
        assert_eq!(job.status, JobStatus::Completed);
        assert_eq!(job.result, Some(result_of("w1", i)), "its own result");
        assert_eq!(job.locked_by.as_deref(), Some("w1"));
        assert_eq!(job.locked_until, None);
        assert!(job.completed_at.is_some());
        assert_eq!(job.retry_count, 0);
    }
    for id in [a, d, ids[4]] {
        assert_eq!(
            after[&id], before[&id],
            "a job w1 does not hold is left alone"
        );
    }
    // Exactly what `complete` does for one job.
    let single = jobs::complete(db, SVC, a, "w2", json!({ "by": "w2" }))
        .await
        .unwrap();
    assert_eq!(
        (single.status, single.retry_count, single.locked_until),
        (JobStatus::Completed, 1, None)
    );

    // Finished means finished: a second batch changes nothing.
    let again = jobs::complete_many(db, SVC, "w1", vec![(b, json!("late"))])
        .await
        .unwrap();
    assert_eq!((again.completed, again.lost), (vec![], vec![b]));
    assert_eq!(jobs_by_id(db).await[&b], after[&b]);
}

async fn refused_batches_change_nothing(t: &TestDb) {
    let db = &t.db;
    let (_, _) = queue(db, 4).await;
    let held: Vec<JobId> = jobs::claim_many(db, SVC, "w", LONG, 3)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    let good = |i: usize| (held[i], result_of("w", i));
    let before = jobs_by_id(db).await;

    let user = fixtures::user(db, "someone@example.com").await.unwrap();
    assert!(matches!(
        jobs::complete_many(db, Actor::User(user.id), "w", vec![good(0)]).await,
        Err(ForgeError::Forbidden { .. })
    ));
    assert_invalid(
        jobs::complete_many(db, SVC, " ", vec![good(0)]).await,
        "worker",
        "",
    );
    assert_invalid(
        jobs::complete_many(db, SVC, "w", vec![]).await,
        "done",
        "0 jobs",
    );
    let too_many = (0..=jobs::MAX_CLAIM)
        .map(|_| (JobId::new(), json!(1)))
        .collect();
    assert_invalid(
        jobs::complete_many(db, SVC, "w", too_many).await,
        "done",
        &format!("{} jobs", jobs::MAX_CLAIM + 1),
    );
    assert_invalid(
        jobs::complete_many(db, SVC, "w", vec![good(0), good(1), good(0)]).await,
        "done",
        &format!("job {} is given twice (at 0 and 2)", held[0]),
    );
    // A bad result anywhere refuses the whole batch, naming its index and job.
    for bad in [
        json!({ "blob": "x".repeat(70_000) }),
        json!({ "text": "nul \u{0} inside" }),
        (0..150).fold(json!(1), |inner, _| json!([inner])),
    ] {
        assert_invalid(
            jobs::complete_many(db, SVC, "w", vec![good(0), good(1), (held[2], bad)]).await,
            "done",
            &format!("the result at 2 (job {})", held[2]),
        );
    }
    assert_eq!(
        jobs_by_id(db).await,
        before,
        "refused batches changed nothing"
    );

    // The same batch with good results goes through.
    let out = jobs::complete_many(db, SVC, "w", vec![good(0), good(1), good(2)])
        .await
        .unwrap();
    assert_eq!((out.completed, out.lost), (held.clone(), vec![]));
}

async fn complete_many_joins_the_callers_transaction(t: &TestDb) {
    let db = &t.db;
    let (_, _) = queue(db, 2).await;
    let held: Vec<JobId> = jobs::claim_many(db, SVC, "w", LONG, 2)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    let before = jobs_by_id(db).await;
    let done: Vec<(JobId, Value)> = held.iter().map(|&id| (id, json!("ok"))).collect();

    // Rolled back with the caller's transaction…
    let txn = db.begin().await.unwrap();
    let out = jobs::complete_many(&txn, SVC, "w", done.clone())
        .await
        .unwrap();
    assert_eq!(out.completed, held);
    txn.rollback().await.unwrap();
    assert_eq!(jobs_by_id(db).await, before);

    // …and committed with it.
    let txn = db.begin().await.unwrap();
    jobs::complete_many(&txn, SVC, "w", done).await.unwrap();
    txn.commit().await.unwrap();
    let after = jobs_by_id(db).await;
    assert!(
        held.iter()
            .all(|id| after[id].status == JobStatus::Completed)
    );
}

async fn the_largest_batch_completes_in_one_call(t: &TestDb) {
    let db = &t.db;
    let max = jobs::MAX_CLAIM as usize;
    let (_, queued) = queue(db, max + 1).await;
    let held = jobs::claim_many(db, SVC, "w", LONG, jobs::MAX_CLAIM)
        .await
        .unwrap();
    assert_eq!(held.len(), max);
    let done = held
        .iter()
        .enumerate()
        .map(|(i, j)| (j.id, result_of("w", i)))
        .collect();
    let out = jobs::complete_many(db, SVC, "w", done).await.unwrap();
    assert_eq!(out.completed, held.iter().map(|j| j.id).collect::<Vec<_>>());
    assert!(out.lost.is_empty());
    let rows = jobs_by_id(db).await;
    for (i, j) in held.iter().enumerate() {
        assert_eq!(rows[&j.id].status, JobStatus::Completed);
        assert_eq!(rows[&j.id].result, Some(result_of("w", i)));
    }
    assert_eq!(
        rows[&queued[max].id].status,
        JobStatus::Pending,
        "the one left over"
    );
}

/// One worker on its own pool: claims batches of `batch`, completes each batch in one
/// call, until nothing is claimable; the ids it claimed.
async fn batch_worker(db: DatabaseConnection, worker: String, batch: u64) -> Vec<JobId> {
    let mut claimed = Vec::new();
    loop {
        let got = jobs::claim_many(&db, SVC, &worker, LONG, batch)
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        let done = got
            .iter()
            .map(|j| {
                assert_eq!(j.locked_by.as_deref(), Some(worker.as_str()));
                (j.id, json!({ "by": worker }))
            })
            .collect();
        let out = jobs::complete_many(&db, SVC, &worker, done).await.unwrap();
        assert!(out.lost.is_empty(), "{worker} lost {:?}", out.lost);
        assert_eq!(out.completed.len(), got.len());
        claimed.extend(out.completed);
    }
    db.close().await.ok();
    claimed
}

async fn eight_workers_drain_500_jobs_in_batches_exactly_once(t: &TestDb) {
    const JOBS: usize = 500;
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    let (session, _) = queue(&setup, 0).await;
    let jobs = (0..JOBS)
        .map(|i| NewJob {
            priority: (i % 3) as i32,
            ..NewJob::new(session, format!("job {i}"))
        })
        .collect();
    jobs::enqueue_many(&setup, SVC, jobs).await.unwrap();

    let mut tasks = Vec::new();
    for (i, db) in shared.pools(8).await.into_iter().enumerate() {
        let worker = format!("worker-{i}");
        // Batches of 1 to 7, each size its own prepared statement on PostgreSQL, and one
        // of 40, large enough to be sent unprepared.
        let batch = if i == 7 { 40 } else { i as u64 + 1 };
        tasks.push(tokio::spawn(async move {
            let ids = batch_worker(db, worker.clone(), batch).await;
            ids.into_iter().map(move |id| (id, worker.clone()))
        }));
    }
    let mut claims: HashMap<JobId, Vec<String>> = HashMap::new();
    for task in tasks {
        for (id, worker) in task.await.unwrap() {
            claims.entry(id).or_default().push(worker);
        }
    }
    let twice: Vec<_> = claims.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(twice.is_empty(), "claimed twice: {twice:?}");
    assert_eq!(claims.len(), JOBS, "none lost");

    let rows = jobs_by_id(&setup).await;
    assert_eq!(rows.len(), JOBS);
    let mut by_result: HashMap<String, usize> = HashMap::new();
    for row in rows.values() {
        assert_eq!(row.status, JobStatus::Completed, "{}", row.prompt);
        let worker = &claims[&row.id][0];
        assert_eq!(row.locked_by.as_ref(), Some(worker), "{}", row.prompt);
        assert_eq!(row.result, Some(json!({ "by": worker })), "{}", row.prompt);
        assert_eq!(row.retry_count, 0, "no lease ran out");
        *by_result.entry(worker.clone()).or_default() += 1;
    }
    // Each worker's count of results naming it is the count of jobs it claimed.
    for (worker, n) in by_result {
        let claimed = claims.values().filter(|w| w[0] == worker).count();
        assert_eq!(n, claimed, "{worker}");
    }
    setup.close().await.ok();
    shared.finish();
}

/// PostgreSQL only: the queue's statements are prepared per connection (named
/// `forge_…`); a connection that lost them (`DEALLOCATE`, a pooler's reset) prepares them
/// again on the next call, transparently.
#[tokio::test]
async fn postgres_prepares_the_queue_statements_again_when_lost() {
    let t = TestDb::postgres().await;
    let mut options = ConnectOptions::new(t.app_url().expect("PostgreSQL URL"));
    options.max_connections(1).sqlx_logging(false);
    let db = Database::connect(options).await.unwrap();
    let (_, queued) = queue(&db, 4).await;
    let prepared = || async {
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT name FROM pg_prepared_statements WHERE name LIKE 'forge\\_%' ORDER BY name",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect::<Vec<_>>()
    };
    for (round, queued) in queued.iter().take(3).enumerate() {
        let job = jobs::claim(&db, SVC, "w", LONG).await.unwrap().unwrap();
        assert_eq!(job.id, queued.id);
        let done = jobs::complete(&db, SVC, job.id, "w", json!(round))
            .await
            .unwrap();
        assert_eq!(done.status, JobStatus::Completed);
        let names = prepared().await;
        assert_eq!(names.len(), 2, "the claim and the completion: {names:?}");
        for name in names {
            db.execute_unprepared(&format!("DEALLOCATE {name}"))
                .await
                .unwrap();
        }
    }
    db.close().await.ok();
    t.finish().await;
}
