#!/usr/bin/env bash
# What the change capture costs the primary's writes: pgbench single-row inserts into
# `products` (capture triggers on) beside the same inserts into a copy of the table without
# them, in one run on one server, at each client count. Prints a Markdown table.
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
(cd "$root" && DATABASE_URL="$url" cargo run -q --release -- migrate >/dev/null)
psql "$url" -qc "create table plain_products (like products including defaults including constraints);
                 alter table plain_products add primary key (id);"
script_dir="$(mktemp -d)"
echo "insert into products (owner_id, name) values ('bench', 'x');" >"$script_dir/capture.sql"
echo "insert into plain_products (owner_id, name, version) values ('bench', 'x', 0);" >"$script_dir/plain.sql"

tps() {
    pgbench -n -c "$2" -j 2 -T "$seconds" -f "$script_dir/$1.sql" "$url" 2>/dev/null |
        awk '/^tps = / { printf "%.0f", $3 }'
}

echo "| clients | with capture (tps) | without (tps) | ratio |"
echo "|---|---|---|---|"
for c in "${clients[@]}"; do
    with="$(tps capture "$c")"
    without="$(tps plain "$c")"
    echo "| $c | $with | $without | $(awk -v a="$with" -v b="$without" 'BEGIN { printf "%.2fx", a / b }') |"
done
rm -rf "$script_dir"
