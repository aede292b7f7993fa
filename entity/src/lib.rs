//! SeaORM entities for Forge's database.
//!
//! One module per table of the schema contract (`SCHEMA.md`): the `Model`, its
//! `Column`s, its `Relation`s and `Related` impls, the Rust enums of its enum-like
//! `text` columns, the typed structs of its JSON columns with a known shape, and an
//! `ActiveModelBehavior` that fills in ids and timestamps. Nothing else lives here:
//! queries, validation and business rules belong to `forge-service`.
//!
//! The crate depends on `sea-orm` without any driver or async runtime feature, so it
//! compiles quickly and can be shared by the migrations, the services and the tests.
//! The tables themselves are created by `forge-migration`, never from these entities.
//!
//! Every entity's `ActiveModelBehavior` does the same three things:
//! - on insert, `id` becomes a fresh random (v4) id of the table's typed id (see [`ids`])
//!   and `created_at` becomes now, unless the caller set them;
//! - on insert, `updated_at` becomes now unless the caller set it; on every update it
//!   becomes now, whatever the caller set (the PostgreSQL `BEFORE UPDATE` trigger does
//!   the same). `session_events`, `conversation_turns`, `job_events`, `artifacts`,
//!   `generation_logs`, `export_logs`, `credit_transactions`, `notifications` and
//!   `activity_logs` have no `updated_at`.
//!
//! `jobs` ([`pipeline_runs`]) and [`prompts`] are keyed by text the caller chooses
//! (`run_id`, `id`), and [`notification_preferences`] by its profile's id: their hooks
//! fill in only the timestamps.
//!
//! The hooks only run through `ActiveModel::insert`, `update` and `save`; bulk
//! statements such as `Entity::insert_many` or `Entity::update_many` bypass them.
//! Note that `save` treats an `ActiveModel` whose `id` is set as an existing row and
//! issues an `UPDATE`: to insert a row with an id chosen by the caller, call `insert`.
//!
//! Enum-like columns are Rust enums stored as their snake_case string (the same string
//! in JSON); each has `as_str`, [`Display`](std::fmt::Display) and
//! [`FromStr`](std::str::FromStr), the latter failing with [`UnknownVariant`].
//!
//! ```rust,no_run
//! use forge_entity::coding_sessions::{self, SessionStatus};
//! use forge_entity::prelude::*;
//! use sea_orm::{
//!     ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
//!     PaginatorTrait, QueryFilter,
//! };
//!
//! async fn live_sessions(db: &impl ConnectionTrait, owner: ProfileId) -> Result<u64, DbErr> {
//!     // `id`, `created_at` and `updated_at` are filled in by `ActiveModelBehavior`;
//!     // columns left `NotSet` take their database defaults (`status` = 'active').
//!     let _project = forge_entity::projects::ActiveModel {
//!         user_id: Set(owner),
//!         name: Set("Weather app".to_owned()),
//!         ..Default::default()
//!     }
//!     .insert(db)
//!     .await?;
//!
//!     CodingSessions::find()
//!         .filter(coding_sessions::Column::UserId.eq(owner))
//!         .filter(coding_sessions::Column::Status.is_in(SessionStatus::LIVE.iter().copied()))
//!         .count(db)
//!         .await
//! }
//! ```
#![warn(missing_docs)]

use std::fmt;

/// Defines an enum stored in a `text` column (with a `CHECK (col IN (...))` on the
/// database side) from one list of `Variant = "string"` pairs, so the database value,
/// the JSON value, `as_str` and `FromStr` can never drift apart.
///
/// The enum derives `Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter,
/// DeriveActiveEnum, Serialize, Deserialize` with
/// `#[sea_orm(rs_type = "String", db_type = "Text")]` (`db_type` is pasted into
/// `sea_orm::ColumnType::…`, so `"Text"` gives a plain `text` column), and gets an
/// `ALL` constant, `as_str`, `Display` and `FromStr`. Extra attributes on the enum or
/// its variants (docs, `#[derive(Default)]` with `#[default]`) are passed through.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident = $value:tt
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            ::sea_orm::EnumIter,
            ::sea_orm::DeriveActiveEnum,
            ::serde::Serialize,
            ::serde::Deserialize,
        )]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        pub enum $name {
            $(
                $(#[$variant_meta])*
                #[sea_orm(string_value = $value)]
                #[serde(rename = $value)]
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The string stored in the database and used in JSON.
            pub const fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $value,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownVariant;

            fn from_str(value: &str) -> ::std::result::Result<Self, Self::Err> {
                match value {
                    $($value => Ok(Self::$variant),)+
                    _ => Err($crate::UnknownVariant {
                        kind: stringify!($name),
                        value: value.to_owned(),
                        expected: &[$($value),+],
                    }),
                }
            }
        }
    };
}

