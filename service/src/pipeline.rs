//! Pipeline runs: a pipeline of bots turning a user's project specification into
//! artifacts, logging bot events as it goes (SCHEMA.md "Pipeline runs", seeds 000 and 001;
//! tables `jobs`, `job_events`, `artifacts`).
//!
//! Invariants:
//! - A run is started by its owner (a user starts runs only for themselves; the service
//!   for any owner) with a `project_spec` that is a JSON object of at most 64 KiB. Its id
//!   is chosen by Forge: readable and unique, `run-<yyyymmdd>-<8 random base32
//!   characters>` (40 random bits; a clash with an existing id is retried with a new one).
//! - `status` moves only along pending → running → completed | failed and pending |
//!   running → cancelled; nothing leaves completed, failed or cancelled. [`mark_running`],
//!   [`complete`] and [`fail`] are the service's (the bots'), [`cancel`] is the owner's or
//!   the service's. Each is one conditional `UPDATE … WHERE status IN (<allowed
//!   sources>)`, so of racing transitions exactly one wins and the others get
//!   [`ForgeError::InvalidTransition`] naming the state they found. The database holds
//!   the same rule for every writer (`forge:transition:run:<from>:<to>`) and sets
//!   `started_at` on entering `running` and `completed_at` on entering an end state;
//!   `error_message` is set with `failed` only.
//! - Events and artifacts are written by the service only, and only while the run is
//!   pending or running. Decision (the seeds leave it open): once a run has ended its log
//!   and its artifact list are closed and final, so a reader that sees the run ended and
//!   reads once more has everything; a late write is refused with
//!   [`ForgeError::InvalidTransition`] (from the run's state). Writes lock the run row
//!   first, so the check holds under races with a transition.
//! - A run's events are ordered by `(created_at, id)`. Appends to one run are serialised
//!   on the run row, and each takes a `created_at` strictly after the run's last event,
//!   so the order is the commit order: a reader paging with [`events`] never skips an
//!   event appended meanwhile, and one bot's events read back in the order it appended
//!   them.
//! - `owner_id` of an event or artifact is the run's owner (the database sets or checks
//!   it). A user sees only their own runs, events and artifacts; another user's run is
//!   [`ForgeError::NotFound`] through every function here, exactly like a missing one (on
//!   PostgreSQL the row-level security policies hide it too).
//! - [`status`] (the seeds' `get-pipeline-status`) reads in a fixed number of queries,
//!   however many events the run has: the run, one aggregate query over its events (the
//!   count and the latest event per bot, with window functions: the same SQL on both
//!   backends), and its artifacts — 3 statements (on PostgreSQL plus the one that enters
//!   the actor's context).

use chrono::{DateTime, TimeDelta, Utc};
use forge_entity::artifacts;
use forge_entity::ids::{ArtifactId, ProfileId, RunEventId, RunId};
use forge_entity::pipeline_events;
use forge_entity::pipeline_runs::{self, RunStatus};
use sea_orm::sea_query::{Expr, Func, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Set,
    Statement, Value,
};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Cursor, Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::{profiles, validate};

/// Longest run id (SCHEMA.md), in characters.
pub const MAX_RUN_ID: usize = 200;
/// Longest bot name, event type and artifact kind, in characters.
const MAX_NAME: usize = 200;
/// Longest artifact URL, in characters.
const MAX_URL: usize = 2048;
/// Longest content type, in characters.
const MAX_CONTENT_TYPE: usize = 255;
/// Longest error message of a failed run, in characters.
const MAX_ERROR: usize = 10_000;
/// How many fresh run ids [`start`] tries when one is taken.
const RUN_ID_ATTEMPTS: u32 = 5;
/// The characters of a run id's random part: lower-case Crockford base32 (no i, l, o, u).
const RUN_ID_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

const ENTITY: &str = "run";

/// A run to start.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    /// The owner; a user starts runs only for themselves.
    pub owner: ProfileId,
    /// What to build: a JSON object of at most 64 KiB.
    pub project_spec: Json,
}

