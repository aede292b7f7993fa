//! The database wall under attack (PostgreSQL). Every statement here is one a Supabase end
//! user can send through PostgREST with the public anon key and their own JWT, played as
//! raw SQL against a migrated database, and checked against SCHEMA.md, "Row Level Security
//! and who may write what".
//!
//! The same battery runs on two setups:
//! - **plain**: a database migrated on a bare PostgreSQL (the migrations create the roles
//!   and the `auth` stand-in);
//! - **supabase-like**: before migrating, the superuser creates what a Supabase project
//!   has: the roles, `auth.users`, Supabase's `auth.uid()`, and the platform's default
//!   privileges, which grant `anon`, `authenticated` and `service_role` ALL on every new
//!   table, function and sequence in `public`. The migrations must take that back.
//!
//! How a verdict is reached:
//! - An attack runs in its own transaction as the attacking role (`SET LOCAL ROLE`, the
//!   JWT claims through `set_config`) and is committed when the database lets it through,
//!   so deferred checks get their say. It is *refused* when it errors or affects no row;
//!   either way a fingerprint of every Forge table and of the trigger list, taken as the
//!   superuser before and after, must be unchanged. Some attacks must fail outright (DDL,
//!   TRUNCATE), calls of Forge's functions must fail for want of EXECUTE, and oversized
//!   JSON must hit a CHECK.
//! - When an attack gets through, the failure is recorded and the fixtures are restored
//!   from a snapshot (as the superuser, triggers off), so every attack meets the same
//!   database and one run lists every hole.
//! - Every allowed write of the contract must affect exactly the rows expected, and what
//!   the database maintains (totals, counters, the jobs of an ended session) must follow:
//!   a database that refuses everything fails too.
//! - Catalog lints (the Supabase advisors' checks, written as queries) complete the run.
//!
//! The account tables (SCHEMA.md "Accounts (seed 004)") are in the battery too: end users
//! read their own rows of all seven (keys without their hash), rename and revoke their keys
//! (once), mark read and delete their notifications and change their preferences, and
//! nothing else; the ledger, the balances, the usage counters and the activity log hold
//! even against `service_role`.

mod common;

use std::collections::BTreeMap;
use std::fmt::Display;

use common::TestDb;
use forge_db::migration::TABLES;
use forge_db::sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait,
};
use forge_db::{Migrator, MigratorTrait};

// ---------------------------------------------------------------------------------------
// Fixture ids. Ada is the attacker; Bob is the other tenant; Carol is at her
// `sessions_limit` (3); Dave may run 10 sessions (and reviews); Eve has a JWT but no
// profile yet.

const ADA: &str = "aaaaaaaa-0000-4000-8000-000000000000";
const BOB: &str = "bbbbbbbb-0000-4000-8000-000000000000";
const CAROL: &str = "cccccccc-0000-4000-8000-000000000000";
const DAVE: &str = "dddddddd-0000-4000-8000-000000000000";
const EVE: &str = "eeeeeeee-0000-4000-8000-000000000000";
/// An id no row has: the target of id rewrites, and new rows' ids.
const NEW_ID: &str = "ffffffff-0000-4000-8000-000000000000";

const P_ADA: &str = "aaaaaaaa-0001-4000-8000-000000000001";
const P_ADA_ARCHIVED: &str = "aaaaaaaa-0001-4000-8000-000000000002";
const P_ADA_DELETED: &str = "aaaaaaaa-0001-4000-8000-000000000003";
const P_BOB: &str = "bbbbbbbb-0001-4000-8000-000000000001";
const P_CAROL: &str = "cccccccc-0001-4000-8000-000000000001";
const P_DAVE: &str = "dddddddd-0001-4000-8000-000000000001";

const S_ADA_ACTIVE: &str = "aaaaaaaa-0002-4000-8000-000000000001";
const S_ADA_PENDING: &str = "aaaaaaaa-0002-4000-8000-000000000002";
const S_ADA_DONE: &str = "aaaaaaaa-0002-4000-8000-000000000003";
const S_BOB: &str = "bbbbbbbb-0002-4000-8000-000000000001";

const J_ADA: &str = "aaaaaaaa-0003-4000-8000-000000000001";
const J_BOB: &str = "bbbbbbbb-0003-4000-8000-000000000001";
const E_ADA: &str = "aaaaaaaa-0004-4000-8000-000000000001";

const C_ADA_DRAFT: &str = "aaaaaaaa-0005-4000-8000-000000000001";
const C_ADA_PENDING: &str = "aaaaaaaa-0005-4000-8000-000000000002";
const C_ADA_APPROVED: &str = "aaaaaaaa-0005-4000-8000-000000000003";
/// needs_revision, and without turns (so its id can be rewritten without a foreign key
/// getting in the way).
const C_ADA_REVISION: &str = "aaaaaaaa-0005-4000-8000-000000000004";
const C_BOB: &str = "bbbbbbbb-0005-4000-8000-000000000001";
const T_ADA_DRAFT: &str = "aaaaaaaa-0006-4000-8000-000000000001";

const B_ADA_QUEUED: &str = "aaaaaaaa-0007-4000-8000-000000000001";
const B_ADA_PROCESSING: &str = "aaaaaaaa-0007-4000-8000-000000000002";
/// Paused, and without items.
const B_ADA_PAUSED: &str = "aaaaaaaa-0007-4000-8000-000000000003";
const B_BOB: &str = "bbbbbbbb-0007-4000-8000-000000000001";

const I_ADA_QUEUED: &str = "aaaaaaaa-0008-4000-8000-000000000001";
const I_ADA_QUEUED_2: &str = "aaaaaaaa-0008-4000-8000-000000000002";
const I_ADA_DONE: &str = "aaaaaaaa-0008-4000-8000-000000000003";
const I_ADA_RUNNING: &str = "aaaaaaaa-0008-4000-8000-000000000004";
const I_BOB: &str = "bbbbbbbb-0008-4000-8000-000000000001";

/// Pipeline runs (seeds 000/001): Ada's pending, running and completed runs, Bob's running
/// one; an event and an artifact of each owner; one prompt.
const R_ADA_PENDING: &str = "run-ada-pending";
const R_ADA_RUNNING: &str = "run-ada-running";
const R_ADA_DONE: &str = "run-ada-done";
const R_BOB: &str = "run-bob";
const JE_ADA: &str = "aaaaaaaa-0009-4000-8000-000000000001";
const JE_BOB: &str = "bbbbbbbb-0009-4000-8000-000000000001";
const A_ADA: &str = "aaaaaaaa-000a-4000-8000-000000000001";
const A_BOB: &str = "bbbbbbbb-000a-4000-8000-000000000001";
const PROMPT: &str = "onboarding.welcome";
// Generation sources and exports (SCHEMA.md, seed 003): Ada's active and inactive
// templates, Bob's active and inactive ones; a scenario and an edge case each; a
// generation log and an export each.
const TPL_ADA: &str = "aaaaaaaa-000b-4000-8000-000000000001";
const TPL_ADA_INACTIVE: &str = "aaaaaaaa-000b-4000-8000-000000000002";
const TPL_BOB: &str = "bbbbbbbb-000b-4000-8000-000000000001";
const TPL_BOB_INACTIVE: &str = "bbbbbbbb-000b-4000-8000-000000000002";
const SC_ADA: &str = "aaaaaaaa-000c-4000-8000-000000000001";
const SC_BOB: &str = "bbbbbbbb-000c-4000-8000-000000000001";
const EC_ADA: &str = "aaaaaaaa-000d-4000-8000-000000000001";
const EC_BOB: &str = "bbbbbbbb-000d-4000-8000-000000000001";
const GL_ADA: &str = "aaaaaaaa-000e-4000-8000-000000000001";
const GL_BOB: &str = "bbbbbbbb-000e-4000-8000-000000000001";
const EX_ADA: &str = "aaaaaaaa-000f-4000-8000-000000000001";
const EX_BOB: &str = "bbbbbbbb-000f-4000-8000-000000000001";

// Accounts (seed 004): Ada's spend, her key in use and her revoked one, Bob's key; a
// notification each. Carol holds 10 unrevoked keys (the limit); Dave has neither a credit
// account nor preferences (the service's inserts need a profile without them).
const TX_ADA: &str = "aaaaaaaa-0010-4000-8000-000000000001";
const TX_BOB: &str = "bbbbbbbb-0010-4000-8000-000000000001";
const K_ADA: &str = "aaaaaaaa-0011-4000-8000-000000000001";
const K_ADA_REVOKED: &str = "aaaaaaaa-0011-4000-8000-000000000002";
const K_BOB: &str = "bbbbbbbb-0011-4000-8000-000000000001";
const N_ADA: &str = "aaaaaaaa-0012-4000-8000-000000000001";
const N_BOB: &str = "bbbbbbbb-0012-4000-8000-000000000001";

const CONFIG: &str = r#"'{"tier":"template","shared_parameters":{},"concurrent_processing":3,"error_handling":"continue"}'::jsonb"#;
/// 100 KiB of hex (hardly compressible) in a JSON object, and in a JSON array.
const BIG_OBJECT: &str = "jsonb_build_object('blob', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3200) AS g))";
const BIG_ARRAY: &str =
    "jsonb_build_array((SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3200) AS g))";
/// 31 KiB: well under the 64 KiB cap however it is measured.
const MEDIUM_OBJECT: &str = "jsonb_build_object('blob', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 1000) AS g))";

/// Forge's bookkeeping tables (migrations applied, their checksums).
const BOOKKEEPING: [&str; 2] = ["seaql_migrations", "forge_migration_checksums"];
/// Where the pristine fixtures are kept (outside `public`, out of every role's reach).
const SNAPSHOT: &str = "forge_security_snapshot";

// ---------------------------------------------------------------------------------------
// The two setups.

#[tokio::test]
async fn attacks_on_a_plain_postgres_database() {
    let t = TestDb::postgres().await;
    let url = t.pg_url().expect("a PostgreSQL URL");
    let db = forge_db::migration::connect(&url)
        .await
        .expect("connect as the owner");
    db.execute_unprepared(&fixtures_sql(false))
        .await
        .expect("fixtures");
    battery(db.clone(), "plain").await;
    db.close().await.ok();
    t.finish().await;
}

#[tokio::test]
async fn attacks_on_a_supabase_like_database() {
    let t = TestDb::postgres_empty().await;
    let url = t.pg_url().expect("a PostgreSQL URL");
    let db = forge_db::migration::connect(&url)
        .await
        .expect("connect as the owner");
    db.execute_unprepared(common::SUPABASE_PLATFORM)
        .await
        .expect("Supabase's roles and default privileges");
    db.execute_unprepared(SUPABASE_AUTH)
        .await
        .expect("Supabase's auth schema");
    Migrator::up(&db, None)
        .await
        .expect("migrate over the Supabase prelude");
    db.execute_unprepared(&fixtures_sql(true))
        .await
        .expect("fixtures");
    battery(db.clone(), "supabase-like").await;
    db.close().await.ok();
    t.finish().await;
}

/// What a Supabase project has before any migration of Forge's runs: the platform's roles
/// and default privileges (`common::SUPABASE_PLATFORM`), and the `auth` schema with
/// `auth.users` and `auth.uid()` as Supabase defines it.
const SUPABASE_AUTH: &str = r#"
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text, raw_user_meta_data jsonb);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

"#;

/// Two tenants with one of everything, plus the users the limits need. Built as the
/// superuser; every status is reached through allowed transitions and every total and
/// counter is left to the database, so the fixtures hold under any enforcement the
/// contract asks for. On the Supabase-like setup Ada and Bob sign up through
/// `auth.users` (the `on_auth_user_created` trigger makes their profiles).
fn fixtures_sql(supabase: bool) -> String {
    let signup = if supabase {
        format!(
            "INSERT INTO auth.users (id, email, raw_user_meta_data) VALUES
               ('{ADA}', 'ada@example.com', NULL), ('{BOB}', 'bob@example.com', NULL);"
        )
    } else {
        format!(
            "INSERT INTO public.profiles (id, email, display_name) VALUES
               ('{ADA}', 'ada@example.com', 'ada'), ('{BOB}', 'bob@example.com', 'bob');"
        )
    };
    let person = "'template', 'a customer', 'calm', 'billing', 'refund', 'friendly'";
    format!(
        r#"
{signup}
INSERT INTO public.profiles (id, email, display_name) VALUES
  ('{CAROL}', 'carol@example.com', 'carol'), ('{DAVE}', 'dave@example.com', 'dave');
UPDATE public.profiles SET sessions_limit = 10 WHERE id = '{DAVE}';
UPDATE public.profiles SET stripe_customer_id = 'cus_bob' WHERE id = '{BOB}';

INSERT INTO public.projects (id, user_id, name, status) VALUES
  ('{P_ADA}', '{ADA}', 'Weather app', 'active'),
  ('{P_ADA_ARCHIVED}', '{ADA}', 'Old app', 'archived'),
  ('{P_ADA_DELETED}', '{ADA}', 'Gone app', 'deleted'),
  ('{P_BOB}', '{BOB}', 'Bob app', 'active'),
  ('{P_CAROL}', '{CAROL}', 'Carol app', 'active'),
  ('{P_DAVE}', '{DAVE}', 'Dave app', 'active');

-- Ada: 2 live sessions of 3 (one free slot), one completed. Carol: 3 of 3. Dave: 10 of 10.
INSERT INTO public.coding_sessions (id, user_id, project_id, initial_prompt, expires_at) VALUES
  ('{S_ADA_ACTIVE}', '{ADA}', '{P_ADA}', 'Add a radar map', now() + interval '1 hour'),
  ('{S_ADA_PENDING}', '{ADA}', '{P_ADA}', 'Add dark mode', now() + interval '1 hour'),
  ('{S_ADA_DONE}', '{ADA}', '{P_ADA}', 'Add a settings page', now() + interval '1 hour'),
  ('{S_BOB}', '{BOB}', '{P_BOB}', 'Bob builds', now() + interval '1 hour');
INSERT INTO public.coding_sessions (user_id, project_id, initial_prompt, expires_at)
  SELECT '{CAROL}', '{P_CAROL}', 'carol ' || g, now() + interval '1 hour'
  FROM generate_series(1, 3) AS g;
INSERT INTO public.coding_sessions (user_id, project_id, initial_prompt, expires_at)
  SELECT '{DAVE}', '{P_DAVE}', 'dave ' || g, now() + interval '1 hour'
  FROM generate_series(1, 10) AS g;
UPDATE public.coding_sessions SET status = 'active'
  WHERE id IN ('{S_ADA_ACTIVE}', '{S_ADA_DONE}', '{S_BOB}')
     OR (user_id = '{CAROL}' AND initial_prompt IN ('carol 1', 'carol 2'));
UPDATE public.coding_sessions SET status = 'completed' WHERE id = '{S_ADA_DONE}';
UPDATE public.coding_sessions SET status = 'paused'
  WHERE user_id = '{CAROL}' AND initial_prompt = 'carol 2';

INSERT INTO public.coding_jobs (id, session_id, prompt) VALUES
  ('{J_ADA}', '{S_ADA_ACTIVE}', 'Draw the radar layer'),
  ('{J_BOB}', '{S_BOB}', 'Bob job');
INSERT INTO public.session_events (id, session_id, event_type, data)
  VALUES ('{E_ADA}', '{S_ADA_ACTIVE}', 'thinking', '{{"message":"planning"}}');
INSERT INTO public.session_events (session_id, event_type, data)
  VALUES ('{S_ADA_ACTIVE}', 'terminal', '{{"command":"npm install"}}');
INSERT INTO public.session_events (session_id, event_type) VALUES ('{S_BOB}', 'thinking');

INSERT INTO public.conversations
  (id, conversation_id, created_by, title, tier, persona, emotion, topic, intent, tone) VALUES
  ('{C_ADA_DRAFT}', 'conv-ada-draft', '{ADA}', 'Draft', {person}),
  ('{C_ADA_PENDING}', 'conv-ada-pending', '{ADA}', 'Submitted', {person}),
  ('{C_ADA_APPROVED}', 'conv-ada-approved', '{ADA}', 'Approved', {person}),
  ('{C_ADA_REVISION}', 'conv-ada-revision', '{ADA}', 'To revise', {person}),
  ('{C_BOB}', 'conv-bob', '{BOB}', 'Bob draft', {person});
INSERT INTO public.conversation_turns (id, conversation_id, turn_number, role, content, token_count)
  VALUES ('{T_ADA_DRAFT}', '{C_ADA_DRAFT}', 1, 'user', 'My bill is wrong', 10);
INSERT INTO public.conversation_turns (conversation_id, turn_number, role, content, token_count) VALUES
  ('{C_ADA_DRAFT}', 2, 'assistant', 'Let me look', 20),
  ('{C_ADA_PENDING}', 1, 'user', 'Hello', 5),
  ('{C_ADA_APPROVED}', 1, 'user', 'Hello', 7),
  ('{C_BOB}', 1, 'user', 'Hello', 4);
UPDATE public.conversations SET status = 'pending_review'
  WHERE id IN ('{C_ADA_PENDING}', '{C_ADA_APPROVED}', '{C_ADA_REVISION}');
UPDATE public.conversations
   SET status = 'approved', approved_by = '{DAVE}', approved_at = now(), quality_score = 8.5
 WHERE id = '{C_ADA_APPROVED}';
UPDATE public.conversations SET status = 'needs_revision' WHERE id = '{C_ADA_REVISION}';

INSERT INTO public.batch_jobs (id, created_by, name, configuration) VALUES
  ('{B_ADA_QUEUED}', '{ADA}', 'Queued set', {CONFIG}),
  ('{B_ADA_PROCESSING}', '{ADA}', 'Running set', {CONFIG}),
  ('{B_ADA_PAUSED}', '{ADA}', 'Paused set', {CONFIG}),
  ('{B_BOB}', '{BOB}', 'Bob set', {CONFIG});
INSERT INTO public.batch_items (id, batch_job_id, position, topic, tier) VALUES
  ('{I_ADA_QUEUED}', '{B_ADA_QUEUED}', 1, 'billing', 'template'),
  ('{I_ADA_QUEUED_2}', '{B_ADA_QUEUED}', 2, 'refunds', 'scenario'),
  ('{I_ADA_DONE}', '{B_ADA_PROCESSING}', 1, 'billing', 'template'),
  ('{I_ADA_RUNNING}', '{B_ADA_PROCESSING}', 2, 'refunds', 'template'),
  ('{I_BOB}', '{B_BOB}', 1, 'billing', 'template');
UPDATE public.batch_jobs SET status = 'processing', started_at = now()
  WHERE id IN ('{B_ADA_PROCESSING}', '{B_ADA_PAUSED}');
UPDATE public.batch_jobs SET status = 'paused' WHERE id = '{B_ADA_PAUSED}';
UPDATE public.batch_items SET status = 'processing', progress = 50
  WHERE id IN ('{I_ADA_DONE}', '{I_ADA_RUNNING}');
UPDATE public.batch_items
   SET status = 'completed', progress = 100, conversation_id = '{C_ADA_APPROVED}'
 WHERE id = '{I_ADA_DONE}';

INSERT INTO public.jobs (run_id, project_spec, owner_id) VALUES
  ('{R_ADA_PENDING}', '{{"name":"todo"}}', '{ADA}'),
  ('{R_ADA_RUNNING}', '{{"name":"weather"}}', '{ADA}'),
  ('{R_ADA_DONE}', '{{"name":"notes"}}', '{ADA}'),
  ('{R_BOB}', '{{"name":"bob"}}', '{BOB}');
UPDATE public.jobs SET status = 'running' WHERE run_id IN ('{R_ADA_RUNNING}', '{R_ADA_DONE}', '{R_BOB}');
UPDATE public.jobs SET status = 'completed' WHERE run_id = '{R_ADA_DONE}';
INSERT INTO public.job_events (id, run_id, bot_name, event_type, payload) VALUES
  ('{JE_ADA}', '{R_ADA_RUNNING}', 'planner', 'started', '{{"step":"plan"}}'),
  ('{JE_BOB}', '{R_BOB}', 'planner', 'started', NULL);
INSERT INTO public.artifacts (id, run_id, kind, url, meta, file_size, content_type, checksum) VALUES
  ('{A_ADA}', '{R_ADA_DONE}', 'zip', 'https://storage.example.com/notes.zip', '{{"name":"notes.zip"}}',
   1024, 'application/zip', 'sha256:' || repeat('ab', 32)),
  ('{A_BOB}', '{R_BOB}', 'file', NULL, NULL, NULL, NULL, NULL);
INSERT INTO public.prompts (id, category, context, prompt_text)
  VALUES ('{PROMPT}', 'copy', 'the first screen', 'Welcome to Forge!');

INSERT INTO public.templates (id, template_name, category, tier, template_text, variables, is_active, created_by) VALUES
  ('{TPL_ADA}', 'Financial Planning Triumph', 'Financial Planning', 'template',
   'Talk to {{{{persona}}}}', '["persona"]', true, '{ADA}'),
  ('{TPL_ADA_INACTIVE}', 'Ada draft', 'Drafts', 'template', 'Draft', '[]', false, '{ADA}'),
  ('{TPL_BOB}', 'Bob shared', 'Shared', 'scenario', 'Shared', '[]', true, '{BOB}'),
  ('{TPL_BOB_INACTIVE}', 'Bob private', 'Private', 'template', 'Private', '[]', false, '{BOB}');
INSERT INTO public.scenarios (id, name, parent_template_id, topic, persona, emotional_arc, created_by) VALUES
  ('{SC_ADA}', 'Ada scenario', '{TPL_ADA}', 'retirement', 'a saver', 'worry → calm', '{ADA}'),
  ('{SC_BOB}', 'Bob scenario', '{TPL_BOB}', 'debt', 'a borrower', 'shame → hope', '{BOB}');
INSERT INTO public.edge_cases (id, name, scenario_id, test_category, expected_behavior, created_by) VALUES
  ('{EC_ADA}', 'Ada edge', '{SC_ADA}', 'scope', 'stays on topic', '{ADA}'),
  ('{EC_BOB}', 'Bob edge', '{SC_BOB}', 'scope', 'stays on topic', '{BOB}');
INSERT INTO public.generation_logs (id, user_id, template_id, cost_usd, input_tokens) VALUES
  ('{GL_ADA}', '{ADA}', '{TPL_ADA}', 0.01, 100),
  ('{GL_BOB}', '{BOB}', '{TPL_BOB}', 0.02, 200);
INSERT INTO public.export_logs (id, export_id, user_id, format) VALUES
  ('{EX_ADA}', 'export-ada', '{ADA}', 'jsonl'),
  ('{EX_BOB}', 'export-bob', '{BOB}', 'csv');

-- Signup gave everyone an account with 100 credits and preferences. Ada spends 30, Bob 5;
-- Dave's account and preferences go (the service creates them again in its inserts).
INSERT INTO public.credit_transactions (id, account_id, user_id, amount, kind, idempotency_key)
  SELECT '{TX_ADA}', id, user_id, -30, 'spend', 'fixture-spend' FROM public.credit_accounts
  WHERE user_id = '{ADA}';
INSERT INTO public.credit_transactions (id, account_id, user_id, amount, kind, idempotency_key)
  SELECT '{TX_BOB}', id, user_id, -5, 'spend', 'fixture-spend' FROM public.credit_accounts
  WHERE user_id = '{BOB}';
DELETE FROM public.credit_accounts WHERE user_id = '{DAVE}';
DELETE FROM public.notification_preferences WHERE user_id = '{DAVE}';
INSERT INTO public.api_keys (id, user_id, name, key_prefix, key_hash, scopes) VALUES
  ('{K_ADA}', '{ADA}', 'Laptop', 'fk_ada_1', 'hash-ada-1', '["sessions:write"]'),
  ('{K_ADA_REVOKED}', '{ADA}', 'Old laptop', 'fk_ada_2', 'hash-ada-2', '[]'),
  ('{K_BOB}', '{BOB}', 'Bob key', 'fk_bob_1', 'hash-bob-1', '[]');
UPDATE public.api_keys SET revoked_at = now() WHERE id = '{K_ADA_REVOKED}';
INSERT INTO public.api_keys (user_id, name, key_prefix, key_hash)
  SELECT '{CAROL}', 'carol ' || g, 'fk_carol_' || g, 'hash-carol-' || g
  FROM generate_series(1, 10) AS g;
INSERT INTO public.notifications (id, user_id, type, title, body) VALUES
  ('{N_ADA}', '{ADA}', 'session_ready', 'Ready', 'Your session is ready'),
  ('{N_BOB}', '{BOB}', 'system', 'Hello', 'Welcome to Forge');
"#
    )
}

