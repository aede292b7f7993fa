//! Session events: the append-only log of a coding session.
//!
//! Invariants:
//! - A session's events are numbered `seq` 1, 2, 3 … with no gaps, in commit order, even
//!   while several writers append to one session at once. Appends to one session are
//!   serialised: on PostgreSQL by a row lock on the session (taken here and by the
//!   migration's trigger, which also assigns `seq` when an insert leaves it out); on
//!   SQLite by the write transaction (`BEGIN IMMEDIATE`), inside which `seq` is computed
//!   as `COALESCE(MAX(seq), 0) + 1`. So a reader polling [`after`] with the last `seq` it
//!   saw never skips an event: `seq` N+1 can never be visible before `seq` N.
//! - Only live sessions (`pending`, `active`, `paused`) take events. Once a session has
//!   ended (`completed`, `failed`, `expired`) its log is closed and final: appending is
//!   refused with [`ForgeError::InvalidTransition`], so a reader that sees the session
//!   ended and then polls once more has every event. The check holds under races with
//!   [`crate::sessions::transition`]: the append locks the session row before reading its
//!   state.
//! - Appending is the service's (users have no INSERT on `session_events`); users read the
//!   events of their own sessions only. Events never change and are not deleted here.

use forge_entity::coding_sessions;
use forge_entity::ids::{EventId, SessionId};
use forge_entity::session_events::{self, EventType};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, Select, Set, Statement,
};
use serde_json::Value as Json;

use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};
use crate::pagination::MAX_PAGE_SIZE;
use crate::scoped;
use crate::validate;

mod stream;
pub use stream::{
    EventStream, LISTENER_APPLICATION_NAME, POLL_MAX, POLL_MIN, SAFETY_POLL, subscribe,
};

/// Most events [`append_many`] takes in one call.
pub const MAX_EVENTS_PER_APPEND: usize = 1000;

/// An event to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// What the event reports.
    pub event_type: EventType,
    /// Its free-form JSON payload.
    pub data: Json,
}

impl NewEvent {
    /// An event of `event_type` carrying `data`.
    pub fn new(event_type: EventType, data: Json) -> Self {
        Self { event_type, data }
    }
}

/// Events visible to `actor`: those of their own sessions, or all for the service.
pub fn visible_to(actor: Actor) -> Select<session_events::Entity> {
    scoped::owned_through::<_, coding_sessions::Entity>(
        actor,
        session_events::Column::SessionId,
        coding_sessions::Column::Id,
    )
}

/// Locks session `id` against concurrent appends and state changes until the transaction
/// ends, and refuses it unless it is live.
async fn open_log(
    txn: &DatabaseTransaction,
    session_id: SessionId,
    first: EventType,
) -> Result<()> {
    let session = coding_sessions::Entity::find_by_id(session_id)
        .lock(LockType::NoKeyUpdate)
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found("session", session_id))?;
    if !session.status.is_live() {
        return Err(ForgeError::InvalidTransition {
            entity: "session",
            from: session.status.to_string(),
            to: format!("a new {first} event"),
        });
    }
    Ok(())
}

/// The next `seq` of the session, computed in SQL. Only correct while appends to the
/// session are serialised (see the module docs).
async fn next_seq(txn: &DatabaseTransaction, session_id: SessionId) -> Result<i64> {
    let next: Option<i64> = session_events::Entity::find()
        .select_only()
        .column_as(
            Expr::expr(Func::coalesce([
                Expr::from(Func::max(Expr::col(session_events::Column::Seq))),
                Expr::val(0i64),
            ]))
            .add(1i64),
            "next",
        )
        .filter(session_events::Column::SessionId.eq(session_id))
        .into_tuple()
        .one(txn)
        .await?;
    next.ok_or_else(|| ForgeError::Db(sea_orm::DbErr::RecordNotFound("next seq".into())))
}

/// `event` with its payload checked, before anything is written.
fn checked(event: NewEvent) -> Result<NewEvent> {
    Ok(NewEvent {
        data: validate::json_document("data", event.data)?,
        ..event
    })
}

/// Inserts one event (already [`checked`]) into an opened log. PostgreSQL's trigger
/// assigns `seq` when it is left out; on SQLite it is computed here.
async fn insert_event(
    txn: &DatabaseTransaction,
    session_id: SessionId,
    event: NewEvent,
) -> Result<session_events::Model> {
    let mut row = session_events::ActiveModel {
        session_id: Set(session_id),
        event_type: Set(event.event_type),
        data: Set(event.data),
        ..Default::default()
    };
    if txn.get_database_backend() != DbBackend::Postgres {
        row.seq = Set(next_seq(txn, session_id).await?);
    }
    Ok(row.insert(txn).await?)
}

