//! Who a call runs for, and the database context that goes with it.
//!
//! Every repository call takes an [`Actor`]: a [`Actor::User`] sees and changes only
//! their own rows; [`Actor::Service`] (workers, admin code) sees everything.
//!
//! On PostgreSQL every call runs inside a transaction (a savepoint when the caller passed
//! their own transaction) that switches role: a user's call to `authenticated` with the
//! user's JWT claims set locally, so the row-level security policies, column privileges
//! and triggers of the database hold even if a repository filter were forgotten; a
//! service call to `service_role` (which bypasses row-level security). Every setting is
//! transaction-local: at top level `COMMIT` discards it; inside a caller's transaction the
//! previous role and claims are put back before the savepoint is released. Nothing leaks
//! to the caller's next statement or to the next user of a pooled connection. A call that
//! is a single statement skips the transaction altogether (see `scoped`).
//!
//! The role Forge connects as must be allowed to `SET ROLE` to both. The recommended
//! setup is two roles: an owner that runs the migrations (Supabase's `postgres`, or any
//! role with `CREATEROLE` that is a superuser or has `BYPASSRLS`), and an application
//! role that Forge connects as at run time, owning nothing and holding no privilege of its
//! own: `CREATE ROLE forge_app LOGIN NOINHERIT PASSWORD '…'; GRANT authenticated,
//! service_role TO forge_app;`. SQL that forgets to enter a context then runs as
//! `forge_app` and is refused (permission denied) instead of seeing every tenant.
//!
//! On SQLite the repository filters alone carry isolation.

use std::future::Future;
use std::pin::Pin;

use forge_entity::ids::ProfileId;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait, Value,
};

use crate::error::{ForgeError, Result};

/// A connection a repository call can run on: the pool (`DatabaseConnection`) or a
/// caller's transaction (`DatabaseTransaction`).
pub trait Connection:
    ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction> + 'static
{
}

impl<C> Connection for C where
    C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction> + 'static
{
}

/// Whether `db` is a caller's transaction (Forge's call then runs in a savepoint).
fn is_callers_transaction<C: Connection>(db: &C) -> bool {
    (db as &dyn std::any::Any).is::<DatabaseTransaction>()
}

/// On whose behalf a call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// An end user, by profile id (= auth user id): only their own rows.
    User(ProfileId),
    /// Workers and admin code: every row, and the service-only operations.
    Service,
}

impl Actor {
    /// The user's id, or `None` for the service.
    pub fn user_id(&self) -> Option<ProfileId> {
        match self {
            Self::User(id) => Some(*id),
            Self::Service => None,
        }
    }

    /// Refuses a user with [`ForgeError::Forbidden`] for a service-only `action`.
    ///
    /// # Errors
    /// [`ForgeError::Forbidden`] when `self` is a user.
    pub fn require_service(&self, action: &'static str) -> Result<()> {
        match self {
            Self::Service => Ok(()),
            Self::User(_) => Err(ForgeError::Forbidden { action }),
        }
    }
}

/// The owner of a new row: a user creates only for themselves, the service names one.
///
/// The one rule for someone else's row, creating included: a user who names another
/// owner gets [`ForgeError::NotFound`] for that profile, exactly as if it did not exist
/// (a user sees no other profile), so ids cannot be probed.
pub(crate) fn owner_of_new(actor: Actor, owner: Option<ProfileId>) -> Result<ProfileId> {
    match (actor, owner) {
        (Actor::User(uid), None) => Ok(uid),
        (Actor::User(uid), Some(o)) if o == uid => Ok(uid),
        (Actor::User(_), Some(o)) => Err(ForgeError::not_found("profile", o)),
        (Actor::Service, Some(o)) => Ok(o),
        (Actor::Service, None) => Err(ForgeError::invalid(
            "owner",
            "the service must name the owner",
        )),
    }
}

/// Whether a scoped call writes. On SQLite, writers take the write lock up front
/// (`BEGIN IMMEDIATE`) so concurrent writers queue on the busy timeout instead of failing
/// to upgrade a read lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only reads.
    Read,
    /// Reads and writes.
    Write,
}

