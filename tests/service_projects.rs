//! forge_service::projects on both backends: create, read, list with keyset pages,
//! edit, the status machine, isolation between users and refused input.

mod common;
use common::signup;
use forge_db::entity::ids::{ProfileId, ProjectId};

use common::TestDb;
use forge_db::entity::projects::{self, ProjectStatus};
use forge_db::sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait, TransactionTrait,
};
use forge_db::service::projects::{ListProjects, NewProject, ProjectPatch};
use forge_db::service::{
    Access, Actor, DEFAULT_PAGE_SIZE, ForgeError, MAX_PAGE_SIZE, Page, PageRequest,
    projects as repo, run_as,
};
use serde_json::json;

on_both_backends! {
    create_get_and_find => create_get_and_find;
    list_is_newest_first_and_filters => list_is_newest_first_and_filters;
    pages_are_stable_under_concurrent_inserts => pages_are_stable_under_concurrent_inserts;
    page_size_default_and_bounds => page_size_default_and_bounds;
    update_renames_describes_and_configures => update_renames_describes_and_configures;
    status_changes_follow_the_state_machine => status_changes_follow_the_state_machine;
    user_b_cannot_see_or_touch_user_a_projects => user_b_cannot_see_or_touch_user_a_projects;
    refused_input_changes_nothing => refused_input_changes_nothing;
}

/// Project `name` created by `owner` themself.
async fn project(db: &DatabaseConnection, owner: ProfileId, name: &str) -> projects::Model {
    repo::create(db, Actor::User(owner), NewProject::new(owner, name))
        .await
        .unwrap()
}

/// How many projects the database holds (counted in the service's context: the test
/// pool may do nothing outside one on PostgreSQL).
async fn count(db: &DatabaseConnection) -> u64 {
    common::as_service(db, |txn| {
        Box::pin(async move { Ok(projects::Entity::find().count(txn).await?) })
    })
    .await
}

fn names(page: &Page<projects::Model>) -> Vec<&str> {
    page.items.iter().map(|p| p.name.as_str()).collect()
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, ForgeError>) {
    assert!(
        matches!(result, Err(ForgeError::NotFound { .. })),
        "{result:?}"
    );
}

