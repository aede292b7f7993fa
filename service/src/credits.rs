//! Credits: each user's balance (`credit_accounts`) and its append-only ledger
//! (`credit_transactions`).
//!
//! Invariants, held by the database on both backends (forge-migration's accounts
//! migration), so they hold for every writer and under any concurrency:
//! - Every profile has one account, created with it and credited a 100-credit
//!   `signup_bonus` ledger row.
//! - A ledger row is the only way a balance moves: [`grant`], [`spend`] and [`refund`]
//!   each insert exactly one row, in one statement, and the database applies its amount
//!   to the account (locking the account row, so concurrent changes queue), records
//!   `balance_after`, and refuses a row that would take the balance below zero
//!   ([`ForgeError::InsufficientCredits`]; nothing is charged). So `balance` always equals
//!   the sum of the account's ledger and never goes negative, and of 50 concurrent spends
//!   of 3 from 100, exactly 33 succeed.
//! - An idempotency key is unique per account: a call repeating one (a retry after a lost
//!   reply, ten racing retries) is charged once and returns the original ledger row; the
//!   same key for a different kind or amount is a [`ForgeError::Conflict`].
//! - A spend that takes the balance from at least `forge_migration::CREDITS_LOW_THRESHOLD`
//!   (10) to below it makes the database send the user a `credits_low` notification, in
//!   the same transaction, unless their preferences mute it (see [`crate::notifications`]).
//! - Users read their own balance and history; every write is the service's
//!   ([`ForgeError::Forbidden`] for a user). Ledger rows never change and are not deleted.

use forge_entity::credit_accounts;
use forge_entity::credit_transactions::{self, CreditKind};
use forge_entity::ids::{CreditTransactionId, ProfileId};
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, Select, Statement,
};
use serde_json::Value as Json;

use crate::actor::{Access, Actor, Connection};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::validate;

/// Longest accepted `reference` and `idempotency_key`, in characters.
pub const MAX_REFERENCE: usize = 255;

const ENTITY: &str = "credit account";

/// A change of a user's balance: what [`grant`], [`spend`] and [`refund`] take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditChange {
    /// Whose account.
    pub user: ProfileId,
    /// How many credits: more than 0, at most `i64::MAX`. The kind gives the sign.
    pub amount: u64,
    /// What it paid for or came from (a session id, a payment id, …); trimmed, not
    /// blank, at most [`MAX_REFERENCE`] characters.
    pub reference: Option<String>,
    /// The caller's key for this operation, unique per account: repeating the call with
    /// the same key returns the original ledger row and charges nothing. Trimmed, not
    /// blank, at most [`MAX_REFERENCE`] characters.
    pub idempotency_key: Option<String>,
    /// A JSON object of details (`None`: `{}`).
    pub metadata: Option<Json>,
}

impl CreditChange {
    /// `amount` credits for `user`, with no reference, key or metadata.
    pub fn new(user: ProfileId, amount: u64) -> Self {
        Self {
            user,
            amount,
            reference: None,
            idempotency_key: None,
            metadata: None,
        }
    }

    /// The same change, carrying idempotency key `key`.
    pub fn idempotent(self, key: impl Into<String>) -> Self {
        Self {
            idempotency_key: Some(key.into()),
            ..self
        }
    }
}

/// Accounts visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<credit_accounts::Entity> {
    scoped::owned_by(actor, credit_accounts::Column::UserId)
}

/// Ledger rows visible to `actor`: their own, or all for the service.
pub fn ledger_visible_to(actor: Actor) -> Select<credit_transactions::Entity> {
    scoped::owned_by(actor, credit_transactions::Column::UserId)
}

/// An account is looked up by its user (`user_id` is unique): one per profile.
impl Scoped for credit_accounts::Entity {
    const NAME: &'static str = ENTITY;