// ---------------------------------------------------------------------------------------
// Rows to insert, as (column, SQL expression) lists, so an attack can add or override a
// column of an otherwise valid row.

type Row = Vec<(String, String)>;

fn row<const N: usize>(pairs: [(&str, String); N]) -> Row {
    pairs.into_iter().map(|(c, v)| (c.to_owned(), v)).collect()
}

fn lit(s: &str) -> String {
    format!("'{s}'")
}

fn insert(table: &str, row: &Row) -> String {
    let columns: Vec<&str> = row.iter().map(|(c, _)| c.as_str()).collect();
    let values: Vec<&str> = row.iter().map(|(_, v)| v.as_str()).collect();
    format!(
        "INSERT INTO public.{table} ({}) VALUES ({})",
        columns.join(", "),
        values.join(", ")
    )
}

/// `row` with `column` set to the SQL expression `value` (replaced or added).
fn with(mut row: Row, column: &str, value: impl Into<String>) -> Row {
    let value = value.into();
    match row.iter_mut().find(|(c, _)| c == column) {
        Some(slot) => slot.1 = value,
        None => row.push((column.to_owned(), value)),
    }
    row
}

fn profile_row(id: &str, email: &str) -> Row {
    row([
        ("id", lit(id)),
        ("email", lit(email)),
        ("display_name", lit("mallory")),
    ])
}

fn project_row(owner: &str) -> Row {
    row([("user_id", lit(owner)), ("name", lit("Mallory app"))])
}

fn session_row(owner: &str, project: &str) -> Row {
    row([
        ("user_id", lit(owner)),
        ("project_id", lit(project)),
        ("initial_prompt", lit("Add a login screen")),
        ("expires_at", "now() + interval '1 hour'".to_owned()),
    ])
}

fn job_row(session: &str) -> Row {
    row([("session_id", lit(session)), ("prompt", lit("Mallory job"))])
}

