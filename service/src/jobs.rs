//! Coding jobs: the work queue of coding sessions, claimed by a fleet of workers.
//!
//! Owns `coding_jobs`. Enqueueing, claiming, leases, completion, failure and housekeeping
//! are the service's; a user may only read the jobs of their own sessions ([`find`],
//! [`get`], [`list`]) — another user's job is [`ForgeError::NotFound`], exactly like a
//! missing one.
//!
//! Invariants:
//! - **Claim order.** [`claim`] / [`claim_many`] take the claimable jobs with the highest
//!   `priority` first, oldest `created_at` first within a priority. A job is
//!   claimable when it is `pending` and its `run_after` has passed, or when it is
//!   `processing` and its lease (`locked_until`) has run out. Jobs enqueued by one
//!   [`enqueue_many`] call keep the order of the call.
//! - **One holder.** A claim marks the job `processing`, records the worker (`locked_by`)
//!   and the lease end, and sets `started_at` once (the first claim). On PostgreSQL the claim
//!   is one statement: a `MATERIALIZED` CTE selects the ids `FOR UPDATE SKIP LOCKED` (so the
//!   planner cannot run the `LIMIT`ed subquery twice and claim more rows than asked), and the
//!   `UPDATE` joins on it; concurrent claimers skip each other's rows instead of waiting.
//!   On SQLite it is one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING *` inside
//!   `BEGIN IMMEDIATE`, which serialises writers.
//! - **Leases.** [`heartbeat`], [`complete`], [`complete_many`], [`fail`] and [`release`]
//!   are guarded updates (`WHERE id = … AND status = 'processing' AND locked_by =
//!   <worker>`): a worker whose lease was taken over (the job was claimed again after the
//!   lease ran out, finished, or failed because its session ended) gets
//!   [`ForgeError::LeaseLost`] (for [`complete_many`]: the job in
//!   [`CompletedMany::lost`]) and changes nothing, so two workers never both finish one
//!   job. A lease that ran out but was not yet taken over still counts as held.
//! - **Attempts.** Re-claiming a job whose lease ran out counts as an attempt
//!   (`retry_count + 1`); a job whose attempts are used up (`retry_count = max_retries`)
//!   is failed instead ("lease expired too often"). [`fail`] retries with exponential
//!   back-off and jitter ([`RetryPolicy`]) while `retry_count < max_retries`, and fails
//!   for good after that, keeping the last error.
//! - **Ended sessions** leave no claimable job: nothing can be enqueued on a completed,
//!   failed or expired session, and when a session ends its pending *and* in-flight jobs
//!   are failed ("session completed before the job finished") in the same transaction. On
//!   PostgreSQL a `SECURITY DEFINER` trigger on `coding_sessions` does it (users, who end
//!   their own sessions, have no UPDATE on `coding_jobs`; and it also holds for SQL run
//!   outside Forge); on SQLite [`crate::sessions`] calls `fail_jobs_of_ended_sessions`.
//! - **Giving back.** [`release`] hands a held job back to `pending` without spending
//!   an attempt (a worker shutting down before it did the work), claimable at once;
//!   [`cancel`] fails a job that is still `pending` ("cancelled") so no worker claims it.
//! - **Housekeeping.** [`purge_finished`] deletes completed and failed jobs older than a
//!   given age in bounded batches, each its own short transaction.
//!
//! Queue tuning (PostgreSQL, migration `m20251122_000005_queue_tuning`): every claim and
//! completion leaves a dead row version behind, and the claim query walks the queue from
//! its head, where those dead versions pile up; until vacuum removes them each claim
//! visits them again (and `SKIP LOCKED` has to look at every row it skips), so claims slow
//! down as a busy queue runs. The migration therefore makes autovacuum visit
//! `coding_jobs` and `batch_items` after 1 % of the rows (plus 200) changed instead of
//! the default 20 %, analyse them after 2 % (plus 200), and leaves 20 %
//! free space in each page (`fillfactor = 80`) so updates of unindexed columns (an item's
//! progress) stay on the page (HOT) and add no index entries. It also adds
//! `idx_coding_jobs_lease (locked_until) WHERE locked_until IS NOT NULL` for the claim's
//! expired-lease branch; the pending branch reads `idx_coding_jobs_pending` in claim
//! order. Neither walks over the jobs in flight, so a claim costs the same with 10 or
//! 10,000 jobs being worked on.
//!
//! Every call runs as `service_role` on PostgreSQL, so that the application role Forge
//! connects as needs no privilege of its own. A call that is one statement ([`claim`],
//! [`claim_many`], [`heartbeat`], [`complete`], [`complete_many`], [`fail`], [`release`],
//! [`cancel`]) is one round trip on a PostgreSQL pool: one message that sets the role and
//! executes the statement, prepared once per connection (the first call of a connection
//! takes a second round trip to prepare it; see `Route` for why and for the figures). A
//! [`claim_many`] that fails jobs out of attempts on the way claims again for the
//! shortfall, and a refused [`cancel`] reads the job to say why: one more each. The other
//! calls are transactions ([`crate::run_as`]: `BEGIN`, `set_config`, their statements,
//! `COMMIT`). On SQLite every write is a `BEGIN IMMEDIATE` transaction; inside a caller's
//! transaction every call is a savepoint of it.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use forge_entity::coding_jobs::{self, JobStatus};
use forge_entity::coding_sessions::{self, SessionStatus};
use forge_entity::ids::{JobId, SessionId};
use sea_orm::sea_query::{BinOper, Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait, FromQueryResult, QueryFilter, QuerySelect, QueryTrait, Select, Statement,
    UpdateMany, Value,
};
use serde_json::Value as Json;

use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::validate;

