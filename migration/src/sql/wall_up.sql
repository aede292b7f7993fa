-- The database wall (SCHEMA.md "Row Level Security and who may write what"): the database
-- alone holds every rule for `anon` and `authenticated`, whatever SQL they send.
--
-- 1. Privileges: everything Forge owns is revoked from PUBLIC, anon, authenticated and
--    service_role (Supabase's default privileges grant them ALL on every new object), then
--    exactly the contract's grants are given back, column by column.
-- 2. Triggers for the invariants that hold for every role, and for the state rules of end
--    users (every role that is subject to row-level security: not a superuser, no
--    BYPASSRLS).
-- 3. FORCE ROW LEVEL SECURITY, pinned search_path on every function, JSON size caps.
--
-- Error messages of the triggers start with `forge:<kind>:` so that forge-service maps
-- them to its typed errors on both backends (SQLite's triggers raise the same messages).

-- Existing rows are brought in line with the invariants the new triggers keep, so an
-- upgraded database starts consistent.
UPDATE public.conversations c
   SET total_turns = t.n, total_tokens = t.tokens
  FROM (SELECT c2.id, count(ct.id)::integer AS n, coalesce(sum(ct.token_count), 0)::integer AS tokens
          FROM public.conversations c2
          LEFT JOIN public.conversation_turns ct ON ct.conversation_id = c2.id
         GROUP BY c2.id) t
 WHERE t.id = c.id AND (c.total_turns, c.total_tokens) IS DISTINCT FROM (t.n, t.tokens);

UPDATE public.batch_jobs b
   SET total_items = t.total, completed_items = t.done,
       successful_items = t.ok, failed_items = t.bad
  FROM (SELECT b2.id,
               count(i.id)::integer AS total,
               count(i.id) FILTER (WHERE i.status IN ('completed', 'failed'))::integer AS done,
               count(i.id) FILTER (WHERE i.status = 'completed')::integer AS ok,
               count(i.id) FILTER (WHERE i.status = 'failed')::integer AS bad
          FROM public.batch_jobs b2
          LEFT JOIN public.batch_items i ON i.batch_job_id = b2.id
         GROUP BY b2.id) t
 WHERE t.id = b.id
   AND (b.total_items, b.completed_items, b.successful_items, b.failed_items)
       IS DISTINCT FROM (t.total, t.done, t.ok, t.bad);

-- ---------------------------------------------------------------------------------------
-- Privileges.

REVOKE ALL ON TABLE
  public.profiles, public.projects, public.coding_sessions, public.coding_jobs,
  public.session_events, public.conversations, public.conversation_turns,
  public.batch_jobs, public.batch_items
  FROM PUBLIC, anon, authenticated, service_role;

-- Forge's bookkeeping: nobody but the owner (the migrating role).
DO $$
BEGIN
  IF to_regclass('public.seaql_migrations') IS NOT NULL THEN
    REVOKE ALL ON TABLE public.seaql_migrations FROM PUBLIC, anon, authenticated, service_role;
  END IF;
  IF to_regclass('public.forge_migration_checksums') IS NOT NULL THEN
    REVOKE ALL ON TABLE public.forge_migration_checksums FROM PUBLIC, anon, authenticated, service_role;
  END IF;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE
  public.profiles, public.projects, public.coding_sessions, public.coding_jobs,
  public.session_events, public.conversations, public.conversation_turns,
  public.batch_jobs, public.batch_items
  TO service_role;

-- `updated_at` is granted wherever a user may update: the BEFORE UPDATE trigger sets it to
-- now() whatever the statement says. `id` and `created_at` may be given on INSERT (the
-- application sets ids, SCHEMA.md conventions), never changed afterwards.
GRANT SELECT ON public.profiles TO authenticated;
GRANT UPDATE (display_name, avatar_url, updated_at) ON public.profiles TO authenticated;

GRANT SELECT, DELETE ON public.projects TO authenticated;
GRANT INSERT (id, user_id, name, description, template_id, expo_config, status,
              created_at, updated_at) ON public.projects TO authenticated;
GRANT UPDATE (name, description, template_id, expo_config, status, updated_at)
  ON public.projects TO authenticated;

GRANT SELECT ON public.coding_sessions TO authenticated;
GRANT INSERT (id, user_id, project_id, initial_prompt, status, expires_at, metadata,
              created_at, updated_at) ON public.coding_sessions TO authenticated;
GRANT UPDATE (status, eas_update_url, webview_url, updated_at)
  ON public.coding_sessions TO authenticated;

GRANT SELECT ON public.coding_jobs TO authenticated;
GRANT SELECT ON public.session_events TO authenticated;

GRANT SELECT, DELETE ON public.conversations TO authenticated;
GRANT INSERT (id, conversation_id, created_by, title, status, tier, persona, emotion, topic,
              intent, tone, category, parameters, template_id, parent_id, parent_type,
              created_at, updated_at) ON public.conversations TO authenticated;
GRANT UPDATE (title, persona, emotion, topic, intent, tone, category, parameters, status,
              updated_at) ON public.conversations TO authenticated;

GRANT SELECT ON public.conversation_turns TO authenticated;
GRANT INSERT (id, conversation_id, turn_number, role, content, token_count, created_at)
  ON public.conversation_turns TO authenticated;

GRANT SELECT, DELETE ON public.batch_jobs TO authenticated;
GRANT INSERT (id, created_by, name, status, priority, configuration, created_at, updated_at)
  ON public.batch_jobs TO authenticated;
GRANT UPDATE (status, updated_at) ON public.batch_jobs TO authenticated;

GRANT SELECT ON public.batch_items TO authenticated;
GRANT INSERT (id, batch_job_id, position, topic, tier, parameters, status, created_at,
              updated_at) ON public.batch_items TO authenticated;

-- ---------------------------------------------------------------------------------------
-- Row policies the contract narrows (the others of rls_up.sql stand).

DROP POLICY IF EXISTS coding_sessions_insert_own ON public.coding_sessions;
CREATE POLICY coding_sessions_insert_own ON public.coding_sessions FOR INSERT TO authenticated
  WITH CHECK (
    user_id = (SELECT auth.uid())
    AND status = 'pending'
    AND EXISTS (
      SELECT 1 FROM public.projects p
      WHERE p.id = coding_sessions.project_id AND p.user_id = (SELECT auth.uid())
        AND p.status = 'active'
    )
  );

DROP POLICY IF EXISTS conversations_insert_own ON public.conversations;
CREATE POLICY conversations_insert_own ON public.conversations FOR INSERT TO authenticated
  WITH CHECK (created_by = (SELECT auth.uid()) AND status = 'draft');

DROP POLICY IF EXISTS conversation_turns_insert_own ON public.conversation_turns;
CREATE POLICY conversation_turns_insert_own ON public.conversation_turns FOR INSERT TO authenticated
  WITH CHECK (EXISTS (SELECT 1 FROM public.conversations c
                      WHERE c.id = conversation_turns.conversation_id
                        AND c.created_by = (SELECT auth.uid())
                        AND c.status IN ('draft', 'needs_revision')));
DROP POLICY IF EXISTS conversation_turns_update_own ON public.conversation_turns;
DROP POLICY IF EXISTS conversation_turns_delete_own ON public.conversation_turns;

DROP POLICY IF EXISTS batch_jobs_insert_own ON public.batch_jobs;
CREATE POLICY batch_jobs_insert_own ON public.batch_jobs FOR INSERT TO authenticated
  WITH CHECK (created_by = (SELECT auth.uid()) AND status = 'queued');

DROP POLICY IF EXISTS batch_items_insert_own ON public.batch_items;
CREATE POLICY batch_items_insert_own ON public.batch_items FOR INSERT TO authenticated
  WITH CHECK (status = 'queued'
              AND EXISTS (SELECT 1 FROM public.batch_jobs b
                          WHERE b.id = batch_items.batch_job_id
                            AND b.created_by = (SELECT auth.uid())
                            AND b.status = 'queued'));
DROP POLICY IF EXISTS batch_items_update_own ON public.batch_items;
DROP POLICY IF EXISTS batch_items_delete_own ON public.batch_items;

ALTER TABLE public.profiles FORCE ROW LEVEL SECURITY;
ALTER TABLE public.projects FORCE ROW LEVEL SECURITY;
ALTER TABLE public.coding_sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE public.coding_jobs FORCE ROW LEVEL SECURITY;
ALTER TABLE public.session_events FORCE ROW LEVEL SECURITY;
ALTER TABLE public.conversations FORCE ROW LEVEL SECURITY;
ALTER TABLE public.conversation_turns FORCE ROW LEVEL SECURITY;
ALTER TABLE public.batch_jobs FORCE ROW LEVEL SECURITY;
ALTER TABLE public.batch_items FORCE ROW LEVEL SECURITY;

-- ---------------------------------------------------------------------------------------
-- JSON documents: at most 64 KiB each (of their text form).

ALTER TABLE public.projects ADD CONSTRAINT projects_expo_config_size_check
  CHECK (octet_length(expo_config::text) <= 65536);
ALTER TABLE public.coding_sessions ADD CONSTRAINT coding_sessions_metadata_size_check
  CHECK (octet_length(metadata::text) <= 65536);
ALTER TABLE public.coding_jobs ADD CONSTRAINT coding_jobs_result_size_check
  CHECK (octet_length(result::text) <= 65536);
ALTER TABLE public.session_events ADD CONSTRAINT session_events_data_size_check
  CHECK (octet_length(data::text) <= 65536);
ALTER TABLE public.conversations ADD CONSTRAINT conversations_category_size_check
  CHECK (octet_length(category::text) <= 65536);
ALTER TABLE public.conversations ADD CONSTRAINT conversations_parameters_size_check
  CHECK (octet_length(parameters::text) <= 65536);
ALTER TABLE public.conversations ADD CONSTRAINT conversations_quality_metrics_size_check
  CHECK (octet_length(quality_metrics::text) <= 65536);
ALTER TABLE public.conversations ADD CONSTRAINT conversations_review_history_size_check
  CHECK (octet_length(review_history::text) <= 65536);
ALTER TABLE public.batch_jobs ADD CONSTRAINT batch_jobs_configuration_size_check
  CHECK (octet_length(configuration::text) <= 65536);
ALTER TABLE public.batch_items ADD CONSTRAINT batch_items_parameters_size_check
  CHECK (octet_length(parameters::text) <= 65536);

-- A batch's configuration is the typed document of SCHEMA.md, within the bounds the
-- repositories hold (`forge_service::batches::MAX_CONCURRENCY` = 100 items in flight): a
-- user writes it on insert, so the database checks it too. Like the entity, it accepts
-- the original app's camelCase keys and the defaults of missing fields.
ALTER TABLE public.batch_jobs ADD CONSTRAINT batch_jobs_configuration_check CHECK (
  jsonb_typeof(configuration) = 'object'
  AND configuration ->> 'tier' IN ('template', 'scenario', 'edge_case')
  AND coalesce(configuration ->> 'error_handling', configuration ->> 'errorHandling', 'continue')
      IN ('continue', 'stop')
  AND CASE jsonb_typeof(coalesce(configuration -> 'concurrent_processing',
                                 configuration -> 'concurrentProcessing', '3'))
        WHEN 'number' THEN coalesce(configuration ->> 'concurrent_processing',
                                    configuration ->> 'concurrentProcessing')::numeric BETWEEN 1 AND 100
        ELSE false
      END IS NOT FALSE
);

-- The Supabase advisors ask for an index behind every foreign key.
CREATE INDEX IF NOT EXISTS idx_conversations_approved_by
  ON public.conversations (approved_by) WHERE approved_by IS NOT NULL;

-- ---------------------------------------------------------------------------------------
-- coding_sessions, every role: the transitions of SCHEMA.md, never more live sessions
-- than `sessions_limit` (the owner's profile row is locked, so concurrent starts queue and
-- each counts what the previous one committed), and only on the owner's active project.
-- End users also: a new session is `pending` and expires within 24 hours (plus one minute
-- of clock skew between the application and the database).
CREATE FUNCTION public.forge_coding_sessions_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
  end_user boolean := NOT coalesce(
    (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname = current_user),
    false);
  live_limit integer;
  live bigint;
  project_owner uuid;
  project_status text;
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.status IS DISTINCT FROM OLD.status AND NOT (
       (OLD.status = 'pending' AND NEW.status IN ('active', 'completed', 'failed', 'expired'))
    OR (OLD.status = 'active' AND NEW.status IN ('paused', 'completed', 'failed', 'expired'))
    OR (OLD.status = 'paused' AND NEW.status IN ('active', 'completed', 'failed', 'expired'))
  ) THEN
    RAISE EXCEPTION 'forge:transition:session:%:%', OLD.status, NEW.status;
  END IF;

  IF TG_OP = 'INSERT' OR NEW.user_id IS DISTINCT FROM OLD.user_id THEN
    -- Locking the owner's profile row queues concurrent starts for one owner, so each
    -- counts the live sessions the previous one committed.
    SELECT p.sessions_limit INTO live_limit
      FROM public.profiles p WHERE p.id = NEW.user_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'forge:not_found:profile:%', NEW.user_id;
    END IF;
  END IF;

  IF TG_OP = 'INSERT' THEN
    IF end_user AND NEW.status <> 'pending' THEN
      RAISE EXCEPTION 'forge:forbidden:a user starts a session as pending, not %', NEW.status;
    END IF;
    IF end_user AND NEW.expires_at > now() + interval '24 hours 1 minute' THEN
      RAISE EXCEPTION 'forge:invalid:expires_at:at most 24 hours ahead';
    END IF;
    SELECT p.user_id, p.status INTO project_owner, project_status
      FROM public.projects p WHERE p.id = NEW.project_id;
    IF project_owner IS DISTINCT FROM NEW.user_id THEN
      RAISE EXCEPTION 'forge:not_found:project:%', NEW.project_id;
    END IF;
    IF project_status <> 'active' THEN
      RAISE EXCEPTION 'forge:invalid:project_id:the project is %; sessions start only on active projects',
        project_status;
    END IF;
  END IF;

  IF NEW.status IN ('pending', 'active', 'paused')
     AND (TG_OP = 'INSERT' OR NEW.user_id IS DISTINCT FROM OLD.user_id) THEN
    SELECT count(*) INTO live FROM public.coding_sessions s
     WHERE s.user_id = NEW.user_id AND s.status IN ('pending', 'active', 'paused');
    IF live >= live_limit THEN
      RAISE EXCEPTION 'forge:limit:live sessions:%', live_limit;
    END IF;
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_coding_sessions_guard() IS
  'forge-migration: session transitions, sessions_limit, active own project; end users start pending sessions expiring within 24 h';

CREATE TRIGGER coding_sessions_guard
  BEFORE INSERT OR UPDATE OF status, user_id ON public.coding_sessions
  FOR EACH ROW EXECUTE FUNCTION public.forge_coding_sessions_guard();

-- ---------------------------------------------------------------------------------------
-- conversations: totals change only through their turns (every role); end users write
-- content only while draft or needs_revision and only submit for review.
CREATE FUNCTION public.forge_conversations_guard()
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
    IF NEW.total_turns <> 0 OR NEW.total_tokens <> 0 THEN
      RAISE EXCEPTION 'forge:invariant:a new conversation has no turns yet; its totals follow its turns';
    END IF;
    RETURN NEW;
  END IF;

  IF (NEW.total_turns, NEW.total_tokens) IS DISTINCT FROM (OLD.total_turns, OLD.total_tokens)
     AND pg_catalog.pg_trigger_depth() < 2 THEN
    RAISE EXCEPTION 'forge:invariant:total_turns and total_tokens follow the conversation''s turns';
  END IF;

  IF end_user THEN
    IF NEW.status IS DISTINCT FROM OLD.status
       AND NOT (OLD.status IN ('draft', 'needs_revision') AND NEW.status = 'pending_review') THEN
      RAISE EXCEPTION 'forge:transition:conversation:%:%', OLD.status, NEW.status;
    END IF;
    IF OLD.status NOT IN ('draft', 'needs_revision')
       AND (NEW.title, NEW.persona, NEW.emotion, NEW.topic, NEW.intent, NEW.tone, NEW.category, NEW.parameters)
           IS DISTINCT FROM
           (OLD.title, OLD.persona, OLD.emotion, OLD.topic, OLD.intent, OLD.tone, OLD.category, OLD.parameters) THEN
      RAISE EXCEPTION 'forge:transition:conversation:%:edited', OLD.status;
    END IF;
    -- A user's submission is recorded in the review history by the database (the user
    -- may not write review_history), with the comment forge-service passes in the
    -- transaction-local setting forge.review_comment.
    IF NEW.status = 'pending_review' AND OLD.status IS DISTINCT FROM NEW.status THEN
      NEW.review_history := OLD.review_history || pg_catalog.jsonb_build_array(
        pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
          'action', 'submitted',
          'performed_by', NEW.created_by,
          'at', pg_catalog.now(),
          'comment', NULLIF(pg_catalog.current_setting('forge.review_comment', true), ''))));
    END IF;
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_conversations_guard() IS
  'forge-migration: conversation totals follow the turns; end users edit drafts and submit them';

