//! forge_service::conversations on both backends: editing the owner's fields, marking a
//! conversation failed, scoring it and deleting it, and on PostgreSQL the database wall
//! agreeing with each refusal when an end user sends the SQL directly.

mod common;
use common::signup as profile;

use std::time::Duration;

use common::{TestDb, as_service};
use forge_db::entity::conversation_turns::{self, TurnRole};
use forge_db::entity::conversations::{self, ConversationStatus, ConversationTier, QualityMetrics};
use forge_db::entity::ids::{ConversationId, ProfileId};
use forge_db::sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter,
    TransactionTrait,
};
use forge_db::service::conversations::{
    self as repo, ConversationChanges, NewConversation, NewTurn,
};
use forge_db::service::testing::fixtures;
use forge_db::service::{Actor, ForgeError, batch_items, batches};
use serde_json::json;

on_both_backends! {
    the_owner_edits_drafts_and_revisions => the_owner_edits_drafts_and_revisions;
    refused_edits_change_nothing => refused_edits_change_nothing;
    mark_failed_follows_the_state_machine => mark_failed_follows_the_state_machine;
    score_sets_quality_and_refuses_bad_input => score_sets_quality_and_refuses_bad_input;
    delete_takes_the_turns_and_unlinks_the_items => delete_takes_the_turns_and_unlinks_the_items;
    inside_a_callers_transaction => inside_a_callers_transaction;
}

/// A conversation for the acting user (`turns` tokens); what a user writes is a `draft`.
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
        category: vec!["finance".into()],
        parameters: json!({"temperature": 0.7}),
        turns: tokens
            .iter()
            .map(|&n| NewTurn::new(TurnRole::User, "hello", n))
            .collect(),
    }
}

async fn draft_of(t: &TestDb, owner: ProfileId, human_id: &str) -> conversations::Model {
    repo::create(
        &t.db,
        Actor::User(owner),
        new_conversation(human_id, &[3, 4]),
    )
    .await
    .unwrap()
    .conversation
}

/// Runs `sql` on PostgreSQL as `authenticated` with `user`'s JWT claims, as an end user
/// reaching the table directly (PostgREST) would, in a transaction that is rolled back:
/// the rows it changed, or the database's refusal.
async fn as_end_user(t: &TestDb, user: ProfileId, sql: &str) -> Result<u64, String> {
    let txn = t.owner.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "SET LOCAL ROLE authenticated; \
         SELECT set_config('request.jwt.claims', '{{\"sub\":\"{user}\",\"role\":\"authenticated\"}}', true), \
                set_config('request.jwt.claim.sub', '{user}', true);"
    ))
    .await
    .unwrap();
    let outcome = txn
        .execute_unprepared(sql)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| e.to_string());
    txn.rollback().await.unwrap();
    outcome
}

/// The database refuses `sql` from `user`, with an error containing `why`.
async fn wall_refuses(t: &TestDb, user: ProfileId, sql: &str, why: &str) {
    match as_end_user(t, user, sql).await {
        Err(e) => assert!(e.contains(why), "{sql}: refused, but not for {why:?}: {e}"),
        Ok(n) => panic!("{sql}: the database let it through ({n} rows)"),
    }
}

fn invalid_state(
    result: Result<conversations::Model, ForgeError>,
    from: ConversationStatus,
    to: &str,
) {
    match result {
        Err(ForgeError::InvalidTransition {
            entity: "conversation",
            from: f,
            to: t,
        }) => assert_eq!((f.as_str(), t.as_str()), (from.as_str(), to)),
        other => panic!("expected InvalidTransition {from} → {to}: {other:?}"),
    }
}

fn not_found<T: std::fmt::Debug>(result: Result<T, ForgeError>) {
    assert!(
        matches!(
            result,
            Err(ForgeError::NotFound {
                entity: "conversation",
                ..
            })
        ),
        "expected NotFound: {result:?}"
    );
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, ForgeError>) {
    assert!(
        matches!(result, Err(ForgeError::Forbidden { .. })),
        "expected Forbidden: {result:?}"
    );
}

