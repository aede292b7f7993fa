-- Accounts on PostgreSQL (SCHEMA.md "Accounts (seed 004)"): the rules of `credit_accounts`,
-- `credit_transactions`, `api_keys`, `notifications`, `notification_preferences`,
-- `usage_metrics` and `activity_logs`, held by the database for every role; the signup
-- trigger on `profiles`; the usage counters and the activity log kept by triggers on the
-- tables they count; and row-level security and privileges as the database wall
-- (wall_up.sql) gives the other tables. Trigger errors read `forge:<kind>:<detail>`.
--
-- Placeholders the migration fills in from its constants: {signup_bonus} (credits of the
-- signup bonus), {credits_low} (the low-credit threshold), {max_api_keys} (unrevoked keys
-- per user).
--
-- Who runs what: the signup trigger, the ledger's triggers and the guards run as the
-- writer (SECURITY INVOKER): only the service, the owner or a superuser insert profiles and
-- ledger rows. The usage and activity triggers run as the owner (SECURITY DEFINER): end
-- users start sessions, write conversations and revoke keys, but may not write their
-- counters or their log.

-- ---------------------------------------------------------------------------------------
-- JSON documents: at most 64 KiB each (of their text form).

ALTER TABLE public.credit_transactions ADD CONSTRAINT credit_transactions_metadata_size_check
  CHECK (octet_length(metadata::text) <= 65536);
ALTER TABLE public.api_keys ADD CONSTRAINT api_keys_scopes_size_check
  CHECK (octet_length(scopes::text) <= 65536);
ALTER TABLE public.notifications ADD CONSTRAINT notifications_data_size_check
  CHECK (octet_length(data::text) <= 65536);
ALTER TABLE public.notification_preferences ADD CONSTRAINT notification_preferences_muted_types_size_check
  CHECK (octet_length(muted_types::text) <= 65536);
ALTER TABLE public.activity_logs ADD CONSTRAINT activity_logs_metadata_size_check
  CHECK (octet_length(metadata::text) <= 65536);

-- ---------------------------------------------------------------------------------------
-- updated_at, kept current on every UPDATE (forge_set_updated_at() comes from
-- triggers_up.sql).

CREATE TRIGGER credit_accounts_set_updated_at BEFORE UPDATE ON public.credit_accounts
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
CREATE TRIGGER api_keys_set_updated_at BEFORE UPDATE ON public.api_keys
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
CREATE TRIGGER notification_preferences_set_updated_at BEFORE UPDATE ON public.notification_preferences
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();
CREATE TRIGGER usage_metrics_set_updated_at BEFORE UPDATE ON public.usage_metrics
  FOR EACH ROW EXECUTE FUNCTION public.forge_set_updated_at();

-- ---------------------------------------------------------------------------------------
-- Signup: a new profile gets its credit account, the signup bonus (through the ledger, so
-- the balance follows it) and its notification preferences, in the transaction that
-- inserts the profile (Forge's `profiles::create`, or Supabase's `on_auth_user_created`).
CREATE FUNCTION public.forge_profiles_open_account()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
  account uuid;
BEGIN
  INSERT INTO public.credit_accounts (user_id) VALUES (NEW.id)
    ON CONFLICT (user_id) DO NOTHING
    RETURNING id INTO account;
  IF account IS NOT NULL THEN
    INSERT INTO public.credit_transactions (account_id, user_id, amount, kind, idempotency_key)
    VALUES (account, NEW.id, {signup_bonus}, 'signup_bonus', 'signup_bonus');
  END IF;
  INSERT INTO public.notification_preferences (user_id) VALUES (NEW.id)
    ON CONFLICT (user_id) DO NOTHING;
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_profiles_open_account() IS
  'forge-migration: a new profile gets its credit account with the signup bonus and its notification preferences';

CREATE TRIGGER profiles_open_account
  AFTER INSERT ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION public.forge_profiles_open_account();

