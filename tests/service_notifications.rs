//! forge_service::notifications on both backends: sending (honouring preferences),
//! listing in keyset pages, unread counts, marking read, deleting, preferences, refused
//! input and isolation between users.

mod common;

use common::{TestDb, signup};
use forge_db::entity::ids::{NotificationId, ProfileId};
use forge_db::entity::notifications::{self, NotificationType};
use forge_db::sea_orm::DatabaseConnection;
use forge_db::service::notifications::{
    self as repo, ListNotifications, NewNotification, PreferencesPatch,
};
use forge_db::service::{Actor, ForgeError, PageRequest};
use serde_json::json;

on_both_backends! {
    send_list_read_and_delete => send_list_read_and_delete;
    preferences_start_open_and_are_honoured => preferences_start_open_and_are_honoured;
    refused_input_changes_nothing => refused_input_changes_nothing;
    users_see_and_touch_only_their_own => users_see_and_touch_only_their_own;
    lists_are_newest_first_in_keyset_pages => lists_are_newest_first_in_keyset_pages;
}

const SERVICE: Actor = Actor::Service;

/// Sends a notification of `kind` to `user`; it must be stored.
async fn send(
    db: &DatabaseConnection,
    user: ProfileId,
    kind: NotificationType,
    title: &str,
) -> notifications::Model {
    repo::create(db, SERVICE, NewNotification::new(user, kind, title, "body"))
        .await
        .unwrap()
        .expect("stored")
}

async fn titles(
    db: &DatabaseConnection,
    actor: Actor,
    user: ProfileId,
    unread_only: bool,
) -> Vec<String> {
    repo::list(
        db,
        actor,
        user,
        ListNotifications { unread_only },
        &PageRequest::first(),
    )
    .await
    .unwrap()
    .items
    .into_iter()
    .map(|n| n.title)
    .collect()
}

async fn send_list_read_and_delete(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let me = Actor::User(a);
    let ready = repo::create(
        db,
        SERVICE,
        NewNotification {
            data: Some(json!({"session_id": "s-1"})),
            ..NewNotification::new(
                a,
                NotificationType::SessionReady,
                "  Ready  ",
                "Your app is up",
            )
        },
    )
    .await
    .unwrap()
    .expect("stored");
    assert_eq!(ready.user_id, a);
    assert_eq!(ready.kind, NotificationType::SessionReady);
    assert_eq!(ready.title, "Ready");
    assert_eq!(ready.body, "Your app is up");
    assert_eq!(ready.data, json!({"session_id": "s-1"}));
    assert_eq!(ready.read_at, None);
    assert_eq!(repo::get(db, me, ready.id).await.unwrap(), ready);
    let done = send(db, a, NotificationType::BatchCompleted, "Batch done").await;
    let news = send(db, a, NotificationType::System, "News").await;
    assert_eq!(done.data, json!({}));

    assert_eq!(
        titles(db, me, a, false).await,
        ["News", "Batch done", "Ready"]
    );
    assert_eq!(repo::unread_count(db, me, a).await.unwrap(), 3);

    let read = repo::mark_read(db, me, done.id).await.unwrap();
    let first_read = read.read_at.expect("read");
    assert_eq!(repo::unread_count(db, me, a).await.unwrap(), 2);
    assert_eq!(titles(db, me, a, true).await, ["News", "Ready"]);
    // Marking again keeps the first time.
    let again = repo::mark_read(db, me, done.id).await.unwrap();
    assert_eq!(again.read_at, Some(first_read));

    assert_eq!(repo::mark_all_read(db, me, a).await.unwrap(), 2);
    assert_eq!(repo::mark_all_read(db, me, a).await.unwrap(), 0);
    assert_eq!(repo::unread_count(db, me, a).await.unwrap(), 0);
    assert!(titles(db, me, a, true).await.is_empty());
    assert_eq!(
        repo::get(db, me, done.id).await.unwrap().read_at,
        Some(first_read),
        "mark_all_read leaves read ones alone"
    );

    repo::delete(db, me, news.id).await.unwrap();
    assert_eq!(titles(db, me, a, false).await, ["Batch done", "Ready"]);
    assert!(matches!(
        repo::delete(db, me, news.id).await,
        Err(ForgeError::NotFound {
            entity: "notification",
            ..
        })
    ));
    assert_eq!(repo::find(db, me, news.id).await.unwrap(), None);
    // The service deletes any.
    repo::delete(db, SERVICE, ready.id).await.unwrap();
    assert_eq!(titles(db, me, a, false).await, ["Batch done"]);
}

