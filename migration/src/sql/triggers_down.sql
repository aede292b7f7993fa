DROP TRIGGER IF EXISTS session_events_assign_seq ON public.session_events;
DROP FUNCTION IF EXISTS public.forge_session_events_assign_seq();

DROP TRIGGER IF EXISTS profiles_set_updated_at ON public.profiles;
DROP TRIGGER IF EXISTS projects_set_updated_at ON public.projects;
DROP TRIGGER IF EXISTS coding_sessions_set_updated_at ON public.coding_sessions;
DROP TRIGGER IF EXISTS coding_jobs_set_updated_at ON public.coding_jobs;
DROP TRIGGER IF EXISTS conversations_set_updated_at ON public.conversations;
DROP TRIGGER IF EXISTS batch_jobs_set_updated_at ON public.batch_jobs;
DROP TRIGGER IF EXISTS batch_items_set_updated_at ON public.batch_items;
DROP FUNCTION IF EXISTS public.forge_set_updated_at();
