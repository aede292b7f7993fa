//! Profiles: one per user, keyed by the auth user's id.
//!
//! Invariants: the email is stored trimmed and lower-cased and is unique (a second
//! profile with the same email is a [`ForgeError::Conflict`]); the display name defaults
//! to the email's local part. Users read and edit only their own profile; creating one
//! (signup), changing tier or `sessions_limit`, the Stripe customer id
//! ([`set_stripe_customer_id`]) and erasing a user with everything they own ([`erase`])
//! are the service's.

use forge_entity::ids::ProfileId;
use forge_entity::profiles::{self, Tier};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Select, Set};

use crate::actor::{Access, Actor, Connection, run_as};
use crate::error::{ForgeError, Result};
use crate::scoped::{self, Scoped};
use crate::validate;

/// Longest accepted email, display name and avatar URL.
const MAX_EMAIL: usize = 320;
const MAX_DISPLAY_NAME: usize = 100;
const MAX_URL: usize = 2048;

/// A profile to create on signup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProfile {
    /// The auth user's id (`None`: a fresh id).
    pub id: Option<ProfileId>,
    /// The email; trimmed and lower-cased before it is stored.
    pub email: String,
    /// The display name (`None`: the email's local part).
    pub display_name: Option<String>,
}

impl NewProfile {
    /// A profile for `email` with a fresh id and the default display name.
    pub fn new(email: impl Into<String>) -> Self {
        Self {
            id: None,
            email: email.into(),
            display_name: None,
        }
    }
}

/// What a user may change on their own profile. `None` leaves a field as it is;
/// `avatar_url: Some(None)` clears the avatar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfilePatch {
    /// A new display name.
    pub display_name: Option<String>,
    /// A new avatar URL, or `Some(None)` to remove it.
    pub avatar_url: Option<Option<String>>,
}

/// Profiles visible to `actor`: their own, or all for the service.
pub fn visible_to(actor: Actor) -> Select<profiles::Entity> {
    scoped::owned_by(actor, profiles::Column::Id)
}

impl Scoped for profiles::Entity {
    const NAME: &'static str = "profile";

    fn key() -> Self::Column {
        profiles::Column::Id
    }

    fn visible_to(actor: Actor) -> Select<Self> {
        visible_to(actor)
    }
}

fn normalise_email(email: &str) -> Result<String> {
    // Lower-cased before the length check: lower-casing may lengthen it ('İ' → "i̇").
    let email = validate::text("email", &email.to_lowercase(), MAX_EMAIL)?;
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(email)
        }
        _ => Err(ForgeError::invalid("email", "must look like name@domain")),
    }
}

/// Creates a profile on signup (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a malformed
/// email or display name, [`ForgeError::Conflict`] when the email (or id) is taken.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "create"))]
pub async fn create<C>(db: &C, actor: Actor, new: NewProfile) -> Result<profiles::Model>
where
    C: Connection,
{
    actor.require_service("creating a profile")?;
    let email = normalise_email(&new.email)?;
    let display_name = match new.display_name.as_deref() {
        Some(name) => validate::text("display_name", name, MAX_DISPLAY_NAME)?,
        None => email.split('@').next().unwrap_or_default().to_owned(),
    };
    let mut row = profiles::ActiveModel {
        email: Set(email),
        display_name: Set(display_name),
        ..Default::default()
    };
    if let Some(id) = new.id {
        row.id = Set(id);
    }
    run_as(db, actor, Access::Write, |txn| {
        Box::pin(async move { Ok(row.insert(txn).await?) })
    })
    .await
}

/// The profile `id`, if `actor` may see it.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: ProfileId) -> Result<Option<profiles::Model>>
where
    C: Connection,
{
    scoped::find::<profiles::Entity, C>(db, actor, id).await
}

/// The profile `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: ProfileId) -> Result<profiles::Model>
where
    C: Connection,
{
    scoped::get::<profiles::Entity, C, _>(db, actor, id).await
}

/// The profile with this email (matched trimmed and case-insensitively), if visible.
///
/// # Errors
/// [`ForgeError::Validation`] for a malformed email.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "find_by_email"))]
pub async fn find_by_email<C>(db: &C, actor: Actor, email: &str) -> Result<Option<profiles::Model>>
where
    C: Connection,
{
    let email = normalise_email(email)?;
    run_as(db, actor, Access::Read, move |txn| {
        Box::pin(async move {
            Ok(visible_to(actor)
                .filter(profiles::Column::Email.eq(email))
                .one(txn)
                .await?)
        })
    })
    .await
}