CREATE TRIGGER conversations_guard
  BEFORE INSERT OR UPDATE ON public.conversations
  FOR EACH ROW EXECUTE FUNCTION public.forge_conversations_guard();

-- conversation_turns → conversations totals, once per statement (SECURITY DEFINER: end
-- users insert turns but may not write the totals).
CREATE FUNCTION public.forge_conversation_turns_totals()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  -- Each branch sums what the statement added (+) and removed (-) per conversation and
  -- touches only the conversations whose totals really move (an edit of a turn's content
  -- moves nothing).
  IF TG_OP = 'INSERT' THEN
    UPDATE public.conversations c
       SET total_turns = c.total_turns + d.n, total_tokens = c.total_tokens + d.tokens
      FROM (SELECT conversation_id, count(*) AS n, sum(token_count) AS tokens
              FROM new_turns GROUP BY conversation_id) d
     WHERE c.id = d.conversation_id;
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE public.conversations c
       SET total_turns = c.total_turns - d.n, total_tokens = c.total_tokens - d.tokens
      FROM (SELECT conversation_id, count(*) AS n, sum(token_count) AS tokens
              FROM old_turns GROUP BY conversation_id) d
     WHERE c.id = d.conversation_id;
  ELSE
    UPDATE public.conversations c
       SET total_turns = c.total_turns + d.n, total_tokens = c.total_tokens + d.tokens
      FROM (SELECT conversation_id, sum(n) AS n, sum(tokens) AS tokens
              FROM (SELECT conversation_id, 1 AS n, token_count AS tokens FROM new_turns
                    UNION ALL
                    SELECT conversation_id, -1, -token_count FROM old_turns) x
             GROUP BY conversation_id) d
     WHERE c.id = d.conversation_id AND (d.n <> 0 OR d.tokens <> 0);
  END IF;
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_conversation_turns_totals() IS
  'forge-migration: keeps conversations.total_turns and total_tokens equal to the count and sum of their turns';

