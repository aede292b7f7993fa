//! The one scoped core every aggregate reads through: what an actor may see of a table
//! ([`Scoped`]), one row of it by id ([`find`], [`get`], [`lock`]), and one statement run
//! for an actor in the fewest round trips ([`rows`], [`one`], [`all`]).
//!
//! A call that is one statement is sent as one statement:
//! - on a PostgreSQL pool, as **one message** of the simple query protocol,
//!   `SET LOCAL ROLE …; SET LOCAL request.jwt.claims …; SET LOCAL request.jwt.claim.sub …;
//!   <statement>`: the server runs the message as one implicit transaction, so the role
//!   and claims hold for exactly that statement (row-level security, column privileges and
//!   triggers see the actor) and are gone when it ends — no `BEGIN`, no `COMMIT`, no save
//!   and restore, one round trip. Values are written into the text by SeaORM's query
//!   builder (quoted and escaped as literals). The statements a process runs over and
//!   over — a row by key, a list page, an event append, the queue — end the message in
//!   `EXECUTE forge_<hash>(<values>)` of a statement prepared once per server connection
//!   ([`prepared_rows`]), so their plan is reused; the rest are planned afresh ([`rows`]).
//!   Through a transaction pooler (`Pooling::Transaction`) nothing is prepared: every
//!   statement takes the plain message, which any server connection can run;
//! - on a SQLite pool, a read runs as it is (SQLite runs every statement atomically); a
//!   write still takes the write lock up front (`BEGIN IMMEDIATE`, see [`run_as`]);
//! - inside a caller's transaction, in a savepoint with the actor's context (see
//!   [`run_as`]), so the caller's transaction is left as it was found.
//!
//! A dropped future cannot leave anything behind: the implicit transaction is the
//! server's, it ends with the message whether or not anyone reads the answer, and the pool
//! checks a returned connection before reuse (`forge_migration::connect`).

use std::fmt::Display;

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, QueryFilter, QueryResult, QuerySelect, QueryTrait, Select, Statement,
    UpdateMany, Value,
};

use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};

/// A table whose rows an [`Actor`] sees through one filter: a user their own (or, for a
/// shared catalogue, what the contract shows them), the service everything.
pub(crate) trait Scoped: EntityTrait {
    /// The name of one row in errors, e.g. `"project"`.
    const NAME: &'static str;

    /// The key column that [`find`], [`get`] and [`lock`] look up.
    fn key() -> Self::Column;

    /// The rows of this table `actor` may see.
    fn visible_to(actor: Actor) -> Select<Self>;
}

/// The rows of `E` whose `owner` column is the user's; every row for the service. The
/// one way a table owned by a profile is scoped.
pub(crate) fn owned_by<E: EntityTrait>(actor: Actor, owner: E::Column) -> Select<E> {
    E::find().filter(owner_is(actor, owner))
}

/// The condition behind [`owned_by`], for statements that are not a `Select` (a scoped
/// `UPDATE … WHERE`): the user's own rows, or no restriction for the service.
pub(crate) fn owner_is<C: ColumnTrait>(actor: Actor, owner: C) -> Condition {
    Condition::all().add_option(actor.user_id().map(|uid| owner.eq(uid)))
}

/// The rows of `E` whose parent (`parent_key` = `E`'s `fk`) the actor may see; every row
/// for the service. The one way a table owned through its parent is scoped.
pub(crate) fn owned_through<E, P>(actor: Actor, fk: E::Column, parent_key: P::Column) -> Select<E>
where
    E: EntityTrait,
    P: Scoped,
{
    let select = E::find();
    match actor {
        Actor::User(_) => {
            let parents = P::visible_to(actor)
                .select_only()
                .column(parent_key)
                .into_query();
            select.filter(fk.in_subquery(parents))
        }
        Actor::Service => select,
    }
}

/// The row with key `id` if `actor` may see it: one statement.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
pub(crate) async fn find<E, C>(
    db: &C,
    actor: Actor,
    id: impl Into<Value> + Send,
) -> Result<Option<E::Model>>
where
    E: Scoped,
    E::Model: Send + Sync,
    C: Connection,
{
    one(db, actor, E::visible_to(actor).filter(E::key().eq(id))).await
}

/// The row with key `id`; someone else's row is [`ForgeError::NotFound`], exactly like a
/// missing one, so ids cannot be probed.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or `actor` may not see it.
pub(crate) async fn get<E, C, I>(db: &C, actor: Actor, id: I) -> Result<E::Model>
where
    E: Scoped,
    E::Model: Send + Sync,
    C: Connection,
    I: Into<Value> + Display + Send,
{
    let shown = id.to_string();
    find::<E, C>(db, actor, id)
        .await?
        .ok_or_else(|| ForgeError::not_found(E::NAME, shown))
}