impl NewRun {
    /// A run for `owner` building `project_spec`.
    pub fn new(owner: ProfileId, project_spec: Json) -> Self {
        Self {
            owner,
            project_spec,
        }
    }
}

/// An event a bot appends to a run.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRunEvent {
    /// The bot reporting; trimmed, not blank, at most 200 characters.
    pub bot_name: String,
    /// What happened (`started`, `progress`, …); trimmed, not blank, at most 200 characters.
    pub event_type: String,
    /// Free-form JSON (at most 64 KiB); `None` or JSON `null` store SQL `NULL`.
    pub payload: Option<Json>,
}

impl NewRunEvent {
    /// An event of `bot_name` of type `event_type` with `payload`.
    pub fn new(
        bot_name: impl Into<String>,
        event_type: impl Into<String>,
        payload: Option<Json>,
    ) -> Self {
        Self {
            bot_name: bot_name.into(),
            event_type: event_type.into(),
            payload,
        }
    }
}

/// An artifact a bot registers for a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewArtifact {
    /// What it is (`zip`, `file`, …); trimmed, not blank, at most 200 characters.
    pub kind: String,
    /// Where to fetch it; trimmed, not blank, at most 2048 characters.
    pub url: Option<String>,
    /// Free-form JSON metadata (at most 64 KiB); JSON `null` stores SQL `NULL`.
    pub meta: Option<Json>,
    /// Its size in bytes, at least 0.
    pub file_size: Option<i64>,
    /// Its MIME type; trimmed, not blank, at most 255 characters.
    pub content_type: Option<String>,
    /// `sha256:` followed by 64 lower-case hex digits.
    pub checksum: Option<String>,
}

impl NewArtifact {
    /// An artifact of `kind` with nothing else known yet.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            ..Self::default()
        }
    }
}

/// Which runs [`list`] returns. `None` fields do not filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this owner's runs. A user always lists their own only, so naming someone else
    /// gives an empty list; for the service `None` means every owner.
    pub owner: Option<ProfileId>,
    /// Only runs in this state.
    pub status: Option<RunStatus>,
}

/// A run at a glance (the seeds' `get-pipeline-status`), read by [`status`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PipelineStatus {
    /// The run.
    pub run: pipeline_runs::Model,
    /// How many events the run has.
    pub event_count: u64,
    /// Each bot's latest event, ordered by bot name.
    pub latest_event_per_bot: Vec<pipeline_events::Model>,
    /// The run's artifacts, oldest first.
    pub artifacts: Vec<artifacts::Model>,
}

/// Runs visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<pipeline_runs::Entity> {
    scoped::owned_by(actor, pipeline_runs::Column::OwnerId)
}

impl Scoped for pipeline_runs::Entity {
    const NAME: &'static str = ENTITY;

