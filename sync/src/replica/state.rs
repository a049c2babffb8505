//! The replica's persisted cursor (`sync_state`, one row) and what it belongs to.

use rusqlite::{Connection, OptionalExtension, params};

use crate::change::PrimaryView;

/// How far this replica has applied the primary's change stream, and which primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// Every change of every transaction with `txid < watermark` is applied.
    pub watermark: u64,
    /// The last resync's snapshot while it still matters (changes visible in it are skipped).
    pub snapshot: Option<String>,
    pub snapshot_xmax: Option<u64>,
    pub primary_system_id: Option<i64>,
    pub primary_epoch: String,
    /// `changed_at` of the newest applied change, in unix microseconds.
    pub last_change_at_us: Option<i64>,
    pub resynced_at: String,
}

impl ReplicaState {
    /// Whether `view` is the primary this replica was built from: same system, same sync
    /// epoch. (Whether it still holds the same *history*, after a failover or a restore
    /// that kept both, is [`ReplicaState::history_went_back`] and [`crate::history`].)
    pub fn same_primary(&self, view: &PrimaryView) -> bool {
        let other_system =
            matches!((self.primary_system_id, view.system_id), (Some(a), Some(b)) if a != b);
        !other_system && self.primary_epoch == view.epoch
    }

    /// Whether the primary's horizon is below the watermark. On one history the horizon
    /// only moves forward (every transaction below the watermark had finished when it was
    /// set), so a horizon below it means txids restarted: a promoted standby that lacked
    /// commits, or a restore.
    pub fn history_went_back(&self, view: &PrimaryView) -> bool {
        view.xmin < self.watermark
    }
}

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