/// The row with key `id`, locked for the rest of `txn` (`FOR UPDATE` on PostgreSQL; on
/// SQLite the write transaction already holds the database's lock), so the state a call
/// checks is the state it changes.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or `actor` may not see it.
pub(crate) async fn lock<E, I>(txn: &DatabaseTransaction, actor: Actor, id: I) -> Result<E::Model>
where
    E: Scoped,
    I: Into<Value> + Display,
{
    let shown = id.to_string();
    E::visible_to(actor)
        .filter(E::key().eq(id))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found(E::NAME, shown))
}

/// Applies `update` to the row with key `id` if `actor` may see it and `only_if` holds,
/// returning the changed row: one conditional `UPDATE … RETURNING *` (on PostgreSQL one
/// message, see the module docs). `None` when nothing matched — the caller says why, off
/// the hot path. Racing callers are decided by the database on the row it holds.
///
/// # Errors
/// The database's refusal, mapped by [`ForgeError::from`].
pub(crate) async fn update_returning<E, C, I>(
    db: &C,
    actor: Actor,
    id: I,
    update: UpdateMany<E>,
    only_if: Condition,
) -> Result<Option<E::Model>>
where
    E: Scoped,
    E::Model: Send + Sync,
    C: Connection,
    I: Into<Value> + Clone,
{
    let update = update.filter(E::key().eq(id.clone())).filter(only_if);
    let update = match actor {
        Actor::Service => update,
        Actor::User(_) => {
            let visible = E::visible_to(actor)
                .select_only()
                .column(E::key())
                .filter(E::key().eq(id))
                .into_query();
            update.filter(E::key().in_subquery(visible))
        }
    };
    let mut update = update.into_query();
    update.returning_all();
    let stmt = db.get_database_backend().build(&update);
    match rows(db, actor, Access::Write, stmt).await?.first() {
        Some(row) => Ok(Some(E::Model::from_query_result(row, "")?)),
        None => Ok(None),
    }
}

/// The first row `select` returns for `actor`, in one statement.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
pub(crate) async fn one<E, C>(db: &C, actor: Actor, select: Select<E>) -> Result<Option<E::Model>>
where
    E: EntityTrait,
    E::Model: Send + Sync,
    C: Connection,
{
    let stmt = select.limit(1).build(db.get_database_backend());
    let rows = prepared_rows(db, actor, Access::Read, stmt).await?;
    match rows.first() {
        Some(row) => Ok(Some(E::Model::from_query_result(row, "")?)),
        None => Ok(None),
    }
}

/// Every row `select` returns for `actor`, in one statement.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
pub(crate) async fn all<E, C>(db: &C, actor: Actor, select: Select<E>) -> Result<Vec<E::Model>>
where
    E: EntityTrait,
    E::Model: Send + Sync,
    C: Connection,
{
    let stmt = select.build(db.get_database_backend());
    prepared_rows(db, actor, Access::Read, stmt)
        .await?
        .iter()
        .map(|row| Ok(E::Model::from_query_result(row, "")?))
        .collect()
}

/// Runs one statement for `actor` in the fewest round trips (see the module docs) and
/// returns its rows (`RETURNING` rows for a write).
///
/// # Errors
/// The database's refusal, mapped by [`ForgeError::from`].
pub(crate) async fn rows<C: Connection>(
    db: &C,
    actor: Actor,
    access: Access,
    stmt: Statement,
) -> Result<Vec<QueryResult>> {
    if let Some(pool) = pool_of(db) {
        match db.get_database_backend() {
            #[cfg(feature = "postgres")]
            DbBackend::Postgres => return postgres_one_message(pool, actor, &stmt).await,
            DbBackend::Sqlite if access == Access::Read => {
                return Ok(pool.query_all_raw(stmt).await?);
            }
            _ => {}
        }
    }
    run_as(db, actor, access, move |txn| {
        Box::pin(async move { Ok(txn.query_all_raw(stmt).await?) })
    })
    .await
}

/// Like [`rows`], but on a PostgreSQL pool the statement is prepared once per server
/// connection and executed in the same one message (see [`prepared_one_message`]): one
/// round trip and a cached plan. For the statements a process runs over and over (a row
/// by key, a list page, an append, the queue); their texts carry no values, so a
/// connection keeps one prepared statement per shape.
///
/// # Errors
/// The database's refusal, mapped by [`ForgeError::from`].
pub(crate) async fn prepared_rows<C: Connection>(
    db: &C,
    actor: Actor,
    access: Access,
    stmt: Statement,
) -> Result<Vec<QueryResult>> {
    #[cfg(feature = "postgres")]
    if let Some(pool) = pool_of(db)
        && matches!(
            pool.inner,
            sea_orm::DatabaseConnectionType::SqlxPostgresPoolConnection(_)
        )
        // Through a transaction pooler nothing stays prepared: the plain one message.
        && !forge_migration::is_pooled(pool)
    {
        return prepared_one_message(pool, actor, stmt).await;
    }
    rows(db, actor, access, stmt).await
}

