//! forge_service::conversations on both backends: create with turns, totals, lists,
//! the review workflow, isolation between users, and racing writers.

mod common;
use common::signup as profile;
use forge_db::entity::ids::{ConversationId, ProfileId};

use common::{TestDb, as_service};
use forge_db::entity::conversation_turns::{self, TurnRole};
use forge_db::entity::conversations::{
    self, ConversationStatus, ConversationTier, ReviewActionKind,
};
use forge_db::sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait, QueryFilter,
};
use forge_db::service::conversations::{
    self as repo, ConversationFilter, NewConversation, NewTurn,
};
use forge_db::service::{Access, Actor, ForgeError, PageRequest, run_as};
use forge_db::{Migrator, MigratorTrait, connect};
use uuid::Uuid;

on_both_backends! {
    create_sets_totals_and_numbers_turns => create_sets_totals_and_numbers_turns;
    append_turn_keeps_totals_equal_to_turns => append_turn_keeps_totals_equal_to_turns;
    refused_input_changes_nothing => refused_input_changes_nothing;
    lists_filter_and_paginate => lists_filter_and_paginate;
    review_workflow_records_who_what_when_why => review_workflow_records_who_what_when_why;
    refused_review_steps_change_nothing => refused_review_steps_change_nothing;
    user_b_cannot_see_or_touch_a_conversations => user_b_cannot_see_or_touch_a_conversations;
    racing_reviewers_and_appenders => racing_reviewers_and_appenders;
}

fn turns(tokens: &[i32]) -> Vec<NewTurn> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let role = if i % 2 == 0 {
                TurnRole::User
            } else {
                TurnRole::Assistant
            };
            NewTurn::new(role, format!("message {}", i + 1), n)
        })
        .collect()
}

fn new_conversation(human_id: &str, tokens: &[i32]) -> NewConversation {
    NewConversation {
        owner: None,
        conversation_id: human_id.to_owned(),
        title: Some("Retirement planning".into()),
        tier: ConversationTier::Template,
        persona: "retiree".into(),
        emotion: "anxious".into(),
        topic: "pensions".into(),
        intent: "plan".into(),
        tone: "warm".into(),
        category: vec!["finance".into(), " planning ".into()],
        parameters: serde_json::json!({"temperature": 0.7}),
        turns: turns(tokens),
    }
}

/// What the turns table says about a conversation: (count, token sum), read in the
/// service's context (the test pool may do nothing outside one on PostgreSQL).
async fn turn_totals(db: &DatabaseConnection, id: ConversationId) -> (i32, i32) {
    let rows = as_service(db, move |txn| {
        Box::pin(async move {
            Ok(conversation_turns::Entity::find()
                .filter(conversation_turns::Column::ConversationId.eq(id))
                .all(txn)
                .await?)
        })
    })
    .await;
    (rows.len() as i32, rows.iter().map(|t| t.token_count).sum())
}

/// `new`, created by the service (the generator) for `owner`: with turns, `generated`.
fn generated_for(owner: ProfileId, new: NewConversation) -> NewConversation {
    NewConversation {
        owner: Some(owner),
        ..new
    }
}

/// `actor` may not create a conversation in `owner`'s name.
async fn assert_cannot_create_for(db: &DatabaseConnection, actor: Actor, owner: ProfileId) {
    let new = NewConversation {
        owner: Some(owner),
        ..new_conversation("in-someone-elses-name", &[1])
    };
    let err = repo::create(db, actor, new).await.unwrap_err();
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
}

async fn assert_totals_match_turns(db: &DatabaseConnection, id: ConversationId) {
    let c = repo::get(db, Actor::Service, id).await.unwrap();
    assert_eq!(
        (c.total_turns, c.total_tokens),
        turn_totals(db, id).await,
        "totals equal the turns"
    );
}

