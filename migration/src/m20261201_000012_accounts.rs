//! Accounts (seed 004; SCHEMA.md "Accounts (seed 004)"): `credit_accounts`, their
//! append-only ledger `credit_transactions`, `api_keys`, `notifications`,
//! `notification_preferences`, the daily `usage_metrics` and the append-only
//! `activity_logs`.
//!
//! On both backends (PostgreSQL: `sql/accounts_up.sql`; SQLite: `sql/accounts_sqlite_up.sql`,
//! raising the same `forge:<kind>:…` messages):
//! - the columns, defaults, CHECKs, foreign keys (`ON DELETE CASCADE` to `profiles`, and
//!   the ledger to its account), UNIQUEs and indexes of the contract, with the keyset
//!   indexes `(account_id | user_id, created_at DESC, id DESC)` of the ledger, the
//!   notifications and the activity log, and the partial index of unread notifications.
//!   JSON documents are at most [`JSON_MAX_BYTES`]; `metadata` and `data` are JSON
//!   objects, `scopes` a JSON array of strings, `muted_types` a JSON array of notification
//!   types;
//! - **signup**: an `AFTER INSERT` trigger on `profiles` opens the credit account (balance
//!   0), inserts the `signup_bonus` ledger row of [`SIGNUP_BONUS_CREDITS`] (idempotency
//!   key `signup_bonus`) and the default notification preferences, in the transaction that
//!   inserts the profile (Forge's `profiles::create` and Supabase's `on_auth_user_created`
//!   alike). The migration does the same for the profiles that exist;
//! - **the ledger is the only way to move a balance**: inserting a `credit_transactions`
//!   row moves its account's `balance` by `amount` (and `lifetime_granted` by a positive
//!   amount, `lifetime_spent` by a negative one), in the same statement, and records the
//!   balance after it in `balance_after` (whatever the writer gave; it defaults to 0).
//!   Nothing else may change `balance` or `lifetime_*` (PostgreSQL: only from inside the
//!   ledger's trigger, trigger depth 2 or more; SQLite: only to what the ledger sums to),
//!   nor an account's user; a new account starts at zero. A `spend` is negative,
//!   `signup_bonus`, `purchase`, `grant` and `refund` positive, an `adjustment` either
//!   (a CHECK); `user_id` is the account's user. Ledger rows and activity rows never change
//!   and are deleted only with their account or user (a cascade);
//! - **idempotency**: `UNIQUE (account_id, idempotency_key)`. A retry with a taken key
//!   (or id) fails with the unique violation, and its balance move with it. On PostgreSQL
//!   the ledger's trigger raises that violation itself (SQLSTATE 23505, the constraint
//!   named) before it moves anything, so even `INSERT … ON CONFLICT DO NOTHING` of a retry
//!   is refused rather than keeping a move without its row: write ledger rows with plain
//!   inserts. On SQLite `ON CONFLICT DO NOTHING` skips the row and moves nothing;
//! - **credits_low**: a `spend` that takes the balance from [`CREDITS_LOW_THRESHOLD`] or
//!   more to less inserts a `credits_low` notification, unless the user's preferences
//!   have `in_app_enabled = false` or mute `credits_low`;
//! - **usage counters**, one `usage_metrics` row per user and UTC day, upserted by
//!   triggers in the transaction of the action: `sessions_started` (+1 per session
//!   inserted), `jobs_completed` (+1 when a job is inserted as, or becomes, `completed`;
//!   the session's user), `conversations_created` (+1 per conversation, `created_by`),
//!   `tokens` (+`token_count` of the turns inserted, the conversation's owner),
//!   `credits_spent` (+`-amount` per `spend`). Counters are ≥ 0 (CHECKs);
//! - **activity**: `activity_logs` rows for `project.created`, `project.archived`,
//!   `project.deleted` (the status change), `session.started`, `session.ended`
//!   (completed, failed or expired), `api_key.created`, `api_key.revoked`,
//!   `batch.created`, `batch.cancelled`, with `entity_type` / `entity_id` and a small
//!   `metadata` (name, status, key prefix). Only inserts and status changes write usage
//!   and activity: deletes write nothing, so erasing a user (a cascade through every
//!   table) never inserts a row for them;
//! - **API keys**: `revoked_at` goes from NULL to a value once and never changes again,
//!   for every role; at most [`MAX_UNREVOKED_API_KEYS`] unrevoked keys per user (the
//!   owner's profile row is locked on PostgreSQL, so concurrent creations queue).
//!
//! Messages (forge-service maps them by kind, `service/src/error.rs`):
//!
//! | message | when |
//! |---|---|
//! | `forge:limit:credits[:<balance>]` | a ledger row would take the balance below zero (PostgreSQL adds the balance it had; SQLite's `RAISE` takes only a literal) |
//! | `forge:not_found:credit account[:<id>]` | a ledger row names no account (PostgreSQL adds the id) |
//! | `forge:conflict:user_id … the credit account …` | a ledger row's `user_id` is not its account's user |
//! | `forge:invariant:a credit balance moves only through the ledger (credit_transactions)` | `balance` / `lifetime_*` written directly |
//! | `forge:invariant:a new credit account starts at zero; its balance follows its ledger` | an account inserted with a balance |
//! | `forge:invariant:a credit account's user never changes` | `credit_accounts.user_id` changed |
//! | `forge:invariant:credit transactions never change` / `… are deleted only with their account` | a ledger row updated / deleted |
//! | `forge:invariant:activity logs never change` / `… are deleted only with their user` | an activity row updated / deleted |
//! | `forge:limit:api keys:10` | an 11th unrevoked key |
//! | `forge:transition:api key:revoked:active` / `…:revoked:revoked` | un-revoking a key / changing `revoked_at` once set |
//! | `forge:invalid:scopes:…`, `forge:invalid:muted_types:…` | SQLite only (PostgreSQL: the CHECKs `api_keys_scopes_check`, `notification_preferences_muted_types_check`) |
//! | unique violation `credit_transactions_account_id_idempotency_key_key` / `credit_transactions_pkey` | a retried ledger row |
//!
//! PostgreSQL also gets the `updated_at` triggers, row-level security (enabled and forced)
//! and the privileges of the contract: users read their own rows of all seven tables
//! (`api_keys`: every column but `key_hash`), rename and revoke their keys, mark their
//! notifications read (`read_at`) and delete them, and change their preferences
//! (`email_enabled`, `in_app_enabled`, `muted_types`); `service_role` reads and writes all
//! seven (within the rules above); `anon` gets nothing. Every function has
//! `search_path = ''` and nobody may execute it. The signup, ledger and guard triggers run
//! as the writer; the usage and activity triggers as the owner (`SECURITY DEFINER`), since
//! end users act but may not write their counters or their log.
//!
//! `down` drops the seven tables, then the triggers on the older tables and the functions.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::schema::{SQLITE_NOW_EXACT, TableDef, drop_tables};

