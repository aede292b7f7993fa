//! forge_service::events on both backends: appending with gap-free `seq`s, reading
//! "events after seq N", closed logs of ended sessions, isolation, and a tail reader that
//! never misses an event while several writers append at once.

mod common;
mod session_support;

use forge_db::entity::ids::{ProfileId, SessionId};
use std::time::{Duration, Instant};

use common::TestDb;
use forge_db::entity::coding_sessions::SessionStatus;
use forge_db::entity::projects::ProjectStatus;
use forge_db::entity::session_events::{self, EventType};
use forge_db::sea_orm::{DatabaseConnection, DbBackend, EntityTrait, QueryOrder};
use forge_db::service::events::{MAX_EVENTS_PER_APPEND, NewEvent};
use forge_db::service::{Actor, ForgeError, MAX_PAGE_SIZE, events as repo, sessions};
use futures_util::StreamExt;
use serde_json::json;
use session_support::{SharedDb, owner, project, session, unfiltered_as};

on_both_backends! {
    appended_events_are_read_back_in_seq_order => appended_events_are_read_back_in_seq_order;
    append_many_is_atomic_and_consecutive => append_many_is_atomic_and_consecutive;
    ended_sessions_take_no_events => ended_sessions_take_no_events;
    bad_reads_are_refused => bad_reads_are_refused;
    user_b_cannot_see_or_touch_a_events => user_b_cannot_see_or_touch_a_events;
    tail_reader_sees_every_event_once_in_order => tail_reader_sees_every_event_once_in_order;
    a_stream_delivers_every_event_once_and_ends_with_the_session => a_stream_delivers_every_event_once_and_ends_with_the_session;
    streams_of_other_users_sessions_are_refused => streams_of_other_users_sessions_are_refused;
}

/// Every event in the database, as the service sees it (read in the service's context),
/// in (session, seq) order.
async fn all_events(db: &DatabaseConnection) -> Vec<session_events::Model> {
    common::as_service(db, |txn| {
        Box::pin(async move {
            Ok(session_events::Entity::find()
                .order_by_asc(session_events::Column::SessionId)
                .order_by_asc(session_events::Column::Seq)
                .all(txn)
                .await?)
        })
    })
    .await
}

/// A user with one live session; returns (owner, session id).
async fn owner_with_session(db: &DatabaseConnection, email: &str) -> (ProfileId, SessionId) {
    let a = owner(db, email, 5).await;
    let s = session(db, a, project(db, a, ProjectStatus::Active).await).await;
    (a, s.id)
}

/// `writers` tasks, each on its own pool, each appending `each` events `{"writer", "i"}`
/// to session `s` (pausing a little every 10 when `pace`).
async fn spawn_writers(
    shared: &SharedDb,
    s: SessionId,
    writers: usize,
    each: usize,
    pace: bool,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (w, db) in shared.pools(writers).await.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                let data = json!({"writer": w, "i": i});
                repo::append(&db, Actor::Service, s, EventType::Terminal, data)
                    .await
                    .expect("append");
                if pace && i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }
            db.close().await.ok();
        }));
    }
    tasks
}

/// Each writer's events appear once each, in the order it appended them.
fn each_writer_once_in_order(seen: &[session_events::Model], writers: usize, each: usize) {
    for w in 0..writers {
        let mine: Vec<i64> = seen
            .iter()
            .filter(|e| e.data["writer"] == json!(w))
            .map(|e| e.data["i"].as_i64().unwrap())
            .collect();
        assert_eq!(
            mine,
            (0..each as i64).collect::<Vec<_>>(),
            "writer {w}: each event once, in its order"
        );
    }
}

