-- Pipeline runs on PostgreSQL (SCHEMA.md "Pipeline runs"): the rules of `jobs`,
-- `job_events`, `artifacts` and `prompts`, held by the database for every role, and their
-- row-level security and privileges as the database wall (wall_up.sql) gives the other
-- tables. Trigger errors read `forge:<kind>:<detail>`, as everywhere in Forge.

-- ---------------------------------------------------------------------------------------
-- JSON documents: at most 64 KiB each (of their text form).

ALTER TABLE public.jobs ADD CONSTRAINT jobs_project_spec_size_check
  CHECK (octet_length(project_spec::text) <= 65536);
ALTER TABLE public.job_events ADD CONSTRAINT job_events_payload_size_check
  CHECK (octet_length(payload::text) <= 65536);
ALTER TABLE public.artifacts ADD CONSTRAINT artifacts_meta_size_check
  CHECK (octet_length(meta::text) <= 65536);

-- ---------------------------------------------------------------------------------------
-- updated_at, kept current on every UPDATE (forge_set_updated_at() comes from
-- triggers_up.sql).

CREATE TRIGGER jobs_set_updated_at BEFORE UPDATE ON public.jobs
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
CREATE TRIGGER prompts_set_updated_at BEFORE UPDATE ON public.prompts
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();

-- ---------------------------------------------------------------------------------------
-- jobs, every role: the transitions (pending → running → completed | failed, pending |
-- running → cancelled, nothing leaves an end state), `started_at` set on entering
-- running, `completed_at` on entering an end state (the database's clock unless the
-- writer gave one), `error_message` only on a failed run, and an owner that never
-- changes. A run inserted without an owner belongs to the requesting user (`auth.uid()`).
-- End users (every role subject to row-level security) create runs as `pending` and
-- change them only by cancelling a pending or running run.
CREATE FUNCTION public.forge_jobs_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
  end_user boolean := NOT coalesce(
    (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname = current_user),
    false);
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.owner_id IS NULL THEN
      NEW.owner_id := auth.uid();
    END IF;
    IF NEW.owner_id IS NULL THEN
      RAISE EXCEPTION 'forge:invalid:owner_id:a run needs an owner';
    END IF;
    IF end_user AND NEW.status IS DISTINCT FROM 'pending' THEN
      RAISE EXCEPTION 'forge:forbidden:a user creates a run as pending, not %', NEW.status;
    END IF;
    IF NEW.status IN ('running', 'completed', 'failed') THEN
      NEW.started_at := coalesce(NEW.started_at, pg_catalog.now());
    END IF;
    IF NEW.status IN ('completed', 'failed', 'cancelled') THEN
      NEW.completed_at := coalesce(NEW.completed_at, pg_catalog.now());
    END IF;
  ELSE
    IF NEW.owner_id IS DISTINCT FROM OLD.owner_id THEN
      RAISE EXCEPTION 'forge:invariant:a run''s owner never changes';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
         (OLD.status = 'pending' AND NEW.status IN ('running', 'cancelled'))
      OR (OLD.status = 'running' AND NEW.status IN ('completed', 'failed', 'cancelled'))
    ) THEN
      RAISE EXCEPTION 'forge:transition:run:%:%', OLD.status, NEW.status;
    END IF;
    IF end_user AND NOT (OLD.status IN ('pending', 'running') AND NEW.status = 'cancelled') THEN
      RAISE EXCEPTION 'forge:transition:run:%:%', OLD.status, NEW.status;
    END IF;
    IF NEW.status = 'running' AND OLD.status IS DISTINCT FROM 'running' THEN
      NEW.started_at := coalesce(NEW.started_at, pg_catalog.now());
    END IF;
    IF NEW.status IN ('completed', 'failed', 'cancelled')
       AND OLD.status NOT IN ('completed', 'failed', 'cancelled') THEN
      NEW.completed_at := coalesce(NEW.completed_at, pg_catalog.now());
    END IF;
  END IF;

  IF NEW.error_message IS NOT NULL AND NEW.status IS DISTINCT FROM 'failed' THEN
    RAISE EXCEPTION 'forge:invalid:error_message:only a failed run has an error message';
  END IF;
  IF NEW.status = 'pending' AND NEW.started_at IS NOT NULL THEN
    RAISE EXCEPTION 'forge:invalid:started_at:a pending run has not started';
  END IF;
  IF NEW.completed_at IS NOT NULL AND NEW.status NOT IN ('completed', 'failed', 'cancelled') THEN
    RAISE EXCEPTION 'forge:invalid:completed_at:only a run that ended has completed_at';
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_jobs_guard() IS
  'forge-migration: run transitions and timestamps, error_message only when failed, the owner never changes; users create pending runs and cancel them';

CREATE TRIGGER jobs_guard
  BEFORE INSERT OR UPDATE ON public.jobs
  FOR EACH ROW EXECUTE FUNCTION public.forge_jobs_guard();

