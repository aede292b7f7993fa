//! A tour of Forge: migrate a database, then walk one new user through the whole model —
//! profile → project → coding session → jobs → events → conversation with turns → batch
//! with items — printing each step, and end with how many rows the user has per table.
//!
//! ```sh
//! cargo run --example quickstart                                # embedded SQLite, ./forge.db
//! DATABASE_URL=postgres://user:pass@host/db cargo run --example quickstart
//! scripts/with-postgres.sh cargo run --example quickstart      # a throwaway PostgreSQL
//! ```
//!
//! Each run creates a fresh user (`ada+<random>@example.com`), so it can be run again and
//! again on the same database. Errors print as one line on stderr, with exit code 1.

use std::io::Write;
use std::process::ExitCode;

use chrono::{Duration, Utc};
use forge_db::entity::prelude::*;
use forge_db::entity::{
    batch_items, batch_jobs, coding_jobs, coding_sessions, conversation_turns, conversations,
    profiles, projects, session_events,
};
use forge_db::migration::{Backend, redact_url};
use forge_db::sea_orm::sea_query::{Expr, ExprTrait};
use forge_db::sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    ModelTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use forge_db::{DEFAULT_DATABASE_URL, Migrator, MigratorTrait};
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
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let backend = Backend::from_url(&url).map_or(String::new(), |b| format!(" ({b})"));
    // Write with `writeln!(out, …)?`: a closed stdout is then an error, not a panic.
    let mut out = std::io::stdout();
    writeln!(out, "database  {}{backend}", redact_url(&url))?;
    let db = forge_db::connect(&url).await?;
    let pending = Migrator::get_pending_migrations(&db).await?.len();
    Migrator::up(&db, None).await?;
    writeln!(out, "migrate   {pending} migration(s) applied")?;

    // A profile. `id` and the timestamps come from the entity's ActiveModelBehavior; the
    // columns left out (tier, sessions_limit) take their database defaults.
    let short = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let profile = profiles::ActiveModel {
        email: Set(format!("ada+{short}@example.com")),
        display_name: Set("Ada".to_owned()),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    writeln!(
        out,
        "profile   {} (tier {}, {} live sessions allowed)",
        profile.email, profile.tier, profile.sessions_limit
    )?;

    let project = projects::ActiveModel {
        user_id: Set(profile.id),
        name: Set("Weather app".to_owned()),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    writeln!(out, "project   {} ({})", project.name, project.status)?;

    // A coding session expiring in an hour, started: pending → active.
    let session = coding_sessions::ActiveModel {
        user_id: Set(profile.id),
        project_id: Set(project.id),
        initial_prompt: Set("Add a settings screen".to_owned()),
        expires_at: Set(Utc::now() + Duration::hours(1)),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    let was = session.status;
    if !was.can_transition_to(SessionStatus::Active) {
        return Err(format!("a {was} session cannot become active").into());
    }
    let mut session: coding_sessions::ActiveModel = session.into();
    session.status = Set(SessionStatus::Active);
    let session = session.update(&db).await?;
    let now = session.status;
    let minutes = ((session.expires_at - Utc::now()).num_seconds() + 30) / 60;
    writeln!(out, "session   {was} → {now}, expires in {minutes} min")?;

    // Two jobs, and the order a worker claims them: pending, by priority, oldest first.
    for (prompt, priority) in [("Write the README", 0), ("Build the screen", 10)] {
        coding_jobs::ActiveModel {
            session_id: Set(session.id),
            prompt: Set(prompt.to_owned()),
            priority: Set(priority),
            ..Default::default()
        }
        .insert(&db)
        .await?;
    }
    let queue = CodingJobs::find()
        .filter(coding_jobs::Column::SessionId.eq(session.id))
        .filter(coding_jobs::Column::Status.eq(JobStatus::Pending))
        .filter(coding_jobs::Column::RunAfter.lte(Utc::now()))
        .order_by_desc(coding_jobs::Column::Priority)
        .order_by_asc(coding_jobs::Column::CreatedAt)
        .all(&db)
        .await?;
    let queue: Vec<_> = queue
        .iter()
        .map(|job| format!("{} (priority {})", job.prompt, job.priority))
        .collect();
    writeln!(out, "jobs      claim order: {}", queue.join(", "))?;

    // Three events in the session's log.
    let mut log = Vec::new();
    for (event_type, data) in [
        (EventType::Thinking, json!({"text": "Plan the screen"})),
        (EventType::FileChange, json!({"path": "app/settings.tsx"})),
        (EventType::PreviewReady, json!({"url": "https://x.example"})),
    ] {
        let event = append_event(&db, session.id, event_type, data).await?;
        log.push(format!("{} {}", event.seq, event.event_type));
    }
    writeln!(out, "events    seq {}", log.join(", "))?;

    // A conversation and its three turns in one transaction; its totals match the turns.
    let turns = [
        (TurnRole::User, "I want to save for a trip to Japan.", 11),
        (TurnRole::Assistant, "Let's work out a monthly amount.", 38),
        (TurnRole::User, "About 300 a month works for me.", 9),
    ];
    let txn = db.begin().await?;
    let conversation = conversations::ActiveModel {
        conversation_id: Set(format!("conv-{short}")),
        created_by: Set(profile.id),
        status: Set(ConversationStatus::PendingReview),
        tier: Set(ConversationTier::Scenario),
        persona: Set("first-time saver".to_owned()),
        emotion: Set("hopeful".to_owned()),
        topic: Set("travel budgeting".to_owned()),
        intent: Set("plan savings".to_owned()),
        tone: Set("friendly".to_owned()),
        category: Set(Categories(vec!["finance".to_owned(), "travel".to_owned()])),
        total_turns: Set(turns.len() as i32),
        total_tokens: Set(turns.iter().map(|(_, _, tokens)| tokens).sum()),
        quality_metrics: Set(Some(QualityMetrics {
            overall: 8.5,
            coherence: 9.0,
            ..Default::default()
        })),
        review_history: Set(ReviewHistory(vec![ReviewAction {
            action: ReviewActionKind::Submitted,
            performed_by: profile.id,
            at: Utc::now(),
            comment: None,
        }])),
        generated_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    for (number, (role, content, tokens)) in (1..).zip(turns) {
        conversation_turns::ActiveModel {
            conversation_id: Set(conversation.id),
            turn_number: Set(number),
            role: Set(role),
            content: Set(content.to_owned()),
            token_count: Set(tokens),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    // Read it back together with its turns, through the relation.
    let (conversation, stored) = Conversations::find_by_id(conversation.id)
        .find_with_related(ConversationTurns)
        .all(&db)
        .await?
        .pop()
        .ok_or("the conversation just inserted is missing")?;
    writeln!(
        out,
        "convo     {} ({}, {}): {} turns, {} tokens; {} turns read back",
        conversation.conversation_id,
        conversation.status,
        conversation.tier,
        conversation.total_turns,
        conversation.total_tokens,
        stored.len()
    )?;

    // A batch and its three items in one transaction.
    let txn = db.begin().await?;
    let batch = batch_jobs::ActiveModel {
        created_by: Set(profile.id),
        name: Set("Budgeting".to_owned()),
        status: Set(BatchStatus::Processing),
        total_items: Set(3),
        configuration: Set(BatchConfiguration {
            concurrent_processing: 2,
            ..BatchConfiguration::new(ConversationTier::Scenario)
        }),
        started_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let mut items = Vec::new();
    for (position, topic) in (1..).zip(["travel", "debt", "an emergency fund"]) {
        let item = batch_items::ActiveModel {
            batch_job_id: Set(batch.id),
            position: Set(position),
            topic: Set(topic.to_owned()),
            tier: Set(ConversationTier::Scenario),
            ..Default::default()
        };
        items.push(item.insert(&txn).await?);
    }
    txn.commit().await?;
    let statuses: Vec<_> = items.iter().map(|item| item.status.as_str()).collect();
    writeln!(
        out,
        "batch     {}: total_items {}, items [{}]",
        batch.name,
        batch.total_items,
        statuses.join(", ")
    )?;

    // The first item is done and produced the conversation: the item and the batch's
    // counters change in one transaction. The counters are bumped in SQL, so concurrent
    // workers cannot lose an update; bulk updates skip ActiveModelBehavior, so updated_at
    // is set here too.
    let txn = db.begin().await?;
    let mut item: batch_items::ActiveModel = items.remove(0).into();
    item.status = Set(ItemStatus::Completed);
    item.progress = Set(Some(100));
    item.conversation_id = Set(Some(conversation.id));
    let item = item.update(&txn).await?;
    BatchJobs::update_many()
        .col_expr(
            batch_jobs::Column::CompletedItems,
            Expr::col(batch_jobs::Column::CompletedItems).add(1),
        )
        .col_expr(
            batch_jobs::Column::SuccessfulItems,
            Expr::col(batch_jobs::Column::SuccessfulItems).add(1),
        )
        .col_expr(batch_jobs::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(batch_jobs::Column::Id.eq(batch.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    // Follow the item's relations: to its batch and to its conversation.
    let batch = item.find_related(BatchJobs).one(&db).await?;
    let made = item.find_related(Conversations).one(&db).await?;
    let (Some(batch), Some(made)) = (batch, made) else {
        return Err("the item's batch or conversation is missing".into());
    };
    writeln!(
        out,
        "item      #{} {} → {}; batch {}/{} done ({} ok, {} failed)",
        item.position,
        item.status,
        made.conversation_id,
        batch.completed_items,
        batch.total_items,
        batch.successful_items,
        batch.failed_items
    )?;

    writeln!(out, "summary   {}", summary(&db, &profile).await?)?;
    Ok(())
}

/// Appends an event to a session's log with the next `seq` (MAX(seq) + 1), in one
/// transaction. On PostgreSQL a trigger assigns `seq` when it is left out; setting it
/// works on both backends.
async fn append_event(
    db: &DatabaseConnection,
    session_id: Uuid,
    event_type: EventType,
    data: Json,
) -> Result<session_events::Model, DbErr> {
    let txn = db.begin().await?;
    let last: Option<i64> = SessionEvents::find()
        .select_only()
        .column_as(session_events::Column::Seq.max(), "last_seq")
        .filter(session_events::Column::SessionId.eq(session_id))
        .into_tuple()
        .one(&txn)
        .await?
        .flatten();
    let event = session_events::ActiveModel {
        session_id: Set(session_id),
        seq: Set(last.unwrap_or(0) + 1),
        event_type: Set(event_type),
        data: Set(data),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(event)
}

/// How many rows of each table belong to the user: owned directly, or via their parent.
async fn summary(db: &DatabaseConnection, profile: &profiles::Model) -> Result<String, DbErr> {
    let by_session = coding_sessions::Column::UserId.eq(profile.id);
    let by_conversation = conversations::Column::CreatedBy.eq(profile.id);
    let by_batch = batch_jobs::Column::CreatedBy.eq(profile.id);
    let jobs = CodingJobs::find().inner_join(CodingSessions);
    let events = SessionEvents::find().inner_join(CodingSessions);
    let turns = ConversationTurns::find().inner_join(Conversations);
    let items = BatchItems::find().inner_join(BatchJobs);
    let tables = "profiles projects sessions jobs events conversations turns batches items";
    let counts = [
        Profiles::find_by_id(profile.id).count(db).await?,
        profile.find_related(Projects).count(db).await?,
        profile.find_related(CodingSessions).count(db).await?,
        jobs.filter(by_session.clone()).count(db).await?,
        events.filter(by_session).count(db).await?,
        profile.find_related(Conversations).count(db).await?,
        turns.filter(by_conversation).count(db).await?,
        profile.find_related(BatchJobs).count(db).await?,
        items.filter(by_batch).count(db).await?,
    ];
    let counts: Vec<_> = (tables.split(' ').zip(counts))
        .map(|(table, n)| format!("{table} {n}"))
        .collect();
    Ok(counts.join(", "))
}
