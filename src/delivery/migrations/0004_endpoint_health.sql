-- hookrelay schema v4, delivery: endpoint health.

-- Since when every delivery attempt to this webhook failed (NULL after a success), and the
-- latest failed attempt: auto-disable needs failures spanning delivery.auto_disable_after.
ALTER TABLE webhooks ADD COLUMN failing_since INTEGER;
ALTER TABLE webhooks ADD COLUMN last_failure_at INTEGER;
