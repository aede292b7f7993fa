//! Recording conversation generation (seed 003's `/api/conversations/generate`; SCHEMA.md
//! "generation_logs"): every model call a generator makes for a user is logged with its
//! tokens, cost and duration, together with what it produced.
//!
//! Invariants:
//! - [`record_generation`] (service only: the generator) is one transaction, all or
//!   nothing. For a successful call it adds 1 to the template's `usage_count` (an SQL
//!   increment, `usage_count = usage_count + 1`, so concurrent generations never lose a
//!   count), creates the conversation with all its turns (through
//!   [`conversations::create`](crate::conversations::create), in a savepoint of this transaction) naming the template
//!   and its source (`template_id`, `parent_id`, `parent_type`), appends the
//!   `generation_logs` entry and, for a scenario, sets its `generation_status` to
//!   `generated` and its `conversation_id`. When any step is refused (a taken
//!   `conversation_id`, a missing template) nothing of it is stored.
//! - A failed model call is recorded too: the log entry carries `error_message` and no
//!   conversation, a scenario's `generation_status` becomes `error` with the same message
//!   (its `conversation_id`, from an earlier success, stays), and `usage_count` does not
//!   move: it counts the conversations a template produced.
//! - Log entries never change (the database refuses updates). A user reads only their own
//!   entries and totals; another user's entry is [`ForgeError::NotFound`].
//! - The source must be the user's: a scenario of theirs, or a template they may see
//!   (active, or their own).

use chrono::{DateTime, Utc};
use forge_entity::conversations;
use forge_entity::generation_logs;
use forge_entity::ids::{ConversationId, GenerationLogId, ProfileId, ScenarioId, TemplateId};
use forge_entity::scenarios::{self, GenerationStatus};
use forge_entity::templates;
use sea_orm::prelude::Decimal;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Select, Set,
};
use serde_json::Value as Json;

use crate::actor::{Access, Actor, Connection, run_as};
use crate::conversations::{self as conversation_repo, ConversationWithTurns, NewConversation};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped::{self, Scoped};
use crate::{profiles, scenarios as scenario_repo, templates as template_repo, validate};

const ENTITY: &str = "generation";
/// Longest run id, in characters.
const MAX_RUN_ID: usize = 200;
/// Longest error message, in characters.
const MAX_ERROR: usize = 10_000;
/// The largest cost `numeric(12,6)` holds, in USD.
pub const MAX_COST_USD: f64 = 999_999.999_999;

/// What a generation was made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerationSource {
    /// A template, directly (active, or the user's own).
    Template(TemplateId),
    /// One of the user's scenarios (its template is the scenario's).
    Scenario(ScenarioId),
}

/// What the model call gave.
#[derive(Clone, Debug, PartialEq)]
pub enum GenerationOutcome {
    /// A conversation, to store with its turns. Its owner is the generation's user
    /// (`owner` must be `None` or that user).
    Generated(Box<NewConversation>),
    /// The call failed with this message (trimmed, not blank, at most 10,000 characters).
    Failed(String),
}

/// One model call to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewGeneration {
    /// Whose generation it is.
    pub user: ProfileId,
    /// What it was made from.
    pub source: GenerationSource,
    /// What it gave.
    pub outcome: GenerationOutcome,
    /// The pipeline or batch run it belongs to (at most 200 characters).
    pub run_id: Option<String>,
    /// The parameters used: a JSON object. `Json::Null`: the scenario's
    /// `parameter_values` for a scenario, `{}` for a template.
    pub parameters: Json,
    /// The request sent to the model (at most 64 KiB).
    pub request_payload: Option<Json>,
    /// The model's response (at most 64 KiB).
    pub response_payload: Option<Json>,
    /// Prompt tokens, at least 0.
    pub input_tokens: i32,
    /// Completion tokens, at least 0.
    pub output_tokens: i32,
    /// What the call cost, in USD: finite, 0 to [`MAX_COST_USD`].
    pub cost_usd: f64,
    /// How long it took, in milliseconds, at least 0.
    pub duration_ms: i32,
}

impl NewGeneration {
    /// A call for `user` from `source` with `outcome`; no run, default parameters, no
    /// payloads, nothing counted.
    pub fn new(user: ProfileId, source: GenerationSource, outcome: GenerationOutcome) -> Self {
        Self {
            user,
            source,
            outcome,
            run_id: None,
            parameters: Json::Null,
            request_payload: None,
            response_payload: None,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            duration_ms: 0,
        }
    }
}

/// What [`record_generation`] stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RecordedGeneration {
    /// The log entry.
    pub log: generation_logs::Model,
    /// The conversation with its turns, for a successful call.
    pub conversation: Option<ConversationWithTurns>,
    /// The scenario as it is now, for a scenario's generation.
    pub scenario: Option<scenarios::Model>,
    /// The template as it is now (`usage_count` counted).
    pub template: templates::Model,
}

