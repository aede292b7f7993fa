//! forge_service::pipeline and forge_service::prompts on both backends: starting, listing
//! and reading runs; every transition pair; isolation (also by row-level security alone on
//! PostgreSQL); bots racing on one run from 8 pools; the status read's statement count;
//! validation that changes nothing; prompts.

mod common;
mod session_support;

use forge_db::entity::ids::{ArtifactId, ProfileId, PromptId, RunId};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::TestDb;
use forge_db::entity::pipeline_runs::{self, RunStatus};
use forge_db::entity::{artifacts, pipeline_events};
use forge_db::sea_orm::{
    ActiveModelTrait, DatabaseConnection, DbBackend, EntityTrait, QueryOrder, Set,
};
use forge_db::service::pipeline::{self, NewArtifact, NewRun, NewRunEvent, RunFilter};
use forge_db::service::prompts::{self, NewPrompt};
use forge_db::service::{Actor, ForgeError, PageRequest};
use serde_json::json;
use session_support::{SharedDb, unfiltered_as};

on_both_backends! {
    start_list_get => start_list_get;
    pages_break_ties_on_the_run_id => pages_break_ties_on_the_run_id;
    every_transition_pair => every_transition_pair;
    racing_transitions_have_one_winner => racing_transitions_have_one_winner;
    events_and_artifacts => events_and_artifacts;
    ended_runs_take_no_events_or_artifacts => ended_runs_take_no_events_or_artifacts;
    user_b_gets_not_found_for_a_run => user_b_gets_not_found_for_a_run;
    bots_racing_on_one_run_lose_nothing => bots_racing_on_one_run_lose_nothing;
    status_reads_in_a_fixed_number_of_statements => status_reads_in_a_fixed_number_of_statements;
    bad_input_changes_nothing => bad_input_changes_nothing;
    prompts_are_read_by_all_and_written_by_the_service => prompts_are_read_by_all_and_written_by_the_service;
}

fn spec() -> serde_json::Value {
    json!({"name": "Todo app", "features": ["auth", "sync"]})
}

