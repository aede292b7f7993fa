//! Connection faults lose nothing: workers draining the queue, and a live event stream
//! watching a session, survive their backends being terminated and the PostgreSQL server
//! restarting. Alone in its test binary, because it restarts the whole cluster.

mod common;

use forge_db::entity::ids::JobId;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{TestDb, query_i64};
use forge_db::entity::prelude::EventType;
use forge_db::sea_orm::{ConnectionTrait, DatabaseConnection};
use forge_db::service::jobs::NewJob;
use forge_db::service::testing::fixtures;
use forge_db::service::{Actor, ForgeError, events, jobs};
use futures_util::StreamExt;

const JOBS: i64 = 1_000;
const WORKERS: usize = 4;
/// Short, so a claim whose reply was lost is claimable again soon.
const LEASE: Duration = Duration::from_secs(3);

/// What one worker saw.
#[derive(Default)]
struct Tally {
    /// Jobs whose `complete` answered `Ok`.
    completed: Vec<JobId>,
    /// Calls that failed with a retryable error and were tried again.
    retried: u64,
    /// Completions whose first try failed in flight and whose retry found the job no
    /// longer held (it may have committed before the reply was lost).
    ambiguous: u64,
}

/// Runs `call` until it returns something other than a retryable error.
async fn retrying<T, F, Fut>(tally: &mut Tally, mut call: F) -> Result<T, ForgeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ForgeError>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(err) if err.is_retryable() && Instant::now() < deadline => {
                tally.retried += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// A worker: claims up to 10 jobs at a time and completes each, retrying what a fault
/// interrupted, until `done` says every job is completed.
async fn worker(pool: DatabaseConnection, name: String, done: Arc<AtomicU64>) -> Tally {
    let mut tally = Tally::default();
    while done.load(Ordering::Relaxed) < JOBS as u64 {
        let claimed = retrying(&mut tally, || {
            jobs::claim_many(&pool, Actor::Service, &name, LEASE, 10)
        })
        .await
        .expect("claim");
        if claimed.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        for job in claimed {
            let mut tries = 0;
            let outcome = retrying(&mut tally, || {
                tries += 1;
                jobs::complete(
                    &pool,
                    Actor::Service,
                    job.id,
                    &name,
                    serde_json::json!({ "worker": name }),
                )
            })
            .await;
            match outcome {
                Ok(_) => {
                    tally.completed.push(job.id);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                // Retried after a fault: it committed before the reply was lost, or its
                // lease ran out meanwhile and another worker has it now.
                Err(ForgeError::LeaseLost { .. }) if tries > 1 => tally.ambiguous += 1,
                // The lease ran out while a fault held us up: another worker has the job.
                Err(ForgeError::LeaseLost { .. }) => {}
                Err(err) => panic!("worker {name}: complete failed for good: {err}"),
            }
        }
    }
    tally
}

/// `sql`'s integer on `owner`, tried again while the pool hands out connections the
/// restart ended; each failure must be one that `ForgeError::is_retryable` calls so.
async fn owner_query_after_restart(owner: &DatabaseConnection, sql: &str) -> i64 {
    use forge_db::sea_orm::Statement;
    for _ in 0..20 {
        match owner
            .query_one_raw(Statement::from_string(owner.get_database_backend(), sql))
            .await
        {
            Ok(Some(row)) => return row.try_get_by_index::<i64>(0).expect("integer column"),
            Ok(None) => panic!("no row from {sql}"),
            Err(err) => {
                let err = ForgeError::from(err);
                assert!(err.is_retryable(), "not retryable after a restart: {err}");
            }
        }
    }
    panic!("the owner's pool did not reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_lose_no_job_when_backends_die_and_the_server_restarts() {
    let restart = std::env::var("FORGE_TEST_PG_RESTART").unwrap_or_else(|_| {
        panic!("FORGE_TEST_PG_RESTART is not set: run the tests with scripts/test.sh")
    });
    let t = TestDb::postgres().await;
    let (_user, _project, session) = fixtures::user_with_project_and_session(&t.db)
        .await
        .expect("fixtures");
    for chunk in 0..(JOBS / 250) {
        let batch = (0..250)
            .map(|i| NewJob::new(session.id, format!("job {}", chunk * 250 + i)))
            .collect();
        jobs::enqueue_many(&t.db, Actor::Service, batch)
            .await
            .expect("enqueue");
    }
    let app_url = t.app_url().expect("postgres");
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let pool = forge_db::connect(&app_url).await.expect("worker pool");
        workers.push(tokio::spawn(worker(
            pool,
            format!("worker-{w}"),
            done.clone(),
        )));
    }

    // Meanwhile the service appends events to the session (retrying what the faults
    // interrupt) and a user's live stream watches it.
    let stream_pool = forge_db::connect(&app_url).await.expect("stream pool");
    let mut stream = events::subscribe(&stream_pool, Actor::Service, session.id, 0)
        .await
        .expect("subscribe");
    // Read live, through the faults; told at the end how many events there are.
    let expected = Arc::new(std::sync::atomic::AtomicI64::new(i64::MAX));
    let watcher = {
        let expected = expected.clone();
        tokio::spawn(async move {
            let mut delivered = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while (delivered.len() as i64) < expected.load(Ordering::Relaxed) {
                assert!(Instant::now() < deadline, "the stream stalled");
                if let Ok(next) =
                    tokio::time::timeout(Duration::from_millis(200), stream.next()).await
                {
                    let event = next.expect("the stream goes on").expect("no error item");
                    delivered.push(event.seq);
                }
            }
            delivered
        })
    };
    let appender = {
        let pool = forge_db::connect(&app_url).await.expect("appender pool");
        let done = done.clone();
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut n = 0u64;
            while done.load(Ordering::Relaxed) < JOBS as u64 {
                retrying(&mut tally, || {
                    events::append(
                        &pool,
                        Actor::Service,
                        session.id,
                        EventType::Thinking,
                        serde_json::json!({"n": n}),
                    )
                })
                .await
                .expect("append");
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };

    // The faults, each once the queue is that far along.
    let wait_for = |n: u64| {
        let done = done.clone();
        async move {
            while done.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let kill = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE usename = 'forge_test_app' AND pid <> pg_backend_pid()";
    wait_for(150).await;
    let killed_first = query_i64(&t.owner, kill).await;
    wait_for(400).await;
    let killed_second = query_i64(&t.owner, kill).await;
    wait_for(650).await;
    let restart_status =
        tokio::task::spawn_blocking(move || std::process::Command::new(&restart).status())
            .await
            .expect("restart task")
            .expect("run the restart script");
    assert!(restart_status.success(), "the server restarted");

    let mut tallies = Vec::new();
    for w in workers {
        tallies.push(w.await.expect("worker"));
    }
    let elapsed = started.elapsed();

    // The owner's pool reconnects after the restart like any other: a connection used
    // within `CHECK_AFTER_IDLE` before the restart fails its next call with a retryable
    // error (it is not checked before it is handed out), and the retry runs on a new one.
    let completed = owner_query_after_restart(
        &t.owner,
        "SELECT count(*) FROM coding_jobs WHERE status = 'completed'",
    )
    .await;
    let by_holder = query_i64(
        &t.owner,
        "SELECT count(*) FROM coding_jobs WHERE status = 'completed' AND result->>'worker' = locked_by",
    )
    .await;
    let unfinished = query_i64(
        &t.owner,
        "SELECT count(*) FROM coding_jobs WHERE status <> 'completed'",
    )
    .await;
    let mut seen = HashSet::new();
    let mut twice = 0;
    for id in tallies.iter().flat_map(|t| &t.completed) {
        if !seen.insert(*id) {
            twice += 1;
        }
    }
    let retried: u64 = tallies.iter().map(|t| t.retried).sum();
    let ambiguous: u64 = tallies.iter().map(|t| t.ambiguous).sum();
    println!(
        "faults: {JOBS} jobs, {WORKERS} workers; backends terminated twice ({killed_first} and \
         {killed_second} connections) and the server restarted once; {completed} completed \
         ({by_holder} by the worker holding the lease), {unfinished} unfinished, {twice} \
         completed twice; {retried} retried calls, {ambiguous} completions whose reply was \
         lost; {:.1} s",
        elapsed.as_secs_f64()
    );
    assert!(
        killed_first > 0 && killed_second > 0,
        "backends were terminated"
    );
    assert_eq!(completed, JOBS, "every job completed");
    assert_eq!(by_holder, JOBS, "each by the worker that held it");
    assert_eq!(twice, 0, "no job completed twice");
    assert!(
        seen.len() as u64 + ambiguous >= JOBS as u64,
        "every completion is known to a worker ({} ok, {ambiguous} ambiguous)",
        seen.len()
    );
    assert!(retried > 0, "the faults interrupted calls");

    // The stream delivers every committed event once, in order, across the faults (an
    // append whose reply was lost and that was tried again is two events, both delivered).
    let appended = appender.await.expect("appender");
    let stored = query_i64(&t.owner, "SELECT count(*) FROM session_events").await;
    assert!(
        stored as u64 >= appended,
        "{stored} stored, {appended} appended"
    );
    expected.store(stored, Ordering::Relaxed);
    let delivered = watcher.await.expect("watcher");
    assert_eq!(
        delivered,
        (1..=stored).collect::<Vec<_>>(),
        "every event once, in order, across the faults"
    );
    stream_pool.close().await.ok();
    t.owner
        .execute_unprepared("SELECT 1")
        .await
        .expect("owner pool back");
    t.finish().await;
}