async fn preferences_start_open_and_are_honoured(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let me = Actor::User(a);
    let prefs = repo::preferences(db, me, a).await.unwrap();
    assert_eq!(prefs.user_id, a);
    assert!(prefs.email_enabled && prefs.in_app_enabled);
    assert_eq!(prefs.muted_types, json!([]));
    assert!(repo::muted_types(&prefs).is_empty());

    let muted = repo::update_preferences(
        db,
        me,
        a,
        PreferencesPatch {
            muted_types: Some(vec![
                "system".into(),
                "batch_failed".into(),
                "system".into(),
            ]),
            email_enabled: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(muted.muted_types, json!(["batch_failed", "system"]));
    assert_eq!(
        repo::muted_types(&muted),
        [NotificationType::BatchFailed, NotificationType::System]
    );
    assert!(!muted.email_enabled && muted.in_app_enabled);
    assert!(muted.updated_at >= prefs.updated_at);
    assert_eq!(repo::preferences(db, me, a).await.unwrap(), muted);
    // An empty patch changes nothing.
    assert_eq!(
        repo::update_preferences(db, me, a, PreferencesPatch::default())
            .await
            .unwrap(),
        muted
    );

    let system = NewNotification::new(a, NotificationType::System, "Maintenance", "Tonight");
    assert_eq!(
        repo::create(db, SERVICE, system.clone()).await.unwrap(),
        None
    );
    send(db, a, NotificationType::SessionReady, "Ready").await;

    // In-app off: nothing at all is stored.
    repo::update_preferences(
        db,
        me,
        a,
        PreferencesPatch {
            in_app_enabled: Some(false),
            muted_types: Some(Vec::new()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for kind in NotificationType::ALL {
        let new = NewNotification::new(a, *kind, "Hello", "");
        assert_eq!(
            repo::create(db, SERVICE, new).await.unwrap(),
            None,
            "{kind}"
        );
    }
    // Back on, unmuted.
    repo::update_preferences(
        db,
        me,
        a,
        PreferencesPatch {
            in_app_enabled: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(repo::create(db, SERVICE, system).await.unwrap().is_some());
    assert_eq!(titles(db, me, a, false).await, ["Maintenance", "Ready"]);
}

async fn refused_input_changes_nothing(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let kind = NotificationType::System;
    let cases = [
        (NewNotification::new(a, kind, "   ", "body"), "title"),
        (
            NewNotification::new(a, kind, "t".repeat(201), "body"),
            "title",
        ),
        (NewNotification::new(a, kind, "a\0b", "body"), "title"),
        (
            NewNotification::new(a, kind, "title", "b".repeat(2001)),
            "body",
        ),
        (
            NewNotification {
                data: Some(json!("text")),
                ..NewNotification::new(a, kind, "title", "body")
            },
            "data",
        ),
    ];
    for (new, field) in cases {
        let result = repo::create(db, SERVICE, new).await;
        assert!(
            matches!(&result, Err(ForgeError::Validation { field: f, .. }) if *f == field),
            "{field}: {result:?}"
        );
    }
    // The longest title and body are fine.
    repo::create(
        db,
        SERVICE,
        NewNotification::new(a, kind, "t".repeat(200), "b".repeat(2000)),
    )
    .await
    .unwrap()
    .expect("stored");
    let nobody = ProfileId::new();
    assert!(matches!(
        repo::create(db, SERVICE, NewNotification::new(nobody, kind, "t", "b")).await,
        Err(ForgeError::NotFound {
            entity: "profile",
            ..
        })
    ));

    let before = repo::preferences(db, SERVICE, a).await.unwrap();
    for names in [vec!["credits_low", "credit_low"], vec![""], vec!["a\0"]] {
        let result = repo::update_preferences(
            db,
            Actor::User(a),
            a,
            PreferencesPatch {
                in_app_enabled: Some(false),
                muted_types: Some(names.iter().map(|n| n.to_string()).collect()),
                ..Default::default()
            },
        )
        .await;
        assert!(
            matches!(
                result,
                Err(ForgeError::Validation {
                    field: "muted_types",
                    ..
                })
            ),
            "{names:?}: {result:?}"
        );
    }
    assert_eq!(repo::preferences(db, SERVICE, a).await.unwrap(), before);
    assert_eq!(repo::unread_count(db, SERVICE, a).await.unwrap(), 1);
}

/// Whether `result` is "not found", exactly like a row that does not exist.
fn missing<T>(result: Result<T, ForgeError>) -> bool {
    matches!(result, Err(ForgeError::NotFound { .. }))
}

async fn users_see_and_touch_only_their_own(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let b = signup(db, "b@example.com").await;
    let (as_a, as_b) = (Actor::User(a), Actor::User(b));
    let note = send(db, a, NotificationType::SessionFailed, "Failed").await;

    // Only the service sends, even to oneself.
    let own = NewNotification::new(a, NotificationType::System, "Hi", "");
    assert!(matches!(
        repo::create(db, as_a, own).await,
        Err(ForgeError::Forbidden { .. })
    ));

    assert!(missing(repo::get(db, as_b, note.id).await));
    assert!(missing(repo::mark_read(db, as_b, note.id).await));
    assert!(missing(repo::delete(db, as_b, note.id).await));
    assert!(missing(repo::get(db, as_b, NotificationId::new()).await));
    assert!(titles(db, as_b, a, false).await.is_empty());
    assert_eq!(repo::unread_count(db, as_b, a).await.unwrap(), 0);
    assert_eq!(repo::mark_all_read(db, as_b, a).await.unwrap(), 0);
    assert!(missing(repo::preferences(db, as_b, a).await));
    let patch = PreferencesPatch {
        in_app_enabled: Some(false),
        ..Default::default()
    };
    assert!(missing(repo::update_preferences(db, as_b, a, patch).await));

    // A's notification and preferences are untouched.
    assert_eq!(repo::get(db, as_a, note.id).await.unwrap(), note);
    assert_eq!(repo::unread_count(db, as_a, a).await.unwrap(), 1);
    assert!(repo::preferences(db, as_a, a).await.unwrap().in_app_enabled);
}

async fn lists_are_newest_first_in_keyset_pages(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let b = signup(db, "b@example.com").await;
    for i in 0..5 {
        send(db, a, NotificationType::System, &format!("a{i}")).await;
        send(db, b, NotificationType::System, &format!("b{i}")).await;
    }
    let me = Actor::User(a);
    let mut request = PageRequest::with_limit(2);
    let mut seen = Vec::new();
    loop {
        let page = repo::list(db, me, a, ListNotifications::default(), &request)
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|n| n.title));
        match page.next {
            Some(cursor) => request = request.next(cursor),
            None => break,
        }
    }
    assert_eq!(seen, ["a4", "a3", "a2", "a1", "a0"]);
    assert_eq!(titles(db, SERVICE, b, false).await.len(), 5);
    assert!(matches!(
        repo::list(
            db,
            me,
            a,
            ListNotifications::default(),
            &PageRequest::with_limit(201)
        )
        .await,
        Err(ForgeError::Validation { field: "limit", .. })
    ));
}
