-- Undo wall_up.sql: back to the table-wide grants and policies of rls_up.sql. (Existing
-- totals and counters stay as the triggers left them: they were correct.)

DROP TRIGGER IF EXISTS session_events_zz_guard ON public.session_events;
DROP FUNCTION IF EXISTS public.forge_session_events_guard();
DROP TRIGGER IF EXISTS batch_items_counters_delete ON public.batch_items;
DROP TRIGGER IF EXISTS batch_items_counters_update ON public.batch_items;
DROP TRIGGER IF EXISTS batch_items_counters_insert ON public.batch_items;
DROP FUNCTION IF EXISTS public.forge_batch_items_counters();
DROP TRIGGER IF EXISTS batch_items_guard ON public.batch_items;
DROP FUNCTION IF EXISTS public.forge_batch_items_guard();
DROP TRIGGER IF EXISTS batch_jobs_cancel_items ON public.batch_jobs;
DROP FUNCTION IF EXISTS public.forge_batch_jobs_cancel_items();
DROP TRIGGER IF EXISTS batch_jobs_guard ON public.batch_jobs;
DROP FUNCTION IF EXISTS public.forge_batch_jobs_guard();
DROP TRIGGER IF EXISTS conversation_turns_totals_delete ON public.conversation_turns;
DROP TRIGGER IF EXISTS conversation_turns_totals_update ON public.conversation_turns;
DROP TRIGGER IF EXISTS conversation_turns_totals_insert ON public.conversation_turns;
DROP FUNCTION IF EXISTS public.forge_conversation_turns_totals();
DROP TRIGGER IF EXISTS conversations_guard ON public.conversations;
DROP FUNCTION IF EXISTS public.forge_conversations_guard();
DROP TRIGGER IF EXISTS coding_sessions_guard ON public.coding_sessions;
DROP FUNCTION IF EXISTS public.forge_coding_sessions_guard();

DROP INDEX IF EXISTS public.idx_conversations_approved_by;

ALTER TABLE public.projects DROP CONSTRAINT IF EXISTS projects_expo_config_size_check;
ALTER TABLE public.coding_sessions DROP CONSTRAINT IF EXISTS coding_sessions_metadata_size_check;
ALTER TABLE public.coding_jobs DROP CONSTRAINT IF EXISTS coding_jobs_result_size_check;
ALTER TABLE public.session_events DROP CONSTRAINT IF EXISTS session_events_data_size_check;
ALTER TABLE public.conversations DROP CONSTRAINT IF EXISTS conversations_category_size_check;
ALTER TABLE public.conversations DROP CONSTRAINT IF EXISTS conversations_parameters_size_check;
ALTER TABLE public.conversations DROP CONSTRAINT IF EXISTS conversations_quality_metrics_size_check;
ALTER TABLE public.conversations DROP CONSTRAINT IF EXISTS conversations_review_history_size_check;
ALTER TABLE public.batch_jobs DROP CONSTRAINT IF EXISTS batch_jobs_configuration_size_check;
ALTER TABLE public.batch_items DROP CONSTRAINT IF EXISTS batch_items_parameters_size_check;
ALTER TABLE public.batch_jobs DROP CONSTRAINT IF EXISTS batch_jobs_configuration_check;

ALTER TABLE public.profiles NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.projects NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.coding_sessions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.coding_jobs NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.session_events NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.conversations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.conversation_turns NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.batch_jobs NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.batch_items NO FORCE ROW LEVEL SECURITY;

-- The policies as rls_up.sql made them.
DROP POLICY IF EXISTS coding_sessions_insert_own ON public.coding_sessions;
CREATE POLICY coding_sessions_insert_own ON public.coding_sessions FOR INSERT TO authenticated
  WITH CHECK (
    user_id = (SELECT auth.uid())
    AND EXISTS (
      SELECT 1 FROM public.projects p
      WHERE p.id = coding_sessions.project_id AND p.user_id = (SELECT auth.uid())
    )
  );
