//! Forge against hand-written sqlx: the same work, on the same pool, in the same run.
//!
//! ```sh
//! cargo run --release --example bench                                # SQLite only (a temp file)
//! scripts/with-postgres.sh cargo run --release --example bench       # SQLite, then PostgreSQL
//! DATABASE_URL=postgres://user:pass@host/db cargo run --release --example bench
//! BENCH_ROUNDS=9 BENCH_OPS=3000 BENCH_JOBS=5000 scripts/with-postgres.sh cargo run --release --example bench
//! ```
//!
//! Every measure runs Forge and its hand-written counterpart (plain sqlx, prepared
//! statements, decoding every column into the same entity model) in `BENCH_ROUNDS` rounds
//! (default 5), alternating which side goes first, and reports the median of the rounds.
//! Latencies are the median of single calls in a row (µs per call); throughputs are
//! operations per second. Each side checks what it did (rows returned, counts, gapless
//! `seq`, no job claimed twice or lost), so a broken path cannot look fast. The run ends
//! with one Markdown table: measure | Forge | hand-written | ratio (Forge ÷ hand-written)
//! | goal | met?. A missed goal is printed as `missed`, not an error; the exit code is
//! non-zero only when something failed.
//!
//! **SQLite** (always): a fresh database file in the temp directory, Forge's pool
//! (`forge_db::connect`), a quickstart-like mix (signup, project, session, 5 events, tail,
//! get, list) by Forge and by raw sqlx with the same statements and transactions on that
//! pool (`BENCH_MIXES` mixes per round, default 200).
//!
//! **PostgreSQL** (when `DATABASE_URL` is `postgres://…`): a scratch database
//! `forge_bench_<random>` next to the one in the URL (the role needs `CREATEDB` and
//! `CREATEROLE`; it is dropped at the end), migrated as that role, the owner. Both sides
//! then run through **one pool connected as an application role** of the README's two-role
//! setup, `forge_bench_app` (`LOGIN NOINHERIT`, member of `authenticated` and
//! `service_role`, password = its name; created on the cluster if missing and left there,
//! like the test suite's `forge_test_app`). That role may do nothing by itself, so the
//! hand-written side switches role as a correct application must: `BEGIN`, `SET LOCAL ROLE
//! service_role` or the user's role and JWT claims (`set_config`), the statement, `COMMIT`.
//! The one exception is the baseline of "get by id, service", the bare prepared `SELECT`:
//! it runs on a second pool of the same size whose connections ran `SET ROLE service_role`
//! once when they connected.
//!
//! Sizes: `BENCH_OPS` calls per side and round for latencies (default 1,000),
//! `BENCH_APPENDS` events per round (default 800, split over the writers), `BENCH_JOBS`
//! jobs per queue drain (default 1,000), `BENCH_WORKERS` (default `1,4,16`),
//! `BENCH_BATCH_ITEMS` (default 10,000).
//!
//! Not a timed test: figures depend on the machine; compare the ratios.

#[path = "support/scratch.rs"]
#[allow(dead_code)]
mod scratch;

use std::collections::HashSet;
use std::error::Error;
use std::fmt::Write as _;
use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use forge_db::entity::batch_jobs::{self, BatchConfiguration};
use forge_db::entity::coding_sessions;
use forge_db::entity::conversations::ConversationTier;
use forge_db::entity::ids::{BatchId, BatchItemId, EventId, JobId, ProfileId, SessionId};
use forge_db::entity::profiles as profile_rows;
use forge_db::entity::projects as project_rows;
use forge_db::entity::session_events::{self, EventType};
use forge_db::migration::{Backend, redact_url};
use forge_db::sea_orm::sqlx::postgres::PgPoolOptions;
use forge_db::sea_orm::sqlx::{self, Executor, PgPool, Row, SqlitePool};
use forge_db::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use forge_db::service::batches::{self, NewBatch, NewBatchItem};
use forge_db::service::jobs::{self, NewJob};
use forge_db::service::profiles::{self, NewProfile};
use forge_db::service::projects::{self, ListProjects, NewProject};
use forge_db::service::sessions::{self, NewSession};
use forge_db::service::{Actor, PageRequest, events};
use serde_json::{Value as Json, json};
use uuid::Uuid;

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

/// The application role both sides connect as on PostgreSQL (password: its name).
const APP_ROLE: &str = "forge_bench_app";

/// The lease of claimed jobs.
const LEASE: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------
// Settings and the table
// ---------------------------------------------------------------------------------------

/// How much work each measure does (environment variables, see the module docs).
struct Config {
    rounds: usize,
    ops: usize,
    appends: usize,
    jobs: usize,
    workers: Vec<usize>,
    batch_items: usize,
    mixes: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v} is not a valid value").into()),
        _ => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Self> {
        let positive = |name: &str, default: usize| -> Result<usize> {
            match env_or(name, default)? {
                0 => Err(format!("{name} must be at least 1").into()),
                n => Ok(n),
            }
        };
        let workers = env_or("BENCH_WORKERS", "1,4,16".to_owned())?
            .split(',')
            .map(|w| match w.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("BENCH_WORKERS: {w:?} is not a worker count")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch_items = positive("BENCH_BATCH_ITEMS", 10_000)?;
        if batch_items > batches::MAX_ITEMS {
            return Err(format!("BENCH_BATCH_ITEMS is at most {}", batches::MAX_ITEMS).into());
        }
        let jobs = positive("BENCH_JOBS", 1_000)?;
        if jobs > jobs::MAX_ENQUEUE {
            return Err(format!("BENCH_JOBS is at most {}", jobs::MAX_ENQUEUE).into());
        }
        Ok(Self {
            rounds: positive("BENCH_ROUNDS", 5)?,
            ops: positive("BENCH_OPS", 1_000)?,
            appends: positive("BENCH_APPENDS", 800)?,
            jobs,
            workers,
            batch_items,
            mixes: positive("BENCH_MIXES", 200)?,
        })
    }
}

