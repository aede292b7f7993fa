//! forge_service::sessions on both backends: starting under the live-session limit (also
//! under a race), the state machine, preview URLs, expiry, and isolation between users.

mod common;
mod session_support;

use chrono::{TimeDelta, Utc};
use common::{TestDb, as_service};
use forge_db::entity::coding_sessions::{self, SessionStatus};
use forge_db::entity::ids::{ProfileId, ProjectId, SessionId};
use forge_db::entity::projects::ProjectStatus;
use forge_db::sea_orm::sea_query::Expr;
use forge_db::sea_orm::{ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter};
use forge_db::service::sessions::{NewSession, SessionFilter};
use forge_db::service::{Actor, ForgeError, PageRequest, sessions as repo};
use serde_json::json;
use session_support::{SharedDb, owner, project, session, unfiltered_as};

use SessionStatus::*;

on_both_backends! {
    start_get_find_and_list => start_get_find_and_list;
    refused_starts_change_nothing => refused_starts_change_nothing;
    live_sessions_are_limited => live_sessions_are_limited;
    every_allowed_transition_works => every_allowed_transition_works;
    disallowed_transitions_name_from_and_to => disallowed_transitions_name_from_and_to;
    preview_urls_are_set_and_cleared => preview_urls_are_set_and_cleared;
    expire_overdue_expires_only_overdue_live_sessions => expire_overdue_expires_only_overdue_live_sessions;
    user_b_cannot_see_or_touch_a_sessions => user_b_cannot_see_or_touch_a_sessions;
    concurrent_starts_respect_the_limit_exactly => concurrent_starts_respect_the_limit_exactly;
    racing_transitions_have_one_winner => racing_transitions_have_one_winner;
}

/// Every session in the database, as the service sees it (read in the service's
/// context: the test pool may do nothing outside one on PostgreSQL), by id.
async fn all_sessions(db: &DatabaseConnection) -> Vec<coding_sessions::Model> {
    let mut rows = as_service(db, |txn| {
        Box::pin(async move { Ok(coding_sessions::Entity::find().all(txn).await?) })
    })
    .await;
    rows.sort_by_key(|s| s.id);
    rows
}

fn assert_invalid_transition(err: ForgeError, from: SessionStatus, to: SessionStatus) {
    match err {
        ForgeError::InvalidTransition {
            entity: "session",
            from: f,
            to: t,
        } => assert_eq!((f.as_str(), t.as_str()), (from.as_str(), to.as_str())),
        other => panic!("{from} → {to}: expected InvalidTransition, got {other:?}"),
    }
}

async fn start_get_find_and_list(t: &TestDb) {
    let db = &t.db;
    let a = owner(db, "a@example.com", 10).await;
    let (p1, p2) = (
        project(db, a, ProjectStatus::Active).await,
        project(db, a, ProjectStatus::Active).await,
    );
    let ua = Actor::User(a);

    // A user's session lives at most 24 hours; exactly that is accepted.
    let before = Utc::now();
    let s = repo::start(
        db,
        ua,
        NewSession {
            ttl: repo::MAX_USER_TTL,
            metadata: Some(json!({"device": "ios"})),
            ..NewSession::new(a, p1, "  Build a todo app  ")
        },
    )
    .await
    .unwrap();
    assert_eq!(repo::MAX_USER_TTL, TimeDelta::hours(24));
    assert_eq!((s.user_id, s.project_id), (a, p1));
    assert_eq!(s.initial_prompt, "Build a todo app");
    assert_eq!(s.status, Pending);
    assert_eq!(s.metadata, json!({"device": "ios"}));
    assert!(s.expires_at > before + TimeDelta::hours(24) - TimeDelta::minutes(1));
    assert!(s.expires_at <= Utc::now() + TimeDelta::hours(24));
    assert_eq!(
        (s.eas_update_url.as_deref(), s.webview_url.as_deref()),
        (None, None)
    );

    assert_eq!(repo::get(db, ua, s.id).await.unwrap(), s);
    assert_eq!(
        repo::find(db, Actor::Service, s.id).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(repo::find(db, ua, SessionId::new()).await.unwrap(), None);
    let err = repo::get(db, ua, SessionId::new()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "session",
                ..
            }
        ),
        "{err:?}"
    );

    // The service may start a session for any owner, also for longer than a day;
    // metadata defaults to {}.
    let by_service = repo::start(
        db,
        Actor::Service,
        NewSession {
            ttl: TimeDelta::hours(48),
            ..NewSession::new(a, p2, "Add dark mode")
        },
    )
    .await
    .unwrap();
    assert_eq!(by_service.metadata, json!({}));
    assert!(by_service.expires_at > before + TimeDelta::hours(47));
    let mut started = vec![s.id, by_service.id];
    for i in 0..3 {
        started.push(session(db, a, p2).await.id);
        if i == 0 {
            repo::transition(db, ua, started[2], Active).await.unwrap();
        }
    }

    // Newest first, across pages, each once.
    let mut request = PageRequest::with_limit(2);
    let mut listed = Vec::new();
    loop {
        let page = repo::list(db, ua, SessionFilter::default(), request.clone())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        listed.extend(page.items.iter().map(|s| s.id));
        match page.next {
            Some(cursor) => request = request.next(cursor),
            None => break,
        }
    }
    started.reverse();
    assert_eq!(listed, started);

    let only_active = repo::list(
        db,
        ua,
        SessionFilter {
            status: Some(Active),
            ..Default::default()
        },
        PageRequest::first(),
    )
    .await
    .unwrap();
    assert_eq!(
        only_active.items.iter().map(|s| s.id).collect::<Vec<_>>(),
        [started[2]]
    );
    let on_p1 = repo::list(
        db,
        ua,
        SessionFilter {
            project_id: Some(p1),
            ..Default::default()
        },
        PageRequest::first(),
    )
    .await
    .unwrap();
    assert_eq!(on_p1.items.iter().map(|s| s.id).collect::<Vec<_>>(), [s.id]);
    let err = repo::list(db, ua, SessionFilter::default(), PageRequest::with_limit(0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForgeError::Validation { field: "limit", .. }),
        "{err:?}"
    );
}

