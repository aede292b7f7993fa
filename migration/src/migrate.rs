//! One migration at a time: [`migrate`] for services at start-up, and [`MigrationLock`],
//! which every migration command of `forge-migration` runs under.
//!
//! Several processes may migrate the same database at once (N replicas starting together,
//! two deploys racing). Without a lock each one reads the same pending migrations and tries
//! to apply them; all but one then fail ("relation already exists"). Under the lock they
//! queue: the first applies what is pending, the others find nothing left to do.
//!
//! - **PostgreSQL**: a session-level advisory lock, key [`MIGRATION_LOCK_KEY`], held on
//!   one dedicated connection (a pool of exactly one connection, built from the caller's
//!   connect options) for the whole run, and every statement of the run goes over that
//!   same connection. The caller's pool is not used while the lock is held, so a pool of
//!   size 1 cannot deadlock. Advisory locks belong to one database, so different databases
//!   on one server migrate in parallel. If the process dies, the server ends its session
//!   and the lock goes with it. Each migration still commits in its own transaction.
//! - **SQLite**: the whole run is one `BEGIN IMMEDIATE` transaction (each migration a
//!   savepoint in it). SQLite allows one writer per database file, so the next process's
//!   `BEGIN IMMEDIATE` waits until the run commits or rolls back; it is tried again for as
//!   long as the database stays busy, and then sees what the first one applied. A run that
//!   fails, or a process that dies, leaves the file as it was before the run. (A file lock
//!   beside the database would work too, but would leave a second file behind and would
//!   not make the run atomic.)
//!
//! Both wait for as long as another migration runs; nothing times out.

use std::fmt;
use std::time::Duration;

use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseExecutor, DatabaseTransaction, DbBackend, DbErr,
    RuntimeErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use crate::Migrator;

/// The key of the PostgreSQL advisory lock every Forge migration runs under:
/// `0x466F_7267_654D_6967`, the ASCII bytes of `ForgeMig`, i.e. `5075401093476608359`.
///
/// A session holding it shows in `pg_locks` as `locktype = 'advisory'`, `classid =
/// 1181708903`, `objid = 1699572071`, `objsubid = 1`. Another tool that must not run beside
/// a Forge migration can take the same lock: `SELECT pg_advisory_lock(5075401093476608359)`.
pub const MIGRATION_LOCK_KEY: i64 = 0x466F_7267_654D_6967;

