//! Scenarios and their edge cases (SCHEMA.md "scenarios", "edge_cases"; seed 003's
//! `/api/scenarios` and `/api/edge-cases`).
//!
//! A scenario fills a template's variables (`parameter_values`, a JSON object) and names
//! the topic, persona and emotional arc of the conversation to generate from it; its
//! edge cases describe the unusual situations to test it with.
//!
//! Invariants:
//! - `parameter_values` gives a non-null value for every variable of the scenario's
//!   template and names nothing else (checked on create and on every change of the
//!   values); the template must be the scenario owner's own (a user copies someone
//!   else's shared template to build scenarios on it).
//! - `generation_status`, `conversation_id`, `error_message` and `quality_score` of a
//!   scenario, and `test_status` and `last_test_result` of an edge case, are the
//!   service's: [`crate::generation::record_generation`] sets the first three,
//!   [`set_quality_score`] and [`record_test_result`] the others.
//!
//! Isolation: a user sees, changes and deletes only their own scenarios and edge cases;
//! anyone else's is [`ForgeError::NotFound`], exactly like a missing one (on PostgreSQL
//! the row-level security policies hide it too). An edge case belongs to its creator, who
//! must own its scenario.

use forge_entity::edge_cases::{self, EdgeComplexity, TestStatus};
use forge_entity::ids::{EdgeCaseId, ProfileId, ScenarioId, TemplateId};
use forge_entity::scenarios::{self, GenerationStatus, ScenarioStatus};
use forge_entity::templates;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, ModelTrait, QueryFilter, Select, Set,
};
use serde_json::{Map, Value as Json};

use crate::actor::{Access, Actor, Connection, owner_of_new, run_as};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::{profiles, templates as template_repo, validate};

const SCENARIO: &str = "scenario";
const EDGE_CASE: &str = "edge_case";
/// Longest scenario or edge case name (SCHEMA.md), in characters.
pub const MAX_NAME: usize = 200;
/// Longest topic, persona, emotional arc and test category, in characters.
const MAX_LABEL: usize = 500;
/// Longest description, context and expected behaviour, in characters.
const MAX_PROSE: usize = 100_000;

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// A scenario to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewScenario {
    /// The owner (`None`: the acting user; the service must name one).
    pub owner: Option<ProfileId>,
    /// Its name; trimmed, not blank, at most 200 characters.
    pub name: String,
    /// What it is about.
    pub description: Option<String>,
    /// Background for the generator.
    pub context: Option<String>,
    /// The template it fills.
    pub parent_template_id: TemplateId,
    /// A value for each of the template's variables, and nothing else.
    pub parameter_values: Map<String, Json>,
    /// The topic.
    pub topic: String,
    /// The persona.
    pub persona: String,
    /// The emotional arc.
    pub emotional_arc: String,
    /// Its status (`None`: `draft`).
    pub status: Option<ScenarioStatus>,
}

impl NewScenario {
    /// A draft scenario `name` of template `parent_template_id` with `parameter_values`;
    /// topic, persona and emotional arc to fill in.
    pub fn new(
        name: impl Into<String>,
        parent_template_id: TemplateId,
        parameter_values: Map<String, Json>,
        topic: impl Into<String>,
        persona: impl Into<String>,
        emotional_arc: impl Into<String>,
    ) -> Self {
        Self {
            owner: None,
            name: name.into(),
            description: None,
            context: None,
            parent_template_id,
            parameter_values,
            topic: topic.into(),
            persona: persona.into(),
            emotional_arc: emotional_arc.into(),
            status: None,
        }
    }
}

/// A change to a scenario. `None` leaves a field as it is; `Some(None)` clears an
/// optional one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScenarioPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New context.
    pub context: Option<Option<String>>,
    /// New values, checked against the template's variables.
    pub parameter_values: Option<Map<String, Json>>,
    /// New topic.
    pub topic: Option<String>,
    /// New persona.
    pub persona: Option<String>,
    /// New emotional arc.
    pub emotional_arc: Option<String>,
    /// New status.
    pub status: Option<ScenarioStatus>,
}

