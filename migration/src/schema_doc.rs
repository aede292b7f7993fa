//! `docs/schema.md`, generated: `forge-migration schema-doc`.
//!
//! The Mermaid ER diagram and each table's column list come from the entities of
//! `forge-entity` (their `Column`s, primary keys and `belongs_to` relations), so they
//! cannot drift from the code. Each table's purpose, invariants, RLS policies and
//! indexes are prose kept here in [`NOTES`]. A test compares [`render`] with the file in
//! the repository and fails, naming the command to run, when the file is stale.

use std::fmt::Write as _;

use forge_entity::{
    activity_logs, api_keys, artifacts, batch_items, batch_jobs, coding_jobs, coding_sessions,
    conversation_turns, conversations, credit_accounts, credit_transactions, edge_cases,
    export_logs, generation_logs, notification_preferences, notifications, pipeline_events,
    pipeline_runs, profiles, projects, prompts, scenarios, session_events, templates,
    usage_metrics,
};
use sea_orm_migration::sea_orm::sea_query::ForeignKeyAction;
use sea_orm_migration::sea_orm::{
    ColumnTrait, ColumnType, EntityTrait, IdenStatic, Iterable, PrimaryKeyToColumn, RelationTrait,
};

/// Where the document lives, relative to the workspace root.
pub const SCHEMA_DOC_PATH: &str = "docs/schema.md";

/// The command that regenerates the document.
pub const SCHEMA_DOC_COMMAND: &str = "cargo run -p forge-migration -- schema-doc";

/// The hand-written part of one table's section.
#[derive(Clone, Copy, Debug)]
pub struct TableNotes {
    /// The table's name.
    pub table: &'static str,
    /// What the table is for, one paragraph.
    pub purpose: &'static str,
    /// Rules that always hold for its rows.
    pub invariants: &'static [&'static str],
    /// Its row-level security on PostgreSQL.
    pub rls: &'static [&'static str],
    /// Its indexes besides the primary key.
    pub indexes: &'static [&'static str],
}

/// One column as its entity declares it.
struct Column {
    name: String,
    ty: &'static str,
    nullable: bool,
    key: Vec<&'static str>,
}

/// A `belongs_to` relation: `table.from` references `to_table.to`.
struct ForeignKey {
    from: String,
    to_table: String,
    to: String,
    on_delete: &'static str,
    nullable: bool,
}

/// One entity: its table, columns and foreign keys.
struct Table {
    name: &'static str,
    columns: Vec<Column>,
    foreign_keys: Vec<ForeignKey>,
}

/// The table of entity `E`.
fn table<E: EntityTrait>() -> Table {
    let entity = E::default();
    let primary: Vec<String> = E::PrimaryKey::iter()
        .map(|pk| pk.into_column().as_str().to_owned())
        .collect();
    let mut foreign_keys = Vec::new();
    for relation in E::Relation::iter() {
        let def = relation.def();
        if def.is_owner {
            continue; // has_one / has_many: drawn from the child's side
        }
        for (from, to) in def.from_col.iter().zip(def.to_col.iter()) {
            foreign_keys.push(ForeignKey {
                from: from.to_string(),
                to_table: def.to_tbl.sea_orm_table().to_string(),
                to: to.to_string(),
                on_delete: on_delete(def.on_delete.as_ref()),
                nullable: false,
            });
        }
    }
    let columns = E::Column::iter()
        .map(|c| {
            let def = c.def();
            let name = c.as_str().to_owned();
            let mut key = Vec::new();
            if primary.contains(&name) {
                key.push("PK");
            }
            if foreign_keys.iter().any(|fk| fk.from == name) {
                key.push("FK");
            }
            if def.is_unique() {
                key.push("UK");
            }
            Column {
                ty: type_name(def.get_column_type()),
                nullable: def.is_null(),
                name,
                key,
            }
        })
        .collect::<Vec<_>>();
    for fk in &mut foreign_keys {
        fk.nullable = columns.iter().any(|c| c.name == fk.from && c.nullable);
    }
    Table {
        name: entity.table_name(),
        columns,
        foreign_keys,
    }
}

/// Every entity of `forge-entity`, parents before children.
fn tables() -> Vec<Table> {
    vec![
        table::<profiles::Entity>(),
        table::<projects::Entity>(),
        table::<coding_sessions::Entity>(),
        table::<coding_jobs::Entity>(),
        table::<session_events::Entity>(),
        table::<conversations::Entity>(),
        table::<conversation_turns::Entity>(),
        table::<batch_jobs::Entity>(),
        table::<batch_items::Entity>(),
        table::<pipeline_runs::Entity>(),
        table::<pipeline_events::Entity>(),
        table::<artifacts::Entity>(),
        table::<prompts::Entity>(),
        table::<templates::Entity>(),
        table::<scenarios::Entity>(),
        table::<edge_cases::Entity>(),
        table::<generation_logs::Entity>(),
        table::<export_logs::Entity>(),
        table::<credit_accounts::Entity>(),
        table::<credit_transactions::Entity>(),
        table::<api_keys::Entity>(),
        table::<notifications::Entity>(),
        table::<notification_preferences::Entity>(),
        table::<usage_metrics::Entity>(),
        table::<activity_logs::Entity>(),
    ]
}

