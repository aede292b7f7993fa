//! forge_service::usage on both backends: the database's daily counters are exact after
//! concurrent activity (sessions started, jobs completed by racing workers, conversations
//! with their tokens, credits spent), a refused or rolled-back action counts nothing, a
//! range leaves out the days on which nothing was counted and `totals` sums them, a user
//! reads only their own usage, and on PostgreSQL no end user can write a counter.

mod common;
mod session_support;

use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use common::TestDb;
use forge_db::entity::coding_sessions::SessionStatus;
use forge_db::entity::ids::{ProfileId, UsageMetricId};
use forge_db::entity::projects::ProjectStatus;
use forge_db::entity::usage_metrics;
use forge_db::sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, Set, TransactionTrait,
};
use forge_db::service::credits::{self, CreditChange};
use forge_db::service::jobs::{self, NewJob};
use forge_db::service::sessions::{self, NewSession};
use forge_db::service::testing::fixtures;
use forge_db::service::usage::{self, MAX_RANGE_DAYS, UsageTotals};
use forge_db::service::{Access, Actor, ForgeError, run_as};
use serde_json::json;
use session_support::{SharedDb, owner, project};

on_both_backends! {
    counters_are_exact_under_concurrent_activity => counters_are_exact_under_concurrent_activity;
    refused_and_rolled_back_actions_count_nothing => refused_and_rolled_back_actions_count_nothing;
    ranges_leave_out_empty_days_and_totals_sum => ranges_leave_out_empty_days_and_totals_sum;
    a_user_reads_only_their_own_usage => a_user_reads_only_their_own_usage;
    ranges_are_validated => ranges_are_validated;
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// What `user` was counted from `since` to today, read as the user. When that is one day
/// (the UTC day did not change while the test ran), its one row must be the totals.
async fn counted(db: &DatabaseConnection, user: ProfileId, since: NaiveDate) -> UsageTotals {
    let me = Actor::User(user);
    let until = today();
    let totals = usage::totals(db, me, user, since, until)
        .await
        .expect("totals");
    let rows = usage::range(db, me, user, since, until)
        .await
        .expect("range");
    if since == until {
        // The day's one row holds exactly what the totals say.
        match rows.as_slice() {
            [] => assert_eq!(totals.active_days, 0),
            [row] => {
                assert_eq!(row.user_id, user);
                assert_eq!(row.day, since);
                assert_eq!(
                    (
                        i64::from(row.sessions_started),
                        i64::from(row.jobs_completed),
                        i64::from(row.conversations_created),
                        row.tokens,
                        row.credits_spent,
                    ),
                    (
                        totals.sessions_started,
                        totals.jobs_completed,
                        totals.conversations_created,
                        totals.tokens,
                        totals.credits_spent,
                    ),
                    "the day's row is the totals"
                );
            }
            more => panic!("one row per user and day, got {more:?}"),
        }
    }
    totals
}

/// Counts as `(sessions, jobs, conversations, tokens, credits)`.
fn counts(t: &UsageTotals) -> (i64, i64, i64, i64, i64) {
    (
        t.sessions_started,
        t.jobs_completed,
        t.conversations_created,
        t.tokens,
        t.credits_spent,
    )
}

async fn counters_are_exact_under_concurrent_activity(t: &TestDb) {
    const SESSIONS: usize = 20;
    const JOBS: usize = 30;
    const WORKERS: usize = 4;
    const CONVERSATIONS: usize = 10;
    const TURNS: usize = 3; // 10 tokens each (the fixture)
    const SPENDS: usize = 5;
    const SPEND: u64 = 7;

    // A database several connections use at once (on SQLite a file: an in-memory
    // database lives in one connection), and one pool that every task shares.
    let shared = SharedDb::for_test(t).await;
    let db = shared.pool().await;
    let since = today();
    let user = owner(&db, "busy@example.com", SESSIONS as i32).await;
    let other = owner(&db, "bystander@example.com", 5).await;
    let p = project(&db, user, ProjectStatus::Active).await;
    let q = project(&db, other, ProjectStatus::Active).await;

    // 20 sessions started at once by one user, and one by someone else.
    let mut tasks = Vec::new();
    for i in 0..SESSIONS {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            sessions::start(
                &db,
                Actor::User(user),
                NewSession::new(user, p, format!("start {i}")),
            )
            .await
        }));
    }
    let mut started = Vec::new();
    for task in tasks {
        started.push(task.await.unwrap().expect("a start within the limit"));
    }
    session_support::session(&db, other, q).await;

    // 30 jobs on one of them, completed by 4 racing workers.
    let s = sessions::transition(&db, Actor::User(user), started[0].id, SessionStatus::Active)
        .await
        .expect("activate");
    let new_jobs = (0..JOBS)
        .map(|n| NewJob::new(s.id, format!("job {n}")))
        .collect();
    jobs::enqueue_many(&db, Actor::Service, new_jobs)
        .await
        .expect("enqueue");
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let db = db.clone();
        workers.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut done = Vec::new();
            while let Some(job) = jobs::claim(&db, Actor::Service, &worker, Duration::from_secs(60))
                .await
                .expect("claim")
            {
                jobs::complete(&db, Actor::Service, job.id, &worker, json!({"ok": true}))
                    .await
                    .expect("complete");
                done.push(job.id);
            }
            done
        }));
    }
    let mut completed = Vec::new();
    for worker in workers {
        completed.extend(worker.await.unwrap());
    }
    assert_eq!(completed.len(), JOBS, "every job completed once");
    // Completing a finished job again is refused and counts nothing.
    let again = jobs::complete(&db, Actor::Service, completed[0], "worker-0", json!({})).await;
    assert!(
        matches!(again, Err(ForgeError::LeaseLost { .. })),
        "{again:?}"
    );

    // 10 conversations of 3 turns at once.
    let mut tasks = Vec::new();
    for _ in 0..CONVERSATIONS {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            fixtures::conversation_with_turns(&db, user, TURNS).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("conversation");
    }

    // 5 spends at once.
    let mut tasks = Vec::new();
    for _ in 0..SPENDS {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            credits::spend(&db, Actor::Service, CreditChange::new(user, SPEND)).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("spend");
    }

    let totals = counted(&db, user, since).await;
    assert_eq!(
        counts(&totals),
        (
            SESSIONS as i64,
            JOBS as i64,
            CONVERSATIONS as i64,
            (CONVERSATIONS * TURNS * 10) as i64,
            (SPENDS as u64 * SPEND) as i64,
        )
    );
    if since == today() {
        assert_eq!(totals.active_days, 1);
    }
    // The bystander's session is theirs alone.
    assert_eq!(counts(&counted(&db, other, since).await), (1, 0, 0, 0, 0));

    db.close().await.ok();
    shared.finish();
}

