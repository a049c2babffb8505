#!/bin/sh
# Container entrypoint: make the data directory writable by the service user, then
# run the command as that user (uid/gid 10001).
#
# Why: a Fly volume mounted at /data is owned by root, hiding the image's
# /data (owned by 10001). Running the service as root would work but gives a remote
# code execution bug the whole machine; so we fix ownership once per boot (only the
# entries that need it) and drop privileges before exec.
set -eu

APP_UID=10001
APP_GID=10001
data_dir="${DATA_DIR:-/data}"

if [ "$(id -u)" = "0" ]; then
    mkdir -p "$data_dir"
    # Also repairs files created as root by a `fly ssh console` session.
    find "$data_dir" -xdev \( ! -user "$APP_UID" -o ! -group "$APP_GID" \) \
        -exec chown "$APP_UID:$APP_GID" {} +
    exec setpriv --reuid="$APP_UID" --regid="$APP_GID" --init-groups -- "$@"
fi

# Already unprivileged (e.g. `docker run --user 10001`): just run.
exec "$@"