/// What a figure is.
#[derive(Clone, Copy)]
enum Unit {
    /// Median microseconds per call (lower is better).
    Micros,
    /// Operations per second (higher is better), named.
    PerSecond(&'static str),
}

/// The goal for Forge ÷ hand-written.
#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

/// One row of the table.
struct Line {
    measure: String,
    unit: Unit,
    forge: f64,
    hand: f64,
    goal: Goal,
    /// What the hand-written side does, printed under the table.
    legend: &'static str,
}

impl Line {
    fn new(measure: impl Into<String>, unit: Unit, forge: f64, hand: f64, goal: Goal) -> Self {
        let line = Self {
            measure: measure.into(),
            unit,
            forge,
            hand,
            goal,
            legend: "",
        };
        eprintln!(
            "bench: {}: Forge {}, hand-written {}",
            line.measure,
            line.unit.show(forge),
            line.unit.show(hand)
        );
        line
    }

    fn legend(self, legend: &'static str) -> Self {
        Self { legend, ..self }
    }

    fn ratio(&self) -> f64 {
        self.forge / self.hand
    }

    fn met(&self) -> &'static str {
        match self.goal {
            Goal::AtMost(g) if self.ratio() <= g => "met",
            Goal::AtLeast(g) if self.ratio() >= g => "met",
            _ => "missed",
        }
    }
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Self::Micros => format!("{value:.0} µs"),
            Self::PerSecond(what) => format!("{} {what}/s", thousands(value)),
        }
    }
}

impl Goal {
    fn show(self) -> String {
        match self {
            Self::AtMost(g) => format!("≤ {g:.2}×"),
            Self::AtLeast(g) => format!("≥ {g:.2}×"),
        }
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn table(lines: &[Line]) -> String {
    let mut out = String::new();
    out.push_str("| measure | Forge | hand-written | ratio | goal | met? |\n");
    out.push_str("|---|---:|---:|---:|---|---|\n");
    for line in lines {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2}× | {} | {} |",
            line.measure,
            line.unit.show(line.forge),
            line.unit.show(line.hand),
            line.ratio(),
            line.goal.show(),
            line.met()
        );
    }
    out
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs `variants` measurements per round for `rounds` rounds, in turn forwards and
/// backwards (so no variant always goes first), and returns each variant's median.
/// `measure(v)` runs variant `v` once and returns its figure.
async fn interleave(
    rounds: usize,
    variants: usize,
    mut measure: impl AsyncFnMut(usize) -> Result<f64>,
) -> Result<Vec<f64>> {
    let mut samples = vec![Vec::with_capacity(rounds); variants];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..variants).collect()
        } else {
            (0..variants).rev().collect()
        };
        for v in order {
            samples[v].push(measure(v).await?);
        }
    }
    Ok(samples.into_iter().map(median).collect())
}

/// The median latency, in µs, of `n` calls of `call` in a row.
async fn latency<F: Future<Output = Result<()>>>(
    n: usize,
    mut call: impl FnMut() -> F,
) -> Result<f64> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        call().await?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(samples))
}

/// Forge's and the hand-written latency of one call, over the configured rounds (after a
/// short warm-up of both).
async fn latency_pair<FF, FH>(
    cfg: &Config,
    mut forge: impl FnMut() -> FF,
    mut hand: impl FnMut() -> FH,
) -> Result<(f64, f64)>
where
    FF: Future<Output = Result<()>>,
    FH: Future<Output = Result<()>>,
{
    for _ in 0..cfg.ops.min(50) {
        forge().await?;
        hand().await?;
    }
    let medians = interleave(cfg.rounds, 2, async |v| match v {
        0 => latency(cfg.ops, &mut forge).await,
        _ => latency(cfg.ops, &mut hand).await,
    })
    .await?;
    Ok((medians[0], medians[1]))
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(what().into()) }
}

// ---------------------------------------------------------------------------------------
// Decoding rows by hand (sqlx `Row::try_get`, every column), PostgreSQL and SQLite alike
// ---------------------------------------------------------------------------------------

macro_rules! uuid_col {
    ($row:expr, $col:literal) => {
        $row.try_get::<Uuid, _>($col)?.into()
    };
}

macro_rules! enum_col {
    ($row:expr, $col:literal) => {
        $row.try_get::<String, _>($col)?.parse()?
    };
}

macro_rules! session_model {
    ($row:expr) => {{
        let r = $row;
        coding_sessions::Model {
            id: uuid_col!(r, "id"),
            user_id: uuid_col!(r, "user_id"),
            project_id: uuid_col!(r, "project_id"),
            initial_prompt: r.try_get("initial_prompt")?,
            status: enum_col!(r, "status"),
            expires_at: r.try_get("expires_at")?,
            metadata: r.try_get("metadata")?,
            eas_update_url: r.try_get("eas_update_url")?,
            webview_url: r.try_get("webview_url")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        }
    }};
}

macro_rules! project_model {
    ($row:expr) => {{
        let r = $row;
        project_rows::Model {
            id: uuid_col!(r, "id"),
            user_id: uuid_col!(r, "user_id"),
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            template_id: r.try_get("template_id")?,
            expo_config: r.try_get("expo_config")?,
            sandbox_id: r.try_get("sandbox_id")?,
            status: enum_col!(r, "status"),
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        }
    }};
}

