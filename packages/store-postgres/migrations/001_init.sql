-- Grantline store, schema version 1.
-- {{schema}} is replaced by the quoted schema name at migration time. The CHECK on grants.state is
-- not written here: migrate() derives it from GRANT_STATES of @grantline/core (see src/migrate.ts),
-- so the database can never disagree with the transition table.

CREATE TABLE {{schema}}.grants (
  -- "C" collation: byte order, the same order the memory store and JavaScript use for ids.
  id text COLLATE "C" PRIMARY KEY,
  version integer NOT NULL CHECK (version > 0),
  state text NOT NULL,
  due_at timestamptz,
  idempotency_key text COLLATE "C" UNIQUE,
  subject_id text NOT NULL,
  requester_id text NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  audit_seq integer NOT NULL CHECK (audit_seq >= 0),
  lease_owner text,
  lease_until timestamptz,
  doc jsonb NOT NULL
);

-- The sweeper's claim walks this index in (due_at, id) order. Finished cases have due_at NULL and
-- are not in it at all, so a claim costs the same with ten thousand or ten million closed cases.
CREATE INDEX grants_due_idx ON {{schema}}.grants (due_at, id) WHERE due_at IS NOT NULL;
-- nextDue(): the earliest lease expiry among leased cases.
CREATE INDEX grants_lease_idx ON {{schema}}.grants (lease_until) WHERE lease_until IS NOT NULL;
-- list(): newest first, by subject, by requester, by state.
CREATE INDEX grants_created_idx ON {{schema}}.grants (created_at DESC, id DESC);
CREATE INDEX grants_subject_idx ON {{schema}}.grants (subject_id, created_at DESC, id DESC);
CREATE INDEX grants_requester_idx ON {{schema}}.grants (requester_id, created_at DESC, id DESC);
CREATE INDEX grants_state_idx ON {{schema}}.grants (state, created_at DESC, id DESC);

CREATE TABLE {{schema}}.audit_events (
  case_id text COLLATE "C" NOT NULL REFERENCES {{schema}}.grants (id),
  seq integer NOT NULL CHECK (seq > 0),
  -- Store-wide position. Writers take a shared advisory lock before drawing it and readers of
  -- allEvents() an exclusive one, so a reader never sees a later number before an earlier commit.
  global_seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  type text NOT NULL,
  at timestamptz NOT NULL,
  doc jsonb NOT NULL,
  PRIMARY KEY (case_id, seq)
);

-- The audit trail is append-only: no UPDATE, DELETE or TRUNCATE, whoever asks.
CREATE FUNCTION {{schema}}.grantline_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'grantline audit events are append-only (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update_delete
  BEFORE UPDATE OR DELETE ON {{schema}}.audit_events
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.grantline_audit_append_only();

CREATE TRIGGER audit_events_no_truncate
  BEFORE TRUNCATE ON {{schema}}.audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.grantline_audit_append_only();

-- Wake sweepers in other processes when a committed change makes a case due SOONER than before
-- and within the next 60 seconds. Only such a change can leave a sleeping sweeper late: one that
-- moves a due time later, or clears it, at worst wakes a sweeper early, and a due time further away
-- is seen by the sweeper's own next look (core's sweeper sleeps at most 30 s by default). Why not
-- notify on every change: PostgreSQL serialises the commits of all notifying transactions in the
-- database behind one lock, held across the WAL flush, which caps writes at one commit per fsync.
-- NOTIFY is transactional: nothing is sent for a rolled-back write.
CREATE FUNCTION {{schema}}.grantline_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('grantline:' || TG_TABLE_SCHEMA, NEW.id);
  RETURN NULL;
END;
$$;

CREATE TRIGGER grants_notify_insert
  AFTER INSERT ON {{schema}}.grants
  FOR EACH ROW WHEN (NEW.due_at IS NOT NULL AND NEW.due_at <= now() + interval '60 seconds')
  EXECUTE FUNCTION {{schema}}.grantline_notify_change();

CREATE TRIGGER grants_notify_update
  AFTER UPDATE ON {{schema}}.grants
  FOR EACH ROW WHEN (
    NEW.due_at IS NOT NULL AND NEW.due_at <= now() + interval '60 seconds'
    AND (OLD.due_at IS NULL OR NEW.due_at < OLD.due_at)
  )
  EXECUTE FUNCTION {{schema}}.grantline_notify_change();
