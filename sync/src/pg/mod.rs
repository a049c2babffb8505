//! Everything that talks to the primary Postgres.
//!
//! - [`announce`]: the one session that wakes every edge when the change log grows.
//! - [`connect`]: connection settings from `DATABASE_URL`, TLS through rustls when asked.
//! - [`horizon`]: who holds the horizon, when an open transaction does.
//! - [`pull`]: reading the change log below the snapshot horizon.
//! - [`snapshot`]: copying every replicated table out of one `REPEATABLE READ` snapshot.
//! - [`migrate`]: the embedded, versioned migrations of `sql/postgres`.
//! - [`prune`]: trimming the change log and recording the prune point.
//! - [`schema`]: checking the primary's tables against the [`crate::catalog`].
//! - [`session`]: one connection as the engine uses it (its `Session`).
//! - [`verify`]: asking the primary whether it holds the history the replica applied.

pub mod announce;
pub mod connect;
pub mod horizon;
pub mod migrate;
pub mod prune;
pub mod pull;
pub mod schema;
pub mod session;
pub mod snapshot;
pub mod verify;

pub use crate::change::PrimaryView;
pub use connect::{ConnectorError, PgConnector};

/// Starts a `REPEATABLE READ READ ONLY` transaction: one snapshot of the upstream for
/// everything read in it (a large pull, a history check, a resync's copy).
pub(crate) async fn snapshot_transaction(
    client: &mut tokio_postgres::Client,
) -> Result<tokio_postgres::Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

/// The query behind [`read_view`] (prepared once per connection by the pull).
pub(crate) const VIEW_SQL: &str = "select sync.system_identifier(),
        (select epoch::text from sync.identity),
        (select pruned_below::text::bigint from sync.prune_point),
        pg_snapshot_xmin(s)::text::bigint,
        pg_snapshot_xmax(s)::text::bigint,
        s::text
   from pg_current_snapshot() s";

/// Reads the [`PrimaryView`] inside the caller's (repeatable read) transaction.
pub(crate) async fn read_view(
    client: &impl tokio_postgres::GenericClient,
) -> Result<(PrimaryView, String), tokio_postgres::Error> {
    Ok(view_from_row(&client.query_one(VIEW_SQL, &[]).await?))
}

/// A [`VIEW_SQL`] row: the view and the snapshot as text.
pub(crate) fn view_from_row(row: &tokio_postgres::Row) -> (PrimaryView, String) {
    let view = PrimaryView {
        system_id: row.get(0),
        epoch: row.get(1),
        pruned_below: row.get::<_, i64>(2) as u64,
        xmin: row.get::<_, i64>(3) as u64,
        xmax: row.get::<_, i64>(4) as u64,
    };
    (view, row.get(5))
}
