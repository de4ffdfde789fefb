-- PostgreSQL: the audit log and kv at schema version 8 (the SQLite steps 1–8 in one).
CREATE TABLE audit_log (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT COLLATE "C" NOT NULL,
    action      TEXT COLLATE "C" NOT NULL,
    target_type TEXT COLLATE "C",
    target_id   TEXT COLLATE "C",
    detail      TEXT COLLATE "C" NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_action ON audit_log (action, id);

CREATE TABLE kv (
    key        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value      TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL
);
