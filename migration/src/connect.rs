//! Opening a database the way Forge expects.

use std::fmt;
use std::time::Duration;

use sea_orm_migration::sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// The embedded database used when no `DATABASE_URL` is given: a SQLite file `forge.db`
/// in the working directory, created when missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://forge.db?mode=rwc";

/// The database URL a Forge program uses: `DATABASE_URL` when it is set and not empty,
/// else [`DEFAULT_DATABASE_URL`].
pub fn url_from_env() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// How long [`connect`] waits for a database before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The database engines Forge runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, the embedded default.
    Sqlite,
    /// PostgreSQL, the production database.
    Postgres,
}

impl Backend {
    /// The backend a URL names, from its scheme (`sqlite:`, `postgres://`, `postgresql://`).
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    fn compiled(self) -> bool {
        match self {
            Self::Sqlite => cfg!(feature = "sqlite"),
            Self::Postgres => cfg!(feature = "postgres"),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        })
    }
}

/// Why [`connect`] could not open a database. Every message fits on one line and never
/// contains the URL's password.
#[derive(Debug)]
pub enum ConnectError {
    /// The URL names no backend Forge knows.
    UnsupportedUrl {
        /// The URL, password removed.
        url: String,
    },
    /// The URL names a backend this build was compiled without (see the crate features).
    BackendNotCompiled {
        /// The backend the URL asked for.
        backend: Backend,
    },
    /// The database server could not be reached, or refused the login.
    Unreachable {
        /// The URL, password removed.
        url: String,
        /// What the driver said, on one line.
        reason: String,
    },
    /// The connection pool could not be opened.
    Connect {
        /// The URL, password removed.
        url: String,
        /// What the driver said.
        source: DbErr,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedUrl { url } => write!(
                f,
                "unsupported database URL '{url}': expected sqlite://… or postgres://…"
            ),
            Self::BackendNotCompiled { backend } => write!(
                f,
                "this build of Forge has no {backend} support (enable its cargo feature)"
            ),
            Self::Unreachable { url, reason } => write!(f, "cannot connect to {url}: {reason}"),
            Self::Connect { url, source } => {
                let reason = source.to_string().replace('\n', " ");
                write!(f, "cannot connect to {url}: {reason}")
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Opens a connection pool to `url` with Forge's settings.
///
/// On SQLite every connection enforces foreign keys (`PRAGMA foreign_keys = ON`), waits
/// up to five seconds on a locked database instead of failing at once, and a writable
/// database file is switched to write-ahead logging (`journal_mode = WAL`). Statement logging is
/// off; enable `sqlx` logging in your own [`ConnectOptions`] if you need it.
///
/// # Errors
/// [`ConnectError::UnsupportedUrl`] for a URL that is neither SQLite nor PostgreSQL,
/// [`ConnectError::BackendNotCompiled`] when the backend's feature is off, and
/// [`ConnectError::Connect`] when the database cannot be reached (after at most ten seconds).
///
/// A PostgreSQL URL with `pgbouncer=true` in its query (the convention Prisma set) is
/// opened in [`Pooling::Transaction`] mode, see [`connect_with`]; the parameter itself is
/// not passed on to the server.
pub async fn connect(url: &str) -> Result<DatabaseConnection, ConnectError> {
    let (pooling, url) = Pooling::from_url(url);
    connect_with(&url, pooling).await
}

/// How Forge reaches PostgreSQL: straight to the server, or through a pooler that hands
/// the server connection to another client after every transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pooling {
    /// Straight to the server (or through a session-mode pooler, which keeps one server
    /// connection per client connection). Forge keeps statements prepared per connection
    /// and sets `idle_in_transaction_session_timeout` as a startup option.
    #[default]
    Direct,
    /// Through a transaction-mode pooler: PgBouncer with `pool_mode = transaction`, or
    /// Supabase's Supavisor on port 6543. The server connection may change after every
    /// transaction, so Forge keeps no state beyond one:
    /// - no statement stays prepared: the driver's statement cache is off; a call that is
    ///   one statement is one simple-protocol message (no prepared statement at all); a
    ///   Forge transaction removes the statements prepared in it (`DEALLOCATE ALL`) as it
    ///   starts and as it ends, so names never collide with what another client left;
    /// - no session state: roles, claims and `idle_in_transaction_session_timeout` are set
    ///   transaction-locally (no startup options, which poolers refuse);
    /// - migrations never run through it (their lock is a session advisory lock):
    ///   [`migrate`](crate::migrate) runs them over `DIRECT_URL` instead, and fails with
    ///   [`MigrateError::ThroughPooler`](crate::MigrateError::ThroughPooler) without it.
    ///
    /// Your own transactions on such a pool start with the service's `begin` (or are a
    /// `run_as`), which clears what earlier clients left prepared on the server connection;
    /// your own SQL outside a transaction must be one simple-protocol message
    /// (`execute_unprepared`): the extended protocol's two round trips may land on two
    /// server connections.
    /// `LISTEN` needs a direct connection too: the service's event stream polls on a
    /// pooled pool.
    Transaction,
}

impl Pooling {
    /// The pooling a URL asks for (`pgbouncer=true` or `pgbouncer=1` in its query), and the
    /// URL without that parameter. Anything else is [`Pooling::Direct`].
    pub fn from_url(url: &str) -> (Self, String) {
        let Some((base, query)) = url.split_once('?') else {
            return (Self::Direct, url.to_owned());
        };
        if Backend::from_url(url) != Some(Backend::Postgres) {
            return (Self::Direct, url.to_owned());
        }
        let mut pooling = Self::Direct;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                if key != "pgbouncer" {
                    return true;
                }
                if matches!(value, "true" | "1") {
                    pooling = Self::Transaction;
                }
                false
            })
            .collect();
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (pooling, url)
    }
}