/// `db` when it is the pool (not a caller's transaction).
pub(crate) fn pool_of<C: Connection>(db: &C) -> Option<&sea_orm::DatabaseConnection> {
    (db as &dyn std::any::Any).downcast_ref::<sea_orm::DatabaseConnection>()
}

/// The statement with the actor's context, as one simple-protocol message on `db`'s pool.
#[cfg(feature = "postgres")]
async fn postgres_one_message(
    db: &sea_orm::DatabaseConnection,
    actor: Actor,
    stmt: &Statement,
) -> Result<Vec<QueryResult>> {
    use sea_orm::sqlx;
    use sea_orm::{DatabaseConnectionType, DbErr};
    if !matches!(
        db.inner,
        DatabaseConnectionType::SqlxPostgresPoolConnection(_)
    ) {
        return Err(ForgeError::Db(DbErr::Custom(
            "a PostgreSQL connection that is not a sqlx pool".into(),
        )));
    }
    let sql = format!("{}{stmt}", context_preamble(actor));
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.get_postgres_connection_pool())
        .await
        .map_err(driver_error)?;
    Ok(rows.into_iter().map(QueryResult::from).collect())
}

/// Runs `stmt` for `actor` on a PostgreSQL pool in one round trip with a cached plan: one
/// simple-protocol message `SET LOCAL ROLE …; SET LOCAL …; EXECUTE forge_<hash>(<values>)`.
///
/// The server runs the message as one implicit transaction, so the role and claims hold
/// for exactly that statement, as with [`rows`]; but the statement is prepared
/// (`PREPARE`, named by a hash of its text) on the connection, so it is planned once per
/// connection instead of on every call, and only the values travel, written as literals
/// (by SeaORM's query builder, quoted and escaped). A connection that does not have it yet
/// answers `EXECUTE` with SQLSTATE 26000, having done nothing; the same message with the
/// `PREPARE` in front then runs on the same connection. A pool opened through a
/// transaction pooler (`Pooling::Transaction`) never takes this route: the next message
/// may land on another server connection, which may already hold the name (SQLSTATE
/// 42P05), and statements left prepared there are exactly what pooler mode avoids.
///
/// A dropped future leaves nothing behind, as with [`rows`]: the implicit
/// transaction ends with the message, and the pool checks the connection on its return.
#[cfg(feature = "postgres")]
async fn prepared_one_message(
    pool: &sea_orm::DatabaseConnection,
    actor: Actor,
    stmt: Statement,
) -> Result<Vec<sea_orm::QueryResult>> {
    use sea_orm::sqlx;
    use std::hash::{Hash, Hasher};

    let mut hasher = std::hash::DefaultHasher::new();
    stmt.sql.hash(&mut hasher);
    let name = format!("forge_{:016x}", hasher.finish());
    let values = stmt.values.clone().map(|v| v.0).unwrap_or_default();
    let execute = if values.is_empty() {
        format!("EXECUTE {name}")
    } else {
        let params = (1..=values.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        // SeaORM writes the values into the text as literals, as `scoped::rows` does.
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXECUTE {name}({params})"),
            values,
        )
        .to_string()
    };
    let context = context_preamble(actor);
    let mut conn = pool
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(driver_error)?;
    let sent = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{context}{execute}")))
        .fetch_all(&mut *conn)
        .await;
    let rows = match sent {
        // 26000: no prepared statement of that name on this connection (yet).
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("26000") => {
            let sql = format!("{context}PREPARE {name} AS {}; {execute}", stmt.sql);
            match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut *conn)
                .await
            {
                // A parameter whose type PostgreSQL cannot tell from the text alone (42P18,
                // 42P08): this statement is not prepared; it runs planned afresh.
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("42P18" | "42P08")) =>
                {
                    drop(conn);
                    return postgres_one_message(pool, actor, &stmt).await;
                }
                sent => sent,
            }
        }
        sent => sent,
    }
    .map_err(driver_error)?;
    Ok(rows.into_iter().map(sea_orm::QueryResult::from).collect())
}

/// The statements that enter `actor`'s context for the rest of one simple-protocol
/// message (its implicit transaction), ending in `"; "`.
#[cfg(feature = "postgres")]
fn context_preamble(actor: Actor) -> String {
    let (role, claims, sub) = crate::actor::context_literals(actor);
    format!(
        "SET LOCAL ROLE {role}; SET LOCAL request.jwt.claims = '{claims}'; \
         SET LOCAL request.jwt.claim.sub = '{sub}'; "
    )
}

/// A driver error as SeaORM reports it, so [`ForgeError::from`] maps it like any other.
#[cfg(feature = "postgres")]
pub(crate) fn driver_error(e: sea_orm::sqlx::Error) -> sea_orm::DbErr {
    sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e)))
}
