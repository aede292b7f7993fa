//! The one error type of every repository call.

use sea_orm::{DbErr, SqlErr};

/// What went wrong, in terms a caller can act on.
///
/// Refusals from the database are mapped once, here: a unique or foreign-key violation
/// becomes [`ForgeError::Conflict`]; a rule of the database's own triggers (their messages
/// read `forge:<kind>:<detail>` on both backends, see `forge-migration`'s database wall)
/// the variant of its kind; a JSON document over the size cap a
/// [`ForgeError::Validation`]; anything else stays a [`ForgeError::Db`].
///
/// The enum is `#[non_exhaustive]`: match the variants you act on and keep a fallback arm
/// (e.g. on [`ForgeError::code`]). Every variant has a stable machine-readable
/// [`code`](ForgeError::code) for APIs and logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// Not allowed in the row's current state: a change its state machine does not allow
    /// (`from` → `to`), or an operation the state does not allow (`to` names it, e.g. "a new
    /// turn" on an approved conversation, "a new session" on an archived project). The one
    /// variant for "not now, given where this row is" in every module (code
    /// `invalid_state`).
    #[error("{entity} cannot go from {from} to {to}")]
    InvalidTransition {
        /// The kind of thing, e.g. `"session"`.
        entity: &'static str,
        /// Its current state.
        from: String,
        /// The state, or the operation, that was asked for.
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
    /// A worker acted on a job or batch item whose lease it no longer holds (it expired and
    /// the row was claimed again, or it was finished by someone else).
    #[error("lease lost: {entity} {id} is no longer held by worker {worker}")]
    LeaseLost {
        /// The kind of thing leased: `"job"` or `"batch item"`.
        entity: &'static str,
        /// Its id.
        id: String,
        /// The worker that acted.
        worker: String,
    },
    /// A spend would take a credit balance below zero (the database's ledger rule,
    /// `forge:limit:credits:<balance>`): the account holds `balance` credits and the spend
    /// wanted `wanted`. Nothing was charged.
    #[error("insufficient credits: the balance is {balance}, {wanted} wanted")]
    InsufficientCredits {
        /// The account's balance when the spend was refused.
        balance: i64,
        /// The credits the spend asked for (-1 when the refused ledger row was not written
        /// through `credits`, whose calls always name it).
        wanted: i64,
    },
    /// The transaction passed to a Forge call is no longer open on the server: an earlier
    /// call on it was dropped while it opened its savepoint, and the driver rolled the
    /// whole transaction back (see the crate docs on cancellation). Roll it back and start
    /// again.
    #[error("the caller's transaction is no longer open; roll it back and retry")]
    TransactionLost,
    /// A request's credentials were refused: an API key that is malformed, unknown,
    /// tampered with, revoked or expired (all alike, so a caller cannot probe which).
    #[error("unauthenticated: the API key is not valid")]
    Unauthenticated,
    /// Any other database error.
    #[error("database error: {0}")]
    Db(#[source] DbErr),
}

/// The result of every repository call.
pub type Result<T, E = ForgeError> = std::result::Result<T, E>;

impl From<DbErr> for ForgeError {
    fn from(err: DbErr) -> Self {
        if let Some(refusal) = database_error(&err)
            .and_then(|(message, constraint)| database_rule(&message, constraint.as_deref()))
        {
            return refusal;
        }
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(what)) => Self::Conflict { what },
            Some(SqlErr::ForeignKeyConstraintViolation(what)) => Self::Conflict { what },
            _ => Self::Db(err),
        }
    }
}

