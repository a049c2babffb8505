//! How the data layer fails, and what each failure is to a client.

use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The primary cannot be reached, or its read budget stayed taken: try again later.
    #[error("the primary is unavailable")]
    PrimaryUnavailable,
    /// A statement on the primary failed (constraint violations included: see
    /// [`super::db_error`] for what each is to a client).
    #[error("postgres")]
    Postgres(#[from] tokio_postgres::Error),
    /// Reading the replica failed (an I/O error, a corrupt row): the service's fault.
    #[error("replica read")]
    Replica(#[source] anyhow::Error),
    /// A row from the primary did not decode into the replica's form.
    #[error("decoding a primary row")]
    Decode(#[source] anyhow::Error),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::PrimaryUnavailable => ApiError::primary_unavailable(),
            StoreError::Postgres(e) => super::db_error(e),
            StoreError::Replica(e) | StoreError::Decode(e) => ApiError::Internal(e),
        }
    }
}
