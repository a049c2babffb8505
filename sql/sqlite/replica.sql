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

-- What this replica applied, window by window: the count and hash sum of the changes of
-- txids lo <= txid < hi read with one filter (see sync/src/history.rs). Asked of the primary
-- at every connect: a window it does not match means the primary's history forked (a
-- failover that lost commits). Kept for a few minutes of applied history.
create table if not exists sync_history (
    lo            integer not null,
    hi            integer not null,
    -- the pull's snapshot filter, if any, and which side of it the window counts
    snapshot      text,
    visible       integer not null,
    changes       integer not null,
    -- wrapping sum of 64-bit change hashes, stored as a signed integer
    digest        integer not null,
    -- when the window was opened (unix micros), for retention and periodic checks
    opened_at_us  integer not null
);
create index if not exists sync_history_opened on sync_history (opened_at_us);

-- Columns this binary added to an older replica file: a merge resync fills them from the
-- primary (reads stay up meanwhile), and clears this list in the same transaction.
create table if not exists sync_backfill (
    table_name  text not null,
    column_name text not null,
    primary key (table_name, column_name)
) without rowid;
