//! The HTTP layer of the `api` example: an axum [`Router`] over Forge's repositories.
//!
//! Every handler names the acting user as an [`Actor::User`] taken from the request, so the
//! repositories (and, on PostgreSQL, row-level security) confine it to that user's rows:
//! another user's project answers 404, exactly like a missing one. No handler filters by
//! owner itself, and none acts as [`Actor::Service`].
//!
//! Routes:
//!
//! | method | path | does |
//! |---|---|---|
//! | `GET` | `/projects?after=CURSOR&limit=N` | a page of the user's projects, newest first |
//! | `POST` | `/projects` `{"name", "description"?}` | creates a project (201) |
//! | `GET` | `/projects/{id}` | one project |
//! | `POST` | `/projects/{id}/sessions` `{"prompt", "ttl_minutes"?}` | starts a session (201) |
//! | `GET` | `/sessions/{id}/events?after=SEQ&limit=N` | the session's events after `SEQ` |
//! | `GET` | `/sessions/{id}/events/stream?after=SEQ` | the session's events live, as Server-Sent Events (`id:` is the `seq`, so a reconnecting browser resumes with `Last-Event-ID`); ends when the session has ended |
//! | `GET` | `/exports?format=jsonl&status=approved&tier=T` | downloads the user's conversations (`jsonl`, `json`, `csv`, `markdown`; `status` defaults to `approved`, `all` for every state) |
//!
//! Errors are JSON, `{"error": {"code": "not_found", "message": "…"}}`, with the status
//! [`status_of`] gives each [`ForgeError`]; a request without a user is 401.
//!
//! A request names its user in one of two ways (see [`AuthUser`]): `Authorization: Bearer
//! <API key>` — a key from `forge_service::api_keys`, checked against the database, whose
//! scopes limit it (`GET` needs `read`, anything else `write`; 403 otherwise) — or the
//! [`USER_HEADER`] stand-in. An unknown, revoked, expired or tampered key is 401
//! `unauthenticated`, the same for each.

use std::str::FromStr;

use axum::body::{Body, Bytes};
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use forge_db::entity::ids::{ProfileId, ProjectId, SessionId};
use forge_db::entity::{coding_sessions, projects, session_events};
use forge_db::sea_orm::DatabaseConnection;
use forge_db::service::api_keys::{self, Scope};
use forge_db::service::exports::{self, ExportRequest};
use forge_db::service::projects::{ListProjects, NewProject};
use forge_db::service::sessions::NewSession;
use forge_db::service::{Actor, Cursor, ForgeError, Page, PageRequest};
use forge_db::service::{events, projects as project_repo, sessions};
use serde::Deserialize;
use serde_json::json;

/// The header carrying the acting user's id.
///
/// **A STAND-IN FOR AUTHENTICATION — NEVER DO THIS IN PRODUCTION.** Anyone can send any
/// id in a header. A real service verifies a signed token (e.g. the `Authorization:
/// Bearer` JWT from your identity provider: signature, issuer, audience, expiry) and takes
/// the user id from its verified `sub` claim; only [`AuthUser`] has to change (API keys,
/// which it already accepts as `Bearer` tokens, start with `forge_`, so a JWT is told
/// apart by its form).
pub const USER_HEADER: &str = "x-user-id";

/// The router, with every route, over the database `db` (already migrated).
pub fn router(db: DatabaseConnection) -> Router {
    Router::new()
        .route("/projects", get(list_projects).post(create_project))
        .route("/projects/{id}", get(get_project))
        .route("/projects/{id}/sessions", post(start_session))
        .route("/sessions/{id}/events", get(session_events))
        .route("/sessions/{id}/events/stream", get(stream_session_events))
        .route("/exports", get(export_conversations))
        .with_state(db)
}

/// The authenticated user of a request, as the [`Actor`] every repository call takes.
///
/// With an `Authorization` header, it must be `Bearer <API key>`: the key is checked by
/// [`api_keys::authenticate`] (one read; `last_used_at` written at most once a minute) and
/// its owner becomes the actor, provided the key has the scope the method needs — `read`
/// for `GET` and `HEAD`, `write` for anything else (403 `forbidden` otherwise). A key that
/// is malformed, unknown, tampered with, revoked or expired is 401 `unauthenticated`, the
/// same answer for each; the stand-in header is then not looked at.
///
/// Without an `Authorization` header the user is read from [`USER_HEADER`] — see the
/// warning there: in production that branch verifies a JWT and maps its `sub` claim to
/// `Actor::User`.
#[derive(Clone, Copy, Debug)]
pub struct AuthUser(pub Actor);

