//! Signup opens the account (SCHEMA.md "Accounts (seed 004)"): with every new profile the
//! database creates, in the same transaction, the credit account holding 100 credits
//! recorded by exactly one `signup_bonus` ledger row, and the default notification
//! preferences — whether the profile comes from `profiles::create` (SQLite, plain
//! PostgreSQL) or from Supabase's `on_auth_user_created` (a Supabase-like PostgreSQL).
//! A signup that is refused or rolled back leaves none of it.

mod common;

use common::{TestDb, query_i64};
use forge_db::entity::credit_transactions::CreditKind;
use forge_db::entity::ids::ProfileId;
use forge_db::sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use forge_db::service::profiles::{self, NewProfile};
use forge_db::service::{Actor, ForgeError, PageRequest, credits, notifications};
use forge_db::{Migrator, MigratorTrait};
use serde_json::json;

on_both_backends! {
    signup_opens_the_account => signup_opens_the_account;
    signup_is_one_transaction => signup_is_one_transaction;
    racing_signups_each_get_one_bonus => racing_signups_each_get_one_bonus;
}

/// The rows of the three account tables, as the database's owner counts them:
/// `(credit_accounts, credit_transactions, notification_preferences)`.
async fn account_rows<C: ConnectionTrait>(db: &C) -> (i64, i64, i64) {
    (
        query_i64(db, "SELECT count(*) FROM credit_accounts").await,
        query_i64(db, "SELECT count(*) FROM credit_transactions").await,
        query_i64(db, "SELECT count(*) FROM notification_preferences").await,
    )
}

/// What a new user must have, read through the repositories as `actor`.
async fn assert_opened<C: forge_db::service::Connection>(db: &C, actor: Actor, user: ProfileId) {
    let account = credits::balance(db, actor, user).await.expect("account");
    assert_eq!(account.user_id, user);
    assert_eq!(
        (
            account.balance,
            account.lifetime_granted,
            account.lifetime_spent
        ),
        (100, 100, 0)
    );
    let ledger = credits::history(db, actor, user, &PageRequest::first())
        .await
        .expect("ledger");
    assert_eq!(ledger.items.len(), 1, "exactly one ledger row: {ledger:?}");
    let bonus = &ledger.items[0];
    assert_eq!(bonus.kind, CreditKind::SignupBonus);
    assert_eq!((bonus.amount, bonus.balance_after), (100, 100));
    assert_eq!((bonus.account_id, bonus.user_id), (account.id, user));
    let preferences = notifications::preferences(db, actor, user)
        .await
        .expect("preferences");
    assert!(preferences.email_enabled && preferences.in_app_enabled);
    assert_eq!(preferences.muted_types, json!([]));
}

async fn signup_opens_the_account(t: &TestDb) {
    let db = &t.db;
    let ada = profiles::create(db, Actor::Service, NewProfile::new("ada@example.com"))
        .await
        .unwrap();
    assert_opened(db, Actor::User(ada.id), ada.id).await;
    assert_opened(db, Actor::Service, ada.id).await;
    assert_eq!(account_rows(&t.owner).await, (1, 1, 1));
}

async fn signup_is_one_transaction(t: &TestDb) {
    let db = &t.db;
    // Inside a caller's transaction the account is there with the profile; rolled back,
    // none of it is.
    let txn = db.begin().await.unwrap();
    let ghost = profiles::create(&txn, Actor::Service, NewProfile::new("ghost@example.com"))
        .await
        .unwrap();
    assert_opened(&txn, Actor::Service, ghost.id).await;
    txn.rollback().await.unwrap();
    assert_eq!(account_rows(&t.owner).await, (0, 0, 0));
    let gone = credits::balance(db, Actor::Service, ghost.id).await;
    assert!(matches!(gone, Err(ForgeError::NotFound { .. })), "{gone:?}");

    // A committed one keeps them; a refused signup (the email is taken, or the id) adds
    // nothing.
    let ada = profiles::create(db, Actor::Service, NewProfile::new("ada@example.com"))
        .await
        .unwrap();
    let taken = profiles::create(db, Actor::Service, NewProfile::new(" ADA@example.com ")).await;
    assert!(
        matches!(taken, Err(ForgeError::Conflict { .. })),
        "{taken:?}"
    );
    let same_id = profiles::create(
        db,
        Actor::Service,
        NewProfile {
            id: Some(ada.id),
            ..NewProfile::new("other@example.com")
        },
    )
    .await;
    assert!(
        matches!(same_id, Err(ForgeError::Conflict { .. })),
        "{same_id:?}"
    );
    let by_user = profiles::create(db, Actor::User(ada.id), NewProfile::new("u@example.com")).await;
    assert!(
        matches!(by_user, Err(ForgeError::Forbidden { .. })),
        "{by_user:?}"
    );
    assert_eq!(account_rows(&t.owner).await, (1, 1, 1));
    assert_opened(db, Actor::User(ada.id), ada.id).await;
}

