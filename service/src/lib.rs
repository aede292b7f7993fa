//! Typed repositories over Forge's schema.
//!
//! One module per aggregate (profiles, projects, sessions, events, jobs, conversations,
//! batches, batch items, pipeline runs, prompts, credits, notifications, usage, activity), so no application writes a query by hand. Every call runs for an [`Actor`]: a user sees
//! and changes only their own rows (on PostgreSQL twice over: the repository filters by
//! owner, and the call runs under the user's row-level security context), the service sees
//! everything. Something another user owns looks exactly like something that does not
//! exist ([`ForgeError::NotFound`]).
//!
//! Every function takes any [`Connection`]: the pool, or a transaction of the caller's
//! opened with [`begin`] (the call then runs in a savepoint and leaves the transaction as
//! it found it). Reads may go to a streaming replica ([`replicas`]), and
//! [`events::subscribe`] streams a session's events live.
//! Multi-statement writes are atomic, and a call's future may be dropped at any `.await`
//! without harming the pool or the caller's transaction (see the README, "Cancellation and
//! faults"). Workers use [`jobs`] and [`batch_items`], the two queues, and bots
//! [`pipeline`]. With the `testing` feature, `testing` gives each test its own migrated
//! database and fixture builders.
//!
//! ```no_run
//! use forge_service::profiles::{self, NewProfile};
//! use forge_service::projects::{self, NewProject};
//! use forge_service::{Actor, ForgeError};
//!
//! # async fn run(db: &sea_orm::DatabaseConnection) -> forge_service::Result<()> {
//! let ada = profiles::create(db, Actor::Service, NewProfile::new("ada@example.com")).await?;
//! let project = projects::create(db, Actor::User(ada.id), NewProject::new(ada.id, "Weather")).await?;
//!
//! // To anyone else, Ada's project does not exist.
//! let bob = profiles::create(db, Actor::Service, NewProfile::new("bob@example.com")).await?;
//! let err = projects::get(db, Actor::User(bob.id), project.id).await.unwrap_err();
//! assert!(matches!(err, ForgeError::NotFound { .. }));
//! # Ok(()) }
//! ```
//!
//! Ids are typed ([`entity::ids`]): every table's key is its own type, in the models and in
//! every signature here, so an id of one kind passed where another is expected does not
//! compile. A session's `id` is a `SessionId`, not the `ProjectId` that `projects::get`
//! takes (`session.project_id` is):
//!
//! ```compile_fail
//! # use forge_service::{Actor, projects};
//! # use forge_service::entity::coding_sessions;
//! # async fn run(
//! #     db: &sea_orm::DatabaseConnection,
//! #     actor: Actor,
//! #     session: coding_sessions::Model,
//! # ) -> forge_service::Result<()> {
//! let project = projects::get(db, actor, session.id).await?; // error: expected `ProjectId`
//! # let _ = project;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod actor;
mod error;
mod pagination;
mod scoped;
mod validate;

pub mod activity;
pub mod api_keys;
pub mod batch_items;
pub mod batches;
pub mod conversations;
pub mod credits;
pub mod events;
pub mod exports;
pub mod generation;
pub mod jobs;
pub mod notifications;
pub mod pipeline;
pub mod profiles;
pub mod projects;
pub mod prompts;
pub mod replicas;
pub mod scenarios;
pub mod sessions;
pub mod templates;
#[cfg(feature = "testing")]
pub mod testing;
pub mod usage;

pub use actor::{Access, Actor, Connection, ScopedFuture, begin, run_as};
pub use error::{ForgeError, Result};
pub use forge_entity as entity;
/// Now, to the microsecond: the precision PostgreSQL keeps, so a row written with it reads
/// back equal on both backends (and a page cursor names it exactly).
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

pub use pagination::{Cursor, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, PageRequest};