/// How long to pause before trying SQLite's write lock again after the busy timeout ran out.
const SQLITE_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Applies every pending Forge migration, one process at a time: the call for a service to
/// make at start-up, safe when several replicas start together.
///
/// It takes the [`MigrationLock`] (waiting while another process migrates this database),
/// applies what is pending then, and releases the lock. Returns the names of the
/// migrations it applied, oldest first: empty when another process got there first or the
/// database was already up to date.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let db = forge_migration::connect(&forge_migration::url_from_env()).await?;
/// let applied = forge_migration::migrate(&db).await?;
/// println!("{} migration(s) applied", applied.len());
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`MigrateError::Lock`] when the lock (or its dedicated PostgreSQL connection) cannot be
/// taken, [`MigrateError::Unsupported`] for a connection that is not a SQLx pool of SQLite
/// or PostgreSQL, [`MigrateError::Migration`] when a migration fails (on SQLite nothing of
/// the run is kept then; on PostgreSQL the migrations before it stay applied), and
/// [`MigrateError::LockLost`] when the lock's connection ended before the run finished.
///
/// A pool opened through a transaction pooler ([`Pooling::Transaction`](crate::Pooling))
/// cannot hold the lock (it is session-scoped): then the migrations run over the direct URL
/// in `DIRECT_URL` (see [`migrate_with`]), or fail with [`MigrateError::ThroughPooler`]
/// when it is not set.
pub async fn migrate(db: &DatabaseConnection) -> Result<Vec<String>, MigrateError> {
    let direct = std::env::var("DIRECT_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    migrate_with(db, direct.as_deref()).await
}

/// [`migrate`], with the direct URL to use when `db` goes through a transaction pooler
/// given here instead of read from `DIRECT_URL`. A `db` opened directly ignores it.
///
/// # Errors
/// As [`migrate`]; [`MigrateError::ThroughPooler`] when `db` is pooled and `direct_url` is
/// `None` or itself a pooler URL; [`MigrateError::DirectUrl`] when it cannot be opened.
pub async fn migrate_with(
    db: &DatabaseConnection,
    direct_url: Option<&str>,
) -> Result<Vec<String>, MigrateError> {
    if !crate::is_pooled(db) {
        return migrate_locked(db).await;
    }
    let url = direct_url.ok_or(MigrateError::ThroughPooler)?;
    let direct = crate::connect(url).await.map_err(MigrateError::DirectUrl)?;
    let outcome = migrate_locked(&direct).await;
    direct.close().await.ok();
    outcome
}

async fn migrate_locked(db: &DatabaseConnection) -> Result<Vec<String>, MigrateError> {
    let lock = MigrationLock::acquire(db).await?;
    match apply_pending(&lock).await {
        Ok(applied) => {
            lock.release().await?;
            Ok(applied)
        }
        Err(err) => {
            // The migration's error is the one worth reporting; dropping the lock's
            // connection or transaction releases the lock in any case.
            let _ = lock.abort().await;
            Err(MigrateError::Migration(err))
        }
    }
}

/// Applies what is pending under `lock`; the names, oldest first.
async fn apply_pending(lock: &MigrationLock) -> Result<Vec<String>, DbErr> {
    let pending: Vec<String> = Migrator::get_pending_migrations(&lock.connection())
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    if !pending.is_empty() {
        Migrator::up(lock.connection(), None).await?;
    }
    Ok(pending)
}

/// Why [`migrate`] (or [`MigrationLock`]) failed. Every message fits on one line.
#[derive(Debug)]
#[non_exhaustive]
pub enum MigrateError {
    /// The migration lock could not be taken, or on PostgreSQL its dedicated connection
    /// could not be opened.
    Lock(DbErr),
    /// The connection holding the PostgreSQL lock ended before the run finished, so
    /// another process may have migrated meanwhile. Nothing is wrong with the database;
    /// run again.
    LockLost,
    /// The connection is not a SQLx pool of SQLite or PostgreSQL (a mock or proxy
    /// connection, say), so no lock can be held on it.
    Unsupported {
        /// What the connection is.
        connection: String,
    },
    /// A migration failed, or the migration table could not be read or written.
    Migration(DbErr),
    /// The connection goes through a transaction-mode pooler
    /// ([`Pooling::Transaction`](crate::Pooling)): the migration lock is a session
    /// advisory lock, which such a pooler would hand to another client. Migrate over a
    /// direct URL (`DIRECT_URL` for the `forge-migration` binary).
    ThroughPooler,
    /// The direct URL given for a pooled pool ([`migrate_with`], `DIRECT_URL`) could not
    /// be opened.
    DirectUrl(crate::ConnectError),
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lock(err) => write!(
                f,
                "cannot take the migration lock: {}",
                one_line(&err.to_string())
            ),
            Self::DirectUrl(err) => write!(f, "cannot open the direct URL (DIRECT_URL): {err}"),
            Self::ThroughPooler => f.write_str(
                "migrations cannot run through a transaction pooler (pgbouncer=true): \
                 the migration lock is session-scoped; give a direct URL (DIRECT_URL)",
            ),
            Self::LockLost => f.write_str(
                "the connection holding the migration lock was lost before the run finished; run it again",
            ),
            Self::Unsupported { connection } => write!(
                f,
                "cannot take the migration lock on a {connection} connection: \
                 only SQLx pools of SQLite and PostgreSQL are supported"
            ),
            Self::Migration(err) => write!(f, "{}", one_line(&err.to_string())),
        }
    }
}