-- ---------------------------------------------------------------------------------------
-- credit_accounts, every role: an account starts at zero, its user never changes, and its
-- balance and lifetime totals move only through the ledger (from inside the ledger's
-- trigger, trigger depth 2 or more). CHECKs keep balance ≥ 0 and balance = granted − spent.
CREATE FUNCTION public.forge_credit_accounts_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF (NEW.balance, NEW.lifetime_granted, NEW.lifetime_spent) IS DISTINCT FROM (0::bigint, 0::bigint, 0::bigint) THEN
      RAISE EXCEPTION 'forge:invariant:a new credit account starts at zero; its balance follows its ledger';
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.user_id IS DISTINCT FROM OLD.user_id THEN
    RAISE EXCEPTION 'forge:invariant:a credit account''s user never changes';
  END IF;
  IF (NEW.balance, NEW.lifetime_granted, NEW.lifetime_spent)
     IS DISTINCT FROM (OLD.balance, OLD.lifetime_granted, OLD.lifetime_spent)
     AND pg_catalog.pg_trigger_depth() < 2 THEN
    RAISE EXCEPTION 'forge:invariant:a credit balance moves only through the ledger (credit_transactions)';
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_credit_accounts_guard() IS
  'forge-migration: a credit account starts at zero, keeps its user, and moves only through its ledger';

CREATE TRIGGER credit_accounts_guard
  BEFORE INSERT OR UPDATE ON public.credit_accounts
  FOR EACH ROW EXECUTE FUNCTION public.forge_credit_accounts_guard();

-- credit_transactions, every role: a new ledger row moves its account's balance by its
-- amount, in the same statement, and records the balance after it (`balance_after`,
-- whatever the writer gave). Refused: an account that does not exist
-- (forge:not_found:credit account:<id>), a user_id that is not the account's
-- (forge:conflict:…), a row that would take the balance below zero
-- (forge:limit:credits:<the balance>), and a retry: a row whose id or
-- (account_id, idempotency_key) is taken gets the unique violation the index would raise
-- (SQLSTATE 23505, naming the constraint), raised here before the balance moves — so an
-- `INSERT … ON CONFLICT DO NOTHING` of a retry is refused too instead of keeping a move
-- without its row. A row whose amount does not fit its kind is left to the CHECK.
--
-- Locks: the day's usage row first (a spend counts credits_spent), then the account row
-- (`FOR NO KEY UPDATE`): concurrent writers of one account queue, and each sees the
-- balance the previous one committed, so the balance never goes below zero.
--
-- A spend that takes the balance from {credits_low} or more to less inserts a
-- `credits_low` notification, unless the user's preferences turn in-app notifications off
-- or mute `credits_low`.
CREATE FUNCTION public.forge_credit_transactions_apply()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
  account_user uuid;
  before bigint;
  after bigint;
BEGIN
  IF NOT coalesce(NEW.amount <> 0 AND (NEW.kind = 'adjustment'
                                        OR (NEW.kind = 'spend' AND NEW.amount < 0)
                                        OR (NEW.kind <> 'spend' AND NEW.amount > 0)), false) THEN
    RETURN NEW;
  END IF;

  SELECT a.user_id INTO account_user FROM public.credit_accounts a WHERE a.id = NEW.account_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'forge:not_found:credit account:%', NEW.account_id;
  END IF;
  IF account_user IS DISTINCT FROM NEW.user_id THEN
    RAISE EXCEPTION 'forge:conflict:user_id % is not the user of credit account %',
      NEW.user_id, NEW.account_id;
  END IF;

  IF NEW.kind = 'spend' THEN
    INSERT INTO public.usage_metrics AS u (user_id, day, credits_spent)
    VALUES (NEW.user_id, (pg_catalog.now() AT TIME ZONE 'UTC')::date, -NEW.amount)
    ON CONFLICT (user_id, day) DO UPDATE SET credits_spent = u.credits_spent + EXCLUDED.credits_spent;
  END IF;

  SELECT a.balance INTO before FROM public.credit_accounts a
   WHERE a.id = NEW.account_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'forge:not_found:credit account:%', NEW.account_id;
  END IF;

  IF EXISTS (SELECT 1 FROM public.credit_transactions t WHERE t.id = NEW.id) THEN
    RAISE EXCEPTION USING
      ERRCODE = 'unique_violation',
      CONSTRAINT = 'credit_transactions_pkey',
      MESSAGE = 'duplicate key value violates unique constraint "credit_transactions_pkey"',
      DETAIL = pg_catalog.format('Key (id)=(%s) already exists.', NEW.id);
  END IF;
  IF NEW.idempotency_key IS NOT NULL AND EXISTS (
       SELECT 1 FROM public.credit_transactions t
        WHERE t.account_id = NEW.account_id AND t.idempotency_key = NEW.idempotency_key) THEN
    RAISE EXCEPTION USING
      ERRCODE = 'unique_violation',
      CONSTRAINT = 'credit_transactions_account_id_idempotency_key_key',
      MESSAGE = 'duplicate key value violates unique constraint "credit_transactions_account_id_idempotency_key_key"',
      DETAIL = pg_catalog.format('Key (account_id, idempotency_key)=(%s, %s) already exists.',
                                 NEW.account_id, NEW.idempotency_key);
  END IF;

  IF before + NEW.amount < 0 THEN
    RAISE EXCEPTION 'forge:limit:credits:%', before;
  END IF;

  UPDATE public.credit_accounts a
     SET balance = a.balance + NEW.amount,
         lifetime_granted = a.lifetime_granted + greatest(NEW.amount, 0),
         lifetime_spent = a.lifetime_spent + greatest(-NEW.amount, 0)
   WHERE a.id = NEW.account_id
  RETURNING a.balance INTO after;
  NEW.balance_after := after;

  IF NEW.kind = 'spend' AND before >= {credits_low} AND after < {credits_low}
     AND NOT EXISTS (SELECT 1 FROM public.notification_preferences p
                      WHERE p.user_id = NEW.user_id
                        AND (NOT p.in_app_enabled OR p.muted_types @> '["credits_low"]'::jsonb)) THEN
    INSERT INTO public.notifications (user_id, type, title, body, data)
    VALUES (NEW.user_id, 'credits_low', 'Your credits are running low',
            pg_catalog.format('Your balance is %s credits, below %s.', after, {credits_low}),
            pg_catalog.jsonb_build_object('balance', after, 'threshold', {credits_low}));
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_credit_transactions_apply() IS
  'forge-migration: a ledger row moves its account''s balance (never below zero), records balance_after, counts spends and warns of low credits';

