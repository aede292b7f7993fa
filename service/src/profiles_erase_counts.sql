-- profiles::erase, both backends ($1 is the user; SQLite reads `$1` as parameter 1).
-- One row:
-- - per table, the rows that deleting the profile deletes, following each foreign key's
--   ON DELETE CASCADE down from `profiles` (the user's own rows and the rows under them);
-- - `detached_*`: other users' rows that stay, with a reference to the user or to one of
--   the deleted rows set to NULL by its ON DELETE SET NULL;
-- - `others_below`: other users' rows that hang under the user's rows and would be
--   deleted with them. Forge never writes such a row (a session's project, a scenario's
--   template and an edge case's scenario are their owner's own); erase refuses when one
--   exists.
SELECT
  (SELECT count(*) FROM projects WHERE user_id = $1) AS projects,
  (SELECT count(*) FROM coding_sessions WHERE user_id = $1) AS coding_sessions,
  (SELECT count(*) FROM coding_jobs
    WHERE session_id IN (SELECT id FROM coding_sessions WHERE user_id = $1)) AS coding_jobs,
  (SELECT count(*) FROM session_events
    WHERE session_id IN (SELECT id FROM coding_sessions WHERE user_id = $1)) AS session_events,
  (SELECT count(*) FROM conversations WHERE created_by = $1) AS conversations,
  (SELECT count(*) FROM conversation_turns
    WHERE conversation_id IN (SELECT id FROM conversations WHERE created_by = $1))
    AS conversation_turns,
  (SELECT count(*) FROM batch_jobs WHERE created_by = $1) AS batch_jobs,
  (SELECT count(*) FROM batch_items
    WHERE batch_job_id IN (SELECT id FROM batch_jobs WHERE created_by = $1)) AS batch_items,
  (SELECT count(*) FROM jobs WHERE owner_id = $1) AS jobs,
  (SELECT count(*) FROM job_events
    WHERE run_id IN (SELECT run_id FROM jobs WHERE owner_id = $1)) AS job_events,
  (SELECT count(*) FROM artifacts
    WHERE run_id IN (SELECT run_id FROM jobs WHERE owner_id = $1)) AS artifacts,
  (SELECT count(*) FROM templates WHERE created_by = $1) AS templates,
  (SELECT count(*) FROM scenarios WHERE created_by = $1) AS scenarios,
  (SELECT count(*) FROM edge_cases WHERE created_by = $1) AS edge_cases,
  (SELECT count(*) FROM generation_logs WHERE user_id = $1) AS generation_logs,
  (SELECT count(*) FROM export_logs WHERE user_id = $1) AS export_logs,
  (SELECT count(*) FROM credit_accounts WHERE user_id = $1) AS credit_accounts,
  (SELECT count(*) FROM credit_transactions
    WHERE account_id IN (SELECT id FROM credit_accounts WHERE user_id = $1))
    AS credit_transactions,
  (SELECT count(*) FROM api_keys WHERE user_id = $1) AS api_keys,
  (SELECT count(*) FROM notifications WHERE user_id = $1) AS notifications,
  (SELECT count(*) FROM notification_preferences WHERE user_id = $1)
    AS notification_preferences,
  (SELECT count(*) FROM usage_metrics WHERE user_id = $1) AS usage_metrics,
  (SELECT count(*) FROM activity_logs WHERE user_id = $1) AS activity_logs,
  (SELECT count(*) FROM conversations
    WHERE created_by <> $1
      AND (approved_by = $1
           OR template_id IN (SELECT id FROM templates WHERE created_by = $1)))
    AS detached_conversations,
  (SELECT count(*) FROM templates WHERE created_by <> $1 AND last_modified_by = $1)
    AS detached_templates,
  (SELECT count(*) FROM scenarios
    WHERE created_by <> $1
      AND conversation_id IN (SELECT id FROM conversations WHERE created_by = $1))
    AS detached_scenarios,
  (SELECT count(*) FROM generation_logs
    WHERE user_id <> $1
      AND (conversation_id IN (SELECT id FROM conversations WHERE created_by = $1)
           OR template_id IN (SELECT id FROM templates WHERE created_by = $1)))
    AS detached_generation_logs,
  (SELECT count(*) FROM coding_sessions
    WHERE user_id <> $1 AND project_id IN (SELECT id FROM projects WHERE user_id = $1))
  + (SELECT count(*) FROM scenarios
      WHERE created_by <> $1
        AND parent_template_id IN (SELECT id FROM templates WHERE created_by = $1))
  + (SELECT count(*) FROM edge_cases
      WHERE created_by <> $1
        AND scenario_id IN (SELECT id FROM scenarios
                             WHERE created_by = $1
                                OR parent_template_id IN (SELECT id FROM templates
                                                           WHERE created_by = $1)))
    AS others_below
