-- The local replica of the primary's replicated tables, plus the sync bookkeeping.
-- Applied at every start (idempotent). Timestamps are UTC text of fixed width
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ) so text order is time order; uuids are lowercase text.
-- `sync_version` is the version of the change that last wrote the row (0 for rows loaded by
-- a snapshot); changes are applied only over older ones. It is not the row's own `version`.
-- Keys are unique indexes rather than primary keys, on ordinary rowid tables: a resync into
-- an empty replica drops every index, appends, and rebuilds them by sorting. (WITHOUT ROWID
-- tables clustered on `id` made resyncs faster but halved the catch-up rate at a million
-- random-uuid inserts: every insert lands on a random page of the whole table.)
-- Bump `SCHEMA_VERSION` in sync/src/replica/mod.rs when this layout changes: an older
-- replica is then dropped at start-up and rebuilt by a resync.
create table if not exists products (
    id               text    not null,
    owner_id         text    not null,
    name             text    not null,
    unit             text,
    reorder_quantity integer not null,
    price_cents      integer,
    notes            text,
    created_at       text    not null,
    updated_at       text    not null,
    version          integer not null,
    sync_version     integer not null default 0
);
create unique index if not exists products_id on products (id);
create index if not exists products_owner_created on products (owner_id, created_at desc, id desc);

create table if not exists orders (
    id               text    not null,
    owner_id         text    not null,
    product_id       text    not null,
    quantity         integer not null,
    unit_price_cents integer,
    currency         text,
    ordered_at       text    not null,
    created_at       text    not null,
    updated_at       text    not null,
    version          integer not null,
    sync_version     integer not null default 0
);
create unique index if not exists orders_id on orders (id);
create index if not exists orders_owner_ordered on orders (owner_id, ordered_at desc, id desc);
create index if not exists orders_product_ordered on orders (product_id, ordered_at);

-- Deleted rows, so that a late change with an older version cannot bring them back.
-- drop_at: the tombstone may go once the applied watermark reaches this txid.
create table if not exists sync_tombstones (
    table_name text    not null,
    row_id     text    not null,
    version    integer not null,
    drop_at    integer not null,
    primary key (table_name, row_id)
) without rowid;
create index if not exists sync_tombstones_drop_at on sync_tombstones (drop_at);

-- One row: how far this replica has applied the primary's change stream.
create table if not exists sync_state (
    singleton         integer primary key check (singleton = 1),
    -- every change of a transaction with txid < watermark is applied
    watermark         integer not null,
    -- the snapshot the last resync copied; changes visible in it are skipped
    snapshot          text,
    -- txid at which `snapshot` stops mattering (its xmax)
    snapshot_xmax     integer,
    primary_system_id integer,
    primary_epoch     text    not null,
    -- changed_at (unix micros) of the newest applied change
    last_change_at_us integer,
    resynced_at       text    not null
);