/// The scope a request's method needs from an API key.
pub fn scope_for(method: &Method) -> Scope {
    if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Write
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    DatabaseConnection: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(authorization) = parts.headers.get(header::AUTHORIZATION) {
            let key = authorization
                .to_str()
                .ok()
                .and_then(|value| value.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, key)| key.trim())
                .ok_or(ApiError::Unauthenticated(
                    "authorization is not `Bearer <API key>`",
                ))?;
            let db = DatabaseConnection::from_ref(state);
            let key = api_keys::authenticate(&db, key).await?;
            let needed = scope_for(&parts.method);
            if !key.allows(needed) {
                return Err(ApiError::MissingScope(needed));
            }
            return Ok(Self(key.actor));
        }
        let header = parts
            .headers
            .get(USER_HEADER)
            .ok_or(ApiError::Unauthenticated("missing x-user-id header"))?;
        let id = header
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<ProfileId>().ok())
            .ok_or(ApiError::Unauthenticated("x-user-id is not a user id"))?;
        Ok(Self(Actor::User(id)))
    }
}

/// What a handler can fail with; its response is a status and a JSON error body.
#[derive(Debug)]
pub enum ApiError {
    /// No (valid) user on the request: 401.
    Unauthenticated(&'static str),
    /// The request's API key lacks the scope its method needs: 403.
    MissingScope(Scope),
    /// A repository refused or failed: see [`status_of`].
    Forge(ForgeError),
}

impl From<ForgeError> for ApiError {
    fn from(err: ForgeError) -> Self {
        Self::Forge(err)
    }
}

/// The HTTP status and the stable error code of a repository error.
pub fn status_of(err: &ForgeError) -> (StatusCode, &'static str) {
    // `ForgeError::code` is stable and machine-readable: the response carries it as is.
    let code = err.code();
    let status = match code {
        "not_found" => StatusCode::NOT_FOUND,
        "invalid_input" => StatusCode::UNPROCESSABLE_ENTITY,
        "conflict" | "invalid_state" | "lease_lost" => StatusCode::CONFLICT,
        "limit_reached" => StatusCode::TOO_MANY_REQUESTS,
        "forbidden" => StatusCode::FORBIDDEN,
        // An unknown, revoked, expired or tampered API key.
        "unauthenticated" => StatusCode::UNAUTHORIZED,
        // A spend the balance cannot cover: the client must buy or be granted credits.
        "insufficient_credits" => StatusCode::PAYMENT_REQUIRED,
        // The database restarted, a connection broke, a conflict was resolved by aborting:
        // the client may simply try again.
        "unavailable" | "transaction_lost" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, code)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::Unauthenticated(why) => (StatusCode::UNAUTHORIZED, "unauthenticated", why.into()),
            Self::MissingScope(scope) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the API key lacks the `{scope}` scope"),
            ),
            // Database details stay in the server's log, not in the response.
            Self::Forge(ForgeError::Db(err)) => {
                eprintln!("api: database error: {err}");
                let (status, code) = status_of(&ForgeError::Db(err));
                (status, code, "internal error".to_owned())
            }
            Self::Forge(err) => {
                let (status, code) = status_of(&err);
                (status, code, err.to_string())
            }
        };
        let body = json!({ "error": { "code": code, "message": message } });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: say which scheme the server accepts.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// `?after=CURSOR&limit=N` of a project list.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
    /// Page size (default 50, at most 200).
    pub limit: Option<u64>,
}

