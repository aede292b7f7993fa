//! forge_service::activity on both backends: every logged action of every repository
//! (projects, sessions, API keys, batches) leaves exactly one entry, written by the
//! database in the action's own transaction (a refused action or a rolled-back caller
//! transaction leaves none); the list is newest first with keyset pages and filters; a
//! user reads only their own log and nobody can change it; on PostgreSQL an end user's
//! raw SQL cannot write it.

mod common;

use std::collections::HashSet;

use common::TestDb;
use forge_db::entity::activity_logs;
use forge_db::entity::coding_sessions::SessionStatus;
use forge_db::entity::ids::{ActivityId, ProfileId};
use forge_db::entity::profiles::Tier;
use forge_db::sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, TransactionTrait};
use forge_db::service::activity::{self, ActivityFilter};
use forge_db::service::api_keys::{self, NewApiKey, Scope};
use forge_db::service::projects::{self, NewProject, ProjectPatch};
use forge_db::service::sessions::{self, NewSession};
use forge_db::service::testing::fixtures;
use forge_db::service::{Access, Actor, ForgeError, PageRequest, batches, profiles, run_as};
use uuid::Uuid;

on_both_backends! {
    every_action_is_logged_once => every_action_is_logged_once;
    refused_and_rolled_back_actions_leave_no_entry => refused_and_rolled_back_actions_leave_no_entry;
    a_user_reads_only_their_own_log => a_user_reads_only_their_own_log;
    filters_and_pages => filters_and_pages;
    nobody_changes_the_log => nobody_changes_the_log;
}

/// `(action, entity_type, entity_id)` of an entry.
type Entry = (String, Option<String>, Option<Uuid>);

fn entry(action: &str, kind: &str, id: impl Into<Uuid>) -> Entry {
    (action.to_owned(), Some(kind.to_owned()), Some(id.into()))
}

/// A user allowed `limit` live sessions.
async fn user(db: &DatabaseConnection, email: &str, limit: i32) -> ProfileId {
    let id = common::signup(db, email).await;
    profiles::set_plan(db, Actor::Service, id, Tier::Pro, limit)
        .await
        .expect("set plan");
    id
}

/// Every entry of `user`'s log as `actor` reads it, following the pages (`page_size`
/// rows each), checking that they come newest first and that no entry repeats.
async fn whole_log<C: forge_db::service::Connection>(
    db: &C,
    actor: Actor,
    user: ProfileId,
    filter: &ActivityFilter,
    page_size: u64,
) -> Vec<activity_logs::Model> {
    let mut request = PageRequest::with_limit(page_size);
    let mut all: Vec<activity_logs::Model> = Vec::new();
    loop {
        let page = activity::list(db, actor, user, filter, &request)
            .await
            .expect("list");
        assert!(page.items.len() as u64 <= page_size);
        all.extend(page.items);
        match page.next {
            Some(cursor) => request = request.next(cursor),
            None => break,
        }
    }
    for pair in all.windows(2) {
        assert!(
            (pair[0].created_at, pair[0].id.into_uuid())
                > (pair[1].created_at, pair[1].id.into_uuid()),
            "newest first, by (created_at, id): {pair:?}"
        );
    }
    all
}

async fn log_of(db: &DatabaseConnection, user: ProfileId) -> Vec<activity_logs::Model> {
    whole_log(db, Actor::User(user), user, &ActivityFilter::default(), 200).await
}

/// The entries as a sorted list of `(action, entity_type, entity_id)`.
fn entries(log: &[activity_logs::Model]) -> Vec<Entry> {
    let mut out: Vec<Entry> = log
        .iter()
        .map(|e| (e.action.clone(), e.entity_type.clone(), e.entity_id))
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
    v.sort();
    v
}

