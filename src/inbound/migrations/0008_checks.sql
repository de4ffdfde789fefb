-- hookrelay schema v8, inbound: CHECKs of more than two values written as `=` chains.
-- SQLite builds a temporary b-tree for `x IN ('a', 'b', 'c')` on every INSERT or UPDATE that
-- checks it; `x = 'a' OR x = 'b' OR x = 'c'` accepts exactly the same values at no such cost.
-- Only the text of the constraint changes, so the schema is edited in place (SQLite's documented
-- procedure for changes that leave the stored rows as they are) and reloaded.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (channel IN (''app'', ''rule'', ''sync'', ''source''))',
    'CHECK (channel = ''app'' OR channel = ''rule'' OR channel = ''sync'' OR channel = ''source'')')
    WHERE type = 'table' AND name = 'inbound_events';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (''pending'', ''processed'', ''failed''))',
    'CHECK (state = ''pending'' OR state = ''processed'' OR state = ''failed'')')
    WHERE type = 'table' AND name = 'inbound_events';
PRAGMA writable_schema = RESET;
