-- The change stream every edge replica pulls from (see docs/SYNC.md).
--
-- * one global sequence gives every row write a version that only grows;
-- * sync.changes is an append-only log of full row images, keyed by the writing
--   transaction's xid8 so readers can stay below the snapshot horizon;
-- * sync.identity tells edges which primary (and which epoch of it) they follow;
-- * sync.prune_point records how much of the log has been trimmed.
create schema if not exists sync;

create sequence sync.version_seq as bigint;

create table sync.changes (
    id         bigserial   primary key,
    txid       xid8        not null default pg_current_xact_id(),
    table_name text        not null,
    row_id     text        not null,
    op         char(1)     not null check (op in ('I', 'U', 'D')),
    version    bigint      not null,
    data       jsonb,
    changed_at timestamptz not null default clock_timestamp(),
    check ((op = 'D') = (data is null))
);
create index changes_txid_id on sync.changes (txid, id);
create index changes_changed_at on sync.changes (changed_at);

-- Who this primary is. The epoch is created once by this migration; a primary that is
-- restored from a logical dump into a new cluster keeps the epoch but not the system
-- identifier, and an operator can start a new epoch by hand (docs/DEPLOY.md).
create table sync.identity (
    singleton         boolean     primary key default true check (singleton),
    epoch             uuid        not null default gen_random_uuid(),
    created_at        timestamptz not null default now()
);
insert into sync.identity default values;

-- Every change with txid below pruned_below may have been deleted from sync.changes.
create table sync.prune_point (
    singleton    boolean     primary key default true check (singleton),
    pruned_below xid8        not null default '0'::xid8,
    pruned_at    timestamptz
);
insert into sync.prune_point default values;

-- The primary's system identifier, or null when the role may not read it.
create function sync.system_identifier() returns bigint
language plpgsql stable as $$
begin
    return (select system_identifier from pg_control_system());
exception when insufficient_privilege then
    return null;
end $$;

-- BEFORE INSERT/UPDATE: stamp the row with the next global version.
create function sync.stamp_version() returns trigger
language plpgsql as $$
begin
    new.version := nextval('sync.version_seq');
    return new;
end $$;

-- AFTER INSERT/UPDATE/DELETE: append the change and wake the pullers. The function runs
-- with timezone UTC so timestamps in the row image never depend on the writer's session.
-- NOTIFY is delivered at commit and collapsed per transaction, so this costs one
-- notification per transaction whatever its size.
--
-- The change's version (what replicas order a row's changes by) is taken here, in the AFTER
-- trigger, not from the row's BEFORE-trigger version: an INSERT's BEFORE trigger runs before
-- its unique-key check, so an insert that waits for a concurrent delete of the same key
-- would carry a version older than the delete. By the time an AFTER trigger runs, the row
-- operation is done and any transaction it waited for has committed, so for two writes of
-- the same row the later one always gets the larger change version.
create function sync.record_change() returns trigger
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
    perform pg_notify('sync_changes', '');
    return null;
end $$;

-- Attach the change-stream triggers to a table with an `id` primary key and a
-- `version bigint` column. A new replicated table needs only a migration calling this.
create function sync.replicate(tbl regclass) returns void
language plpgsql as $$
begin
    execute format('create trigger sync_stamp_version before insert or update on %s
                    for each row execute function sync.stamp_version()', tbl);
    execute format('create trigger sync_record_change after insert or update or delete on %s
                    for each row execute function sync.record_change()', tbl);
end $$;