async fn every_action_is_logged_once(t: &TestDb) {
    let db = &t.db;
    let u = user(db, "actions@example.com", 5).await;
    let me = Actor::User(u);
    let mut expected = Vec::new();

    // Projects: created, archived, deleted; updates and restores are not logged.
    let p1 = projects::create(db, me, NewProject::new(u, "Weather app"))
        .await
        .unwrap();
    expected.push(entry("project.created", "project", p1.id));
    let patch = ProjectPatch {
        name: Some("Weather radar".into()),
        ..Default::default()
    };
    projects::update(db, me, p1.id, patch).await.unwrap();
    projects::archive(db, me, p1.id).await.unwrap();
    expected.push(entry("project.archived", "project", p1.id));
    projects::restore(db, me, p1.id).await.unwrap();
    projects::soft_delete(db, me, p1.id).await.unwrap();
    expected.push(entry("project.deleted", "project", p1.id));
    let p2 = projects::create(db, me, NewProject::new(u, "Todo app"))
        .await
        .unwrap();
    expected.push(entry("project.created", "project", p2.id));

    // Sessions: started, and ended whichever way they end; the live moves are not logged.
    for (by, end) in [
        (me, SessionStatus::Completed),
        (me, SessionStatus::Failed),
        (Actor::Service, SessionStatus::Expired),
    ] {
        let s = sessions::start(db, me, NewSession::new(u, p2.id, "Build it"))
            .await
            .unwrap();
        expected.push(entry("session.started", "session", s.id));
        sessions::transition(db, me, s.id, SessionStatus::Active)
            .await
            .unwrap();
        sessions::transition(db, me, s.id, SessionStatus::Paused)
            .await
            .unwrap();
        let s = sessions::transition(db, by, s.id, end).await.unwrap();
        assert_eq!(s.status, end);
        expected.push(entry("session.ended", "session", s.id));
    }
    let live = sessions::start(db, me, NewSession::new(u, p2.id, "Still running"))
        .await
        .unwrap();
    expected.push(entry("session.started", "session", live.id));

    // API keys: created and revoked; a rename is not logged.
    let key = api_keys::create(db, me, NewApiKey::new("CI", [Scope::Read]))
        .await
        .unwrap()
        .key;
    expected.push(entry("api_key.created", "api_key", key.id));
    api_keys::rename(db, me, key.id, "CI (old)").await.unwrap();
    api_keys::revoke(db, me, key.id).await.unwrap();
    expected.push(entry("api_key.revoked", "api_key", key.id));
    let kept = api_keys::create(db, Actor::Service, {
        let mut new = NewApiKey::new("deploy", [Scope::Read, Scope::Write]);
        new.owner = Some(u);
        new
    })
    .await
    .unwrap()
    .key;
    expected.push(entry("api_key.created", "api_key", kept.id));

    // Batches: created and cancelled; pausing and resuming are not logged.
    let b = fixtures::batch_with_items(db, u, 3).await.unwrap();
    expected.push(entry("batch.created", "batch", b.id));
    batches::pause(db, me, b.id).await.unwrap();
    batches::resume(db, me, b.id).await.unwrap();
    batches::cancel(db, me, b.id).await.unwrap();
    expected.push(entry("batch.cancelled", "batch", b.id));
    let b2 = fixtures::batch_with_items(db, u, 1).await.unwrap();
    expected.push(entry("batch.created", "batch", b2.id));

    // Actions that are not in the log: conversations, jobs, events.
    fixtures::conversation_with_turns(db, u, 2).await.unwrap();

    let log = log_of(db, u).await;
    assert_eq!(entries(&log), sorted(expected.clone()), "each action once");
    assert!(log.iter().all(|e| e.user_id == u));
    // Read in small pages, the service sees the same.
    let paged = whole_log(db, Actor::Service, u, &ActivityFilter::default(), 3).await;
    assert_eq!(paged, log);

    // What the entries say.
    let created = log
        .iter()
        .find(|e| e.action == "project.created" && e.entity_id == Some(p2.id.into()))
        .unwrap();
    assert_eq!(created.metadata["name"], "Todo app");
    let ends: HashSet<String> = log
        .iter()
        .filter(|e| e.action == "session.ended")
        .map(|e| e.metadata["status"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        ends,
        ["completed", "failed", "expired"].map(str::to_owned).into()
    );
    let revoked = log.iter().find(|e| e.action == "api_key.revoked").unwrap();
    assert_eq!(revoked.metadata["key_prefix"], key.key_prefix.as_str());
}

async fn refused_and_rolled_back_actions_leave_no_entry(t: &TestDb) {
    let db = &t.db;
    let u = user(db, "refused@example.com", 1).await;
    let me = Actor::User(u);

    // A caller's transaction rolled back around projects::create: no entry, though the
    // entry was there inside it (same transaction).
    let txn = db.begin().await.unwrap();
    let p = projects::create(&txn, me, NewProject::new(u, "Rolled back"))
        .await
        .unwrap();
    let inside = whole_log(&txn, me, u, &ActivityFilter::default(), 50).await;
    assert_eq!(
        entries(&inside),
        [entry("project.created", "project", p.id)]
    );
    txn.rollback().await.unwrap();
    assert!(
        log_of(db, u).await.is_empty(),
        "rolled back with the project"
    );

    // Inside a committed caller transaction, a refused call (its savepoint rolled back)
    // leaves nothing, the successful ones their entries.
    let txn = db.begin().await.unwrap();
    let p = projects::create(&txn, me, NewProject::new(u, "Kept"))
        .await
        .unwrap();
    projects::archive(&txn, me, p.id).await.unwrap();
    let again = projects::archive(&txn, me, p.id).await;
    assert!(
        matches!(again, Err(ForgeError::InvalidTransition { .. })),
        "{again:?}"
    );
    projects::restore(&txn, me, p.id).await.unwrap();
    txn.commit().await.unwrap();
    let mut expected = vec![
        entry("project.created", "project", p.id),
        entry("project.archived", "project", p.id),
    ];
    assert_eq!(entries(&log_of(db, u).await), sorted(expected.clone()));

    // Refused calls on the pool: a start over the limit, a start on an archived project,
    // ending an ended session, revoking twice, cancelling twice, someone else's project.
    let s = sessions::start(db, me, NewSession::new(u, p.id, "one"))
        .await
        .unwrap();
    expected.push(entry("session.started", "session", s.id));
    let over = sessions::start(db, me, NewSession::new(u, p.id, "two")).await;
    assert!(
        matches!(over, Err(ForgeError::LimitReached { .. })),
        "{over:?}"
    );
    sessions::transition(db, me, s.id, SessionStatus::Failed)
        .await
        .unwrap();
    expected.push(entry("session.ended", "session", s.id));
    let twice = sessions::transition(db, me, s.id, SessionStatus::Completed).await;
    assert!(
        matches!(twice, Err(ForgeError::InvalidTransition { .. })),
        "{twice:?}"
    );
    projects::archive(db, me, p.id).await.unwrap();
    expected.push(entry("project.archived", "project", p.id));
    let archived = sessions::start(db, me, NewSession::new(u, p.id, "archived")).await;
    assert!(archived.is_err(), "{archived:?}");

    let key = api_keys::create(db, me, NewApiKey::new("CI", [Scope::Read]))
        .await
        .unwrap()
        .key;
    expected.push(entry("api_key.created", "api_key", key.id));
    api_keys::revoke(db, me, key.id).await.unwrap();
    expected.push(entry("api_key.revoked", "api_key", key.id));
    assert!(api_keys::revoke(db, me, key.id).await.is_err());
    let blank = api_keys::create(db, me, NewApiKey::new("  ", [Scope::Read])).await;
    assert!(
        matches!(blank, Err(ForgeError::Validation { .. })),
        "{blank:?}"
    );

    let b = fixtures::batch_with_items(db, u, 1).await.unwrap();
    expected.push(entry("batch.created", "batch", b.id));
    batches::cancel(db, me, b.id).await.unwrap();
    expected.push(entry("batch.cancelled", "batch", b.id));
    assert!(batches::cancel(db, me, b.id).await.is_err());

    let other = user(db, "other@example.com", 1).await;
    let theirs = fixtures::project(db, other).await.unwrap();
    let stolen = projects::archive(db, me, theirs.id).await;
    assert!(
        matches!(stolen, Err(ForgeError::NotFound { .. })),
        "{stolen:?}"
    );
    let named = projects::create(db, me, NewProject::new(other, "for them")).await;
    assert!(
        matches!(named, Err(ForgeError::NotFound { .. })),
        "{named:?}"
    );

    assert_eq!(entries(&log_of(db, u).await), sorted(expected));
    assert_eq!(
        entries(&log_of(db, other).await),
        [entry("project.created", "project", theirs.id)]
    );
}

async fn a_user_reads_only_their_own_log(t: &TestDb) {
    let db = &t.db;
    let ada = user(db, "ada@example.com", 1).await;
    let bob = user(db, "bob@example.com", 1).await;
    let pa = fixtures::project(db, ada).await.unwrap();
    let pb = fixtures::project(db, bob).await.unwrap();

    let hers = log_of(db, ada).await;
    assert_eq!(entries(&hers), [entry("project.created", "project", pa.id)]);
    let his = log_of(db, bob).await;
    assert_eq!(entries(&his), [entry("project.created", "project", pb.id)]);

    // Ada naming Bob reads nothing; his entry by id is missing to her.
    let page = activity::list(
        db,
        Actor::User(ada),
        bob,
        &ActivityFilter::default(),
        &PageRequest::first(),
    )
    .await
    .unwrap();
    assert!(page.items.is_empty() && page.next.is_none());
    let err = activity::get(db, Actor::User(ada), his[0].id)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "activity",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        activity::find(db, Actor::User(ada), his[0].id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        activity::get(db, Actor::User(bob), his[0].id)
            .await
            .unwrap(),
        his[0]
    );
    assert_eq!(
        activity::find(db, Actor::Service, ActivityId::new())
            .await
            .unwrap(),
        None
    );

    // The service reads anyone's.
    let service = whole_log(db, Actor::Service, bob, &ActivityFilter::default(), 10).await;
    assert_eq!(service, his);

    // On PostgreSQL row-level security alone shows her only her own entries.
    let unfiltered = run_as(db, Actor::User(ada), Access::Read, |txn| {
        Box::pin(async move { Ok(activity_logs::Entity::find().all(txn).await?) })
    })
    .await
    .unwrap();
    if t.backend() == forge_db::sea_orm::DbBackend::Postgres {
        assert_eq!(unfiltered, hers);
    } else {
        assert_eq!(
            unfiltered.len(),
            2,
            "SQLite: the repository's filter is the wall"
        );
    }
}

async fn filters_and_pages(t: &TestDb) {
    let db = &t.db;
    let u = user(db, "filters@example.com", 2).await;
    let me = Actor::User(u);
    let mut projects_made = Vec::new();
    for n in 0..5 {
        let p = projects::create(db, me, NewProject::new(u, format!("p{n}")))
            .await
            .unwrap();
        projects_made.push(p);
    }
    let p0 = projects_made[0].id;
    projects::archive(db, me, p0).await.unwrap();
    let s = sessions::start(db, me, NewSession::new(u, projects_made[1].id, "go"))
        .await
        .unwrap();

    let all = log_of(db, u).await;
    assert_eq!(all.len(), 7);
    let count = |filter: ActivityFilter| async move { whole_log(db, me, u, &filter, 2).await };
    assert_eq!(count(ActivityFilter::action("project.")).await.len(), 6);
    assert_eq!(
        count(ActivityFilter::action("project.created")).await.len(),
        5
    );
    let archived = count(ActivityFilter::action("project.archived")).await;
    assert_eq!(
        entries(&archived),
        [entry("project.archived", "project", p0)]
    );
    assert_eq!(count(ActivityFilter::action("session.")).await.len(), 1);
    assert_eq!(count(ActivityFilter::action("s")).await.len(), 1);
    // Compared exactly: no case folding, no wildcards.
    for prefix in [
        "Project.",
        "PROJECT",
        "%",
        "_roject",
        "project.%",
        "project.created ",
    ] {
        assert!(
            count(ActivityFilter::action(prefix)).await.is_empty(),
            "{prefix:?}"
        );
    }
    let about_p0 = count(ActivityFilter::entity("project", p0)).await;
    assert_eq!(
        entries(&about_p0),
        sorted(vec![
            entry("project.archived", "project", p0),
            entry("project.created", "project", p0),
        ])
    );
    assert_eq!(about_p0[0].action, "project.archived", "newest first");
    let sessions_only = ActivityFilter {
        entity_type: Some("session".into()),
        ..Default::default()
    };
    assert_eq!(
        entries(&count(sessions_only).await),
        [entry("session.started", "session", s.id)]
    );
    let both = ActivityFilter {
        action_prefix: Some("project.".into()),
        entity_id: Some(projects_made[4].id.into()),
        ..Default::default()
    };
    assert_eq!(count(both).await.len(), 1);

    // Pages of 2 over 7 entries: 4 pages, together the whole log, in the same order.
    let mut request = PageRequest::with_limit(2);
    let mut pages = 0;
    let mut seen = Vec::new();
    loop {
        let page = activity::list(db, me, u, &ActivityFilter::default(), &request)
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.items);
        // An entry logged meanwhile is newer than every page: it never shows up late.
        if pages == 1 {
            projects::create(db, me, NewProject::new(u, "meanwhile"))
                .await
                .unwrap();
        }
        match page.next {
            Some(cursor) => request = request.next(cursor),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(seen, all);

    // Bad filters and pages are refused before anything runs.
    for filter in [
        ActivityFilter::action(""),
        ActivityFilter::action("x".repeat(101)),
        ActivityFilter::action("project\0"),
        ActivityFilter {
            entity_type: Some(String::new()),
            ..Default::default()
        },
    ] {
        let err = activity::list(db, me, u, &filter, &PageRequest::first())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { .. }),
            "{filter:?}: {err:?}"
        );
    }
    assert!(
        activity::list(
            db,
            me,
            u,
            &ActivityFilter::action("x".repeat(100)),
            &PageRequest::first()
        )
        .await
        .is_ok()
    );
    let err = activity::list(
        db,
        me,
        u,
        &ActivityFilter::default(),
        &PageRequest::with_limit(0),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ForgeError::Validation { field: "limit", .. }),
        "{err:?}"
    );
}