async fn refused_starts_change_nothing(t: &TestDb) {
    let db = &t.db;
    let a = owner(db, "a@example.com", 10).await;
    let b = owner(db, "b@example.com", 10).await;
    let active = project(db, a, ProjectStatus::Active).await;
    let ua = Actor::User(a);
    let base = || NewSession::new(a, active, "Build it");

    let cases: Vec<(NewSession, &str)> = vec![
        (
            NewSession {
                initial_prompt: "   ".into(),
                ..base()
            },
            "initial_prompt",
        ),
        (
            NewSession {
                initial_prompt: "x".repeat(100_001),
                ..base()
            },
            "initial_prompt",
        ),
        (
            NewSession {
                ttl: TimeDelta::zero(),
                ..base()
            },
            "ttl",
        ),
        (
            NewSession {
                ttl: TimeDelta::seconds(-5),
                ..base()
            },
            "ttl",
        ),
        (
            NewSession {
                ttl: TimeDelta::MAX,
                ..base()
            },
            "ttl",
        ),
        (
            // A user's session lives at most 24 hours.
            NewSession {
                ttl: repo::MAX_USER_TTL + TimeDelta::seconds(1),
                ..base()
            },
            "ttl",
        ),
        (
            NewSession {
                metadata: Some(json!([1, 2])),
                ..base()
            },
            "metadata",
        ),
        (
            // JSON documents hold at most 64 KiB.
            NewSession {
                metadata: Some(json!({ "blob": "x".repeat(70_000) })),
                ..base()
            },
            "metadata",
        ),
    ];
    for (new, field) in cases {
        let err = repo::start(db, ua, new).await.unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { field: f, .. } if f == field),
            "{field}: {err:?}"
        );
    }
    for status in [ProjectStatus::Archived, ProjectStatus::Deleted] {
        let p = project(db, a, status).await;
        let err = repo::start(db, ua, NewSession::new(a, p, "Build it"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                ForgeError::InvalidTransition { entity: "project", from, to }
                    if *from == status.to_string() && to == "a new session"
            ),
            "{status}: {err:?}"
        );
    }
    let err = repo::start(db, ua, NewSession::new(a, ProjectId::new(), "Build it"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "project",
                ..
            }
        ),
        "{err:?}"
    );
    // A user starts sessions only for themselves.
    let err = repo::start(db, Actor::User(b), base()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "profile",
                ..
            }
        ),
        "{err:?}"
    );
    // The service cannot start one for a missing owner, or on another owner's project.
    let err = repo::start(
        db,
        Actor::Service,
        NewSession::new(ProfileId::new(), active, "x"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "profile",
                ..
            }
        ),
        "{err:?}"
    );
    let err = repo::start(db, Actor::Service, NewSession::new(b, active, "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "project",
                ..
            }
        ),
        "{err:?}"
    );

    assert!(all_sessions(db).await.is_empty());
}

