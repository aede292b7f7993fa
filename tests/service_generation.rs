//! forge_service::templates, ::scenarios and ::generation on both backends: templates
//! CRUD with the database's version bump, rendering, scenario values checked against the
//! template's variables, isolation (by row-level security alone too on PostgreSQL), the
//! generation transaction all or nothing, and cost totals over a range.

mod common;

use chrono::{Duration, Utc};
use common::TestDb;
use forge_db::entity::conversation_turns::TurnRole;
use forge_db::entity::conversations::{self, ConversationTier};
use forge_db::entity::edge_cases::{self, EdgeComplexity, TestStatus};
use forge_db::entity::ids::{ProfileId, TemplateId};
use forge_db::entity::scenarios::{self, GenerationStatus, ScenarioStatus};
use forge_db::entity::{generation_logs, templates};
use forge_db::sea_orm::{DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait};
use forge_db::service::conversations::{NewConversation, NewTurn};
use forge_db::service::generation::{
    self, GenerationOutcome, GenerationSource, LogFilter, NewGeneration, TimeRange,
};
use forge_db::service::scenarios::{
    self as scenario_repo, EdgeCasePatch, NewEdgeCase, NewScenario, ScenarioFilter, ScenarioPatch,
};
use forge_db::service::templates::{
    self as template_repo, NewTemplate, TemplateFilter, TemplatePatch,
};
use forge_db::service::{Access, Actor, ForgeError, PageRequest, run_as};
use serde_json::{Map, Value as Json, json};

on_both_backends! {
    templates_crud_and_version_bump => templates_crud_and_version_bump;
    templates_list_by_tier_and_category => templates_list_by_tier_and_category;
    rendering_a_stored_template => rendering_a_stored_template;
    scenario_values_are_checked => scenario_values_are_checked;
    edge_cases_crud => edge_cases_crud;
    user_b_sees_nothing_of_user_a => user_b_sees_nothing_of_user_a;
    generation_records_everything => generation_records_everything;
    failed_generation_records_the_error => failed_generation_records_the_error;
    generation_is_all_or_nothing => generation_is_all_or_nothing;
    cost_totals_per_user_and_template => cost_totals_per_user_and_template;
}

const TEXT: &str = "Generate a conversation between a financial advisor and {{persona}} about \
                    {{topic}}, with emotional arc showing {{emotion}}; again: {{persona}}.";

fn new_template(name: &str) -> NewTemplate {
    NewTemplate::new(
        name,
        "Financial Planning",
        ConversationTier::Template,
        TEXT,
        ["persona", "topic", "emotion"],
    )
}

async fn template(db: &DatabaseConnection, owner: ProfileId, name: &str) -> templates::Model {
    template_repo::create(db, Actor::User(owner), new_template(name))
        .await
        .expect("create template")
}

fn values(pairs: &[(&str, Json)]) -> Map<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn full_values() -> Map<String, Json> {
    values(&[
        ("persona", json!("a young teacher")),
        ("topic", json!("retirement")),
        ("emotion", json!("relief")),
    ])
}

async fn scenario(
    db: &DatabaseConnection,
    owner: ProfileId,
    template: TemplateId,
) -> scenarios::Model {
    scenario_repo::create(
        db,
        Actor::User(owner),
        NewScenario::new(
            "Teacher plans retirement",
            template,
            full_values(),
            "retirement",
            "a young teacher",
            "worry to relief",
        ),
    )
    .await
    .expect("create scenario")
}

fn conversation(human_id: &str) -> NewConversation {
    NewConversation {
        owner: None,
        conversation_id: human_id.to_owned(),
        title: Some("Retirement".to_owned()),
        tier: ConversationTier::Scenario,
        persona: "a young teacher".to_owned(),
        emotion: "relief".to_owned(),
        topic: "retirement".to_owned(),
        intent: "plan".to_owned(),
        tone: "warm".to_owned(),
        category: vec!["finance".to_owned()],
        parameters: json!({"temperature": 0.7}),
        turns: vec![
            NewTurn::new(TurnRole::User, "How do I start saving?", 7),
            NewTurn::new(TurnRole::Assistant, "Let us look at your budget.", 9),
        ],
    }
}

fn generated(user: ProfileId, source: GenerationSource, human_id: &str) -> NewGeneration {
    NewGeneration {
        input_tokens: 100,
        output_tokens: 250,
        cost_usd: 0.0125,
        duration_ms: 1800,
        request_payload: Some(json!({"model": "m", "prompt": "…"})),
        response_payload: Some(json!({"id": "resp-1"})),
        run_id: Some("run-20261130-abcdefgh".to_owned()),
        ..NewGeneration::new(
            user,
            source,
            GenerationOutcome::Generated(Box::new(conversation(human_id))),
        )
    }
}

