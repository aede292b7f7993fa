-- SQLite's half of the generation sources' rules (generation_up.sql is PostgreSQL's),
-- raising the same `forge:<kind>:` messages. SQLite has no roles, so the end-user rules
-- have no counterpart here, and a BEFORE trigger cannot change the row: what the database
-- keeps is written right after the row is (AFTER triggers; recursive triggers are off, so
-- those writes fire no trigger again). `{now}` is replaced by SQLite's "now" in the form
-- SeaORM writes, `{content_changed}` by the test over the content columns of templates.

-- conversations.template_id → templates(id) ON DELETE SET NULL. SQLite adds a foreign key
-- to an existing table only by rebuilding it (which would drop every trigger of the
-- database wall on conversations), so the rule is three triggers and an index.
CREATE INDEX IF NOT EXISTS idx_conversations_template_id ON conversations (template_id);

CREATE TRIGGER conversations_template_id_insert BEFORE INSERT ON conversations
WHEN NEW.template_id IS NOT NULL
 AND NOT EXISTS (SELECT 1 FROM templates t WHERE t.id = NEW.template_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:not_found:template');
END;

CREATE TRIGGER conversations_template_id_update BEFORE UPDATE OF template_id ON conversations
WHEN NEW.template_id IS NOT NULL
 AND NOT EXISTS (SELECT 1 FROM templates t WHERE t.id = NEW.template_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:not_found:template');
END;

CREATE TRIGGER templates_delete_sets_conversations_null AFTER DELETE ON templates
BEGIN
  UPDATE conversations SET template_id = NULL WHERE template_id = OLD.id;
END;

-- templates: a new template is version 1 (a BEFORE trigger cannot change the row, and a
-- stamping UPDATE after the insert would meet the update trigger below, so another version
-- is refused), stamped `last_modified` now unless the writer gave it, by whom the writer
-- names. A change of a content column is a new version (+1), stamped now and by whom the
-- writer named in that update (else NULL); any other update keeps version, last_modified
-- and last_modified_by as they were (but last_modified_by may become NULL: the foreign
-- key's ON DELETE SET NULL does that).
CREATE TRIGGER templates_version_insert BEFORE INSERT ON templates
WHEN NEW.version IS NOT 1
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:version:a new template is version 1');
END;

CREATE TRIGGER templates_versioning_update AFTER UPDATE ON templates
BEGIN
  UPDATE templates
     SET version = CASE WHEN {content_changed} THEN OLD.version + 1 ELSE OLD.version END,
         last_modified = CASE WHEN {content_changed} THEN {now} ELSE OLD.last_modified END,
         last_modified_by = CASE WHEN {content_changed}
                                 THEN CASE WHEN NEW.last_modified_by IS NOT OLD.last_modified_by
                                           THEN NEW.last_modified_by END
                                 WHEN NEW.last_modified_by IS NULL THEN NULL
                                 ELSE OLD.last_modified_by END
   WHERE id = NEW.id;
END;

-- generation_logs: append-only. An entry never changes, but for the foreign keys' ON
-- DELETE SET NULL clearing conversation_id or template_id. Deleting is left to the user's
-- cascade, which SQLite's triggers cannot tell from a direct delete.
CREATE TRIGGER generation_logs_never_change BEFORE UPDATE ON generation_logs
WHEN NOT (
      (NEW.conversation_id IS NULL OR NEW.conversation_id IS OLD.conversation_id)
  AND (NEW.template_id IS NULL OR NEW.template_id IS OLD.template_id)
  AND NEW.id IS OLD.id AND NEW.user_id IS OLD.user_id AND NEW.run_id IS OLD.run_id
  AND NEW.request_payload IS OLD.request_payload
  AND NEW.response_payload IS OLD.response_payload
  AND NEW.parameters IS OLD.parameters AND NEW.cost_usd IS OLD.cost_usd
  AND NEW.input_tokens IS OLD.input_tokens AND NEW.output_tokens IS OLD.output_tokens
  AND NEW.duration_ms IS OLD.duration_ms AND NEW.error_message IS OLD.error_message
  AND NEW.created_at IS OLD.created_at
  AND (NEW.conversation_id IS NOT OLD.conversation_id OR NEW.template_id IS NOT OLD.template_id))
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:generation logs never change');
END;

-- export_logs: completed_at set on entering completed or failed (unless the writer gave it).
CREATE TRIGGER export_logs_completed_at_insert AFTER INSERT ON export_logs
WHEN NEW.status IN ('completed', 'failed') AND NEW.completed_at IS NULL
BEGIN
  UPDATE export_logs SET completed_at = {now} WHERE id = NEW.id;
END;

CREATE TRIGGER export_logs_completed_at_update AFTER UPDATE OF status ON export_logs
WHEN NEW.status IN ('completed', 'failed') AND OLD.status IS NOT NEW.status
 AND NEW.completed_at IS NULL
BEGIN
  UPDATE export_logs SET completed_at = {now} WHERE id = NEW.id;
END;
