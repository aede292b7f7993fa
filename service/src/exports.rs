//! Dataset exports: a user's (or, for the service, anyone's) conversations with their
//! turns, written as JSONL, JSON, CSV or Markdown to any [`AsyncWrite`], and logged in
//! `export_logs` (seed 003, part 6: `/api/export`).
//!
//! Memory stays flat however many conversations are exported: [`write()`] reads keyset
//! pages of [`PAGE_SIZE`] conversations (oldest first, by `(created_at, id)`), then the
//! turns of that page in one query, writes the page and drops it before reading the next.
//! Each page is read in its own short transaction as the acting user (on PostgreSQL under
//! the user's row-level security), and no transaction is open while the writer is
//! written to, so a slow client holds no locks. An export is therefore not one snapshot:
//! a conversation created or approved while the export runs may or may not be in it, but
//! none is written twice and none that matched throughout is missed.
//!
//! The `export_logs` row is the service's (users may only read their own): it is written
//! in the service's context, `processing` when the export starts (with `scope`, the
//! filter that chose the conversations), then `completed` with `conversation_count` and
//! `file_size` (the bytes written), or `failed` with the error when anything fails
//! halfway, a failing writer included. An export whose future is dropped (a client that
//! went away mid-download in a server that cancels the handler) leaves its row
//! `processing`.
//!
//! The formats:
//! - [`ExportFormat::Jsonl`]: one `{"messages":[{"role":"user","content":…},…]}` object
//!   per line, the fine-tuning format;
//! - [`ExportFormat::Json`]: one array of the conversations, each with all its columns and
//!   a `turns` array;
//! - [`ExportFormat::Csv`]: RFC 4180, a header row then one row per turn:
//!   `conversation_id,title,tier,status,turn_number,role,content,token_count`
//!   (`conversation_id` is the human-facing id), lines ending in CRLF, a field quoted when
//!   it holds a quote, comma, CR or LF, quotes inside doubled;
//! - [`ExportFormat::Markdown`]: a `##` heading per conversation, one block per turn.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use forge_entity::conversation_turns::{self, TurnRole};
use forge_entity::conversations::{self, ConversationStatus, ConversationTier};
use forge_entity::export_logs::{self, ExportFormat, ExportStatus};
use forge_entity::ids::{ConversationId, ExportId, ProfileId, TemplateId};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::actor::{Access, Actor, Connection, run_as};
use crate::conversations::visible_to;
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Cursor, Direction, Page, PageRequest};
use crate::validate;

/// Conversations read (and written) per page: with their turns, all an export holds in
/// memory at once.
pub const PAGE_SIZE: u64 = 100;

/// The longest `error_message` a failed export records, in characters.
const MAX_ERROR_MESSAGE: usize = 2_000;

/// What to export, and how. [`ExportRequest::new`] exports the acting user's approved
/// conversations; every other field narrows (or, for `status` and `owner`, widens) that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRequest {
    /// The file format.
    pub format: ExportFormat,
    /// Only this review state (`None`: every state). [`ExportRequest::new`] sets
    /// `approved`.
    pub status: Option<ConversationStatus>,
    /// Only this tier.
    pub tier: Option<ConversationTier>,
    /// Only conversations generated from this template.
    pub template_id: Option<TemplateId>,
    /// Only conversations created at or after this instant.
    pub created_from: Option<DateTime<Utc>>,
    /// Only conversations created before this instant.
    pub created_before: Option<DateTime<Utc>>,
    /// Whose conversations. A user exports only their own (`None` or their own id); the
    /// service names a user, or `None` for everyone's.
    pub owner: Option<ProfileId>,
    /// The profile the `export_logs` row is recorded for: always the acting user for a
    /// user; for the service `None` means `owner`, and an export of everyone's
    /// conversations must name one.
    pub requested_by: Option<ProfileId>,
}

impl ExportRequest {
    /// The acting user's approved conversations, in `format`.
    pub fn new(format: ExportFormat) -> Self {
        Self {
            format,
            status: Some(ConversationStatus::Approved),
            tier: None,
            template_id: None,
            created_from: None,
            created_before: None,
            owner: None,
            requested_by: None,
        }
    }

