//! Exports (`forge_db::service::exports`) on SQLite and PostgreSQL: every format parsed
//! back and compared with the stored rows (text with quotes, commas, newlines and emoji),
//! the filters, isolation between users, the `export_logs` row of a completed and of a
//! failed export, and paging past one page of conversations.

mod common;

use forge_db::entity::ids::{ConversationId, ExportId, ProfileId, TemplateId};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use common::TestDb;
use forge_db::entity::conversation_turns::TurnRole;
use forge_db::entity::conversations::{ConversationStatus, ConversationTier};
use forge_db::entity::export_logs::{self, ExportFormat, ExportStatus};
use forge_db::sea_orm::{DatabaseConnection, EntityTrait};
use forge_db::service::conversations::{self, ConversationWithTurns, NewConversation, NewTurn};
use forge_db::service::exports::{self, ExportRequest, ExportSummary};
use forge_db::service::testing::fixtures;
use forge_db::service::{Actor, ForgeError, PageRequest};
use serde_json::{Value, json};
use uuid::Uuid;

/// Turn texts that need quoting or escaping in every format.
const TRICKY: [&str; 4] = [
    "He said \"hi\", then left.",
    "Line one\nline two, with a comma\r\nand a CRLF",
    "Emoji 🙂🚀 and accents: café, naïve — \"quoted, too\"",
    "Tabs\tand \\backslashes\\ and a trailing quote\"",
];

async fn profile(db: &DatabaseConnection) -> ProfileId {
    common::signup(db, &fixtures::unique_email()).await
}

/// A conversation of `owner` with `turns` (alternating user / assistant), created by the
/// service as a generator does, then reviewed into `status` (`generated` stays as is).
async fn conversation(
    db: &DatabaseConnection,
    owner: ProfileId,
    reviewer: ProfileId,
    tier: ConversationTier,
    status: ConversationStatus,
    turns: &[&str],
) -> ConversationWithTurns {
    let new = NewConversation {
        owner: Some(owner),
        conversation_id: format!("conv-{}", Uuid::new_v4().simple()),
        title: Some("Pricing, \"plans\" & 🙂".to_owned()),
        tier,
        persona: "founder".to_owned(),
        emotion: "curious".to_owned(),
        topic: "pricing".to_owned(),
        intent: "learn".to_owned(),
        tone: "friendly".to_owned(),
        category: vec!["billing".to_owned()],
        parameters: json!({}),
        turns: turns
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let role = if i % 2 == 0 {
                    TurnRole::User
                } else {
                    TurnRole::Assistant
                };
                NewTurn::new(role, *text, 3 + i as i32)
            })
            .collect(),
    };
    let svc = Actor::Service;
    let created = conversations::create(db, svc, new).await.expect("create");
    let id = created.conversation.id;
    if status != ConversationStatus::Generated {
        conversations::submit_for_review(db, svc, id, None)
            .await
            .expect("submit");
        match status {
            ConversationStatus::Approved => {
                conversations::approve(db, svc, id, reviewer, None).await
            }
            ConversationStatus::Rejected => {
                conversations::reject(db, svc, id, reviewer, "off topic").await
            }
            _ => Ok(created.conversation.clone()),
        }
        .expect("review");
    }
    conversations::get_with_turns(db, svc, id)
        .await
        .expect("read back")
}

async fn export(
    db: &DatabaseConnection,
    actor: Actor,
    request: ExportRequest,
) -> (ExportSummary, String) {
    let mut out = Vec::new();
    let summary = exports::write(db, actor, request, &mut out)
        .await
        .expect("export");
    assert_eq!(
        summary.bytes,
        out.len() as u64,
        "bytes counts what was written"
    );
    (summary, String::from_utf8(out).expect("UTF-8"))
}

async fn log_row(db: &DatabaseConnection, id: ExportId) -> export_logs::Model {
    common::as_service(db, move |txn| {
        Box::pin(async move { Ok(export_logs::Entity::find_by_id(id).one(txn).await?) })
    })
    .await
    .expect("the export's log row")
}

/// The JSONL lines as lists of `(role, content)`.
fn jsonl(text: &str) -> Vec<Vec<(String, String)>> {
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            v["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|m| {
                    (
                        m["role"].as_str().expect("role").to_owned(),
                        m["content"].as_str().expect("content").to_owned(),
                    )
                })
                .collect()
        })
        .collect()
}

fn messages(c: &ConversationWithTurns) -> Vec<(String, String)> {
    c.turns
        .iter()
        .map(|t| (t.role.as_str().to_owned(), t.content.clone()))
        .collect()
}

