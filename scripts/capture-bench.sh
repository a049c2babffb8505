#!/usr/bin/env bash
# What the change capture costs the primary's writes: pgbench single-row inserts into
# `products` (capture triggers on) beside the same inserts into a copy of the table without
# them, and into a copy whose capture still notifies in every transaction (as before
# migration V4), in one run on one server, at each client count. Prints a Markdown table.
# Not part of the test run (it needs a quiet machine).
#
# Usage: scripts/capture-bench.sh [SECONDS] [CLIENTS...]   (default: 10 s; 16 and 64 clients)
# Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-10}"
shift || true
clients=("$@")
((${#clients[@]})) || clients=(16 64)
server="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="ao_capture_bench_$$"
psql "$server" -qc "create database $db"
trap 'psql "$server" -qc "drop database if exists $db with (force)"' EXIT
url="${server%/*}/$db"
for migration in "$root"/sql/postgres/V*.sql; do
    psql "$url" -q -v ON_ERROR_STOP=1 -f "$migration" >/dev/null
done
psql "$url" -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
create table plain_products (like products including defaults including constraints);
alter table plain_products add primary key (id);
-- The capture as it was before V4: a NOTIFY in every writing transaction.
create table notify_products (like products including defaults including constraints);
alter table notify_products add primary key (id);
select sync.replicate('notify_products');
create function bench_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('sync_changes', '');
    return null;
end $$;
create trigger bench_notify after insert on notify_products
    for each row execute function bench_notify();
SQL
script_dir="$(mktemp -d)"
echo "insert into products (owner_id, name) values ('bench', 'x');" >"$script_dir/capture.sql"
echo "insert into plain_products (owner_id, name, version) values ('bench', 'x', 0);" >"$script_dir/plain.sql"
echo "insert into notify_products (owner_id, name) values ('bench', 'x');" >"$script_dir/notify.sql"

tps() {
    pgbench -n -c "$2" -j 2 -T "$seconds" -f "$script_dir/$1.sql" "$url" 2>/dev/null |
        awk '/^tps = / { printf "%.0f", $3 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
echo "| clients | without capture (tps) | capture (tps) | ratio | capture + NOTIFY per txn, before V4 (tps) | ratio |"
echo "|---|---|---|---|---|---|"
for c in "${clients[@]}"; do
    without="$(tps plain "$c")"
    with="$(tps capture "$c")"
    notify="$(tps notify "$c")"
    echo "| $c | $without | $with | $(ratio "$with" "$without") | $notify | $(ratio "$notify" "$without") |"
done
rm -rf "$script_dir"
