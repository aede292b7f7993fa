//! Accounts (SCHEMA.md "Accounts (seed 004)", `m20261201_000012_accounts`): the rules the
//! database holds for every writer, on both backends, proved with raw SQL as the owner:
//! signup opens the credit account with its bonus and the preferences; the ledger is the
//! only way to move a balance, never below zero, append-only, idempotent; the usage
//! counters and the activity log follow the actions; `credits_low` is notified once per
//! crossing, unless muted; at most 10 unrevoked API keys, revoked once; deleting a profile
//! takes everything with it. PostgreSQL also: the contract's columns, concurrent spends
//! that never overdraw, and the upgrade of existing profiles (both backends).
//!
//! PostgreSQL: `scripts/with-postgres.sh cargo test --test accounts_schema`.

mod common;

use common::{TestDb, query_i64, query_string};
use forge_db::sea_orm::{ConnectionTrait, DbBackend, DbErr, SqlErr, Statement};
use forge_db::{Migrator, MigratorTrait};
use uuid::Uuid;

on_both_backends! {
    signup_opens_an_account_with_the_bonus_and_preferences => signup;
    a_spend_below_zero_is_refused_and_changes_nothing => overdraw;
    balances_move_only_through_the_ledger => ledger_only;
    the_ledger_is_append_only => append_only;
    a_retried_spend_is_refused_and_moves_nothing => idempotency;
    usage_counters_are_exact => usage;
    activity_follows_the_actions => activity;
    credits_low_is_notified_once_per_crossing_unless_muted => credits_low;
    an_eleventh_unrevoked_key_is_refused_and_keys_are_revoked_once => api_keys;
    checks_refuse_bad_rows => checks;
    deleting_a_profile_deletes_everything_of_it => cascade;
}

// ---------------------------------------------------------------------------------------
// Helpers: raw SQL for both backends (uuids are `uuid` on PostgreSQL and 16-byte BLOBs on
// SQLite).

fn pg(t: &TestDb) -> bool {
    t.backend() == DbBackend::Postgres
}

/// `id` as an SQL literal of the backend.
fn lit(t: &TestDb, id: Uuid) -> String {
    if pg(t) {
        format!("'{id}'")
    } else {
        format!("X'{}'", id.simple())
    }
}

/// An hour from now, as a timestamp expression of the backend.
fn in_an_hour(t: &TestDb) -> &'static str {
    if pg(t) {
        "now() + interval '1 hour'"
    } else {
        "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '+1 hour')"
    }
}

/// The current time as the backend writes it.
fn now(t: &TestDb) -> &'static str {
    if pg(t) {
        "now()"
    } else {
        "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')"
    }
}

async fn exec(t: &TestDb, sql: &str) -> Result<u64, DbErr> {
    t.owner
        .execute_unprepared(sql)
        .await
        .map(|r| r.rows_affected())
}

async fn ok(t: &TestDb, sql: &str) -> u64 {
    exec(t, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n  refused: {e}"))
}

/// `sql` must be refused with an error containing `needle`.
async fn refused(t: &TestDb, sql: &str, needle: &str) -> DbErr {
    match exec(t, sql).await {
        Ok(n) => panic!("{sql}\n  expected a refusal ({needle}), got {n} rows"),
        Err(e) => {
            assert!(e.to_string().contains(needle), "{sql}\n  {e}");
            e
        }
    }
}

async fn int(t: &TestDb, sql: &str) -> i64 {
    query_i64(&t.owner, sql).await
}

/// The integers of the first column.
async fn ints(t: &TestDb, sql: &str) -> Vec<i64> {
    t.owner
        .query_all_raw(Statement::from_string(t.backend(), sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.try_get_by_index::<i64>(0).expect("integer"))
        .collect()
}

async fn text(t: &TestDb, sql: &str) -> Option<String> {
    query_string(&t.owner, sql).await
}

/// A new profile (signup: its account, bonus and preferences come with it).
async fn user(t: &TestDb, name: &str) -> Uuid {
    let id = Uuid::new_v4();
    ok(
        t,
        &format!(
            "INSERT INTO profiles (id, email, display_name) VALUES ({}, '{name}@example.com', '{name}')",
            lit(t, id)
        ),
    )
    .await;
    id
}

async fn account_of(t: &TestDb, user: Uuid) -> Uuid {
    let row = t
        .owner
        .query_one_raw(Statement::from_string(
            t.backend(),
            format!(
                "SELECT id FROM credit_accounts WHERE user_id = {}",
                lit(t, user)
            ),
        ))
        .await
        .expect("query")
        .expect("the user has a credit account");
    row.try_get_by_index::<Uuid>(0).expect("uuid")
}

/// The INSERT of a ledger row of `user`'s account.
async fn ledger_sql(t: &TestDb, user: Uuid, kind: &str, amount: i64, key: Option<&str>) -> String {
    let account = account_of(t, user).await;
    let key = key.map_or("NULL".to_owned(), |k| format!("'{k}'"));
    format!(
        "INSERT INTO credit_transactions (id, account_id, user_id, amount, kind, idempotency_key)
         VALUES ({}, {}, {}, {amount}, '{kind}', {key})",
        lit(t, Uuid::new_v4()),
        lit(t, account),
        lit(t, user)
    )
}

/// The refusal of a ledger row the balance cannot cover: PostgreSQL names the balance;
/// SQLite's `RAISE` takes only a literal.
fn credits_limit(t: &TestDb, balance: i64) -> String {
    if pg(t) {
        format!("forge:limit:credits:{balance}")
    } else {
        "forge:limit:credits".to_owned()
    }
}

async fn spend(t: &TestDb, user: Uuid, amount: i64) -> Result<u64, DbErr> {
    exec(t, &ledger_sql(t, user, "spend", -amount, None).await).await
}

/// `balance/granted/spent` of `user`'s account, and the sum of its ledger.
async fn balance(t: &TestDb, user: Uuid) -> (String, i64) {
    let u = lit(t, user);
    let account = text(
        t,
        &format!(
            "SELECT balance || '/' || lifetime_granted || '/' || lifetime_spent
             FROM credit_accounts WHERE user_id = {u}"
        ),
    )
    .await
    .expect("an account");
    let ledger = int(
        t,
        &format!("SELECT CAST(coalesce(sum(amount), 0) AS bigint) FROM credit_transactions WHERE user_id = {u}"),
    )
    .await;
    (account, ledger)
}

async fn rows_of(t: &TestDb, table: &str, column: &str, user: Uuid) -> i64 {
    int(
        t,
        &format!(
            "SELECT count(*) FROM {table} WHERE {column} = {}",
            lit(t, user)
        ),
    )
    .await
}

/// A project of `user`, `active`.
async fn project(t: &TestDb, user: Uuid, name: &str) -> Uuid {
    let id = Uuid::new_v4();
    ok(
        t,
        &format!(
            "INSERT INTO projects (id, user_id, name) VALUES ({}, {}, '{name}')",
            lit(t, id),
            lit(t, user)
        ),
    )
    .await;
    id
}

/// A pending session of `user` on `project`.
async fn session(t: &TestDb, user: Uuid, project: Uuid) -> Uuid {
    let id = Uuid::new_v4();
    ok(
        t,
        &format!(
            "INSERT INTO coding_sessions (id, user_id, project_id, initial_prompt, expires_at)
             VALUES ({}, {}, {}, 'Build it', {})",
            lit(t, id),
            lit(t, user),
            lit(t, project),
            in_an_hour(t)
        ),
    )
    .await;
    id
}

/// A draft conversation of `user`.
async fn conversation(t: &TestDb, user: Uuid, human_id: &str) -> Uuid {
    let id = Uuid::new_v4();
    ok(
        t,
        &format!(
            "INSERT INTO conversations (id, conversation_id, created_by, tier, persona, emotion,
                                        topic, intent, tone)
             VALUES ({}, '{human_id}', {}, 'template', 'p', 'e', 't', 'i', 'tone')",
            lit(t, id),
            lit(t, user)
        ),
    )
    .await;
    id
}

/// An API key of `user` named `name`.
fn key_sql(t: &TestDb, user: Uuid, name: &str) -> String {
    let id = Uuid::new_v4();
    format!(
        "INSERT INTO api_keys (id, user_id, name, key_prefix, key_hash)
         VALUES ({}, {}, '{name}', 'fk_{}', 'hash-{}')",
        lit(t, id),
        lit(t, user),
        &id.simple().to_string()[..12],
        id.simple()
    )
}

/// `user`'s usage, summed over the days: sessions/jobs/conversations/tokens/credits.
async fn usage_of(t: &TestDb, user: Uuid) -> String {
    text(
        t,
        &format!(
            "SELECT coalesce(sum(sessions_started), 0) || '/' || coalesce(sum(jobs_completed), 0)
                    || '/' || coalesce(sum(conversations_created), 0) || '/'
                    || coalesce(sum(tokens), 0) || '/' || coalesce(sum(credits_spent), 0)
             FROM usage_metrics WHERE user_id = {}",
            lit(t, user)
        ),
    )
    .await
    .expect("a row")
}

/// `user`'s activity, `action entity_type` sorted.
async fn activity_of(t: &TestDb, user: Uuid) -> Vec<String> {
    let rows = t
        .owner
        .query_all_raw(Statement::from_string(
            t.backend(),
            format!(
                "SELECT action || ' ' || coalesce(entity_type, '-') FROM activity_logs
                 WHERE user_id = {}",
                lit(t, user)
            ),
        ))
        .await
        .expect("activity");
    let mut actions: Vec<String> = rows
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("text"))
        .collect();
    actions.sort();
    actions
}

