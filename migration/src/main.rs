//! `forge-migration`: apply, roll back and inspect Forge's migrations.
//!
//! The database is `--database-url`, else `DATABASE_URL`, else the embedded SQLite file
//! `forge.db` in the working directory. Every run says which one it used. Failures print
//! one line on stderr and exit non-zero.
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
    Backend, DEFAULT_DATABASE_URL, Migrator, MigratorTrait, connect, redact_url, seed, verify,
};
use sea_orm_migration::MigrationStatus;
use sea_orm_migration::sea_orm::{DatabaseConnection, DbErr};

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
    /// Roll back applied migrations (one unless --num says otherwise).
    Down {
        /// How many to roll back.
        #[arg(short, long, default_value_t = 1)]
        num: u32,
    },
    /// List every migration and whether it is applied.
    Status,
    /// Drop every table in the database, then apply all migrations.
    Fresh,
    /// Roll back all applied migrations, then apply them all again.
    Refresh,
    /// Roll back all applied migrations.
    Reset,
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
    let (url, source) = match cli.database_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => (url.to_owned(), "DATABASE_URL or --database-url"),
        None => (
            DEFAULT_DATABASE_URL.to_owned(),
            "default: no DATABASE_URL set",
        ),
    };
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

async fn run(db: &DatabaseConnection, command: Command) -> Result<(), DbErr> {
    let before = applied(db).await?;
    match command {
        Command::Status => {
            for m in Migrator::get_migration_with_status(db).await? {
                let status = match m.status() {
                    MigrationStatus::Applied => "applied",
                    MigrationStatus::Pending => "pending",
                };
                println!("  {status:8} {}", m.name());
            }
            return Ok(());
        }
        Command::Up { num } => Migrator::up(db, num).await?,
        Command::Down { num } => Migrator::down(db, Some(num)).await?,
        Command::Fresh => Migrator::fresh(db).await?,
        Command::Refresh => Migrator::refresh(db).await?,
        Command::Reset => Migrator::reset(db).await?,
        // Dispatched in `main`.
        Command::Verify { .. } | Command::Seed { .. } | Command::SchemaDoc { .. } => {
            return Ok(());
        }
    }
    let after = applied(db).await?;
    report(&before, &after);
    Ok(())
}

/// Names of the applied migrations, oldest first.
async fn applied(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    Ok(Migrator::get_applied_migrations_read_only(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect())
}

fn report(before: &[String], after: &[String]) {
    let rolled_back: Vec<_> = before.iter().filter(|m| !after.contains(m)).collect();
    let applied: Vec<_> = after.iter().filter(|m| !before.contains(m)).collect();
    for m in rolled_back.iter().rev() {
        println!("  rolled back {m}");
    }
    for m in &applied {
        println!("  applied     {m}");
    }
    println!(
        "forge-migration: {} applied, {} rolled back; {} of {} migrations now applied",
        applied.len(),
        rolled_back.len(),
        after.len(),
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
