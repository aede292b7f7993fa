//! A live stream of one session's events: [`subscribe`].
//!
//! The stream reads the events itself, with [`after`](super::after) from the last `seq`
//! it delivered, so it delivers every event once, in `seq` order, whatever happens to the
//! wake-ups: a notification lost, late, doubled or arriving while the listening connection
//! is being replaced only changes *when* the next read happens.
//!
//! Wake-ups:
//! - PostgreSQL, direct pool: one `LISTEN forge_session_events` connection per pool and
//!   process (a dedicated connection, not one of the pool's, `application_name`
//!   [`LISTENER_APPLICATION_NAME`]), shared by every stream of that pool. The database
//!   notifies once per transaction and session (migration `m20261201_000013_event_notify`),
//!   naming only the session.
//!   When that connection is lost, the listener reconnects and wakes every stream, which
//!   reads again: events committed meanwhile are found by their `seq`. Streams also read
//!   every [`SAFETY_POLL`] with no wake-up at all.
//! - SQLite, and PostgreSQL through a transaction pooler (where `LISTEN` cannot work):
//!   polling, from [`POLL_MIN`] doubling to [`POLL_MAX`] while nothing comes, back to
//!   [`POLL_MIN`] after an event.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use forge_entity::ids::SessionId;
use forge_entity::session_events;
use futures_core::Stream;
use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use crate::actor::Actor;
use crate::error::Result;
use crate::pagination::MAX_PAGE_SIZE;
use crate::validate;

/// The shortest wait between two polls (SQLite, or PostgreSQL through a pooler).
pub const POLL_MIN: Duration = Duration::from_millis(20);

/// The longest wait between two polls, reached by doubling while nothing comes.
pub const POLL_MAX: Duration = Duration::from_secs(1);

/// How long a listening stream waits for a wake-up before it reads anyway.
pub const SAFETY_POLL: Duration = Duration::from_secs(5);

/// The `application_name` of the connection that listens for wake-ups (one per pool and
/// process), so operators can tell it apart in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "forge-events-listener";

/// A live stream of one session's events, in `seq` order, each exactly once: the `Stream`
/// [`subscribe`] returns. It ends after the last event of a session that has ended
/// (`completed`, `failed`, `expired`: its log is closed), or with an error item that is
/// not transient (the session was deleted, say). Transient failures (a lost connection,
/// a restarting server) are retried with back-off, not yielded.
///
/// Dropping it stops it; it holds no connection while it waits.
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Result<session_events::Model>> + Send>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl Stream for EventStream {
    type Item = Result<session_events::Model>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// The events of session `session_id` with `seq > after_seq` as they are appended, for
/// `actor` (a user sees only their own sessions): a [`Stream`] that never skips or repeats
/// an event, also across lost connections. Pass the last `seq` a client saw (0 for all)
/// to resume, e.g. from a Server-Sent Events `Last-Event-ID`.
///
/// On a PostgreSQL pool opened directly, the stream is woken by `LISTEN`/`NOTIFY`; on
/// SQLite and through a transaction pooler it polls (see the module docs).
///
/// # Errors
/// [`ForgeError::Validation`](crate::ForgeError::Validation) for a negative `after_seq`; [`ForgeError::NotFound`](crate::ForgeError::NotFound) when the
/// session does not exist or is not `actor`'s; [`ForgeError::Db`](crate::ForgeError::Db) when it cannot be read.
#[tracing::instrument(skip_all, fields(entity = "session_event", op = "subscribe", session_id = %session_id, after_seq))]
pub async fn subscribe(
    db: &DatabaseConnection,
    actor: Actor,
    session_id: SessionId,
    after_seq: i64,
) -> Result<EventStream> {
    validate::in_range("after_seq", after_seq, 0, i64::MAX)?;
    // Refused before anything is set up (a stream of someone else's session opens no
    // listening connection).
    crate::sessions::get(db, actor, session_id).await?;
    // Listening starts before the first read of events, so nothing committed after that
    // read can go unannounced.
    let wake = Wake::for_session(db, session_id).await;
    let state = Tail {
        db: db.clone(),
        actor,
        session_id,
        last: after_seq,
        buffer: VecDeque::new(),
        wake,
        backoff: POLL_MIN,
        closing: false,
        done: false,
    };
    Ok(EventStream {
        inner: Box::pin(futures_util::stream::unfold(state, Tail::next)),
    })
}

/// The state of one stream.
struct Tail {
    db: DatabaseConnection,
    actor: Actor,
    session_id: SessionId,
    /// The last `seq` delivered.
    last: i64,
    buffer: VecDeque<session_events::Model>,
    wake: Wake,
    backoff: Duration,
    /// The session has ended: deliver what is buffered, then end.
    closing: bool,
    done: bool,
}

impl Tail {
    async fn next(mut self) -> Option<(Result<session_events::Model>, Self)> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.last = event.seq;
                return Some((Ok(event), self));
            }
            if self.done || self.closing {
                return None;
            }
            match self.read().await {
                Ok(true) => self.backoff = POLL_MIN,
                Ok(false) => self.wake.wait(&mut self.backoff).await,
                Err(err) if err.is_retryable() => {
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(POLL_MAX);
                }
                Err(err) => {
                    self.done = true;
                    return Some((Err(err), self));
                }
            }
        }
    }

    /// Reads what follows `last` into the buffer; `Ok(false)` when there is nothing yet.
    /// When the session has ended, reads its last events and marks the stream closing.
    async fn read(&mut self) -> Result<bool> {
        let page = self.page().await?;
        if !page.is_empty() {
            self.buffer.extend(page);
            return Ok(true);
        }
        let session = crate::sessions::get(&self.db, self.actor, self.session_id).await?;
        if session.status.is_live() {
            return Ok(false);
        }
        // Ended: no append can commit any more, so this read is the last one.
        let page = self.page().await?;
        self.closing = true;
        let found = !page.is_empty();
        self.buffer.extend(page);
        Ok(found)
    }

    async fn page(&self) -> Result<Vec<session_events::Model>> {
        super::after(
            &self.db,
            self.actor,
            self.session_id,
            self.last,
            MAX_PAGE_SIZE,
        )
        .await
    }
}