/// The pools [`connect_with`] opened in [`Pooling::Transaction`] mode, by the identity of
/// their connect options (which a pool keeps for as long as it lives).
#[cfg(feature = "postgres")]
static POOLED: std::sync::Mutex<
    Vec<std::sync::Weak<sea_orm_migration::sea_orm::sqlx::postgres::PgConnectOptions>>,
> = std::sync::Mutex::new(Vec::new());

/// Whether this process ever opened a pool in [`Pooling::Transaction`] mode: until it
/// does, [`is_pooled`] answers without a lock (it is asked on every Forge call).
#[cfg(feature = "postgres")]
static ANY_POOLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `db` is a pool that [`connect_with`] opened in [`Pooling::Transaction`] mode
/// (through a transaction-mode pooler). Forge's repositories ask this to choose how to
/// send their statements.
pub fn is_pooled(db: &DatabaseConnection) -> bool {
    #[cfg(feature = "postgres")]
    {
        use sea_orm_migration::sea_orm::DatabaseConnectionType;
        if !matches!(
            db.inner,
            DatabaseConnectionType::SqlxPostgresPoolConnection(_)
        ) || !ANY_POOLED.load(std::sync::atomic::Ordering::Acquire)
        {
            return false;
        }
        let options = db.get_postgres_connection_pool().connect_options();
        let pooled = POOLED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pooled
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), std::sync::Arc::as_ptr(&options)))
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = db;
        false
    }
}

#[cfg(feature = "postgres")]
fn register_pooled(db: &DatabaseConnection) {
    let options = db.get_postgres_connection_pool().connect_options();
    let mut pooled = POOLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // A dead entry's address may be reused by a new pool's options: drop those first.
    pooled.retain(|w| w.strong_count() > 0);
    pooled.push(std::sync::Arc::downgrade(&options));
    ANY_POOLED.store(true, std::sync::atomic::Ordering::Release);
}