    fn key() -> Self::Column {
        pipeline_runs::Column::RunId
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

/// Run events visible to `actor`: those of their own runs, or all for the service.
pub fn events_visible_to(actor: Actor) -> Select<pipeline_events::Entity> {
    let select = pipeline_events::Entity::find();
    match actor {
        Actor::User(uid) => select.filter(pipeline_events::Column::OwnerId.eq(uid)),
        Actor::Service => select,
    }
}

/// Artifacts visible to `actor`: those of their own runs, or all for the service.
pub fn artifacts_visible_to(actor: Actor) -> Select<artifacts::Entity> {
    let select = artifacts::Entity::find();
    match actor {
        Actor::User(uid) => select.filter(artifacts::Column::OwnerId.eq(uid)),
        Actor::Service => select,
    }
}

/// The states from which a run may move to `to` (SCHEMA.md, as
/// [`RunStatus::can_transition_to`] says).
fn sources(to: RunStatus) -> Vec<RunStatus> {
    RunStatus::ALL
        .iter()
        .copied()
        .filter(|from| from.can_transition_to(to))
        .collect()
}

/// A caller's run id, refused when it could not name a stored run's id at all (a NUL
/// character, which PostgreSQL cannot even compare, or more than [`MAX_RUN_ID`]
/// characters). A blank one simply names no run.
fn checked_run_id(run_id: &RunId) -> Result<RunId> {
    validate::no_nul("run_id", run_id.as_str())?;
    let len = run_id.as_str().chars().count();
    if len > MAX_RUN_ID {
        return Err(ForgeError::invalid(
            "run_id",
            format!("is {len} characters long, at most {MAX_RUN_ID} allowed"),
        ));
    }
    Ok(run_id.clone())
}

/// A fresh run id for a run started at `at`: `run-<yyyymmdd>-<8 base32 characters>`.
fn new_run_id(at: DateTime<Utc>) -> String {
    // Bytes 10..16 of a v4 UUID are all random; take 40 bits of them.
    let bytes = Uuid::new_v4().into_bytes();
    let mut bits = bytes[10..15]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut suffix = String::with_capacity(8);
    for _ in 0..8 {
        suffix.push(char::from(RUN_ID_ALPHABET[(bits & 31) as usize]));
        bits >>= 5;
    }
    format!("run-{}-{suffix}", at.format("%Y%m%d"))
}

/// A 128-bit digest (FNV-1a) of a run id, the key a page [`Cursor`] carries for a run:
/// cursors hold a UUID, runs have a text key.
fn run_key(run_id: &str) -> Uuid {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let hash = run_id
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME));
    Uuid::from_u128(hash)
}

/// The instant and key a cursor names, read from its text form (see
/// [`crate::pagination::Cursor`]: 16 hex digits of nanoseconds, then the UUID).
fn cursor_parts(cursor: &Cursor) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || ForgeError::invalid("cursor", "not a cursor returned by a previous page");
    let text = cursor.to_string();
    let nanos = text
        .get(..16)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(bad)?;
    let key = text
        .get(16..)
        .and_then(|hex| Uuid::parse_str(hex).ok())
        .ok_or_else(bad)?;
    Ok((DateTime::from_timestamp_nanos(nanos), key))
}

/// The run `run_id` as `actor` sees it, or [`ForgeError::NotFound`].
async fn fetch(
    txn: &DatabaseTransaction,
    actor: Actor,
    run_id: &RunId,
) -> Result<pipeline_runs::Model> {
    visible_to(actor)
        .filter(pipeline_runs::Column::RunId.eq(run_id.as_str()))
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found(ENTITY, run_id))
}

/// `project_spec` checked: a JSON object of at most 64 KiB, no NUL character.
fn project_spec(spec: Json) -> Result<Json> {
    if !spec.is_object() {
        return Err(ForgeError::invalid("project_spec", "must be a JSON object"));
    }
    validate::json_document("project_spec", spec)
}

/// An optional JSON document checked; JSON `null` becomes `None` (SQL `NULL`).
fn optional_json(field: &'static str, value: Option<Json>) -> Result<Option<Json>> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(doc) => validate::json_document(field, doc).map(Some),
    }
}

/// `sha256:` followed by 64 lower-case hex digits.
fn checksum(value: Option<String>) -> Result<Option<String>> {
    let Some(value) = value else {
        return Ok(None);
    };
    if !artifacts::is_sha256_checksum(&value) {
        return Err(ForgeError::invalid(
            "checksum",
            "must be `sha256:` followed by 64 lower-case hex digits",
        ));
    }
    Ok(Some(value))
}