/// The PostgreSQL name of a column type, as the document shows it.
fn type_name(ty: &ColumnType) -> &'static str {
    match ty {
        ColumnType::Uuid => "uuid",
        ColumnType::Integer => "integer",
        ColumnType::BigInteger => "bigint",
        ColumnType::Double => "double_precision",
        ColumnType::Decimal(_) => "numeric",
        ColumnType::Boolean => "boolean",
        ColumnType::Date => "date",
        ColumnType::Json | ColumnType::JsonBinary => "jsonb",
        ColumnType::TimestampWithTimeZone | ColumnType::Timestamp | ColumnType::DateTime => {
            "timestamptz"
        }
        ColumnType::Text
        | ColumnType::String(_)
        | ColumnType::Char(_)
        | ColumnType::Enum { .. } => "text",
        _ => "other",
    }
}

fn on_delete(action: Option<&ForeignKeyAction>) -> &'static str {
    match action {
        Some(ForeignKeyAction::Cascade) => "cascade",
        Some(ForeignKeyAction::SetNull) => "set null",
        Some(ForeignKeyAction::Restrict) => "restrict",
        Some(ForeignKeyAction::SetDefault) => "set default",
        Some(ForeignKeyAction::NoAction) | None => "no action",
        Some(_) => "other",
    }
}

/// The whole of `docs/schema.md`.
#[must_use]
pub fn render() -> String {
    let tables = tables();
    let mut out = String::from(HEADER);
    out.push_str("\n## Diagram\n\n");
    diagram(&mut out, &tables);
    out.push_str("\n## Tables\n");
    for t in &tables {
        section(&mut out, t);
    }
    out.push_str(FOOTER);
    out
}

/// The Mermaid `erDiagram`: every table with its columns, every foreign key as an edge
/// from parent to child labelled with the child's column and its ON DELETE rule.
fn diagram(out: &mut String, tables: &[Table]) {
    out.push_str("```mermaid\nerDiagram\n");
    for t in tables {
        let _ = writeln!(out, "    {} {{", t.name);
        for c in &t.columns {
            let _ = write!(out, "        {} {}", c.ty, c.name);
            if !c.key.is_empty() {
                let _ = write!(out, " {}", c.key.join(", "));
            }
            out.push_str(if c.nullable { " \"null\"\n" } else { "\n" });
        }
        out.push_str("    }\n");
    }
    for t in tables {
        for fk in &t.foreign_keys {
            let parent = if fk.nullable { "|o" } else { "||" };
            let _ = writeln!(
                out,
                "    {} {parent}--o{{ {} : \"{} ({})\"",
                fk.to_table, t.name, fk.from, fk.on_delete
            );
        }
    }
    out.push_str("```\n");
}

/// One table's section: purpose, columns, foreign keys, then the notes.
fn section(out: &mut String, t: &Table) {
    let notes = NOTES.iter().find(|n| n.table == t.name);
    let _ = writeln!(out, "\n### {}\n", t.name);
    if let Some(n) = notes {
        let _ = writeln!(out, "{}\n", n.purpose);
    }
    out.push_str("| column | type | null | key |\n|---|---|---|---|\n");
    for c in &t.columns {
        let null = if c.nullable { "NULL" } else { "NOT NULL" };
        let _ = writeln!(
            out,
            "| {} | {} | {null} | {} |",
            c.name,
            c.ty,
            c.key.join(", ")
        );
    }
    if !t.foreign_keys.is_empty() {
        out.push_str("\nForeign keys:\n");
        for fk in &t.foreign_keys {
            let _ = writeln!(
                out,
                "- `{}` → `{}({})` ON DELETE {}",
                fk.from,
                fk.to_table,
                fk.to,
                fk.on_delete.to_uppercase()
            );
        }
    }
    let Some(n) = notes else {
        out.push_str("\n(no notes for this table in migration/src/schema_doc.rs)\n");
        return;
    };
    list(out, "Invariants", n.invariants);
    list(out, "Row-level security (PostgreSQL)", n.rls);
    list(out, "Indexes", n.indexes);
}

fn list(out: &mut String, title: &str, lines: &[&str]) {
    let _ = writeln!(out, "\n{title}:");
    for line in lines {
        let _ = writeln!(out, "- {line}");
    }
}

const HEADER: &str = "# Forge's database schema

<!-- Generated by `cargo run -p forge-migration -- schema-doc` from the entities of
forge-entity and the notes in migration/src/schema_doc.rs. Do not edit by hand: a test
(migration/tests/seed_and_docs.rs) fails when this file is stale. -->

