//! Export speed and memory: seeds conversations of 6 turns each (multi-row inserts, in
//! the service's context) and exports them as JSONL into a sink that only counts bytes,
//! for 1,000 and then 10,000 conversations, printing conversations/s, turns/s and the
//! memory the export took at its peak (a counting global allocator: bytes allocated and
//! not yet freed, above what was live when the export started), plus the process's
//! `VmHWM`. Memory stays flat: `exports::write` holds one page of conversations at a time.
//!
//! ```sh
//! cargo run --release --example export_bench                        # a fresh SQLite file
//! scripts/with-postgres.sh cargo run --release --example export_bench
//! EXPORT_BENCH_N=1000,10000,50000 cargo run --release --example export_bench
//! ```
//!
//! Not a timed test: figures depend on the machine.

use forge_db::entity::ids::{ConversationId, ProfileId, TurnId};
use std::alloc::{GlobalAlloc, Layout, System};
use std::error::Error;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use forge_db::entity::conversation_turns::{self, TurnRole};
use forge_db::entity::conversations::{self, ConversationStatus, ConversationTier};
use forge_db::entity::export_logs::ExportFormat;
use forge_db::migration::{Backend, redact_url};
use forge_db::sea_orm::{DatabaseConnection, EntityTrait, Set};
use forge_db::service::exports::{self, ExportRequest};
use forge_db::service::profiles::{self, NewProfile};
use forge_db::service::{Access, Actor, run_as};
use uuid::Uuid;

type BoxError = Box<dyn Error + Send + Sync>;

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// An `AsyncWrite` that counts and drops what it is given.
#[derive(Default)]
struct CountingSink {
    bytes: u64,
}

impl tokio::io::AsyncWrite for CountingSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.bytes += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const TURNS: usize = 6;
/// Conversations per seeding transaction.
const SEED_CHUNK: usize = 500;

/// `VmHWM` of this process (Linux), in KiB.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Adds `n` approved conversations of `owner` with [`TURNS`] turns each.
async fn seed(
    db: &DatabaseConnection,
    owner: ProfileId,
    n: usize,
    offset: usize,
) -> Result<(), BoxError> {
    let mut done = 0;
    while done < n {
        let take = SEED_CHUNK.min(n - done);
        let mut convs = Vec::with_capacity(take);
        let mut turns = Vec::with_capacity(take * TURNS);
        let now = chrono::Utc::now();
        for i in 0..take {
            let id = ConversationId::new();
            let number = offset + done + i;
            convs.push(conversations::ActiveModel {
                id: Set(id),
                conversation_id: Set(format!("bench-{}", Uuid::new_v4().simple())),
                created_by: Set(owner),
                title: Set(Some(format!("Bench conversation {number}"))),
                status: Set(ConversationStatus::Approved),
                tier: Set(ConversationTier::Template),
                persona: Set("founder".to_owned()),
                emotion: Set("curious".to_owned()),
                topic: Set("pricing".to_owned()),
                intent: Set("learn".to_owned()),
                tone: Set("friendly".to_owned()),
                category: Set(vec!["billing".to_owned()].into()),
                parameters: Set(serde_json::json!({})),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            });
            for t in 0..TURNS {
                let role = if t % 2 == 0 {
                    TurnRole::User
                } else {
                    TurnRole::Assistant
                };
                turns.push(conversation_turns::ActiveModel {
                    id: Set(TurnId::new()),
                    conversation_id: Set(id),
                    turn_number: Set(t as i32 + 1),
                    role: Set(role),
                    content: Set(format!(
                        "Turn {} of conversation {number}: how should a small team price a \
                         product with \"usage\", seats, and an annual plan? 🙂",
                        t + 1
                    )),
                    token_count: Set(24),
                    created_at: Set(now),
                });
            }
        }
        run_as(db, Actor::Service, Access::Write, move |txn| {
            Box::pin(async move {
                for chunk in chunks(convs, 50) {
                    conversations::Entity::insert_many(chunk)
                        .exec_without_returning(txn)
                        .await?;
                }
                for chunk in chunks(turns, 500) {
                    conversation_turns::Entity::insert_many(chunk)
                        .exec_without_returning(txn)
                        .await?;
                }
                Ok(())
            })
        })
        .await?;
        done += take;
    }
    Ok(())
}

fn chunks<T>(rows: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        out.push(rows.by_ref().take(size).collect());
    }
    out
}

fn sizes() -> Result<Vec<usize>, BoxError> {
    let spec = std::env::var("EXPORT_BENCH_N").unwrap_or_else(|_| "1000,10000".to_owned());
    let mut sizes = spec
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("EXPORT_BENCH_N: {e}"))?;
    sizes.sort_unstable();
    sizes.dedup();
    Ok(sizes)
}

async fn run() -> Result<(), BoxError> {
    let sizes = sizes()?;
    let (url, temp_file) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => (url, None),
        _ => {
            let path = std::env::temp_dir()
                .join(format!("forge-export-bench-{}.db", Uuid::new_v4().simple()));
            (format!("sqlite://{}?mode=rwc", path.display()), Some(path))
        }
    };
    let backend = Backend::from_url(&url).map_or(String::new(), |b| format!(" ({b})"));
    println!("database  {}{backend}", redact_url(&url));
    let db = forge_db::connect(&url).await?;
    forge_db::migrate(&db).await?;
    let email = format!("export-bench+{}@example.com", Uuid::new_v4().simple());
    let user = profiles::create(&db, Actor::Service, NewProfile::new(email)).await?;

    println!(
        "{:>8} {:>10} {:>10} {:>12} {:>12} {:>12} {:>14} {:>10}",
        "convs",
        "seed s",
        "export s",
        "convs/s",
        "turns/s",
        "MiB out",
        "peak heap MiB",
        "VmHWM MiB"
    );
    let mut seeded = 0;
    for n in sizes {
        let started = Instant::now();
        seed(&db, user.id, n - seeded, seeded).await?;
        seeded = n;
        let seed_secs = started.elapsed().as_secs_f64();

        let baseline = LIVE.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        let mut sink = CountingSink::default();
        let started = Instant::now();
        let summary = exports::write(
            &db,
            Actor::User(user.id),
            ExportRequest::new(ExportFormat::Jsonl),
            &mut sink,
        )
        .await?;
        let secs = started.elapsed().as_secs_f64();
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
        if summary.conversation_count != n as u64 || summary.bytes != sink.bytes {
            return Err(format!("exported {summary:?}, expected {n} conversations").into());
        }
        println!(
            "{:>8} {:>10.2} {:>10.2} {:>12.0} {:>12.0} {:>12.1} {:>14.2} {:>10.1}",
            n,
            seed_secs,
            secs,
            n as f64 / secs,
            summary.turn_count as f64 / secs,
            mib(sink.bytes as usize),
            mib(peak),
            vm_hwm_kib().unwrap_or(0) as f64 / 1024.0,
        );
    }
    db.close().await?;
    if let Some(path) = temp_file {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("export_bench: {err}");
            ExitCode::FAILURE
        }
    }
}