    /// A request from a caller's strings (e.g. query parameters): `format` (`jsonl`,
    /// `json`, `csv`, `markdown`), `status` (absent: `approved`; `all`: every state) and
    /// `tier`.
    ///
    /// # Errors
    /// [`ForgeError::Validation`] for a string that names no format, status or tier.
    pub fn parse(format: &str, status: Option<&str>, tier: Option<&str>) -> Result<Self> {
        let format = validate::parse_enum("format", format)?;
        let status = match status {
            None => Some(ConversationStatus::Approved),
            Some("all") => None,
            Some(s) => Some(validate::parse_enum("status", s)?),
        };
        Ok(Self {
            status,
            tier: tier.map(|t| validate::parse_enum("tier", t)).transpose()?,
            ..Self::new(format)
        })
    }

    /// The filter as recorded in `export_logs.scope`.
    fn scope(&self, owner: Option<ProfileId>) -> serde_json::Value {
        json!({
            "format": self.format.as_str(),
            "status": self.status.map(|s| s.as_str()),
            "tier": self.tier.map(|t| t.as_str()),
            "template_id": self.template_id,
            "created_from": self.created_from,
            "created_before": self.created_before,
            "owner": owner,
        })
    }
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// The `export_logs` row's id.
    pub log_id: ExportId,
    /// The export's public id (`export_logs.export_id`).
    pub export_id: String,
    /// The format written.
    pub format: ExportFormat,
    /// Conversations written.
    pub conversation_count: u64,
    /// Turns written.
    pub turn_count: u64,
    /// Bytes written (`export_logs.file_size`).
    pub bytes: u64,
}

/// The `Content-Type` of a file in `format`.
pub fn content_type(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Jsonl => "application/jsonl; charset=utf-8",
        ExportFormat::Json => "application/json; charset=utf-8",
        ExportFormat::Csv => "text/csv; charset=utf-8; header=present",
        ExportFormat::Markdown => "text/markdown; charset=utf-8",
    }
}

/// The file name extension (without the dot) of a file in `format`.
pub fn extension(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Jsonl => "jsonl",
        ExportFormat::Json => "json",
        ExportFormat::Csv => "csv",
        ExportFormat::Markdown => "md",
    }
}

/// Who is exported and for whom the log row is recorded, checked before anything is
/// written.
struct Resolved {
    /// Whose conversations (`None`: everyone's, service only).
    owner: Option<ProfileId>,
    /// The `export_logs.user_id`.
    log_user: ProfileId,
}

fn resolve(actor: Actor, request: &ExportRequest) -> Result<Resolved> {
    if let Some(from) = request.created_from {
        validate::storable_instant("created_from", from)?;
    }
    if let Some(before) = request.created_before {
        validate::storable_instant("created_before", before)?;
    }
    if let (Some(from), Some(before)) = (request.created_from, request.created_before)
        && from > before
    {
        return Err(ForgeError::invalid(
            "created_before",
            "the date range ends before it starts",
        ));
    }
    match actor {
        Actor::User(uid) => {
            let others = |id: Option<ProfileId>| id.is_some_and(|id| id != uid);
            // Someone else's profile looks missing, like any row of theirs.
            if let Some(other) = request.owner.filter(|o| others(Some(*o))) {
                return Err(ForgeError::not_found("profile", other));
            }
            if let Some(other) = request.requested_by.filter(|o| others(Some(*o))) {
                return Err(ForgeError::not_found("profile", other));
            }
            Ok(Resolved {
                owner: Some(uid),
                log_user: uid,
            })
        }
        Actor::Service => {
            let log_user = request.requested_by.or(request.owner).ok_or_else(|| {
                ForgeError::invalid(
                    "requested_by",
                    "the service must name the profile an export of everyone's conversations is logged for",
                )
            })?;
            Ok(Resolved {
                owner: request.owner,
                log_user,
            })
        }
    }
}

/// Streams the conversations `request` chooses, with their turns, to `writer` in
/// `request.format`, and logs the export in `export_logs` (see the module docs). The
/// writer is flushed at the end, not shut down.
///
/// A user exports only their own conversations; the service anyone's, or everyone's.
///
/// # Errors
/// Before anything is written: [`ForgeError::NotFound`] (`"profile"`) when a user names another user
/// as `owner` or `requested_by`; [`ForgeError::Validation`] for an instant outside the
/// storable years, a date range that ends before it starts, or a service export of
/// everyone's conversations that names no `requested_by`; [`ForgeError::Conflict`] when
/// the profile the log is recorded for does not exist. Halfway, after the log row is
/// `processing`: [`ForgeError::Db`] when reading fails or when `writer` fails (a
/// `DbErr::Custom` naming the I/O error); the row is then `failed` with that error.
#[tracing::instrument(skip_all, fields(entity = "export", op = "write"))]
pub async fn write<C, W>(
    db: &C,
    actor: Actor,
    request: ExportRequest,
    mut writer: W,
) -> Result<ExportSummary>
where
    C: Connection,
    W: AsyncWrite + Unpin + Send,
{
    let resolved = resolve(actor, &request)?;
    let log = start_log(db, &request, &resolved).await?;
    let mut summary = ExportSummary {
        log_id: log.id,
        export_id: log.export_id,
        format: request.format,
        conversation_count: 0,
        turn_count: 0,
        bytes: 0,
    };
    match stream(
        db,
        actor,
        &request,
        resolved.owner,
        &mut writer,
        &mut summary,
    )
    .await
    {
        Ok(()) => {
            finish_log(db, summary.log_id, Ok(&summary)).await?;
            Ok(summary)
        }
        Err(err) => {
            if let Err(log_err) = finish_log(db, summary.log_id, Err(&err)).await {
                tracing::error!(export_id = %summary.export_id, error = %log_err,
                    "could not mark the export failed");
            }
            Err(err)
        }
    }
}