/// Which scenarios [`list`] returns; `None` fields do not filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScenarioFilter {
    /// Only scenarios of this template.
    pub template: Option<TemplateId>,
    /// Only this status.
    pub status: Option<ScenarioStatus>,
    /// Only this generation status.
    pub generation_status: Option<GenerationStatus>,
}

/// Scenarios visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<scenarios::Entity> {
    scoped::owned_by(actor, scenarios::Column::CreatedBy)
}

impl Scoped for scenarios::Entity {
    const NAME: &'static str = SCENARIO;

    fn key() -> Self::Column {
        scenarios::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

/// Checks `values` against a template's `variables`: every variable has a non-null value,
/// nothing else is named, and the object fits in a JSON column.
///
/// # Errors
/// [`ForgeError::Validation`] (`parameter_values`) naming the first unknown key or missing
/// variable, or for a document with a NUL character, nested too deeply or over 64 KiB.
pub fn check_parameter_values(variables: &[String], values: &Map<String, Json>) -> Result<Json> {
    if let Some(unknown) = values.keys().find(|key| !variables.contains(key)) {
        return Err(ForgeError::invalid(
            "parameter_values",
            format!("`{unknown}` is not one of the template's variables"),
        ));
    }
    if let Some(missing) = variables
        .iter()
        .find(|name| values.get(name.as_str()).is_none_or(Json::is_null))
    {
        return Err(ForgeError::invalid(
            "parameter_values",
            format!("no value for variable `{missing}`"),
        ));
    }
    validate::json_document("parameter_values", Json::Object(values.clone()))
}

fn label(field: &'static str, value: &str) -> Result<String> {
    validate::text(field, value, MAX_LABEL)
}

fn prose_patch(
    field: &'static str,
    value: Option<Option<String>>,
) -> Result<Option<Option<String>>> {
    match value {
        Some(Some(v)) => Ok(Some(Some(validate::text(field, &v, MAX_PROSE)?))),
        other => Ok(other),
    }
}

/// The profile `owner`, if `actor` may see it, or [`ForgeError::NotFound`].
async fn require_profile(txn: &DatabaseTransaction, actor: Actor, owner: ProfileId) -> Result<()> {
    profiles::visible_to(actor)
        .filter(forge_entity::profiles::Column::Id.eq(owner))
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found("profile", owner))?;
    Ok(())
}

/// Template `id` if `owner` created it (active or not): a scenario fills only its
/// owner's own templates (SCHEMA.md; the row-level security policy holds the same rule).
async fn template_for(
    txn: &DatabaseTransaction,
    owner: ProfileId,
    id: TemplateId,
) -> Result<templates::Model> {
    template_repo::writable_by(Actor::User(owner))
        .filter(templates::Column::Id.eq(id))
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found("template", id))
}

/// Creates a scenario (generation status `not_generated`) of a template for its owner.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long field or `parameter_values` that
/// do not match the template's variables; [`ForgeError::NotFound`] when a user creates
/// for someone else or the owner does not exist (`"profile"`)
/// or the template is not the owner's own (`"template"`).
#[tracing::instrument(skip_all, fields(entity = SCENARIO, op = "create"))]
pub async fn create<C>(db: &C, actor: Actor, new: NewScenario) -> Result<scenarios::Model>
where
    C: Connection,
{
    let owner = owner_of_new(actor, new.owner)?;
    let now = crate::now();
    let template_id = new.parent_template_id;
    let values = new.parameter_values;
    let mut row = scenarios::ActiveModel {
        id: Set(ScenarioId::new()),
        name: Set(validate::text("name", &new.name, MAX_NAME)?),
        description: Set(validate::optional_text(
            "description",
            new.description.as_deref(),
            MAX_PROSE,
        )?),
        context: Set(validate::optional_text(
            "context",
            new.context.as_deref(),
            MAX_PROSE,
        )?),
        parent_template_id: Set(template_id),
        topic: Set(label("topic", &new.topic)?),
        persona: Set(label("persona", &new.persona)?),
        emotional_arc: Set(label("emotional_arc", &new.emotional_arc)?),
        created_by: Set(owner),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    if let Some(status) = new.status {
        row.status = Set(status);
    }
    // Shape and size first, before anything is read.
    validate::json_document("parameter_values", Json::Object(values.clone()))?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            require_profile(txn, actor, owner).await?;
            let template = template_for(txn, owner, template_id).await?;
            row.parameter_values = Set(check_parameter_values(&template.variables.0, &values)?);
            let id = row.insert(txn).await?.id;
            scenario_row(txn, actor, id).await
        })
    })
    .await
}

