//! `credit_accounts`: a user's credit balance (seed 004; SCHEMA.md "Accounts").
//!
//! One per profile (`user_id` UNIQUE, ON DELETE CASCADE), created with the profile at
//! signup and credited the 100-credit `signup_bonus`. The balance moves only through
//! the ledger ([`super::credit_transactions`]): the database applies each ledger row to
//! its account and refuses one that would take the balance below zero, so `balance` always
//! equals the sum of the account's ledger and `lifetime_granted − lifetime_spent`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{CreditAccountId, ProfileId};

/// A row of `credit_accounts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "credit_accounts")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: CreditAccountId,
    /// The owner, → `profiles.id` (unique, ON DELETE CASCADE).
    #[sea_orm(unique)]
    pub user_id: ProfileId,
    /// Credits available (≥ 0; the sum of the ledger).
    pub balance: i64,
    /// Every credit ever added (≥ 0).
    pub lifetime_granted: i64,
    /// Every credit ever spent (≥ 0).
    pub lifetime_spent: i64,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of the table.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner (`user_id`).
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::UserId",
        to = "super::profiles::Column::Id",
        on_delete = "Cascade"
    )]
    Profile,
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Profile.def()
    }
}

stamped_active_model_behavior!(updated_at);
