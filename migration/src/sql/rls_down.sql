-- Undo rls_up.sql. Roles stay (cluster-wide); `auth` objects are dropped only when this
-- migration created them (marked by their comment).

DO $$
BEGIN
  IF to_regclass('auth.users') IS NOT NULL THEN
    DROP TRIGGER IF EXISTS on_auth_user_created ON auth.users;
  END IF;
END
$$;
DROP FUNCTION IF EXISTS public.forge_handle_new_user();

DO $$
DECLARE
  pol record;
BEGIN
  FOR pol IN
    SELECT policyname, tablename FROM pg_policies
    WHERE schemaname = 'public'
      AND tablename IN ('profiles', 'projects', 'coding_sessions', 'coding_jobs',
                        'session_events', 'conversations', 'conversation_turns',
                        'batch_jobs', 'batch_items')
      AND policyname LIKE tablename || '\_%\_own'
  LOOP
    EXECUTE format('DROP POLICY IF EXISTS %I ON public.%I', pol.policyname, pol.tablename);
  END LOOP;
END
$$;

ALTER TABLE public.profiles DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.projects DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.coding_sessions DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.coding_jobs DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.session_events DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.conversations DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.conversation_turns DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.batch_jobs DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.batch_items DISABLE ROW LEVEL SECURITY;

REVOKE ALL ON
  public.profiles, public.projects, public.coding_sessions, public.coding_jobs,
  public.session_events, public.conversations, public.conversation_turns,
  public.batch_jobs, public.batch_items
  FROM anon, authenticated, service_role;

DO $$
BEGIN
  IF to_regprocedure('auth.uid()') IS NOT NULL
     AND obj_description('auth.uid()'::regprocedure, 'pg_proc') LIKE 'forge-migration:%' THEN
    DROP FUNCTION auth.uid();
  END IF;
  IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth')
     AND obj_description((SELECT oid FROM pg_namespace WHERE nspname = 'auth'), 'pg_namespace')
         LIKE 'forge-migration:%' THEN
    -- RESTRICT: refuse rather than drop anything else someone put there.
    REVOKE ALL ON SCHEMA auth FROM anon, authenticated, service_role;
    DROP SCHEMA auth RESTRICT;
  END IF;
END
$$;
