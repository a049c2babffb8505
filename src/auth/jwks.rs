//! The JWKS cache: the issuer's RS256 public keys by `kid`, held in memory and (for a remote
//! issuer) persisted to `$DATA_DIR/jwks.json` so a restarted instance verifies offline at once.
//!
//! # Layout
//! - [`KeySet`] ([`super::key_set`]): an immutable snapshot of usable keys; swapped whole on
//!   every successful fetch.
//! - [`Jwks`]: the current snapshot, the fetch statistics, and the fetch gate. Every fetch
//!   (start-up, background, unknown `kid`) goes through the gate, so there is at most one in
//!   flight, and refetches caused by unknown kids are throttled.
//! - Fetching and persistence live in [`super::jwks_fetch`]; the background refresher in
//!   [`super::refresher`].
//!
//! A failed fetch never empties the cache: the last good set keeps verifying while the
//! issuer is down. The `epoch` is bumped whenever a `kid` disappears from the set, which
//! invalidates cached verifications made with a withdrawn key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use super::jwks_fetch::Remote;
pub(crate) use super::key_set::KeySet;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) last_error: Option<String>,
    pub(crate) fetches: u64,
    pub(crate) failures: u64,
    pub(crate) loaded_from_disk: bool,
}

/// State of the fetch gate (a tokio mutex, so a fetch is awaited while held).
#[derive(Default)]
pub(crate) struct Gate {
    /// When an unknown `kid` last caused a fetch.
    pub(crate) last_unknown_kid_fetch: Option<Instant>,
}

pub(crate) struct Jwks {
    current: RwLock<Arc<KeySet>>,
    epoch: AtomicU64,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) gate: tokio::sync::Mutex<Gate>,
    /// `None` for the dev issuer (keys seeded, never fetched).
    pub(crate) remote: Option<Remote>,
}

impl Jwks {
    pub(crate) fn new(initial: KeySet, remote: Option<Remote>) -> Self {
        Self {
            current: RwLock::new(Arc::new(initial)),
            epoch: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
            gate: tokio::sync::Mutex::new(Gate::default()),
            remote,
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Incremented whenever a key is withdrawn; verifications cached under an older epoch
    /// are no longer trusted.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Installs a freshly fetched set. An empty set never replaces a non-empty one.
    pub(crate) fn replace(&self, next: KeySet) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if next.keys.is_empty() && !current.keys.is_empty() {
            return;
        }
        let added = next
            .keys
            .keys()
            .filter(|k| !current.keys.contains_key(*k))
            .count();
        let removed = current
            .keys
            .keys()
            .filter(|k| !next.keys.contains_key(*k))
            .count();
        if removed > 0 {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        if added > 0 || removed > 0 {
            tracing::info!(
                keys.added = added,
                keys.removed = removed,
                keys.count = next.keys.len(),
                "JWKS changed"
            );
        }
        *current = Arc::new(next);
    }

    pub(crate) fn record_fetch(&self, result: Result<(), String>) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.fetches += 1;
        match result {
            Ok(()) => stats.last_error = None,
            Err(e) => {
                stats.failures += 1;
                stats.last_error = Some(e);
            }
        }
    }
}