async fn create_get_and_find(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let p = repo::create(
        db,
        Actor::User(a),
        NewProject {
            description: Some("  A weather app ".into()),
            template_id: Some("expo-blank".into()),
            ..NewProject::new(a, "  Weather  ")
        },
    )
    .await
    .unwrap();
    assert_eq!(p.user_id, a);
    assert_eq!(p.name, "Weather");
    assert_eq!(p.description.as_deref(), Some("A weather app"));
    assert_eq!(p.template_id.as_deref(), Some("expo-blank"));
    assert_eq!(p.expo_config, json!({}));
    assert_eq!(
        (p.status, p.sandbox_id.clone()),
        (ProjectStatus::Active, None)
    );

    assert_eq!(repo::get(db, Actor::User(a), p.id).await.unwrap(), p);
    assert_eq!(
        repo::find(db, Actor::Service, p.id).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        repo::find(db, Actor::User(a), ProjectId::new())
            .await
            .unwrap(),
        None
    );
    assert_not_found(repo::get(db, Actor::User(a), ProjectId::new()).await);

    // The service creates for any existing owner, with a config.
    let q = repo::create(
        db,
        Actor::Service,
        NewProject {
            expo_config: Some(json!({ "name": "todo", "slug": "todo" })),
            ..NewProject::new(a, "Todo")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (q.user_id, q.expo_config["slug"].as_str()),
        (a, Some("todo"))
    );
    let err = repo::create(
        db,
        Actor::Service,
        NewProject::new(ProfileId::new(), "Ghost"),
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

    // Inside a caller's transaction: seen there, gone with its rollback.
    let txn = db.begin().await.unwrap();
    let r = repo::create(&txn, Actor::User(a), NewProject::new(a, "Scratch"))
        .await
        .unwrap();
    assert_eq!(
        repo::get(&txn, Actor::User(a), r.id).await.unwrap().name,
        "Scratch"
    );
    txn.rollback().await.unwrap();
    assert_eq!(repo::find(db, Actor::User(a), r.id).await.unwrap(), None);
    assert_eq!(count(db).await, 2);
}

async fn list_is_newest_first_and_filters(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let b = signup(db, "b@example.com").await;
    let ua = Actor::User(a);
    for name in ["one", "two", "three", "four"] {
        project(db, a, name).await;
    }
    let theirs = project(db, b, "b's").await;
    let first = repo::list(db, ua, &ListProjects::default(), &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(names(&first), ["four", "three", "two", "one"]);
    assert_eq!(first.next, None);
    let (three, two) = (first.items[1].id, first.items[2].id);
    repo::archive(db, ua, three).await.unwrap();
    repo::soft_delete(db, ua, two).await.unwrap();

    let list = |filter: ListProjects| async move {
        names(
            &repo::list(db, ua, &filter, &PageRequest::first())
                .await
                .unwrap(),
        )
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    assert_eq!(
        list(ListProjects::default()).await,
        ["four", "three", "one"]
    );
    let all = ListProjects {
        include_deleted: true,
        ..Default::default()
    };
    assert_eq!(list(all).await, ["four", "three", "two", "one"]);
    let only = |status| ListProjects {
        status: Some(status),
        ..Default::default()
    };
    assert_eq!(list(only(ProjectStatus::Deleted)).await, ["two"]);
    assert_eq!(list(only(ProjectStatus::Archived)).await, ["three"]);
    assert_eq!(list(only(ProjectStatus::Active)).await, ["four", "one"]);

    // The service sees everyone's, or one owner's.
    let everyone = repo::list(
        db,
        Actor::Service,
        &ListProjects::default(),
        &PageRequest::first(),
    )
    .await
    .unwrap();
    assert_eq!(names(&everyone), ["b's", "four", "three", "one"]);
    let of_b = ListProjects {
        owner: Some(b),
        ..Default::default()
    };
    let page = repo::list(db, Actor::Service, &of_b, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(page.items, vec![theirs]);
}

async fn pages_are_stable_under_concurrent_inserts(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let ua = Actor::User(a);
    let mut expected = Vec::new();
    for i in 0..7 {
        expected.push(project(db, a, &format!("old {i}")).await.id);
    }
    expected.reverse();

    let filter = ListProjects::default();
    let request = PageRequest::with_limit(3);
    let mut page = repo::list(db, ua, &filter, &request).await.unwrap();
    let mut seen: Vec<ProjectId> = page.items.iter().map(|p| p.id).collect();
    let mut round = 0;
    while let Some(cursor) = page.next.clone() {
        // Newer projects arrive while the reader fetches the next page.
        let writers: Vec<_> = (0..3)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let new = NewProject::new(a, format!("new {round}.{i}"));
                    repo::create(&db, Actor::User(a), new).await.unwrap();
                })
            })
            .collect();
        // As a client would: through the cursor's opaque string form.
        let cursor = cursor.to_string().parse().unwrap();
        page = repo::list(db, ua, &filter, &request.next(cursor))
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|p| p.id));
        for w in writers {
            w.await.unwrap();
        }
        round += 1;
    }
    assert_eq!(seen, expected, "no duplicates, no gaps, newest first");
    assert_eq!(round, 2);

    // A fresh first page starts with the newcomers.
    let fresh = repo::list(db, ua, &filter, &PageRequest::with_limit(MAX_PAGE_SIZE))
        .await
        .unwrap();
    assert_eq!(fresh.items.len(), 7 + 6);
    assert!(fresh.items[..6].iter().all(|p| p.name.starts_with("new")));
}