/// Scenario `id` as `actor` sees it, or [`ForgeError::NotFound`].
pub(crate) async fn scenario_row(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: ScenarioId,
) -> Result<scenarios::Model> {
    visible_to(actor)
        .filter(scenarios::Column::Id.eq(id))
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found(SCENARIO, id))
}

/// Scenario `id` as `actor` sees it, locked until the transaction ends.
pub(crate) async fn lock_scenario(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: ScenarioId,
) -> Result<scenarios::Model> {
    scoped::lock::<scenarios::Entity, _>(txn, actor, id).await
}

/// Scenario `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = SCENARIO, op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: ScenarioId) -> Result<Option<scenarios::Model>>
where
    C: Connection,
{
    scoped::find::<scenarios::Entity, C>(db, actor, id).await
}

/// Scenario `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: ScenarioId) -> Result<scenarios::Model>
where
    C: Connection,
{
    scoped::get::<scenarios::Entity, C, _>(db, actor, id).await
}

/// One page of `actor`'s scenarios (all for the service), newest first.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE` or a bad cursor.
#[tracing::instrument(skip_all, fields(entity = SCENARIO, op = "list"))]
pub async fn list<C>(
    db: &C,
    actor: Actor,
    filter: ScenarioFilter,
    request: &PageRequest,
) -> Result<Page<scenarios::Model>>
where
    C: Connection,
{
    let mut select = visible_to(actor);
    if let Some(template) = filter.template {
        select = select.filter(scenarios::Column::ParentTemplateId.eq(template));
    }
    if let Some(status) = filter.status {
        select = select.filter(scenarios::Column::Status.eq(status));
    }
    if let Some(status) = filter.generation_status {
        select = select.filter(scenarios::Column::GenerationStatus.eq(status));
    }
    pagination::fetch_page(
        db,
        actor,
        select,
        (scenarios::Column::CreatedAt, scenarios::Column::Id),
        Direction::NewestFirst,
        request,
        |s| (s.created_at, s.id),
    )
    .await
}

/// Changes scenario `id`; new `parameter_values` are checked against its template's
/// current variables.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long field or values that do not match
/// the template; [`ForgeError::NotFound`] when the scenario is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = SCENARIO, op = "update", id = %id))]
pub async fn update<C>(
    db: &C,
    actor: Actor,
    id: ScenarioId,
    patch: ScenarioPatch,
) -> Result<scenarios::Model>
where
    C: Connection,
{
    let name = validate::optional_text("name", patch.name.as_deref(), MAX_NAME)?;
    let description = prose_patch("description", patch.description)?;
    let context = prose_patch("context", patch.context)?;
    let topic = patch
        .topic
        .as_deref()
        .map(|v| label("topic", v))
        .transpose()?;
    let persona = patch
        .persona
        .as_deref()
        .map(|v| label("persona", v))
        .transpose()?;
    let arc = patch
        .emotional_arc
        .as_deref()
        .map(|v| label("emotional_arc", v))
        .transpose()?;
    let values = patch.parameter_values;
    if let Some(values) = &values {
        validate::json_document("parameter_values", Json::Object(values.clone()))?;
    }
    let status = patch.status;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = lock_scenario(txn, actor, id).await?;
            let checked = match &values {
                Some(values) => {
                    let template =
                        template_for(txn, current.created_by, current.parent_template_id).await?;
                    Some(check_parameter_values(&template.variables.0, values)?)
                }
                None => None,
            };
            let mut row: scenarios::ActiveModel = current.into();
            let mut changed = false;
            macro_rules! put {
                ($value:expr, $column:ident) => {
                    if let Some(v) = $value {
                        row.$column = Set(v);
                        changed = true;
                    }
                };
            }
            put!(name, name);
            put!(description, description);
            put!(context, context);
            put!(checked, parameter_values);
            put!(topic, topic);
            put!(persona, persona);
            put!(arc, emotional_arc);
            put!(status, status);
            if changed {
                row.update(txn).await?;
            }
            scenario_row(txn, actor, id).await
        })
    })
    .await
}

