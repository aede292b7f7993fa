//! How fast the coding-jobs queue drains on PostgreSQL: Forge's `jobs::claim` /
//! `claim_many` + `jobs::complete` (or `jobs::complete_many`) against a hand-written SQL
//! baseline (the bare `FOR UPDATE SKIP LOCKED` CTE + `UPDATE`, and a bare guarded
//! completing `UPDATE`, through sqlx on the same pool), for 1, 4 and 16 workers, in the
//! same run.
//!
//! ```sh
//! scripts/with-postgres.sh cargo run --release --example queue_bench
//! DATABASE_URL=postgres://user:pass@host/db cargo run --release --example queue_bench
//! QUEUE_BENCH_JOBS=20000 QUEUE_BENCH_WORKERS=1,4,16 QUEUE_BENCH_ROUNDS=5 scripts/with-postgres.sh cargo run --release --example queue_bench
//! ```
//!
//! It creates a scratch database `forge_bench_<random>` next to the one in `DATABASE_URL`
//! (so the role needs `CREATEDB`), migrates it, and drops it at the end. Each run enqueues
//! `QUEUE_BENCH_JOBS` jobs (default 5,000), lets the workers claim and complete until the
//! queue is empty, and checks the outcome by counting: `double_claims` (a job handed out
//! more than once) and `lost` (jobs not completed) must both be 0.
//!
//! The rows to watch: `Forge claim + complete` (one job per call) against the baseline,
//! and `Forge claim_many(10) + complete_many` (two statements per ten jobs).
//!
//! Every mode runs `QUEUE_BENCH_ROUNDS` times (default 3), the modes taking turns within a
//! round, and each row shows the median: of jobs/s, and of the ratio to the baseline run of
//! the same round (`vs SQL`), so that a build or a vacuum elsewhere on the machine skews
//! one round of every mode rather than every round of one.

use forge_db::entity::ids::{JobId, SessionId};
use std::collections::HashSet;
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use forge_db::entity::coding_jobs;
use forge_db::migration::{Backend, redact_url};
use forge_db::sea_orm::sqlx::{self, PgPool, Row};
use forge_db::sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter,
};
use forge_db::service::jobs::{self, NewJob};
use forge_db::service::{Actor, sessions};
use serde_json::json;
use uuid::Uuid;

type BoxError = Box<dyn Error + Send + Sync>;

#[path = "support/scratch.rs"]
mod scratch;

const LEASE: Duration = Duration::from_secs(300);

/// The baseline claim: seed 002's query, made safe for many workers.
const SQL_CLAIM: &str = "\
WITH picked AS MATERIALIZED (
    SELECT id FROM coding_jobs
    WHERE status = 'pending' AND run_after <= now()
    ORDER BY priority DESC, created_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE coding_jobs j
   SET status = 'processing', locked_by = $2, locked_until = now() + interval '5 minutes',
       started_at = COALESCE(j.started_at, now()), updated_at = now()
  FROM picked WHERE j.id = picked.id
RETURNING j.id";

/// The baseline completion, guarded like Forge's.
const SQL_COMPLETE: &str = "\
UPDATE coding_jobs
   SET status = 'completed', result = $3, completed_at = now(), locked_until = NULL,
       updated_at = now()
 WHERE id = $1 AND status = 'processing' AND locked_by = $2";

/// The baseline completion of a batch (every result the same, so one parameter).
const SQL_COMPLETE_MANY: &str = "\
UPDATE coding_jobs
   SET status = 'completed', result = $3, completed_at = now(), locked_until = NULL,
       updated_at = now()
 WHERE id = ANY($1) AND status = 'processing' AND locked_by = $2";

/// Who claims, and how many at a time.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// The baseline with `LIMIT $1`, bound, completing one job at a time.
    Sql(i64),
    /// The baseline with the limit written into the SQL text (as Forge does).
    SqlText(i64),
    /// The baseline with `LIMIT $1`, completing the claimed jobs in one `UPDATE`.
    SqlBatch(i64),
    /// Forge's `claim` (1) or `claim_many(n)`, then `complete` for each job.
    Forge(u64),
    /// Forge's `claim_many(n)`, then one `complete_many`.
    ForgeBatch(u64),
}

impl Mode {
    fn label(self) -> String {
        match self {
            Self::Sql(n) => format!("SQL, LIMIT $1 = {n}"),
            Self::SqlText(n) => format!("SQL, LIMIT {n} in text"),
            Self::SqlBatch(n) => format!("SQL, LIMIT $1 = {n}, batch UPDATE"),
            Self::Forge(1) => "Forge claim + complete".to_owned(),
            Self::Forge(n) => format!("Forge claim_many({n}) + complete"),
            Self::ForgeBatch(n) => format!("Forge claim_many({n}) + complete_many"),
        }
    }
}