/// The one statement that appends `event` to a live session: an `INSERT … SELECT` from the
/// session row, so an unknown or ended session inserts nothing. On PostgreSQL the session
/// row is locked (`FOR NO KEY UPDATE`, the lock the `seq` trigger takes anyway), so a
/// session that ends concurrently is read again once it has: the event lands before the
/// end or not at all; the trigger assigns `seq`. On SQLite (one writer at a time) the
/// statement computes `seq` itself. Values are cast where PostgreSQL would otherwise read
/// a literal as `text` (an `INSERT … SELECT` list is not typed by its target columns).
fn append_statement(backend: DbBackend, session_id: SessionId, event: NewEvent) -> Statement {
    let live = coding_sessions::SessionStatus::LIVE
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let values: Vec<sea_orm::Value> = vec![
        EventId::new().into(),
        event.event_type.as_str().into(),
        event.data.into(),
        crate::now().into(),
        session_id.into(),
    ];
    let sql = match backend {
        DbBackend::Postgres => format!(
            "INSERT INTO session_events (id, session_id, event_type, data, created_at) \
             SELECT CAST($1 AS uuid), s.id, $2, CAST($3 AS jsonb), CAST($4 AS timestamptz) \
             FROM coding_sessions s WHERE s.id = CAST($5 AS uuid) AND s.status IN ({live}) \
             FOR NO KEY UPDATE \
             RETURNING id, session_id, seq, event_type, data, created_at"
        ),
        _ => format!(
            "INSERT INTO session_events (id, session_id, seq, event_type, data, created_at) \
             SELECT ?, s.id, \
                    (SELECT coalesce(max(e.seq), 0) + 1 FROM session_events e \
                      WHERE e.session_id = s.id), \
                    ?, ?, ? \
             FROM coding_sessions s WHERE s.id = ? AND s.status IN ({live}) \
             RETURNING id, session_id, seq, event_type, data, created_at"
        ),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Appends one event to session `session_id` with the session's next `seq` (service
/// only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] (`data`) for a
/// payload with a NUL character, over 64 KiB or nested too deeply;
/// [`ForgeError::NotFound`] for an unknown session; [`ForgeError::InvalidTransition`]
/// when the session has ended (completed, failed or expired), naming its state.
#[tracing::instrument(skip_all, fields(entity = "session_event", op = "append", session_id = %session_id))]
pub async fn append<C>(
    db: &C,
    actor: Actor,
    session_id: SessionId,
    event_type: EventType,
    data: Json,
) -> Result<session_events::Model>
where
    C: Connection,
{
    actor.require_service("appending session events")?;
    let event = checked(NewEvent::new(event_type, data))?;
    let backend = db.get_database_backend();
    let stmt = append_statement(backend, session_id, event);
    let rows = scoped::prepared_rows(db, actor, Access::Write, stmt).await?;
    match rows.first() {
        Some(row) => Ok(session_events::Model::from_query_result(row, "")?),
        // Nothing appended: say why (off the hot path).
        None => {
            let session = crate::sessions::find(db, actor, session_id)
                .await?
                .ok_or_else(|| ForgeError::not_found("session", session_id))?;
            Err(ForgeError::InvalidTransition {
                entity: "session",
                from: session.status.to_string(),
                to: format!("a new {event_type} event"),
            })
        }
    }
}

/// Appends `events` to session `session_id` in one transaction, with consecutive `seq`s
/// in the given order (service only). Returns the stored events in that order.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] (`events`) for an
/// empty list or more than [`MAX_EVENTS_PER_APPEND`], (`data`) for any payload refused
/// as by [`append`]; [`ForgeError::NotFound`] for an
/// unknown session; [`ForgeError::InvalidTransition`] when the session has ended. On any
/// error nothing is appended.
#[tracing::instrument(skip_all, fields(entity = "session_event", op = "append_many", session_id = %session_id, count = events.len()))]
pub async fn append_many<C>(
    db: &C,
    actor: Actor,
    session_id: SessionId,
    events: Vec<NewEvent>,
) -> Result<Vec<session_events::Model>>
where
    C: Connection,
{
    actor.require_service("appending session events")?;
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    validate::in_range("events", count, 1, MAX_EVENTS_PER_APPEND as i64)?;
    let events = events
        .into_iter()
        .map(checked)
        .collect::<Result<Vec<_>>>()?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let Some(first) = events.first().map(|e| e.event_type) else {
                return Ok(Vec::new());
            };
            open_log(txn, session_id, first).await?;
            let mut stored = Vec::with_capacity(events.len());
            for event in events {
                stored.push(insert_event(txn, session_id, event).await?);
            }
            Ok(stored)
        })
    })
    .await
}

/// Up to `limit` events of session `session_id` with `seq > after_seq`, oldest first.
/// Tail a session by passing the last `seq` seen (0 at first): no event is ever skipped.
///
/// # Errors
/// [`ForgeError::Validation`] for a negative `after_seq` or a `limit` outside
/// `1..=MAX_PAGE_SIZE`; [`ForgeError::NotFound`] when the session does not exist or is not
/// `actor`'s.
#[tracing::instrument(skip_all, fields(entity = "session_event", op = "after", session_id = %session_id, after_seq))]
pub async fn after<C>(
    db: &C,
    actor: Actor,
    session_id: SessionId,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<session_events::Model>>
where
    C: Connection,
{
    validate::in_range("after_seq", after_seq, 0, i64::MAX)?;
    let limit_i64 = i64::try_from(limit).unwrap_or(i64::MAX);
    validate::in_range("limit", limit_i64, 1, MAX_PAGE_SIZE as i64)?;
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            crate::sessions::fetch(txn, actor, session_id).await?;
            Ok(visible_to(actor)
                .filter(session_events::Column::SessionId.eq(session_id))
                .filter(session_events::Column::Seq.gt(after_seq))
                .order_by_asc(session_events::Column::Seq)
                .limit(limit)
                .all(txn)
                .await?)
        })
    })
    .await
}