CREATE TRIGGER conversation_turns_totals_insert
  AFTER INSERT ON public.conversation_turns
  REFERENCING NEW TABLE AS new_turns
  FOR EACH STATEMENT EXECUTE FUNCTION public.forge_conversation_turns_totals();
CREATE TRIGGER conversation_turns_totals_update
  AFTER UPDATE ON public.conversation_turns
  REFERENCING OLD TABLE AS old_turns NEW TABLE AS new_turns
  FOR EACH STATEMENT EXECUTE FUNCTION public.forge_conversation_turns_totals();
CREATE TRIGGER conversation_turns_totals_delete
  AFTER DELETE ON public.conversation_turns
  REFERENCING OLD TABLE AS old_turns
  FOR EACH STATEMENT EXECUTE FUNCTION public.forge_conversation_turns_totals();

-- ---------------------------------------------------------------------------------------
-- batch_jobs: counters change only through the items (every role) and start at zero; a
-- batch that ends gets its `completed_at`; end users only pause, resume and cancel.
CREATE FUNCTION public.forge_batch_jobs_guard()
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
    IF (NEW.total_items, NEW.completed_items, NEW.successful_items, NEW.failed_items)
       IS DISTINCT FROM (0, 0, 0, 0) THEN
      RAISE EXCEPTION 'forge:invariant:a new batch has no items yet; its counters follow its items';
    END IF;
    RETURN NEW;
  END IF;

  IF (NEW.total_items, NEW.completed_items, NEW.successful_items, NEW.failed_items)
     IS DISTINCT FROM (OLD.total_items, OLD.completed_items, OLD.successful_items, OLD.failed_items)
     AND pg_catalog.pg_trigger_depth() < 2 THEN
    RAISE EXCEPTION 'forge:invariant:a batch''s counters follow its items';
  END IF;

  IF end_user AND NEW.status IS DISTINCT FROM OLD.status AND NOT (
       (OLD.status IN ('queued', 'processing') AND NEW.status = 'paused')
    OR (OLD.status = 'paused' AND NEW.status = 'queued')
    OR (OLD.status IN ('queued', 'processing', 'paused') AND NEW.status = 'cancelled')
  ) THEN
    RAISE EXCEPTION 'forge:transition:batch:%:%', OLD.status, NEW.status;
  END IF;

  IF NEW.status IN ('completed', 'failed', 'cancelled')
     AND OLD.status NOT IN ('completed', 'failed', 'cancelled') THEN
    NEW.completed_at := coalesce(NEW.completed_at, now());
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_batch_jobs_guard() IS
  'forge-migration: batch counters follow the items; end users pause, resume and cancel';