/// A future borrowing the transaction it runs in.
pub type ScopedFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 't>>;

/// Runs `f` in a transaction for `actor` and commits it when `f` succeeds (rolls back when
/// it fails). Inside a caller's transaction this is a savepoint.
///
/// On PostgreSQL, for a user `f` runs as role `authenticated` with `request.jwt.claims`
/// and `request.jwt.claim.sub` set to the user, so RLS applies to every statement in it;
/// for the service it runs as `service_role` with no `sub`. The caller's role and claims
/// are restored before the savepoint is released. Use it to
/// run your own queries under a user's RLS context:
///
/// ```no_run
/// # use forge_service::{Actor, Access, run_as};
/// # use forge_entity::prelude::*;
/// # use sea_orm::EntityTrait;
/// # async fn f(db: &sea_orm::DatabaseConnection, user: forge_entity::ids::ProfileId) -> forge_service::Result<()> {
/// let visible = run_as(db, Actor::User(user), Access::Read, |txn| {
///     Box::pin(async move { Ok(Projects::find().all(txn).await?) })
/// })
/// .await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// Whatever `f` returns, and [`ForgeError::Db`] when the transaction cannot be opened,
/// switched or committed.
pub async fn run_as<C, T, F>(db: &C, actor: Actor, access: Access, f: F) -> Result<T>
where
    C: Connection,
    T: Send,
    F: for<'t> FnOnce(&'t DatabaseTransaction) -> ScopedFuture<'t, T> + Send,
{
    let mode = match access {
        Access::Read => None,
        Access::Write => Some(SqliteTransactionMode::Immediate),
    };
    let txn = if is_callers_transaction(db) {
        savepoint(db).await?
    } else if db.get_database_backend() == DbBackend::Sqlite && mode.is_some() {
        begin_immediate(db).await?
    } else {
        db.begin().await?
    };
    let nested = is_callers_transaction(db);
    let pooled = !nested && through_pooler(db);
    let restore = if pooled {
        enter_pooled_context(&txn, actor).await?;
        None
    } else if txn.get_database_backend() == DbBackend::Postgres {
        enter_context(&txn, actor, nested).await?
    } else {
        None
    };
    let out = f(&txn).await;
    match out {
        Ok(value) => {
            if let Some(previous) = restore {
                previous.put_back(&txn).await?;
            }
            if pooled {
                txn.execute_unprepared("DEALLOCATE ALL").await?;
            }
            txn.commit().await?;
            Ok(value)
        }
        Err(err) => {
            if pooled {
                // In one message, so the server connection is still this transaction's
                // when its statements are removed (the pooler hands it on after the
                // message). The driver's own ROLLBACK that follows finds no transaction,
                // which the server answers with a warning only. A failure here is the
                // connection's, and the rollback below reports it.
                let _ = txn.execute_unprepared("ROLLBACK; DEALLOCATE ALL").await;
            }
            // Rolling back the transaction (or savepoint) also undoes the role switch.
            txn.rollback().await?;
            Err(err)
        }
    }
}

/// Opens a transaction of your own on `db`, to run several Forge calls (and your own
/// statements) all-or-nothing: pass `&txn` to them, then `txn.commit()`. Each Forge call
/// inside runs in a savepoint.
///
/// Prefer it to `db.begin()`: on a pool opened through a transaction-mode pooler
/// ([`forge_migration::Pooling::Transaction`]) it first removes the statements the server
/// connection holds from earlier transactions (`DEALLOCATE ALL`, one more round trip), so
/// the statements of this transaction cannot collide with them (`prepared statement
/// "sqlx_s_1" already exists`). On other pools it is `db.begin()`.
///
/// ```no_run
/// # use forge_service::{Actor, begin, credits, sessions};
/// # async fn f(db: &sea_orm::DatabaseConnection, user: forge_entity::ids::ProfileId, new: sessions::NewSession) -> forge_service::Result<()> {
/// let txn = begin(db).await?;
/// credits::spend(&txn, Actor::Service, credits::CreditChange::new(user, 10)).await?;
/// sessions::start(&txn, Actor::User(user), new).await?;
/// txn.commit().await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`ForgeError::Db`] when the transaction cannot be opened.
pub async fn begin(db: &sea_orm::DatabaseConnection) -> Result<DatabaseTransaction> {
    let txn = db.begin().await?;
    if forge_migration::is_pooled(db) {
        txn.execute_unprepared("DEALLOCATE ALL").await?;
    }
    Ok(txn)
}

