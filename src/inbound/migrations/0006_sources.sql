-- hookrelay schema v6, inbound: events of inbound sources (channel 'source'), and the requests ingress refused.

-- SQLite cannot change a CHECK in place: the table is rebuilt with its rows.
CREATE TABLE inbound_events_v6 (
    id           TEXT    NOT NULL PRIMARY KEY,   -- rcv_<ULID>
    source       TEXT    NOT NULL,               -- 'front' or a source's name
    channel      TEXT    NOT NULL CHECK (channel IN ('app', 'rule', 'sync', 'source')),
    external_id  TEXT    NOT NULL,               -- the sender's event id (Front: evt_…), or the body's SHA-256
    event_type   TEXT    NOT NULL,               -- the sender's type: inbound_received, invoice.paid, …
    company_id   TEXT,                           -- Front: authorization.id (cmp_…)
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'processed', 'failed')),
    raw_body     BLOB    NOT NULL,               -- exactly as received and verified
    headers      TEXT    NOT NULL DEFAULT '{}',  -- headers of interest, JSON
    fetched      TEXT,                           -- what processing fetched: {message, conversation, history}
    event_id     TEXT,                           -- the event published for it (evt_…)
    job_id       TEXT,                           -- the processing job
    error        TEXT,                           -- last processing error
    received_at  INTEGER NOT NULL,
    processed_at INTEGER,
    updated_at   INTEGER NOT NULL
) STRICT;
INSERT INTO inbound_events_v6 SELECT id, source, channel, external_id, event_type, company_id, state, raw_body,
    headers, fetched, event_id, job_id, error, received_at, processed_at, updated_at FROM inbound_events;
DROP TABLE inbound_events;
ALTER TABLE inbound_events_v6 RENAME TO inbound_events;
CREATE UNIQUE INDEX inbound_external ON inbound_events (source, external_id);
CREATE INDEX inbound_state ON inbound_events (state, id);
-- One sender's events newest first (the inbound list by source, the sources view).
CREATE INDEX inbound_source ON inbound_events (source, id);

-- Requests ingress refused (Front and every source), at most 60 stored per source per minute.
CREATE TABLE inbound_rejected (
    id             TEXT    NOT NULL PRIMARY KEY,  -- rej_<ULID>
    source         TEXT    NOT NULL,              -- 'front' or the name in the path
    cause          TEXT    NOT NULL,              -- invalid_signature, timestamp_out_of_range, …
    message        TEXT    NOT NULL,              -- what was wrong, naming no secret
    at             INTEGER NOT NULL,
    peer           TEXT,
    method         TEXT    NOT NULL,
    path           TEXT    NOT NULL,
    content_type   TEXT,
    content_length INTEGER,
    user_agent     TEXT,
    signature      TEXT    NOT NULL DEFAULT '{}', -- the scheme's signature/timestamp header values, JSON
    body_head      BLOB    NOT NULL               -- the first 512 bytes of the body
) STRICT;
CREATE INDEX inbound_rejected_source ON inbound_rejected (source, id);
