//! The idempotency keys' storage on the primary (`idempotency_keys`, migration V3): the
//! parts of a create's single statement that read an earlier use of its key and claim it,
//! the read after losing the race for a key, and the hourly expiry. What a prior use means
//! to a client (a replay, 422, 409) is the API's: `api::resource::idempotency`.

use super::StoreError;

/// Reads an earlier use of the key (`$1` owner, `$2` key, null for none) as `prior`.
pub const PRIOR_CTE: &str = "prior as (
        select request_hash, status, response, sync_token from idempotency_keys
         where $2::text is not null and owner_id = $1 and key = $2)";

/// Stores the key (`$3` the request hash) with the row image of `ins` and this txid.
pub const CLAIM_CTE: &str = "claim as (
        insert into idempotency_keys
               (owner_id, key, request_hash, status, response, resource_id, sync_token)
        select $1, $2, $3, 201, to_jsonb(ins.*), ins.id, pg_current_xact_id()::text::bigint
          from ins where $2::text is not null)";

/// The `prior` columns a create's statement returns after its own two.
pub const PRIOR_COLUMNS: &str = "(select request_hash from prior), (select status from prior),
        (select response from prior), (select sync_token from prior)";

/// An earlier use of a key, as stored.
pub struct Prior {
    pub request_hash: String,
    /// `None` while the creating transaction is open (an older binary's create).
    pub status: Option<i32>,
    pub response: Option<serde_json::Value>,
    pub sync_token: Option<i64>,
}

impl Prior {
    /// The prior use in `row`'s columns from `at` on ([`PRIOR_COLUMNS`]), if there is one.
    pub fn from_columns(row: &tokio_postgres::Row, at: usize) -> Option<Prior> {
        Some(Prior {
            request_hash: row.get::<_, Option<String>>(at)?,
            status: row.get(at + 1),
            response: row.get(at + 2),
            sync_token: row.get(at + 3),
        })
    }
}

/// Whether `err` is a create losing the race for its key to a concurrent first use.
pub fn is_concurrent_claim(err: &tokio_postgres::Error) -> bool {
    err.as_db_error().is_some_and(|db| {
        *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some("idempotency_keys_pkey")
    })
}

/// The earlier use of `key` by `owner`, read after losing the race for it.
pub async fn fetch_prior(
    client: &deadpool_postgres::Object,
    owner: &str,
    key: &str,
) -> Result<Option<Prior>, StoreError> {
    let select = client
        .prepare_cached(
            "select request_hash, status, response, sync_token from idempotency_keys
              where owner_id = $1 and key = $2",
        )
        .await?;
    let row = client.query_opt(&select, &[&owner, &key]).await?;
    Ok(row.as_ref().and_then(|r| Prior::from_columns(r, 0)))
}

/// Deletes the keys created more than `older_than` ago; returns how many went. A create
/// still in progress holds its key uncommitted, so it is never touched.
pub async fn expire_keys(
    client: &tokio_postgres::Client,
    older_than: std::time::Duration,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "delete from idempotency_keys where created_at < now() - make_interval(secs => $1)",
            &[&older_than.as_secs_f64()],
        )
        .await
}
