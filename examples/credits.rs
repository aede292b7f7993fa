//! Paying for a coding session with credits, atomically (`forge_service::credits`): the
//! caller opens ONE transaction of their own, spends the credits and starts the session
//! in it, and commits — both happen, or neither does.
//!
//! ```sh
//! cargo run --example credits                                 # embedded SQLite, ./forge.db
//! DATABASE_URL=postgres://user:pass@host/db cargo run --example credits
//! scripts/with-postgres.sh cargo run --example credits       # a throwaway PostgreSQL
//! ```
//!
//! Every Forge call takes any connection: the pool, or the caller's transaction (the call
//! then runs in a savepoint and leaves the transaction as it found it). The first attempt
//! commits both the charge and the session; the second starts a session on an archived
//! project, which the database refuses, so the caller rolls back and the charge is gone
//! with it: the balance is unchanged. A retry of the first charge with the same
//! idempotency key is charged once. Each run signs up a fresh user, so it can be run again
//! on the same database. Errors print as one line on stderr, with exit code 1.

use std::io::Write;
use std::process::ExitCode;

use forge_db::entity::coding_sessions;
use forge_db::entity::ids::{ProfileId, ProjectId};
use forge_db::migration::{Backend, redact_url};
use forge_db::sea_orm::DatabaseConnection;
use forge_db::service::credits::{self, CreditChange};
use forge_db::service::profiles::{self, NewProfile};
use forge_db::service::projects::{self, NewProject};
use forge_db::service::sessions::{self, NewSession};
use forge_db::service::{Actor, ForgeError, PageRequest};
use uuid::Uuid;

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What a coding session costs, in credits.
const SESSION_PRICE: u64 = 25;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("credits: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Charges `user` for a session on `project` and starts it, in one transaction of the
/// caller's: both or neither. `key` makes a retried charge count once. Prints what happens
/// inside the transaction.
async fn paid_session(
    db: &DatabaseConnection,
    user: ProfileId,
    project: ProjectId,
    key: &str,
) -> AnyResult<Result<coding_sessions::Model, ForgeError>> {
    let txn = forge_db::service::begin(db).await?;
    let charge = CreditChange {
        reference: Some(format!("project {project}")),
        ..CreditChange::new(user, SESSION_PRICE).idempotent(key)
    };
    // The service charges; the user starts their own session (under their row-level
    // security on PostgreSQL). Both run inside `txn`, each in a savepoint of it.
    let started = async {
        let row = credits::spend(&txn, Actor::Service, charge).await?;
        println!(
            "          in the transaction: charged {SESSION_PRICE}, balance {} there",
            row.balance_after
        );
        sessions::start(
            &txn,
            Actor::User(user),
            NewSession::new(user, project, "Build a habit tracker"),
        )
        .await
    }
    .await;
    match started {
        Ok(session) => {
            txn.commit().await?;
            Ok(Ok(session))
        }
        Err(err) => {
            txn.rollback().await?;
            Ok(Err(err))
        }
    }
}

/// The user's balance, as they read it themself.
async fn balance(db: &DatabaseConnection, user: ProfileId) -> Result<i64, ForgeError> {
    Ok(credits::balance(db, Actor::User(user), user).await?.balance)
}

async fn run() -> AnyResult<()> {
    let url = forge_db::migration::url_from_env();
    let backend = Backend::from_url(&url).map_or(String::new(), |b| format!(" ({b})"));
    let mut out = std::io::stdout();
    writeln!(out, "database  {}{backend}", redact_url(&url))?;
    let db = forge_db::connect(&url).await?;
    let applied = forge_db::migrate(&db).await?;
    writeln!(out, "migrate   {} migration(s) applied", applied.len())?;

    let short = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let profile = profiles::create(
        &db,
        Actor::Service,
        NewProfile::new(format!("ada+{short}@example.com")),
    )
    .await?;
    let ada = profile.id;
    let me = Actor::User(ada);
    writeln!(
        out,
        "signup    {} with {} credits",
        profile.email,
        balance(&db, ada).await?
    )?;

    let active = projects::create(&db, me, NewProject::new(ada, "Habit tracker")).await?;
    let old = projects::create(&db, me, NewProject::new(ada, "Old idea")).await?;
    projects::archive(&db, me, old.id).await?;

    // Both: charged and started, committed together.
    writeln!(out, "both      a paid session on {:?}", active.name)?;
    let key = format!("session-{short}");
    let session = paid_session(&db, ada, active.id, &key).await??;
    writeln!(
        out,
        "          committed: session {} ({}); balance {}",
        session.id,
        session.status,
        balance(&db, ada).await?
    )?;

    // The same charge retried (say, its reply was lost) with the same key: charged once.
    let retried = credits::spend(
        &db,
        Actor::Service,
        CreditChange {
            reference: Some(format!("project {}", active.id)),
            ..CreditChange::new(ada, SESSION_PRICE).idempotent(&key)
        },
    )
    .await?;
    writeln!(
        out,
        "retry     same key: the original ledger row (balance after {}); balance {}",
        retried.balance_after,
        balance(&db, ada).await?
    )?;

    // Neither: the session is refused (the project is archived), so the caller rolls the
    // whole transaction back, and the charge with it.
    let before = balance(&db, ada).await?;
    writeln!(out, "neither   a paid session on {:?} (archived)", old.name)?;
    match paid_session(&db, ada, old.id, &format!("session-{short}-2")).await? {
        Err(err) => writeln!(
            out,
            "          refused ({}: {err}); rolled back",
            err.code()
        )?,
        Ok(session) => {
            return Err(format!("session {} started on an archived project", session.id).into());
        }
    }
    let after = balance(&db, ada).await?;
    writeln!(
        out,
        "          balance {before} before, {after} after: unchanged"
    )?;
    if before != after {
        return Err("the charge survived the rollback".into());
    }

    // Spending more than the balance is refused, with the balance named.
    match credits::spend(&db, Actor::Service, CreditChange::new(ada, 1000)).await {
        Err(err @ ForgeError::InsufficientCredits { .. }) => {
            writeln!(out, "overdraw  refused ({}: {err})", err.code())?;
        }
        other => return Err(format!("expected insufficient credits, got {other:?}").into()),
    }

    let history = credits::history(&db, me, ada, &PageRequest::first()).await?;
    writeln!(out, "ledger    newest first:")?;
    for row in &history.items {
        writeln!(
            out,
            "          {:>13} {:>5} → {:>3}  {}",
            row.kind.as_str(),
            row.amount,
            row.balance_after,
            row.reference.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}