/// Starts a run (status `pending`) for `new.owner`, with an id chosen by Forge.
///
/// # Errors
/// [`ForgeError::NotFound`] (`"profile"`) when a user starts a run for someone else;
/// [`ForgeError::Validation`] (`project_spec`) for a spec that is not a JSON object, holds a
/// NUL character, is nested too deeply or is over 64 KiB; [`ForgeError::NotFound`]
/// (`"profile"`) when the owner does not exist.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "start"))]
pub async fn start<C>(db: &C, actor: Actor, new: NewRun) -> Result<pipeline_runs::Model>
where
    C: Connection,
{
    if actor.user_id().is_some_and(|uid| uid != new.owner) {
        // Someone else's profile looks missing, like any row of theirs.
        return Err(ForgeError::not_found("profile", new.owner));
    }
    let owner = new.owner;
    let spec = project_spec(new.project_spec)?;
    let mut attempt = 1;
    loop {
        // Whole microseconds (see `crate::now`), so a page cursor names the row exactly.
        let now = crate::now();
        let row = pipeline_runs::ActiveModel {
            run_id: Set(RunId::new(new_run_id(now))),
            project_spec: Set(spec.clone()),
            owner_id: Set(owner),
            status: Set(RunStatus::Pending),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        let started = run_as(db, actor, Access::Write, move |txn| {
            Box::pin(async move {
                profiles::visible_to(actor)
                    .filter(forge_entity::profiles::Column::Id.eq(owner))
                    .one(txn)
                    .await?
                    .ok_or_else(|| ForgeError::not_found("profile", owner))?;
                Ok(row.insert(txn).await?)
            })
        })
        .await;
        match started {
            // The id is taken (40 random bits a day): try another one.
            Err(ForgeError::Conflict { .. }) if attempt < RUN_ID_ATTEMPTS => attempt += 1,
            started => return started,
        }
    }
}

/// The run `run_id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Validation`] (`run_id`) for an id with a NUL character or over 200
/// characters; [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "find", run_id = %run_id))]
pub async fn find<C>(db: &C, actor: Actor, run_id: &RunId) -> Result<Option<pipeline_runs::Model>>
where
    C: Connection,
{
    let run_id = checked_run_id(run_id)?;
    scoped::find::<pipeline_runs::Entity, C>(db, actor, run_id).await
}

/// The run `run_id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s;
/// [`ForgeError::Validation`] (`run_id`) as for [`find`].
pub async fn get<C>(db: &C, actor: Actor, run_id: &RunId) -> Result<pipeline_runs::Model>
where
    C: Connection,
{
    let run_id = checked_run_id(run_id)?;
    scoped::get::<pipeline_runs::Entity, C, _>(db, actor, run_id).await
}

/// `actor`'s runs (every owner's for the service, unless `filter` names one), newest
/// first by `(created_at, run_id)`, one page at a time.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE` or a cursor
/// that no page returned.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "list"))]
pub async fn list<C>(
    db: &C,
    actor: Actor,
    filter: RunFilter,
    request: PageRequest,
) -> Result<Page<pipeline_runs::Model>>
where
    C: Connection,
{
    use pipeline_runs::Column;
    let size = request.page_size()?;
    let after = request.after.as_ref().map(cursor_parts).transpose()?;
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            let base = visible_to(actor)
                .apply_if(filter.owner, |q, o| q.filter(Column::OwnerId.eq(o)))
                .apply_if(filter.status, |q, s| q.filter(Column::Status.eq(s)));
            let mut select = base
                .clone()
                .order_by_desc(Column::CreatedAt)
                .order_by_desc(Column::RunId)
                .limit(size + 1);
            if let Some((at, key)) = after {
                // The cursor carries the last run's instant and a digest of its id: find
                // that run among the (almost always one) runs created at that instant.
                let tied: Vec<RunId> = base
                    .select_only()
                    .column(Column::RunId)
                    .filter(Column::CreatedAt.eq(at))
                    .into_tuple()
                    .all(txn)
                    .await?;
                let beyond = match tied.into_iter().find(|id| run_key(id.as_str()) == key) {
                    Some(last) => Condition::any().add(Column::CreatedAt.lt(at)).add(
                        Condition::all()
                            .add(Column::CreatedAt.eq(at))
                            .add(Column::RunId.lt(last)),
                    ),
                    // The run is gone (its owner was deleted): go on after its instant.
                    None => Condition::all().add(Column::CreatedAt.lt(at)),
                };
                select = select.filter(beyond);
            }
            let rows = select.all(txn).await?;
            Ok(pagination::page(rows, size, |r| {
                (r.created_at, run_key(r.run_id.as_str()))
            }))
        })
    })
    .await
}

