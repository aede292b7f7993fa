//! PostgreSQL only: tuning for the two work queues, `coding_jobs` and `batch_items`, and
//! the rule that an ended session leaves no claimable job.
//!
//! - **Autovacuum.** Every claim, heartbeat and completion leaves a dead row version, and
//!   the claim query reads the queue from its head, exactly where the dead versions of
//!   finished jobs pile up. Until vacuum removes them every claim walks over them again
//!   (`FOR UPDATE SKIP LOCKED` also looks at each row it skips), so a busy queue gets
//!   slower the longer it runs. The default (vacuum after 20 % of the table changed) is far
//!   too lazy for a queue; these tables are vacuumed after 1 % + 200 rows and analysed after
//!   2 % + 200 rows.
//! - **`fillfactor = 80`** leaves room in each page, so an update that changes no indexed
//!   column (an item's `progress`, a job's `result` written early) stays on its page as a
//!   HOT update: no new index entries and nothing for vacuum to clean in the indexes.
//! - **`idx_coding_jobs_lease`** `(locked_until) WHERE locked_until IS NOT NULL` (only
//!   jobs in flight hold a lease) serves the claim's second branch, jobs whose lease ran
//!   out: a range scan that finds just those, without walking over every job in flight. (The first branch, pending jobs that are
//!   due, reads `idx_coding_jobs_pending` in claim order and stops after the rows it
//!   locks.) A heartbeat changes `locked_until` and so is not a HOT update; heartbeats are
//!   rare next to claims.
//! - **`coding_sessions_fail_jobs_when_ended`**: when a session's status becomes
//!   completed, failed or expired, its pending and in-flight jobs are failed in the same
//!   statement. The function is `SECURITY DEFINER` because users end their own sessions
//!   but have no UPDATE on `coding_jobs` (SCHEMA.md's policies); it touches nothing but the
//!   jobs of the session that just ended.
//!
//! On SQLite this migration records itself and does nothing: SQLite has no autovacuum
//! thresholds, and `forge_service::sessions` fails the jobs of an ended session itself.

use sea_orm_migration::prelude::*;

use crate::postgres_only;

const UP: &str = r#"
ALTER TABLE public.coding_jobs SET (
  fillfactor = 80,
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 200,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_analyze_threshold = 200
);
ALTER TABLE public.batch_items SET (
  fillfactor = 80,
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 200,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_analyze_threshold = 200
);

CREATE INDEX IF NOT EXISTS idx_coding_jobs_lease
  ON public.coding_jobs (locked_until)
  WHERE locked_until IS NOT NULL;

CREATE OR REPLACE FUNCTION public.forge_fail_jobs_of_ended_session()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE public.coding_jobs
     SET status = 'failed',
         error_message = 'session ' || NEW.status || ' before the job finished',
         locked_until = NULL,
         completed_at = now()
   WHERE session_id = NEW.id
     AND status IN ('pending', 'processing');
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_fail_jobs_of_ended_session() IS
  'forge-migration: an ended session leaves no claimable job (fails its pending and in-flight jobs)';

REVOKE ALL ON FUNCTION public.forge_fail_jobs_of_ended_session() FROM PUBLIC;

DROP TRIGGER IF EXISTS coding_sessions_fail_jobs_when_ended ON public.coding_sessions;
CREATE TRIGGER coding_sessions_fail_jobs_when_ended
  AFTER UPDATE OF status ON public.coding_sessions
  FOR EACH ROW
  WHEN (NEW.status IN ('completed', 'failed', 'expired')
        AND OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION public.forge_fail_jobs_of_ended_session();
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS coding_sessions_fail_jobs_when_ended ON public.coding_sessions;
DROP FUNCTION IF EXISTS public.forge_fail_jobs_of_ended_session();
DROP INDEX IF EXISTS public.idx_coding_jobs_lease;
ALTER TABLE public.batch_items RESET (
  fillfactor,
  autovacuum_vacuum_scale_factor,
  autovacuum_vacuum_threshold,
  autovacuum_analyze_scale_factor,
  autovacuum_analyze_threshold
);
ALTER TABLE public.coding_jobs RESET (
  fillfactor,
  autovacuum_vacuum_scale_factor,
  autovacuum_vacuum_threshold,
  autovacuum_analyze_scale_factor,
  autovacuum_analyze_threshold
);
"#;

/// Queue storage settings, the claim index, and the ended-session trigger (PostgreSQL).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only(manager, DOWN).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