fn seqs(events: &[session_events::Model]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

async fn appended_events_are_read_back_in_seq_order(t: &TestDb) {
    let db = &t.db;
    let (a, s) = owner_with_session(db, "a@example.com").await;
    let (_, other) = owner_with_session(db, "b@example.com").await;
    let kinds = [
        EventType::Thinking,
        EventType::Terminal,
        EventType::FileChange,
        EventType::PreviewReady,
        EventType::Completion,
        EventType::Error,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let e = repo::append(db, Actor::Service, s, kind, json!({"step": i}))
            .await
            .unwrap();
        assert_eq!((e.session_id, e.seq, e.event_type), (s, i as i64 + 1, kind));
        assert_eq!(e.data, json!({"step": i}));
    }
    // Each session counts from 1 on its own.
    let first_of_other = repo::append(db, Actor::Service, other, EventType::Thinking, json!({}))
        .await
        .unwrap();
    assert_eq!(first_of_other.seq, 1);

    let ua = Actor::User(a);
    let head = repo::after(db, ua, s, 0, 2).await.unwrap();
    assert_eq!(seqs(&head), [1, 2]);
    assert_eq!(head[0].data, json!({"step": 0}));
    let rest = repo::after(db, ua, s, 2, 100).await.unwrap();
    assert_eq!(seqs(&rest), [3, 4, 5, 6]);
    assert_eq!(
        rest.iter().map(|e| e.event_type).collect::<Vec<_>>(),
        kinds[2..]
    );
    assert!(repo::after(db, ua, s, 6, 10).await.unwrap().is_empty());
    // The service reads any session's log.
    assert_eq!(
        seqs(&repo::after(db, Actor::Service, s, 5, 10).await.unwrap()),
        [6]
    );

    let err = repo::append(
        db,
        Actor::Service,
        SessionId::new(),
        EventType::Thinking,
        json!({}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "session",
                ..
            }
        ),
        "{err:?}"
    );
    let err = repo::after(db, Actor::Service, SessionId::new(), 0, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "session",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn append_many_is_atomic_and_consecutive(t: &TestDb) {
    let db = &t.db;
    let (a, s) = owner_with_session(db, "a@example.com").await;
    repo::append(db, Actor::Service, s, EventType::Thinking, json!({"n": 0}))
        .await
        .unwrap();
    let batch: Vec<NewEvent> = (1..=5)
        .map(|n| NewEvent::new(EventType::Terminal, json!({"n": n})))
        .collect();
    let stored = repo::append_many(db, Actor::Service, s, batch)
        .await
        .unwrap();
    assert_eq!(seqs(&stored), [2, 3, 4, 5, 6]);
    assert_eq!(
        stored
            .iter()
            .map(|e| e.data["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let read = repo::after(db, Actor::User(a), s, 1, 10).await.unwrap();
    assert_eq!(read, stored);

    let before = all_events(db).await;
    let err = repo::append_many(db, Actor::Service, s, Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::Validation {
                field: "events",
                ..
            }
        ),
        "{err:?}"
    );
    let too_many = vec![NewEvent::new(EventType::Terminal, json!({})); MAX_EVENTS_PER_APPEND + 1];
    let err = repo::append_many(db, Actor::Service, s, too_many)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::Validation {
                field: "events",
                ..
            }
        ),
        "{err:?}"
    );
    // A document over 64 KiB is refused, and the whole append with it.
    let oversized = vec![
        NewEvent::new(EventType::Terminal, json!({"n": 7})),
        NewEvent::new(EventType::Terminal, json!({"blob": "x".repeat(70_000)})),
    ];
    let err = repo::append_many(db, Actor::Service, s, oversized)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForgeError::Validation { field: "data", .. }),
        "{err:?}"
    );
    let err = repo::append_many(
        db,
        Actor::User(a),
        s,
        vec![NewEvent::new(EventType::Terminal, json!({}))],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    assert_eq!(
        all_events(db).await,
        before,
        "refused appends change nothing"
    );
}

async fn ended_sessions_take_no_events(t: &TestDb) {
    let db = &t.db;
    let a = owner(db, "a@example.com", 10).await;
    let p = project(db, a, ProjectStatus::Active).await;
    for end in [
        SessionStatus::Completed,
        SessionStatus::Failed,
        SessionStatus::Expired,
    ] {
        let s = session(db, a, p).await.id;
        repo::append(db, Actor::Service, s, EventType::Thinking, json!({}))
            .await
            .unwrap();
        sessions::transition(db, Actor::Service, s, end)
            .await
            .unwrap();
        let err = repo::append(db, Actor::Service, s, EventType::Completion, json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ForgeError::InvalidTransition { entity: "session", from, .. } if from == end.as_str()),
            "{err:?}"
        );
        let err = repo::append_many(
            db,
            Actor::Service,
            s,
            vec![NewEvent::new(EventType::Error, json!({}))],
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, ForgeError::InvalidTransition { .. }),
            "{err:?}"
        );
        // The closed log is still readable, and final.
        assert_eq!(
            seqs(&repo::after(db, Actor::User(a), s, 0, 10).await.unwrap()),
            [1]
        );
    }
    // Paused sessions are live: they still take events.
    let s = session(db, a, p).await.id;
    sessions::transition(db, Actor::Service, s, SessionStatus::Active)
        .await
        .unwrap();
    sessions::transition(db, Actor::Service, s, SessionStatus::Paused)
        .await
        .unwrap();
    repo::append(db, Actor::Service, s, EventType::Thinking, json!({}))
        .await
        .unwrap();
}

