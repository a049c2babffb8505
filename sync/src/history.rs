//! The history a replica has applied, kept as digests the primary can be asked to match.
//!
//! # Why
//! A promoted asynchronous standby (a failover) or a point-in-time restore keeps the system
//! identifier and the sync epoch, yet may lack commits this replica already applied, and its
//! txids, change ids and versions restart *below* what the replica has seen. Neither the
//! identity nor "txids went back" tells reliably: the new primary's txids may pass the
//! watermark before the edge reconnects, and a lost transaction may have a lower txid than
//! one the standby did receive (txid order is not commit order). So the replica remembers
//! what it applied, window by window, and on every (re)connect (and periodically) asks the
//! primary whether its `sync.changes` holds exactly that: a match means the histories agree
//! and the cursor is good; any difference is a fork.
//!
//! # What a window is
//! A [`Window`] covers the txids `lo <= txid < hi` (applied batches are contiguous, so the
//! windows tile the range from the last resync to the watermark) with the same pull filter:
//! no filter, changes *not* visible in a resync's snapshot (skipped because the snapshot had
//! them), or, for the snapshot itself, changes visible in it. Its digest is the count and the
//! wrapping sum of a 64-bit hash of each change's `(id, txid, version, changed_at)`: the
//! timestamp is there because a promoted standby's sequences restart too, and a new change
//! can reuse a lost one's id, txid and version. The hash is the first eight bytes of an MD5,
//! which Postgres computes in SQL ([`CHANGE_HASH_SQL`]), so a window is compared without its
//! rows crossing the network. A sum can be extended batch by batch and compared in any order.

use md5::{Digest, Md5};

/// A range of the change log the replica applied, and what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// First txid covered.
    pub lo: u64,
    /// First txid not covered.
    pub hi: u64,
    /// The snapshot filter the window was read with (see [`Window::visible`]).
    pub snapshot: Option<String>,
    /// With a snapshot: true counts only changes visible in it (what a resync copied), false
    /// only those not visible (what pulls after it applied).
    pub visible: bool,
    pub digest: Digest64,
}

/// The count and hash sum of a set of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digest64 {
    pub changes: u64,
    pub sum: u64,
}

impl Digest64 {
    /// Adds one change.
    pub fn add(&mut self, id: i64, txid: u64, version: i64, changed_at_us: i64) {
        self.changes += 1;
        self.sum = self
            .sum
            .wrapping_add(change_hash(id, txid, version, changed_at_us));
    }

    /// Adds another set of changes (windows that are extended).
    pub fn merge(&mut self, other: Digest64) {
        self.changes += other.changes;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

/// The hash of one change: the first eight bytes (big-endian) of the MD5 of
/// `id:txid:version:changed_at_us`, as [`CHANGE_HASH_SQL`] computes it in Postgres.
pub fn change_hash(id: i64, txid: u64, version: i64, changed_at_us: i64) -> u64 {
    let text = format!("{id}:{txid}:{version}:{changed_at_us}");
    let digest = Md5::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// [`change_hash`] of the `sync.changes` row aliased `c`, as a signed bigint (Postgres has no
/// unsigned one; the bits are the same). `changed_at` in microseconds is computed exactly as
/// the pull reads it.
pub const CHANGE_HASH_SQL: &str = "('x' || substr(md5(concat_ws(':', c.id, c.txid, c.version,
        (extract(epoch from c.changed_at) * 1000000)::bigint)), 1, 16))::bit(64)::bigint";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_first_eight_bytes_of_the_md5_of_the_fields() {
        // md5("1:2:3:4") = 3d66ff22fd43e3b37d3a4a06322cc636 (computed with `md5sum`).
        assert_eq!(change_hash(1, 2, 3, 4), 0x3d66_ff22_fd43_e3b3);
    }

    #[test]
    fn digests_of_the_same_changes_agree_in_any_grouping_and_differ_by_any_field() {
        let mut whole = Digest64::default();
        let (mut first, mut second) = (Digest64::default(), Digest64::default());
        for (i, part) in [(1, &mut first), (2, &mut second)] {
            whole.add(i, 10, 100 + i, 1_000);
            part.add(i, 10, 100 + i, 1_000);
        }
        first.merge(second);
        assert_eq!(first, whole);

        let mut moved = Digest64::default();
        moved.add(1, 10, 101, 1_000);
        moved.add(2, 10, 102, 1_001);
        assert_ne!(
            moved, whole,
            "a change made at another time is another change"
        );
    }
}
