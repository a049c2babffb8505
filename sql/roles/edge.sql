-- Privileges of the edge role: what `auto-order serve` (and `prune`) needs, nothing more.
-- Applied by `auto-order roles --edge <role>`, connected as the role that owns the schema
-- (MIGRATION_DATABASE_URL); `{edge}` is replaced by the quoted role name. Idempotent:
-- rerun it after a migration that adds a table.
--
-- Not granted: create on any schema, ownership of anything, truncate, references,
-- triggers. The edge cannot alter, drop or add tables, functions or triggers.

grant usage on schema public to {edge};
grant usage on schema sync to {edge};

-- The API's tables: reads on the primary path, writes, idempotency keys (and their expiry).
grant select, insert, update, delete on products, orders, idempotency_keys to {edge};

-- The change stream: the puller reads every sync table.
grant select on all tables in schema sync to {edge};

-- The change triggers run as the writing role: a write appends to sync.changes and draws
-- versions from sync.version_seq (and sync.changes' id sequence).
grant insert on sync.changes to {edge};
grant usage on all sequences in schema sync to {edge};

-- Pruning (the primary-region edge, `auto-order prune`): deletes old changes and moves the
-- prune point (update also allows the lock that serialises concurrent prunes).
grant delete on sync.changes to {edge};
grant update on sync.prune_point to {edge};
