//! Usage: what each user did per UTC day (`usage_metrics`), as the database counted it.
//!
//! Invariants:
//! - Nothing here writes. The database keeps one row per user and UTC day and adds to it
//!   in the same transaction as the action it counts (a session started, a coding job
//!   completed, a conversation created, the tokens of the turns written, the credits
//!   spent), on both backends, so the counts are exact under concurrency and an action
//!   that is refused or rolled back counts nothing. On PostgreSQL `authenticated` may only
//!   read its own rows; every write is the database's own.
//! - A user reads only their own usage: naming someone else reads nothing (no rows, zero
//!   totals), exactly as for a user with no usage, so ids cannot be probed (as
//!   `projects::list` and `credits::history` do). The service reads anyone's.
//! - A range is a closed interval of UTC days, `from..=to`, at most [`MAX_RANGE_DAYS`]
//!   days (a leap year), within the years 1..=9999. [`range`] returns the stored rows
//!   only: **a day on which nothing was counted has no row and is left out** (not
//!   zero-filled), so every item is a real row with its id and timestamps. [`totals`]
//!   sums the same rows in one aggregate statement.
//!
//! Each call is one statement: one message on a PostgreSQL pool (see the crate's
//! README, "Round trips"), served by the `(user_id, day)` unique index.

use chrono::{Datelike, NaiveDate};
use forge_entity::ids::ProfileId;
use forge_entity::usage_metrics::{self, Column};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select};

use crate::actor::{Access, Actor, Connection};
use crate::error::{ForgeError, Result};
use crate::scoped::{self, Scoped};

const ENTITY: &str = "usage metrics";

/// The longest range [`range`] and [`totals`] accept, in days (both ends included).
pub const MAX_RANGE_DAYS: i64 = 366;

/// Sums of a user's usage over a range of days, read by [`totals`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UsageTotals {
    /// The user.
    pub user_id: ProfileId,
    /// The first day summed.
    pub from: NaiveDate,
    /// The last day summed (included).
    pub to: NaiveDate,
    /// Days in the range on which anything was counted (days with a row).
    pub active_days: i64,
    /// Coding sessions started.
    pub sessions_started: i64,
    /// Coding jobs completed.
    pub jobs_completed: i64,
    /// Conversations created.
    pub conversations_created: i64,
    /// Tokens of the conversation turns written.
    pub tokens: i64,
    /// Credits spent.
    pub credits_spent: i64,
}

/// Usage rows visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<usage_metrics::Entity> {
    scoped::owned_by(actor, Column::UserId)
}

impl Scoped for usage_metrics::Entity {
    const NAME: &'static str = ENTITY;

    fn key() -> Self::Column {
        Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

/// `from..=to` checked: in order, at most [`MAX_RANGE_DAYS`] days, within the years
/// 1..=9999 (SQLite compares days as `YYYY-MM-DD` text).
fn checked_range(from: NaiveDate, to: NaiveDate) -> Result<()> {
    for day in [from, to] {
        if !crate::validate::INSTANT_YEARS.contains(&day.year()) {
            return Err(ForgeError::invalid(
                "range",
                format!("{day} is outside the years 1..=9999"),
            ));
        }
    }
    if from > to {
        return Err(ForgeError::invalid("range", "`from` is after `to`"));
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_RANGE_DAYS {
        return Err(ForgeError::invalid(
            "range",
            format!("{days} days long, at most {MAX_RANGE_DAYS} allowed"),
        ));
    }
    Ok(())
}

/// `user`'s rows of `from..=to` that `actor` may see.
fn in_range(
    actor: Actor,
    user: ProfileId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Select<usage_metrics::Entity>> {
    checked_range(from, to)?;
    Ok(visible_to(actor)
        .filter(Column::UserId.eq(user))
        .filter(Column::Day.between(from, to)))
}

/// `user`'s usage rows for the UTC days `from..=to`, oldest day first; days on which
/// nothing was counted have no row and are left out. One statement. A user naming
/// someone else gets no rows.
///
/// # Errors
/// [`ForgeError::Validation`] (`range`) when `from` is after `to`, the range is longer
/// than [`MAX_RANGE_DAYS`] days or a day is outside the years 1..=9999.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "range", user = %user))]
pub async fn range<C>(
    db: &C,
    actor: Actor,
    user: ProfileId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<usage_metrics::Model>>
where
    C: Connection,
{
    let select = in_range(actor, user, from, to)?.order_by_asc(Column::Day);
    scoped::all(db, actor, select).await
}

/// `user`'s usage summed over the UTC days `from..=to`, in one aggregate statement
/// (zeros when nothing was counted, and for a user naming someone else).
///
/// # Errors
/// As [`range`].
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "totals", user = %user))]
pub async fn totals<C>(
    db: &C,
    actor: Actor,
    user: ProfileId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<UsageTotals>
where
    C: Connection,
{
    // SUM of a bigint is a numeric on PostgreSQL: cast every sum back to a bigint.
    let sum = |column: &str| Expr::cust(format!("CAST(COALESCE(SUM({column}), 0) AS BIGINT)"));
    let select = in_range(actor, user, from, to)?
        .select_only()
        .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "active_days")
        .column_as(sum("sessions_started"), "sessions_started")
        .column_as(sum("jobs_completed"), "jobs_completed")
        .column_as(sum("conversations_created"), "conversations_created")
        .column_as(sum("tokens"), "tokens")
        .column_as(sum("credits_spent"), "credits_spent");
    let stmt = select.build(db.get_database_backend());
    let rows = scoped::rows(db, actor, Access::Read, stmt).await?;
    let row = rows.first().ok_or_else(|| {
        ForgeError::Db(sea_orm::DbErr::Custom(
            "the usage totals returned no row".into(),
        ))
    })?;
    let n = |column: &str| -> Result<i64> { Ok(row.try_get("", column)?) };
    Ok(UsageTotals {
        user_id: user,
        from,
        to,
        active_days: n("active_days")?,
        sessions_started: n("sessions_started")?,
        jobs_completed: n("jobs_completed")?,
        conversations_created: n("conversations_created")?,
        tokens: n("tokens")?,
        credits_spent: n("credits_spent")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("a valid day")
    }

    #[test]
    fn ranges_are_checked() {
        assert!(checked_range(day(2026, 1, 1), day(2026, 1, 1)).is_ok());
        assert!(
            checked_range(day(2024, 1, 1), day(2024, 12, 31)).is_ok(),
            "366 days"
        );
        assert!(
            checked_range(day(2024, 1, 1), day(2025, 1, 1)).is_err(),
            "367 days"
        );
        assert!(checked_range(day(2026, 1, 2), day(2026, 1, 1)).is_err());
        assert!(checked_range(day(0, 12, 31), day(1, 1, 1)).is_err());
        assert!(checked_range(day(9999, 12, 31), day(10000, 1, 1)).is_err());
    }
}