/// Changes display name and/or avatar of profile `id`.
///
/// # Errors
/// [`ForgeError::NotFound`] when it is not `actor`'s, [`ForgeError::Validation`] for a
/// blank or over-long value.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "update", id = %id))]
pub async fn update<C>(
    db: &C,
    actor: Actor,
    id: ProfileId,
    patch: ProfilePatch,
) -> Result<profiles::Model>
where
    C: Connection,
{
    let display_name = validate::optional_text(
        "display_name",
        patch.display_name.as_deref(),
        MAX_DISPLAY_NAME,
    )?;
    let avatar_url = match patch.avatar_url {
        Some(Some(url)) => Some(Some(validate::text("avatar_url", &url, MAX_URL)?)),
        other => other,
    };
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = visible_to(actor)
                .filter(profiles::Column::Id.eq(id))
                .one(txn)
                .await?
                .ok_or_else(|| ForgeError::not_found("profile", id))?;
            let mut row: profiles::ActiveModel = current.into();
            if let Some(name) = display_name {
                row.display_name = Set(name);
            }
            if let Some(url) = avatar_url {
                row.avatar_url = Set(url);
            }
            Ok(row.update(txn).await?)
        })
    })
    .await
}

/// Sets tier and concurrent-session limit of profile `id` (service only).
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user, [`ForgeError::Validation`] for a negative
/// limit, [`ForgeError::NotFound`] for an unknown profile.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "set_plan", id = %id))]
pub async fn set_plan<C>(
    db: &C,
    actor: Actor,
    id: ProfileId,
    tier: Tier,
    sessions_limit: i32,
) -> Result<profiles::Model>
where
    C: Connection,
{
    actor.require_service("setting a profile's tier and limit")?;
    validate::in_range(
        "sessions_limit",
        i64::from(sessions_limit),
        0,
        i64::from(i32::MAX),
    )?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            let current = profiles::Entity::find_by_id(id)
                .one(txn)
                .await?
                .ok_or_else(|| ForgeError::not_found("profile", id))?;
            let mut row: profiles::ActiveModel = current.into();
            row.tier = Set(tier);
            row.sessions_limit = Set(sessions_limit);
            Ok(row.update(txn).await?)
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Billing and erasure
// ---------------------------------------------------------------------------------------

/// Longest accepted Stripe customer id.
const MAX_STRIPE_CUSTOMER_ID: usize = 255;

/// A Stripe customer id, trimmed: 1 to 255 ASCII letters, digits and underscores.
fn checked_stripe_customer_id(id: &str) -> Result<String> {
    let id = validate::text("stripe_customer_id", id, MAX_STRIPE_CUSTOMER_ID)?;
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ForgeError::invalid(
            "stripe_customer_id",
            "only ASCII letters, digits and `_` (Stripe's look like `cus_NffrFeUfNV2Hib`)",
        ));
    }
    Ok(id)
}

/// Sets the Stripe customer id of profile `id`, or clears it with `None` (service only),
/// with one `UPDATE … RETURNING`. The id is trimmed and must be 1 to 255 ASCII letters,
/// digits and underscores; no two profiles share one.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user; [`ForgeError::Validation`]
/// (`stripe_customer_id`) for a blank, over-long or malformed id; [`ForgeError::NotFound`]
/// for an unknown profile; [`ForgeError::Conflict`] when another profile has this id.
#[tracing::instrument(skip_all, fields(entity = "profile", op = "set_stripe_customer_id", id = %id))]
pub async fn set_stripe_customer_id<C>(
    db: &C,
    actor: Actor,
    id: ProfileId,
    customer: Option<&str>,
) -> Result<profiles::Model>
where
    C: Connection,
{
    use sea_orm::{FromQueryResult, QueryTrait};
    actor.require_service("setting a profile's Stripe customer id")?;
    let customer = customer.map(checked_stripe_customer_id).transpose()?;
    let row = profiles::ActiveModel {
        stripe_customer_id: Set(customer),
        updated_at: Set(crate::now()),
        ..Default::default()
    };
    let mut update = profiles::Entity::update_many()
        .set(row)
        .filter(profiles::Column::Id.eq(id));
    QueryTrait::query(&mut update).returning_all();
    let stmt = update.build(db.get_database_backend());
    let rows = scoped::rows(db, actor, Access::Write, stmt).await?;
    match rows.first() {
        Some(row) => Ok(profiles::Model::from_query_result(row, "")?),
        None => Err(ForgeError::not_found("profile", id)),
    }
}

