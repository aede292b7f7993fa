//! The `api` example's router, driven in-process (`tower::ServiceExt::oneshot`) against a
//! fresh migrated database per test, on SQLite and on PostgreSQL: the request's user is the
//! acting user, another user's rows answer 404, and errors carry the right status.

mod common;

#[path = "../examples/api/app.rs"]
mod app;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::TestDb;
use forge_db::entity::ids::{ProfileId, SessionId};
use forge_db::entity::prelude::EventType;
use forge_db::sea_orm::DatabaseConnection;
use forge_db::service::profiles::{self, NewProfile};
use forge_db::service::{Actor, events};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

/// Sends one request to a fresh router; returns the status and the JSON body.
async fn call(
    db: &DatabaseConnection,
    method: &str,
    uri: &str,
    user: Option<ProfileId>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(user) = user {
        request = request.header(app::USER_HEADER, user.to_string());
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = app::router(db.clone())
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("the router never fails");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

async fn signup(db: &DatabaseConnection, name: &str) -> ProfileId {
    let email = format!("{name}+{}@example.com", Uuid::new_v4().simple());
    profiles::create(db, Actor::Service, NewProfile::new(email))
        .await
        .expect("signup")
        .id
}

/// Through the API: `user` creates a project and starts a session on it with `body`;
/// returns the session as JSON.
async fn project_and_session(db: &DatabaseConnection, user: ProfileId, body: Value) -> Value {
    let (_, project) = call(
        db,
        "POST",
        "/projects",
        Some(user),
        Some(json!({"name": "App"})),
    )
    .await;
    let project_id = project["id"].as_str().expect("id");
    let uri = format!("/projects/{project_id}/sessions");
    let (status, session) = call(db, "POST", &uri, Some(user), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    session
}

fn names(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .expect("a page has items")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect()
}

async fn users_see_only_their_own_projects(t: &TestDb) {
    let db = &t.db;
    let (a, b) = (signup(db, "ada").await, signup(db, "bob").await);

    for name in ["Weather app", "Todo app"] {
        let (status, project) = call(
            db,
            "POST",
            "/projects",
            Some(a),
            Some(json!({"name": name})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{project}");
        assert_eq!(project["user_id"], json!(a.to_string()));
    }
    let (status, page) = call(db, "GET", "/projects", Some(a), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&page), ["Todo app", "Weather app"], "newest first");

    // Paging with the opaque cursor gives the rest.
    let (_, first) = call(db, "GET", "/projects?limit=1", Some(a), None).await;
    let cursor = first["next"].as_str().expect("a next cursor");
    let (status, second) = call(
        db,
        "GET",
        &format!("/projects?limit=1&after={cursor}"),
        Some(a),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&second), ["Weather app"]);

    let id = page["items"][0]["id"].as_str().expect("id").to_owned();
    let (status, project) = call(db, "GET", &format!("/projects/{id}"), Some(a), None).await;
    assert_eq!(
        (status, project["name"].as_str()),
        (StatusCode::OK, Some("Todo app"))
    );

    // To Bob, Ada's project is missing and his list is empty.
    let (status, error) = call(db, "GET", &format!("/projects/{id}"), Some(b), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"]["code"], "not_found");
    let (status, page) = call(db, "GET", "/projects", Some(b), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(names(&page).is_empty());
    let body = json!({"prompt": "Steal it"});
    let (status, _) = call(
        db,
        "POST",
        &format!("/projects/{id}/sessions"),
        Some(b),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Ada's projects are unchanged.
    let (_, page) = call(db, "GET", "/projects", Some(a), None).await;
    assert_eq!(names(&page), ["Todo app", "Weather app"]);
}

async fn sessions_and_events_belong_to_their_user(t: &TestDb) {
    let db = &t.db;
    let (a, b) = (signup(db, "ada").await, signup(db, "bob").await);
    let body = json!({"prompt": "Add a settings screen", "ttl_minutes": 30});
    let session = project_and_session(db, a, body).await;
    assert_eq!(session["status"], "pending");
    let session_id: SessionId = session["id"].as_str().expect("id").parse().expect("uuid");

    // A worker (the service) streams two events; the user tails after seq 1.
    for kind in [EventType::Thinking, EventType::FileChange] {
        events::append(db, Actor::Service, session_id, kind, json!({}))
            .await
            .expect("append");
    }
    let uri = format!("/sessions/{session_id}/events?after=1");
    let (status, tail) = call(db, "GET", &uri, Some(a), None).await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<_> = tail
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(2)]);

    let (status, _) = call(db, "GET", &uri, Some(b), None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "Bob cannot tail Ada's session"
    );
}

async fn errors_map_to_statuses(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "ada").await;

    let (status, error) = call(
        db,
        "POST",
        "/projects",
        Some(a),
        Some(json!({"name": "  "})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"]["code"], "invalid_input");
    let (status, _) = call(db, "GET", "/projects?after=not-a-cursor", Some(a), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let uri = format!("/sessions/{}/events?after=-1", SessionId::new());
    let (status, _) = call(db, "GET", &uri, Some(a), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, error) = call(db, "GET", "/projects", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["error"]["code"], "unauthenticated");
    let (status, _) = call(
        db,
        "GET",
        "/projects",
        Some(ProfileId::from(Uuid::nil())),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "an unknown user sees an empty list");
    let mut request = Request::get("/projects").header(app::USER_HEADER, "not-a-uuid");
    request = request.header("accept", "application/json");
    let response = app::router(db.clone())
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Nothing was written by the refused calls.
    let (_, page) = call(db, "GET", "/projects", Some(a), None).await;
    assert!(names(&page).is_empty());

    // A user's live-session quota is a 429.
    let (_, project) = call(
        db,
        "POST",
        "/projects",
        Some(a),
        Some(json!({"name": "App"})),
    )
    .await;
    let uri = format!("/projects/{}/sessions", project["id"].as_str().expect("id"));
    let mut last = StatusCode::CREATED;
    for _ in 0..20 {
        last = call(db, "POST", &uri, Some(a), Some(json!({"prompt": "Go"})))
            .await
            .0;
        if last != StatusCode::CREATED {
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

/// `GET /exports` as `user`: status, content type, content disposition and the body.
async fn download(
    db: &DatabaseConnection,
    uri: &str,
    user: ProfileId,
) -> (StatusCode, String, String, String) {
    let request = Request::get(uri).header(app::USER_HEADER, user.to_string());
    let response = app::router(db.clone())
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("the router never fails");
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (kind, disposition) = (header("content-type"), header("content-disposition"));
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = String::from_utf8(bytes.to_vec()).expect("UTF-8");
    (status, kind, disposition, body)
}

async fn exports_download_the_users_conversations(t: &TestDb) {
    use forge_db::service::conversations;
    use forge_db::service::testing::fixtures;
    let db = &t.db;
    let (a, b, reviewer) = (
        signup(db, "ada").await,
        signup(db, "bob").await,
        signup(db, "rev").await,
    );
    let mut approved = Vec::new();
    for owner in [a, a, b] {
        let c = fixtures::conversation_with_turns(db, owner, 2)
            .await
            .expect("conversation");
        let id = c.conversation.id;
        conversations::submit_for_review(db, Actor::Service, id, None)
            .await
            .expect("submit");
        conversations::approve(db, Actor::Service, id, reviewer, None)
            .await
            .expect("approve");
        approved.push(id);
    }
    fixtures::conversation_with_turns(db, a, 2)
        .await
        .expect("not approved");

    let (status, kind, disposition, body) = download(db, "/exports?format=jsonl", a).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kind, "application/jsonl; charset=utf-8");
    assert!(
        disposition.starts_with("attachment; filename=\"conversations"),
        "{disposition}"
    );
    assert!(disposition.ends_with(".jsonl\""), "{disposition}");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "Ada's two approved conversations: {body}");
    assert_eq!(
        lines[0]["messages"],
        json!([{"role": "user", "content": "turn 1"}, {"role": "assistant", "content": "turn 2"}])
    );

    let (status, kind, _, body) = download(db, "/exports?format=json&status=all", a).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "application/json; charset=utf-8")
    );
    let all: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(3),
        "every state with status=all"
    );

    // Bob's download holds only his conversation.
    let (status, kind, disposition, body) = download(db, "/exports?format=csv", b).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/csv"), "{kind}");
    assert!(disposition.ends_with(".csv\""), "{disposition}");
    let rows: Vec<&str> = body.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(rows.len(), 3, "a header and Bob's two turns: {body}");
    let (_, kind, _, body) = download(db, "/exports?format=markdown", b).await;
    assert_eq!(kind, "text/markdown; charset=utf-8");
    assert_eq!(body.matches("\n---\n").count(), 1, "{body}");

    let (status, _, _, body) = download(db, "/exports?format=xml", a).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _, _, _) = download(db, "/exports?status=nope", a).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(db, "GET", "/exports", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Sends one request with `headers` to a fresh router; returns the status, the
/// `WWW-Authenticate` header and the JSON body.
async fn send(
    db: &DatabaseConnection,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = app::router(db.clone())
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("the router never fails");
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, challenge, json)
}

async fn api_keys_authenticate_requests(t: &TestDb) {
    use forge_db::entity::api_keys;
    use forge_db::sea_orm::sea_query::Expr;
    use forge_db::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use forge_db::service::api_keys::{self as keys, NewApiKey, Scope};
    let db = &t.db;
    let (a, b) = (signup(db, "ada").await, signup(db, "bob").await);
    let make = |name: &'static str, scopes: &'static [Scope]| async move {
        keys::create(
            db,
            Actor::User(a),
            NewApiKey::new(name, scopes.iter().copied()),
        )
        .await
        .expect("create a key")
    };
    let full = make("full", &[Scope::Read, Scope::Write]).await;
    let reader = make("reader", &[Scope::Read]).await;
    let writer = make("writer", &[Scope::Write]).await;
    let revoked = make("revoked", &[Scope::Read, Scope::Write]).await;
    let expired = make("expired", &[Scope::Read, Scope::Write]).await;
    keys::revoke(db, Actor::User(a), revoked.key.id)
        .await
        .expect("revoke");
    api_keys::Entity::update_many()
        .col_expr(
            api_keys::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::TimeDelta::seconds(1)),
        )
        .filter(api_keys::Column::Id.eq(expired.key.id))
        .exec(&t.owner)
        .await
        .expect("expire a key");
    let bearer = |key: &str| format!("Bearer {key}");

    // A valid key acts as its user.
    let auth = bearer(&full.secret);
    let body = Some(json!({"name": "Keyed app"}));
    let (status, _, project) =
        send(db, "POST", "/projects", &[("authorization", &auth)], body).await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    assert_eq!(project["user_id"], json!(a.to_string()));
    let (status, _, page) = send(db, "GET", "/projects", &[("authorization", &auth)], None).await;
    assert_eq!((status, names(&page)), (StatusCode::OK, vec!["Keyed app"]));
    // The key wins over the stand-in header, whoever that names.
    let b_id = b.to_string();
    let both = [
        ("authorization", auth.as_str()),
        (app::USER_HEADER, b_id.as_str()),
    ];
    let (status, _, page) = send(db, "GET", "/projects", &both, None).await;
    assert_eq!((status, names(&page)), (StatusCode::OK, vec!["Keyed app"]));
    // The scheme is case-insensitive.
    let lower = format!("bearer {}", full.secret);
    let (status, _, _) = send(db, "GET", "/projects", &[("authorization", &lower)], None).await;
    assert_eq!(status, StatusCode::OK);

    // Scopes: GET needs read, anything else write.
    let read_only = bearer(&reader.secret);
    let (status, _, _) = send(
        db,
        "GET",
        "/projects",
        &[("authorization", &read_only)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body = Some(json!({"name": "Nope"}));
    let (status, _, error) = send(
        db,
        "POST",
        "/projects",
        &[("authorization", &read_only)],
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    assert_eq!(error["error"]["code"], "forbidden");
    let write_only = bearer(&writer.secret);
    let (status, _, _) = send(
        db,
        "POST",
        "/projects",
        &[("authorization", &write_only)],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, error) = send(
        db,
        "GET",
        "/projects",
        &[("authorization", &write_only)],
        None,
    )
    .await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );

    // Revoked, expired, unknown and tampered keys: one and the same 401.
    let mut tampered = full.secret.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).expect("ASCII");
    let unknown = format!("forge_0123456789ab_{}", "c".repeat(64));
    let mut answers = Vec::new();
    for (what, key) in [
        ("revoked", revoked.secret.as_str()),
        ("expired", expired.secret.as_str()),
        ("unknown", unknown.as_str()),
        ("tampered", tampered.as_str()),
    ] {
        let auth = bearer(key);
        let (status, challenge, error) =
            send(db, "GET", "/projects", &[("authorization", &auth)], None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {error}");
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{what}");
        assert_eq!(error["error"]["code"], "unauthenticated", "{what}");
        answers.push(error);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // A bad key is not rescued by the stand-in header.
    let auth = bearer(&revoked.secret);
    let a_id = a.to_string();
    let both = [
        ("authorization", auth.as_str()),
        (app::USER_HEADER, a_id.as_str()),
    ];
    let (status, _, _) = send(db, "GET", "/projects", &both, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let basic = [("authorization", "Basic YWRhOnNlY3JldA==")];
    let (status, _, error) = send(db, "GET", "/projects", &basic, None).await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthenticated"))
    );
}

on_both_backends! {
    api_keys => api_keys_authenticate_requests;
    exports => exports_download_the_users_conversations;
    isolation => users_see_only_their_own_projects;
    sessions => sessions_and_events_belong_to_their_user;
    errors => errors_map_to_statuses;
    event_stream => events_stream_as_server_sent_events;
}

/// `GET /sessions/{id}/events/stream`: Server-Sent Events from `Last-Event-ID` on, each
/// event once with its `seq` as id, ending once the session has ended; someone else's
/// session is 404 before any stream starts.
async fn events_stream_as_server_sent_events(t: &TestDb) {
    use forge_db::entity::coding_sessions::SessionStatus;
    use forge_db::service::sessions;
    let db = &t.db;
    let (a, b) = (signup(db, "ada").await, signup(db, "bob").await);
    let session = project_and_session(db, a, json!({"prompt": "Go"})).await;
    let session_id: SessionId = session["id"].as_str().expect("id").parse().expect("uuid");
    for kind in [
        EventType::Thinking,
        EventType::FileChange,
        EventType::Terminal,
    ] {
        events::append(
            db,
            Actor::Service,
            session_id,
            kind,
            json!({"k": kind.to_string()}),
        )
        .await
        .expect("append");
    }
    sessions::transition(db, Actor::Service, session_id, SessionStatus::Failed)
        .await
        .expect("end the session");

    let stream_uri = format!("/sessions/{session_id}/events/stream");
    let request = |user: ProfileId, last: Option<&str>| {
        let mut request = Request::builder()
            .uri(&stream_uri)
            .header(app::USER_HEADER, user.to_string());
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        request.body(Body::empty()).expect("request")
    };
    let response = app::router(db.clone())
        .oneshot(request(a, Some("1")))
        .await
        .expect("the router never fails");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        axum::body::to_bytes(response.into_body(), 1 << 20),
    )
    .await
    .expect("the stream ends with the session")
    .expect("body");
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(ids, ["2", "3"], "{text}");
    assert_eq!(kinds, ["file_change", "terminal"], "{text}");

    for (user, last, status) in [
        (b, None, StatusCode::NOT_FOUND),
        (a, Some("soon"), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let response = app::router(db.clone())
            .oneshot(request(user, last))
            .await
            .expect("the router never fails");
        assert_eq!(response.status(), status);
    }
}
