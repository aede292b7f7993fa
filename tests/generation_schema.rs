//! Generation sources and exports (SCHEMA.md, seed 003): `templates`, `scenarios`,
//! `edge_cases`, `generation_logs` and `export_logs`. The contract's columns against a
//! migrated PostgreSQL's `information_schema` (names, types, nullability, defaults, foreign
//! keys with their rules); and the rules the database holds for every writer, on both
//! backends: template versions kept by the database, the CHECKs, `completed_at` of
//! exports, append-only generation logs, `conversations.template_id` → templates, and the
//! upgrade clearing dangling template ids.

mod common;

use common::{TestDb, query_string};
use forge_db::entity::conversations::{self, ConversationTier};
use forge_db::entity::edge_cases::{self, EdgeComplexity};
use forge_db::entity::export_logs::{self, ExportFormat, ExportStatus};
use forge_db::entity::ids::{ProfileId, ScenarioId, TemplateId};
use forge_db::entity::scenarios::{self, GenerationStatus};
use forge_db::entity::templates::{self, StringList};
use forge_db::entity::{generation_logs, profiles};
use forge_db::sea_orm::prelude::Decimal;
use forge_db::sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel, ModelTrait,
    Set, Statement,
};
use forge_db::{Migrator, MigratorTrait};
use serde_json::json;
use uuid::Uuid;

on_both_backends! {
    content_changes_bump_the_version_other_updates_do_not => template_versions;
    checks_refuse_bad_rows => checks_refuse_bad_rows;
    exports_get_completed_at => exports_get_completed_at;
    generation_logs_are_append_only => generation_logs_append_only;
    conversations_template_id_references_templates => conversation_template_id;
    deleting_a_template_cascades_to_scenarios_and_edge_cases => cascades;
    cost_usd_reads_back_as_f64 => cost_usd_round_trip;
}

// ---------------------------------------------------------------------------------------
// Helpers.