/// Whether `db` is a pool opened through a transaction-mode pooler
/// ([`forge_migration::Pooling::Transaction`]).
pub(crate) fn through_pooler<C: Connection>(db: &C) -> bool {
    crate::scoped::pool_of(db).is_some_and(forge_migration::is_pooled)
}

/// [`enter_context`] for a transaction through a transaction-mode pooler, in one
/// simple-protocol message: it first removes every prepared statement the server
/// connection holds (left by whichever client had it before; the driver keeps none across
/// transactions there, so names it chooses next cannot collide), then sets the role, the
/// claims and `idle_in_transaction_session_timeout` for this transaction only (a pooler
/// refuses it as a startup option).
async fn enter_pooled_context(txn: &DatabaseTransaction, actor: Actor) -> Result<()> {
    let (role, claims, sub) = context_literals(actor);
    let timeout = forge_migration::IDLE_IN_TRANSACTION_TIMEOUT.as_secs();
    txn.execute_unprepared(&format!(
        "DEALLOCATE ALL; \
         SELECT set_config('role', '{role}', true), \
                set_config('request.jwt.claims', '{claims}', true), \
                set_config('request.jwt.claim.sub', '{sub}', true), \
                set_config('idle_in_transaction_session_timeout', '{timeout}s', true)"
    ))
    .await?;
    Ok(())
}

/// Opens Forge's savepoint inside the caller's transaction `db`, so that dropping the
/// call's future cannot cost the caller their transaction.
///
/// The driver counts a savepoint only once the server has confirmed it; a future dropped
/// while `SAVEPOINT` is on the wire makes it roll back one level too far — the caller's
/// whole transaction — and the caller's later statements then autocommit while their
/// `commit()` succeeds doing nothing. On a multi-threaded Tokio runtime the savepoint is
/// therefore opened in [`tokio::task::block_in_place`]: there is no `.await` at which the
/// call could be dropped until the driver has counted it. (On a current-thread runtime that
/// is not possible; the next Forge call on a transaction lost that way fails with
/// [`ForgeError::TransactionLost`] instead of silently running outside it.)
async fn savepoint<C: Connection>(db: &C) -> Result<DatabaseTransaction> {
    if db.get_database_backend() == DbBackend::Postgres {
        require_open_transaction(db).await?;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| handle.block_on(db.begin()))?)
        }
        _ => Ok(db.begin().await?),
    }
}

/// Refuses a caller's transaction that the server no longer holds open. `SAVEPOINT` is
/// refused outside a transaction block (SQLSTATE 25P01), and releasing it at once leaves an
/// open transaction as it was; one round trip, simple protocol.
async fn require_open_transaction<C: Connection>(db: &C) -> Result<()> {
    match db
        .execute_unprepared("SAVEPOINT forge_probe; RELEASE SAVEPOINT forge_probe")
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if sql_state(&err).as_deref() == Some("25P01") => Err(ForgeError::TransactionLost),
        Err(err) => Err(err.into()),
    }
}

