-- PostgreSQL: inbound events, their dedupe keys and rejected requests at schema version 8 (the
-- SQLite steps 1–8 in one).
CREATE TABLE inbound_keys (
    source  TEXT COLLATE "C" NOT NULL,
    key     TEXT COLLATE "C" NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX inbound_keys_seen ON inbound_keys (seen_at);

CREATE TABLE inbound_events (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,   -- rcv_<ULID>
    source       TEXT COLLATE "C" NOT NULL,               -- 'front' or a source's name
    channel      TEXT COLLATE "C" NOT NULL CHECK (channel IN ('app', 'rule', 'sync', 'source')),
    external_id  TEXT COLLATE "C" NOT NULL,               -- the sender's event id (Front: evt_…), or the body's SHA-256
    event_type   TEXT COLLATE "C" NOT NULL,               -- the sender's type: inbound_received, invoice.paid, …
    company_id   TEXT COLLATE "C",                          -- Front: authorization.id (cmp_…)
    state        TEXT COLLATE "C" NOT NULL CHECK (state IN ('pending', 'processed', 'failed')),
    raw_body     BYTEA  NOT NULL,               -- exactly as received and verified
    headers      TEXT COLLATE "C" NOT NULL DEFAULT '{}',  -- headers of interest, JSON
    fetched      TEXT COLLATE "C",                          -- what processing fetched: {message, conversation, history}
    event_id     TEXT COLLATE "C",                          -- the event published for it (evt_…)
    job_id       TEXT COLLATE "C",                          -- the processing job
    error        TEXT COLLATE "C",                          -- last processing error
    received_at  BIGINT NOT NULL,
    processed_at BIGINT,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX inbound_external ON inbound_events (source, external_id);
CREATE INDEX inbound_state ON inbound_events (state, id);
CREATE INDEX inbound_source ON inbound_events (source, id);

CREATE TABLE inbound_rejected (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- rej_<ULID>
    source         TEXT COLLATE "C" NOT NULL,              -- 'front' or the name in the path
    cause          TEXT COLLATE "C" NOT NULL,              -- invalid_signature, timestamp_out_of_range, …
    message        TEXT COLLATE "C" NOT NULL,              -- what was wrong, naming no secret
    at             BIGINT NOT NULL,
    peer           TEXT COLLATE "C",
    method         TEXT COLLATE "C" NOT NULL,
    path           TEXT COLLATE "C" NOT NULL,
    content_type   TEXT COLLATE "C",
    content_length BIGINT,
    user_agent     TEXT COLLATE "C",
    signature      TEXT COLLATE "C" NOT NULL DEFAULT '{}', -- the scheme's signature/timestamp header values, JSON
    body_head      BYTEA  NOT NULL               -- the first 512 bytes of the body
);
CREATE INDEX inbound_rejected_source ON inbound_rejected (source, id);
