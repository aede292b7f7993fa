//! Batch generation: a user creates a batch of conversations to generate
//! (`batches::create`), and several concurrent workers process it through
//! `forge_service::batch_items` — claim the next item, report progress, create the
//! conversation (`conversations::create`, for the batch's owner) and complete the item,
//! or fail it — printing progress until the batch is done.
//!
//! ```sh
//! cargo run --example batch                                 # embedded SQLite, ./forge.db
//! DATABASE_URL=postgres://user:pass@host/db cargo run --example batch
//! scripts/with-postgres.sh cargo run --example batch       # a throwaway PostgreSQL
//! ```
//!
//! The batch allows 3 items in flight (`concurrent_processing`), however many workers
//! race for them; the claim enforces it. One topic fails deterministically, and the batch
//! (`error_handling = continue`) still completes, with its counters showing it. Workers
//! take queued items of any batch, so items other runs left queued are finished too. Each
//! run signs up a fresh user, so it can be run again on the same database. Errors print as
//! one line on stderr, with exit code 1.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use forge_db::entity::prelude::*;
use forge_db::migration::{Backend, redact_url};
use forge_db::sea_orm::DatabaseConnection;
use forge_db::service::batch_items::{self, ClaimedItem, FinishedItem};
use forge_db::service::batches::{self, NewBatch, NewBatchItem};
use forge_db::service::conversations::{self, NewConversation, NewTurn};
use forge_db::service::profiles::{self, NewProfile};
use forge_db::service::{Actor, ForgeError};
use serde_json::json;

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How many workers race for the items.
const WORKERS: usize = 4;
/// Items allowed in flight at once, for this batch.
const IN_FLIGHT: u32 = 3;
/// How long one simulated generation step takes.
const STEP: Duration = Duration::from_millis(100);
/// How long a claim holds an item before another worker may take it over.
const LEASE: Duration = Duration::from_secs(30);
/// The topic that always fails, to show a failed item.
const BAD_TOPIC: &str = "a topic the model refuses";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("batch: {err}");
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
    forge_db::migrate(&db).await?;

    let short = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let email = format!("batch-demo+{short}@example.com");
    let owner = profiles::create(&db, Actor::Service, NewProfile::new(email)).await?;
    let user = Actor::User(owner.id);
    let config = BatchConfiguration {
        concurrent_processing: IN_FLIGHT,
        ..BatchConfiguration::new(ConversationTier::Scenario)
    };
    let topics = [
        "saving for a trip",
        "paying off a credit card",
        BAD_TOPIC,
        "an emergency fund",
        "a first budget",
        "comparing bank accounts",
        "retirement basics",
        "splitting rent",
    ];
    let items = topics.into_iter().map(NewBatchItem::new).collect();
    let batch = batches::create(&db, user, NewBatch::new("Budgeting", config, items)).await?;
    writeln!(
        out,
        "batch     \"{}\" {}: {} items, {IN_FLIGHT} in flight at most, {WORKERS} workers",
        batch.name, batch.status, batch.total_items
    )?;

    let workers: Vec<_> = (1..=WORKERS)
        .map(|n| tokio::spawn(worker(db.clone(), format!("worker-{n}"), batch.id)))
        .collect();
    for handle in workers {
        handle.await??;
    }

    let done = batches::get(&db, user, batch.id).await?;
    writeln!(
        out,
        "done      \"{}\" {}: {}/{} items ({} ok, {} failed)",
        done.name,
        done.status,
        done.completed_items,
        done.total_items,
        done.successful_items,
        done.failed_items
    )?;
    Ok(())
}

/// Claims and processes items until `batch` has ended and nothing is left to claim.
async fn worker(db: DatabaseConnection, name: String, batch: BatchId) -> AnyResult<()> {
    loop {
        match batch_items::claim_next(&db, Actor::Service, &name, LEASE).await? {
            Some(claimed) => process(&db, &name, claimed).await?,
            None if ended(&db, batch).await? => return Ok(()),
            // Every free slot is taken: wait for another worker to finish one.
            None => tokio::time::sleep(STEP).await,
        }
    }
}

async fn ended(db: &DatabaseConnection, batch: BatchId) -> AnyResult<bool> {
    let batch = batches::get(db, Actor::Service, batch).await?;
    Ok(matches!(
        batch.status,
        BatchStatus::Completed | BatchStatus::Failed | BatchStatus::Cancelled
    ))
}

/// Generates one item's conversation (simulated) and finishes the item.
async fn process(db: &DatabaseConnection, name: &str, claimed: ClaimedItem) -> AnyResult<()> {
    let ClaimedItem { item, batch } = claimed;
    for progress in [25, 50, 75] {
        tokio::time::sleep(STEP).await;
        batch_items::set_progress(db, Actor::Service, item.id, name, progress).await?;
    }
    let finished = if item.topic == BAD_TOPIC {
        let error = "generation refused: topic out of scope";
        batch_items::fail(db, Actor::Service, item.id, name, error).await?
    } else {
        match generate(db, &item, &batch).await {
            Ok(conversation) => {
                batch_items::complete(db, Actor::Service, item.id, name, conversation).await?
            }
            Err(err @ ForgeError::Validation { .. }) => {
                let error = err.to_string();
                batch_items::fail(db, Actor::Service, item.id, name, &error).await?
            }
            Err(err) => return Err(err.into()),
        }
    };
    report(name, &finished);
    Ok(())
}

/// Creates the item's conversation for the batch's owner; returns its id.
async fn generate(
    db: &DatabaseConnection,
    item: &forge_db::entity::batch_items::Model,
    batch: &forge_db::entity::batch_jobs::Model,
) -> Result<ConversationId, ForgeError> {
    let tier = item.tier;
    let question = format!("Can you help me with {}?", item.topic);
    let answer = format!("Of course. Let's start with {} step by step.", item.topic);
    let new = NewConversation {
        owner: Some(batch.created_by),
        conversation_id: format!("batch-{}", item.id),
        title: Some(item.topic.clone()),
        tier,
        persona: "first-time saver".to_owned(),
        emotion: "curious".to_owned(),
        topic: item.topic.clone(),
        intent: "learn".to_owned(),
        tone: "friendly".to_owned(),
        category: vec!["finance".to_owned()],
        parameters: json!({ "batch": batch.id, "position": item.position }),
        turns: vec![
            NewTurn::new(TurnRole::User, question, 9),
            NewTurn::new(TurnRole::Assistant, answer, 14),
        ],
    };
    let created = conversations::create(db, Actor::Service, new).await?;
    Ok(created.conversation.id)
}

fn report(name: &str, finished: &FinishedItem) {
    let FinishedItem { item, batch } = finished;
    println!(
        "{name:<9} #{} {} → {}; batch {}/{} ({} ok, {} failed) {}",
        item.position,
        item.topic,
        item.status,
        batch.completed_items,
        batch.total_items,
        batch.successful_items,
        batch.failed_items,
        batch.status
    );
}
