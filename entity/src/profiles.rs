//! `profiles`: one row per user of the app (seed 002, step 3).
//!
//! `id` equals the auth user's id when one exists; on Supabase the
//! `on_auth_user_created` trigger creates the row at signup, with `display_name`
//! defaulting to the part of the email before `@`. `email` and `stripe_customer_id`
//! are unique. `sessions_limit` (≥ 0, default 3) caps the user's *live* coding
//! sessions (see [`SessionStatus::is_live`](crate::coding_sessions::SessionStatus::is_live)),
//! and the cap holds even under concurrent starts. A profile is the owner of its
//! projects, coding sessions, conversations and batch jobs: deleting it deletes them
//! (ON DELETE CASCADE), and conversations it approved keep `approved_by = NULL`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::ProfileId;

text_enum! {
    /// The subscription tier of a profile (`profiles.tier`, default `'free'`).
    #[derive(Default)]
    pub enum Tier {
        /// `'free'`, the tier of a new profile.
        #[default]
        Free = "free",
        /// `'pro'`.
        Pro = "pro",
        /// `'enterprise'`.
        Enterprise = "enterprise",
    }
}

/// A row of `profiles`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "profiles")]
pub struct Model {
    /// Primary key; the auth user's id when one exists.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ProfileId,
    /// Unique email address.
    #[sea_orm(column_type = "Text", unique)]
    pub email: String,
    /// Name shown in the app; defaults at signup to the email's local part.
    #[sea_orm(column_type = "Text")]
    pub display_name: String,
    /// URL of the user's avatar image.
    #[sea_orm(column_type = "Text", nullable)]
    pub avatar_url: Option<String>,
    /// Subscription tier.
    pub tier: Tier,
    /// How many live coding sessions the user may have at once (≥ 0).
    pub sessions_limit: i32,
    /// Stripe customer id, unique when set.
    #[sea_orm(column_type = "Text", nullable, unique)]
    pub stripe_customer_id: Option<String>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `profiles`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The user's projects (`projects.user_id`).
    #[sea_orm(has_many = "super::projects::Entity")]
    Projects,
    /// The user's coding sessions (`coding_sessions.user_id`).
    #[sea_orm(has_many = "super::coding_sessions::Entity")]
    CodingSessions,
    /// The conversations the user owns (`conversations.created_by`).
    #[sea_orm(
        has_many = "super::conversations::Entity",
        via_rel = "Relation::CreatedBy"
    )]
    Conversations,
    /// The conversations the user approved (`conversations.approved_by`).
    #[sea_orm(
        has_many = "super::conversations::Entity",
        via_rel = "Relation::ApprovedBy"
    )]
    ApprovedConversations,
    /// The batch jobs the user owns (`batch_jobs.created_by`).
    #[sea_orm(has_many = "super::batch_jobs::Entity")]
    BatchJobs,
}

impl Related<super::projects::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Projects.def()
    }
}

impl Related<super::coding_sessions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CodingSessions.def()
    }
}

/// Through `conversations.created_by`, the owner; use
/// [`Relation::ApprovedConversations`] for the approver.
impl Related<super::conversations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Conversations.def()
    }
}

impl Related<super::batch_jobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::BatchJobs.def()
    }
}

stamped_active_model_behavior!(updated_at);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_strings_round_trip() {
        crate::test_support::assert_round_trips!(Tier);
        assert_eq!(Tier::default(), Tier::Free);
    }
}