/// A `spend` that takes a balance from at least this many credits to fewer inserts a
/// `credits_low` notification.
pub const CREDITS_LOW_THRESHOLD: i64 = 10;

/// The credits a new account starts with: its `signup_bonus` ledger row.
pub const SIGNUP_BONUS_CREDITS: i64 = 100;

/// The most unrevoked API keys a user may hold.
pub const MAX_UNREVOKED_API_KEYS: i64 = 10;

/// Tables of this migration, parents first.
const TABLES: &[&str] = &[
    "credit_accounts",
    "credit_transactions",
    "api_keys",
    "notifications",
    "notification_preferences",
    "usage_metrics",
    "activity_logs",
];

/// Every JSON column (the size cap applies to each).
const JSON_COLUMNS: &[(&str, &str)] = &[
    ("credit_transactions", "metadata"),
    ("api_keys", "scopes"),
    ("notifications", "data"),
    ("notification_preferences", "muted_types"),
    ("activity_logs", "metadata"),
];

/// `credit_transactions.kind`.
const CREDIT_KINDS: &[&str] = &[
    "signup_bonus",
    "purchase",
    "grant",
    "spend",
    "refund",
    "adjustment",
];

/// `notifications.type`, and what `notification_preferences.muted_types` may name.
const NOTIFICATION_TYPES: &[&str] = &[
    "session_ready",
    "session_failed",
    "batch_completed",
    "batch_failed",
    "credits_low",
    "system",
];

