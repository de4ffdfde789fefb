-- hookrelay schema v2: inbound events (Front webhooks), stored raw and made whole by a job.

CREATE TABLE inbound_events (
    id           TEXT    NOT NULL PRIMARY KEY,   -- rcv_<ULID>
    source       TEXT    NOT NULL,               -- 'front'
    channel      TEXT    NOT NULL CHECK (channel IN ('app', 'rule', 'sync')),
    external_id  TEXT    NOT NULL,               -- the sender's event id (Front: evt_…)
    event_type   TEXT    NOT NULL,               -- webhook type: inbound_received, tag_added, …
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

-- One row per sender event: a repeated delivery of the same event is a duplicate.
CREATE UNIQUE INDEX inbound_external ON inbound_events (source, external_id);
CREATE INDEX inbound_state ON inbound_events (state, id);
