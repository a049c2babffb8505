//! The applied history's windows (`sync_history`), written with each batch and read back to
//! be checked against the primary (see [`crate::history`] for why and what a window is).
//!
//! A batch extends the newest window when it continues it (same filter, its `lo` is the
//! window's `hi`) and the window is younger than [`WINDOW_SPAN_US`]: an edge streaming
//! hundreds of tiny batches a second writes one row per second, not one per batch. Windows
//! older than [`RETENTION_US`] before the newest go: a fork loses what the old primary had
//! not yet shipped to its standby, seconds at most, and the retained minutes bound what a
//! check costs the primary.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::history::{Digest64, Window};

/// A window takes batches for this long before a new one starts.
const WINDOW_SPAN_US: i64 = 1_000_000;

/// How much applied history is kept, measured back from the newest window.
pub const RETENTION_US: i64 = 10 * 60 * 1_000_000;

/// Records an applied batch's window at `now_us`, extending the newest window if it can.
pub fn record(tx: &Transaction<'_>, window: &Window, now_us: i64) -> rusqlite::Result<()> {
    let newest: Option<(i64, Window, i64)> = tx
        .prepare_cached(
            "select rowid, lo, hi, snapshot, visible, changes, digest, opened_at_us
               from sync_history order by rowid desc limit 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, window_from_row(r, 1)?, r.get(7)?)))
        .optional()?;
    match newest {
        Some((rowid, mut newest, opened))
            if newest.hi == window.lo
                && newest.snapshot == window.snapshot
                && newest.visible == window.visible
                && now_us - opened < WINDOW_SPAN_US =>
        {
            // The sum wraps in Rust: SQLite's integer addition would turn into a float.
            newest.digest.merge(window.digest);
            tx.prepare_cached(
                "update sync_history set hi = ?2, changes = ?3, digest = ?4 where rowid = ?1",
            )?
            .execute(params![
                rowid,
                window.hi as i64,
                newest.digest.changes as i64,
                newest.digest.sum as i64
            ])?;
        }
        _ => {
            insert(tx, window, now_us)?;
            // Windows only age past the retention as new ones open: expire them here, not
            // on every batch.
            tx.prepare_cached("delete from sync_history where opened_at_us < ?1")?
                .execute([now_us - RETENTION_US])?;
        }
    }
    Ok(())
}

/// A window from the columns `lo, hi, snapshot, visible, changes, digest` starting at `at`.
fn window_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Window> {
    Ok(Window {
        lo: r.get::<_, i64>(at)? as u64,
        hi: r.get::<_, i64>(at + 1)? as u64,
        snapshot: r.get(at + 2)?,
        visible: r.get(at + 3)?,
        digest: Digest64 {
            changes: r.get::<_, i64>(at + 4)? as u64,
            sum: r.get::<_, i64>(at + 5)? as u64,
        },
    })
}

fn insert(tx: &Transaction<'_>, window: &Window, now_us: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "insert into sync_history (lo, hi, snapshot, visible, changes, digest, opened_at_us)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        window.lo as i64,
        window.hi as i64,
        window.snapshot,
        window.visible,
        window.digest.changes as i64,
        window.digest.sum as i64,
        now_us
    ])?;
    Ok(())
}

/// Forgets the old history (a resync replaced the replica) and starts the new one with
/// `first`, the window of what the snapshot copied, if any.
pub fn reset(tx: &Transaction<'_>, first: Option<&Window>, now_us: i64) -> rusqlite::Result<()> {
    tx.execute("delete from sync_history", [])?;
    if let Some(window) = first {
        insert(tx, window, now_us)?;
    }
    Ok(())
}

/// The retained windows opened at or after `since_us` (all of them with `None`), oldest
/// first.
pub fn windows(conn: &Connection, since_us: Option<i64>) -> rusqlite::Result<Vec<Window>> {
    conn.prepare_cached(
        "select lo, hi, snapshot, visible, changes, digest from sync_history
          where opened_at_us >= ?1 order by rowid",
    )?
    .query_map([since_us.unwrap_or(i64::MIN)], |r| window_from_row(r, 0))?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../../sql/sqlite/replica.sql"))
            .unwrap();
        conn
    }

    fn window(lo: u64, hi: u64, sum: u64) -> Window {
        Window {
            lo,
            hi,
            snapshot: None,
            visible: false,
            digest: Digest64 { changes: 1, sum },
        }
    }

    #[test]
    fn batches_that_continue_a_young_window_extend_it_with_a_wrapping_sum() {
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        record(&tx, &window(10, 20, u64::MAX - 1), 0).unwrap();
        record(&tx, &window(20, 25, 5), 500_000).unwrap();
        // Not contiguous: a new window.
        record(&tx, &window(30, 31, 1), 600_000).unwrap();
        // Contiguous but the window is a second old: a new window.
        record(&tx, &window(31, 40, 1), 1_700_000).unwrap();
        let all = windows(&tx, None).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!((all[0].lo, all[0].hi), (10, 25));
        assert_eq!(all[0].digest, Digest64 { changes: 2, sum: 3 });
        assert_eq!(windows(&tx, Some(1_000_000)).unwrap().len(), 1);
    }

    #[test]
    fn windows_older_than_the_retention_go_and_a_reset_starts_over() {
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        record(&tx, &window(1, 2, 1), 0).unwrap();
        record(&tx, &window(2, 3, 1), RETENTION_US + 1).unwrap();
        assert_eq!(windows(&tx, None).unwrap().len(), 1);
        reset(&tx, Some(&window(5, 9, 7)), 0).unwrap();
        assert_eq!(windows(&tx, None).unwrap(), vec![window(5, 9, 7)]);
    }
}
