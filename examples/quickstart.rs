//! A tour of Forge through its typed repositories (`forge_db::service`): migrate a
//! database, sign up a new user and walk them through the whole model — profile → project →
//! coding session → jobs → events → conversation with turns and its review → batch with
//! items — then show that another user cannot see their project, and end with how many
//! rows the user has per table. Every call names its [`Actor`]: the user, or the service.
//!
//! ```sh
//! cargo run --example quickstart                                # embedded SQLite, ./forge.db
//! DATABASE_URL=postgres://user:pass@host/db cargo run --example quickstart
//! scripts/with-postgres.sh cargo run --example quickstart      # a throwaway PostgreSQL
//! ```
//!
//! Each run signs up fresh users (`ada+<random>@example.com` and a reviewer), so it can be
//! run again and again on the same database. On PostgreSQL every user call also runs under
//! that user's row-level security. Errors print as one line on stderr, with exit code 1.

use std::io::Write;
use std::process::ExitCode;

use chrono::{Duration, Utc};
use forge_db::entity::prelude::*;
use forge_db::migration::{Backend, redact_url};
use forge_db::sea_orm::DatabaseConnection;
use forge_db::service::batches::{self, ItemPageRequest, NewBatch, NewBatchItem};
use forge_db::service::conversations::{self, ConversationFilter, NewConversation, NewTurn};
use forge_db::service::jobs::{self, JobFilter, NewJob};
use forge_db::service::profiles::{self, NewProfile};
use forge_db::service::projects::{self, ListProjects, NewProject};
use forge_db::service::sessions::{self, NewSession, SessionFilter};
use forge_db::service::{Actor, ForgeError, PageRequest, events};
use serde_json::json;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("quickstart: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Connect and migrate: DATABASE_URL when set, else the embedded SQLite file.
    let url = forge_db::migration::url_from_env();
    let backend = Backend::from_url(&url).map_or(String::new(), |b| format!(" ({b})"));
    // Write with `writeln!(out, …)?`: a closed stdout is then an error, not a panic.
    let mut out = std::io::stdout();
    writeln!(out, "database  {}{backend}", redact_url(&url))?;
    let db = forge_db::connect(&url).await?;
    let applied = forge_db::migrate(&db).await?;
    writeln!(out, "migrate   {} migration(s) applied", applied.len())?;

    // Signup is the service's: it creates the profile (tier and sessions_limit take their
    // database defaults). From then on the user acts as themself.
    let short = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let email = format!("ada+{short}@example.com");
    let profile = profiles::create(&db, Actor::Service, NewProfile::new(email)).await?;
    let ada = Actor::User(profile.id);
    writeln!(
        out,
        "profile   {} (tier {}, {} live sessions allowed)",
        profile.email, profile.tier, profile.sessions_limit
    )?;

    let project = projects::create(&db, ada, NewProject::new(profile.id, "Weather app")).await?;
    writeln!(out, "project   {} ({})", project.name, project.status)?;

    // A coding session living one hour; it starts pending, the user moves it to active.
    let new = NewSession {
        ttl: Duration::hours(1),
        ..NewSession::new(profile.id, project.id, "Add a settings screen")
    };
    let session = sessions::start(&db, ada, new).await?;
    let was = session.status;
    let session = sessions::transition(&db, ada, session.id, SessionStatus::Active).await?;
    let minutes = ((session.expires_at - Utc::now()).num_seconds() + 30) / 60;
    writeln!(
        out,
        "session   {was} → {}, expires in {minutes} min",
        session.status
    )?;

    // Jobs: the service queues two; a worker claims the next (highest priority first) on a
    // 30 s lease and completes it.
    let queued = jobs::enqueue_many(
        &db,
        Actor::Service,
        vec![
            NewJob::new(session.id, "Write the README"),
            NewJob {
                priority: 10,
                ..NewJob::new(session.id, "Build the screen")
            },
        ],
    )
    .await?;
    let lease = std::time::Duration::from_secs(30);
    let claimed = jobs::claim(&db, Actor::Service, "worker-1", lease).await?;
    let claimed = claimed.ok_or("a queued job should be claimable")?;
    let done = jobs::complete(
        &db,
        Actor::Service,
        claimed.id,
        "worker-1",
        json!({"ok": true}),
    )
    .await?;
    writeln!(
        out,
        "jobs      {} queued; worker-1 claimed \"{}\" (priority {}) → {}",
        queued.len(),
        done.prompt,
        done.priority,
        done.status
    )?;

    // The service (a worker) appends three events; the user tails the log from seq 0.
    for (event_type, data) in [
        (EventType::Thinking, json!({"text": "Plan the screen"})),
        (EventType::FileChange, json!({"path": "app/settings.tsx"})),
        (EventType::PreviewReady, json!({"url": "https://x.example"})),
    ] {
        events::append(&db, Actor::Service, session.id, event_type, data).await?;
    }
    let tail = events::after(&db, ada, session.id, 0, 50).await?;
    let log: Vec<_> = tail
        .iter()
        .map(|event| format!("{} {}", event.seq, event.event_type))
        .collect();
    writeln!(out, "events    user tails seq {}", log.join(", "))?;

    // A conversation with its three turns in one call: numbered 1..3, totals from the turns.
    let new = NewConversation {
        owner: None,
        conversation_id: format!("conv-{short}"),
        title: None,
        tier: ConversationTier::Scenario,
        persona: "first-time saver".to_owned(),
        emotion: "hopeful".to_owned(),
        topic: "travel budgeting".to_owned(),
        intent: "plan savings".to_owned(),
        tone: "friendly".to_owned(),
        category: vec!["finance".to_owned(), "travel".to_owned()],
        parameters: json!({}),
        turns: vec![
            NewTurn::new(TurnRole::User, "I want to save for a trip to Japan.", 11),
            NewTurn::new(TurnRole::Assistant, "Let's work out a monthly amount.", 38),
            NewTurn::new(TurnRole::User, "About 300 a month works for me.", 9),
        ],
    };
    let created = conversations::create(&db, ada, new).await?;
    let conversation = created.conversation;
    // One more turn, numbered 4; total_turns and total_tokens follow in the same write.
    let reply = NewTurn::new(TurnRole::Assistant, "Then you are there in ten months.", 12);
    conversations::append_turn(&db, ada, conversation.id, reply).await?;
    let stored = conversations::get_with_turns(&db, ada, conversation.id).await?;
    writeln!(
        out,
        "convo     {} ({}, {}): {} turns created + 1 appended = {} turns, {} tokens",
        stored.conversation.conversation_id,
        conversation.status,
        stored.conversation.tier,
        created.turns.len(),
        stored.turns.len(),
        stored.conversation.total_tokens
    )?;

    // The review: the owner submits, the service approves for a reviewer (never the owner).
    let reviewer = NewProfile::new(format!("grace+{short}@example.com"));
    let reviewer = profiles::create(&db, Actor::Service, reviewer).await?;
    let submitted = conversations::submit_for_review(&db, ada, conversation.id, None).await?;
    let approved = conversations::approve(
        &db,
        Actor::Service,
        conversation.id,
        reviewer.id,
        Some("Clear and friendly"),
    )
    .await?;
    let history: Vec<_> = approved
        .review_history
        .0
        .iter()
        .map(|step| step.action.to_string())
        .collect();
    writeln!(
        out,
        "review    {} → {} by {}; history {} ({})",
        submitted.status,
        approved.status,
        reviewer.email,
        history.len(),
        history.join(", ")
    )?;

    // A batch with its three items in one call (positions 1..3, total_items 3).
    let config = BatchConfiguration {
        concurrent_processing: 2,
        ..BatchConfiguration::new(ConversationTier::Scenario)
    };
    let topics = ["travel", "debt", "an emergency fund"];
    let items = topics.into_iter().map(NewBatchItem::new).collect();
    let batch = batches::create(&db, ada, NewBatch::new("Budgeting", config, items)).await?;
    let listed = batches::list_items(&db, ada, batch.id, ItemPageRequest::default()).await?;
    let listed: Vec<_> = listed
        .items
        .iter()
        .map(|item| format!("#{} {} {}", item.position, item.topic, item.status))
        .collect();
    writeln!(
        out,
        "batch     {} ({}): total_items {}, items [{}]",
        batch.name,
        batch.status,
        batch.total_items,
        listed.join(", ")
    )?;
    // Workers process items through `forge_service::batch_items` (claim, progress,
    // complete or fail); here the owner only pauses and resumes. Never started, the batch
    // resumes to queued.
    let paused = batches::pause(&db, ada, batch.id).await?;
    let resumed = batches::resume(&db, ada, batch.id).await?;
    writeln!(
        out,
        "batch     {} → {} → {}; {}/{} done ({} ok, {} failed)",
        batch.status,
        paused.status,
        resumed.status,
        resumed.completed_items,
        resumed.total_items,
        resumed.successful_items,
        resumed.failed_items
    )?;

    // Isolation: to another user, Ada's project looks exactly like a missing one.
    let other = Actor::User(reviewer.id);
    match projects::get(&db, other, project.id).await {
        Err(err @ ForgeError::NotFound { .. }) => {
            writeln!(out, "isolation other user gets: {err}")?;
        }
        Ok(_) => return Err("isolation broken: another user can see the project".into()),
        Err(err) => return Err(err.into()),
    }

    writeln!(out, "summary   {}", summary(&db, ada).await?)?;
    Ok(())
}

