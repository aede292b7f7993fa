//! Conversation templates (SCHEMA.md "templates", seed 003's `/api/templates`): the
//! prompts conversations are generated from, with `{{name}}` placeholders.
//!
//! Invariants:
//! - `template_text` holds `{{name}}` placeholders (a name is a letter or `_` followed by
//!   letters, digits or `_`; spaces inside the braces are allowed: `{{ name }}`), and the
//!   names it uses are exactly the template's `variables`: every placeholder is a variable
//!   and every variable appears (checked on create and on every content update). Braces
//!   that do not enclose a name (`{"a": 1}`, `{{ two words }}`, `{{}}`) are plain text.
//! - [`render`] fills the placeholders from a JSON object of values, without touching the
//!   database; a value for something that is not a variable, or a variable without a
//!   value, is [`ForgeError::Validation`].
//! - `version` starts at 1 and the database adds 1 (and sets `last_modified` /
//!   `last_modified_by`) on every content change; `usage_count`, `rating` and
//!   `success_rate` are the service's ([`crate::generation`] counts uses).
//!
//! Who sees what: a user sees every *active* template (anyone's: templates are shared)
//! and all of their own; another user's inactive template is [`ForgeError::NotFound`].
//! A user writes (updates, deactivates) only their own templates: another user's active
//! template can be read but not changed ([`ForgeError::NotFound`] for a write). On
//! PostgreSQL the row-level security policies hold the same rules.

use forge_entity::conversations::ConversationTier;
use forge_entity::ids::{ProfileId, TemplateId};
use forge_entity::templates::{self, StringList};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter,
    QuerySelect, Select, Set,
};
use serde_json::{Map, Value as Json};

use crate::actor::{Access, Actor, Connection, owner_of_new, run_as};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped;
use crate::{profiles, validate};

const ENTITY: &str = "template";
/// Longest template name (SCHEMA.md), in characters.
pub const MAX_NAME: usize = 200;
/// Longest category, tone and list entry, in characters.
const MAX_LABEL: usize = 200;
/// Longest template text, in characters.
pub const MAX_TEXT: usize = 100_000;
/// Longest description, structure, style notes and example conversation, in characters.
const MAX_PROSE: usize = 100_000;
/// Longest variable name, in characters.
pub const MAX_VARIABLE: usize = 100;
/// Most variables a template may have, and most entries of each string list.
pub const MAX_LIST: usize = 100;

/// A template to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTemplate {
    /// The owner (`None`: the acting user; the service must name one).
    pub owner: Option<ProfileId>,
    /// Its name; trimmed, not blank, at most 200 characters.
    pub template_name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its category; trimmed, not blank, at most 200 characters.
    pub category: String,
    /// Which tier it generates.
    pub tier: ConversationTier,
    /// The prompt, with `{{name}}` placeholders naming exactly `variables`.
    pub template_text: String,
    /// The conversation's intended structure.
    pub structure: Option<String>,
    /// The placeholder names `template_text` uses (unique).
    pub variables: Vec<String>,
    /// The tone.
    pub tone: Option<String>,
    /// 1 to 10.
    pub complexity_baseline: Option<i32>,
    /// Notes on style.
    pub style_notes: Option<String>,
    /// An example of a conversation it produces.
    pub example_conversation: Option<String>,
    /// 0 to 10.
    pub quality_threshold: Option<f64>,
    /// Elements a generated conversation must contain.
    pub required_elements: Vec<String>,
    /// Personas it suits.
    pub applicable_personas: Vec<String>,
    /// Emotions it suits.
    pub applicable_emotions: Vec<String>,
    /// Topics it suits.
    pub applicable_topics: Vec<String>,
}

impl NewTemplate {
    /// A template named `template_name` in `category` of `tier`, with `template_text` and
    /// its `variables`; everything else empty.
    pub fn new(
        template_name: impl Into<String>,
        category: impl Into<String>,
        tier: ConversationTier,
        template_text: impl Into<String>,
        variables: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            owner: None,
            template_name: template_name.into(),
            description: None,
            category: category.into(),
            tier,
            template_text: template_text.into(),
            structure: None,
            variables: variables.into_iter().map(Into::into).collect(),
            tone: None,
            complexity_baseline: None,
            style_notes: None,
            example_conversation: None,
            quality_threshold: None,
            required_elements: Vec::new(),
            applicable_personas: Vec::new(),
            applicable_emotions: Vec::new(),
            applicable_topics: Vec::new(),
        }
    }
}