async fn create_sets_totals_and_numbers_turns(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let ua = Actor::User(a);

    // What a user writes, turns included, stays a draft until submitted (SCHEMA.md:
    // `generated` is the generator's status).
    let created = repo::create(db, ua, new_conversation("conv-1", &[10, 20, 30]))
        .await
        .unwrap();
    let c = &created.conversation;
    assert_eq!(c.created_by, a);
    assert_eq!(c.status, ConversationStatus::Draft);
    assert!(c.generated_at.is_none());
    assert_eq!((c.total_turns, c.total_tokens), (3, 60));
    assert_eq!(c.category.0, vec!["finance", "planning"]);
    assert_eq!(
        created
            .turns
            .iter()
            .map(|t| t.turn_number)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    let read = repo::get_with_turns(db, ua, c.id).await.unwrap();
    assert_eq!(read.conversation.id, c.id);
    assert_eq!(read.turns, created.turns, "the stored turns, in order");
    assert_eq!(read.turns[1].role, TurnRole::Assistant);
    assert_totals_match_turns(db, c.id).await;

    // Numbers given by the caller are accepted when they are 1, 2, 3 ….
    let mut numbered = new_conversation("conv-2", &[5, 5]);
    for (i, turn) in numbered.turns.iter_mut().enumerate() {
        turn.turn_number = Some(i as i32 + 1);
    }
    let numbered = repo::create(db, ua, numbered).await.unwrap();
    assert_eq!(numbered.conversation.total_turns, 2);

    // The generator (the service) stores what it wrote as `generated`, for the owner.
    let generated = repo::create(
        db,
        Actor::Service,
        generated_for(a, new_conversation("conv-gen", &[7, 8])),
    )
    .await
    .unwrap();
    let g = &generated.conversation;
    assert_eq!((g.created_by, g.status), (a, ConversationStatus::Generated));
    assert!(g.generated_at.is_some());
    assert_eq!((g.total_turns, g.total_tokens), (2, 15));
    assert_eq!(repo::get(db, ua, g.id).await.unwrap(), *g);
    assert_totals_match_turns(db, g.id).await;

    // Without turns: a draft with zero totals; the service names the owner.
    let draft = repo::create(
        db,
        Actor::Service,
        NewConversation {
            owner: Some(a),
            ..new_conversation("conv-3", &[])
        },
    )
    .await
    .unwrap();
    assert_eq!(draft.conversation.status, ConversationStatus::Draft);
    assert_eq!(draft.conversation.created_by, a);
    assert_eq!(
        (
            draft.conversation.total_turns,
            draft.conversation.total_tokens
        ),
        (0, 0)
    );
    assert!(draft.conversation.generated_at.is_none());
    assert!(
        repo::get_with_turns(db, ua, draft.conversation.id)
            .await
            .unwrap()
            .turns
            .is_empty()
    );
    assert_eq!(
        repo::find(db, ua, draft.conversation.id)
            .await
            .unwrap()
            .map(|c| c.conversation_id),
        Some("conv-3".to_owned())
    );
}

async fn append_turn_keeps_totals_equal_to_turns(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let ua = Actor::User(a);
    let id = repo::create(db, ua, new_conversation("conv-1", &[10, 20]))
        .await
        .unwrap()
        .conversation
        .id;

    let third = repo::append_turn(db, ua, id, NewTurn::new(TurnRole::User, "and?", 7))
        .await
        .unwrap();
    assert_eq!(third.turn_number, 3);
    assert_totals_match_turns(db, id).await;

    let fourth = repo::append_turn(
        db,
        ua,
        id,
        NewTurn {
            turn_number: Some(4),
            ..NewTurn::new(TurnRole::Assistant, "then this", 0)
        },
    )
    .await
    .unwrap();
    assert_eq!(fourth.turn_number, 4);

    // A number that is not the next one is refused and changes nothing.
    for wrong in [4, 6, 1] {
        let err = repo::append_turn(
            db,
            ua,
            id,
            NewTurn {
                turn_number: Some(wrong),
                ..NewTurn::new(TurnRole::User, "skip ahead", 3)
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                ForgeError::Validation {
                    field: "turn_number",
                    ..
                }
            ),
            "{wrong}: {err:?}"
        );
    }
    for bad in [
        NewTurn::new(TurnRole::User, "  \n ", 1),
        NewTurn::new(TurnRole::User, "fine", -1),
    ] {
        let err = repo::append_turn(db, ua, id, bad).await.unwrap_err();
        assert!(matches!(err, ForgeError::Validation { .. }), "{err:?}");
    }
    let c = repo::get(db, ua, id).await.unwrap();
    assert_eq!((c.total_turns, c.total_tokens), (4, 37));
    assert_totals_match_turns(db, id).await;

    let err = repo::append_turn(
        db,
        ua,
        ConversationId::new(),
        NewTurn::new(TurnRole::User, "x", 1),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }), "{err:?}");
}

