-- hookrelay schema v8, delivery: CHECKs of more than two values written as `=` chains.
-- SQLite builds a temporary b-tree for `x IN ('a', 'b', 'c')` on every INSERT or UPDATE that
-- checks it; `x = 'a' OR x = 'b' OR x = 'c'` accepts exactly the same values at no such cost.
-- Only the text of the constraint changes, so the schema is edited in place (SQLite's documented
-- procedure for changes that leave the stored rows as they are) and reloaded.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (''pending'', ''succeeded'', ''failed'', ''cancelled''))',
    'CHECK (state = ''pending'' OR state = ''succeeded'' OR state = ''failed'' OR state = ''cancelled'')')
    WHERE type = 'table' AND name = 'deliveries';
PRAGMA writable_schema = RESET;
