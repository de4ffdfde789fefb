-- hookrelay schema v5, inbound: dedupe keys of inbound requests (a sender's event id), remembered longer than the inbound
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
