-- hookrelay schema v4, cron: cron runs.

-- One row per cron tick (or manual run): what was scheduled, when it ran and how it went.
CREATE TABLE cron_runs (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    scheduled_at  INTEGER NOT NULL,               -- the tick time (manual: when it was asked for)
    trigger       TEXT    NOT NULL CHECK (trigger IN ('schedule', 'catch_up', 'manual')),
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'skipped')),
    job_id        TEXT,                           -- the job that runs it (NULL when skipped)
    started_at    INTEGER,
    finished_at   INTEGER,
    rows_affected INTEGER,
    detail        TEXT,                           -- JSON report of the task
    error         TEXT,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX cron_runs_tick ON cron_runs (name, scheduled_at);
CREATE INDEX cron_runs_job ON cron_runs (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX cron_runs_active ON cron_runs (name) WHERE state IN ('queued', 'running');
