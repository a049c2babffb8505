#!/usr/bin/env bash
# Post-deploy smoke test for the Auto-Order edge.
#
# Usage: scripts/smoke.sh <base-url> [region...]
#   base-url  e.g. https://auto-order-edge.fly.dev
#   region    Fly regions to check one by one (e.g. iad lhr syd). Each request carries
#             `fly-prefer-region: <region>` so Fly's proxy routes it to that region.
#             Without regions, the base URL is checked once (nearest region).
#
# Environment:
#   SMOKE_TOKEN      bearer token (Auth0 access token for the API audience). Required
#                    unless SMOKE_SKIP_AUTH=1.
#   SMOKE_SKIP_AUTH  1 = only health checks (e.g. a staging app without Auth0).
#   SMOKE_TIMEOUT    seconds to keep retrying each check (default 120).
#   SMOKE_INTERVAL   seconds between attempts (default 5).
#   SMOKE_MAX_TIME   per-request curl timeout in seconds (default 10).
#
# Checks, per region:
#   1. GET /api/health answers 200 (served by that region when the body names one);
#   2. GET /api/products without a token answers 401 (auth is enforced);
#   3. GET /api/products with SMOKE_TOKEN answers 200 (JWKS, replica and pool work).
# Exits 0 when all pass, 1 when any fails, 2 on bad usage.
set -euo pipefail

usage() {
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
}

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    usage >&2
    exit 2
fi

base_url="${1%/}"
shift
regions=("$@")

timeout_s="${SMOKE_TIMEOUT:-120}"
interval_s="${SMOKE_INTERVAL:-5}"
max_time_s="${SMOKE_MAX_TIME:-10}"
skip_auth="${SMOKE_SKIP_AUTH:-0}"
token="${SMOKE_TOKEN:-}"

if [[ "$skip_auth" != "1" && -z "$token" ]]; then
    echo "smoke: SMOKE_TOKEN is not set (set SMOKE_SKIP_AUTH=1 to check health only)" >&2
    exit 2
fi

body_file="$(mktemp)"
trap 'rm -f "$body_file"' EXIT

log() { printf '%s smoke: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# request REGION PATH [AUTH_HEADER] -> prints the HTTP status ("000" on network error);
# the body goes to $body_file.
request() {
    local region="$1" path="$2" auth="${3:-}"
    local -a args=(
        --silent --show-error --location
        --max-time "$max_time_s"
        --output "$body_file"
        --write-out '%{http_code}'
        --header 'accept: application/json'
    )
    if [[ -n "$region" ]]; then
        args+=(--header "fly-prefer-region: $region")
    fi
    if [[ -n "$auth" ]]; then
        # Passed through stdin (-H @-) so the token never shows up in `ps`.
        args+=(--header @-)
    fi
    local code
    code="$(printf '%s\n' "$auth" | curl "${args[@]}" "$base_url$path" 2>/dev/null)" || true
    printf '%s' "${code:-000}"
}

# The region named in the health body, if it names one ("region": "iad").
served_region() {
    grep -o '"region"[[:space:]]*:[[:space:]]*"[a-z0-9]*"' "$body_file" 2>/dev/null \
        | head -n 1 | sed 's/.*"\([a-z0-9]*\)"$/\1/' || true
}

# check NAME REGION PATH EXPECTED_STATUS [AUTH_HEADER]: retries until it passes or
# SMOKE_TIMEOUT elapses.
check() {
    local name="$1" region="$2" path="$3" want="$4" auth="${5:-}"
    local deadline=$((SECONDS + timeout_s)) code served last_error=""
    local where="${region:-nearest}"
    while :; do
        code="$(request "$region" "$path" "$auth")"
        if [[ "$code" == "$want" ]]; then
            served=""
            if [[ "$name" == "health" && -n "$region" ]]; then
                served="$(served_region)"
            fi
            if [[ -n "$served" && "$served" != "$region" ]]; then
                # fly-prefer-region falls back to another region when the preferred
                # one has no healthy machine: that is a failure of this region.
                last_error="answered by region '$served', not '$region'"
            else
                log "ok   [$where] $name: $path -> $code${served:+ (region $served)}"
                return 0
            fi
        else
            last_error="got HTTP $code, want $want: $(head -c 300 "$body_file" 2>/dev/null | tr -d '\n')"
        fi
        if ((SECONDS >= deadline)); then
            log "FAIL [$where] $name: $path: $last_error"
            return 1
        fi
        log "wait [$where] $name: $path: $last_error"
        sleep "$interval_s"
    done
}

if [[ ${#regions[@]} -eq 0 ]]; then
    regions=("")
fi

failures=0
for region in "${regions[@]}"; do
    check health "$region" /api/health 200 || failures=$((failures + 1))
    if [[ "$skip_auth" != "1" ]]; then
        check unauthenticated "$region" /api/products 401 || failures=$((failures + 1))
        check authenticated "$region" /api/products 200 "authorization: Bearer $token" \
            || failures=$((failures + 1))
    fi
done

if ((failures > 0)); then
    log "$failures check(s) failed against $base_url"
    exit 1
fi
log "all checks passed against $base_url (${#regions[@]} region(s))"