async fn racing_signups_each_get_one_bonus(t: &TestDb) {
    const USERS: usize = 8;
    let mut tasks = Vec::new();
    for n in 0..USERS {
        let db: DatabaseConnection = t.db.clone();
        tasks.push(tokio::spawn(async move {
            profiles::create(
                &db,
                Actor::Service,
                NewProfile::new(format!("racer{n}@example.com")),
            )
            .await
        }));
    }
    for task in tasks {
        let profile = task.await.unwrap().expect("signup");
        assert_opened(&t.db, Actor::User(profile.id), profile.id).await;
    }
    let n = USERS as i64;
    assert_eq!(account_rows(&t.owner).await, (n, n, n));
    assert_eq!(
        query_i64(
            &t.owner,
            "SELECT CAST(sum(balance) AS BIGINT) FROM credit_accounts"
        )
        .await,
        100 * n
    );
}

const ADA: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const BOB: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
const CAROL: &str = "cccccccc-0000-4000-8000-00000000000c";

/// A fresh PostgreSQL database with what a Supabase project has before any migration
/// (roles, default privileges, `auth.users`, Supabase's `auth.uid()`), as
/// `tests/postgres.rs` sets it up.
async fn supabase_like() -> TestDb {
    let t = TestDb::postgres_empty().await;
    t.owner
        .execute_unprepared(common::SUPABASE_PLATFORM)
        .await
        .unwrap();
    t.owner
        .execute_unprepared(
            "CREATE SCHEMA auth;
             CREATE TABLE auth.users (id uuid PRIMARY KEY, email text, raw_user_meta_data jsonb);
             CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS
               $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;",
        )
        .await
        .unwrap();
    t
}

/// Signup on Supabase: inserting into `auth.users` (what Supabase Auth does) creates the
/// profile (`on_auth_user_created`) and with it the account, its bonus and the
/// preferences, in the same transaction. Users who signed up before the accounts
/// migration get theirs when it runs.
#[tokio::test]
async fn supabase_signup_creates_all_three() {
    let t = supabase_like().await;
    // Up to the migration before the accounts: Ada signs up then.
    let before_accounts = Migrator::migrations()
        .iter()
        .position(|m| m.name().ends_with("_accounts"))
        .expect("the accounts migration") as u32;
    Migrator::up(&t.owner, Some(before_accounts)).await.unwrap();
    t.owner
        .execute_unprepared(&format!(
            "INSERT INTO auth.users (id, email) VALUES ('{ADA}', 'ada@example.com')"
        ))
        .await
        .expect("signup before the accounts migration");
    Migrator::up(&t.owner, None).await.unwrap();
    assert_eq!(
        account_rows(&t.owner).await,
        (1, 1, 1),
        "Ada's, by the upgrade"
    );

    // Bob signs up now.
    t.owner
        .execute_unprepared(&format!(
            "INSERT INTO auth.users (id, email, raw_user_meta_data) \
             VALUES ('{BOB}', 'bob@example.com', '{{\"display_name\":\"Bobby\"}}')"
        ))
        .await
        .expect("signup");
    assert_eq!(account_rows(&t.owner).await, (2, 2, 2));

    // A signup rolled back leaves nothing: not the user, the profile or the account.
    let txn = t.owner.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "INSERT INTO auth.users (id, email) VALUES ('{CAROL}', 'carol@example.com')"
    ))
    .await
    .unwrap();
    assert_eq!(
        account_rows(&txn).await,
        (3, 3, 3),
        "inside the signup's transaction"
    );
    txn.rollback().await.unwrap();
    assert_eq!(account_rows(&t.owner).await, (2, 2, 2));

    // Each user reads their own, through Forge (as the owner here: on this database
    // Forge connects as the migration's owner, which may switch to both roles).
    for id in [ADA, BOB] {
        let user: ProfileId = id.parse().unwrap();
        assert_opened(&t.owner, Actor::User(user), user).await;
    }
    let bobby = profiles::get(&t.owner, Actor::Service, BOB.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(bobby.display_name, "Bobby");
    t.finish().await;
}

/// On a plain PostgreSQL (no `auth.users`) a profile inserted without Forge, as the
/// migrations' owner does in seeds, gets its account too: the rule is the database's.
#[tokio::test]
async fn plain_postgres_profile_insert_opens_the_account() {
    let t = TestDb::postgres().await;
    assert_eq!(
        query_i64(
            &t.owner,
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = 'auth' AND table_name = 'users'"
        )
        .await,
        0,
        "a plain PostgreSQL"
    );
    t.owner
        .execute_unprepared(&format!(
            "INSERT INTO profiles (id, email, display_name) VALUES ('{ADA}', 'ada@example.com', 'Ada')"
        ))
        .await
        .unwrap();
    assert_eq!(account_rows(&t.owner).await, (1, 1, 1));
    let ada: ProfileId = ADA.parse().unwrap();
    assert_opened(&t.db, Actor::User(ada), ada).await;
    t.finish().await;
}