CREATE TRIGGER batch_jobs_guard
  BEFORE INSERT OR UPDATE ON public.batch_jobs
  FOR EACH ROW EXECUTE FUNCTION public.forge_batch_jobs_guard();

-- A cancelled batch fails its queued items (SECURITY DEFINER: end users cancel their own
-- batches but may not update items); the counters follow through the items' trigger.
CREATE FUNCTION public.forge_batch_jobs_cancel_items()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  UPDATE public.batch_items
     SET status = 'failed', error = 'batch cancelled'
   WHERE batch_job_id = NEW.id AND status = 'queued';
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_batch_jobs_cancel_items() IS
  'forge-migration: a cancelled batch fails its queued items';

CREATE TRIGGER batch_jobs_cancel_items
  AFTER UPDATE OF status ON public.batch_jobs
  FOR EACH ROW
  WHEN (NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION public.forge_batch_jobs_cancel_items();

-- batch_items: an item's conversation is one of the batch owner's (every role).
CREATE FUNCTION public.forge_batch_items_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  IF NEW.conversation_id IS NULL THEN
    RETURN NEW;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM public.conversations c WHERE c.id = NEW.conversation_id) THEN
    RAISE EXCEPTION 'forge:not_found:conversation:%', NEW.conversation_id;
  END IF;
  IF NOT EXISTS (
       SELECT 1 FROM public.conversations c JOIN public.batch_jobs b ON b.created_by = c.created_by
        WHERE c.id = NEW.conversation_id AND b.id = NEW.batch_job_id) THEN
    RAISE EXCEPTION 'forge:conflict:conversation % does not belong to the batch''s owner',
      NEW.conversation_id;
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_batch_items_guard() IS
  'forge-migration: a batch item''s conversation belongs to the batch''s owner';

