-- Undo generation_up.sql. The foreign key and index on conversations and the tables are
-- dropped first (by the migration), and with the tables their triggers, policies, grants
-- and constraints; what is left are the functions.

DROP FUNCTION IF EXISTS public.forge_export_logs_completed_at();
DROP FUNCTION IF EXISTS public.forge_generation_logs_guard();
DROP FUNCTION IF EXISTS public.forge_templates_versioning();
