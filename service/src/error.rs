//! The one error type of every repository call.

use sea_orm::{DbErr, SqlErr};

/// What went wrong, in terms a caller can act on.
///
/// Constraint violations from the database are mapped once, here: a unique or
/// foreign-key violation becomes [`ForgeError::Conflict`]; anything else stays a
/// [`ForgeError::Db`].
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The row does not exist, or belongs to someone else (the two look the same, so ids
    /// cannot be probed).
    #[error("{entity} {id} not found")]
    NotFound {
        /// The kind of thing, e.g. `"project"`.
        entity: &'static str,
        /// The id that was asked for.
        id: String,
    },
    /// The call would break a uniqueness or reference rule (e.g. a duplicate email).
    #[error("conflict: {what}")]
    Conflict {
        /// What clashed.
        what: String,
    },
    /// An input was refused before anything was written.
    #[error("invalid {field}: {reason}")]
    Validation {
        /// The input field at fault.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A state change that the state machine does not allow.
    #[error("{entity} cannot go from {from} to {to}")]
    InvalidTransition {
        /// The kind of thing, e.g. `"session"`.
        entity: &'static str,
        /// Its current state.
        from: String,
        /// The state that was asked for.
        to: String,
    },
    /// A quota is used up (e.g. the profile's `sessions_limit`).
    #[error("limit reached: {what} (limit {limit})")]
    LimitReached {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: i64,
    },
    /// The acting user may not do this at all (a service-only operation).
    #[error("forbidden: {action} is for the service only")]
    Forbidden {
        /// What was attempted.
        action: &'static str,
    },
    /// A worker acted on a job whose lease it no longer holds (it expired and the job was
    /// claimed again, or the job was finished by someone else).
    #[error("lease lost: job {job} is no longer held by worker {worker}")]
    LeaseLost {
        /// The job.
        job: uuid::Uuid,
        /// The worker that acted.
        worker: String,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Db(DbErr),
}

/// The result of every repository call.
pub type Result<T, E = ForgeError> = std::result::Result<T, E>;

impl From<DbErr> for ForgeError {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(what)) => Self::Conflict { what },
            Some(SqlErr::ForeignKeyConstraintViolation(what)) => Self::Conflict { what },
            _ => Self::Db(err),
        }
    }
}

impl ForgeError {
    /// A [`ForgeError::NotFound`] for `entity` with `id`.
    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// A [`ForgeError::Validation`] for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Validation {
            field,
            reason: reason.into(),
        }
    }
}