async fn live_sessions_are_limited(t: &TestDb) {
    let db = &t.db;
    let a = owner(db, "a@example.com", 2).await;
    let b = owner(db, "b@example.com", 1).await;
    let (pa, pb) = (
        project(db, a, ProjectStatus::Active).await,
        project(db, b, ProjectStatus::Active).await,
    );
    let ua = Actor::User(a);
    let first = session(db, a, pa).await;
    let second = session(db, a, pa).await;
    repo::transition(db, ua, second.id, Active).await.unwrap();
    repo::transition(db, ua, second.id, Paused).await.unwrap();
    // Another user's sessions do not count against A's limit, nor A's against B's.
    session(db, b, pb).await;

    let err = repo::start(db, ua, NewSession::new(a, pa, "third"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::LimitReached {
                what: "live sessions",
                limit: 2
            }
        ),
        "{err:?}"
    );

    // Ending a session frees its slot; ended sessions do not count.
    repo::transition(db, ua, first.id, Completed).await.unwrap();
    session(db, a, pa).await;
    let err = repo::start(db, ua, NewSession::new(a, pa, "fourth"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForgeError::LimitReached { limit: 2, .. }),
        "{err:?}"
    );

    // A limit of 0 allows none.
    let c = owner(db, "c@example.com", 0).await;
    let pc = project(db, c, ProjectStatus::Active).await;
    let err = repo::start(db, Actor::Service, NewSession::new(c, pc, "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForgeError::LimitReached { limit: 0, .. }),
        "{err:?}"
    );

    let live_of_a = all_sessions(db)
        .await
        .into_iter()
        .filter(|s| s.user_id == a && s.status.is_live())
        .count();
    assert_eq!(live_of_a, 2);
}

/// Drives a new session of `a` to `status` along allowed transitions.
async fn session_in(
    db: &DatabaseConnection,
    a: ProfileId,
    p: ProjectId,
    status: SessionStatus,
) -> SessionId {
    let path: &[SessionStatus] = match status {
        Pending => &[],
        Active => &[Active],
        Paused => &[Active, Paused],
        Completed => &[Completed],
        Failed => &[Failed],
        Expired => &[Expired],
    };
    let id = session(db, a, p).await.id;
    for &step in path {
        repo::transition(db, Actor::User(a), id, step)
            .await
            .unwrap();
    }
    id
}

async fn every_allowed_transition_works(t: &TestDb) {
    let db = &t.db;
    let a = owner(db, "a@example.com", 50).await;
    let p = project(db, a, ProjectStatus::Active).await;
    let mut allowed = 0;
    for &from in SessionStatus::ALL {
        for &to in SessionStatus::ALL {
            if !from.can_transition_to(to) {
                continue;
            }
            allowed += 1;
            let id = session_in(db, a, p, from).await;
            let before = repo::get(db, Actor::Service, id).await.unwrap();
            // Users drive their own sessions; the service drives anyone's.
            let actor = if allowed % 2 == 0 {
                Actor::User(a)
            } else {
                Actor::Service
            };
            let after = repo::transition(db, actor, id, to).await.unwrap();
            assert_eq!(after.status, to, "{from} → {to}");
            assert!(after.updated_at >= before.updated_at);
            assert_eq!(repo::get(db, Actor::User(a), id).await.unwrap().status, to);
        }
    }
    assert_eq!(allowed, 12, "SCHEMA.md lists twelve transitions");
}

async fn disallowed_transitions_name_from_and_to(t: &TestDb) {
    let db = &t.db;
    let a = owner(db, "a@example.com", 50).await;
    let p = project(db, a, ProjectStatus::Active).await;
    let refused = [
        (Pending, Pending),
        (Pending, Paused),
        (Active, Active),
        (Active, Pending),
        (Paused, Pending),
        (Paused, Paused),
        (Completed, Active),
        (Completed, Failed),
        (Failed, Active),
        (Failed, Completed),
        (Expired, Active),
        (Expired, Pending),
        (Expired, Expired),
    ];
    for (from, to) in refused {
        let id = session_in(db, a, p, from).await;
        let err = repo::transition(db, Actor::User(a), id, to)
            .await
            .unwrap_err();
        assert_invalid_transition(err, from, to);
        assert_eq!(
            repo::get(db, Actor::Service, id).await.unwrap().status,
            from
        );
    }
    let err = repo::transition(db, Actor::Service, SessionId::new(), Active)
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }), "{err:?}");
}

