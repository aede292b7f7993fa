-- PostgreSQL triggers (SCHEMA.md conventions): `updated_at` kept current on every UPDATE,
-- and `session_events.seq` assigned by the database when an insert leaves it out.

CREATE OR REPLACE FUNCTION public.forge_set_updated_at()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  NEW.updated_at = now();
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_set_updated_at() IS
  'forge-migration: keeps updated_at current on every UPDATE';

DROP TRIGGER IF EXISTS profiles_set_updated_at ON public.profiles;
CREATE TRIGGER profiles_set_updated_at BEFORE UPDATE ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
DROP TRIGGER IF EXISTS projects_set_updated_at ON public.projects;
CREATE TRIGGER projects_set_updated_at BEFORE UPDATE ON public.projects
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
DROP TRIGGER IF EXISTS coding_sessions_set_updated_at ON public.coding_sessions;
CREATE TRIGGER coding_sessions_set_updated_at BEFORE UPDATE ON public.coding_sessions
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
DROP TRIGGER IF EXISTS coding_jobs_set_updated_at ON public.coding_jobs;
CREATE TRIGGER coding_jobs_set_updated_at BEFORE UPDATE ON public.coding_jobs
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
DROP TRIGGER IF EXISTS conversations_set_updated_at ON public.conversations;
CREATE TRIGGER conversations_set_updated_at BEFORE UPDATE ON public.conversations
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
DROP TRIGGER IF EXISTS batch_jobs_set_updated_at ON public.batch_jobs;
CREATE TRIGGER batch_jobs_set_updated_at BEFORE UPDATE ON public.batch_jobs
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
DROP TRIGGER IF EXISTS batch_items_set_updated_at ON public.batch_items;
CREATE TRIGGER batch_items_set_updated_at BEFORE UPDATE ON public.batch_items
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();

-- seq: 1, 2, 3 … per session with no gaps, in commit order. The row lock on the parent
-- session serialises appends to one session until the appending transaction ends, so a
-- reader polling "seq > N" can never see N+2 committed while N+1 is still in flight.
-- FOR NO KEY UPDATE does not conflict with the FOR KEY SHARE lock the foreign key takes.
CREATE OR REPLACE FUNCTION public.forge_session_events_assign_seq()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM 1 FROM public.coding_sessions WHERE id = NEW.session_id FOR NO KEY UPDATE;
  IF NEW.seq IS NULL THEN
    SELECT COALESCE(MAX(seq), 0) + 1 INTO NEW.seq
      FROM public.session_events WHERE session_id = NEW.session_id;
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_session_events_assign_seq() IS
  'forge-migration: assigns session_events.seq (next in the session) and serialises appends per session';

DROP TRIGGER IF EXISTS session_events_assign_seq ON public.session_events;
CREATE TRIGGER session_events_assign_seq BEFORE INSERT ON public.session_events
  FOR EACH ROW EXECUTE FUNCTION public.forge_session_events_assign_seq();
