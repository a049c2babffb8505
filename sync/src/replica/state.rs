//! The replica's persisted cursor (`sync_state`, one row): reading and writing it. The
//! cursor itself ([`ReplicaState`]) is a neutral type of [`crate::change`].

use rusqlite::{Connection, OptionalExtension, params};

pub use crate::change::ReplicaState;

// Both run on every applied batch (twice per pull for `read_state`): cached statements, so
// SQLite does not parse them again each time (parsing was a tenth of an idle edge's CPU at
// 1,000 writes/s).

pub fn read_state(conn: &Connection) -> rusqlite::Result<Option<ReplicaState>> {
    conn.prepare_cached(
        "select watermark, snapshot, snapshot_xmax, primary_system_id, primary_epoch,
                last_change_at_us, resynced_at
           from sync_state where singleton = 1",
    )?
    .query_row([], |r| {
        Ok(ReplicaState {
            watermark: r.get::<_, i64>(0)? as u64,
            snapshot: r.get(1)?,
            snapshot_xmax: r.get::<_, Option<i64>>(2)?.map(|x| x as u64),
            primary_system_id: r.get(3)?,
            primary_epoch: r.get(4)?,
            last_change_at_us: r.get(5)?,
            resynced_at: r.get(6)?,
        })
    })
    .optional()
}

pub fn write_state(conn: &Connection, state: &ReplicaState) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "insert into sync_state (singleton, watermark, snapshot, snapshot_xmax,
                                 primary_system_id, primary_epoch, last_change_at_us, resynced_at)
         values (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
         on conflict (singleton) do update set
             watermark = excluded.watermark, snapshot = excluded.snapshot,
             snapshot_xmax = excluded.snapshot_xmax,
             primary_system_id = excluded.primary_system_id,
             primary_epoch = excluded.primary_epoch,
             last_change_at_us = excluded.last_change_at_us,
             resynced_at = excluded.resynced_at",
    )?
    .execute(params![
        state.watermark as i64,
        state.snapshot,
        state.snapshot_xmax.map(|x| x as i64),
        state.primary_system_id,
        state.primary_epoch,
        state.last_change_at_us,
        state.resynced_at,
    ])?;
    Ok(())
}