/// The SQLSTATE of a database error.
fn sql_state(err: &sea_orm::DbErr) -> Option<String> {
    use sea_orm::{DbErr, RuntimeErr};
    let (DbErr::Query(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Conn(RuntimeErr::SqlxError(e))) = err
    else {
        return None;
    };
    e.as_database_error()
        .and_then(|db| db.code().map(|code| code.into_owned()))
}

/// How often `BEGIN IMMEDIATE` is tried when SQLite's write lock stays taken.
const SQLITE_BUSY_ATTEMPTS: u32 = 10;

/// `BEGIN IMMEDIATE` on SQLite, tried again while the database stays locked.
///
/// SQLite's busy handler polls for the write lock, so under many competing writers one of
/// them can miss every chance for the whole busy timeout. Nothing has happened yet when
/// `BEGIN IMMEDIATE` fails, so trying again is always safe; once it succeeds the
/// transaction holds the write lock and (in WAL mode) nothing later in it waits for a lock.
async fn begin_immediate<C: Connection>(db: &C) -> Result<DatabaseTransaction> {
    let mut attempt = 1;
    loop {
        let begun = db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await;
        match begun {
            Err(err) if attempt < SQLITE_BUSY_ATTEMPTS && is_sqlite_busy(&err) => attempt += 1,
            begun => return Ok(begun?),
        }
    }
}

/// SQLite's `SQLITE_BUSY` ("database is locked"): the busy timeout ran out.
fn is_sqlite_busy(err: &sea_orm::DbErr) -> bool {
    sql_state(err)
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

/// The role a user's call runs as on PostgreSQL (row-level security applies to it).
pub const USER_ROLE: &str = "authenticated";

/// The role a service call runs as on PostgreSQL (it bypasses row-level security).
pub const SERVICE_ROLE: &str = "service_role";

/// The role and claims in force before a context was entered.
struct PreviousContext {
    role: String,
    claims: String,
    sub: String,
}

/// The role, JWT claims and `sub` of `actor`'s context, as text that is safe to put
/// between single quotes (a role name, JSON of a uuid, a uuid).
pub(crate) fn context_literals(actor: Actor) -> (&'static str, String, String) {
    match actor {
        Actor::User(uid) => (
            USER_ROLE,
            format!(r#"{{"sub":"{uid}","role":"{USER_ROLE}"}}"#),
            uid.to_string(),
        ),
        Actor::Service => (
            SERVICE_ROLE,
            format!(r#"{{"role":"{SERVICE_ROLE}"}}"#),
            String::new(),
        ),
    }
}

/// Switches `txn` to `actor`'s role and JWT claims in one statement. Inside a caller's
/// transaction (`nested`) it returns what was in force before, to be put back before the
/// savepoint is released (a released savepoint keeps its `SET LOCAL`s); at top level
/// `COMMIT` or `ROLLBACK` discards them, so nothing is read or restored.
async fn enter_context(
    txn: &DatabaseTransaction,
    actor: Actor,
    nested: bool,
) -> Result<Option<PreviousContext>> {
    let previous = if nested {
        let row = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT current_setting('role'), \
                        coalesce(current_setting('request.jwt.claims', true), ''), \
                        coalesce(current_setting('request.jwt.claim.sub', true), '')",
            ))
            .await?
            .ok_or_else(|| {
                ForgeError::Db(sea_orm::DbErr::Custom("no row from current_setting".into()))
            })?;
        Some(PreviousContext {
            role: row.try_get_by_index(0)?,
            claims: row.try_get_by_index(1)?,
            sub: row.try_get_by_index(2)?,
        })
    } else {
        None
    };
    let (role, claims, sub) = context_literals(actor);
    set_context(txn, role, &claims, &sub).await?;
    Ok(previous)
}

impl PreviousContext {
    async fn put_back(self, txn: &DatabaseTransaction) -> Result<()> {
        set_context(txn, &self.role, &self.claims, &self.sub).await
    }
}

async fn set_context(txn: &DatabaseTransaction, role: &str, claims: &str, sub: &str) -> Result<()> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('role', $1, true), \
                set_config('request.jwt.claims', $2, true), \
                set_config('request.jwt.claim.sub', $3, true)",
        [
            Value::from(role.to_owned()),
            Value::from(claims.to_owned()),
            Value::from(sub.to_owned()),
        ],
    ))
    .await?;
    Ok(())
}