/// Longest accepted prompt and error message, in characters.
const MAX_TEXT: usize = 100_000;
/// Longest accepted worker name, in characters.
const MAX_WORKER: usize = 200;
/// Most retries a job may be given.
pub const MAX_RETRIES: i32 = 100;
/// Most jobs one [`enqueue_many`] call takes.
pub const MAX_ENQUEUE: usize = 10_000;
/// Most jobs one [`claim_many`] call claims.
pub const MAX_CLAIM: u64 = 1_000;
/// Longest lease a claim or heartbeat may take.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);
/// Rows per multi-row `INSERT` (10 bound values each: well under both backends' limits).
const INSERT_CHUNK: usize = 500;
/// Error message of a job failed because its lease ran out once too often.
const LEASE_EXHAUSTED: &str = "lease expired too often: the job was claimed max_retries + 1 \
                               times and never finished";

/// A job to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// The session the job works for; it must not have ended.
    pub session_id: SessionId,
    /// What to do; trimmed, must not be blank.
    pub prompt: String,
    /// Higher runs first.
    pub priority: i32,
    /// How many times the job may be retried after a failure (`0..=MAX_RETRIES`).
    pub max_retries: i32,
    /// Not claimable before this instant (`None`: at once).
    pub run_after: Option<DateTime<Utc>>,
}

impl NewJob {
    /// A job for `session_id` with priority 0, 3 retries, claimable at once.
    pub fn new(session_id: SessionId, prompt: impl Into<String>) -> Self {
        Self {
            session_id,
            prompt: prompt.into(),
            priority: 0,
            max_retries: 3,
            run_after: None,
        }
    }
}

/// Which jobs [`list`] returns. `None` fields do not filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only the jobs of this session.
    pub session_id: Option<SessionId>,
    /// Only jobs in this state.
    pub status: Option<JobStatus>,
}

/// How long a failed job waits before it is claimable again: `base * 2^retry_count`,
/// at most `max`, then ±25 % jitter (still at most `max`), so a fleet of failing jobs does
/// not come back in lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 5 seconds, doubling up to 10 minutes.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max: Duration::from_secs(600),
        }
    }
}

/// The longest back-off a [`RetryPolicy`] may ask for: 30 days.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 24 * 3600);

impl RetryPolicy {
    /// Refuses a policy whose waits could not be scheduled: `base` over `max`, or `max`
    /// over [`MAX_BACKOFF`].
    fn checked(self) -> Result<Self> {
        if self.max > MAX_BACKOFF || self.base > self.max {
            return Err(ForgeError::invalid(
                "policy",
                format!(
                    "base must be at most max, and max at most {} s",
                    MAX_BACKOFF.as_secs()
                ),
            ));
        }
        Ok(self)
    }

    /// The wait before the retry that follows `retry_count` earlier retries, with jitter.
    pub fn backoff(&self, retry_count: i32) -> Duration {
        self.jittered(self.plain(retry_count), random_unit())
    }

    /// The wait after `retry_count` earlier retries, before jitter: `base * 2^retry_count`,
    /// at most `max`. It stops growing once it reaches `max`, or at `retry_count` 31.
    fn plain(&self, retry_count: i32) -> Duration {
        let exponent = u32::try_from(retry_count.clamp(0, 31)).unwrap_or(31);
        self.base
            .checked_mul(1u32 << exponent)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// `plain` scaled by the jitter factor `0.75 + unit / 2` (`unit` in `[0, 1)`), at most
    /// `max`.
    fn jittered(&self, plain: Duration, unit: f64) -> Duration {
        plain.mul_f64(0.75 + unit / 2.0).min(self.max)
    }

    /// The `run_after` of a job failed at `now`, as an expression over the row: `now` plus
    /// the back-off of the row's `retry_count` while it has attempts left, its own
    /// `run_after` otherwise. One jitter draw serves every arm (only one applies).
    fn run_after(&self, now: DateTime<Utc>) -> Expr {
        let retry_count = || Expr::col(coding_jobs::Column::RetryCount);
        let unit = random_unit();
        let mut case = Expr::case(
            retry_count().gte(Expr::col(coding_jobs::Column::MaxRetries)),
            Expr::col(coding_jobs::Column::RunAfter),
        );
        let mut count = 0;
        while count < 31 && self.plain(count) < self.max {
            let at = now + self.jittered(self.plain(count), unit);
            case = case.case(retry_count().eq(count), Expr::value(at));
            count += 1;
        }
        // From here on the wait no longer grows.
        let at = now + self.jittered(self.plain(count), unit);
        case.finally(Expr::value(at)).into()
    }
}

/// A uniform number in `[0, 1)` from random bits: no dependency for a dice roll.
fn random_unit() -> f64 {
    let bits = u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]),
    );
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Jobs visible to `actor`: those of their own sessions, or all for the service.
pub fn visible_to(actor: Actor) -> Select<coding_jobs::Entity> {
    scoped::owned_through::<_, coding_sessions::Entity>(
        actor,
        coding_jobs::Column::SessionId,
        coding_sessions::Column::Id,
    )
}

impl Scoped for coding_jobs::Entity {
    const NAME: &'static str = "job";