/// Which log entries [`list_logs`] returns; `None` fields do not filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only this user's entries (a user always gets their own only).
    pub user: Option<ProfileId>,
    /// Only entries of this template.
    pub template: Option<TemplateId>,
    /// Only entries of this conversation.
    pub conversation: Option<ConversationId>,
}

/// A half-open range of instants, `from` (inclusive) to `to` (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    /// The first instant in the range.
    pub from: DateTime<Utc>,
    /// The first instant after the range.
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// `from..to`.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self { from, to }
    }
}

/// Sums over a group of log entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    /// How many entries (model calls, failed ones included).
    pub count: i64,
    /// Their cost, in USD.
    pub cost_usd: f64,
    /// Their prompt tokens.
    pub input_tokens: i64,
    /// Their completion tokens.
    pub output_tokens: i64,
}

/// One user's totals.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct UserTotals {
    /// The user.
    pub user_id: ProfileId,
    /// Their sums.
    pub totals: Totals,
}

/// One template's totals (`None`: entries whose template is gone or unknown).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct TemplateTotals {
    /// The template.
    pub template_id: Option<TemplateId>,
    /// Its sums.
    pub totals: Totals,
}

/// The costs of a range, per user and per template, read by [`cost_totals`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CostTotals {
    /// The range summed over.
    pub from: DateTime<Utc>,
    /// The end of the range (exclusive).
    pub to: DateTime<Utc>,
    /// Per user, by user id.
    pub per_user: Vec<UserTotals>,
    /// Per template, by template id (unknown template first).
    pub per_template: Vec<TemplateTotals>,
}

/// Log entries visible to `actor`: their own, or all for the service.
pub fn logs_visible_to(actor: Actor) -> Select<generation_logs::Entity> {
    scoped::owned_by(actor, generation_logs::Column::UserId)
}

impl Scoped for generation_logs::Entity {
    const NAME: &'static str = ENTITY;

    fn key() -> Self::Column {
        generation_logs::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        logs_visible_to(actor)
    }
}

fn optional_json(field: &'static str, value: Option<Json>) -> Result<Option<Json>> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(doc) => validate::json_document(field, doc).map(Some),
    }
}

fn non_negative(field: &'static str, value: i32) -> Result<i32> {
    validate::in_range(field, i64::from(value), 0, i64::from(i32::MAX))?;
    Ok(value)
}

/// A cost in USD as the column keeps it: `numeric(12,6)`, rounded to the micro-dollar.
fn cost(value: f64) -> Result<Decimal> {
    if !value.is_finite() || !(0.0..=MAX_COST_USD).contains(&value) {
        return Err(ForgeError::invalid(
            "cost_usd",
            format!("{value} is outside 0..={MAX_COST_USD}"),
        ));
    }
    Decimal::try_from(value)
        .map(|d| d.round_dp(6))
        .map_err(|_| ForgeError::invalid("cost_usd", format!("{value} is not a decimal amount")))
}

/// The checked parts of a [`NewGeneration`].
struct Checked {
    user: ProfileId,
    source: GenerationSource,
    conversation: Option<NewConversation>,
    error: Option<String>,
    run_id: Option<String>,
    parameters: Option<Json>,
    request_payload: Option<Json>,
    response_payload: Option<Json>,
    input_tokens: i32,
    output_tokens: i32,
    cost_usd: Decimal,
    duration_ms: i32,
}

fn check(new: NewGeneration) -> Result<Checked> {
    let (conversation, error) = match new.outcome {
        GenerationOutcome::Generated(conversation) => {
            let mut conversation = *conversation;
            match conversation.owner {
                Some(owner) if owner != new.user => {
                    return Err(ForgeError::invalid(
                        "conversation",
                        "the conversation's owner must be the generation's user",
                    ));
                }
                _ => conversation.owner = Some(new.user),
            }
            (Some(conversation), None)
        }
        GenerationOutcome::Failed(message) => (
            None,
            Some(validate::text("error_message", &message, MAX_ERROR)?),
        ),
    };
    let parameters = match new.parameters {
        Json::Null => None,
        other => Some(validate::json_object("parameters", other)?),
    };
    Ok(Checked {
        user: new.user,
        source: new.source,
        conversation,
        error,
        run_id: validate::optional_text("run_id", new.run_id.as_deref(), MAX_RUN_ID)?,
        parameters,
        request_payload: optional_json("request_payload", new.request_payload)?,
        response_payload: optional_json("response_payload", new.response_payload)?,
        input_tokens: non_negative("input_tokens", new.input_tokens)?,
        output_tokens: non_negative("output_tokens", new.output_tokens)?,
        cost_usd: cost(new.cost_usd)?,
        duration_ms: non_negative("duration_ms", new.duration_ms)?,
    })
}