/// A change to a template's content. `None` leaves a field as it is; for optional
/// fields `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TemplatePatch {
    /// New name.
    pub template_name: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New category.
    pub category: Option<String>,
    /// New tier.
    pub tier: Option<ConversationTier>,
    /// New text; with or without new `variables`, the two must agree afterwards.
    pub template_text: Option<String>,
    /// New structure.
    pub structure: Option<Option<String>>,
    /// New variables.
    pub variables: Option<Vec<String>>,
    /// New tone.
    pub tone: Option<Option<String>>,
    /// New complexity baseline (1 to 10).
    pub complexity_baseline: Option<Option<i32>>,
    /// New style notes.
    pub style_notes: Option<Option<String>>,
    /// New example conversation.
    pub example_conversation: Option<Option<String>>,
    /// New quality threshold (0 to 10).
    pub quality_threshold: Option<Option<f64>>,
    /// New required elements.
    pub required_elements: Option<Vec<String>>,
    /// New personas.
    pub applicable_personas: Option<Vec<String>>,
    /// New emotions.
    pub applicable_emotions: Option<Vec<String>>,
    /// New topics.
    pub applicable_topics: Option<Vec<String>>,
}

/// Which active templates [`list`] returns; `None` fields do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateFilter {
    /// Only this tier.
    pub tier: Option<ConversationTier>,
    /// Only this category (exact match).
    pub category: Option<String>,
    /// Only templates this profile created.
    pub created_by: Option<ProfileId>,
}

/// Templates visible to `actor`: every active template and their own, or all for the
/// service.
pub fn visible_to(actor: Actor) -> Select<templates::Entity> {
    let select = templates::Entity::find();
    match actor {
        Actor::User(uid) => select.filter(
            Condition::any()
                .add(templates::Column::IsActive.eq(true))
                .add(templates::Column::CreatedBy.eq(uid)),
        ),
        Actor::Service => select,
    }
}

/// Templates `actor` may change: their own, or all for the service.
pub fn writable_by(actor: Actor) -> Select<templates::Entity> {
    scoped::owned_by(actor, templates::Column::CreatedBy)
}

// ---------------------------------------------------------------------------------------
// Placeholders
// ---------------------------------------------------------------------------------------

/// One piece of a template text: literal text or a placeholder's name.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Whether `name` may name a variable: a letter or `_`, then letters, digits or `_`.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits `text` into literal text and `{{name}}` placeholders. `{{` that does not start a
/// placeholder is literal text (and scanning goes on from the next character, so
/// `{{{name}}}` is `{`, the placeholder, `}`).
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut literal_from = 0;
    let mut at = 0;
    while let Some(found) = text[at..].find("{{") {
        let open = at + found;
        let inner_from = open + 2;
        let placeholder = text[inner_from..].find("}}").and_then(|len| {
            let name = text[inner_from..inner_from + len].trim();
            is_variable_name(name).then_some((name, inner_from + len + 2))
        });
        match placeholder {
            Some((name, end)) => {
                if literal_from < open {
                    out.push(Piece::Text(&text[literal_from..open]));
                }
                out.push(Piece::Placeholder(name));
                literal_from = end;
                at = end;
            }
            // `{` is one byte: the next character starts at `open + 1`.
            None => at = open + 1,
        }
    }
    if literal_from < text.len() {
        out.push(Piece::Text(&text[literal_from..]));
    }
    out
}

/// The distinct placeholder names of `text`, in order of first appearance.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for piece in pieces(text) {
        if let Piece::Placeholder(name) = piece
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
    }
    names
}

