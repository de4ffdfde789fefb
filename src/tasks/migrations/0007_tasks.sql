-- hookrelay schema v7, tasks: HTTP calls made for the app (tasks), every call attempt, and the
-- schedules that create one task per tick.

CREATE TABLE tasks (
    id              TEXT    NOT NULL PRIMARY KEY,   -- tsk_<ULID>
    name            TEXT,                           -- the app's label (a schedule's run: its name)
    schedule        TEXT,                           -- the schedule this task is a run of
    scheduled_for   INTEGER,                        -- that run's tick time
    url             TEXT    NOT NULL,
    method          TEXT    NOT NULL CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
    headers         TEXT    NOT NULL DEFAULT '{}',  -- JSON object; sensitive values sealed
    body            BLOB,                           -- compact JSON, NULL for none
    timeout_ms      INTEGER NOT NULL,
    retry_schedule  TEXT    NOT NULL,               -- JSON array of waits in milliseconds
    key_scope       TEXT,                           -- whose idempotency key: a caller, or `schedule`
    idempotency_key TEXT,
    state           TEXT    NOT NULL
                    CHECK (state IN ('scheduled', 'running', 'retrying', 'succeeded', 'failed', 'cancelled', 'skipped')),
    run_at          INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    job_id          TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    created_by      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    finished_at     INTEGER
) STRICT;
-- One task per key and scope: a schedule's tick key (`schedule:<name>:<tick>`) can be taken once.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (key_scope, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_state ON tasks (state, id);
CREATE INDEX tasks_name ON tasks (name, id) WHERE name IS NOT NULL;
CREATE INDEX tasks_schedule ON tasks (schedule, id) WHERE schedule IS NOT NULL;
CREATE INDEX tasks_job ON tasks (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE task_attempts (
    id                         INTEGER PRIMARY KEY,
    task_id                    TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt                    INTEGER NOT NULL,
    at                         INTEGER NOT NULL,
    status                     INTEGER,          -- HTTP status, if a response came
    latency_ms                 INTEGER NOT NULL,
    response_headers           TEXT,             -- JSON object
    response_headers_truncated INTEGER NOT NULL DEFAULT 0,
    response_body              BLOB,             -- the first 4 KiB
    error_kind                 TEXT,             -- dns, connect, tls, timeout, refused_by_policy, http
    error                      TEXT
) STRICT;
CREATE INDEX task_attempts_task ON task_attempts (task_id, attempt);

-- Schedules from config (`origin` = 'config', rewritten at every start) and from the API.
CREATE TABLE schedules (
    name           TEXT    NOT NULL PRIMARY KEY,
    origin         TEXT    NOT NULL CHECK (origin IN ('config', 'api')),
    cron           TEXT    NOT NULL,
    timezone       TEXT    NOT NULL,
    url            TEXT    NOT NULL,
    method         TEXT    NOT NULL,
    headers        TEXT    NOT NULL DEFAULT '{}',
    body           BLOB,
    timeout_ms     INTEGER,                          -- NULL: tasks.timeout
    retry_schedule TEXT,                             -- JSON array of milliseconds; NULL: tasks.retry_schedule
    overlap        TEXT    NOT NULL CHECK (overlap IN ('skip', 'allow')),
    catch_up       TEXT    NOT NULL CHECK (catch_up IN ('latest', 'none')),
    enabled        INTEGER NOT NULL,
    paused         INTEGER NOT NULL DEFAULT 0,
    last_tick      INTEGER,                          -- the latest tick taken (run, skipped or passed over)
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
