//! `edge_cases`: the hard cases of a scenario (seed 003; SCHEMA.md "Generation sources and
//! exports").
//!
//! Belongs to a scenario (`scenario_id`, ON DELETE CASCADE) and a profile (`created_by`,
//! ON DELETE CASCADE). `test_status` and `last_test_result` are the service's. On
//! PostgreSQL a user creates edge cases only under their own scenarios.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{EdgeCaseId, ProfileId, ScenarioId};

text_enum! {
    /// How hard the edge case is (`edge_cases.complexity`, default `'medium'`).
    #[derive(Default)]
    pub enum EdgeComplexity {
        /// `'low'`.
        Low = "low",
        /// `'medium'`.
        #[default]
        Medium = "medium",
        /// `'high'`.
        High = "high",
    }
}

text_enum! {
    /// The latest test of the edge case (`edge_cases.test_status`, default `'not_tested'`).
    #[derive(Default)]
    pub enum TestStatus {
        /// `'not_tested'`.
        #[default]
        NotTested = "not_tested",
        /// `'passed'`.
        Passed = "passed",
        /// `'failed'`.
        Failed = "failed",
    }
}

/// A row of `edge_cases`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "edge_cases")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: EdgeCaseId,
    /// The edge case's name.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// What it is.
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    /// The scenario, → `scenarios.id` (ON DELETE CASCADE).
    pub scenario_id: ScenarioId,
    /// What kind of test it is.
    #[sea_orm(column_type = "Text")]
    pub test_category: String,
    /// What a good conversation does.
    #[sea_orm(column_type = "Text")]
    pub expected_behavior: String,
    /// How hard it is.
    pub complexity: EdgeComplexity,
    /// The latest test's outcome (the service's).
    pub test_status: TestStatus,
    /// The latest test's result (free-form JSON; the service's).
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub last_test_result: Option<Json>,
    /// The owner, → `profiles.id` (ON DELETE CASCADE).
    pub created_by: ProfileId,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `edge_cases`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The scenario (`scenario_id`).
    #[sea_orm(
        belongs_to = "super::scenarios::Entity",
        from = "Column::ScenarioId",
        to = "super::scenarios::Column::Id",
        on_delete = "Cascade"
    )]
    Scenario,
    /// The owner (`created_by`).
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::CreatedBy",
        to = "super::profiles::Column::Id",
        on_delete = "Cascade"
    )]
    Owner,
}

impl Related<super::scenarios::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Scenario.def()
    }
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Owner.def()
    }
}

stamped_active_model_behavior!(updated_at);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        crate::test_support::assert_round_trips!(EdgeComplexity, TestStatus);
        assert_eq!(EdgeComplexity::default(), EdgeComplexity::Medium);
        assert_eq!(TestStatus::default(), TestStatus::NotTested);
    }
}
