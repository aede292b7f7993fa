-- Row-level security, Supabase-compatible (SCHEMA.md "Row Level Security").
-- On a plain PostgreSQL this creates what Supabase would provide (the roles, schema
-- `auth`, `auth.uid()`); where those exist it uses them as they are.

-- Roles are cluster-wide, so several databases may be migrated at once: tolerate a
-- concurrent creator. They are never dropped by `down` (other databases may use them).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    BEGIN
      CREATE ROLE anon NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    BEGIN
      CREATE ROLE authenticated NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    BEGIN
      CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
END
$$;

-- Schema `auth` and `auth.uid()` only when missing; what we create is marked so `down`
-- removes only its own objects (never Supabase's).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth') THEN
    CREATE SCHEMA auth;
    COMMENT ON SCHEMA auth IS 'forge-migration: stand-in for the Supabase auth schema';
  END IF;
  IF to_regprocedure('auth.uid()') IS NULL THEN
    CREATE FUNCTION auth.uid() RETURNS uuid
      LANGUAGE sql STABLE
      AS $fn$
        SELECT COALESCE(
          NULLIF(current_setting('request.jwt.claim.sub', true), ''),
          NULLIF(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
        )::uuid
      $fn$;
    COMMENT ON FUNCTION auth.uid() IS 'forge-migration: the sub of the request''s JWT claims';
  END IF;
END
$$;

GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;

-- Privileges: exactly what the policies below allow; service_role gets everything and
-- bypasses RLS.
GRANT SELECT, UPDATE ON public.profiles TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects TO authenticated;
GRANT SELECT, INSERT, UPDATE ON public.coding_sessions TO authenticated;
GRANT SELECT ON public.coding_jobs TO authenticated;
GRANT SELECT ON public.session_events TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.conversations TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.conversation_turns TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.batch_jobs TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.batch_items TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON
  public.profiles, public.projects, public.coding_sessions, public.coding_jobs,
  public.session_events, public.conversations, public.conversation_turns,
  public.batch_jobs, public.batch_items
  TO service_role;

ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.coding_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.coding_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.session_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.conversation_turns ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.batch_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.batch_items ENABLE ROW LEVEL SECURITY;

-- profiles: read and update one's own row; no INSERT (signup creates it), no DELETE.
DROP POLICY IF EXISTS profiles_select_own ON public.profiles;
CREATE POLICY profiles_select_own ON public.profiles FOR SELECT TO authenticated
  USING (id = (SELECT auth.uid()));
DROP POLICY IF EXISTS profiles_update_own ON public.profiles;
CREATE POLICY profiles_update_own ON public.profiles FOR UPDATE TO authenticated
  USING (id = (SELECT auth.uid())) WITH CHECK (id = (SELECT auth.uid()));

-- projects: all four on one's own.
DROP POLICY IF EXISTS projects_select_own ON public.projects;
CREATE POLICY projects_select_own ON public.projects FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS projects_insert_own ON public.projects;
CREATE POLICY projects_insert_own ON public.projects FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS projects_update_own ON public.projects;
CREATE POLICY projects_update_own ON public.projects FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS projects_delete_own ON public.projects;
CREATE POLICY projects_delete_own ON public.projects FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- coding_sessions: select, insert (only on one's own projects), update; no DELETE.
DROP POLICY IF EXISTS coding_sessions_select_own ON public.coding_sessions;
CREATE POLICY coding_sessions_select_own ON public.coding_sessions FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS coding_sessions_insert_own ON public.coding_sessions;
CREATE POLICY coding_sessions_insert_own ON public.coding_sessions FOR INSERT TO authenticated
  WITH CHECK (
    user_id = (SELECT auth.uid())
    AND EXISTS (
      SELECT 1 FROM public.projects p
      WHERE p.id = coding_sessions.project_id AND p.user_id = (SELECT auth.uid())
    )
  );
DROP POLICY IF EXISTS coding_sessions_update_own ON public.coding_sessions;
CREATE POLICY coding_sessions_update_own ON public.coding_sessions FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid()))
  WITH CHECK (
    user_id = (SELECT auth.uid())
    AND EXISTS (
      SELECT 1 FROM public.projects p
      WHERE p.id = coding_sessions.project_id AND p.user_id = (SELECT auth.uid())
    )
  );

-- coding_jobs and session_events: read through one's own session; writes are the service's.
DROP POLICY IF EXISTS coding_jobs_select_own ON public.coding_jobs;
CREATE POLICY coding_jobs_select_own ON public.coding_jobs FOR SELECT TO authenticated
  USING (EXISTS (
    SELECT 1 FROM public.coding_sessions s
    WHERE s.id = coding_jobs.session_id AND s.user_id = (SELECT auth.uid())
  ));
DROP POLICY IF EXISTS session_events_select_own ON public.session_events;
CREATE POLICY session_events_select_own ON public.session_events FOR SELECT TO authenticated
  USING (EXISTS (
    SELECT 1 FROM public.coding_sessions s
    WHERE s.id = session_events.session_id AND s.user_id = (SELECT auth.uid())
  ));