async fn preview_urls_are_set_and_cleared(t: &TestDb) {
    let db = &t.db;
    let a = owner(db, "a@example.com", 3).await;
    let p = project(db, a, ProjectStatus::Active).await;
    let s = session(db, a, p).await;
    let eas = "https://u.expo.dev/abc?runtime-version=1";
    let web = "https://preview.example/s/1";

    let set = repo::set_preview(
        db,
        Actor::Service,
        s.id,
        Some(eas.into()),
        Some(format!(" {web} ")),
    )
    .await
    .unwrap();
    assert_eq!(
        (set.eas_update_url.as_deref(), set.webview_url.as_deref()),
        (Some(eas), Some(web))
    );
    assert_eq!(
        (set.status, set.initial_prompt.as_str()),
        (s.status, s.initial_prompt.as_str())
    );
    assert!(set.updated_at >= s.updated_at);

    let cleared = repo::set_preview(db, Actor::User(a), s.id, None, Some(web.into()))
        .await
        .unwrap();
    assert_eq!(
        (
            cleared.eas_update_url.as_deref(),
            cleared.webview_url.as_deref()
        ),
        (None, Some(web))
    );

    for (eas, web, field) in [
        (Some(" ".to_owned()), None, "eas_update_url"),
        (None, Some("x".repeat(2049)), "webview_url"),
    ] {
        let err = repo::set_preview(db, Actor::User(a), s.id, eas, web)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { field: f, .. } if f == field),
            "{err:?}"
        );
    }
    assert_eq!(repo::get(db, Actor::User(a), s.id).await.unwrap(), cleared);
}

/// Moves `id`'s expiry into the past behind the repository's back (raw, in the service's
/// context).
async fn make_overdue(db: &DatabaseConnection, id: SessionId) {
    as_service(db, move |txn| {
        Box::pin(async move {
            coding_sessions::Entity::update_many()
                .col_expr(
                    coding_sessions::Column::ExpiresAt,
                    Expr::value(Utc::now() - TimeDelta::minutes(1)),
                )
                .filter(coding_sessions::Column::Id.eq(id))
                .exec(txn)
                .await?;
            Ok(())
        })
    })
    .await
}

async fn expire_overdue_expires_only_overdue_live_sessions(t: &TestDb) {
    let db = &t.db;
    let a = owner(db, "a@example.com", 50).await;
    let b = owner(db, "b@example.com", 50).await;
    let (pa, pb) = (
        project(db, a, ProjectStatus::Active).await,
        project(db, b, ProjectStatus::Active).await,
    );
    let mut overdue_live = Vec::new();
    for (who, p, status) in [(a, pa, Pending), (a, pa, Active), (b, pb, Paused)] {
        let id = session_in(db, who, p, status).await;
        make_overdue(db, id).await;
        overdue_live.push(id);
    }
    let overdue_ended = session_in(db, a, pa, Completed).await;
    make_overdue(db, overdue_ended).await;
    let not_due = session_in(db, a, pa, Active).await;
    let before = all_sessions(db).await;

    let err = repo::expire_overdue(db, Actor::User(a)).await.unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    assert_eq!(
        all_sessions(db).await,
        before,
        "a refused call changes nothing"
    );

    assert_eq!(repo::expire_overdue(db, Actor::Service).await.unwrap(), 3);
    for id in overdue_live {
        assert_eq!(
            repo::get(db, Actor::Service, id).await.unwrap().status,
            Expired
        );
    }
    assert_eq!(
        repo::get(db, Actor::Service, overdue_ended)
            .await
            .unwrap()
            .status,
        Completed
    );
    assert_eq!(
        repo::get(db, Actor::Service, not_due).await.unwrap().status,
        Active
    );
    assert_eq!(repo::expire_overdue(db, Actor::Service).await.unwrap(), 0);
}

