-- hookrelay schema v5, jobs: a job waiting for a busy endpoint is parked on it: not due
-- (run_at is far ahead) until an attempt to that endpoint finishes and wakes the next one, so a
-- backlog costs no writes while it waits.
ALTER TABLE jobs ADD COLUMN parked_on TEXT;
CREATE INDEX jobs_parked ON jobs (parked_on, id) WHERE parked_on IS NOT NULL;
