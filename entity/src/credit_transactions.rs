//! `credit_transactions`: the append-only credit ledger (seed 004; SCHEMA.md "Accounts").
//!
//! Each row moves its account's balance by `amount` (positive credits, negative debits)
//! when it is inserted — the database does that, records the balance after it in
//! `balance_after`, and refuses a row that would take the balance below zero. Rows never
//! change. `(account_id, idempotency_key)` is unique, so a retried operation carrying the
//! same key is counted once.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{CreditAccountId, CreditTransactionId, ProfileId};

text_enum! {
    /// Why credits moved (`credit_transactions.kind`).
    pub enum CreditKind {
        /// `'signup_bonus'`: the free credits of a new account (positive).
        SignupBonus = "signup_bonus",
        /// `'purchase'`: bought (positive).
        Purchase = "purchase",
        /// `'grant'`: given by the platform (positive).
        Grant = "grant",
        /// `'spend'`: used for something (negative).
        Spend = "spend",
        /// `'refund'`: a spend given back (positive).
        Refund = "refund",
        /// `'adjustment'`: a correction by the platform (either sign).
        Adjustment = "adjustment",
    }
}

/// A row of `credit_transactions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "credit_transactions")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: CreditTransactionId,
    /// The account, → `credit_accounts.id` (ON DELETE CASCADE).
    pub account_id: CreditAccountId,
    /// The account's user (for row-level security).
    pub user_id: ProfileId,
    /// Credits moved: positive in, negative out, never 0.
    pub amount: i64,
    /// Why.
    pub kind: CreditKind,
    /// The account's balance right after this row (≥ 0).
    pub balance_after: i64,
    /// What it paid for or came from (a session id, a payment id, …).
    #[sea_orm(column_type = "Text", nullable)]
    pub reference: Option<String>,
    /// The caller's key for the operation: unique per account, so a retry counts once.
    #[sea_orm(column_type = "Text", nullable)]
    pub idempotency_key: Option<String>,
    /// Free-form JSON object (default `{}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub metadata: Json,
    /// When the row was written (rows never change).
    pub created_at: DateTimeUtc,
}

/// Relations of `credit_transactions`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The account (`account_id`).
    #[sea_orm(
        belongs_to = "super::credit_accounts::Entity",
        from = "Column::AccountId",
        to = "super::credit_accounts::Column::Id",
        on_delete = "Cascade"
    )]
    Account,
}

impl Related<super::credit_accounts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Account.def()
    }
}

stamped_active_model_behavior!();
