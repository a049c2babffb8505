//! Integration tests against a real Postgres (`TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`): every test creates its own database and
//! temp dir. One test binary keeps link times down.

mod support;

mod abuse;
mod api_admin;
mod api_consistency;
mod api_fuzz;
mod api_idempotency;
mod api_middleware;
mod api_openapi;
mod api_orders;
mod api_predictions;
mod api_products;
mod api_round_trips;
mod auth;
mod bench_distance;
mod bench_edge_cost;
mod demo_page;
mod deploy_rehearsal;
mod dev_command;
mod faults_under_load;
mod migrate;
mod ops_files;
mod roles;
mod serve;
mod soak;
mod sync_atomicity;
mod sync_convergence;
mod sync_crash;
mod sync_failover;
mod sync_fanout;
mod sync_faults;
mod sync_ordering;
mod sync_recovery;
mod sync_resync;
mod sync_schema;
mod traces;
