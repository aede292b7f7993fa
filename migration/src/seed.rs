//! Development data: `forge-migration seed [--users N]`.
//!
//! For each of `N` users (numbered from 1) this loads the data set of seed 002 step 9 —
//! a profile, a project "Test Todo App", a live coding session, its jobs (completed,
//! pending, failed) and its events — plus seven conversations, one in every review
//! status, each with its turns, and a batch of six items in every item status — and from
//! seeds 000 and 001, five pipeline runs (`jobs`), one in every run status, with their
//! events and artifacts. The prompts (`prompts`) are shared by every user and loaded once.
//! From seed 003's generation sources, each user also gets two templates (one is seed 003's
//! sample "Financial Planning Triumph"), a scenario under each, two edge cases of the
//! first scenario, a generation log and a completed export. From seed 004's accounts: the
//! credit account, its 100-credit signup bonus and the notification preferences come
//! with the profile (the database's signup trigger); the seed adds two spends that take the
//! balance from 100 to 5 (crossing the low-credit threshold, so the database notifies
//! `credits_low`) and a refund of 20, two API keys (one revoked) and two notifications
//! (one read). The usage counters and the activity log follow from the database's
//! triggers as the rows go in.
//!
//! Loading is idempotent: every row has a fixed id derived from the user number and the
//! row's place in the set (`5eed0000-0000-4000-8000-UUUUUUUUKKNN`), emails are
//! `dev{n}@forge.local`, run ids `seed-{n}-{status}`, and every insert is `ON CONFLICT
//! DO NOTHING` on the primary key — but the ledger, whose rows move balances: its rows that
//! are not there yet are inserted with a plain `INSERT` (the database refuses a retried
//! ledger row even under `ON CONFLICT DO NOTHING`). Running it twice leaves the same rows;
//! running it with a larger `N` adds the missing users. The report counts, per table, the
//! rows the run added, by the seed's inserts or by the database's triggers.
//!
//! The set holds to the schema's invariants: a conversation's `total_turns` and
//! `total_tokens` are the count and token sum of its turns, its `review_history` matches
//! its status, and the batch's counters are what its items say
//! (`completed = successful + failed ≤ total`). A run has `started_at` once it ran and
//! `completed_at` once it ended, an `error_message` only when it failed, and its events
//! and artifacts carry its owner. Everything is written in one transaction.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use forge_entity::batch_items::{self, ItemStatus};
use forge_entity::batch_jobs::{
    self, BatchConfiguration, BatchPriority, BatchStatus, ErrorHandling,
};
use forge_entity::coding_jobs::{self, JobStatus};
use forge_entity::coding_sessions::{self, SessionStatus};
use forge_entity::conversation_turns::{self, TurnRole};
use forge_entity::conversations::{
    self, Categories, ConversationStatus, ConversationTier, QualityMetrics, ReviewAction,
    ReviewActionKind, ReviewHistory,
};
use forge_entity::credit_transactions::{self, CreditKind};
use forge_entity::edge_cases::{self, EdgeComplexity, TestStatus};
use forge_entity::export_logs::{self, ExportFormat, ExportStatus};
use forge_entity::ids::{ConversationId, CreditAccountId, ProfileId, PromptId, RunId};
use forge_entity::notifications::{self, NotificationType};
use forge_entity::pipeline_runs::{self, RunStatus};
use forge_entity::profiles::{self, Tier};
use forge_entity::projects::{self, ProjectStatus};
use forge_entity::scenarios::{self, GenerationStatus, ScenarioStatus};
use forge_entity::session_events::{self, EventType};
use forge_entity::templates::{self, StringList};
use forge_entity::{
    api_keys, artifacts, credit_accounts, generation_logs, pipeline_events, prompts,
};
use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::prelude::Decimal;
use sea_orm_migration::sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, Statement, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::{Migrator, TABLES};

/// The most users one `seed` run loads.
pub const MAX_SEED_USERS: u32 = 10_000;

/// What a `seed` run did, table by table (in [`TABLES`] order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedReport {
    /// How many users the data set was loaded for.
    pub users: u32,
    /// One entry per table, parents before children.
    pub tables: Vec<TableCount>,
}

/// Rows of one table after a `seed` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCount {
    /// The table's name.
    pub table: &'static str,
    /// Rows this run added to the table: by its inserts, or by the database's triggers
    /// (accounts, usage, activity); 0 for rows that were already there.
    pub inserted: u64,
    /// Rows in the table afterwards (seeded or not).
    pub total: u64,
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.tables {
            writeln!(
                f,
                "  {:20} {:>6} new, {:>7} in the table",
                t.table, t.inserted, t.total
            )?;
        }
        let inserted: u64 = self.tables.iter().map(|t| t.inserted).sum();
        write!(
            f,
            "forge-migration: seeded {} user(s) (dev1@forge.local …): {inserted} new rows",
            self.users
        )
    }
}

/// Why `seed` loaded nothing.
#[derive(Debug)]
pub enum SeedError {
    /// The database is not migrated to this binary's latest migration.
    SchemaNotReady {
        /// Migrations applied to the database.
        applied: usize,
        /// Migrations this binary carries.
        total: usize,
    },
    /// `--users` outside `1..=MAX_SEED_USERS`.
    InvalidUsers(u32),
    /// The database refused a statement; the transaction was rolled back.
    Db(DbErr),
}

