-- SQLite's half of the accounts' rules (accounts_up.sql is PostgreSQL's), raising the same
-- `forge:<kind>:` messages. SQLite has no roles, so the end-user rules (privileges, row
-- policies) have no counterpart here; and a BEFORE trigger cannot change the row, so what
-- the database writes into a new row (`balance_after`) is written right after it by an
-- AFTER trigger. SQLite runs one writer at a time: the balance, the limits and the counters
-- need no locks. Placeholders: {now} (SQLite's "now" as SeaORM writes it), {today} (the
-- UTC date), {uuid} (a new random UUID, 16 bytes as SeaORM stores one), {signup_bonus},
-- {credits_low}, {max_api_keys}, {notification_types}.

-- Signup: a new profile gets its credit account, the signup bonus (through the ledger) and
-- its notification preferences.
CREATE TRIGGER profiles_open_account AFTER INSERT ON profiles
BEGIN
  INSERT INTO credit_accounts (id, user_id)
  SELECT {uuid}, NEW.id
   WHERE NOT EXISTS (SELECT 1 FROM credit_accounts a WHERE a.user_id = NEW.id);
  INSERT INTO credit_transactions (id, account_id, user_id, amount, kind, idempotency_key)
  SELECT {uuid}, a.id, NEW.id, {signup_bonus}, 'signup_bonus', 'signup_bonus'
    FROM credit_accounts a
   WHERE a.user_id = NEW.id
     AND NOT EXISTS (SELECT 1 FROM credit_transactions t
                      WHERE t.account_id = a.id AND t.idempotency_key = 'signup_bonus');
  INSERT INTO notification_preferences (user_id)
  SELECT NEW.id
   WHERE NOT EXISTS (SELECT 1 FROM notification_preferences p WHERE p.user_id = NEW.id);
END;

-- credit_accounts: an account starts at zero, its user never changes, and its balance and
-- lifetime totals are always what its ledger says (the only writer that moves them is the
-- ledger's trigger below, which updates the account right after the ledger row went in).
CREATE TRIGGER credit_accounts_start_at_zero BEFORE INSERT ON credit_accounts
WHEN NEW.balance <> 0 OR NEW.lifetime_granted <> 0 OR NEW.lifetime_spent <> 0
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:a new credit account starts at zero; its balance follows its ledger');
END;

CREATE TRIGGER credit_accounts_user_fixed BEFORE UPDATE OF user_id ON credit_accounts
WHEN NEW.user_id IS NOT OLD.user_id
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:a credit account''s user never changes');
END;

CREATE TRIGGER credit_accounts_follow_ledger
BEFORE UPDATE OF balance, lifetime_granted, lifetime_spent ON credit_accounts
WHEN (NEW.balance IS NOT OLD.balance OR NEW.lifetime_granted IS NOT OLD.lifetime_granted
      OR NEW.lifetime_spent IS NOT OLD.lifetime_spent)
 AND NOT EXISTS (
   SELECT 1 FROM (SELECT coalesce(sum(t.amount), 0) AS balance,
                         coalesce(sum(max(t.amount, 0)), 0) AS granted,
                         coalesce(sum(max(-t.amount, 0)), 0) AS spent
                    FROM credit_transactions t WHERE t.account_id = NEW.id) l
    WHERE l.balance = NEW.balance AND l.granted = NEW.lifetime_granted
      AND l.spent = NEW.lifetime_spent)
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:a credit balance moves only through the ledger (credit_transactions)');
END;

-- credit_transactions: refused before the row goes in: an account that does not exist, a
-- user_id that is not the account's, a row that would take the balance below zero
-- (forge:limit:credits; RAISE takes only a literal in the SQLite versions other tools
-- still ship, so unlike PostgreSQL's the message cannot carry the balance). A row whose amount does not fit its kind is left to
-- the CHECK, and a retry (its id or (account_id, idempotency_key) taken) to the unique
-- index, which refuses it (or lets ON CONFLICT DO NOTHING skip it: then nothing moves,
-- the AFTER trigger runs only for rows that went in).
CREATE TRIGGER credit_transactions_check BEFORE INSERT ON credit_transactions
BEGIN
  SELECT CASE
    WHEN NOT (NEW.amount <> 0 AND (NEW.kind = 'adjustment'
                                    OR (NEW.kind = 'spend' AND NEW.amount < 0)
                                    OR (NEW.kind <> 'spend' AND NEW.amount > 0))) THEN NULL
    WHEN a.id IS NULL THEN RAISE(ABORT, 'forge:not_found:credit account')
    WHEN a.user_id IS NOT NEW.user_id
      THEN RAISE(ABORT, 'forge:conflict:user_id is not the user of the credit account')
    WHEN EXISTS (SELECT 1 FROM credit_transactions t
                  WHERE t.id = NEW.id
                     OR (t.account_id = NEW.account_id AND t.idempotency_key = NEW.idempotency_key))
      THEN NULL
    WHEN a.balance + NEW.amount < 0 THEN RAISE(ABORT, 'forge:limit:credits')
  END
  FROM (SELECT 1) LEFT JOIN credit_accounts a ON a.id = NEW.account_id;
END;

-- The row went in: its account moves by its amount, the row records the balance after it,
-- a spend counts towards the day's credits_spent, and a spend that takes the balance from
-- {credits_low} or more to less notifies the user (unless in-app notifications are off or
-- credits_low is muted).
CREATE TRIGGER credit_transactions_apply AFTER INSERT ON credit_transactions
BEGIN
  UPDATE credit_accounts
     SET balance = balance + NEW.amount,
         lifetime_granted = lifetime_granted + max(NEW.amount, 0),
         lifetime_spent = lifetime_spent + max(-NEW.amount, 0),
         updated_at = {now}
   WHERE id = NEW.account_id;
  UPDATE credit_transactions
     SET balance_after = (SELECT a.balance FROM credit_accounts a WHERE a.id = NEW.account_id)
   WHERE id = NEW.id;
  INSERT INTO notifications (id, user_id, type, title, body, data)
  SELECT {uuid}, NEW.user_id, 'credits_low', 'Your credits are running low',
         'Your balance is ' || a.balance || ' credits, below {credits_low}.',
         json_object('balance', a.balance, 'threshold', {credits_low})
    FROM credit_accounts a
   WHERE a.id = NEW.account_id AND NEW.kind = 'spend'
     AND a.balance < {credits_low} AND a.balance - NEW.amount >= {credits_low}
     AND NOT EXISTS (SELECT 1 FROM notification_preferences p
                      WHERE p.user_id = NEW.user_id
                        AND (NOT p.in_app_enabled
                             OR EXISTS (SELECT 1 FROM json_each(p.muted_types) m
                                         WHERE m.value = 'credits_low')));
  INSERT INTO usage_metrics (id, user_id, day, credits_spent)
  SELECT {uuid}, NEW.user_id, {today}, -NEW.amount WHERE NEW.kind = 'spend'
  ON CONFLICT (user_id, day) DO UPDATE
    SET credits_spent = credits_spent + excluded.credits_spent, updated_at = {now};
END;

-- credit_transactions is append-only: a row never changes (but for `balance_after`, which
-- the trigger above writes into the account's newest row, equal to the account's balance),
-- and is deleted only with its account (the cascade runs after the account is gone).
CREATE TRIGGER credit_transactions_never_change BEFORE UPDATE ON credit_transactions
WHEN NOT (
      NEW.id IS OLD.id AND NEW.account_id IS OLD.account_id AND NEW.user_id IS OLD.user_id
  AND NEW.amount IS OLD.amount AND NEW.kind IS OLD.kind AND NEW.reference IS OLD.reference
  AND NEW.idempotency_key IS OLD.idempotency_key AND NEW.metadata IS OLD.metadata
  AND NEW.created_at IS OLD.created_at
  AND NEW.balance_after IS (SELECT a.balance FROM credit_accounts a WHERE a.id = NEW.account_id)
  AND NEW.rowid = (SELECT max(t.rowid) FROM credit_transactions t WHERE t.account_id = NEW.account_id))
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:credit transactions never change');
END;

CREATE TRIGGER credit_transactions_delete BEFORE DELETE ON credit_transactions
WHEN EXISTS (SELECT 1 FROM credit_accounts a WHERE a.id = OLD.account_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:credit transactions are deleted only with their account');
END;

-- api_keys: a key is revoked once (revoked_at goes from NULL to a value and then never
-- changes), at most {max_api_keys} unrevoked keys per user, and scopes are strings.
CREATE TRIGGER api_keys_never_unrevoked BEFORE UPDATE OF revoked_at ON api_keys
WHEN OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NULL
BEGIN
  SELECT RAISE(ABORT, 'forge:transition:api key:revoked:active');
END;

CREATE TRIGGER api_keys_revoked_once BEFORE UPDATE OF revoked_at ON api_keys
WHEN OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NOT NULL
 AND NEW.revoked_at IS NOT OLD.revoked_at
BEGIN
  SELECT RAISE(ABORT, 'forge:transition:api key:revoked:revoked');
END;

CREATE TRIGGER api_keys_limit_insert BEFORE INSERT ON api_keys
WHEN NEW.revoked_at IS NULL
 AND (SELECT count(*) FROM api_keys k WHERE k.user_id = NEW.user_id AND k.revoked_at IS NULL)
     >= {max_api_keys}
BEGIN
  SELECT RAISE(ABORT, 'forge:limit:api keys:{max_api_keys}');
END;

-- (Un-revoking is refused above, whichever trigger runs first: only a move counts here.)
CREATE TRIGGER api_keys_limit_update BEFORE UPDATE OF user_id ON api_keys
WHEN NEW.revoked_at IS NULL AND OLD.revoked_at IS NULL AND NEW.user_id IS NOT OLD.user_id
 AND (SELECT count(*) FROM api_keys k
       WHERE k.user_id = NEW.user_id AND k.revoked_at IS NULL AND k.id IS NOT NEW.id)
     >= {max_api_keys}
BEGIN
  SELECT RAISE(ABORT, 'forge:limit:api keys:{max_api_keys}');
END;

CREATE TRIGGER api_keys_scopes_strings_insert BEFORE INSERT ON api_keys
WHEN json_valid(NEW.scopes) AND json_type(NEW.scopes) = 'array'
 AND EXISTS (SELECT 1 FROM json_each(NEW.scopes) e WHERE e.type <> 'text')
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:scopes:a JSON array of strings');
END;

CREATE TRIGGER api_keys_scopes_strings_update BEFORE UPDATE OF scopes ON api_keys
WHEN json_valid(NEW.scopes) AND json_type(NEW.scopes) = 'array'
 AND EXISTS (SELECT 1 FROM json_each(NEW.scopes) e WHERE e.type <> 'text')
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:scopes:a JSON array of strings');
END;

-- notification_preferences: muted_types names notification types.
CREATE TRIGGER notification_preferences_muted_types_insert BEFORE INSERT ON notification_preferences
WHEN json_valid(NEW.muted_types) AND json_type(NEW.muted_types) = 'array'
 AND EXISTS (SELECT 1 FROM json_each(NEW.muted_types) e
              WHERE e.type <> 'text' OR e.value NOT IN ({notification_types}))
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:muted_types:a JSON array of notification types');
END;

CREATE TRIGGER notification_preferences_muted_types_update
BEFORE UPDATE OF muted_types ON notification_preferences
WHEN json_valid(NEW.muted_types) AND json_type(NEW.muted_types) = 'array'
 AND EXISTS (SELECT 1 FROM json_each(NEW.muted_types) e
              WHERE e.type <> 'text' OR e.value NOT IN ({notification_types}))
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:muted_types:a JSON array of notification types');
END;

-- activity_logs is append-only: a row never changes and is deleted only with its user.
CREATE TRIGGER activity_logs_never_change BEFORE UPDATE ON activity_logs
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:activity logs never change');
END;

CREATE TRIGGER activity_logs_delete BEFORE DELETE ON activity_logs
WHEN EXISTS (SELECT 1 FROM profiles p WHERE p.id = OLD.user_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:activity logs are deleted only with their user');
END;

-- Usage counters and the activity log, by AFTER triggers on the tables they count (an
-- insert that ON CONFLICT DO NOTHING skips counts nothing; deletes write nothing, so a
-- user's erasure never inserts a row for them). One usage row per user and UTC day.
CREATE TRIGGER projects_activity_insert AFTER INSERT ON projects
BEGIN
  INSERT INTO activity_logs (id, user_id, action, entity_type, entity_id, metadata)
  VALUES ({uuid}, NEW.user_id, 'project.created', 'project', NEW.id,
          json_object('name', NEW.name, 'status', NEW.status));
END;

CREATE TRIGGER projects_activity_status AFTER UPDATE OF status ON projects
WHEN NEW.status IN ('archived', 'deleted') AND NEW.status IS NOT OLD.status
BEGIN
  INSERT INTO activity_logs (id, user_id, action, entity_type, entity_id, metadata)
  VALUES ({uuid}, NEW.user_id, 'project.' || NEW.status, 'project', NEW.id,
          json_object('name', NEW.name, 'status', NEW.status));
END;

CREATE TRIGGER coding_sessions_activity_insert AFTER INSERT ON coding_sessions
BEGIN
  INSERT INTO usage_metrics (id, user_id, day, sessions_started)
  VALUES ({uuid}, NEW.user_id, {today}, 1)
  ON CONFLICT (user_id, day) DO UPDATE
    SET sessions_started = sessions_started + 1, updated_at = {now};
  INSERT INTO activity_logs (id, user_id, action, entity_type, entity_id, metadata)
  VALUES ({uuid}, NEW.user_id, 'session.started', 'session', NEW.id,
          json_object('status', NEW.status));
END;

CREATE TRIGGER coding_sessions_activity_ended AFTER UPDATE OF status ON coding_sessions
WHEN NEW.status IN ('completed', 'failed', 'expired')
 AND OLD.status NOT IN ('completed', 'failed', 'expired')
BEGIN
  INSERT INTO activity_logs (id, user_id, action, entity_type, entity_id, metadata)
  VALUES ({uuid}, NEW.user_id, 'session.ended', 'session', NEW.id,
          json_object('status', NEW.status));
END;

CREATE TRIGGER coding_jobs_usage_insert AFTER INSERT ON coding_jobs
WHEN NEW.status = 'completed'
BEGIN
  INSERT INTO usage_metrics (id, user_id, day, jobs_completed)
  SELECT {uuid}, s.user_id, {today}, 1 FROM coding_sessions s WHERE s.id = NEW.session_id
  ON CONFLICT (user_id, day) DO UPDATE
    SET jobs_completed = jobs_completed + 1, updated_at = {now};
END;

CREATE TRIGGER coding_jobs_usage_completed AFTER UPDATE OF status ON coding_jobs
WHEN NEW.status = 'completed' AND OLD.status IS NOT 'completed'
BEGIN
  INSERT INTO usage_metrics (id, user_id, day, jobs_completed)
  SELECT {uuid}, s.user_id, {today}, 1 FROM coding_sessions s WHERE s.id = NEW.session_id
  ON CONFLICT (user_id, day) DO UPDATE
    SET jobs_completed = jobs_completed + 1, updated_at = {now};
END;

CREATE TRIGGER conversations_usage AFTER INSERT ON conversations
BEGIN
  INSERT INTO usage_metrics (id, user_id, day, conversations_created)
  VALUES ({uuid}, NEW.created_by, {today}, 1)
  ON CONFLICT (user_id, day) DO UPDATE
    SET conversations_created = conversations_created + 1, updated_at = {now};
END;

CREATE TRIGGER conversation_turns_usage AFTER INSERT ON conversation_turns
WHEN NEW.token_count > 0
BEGIN
  INSERT INTO usage_metrics (id, user_id, day, tokens)
  SELECT {uuid}, c.created_by, {today}, NEW.token_count
    FROM conversations c WHERE c.id = NEW.conversation_id
  ON CONFLICT (user_id, day) DO UPDATE
    SET tokens = tokens + excluded.tokens, updated_at = {now};
END;

CREATE TRIGGER batch_jobs_activity_insert AFTER INSERT ON batch_jobs
BEGIN
  INSERT INTO activity_logs (id, user_id, action, entity_type, entity_id, metadata)
  VALUES ({uuid}, NEW.created_by, 'batch.created', 'batch', NEW.id,
          json_object('name', NEW.name, 'status', NEW.status));
END;

CREATE TRIGGER batch_jobs_activity_cancelled AFTER UPDATE OF status ON batch_jobs
WHEN NEW.status = 'cancelled' AND OLD.status IS NOT 'cancelled'
BEGIN
  INSERT INTO activity_logs (id, user_id, action, entity_type, entity_id, metadata)
  VALUES ({uuid}, NEW.created_by, 'batch.cancelled', 'batch', NEW.id,
          json_object('name', NEW.name, 'status', NEW.status));
END;

CREATE TRIGGER api_keys_activity_insert AFTER INSERT ON api_keys
BEGIN
  INSERT INTO activity_logs (id, user_id, action, entity_type, entity_id, metadata)
  VALUES ({uuid}, NEW.user_id, 'api_key.created', 'api_key', NEW.id,
          json_object('name', NEW.name, 'key_prefix', NEW.key_prefix));
END;

CREATE TRIGGER api_keys_activity_revoked AFTER UPDATE OF revoked_at ON api_keys
WHEN NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL
BEGIN
  INSERT INTO activity_logs (id, user_id, action, entity_type, entity_id, metadata)
  VALUES ({uuid}, NEW.user_id, 'api_key.revoked', 'api_key', NEW.id,
          json_object('name', NEW.name, 'key_prefix', NEW.key_prefix));
END;

-- Upgrade: the profiles that exist get what signup gives a new one.
INSERT INTO credit_accounts (id, user_id)
SELECT {uuid}, p.id FROM profiles p
 WHERE NOT EXISTS (SELECT 1 FROM credit_accounts a WHERE a.user_id = p.id);
INSERT INTO credit_transactions (id, account_id, user_id, amount, kind, idempotency_key)
SELECT {uuid}, a.id, a.user_id, {signup_bonus}, 'signup_bonus', 'signup_bonus' FROM credit_accounts a
 WHERE NOT EXISTS (SELECT 1 FROM credit_transactions t
                    WHERE t.account_id = a.id AND t.idempotency_key = 'signup_bonus');
INSERT INTO notification_preferences (user_id)
SELECT p.id FROM profiles p
 WHERE NOT EXISTS (SELECT 1 FROM notification_preferences n WHERE n.user_id = p.id);