/// Checks `variables` (valid, unique names) against the placeholders of `text`: each
/// placeholder must be a variable and each variable must appear.
fn check_placeholders(text: &str, variables: &[String]) -> Result<()> {
    let used = placeholders(text);
    if let Some(unknown) = used.iter().find(|name| !variables.contains(name)) {
        return Err(ForgeError::invalid(
            "template_text",
            format!("placeholder {{{{{unknown}}}}} is not one of the template's variables"),
        ));
    }
    if let Some(unused) = variables.iter().find(|name| !used.contains(name)) {
        return Err(ForgeError::invalid(
            "variables",
            format!("variable `{unused}` does not appear in template_text as {{{{{unused}}}}}"),
        ));
    }
    Ok(())
}

/// Variable names checked: each trimmed, a valid name, at most 100 characters, no
/// duplicates, at most 100 of them.
fn variables(names: &[String]) -> Result<Vec<String>> {
    if names.len() > MAX_LIST {
        return Err(ForgeError::invalid(
            "variables",
            format!("{} variables, at most {MAX_LIST} allowed", names.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = validate::text("variables", name, MAX_VARIABLE)?;
        if !is_variable_name(&name) {
            return Err(ForgeError::invalid(
                "variables",
                format!(
                    "`{name}` is not a variable name (a letter or `_`, then letters, digits or `_`)"
                ),
            ));
        }
        if out.contains(&name) {
            return Err(ForgeError::invalid(
                "variables",
                format!("`{name}` is named twice"),
            ));
        }
        out.push(name);
    }
    Ok(out)
}

/// The text a JSON value fills a placeholder with: a string as it is, other scalars as
/// JSON writes them, arrays and objects as compact JSON; `null` is no value.
fn fill(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `text` with every `{{name}}` placeholder replaced by `values[name]`, checked against
/// `variables` (see [`render`]).
///
/// # Errors
/// As [`render`].
pub fn render_text(text: &str, variables: &[String], values: &Map<String, Json>) -> Result<String> {
    if let Some(unknown) = values.keys().find(|key| !variables.contains(key)) {
        return Err(ForgeError::invalid(
            "values",
            format!("`{unknown}` is not one of the template's variables"),
        ));
    }
    if let Some(missing) = variables
        .iter()
        .find(|name| values.get(name.as_str()).and_then(fill).is_none())
    {
        return Err(ForgeError::invalid(
            "values",
            format!("no value for variable `{missing}`"),
        ));
    }
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text) {
        match piece {
            Piece::Text(literal) => out.push_str(literal),
            Piece::Placeholder(name) => {
                let value = values.get(name).and_then(fill).ok_or_else(|| {
                    ForgeError::invalid(
                        "template_text",
                        format!(
                            "placeholder {{{{{name}}}}} is not one of the template's variables"
                        ),
                    )
                })?;
                out.push_str(&value);
            }
        }
    }
    Ok(out)
}

/// The template's text with every `{{name}}` placeholder (each occurrence) replaced by
/// `values[name]`: a JSON string as it is, a number or boolean as JSON writes it, an array
/// or object as compact JSON. Values are inserted as they are, never expanded again.
/// Braces that are not a placeholder stay as they are. Pure: no database.
///
/// # Errors
/// [`ForgeError::Validation`] (`values`) when `values` names something that is not one of
/// the template's variables, or a variable has no value (missing or `null`);
/// (`template_text`) when the text uses a placeholder that is not a variable (a row the
/// repository would not have written).
pub fn render(template: &templates::Model, values: &Map<String, Json>) -> Result<String> {
    render_text(&template.template_text, &template.variables.0, values)
}

// ---------------------------------------------------------------------------------------
// Field checks
// ---------------------------------------------------------------------------------------

/// A list of labels checked: each trimmed, not blank, at most 200 characters, at most 100.
fn string_list(field: &'static str, items: &[String]) -> Result<StringList> {
    if items.len() > MAX_LIST {
        return Err(ForgeError::invalid(
            field,
            format!("{} entries, at most {MAX_LIST} allowed", items.len()),
        ));
    }
    let items = items
        .iter()
        .map(|item| validate::text(field, item, MAX_LABEL))
        .collect::<Result<Vec<_>>>()?;
    validate::json_fits(field, &Json::from(items.clone()))?;
    Ok(StringList(items))
}

fn template_text(text: &str) -> Result<String> {
    validate::no_nul("template_text", text)?;
    if text.trim().is_empty() {
        return Err(ForgeError::invalid("template_text", "must not be blank"));
    }
    let len = text.chars().count();
    if len > MAX_TEXT {
        return Err(ForgeError::invalid(
            "template_text",
            format!("is {len} characters long, at most {MAX_TEXT} allowed"),
        ));
    }
    Ok(text.to_owned())
}

fn complexity(value: Option<i32>) -> Result<Option<i32>> {
    if let Some(v) = value {
        validate::in_range("complexity_baseline", i64::from(v), 1, 10)?;
    }
    Ok(value)
}

fn threshold(value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(v) if !(0.0..=10.0).contains(&v) => Err(ForgeError::invalid(
            "quality_threshold",
            format!("{v} is outside 0..=10"),
        )),
        other => Ok(other),
    }
}

fn prose(field: &'static str, value: Option<&str>) -> Result<Option<String>> {
    validate::optional_text(field, value, MAX_PROSE)
}

/// An optional text patch checked; `Some(None)` and `None` pass through.
fn prose_patch(
    field: &'static str,
    value: Option<Option<String>>,
) -> Result<Option<Option<String>>> {
    match value {
        Some(Some(v)) => Ok(Some(Some(validate::text(field, &v, MAX_PROSE)?))),
        other => Ok(other),
    }
}

// ---------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------

/// Creates a template (active, version 1) for its owner: a user only for themselves.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long field, a NUL character, variables
/// that are not valid distinct names, placeholders of `template_text` that are not
/// exactly the `variables`, a `complexity_baseline` outside 1..=10 or a
/// `quality_threshold` outside 0..=10; [`ForgeError::NotFound`] (`"profile"`) when the
/// owner does not exist or a user creates for someone else.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "create"))]
pub async fn create<C>(db: &C, actor: Actor, new: NewTemplate) -> Result<templates::Model>
where
    C: Connection,
{
    let owner = owner_of_new(actor, new.owner)?;
    let text = template_text(&new.template_text)?;
    let vars = variables(&new.variables)?;
    check_placeholders(&text, &vars)?;
    let now = crate::now();
    let row = templates::ActiveModel {
        id: Set(TemplateId::new()),
        template_name: Set(validate::text(
            "template_name",
            &new.template_name,
            MAX_NAME,
        )?),
        description: Set(prose("description", new.description.as_deref())?),
        category: Set(validate::text("category", &new.category, MAX_LABEL)?),
        tier: Set(new.tier),
        template_text: Set(text),
        structure: Set(prose("structure", new.structure.as_deref())?),
        variables: Set(StringList(vars)),
        tone: Set(validate::optional_text(
            "tone",
            new.tone.as_deref(),
            MAX_LABEL,
        )?),
        complexity_baseline: Set(complexity(new.complexity_baseline)?),
        style_notes: Set(prose("style_notes", new.style_notes.as_deref())?),
        example_conversation: Set(prose(
            "example_conversation",
            new.example_conversation.as_deref(),
        )?),
        quality_threshold: Set(threshold(new.quality_threshold)?),
        required_elements: Set(string_list("required_elements", &new.required_elements)?),
        applicable_personas: Set(string_list(
            "applicable_personas",
            &new.applicable_personas,
        )?),
        applicable_emotions: Set(string_list(
            "applicable_emotions",
            &new.applicable_emotions,
        )?),
        applicable_topics: Set(string_list("applicable_topics", &new.applicable_topics)?),
        created_by: Set(owner),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            profiles::visible_to(actor)
                .filter(forge_entity::profiles::Column::Id.eq(owner))
                .one(txn)
                .await?
                .ok_or_else(|| ForgeError::not_found("profile", owner))?;
            let id = row.insert(txn).await?.id;
            // Read back: the database fills `version`, `last_modified` and the counters.
            visible_row(txn, actor, id).await
        })
    })
    .await
}