/// Implements `ActiveModelBehavior` for the `ActiveModel` in scope: on insert, `id`
/// (a new v4 uuid, converted into the table's typed id by its `From<Uuid>`) and
/// `created_at` (now) are filled in when `NotSet`. Given the name
/// of an `updated_at` field, that field is also filled in on insert when `NotSet` and
/// overwritten with now on every update.
macro_rules! stamped_active_model_behavior {
    ($($updated_at:ident)?) => {
        #[::sea_orm::prelude::async_trait::async_trait]
        impl ::sea_orm::ActiveModelBehavior for ActiveModel {
            async fn before_save<C>(
                mut self,
                _db: &C,
                insert: bool,
            ) -> ::std::result::Result<Self, ::sea_orm::DbErr>
            where
                C: ::sea_orm::ConnectionTrait,
            {
                let now = ::chrono::Utc::now();
                if insert {
                    self.id.set_if_unset_with(|| ::uuid::Uuid::new_v4().into());
                    self.created_at.set_if_unset(now);
                }
                $($crate::touch(&mut self.$updated_at, insert, now);)?
                Ok(self)
            }
        }
    };
}

/// Implements `ActiveModelBehavior` for an `ActiveModel` whose primary key the caller
/// always gives (a `text` key such as `jobs.run_id`): on insert `created_at` becomes now
/// when `NotSet`; given the name of an `updated_at` field, that field is filled in on
/// insert when `NotSet` and overwritten with now on every update.
macro_rules! keyed_active_model_behavior {
    ($($updated_at:ident)?) => {
        #[::sea_orm::prelude::async_trait::async_trait]
        impl ::sea_orm::ActiveModelBehavior for ActiveModel {
            async fn before_save<C>(
                mut self,
                _db: &C,
                insert: bool,
            ) -> ::std::result::Result<Self, ::sea_orm::DbErr>
            where
                C: ::sea_orm::ConnectionTrait,
            {
                let now = ::chrono::Utc::now();
                if insert {
                    self.created_at.set_if_unset(now);
                }
                $($crate::touch(&mut self.$updated_at, insert, now);)?
                Ok(self)
            }
        }
    };
}

/// The largest JSON document any JSON column accepts, in bytes of its text form (as
/// PostgreSQL prints a `jsonb`): 64 KiB. The database refuses more (a `CHECK` on
/// PostgreSQL, a trigger on SQLite), and the repositories refuse it before writing.
pub const JSON_MAX_BYTES: usize = 65_536;

pub mod activity_logs;
pub mod api_keys;
pub mod artifacts;
pub mod batch_items;
pub mod batch_jobs;
pub mod coding_jobs;
pub mod coding_sessions;
pub mod conversation_turns;
pub mod conversations;
pub mod credit_accounts;
pub mod credit_transactions;
pub mod edge_cases;
pub mod ids;

pub mod export_logs;
pub mod generation_logs;
pub mod notification_preferences;
pub mod notifications;
pub mod pipeline_events;
pub mod pipeline_runs;
pub mod prelude;
pub mod profiles;
pub mod projects;
pub mod prompts;
pub mod scenarios;
pub mod session_events;
pub mod templates;
pub mod usage_metrics;

/// The `updated_at` rule shared by every entity that has the column.
fn touch(
    updated_at: &mut sea_orm::ActiveValue<sea_orm::prelude::DateTimeUtc>,
    insert: bool,
    now: sea_orm::prelude::DateTimeUtc,
) {
    if insert {
        updated_at.set_if_unset(now);
    } else {
        *updated_at = sea_orm::ActiveValue::Set(now);
    }
}

/// A string that names none of an enum's variants, returned by the `FromStr` impl of
/// every enum in this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariant {
    /// The Rust name of the enum, e.g. `"SessionStatus"`.
    pub kind: &'static str,
    /// The string that was given.
    pub value: String,
    /// The strings the enum accepts, in declaration order.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}, expected one of: {}",
            self.kind,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownVariant {}

