-- No NOTIFY in the commit path. A transaction that notifies takes one cluster-wide lock at
-- commit and holds it through its WAL flush, so every writing transaction committed one at
-- a time (pgbench, single-row inserts, 16 clients: 0.21x the same table without capture).
-- Edges are woken instead by one announcer session (elected among the edges with an
-- advisory lock; sync/src/pg/announce.rs) that notifies `sync_changes` when the log grows.
-- Edges of an older binary still LISTEN on the same channel, so they keep being woken.
create or replace function sync.record_change() returns trigger
language plpgsql
set timezone to 'UTC'
as $$
begin
    if tg_op = 'DELETE' then
        insert into sync.changes (table_name, row_id, op, version, data)
        values (tg_table_name, old.id::text, 'D', nextval('sync.version_seq'), null);
    else
        insert into sync.changes (table_name, row_id, op, version, data)
        values (tg_table_name, new.id::text, case tg_op when 'INSERT' then 'I' else 'U' end,
                nextval('sync.version_seq'), to_jsonb(new));
    end if;
    return null;
end $$;