/// What [`erase`] deleted, per table (named after its table), and which other users'
/// rows it detached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErasureReport {
    /// The profile itself: 1.
    pub profiles: u64,
    /// The user's projects.
    pub projects: u64,
    /// The user's coding sessions.
    pub coding_sessions: u64,
    /// The coding jobs of those sessions.
    pub coding_jobs: u64,
    /// The events of those sessions.
    pub session_events: u64,
    /// The user's conversations.
    pub conversations: u64,
    /// The turns of those conversations.
    pub conversation_turns: u64,
    /// The user's batches.
    pub batch_jobs: u64,
    /// The items of those batches.
    pub batch_items: u64,
    /// The user's pipeline runs (table `jobs`).
    pub jobs: u64,
    /// The events of those runs (table `job_events`).
    pub job_events: u64,
    /// The artifacts of those runs.
    pub artifacts: u64,
    /// The user's templates.
    pub templates: u64,
    /// The user's scenarios.
    pub scenarios: u64,
    /// The user's edge cases.
    pub edge_cases: u64,
    /// The user's generation logs.
    pub generation_logs: u64,
    /// The user's export logs.
    pub export_logs: u64,
    /// The user's credit account (1).
    pub credit_accounts: u64,
    /// The ledger of that account.
    pub credit_transactions: u64,
    /// The user's API keys.
    pub api_keys: u64,
    /// The user's notifications.
    pub notifications: u64,
    /// The user's notification preferences (1).
    pub notification_preferences: u64,
    /// The user's daily usage rows.
    pub usage_metrics: u64,
    /// The user's activity log entries.
    pub activity_logs: u64,
    /// Other users' rows that stay, with a reference to the user or to one of the deleted
    /// rows set to NULL.
    pub detached: DetachedRows,
}

/// Other users' rows an [`erase`] kept but detached (per table): their foreign key to the
/// erased user, or to one of the user's deleted rows, is set to NULL by its ON DELETE SET
/// NULL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DetachedRows {
    /// Conversations the user approved (`approved_by`) or that were made from one of the
    /// user's templates (`template_id`).
    pub conversations: u64,
    /// Templates the user changed last (`last_modified_by`).
    pub templates: u64,
    /// Scenarios whose generated conversation was one of the user's (`conversation_id`).
    pub scenarios: u64,
    /// Generation logs naming one of the user's conversations or templates
    /// (`conversation_id`, `template_id`).
    pub generation_logs: u64,
}