impl ForgeError {
    /// A stable, machine-readable code for the kind of error, for APIs and logs (the
    /// `api` example maps it to an HTTP status). The codes never change meaning:
    ///
    /// | code | variant | HTTP (suggested) |
    /// |---|---|---|
    /// | `not_found` | [`NotFound`](Self::NotFound) | 404 |
    /// | `conflict` | [`Conflict`](Self::Conflict) | 409 |
    /// | `invalid_input` | [`Validation`](Self::Validation) | 422 |
    /// | `invalid_state` | [`InvalidTransition`](Self::InvalidTransition) | 409 |
    /// | `limit_reached` | [`LimitReached`](Self::LimitReached) | 429 |
    /// | `forbidden` | [`Forbidden`](Self::Forbidden) | 403 |
    /// | `lease_lost` | [`LeaseLost`](Self::LeaseLost) | 409 |
    /// | `insufficient_credits` | [`InsufficientCredits`](Self::InsufficientCredits) | 402 |
    /// | `unauthenticated` | [`Unauthenticated`](Self::Unauthenticated) | 401 |
    /// | `transaction_lost` | [`TransactionLost`](Self::TransactionLost) | 503 |
    /// | `unavailable` | [`Db`](Self::Db) that [is retryable](Self::is_retryable) | 503 |
    /// | `database` | any other [`Db`](Self::Db) | 500 |
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::Validation { .. } => "invalid_input",
            Self::InvalidTransition { .. } => "invalid_state",
            Self::LimitReached { .. } => "limit_reached",
            Self::Forbidden { .. } => "forbidden",
            Self::LeaseLost { .. } => "lease_lost",
            Self::InsufficientCredits { .. } => "insufficient_credits",
            Self::Unauthenticated => "unauthenticated",
            Self::TransactionLost => "transaction_lost",
            Self::Db(err) if db_error_is_transient(err) => "unavailable",
            Self::Db(_) => "database",
        }
    }

    /// Whether trying the same call again may succeed: the connection broke or the server
    /// went away or restarted (the pool opens a new connection), the pool had no
    /// connection free in time, the database gave up on a transaction to resolve a conflict
    /// (serialization failure, deadlock) or was busy (SQLite), or the caller's transaction
    /// was lost. A retried write is safe: a call that failed this way changed nothing it
    /// reported, and Forge's writes are atomic (a `complete` whose reply was lost answers
    /// [`ForgeError::LeaseLost`] on retry if it did commit).
    ///
    /// Refusals (not found, validation, conflicts, limits, transitions, leases) are not
    /// retryable: the same call gets the same answer.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::TransactionLost => true,
            Self::Db(err) => db_error_is_transient(err),
            _ => false,
        }
    }

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

/// The names a database rule may report, as the `'static` strings the variants carry.
const RULE_NAMES: &[&str] = &[
    "session",
    "conversation",
    "batch",
    "project",
    "profile",
    "live sessions",
    "expires_at",
    "project_id",
    "expo_config",
    "metadata",
    "result",
    "data",
    "category",
    "parameters",
    "quality_metrics",
    "review_history",
    "configuration",
    "run",
    "project_spec",
    // Before "payload": a size check of `generation_logs_request_payload` names its column.
    "request_payload",
    "response_payload",
    "payload",
    "meta",
    "owner_id",
    "error_message",
    "started_at",
    "completed_at",
    "template",
    "scenario",
    "edge_case",
    "generation",
    "template_name",
    "template_text",
    "variables",
    "required_elements",
    "applicable_personas",
    "applicable_emotions",
    "applicable_topics",
    "parameter_values",
    "last_test_result",
    "cost_usd",
    "usage_count",
    // api_keys: "forge:transition:api key:…", "forge:limit:api keys:10", its scopes' size.
    "api key",
    "api keys",
    "scopes",
    // credits and notifications: "forge:not_found:credit account:…", the size and (SQLite)
    // element checks of `notification_preferences.muted_types`.
    "credit account",
    "muted_types",
];

fn rule_name(name: &str) -> &'static str {
    RULE_NAMES
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("input")
}

/// Whether `err` is a transient failure: see [`ForgeError::is_retryable`].
fn db_error_is_transient(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let (DbErr::Query(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Conn(RuntimeErr::SqlxError(e))) = err
    else {
        return matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_));
    };
    match e.as_ref() {
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed
        | Sqlx::Protocol(_) => true,
        Sqlx::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08…), the server shutting down or
            // restarting (57P01–57P03), too many connections (53300), the transaction
            // ended by idle_in_transaction_session_timeout (25P03), serialization failure
            // and deadlock (40001, 40P01). SQLite: busy (5) and locked (6), with extended
            // codes in the high bits.
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "25P03" | "40001" | "40P01"
                )
                || code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

