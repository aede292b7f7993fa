-- Generation sources and exports on PostgreSQL (SCHEMA.md "Generation sources and
-- exports"): the rules of `templates`, `scenarios`, `edge_cases`, `generation_logs` and
-- `export_logs`, held by the database for every role, the foreign key of
-- `conversations.template_id`, and their row-level security and privileges as the database
-- wall (wall_up.sql) gives the other tables. Trigger errors read `forge:<kind>:<detail>`.
-- `{content_changed}` is filled in by the migration from its list of content columns.

-- ---------------------------------------------------------------------------------------
-- conversations.template_id → templates(id) ON DELETE SET NULL (the migration has cleared
-- the ids that named no template), with an index behind it.

ALTER TABLE public.conversations ADD CONSTRAINT conversations_template_id_fkey
  FOREIGN KEY (template_id) REFERENCES public.templates(id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS idx_conversations_template_id ON public.conversations (template_id);

-- ---------------------------------------------------------------------------------------
-- JSON documents: at most 64 KiB each (of their text form).

ALTER TABLE public.templates ADD CONSTRAINT templates_variables_size_check
  CHECK (octet_length(variables::text) <= 65536);
ALTER TABLE public.templates ADD CONSTRAINT templates_required_elements_size_check
  CHECK (octet_length(required_elements::text) <= 65536);
ALTER TABLE public.templates ADD CONSTRAINT templates_applicable_personas_size_check
  CHECK (octet_length(applicable_personas::text) <= 65536);
ALTER TABLE public.templates ADD CONSTRAINT templates_applicable_emotions_size_check
  CHECK (octet_length(applicable_emotions::text) <= 65536);
ALTER TABLE public.templates ADD CONSTRAINT templates_applicable_topics_size_check
  CHECK (octet_length(applicable_topics::text) <= 65536);
ALTER TABLE public.scenarios ADD CONSTRAINT scenarios_parameter_values_size_check
  CHECK (octet_length(parameter_values::text) <= 65536);
ALTER TABLE public.edge_cases ADD CONSTRAINT edge_cases_last_test_result_size_check
  CHECK (octet_length(last_test_result::text) <= 65536);
ALTER TABLE public.generation_logs ADD CONSTRAINT generation_logs_request_payload_size_check
  CHECK (octet_length(request_payload::text) <= 65536);
ALTER TABLE public.generation_logs ADD CONSTRAINT generation_logs_response_payload_size_check
  CHECK (octet_length(response_payload::text) <= 65536);
ALTER TABLE public.generation_logs ADD CONSTRAINT generation_logs_parameters_size_check
  CHECK (octet_length(parameters::text) <= 65536);
ALTER TABLE public.export_logs ADD CONSTRAINT export_logs_scope_size_check
  CHECK (octet_length(scope::text) <= 65536);

-- ---------------------------------------------------------------------------------------
-- updated_at, kept current on every UPDATE (forge_set_updated_at() comes from
-- triggers_up.sql).

CREATE TRIGGER templates_set_updated_at BEFORE UPDATE ON public.templates
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
CREATE TRIGGER scenarios_set_updated_at BEFORE UPDATE ON public.scenarios
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
CREATE TRIGGER edge_cases_set_updated_at BEFORE UPDATE ON public.edge_cases
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();

-- ---------------------------------------------------------------------------------------
-- templates, every role: `version`, `last_modified` and `last_modified_by` are the
-- database's. A change of a content column is a new version (+1), stamped now and by the
-- acting user (`auth.uid()`), or else by whom the writer named in that update; any other
-- update keeps all three as they were. On insert a template is version 1, stamped now.
CREATE FUNCTION public.forge_templates_versioning()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.version := 1;
    NEW.last_modified := pg_catalog.now();
    NEW.last_modified_by := coalesce(auth.uid(), NEW.last_modified_by, NEW.created_by);
  ELSIF {content_changed} THEN
    NEW.version := OLD.version + 1;
    NEW.last_modified := pg_catalog.now();
    NEW.last_modified_by := coalesce(
      auth.uid(),
      CASE WHEN NEW.last_modified_by IS DISTINCT FROM OLD.last_modified_by
           THEN NEW.last_modified_by END);
  ELSE
    NEW.version := OLD.version;
    NEW.last_modified := OLD.last_modified;
    -- (NULL stays NULL: the foreign key's ON DELETE SET NULL clears it.)
    IF NEW.last_modified_by IS NOT NULL THEN
      NEW.last_modified_by := OLD.last_modified_by;
    END IF;
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_templates_versioning() IS
  'forge-migration: templates.version +1, last_modified and last_modified_by on every content change, kept otherwise';

CREATE TRIGGER templates_versioning
  BEFORE INSERT OR UPDATE ON public.templates
  FOR EACH ROW EXECUTE FUNCTION public.forge_templates_versioning();

-- generation_logs is append-only for every role: an entry never changes (but for the
-- foreign keys' ON DELETE SET NULL, which clears conversation_id or template_id from
-- inside the referential trigger), and one is deleted only with its user (a cascade).
CREATE FUNCTION public.forge_generation_logs_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF pg_catalog.pg_trigger_depth() >= 2
       AND (NEW.conversation_id IS NULL OR NEW.conversation_id = OLD.conversation_id)
       AND (NEW.template_id IS NULL OR NEW.template_id = OLD.template_id)
       AND (NEW.id, NEW.user_id, NEW.run_id, NEW.request_payload, NEW.response_payload,
            NEW.parameters, NEW.cost_usd, NEW.input_tokens, NEW.output_tokens,
            NEW.duration_ms, NEW.error_message, NEW.created_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.user_id, OLD.run_id, OLD.request_payload, OLD.response_payload,
            OLD.parameters, OLD.cost_usd, OLD.input_tokens, OLD.output_tokens,
            OLD.duration_ms, OLD.error_message, OLD.created_at) THEN
      RETURN NEW;
    END IF;
    RAISE EXCEPTION 'forge:invariant:generation logs never change';
  ELSIF pg_catalog.pg_trigger_depth() < 2 THEN
    RAISE EXCEPTION 'forge:invariant:generation logs are deleted only with their user';
  END IF;
  RETURN OLD;
END;
$$;

COMMENT ON FUNCTION public.forge_generation_logs_guard() IS
  'forge-migration: generation logs are append-only (deleted only with their user)';

CREATE TRIGGER generation_logs_append_only
  BEFORE UPDATE OR DELETE ON public.generation_logs
  FOR EACH ROW EXECUTE FUNCTION public.forge_generation_logs_guard();

-- export_logs, every role: `completed_at` is set on entering completed or failed (the
-- database's clock unless the writer gave one); a processing export has none (a CHECK).
CREATE FUNCTION public.forge_export_logs_completed_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  IF NEW.status IN ('completed', 'failed')
     AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
    NEW.completed_at := coalesce(NEW.completed_at, pg_catalog.now());
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_export_logs_completed_at() IS
  'forge-migration: export_logs.completed_at set with completed or failed';

CREATE TRIGGER export_logs_completed_at
  BEFORE INSERT OR UPDATE ON public.export_logs
  FOR EACH ROW EXECUTE FUNCTION public.forge_export_logs_completed_at();

-- ---------------------------------------------------------------------------------------
-- Privileges: everything revoked from PUBLIC, anon, authenticated and service_role
-- (Supabase's default privileges grant them ALL on every new table), then exactly the
-- contract's grants. `updated_at` is granted where a user may write: the BEFORE UPDATE
-- trigger sets it whatever the statement says.

REVOKE ALL ON TABLE public.templates, public.scenarios, public.edge_cases,
  public.generation_logs, public.export_logs
  FROM PUBLIC, anon, authenticated, service_role;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE
  public.templates, public.scenarios, public.edge_cases,
  public.generation_logs, public.export_logs
  TO service_role;

GRANT SELECT ON public.templates TO authenticated;
GRANT INSERT (id, template_name, description, category, tier, template_text, structure,
              variables, tone, complexity_baseline, style_notes, example_conversation,
              quality_threshold, required_elements, applicable_personas,
              applicable_emotions, applicable_topics, is_active, created_by,
              created_at, updated_at) ON public.templates TO authenticated;
GRANT UPDATE (template_name, description, category, tier, template_text, structure,
              variables, tone, complexity_baseline, style_notes, example_conversation,
              quality_threshold, required_elements, applicable_personas,
              applicable_emotions, applicable_topics, is_active, updated_at)
  ON public.templates TO authenticated;

GRANT SELECT, DELETE ON public.scenarios TO authenticated;
GRANT INSERT (id, name, description, context, parent_template_id, parameter_values, topic,
              persona, emotional_arc, status, created_by, created_at, updated_at)
  ON public.scenarios TO authenticated;
GRANT UPDATE (name, description, context, parameter_values, topic, persona, emotional_arc,
              status, updated_at) ON public.scenarios TO authenticated;

GRANT SELECT, DELETE ON public.edge_cases TO authenticated;
GRANT INSERT (id, name, description, scenario_id, test_category, expected_behavior,
              complexity, created_by, created_at, updated_at)
  ON public.edge_cases TO authenticated;
GRANT UPDATE (name, description, test_category, expected_behavior, complexity, updated_at)
  ON public.edge_cases TO authenticated;

GRANT SELECT ON public.generation_logs TO authenticated;
GRANT SELECT ON public.export_logs TO authenticated;

-- ---------------------------------------------------------------------------------------
-- Row-level security, enabled and forced. One permissive policy per role and action.
-- `service_role` bypasses RLS.

ALTER TABLE public.templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.scenarios ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.edge_cases ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.generation_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.export_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.templates FORCE ROW LEVEL SECURITY;
ALTER TABLE public.scenarios FORCE ROW LEVEL SECURITY;
ALTER TABLE public.edge_cases FORCE ROW LEVEL SECURITY;
ALTER TABLE public.generation_logs FORCE ROW LEVEL SECURITY;
ALTER TABLE public.export_logs FORCE ROW LEVEL SECURITY;

CREATE POLICY templates_select_active_or_own ON public.templates FOR SELECT TO authenticated
  USING (is_active OR created_by = (SELECT auth.uid()));
CREATE POLICY templates_insert_own ON public.templates FOR INSERT TO authenticated
  WITH CHECK (created_by = (SELECT auth.uid()));
CREATE POLICY templates_update_own ON public.templates FOR UPDATE TO authenticated
  USING (created_by = (SELECT auth.uid()))
  WITH CHECK (created_by = (SELECT auth.uid()));

CREATE POLICY scenarios_select_own ON public.scenarios FOR SELECT TO authenticated
  USING (created_by = (SELECT auth.uid()));
CREATE POLICY scenarios_insert_own ON public.scenarios FOR INSERT TO authenticated
  WITH CHECK (
    created_by = (SELECT auth.uid())
    AND EXISTS (SELECT 1 FROM public.templates t
                WHERE t.id = scenarios.parent_template_id
                  AND t.created_by = (SELECT auth.uid()))
  );
CREATE POLICY scenarios_update_own ON public.scenarios FOR UPDATE TO authenticated
  USING (created_by = (SELECT auth.uid()))
  WITH CHECK (created_by = (SELECT auth.uid()));
CREATE POLICY scenarios_delete_own ON public.scenarios FOR DELETE TO authenticated
  USING (created_by = (SELECT auth.uid()));

CREATE POLICY edge_cases_select_own ON public.edge_cases FOR SELECT TO authenticated
  USING (created_by = (SELECT auth.uid()));
CREATE POLICY edge_cases_insert_own ON public.edge_cases FOR INSERT TO authenticated
  WITH CHECK (
    created_by = (SELECT auth.uid())
    AND EXISTS (SELECT 1 FROM public.scenarios s
                WHERE s.id = edge_cases.scenario_id
                  AND s.created_by = (SELECT auth.uid()))
  );
CREATE POLICY edge_cases_update_own ON public.edge_cases FOR UPDATE TO authenticated
  USING (created_by = (SELECT auth.uid()))
  WITH CHECK (created_by = (SELECT auth.uid()));
CREATE POLICY edge_cases_delete_own ON public.edge_cases FOR DELETE TO authenticated
  USING (created_by = (SELECT auth.uid()));

CREATE POLICY generation_logs_select_own ON public.generation_logs FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY export_logs_select_own ON public.export_logs FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- ---------------------------------------------------------------------------------------
-- Functions: search_path pinned (in their definitions), and no trigger function
-- executable by anyone (a trigger needs no EXECUTE to fire).
REVOKE ALL ON FUNCTION public.forge_templates_versioning() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_generation_logs_guard() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_export_logs_completed_at() FROM PUBLIC, anon, authenticated, service_role;