Forge keeps its aggregates in twenty-five tables. A **profile** owns **projects**, and a
project's **coding sessions** carry a queue of **coding jobs** and an append-only stream of
**session events** (seed 002). A profile also owns generated **conversations** with their
**turns**, and **batch jobs** whose **items** each produce one conversation (seed 003).
And a profile owns **pipeline runs** (`jobs`), which bots turn into **artifacts** while
logging **job events**; **prompts** hold the bots' and the app's prompts and copy (seeds
000 and 001, with the seeds' own table names). Conversations are generated from
**templates**, their **scenarios** and the scenarios' **edge cases**; every model call is
logged in **generation logs** and every dataset export in **export logs** (seed 003).
Each profile has a **credit account** whose balance moves only through its append-only
ledger of **credit transactions**, **API keys**, **notifications** and its **notification
preferences**; the database counts its **usage metrics** per day and writes its
**activity log** (seed 004).
Every table has a `uuid` primary key `id` (the application sets it; PostgreSQL also
defaults it to `gen_random_uuid()`), except `jobs` (keyed by the text `run_id`),
`prompts` (keyed by a text `id`) and `notification_preferences` (keyed by `user_id`), and
`created_at`; every table but `session_events`, `conversation_turns`, `job_events`,
`artifacts`, `generation_logs`, `export_logs`, `credit_transactions`, `notifications` and
`activity_logs` has `updated_at`, kept current by the
entities' `ActiveModelBehavior` and, on PostgreSQL, by a `BEFORE UPDATE` trigger. Enum-like columns
are `text` with a `CHECK (col IN (...))`; JSON columns are `jsonb` on PostgreSQL and JSON
text on SQLite. The same migrations build the schema on SQLite and PostgreSQL;
row-level security exists on PostgreSQL only.
";

const FOOTER: &str = "
## Row-level security

On PostgreSQL the migrations enable and force RLS on every table, Supabase-compatible:
roles `anon`, `authenticated` and `service_role` (created when missing), and `auth.uid()`
reading the `sub` of the request's JWT claims (`request.jwt.claim.sub` or
`request.jwt.claims`). Every policy is for `authenticated` and compares the owner with
`(select auth.uid())`, except that every signed-in user reads `prompts` and active
`templates`; `service_role`
bypasses RLS. The service layer filters by owner in
Rust as well, so RLS is the second wall, not the only one.

The database holds every rule of the contract by itself, for SQL sent straight to it (as
Supabase's PostgREST does): everything is revoked from `PUBLIC`, `anon`, `authenticated`
and `service_role` (Supabase grants them `ALL` by default) and exactly the contract's
grants are given back — column privileges for what `authenticated` may write,
`SELECT, INSERT, UPDATE, DELETE` for `service_role`, nothing for `anon`, nothing on the
bookkeeping tables `seaql_migrations` and `forge_migration_checksums`. Triggers hold the
invariants for every role (below) and the state rules for end users. Every JSON document
is at most 64 KiB (a `CHECK` per JSON column).

## Triggers and functions (PostgreSQL)

- `updated_at` triggers on every table that has the column.
- `session_events_assign_seq` (`BEFORE INSERT`): assigns the next `seq` of the session
  when an insert leaves it out, locking the session row so appends are serialised and
  readers polling \"seq > N\" never skip an event.
- `session_events_notify` (`AFTER INSERT`): `NOTIFY forge_session_events` with the
  session's id, at most once per transaction and session, waking live event streams.
- `forge_fail_jobs_of_ended_session`: when a session ends, its unfinished jobs fail.
- `coding_sessions_guard`: the transitions, `sessions_limit` (locking the owner's profile
  row, so racing starts queue), an own active project; users start `pending` sessions
  expiring within 24 h.
- `conversations_guard`, `conversation_turns_totals_*`: totals follow the turns (a
  conversation starts at zero; nothing else writes them); users edit only drafts and
  submit them, the database recording the submission in `review_history`.
- `batch_jobs_guard`, `batch_items_counters_*`, `batch_jobs_cancel_items`,
  `batch_items_guard`: counters follow the items (a batch starts at zero; nothing else
  writes them); `completed_at` is set when a batch ends; cancelling fails the queued
  items; an item's conversation is one of the batch owner's; users only pause, resume and
  cancel, and `batch_jobs_delete_guard` keeps them from deleting a batch while it is
  processing.
- `jobs_guard`: the run transitions, `started_at` / `completed_at` set on entering
  running / an end state, `error_message` only on a failed run, an owner that never
  changes (a run inserted without one belongs to `auth.uid()`); users create pending runs
  and only cancel them. `job_events_owner`, `artifacts_owner`
  (`forge_pipeline_owner_of_run`): an event's and an artifact's `owner_id` is the run's
  owner, filled in when left out. `job_events_append_only`: events never change and are
  deleted only with their run.
- `profiles_open_account` (`forge_profiles_open_account`): a new profile gets its credit
  account, the 100-credit `signup_bonus` (through the ledger) and its notification
  preferences, in the same transaction.
- `credit_transactions_apply`: a ledger row moves its account's balance (never below zero:
  `forge:limit:credits:<balance>`, on SQLite without the balance; the account row is
  locked, so concurrent spends queue),
  records `balance_after`, refuses a retried id or idempotency key with the unique
  violation before anything moves, counts `credits_spent`, and notifies `credits_low` when
  a spend crosses 10 credits. `credit_accounts_guard`: an account starts at zero, keeps its
  user, and its balance moves only through the ledger. `credit_transactions_append_only`,
  `activity_logs_append_only`: rows never change and are deleted only with their account
  or user.
- `api_keys_guard`: a key is revoked once; at most 10 unrevoked keys per user.
- `projects_activity`, `coding_sessions_activity`, `coding_jobs_usage`,
  `conversations_usage`, `conversation_turns_usage`, `batch_jobs_activity`,
  `api_keys_activity`: the daily usage counters and the activity log, written in the
  transaction of the action.
