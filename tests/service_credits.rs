//! forge_service::credits on both backends: the signup bonus, grants, spends and refunds
//! through the ledger, the balance never going negative (also under 50 racing spends),
//! idempotency keys (also under 10 racing retries), the `credits_low` notification, the
//! history's keyset pages, a caller's transaction, and users never writing a balance.

mod common;
mod session_support;

use common::{TestDb, as_service, signup};
use forge_db::entity::credit_transactions::{self, CreditKind};
use forge_db::entity::ids::ProfileId;
use forge_db::entity::notifications::{self, NotificationType};
use forge_db::entity::projects::ProjectStatus;
use forge_db::migration::CREDITS_LOW_THRESHOLD;
use forge_db::sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder,
};
use forge_db::service::credits::{self, CreditChange};
use forge_db::service::notifications::{self as notes, PreferencesPatch};
use forge_db::service::sessions::{self, NewSession};
use forge_db::service::{Access, Actor, ForgeError, PageRequest, run_as};
use serde_json::json;
use session_support::SharedDb;

on_both_backends! {
    signup_gives_100_credits_and_one_bonus_row => signup_gives_100_credits_and_one_bonus_row;
    grant_spend_and_refund_move_the_balance => grant_spend_and_refund_move_the_balance;
    a_spend_never_takes_the_balance_below_zero => a_spend_never_takes_the_balance_below_zero;
    refused_input_changes_nothing => refused_input_changes_nothing;
    users_cannot_change_a_balance_or_the_ledger => users_cannot_change_a_balance_or_the_ledger;
    a_repeated_idempotency_key_is_charged_once => a_repeated_idempotency_key_is_charged_once;
    fifty_concurrent_spends_of_three_leave_one => fifty_concurrent_spends_of_three_leave_one;
    ten_concurrent_retries_are_charged_once => ten_concurrent_retries_are_charged_once;
    credits_low_is_sent_once_per_crossing_unless_muted => credits_low_is_sent_once_per_crossing_unless_muted;
    history_is_newest_first_in_keyset_pages => history_is_newest_first_in_keyset_pages;
    a_spend_commits_or_rolls_back_with_the_callers_transaction => a_spend_commits_or_rolls_back_with_the_callers_transaction;
}

const SERVICE: Actor = Actor::Service;

/// The user's balance as the service reads it.
async fn balance_of(db: &DatabaseConnection, user: ProfileId) -> i64 {
    credits::balance(db, SERVICE, user).await.unwrap().balance
}

/// Every ledger row of `user`, oldest first (read in the service's context).
async fn ledger(db: &DatabaseConnection, user: ProfileId) -> Vec<credit_transactions::Model> {
    as_service(db, move |txn| {
        Box::pin(async move {
            Ok(credit_transactions::Entity::find()
                .filter(credit_transactions::Column::UserId.eq(user))
                .order_by_asc(credit_transactions::Column::CreatedAt)
                .all(txn)
                .await?)
        })
    })
    .await
}

/// The `credits_low` notifications of `user`.
async fn low_notes(db: &DatabaseConnection, user: ProfileId) -> Vec<notifications::Model> {
    as_service(db, move |txn| {
        Box::pin(async move {
            Ok(notifications::Entity::find()
                .filter(notifications::Column::UserId.eq(user))
                .filter(notifications::Column::Kind.eq(NotificationType::CreditsLow))
                .all(txn)
                .await?)
        })
    })
    .await
}

/// The account's invariants: balance = sum of the ledger = granted − spent, never < 0.
async fn assert_consistent(db: &DatabaseConnection, user: ProfileId) {
    let account = credits::balance(db, SERVICE, user).await.unwrap();
    let sum: i64 = ledger(db, user).await.iter().map(|t| t.amount).sum();
    assert_eq!(account.balance, sum, "balance = sum of the ledger");
    assert_eq!(
        account.balance,
        account.lifetime_granted - account.lifetime_spent,
        "balance = granted − spent"
    );
    assert!(account.balance >= 0);
}