/// How many rows of each table `user` has, read back through the repositories.
async fn summary(
    db: &DatabaseConnection,
    user: Actor,
) -> Result<String, Box<dyn std::error::Error>> {
    let uid = user.user_id().ok_or("the summary is per user")?;
    let first = PageRequest::first();
    let profiles = usize::from(profiles::find(db, user, uid).await?.is_some());
    let projects = projects::list(db, user, &ListProjects::default(), &first).await?;
    let sessions = sessions::list(db, user, SessionFilter::default(), first.clone()).await?;
    let conversations = conversations::list(db, user, ConversationFilter::default(), &first);
    let conversations = conversations.await?;
    let batches = batches::list(db, user, &first).await?;
    let (mut events, mut turns, mut items) = (0, 0, 0);
    for session in &sessions.items {
        events += events::after(db, user, session.id, 0, 50).await?.len();
    }
    for conversation in &conversations.items {
        let stored = conversations::get_with_turns(db, user, conversation.id).await?;
        turns += stored.turns.len();
    }
    for batch in &batches.items {
        let request = ItemPageRequest::default();
        items += batches::list_items(db, user, batch.id, request)
            .await?
            .items
            .len();
    }
    let jobs = jobs::list(db, user, JobFilter::default(), first.clone()).await?;
    let tables = "profiles projects sessions jobs events conversations turns batches items";
    let counts = [
        profiles,
        projects.items.len(),
        sessions.items.len(),
        jobs.items.len(),
        events,
        conversations.items.len(),
        turns,
        batches.items.len(),
        items,
    ];
    let counts: Vec<_> = (tables.split(' ').zip(counts))
        .map(|(table, n)| format!("{table} {n}"))
        .collect();
    Ok(counts.join(", "))
}