async fn refused_input_changes_nothing(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let ua = Actor::User(a);
    repo::create(db, ua, new_conversation("taken", &[1]))
        .await
        .unwrap();

    let cases: Vec<(&str, NewConversation)> = vec![
        ("conversation_id", new_conversation("   ", &[1])),
        (
            "persona",
            NewConversation {
                persona: " ".into(),
                ..new_conversation("c", &[1])
            },
        ),
        (
            "topic",
            NewConversation {
                topic: "x".repeat(201),
                ..new_conversation("c", &[1])
            },
        ),
        (
            "category",
            NewConversation {
                category: vec!["ok".into(), "".into()],
                ..new_conversation("c", &[1])
            },
        ),
        (
            "parameters",
            NewConversation {
                parameters: serde_json::json!([1, 2]),
                ..new_conversation("c", &[1])
            },
        ),
        (
            // JSON documents hold at most 64 KiB.
            "parameters",
            NewConversation {
                parameters: serde_json::json!({ "blob": "x".repeat(70_000) }),
                ..new_conversation("c", &[1])
            },
        ),
        ("content", {
            let mut n = new_conversation("c", &[1, 2]);
            n.turns[1].content = String::new();
            n
        }),
        ("token_count", new_conversation("c", &[1, -5])),
        ("turn_number", {
            // Out of order.
            let mut n = new_conversation("c", &[1, 2, 3]);
            n.turns[1].turn_number = Some(3);
            n.turns[2].turn_number = Some(2);
            n
        }),
        ("turn_number", {
            // A duplicate.
            let mut n = new_conversation("c", &[1, 2]);
            n.turns[0].turn_number = Some(1);
            n.turns[1].turn_number = Some(1);
            n
        }),
    ];
    for (field, new) in cases {
        let err = repo::create(db, ua, new).await.unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { field: f, .. } if f == field),
            "{field}: {err:?}"
        );
    }

    let err = repo::create(db, ua, new_conversation("taken", &[1]))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Conflict { .. }), "{err:?}");
    assert_cannot_create_for(db, ua, b).await;
    let err = repo::create(db, Actor::Service, new_conversation("no-owner", &[1]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForgeError::Validation { field: "owner", .. }),
        "{err:?}"
    );

    let owner = &t.owner;
    assert_eq!(conversations::Entity::find().count(owner).await.unwrap(), 1);
    assert_eq!(
        conversation_turns::Entity::find()
            .count(owner)
            .await
            .unwrap(),
        1
    );

    let err = ConversationFilter::parse(Some("archived"), None).unwrap_err();
    assert!(matches!(
        err,
        ForgeError::Validation {
            field: "status",
            ..
        }
    ));
    let err = ConversationFilter::parse(None, Some("gold")).unwrap_err();
    assert!(matches!(err, ForgeError::Validation { field: "tier", .. }));
    let ok = ConversationFilter::parse(Some("pending_review"), Some("edge_case")).unwrap();
    assert_eq!(ok.status, Some(ConversationStatus::PendingReview));
    assert_eq!(ok.tier, Some(ConversationTier::EdgeCase));
}