/// SQLite: a new random (version 4, RFC 4122 variant) UUID as the 16-byte BLOB SeaORM
/// stores, evaluated per row. Built from `randomblob` and `char` (byte 6 is `0x4_`, byte 8
/// the second byte of the UTF-8 encoding of U+0080…U+00BF, `0x80`–`0xBF`) rather than
/// `unhex`, which SQLite has only since 3.41: a database Forge migrated stays usable with
/// the older `sqlite3` shells and tools that still ship.
const SQLITE_NEW_UUID: &str = "CAST(randomblob(6) || CAST(char(64 + (random() & 15)) AS BLOB) \
     || randomblob(1) || substr(CAST(char(128 + (random() & 63)) AS BLOB), 2, 1) \
     || randomblob(7) AS BLOB)";

/// Creates the account tables with their rules.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// Fills the placeholders both scripts share.
fn fill(sql: &str) -> String {
    sql.replace("{signup_bonus}", &SIGNUP_BONUS_CREDITS.to_string())
        .replace("{credits_low}", &CREDITS_LOW_THRESHOLD.to_string())
        .replace("{max_api_keys}", &MAX_UNREVOKED_API_KEYS.to_string())
}

/// `'a', 'b', …`: an SQL list of `values`.
fn sql_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// PostgreSQL's script.
fn postgres_up() -> String {
    fill(include_str!("sql/accounts_up.sql"))
}

