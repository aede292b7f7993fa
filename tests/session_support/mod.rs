//! Fixtures shared by the sessions and events tests: owners, projects, sessions, and a
//! database several pools can open at once (for the race and tail tests).
#![allow(dead_code)]

use forge_db::entity::ids::{ProfileId, ProjectId};
use std::path::PathBuf;

use forge_db::entity::projects::{self, ProjectStatus};
use forge_db::entity::{coding_sessions, profiles::Tier};
use forge_db::sea_orm::{ActiveModelTrait, DatabaseConnection, DbBackend, EntityTrait, Set};
use forge_db::service::sessions::NewSession;
use forge_db::service::{Access, Actor, profiles, run_as, sessions};
use forge_db::{Migrator, MigratorTrait, connect};
use uuid::Uuid;

use crate::common::TestDb;

/// A new profile (via signup) with `sessions_limit` live sessions allowed.
pub async fn owner(db: &DatabaseConnection, email: &str, sessions_limit: i32) -> ProfileId {
    let id = crate::common::signup(db, email).await;
    profiles::set_plan(db, Actor::Service, id, Tier::Pro, sessions_limit)
        .await
        .expect("set plan");
    id
}

/// A project of `owner` in `status` (written directly, in the service's context: the
/// projects repository is not what these tests are about).
pub async fn project(
    db: &DatabaseConnection,
    owner: ProfileId,
    status: ProjectStatus,
) -> ProjectId {
    crate::common::as_service(db, move |txn| {
        Box::pin(async move {
            Ok(projects::ActiveModel {
                user_id: Set(owner),
                name: Set(format!("project {status}")),
                status: Set(status),
                ..Default::default()
            }
            .insert(txn)
            .await?)
        })
    })
    .await
    .id
}

/// A fresh pending session of `owner` on `project`, started by the owner.
pub async fn session(
    db: &DatabaseConnection,
    owner: ProfileId,
    project: ProjectId,
) -> coding_sessions::Model {
    sessions::start(
        db,
        Actor::User(owner),
        NewSession::new(owner, project, "Build a todo app with React"),
    )
    .await
    .expect("start session")
}

/// Every row of `E` that an unfiltered query returns in `actor`'s context: on
/// PostgreSQL, what row-level security alone lets through.
pub async fn unfiltered_as<E>(db: &DatabaseConnection, actor: Actor) -> Vec<E::Model>
where
    E: EntityTrait,
    E::Model: Send,
{
    run_as(db, actor, Access::Read, |txn| {
        Box::pin(async move { Ok(E::find().all(txn).await?) })
    })
    .await
    .expect("unfiltered query")
}

/// A migrated database that several pools can open at once: on SQLite a temporary file
/// (an in-memory database lives in one connection), on PostgreSQL the test's database.
pub struct SharedDb {
    /// For Forge's calls: on PostgreSQL the application role of the two-role setup (like
    /// `TestDb::db`), which may do nothing outside a Forge context.
    pub url: String,
    /// As the database's owner, for raw setup and inspection (on SQLite the same file).
    pub owner_url: String,
    file: Option<PathBuf>,
}

impl SharedDb {
    pub async fn for_test(t: &TestDb) -> Self {
        match t.backend() {
            DbBackend::Postgres => Self {
                url: t.app_url().expect("PostgreSQL URL"),
                owner_url: t.pg_url().expect("PostgreSQL URL"),
                file: None,
            },
            _ => {
                let file =
                    std::env::temp_dir().join(format!("forge-{}.db", Uuid::new_v4().simple()));
                let url = format!("sqlite://{}?mode=rwc", file.display());
                let db = connect(&url).await.expect("open SQLite file");
                Migrator::up(&db, None).await.expect("migrate SQLite file");
                db.close().await.expect("close");
                Self {
                    owner_url: url.clone(),
                    url,
                    file: Some(file),
                }
            }
        }
    }

    /// A new, separate connection pool for Forge's calls.
    pub async fn pool(&self) -> DatabaseConnection {
        connect(&self.url).await.expect("open pool")
    }

    /// A new, separate connection pool as the database's owner.
    pub async fn owner_pool(&self) -> DatabaseConnection {
        connect(&self.owner_url).await.expect("open owner pool")
    }

    /// `n` separate pools.
    pub async fn pools(&self, n: usize) -> Vec<DatabaseConnection> {
        let mut pools = Vec::with_capacity(n);
        for _ in 0..n {
            pools.push(self.pool().await);
        }
        pools
    }

    /// Deletes the SQLite file (and its journal files).
    pub fn finish(self) {
        if let Some(file) = self.file {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut path = file.clone().into_os_string();
                path.push(suffix);
                std::fs::remove_file(path).ok();
            }
        }
    }
}
