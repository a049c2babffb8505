#!/usr/bin/env bash
# Runs every benchmark of the edge in one go: builds the release binaries once, then runs
# sync-bench, api-bench, auth-bench and edge-bench in sequence, each table under a heading.
# Not part of the test run (the benches need minutes and a quiet machine).
#
# Usage: scripts/bench.sh [--only LIST] [--<bench>-<flag> VALUE]...
#   --only LIST            comma-separated subset of: sync,api,auth,edge (default: all)
#   --<bench>-<flag> VALUE passed to that bench as `--<flag> VALUE`, e.g.
#                            --sync-changes 200000 --api-seconds 3 --edge-rates 200,1000
#                          (auth-bench takes one argument: --auth-iterations N)
#   -h, --help             this text
#
# Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), the
# server the benches create their scratch databases on; CARGO_TARGET_DIR as for cargo.
# Progress goes to stderr, the tables to stdout: `scripts/bench.sh | tee bench.md`.
set -euo pipefail

usage() {
    # The comment block at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

command_line="scripts/bench.sh"
if (($# > 0)); then
    command_line+="$(printf ' %q' "$@")"
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

benches=(sync api auth edge)
only="sync,api,auth,edge"
declare -A flags=([sync]="" [api]="" [auth]="" [edge]="")
# Per-bench argument arrays, kept as separate words (no re-splitting of values).
sync_args=()
api_args=()
auth_args=()
edge_args=()

while (($# > 0)); do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --only)
            [[ $# -ge 2 ]] || { echo "bench: --only needs a value" >&2; exit 2; }
            only="$2"
            shift 2
            ;;
        --sync-* | --api-* | --auth-* | --edge-*)
            [[ $# -ge 2 ]] || { echo "bench: $1 needs a value" >&2; exit 2; }
            name="${1#--}"
            bench="${name%%-*}"
            flag="--${name#*-}"
            case "$bench" in
                sync) sync_args+=("$flag" "$2") ;;
                api) api_args+=("$flag" "$2") ;;
                auth)
                    [[ "$flag" == "--iterations" ]] || {
                        echo "bench: auth-bench only takes --auth-iterations N" >&2
                        exit 2
                    }
                    auth_args=("$2")
                    flags[auth]=" $2"
                    shift 2
                    continue
                    ;;
                edge) edge_args+=("$flag" "$2") ;;
            esac
            flags[$bench]+=" $flag $2"
            shift 2
            ;;
        *)
            echo "bench: unknown argument $1 (see --help)" >&2
            exit 2
            ;;
    esac
done

selected=()
IFS=',' read -r -a wanted <<<"$only"
for want in "${wanted[@]}"; do
    known=false
    for bench in "${benches[@]}"; do
        [[ "$want" == "$bench" ]] && known=true
    done
    $known || { echo "bench: unknown bench '$want' in --only (sync, api, auth, edge)" >&2; exit 2; }
done
for bench in "${benches[@]}"; do
    for want in "${wanted[@]}"; do
        [[ "$want" == "$bench" ]] && selected+=("$bench")
    done
done

echo "bench: building the release binaries…" >&2
cargo build --release --workspace --bins --quiet
bin_dir="${CARGO_TARGET_DIR:-$root/target}/release"

cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
mem_gib="$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)"
echo "# Auto-Order edge benchmarks"
echo
echo "- command: \`$command_line\`"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- machine: $(nproc) cores (${cpu:-unknown CPU}), ${mem_gib} GiB"
echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"

for bench in "${selected[@]}"; do
    echo
    echo "## ${bench}-bench"
    echo
    echo "\`target/release/${bench}-bench${flags[$bench]}\`"
    echo
    case "$bench" in
        sync) "$bin_dir/sync-bench" "${sync_args[@]}" ;;
        api) "$bin_dir/api-bench" "${api_args[@]}" ;;
        auth) "$bin_dir/auth-bench" "${auth_args[@]}" ;;
        edge) "$bin_dir/edge-bench" "${edge_args[@]}" ;;
    esac
done
