# syntax=docker/dockerfile:1
#
# Auto-Order edge image: one static-ish Rust binary on debian:bookworm-slim.
# Build: docker build -t auto-order . (Fly builds it remotely: `fly deploy --remote-only`).

############################ builder ############################
FROM rust:1.95-slim-bookworm AS builder

# cc/make for rusqlite's bundled SQLite and aws-lc-sys (rustls' crypto provider);
# cmake is optional for recent aws-lc-sys but kept so an older/locked version still
# builds; pkg-config for any -sys crate probing. No OpenSSL: TLS is rustls.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# 1) Dependency layer: manifests + empty targets, so `cargo build` compiles only the
#    dependencies. This layer is reused until Cargo.toml/Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY sync/Cargo.toml sync/Cargo.toml
# The benchmarks' workspace member: only its manifest (and an empty target) is needed for the
# workspace to load; the image never builds it.
COPY bench/Cargo.toml bench/Cargo.toml
RUN mkdir -p src sync/src tests/integration bench/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs sync/src/lib.rs bench/src/lib.rs \
 && echo 'fn main() {}' > tests/integration/main.rs \
 && cargo build --release --locked --bin auto-order \
 && rm -rf src sync/src

# 2) The real sources. sql/ is embedded at compile time (migrations, replica schema).
#    tests/ is not copied (the dummy integration target above satisfies the manifest),
#    so editing a test does not rebuild the image.
COPY src src
COPY sync/src sync/src
COPY sync/build.rs sync/build.rs
COPY sql sql
# COPY keeps the files' original mtimes, which can be older than the dummy build:
# touch them so cargo rebuilds both workspace crates.
RUN touch src/main.rs src/lib.rs sync/src/lib.rs \
 && cargo build --release --locked --bin auto-order \
 && install -m 0755 target/release/auto-order /usr/local/bin/auto-order

############################ runtime ############################
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to Postgres/Auth0 if the binary uses the system roots;
# tini: signal forwarding and zombie reaping. `-s` (subreaper) because on Fly, Fly's
# own init is PID 1 and tini would otherwise warn at every start.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

# The service user. /data is created owned by it for plain `docker run`; on Fly the
# volume mounted over /data is root-owned, which docker-entrypoint.sh fixes at boot.
RUN groupadd --system --gid 10001 auto-order \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin auto-order \
 && mkdir -p /data \
 && chown 10001:10001 /data

COPY --from=builder /usr/local/bin/auto-order /usr/local/bin/auto-order
COPY scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

# SQLITE_TMPDIR: where SQLite's sorter spills while a first resync rebuilds the replica's
# indexes (about 100 MB per million rows, unlinked at once): the volume, sized for the
# replica, rather than the machine's small root filesystem.
ENV DATA_DIR=/data \
    SQLITE_TMPDIR=/data \
    PORT=8080

EXPOSE 8080
WORKDIR /data

# No `USER 10001` on purpose: the entrypoint starts as root only to chown the mounted
# volume, then drops to uid 10001 with setpriv before running the binary (see the
# script). Every process of the service runs as 10001.
#
# The binary is not the ENTRYPOINT: Fly runs `release_command` (and `fly machine run`
# commands) as the CMD after the image's ENTRYPOINT, so `release_command =
# "auto-order migrate"` must not be prefixed by the binary again.
# Usage: docker run IMAGE                        -> auto-order serve
#        docker run IMAGE auto-order migrate     -> migrations only
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["auto-order", "serve"]