CREATE TRIGGER credit_transactions_apply
  BEFORE INSERT ON public.credit_transactions
  FOR EACH ROW EXECUTE FUNCTION public.forge_credit_transactions_apply();

-- credit_transactions is append-only for every role: a row never changes, and one is
-- deleted only with its account (a cascade, as session_events).
CREATE FUNCTION public.forge_credit_transactions_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    RAISE EXCEPTION 'forge:invariant:credit transactions never change';
  ELSIF pg_catalog.pg_trigger_depth() < 2 THEN
    RAISE EXCEPTION 'forge:invariant:credit transactions are deleted only with their account';
  END IF;
  RETURN OLD;
END;
$$;

COMMENT ON FUNCTION public.forge_credit_transactions_guard() IS
  'forge-migration: the credit ledger is append-only (deleted only with its account)';

CREATE TRIGGER credit_transactions_append_only
  BEFORE UPDATE OR DELETE ON public.credit_transactions
  FOR EACH ROW EXECUTE FUNCTION public.forge_credit_transactions_guard();

-- ---------------------------------------------------------------------------------------
-- api_keys, every role: a key is revoked once (revoked_at goes from NULL to a value and
-- then never changes: forge:transition:api key:revoked:active | revoked), and a user has
-- at most {max_api_keys} unrevoked keys (forge:limit:api keys:{max_api_keys}), counted
-- with the owner's profile row locked so that concurrent creations queue.
CREATE FUNCTION public.forge_api_keys_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
  unrevoked bigint;
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.revoked_at IS NOT NULL
     AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
    RAISE EXCEPTION 'forge:transition:api key:revoked:%',
      CASE WHEN NEW.revoked_at IS NULL THEN 'active' ELSE 'revoked' END;
  END IF;
  IF NEW.revoked_at IS NULL
     AND (TG_OP = 'INSERT' OR NEW.user_id IS DISTINCT FROM OLD.user_id) THEN
    PERFORM 1 FROM public.profiles p WHERE p.id = NEW.user_id FOR NO KEY UPDATE;
    SELECT count(*) INTO unrevoked FROM public.api_keys k
     WHERE k.user_id = NEW.user_id AND k.revoked_at IS NULL AND k.id IS DISTINCT FROM NEW.id;
    IF unrevoked >= {max_api_keys} THEN
      RAISE EXCEPTION 'forge:limit:api keys:{max_api_keys}';
    END IF;
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.forge_api_keys_guard() IS
  'forge-migration: an API key is revoked once; at most {max_api_keys} unrevoked keys per user';

CREATE TRIGGER api_keys_guard
  BEFORE INSERT OR UPDATE OF revoked_at, user_id ON public.api_keys
  FOR EACH ROW EXECUTE FUNCTION public.forge_api_keys_guard();