DROP POLICY IF EXISTS conversations_insert_own ON public.conversations;
CREATE POLICY conversations_insert_own ON public.conversations FOR INSERT TO authenticated
  WITH CHECK (created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS conversation_turns_insert_own ON public.conversation_turns;
CREATE POLICY conversation_turns_insert_own ON public.conversation_turns FOR INSERT TO authenticated
  WITH CHECK (EXISTS (SELECT 1 FROM public.conversations c
                      WHERE c.id = conversation_turns.conversation_id AND c.created_by = (SELECT auth.uid())));
CREATE POLICY conversation_turns_update_own ON public.conversation_turns FOR UPDATE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.conversations c
                 WHERE c.id = conversation_turns.conversation_id AND c.created_by = (SELECT auth.uid())))
  WITH CHECK (EXISTS (SELECT 1 FROM public.conversations c
                      WHERE c.id = conversation_turns.conversation_id AND c.created_by = (SELECT auth.uid())));
CREATE POLICY conversation_turns_delete_own ON public.conversation_turns FOR DELETE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.conversations c
                 WHERE c.id = conversation_turns.conversation_id AND c.created_by = (SELECT auth.uid())));
DROP POLICY IF EXISTS batch_jobs_insert_own ON public.batch_jobs;
CREATE POLICY batch_jobs_insert_own ON public.batch_jobs FOR INSERT TO authenticated
  WITH CHECK (created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS batch_items_insert_own ON public.batch_items;
CREATE POLICY batch_items_insert_own ON public.batch_items FOR INSERT TO authenticated
  WITH CHECK (EXISTS (SELECT 1 FROM public.batch_jobs b
                      WHERE b.id = batch_items.batch_job_id AND b.created_by = (SELECT auth.uid())));
CREATE POLICY batch_items_update_own ON public.batch_items FOR UPDATE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.batch_jobs b
                 WHERE b.id = batch_items.batch_job_id AND b.created_by = (SELECT auth.uid())))
  WITH CHECK (EXISTS (SELECT 1 FROM public.batch_jobs b
                      WHERE b.id = batch_items.batch_job_id AND b.created_by = (SELECT auth.uid())));
CREATE POLICY batch_items_delete_own ON public.batch_items FOR DELETE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.batch_jobs b
                 WHERE b.id = batch_items.batch_job_id AND b.created_by = (SELECT auth.uid())));

-- The grants as rls_up.sql made them.
REVOKE ALL ON TABLE
  public.profiles, public.projects, public.coding_sessions, public.coding_jobs,
  public.session_events, public.conversations, public.conversation_turns,
  public.batch_jobs, public.batch_items
  FROM authenticated;
GRANT SELECT, UPDATE ON public.profiles TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects TO authenticated;
GRANT SELECT, INSERT, UPDATE ON public.coding_sessions TO authenticated;
GRANT SELECT ON public.coding_jobs TO authenticated;
GRANT SELECT ON public.session_events TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.conversations TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.conversation_turns TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.batch_jobs TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.batch_items TO authenticated;

-- Functions as they were: default EXECUTE, the earlier search_path settings.
ALTER FUNCTION public.forge_set_updated_at() RESET search_path;
ALTER FUNCTION public.forge_session_events_assign_seq() RESET search_path;
ALTER FUNCTION public.forge_fail_jobs_of_ended_session() SET search_path = pg_catalog, pg_temp;
GRANT EXECUTE ON FUNCTION public.forge_set_updated_at() TO PUBLIC;
GRANT EXECUTE ON FUNCTION public.forge_session_events_assign_seq() TO PUBLIC;
GRANT EXECUTE ON FUNCTION public.forge_handle_new_user() TO PUBLIC;

DO $$
BEGIN
  IF to_regprocedure('auth.uid()') IS NOT NULL
     AND obj_description('auth.uid()'::regprocedure, 'pg_proc') LIKE 'forge-migration:%' THEN
    ALTER FUNCTION auth.uid() RESET search_path;
    GRANT EXECUTE ON FUNCTION auth.uid() TO PUBLIC;
  END IF;
END
$$;