    fn key() -> Self::Column {
        coding_jobs::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

/// `d` as a chrono delta; `field` names it in the error when it is out of range.
pub(crate) fn lease_delta(field: &'static str, d: Duration) -> Result<TimeDelta> {
    if d.is_zero() || d > MAX_LEASE {
        return Err(ForgeError::invalid(
            field,
            format!("must be positive and at most {} s", MAX_LEASE.as_secs()),
        ));
    }
    TimeDelta::from_std(d).map_err(|_| ForgeError::invalid(field, "is too long"))
}

fn worker_name(worker: &str) -> Result<String> {
    validate::text("worker", worker, MAX_WORKER)
}

/// Validates `new` and turns it into the row to insert, created at `created_at`.
fn new_row(new: NewJob, created_at: DateTime<Utc>) -> Result<coding_jobs::ActiveModel> {
    let prompt = validate::text("prompt", &new.prompt, MAX_TEXT)?;
    let run_after = new
        .run_after
        .map(|at| validate::storable_instant("run_after", at))
        .transpose()?;
    validate::in_range(
        "max_retries",
        i64::from(new.max_retries),
        0,
        i64::from(MAX_RETRIES),
    )?;
    Ok(coding_jobs::ActiveModel {
        id: Set(JobId::new()),
        session_id: Set(new.session_id),
        prompt: Set(prompt),
        status: Set(JobStatus::Pending),
        priority: Set(new.priority),
        retry_count: Set(0),
        max_retries: Set(new.max_retries),
        // Microseconds, as PostgreSQL keeps them, so the row reads back equal everywhere.
        run_after: Set(run_after.map_or(created_at, |at| at.trunc_subsecs(6))),
        locked_by: Set(None),
        locked_until: Set(None),
        result: Set(None),
        error_message: Set(None),
        started_at: Set(None),
        completed_at: Set(None),
        created_at: Set(created_at),
        updated_at: Set(created_at),
    })
}

/// Locks the sessions against ending until the transaction ends (PostgreSQL: `FOR SHARE`,
/// which a status change waits for; SQLite: the write transaction) and refuses a missing
/// or ended one.
async fn require_live_sessions(txn: &DatabaseTransaction, ids: &[SessionId]) -> Result<()> {
    let found = coding_sessions::Entity::find()
        .filter(coding_sessions::Column::Id.is_in(ids.iter().copied()))
        .lock_shared()
        .all(txn)
        .await?;
    for id in ids {
        let session = found
            .iter()
            .find(|s| s.id == *id)
            .ok_or_else(|| ForgeError::not_found("session", id))?;
        if !session.status.is_live() {
            return Err(ForgeError::invalid(
                "session_id",
                format!(
                    "session {id} is {}; jobs are enqueued on live sessions only",
                    session.status
                ),
            ));
        }
    }
    Ok(())
}

/// Enqueues one job (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a blank or
/// over-long `prompt`, `max_retries` outside `0..=MAX_RETRIES`, or a session that has
/// ended (`session_id`); [`ForgeError::NotFound`] for an unknown session.
#[tracing::instrument(skip_all, fields(entity = "job", op = "enqueue", session_id = %new.session_id))]
pub async fn enqueue<C>(db: &C, actor: Actor, new: NewJob) -> Result<coding_jobs::Model>
where
    C: Connection,
{
    let mut jobs = enqueue_many(db, actor, vec![new]).await?;
    jobs.pop()
        .ok_or_else(|| ForgeError::Db(sea_orm::DbErr::RecordNotInserted))
}

/// Enqueues `jobs` (of one or several sessions) in one transaction, with chunked multi-row
/// inserts, and returns them in the given order, which is also their claim order within a
/// priority (service only). All or nothing.
///
/// # Errors
/// As [`enqueue`], for the first job at fault; [`ForgeError::Validation`] (`jobs`) for
/// more than [`MAX_ENQUEUE`] jobs.
#[tracing::instrument(skip_all, fields(entity = "job", op = "enqueue_many", n = jobs.len()))]
pub async fn enqueue_many<C>(
    db: &C,
    actor: Actor,
    jobs: Vec<NewJob>,
) -> Result<Vec<coding_jobs::Model>>
where
    C: Connection,
{
    actor.require_service("enqueueing coding jobs")?;
    if jobs.len() > MAX_ENQUEUE {
        return Err(ForgeError::invalid(
            "jobs",
            format!("{} jobs, at most {MAX_ENQUEUE} per call", jobs.len()),
        ));
    }
    let mut sessions: Vec<SessionId> = jobs.iter().map(|j| j.session_id).collect();
    sessions.sort_unstable();
    sessions.dedup();
    // One microsecond apart, so the jobs of a call are claimed in the order given.
    let start = crate::now();
    let rows = jobs
        .into_iter()
        .zip(0..)
        .map(|(job, i)| new_row(job, start + TimeDelta::microseconds(i)))
        .collect::<Result<Vec<_>>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            require_live_sessions(txn, &sessions).await?;
            let mut out = Vec::with_capacity(rows.len());
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let chunk: Vec<_> = rows.by_ref().take(INSERT_CHUNK).collect();
                let mut inserted = coding_jobs::Entity::insert_many(chunk)
                    .exec_with_returning(txn)
                    .await?;
                inserted.sort_by_key(|j| (j.created_at, j.id));
                out.append(&mut inserted);
            }
            Ok(out)
        })
    })
    .await
}

/// The job `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = "job", op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: JobId) -> Result<Option<coding_jobs::Model>>
where
    C: Connection,
{
    scoped::find::<coding_jobs::Entity, C>(db, actor, id).await
}

/// The job `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not in one of `actor`'s sessions.
pub async fn get<C>(db: &C, actor: Actor, id: JobId) -> Result<coding_jobs::Model>
where
    C: Connection,
{
    scoped::get::<coding_jobs::Entity, C, _>(db, actor, id).await
}

/// The jobs `actor` may see (those of their own sessions; all for the service), oldest
/// first, one page at a time. A session that is not the user's lists as empty.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE`.
#[tracing::instrument(skip_all, fields(entity = "job", op = "list"))]
pub async fn list<C>(
    db: &C,
    actor: Actor,
    filter: JobFilter,
    request: PageRequest,
) -> Result<Page<coding_jobs::Model>>
where
    C: Connection,
{
    let select = visible_to(actor)
        .apply_if(filter.session_id, |q, s| {
            q.filter(coding_jobs::Column::SessionId.eq(s))
        })
        .apply_if(filter.status, |q, s| {
            q.filter(coding_jobs::Column::Status.eq(s))
        });
    pagination::fetch_page(
        db,
        actor,
        select,
        (coding_jobs::Column::CreatedAt, coding_jobs::Column::Id),
        Direction::OldestFirst,
        &request,
        |j| (j.created_at, j.id),
    )
    .await
}