fn sha(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

async fn start(db: &DatabaseConnection, owner: ProfileId) -> pipeline_runs::Model {
    pipeline::start(db, Actor::User(owner), NewRun::new(owner, spec()))
        .await
        .expect("start run")
}

fn event(bot: &str, kind: &str, payload: serde_json::Value) -> NewRunEvent {
    NewRunEvent::new(bot, kind, Some(payload))
}

/// Every row of the three run tables, as the service sees them, in a fixed order.
async fn snapshot(
    db: &DatabaseConnection,
) -> (
    Vec<pipeline_runs::Model>,
    Vec<pipeline_events::Model>,
    Vec<artifacts::Model>,
) {
    common::as_service(db, |txn| {
        Box::pin(async move {
            Ok((
                pipeline_runs::Entity::find()
                    .order_by_asc(pipeline_runs::Column::RunId)
                    .all(txn)
                    .await?,
                pipeline_events::Entity::find()
                    .order_by_asc(pipeline_events::Column::Id)
                    .all(txn)
                    .await?,
                artifacts::Entity::find()
                    .order_by_asc(artifacts::Column::Id)
                    .all(txn)
                    .await?,
            ))
        })
    })
    .await
}

fn is_validation(err: &ForgeError, expected: &str) -> bool {
    matches!(err, ForgeError::Validation { field, .. } if *field == expected)
}

async fn start_list_get(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let b = common::signup(db, "b@example.com").await;
    let ua = Actor::User(a);

    let mut started = Vec::new();
    for _ in 0..5 {
        started.push(start(db, a).await);
    }
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    for run in &started {
        assert!(
            run.run_id.as_str().starts_with(&format!("run-{today}-")),
            "{}",
            run.run_id
        );
        assert_eq!(
            run.run_id.as_str().len(),
            "run-20261130-abcdefgh".len(),
            "{}",
            run.run_id
        );
        assert_eq!(run.status, RunStatus::Pending);
        assert_eq!(run.owner_id, a);
        assert_eq!(run.project_spec, spec());
        assert!(run.started_at.is_none() && run.completed_at.is_none());
        assert!(run.error_message.is_none());
        assert_eq!(pipeline::get(db, ua, &run.run_id).await.unwrap(), *run);
        assert_eq!(
            pipeline::get(db, Actor::Service, &run.run_id)
                .await
                .unwrap(),
            *run
        );
    }
    let ids: HashSet<_> = started.iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(ids.len(), 5, "unique ids");
    assert_eq!(
        pipeline::find(db, ua, &RunId::new("run-19990101-nothere0"))
            .await
            .unwrap(),
        None
    );
    let err = pipeline::get(db, ua, &RunId::new("run-19990101-nothere0"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForgeError::NotFound { entity: "run", .. }),
        "{err:?}"
    );

    // The service starts for anyone; a user only for themselves.
    let for_b = pipeline::start(db, Actor::Service, NewRun::new(b, json!({})))
        .await
        .unwrap();
    assert_eq!(for_b.owner_id, b);
    let err = pipeline::start(db, ua, NewRun::new(b, spec()))
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
    let nobody = ProfileId::new();
    let err = pipeline::start(db, Actor::Service, NewRun::new(nobody, spec()))
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

    // Newest first, in pages of 2.
    let request = PageRequest::with_limit(2);
    let mut seen = Vec::new();
    let mut page = pipeline::list(db, ua, RunFilter::default(), request.clone())
        .await
        .unwrap();
    loop {
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|r| r.run_id.clone()));
        let Some(next) = page.next else { break };
        page = pipeline::list(db, ua, RunFilter::default(), request.next(next))
            .await
            .unwrap();
    }
    let newest_first: Vec<_> = started.iter().rev().map(|r| r.run_id.clone()).collect();
    assert_eq!(seen, newest_first);

    // Filters: by status, and the service by owner.
    pipeline::mark_running(db, Actor::Service, &started[0].run_id)
        .await
        .unwrap();
    let running = RunFilter {
        status: Some(RunStatus::Running),
        ..RunFilter::default()
    };
    let page = pipeline::list(db, ua, running, PageRequest::first())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].run_id, started[0].run_id);
    let of_b = RunFilter {
        owner: Some(b),
        ..RunFilter::default()
    };
    let page = pipeline::list(db, Actor::Service, of_b, PageRequest::first())
        .await
        .unwrap();
    assert_eq!(page.items, std::slice::from_ref(&for_b));
    let all = pipeline::list(
        db,
        Actor::Service,
        RunFilter::default(),
        PageRequest::first(),
    )
    .await
    .unwrap();
    assert_eq!(all.items.len(), 6);
    // A naming B lists nothing.
    let page = pipeline::list(db, ua, of_b, PageRequest::first())
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

/// Runs created in the same microsecond (written directly by the service) are paged
/// by run id, each exactly once.
async fn pages_break_ties_on_the_run_id(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let at = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
    let names: Vec<RunId> = (0..7)
        .map(|i| RunId::new(format!("run-tied-{i}")))
        .collect();
    for name in &names {
        let name = name.clone();
        common::as_service(db, move |txn| {
            Box::pin(async move {
                Ok(pipeline_runs::ActiveModel {
                    run_id: Set(name),
                    project_spec: Set(json!({})),
                    owner_id: Set(a),
                    status: Set(RunStatus::Pending),
                    created_at: Set(at),
                    updated_at: Set(at),
                    ..Default::default()
                }
                .insert(txn)
                .await?)
            })
        })
        .await;
    }
    let newer = start(db, a).await;
    let request = PageRequest::with_limit(3);
    let mut seen = Vec::new();
    let mut page = pipeline::list(db, Actor::User(a), RunFilter::default(), request.clone())
        .await
        .unwrap();
    loop {
        seen.extend(page.items.iter().map(|r| r.run_id.clone()));
        let Some(next) = page.next else { break };
        page = pipeline::list(db, Actor::User(a), RunFilter::default(), request.next(next))
            .await
            .unwrap();
    }
    let mut expected = vec![newer.run_id.clone()];
    expected.extend(names.iter().rev().cloned());
    assert_eq!(seen, expected);
}

const ALL: [RunStatus; 5] = [
    RunStatus::Pending,
    RunStatus::Running,
    RunStatus::Completed,
    RunStatus::Failed,
    RunStatus::Cancelled,
];

