-- hookrelay schema v1, store: the audit log and a small key-value table.
-- Times are UNIX milliseconds (INTEGER). Ids are `<prefix>_<ULID>` and sort by creation time.

CREATE TABLE audit_log (
    id          TEXT    NOT NULL PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    detail      TEXT    NOT NULL DEFAULT '{}'
) STRICT;
CREATE INDEX audit_log_action ON audit_log (action, id);

CREATE TABLE kv (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
