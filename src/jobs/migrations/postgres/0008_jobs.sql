-- PostgreSQL: the job queue at schema version 8 (the SQLite steps 1–8 in one).
CREATE TABLE jobs (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    kind            TEXT COLLATE "C" NOT NULL,
    payload         TEXT COLLATE "C" NOT NULL,
    state           TEXT COLLATE "C" NOT NULL
                    CHECK (state IN ('queued', 'running', 'retrying', 'succeeded', 'dead', 'cancelled')),
    attempt         BIGINT NOT NULL DEFAULT 0,
    max_attempts    BIGINT NOT NULL CHECK (max_attempts >= 1),
    run_at          BIGINT NOT NULL,
    lease_until     BIGINT,
    lease_owner     TEXT COLLATE "C",
    -- Counts claims; a claim is (id, claim_seq), so a result can only land on the claim that ran.
    claim_seq       BIGINT NOT NULL DEFAULT 0,
    idempotency_key TEXT COLLATE "C",
    last_error      TEXT COLLATE "C",
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    parked_on       TEXT COLLATE "C"
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('queued', 'retrying');
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_parked ON jobs (parked_on, id) WHERE parked_on IS NOT NULL;