/// The modes of every row, in the order they take turns; the first is the baseline.
const MODES: [Mode; 9] = [
    Mode::Sql(1),
    Mode::Forge(1),
    Mode::SqlText(1),
    Mode::Forge(10),
    Mode::Sql(10),
    Mode::SqlBatch(10),
    Mode::ForgeBatch(10),
    Mode::Forge(50),
    Mode::ForgeBatch(50),
];

/// One measured run.
struct Outcome {
    jobs_per_s: f64,
    double_claims: usize,
    lost: u64,
}

/// The median of `values` (not empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, BoxError> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v} is not a valid value").into()),
        Err(_) => Ok(default),
    }
}

async fn run() -> Result<(), BoxError> {
    let url = std::env::var("DATABASE_URL").unwrap_or_default();
    if Backend::from_url(&url) != Some(Backend::Postgres) {
        println!(
            "queue_bench measures PostgreSQL's SKIP LOCKED claims; SQLite serialises all \
             writers, so there is nothing to race. Set DATABASE_URL=postgres://… or run \
             `scripts/with-postgres.sh cargo run --release --example queue_bench`."
        );
        return Ok(());
    }
    let n: usize = env_or("QUEUE_BENCH_JOBS", 5000)?;
    let rounds: usize = env_or("QUEUE_BENCH_ROUNDS", 3)?.max(1);
    let workers: Vec<usize> = env_or("QUEUE_BENCH_WORKERS", "1,4,16".to_owned())?
        .split(',')
        .map(|w| w.trim().parse())
        .collect::<Result<_, _>>()?;
    let (admin, name, bench_url) = scratch::database(&url, "forge_bench").await?;
    println!(
        "queue_bench: {n} jobs per run, median of {rounds} rounds, on {} (scratch database \
         {name})",
        redact_url(&url)
    );
    let outcome = bench(&bench_url, n, &workers, rounds).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    outcome
}

async fn bench(
    url: &str,
    n: usize,
    worker_counts: &[usize],
    rounds: usize,
) -> Result<(), BoxError> {
    let mut options = ConnectOptions::new(url);
    options.max_connections(40).sqlx_logging(false);
    let db = Database::connect(options).await?;
    forge_db::migrate(&db).await?;
    let session = fixture_session(&db).await?;

    println!();
    println!(
        "{:>7}  {:<40} {:>9}  {:>8}  checks",
        "workers", "claims", "jobs/s", "vs SQL"
    );
    for &w in worker_counts {
        // Per mode: jobs/s and the ratio to the same round's baseline, one per round.
        let mut speeds = vec![Vec::with_capacity(rounds); MODES.len()];
        let mut ratios = vec![Vec::with_capacity(rounds); MODES.len()];
        let (mut double_claims, mut lost) = (vec![0; MODES.len()], vec![0; MODES.len()]);
        for _ in 0..rounds {
            let mut baseline = None;
            for (i, mode) in MODES.into_iter().enumerate() {
                let out = measure(&db, session, n, w, mode).await?;
                let base = *baseline.get_or_insert(out.jobs_per_s);
                speeds[i].push(out.jobs_per_s);
                ratios[i].push(out.jobs_per_s / base);
                double_claims[i] += out.double_claims;
                lost[i] += out.lost;
                if out.double_claims != 0 || out.lost != 0 {
                    return Err(format!(
                        "{} with {w} workers: {} double claims, {} lost",
                        mode.label(),
                        out.double_claims,
                        out.lost
                    )
                    .into());
                }
            }
        }
        for (i, mode) in MODES.into_iter().enumerate() {
            println!(
                "{w:>7}  {:<40} {:>9.0}  {:>7.2}x  double_claims={} lost={}",
                mode.label(),
                median(speeds[i].clone()),
                median(ratios[i].clone()),
                double_claims[i],
                lost[i]
            );
        }
    }
    db.close().await?;
    Ok(())
}

/// A profile, project and live session to hang the jobs on.
async fn fixture_session(db: &DatabaseConnection) -> Result<SessionId, BoxError> {
    use forge_db::service::profiles::{self, NewProfile};
    use forge_db::service::projects::{self, NewProject};
    let owner = profiles::create(db, Actor::Service, NewProfile::new("bench@example.com")).await?;
    profiles::set_plan(db, Actor::Service, owner.id, owner.tier, 1000).await?;
    let project = projects::create(db, Actor::Service, NewProject::new(owner.id, "bench")).await?;
    let mut new = sessions::NewSession::new(owner.id, project.id, "benchmark the queue");
    new.ttl = chrono::TimeDelta::days(1);
    Ok(sessions::start(db, Actor::Service, new).await?.id)
}