impl fmt::Display for SeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SchemaNotReady { applied, total } => write!(
                f,
                "the schema is missing or out of date ({applied} of {total} migrations \
                 applied): run `forge-migration up` first"
            ),
            Self::InvalidUsers(n) => {
                write!(f, "--users must be between 1 and {MAX_SEED_USERS}, not {n}")
            }
            Self::Db(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for SeedError {}

impl From<DbErr> for SeedError {
    fn from(err: DbErr) -> Self {
        Self::Db(err)
    }
}

/// Loads the development data set for users `1..=users` into a migrated database.
///
/// # Errors
/// [`SeedError::InvalidUsers`] for `users` outside `1..=MAX_SEED_USERS`,
/// [`SeedError::SchemaNotReady`] when a migration is pending (nothing is written), and
/// [`SeedError::Db`] when a statement fails (the whole run is rolled back).
pub async fn seed(db: &DatabaseConnection, users: u32) -> Result<SeedReport, SeedError> {
    if !(1..=MAX_SEED_USERS).contains(&users) {
        return Err(SeedError::InvalidUsers(users));
    }
    ensure_migrated(db).await?;
    let now = Utc::now();
    let txn = db.begin().await?;
    let before = row_counts(&txn).await?;
    for user in 1..=users {
        load(&txn, &UserSet::new(user, now)).await?;
    }
    insert_new::<prompts::Entity, _>(&txn, prompts(now)).await?;
    let after = row_counts(&txn).await?;
    let tables = TABLES
        .iter()
        .zip(before.iter().zip(after))
        .map(|(table, (before, total))| TableCount {
            table,
            inserted: total.saturating_sub(*before),
            total,
        })
        .collect();
    txn.commit().await?;
    Ok(SeedReport { users, tables })
}

/// Fails unless every migration of this binary is applied.
async fn ensure_migrated(db: &DatabaseConnection) -> Result<(), SeedError> {
    let total = Migrator::migrations().len();
    // No migration table at all reads as "nothing applied".
    let applied = Migrator::get_applied_migrations_read_only(db)
        .await
        .map_or(0, |m| m.len());
    if applied < total {
        return Err(SeedError::SchemaNotReady { applied, total });
    }
    Ok(())
}

/// The seed's fixed ids: `5eed0000-0000-4000-8000-UUUUUUUUKKNN` for user `U`, kind `K`
/// (which table) and row `N`, as the table's typed id.
fn id<T: From<Uuid>>(user: u32, kind: u8, n: u8) -> T {
    const BASE: u128 = 0x5eed_0000_0000_4000_8000_0000_0000_0000;
    T::from(Uuid::from_u128(
        BASE | (u128::from(user) << 16) | (u128::from(kind) << 8) | u128::from(n),
    ))
}

/// Every row of one user's data set.
struct UserSet {
    profile: profiles::Model,
    project: projects::Model,
    session: coding_sessions::Model,
    jobs: Vec<coding_jobs::Model>,
    events: Vec<session_events::Model>,
    conversations: Vec<conversations::Model>,
    turns: Vec<conversation_turns::Model>,
    batch: batch_jobs::Model,
    items: Vec<batch_items::Model>,
    runs: Vec<pipeline_runs::Model>,
    run_events: Vec<pipeline_events::Model>,
    artifacts: Vec<artifacts::Model>,
    templates: Vec<templates::Model>,
    scenarios: Vec<scenarios::Model>,
    edge_cases: Vec<edge_cases::Model>,
    generation_logs: Vec<generation_logs::Model>,
    export_logs: Vec<export_logs::Model>,
    /// The ledger rows after the signup bonus, with the account to be filled in (the
    /// database opens the account with the profile).
    ledger: Vec<credit_transactions::Model>,
    api_keys: Vec<api_keys::Model>,
    notifications: Vec<notifications::Model>,
}

/// When each row was made, counted back from a run's `now`.
#[derive(Clone, Copy)]
struct Clock {
    start: DateTime<Utc>,
}

impl Clock {
    fn at(self, minutes: i64) -> DateTime<Utc> {
        self.start + Duration::minutes(minutes)
    }
}

impl UserSet {
    fn new(user: u32, now: DateTime<Utc>) -> Self {
        let clock = Clock {
            start: now - Duration::days(1),
        };
        let owner: ProfileId = id(user, 0, 0);
        let (conversations, turns): (Vec<_>, Vec<_>) = ConversationStatus::ALL
            .iter()
            .zip(0_u8..)
            .map(|(status, n)| conversation(owner, user, n, *status, clock))
            .unzip();
        let items = items(user, &conversations, clock);
        let runs = runs(user, clock);
        let templates = templates(user, clock);
        let scenarios = scenarios(user, &templates, &conversations, clock);
        Self {
            edge_cases: edge_cases(user, &scenarios, clock),
            generation_logs: generation_logs(user, &templates, &conversations, clock),
            export_logs: export_logs(user, clock),
            ledger: ledger(user, clock),
            api_keys: keys(user, clock),
            notifications: notifications(user, clock),
            templates,
            scenarios,
            profile: profile(user, clock),
            project: project(user, clock),
            session: session(user, now, clock),
            jobs: jobs(user, clock),
            events: events(user, clock),
            batch: batch(user, &items, clock),
            conversations,
            turns: turns.into_iter().flatten().collect(),
            items,
            run_events: run_events(user, &runs),
            artifacts: run_artifacts(user, &runs),
            runs,
        }
    }
}

fn profile(user: u32, clock: Clock) -> profiles::Model {
    profiles::Model {
        id: id(user, 0, 0),
        email: format!("dev{user}@forge.local"),
        display_name: format!("dev{user}"),
        avatar_url: None,
        tier: if user.is_multiple_of(2) {
            Tier::Pro
        } else {
            Tier::Free
        },
        sessions_limit: 3,
        stripe_customer_id: None,
        created_at: clock.at(0),
        updated_at: clock.at(0),
    }
}

fn project(user: u32, clock: Clock) -> projects::Model {
    projects::Model {
        id: id(user, 1, 0),
        user_id: id(user, 0, 0),
        name: "Test Todo App".to_owned(),
        description: Some("A sample todo application for testing".to_owned()),
        template_id: None,
        expo_config: json!({"sdkVersion": "52.0.0", "name": "todo"}),
        sandbox_id: None,
        status: ProjectStatus::Active,
        created_at: clock.at(1),
        updated_at: clock.at(1),
    }
}

fn session(user: u32, now: DateTime<Utc>, clock: Clock) -> coding_sessions::Model {
    coding_sessions::Model {
        id: id(user, 2, 0),
        user_id: id(user, 0, 0),
        project_id: id(user, 1, 0),
        initial_prompt: "Build a todo app with React".to_owned(),
        status: SessionStatus::Active,
        expires_at: now + Duration::hours(1),
        metadata: json!({"files": 12}),
        eas_update_url: None,
        webview_url: None,
        created_at: clock.at(2),
        updated_at: clock.at(2),
    }
}

fn jobs(user: u32, clock: Clock) -> Vec<coding_jobs::Model> {
    let job = |n: u8, prompt: &str, status: JobStatus| coding_jobs::Model {
        id: id(user, 3, n),
        session_id: id(user, 2, 0),
        prompt: prompt.to_owned(),
        status,
        priority: i32::from(n),
        retry_count: 0,
        max_retries: 3,
        run_after: clock.at(3),
        locked_by: None,
        locked_until: None,
        result: None,
        error_message: None,
        started_at: None,
        completed_at: None,
        created_at: clock.at(3 + i64::from(n)),
        updated_at: clock.at(3 + i64::from(n)),
    };
    let mut done = job(0, "Build a todo app with React", JobStatus::Completed);
    done.started_at = Some(clock.at(4));
    done.completed_at = Some(clock.at(9));
    done.result = Some(json!({"files_changed": 7, "summary": "Todo list with add/remove"}));
    let mut failed = job(2, "Add offline sync", JobStatus::Failed);
    failed.retry_count = 3;
    failed.started_at = Some(clock.at(10));
    failed.completed_at = Some(clock.at(11));
    failed.error_message = Some("sandbox timed out after 3 attempts".to_owned());
    vec![
        done,
        job(1, "Add a dark mode toggle", JobStatus::Pending),
        failed,
    ]
}

fn events(user: u32, clock: Clock) -> Vec<session_events::Model> {
    let data = [
        (
            EventType::Thinking,
            json!({"message": "Planning the todo app structure..."}),
        ),
        (
            EventType::Terminal,
            json!({"command": "npm install", "output": "Installing dependencies..."}),
        ),
        (
            EventType::FileChange,
            json!({"path": "App.tsx", "change": "created"}),
        ),
        (EventType::Completion, json!({"message": "Todo app ready"})),
    ];
    data.into_iter()
        .zip(1_u8..)
        .map(|((event_type, data), seq)| session_events::Model {
            id: id(user, 4, seq),
            session_id: id(user, 2, 0),
            seq: i64::from(seq),
            event_type,
            data,
            created_at: clock.at(4 + i64::from(seq)),
        })
        .collect()
}

const TOPICS: [&str; 7] = [
    "Refund for a late delivery",
    "Resetting a forgotten password",
    "Upgrading to the pro plan",
    "Reporting a billing error",
    "Cancelling a subscription",
    "Changing the delivery address",
    "A damaged item on arrival",
];

/// Conversation `n` of `owner`, in `status`, and its turns.
fn conversation(
    owner: ProfileId,
    user: u32,
    n: u8,
    status: ConversationStatus,
    clock: Clock,
) -> (conversations::Model, Vec<conversation_turns::Model>) {
    let conv_id: ConversationId = id(user, 5, n);
    let created = clock.at(30 + i64::from(n));
    let turns = turns(user, n, conv_id, status, created);
    let generated = status != ConversationStatus::Draft && status != ConversationStatus::Failed;
    let approved = status == ConversationStatus::Approved;
    let score = 6.0 + f64::from(n) / 2.0;
    let model = conversations::Model {
        id: conv_id,
        conversation_id: format!("seed-{user}-{}", status.as_str()),
        created_by: owner,
        title: Some(TOPICS[usize::from(n)].to_owned()),
        status,
        tier: [
            ConversationTier::Template,
            ConversationTier::Scenario,
            ConversationTier::EdgeCase,
        ][usize::from(n) % 3],
        persona: "customer".to_owned(),
        emotion: if n.is_multiple_of(2) {
            "frustrated"
        } else {
            "calm"
        }
        .to_owned(),
        topic: TOPICS[usize::from(n)].to_owned(),
        intent: "resolve an issue".to_owned(),
        tone: "friendly".to_owned(),
        category: Categories(vec!["support".to_owned(), "seed".to_owned()]),
        parameters: json!({"temperature": 0.7}),
        total_turns: i32::try_from(turns.len()).unwrap_or(i32::MAX),
        total_tokens: turns.iter().map(|t| t.token_count).sum(),
        quality_score: generated.then_some(score),
        quality_metrics: generated.then(|| metrics(score)),
        template_id: None,
        parent_id: None,
        parent_type: None,
        review_history: review_history(owner, status, created),
        generated_at: generated.then(|| created + Duration::minutes(1)),
        approved_at: approved.then(|| created + Duration::minutes(3)),
        approved_by: approved.then_some(owner),
        created_at: created,
        updated_at: created,
    };
    (model, turns)
}

fn metrics(score: f64) -> QualityMetrics {
    QualityMetrics {
        overall: score,
        relevance: score,
        accuracy: score,
        naturalness: score,
        coherence: score,
        confidence: 0.9,
        extra: serde_json::Map::new(),
    }
}

/// Drafts and failed generations have an opening exchange; the rest four turns.
fn turns(
    user: u32,
    n: u8,
    conversation_id: ConversationId,
    status: ConversationStatus,
    created: DateTime<Utc>,
) -> Vec<conversation_turns::Model> {
    let count: u8 = match status {
        ConversationStatus::Draft | ConversationStatus::Failed => 2,
        _ => 4,
    };
    (1..=count)
        .map(|turn| {
            let (role, content) = if turn % 2 == 1 {
                (
                    TurnRole::User,
                    format!("Hi, I need help: {}.", TOPICS[usize::from(n)]),
                )
            } else {
                (
                    TurnRole::Assistant,
                    "Of course, let me look into that for you.".to_owned(),
                )
            };
            conversation_turns::Model {
                // Turns of conversation n are ids (kind 6, n * 16 + turn).
                id: id(user, 6, n * 16 + turn),
                conversation_id,
                turn_number: i32::from(turn),
                role,
                content,
                token_count: 20 + 7 * i32::from(turn) + i32::from(n),
                created_at: created,
            }
        })
        .collect()
}

/// The review actions that lead to `status`.
fn review_history(
    owner: ProfileId,
    status: ConversationStatus,
    created: DateTime<Utc>,
) -> ReviewHistory {
    let action = |action, minutes, comment: Option<&str>| ReviewAction {
        action,
        performed_by: owner,
        at: created + Duration::minutes(minutes),
        comment: comment.map(str::to_owned),
    };
    let verdict = match status {
        ConversationStatus::Approved => Some(action(ReviewActionKind::Approved, 3, None)),
        ConversationStatus::Rejected => {
            Some(action(ReviewActionKind::Rejected, 3, Some("off topic")))
        }
        ConversationStatus::NeedsRevision => Some(action(
            ReviewActionKind::RevisionRequested,
            3,
            Some("make the assistant more concise"),
        )),
        ConversationStatus::PendingReview => None,
        _ => return ReviewHistory::default(),
    };
    let submitted = action(ReviewActionKind::Submitted, 2, None);
    ReviewHistory(std::iter::once(submitted).chain(verdict).collect())
}

/// Six items: three completed (linked to generated conversations), one failed, one
/// processing, one queued.
fn items(
    user: u32,
    conversations: &[conversations::Model],
    clock: Clock,
) -> Vec<batch_items::Model> {
    use ItemStatus::{Completed, Failed, Processing, Queued};
    let statuses = [Completed, Completed, Completed, Failed, Processing, Queued];
    statuses
        .into_iter()
        .zip(0_u8..)
        .map(|(status, n)| {
            let linked = conversations
                .iter()
                .filter(|c| c.generated_at.is_some())
                .nth(usize::from(n));
            batch_items::Model {
                id: id(user, 8, n),
                batch_job_id: id(user, 7, 0),
                position: i32::from(n) + 1,
                topic: TOPICS[usize::from(n)].to_owned(),
                tier: ConversationTier::Scenario,
                parameters: json!({"persona": "customer"}),
                status,
                progress: Some(match status {
                    Completed | Failed => 100,
                    Processing => 40,
                    Queued => 0,
                }),
                estimated_time: (status == Queued).then_some(30),
                conversation_id: if status == Completed {
                    linked.map(|c| c.id)
                } else {
                    None
                },
                error: (status == Failed).then(|| "generation timed out".to_owned()),
                // A worker that died holding the item: its lease ran out long ago.
                locked_by: (status == Processing).then(|| "seed-worker".to_owned()),
                locked_until: (status == Processing).then(|| clock.at(70)),
                created_at: clock.at(60),
                updated_at: clock.at(61 + i64::from(n)),
            }
        })
        .collect()
}

/// The batch, its counters taken from `items`.
fn batch(user: u32, items: &[batch_items::Model], clock: Clock) -> batch_jobs::Model {
    let count = |status: ItemStatus| {
        i32::try_from(items.iter().filter(|i| i.status == status).count()).unwrap_or(i32::MAX)
    };
    let (successful, failed) = (count(ItemStatus::Completed), count(ItemStatus::Failed));
    batch_jobs::Model {
        id: id(user, 7, 0),
        created_by: id(user, 0, 0),
        name: "Support conversations (seed)".to_owned(),
        status: BatchStatus::Processing,
        priority: BatchPriority::Normal,
        total_items: i32::try_from(items.len()).unwrap_or(i32::MAX),
        completed_items: successful + failed,
        successful_items: successful,
        failed_items: failed,
        configuration: BatchConfiguration {
            tier: ConversationTier::Scenario,
            shared_parameters: json!({"persona": "customer"}),
            concurrent_processing: 3,
            error_handling: ErrorHandling::Continue,
        },
        estimated_time_remaining: Some(60),
        started_at: Some(clock.at(60)),
        completed_at: None,
        created_at: clock.at(60),
        updated_at: clock.at(60),
    }
}

/// One pipeline run of `user` in every status, each created five minutes after the
/// previous one; those that ran took a minute to start and two to finish.
fn runs(user: u32, clock: Clock) -> Vec<pipeline_runs::Model> {
    RunStatus::ALL
        .iter()
        .zip(0_i64..)
        .map(|(status, n)| {
            let created = clock.at(90 + 5 * n);
            let ran = matches!(
                status,
                RunStatus::Running | RunStatus::Completed | RunStatus::Failed
            );
            pipeline_runs::Model {
                run_id: RunId::new(format!("seed-{user}-{}", status.as_str())),
                project_spec: json!({
                    "name": "Todo App",
                    "platform": "expo",
                    "features": ["lists", "reminders"],
                    "variant": status.as_str(),
                }),
                owner_id: id(user, 0, 0),
                status: *status,
                started_at: ran.then(|| created + Duration::minutes(1)),
                completed_at: status.is_final().then(|| created + Duration::minutes(3)),
                error_message: (*status == RunStatus::Failed)
                    .then(|| "build bot: expo export exited with 1".to_owned()),
                created_at: created,
                updated_at: created + Duration::minutes(if status.is_final() { 3 } else { 1 }),
            }
        })
        .collect()
}

/// What the bots logged: every run that started has a `started` event from the planner and
/// one from the builder; a run that ended has a last event saying how.
fn run_events(user: u32, runs: &[pipeline_runs::Model]) -> Vec<pipeline_events::Model> {
    let mut events = Vec::new();
    for (run, r) in runs.iter().zip(0_u8..) {
        let Some(started) = run.started_at else {
            continue;
        };
        let mut logged = vec![
            ("planner", "started", json!({"step": "plan"})),
            ("builder", "progress", json!({"percent": 50})),
        ];
        match run.status {
            RunStatus::Completed => logged.push(("builder", "completed", json!({"files": 12}))),
            RunStatus::Failed => logged.push((
                "builder",
                "error",
                json!({"message": run.error_message.clone()}),
            )),
            RunStatus::Cancelled => logged.push(("builder", "cancelled", json!({}))),
            RunStatus::Pending | RunStatus::Running => {}
        }
        for ((bot, event_type, payload), n) in logged.into_iter().zip(0_u8..) {
            events.push(pipeline_events::Model {
                // Events of run r are ids (kind 9, r * 16 + n).
                id: id(user, 9, r * 16 + n),
                run_id: run.run_id.clone(),
                bot_name: bot.to_owned(),
                event_type: event_type.to_owned(),
                payload: Some(payload),
                owner_id: run.owner_id,
                created_at: started + Duration::seconds(30 * i64::from(n)),
            });
        }
    }
    events
}

/// A completed run leaves a zip and a file; a failed one its build log.
fn run_artifacts(user: u32, runs: &[pipeline_runs::Model]) -> Vec<artifacts::Model> {
    let mut out = Vec::new();
    for (run, r) in runs.iter().zip(0_u8..) {
        let made: &[(&str, &str, &str, i64)] = match run.status {
            RunStatus::Completed => &[
                ("zip", "app.zip", "application/zip", 48_213),
                ("file", "App.tsx", "text/plain", 1_874),
            ],
            RunStatus::Failed => &[("file", "build.log", "text/plain", 9_120)],
            _ => &[],
        };
        for ((kind, name, content_type, size), n) in made.iter().zip(0_u8..) {
            let digit = char::from(b'a' + (r + n) % 6);
            out.push(artifacts::Model {
                id: id(user, 10, r * 16 + n),
                run_id: run.run_id.clone(),
                kind: (*kind).to_owned(),
                url: Some(format!(
                    "https://storage.forge.local/runs/{}/{name}",
                    run.run_id
                )),
                meta: Some(json!({"name": name})),
                owner_id: run.owner_id,
                file_size: Some(*size),
                content_type: Some((*content_type).to_owned()),
                checksum: Some(format!("sha256:{}", digit.to_string().repeat(64))),
                created_at: run.completed_at.unwrap_or(run.created_at),
            });
        }
    }
    out
}

/// Two templates of `user`: seed 003's sample ("Financial Planning Triumph") and a second
/// one, inactive. `version` and `last_modified*` are the database's (1, now, the owner).
fn templates(user: u32, clock: Clock) -> Vec<templates::Model> {
    let owner: ProfileId = id(user, 0, 0);
    let list = |items: &[&str]| StringList::from(items);
    let sample = templates::Model {
        id: id(user, 11, 0),
        template_name: "Financial Planning Triumph".to_owned(),
        description: Some("Conversation showing successful financial planning journey".to_owned()),
        category: "Financial Planning".to_owned(),
        tier: ConversationTier::Template,
        template_text: "Generate a conversation between a financial advisor and {{persona}} \
                        about {{topic}}, with emotional arc showing {{emotion}}."
            .to_owned(),
        structure: Some(
            "Introduction → Problem Identification → Strategy Development → Implementation → Success"
                .to_owned(),
        ),
        variables: list(&["persona", "topic", "emotion"]),
        tone: Some("warm, encouraging".to_owned()),
        complexity_baseline: Some(5),
        style_notes: None,
        example_conversation: None,
        quality_threshold: Some(7.0),
        required_elements: list(&["a concrete plan", "a follow-up"]),
        applicable_personas: list(&["young professional", "new parent"]),
        applicable_emotions: list(&["anxiety", "relief", "confidence"]),
        applicable_topics: list(&["retirement", "budgeting"]),
        usage_count: 0,
        rating: 0.0,
        success_rate: None,
        version: 1,
        is_active: true,
        created_by: owner,
        last_modified_by: Some(owner),
        last_modified: clock.at(120),
        created_at: clock.at(120),
        updated_at: clock.at(120),
    };
    let second = templates::Model {
        id: id(user, 11, 1),
        template_name: "Debt Payoff Setback".to_owned(),
        description: Some("A client whose debt plan stalled, and how they recover".to_owned()),
        category: "Debt Management".to_owned(),
        tier: ConversationTier::Scenario,
        template_text: "Generate a conversation where {{persona}} tells an advisor their \
                        {{topic}} plan stalled."
            .to_owned(),
        structure: None,
        variables: list(&["persona", "topic"]),
        tone: Some("calm".to_owned()),
        complexity_baseline: Some(7),
        quality_threshold: None,
        required_elements: StringList::default(),
        applicable_personas: list(&["small business owner"]),
        applicable_emotions: list(&["frustration", "hope"]),
        applicable_topics: list(&["credit cards"]),
        is_active: false,
        last_modified: clock.at(121),
        created_at: clock.at(121),
        updated_at: clock.at(121),
        ..sample.clone()
    };
    vec![sample, second]
}

/// A scenario under each template; the first was generated into the user's first
/// conversation.
fn scenarios(
    user: u32,
    templates: &[templates::Model],
    conversations: &[conversations::Model],
    clock: Clock,
) -> Vec<scenarios::Model> {
    templates
        .iter()
        .zip(0_u8..)
        .map(|(template, n)| {
            let generated = n == 0;
            scenarios::Model {
                id: id(user, 12, n),
                name: format!("{} — first case", template.template_name),
                description: None,
                context: Some("A first meeting at the advisor's office".to_owned()),
                parent_template_id: template.id,
                parameter_values: json!({"persona": "young professional", "topic": "retirement"}),
                topic: "retirement".to_owned(),
                persona: "young professional".to_owned(),
                emotional_arc: "anxiety → confidence".to_owned(),
                generation_status: if generated {
                    GenerationStatus::Generated
                } else {
                    GenerationStatus::NotGenerated
                },
                conversation_id: generated.then(|| conversations[0].id),
                error_message: None,
                status: if generated {
                    ScenarioStatus::Active
                } else {
                    ScenarioStatus::Draft
                },
                quality_score: generated.then_some(8.5),
                created_by: template.created_by,
                created_at: clock.at(125 + i64::from(n)),
                updated_at: clock.at(125 + i64::from(n)),
            }
        })
        .collect()
}

/// Two edge cases of the first scenario, one tested.
fn edge_cases(user: u32, scenarios: &[scenarios::Model], clock: Clock) -> Vec<edge_cases::Model> {
    let scenario = &scenarios[0];
    vec![
        edge_cases::Model {
            id: id(user, 13, 0),
            name: "Client refuses to share income".to_owned(),
            description: None,
            scenario_id: scenario.id,
            test_category: "missing information".to_owned(),
            expected_behavior: "The advisor explains why it matters and offers ranges".to_owned(),
            complexity: EdgeComplexity::High,
            test_status: TestStatus::Passed,
            last_test_result: Some(json!({"score": 8.0, "notes": "handled with care"})),
            created_by: scenario.created_by,
            created_at: clock.at(130),
            updated_at: clock.at(130),
        },
        edge_cases::Model {
            id: id(user, 13, 1),
            name: "Client asks for a stock tip".to_owned(),
            description: Some("Out of scope for a planning conversation".to_owned()),
            scenario_id: scenario.id,
            test_category: "scope".to_owned(),
            expected_behavior: "The advisor declines and steers back to the plan".to_owned(),
            complexity: EdgeComplexity::Medium,
            test_status: TestStatus::NotTested,
            last_test_result: None,
            created_by: scenario.created_by,
            created_at: clock.at(131),
            updated_at: clock.at(131),
        },
    ]
}

/// The model call that generated the user's first conversation from the sample template.
fn generation_logs(
    user: u32,
    templates: &[templates::Model],
    conversations: &[conversations::Model],
    clock: Clock,
) -> Vec<generation_logs::Model> {
    vec![generation_logs::Model {
        id: id(user, 14, 0),
        user_id: id(user, 0, 0),
        conversation_id: Some(conversations[0].id),
        run_id: None,
        template_id: Some(templates[0].id),
        request_payload: Some(json!({"model": "claude", "max_tokens": 2048})),
        response_payload: Some(json!({"stop_reason": "end_turn"})),
        parameters: json!({"temperature": 0.7}),
        cost_usd: Decimal::new(12_345, 6),
        input_tokens: 1_200,
        output_tokens: 800,
        duration_ms: 4_200,
        error_message: None,
        created_at: clock.at(126),
    }]
}

/// A completed JSONL export of the user's approved conversations.
fn export_logs(user: u32, clock: Clock) -> Vec<export_logs::Model> {
    vec![export_logs::Model {
        id: id(user, 15, 0),
        export_id: format!("seed-export-{user}"),
        user_id: id(user, 0, 0),
        format: ExportFormat::Jsonl,
        scope: json!({"status": ["approved"]}),
        conversation_count: 1,
        file_size: 20_480,
        status: ExportStatus::Completed,
        error_message: None,
        created_at: clock.at(140),
        completed_at: Some(clock.at(141)),
    }]
}

/// After the 100-credit signup bonus: a session's spend (100 → 60), a batch's (60 → 5: the
/// database notifies `credits_low`) and a refund of part of it (→ 25).
fn ledger(user: u32, clock: Clock) -> Vec<credit_transactions::Model> {
    let owner: ProfileId = id(user, 0, 0);
    let session: Uuid = id(user, 2, 0);
    let batch: Uuid = id(user, 7, 0);
    let row = |n: u8, kind, amount, balance_after, reference: String, what: &str| {
        credit_transactions::Model {
            id: id(user, 16, n),
            account_id: CreditAccountId::from(Uuid::nil()),
            user_id: owner,
            amount,
            kind,
            balance_after,
            reference: Some(reference),
            idempotency_key: Some(format!("seed-{n}")),
            metadata: json!({"what": what}),
            created_at: clock.at(150 + i64::from(n)),
        }
    };
    vec![
        row(
            0,
            CreditKind::Spend,
            -40,
            60,
            session.to_string(),
            "coding session",
        ),
        row(1, CreditKind::Spend, -55, 5, batch.to_string(), "batch"),
        row(
            2,
            CreditKind::Refund,
            20,
            25,
            batch.to_string(),
            "failed batch items",
        ),
    ]
}

/// A key in use and a revoked one.
fn keys(user: u32, clock: Clock) -> Vec<api_keys::Model> {
    let key = |n: u8, name: &str, revoked: bool| api_keys::Model {
        id: id(user, 17, n),
        user_id: id(user, 0, 0),
        name: name.to_owned(),
        key_prefix: format!("fk_seed{user}_{n}"),
        key_hash: format!("seed-hash-{user}-{n}"),
        scopes: json!(["sessions:write", "conversations:read"]),
        last_used_at: (!revoked).then(|| clock.at(170)),
        expires_at: None,
        revoked_at: revoked.then(|| clock.at(165)),
        created_at: clock.at(160 + i64::from(n)),
        updated_at: clock.at(if revoked { 165 } else { 170 }),
    };
    vec![key(0, "CLI", false), key(1, "Old laptop", true)]
}

/// A read notification of the session, an unread one of the batch.
fn notifications(user: u32, clock: Clock) -> Vec<notifications::Model> {
    let note = |n: u8, kind, title: &str, body: &str, read: bool| notifications::Model {
        id: id(user, 18, n),
        user_id: id(user, 0, 0),
        kind,
        title: title.to_owned(),
        body: body.to_owned(),
        data: json!({"seed": true}),
        read_at: read.then(|| clock.at(181)),
        created_at: clock.at(180 + i64::from(n)),
    };
    vec![
        note(
            0,
            NotificationType::SessionReady,
            "Your session is ready",
            "Test Todo App: the preview is ready.",
            true,
        ),
        note(
            1,
            NotificationType::BatchCompleted,
            "Batch finished",
            "Support conversations (seed): 3 of 6 items completed.",
            false,
        ),
    ]
}

/// The prompts and copy of seeds 000/001's app, shared by every user.
fn prompts(now: DateTime<Utc>) -> Vec<prompts::Model> {
    [
        (
            "onboarding.welcome",
            "copy",
            "the first screen after signup",
            "Welcome to Forge! Describe the app you want and our bots will build it.",
        ),
        (
            "pipeline.plan",
            "bot",
            "the planner bot, turning a project spec into a build plan",
            "You are a senior mobile engineer. Turn this project specification into a step-by-step build plan.",
        ),
        (
            "pipeline.build",
            "bot",
            "the builder bot, writing the Expo app",
            "Write the Expo (React Native) code for this plan. Return complete files.",
        ),
        (
            "run.failed",
            "copy",
            "the run screen, when a run failed",
            "Something went wrong while building your app. You can start a new run at any time.",
        ),
    ]
    .into_iter()
    .map(|(id, category, context, text)| prompts::Model {
        id: PromptId::from(id),
        category: category.to_owned(),
        context: context.to_owned(),
        prompt_text: text.to_owned(),
        created_at: now - Duration::days(1),
        updated_at: now - Duration::days(1),
    })
    .collect()
}

/// Inserts one user's set, parents first.
async fn load<C: ConnectionTrait>(db: &C, set: &UserSet) -> Result<(), DbErr> {
    insert_new::<profiles::Entity, _>(db, vec![set.profile.clone()]).await?;
    insert_new::<projects::Entity, _>(db, vec![set.project.clone()]).await?;
    insert_new::<coding_sessions::Entity, _>(db, vec![set.session.clone()]).await?;
    insert_new::<coding_jobs::Entity, _>(db, set.jobs.clone()).await?;
    insert_new::<session_events::Entity, _>(db, set.events.clone()).await?;
    // Totals and counters are the database's (its triggers move them as the turns and
    // items go in), so the parents go in with zeros and end up equal to the set's values.
    let conversations = set.conversations.iter().cloned().map(|mut c| {
        (c.total_turns, c.total_tokens) = (0, 0);
        c
    });
    insert_new::<conversations::Entity, _>(db, conversations.collect()).await?;
    insert_new::<conversation_turns::Entity, _>(db, set.turns.clone()).await?;
    let mut batch = set.batch.clone();
    batch.total_items = 0;
    batch.completed_items = 0;
    batch.successful_items = 0;
    batch.failed_items = 0;
    insert_new::<batch_jobs::Entity, _>(db, vec![batch]).await?;
    insert_new::<batch_items::Entity, _>(db, set.items.clone()).await?;
    insert_new::<pipeline_runs::Entity, _>(db, set.runs.clone()).await?;
    insert_new::<pipeline_events::Entity, _>(db, set.run_events.clone()).await?;
    insert_new::<artifacts::Entity, _>(db, set.artifacts.clone()).await?;
    insert_new::<templates::Entity, _>(db, set.templates.clone()).await?;
    insert_new::<scenarios::Entity, _>(db, set.scenarios.clone()).await?;
    insert_new::<edge_cases::Entity, _>(db, set.edge_cases.clone()).await?;
    insert_new::<generation_logs::Entity, _>(db, set.generation_logs.clone()).await?;
    insert_new::<export_logs::Entity, _>(db, set.export_logs.clone()).await?;
    insert_ledger(db, set).await?;
    insert_new::<api_keys::Entity, _>(db, set.api_keys.clone()).await?;
    insert_new::<notifications::Entity, _>(db, set.notifications.clone()).await?;
    Ok(())
}

/// The set's ledger rows that are not there yet, into the account the database opened with
/// the profile, with a plain `INSERT` (a retried ledger row is refused, not skipped).
async fn insert_ledger<C: ConnectionTrait>(db: &C, set: &UserSet) -> Result<(), DbErr> {
    let account = credit_accounts::Entity::find()
        .filter(credit_accounts::Column::UserId.eq(set.profile.id))
        .one(db)
        .await?
        .ok_or_else(|| {
            DbErr::RecordNotFound(format!("the credit account of {}", set.profile.email))
        })?;
    let existing = credit_transactions::Entity::find()
        .filter(credit_transactions::Column::AccountId.eq(account.id))
        .all(db)
        .await?;
    let missing: Vec<_> = set
        .ledger
        .iter()
        .filter(|row| !existing.iter().any(|e| e.id == row.id))
        .cloned()
        .map(|mut row| {
            row.account_id = account.id;
            row.into_active_model()
        })
        .collect();
    if !missing.is_empty() {
        credit_transactions::Entity::insert_many(missing)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// `INSERT … ON CONFLICT (id) DO NOTHING`.
async fn insert_new<E, C>(db: &C, rows: Vec<E::Model>) -> Result<(), DbErr>
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel>,
    C: ConnectionTrait,
{
    let models = rows.into_iter().map(IntoActiveModel::into_active_model);
    E::insert_many(models)
        .on_conflict_do_nothing()
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Every Forge table's row count, in [`TABLES`] order.
async fn row_counts<C: ConnectionTrait>(db: &C) -> Result<Vec<u64>, DbErr> {
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) FROM {table}"),
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("the row count of {table}")))?;
        counts.push(u64::try_from(row.try_get_by_index::<i64>(0)?).unwrap_or(0));
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fixed_and_distinct_per_user_kind_and_row() {
        assert_eq!(
            id::<Uuid>(3, 6, 0x21).to_string(),
            "5eed0000-0000-4000-8000-000000030621"
        );
        assert_ne!(id::<ProfileId>(1, 0, 0), id(2, 0, 0));
    }

    #[test]
    fn a_user_set_keeps_the_invariants() {
        let set = UserSet::new(1, Utc::now());
        for c in &set.conversations {
            let turns: Vec<_> = set
                .turns
                .iter()
                .filter(|t| t.conversation_id == c.id)
                .collect();
            assert_eq!(c.total_turns as usize, turns.len());
            assert_eq!(
                c.total_tokens,
                turns.iter().map(|t| t.token_count).sum::<i32>()
            );
        }
        let statuses: Vec<_> = set.conversations.iter().map(|c| c.status).collect();
        assert_eq!(statuses, ConversationStatus::ALL.to_vec());
        let b = &set.batch;
        assert_eq!((b.total_items, b.completed_items), (6, 4));
        assert_eq!(b.completed_items, b.successful_items + b.failed_items);
        let linked = set
            .items
            .iter()
            .filter(|i| i.conversation_id.is_some())
            .count();
        assert_eq!(linked, 3);

        let statuses: Vec<_> = set.runs.iter().map(|r| r.status).collect();
        assert_eq!(statuses, RunStatus::ALL.to_vec());
        for run in &set.runs {
            // The cancelled run was cancelled before it started.
            let ran = matches!(
                run.status,
                RunStatus::Running | RunStatus::Completed | RunStatus::Failed
            );
            assert_eq!(run.started_at.is_some(), ran, "{run:?}");
            assert_eq!(run.completed_at.is_some(), run.status.is_final(), "{run:?}");
            assert_eq!(
                run.error_message.is_some(),
                run.status == RunStatus::Failed,
                "{run:?}"
            );
            assert!(run.project_spec.is_object());
        }
        for event in &set.run_events {
            let run = set.runs.iter().find(|r| r.run_id == event.run_id);
            assert_eq!(run.map(|r| r.owner_id), Some(event.owner_id));
        }
        for artifact in &set.artifacts {
            let run = set.runs.iter().find(|r| r.run_id == artifact.run_id);
            assert_eq!(run.map(|r| r.owner_id), Some(artifact.owner_id));
            assert!(
                artifact
                    .checksum
                    .as_deref()
                    .is_some_and(artifacts::is_sha256_checksum)
            );
        }
        assert_eq!((set.run_events.len(), set.artifacts.len()), (8, 3));

        // After the signup bonus, each row's balance_after is the running sum, never
        // below zero, and one spend crosses the low-credit threshold.
        let mut balance = crate::SIGNUP_BONUS_CREDITS;
        let mut crossings = 0;
        for row in &set.ledger {
            let before = balance;
            balance += row.amount;
            assert_eq!(row.balance_after, balance, "{row:?}");
            assert!(balance >= 0);
            if row.kind == CreditKind::Spend
                && before >= crate::CREDITS_LOW_THRESHOLD
                && balance < crate::CREDITS_LOW_THRESHOLD
            {
                crossings += 1;
            }
        }
        assert_eq!((balance, crossings), (25, 1));
        assert_eq!(
            set.api_keys
                .iter()
                .filter(|k| k.revoked_at.is_none())
                .count(),
            1
        );
    }
}