#[cfg(test)]
mod test_support {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use sea_orm::{ActiveModelBehavior, DatabaseConnection, DbErr};

    /// Runs `before_save` to completion. The hooks never await anything, so a
    /// single poll finishes them; no runtime or database is needed.
    pub(crate) fn before_save<A: ActiveModelBehavior + Send>(
        am: A,
        insert: bool,
    ) -> Result<A, DbErr> {
        let db = DatabaseConnection::default();
        let mut future = pin!(am.before_save(&db, insert));
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(DbErr::Custom("before_save did not complete".to_owned())),
        }
    }

    /// Asserts that every variant's `as_str` parses back to itself, that the strings
    /// are also its database and JSON values, and that an unknown string is refused.
    macro_rules! assert_round_trips {
        ($($ty:ty),+ $(,)?) => {$({
            use sea_orm::{ActiveEnum, Iterable};
            let all: Vec<$ty> = <$ty>::iter().collect();
            assert_eq!(all.as_slice(), <$ty>::ALL);
            for variant in all {
                let s = variant.as_str();
                assert_eq!(s.parse::<$ty>(), Ok(variant));
                assert_eq!(variant.to_string(), s);
                assert_eq!(variant.to_value(), s);
                assert_eq!(serde_json::to_value(variant).ok(), Some(serde_json::json!(s)));
                assert_eq!(serde_json::from_value::<$ty>(serde_json::json!(s)).ok(), Some(variant));
            }
            let err = "no such value".parse::<$ty>().err();
            assert_eq!(err.map(|e| (e.kind, e.value)), Some((stringify!($ty), "no such value".to_owned())));
        })+};
    }
    pub(crate) use assert_round_trips;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_variant_names_what_is_accepted() {
        let err = "gold".parse::<profiles::Tier>().err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(r#"unknown Tier "gold", expected one of: free, pro, enterprise"#.to_owned())
        );
    }

    #[test]
    fn insert_fills_id_and_timestamps_but_keeps_given_values() -> Result<(), sea_orm::DbErr> {
        use sea_orm::ActiveValue::{NotSet, Set};

        let before = chrono::Utc::now();
        let filled = test_support::before_save(profiles::ActiveModel::default(), true)?;
        assert!(filled.id.is_set());
        assert!(filled.created_at.is_set_and(|t| *t >= before));
        assert_eq!(filled.updated_at, filled.created_at);
        assert_eq!(filled.email, NotSet);

        let id = ids::ProfileId::new();
        let then = before - chrono::Duration::days(3);
        let given = profiles::ActiveModel {
            id: Set(id),
            created_at: Set(then),
            updated_at: Set(then),
            ..Default::default()
        };
        let kept = test_support::before_save(given, true)?;
        assert_eq!(kept.id, Set(id));
        assert_eq!(kept.created_at, Set(then));
        assert_eq!(kept.updated_at, Set(then));

        let event = test_support::before_save(session_events::ActiveModel::default(), true)?;
        assert!(event.id.is_set() && event.created_at.is_set());
        assert_eq!(event.seq, NotSet, "seq is left to the database");
        Ok(())
    }

    #[test]
    fn update_refreshes_updated_at_and_nothing_else() -> Result<(), sea_orm::DbErr> {
        use sea_orm::ActiveValue::{NotSet, Set, Unchanged};

        let id = ids::BatchId::new();
        let then = chrono::Utc::now() - chrono::Duration::days(3);
        let job = batch_jobs::ActiveModel {
            id: Unchanged(id),
            created_at: Unchanged(then),
            updated_at: Set(then),
            ..Default::default()
        };
        let job = test_support::before_save(job, false)?;
        assert_eq!(job.id, Unchanged(id));
        assert_eq!(job.created_at, Unchanged(then));
        assert_eq!(job.name, NotSet);
        assert!(job.updated_at.is_set_and(|t| *t > then));

        let turn = conversation_turns::ActiveModel {
            id: Unchanged(ids::TurnId::new()),
            ..Default::default()
        };
        let turn = test_support::before_save(turn, false)?;
        assert_eq!(turn.created_at, NotSet);
        Ok(())
    }
}
