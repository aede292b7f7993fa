//! What the live event stream costs and delivers on PostgreSQL, and how far a replica lags:
//!
//! 1. **Notification cost.** `events::append` throughput with 1 and 8 writers (each on its
//!    own session) in three set-ups, taking turns within each round: no notification
//!    (the trigger disabled), Forge's (`session_events_notify`: one `NOTIFY` per
//!    transaction and session), and a per-row `NOTIFY` trigger for comparison. A `LISTEN`
//!    connection drains the channel throughout, so notifications are delivered, not only
//!    queued.
//! 2. **Stream throughput and latency.** One writer appends as fast as it can while one
//!    `events::subscribe` stream per session reads; events/s delivered and the delay from
//!    an append's return to the stream handing the event out (p50, p99).
//! 3. **Replica lag** (when `FORGE_TEST_REPLICA_URL` names a streaming replica of the
//!    same cluster): write, take a `WalToken`, route a read with it; how long the routing
//!    waited for replay and how often the replica served.
//! 4. **Pooler mode** (when `FORGE_TEST_POOLER_URL` names a transaction-mode PgBouncer in
//!    front of the same cluster): a get by id and a project creation (a multi-statement
//!    transaction) on the direct pool and through the pooler in pooler mode.
//!
//! ```sh
//! FORGE_TEST_REPLICA=1 FORGE_TEST_POOLER=1 scripts/with-postgres.sh cargo run --release --example stream_bench
//! STREAM_BENCH_SECONDS=3 STREAM_BENCH_ROUNDS=5 scripts/with-postgres.sh cargo run --release --example stream_bench
//! ```
//!
//! It creates a scratch database `forge_stream_bench_<random>` next to the one in
//! `DATABASE_URL` (so the role needs `CREATEDB`), migrates it, and drops it at the end.

use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use forge_db::entity::ids::{ProfileId, SessionId};
use forge_db::entity::prelude::EventType;
use forge_db::entity::projects::ProjectStatus;
use forge_db::migration::{Backend, redact_url};
use forge_db::sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, Set, sqlx};
use forge_db::service::replicas::{Replicated, ServedBy};
use forge_db::service::sessions::NewSession;
use forge_db::service::{Access, Actor, events, profiles, run_as, sessions};
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

type BoxError = Box<dyn Error + Send + Sync>;

#[path = "support/scratch.rs"]
mod scratch;