/// The source's scenario (locked) and template, both the user's to generate from.
async fn resolve_source(
    txn: &DatabaseTransaction,
    user: ProfileId,
    source: GenerationSource,
) -> Result<(Option<scenarios::Model>, templates::Model)> {
    let as_user = Actor::User(user);
    match source {
        GenerationSource::Template(id) => {
            Ok((None, template_repo::visible_row(txn, as_user, id).await?))
        }
        GenerationSource::Scenario(id) => {
            let scenario = scenario_repo::lock_scenario(txn, as_user, id).await?;
            let template =
                template_repo::visible_row(txn, as_user, scenario.parent_template_id).await?;
            Ok((Some(scenario), template))
        }
    }
}

/// Records one model call of a generator (service only), in one transaction: see the
/// module docs. Give the conversation for a successful call
/// ([`GenerationOutcome::Generated`]), the error for a failed one.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`] for a conversation
/// refused as [`conversations::create`](crate::conversations::create) refuses one (or
/// owned by someone else), a blank or over-long error, run id or payload, a non-object
/// `parameters`, negative tokens or duration, or a cost outside 0..=[`MAX_COST_USD`];
/// [`ForgeError::NotFound`] when the user does not exist (`"profile"`), the scenario is
/// not theirs (`"scenario"`) or the template is not visible to them (`"template"`);
/// [`ForgeError::Conflict`] when the conversation's `conversation_id` is taken. A refused
/// call stores nothing.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "record"))]
pub async fn record_generation<C>(
    db: &C,
    actor: Actor,
    new: NewGeneration,
) -> Result<RecordedGeneration>
where
    C: Connection,
{
    actor.require_service("recording a generation")?;
    let checked = check(new)?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move { record(txn, actor, checked).await })
    })
    .await
}

async fn record(
    txn: &DatabaseTransaction,
    actor: Actor,
    new: Checked,
) -> Result<RecordedGeneration> {
    let user = new.user;
    profiles::visible_to(actor)
        .filter(forge_entity::profiles::Column::Id.eq(user))
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found("profile", user))?;
    let (scenario, template) = resolve_source(txn, user, new.source).await?;
    let parameters = match (new.parameters, &scenario) {
        (Some(parameters), _) => parameters,
        (None, Some(scenario)) => scenario.parameter_values.clone(),
        (None, None) => Json::Object(serde_json::Map::new()),
    };

    // The conversation, with its turns, naming its source.
    let conversation = match new.conversation {
        Some(conversation) => {
            // A use of the template: an SQL increment, never a lost update.
            templates::Entity::update_many()
                .col_expr(
                    templates::Column::UsageCount,
                    Expr::col(templates::Column::UsageCount).add(1),
                )
                .filter(templates::Column::Id.eq(template.id))
                .exec(txn)
                .await?;
            let mut created = conversation_repo::create(txn, actor, conversation).await?;
            let (parent_id, parent_type) = match &scenario {
                Some(s) => (s.id.into_uuid(), "scenario"),
                None => (template.id.into_uuid(), "template"),
            };
            let mut row: conversations::ActiveModel = created.conversation.clone().into();
            row.template_id = Set(Some(template.id));
            row.parent_id = Set(Some(parent_id));
            row.parent_type = Set(Some(parent_type.to_owned()));
            created.conversation = row.update(txn).await?;
            Some(created)
        }
        None => None,
    };

    let log_id = GenerationLogId::new();
    let log = generation_logs::ActiveModel {
        id: Set(log_id),
        user_id: Set(user),
        conversation_id: Set(conversation.as_ref().map(|c| c.conversation.id)),
        run_id: Set(new.run_id),
        template_id: Set(Some(template.id)),
        request_payload: Set(new.request_payload),
        response_payload: Set(new.response_payload),
        parameters: Set(parameters),
        cost_usd: Set(new.cost_usd),
        input_tokens: Set(new.input_tokens),
        output_tokens: Set(new.output_tokens),
        duration_ms: Set(new.duration_ms),
        error_message: Set(new.error.clone()),
        created_at: Set(crate::now()),
    };
    // Without `RETURNING`: the entry is read back below (the cost as the database keeps it).
    generation_logs::Entity::insert(log)
        .exec_without_returning(txn)
        .await?;

    let scenario = match scenario {
        Some(current) => {
            let id = current.id;
            let mut row: scenarios::ActiveModel = current.into();
            match &conversation {
                Some(c) => {
                    row.generation_status = Set(GenerationStatus::Generated);
                    row.conversation_id = Set(Some(c.conversation.id));
                    row.error_message = Set(None);
                }
                None => {
                    row.generation_status = Set(GenerationStatus::Error);
                    row.error_message = Set(new.error);
                }
            }
            row.update(txn).await?;
            Some(scenario_repo::scenario_row(txn, actor, id).await?)
        }
        None => None,
    };
    let template = template_repo::visible_row(txn, actor, template.id).await?;
    // Read back: the database may round the cost (numeric(12,6)).
    let log = logs_visible_to(actor)
        .filter(generation_logs::Column::Id.eq(log_id))
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found(ENTITY, log_id))?;
    Ok(RecordedGeneration {
        log,
        conversation,
        scenario,
        template,
    })
}