async fn credits_low_of(t: &TestDb, user: Uuid) -> i64 {
    int(
        t,
        &format!(
            "SELECT count(*) FROM notifications WHERE type = 'credits_low' AND user_id = {}",
            lit(t, user)
        ),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Both backends.

/// A new profile has an account holding 100 credits, recorded as a `signup_bonus`, and
/// default preferences; nothing else.
async fn signup(t: &TestDb) {
    let ada = user(t, "ada").await;
    assert_eq!(balance(t, ada).await, ("100/100/0".to_owned(), 100));
    let u = lit(t, ada);
    assert_eq!(
        text(
            t,
            &format!(
                "SELECT kind || '/' || amount || '/' || balance_after || '/' || idempotency_key
                 FROM credit_transactions WHERE user_id = {u}"
            ),
        )
        .await
        .as_deref(),
        Some("signup_bonus/100/100/signup_bonus")
    );
    assert_eq!(
        int(
            t,
            &format!(
                "SELECT count(*) FROM notification_preferences WHERE user_id = {u}
                 AND email_enabled AND in_app_enabled AND muted_types = '[]'"
            ),
        )
        .await,
        1
    );
    assert_eq!(rows_of(t, "notifications", "user_id", ada).await, 0);
    assert_eq!(rows_of(t, "usage_metrics", "user_id", ada).await, 0);
    assert_eq!(rows_of(t, "activity_logs", "user_id", ada).await, 0);
    assert_eq!(
        forge_db::migration::SIGNUP_BONUS_CREDITS,
        100,
        "the contract's 100 free credits"
    );
}

/// A spend that would take the balance below zero is refused (`forge:limit:credits[:<the
/// balance>]`) and changes nothing; one that takes it to exactly zero goes through.
async fn overdraw(t: &TestDb) {
    let ada = user(t, "ada").await;
    let e = spend(t, ada, 101).await.expect_err("an overdraft");
    assert!(e.to_string().contains(&credits_limit(t, 100)), "{e}");
    assert_eq!(balance(t, ada).await, ("100/100/0".to_owned(), 100));
    assert_eq!(rows_of(t, "credit_transactions", "user_id", ada).await, 1);
    assert_eq!(rows_of(t, "usage_metrics", "user_id", ada).await, 0);
    // A negative adjustment past zero too.
    refused(
        t,
        &ledger_sql(t, ada, "adjustment", -500, None).await,
        &credits_limit(t, 100),
    )
    .await;

    spend(t, ada, 100).await.expect("spend it all");
    assert_eq!(balance(t, ada).await, ("0/100/100".to_owned(), 0));
    assert_eq!(
        int(
            t,
            &format!(
                "SELECT min(balance_after) FROM credit_transactions WHERE user_id = {}",
                lit(t, ada)
            )
        )
        .await,
        0
    );
    let e = spend(t, ada, 1).await.expect_err("nothing left");
    assert!(e.to_string().contains(&credits_limit(t, 0)), "{e}");
    assert_eq!(balance(t, ada).await, ("0/100/100".to_owned(), 0));

    // A row naming no account, or another user's account.
    let bob = user(t, "bob").await;
    refused(
        t,
        &format!(
            "INSERT INTO credit_transactions (id, account_id, user_id, amount, kind)
             VALUES ({}, {}, {}, 5, 'grant')",
            lit(t, Uuid::new_v4()),
            lit(t, Uuid::new_v4()),
            lit(t, ada)
        ),
        "forge:not_found:credit account",
    )
    .await;
    refused(
        t,
        &format!(
            "INSERT INTO credit_transactions (id, account_id, user_id, amount, kind)
             VALUES ({}, {}, {}, 5, 'grant')",
            lit(t, Uuid::new_v4()),
            lit(t, account_of(t, bob).await),
            lit(t, ada)
        ),
        "forge:conflict:user_id",
    )
    .await;
    assert_eq!(balance(t, bob).await, ("100/100/0".to_owned(), 100));
}

/// `balance` and the lifetime totals move only through the ledger, for every writer; an
/// account starts at zero and keeps its user.
async fn ledger_only(t: &TestDb) {
    let ada = user(t, "ada").await;
    let bob = user(t, "bob").await;
    let u = lit(t, ada);
    for set in [
        "balance = 1000",
        "balance = balance + 5, lifetime_granted = lifetime_granted + 5",
        "lifetime_spent = 7",
    ] {
        refused(
            t,
            &format!("UPDATE credit_accounts SET {set} WHERE user_id = {u}"),
            "forge:invariant:a credit balance moves only through the ledger",
        )
        .await;
    }
    refused(
        t,
        &format!(
            "UPDATE credit_accounts SET user_id = {} WHERE user_id = {u}",
            lit(t, bob)
        ),
        "forge:invariant:a credit account's user never changes",
    )
    .await;
    // Unchanged values are no move.
    ok(
        t,
        &format!("UPDATE credit_accounts SET balance = balance WHERE user_id = {u}"),
    )
    .await;
    assert_eq!(balance(t, ada).await, ("100/100/0".to_owned(), 100));

    // Through the ledger, every kind moves it.
    for (kind, amount) in [
        ("purchase", 50),
        ("grant", 5),
        ("spend", -30),
        ("refund", 10),
        ("adjustment", -5),
        ("adjustment", 3),
    ] {
        ok(t, &ledger_sql(t, ada, kind, amount, None).await).await;
    }
    assert_eq!(balance(t, ada).await, ("133/168/35".to_owned(), 133));
    let mut after = ints(
        t,
        &format!("SELECT balance_after FROM credit_transactions WHERE user_id = {u}"),
    )
    .await;
    after.sort_unstable();
    assert_eq!(after, [100, 125, 130, 133, 135, 150, 155]);

    // A new account starts at zero: the bonus comes through the ledger.
    ok(
        t,
        &format!("DELETE FROM credit_accounts WHERE user_id = {u}"),
    )
    .await;
    assert_eq!(rows_of(t, "credit_transactions", "user_id", ada).await, 0);
    refused(
        t,
        &format!(
            "INSERT INTO credit_accounts (id, user_id, balance, lifetime_granted)
             VALUES ({}, {u}, 50, 50)",
            lit(t, Uuid::new_v4())
        ),
        "forge:invariant:a new credit account starts at zero",
    )
    .await;
    ok(
        t,
        &format!(
            "INSERT INTO credit_accounts (id, user_id) VALUES ({}, {u})",
            lit(t, Uuid::new_v4())
        ),
    )
    .await;
    assert_eq!(balance(t, ada).await, ("0/0/0".to_owned(), 0));
}

/// Ledger rows never change and are deleted only with their account; activity rows
/// likewise, with their user.
async fn append_only(t: &TestDb) {
    let ada = user(t, "ada").await;
    project(t, ada, "Weather").await;
    let u = lit(t, ada);
    for set in [
        "amount = 1000",
        "balance_after = 1000",
        "metadata = '{\"forged\":true}'",
        "reference = 'x'",
    ] {
        refused(
            t,
            &format!("UPDATE credit_transactions SET {set} WHERE user_id = {u}"),
            "forge:invariant:credit transactions never change",
        )
        .await;
    }
    refused(
        t,
        &format!("DELETE FROM credit_transactions WHERE user_id = {u}"),
        "forge:invariant:credit transactions are deleted only with their account",
    )
    .await;
    refused(
        t,
        &format!("UPDATE activity_logs SET action = 'project.forged' WHERE user_id = {u}"),
        "forge:invariant:activity logs never change",
    )
    .await;
    refused(
        t,
        &format!("DELETE FROM activity_logs WHERE user_id = {u}"),
        "forge:invariant:activity logs are deleted only with their user",
    )
    .await;
    assert_eq!(balance(t, ada).await, ("100/100/0".to_owned(), 100));
    assert_eq!(rows_of(t, "activity_logs", "user_id", ada).await, 1);
}

/// UNIQUE (account_id, idempotency_key): a retry with the same key is refused with the
/// unique violation (a `Conflict` in the service) and its balance move goes with it; a
/// retried id the same. An `ON CONFLICT DO NOTHING` retry moves nothing either (PostgreSQL
/// refuses it, SQLite skips it).
async fn idempotency(t: &TestDb) {
    let ada = user(t, "ada").await;
    let bob = user(t, "bob").await;
    let first = ledger_sql(t, ada, "spend", -30, Some("session-42")).await;
    ok(t, &first).await;
    assert_eq!(balance(t, ada).await, ("70/100/30".to_owned(), 70));

    let retry = ledger_sql(t, ada, "spend", -30, Some("session-42")).await;
    let e = refused(t, &retry, "idempotency_key").await;
    assert!(
        matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
        "a unique violation: {e:?}"
    );
    assert_eq!(balance(t, ada).await, ("70/100/30".to_owned(), 70));
    // The same id again.
    let e = exec(t, &first).await.expect_err("a retried id");
    assert!(
        matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
        "{e:?}"
    );
    assert_eq!(balance(t, ada).await, ("70/100/30".to_owned(), 70));
    // A retry that would overdraw is still answered as a retry.
    let e = exec(
        t,
        &ledger_sql(t, ada, "spend", -500, Some("session-42")).await,
    )
    .await
    .expect_err("a retry");
    assert!(
        matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
        "{e:?}"
    );

    let skip = format!("{retry} ON CONFLICT DO NOTHING");
    match exec(t, &skip).await {
        Ok(n) => assert!(!pg(t) && n == 0, "skipped on SQLite only ({n} rows)"),
        Err(e) => assert!(
            pg(t) && matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
            "{e:?}"
        ),
    }
    assert_eq!(balance(t, ada).await, ("70/100/30".to_owned(), 70));
    assert_eq!(rows_of(t, "credit_transactions", "user_id", ada).await, 2);
    assert_eq!(usage_of(t, ada).await, "0/0/0/0/30");

    // The key is per account: another account may use it.
    ok(
        t,
        &ledger_sql(t, bob, "spend", -30, Some("session-42")).await,
    )
    .await;
    assert_eq!(balance(t, bob).await, ("70/100/30".to_owned(), 70));
}

/// Sessions started, jobs completed, conversations created, tokens and credits spent are
/// counted exactly, for the right user, and never go below zero.
async fn usage(t: &TestDb) {
    let ada = user(t, "ada").await;
    let bob = user(t, "bob").await;
    let weather = project(t, ada, "Weather").await;
    let s1 = session(t, ada, weather).await;
    session(t, ada, weather).await;
    let job = Uuid::new_v4();
    ok(
        t,
        &format!(
            "INSERT INTO coding_jobs (id, session_id, prompt) VALUES ({}, {}, 'a')",
            lit(t, job),
            lit(t, s1)
        ),
    )
    .await;
    assert_eq!(usage_of(t, ada).await, "2/0/0/0/0");
    let j = lit(t, job);
    ok(
        t,
        &format!("UPDATE coding_jobs SET status = 'processing' WHERE id = {j}"),
    )
    .await;
    ok(
        t,
        &format!(
            "UPDATE coding_jobs SET status = 'completed', completed_at = {} WHERE id = {j}",
            now(t)
        ),
    )
    .await;
    // Touching a completed job's status again counts nothing.
    ok(
        t,
        &format!("UPDATE coding_jobs SET status = 'completed' WHERE id = {j}"),
    )
    .await;
    ok(
        t,
        &format!(
            "INSERT INTO coding_jobs (id, session_id, prompt, status) VALUES ({}, {}, 'b', 'completed')",
            lit(t, Uuid::new_v4()),
            lit(t, s1)
        ),
    )
    .await;
    assert_eq!(usage_of(t, ada).await, "2/2/0/0/0");

    let c1 = conversation(t, ada, "conv-1").await;
    let c2 = conversation(t, ada, "conv-2").await;
    let bobs = conversation(t, bob, "conv-bob").await;
    // Turns of two owners in one statement, and one more.
    ok(
        t,
        &format!(
            "INSERT INTO conversation_turns (id, conversation_id, turn_number, role, content, token_count)
             VALUES ({}, {}, 1, 'user', 'a', 5), ({}, {}, 2, 'assistant', 'b', 7),
                    ({}, {}, 1, 'user', 'c', 11), ({}, {}, 1, 'user', 'd', 0)",
            lit(t, Uuid::new_v4()),
            lit(t, c1),
            lit(t, Uuid::new_v4()),
            lit(t, c1),
            lit(t, Uuid::new_v4()),
            lit(t, bobs),
            lit(t, Uuid::new_v4()),
            lit(t, c2),
        ),
    )
    .await;
    ok(
        t,
        &format!(
            "INSERT INTO conversation_turns (id, conversation_id, turn_number, role, content, token_count)
             VALUES ({}, {}, 2, 'assistant', 'e', 3)",
            lit(t, Uuid::new_v4()),
            lit(t, c2)
        ),
    )
    .await;
    spend(t, ada, 10).await.expect("spend");
    spend(t, ada, 5).await.expect("spend");
    // Not spends: a purchase and a refund.
    ok(t, &ledger_sql(t, ada, "purchase", 50, None).await).await;
    ok(t, &ledger_sql(t, ada, "refund", 5, None).await).await;
    assert_eq!(usage_of(t, ada).await, "2/2/2/15/15");
    assert_eq!(usage_of(t, bob).await, "0/0/1/11/0");
    assert_eq!(rows_of(t, "usage_metrics", "user_id", ada).await, 1);

    let u = lit(t, ada);
    for counter in [
        "sessions_started",
        "jobs_completed",
        "conversations_created",
        "tokens",
        "credits_spent",
    ] {
        refused(
            t,
            &format!("UPDATE usage_metrics SET {counter} = -1 WHERE user_id = {u}"),
            "usage_metrics_",
        )
        .await;
    }
    refused(
        t,
        &format!(
            "INSERT INTO usage_metrics (id, user_id, day) SELECT {}, user_id, day FROM usage_metrics WHERE user_id = {u}",
            lit(t, Uuid::new_v4())
        ),
        "",
    )
    .await;
}

/// Every action of the list writes its activity row, with its entity; other changes write
/// none.
async fn activity(t: &TestDb) {
    let ada = user(t, "ada").await;
    let weather = project(t, ada, "Weather").await;
    let notes = project(t, ada, "Notes").await;
    let (w, n) = (lit(t, weather), lit(t, notes));
    ok(
        t,
        &format!("UPDATE projects SET name = 'Weather 2' WHERE id = {w}"),
    )
    .await;
    ok(
        t,
        &format!("UPDATE projects SET status = 'archived' WHERE id = {w}"),
    )
    .await;
    ok(
        t,
        &format!("UPDATE projects SET status = 'archived' WHERE id = {w}"),
    )
    .await;
    ok(
        t,
        &format!("UPDATE projects SET status = 'active' WHERE id = {w}"),
    )
    .await;
    ok(
        t,
        &format!("UPDATE projects SET status = 'deleted' WHERE id = {n}"),
    )
    .await;

    let s = session(t, ada, weather).await;
    let sl = lit(t, s);
    ok(
        t,
        &format!("UPDATE coding_sessions SET status = 'active' WHERE id = {sl}"),
    )
    .await;
    ok(
        t,
        &format!("UPDATE coding_sessions SET status = 'paused' WHERE id = {sl}"),
    )
    .await;
    ok(
        t,
        &format!("UPDATE coding_sessions SET status = 'completed' WHERE id = {sl}"),
    )
    .await;
    let s2 = session(t, ada, weather).await;
    ok(
        t,
        &format!(
            "UPDATE coding_sessions SET status = 'expired' WHERE id = {}",
            lit(t, s2)
        ),
    )
    .await;

    let key = key_sql(t, ada, "CLI");
    ok(t, &key).await;
    let k = format!(
        "(SELECT id FROM api_keys WHERE user_id = {} AND name = 'CLI')",
        lit(t, ada)
    );
    ok(
        t,
        &format!("UPDATE api_keys SET name = 'CLI 2' WHERE id = {k}"),
    )
    .await;
    let k = format!(
        "(SELECT id FROM api_keys WHERE user_id = {} AND name = 'CLI 2')",
        lit(t, ada)
    );
    ok(
        t,
        &format!("UPDATE api_keys SET revoked_at = {} WHERE id = {k}", now(t)),
    )
    .await;

    let batch = Uuid::new_v4();
    ok(
        t,
        &format!(
            "INSERT INTO batch_jobs (id, created_by, name, configuration)
             VALUES ({}, {}, 'Support set', '{{\"tier\":\"template\"}}')",
            lit(t, batch),
            lit(t, ada)
        ),
    )
    .await;
    let b = lit(t, batch);
    ok(
        t,
        &format!("UPDATE batch_jobs SET status = 'paused' WHERE id = {b}"),
    )
    .await;
    ok(
        t,
        &format!("UPDATE batch_jobs SET status = 'cancelled' WHERE id = {b}"),
    )
    .await;

    assert_eq!(
        activity_of(t, ada).await,
        [
            "api_key.created api_key",
            "api_key.revoked api_key",
            "batch.cancelled batch",
            "batch.created batch",
            "project.archived project",
            "project.created project",
            "project.created project",
            "project.deleted project",
            "session.ended session",
            "session.ended session",
            "session.started session",
            "session.started session",
        ]
    );
    // The entity and a little metadata.
    let row = text(
        t,
        &format!(
            "SELECT CASE WHEN entity_id = {b} THEN 'batch' ELSE 'other' END FROM activity_logs
             WHERE action = 'batch.cancelled'"
        ),
    )
    .await;
    assert_eq!(row.as_deref(), Some("batch"));
    let name = if pg(t) {
        "metadata ->> 'name'"
    } else {
        "json_extract(metadata, '$.name')"
    };
    assert_eq!(
        text(
            t,
            &format!("SELECT {name} FROM activity_logs WHERE action = 'project.deleted'")
        )
        .await
        .as_deref(),
        Some("Notes")
    );
    let status = if pg(t) {
        "metadata ->> 'status'"
    } else {
        "json_extract(metadata, '$.status')"
    };
    assert_eq!(
        text(
            t,
            &format!(
                "SELECT {status} FROM activity_logs WHERE action = 'session.ended'
                 AND entity_id = {}",
                lit(t, s2)
            )
        )
        .await
        .as_deref(),
        Some("expired")
    );
}

/// A spend that crosses the threshold (10 or more → less) notifies once; spends below it
/// do not; crossing again after a refund does. Muted or in-app off: nothing.
async fn credits_low(t: &TestDb) {
    assert_eq!(forge_db::migration::CREDITS_LOW_THRESHOLD, 10);
    let ada = user(t, "ada").await;
    spend(t, ada, 50).await.unwrap();
    spend(t, ada, 40).await.unwrap(); // 100 → 50 → 10: not below yet
    assert_eq!(credits_low_of(t, ada).await, 0);
    spend(t, ada, 1).await.unwrap(); // 10 → 9
    assert_eq!(credits_low_of(t, ada).await, 1);
    spend(t, ada, 4).await.unwrap(); // 9 → 5
    assert_eq!(credits_low_of(t, ada).await, 1);
    ok(t, &ledger_sql(t, ada, "refund", 20, None).await).await; // 25
    ok(t, &ledger_sql(t, ada, "adjustment", -20, None).await).await; // 5: not a spend
    assert_eq!(credits_low_of(t, ada).await, 1);
    ok(t, &ledger_sql(t, ada, "grant", 20, None).await).await; // 25
    spend(t, ada, 25).await.unwrap(); // 25 → 0
    assert_eq!(credits_low_of(t, ada).await, 2);
    let balance_of = if pg(t) {
        "(data ->> 'balance')::bigint"
    } else {
        "json_extract(data, '$.balance')"
    };
    assert_eq!(
        int(
            t,
            &format!(
                "SELECT min({balance_of}) FROM notifications WHERE user_id = {}",
                lit(t, ada)
            )
        )
        .await,
        0
    );
    assert_eq!(
        text(
            t,
            &format!(
                "SELECT title FROM notifications WHERE user_id = {} AND read_at IS NULL LIMIT 1",
                lit(t, ada)
            )
        )
        .await
        .as_deref(),
        Some("Your credits are running low")
    );

    for (name, set) in [
        ("bob", "muted_types = '[\"system\", \"credits_low\"]'"),
        (
            "carol",
            if pg(t) {
                "in_app_enabled = false"
            } else {
                "in_app_enabled = 0"
            },
        ),
    ] {
        let who = user(t, name).await;
        ok(
            t,
            &format!(
                "UPDATE notification_preferences SET {set} WHERE user_id = {}",
                lit(t, who)
            ),
        )
        .await;
        spend(t, who, 95).await.unwrap();
        assert_eq!(credits_low_of(t, who).await, 0, "{name}");
        assert_eq!(balance(t, who).await.1, 5);
    }
    // Without a preferences row, the default: notified.
    let dave = user(t, "dave").await;
    ok(
        t,
        &format!(
            "DELETE FROM notification_preferences WHERE user_id = {}",
            lit(t, dave)
        ),
    )
    .await;
    spend(t, dave, 95).await.unwrap();
    assert_eq!(credits_low_of(t, dave).await, 1);
}

/// At most 10 unrevoked keys per user, for every writer; a key is revoked once.
async fn api_keys(t: &TestDb) {
    let ada = user(t, "ada").await;
    let bob = user(t, "bob").await;
    for n in 0..10 {
        ok(t, &key_sql(t, ada, &format!("key {n}"))).await;
    }
    refused(t, &key_sql(t, ada, "key 10"), "forge:limit:api keys:10").await;
    // Bob is not limited by Ada's keys.
    ok(t, &key_sql(t, bob, "bobs")).await;
    // A revoked key frees a place; inserting one already revoked is not limited.
    let revoked = format!(
        "(SELECT id FROM api_keys WHERE user_id = {} AND name = 'key 0')",
        lit(t, ada)
    );
    ok(
        t,
        &format!(
            "UPDATE api_keys SET revoked_at = {} WHERE id = {revoked}",
            now(t)
        ),
    )
    .await;
    ok(t, &key_sql(t, ada, "key 10")).await;
    refused(t, &key_sql(t, ada, "key 11"), "forge:limit:api keys:10").await;

    refused(
        t,
        &format!("UPDATE api_keys SET revoked_at = NULL WHERE id = {revoked}"),
        "forge:transition:api key:revoked:active",
    )
    .await;
    refused(
        t,
        &format!(
            "UPDATE api_keys SET revoked_at = {} WHERE id = {revoked}",
            in_an_hour(t)
        ),
        "forge:transition:api key:revoked:revoked",
    )
    .await;
    // Moving an unrevoked key to a user at the limit.
    refused(
        t,
        &format!(
            "UPDATE api_keys SET user_id = {} WHERE user_id = {} AND name = 'bobs'",
            lit(t, ada),
            lit(t, bob)
        ),
        "forge:limit:api keys:10",
    )
    .await;
    assert_eq!(
        int(
            t,
            &format!(
                "SELECT count(*) FROM api_keys WHERE user_id = {} AND revoked_at IS NULL",
                lit(t, ada)
            )
        )
        .await,
        10
    );
}

/// The CHECKs of the contract.
async fn checks(t: &TestDb) {
    let ada = user(t, "ada").await;
    let u = lit(t, ada);
    // A kind's sign, and no zero.
    for (kind, amount) in [
        ("spend", 5),
        ("purchase", -5),
        ("grant", 0),
        ("refund", -1),
        ("bonus", 5),
    ] {
        let sql = ledger_sql(t, ada, kind, amount, None).await;
        let e = exec(t, &sql).await.expect_err("a bad ledger row");
        let text = e.to_string().to_lowercase();
        assert!(text.contains("check"), "{kind} {amount}: {e}");
    }
    assert_eq!(balance(t, ada).await, ("100/100/0".to_owned(), 100));
    // Ledger metadata is an object.
    let sql = ledger_sql(t, ada, "grant", 1, None)
        .await
        .replace("idempotency_key)", "idempotency_key, metadata)");
    let sql = sql.replace("NULL)", "NULL, '[1]')");
    exec(t, &sql).await.expect_err("metadata must be an object");

    // API keys: a name, not blank, at most 100 characters; scopes an array of strings.
    for name in ["", "   ", &"x".repeat(101)] {
        exec(t, &key_sql(t, ada, name))
            .await
            .expect_err("a bad key name");
    }
    let with_scopes = |scopes: &str| {
        key_sql(t, ada, "scoped")
            .replace("key_hash)", "key_hash, scopes)")
            .replacen("')", &format!("', '{scopes}')"), 1)
    };
    ok(t, &with_scopes("[\"sessions:read\"]")).await;
    for scopes in ["[1]", "{\"a\":1}", "\"read\""] {
        let sql = with_scopes(scopes);
        exec(t, &sql).await.expect_err(scopes);
    }
    ok(
        t,
        &format!("UPDATE api_keys SET name = 'renamed' WHERE user_id = {u}"),
    )
    .await;

    // Notifications: a known type, title ≤ 200, body ≤ 2000, data an object.
    let note = |kind: &str, title: &str, body: &str, data: &str| {
        format!(
            "INSERT INTO notifications (id, user_id, type, title, body, data)
             VALUES ({}, {u}, '{kind}', '{title}', '{body}', '{data}')",
            lit(t, Uuid::new_v4())
        )
    };
    ok(t, &note("system", "Hello", "Welcome", "{}")).await;
    for sql in [
        note("promo", "Hello", "Welcome", "{}"),
        note("system", &"t".repeat(201), "Welcome", "{}"),
        note("system", "Hello", &"b".repeat(2001), "{}"),
        note("system", "Hello", "Welcome", "[]"),
    ] {
        exec(t, &sql).await.expect_err("a bad notification");
    }

    // Preferences: muted_types names notification types.
    ok(
        t,
        &format!(
            "UPDATE notification_preferences SET muted_types = '[\"system\", \"batch_failed\"]' WHERE user_id = {u}"
        ),
    )
    .await;
    for muted in ["[\"promo\"]", "[1]", "{}"] {
        exec(
            t,
            &format!(
                "UPDATE notification_preferences SET muted_types = '{muted}' WHERE user_id = {u}"
            ),
        )
        .await
        .expect_err(muted);
    }

    // Activity: an action, not blank.
    exec(
        t,
        &format!(
            "INSERT INTO activity_logs (id, user_id, action) VALUES ({}, {u}, ' ')",
            lit(t, Uuid::new_v4())
        ),
    )
    .await
    .expect_err("a blank action");

    // JSON documents over 64 KiB (SQLite: the size triggers; PostgreSQL: the size CHECKs).
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(70_000));
    exec(t, &note("system", "Big", "Big", &big))
        .await
        .expect_err("a 70 KB document");
}

/// Deleting a profile deletes its account, ledger, keys, notifications, preferences, usage
/// and activity (a cascade the append-only rules let through), and nothing of anyone else.
async fn cascade(t: &TestDb) {
    let ada = user(t, "ada").await;
    let bob = user(t, "bob").await;
    for who in [ada, bob] {
        let p = project(t, who, "App").await;
        let s = session(t, who, p).await;
        ok(
            t,
            &format!(
                "UPDATE coding_sessions SET status = 'completed' WHERE id = {}",
                lit(t, s)
            ),
        )
        .await;
        conversation(t, who, &format!("conv-{who}")).await;
        spend(t, who, 95).await.expect("spend");
        ok(t, &key_sql(t, who, "CLI")).await;
        ok(
            t,
            &format!(
                "UPDATE projects SET status = 'archived' WHERE id = {}",
                lit(t, p)
            ),
        )
        .await;
    }
    const TABLES: [(&str, &str); 7] = [
        ("credit_accounts", "user_id"),
        ("credit_transactions", "user_id"),
        ("api_keys", "user_id"),
        ("notifications", "user_id"),
        ("notification_preferences", "user_id"),
        ("usage_metrics", "user_id"),
        ("activity_logs", "user_id"),
    ];
    let mut bobs = Vec::new();
    for (table, column) in TABLES {
        assert!(rows_of(t, table, column, ada).await > 0, "{table}");
        bobs.push(rows_of(t, table, column, bob).await);
    }
    ok(
        t,
        &format!("DELETE FROM profiles WHERE id = {}", lit(t, ada)),
    )
    .await;
    for (i, (table, column)) in TABLES.iter().enumerate() {
        assert_eq!(rows_of(t, table, column, ada).await, 0, "{table}");
        assert_eq!(rows_of(t, table, column, bob).await, bobs[i], "{table}");
    }
    assert_eq!(balance(t, bob).await, ("5/100/95".to_owned(), 5));
}

// ---------------------------------------------------------------------------------------
// The upgrade, both backends: profiles that exist get their account, bonus and preferences.

async fn upgrade(db: &forge_db::sea_orm::DatabaseConnection, ids: [&str; 2]) {
    let upgraded = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261201_000012_accounts")
        .expect("the accounts migration");
    Migrator::up(db, Some(u32::try_from(upgraded).unwrap()))
        .await
        .expect("migrate to the one before");
    for (n, id) in ids.iter().enumerate() {
        db.execute_unprepared(&format!(
            "INSERT INTO profiles (id, email, display_name) VALUES ({id}, 'u{n}@example.com', 'u{n}')"
        ))
        .await
        .expect("a profile before the upgrade");
    }
    Migrator::up(db, None).await.expect("upgrade");
    assert_eq!(
        query_i64(
            db,
            "SELECT count(*) FROM credit_accounts WHERE balance = 100 AND lifetime_granted = 100"
        )
        .await,
        2
    );
    assert_eq!(
        query_i64(db, "SELECT count(*) FROM credit_transactions WHERE kind = 'signup_bonus' AND amount = 100 AND balance_after = 100").await,
        2
    );
    assert_eq!(
        query_i64(db, "SELECT count(*) FROM notification_preferences").await,
        2
    );
    // And back down and up again: the same.
    Migrator::down(db, Some(1)).await.expect("down");
    Migrator::up(db, None).await.expect("up again");
    assert_eq!(
        query_i64(
            db,
            "SELECT count(*) FROM credit_accounts WHERE balance = 100"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn the_upgrade_opens_accounts_for_existing_profiles_on_sqlite() {
    let db = forge_db::connect("sqlite::memory:").await.expect("connect");
    upgrade(
        &db,
        [
            &format!("X'{}'", Uuid::new_v4().simple()),
            &format!("X'{}'", Uuid::new_v4().simple()),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_upgrade_opens_accounts_for_existing_profiles_on_postgres() {
    let t = TestDb::postgres_empty().await;
    upgrade(
        &t.owner,
        [
            &format!("'{}'", Uuid::new_v4()),
            &format!("'{}'", Uuid::new_v4()),
        ],
    )
    .await;
    t.finish().await;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL only.

/// Twenty concurrent spends of 10 from 100 credits: exactly ten go through, the balance is
/// 0 and equals the ledger; the usage counters of concurrent actions are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_spends_never_overdraw_and_counters_stay_exact() {
    let t = TestDb::postgres().await;
    let ada = user(&t, "ada").await;
    let url = t.pg_url().expect("a PostgreSQL URL");
    let mut tasks = Vec::new();
    for n in 0..20 {
        let url = url.clone();
        let sql = ledger_sql(&t, ada, "spend", -10, Some(&format!("spend-{n}"))).await;
        tasks.push(tokio::spawn(async move {
            let db = forge_db::migration::connect(&url).await.expect("connect");
            let result = db.execute_unprepared(&sql).await;
            db.close().await.ok();
            result.map(|_| ()).map_err(|e| e.to_string())
        }));
    }
    let mut went_through = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(()) => went_through += 1,
            Err(e) => assert!(e.contains("forge:limit:credits:0"), "{e}"),
        }
    }
    assert_eq!(went_through, 10);
    assert_eq!(balance(&t, ada).await, ("0/100/100".to_owned(), 0));
    assert_eq!(usage_of(&t, ada).await, "0/0/0/0/100");
    assert_eq!(credits_low_of(&t, ada).await, 1);

    let mut tasks = Vec::new();
    for n in 0..12 {
        let url = url.clone();
        let sql = format!(
            "INSERT INTO conversations (conversation_id, created_by, tier, persona, emotion,
                                        topic, intent, tone)
             VALUES ('conv-{n}', '{ada}', 'template', 'p', 'e', 't', 'i', 'tone')"
        );
        tasks.push(tokio::spawn(async move {
            let db = forge_db::migration::connect(&url).await.expect("connect");
            db.execute_unprepared(&sql).await.expect("a conversation");
            db.close().await.ok();
        }));
    }
    for task in tasks {
        task.await.expect("join");
    }
    assert_eq!(usage_of(&t, ada).await, "0/0/12/0/100");
    t.finish().await;
}

/// As the service (`service_role`, no row-level security): the ledger rules hold.
#[tokio::test]
async fn the_service_role_is_held_to_the_ledger_too() {
    let t = TestDb::postgres().await;
    let ada = user(&t, "ada").await;
    let as_service = |sql: String| format!("SET LOCAL ROLE service_role; {sql}");
    for (sql, needle) in [
        (
            format!("UPDATE public.credit_accounts SET balance = 1000 WHERE user_id = '{ada}'"),
            "forge:invariant:a credit balance moves only through the ledger",
        ),
        (
            format!("DELETE FROM public.credit_transactions WHERE user_id = '{ada}'"),
            "forge:invariant:credit transactions are deleted only with their account",
        ),
        (
            ledger_sql(&t, ada, "spend", -101, None).await,
            "forge:limit:credits:100",
        ),
    ] {
        let txn = forge_db::sea_orm::TransactionTrait::begin(&t.owner)
            .await
            .unwrap();
        let e = txn
            .execute_unprepared(&as_service(sql.clone()))
            .await
            .expect_err(&sql);
        assert!(e.to_string().contains(needle), "{sql}: {e}");
        txn.rollback().await.ok();
    }
    // And what it may do: spend, delete an account (its ledger goes with it).
    let txn = forge_db::sea_orm::TransactionTrait::begin(&t.owner)
        .await
        .unwrap();
    txn.execute_unprepared(&as_service(ledger_sql(&t, ada, "spend", -60, None).await))
        .await
        .expect("a spend as the service");
    txn.commit().await.unwrap();
    assert_eq!(balance(&t, ada).await, ("40/100/60".to_owned(), 40));
    t.finish().await;
}

/// The first column's texts, in the order of the query.
async fn rows(t: &TestDb, sql: &str) -> Vec<String> {
    t.owner
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("text"))
        .collect()
}

/// The same, sorted bytewise (whatever the database's collation).
async fn sorted_rows(t: &TestDb, sql: &str) -> Vec<String> {
    let mut v = rows(t, sql).await;
    v.sort();
    v
}

/// The contract's columns (types, nullability, defaults), foreign keys, unique constraints
/// and indexes, as PostgreSQL's catalog has them.
#[tokio::test]
async fn the_contracts_columns_are_the_migrated_ones() {
    let t = TestDb::postgres().await;
    let columns = rows(
        &t,
        "SELECT table_name || '.' || column_name || ' ' || data_type || ' '
                || CASE is_nullable WHEN 'YES' THEN 'NULL' ELSE 'NOT NULL' END
                || coalesce(' DEFAULT ' || column_default, '')
         FROM information_schema.columns
         WHERE table_schema = 'public'
           AND table_name IN ('credit_accounts', 'credit_transactions', 'api_keys', 'notifications',
                              'notification_preferences', 'usage_metrics', 'activity_logs')
         ORDER BY array_position(ARRAY['credit_accounts', 'credit_transactions', 'api_keys',
                                       'notifications', 'notification_preferences',
                                       'usage_metrics', 'activity_logs'], table_name::text),
                  ordinal_position",
    )
    .await;
    let expected = [
        "credit_accounts.id uuid NOT NULL DEFAULT gen_random_uuid()",
        "credit_accounts.user_id uuid NOT NULL",
        "credit_accounts.balance bigint NOT NULL DEFAULT 0",
        "credit_accounts.lifetime_granted bigint NOT NULL DEFAULT 0",
        "credit_accounts.lifetime_spent bigint NOT NULL DEFAULT 0",
        "credit_accounts.created_at timestamp with time zone NOT NULL DEFAULT now()",
        "credit_accounts.updated_at timestamp with time zone NOT NULL DEFAULT now()",
        "credit_transactions.id uuid NOT NULL DEFAULT gen_random_uuid()",
        "credit_transactions.account_id uuid NOT NULL",
        "credit_transactions.user_id uuid NOT NULL",
        "credit_transactions.amount bigint NOT NULL",
        "credit_transactions.kind text NOT NULL",
        "credit_transactions.balance_after bigint NOT NULL DEFAULT 0",
        "credit_transactions.reference text NULL",
        "credit_transactions.idempotency_key text NULL",
        "credit_transactions.metadata jsonb NOT NULL DEFAULT '{}'::jsonb",
        "credit_transactions.created_at timestamp with time zone NOT NULL DEFAULT now()",
        "api_keys.id uuid NOT NULL DEFAULT gen_random_uuid()",
        "api_keys.user_id uuid NOT NULL",
        "api_keys.name text NOT NULL",
        "api_keys.key_prefix text NOT NULL",
        "api_keys.key_hash text NOT NULL",
        "api_keys.scopes jsonb NOT NULL DEFAULT '[]'::jsonb",
        "api_keys.last_used_at timestamp with time zone NULL",
        "api_keys.expires_at timestamp with time zone NULL",
        "api_keys.revoked_at timestamp with time zone NULL",
        "api_keys.created_at timestamp with time zone NOT NULL DEFAULT now()",
        "api_keys.updated_at timestamp with time zone NOT NULL DEFAULT now()",
        "notifications.id uuid NOT NULL DEFAULT gen_random_uuid()",
        "notifications.user_id uuid NOT NULL",
        "notifications.type text NOT NULL",
        "notifications.title text NOT NULL",
        "notifications.body text NOT NULL",
        "notifications.data jsonb NOT NULL DEFAULT '{}'::jsonb",
        "notifications.read_at timestamp with time zone NULL",
        "notifications.created_at timestamp with time zone NOT NULL DEFAULT now()",
        "notification_preferences.user_id uuid NOT NULL",
        "notification_preferences.email_enabled boolean NOT NULL DEFAULT true",
        "notification_preferences.in_app_enabled boolean NOT NULL DEFAULT true",
        "notification_preferences.muted_types jsonb NOT NULL DEFAULT '[]'::jsonb",
        "notification_preferences.created_at timestamp with time zone NOT NULL DEFAULT now()",
        "notification_preferences.updated_at timestamp with time zone NOT NULL DEFAULT now()",
        "usage_metrics.id uuid NOT NULL DEFAULT gen_random_uuid()",
        "usage_metrics.user_id uuid NOT NULL",
        "usage_metrics.day date NOT NULL",
        "usage_metrics.sessions_started integer NOT NULL DEFAULT 0",
        "usage_metrics.jobs_completed integer NOT NULL DEFAULT 0",
        "usage_metrics.conversations_created integer NOT NULL DEFAULT 0",
        "usage_metrics.tokens bigint NOT NULL DEFAULT 0",
        "usage_metrics.credits_spent bigint NOT NULL DEFAULT 0",
        "usage_metrics.created_at timestamp with time zone NOT NULL DEFAULT now()",
        "usage_metrics.updated_at timestamp with time zone NOT NULL DEFAULT now()",
        "activity_logs.id uuid NOT NULL DEFAULT gen_random_uuid()",
        "activity_logs.user_id uuid NOT NULL",
        "activity_logs.action text NOT NULL",
        "activity_logs.entity_type text NULL",
        "activity_logs.entity_id uuid NULL",
        "activity_logs.metadata jsonb NOT NULL DEFAULT '{}'::jsonb",
        "activity_logs.created_at timestamp with time zone NOT NULL DEFAULT now()",
    ];
    assert_eq!(columns, expected);

    let constraints = sorted_rows(
        &t,
        "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
         FROM pg_constraint
         WHERE contype IN ('f', 'u', 'p')
           AND conrelid::regclass::text IN ('credit_accounts', 'credit_transactions', 'api_keys',
                                            'notifications', 'notification_preferences',
                                            'usage_metrics', 'activity_logs')",
    )
    .await;
    let expected = [
        "activity_logs activity_logs_pkey PRIMARY KEY (id)",
        "activity_logs activity_logs_user_id_fkey FOREIGN KEY (user_id) REFERENCES profiles(id) ON DELETE CASCADE",
        "api_keys api_keys_key_hash_key UNIQUE (key_hash)",
        "api_keys api_keys_key_prefix_key UNIQUE (key_prefix)",
        "api_keys api_keys_pkey PRIMARY KEY (id)",
        "api_keys api_keys_user_id_fkey FOREIGN KEY (user_id) REFERENCES profiles(id) ON DELETE CASCADE",
        "credit_accounts credit_accounts_pkey PRIMARY KEY (id)",
        "credit_accounts credit_accounts_user_id_fkey FOREIGN KEY (user_id) REFERENCES profiles(id) ON DELETE CASCADE",
        "credit_accounts credit_accounts_user_id_key UNIQUE (user_id)",
        "credit_transactions credit_transactions_account_id_fkey FOREIGN KEY (account_id) REFERENCES credit_accounts(id) ON DELETE CASCADE",
        "credit_transactions credit_transactions_account_id_idempotency_key_key UNIQUE (account_id, idempotency_key)",
        "credit_transactions credit_transactions_pkey PRIMARY KEY (id)",
        "notification_preferences notification_preferences_pkey PRIMARY KEY (user_id)",
        "notification_preferences notification_preferences_user_id_fkey FOREIGN KEY (user_id) REFERENCES profiles(id) ON DELETE CASCADE",
        "notifications notifications_pkey PRIMARY KEY (id)",
        "notifications notifications_user_id_fkey FOREIGN KEY (user_id) REFERENCES profiles(id) ON DELETE CASCADE",
        "usage_metrics usage_metrics_pkey PRIMARY KEY (id)",
        "usage_metrics usage_metrics_user_id_day_key UNIQUE (user_id, day)",
        "usage_metrics usage_metrics_user_id_fkey FOREIGN KEY (user_id) REFERENCES profiles(id) ON DELETE CASCADE",
    ];
    assert_eq!(constraints, expected);

    let indexes = sorted_rows(
        &t,
        "SELECT indexname || ' ' || substring(indexdef FROM ' USING btree (.*)$')
         FROM pg_indexes WHERE schemaname = 'public' AND indexname LIKE 'idx\\_%'
           AND tablename IN ('credit_accounts', 'credit_transactions', 'api_keys', 'notifications',
                             'notification_preferences', 'usage_metrics', 'activity_logs')",
    )
    .await;
    let expected = [
        "idx_activity_logs_user_id_keyset (user_id, created_at DESC, id DESC)",
        "idx_api_keys_user_id (user_id)",
        "idx_credit_transactions_account_id_keyset (account_id, created_at DESC, id DESC)",
        "idx_credit_transactions_user_id (user_id)",
        "idx_notifications_unread (user_id) WHERE (read_at IS NULL)",
        "idx_notifications_user_id_keyset (user_id, created_at DESC, id DESC)",
    ];
    assert_eq!(indexes, expected);
    t.finish().await;
}