/// Moves run `run_id` to `to` with one conditional update, returning the changed run.
async fn transition<C>(
    db: &C,
    actor: Actor,
    run_id: &RunId,
    to: RunStatus,
    error_message: Option<String>,
) -> Result<pipeline_runs::Model>
where
    C: Connection,
{
    use pipeline_runs::Column;
    let run_id = checked_run_id(run_id)?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let mut update = pipeline_runs::Entity::update_many()
                .col_expr(Column::Status, Expr::value(to))
                .filter(Column::RunId.eq(run_id.as_str()))
                .filter(Column::Status.is_in(sources(to)));
            if let Some(uid) = actor.user_id() {
                update = update.filter(Column::OwnerId.eq(uid));
            }
            if let Some(message) = error_message {
                update = update.col_expr(Column::ErrorMessage, Expr::value(message));
            }
            // On PostgreSQL the database keeps `updated_at` (and a user may write only
            // `status`); on SQLite it is written here.
            if txn.get_database_backend() != DbBackend::Postgres {
                update = update.col_expr(Column::UpdatedAt, Expr::value(crate::now()));
            }
            let changed = update.exec(txn).await?.rows_affected;
            // Read back rather than `RETURNING`: on SQLite the timestamps are set by
            // `AFTER` triggers, which `RETURNING` does not see.
            let now = fetch(txn, actor, &run_id).await?;
            if changed == 0 {
                return Err(ForgeError::InvalidTransition {
                    entity: ENTITY,
                    from: now.status.to_string(),
                    to: to.to_string(),
                });
            }
            Ok(now)
        })
    })
    .await
}

/// Marks a pending run `running` (service only); the database sets `started_at`.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::NotFound`] for an unknown run;
/// [`ForgeError::InvalidTransition`] when the run is not pending (naming its state).
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "mark_running", run_id = %run_id))]
pub async fn mark_running<C>(db: &C, actor: Actor, run_id: &RunId) -> Result<pipeline_runs::Model>
where
    C: Connection,
{
    actor.require_service("marking a run running")?;
    transition(db, actor, run_id, RunStatus::Running, None).await
}

/// Completes a running run (service only); the database sets `completed_at`.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::NotFound`] for an unknown run;
/// [`ForgeError::InvalidTransition`] when the run is not running.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "complete", run_id = %run_id))]
pub async fn complete<C>(db: &C, actor: Actor, run_id: &RunId) -> Result<pipeline_runs::Model>
where
    C: Connection,
{
    actor.require_service("completing a run")?;
    transition(db, actor, run_id, RunStatus::Completed, None).await
}

/// Fails a running run with `error` (service only), stored as `error_message`; the
/// database sets `completed_at`.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] (`error_message`) for
/// a blank error, one over 10,000 characters or with a NUL character;
/// [`ForgeError::NotFound`] for an unknown run; [`ForgeError::InvalidTransition`] when the
/// run is not running.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "fail", run_id = %run_id))]
pub async fn fail<C>(
    db: &C,
    actor: Actor,
    run_id: &RunId,
    error: &str,
) -> Result<pipeline_runs::Model>
where
    C: Connection,
{
    actor.require_service("failing a run")?;
    let error = validate::text("error_message", error, MAX_ERROR)?;
    transition(db, actor, run_id, RunStatus::Failed, Some(error)).await
}

/// Cancels a pending or running run (its owner, or the service); the database sets
/// `completed_at`.
///
/// # Errors
/// [`ForgeError::NotFound`] when the run does not exist or is not `actor`'s;
/// [`ForgeError::InvalidTransition`] when it has already ended.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "cancel", run_id = %run_id))]
pub async fn cancel<C>(db: &C, actor: Actor, run_id: &RunId) -> Result<pipeline_runs::Model>
where
    C: Connection,
{
    transition(db, actor, run_id, RunStatus::Cancelled, None).await
}

