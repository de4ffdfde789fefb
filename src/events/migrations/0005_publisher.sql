-- hookrelay schema v5, events: publish idempotency ids are scoped to the publisher (the token)
-- that sent them. Events stored before this version have no publisher and still answer for
-- their id.
ALTER TABLE events ADD COLUMN publisher TEXT;
DROP INDEX events_idempotency;
CREATE UNIQUE INDEX events_idempotency ON events (publisher, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