macro_rules! profile_model {
    ($row:expr) => {{
        let r = $row;
        profile_rows::Model {
            id: uuid_col!(r, "id"),
            email: r.try_get("email")?,
            display_name: r.try_get("display_name")?,
            avatar_url: r.try_get("avatar_url")?,
            tier: enum_col!(r, "tier"),
            sessions_limit: r.try_get("sessions_limit")?,
            stripe_customer_id: r.try_get("stripe_customer_id")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        }
    }};
}

macro_rules! event_model {
    ($row:expr) => {{
        let r = $row;
        session_events::Model {
            id: uuid_col!(r, "id"),
            session_id: uuid_col!(r, "session_id"),
            seq: r.try_get("seq")?,
            event_type: enum_col!(r, "event_type"),
            data: r.try_get("data")?,
            created_at: r.try_get("created_at")?,
        }
    }};
}

macro_rules! batch_model {
    ($row:expr) => {{
        let r = $row;
        batch_jobs::Model {
            id: uuid_col!(r, "id"),
            created_by: uuid_col!(r, "created_by"),
            name: r.try_get("name")?,
            status: enum_col!(r, "status"),
            priority: enum_col!(r, "priority"),
            total_items: r.try_get("total_items")?,
            completed_items: r.try_get("completed_items")?,
            successful_items: r.try_get("successful_items")?,
            failed_items: r.try_get("failed_items")?,
            configuration: serde_json::from_value(r.try_get::<Json, _>("configuration")?)?,
            estimated_time_remaining: r.try_get("estimated_time_remaining")?,
            started_at: r.try_get("started_at")?,
            completed_at: r.try_get("completed_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        }
    }};
}

// ---------------------------------------------------------------------------------------
// Entry
// ---------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let cfg = Config::from_env()?;
    let url = std::env::var("DATABASE_URL").unwrap_or_default();
    let postgres = Backend::from_url(&url) == Some(Backend::Postgres);
    if !postgres && !url.trim().is_empty() {
        eprintln!("bench: DATABASE_URL is not a postgres:// URL; measuring SQLite only");
    }
    let mut lines = Vec::new();
    lines.extend(sqlite_measures(&cfg).await?);
    if postgres {
        lines.extend(postgres_measures(&url, &cfg).await?);
    } else {
        eprintln!(
            "bench: PostgreSQL not measured (set DATABASE_URL=postgres://… or run under \
             scripts/with-postgres.sh)"
        );
    }
    println!();
    println!(
        "{} rounds, medians; ratio = Forge ÷ hand-written (latency: lower is better, \
         throughput: higher is better)",
        cfg.rounds
    );
    println!();
    print!("{}", table(&lines));
    println!();
    let mut legends: Vec<&str> = Vec::new();
    for line in &lines {
        if !line.legend.is_empty() && !legends.contains(&line.legend) {
            legends.push(line.legend);
        }
    }
    for legend in legends {
        println!(
            "- {}",
            legend.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// SQLite: the quickstart mix
// ---------------------------------------------------------------------------------------

/// Events appended per mix.
const MIX_EVENTS: i64 = 5;

async fn sqlite_measures(cfg: &Config) -> Result<Vec<Line>> {
    let path = std::env::temp_dir().join(format!("forge-bench-{}.db", Uuid::new_v4().simple()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    eprintln!("bench: SQLite {url}");
    let outcome = async {
        let db = forge_db::connect(&url).await?;
        forge_db::migrate(&db).await?;
        let pool = db.get_sqlite_connection_pool().clone();
        let mut n = 0usize;
        for _ in 0..3 {
            forge_mix(&db, n).await?;
            hand_mix(&pool, n).await?;
            n += 1;
        }
        let mut next = n;
        let medians = interleave(cfg.rounds, 2, async |v| {
            let started = Instant::now();
            for _ in 0..cfg.mixes {
                next += 1;
                match v {
                    0 => forge_mix(&db, next).await?,
                    _ => hand_mix(&pool, next).await?,
                }
            }
            Ok(cfg.mixes as f64 / started.elapsed().as_secs_f64())
        })
        .await?;
        db.close().await?;
        Ok::<_, BoxError>(vec![Line::new(
            "SQLite quickstart mix",
            Unit::PerSecond("mixes"),
            medians[0],
            medians[1],
            Goal::AtLeast(0.85),
        )
        .legend(
            "SQLite quickstart mix: signup, project, session, 5 events, tail, get, list; raw sqlx \
             runs the same statements in the same transactions on the same pool",
        )])
    }
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    outcome
}

/// One quickstart mix through Forge.
async fn forge_mix(db: &DatabaseConnection, n: usize) -> Result<()> {
    let email = format!("mix-forge-{n}-{}@example.com", Uuid::new_v4().simple());
    let profile = profiles::create(db, Actor::Service, NewProfile::new(email)).await?;
    let me = Actor::User(profile.id);
    let project = projects::create(db, me, NewProject::new(profile.id, "Weather app")).await?;
    let session = sessions::start(
        db,
        me,
        NewSession::new(profile.id, project.id, "Add a radar map"),
    )
    .await?;
    for i in 0..MIX_EVENTS {
        let event = events::append(
            db,
            Actor::Service,
            session.id,
            EventType::Thinking,
            json!({ "step": i }),
        )
        .await?;
        check(event.seq == i + 1, || {
            format!("Forge appended seq {}", event.seq)
        })?;
    }
    let tail = events::after(db, me, session.id, 0, 50).await?;
    check(tail.len() as i64 == MIX_EVENTS, || {
        format!("Forge tailed {} events", tail.len())
    })?;
    let got = sessions::get(db, me, session.id).await?;
    check(got.id == session.id, || "Forge got another session".into())?;
    let page = projects::list(db, me, &ListProjects::default(), &PageRequest::first()).await?;
    check(page.items.len() == 1, || {
        format!("Forge listed {} projects", page.items.len())
    })?;
    Ok(())
}

/// The same mix by hand: the same statements and transactions, on the same pool.
async fn hand_mix(pool: &SqlitePool, n: usize) -> Result<()> {
    let now = Utc::now();
    let email = format!("mix-hand-{n}-{}@example.com", Uuid::new_v4().simple());
    let display_name = email.split('@').next().unwrap_or_default().to_owned();

    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query(
        "INSERT INTO profiles (id, email, display_name, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(Uuid::new_v4())
    .bind(&email)
    .bind(&display_name)
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let profile = profile_model!(&row);
    let uid = profile.id.into_uuid();

    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let owner = sqlx::query("SELECT id FROM profiles WHERE id = ? LIMIT 1")
        .bind(uid)
        .fetch_optional(&mut *tx)
        .await?;
    check(owner.is_some(), || "hand-written: no profile".into())?;
    let row = sqlx::query(
        "INSERT INTO projects (id, user_id, name, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(Uuid::new_v4())
    .bind(uid)
    .bind("Weather app")
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let project = project_model!(&row);

    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query(
        "INSERT INTO coding_sessions (id, user_id, project_id, initial_prompt, status, \
         expires_at, metadata, created_at, updated_at) \
         VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?) RETURNING *",
    )
    .bind(Uuid::new_v4())
    .bind(uid)
    .bind(project.id.into_uuid())
    .bind("Add a radar map")
    .bind(now + TimeDelta::hours(1))
    .bind(json!({}))
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let session = session_model!(&row);
    let sid = session.id.into_uuid();

    for i in 0..MIX_EVENTS {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(
            "INSERT INTO session_events (id, session_id, seq, event_type, data, created_at) \
             SELECT ?, s.id, \
                    (SELECT coalesce(max(e.seq), 0) + 1 FROM session_events e \
                      WHERE e.session_id = s.id), \
                    ?, ?, ? \
             FROM coding_sessions s \
             WHERE s.id = ? AND s.status IN ('pending', 'active', 'paused') \
             RETURNING id, session_id, seq, event_type, data, created_at",
        )
        .bind(Uuid::new_v4())
        .bind("thinking")
        .bind(json!({ "step": i }))
        .bind(Utc::now())
        .bind(sid)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let row = row.ok_or("hand-written: the session took no event")?;
        let event = event_model!(&row);
        check(event.seq == i + 1, || {
            format!("hand-written appended seq {}", event.seq)
        })?;
    }

    let mut tx = pool.begin().await?;
    let visible =
        sqlx::query("SELECT id FROM coding_sessions WHERE user_id = ? AND id = ? LIMIT 1")
            .bind(uid)
            .bind(sid)
            .fetch_optional(&mut *tx)
            .await?;
    check(visible.is_some(), || {
        "hand-written: session not visible".into()
    })?;
    let rows = sqlx::query(
        "SELECT e.* FROM session_events e \
         WHERE e.session_id IN (SELECT s.id FROM coding_sessions s WHERE s.user_id = ?) \
           AND e.session_id = ? AND e.seq > ? \
         ORDER BY e.seq LIMIT 50",
    )
    .bind(uid)
    .bind(sid)
    .bind(0i64)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let tail = rows
        .iter()
        .map(|r| Ok(event_model!(r)))
        .collect::<Result<Vec<_>>>()?;
    check(tail.len() as i64 == MIX_EVENTS, || {
        format!("hand-written tailed {} events", tail.len())
    })?;

    let row = sqlx::query("SELECT * FROM coding_sessions WHERE user_id = ? AND id = ? LIMIT 1")
        .bind(uid)
        .bind(sid)
        .fetch_optional(pool)
        .await?
        .ok_or("hand-written: no session")?;
    let got = session_model!(&row);
    check(got.id == session.id, || {
        "hand-written got another session".into()
    })?;

    let rows = sqlx::query(
        "SELECT * FROM projects WHERE user_id = ? AND status <> 'deleted' \
         ORDER BY created_at DESC, id DESC LIMIT 51",
    )
    .bind(uid)
    .fetch_all(pool)
    .await?;
    let page = rows
        .iter()
        .map(|r| Ok(project_model!(r)))
        .collect::<Result<Vec<_>>>()?;
    check(page.len() == 1, || {
        format!("hand-written listed {} projects", page.len())
    })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// Everything a PostgreSQL measure needs.
struct Pg {
    /// Forge's pool, as the application role; the hand-written side uses its sqlx pool.
    db: DatabaseConnection,
    /// The same pool, as sqlx sees it.
    pool: PgPool,
    /// A pool of the same size whose connections `SET ROLE service_role` on connect.
    service_pool: PgPool,
    /// The owner (who migrated), for resets and checks behind the measures.
    owner: DatabaseConnection,
    /// The user of the user measures.
    user: ProfileId,
    /// A live session of `user`.
    session: SessionId,
    /// Live sessions for the event writers.
    writer_sessions: Vec<SessionId>,
}

async fn postgres_measures(url: &str, cfg: &Config) -> Result<Vec<Line>> {
    let admin = forge_db::connect(url).await?;
    let name = format!("forge_bench_{}", Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    eprintln!(
        "bench: PostgreSQL {} (scratch database {name})",
        redact_url(url)
    );
    let outcome = postgres_in(&admin, &scratch::with_database(url, &name), cfg).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin.close().await?;
    outcome
}

/// `url` with its user and password replaced by `user`'s (password = the name).
fn with_user(url: &str, user: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{user}:{user}@{host}{tail}")
}

async fn postgres_in(
    admin: &DatabaseConnection,
    owner_url: &str,
    cfg: &Config,
) -> Result<Vec<Line>> {
    let owner = forge_db::connect(owner_url).await?;
    forge_db::migrate(&owner).await?;
    // The roles it joins exist now (the migrations create them on a plain PostgreSQL).
    admin
        .execute_unprepared(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                 BEGIN
                   CREATE ROLE {APP_ROLE} LOGIN NOINHERIT PASSWORD '{APP_ROLE}';
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                 END;
               END IF;
             END $$;
             GRANT authenticated, service_role TO {APP_ROLE};"
        ))
        .await?;
    let app_url = with_user(owner_url, APP_ROLE);
    let db = forge_db::connect(&app_url).await?;
    let pool = db.get_postgres_connection_pool().clone();
    let service_pool = PgPoolOptions::new()
        .max_connections(pool.options().get_max_connections())
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("SET ROLE service_role").await?;
                Ok(())
            })
        })
        .connect(&app_url)
        .await?;
    eprintln!(
        "bench: both sides on one pool of {} connections as {APP_ROLE}",
        pool.options().get_max_connections()
    );
    let pg = pg_fixture(db, pool, service_pool, owner).await?;

    let mut lines = vec![
        get_service(&pg, cfg).await?,
        get_user(&pg, cfg).await?,
        list_user(&pg, cfg).await?,
    ];
    for writers in [1, 8] {
        lines.push(append(&pg, cfg, writers).await?);
    }
    lines.extend(queue(&pg, cfg).await?);
    lines.push(batch(&pg, cfg).await?);

    pg.service_pool.close().await;
    pg.db.close().await?;
    pg.owner.close().await?;
    Ok(lines)
}

/// A user with 100 projects and live sessions, among four other users with 100 projects
/// each (so that lists and row-level security have other tenants' rows to skip).
async fn pg_fixture(
    db: DatabaseConnection,
    pool: PgPool,
    service_pool: PgPool,
    owner: DatabaseConnection,
) -> Result<Pg> {
    let svc = Actor::Service;
    let mut user = None;
    for u in 0..5 {
        let profile =
            profiles::create(&db, svc, NewProfile::new(format!("bench{u}@example.com"))).await?;
        profiles::set_plan(&db, svc, profile.id, profile.tier, 1000).await?;
        for p in 0..100 {
            projects::create(
                &db,
                Actor::User(profile.id),
                NewProject::new(profile.id, format!("Project {p}")),
            )
            .await?;
        }
        user.get_or_insert(profile.id);
    }
    let user = user.ok_or("no user")?;
    let project = projects::create(&db, Actor::User(user), NewProject::new(user, "Bench")).await?;
    let start = async || -> Result<SessionId> {
        let new = NewSession {
            ttl: TimeDelta::days(1),
            ..NewSession::new(user, project.id, "benchmark")
        };
        Ok(sessions::start(&db, svc, new).await?.id)
    };
    let session = start().await?;
    let mut writer_sessions = Vec::new();
    for _ in 0..8 {
        writer_sessions.push(start().await?);
    }
    owner.execute_unprepared("VACUUM ANALYZE").await?;
    Ok(Pg {
        db,
        pool,
        service_pool,
        owner,
        user,
        session,
        writer_sessions,
    })
}

/// `BEGIN` done: switches the transaction to the user's role and JWT claims, in one
/// prepared statement (what a hand-written application does before its own SQL).
async fn as_user(tx: &mut sqlx::PgConnection, user: ProfileId) -> Result<()> {
    sqlx::query(
        "SELECT set_config('role', 'authenticated', true), \
                set_config('request.jwt.claims', $1, true), \
                set_config('request.jwt.claim.sub', $2, true)",
    )
    .bind(format!(r#"{{"sub":"{user}","role":"authenticated"}}"#))
    .bind(user.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// `BEGIN` done: switches the transaction to `service_role`.
async fn as_service(tx: &mut sqlx::PgConnection) -> Result<()> {
    tx.execute("SET LOCAL ROLE service_role").await?;
    Ok(())
}

async fn get_service(pg: &Pg, cfg: &Config) -> Result<Line> {
    let id = pg.session;
    let (forge, hand) = latency_pair(
        cfg,
        move || async move {
            let s = sessions::get(&pg.db, Actor::Service, id).await?;
            check(s.id == id, || "Forge got another session".into())
        },
        move || async move {
            let row = sqlx::query("SELECT * FROM coding_sessions WHERE id = $1")
                .bind(id.into_uuid())
                .fetch_one(&pg.service_pool)
                .await?;
            let s = session_model!(&row);
            check(s.id == id, || "hand-written got another session".into())
        },
    )
    .await?;
    Ok(Line::new(
        "get by id, service",
        Unit::Micros,
        forge,
        hand,
        Goal::AtMost(1.2),
    )
    .legend(
        "get by id, service: hand-written is the bare prepared `SELECT * FROM coding_sessions \
         WHERE id = $1` on a pool of the same size whose connections ran `SET ROLE \
         service_role` when they connected (the only baseline not on Forge's pool)",
    ))
}

async fn get_user(pg: &Pg, cfg: &Config) -> Result<Line> {
    let (id, user) = (pg.session, pg.user);
    let (forge, hand) = latency_pair(
        cfg,
        move || async move {
            let s = sessions::get(&pg.db, Actor::User(user), id).await?;
            check(s.id == id, || "Forge got another session".into())
        },
        move || async move {
            let mut tx = pg.pool.begin().await?;
            as_user(&mut tx, user).await?;
            let row = sqlx::query("SELECT * FROM coding_sessions WHERE id = $1 AND user_id = $2")
                .bind(id.into_uuid())
                .bind(user.into_uuid())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            let s = session_model!(&row);
            check(s.id == id, || "hand-written got another session".into())
        },
    )
    .await?;
    Ok(Line::new(
        "get by id, user",
        Unit::Micros,
        forge,
        hand,
        Goal::AtMost(1.1),
    )
    .legend(
        "get by id, user / list: hand-written is `BEGIN`, one prepared `set_config` of role, \
         claims and sub, the prepared `SELECT` (`… ORDER BY created_at DESC, id DESC LIMIT 51` \
         for the list), `COMMIT`, on Forge's pool",
    ))
}

async fn list_user(pg: &Pg, cfg: &Config) -> Result<Line> {
    let user = pg.user;
    let (forge, hand) = latency_pair(
        cfg,
        move || async move {
            let page = projects::list(
                &pg.db,
                Actor::User(user),
                &ListProjects::default(),
                &PageRequest::first(),
            )
            .await?;
            check(page.items.len() == 50 && page.next.is_some(), || {
                format!("Forge listed {} projects", page.items.len())
            })
        },
        move || async move {
            let mut tx = pg.pool.begin().await?;
            as_user(&mut tx, user).await?;
            let rows = sqlx::query(
                "SELECT * FROM projects WHERE user_id = $1 AND status <> 'deleted' \
                 ORDER BY created_at DESC, id DESC LIMIT 51",
            )
            .bind(user.into_uuid())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let mut page = rows
                .iter()
                .map(|r| Ok(project_model!(r)))
                .collect::<Result<Vec<_>>>()?;
            let more = page.len() > 50;
            page.truncate(50);
            check(page.len() == 50 && more, || {
                format!("hand-written listed {} projects", page.len())
            })
        },
    )
    .await?;
    Ok(Line::new(
        "list first page of 50, user",
        Unit::Micros,
        forge,
        hand,
        Goal::AtMost(1.15),
    )
    .legend(
        "get by id, user / list: hand-written is `BEGIN`, one prepared `set_config` of role, \
         claims and sub, the prepared `SELECT` (`… ORDER BY created_at DESC, id DESC LIMIT 51` \
         for the list), `COMMIT`, on Forge's pool",
    ))
}

/// The hand-written append: a plain `INSERT … RETURNING` as `service_role` (the `seq`
/// trigger assigns `seq` and locks the session row, as for Forge).
const SQL_APPEND: &str = "\
INSERT INTO session_events (id, session_id, event_type, data, created_at)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, session_id, seq, event_type, data, created_at";

async fn hand_append(
    pool: &PgPool,
    session: SessionId,
    data: Json,
) -> Result<session_events::Model> {
    let mut tx = pool.begin().await?;
    as_service(&mut tx).await?;
    let row = sqlx::query(SQL_APPEND)
        .bind(EventId::new().into_uuid())
        .bind(session.into_uuid())
        .bind(EventType::Thinking.as_str())
        .bind(data)
        .bind(Utc::now())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(event_model!(&row))
}

/// `writers` tasks append to their own session each; events per second, checked gapless.
async fn append(pg: &Pg, cfg: &Config, writers: usize) -> Result<Line> {
    let sessions = &pg.writer_sessions[..writers];
    let per_writer = (cfg.appends / writers).max(1);
    let medians = interleave(cfg.rounds, 2, async |v| {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for &session in sessions {
            let (db, pool) = (pg.db.clone(), pg.pool.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..per_writer {
                    let data = json!({ "text": "thinking about it", "i": i });
                    let event = match v {
                        0 => {
                            events::append(&db, Actor::Service, session, EventType::Thinking, data)
                                .await?
                        }
                        _ => hand_append(&pool, session, data).await?,
                    };
                    check(event.session_id == session && event.seq > 0, || {
                        "an event landed elsewhere".into()
                    })?;
                }
                Ok::<_, BoxError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let per_second = (writers * per_writer) as f64 / started.elapsed().as_secs_f64();
        gapless(pg, sessions).await?;
        Ok(per_second)
    })
    .await?;
    Ok(Line::new(
        format!(
            "event append, {writers} writer{}",
            if writers == 1 { "" } else { "s" }
        ),
        Unit::PerSecond("events"),
        medians[0],
        medians[1],
        Goal::AtLeast(0.9),
    )
    .legend(
        "event append: each writer appends to its own live session; hand-written is `BEGIN`, \
         `SET LOCAL ROLE service_role`, a prepared `INSERT … RETURNING` (the `seq` trigger \
         assigns `seq` and locks the session row, as for Forge), `COMMIT`",
    ))
}

/// Every session's events are numbered 1..n.
async fn gapless(pg: &Pg, sessions: &[SessionId]) -> Result<()> {
    for &session in sessions {
        let row = pg
            .owner
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*)::bigint, coalesce(max(seq), 0)::bigint, count(DISTINCT seq)::bigint \
                 FROM session_events WHERE session_id = $1",
                [session.into_uuid().into()],
            ))
            .await?
            .ok_or("no count")?;
        let (count, max, distinct): (i64, i64, i64) = (
            row.try_get_by_index(0)?,
            row.try_get_by_index(1)?,
            row.try_get_by_index(2)?,
        );
        check(count == max && count == distinct, || {
            format!("session {session}: {count} events, max seq {max}, {distinct} distinct")
        })?;
    }
    Ok(())
}

// --- the queue ---------------------------------------------------------------------------

/// queue_bench's baseline claim (seed 002's query, made safe for many workers).
const SQL_CLAIM: &str = "\
WITH picked AS MATERIALIZED (
    SELECT id FROM coding_jobs
    WHERE status = 'pending' AND run_after <= now()
    ORDER BY priority DESC, created_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE coding_jobs j
   SET status = 'processing', locked_by = $2, locked_until = now() + interval '5 minutes',
       started_at = COALESCE(j.started_at, now()), updated_at = now()
  FROM picked WHERE j.id = picked.id
RETURNING j.id";

/// queue_bench's baseline completion, guarded like Forge's.
const SQL_COMPLETE: &str = "\
UPDATE coding_jobs
   SET status = 'completed', result = $3, completed_at = now(), locked_until = NULL,
       updated_at = now()
 WHERE id = $1 AND status = 'processing' AND locked_by = $2";

/// Who drains the queue.
#[derive(Clone, Copy, Debug)]
enum Drain {
    /// By hand: one claim (`LIMIT $1` = 1), one completion, each `BEGIN`, `SET LOCAL
    /// ROLE service_role`, the statement, `COMMIT`.
    Hand,
    /// Forge's `claim` + `complete`.
    ForgeOne,
    /// Forge's `claim_many(10)` + `complete_many`.
    ForgeMany,
}

async fn queue(pg: &Pg, cfg: &Config) -> Result<Vec<Line>> {
    let mut lines = Vec::new();
    for &workers in &cfg.workers {
        let drains = [Drain::Hand, Drain::ForgeOne, Drain::ForgeMany];
        let medians = interleave(cfg.rounds, drains.len(), async |v| {
            drain_queue(pg, cfg.jobs, workers, drains[v]).await
        })
        .await?;
        let s = if workers == 1 { "" } else { "s" };
        lines.push(Line::new(
            format!(
                "queue, claim + complete, {workers} worker{s}"
            ),
            Unit::PerSecond("jobs"),
            medians[1],
            medians[0],
            Goal::AtLeast(0.95),
        )
        .legend(
            "queue: hand-written is queue_bench's bare `FOR UPDATE SKIP LOCKED` claim (`LIMIT $1` \
             = 1) and its guarded completing `UPDATE`, each in `BEGIN`, `SET LOCAL ROLE \
             service_role`, the statement, `COMMIT`; `claim_many(10) + complete_many` is compared \
             with that same hand-written single-claim figure",
        ));
        lines.push(Line::new(
            format!("queue, claim_many(10) + complete_many, {workers} worker{s}"),
            Unit::PerSecond("jobs"),
            medians[2],
            medians[0],
            Goal::AtLeast(3.0),
        ));
    }
    Ok(lines)
}

/// Fills the queue with `n` jobs (untimed), lets `workers` drain it, and checks that every
/// job was completed exactly once; jobs per second.
async fn drain_queue(pg: &Pg, n: usize, workers: usize, how: Drain) -> Result<f64> {
    pg.owner.execute_unprepared("TRUNCATE coding_jobs").await?;
    let batch = (0..n)
        .map(|i| NewJob {
            priority: (i % 3) as i32,
            ..NewJob::new(pg.session, format!("job {i}"))
        })
        .collect();
    jobs::enqueue_many(&pg.db, Actor::Service, batch).await?;
    pg.owner
        .execute_unprepared("VACUUM ANALYZE coding_jobs")
        .await?;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (db, pool, worker) = (pg.db.clone(), pg.pool.clone(), format!("{how:?}-{w}"));
        tasks.push(tokio::spawn(async move {
            worker_loop(&db, &pool, &worker, how).await
        }));
    }
    let mut claimed = Vec::with_capacity(n);
    for task in tasks {
        claimed.extend(task.await??);
    }
    let per_second = claimed.len() as f64 / started.elapsed().as_secs_f64();

    let unique: HashSet<JobId> = claimed.iter().copied().collect();
    let row = pg
        .owner
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*)::bigint FROM coding_jobs WHERE status = 'completed'",
        ))
        .await?
        .ok_or("no count")?;
    let completed: i64 = row.try_get_by_index(0)?;
    check(
        claimed.len() == n && unique.len() == n && completed == n as i64,
        || {
            format!(
                "{how:?}, {workers} workers: {} claims, {} distinct, {completed} completed of {n}",
                claimed.len(),
                unique.len()
            )
        },
    )?;
    Ok(per_second)
}

/// One worker: claim, complete, until nothing is claimable; the ids it claimed.
async fn worker_loop(
    db: &DatabaseConnection,
    pool: &PgPool,
    worker: &str,
    how: Drain,
) -> Result<Vec<JobId>> {
    let mut claimed = Vec::new();
    loop {
        let ids: Vec<JobId> = match how {
            Drain::Hand => {
                let mut tx = pool.begin().await?;
                as_service(&mut tx).await?;
                let rows = sqlx::query(SQL_CLAIM)
                    .bind(1i64)
                    .bind(worker)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| Ok(r.try_get::<Uuid, _>(0)?.into()))
                    .collect::<Result<_>>()?
            }
            Drain::ForgeOne => jobs::claim(db, Actor::Service, worker, LEASE)
                .await?
                .map(|j| j.id)
                .into_iter()
                .collect(),
            Drain::ForgeMany => jobs::claim_many(db, Actor::Service, worker, LEASE, 10)
                .await?
                .into_iter()
                .map(|j| j.id)
                .collect(),
        };
        if ids.is_empty() {
            return Ok(claimed);
        }
        match how {
            Drain::Hand => {
                for &id in &ids {
                    let mut tx = pool.begin().await?;
                    as_service(&mut tx).await?;
                    let done = sqlx::query(SQL_COMPLETE)
                        .bind(id.into_uuid())
                        .bind(worker)
                        .bind(json!({ "ok": true }))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    check(done.rows_affected() == 1, || {
                        format!("hand-written lost the lease on {id}")
                    })?;
                }
            }
            Drain::ForgeOne => {
                for &id in &ids {
                    jobs::complete(db, Actor::Service, id, worker, json!({ "ok": true })).await?;
                }
            }
            Drain::ForgeMany => {
                let done = ids.iter().map(|&id| (id, json!({ "ok": true }))).collect();
                let out = jobs::complete_many(db, Actor::Service, worker, done).await?;
                check(
                    out.completed.len() == ids.len() && out.lost.is_empty(),
                    || {
                        format!(
                            "complete_many: {} of {} completed, {} lost",
                            out.completed.len(),
                            ids.len(),
                            out.lost.len()
                        )
                    },
                )?;
            }
        }
        claimed.extend(ids);
    }
}

// --- batches -----------------------------------------------------------------------------

/// Items per multi-row `INSERT` on the hand-written side (9 parameters each).
const HAND_ITEMS_PER_INSERT: usize = 5_000;

const HAND_BATCH_LEGEND: &str = "batch: created by its user; hand-written is one transaction: \
    `set_config` of role and claims, the batch row, the items in multi-row `INSERT`s of 5,000, \
    the batch read back (the database counts `total_items`), `COMMIT`";

async fn batch(pg: &Pg, cfg: &Config) -> Result<Line> {
    let (user, n) = (pg.user, cfg.batch_items);
    let config = BatchConfiguration {
        tier: ConversationTier::Template,
        shared_parameters: json!({}),
        concurrent_processing: 3,
        error_handling: Default::default(),
    };
    let medians = interleave(cfg.rounds, 2, async |v| {
        let topics: Vec<String> = (0..n).map(|i| format!("Topic {i}")).collect();
        let started = Instant::now();
        let batch = match v {
            0 => {
                let items = topics.into_iter().map(NewBatchItem::new).collect();
                let new = NewBatch::new("bench batch", config.clone(), items);
                batches::create(&pg.db, Actor::User(user), new).await?
            }
            _ => hand_batch(&pg.pool, user, &config, topics).await?,
        };
        let per_second = n as f64 / started.elapsed().as_secs_f64();
        let row = pg
            .owner
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*)::bigint FROM batch_items WHERE batch_job_id = $1",
                [batch.id.into_uuid().into()],
            ))
            .await?
            .ok_or("no count")?;
        let stored: i64 = row.try_get_by_index(0)?;
        check(
            batch.total_items as usize == n && stored == n as i64,
            || {
                format!(
                    "batch: total_items {}, {stored} items of {n}",
                    batch.total_items
                )
            },
        )?;
        Ok(per_second)
    })
    .await?;
    Ok(Line::new(
        format!("batch of {} items, user", thousands(n as f64)),
        Unit::PerSecond("items"),
        medians[0],
        medians[1],
        Goal::AtLeast(0.9),
    )
    .legend(HAND_BATCH_LEGEND))
}