/// Template `id` as `actor` sees it, or [`ForgeError::NotFound`].
pub(crate) async fn visible_row(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: TemplateId,
) -> Result<templates::Model> {
    visible_to(actor)
        .filter(templates::Column::Id.eq(id))
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found(ENTITY, id))
}

/// Template `id` if `actor` may change it, locked until the transaction ends.
async fn lock_writable(
    txn: &DatabaseTransaction,
    actor: Actor,
    id: TemplateId,
) -> Result<templates::Model> {
    writable_by(actor)
        .filter(templates::Column::Id.eq(id))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| ForgeError::not_found(ENTITY, id))
}

/// Template `id`, if `actor` may see it (any active template, or their own).
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: TemplateId) -> Result<Option<templates::Model>>
where
    C: Connection,
{
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            Ok(visible_to(actor)
                .filter(templates::Column::Id.eq(id))
                .one(txn)
                .await?)
        })
    })
    .await
}

/// Template `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist, or is another user's and inactive.
pub async fn get<C>(db: &C, actor: Actor, id: TemplateId) -> Result<templates::Model>
where
    C: Connection,
{
    find(db, actor, id)
        .await?
        .ok_or_else(|| ForgeError::not_found(ENTITY, id))
}

/// One page of the *active* templates `actor` may see, newest first, filtered by tier,
/// category and creator.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE`, a bad cursor
/// or a category with a NUL character.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "list"))]
pub async fn list<C>(
    db: &C,
    actor: Actor,
    filter: &TemplateFilter,
    request: &PageRequest,
) -> Result<Page<templates::Model>>
where
    C: Connection,
{
    let mut select = visible_to(actor).filter(templates::Column::IsActive.eq(true));
    if let Some(tier) = filter.tier {
        select = select.filter(templates::Column::Tier.eq(tier));
    }
    if let Some(category) = &filter.category {
        validate::no_nul("category", category)?;
        select = select.filter(templates::Column::Category.eq(category.trim()));
    }
    if let Some(owner) = filter.created_by {
        select = select.filter(templates::Column::CreatedBy.eq(owner));
    }
    pagination::fetch_page(
        db,
        actor,
        select,
        (templates::Column::CreatedAt, templates::Column::Id),
        Direction::NewestFirst,
        request,
        |t| (t.created_at, t.id),
    )
    .await
}