/// Sets a scenario's quality score, 0 to 10 (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a score outside
/// 0..=10; [`ForgeError::NotFound`] for an unknown scenario.
#[tracing::instrument(skip_all, fields(entity = SCENARIO, op = "set_quality_score", id = %id))]
pub async fn set_quality_score<C>(
    db: &C,
    actor: Actor,
    id: ScenarioId,
    score: Option<f64>,
) -> Result<scenarios::Model>
where
    C: Connection,
{
    actor.require_service("scoring a scenario")?;
    if let Some(s) = score
        && !(0.0..=10.0).contains(&s)
    {
        return Err(ForgeError::invalid(
            "quality_score",
            format!("{s} is outside 0..=10"),
        ));
    }
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = lock_scenario(txn, actor, id).await?;
            let mut row: scenarios::ActiveModel = current.into();
            row.quality_score = Set(score);
            row.update(txn).await?;
            scenario_row(txn, actor, id).await
        })
    })
    .await
}

/// Deletes scenario `id` and its edge cases; conversations generated from it stay.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = SCENARIO, op = "delete", id = %id))]
pub async fn delete<C>(db: &C, actor: Actor, id: ScenarioId) -> Result<()>
where
    C: Connection,
{
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = lock_scenario(txn, actor, id).await?;
            current.delete(txn).await?;
            Ok(())
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Edge cases
// ---------------------------------------------------------------------------------------

/// An edge case to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEdgeCase {
    /// The owner (`None`: the acting user; the service must name one); must own the
    /// scenario.
    pub owner: Option<ProfileId>,
    /// Its name; trimmed, not blank, at most 200 characters.
    pub name: String,
    /// What it is about.
    pub description: Option<String>,
    /// The scenario it tests.
    pub scenario_id: ScenarioId,
    /// What kind of test it is.
    pub test_category: String,
    /// What should happen.
    pub expected_behavior: String,
    /// How hard it is (`None`: `medium`).
    pub complexity: Option<EdgeComplexity>,
}

impl NewEdgeCase {
    /// An edge case `name` of scenario `scenario_id`.
    pub fn new(
        name: impl Into<String>,
        scenario_id: ScenarioId,
        test_category: impl Into<String>,
        expected_behavior: impl Into<String>,
    ) -> Self {
        Self {
            owner: None,
            name: name.into(),
            description: None,
            scenario_id,
            test_category: test_category.into(),
            expected_behavior: expected_behavior.into(),
            complexity: None,
        }
    }
}

/// A change to an edge case; `None` leaves a field as it is, `Some(None)` clears the
/// description.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EdgeCasePatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New test category.
    pub test_category: Option<String>,
    /// New expected behaviour.
    pub expected_behavior: Option<String>,
    /// New complexity.
    pub complexity: Option<EdgeComplexity>,
}

/// Which edge cases [`list_edge_cases`] returns; `None` fields do not filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EdgeCaseFilter {
    /// Only edge cases of this scenario.
    pub scenario: Option<ScenarioId>,
    /// Only this test status.
    pub test_status: Option<TestStatus>,
    /// Only this complexity.
    pub complexity: Option<EdgeComplexity>,
}

