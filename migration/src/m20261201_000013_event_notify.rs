//! A wake-up for live event streams (`forge_service::events::subscribe`): on PostgreSQL,
//! appending to `session_events` sends `NOTIFY forge_session_events, '<session id>'`.
//!
//! The notification carries no event, only which session has news; listeners read the
//! events themselves (with row-level security) from the last `seq` they delivered, so a
//! lost or late notification can delay an event but never skip or repeat one. It is
//! delivered at commit, and at most once per transaction and session: PostgreSQL drops a
//! notification identical (channel and payload) to one already sent in the same
//! transaction, which is why the payload is the session alone (with the `seq` in it every
//! row would be distinct, and keeping them apart in the trigger measured a quarter slower).
//! Any role that can `LISTEN` sees which sessions are busy, which is why it carries
//! nothing else.
//!
//! Like every Forge function it runs with `search_path = ''` and nobody may call it
//! directly. Nothing changes on SQLite, where streams poll.

use sea_orm_migration::prelude::*;

/// The channel the `session_events_notify` trigger (migration
/// `m20261201_000013_event_notify`) notifies on, with the session's id as payload.
pub const EVENTS_CHANNEL: &str = "forge_session_events";

const UP: &str = r#"
CREATE FUNCTION public.forge_session_events_notify()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  PERFORM pg_catalog.pg_notify('forge_session_events', NEW.session_id::text);
  RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.forge_session_events_notify() IS
  'forge-migration: wakes live event streams (NOTIFY forge_session_events, once per transaction and session)';

REVOKE ALL ON FUNCTION public.forge_session_events_notify()
  FROM PUBLIC, anon, authenticated, service_role;

CREATE TRIGGER session_events_notify
  AFTER INSERT ON public.session_events
  FOR EACH ROW EXECUTE FUNCTION public.forge_session_events_notify();
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS session_events_notify ON public.session_events;
DROP FUNCTION IF EXISTS public.forge_session_events_notify();
"#;

/// Notifies `forge_session_events` when events are appended (PostgreSQL).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::postgres_only(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::postgres_only(manager, DOWN).await
    }
}