/// Locks run `run_id` against concurrent writes to its log and state changes until the
/// transaction ends, and refuses it unless it is pending or running.
async fn open_run(
    txn: &DatabaseTransaction,
    run_id: &RunId,
    what: &str,
) -> Result<pipeline_runs::Model> {
    let run = pipeline_runs::Entity::find_by_id(run_id.to_owned())
        .lock(LockType::NoKeyUpdate)
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found(ENTITY, run_id))?;
    if run.status.is_final() {
        return Err(ForgeError::InvalidTransition {
            entity: ENTITY,
            from: run.status.to_string(),
            to: format!("a new {what}"),
        });
    }
    Ok(run)
}

/// The `created_at` of the next event of run `run_id`: now, but strictly after the run's
/// last event (appends to the run are serialised, see [`open_run`]).
async fn next_event_instant(txn: &DatabaseTransaction, run_id: &RunId) -> Result<DateTime<Utc>> {
    let last: Option<Option<DateTime<Utc>>> = pipeline_events::Entity::find()
        .select_only()
        .column_as(
            Expr::from(Func::max(Expr::col(pipeline_events::Column::CreatedAt))),
            "last",
        )
        .filter(pipeline_events::Column::RunId.eq(run_id.as_str()))
        .into_tuple()
        .one(txn)
        .await?;
    let now = crate::now();
    Ok(match last.flatten() {
        Some(last) if last >= now => last + TimeDelta::microseconds(1),
        _ => now,
    })
}

/// Appends an event to run `run_id` (service only: the bots).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a blank or
/// over-long `bot_name` or `event_type`, text with a NUL character, or a `payload` with a
/// NUL character, nested too deeply or over 64 KiB; [`ForgeError::NotFound`] for an
/// unknown run; [`ForgeError::InvalidTransition`] when the run has ended (completed,
/// failed or cancelled).
#[tracing::instrument(skip_all, fields(entity = "run_event", op = "append", run_id = %run_id))]
pub async fn append_event<C>(
    db: &C,
    actor: Actor,
    run_id: &RunId,
    event: NewRunEvent,
) -> Result<pipeline_events::Model>
where
    C: Connection,
{
    actor.require_service("appending run events")?;
    let run_id = checked_run_id(run_id)?;
    let bot_name = validate::text("bot_name", &event.bot_name, MAX_NAME)?;
    let event_type = validate::text("event_type", &event.event_type, MAX_NAME)?;
    let payload = optional_json("payload", event.payload)?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let run = open_run(txn, &run_id, "event").await?;
            let created_at = next_event_instant(txn, &run_id).await?;
            Ok(pipeline_events::ActiveModel {
                id: Set(RunEventId::new()),
                run_id: Set(run_id),
                bot_name: Set(bot_name),
                event_type: Set(event_type),
                payload: Set(payload),
                owner_id: Set(run.owner_id),
                created_at: Set(created_at),
            }
            .insert(txn)
            .await?)
        })
    })
    .await
}

/// Registers an artifact of run `run_id` (service only: the bots). Its owner is the
/// run's.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a blank or
/// over-long `kind`, `url` or `content_type`, text with a NUL character, a `meta`
/// document refused as a payload is, a negative `file_size`, or a `checksum` that is not
/// `sha256:` and 64 lower-case hex digits; [`ForgeError::NotFound`] for an unknown run;
/// [`ForgeError::InvalidTransition`] when the run has ended.
#[tracing::instrument(skip_all, fields(entity = "artifact", op = "add", run_id = %run_id))]
pub async fn add_artifact<C>(
    db: &C,
    actor: Actor,
    run_id: &RunId,
    artifact: NewArtifact,
) -> Result<artifacts::Model>
where
    C: Connection,
{
    actor.require_service("registering artifacts")?;
    let run_id = checked_run_id(run_id)?;
    let kind = validate::text("kind", &artifact.kind, MAX_NAME)?;
    let url = validate::optional_text("url", artifact.url.as_deref(), MAX_URL)?;
    let content_type = validate::optional_text(
        "content_type",
        artifact.content_type.as_deref(),
        MAX_CONTENT_TYPE,
    )?;
    let meta = optional_json("meta", artifact.meta)?;
    let file_size = artifact
        .file_size
        .map(|size| validate::in_range("file_size", size, 0, i64::MAX))
        .transpose()?;
    let checksum = checksum(artifact.checksum)?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let run = open_run(txn, &run_id, "artifact").await?;
            Ok(artifacts::ActiveModel {
                id: Set(ArtifactId::new()),
                run_id: Set(run_id),
                kind: Set(kind),
                url: Set(url),
                meta: Set(meta),
                owner_id: Set(run.owner_id),
                file_size: Set(file_size),
                content_type: Set(content_type),
                checksum: Set(checksum),
                created_at: Set(crate::now()),
            }
            .insert(txn)
            .await?)
        })
    })
    .await
}