/// A fresh run of `owner` driven to `state` through the API.
async fn run_in(
    db: &DatabaseConnection,
    owner: ProfileId,
    state: RunStatus,
) -> pipeline_runs::Model {
    let svc = Actor::Service;
    let run = start(db, owner).await;
    let id = run.run_id.clone();
    match state {
        RunStatus::Pending => run,
        RunStatus::Running => pipeline::mark_running(db, svc, &id).await.unwrap(),
        RunStatus::Completed => {
            pipeline::mark_running(db, svc, &id).await.unwrap();
            pipeline::complete(db, svc, &id).await.unwrap()
        }
        RunStatus::Failed => {
            pipeline::mark_running(db, svc, &id).await.unwrap();
            pipeline::fail(db, svc, &id, "boom").await.unwrap()
        }
        RunStatus::Cancelled => pipeline::cancel(db, Actor::User(owner), &id).await.unwrap(),
    }
}

/// Asks for `to` through the API function that moves a run there.
async fn move_to(
    db: &DatabaseConnection,
    actor: Actor,
    run_id: &RunId,
    to: RunStatus,
) -> Result<pipeline_runs::Model, ForgeError> {
    match to {
        RunStatus::Running => pipeline::mark_running(db, actor, run_id).await,
        RunStatus::Completed => pipeline::complete(db, actor, run_id).await,
        RunStatus::Failed => pipeline::fail(db, actor, run_id, "the build broke").await,
        RunStatus::Cancelled => pipeline::cancel(db, actor, run_id).await,
        RunStatus::Pending => unreachable!("no API moves a run back to pending"),
    }
}

