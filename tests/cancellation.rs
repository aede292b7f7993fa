//! Cancelled calls lose nothing (PostgreSQL, through a real TCP path).
//!
//! A web handler whose client disconnects, or a `tokio::time::timeout`, drops a Forge
//! future at whatever `.await` it is in. These tests drop hundreds of calls at random
//! points while every byte to and from the server crosses a small latency proxy on
//! loopback (so `BEGIN`, `SAVEPOINT` and `COMMIT` are on the wire long enough to be cut),
//! then check that no pooled connection is ever used inside a transaction left open by a
//! dropped call, and that no caller's transaction is silently half-committed.

mod common;

use forge_db::entity::ids::{JobId, ProfileId, SessionId};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{TestDb, query_i64};
use forge_db::sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use forge_db::service::jobs::NewJob;
use forge_db::service::projects::{ListProjects, NewProject};
use forge_db::service::testing::fixtures;
use forge_db::service::{Actor, ForgeError, PageRequest, events, jobs, projects, sessions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One-way latency the proxy adds to every chunk.
const LATENCY: Duration = Duration::from_millis(3);

/// A TCP proxy on 127.0.0.1 that forwards to `target`, delaying every chunk by `LATENCY`
/// in each direction. It lives as long as the runtime.
async fn latency_proxy(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    pump(client_read, server_write),
                    pump(server_read, client_write)
                );
            });
        }
    });
    addr
}

async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tokio::time::sleep(LATENCY).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// `url` (postgres://user:pass@host:port/db?…) pointed at `proxy` instead.
fn through(url: &str, proxy: SocketAddr) -> String {
    let (head, rest) = url.split_once('@').expect("url with user");
    let path = &rest[rest.find('/').expect("url with database")..];
    format!("{head}@{proxy}{path}")
}

/// The server address of `url`.
fn server_of(url: &str) -> SocketAddr {
    let (_, rest) = url.split_once('@').expect("url with user");
    let authority = &rest[..rest.find('/').expect("url with database")];
    authority.parse().expect("host:port")
}

/// A small xorshift generator: random cut points without a dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Sessions opened on this test's database so far (every backend ever started).
async fn connections_opened(owner: &DatabaseConnection) -> i64 {
    query_i64(
        owner,
        "SELECT sessions FROM pg_stat_database WHERE datname = current_database()",
    )
    .await
}

/// Backends of the application role sitting idle inside a transaction.
async fn idle_in_transaction(owner: &DatabaseConnection) -> i64 {
    query_i64(
        owner,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND usename = 'forge_test_app'
           AND state LIKE 'idle in transaction%'",
    )
    .await
}

/// 300 calls of five kinds on `pool`, 8 at a time, each dropped at a random point: most
/// cuts fall 4–20 ms in (where the pool check and `BEGIN` are on the wire through the
/// proxy), the rest anywhere up to 120 ms. Returns (calls, dropped).
async fn storm(
    pool: &DatabaseConnection,
    me: Actor,
    user: ProfileId,
    session: SessionId,
    rng: &mut Rng,
) -> (u64, u64) {
    let calls = 300;
    let cancelled = Arc::new(AtomicU64::new(0));
    let mut running = Vec::new();
    for i in 0..calls {
        let (pool, cancelled) = (pool.clone(), cancelled.clone());
        let cut = Duration::from_micros(if rng.below(10) < 7 {
            4_000 + rng.below(16_000)
        } else {
            rng.below(120_000)
        });
        let kind = rng.below(5);
        running.push(tokio::spawn(async move {
            let call = async {
                match kind {
                    0 => projects::list(&pool, me, &ListProjects::default(), &PageRequest::first())
                        .await
                        .map(drop),
                    1 => projects::create(&pool, me, NewProject::new(user, format!("p{i}")))
                        .await
                        .map(drop),
                    2 => sessions::get(&pool, me, session).await.map(drop),
                    3 => jobs::claim(&pool, Actor::Service, "storm", Duration::from_secs(600))
                        .await
                        .map(drop),
                    _ => events::append(
                        &pool,
                        Actor::Service,
                        session,
                        forge_db::entity::session_events::EventType::Thinking,
                        serde_json::json!({ "i": i }),
                    )
                    .await
                    .map(drop),
                }
            };
            match tokio::time::timeout(cut, call).await {
                Err(_) => {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                }
                Ok(result) => result.expect("an uncancelled call succeeds"),
            }
        }));
        if running.len() == 8 {
            for call in running.drain(..) {
                call.await.expect("storm call");
            }
        }
    }
    for call in running {
        call.await.expect("storm call");
    }
    (calls, cancelled.load(Ordering::Relaxed))
}