fn is_validation(err: &ForgeError, expected: &str) -> bool {
    matches!(err, ForgeError::Validation { field, .. } if *field == expected)
}

fn is_not_found(err: &ForgeError, expected: &str) -> bool {
    matches!(err, ForgeError::NotFound { entity, .. } if *entity == expected)
}

/// Every row of `E` that `actor`'s context lets through, with no filter of Forge's: on
/// PostgreSQL what row-level security alone allows.
async fn unfiltered<E>(db: &DatabaseConnection, actor: Actor) -> Vec<E::Model>
where
    E: EntityTrait,
    E::Model: Send,
{
    run_as(db, actor, Access::Read, |txn| {
        Box::pin(async move { Ok(E::find().all(txn).await?) })
    })
    .await
    .expect("unfiltered query")
}

async fn count_logs(db: &DatabaseConnection) -> u64 {
    common::as_service(db, |txn| {
        Box::pin(async move { Ok(generation_logs::Entity::find().count(txn).await?) })
    })
    .await
}

async fn count_conversations(db: &DatabaseConnection) -> u64 {
    common::as_service(db, |txn| {
        Box::pin(async move { Ok(conversations::Entity::find().count(txn).await?) })
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------

async fn templates_crud_and_version_bump(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let b = common::signup(db, "b@example.com").await;
    let (ua, ub) = (Actor::User(a), Actor::User(b));

    let created = template(db, a, "Financial Planning Triumph").await;
    assert_eq!(created.version, 1);
    assert_eq!(created.usage_count, 0);
    assert!(created.is_active);
    assert_eq!(created.created_by, a);
    assert_eq!(created.variables.0, ["persona", "topic", "emotion"]);
    assert_eq!(
        template_repo::get(db, ua, created.id).await.unwrap(),
        created
    );
    // Active templates are shared: B reads A's.
    assert_eq!(
        template_repo::get(db, ub, created.id).await.unwrap(),
        created
    );

    // A content change: the database bumps the version and stamps it.
    let updated = template_repo::update(
        db,
        ua,
        created.id,
        TemplatePatch {
            template_name: Some("  Financial Planning Success ".to_owned()),
            template_text: Some("Talk with {{persona}} about {{topic}}.".to_owned()),
            variables: Some(vec!["persona".to_owned(), "topic".to_owned()]),
            tone: Some(Some("warm".to_owned())),
            complexity_baseline: Some(Some(4)),
            ..TemplatePatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.template_name, "Financial Planning Success");
    assert_eq!(updated.variables.0, ["persona", "topic"]);
    assert_eq!(updated.tone.as_deref(), Some("warm"));
    assert_eq!(updated.complexity_baseline, Some(4));
    assert!(updated.last_modified >= created.last_modified);
    assert_eq!(
        template_repo::get(db, ua, created.id).await.unwrap(),
        updated
    );
    let again = template_repo::update(
        db,
        ua,
        created.id,
        TemplatePatch {
            description: Some(Some("v3".to_owned())),
            ..TemplatePatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(again.version, 3);
    // An empty patch changes nothing.
    let same = template_repo::update(db, ua, created.id, TemplatePatch::default())
        .await
        .unwrap();
    assert_eq!(same, again);

    // Text and variables must agree, also when only one of them changes.
    let err = template_repo::update(
        db,
        ua,
        created.id,
        TemplatePatch {
            template_text: Some("Only {{persona}}".to_owned()),
            ..TemplatePatch::default()
        },
    )
    .await
    .unwrap_err();
    assert!(is_validation(&err, "variables"), "{err:?}");
    let err = template_repo::update(
        db,
        ua,
        created.id,
        TemplatePatch {
            variables: Some(vec!["persona".to_owned()]),
            ..TemplatePatch::default()
        },
    )
    .await
    .unwrap_err();
    assert!(is_validation(&err, "template_text"), "{err:?}");
    let mut bad = new_template("Bad");
    bad.variables.push("unused".to_owned());
    let err = template_repo::create(db, ua, bad).await.unwrap_err();
    assert!(is_validation(&err, "variables"), "{err:?}");
    let mut bad = new_template("Bad");
    bad.template_text.push_str(" {{unknown}}");
    let err = template_repo::create(db, ua, bad).await.unwrap_err();
    assert!(is_validation(&err, "template_text"), "{err:?}");
    let mut bad = new_template("Bad");
    bad.complexity_baseline = Some(11);
    let err = template_repo::create(db, ua, bad).await.unwrap_err();
    assert!(is_validation(&err, "complexity_baseline"), "{err:?}");
    let mut bad = new_template("Bad");
    bad.owner = Some(b);
    let err = template_repo::create(db, ua, bad).await.unwrap_err();
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
    assert_eq!(template_repo::get(db, ua, created.id).await.unwrap(), again);

    // B reads A's template but never writes it.
    let err = template_repo::update(
        db,
        ub,
        created.id,
        TemplatePatch {
            description: Some(None),
            ..TemplatePatch::default()
        },
    )
    .await
    .unwrap_err();
    assert!(is_not_found(&err, "template"), "{err:?}");
    let err = template_repo::deactivate(db, ub, created.id)
        .await
        .unwrap_err();
    assert!(is_not_found(&err, "template"), "{err:?}");

    // Deactivating is no content change, and hides the template from everyone else.
    let inactive = template_repo::deactivate(db, ua, created.id).await.unwrap();
    assert!(!inactive.is_active);
    assert_eq!(inactive.version, 3);
    assert_eq!(template_repo::find(db, ub, created.id).await.unwrap(), None);
    let err = template_repo::get(db, ub, created.id).await.unwrap_err();
    assert!(is_not_found(&err, "template"), "{err:?}");
    assert_eq!(
        template_repo::get(db, ua, created.id).await.unwrap(),
        inactive
    );
    let active = template_repo::activate(db, ua, created.id).await.unwrap();
    assert!(active.is_active);
    assert_eq!(active.version, 3);
    assert!(
        template_repo::find(db, ub, created.id)
            .await
            .unwrap()
            .is_some()
    );
}

async fn templates_list_by_tier_and_category(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let b = common::signup(db, "b@example.com").await;
    let (ua, ub) = (Actor::User(a), Actor::User(b));
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(template(db, a, &format!("T{i}")).await.id);
    }
    let mut other = new_template("Edge");
    other.tier = ConversationTier::EdgeCase;
    other.category = "Debt".to_owned();
    let edge = template_repo::create(db, ub, other).await.unwrap();
    let hidden = template(db, b, "Hidden").await;
    template_repo::deactivate(db, ub, hidden.id).await.unwrap();

    // Newest first, in pages of 2, A's five plus B's active edge-case template.
    let filter = TemplateFilter::default();
    let mut seen = Vec::new();
    let mut request = PageRequest::with_limit(2);
    loop {
        let page = template_repo::list(db, ua, &filter, &request)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|t| t.id));
        match page.next {
            Some(cursor) => request = request.next(cursor),
            None => break,
        }
    }
    let mut expected: Vec<TemplateId> = ids.iter().rev().copied().collect();
    expected.insert(0, edge.id);
    assert_eq!(seen, expected);

    let by_tier = TemplateFilter {
        tier: Some(ConversationTier::EdgeCase),
        ..TemplateFilter::default()
    };
    let page = template_repo::list(db, ua, &by_tier, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(page.items, vec![edge.clone()]);
    let by_category = TemplateFilter {
        category: Some("Financial Planning".to_owned()),
        ..TemplateFilter::default()
    };
    let page = template_repo::list(db, ub, &by_category, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5, "inactive templates are never listed");
    assert!(page.items.iter().all(|t| t.created_by == a));
}

async fn rendering_a_stored_template(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let stored = template(db, a, "Render me").await;
    let out = template_repo::render(&stored, &full_values()).unwrap();
    assert_eq!(
        out,
        "Generate a conversation between a financial advisor and a young teacher about \
         retirement, with emotional arc showing relief; again: a young teacher."
    );
}

#[test]
fn render_fills_and_refuses() {
    let vars = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let render = template_repo::render_text;

    // Fills every occurrence of repeated placeholders; non-string values as JSON.
    let out = render(
        "{{a}} and {{ a }}, {{n}} {{flag}} {{list}}",
        &vars(&["a", "n", "flag", "list"]),
        &values(&[
            ("a", json!("x")),
            ("n", json!(2.5)),
            ("flag", json!(true)),
            ("list", json!(["p", 1])),
        ]),
    )
    .unwrap();
    assert_eq!(out, r#"x and x, 2.5 true ["p",1]"#);

    // No placeholders: the text as it is.
    assert_eq!(
        render("Plain text.", &[], &Map::new()).unwrap(),
        "Plain text."
    );

    // Braces that are not placeholders stay.
    let text = r#"JSON {"k": {"v": 1}}, {{}}, {{ two words }}, {single}, {{{a}}}, {{a}"#;
    let out = render(text, &vars(&["a"]), &values(&[("a", json!("A"))])).unwrap();
    assert_eq!(
        out,
        r#"JSON {"k": {"v": 1}}, {{}}, {{ two words }}, {single}, {A}, {{a}"#
    );

    // A value is inserted as it is, never expanded again.
    let out = render(
        "{{a}}/{{b}}",
        &vars(&["a", "b"]),
        &values(&[("a", json!("{{b}}")), ("b", json!("B"))]),
    )
    .unwrap();
    assert_eq!(out, "{{b}}/B");

    // Unknown and missing variables.
    let err = render(
        "{{a}}",
        &vars(&["a"]),
        &values(&[("a", json!("x")), ("b", json!("y"))]),
    )
    .unwrap_err();
    assert!(is_validation(&err, "values"), "{err:?}");
    let err = render(
        "{{a}} {{b}}",
        &vars(&["a", "b"]),
        &values(&[("a", json!("x"))]),
    )
    .unwrap_err();
    assert!(is_validation(&err, "values"), "{err:?}");
    let err = render("{{a}}", &vars(&["a"]), &values(&[("a", Json::Null)])).unwrap_err();
    assert!(is_validation(&err, "values"), "{err:?}");
    // A text using a placeholder that is not a variable.
    let err = render("{{a}} {{z}}", &vars(&["a"]), &values(&[("a", json!("x"))])).unwrap_err();
    assert!(is_validation(&err, "template_text"), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// Scenarios and edge cases
// ---------------------------------------------------------------------------------------

async fn scenario_values_are_checked(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let b = common::signup(db, "b@example.com").await;
    let ua = Actor::User(a);
    let tpl = template(db, a, "Mine").await;
    let new = |values: Map<String, Json>| {
        NewScenario::new(
            "S",
            tpl.id,
            values,
            "retirement",
            "teacher",
            "worry to relief",
        )
    };

    let mut missing = full_values();
    missing.remove("emotion");
    let err = scenario_repo::create(db, ua, new(missing))
        .await
        .unwrap_err();
    assert!(is_validation(&err, "parameter_values"), "{err:?}");
    let mut unknown = full_values();
    unknown.insert("mood".to_owned(), json!("calm"));
    let err = scenario_repo::create(db, ua, new(unknown))
        .await
        .unwrap_err();
    assert!(is_validation(&err, "parameter_values"), "{err:?}");
    let mut null = full_values();
    null.insert("topic".to_owned(), Json::Null);
    let err = scenario_repo::create(db, ua, new(null)).await.unwrap_err();
    assert!(is_validation(&err, "parameter_values"), "{err:?}");
    assert!(
        scenario_repo::list(db, ua, ScenarioFilter::default(), &PageRequest::first())
            .await
            .unwrap()
            .items
            .is_empty(),
        "refused calls store nothing"
    );

    let created = scenario_repo::create(db, ua, new(full_values()))
        .await
        .unwrap();
    assert_eq!(created.parameter_values, Json::Object(full_values()));
    assert_eq!(created.generation_status, GenerationStatus::NotGenerated);
    assert_eq!(created.status, ScenarioStatus::Draft);
    assert_eq!(created.created_by, a);
    assert_eq!(created.conversation_id, None);

    // Updates are checked against the template's variables too.
    let mut bad = full_values();
    bad.insert("extra".to_owned(), json!(1));
    let err = scenario_repo::update(
        db,
        ua,
        created.id,
        ScenarioPatch {
            parameter_values: Some(bad),
            ..ScenarioPatch::default()
        },
    )
    .await
    .unwrap_err();
    assert!(is_validation(&err, "parameter_values"), "{err:?}");
    let mut changed = full_values();
    changed.insert("topic".to_owned(), json!("mortgages"));
    let updated = scenario_repo::update(
        db,
        ua,
        created.id,
        ScenarioPatch {
            parameter_values: Some(changed.clone()),
            status: Some(ScenarioStatus::Active),
            topic: Some("mortgages".to_owned()),
            ..ScenarioPatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.parameter_values, Json::Object(changed));
    assert_eq!(updated.status, ScenarioStatus::Active);
    assert_eq!(updated.topic, "mortgages");
    assert_eq!(
        scenario_repo::get(db, ua, created.id).await.unwrap(),
        updated
    );

    // A scenario fills only its owner's own template (even an active one of B's is not).
    let theirs = template(db, b, "Theirs").await;
    let err = scenario_repo::create(
        db,
        ua,
        NewScenario::new("S", theirs.id, full_values(), "t", "p", "e"),
    )
    .await
    .unwrap_err();
    assert!(is_not_found(&err, "template"), "{err:?}");
    // Only the service scores.
    let err = scenario_repo::set_quality_score(db, ua, created.id, Some(8.0))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    let scored = scenario_repo::set_quality_score(db, Actor::Service, created.id, Some(8.0))
        .await
        .unwrap();
    assert_eq!(scored.quality_score, Some(8.0));

    scenario_repo::delete(db, ua, created.id).await.unwrap();
    let err = scenario_repo::get(db, ua, created.id).await.unwrap_err();
    assert!(is_not_found(&err, "scenario"), "{err:?}");
}

async fn edge_cases_crud(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let ua = Actor::User(a);
    let tpl = template(db, a, "Mine").await;
    let sc = scenario(db, a, tpl.id).await;
    let mut new = NewEdgeCase::new("Angry client", sc.id, "emotion", "stays calm");
    new.complexity = Some(EdgeComplexity::High);
    let created = scenario_repo::create_edge_case(db, ua, new).await.unwrap();
    assert_eq!(created.complexity, EdgeComplexity::High);
    assert_eq!(created.test_status, TestStatus::NotTested);
    assert_eq!(created.created_by, a);
    let updated = scenario_repo::update_edge_case(
        db,
        ua,
        created.id,
        EdgeCasePatch {
            expected_behavior: Some("de-escalates".to_owned()),
            description: Some(Some("a hard one".to_owned())),
            ..EdgeCasePatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.expected_behavior, "de-escalates");
    assert_eq!(updated.description.as_deref(), Some("a hard one"));
    let err = scenario_repo::record_test_result(db, ua, created.id, TestStatus::Passed, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    let tested = scenario_repo::record_test_result(
        db,
        Actor::Service,
        created.id,
        TestStatus::Passed,
        Some(json!({"score": 9})),
    )
    .await
    .unwrap();
    assert_eq!(tested.test_status, TestStatus::Passed);
    assert_eq!(tested.last_test_result, Some(json!({"score": 9})));
    assert_eq!(
        scenario_repo::get_edge_case(db, ua, created.id)
            .await
            .unwrap(),
        tested
    );
    let page = scenario_repo::list_edge_cases(
        db,
        ua,
        scenario_repo::EdgeCaseFilter {
            scenario: Some(sc.id),
            ..Default::default()
        },
        &PageRequest::first(),
    )
    .await
    .unwrap();
    assert_eq!(page.items, vec![tested.clone()]);
    // Deleting the scenario deletes its edge cases.
    scenario_repo::delete(db, ua, sc.id).await.unwrap();
    assert_eq!(
        scenario_repo::find_edge_case(db, ua, created.id)
            .await
            .unwrap(),
        None
    );
}

// ---------------------------------------------------------------------------------------
// Isolation
// ---------------------------------------------------------------------------------------

async fn user_b_sees_nothing_of_user_a(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let b = common::signup(db, "b@example.com").await;
    let (ua, ub) = (Actor::User(a), Actor::User(b));
    let shared = template(db, a, "Shared").await;
    let private = template(db, a, "Private").await;
    template_repo::deactivate(db, ua, private.id).await.unwrap();
    let sc = scenario(db, a, private.id).await;
    let edge =
        scenario_repo::create_edge_case(db, ua, NewEdgeCase::new("Edge", sc.id, "cat", "behaves"))
            .await
            .unwrap();
    let recorded = generation::record_generation(
        db,
        Actor::Service,
        generated(a, GenerationSource::Scenario(sc.id), "conv-a-1"),
    )
    .await
    .unwrap();
    let log = recorded.log.id;

    // Through Forge: NotFound, exactly like a missing row.
    let err = template_repo::get(db, ub, private.id).await.unwrap_err();
    assert!(is_not_found(&err, "template"), "{err:?}");
    for err in [
        scenario_repo::get(db, ub, sc.id).await.unwrap_err(),
        scenario_repo::update(
            db,
            ub,
            sc.id,
            ScenarioPatch {
                name: Some("mine now".to_owned()),
                ..ScenarioPatch::default()
            },
        )
        .await
        .unwrap_err(),
        scenario_repo::delete(db, ub, sc.id).await.unwrap_err(),
    ] {
        assert!(is_not_found(&err, "scenario"), "{err:?}");
    }
    for err in [
        scenario_repo::get_edge_case(db, ub, edge.id)
            .await
            .unwrap_err(),
        scenario_repo::update_edge_case(
            db,
            ub,
            edge.id,
            EdgeCasePatch {
                name: Some("x".to_owned()),
                ..EdgeCasePatch::default()
            },
        )
        .await
        .unwrap_err(),
        scenario_repo::delete_edge_case(db, ub, edge.id)
            .await
            .unwrap_err(),
    ] {
        assert!(is_not_found(&err, "edge_case"), "{err:?}");
    }
    // B cannot hang an edge case under A's scenario either.
    let err = scenario_repo::create_edge_case(db, ub, NewEdgeCase::new("E", sc.id, "c", "b"))
        .await
        .unwrap_err();
    assert!(is_not_found(&err, "scenario"), "{err:?}");
    let err = generation::get_log(db, ub, log).await.unwrap_err();
    assert!(is_not_found(&err, "generation"), "{err:?}");
    assert!(
        generation::list_logs(
            db,
            ub,
            LogFilter {
                user: Some(a),
                ..LogFilter::default()
            },
            &PageRequest::first()
        )
        .await
        .unwrap()
        .items
        .is_empty()
    );
    assert!(
        scenario_repo::list(db, ub, ScenarioFilter::default(), &PageRequest::first())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let totals = generation::cost_totals(
        db,
        ub,
        TimeRange::new(
            Utc::now() - Duration::hours(1),
            Utc::now() + Duration::hours(1),
        ),
    )
    .await
    .unwrap();
    assert!(totals.per_user.is_empty() && totals.per_template.is_empty());
    // A sees everything of theirs.
    assert_eq!(
        generation::get_log(db, ua, log).await.unwrap(),
        recorded.log
    );
    assert_eq!(
        scenario_repo::get_edge_case(db, ua, edge.id).await.unwrap(),
        edge
    );

    // Nothing changed by B's attempts.
    assert_eq!(
        scenario_repo::get(db, ua, sc.id).await.unwrap(),
        recorded.scenario.clone().unwrap()
    );

    // On PostgreSQL, row-level security alone hides A's rows from B (no Forge filter).
    if t.backend() == DbBackend::Postgres {
        let tpls = unfiltered::<templates::Entity>(db, ub).await;
        assert_eq!(
            tpls.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![shared.id],
            "only A's active template"
        );
        assert!(unfiltered::<scenarios::Entity>(db, ub).await.is_empty());
        assert!(unfiltered::<edge_cases::Entity>(db, ub).await.is_empty());
        assert!(
            unfiltered::<generation_logs::Entity>(db, ub)
                .await
                .is_empty()
        );
        assert_eq!(unfiltered::<scenarios::Entity>(db, ua).await.len(), 1);
        assert_eq!(unfiltered::<generation_logs::Entity>(db, ua).await.len(), 1);
    }
}

// ---------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------

async fn generation_records_everything(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let tpl = template(db, a, "Mine").await;
    let sc = scenario(db, a, tpl.id).await;

    // Users do not record generations.
    let err = generation::record_generation(
        db,
        Actor::User(a),
        generated(a, GenerationSource::Scenario(sc.id), "conv-x"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");

    let rec = generation::record_generation(
        db,
        Actor::Service,
        generated(a, GenerationSource::Scenario(sc.id), "conv-1"),
    )
    .await
    .unwrap();
    let conv = rec.conversation.clone().expect("a conversation");
    assert_eq!(conv.conversation.created_by, a);
    assert_eq!(conv.conversation.total_turns, 2);
    assert_eq!(conv.conversation.total_tokens, 16);
    assert_eq!(conv.conversation.template_id, Some(tpl.id));
    assert_eq!(conv.conversation.parent_id, Some(sc.id.into_uuid()));
    assert_eq!(conv.conversation.parent_type.as_deref(), Some("scenario"));
    assert_eq!(conv.turns.len(), 2);
    let log = &rec.log;
    assert_eq!(log.user_id, a);
    assert_eq!(log.conversation_id, Some(conv.conversation.id));
    assert_eq!(log.template_id, Some(tpl.id));
    assert_eq!(log.run_id.as_deref(), Some("run-20261130-abcdefgh"));
    assert_eq!(
        log.parameters,
        Json::Object(full_values()),
        "the scenario's values"
    );
    assert_eq!(
        (log.input_tokens, log.output_tokens, log.duration_ms),
        (100, 250, 1800)
    );
    assert_eq!(
        log.cost_usd,
        forge_db::sea_orm::prelude::Decimal::new(125, 4),
        "the cost as numeric(12,6) keeps it"
    );
    assert_eq!(log.error_message, None);
    let scenario_now = rec.scenario.clone().unwrap();
    assert_eq!(scenario_now.generation_status, GenerationStatus::Generated);
    assert_eq!(scenario_now.conversation_id, Some(conv.conversation.id));
    assert_eq!(rec.template.usage_count, 1);
    assert_eq!(
        template_repo::get(db, Actor::User(a), tpl.id)
            .await
            .unwrap()
            .usage_count,
        1
    );
    assert_eq!(rec.template.version, tpl.version, "a use is no new version");
    // The user reads their conversation and log.
    let mine = forge_db::service::conversations::get(db, Actor::User(a), conv.conversation.id)
        .await
        .unwrap();
    assert_eq!(mine, conv.conversation);
    let logs = generation::list_logs(
        db,
        Actor::User(a),
        LogFilter::default(),
        &PageRequest::first(),
    )
    .await
    .unwrap();
    assert_eq!(logs.items, vec![log.clone()]);

    // Directly from a template (anyone's active one), with explicit parameters.
    let b = common::signup(db, "b@example.com").await;
    let mut from_template = generated(b, GenerationSource::Template(tpl.id), "conv-2");
    from_template.parameters = json!({"persona": "p"});
    let rec = generation::record_generation(db, Actor::Service, from_template)
        .await
        .unwrap();
    assert_eq!(rec.scenario, None);
    assert_eq!(rec.log.parameters, json!({"persona": "p"}));
    assert_eq!(rec.template.usage_count, 2);
    let conv = rec.conversation.unwrap().conversation;
    assert_eq!(conv.created_by, b);
    assert_eq!(conv.parent_type.as_deref(), Some("template"));
    assert_eq!(conv.parent_id, Some(tpl.id.into_uuid()));
    // B may not generate from A's scenario.
    let err = generation::record_generation(
        db,
        Actor::Service,
        generated(b, GenerationSource::Scenario(sc.id), "conv-3"),
    )
    .await
    .unwrap_err();
    assert!(is_not_found(&err, "scenario"), "{err:?}");
}

async fn failed_generation_records_the_error(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let tpl = template(db, a, "Mine").await;
    let sc = scenario(db, a, tpl.id).await;
    let conversations_before = count_conversations(db).await;
    let mut failed = NewGeneration::new(
        a,
        GenerationSource::Scenario(sc.id),
        GenerationOutcome::Failed("  model timed out  ".to_owned()),
    );
    failed.input_tokens = 100;
    failed.cost_usd = 0.001;
    failed.duration_ms = 30_000;
    let rec = generation::record_generation(db, Actor::Service, failed)
        .await
        .unwrap();
    assert_eq!(rec.conversation, None);
    assert_eq!(rec.log.conversation_id, None);
    assert_eq!(rec.log.error_message.as_deref(), Some("model timed out"));
    let scenario_now = rec.scenario.unwrap();
    assert_eq!(scenario_now.generation_status, GenerationStatus::Error);
    assert_eq!(
        scenario_now.error_message.as_deref(),
        Some("model timed out")
    );
    assert_eq!(scenario_now.conversation_id, None);
    assert_eq!(
        rec.template.usage_count, 0,
        "a failed call produced nothing"
    );
    assert_eq!(count_conversations(db).await, conversations_before);

    // A later success clears the error.
    let rec = generation::record_generation(
        db,
        Actor::Service,
        generated(a, GenerationSource::Scenario(sc.id), "conv-ok"),
    )
    .await
    .unwrap();
    let scenario_now = rec.scenario.unwrap();
    assert_eq!(scenario_now.generation_status, GenerationStatus::Generated);
    assert_eq!(scenario_now.error_message, None);

    // Bad input is refused before anything is written.
    let before = count_logs(db).await;
    for (field, new) in [
        (
            "error_message",
            NewGeneration::new(
                a,
                GenerationSource::Template(tpl.id),
                GenerationOutcome::Failed("  ".to_owned()),
            ),
        ),
        (
            "cost_usd",
            NewGeneration {
                cost_usd: -1.0,
                ..generated(a, GenerationSource::Template(tpl.id), "c-1")
            },
        ),
        (
            "cost_usd",
            NewGeneration {
                cost_usd: f64::NAN,
                ..generated(a, GenerationSource::Template(tpl.id), "c-2")
            },
        ),
        (
            "input_tokens",
            NewGeneration {
                input_tokens: -1,
                ..generated(a, GenerationSource::Template(tpl.id), "c-3")
            },
        ),
        (
            "parameters",
            NewGeneration {
                parameters: json!([1]),
                ..generated(a, GenerationSource::Template(tpl.id), "c-4")
            },
        ),
        (
            "request_payload",
            NewGeneration {
                request_payload: Some(json!({"k": "a\u{0}b"})),
                ..generated(a, GenerationSource::Template(tpl.id), "c-5")
            },
        ),
    ] {
        let err = generation::record_generation(db, Actor::Service, new)
            .await
            .unwrap_err();
        assert!(is_validation(&err, field), "{field}: {err:?}");
    }
    assert_eq!(count_logs(db).await, before);
}

async fn generation_is_all_or_nothing(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let tpl = template(db, a, "Mine").await;
    let sc = scenario(db, a, tpl.id).await;
    let first = generation::record_generation(
        db,
        Actor::Service,
        generated(a, GenerationSource::Scenario(sc.id), "conv-taken"),
    )
    .await
    .unwrap();
    let scenario_before = scenario_repo::get(db, Actor::Service, sc.id).await.unwrap();
    let template_before = template_repo::get(db, Actor::Service, tpl.id)
        .await
        .unwrap();
    assert_eq!(template_before.usage_count, 1);
    let logs_before = count_logs(db).await;
    let conversations_before = count_conversations(db).await;

    // The conversation insert fails (its human id is taken) after the usage count moved:
    // everything is rolled back.
    let err = generation::record_generation(
        db,
        Actor::Service,
        generated(a, GenerationSource::Scenario(sc.id), "conv-taken"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ForgeError::Conflict { .. }), "{err:?}");
    assert_eq!(count_logs(db).await, logs_before, "no log row");
    assert_eq!(count_conversations(db).await, conversations_before);
    assert_eq!(
        template_repo::get(db, Actor::Service, tpl.id)
            .await
            .unwrap(),
        template_before,
        "no usage_count bump"
    );
    assert_eq!(
        scenario_repo::get(db, Actor::Service, sc.id).await.unwrap(),
        scenario_before,
        "scenario unchanged"
    );
    assert_eq!(
        scenario_before.conversation_id,
        first.conversation.map(|c| c.conversation.id)
    );

    // The same inside a caller's transaction: the refused call leaves it usable.
    use forge_db::sea_orm::TransactionTrait;
    let txn = db.begin().await.unwrap();
    let err = generation::record_generation(
        &txn,
        Actor::Service,
        generated(a, GenerationSource::Scenario(sc.id), "conv-taken"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ForgeError::Conflict { .. }), "{err:?}");
    let ok = generation::record_generation(
        &txn,
        Actor::Service,
        generated(a, GenerationSource::Scenario(sc.id), "conv-fresh"),
    )
    .await
    .unwrap();
    assert_eq!(ok.template.usage_count, 2);
    txn.commit().await.unwrap();
    assert_eq!(count_logs(db).await, logs_before + 1);
    assert_eq!(
        template_repo::get(db, Actor::Service, tpl.id)
            .await
            .unwrap()
            .usage_count,
        2
    );
}

async fn cost_totals_per_user_and_template(t: &TestDb) {
    let db = &t.db;
    let a = common::signup(db, "a@example.com").await;
    let b = common::signup(db, "b@example.com").await;
    let t1 = template(db, a, "One").await;
    let t2 = template(db, b, "Two").await;
    let start = Utc::now() - Duration::seconds(1);
    let mut n = 0;
    let mut record =
        |user: ProfileId, tpl: TemplateId, cost: f64, input: i32, output: i32, ok: bool| {
            n += 1;
            let outcome = if ok {
                GenerationOutcome::Generated(Box::new(conversation(&format!("conv-{n}"))))
            } else {
                GenerationOutcome::Failed("rate limited".to_owned())
            };
            NewGeneration {
                cost_usd: cost,
                input_tokens: input,
                output_tokens: output,
                ..NewGeneration::new(user, GenerationSource::Template(tpl), outcome)
            }
        };
    let calls = [
        record(a, t1.id, 0.5, 10, 20, true),
        record(a, t1.id, 0.25, 5, 0, false),
        record(a, t2.id, 1.0, 100, 200, true),
        record(b, t2.id, 2.0, 1000, 2000, true),
    ];
    for call in calls {
        generation::record_generation(db, Actor::Service, call)
            .await
            .unwrap();
    }
    let range = TimeRange::new(start, Utc::now() + Duration::seconds(1));

    let all = generation::cost_totals(db, Actor::Service, range)
        .await
        .unwrap();
    let user = |id: ProfileId| {
        all.per_user
            .iter()
            .find(|u| u.user_id == id)
            .map(|u| u.totals)
            .expect("a user row")
    };
    assert_eq!(all.per_user.len(), 2);
    let ta = user(a);
    assert_eq!((ta.count, ta.input_tokens, ta.output_tokens), (3, 115, 220));
    assert!((ta.cost_usd - 1.75).abs() < 1e-9, "{}", ta.cost_usd);
    let tb = user(b);
    assert_eq!(
        (tb.count, tb.input_tokens, tb.output_tokens),
        (1, 1000, 2000)
    );
    assert!((tb.cost_usd - 2.0).abs() < 1e-9);
    let template_totals = |totals: &generation::CostTotals, id: TemplateId| {
        totals
            .per_template
            .iter()
            .find(|t| t.template_id == Some(id))
            .map(|t| t.totals)
    };
    let t1_all = template_totals(&all, t1.id).unwrap();
    assert_eq!((t1_all.count, t1_all.input_tokens), (2, 15));
    assert!((t1_all.cost_usd - 0.75).abs() < 1e-9);
    let t2_all = template_totals(&all, t2.id).unwrap();
    assert_eq!((t2_all.count, t2_all.output_tokens), (2, 2200));
    assert!((t2_all.cost_usd - 3.0).abs() < 1e-9);

    // A user gets their own only: one user row, their use of each template.
    let mine = generation::cost_totals(db, Actor::User(a), range)
        .await
        .unwrap();
    assert_eq!(mine.per_user.len(), 1);
    assert_eq!(mine.per_user[0].user_id, a);
    assert_eq!(mine.per_user[0].totals, ta);
    let t2_mine = template_totals(&mine, t2.id).unwrap();
    assert_eq!((t2_mine.count, t2_mine.input_tokens), (1, 100));
    assert!((t2_mine.cost_usd - 1.0).abs() < 1e-9);

    // Outside the range: nothing.
    let before = TimeRange::new(start - Duration::days(2), start - Duration::days(1));
    let none = generation::cost_totals(db, Actor::Service, before)
        .await
        .unwrap();
    assert!(none.per_user.is_empty() && none.per_template.is_empty());
    let err = generation::cost_totals(db, Actor::Service, TimeRange::new(range.to, range.from))
        .await
        .unwrap_err();
    assert!(is_validation(&err, "range"), "{err:?}");
}
