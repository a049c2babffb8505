//! The `# HELP` text and unit of every metric family the edge exports, registered once per
//! recorder, so `/metrics` reads on its own and passes `promtool check metrics` (a test
//! holds it to that). Names carry their unit (`_seconds`, `_total`) by Prometheus's
//! conventions; a family without a unit in its name is a count, a flag (0/1) or a txid.
//! Keep this list and the names recorded in [`super::metrics`] together.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Registers every family's description with the current recorder.
pub fn describe() {
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, matched route template and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by method and matched route template."
    );
    describe_counter!(
        "http_rate_limited_total",
        "Requests refused with 429, by limit (ip or user)."
    );

    describe_gauge!(
        "auto_order_replica_ready",
        "1 once the replica holds a complete snapshot and serves reads."
    );
    describe_gauge!(
        "auto_order_replica_lag_seconds",
        Unit::Seconds,
        "Age of the newest change applied to the replica (grows when nothing is written)."
    );
    describe_gauge!(
        "auto_order_replica_last_pull_age_seconds",
        Unit::Seconds,
        "Time since the last successful pull from the upstream."
    );
    describe_gauge!(
        "auto_order_replica_staleness_seconds",
        Unit::Seconds,
        "Time since the replica last held every transaction the primary had begun."
    );
    describe_gauge!(
        "auto_order_replica_watermark",
        "Every primary transaction with a txid below this is applied."
    );
    describe_gauge!(
        "auto_order_primary_horizon",
        "The upstream's horizon (oldest running txid) at the last pull."
    );
    describe_gauge!(
        "auto_order_primary_reachable",
        "1 while the upstream answers the sync engine."
    );
    describe_gauge!(
        "auto_order_primary_pool_size",
        "Connections in the primary write pool."
    );
    describe_gauge!(
        "auto_order_primary_pool_available",
        "Idle connections in the primary write pool."
    );

    describe_gauge!(
        "auto_order_sync_backlog",
        "Changes waiting below the horizon (counted up to a cap; 0 when caught up)."
    );
    describe_counter!(
        "auto_order_sync_applied_batches_total",
        "Batches of whole primary transactions applied to the replica."
    );
    describe_counter!(
        "auto_order_sync_applied_changes_total",
        "Changes applied to the replica (newer than what it held)."
    );
    describe_counter!(
        "auto_order_sync_ignored_changes_total",
        "Changes of tables this binary does not replicate (a newer primary schema), ignored."
    );
    describe_counter!(
        "auto_order_sync_resyncs_total",
        "Resyncs of the replica from a snapshot of the upstream."
    );
    describe_gauge!(
        "auto_order_sync_resync_failures",
        "Resyncs that failed in a row (each waits longer before the next)."
    );
    describe_counter!(
        "auto_order_sync_forks_total",
        "Times the primary's history was found forked from the applied one (a failover or restore lost commits); the edge converged to the new primary."
    );
    describe_gauge!(
        "auto_order_sync_fatal_error",
        "1 while the engine is stopped on a fatal error (retried slowly)."
    );
    describe_gauge!(
        "auto_order_sync_horizon_held",
        "1 while an open transaction on the primary holds the horizon."
    );
    describe_histogram!(
        "auto_order_sync_pull_duration_seconds",
        Unit::Seconds,
        "Pulls of the change log from the upstream, with or without changes."
    );
    describe_histogram!(
        "auto_order_sync_apply_duration_seconds",
        Unit::Seconds,
        "Applying one batch of changes to the replica."
    );
    describe_histogram!(
        "auto_order_sync_resync_duration_seconds",
        Unit::Seconds,
        "Whole resyncs: the snapshot copied and loaded."
    );
    describe_gauge!(
        "auto_order_sync_horizon_holder_age_seconds",
        Unit::Seconds,
        "How long the transaction holding the horizon had been open when last looked up; 0 when none holds it."
    );
    describe_gauge!(
        "auto_order_sync_primary_schema_newer",
        "1 when the primary has columns or tables this binary does not replicate."
    );
    describe_gauge!(
        "auto_order_sync_upstream_standby",
        "1 while the engine pulls from the regional standby (SYNC_DATABASE_URL), 0 from the primary."
    );

    describe_gauge!(
        "auto_order_jwks_age_seconds",
        Unit::Seconds,
        "Age of the cached Auth0 JWKS."
    );
    describe_gauge!("auto_order_jwks_keys", "Keys in the cached JWKS.");
    describe_counter!("auto_order_jwks_refreshes_total", "JWKS fetches.");
    describe_counter!(
        "auto_order_jwks_refresh_failures_total",
        "JWKS fetches that failed."
    );

    describe_counter!(
        "auto_order_cache_hits_total",
        "Reads answered from the in-process cache."
    );
    describe_counter!(
        "auto_order_cache_misses_total",
        "Reads that went to the replica."
    );
}