/// Hundreds of calls dropped at random points on one pool: the pool never lends a
/// connection inside a transaction a dropped call left open, and afterwards 200 claims
/// and completions on the same pool are all visible from another connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_calls_never_lend_a_connection_inside_a_transaction() {
    let t = TestDb::postgres().await;
    let app_url = t.app_url().expect("postgres");
    let proxy = latency_proxy(server_of(&app_url)).await;
    let pool = forge_db::connect(&through(&app_url, proxy))
        .await
        .expect("pool through the proxy");
    let (user, _project, session) = fixtures::user_with_project_and_session(&t.db)
        .await
        .expect("fixtures");
    let me = Actor::User(user.id);
    jobs::enqueue_many(
        &t.db,
        Actor::Service,
        (0..100)
            .map(|i| NewJob::new(session.id, format!("storm {i}")))
            .collect(),
    )
    .await
    .expect("storm jobs");
    // Warm the pool: the storm cuts calls, not connection set-ups.
    let warm: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { sessions::get(&pool, me, session.id).await.map(drop) })
        })
        .collect();
    for call in warm {
        call.await.expect("warm-up").expect("warm-up call");
    }
    let sessions_before = connections_opened(&t.owner).await;

    // Storms until at least one dropped call left a connection inside a transaction (at
    // most three). The pool checks each connection as it comes back and discards one
    // found inside a transaction, so such a connection shows as a discard (or, if the
    // check has not run yet, as a backend idle in a transaction).
    let (mut calls, mut cancelled, mut parked) = (0, 0, 0);
    let discarded_before = forge_db::migration::connections_discarded();
    let mut rng = Rng::new();
    for _ in 0..3 {
        let (n, c) = storm(&pool, me, user.id, session.id, &mut rng).await;
        calls += n;
        cancelled += c;
        // Let dropped calls' connections finish going back to the pool.
        tokio::time::sleep(Duration::from_millis(300)).await;
        parked = idle_in_transaction(&t.owner).await
            + (forge_db::migration::connections_discarded() - discarded_before) as i64;
        if parked > 0 {
            break;
        }
    }

    // Every connection the pool lends from now on is outside any transaction (`SAVEPOINT`
    // succeeds only inside one).
    let mut lent_inside = 0;
    for _ in 0..60 {
        if pool
            .execute_unprepared("SAVEPOINT forge_probe")
            .await
            .is_ok()
        {
            lent_inside += 1;
        }
    }

    // The same pool claims and completes 200 jobs; each is committed, i.e. visible as
    // completed from another connection at once.
    let ids: Vec<JobId> = jobs::enqueue_many(
        &t.db,
        Actor::Service,
        (0..200)
            .map(|i| NewJob {
                priority: 100,
                ..NewJob::new(session.id, format!("after {i}"))
            })
            .collect(),
    )
    .await
    .expect("jobs")
    .into_iter()
    .map(|j| j.id)
    .collect();
    let before_claims = connections_opened(&t.owner).await;
    let mut invisible = 0;
    for _ in 0..200 {
        let job = jobs::claim(&pool, Actor::Service, "after", Duration::from_secs(60))
            .await
            .expect("claim")
            .expect("a job to claim");
        assert!(ids.contains(&job.id), "claims the high-priority jobs first");
        jobs::complete(
            &pool,
            Actor::Service,
            job.id,
            "after",
            serde_json::json!({}),
        )
        .await
        .expect("complete");
        let seen = query_i64(
            &t.owner,
            &format!(
                "SELECT count(*) FROM coding_jobs WHERE id = '{}' AND status = 'completed'",
                job.id
            ),
        )
        .await;
        invisible += 1 - seen;
    }
    let left_open = idle_in_transaction(&t.owner).await;
    let reopened = connections_opened(&t.owner).await - before_claims;
    let opened = before_claims - sessions_before;
    println!(
        "cancellation: {calls} calls, {cancelled} dropped at random points; {parked} \
         connections left inside a transaction by dropped calls; lent inside a transaction \
         afterwards: {lent_inside} of 60; 200 claims + completions after: {invisible} \
         invisible (the pool opened {reopened} connections meanwhile); {left_open} left idle \
         in a transaction; {opened} connections opened during the storms"
    );
    assert!(
        parked > 0,
        "no storm left a connection inside a transaction: nothing was tested"
    );
    assert_eq!(
        lent_inside, 0,
        "the pool lent a connection inside a transaction"
    );
    assert_eq!(
        invisible, 0,
        "a claim or completion ran inside a leaked transaction"
    );
    assert_eq!(
        left_open, 0,
        "a connection is still idle inside a transaction"
    );
    assert!(
        cancelled > calls / 4,
        "the storms cut enough calls ({cancelled})"
    );
    assert!(
        cancelled < calls,
        "the storms let calls finish too ({cancelled})"
    );
    // The check discards only what it must: calls that nobody drops reuse the pool.
    assert!(
        reopened <= 10,
        "the pool kept its healthy connections ({reopened} opened for 400 calls)"
    );
    pool.close().await.ok();
    t.finish().await;
}

