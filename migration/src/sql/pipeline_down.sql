-- Undo pipeline_up.sql. The tables are dropped first (by the migration), and with them
-- their triggers, policies, grants and constraints; what is left are the functions.

DROP FUNCTION IF EXISTS public.forge_job_events_guard();
DROP FUNCTION IF EXISTS public.forge_pipeline_owner_of_run();
DROP FUNCTION IF EXISTS public.forge_jobs_guard();
