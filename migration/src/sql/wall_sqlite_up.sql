-- SQLite's half of the database wall: the invariants SCHEMA.md asks the database to hold
-- for every writer, as triggers raising the same `forge:<kind>:` messages as PostgreSQL's
-- (wall_up.sql), so forge-service has one code path on both backends. SQLite has no roles:
-- the end-user rules of PostgreSQL's privileges and policies have no counterpart here.
-- `{now}` is replaced by SQLite's "now" in the form SeaORM writes.

-- coding_sessions: the transitions of SCHEMA.md.
CREATE TRIGGER coding_sessions_transition BEFORE UPDATE OF status ON coding_sessions
WHEN NEW.status IS NOT OLD.status AND NOT (
     (OLD.status = 'pending' AND NEW.status IN ('active', 'completed', 'failed', 'expired'))
  OR (OLD.status = 'active' AND NEW.status IN ('paused', 'completed', 'failed', 'expired'))
  OR (OLD.status = 'paused' AND NEW.status IN ('active', 'completed', 'failed', 'expired')))
BEGIN
  SELECT RAISE(ABORT, 'forge:transition:session');
END;

-- coding_sessions: only on the owner's own, active project, and never more live sessions
-- than the owner's sessions_limit (SQLite has one writer at a time, so no race).
CREATE TRIGGER coding_sessions_profile BEFORE INSERT ON coding_sessions
WHEN NOT EXISTS (SELECT 1 FROM profiles p WHERE p.id = NEW.user_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:not_found:profile');
END;

CREATE TRIGGER coding_sessions_project BEFORE INSERT ON coding_sessions
WHEN EXISTS (SELECT 1 FROM profiles p WHERE p.id = NEW.user_id)
 AND NOT EXISTS (SELECT 1 FROM projects p WHERE p.id = NEW.project_id AND p.user_id = NEW.user_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:not_found:project');
END;

CREATE TRIGGER coding_sessions_project_active BEFORE INSERT ON coding_sessions
WHEN EXISTS (SELECT 1 FROM projects p WHERE p.id = NEW.project_id AND p.status <> 'active')
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:project_id:sessions start only on active projects');
END;

CREATE TRIGGER coding_sessions_live_limit BEFORE INSERT ON coding_sessions
WHEN NEW.status IN ('pending', 'active', 'paused')
 AND (SELECT count(*) FROM coding_sessions s
       WHERE s.user_id = NEW.user_id AND s.status IN ('pending', 'active', 'paused'))
     >= (SELECT p.sessions_limit FROM profiles p WHERE p.id = NEW.user_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:limit:live sessions');
END;

-- conversations: totals start at zero and follow the turns.
CREATE TRIGGER conversations_totals_start BEFORE INSERT ON conversations
WHEN NEW.total_turns <> 0 OR NEW.total_tokens <> 0
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:a new conversation has no turns yet; its totals follow its turns');
END;

CREATE TRIGGER conversation_turns_totals_insert AFTER INSERT ON conversation_turns
BEGIN
  UPDATE conversations SET total_turns = total_turns + 1, total_tokens = total_tokens + NEW.token_count
   WHERE id = NEW.conversation_id;
END;

CREATE TRIGGER conversation_turns_totals_delete AFTER DELETE ON conversation_turns
BEGIN
  UPDATE conversations SET total_turns = total_turns - 1, total_tokens = total_tokens - OLD.token_count
   WHERE id = OLD.conversation_id;
END;

CREATE TRIGGER conversation_turns_totals_update AFTER UPDATE OF token_count, conversation_id ON conversation_turns
BEGIN
  UPDATE conversations SET total_turns = total_turns - 1, total_tokens = total_tokens - OLD.token_count
   WHERE id = OLD.conversation_id;
  UPDATE conversations SET total_turns = total_turns + 1, total_tokens = total_tokens + NEW.token_count
   WHERE id = NEW.conversation_id;
END;

-- batch_jobs: counters start at zero and follow the items.
CREATE TRIGGER batch_jobs_counters_start BEFORE INSERT ON batch_jobs
WHEN NEW.total_items <> 0 OR NEW.completed_items <> 0 OR NEW.successful_items <> 0 OR NEW.failed_items <> 0
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:a new batch has no items yet; its counters follow its items');
END;

CREATE TRIGGER batch_items_counters_insert AFTER INSERT ON batch_items
BEGIN
  UPDATE batch_jobs SET
    total_items = total_items + 1,
    completed_items = completed_items + (NEW.status IN ('completed', 'failed')),
    successful_items = successful_items + (NEW.status = 'completed'),
    failed_items = failed_items + (NEW.status = 'failed')
  WHERE id = NEW.batch_job_id;
END;

CREATE TRIGGER batch_items_counters_delete AFTER DELETE ON batch_items
BEGIN
  UPDATE batch_jobs SET
    total_items = total_items - 1,
    completed_items = completed_items - (OLD.status IN ('completed', 'failed')),
    successful_items = successful_items - (OLD.status = 'completed'),
    failed_items = failed_items - (OLD.status = 'failed')
  WHERE id = OLD.batch_job_id;
END;

CREATE TRIGGER batch_items_counters_update AFTER UPDATE OF status, batch_job_id ON batch_items
WHEN NEW.status IS NOT OLD.status OR NEW.batch_job_id IS NOT OLD.batch_job_id
BEGIN
  UPDATE batch_jobs SET
    total_items = total_items - 1,
    completed_items = completed_items - (OLD.status IN ('completed', 'failed')),
    successful_items = successful_items - (OLD.status = 'completed'),
    failed_items = failed_items - (OLD.status = 'failed')
  WHERE id = OLD.batch_job_id;
  UPDATE batch_jobs SET
    total_items = total_items + 1,
    completed_items = completed_items + (NEW.status IN ('completed', 'failed')),
    successful_items = successful_items + (NEW.status = 'completed'),
    failed_items = failed_items + (NEW.status = 'failed')
  WHERE id = NEW.batch_job_id;
END;

-- batch_items: an item's conversation exists and is one of the batch owner's.
CREATE TRIGGER batch_items_conversation_missing_insert BEFORE INSERT ON batch_items
WHEN NEW.conversation_id IS NOT NULL
 AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = NEW.conversation_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:not_found:conversation');
END;

CREATE TRIGGER batch_items_conversation_missing_update BEFORE UPDATE OF conversation_id ON batch_items
WHEN NEW.conversation_id IS NOT NULL
 AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = NEW.conversation_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:not_found:conversation');
END;

CREATE TRIGGER batch_items_conversation_insert BEFORE INSERT ON batch_items
WHEN EXISTS (SELECT 1 FROM conversations c WHERE c.id = NEW.conversation_id) AND NOT EXISTS (
  SELECT 1 FROM conversations c JOIN batch_jobs b ON b.created_by = c.created_by
   WHERE c.id = NEW.conversation_id AND b.id = NEW.batch_job_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:conflict:the conversation does not belong to the batch''s owner');
END;

CREATE TRIGGER batch_items_conversation_update BEFORE UPDATE OF conversation_id, batch_job_id ON batch_items
WHEN EXISTS (SELECT 1 FROM conversations c WHERE c.id = NEW.conversation_id) AND NOT EXISTS (
  SELECT 1 FROM conversations c JOIN batch_jobs b ON b.created_by = c.created_by
   WHERE c.id = NEW.conversation_id AND b.id = NEW.batch_job_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:conflict:the conversation does not belong to the batch''s owner');
END;

-- batch_jobs: a batch that ends gets its completed_at; a cancelled batch fails its queued
-- items (and the counters follow through the items' triggers).
CREATE TRIGGER batch_jobs_completed_at AFTER UPDATE OF status ON batch_jobs
WHEN NEW.status IN ('completed', 'failed', 'cancelled')
 AND OLD.status NOT IN ('completed', 'failed', 'cancelled')
 AND NEW.completed_at IS NULL
BEGIN
  UPDATE batch_jobs SET completed_at = {now} WHERE id = NEW.id;
END;

CREATE TRIGGER batch_jobs_cancel_items AFTER UPDATE OF status ON batch_jobs
WHEN NEW.status = 'cancelled' AND OLD.status IS NOT 'cancelled'
BEGIN
  UPDATE batch_items SET status = 'failed', error = 'batch cancelled', updated_at = {now}
   WHERE batch_job_id = NEW.id AND status = 'queued';
END;

-- session_events: append-only, `seq` never past the session's next (forge-service computes
-- it in the same write transaction; a taken one is refused by the unique constraint). Deleting is left to the session's cascade, which SQLite's
-- triggers cannot tell from a direct delete.
CREATE TRIGGER session_events_seq_next BEFORE INSERT ON session_events
WHEN NEW.seq > (SELECT coalesce(max(e.seq), 0) + 1 FROM session_events e
                 WHERE e.session_id = NEW.session_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:seq is not the next of its session (events are gapless)');
END;

CREATE TRIGGER session_events_never_change BEFORE UPDATE ON session_events
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:session events never change');
END;