-- conversations and batch_jobs: all four where created_by is the user.
DROP POLICY IF EXISTS conversations_select_own ON public.conversations;
CREATE POLICY conversations_select_own ON public.conversations FOR SELECT TO authenticated
  USING (created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS conversations_insert_own ON public.conversations;
CREATE POLICY conversations_insert_own ON public.conversations FOR INSERT TO authenticated
  WITH CHECK (created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS conversations_update_own ON public.conversations;
CREATE POLICY conversations_update_own ON public.conversations FOR UPDATE TO authenticated
  USING (created_by = (SELECT auth.uid())) WITH CHECK (created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS conversations_delete_own ON public.conversations;
CREATE POLICY conversations_delete_own ON public.conversations FOR DELETE TO authenticated
  USING (created_by = (SELECT auth.uid()));

DROP POLICY IF EXISTS batch_jobs_select_own ON public.batch_jobs;
CREATE POLICY batch_jobs_select_own ON public.batch_jobs FOR SELECT TO authenticated
  USING (created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS batch_jobs_insert_own ON public.batch_jobs;
CREATE POLICY batch_jobs_insert_own ON public.batch_jobs FOR INSERT TO authenticated
  WITH CHECK (created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS batch_jobs_update_own ON public.batch_jobs;
CREATE POLICY batch_jobs_update_own ON public.batch_jobs FOR UPDATE TO authenticated
  USING (created_by = (SELECT auth.uid())) WITH CHECK (created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS batch_jobs_delete_own ON public.batch_jobs;
CREATE POLICY batch_jobs_delete_own ON public.batch_jobs FOR DELETE TO authenticated
  USING (created_by = (SELECT auth.uid()));

-- conversation_turns and batch_items: all four through the parent's owner.
DROP POLICY IF EXISTS conversation_turns_select_own ON public.conversation_turns;
CREATE POLICY conversation_turns_select_own ON public.conversation_turns FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM public.conversations c
                 WHERE c.id = conversation_turns.conversation_id AND c.created_by = (SELECT auth.uid())));
DROP POLICY IF EXISTS conversation_turns_insert_own ON public.conversation_turns;
CREATE POLICY conversation_turns_insert_own ON public.conversation_turns FOR INSERT TO authenticated
  WITH CHECK (EXISTS (SELECT 1 FROM public.conversations c
                      WHERE c.id = conversation_turns.conversation_id AND c.created_by = (SELECT auth.uid())));
DROP POLICY IF EXISTS conversation_turns_update_own ON public.conversation_turns;
CREATE POLICY conversation_turns_update_own ON public.conversation_turns FOR UPDATE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.conversations c
                 WHERE c.id = conversation_turns.conversation_id AND c.created_by = (SELECT auth.uid())))
  WITH CHECK (EXISTS (SELECT 1 FROM public.conversations c
                      WHERE c.id = conversation_turns.conversation_id AND c.created_by = (SELECT auth.uid())));
DROP POLICY IF EXISTS conversation_turns_delete_own ON public.conversation_turns;
CREATE POLICY conversation_turns_delete_own ON public.conversation_turns FOR DELETE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.conversations c
                 WHERE c.id = conversation_turns.conversation_id AND c.created_by = (SELECT auth.uid())));

DROP POLICY IF EXISTS batch_items_select_own ON public.batch_items;
CREATE POLICY batch_items_select_own ON public.batch_items FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM public.batch_jobs b
                 WHERE b.id = batch_items.batch_job_id AND b.created_by = (SELECT auth.uid())));
DROP POLICY IF EXISTS batch_items_insert_own ON public.batch_items;
CREATE POLICY batch_items_insert_own ON public.batch_items FOR INSERT TO authenticated
  WITH CHECK (EXISTS (SELECT 1 FROM public.batch_jobs b
                      WHERE b.id = batch_items.batch_job_id AND b.created_by = (SELECT auth.uid())));
DROP POLICY IF EXISTS batch_items_update_own ON public.batch_items;
CREATE POLICY batch_items_update_own ON public.batch_items FOR UPDATE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.batch_jobs b
                 WHERE b.id = batch_items.batch_job_id AND b.created_by = (SELECT auth.uid())))
  WITH CHECK (EXISTS (SELECT 1 FROM public.batch_jobs b
                      WHERE b.id = batch_items.batch_job_id AND b.created_by = (SELECT auth.uid())));
DROP POLICY IF EXISTS batch_items_delete_own ON public.batch_items;
CREATE POLICY batch_items_delete_own ON public.batch_items FOR DELETE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.batch_jobs b
                 WHERE b.id = batch_items.batch_job_id AND b.created_by = (SELECT auth.uid())));

-- Supabase signup (seed 002, steps 2 and 8): a new auth user gets a profile. Only where
-- `auth.users` exists; the display name defaults to the email's local part.
CREATE OR REPLACE FUNCTION public.forge_handle_new_user()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  INSERT INTO public.profiles (id, email, display_name)
  VALUES (
    NEW.id,
    lower(trim(NEW.email)),
    COALESCE(
      NULLIF(trim(to_jsonb(NEW) -> 'raw_user_meta_data' ->> 'display_name'), ''),
      split_part(lower(trim(NEW.email)), '@', 1)
    )
  )
  ON CONFLICT (id) DO NOTHING;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_handle_new_user() IS
  'forge-migration: creates the profile of a new auth.users row';

DO $$
BEGIN
  IF to_regclass('auth.users') IS NOT NULL THEN
    DROP TRIGGER IF EXISTS on_auth_user_created ON auth.users;
    CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
      FOR EACH ROW EXECUTE FUNCTION public.forge_handle_new_user();
  END IF;
END
$$;
