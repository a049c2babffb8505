-- The domain: products a person buys and their purchases (orders).
create table products (
    id               uuid        primary key default gen_random_uuid(),
    owner_id         text        not null check (length(owner_id) between 1 and 255),
    name             text        not null check (char_length(name) between 1 and 200),
    unit             text        check (char_length(unit) <= 50),
    reorder_quantity integer     not null default 1 check (reorder_quantity > 0),
    price_cents      integer     check (price_cents >= 0),
    notes            text        check (char_length(notes) <= 2000),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    version          bigint      not null default 0
);
-- Keyset pagination of a user's products, newest first.
create index products_owner_created on products (owner_id, created_at desc, id desc);

create table orders (
    id               uuid        primary key default gen_random_uuid(),
    owner_id         text        not null check (length(owner_id) between 1 and 255),
    product_id       uuid        not null references products (id) on delete cascade,
    quantity         integer     not null check (quantity > 0),
    unit_price_cents integer     check (unit_price_cents >= 0),
    currency         char(3)     check (currency ~ '^[A-Z]{3}$'),
    ordered_at       timestamptz not null default now(),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    version          bigint      not null default 0
);
create index orders_owner_ordered on orders (owner_id, ordered_at desc, id desc);
create index orders_product_ordered on orders (product_id, ordered_at);

select sync.replicate('products');
select sync.replicate('orders');