/// How a caught-up stream waits for news.
enum Wake {
    Poll,
    Listen {
        news: watch::Receiver<u64>,
        /// Keeps the pool's listener alive while this stream exists.
        _hub: Arc<Hub>,
    },
}

impl Wake {
    async fn for_session(db: &DatabaseConnection, session_id: SessionId) -> Self {
        match Hub::for_pool(db).await {
            Some(hub) => Self::Listen {
                news: hub.watch(session_id),
                _hub: hub,
            },
            None => Self::Poll,
        }
    }

    async fn wait(&mut self, backoff: &mut Duration) {
        match self {
            Self::Poll => {
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(POLL_MAX);
            }
            Self::Listen { news, .. } => {
                // A closed channel (the listener gave up) leaves the safety poll.
                match tokio::time::timeout(SAFETY_POLL, news.changed()).await {
                    Ok(Ok(())) | Err(_) => {}
                    Ok(Err(_)) => tokio::time::sleep(SAFETY_POLL).await,
                }
            }
        }
    }
}

/// One pool's listener: a task holding `LISTEN forge_session_events` on a dedicated
/// connection, waking the streams of the sessions it hears about.
struct Hub {
    sessions: Mutex<HashMap<SessionId, watch::Sender<u64>>>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

#[cfg(feature = "postgres")]
type HubKey = std::sync::Weak<sea_orm::sqlx::postgres::PgConnectOptions>;

/// The live hubs, by the identity of their pool's connect options.
#[cfg(feature = "postgres")]
static HUBS: tokio::sync::Mutex<Vec<(HubKey, std::sync::Weak<Hub>)>> =
    tokio::sync::Mutex::const_new(Vec::new());

impl Hub {
    /// The listener of `db`'s pool, started when there is none; `None` where streams poll
    /// (SQLite, a pooled pool) or when listening cannot start (then they poll too).
    async fn for_pool(db: &DatabaseConnection) -> Option<Arc<Self>> {
        #[cfg(feature = "postgres")]
        {
            if db.get_database_backend() != sea_orm::DbBackend::Postgres
                || !matches!(
                    db.inner,
                    sea_orm::DatabaseConnectionType::SqlxPostgresPoolConnection(_)
                )
                || forge_migration::is_pooled(db)
            {
                return None;
            }
            let options = db.get_postgres_connection_pool().connect_options();
            let mut hubs = HUBS.lock().await;
            hubs.retain(|(key, hub)| key.strong_count() > 0 && hub.strong_count() > 0);
            if let Some(hub) = hubs
                .iter()
                .find(|(key, _)| std::ptr::eq(key.as_ptr(), Arc::as_ptr(&options)))
                .and_then(|(_, hub)| hub.upgrade())
            {
                return Some(hub);
            }
            match listen::start(&options).await {
                Ok((listener, pool)) => {
                    let (stop, stopped) = tokio::sync::oneshot::channel();
                    let hub = Arc::new(Self {
                        sessions: Mutex::new(HashMap::new()),
                        stop: Mutex::new(Some(stop)),
                    });
                    tokio::spawn(listen::run(Arc::downgrade(&hub), listener, pool, stopped));
                    hubs.push((Arc::downgrade(&options), Arc::downgrade(&hub)));
                    Some(hub)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "forge: cannot LISTEN for event wake-ups; streams poll");
                    None
                }
            }
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = db;
            None
        }
    }

