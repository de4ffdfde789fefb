-- hookrelay schema v3, events: published events and the catalog of actions seen.

CREATE TABLE events (
    id              TEXT    NOT NULL PRIMARY KEY,   -- evt_<ULID>
    idempotency_key TEXT,                           -- the `id` a publisher sent, if any
    action          TEXT    NOT NULL,
    source          TEXT    NOT NULL,               -- data.source: frontier, front, hookrelay
    body            BLOB    NOT NULL,               -- the envelope, exactly the bytes sent
    deliveries      INTEGER NOT NULL,               -- deliveries created at publish
    created_at      INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX events_idempotency ON events (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_action ON events (action, id);

-- Every action published so far, for the event-types catalog.
CREATE TABLE event_types (
    action     TEXT    NOT NULL PRIMARY KEY,
    first_seen INTEGER NOT NULL
) STRICT;

