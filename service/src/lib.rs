//! Typed repositories over Forge's schema.
//!
//! This crate is where applications get one typed, documented API for the whole model
//! (profiles, projects, sessions, jobs, events, conversations, batches), so no application
//! writes a query by hand. Its repositories are being built; until then use the entities
//! of `forge-entity` directly, with a connection from `forge_db::connect`.
#![warn(missing_docs)]

pub use forge_entity as entity;