/// SQLite's triggers and upgrade, then the JSON caps.
fn sqlite_up() -> String {
    let mut sql = fill(include_str!("sql/accounts_sqlite_up.sql"))
        .replace("{now}", SQLITE_NOW_EXACT)
        .replace("{today}", "date('now')")
        .replace("{uuid}", SQLITE_NEW_UUID)
        .replace("{notification_types}", &sql_list(NOTIFICATION_TYPES));
    sql.push_str(&crate::schema::sqlite_json_caps(JSON_COLUMNS));
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let postgres = backend == DbBackend::Postgres;
        let object = |column: &str| {
            if postgres {
                format!("jsonb_typeof({column}) = 'object'")
            } else {
                format!("json_valid({column}) AND json_type({column}) = 'object'")
            }
        };
        let array = |column: &str| {
            if postgres {
                format!("jsonb_typeof({column}) = 'array'")
            } else {
                format!("json_valid({column}) AND json_type({column}) = 'array'")
            }
        };
        // SQLite's CHECKs cannot look inside a document: its triggers check the elements.
        let strings = if postgres {
            format!(
                "{} AND NOT jsonb_path_exists(scopes, '$[*] ? (@.type() != \"string\")')",
                array("scopes")
            )
        } else {
            array("scopes")
        };
        let muted = if postgres {
            let types: Vec<String> = NOTIFICATION_TYPES
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect();
            format!(
                "{} AND muted_types <@ '[{}]'::jsonb",
                array("muted_types"),
                types.join(", ")
            )
        } else {
            array("muted_types")
        };

        TableDef::new(backend, "credit_accounts")
            .exact_now()
            .uuid("user_id")
            .big_integer_default("balance", 0)
            .big_integer_default("lifetime_granted", 0)
            .big_integer_default("lifetime_spent", 0)
            .timestamps()
            .references("user_id", "profiles", ForeignKeyAction::Cascade)
            .unique(&["user_id"])
            .check("balance_check", "balance >= 0")
            .check("lifetime_granted_check", "lifetime_granted >= 0")
            .check("lifetime_spent_check", "lifetime_spent >= 0")
            .check(
                "lifetime_check",
                "balance = lifetime_granted - lifetime_spent",
            )
            .create(manager)
            .await?;

        TableDef::new(backend, "credit_transactions")
            .exact_now()
            .uuid("account_id")
            .uuid("user_id")
            .big_integer("amount")
            .text("kind")
            .big_integer_default("balance_after", 0)
            .text_null("reference")
            .text_null("idempotency_key")
            .jsonb_default("metadata", "{}")
            .timestamp_now("created_at")
            .references("account_id", "credit_accounts", ForeignKeyAction::Cascade)
            .unique(&["account_id", "idempotency_key"])
            .one_of("kind", CREDIT_KINDS)
            .check(
                "amount_check",
                "amount <> 0 AND (kind = 'adjustment' OR (kind = 'spend' AND amount < 0) \
                 OR (kind <> 'spend' AND amount > 0))",
            )
            .check("balance_after_check", "balance_after >= 0")
            .check("metadata_check", &object("metadata"))
            .index(
                "account_id_keyset",
                "account_id, created_at DESC, id DESC",
                None,
            )
            .index("user_id", "user_id", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "api_keys")
            .exact_now()
            .uuid("user_id")
            .text("name")
            .text("key_prefix")
            .text("key_hash")
            .jsonb_default("scopes", "[]")
            .timestamp_null("last_used_at")
            .timestamp_null("expires_at")
            .timestamp_null("revoked_at")
            .timestamps()
            .references("user_id", "profiles", ForeignKeyAction::Cascade)
            .unique(&["key_prefix"])
            .unique(&["key_hash"])
            .check(
                "name_check",
                "length(trim(name)) > 0 AND length(name) <= 100",
            )
            .check("scopes_check", &strings)
            .index("user_id", "user_id", None)
            .create(manager)
            .await?;

        TableDef::new(backend, "notifications")
            .exact_now()
            .uuid("user_id")
            .text("type")
            .text("title")
            .text("body")
            .jsonb_default("data", "{}")
            .timestamp_null("read_at")
            .timestamp_now("created_at")
            .references("user_id", "profiles", ForeignKeyAction::Cascade)
            .one_of("type", NOTIFICATION_TYPES)
            .check("title_check", "length(title) <= 200")
            .check("body_check", "length(body) <= 2000")
            .check("data_check", &object("data"))
            .index("user_id_keyset", "user_id, created_at DESC, id DESC", None)
            .index("unread", "user_id", Some("read_at IS NULL"))
            .create(manager)
            .await?;

        TableDef::with_uuid_key(backend, "notification_preferences", "user_id")
            .exact_now()
            .boolean_default("email_enabled", true)
            .boolean_default("in_app_enabled", true)
            .jsonb_default("muted_types", "[]")
            .timestamps()
            .references("user_id", "profiles", ForeignKeyAction::Cascade)
            .check("muted_types_check", &muted)
            .create(manager)
            .await?;

        let mut usage = TableDef::new(backend, "usage_metrics");
        usage.exact_now();
        usage
            .uuid("user_id")
            .date("day")
            .integer_default("sessions_started", 0)
            .integer_default("jobs_completed", 0)
            .integer_default("conversations_created", 0)
            .big_integer_default("tokens", 0)
            .big_integer_default("credits_spent", 0)
            .timestamps()
            .references("user_id", "profiles", ForeignKeyAction::Cascade)
            .unique(&["user_id", "day"]);
        for counter in [
            "sessions_started",
            "jobs_completed",
            "conversations_created",
            "tokens",
            "credits_spent",
        ] {
            usage.check(&format!("{counter}_check"), &format!("{counter} >= 0"));
        }
        usage.create(manager).await?;

        TableDef::new(backend, "activity_logs")
            .exact_now()
            .uuid("user_id")
            .text("action")
            .text_null("entity_type")
            .uuid_null("entity_id")
            .jsonb_default("metadata", "{}")
            .timestamp_now("created_at")
            .references("user_id", "profiles", ForeignKeyAction::Cascade)
            .check(
                "action_check",
                "length(trim(action)) > 0 AND length(action) <= 100",
            )
            .check("metadata_check", &object("metadata"))
            .index("user_id_keyset", "user_id, created_at DESC, id DESC", None)
            .create(manager)
            .await?;

        let sql = match backend {
            DbBackend::Postgres => postgres_up(),
            DbBackend::Sqlite => sqlite_up(),
            _ => return Ok(()),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            // The triggers on the older tables (those on the seven go with them).
            let drop = crate::schema::sqlite_drop_triggers(&sqlite_up());
            manager.get_connection().execute_unprepared(&drop).await?;
        }
        // Dropping a table drops its triggers, policies and grants (SQLite: its triggers).
        let children_first: Vec<&str> = TABLES.iter().rev().copied().collect();
        drop_tables(manager, &children_first).await?;
        crate::postgres_only(manager, include_str!("sql/accounts_down.sql")).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_entity::JSON_MAX_BYTES;

    #[test]
    fn every_placeholder_is_filled() {
        for sql in [postgres_up(), sqlite_up()] {
            for placeholder in [
                "{signup_bonus}",
                "{credits_low}",
                "{max_api_keys}",
                "{now}",
                "{today}",
                "{uuid}",
                "{notification_types}",
            ] {
                assert!(!sql.contains(placeholder), "{placeholder} left in:\n{sql}");
            }
        }
        assert!(postgres_up().contains("'forge:limit:api keys:10'"));
        assert!(postgres_up().contains("before >= 10 AND after < 10"));
    }

    /// Every `RAISE` of SQLite's triggers takes a string literal: an expression there
    /// (allowed since SQLite 3.47) makes the whole schema unreadable for older SQLite.
    #[test]
    fn sqlite_raises_only_literal_messages() {
        let up = sqlite_up();
        let mut raises = 0;
        for (at, _) in up.match_indices("RAISE(ABORT, ") {
            raises += 1;
            let rest = &up[at + "RAISE(ABORT, ".len()..];
            let snippet: String = rest.chars().take(60).collect();
            assert!(rest.starts_with('\''), "{snippet}");
            // The literal ends at a quote not followed by another (an escaped quote).
            let body = &rest[1..];
            let mut end = None;
            let bytes = body.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    end = Some(i);
                    break;
                }
                i += 1;
            }
            let end = end.expect("a closed literal");
            assert!(body[end + 1..].starts_with(')'), "not a literal: {snippet}");
        }
        assert!(raises > 15, "{raises}");
        assert!(!up.contains("unhex("), "unhex needs SQLite 3.41");
    }

    #[test]
    fn sqlite_triggers_cover_every_json_column_and_down_drops_them() {
        let up = sqlite_up();
        for (table, column) in JSON_COLUMNS {
            assert!(
                up.contains(&format!("{table}_{column}_size_insert")),
                "{up}"
            );
            assert!(
                up.contains(&format!("{table}_{column}_size_update")),
                "{up}"
            );
        }
        let created = up.matches("CREATE TRIGGER ").count();
        let dropped = crate::schema::sqlite_drop_triggers(&up);
        assert_eq!(dropped.lines().count(), created);
        // Every CREATE TRIGGER starts a line, so that `down` finds it.
        assert_eq!(up.matches("\nCREATE TRIGGER ").count(), created);
    }

    #[test]
    fn postgres_caps_every_json_column() {
        let up = postgres_up();
        for (table, column) in JSON_COLUMNS {
            assert!(
                up.contains(&format!(
                    "{table}_{column}_size_check\n  CHECK (octet_length({column}::text) <= {JSON_MAX_BYTES})"
                )),
                "{table}.{column}"
            );
        }
    }

    #[test]
    fn every_postgres_function_is_revoked_and_dropped() {
        let up = postgres_up();
        let down = include_str!("sql/accounts_down.sql");
        for line in up.lines() {
            let Some(rest) = line.strip_prefix("CREATE FUNCTION public.") else {
                continue;
            };
            let name = rest.split('(').next().unwrap_or_default();
            assert!(
                up.contains(&format!("REVOKE ALL ON FUNCTION public.{name}() FROM PUBLIC, anon, authenticated, service_role;")),
                "{name} is executable"
            );
            assert!(
                down.contains(&format!("DROP FUNCTION IF EXISTS public.{name}();")),
                "{name} is not dropped"
            );
        }
    }
}