/// The events of run `run_id`, oldest first (the order they were appended in), one page
/// at a time (the seeds' `get-job-events`).
///
/// # Errors
/// [`ForgeError::NotFound`] when the run does not exist or is not `actor`'s;
/// [`ForgeError::Validation`] for a bad `run_id`, page size or cursor.
#[tracing::instrument(skip_all, fields(entity = "run_event", op = "list", run_id = %run_id))]
pub async fn events<C>(
    db: &C,
    actor: Actor,
    run_id: &RunId,
    request: PageRequest,
) -> Result<Page<pipeline_events::Model>>
where
    C: Connection,
{
    use pipeline_events::Column;
    let run_id = checked_run_id(run_id)?;
    let (select, size) = pagination::keyset(
        events_visible_to(actor).filter(Column::RunId.eq(run_id.as_str())),
        Column::CreatedAt,
        Column::Id,
        Direction::OldestFirst,
        &request,
    )?;
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            fetch(txn, actor, &run_id).await?;
            let rows = select.all(txn).await?;
            Ok(pagination::page(rows, size, |e| (e.created_at, e.id)))
        })
    })
    .await
}

/// The artifacts of run `run_id`, oldest first, one page at a time (the seeds'
/// `get-artifacts`).
///
/// # Errors
/// [`ForgeError::NotFound`] when the run does not exist or is not `actor`'s;
/// [`ForgeError::Validation`] for a bad `run_id`, page size or cursor.
#[tracing::instrument(skip_all, fields(entity = "artifact", op = "list", run_id = %run_id))]
pub async fn artifacts<C>(
    db: &C,
    actor: Actor,
    run_id: &RunId,
    request: PageRequest,
) -> Result<Page<artifacts::Model>>
where
    C: Connection,
{
    use artifacts::Column;
    let run_id = checked_run_id(run_id)?;
    let (select, size) = pagination::keyset(
        artifacts_visible_to(actor).filter(Column::RunId.eq(run_id.as_str())),
        Column::CreatedAt,
        Column::Id,
        Direction::OldestFirst,
        &request,
    )?;
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            fetch(txn, actor, &run_id).await?;
            let rows = select.all(txn).await?;
            Ok(pagination::page(rows, size, |a| (a.created_at, a.id)))
        })
    })
    .await
}

/// The count of a run's events and each bot's latest event, in one statement: window
/// functions rank each bot's events newest first and count them all; the same SQL on
/// both backends (PostgreSQL could use `DISTINCT ON`; SQLite has no such thing).
const LATEST_PER_BOT_SQL: &str = "SELECT * FROM (\
     SELECT e.*, \
            row_number() OVER (PARTITION BY e.bot_name ORDER BY e.created_at DESC, e.id DESC) \
                AS forge_rank, \
            count(*) OVER () AS forge_total \
     FROM job_events e \
     WHERE e.run_id = $1{owner}\
 ) latest \
 WHERE forge_rank = 1 \
 ORDER BY bot_name";