async fn user_b_cannot_see_or_touch_a_sessions(t: &TestDb) {
    let db = &t.db;
    let a = owner(db, "a@example.com", 3).await;
    let b = owner(db, "b@example.com", 3).await;
    let pa = project(db, a, ProjectStatus::Active).await;
    let s = session(db, a, pa).await;
    repo::set_preview(
        db,
        Actor::User(a),
        s.id,
        Some("https://u.expo.dev/a".into()),
        None,
    )
    .await
    .unwrap();
    let before = all_sessions(db).await;
    let ub = Actor::User(b);
    let not_found = |r: Result<coding_sessions::Model, ForgeError>| {
        assert!(matches!(r, Err(ForgeError::NotFound { .. })), "{r:?}");
    };

    not_found(repo::get(db, ub, s.id).await);
    assert_eq!(repo::find(db, ub, s.id).await.unwrap(), None);
    for filter in [
        SessionFilter::default(),
        SessionFilter {
            project_id: Some(pa),
            ..Default::default()
        },
        SessionFilter {
            status: Some(Pending),
            ..Default::default()
        },
    ] {
        let page = repo::list(db, ub, filter, PageRequest::first())
            .await
            .unwrap();
        assert!(page.items.is_empty() && page.next.is_none(), "{page:?}");
    }
    for to in [Active, Completed, Failed, Expired] {
        not_found(repo::transition(db, ub, s.id, to).await);
    }
    not_found(repo::set_preview(db, ub, s.id, None, None).await);
    // Not on A's project, whoever B claims to start for.
    not_found(repo::start(db, ub, NewSession::new(b, pa, "mine now")).await);
    let err = repo::start(db, ub, NewSession::new(a, pa, "as A"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "profile",
                ..
            }
        ),
        "{err:?}"
    );

    assert_eq!(all_sessions(db).await, before, "A's session is unchanged");
    assert_eq!(
        repo::get(db, Actor::User(a), s.id).await.unwrap(),
        before[0]
    );
}

async fn concurrent_starts_respect_the_limit_exactly(t: &TestDb) {
    const STARTS: usize = 12;
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    let a = owner(&setup, "race@example.com", 3).await;
    let p = project(&setup, a, ProjectStatus::Active).await;

    let mut tasks = Vec::new();
    for (i, db) in shared.pools(STARTS).await.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let out = repo::start(
                &db,
                Actor::User(a),
                NewSession::new(a, p, format!("start {i}")),
            )
            .await;
            db.close().await.ok();
            out
        }));
    }
    let (mut started, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(s) => {
                assert_eq!(s.status, Pending);
                started += 1;
            }
            Err(ForgeError::LimitReached {
                what: "live sessions",
                limit: 3,
            }) => refused += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((started, refused), (3, STARTS - 3));
    let live = as_service(&setup, move |txn| {
        Box::pin(async move {
            Ok(coding_sessions::Entity::find()
                .filter(coding_sessions::Column::UserId.eq(a))
                .filter(coding_sessions::Column::Status.is_in(SessionStatus::LIVE.iter().copied()))
                .all(txn)
                .await?)
        })
    })
    .await;
    assert_eq!(live.len(), 3);
    setup.close().await.ok();
    shared.finish();
}

async fn racing_transitions_have_one_winner(t: &TestDb) {
    const RACERS: usize = 6;
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    let a = owner(&setup, "race@example.com", 3).await;
    let p = project(&setup, a, ProjectStatus::Active).await;
    let id = session_in(&setup, a, p, Active).await;

    let mut tasks = Vec::new();
    for (i, db) in shared.pools(RACERS).await.into_iter().enumerate() {
        let to = if i % 2 == 0 { Completed } else { Failed };
        tasks.push(tokio::spawn(async move {
            let out = repo::transition(&db, Actor::User(a), id, to).await;
            db.close().await.ok();
            (to, out)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (to, Ok(s)) => {
                assert_eq!(s.status, to);
                winners.push(to);
            }
            (to, Err(err)) => match err {
                ForgeError::InvalidTransition { from, to: t, .. } => {
                    assert!(from == "completed" || from == "failed", "{from}");
                    assert_eq!(t, to.as_str());
                }
                other => panic!("unexpected error: {other:?}"),
            },
        }
    }
    assert_eq!(winners.len(), 1, "exactly one transition wins: {winners:?}");
    let s = repo::get(&setup, Actor::Service, id).await.unwrap();
    assert_eq!(s.status, winners[0]);
    setup.close().await.ok();
    shared.finish();
}

/// PostgreSQL: an unfiltered query in B's context sees none of A's sessions (the RLS wall
/// on its own), while A sees theirs.
#[tokio::test]
async fn postgres_rls_alone_hides_other_users_sessions() {
    let t = TestDb::postgres().await;
    let db = &t.db;
    assert_eq!(t.backend(), DbBackend::Postgres);
    let a = owner(db, "a@example.com", 3).await;
    let b = owner(db, "b@example.com", 3).await;
    let s = session(db, a, project(db, a, ProjectStatus::Active).await).await;
    let seen_by_b = unfiltered_as::<coding_sessions::Entity>(db, Actor::User(b)).await;
    assert!(seen_by_b.is_empty(), "{seen_by_b:?}");
    let seen_by_a = unfiltered_as::<coding_sessions::Entity>(db, Actor::User(a)).await;
    assert_eq!(seen_by_a.iter().map(|s| s.id).collect::<Vec<_>>(), [s.id]);
    t.finish().await;
}