/// Edge cases visible to `actor`: their own, or all for the service.
pub fn edge_cases_visible_to(actor: Actor) -> Select<edge_cases::Entity> {
    scoped::owned_by(actor, edge_cases::Column::CreatedBy)
}

impl Scoped for edge_cases::Entity {
    const NAME: &'static str = EDGE_CASE;

    fn key() -> Self::Column {
        edge_cases::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        edge_cases_visible_to(actor)
    }
}

async fn edge_case_row(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: EdgeCaseId,
) -> Result<edge_cases::Model> {
    edge_cases_visible_to(actor)
        .filter(edge_cases::Column::Id.eq(id))
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found(EDGE_CASE, id))
}

async fn lock_edge_case(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: EdgeCaseId,
) -> Result<edge_cases::Model> {
    scoped::lock::<edge_cases::Entity, _>(txn, actor, id).await
}

/// Creates an edge case (`not_tested`) of one of the owner's scenarios.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long field; [`ForgeError::NotFound`]
/// when the scenario is not the owner's (`"scenario"`) or the owner does not exist or is
/// someone else than the user (`"profile"`).
#[tracing::instrument(skip_all, fields(entity = EDGE_CASE, op = "create"))]
pub async fn create_edge_case<C>(
    db: &C,
    actor: Actor,
    new: NewEdgeCase,
) -> Result<edge_cases::Model>
where
    C: Connection,
{
    let owner = owner_of_new(actor, new.owner)?;
    let now = crate::now();
    let scenario_id = new.scenario_id;
    let mut row = edge_cases::ActiveModel {
        id: Set(EdgeCaseId::new()),
        name: Set(validate::text("name", &new.name, MAX_NAME)?),
        description: Set(validate::optional_text(
            "description",
            new.description.as_deref(),
            MAX_PROSE,
        )?),
        scenario_id: Set(scenario_id),
        test_category: Set(label("test_category", &new.test_category)?),
        expected_behavior: Set(validate::text(
            "expected_behavior",
            &new.expected_behavior,
            MAX_PROSE,
        )?),
        created_by: Set(owner),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    if let Some(complexity) = new.complexity {
        row.complexity = Set(complexity);
    }
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            require_profile(txn, actor, owner).await?;
            // The scenario must be the owner's own.
            scenario_row(txn, Actor::User(owner), scenario_id).await?;
            let id = row.insert(txn).await?.id;
            edge_case_row(txn, actor, id).await
        })
    })
    .await
}

/// Edge case `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = EDGE_CASE, op = "find", id = %id))]
pub async fn find_edge_case<C>(
    db: &C,
    actor: Actor,
    id: EdgeCaseId,
) -> Result<Option<edge_cases::Model>>
where
    C: Connection,
{
    scoped::find::<edge_cases::Entity, C>(db, actor, id).await
}

/// Edge case `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get_edge_case<C>(db: &C, actor: Actor, id: EdgeCaseId) -> Result<edge_cases::Model>
where
    C: Connection,
{
    scoped::get::<edge_cases::Entity, C, _>(db, actor, id).await
}

/// One page of `actor`'s edge cases (all for the service), newest first.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE` or a bad cursor.
#[tracing::instrument(skip_all, fields(entity = EDGE_CASE, op = "list"))]
pub async fn list_edge_cases<C>(
    db: &C,
    actor: Actor,
    filter: EdgeCaseFilter,
    request: &PageRequest,
) -> Result<Page<edge_cases::Model>>
where
    C: Connection,
{
    let mut select = edge_cases_visible_to(actor);
    if let Some(scenario) = filter.scenario {
        select = select.filter(edge_cases::Column::ScenarioId.eq(scenario));
    }
    if let Some(status) = filter.test_status {
        select = select.filter(edge_cases::Column::TestStatus.eq(status));
    }
    if let Some(complexity) = filter.complexity {
        select = select.filter(edge_cases::Column::Complexity.eq(complexity));
    }
    pagination::fetch_page(
        db,
        actor,
        select,
        (edge_cases::Column::CreatedAt, edge_cases::Column::Id),
        Direction::NewestFirst,
        request,
        |e| (e.created_at, e.id),
    )
    .await
}