/// How a one-statement service write reaches PostgreSQL. (On SQLite both routes are one
/// `BEGIN IMMEDIATE` transaction, which [`run_as`] retries while the database stays
/// locked; inside a caller's transaction both are a savepoint of it, see
/// [`scoped::rows`].)
///
/// Chosen by measurement: a probe of `examples/queue_bench.rs` ran every statement kind by
/// every route, taking turns (2,000 jobs per run, median of 5 rounds, 2 cores shared with
/// other builds; jobs/s as a multiple of the bare `SKIP LOCKED` baseline of the same
/// round, for 1 / 4 / 16 workers). The third way, [`run_as`] (`BEGIN`, `set_config`, the
/// statement prepared by the driver, `COMMIT`: four round trips), lost everywhere:
///
/// | statements | [`run_as`] | `OneMessage` | `Prepared` |
/// |---|---|---|---|
/// | claim + complete | 0.63 / 0.60 / 0.45 | 0.51 / 0.49 / 0.44 | 0.74 / 0.83 / 0.72 |
/// | claim (`Prepared`) + complete | 0.59 / 0.63 / 0.59 | 0.69 / 0.67 / 0.70 | 0.74 / 0.83 / 0.72 |
/// | claim_many(10) (`Prepared`) + complete_many | 3.28 / 4.28 / 3.12 | 4.62 / 4.61 / 3.17 | 4.62 / 4.68 / 3.73 |
/// | claim_many(50) + complete_many | 7.05 / 6.81 / 5.78 | 8.83 / 6.93 / 5.48 | 8.77 / 7.24 / 5.82 |
///
/// `OneMessage` saves three round trips but plans the statement on every call: planning
/// the claim takes about 0.13 ms, more than those round trips cost (`pgbench` on the same
/// server: the claim costs 0.08 ms prepared, 0.40 ms as a simple query). `Prepared` has
/// both the single round trip and the cached plan. What keeps a single claim + complete
/// below the bare baseline is the work the baseline does not do: the role and claims set
/// for each statement, the expired-lease branch of the claim, and the whole row returned
/// by both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// [`scoped::rows`]: `SET LOCAL ROLE …; SET LOCAL …; <statement>` as one message of the
    /// simple query protocol — one round trip, but with the values written into the text,
    /// so the statement is parsed and planned on every call. Nothing stays on the server.
    OneMessage,
    /// [`scoped::prepared_rows`]: `SET LOCAL ROLE …; SET LOCAL …; EXECUTE forge_…(<values>)`
    /// as one message, executing the statement prepared on that connection — one round
    /// trip, planned once per connection.
    Prepared,
}

/// Batches of at most this many jobs ([`claim_many`], [`complete_many`]) take
/// [`Route::Prepared`]. Every batch size is a statement of its own, prepared on each
/// connection that runs it; this bounds how many a connection keeps. A larger batch is
/// planned afresh each time ([`Route::OneMessage`]), which costs little per job and about
/// the same in all (the last row of the table at [`Route`]).
const PREPARE_UP_TO: usize = 32;

/// The route of a statement for a batch of `n` jobs (1 for the single-job calls).
fn route(n: usize) -> Route {
    if n <= PREPARE_UP_TO {
        Route::Prepared
    } else {
        Route::OneMessage
    }
}

/// Runs `stmt`, one statement returning rows (jobs, mostly), for the service
/// (`service_role` on PostgreSQL) by `route`.
async fn service_write<C, T>(db: &C, route: Route, stmt: Statement) -> Result<Vec<T>>
where
    C: Connection,
    T: FromQueryResult + Send + Sync,
{
    let rows = match route {
        Route::Prepared => scoped::prepared_rows(db, Actor::Service, Access::Write, stmt).await?,
        Route::OneMessage => scoped::rows(db, Actor::Service, Access::Write, stmt).await?,
    };
    rows.iter()
        .map(|row| Ok(T::from_query_result(row, "")?))
        .collect()
}

/// `update` as one statement for `backend` returning the rows it changed.
fn returning_jobs(update: UpdateMany<coding_jobs::Entity>, backend: DbBackend) -> Statement {
    let mut query = update.into_query();
    query.returning_all();
    backend.build(&query)
}

