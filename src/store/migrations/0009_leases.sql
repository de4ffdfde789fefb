-- Leases of the work one process at a time does (ticking crons and schedules, sweeps): who
-- holds each and until when (ms). On SQLite one process holds the database (its lock file), so
-- the table stays empty; it is here so that both databases have one schema.
CREATE TABLE leases (
    name       TEXT NOT NULL PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
