//! forge_service::profiles on both backends, and the user context on PostgreSQL.

mod common;

use common::{TestDb, query_string};
use forge_db::entity::profiles::{self, Tier};
use forge_db::sea_orm::{DbBackend, EntityTrait, PaginatorTrait, TransactionTrait};
use forge_db::service::profiles::{NewProfile, ProfilePatch};
use forge_db::service::{Access, Actor, ForgeError, profiles as repo, run_as};

on_both_backends! {
    signup_normalises_and_refuses_duplicates => signup_normalises_and_refuses_duplicates;
    users_see_and_edit_only_their_own_profile => users_see_and_edit_only_their_own_profile;
    plan_changes_are_for_the_service => plan_changes_are_for_the_service;
    refused_input_changes_nothing => refused_input_changes_nothing;
}

async fn signup_normalises_and_refuses_duplicates(t: &TestDb) {
    let db = &t.db;
    let p = repo::create(
        db,
        Actor::Service,
        NewProfile::new("  Ada.Lovelace@Example.COM "),
    )
    .await
    .unwrap();
    assert_eq!(p.email, "ada.lovelace@example.com");
    assert_eq!(p.display_name, "ada.lovelace");
    assert_eq!((p.tier, p.sessions_limit), (Tier::Free, 3));

    let dup = repo::create(
        db,
        Actor::Service,
        NewProfile::new("ADA.LOVELACE@example.com"),
    )
    .await;
    assert!(matches!(dup, Err(ForgeError::Conflict { .. })), "{dup:?}");

    let err = repo::create(db, Actor::User(p.id), NewProfile::new("x@example.com")).await;
    assert!(matches!(err, Err(ForgeError::Forbidden { .. })), "{err:?}");

    let found = repo::find_by_email(db, Actor::Service, "ada.lovelace@EXAMPLE.com")
        .await
        .unwrap();
    assert_eq!(found.map(|f| f.id), Some(p.id));
    assert_eq!(profiles::Entity::find().count(&t.owner).await.unwrap(), 1);
}

async fn users_see_and_edit_only_their_own_profile(t: &TestDb) {
    let db = &t.db;
    let a = repo::create(db, Actor::Service, NewProfile::new("a@example.com"))
        .await
        .unwrap();
    let b = repo::create(db, Actor::Service, NewProfile::new("b@example.com"))
        .await
        .unwrap();
    let (ua, ub) = (Actor::User(a.id), Actor::User(b.id));

    assert_eq!(
        repo::get(db, ua, a.id).await.unwrap().email,
        "a@example.com"
    );
    let err = repo::get(db, ub, a.id).await.unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }), "{err:?}");
    assert!(
        repo::find_by_email(db, ub, "a@example.com")
            .await
            .unwrap()
            .is_none()
    );

    let patch = ProfilePatch {
        display_name: Some("  Ada  ".into()),
        avatar_url: Some(Some("https://img.example/a.png".into())),
    };
    let updated = repo::update(db, ua, a.id, patch.clone()).await.unwrap();
    assert_eq!(updated.display_name, "Ada");
    assert_eq!(
        updated.avatar_url.as_deref(),
        Some("https://img.example/a.png")
    );
    assert!(updated.updated_at >= a.updated_at);

    let err = repo::update(
        db,
        ub,
        a.id,
        ProfilePatch {
            display_name: Some("mallory".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }), "{err:?}");
    assert_eq!(
        repo::get(db, Actor::Service, a.id)
            .await
            .unwrap()
            .display_name,
        "Ada"
    );

    let cleared = repo::update(
        db,
        ua,
        a.id,
        ProfilePatch {
            avatar_url: Some(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(cleared.avatar_url, None);
    assert_eq!(cleared.display_name, "Ada");
}

async fn plan_changes_are_for_the_service(t: &TestDb) {
    let db = &t.db;
    let a = repo::create(db, Actor::Service, NewProfile::new("a@example.com"))
        .await
        .unwrap();
    let err = repo::set_plan(db, Actor::User(a.id), a.id, Tier::Enterprise, 100)
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }));
    let p = repo::set_plan(db, Actor::Service, a.id, Tier::Pro, 10)
        .await
        .unwrap();
    assert_eq!((p.tier, p.sessions_limit), (Tier::Pro, 10));
    let err = repo::set_plan(db, Actor::Service, a.id, Tier::Pro, -1)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ForgeError::Validation {
            field: "sessions_limit",
            ..
        }
    ));
    let err = repo::set_plan(
        db,
        Actor::Service,
        forge_db::entity::ids::ProfileId::new(),
        Tier::Pro,
        1,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }));
    assert_eq!(
        repo::get(db, Actor::Service, a.id)
            .await
            .unwrap()
            .sessions_limit,
        10
    );
}

