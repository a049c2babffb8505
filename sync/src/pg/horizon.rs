//! Naming the session whose open transaction holds the horizon.
//!
//! The horizon is the oldest transaction still running anywhere in the cluster (txids are
//! cluster-wide): an idle-in-transaction session of another application, a long report, a
//! forgotten prepared transaction. Until it ends, changes committed after it began wait, on
//! every edge. The status names it so that an operator knows whom to ask (or what to
//! terminate) instead of guessing.

use tokio_postgres::Client;

use crate::change::HorizonHolder;
use crate::error::SyncError;

/// The session or prepared transaction whose txid is `xmin`, as far as the role may see
/// (`pg_stat_activity` hides other roles' details unless the role has `pg_read_all_stats`).
pub async fn horizon_holder(
    client: &Client,
    xmin: u64,
) -> Result<Option<HorizonHolder>, SyncError> {
    // `backend_xid` is the 32-bit xid: compare the low 32 bits of the xid8.
    let xid = (xmin % (1 << 32)).to_string();
    let row = client
        .query_opt(
            "select a.pid, a.application_name, a.datname::text, a.state,
                    extract(epoch from now() - a.xact_start)::float8, null::text
               from pg_stat_activity a where a.backend_xid::text = $1
             union all
             select null, null, p.database::text, 'prepared',
                    extract(epoch from now() - p.prepared)::float8, p.gid
               from pg_prepared_xacts p where p.transaction::text = $1
             limit 1",
            &[&xid],
        )
        .await?;
    Ok(row.map(|r| HorizonHolder {
        pid: r.get(0),
        application_name: r.get(1),
        database: r.get(2),
        state: r.get(3),
        transaction_age_s: r.get(4),
        prepared_gid: r.get(5),
    }))
}