-- activity_logs is append-only for every role: a row never changes, and one is deleted
-- only with its user (a cascade).
CREATE FUNCTION public.forge_activity_logs_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    RAISE EXCEPTION 'forge:invariant:activity logs never change';
  ELSIF pg_catalog.pg_trigger_depth() < 2 THEN
    RAISE EXCEPTION 'forge:invariant:activity logs are deleted only with their user';
  END IF;
  RETURN OLD;
END;
$$;

COMMENT ON FUNCTION public.forge_activity_logs_guard() IS
  'forge-migration: the activity log is append-only (deleted only with its user)';

CREATE TRIGGER activity_logs_append_only
  BEFORE UPDATE OR DELETE ON public.activity_logs
  FOR EACH ROW EXECUTE FUNCTION public.forge_activity_logs_guard();

-- ---------------------------------------------------------------------------------------
-- Usage counters and the activity log, written by the database in the transaction of the
-- action (AFTER triggers: an insert that ON CONFLICT DO NOTHING skips counts nothing).
-- `usage_metrics` has one row per user and UTC day, upserted so that concurrent actions
-- each count exactly once. Only inserts and status changes write here: deleting rows (a
-- user's erasure cascades through every table) writes nothing, so a cascade never inserts
-- a row for a user being deleted.

-- projects: project.created, project.archived, project.deleted (the soft delete).
CREATE FUNCTION public.forge_projects_activity()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO public.activity_logs (user_id, action, entity_type, entity_id, metadata)
    VALUES (NEW.user_id, 'project.created', 'project', NEW.id,
            pg_catalog.jsonb_build_object('name', NEW.name, 'status', NEW.status));
  ELSIF NEW.status IN ('archived', 'deleted') AND NEW.status IS DISTINCT FROM OLD.status THEN
    INSERT INTO public.activity_logs (user_id, action, entity_type, entity_id, metadata)
    VALUES (NEW.user_id, 'project.' || NEW.status, 'project', NEW.id,
            pg_catalog.jsonb_build_object('name', NEW.name, 'status', NEW.status));
  END IF;
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_projects_activity() IS
  'forge-migration: logs project.created, project.archived and project.deleted';

CREATE TRIGGER projects_activity
  AFTER INSERT OR UPDATE OF status ON public.projects
  FOR EACH ROW EXECUTE FUNCTION public.forge_projects_activity();

-- coding_sessions: sessions_started +1 and session.started on insert; session.ended when
-- a session reaches completed, failed or expired.
CREATE FUNCTION public.forge_coding_sessions_activity()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO public.usage_metrics AS u (user_id, day, sessions_started)
    VALUES (NEW.user_id, (pg_catalog.now() AT TIME ZONE 'UTC')::date, 1)
    ON CONFLICT (user_id, day) DO UPDATE SET sessions_started = u.sessions_started + 1;
    INSERT INTO public.activity_logs (user_id, action, entity_type, entity_id, metadata)
    VALUES (NEW.user_id, 'session.started', 'session', NEW.id,
            pg_catalog.jsonb_build_object('status', NEW.status));
  ELSIF NEW.status IN ('completed', 'failed', 'expired')
        AND OLD.status NOT IN ('completed', 'failed', 'expired') THEN
    INSERT INTO public.activity_logs (user_id, action, entity_type, entity_id, metadata)
    VALUES (NEW.user_id, 'session.ended', 'session', NEW.id,
            pg_catalog.jsonb_build_object('status', NEW.status));
  END IF;
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_coding_sessions_activity() IS
  'forge-migration: counts sessions started; logs session.started and session.ended';

CREATE TRIGGER coding_sessions_activity
  AFTER INSERT OR UPDATE OF status ON public.coding_sessions
  FOR EACH ROW EXECUTE FUNCTION public.forge_coding_sessions_activity();

-- coding_jobs: jobs_completed +1 for the session's user when a job becomes completed
-- (inserted as completed, or moved there).
CREATE FUNCTION public.forge_coding_jobs_usage()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF NEW.status = 'completed' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'completed') THEN
    INSERT INTO public.usage_metrics AS u (user_id, day, jobs_completed)
    SELECT s.user_id, (pg_catalog.now() AT TIME ZONE 'UTC')::date, 1
      FROM public.coding_sessions s WHERE s.id = NEW.session_id
    ON CONFLICT (user_id, day) DO UPDATE SET jobs_completed = u.jobs_completed + 1;
  END IF;
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_coding_jobs_usage() IS
  'forge-migration: counts jobs completed';

