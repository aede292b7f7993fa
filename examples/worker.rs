//! A coding-job worker: claims queued jobs on a lease (`jobs::claim_many`), streams events
//! to their session (`events::append`), heartbeats while it works, fails a job whose work
//! failed — it is retried with backoff until its `max_retries` are used up — and completes
//! the finished jobs of each claim together, in one call (`jobs::complete_many`), which
//! reports any whose lease was lost meanwhile instead of failing the rest.
//!
//! ```sh
//! cargo run --example worker                                # embedded SQLite, ./forge.db
//! DATABASE_URL=postgres://user:pass@host/db cargo run --example worker
//! scripts/with-postgres.sh cargo run --example worker      # a throwaway PostgreSQL
//! ```
//!
//! When no job is queued it first enqueues a demo session's five jobs: one fails once and
//! then succeeds, one always fails (retried once, then `failed`), one is long and
//! heartbeats its lease. The work is simulated; the failures are deterministic (by
//! prompt), so every run shows the retries. It stops on Ctrl-C (after finishing the job in
//! hand; jobs claimed but not started are handed back), or by itself once the queue has
//! stayed empty for `WORKER_IDLE_SECS` (default 8) — so it terminates in CI. A fault of the
//! connection (a terminated backend, the server restarting) is retried with back-off
//! (`ForgeError::is_retryable`); other errors print
//! as one line on stderr, with exit code 1.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use forge_db::entity::coding_jobs::Model as CodingJob;
use forge_db::entity::ids::JobId;
use forge_db::entity::prelude::*;
use forge_db::migration::{Backend, redact_url};
use forge_db::sea_orm::DatabaseConnection;
use forge_db::service::jobs::{self, JobFilter, NewJob, RetryPolicy};
use forge_db::service::profiles::{self, NewProfile};
use forge_db::service::projects::{self, NewProject};
use forge_db::service::sessions::{self, NewSession};
use forge_db::service::{Actor, ForgeError, PageRequest, events};
use serde_json::{Value, json};
use tokio::sync::Notify;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The worker's name: its claims carry it, and only it may finish what it claimed.
const WORKER: &str = "example-worker";
/// How long a claim holds a job before another worker may take it over.
const LEASE: Duration = Duration::from_secs(10);
/// How many jobs one claim takes.
const CLAIM: u64 = 2;
/// How long one simulated step of work takes.
const STEP: Duration = Duration::from_millis(200);
/// How often an idle worker asks for work.
const POLL: Duration = Duration::from_millis(500);
/// Short backoff so the demo's retries come back within seconds.
const RETRY: RetryPolicy = RetryPolicy {
    base: Duration::from_secs(1),
    max: Duration::from_secs(4),
};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("worker: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Set once Ctrl-C was pressed; the loop stops at the next safe point.
#[derive(Clone, Default)]
struct Shutdown {
    requested: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Shutdown {
    fn listen(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                println!("ctrl-c    stopping after the job in hand");
                this.requested.store(true, Ordering::SeqCst);
                this.notify.notify_waiters();
            }
        });
    }

    fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Sleeps `d`, or less when Ctrl-C comes first; true when it did.
    async fn sleep(&self, d: Duration) -> bool {
        let notified = self.notify.notified();
        if self.requested() {
            return true;
        }
        tokio::select! {
            () = notified => true,
            () = tokio::time::sleep(d) => self.requested(),
        }
    }
}

