-- hookrelay schema v8, tasks: CHECKs of more than two values written as `=` chains.
-- SQLite builds a temporary b-tree for `x IN ('a', 'b', 'c')` on every INSERT or UPDATE that
-- checks it; `x = 'a' OR x = 'b' OR x = 'c'` accepts exactly the same values at no such cost.
-- Only the text of the constraint changes, so the schema is edited in place (SQLite's documented
-- procedure for changes that leave the stored rows as they are) and reloaded.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (method IN (''GET'', ''POST'', ''PUT'', ''PATCH'', ''DELETE''))',
    'CHECK (method = ''GET'' OR method = ''POST'' OR method = ''PUT'' OR method = ''PATCH'' OR method = ''DELETE'')')
    WHERE type = 'table' AND name = 'tasks';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (''scheduled'', ''running'', ''retrying'', ''succeeded'', ''failed'', ''cancelled'', ''skipped''))',
    'CHECK (state = ''scheduled'' OR state = ''running'' OR state = ''retrying'' OR state = ''succeeded'' OR state = ''failed'' OR state = ''cancelled'' OR state = ''skipped'')')
    WHERE type = 'table' AND name = 'tasks';
PRAGMA writable_schema = RESET;