-- job_events and artifacts, every role: `owner_id` is the run's owner, filled in when the
-- writer leaves it out (seed 000's inserts do) and refused when it names anyone else.
CREATE FUNCTION public.forge_pipeline_owner_of_run()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
  run_owner uuid;
BEGIN
  SELECT j.owner_id INTO run_owner FROM public.jobs j WHERE j.run_id = NEW.run_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'forge:not_found:run:%', NEW.run_id;
  END IF;
  IF NEW.owner_id IS NULL THEN
    NEW.owner_id := run_owner;
  ELSIF NEW.owner_id <> run_owner THEN
    RAISE EXCEPTION 'forge:conflict:owner_id % is not the owner of run %', NEW.owner_id, NEW.run_id;
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_pipeline_owner_of_run() IS
  'forge-migration: job_events.owner_id and artifacts.owner_id are the run''s owner';

CREATE TRIGGER job_events_owner
  BEFORE INSERT ON public.job_events
  FOR EACH ROW EXECUTE FUNCTION public.forge_pipeline_owner_of_run();
CREATE TRIGGER artifacts_owner
  BEFORE INSERT OR UPDATE OF run_id, owner_id ON public.artifacts
  FOR EACH ROW EXECUTE FUNCTION public.forge_pipeline_owner_of_run();

-- job_events is append-only for every role: an event never changes, and one is deleted
-- only with its run (a cascade, as session_events).
CREATE FUNCTION public.forge_job_events_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    RAISE EXCEPTION 'forge:invariant:job events never change';
  ELSIF pg_catalog.pg_trigger_depth() < 2 THEN
    RAISE EXCEPTION 'forge:invariant:job events are deleted only with their run';
  END IF;
  RETURN OLD;
END;
$$;

COMMENT ON FUNCTION public.forge_job_events_guard() IS
  'forge-migration: job events are append-only (deleted only with their run)';

CREATE TRIGGER job_events_append_only
  BEFORE UPDATE OR DELETE ON public.job_events
  FOR EACH ROW EXECUTE FUNCTION public.forge_job_events_guard();

-- ---------------------------------------------------------------------------------------
-- Privileges: everything revoked from PUBLIC, anon, authenticated and service_role
-- (Supabase's default privileges grant them ALL on every new table), then exactly the
-- contract's grants. `updated_at` is granted where a user may write: the BEFORE UPDATE
-- trigger sets it whatever the statement says.

REVOKE ALL ON TABLE public.jobs, public.job_events, public.artifacts, public.prompts
  FROM PUBLIC, anon, authenticated, service_role;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE
  public.jobs, public.job_events, public.artifacts, public.prompts
  TO service_role;

GRANT SELECT ON public.jobs TO authenticated;
GRANT INSERT (run_id, project_spec, owner_id, status, created_at, updated_at)
  ON public.jobs TO authenticated;
GRANT UPDATE (status, updated_at) ON public.jobs TO authenticated;
GRANT SELECT ON public.job_events TO authenticated;
GRANT SELECT ON public.artifacts TO authenticated;
GRANT SELECT ON public.prompts TO authenticated;

-- ---------------------------------------------------------------------------------------
-- Row-level security, enabled and forced: owners read their runs, events and artifacts,
-- create their own runs as `pending` and cancel them; `prompts` are readable by every
-- signed-in user. `service_role` bypasses RLS.

ALTER TABLE public.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.job_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.artifacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.prompts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.jobs FORCE ROW LEVEL SECURITY;
ALTER TABLE public.job_events FORCE ROW LEVEL SECURITY;
ALTER TABLE public.artifacts FORCE ROW LEVEL SECURITY;
ALTER TABLE public.prompts FORCE ROW LEVEL SECURITY;

CREATE POLICY jobs_select_own ON public.jobs FOR SELECT TO authenticated
  USING (owner_id = (SELECT auth.uid()));
CREATE POLICY jobs_insert_own ON public.jobs FOR INSERT TO authenticated
  WITH CHECK (owner_id = (SELECT auth.uid()) AND status = 'pending');
CREATE POLICY jobs_update_own ON public.jobs FOR UPDATE TO authenticated
  USING (owner_id = (SELECT auth.uid()))
  WITH CHECK (owner_id = (SELECT auth.uid()) AND status = 'cancelled');
CREATE POLICY job_events_select_own ON public.job_events FOR SELECT TO authenticated
  USING (owner_id = (SELECT auth.uid()));
CREATE POLICY artifacts_select_own ON public.artifacts FOR SELECT TO authenticated
  USING (owner_id = (SELECT auth.uid()));
CREATE POLICY prompts_select_authenticated ON public.prompts FOR SELECT TO authenticated
  USING (true);

-- ---------------------------------------------------------------------------------------
-- Functions: search_path pinned (in their definitions), and no trigger function
-- executable by anyone (a trigger needs no EXECUTE to fire).
REVOKE ALL ON FUNCTION public.forge_jobs_guard() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_pipeline_owner_of_run() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_job_events_guard() FROM PUBLIC, anon, authenticated, service_role;