async fn run() -> AnyResult<()> {
    let url = forge_db::migration::url_from_env();
    let idle = std::env::var("WORKER_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(8), Duration::from_secs);
    let backend = Backend::from_url(&url).map_or(String::new(), |b| format!(" ({b})"));
    let mut out = std::io::stdout();
    writeln!(out, "database  {}{backend}", redact_url(&url))?;
    let db = forge_db::connect(&url).await?;
    forge_db::migrate(&db).await?;

    enqueue_demo_if_idle(&db).await?;
    let shutdown = Shutdown::default();
    shutdown.listen();
    let stats = work(&db, &shutdown, idle).await?;
    writeln!(
        out,
        "stopped   {} completed, {} failed for a retry, {} failed for good, {} lost",
        stats.completed, stats.retried, stats.failed, stats.lost
    )?;
    Ok(())
}

/// Enqueues a demo session's jobs unless some job is already waiting.
async fn enqueue_demo_if_idle(db: &DatabaseConnection) -> AnyResult<()> {
    let pending = JobFilter {
        status: Some(JobStatus::Pending),
        ..JobFilter::default()
    };
    let waiting = jobs::list(db, Actor::Service, pending, PageRequest::with_limit(1)).await?;
    if !waiting.items.is_empty() {
        println!("queue     jobs are waiting: working on those");
        return Ok(());
    }
    let short = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let email = format!("worker-demo+{short}@example.com");
    let owner = profiles::create(db, Actor::Service, NewProfile::new(email)).await?;
    let user = Actor::User(owner.id);
    let project = projects::create(db, user, NewProject::new(owner.id, "Worker demo")).await?;
    let new = NewSession::new(owner.id, project.id, "Ship the demo app");
    let session = sessions::start(db, user, new).await?;
    sessions::transition(db, user, session.id, SessionStatus::Active).await?;
    let job = |prompt: &str, priority, max_retries| NewJob {
        priority,
        max_retries,
        ..NewJob::new(session.id, prompt)
    };
    let queued = jobs::enqueue_many(
        db,
        Actor::Service,
        vec![
            job("Scaffold the app", 10, 3),
            job("Write the tests (flaky)", 5, 3),
            job("Refactor the build (long)", 5, 3),
            job("Deploy to production (broken)", 0, 1),
            job("Write the changelog", 0, 3),
        ],
    )
    .await?;
    println!(
        "queue     enqueued {} demo jobs for session {}",
        queued.len(),
        session.id
    );
    Ok(())
}

#[derive(Default)]
struct Stats {
    completed: usize,
    retried: usize,
    failed: usize,
    /// Jobs whose lease this worker lost before it could finish them.
    lost: usize,
}

/// Claims and works jobs until Ctrl-C or until the queue stayed empty for `idle`.
async fn work(db: &DatabaseConnection, shutdown: &Shutdown, idle: Duration) -> AnyResult<Stats> {
    let mut stats = Stats::default();
    let mut idle_since = Instant::now();
    while !shutdown.requested() {
        let claimed = retrying(shutdown, "claim", || {
            jobs::claim_many(db, Actor::Service, WORKER, LEASE, CLAIM)
        })
        .await?;
        if claimed.is_empty() {
            if idle_since.elapsed() >= idle {
                println!("idle      queue empty for {}s", idle.as_secs());
                break;
            }
            shutdown.sleep(POLL).await;
            continue;
        }
        // The results of the jobs of this claim that succeeded, completed together below.
        // (Each job's lease must outlast the rest of the batch: the claim is small, and a
        // long job heartbeats.)
        let mut done = Vec::new();
        for job in claimed {
            if shutdown.requested() {
                hand_back(db, &job, shutdown).await?;
                continue;
            }
            if let Some(result) = process(db, &job, shutdown, &mut stats).await? {
                done.push((job, result));
            }
        }
        complete_all(db, done, shutdown, &mut stats).await?;
        idle_since = Instant::now();
    }
    Ok(stats)
}

/// Runs `call` until it succeeds or fails for a reason other than a transient fault (a
/// terminated connection, a restarting server, a pool timeout: `ForgeError::is_retryable`),
/// backing off 100 ms, 200 ms, … up to 5 s between tries. Once Ctrl-C was pressed the
/// fault is returned instead. Retrying is safe: a call that failed this way is atomic, and
/// a `complete_many` whose reply was lost after it committed reports its jobs as lost
/// when retried (as `complete` answers `LeaseLost`).
async fn retrying<T, F, Fut>(shutdown: &Shutdown, what: &str, mut call: F) -> Result<T, ForgeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ForgeError>>,
{
    let mut pause = Duration::from_millis(100);
    loop {
        match call().await {
            Err(err) if err.is_retryable() && !shutdown.requested() => {
                println!(
                    "retry     {what}: {err} (again in {} ms)",
                    pause.as_millis()
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Gives a claimed but unstarted job back to the queue, claimable at once by another
/// worker, without using up one of its retries (`jobs::release`).
async fn hand_back(db: &DatabaseConnection, job: &CodingJob, shutdown: &Shutdown) -> AnyResult<()> {
    let released = retrying(shutdown, "release", || {
        jobs::release(db, Actor::Service, job.id, WORKER)
    })
    .await;
    match released {
        Ok(job) => println!("release   \"{}\" → {}", job.prompt, job.status),
        // Its lease ran out and another worker took it over meanwhile.
        Err(ForgeError::LeaseLost { .. }) => println!("release   \"{}\": lease gone", job.prompt),
        Err(err) => return Err(err.into()),
    }
    Ok(())
}

/// Works one job: its result when the work succeeded (the job is completed with the rest
/// of its batch), or `None` when it failed (the job is failed here, to be retried) or its
/// lease was lost, or its session ended — reported and skipped instead of stopping the
/// worker.
async fn process(
    db: &DatabaseConnection,
    job: &CodingJob,
    shutdown: &Shutdown,
    stats: &mut Stats,
) -> AnyResult<Option<Value>> {
    let attempt = job.retry_count + 1;
    println!("claim     \"{}\" (attempt {attempt})", job.prompt);
    let reason = match simulate(db, job, shutdown).await {
        Ok(files) => return Ok(Some(json!({ "files_changed": files }))),
        Err(Failure::Job(reason)) => reason,
        Err(Failure::Db(err)) => return Err(err.into()),
    };
    let failed = retrying(shutdown, "fail", || {
        jobs::fail(db, Actor::Service, job.id, WORKER, &reason, RETRY)
    })
    .await;
    match failed {
        Ok(done) if done.status == JobStatus::Pending => {
            stats.retried += 1;
            println!(
                "finish    \"{}\" → {} (retry {} of {})",
                done.prompt, done.status, done.retry_count, done.max_retries
            );
        }
        Ok(done) => {
            stats.failed += 1;
            println!("finish    \"{}\" → {}", done.prompt, done.status);
        }
        Err(err @ ForgeError::LeaseLost { .. }) => {
            stats.lost += 1;
            println!("lost      \"{}\": {err}", job.prompt);
        }
        Err(err) => return Err(err.into()),
    }
    Ok(None)
}

/// Completes the jobs of `done`, each with its result, in one call (`jobs::complete_many`).
/// A job whose lease was lost meanwhile (taken over after it ran out, or failed because
/// its session ended) is reported and left as it is; the others are completed all the
/// same.
async fn complete_all(
    db: &DatabaseConnection,
    done: Vec<(CodingJob, Value)>,
    shutdown: &Shutdown,
    stats: &mut Stats,
) -> AnyResult<()> {
    if done.is_empty() {
        return Ok(());
    }
    let batch: Vec<(JobId, Value)> = done.iter().map(|(job, r)| (job.id, r.clone())).collect();
    let out = retrying(shutdown, "complete", || {
        jobs::complete_many(db, Actor::Service, WORKER, batch.clone())
    })
    .await?;
    for (job, _) in &done {
        if out.completed.contains(&job.id) {
            stats.completed += 1;
            println!("finish    \"{}\" → {}", job.prompt, JobStatus::Completed);
        } else {
            stats.lost += 1;
            println!(
                "lost      \"{}\": no longer ours to complete (its lease was taken over, or \
                 its session ended)",
                job.prompt
            );
        }
    }
    Ok(())
}

/// Why a job's work did not succeed.
enum Failure {
    /// The job failed: the reason is stored on it.
    Job(String),
    /// The database failed: the worker stops.
    Db(ForgeError),
}

impl From<ForgeError> for Failure {
    fn from(err: ForgeError) -> Self {
        match err {
            // The job's session ended, or the job was taken over: fail it, go on.
            ForgeError::InvalidTransition { .. }
            | ForgeError::NotFound { .. }
            | ForgeError::LeaseLost { .. } => Self::Job(err.to_string()),
            other => Self::Db(other),
        }
    }
}

/// Simulated work: a few steps, each streaming an event and extending the lease. Fails
/// deterministically by prompt: "(flaky)" on the first attempt, "(broken)" always.
async fn simulate(
    db: &DatabaseConnection,
    job: &CodingJob,
    shutdown: &Shutdown,
) -> Result<usize, Failure> {
    let long = job.prompt.contains("(long)");
    let steps = if long { 6 } else { 2 };
    let thinking = json!({ "text": format!("Planning: {}", job.prompt) });
    retrying(shutdown, "append", || {
        events::append(
            db,
            Actor::Service,
            job.session_id,
            EventType::Thinking,
            thinking.clone(),
        )
    })
    .await?;
    for step in 1..=steps {
        // Finish the job in hand even when Ctrl-C comes: the sleep only ends sooner.
        shutdown.sleep(STEP).await;
        let change = json!({ "path": format!("src/step_{step}.rs") });
        retrying(shutdown, "append", || {
            events::append(
                db,
                Actor::Service,
                job.session_id,
                EventType::FileChange,
                change.clone(),
            )
        })
        .await?;
        if long {
            retrying(shutdown, "heartbeat", || {
                jobs::heartbeat(db, Actor::Service, job.id, WORKER, LEASE)
            })
            .await?;
            println!(
                "heartbeat \"{}\" step {step}/{steps}, lease renewed",
                job.prompt
            );
        }
    }
    let flaky = job.prompt.contains("(flaky)") && job.retry_count == 0;
    if flaky || job.prompt.contains("(broken)") {
        let reason = "simulated failure: the build broke";
        let data = json!({ "message": reason });
        retrying(shutdown, "append", || {
            events::append(
                db,
                Actor::Service,
                job.session_id,
                EventType::Error,
                data.clone(),
            )
        })
        .await?;
        return Err(Failure::Job(reason.to_owned()));
    }
    let done = json!({ "summary": format!("Done: {}", job.prompt) });
    retrying(shutdown, "append", || {
        events::append(
            db,
            Actor::Service,
            job.session_id,
            EventType::Completion,
            done.clone(),
        )
    })
    .await?;
    Ok(steps)
}