/// Changes the content of template `id` and returns the updated row: the database adds
/// 1 to `version` and sets `last_modified` (and, on PostgreSQL, `last_modified_by`). An
/// empty patch changes nothing and returns the row as it is.
///
/// # Errors
/// [`ForgeError::Validation`] as for [`create`] (text and variables are checked together,
/// the patched value with the stored one); [`ForgeError::NotFound`] when the template
/// does not exist or is not `actor`'s (another user's active template is read-only).
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "update", id = %id))]
pub async fn update<C>(
    db: &C,
    actor: Actor,
    id: TemplateId,
    patch: TemplatePatch,
) -> Result<templates::Model>
where
    C: Connection,
{
    let name = validate::optional_text("template_name", patch.template_name.as_deref(), MAX_NAME)?;
    let description = prose_patch("description", patch.description)?;
    let category = validate::optional_text("category", patch.category.as_deref(), MAX_LABEL)?;
    let text = patch
        .template_text
        .as_deref()
        .map(template_text)
        .transpose()?;
    let vars = patch.variables.as_deref().map(variables).transpose()?;
    let structure = prose_patch("structure", patch.structure)?;
    let tone = match patch.tone {
        Some(Some(v)) => Some(Some(validate::text("tone", &v, MAX_LABEL)?)),
        other => other,
    };
    let complexity_baseline = patch.complexity_baseline.map(complexity).transpose()?;
    let style_notes = prose_patch("style_notes", patch.style_notes)?;
    let example = prose_patch("example_conversation", patch.example_conversation)?;
    let quality_threshold = patch.quality_threshold.map(threshold).transpose()?;
    let list = |field, items: Option<Vec<String>>| {
        items.map(|items| string_list(field, &items)).transpose()
    };
    let required = list("required_elements", patch.required_elements)?;
    let personas = list("applicable_personas", patch.applicable_personas)?;
    let emotions = list("applicable_emotions", patch.applicable_emotions)?;
    let topics = list("applicable_topics", patch.applicable_topics)?;
    let tier = patch.tier;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = lock_writable(txn, actor, id).await?;
            if text.is_some() || vars.is_some() {
                let checked_text = text.as_deref().unwrap_or(&current.template_text);
                let checked_vars = vars.as_deref().unwrap_or(&current.variables.0);
                check_placeholders(checked_text, checked_vars)?;
            }
            let mut row: templates::ActiveModel = current.into();
            let mut changed = false;
            macro_rules! put {
                ($value:expr, $column:ident) => {
                    if let Some(v) = $value {
                        row.$column = Set(v);
                        changed = true;
                    }
                };
            }
            put!(name, template_name);
            put!(description, description);
            put!(category, category);
            put!(tier, tier);
            put!(text, template_text);
            put!(structure, structure);
            put!(vars.map(StringList), variables);
            put!(tone, tone);
            put!(complexity_baseline, complexity_baseline);
            put!(style_notes, style_notes);
            put!(example, example_conversation);
            put!(quality_threshold, quality_threshold);
            put!(required, required_elements);
            put!(personas, applicable_personas);
            put!(emotions, applicable_emotions);
            put!(topics, applicable_topics);
            if changed {
                row.update(txn).await?;
            }
            // Read back: the database bumped `version` and set `last_modified*`.
            visible_row(txn, actor, id).await
        })
    })
    .await
}

