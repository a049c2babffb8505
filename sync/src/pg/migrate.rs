//! The Postgres migrations of `sql/postgres`, embedded in the binary.
//!
//! refinery records each applied migration with a checksum and refuses to run when an
//! applied migration's text has changed (a migration is never edited once applied). A
//! session advisory lock around the run lets several instances start `migrate` at once: the
//! first applies, the others wait and then find nothing left to do.

use tokio_postgres::Client;

use crate::error::SyncError;

mod embedded {
    refinery::embed_migrations!("../sql/postgres");
}

/// Arbitrary, fixed key of the advisory lock that serialises migration runs.
const MIGRATION_LOCK_KEY: i64 = 0x6175_746f_6f72_6472; // "autoordr"

/// Applies the pending migrations; returns the names of the ones applied by this call.
pub async fn run_migrations(client: &mut Client) -> Result<Vec<String>, SyncError> {
    client
        .execute("select pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = embedded::migrations::runner()
        .set_abort_divergent(true)
        // A rolled-back (older) binary runs `migrate` as its release command against a
        // database that already has newer migrations: that is fine, they are additive.
        .set_abort_missing(false)
        .run_async(client)
        .await;
    // Unlock whatever happened; a failed unlock only matters if the session lives on.
    let _ = client
        .execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let report = result.map_err(|e| SyncError::fatal(format!("migration failed: {e}")))?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}
