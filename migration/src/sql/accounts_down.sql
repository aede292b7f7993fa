-- Undo accounts_up.sql. The seven tables are dropped first (by the migration), and with
-- them their triggers, policies, grants and constraints; what is left are the triggers on
-- the older tables, then the functions.

DROP TRIGGER IF EXISTS batch_jobs_activity ON public.batch_jobs;
DROP TRIGGER IF EXISTS conversation_turns_usage ON public.conversation_turns;
DROP TRIGGER IF EXISTS conversations_usage ON public.conversations;
DROP TRIGGER IF EXISTS coding_jobs_usage ON public.coding_jobs;
DROP TRIGGER IF EXISTS coding_sessions_activity ON public.coding_sessions;
DROP TRIGGER IF EXISTS projects_activity ON public.projects;
DROP TRIGGER IF EXISTS profiles_open_account ON public.profiles;

DROP FUNCTION IF EXISTS public.forge_api_keys_activity();
DROP FUNCTION IF EXISTS public.forge_batch_jobs_activity();
DROP FUNCTION IF EXISTS public.forge_conversation_turns_usage();
DROP FUNCTION IF EXISTS public.forge_conversations_usage();
DROP FUNCTION IF EXISTS public.forge_coding_jobs_usage();
DROP FUNCTION IF EXISTS public.forge_coding_sessions_activity();
DROP FUNCTION IF EXISTS public.forge_projects_activity();
DROP FUNCTION IF EXISTS public.forge_activity_logs_guard();
DROP FUNCTION IF EXISTS public.forge_api_keys_guard();
DROP FUNCTION IF EXISTS public.forge_credit_transactions_guard();
DROP FUNCTION IF EXISTS public.forge_credit_transactions_apply();
DROP FUNCTION IF EXISTS public.forge_credit_accounts_guard();
DROP FUNCTION IF EXISTS public.forge_profiles_open_account();
