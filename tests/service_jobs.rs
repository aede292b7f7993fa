//! forge_service::jobs on both backends: enqueueing, claim order, run_after, leases and
//! heartbeats, completion, retries with back-off, lease expiry counted as attempts, ended
//! sessions, purging, isolation between users, and races of many workers on separate
//! connections (every job finished exactly once, none lost, none claimed twice).

mod common;
mod session_support;

use forge_db::entity::ids::{JobId, ProfileId, SessionId};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{TestDb, as_service};
use forge_db::entity::coding_jobs::{self, JobStatus};
use forge_db::entity::coding_sessions::{self, SessionStatus};
use forge_db::entity::projects::ProjectStatus;
use forge_db::sea_orm::sea_query::Expr;
use forge_db::sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait, QueryFilter,
};
use forge_db::service::jobs::{self as repo, JobFilter, NewJob, RetryPolicy};
use forge_db::service::{Actor, ForgeError, PageRequest, sessions};
use serde_json::json;
use session_support::{SharedDb, owner, project, session, unfiltered_as};

use JobStatus::*;

const SVC: Actor = Actor::Service;
const LONG: Duration = Duration::from_secs(60);

on_both_backends! {
    enqueue_get_find_and_list => enqueue_get_find_and_list;
    refused_enqueues_change_nothing => refused_enqueues_change_nothing;
    priorities_and_fifo_hold_for_one_worker => priorities_and_fifo_hold_for_one_worker;
    run_after_is_respected => run_after_is_respected;
    claim_takes_a_lease_and_sets_started_at_once => claim_takes_a_lease_and_sets_started_at_once;
    a_lost_lease_cannot_finish_or_extend_the_job => a_lost_lease_cannot_finish_or_extend_the_job;
    failing_job_is_retried_with_backoff_then_fails_for_good => failing_job_is_retried_with_backoff_then_fails_for_good;
    expired_leases_count_as_attempts => expired_leases_count_as_attempts;
    ending_a_session_fails_its_unfinished_jobs => ending_a_session_fails_its_unfinished_jobs;
    expiring_sessions_fails_their_jobs => expiring_sessions_fails_their_jobs;
    purge_deletes_only_old_finished_jobs => purge_deletes_only_old_finished_jobs;
    user_b_cannot_see_or_touch_a_jobs => user_b_cannot_see_or_touch_a_jobs;
    eight_workers_drain_2000_jobs_exactly_once => eight_workers_drain_2000_jobs_exactly_once;
    crashed_workers_jobs_are_finished_by_others_once => crashed_workers_jobs_are_finished_by_others_once;
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A user with a live session; (owner, session id).
async fn live_session(db: &DatabaseConnection, email: &str) -> (ProfileId, SessionId) {
    let a = owner(db, email, 10).await;
    let p = project(db, a, ProjectStatus::Active).await;
    (a, session(db, a, p).await.id)
}

async fn enqueue_n(
    db: &DatabaseConnection,
    session: SessionId,
    n: usize,
) -> Vec<coding_jobs::Model> {
    let jobs = (0..n)
        .map(|i| NewJob::new(session, format!("job {i}")))
        .collect();
    repo::enqueue_many(db, SVC, jobs).await.unwrap()
}

async fn claim_one(db: &DatabaseConnection, worker: &str, lease: Duration) -> coding_jobs::Model {
    repo::claim(db, SVC, worker, lease)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{worker}: expected a claimable job"))
}

async fn job(db: &DatabaseConnection, id: JobId) -> coding_jobs::Model {
    repo::get(db, SVC, id).await.unwrap()
}

/// How many jobs the database holds (counted in the service's context: the test pool may
/// do nothing outside one on PostgreSQL).
async fn count_jobs(db: &DatabaseConnection) -> u64 {
    as_service(db, |txn| {
        Box::pin(async move { Ok(coding_jobs::Entity::find().count(txn).await?) })
    })
    .await
}

/// Every job, as the service sees it.
async fn all_jobs(db: &DatabaseConnection) -> Vec<coding_jobs::Model> {
    as_service(db, |txn| {
        Box::pin(async move { Ok(coding_jobs::Entity::find().all(txn).await?) })
    })
    .await
}

fn assert_lease_lost<T: std::fmt::Debug>(
    out: forge_db::service::Result<T>,
    job: JobId,
    worker: &str,
) {
    match out {
        Err(ForgeError::LeaseLost {
            entity,
            id,
            worker: w,
        }) => {
            assert_eq!((entity, id, w.as_str()), ("job", job.to_string(), worker));
        }
        other => panic!("expected LeaseLost for {worker}, got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(out: forge_db::service::Result<T>, field: &str) {
    match out {
        Err(ForgeError::Validation { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected Validation({field}), got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(out: forge_db::service::Result<T>) {
    assert!(
        matches!(out, Err(ForgeError::NotFound { .. })),
        "expected NotFound, got {out:?}"
    );
}

fn assert_forbidden<T: std::fmt::Debug>(out: forge_db::service::Result<T>) {
    assert!(
        matches!(out, Err(ForgeError::Forbidden { .. })),
        "expected Forbidden, got {out:?}"
    );
}

async fn enqueue_get_find_and_list(t: &TestDb) {
    let db = &t.db;
    let (a, s) = live_session(db, "a@example.com").await;
    let before = Utc::now();
    let one = repo::enqueue(db, SVC, NewJob::new(s, "  Add a login screen  "))
        .await
        .unwrap();
    assert_eq!(one.session_id, s);
    assert_eq!(one.prompt, "Add a login screen");
    assert_eq!(
        (one.status, one.priority, one.retry_count, one.max_retries),
        (Pending, 0, 0, 3)
    );
    assert!(one.run_after >= before - TimeDelta::seconds(1) && one.run_after <= Utc::now());
    assert_eq!((one.locked_by.as_deref(), one.locked_until), (None, None));
    assert_eq!((one.started_at, one.completed_at), (None, None));

    let later = Utc::now() + TimeDelta::hours(1);
    let many = repo::enqueue_many(
        db,
        SVC,
        (0..1203)
            .map(|i| NewJob {
                priority: i % 3,
                max_retries: 5,
                run_after: (i == 7).then_some(later),
                ..NewJob::new(s, format!("step {i}"))
            })
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(many.len(), 1203, "more than two insert chunks");
    let prompts: Vec<_> = many.iter().map(|j| j.prompt.clone()).collect();
    let expected: Vec<_> = (0..1203).map(|i| format!("step {i}")).collect();
    assert_eq!(prompts, expected, "returned in the given order");
    assert_eq!(many[7].run_after, later.trunc_subsecs_micro());
    assert!(
        many.iter()
            .all(|j| j.max_retries == 5 && j.status == Pending)
    );
    assert_eq!(repo::enqueue_many(db, SVC, vec![]).await.unwrap(), vec![]);

    let ua = Actor::User(a);
    assert_eq!(repo::get(db, ua, one.id).await.unwrap(), one);
    assert_eq!(
        repo::find(db, SVC, one.id).await.unwrap(),
        Some(one.clone())
    );
    assert_eq!(repo::find(db, ua, JobId::new()).await.unwrap(), None);
    assert_not_found(repo::get(db, ua, JobId::new()).await);

    // The owner pages through the session's jobs, oldest first, without gaps or repeats.
    let filter = JobFilter {
        session_id: Some(s),
        status: None,
    };
    let mut seen = Vec::new();
    let mut request = PageRequest::with_limit(200);
    loop {
        let page = repo::list(db, ua, filter, request.clone()).await.unwrap();
        seen.extend(page.items.iter().map(|j| j.id));
        match page.next {
            Some(c) => request = request.next(c),
            None => break,
        }
    }
    let expected: Vec<_> = std::iter::once(one.id)
        .chain(many.iter().map(|j| j.id))
        .collect();
    assert_eq!(seen, expected);

    let claimed = claim_one(db, "w1", LONG).await;
    let processing = repo::list(
        db,
        ua,
        JobFilter {
            session_id: None,
            status: Some(Processing),
        },
        PageRequest::first(),
    )
    .await
    .unwrap();
    assert_eq!(processing.items, vec![claimed]);
    assert_invalid(
        repo::list(db, ua, filter, PageRequest::with_limit(0)).await,
        "limit",
    );
}

/// Microsecond precision, as both backends keep it.
trait Micro {
    fn trunc_subsecs_micro(self) -> Self;
}

impl Micro for chrono::DateTime<Utc> {
    fn trunc_subsecs_micro(self) -> Self {
        use chrono::SubsecRound;
        self.trunc_subsecs(6)
    }
}

async fn refused_enqueues_change_nothing(t: &TestDb) {
    let db = &t.db;
    let (a, s) = live_session(db, "a@example.com").await;
    assert_forbidden(repo::enqueue(db, Actor::User(a), NewJob::new(s, "mine")).await);
    assert_invalid(
        repo::enqueue(db, SVC, NewJob::new(s, "   ")).await,
        "prompt",
    );
    assert_invalid(
        repo::enqueue(db, SVC, NewJob::new(s, "x".repeat(100_001))).await,
        "prompt",
    );
    for max_retries in [-1, repo::MAX_RETRIES + 1] {
        let bad = NewJob {
            max_retries,
            ..NewJob::new(s, "retry")
        };
        assert_invalid(repo::enqueue(db, SVC, bad).await, "max_retries");
    }
    assert_not_found(repo::enqueue(db, SVC, NewJob::new(SessionId::new(), "lost")).await);
    // One bad job refuses the whole batch.
    let mixed = vec![
        NewJob::new(s, "fine"),
        NewJob::new(SessionId::new(), "unknown session"),
    ];
    assert_not_found(repo::enqueue_many(db, SVC, mixed).await);
    let too_many = (0..=repo::MAX_ENQUEUE)
        .map(|_| NewJob::new(s, "x"))
        .collect();
    assert_invalid(repo::enqueue_many(db, SVC, too_many).await, "jobs");

    sessions::transition(db, Actor::User(a), s, SessionStatus::Failed)
        .await
        .unwrap();
    assert_invalid(
        repo::enqueue(db, SVC, NewJob::new(s, "too late")).await,
        "session_id",
    );
    assert_eq!(count_jobs(db).await, 0, "nothing was written");
}

async fn priorities_and_fifo_hold_for_one_worker(t: &TestDb) {
    let db = &t.db;
    let (_, s) = live_session(db, "a@example.com").await;
    let (_, s2) = live_session(db, "b@example.com").await;
    // (priority, name) in enqueue order, across two sessions and three calls.
    let plan = [
        (0, "low 1"),
        (5, "mid 1"),
        (0, "low 2"),
        (10, "high 1"),
        (5, "mid 2"),
        (-3, "negative"),
        (10, "high 2"),
        (0, "low 3"),
    ];
    for (i, chunk) in plan.chunks(3).enumerate() {
        let jobs = chunk
            .iter()
            .map(|(priority, name)| NewJob {
                priority: *priority,
                ..NewJob::new(if i % 2 == 0 { s } else { s2 }, *name)
            })
            .collect();
        repo::enqueue_many(db, SVC, jobs).await.unwrap();
    }
    let mut order = Vec::new();
    let first_three = repo::claim_many(db, SVC, "solo", LONG, 3).await.unwrap();
    order.extend(first_three.iter().map(|j| j.prompt.clone()));
    while let Some(j) = repo::claim(db, SVC, "solo", LONG).await.unwrap() {
        order.push(j.prompt);
    }
    assert_eq!(
        order,
        [
            "high 1", "high 2", "mid 1", "mid 2", "low 1", "low 2", "low 3", "negative"
        ]
    );
    assert!(
        repo::claim_many(db, SVC, "solo", LONG, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn run_after_is_respected(t: &TestDb) {
    let db = &t.db;
    let (_, s) = live_session(db, "a@example.com").await;
    let soon = Utc::now() + TimeDelta::milliseconds(400);
    let delayed = repo::enqueue(
        db,
        SVC,
        NewJob {
            priority: 100,
            run_after: Some(soon),
            ..NewJob::new(s, "later")
        },
    )
    .await
    .unwrap();
    let past = repo::enqueue(
        db,
        SVC,
        NewJob {
            run_after: Some(Utc::now() - TimeDelta::hours(1)),
            ..NewJob::new(s, "overdue")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        claim_one(db, "w", LONG).await.id,
        past.id,
        "despite its lower priority"
    );
    assert_eq!(repo::claim(db, SVC, "w", LONG).await.unwrap(), None);
    tokio::time::sleep((soon - Utc::now()).to_std().unwrap_or_default() + ms(20)).await;
    assert_eq!(claim_one(db, "w", LONG).await.id, delayed.id);
}

async fn claim_takes_a_lease_and_sets_started_at_once(t: &TestDb) {
    let db = &t.db;
    let (_, s) = live_session(db, "a@example.com").await;
    let queued = repo::enqueue(db, SVC, NewJob::new(s, "build"))
        .await
        .unwrap();
    let before = Utc::now() - TimeDelta::milliseconds(1);
    let first = claim_one(db, "w1", ms(300)).await;
    assert_eq!(first.id, queued.id);
    assert_eq!(first.status, Processing);
    assert_eq!(first.locked_by.as_deref(), Some("w1"));
    let until = first.locked_until.unwrap();
    let started = first.started_at.unwrap();
    assert!(started >= before && started <= Utc::now());
    assert!(
        until >= started + TimeDelta::milliseconds(299)
            && until <= started + TimeDelta::milliseconds(301)
    );
    assert_eq!(first.retry_count, 0);
    assert_eq!(
        job(db, queued.id).await,
        first,
        "what the claim returned is stored"
    );
    assert_eq!(
        repo::claim(db, SVC, "w2", LONG).await.unwrap(),
        None,
        "held by w1"
    );

    tokio::time::sleep(ms(350)).await;
    let second = claim_one(db, "w2", LONG).await;
    assert_eq!(
        (second.id, second.locked_by.as_deref()),
        (queued.id, Some("w2"))
    );
    assert_eq!(second.started_at, Some(started), "started_at is set once");
    assert_eq!(second.retry_count, 1, "the expired lease was an attempt");

    for (worker, lease, field) in [
        ("", LONG, "worker"),
        ("w", Duration::ZERO, "lease"),
        ("w", repo::MAX_LEASE + ms(1), "lease"),
    ] {
        assert_invalid(repo::claim(db, SVC, worker, lease).await, field);
    }
    assert_invalid(repo::claim_many(db, SVC, "w", LONG, 0).await, "n");
    assert_invalid(
        repo::claim_many(db, SVC, "w", LONG, repo::MAX_CLAIM + 1).await,
        "n",
    );
}

async fn a_lost_lease_cannot_finish_or_extend_the_job(t: &TestDb) {
    let db = &t.db;
    let (_, s) = live_session(db, "a@example.com").await;
    let queued = repo::enqueue(db, SVC, NewJob::new(s, "build"))
        .await
        .unwrap();
    let id = queued.id;
    let held = claim_one(db, "w1", ms(200)).await;

    // While held: a heartbeat extends the lease; other workers are refused.
    let beat = repo::heartbeat(db, SVC, id, "w1", LONG).await.unwrap();
    assert!(beat.locked_until.unwrap() > held.locked_until.unwrap() + TimeDelta::seconds(50));
    assert_eq!(beat.status, Processing);
    assert_lease_lost(repo::heartbeat(db, SVC, id, "w2", LONG).await, id, "w2");
    assert_lease_lost(repo::complete(db, SVC, id, "w2", json!({})).await, id, "w2");
    assert_lease_lost(
        repo::fail(db, SVC, id, "w2", "nope", RetryPolicy::default()).await,
        id,
        "w2",
    );
    let unknown = JobId::new();
    assert_lease_lost(
        repo::heartbeat(db, SVC, unknown, "w1", LONG).await,
        unknown,
        "w1",
    );
    assert_eq!(job(db, id).await, beat, "refused calls changed nothing");

    // The lease runs out and w2 takes the job over: w1 can do nothing more with it.
    repo::heartbeat(db, SVC, id, "w1", ms(100)).await.unwrap();
    tokio::time::sleep(ms(150)).await;
    let taken = claim_one(db, "w2", LONG).await;
    assert_eq!(taken.id, id);
    assert_lease_lost(repo::heartbeat(db, SVC, id, "w1", LONG).await, id, "w1");
    assert_lease_lost(
        repo::complete(db, SVC, id, "w1", json!({"by": 1})).await,
        id,
        "w1",
    );
    assert_lease_lost(
        repo::fail(db, SVC, id, "w1", "late", RetryPolicy::default()).await,
        id,
        "w1",
    );
    assert_eq!(job(db, id).await, taken);

    // A result over 64 KiB is refused; the job stays the holder's to finish.
    assert_invalid(
        repo::complete(db, SVC, id, "w2", json!({"blob": "x".repeat(70_000)})).await,
        "result",
    );
    assert_eq!(job(db, id).await, taken);

    let done = repo::complete(db, SVC, id, "w2", json!({"files": ["App.tsx"]}))
        .await
        .unwrap();
    assert_eq!(done.status, Completed);
    assert_eq!(done.result, Some(json!({"files": ["App.tsx"]})));
    assert!(done.completed_at.is_some() && done.locked_until.is_none());
    // Finished means finished, also for the worker that finished it.
    assert_lease_lost(repo::complete(db, SVC, id, "w2", json!(2)).await, id, "w2");
    assert_lease_lost(repo::heartbeat(db, SVC, id, "w2", LONG).await, id, "w2");
    assert_eq!(job(db, id).await, done);
    assert_eq!(repo::claim(db, SVC, "w3", LONG).await.unwrap(), None);
}

async fn failing_job_is_retried_with_backoff_then_fails_for_good(t: &TestDb) {
    let db = &t.db;
    let (_, s) = live_session(db, "a@example.com").await;
    let policy = RetryPolicy {
        base: ms(100),
        max: ms(250),
    };
    let queued = repo::enqueue(
        db,
        SVC,
        NewJob {
            max_retries: 2,
            ..NewJob::new(s, "always fails")
        },
    )
    .await
    .unwrap();
    for attempt in 0..3 {
        let mut claimed = None;
        for _ in 0..100 {
            claimed = repo::claim(db, SVC, "w", LONG).await.unwrap();
            if claimed.is_some() {
                break;
            }
            tokio::time::sleep(ms(20)).await;
        }
        let claimed = claimed.expect("claimable again after its back-off");
        assert_eq!((claimed.id, claimed.retry_count), (queued.id, attempt));
        let at = Utc::now();
        let failed = repo::fail(db, SVC, queued.id, "w", &format!("boom {attempt}"), policy)
            .await
            .unwrap();
        assert_eq!(
            failed.error_message.as_deref(),
            Some(format!("boom {attempt}").as_str())
        );
        if attempt < 2 {
            assert_eq!((failed.status, failed.retry_count), (Pending, attempt + 1));
            assert_eq!(
                (failed.locked_by.as_deref(), failed.locked_until),
                (None, None)
            );
            let wait = failed.run_after - at;
            let plain = (100 << attempt).min(250);
            assert!(
                wait >= TimeDelta::milliseconds(plain * 3 / 4 - 5)
                    && wait <= TimeDelta::milliseconds(250 + 50),
                "attempt {attempt}: back-off {wait}"
            );
            assert_eq!(
                repo::claim(db, SVC, "w", LONG).await.unwrap(),
                None,
                "backing off"
            );
        } else {
            assert_eq!((failed.status, failed.retry_count), (Failed, 2));
            assert!(failed.completed_at.is_some());
        }
    }
    tokio::time::sleep(ms(300)).await;
    assert_eq!(
        repo::claim(db, SVC, "w", LONG).await.unwrap(),
        None,
        "failed for good"
    );
    assert_lease_lost(
        repo::fail(db, SVC, queued.id, "w", "again", policy).await,
        queued.id,
        "w",
    );
    assert_invalid(
        repo::fail(db, SVC, queued.id, "w", "  ", policy).await,
        "error",
    );

    // The back-off doubles up to the cap, with jitter inside ±25 %.
    let policy = RetryPolicy::default();
    for (count, plain) in [(0, 5), (1, 10), (3, 40), (6, 320), (7, 600), (40, 600)] {
        let d = policy.backoff(count).as_secs_f64();
        assert!(
            d >= plain as f64 * 0.75 && d <= (plain as f64 * 1.25).min(600.0),
            "{count}: {d}"
        );
    }
}

async fn expired_leases_count_as_attempts(t: &TestDb) {
    let db = &t.db;
    let (_, s) = live_session(db, "a@example.com").await;
    let queued = repo::enqueue(
        db,
        SVC,
        NewJob {
            max_retries: 1,
            ..NewJob::new(s, "crashes its workers")
        },
    )
    .await
    .unwrap();
    let other = repo::enqueue(db, SVC, NewJob::new(s, "healthy"))
        .await
        .unwrap();
    assert_eq!(claim_one(db, "w1", ms(100)).await.id, queued.id);
    tokio::time::sleep(ms(150)).await;
    let again = claim_one(db, "w2", ms(100)).await;
    assert_eq!((again.id, again.retry_count), (queued.id, 1));
    tokio::time::sleep(ms(150)).await;
    // The third claim finds the job out of attempts: it fails it and claims the next one.
    let next = repo::claim_many(db, SVC, "w3", LONG, 1).await.unwrap();
    assert_eq!(
        next.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![other.id]
    );
    let dead = job(db, queued.id).await;
    assert_eq!((dead.status, dead.retry_count), (Failed, 1));
    assert!(dead.error_message.unwrap().contains("lease expired"));
    assert!(dead.completed_at.is_some() && dead.locked_until.is_none());
    assert_lease_lost(
        repo::complete(db, SVC, queued.id, "w2", json!(1)).await,
        queued.id,
        "w2",
    );
}

const ENDED_REASON: &str = "before the job finished";

async fn ending_a_session_fails_its_unfinished_jobs(t: &TestDb) {
    let db = &t.db;
    let (a, s) = live_session(db, "a@example.com").await;
    let (_, other) = live_session(db, "b@example.com").await;
    let jobs = enqueue_n(db, s, 4).await;
    let bystander = enqueue_n(db, other, 1).await.remove(0);
    let done = claim_one(db, "w", LONG).await;
    repo::complete(db, SVC, done.id, "w", json!("ok"))
        .await
        .unwrap();
    let running = claim_one(db, "w", LONG).await;

    // The owner (on PostgreSQL as role `authenticated`, which cannot update jobs) ends it.
    sessions::transition(db, Actor::User(a), s, SessionStatus::Active)
        .await
        .unwrap();
    sessions::transition(db, Actor::User(a), s, SessionStatus::Completed)
        .await
        .unwrap();
    for j in &jobs {
        let now = job(db, j.id).await;
        if j.id == done.id {
            assert_eq!(now.status, Completed, "finished jobs stay as they were");
            continue;
        }
        assert_eq!(now.status, Failed, "{}", j.prompt);
        assert_eq!(
            now.error_message.as_deref(),
            Some(format!("session completed {ENDED_REASON}").as_str())
        );
        assert!(now.completed_at.is_some() && now.locked_until.is_none());
    }
    assert_lease_lost(
        repo::complete(db, SVC, running.id, "w", json!(1)).await,
        running.id,
        "w",
    );
    assert_eq!(
        job(db, bystander.id).await,
        bystander,
        "other sessions' jobs untouched"
    );
    assert_eq!(
        claim_one(db, "w", LONG).await.id,
        bystander.id,
        "nothing else is claimable"
    );
}

async fn expiring_sessions_fails_their_jobs(t: &TestDb) {
    let db = &t.db;
    let (_, s) = live_session(db, "a@example.com").await;
    let (_, fresh) = live_session(db, "b@example.com").await;
    let doomed = enqueue_n(db, s, 3).await;
    let kept = enqueue_n(db, fresh, 2).await;
    // Overdue (written as the database's owner: `expires_at` is fixed after the start).
    coding_sessions::Entity::update_many()
        .col_expr(
            coding_sessions::Column::ExpiresAt,
            Expr::value(Utc::now() - TimeDelta::minutes(1)),
        )
        .filter(coding_sessions::Column::Id.eq(s))
        .exec(&t.owner)
        .await
        .unwrap();
    assert_eq!(sessions::expire_overdue(db, SVC).await.unwrap(), 1);
    for j in &doomed {
        let now = job(db, j.id).await;
        assert_eq!(now.status, Failed);
        assert_eq!(
            now.error_message.as_deref(),
            Some(format!("session expired {ENDED_REASON}").as_str())
        );
    }
    for j in &kept {
        assert_eq!(job(db, j.id).await, *j);
    }
}

async fn purge_deletes_only_old_finished_jobs(t: &TestDb) {
    let db = &t.db;
    let (_, s) = live_session(db, "a@example.com").await;
    let jobs = enqueue_n(db, s, 9).await;
    // Finish seven: five completed, two failed for good; two stay pending / processing.
    let claimed = repo::claim_many(db, SVC, "w", LONG, 8).await.unwrap();
    for (i, j) in claimed.iter().take(7).enumerate() {
        if i < 5 {
            repo::complete(db, SVC, j.id, "w", json!(i)).await.unwrap();
        } else {
            force_last_attempt(db, j.id).await;
            repo::fail(db, SVC, j.id, "w", "broken", RetryPolicy::default())
                .await
                .unwrap();
        }
    }
    // Age six of the seven finished jobs (four completed, both failed) by two hours (as
    // the database's owner).
    let old: Vec<JobId> = claimed[1..7].iter().map(|j| j.id).collect();
    coding_jobs::Entity::update_many()
        .col_expr(
            coding_jobs::Column::CompletedAt,
            Expr::value(Utc::now() - TimeDelta::hours(2)),
        )
        .filter(coding_jobs::Column::Id.is_in(old.clone()))
        .exec(&t.owner)
        .await
        .unwrap();
    assert_invalid(repo::purge_finished(db, SVC, LONG, 0).await, "batch_size");
    assert_forbidden(repo::purge_finished(db, Actor::User(ProfileId::new()), LONG, 10).await);
    assert_eq!(
        repo::purge_finished(db, SVC, Duration::from_secs(3600), 4)
            .await
            .unwrap(),
        6,
        "two batches of at most four"
    );
    let left: HashSet<JobId> = all_jobs(db).await.into_iter().map(|j| j.id).collect();
    let expected: HashSet<JobId> = jobs
        .iter()
        .map(|j| j.id)
        .filter(|id| !old.contains(id))
        .collect();
    assert_eq!(left, expected);
    assert_eq!(
        repo::purge_finished(db, SVC, Duration::from_secs(3600), 4)
            .await
            .unwrap(),
        0
    );
}

/// Sets a job's `max_retries` to its `retry_count`, so its next failure is its last
/// (raw, in the service's context).
async fn force_last_attempt(db: &DatabaseConnection, id: JobId) {
    as_service(db, move |txn| {
        Box::pin(async move {
            coding_jobs::Entity::update_many()
                .col_expr(
                    coding_jobs::Column::MaxRetries,
                    Expr::col(coding_jobs::Column::RetryCount),
                )
                .filter(coding_jobs::Column::Id.eq(id))
                .exec(txn)
                .await?;
            Ok(())
        })
    })
    .await
}

async fn user_b_cannot_see_or_touch_a_jobs(t: &TestDb) {
    let db = &t.db;
    let (a, s) = live_session(db, "a@example.com").await;
    let (b, _) = live_session(db, "b@example.com").await;
    let jobs = enqueue_n(db, s, 3).await;
    let held = claim_one(db, "w", LONG).await;
    let before = all_jobs(db).await;
    let (ua, ub) = (Actor::User(a), Actor::User(b));

    for j in &jobs {
        assert_eq!(repo::find(db, ub, j.id).await.unwrap(), None);
        assert_not_found(repo::get(db, ub, j.id).await);
        assert!(repo::find(db, ua, j.id).await.unwrap().is_some());
    }
    let of_a = JobFilter {
        session_id: Some(s),
        status: None,
    };
    assert!(
        repo::list(db, ub, of_a, PageRequest::first())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        repo::list(db, ub, JobFilter::default(), PageRequest::first())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        repo::list(db, ua, of_a, PageRequest::first())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    // Everything else is the service's, even for the owner.
    for user in [ua, ub] {
        assert_forbidden(repo::enqueue(db, user, NewJob::new(s, "x")).await);
        assert_forbidden(repo::claim(db, user, "w", LONG).await);
        assert_forbidden(repo::claim_many(db, user, "w", LONG, 2).await);
        assert_forbidden(repo::heartbeat(db, user, held.id, "w", LONG).await);
        assert_forbidden(repo::complete(db, user, held.id, "w", json!(1)).await);
        assert_forbidden(repo::complete_many(db, user, "w", vec![(held.id, json!(1))]).await);
        assert_forbidden(repo::fail(db, user, held.id, "w", "x", RetryPolicy::default()).await);
        assert_forbidden(repo::purge_finished(db, user, Duration::ZERO, 10).await);
    }
    // B cannot end A's session, which would fail A's jobs.
    assert_not_found(sessions::transition(db, ub, s, SessionStatus::Failed).await);
    if t.backend() == DbBackend::Postgres {
        // Row-level security alone (no repository filter) shows B none of A's jobs.
        assert!(
            unfiltered_as::<coding_jobs::Entity>(db, ub)
                .await
                .is_empty()
        );
        assert_eq!(unfiltered_as::<coding_jobs::Entity>(db, ua).await.len(), 3);
    }
    assert_eq!(all_jobs(db).await, before);
}

/// Claims jobs until none is left (or, with `linger`, until `total` jobs are finished
/// in the database), completing each; returns the ids it claimed.
async fn drain(
    db: DatabaseConnection,
    worker: String,
    batch: u64,
    total: Option<u64>,
) -> Vec<JobId> {
    let mut claims = Vec::new();
    loop {
        let got = repo::claim_many(&db, SVC, &worker, LONG, batch)
            .await
            .unwrap();
        if got.is_empty() {
            let finished = match total {
                Some(total) => finished_count(&db).await >= total,
                None => true,
            };
            if finished {
                break;
            }
            tokio::time::sleep(ms(50)).await;
            continue;
        }
        for j in got {
            assert_eq!(j.locked_by.as_deref(), Some(worker.as_str()));
            claims.push(j.id);
            repo::complete(&db, SVC, j.id, &worker, json!({ "by": worker }))
                .await
                .unwrap();
        }
    }
    db.close().await.ok();
    claims
}

/// How many jobs are completed (counted in the service's context).
async fn finished_count(db: &DatabaseConnection) -> u64 {
    as_service(db, |txn| {
        Box::pin(async move {
            Ok(coding_jobs::Entity::find()
                .filter(coding_jobs::Column::Status.eq(Completed))
                .count(txn)
                .await?)
        })
    })
    .await
}

/// Runs `drain` on `n` separate pools with batch sizes 1, 5, 1, 5, …; (worker, job) claims.
async fn run_workers(shared: &SharedDb, n: usize, total: Option<u64>) -> Vec<(String, JobId)> {
    let mut tasks = Vec::new();
    for (i, db) in shared.pools(n).await.into_iter().enumerate() {
        let worker = format!("worker-{i}");
        let batch = if i % 2 == 0 { 1 } else { 5 };
        tasks.push(tokio::spawn(async move {
            let ids = drain(db, worker.clone(), batch, total).await;
            ids.into_iter()
                .map(|id| (worker.clone(), id))
                .collect::<Vec<_>>()
        }));
    }
    let mut claims = Vec::new();
    for task in tasks {
        claims.extend(task.await.unwrap());
    }
    claims
}

/// Every job completed exactly once, by the one worker that claimed it.
async fn assert_each_completed_once(
    db: &DatabaseConnection,
    claims: &[(String, JobId)],
    total: usize,
) {
    let mut by_job: HashMap<JobId, Vec<&str>> = HashMap::new();
    for (worker, id) in claims {
        by_job.entry(*id).or_default().push(worker);
    }
    let twice: Vec<_> = by_job.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(twice.is_empty(), "claimed twice: {twice:?}");
    assert_eq!(by_job.len(), total, "none lost");
    let rows = all_jobs(db).await;
    assert_eq!(rows.len(), total);
    for row in rows {
        assert_eq!(row.status, Completed, "{}", row.prompt);
        let worker = by_job[&row.id][0];
        assert_eq!(row.locked_by.as_deref(), Some(worker));
        assert_eq!(row.result, Some(json!({ "by": worker })));
    }
}

async fn eight_workers_drain_2000_jobs_exactly_once(t: &TestDb) {
    const JOBS: usize = 2000;
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    let (_, s) = live_session(&setup, "race@example.com").await;
    let jobs = (0..JOBS)
        .map(|i| NewJob {
            priority: (i % 4) as i32,
            ..NewJob::new(s, format!("job {i}"))
        })
        .collect();
    repo::enqueue_many(&setup, SVC, jobs).await.unwrap();

    let claims = run_workers(&shared, 8, None).await;
    assert_eq!(claims.len(), JOBS);
    assert_each_completed_once(&setup, &claims, JOBS).await;
    let retried = all_jobs(&setup)
        .await
        .iter()
        .filter(|j| j.retry_count != 0)
        .count();
    assert_eq!(retried, 0, "no lease ran out");
    setup.close().await.ok();
    shared.finish();
}

async fn crashed_workers_jobs_are_finished_by_others_once(t: &TestDb) {
    const JOBS: usize = 200;
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    let (_, s) = live_session(&setup, "crash@example.com").await;
    let jobs = enqueue_n(&setup, s, JOBS).await;

    // Three workers claim ten jobs each, with a 200 ms lease, and die.
    let mut abandoned = HashMap::new();
    for i in 0..3 {
        let worker = format!("crashed-{i}");
        for j in repo::claim_many(&setup, SVC, &worker, ms(200), 10)
            .await
            .unwrap()
        {
            abandoned.insert(j.id, worker.clone());
        }
    }
    assert_eq!(abandoned.len(), 30);

    let claims = run_workers(&shared, 4, Some(JOBS as u64)).await;
    assert_each_completed_once(&setup, &claims, JOBS).await;
    for j in &jobs {
        let now = job(&setup, j.id).await;
        let expected = u64::from(abandoned.contains_key(&j.id));
        assert_eq!(now.retry_count as u64, expected, "attempts of {}", j.prompt);
    }
    // The dead workers, coming back, cannot finish what others finished.
    for (id, worker) in &abandoned {
        assert_lease_lost(
            repo::complete(&setup, SVC, *id, worker, json!(0)).await,
            *id,
            worker,
        );
    }
    setup.close().await.ok();
    shared.finish();
}

/// PostgreSQL only: the queue-tuning migration sets what its docs say, and its `down`
/// undoes all of it (catalog reads and migrations as the database's owner).
#[tokio::test]
async fn queue_tuning_is_applied_used_and_reverted() {
    use common::{query_i64, query_string};
    use forge_db::{Migrator, MigratorTrait};
    let t = TestDb::postgres().await;
    let db = &t.owner;
    let options = query_string(
        db,
        "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'coding_jobs'",
    )
    .await
    .unwrap_or_default();
    for want in ["fillfactor=80", "autovacuum_vacuum_scale_factor=0.01"] {
        assert!(options.contains(want), "{options}");
    }
    let items = query_string(
        db,
        "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'batch_items'",
    )
    .await
    .unwrap_or_default();
    assert!(
        items.contains("autovacuum_vacuum_scale_factor=0.01"),
        "{items}"
    );

    let claimable = "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_coding_jobs_lease'";
    let trigger =
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'coding_sessions_fail_jobs_when_ended'";
    assert_eq!(query_i64(db, claimable).await, 1);
    assert_eq!(query_i64(db, trigger).await, 1);

    // The migrations after the queue tuning (the database wall, …): reverting them leaves
    // the tuning…
    let later = Migrator::migrations()
        .iter()
        .rev()
        .take_while(|m| m.name() != "m20251122_000005_queue_tuning")
        .count();
    Migrator::down(db, Some(later as u32)).await.unwrap();
    assert_eq!(query_i64(db, claimable).await, 1);
    assert_eq!(query_i64(db, trigger).await, 1);
    // …and the queue tuning's own `down` undoes it.
    Migrator::down(db, Some(1)).await.unwrap();
    assert_eq!(query_i64(db, claimable).await, 0);
    assert_eq!(query_i64(db, trigger).await, 0);
    let reset = query_string(
        db,
        "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'coding_jobs'",
    )
    .await;
    assert_eq!(reset, None, "options reset");
    Migrator::up(db, None).await.unwrap();
    assert_eq!(query_i64(db, claimable).await, 1);
    t.finish().await;
}
