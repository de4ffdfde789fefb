-- hookrelay schema v8, cron: CHECKs of more than two values written as `=` chains.
-- SQLite builds a temporary b-tree for `x IN ('a', 'b', 'c')` on every INSERT or UPDATE that
-- checks it; `x = 'a' OR x = 'b' OR x = 'c'` accepts exactly the same values at no such cost.
-- Only the text of the constraint changes, so the schema is edited in place (SQLite's documented
-- procedure for changes that leave the stored rows as they are) and reloaded.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (trigger IN (''schedule'', ''catch_up'', ''manual''))',
    'CHECK (trigger = ''schedule'' OR trigger = ''catch_up'' OR trigger = ''manual'')')
    WHERE type = 'table' AND name = 'cron_runs';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (''queued'', ''running'', ''succeeded'', ''failed'', ''skipped''))',
    'CHECK (state = ''queued'' OR state = ''running'' OR state = ''succeeded'' OR state = ''failed'' OR state = ''skipped'')')
    WHERE type = 'table' AND name = 'cron_runs';
PRAGMA writable_schema = RESET;