    fn watch(&self, session_id: SessionId) -> watch::Receiver<u64> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        // Sessions nobody watches any more are otherwise forgotten only when announced.
        if sessions.len() >= 1024 && sessions.len().is_power_of_two() {
            sessions.retain(|_, sender| sender.receiver_count() > 0);
        }
        sessions
            .entry(session_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes the streams of the session a payload names (its id; anything after a `:` is
    /// ignored, room for a hint later).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    fn announce(&self, payload: &str) {
        let id = payload.split(':').next().unwrap_or(payload);
        let Ok(session_id) = id.parse::<SessionId>() else {
            return;
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = sessions.get(&session_id) {
            if sender.receiver_count() == 0 {
                sessions.remove(&session_id);
            } else {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Wakes every stream (notifications may have been missed), forgetting sessions
    /// nobody watches any more.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    fn announce_all(&self) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, sender| sender.receiver_count() > 0);
        for sender in sessions.values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let stop = self.stop.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(stop) = stop.take() {
            // The task may have ended already; then there is nothing to stop.
            let _ = stop.send(());
        }
    }
}

#[cfg(feature = "postgres")]
mod listen {
    use std::sync::Weak;
    use std::time::Duration;

    use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

    use super::{Hub, LISTENER_APPLICATION_NAME};

    /// A listener on a dedicated one-connection pool with `options` (so it never takes
    /// one of the application pool's connections), already listening.
    pub(super) async fn start(
        options: &PgConnectOptions,
    ) -> Result<(PgListener, PgPool), sea_orm::sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.clone().application_name(LISTENER_APPLICATION_NAME));
        let listener = listening(&pool).await?;
        Ok((listener, pool))
    }

    async fn listening(pool: &PgPool) -> Result<PgListener, sea_orm::sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(forge_migration::EVENTS_CHANNEL).await?;
        Ok(listener)
    }

    /// A new listener in place of `old` (dropped first: it holds the pool's one
    /// connection), retried with back-off; `None` when stopped meanwhile.
    async fn relisten(
        old: PgListener,
        pool: &PgPool,
        stop: &mut tokio::sync::oneshot::Receiver<()>,
    ) -> Option<PgListener> {
        drop(old);
        let mut backoff = Duration::from_millis(50);
        loop {
            tokio::select! {
                _ = &mut *stop => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            match listening(pool).await {
                Ok(fresh) => return Some(fresh),
                Err(_) => backoff = (backoff * 2).min(Duration::from_secs(5)),
            }
        }
    }

    /// Hands wake-ups to the hub until it is dropped. A lost connection is replaced
    /// (retrying with back-off) and every stream woken once listening again.
    pub(super) async fn run(
        hub: Weak<Hub>,
        mut listener: PgListener,
        pool: PgPool,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        loop {
            let heard = tokio::select! {
                _ = &mut stop => return,
                heard = listener.try_recv() => heard,
            };
            let Some(live) = hub.upgrade() else { return };
            match heard {
                Ok(Some(notification)) => live.announce(notification.payload()),
                // The connection was lost and (eagerly) replaced and listening again:
                // what was announced meanwhile is lost, so every stream reads.
                Ok(None) => live.announce_all(),
                Err(err) => {
                    drop(live);
                    tracing::warn!(error = %err, "forge: event listener lost; reconnecting");
                    let Some(fresh) = relisten(listener, &pool, &mut stop).await else {
                        return;
                    };
                    listener = fresh;
                    match hub.upgrade() {
                        Some(live) => live.announce_all(),
                        None => return,
                    }
                }
            }
        }
    }
}