/// One round in a caller's transaction: a Forge write, a Forge call dropped at `cut`, a
/// second Forge write, commit. Returns whether the caller's transaction was half-committed
/// (commit succeeded but one of the two writes is missing).
async fn caller_round(
    pool: &DatabaseConnection,
    owner: &DatabaseConnection,
    user: ProfileId,
    round: u64,
    cut: Duration,
) -> bool {
    let me = Actor::User(user);
    let txn = pool.begin().await.expect("caller's transaction");
    let first = format!("first {round}");
    let second = format!("second {round}");
    projects::create(&txn, me, NewProject::new(user, &first))
        .await
        .expect("first write");
    let _ = tokio::time::timeout(
        cut,
        projects::create(&txn, me, NewProject::new(user, format!("dropped {round}"))),
    )
    .await;
    let committed = match projects::create(&txn, me, NewProject::new(user, &second)).await {
        Ok(_) => txn.commit().await.is_ok(),
        // The next call tells the caller; they roll back.
        Err(ForgeError::TransactionLost) => {
            txn.rollback().await.ok();
            false
        }
        Err(err) => {
            // A dropped call may leave the transaction unusable; the caller is told.
            println!("round {round}: next call refused: {err}");
            txn.rollback().await.ok();
            false
        }
    };
    let count = |name: String| async move {
        query_i64(
            owner,
            &format!("SELECT count(*) FROM projects WHERE name = '{name}'"),
        )
        .await
    };
    let (a, b) = (count(first).await, count(second).await);
    if std::env::var("FORGE_DEBUG_ROUNDS").is_ok() {
        println!("round {round} cut {cut:?}: committed {committed}, first {a}, second {b}");
    }
    if committed {
        a != 1 || b != 1
    } else {
        a != 0 || b != 0
    }
}

async fn callers_transactions_are_never_half_committed(rounds: u64) {
    let t = TestDb::postgres().await;
    let app_url = t.app_url().expect("postgres");
    let proxy = latency_proxy(server_of(&app_url)).await;
    let pool = forge_db::connect(&through(&app_url, proxy))
        .await
        .expect("pool through the proxy");
    let user = fixtures::user(&t.db, &fixtures::unique_email())
        .await
        .expect("user");
    let mut rng = Rng::new();
    let mut half = 0;
    for round in 0..rounds {
        let cut = Duration::from_micros(rng.below(30_000));
        if caller_round(&pool, &t.owner, user.id, round, cut).await {
            half += 1;
        }
    }
    println!(
        "caller transactions: {rounds} rounds with a dropped call inside; {half} half-committed"
    );
    assert_eq!(half, 0);
    pool.close().await.ok();
    t.finish().await;
}

/// On a multi-threaded runtime Forge opens its savepoint where it cannot be dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_calls_inside_a_callers_transaction_multi_thread() {
    callers_transactions_are_never_half_committed(80).await;
}

/// On a current-thread runtime a drop during `SAVEPOINT` can cost the caller their
/// transaction (a driver limitation); the next Forge call on it then says so.
#[tokio::test]
async fn dropped_calls_inside_a_callers_transaction_current_thread() {
    callers_transactions_are_never_half_committed(80).await;
}

/// A transaction someone leaves open on a Forge connection is ended by the server after
/// `IDLE_IN_TRANSACTION_TIMEOUT`, so it cannot hold its locks forever.
#[tokio::test]
async fn forge_connections_end_transactions_left_idle() {
    let t = TestDb::postgres().await;
    let pool = forge_db::connect(&t.app_url().expect("postgres"))
        .await
        .expect("pool");
    let timeout = common::query_string(&pool, "SHOW idle_in_transaction_session_timeout").await;
    assert_eq!(
        forge_db::migration::IDLE_IN_TRANSACTION_TIMEOUT,
        Duration::from_secs(60)
    );
    assert_eq!(
        timeout.as_deref(),
        Some("1min"),
        "PostgreSQL shows 60 s as 1min"
    );
    pool.close().await.ok();
    t.finish().await;
}