CREATE TRIGGER batch_items_guard
  BEFORE INSERT OR UPDATE OF conversation_id, batch_job_id ON public.batch_items
  FOR EACH ROW EXECUTE FUNCTION public.forge_batch_items_guard();

-- batch_items → batch_jobs counters, once per statement.
CREATE FUNCTION public.forge_batch_items_counters()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  -- As for turns: what the statement added (+) and removed (-), per batch; a batch whose
  -- counters do not move (an item's progress changed) is not touched.
  IF TG_OP = 'INSERT' THEN
    UPDATE public.batch_jobs b
       SET total_items = b.total_items + d.total, completed_items = b.completed_items + d.done,
           successful_items = b.successful_items + d.ok, failed_items = b.failed_items + d.bad
      FROM (SELECT batch_job_id, count(*) AS total,
                   count(*) FILTER (WHERE status IN ('completed', 'failed')) AS done,
                   count(*) FILTER (WHERE status = 'completed') AS ok,
                   count(*) FILTER (WHERE status = 'failed') AS bad
              FROM new_items GROUP BY batch_job_id) d
     WHERE b.id = d.batch_job_id;
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE public.batch_jobs b
       SET total_items = b.total_items - d.total, completed_items = b.completed_items - d.done,
           successful_items = b.successful_items - d.ok, failed_items = b.failed_items - d.bad
      FROM (SELECT batch_job_id, count(*) AS total,
                   count(*) FILTER (WHERE status IN ('completed', 'failed')) AS done,
                   count(*) FILTER (WHERE status = 'completed') AS ok,
                   count(*) FILTER (WHERE status = 'failed') AS bad
              FROM old_items GROUP BY batch_job_id) d
     WHERE b.id = d.batch_job_id;
  ELSE
    UPDATE public.batch_jobs b
       SET total_items = b.total_items + d.total, completed_items = b.completed_items + d.done,
           successful_items = b.successful_items + d.ok, failed_items = b.failed_items + d.bad
      FROM (SELECT batch_job_id, sum(sign) AS total,
                   coalesce(sum(sign) FILTER (WHERE status IN ('completed', 'failed')), 0) AS done,
                   coalesce(sum(sign) FILTER (WHERE status = 'completed'), 0) AS ok,
                   coalesce(sum(sign) FILTER (WHERE status = 'failed'), 0) AS bad
              FROM (SELECT batch_job_id, status, 1 AS sign FROM new_items
                    UNION ALL
                    SELECT batch_job_id, status, -1 FROM old_items) x
             GROUP BY batch_job_id) d
     WHERE b.id = d.batch_job_id
       AND (d.total, d.done, d.ok, d.bad) <> (0, 0, 0, 0);
  END IF;
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_batch_items_counters() IS
  'forge-migration: keeps a batch''s counters equal to what its items say';

CREATE TRIGGER batch_items_counters_insert
  AFTER INSERT ON public.batch_items
  REFERENCING NEW TABLE AS new_items
  FOR EACH STATEMENT EXECUTE FUNCTION public.forge_batch_items_counters();
CREATE TRIGGER batch_items_counters_update
  AFTER UPDATE ON public.batch_items
  REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
  FOR EACH STATEMENT EXECUTE FUNCTION public.forge_batch_items_counters();
CREATE TRIGGER batch_items_counters_delete
  AFTER DELETE ON public.batch_items
  REFERENCING OLD TABLE AS old_items
  FOR EACH STATEMENT EXECUTE FUNCTION public.forge_batch_items_counters();

-- ---------------------------------------------------------------------------------------
-- session_events is append-only and `seq` gapless for every role: an explicit `seq` may not
-- skip past the session's next one (the seq trigger, which runs first, holds the session's
-- lock; a taken one is refused by the unique constraint), an
-- event never changes, and one is deleted only with its session (a cascade).
CREATE FUNCTION public.forge_session_events_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    -- A seq already taken is left to the unique (session_id, seq) constraint (or to an
    -- ON CONFLICT clause); one past the next would leave a gap.
    IF NEW.seq > (SELECT coalesce(max(e.seq), 0) + 1 FROM public.session_events e
                   WHERE e.session_id = NEW.session_id) THEN
      RAISE EXCEPTION 'forge:invariant:seq % is not the next of session % (events are gapless)',
        NEW.seq, NEW.session_id;
    END IF;
    RETURN NEW;
  ELSIF TG_OP = 'UPDATE' THEN
    RAISE EXCEPTION 'forge:invariant:session events never change';
  ELSIF pg_catalog.pg_trigger_depth() < 2 THEN
    RAISE EXCEPTION 'forge:invariant:session events are deleted only with their session';
  END IF;
  RETURN OLD;