/// A batch with its items by hand, as the user: one transaction, the batch row, the items
/// in multi-row `INSERT`s, the batch read back (the database counted `total_items`).
async fn hand_batch(
    pool: &PgPool,
    user: ProfileId,
    config: &BatchConfiguration,
    topics: Vec<String>,
) -> Result<batch_jobs::Model> {
    let id = BatchId::new();
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    as_user(&mut tx, user).await?;
    sqlx::query(
        "INSERT INTO batch_jobs (id, created_by, name, priority, configuration, created_at, \
         updated_at) VALUES ($1, $2, $3, 'normal', $4, $5, $6)",
    )
    .bind(id.into_uuid())
    .bind(user.into_uuid())
    .bind("bench batch")
    .bind(serde_json::to_value(config)?)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let tier = config.tier.as_str();
    for (chunk_no, chunk) in topics.chunks(HAND_ITEMS_PER_INSERT).enumerate() {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO batch_items (id, batch_job_id, position, topic, tier, parameters, \
             status, created_at, updated_at) ",
        );
        let first = chunk_no * HAND_ITEMS_PER_INSERT;
        insert.push_values(chunk.iter().enumerate(), |mut b, (i, topic)| {
            b.push_bind(BatchItemId::new().into_uuid())
                .push_bind(id.into_uuid())
                .push_bind((first + i + 1) as i32)
                .push_bind(topic.as_str())
                .push_bind(tier)
                .push_bind(json!({}))
                .push_bind("queued")
                .push_bind(now)
                .push_bind(now);
        });
        insert.build().execute(&mut *tx).await?;
    }
    let row = sqlx::query("SELECT * FROM batch_jobs WHERE id = $1")
        .bind(id.into_uuid())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(batch_model!(&row))
}