/// `actor`'s export log, newest first (the service: everyone's).
///
/// # Errors
/// [`ForgeError::Validation`] for a page size outside `1..=MAX_PAGE_SIZE`.
#[tracing::instrument(skip_all, fields(entity = "export", op = "logs"))]
pub async fn logs<C: Connection>(
    db: &C,
    actor: Actor,
    page: &PageRequest,
) -> Result<Page<export_logs::Model>> {
    use export_logs::Column as Col;
    let mut select = export_logs::Entity::find();
    if let Some(uid) = actor.user_id() {
        select = select.filter(Col::UserId.eq(uid));
    }
    let columns = (Col::CreatedAt, Col::Id);
    pagination::fetch_page(
        db,
        actor,
        select,
        columns,
        Direction::NewestFirst,
        page,
        |l| (l.created_at, l.id),
    )
    .await
}

/// Inserts the `processing` row, as the service.
async fn start_log<C: Connection>(
    db: &C,
    request: &ExportRequest,
    resolved: &Resolved,
) -> Result<export_logs::Model> {
    let now = crate::now();
    let row = export_logs::ActiveModel {
        id: Set(ExportId::new()),
        export_id: Set(format!("exp_{}", uuid::Uuid::new_v4().simple())),
        user_id: Set(resolved.log_user),
        format: Set(request.format),
        scope: Set(request.scope(resolved.owner)),
        conversation_count: Set(0),
        file_size: Set(0),
        status: Set(ExportStatus::Processing),
        error_message: Set(None),
        created_at: Set(now),
        completed_at: Set(None),
    };
    run_as(db, Actor::Service, Access::Write, move |txn| {
        Box::pin(async move { Ok(row.insert(txn).await?) })
    })
    .await
}

/// Marks the row `completed` with the summary's figures, or `failed` with `error`; only a
/// row still `processing` changes.
async fn finish_log<C: Connection>(
    db: &C,
    id: ExportId,
    outcome: std::result::Result<&ExportSummary, &ForgeError>,
) -> Result<()> {
    use export_logs::Column as Col;
    let now = crate::now();
    let mut update = export_logs::Entity::update_many().col_expr(Col::CompletedAt, Expr::val(now));
    update = match outcome {
        Ok(summary) => update
            .col_expr(Col::Status, Expr::val(ExportStatus::Completed.as_str()))
            .col_expr(
                Col::ConversationCount,
                Expr::val(i32::try_from(summary.conversation_count).unwrap_or(i32::MAX)),
            )
            .col_expr(
                Col::FileSize,
                Expr::val(i64::try_from(summary.bytes).unwrap_or(i64::MAX)),
            ),
        Err(err) => {
            let message: String = err
                .to_string()
                .replace('\0', " ")
                .chars()
                .take(MAX_ERROR_MESSAGE)
                .collect();
            update
                .col_expr(Col::Status, Expr::val(ExportStatus::Failed.as_str()))
                .col_expr(Col::ErrorMessage, Expr::val(message))
        }
    };
    let update = update
        .filter(Col::Id.eq(id))
        .filter(Col::Status.eq(ExportStatus::Processing.as_str()));
    run_as(db, Actor::Service, Access::Write, move |txn| {
        Box::pin(async move {
            update.exec(txn).await?;
            Ok(())
        })
    })
    .await
}

/// One page: conversations in keyset order and their turns by conversation.
struct Batch {
    conversations: Vec<conversations::Model>,
    turns: HashMap<ConversationId, Vec<conversation_turns::Model>>,
    next: Option<Cursor>,
}

