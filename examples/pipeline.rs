//! A pipeline run (`forge_service::pipeline`): a user starts a run from a project
//! specification, three bots work it at once — each appending its events and registering
//! the artifact it produced — the run completes, and the user reads its status (the
//! seeds' `get-pipeline-status`: the run, its event count, each bot's latest event and the
//! artifacts, in a fixed number of queries).
//!
//! ```sh
//! cargo run --example pipeline                                 # embedded SQLite, ./forge.db
//! DATABASE_URL=postgres://user:pass@host/db cargo run --example pipeline
//! scripts/with-postgres.sh cargo run --example pipeline       # a throwaway PostgreSQL
//! ```
//!
//! The bots act as the service (`Actor::Service`); the user starts the run and reads it
//! as themself (on PostgreSQL under their row-level security). Each run signs up a fresh
//! user, so it can be run again on the same database. Errors print as one line on
//! stderr, with exit code 1.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use forge_db::entity::ids::RunId;
use forge_db::migration::{Backend, redact_url};
use forge_db::sea_orm::DatabaseConnection;
use forge_db::service::pipeline::{self, NewArtifact, NewRun, NewRunEvent};
use forge_db::service::profiles::{self, NewProfile};
use forge_db::service::{Actor, PageRequest};
use serde_json::json;
use uuid::Uuid;

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The bots, each with the steps it logs and the artifact it registers.
const BOTS: [(&str, &[&str], &str); 3] = [
    (
        "planner",
        &["read spec", "split into screens", "write plan"],
        "file",
    ),
    ("coder", &["scaffold", "screens", "state", "tests"], "zip"),
    ("designer", &["palette", "icons"], "file"),
];

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pipeline: {err}");
            ExitCode::FAILURE
        }
    }
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
    let email = format!("ada+{short}@example.com");
    let profile = profiles::create(&db, Actor::Service, NewProfile::new(email)).await?;
    let ada = Actor::User(profile.id);

    // The user starts a run for themself; Forge chooses its id.
    let spec =
        json!({"name": "Todo app", "platforms": ["ios", "android"], "features": ["auth", "sync"]});
    let run = pipeline::start(&db, ada, NewRun::new(profile.id, spec)).await?;
    writeln!(
        out,
        "start     {} ({}) for {}",
        run.run_id, run.status, profile.email
    )?;
    let run = pipeline::mark_running(&db, Actor::Service, &run.run_id).await?;
    writeln!(out, "running   since {}", fmt_time(run.started_at))?;

    // Three bots work the run at once.
    let mut bots = Vec::new();
    for (bot, steps, kind) in BOTS {
        let (db, run_id) = (db.clone(), run.run_id.clone());
        bots.push(tokio::spawn(async move {
            work(&db, &run_id, bot, steps, kind).await
        }));
    }
    for bot in bots {
        bot.await??;
    }
    let run = pipeline::complete(&db, Actor::Service, &run.run_id).await?;
    writeln!(
        out,
        "complete  {} at {}",
        run.status,
        fmt_time(run.completed_at)
    )?;

    // What the user sees.
    let status = pipeline::status(&db, ada, &run.run_id).await?;
    writeln!(
        out,
        "status    {} — {}, {} events, {} artifacts",
        status.run.run_id,
        status.run.status,
        status.event_count,
        status.artifacts.len()
    )?;
    for event in &status.latest_event_per_bot {
        let payload = event
            .payload
            .as_ref()
            .map_or(String::new(), |p| p.to_string());
        writeln!(
            out,
            "  latest  {:<9} {:<9} {payload}",
            event.bot_name, event.event_type
        )?;
    }
    for artifact in &status.artifacts {
        writeln!(
            out,
            "  artifact {:<5} {} ({} bytes, {})",
            artifact.kind,
            artifact.url.as_deref().unwrap_or("-"),
            artifact.file_size.unwrap_or_default(),
            artifact.content_type.as_deref().unwrap_or("-"),
        )?;
    }
    let first = pipeline::events(&db, ada, &run.run_id, PageRequest::with_limit(5)).await?;
    writeln!(out, "events    the first {} in order:", first.items.len())?;
    for event in &first.items {
        writeln!(out, "  {:<9} {}", event.bot_name, event.event_type)?;
    }
    db.close().await?;
    Ok(())
}

/// One bot: logs `started`, each step, registers its artifact, logs `done`.
async fn work(
    db: &DatabaseConnection,
    run_id: &RunId,
    bot: &str,
    steps: &[&str],
    kind: &str,
) -> AnyResult<()> {
    let svc = Actor::Service;
    let log = |event_type: &str, payload| NewRunEvent::new(bot, event_type, Some(payload));
    pipeline::append_event(
        db,
        svc,
        run_id,
        log("started", json!({"steps": steps.len()})),
    )
    .await?;
    for (i, step) in steps.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let progress = json!({"step": step, "done": i + 1, "of": steps.len()});
        pipeline::append_event(db, svc, run_id, log("progress", progress)).await?;
    }
    let (name, content_type) = match kind {
        "zip" => ("app.zip", "application/zip"),
        _ => ("notes.md", "text/markdown"),
    };
    let body = format!("{bot} output for {run_id}");
    let artifact = NewArtifact {
        url: Some(format!(
            "https://artifacts.example.com/{run_id}/{bot}/{name}"
        )),
        meta: Some(json!({"bot": bot})),
        file_size: Some(i64::try_from(body.len())?),
        content_type: Some(content_type.to_owned()),
        checksum: Some(format!("sha256:{}", fake_digest(&body))),
        ..NewArtifact::new(kind)
    };
    pipeline::add_artifact(db, svc, run_id, artifact).await?;
    pipeline::append_event(db, svc, run_id, log("done", json!({"artifact": name}))).await?;
    Ok(())
}

/// 64 lowercase hex digits derived from `body` (a stand-in: the example has no SHA-256).
fn fake_digest(body: &str) -> String {
    let mut state = 0xcbf2_9ce4_8422_2325u64;
    (0..4)
        .map(|round| {
            for b in body.bytes().chain([round]) {
                state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            format!("{state:016x}")
        })
        .collect()
}

fn fmt_time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), |t| t.format("%H:%M:%S%.3f").to_string())
}
