-- hookrelay schema v3, delivery: webhook endpoints with encrypted secrets, deliveries and every
-- delivery attempt.

CREATE TABLE webhooks (
    id                  TEXT    NOT NULL PRIMARY KEY,   -- wh_<ULID>
    url                 TEXT    NOT NULL UNIQUE,
    description         TEXT    NOT NULL DEFAULT '',
    subscribed_events   TEXT    NOT NULL DEFAULT '[]',  -- JSON array; empty = every action
    headers             TEXT    NOT NULL DEFAULT '{}',  -- JSON object of custom headers
    state               TEXT    NOT NULL CHECK (state IN ('enabled', 'disabled')),
    disabled_reason     TEXT,
    signature_algorithm TEXT    NOT NULL DEFAULT 'sha256' CHECK (signature_algorithm IN ('sha256', 'sha512_256')),
    retry_schedule      TEXT,                           -- JSON array of durations; NULL = global
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
) STRICT;

-- Signing secrets, AES-256-GCM encrypted; `seq` is the secret id shown ("1", "2", …).
CREATE TABLE webhook_secrets (
    webhook_id TEXT    NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    key_id     TEXT    NOT NULL,       -- which encryption key made the ciphertext
    nonce      BLOB    NOT NULL,       -- 96 bits, random per value
    ciphertext BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,                -- NULL: signs until rotated out
    PRIMARY KEY (webhook_id, seq)
) STRICT;

-- One per (event, webhook). No foreign key to webhooks: deliveries of a deleted webhook stay
-- readable (as cancelled).
CREATE TABLE deliveries (
    id              TEXT    NOT NULL PRIMARY KEY,   -- dlv_<ULID>
    event_id        TEXT    NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    webhook_id      TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    job_id          TEXT,
    next_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    finished_at     INTEGER
) STRICT;
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, id);
CREATE INDEX deliveries_state ON deliveries (state, id);
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TABLE delivery_attempts (
    id               INTEGER PRIMARY KEY,
    delivery_id      TEXT    NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    at               INTEGER NOT NULL,
    status           INTEGER,          -- HTTP status, if a response came
    latency_ms       INTEGER NOT NULL,
    response_headers TEXT,             -- JSON object
    response_body    BLOB,             -- the first 4 KiB
    error_kind       TEXT,             -- dns, connect, tls, timeout, refused_by_policy, redirect, http, body
    error            TEXT
) STRICT;
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