async fn list_projects(
    State(db): State<DatabaseConnection>,
    AuthUser(user): AuthUser,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<projects::Model>>> {
    let after = query.after.as_deref().map(Cursor::from_str).transpose()?;
    let request = PageRequest {
        after,
        limit: query.limit,
    };
    let filter = ListProjects::default();
    Ok(Json(
        project_repo::list(&db, user, &filter, &request).await?,
    ))
}

/// The body of `POST /projects`.
#[derive(Debug, Deserialize)]
pub struct CreateProject {
    /// The project's name.
    pub name: String,
    /// An optional description.
    pub description: Option<String>,
}

async fn create_project(
    State(db): State<DatabaseConnection>,
    AuthUser(user): AuthUser,
    Json(body): Json<CreateProject>,
) -> ApiResult<(StatusCode, Json<projects::Model>)> {
    let owner = user_id(user)?;
    let new = NewProject {
        description: body.description,
        ..NewProject::new(owner, body.name)
    };
    let project = project_repo::create(&db, user, new).await?;
    Ok((StatusCode::CREATED, Json(project)))
}

async fn get_project(
    State(db): State<DatabaseConnection>,
    AuthUser(user): AuthUser,
    Path(id): Path<ProjectId>,
) -> ApiResult<Json<projects::Model>> {
    Ok(Json(project_repo::get(&db, user, id).await?))
}

/// The body of `POST /projects/{id}/sessions`.
#[derive(Debug, Deserialize)]
pub struct StartSession {
    /// What the session should do.
    pub prompt: String,
    /// How long it lives, in minutes (default 60).
    pub ttl_minutes: Option<i64>,
}

async fn start_session(
    State(db): State<DatabaseConnection>,
    AuthUser(user): AuthUser,
    Path(project_id): Path<ProjectId>,
    Json(body): Json<StartSession>,
) -> ApiResult<(StatusCode, Json<coding_sessions::Model>)> {
    let owner = user_id(user)?;
    let mut new = NewSession::new(owner, project_id, body.prompt);
    if let Some(minutes) = body.ttl_minutes {
        // An out-of-range value becomes a zero TTL, which the repository refuses (422).
        new.ttl = chrono::TimeDelta::try_minutes(minutes).unwrap_or_default();
    }
    let session = sessions::start(&db, user, new).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// `?after=SEQ&limit=N` of an event tail.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// The last `seq` seen (default 0: from the first event).
    pub after: Option<i64>,
    /// At most this many events (default 50).
    pub limit: Option<u64>,
}

async fn session_events(
    State(db): State<DatabaseConnection>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<SessionId>,
    Query(query): Query<EventsQuery>,
) -> ApiResult<Json<Vec<session_events::Model>>> {
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(forge_db::service::DEFAULT_PAGE_SIZE);
    Ok(Json(
        events::after(&db, user, session_id, after, limit).await?,
    ))
}

/// The session's events as Server-Sent Events, from `Last-Event-ID` (a reconnecting
/// browser sends the last `id:` it got) or `?after=SEQ`, as `events::subscribe` delivers
/// them: each once, in `seq` order. Each SSE event is named after the event's type, with
/// the `seq` as its id and the event as JSON data. A refused request (unknown session,
/// someone else's) is answered before the stream starts; an error afterwards ends it with
/// an `error` event carrying the code.
async fn stream_session_events(
    State(db): State<DatabaseConnection>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<SessionId>,
    Query(query): Query<EventsQuery>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt;

    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::Forge(ForgeError::invalid(
                        "Last-Event-ID",
                        "expected a seq number",
                    ))
                })?,
        ),
        None => None,
    };
    let after = resume.or(query.after).unwrap_or(0);
    let stream = events::subscribe(&db, user, session_id, after).await?;
    let sse = stream.map(|item| {
        Ok::<_, std::convert::Infallible>(match item {
            Ok(event) => Event::default()
                .id(event.seq.to_string())
                .event(event.event_type.to_string())
                .json_data(&event)
                .unwrap_or_else(|_| Event::default().event("error").data("unserializable")),
            Err(err) => Event::default().event("error").data(err.code()),
        })
    });
    Ok(Sse::new(sse)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `?format=jsonl&status=approved&tier=template` of an export.
#[derive(Debug, Default, Deserialize)]
pub struct ExportQuery {
    /// `jsonl` (default), `json`, `csv` or `markdown`.
    pub format: Option<String>,
    /// A review state (default `approved`), or `all`.
    pub status: Option<String>,
    /// Only this tier.
    pub tier: Option<String>,
}

/// The user's conversations as a file download, logged in `export_logs`.
///
/// The file is assembled in memory before the response starts, so a failure answers with
/// a proper error status; `exports::write` itself streams page by page with flat memory,
/// and a server that wants flat memory here too pipes it into a streaming body (e.g. a
/// channel of chunks wrapped as a `Stream` for `Body::from_stream`).
async fn export_conversations(
    State(db): State<DatabaseConnection>,
    AuthUser(user): AuthUser,
    Query(query): Query<ExportQuery>,
) -> ApiResult<Response> {
    let format = query.format.as_deref().unwrap_or("jsonl");
    let request = ExportRequest::parse(format, query.status.as_deref(), query.tier.as_deref())?;
    let format = request.format;
    // The export is written into one end of an in-memory pipe by its own task and the
    // response streams the other end: memory stays at the pipe's 64 KiB however large the
    // file. Once the headers are out, an export that fails halfway can only end the
    // download early; its `export_logs` row says `failed`, with the error.
    let (writer, reader) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Err(err) = exports::write(&db, user, request, writer).await {
            eprintln!("api: export failed: {err}");
        }
    });
    let chunks = futures_util::stream::unfold(reader, |mut reader| async move {
        let mut chunk = vec![0u8; 16 * 1024];
        match tokio::io::AsyncReadExt::read(&mut reader, &mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), reader))
            }
            Err(err) => Some((Err(err), reader)),
        }
    });
    let disposition = format!(
        "attachment; filename=\"conversations.{}\"",
        exports::extension(format)
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                exports::content_type(format).to_owned(),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

fn user_id(actor: Actor) -> Result<ProfileId, ApiError> {
    actor
        .user_id()
        .ok_or(ApiError::Unauthenticated("the request has no user"))
}
