//! Errors of the sync engine, classified the way the engine reacts to them.
//!
//! *Transient unless proven otherwise*: a network error, a restarting primary or "too many
//! connections" is retried with backoff, forever, while reads go on from the replica.
//! *Fatal* errors are the ones retrying cannot fix without a human (or a new deploy): the
//! primary's schema does not match this binary's catalog, the role lacks a privilege, a
//! change row cannot be decoded. They are logged once and shown in the status; the engine
//! still retries them slowly, so fixing the cause heals the edge without a restart.
//!
//! The variants that wrap a library's error keep it as the [`std::error::Error::source`]
//! (for whoever walks the chain, or matches on a `SqlState`); their messages are the ones
//! operators read in the status and the log, so each still says the cause in one line.

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Postgres failed in a way a retry may fix (network, restart, overload).
    #[error("primary unreachable or failing: {}", pg_text(.0))]
    Primary(#[source] tokio_postgres::Error),
    /// Postgres refused what the engine asks in a way retrying cannot fix (schema,
    /// privileges, credentials).
    #[error("primary refused the sync queries ({})", pg_text(.0))]
    Refused(#[source] tokio_postgres::Error),
    /// The replica file failed; a busy or full disk can clear up by itself.
    #[error("primary unreachable or failing: replica: {0}")]
    Replica(#[source] rusqlite::Error),
    #[error("primary unreachable or failing: replica pool: {0}")]
    ReplicaPool(#[source] r2d2::Error),
    /// The replica's directory cannot be created (a missing volume, permissions).
    #[error("cannot create replica directory {dir:?}: {source}")]
    ReplicaDir {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Anything else a retry may fix (a timeout, a cut stream), said in words.
    #[error("primary unreachable or failing: {0}")]
    Transient(String),
    /// Anything else retrying cannot fix, said in words.
    #[error("{0}")]
    Fatal(String),
}

impl SyncError {
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            SyncError::Fatal(_) | SyncError::Refused(_) | SyncError::ReplicaDir { .. }
        )
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        SyncError::Fatal(message.into())
    }

    pub fn transient(message: impl Into<String>) -> Self {
        SyncError::Transient(message.into())
    }
}

/// The SQL states that retrying cannot fix.
const REFUSED: [SqlState; 9] = [
    SqlState::UNDEFINED_TABLE,
    SqlState::UNDEFINED_COLUMN,
    SqlState::UNDEFINED_FUNCTION,
    SqlState::INVALID_SCHEMA_NAME,
    SqlState::INSUFFICIENT_PRIVILEGE,
    SqlState::INVALID_PASSWORD,
    SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
    SqlState::INVALID_CATALOG_NAME,
    SqlState::DATATYPE_MISMATCH,
];

/// A Postgres error in one line: the Display of a db error is only "db error", the code and
/// message are in its source.
fn pg_text(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => err.to_string(),
    }
}

impl From<tokio_postgres::Error> for SyncError {
    fn from(err: tokio_postgres::Error) -> Self {
        if err.code().is_some_and(|code| REFUSED.contains(code)) {
            SyncError::Refused(err)
        } else {
            SyncError::Primary(err)
        }
    }
}

impl From<rusqlite::Error> for SyncError {
    fn from(err: rusqlite::Error) -> Self {
        SyncError::Replica(err)
    }
}

impl From<r2d2::Error> for SyncError {
    fn from(err: r2d2::Error) -> Self {
        SyncError::ReplicaPool(err)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn a_replica_error_is_transient_keeps_its_source_and_says_what_it_was() {
        let err = SyncError::from(rusqlite::Error::InvalidQuery);
        assert!(!err.is_fatal());
        assert!(err.source().is_some_and(|s| s.is::<rusqlite::Error>()));
        assert_eq!(
            err.to_string(),
            format!(
                "primary unreachable or failing: replica: {}",
                rusqlite::Error::InvalidQuery
            )
        );
    }

    #[test]
    fn a_replica_directory_that_cannot_be_created_is_fatal_and_keeps_the_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let path = file.join("data").join("replica.db");
        let err = crate::replica::Replica::open(&path, 1).err().unwrap();
        assert!(err.is_fatal());
        assert!(err.source().is_some_and(|s| s.is::<std::io::Error>()));
        assert!(
            err.to_string()
                .starts_with("cannot create replica directory")
        );
    }

    #[test]
    fn errors_in_words_keep_their_class() {
        assert!(SyncError::fatal("schema").is_fatal());
        assert!(!SyncError::transient("timed out").is_fatal());
        assert_eq!(SyncError::fatal("schema").to_string(), "schema");
        assert_eq!(
            SyncError::transient("timed out").to_string(),
            "primary unreachable or failing: timed out"
        );
    }
}