async fn refused_input_changes_nothing(t: &TestDb) {
    let db = &t.db;
    for bad in ["", "   ", "no-at-sign", "@example.com", "a@", "a@b@c"] {
        let err = repo::create(db, Actor::Service, NewProfile::new(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { field: "email", .. }),
            "{bad}: {err:?}"
        );
    }
    let err = repo::create(
        db,
        Actor::Service,
        NewProfile {
            display_name: Some(" ".into()),
            ..NewProfile::new("a@example.com")
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        ForgeError::Validation {
            field: "display_name",
            ..
        }
    ));
    assert_eq!(profiles::Entity::find().count(&t.owner).await.unwrap(), 0);

    let a = repo::create(db, Actor::Service, NewProfile::new("a@example.com"))
        .await
        .unwrap();
    let long = "x".repeat(101);
    let err = repo::update(
        db,
        Actor::User(a.id),
        a.id,
        ProfilePatch {
            display_name: Some(long),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        ForgeError::Validation {
            field: "display_name",
            ..
        }
    ));
    assert_eq!(
        repo::get(db, Actor::Service, a.id)
            .await
            .unwrap()
            .display_name,
        "a"
    );
}

/// PostgreSQL: an unfiltered query in B's context sees none of A's rows (the RLS wall on
/// its own), and a user call inside a caller's transaction leaves no role or claims behind.
#[tokio::test]
async fn postgres_user_context_is_walled_and_leaves_nothing_behind() {
    let t = TestDb::postgres().await;
    let db = &t.db;
    assert_eq!(db.get_database_backend(), DbBackend::Postgres);
    let a = repo::create(db, Actor::Service, NewProfile::new("a@example.com"))
        .await
        .unwrap();
    let b = repo::create(db, Actor::Service, NewProfile::new("b@example.com"))
        .await
        .unwrap();

    let seen = run_as(db, Actor::User(b.id), Access::Read, |txn| {
        Box::pin(async move { Ok(profiles::Entity::find().all(txn).await?) })
    })
    .await
    .unwrap();
    assert_eq!(
        seen.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![b.id],
        "RLS alone hides A"
    );

    let txn = db.begin().await.unwrap();
    let before = query_string(
        &txn,
        "SELECT current_user || '/' || current_setting('role')",
    )
    .await;
    repo::get(&txn, Actor::User(a.id), a.id).await.unwrap();
    let err = repo::get(&txn, Actor::User(b.id), a.id).await.unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }));
    let after = query_string(
        &txn,
        "SELECT current_user || '/' || current_setting('role')",
    )
    .await;
    assert_eq!(before, after, "the caller's role is back");
    let claims = query_string(
        &txn,
        "SELECT coalesce(current_setting('request.jwt.claim.sub', true), '')",
    )
    .await;
    assert_eq!(
        claims.as_deref(),
        Some(""),
        "no claims left in the caller's transaction"
    );
    // A service call in the caller's transaction still sees everything.
    let all = run_as(&txn, Actor::Service, Access::Read, |txn| {
        Box::pin(async move { Ok(profiles::Entity::find().count(txn).await?) })
    })
    .await
    .unwrap();
    assert_eq!(all, 2);
    txn.commit().await.unwrap();

    // Nothing leaked to the pooled connection either: it is the application role again,
    // which may read nothing on its own (the two-role setup).
    let role = query_string(db, "SELECT current_user || '/' || current_setting('role')").await;
    assert_eq!(role, before);
    let err = profiles::Entity::find().count(db).await.unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err:?}");
    t.finish().await;
}