impl std::error::Error for MigrateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Lock(err) | Self::Migration(err) => Some(err),
            Self::DirectUrl(err) => Some(err),
            Self::LockLost | Self::Unsupported { .. } | Self::ThroughPooler => None,
        }
    }
}

impl From<DbErr> for MigrateError {
    fn from(err: DbErr) -> Self {
        Self::Migration(err)
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// The lock that makes Forge migrations of one database run one at a time.
///
/// - **PostgreSQL**: a session-level advisory lock, key [`MIGRATION_LOCK_KEY`], held on
///   one dedicated connection (a pool of exactly one connection, built from the caller's
///   connect options and `search_path`) for the whole run; every statement of the run goes
///   over that connection, so the caller's pool is not used meanwhile and a pool of size 1
///   cannot deadlock. The lock belongs to the one database; it dies with the session when
///   the process is killed. Each migration still commits in its own transaction. Should
///   the connection be lost mid-run, the run fails rather than go on unlocked.
/// - **SQLite**: the whole run is one `BEGIN IMMEDIATE` transaction (each migration a
///   savepoint in it). The next process's `BEGIN IMMEDIATE` waits until the run commits or
///   rolls back (it is tried again for as long as the file stays busy), then sees what was
///   applied. A run that fails, or a process that dies, leaves the file as it was.
///
/// Acquiring waits for as long as another run holds the lock; nothing times out.
///
/// Run everything of the migration through [`MigrationLock::connection`], then call
/// [`MigrationLock::release`] to keep the work, or [`MigrationLock::abort`] to give up
/// (on SQLite that undoes the whole run). Dropping it releases the lock too: on SQLite the
/// run's transaction rolls back, on PostgreSQL the dedicated connection closes.
///
/// ```no_run
/// use forge_migration::{MigrationLock, Migrator, MigratorTrait};
///
/// # async fn run(db: &forge_migration::sea_orm::DatabaseConnection) -> Result<(), forge_migration::MigrateError> {
/// let lock = MigrationLock::acquire(db).await?;
/// Migrator::down(lock.connection(), Some(1)).await?;
/// lock.release().await?;
/// # Ok(()) }
/// ```
pub struct MigrationLock {
    held: Held,
    waited: bool,
}

enum Held {
    /// The dedicated one-connection pool whose session holds the advisory lock.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres(DatabaseConnection),
    /// The `BEGIN IMMEDIATE` transaction that holds SQLite's write lock.
    Sqlite(DatabaseTransaction),
}

impl fmt::Debug for MigrationLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.held {
            Held::Postgres(_) => "PostgreSQL advisory lock",
            Held::Sqlite(_) => "SQLite write transaction",
        };
        f.debug_struct("MigrationLock")
            .field("held", &backend)
            .field("waited", &self.waited)
            .finish()
    }
}

impl MigrationLock {
    /// Takes the migration lock of `db`'s database, waiting for as long as another process
    /// (or task) holds it.
    ///
    /// # Errors
    /// [`MigrateError::Lock`] when the lock or the dedicated connection cannot be had,
    /// [`MigrateError::Unsupported`] for a connection that is not a SQLx pool of SQLite or
    /// PostgreSQL, [`MigrateError::ThroughPooler`] for a pool opened through a
    /// transaction-mode pooler.
    pub async fn acquire(db: &DatabaseConnection) -> Result<Self, MigrateError> {
        if crate::is_pooled(db) {
            return Err(MigrateError::ThroughPooler);
        }
        match db.get_database_backend() {
            DbBackend::Postgres => acquire_postgres(db).await,
            DbBackend::Sqlite => acquire_sqlite(db).await,
            other => Err(MigrateError::Unsupported {
                connection: format!("{other:?}"),
            }),
        }
    }

