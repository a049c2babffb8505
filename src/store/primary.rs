//! The primary: a small pool of Postgres connections for writes and primary-fallback reads,
//! and the mapping of Postgres failures to API errors ([`db_error`]).
//!
//! Every write runs in one transaction and reads its own txid before committing: that txid
//! is the sync token the client gets back (read-your-writes, see [`crate::consistency`]).
//!
//! Reads a client's token sends to the primary share the pool, but each holds a permit of
//! a separate, smaller budget (`PRIMARY_READ_CONCURRENCY`, [`Primary::get_for_read`]): when
//! replication stalls, or a client sends tokens the replica has not reached, those reads
//! wait for one another and writes keep the rest of the pool.

use std::sync::Arc;
use std::time::Duration;

use auto_order_sync::PgConnector;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::StoreError;
use crate::error::ApiError;

/// Connections kept to the primary for writes and primary-fallback reads.
const POOL_SIZE: usize = 16;

/// How long a primary-fallback read waits for a permit before answering 503.
const READ_PERMIT_WAIT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Primary {
    pool: Pool,
    /// Permits of the reads answered from the primary (see the module docs).
    reads: Arc<Semaphore>,
    /// For the admin database check, which must not take a pooled connection.
    connector: PgConnector,
}

/// A pooled connection held for a read, with its read permit.
pub struct ReadConnection {
    client: Object,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for ReadConnection {
    type Target = Object;

    fn deref(&self) -> &Object {
        &self.client
    }
}

impl std::ops::DerefMut for ReadConnection {
    fn deref_mut(&mut self) -> &mut Object {
        &mut self.client
    }
}

impl Primary {
    /// `read_concurrency`: how many reads may use the primary at once.
    pub fn new(connector: &PgConnector, read_concurrency: usize) -> anyhow::Result<Primary> {
        let config = connector.config().clone();
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match connector.tls() {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, NoTls, manager_config),
        };
        // Fail fast when the primary is away: a write answers 503 in seconds, not minutes.
        let timeouts = Timeouts {
            wait: Some(Duration::from_secs(2)),
            create: Some(Duration::from_secs(3)),
            recycle: Some(Duration::from_secs(2)),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .timeouts(timeouts)
            .runtime(Runtime::Tokio1)
            .build()?;
        Ok(Primary {
            pool,
            reads: Arc::new(Semaphore::new(read_concurrency.clamp(1, POOL_SIZE - 1))),
            connector: connector.clone(),
        })
    }

    /// A pooled connection for a read, within the read budget: 503 when the budget stays
    /// taken for [`READ_PERMIT_WAIT`] or the primary cannot be reached.
    pub async fn get_for_read(&self) -> Result<ReadConnection, StoreError> {
        let permit = tokio::time::timeout(READ_PERMIT_WAIT, self.reads.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                tracing::warn!("primary read budget exhausted");
                StoreError::PrimaryUnavailable
            })?;
        Ok(ReadConnection {
            client: self.get().await?,
            _permit: permit,
        })
    }

    /// One round trip on a connection of its own (not the pool's, so a check never waits
    /// behind writes or takes a connection from them): for the admin database check.
    pub async fn probe(&self) -> bool {
        let check = async {
            let client = self.connector.connect(None).await.ok()?;
            client.simple_query("select 1").await.ok()
        };
        tokio::time::timeout(Duration::from_secs(3), check)
            .await
            .ok()
            .flatten()
            .is_some()
    }

    /// A pooled connection, or 503 when the primary cannot be reached.
    pub async fn get(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            tracing::warn!(error = %e, "primary connection unavailable");
            StoreError::PrimaryUnavailable
        })
    }

    /// Pool use, for metrics: (size, available).
    pub fn pool_status(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.available)
    }
}

/// Maps a Postgres error to the API: constraint violations become 409/422 by constraint,
/// a lost or refused connection 503, anything else 500 (logged, never shown).
pub fn db_error(err: tokio_postgres::Error) -> ApiError {
    let Some(db) = err.as_db_error() else {
        // No server error: the connection failed or closed.
        tracing::warn!(error = %err, "primary connection failed during a request");
        return ApiError::primary_unavailable();
    };
    let code = db.code();
    if *code == SqlState::UNIQUE_VIOLATION {
        return ApiError::Conflict("a row with this id already exists".into());
    }
    if *code == SqlState::FOREIGN_KEY_VIOLATION {
        return ApiError::invalid("product_id", "no such product");
    }
    if *code == SqlState::CHECK_VIOLATION {
        let field = db
            .constraint()
            .and_then(|c| c.split('_').nth(1))
            .unwrap_or("body");
        return ApiError::invalid(field, "value out of range");
    }
    if [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::QUERY_CANCELED,
    ]
    .contains(code)
    {
        return ApiError::primary_unavailable();
    }
    ApiError::Internal(anyhow::anyhow!(
        "postgres: {}: {}",
        code.code(),
        db.message()
    ))
}