/// Log entry `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "find", id = %id))]
pub async fn find_log<C>(
    db: &C,
    actor: Actor,
    id: GenerationLogId,
) -> Result<Option<generation_logs::Model>>
where
    C: Connection,
{
    scoped::find::<generation_logs::Entity, C>(db, actor, id).await
}

/// Log entry `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get_log<C>(db: &C, actor: Actor, id: GenerationLogId) -> Result<generation_logs::Model>
where
    C: Connection,
{
    scoped::get::<generation_logs::Entity, C, _>(db, actor, id).await
}

/// One page of the log entries `actor` may see, newest first.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE` or a bad cursor.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "list"))]
pub async fn list_logs<C>(
    db: &C,
    actor: Actor,
    filter: LogFilter,
    request: &PageRequest,
) -> Result<Page<generation_logs::Model>>
where
    C: Connection,
{
    use generation_logs::Column;
    let mut select = logs_visible_to(actor);
    if let Some(user) = filter.user {
        select = select.filter(Column::UserId.eq(user));
    }
    if let Some(template) = filter.template {
        select = select.filter(Column::TemplateId.eq(template));
    }
    if let Some(conversation) = filter.conversation {
        select = select.filter(Column::ConversationId.eq(conversation));
    }
    pagination::fetch_page(
        db,
        actor,
        select,
        (Column::CreatedAt, Column::Id),
        Direction::NewestFirst,
        request,
        |l| (l.created_at, l.id),
    )
    .await
}

/// The aggregate columns of a totals query: count, cost, input and output tokens. The
/// cost is summed as PostgreSQL's `numeric` and read as a double on both backends.
fn with_sums(select: Select<generation_logs::Entity>) -> Select<generation_logs::Entity> {
    select
        .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "n")
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION)"),
            "cost",
        )
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT)"),
            "input",
        )
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT)"),
            "output",
        )
}

/// The cost, token and call totals of the log entries created in `range`, per user and
/// per template. A user gets their own entries only (so one user row, and their use of
/// each template); the service everyone's.
///
/// # Errors
/// [`ForgeError::Validation`] (`range`) when `from` is after `to` or either is outside
/// the years 1..=9999.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "cost_totals"))]
pub async fn cost_totals<C>(db: &C, actor: Actor, range: TimeRange) -> Result<CostTotals>
where
    C: Connection,
{
    use generation_logs::Column;
    let from = validate::storable_instant("range", range.from)?;
    let to = validate::storable_instant("range", range.to)?;
    if from > to {
        return Err(ForgeError::invalid("range", "`from` is after `to`"));
    }
    let in_range = move || {
        logs_visible_to(actor)
            .select_only()
            .filter(Column::CreatedAt.gte(from))
            .filter(Column::CreatedAt.lt(to))
    };
    let per_user = with_sums(in_range().column(Column::UserId))
        .group_by(Column::UserId)
        .order_by_asc(Column::UserId);
    let per_template = with_sums(in_range().column(Column::TemplateId))
        .group_by(Column::TemplateId)
        .order_by_asc(Column::TemplateId);
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            let users: Vec<(ProfileId, i64, f64, i64, i64)> =
                per_user.into_tuple().all(txn).await?;
            let templates: Vec<(Option<TemplateId>, i64, f64, i64, i64)> =
                per_template.into_tuple().all(txn).await?;
            let totals = |count, cost_usd, input_tokens, output_tokens| Totals {
                count,
                cost_usd,
                input_tokens,
                output_tokens,
            };
            Ok(CostTotals {
                from,
                to,
                per_user: users
                    .into_iter()
                    .map(|(user_id, n, c, i, o)| UserTotals {
                        user_id,
                        totals: totals(n, c, i, o),
                    })
                    .collect(),
                per_template: templates
                    .into_iter()
                    .map(|(template_id, n, c, i, o)| TemplateTotals {
                        template_id,
                        totals: totals(n, c, i, o),
                    })
                    .collect(),
            })
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_fit_the_column() {
        assert_eq!(cost(0.0125).ok(), Some(Decimal::new(125, 4)));
        assert!(cost(0.0).is_ok());
        assert!(cost(MAX_COST_USD).is_ok());
        assert!(cost(-0.01).is_err());
        assert!(cost(f64::NAN).is_err());
        assert!(cost(f64::INFINITY).is_err());
        assert!(cost(1e6).is_err());
    }
}