/// The claim statement for `backend`, claiming at most `limit` jobs.
///
/// Nothing that steers the plan is a parameter, so PostgreSQL plans the prepared statement
/// once and reuses that generic plan: with a bound `LIMIT` it would plan for a tenth of the
/// table, find that too dear and plan every execution anew (which costs more than running
/// it), and with a bound "now" in the `WHERE` it may do the same. So the limit is written
/// into the text (each distinct limit is one prepared statement) and on PostgreSQL
/// due-ness and lease expiry are judged by the database clock, `now()`. On SQLite `{now}`
/// is the bound application time.
fn claim_statement(backend: DbBackend, limit: u64, values: Vec<Value>) -> Statement {
    let sql = CLAIM_SQL
        .replace("{limit}", &limit.to_string())
        .replace("{pending}", JobStatus::Pending.as_str())
        .replace("{processing}", JobStatus::Processing.as_str())
        .replace("{failed}", JobStatus::Failed.as_str());
    let sql = match backend {
        DbBackend::Postgres => sql
            .replace("{lock}", " FOR UPDATE SKIP LOCKED")
            .replace("{now}", "now()"),
        _ => sql
            .replace("{lock}", "")
            .replace("{now}", "$1")
            .replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Claims up to `{limit}` jobs at `$1` for worker `$2` until `$3`; `$4` is the error of a
/// job whose attempts ran out.
///
/// The two kinds of claimable job are picked apart, each by its own index (pending and
/// due: `idx_coding_jobs_pending` in claim order; expired leases: `idx_coding_jobs_lease`,
/// longest expired first), so neither scan walks over the jobs in flight; the best
/// `limit` of both, in claim order, win. Rows locked but not picked are released when the
/// statement ends. (`status || ''` keeps PostgreSQL's planner off
/// `idx_coding_jobs_status_priority` for the expired branch: right after a burst of claims
/// its statistics may still say "no job is processing", and that index would then walk
/// every job in flight on each claim.) `CASE`s read the row before the update: an expired
/// lease is an attempt, and the last one fails the job instead. (`CAST(NULL AS
/// timestamptz)` gives the lease's `CASE` its type: `$3` may be an untyped literal, when
/// the values are written into the text, and `PREPARE` infers its type from there.)
///
/// Leaner variants measured no better (`pgbench`, prepared, 0.08 ms per claim either way,
/// within the noise of a shared machine): a `doomed` flag computed in the CTE instead of
/// the `CASE`s, and `UPDATE … FROM picked` instead of `IN`. The bare claim of the
/// benchmark's baseline costs about 0.06 ms: the difference is the expired-lease branch
/// and the whole row returned.
const CLAIM_SQL: &str = "\
WITH due AS MATERIALIZED (
    SELECT id, priority, created_at FROM coding_jobs
    WHERE status = '{pending}' AND run_after <= {now}
    ORDER BY priority DESC, created_at
    LIMIT {limit}{lock}
), expired AS MATERIALIZED (
    SELECT id, priority, created_at FROM coding_jobs
    WHERE locked_until < {now} AND status || '' = '{processing}'
    ORDER BY locked_until
    LIMIT {limit}{lock}
), picked AS MATERIALIZED (
    SELECT id FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) AS claimable
    ORDER BY priority DESC, created_at
    LIMIT {limit}
)
UPDATE coding_jobs SET
    status = CASE WHEN status = '{processing}' AND retry_count >= max_retries
                  THEN '{failed}' ELSE '{processing}' END,
    retry_count = CASE WHEN status = '{processing}' AND retry_count < max_retries
                       THEN retry_count + 1 ELSE retry_count END,
    locked_by = CASE WHEN status = '{processing}' AND retry_count >= max_retries
                     THEN locked_by ELSE $2 END,
    locked_until = CASE WHEN status = '{processing}' AND retry_count >= max_retries
                        THEN CAST(NULL AS timestamptz) ELSE $3 END,
    error_message = CASE WHEN status = '{processing}' AND retry_count >= max_retries
                         THEN $4 ELSE error_message END,
    completed_at = CASE WHEN status = '{processing}' AND retry_count >= max_retries
                        THEN $1 ELSE completed_at END,
    started_at = COALESCE(started_at, $1),
    updated_at = $1
WHERE id IN (SELECT id FROM picked)
RETURNING *";

/// Claims the next claimable job for `worker`, holding it for `lease` (service only).
/// `None` when nothing is claimable.
///
/// # Errors
/// As [`claim_many`].
pub async fn claim<C>(
    db: &C,
    actor: Actor,
    worker: &str,
    lease: Duration,
) -> Result<Option<coding_jobs::Model>>
where
    C: Connection,
{
    Ok(claim_many(db, actor, worker, lease, 1).await?.pop())
}

/// Claims up to `n` claimable jobs for `worker`, holding them for `lease` (service only),
/// in claim order. Fewer (or none) when fewer are claimable. Jobs whose lease ran out once
/// too often are failed on the way and not returned.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a blank or
/// over-long `worker`, a zero or longer than [`MAX_LEASE`] `lease`, or `n` outside
/// `1..=MAX_CLAIM`.
#[tracing::instrument(skip_all, fields(entity = "job", op = "claim", worker = %worker, n = n))]
pub async fn claim_many<C>(
    db: &C,
    actor: Actor,
    worker: &str,
    lease: Duration,
    n: u64,
) -> Result<Vec<coding_jobs::Model>>
where
    C: Connection,
{
    actor.require_service("claiming coding jobs")?;
    let worker = worker_name(worker)?;
    let lease = lease_delta("lease", lease)?;
    validate::in_range(
        "n",
        i64::try_from(n).unwrap_or(i64::MAX),
        1,
        MAX_CLAIM as i64,
    )?;
    let backend = db.get_database_backend();
    let mut claimed = Vec::new();
    loop {
        let want = n - claimed.len() as u64;
        let now = crate::now();
        let values = vec![
            now.into(),
            worker.clone().into(),
            (now + lease).into(),
            LEASE_EXHAUSTED.into(),
        ];
        let stmt = claim_statement(backend, want, values);
        let rows: Vec<coding_jobs::Model> = service_write(db, route(want as usize), stmt).await?;
        let picked = rows.len() as u64;
        claimed.extend(
            rows.into_iter()
                .filter(|j| j.status == JobStatus::Processing),
        );
        // Only jobs failed on the way leave a shortfall worth another round.
        if picked < want || claimed.len() as u64 >= n {
            break;
        }
    }
    // RETURNING gives no order: put them back into claim order.
    claimed.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.created_at, j.id));
    Ok(claimed)
}

/// The jobs `worker` holds: `id`, still processing, still locked by it.
///
/// (`status || ''` keeps PostgreSQL on the primary key. After an idle spell its statistics
/// say that no job is processing, and it would then rather read
/// `idx_coding_jobs_status_priority` for `status = 'processing'` and filter by id: a walk
/// over every job in flight, and over the dead entries every claim leaves there, on each
/// call.)
fn held_by(id: JobId, worker: &str) -> Condition {
    Condition::all()
        .add(coding_jobs::Column::Id.eq(id))
        .add(
            Expr::col(coding_jobs::Column::Status)
                .binary(BinOper::Custom("||"), "")
                .eq(JobStatus::Processing.as_str()),
        )
        .add(coding_jobs::Column::LockedBy.eq(worker))
}