/// Every item of a list, page by page.
async fn all_pages(
    db: &DatabaseConnection,
    actor: Actor,
    filter: ConversationFilter,
    limit: u64,
) -> Vec<String> {
    let mut request = PageRequest::with_limit(limit);
    let mut seen = Vec::new();
    loop {
        let page = repo::list(db, actor, filter, &request).await.unwrap();
        assert!(page.items.len() as u64 <= limit);
        seen.extend(page.items.into_iter().map(|c| c.conversation_id));
        match page.next {
            // As a client would: through the cursor's string form.
            Some(cursor) => request = request.next(cursor.to_string().parse().unwrap()),
            None => return seen,
        }
    }
}

async fn lists_filter_and_paginate(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let ua = Actor::User(a);
    let tiers = [
        ConversationTier::Template,
        ConversationTier::Scenario,
        ConversationTier::EdgeCase,
    ];
    // Even ones generated (by the service, with turns), odd ones the user's drafts.
    for i in 0..7 {
        let tokens: &[i32] = if i % 2 == 0 { &[1] } else { &[] };
        let new = NewConversation {
            tier: tiers[i % 3],
            ..new_conversation(&format!("conv-{i}"), tokens)
        };
        let (actor, new) = if i % 2 == 0 {
            (Actor::Service, generated_for(a, new))
        } else {
            (ua, new)
        };
        repo::create(db, actor, new).await.unwrap();
    }
    let newest_first: Vec<String> = (0..7).rev().map(|i| format!("conv-{i}")).collect();
    assert_eq!(
        all_pages(db, ua, ConversationFilter::default(), 3).await,
        newest_first
    );
    assert_eq!(
        all_pages(db, ua, ConversationFilter::default(), 200).await,
        newest_first
    );

    let scenario = ConversationFilter {
        tier: Some(ConversationTier::Scenario),
        ..Default::default()
    };
    assert_eq!(all_pages(db, ua, scenario, 1).await, ["conv-4", "conv-1"]);
    let drafts = ConversationFilter {
        status: Some(ConversationStatus::Draft),
        ..Default::default()
    };
    assert_eq!(
        all_pages(db, ua, drafts, 2).await,
        ["conv-5", "conv-3", "conv-1"]
    );
    let both = ConversationFilter {
        status: Some(ConversationStatus::Generated),
        tier: Some(ConversationTier::Template),
    };
    assert_eq!(all_pages(db, ua, both, 2).await, ["conv-6", "conv-0"]);

    // A row inserted between two pages neither shifts nor repeats what was seen.
    let request = PageRequest::with_limit(3);
    let first = repo::list(db, ua, ConversationFilter::default(), &request)
        .await
        .unwrap();
    repo::create(db, ua, new_conversation("late", &[1]))
        .await
        .unwrap();
    let cursor = first.next.clone().unwrap();
    let second = repo::list(db, ua, ConversationFilter::default(), &request.next(cursor))
        .await
        .unwrap();
    let ids: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|c| c.conversation_id.as_str())
        .collect();
    assert_eq!(ids, newest_first[..6]);

    for limit in [0, 201] {
        let err = repo::list(
            db,
            ua,
            ConversationFilter::default(),
            &PageRequest::with_limit(limit),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ForgeError::Validation { field: "limit", .. }));
    }
}

