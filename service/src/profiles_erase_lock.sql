-- profiles::erase on PostgreSQL, after the profile row is locked: locks the erased user's
-- rows that other rows hang under ($1 is the user). A writer adding a row under one of
-- them (an event or job to a session, a turn to a conversation, an item to a batch, an
-- event or artifact to a run, a scenario to a template, an edge case to a scenario, a
-- generation log naming a template, a ledger row to the credit account) holds a key-share
-- lock on it until it commits; these
-- locks wait for such writers, and no new row can be added under the locked ones after
-- them. The counts read next are therefore exactly what the cascade deletes. (The profile
-- lock already holds off new rows that name the user directly.)
WITH locked_projects AS (
       SELECT 1 FROM projects WHERE user_id = $1 FOR UPDATE),
     locked_sessions AS (
       SELECT 1 FROM coding_sessions WHERE user_id = $1 FOR UPDATE),
     locked_conversations AS (
       SELECT 1 FROM conversations WHERE created_by = $1 FOR UPDATE),
     locked_batches AS (
       SELECT 1 FROM batch_jobs WHERE created_by = $1 FOR UPDATE),
     locked_runs AS (
       SELECT 1 FROM jobs WHERE owner_id = $1 FOR UPDATE),
     locked_templates AS (
       SELECT 1 FROM templates WHERE created_by = $1 FOR UPDATE),
     locked_scenarios AS (
       SELECT 1 FROM scenarios WHERE created_by = $1 FOR UPDATE),
     locked_accounts AS (
       SELECT 1 FROM credit_accounts WHERE user_id = $1 FOR UPDATE)
SELECT (SELECT count(*) FROM locked_projects)
     + (SELECT count(*) FROM locked_sessions)
     + (SELECT count(*) FROM locked_conversations)
     + (SELECT count(*) FROM locked_batches)
     + (SELECT count(*) FROM locked_runs)
     + (SELECT count(*) FROM locked_templates)
     + (SELECT count(*) FROM locked_scenarios)
     + (SELECT count(*) FROM locked_accounts) AS locked
