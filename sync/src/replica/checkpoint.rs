//! Checkpointing the replica's WAL on a thread of its own, after a resync.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! committing connection. For the ordinary applier that is right: a few megabytes at a
//! time, and it keeps the WAL bounded while a backlog streams in (a checkpoint running
//! beside a busy writer never finds the WAL fully copied, so the WAL could never restart).
//! A resync's single commit is different: the automatic checkpoint would copy the whole new
//! replica from the WAL into the database file and sync both, about a second per million
//! rows, before the resync could report done. The loader therefore commits with the
//! automatic checkpoint off and nudges this thread, which runs a `PASSIVE` checkpoint (it
//! never blocks the writer or readers). Durability is unchanged: the commit is in the WAL
//! either way; the checkpoint is only the copy back into the main file.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::SyncError;

/// The shortest pause between two checkpoints (each syncs the WAL and the database file).
const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// Checkpoints even without a nudge this often (harmless when there is nothing to copy).
const IDLE_INTERVAL: Duration = Duration::from_secs(30);

/// The handle the loader nudges; the thread stops when it is dropped.
pub(crate) struct Checkpointer {
    nudge: SyncSender<()>,
}

impl Checkpointer {
    /// Opens a connection of its own to `path` and starts the thread.
    pub(crate) fn start(path: &Path) -> Result<Checkpointer, SyncError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let (nudge, nudged) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("replica-checkpoint".into())
            .spawn(move || run(conn, nudged))
            .map_err(|e| SyncError::fatal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { nudge })
    }

    /// Asks for a checkpoint. Never blocks: one pending nudge is enough.
    pub(crate) fn nudge(&self) {
        match self.nudge.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

fn run(conn: Connection, nudged: Receiver<()>) {
    let mut last = Instant::now() - MIN_INTERVAL;
    loop {
        match nudged.recv_timeout(IDLE_INTERVAL) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // One checkpoint per interval however many nudges came.
        let since = last.elapsed();
        if since < MIN_INTERVAL {
            thread::sleep(MIN_INTERVAL - since);
        }
        last = Instant::now();
        // `PASSIVE` copies what no reader still needs and returns at once otherwise; an
        // error (a busy lock past the timeout) is harmless and retried at the next nudge.
        if let Err(e) = conn.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "replica checkpoint failed; retrying later");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::replica::Replica;

    /// A write committed with the automatic checkpoint off stays in the WAL until the thread
    /// copies it into the database file.
    #[tokio::test]
    async fn a_nudge_copies_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.db");
        let replica = Replica::open(&path, 1).unwrap();
        replica
            .with_writer(|conn| {
                conn.pragma_update(None, "wal_autocheckpoint", 0)?;
                conn.execute_batch(
                    "create table filler (x text);
                     with recursive n(i) as (select 1 union all select i + 1 from n where i < 2000)
                     insert into filler select randomblob(1000) from n;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        replica.checkpoint_soon();

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let after = std::fs::metadata(&path).unwrap().len();
            if after > before + 1_000_000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the database file stayed at {after} bytes (was {before})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