async fn bad_reads_are_refused(t: &TestDb) {
    let db = &t.db;
    let (a, s) = owner_with_session(db, "a@example.com").await;
    let ua = Actor::User(a);
    for (after_seq, limit, field) in [
        (-1, 10, "after_seq"),
        (0, 0, "limit"),
        (0, MAX_PAGE_SIZE + 1, "limit"),
        (0, u64::MAX, "limit"),
    ] {
        let err = repo::after(db, ua, s, after_seq, limit).await.unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { field: f, .. } if f == field),
            "{after_seq}/{limit}: {err:?}"
        );
    }
    assert!(
        repo::after(db, ua, s, 0, MAX_PAGE_SIZE)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn user_b_cannot_see_or_touch_a_events(t: &TestDb) {
    let db = &t.db;
    let (a, s) = owner_with_session(db, "a@example.com").await;
    let (b, own_b) = owner_with_session(db, "b@example.com").await;
    for n in 0..3 {
        repo::append(db, Actor::Service, s, EventType::Terminal, json!({"n": n}))
            .await
            .unwrap();
    }
    let before = all_events(db).await;
    let ub = Actor::User(b);

    for after_seq in [0, 1] {
        let err = repo::after(db, ub, s, after_seq, 10).await.unwrap_err();
        assert!(
            matches!(
                err,
                ForgeError::NotFound {
                    entity: "session",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // B's own session shows none of A's events.
    assert!(repo::after(db, ub, own_b, 0, 10).await.unwrap().is_empty());
    let err = repo::append(db, ub, s, EventType::Error, json!({"spoof": true}))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    let err = repo::append_many(db, ub, s, vec![NewEvent::new(EventType::Error, json!({}))])
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");

    assert_eq!(all_events(db).await, before, "A's events are unchanged");
    assert_eq!(
        seqs(&repo::after(db, Actor::User(a), s, 0, 10).await.unwrap()),
        [1, 2, 3]
    );
}

async fn tail_reader_sees_every_event_once_in_order(t: &TestDb) {
    const WRITERS: usize = 4;
    const EACH: usize = 50;
    const TOTAL: usize = WRITERS * EACH;
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    let (a, s) = owner_with_session(&setup, "tail@example.com").await;

    let writers = spawn_writers(&shared, s, WRITERS, EACH, false).await;

    let reader = shared.pool().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut seen, mut last, mut polls) = (Vec::new(), 0, 0);
    while seen.len() < TOTAL {
        assert!(
            Instant::now() < deadline,
            "reader saw only {} events",
            seen.len()
        );
        let batch = repo::after(&reader, Actor::User(a), s, last, 20)
            .await
            .unwrap();
        assert!(batch.len() <= 20);
        for e in batch {
            assert_eq!(e.seq, last + 1, "no gap, no repeat");
            last = e.seq;
            seen.push(e);
        }
        polls += 1;
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        repo::after(&reader, Actor::User(a), s, last, 20)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(polls >= TOTAL / 20);

    assert_eq!(seqs(&seen), (1..=TOTAL as i64).collect::<Vec<_>>());
    each_writer_once_in_order(&seen, WRITERS, EACH);
    reader.close().await.ok();
    setup.close().await.ok();
    shared.finish();
}

/// PostgreSQL: an unfiltered query in B's context sees none of A's events (the RLS wall
/// on its own), while A sees theirs.
#[tokio::test]
async fn postgres_rls_alone_hides_other_users_events() {
    let t = TestDb::postgres().await;
    let db = &t.db;
    assert_eq!(t.backend(), DbBackend::Postgres);
    let (a, s) = owner_with_session(db, "a@example.com").await;
    let (b, _) = owner_with_session(db, "b@example.com").await;
    let e = repo::append(db, Actor::Service, s, EventType::Thinking, json!({}))
        .await
        .unwrap();
    let seen_by_b = unfiltered_as::<session_events::Entity>(db, Actor::User(b)).await;
    assert!(seen_by_b.is_empty(), "{seen_by_b:?}");
    let seen_by_a = unfiltered_as::<session_events::Entity>(db, Actor::User(a)).await;
    assert_eq!(seen_by_a, [e]);
    t.finish().await;
}

/// `subscribe` while several writers append: the stream delivers each event once, in
/// `seq` order, from the resume point on, and ends once the session has ended.
async fn a_stream_delivers_every_event_once_and_ends_with_the_session(t: &TestDb) {
    const WRITERS: usize = 3;
    const EACH: usize = 40;
    const TOTAL: i64 = (WRITERS * EACH) as i64;
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    let (a, s) = owner_with_session(&setup, "live@example.com").await;
    // Two events before subscribing; the client resumes after the first.
    for i in 0..2 {
        repo::append(
            &setup,
            Actor::Service,
            s,
            EventType::Thinking,
            json!({"before": i}),
        )
        .await
        .unwrap();
    }
    let reader = shared.pool().await;
    let mut stream = repo::subscribe(&reader, Actor::User(a), s, 1)
        .await
        .unwrap();
    let collector = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = stream.next().await {
            seen.push(event.expect("no error item"));
        }
        seen
    });

    let writers = spawn_writers(&shared, s, WRITERS, EACH, true).await;
    for w in writers {
        w.await.unwrap();
    }
    sessions::transition(&setup, Actor::Service, s, SessionStatus::Completed)
        .await
        .unwrap();
    // It ends by itself: on PostgreSQL at the latest after one safety poll.
    let seen = tokio::time::timeout(Duration::from_secs(60), collector)
        .await
        .expect("the stream ends after the session has ended")
        .unwrap();
    assert_eq!(seqs(&seen), (2..=TOTAL + 2).collect::<Vec<_>>());
    assert_eq!(seen[0].data, json!({"before": 1}));
    each_writer_once_in_order(&seen, WRITERS, EACH);
    reader.close().await.ok();
    setup.close().await.ok();
    shared.finish();
}

async fn streams_of_other_users_sessions_are_refused(t: &TestDb) {
    let db = &t.db;
    let (_, s) = owner_with_session(db, "a@example.com").await;
    let (b, _) = owner_with_session(db, "b@example.com").await;
    let err = repo::subscribe(db, Actor::User(b), s, 0).await.unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }), "{err:?}");
    let err = repo::subscribe(db, Actor::User(b), SessionId::new(), 0)
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }), "{err:?}");
    let a_err = repo::subscribe(db, Actor::Service, s, -1)
        .await
        .unwrap_err();
    assert!(matches!(a_err, ForgeError::Validation { .. }), "{a_err:?}");
}