/// Reads the page after `after` for `actor`: the conversations, then their turns in one
/// query, in one read transaction.
async fn read_page<C: Connection>(
    db: &C,
    actor: Actor,
    request: &ExportRequest,
    owner: Option<ProfileId>,
    after: Option<Cursor>,
) -> Result<Batch> {
    use conversations::Column as Col;
    let mut select = visible_to(actor);
    if let Some(owner) = owner {
        select = select.filter(Col::CreatedBy.eq(owner));
    }
    if let Some(status) = request.status {
        select = select.filter(Col::Status.eq(status));
    }
    if let Some(tier) = request.tier {
        select = select.filter(Col::Tier.eq(tier));
    }
    if let Some(template) = request.template_id {
        select = select.filter(Col::TemplateId.eq(template));
    }
    if let Some(from) = request.created_from {
        select = select.filter(Col::CreatedAt.gte(from));
    }
    if let Some(before) = request.created_before {
        select = select.filter(Col::CreatedAt.lt(before));
    }
    let page_request = PageRequest {
        after,
        limit: Some(PAGE_SIZE),
    };
    let (select, size) = pagination::keyset(
        select,
        Col::CreatedAt,
        Col::Id,
        Direction::OldestFirst,
        &page_request,
    )?;
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            let page = pagination::page(select.all(txn).await?, size, |c| (c.created_at, c.id));
            let mut turns: HashMap<ConversationId, Vec<conversation_turns::Model>> = HashMap::new();
            if !page.items.is_empty() {
                let ids: Vec<ConversationId> = page.items.iter().map(|c| c.id).collect();
                let rows = conversation_turns::Entity::find()
                    .filter(conversation_turns::Column::ConversationId.is_in(ids))
                    .order_by_asc(conversation_turns::Column::ConversationId)
                    .order_by_asc(conversation_turns::Column::TurnNumber)
                    .all(txn)
                    .await?;
                for turn in rows {
                    turns.entry(turn.conversation_id).or_default().push(turn);
                }
            }
            Ok(Batch {
                conversations: page.items,
                turns,
                next: page.next,
            })
        })
    })
    .await
}

/// Reads and writes page after page, counting into `summary`.
async fn stream<C, W>(
    db: &C,
    actor: Actor,
    request: &ExportRequest,
    owner: Option<ProfileId>,
    writer: &mut W,
    summary: &mut ExportSummary,
) -> Result<()>
where
    C: Connection,
    W: AsyncWrite + Unpin + Send,
{
    let format = request.format;
    let mut buf = Vec::with_capacity(64 * 1024);
    match format {
        ExportFormat::Json => buf.extend_from_slice(b"["),
        ExportFormat::Csv => csv_row(
            &mut buf,
            &[
                "conversation_id",
                "title",
                "tier",
                "status",
                "turn_number",
                "role",
                "content",
                "token_count",
            ],
        ),
        ExportFormat::Jsonl | ExportFormat::Markdown => {}
    }
    let mut after = None;
    loop {
        let batch = read_page(db, actor, request, owner, after).await?;
        for conversation in &batch.conversations {
            let turns = batch
                .turns
                .get(&conversation.id)
                .map_or(&[][..], Vec::as_slice);
            let first = summary.conversation_count == 0;
            encode(format, &mut buf, conversation, turns, first)?;
            summary.conversation_count += 1;
            summary.turn_count += turns.len() as u64;
        }
        emit(writer, &mut buf, summary).await?;
        match batch.next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    if format == ExportFormat::Json {
        buf.extend_from_slice(if summary.conversation_count == 0 {
            b"]\n"
        } else {
            b"\n]\n"
        });
        emit(writer, &mut buf, summary).await?;
    }
    writer.flush().await.map_err(write_error)?;
    Ok(())
}

/// Writes `buf` to `writer` and empties it.
async fn emit<W>(writer: &mut W, buf: &mut Vec<u8>, summary: &mut ExportSummary) -> Result<()>
where
    W: AsyncWrite + Unpin + Send,
{
    if buf.is_empty() {
        return Ok(());
    }
    writer.write_all(buf).await.map_err(write_error)?;
    summary.bytes += buf.len() as u64;
    buf.clear();
    Ok(())
}

fn write_error(err: std::io::Error) -> ForgeError {
    ForgeError::Db(DbErr::Custom(format!("export writer failed: {err}")))
}

fn json_error(err: serde_json::Error) -> ForgeError {
    ForgeError::Db(DbErr::Json(err.to_string()))
}

/// A message of the JSONL fine-tuning format.
#[derive(Serialize)]
struct Message<'a> {
    role: TurnRole,
    content: &'a str,
}