END;
$$;

COMMENT ON FUNCTION public.forge_session_events_guard() IS
  'forge-migration: session events are append-only with a gapless seq';

-- Named to fire after session_events_assign_seq (triggers fire in name order).
CREATE TRIGGER session_events_zz_guard
  BEFORE INSERT OR UPDATE OR DELETE ON public.session_events
  FOR EACH ROW EXECUTE FUNCTION public.forge_session_events_guard();

-- ---------------------------------------------------------------------------------------
-- Functions: search_path pinned to '' (the bodies name every object by schema), and no
-- trigger-only function executable by anyone (a trigger does not need EXECUTE to fire).
ALTER FUNCTION public.forge_set_updated_at() SET search_path = '';
ALTER FUNCTION public.forge_session_events_assign_seq() SET search_path = '';
ALTER FUNCTION public.forge_fail_jobs_of_ended_session() SET search_path = '';
ALTER FUNCTION public.forge_handle_new_user() SET search_path = '';

DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public' AND p.proname LIKE 'forge\_%'
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated, service_role', f);
  END LOOP;
  -- Forge's stand-in auth.uid() (never Supabase's): pinned too; policies call it as the
  -- acting role, so anon, authenticated and service_role keep EXECUTE.
  IF to_regprocedure('auth.uid()') IS NOT NULL
     AND obj_description('auth.uid()'::regprocedure, 'pg_proc') LIKE 'forge-migration:%' THEN
    ALTER FUNCTION auth.uid() SET search_path = '';
    REVOKE ALL ON FUNCTION auth.uid() FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;
  END IF;
END
$$;