async fn profile<C: ConnectionTrait>(db: &C, email: &str) -> profiles::Model {
    profiles::ActiveModel {
        email: Set(email.to_owned()),
        display_name: Set(email.split('@').next().unwrap_or_default().to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert profile")
}

fn template(owner: ProfileId) -> templates::ActiveModel {
    templates::ActiveModel {
        template_name: Set("Financial Planning Triumph".to_owned()),
        category: Set("Financial Planning".to_owned()),
        tier: Set(ConversationTier::Template),
        template_text: Set("Talk to {{persona}} about {{topic}}".to_owned()),
        variables: Set(StringList::from(&["persona", "topic"][..])),
        created_by: Set(owner),
        ..Default::default()
    }
}

fn scenario(owner: ProfileId, template: TemplateId) -> scenarios::ActiveModel {
    scenarios::ActiveModel {
        name: Set("First meeting".to_owned()),
        parent_template_id: Set(template),
        parameter_values: Set(json!({"persona": "a saver"})),
        topic: Set("retirement".to_owned()),
        persona: Set("a saver".to_owned()),
        emotional_arc: Set("worry → calm".to_owned()),
        created_by: Set(owner),
        ..Default::default()
    }
}

fn edge_case(owner: ProfileId, scenario: ScenarioId) -> edge_cases::ActiveModel {
    edge_cases::ActiveModel {
        name: Set("Refuses to share income".to_owned()),
        scenario_id: Set(scenario),
        test_category: Set("missing information".to_owned()),
        expected_behavior: Set("offers ranges".to_owned()),
        created_by: Set(owner),
        ..Default::default()
    }
}

fn log(user: ProfileId) -> generation_logs::ActiveModel {
    generation_logs::ActiveModel {
        user_id: Set(user),
        parameters: Set(json!({"temperature": 0.7})),
        cost_usd: Set(Decimal::new(25, 2)),
        input_tokens: Set(100),
        output_tokens: Set(50),
        duration_ms: Set(1200),
        ..Default::default()
    }
}

fn export(user: ProfileId, export_id: &str) -> export_logs::ActiveModel {
    export_logs::ActiveModel {
        export_id: Set(export_id.to_owned()),
        user_id: Set(user),
        format: Set(ExportFormat::Jsonl),
        scope: Set(json!({"status": ["approved"]})),
        ..Default::default()
    }
}

async fn conversation<C: ConnectionTrait>(
    db: &C,
    owner: ProfileId,
    human_id: &str,
    template_id: Option<TemplateId>,
) -> Result<conversations::Model, DbErr> {
    conversations::ActiveModel {
        conversation_id: Set(human_id.to_owned()),
        created_by: Set(owner),
        tier: Set(ConversationTier::Template),
        persona: Set("a saver".to_owned()),
        emotion: Set("worry".to_owned()),
        topic: Set("retirement".to_owned()),
        intent: Set("plan".to_owned()),
        tone: Set("warm".to_owned()),
        template_id: Set(template_id),
        ..Default::default()
    }
    .insert(db)
    .await
}

fn refused_with<T: std::fmt::Debug>(result: Result<T, DbErr>, needle: &str, what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected a refusal ({needle}), got {v:?}"),
        Err(e) => assert!(e.to_string().contains(needle), "{what}: {e}"),
    }
}

async fn reread_template<C: ConnectionTrait>(db: &C, id: TemplateId) -> templates::Model {
    templates::Entity::find_by_id(id)
        .one(db)
        .await
        .expect("read template")
        .expect("the template exists")
}

// ---------------------------------------------------------------------------------------
// Both backends.

/// `version` +1, `last_modified` and `last_modified_by` on a content change; nothing on a
/// change of `usage_count`, `rating`, `success_rate` or `is_active`; never by hand.
async fn template_versions(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let bob = profile(db, "bob@example.com").await;
    let mut am = template(ada.id);
    am.version = Set(5);
    am.last_modified_by = Set(Some(bob.id));
    let inserted = if t.backend() == DbBackend::Postgres {
        // PostgreSQL makes it version 1 …
        am.insert(db).await.expect("insert template")
    } else {
        // … SQLite, which cannot change the row being inserted, refuses another version.
        refused_with(
            am.clone().insert(db).await,
            "forge:invalid:version",
            "version 5",
        );
        am.version = Set(1);
        am.insert(db).await.expect("insert template")
    };
    let fresh = reread_template(db, inserted.id).await;
    assert_eq!(fresh.version, 1, "a new template is version 1");
    assert_eq!(fresh.last_modified_by, Some(bob.id), "as the writer named");
    let first_modified = fresh.last_modified;

    // Not content: usage_count, rating, success_rate, is_active.
    let mut am = fresh.clone().into_active_model();
    am.usage_count = Set(3);
    am.rating = Set(4.5);
    am.success_rate = Set(Some(0.9));
    am.is_active = Set(false);
    am.update(db).await.expect("service columns");
    let after = reread_template(db, fresh.id).await;
    assert_eq!(
        (after.version, after.usage_count, after.is_active),
        (1, 3, false)
    );
    assert_eq!(after.last_modified, first_modified);
    assert_eq!(after.last_modified_by, Some(bob.id));

    // Writing version or last_modified by hand changes nothing.
    let mut am = after.clone().into_active_model();
    am.version = Set(42);
    am.last_modified = Set(first_modified - chrono::Duration::days(30));
    am.update(db).await.expect("hand-written version");
    let after = reread_template(db, fresh.id).await;
    assert_eq!(after.version, 1);
    assert_eq!(after.last_modified, first_modified);

    // Content: +1 each time, stamped now, by whom the writer named in that update.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut am = after.clone().into_active_model();
    am.template_text = Set("Talk to {{persona}}".to_owned());
    am.variables = Set(StringList::from(&["persona"][..]));
    am.last_modified_by = Set(Some(ada.id));
    am.update(db).await.expect("content change");
    let v2 = reread_template(db, fresh.id).await;
    assert_eq!(v2.version, 2);
    assert!(v2.last_modified > first_modified, "{v2:?}");
    assert_eq!(v2.last_modified_by, Some(ada.id));

    let mut am = v2.clone().into_active_model();
    am.applicable_topics = Set(StringList::from(&["budgeting"][..]));
    am.update(db)
        .await
        .expect("content change without a modifier");
    let v3 = reread_template(db, fresh.id).await;
    assert_eq!(v3.version, 3);
    assert_eq!(
        v3.last_modified_by, None,
        "no acting user and none named: unknown"
    );

    // Deleting the last modifier's profile leaves the template, last_modified_by NULL.
    let mut am = v3.into_active_model();
    am.description = Set(Some("by bob".to_owned()));
    am.last_modified_by = Set(Some(bob.id));
    am.update(db).await.expect("content change by bob");
    bob.delete(db).await.expect("delete bob");
    let v4 = reread_template(db, fresh.id).await;
    assert_eq!((v4.version, v4.last_modified_by), (4, None));
}

/// The CHECKs of the contract.
async fn checks_refuse_bad_rows(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let bad_templates: Vec<(templates::ActiveModel, &str)> = vec![
        (
            templates::ActiveModel {
                template_name: Set("   ".to_owned()),
                ..template(ada.id)
            },
            "templates_template_name_check",
        ),
        (
            templates::ActiveModel {
                template_name: Set("t".repeat(201)),
                ..template(ada.id)
            },
            "templates_template_name_check",
        ),
        (
            templates::ActiveModel {
                complexity_baseline: Set(Some(11)),
                ..template(ada.id)
            },
            "templates_complexity_baseline_check",
        ),
        (
            templates::ActiveModel {
                quality_threshold: Set(Some(10.5)),
                ..template(ada.id)
            },
            "templates_quality_threshold_check",
        ),
        (
            templates::ActiveModel {
                usage_count: Set(-1),
                ..template(ada.id)
            },
            "templates_usage_count_check",
        ),
        (
            templates::ActiveModel {
                rating: Set(5.5),
                ..template(ada.id)
            },
            "templates_rating_check",
        ),
        (
            templates::ActiveModel {
                success_rate: Set(Some(1.5)),
                ..template(ada.id)
            },
            "templates_success_rate_check",
        ),
    ];
    for (row, constraint) in bad_templates {
        refused_with(row.insert(db).await, constraint, constraint);
    }
    let good = template(ada.id).insert(db).await.expect("a valid template");

    // JSON lists of strings only (raw SQL: the entity's type cannot say anything else).
    let backend = t.backend();
    let id_literal = |id: Uuid| match backend {
        DbBackend::Sqlite => format!("X'{}'", id.simple()),
        _ => format!("'{id}'"),
    };
    for (value, what) in [("'[1, 2]'", "numbers"), ("'{\"a\": \"b\"}'", "an object")] {
        let sql = format!(
            "UPDATE templates SET variables = {value} WHERE id = {}",
            id_literal(good.id.into_uuid())
        );
        let err = db
            .execute_raw(Statement::from_string(backend, sql))
            .await
            .err()
            .unwrap_or_else(|| panic!("variables of {what} were accepted"));
        assert!(
            err.to_string().contains("variables"),
            "variables of {what}: {err}"
        );
    }
    let sql = format!(
        "UPDATE templates SET tier = 'chapter' WHERE id = {}",
        id_literal(good.id.into_uuid())
    );
    let err = db.execute_raw(Statement::from_string(backend, sql)).await;
    refused_with(err, "templates_tier_check", "tier");

    let bad_scenarios: Vec<(scenarios::ActiveModel, &str)> = vec![
        (
            scenarios::ActiveModel {
                name: Set("s".repeat(201)),
                ..scenario(ada.id, good.id)
            },
            "scenarios_name_check",
        ),
        (
            scenarios::ActiveModel {
                quality_score: Set(Some(11.0)),
                ..scenario(ada.id, good.id)
            },
            "scenarios_quality_score_check",
        ),
    ];
    for (row, constraint) in bad_scenarios {
        refused_with(row.insert(db).await, constraint, constraint);
    }
    let sc = scenario(ada.id, good.id)
        .insert(db)
        .await
        .expect("a valid scenario");
    assert_eq!(sc.generation_status, GenerationStatus::NotGenerated);
    let ec = edge_case(ada.id, sc.id)
        .insert(db)
        .await
        .expect("a valid edge case");
    assert_eq!(ec.complexity, EdgeComplexity::Medium);

    let mut am = log(ada.id);
    am.cost_usd = Set(Decimal::new(-1, 2));
    refused_with(
        am.insert(db).await,
        "generation_logs_cost_usd_check",
        "cost",
    );
    for column in ["input_tokens", "output_tokens", "duration_ms"] {
        let mut am = log(ada.id);
        match column {
            "input_tokens" => am.input_tokens = Set(-1),
            "output_tokens" => am.output_tokens = Set(-1),
            _ => am.duration_ms = Set(-1),
        }
        refused_with(
            am.insert(db).await,
            &format!("generation_logs_{column}_check"),
            column,
        );
    }

    let mut am = export(ada.id, "export-neg");
    am.file_size = Set(-1);
    refused_with(
        am.insert(db).await,
        "export_logs_file_size_check",
        "file_size",
    );
    let mut am = export(ada.id, "export-early");
    am.completed_at = Set(Some(chrono::Utc::now()));
    refused_with(
        am.insert(db).await,
        "export_logs_completed_at_check",
        "completed_at while processing",
    );
    export(ada.id, "export-1").insert(db).await.expect("export");
    refused_with(
        export(ada.id, "export-1").insert(db).await,
        "export_id",
        "duplicate export_id",
    );
}

/// `completed_at` is set on entering completed or failed.
async fn exports_get_completed_at(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let e = export(ada.id, "export-1").insert(db).await.expect("export");
    assert_eq!((e.status, e.completed_at), (ExportStatus::Processing, None));
    let mut am = e.clone().into_active_model();
    am.status = Set(ExportStatus::Completed);
    am.conversation_count = Set(12);
    am.update(db).await.expect("complete");
    let done = export_logs::Entity::find_by_id(e.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert!(done.completed_at.is_some(), "{done:?}");

    let mut am = export(ada.id, "export-2");
    am.status = Set(ExportStatus::Failed);
    am.error_message = Set(Some("disk full".to_owned()));
    let failed = am.insert(db).await.expect("failed export");
    let failed = export_logs::Entity::find_by_id(failed.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert!(failed.completed_at.is_some(), "{failed:?}");
}

/// A generation log never changes; its conversation and template may go away (SET NULL);
/// it is deleted with its user (PostgreSQL refuses any other delete).
async fn generation_logs_append_only(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let tpl = template(ada.id).insert(db).await.unwrap();
    let conv = conversation(db, ada.id, "conv-1", Some(tpl.id))
        .await
        .unwrap();
    let mut am = log(ada.id);
    am.conversation_id = Set(Some(conv.id));
    am.template_id = Set(Some(tpl.id));
    let entry = am.insert(db).await.expect("append a log");

    let mut am = entry.clone().into_active_model();
    am.cost_usd = Set(Decimal::ZERO);
    refused_with(
        am.update(db).await,
        "generation logs never change",
        "update cost",
    );
    if t.backend() == DbBackend::Postgres {
        // (SQLite's trigger cannot tell a foreign key's SET NULL from a writer's.)
        let mut am = entry.clone().into_active_model();
        am.conversation_id = Set(None);
        refused_with(
            am.update(db).await,
            "generation logs never change",
            "clear conversation_id by hand",
        );
    }
    if t.backend() == DbBackend::Postgres {
        refused_with(
            entry.clone().delete(db).await,
            "deleted only with their user",
            "delete a log",
        );
    }

    conv.delete(db).await.expect("delete the conversation");
    tpl.delete(db).await.expect("delete the template");
    let kept = generation_logs::Entity::find_by_id(entry.id)
        .one(db)
        .await
        .unwrap()
        .expect("the log stays");
    assert_eq!((kept.conversation_id, kept.template_id), (None, None));
    assert_eq!(
        (kept.cost_usd, kept.input_tokens),
        (Decimal::new(25, 2), 100)
    );

    ada.delete(db).await.expect("delete the user");
    assert!(
        generation_logs::Entity::find_by_id(entry.id)
            .one(db)
            .await
            .unwrap()
            .is_none()
    );
}

/// `conversations.template_id` names an existing template, and becomes NULL when the
/// template is deleted.
async fn conversation_template_id(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let err = conversation(db, ada.id, "conv-dangling", Some(TemplateId::new())).await;
    assert!(err.is_err(), "a conversation naming no template: {err:?}");
    let tpl = template(ada.id).insert(db).await.unwrap();
    let conv = conversation(db, ada.id, "conv-1", Some(tpl.id))
        .await
        .expect("a conversation of a template");
    let mut am = conv.clone().into_active_model();
    am.template_id = Set(Some(TemplateId::new()));
    assert!(am.update(db).await.is_err(), "pointing it at no template");
    tpl.delete(db).await.expect("delete the template");
    let after = conversations::Entity::find_by_id(conv.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.template_id, None);
}

/// Templates → scenarios → edge cases cascade; a profile takes all of its rows along.
async fn cascades(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let tpl = template(ada.id).insert(db).await.unwrap();
    let sc = scenario(ada.id, tpl.id).insert(db).await.unwrap();
    edge_case(ada.id, sc.id).insert(db).await.unwrap();
    let conv = conversation(db, ada.id, "conv-1", None).await.unwrap();
    let mut am = sc.clone().into_active_model();
    am.conversation_id = Set(Some(conv.id));
    am.generation_status = Set(GenerationStatus::Generated);
    am.update(db).await.unwrap();
    conv.delete(db).await.unwrap();
    let sc2 = scenarios::Entity::find_by_id(sc.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sc2.conversation_id, None);

    tpl.delete(db).await.unwrap();
    assert_eq!(
        (
            scenarios::Entity::find().all(db).await.unwrap().len(),
            edge_cases::Entity::find().all(db).await.unwrap().len()
        ),
        (0, 0)
    );
    let tpl = template(ada.id).insert(db).await.unwrap();
    scenario(ada.id, tpl.id).insert(db).await.unwrap();
    export(ada.id, "export-1").insert(db).await.unwrap();
    ada.delete(db).await.unwrap();
    assert!(templates::Entity::find().all(db).await.unwrap().is_empty());
    assert!(
        export_logs::Entity::find()
            .all(db)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `cost_usd` is numeric(12,6) on PostgreSQL (rounded to 6 places) and a double on SQLite;
/// the entity reads it as a `Decimal` either way, from `RETURNING` and from a select.
async fn cost_usd_round_trip(t: &TestDb) {
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let mut am = log(ada.id);
    am.cost_usd = Set(Decimal::new(123_456_789, 9));
    let returned = am.insert(db).await.expect("insert");
    let read = generation_logs::Entity::find_by_id(returned.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let expected = if t.backend() == DbBackend::Postgres {
        Decimal::new(123_457, 6)
    } else {
        Decimal::new(123_456_789, 9)
    };
    for (what, got) in [("returned", returned.cost_usd), ("read", read.cost_usd)] {
        assert!(
            (got - expected).abs() < Decimal::new(1, 12),
            "{what}: {got} (expected {expected})"
        );
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: the contract's columns, foreign keys, and the upgrade.

/// (table, column, data_type, is_nullable, column_default) as `information_schema` shows
/// them after migrating.
const COLUMNS: &[(&str, &str, &str, &str, Option<&str>)] = &[
    ("templates", "id", "uuid", "NO", Some("gen_random_uuid()")),
    ("templates", "template_name", "text", "NO", None),
    ("templates", "description", "text", "YES", None),
    ("templates", "category", "text", "NO", None),
    ("templates", "tier", "text", "NO", None),
    ("templates", "template_text", "text", "NO", None),
    ("templates", "structure", "text", "YES", None),
    ("templates", "variables", "jsonb", "NO", Some("'[]'::jsonb")),
    ("templates", "tone", "text", "YES", None),
    ("templates", "complexity_baseline", "integer", "YES", None),
    ("templates", "style_notes", "text", "YES", None),
    ("templates", "example_conversation", "text", "YES", None),
    (
        "templates",
        "quality_threshold",
        "double precision",
        "YES",
        None,
    ),
    (
        "templates",
        "required_elements",
        "jsonb",
        "NO",
        Some("'[]'::jsonb"),
    ),
    (
        "templates",
        "applicable_personas",
        "jsonb",
        "NO",
        Some("'[]'::jsonb"),
    ),
    (
        "templates",
        "applicable_emotions",
        "jsonb",
        "NO",
        Some("'[]'::jsonb"),
    ),
    (
        "templates",
        "applicable_topics",
        "jsonb",
        "NO",
        Some("'[]'::jsonb"),
    ),
    ("templates", "usage_count", "integer", "NO", Some("0")),
    ("templates", "rating", "double precision", "NO", Some("0")),
    ("templates", "success_rate", "double precision", "YES", None),
    ("templates", "version", "integer", "NO", Some("1")),
    ("templates", "is_active", "boolean", "NO", Some("true")),
    ("templates", "created_by", "uuid", "NO", None),
    ("templates", "last_modified_by", "uuid", "YES", None),
    (
        "templates",
        "last_modified",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    (
        "templates",
        "created_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    (
        "templates",
        "updated_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    ("scenarios", "id", "uuid", "NO", Some("gen_random_uuid()")),
    ("scenarios", "name", "text", "NO", None),
    ("scenarios", "description", "text", "YES", None),
    ("scenarios", "context", "text", "YES", None),
    ("scenarios", "parent_template_id", "uuid", "NO", None),
    (
        "scenarios",
        "parameter_values",
        "jsonb",
        "NO",
        Some("'{}'::jsonb"),
    ),
    ("scenarios", "topic", "text", "NO", None),
    ("scenarios", "persona", "text", "NO", None),
    ("scenarios", "emotional_arc", "text", "NO", None),
    (
        "scenarios",
        "generation_status",
        "text",
        "NO",
        Some("'not_generated'::text"),
    ),
    ("scenarios", "conversation_id", "uuid", "YES", None),
    ("scenarios", "error_message", "text", "YES", None),
    ("scenarios", "status", "text", "NO", Some("'draft'::text")),
    (
        "scenarios",
        "quality_score",
        "double precision",
        "YES",
        None,
    ),
    ("scenarios", "created_by", "uuid", "NO", None),
    (
        "scenarios",
        "created_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    (
        "scenarios",
        "updated_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    ("edge_cases", "id", "uuid", "NO", Some("gen_random_uuid()")),
    ("edge_cases", "name", "text", "NO", None),
    ("edge_cases", "description", "text", "YES", None),
    ("edge_cases", "scenario_id", "uuid", "NO", None),
    ("edge_cases", "test_category", "text", "NO", None),
    ("edge_cases", "expected_behavior", "text", "NO", None),
    (
        "edge_cases",
        "complexity",
        "text",
        "NO",
        Some("'medium'::text"),
    ),
    (
        "edge_cases",
        "test_status",
        "text",
        "NO",
        Some("'not_tested'::text"),
    ),
    ("edge_cases", "last_test_result", "jsonb", "YES", None),
    ("edge_cases", "created_by", "uuid", "NO", None),
    (
        "edge_cases",
        "created_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    (
        "edge_cases",
        "updated_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    (
        "generation_logs",
        "id",
        "uuid",
        "NO",
        Some("gen_random_uuid()"),
    ),
    ("generation_logs", "user_id", "uuid", "NO", None),
    ("generation_logs", "conversation_id", "uuid", "YES", None),
    ("generation_logs", "run_id", "text", "YES", None),
    ("generation_logs", "template_id", "uuid", "YES", None),
    ("generation_logs", "request_payload", "jsonb", "YES", None),
    ("generation_logs", "response_payload", "jsonb", "YES", None),
    (
        "generation_logs",
        "parameters",
        "jsonb",
        "NO",
        Some("'{}'::jsonb"),
    ),
    (
        "generation_logs",
        "cost_usd",
        "numeric(12,6)",
        "NO",
        Some("0"),
    ),
    (
        "generation_logs",
        "input_tokens",
        "integer",
        "NO",
        Some("0"),
    ),
    (
        "generation_logs",
        "output_tokens",
        "integer",
        "NO",
        Some("0"),
    ),
    ("generation_logs", "duration_ms", "integer", "NO", Some("0")),
    ("generation_logs", "error_message", "text", "YES", None),
    (
        "generation_logs",
        "created_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    ("export_logs", "id", "uuid", "NO", Some("gen_random_uuid()")),
    ("export_logs", "export_id", "text", "NO", None),
    ("export_logs", "user_id", "uuid", "NO", None),
    ("export_logs", "format", "text", "NO", None),
    ("export_logs", "scope", "jsonb", "NO", Some("'{}'::jsonb")),
    (
        "export_logs",
        "conversation_count",
        "integer",
        "NO",
        Some("0"),
    ),
    ("export_logs", "file_size", "bigint", "NO", Some("0")),
    (
        "export_logs",
        "status",
        "text",
        "NO",
        Some("'processing'::text"),
    ),
    ("export_logs", "error_message", "text", "YES", None),
    (
        "export_logs",
        "created_at",
        "timestamp with time zone",
        "NO",
        Some("now()"),
    ),
    (
        "export_logs",
        "completed_at",
        "timestamp with time zone",
        "YES",
        None,
    ),
];

async fn rows<C: ConnectionTrait>(db: &C, sql: &str) -> Vec<Vec<Option<String>>> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            (0..)
                .map_while(|i| r.try_get_by_index::<Option<String>>(i).ok())
                .collect()
        })
        .collect()
}

const IN_TABLES: &str =
    "('templates', 'scenarios', 'edge_cases', 'generation_logs', 'export_logs')";

#[tokio::test]
async fn the_contracts_columns_are_the_migrated_ones() {
    let t = TestDb::postgres().await;
    let db = &t.owner;
    let found = rows(
        db,
        &format!(
            "SELECT table_name::text, column_name::text,
                    CASE WHEN data_type = 'numeric'
                         THEN 'numeric(' || numeric_precision || ',' || numeric_scale || ')'
                         ELSE data_type::text END,
                    is_nullable::text, column_default::text
             FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name IN {IN_TABLES}
             ORDER BY array_position(ARRAY['templates', 'scenarios', 'edge_cases',
                                           'generation_logs', 'export_logs'], table_name::text),
                      ordinal_position"
        ),
    )
    .await;
    let expected: Vec<Vec<Option<String>>> = COLUMNS
        .iter()
        .map(|(t, c, ty, null, default)| {
            vec![
                Some((*t).to_owned()),
                Some((*c).to_owned()),
                Some((*ty).to_owned()),
                Some((*null).to_owned()),
                default.map(str::to_owned),
            ]
        })
        .collect();
    assert_eq!(found, expected);
    let templates_columns = COLUMNS.iter().filter(|c| c.0 == "templates").count();
    assert_eq!(templates_columns, 27, "seed 003's 27 columns");

    let fks = query_string(
        db,
        "SELECT string_agg(kcu.table_name || '.' || kcu.column_name || ' -> ' || ccu.table_name
                           || '.' || ccu.column_name || ' ' || rc.delete_rule, ', '
                           ORDER BY kcu.table_name, kcu.column_name)
         FROM information_schema.referential_constraints rc
         JOIN information_schema.key_column_usage kcu
           ON kcu.constraint_name = rc.constraint_name AND kcu.constraint_schema = rc.constraint_schema
         JOIN information_schema.constraint_column_usage ccu
           ON ccu.constraint_name = rc.constraint_name AND ccu.constraint_schema = rc.constraint_schema
         WHERE rc.constraint_schema = 'public'
           AND (kcu.table_name IN ('templates', 'scenarios', 'edge_cases', 'generation_logs',
                                   'export_logs')
                OR (kcu.table_name = 'conversations' AND kcu.column_name = 'template_id'))",
    )
    .await;
    assert_eq!(
        fks.as_deref(),
        Some(
            "conversations.template_id -> templates.id SET NULL, \
             edge_cases.created_by -> profiles.id CASCADE, \
             edge_cases.scenario_id -> scenarios.id CASCADE, \
             export_logs.user_id -> profiles.id CASCADE, \
             generation_logs.conversation_id -> conversations.id SET NULL, \
             generation_logs.template_id -> templates.id SET NULL, \
             generation_logs.user_id -> profiles.id CASCADE, \
             scenarios.conversation_id -> conversations.id SET NULL, \
             scenarios.created_by -> profiles.id CASCADE, \
             scenarios.parent_template_id -> templates.id CASCADE, \
             templates.created_by -> profiles.id CASCADE, \
             templates.last_modified_by -> profiles.id SET NULL"
        )
    );

    let indexes = query_string(
        db,
        &format!(
            "SELECT string_agg(indexname || ' ' || substring(indexdef FROM '\\((.*)\\)$'), ', '
                               ORDER BY indexname)
             FROM pg_indexes WHERE schemaname = 'public' AND indexname LIKE 'idx\\_%'
               AND (tablename IN {IN_TABLES} OR indexname = 'idx_conversations_template_id')"
        ),
    )
    .await;
    assert_eq!(
        indexes.as_deref(),
        Some(
            "idx_conversations_template_id template_id, \
             idx_edge_cases_created_by_keyset created_by, created_at DESC, id DESC, \
             idx_edge_cases_scenario_id scenario_id, \
             idx_export_logs_user_id_keyset user_id, created_at DESC, id DESC, \
             idx_generation_logs_conversation_id conversation_id, \
             idx_generation_logs_template_id template_id, \
             idx_generation_logs_user_id user_id, created_at DESC, id DESC, \
             idx_scenarios_conversation_id conversation_id, \
             idx_scenarios_created_by_keyset created_by, created_at DESC, id DESC, \
             idx_scenarios_parent_template_id parent_template_id, \
             idx_templates_category category, \
             idx_templates_created_by_keyset created_by, created_at DESC, id DESC, \
             idx_templates_last_modified_by last_modified_by, \
             idx_templates_tier_is_active tier, is_active"
        )
    );
    let unique = query_string(
        db,
        "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint
         WHERE contype = 'u' AND conrelid = 'public.export_logs'::regclass",
    )
    .await;
    assert_eq!(unique.as_deref(), Some("export_logs_export_id_key"));
    t.finish().await;
}

/// As an end user on PostgreSQL, `last_modified_by` is the acting user, whatever the
/// statement says.
#[tokio::test]
async fn last_modified_by_is_the_acting_user() {
    let t = TestDb::postgres().await;
    let db = &t.owner;
    let ada = profile(db, "ada@example.com").await;
    let tpl = template(ada.id).insert(db).await.unwrap();
    let txn = forge_db::sea_orm::TransactionTrait::begin(db)
        .await
        .unwrap();
    txn.execute_unprepared(&format!(
        "SET LOCAL ROLE authenticated;
         SELECT set_config('request.jwt.claims', '{{\"sub\":\"{}\",\"role\":\"authenticated\"}}', true);
         UPDATE public.templates SET tone = 'brisk' WHERE id = '{}';",
        ada.id, tpl.id
    ))
    .await
    .expect("an own content change");
    txn.commit().await.unwrap();
    let after = reread_template(db, tpl.id).await;
    assert_eq!((after.version, after.last_modified_by), (2, Some(ada.id)));
    t.finish().await;
}

/// The upgrade from migration 8 clears `conversations.template_id` values that name no
/// template (reporting how many on stderr and as a NOTICE), then adds the foreign key.
#[tokio::test]
async fn the_upgrade_clears_dangling_template_ids_on_postgres() {
    let t = TestDb::postgres_empty().await;
    let db = &t.owner;
    Migrator::up(db, Some(8)).await.expect("migrate to 8");
    let ada = profile(db, "ada@example.com").await;
    let dangling = conversation(db, ada.id, "conv-dangling", Some(TemplateId::new()))
        .await
        .expect("no foreign key yet");
    let clean = conversation(db, ada.id, "conv-clean", None).await.unwrap();
    Migrator::up(db, None).await.expect("migrate up");
    for id in [dangling.id, clean.id] {
        let c = conversations::Entity::find_by_id(id)
            .one(db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.template_id, None);
    }
    let fk = query_string(
        db,
        "SELECT conname::text FROM pg_constraint WHERE conname = 'conversations_template_id_fkey'",
    )
    .await;
    assert_eq!(fk.as_deref(), Some("conversations_template_id_fkey"));
    t.finish().await;
}

#[tokio::test]
async fn the_upgrade_clears_dangling_template_ids_on_sqlite() {
    let db = forge_db::connect("sqlite::memory:").await.expect("connect");
    Migrator::up(&db, Some(8)).await.expect("migrate to 8");
    let ada = profile(&db, "ada@example.com").await;
    let dangling = conversation(&db, ada.id, "conv-dangling", Some(TemplateId::new()))
        .await
        .expect("no rule yet");
    Migrator::up(&db, None).await.expect("migrate up");
    let c = conversations::Entity::find_by_id(dangling.id)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.template_id, None);
    // And the rule holds from now on.
    assert!(
        conversation(&db, ada.id, "conv-2", Some(TemplateId::new()))
            .await
            .is_err()
    );
}