    fn key() -> Self::Column {
        credit_accounts::Column::UserId
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

impl Scoped for credit_transactions::Entity {
    const NAME: &'static str = "credit transaction";

    fn key() -> Self::Column {
        credit_transactions::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        ledger_visible_to(actor)
    }
}

/// The account of `user`: its balance and lifetime totals.
///
/// # Errors
/// [`ForgeError::NotFound`] (`"credit account"`) when `user` does not exist or, for a
/// user, is someone else.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "balance", user = %user))]
pub async fn balance<C>(db: &C, actor: Actor, user: ProfileId) -> Result<credit_accounts::Model>
where
    C: Connection,
{
    scoped::get::<credit_accounts::Entity, C, _>(db, actor, user).await
}

/// One page of `user`'s ledger, newest first by `(created_at, id)`. A user sees only
/// their own: naming someone else gives an empty page.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE` or a cursor
/// that no page returned.
#[tracing::instrument(skip_all, fields(entity = "credit transaction", op = "history", user = %user))]
pub async fn history<C>(
    db: &C,
    actor: Actor,
    user: ProfileId,
    request: &PageRequest,
) -> Result<Page<credit_transactions::Model>>
where
    C: Connection,
{
    let select = ledger_visible_to(actor).filter(credit_transactions::Column::UserId.eq(user));
    pagination::fetch_page(
        db,
        actor,
        select,
        (
            credit_transactions::Column::CreatedAt,
            credit_transactions::Column::Id,
        ),
        Direction::NewestFirst,
        request,
        |t| (t.created_at, t.id),
    )
    .await
}

/// Adds `change.amount` credits to the user's balance (a `grant` ledger row; service
/// only) and returns the ledger row.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for an `amount` of 0
/// or above `i64::MAX`, a blank or over-long `reference` or `idempotency_key`, or
/// `metadata` that is not a JSON object; [`ForgeError::NotFound`] (`"credit account"`)
/// for an unknown user; [`ForgeError::Conflict`] when the idempotency key was used for a
/// different change.
#[tracing::instrument(skip_all, fields(entity = "credit transaction", op = "grant", user = %change.user, amount = change.amount))]
pub async fn grant<C>(
    db: &C,
    actor: Actor,
    change: CreditChange,
) -> Result<credit_transactions::Model>
where
    C: Connection,
{
    actor.require_service("granting credits")?;
    post(db, actor, CreditKind::Grant, change).await
}

/// Takes `change.amount` credits from the user's balance (a `spend` ledger row; service
/// only) and returns the ledger row. Crossing below the low-credit threshold notifies the
/// user (see the module docs).
///
/// # Errors
/// [`ForgeError::InsufficientCredits`] when the balance is smaller than the amount
/// (nothing is charged); [`ForgeError::Forbidden`] for a user; otherwise as [`grant`].
#[tracing::instrument(skip_all, fields(entity = "credit transaction", op = "spend", user = %change.user, amount = change.amount))]
pub async fn spend<C>(
    db: &C,
    actor: Actor,
    change: CreditChange,
) -> Result<credit_transactions::Model>
where
    C: Connection,
{
    actor.require_service("spending credits")?;
    post(db, actor, CreditKind::Spend, change).await
}

/// Gives `change.amount` credits back to the user (a `refund` ledger row; service only)
/// and returns the ledger row. Name what is refunded in `reference`.
///
/// # Errors
/// As [`grant`].
#[tracing::instrument(skip_all, fields(entity = "credit transaction", op = "refund", user = %change.user, amount = change.amount))]
pub async fn refund<C>(
    db: &C,
    actor: Actor,
    change: CreditChange,
) -> Result<credit_transactions::Model>
where
    C: Connection,
{
    actor.require_service("refunding credits")?;
    post(db, actor, CreditKind::Refund, change).await
}

/// A ledger row to insert, checked.
struct Entry {
    user: ProfileId,
    kind: CreditKind,
    /// Signed: negative for a spend.
    amount: i64,
    reference: Option<String>,
    idempotency_key: Option<String>,
    metadata: Json,
}

impl Entry {
    fn checked(kind: CreditKind, change: CreditChange) -> Result<Self> {
        let amount = i64::try_from(change.amount)
            .ok()
            .filter(|a| *a > 0)
            .ok_or_else(|| {
                ForgeError::invalid(
                    "amount",
                    format!("{} is outside 1..={}", change.amount, i64::MAX),
                )
            })?;
        Ok(Self {
            user: change.user,
            kind,
            amount: if kind == CreditKind::Spend {
                -amount
            } else {
                amount
            },
            reference: validate::optional_text(
                "reference",
                change.reference.as_deref(),
                MAX_REFERENCE,
            )?,
            idempotency_key: validate::optional_text(
                "idempotency_key",
                change.idempotency_key.as_deref(),
                MAX_REFERENCE,
            )?,
            metadata: validate::json_object("metadata", change.metadata.unwrap_or(Json::Null))?,
        })
    }
}

/// The columns of a ledger row, as `RETURNING` lists them.
const LEDGER_COLUMNS: &str = "id, account_id, user_id, amount, kind, balance_after, reference, \
                              idempotency_key, metadata, created_at";

/// The one statement that writes `entry`: an `INSERT … SELECT` from the user's account, so
/// an unknown user inserts nothing. The database's triggers apply the amount to the
/// account and refuse a negative balance or a taken idempotency key. `balance_after`:
/// PostgreSQL's trigger sets it before the row is stored (and `RETURNING` reports it);
/// SQLite's sets it after, which `RETURNING` does not see, so the statement writes the
/// same value itself — exact, since SQLite runs one writer at a time — floored at 0 so that
/// a retry reaches the unique index (its refusal) rather than the CHECK. Values are cast on
/// PostgreSQL, where an `INSERT … SELECT` list is not typed by its target columns.
fn insert_statement(backend: DbBackend, entry: &Entry) -> Statement {
    let values: Vec<sea_orm::Value> = vec![
        CreditTransactionId::new().into(),
        entry.amount.into(),
        entry.kind.as_str().into(),
        entry.reference.clone().into(),
        entry.idempotency_key.clone().into(),
        entry.metadata.clone().into(),
        crate::now().into(),
        entry.user.into(),
    ];
    let sql = match backend {
        DbBackend::Postgres => format!(
            "INSERT INTO credit_transactions \
               (id, account_id, user_id, amount, kind, reference, idempotency_key, metadata, \
                created_at) \
             SELECT CAST($1 AS uuid), a.id, a.user_id, CAST($2 AS bigint), $3, $4, $5, \
                    CAST($6 AS jsonb), CAST($7 AS timestamptz) \
             FROM credit_accounts a WHERE a.user_id = CAST($8 AS uuid) \
             RETURNING {LEDGER_COLUMNS}"
        ),
        _ => format!(
            "INSERT INTO credit_transactions \
               (id, account_id, user_id, amount, kind, balance_after, reference, \
                idempotency_key, metadata, created_at) \
             SELECT ?1, a.id, a.user_id, ?2, ?3, max(a.balance + ?2, 0), ?4, ?5, ?6, ?7 \
             FROM credit_accounts a WHERE a.user_id = ?8 \
             RETURNING {LEDGER_COLUMNS}"
        ),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Writes one ledger row for `change` (the caller checked the actor).
async fn post<C>(
    db: &C,
    actor: Actor,
    kind: CreditKind,
    change: CreditChange,
) -> Result<credit_transactions::Model>
where
    C: Connection,
{
    let entry = Entry::checked(kind, change)?;
    let stmt = insert_statement(db.get_database_backend(), &entry);
    match scoped::rows(db, actor, Access::Write, stmt).await {
        Ok(rows) => match rows.first() {
            Some(row) => Ok(credit_transactions::Model::from_query_result(row, "")?),
            None => Err(ForgeError::not_found(ENTITY, entry.user)),
        },
        Err(err) => refused(db, actor, &entry, err).await,
    }
}

/// Why the database refused `entry` (off the hot path): a repeated idempotency key
/// returns the row it first wrote (one more read); an insufficient balance names the
/// amount.
async fn refused<C>(
    db: &C,
    actor: Actor,
    entry: &Entry,
    err: ForgeError,
) -> Result<credit_transactions::Model>
where
    C: Connection,
{
    let repeated = matches!(err, ForgeError::Conflict { .. });
    if let (true, Some(key)) = (repeated, entry.idempotency_key.as_deref()) {
        // The key's first call has committed (racing retries queue on the account row),
        // and the database refuses a taken key before it looks at the balance: the
        // original row answers, whatever the balance is now.
        let first = scoped::one(
            db,
            actor,
            ledger_visible_to(actor)
                .filter(credit_transactions::Column::UserId.eq(entry.user))
                .filter(credit_transactions::Column::IdempotencyKey.eq(key)),
        )
        .await?;
        if let Some(first) = first {
            if first.kind == entry.kind && first.amount == entry.amount {
                return Ok(first);
            }
            return Err(ForgeError::Conflict {
                what: format!(
                    "idempotency key {key:?} was used for a {} of {}",
                    first.kind,
                    first.amount.abs()
                ),
            });
        }
    }
    match err {
        // PostgreSQL's trigger names the balance; SQLite's cannot (its messages are fixed),
        // so read it. The amount is this call's.
        ForgeError::InsufficientCredits { balance, .. } => {
            let balance = if balance < 0 {
                scoped::one(
                    db,
                    Actor::Service,
                    credit_accounts::Entity::find()
                        .filter(credit_accounts::Column::UserId.eq(entry.user)),
                )
                .await?
                .map_or(balance, |account| account.balance)
            } else {
                balance
            };
            Err(ForgeError::InsufficientCredits {
                balance,
                wanted: entry.amount.abs(),
            })
        }
        err => Err(err),
    }
}