/// Opens a connection pool to `url` with Forge's settings and the given [`Pooling`] (which
/// matters for PostgreSQL only). See [`connect`] for the rest.
///
/// # Errors
/// As [`connect`].
pub async fn connect_with(url: &str, pooling: Pooling) -> Result<DatabaseConnection, ConnectError> {
    let backend = Backend::from_url(url).ok_or_else(|| ConnectError::UnsupportedUrl {
        url: redact_url(url),
    })?;
    let pooled = pooling == Pooling::Transaction && backend == Backend::Postgres;
    #[cfg(not(feature = "postgres"))]
    let _ = pooled;
    if !backend.compiled() {
        return Err(ConnectError::BackendNotCompiled { backend });
    }
    #[cfg(feature = "postgres")]
    if backend == Backend::Postgres {
        probe_postgres(url).await?;
    }
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        // Replaced by the checks below: a returned connection is checked as it goes back
        // to the pool (off the caller's path), an idle one again before it is handed out.
        .test_before_acquire(false);
    #[cfg(feature = "postgres")]
    {
        if pooled {
            // No statement cache: a named statement kept past its transaction would be
            // missing (or another client's) on the next server connection. The
            // transaction timeout is set per transaction instead (see the service's
            // `run_as`): poolers refuse startup options.
            options.map_sqlx_postgres_opts(|o| o.statement_cache_capacity(0));
        } else {
            let timeout = format!("{}s", IDLE_IN_TRANSACTION_TIMEOUT.as_secs());
            options.map_sqlx_postgres_opts(move |o| {
                o.options([("idle_in_transaction_session_timeout", timeout.as_str())])
            });
        }
        options.map_sqlx_postgres_pool_opts(|p| {
            p.after_release(|conn, _meta| pg_outside_transaction(conn))
                .before_acquire(|conn, meta| {
                    if meta.idle_for < CHECK_AFTER_IDLE {
                        Box::pin(async { Ok(true) })
                    } else {
                        pg_outside_transaction(conn)
                    }
                })
        });
    }
    #[cfg(feature = "sqlite")]
    {
        use sea_orm_migration::sea_orm::sqlx::sqlite::SqliteJournalMode;
        // WAL lets readers run beside the one writer and makes `BEGIN IMMEDIATE` queue
        // fairly; it only applies to a writable file (memory and read-only opens keep theirs).
        let wal =
            !(url.contains(":memory:") || url.contains("mode=memory") || url.contains("mode=ro"));
        options.map_sqlx_sqlite_pool_opts(|p| {
            p.after_release(|conn, _meta| sqlite_outside_transaction(conn))
        });
        options.map_sqlx_sqlite_opts(move |o| {
            let o = o.foreign_keys(true).busy_timeout(Duration::from_secs(5));
            if wal {
                o.journal_mode(SqliteJournalMode::Wal)
            } else {
                o
            }
        });
    }
    // A new SQLite file is switched to WAL by whichever connection comes first, under an
    // exclusive lock; a process starting beside a long write (another replica migrating)
    // can wait past its busy timeout there. Opening the pool is safe to try again.
    let mut attempt = 1;
    loop {
        match Database::connect(options.clone()).await {
            Err(source) if backend == Backend::Sqlite && attempt < 10 && is_busy(&source) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            connected => {
                let db = connected.map_err(|source| ConnectError::Connect {
                    url: redact_url(url),
                    source,
                })?;
                #[cfg(feature = "postgres")]
                if pooled {
                    register_pooled(&db);
                }
                return Ok(db);
            }
        }
    }
}