async fn review_workflow_records_who_what_when_why(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let reviewer = profile(db, "reviewer@example.com").await;
    let ua = Actor::User(a);
    let first = repo::create(db, ua, new_conversation("first", &[3]))
        .await
        .unwrap()
        .conversation;
    let second = repo::create(db, ua, new_conversation("second", &[4]))
        .await
        .unwrap()
        .conversation;

    let submitted = repo::submit_for_review(db, ua, first.id, Some("ready"))
        .await
        .unwrap();
    assert_eq!(submitted.status, ConversationStatus::PendingReview);
    repo::submit_for_review(db, Actor::Service, second.id, None)
        .await
        .unwrap();

    for actor in [Actor::Service, ua] {
        let queue = repo::review_queue(db, actor, &PageRequest::first())
            .await
            .unwrap();
        let names: Vec<_> = queue
            .items
            .iter()
            .map(|c| c.conversation_id.as_str())
            .collect();
        assert_eq!(names, ["first", "second"], "oldest first");
    }
    let one = repo::review_queue(db, Actor::Service, &PageRequest::with_limit(1))
        .await
        .unwrap();
    let rest = repo::review_queue(
        db,
        Actor::Service,
        &PageRequest::with_limit(1).next(one.next.clone().unwrap().to_string().parse().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(
        (one.items[0].id, rest.items[0].id, rest.next),
        (first.id, second.id, None)
    );

    let approved = repo::approve(db, Actor::Service, first.id, reviewer, Some("lovely"))
        .await
        .unwrap();
    assert_eq!(approved.status, ConversationStatus::Approved);
    assert_eq!(approved.approved_by, Some(reviewer));
    let approved_at = approved.approved_at.unwrap();
    let history = &approved.review_history.0;
    assert_eq!(history.len(), 2);
    assert_eq!(
        (
            history[0].action,
            history[0].performed_by,
            history[0].comment.as_deref()
        ),
        (ReviewActionKind::Submitted, a, Some("ready"))
    );
    assert_eq!(
        (
            history[1].action,
            history[1].performed_by,
            history[1].comment.as_deref()
        ),
        (ReviewActionKind::Approved, reviewer, Some("lovely"))
    );
    assert!(history[0].at <= history[1].at);
    assert_eq!(history[1].at, approved_at);

    // Revision round-trip, then rejection; every step is in the history, in order.
    let c = repo::request_revision(db, Actor::Service, second.id, reviewer, "too short")
        .await
        .unwrap();
    assert_eq!(c.status, ConversationStatus::NeedsRevision);
    repo::append_turn(db, ua, second.id, NewTurn::new(TurnRole::User, "more", 5))
        .await
        .unwrap();
    repo::submit_for_review(db, ua, second.id, None)
        .await
        .unwrap();
    let c = repo::reject(db, Actor::Service, second.id, reviewer, "off topic")
        .await
        .unwrap();
    assert_eq!(c.status, ConversationStatus::Rejected);
    assert_eq!((c.approved_at, c.approved_by), (None, None));
    let steps: Vec<_> = c
        .review_history
        .0
        .iter()
        .map(|r| (r.action, r.performed_by, r.comment.clone()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (ReviewActionKind::Submitted, a, None),
            (
                ReviewActionKind::RevisionRequested,
                reviewer,
                Some("too short".to_owned())
            ),
            (ReviewActionKind::Submitted, a, None),
            (
                ReviewActionKind::Rejected,
                reviewer,
                Some("off topic".to_owned())
            ),
        ]
    );
    assert!(
        repo::review_queue(db, Actor::Service, &PageRequest::first())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_totals_match_turns(db, second.id).await;
}

async fn refused_review_steps_change_nothing(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let reviewer = profile(db, "reviewer@example.com").await;
    let ua = Actor::User(a);
    let draft = repo::create(db, ua, new_conversation("d", &[3]))
        .await
        .unwrap()
        .conversation
        .id;
    let id = repo::create(
        db,
        Actor::Service,
        generated_for(a, new_conversation("c", &[3])),
    )
    .await
    .unwrap()
    .conversation
    .id;

    // Not pending review yet: no decision applies.
    let err = repo::approve(db, Actor::Service, id, reviewer, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ForgeError::InvalidTransition { entity: "conversation", from, to }
            if from == "generated" && to == "approved"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "conversation cannot go from generated to approved"
    );
    let err = repo::approve(db, Actor::Service, draft, reviewer, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "conversation cannot go from draft to approved"
    );

    // `generated` is the generator's: the owner neither extends nor submits it (SCHEMA.md:
    // users edit and submit only drafts and conversations that need revision).
    let before = repo::get_with_turns(db, ua, id).await.unwrap();
    let err = repo::submit_for_review(db, ua, id, None).await.unwrap_err();
    assert!(
        matches!(&err, ForgeError::InvalidTransition { from, to, .. }
            if from == "generated" && to == "pending_review"),
        "{err:?}"
    );
    let err = repo::append_turn(db, ua, id, NewTurn::new(TurnRole::User, "mine", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ForgeError::InvalidTransition { entity: "conversation", to, .. } if to == "a new turn"),
        "{err:?}"
    );
    assert_eq!(repo::get_with_turns(db, ua, id).await.unwrap(), before);

    // The service submits it on the owner's behalf (recorded as the owner).
    let submitted = repo::submit_for_review(db, Actor::Service, id, None)
        .await
        .unwrap();
    assert_eq!(submitted.status, ConversationStatus::PendingReview);
    assert_eq!(
        (
            submitted.review_history.0[0].action,
            submitted.review_history.0[0].performed_by
        ),
        (ReviewActionKind::Submitted, a)
    );
    let err = repo::submit_for_review(db, ua, id, None).await.unwrap_err();
    assert!(
        matches!(&err, ForgeError::InvalidTransition { from, to, .. }
            if from == "pending_review" && to == "pending_review"),
        "{err:?}"
    );
    // The owner cannot review their own work.
    let err = repo::approve(db, ua, id, a, None).await.unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    // A reason is required to reject or ask for changes.
    let err = repo::reject(db, Actor::Service, id, reviewer, "  ")
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ForgeError::Validation {
            field: "comment",
            ..
        }
    ));
    // The reviewer must be a profile.
    let err = repo::request_revision(db, Actor::Service, id, ProfileId::new(), "why")
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
    let c = repo::get(db, ua, id).await.unwrap();
    assert_eq!(c.status, ConversationStatus::PendingReview);
    assert_eq!(c.review_history.0.len(), 1);

    // Frozen while under review and once decided.
    let err = repo::append_turn(db, ua, id, NewTurn::new(TurnRole::User, "late", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::InvalidTransition {
                entity: "conversation",
                ..
            }
        ),
        "{err:?}"
    );
    repo::approve(db, Actor::Service, id, reviewer, None)
        .await
        .unwrap();
    for result in [
        repo::approve(db, Actor::Service, id, reviewer, None).await,
        repo::reject(db, Actor::Service, id, reviewer, "no").await,
        repo::request_revision(db, Actor::Service, id, reviewer, "no").await,
        repo::submit_for_review(db, ua, id, None).await,
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, ForgeError::InvalidTransition { from, .. } if from == "approved"),
            "{err:?}"
        );
    }
    let err = repo::append_turn(db, ua, id, NewTurn::new(TurnRole::User, "late", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::InvalidTransition {
                entity: "conversation",
                ..
            }
        ),
        "{err:?}"
    );
    let c = repo::get(db, ua, id).await.unwrap();
    assert_eq!(c.status, ConversationStatus::Approved);
    assert_eq!(c.review_history.0.len(), 2);
    assert_totals_match_turns(db, id).await;
}