/// Changes edge case `id`.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long field; [`ForgeError::NotFound`]
/// when it is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = EDGE_CASE, op = "update", id = %id))]
pub async fn update_edge_case<C>(
    db: &C,
    actor: Actor,
    id: EdgeCaseId,
    patch: EdgeCasePatch,
) -> Result<edge_cases::Model>
where
    C: Connection,
{
    let name = validate::optional_text("name", patch.name.as_deref(), MAX_NAME)?;
    let description = prose_patch("description", patch.description)?;
    let category = patch
        .test_category
        .as_deref()
        .map(|v| label("test_category", v))
        .transpose()?;
    let expected = validate::optional_text(
        "expected_behavior",
        patch.expected_behavior.as_deref(),
        MAX_PROSE,
    )?;
    let complexity = patch.complexity;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = lock_edge_case(txn, actor, id).await?;
            let mut row: edge_cases::ActiveModel = current.into();
            let mut changed = false;
            macro_rules! put {
                ($value:expr, $column:ident) => {
                    if let Some(v) = $value {
                        row.$column = Set(v);
                        changed = true;
                    }
                };
            }
            put!(name, name);
            put!(description, description);
            put!(category, test_category);
            put!(expected, expected_behavior);
            put!(complexity, complexity);
            if changed {
                row.update(txn).await?;
            }
            edge_case_row(txn, actor, id).await
        })
    })
    .await
}

/// Records the outcome of testing edge case `id` (service only): its `test_status` and
/// `last_test_result` (a JSON document of at most 64 KiB; `None` or JSON `null` store SQL
/// `NULL`).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a result with a
/// NUL character, nested too deeply or over 64 KiB; [`ForgeError::NotFound`] for an
/// unknown edge case.
#[tracing::instrument(skip_all, fields(entity = EDGE_CASE, op = "record_test_result", id = %id))]
pub async fn record_test_result<C>(
    db: &C,
    actor: Actor,
    id: EdgeCaseId,
    status: TestStatus,
    result: Option<Json>,
) -> Result<edge_cases::Model>
where
    C: Connection,
{
    actor.require_service("recording an edge case's test result")?;
    let result = match result {
        None | Some(Json::Null) => None,
        Some(doc) => Some(validate::json_document("last_test_result", doc)?),
    };
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = lock_edge_case(txn, actor, id).await?;
            let mut row: edge_cases::ActiveModel = current.into();
            row.test_status = Set(status);
            row.last_test_result = Set(result);
            row.update(txn).await?;
            edge_case_row(txn, actor, id).await
        })
    })
    .await
}

/// Deletes edge case `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = EDGE_CASE, op = "delete", id = %id))]
pub async fn delete_edge_case<C>(db: &C, actor: Actor, id: EdgeCaseId) -> Result<()>
where
    C: Connection,
{
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = lock_edge_case(txn, actor, id).await?;
            current.delete(txn).await?;
            Ok(())
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_must_match_the_variables() {
        let vars = vec!["persona".to_owned(), "topic".to_owned()];
        let mut values = Map::new();
        values.insert("persona".into(), Json::from("Ada"));
        assert!(check_parameter_values(&vars, &values).is_err(), "missing");
        values.insert("topic".into(), Json::Null);
        assert!(check_parameter_values(&vars, &values).is_err(), "null");
        values.insert("topic".into(), Json::from("tax"));
        assert!(check_parameter_values(&vars, &values).is_ok());
        values.insert("extra".into(), Json::from(1));
        assert!(check_parameter_values(&vars, &values).is_err(), "unknown");
    }
}
