//! Auto-Order edge: a regional read replica of the Auto-Order primary with an HTTP API.
//!
//! # Layout
//! - [`cli`]: the `auto-order` subcommands (`serve`, `migrate`, `resync`, `prune`, `token`, …).
//! - [`config`]: configuration read once from the environment.
//! - [`telemetry`]: tracing subscriber set-up.
//! - [`error`]: the one API error type and its JSON body.
//! - [`db`]: the primary's write pool and Postgres error mapping.
//! - [`consistency`]: read-your-writes (`X-Sync-Token`).
//! - [`read`]: queries of the replica (or the primary, for a token it has not reached).
//! - [`cache`]: the read cache and its exact invalidation from the sync engine's events.
//! - [`auth`]: Auth0 JWT verification against a cached JWKS, and the local dev issuer.
//! - [`server`]: the application: start-up, background tasks, graceful shutdown.
//! - [`api`]: the HTTP routes.
//!
//! The sync engine (change stream → SQLite replica) is the separate `auto-order-sync` crate.

pub mod api;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod consistency;
pub mod db;
pub mod error;
pub mod read;
pub mod server;
pub mod telemetry;
