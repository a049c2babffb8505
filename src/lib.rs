//! Auto-Order edge: a regional read replica of the Auto-Order primary with an HTTP API.
//!
//! # Layout
//! - [`cli`]: the `auto-order` subcommands (`serve`, `migrate`, `resync`, `prune`, `token`, …).
//! - [`config`]: configuration read once from the environment.
//! - [`telemetry`]: logs, and traces over OTLP with W3C trace context in and out.
//! - [`tls`]: the one TLS client configuration (JWKS fetch, trace exporter).
//! - [`write_mode`]: `forward` or Fly's `fly-replay` for writes outside the primary region.
//! - [`rehearsal`]: `auto-order rehearse`, three edges on loopback as a multi-region rehearsal.
//! - [`error`]: the one API error type and its JSON body.
//! - [`consistency`]: read-your-writes (`X-Sync-Token`).
//! - [`predict`]: next-purchase prediction from an order history (pure).
//! - [`store`]: the data layer: selects and rows, purchase histories, the primary's pool and
//!   its error mapping; reads from the replica or the primary, no HTTP.
//! - [`cache`]: the read cache and its exact invalidation from the sync engine's events.
//! - [`auth`]: Auth0 JWT verification against a cached JWKS, and the local dev issuer.
//! - [`roles`]: `auto-order roles`, the edge's least-privilege grants on the primary.
//! - [`dev`]: `auto-order dev`, the one-command local start with demo data.
//! - [`server`]: the application: start-up, background tasks, graceful shutdown.
//! - [`housekeeping`]: the hourly prune of the change log and expiry of idempotency keys.
//! - [`http_server`]: connections: header-read timeout, connection cap, bounded drain.
//! - [`state`]: [`state::AppState`], what every handler reaches (below routes and data).
//! - [`resync_gate`]: the cooldown of forced resyncs.
//! - [`api`]: the HTTP API: `api::routes` (handlers), `api::resource` (what the resources
//!   share: get, list, create, update, the write round trips, idempotency), `api::request`
//!   (extractors, validation, paging), `api::middleware` (the layers).
//!
//! The sync engine (change stream → SQLite replica) is the separate `auto-order-sync` crate.

/// mimalloc instead of the system allocator, for every binary of this crate: a request, a
/// pulled change and a snapshot row each allocate and free many small strings, often on
/// another thread than the one that allocated them (a snapshot chunk is decoded on a tokio
/// worker and dropped by the loader), which glibc's allocator serves with locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod consistency;
pub mod demo;
pub mod dev;
pub mod error;
pub mod housekeeping;
pub mod http_server;
pub mod predict;
pub mod rehearsal;
pub mod resync_gate;
pub mod roles;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod write_mode;
