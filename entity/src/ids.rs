//! Typed ids: one newtype per table key, so that passing one kind of id where another is
//! expected does not compile.
//!
//! ```compile_fail
//! use forge_entity::ids::{ProjectId, SessionId};
//! fn project(_: ProjectId) {}
//! project(SessionId::new()); // a session id is not a project id
//! ```
//!
//! Each uuid id is stored exactly like the bare [`Uuid`] it wraps (a `uuid` on
//! PostgreSQL, 16 bytes in a `BLOB` on SQLite, so raw SQL there compares with `X'…'`), serializes as the plain uuid string (`#[serde(transparent)]`),
//! and has [`Display`](std::fmt::Display) / [`FromStr`] in the
//! hyphenated form, `new()` (a fresh random v4 id) and lossless conversions to and from
//! [`Uuid`] for the boundaries where an id arrives untyped (a URL path, a JWT `sub`).
//!
//! The text keys of the pipeline ([`RunId`], [`PromptId`]) are chosen by their callers;
//! they wrap a `String` the same way.

use std::fmt;
use std::str::FromStr;

use sea_orm::DeriveValueType;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Defines a uuid-backed id newtype.
macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            DeriveValueType,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// The id of an existing uuid.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The uuid inside.
            pub const fn into_uuid(self) -> Uuid {
                self.0
            }

            /// The uuid inside, by reference.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
                Err(sea_orm::DbErr::ConvertFromU64(stringify!($name)))
            }
        }
    };
}

/// Defines a text-backed id newtype (a key its caller chooses).
macro_rules! text_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, DeriveValueType,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id with this text (checked by the repositories, not here).
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The text of the id.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The text of the id, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = std::convert::Infallible;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self(s.to_owned()))
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
                Err(sea_orm::DbErr::ConvertFromU64(stringify!($name)))
            }
        }
    };
}

uuid_id!(
    /// A profile's id, `profiles.id` (the auth user's id on Supabase).
    ProfileId
);
uuid_id!(
    /// A project's id, `projects.id`.
    ProjectId
);
uuid_id!(
    /// A coding session's id, `coding_sessions.id`.
    SessionId
);
uuid_id!(
    /// A coding job's id, `coding_jobs.id`.
    JobId
);
uuid_id!(
    /// A session event's id, `session_events.id`.
    EventId
);
uuid_id!(
    /// A conversation's id, `conversations.id`.
    ConversationId
);
uuid_id!(
    /// A conversation turn's id, `conversation_turns.id`.
    TurnId
);
uuid_id!(
    /// A batch's id, `batch_jobs.id`.
    BatchId
);
uuid_id!(
    /// A batch item's id, `batch_items.id`.
    BatchItemId
);
uuid_id!(
    /// A pipeline run event's id, `job_events.id`.
    RunEventId
);
uuid_id!(
    /// An artifact's id, `artifacts.id`.
    ArtifactId
);
uuid_id!(
    /// A conversation template's id, `templates.id`.
    TemplateId
);
uuid_id!(
    /// A scenario's id, `scenarios.id`.
    ScenarioId
);
uuid_id!(
    /// An edge case's id, `edge_cases.id`.
    EdgeCaseId
);
uuid_id!(
    /// A generation log's id, `generation_logs.id`.
    GenerationLogId
);
uuid_id!(
    /// An export's id, `export_logs.id`.
    ExportId
);
uuid_id!(
    /// A credit account's id, `credit_accounts.id`.
    CreditAccountId
);
uuid_id!(
    /// A ledger row's id, `credit_transactions.id`.
    CreditTransactionId
);
uuid_id!(
    /// An API key's id, `api_keys.id`.
    ApiKeyId
);
uuid_id!(
    /// A notification's id, `notifications.id`.
    NotificationId
);
uuid_id!(
    /// A usage row's id, `usage_metrics.id`.
    UsageMetricId
);
uuid_id!(
    /// An activity log row's id, `activity_logs.id`.
    ActivityId
);
text_id!(
    /// A pipeline run's key, `jobs.run_id` (chosen by the bot that starts it).
    RunId
);
text_id!(
    /// A prompt's key, `prompts.id` (chosen by whoever writes it).
    PromptId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_id_reads_writes_and_serializes_as_its_uuid() {
        let raw = Uuid::new_v4();
        let id = ProjectId::from(raw);
        assert_eq!(id.to_string(), raw.to_string());
        assert_eq!(raw.to_string().parse::<ProjectId>().unwrap(), id);
        assert!("not a uuid".parse::<ProjectId>().is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{raw}\""));
        assert_eq!(
            serde_json::from_str::<ProjectId>(&format!("\"{raw}\"")).unwrap(),
            id
        );
        assert_eq!(sea_orm::Value::from(id), sea_orm::Value::from(raw));
        assert_eq!(Uuid::from(id), raw);
        assert_ne!(ProjectId::new(), ProjectId::new());
        assert!(format!("{id:?}").starts_with("ProjectId("));
    }

    #[test]
    fn a_text_id_reads_writes_and_serializes_as_its_text() {
        let id = RunId::new("run-1");
        assert_eq!(id.to_string(), "run-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"run-1\"");
        assert_eq!(
            sea_orm::Value::from(id.clone()),
            sea_orm::Value::from("run-1")
        );
        assert_eq!(String::from(id), "run-1");
    }
}