/// SQLite's "database is locked" (`SQLITE_BUSY`, `SQLITE_LOCKED`, extended codes too).
fn is_busy(err: &DbErr) -> bool {
    use sea_orm_migration::sea_orm::{RuntimeErr, sqlx};
    let (DbErr::Query(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Conn(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    match e.as_ref() {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

/// The future a pool's `before_acquire` check returns.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
type CheckFuture<'c> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<bool, sea_orm_migration::sea_orm::sqlx::Error>>
            + Send
            + 'c,
    >,
>;

/// How long a Forge connection may sit idle inside an open transaction before PostgreSQL
/// ends its session (`idle_in_transaction_session_timeout`): a transaction left open by a
/// crashed or stuck caller stops holding its locks after this.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections the pools of this process discarded because a check found them inside a
/// transaction (a caller's future dropped while `BEGIN` or `SAVEPOINT` was on the wire) or
/// not answering. Worth exporting as a metric: it should stay near zero.
static DISCARDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many pooled connections this process has discarded so far: found inside a
/// transaction or not answering when checked on return to the pool (or on acquire after
/// [`CHECK_AFTER_IDLE`]); the pool opens fresh ones in their place. (On SQLite a
/// transaction found open is rolled back in process and the connection kept; it counts
/// too.)
pub fn connections_discarded() -> u64 {
    DISCARDED.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn count_discarded() {
    DISCARDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How long a pooled connection may sit idle before it is checked again on acquire (the
/// server may have ended it meanwhile: a restart, a failover, `idle_session_timeout`). A
/// connection used more recently was checked when it came back to the pool and is handed
/// out at once, so a busy pool pays no round trip per acquire (the window HikariCP calls
/// `aliveBypassWindowMs`). A server that goes away within this window of a connection's
/// last use fails that connection's next call with a retryable error
/// ([`ForgeError::is_retryable`](https://docs.rs/forge-service)).
pub const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Checks a pooled PostgreSQL connection as it comes back to the pool (and, after
/// [`CHECK_AFTER_IDLE`], before it is handed out again), in one round trip: it is
/// discarded (the server rolls back whatever it held) unless it answers and is outside any
/// transaction. The check on return runs in the pool's own task, not on a caller's path.
///
/// A caller's future dropped while `BEGIN` or `SAVEPOINT` is on the wire can leave the
/// driver believing a connection is idle while the server holds an open transaction; the
/// next user of that connection would then run inside it. `transaction_timestamp()` equals
/// `statement_timestamp()` only for the first statement of a transaction, so a connection
/// whose transaction began earlier is caught. Every role and claim Forge sets is
/// transaction-local, so a connection outside a transaction carries none of them.
#[cfg(feature = "postgres")]
fn pg_outside_transaction(
    conn: &mut sea_orm_migration::sea_orm::sqlx::PgConnection,
) -> CheckFuture<'_> {
    use sea_orm_migration::sea_orm::sqlx;
    Box::pin(async move {
        use sqlx::Row;
        // The simple query protocol: one message, one statement start. (With a prepared
        // statement the transaction starts at Parse and the statement at Execute, so the
        // two would differ even outside a transaction.)
        let row = sqlx::raw_sql("SELECT transaction_timestamp() = statement_timestamp()")
            .fetch_one(&mut *conn)
            .await
            .inspect_err(|_| count_discarded())?;
        let idle: bool = row.try_get(0)?;
        if !idle {
            count_discarded();
            tracing::warn!("forge: discarding a pooled connection found inside a transaction");
        }
        Ok(idle)
    })
}

/// The SQLite counterpart of [`pg_outside_transaction`], as a connection comes back to the
/// pool: it goes back only outside any transaction. SQLite has no cheap way to ask, so any transaction
/// left open is rolled back (in process, no round trip); "no transaction is active" is the
/// usual answer.
#[cfg(feature = "sqlite")]
fn sqlite_outside_transaction(
    conn: &mut sea_orm_migration::sea_orm::sqlx::SqliteConnection,
) -> CheckFuture<'_> {
    use sea_orm_migration::sea_orm::sqlx::{self, Executor};
    Box::pin(async move {
        match conn.execute(sqlx::raw_sql("ROLLBACK")).await {
            Ok(_) => {
                count_discarded();
                tracing::warn!("forge: rolled back a transaction left open on a pooled connection");
                Ok(true)
            }
            Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => {
                Ok(true)
            }
            Err(e) => Err(e),
        }
    })
}

/// One plain connection attempt before the pool is built: a pool only reports "timed out"
/// when the server refuses, while a single connection says why (refused, unknown host,
/// bad password, no such database).
#[cfg(feature = "postgres")]
async fn probe_postgres(url: &str) -> Result<(), ConnectError> {
    use sea_orm_migration::sea_orm::sqlx::{Connection, postgres::PgConnection};
    let reason = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            // The probe has done its job; a failed goodbye changes nothing.
            let _ = conn.close().await;
            return Ok(());
        }
        Ok(Err(err)) => err.to_string().replace('\n', " "),
        Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
    };
    Err(ConnectError::Unreachable {
        url: redact_url(url),
        reason,
    })
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://forge:s3cret@db.example:5432/forge?sslmode=require"),
            "postgres://forge:***@db.example:5432/forge?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://forge@localhost/forge"),
            "postgres://forge@localhost/forge"
        );
        assert_eq!(redact_url(DEFAULT_DATABASE_URL), DEFAULT_DATABASE_URL);
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn pooling_from_the_url() {
        assert_eq!(
            Pooling::from_url("postgres://u:p@h:6543/db?pgbouncer=true"),
            (Pooling::Transaction, "postgres://u:p@h:6543/db".to_owned())
        );
        assert_eq!(
            Pooling::from_url("postgres://h/db?sslmode=require&pgbouncer=1&application_name=x"),
            (
                Pooling::Transaction,
                "postgres://h/db?sslmode=require&application_name=x".to_owned()
            )
        );
        assert_eq!(
            Pooling::from_url("postgres://h/db?pgbouncer=false"),
            (Pooling::Direct, "postgres://h/db".to_owned())
        );
        assert_eq!(
            Pooling::from_url("postgres://h/db?sslmode=disable"),
            (
                Pooling::Direct,
                "postgres://h/db?sslmode=disable".to_owned()
            )
        );
        assert_eq!(
            Pooling::from_url(DEFAULT_DATABASE_URL),
            (Pooling::Direct, DEFAULT_DATABASE_URL.to_owned())
        );
    }

    #[test]
    fn backend_from_scheme() {
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url(DEFAULT_DATABASE_URL),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://h/db"), None);
    }

    #[tokio::test]
    async fn unsupported_url_is_a_typed_error() {
        let err = connect("mysql://localhost/forge").await.unwrap_err();
        assert!(matches!(err, ConnectError::UnsupportedUrl { .. }), "{err}");
    }
}
