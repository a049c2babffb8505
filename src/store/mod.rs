//! The data layer, beneath the routes: what is read from the replica or the primary and how,
//! with no HTTP in it. It takes its own handles ([`Store`]: the replica's reader pool and the
//! primary's pool), not the application state, and fails with [`StoreError`], which the API
//! maps to its answers (`From<StoreError> for ApiError`).
//!
//! # Layout
//! - [`select`]: one [`Select`] over a replicated table, rendered for SQLite or Postgres, and
//!   [`Store::fetch`], which runs it where [`ReadFrom`] says.
//! - [`row`]: [`Row`], one row as the replica stores it.
//! - [`history`]: a user's purchase histories for predictions and reorders.
//! - [`idempotency`]: the idempotency keys' statements (claim, prior use, expiry).
//! - [`primary`]: the primary's pool, its read budget, and the mapping of Postgres failures
//!   to the API.
//!
//! Every replica read goes through [`Store::replica_read`]: on the blocking pool (rusqlite
//! never runs on an async worker), in a span of its own beneath the request's.

mod error;
pub mod history;
pub mod idempotency;
pub mod primary;
pub mod row;
pub mod select;

pub use error::StoreError;
pub use primary::{Primary, db_error};
pub use row::Row;
pub use select::{Filter, Select, fold_case};

use auto_order_sync::replica::ReaderPool;

use crate::consistency::ReadFrom;

/// The data layer's handles. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    readers: ReaderPool,
    primary: Primary,
}

impl Store {
    pub fn new(readers: ReaderPool, primary: Primary) -> Store {
        Store { readers, primary }
    }

    /// The primary: writes, and reads a client's token sends there.
    pub fn primary(&self) -> &Primary {
        &self.primary
    }

    /// Runs `f` on a pooled replica reader on the blocking pool, in `span` (create it
    /// beneath the caller's: `tracing::debug_span!("replica.query", …)`).
    pub async fn replica_read<T, F>(&self, span: tracing::Span, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut auto_order_sync::rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
    {
        use anyhow::Context as _;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                let mut conn = readers.get().context("Failed to get a replica reader")?;
                f(&mut conn)
            })
        })
        .await
        .map_err(|e| StoreError::Replica(anyhow::anyhow!("replica read task failed: {e}")))?
        .map_err(|e| StoreError::Replica(e.context("Failed to read the replica")))
    }

    /// Runs `select` against the replica or the primary.
    pub async fn fetch(&self, from: ReadFrom, select: Select) -> Result<Vec<Row>, StoreError> {
        match from {
            ReadFrom::Replica => select::fetch_replica(self, select).await,
            ReadFrom::Primary => select::fetch_primary(self, select).await,
        }
    }
}
