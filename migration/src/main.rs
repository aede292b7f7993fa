//! `forge-migration`: apply, roll back and inspect Forge's migrations.
//!
//! The database is `--direct-url` / `DIRECT_URL` when given, else `--database-url`, else
//! `DATABASE_URL`, else the embedded SQLite file `forge.db` in the working directory. Every
//! run says which one it used. A URL through a transaction pooler (`?pgbouncer=true`) is
//! refused: the migration lock is session-scoped, so set `DIRECT_URL` beside it. Failures
//! print one line on stderr and exit non-zero.
//!
//! Every migration command (`up`, `down`, `fresh`, `refresh`, `reset`) runs under Forge's
//! migration lock ([`forge_migration::MigrationLock`]), so runs started together on one
//! database queue instead of failing. `down`, `fresh`, `refresh` and `reset` first print
//! what they would roll back and the rows of Forge's tables, and refuse (exit 1, nothing
//! changed) when those tables hold any row unless given `--yes`; on PostgreSQL a `down`
//! that turns off row-level security or the database wall warns and always needs `--yes`.
//! `fresh` rolls back every migration and applies them all again: it drops only what
//! Forge created.
//!
//! `verify` checks the database against the schema this binary's migrations and entities
//! describe: exit 0 when it matches, 2 when it drifts (one line per difference), 1 when it
//! cannot check.
//!
//! `seed [--users N]` loads the development data set (idempotently) into a migrated
//! database; `schema-doc` regenerates `docs/schema.md` from the entities (no database).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use forge_migration::schema_doc::{self, SCHEMA_DOC_PATH};
use forge_migration::seed::MAX_SEED_USERS;
use forge_migration::verify::backend_id;
use forge_migration::{
    Backend, DEFAULT_DATABASE_URL, MigrateError, MigrationLock, Migrator, MigratorTrait, Pooling,
    TABLES, connect, redact_url, seed, verify,
};
use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseExecutor, DbBackend, DbErr, Statement,
    TransactionTrait,
};
use sea_orm_migration::{MigrationStatus, SchemaManager};