/// The job an update guarded by [`held_by`] returned, or [`ForgeError::LeaseLost`].
fn held_or_lost(
    rows: Vec<coding_jobs::Model>,
    id: JobId,
    worker: String,
) -> Result<coding_jobs::Model> {
    rows.into_iter()
        .next()
        .ok_or_else(|| ForgeError::LeaseLost {
            entity: "job",
            id: id.to_string(),
            worker,
        })
}

/// Applies `update` to job `id` if `worker` still holds it.
async fn update_held<C: Connection>(
    db: &C,
    id: JobId,
    worker: String,
    update: UpdateMany<coding_jobs::Entity>,
) -> Result<coding_jobs::Model> {
    let stmt = returning_jobs(
        update.filter(held_by(id, &worker)),
        db.get_database_backend(),
    );
    held_or_lost(service_write(db, route(1), stmt).await?, id, worker)
}

/// An update of coding jobs stamped with `now`.
fn stamped(now: DateTime<Utc>) -> UpdateMany<coding_jobs::Entity> {
    coding_jobs::Entity::update_many().col_expr(coding_jobs::Column::UpdatedAt, Expr::value(now))
}

/// Extends `worker`'s lease on job `id` to `lease` from now (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a bad `worker` or
/// `lease`; [`ForgeError::LeaseLost`] when `worker` no longer holds the job (also for an
/// unknown job).
#[tracing::instrument(skip_all, fields(entity = "job", op = "heartbeat", id = %id))]
pub async fn heartbeat<C>(
    db: &C,
    actor: Actor,
    id: JobId,
    worker: &str,
    lease: Duration,
) -> Result<coding_jobs::Model>
where
    C: Connection,
{
    actor.require_service("extending a job lease")?;
    let worker = worker_name(worker)?;
    let lease = lease_delta("lease", lease)?;
    let now = crate::now();
    let update = stamped(now).col_expr(
        coding_jobs::Column::LockedUntil,
        Expr::value(Some(now + lease)),
    );
    update_held(db, id, worker, update).await
}

/// Completes job `id` with `result`, if `worker` holds it (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a bad `worker`;
/// [`ForgeError::LeaseLost`] when `worker` no longer holds the job (also for an unknown
/// job): it was claimed again, finished, or failed meanwhile, and stays as it is.
#[tracing::instrument(skip_all, fields(entity = "job", op = "complete", id = %id))]
pub async fn complete<C>(
    db: &C,
    actor: Actor,
    id: JobId,
    worker: &str,
    result: Json,
) -> Result<coding_jobs::Model>
where
    C: Connection,
{
    actor.require_service("completing a job")?;
    let worker = worker_name(worker)?;
    let result = validate::json_document("result", result)?;
    let now = crate::now();
    let update = finished(stamped(now), JobStatus::Completed, now)
        .col_expr(coding_jobs::Column::Result, Expr::value(Some(result)));
    update_held(db, id, worker, update).await
}

/// What [`complete_many`] did with the jobs it was given, each list in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletedMany {
    /// The jobs this call completed: `worker` held them, and they are `completed` now
    /// with their results.
    pub completed: Vec<JobId>,
    /// The jobs `worker` no longer held (their lease was taken over after it ran out, or
    /// they were finished or failed meanwhile, e.g. because their session ended; or they
    /// do not exist): left exactly as they are, as [`complete`] would have answered
    /// [`ForgeError::LeaseLost`] for each.
    pub lost: Vec<JobId>,
}

/// Completes a batch of jobs `worker` holds, each with its result, in one statement
/// (service only): the counterpart of [`claim_many`]. Each job is completed exactly as
/// [`complete`] would; a job `worker` no longer holds is left as it is and reported in
/// [`CompletedMany::lost`] instead of failing the call, so one lost lease does not cost the
/// worker the rest of its batch.
///
/// Every result is validated before anything is written; a refused call changes nothing.
/// The statement is `WITH done (job, output) AS (VALUES …) UPDATE coding_jobs … FROM done`,
/// guarded like [`complete`]'s: one round trip on a PostgreSQL pool, one `BEGIN IMMEDIATE`
/// transaction on SQLite.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a bad `worker`, and
/// (field `done`) for an empty batch, one of more than [`MAX_CLAIM`] jobs, a job given
/// twice, or a result [`complete`] would refuse (the reason names its index and job).
#[tracing::instrument(skip_all, fields(entity = "job", op = "complete_many", n = done.len()))]
pub async fn complete_many<C>(
    db: &C,
    actor: Actor,
    worker: &str,
    done: Vec<(JobId, Json)>,
) -> Result<CompletedMany>
where
    C: Connection,
{
    actor.require_service("completing jobs")?;
    let worker = worker_name(worker)?;
    if done.is_empty() || done.len() as u64 > MAX_CLAIM {
        return Err(ForgeError::invalid(
            "done",
            format!("{} jobs; 1 to {MAX_CLAIM} per call", done.len()),
        ));
    }
    let mut seen = std::collections::HashMap::with_capacity(done.len());
    let mut ids = Vec::with_capacity(done.len());
    let mut rows = Vec::with_capacity(done.len());
    for (index, (id, result)) in done.into_iter().enumerate() {
        if let Some(first) = seen.insert(id, index) {
            return Err(ForgeError::invalid(
                "done",
                format!("job {id} is given twice (at {first} and {index})"),
            ));
        }
        let result = validate::json_document("result", result).map_err(|err| match err {
            ForgeError::Validation { reason, .. } => ForgeError::invalid(
                "done",
                format!("the result at {index} (job {id}): {reason}"),
            ),
            other => other,
        })?;
        ids.push(id);
        rows.push((id, result));
    }
    let stmt = complete_many_statement(db.get_database_backend(), worker, crate::now(), rows);
    let done: std::collections::HashSet<JobId> =
        service_write::<_, CompletedJob>(db, route(ids.len()), stmt)
            .await?
            .into_iter()
            .map(|row| row.id)
            .collect();
    let (completed, lost) = ids.into_iter().partition(|id| done.contains(id));
    Ok(CompletedMany { completed, lost })
}

