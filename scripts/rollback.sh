#!/usr/bin/env bash
# Roll the Fly app back to an earlier image.
#
# Usage: scripts/rollback.sh <app> [image]
#   image  e.g. registry.fly.io/auto-order-edge:deployment-01J...; without it, the image
#          of the newest *complete* release before the current one is taken from
#          `flyctl releases --json`.
#
# Needs flyctl (authenticated: FLY_API_TOKEN) and jq; run from the repository root so
# fly.toml is used. Exits non-zero if no target can be found or the rollback fails.
#
# Migrations are not rolled back: they must stay backward compatible (expand, then
# contract in a later release), and `auto-order migrate` of the older binary must accept
# a schema that already has newer migrations (it runs again as the release_command).
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi

app="$1"
image="${2:-}"

log() { printf 'rollback: %s\n' "$*" >&2; }

if [[ -z "$image" ]]; then
    releases="$(flyctl releases --app "$app" --json)"
    # Releases are newest first; the newest is the deploy being rolled back. Take the
    # first earlier release that completed and runs a different image.
    image="$(jq -r '
        def img: .ImageRef // .imageRef // .image_ref // "";
        def ok: ((.Status // .status // "") | ascii_downcase)
                | . == "complete" or . == "succeeded" or . == "successful";
        (.[0] | img) as $current
        | [ .[1:][] | select(ok) | img | select(. != "" and . != $current) ]
        | first // empty' <<<"$releases")"
fi

if [[ -z "$image" ]]; then
    log "no earlier complete release with an image found; pass the image explicitly"
    log "(list them with: flyctl releases --app $app --image)"
    exit 1
fi

log "rolling $app back to $image"
# immediate: every machine at once. This is a recovery, and the old image is known good.
if flyctl deploy --app "$app" --image "$image" --strategy immediate --wait-timeout 5m; then
    log "rolled back to $image"
    exit 0
fi

# If the deploy itself fails (e.g. the release_command), update the machines directly:
# this skips the release_command and restarts each machine on the old image.
log "flyctl deploy failed; updating machines one by one"
status=0
while read -r id; do
    [[ -n "$id" ]] || continue
    if ! flyctl machine update "$id" --app "$app" --image "$image" --yes; then
        log "machine $id: update failed"
        status=1
    fi
done < <(flyctl machines list --app "$app" --json | jq -r '.[] | select(.config.metadata.fly_process_group // "app" | . == "app") | .id')
exit "$status"