async fn nobody_changes_the_log(t: &TestDb) {
    let db = &t.db;
    let u = user(db, "append-only@example.com", 1).await;
    let me = Actor::User(u);
    let p = fixtures::project(db, u).await.unwrap();
    let before = log_of(db, u).await;
    assert_eq!(before.len(), 1);

    // Repository calls that are not logged leave the log as it was.
    projects::update(
        db,
        me,
        p.id,
        ProjectPatch {
            description: Some(Some("a description".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fixtures::conversation_with_turns(db, u, 2).await.unwrap();
    assert_eq!(log_of(db, u).await, before);

    // Changing or deleting an entry is refused for the user and for the service alike,
    // on both backends (SQLite's and PostgreSQL's append-only triggers; on PostgreSQL
    // the user has no privilege to begin with).
    for actor in [me, Actor::Service] {
        for sql in [
            "UPDATE activity_logs SET action = 'project.hacked'",
            "UPDATE activity_logs SET metadata = '{}'",
            "DELETE FROM activity_logs",
        ] {
            let out = run_as(db, actor, Access::Write, move |txn| {
                Box::pin(async move { Ok(txn.execute_unprepared(sql).await?.rows_affected()) })
            })
            .await;
            assert!(out.is_err(), "{actor:?}: {sql}: {out:?}");
        }
    }
    assert_eq!(log_of(db, u).await, before);
}

/// On PostgreSQL an end user (PostgREST, or SQL forgetting Forge) reads their own log
/// but can neither add to it nor change or delete an entry, their own included.
#[tokio::test]
async fn postgres_end_users_cannot_write_the_log() {
    let t = TestDb::postgres().await;
    let db = &t.db;
    let ada = user(db, "ada@example.com", 1).await;
    let bob = user(db, "bob@example.com", 1).await;
    let p = fixtures::project(db, ada).await.unwrap();
    fixtures::project(db, bob).await.unwrap();
    let before = common::query_string(
        &t.owner,
        "SELECT string_agg(id::text || action || metadata::text, ',' ORDER BY id) FROM activity_logs",
    )
    .await;

    for sql in [
        format!(
            "INSERT INTO activity_logs (user_id, action, entity_type, entity_id) \
             VALUES ('{ada}', 'project.created', 'project', '{}')",
            p.id
        ),
        format!("INSERT INTO activity_logs (user_id, action) VALUES ('{bob}', 'api_key.revoked')"),
        format!("UPDATE activity_logs SET action = 'x' WHERE user_id = '{ada}'"),
        "UPDATE activity_logs SET metadata = '{}'".to_owned(),
        format!("DELETE FROM activity_logs WHERE user_id = '{ada}'"),
        "DELETE FROM activity_logs".to_owned(),
        "TRUNCATE activity_logs".to_owned(),
    ] {
        let out = common::as_user(&t.owner, ada, &sql).await;
        assert!(
            matches!(&out, Err(e) if e.contains("permission denied")),
            "{sql}: {out:?}"
        );
    }
    // Reading: her own entry only.
    let txn = t.owner.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "SET LOCAL ROLE authenticated; SELECT set_config('request.jwt.claim.sub', '{ada}', true);"
    ))
    .await
    .unwrap();
    let visible = common::query_i64(&txn, "SELECT count(*) FROM activity_logs").await;
    txn.rollback().await.unwrap();
    assert_eq!(visible, 1);

    let after = common::query_string(
        &t.owner,
        "SELECT string_agg(id::text || action || metadata::text, ',' ORDER BY id) FROM activity_logs",
    )
    .await;
    assert_eq!(after, before);
    t.finish().await;
}