async fn spend(
    db: &DatabaseConnection,
    user: ProfileId,
    amount: u64,
) -> credit_transactions::Model {
    credits::spend(db, SERVICE, CreditChange::new(user, amount))
        .await
        .unwrap()
}

async fn signup_gives_100_credits_and_one_bonus_row(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let account = credits::balance(db, Actor::User(a), a).await.unwrap();
    assert_eq!(account.user_id, a);
    assert_eq!(
        (
            account.balance,
            account.lifetime_granted,
            account.lifetime_spent
        ),
        (100, 100, 0)
    );
    let history = credits::history(db, Actor::User(a), a, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(history.items.len(), 1);
    assert_eq!(history.next, None);
    let bonus = &history.items[0];
    assert_eq!(bonus.kind, CreditKind::SignupBonus);
    assert_eq!((bonus.amount, bonus.balance_after), (100, 100));
    assert_eq!((bonus.account_id, bonus.user_id), (account.id, a));
    assert_consistent(db, a).await;
}

async fn grant_spend_and_refund_move_the_balance(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let granted = credits::grant(
        db,
        SERVICE,
        CreditChange {
            reference: Some("  promo-2026  ".into()),
            metadata: Some(json!({"campaign": "launch"})),
            ..CreditChange::new(a, 50)
        },
    )
    .await
    .unwrap();
    assert_eq!(granted.kind, CreditKind::Grant);
    assert_eq!((granted.amount, granted.balance_after), (50, 150));
    assert_eq!(granted.reference.as_deref(), Some("promo-2026"));
    assert_eq!(granted.metadata, json!({"campaign": "launch"}));
    assert_eq!(granted.idempotency_key, None);

    let spent = spend(db, a, 30).await;
    assert_eq!(spent.kind, CreditKind::Spend);
    assert_eq!((spent.amount, spent.balance_after), (-30, 120));
    assert_eq!(spent.metadata, json!({}));

    let refunded = credits::refund(
        db,
        SERVICE,
        CreditChange {
            reference: Some(spent.id.to_string()),
            ..CreditChange::new(a, 10)
        },
    )
    .await
    .unwrap();
    assert_eq!(refunded.kind, CreditKind::Refund);
    assert_eq!((refunded.amount, refunded.balance_after), (10, 130));

    let account = credits::balance(db, Actor::User(a), a).await.unwrap();
    assert_eq!(account.balance, 130);
    assert_eq!(account.lifetime_spent, 30);
    assert_eq!(account.lifetime_granted, 160);
    assert_consistent(db, a).await;
    // The user reads every row of it.
    let history = credits::history(db, Actor::User(a), a, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(history.items.len(), 4);
}

async fn a_spend_never_takes_the_balance_below_zero(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let err = credits::spend(db, SERVICE, CreditChange::new(a, 101))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::InsufficientCredits {
                balance: 100,
                wanted: 101
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "insufficient_credits");
    assert!(!err.is_retryable());
    assert_eq!(balance_of(db, a).await, 100);
    assert_eq!(ledger(db, a).await.len(), 1, "nothing was written");
    // Exactly the balance may be spent; then nothing more.
    assert_eq!(spend(db, a, 100).await.balance_after, 0);
    let err = credits::spend(db, SERVICE, CreditChange::new(a, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::InsufficientCredits {
                balance: 0,
                wanted: 1
            }
        ),
        "{err:?}"
    );
    assert_consistent(db, a).await;
}

async fn refused_input_changes_nothing(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let cases: Vec<(CreditChange, &str)> = vec![
        (CreditChange::new(a, 0), "amount"),
        (CreditChange::new(a, u64::MAX), "amount"),
        (CreditChange::new(a, i64::MAX as u64 + 1), "amount"),
        (CreditChange::new(a, 5).idempotent("   "), "idempotency_key"),
        (
            CreditChange::new(a, 5).idempotent("x".repeat(256)),
            "idempotency_key",
        ),
        (
            CreditChange::new(a, 5).idempotent("a\0b"),
            "idempotency_key",
        ),
        (
            CreditChange {
                reference: Some(String::new()),
                ..CreditChange::new(a, 5)
            },
            "reference",
        ),
        (
            CreditChange {
                metadata: Some(json!([1, 2])),
                ..CreditChange::new(a, 5)
            },
            "metadata",
        ),
    ];
    for (change, field) in cases {
        for result in [
            credits::grant(db, SERVICE, change.clone()).await,
            credits::spend(db, SERVICE, change.clone()).await,
            credits::refund(db, SERVICE, change.clone()).await,
        ] {
            assert!(
                matches!(&result, Err(ForgeError::Validation { field: f, .. }) if *f == field),
                "{field}: {result:?}"
            );
        }
    }
    let nobody = ProfileId::new();
    for result in [
        credits::grant(db, SERVICE, CreditChange::new(nobody, 5)).await,
        credits::spend(db, SERVICE, CreditChange::new(nobody, 5)).await,
    ] {
        assert!(
            matches!(
                result,
                Err(ForgeError::NotFound {
                    entity: "credit account",
                    ..
                })
            ),
            "{result:?}"
        );
    }
    assert!(matches!(
        credits::balance(db, SERVICE, nobody).await,
        Err(ForgeError::NotFound { .. })
    ));
    assert_eq!(balance_of(db, a).await, 100);
    assert_eq!(ledger(db, a).await.len(), 1);
}

async fn users_cannot_change_a_balance_or_the_ledger(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let b = signup(db, "b@example.com").await;
    for actor in [Actor::User(a), Actor::User(b)] {
        for result in [
            credits::grant(db, actor, CreditChange::new(a, 1000)).await,
            credits::spend(db, actor, CreditChange::new(a, 1)).await,
            credits::refund(db, actor, CreditChange::new(a, 1000)).await,
        ] {
            assert!(
                matches!(result, Err(ForgeError::Forbidden { .. })),
                "{result:?}"
            );
        }
    }
    // B sees nothing of A's account.
    assert!(matches!(
        credits::balance(db, Actor::User(b), a).await,
        Err(ForgeError::NotFound {
            entity: "credit account",
            ..
        })
    ));
    let seen = credits::history(db, Actor::User(b), a, &PageRequest::first())
        .await
        .unwrap();
    assert!(seen.items.is_empty());
    // Nor does raw SQL in A's own context change anything on PostgreSQL (the wall).
    if t.backend() == DbBackend::Postgres {
        for sql in [
            "UPDATE credit_accounts SET balance = balance + 1000",
            "UPDATE credit_transactions SET amount = 1000",
            "DELETE FROM credit_transactions",
            "INSERT INTO credit_transactions (account_id, user_id, amount, kind, balance_after) \
             SELECT id, user_id, 1000, 'grant', 0 FROM credit_accounts",
        ] {
            let result = run_as(db, Actor::User(a), Access::Write, move |txn| {
                Box::pin(async move { Ok(txn.execute_unprepared(sql).await?) })
            })
            .await;
            assert!(result.is_err(), "{sql}: {result:?}");
        }
    }
    assert_eq!(balance_of(db, a).await, 100);
    assert_eq!(ledger(db, a).await.len(), 1);
    assert_consistent(db, a).await;
}

async fn a_repeated_idempotency_key_is_charged_once(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let change = CreditChange::new(a, 5).idempotent("session-42");
    let first = credits::spend(db, SERVICE, change.clone()).await.unwrap();
    let again = credits::spend(db, SERVICE, change.clone()).await.unwrap();
    assert_eq!(again, first, "the original row");
    assert_eq!(balance_of(db, a).await, 95);
    // The same key for another amount or kind is a conflict.
    for result in [
        credits::spend(
            db,
            SERVICE,
            CreditChange::new(a, 6).idempotent("session-42"),
        )
        .await,
        credits::grant(
            db,
            SERVICE,
            CreditChange::new(a, 5).idempotent("session-42"),
        )
        .await,
    ] {
        assert!(
            matches!(result, Err(ForgeError::Conflict { .. })),
            "{result:?}"
        );
    }
    // A key is per account: B may use it too.
    let b = signup(db, "b@example.com").await;
    let bs = credits::spend(
        db,
        SERVICE,
        CreditChange::new(b, 5).idempotent("session-42"),
    )
    .await
    .unwrap();
    assert_ne!(bs.id, first.id);
    // A retry whose original spent the whole balance still gets the original row.
    let all = CreditChange::new(a, 95).idempotent("everything");
    let spent = credits::spend(db, SERVICE, all.clone()).await.unwrap();
    assert_eq!(spent.balance_after, 0);
    assert_eq!(credits::spend(db, SERVICE, all).await.unwrap(), spent);
    // Grants are idempotent alike.
    let g = CreditChange::new(a, 7).idempotent("grant-1");
    let granted = credits::grant(db, SERVICE, g.clone()).await.unwrap();
    assert_eq!(credits::grant(db, SERVICE, g).await.unwrap(), granted);
    assert_eq!(balance_of(db, a).await, 7);
    assert_eq!(ledger(db, a).await.len(), 4, "bonus, two spends, one grant");
    assert_consistent(db, a).await;
}

async fn fifty_concurrent_spends_of_three_leave_one(t: &TestDb) {
    const SPENDS: usize = 50;
    let shared = SharedDb::for_test(t).await;
    let pool = shared.pool().await;
    let a = signup(&pool, "race@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..SPENDS {
        let db = pool.clone();
        tasks.push(tokio::spawn(async move {
            credits::spend(
                &db,
                SERVICE,
                CreditChange {
                    reference: Some(format!("spend {i}")),
                    ..CreditChange::new(a, 3)
                },
            )
            .await
        }));
    }
    let (mut after, mut refused) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(row) => after.push(row.balance_after),
            Err(ForgeError::InsufficientCredits { balance, wanted: 3 }) => {
                assert!((0..3).contains(&balance), "refused at {balance}");
                refused += 1;
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    println!(
        "{:?}: {} of {SPENDS} spends succeeded, {refused} refused",
        t.backend(),
        after.len()
    );
    assert_eq!((after.len(), refused), (33, 17));
    after.sort_unstable();
    let expected: Vec<i64> = (0..33).map(|i| 1 + 3 * i).collect();
    assert_eq!(
        after, expected,
        "each spend saw the balance the one before left"
    );
    assert_eq!(balance_of(&pool, a).await, 1);
    assert_eq!(ledger(&pool, a).await.len(), 34);
    assert_consistent(&pool, a).await;
    assert_eq!(low_notes(&pool, a).await.len(), 1, "crossed 10 once");
    pool.close().await.ok();
    shared.finish();
}

async fn ten_concurrent_retries_are_charged_once(t: &TestDb) {
    const RETRIES: usize = 10;
    let shared = SharedDb::for_test(t).await;
    let pool = shared.pool().await;
    let a = signup(&pool, "retry@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..RETRIES {
        let db = pool.clone();
        tasks.push(tokio::spawn(async move {
            credits::spend(&db, SERVICE, CreditChange::new(a, 7).idempotent("order-1")).await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let row = task
            .await
            .unwrap()
            .expect("every retry answers the original row");
        assert_eq!((row.amount, row.balance_after), (-7, 93));
        ids.push(row.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one ledger row for every retry");
    assert_eq!(balance_of(&pool, a).await, 93);
    assert_eq!(ledger(&pool, a).await.len(), 2);
    assert_consistent(&pool, a).await;
    pool.close().await.ok();
    shared.finish();
}

async fn credits_low_is_sent_once_per_crossing_unless_muted(t: &TestDb) {
    let db = &t.db;
    let threshold = CREDITS_LOW_THRESHOLD;
    assert_eq!(threshold, 10);
    let a = signup(db, "a@example.com").await;
    spend(db, a, 85).await; // 15
    spend(db, a, 5).await; // 10: not below yet
    assert!(low_notes(db, a).await.is_empty());
    spend(db, a, 1).await; // 9: crossed
    let low = low_notes(db, a).await;
    assert_eq!(low.len(), 1);
    assert_eq!(low[0].read_at, None);
    // The user sees it among their notifications.
    assert_eq!(notes::unread_count(db, Actor::User(a), a).await.unwrap(), 1);
    spend(db, a, 1).await; // 8: already below
    assert_eq!(low_notes(db, a).await.len(), 1);
    // Refilled and crossed again: a second one.
    credits::grant(db, SERVICE, CreditChange::new(a, 20))
        .await
        .unwrap(); // 28
    spend(db, a, 20).await; // 8
    assert_eq!(low_notes(db, a).await.len(), 2);
    // A refused spend sends nothing.
    let b = signup(db, "b@example.com").await;
    spend(db, b, 90).await; // 10
    assert!(
        credits::spend(db, SERVICE, CreditChange::new(b, 11))
            .await
            .is_err()
    );
    assert!(low_notes(db, b).await.is_empty());

    // Muted: nothing, however low.
    notes::update_preferences(
        db,
        Actor::User(b),
        b,
        PreferencesPatch {
            muted_types: Some(vec!["credits_low".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    spend(db, b, 5).await; // 5
    assert!(low_notes(db, b).await.is_empty());
    // In-app notifications off: nothing either.
    let c = signup(db, "c@example.com").await;
    notes::update_preferences(
        db,
        Actor::User(c),
        c,
        PreferencesPatch {
            in_app_enabled: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    spend(db, c, 95).await;
    assert!(low_notes(db, c).await.is_empty());
    // A grant or refund never notifies.
    assert_eq!(low_notes(db, a).await.len(), 2);
}

async fn history_is_newest_first_in_keyset_pages(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    for amount in 1..=5 {
        spend(db, a, amount).await;
    }
    let me = Actor::User(a);
    let mut request = PageRequest::with_limit(2);
    let mut seen = Vec::new();
    loop {
        let page = credits::history(db, me, a, &request).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|t| t.amount));
        match page.next {
            Some(cursor) => request = request.next(cursor),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec![-5, -4, -3, -2, -1, 100],
        "newest first, each once"
    );
    assert!(matches!(
        credits::history(db, me, a, &PageRequest::with_limit(0)).await,
        Err(ForgeError::Validation { field: "limit", .. })
    ));
}

async fn a_spend_commits_or_rolls_back_with_the_callers_transaction(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let active = session_support::project(db, a, ProjectStatus::Active).await;
    let archived = session_support::project(db, a, ProjectStatus::Archived).await;

    // Both: the spend and the session commit together.
    let txn = forge_db::service::begin(db).await.unwrap();
    let charge = credits::spend(&txn, SERVICE, CreditChange::new(a, 10))
        .await
        .unwrap();
    let session = sessions::start(&txn, Actor::User(a), NewSession::new(a, active, "Build it"))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(charge.balance_after, 90);
    assert_eq!(balance_of(db, a).await, 90);
    assert!(
        sessions::find(db, SERVICE, session.id)
            .await
            .unwrap()
            .is_some()
    );

    // Neither: the session is refused, the caller rolls back, the spend is undone.
    let txn = forge_db::service::begin(db).await.unwrap();
    credits::spend(&txn, SERVICE, CreditChange::new(a, 85))
        .await
        .unwrap();
    let refused = sessions::start(
        &txn,
        Actor::User(a),
        NewSession::new(a, archived, "Build it"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            refused,
            ForgeError::InvalidTransition {
                entity: "project",
                ..
            }
        ),
        "{refused:?}"
    );
    txn.rollback().await.unwrap();
    assert_eq!(balance_of(db, a).await, 90);
    assert_eq!(ledger(db, a).await.len(), 2);
    assert!(
        low_notes(db, a).await.is_empty(),
        "the notification went with it"
    );
    assert_consistent(db, a).await;
}