/// A row [`complete_many`]'s statement returns.
#[derive(FromQueryResult)]
struct CompletedJob {
    id: JobId,
}

/// [`complete_many`]'s statement: completes at `now` each job of `rows` that `worker`
/// holds, with its result, and returns the ids it completed. `$1` is `now`, `$2` the
/// worker, then an id and its result per job. (PostgreSQL needs the types of the `VALUES`
/// spelled out; SQLite takes the values as they are bound.)
fn complete_many_statement(
    backend: DbBackend,
    worker: String,
    now: DateTime<Utc>,
    rows: Vec<(JobId, Json)>,
) -> Statement {
    let (uuid, jsonb) = match backend {
        DbBackend::Postgres => ("::uuid", "::jsonb"),
        _ => ("", ""),
    };
    let mut values: Vec<Value> = Vec::with_capacity(2 + 2 * rows.len());
    values.push(now.into());
    values.push(worker.into());
    let mut list = String::with_capacity(24 * rows.len());
    for (id, result) in rows {
        let n = values.len() + 1;
        if n > 3 {
            list.push_str(", ");
        }
        list.push_str(&format!("(${n}{uuid}, ${}{jsonb})", n + 1));
        values.push(id.into());
        values.push(result.into());
    }
    let sql = format!(
        "WITH done (job, output) AS (VALUES {list}) \
         UPDATE coding_jobs SET status = '{completed}', result = output, completed_at = $1, \
         locked_until = NULL, updated_at = $1 \
         FROM done WHERE id = job AND status || '' = '{processing}' AND locked_by = $2 \
         RETURNING id",
        completed = JobStatus::Completed.as_str(),
        processing = JobStatus::Processing.as_str(),
    );
    let sql = match backend {
        DbBackend::Postgres => sql,
        _ => sql.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// `update` ending a job in `status` at `now`, lease released.
fn finished(
    update: UpdateMany<coding_jobs::Entity>,
    status: JobStatus,
    now: DateTime<Utc>,
) -> UpdateMany<coding_jobs::Entity> {
    update
        .col_expr(coding_jobs::Column::Status, Expr::value(status))
        .col_expr(coding_jobs::Column::CompletedAt, Expr::value(Some(now)))
        .col_expr(
            coding_jobs::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
}

/// Fails `worker`'s attempt at job `id` with `error` (service only). While attempts remain
/// (`retry_count < max_retries`) the job goes back to `pending`, claimable after
/// [`RetryPolicy::backoff`], with `retry_count + 1`; otherwise it is `failed` for good.
/// Either way `error_message` is `error`.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a bad `worker`,
/// a blank or over-long `error`, or a `policy` whose `base` exceeds its `max` or whose `max`
/// exceeds [`MAX_BACKOFF`]; [`ForgeError::LeaseLost`] when `worker` no longer holds the
/// job (also for an unknown job).
#[tracing::instrument(skip_all, fields(entity = "job", op = "fail", id = %id))]
pub async fn fail<C>(
    db: &C,
    actor: Actor,
    id: JobId,
    worker: &str,
    error: &str,
    policy: RetryPolicy,
) -> Result<coding_jobs::Model>
where
    C: Connection,
{
    actor.require_service("failing a job")?;
    let worker = worker_name(worker)?;
    let error = validate::text("error", error, MAX_TEXT)?;
    let policy = policy.checked()?;
    let now = crate::now();
    let retry_count = Expr::col(coding_jobs::Column::RetryCount);
    let attempts_left = || {
        retry_count
            .clone()
            .lt(Expr::col(coding_jobs::Column::MaxRetries))
    };
    // One statement whatever the attempt: each `CASE` reads the row as the update finds
    // it, so the back-off and the outcome always match the attempt being failed.
    let update = stamped(now)
        .col_expr(coding_jobs::Column::ErrorMessage, Expr::value(Some(error)))
        .col_expr(
            coding_jobs::Column::Status,
            Expr::case(attempts_left(), Expr::value(JobStatus::Pending))
                .finally(Expr::value(JobStatus::Failed))
                .into(),
        )
        .col_expr(
            coding_jobs::Column::RetryCount,
            Expr::case(attempts_left(), retry_count.clone().add(1))
                .finally(retry_count.clone())
                .into(),
        )
        .col_expr(coding_jobs::Column::RunAfter, policy.run_after(now))
        .col_expr(
            coding_jobs::Column::LockedBy,
            Expr::case(attempts_left(), Expr::value(Option::<String>::None))
                .finally(Expr::col(coding_jobs::Column::LockedBy))
                .into(),
        )
        .col_expr(
            coding_jobs::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            coding_jobs::Column::CompletedAt,
            Expr::case(attempts_left(), Expr::col(coding_jobs::Column::CompletedAt))
                .finally(Expr::value(Some(now)))
                .into(),
        );
    update_held(db, id, worker, update).await
}

/// Hands job `id`, which `worker` holds, back to the queue without spending an attempt
/// (service only): for a worker that stops before it did the work (it is shutting down,
/// say). The job is `pending` again, lease cleared (`locked_by` and `locked_until`), and
/// claimable at once in its old place (its `run_after` has passed: it was claimed).
/// `retry_count` stays as it is: a claim of a pending job counts no attempt, and the
/// attempt a takeover of a run-out lease counted was the dead holder's, which stays
/// counted — so the next claim is exactly the attempt this one would have been.
/// `started_at` and `error_message` stay too.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a bad `worker`;
/// [`ForgeError::LeaseLost`] when `worker` does not hold the job (also for an unknown
/// job): it was taken over, finished or failed meanwhile, and stays as it is.
#[tracing::instrument(skip_all, fields(entity = "job", op = "release", id = %id))]
pub async fn release<C>(db: &C, actor: Actor, id: JobId, worker: &str) -> Result<coding_jobs::Model>
where
    C: Connection,
{
    actor.require_service("releasing a job")?;
    let worker = worker_name(worker)?;
    let update = stamped(crate::now())
        .col_expr(coding_jobs::Column::Status, Expr::value(JobStatus::Pending))
        .col_expr(
            coding_jobs::Column::LockedBy,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            coding_jobs::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        );
    update_held(db, id, worker, update).await
}

/// The `error_message` of a job [`cancel`]led before it ran.
pub const CANCELLED: &str = "cancelled";

/// Cancels pending job `id` (service only): it is `failed` with `error_message`
/// [`CANCELLED`] and `completed_at` set, and never claimed. A job a worker holds is
/// not taken away from it (fail it through the worker, or end its session).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::NotFound`] for an unknown job;
/// [`ForgeError::InvalidTransition`] (to `failed`) when the job is not pending: it is
/// processing, completed or failed already. A refused cancel changes nothing.
#[tracing::instrument(skip_all, fields(entity = "job", op = "cancel", id = %id))]
pub async fn cancel<C>(db: &C, actor: Actor, id: JobId) -> Result<coding_jobs::Model>
where
    C: Connection,
{
    actor.require_service("cancelling a job")?;
    let now = crate::now();
    let update = finished(stamped(now), JobStatus::Failed, now)
        .col_expr(
            coding_jobs::Column::ErrorMessage,
            Expr::value(Some(CANCELLED.to_owned())),
        )
        .filter(coding_jobs::Column::Id.eq(id))
        .filter(coding_jobs::Column::Status.eq(JobStatus::Pending));
    let stmt = returning_jobs(update, db.get_database_backend());
    if let Some(job) = service_write(db, route(1), stmt).await?.pop() {
        return Ok(job);
    }
    // Refused: a second statement, only to say why.
    let job = get(db, Actor::Service, id).await?;
    Err(ForgeError::InvalidTransition {
        entity: "job",
        from: job.status.to_string(),
        to: JobStatus::Failed.to_string(),
    })
}

/// Deletes completed and failed jobs that finished more than `older_than` ago, at most
/// `batch_size` per transaction, until none is left; returns how many it deleted
/// (service only). Short transactions keep locks and WAL bursts small on a busy queue.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a `batch_size`
/// outside `1..=100_000` or an `older_than` too large to subtract from now.
#[tracing::instrument(skip_all, fields(entity = "job", op = "purge_finished"))]
pub async fn purge_finished<C>(
    db: &C,
    actor: Actor,
    older_than: Duration,
    batch_size: u64,
) -> Result<u64>
where
    C: Connection,
{
    actor.require_service("purging finished jobs")?;
    let batch = validate::in_range(
        "batch_size",
        i64::try_from(batch_size).unwrap_or(i64::MAX),
        1,
        100_000,
    )?;
    let cutoff = TimeDelta::from_std(older_than)
        .ok()
        .and_then(|age| crate::now().checked_sub_signed(age))
        .ok_or_else(|| ForgeError::invalid("older_than", "is too large"))?;
    let cutoff = validate::storable_instant("older_than", cutoff)?;
    let mut total = 0;
    loop {
        let done = run_as(db, actor, Access::Write, move |txn| {
            Box::pin(async move { purge_batch(txn, cutoff, batch).await })
        })
        .await?;
        total += done;
        if done < batch_size {
            return Ok(total);
        }
    }
}

/// Deletes one batch of finished jobs older than `cutoff`.
async fn purge_batch(txn: &DatabaseTransaction, cutoff: DateTime<Utc>, batch: i64) -> Result<u64> {
    let doomed = Query::select()
        .column(coding_jobs::Column::Id)
        .from(coding_jobs::Entity)
        .and_where(coding_jobs::Column::Status.is_in([JobStatus::Completed, JobStatus::Failed]))
        .and_where(coding_jobs::Column::CompletedAt.lt(cutoff))
        .limit(u64::try_from(batch).unwrap_or(1))
        .to_owned();
    // No SKIP LOCKED here: however often the planner evaluates the subquery, it sees the
    // same snapshot and the same at most `batch` rows.
    let done = coding_jobs::Entity::delete_many()
        .filter(coding_jobs::Column::Id.in_subquery(doomed))
        .exec(txn)
        .await?;
    Ok(done.rows_affected)
}

/// On SQLite: fails the pending and in-flight jobs of ended sessions with
/// "session <state> before the job finished" — of session `id`, or of every session in
/// state `ended` when `id` is `None` (after a bulk expiry). Call it in the transaction that
/// ended the session(s). On PostgreSQL it does nothing: the trigger
/// `coding_sessions_fail_jobs_when_ended` has already done the same within the statement
/// that changed the status (it also runs for users, who may not update jobs).
pub(crate) async fn fail_jobs_of_ended_sessions(
    txn: &DatabaseTransaction,
    id: Option<SessionId>,
    ended: SessionStatus,
) -> Result<()> {
    if txn.get_database_backend() == DbBackend::Postgres || ended.is_live() {
        return Ok(());
    }
    let sessions = Query::select()
        .column(coding_sessions::Column::Id)
        .from(coding_sessions::Entity)
        .and_where(coding_sessions::Column::Status.eq(ended))
        .and_where_option(id.map(|id| coding_sessions::Column::Id.eq(id)))
        .to_owned();
    let now = crate::now();
    finished(stamped(now), JobStatus::Failed, now)
        .col_expr(
            coding_jobs::Column::ErrorMessage,
            Expr::value(Some(format!("session {ended} before the job finished"))),
        )
        .filter(coding_jobs::Column::Status.is_in([JobStatus::Pending, JobStatus::Processing]))
        .filter(coding_jobs::Column::SessionId.in_subquery(sessions))
        .exec(txn)
        .await?;
    Ok(())
}
