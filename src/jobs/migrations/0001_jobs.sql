-- hookrelay schema v1, jobs: the durable job queue.
-- Times are UNIX milliseconds (INTEGER). Ids are `<prefix>_<ULID>` and sort by creation time.

CREATE TABLE jobs (
    id              TEXT    NOT NULL PRIMARY KEY,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL
                    CHECK (state IN ('queued', 'running', 'retrying', 'succeeded', 'dead', 'cancelled')),
    attempt         INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at          INTEGER NOT NULL,
    lease_until     INTEGER,
    lease_owner     TEXT,
    -- Counts claims; a claim is (id, claim_seq), so a result can only land on the claim that ran.
    claim_seq       INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    finished_at     INTEGER
) STRICT;

-- An idempotency key names at most one job while that job's row exists.
CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The claim path: due jobs in run_at order.
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('queued', 'retrying');
-- The lease sweep: running jobs by lease expiry.
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
-- Admin lists and stats by state (newest first).
CREATE INDEX jobs_state ON jobs (state, id);