- Every function has `search_path = ''`; none is executable by `anon`, `authenticated`
  or `service_role` (triggers need no `EXECUTE`).

On SQLite the same invariants (transitions, `sessions_limit`, own active project, totals,
counters, an item's conversation, cancelling, JSON size, the run transitions and
timestamps, a run's `error_message` and owner, the owner of events and artifacts, the
signup, the ledger and its balance, API key revocation and limit, usage counters and
activity) are triggers raising the same `forge:<kind>:…` messages.
- `on_auth_user_created` on `auth.users`, where that table exists (Supabase): creates the
  profile on signup.

## Development data

`forge-migration seed [--users N]` loads, for each of N users, the data set of seed 002
step 9 (a profile `dev{n}@forge.local`, the project \"Test Todo App\", a live session, its
jobs and events) plus seven conversations, one in every review status, with their turns,
a batch of six items, and five pipeline runs, one in every status, with their events and
artifacts; two templates with their scenarios, edge cases, a generation log and an
export; on top of the account signup gives (100 credits), two spends that cross the
low-credit threshold (so the database notifies `credits_low`) and a refund, two API keys
(one revoked) and two notifications (one read). The usage counters and the activity log
follow from the triggers. The prompts are loaded once. Ids are fixed, so running it again
inserts nothing new. It refuses to run on a database with pending migrations.

## Testing

`scripts/test.sh` runs every test on SQLite and on a throwaway PostgreSQL
(`scripts/with-postgres.sh`): the repositories' isolation tests (user B sees none of user
A's rows, through the Rust filters and through RLS), `forge-migration verify` on freshly
migrated and seeded databases, and the check that this file is up to date.

## Migrations and checks

`forge-migration up | down | status | fresh | refresh | reset` apply and roll back the
migrations; `forge-migration verify` checks a live database against these migrations and
entities; `forge-migration schema-doc` regenerates this file.
";

