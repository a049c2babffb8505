//! Checkpointing the replica's WAL on a thread of its own, mostly off the writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! committing connection: it copies the WAL into the database file and syncs both before
//! the commit returns. At SQLite's default threshold (1,000 pages) that was a stall of
//! several milliseconds every few hundred small commits, most of the replication lag's p99
//! at 1,000 writes/s (`edge-bench`: 7.4 ms with it, about 3 ms without); for a resync it
//! was about a second per million rows before the resync could report done.
//!
//! So the copying happens here: the writer nudges this thread after each write, and it runs
//! a `PASSIVE` checkpoint (which blocks neither the writer nor readers) at most every
//! [`MIN_INTERVAL`]. Beside a busy writer such a checkpoint never finds the whole WAL
//! copied, and SQLite only starts a WAL over when it is; the writer therefore keeps an
//! automatic checkpoint of its own at a much larger size (`WRITER_CHECKPOINT_BYTES`, 64
//! MiB), which finds nearly everything already copied, syncs, and lets the next write
//! start the WAL over. (A `RESTART` or `TRUNCATE` checkpoint from this thread would do the
//! same but make the writer wait out SQLite's busy-handler sleeps: 50 ms stalls, measured.)
//! A resync commits with the writer's checkpoint off and leaves its copy to this thread.
//!
//! Durability is unchanged: a commit is in the WAL either way (`synchronous = NORMAL`), and
//! a checkpoint is only the copy back into the main file.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::SyncError;

/// The shortest pause between two checkpoints (each syncs the WAL and the database file).
const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// Checkpoints even without a nudge this often (harmless when there is nothing to copy).
const IDLE_INTERVAL: Duration = Duration::from_secs(30);

/// The handle the writer nudges; the thread stops when it is dropped.
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
        // Reading the journal mode opens the file: until then the connection does not know
        // it is in WAL mode, and a checkpoint reports nothing.
        let mode: String = conn.query_row("pragma journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(SyncError::fatal(format!(
                "the replica is in {mode} mode, not WAL"
            )));
        }
        let (nudge, nudged) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("replica-checkpoint".into())
            .spawn(move || run(conn, nudged))
            .map_err(|e| SyncError::fatal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { nudge })
    }

    /// Tells the thread the WAL may have grown. Never blocks: one pending nudge is enough.
    pub(crate) fn nudge(&self) {
        // Full: a nudge is already pending. Disconnected: the thread is gone (nothing to do).
        let _ = self.nudge.try_send(());
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
        // `PASSIVE` copies what no reader still needs and returns; when the writer's own
        // checkpoint holds the lock it does nothing. Either way the next nudge goes on.
        if let Err(e) = conn.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "replica checkpoint postponed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use crate::replica::Replica;

    /// Writes about 2.5 MB through the writer (below its own checkpoint's threshold).
    async fn write_filler(replica: &Replica) {
        replica
            .with_writer(|conn| {
                conn.execute_batch(
                    "create table filler (x blob);
                     with recursive n(i) as (select 1 union all select i + 1 from n where i < 2000)
                     insert into filler select randomblob(1000) from n;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    #[tokio::test]
    async fn writes_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.db");
        let replica = Replica::open(&path, 1).unwrap();
        let before = size(&path);

        write_filler(&replica).await;

        wait_for("the checkpoint thread copied the WAL", || {
            size(&path) > before + 1_000_000
        })
        .await;
    }
}