#[tokio::main]
async fn main() -> ExitCode {
    let url = forge_db::migration::url_from_env();
    if Backend::from_url(&url) != Some(Backend::Postgres) {
        eprintln!(
            "stream_bench: needs PostgreSQL (DATABASE_URL=postgres://…, or scripts/with-postgres.sh)"
        );
        return ExitCode::FAILURE;
    }
    println!("stream_bench: {}", redact_url(&url));
    let (admin, name, bench_url) = match scratch::database(&url, "forge_stream_bench").await {
        Ok(made) => made,
        Err(err) => {
            eprintln!("stream_bench: cannot create a scratch database: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(&bench_url, &name).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .ok();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stream_bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(url: &str, name: &str) -> Result<(), BoxError> {
    let db = forge_db::connect(url).await?;
    forge_db::migrate(&db).await?;
    let seconds = env_number("STREAM_BENCH_SECONDS", 2);
    let rounds = env_number("STREAM_BENCH_ROUNDS", 3);
    let user = user_with_project_and_sessions(&db, 9).await?;

    // 1. What notifying costs appends.
    println!("\n1. append throughput (events/s), median of {rounds} rounds of {seconds} s");
    println!(
        "   {:<8} {:>10} {:>10} {:>10}   {:>14} {:>14}",
        "writers", "none", "forge", "per-row", "forge cost", "per-row cost"
    );
    for writers in [1usize, 8] {
        let mut results: [Vec<f64>; 3] = Default::default();
        for _ in 0..rounds {
            for (i, setup) in ["none", "forge", "per-row"].into_iter().enumerate() {
                notification(&db, setup).await?;
                let listening = listener(url).await?;
                results[i].push(append_rate(&db, &user.1[..writers], seconds).await?);
                listening.abort();
            }
        }
        let [none, forge, per_row] = results.map(median);
        println!(
            "   {writers:<8} {none:>10.0} {forge:>10.0} {per_row:>10.0}   {:>13.1}% {:>13.1}%",
            100.0 * (1.0 - forge / none),
            100.0 * (1.0 - per_row / none)
        );
    }
    notification(&db, "forge").await?;

    // 2. A stream's throughput and delivery delay.
    let session = user.1[8];
    let mut stream = events::subscribe(&db, Actor::User(user.0), session, 0).await?;
    let total = 2_000u32;
    let writer_db = db.clone();
    let writer = tokio::spawn(async move {
        let started = Instant::now();
        let mut sent = Vec::with_capacity(total as usize);
        for i in 0..total {
            events::append(
                &writer_db,
                Actor::Service,
                session,
                EventType::Terminal,
                json!({"i": i}),
            )
            .await?;
            sent.push(started.elapsed());
        }
        Ok::<_, BoxError>((started, sent))
    });
    let mut received = Vec::with_capacity(total as usize);
    while received.len() < total as usize {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .map_err(|_| "the stream stalled")?
            .ok_or("the stream ended")??;
        received.push((
            event.data["i"].as_u64().unwrap_or(0) as usize,
            Instant::now(),
        ));
    }
    let (started, sent) = writer.await??;
    let elapsed = received
        .last()
        .map(|(_, at)| *at - started)
        .unwrap_or_default();
    let mut delays: Vec<Duration> = received
        .iter()
        .map(|(i, at)| (*at - started).saturating_sub(sent[*i]))
        .collect();
    delays.sort();
    println!("\n2. one stream, one writer: {total} events in {elapsed:.2?}");
    println!(
        "   {:.0} events/s delivered; delay after append p50 {:?}, p99 {:?}, max {:?}",
        f64::from(total) / elapsed.as_secs_f64(),
        delays[delays.len() / 2],
        delays[delays.len() * 99 / 100],
        delays[delays.len() - 1]
    );
    drop(stream);

    // 3. Replica lag.
    match std::env::var("FORGE_TEST_REPLICA_URL") {
        Ok(replica) if !replica.is_empty() => replica_lag(&db, &replica, name, user.0).await?,
        _ => println!("\n3. replica lag: skipped (no FORGE_TEST_REPLICA_URL)"),
    }

    // 4. What pooler mode costs.
    match std::env::var("FORGE_TEST_POOLER_URL") {
        Ok(pooler) if !pooler.is_empty() => {
            pooler_cost(&db, &pooler, name, user.0, rounds).await?;
        }
        _ => println!("\n4. pooler mode: skipped (no FORGE_TEST_POOLER_URL)"),
    }
    db.close().await?;
    Ok(())
}

/// Turns the notification on `session_events` to `setup`: `none`, `forge` or `per-row`.
async fn notification(db: &DatabaseConnection, setup: &str) -> Result<(), BoxError> {
    db.execute_unprepared(
        "DROP TRIGGER IF EXISTS bench_per_row_notify ON session_events; \
         DROP FUNCTION IF EXISTS bench_per_row_notify(); \
         ALTER TABLE session_events ENABLE TRIGGER session_events_notify",
    )
    .await?;
    match setup {
        "none" => {
            db.execute_unprepared(
                "ALTER TABLE session_events DISABLE TRIGGER session_events_notify",
            )
            .await?;
        }
        "per-row" => {
            db.execute_unprepared(
                "ALTER TABLE session_events DISABLE TRIGGER session_events_notify; \
                 CREATE FUNCTION bench_per_row_notify() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN PERFORM pg_notify('forge_session_events', NEW.session_id::text || ':' || NEW.seq); \
                 RETURN NULL; END $$; \
                 CREATE TRIGGER bench_per_row_notify AFTER INSERT ON session_events \
                 FOR EACH ROW EXECUTE FUNCTION bench_per_row_notify()",
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// A `LISTEN` connection draining the channel in the background, so notifications are
/// delivered, not only queued (without the streams' reads, which would measure the readers
/// on these shared cores rather than the notification).
async fn listener(url: &str) -> Result<tokio::task::JoinHandle<()>, BoxError> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(forge_db::migration::EVENTS_CHANNEL).await?;
    Ok(tokio::spawn(async move {
        while listener.recv().await.is_ok() {}
    }))
}

/// Appends/s of `sessions.len()` writers, one per session, for `seconds`.
async fn append_rate(
    db: &DatabaseConnection,
    sessions: &[SessionId],
    seconds: u64,
) -> Result<f64, BoxError> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut writers = Vec::new();
    for &session in sessions {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                events::append(
                    &db,
                    Actor::Service,
                    session,
                    EventType::Thinking,
                    json!({"n": n}),
                )
                .await?;
                n += 1;
            }
            Ok::<_, BoxError>(n)
        }));
    }
    let mut total = 0;
    for writer in writers {
        total += writer.await??;
    }
    Ok(total as f64 / seconds as f64)
}

async fn replica_lag(
    db: &DatabaseConnection,
    replica_url: &str,
    name: &str,
    user: ProfileId,
) -> Result<(), BoxError> {
    let server = replica_url.rsplit_once('/').map_or(replica_url, |(s, _)| s);
    let replica = forge_db::connect(&format!("{server}/{name}")).await?;
    let replicated = Replicated::new(db.clone(), vec![replica]);
    let (mut waits, mut by_replica) = (Vec::new(), 0);
    let n = 200;
    for i in 0..n {
        let project = forge_db::entity::projects::ActiveModel {
            user_id: Set(user),
            name: Set(format!("lag {i}")),
            status: Set(ProjectStatus::Active),
            ..Default::default()
        };
        run_as(
            replicated.primary(),
            Actor::Service,
            Access::Write,
            move |txn| Box::pin(async move { Ok(project.insert(txn).await?) }),
        )
        .await?;
        let token = replicated.token().await?;
        let routed = replicated.at_least(token).await?;
        if routed.served_by == ServedBy::Replica(0) {
            by_replica += 1;
        }
        waits.push(routed.waited);
    }
    waits.sort();
    println!(
        "\n3. replica lag: write, token, read with it ({n} times, wait up to {:?})",
        replicated.max_wait()
    );
    println!(
        "   served by the replica {by_replica}/{n}; wait p50 {:?}, p99 {:?}, max {:?}",
        waits[n / 2],
        waits[n * 99 / 100],
        waits[n - 1]
    );
    Ok(())
}

/// Calls/s of a get by id (one statement) and of a project creation (a transaction of two
/// statements, the owner's check and the insert), on the direct pool and
/// on a pool through the pooler in pooler mode, taking turns; medians over `rounds`.
async fn pooler_cost(
    direct: &DatabaseConnection,
    pooler_url: &str,
    name: &str,
    user: ProfileId,
    rounds: u64,
) -> Result<(), BoxError> {
    use forge_db::service::projects::{self, NewProject};
    let server = pooler_url.rsplit_once('/').map_or(pooler_url, |(s, _)| s);
    let pooled = forge_db::connect(&format!("{server}/{name}?pgbouncer=true")).await?;
    let project = projects::create(direct, Actor::User(user), NewProject::new(user, "Read me"))
        .await?
        .id;
    let n = 300u32;
    let mut rates: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        for (i, db) in [direct, &pooled].into_iter().enumerate() {
            let started = Instant::now();
            for _ in 0..n {
                projects::get(db, Actor::User(user), project).await?;
            }
            rates[i].push(f64::from(n) / started.elapsed().as_secs_f64());
            let started = Instant::now();
            for k in 0..n / 3 {
                projects::create(
                    db,
                    Actor::User(user),
                    NewProject::new(user, format!("p{k}")),
                )
                .await?;
            }
            rates[2 + i].push(f64::from(n / 3) / started.elapsed().as_secs_f64());
        }
    }
    let [get_direct, get_pooled, create_direct, create_pooled] = rates.map(median);
    println!("\n4. pooler mode (calls/s, median of {rounds} rounds), direct vs through PgBouncer");
    println!(
        "   get by id, user:       {get_direct:>7.0} direct, {get_pooled:>7.0} pooled ({:.2}×)",
        get_pooled / get_direct
    );
    println!(
        "   create project, user:  {create_direct:>7.0} direct, {create_pooled:>7.0} pooled ({:.2}×)",
        create_pooled / create_direct
    );
    pooled.close().await?;
    Ok(())
}

async fn user_with_project_and_sessions(
    db: &DatabaseConnection,
    n: usize,
) -> Result<(ProfileId, Vec<SessionId>), BoxError> {
    let email = format!("bench+{}@example.com", Uuid::new_v4().simple());
    let user = profiles::create(db, Actor::Service, profiles::NewProfile::new(email))
        .await?
        .id;
    profiles::set_plan(
        db,
        Actor::Service,
        user,
        forge_db::entity::profiles::Tier::Pro,
        100,
    )
    .await?;
    let project = forge_db::service::projects::create(
        db,
        Actor::User(user),
        forge_db::service::projects::NewProject::new(user, "Bench"),
    )
    .await?
    .id;
    let mut made = Vec::new();
    for _ in 0..n {
        made.push(
            sessions::start(
                db,
                Actor::User(user),
                NewSession::new(user, project, "Bench"),
            )
            .await?
            .id,
        );
    }
    Ok((user, made))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