/// The hand-written part of every table's section.
pub const NOTES: &[TableNotes] = &[
    TableNotes {
        table: "profiles",
        purpose: "One row per user: identity, display name and plan. Its `id` equals the \
                  auth user's id where one exists; every other table is owned through it.",
        invariants: &[
            "`email` is unique; `stripe_customer_id` is unique when set.",
            "`tier` is one of free, pro, enterprise; `sessions_limit` ≥ 0 is how many live \
             sessions the user may have at once.",
        ],
        rls: &[
            "`profiles_select_own`, `profiles_update_own`: a user reads and updates only the \
             row with `id = auth.uid()`.",
            "Users may update only `display_name` and `avatar_url` (column privileges); \
             `email`, `tier`, `sessions_limit`, `stripe_customer_id` are the service's.",
            "No INSERT (signup creates the row) and no DELETE for users.",
        ],
        indexes: &["`email` (unique)", "`idx_profiles_tier` on `tier`"],
    },
    TableNotes {
        table: "projects",
        purpose: "A user's app project: name, template, Expo configuration and sandbox.",
        invariants: &[
            "`name` is not blank and at most 200 characters.",
            "`status` is active, archived or deleted; deleting is soft (status = deleted).",
        ],
        rls: &[
            "SELECT, INSERT (WITH CHECK), UPDATE, DELETE where `user_id = auth.uid()`.",
            "Users write `name`, `description`, `template_id`, `expo_config`, `status`; \
             `sandbox_id` and moving a project to another user are the service's.",
        ],
        indexes: &[
            "`idx_projects_user_id_keyset` on `(user_id, created_at DESC, id DESC)`",
            "`idx_projects_status` on `status`",
            "`idx_projects_created_at` on `created_at DESC`",
        ],
    },
    TableNotes {
        table: "coding_sessions",
        purpose: "A live coding session on a project, started from a prompt, with its \
                  preview URLs once ready.",
        invariants: &[
            "The project belongs to the session's `user_id`.",
            "Live sessions (pending, active, paused) of a user never exceed the profile's \
             `sessions_limit`, even under concurrent starts.",
            "Transitions: pending→active, active⇄paused, pending|active|paused→\
             completed|failed|expired; nothing leaves completed, failed or expired.",
        ],
        rls: &[
            "SELECT, INSERT, UPDATE where `user_id = auth.uid()`; INSERT only as `pending`, \
             on the user's own active project, expiring within 24 h.",
            "Users update only `status` (allowed transitions), `eas_update_url`, \
             `webview_url`. No DELETE for users.",
        ],
        indexes: &[
            "`idx_coding_sessions_user_id_keyset` on `(user_id, created_at DESC, id DESC)`",
            "`idx_coding_sessions_project_id` on `project_id`",
            "`idx_coding_sessions_status` on `status`",
            "`idx_coding_sessions_expires_at` on `expires_at`",
        ],
    },
    TableNotes {
        table: "coding_jobs",
        purpose: "The work queue of a session: workers claim pending jobs by priority, hold \
                  a lease, and complete or fail them.",
        invariants: &[
            "Higher `priority` runs first, FIFO by `created_at` within a priority; a job is \
             not claimable before `run_after` (retry back-off).",
            "A job still processing after `locked_until` may be claimed again.",
            "`retry_count` ≥ 0 and `max_retries` ≥ 0.",
            "On PostgreSQL claiming uses `FOR UPDATE SKIP LOCKED`.",
        ],
        rls: &[
            "SELECT where the session is the user's; nothing else (workers use \
                `service_role`).",
        ],
        indexes: &[
            "`idx_coding_jobs_status_priority` on `(status, priority DESC, created_at)`",
            "`idx_coding_jobs_session_id` on `(session_id, created_at)`",
            "`idx_coding_jobs_pending` on `(priority DESC, created_at) WHERE status = 'pending'`",
            "`idx_coding_jobs_lease` on `locked_until WHERE locked_until IS NOT NULL` \
             (PostgreSQL)",
        ],
    },
    TableNotes {
        table: "session_events",
        purpose: "The append-only stream of what happened in a session (thinking, terminal \
                  output, file changes, preview ready, completion, errors).",
        invariants: &[
            "`seq` is 1, 2, 3 … within a session with no gaps, unique per session.",
            "Events never change (no `updated_at`).",
            "A reader tailing \"events after seq N\" never skips an event, even with \
             concurrent writers.",
        ],
        rls: &["SELECT where the session is the user's; nothing else."],
        indexes: &[
            "`(session_id, seq)` unique",
            "`idx_session_events_created_at` on `created_at DESC`",
        ],
    },
    TableNotes {
        table: "conversations",
        purpose: "A generated training conversation and its review: status, tier, the \
                  generation parameters, quality and the history of review actions.",
        invariants: &[
            "`conversation_id` (the human-facing id) is unique.",
            "`total_turns` and `total_tokens` always equal the count and token sum of its \
             turns.",
            "`quality_score` is between 0 and 10 when set.",
            "`review_history` is a JSON array of review actions (who, what, comment, when).",
        ],
        rls: &[
            "SELECT, INSERT, UPDATE, DELETE where `created_by = auth.uid()`; INSERT only as \
             `draft`.",
            "Users edit the labels, `title`, `category`, `parameters` only while `draft` or \
             `needs_revision`, and change `status` only to `pending_review`; review \
             columns, totals and every other status change are the service's.",
        ],
        indexes: &[
            "`idx_conversations_created_by_keyset` on `(created_by, created_at DESC, id DESC)`",
            "`idx_conversations_status` on `status`",
            "`idx_conversations_tier` on `tier`",
            "`idx_conversations_created_at` on `created_at DESC`",
            "`idx_conversations_approved_by` on `approved_by WHERE approved_by IS NOT NULL`",
        ],
    },
    TableNotes {
        table: "conversation_turns",
        purpose: "The messages of a conversation, in order.",
        invariants: &[
            "`turn_number` ≥ 1 and unique within the conversation.",
            "`token_count` ≥ 0; turns never change (no `updated_at`).",
        ],
        rls: &[
            "SELECT through the conversation's owner; INSERT while it is `draft` or \
             `needs_revision`. No UPDATE or DELETE for users.",
        ],
        indexes: &["`(conversation_id, turn_number)` unique"],
    },
    TableNotes {
        table: "batch_jobs",
        purpose: "A batch of conversations to generate, with its configuration and progress \
                  counters.",
        invariants: &[
            "`completed_items = successful_items + failed_items ≤ total_items`, all ≥ 0 \
             (a CHECK).",
            "The counters always equal what the batch's items say, even with many workers \
             finishing items at once.",
        ],
        rls: &[
            "SELECT, INSERT (`queued`, counters at zero), DELETE where `created_by = \
             auth.uid()`; UPDATE only `status`: pause, resume (to `queued`), cancel.",
        ],
        indexes: &[
            "`idx_batch_jobs_created_by_keyset` on `(created_by, created_at DESC, id DESC)`",
            "`idx_batch_jobs_status` on `status`",
        ],
    },
    TableNotes {
        table: "batch_items",
        purpose: "One conversation to generate within a batch, and the conversation it \
                  produced.",
        invariants: &[
            "`progress` is between 0 and 100.",
            "`conversation_id` becomes NULL when the conversation is deleted; when set it is \
             a conversation of the batch's owner.",
            "Leases, as for coding jobs: a claim sets `locked_by` (the worker) and \
             `locked_until` (the lease end). `locked_until` is set only while the item is \
             `processing`; `locked_by` stays after the item finished or was requeued (the \
             worker that claimed it last).",
            "An item still `processing` after `locked_until` (or with no lease, from before \
             leases existed) may be claimed by another worker; only the worker named in \
             `locked_by` may report progress, heartbeat or finish it, so it finishes once.",
            "A batch's `concurrent_processing` bounds its live leases (`processing` and \
             `locked_until` not passed), even under racing claims and heartbeats.",
        ],
        rls: &[
            "SELECT through the batch's owner; INSERT of `queued` items into an own `queued` \
             batch (not `locked_by`, `locked_until`: column privileges). No UPDATE or DELETE \
             for users.",
        ],
        indexes: &[
            "`idx_batch_items_job_id` on `batch_job_id`",
            "`idx_batch_items_status` on `status`",
            "`idx_batch_items_conversation_id` on `conversation_id WHERE conversation_id IS \
             NOT NULL`",
            "`idx_batch_items_lease` on `locked_until WHERE locked_until IS NOT NULL`",
        ],
    },
    TableNotes {
        table: "jobs",
        purpose: "A pipeline run (seeds 000 and 001): the bots turn its project \
                  specification into artifacts, logging events as they go. The seeds' \
                  table name; the entity is `forge_entity::pipeline_runs`.",
        invariants: &[
            "`run_id` (the human-facing id, the primary key) is not blank and at most 200 \
             characters; `project_spec` is a JSON object of at most 64 KiB.",
            "Transitions: pending→running→completed|failed, pending|running→cancelled; \
             nothing leaves completed, failed or cancelled.",
            "`started_at` is set on entering running and `completed_at` on entering an end \
             state (by the database, unless the writer gave them); a pending run has no \
             `started_at`, a run that has not ended no `completed_at`.",
            "`error_message` only on a failed run; `owner_id` never changes.",
        ],
        rls: &[
            "`jobs_select_own`: SELECT where `owner_id = auth.uid()`.",
            "`jobs_insert_own`: INSERT of `run_id`, `project_spec`, `owner_id`, `status` \
             (column privileges) for oneself, as `pending`; `owner_id` defaults to \
             `auth.uid()`.",
            "`jobs_update_own`: UPDATE of `status` only, to cancel an own pending or running \
             run. Every other change and DELETE are the service's (the bots').",
        ],
        indexes: &[
            "`idx_jobs_owner_id_keyset` on `(owner_id, created_at DESC, run_id DESC)`",
            "`idx_jobs_status` on `status`",
            "`idx_jobs_created_at` on `created_at DESC`",
        ],
    },
    TableNotes {
        table: "job_events",
        purpose: "The append-only log of a pipeline run: which bot did what, with a JSON \
                  payload. The seeds' table name; the entity is \
                  `forge_entity::pipeline_events`.",
        invariants: &[
            "`owner_id` is the run's owner: PostgreSQL fills it in when an insert leaves it \
             out; any other value is refused (both backends).",
            "Events never change (no `updated_at`) and are deleted only with their run.",
            "`payload` is at most 64 KiB.",
        ],
        rls: &["`job_events_select_own`: SELECT where `owner_id = auth.uid()`; nothing else."],
        indexes: &[
            "`idx_job_events_run_id` on `(run_id, created_at)`",
            "`idx_job_events_owner_id` on `owner_id`",
        ],
    },
    TableNotes {
        table: "artifacts",
        purpose: "What a pipeline run produced (a zip, a file, …): where to fetch it, its \
                  size, type and checksum.",
        invariants: &[
            "`owner_id` is the run's owner: PostgreSQL fills it in when an insert leaves it \
             out; any other value is refused (both backends).",
            "`file_size` ≥ 0; `checksum`, when set, is `sha256:` followed by 64 lowercase \
             hex digits; `meta` is at most 64 KiB.",
        ],
        rls: &["`artifacts_select_own`: SELECT where `owner_id = auth.uid()`; nothing else."],
        indexes: &[
            "`idx_artifacts_run_id` on `run_id`",
            "`idx_artifacts_owner_id` on `owner_id`",
        ],
    },
    TableNotes {
        table: "prompts",
        purpose: "The AI prompts and product copy the pipeline's bots and the app use, under \
                  stable keys such as `onboarding.welcome`.",
        invariants: &["`id` is not blank and at most 200 characters."],
        rls: &[
            "`prompts_select_authenticated`: every signed-in user reads every prompt; only \
             the service writes them. Nothing for `anon`.",
        ],
        indexes: &["none besides the primary key (`id`)"],
    },
    TableNotes {
        table: "templates",
        purpose: "The templates conversations are generated from (seed 003's 27 columns): a \
                  prompt with `{{name}}` placeholders, the personas, emotions and topics it \
                  suits, and its usage and rating. `conversations.template_id` references it \
                  (ON DELETE SET NULL; on SQLite by triggers, since adding a foreign key there \
                  needs a table rebuild).",
        invariants: &[
            "`template_name` is not blank and at most 200 characters; `tier` is template, \
             scenario or edge_case; `complexity_baseline` 1–10, `quality_threshold` 0–10, \
             `usage_count` ≥ 0, `rating` 0–5, `success_rate` 0–1, `version` ≥ 1.",
            "`variables`, `required_elements`, `applicable_personas`, `applicable_emotions` \
             and `applicable_topics` are JSON arrays of strings, each at most 64 KiB.",
            "`version` +1, `last_modified` and `last_modified_by` are kept by the database: \
             bumped on every change of a content column (`template_name` … \
             `applicable_topics`), unchanged by any other update; `last_modified_by` is the \
             acting user (`auth.uid()`) when there is one, else whom the writer named.",
        ],
        rls: &[
            "`templates_select_active_or_own`: SELECT of active templates and of one's own.",
            "`templates_insert_own`: INSERT for oneself, without `usage_count`, `rating`, \
             `success_rate`, `version`, `last_modified*` (column privileges).",
            "`templates_update_own`: UPDATE of the content columns and `is_active` of one's \
             own. `usage_count`, `rating`, `success_rate` and DELETE are the service's.",
        ],
        indexes: &[
            "`idx_templates_tier_is_active` on `(tier, is_active)`",
            "`idx_templates_created_by_keyset` on `(created_by, created_at DESC, id DESC)`",
            "`idx_templates_last_modified_by` on `last_modified_by`",
            "`idx_templates_category` on `category`",
        ],
    },
    TableNotes {
        table: "scenarios",
        purpose: "A template filled in for one situation (topic, persona, emotional arc, \
                  values for the template's variables), and the conversation generated \
                  from it.",
        invariants: &[
            "`name` at most 200 characters; `generation_status` not_generated, generated or \
             error; `status` draft, active or archived; `quality_score` 0–10; \
             `parameter_values` at most 64 KiB.",
        ],
        rls: &[
            "`scenarios_select_own`, `scenarios_delete_own`: one's own.",
            "`scenarios_insert_own`: INSERT for oneself under one's own template.",
            "`scenarios_update_own`: UPDATE of the content columns. `generation_status`, \
             `conversation_id`, `error_message` and `quality_score` are the service's.",
        ],
        indexes: &[
            "`idx_scenarios_parent_template_id` on `parent_template_id`",
            "`idx_scenarios_conversation_id` on `conversation_id`",
            "`idx_scenarios_created_by_keyset` on `(created_by, created_at DESC, id DESC)`",
        ],
    },
    TableNotes {
        table: "edge_cases",
        purpose: "The hard cases of a scenario, what a good conversation does in them, and \
                  the latest test's outcome.",
        invariants: &[
            "`complexity` low, medium or high; `test_status` not_tested, passed or failed; \
             `last_test_result` at most 64 KiB.",
        ],
        rls: &[
            "`edge_cases_select_own`, `edge_cases_delete_own`: one's own.",
            "`edge_cases_insert_own`: INSERT for oneself under one's own scenario.",
            "`edge_cases_update_own`: UPDATE of the content columns. `test_status` and \
             `last_test_result` are the service's.",
        ],
        indexes: &[
            "`idx_edge_cases_scenario_id` on `scenario_id`",
            "`idx_edge_cases_created_by_keyset` on `(created_by, created_at DESC, id DESC)`",
        ],
    },
    TableNotes {
        table: "generation_logs",
        purpose: "One row per model call of the generator: payloads, parameters, tokens, \
                  duration and cost. Append-only.",
        invariants: &[
            "`cost_usd` is `numeric(12,6)` on PostgreSQL (a double on SQLite; a `Decimal` in \
             the entity) and ≥ 0; tokens and `duration_ms` ≥ 0; JSON documents at most 64 KiB.",
            "Entries never change (but the foreign keys' ON DELETE SET NULL) and are deleted \
             only with their user (PostgreSQL).",
        ],
        rls: &[
            "`generation_logs_select_own`: SELECT where `user_id = auth.uid()`; every \
                write is the service's.",
        ],
        indexes: &[
            "`idx_generation_logs_user_id` on `(user_id, created_at DESC, id DESC)`",
            "`idx_generation_logs_conversation_id` on `conversation_id`",
            "`idx_generation_logs_template_id` on `template_id`",
        ],
    },
    TableNotes {
        table: "export_logs",
        purpose: "One row per dataset export: format, the filter that chose the \
                  conversations, how many, the file's size and the outcome.",
        invariants: &[
            "`export_id` is unique; `format` jsonl, json, csv or markdown; `status` \
             processing, completed or failed; counts and `file_size` ≥ 0; `scope` at most \
             64 KiB.",
            "`completed_at` is set by the database on entering completed or failed; a \
             processing export has none.",
        ],
        rls: &[
            "`export_logs_select_own`: SELECT where `user_id = auth.uid()`; every write \
                is the service's.",
        ],
        indexes: &["`idx_export_logs_user_id_keyset` on `(user_id, created_at DESC, id DESC)`"],
    },
    TableNotes {
        table: "credit_accounts",
        purpose: "A user's credits (seed 004): one account per profile, opened with the profile \
                  (signup) and credited the 100-credit `signup_bonus` through the ledger.",
        invariants: &[
            "`user_id` is unique and never changes; a new account starts at zero.",
            "`balance` always equals the sum of the account's ledger and `lifetime_granted − \
             lifetime_spent` (a CHECK), and is never negative, even under concurrent spends \
             (the ledger's trigger locks the account row).",
            "`balance`, `lifetime_granted` and `lifetime_spent` move only through the ledger: \
             a direct write is refused for every role (`forge:invariant:…`).",
        ],
        rls: &[
            "`credit_accounts_select_own`: SELECT where `user_id = auth.uid()`; every write \
             is the service's (and balances the ledger's).",
        ],
        indexes: &["`user_id` (unique)"],
    },
    TableNotes {
        table: "credit_transactions",
        purpose: "The append-only credit ledger: every credit in or out of an account, with \
                  the balance after it. Inserting a row is how a balance moves.",
        invariants: &[
            "`amount` ≠ 0: `spend` negative; `signup_bonus`, `purchase`, `grant`, `refund` \
             positive; `adjustment` either. `user_id` is the account's user.",
            "The database moves the account's balance in the same statement and records \
             `balance_after`; a row that would take it below zero is refused \
             (`forge:limit:credits:<balance>`).",
            "`(account_id, idempotency_key)` is unique: a retry with the same key is refused \
             with the unique violation and moves nothing.",
            "A `spend` that takes the balance from 10 or more to less notifies `credits_low` \
             (unless the user's preferences turn it off).",
            "Rows never change and are deleted only with their account.",
        ],
        rls: &[
            "`credit_transactions_select_own`: SELECT where `user_id = auth.uid()`; every \
             write is the service's.",
        ],
        indexes: &[
            "`(account_id, idempotency_key)` unique",
            "`idx_credit_transactions_account_id_keyset` on `(account_id, created_at DESC, id \
             DESC)`",
            "`idx_credit_transactions_user_id` on `user_id`",
        ],
    },
    TableNotes {
        table: "api_keys",
        purpose: "Keys for programmatic access. The full key is shown once, at creation; the \
                  table keeps its prefix (shown in lists) and a hash of the secret.",
        invariants: &[
            "`name` is not blank and at most 100 characters; `key_prefix` and `key_hash` are \
             unique; `scopes` is a JSON array of strings.",
            "`revoked_at` goes from NULL to a value once and never changes again.",
            "At most 10 unrevoked keys per user (`forge:limit:api keys:10`), even under \
             concurrent creations.",
        ],
        rls: &[
            "`api_keys_select_own`: SELECT of every column but `key_hash` (column \
             privileges) where `user_id = auth.uid()`.",
            "`api_keys_update_own`: UPDATE of `name` and `revoked_at` (revoke once). \
             Creating keys, `key_hash`, `last_used_at` and DELETE are the service's.",
        ],
        indexes: &[
            "`key_prefix` (unique)",
            "`key_hash` (unique)",
            "`idx_api_keys_user_id` on `user_id`",
        ],
    },
    TableNotes {
        table: "notifications",
        purpose: "Messages to a user: a session ready or failed, a batch finished, credits \
                  running low, the platform's news.",
        invariants: &[
            "`type` is session_ready, session_failed, batch_completed, batch_failed, \
             credits_low or system; `title` at most 200 characters, `body` at most 2000; \
             `data` a JSON object.",
        ],
        rls: &[
            "`notifications_select_own`, `notifications_delete_own`: one's own.",
            "`notifications_update_own`: UPDATE of `read_at` only. INSERT is the service's \
             (and the database's: `credits_low`).",
        ],
        indexes: &[
            "`idx_notifications_user_id_keyset` on `(user_id, created_at DESC, id DESC)`",
            "`idx_notifications_unread` on `user_id WHERE read_at IS NULL`",
        ],
    },
    TableNotes {
        table: "notification_preferences",
        purpose: "What notifications a user wants: one row per profile, keyed by the \
                  profile's id and created with it.",
        invariants: &[
            "`muted_types` is a JSON array of notification types.",
            "With `in_app_enabled = false` or `credits_low` muted, the database inserts no \
             `credits_low` notification.",
        ],
        rls: &[
            "`notification_preferences_select_own`: one's own row.",
            "`notification_preferences_update_own`: UPDATE of `email_enabled`, \
             `in_app_enabled`, `muted_types`. INSERT and DELETE are the service's.",
        ],
        indexes: &["none besides the primary key (`user_id`)"],
    },
    TableNotes {
        table: "usage_metrics",
        purpose: "What a user did per UTC day, counted by the database in the transaction of \
                  the action: sessions started, jobs completed, conversations created, \
                  tokens of the turns written, credits spent.",
        invariants: &[
            "One row per user and day (`(user_id, day)` unique); every counter ≥ 0.",
            "Kept exactly, under concurrency, by upserting triggers on `coding_sessions`, \
             `coding_jobs` (a job becoming completed), `conversations`, \
             `conversation_turns` and `credit_transactions` (spends).",
        ],
        rls: &[
            "`usage_metrics_select_own`: SELECT where `user_id = auth.uid()`; every write is \
             the service's (and the database's).",
        ],
        indexes: &["`(user_id, day)` unique"],
    },
    TableNotes {
        table: "activity_logs",
        purpose: "The user-visible actions, written by the database in the transaction of the \
                  action: `project.created` / `.archived` / `.deleted`, `session.started` / \
                  `.ended`, `api_key.created` / `.revoked`, `batch.created` / `.cancelled`.",
        invariants: &[
            "`action` is not blank and at most 100 characters; `metadata` is a JSON object.",
            "Rows never change and are deleted only with their user.",
        ],
        rls: &[
            "`activity_logs_select_own`: SELECT where `user_id = auth.uid()`; every write is \
             the service's (and the database's).",
        ],
        indexes: &["`idx_activity_logs_user_id_keyset` on `(user_id, created_at DESC, id DESC)`"],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_notes_and_an_entity() {
        let names: Vec<_> = tables().iter().map(|t| t.name).collect();
        assert_eq!(names, crate::TABLES);
        let noted: Vec<_> = NOTES.iter().map(|n| n.table).collect();
        assert_eq!(noted, crate::TABLES);
    }

    #[test]
    fn the_diagram_draws_every_foreign_key() {
        let doc = render();
        assert!(
            doc.contains("profiles ||--o{ projects : \"user_id (cascade)\""),
            "{doc}"
        );
        assert!(
            doc.contains("profiles |o--o{ conversations : \"approved_by (set null)\""),
            "{doc}"
        );
        assert!(doc.contains("uuid id PK"), "{doc}");
    }
}
