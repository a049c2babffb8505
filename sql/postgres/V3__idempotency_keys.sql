-- Idempotent creates: a retried POST with the same Idempotency-Key (same owner) gets the
-- original response back instead of creating a second row. Kept on the primary so a retry
-- that lands on another edge is recognised too. Not replicated: edges never read it locally.
create table idempotency_keys (
    owner_id     text        not null check (length(owner_id) between 1 and 255),
    key          text        not null check (length(key) between 1 and 255),
    -- sha-256 of the method, route and canonical request body
    request_hash text        not null,
    -- null while the creating transaction is open (it commits them together with the row)
    status       integer,
    response     jsonb,
    resource_id  uuid,
    -- the txid of the creating transaction: the sync token a replay answers with
    sync_token   bigint,
    created_at   timestamptz not null default now(),
    primary key (owner_id, key)
);
create index idempotency_keys_created on idempotency_keys (created_at);
