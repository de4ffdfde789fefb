-- hookrelay schema v5: safe to face the internet.

-- A job waiting for a busy endpoint is parked on it: not due (run_at is far ahead) until an
-- attempt to that endpoint finishes and wakes the next one, so a backlog costs no writes while
-- it waits.
ALTER TABLE jobs ADD COLUMN parked_on TEXT;
CREATE INDEX jobs_parked ON jobs (parked_on, id) WHERE parked_on IS NOT NULL;

-- Publish idempotency ids are scoped to the publisher (the token) that sent them. Events stored
-- before this version have no publisher and still answer for their id.
ALTER TABLE events ADD COLUMN publisher TEXT;
DROP INDEX events_idempotency;
CREATE UNIQUE INDEX events_idempotency ON events (publisher, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Response headers kept per attempt are capped; this says the cap cut some off.
ALTER TABLE delivery_attempts ADD COLUMN response_headers_truncated INTEGER NOT NULL DEFAULT 0;

-- Dedupe keys of inbound requests (a sender's event id), remembered longer than the inbound
-- rows themselves, so a captured request replayed after its row is gone is still a duplicate.
CREATE TABLE inbound_keys (
    source  TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (source, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX inbound_keys_seen ON inbound_keys (seen_at);
INSERT INTO inbound_keys (source, key, seen_at)
    SELECT source, external_id, received_at FROM inbound_events WHERE true
    ON CONFLICT DO NOTHING;
