//! The database refuses an end user's delete of a batch that is being processed, as the
//! repository does (`forge_service::batches::delete`): a worker may hold one of its items,
//! and the batch's counters and items would vanish under it. Pause or cancel it first.
//!
//! On PostgreSQL a `BEFORE DELETE` trigger on `batch_jobs` raises
//! `forge:transition:batch:processing:deleted` for roles subject to row-level security
//! (`authenticated` through PostgREST, or Forge's user calls); the service, owners and
//! superusers (erasing a user, say) are not limited by it. Nothing changes on SQLite,
//! where no end user reaches the tables.
//!
//! Like every Forge function it runs with `search_path = ''` and nobody may call it
//! directly (`EXECUTE` revoked from everyone; the trigger needs none).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

const UP: &str = r#"
CREATE FUNCTION public.forge_batch_jobs_delete_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  IF OLD.status = 'processing' AND NOT coalesce(
       (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r
         WHERE r.rolname = current_user),
       false) THEN
    RAISE EXCEPTION 'forge:transition:batch:processing:deleted';
  END IF;
  RETURN OLD;
END;
$$;

COMMENT ON FUNCTION public.forge_batch_jobs_delete_guard() IS
  'forge-migration: an end user may not delete a batch while it is processing';

REVOKE ALL ON FUNCTION public.forge_batch_jobs_delete_guard()
  FROM PUBLIC, anon, authenticated, service_role;

CREATE TRIGGER batch_jobs_delete_guard
  BEFORE DELETE ON public.batch_jobs
  FOR EACH ROW EXECUTE FUNCTION public.forge_batch_jobs_delete_guard();
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS batch_jobs_delete_guard ON public.batch_jobs;
DROP FUNCTION IF EXISTS public.forge_batch_jobs_delete_guard();
"#;

/// Refuses an end user's delete of a processing batch (PostgreSQL).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(UP).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(DOWN).await?;
        }
        Ok(())
    }
}