impl ErasureReport {
    /// The rows deleted, as `(table, count)`, parents before children: every table Forge
    /// owns but `prompts` (which belong to no user), in `forge_migration::TABLES` order.
    pub fn deleted(&self) -> [(&'static str, u64); 24] {
        [
            ("profiles", self.profiles),
            ("projects", self.projects),
            ("coding_sessions", self.coding_sessions),
            ("coding_jobs", self.coding_jobs),
            ("session_events", self.session_events),
            ("conversations", self.conversations),
            ("conversation_turns", self.conversation_turns),
            ("batch_jobs", self.batch_jobs),
            ("batch_items", self.batch_items),
            ("jobs", self.jobs),
            ("job_events", self.job_events),
            ("artifacts", self.artifacts),
            ("templates", self.templates),
            ("scenarios", self.scenarios),
            ("edge_cases", self.edge_cases),
            ("generation_logs", self.generation_logs),
            ("export_logs", self.export_logs),
            ("credit_accounts", self.credit_accounts),
            ("credit_transactions", self.credit_transactions),
            ("api_keys", self.api_keys),
            ("notifications", self.notifications),
            ("notification_preferences", self.notification_preferences),
            ("usage_metrics", self.usage_metrics),
            ("activity_logs", self.activity_logs),
        ]
    }

    /// Every row deleted, in all tables.
    pub fn total_deleted(&self) -> u64 {
        self.deleted().iter().map(|(_, n)| n).sum()
    }

    /// The report from the row of `profiles_erase_counts.sql`.
    fn from_counts(row: &sea_orm::QueryResult) -> Result<Self> {
        let n = |column: &str| -> Result<u64> {
            let count: i64 = row.try_get("", column)?;
            Ok(u64::try_from(count).unwrap_or_default())
        };
        Ok(Self {
            profiles: 1,
            projects: n("projects")?,
            coding_sessions: n("coding_sessions")?,
            coding_jobs: n("coding_jobs")?,
            session_events: n("session_events")?,
            conversations: n("conversations")?,
            conversation_turns: n("conversation_turns")?,
            batch_jobs: n("batch_jobs")?,
            batch_items: n("batch_items")?,
            jobs: n("jobs")?,
            job_events: n("job_events")?,
            artifacts: n("artifacts")?,
            templates: n("templates")?,
            scenarios: n("scenarios")?,
            edge_cases: n("edge_cases")?,
            generation_logs: n("generation_logs")?,
            export_logs: n("export_logs")?,
            credit_accounts: n("credit_accounts")?,
            credit_transactions: n("credit_transactions")?,
            api_keys: n("api_keys")?,
            notifications: n("notifications")?,
            notification_preferences: n("notification_preferences")?,
            usage_metrics: n("usage_metrics")?,
            activity_logs: n("activity_logs")?,
            detached: DetachedRows {
                conversations: n("detached_conversations")?,
                templates: n("detached_templates")?,
                scenarios: n("detached_scenarios")?,
                generation_logs: n("detached_generation_logs")?,
            },
        })
    }
}

/// Locks the rows under which others hang (PostgreSQL; see the file's comment).
const ERASE_LOCK_SQL: &str = include_str!("profiles_erase_lock.sql");
/// What an erasure deletes and detaches, in one row (both backends).
const ERASE_COUNTS_SQL: &str = include_str!("profiles_erase_counts.sql");

/// Erases user `id` (service only): deletes their profile and every row they own, in every
/// table, in one transaction, and reports what went ([`ErasureReport`]).
///
/// Deleting the profile does it all through the foreign keys: every table's owner column
/// is ON DELETE CASCADE (projects and their sessions, the sessions' jobs and events,
/// conversations and their turns, batches and their items, pipeline runs and their events
/// and artifacts, templates, scenarios and their edge cases, generation and export logs,
/// the credit account and its ledger, API keys, notifications and their preferences, usage
/// and activity), which is also the only way the append-only logs, events and ledger may
/// be deleted (deleting writes no usage or activity). Other users' rows are never
/// deleted: those that only name the user or one of the deleted rows keep their place with
/// that reference set to NULL (a conversation the user approved keeps its status,
/// `approved_by` NULL; see [`DetachedRows`]); and should any other user's row hang under
/// one of the user's rows (only raw SQL can write one), the call is refused and deletes
/// nothing.
///
/// Statements: the profile is locked first (`SELECT … FOR UPDATE`), so no new row can
/// name it; on PostgreSQL the user's sessions, conversations, batches, runs, templates,
/// scenarios, projects and credit account are locked next, so nothing new is added under
/// them; then one statement counts, and one `DELETE` of the profile deletes. Four
/// statements in the transaction on PostgreSQL, three on SQLite; the counts are exact.
///
/// A Supabase `auth.users` row is not Forge's: delete it through Supabase's admin API.
///
/// # Errors
/// [`ForgeError::Forbidden`] for a user (even for themselves); [`ForgeError::NotFound`]
/// for an unknown profile; [`ForgeError::Conflict`] when another user's row hangs under
/// one of the user's (nothing is deleted).
#[tracing::instrument(skip_all, fields(entity = "profile", op = "erase", id = %id))]
pub async fn erase<C>(db: &C, actor: Actor, id: ProfileId) -> Result<ErasureReport>
where
    C: Connection,
{
    use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
    actor.require_service("erasing a user")?;
    run_as(db, actor, Access::Write, move |txn| {
        Box::pin(async move {
            scoped::lock::<profiles::Entity, _>(txn, actor, id).await?;
            let backend = txn.get_database_backend();
            let statement = |sql: &str| Statement::from_sql_and_values(backend, sql, [id.into()]);
            if backend == DbBackend::Postgres {
                txn.query_one_raw(statement(ERASE_LOCK_SQL)).await?;
            }
            let counts = txn
                .query_one_raw(statement(ERASE_COUNTS_SQL))
                .await?
                .ok_or_else(|| DbErr::Custom("the erasure counts returned no row".into()))?;
            let others: i64 = counts.try_get("", "others_below")?;
            if others > 0 {
                return Err(ForgeError::Conflict {
                    what: format!(
                        "{others} rows of other users hang under the projects, templates or \
                         scenarios of profile {id} and would be deleted with it; move or \
                         delete them first"
                    ),
                });
            }
            let report = ErasureReport::from_counts(&counts)?;
            profiles::Entity::delete_by_id(id).exec(txn).await?;
            Ok(report)
        })
    })
    .await
}