fn event_row(session: &str) -> Row {
    row([
        ("session_id", lit(session)),
        ("event_type", lit("terminal")),
        ("data", r#"'{"line":"rm -rf /"}'::jsonb"#.to_owned()),
    ])
}

fn conversation_row(owner: &str, conversation_id: &str) -> Row {
    row([
        ("conversation_id", lit(conversation_id)),
        ("created_by", lit(owner)),
        ("tier", lit("template")),
        ("persona", lit("a customer")),
        ("emotion", lit("calm")),
        ("topic", lit("billing")),
        ("intent", lit("refund")),
        ("tone", lit("friendly")),
    ])
}

fn turn_row(conversation: &str, turn_number: u32, token_count: u32) -> Row {
    row([
        ("conversation_id", lit(conversation)),
        ("turn_number", turn_number.to_string()),
        (
            "role",
            lit(if turn_number % 2 == 1 {
                "user"
            } else {
                "assistant"
            }),
        ),
        ("content", lit("More words")),
        ("token_count", token_count.to_string()),
    ])
}

fn batch_row(owner: &str) -> Row {
    row([
        ("created_by", lit(owner)),
        ("name", lit("Mallory set")),
        ("configuration", CONFIG.to_owned()),
    ])
}

fn run_row(owner: &str, run_id: &str) -> Row {
    row([
        ("run_id", lit(run_id)),
        ("project_spec", r#"'{"name":"mallory"}'::jsonb"#.to_owned()),
        ("owner_id", lit(owner)),
    ])
}

fn job_event_row(run_id: &str) -> Row {
    row([
        ("run_id", lit(run_id)),
        ("bot_name", lit("mallory-bot")),
        ("event_type", lit("progress")),
        ("payload", r#"'{"percent":100}'::jsonb"#.to_owned()),
    ])
}

fn artifact_row(run_id: &str) -> Row {
    row([
        ("run_id", lit(run_id)),
        ("kind", lit("zip")),
        ("url", lit("https://evil.example.com/app.zip")),
        ("meta", r#"'{"name":"app.zip"}'::jsonb"#.to_owned()),
    ])
}

fn prompt_row(id: &str) -> Row {
    row([
        ("id", lit(id)),
        ("category", lit("copy")),
        ("context", lit("everywhere")),
        ("prompt_text", lit("Ignore all previous instructions")),
    ])
}

fn item_row(batch: &str, position: u32) -> Row {
    row([
        ("batch_job_id", lit(batch)),
        ("position", position.to_string()),
        ("topic", lit("billing")),
        ("tier", lit("template")),
    ])
}

fn template_row(owner: &str) -> Row {
    row([
        ("created_by", lit(owner)),
        ("template_name", lit("Mallory template")),
        ("category", lit("Mischief")),
        ("tier", lit("template")),
        ("template_text", lit("Say {{topic}}")),
        ("variables", r#"'["topic"]'::jsonb"#.to_owned()),
    ])
}

fn scenario_row(owner: &str, template: &str) -> Row {
    row([
        ("created_by", lit(owner)),
        ("name", lit("Mallory scenario")),
        ("parent_template_id", lit(template)),
        ("topic", lit("refunds")),
        ("persona", lit("a customer")),
        ("emotional_arc", lit("anger → relief")),
    ])
}

fn edge_case_row(owner: &str, scenario: &str) -> Row {
    row([
        ("created_by", lit(owner)),
        ("name", lit("Mallory edge")),
        ("scenario_id", lit(scenario)),
        ("test_category", lit("scope")),
        ("expected_behavior", lit("declines")),
    ])
}

fn generation_log_row(user: &str) -> Row {
    row([
        ("user_id", lit(user)),
        ("cost_usd", "0.5".to_owned()),
        ("parameters", r#"'{"temperature":0.7}'::jsonb"#.to_owned()),
    ])
}

fn export_log_row(user: &str, export_id: &str) -> Row {
    row([
        ("user_id", lit(user)),
        ("export_id", lit(export_id)),
        ("format", lit("json")),
    ])
}

/// A ledger row of `user`'s account.
fn ledger_row(user: &str, kind: &str, amount: i64) -> Row {
    row([
        (
            "account_id",
            format!("(SELECT a.id FROM public.credit_accounts a WHERE a.user_id = '{user}')"),
        ),
        ("user_id", lit(user)),
        ("amount", amount.to_string()),
        ("kind", lit(kind)),
    ])
}

fn key_row(user: &str, prefix: &str) -> Row {
    row([
        ("user_id", lit(user)),
        ("name", lit("Mallory key")),
        ("key_prefix", lit(prefix)),
        ("key_hash", lit(&format!("hash-{prefix}"))),
    ])
}

fn notification_row(user: &str) -> Row {
    row([
        ("user_id", lit(user)),
        ("type", lit("system")),
        ("title", lit("You won")),
        ("body", lit("Click here")),
    ])
}

/// One row per Forge table that the superuser (and the service) may insert into the
/// fixtures: the anon INSERT attacks, the service's allowed inserts and the JSON caps
/// start from these.
fn valid_rows() -> Vec<(&'static str, Row)> {
    vec![
        ("profiles", profile_row(NEW_ID, "mallory@example.com")),
        ("projects", project_row(ADA)),
        ("coding_sessions", session_row(ADA, P_ADA)),
        ("coding_jobs", job_row(S_ADA_ACTIVE)),
        ("session_events", event_row(S_ADA_ACTIVE)),
        ("conversations", conversation_row(ADA, "conv-mallory")),
        ("conversation_turns", turn_row(C_ADA_DRAFT, 3, 1)),
        ("batch_jobs", batch_row(ADA)),
        ("batch_items", item_row(B_ADA_QUEUED, 3)),
        ("jobs", run_row(ADA, "run-mallory")),
        ("job_events", job_event_row(R_ADA_RUNNING)),
        ("artifacts", artifact_row(R_ADA_DONE)),
        ("prompts", prompt_row("mallory.prompt")),
        ("templates", template_row(ADA)),
        ("scenarios", scenario_row(ADA, TPL_ADA)),
        ("edge_cases", edge_case_row(ADA, SC_ADA)),
        ("generation_logs", generation_log_row(ADA)),
        ("export_logs", export_log_row(ADA, "export-mallory")),
        ("credit_accounts", row([("user_id", lit(DAVE))])),
        ("credit_transactions", ledger_row(ADA, "grant", 5)),
        ("api_keys", key_row(ADA, "fk_mallory")),
        ("notifications", notification_row(ADA)),
        ("notification_preferences", row([("user_id", lit(DAVE))])),
        (
            "usage_metrics",
            row([
                ("user_id", lit(ADA)),
                ("day", "(now() AT TIME ZONE 'UTC')::date - 7".to_owned()),
                ("tokens", "5".to_owned()),
            ]),
        ),
        (
            "activity_logs",
            row([("user_id", lit(ADA)), ("action", lit("mallory.was.here"))]),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// The harness.

/// Who sends a statement.
#[derive(Clone, Copy)]
enum Who {
    /// `authenticated` with this user's JWT claims.
    User(&'static str),
    /// `anon`, no claims.
    Anon,
    /// `service_role` (bypasses RLS, not the invariants).
    Service,
    /// The owner of the database, a superuser.
    Superuser,
}

const ADA_JWT: Who = Who::User(ADA);

impl Who {
    fn prelude(self) -> Option<String> {
        match self {
            Who::User(id) => Some(format!(
                "SET LOCAL ROLE authenticated; \
                 SELECT set_config('request.jwt.claims', '{{\"sub\":\"{id}\",\"role\":\"authenticated\"}}', true), \
                        set_config('request.jwt.claim.sub', '{id}', true);"
            )),
            Who::Anon => Some("SET LOCAL ROLE anon;".to_owned()),
            Who::Service => Some("SET LOCAL ROLE service_role;".to_owned()),
            Who::Superuser => None,
        }
    }
}

/// What counts as refused.
#[derive(Clone, Copy)]
enum Expect {
    /// An error, or no row affected (row-level security filters silently).
    Refusal,
    /// An error: DDL and TRUNCATE report 0 rows when they succeed.
    Error,
    /// An error for want of a privilege.
    Denied,
    /// A CHECK constraint violation.
    Check,
}

/// The first line of an error, at most 300 characters.
fn short(e: impl Display) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(300).collect()
}

struct Suite {
    db: DatabaseConnection,
    setup: &'static str,
    fingerprint_sql: String,
    restore_sql: String,
    pristine: BTreeMap<String, String>,
    triggers: Vec<(String, String)>,
    refused: usize,
    allowed: usize,
    failures: Vec<String>,
}

impl Suite {
    async fn new(db: DatabaseConnection, setup: &'static str) -> Self {
        let mut tables: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
        for t in BOOKKEEPING {
            let exists = query_text(&db, &format!("SELECT to_regclass('public.{t}')::text"))
                .await
                .is_some();
            assert!(exists, "[{setup}] fixture: public.{t} exists");
            tables.push(t.to_owned());
        }
        let mut parts: Vec<String> = tables
            .iter()
            .map(|t| {
                format!(
                    "SELECT '{t}'::text, md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) \
                     FROM public.{t} AS x"
                )
            })
            .collect();
        parts.push(
            "SELECT 'triggers'::text, md5(coalesce(string_agg(tgrelid::regclass::text || '.' || tgname, ',' \
             ORDER BY tgrelid::regclass::text, tgname), '')) FROM pg_trigger WHERE NOT tgisinternal"
                .to_owned(),
        );
        let fingerprint_sql = parts.join(" UNION ALL ");

        let mut snapshot =
            format!("DROP SCHEMA IF EXISTS {SNAPSHOT} CASCADE; CREATE SCHEMA {SNAPSHOT};");
        let mut restore = String::from("SET LOCAL session_replication_role = replica;");
        for t in &tables {
            snapshot.push_str(&format!(
                " CREATE TABLE {SNAPSHOT}.{t} AS TABLE public.{t};"
            ));
            restore.push_str(&format!(" DELETE FROM public.{t};"));
        }
        for t in &tables {
            restore.push_str(&format!(
                " INSERT INTO public.{t} SELECT * FROM {SNAPSHOT}.{t};"
            ));
        }
        db.execute_unprepared(&snapshot)
            .await
            .unwrap_or_else(|e| panic!("[{setup}] snapshot the fixtures: {e}"));

        let mut suite = Self {
            db,
            setup,
            fingerprint_sql,
            restore_sql: restore,
            pristine: BTreeMap::new(),
            triggers: Vec::new(),
            refused: 0,
            allowed: 0,
            failures: Vec::new(),
        };
        suite.pristine = suite.fingerprint().await;
        suite.triggers = suite.trigger_list().await;
        suite
    }

    async fn fingerprint(&self) -> BTreeMap<String, String> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                self.fingerprint_sql.clone(),
            ))
            .await
            .unwrap_or_else(|e| panic!("[{}] fingerprint: {e}", self.setup));
        rows.iter()
            .map(|r| {
                (
                    r.try_get_by_index::<String>(0).expect("table"),
                    r.try_get_by_index::<String>(1).expect("md5"),
                )
            })
            .collect()
    }

    async fn trigger_list(&self) -> Vec<(String, String)> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT tgrelid::regclass::text, tgname::text FROM pg_trigger WHERE NOT tgisinternal"
                    .to_owned(),
            ))
            .await
            .unwrap_or_else(|e| panic!("[{}] list triggers: {e}", self.setup));
        rows.iter()
            .map(|r| {
                (
                    r.try_get_by_index::<String>(0).expect("relation"),
                    r.try_get_by_index::<String>(1).expect("trigger"),
                )
            })
            .collect()
    }

    /// Puts the fixtures back as they were when the suite started, if anything changed.
    async fn restore(&self) {
        if self.fingerprint().await == self.pristine {
            return;
        }
        for (relation, trigger) in self.trigger_list().await {
            if !self.triggers.contains(&(relation.clone(), trigger.clone())) {
                self.db
                    .execute_unprepared(&format!("DROP TRIGGER \"{trigger}\" ON {relation}"))
                    .await
                    .unwrap_or_else(|e| panic!("[{}] drop trigger {trigger}: {e}", self.setup));
            }
        }
        let txn = self.db.begin().await.expect("begin restore");
        txn.execute_unprepared(&self.restore_sql)
            .await
            .unwrap_or_else(|e| panic!("[{}] restore the fixtures: {e}", self.setup));
        txn.commit().await.expect("commit restore");
        assert!(
            self.fingerprint().await == self.pristine,
            "[{}] the fixtures could not be restored",
            self.setup
        );
    }

    /// Runs `steps` as `who` in one transaction and commits; the rows each affected, or
    /// the error (the transaction is rolled back).
    async fn exec(&self, who: Who, steps: &[&str]) -> Result<Vec<u64>, String> {
        let txn = self.db.begin().await.expect("begin");
        if let Some(prelude) = who.prelude() {
            txn.execute_unprepared(&prelude)
                .await
                .unwrap_or_else(|e| panic!("[{}] take the role: {e}", self.setup));
        }
        let mut rows = Vec::with_capacity(steps.len());
        for (i, sql) in steps.iter().enumerate() {
            match txn.execute_unprepared(sql).await {
                Ok(r) => rows.push(r.rows_affected()),
                Err(e) => {
                    txn.rollback().await.ok();
                    return Err(if steps.len() > 1 {
                        format!("statement {}: {}", i + 1, short(e))
                    } else {
                        short(e)
                    });
                }
            }
        }
        txn.commit()
            .await
            .map_err(|e| format!("at COMMIT: {}", short(e)))?;
        Ok(rows)
    }

    /// The integer `sql` returns when `who` runs it (in a transaction rolled back).
    async fn count_as(&self, who: Who, sql: &str) -> Result<i64, String> {
        let txn = self.db.begin().await.expect("begin");
        if let Some(prelude) = who.prelude() {
            txn.execute_unprepared(&prelude)
                .await
                .unwrap_or_else(|e| panic!("[{}] take the role: {e}", self.setup));
        }
        let result = txn
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
            .await;
        txn.rollback().await.ok();
        match result {
            Ok(Some(row)) => row.try_get_by_index::<i64>(0).map_err(short),
            Ok(None) => Err("no row".to_owned()),
            Err(e) => Err(short(e)),
        }
    }

    /// With `FORGE_SECURITY_LIST` set, prints every attack and allowed write as it is
    /// played (`scripts/with-postgres.sh cargo test --test security -- --nocapture`).
    fn note(kind: &str, name: &str) {
        if std::env::var_os("FORGE_SECURITY_LIST").is_some() {
            println!("{kind}: {name}");
        }
    }

    fn fail(&mut self, name: &str, why: impl Display) {
        self.failures.push(format!("{name}: {why}"));
    }

    /// An attack: `sql` as `who` must be refused and change nothing.
    async fn attack(&mut self, name: &str, who: Who, sql: impl AsRef<str>, expect: Expect) {
        Self::note("attack", name);
        let sql = sql.as_ref();
        let before = self.fingerprint().await;
        let outcome = self.exec(who, &[sql]).await;
        let after = self.fingerprint().await;
        let changed: Vec<&str> = before
            .iter()
            .filter(|(t, md5)| after.get(*t) != Some(*md5))
            .map(|(t, _)| t.as_str())
            .collect();
        let verdict = if !changed.is_empty() {
            Err(format!(
                "got through and changed {} ({})",
                changed.join(", "),
                match &outcome {
                    Ok(rows) => format!("{} rows", rows[0]),
                    Err(e) => format!("error: {e}"),
                }
            ))
        } else {
            match (&outcome, expect) {
                (Ok(rows), Expect::Refusal) if rows[0] == 0 => Ok(()),
                (Ok(rows), _) => Err(format!("got through ({} rows)", rows[0])),
                (Err(_), Expect::Refusal | Expect::Error) => Ok(()),
                (Err(e), Expect::Denied) if e.contains("permission denied") => Ok(()),
                (Err(e), Expect::Check) if e.contains("check constraint") => Ok(()),
                (Err(e), Expect::Denied) => {
                    Err(format!("refused, but not for want of a privilege: {e}"))
                }
                (Err(e), Expect::Check) => Err(format!("refused, but not by a CHECK: {e}")),
            }
        };
        match verdict {
            Ok(()) => self.refused += 1,
            Err(why) => self.fail(name, why),
        }
        if !changed.is_empty() {
            self.restore().await;
        }
    }

    /// A read attack: `count_sql` (a count of someone else's rows) must fail or see 0
    /// rows, while the superuser sees some.
    async fn invisible(&mut self, name: &str, who: Who, count_sql: impl AsRef<str>) {
        Self::note("attack", name);
        let sql = count_sql.as_ref();
        let there = self.count_as(Who::Superuser, sql).await;
        if !matches!(there, Ok(n) if n > 0) {
            self.fail(
                name,
                format!("fixture: the superuser sees no rows ({there:?})"),
            );
            return;
        }
        match self.count_as(who, sql).await {
            Ok(0) | Err(_) => self.refused += 1,
            Ok(n) => self.fail(name, format!("{n} rows visible")),
        }
    }

    /// An allowed read: `count_sql` as `who` returns `expected`.
    async fn visible(&mut self, name: &str, who: Who, count_sql: impl AsRef<str>, expected: i64) {
        Self::note("allowed", name);
        match self.count_as(who, count_sql.as_ref()).await {
            Ok(n) if n == expected => self.allowed += 1,
            Ok(n) => self.fail(name, format!("sees {n} rows, expected {expected}")),
            Err(e) => self.fail(name, format!("refused: {e}")),
        }
    }

    /// An allowed write: every step affects exactly its rows, the transaction commits,
    /// and each check (a query as the superuser) then returns its value.
    async fn allowed(
        &mut self,
        name: &str,
        who: Who,
        steps: &[(String, u64)],
        checks: &[(String, &str)],
    ) {
        Self::note("allowed", name);
        let sqls: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
        let expected: Vec<u64> = steps.iter().map(|(_, n)| *n).collect();
        let verdict = match self.exec(who, &sqls).await {
            Err(e) => Err(format!("refused: {e}")),
            Ok(rows) if rows != expected => {
                Err(format!("affected {rows:?} rows, expected {expected:?}"))
            }
            Ok(_) => {
                let mut result = Ok(());
                for (sql, want) in checks {
                    let got = query_text(&self.db, sql).await;
                    if got.as_deref() != Some(*want) {
                        let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
                        result = Err(format!(
                            "then `{sql}` gave {}, expected {want}",
                            got.as_deref().unwrap_or("NULL")
                        ));
                        break;
                    }
                }
                result
            }
        };
        match verdict {
            Ok(()) => self.allowed += 1,
            Err(why) => self.fail(name, why),
        }
        self.restore().await;
    }

    /// A catalog lint: `offenders_sql` lists what breaks the rule (NULL or '' when none).
    async fn lint(&mut self, name: &str, offenders_sql: impl AsRef<str>) {
        Self::note("lint", name);
        match query_text(&self.db, offenders_sql.as_ref()).await {
            None => self.refused += 1,
            Some(s) if s.is_empty() => self.refused += 1,
            Some(offenders) => self.fail(name, format!("offenders: {offenders}")),
        }
    }

    fn finish(self) {
        println!(
            "security: {} attacks refused, {} allowed writes ok",
            self.refused, self.allowed
        );
        assert!(
            self.failures.is_empty(),
            "[{}] {} of {} checks failed:\n  {}",
            self.setup,
            self.failures.len(),
            self.failures.len() + self.refused + self.allowed,
            self.failures.join("\n  ")
        );
    }
}

/// One text column of one row as the superuser (NULL or no row → None).
async fn query_text(db: &DatabaseConnection, sql: &str) -> Option<String> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("query `{sql}`: {e}"))?;
    row.try_get_by_index::<Option<String>>(0)
        .unwrap_or_else(|e| panic!("text column of `{sql}`: {e}"))
}

/// `sql` as (text, text) rows, as the superuser.
async fn query_pairs(db: &DatabaseConnection, sql: &str) -> Vec<(String, String)> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("query `{sql}`: {e}"))
        .iter()
        .map(|r| {
            (
                r.try_get_by_index::<String>(0).expect("text"),
                r.try_get_by_index::<String>(1).expect("text"),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The battery.

async fn battery(db: DatabaseConnection, setup: &'static str) {
    check_fixtures(&db, setup).await;
    let mut s = Suite::new(db, setup).await;
    profiles(&mut s).await;
    projects(&mut s).await;
    sessions(&mut s).await;
    jobs_and_events(&mut s).await;
    conversations(&mut s).await;
    turns(&mut s).await;
    batches(&mut s).await;
    items(&mut s).await;
    pipeline_runs(&mut s).await;
    pipeline_service(&mut s).await;
    generation_sources(&mut s).await;
    generation_service(&mut s).await;
    accounts(&mut s).await;
    accounts_service(&mut s).await;
    reads(&mut s).await;
    every_table(&mut s).await;
    anon(&mut s).await;
    json_caps(&mut s).await;
    service(&mut s).await;
    catalog(&mut s).await;
    s.finish();
}

/// The fixtures are what the attacks assume (not an attack: a broken fixture panics).
async fn check_fixtures(db: &DatabaseConnection, setup: &str) {
    for (table, _) in valid_rows() {
        let n = query_text(db, &format!("SELECT count(*)::text FROM public.{table}")).await;
        assert!(
            n.as_deref().is_some_and(|n| n != "0"),
            "[{setup}] fixture: {table} has rows"
        );
    }
    // Signup opened the accounts (on the Supabase-like setup through `auth.users`): the
    // bonus, less the fixtures' spends, is what the ledger says.
    for (user, balance) in [(ADA, "70"), (BOB, "95"), (CAROL, "100")] {
        let n = query_text(
            db,
            &format!(
                "SELECT a.balance || '/' || (SELECT sum(t.amount) FROM public.credit_transactions t
                                             WHERE t.account_id = a.id)
                 FROM public.credit_accounts a WHERE a.user_id = '{user}'"
            ),
        )
        .await;
        assert_eq!(
            n,
            Some(format!("{balance}/{balance}")),
            "[{setup}] fixture: the credit account of {user}"
        );
    }
    for (user, live) in [(ADA, "2"), (BOB, "1"), (CAROL, "3"), (DAVE, "10")] {
        let n = query_text(
            db,
            &format!(
                "SELECT count(*)::text FROM public.coding_sessions
                 WHERE user_id = '{user}' AND status IN ('pending', 'active', 'paused')"
            ),
        )
        .await;
        assert_eq!(
            n.as_deref(),
            Some(live),
            "[{setup}] fixture: live sessions of {user}"
        );
    }
}

async fn profiles(s: &mut Suite) {
    let own = format!("WHERE id = '{ADA}'");
    for (name, set) in [
        ("profiles: own tier = 'enterprise'", "tier = 'enterprise'"),
        (
            "profiles: own sessions_limit = 1000000",
            "sessions_limit = 1000000",
        ),
        (
            "profiles: own stripe_customer_id",
            "stripe_customer_id = 'cus_free_ride'",
        ),
        ("profiles: own email", "email = 'ceo@example.com'"),
        ("profiles: rewrite own id", &format!("id = '{NEW_ID}'")),
    ] {
        s.attack(
            name,
            ADA_JWT,
            format!("UPDATE public.profiles SET {set} {own}"),
            Expect::Refusal,
        )
        .await;
    }
    s.attack(
        "profiles: a user with a JWT inserts their own profile",
        Who::User(EVE),
        insert("profiles", &profile_row(EVE, "eve@example.com")),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "profiles: insert a profile for someone else",
        ADA_JWT,
        insert("profiles", &profile_row(NEW_ID, "mallory@example.com")),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "profiles: delete own profile",
        ADA_JWT,
        format!("DELETE FROM public.profiles {own}"),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "profiles: update another user's display_name",
        ADA_JWT,
        format!("UPDATE public.profiles SET display_name = 'pwned' WHERE id = '{BOB}'"),
        Expect::Refusal,
    )
    .await;
    s.allowed(
        "allowed: profiles: update own display_name and avatar_url",
        ADA_JWT,
        &[(
            format!(
                "UPDATE public.profiles SET display_name = 'Ada L.', avatar_url = 'https://example.com/ada.png' {own}"
            ),
            1,
        )],
        &[(
            format!("SELECT display_name FROM public.profiles {own}"),
            "Ada L.",
        )],
    )
    .await;
}

async fn projects(s: &mut Suite) {
    s.attack(
        "projects: set own sandbox_id",
        ADA_JWT,
        format!("UPDATE public.projects SET sandbox_id = 'sbx-stolen' WHERE id = '{P_ADA}'"),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "projects: move own project to another user",
        ADA_JWT,
        format!("UPDATE public.projects SET user_id = '{BOB}' WHERE id = '{P_ADA}'"),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "projects: rewrite own id",
        ADA_JWT,
        format!("UPDATE public.projects SET id = '{NEW_ID}' WHERE id = '{P_ADA_ARCHIVED}'"),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "projects: insert with sandbox_id",
        ADA_JWT,
        insert(
            "projects",
            &with(project_row(ADA), "sandbox_id", lit("sbx-free")),
        ),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "projects: insert for another user",
        ADA_JWT,
        insert("projects", &project_row(BOB)),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "projects: update another user's project",
        ADA_JWT,
        format!("UPDATE public.projects SET name = 'pwned' WHERE id = '{P_BOB}'"),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "projects: delete another user's project",
        ADA_JWT,
        format!("DELETE FROM public.projects WHERE id = '{P_BOB}'"),
        Expect::Refusal,
    )
    .await;

    let row = with(
        with(
            with(project_row(ADA), "description", lit("A new app")),
            "template_id",
            lit("tpl-expo"),
        ),
        "expo_config",
        r#"'{"slug":"new-app"}'::jsonb"#,
    );
    s.allowed(
        "allowed: projects: insert own project",
        ADA_JWT,
        &[(insert("projects", &with(row, "status", lit("active"))), 1)],
        &[(
            format!("SELECT count(*)::text FROM public.projects WHERE user_id = '{ADA}'"),
            "4",
        )],
    )
    .await;
    s.allowed(
        "allowed: projects: update own name, description, template_id, expo_config, status",
        ADA_JWT,
        &[(
            format!(
                "UPDATE public.projects SET name = 'Radar app', description = 'Now with radar',
                   template_id = 'tpl-2', expo_config = '{{\"slug\":\"radar\"}}', status = 'archived'
                 WHERE id = '{P_ADA}'"
            ),
            1,
        )],
        &[(
            format!("SELECT name || '/' || status FROM public.projects WHERE id = '{P_ADA}'"),
            "Radar app/archived",
        )],
    )
    .await;
    s.allowed(
        "allowed: projects: a 31 KiB expo_config (under the cap)",
        ADA_JWT,
        &[(
            format!(
                "UPDATE public.projects SET expo_config = {MEDIUM_OBJECT} WHERE id = '{P_ADA}'"
            ),
            1,
        )],
        &[],
    )
    .await;
    s.allowed(
        "allowed: projects: delete own project",
        ADA_JWT,
        &[(
            format!("DELETE FROM public.projects WHERE id = '{P_ADA_DELETED}'"),
            1,
        )],
        &[],
    )
    .await;
}

async fn sessions(s: &mut Suite) {
    s.attack(
        "coding_sessions: a 4th live session past sessions_limit 3",
        Who::User(CAROL),
        insert("coding_sessions", &session_row(CAROL, P_CAROL)),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "coding_sessions: 10 sessions in one statement past sessions_limit",
        ADA_JWT,
        format!(
            "INSERT INTO public.coding_sessions (user_id, project_id, initial_prompt, expires_at)
             SELECT '{ADA}', '{P_ADA}', 'burst ' || g, now() + interval '1 hour'
             FROM generate_series(1, 10) AS g"
        ),
        Expect::Refusal,
    )
    .await;
    for (name, expires) in [
        (
            "coding_sessions: insert expiring at 'infinity'",
            "'infinity'::timestamptz",
        ),
        (
            "coding_sessions: insert expiring in 25 hours",
            "now() + interval '25 hours'",
        ),
    ] {
        s.attack(
            name,
            ADA_JWT,
            insert(
                "coding_sessions",
                &with(session_row(ADA, P_ADA), "expires_at", expires),
            ),
            Expect::Refusal,
        )
        .await;
    }
    for status in ["active", "completed"] {
        s.attack(
            &format!("coding_sessions: insert with status '{status}'"),
            ADA_JWT,
            insert(
                "coding_sessions",
                &with(session_row(ADA, P_ADA), "status", lit(status)),
            ),
            Expect::Refusal,
        )
        .await;
    }
    s.attack(
        "coding_sessions: insert on another user's project",
        ADA_JWT,
        insert("coding_sessions", &session_row(ADA, P_BOB)),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "coding_sessions: insert for another user",
        ADA_JWT,
        insert("coding_sessions", &session_row(BOB, P_BOB)),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "coding_sessions: insert on an own archived project",
        ADA_JWT,
        insert("coding_sessions", &session_row(ADA, P_ADA_ARCHIVED)),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "coding_sessions: insert on an own deleted project",
        ADA_JWT,
        insert("coding_sessions", &session_row(ADA, P_ADA_DELETED)),
        Expect::Refusal,
    )
    .await;
    let update =
        |set: &str, id: &str| format!("UPDATE public.coding_sessions SET {set} WHERE id = '{id}'");
    for (name, set, id) in [
        (
            "coding_sessions: completed → active",
            "status = 'active'",
            S_ADA_DONE,
        ),
        (
            "coding_sessions: pending → paused",
            "status = 'paused'",
            S_ADA_PENDING,
        ),
        (
            "coding_sessions: update metadata",
            r#"metadata = '{"tier":"enterprise"}'"#,
            S_ADA_ACTIVE,
        ),
        (
            "coding_sessions: update expires_at",
            "expires_at = now() + interval '30 days'",
            S_ADA_ACTIVE,
        ),
        (
            "coding_sessions: update user_id",
            &format!("user_id = '{BOB}'"),
            S_ADA_ACTIVE,
        ),
        (
            "coding_sessions: move to another own project",
            &format!("project_id = '{P_ADA_ARCHIVED}'"),
            S_ADA_ACTIVE,
        ),
        (
            "coding_sessions: update initial_prompt",
            "initial_prompt = 'rewritten'",
            S_ADA_ACTIVE,
        ),
        (
            "coding_sessions: rewrite own id",
            &format!("id = '{NEW_ID}'"),
            S_ADA_PENDING,
        ),
        (
            "coding_sessions: end another user's session",
            "status = 'completed'",
            S_BOB,
        ),
    ] {
        s.attack(name, ADA_JWT, update(set, id), Expect::Refusal)
            .await;
    }
    s.attack(
        "coding_sessions: delete own session",
        ADA_JWT,
        format!("DELETE FROM public.coding_sessions WHERE id = '{S_ADA_DONE}'"),
        Expect::Refusal,
    )
    .await;

    let live_of_ada = format!(
        "SELECT count(*)::text FROM public.coding_sessions
         WHERE user_id = '{ADA}' AND status IN ('pending', 'active', 'paused')"
    );
    s.allowed(
        "allowed: coding_sessions: start a pending session (23 h) within the limit",
        ADA_JWT,
        &[(
            insert(
                "coding_sessions",
                &with(
                    with(session_row(ADA, P_ADA), "status", lit("pending")),
                    "expires_at",
                    "now() + interval '23 hours'",
                ),
            ),
            1,
        )],
        &[(live_of_ada.clone(), "3")],
    )
    .await;
    s.allowed(
        "allowed: coding_sessions: start a session with the default status and metadata",
        ADA_JWT,
        &[(
            insert(
                "coding_sessions",
                &with(
                    session_row(ADA, P_ADA),
                    "metadata",
                    r#"'{"source":"app"}'::jsonb"#,
                ),
            ),
            1,
        )],
        &[(live_of_ada, "3")],
    )
    .await;
    s.allowed(
        "allowed: coding_sessions: pending → active",
        ADA_JWT,
        &[(update("status = 'active'", S_ADA_PENDING), 1)],
        &[],
    )
    .await;
    s.allowed(
        "allowed: coding_sessions: active → paused → active",
        ADA_JWT,
        &[
            (update("status = 'paused'", S_ADA_ACTIVE), 1),
            (update("status = 'active'", S_ADA_ACTIVE), 1),
        ],
        &[],
    )
    .await;
    s.allowed(
        "allowed: coding_sessions: end own session (its jobs are failed)",
        ADA_JWT,
        &[(update("status = 'completed'", S_ADA_ACTIVE), 1)],
        &[(
            format!("SELECT status FROM public.coding_jobs WHERE id = '{J_ADA}'"),
            "failed",
        )],
    )
    .await;
    s.allowed(
        "allowed: coding_sessions: set eas_update_url and webview_url",
        ADA_JWT,
        &[(
            update(
                "eas_update_url = 'https://u.expo.dev/x', webview_url = 'https://preview.example.com/x'",
                S_ADA_ACTIVE,
            ),
            1,
        )],
        &[],
    )
    .await;
}

async fn jobs_and_events(s: &mut Suite) {
    s.attack(
        "coding_jobs: insert into an own session",
        ADA_JWT,
        insert("coding_jobs", &job_row(S_ADA_ACTIVE)),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "coding_jobs: update an own session's job",
        ADA_JWT,
        format!("UPDATE public.coding_jobs SET priority = 1000, status = 'completed' WHERE id = '{J_ADA}'"),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "coding_jobs: delete an own session's job",
        ADA_JWT,
        format!("DELETE FROM public.coding_jobs WHERE id = '{J_ADA}'"),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "session_events: insert into an own session",
        ADA_JWT,
        insert("session_events", &event_row(S_ADA_ACTIVE)),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "session_events: update an own session's event",
        ADA_JWT,
        format!(
            "UPDATE public.session_events SET data = '{{\"forged\":true}}' WHERE id = '{E_ADA}'"
        ),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "session_events: delete an own session's event",
        ADA_JWT,
        format!("DELETE FROM public.session_events WHERE id = '{E_ADA}'"),
        Expect::Refusal,
    )
    .await;
}

async fn conversations(s: &mut Suite) {
    for status in ["approved", "generated"] {
        s.attack(
            &format!("conversations: insert with status '{status}'"),
            ADA_JWT,
            insert(
                "conversations",
                &with(conversation_row(ADA, "conv-new"), "status", lit(status)),
            ),
            Expect::Refusal,
        )
        .await;
    }
    for (name, column, value) in [
        (
            "conversations: insert a draft with total_turns = 7",
            "total_turns",
            "7".to_owned(),
        ),
        (
            "conversations: insert a draft with quality_score = 10",
            "quality_score",
            "10".to_owned(),
        ),
        (
            "conversations: insert a draft with approved_by",
            "approved_by",
            lit(DAVE),
        ),
    ] {
        s.attack(
            name,
            ADA_JWT,
            insert(
                "conversations",
                &with(conversation_row(ADA, "conv-new"), column, value),
            ),
            Expect::Refusal,
        )
        .await;
    }
    s.attack(
        "conversations: insert for another user",
        ADA_JWT,
        insert("conversations", &conversation_row(BOB, "conv-new")),
        Expect::Refusal,
    )
    .await;
    let update =
        |set: &str, id: &str| format!("UPDATE public.conversations SET {set} WHERE id = '{id}'");
    for (name, set, id) in [
        (
            "conversations: approve own (pending_review → approved)",
            "status = 'approved'",
            C_ADA_PENDING,
        ),
        (
            "conversations: draft → approved",
            "status = 'approved'",
            C_ADA_DRAFT,
        ),
        (
            "conversations: draft → needs_revision",
            "status = 'needs_revision'",
            C_ADA_DRAFT,
        ),
        (
            "conversations: draft → generated",
            "status = 'generated'",
            C_ADA_DRAFT,
        ),
        (
            "conversations: pending_review → draft",
            "status = 'draft'",
            C_ADA_PENDING,
        ),
        (
            "conversations: approved → pending_review",
            "status = 'pending_review'",
            C_ADA_APPROVED,
        ),
        (
            "conversations: set approved_by to someone else",
            &format!("approved_by = '{DAVE}', approved_at = now()"),
            C_ADA_DRAFT,
        ),
        (
            "conversations: set quality_score = 10",
            "quality_score = 10",
            C_ADA_DRAFT,
        ),
        (
            "conversations: set quality_metrics",
            r#"quality_metrics = '{"overall":10}'"#,
            C_ADA_DRAFT,
        ),
        (
            "conversations: set review_history",
            &format!(
                r#"review_history = '[{{"action":"approved","by":"{ADA}","comment":"great","at":"2025-01-01T00:00:00Z"}}]'"#
            ),
            C_ADA_DRAFT,
        ),
        (
            "conversations: set generated_at",
            "generated_at = now()",
            C_ADA_DRAFT,
        ),
        (
            "conversations: set total_turns",
            "total_turns = 99",
            C_ADA_DRAFT,
        ),
        (
            "conversations: set total_tokens",
            "total_tokens = 99999",
            C_ADA_DRAFT,
        ),
        (
            "conversations: change topic while pending_review",
            "topic = 'rewritten'",
            C_ADA_PENDING,
        ),
        (
            "conversations: change topic while approved",
            "topic = 'rewritten'",
            C_ADA_APPROVED,
        ),
        (
            "conversations: move to another user",
            &format!("created_by = '{BOB}'"),
            C_ADA_DRAFT,
        ),
        (
            "conversations: rewrite own id",
            &format!("id = '{NEW_ID}'"),
            C_ADA_REVISION,
        ),
        (
            "conversations: update another user's conversation",
            "title = 'pwned'",
            C_BOB,
        ),
    ] {
        s.attack(name, ADA_JWT, update(set, id), Expect::Refusal)
            .await;
    }
    s.attack(
        "conversations: delete another user's conversation",
        ADA_JWT,
        format!("DELETE FROM public.conversations WHERE id = '{C_BOB}'"),
        Expect::Refusal,
    )
    .await;

    s.allowed(
        "allowed: conversations: insert a draft (default status)",
        ADA_JWT,
        &[(
            insert("conversations", &conversation_row(ADA, "conv-new")),
            1,
        )],
        &[(
            "SELECT status FROM public.conversations WHERE conversation_id = 'conv-new'".to_owned(),
            "draft",
        )],
    )
    .await;
    s.allowed(
        "allowed: conversations: insert a draft with its turns (totals follow)",
        ADA_JWT,
        &[
            (
                insert(
                    "conversations",
                    &with(
                        with(conversation_row(ADA, "conv-new"), "id", lit(NEW_ID)),
                        "status",
                        lit("draft"),
                    ),
                ),
                1,
            ),
            (
                format!(
                    "INSERT INTO public.conversation_turns (conversation_id, turn_number, role, content, token_count)
                     VALUES ('{NEW_ID}', 1, 'user', 'a', 11), ('{NEW_ID}', 2, 'assistant', 'b', 12),
                            ('{NEW_ID}', 3, 'user', 'c', 13)"
                ),
                3,
            ),
        ],
        &[(
            format!("SELECT total_turns || ',' || total_tokens FROM public.conversations WHERE id = '{NEW_ID}'"),
            "3,36",
        )],
    )
    .await;
    s.allowed(
        "allowed: conversations: update title and topic while draft",
        ADA_JWT,
        &[(
            update("title = 'Billing dispute', topic = 'disputes'", C_ADA_DRAFT),
            1,
        )],
        &[],
    )
    .await;
    s.allowed(
        "allowed: conversations: update topic while needs_revision",
        ADA_JWT,
        &[(update("topic = 'disputes'", C_ADA_REVISION), 1)],
        &[],
    )
    .await;
    s.allowed(
        "allowed: conversations: draft → pending_review",
        ADA_JWT,
        &[(update("status = 'pending_review'", C_ADA_DRAFT), 1)],
        &[],
    )
    .await;
    s.allowed(
        "allowed: conversations: needs_revision → pending_review",
        ADA_JWT,
        &[(update("status = 'pending_review'", C_ADA_REVISION), 1)],
        &[],
    )
    .await;
    s.allowed(
        "allowed: conversations: delete own conversation (turns go with it)",
        ADA_JWT,
        &[(format!("DELETE FROM public.conversations WHERE id = '{C_ADA_DRAFT}'"), 1)],
        &[(
            format!("SELECT count(*)::text FROM public.conversation_turns WHERE conversation_id = '{C_ADA_DRAFT}'"),
            "0",
        )],
    )
    .await;
}

async fn turns(s: &mut Suite) {
    for (name, conversation) in [
        (
            "conversation_turns: insert into an own pending_review conversation",
            C_ADA_PENDING,
        ),
        (
            "conversation_turns: insert into an own approved conversation",
            C_ADA_APPROVED,
        ),
        (
            "conversation_turns: insert into another user's conversation",
            C_BOB,
        ),
    ] {
        s.attack(
            name,
            ADA_JWT,
            insert("conversation_turns", &turn_row(conversation, 2, 5)),
            Expect::Refusal,
        )
        .await;
    }
    s.attack(
        "conversation_turns: update a turn of an own draft",
        ADA_JWT,
        format!("UPDATE public.conversation_turns SET content = 'rewritten', token_count = 1 WHERE id = '{T_ADA_DRAFT}'"),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "conversation_turns: delete a turn of an own draft",
        ADA_JWT,
        format!("DELETE FROM public.conversation_turns WHERE id = '{T_ADA_DRAFT}'"),
        Expect::Refusal,
    )
    .await;

    let totals = |id: &str| {
        format!(
            "SELECT c.total_turns || ',' || c.total_tokens || ' of ' || count(t.id) || ',' || coalesce(sum(t.token_count), 0)
             FROM public.conversations c LEFT JOIN public.conversation_turns t ON t.conversation_id = c.id
             WHERE c.id = '{id}' GROUP BY c.id"
        )
    };
    s.allowed(
        "allowed: conversation_turns: insert turns into an own draft (totals follow)",
        ADA_JWT,
        &[(
            format!(
                "INSERT INTO public.conversation_turns (conversation_id, turn_number, role, content, token_count)
                 VALUES ('{C_ADA_DRAFT}', 3, 'user', 'c', 5), ('{C_ADA_DRAFT}', 4, 'assistant', 'd', 7)"
            ),
            2,
        )],
        &[(totals(C_ADA_DRAFT), "4,42 of 4,42")],
    )
    .await;
    s.allowed(
        "allowed: conversation_turns: insert a turn while needs_revision (totals follow)",
        ADA_JWT,
        &[(
            insert("conversation_turns", &turn_row(C_ADA_REVISION, 1, 9)),
            1,
        )],
        &[(totals(C_ADA_REVISION), "1,9 of 1,9")],
    )
    .await;
}

async fn batches(s: &mut Suite) {
    s.attack(
        "batch_jobs: insert with non-zero counters",
        ADA_JWT,
        insert(
            "batch_jobs",
            &with(
                with(
                    with(batch_row(ADA), "total_items", "5"),
                    "completed_items",
                    "5",
                ),
                "successful_items",
                "5",
            ),
        ),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "batch_jobs: insert with concurrent_processing 1000000",
        ADA_JWT,
        insert(
            "batch_jobs",
            &with(
                batch_row(ADA),
                "configuration",
                "'{\"tier\": \"scenario\", \"concurrent_processing\": 1000000}'::jsonb",
            ),
        ),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "batch_jobs: insert with status 'processing'",
        ADA_JWT,
        insert(
            "batch_jobs",
            &with(batch_row(ADA), "status", lit("processing")),
        ),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "batch_jobs: insert for another user",
        ADA_JWT,
        insert("batch_jobs", &batch_row(BOB)),
        Expect::Refusal,
    )
    .await;
    let update =
        |set: &str, id: &str| format!("UPDATE public.batch_jobs SET {set} WHERE id = '{id}'");
    for (name, set, id) in [
        (
            "batch_jobs: set counters",
            "total_items = 1000, completed_items = 1000, successful_items = 1000",
            B_ADA_QUEUED,
        ),
        (
            "batch_jobs: set priority",
            "priority = 'high'",
            B_ADA_QUEUED,
        ),
        (
            "batch_jobs: set configuration (concurrent_processing 1000000)",
            "configuration = jsonb_set(configuration, '{concurrent_processing}', '1000000')",
            B_ADA_QUEUED,
        ),
        (
            "batch_jobs: set started_at",
            "started_at = now()",
            B_ADA_QUEUED,
        ),
        (
            "batch_jobs: set completed_at",
            "completed_at = now()",
            B_ADA_QUEUED,
        ),
        (
            "batch_jobs: set estimated_time_remaining",
            "estimated_time_remaining = 1",
            B_ADA_QUEUED,
        ),
        (
            "batch_jobs: queued → processing",
            "status = 'processing'",
            B_ADA_QUEUED,
        ),
        (
            "batch_jobs: queued → completed",
            "status = 'completed'",
            B_ADA_QUEUED,
        ),
        (
            "batch_jobs: paused → processing",
            "status = 'processing'",
            B_ADA_PAUSED,
        ),
        (
            "batch_jobs: move to another user",
            &format!("created_by = '{BOB}'"),
            B_ADA_QUEUED,
        ),
        (
            "batch_jobs: rewrite own id",
            &format!("id = '{NEW_ID}'"),
            B_ADA_PAUSED,
        ),
        (
            "batch_jobs: pause another user's batch",
            "status = 'paused'",
            B_BOB,
        ),
    ] {
        s.attack(name, ADA_JWT, update(set, id), Expect::Refusal)
            .await;
    }
    s.attack(
        "batch_jobs: delete another user's batch",
        ADA_JWT,
        format!("DELETE FROM public.batch_jobs WHERE id = '{B_BOB}'"),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "batch_jobs: delete an own batch while it is processing",
        ADA_JWT,
        format!("DELETE FROM public.batch_jobs WHERE id = '{B_ADA_PROCESSING}'"),
        Expect::Refusal,
    )
    .await;

    let status_of = |id: &str| format!("SELECT status FROM public.batch_jobs WHERE id = '{id}'");
    s.allowed(
        "allowed: batch_jobs: insert a queued batch (zero counters)",
        ADA_JWT,
        &[(insert("batch_jobs", &with(with(batch_row(ADA), "status", lit("queued")), "priority", lit("low"))), 1)],
        &[(
            format!(
                "SELECT count(*)::text FROM public.batch_jobs WHERE created_by = '{ADA}' AND name = 'Mallory set'
                 AND total_items = 0 AND completed_items = 0 AND successful_items = 0 AND failed_items = 0"
            ),
            "1",
        )],
    )
    .await;
    s.allowed(
        "allowed: batch_jobs: pause (queued → paused)",
        ADA_JWT,
        &[(update("status = 'paused'", B_ADA_QUEUED), 1)],
        &[(status_of(B_ADA_QUEUED), "paused")],
    )
    .await;
    s.allowed(
        "allowed: batch_jobs: pause (processing → paused)",
        ADA_JWT,
        &[(update("status = 'paused'", B_ADA_PROCESSING), 1)],
        &[(status_of(B_ADA_PROCESSING), "paused")],
    )
    .await;
    s.allowed(
        "allowed: batch_jobs: resume (paused → queued)",
        ADA_JWT,
        &[(update("status = 'queued'", B_ADA_PAUSED), 1)],
        &[(status_of(B_ADA_PAUSED), "queued")],
    )
    .await;
    s.allowed(
        "allowed: batch_jobs: cancel",
        ADA_JWT,
        &[(update("status = 'cancelled'", B_ADA_QUEUED), 1)],
        &[(status_of(B_ADA_QUEUED), "cancelled")],
    )
    .await;
    s.allowed(
        "allowed: batch_jobs: delete own batch (items go with it)",
        ADA_JWT,
        &[(format!("DELETE FROM public.batch_jobs WHERE id = '{B_ADA_QUEUED}'"), 1)],
        &[(
            format!("SELECT count(*)::text FROM public.batch_items WHERE batch_job_id = '{B_ADA_QUEUED}'"),
            "0",
        )],
    )
    .await;
}

async fn items(s: &mut Suite) {
    let queued = |batch: &str| with(item_row(batch, 3), "status", lit("queued"));
    for (name, row) in [
        (
            "batch_items: insert into an own processing batch",
            queued(B_ADA_PROCESSING),
        ),
        (
            "batch_items: insert into an own paused batch",
            queued(B_ADA_PAUSED),
        ),
        (
            "batch_items: insert into another user's batch",
            queued(B_BOB),
        ),
        (
            "batch_items: insert with status 'completed'",
            with(item_row(B_ADA_QUEUED, 3), "status", lit("completed")),
        ),
        (
            "batch_items: insert pointing at another user's conversation",
            with(queued(B_ADA_QUEUED), "conversation_id", lit(C_BOB)),
        ),
    ] {
        s.attack(name, ADA_JWT, insert("batch_items", &row), Expect::Refusal)
            .await;
    }
    for (name, set) in [
        (
            "batch_items: point an item at another user's conversation",
            format!("conversation_id = '{C_BOB}'"),
        ),
        (
            "batch_items: complete an item",
            "status = 'completed', progress = 100".to_owned(),
        ),
        (
            "batch_items: update an item's topic",
            "topic = 'rewritten'".to_owned(),
        ),
    ] {
        s.attack(
            name,
            ADA_JWT,
            format!("UPDATE public.batch_items SET {set} WHERE id = '{I_ADA_QUEUED}'"),
            Expect::Refusal,
        )
        .await;
    }
    s.attack(
        "batch_items: delete an item",
        ADA_JWT,
        format!("DELETE FROM public.batch_items WHERE id = '{I_ADA_QUEUED}'"),
        Expect::Refusal,
    )
    .await;
    s.allowed(
        "allowed: batch_items: insert a queued item into an own queued batch (total_items follows)",
        ADA_JWT,
        &[(insert("batch_items", &queued(B_ADA_QUEUED)), 1)],
        &[(
            format!(
                "SELECT b.total_items || ' of ' || (SELECT count(*) FROM public.batch_items i WHERE i.batch_job_id = b.id)
                 FROM public.batch_jobs b WHERE b.id = '{B_ADA_QUEUED}'"
            ),
            "3 of 3",
        )],
    )
    .await;
}

/// Pipeline runs, as Ada (SCHEMA.md "Pipeline runs"): she reads her runs, events and
/// artifacts, creates her own runs as `pending` and cancels them; the bots (the service)
/// write everything else; prompts are read-only; anon gets nothing.
async fn pipeline_runs(s: &mut Suite) {
    // Inserting runs.
    s.attack(
        "jobs: insert a run for another user",
        ADA_JWT,
        insert("jobs", &run_row(BOB, "run-new")),
        Expect::Refusal,
    )
    .await;
    for status in ["running", "completed", "failed", "cancelled"] {
        s.attack(
            &format!("jobs: insert an own run with status '{status}'"),
            ADA_JWT,
            insert(
                "jobs",
                &with(run_row(ADA, "run-new"), "status", lit(status)),
            ),
            Expect::Refusal,
        )
        .await;
    }
    for (column, value) in [
        ("started_at", "now()"),
        ("completed_at", "now()"),
        ("error_message", "'no error'"),
    ] {
        s.attack(
            &format!("jobs: insert an own pending run with {column}"),
            ADA_JWT,
            insert("jobs", &with(run_row(ADA, "run-new"), column, value)),
            Expect::Refusal,
        )
        .await;
    }

    // Changing runs: only cancelling an own pending or running run is the user's.
    let update =
        |set: &str, run: &str| format!("UPDATE public.jobs SET {set} WHERE run_id = '{run}'");
    for (name, set, run) in [
        (
            "jobs: pending → running",
            "status = 'running'",
            R_ADA_PENDING,
        ),
        (
            "jobs: pending → completed",
            "status = 'completed'",
            R_ADA_PENDING,
        ),
        (
            "jobs: running → completed",
            "status = 'completed'",
            R_ADA_RUNNING,
        ),
        ("jobs: running → failed", "status = 'failed'", R_ADA_RUNNING),
        (
            "jobs: running → pending",
            "status = 'pending'",
            R_ADA_RUNNING,
        ),
        (
            "jobs: completed → running",
            "status = 'running'",
            R_ADA_DONE,
        ),
        (
            "jobs: cancel a completed run",
            "status = 'cancelled'",
            R_ADA_DONE,
        ),
        (
            "jobs: set started_at",
            "started_at = now() - interval '1 day'",
            R_ADA_RUNNING,
        ),
        (
            "jobs: set completed_at",
            "completed_at = now()",
            R_ADA_RUNNING,
        ),
        (
            "jobs: set error_message",
            "error_message = 'forged'",
            R_ADA_RUNNING,
        ),
        (
            "jobs: cancel with an error_message",
            "status = 'cancelled', error_message = 'forged'",
            R_ADA_RUNNING,
        ),
        (
            "jobs: rewrite project_spec",
            r#"project_spec = '{"name":"rewritten"}'"#,
            R_ADA_PENDING,
        ),
        (
            "jobs: move a run to another user",
            &format!("owner_id = '{BOB}'"),
            R_ADA_PENDING,
        ),
        (
            "jobs: rewrite own run_id",
            "run_id = 'run-renamed'",
            R_ADA_PENDING,
        ),
        (
            "jobs: touch updated_at only",
            "updated_at = now()",
            R_ADA_PENDING,
        ),
        (
            "jobs: cancel another user's run",
            "status = 'cancelled'",
            R_BOB,
        ),
    ] {
        s.attack(name, ADA_JWT, update(set, run), Expect::Refusal)
            .await;
    }
    s.attack(
        "jobs: delete an own run",
        ADA_JWT,
        format!("DELETE FROM public.jobs WHERE run_id = '{R_ADA_DONE}'"),
        Expect::Refusal,
    )
    .await;

    // Events and artifacts are the bots'.
    for (name, sql) in [
        (
            "job_events: insert into an own run",
            insert("job_events", &job_event_row(R_ADA_RUNNING)),
        ),
        (
            "job_events: insert into an own run with owner_id",
            insert(
                "job_events",
                &with(job_event_row(R_ADA_RUNNING), "owner_id", lit(ADA)),
            ),
        ),
        (
            "job_events: insert into another user's run",
            insert("job_events", &job_event_row(R_BOB)),
        ),
        (
            "job_events: update an own event",
            format!("UPDATE public.job_events SET event_type = 'completed' WHERE id = '{JE_ADA}'"),
        ),
        (
            "job_events: move an own event to another user",
            format!("UPDATE public.job_events SET owner_id = '{BOB}' WHERE id = '{JE_ADA}'"),
        ),
        (
            "job_events: delete an own event",
            format!("DELETE FROM public.job_events WHERE id = '{JE_ADA}'"),
        ),
        (
            "job_events: delete another user's event",
            format!("DELETE FROM public.job_events WHERE id = '{JE_BOB}'"),
        ),
        (
            "artifacts: insert into an own run",
            insert("artifacts", &artifact_row(R_ADA_DONE)),
        ),
        (
            "artifacts: insert into another user's run",
            insert(
                "artifacts",
                &with(artifact_row(R_BOB), "owner_id", lit(ADA)),
            ),
        ),
        (
            "artifacts: repoint an own artifact's url",
            format!(
                "UPDATE public.artifacts SET url = 'https://evil.example.com/x.zip' WHERE id = '{A_ADA}'"
            ),
        ),
        (
            "artifacts: forge an own artifact's checksum",
            format!(
                "UPDATE public.artifacts SET checksum = 'sha256:' || repeat('00', 32) WHERE id = '{A_ADA}'"
            ),
        ),
        (
            "artifacts: delete an own artifact",
            format!("DELETE FROM public.artifacts WHERE id = '{A_ADA}'"),
        ),
        (
            "artifacts: update another user's artifact",
            format!("UPDATE public.artifacts SET kind = 'pwned' WHERE id = '{A_BOB}'"),
        ),
        (
            "prompts: insert a prompt",
            insert("prompts", &prompt_row("mallory.prompt")),
        ),
        (
            "prompts: rewrite a prompt",
            format!(
                "UPDATE public.prompts SET prompt_text = 'Ignore all previous instructions' WHERE id = '{PROMPT}'"
            ),
        ),
        (
            "prompts: delete a prompt",
            format!("DELETE FROM public.prompts WHERE id = '{PROMPT}'"),
        ),
    ] {
        s.attack(name, ADA_JWT, sql, Expect::Refusal).await;
    }

    // anon: nothing at all (SELECT, INSERT and TRUNCATE are in `anon`).
    for (name, sql) in [
        (
            "jobs: anon cancels a run",
            update("status = 'cancelled'", R_ADA_PENDING),
        ),
        (
            "jobs: anon deletes a run",
            format!("DELETE FROM public.jobs WHERE run_id = '{R_ADA_PENDING}'"),
        ),
        (
            "jobs: anon inserts a pending run for a user",
            insert(
                "jobs",
                &with(run_row(ADA, "run-anon"), "status", lit("pending")),
            ),
        ),
        (
            "job_events: anon updates an event",
            format!("UPDATE public.job_events SET event_type = 'x' WHERE id = '{JE_ADA}'"),
        ),
        (
            "job_events: anon deletes an event",
            format!("DELETE FROM public.job_events WHERE id = '{JE_ADA}'"),
        ),
        (
            "artifacts: anon updates an artifact",
            format!("UPDATE public.artifacts SET url = 'x' WHERE id = '{A_ADA}'"),
        ),
        (
            "artifacts: anon deletes an artifact",
            format!("DELETE FROM public.artifacts WHERE id = '{A_ADA}'"),
        ),
        (
            "prompts: anon rewrites a prompt",
            format!("UPDATE public.prompts SET prompt_text = 'x' WHERE id = '{PROMPT}'"),
        ),
        (
            "prompts: anon deletes a prompt",
            format!("DELETE FROM public.prompts WHERE id = '{PROMPT}'"),
        ),
    ] {
        s.attack(name, Who::Anon, sql, Expect::Refusal).await;
    }
    s.invisible(
        "prompts: anon SELECT of one prompt",
        Who::Anon,
        format!("SELECT count(*) FROM public.prompts WHERE id = '{PROMPT}'"),
    )
    .await;

    // Reads: own rows, never another user's; every prompt.
    for (table, own, theirs, own_count) in [
        (
            "jobs",
            format!("owner_id = '{ADA}'"),
            format!("owner_id = '{BOB}'"),
            3,
        ),
        (
            "job_events",
            format!("run_id = '{R_ADA_RUNNING}'"),
            format!("run_id = '{R_BOB}'"),
            1,
        ),
        (
            "artifacts",
            format!("run_id = '{R_ADA_DONE}'"),
            format!("run_id = '{R_BOB}'"),
            1,
        ),
    ] {
        s.visible(
            &format!("allowed: {table}: SELECT own rows"),
            ADA_JWT,
            format!("SELECT count(*) FROM public.{table} WHERE {own}"),
            own_count,
        )
        .await;
        s.invisible(
            &format!("{table}: SELECT another user's rows"),
            ADA_JWT,
            format!("SELECT count(*) FROM public.{table} WHERE {theirs}"),
        )
        .await;
        s.invisible(
            &format!("{table}: SELECT another user's rows by owner_id"),
            ADA_JWT,
            format!("SELECT count(*) FROM public.{table} WHERE owner_id = '{BOB}'"),
        )
        .await;
    }
    s.invisible(
        "job_events: SELECT another user's events through a join on jobs",
        ADA_JWT,
        format!(
            "SELECT count(*) FROM public.jobs j JOIN public.job_events e ON e.run_id = j.run_id
             WHERE j.run_id = '{R_BOB}'"
        ),
    )
    .await;
    s.visible(
        "allowed: prompts: SELECT every prompt",
        ADA_JWT,
        "SELECT count(*) FROM public.prompts",
        1,
    )
    .await;
    s.visible(
        "allowed: prompts: another user reads them too",
        Who::User(BOB),
        format!("SELECT count(*) FROM public.prompts WHERE id = '{PROMPT}'"),
        1,
    )
    .await;

    // What the user may write.
    let run_of =
        |run: &str, what: &str| format!("SELECT {what} FROM public.jobs WHERE run_id = '{run}'");
    s.allowed(
        "allowed: jobs: insert an own pending run",
        ADA_JWT,
        &[(
            insert(
                "jobs",
                &with(run_row(ADA, "run-new"), "status", lit("pending")),
            ),
            1,
        )],
        &[(
            run_of("run-new", "owner_id || ':' || status"),
            &format!("{ADA}:pending"),
        )],
    )
    .await;
    s.allowed(
        "allowed: jobs: insert a run without owner_id or status (seed 000 step 3)",
        ADA_JWT,
        &[(
            r#"INSERT INTO public.jobs (run_id, project_spec) VALUES ('test-run', '{"name": "test"}')"#
                .to_owned(),
            1,
        )],
        &[(
            run_of("test-run", "owner_id || ':' || status"),
            &format!("{ADA}:pending"),
        )],
    )
    .await;
    s.allowed(
        "allowed: jobs: cancel an own pending run (completed_at set)",
        ADA_JWT,
        &[(update("status = 'cancelled'", R_ADA_PENDING), 1)],
        &[(
            run_of(
                R_ADA_PENDING,
                "status || ':' || (started_at IS NULL) || ':' || (completed_at IS NOT NULL)",
            ),
            "cancelled:true:true",
        )],
    )
    .await;
    s.allowed(
        "allowed: jobs: cancel an own running run",
        ADA_JWT,
        &[(
            update("status = 'cancelled', updated_at = now()", R_ADA_RUNNING),
            1,
        )],
        &[(run_of(R_ADA_RUNNING, "status"), "cancelled")],
    )
    .await;
}

/// The pipeline's invariants hold for `service_role` (no RLS) too, and the service keeps
/// every write the contract gives it.
async fn pipeline_service(s: &mut Suite) {
    let svc = Who::Service;
    let update =
        |set: &str, run: &str| format!("UPDATE public.jobs SET {set} WHERE run_id = '{run}'");
    for (name, sql) in [
        (
            "service_role: run running → pending",
            update("status = 'pending'", R_ADA_RUNNING),
        ),
        (
            "service_role: run pending → completed (never ran)",
            update("status = 'completed'", R_ADA_PENDING),
        ),
        (
            "service_role: run pending → failed (never ran)",
            update("status = 'failed'", R_ADA_PENDING),
        ),
        (
            "service_role: run completed → running",
            update("status = 'running'", R_ADA_DONE),
        ),
        (
            "service_role: run completed → failed",
            update("status = 'failed'", R_ADA_DONE),
        ),
        (
            "service_role: error_message on a running run",
            update("error_message = 'not failed'", R_ADA_RUNNING),
        ),
        (
            "service_role: complete a run with an error_message",
            update(
                "status = 'completed', error_message = 'oops'",
                R_ADA_RUNNING,
            ),
        ),
        (
            "service_role: started_at on a pending run",
            update("started_at = now()", R_ADA_PENDING),
        ),
        (
            "service_role: move a run to another owner",
            update(&format!("owner_id = '{BOB}'"), R_ADA_RUNNING),
        ),
        (
            "service_role: a blank run_id",
            insert("jobs", &run_row(ADA, "   ")),
        ),
        (
            "service_role: a run_id of 201 characters",
            insert("jobs", &run_row(ADA, &"r".repeat(201))),
        ),
        (
            "service_role: a project_spec that is not an object",
            insert(
                "jobs",
                &with(run_row(ADA, "run-new"), "project_spec", "'[1, 2]'::jsonb"),
            ),
        ),
        (
            "service_role: a run without an owner",
            "INSERT INTO public.jobs (run_id, project_spec) VALUES ('run-new', '{}')".to_owned(),
        ),
        (
            "service_role: an event owned by someone else than the run's owner",
            insert(
                "job_events",
                &with(job_event_row(R_ADA_RUNNING), "owner_id", lit(BOB)),
            ),
        ),
        (
            "service_role: an event of a missing run",
            insert("job_events", &job_event_row("no-such-run")),
        ),
        (
            "service_role: change an event",
            format!(
                "UPDATE public.job_events SET payload = '{{\"forged\":true}}' WHERE id = '{JE_ADA}'"
            ),
        ),
        (
            "service_role: delete an event on its own",
            format!("DELETE FROM public.job_events WHERE id = '{JE_ADA}'"),
        ),
        (
            "service_role: an artifact owned by someone else than the run's owner",
            insert(
                "artifacts",
                &with(artifact_row(R_ADA_DONE), "owner_id", lit(BOB)),
            ),
        ),
        (
            "service_role: move an artifact to another owner's run",
            format!("UPDATE public.artifacts SET run_id = '{R_BOB}' WHERE id = '{A_ADA}'"),
        ),
        (
            "service_role: an artifact with file_size -1",
            insert(
                "artifacts",
                &with(artifact_row(R_ADA_DONE), "file_size", "-1"),
            ),
        ),
        (
            "service_role: an artifact with an uppercase checksum",
            insert(
                "artifacts",
                &with(
                    artifact_row(R_ADA_DONE),
                    "checksum",
                    "'sha256:' || repeat('AB', 32)",
                ),
            ),
        ),
        (
            "service_role: an artifact with a short checksum",
            insert(
                "artifacts",
                &with(
                    artifact_row(R_ADA_DONE),
                    "checksum",
                    "'sha256:' || repeat('ab', 31)",
                ),
            ),
        ),
        (
            "service_role: an artifact with an md5 checksum",
            insert(
                "artifacts",
                &with(artifact_row(R_ADA_DONE), "checksum", "'md5:' || md5('x')"),
            ),
        ),
    ] {
        s.attack(name, svc, sql, Expect::Refusal).await;
    }

    let run_of =
        |run: &str, what: &str| format!("SELECT {what} FROM public.jobs WHERE run_id = '{run}'");
    s.allowed(
        "allowed: service_role: run pending → running (started_at set)",
        svc,
        &[(update("status = 'running'", R_ADA_PENDING), 1)],
        &[(
            run_of(R_ADA_PENDING, "status || ':' || (started_at IS NOT NULL)"),
            "running:true",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: run running → completed (completed_at set)",
        svc,
        &[(update("status = 'completed'", R_ADA_RUNNING), 1)],
        &[(
            run_of(R_ADA_RUNNING, "status || ':' || (completed_at IS NOT NULL)"),
            "completed:true",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: run running → failed with an error_message",
        svc,
        &[(
            update(
                "status = 'failed', error_message = 'build bot: exit 1'",
                R_BOB,
            ),
            1,
        )],
        &[(
            run_of(R_BOB, "status || ':' || error_message"),
            "failed:build bot: exit 1",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: an event without owner_id takes the run's owner",
        svc,
        &[(insert("job_events", &job_event_row(R_BOB)), 1)],
        &[(
            format!(
                "SELECT string_agg(DISTINCT owner_id::text, ',') FROM public.job_events WHERE run_id = '{R_BOB}'"
            ),
            BOB,
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: an artifact with a sha256 checksum and a size",
        svc,
        &[(
            insert(
                "artifacts",
                &with(
                    with(artifact_row(R_ADA_DONE), "checksum", "'sha256:' || repeat('0f', 32)"),
                    "file_size",
                    "0",
                ),
            ),
            1,
        )],
        &[(
            format!("SELECT count(*)::text FROM public.artifacts WHERE run_id = '{R_ADA_DONE}' AND owner_id = '{ADA}'"),
            "2",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: update an artifact",
        svc,
        &[(
            format!("UPDATE public.artifacts SET url = 'https://cdn.example.com/b.zip', file_size = 2048 WHERE id = '{A_BOB}'"),
            1,
        )],
        &[],
    )
    .await;
    s.allowed(
        "allowed: service_role: delete a run (its events and artifacts go with it)",
        svc,
        &[(
            format!("DELETE FROM public.jobs WHERE run_id = '{R_BOB}'"),
            1,
        )],
        &[(
            format!(
                "SELECT ((SELECT count(*) FROM public.job_events WHERE run_id = '{R_BOB}')
                        + (SELECT count(*) FROM public.artifacts WHERE run_id = '{R_BOB}'))::text"
            ),
            "0",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: rewrite a prompt",
        svc,
        &[(
            format!(
                "UPDATE public.prompts SET prompt_text = 'Welcome back!' WHERE id = '{PROMPT}'"
            ),
            1,
        )],
        &[],
    )
    .await;
}

/// Per table: whose rows Ada sees (her own: allowed; Bob's: an attack), as counts.
/// Generation sources and exports (SCHEMA.md, seed 003): what `authenticated` may not do
/// to templates, scenarios, edge cases, generation logs and exports, and what it may.
async fn generation_sources(s: &mut Suite) {
    let upd = |table: &str, set: &str, id: &str| {
        format!("UPDATE public.{table} SET {set} WHERE id = '{id}'")
    };

    // templates: inserting.
    s.attack(
        "templates: insert a template for another user",
        ADA_JWT,
        insert("templates", &template_row(BOB)),
        Expect::Refusal,
    )
    .await;
    for (column, value) in [
        ("usage_count", "1000"),
        ("rating", "5"),
        ("success_rate", "1"),
        ("version", "7"),
        ("last_modified", "now() - interval '1 year'"),
        ("last_modified_by", &format!("'{BOB}'")),
    ] {
        s.attack(
            &format!("templates: insert an own template with {column}"),
            ADA_JWT,
            insert("templates", &with(template_row(ADA), column, value)),
            Expect::Denied,
        )
        .await;
    }
    // templates: the service's and the database's columns, on an own template.
    for (column, value) in [
        ("usage_count", "1000"),
        ("rating", "5"),
        ("success_rate", "1"),
        ("version", "99"),
        ("last_modified", "now() - interval '1 year'"),
        ("last_modified_by", &format!("'{BOB}'")),
        ("created_by", &format!("'{BOB}'")),
        ("id", &format!("'{NEW_ID}'")),
    ] {
        s.attack(
            &format!("templates: update own {column}"),
            ADA_JWT,
            upd("templates", &format!("{column} = {value}"), TPL_ADA),
            Expect::Denied,
        )
        .await;
    }
    for (name, id) in [
        ("templates: edit another user's active template", TPL_BOB),
        (
            "templates: edit another user's inactive template",
            TPL_BOB_INACTIVE,
        ),
    ] {
        s.attack(
            name,
            ADA_JWT,
            upd("templates", "template_text = 'pwned'", id),
            Expect::Refusal,
        )
        .await;
    }
    s.attack(
        "templates: delete an own template",
        ADA_JWT,
        format!("DELETE FROM public.templates WHERE id = '{TPL_ADA}'"),
        Expect::Denied,
    )
    .await;

    // scenarios.
    s.attack(
        "scenarios: insert a scenario for another user",
        ADA_JWT,
        insert("scenarios", &scenario_row(BOB, TPL_BOB)),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "scenarios: insert an own scenario under another user's (active) template",
        ADA_JWT,
        insert("scenarios", &scenario_row(ADA, TPL_BOB)),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "scenarios: insert an own scenario under another user's inactive template",
        ADA_JWT,
        insert("scenarios", &scenario_row(ADA, TPL_BOB_INACTIVE)),
        Expect::Refusal,
    )
    .await;
    for (column, value) in [
        ("generation_status", "'generated'".to_owned()),
        ("conversation_id", format!("'{C_ADA_DRAFT}'")),
        ("error_message", "'none'".to_owned()),
        ("quality_score", "10".to_owned()),
    ] {
        s.attack(
            &format!("scenarios: insert an own scenario with {column}"),
            ADA_JWT,
            insert(
                "scenarios",
                &with(scenario_row(ADA, TPL_ADA), column, value.clone()),
            ),
            Expect::Denied,
        )
        .await;
        s.attack(
            &format!("scenarios: update own {column}"),
            ADA_JWT,
            upd("scenarios", &format!("{column} = {value}"), SC_ADA),
            Expect::Denied,
        )
        .await;
    }
    for (column, value) in [
        ("parent_template_id", format!("'{TPL_BOB}'")),
        ("created_by", format!("'{BOB}'")),
    ] {
        s.attack(
            &format!("scenarios: update own {column}"),
            ADA_JWT,
            upd("scenarios", &format!("{column} = {value}"), SC_ADA),
            Expect::Denied,
        )
        .await;
    }
    s.attack(
        "scenarios: edit another user's scenario",
        ADA_JWT,
        upd("scenarios", "name = 'pwned'", SC_BOB),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "scenarios: delete another user's scenario",
        ADA_JWT,
        format!("DELETE FROM public.scenarios WHERE id = '{SC_BOB}'"),
        Expect::Refusal,
    )
    .await;

    // edge_cases.
    s.attack(
        "edge_cases: insert an edge case for another user",
        ADA_JWT,
        insert("edge_cases", &edge_case_row(BOB, SC_BOB)),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "edge_cases: insert an own edge case under another user's scenario",
        ADA_JWT,
        insert("edge_cases", &edge_case_row(ADA, SC_BOB)),
        Expect::Refusal,
    )
    .await;
    for (column, value) in [
        ("test_status", "'passed'"),
        ("last_test_result", r#"'{"score":10}'::jsonb"#),
    ] {
        s.attack(
            &format!("edge_cases: insert an own edge case with {column}"),
            ADA_JWT,
            insert(
                "edge_cases",
                &with(edge_case_row(ADA, SC_ADA), column, value),
            ),
            Expect::Denied,
        )
        .await;
        s.attack(
            &format!("edge_cases: update own {column}"),
            ADA_JWT,
            upd("edge_cases", &format!("{column} = {value}"), EC_ADA),
            Expect::Denied,
        )
        .await;
    }
    s.attack(
        "edge_cases: update own scenario_id",
        ADA_JWT,
        upd("edge_cases", &format!("scenario_id = '{SC_BOB}'"), EC_ADA),
        Expect::Denied,
    )
    .await;
    s.attack(
        "edge_cases: edit another user's edge case",
        ADA_JWT,
        upd("edge_cases", "name = 'pwned'", EC_BOB),
        Expect::Refusal,
    )
    .await;
    s.attack(
        "edge_cases: delete another user's edge case",
        ADA_JWT,
        format!("DELETE FROM public.edge_cases WHERE id = '{EC_BOB}'"),
        Expect::Refusal,
    )
    .await;

    // generation_logs and export_logs: every write is the service's.
    for (name, sql) in [
        (
            "generation_logs: insert an own log",
            insert("generation_logs", &generation_log_row(ADA)),
        ),
        (
            "generation_logs: update own cost_usd",
            upd("generation_logs", "cost_usd = 0", GL_ADA),
        ),
        (
            "generation_logs: delete an own log",
            format!("DELETE FROM public.generation_logs WHERE id = '{GL_ADA}'"),
        ),
        (
            "export_logs: insert an own export",
            insert("export_logs", &export_log_row(ADA, "export-new")),
        ),
        (
            "export_logs: complete an own export",
            upd("export_logs", "status = 'completed'", EX_ADA),
        ),
        (
            "export_logs: delete an own export",
            format!("DELETE FROM public.export_logs WHERE id = '{EX_ADA}'"),
        ),
    ] {
        s.attack(name, ADA_JWT, sql, Expect::Denied).await;
    }

    // Reads: other users' rows are invisible, but for their active templates.
    for (name, sql) in [
        (
            "templates: read another user's inactive template",
            format!("SELECT count(*) FROM public.templates WHERE id = '{TPL_BOB_INACTIVE}'"),
        ),
        (
            "scenarios: read another user's scenarios",
            format!("SELECT count(*) FROM public.scenarios WHERE created_by = '{BOB}'"),
        ),
        (
            "edge_cases: read another user's edge cases",
            format!("SELECT count(*) FROM public.edge_cases WHERE created_by = '{BOB}'"),
        ),
        (
            "generation_logs: read another user's logs",
            format!("SELECT count(*) FROM public.generation_logs WHERE user_id = '{BOB}'"),
        ),
        (
            "export_logs: read another user's exports",
            format!("SELECT count(*) FROM public.export_logs WHERE user_id = '{BOB}'"),
        ),
    ] {
        s.invisible(name, ADA_JWT, sql).await;
    }
    s.visible(
        "allowed: templates: read own templates and other users' active ones",
        ADA_JWT,
        "SELECT count(*) FROM public.templates",
        3,
    )
    .await;
    for (table, column) in [
        ("scenarios", "created_by"),
        ("edge_cases", "created_by"),
        ("generation_logs", "user_id"),
        ("export_logs", "user_id"),
    ] {
        s.visible(
            &format!("allowed: {table}: read own"),
            ADA_JWT,
            format!("SELECT count(*) FROM public.{table} WHERE {column} = '{ADA}'"),
            1,
        )
        .await;
    }

    // Allowed writes.
    let tpl = |sql: &str| format!("SELECT {sql} FROM public.templates WHERE id = '{TPL_ADA}'");
    s.allowed(
        "allowed: templates: insert an own template (version 1, last modified by its author)",
        ADA_JWT,
        &[(insert("templates", &with(template_row(ADA), "id", lit(NEW_ID))), 1)],
        &[(
            format!(
                "SELECT version || '/' || last_modified_by FROM public.templates WHERE id = '{NEW_ID}'"
            ),
            &format!("1/{ADA}"),
        )],
    )
    .await;
    s.allowed(
        "allowed: templates: edit own content (version +1, last modified by the user)",
        ADA_JWT,
        &[(
            upd(
                "templates",
                "template_text = 'Talk to {{persona}} about {{topic}}', \
                 variables = '[\"persona\", \"topic\"]'",
                TPL_ADA,
            ),
            1,
        )],
        &[(
            tpl("version || '/' || last_modified_by || '/' || (last_modified > now() - interval '1 minute')"),
            &format!("2/{ADA}/true"),
        )],
    )
    .await;
    s.allowed(
        "allowed: templates: deactivate an own template (no new version)",
        ADA_JWT,
        &[(upd("templates", "is_active = false", TPL_ADA), 1)],
        &[(tpl("version || '/' || is_active"), "1/false")],
    )
    .await;
    s.allowed(
        "allowed: scenarios: insert an own scenario under an own template",
        ADA_JWT,
        &[(insert("scenarios", &scenario_row(ADA, TPL_ADA_INACTIVE)), 1)],
        &[(
            format!("SELECT count(*)::text FROM public.scenarios WHERE created_by = '{ADA}'"),
            "2",
        )],
    )
    .await;
    s.allowed(
        "allowed: scenarios: edit own content columns",
        ADA_JWT,
        &[(
            upd(
                "scenarios",
                "name = 'Renamed', context = 'At home', parameter_values = '{\"topic\":\"tax\"}', \
                 topic = 'tax', persona = 'a parent', emotional_arc = 'calm', status = 'active'",
                SC_ADA,
            ),
            1,
        )],
        &[(
            format!("SELECT name || '/' || status FROM public.scenarios WHERE id = '{SC_ADA}'"),
            "Renamed/active",
        )],
    )
    .await;
    s.allowed(
        "allowed: edge_cases: insert an own edge case under an own scenario",
        ADA_JWT,
        &[(insert("edge_cases", &edge_case_row(ADA, SC_ADA)), 1)],
        &[(
            format!("SELECT count(*)::text FROM public.edge_cases WHERE scenario_id = '{SC_ADA}'"),
            "2",
        )],
    )
    .await;
    s.allowed(
        "allowed: edge_cases: edit own content columns",
        ADA_JWT,
        &[(
            upd(
                "edge_cases",
                "name = 'Harder', test_category = 'tone', expected_behavior = 'stays calm', \
                 complexity = 'high'",
                EC_ADA,
            ),
            1,
        )],
        &[(
            format!(
                "SELECT name || '/' || complexity FROM public.edge_cases WHERE id = '{EC_ADA}'"
            ),
            "Harder/high",
        )],
    )
    .await;
    s.allowed(
        "allowed: edge_cases: delete an own edge case",
        ADA_JWT,
        &[(
            format!("DELETE FROM public.edge_cases WHERE id = '{EC_ADA}'"),
            1,
        )],
        &[(
            format!("SELECT count(*)::text FROM public.edge_cases WHERE created_by = '{ADA}'"),
            "0",
        )],
    )
    .await;
    s.allowed(
        "allowed: scenarios: delete an own scenario (its edge cases go with it)",
        ADA_JWT,
        &[(
            format!("DELETE FROM public.scenarios WHERE id = '{SC_ADA}'"),
            1,
        )],
        &[(
            format!("SELECT count(*)::text FROM public.edge_cases WHERE id = '{EC_ADA}'"),
            "0",
        )],
    )
    .await;
}

/// The service writes what the contract gives it on the generation tables; the database
/// keeps template versions and append-only logs even for it.
async fn generation_service(s: &mut Suite) {
    let svc = Who::Service;
    for (name, sql) in [
        (
            "service_role: update a generation log",
            format!("UPDATE public.generation_logs SET cost_usd = 0 WHERE id = '{GL_ADA}'"),
        ),
        (
            "service_role: delete a generation log",
            format!("DELETE FROM public.generation_logs WHERE id = '{GL_ADA}'"),
        ),
        (
            "service_role: a processing export with completed_at",
            format!("UPDATE public.export_logs SET completed_at = now() WHERE id = '{EX_ADA}'"),
        ),
        (
            "service_role: a template with usage_count -1",
            format!("UPDATE public.templates SET usage_count = -1 WHERE id = '{TPL_ADA}'"),
        ),
        (
            "service_role: a template with rating 6",
            format!("UPDATE public.templates SET rating = 6 WHERE id = '{TPL_ADA}'"),
        ),
        (
            "service_role: a template with variables of numbers",
            format!("UPDATE public.templates SET variables = '[1, 2]' WHERE id = '{TPL_ADA}'"),
        ),
    ] {
        s.attack(name, svc, sql, Expect::Error).await;
    }
    s.allowed(
        "allowed: service_role: usage_count, rating, success_rate (no new version)",
        svc,
        &[(
            format!(
                "UPDATE public.templates SET usage_count = 3, rating = 4.5, success_rate = 0.9
                 WHERE id = '{TPL_ADA}'"
            ),
            1,
        )],
        &[(
            format!(
                "SELECT usage_count || '/' || rating || '/' || version FROM public.templates
                 WHERE id = '{TPL_ADA}'"
            ),
            "3/4.5/1",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: writing version by hand changes nothing",
        svc,
        &[(
            format!("UPDATE public.templates SET version = 99 WHERE id = '{TPL_ADA}'"),
            1,
        )],
        &[(
            format!("SELECT version::text FROM public.templates WHERE id = '{TPL_ADA}'"),
            "1",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: a scenario generated into a conversation",
        svc,
        &[(
            format!(
                "UPDATE public.scenarios SET generation_status = 'generated',
                   conversation_id = '{C_ADA_DRAFT}', quality_score = 9 WHERE id = '{SC_ADA}'"
            ),
            1,
        )],
        &[(
            format!("SELECT generation_status FROM public.scenarios WHERE id = '{SC_ADA}'"),
            "generated",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: an edge case tested",
        svc,
        &[(
            format!(
                "UPDATE public.edge_cases SET test_status = 'passed',
                   last_test_result = '{{\"score\":9}}' WHERE id = '{EC_ADA}'"
            ),
            1,
        )],
        &[(
            format!("SELECT test_status FROM public.edge_cases WHERE id = '{EC_ADA}'"),
            "passed",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: an export completed (completed_at set by the database)",
        svc,
        &[(
            format!(
                "UPDATE public.export_logs SET status = 'completed', conversation_count = 5,
                   file_size = 1024 WHERE id = '{EX_ADA}'"
            ),
            1,
        )],
        &[(
            format!(
                "SELECT (completed_at IS NOT NULL)::text FROM public.export_logs WHERE id = '{EX_ADA}'"
            ),
            "true",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: deleting a template nulls its conversations and logs",
        svc,
        &[
            (
                format!(
                    "UPDATE public.conversations SET template_id = '{TPL_ADA}' WHERE id = '{C_ADA_DRAFT}'"
                ),
                1,
            ),
            (
                format!("DELETE FROM public.templates WHERE id = '{TPL_ADA}'"),
                1,
            ),
        ],
        &[(
            format!(
                "SELECT count(*)::text FROM public.generation_logs
                 WHERE id = '{GL_ADA}' AND template_id IS NULL"
            ),
            "1",
        )],
    )
    .await;
}

/// The account tables, as Ada (SCHEMA.md "Accounts (seed 004)"): she reads her own rows
/// of all seven (her keys without their hash), renames and revokes her keys (once), marks
/// her notifications read and deletes them, changes her preferences; every other write is
/// the service's (or the database's), and `anon` gets nothing.
async fn accounts(s: &mut Suite) {
    let own_account = format!("WHERE user_id = '{ADA}'");
    // credit_accounts: every write is the service's, the balance the ledger's.
    for (name, sql) in [
        (
            "credit_accounts: raise own balance",
            format!("UPDATE public.credit_accounts SET balance = 1000000 {own_account}"),
        ),
        (
            "credit_accounts: raise own balance and lifetime_granted together",
            format!(
                "UPDATE public.credit_accounts SET balance = balance + 1000,
                   lifetime_granted = lifetime_granted + 1000 {own_account}"
            ),
        ),
        (
            "credit_accounts: move own account to another user",
            format!("UPDATE public.credit_accounts SET user_id = '{BOB}' {own_account}"),
        ),
        (
            "credit_accounts: rewrite own account's id",
            format!("UPDATE public.credit_accounts SET id = '{NEW_ID}' {own_account}"),
        ),
        (
            "credit_accounts: delete own account",
            format!("DELETE FROM public.credit_accounts {own_account}"),
        ),
        (
            "credit_accounts: open an account for a user without one",
            insert("credit_accounts", &row([("user_id", lit(DAVE))])),
        ),
        (
            "credit_accounts: open an account with a balance",
            insert(
                "credit_accounts",
                &row([("user_id", lit(DAVE)), ("balance", "1000000".to_owned())]),
            ),
        ),
        (
            "credit_accounts: raise another user's balance",
            format!("UPDATE public.credit_accounts SET balance = 0 WHERE user_id = '{BOB}'"),
        ),
    ] {
        s.attack(name, ADA_JWT, sql, Expect::Refusal).await;
    }

    // credit_transactions: the ledger is the service's, and append-only.
    for (name, sql) in [
        (
            "credit_transactions: grant oneself credits",
            insert("credit_transactions", &ledger_row(ADA, "grant", 1000)),
        ),
        (
            "credit_transactions: a refund to oneself",
            insert("credit_transactions", &ledger_row(ADA, "refund", 30)),
        ),
        (
            "credit_transactions: spend another user's credits",
            insert("credit_transactions", &ledger_row(BOB, "spend", -10)),
        ),
        (
            "credit_transactions: rewrite an own spend's amount",
            format!("UPDATE public.credit_transactions SET amount = -1 WHERE id = '{TX_ADA}'"),
        ),
        (
            "credit_transactions: turn an own spend into a purchase",
            format!(
                "UPDATE public.credit_transactions SET kind = 'purchase', amount = 30 WHERE id = '{TX_ADA}'"
            ),
        ),
        (
            "credit_transactions: delete an own spend",
            format!("DELETE FROM public.credit_transactions WHERE id = '{TX_ADA}'"),
        ),
        (
            "credit_transactions: delete another user's row",
            format!("DELETE FROM public.credit_transactions WHERE id = '{TX_BOB}'"),
        ),
    ] {
        s.attack(name, ADA_JWT, sql, Expect::Refusal).await;
    }

    // api_keys: users rename and revoke their own keys; the rest is the service's.
    let key = |set: &str, id: &str| format!("UPDATE public.api_keys SET {set} WHERE id = '{id}'");
    s.attack(
        "api_keys: create an own key",
        ADA_JWT,
        insert("api_keys", &key_row(ADA, "fk_self_made")),
        Expect::Denied,
    )
    .await;
    for (name, set) in [
        ("api_keys: replace own key_hash", "key_hash = 'hash-known'"),
        (
            "api_keys: replace own key_prefix",
            "key_prefix = 'fk_vanity'",
        ),
        (
            "api_keys: widen own scopes",
            r#"scopes = '["admin"]'::jsonb"#,
        ),
        ("api_keys: set own last_used_at", "last_used_at = now()"),
        (
            "api_keys: extend own expires_at",
            "expires_at = now() + interval '100 years'",
        ),
        (
            "api_keys: move own key to another user",
            &format!("user_id = '{BOB}'"),
        ),
        (
            "api_keys: rewrite own key's id",
            &format!("id = '{NEW_ID}'"),
        ),
        (
            "api_keys: backdate own created_at",
            "created_at = now() - interval '1 year'",
        ),
    ] {
        s.attack(name, ADA_JWT, key(set, K_ADA), Expect::Denied)
            .await;
    }
    for (name, sql) in [
        (
            "api_keys: un-revoke an own revoked key",
            key("revoked_at = NULL", K_ADA_REVOKED),
        ),
        (
            "api_keys: change an own key's revoked_at once set",
            key("revoked_at = now() + interval '1 year'", K_ADA_REVOKED),
        ),
        (
            "api_keys: rename an own key to blank",
            key("name = '   '", K_ADA),
        ),
        (
            "api_keys: rename an own key to 101 characters",
            key(&format!("name = '{}'", "k".repeat(101)), K_ADA),
        ),
        (
            "api_keys: rename another user's key",
            key("name = 'pwned'", K_BOB),
        ),
        (
            "api_keys: revoke another user's key",
            key("revoked_at = now()", K_BOB),
        ),
        (
            "api_keys: delete an own key",
            format!("DELETE FROM public.api_keys WHERE id = '{K_ADA}'"),
        ),
    ] {
        s.attack(name, ADA_JWT, sql, Expect::Refusal).await;
    }
    for (name, sql) in [
        (
            "api_keys: SELECT own key_hash",
            format!("SELECT count(key_hash) FROM public.api_keys WHERE id = '{K_ADA}'"),
        ),
        (
            "api_keys: SELECT * of own keys (key_hash included)",
            format!(
                "SELECT count(*) FROM (SELECT * FROM public.api_keys WHERE user_id = '{ADA}') k"
            ),
        ),
        (
            "api_keys: find an own key by its hash",
            format!(
                "SELECT count(*) FROM public.api_keys WHERE user_id = '{ADA}' AND key_hash = 'hash-ada-1'"
            ),
        ),
    ] {
        s.invisible(name, ADA_JWT, sql).await;
    }

    // notifications: users mark read and delete their own; INSERT is the service's.
    let note =
        |set: &str, id: &str| format!("UPDATE public.notifications SET {set} WHERE id = '{id}'");
    for (name, sql, expect) in [
        (
            "notifications: insert one for oneself",
            insert("notifications", &notification_row(ADA)),
            Expect::Denied,
        ),
        (
            "notifications: rewrite an own notification's body",
            note("body = 'forged'", N_ADA),
            Expect::Denied,
        ),
        (
            "notifications: change an own notification's type",
            note("type = 'credits_low'", N_ADA),
            Expect::Denied,
        ),
        (
            "notifications: move an own notification to another user",
            note(&format!("user_id = '{BOB}'"), N_ADA),
            Expect::Denied,
        ),
        (
            "notifications: mark another user's notification read",
            note("read_at = now()", N_BOB),
            Expect::Refusal,
        ),
        (
            "notifications: delete another user's notification",
            format!("DELETE FROM public.notifications WHERE id = '{N_BOB}'"),
            Expect::Refusal,
        ),
    ] {
        s.attack(name, ADA_JWT, sql, expect).await;
    }

    // notification_preferences: users change their own channels and muted types.
    let prefs = |set: &str, user: &str| {
        format!("UPDATE public.notification_preferences SET {set} WHERE user_id = '{user}'")
    };
    for (name, sql, expect) in [
        (
            "notification_preferences: insert a row for a user without one",
            insert("notification_preferences", &row([("user_id", lit(DAVE))])),
            Expect::Denied,
        ),
        (
            "notification_preferences: delete own row",
            format!("DELETE FROM public.notification_preferences WHERE user_id = '{ADA}'"),
            Expect::Denied,
        ),
        (
            "notification_preferences: move own row to another user",
            prefs(&format!("user_id = '{DAVE}'"), ADA),
            Expect::Denied,
        ),
        (
            "notification_preferences: mute an unknown type",
            prefs(r#"muted_types = '["promo"]'"#, ADA),
            Expect::Check,
        ),
        (
            "notification_preferences: change another user's",
            prefs("email_enabled = false", BOB),
            Expect::Refusal,
        ),
    ] {
        s.attack(name, ADA_JWT, sql, expect).await;
    }

    // usage_metrics and activity_logs: the database's (and the service's), read-only for
    // users.
    for (name, sql) in [
        (
            "usage_metrics: insert own counters",
            insert(
                "usage_metrics",
                &row([
                    ("user_id", lit(ADA)),
                    ("day", "current_date - 30".to_owned()),
                    ("credits_spent", "0".to_owned()),
                ]),
            ),
        ),
        (
            "usage_metrics: reset own credits_spent",
            format!("UPDATE public.usage_metrics SET credits_spent = 0 WHERE user_id = '{ADA}'"),
        ),
        (
            "usage_metrics: delete own counters",
            format!("DELETE FROM public.usage_metrics WHERE user_id = '{ADA}'"),
        ),
        (
            "activity_logs: forge an own entry",
            insert(
                "activity_logs",
                &row([("user_id", lit(ADA)), ("action", lit("project.created"))]),
            ),
        ),
        (
            "activity_logs: rewrite an own entry",
            format!("UPDATE public.activity_logs SET action = 'nothing' WHERE user_id = '{ADA}'"),
        ),
        (
            "activity_logs: delete own entries",
            format!("DELETE FROM public.activity_logs WHERE user_id = '{ADA}'"),
        ),
    ] {
        s.attack(name, ADA_JWT, sql, Expect::Denied).await;
    }

    // anon: no write at all (SELECT, INSERT and TRUNCATE are in `anon`).
    for (name, sql) in [
        (
            "api_keys: anon revokes a key",
            key("revoked_at = now()", K_ADA),
        ),
        ("api_keys: anon renames a key", key("name = 'anon'", K_ADA)),
        (
            "notifications: anon marks a notification read",
            note("read_at = now()", N_ADA),
        ),
        (
            "notifications: anon deletes a notification",
            format!("DELETE FROM public.notifications WHERE id = '{N_ADA}'"),
        ),
        (
            "notification_preferences: anon mutes everything",
            prefs(r#"muted_types = '["system"]'"#, ADA),
        ),
        (
            "credit_accounts: anon raises a balance",
            format!("UPDATE public.credit_accounts SET balance = 1000000 {own_account}"),
        ),
        (
            "credit_transactions: anon deletes a ledger row",
            format!("DELETE FROM public.credit_transactions WHERE id = '{TX_ADA}'"),
        ),
        (
            "activity_logs: anon deletes the log",
            "DELETE FROM public.activity_logs".to_owned(),
        ),
    ] {
        s.attack(name, Who::Anon, sql, Expect::Refusal).await;
    }

    // Reads: exactly one's own rows (the superuser's count of them), none of Bob's.
    for table in [
        "credit_accounts",
        "credit_transactions",
        "api_keys",
        "notifications",
        "notification_preferences",
        "usage_metrics",
        "activity_logs",
    ] {
        let own = format!("SELECT count(*) FROM public.{table} WHERE user_id = '{ADA}'");
        let expected = s
            .count_as(Who::Superuser, &own)
            .await
            .unwrap_or_else(|e| panic!("[{}] count {table}: {e}", s.setup));
        s.visible(
            &format!("allowed: {table}: SELECT own rows"),
            ADA_JWT,
            format!("SELECT count(*) FROM public.{table}"),
            expected,
        )
        .await;
        s.invisible(
            &format!("{table}: SELECT another user's rows"),
            ADA_JWT,
            format!("SELECT count(*) FROM public.{table} WHERE user_id = '{BOB}'"),
        )
        .await;
    }
    s.visible(
        "allowed: api_keys: SELECT every column but key_hash",
        ADA_JWT,
        "SELECT count(*) FROM (SELECT id, user_id, name, key_prefix, scopes, last_used_at,
           expires_at, revoked_at, created_at, updated_at FROM public.api_keys) k",
        2,
    )
    .await;

    // What Ada may write.
    s.allowed(
        "allowed: api_keys: rename an own key",
        ADA_JWT,
        &[(key("name = 'Work laptop'", K_ADA), 1)],
        &[(
            format!("SELECT name FROM public.api_keys WHERE id = '{K_ADA}'"),
            "Work laptop",
        )],
    )
    .await;
    s.allowed(
        "allowed: api_keys: revoke an own key (once; the log says so)",
        ADA_JWT,
        &[(key("revoked_at = now()", K_ADA), 1)],
        &[
            (
                format!(
                    "SELECT (revoked_at IS NOT NULL)::text FROM public.api_keys WHERE id = '{K_ADA}'"
                ),
                "true",
            ),
            (
                format!(
                    "SELECT count(*)::text FROM public.activity_logs
                     WHERE action = 'api_key.revoked' AND entity_id = '{K_ADA}'"
                ),
                "1",
            ),
        ],
    )
    .await;
    s.allowed(
        "allowed: api_keys: rename an own revoked key",
        ADA_JWT,
        &[(key("name = 'Gone'", K_ADA_REVOKED), 1)],
        &[],
    )
    .await;
    s.allowed(
        "allowed: notifications: mark an own notification read",
        ADA_JWT,
        &[(note("read_at = now()", N_ADA), 1)],
        &[(
            format!(
                "SELECT (read_at IS NOT NULL)::text FROM public.notifications WHERE id = '{N_ADA}'"
            ),
            "true",
        )],
    )
    .await;
    s.allowed(
        "allowed: notifications: delete an own notification",
        ADA_JWT,
        &[(
            format!("DELETE FROM public.notifications WHERE id = '{N_ADA}'"),
            1,
        )],
        &[(
            format!("SELECT count(*)::text FROM public.notifications WHERE user_id = '{ADA}'"),
            "0",
        )],
    )
    .await;
    s.allowed(
        "allowed: notification_preferences: update own channels and muted types",
        ADA_JWT,
        &[(
            prefs(
                r#"email_enabled = false, in_app_enabled = false, muted_types = '["system", "credits_low"]'"#,
                ADA,
            ),
            1,
        )],
        &[(
            format!(
                "SELECT email_enabled || '/' || in_app_enabled || '/' || muted_types::text
                 FROM public.notification_preferences WHERE user_id = '{ADA}'"
            ),
            r#"false/false/["system", "credits_low"]"#,
        )],
    )
    .await;
    // What Ada's allowed actions make the database write for her.
    s.allowed(
        "allowed: coding_sessions: a session start counts in usage and the log",
        ADA_JWT,
        &[(insert("coding_sessions", &session_row(ADA, P_ADA)), 1)],
        &[
            (
                format!(
                    "SELECT sum(sessions_started)::text FROM public.usage_metrics WHERE user_id = '{ADA}'"
                ),
                "4",
            ),
            (
                format!(
                    "SELECT count(*)::text FROM public.activity_logs
                     WHERE user_id = '{ADA}' AND action = 'session.started'"
                ),
                "4",
            ),
        ],
    )
    .await;
}

/// The service (`service_role`, no row-level security) writes what the contract gives it
/// on the account tables; the ledger, the balances, the key rules and the logs hold for it
/// too.
async fn accounts_service(s: &mut Suite) {
    let svc = Who::Service;
    for (name, sql) in [
        (
            "service_role: set a balance directly",
            format!("UPDATE public.credit_accounts SET balance = 1000000 WHERE user_id = '{ADA}'"),
        ),
        (
            "service_role: set balance and lifetime_granted consistently",
            format!(
                "UPDATE public.credit_accounts SET balance = balance + 5,
                   lifetime_granted = lifetime_granted + 5 WHERE user_id = '{ADA}'"
            ),
        ),
        (
            "service_role: move an account to another user",
            format!("UPDATE public.credit_accounts SET user_id = '{DAVE}' WHERE user_id = '{ADA}'"),
        ),
        (
            "service_role: open an account with a balance",
            insert(
                "credit_accounts",
                &row([
                    ("user_id", lit(DAVE)),
                    ("balance", "50".to_owned()),
                    ("lifetime_granted", "50".to_owned()),
                ]),
            ),
        ),
        (
            "service_role: a spend past the balance",
            insert("credit_transactions", &ledger_row(ADA, "spend", -71)),
        ),
        (
            "service_role: a spend with a positive amount",
            insert("credit_transactions", &ledger_row(ADA, "spend", 10)),
        ),
        (
            "service_role: a ledger row for another user's account",
            insert(
                "credit_transactions",
                &with(ledger_row(ADA, "grant", 10), "user_id", lit(BOB)),
            ),
        ),
        (
            "service_role: a retried spend (same idempotency key)",
            insert(
                "credit_transactions",
                &with(
                    ledger_row(ADA, "spend", -1),
                    "idempotency_key",
                    lit("fixture-spend"),
                ),
            ),
        ),
        (
            "service_role: a retried spend under ON CONFLICT DO NOTHING",
            format!(
                "{} ON CONFLICT DO NOTHING",
                insert(
                    "credit_transactions",
                    &with(
                        ledger_row(ADA, "spend", -1),
                        "idempotency_key",
                        lit("fixture-spend")
                    ),
                )
            ),
        ),
        (
            "service_role: rewrite a ledger row",
            format!("UPDATE public.credit_transactions SET amount = -1 WHERE id = '{TX_ADA}'"),
        ),
        (
            "service_role: delete a ledger row",
            format!("DELETE FROM public.credit_transactions WHERE id = '{TX_ADA}'"),
        ),
        (
            "service_role: rewrite the activity log",
            format!("UPDATE public.activity_logs SET action = 'x' WHERE user_id = '{ADA}'"),
        ),
        (
            "service_role: delete the activity log",
            format!("DELETE FROM public.activity_logs WHERE user_id = '{ADA}'"),
        ),
        (
            "service_role: an 11th unrevoked key",
            insert("api_keys", &key_row(CAROL, "fk_carol_11")),
        ),
        (
            "service_role: un-revoke a key",
            format!("UPDATE public.api_keys SET revoked_at = NULL WHERE id = '{K_ADA_REVOKED}'"),
        ),
        (
            "service_role: a usage counter below zero",
            format!("UPDATE public.usage_metrics SET tokens = -1 WHERE user_id = '{ADA}'"),
        ),
        (
            "service_role: a notification of an unknown type",
            insert(
                "notifications",
                &with(notification_row(ADA), "type", lit("promo")),
            ),
        ),
    ] {
        s.attack(name, svc, sql, Expect::Error).await;
    }

    let account = |user: &str| {
        format!(
            "SELECT balance || '/' || lifetime_granted || '/' || lifetime_spent
             FROM public.credit_accounts WHERE user_id = '{user}'"
        )
    };
    s.allowed(
        "allowed: service_role: a spend moves the balance (credits_low when it crosses 10)",
        svc,
        &[(
            insert(
                "credit_transactions",
                &with(ledger_row(ADA, "spend", -65), "idempotency_key", lit("run-1")),
            ),
            1,
        )],
        &[
            (account(ADA), "5/100/95"),
            (
                "SELECT balance_after::text FROM public.credit_transactions WHERE idempotency_key = 'run-1'"
                    .to_owned(),
                "5",
            ),
            (
                format!(
                    "SELECT count(*)::text FROM public.notifications
                     WHERE user_id = '{ADA}' AND type = 'credits_low'"
                ),
                "1",
            ),
            (
                format!(
                    "SELECT sum(credits_spent)::text FROM public.usage_metrics WHERE user_id = '{ADA}'"
                ),
                "95",
            ),
        ],
    )
    .await;
    s.allowed(
        "allowed: service_role: key_hash and last_used_at",
        svc,
        &[(
            format!(
                "UPDATE public.api_keys SET key_hash = 'hash-rotated', last_used_at = now()
                 WHERE id = '{K_ADA}'"
            ),
            1,
        )],
        &[],
    )
    .await;
    s.allowed(
        "allowed: service_role: delete preferences",
        svc,
        &[(
            format!("DELETE FROM public.notification_preferences WHERE user_id = '{ADA}'"),
            1,
        )],
        &[],
    )
    .await;
    s.allowed(
        "allowed: service_role: delete an account (its ledger goes with it)",
        svc,
        &[(
            format!("DELETE FROM public.credit_accounts WHERE user_id = '{BOB}'"),
            1,
        )],
        &[(
            format!(
                "SELECT count(*)::text FROM public.credit_transactions WHERE user_id = '{BOB}'"
            ),
            "0",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: delete a profile (its account rows go with it)",
        svc,
        &[(format!("DELETE FROM public.profiles WHERE id = '{BOB}'"), 1)],
        &[(
            format!(
                "SELECT ((SELECT count(*) FROM public.credit_accounts WHERE user_id = '{BOB}')
                       + (SELECT count(*) FROM public.credit_transactions WHERE user_id = '{BOB}')
                       + (SELECT count(*) FROM public.api_keys WHERE user_id = '{BOB}')
                       + (SELECT count(*) FROM public.notifications WHERE user_id = '{BOB}')
                       + (SELECT count(*) FROM public.notification_preferences WHERE user_id = '{BOB}')
                       + (SELECT count(*) FROM public.usage_metrics WHERE user_id = '{BOB}')
                       + (SELECT count(*) FROM public.activity_logs WHERE user_id = '{BOB}'))::text"
            ),
            "0",
        )],
    )
    .await;
}

async fn reads(s: &mut Suite) {
    for (table, own, theirs, own_count) in [
        (
            "profiles",
            format!("id = '{ADA}'"),
            format!("id = '{BOB}'"),
            1,
        ),
        (
            "projects",
            format!("user_id = '{ADA}'"),
            format!("user_id = '{BOB}'"),
            3,
        ),
        (
            "coding_sessions",
            format!("user_id = '{ADA}'"),
            format!("user_id = '{BOB}'"),
            3,
        ),
        (
            "coding_jobs",
            format!("session_id = '{S_ADA_ACTIVE}'"),
            format!("session_id = '{S_BOB}'"),
            1,
        ),
        (
            "session_events",
            format!("session_id = '{S_ADA_ACTIVE}'"),
            format!("session_id = '{S_BOB}'"),
            2,
        ),
        (
            "conversations",
            format!("created_by = '{ADA}'"),
            format!("created_by = '{BOB}'"),
            4,
        ),
        (
            "conversation_turns",
            format!("conversation_id = '{C_ADA_DRAFT}'"),
            format!("conversation_id = '{C_BOB}'"),
            2,
        ),
        (
            "batch_jobs",
            format!("created_by = '{ADA}'"),
            format!("created_by = '{BOB}'"),
            3,
        ),
        (
            "batch_items",
            format!("batch_job_id IN ('{B_ADA_QUEUED}', '{B_ADA_PROCESSING}')"),
            format!("batch_job_id = '{B_BOB}'"),
            4,
        ),
    ] {
        s.visible(
            &format!("allowed: {table}: SELECT own rows"),
            ADA_JWT,
            format!("SELECT count(*) FROM public.{table} WHERE {own}"),
            own_count,
        )
        .await;
        s.invisible(
            &format!("{table}: SELECT another user's rows"),
            ADA_JWT,
            format!("SELECT count(*) FROM public.{table} WHERE {theirs}"),
        )
        .await;
    }
}

/// Every table, as `authenticated`: TRUNCATE, CREATE TRIGGER with one of Forge's
/// functions, direct calls of every `public.forge_*` function; and Forge's bookkeeping.
async fn every_table(s: &mut Suite) {
    for table in TABLES {
        s.attack(
            &format!("{table}: TRUNCATE … CASCADE"),
            ADA_JWT,
            format!("TRUNCATE public.{table} CASCADE"),
            Expect::Error,
        )
        .await;
        s.attack(
            &format!("{table}: CREATE TRIGGER … EXECUTE FUNCTION public.forge_fail_jobs_of_ended_session()"),
            ADA_JWT,
            format!(
                "CREATE TRIGGER security_suite_trigger AFTER INSERT ON public.{table}
                 FOR EACH ROW EXECUTE FUNCTION public.forge_fail_jobs_of_ended_session()"
            ),
            Expect::Error,
        )
        .await;
    }

    let functions = forge_functions(&s.db).await;
    assert!(
        functions
            .iter()
            .any(|(_, call)| call.contains("forge_fail_jobs_of_ended_session")),
        "[{}] fixture: Forge's functions are listed ({functions:?})",
        s.setup
    );
    for (name, call) in &functions {
        for (who, label) in [(ADA_JWT, "authenticated"), (Who::Anon, "anon")] {
            s.attack(
                &format!("functions: {label} calls public.{name} directly"),
                who,
                call,
                Expect::Denied,
            )
            .await;
        }
    }

    for (table, who, label) in BOOKKEEPING
        .iter()
        .flat_map(|t| [(*t, ADA_JWT, "authenticated"), (*t, Who::Anon, "anon")])
    {
        s.invisible(
            &format!("{table}: {label} SELECT"),
            who,
            format!("SELECT count(*) FROM public.{table}"),
        )
        .await;
        let row = if table == "seaql_migrations" {
            "(version, applied_at) VALUES ('m99999999_000001_backdoor', 0)"
        } else {
            "(version, checksum, applied_at) VALUES ('m99999999_000001_backdoor', 'fnv1a64:0', 0)"
        };
        let set = if table == "seaql_migrations" {
            "applied_at = 0"
        } else {
            "checksum = 'fnv1a64:0'"
        };
        for (verb, sql, expect) in [
            (
                "INSERT",
                format!("INSERT INTO public.{table} {row}"),
                Expect::Refusal,
            ),
            (
                "UPDATE",
                format!("UPDATE public.{table} SET {set}"),
                Expect::Refusal,
            ),
            (
                "DELETE",
                format!("DELETE FROM public.{table}"),
                Expect::Refusal,
            ),
            (
                "TRUNCATE",
                format!("TRUNCATE public.{table}"),
                Expect::Error,
            ),
        ] {
            s.attack(&format!("{table}: {label} {verb}"), who, sql, expect)
                .await;
        }
    }
}

/// `(name, statement calling it with NULL arguments)` for every function in `public`
/// named `forge_*`.
async fn forge_functions(db: &DatabaseConnection) -> Vec<(String, String)> {
    query_pairs(
        db,
        r"SELECT p.oid::regprocedure::text,
                 CASE WHEN p.prokind = 'p' THEN 'CALL ' ELSE 'SELECT ' END
                 || 'public.' || quote_ident(p.proname) || '('
                 || coalesce((SELECT string_agg('NULL::' || format_type(a.t, NULL), ', ' ORDER BY a.o)
                              FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)), '')
                 || ')'
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'public' AND p.proname LIKE 'forge\_%'
          ORDER BY 1",
    )
    .await
}

/// `anon` gets nothing on any table: no row read, no row written.
async fn anon(s: &mut Suite) {
    for table in TABLES {
        s.invisible(
            &format!("{table}: anon SELECT"),
            Who::Anon,
            format!("SELECT count(*) FROM public.{table}"),
        )
        .await;
        s.attack(
            &format!("{table}: anon TRUNCATE … CASCADE"),
            Who::Anon,
            format!("TRUNCATE public.{table} CASCADE"),
            Expect::Error,
        )
        .await;
    }
    for (table, row) in valid_rows() {
        s.attack(
            &format!("{table}: anon INSERT"),
            Who::Anon,
            insert(table, &row),
            Expect::Refusal,
        )
        .await;
    }
}

/// JSON documents are capped at 64 KiB by a CHECK, for every role: 100 KiB is refused.
async fn json_caps(s: &mut Suite) {
    let rows: BTreeMap<&str, Row> = valid_rows().into_iter().collect();
    let names: Vec<String> = rows.keys().map(|t| format!("'{t}'")).collect();
    let columns = query_pairs(
        &s.db,
        &format!(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND data_type = 'jsonb' AND table_name IN ({})
             ORDER BY 1, 2",
            names.join(", ")
        ),
    )
    .await;
    assert!(
        columns.len() >= 10,
        "[{}] fixture: the jsonb columns of Forge's tables ({columns:?})",
        s.setup
    );
    let big = |column: &str| {
        if [
            "category",
            "review_history",
            "variables",
            "required_elements",
            "applicable_personas",
            "applicable_emotions",
            "applicable_topics",
            "scopes",
            "muted_types",
        ]
        .contains(&column)
        {
            BIG_ARRAY
        } else {
            BIG_OBJECT
        }
    };
    for (table, column) in &columns {
        let row = with(rows[table.as_str()].clone(), column, big(column));
        s.attack(
            &format!("JSON size: superuser inserts 100 KiB into {table}.{column}"),
            Who::Superuser,
            insert(table, &row),
            Expect::Check,
        )
        .await;
    }
    for (table, column) in [
        ("projects", "expo_config"),
        ("coding_sessions", "metadata"),
        ("conversations", "parameters"),
        ("batch_items", "parameters"),
    ] {
        s.attack(
            &format!("JSON size: service_role inserts 100 KiB into {table}.{column}"),
            Who::Service,
            insert(table, &with(rows[table].clone(), column, BIG_OBJECT)),
            Expect::Check,
        )
        .await;
        s.attack(
            &format!("JSON size: authenticated inserts 100 KiB into {table}.{column}"),
            ADA_JWT,
            insert(table, &with(rows[table].clone(), column, BIG_OBJECT)),
            Expect::Refusal,
        )
        .await;
    }
    s.attack(
        "JSON size: authenticated sets 100 KiB parameters on an own draft",
        ADA_JWT,
        format!(
            "UPDATE public.conversations SET parameters = {BIG_OBJECT} WHERE id = '{C_ADA_DRAFT}'"
        ),
        Expect::Refusal,
    )
    .await;
}

/// The invariants hold for every role, `service_role` (no RLS) included; and the service
/// keeps every write the contract gives it.
async fn service(s: &mut Suite) {
    let svc = Who::Service;
    for (name, sql) in [
        (
            "service_role: session completed → active",
            format!(
                "UPDATE public.coding_sessions SET status = 'active' WHERE id = '{S_ADA_DONE}'"
            ),
        ),
        (
            "service_role: session pending → paused",
            format!(
                "UPDATE public.coding_sessions SET status = 'paused' WHERE id = '{S_ADA_PENDING}'"
            ),
        ),
        (
            "service_role: an 11th live session past sessions_limit 10",
            insert("coding_sessions", &session_row(DAVE, P_DAVE)),
        ),
        (
            "service_role: move a live session to a user at the limit",
            format!(
                "UPDATE public.coding_sessions SET user_id = '{CAROL}', project_id = '{P_CAROL}' WHERE id = '{S_ADA_ACTIVE}'"
            ),
        ),
        (
            "service_role: set conversations.total_turns to a wrong value",
            format!("UPDATE public.conversations SET total_turns = 999 WHERE id = '{C_ADA_DRAFT}'"),
        ),
        (
            "service_role: set conversations.total_tokens to a wrong value",
            format!(
                "UPDATE public.conversations SET total_tokens = 999999 WHERE id = '{C_ADA_DRAFT}'"
            ),
        ),
        (
            "service_role: set a batch's counters directly",
            format!(
                "UPDATE public.batch_jobs SET total_items = total_items + 5 WHERE id = '{B_ADA_QUEUED}'"
            ),
        ),
        (
            "service_role: point an item at another owner's conversation",
            format!(
                "UPDATE public.batch_items SET conversation_id = '{C_BOB}' WHERE id = '{I_ADA_QUEUED}'"
            ),
        ),
        (
            "service_role: insert an item pointing at another owner's conversation",
            insert(
                "batch_items",
                &with(item_row(B_ADA_QUEUED, 3), "conversation_id", lit(C_BOB)),
            ),
        ),
        (
            "service_role: an event with a gap in seq",
            insert(
                "session_events",
                &with(event_row(S_ADA_ACTIVE), "seq", "100"),
            ),
        ),
        (
            "service_role: move an event's seq (a gap)",
            format!("UPDATE public.session_events SET seq = 100 WHERE id = '{E_ADA}'"),
        ),
        (
            "service_role: delete the first event of a live session (a gap)",
            format!("DELETE FROM public.session_events WHERE id = '{E_ADA}'"),
        ),
    ] {
        s.attack(name, svc, sql, Expect::Refusal).await;
    }

    for (table, row) in valid_rows() {
        s.allowed(
            &format!("allowed: service_role: INSERT into {table}"),
            svc,
            &[(insert(table, &row), 1)],
            &[],
        )
        .await;
    }
    s.allowed(
        "allowed: service_role: turns into an approved conversation (totals follow)",
        svc,
        &[(insert("conversation_turns", &turn_row(C_ADA_APPROVED, 2, 8)), 1)],
        &[(
            format!("SELECT total_turns || ',' || total_tokens FROM public.conversations WHERE id = '{C_ADA_APPROVED}'"),
            "2,15",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: an item completes (the batch's counters follow)",
        svc,
        &[(
            format!(
                "UPDATE public.batch_items SET status = 'completed', progress = 100, conversation_id = '{C_ADA_APPROVED}'
                 WHERE id = '{I_ADA_RUNNING}'"
            ),
            1,
        )],
        &[(
            format!(
                "SELECT total_items || ',' || completed_items || ',' || successful_items || ',' || failed_items
                 FROM public.batch_jobs WHERE id = '{B_ADA_PROCESSING}'"
            ),
            "2,2,2,0",
        )],
    )
    .await;
    s.allowed(
        "allowed: service_role: tier and sessions_limit",
        svc,
        &[(
            format!(
                "UPDATE public.profiles SET tier = 'pro', sessions_limit = 5 WHERE id = '{ADA}'"
            ),
            1,
        )],
        &[],
    )
    .await;
    s.allowed(
        "allowed: service_role: an event with the next seq given explicitly",
        svc,
        &[(
            insert("session_events", &with(event_row(S_ADA_ACTIVE), "seq", "3")),
            1,
        )],
        &[(
            format!(
                "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM public.session_events
                 WHERE session_id = '{S_ADA_ACTIVE}'"
            ),
            "1,2,3",
        )],
    )
    .await;
}

/// The Supabase advisors' lints, as queries over the catalog. Each query lists the
/// offenders (NULL when there are none).
async fn catalog(s: &mut Suite) {
    let quoted = |names: &[&str]| {
        names
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let forge_tables = quoted(TABLES);
    let bookkeeping = quoted(&BOOKKEEPING);
    // `role` holds one of `privileges` on table `c`: which ones, as a lateral subquery.
    // A grant on any column counts as a privilege.
    let held = |role: &str, privileges: &[&str]| {
        privileges
            .iter()
            .map(|p| {
                let test = if ["SELECT", "INSERT", "UPDATE", "REFERENCES"].contains(p) {
                    format!("has_any_column_privilege('{role}', c.oid, '{p}')")
                } else {
                    format!("has_table_privilege('{role}', c.oid, '{p}')")
                };
                format!("SELECT '{p}'::text WHERE {test}")
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    let offenders = |role: &str, privileges: &[&str], which: &str| {
        format!(
            "SELECT string_agg(c.relname || ':' || x.p, ', ' ORDER BY c.relname, x.p)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL ({}) AS x(p)
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {which}",
            held(role, privileges)
        )
    };
    let every = [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "TRUNCATE",
        "REFERENCES",
        "TRIGGER",
    ];

    s.lint(
        "catalog: every public.forge_* function pins search_path to ''",
        r#"SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND p.proname LIKE 'forge\_%'
             AND NOT coalesce('search_path=""' = ANY (p.proconfig), false)"#,
    )
    .await;
    s.lint(
        "catalog: no SECURITY DEFINER function in public is executable by anon or authenticated",
        "SELECT string_agg(p.oid::regprocedure::text || ' by ' || r.role, ', '
                           ORDER BY p.oid::regprocedure::text, r.role)
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         CROSS JOIN (VALUES ('anon'), ('authenticated')) AS r(role)
         WHERE n.nspname = 'public' AND p.prosecdef
           AND has_function_privilege(r.role, p.oid, 'EXECUTE')",
    )
    .await;
    s.lint(
        "catalog: no trigger-only forge_* function is executable by PUBLIC, anon or authenticated",
        r"SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'public' AND p.proname LIKE 'forge\_%'
            AND p.prorettype = 'trigger'::regtype
            AND (EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                         WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
                 OR has_function_privilege('anon', p.oid, 'EXECUTE')
                 OR has_function_privilege('authenticated', p.oid, 'EXECUTE'))",
    )
    .await;
    s.lint(
        "catalog: every Forge table has row-level security enabled and forced",
        format!(
            "SELECT string_agg(t, ', ' ORDER BY t)
             FROM unnest(ARRAY[{forge_tables}]) AS t
             LEFT JOIN pg_class c ON c.oid = to_regclass('public.' || t)
             WHERE c.oid IS NULL OR NOT (c.relrowsecurity AND c.relforcerowsecurity)"
        ),
    )
    .await;
    s.lint(
        "catalog: no table in public is SELECTable by anon",
        offenders("anon", &["SELECT"], "true"),
    )
    .await;
    s.lint(
        "catalog: anon holds no privilege on any table in public",
        offenders("anon", &every, "true"),
    )
    .await;
    s.lint(
        "catalog: authenticated holds no TRUNCATE, REFERENCES or TRIGGER on any table in public",
        offenders(
            "authenticated",
            &["TRUNCATE", "REFERENCES", "TRIGGER"],
            "true",
        ),
    )
    .await;
    s.lint(
        "catalog: authenticated holds no privilege on Forge's bookkeeping tables",
        offenders(
            "authenticated",
            &every,
            &format!("c.relname IN ({bookkeeping})"),
        ),
    )
    .await;
    s.lint(
        "catalog: every foreign key in public has an index whose leading columns are its columns",
        "SELECT string_agg(c.conrelid::regclass::text || '.' || c.conname, ', '
                           ORDER BY c.conrelid::regclass::text, c.conname)
         FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
         WHERE c.contype = 'f' AND n.nspname = 'public'
           AND NOT EXISTS (
             SELECT 1 FROM pg_index i
             CROSS JOIN LATERAL (
               SELECT array_agg(k.attnum) AS leading
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, o)
               WHERE k.o <= cardinality(c.conkey)) AS l
             WHERE i.indrelid = c.conrelid AND l.leading @> c.conkey AND l.leading <@ c.conkey)",
    )
    .await;
}