async fn page_size_default_and_bounds(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let ua = Actor::User(a);
    let total = DEFAULT_PAGE_SIZE + 1;
    for i in 0..total {
        project(db, a, &format!("p{i}")).await;
    }
    let filter = ListProjects::default();
    let first = repo::list(db, ua, &filter, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(first.items.len() as u64, DEFAULT_PAGE_SIZE);
    assert_eq!(first.items[0].name, format!("p{}", total - 1));
    let cursor = first.next.clone().expect("a second page");
    // The cursor survives a round trip through its opaque string form.
    let cursor = cursor.to_string().parse().unwrap();
    let second = repo::list(db, ua, &filter, &PageRequest::first().next(cursor))
        .await
        .unwrap();
    assert_eq!(names(&second), ["p0"]);
    assert_eq!(second.next, None);

    let all = repo::list(db, ua, &filter, &PageRequest::with_limit(MAX_PAGE_SIZE))
        .await
        .unwrap();
    assert_eq!((all.items.len() as u64, all.next), (total, None));
    for bad in [0, MAX_PAGE_SIZE + 1] {
        let err = repo::list(db, ua, &filter, &PageRequest::with_limit(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { field: "limit", .. }),
            "{bad}: {err:?}"
        );
    }
}

async fn update_renames_describes_and_configures(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let ua = Actor::User(a);
    let p = project(db, a, "Weather").await;
    let full = ProjectPatch {
        name: Some(" Weather 2 ".into()),
        description: Some(Some("Forecasts".into())),
        template_id: Some(Some("expo-tabs".into())),
        expo_config: Some(json!({ "orientation": "portrait" })),
        sandbox_id: Some(Some("sbx-1".into())),
    };
    // `sandbox_id` is the service's (SCHEMA.md): a user's patch naming it is refused
    // whole, setting or clearing.
    for sandbox_id in [Some(Some("sbx-1".to_owned())), Some(None)] {
        let patch = ProjectPatch {
            sandbox_id,
            ..full.clone()
        };
        let err = repo::update(db, ua, p.id, patch).await.unwrap_err();
        assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    }
    assert_eq!(repo::get(db, ua, p.id).await.unwrap(), p);

    let own = ProjectPatch {
        sandbox_id: None,
        ..full.clone()
    };
    let u = repo::update(db, ua, p.id, own).await.unwrap();
    assert_eq!(u.name, "Weather 2");
    assert_eq!(u.description.as_deref(), Some("Forecasts"));
    assert_eq!(u.template_id.as_deref(), Some("expo-tabs"));
    assert_eq!(u.expo_config, json!({ "orientation": "portrait" }));
    assert_eq!(u.sandbox_id, None);
    assert!(u.updated_at >= p.updated_at);
    assert_eq!(u.created_at, p.created_at);
    let sandboxed = ProjectPatch {
        sandbox_id: Some(Some("sbx-1".into())),
        ..Default::default()
    };
    let u = repo::update(db, Actor::Service, p.id, sandboxed)
        .await
        .unwrap();
    assert_eq!(u.sandbox_id.as_deref(), Some("sbx-1"));
    assert_eq!(u.name, "Weather 2");

    // `Some(None)` clears; fields left `None` stay.
    let cleared = repo::update(
        db,
        ua,
        p.id,
        ProjectPatch {
            description: Some(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(cleared.description, None);
    assert_eq!(cleared.sandbox_id.as_deref(), Some("sbx-1"));
    let cleared = repo::update(
        db,
        Actor::Service,
        p.id,
        ProjectPatch {
            sandbox_id: Some(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((cleared.description, cleared.sandbox_id), (None, None));
    assert_eq!(cleared.name, "Weather 2");
    assert_eq!(cleared.template_id.as_deref(), Some("expo-tabs"));
    assert_eq!(cleared.expo_config, json!({ "orientation": "portrait" }));

    // The service may edit anyone's; an archived project may be edited.
    repo::archive(db, ua, p.id).await.unwrap();
    let rename = |name: &str| ProjectPatch {
        name: Some(name.into()),
        ..Default::default()
    };
    let s = repo::update(db, Actor::Service, p.id, rename("By service"))
        .await
        .unwrap();
    assert_eq!(
        (s.name.as_str(), s.status),
        ("By service", ProjectStatus::Archived)
    );

    // A deleted project cannot be edited until it is restored.
    repo::soft_delete(db, ua, p.id).await.unwrap();
    let err = repo::update(db, ua, p.id, rename("Zombie"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ForgeError::InvalidTransition { entity: "project", from, .. } if from == "deleted"),
        "{err:?}"
    );
    assert_eq!(repo::get(db, ua, p.id).await.unwrap().name, "By service");
    repo::restore(db, ua, p.id).await.unwrap();
    let back = repo::update(db, ua, p.id, rename("Alive")).await.unwrap();
    assert_eq!(
        (back.name.as_str(), back.status),
        ("Alive", ProjectStatus::Active)
    );
}

async fn status_changes_follow_the_state_machine(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let ua = Actor::User(a);
    let id = project(db, a, "Weather").await.id;
    let status = || async { repo::get(db, ua, id).await.unwrap().status };
    let refused = |result: Result<projects::Model, ForgeError>, from: &str, to: &str| match result {
        Err(ForgeError::InvalidTransition {
            entity: "project",
            from: f,
            to: t,
        }) => assert_eq!((f.as_str(), t.as_str()), (from, to)),
        other => panic!("expected {from} → {to} to be refused, got {other:?}"),
    };

    refused(repo::restore(db, ua, id).await, "active", "active");
    assert_eq!(
        repo::archive(db, ua, id).await.unwrap().status,
        ProjectStatus::Archived
    );
    refused(repo::archive(db, ua, id).await, "archived", "archived");
    assert_eq!(
        repo::restore(db, ua, id).await.unwrap().status,
        ProjectStatus::Active
    );
    assert_eq!(
        repo::soft_delete(db, ua, id).await.unwrap().status,
        ProjectStatus::Deleted
    );
    refused(repo::archive(db, ua, id).await, "deleted", "archived");
    refused(repo::soft_delete(db, ua, id).await, "deleted", "deleted");
    assert_eq!(status().await, ProjectStatus::Deleted);
    // Deletion is soft: the row is still there and comes back.
    assert_eq!(count(db).await, 1);
    assert_eq!(
        repo::restore(db, ua, id).await.unwrap().status,
        ProjectStatus::Active
    );
    repo::archive(db, ua, id).await.unwrap();
    assert_eq!(
        repo::soft_delete(db, Actor::Service, id)
            .await
            .unwrap()
            .status,
        ProjectStatus::Deleted
    );
    assert_eq!(status().await, ProjectStatus::Deleted);
}

async fn user_b_cannot_see_or_touch_user_a_projects(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let b = signup(db, "b@example.com").await;
    let ub = Actor::User(b);
    let active = project(db, a, "A active").await;
    let archived = repo::archive(db, Actor::User(a), project(db, a, "A archived").await.id)
        .await
        .unwrap();
    let deleted = repo::soft_delete(db, Actor::User(a), project(db, a, "A deleted").await.id)
        .await
        .unwrap();
    let before = [active.clone(), archived.clone(), deleted.clone()];

    for p in &before {
        assert_eq!(repo::find(db, ub, p.id).await.unwrap(), None);
        assert_not_found(repo::get(db, ub, p.id).await);
        let patch = ProjectPatch {
            name: Some("mallory".into()),
            expo_config: Some(json!({ "owner": "mallory" })),
            ..Default::default()
        };
        assert_not_found(repo::update(db, ub, p.id, patch).await);
        // The sandbox is the service's: refused before any project is looked up.
        let patch = ProjectPatch {
            name: Some("mallory".into()),
            sandbox_id: Some(Some("evil".into())),
            ..Default::default()
        };
        let err = repo::update(db, ub, p.id, patch).await.unwrap_err();
        assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
        assert_not_found(repo::archive(db, ub, p.id).await);
        assert_not_found(repo::restore(db, ub, p.id).await);
        assert_not_found(repo::soft_delete(db, ub, p.id).await);
    }
    for filter in [
        ListProjects::default(),
        ListProjects {
            owner: Some(a),
            include_deleted: true,
            ..Default::default()
        },
        ListProjects {
            owner: Some(a),
            status: Some(ProjectStatus::Deleted),
            ..Default::default()
        },
    ] {
        let page = repo::list(db, ub, &filter, &PageRequest::first())
            .await
            .unwrap();
        assert_eq!((page.items.len(), page.next), (0, None), "{filter:?}");
    }
    // B cannot create a project in A's name: A's profile looks missing.
    let err = repo::create(db, ub, NewProject::new(a, "planted"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ForgeError::NotFound { entity: "profile", id } if *id == a.to_string()),
        "{err:?}"
    );

    // A's projects are exactly as they were, and nothing was added.
    for p in &before {
        assert_eq!(&repo::get(db, Actor::Service, p.id).await.unwrap(), p);
    }
    assert_eq!(count(db).await, 3);
}

async fn refused_input_changes_nothing(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let ua = Actor::User(a);
    let refused = |result: Result<projects::Model, ForgeError>, field: &str| match result {
        Err(ForgeError::Validation { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected {field} to be refused, got {other:?}"),
    };
    let long_name = "é".repeat(201);
    for name in ["", "   ", long_name.as_str()] {
        refused(repo::create(db, ua, NewProject::new(a, name)).await, "name");
    }
    let ok = NewProject::new(a, "ok");
    let cases = [
        (
            NewProject {
                description: Some(" ".into()),
                ..ok.clone()
            },
            "description",
        ),
        (
            NewProject {
                template_id: Some("".into()),
                ..ok.clone()
            },
            "template_id",
        ),
        (
            NewProject {
                template_id: Some("t".repeat(256)),
                ..ok.clone()
            },
            "template_id",
        ),
        (
            NewProject {
                expo_config: Some(json!(["not", "an", "object"])),
                ..ok.clone()
            },
            "expo_config",
        ),
        (
            // JSON documents hold at most 64 KiB.
            NewProject {
                expo_config: Some(json!({ "blob": "x".repeat(70_000) })),
                ..ok
            },
            "expo_config",
        ),
    ];
    for (new, field) in cases {
        refused(repo::create(db, ua, new).await, field);
    }
    assert_eq!(count(db).await, 0);

    // 200 characters is the limit, counted in characters, not bytes.
    let p = project(db, a, &"é".repeat(200)).await;
    let patches: [(ProjectPatch, &str); 5] = [
        (
            ProjectPatch {
                name: Some(" ".into()),
                ..Default::default()
            },
            "name",
        ),
        (
            ProjectPatch {
                name: Some(long_name.clone()),
                ..Default::default()
            },
            "name",
        ),
        (
            ProjectPatch {
                description: Some(Some("".into())),
                ..Default::default()
            },
            "description",
        ),
        (
            ProjectPatch {
                expo_config: Some(json!(42)),
                ..Default::default()
            },
            "expo_config",
        ),
        (
            ProjectPatch {
                expo_config: Some(json!({ "blob": "x".repeat(70_000) })),
                ..Default::default()
            },
            "expo_config",
        ),
    ];
    for (patch, field) in patches {
        // A valid field next to the bad one is not applied either.
        let patch = ProjectPatch {
            template_id: Some(Some("changed".into())),
            ..patch
        };
        refused(repo::update(db, ua, p.id, patch).await, field);
    }
    // The sandbox is the service's (a user naming it is Forbidden, see above); the service
    // is held to the same bounds.
    let patch = ProjectPatch {
        template_id: Some(Some("changed".into())),
        sandbox_id: Some(Some("s".repeat(256))),
        ..Default::default()
    };
    refused(
        repo::update(db, Actor::Service, p.id, patch).await,
        "sandbox_id",
    );
    assert_eq!(repo::get(db, ua, p.id).await.unwrap(), p);
    assert_eq!(count(db).await, 1);
}

/// PostgreSQL: in B's context an unfiltered query sees none of A's projects and an
/// unfiltered update changes none of them (the RLS wall on its own).
#[tokio::test]
async fn postgres_rls_hides_other_users_projects() {
    let t = TestDb::postgres().await;
    let db = &t.db;
    assert_eq!(db.get_database_backend(), DbBackend::Postgres);
    let a = signup(db, "a@example.com").await;
    let b = signup(db, "b@example.com").await;
    let pa = project(db, a, "A's").await;
    let pb = project(db, b, "B's").await;

    let (seen, changed) = run_as(db, Actor::User(b), Access::Write, |txn| {
        Box::pin(async move {
            let seen = projects::Entity::find().all(txn).await?;
            let changed = txn
                .execute_unprepared("UPDATE projects SET name = 'mallory'")
                .await?
                .rows_affected();
            Ok((seen, changed))
        })
    })
    .await
    .unwrap();
    assert_eq!(seen.iter().map(|p| p.id).collect::<Vec<_>>(), vec![pb.id]);
    assert_eq!(changed, 1, "only B's own row");
    assert_eq!(
        repo::get(db, Actor::Service, pa.id).await.unwrap().name,
        "A's"
    );

    // Inserting a project owned by A is refused by the policy itself.
    let err = run_as(db, Actor::User(b), Access::Write, move |txn| {
        Box::pin(async move {
            let sql = format!("INSERT INTO projects (user_id, name) VALUES ('{a}', 'planted')");
            Ok(txn.execute_unprepared(&sql).await?)
        })
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    assert_eq!(count(db).await, 2);
    t.finish().await;
}