async fn the_owner_edits_drafts_and_revisions(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let reviewer = profile(db, "reviewer@example.com").await;
    let ua = Actor::User(a);
    let draft = draft_of(t, a, "conv-1").await;
    assert_eq!(draft.status, ConversationStatus::Draft);

    // Every editable field, trimmed and checked as on create; text with quotes and
    // backslashes survives the trip (PostgreSQL gets the statement as one message).
    let tricky = json!({"quote": "it's", "path": "C:\\temp", "nested": {"n": [1, 2.5]}});
    let changes = ConversationChanges {
        title: Some(Some("  Pension basics ".into())),
        persona: Some(" new retiree ".into()),
        emotion: Some("hopeful".into()),
        topic: Some("annuities".into()),
        intent: Some("compare".into()),
        tone: Some("calm".into()),
        category: Some(vec![" finance ".into(), "retirement".into()]),
        parameters: Some(tricky.clone()),
    };
    let edited = repo::update(db, ua, draft.id, changes).await.unwrap();
    assert_eq!(edited.title.as_deref(), Some("Pension basics"));
    assert_eq!(
        (
            edited.persona.as_str(),
            edited.emotion.as_str(),
            edited.topic.as_str(),
            edited.intent.as_str(),
            edited.tone.as_str()
        ),
        ("new retiree", "hopeful", "annuities", "compare", "calm")
    );
    assert_eq!(edited.category.0, vec!["finance", "retirement"]);
    assert_eq!(edited.parameters, tricky);
    assert!(edited.updated_at >= draft.updated_at);
    // Nothing else moved: status, totals, review columns.
    assert_eq!(edited.status, ConversationStatus::Draft);
    assert_eq!((edited.total_turns, edited.total_tokens), (2, 7));
    assert_eq!(edited.review_history, draft.review_history);
    assert_eq!(
        repo::get(db, ua, draft.id).await.unwrap(),
        edited,
        "as stored"
    );

    // `Some(None)` clears the title; other fields stay; `null` parameters store `{}`.
    let cleared = repo::update(
        db,
        ua,
        draft.id,
        ConversationChanges {
            title: Some(None),
            parameters: Some(serde_json::Value::Null),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(cleared.title, None);
    assert_eq!(cleared.parameters, json!({}));
    assert_eq!(cleared.topic, "annuities");

    // Empty changes write nothing.
    let same = repo::update(db, ua, draft.id, ConversationChanges::default())
        .await
        .unwrap();
    assert_eq!(same, cleared);

    // Submitted: the owner may no longer edit; the service may, in any state.
    repo::submit_for_review(db, ua, draft.id, None)
        .await
        .unwrap();
    let retitle = |title: &str| ConversationChanges {
        title: Some(Some(title.to_owned())),
        ..Default::default()
    };
    invalid_state(
        repo::update(db, ua, draft.id, retitle("late")).await,
        ConversationStatus::PendingReview,
        "edited",
    );
    let by_service = repo::update(db, Actor::Service, draft.id, retitle("fixed by an editor"))
        .await
        .unwrap();
    assert_eq!(by_service.title.as_deref(), Some("fixed by an editor"));
    assert_eq!(by_service.status, ConversationStatus::PendingReview);

    // Sent back for revision: the owner edits again.
    repo::request_revision(db, Actor::Service, draft.id, reviewer, "shorter")
        .await
        .unwrap();
    let revised = repo::update(db, ua, draft.id, retitle("revised"))
        .await
        .unwrap();
    assert_eq!(
        (revised.title.as_deref(), revised.status),
        (Some("revised"), ConversationStatus::NeedsRevision)
    );

    // `generated` is the generator's: its owner does not edit it, the service does.
    let generated = fixtures::conversation_with_turns(db, a, 2)
        .await
        .unwrap()
        .conversation;
    invalid_state(
        repo::update(db, ua, generated.id, retitle("mine")).await,
        ConversationStatus::Generated,
        "edited",
    );
    repo::update(db, Actor::Service, generated.id, retitle("polished"))
        .await
        .unwrap();

    if t.backend() == DbBackend::Postgres {
        // The wall agrees: the owner's direct edit of a draft goes through, of a
        // conversation under review or generated does not.
        let own = draft_of(t, a, "conv-direct").await;
        let sql = |id: ConversationId| {
            format!("UPDATE conversations SET title = 'direct' WHERE id = '{id}'")
        };
        assert_eq!(as_end_user(t, a, &sql(own.id)).await, Ok(1));
        repo::submit_for_review(db, ua, own.id, None).await.unwrap();
        wall_refuses(t, a, &sql(own.id), "forge:transition:conversation").await;
        wall_refuses(t, a, &sql(generated.id), "forge:transition:conversation").await;
    }
}

async fn refused_edits_change_nothing(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let ua = Actor::User(a);
    let draft = draft_of(t, a, "conv-1").await;

    let cases: Vec<(&str, ConversationChanges)> = vec![
        (
            "title",
            ConversationChanges {
                title: Some(Some("  ".into())),
                ..Default::default()
            },
        ),
        (
            "persona",
            ConversationChanges {
                persona: Some("".into()),
                ..Default::default()
            },
        ),
        (
            "topic",
            ConversationChanges {
                topic: Some("x".repeat(201)),
                ..Default::default()
            },
        ),
        (
            "tone",
            ConversationChanges {
                tone: Some("a\0b".into()),
                ..Default::default()
            },
        ),
        (
            "category",
            ConversationChanges {
                category: Some(vec!["ok".into(), " ".into()]),
                ..Default::default()
            },
        ),
        (
            "category",
            ConversationChanges {
                category: Some((0..51).map(|i| format!("c{i}")).collect()),
                ..Default::default()
            },
        ),
        (
            "parameters",
            ConversationChanges {
                parameters: Some(json!([1, 2])),
                ..Default::default()
            },
        ),
        (
            "parameters",
            ConversationChanges {
                parameters: Some(json!({ "blob": "x".repeat(70_000) })),
                ..Default::default()
            },
        ),
    ];
    for (field, changes) in cases {
        // A valid change next to the invalid one is not applied either.
        let changes = ConversationChanges {
            intent: Some("changed".into()),
            ..changes
        };
        let err = repo::update(db, ua, draft.id, changes).await.unwrap_err();
        assert!(
            matches!(err, ForgeError::Validation { field: f, .. } if f == field),
            "{field}: {err:?}"
        );
    }
    assert_eq!(repo::get(db, ua, draft.id).await.unwrap(), draft);

    // Someone else's conversation, or none, is not found; it stays as it was.
    let retitle = ConversationChanges {
        title: Some(Some("mine now".into())),
        ..Default::default()
    };
    not_found(repo::update(db, Actor::User(b), draft.id, retitle.clone()).await);
    not_found(repo::update(db, Actor::User(b), draft.id, ConversationChanges::default()).await);
    not_found(repo::update(db, ua, ConversationId::new(), retitle.clone()).await);
    not_found(repo::update(db, Actor::Service, ConversationId::new(), retitle).await);
    assert_eq!(repo::get(db, ua, draft.id).await.unwrap(), draft);

    if t.backend() == DbBackend::Postgres {
        // Directly, another user's conversation is out of reach (no row matches).
        let sql = format!(
            "UPDATE conversations SET title = 'mine now' WHERE id = '{}'",
            draft.id
        );
        assert_eq!(as_end_user(t, b, &sql).await, Ok(0));
        assert_eq!(repo::get(db, ua, draft.id).await.unwrap(), draft);
    }
}

async fn mark_failed_follows_the_state_machine(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let reviewer = profile(db, "reviewer@example.com").await;
    let ua = Actor::User(a);
    let service = Actor::Service;

    // From the generator's states: draft, generated, needs_revision.
    let draft = draft_of(t, a, "draft").await;
    let generated = fixtures::conversation_with_turns(db, a, 2)
        .await
        .unwrap()
        .conversation;
    let revision = draft_of(t, a, "revision").await;
    repo::submit_for_review(db, ua, revision.id, None)
        .await
        .unwrap();
    repo::request_revision(db, service, revision.id, reviewer, "again")
        .await
        .unwrap();
    for c in [&draft, &generated, &revision] {
        let failed = repo::mark_failed(db, service, c.id).await.unwrap();
        assert_eq!(failed.status, ConversationStatus::Failed);
        assert_eq!(
            (&failed.title, failed.total_turns),
            (&c.title, c.total_turns),
            "only the status moved"
        );
    }

    // Not once it is submitted, reviewed, or failed already.
    let pending = draft_of(t, a, "pending").await;
    repo::submit_for_review(db, ua, pending.id, None)
        .await
        .unwrap();
    let approved = draft_of(t, a, "approved").await;
    repo::submit_for_review(db, ua, approved.id, None)
        .await
        .unwrap();
    repo::approve(db, service, approved.id, reviewer, None)
        .await
        .unwrap();
    let rejected = draft_of(t, a, "rejected").await;
    repo::submit_for_review(db, ua, rejected.id, None)
        .await
        .unwrap();
    repo::reject(db, service, rejected.id, reviewer, "off topic")
        .await
        .unwrap();
    for (id, state) in [
        (pending.id, ConversationStatus::PendingReview),
        (approved.id, ConversationStatus::Approved),
        (rejected.id, ConversationStatus::Rejected),
        (draft.id, ConversationStatus::Failed),
    ] {
        invalid_state(repo::mark_failed(db, service, id).await, state, "failed");
        assert_eq!(repo::get(db, ua, id).await.unwrap().status, state);
    }

    // The service's alone, and an unknown conversation is not found.
    let mine = draft_of(t, a, "mine").await;
    forbidden(repo::mark_failed(db, ua, mine.id).await);
    assert_eq!(
        repo::get(db, ua, mine.id).await.unwrap().status,
        ConversationStatus::Draft
    );
    not_found(repo::mark_failed(db, service, ConversationId::new()).await);

    if t.backend() == DbBackend::Postgres {
        let sql = format!(
            "UPDATE conversations SET status = 'failed' WHERE id = '{}'",
            mine.id
        );
        wall_refuses(t, a, &sql, "forge:transition:conversation:draft:failed").await;
    }
}

fn metrics() -> QualityMetrics {
    let mut extra = serde_json::Map::new();
    extra.insert("checker".into(), json!("v2"));
    extra.insert("notes".into(), json!(["it's fine", "C:\\ok"]));
    QualityMetrics {
        overall: 7.5,
        relevance: 8.0,
        accuracy: 6.25,
        naturalness: 9.0,
        coherence: 7.0,
        confidence: 0.8,
        extra,
    }
}

async fn score_sets_quality_and_refuses_bad_input(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let reviewer = profile(db, "reviewer@example.com").await;
    let ua = Actor::User(a);
    let service = Actor::Service;
    let c = fixtures::conversation_with_turns(db, a, 2)
        .await
        .unwrap()
        .conversation;
    assert_eq!((c.quality_score, c.quality_metrics.as_ref()), (None, None));

    let scored = repo::score(db, service, c.id, 7.5, metrics())
        .await
        .unwrap();
    assert_eq!(scored.quality_score, Some(7.5));
    assert_eq!(scored.quality_metrics, Some(metrics()));
    assert_eq!(scored.status, ConversationStatus::Generated);
    assert_eq!(repo::get(db, ua, c.id).await.unwrap(), scored, "as stored");

    // The bounds are inclusive, and a decided conversation may be scored again.
    repo::submit_for_review(db, service, c.id, None)
        .await
        .unwrap();
    repo::approve(db, service, c.id, reviewer, None)
        .await
        .unwrap();
    for score in [0.0, 10.0] {
        let again = repo::score(db, service, c.id, score, QualityMetrics::default())
            .await
            .unwrap();
        assert_eq!(again.quality_score, Some(score));
        assert_eq!(again.quality_metrics, Some(QualityMetrics::default()));
        assert_eq!(again.status, ConversationStatus::Approved);
    }
    let before = repo::get(db, ua, c.id).await.unwrap();

    // Refused before anything is written.
    for bad in [-0.1, 10.01, f64::NAN, f64::INFINITY] {
        let err = repo::score(db, service, c.id, bad, metrics())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ForgeError::Validation {
                    field: "quality_score",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
    }
    let not_a_number = QualityMetrics {
        coherence: f64::NAN,
        ..metrics()
    };
    let mut huge = metrics();
    huge.extra.insert("blob".into(), json!("x".repeat(70_000)));
    let mut nul = metrics();
    nul.extra.insert("note".into(), json!("a\u{0}b"));
    for bad in [not_a_number, huge, nul] {
        let err = repo::score(db, service, c.id, 5.0, bad).await.unwrap_err();
        assert!(
            matches!(
                err,
                ForgeError::Validation {
                    field: "quality_metrics",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    forbidden(repo::score(db, ua, c.id, 1.0, metrics()).await);
    assert_eq!(repo::get(db, ua, c.id).await.unwrap(), before);
    not_found(repo::score(db, service, ConversationId::new(), 1.0, metrics()).await);

    if t.backend() == DbBackend::Postgres {
        // The review columns are the service's: the owner holds no privilege on them.
        let draft = draft_of(t, a, "draft").await;
        for set in [
            "quality_score = 10",
            "quality_metrics = '{\"overall\": 10}'",
        ] {
            let sql = format!("UPDATE conversations SET {set} WHERE id = '{}'", draft.id);
            wall_refuses(t, a, &sql, "permission denied").await;
        }
    }
}

/// The stored turns of conversation `id`, counted in the service's context.
async fn turn_count(t: &TestDb, id: ConversationId) -> u64 {
    as_service(&t.db, move |txn| {
        Box::pin(async move {
            Ok(conversation_turns::Entity::find()
                .filter(conversation_turns::Column::ConversationId.eq(id))
                .count(txn)
                .await?)
        })
    })
    .await
}

async fn delete_takes_the_turns_and_unlinks_the_items(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let b = profile(db, "b@example.com").await;
    let reviewer = profile(db, "reviewer@example.com").await;
    let ua = Actor::User(a);

    // A conversation produced by an item of a batch of A's.
    let batch = fixtures::batch_with_items(db, a, 2).await.unwrap();
    let claimed = batch_items::claim_next(db, Actor::Service, "w1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("an item");
    let produced = fixtures::conversation_with_turns(db, a, 3)
        .await
        .unwrap()
        .conversation;
    batch_items::complete(db, Actor::Service, claimed.item.id, "w1", produced.id)
        .await
        .unwrap();
    assert_eq!(turn_count(t, produced.id).await, 3);

    // Not by anyone else: still there.
    not_found(repo::delete(db, Actor::User(b), produced.id).await);
    assert!(repo::find(db, ua, produced.id).await.unwrap().is_some());

    repo::delete(db, ua, produced.id).await.unwrap();
    assert_eq!(repo::find(db, ua, produced.id).await.unwrap(), None);
    assert_eq!(
        turn_count(t, produced.id).await,
        0,
        "the turns went with it"
    );
    let item = batch_items::get(db, ua, claimed.item.id).await.unwrap();
    assert_eq!(
        (item.status, item.conversation_id),
        (forge_db::entity::batch_items::ItemStatus::Completed, None),
        "the item stays completed, unlinked"
    );
    let after = batches::get(db, ua, batch.id).await.unwrap();
    assert_eq!(
        (
            after.total_items,
            after.completed_items,
            after.successful_items
        ),
        (2, 1, 1),
        "the counters do not move"
    );
    not_found(repo::delete(db, ua, produced.id).await);

    // In any state, approved included; the service deletes anyone's.
    let approved = draft_of(t, a, "approved").await;
    repo::submit_for_review(db, ua, approved.id, None)
        .await
        .unwrap();
    repo::approve(db, Actor::Service, approved.id, reviewer, None)
        .await
        .unwrap();
    repo::delete(db, ua, approved.id).await.unwrap();
    let theirs = draft_of(t, b, "theirs").await;
    repo::delete(db, Actor::Service, theirs.id).await.unwrap();
    not_found(repo::get(db, Actor::Service, theirs.id).await);
    not_found(repo::delete(db, Actor::Service, ConversationId::new()).await);

    if t.backend() == DbBackend::Postgres {
        // Directly, another user's conversation cannot be deleted; one's own can.
        let kept = draft_of(t, a, "kept").await;
        let sql = format!("DELETE FROM conversations WHERE id = '{}'", kept.id);
        assert_eq!(as_end_user(t, b, &sql).await, Ok(0));
        assert_eq!(as_end_user(t, a, &sql).await, Ok(1));
        assert!(
            repo::find(db, ua, kept.id).await.unwrap().is_some(),
            "rolled back"
        );
    }
}

/// Inside a caller's transaction every operation runs in a savepoint (bound parameters
/// instead of one message on PostgreSQL) and is undone with the transaction.
async fn inside_a_callers_transaction(t: &TestDb) {
    let db = &t.db;
    let a = profile(db, "a@example.com").await;
    let ua = Actor::User(a);
    let draft = draft_of(t, a, "draft").await;
    let doomed = draft_of(t, a, "doomed").await;
    let retitle = ConversationChanges {
        title: Some(Some("in a transaction".into())),
        parameters: Some(json!({"quote": "it's"})),
        ..Default::default()
    };

    let txn = db.begin().await.unwrap();
    let edited = repo::update(&txn, ua, draft.id, retitle.clone())
        .await
        .unwrap();
    assert_eq!(edited.title.as_deref(), Some("in a transaction"));
    let scored = repo::score(&txn, Actor::Service, draft.id, 4.5, metrics())
        .await
        .unwrap();
    assert_eq!(
        (scored.quality_score, scored.title.as_deref()),
        (Some(4.5), Some("in a transaction"))
    );
    repo::mark_failed(&txn, Actor::Service, draft.id)
        .await
        .unwrap();
    invalid_state(
        repo::update(&txn, ua, draft.id, retitle.clone()).await,
        ConversationStatus::Failed,
        "edited",
    );
    repo::delete(&txn, ua, doomed.id).await.unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(repo::get(db, ua, draft.id).await.unwrap(), draft);
    assert_eq!(repo::get(db, ua, doomed.id).await.unwrap(), doomed);

    let txn = db.begin().await.unwrap();
    repo::update(&txn, ua, draft.id, retitle).await.unwrap();
    repo::delete(&txn, ua, doomed.id).await.unwrap();
    txn.commit().await.unwrap();
    let stored = repo::get(db, ua, draft.id).await.unwrap();
    assert_eq!(stored.parameters, json!({"quote": "it's"}));
    not_found(repo::get(db, ua, doomed.id).await);
}