/// A small RFC 4180 reader: records of fields, quotes doubled inside quoted fields,
/// records ending in CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                assert!(field.is_empty(), "a quote inside an unquoted field");
                quoted = true;
            }
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "records end in CRLF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            '\n' => panic!("a bare LF outside a quoted field"),
            c => field.push(c),
        }
    }
    assert!(!quoted, "an unterminated quoted field");
    assert!(
        field.is_empty() && record.is_empty(),
        "the last record ends in CRLF"
    );
    records
}

async fn every_format_round_trips(t: &TestDb) {
    let db = &t.db;
    let (ada, reviewer) = (profile(db).await, profile(db).await);
    let tier = ConversationTier::Template;
    let approved = ConversationStatus::Approved;
    let first = conversation(db, ada, reviewer, tier, approved, &TRICKY).await;
    let second = conversation(db, ada, reviewer, tier, approved, &["Hi", "Hello 👋"]).await;
    let sources = [&first, &second];
    let me = Actor::User(ada);

    // JSONL: one line per conversation, the fine-tuning messages.
    let (summary, text) = export(db, me, ExportRequest::new(ExportFormat::Jsonl)).await;
    assert_eq!(
        (summary.conversation_count, summary.turn_count),
        (2, 6),
        "{summary:?}"
    );
    assert_eq!(
        jsonl(&text),
        sources.iter().map(|c| messages(c)).collect::<Vec<_>>()
    );

    // JSON: one array, every column of the conversation and its turns.
    let (_, text) = export(db, me, ExportRequest::new(ExportFormat::Json)).await;
    let parsed: Value = serde_json::from_str(&text).expect("a JSON document");
    let items = parsed.as_array().expect("an array");
    assert_eq!(items.len(), 2);
    for (item, source) in items.iter().zip(sources) {
        let c = &source.conversation;
        assert_eq!(item["id"], json!(c.id));
        assert_eq!(item["conversation_id"], json!(c.conversation_id));
        assert_eq!(item["title"], json!(c.title));
        assert_eq!(item["status"], "approved");
        assert_eq!(item["tier"], "template");
        assert_eq!(item["total_turns"], json!(c.total_turns));
        assert_eq!(item["created_by"], json!(ada));
        let turns = item["turns"].as_array().expect("turns");
        let expected: Vec<Value> = source
            .turns
            .iter()
            .map(|t| serde_json::to_value(t).expect("turn"))
            .collect();
        assert_eq!(turns, &expected);
    }

    // CSV: a header, then one row per turn.
    let (summary, text) = export(db, me, ExportRequest::new(ExportFormat::Csv)).await;
    assert_eq!(summary.conversation_count, 2);
    let records = parse_csv(&text);
    assert_eq!(
        records[0],
        [
            "conversation_id",
            "title",
            "tier",
            "status",
            "turn_number",
            "role",
            "content",
            "token_count"
        ]
    );
    let expected: Vec<Vec<String>> = sources
        .iter()
        .flat_map(|c| {
            c.turns.iter().map(|t| {
                vec![
                    c.conversation.conversation_id.clone(),
                    c.conversation.title.clone().unwrap_or_default(),
                    "template".to_owned(),
                    "approved".to_owned(),
                    t.turn_number.to_string(),
                    t.role.as_str().to_owned(),
                    t.content.clone(),
                    t.token_count.to_string(),
                ]
            })
        })
        .collect();
    assert_eq!(records[1..], expected[..]);

    // Markdown: a heading per conversation, a block per turn, in order.
    let (_, text) = export(db, me, ExportRequest::new(ExportFormat::Markdown)).await;
    let sections: Vec<&str> = text.split("---\n\n").filter(|s| !s.is_empty()).collect();
    assert_eq!(sections.len(), 2, "{text}");
    for (section, source) in sections.iter().zip(sources) {
        assert!(
            section.starts_with("## Pricing, \"plans\" & 🙂\n"),
            "{section}"
        );
        assert!(section.contains(&source.conversation.conversation_id));
        let mut at = 0;
        for turn in &source.turns {
            let speaker = match turn.role {
                TurnRole::User => "User",
                TurnRole::Assistant => "Assistant",
            };
            let block = format!(
                "### {}. {speaker}\n\n{}\n\n",
                turn.turn_number, turn.content
            );
            let found = section[at..]
                .find(&block)
                .unwrap_or_else(|| panic!("turn {} in order in {section}", turn.turn_number));
            at += found + block.len();
        }
    }

    // An empty export is still a valid file.
    let request = ExportRequest {
        status: Some(ConversationStatus::Rejected),
        ..ExportRequest::new(ExportFormat::Json)
    };
    let (summary, text) = export(db, me, request).await;
    assert_eq!(summary.conversation_count, 0);
    assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(json!([])));
}