CREATE TRIGGER coding_jobs_usage
  AFTER INSERT OR UPDATE OF status ON public.coding_jobs
  FOR EACH ROW EXECUTE FUNCTION public.forge_coding_jobs_usage();

-- conversations: conversations_created +1 for created_by.
CREATE FUNCTION public.forge_conversations_usage()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  INSERT INTO public.usage_metrics AS u (user_id, day, conversations_created)
  VALUES (NEW.created_by, (pg_catalog.now() AT TIME ZONE 'UTC')::date, 1)
  ON CONFLICT (user_id, day) DO UPDATE SET conversations_created = u.conversations_created + 1;
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_conversations_usage() IS
  'forge-migration: counts conversations created';

CREATE TRIGGER conversations_usage
  AFTER INSERT ON public.conversations
  FOR EACH ROW EXECUTE FUNCTION public.forge_conversations_usage();

-- conversation_turns: tokens += the turns' token_count for the conversation's owner, once
-- per statement and owner. Named to fire after conversation_turns_totals_insert (statement
-- triggers fire in name order), so the conversation row is locked before the usage row,
-- as every other writer of both does.
CREATE FUNCTION public.forge_conversation_turns_usage()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  INSERT INTO public.usage_metrics AS u (user_id, day, tokens)
  SELECT c.created_by, (pg_catalog.now() AT TIME ZONE 'UTC')::date, sum(t.token_count)
    FROM new_turns t JOIN public.conversations c ON c.id = t.conversation_id
   GROUP BY c.created_by
  HAVING sum(t.token_count) > 0
  ON CONFLICT (user_id, day) DO UPDATE SET tokens = u.tokens + EXCLUDED.tokens;
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_conversation_turns_usage() IS
  'forge-migration: counts the tokens of the turns written';

CREATE TRIGGER conversation_turns_usage
  AFTER INSERT ON public.conversation_turns
  REFERENCING NEW TABLE AS new_turns
  FOR EACH STATEMENT EXECUTE FUNCTION public.forge_conversation_turns_usage();

-- batch_jobs: batch.created, batch.cancelled.
CREATE FUNCTION public.forge_batch_jobs_activity()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO public.activity_logs (user_id, action, entity_type, entity_id, metadata)
    VALUES (NEW.created_by, 'batch.created', 'batch', NEW.id,
            pg_catalog.jsonb_build_object('name', NEW.name, 'status', NEW.status));
  ELSIF NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM 'cancelled' THEN
    INSERT INTO public.activity_logs (user_id, action, entity_type, entity_id, metadata)
    VALUES (NEW.created_by, 'batch.cancelled', 'batch', NEW.id,
            pg_catalog.jsonb_build_object('name', NEW.name, 'status', NEW.status));
  END IF;
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_batch_jobs_activity() IS
  'forge-migration: logs batch.created and batch.cancelled';

CREATE TRIGGER batch_jobs_activity
  AFTER INSERT OR UPDATE OF status ON public.batch_jobs
  FOR EACH ROW EXECUTE FUNCTION public.forge_batch_jobs_activity();

-- api_keys: api_key.created, api_key.revoked (revoked_at from NULL to a value).
CREATE FUNCTION public.forge_api_keys_activity()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO public.activity_logs (user_id, action, entity_type, entity_id, metadata)
    VALUES (NEW.user_id, 'api_key.created', 'api_key', NEW.id,
            pg_catalog.jsonb_build_object('name', NEW.name, 'key_prefix', NEW.key_prefix));
  ELSIF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
    INSERT INTO public.activity_logs (user_id, action, entity_type, entity_id, metadata)
    VALUES (NEW.user_id, 'api_key.revoked', 'api_key', NEW.id,
            pg_catalog.jsonb_build_object('name', NEW.name, 'key_prefix', NEW.key_prefix));
  END IF;
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_api_keys_activity() IS
  'forge-migration: logs api_key.created and api_key.revoked';

CREATE TRIGGER api_keys_activity
  AFTER INSERT OR UPDATE OF revoked_at ON public.api_keys
  FOR EACH ROW EXECUTE FUNCTION public.forge_api_keys_activity();