/// PostgreSQL: the stream is woken by NOTIFY (one listening connection per pool), and
/// when that connection is killed mid-stream the listener comes back (a new backend) and
/// the stream still delivers every event once.
#[tokio::test]
async fn postgres_stream_survives_its_listener_being_killed() {
    let t = TestDb::postgres().await;
    let db = &t.db;
    let (a, s) = owner_with_session(db, "kill@example.com").await;
    // LISTEN needs a direct pool (the owner's is one also when the suite runs through the
    // pooler); Forge's calls on it still run in the user's context.
    let mut stream = repo::subscribe(&t.owner, Actor::User(a), s, 0)
        .await
        .unwrap();
    let listener_pid = || async {
        common::query_i64(
            &t.owner,
            &format!(
                "SELECT coalesce(max(pid), 0)::bigint FROM pg_stat_activity \
                 WHERE application_name = '{}' AND datname = current_database()",
                repo::LISTENER_APPLICATION_NAME
            ),
        )
        .await
    };
    let mut current = listener_pid().await;
    assert!(current > 0, "a listening backend");
    let (mut seen, mut expected) = (Vec::new(), 0);
    for round in 0..3 {
        for i in 0..5 {
            let data = json!({"round": round, "i": i});
            repo::append(db, Actor::Service, s, EventType::Thinking, data)
                .await
                .unwrap();
        }
        expected += 5;
        // Woken by the notification: well before the safety poll.
        let started = Instant::now();
        while seen.len() < expected {
            let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .expect("an event")
                .expect("the stream goes on")
                .unwrap();
            seen.push(event);
        }
        assert!(started.elapsed() < repo::SAFETY_POLL, "woken by NOTIFY");
        if round == 2 {
            break;
        }
        let killed = current;
        common::query_i64(
            &t.owner,
            &format!("SELECT count(*) FROM (SELECT pg_terminate_backend({killed})) k"),
        )
        .await;
        // Appended while nobody may be listening: found after the reconnect.
        repo::append(
            db,
            Actor::Service,
            s,
            EventType::Thinking,
            json!({"gap": round}),
        )
        .await
        .unwrap();
        expected += 1;
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the event appended while the listener was down")
            .expect("the stream goes on")
            .unwrap();
        seen.push(next);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            current = listener_pid().await;
            if current > 0 && current != killed {
                break;
            }
            assert!(Instant::now() < deadline, "the listener reconnects");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let expected: Vec<i64> = (1..=seen.len() as i64).collect();
    assert_eq!(seqs(&seen), expected, "no gap, no repeat across reconnects");
    assert_eq!(seen.len(), 17);
    drop(stream);
    t.finish().await;
}

/// PostgreSQL: one notification per transaction and session, whatever the number of
/// statements and rows, carrying only the session's id.
#[tokio::test]
async fn postgres_notifies_once_per_transaction_and_session() {
    use forge_db::sea_orm::sqlx::postgres::PgListener;
    use forge_db::service::{Access, run_as};
    let t = TestDb::postgres().await;
    let db = &t.db;
    let (_, s1) = owner_with_session(db, "n1@example.com").await;
    let (_, s2) = owner_with_session(db, "n2@example.com").await;
    let mut listener = PgListener::connect(&t.pg_url().unwrap()).await.unwrap();
    listener
        .listen(forge_db::migration::EVENTS_CHANNEL)
        .await
        .unwrap();
    run_as(db, Actor::Service, Access::Write, move |txn| {
        Box::pin(async move {
            for i in 0..3 {
                repo::append(
                    txn,
                    Actor::Service,
                    s1,
                    EventType::Thinking,
                    json!({"i": i}),
                )
                .await?;
            }
            let many = (0..4)
                .map(|i| NewEvent::new(EventType::Terminal, json!({"j": i})))
                .collect();
            repo::append_many(txn, Actor::Service, s2, many).await?;
            repo::append(txn, Actor::Service, s2, EventType::Thinking, json!({})).await?;
            Ok(())
        })
    })
    .await
    .unwrap();
    repo::append(
        db,
        Actor::Service,
        s1,
        EventType::Thinking,
        json!({"later": true}),
    )
    .await
    .unwrap();
    let mut heard = Vec::new();
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
        heard.push(n.payload().to_owned());
    }
    assert_eq!(
        heard,
        [s1.to_string(), s2.to_string(), s1.to_string()],
        "one wake-up per transaction and session, in commit order, naming only the session"
    );
    t.finish().await;
}