/// The message and the violated constraint (if any) of the error the database server
/// returned, when `err` is one.
fn database_error(err: &DbErr) -> Option<(String, Option<String>)> {
    use sea_orm::RuntimeErr;
    let (DbErr::Query(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Conn(RuntimeErr::SqlxError(e))) = err
    else {
        return None;
    };
    let db = e.as_database_error()?;
    Some((db.message().to_owned(), db.constraint().map(str::to_owned)))
}

/// The typed error for a refusal by one of the database's rules: a trigger's message
/// `forge:<kind>:<detail>`, or a violated JSON size `CHECK` (`{table}_{column}_size_check`);
/// `None` for anything else.
fn database_rule(message: &str, constraint: Option<&str>) -> Option<ForgeError> {
    if let Some(line) = message.strip_prefix("forge:") {
        let (kind, detail) = line.split_once(':').unwrap_or((line, ""));
        let mut parts = detail.splitn(3, ':');
        let (first, second, third) = (parts.next(), parts.next(), parts.next());
        let first_name = rule_name(first.unwrap_or(""));
        return Some(match kind {
            "transition" => ForgeError::InvalidTransition {
                entity: first_name,
                from: second.unwrap_or("").to_owned(),
                to: third.unwrap_or("").to_owned(),
            },
            // A ledger row the balance cannot cover: `forge:limit:credits:<balance>`. The
            // message cannot name the amount; `credits` fills in `wanted`.
            "limit" if first == Some("credits") => ForgeError::InsufficientCredits {
                balance: second.and_then(|n| n.trim().parse().ok()).unwrap_or(-1),
                wanted: -1,
            },
            "limit" => ForgeError::LimitReached {
                what: first_name,
                limit: second.and_then(|n| n.trim().parse().ok()).unwrap_or(-1),
            },
            "not_found" => ForgeError::NotFound {
                entity: first_name,
                id: second.unwrap_or("").to_owned(),
            },
            // A rule that depends on another row's state: "the project is archived; sessions
            // start only on active projects" (SQLite's trigger cannot name the state).
            "invalid" if detail.ends_with("sessions start only on active projects") => {
                let state = detail
                    .split_once(":the project is ")
                    .map_or("not active", |(_, rest)| {
                        rest.split(';').next().unwrap_or("").trim()
                    });
                ForgeError::InvalidTransition {
                    entity: "project",
                    from: state.to_owned(),
                    to: "a new session".to_owned(),
                }
            }
            "invalid" => ForgeError::Validation {
                field: first_name,
                reason: detail.split_once(':').map_or(detail, |(_, r)| r).to_owned(),
            },
            "forbidden" => ForgeError::Forbidden {
                action: "this write",
            },
            _ => ForgeError::Conflict {
                what: detail.to_owned(),
            },
        });
    }
    let column = constraint?.strip_suffix("_size_check")?;
    let field = RULE_NAMES
        .iter()
        .find(|name| column.ends_with(&format!("_{name}")))
        .copied()?;
    Some(ForgeError::invalid(
        field,
        "a JSON document of at most 64 KiB",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_rules_map_to_their_variants() {
        let limit = database_rule("forge:limit:live sessions:3", None);
        assert!(matches!(
            limit,
            Some(ForgeError::LimitReached {
                what: "live sessions",
                limit: 3
            })
        ));
        let credits = database_rule("forge:limit:credits:7", None);
        assert!(matches!(
            credits,
            Some(ForgeError::InsufficientCredits {
                balance: 7,
                wanted: -1
            })
        ));
        let sqlite = database_rule("forge:transition:session", None);
        assert!(matches!(
            sqlite,
            Some(ForgeError::InvalidTransition {
                entity: "session",
                ..
            })
        ));
        let moved = database_rule("forge:transition:session:completed:active", None);
        assert!(
            matches!(moved, Some(ForgeError::InvalidTransition { from, to, .. }) if from == "completed" && to == "active")
        );
        let archived = database_rule(
            "forge:invalid:project_id:the project is archived; sessions start only on active projects",
            None,
        );
        assert!(
            matches!(archived, Some(ForgeError::InvalidTransition { entity: "project", from, .. }) if from == "archived")
        );
        let invalid = database_rule("forge:invalid:expires_at:at most 24 hours ahead", None);
        assert!(
            matches!(invalid, Some(ForgeError::Validation { field: "expires_at", reason }) if reason == "at most 24 hours ahead")
        );
        let size = database_rule(
            "new row for relation \"projects\" violates check constraint",
            Some("projects_expo_config_size_check"),
        );
        assert!(matches!(
            size,
            Some(ForgeError::Validation {
                field: "expo_config",
                ..
            })
        ));
        assert!(database_rule("syntax error at or near \"forge\"", None).is_none());
        assert!(database_rule("value too long", Some("projects_name_check")).is_none());
    }
}