-- ---------------------------------------------------------------------------------------
-- Privileges: everything revoked from PUBLIC, anon, authenticated and service_role
-- (Supabase's default privileges grant them ALL on every new table), then exactly the
-- contract's grants. `updated_at` is granted where a user may update: the BEFORE UPDATE
-- trigger sets it whatever the statement says.

REVOKE ALL ON TABLE public.credit_accounts, public.credit_transactions, public.api_keys,
  public.notifications, public.notification_preferences, public.usage_metrics,
  public.activity_logs
  FROM PUBLIC, anon, authenticated, service_role;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE
  public.credit_accounts, public.credit_transactions, public.api_keys,
  public.notifications, public.notification_preferences, public.usage_metrics,
  public.activity_logs
  TO service_role;

GRANT SELECT ON public.credit_accounts, public.credit_transactions, public.usage_metrics,
  public.activity_logs TO authenticated;
-- Every column of a key but its hash.
GRANT SELECT (id, user_id, name, key_prefix, scopes, last_used_at, expires_at, revoked_at,
              created_at, updated_at) ON public.api_keys TO authenticated;
GRANT UPDATE (name, revoked_at, updated_at) ON public.api_keys TO authenticated;
GRANT SELECT, DELETE ON public.notifications TO authenticated;
GRANT UPDATE (read_at) ON public.notifications TO authenticated;
GRANT SELECT ON public.notification_preferences TO authenticated;
GRANT UPDATE (email_enabled, in_app_enabled, muted_types, updated_at)
  ON public.notification_preferences TO authenticated;

-- ---------------------------------------------------------------------------------------
-- Row-level security, enabled and forced: users read their own rows of every table,
-- rename and revoke their keys, mark read and delete their notifications, and change their
-- preferences. `service_role` bypasses RLS.

ALTER TABLE public.credit_accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.credit_transactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notification_preferences ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.usage_metrics ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.activity_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.credit_accounts FORCE ROW LEVEL SECURITY;
ALTER TABLE public.credit_transactions FORCE ROW LEVEL SECURITY;
ALTER TABLE public.api_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE public.notifications FORCE ROW LEVEL SECURITY;
ALTER TABLE public.notification_preferences FORCE ROW LEVEL SECURITY;
ALTER TABLE public.usage_metrics FORCE ROW LEVEL SECURITY;
ALTER TABLE public.activity_logs FORCE ROW LEVEL SECURITY;

CREATE POLICY credit_accounts_select_own ON public.credit_accounts FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY credit_transactions_select_own ON public.credit_transactions FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY api_keys_select_own ON public.api_keys FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY api_keys_update_own ON public.api_keys FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid()))
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY notifications_select_own ON public.notifications FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY notifications_update_own ON public.notifications FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid()))
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY notifications_delete_own ON public.notifications FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY notification_preferences_select_own ON public.notification_preferences
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY notification_preferences_update_own ON public.notification_preferences
  FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid()))
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY usage_metrics_select_own ON public.usage_metrics FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY activity_logs_select_own ON public.activity_logs FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- ---------------------------------------------------------------------------------------
-- Functions: search_path pinned (in their definitions), and no trigger function
-- executable by anyone (a trigger needs no EXECUTE to fire).
REVOKE ALL ON FUNCTION public.forge_profiles_open_account() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_credit_accounts_guard() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_credit_transactions_apply() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_credit_transactions_guard() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_api_keys_guard() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_activity_logs_guard() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_projects_activity() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_coding_sessions_activity() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_coding_jobs_usage() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_conversations_usage() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_conversation_turns_usage() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_batch_jobs_activity() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.forge_api_keys_activity() FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- Upgrade: the profiles that exist get what signup gives a new one (an account with the
-- signup bonus, through the ledger, and their preferences).

INSERT INTO public.credit_accounts (user_id)
SELECT p.id FROM public.profiles p
 WHERE NOT EXISTS (SELECT 1 FROM public.credit_accounts a WHERE a.user_id = p.id);
INSERT INTO public.credit_transactions (account_id, user_id, amount, kind, idempotency_key)
SELECT a.id, a.user_id, {signup_bonus}, 'signup_bonus', 'signup_bonus' FROM public.credit_accounts a
 WHERE NOT EXISTS (SELECT 1 FROM public.credit_transactions t
                    WHERE t.account_id = a.id AND t.idempotency_key = 'signup_bonus');
INSERT INTO public.notification_preferences (user_id)
SELECT p.id FROM public.profiles p
ON CONFLICT (user_id) DO NOTHING;
