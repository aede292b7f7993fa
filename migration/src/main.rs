//! `forge-migration`: apply, roll back and inspect Forge's migrations.
//!
//! The database is `--database-url`, else `DATABASE_URL`, else the embedded SQLite file
//! `forge.db` in the working directory. Every run says which one it used. Failures print
//! one line on stderr and exit non-zero.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use forge_migration::{DEFAULT_DATABASE_URL, Migrator, MigratorTrait, connect, redact_url};
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
}

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
    println!("forge-migration: database {} ({source})", redact_url(&url));

    let db = match connect(&url).await {
        Ok(db) => db,
        Err(err) => {
            eprintln!("forge-migration: error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match run(&db, cli.command.unwrap_or(Command::Up { num: None })).await {
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