async fn refused_and_rolled_back_actions_count_nothing(t: &TestDb) {
    let db = &t.db;
    let since = today();
    let user = owner(db, "refused@example.com", 1).await;
    let me = Actor::User(user);
    let p = project(db, user, ProjectStatus::Active).await;
    let archived = project(db, user, ProjectStatus::Archived).await;

    session_support::session(db, user, p).await;
    let before = counts(&counted(db, user, since).await);
    assert_eq!(before, (1, 0, 0, 0, 0));

    // A start refused by the limit, one on an archived project, and one for someone
    // else: none counts.
    let refused = sessions::start(db, me, NewSession::new(user, p, "one too many")).await;
    assert!(
        matches!(refused, Err(ForgeError::LimitReached { .. })),
        "{refused:?}"
    );
    profiles_allow(db, user, 5).await;
    let refused = sessions::start(db, me, NewSession::new(user, archived, "archived")).await;
    assert!(
        matches!(refused, Err(ForgeError::InvalidTransition { .. })),
        "{refused:?}"
    );

    // A spend larger than the balance.
    let refused = credits::spend(db, Actor::Service, CreditChange::new(user, 1_000)).await;
    assert!(
        matches!(refused, Err(ForgeError::InsufficientCredits { .. })),
        "{refused:?}"
    );

    // Actions inside a caller's transaction that is rolled back: a session, a
    // conversation with turns, a spend.
    let txn = db.begin().await.unwrap();
    sessions::start(&txn, me, NewSession::new(user, p, "rolled back"))
        .await
        .expect("start inside the transaction");
    fixtures::conversation_with_turns(&txn, user, 4)
        .await
        .expect("conversation inside the transaction");
    credits::spend(&txn, Actor::Service, CreditChange::new(user, 5))
        .await
        .expect("spend inside the transaction");
    let inside = usage::totals(&txn, me, user, since, today()).await.unwrap();
    assert_eq!(
        counts(&inside),
        (2, 0, 1, 40, 5),
        "counted inside the transaction"
    );
    txn.rollback().await.unwrap();

    assert_eq!(counts(&counted(db, user, since).await), before);
}