    /// Whether this run had to wait for another one. On PostgreSQL: whether another session
    /// held the lock when this one asked. On SQLite: whether the database stayed busy for a
    /// whole busy timeout at least once (shorter waits happen inside SQLite, unnoticed).
    pub fn waited(&self) -> bool {
        self.waited
    }

    /// The connection to run the migration over: the lock's own connection on PostgreSQL,
    /// the run's transaction on SQLite. Pass it to any [`MigratorTrait`] method.
    pub fn connection(&self) -> DatabaseExecutor<'_> {
        match &self.held {
            Held::Postgres(conn) => DatabaseExecutor::from(conn),
            Held::Sqlite(txn) => DatabaseExecutor::from(txn),
        }
    }

    /// The backend the lock is held on.
    pub fn backend(&self) -> DbBackend {
        match &self.held {
            Held::Postgres(_) => DbBackend::Postgres,
            Held::Sqlite(_) => DbBackend::Sqlite,
        }
    }

    /// Keeps what the run did and releases the lock: commits the run's transaction on
    /// SQLite; unlocks and closes the dedicated connection on PostgreSQL.
    ///
    /// # Errors
    /// [`MigrateError::Migration`] when SQLite's commit fails (nothing is kept then),
    /// [`MigrateError::LockLost`] when the PostgreSQL session no longer held the lock.
    pub async fn release(self) -> Result<(), MigrateError> {
        match self.held {
            Held::Sqlite(txn) => Ok(txn.commit().await?),
            Held::Postgres(conn) => {
                let unlocked = scalar_bool(&conn, "SELECT pg_advisory_unlock($1)").await;
                // Closing ends the session, which releases the lock whatever happened above.
                let _ = conn.close().await;
                match unlocked {
                    Ok(true) => Ok(()),
                    Ok(false) | Err(_) => Err(MigrateError::LockLost),
                }
            }
        }
    }

    /// Gives up the run and releases the lock. On SQLite the run's transaction rolls back,
    /// so the database is as it was before [`MigrationLock::acquire`]; on PostgreSQL the
    /// dedicated connection closes (each migration committed on its own, and those stay).
    ///
    /// # Errors
    /// [`MigrateError::Migration`] when SQLite's rollback fails (the transaction is rolled
    /// back when its connection closes in any case).
    pub async fn abort(self) -> Result<(), MigrateError> {
        match self.held {
            Held::Sqlite(txn) => Ok(txn.rollback().await?),
            Held::Postgres(conn) => {
                // The session ends, and the advisory lock with it.
                let _ = conn.close().await;
                Ok(())
            }
        }
    }
}

/// `sql` with [`MIGRATION_LOCK_KEY`] as `$1`, returning one boolean.
async fn scalar_bool(conn: &DatabaseConnection, sql: &str) -> Result<bool, DbErr> {
    use sea_orm_migration::sea_orm::Statement;
    let stmt =
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [MIGRATION_LOCK_KEY.into()]);
    let row = conn
        .query_one_raw(stmt)
        .await?
        .ok_or_else(|| DbErr::Custom(format!("no row from {sql}")))?;
    row.try_get_by_index::<bool>(0)
}