#[derive(Parser)]
#[command(
    name = "forge-migration",
    version,
    about = "Apply and inspect Forge's database migrations"
)]
struct Cli {
    /// Database to migrate (default: $DATABASE_URL, else sqlite://forge.db?mode=rwc).
    #[arg(
        short = 'u',
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// A direct URL of the same database, used instead of the database URL when that goes
    /// through a transaction pooler (`?pgbouncer=true`): migrations hold a session lock.
    #[arg(long, global = true, env = "DIRECT_URL", hide_env_values = true)]
    direct_url: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations (the default command).
    Up {
        /// Apply at most this many.
        #[arg(short, long)]
        num: Option<u32>,
    },
    /// Roll back applied migrations (one unless --num says otherwise). Refuses when Forge's
    /// tables hold rows, or on PostgreSQL when it would turn off row-level security or the
    /// database wall, unless --yes.
    Down {
        /// How many to roll back.
        #[arg(short, long, default_value_t = 1)]
        num: u32,
        /// Go ahead even though Forge's tables hold rows or protections go off.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// List every migration and whether it is applied.
    Status,
    /// Start over: roll back every applied migration and drop the migration table (as
    /// `reset`), then apply all migrations. Drops only what Forge created; tables that are
    /// not Forge's stay. Refuses when Forge's tables hold rows, unless --yes.
    Fresh {
        /// Go ahead even though Forge's tables hold rows.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Roll back all applied migrations, then apply them all again. Refuses when Forge's
    /// tables hold rows, unless --yes.
    Refresh {
        /// Go ahead even though Forge's tables hold rows.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Roll back all applied migrations. Refuses when Forge's tables hold rows, unless --yes.
    Reset {
        /// Go ahead even though Forge's tables hold rows.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Check that the database is exactly the schema Forge expects: exit 0 when it is,
    /// 2 when it drifts (one line per difference), 1 when it cannot be checked.
    Verify {
        /// How to print the result.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Accept tables (and PostgreSQL functions) the migrations do not create.
        #[arg(long)]
        allow_extra: bool,
    },
    /// Load the development data set (seed 002's user, project, session, jobs and events,
    /// plus conversations in every review status and a batch): idempotent, fixed ids.
    /// Needs a fully migrated database.
    Seed {
        /// Load the set for this many users (dev1@forge.local, dev2@…).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SEED_USERS)))]
        users: u32,
    },
    /// Regenerate docs/schema.md (Mermaid ER diagram and table notes) from the entities.
    SchemaDoc {
        /// Where to write it.
        #[arg(long, default_value = SCHEMA_DOC_PATH)]
        output: PathBuf,
        /// Write nothing; exit 1 when the file differs from what would be generated.
        #[arg(long)]
        check: bool,
    },
}

/// Output of `verify`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One line per difference, then a summary.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// `verify`'s exit code when the database drifts (1 is "could not check").
const EXIT_DRIFT: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let direct = cli.direct_url.as_deref().filter(|u| !u.trim().is_empty());
    let (url, source) = match (
        direct,
        cli.database_url.as_deref().filter(|u| !u.trim().is_empty()),
    ) {
        (Some(url), _) => (url.to_owned(), "DIRECT_URL or --direct-url"),
        (None, Some(url)) => (url.to_owned(), "DATABASE_URL or --database-url"),
        (None, None) => (
            DEFAULT_DATABASE_URL.to_owned(),
            "default: no DATABASE_URL set",
        ),
    };
    if Pooling::from_url(&url).0 == Pooling::Transaction {
        eprintln!(
            "forge-migration: error: {} goes through a transaction pooler (pgbouncer=true) \
             ({source}); migrations hold a session lock, so they need a direct connection: \
             set DIRECT_URL (or --direct-url) to the database's direct URL",
            redact_url(&url)
        );
        return ExitCode::FAILURE;
    }
    let command = cli.command.unwrap_or(Command::Up { num: None });
    if let Command::Verify {
        format,
        allow_extra,
    } = command
    {
        return run_verify(&url, source, format, allow_extra).await;
    }
    if let Command::SchemaDoc { output, check } = command {
        return run_schema_doc(&output, check);
    }
    println!("forge-migration: database {} ({source})", redact_url(&url));

    let db = match connect(&url).await {
        Ok(db) => db,
        Err(err) => {
            eprintln!("forge-migration: error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Seed { users } = command {
        return run_seed(&db, users).await;
    }
    match run(&db, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let line = err.to_string().replace('\n', " ");
            eprintln!("forge-migration: error: {line}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command failed; every message fits on one line.
enum Failure {
    Db(DbErr),
    Migrate(MigrateError),
    /// A destructive command declined to act; nothing was changed.
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Db(err) => write!(f, "{}", err.to_string().replace('\n', " ")),
            Self::Migrate(err) => write!(f, "{err}"),
            Self::Refused(reason) => f.write_str(reason),
        }
    }
}

impl From<DbErr> for Failure {
    fn from(err: DbErr) -> Self {
        Self::Db(err)
    }
}

impl From<MigrateError> for Failure {
    fn from(err: MigrateError) -> Self {
        Self::Migrate(err)
    }
}

async fn run(db: &DatabaseConnection, command: Command) -> Result<(), Failure> {
    if let Command::Status = command {
        for m in Migrator::get_migration_with_status(db).await? {
            let status = match m.status() {
                MigrationStatus::Applied => "applied",
                MigrationStatus::Pending => "pending",
            };
            println!("  {status:8} {}", m.name());
        }
        return Ok(());
    }
    let lock = MigrationLock::acquire(db).await?;
    if lock.waited() {
        println!("forge-migration: waited for another migration of this database to finish");
    }
    let done = match execute(&lock, command).await {
        Ok(done) => done,
        Err(err) => {
            // The command's error is the one to report; dropping the lock releases it anyway.
            let _ = lock.abort().await;
            return Err(err);
        }
    };
    lock.release().await?;
    report(&done, applied(db).await?.len());
    Ok(())
}

/// What a command rolled back (newest first) and applied (oldest first).
#[derive(Default)]
struct Done {
    rolled_back: Vec<String>,
    applied: Vec<String>,
}

/// Runs a migration command over the lock's connection.
async fn execute(lock: &MigrationLock, command: Command) -> Result<Done, Failure> {
    let conn = lock.connection();
    let before = applied(&conn).await?;
    let everything: Vec<String> = before.iter().rev().cloned().collect();
    match command {
        Command::Up { num } => {
            Migrator::up(lock.connection(), num).await?;
            let after = applied(&conn).await?;
            Ok(Done {
                rolled_back: Vec::new(),
                applied: added(&before, &after),
            })
        }
        Command::Down { num, yes } => {
            let n = usize::try_from(num).unwrap_or(usize::MAX);
            let plan: Vec<String> = everything.into_iter().take(n).collect();
            confirm(lock, "down", &plan, false, yes).await?;
            Migrator::down(lock.connection(), Some(num)).await?;
            let after = applied(&conn).await?;
            Ok(Done {
                rolled_back: removed(&before, &after),
                applied: Vec::new(),
            })
        }
        Command::Reset { yes } => {
            confirm(lock, "reset", &everything, false, yes).await?;
            Migrator::reset(lock.connection()).await?;
            let after = applied(&conn).await?;
            Ok(Done {
                rolled_back: removed(&before, &after),
                applied: Vec::new(),
            })
        }
        Command::Refresh { yes } => {
            confirm(lock, "refresh", &everything, true, yes).await?;
            Migrator::down(lock.connection(), None).await?;
            let middle = applied(&conn).await?;
            Migrator::up(lock.connection(), None).await?;
            let after = applied(&conn).await?;
            Ok(Done {
                rolled_back: removed(&before, &middle),
                applied: added(&middle, &after),
            })
        }
        Command::Fresh { yes } => {
            // Forge's own `down`s drop exactly what its `up`s created; SeaORM's `fresh`
            // would drop every table of the schema, a user's own ones included.
            confirm(lock, "fresh", &everything, true, yes).await?;
            Migrator::reset(lock.connection()).await?;
            let middle = applied(&conn).await?;
            Migrator::up(lock.connection(), None).await?;
            let after = applied(&conn).await?;
            Ok(Done {
                rolled_back: removed(&before, &middle),
                applied: added(&middle, &after),
            })
        }
        // Dispatched before the lock is taken.
        Command::Status
        | Command::Verify { .. }
        | Command::Seed { .. }
        | Command::SchemaDoc { .. } => Ok(Done::default()),
    }
}

/// Names in `before` that are gone from `after`, newest first (the order of rolling back).
fn removed(before: &[String], after: &[String]) -> Vec<String> {
    before
        .iter()
        .rev()
        .filter(|m| !after.contains(m))
        .cloned()
        .collect()
}

/// Names in `after` that were not in `before`, oldest first (the order of applying).
fn added(before: &[String], after: &[String]) -> Vec<String> {
    after
        .iter()
        .filter(|m| !before.contains(m))
        .cloned()
        .collect()
}

/// Migrations whose rollback on PostgreSQL takes a protection away, and what goes.
const PROTECTIONS: &[(&str, &str)] = &[
    (
        "m20251130_000006_database_wall",
        "turns the database's rules OFF (column privileges, forced row-level security, \
         the invariant triggers)",
    ),
    (
        "m20251121_000004_postgres_rls",
        "turns row-level security OFF (nothing in the database keeps tenants' rows apart)",
    ),
];

/// The rows of one Forge table, or why they cannot be counted.
enum Rows {
    Counted(i64),
    Hidden(String),
}

/// Prints what a destructive command would roll back and the rows of Forge's tables, then
/// refuses (nothing changed yet) when those tables hold rows, or when a PostgreSQL `down`
/// takes a protection away, unless `yes`.
async fn confirm(
    lock: &MigrationLock,
    action: &str,
    plan: &[String],
    reapply: bool,
    yes: bool,
) -> Result<(), Failure> {
    if plan.is_empty() {
        return Ok(());
    }
    let all = plan.len() == applied(&lock.connection()).await?.len();
    println!(
        "forge-migration: {action} rolls back {} migration(s), newest first:",
        plan.len()
    );
    for m in plan {
        println!("  roll back   {m}");
    }
    if reapply {
        println!(
            "forge-migration: then applies all {} migrations again",
            Migrator::migrations().len()
        );
    }
    let tables = forge_tables(lock).await?;
    if tables.is_empty() {
        println!("forge-migration: no Forge table exists");
    } else if all {
        println!("forge-migration: Forge tables it drops, and their rows:");
    } else {
        println!("forge-migration: Forge tables and their rows:");
    }
    let mut rows = 0_i64;
    let mut hidden = 0_usize;
    for (table, count) in &tables {
        match count {
            Rows::Counted(n) => {
                rows = rows.saturating_add(*n);
                let unit = if *n == 1 { "row" } else { "rows" };
                println!("  {table:<20} {n} {unit}");
            }
            Rows::Hidden(why) => {
                hidden += 1;
                println!("  {table:<20} rows unknown: {why}");
            }
        }
    }
    let off: Vec<String> = if action == "down" && lock.backend() == DbBackend::Postgres {
        PROTECTIONS
            .iter()
            .filter(|(name, _)| plan.iter().any(|m| m == name))
            .map(|(name, what)| format!("rolling back {name} {what}"))
            .collect()
    } else {
        Vec::new()
    };
    if !off.is_empty() {
        eprintln!("forge-migration: WARNING: {}", off.join("; "));
    }
    if yes {
        return Ok(());
    }
    let mut reasons = Vec::new();
    if rows > 0 {
        let unit = if rows == 1 { "row" } else { "rows" };
        reasons.push(format!("Forge's tables hold {rows} {unit}"));
    }
    if hidden > 0 {
        reasons.push(format!(
            "the rows of {hidden} Forge table(s) cannot be counted"
        ));
    }
    if !off.is_empty() {
        reasons.push("row-level security / the database's rules would be OFF".to_owned());
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Failure::Refused(format!(
        "refusing to run {action}: {}; nothing was changed (run it again with --yes to go ahead)",
        reasons.join(" and ")
    )))
}

/// Forge's tables that exist, with their rows.
async fn forge_tables(lock: &MigrationLock) -> Result<Vec<(&'static str, Rows)>, DbErr> {
    let conn = lock.connection();
    let manager = SchemaManager::new(lock.connection());
    let mut out = Vec::new();
    for table in TABLES {
        if !manager.has_table(*table).await? {
            continue;
        }
        let sql = format!("SELECT COUNT(*) FROM \"{table}\"");
        let rows = if conn.get_database_backend() == DbBackend::Postgres {
            // A role subject to forced row-level security (the owner, unless it is a
            // superuser or BYPASSRLS) would count only the rows its policies show. With
            // row_security off such a count fails instead of lying; then the owner lifts
            // FORCE for the count, in a transaction that is rolled back.
            match count_postgres(&conn, table, &sql, false).await {
                Ok(n) => Rows::Counted(n),
                Err(_) => match count_postgres(&conn, table, &sql, true).await {
                    Ok(n) => Rows::Counted(n),
                    Err(err) => Rows::Hidden(err.to_string().replace('\n', " ")),
                },
            }
        } else {
            Rows::Counted(count(&conn, &sql).await?)
        };
        out.push((*table, rows));
    }
    Ok(out)
}

/// Counts `table`'s rows on PostgreSQL, never through row-level security: with
/// `row_security = off`, and with `lift_force` as its owner with FORCE ROW LEVEL SECURITY
/// lifted. Always rolls back, so the table is left as it was.
async fn count_postgres(
    conn: &DatabaseExecutor<'_>,
    table: &str,
    sql: &str,
    lift_force: bool,
) -> Result<i64, DbErr> {
    let txn = conn.begin().await?;
    let counted = async {
        txn.execute_unprepared("SET LOCAL row_security = off")
            .await?;
        if lift_force {
            // ALTER TABLE locks the table until the rollback; do not queue behind a long
            // transaction for it.
            txn.execute_unprepared("SET LOCAL lock_timeout = '5s'")
                .await?;
            txn.execute_unprepared(&format!(
                "ALTER TABLE \"{table}\" NO FORCE ROW LEVEL SECURITY"
            ))
            .await?;
        }
        count(&txn, sql).await
    }
    .await;
    txn.rollback().await?;
    counted
}

async fn count<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<i64, DbErr> {
    let stmt = Statement::from_string(conn.get_database_backend(), sql.to_owned());
    conn.query_one_raw(stmt)
        .await?
        .ok_or_else(|| DbErr::Custom(format!("no row from {sql}")))?
        .try_get_by_index::<i64>(0)
}

/// Names of the applied migrations, oldest first (never creates the migration table).
async fn applied<C: ConnectionTrait>(db: &C) -> Result<Vec<String>, DbErr> {
    Ok(Migrator::get_applied_migrations_read_only(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect())
}

fn report(done: &Done, now_applied: usize) {
    for m in &done.rolled_back {
        println!("  rolled back {m}");
    }
    for m in &done.applied {
        println!("  applied     {m}");
    }
    println!(
        "forge-migration: {} applied, {} rolled back; {} of {} migrations now applied",
        done.applied.len(),
        done.rolled_back.len(),
        now_applied,
        Migrator::migrations().len()
    );
}

/// `verify`: text or JSON on stdout, the reason on stderr when it cannot check.
async fn run_verify(url: &str, source: &str, format: Format, allow_extra: bool) -> ExitCode {
    let database = redact_url(url);
    if format == Format::Text {
        println!("forge-migration: database {database} ({source})");
    }
    let report = match verify(url).await {
        Ok(report) => report,
        Err(err) => {
            let line = err.to_string().replace('\n', " ");
            if format == Format::Json {
                let backend = Backend::from_url(url).map(backend_id);
                let doc = serde_json::json!({
                    "status": "error",
                    "backend": backend,
                    "database": database,
                    "error": line,
                    "findings": [],
                });
                println!("{doc}");
            }
            eprintln!("forge-migration: error: cannot verify: {line}");
            return ExitCode::FAILURE;
        }
    };
    match format {
        Format::Text => {
            for finding in &report.findings {
                println!("{finding}");
            }
            println!("{}", report.summary_line(allow_extra));
        }
        Format::Json => {
            let mut doc = report.to_json(allow_extra);
            doc["database"] = serde_json::Value::String(database);
            println!("{doc}");
        }
    }
    if report.passes(allow_extra) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DRIFT)
    }
}

/// `seed`: what it loaded on stdout, the reason on stderr when it loaded nothing.
async fn run_seed(db: &DatabaseConnection, users: u32) -> ExitCode {
    match seed(db, users).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            let line = err.to_string().replace('\n', " ");
            eprintln!("forge-migration: error: seed: {line}");
            ExitCode::FAILURE
        }
    }
}

/// `schema-doc`: writes (or with `--check`, compares) the generated document.
fn run_schema_doc(output: &std::path::Path, check: bool) -> ExitCode {
    let doc = schema_doc::render();
    if check {
        let current = std::fs::read_to_string(output).unwrap_or_default();
        if current == doc {
            println!("forge-migration: {} is up to date", output.display());
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "forge-migration: error: {} is stale: run `{}`",
            output.display(),
            schema_doc::SCHEMA_DOC_COMMAND
        );
        return ExitCode::FAILURE;
    }
    let written = output
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(output, &doc));
    match written {
        Ok(()) => {
            println!("forge-migration: wrote {}", output.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!(
                "forge-migration: error: cannot write {}: {err}",
                output.display()
            );
            ExitCode::FAILURE
        }
    }
}
