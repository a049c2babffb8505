//! Errors of the sync engine, classified the way the engine reacts to them.
//!
//! *Transient unless proven otherwise*: a network error, a restarting primary or "too many
//! connections" is retried with backoff, forever, while reads go on from the replica.
//! *Fatal* errors are the ones retrying cannot fix without a human (or a new deploy): the
//! primary's schema does not match this binary's catalog, the role lacks a privilege, a
//! change row cannot be decoded. They are logged once and shown in the status; the engine
//! still retries them slowly, so fixing the cause heals the edge without a restart.

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("primary unreachable or failing: {0}")]
    Transient(String),
    #[error("{0}")]
    Fatal(String),
}

impl SyncError {
    pub fn is_fatal(&self) -> bool {
        matches!(self, SyncError::Fatal(_))
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        SyncError::Fatal(message.into())
    }
}

impl From<tokio_postgres::Error> for SyncError {
    fn from(err: tokio_postgres::Error) -> Self {
        let fatal = err.code().is_some_and(|code| {
            [
                SqlState::UNDEFINED_TABLE,
                SqlState::UNDEFINED_COLUMN,
                SqlState::UNDEFINED_FUNCTION,
                SqlState::INVALID_SCHEMA_NAME,
                SqlState::INSUFFICIENT_PRIVILEGE,
                SqlState::INVALID_PASSWORD,
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                SqlState::INVALID_CATALOG_NAME,
                SqlState::DATATYPE_MISMATCH,
            ]
            .contains(code)
        });
        // The Display of a db error is only "db error"; the source carries the message.
        let text = match err.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => err.to_string(),
        };
        if fatal {
            SyncError::Fatal(format!("primary refused the sync queries ({text})"))
        } else {
            SyncError::Transient(text)
        }
    }
}

impl From<rusqlite::Error> for SyncError {
    fn from(err: rusqlite::Error) -> Self {
        // A busy or full disk can clear up by itself; treat the replica file as transient.
        SyncError::Transient(format!("replica: {err}"))
    }
}

impl From<r2d2::Error> for SyncError {
    fn from(err: r2d2::Error) -> Self {
        SyncError::Transient(format!("replica pool: {err}"))
    }
}