async fn every_transition_pair(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let allowed = [
        (RunStatus::Pending, RunStatus::Running),
        (RunStatus::Running, RunStatus::Completed),
        (RunStatus::Running, RunStatus::Failed),
        (RunStatus::Pending, RunStatus::Cancelled),
        (RunStatus::Running, RunStatus::Cancelled),
    ];
    let mut checked = 0;
    for from in ALL {
        for to in ALL.into_iter().filter(|s| *s != RunStatus::Pending) {
            let before = run_in(db, a, from).await;
            assert_eq!(before.status, from);
            let result = move_to(db, Actor::Service, &before.run_id, to).await;
            if allowed.contains(&(from, to)) {
                let after = result.unwrap_or_else(|e| panic!("{from} → {to}: {e}"));
                assert_eq!(after.status, to);
                let never_started = from == RunStatus::Pending && to == RunStatus::Cancelled;
                assert_eq!(
                    after.started_at.is_none(),
                    never_started,
                    "{from} → {to}: started_at"
                );
                if to == RunStatus::Running {
                    assert!(after.completed_at.is_none());
                } else {
                    assert!(after.completed_at.is_some(), "{from} → {to}: completed_at");
                    if let Some(started) = after.started_at {
                        assert!(after.completed_at.unwrap() >= started);
                    }
                }
                assert_eq!(after.error_message.is_some(), to == RunStatus::Failed);
                assert!(after.updated_at >= before.updated_at);
                assert_eq!(
                    pipeline::get(db, Actor::Service, &before.run_id)
                        .await
                        .unwrap(),
                    after
                );
            } else {
                let err = result.unwrap_err();
                assert!(
                    matches!(&err, ForgeError::InvalidTransition { entity: "run", from: f, to: t }
                        if *f == from.to_string() && *t == to.to_string()),
                    "{from} → {to}: {err:?}"
                );
                let now = pipeline::get(db, Actor::Service, &before.run_id)
                    .await
                    .unwrap();
                assert_eq!(now, before, "{from} → {to} changed nothing");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 20);

    // The owner cancels; the bots' transitions are the service's.
    let run = run_in(db, a, RunStatus::Running).await;
    for to in [RunStatus::Running, RunStatus::Completed, RunStatus::Failed] {
        let err = move_to(db, Actor::User(a), &run.run_id, to)
            .await
            .unwrap_err();
        assert!(matches!(err, ForgeError::Forbidden { .. }), "{to}: {err:?}");
    }
    let cancelled = pipeline::cancel(db, Actor::User(a), &run.run_id)
        .await
        .unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert!(cancelled.completed_at.is_some());

    // Failing needs an error message.
    let run = run_in(db, a, RunStatus::Running).await;
    for bad in ["", "   ", "a\0b"] {
        let err = pipeline::fail(db, Actor::Service, &run.run_id, bad)
            .await
            .unwrap_err();
        assert!(is_validation(&err, "error_message"), "{err:?}");
    }
    assert_eq!(
        pipeline::get(db, Actor::Service, &run.run_id)
            .await
            .unwrap(),
        run
    );
}

async fn racing_transitions_have_one_winner(t: &TestDb) {
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    let a = common::signup(&setup, "race@example.com").await;
    for round in 0..3 {
        let run = run_in(&setup, a, RunStatus::Running).await;
        let mut racers = Vec::new();
        for (i, db) in shared.pools(3).await.into_iter().enumerate() {
            let id = run.run_id.clone();
            racers.push(tokio::spawn(async move {
                let to = [
                    RunStatus::Completed,
                    RunStatus::Failed,
                    RunStatus::Cancelled,
                ][i];
                let actor = if to == RunStatus::Cancelled {
                    Actor::User(a)
                } else {
                    Actor::Service
                };
                let result = move_to(&db, actor, &id, to).await;
                db.close().await.ok();
                (to, result)
            }));
        }
        let mut winners = Vec::new();
        for racer in racers {
            let (to, result) = racer.await.unwrap();
            match result {
                Ok(run) => winners.push((to, run)),
                Err(ForgeError::InvalidTransition { from, .. }) => {
                    assert_ne!(from, "running", "lost to a winner")
                }
                Err(e) => panic!("round {round}, {to}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner");
        let now = pipeline::get(&setup, Actor::Service, &run.run_id)
            .await
            .unwrap();
        assert_eq!(now.status, winners[0].0);
    }
    setup.close().await.ok();
    shared.finish();
}

async fn events_and_artifacts(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let ua = Actor::User(a);
    let svc = Actor::Service;
    let run = start(db, a).await;
    let id = &run.run_id;

    // Bots may log while the run is still pending.
    let queued = pipeline::append_event(db, svc, id, NewRunEvent::new("planner", "queued", None))
        .await
        .unwrap();
    assert_eq!(queued.owner_id, a, "the run's owner");
    assert_eq!(queued.payload, None);
    pipeline::mark_running(db, svc, id).await.unwrap();
    let mut appended = vec![queued];
    for (bot, kind, n) in [
        ("planner", "plan", 1),
        ("coder", "started", 2),
        ("coder", "progress", 3),
        ("tester", "started", 4),
        ("coder", "done", 5),
    ] {
        appended.push(
            pipeline::append_event(db, svc, id, event(bot, kind, json!({"n": n})))
                .await
                .unwrap(),
        );
    }
    // JSON null is stored as SQL NULL.
    appended.push(
        pipeline::append_event(
            db,
            svc,
            id,
            event("tester", "done", serde_json::Value::Null),
        )
        .await
        .unwrap(),
    );
    assert_eq!(appended.last().unwrap().payload, None);
    for pair in appended.windows(2) {
        assert!(
            pair[0].created_at < pair[1].created_at,
            "strictly increasing"
        );
    }

    // Read back in order, in pages.
    let request = PageRequest::with_limit(3);
    let mut page = pipeline::events(db, ua, id, request.clone()).await.unwrap();
    let mut seen = Vec::new();
    loop {
        seen.extend(page.items.clone());
        let Some(next) = page.next else { break };
        page = pipeline::events(db, ua, id, request.next(next))
            .await
            .unwrap();
    }
    assert_eq!(seen, appended);

    let zip = pipeline::add_artifact(
        db,
        svc,
        id,
        NewArtifact {
            url: Some("https://cdn.example.com/app.zip".into()),
            meta: Some(json!({"files": 12})),
            file_size: Some(1_048_576),
            content_type: Some("application/zip".into()),
            checksum: Some(sha(0xab)),
            ..NewArtifact::new("zip")
        },
    )
    .await
    .unwrap();
    assert_eq!(zip.owner_id, a);
    assert_eq!(zip.checksum.as_deref(), Some(sha(0xab).as_str()));
    let empty = pipeline::add_artifact(db, svc, id, NewArtifact::new("file"))
        .await
        .unwrap();
    assert_eq!(empty.file_size, None);
    let zero = pipeline::add_artifact(
        db,
        svc,
        id,
        NewArtifact {
            file_size: Some(0),
            ..NewArtifact::new("file")
        },
    )
    .await
    .unwrap();
    let listed = pipeline::artifacts(db, ua, id, PageRequest::first())
        .await
        .unwrap();
    assert_eq!(listed.items, [zip.clone(), empty.clone(), zero.clone()]);
    assert!(listed.next.is_none());

    let status = pipeline::status(db, ua, id).await.unwrap();
    assert_eq!(status.run.status, RunStatus::Running);
    assert_eq!(status.event_count, 7);
    let latest: Vec<(&str, &str)> = status
        .latest_event_per_bot
        .iter()
        .map(|e| (e.bot_name.as_str(), e.event_type.as_str()))
        .collect();
    assert_eq!(
        latest,
        [("coder", "done"), ("planner", "plan"), ("tester", "done")]
    );
    assert_eq!(status.artifacts, [zip, empty, zero]);
    assert_eq!(pipeline::status(db, svc, id).await.unwrap(), status);

    // A run with no events.
    let fresh = start(db, a).await;
    let status = pipeline::status(db, ua, &fresh.run_id).await.unwrap();
    assert_eq!(status.event_count, 0);
    assert!(status.latest_event_per_bot.is_empty() && status.artifacts.is_empty());

    // Users do not write events or artifacts.
    let err = pipeline::append_event(db, ua, id, event("me", "spoof", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    let err = pipeline::add_artifact(db, ua, id, NewArtifact::new("zip"))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    // Unknown runs.
    let err = pipeline::append_event(db, svc, &RunId::new("run-nope"), event("b", "x", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForgeError::NotFound { entity: "run", .. }),
        "{err:?}"
    );
    let err = pipeline::add_artifact(db, svc, &RunId::new("run-nope"), NewArtifact::new("zip"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForgeError::NotFound { entity: "run", .. }),
        "{err:?}"
    );
}

async fn ended_runs_take_no_events_or_artifacts(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    for end in [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ] {
        let run = run_in(db, a, end).await;
        let before = snapshot(db).await;
        let err = pipeline::append_event(
            db,
            Actor::Service,
            &run.run_id,
            event("late", "x", json!({})),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, ForgeError::InvalidTransition { entity: "run", from, .. } if *from == end.to_string()),
            "{err:?}"
        );
        let err = pipeline::add_artifact(db, Actor::Service, &run.run_id, NewArtifact::new("zip"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ForgeError::InvalidTransition { .. }),
            "{err:?}"
        );
        assert_eq!(snapshot(db).await, before);
    }
}

async fn user_b_gets_not_found_for_a_run(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let b = common::signup(db, "b@example.com").await;
    let (ua, ub, svc) = (Actor::User(a), Actor::User(b), Actor::Service);
    let run = start(db, a).await;
    let id = &run.run_id;
    pipeline::mark_running(db, svc, id).await.unwrap();
    pipeline::append_event(db, svc, id, event("coder", "started", json!({"secret": 1})))
        .await
        .unwrap();
    pipeline::add_artifact(db, svc, id, NewArtifact::new("zip"))
        .await
        .unwrap();
    let own_b = start(db, b).await;
    let before = snapshot(db).await;

    let not_found = |err: ForgeError| {
        assert!(
            matches!(err, ForgeError::NotFound { entity: "run", .. }),
            "{err:?}"
        );
    };
    assert_eq!(pipeline::find(db, ub, id).await.unwrap(), None);
    not_found(pipeline::get(db, ub, id).await.unwrap_err());
    not_found(
        pipeline::events(db, ub, id, PageRequest::first())
            .await
            .unwrap_err(),
    );
    not_found(
        pipeline::artifacts(db, ub, id, PageRequest::first())
            .await
            .unwrap_err(),
    );
    not_found(pipeline::status(db, ub, id).await.unwrap_err());
    not_found(pipeline::cancel(db, ub, id).await.unwrap_err());
    let listed = pipeline::list(db, ub, RunFilter::default(), PageRequest::first())
        .await
        .unwrap();
    assert_eq!(listed.items, std::slice::from_ref(&own_b));
    let a_filter = RunFilter {
        owner: Some(a),
        ..RunFilter::default()
    };
    assert!(
        pipeline::list(db, ub, a_filter, PageRequest::first())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // The service-only functions refuse B before looking at the run.
    for to in [RunStatus::Running, RunStatus::Completed, RunStatus::Failed] {
        let err = move_to(db, ub, id, to).await.unwrap_err();
        assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    }
    let err = pipeline::append_event(db, ub, id, event("b", "x", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    let err = pipeline::add_artifact(db, ub, id, NewArtifact::new("zip"))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    assert_eq!(snapshot(db).await, before, "nothing of A's changed");
    assert_eq!(
        pipeline::get(db, ua, id).await.unwrap().status,
        RunStatus::Running
    );

    if t.backend() == DbBackend::Postgres {
        // Row-level security alone: unfiltered queries in B's context see none of A's rows.
        let runs = unfiltered_as::<pipeline_runs::Entity>(db, ub).await;
        assert_eq!(runs, [own_b]);
        assert!(
            unfiltered_as::<pipeline_events::Entity>(db, ub)
                .await
                .is_empty()
        );
        assert!(unfiltered_as::<artifacts::Entity>(db, ub).await.is_empty());
        // …while A sees theirs.
        assert_eq!(
            unfiltered_as::<pipeline_runs::Entity>(db, ua).await.len(),
            1
        );
        assert_eq!(
            unfiltered_as::<pipeline_events::Entity>(db, ua).await.len(),
            1
        );
        assert_eq!(unfiltered_as::<artifacts::Entity>(db, ua).await.len(), 1);
    }
}

async fn bots_racing_on_one_run_lose_nothing(t: &TestDb) {
    const BOTS: usize = 8;
    const EACH: usize = 50;
    let shared = SharedDb::for_test(t).await;
    let setup = shared.pool().await;
    let a = common::signup(&setup, "bots@example.com").await;
    let run = start(&setup, a).await;
    pipeline::mark_running(&setup, Actor::Service, &run.run_id)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let mut bots = Vec::new();
    for (n, db) in shared.pools(BOTS).await.into_iter().enumerate() {
        let id = run.run_id.clone();
        bots.push(tokio::spawn(async move {
            let bot = format!("bot-{n}");
            for i in 0..EACH {
                pipeline::append_event(
                    &db,
                    Actor::Service,
                    &id,
                    event(&bot, "step", json!({"i": i})),
                )
                .await
                .unwrap_or_else(|e| panic!("{bot} event {i}: {e}"));
            }
            db.close().await.ok();
        }));
    }
    for bot in bots {
        bot.await.unwrap();
    }
    let elapsed = started.elapsed();

    // Read back as the owner, in pages of 200.
    let ua = Actor::User(a);
    let request = PageRequest::with_limit(200);
    let mut seen = Vec::new();
    let mut page = pipeline::events(&setup, ua, &run.run_id, request.clone())
        .await
        .unwrap();
    loop {
        seen.extend(page.items.clone());
        let Some(next) = page.next else { break };
        page = pipeline::events(&setup, ua, &run.run_id, request.next(next))
            .await
            .unwrap();
    }
    assert_eq!(seen.len(), BOTS * EACH, "all stored, none lost");
    let ids: HashSet<_> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), BOTS * EACH, "none twice");
    for pair in seen.windows(2) {
        assert!(pair[0].created_at < pair[1].created_at, "a total order");
    }
    for n in 0..BOTS {
        let mine: Vec<i64> = seen
            .iter()
            .filter(|e| e.bot_name == format!("bot-{n}"))
            .map(|e| e.payload.as_ref().unwrap()["i"].as_i64().unwrap())
            .collect();
        assert_eq!(
            mine,
            (0..EACH as i64).collect::<Vec<_>>(),
            "bot-{n} in its order"
        );
    }
    let status = pipeline::status(&setup, ua, &run.run_id).await.unwrap();
    assert_eq!(status.event_count, (BOTS * EACH) as u64);
    assert_eq!(status.latest_event_per_bot.len(), BOTS);
    for e in &status.latest_event_per_bot {
        assert_eq!(
            e.payload.as_ref().unwrap()["i"],
            json!(EACH - 1),
            "{}",
            e.bot_name
        );
    }
    println!(
        "{:?}: {} bots × {EACH} events on {BOTS} pools in {elapsed:?}",
        t.backend(),
        BOTS
    );
    setup.close().await.ok();
    shared.finish();
}

/// The statements a `status` read sends (their SQL), recorded by a SeaORM metric
/// callback on a clone of the pool, and the event count it read.
async fn statements_of_status(
    db: &DatabaseConnection,
    actor: Actor,
    run_id: &RunId,
) -> (Vec<String>, u64) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let mut counted = db.clone();
    let log = Arc::clone(&sent);
    counted.set_metric_callback(move |info| {
        log.lock().unwrap().push(info.statement.sql.clone());
    });
    let status = pipeline::status(&counted, actor, run_id).await.unwrap();
    let sent = sent.lock().unwrap().clone();
    (sent, status.event_count)
}

async fn status_reads_in_a_fixed_number_of_statements(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let mut counts = Vec::new();
    for events in [3usize, 300] {
        let run = start(db, a).await;
        pipeline::mark_running(db, Actor::Service, &run.run_id)
            .await
            .unwrap();
        for i in 0..events {
            let bot = format!("bot-{}", i % 3);
            pipeline::append_event(
                db,
                Actor::Service,
                &run.run_id,
                event(&bot, "step", json!({"i": i})),
            )
            .await
            .unwrap();
        }
        pipeline::add_artifact(db, Actor::Service, &run.run_id, NewArtifact::new("zip"))
            .await
            .unwrap();
        for actor in [Actor::User(a), Actor::Service] {
            let (sent, seen) = statements_of_status(db, actor, &run.run_id).await;
            assert_eq!(seen, events as u64);
            println!(
                "{:?}: status of a run with {events} events as {actor:?}: {} statements",
                t.backend(),
                sent.len()
            );
            let over_events = sent.iter().filter(|sql| sql.contains("job_events")).count();
            assert_eq!(over_events, 1, "one query over the events: {sent:#?}");
            counts.push((actor, events, sent.len()));
        }
    }
    let expected = if t.backend() == DbBackend::Postgres {
        4
    } else {
        3
    };
    for (actor, events, statements) in &counts {
        assert_eq!(*statements, expected, "{actor:?}, {events} events");
    }
}

async fn bad_input_changes_nothing(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let svc = Actor::Service;
    let run = start(db, a).await;
    let id = &run.run_id;
    pipeline::mark_running(db, svc, id).await.unwrap();
    let before = snapshot(db).await;
    let huge = json!({"blob": "x".repeat(70_000)});

    // Runs.
    for (spec, field) in [
        (json!([1, 2]), "project_spec"),
        (json!("a string"), "project_spec"),
        (serde_json::Value::Null, "project_spec"),
        (json!({"k": "a\u{0}b"}), "project_spec"),
        (huge.clone(), "project_spec"),
    ] {
        let err = pipeline::start(db, Actor::User(a), NewRun::new(a, spec))
            .await
            .unwrap_err();
        assert!(is_validation(&err, field), "{err:?}");
    }
    let long_id = "r".repeat(201);
    for bad in ["run\0x", long_id.as_str()] {
        let err = pipeline::get(db, Actor::User(a), &RunId::new(bad))
            .await
            .unwrap_err();
        assert!(is_validation(&err, "run_id"), "{err:?}");
    }

    // Events.
    for (new, field) in [
        (event("", "x", json!({})), "bot_name"),
        (event("   ", "x", json!({})), "bot_name"),
        (event("b\0t", "x", json!({})), "bot_name"),
        (event(&"b".repeat(201), "x", json!({})), "bot_name"),
        (event("bot", " ", json!({})), "event_type"),
        (event("bot", "x", json!({"s": "nul\u{0}"})), "payload"),
        (event("bot", "x", huge.clone()), "payload"),
    ] {
        let err = pipeline::append_event(db, svc, id, new).await.unwrap_err();
        assert!(is_validation(&err, field), "{err:?}");
    }

    // Artifacts.
    let upper = format!("sha256:{}", "AB".repeat(32));
    let short = format!("sha256:{}", "ab".repeat(31));
    let md5 = format!("md5:{}", "ab".repeat(16));
    for (new, field) in [
        (
            NewArtifact {
                checksum: Some(upper),
                ..NewArtifact::new("zip")
            },
            "checksum",
        ),
        (
            NewArtifact {
                checksum: Some(short),
                ..NewArtifact::new("zip")
            },
            "checksum",
        ),
        (
            NewArtifact {
                checksum: Some(md5),
                ..NewArtifact::new("zip")
            },
            "checksum",
        ),
        (
            NewArtifact {
                file_size: Some(-1),
                ..NewArtifact::new("zip")
            },
            "file_size",
        ),
        (NewArtifact::new(" "), "kind"),
        (NewArtifact::new("z\0ip"), "kind"),
        (
            NewArtifact {
                url: Some("https://x/\0".into()),
                ..NewArtifact::new("zip")
            },
            "url",
        ),
        (
            NewArtifact {
                meta: Some(huge.clone()),
                ..NewArtifact::new("zip")
            },
            "meta",
        ),
        (
            NewArtifact {
                content_type: Some(String::new()),
                ..NewArtifact::new("zip")
            },
            "content_type",
        ),
    ] {
        let err = pipeline::add_artifact(db, svc, id, new).await.unwrap_err();
        assert!(is_validation(&err, field), "{err:?}");
    }
    // Bad pages.
    let err = pipeline::events(db, Actor::User(a), id, PageRequest::with_limit(0))
        .await
        .unwrap_err();
    assert!(is_validation(&err, "limit"), "{err:?}");
    assert_eq!(snapshot(db).await, before, "nothing changed");

    // The database holds the same rules when Forge is bypassed (the service's context).
    {
        let run_id = run.run_id.clone();
        let refused =
            forge_db::service::run_as(db, svc, forge_db::service::Access::Write, move |txn| {
                Box::pin(async move {
                    Ok(artifacts::ActiveModel {
                        id: Set(ArtifactId::new()),
                        run_id: Set(run_id),
                        kind: Set("zip".into()),
                        owner_id: Set(a),
                        file_size: Set(Some(-5)),
                        created_at: Set(chrono::Utc::now()),
                        ..Default::default()
                    }
                    .insert(txn)
                    .await?)
                })
            })
            .await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(snapshot(db).await, before, "nothing changed");
    }
}

async fn prompts_are_read_by_all_and_written_by_the_service(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let (ua, svc) = (Actor::User(a), Actor::Service);

    let welcome = prompts::upsert(
        db,
        svc,
        NewPrompt::new(
            "onboarding.welcome",
            "onboarding",
            "first screen",
            "  Welcome!  ",
        ),
    )
    .await
    .unwrap();
    assert_eq!(welcome.prompt_text, "Welcome!");
    let plan = prompts::upsert(
        db,
        svc,
        NewPrompt::new("bot.plan", "bots", "planner", "Plan it"),
    )
    .await
    .unwrap();
    assert_eq!(
        prompts::get(db, ua, &PromptId::new("onboarding.welcome"))
            .await
            .unwrap(),
        welcome
    );
    assert_eq!(
        prompts::get(db, svc, &PromptId::new("bot.plan"))
            .await
            .unwrap(),
        plan
    );
    assert_eq!(
        prompts::list(db, ua, None).await.unwrap(),
        [plan.clone(), welcome.clone()]
    );
    assert_eq!(
        prompts::list(db, ua, Some("bots")).await.unwrap(),
        std::slice::from_ref(&plan)
    );
    assert!(
        prompts::list(db, ua, Some("nothing"))
            .await
            .unwrap()
            .is_empty()
    );

    // An upsert replaces the text and keeps created_at.
    let changed = prompts::upsert(
        db,
        svc,
        NewPrompt::new(
            "onboarding.welcome",
            "onboarding",
            "first screen",
            "Hello again",
        ),
    )
    .await
    .unwrap();
    assert_eq!(changed.prompt_text, "Hello again");
    assert_eq!(changed.created_at, welcome.created_at);
    assert!(changed.updated_at >= welcome.updated_at);

    // Users only read.
    let err = prompts::upsert(db, ua, NewPrompt::new("x", "y", "z", "w"))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    let err = prompts::get(db, ua, &PromptId::new("no.such"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::NotFound {
                entity: "prompt",
                ..
            }
        ),
        "{err:?}"
    );

    // Validation changes nothing.
    let before = prompts::list(db, svc, None).await.unwrap();
    for (new, field) in [
        (NewPrompt::new("", "c", "x", "t"), "id"),
        (NewPrompt::new("has space", "c", "x", "t"), "id"),
        (NewPrompt::new("n\0ul", "c", "x", "t"), "id"),
        (NewPrompt::new("ok", " ", "x", "t"), "category"),
        (NewPrompt::new("ok", "c", "", "t"), "context"),
        (NewPrompt::new("ok", "c", "x", "t\0"), "prompt_text"),
        (
            NewPrompt::new("ok", "c", "x", "t".repeat(100_001)),
            "prompt_text",
        ),
    ] {
        let err = prompts::upsert(db, svc, new).await.unwrap_err();
        assert!(is_validation(&err, field), "{err:?}");
    }
    assert_eq!(prompts::list(db, svc, None).await.unwrap(), before);
}