/// Raises `user`'s session limit.
async fn profiles_allow(db: &DatabaseConnection, user: ProfileId, limit: i32) {
    use forge_db::entity::profiles::Tier;
    forge_db::service::profiles::set_plan(db, Actor::Service, user, Tier::Pro, limit)
        .await
        .expect("set plan");
}

/// A usage row of `user` for `day`, written as the database's owner (no end user or
/// repository writes one).
async fn stored(t: &TestDb, user: ProfileId, day: NaiveDate, n: i32) -> usage_metrics::Model {
    let now = Utc::now();
    usage_metrics::ActiveModel {
        id: Set(UsageMetricId::new()),
        user_id: Set(user),
        day: Set(day),
        sessions_started: Set(n),
        jobs_completed: Set(2 * n),
        conversations_created: Set(3 * n),
        tokens: Set(1_000 * i64::from(n)),
        credits_spent: Set(10 * i64::from(n)),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&t.owner)
    .await
    .expect("insert usage row")
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn ranges_leave_out_empty_days_and_totals_sum(t: &TestDb) {
    let db = &t.db;
    let user = common::signup(db, "history@example.com").await;
    let me = Actor::User(user);
    let (d1, d2, d3) = (day(2025, 2, 27), day(2025, 3, 1), day(2025, 3, 10));
    // Stored out of order: a range is ordered by day.
    let r3 = stored(t, user, d3, 3).await;
    let r1 = stored(t, user, d1, 1).await;
    let r2 = stored(t, user, d2, 2).await;

    let rows = usage::range(db, me, user, day(2025, 2, 1), day(2025, 3, 31))
        .await
        .unwrap();
    let days: Vec<NaiveDate> = rows.iter().map(|r| r.day).collect();
    assert_eq!(days, [d1, d2, d3], "only the days with a row, oldest first");
    assert_eq!(rows[0].id, r1.id);
    assert_eq!((rows[1].id, rows[2].id), (r2.id, r3.id));
    assert_eq!(rows[1].tokens, 2_000);

    // Both ends are included.
    let ends = usage::range(db, me, user, d1, d2).await.unwrap();
    assert_eq!(ends.iter().map(|r| r.day).collect::<Vec<_>>(), [d1, d2]);
    let one = usage::range(db, me, user, d3, d3).await.unwrap();
    assert_eq!(one.len(), 1);

    let totals = usage::totals(db, me, user, d1, d3).await.unwrap();
    assert_eq!(
        totals,
        UsageTotals {
            user_id: user,
            from: d1,
            to: d3,
            active_days: 3,
            sessions_started: 6,
            jobs_completed: 12,
            conversations_created: 18,
            tokens: 6_000,
            credits_spent: 60,
        }
    );
    let part = usage::totals(db, me, user, d2, d3 - Days::new(1))
        .await
        .unwrap();
    assert_eq!((part.active_days, part.sessions_started), (1, 2));

    // Nothing counted: no rows, zero totals.
    let empty = (day(2024, 1, 1), day(2024, 12, 31));
    assert!(
        usage::range(db, me, user, empty.0, empty.1)
            .await
            .unwrap()
            .is_empty()
    );
    let zero = usage::totals(db, me, user, empty.0, empty.1).await.unwrap();
    assert_eq!((zero.active_days, counts(&zero)), (0, (0, 0, 0, 0, 0)));
}

async fn a_user_reads_only_their_own_usage(t: &TestDb) {
    let db = &t.db;
    let ada = common::signup(db, "ada@example.com").await;
    let bob = common::signup(db, "bob@example.com").await;
    let d = day(2025, 6, 1);
    stored(t, ada, d, 4).await;
    stored(t, bob, d, 9).await;

    let mine = usage::range(db, Actor::User(ada), ada, d, d).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].user_id, ada);

    // Bob's usage, read by Ada, looks like no usage at all.
    assert!(
        usage::range(db, Actor::User(ada), bob, d, d)
            .await
            .unwrap()
            .is_empty()
    );
    let theirs = usage::totals(db, Actor::User(ada), bob, d, d)
        .await
        .unwrap();
    assert_eq!((theirs.active_days, theirs.sessions_started), (0, 0));

    // The service reads anyone's.
    let bobs = usage::range(db, Actor::Service, bob, d, d).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].sessions_started, 9);
    let totals = usage::totals(db, Actor::Service, bob, d, d).await.unwrap();
    assert_eq!(totals.sessions_started, 9);
}