/// A line of the JSONL fine-tuning format.
#[derive(Serialize)]
struct Messages<'a> {
    messages: Vec<Message<'a>>,
}

/// A conversation of the JSON format: its columns and its turns.
#[derive(Serialize)]
struct WithTurns<'a> {
    #[serde(flatten)]
    conversation: &'a conversations::Model,
    turns: &'a [conversation_turns::Model],
}

/// Appends one conversation in `format` to `buf`; `first` tells whether it is the first
/// of the file.
fn encode(
    format: ExportFormat,
    buf: &mut Vec<u8>,
    conversation: &conversations::Model,
    turns: &[conversation_turns::Model],
    first: bool,
) -> Result<()> {
    match format {
        ExportFormat::Jsonl => {
            let line = Messages {
                messages: turns
                    .iter()
                    .map(|t| Message {
                        role: t.role,
                        content: &t.content,
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut *buf, &line).map_err(json_error)?;
            buf.push(b'\n');
        }
        ExportFormat::Json => {
            buf.extend_from_slice(if first { b"\n" } else { b",\n" });
            let item = WithTurns {
                conversation,
                turns,
            };
            serde_json::to_writer(&mut *buf, &item).map_err(json_error)?;
        }
        ExportFormat::Csv => {
            for turn in turns {
                let number = turn.turn_number.to_string();
                let tokens = turn.token_count.to_string();
                csv_row(
                    buf,
                    &[
                        &conversation.conversation_id,
                        conversation.title.as_deref().unwrap_or(""),
                        conversation.tier.as_str(),
                        conversation.status.as_str(),
                        &number,
                        turn.role.as_str(),
                        &turn.content,
                        &tokens,
                    ],
                );
            }
        }
        ExportFormat::Markdown => markdown(buf, conversation, turns),
    }
    Ok(())
}

/// Appends one RFC 4180 record (CRLF-terminated) to `buf`.
fn csv_row(buf: &mut Vec<u8>, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        if field.contains(['"', ',', '\r', '\n']) {
            buf.push(b'"');
            buf.extend_from_slice(field.replace('"', "\"\"").as_bytes());
            buf.push(b'"');
        } else {
            buf.extend_from_slice(field.as_bytes());
        }
    }
    buf.extend_from_slice(b"\r\n");
}

/// Appends one conversation as Markdown: a heading, a line of facts, a block per turn.
fn markdown(
    buf: &mut Vec<u8>,
    conversation: &conversations::Model,
    turns: &[conversation_turns::Model],
) {
    use std::fmt::Write as _;
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    let title = conversation
        .title
        .as_deref()
        .map_or_else(|| conversation.conversation_id.clone(), one_line);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "## {title}\n\n- id: `{}`\n- tier: {} · status: {} · turns: {} · tokens: {}\n- persona: {} · topic: {} · intent: {} · tone: {} · emotion: {}\n\n",
        conversation.conversation_id,
        conversation.tier,
        conversation.status,
        conversation.total_turns,
        conversation.total_tokens,
        one_line(&conversation.persona),
        one_line(&conversation.topic),
        one_line(&conversation.intent),
        one_line(&conversation.tone),
        one_line(&conversation.emotion),
    );
    for turn in turns {
        let speaker = match turn.role {
            TurnRole::User => "User",
            TurnRole::Assistant => "Assistant",
        };
        let _ = write!(
            out,
            "### {}. {speaker}\n\n{}\n\n",
            turn.turn_number,
            turn.content.trim_end()
        );
    }
    out.push_str("---\n\n");
    buf.extend_from_slice(out.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_it_must() {
        let mut buf = Vec::new();
        csv_row(
            &mut buf,
            &["plain", "a,b", "say \"hi\"", "two\nlines", "", "🙂"],
        );
        assert_eq!(
            String::from_utf8(buf).ok().as_deref(),
            Some("plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",,🙂\r\n")
        );
    }

    #[test]
    fn parse_defaults_to_approved() {
        let r = ExportRequest::parse("jsonl", None, None).ok();
        assert_eq!(r.and_then(|r| r.status), Some(ConversationStatus::Approved));
        let r = ExportRequest::parse("csv", Some("all"), Some("scenario")).ok();
        assert_eq!(r.as_ref().map(|r| r.status), Some(None));
        assert_eq!(r.and_then(|r| r.tier), Some(ConversationTier::Scenario));
        assert!(ExportRequest::parse("xml", None, None).is_err());
        assert!(ExportRequest::parse("json", Some("nope"), None).is_err());
    }
}
