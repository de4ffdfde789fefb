-- hookrelay schema v5, delivery: response headers kept per attempt are capped; this says the
-- cap cut some off.
ALTER TABLE delivery_attempts ADD COLUMN response_headers_truncated INTEGER NOT NULL DEFAULT 0;
