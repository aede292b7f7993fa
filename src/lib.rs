#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use forge_entity as entity;
pub use forge_migration as migration;
pub use forge_service as service;

pub use forge_migration::sea_orm;
pub use forge_migration::{
    ConnectError, DEFAULT_DATABASE_URL, MigrateError, Migrator, MigratorTrait, Pooling, connect,
    connect_with, migrate,
};