#[cfg(feature = "postgres")]
async fn acquire_postgres(db: &DatabaseConnection) -> Result<MigrationLock, MigrateError> {
    use sea_orm_migration::sea_orm::{DatabaseConnectionType, SqlxPostgresConnector};

    if !matches!(
        db.inner,
        DatabaseConnectionType::SqlxPostgresPoolConnection(_)
    ) {
        return Err(MigrateError::Unsupported {
            connection: "non-SQLx PostgreSQL".to_owned(),
        });
    }
    let pool = dedicated_postgres_pool(db)
        .await
        .map_err(MigrateError::Lock)?;
    let conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
    let taken = async {
        if scalar_bool(&conn, "SELECT pg_try_advisory_lock($1)").await? {
            return Ok(false);
        }
        // Another session migrates this database: wait for it, for as long as it takes. A
        // `statement_timeout` or `lock_timeout` from the connect options must not cut the
        // wait short, so they are off for this one transaction; the lock, taken inside it,
        // is the session's and outlives the commit.
        let txn = conn.begin().await?;
        txn.execute_unprepared("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
            .await?;
        scalar_void(&txn, "SELECT pg_advisory_lock($1)").await?;
        txn.commit().await?;
        Ok(true)
    }
    .await;
    match taken {
        Ok(waited) => Ok(MigrationLock {
            held: Held::Postgres(conn),
            waited,
        }),
        Err(err) => {
            let _ = conn.close().await;
            Err(MigrateError::Lock(err))
        }
    }
}

#[cfg(feature = "postgres")]
async fn scalar_void<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::Statement;
    let stmt =
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [MIGRATION_LOCK_KEY.into()]);
    conn.query_one_raw(stmt).await?;
    Ok(())
}

/// A pool of exactly one connection to `db`'s database, with `db`'s connect options and
/// its `search_path`. The connection is never recycled (no idle timeout, no maximum
/// lifetime), and should it be lost, the pool refuses to open another one: the advisory
/// lock lived on the first, so carrying on over a new session would be unlocked.
#[cfg(feature = "postgres")]
async fn dedicated_postgres_pool(
    db: &DatabaseConnection,
) -> Result<sea_orm_migration::sea_orm::sqlx::PgPool, DbErr> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use sea_orm_migration::sea_orm::Statement;
    use sea_orm_migration::sea_orm::sqlx::{self, postgres::PgPoolOptions};

    let shared = db.get_postgres_connection_pool();
    // `search_path` may come from an `after_connect` hook (sea-orm's
    // `set_schema_search_path`), which the connect options do not carry.
    let search_path: String = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('search_path')",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row from current_setting('search_path')".to_owned()))?
        .try_get_by_index(0)?;
    let opened = Arc::new(AtomicBool::new(false));
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .acquire_timeout(shared.options().get_acquire_timeout())
        .after_connect(move |conn, _meta| {
            let first = !opened.swap(true, Ordering::SeqCst);
            let search_path = search_path.clone();
            Box::pin(async move {
                if !first {
                    return Err(sqlx::Error::Configuration(
                        "the connection holding the migration lock was lost".into(),
                    ));
                }
                sqlx::query("SELECT set_config('search_path', $1, false)")
                    .bind(search_path)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect_with((*shared.connect_options()).clone())
        .await
        .map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))))
}

#[cfg(not(feature = "postgres"))]
async fn acquire_postgres(_db: &DatabaseConnection) -> Result<MigrationLock, MigrateError> {
    Err(MigrateError::Unsupported {
        connection: "PostgreSQL (this build has no `postgres` feature)".to_owned(),
    })
}

/// `BEGIN IMMEDIATE`, tried again for as long as another writer holds the database.
async fn acquire_sqlite(db: &DatabaseConnection) -> Result<MigrationLock, MigrateError> {
    let mut waited = false;
    loop {
        let begun = db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await;
        match begun {
            Ok(txn) => {
                return Ok(MigrationLock {
                    held: Held::Sqlite(txn),
                    waited,
                });
            }
            // Nothing has happened yet when `BEGIN IMMEDIATE` fails: trying again is safe.
            Err(err) if is_sqlite_busy(&err) => {
                waited = true;
                tokio::time::sleep(SQLITE_RETRY_PAUSE).await;
            }
            Err(err) => return Err(MigrateError::Lock(err)),
        }
    }
}

/// SQLite's `SQLITE_BUSY` (another connection writes) or `SQLITE_LOCKED` (the same, in a
/// shared-cache in-memory database).
fn is_sqlite_busy(err: &DbErr) -> bool {
    let (DbErr::Query(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Conn(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    match e.as_ref() {
        sea_orm_migration::sea_orm::sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}
