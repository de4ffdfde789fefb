-- PostgreSQL: leases of the work one replica at a time does (ticking crons and schedules,
-- sweeps): who holds each and until when (ms, on the database server's clock).
CREATE TABLE leases (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    holder     TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL
);
