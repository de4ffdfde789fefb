-- PostgreSQL: events and the event-type catalog at schema version 8 (the SQLite steps 1–8 in one).
CREATE TABLE events (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,   -- evt_<ULID>
    idempotency_key TEXT COLLATE "C",                          -- the `id` a publisher sent, if any
    action          TEXT COLLATE "C" NOT NULL,
    source          TEXT COLLATE "C" NOT NULL,               -- data.source: frontier, front, hookrelay
    body            BYTEA  NOT NULL,               -- the envelope, exactly the bytes sent
    deliveries      BIGINT NOT NULL,               -- deliveries created at publish
    created_at      BIGINT NOT NULL,
    publisher       TEXT COLLATE "C"
);
CREATE INDEX events_action ON events (action, id);
CREATE UNIQUE INDEX events_idempotency ON events (publisher, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE event_types (
    action     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    first_seen BIGINT NOT NULL
);
