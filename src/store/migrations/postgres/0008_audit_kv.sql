-- PostgreSQL: the audit log and kv at schema version 8 (the SQLite steps 1–8 in one).
CREATE TABLE audit_log (
    id          TEXT   NOT NULL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    detail      TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_action ON audit_log (action, id);

CREATE TABLE kv (
    key        TEXT   NOT NULL PRIMARY KEY,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