/// Sets whether template `id` is offered to everyone (`is_active`).
async fn set_active<C>(
    db: &C,
    actor: Actor,
    id: TemplateId,
    active: bool,
) -> Result<templates::Model>
where
    C: Connection,
{
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = lock_writable(txn, actor, id).await?;
            if current.is_active != active {
                let mut row: templates::ActiveModel = current.into();
                row.is_active = Set(active);
                row.update(txn).await?;
            }
            visible_row(txn, actor, id).await
        })
    })
    .await
}

/// Deactivates template `id`: it leaves every list, and other users no longer see it
/// (their scenarios keep pointing at it). Deactivating an inactive template changes
/// nothing.
///
/// # Errors
/// [`ForgeError::NotFound`] when the template does not exist or is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "deactivate", id = %id))]
pub async fn deactivate<C>(db: &C, actor: Actor, id: TemplateId) -> Result<templates::Model>
where
    C: Connection,
{
    set_active(db, actor, id, false).await
}

/// Activates template `id` again.
///
/// # Errors
/// [`ForgeError::NotFound`] when the template does not exist or is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "activate", id = %id))]
pub async fn activate<C>(db: &C, actor: Actor, id: TemplateId) -> Result<templates::Model>
where
    C: Connection,
{
    set_active(db, actor, id, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn placeholders_are_names_in_double_braces() {
        assert_eq!(
            placeholders("Hi {{persona}}, about {{ topic }} and {{persona}} again"),
            vars(&["persona", "topic"])
        );
        assert!(placeholders(r#"JSON {"a": {"b": 1}} and {{}} and {{two words}}"#).is_empty());
        assert_eq!(placeholders("{{{x}}}"), vars(&["x"]));
        assert_eq!(placeholders("{{x}"), Vec::<String>::new());
        assert_eq!(placeholders("é{{é}}{{_a1}}"), vars(&["_a1"]));
    }

    #[test]
    fn text_and_variables_must_agree() {
        assert!(check_placeholders("{{a}} {{b}}", &vars(&["a", "b"])).is_ok());
        assert!(check_placeholders("{{a}}", &vars(&["a", "b"])).is_err());
        assert!(check_placeholders("{{a}} {{c}}", &vars(&["a"])).is_err());
        assert!(variables(&vars(&["a", "a"])).is_err());
        assert!(variables(&vars(&["1a"])).is_err());
    }

    #[test]
    fn rendering_fills_every_occurrence_once() {
        let mut values = Map::new();
        values.insert("a".into(), Json::from("{{b}}"));
        values.insert("b".into(), Json::from(2));
        let out = render_text("{{a}}-{{b}}-{{a}} {x}", &vars(&["a", "b"]), &values).ok();
        assert_eq!(out.as_deref(), Some("{{b}}-2-{{b}} {x}"));
    }
}
