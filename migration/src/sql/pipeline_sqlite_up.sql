-- SQLite's half of the pipeline runs' rules (pipeline_up.sql is PostgreSQL's), raising the
-- same `forge:<kind>:` messages. SQLite has no roles, so the end-user rules have no
-- counterpart here, and a BEFORE trigger cannot change the row: the writer gives
-- `owner_id` of events and artifacts and the database checks it, and the timestamps a
-- status change implies are set right after the row is written. `{now}` is replaced by
-- SQLite's "now" in the form SeaORM writes.

-- jobs: the transitions (pending → running → completed | failed, pending | running →
-- cancelled, nothing leaves an end state), and an owner that never changes.
CREATE TRIGGER jobs_transition BEFORE UPDATE OF status ON jobs
WHEN NEW.status IS NOT OLD.status AND NOT (
     (OLD.status = 'pending' AND NEW.status IN ('running', 'cancelled'))
  OR (OLD.status = 'running' AND NEW.status IN ('completed', 'failed', 'cancelled')))
BEGIN
  SELECT RAISE(ABORT, 'forge:transition:run');
END;

CREATE TRIGGER jobs_owner_never_changes BEFORE UPDATE OF owner_id ON jobs
WHEN NEW.owner_id IS NOT OLD.owner_id
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:a run''s owner never changes');
END;

-- jobs: error_message only on a failed run; no started_at while pending; completed_at only
-- once the run ended. (On an update that is not a transition, jobs_transition speaks: the
-- order in which SQLite fires triggers is not defined.)
CREATE TRIGGER jobs_error_message_insert BEFORE INSERT ON jobs
WHEN NEW.error_message IS NOT NULL AND NEW.status IS NOT 'failed'
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:error_message:only a failed run has an error message');
END;

CREATE TRIGGER jobs_error_message_update BEFORE UPDATE OF error_message, status ON jobs
WHEN NEW.error_message IS NOT NULL AND NEW.status IS NOT 'failed' AND (NEW.status IS OLD.status
   OR (OLD.status = 'pending' AND NEW.status IN ('running', 'cancelled'))
   OR (OLD.status = 'running' AND NEW.status IN ('completed', 'failed', 'cancelled')))
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:error_message:only a failed run has an error message');
END;

CREATE TRIGGER jobs_started_at_insert BEFORE INSERT ON jobs
WHEN NEW.status = 'pending' AND NEW.started_at IS NOT NULL
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:started_at:a pending run has not started');
END;

CREATE TRIGGER jobs_started_at_update BEFORE UPDATE OF started_at, status ON jobs
WHEN NEW.status = 'pending' AND NEW.started_at IS NOT NULL AND (NEW.status IS OLD.status
   OR (OLD.status = 'pending' AND NEW.status IN ('running', 'cancelled'))
   OR (OLD.status = 'running' AND NEW.status IN ('completed', 'failed', 'cancelled')))
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:started_at:a pending run has not started');
END;

CREATE TRIGGER jobs_completed_at_insert BEFORE INSERT ON jobs
WHEN NEW.completed_at IS NOT NULL AND NEW.status NOT IN ('completed', 'failed', 'cancelled')
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:completed_at:only a run that ended has completed_at');
END;

CREATE TRIGGER jobs_completed_at_update BEFORE UPDATE OF completed_at, status ON jobs
WHEN NEW.completed_at IS NOT NULL AND NEW.status NOT IN ('completed', 'failed', 'cancelled') AND (NEW.status IS OLD.status
   OR (OLD.status = 'pending' AND NEW.status IN ('running', 'cancelled'))
   OR (OLD.status = 'running' AND NEW.status IN ('completed', 'failed', 'cancelled')))
BEGIN
  SELECT RAISE(ABORT, 'forge:invalid:completed_at:only a run that ended has completed_at');
END;

-- jobs: started_at is set on entering running, completed_at on entering an end state
-- (unless the writer gave them).
CREATE TRIGGER jobs_stamp_insert AFTER INSERT ON jobs
WHEN (NEW.status IN ('running', 'completed', 'failed') AND NEW.started_at IS NULL)
  OR (NEW.status IN ('completed', 'failed', 'cancelled') AND NEW.completed_at IS NULL)
BEGIN
  UPDATE jobs SET
    started_at = coalesce(started_at,
      CASE WHEN status IN ('running', 'completed', 'failed') THEN {now} END),
    completed_at = coalesce(completed_at,
      CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN {now} END)
  WHERE run_id = NEW.run_id;
END;

CREATE TRIGGER jobs_stamp_started_at AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'running' AND OLD.status IS NOT 'running' AND NEW.started_at IS NULL
BEGIN
  UPDATE jobs SET started_at = {now} WHERE run_id = NEW.run_id;
END;

CREATE TRIGGER jobs_stamp_completed_at AFTER UPDATE OF status ON jobs
WHEN NEW.status IN ('completed', 'failed', 'cancelled')
 AND OLD.status NOT IN ('completed', 'failed', 'cancelled')
 AND NEW.completed_at IS NULL
BEGIN
  UPDATE jobs SET completed_at = {now} WHERE run_id = NEW.run_id;
END;

-- job_events: of an existing run, carrying the run's owner; append-only. Deleting is left
-- to the run's cascade, which SQLite's triggers cannot tell from a direct delete.
CREATE TRIGGER job_events_run BEFORE INSERT ON job_events
WHEN NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = NEW.run_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:not_found:run');
END;

CREATE TRIGGER job_events_owner BEFORE INSERT ON job_events
WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = NEW.run_id)
 AND NEW.owner_id IS NOT (SELECT j.owner_id FROM jobs j WHERE j.run_id = NEW.run_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:conflict:owner_id is not the owner of the run');
END;

CREATE TRIGGER job_events_never_change BEFORE UPDATE ON job_events
BEGIN
  SELECT RAISE(ABORT, 'forge:invariant:job events never change');
END;

-- artifacts: of an existing run, carrying the run's owner.
CREATE TRIGGER artifacts_run_insert BEFORE INSERT ON artifacts
WHEN NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = NEW.run_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:not_found:run');
END;

CREATE TRIGGER artifacts_run_update BEFORE UPDATE OF run_id ON artifacts
WHEN NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = NEW.run_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:not_found:run');
END;

CREATE TRIGGER artifacts_owner_insert BEFORE INSERT ON artifacts
WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = NEW.run_id)
 AND NEW.owner_id IS NOT (SELECT j.owner_id FROM jobs j WHERE j.run_id = NEW.run_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:conflict:owner_id is not the owner of the run');
END;

CREATE TRIGGER artifacts_owner_update BEFORE UPDATE OF run_id, owner_id ON artifacts
WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = NEW.run_id)
 AND NEW.owner_id IS NOT (SELECT j.owner_id FROM jobs j WHERE j.run_id = NEW.run_id)
BEGIN
  SELECT RAISE(ABORT, 'forge:conflict:owner_id is not the owner of the run');
END;