async fn ranges_are_validated(t: &TestDb) {
    let db = &t.db;
    let user = common::signup(db, "ranges@example.com").await;
    let me = Actor::User(user);
    let from = day(2024, 1, 1);
    let longest = from + Days::new(MAX_RANGE_DAYS as u64 - 1); // 2024-12-31: a leap year
    assert!(usage::range(db, me, user, from, longest).await.is_ok());
    assert!(usage::totals(db, me, user, from, longest).await.is_ok());
    for (from, to) in [
        (from, longest + Days::new(1)),
        (day(2025, 3, 2), day(2025, 3, 1)),
        (day(0, 12, 31), day(1, 1, 1)),
        (day(9999, 12, 31), day(10000, 1, 1)),
    ] {
        for result in [
            usage::range(db, me, user, from, to).await.map(|_| ()),
            usage::totals(db, me, user, from, to).await.map(|_| ()),
        ] {
            assert!(
                matches!(result, Err(ForgeError::Validation { field: "range", .. })),
                "{from}..={to}: {result:?}"
            );
        }
    }
}

/// On PostgreSQL an end user (PostgREST, or SQL forgetting Forge) can read their own
/// counters but never write one, not even their own.
#[tokio::test]
async fn postgres_end_users_cannot_write_usage() {
    let t = TestDb::postgres().await;
    let db = &t.db;
    let ada = common::signup(db, "ada@example.com").await;
    let bob = common::signup(db, "bob@example.com").await;
    let d = day(2025, 6, 1);
    stored(&t, ada, d, 4).await;
    stored(&t, bob, d, 9).await;

    for sql in [
        format!(
            "INSERT INTO usage_metrics (user_id, day, sessions_started) \
             VALUES ('{ada}', '2025-06-02', 100)"
        ),
        format!("UPDATE usage_metrics SET tokens = tokens + 1 WHERE user_id = '{ada}'"),
        "UPDATE usage_metrics SET sessions_started = 0".to_owned(),
        format!("DELETE FROM usage_metrics WHERE user_id = '{ada}'"),
        "DELETE FROM usage_metrics".to_owned(),
        "TRUNCATE usage_metrics".to_owned(),
    ] {
        let out = common::as_user(&t.owner, ada, &sql).await;
        assert!(
            matches!(&out, Err(e) if e.contains("permission denied")),
            "{sql}: {out:?}"
        );
    }
    // Reading: her own row only.
    let seen = common::query_i64(
        &t.owner,
        &format!(
            "SELECT count(*) FROM usage_metrics WHERE user_id = '{ada}' AND sessions_started = 4"
        ),
    )
    .await;
    assert_eq!(seen, 1);
    let visible = run_as(db, Actor::User(ada), Access::Read, |txn| {
        Box::pin(async move { Ok(usage_metrics::Entity::find().all(txn).await?) })
    })
    .await
    .unwrap();
    assert_eq!(visible.len(), 1, "row-level security alone: her own row");
    assert_eq!(visible[0].user_id, ada);

    // Through Forge's own context too (a forgotten filter in `run_as`): refused.
    let written = run_as(db, Actor::User(ada), Access::Write, move |txn| {
        Box::pin(async move {
            txn.execute_unprepared("UPDATE usage_metrics SET tokens = 0")
                .await?;
            Ok(())
        })
    })
    .await;
    assert!(written.is_err(), "{written:?}");
    let tokens = common::query_i64(
        &t.owner,
        "SELECT CAST(sum(tokens) AS BIGINT) FROM usage_metrics",
    )
    .await;
    assert_eq!(tokens, 13_000);
    t.finish().await;
}