async fn filters_choose_the_conversations(t: &TestDb) {
    let db = &t.db;
    let (ada, reviewer) = (profile(db).await, profile(db).await);
    let (template, scenario) = (ConversationTier::Template, ConversationTier::Scenario);
    let (approved, generated) = (ConversationStatus::Approved, ConversationStatus::Generated);
    let old = conversation(db, ada, reviewer, template, approved, &["old"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let new = conversation(db, ada, reviewer, scenario, approved, &["new"]).await;
    let draft = conversation(db, ada, reviewer, template, generated, &["gen"]).await;
    let rejected = conversation(
        db,
        ada,
        reviewer,
        template,
        ConversationStatus::Rejected,
        &["no"],
    )
    .await;
    let me = Actor::User(ada);
    let first_turns =
        |text: &str| -> Vec<String> { jsonl(text).into_iter().map(|m| m[0].1.clone()).collect() };
    let run = |request: ExportRequest| async move {
        let (_, text) = export(db, me, request).await;
        first_turns(&text)
    };
    let base = ExportRequest::new(ExportFormat::Jsonl);

    assert_eq!(
        run(base.clone()).await,
        ["old", "new"],
        "approved by default"
    );
    let with = |status| ExportRequest {
        status,
        ..base.clone()
    };
    assert_eq!(run(with(Some(generated))).await, ["gen"]);
    assert_eq!(run(with(Some(ConversationStatus::Rejected))).await, ["no"]);
    assert_eq!(run(with(None)).await, ["old", "new", "gen", "no"]);
    let by_tier = ExportRequest {
        tier: Some(scenario),
        ..base.clone()
    };
    assert_eq!(run(by_tier).await, ["new"]);
    let from = ExportRequest {
        created_from: Some(new.conversation.created_at),
        ..base.clone()
    };
    assert_eq!(run(from).await, ["new"]);
    let before = ExportRequest {
        created_before: Some(new.conversation.created_at),
        ..base.clone()
    };
    assert_eq!(run(before).await, ["old"]);
    let window = ExportRequest {
        created_from: Some(old.conversation.created_at),
        created_before: Some(new.conversation.created_at),
        ..with(None)
    };
    assert_eq!(run(window).await, ["old"]);
    let template_filter = ExportRequest {
        template_id: Some(TemplateId::new()),
        ..base.clone()
    };
    assert!(run(template_filter).await.is_empty());

    // The query-string form.
    let parsed = ExportRequest::parse("jsonl", Some("all"), Some("template")).expect("parse");
    assert_eq!(run(parsed).await, ["old", "gen", "no"]);
    let bad = ExportRequest::parse("xml", None, None);
    assert!(matches!(
        bad,
        Err(ForgeError::Validation {
            field: "format",
            ..
        })
    ));
    let backwards = ExportRequest {
        created_from: Some(new.conversation.created_at),
        created_before: Some(old.conversation.created_at),
        ..base.clone()
    };
    let err = exports::write(db, me, backwards, Vec::new()).await;
    assert!(matches!(err, Err(ForgeError::Validation { .. })), "{err:?}");
    let _ = (draft, rejected);
}

async fn users_export_only_their_own(t: &TestDb) {
    let db = &t.db;
    let (ada, bob, reviewer) = (profile(db).await, profile(db).await, profile(db).await);
    let (tier, approved) = (ConversationTier::Template, ConversationStatus::Approved);
    let a1 = conversation(db, ada, reviewer, tier, approved, &["ada one"]).await;
    let a2 = conversation(db, ada, reviewer, tier, approved, &["ada two"]).await;
    let b1 = conversation(db, bob, reviewer, tier, approved, &["bob one"]).await;
    let ids = |text: &str| -> Vec<ConversationId> {
        let v: Value = serde_json::from_str(text).expect("JSON");
        v.as_array()
            .expect("array")
            .iter()
            .map(|c| c["id"].as_str().expect("id").parse().expect("uuid"))
            .collect()
    };
    let json = ExportRequest::new(ExportFormat::Json);

    let (summary, text) = export(db, Actor::User(bob), json.clone()).await;
    assert_eq!(ids(&text), [b1.conversation.id], "none of Ada's");
    assert_eq!(log_row(db, summary.log_id).await.user_id, bob);

    // Bob cannot export as Ada, nor log his export under her name; nothing is logged.
    for request in [
        ExportRequest {
            owner: Some(ada),
            ..json.clone()
        },
        ExportRequest {
            requested_by: Some(ada),
            ..json.clone()
        },
    ] {
        let err = exports::write(db, Actor::User(bob), request, Vec::new()).await;
        assert!(
            matches!(
                err,
                Err(ForgeError::NotFound {
                    entity: "profile",
                    ..
                })
            ),
            "{err:?}"
        );
    }
    let ada_logs = exports::logs(db, Actor::User(ada), &PageRequest::first())
        .await
        .expect("Ada's logs");
    assert!(ada_logs.items.is_empty(), "{ada_logs:?}");
    let bob_logs = exports::logs(db, Actor::User(bob), &PageRequest::first())
        .await
        .expect("Bob's logs");
    assert_eq!(bob_logs.items.len(), 1);

    // The service exports one user's, or everyone's for a named requester.
    let for_ada = ExportRequest {
        owner: Some(ada),
        ..json.clone()
    };
    let (summary, text) = export(db, Actor::Service, for_ada).await;
    assert_eq!(ids(&text), [a1.conversation.id, a2.conversation.id]);
    assert_eq!(log_row(db, summary.log_id).await.user_id, ada);
    let everyone = ExportRequest {
        requested_by: Some(reviewer),
        ..json.clone()
    };
    let (summary, text) = export(db, Actor::Service, everyone).await;
    let mut all = ids(&text);
    all.sort();
    let mut expected = vec![a1.conversation.id, a2.conversation.id, b1.conversation.id];
    expected.sort();
    assert_eq!(all, expected);
    let row = log_row(db, summary.log_id).await;
    assert_eq!((row.user_id, row.conversation_count), (reviewer, 3));
    let nobody = exports::write(db, Actor::Service, json.clone(), Vec::new()).await;
    assert!(
        matches!(
            nobody,
            Err(ForgeError::Validation {
                field: "requested_by",
                ..
            })
        ),
        "{nobody:?}"
    );
    let all_logs = exports::logs(db, Actor::Service, &PageRequest::first())
        .await
        .expect("every log");
    assert_eq!(all_logs.items.len(), 3);
}

/// A writer that accepts `left` bytes, then fails.
struct FailAfter {
    left: usize,
}

impl tokio::io::AsyncWrite for FailAfter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.left == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

async fn the_log_records_the_outcome(t: &TestDb) {
    let db = &t.db;
    let (ada, reviewer) = (profile(db).await, profile(db).await);
    let (tier, approved) = (ConversationTier::Template, ConversationStatus::Approved);
    for _ in 0..3 {
        conversation(db, ada, reviewer, tier, approved, &TRICKY).await;
    }
    let me = Actor::User(ada);

    let request = ExportRequest::new(ExportFormat::Csv);
    let (summary, text) = export(db, me, request).await;
    let row = log_row(db, summary.log_id).await;
    assert_eq!(row.status, ExportStatus::Completed);
    assert_eq!(row.format, ExportFormat::Csv);
    assert_eq!(row.export_id, summary.export_id);
    assert_eq!(row.conversation_count, 3);
    assert_eq!(row.file_size, text.len() as i64);
    assert_eq!(row.error_message, None);
    assert!(row.completed_at.is_some_and(|at| at >= row.created_at));
    assert_eq!(row.scope["status"], "approved");
    assert_eq!(row.scope["format"], "csv");
    assert_eq!(row.scope["owner"], json!(ada));

    // The writer fails halfway: the call fails and the row says so.
    let err = exports::write(
        db,
        me,
        ExportRequest::new(ExportFormat::Jsonl),
        FailAfter { left: 100 },
    )
    .await
    .expect_err("the writer failed");
    assert!(err.to_string().contains("the client went away"), "{err}");
    let logs = exports::logs(db, me, &PageRequest::first())
        .await
        .expect("logs");
    let failed = &logs.items[0];
    assert_eq!(failed.status, ExportStatus::Failed);
    assert_eq!(failed.format, ExportFormat::Jsonl);
    assert!(
        failed
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("the client went away")),
        "{failed:?}"
    );
    assert!(failed.completed_at.is_some());
    assert_eq!(logs.items[1].id, summary.log_id);
}

async fn exports_page_through_many_conversations(t: &TestDb) {
    let db = &t.db;
    let ada = profile(db).await;
    let n = exports::PAGE_SIZE as usize * 2 + 7;
    let mut created = Vec::with_capacity(n);
    for _ in 0..n {
        let c = fixtures::conversation_with_turns(db, ada, 2)
            .await
            .expect("conversation");
        created.push(c.conversation.id);
    }
    let request = ExportRequest {
        status: None,
        ..ExportRequest::new(ExportFormat::Json)
    };
    let (summary, text) = export(db, Actor::User(ada), request).await;
    assert_eq!(
        (summary.conversation_count, summary.turn_count),
        (n as u64, 2 * n as u64)
    );
    let parsed: Value = serde_json::from_str(&text).expect("JSON");
    let ids: Vec<ConversationId> = parsed
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["id"].as_str().expect("id").parse().expect("uuid"))
        .collect();
    assert_eq!(ids, created, "every conversation once, oldest first");
}

on_both_backends! {
    formats => every_format_round_trips;
    filters => filters_choose_the_conversations;
    isolation => users_export_only_their_own;
    export_log => the_log_records_the_outcome;
    paging => exports_page_through_many_conversations;
}