async fn user_b_cannot_see_or_touch_a_conversations(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let (ua, ub) = (Actor::User(a), Actor::User(b));
    let mine = repo::create(db, ua, new_conversation("a-1", &[1, 2]))
        .await
        .unwrap();
    let id = mine.conversation.id;
    let pending = repo::create(db, ua, new_conversation("a-2", &[3]))
        .await
        .unwrap()
        .conversation
        .id;
    repo::submit_for_review(db, ua, pending, None)
        .await
        .unwrap();
    let before = (
        repo::get_with_turns(db, ua, id).await.unwrap(),
        repo::get_with_turns(db, ua, pending).await.unwrap(),
    );

    let not_found = |r: Result<_, ForgeError>| {
        assert!(
            matches!(
                r,
                Err(ForgeError::NotFound {
                    entity: "conversation",
                    ..
                })
            ),
            "B must get NotFound"
        )
    };
    assert!(repo::find(db, ub, id).await.unwrap().is_none());
    not_found(repo::get(db, ub, id).await.map(drop));
    not_found(repo::get_with_turns(db, ub, id).await.map(drop));
    not_found(
        repo::append_turn(db, ub, id, NewTurn::new(TurnRole::User, "hi", 1))
            .await
            .map(drop),
    );
    not_found(repo::submit_for_review(db, ub, id, None).await.map(drop));
    for filter in [
        ConversationFilter::default(),
        ConversationFilter {
            status: Some(ConversationStatus::PendingReview),
            ..Default::default()
        },
    ] {
        let page = repo::list(db, ub, filter, &PageRequest::first())
            .await
            .unwrap();
        assert!(page.items.is_empty());
    }
    assert!(
        repo::review_queue(db, ub, &PageRequest::first())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // B can neither decide reviews nor create rows in A's name.
    let err = repo::reject(db, ub, pending, b, "mine now")
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    assert_cannot_create_for(db, ub, a).await;

    let after = (
        repo::get_with_turns(db, ua, id).await.unwrap(),
        repo::get_with_turns(db, ua, pending).await.unwrap(),
    );
    assert_eq!(before, after, "A's conversations and turns are unchanged");
    assert_eq!(
        repo::list(db, ua, ConversationFilter::default(), &PageRequest::first())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

/// `n` pools on one database: a file database for SQLite (an in-memory one is private to
/// its pool), this test's database for PostgreSQL (as the application role, like
/// `TestDb::db`). Returns the scratch file to remove.
async fn pools(t: &TestDb, n: usize) -> (Vec<DatabaseConnection>, Option<std::path::PathBuf>) {
    let (url, file) = match t.backend() {
        DbBackend::Postgres => (t.app_url().unwrap(), None),
        _ => {
            let path = std::env::temp_dir().join(format!("forge-{}.db", Uuid::new_v4().simple()));
            (format!("sqlite://{}?mode=rwc", path.display()), Some(path))
        }
    };
    let mut pools = Vec::new();
    for _ in 0..n {
        pools.push(connect(&url).await.unwrap());
    }
    if file.is_some() {
        Migrator::up(&pools[0], None).await.unwrap();
    }
    (pools, file)
}

/// Concurrent reviewers: exactly one decision applies. Concurrent appends: turn numbers
/// 1..n with no gaps and totals that equal the turns.
async fn racing_reviewers_and_appenders(t: &TestDb) {
    let (pools, file) = pools(t, 4).await;
    let db = &pools[0];
    let a = profile(db, "a@example.com").await;
    let reviewer = profile(db, "reviewer@example.com").await;
    let ua = Actor::User(a);
    let id = repo::create(db, ua, new_conversation("race", &[1]))
        .await
        .unwrap()
        .conversation
        .id;
    repo::submit_for_review(db, ua, id, None).await.unwrap();

    let decisions = pools.iter().enumerate().map(|(i, pool)| {
        let pool = pool.clone();
        tokio::spawn(async move {
            if i % 2 == 0 {
                repo::approve(&pool, Actor::Service, id, reviewer, None).await
            } else {
                repo::reject(&pool, Actor::Service, id, reviewer, "no").await
            }
        })
    });
    let mut applied = 0;
    for task in decisions.collect::<Vec<_>>() {
        match task.await.unwrap() {
            Ok(_) => applied += 1,
            Err(ForgeError::InvalidTransition { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(applied, 1, "exactly one decision applies");
    let c = repo::get(db, ua, id).await.unwrap();
    assert_eq!(c.review_history.0.len(), 2, "submitted + one decision");

    let open = repo::create(db, ua, new_conversation("append-race", &[1]))
        .await
        .unwrap()
        .conversation
        .id;
    let appenders = pools.iter().flat_map(|pool| {
        (0..5).map(move |k| {
            let pool = pool.clone();
            tokio::spawn(async move {
                repo::append_turn(&pool, ua, open, NewTurn::new(TurnRole::User, "x", k)).await
            })
        })
    });
    for task in appenders.collect::<Vec<_>>() {
        task.await.unwrap().unwrap();
    }
    let read = repo::get_with_turns(db, ua, open).await.unwrap();
    let numbers: Vec<i32> = read.turns.iter().map(|t| t.turn_number).collect();
    assert_eq!(numbers, (1..=21).collect::<Vec<_>>());
    assert_eq!(read.conversation.total_turns, 21);
    assert_eq!(read.conversation.total_tokens, 1 + 4 * 10);

    for pool in pools {
        pool.close().await.ok();
    }
    if let Some(path) = file {
        for suffix in ["", "-wal", "-shm"] {
            std::fs::remove_file(format!("{}{suffix}", path.display())).ok();
        }
    }
}

/// PostgreSQL: an unfiltered query in B's context sees none of A's conversations or turns
/// (the RLS wall on its own).
#[tokio::test]
async fn postgres_rls_hides_a_conversations_from_b() {
    let t = TestDb::postgres().await;
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    repo::create(db, Actor::User(a), new_conversation("a-1", &[1, 2]))
        .await
        .unwrap();
    repo::create(db, Actor::User(b), new_conversation("b-1", &[3]))
        .await
        .unwrap();

    let (seen, turns) = run_as(db, Actor::User(b), Access::Read, |txn| {
        Box::pin(async move {
            Ok((
                conversations::Entity::find().all(txn).await?,
                conversation_turns::Entity::find().all(txn).await?,
            ))
        })
    })
    .await
    .unwrap();
    assert_eq!(
        seen.iter().map(|c| c.created_by).collect::<Vec<_>>(),
        vec![b],
        "RLS alone hides A's conversations"
    );
    assert_eq!(turns.len(), 1, "and their turns");
    assert_eq!(turns[0].conversation_id, seen[0].id);

    // An unfiltered write in B's context cannot reach A's rows either.
    let changed = run_as(db, Actor::User(b), Access::Write, |txn| {
        Box::pin(async move {
            Ok(conversations::Entity::update_many()
                .col_expr(
                    conversations::Column::Title,
                    forge_db::sea_orm::sea_query::Expr::val("renamed by b"),
                )
                .exec(txn)
                .await?
                .rows_affected)
        })
    })
    .await
    .unwrap();
    assert_eq!(changed, 1, "only B's own conversation");
    // Turns are never updated or deleted by a user (SCHEMA.md), not even B's own.
    let refused = run_as(db, Actor::User(b), Access::Write, |txn| {
        Box::pin(async move {
            Ok(conversation_turns::Entity::delete_many()
                .exec(txn)
                .await?
                .rows_affected)
        })
    })
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused:?}"
    );
    let owner = &t.owner;
    assert_eq!(
        conversation_turns::Entity::find()
            .count(owner)
            .await
            .unwrap(),
        3
    );
    let titles: Vec<(ProfileId, Option<String>)> = conversations::Entity::find()
        .all(owner)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.created_by, c.title))
        .collect();
    assert!(titles.contains(&(a, Some("Retirement planning".to_owned()))));
    assert!(titles.contains(&(b, Some("renamed by b".to_owned()))));
    t.finish().await;
}