/// `(event count, latest event per bot)` of run `run_id` as `actor` sees it.
async fn latest_per_bot(
    txn: &DatabaseTransaction,
    actor: Actor,
    run_id: &RunId,
) -> Result<(u64, Vec<pipeline_events::Model>)> {
    let backend = txn.get_database_backend();
    let mut values = vec![Value::from(run_id.to_owned())];
    let owner = match actor.user_id() {
        Some(uid) => {
            values.push(Value::from(uid));
            " AND e.owner_id = $2"
        }
        None => "",
    };
    let sql = LATEST_PER_BOT_SQL.replace("{owner}", owner);
    let sql = match backend {
        DbBackend::Postgres => sql,
        _ => sql.replace('$', "?"),
    };
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut total = 0u64;
    let mut latest = Vec::with_capacity(rows.len());
    for row in rows {
        let count: i64 = row.try_get("", "forge_total")?;
        total = u64::try_from(count).unwrap_or(0);
        latest.push(pipeline_events::Model::from_query_result(&row, "")?);
    }
    Ok((total, latest))
}

/// Run `run_id` at a glance: the run, how many events it has, each bot's latest event
/// and its artifacts (the seeds' `get-pipeline-status`).
///
/// Three statements in one read transaction (consistent with each other), however many
/// events the run has: the run, one aggregate query over its events, its artifacts. On
/// PostgreSQL entering the actor's context adds 1 more (4 in all; `COMMIT` drops it).
///
/// # Errors
/// [`ForgeError::NotFound`] when the run does not exist or is not `actor`'s;
/// [`ForgeError::Validation`] (`run_id`) for a bad run id.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "status", run_id = %run_id))]
pub async fn status<C>(db: &C, actor: Actor, run_id: &RunId) -> Result<PipelineStatus>
where
    C: Connection,
{
    let run_id = checked_run_id(run_id)?;
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            let run = fetch(txn, actor, &run_id).await?;
            let (event_count, latest_event_per_bot) = latest_per_bot(txn, actor, &run_id).await?;
            let artifacts = artifacts_visible_to(actor)
                .filter(artifacts::Column::RunId.eq(run_id.as_str()))
                .order_by_asc(artifacts::Column::CreatedAt)
                .order_by_asc(artifacts::Column::Id)
                .all(txn)
                .await?;
            Ok(PipelineStatus {
                run,
                event_count,
                latest_event_per_bot,
                artifacts,
            })
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_readable_and_distinct() {
        let at = Utc::now();
        let id = new_run_id(at);
        let prefix = format!("run-{}-", at.format("%Y%m%d"));
        assert!(id.starts_with(&prefix), "{id}");
        let suffix = &id[prefix.len()..];
        assert_eq!(suffix.len(), 8);
        assert!(suffix.bytes().all(|b| RUN_ID_ALPHABET.contains(&b)), "{id}");
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_run_id(at)).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn transitions_follow_the_schema() {
        use RunStatus::*;
        let all = [Pending, Running, Completed, Failed, Cancelled];
        let allowed_pairs = [
            (Pending, Running),
            (Running, Completed),
            (Running, Failed),
            (Pending, Cancelled),
            (Running, Cancelled),
        ];
        for to in all {
            let expected: Vec<_> = all
                .into_iter()
                .filter(|from| allowed_pairs.contains(&(*from, to)))
                .collect();
            assert_eq!(sources(to), expected, "into {to}");
        }
    }

    #[test]
    fn checksums_are_sha256_lower_hex() {
        let good = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert!(checksum(Some(good.clone())).is_ok());
        assert!(checksum(None).is_ok());
        for bad in [
            good.to_uppercase(),
            good.replace("sha256:", "sha1:"),
            good[..good.len() - 1].to_owned(),
            format!("{good}0"),
            format!("sha256:{}", "g".repeat(64)),
        ] {
            assert!(checksum(Some(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_carry_the_run_key() {
        let at = crate::now();
        let key = run_key("run-20261130-abcdefgh");
        assert_ne!(key, run_key("run-20261130-abcdefgj"));
        let parts = cursor_parts(&Cursor::after(at, key)).ok();
        assert_eq!(parts, Some((at, key)));
    }
}