/// Enqueues `n` jobs, lets `workers` drain them in `mode`, and counts the outcome.
async fn measure(
    db: &DatabaseConnection,
    session: SessionId,
    n: usize,
    workers: usize,
    mode: Mode,
) -> Result<Outcome, BoxError> {
    db.execute_unprepared("TRUNCATE coding_jobs").await?;
    let mut left = n;
    while left > 0 {
        let take = left.min(jobs::MAX_ENQUEUE);
        let batch = (0..take)
            .map(|i| NewJob {
                priority: (i % 3) as i32,
                ..NewJob::new(session, format!("job {i}"))
            })
            .collect();
        jobs::enqueue_many(db, Actor::Service, batch).await?;
        left -= take;
    }
    db.execute_unprepared("VACUUM ANALYZE coding_jobs").await?;

    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..workers {
        let (db, worker) = (db.clone(), format!("{mode:?}-{i}"));
        tasks.push(tokio::spawn(async move { drain(&db, &worker, mode).await }));
    }
    let mut claimed = Vec::with_capacity(n);
    for task in tasks {
        claimed.extend(task.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();

    let unique: HashSet<JobId> = claimed.iter().copied().collect();
    let completed = coding_jobs::Entity::find()
        .filter(coding_jobs::Column::Status.eq(coding_jobs::JobStatus::Completed))
        .count(db)
        .await?;
    Ok(Outcome {
        jobs_per_s: claimed.len() as f64 / elapsed,
        double_claims: claimed.len() - unique.len(),
        lost: (n as u64).saturating_sub(completed),
    })
}

/// One worker: claim, complete, until nothing is claimable; the ids it claimed.
async fn drain(db: &DatabaseConnection, worker: &str, mode: Mode) -> Result<Vec<JobId>, BoxError> {
    let pool = db.get_postgres_connection_pool();
    let mut claimed = Vec::new();
    loop {
        let ids = match mode {
            Mode::Sql(k) | Mode::SqlBatch(k) => sql_claim(pool, worker, k, false).await?,
            Mode::SqlText(k) => sql_claim(pool, worker, k, true).await?,
            Mode::Forge(k) | Mode::ForgeBatch(k) => {
                jobs::claim_many(db, Actor::Service, worker, LEASE, k)
                    .await?
                    .into_iter()
                    .map(|j| j.id)
                    .collect()
            }
        };
        if ids.is_empty() {
            return Ok(claimed);
        }
        match mode {
            Mode::Sql(_) | Mode::SqlText(_) => {
                for &id in &ids {
                    sql_complete(pool, id, worker).await?;
                }
            }
            Mode::SqlBatch(_) => sql_complete_many(pool, &ids, worker).await?,
            Mode::Forge(_) => {
                for &id in &ids {
                    jobs::complete(db, Actor::Service, id, worker, json!({ "ok": true })).await?;
                }
            }
            Mode::ForgeBatch(_) => {
                let done = ids.iter().map(|&id| (id, json!({ "ok": true }))).collect();
                let out = jobs::complete_many(db, Actor::Service, worker, done).await?;
                if !out.lost.is_empty() {
                    return Err(format!("{worker} lost the lease on {:?}", out.lost).into());
                }
            }
        }
        claimed.extend(ids);
    }
}

async fn sql_claim(
    pool: &PgPool,
    worker: &str,
    k: i64,
    in_text: bool,
) -> Result<Vec<JobId>, BoxError> {
    let rows = if in_text {
        let sql = SQL_CLAIM
            .replace("LIMIT $1", &format!("LIMIT {k}"))
            .replace("$2", "$1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .fetch_all(pool)
            .await?
    } else {
        sqlx::query(SQL_CLAIM)
            .bind(k)
            .bind(worker)
            .fetch_all(pool)
            .await?
    };
    Ok(rows
        .iter()
        .map(|r| r.try_get::<Uuid, _>(0).map(JobId::from))
        .collect::<Result<_, _>>()?)
}

async fn sql_complete(pool: &PgPool, id: JobId, worker: &str) -> Result<(), BoxError> {
    let done = sqlx::query(SQL_COMPLETE)
        .bind(id.into_uuid())
        .bind(worker)
        .bind(json!({ "ok": true }))
        .execute(pool)
        .await?;
    if done.rows_affected() != 1 {
        return Err(format!("baseline lost the lease on {id}").into());
    }
    Ok(())
}

async fn sql_complete_many(pool: &PgPool, ids: &[JobId], worker: &str) -> Result<(), BoxError> {
    let uuids: Vec<Uuid> = ids.iter().map(|id| id.into_uuid()).collect();
    let done = sqlx::query(SQL_COMPLETE_MANY)
        .bind(uuids)
        .bind(worker)
        .bind(json!({ "ok": true }))
        .execute(pool)
        .await?;
    if done.rows_affected() != ids.len() as u64 {
        return Err(format!("baseline lost a lease among {ids:?}").into());
    }
    Ok(())
}
