//! The read cache: rendered responses of hot reads (list pages, single rows), keyed by
//! owner, table, route and query, and invalidated exactly when the replica changes.
//!
//! # Invalidation
//! Every key carries the **generation** of its `(table, owner)` pair at the moment the read
//! began. When the applier changes rows of that pair ([`ChangeEvent::Rows`]), the pair gets a
//! fresh generation, so every older entry becomes unreachable (moka evicts it in time). A
//! read that raced with the change stored its result under the old generation, so it is
//! never served afterwards. A resync ([`ChangeEvent::Everything`]) or a lagging subscriber
//! moves every pair to a new generation at once.
//!
//! The generations of at most [`MAX_PAIRS`] pairs are remembered (an edge sees changes of
//! every user of the service, not only its own region's). Past that the map starts over: a
//! fresh base generation for every pair, as a resync does. Cached entries then miss once,
//! which is correct and cheap next to an unbounded map.
//!
//! Writes made through this edge also bump their pair once the replica has applied them,
//! so the writer's next read misses even before the applier's event is processed. Entries
//! remember the replica watermark they were read at: a read carrying a sync token only
//! takes an entry read past that token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auto_order_sync::handle::ChangeEvent;
use axum::body::Bytes;
use axum::http::HeaderValue;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

/// Bytes of cached responses kept at most (bodies, etags and keys). Invalidated entries are
/// unreachable but stay until evicted, so the bound is in bytes, not entries: a soak run
/// showed a count bound letting memory creep up with page-sized entries.
const MAX_BYTES: u64 = 32 * 1024 * 1024;
/// Bytes an entry costs beyond its strings (the structs, the `Arc`, moka's own node).
const ENTRY_OVERHEAD: usize = 160;
/// A safety net only: invalidation is exact, so this bounds memory held by cold entries.
const TIME_TO_IDLE: Duration = Duration::from_secs(600);
/// `(table, owner)` pairs whose generation is remembered (about 100 bytes each).
const MAX_PAIRS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    owner: String,
    generation: u64,
    /// Table, route and normalised query, e.g. `products|list|limit=20&q=milk`.
    what: String,
}

/// A rendered 200 response.
#[derive(Debug)]
pub struct CachedRead {
    pub body: Bytes,
    /// The weak entity tag, ready to send.
    pub etag: HeaderValue,
    /// The replica's watermark before the read: it reflects every txid below this.
    pub watermark: u64,
}

pub struct ReadCache {
    entries: moka::sync::Cache<CacheKey, Arc<CachedRead>>,
    generations: Mutex<Generations>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Generations are drawn from one counter, so a value is never reused.
#[derive(Default)]
struct Generations {
    next: u64,
    /// The generation of every pair not in `pairs`.
    base: u64,
    /// table → owner → generation (nested, so a lookup borrows `&str`s, allocating nothing).
    pairs: HashMap<String, HashMap<String, u64>>,
    /// Pairs in `pairs`, and how many it may hold before it starts over.
    len: usize,
    max_len: usize,
}

impl Generations {
    /// Every pair to a fresh generation.
    fn start_over(&mut self) {
        self.base = self.next;
        self.next += 1;
        self.pairs.clear();
        self.len = 0;
    }
}

impl Default for ReadCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadCache {
    pub fn new() -> ReadCache {
        Self::with_pair_limit(MAX_PAIRS)
    }

    fn with_pair_limit(max_pairs: usize) -> ReadCache {
        ReadCache {
            entries: moka::sync::Cache::builder()
                .weigher(|key: &CacheKey, read: &Arc<CachedRead>| {
                    let bytes =
                        key.owner.len() + key.what.len() + read.body.len() + read.etag.len();
                    u32::try_from(bytes + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .max_capacity(MAX_BYTES)
                .time_to_idle(TIME_TO_IDLE)
                .build(),
            generations: Mutex::new(Generations {
                next: 1,
                max_len: max_pairs,
                ..Generations::default()
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The key of a read of `table` by `owner`, at the pair's current generation. Take it
    /// before reading the replica.
    pub fn key(&self, table: &str, owner: &str, what: String) -> CacheKey {
        let generations = self.lock();
        let generation = generations
            .pairs
            .get(table)
            .and_then(|owners| owners.get(owner))
            .copied()
            .unwrap_or(generations.base);
        CacheKey {
            owner: owner.to_owned(),
            generation,
            what: format!("{table}|{what}"),
        }
    }

    /// A cached response, if there is one recent enough for `token` (a sync token the
    /// reader must see: the entry must have been read past it).
    pub fn get(&self, key: &CacheKey, token: Option<u64>) -> Option<Arc<CachedRead>> {
        let hit = self
            .entries
            .get(key)
            .filter(|e| token.is_none_or(|t| e.watermark > t));
        match hit {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        hit
    }

    pub fn insert(&self, key: CacheKey, value: Arc<CachedRead>) {
        self.entries.insert(key, value);
    }

    /// Rows of `table` owned by `owner` changed: forget their cached reads.
    pub fn invalidate(&self, table: &str, owner: &str) {
        let mut generations = self.lock();
        let generation = generations.next;
        generations.next += 1;
        if let Some(known) = generations
            .pairs
            .get_mut(table)
            .and_then(|owners| owners.get_mut(owner))
        {
            *known = generation;
            return;
        }
        if generations.len >= generations.max_len {
            // The fresh base covers this pair too.
            generations.start_over();
            return;
        }
        generations.len += 1;
        generations
            .pairs
            .entry(table.to_owned())
            .or_default()
            .insert(owner.to_owned(), generation);
    }

    /// Everything may have changed (a resync, or missed events).
    pub fn invalidate_all(&self) {
        self.lock().start_over();
        self.entries.invalidate_all();
    }

    /// Reads answered from the cache, for metrics.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Cacheable reads that had to go to the replica, for metrics.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Applies the sync engine's change events to `cache` until `stop`.
pub async fn run_invalidation(
    cache: Arc<ReadCache>,
    mut events: broadcast::Receiver<Arc<ChangeEvent>>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(event) => match event.as_ref() {
                ChangeEvent::Rows(pairs) => {
                    for (table, owner) in pairs {
                        cache.invalidate(table, owner);
                    }
                }
                ChangeEvent::Everything => cache.invalidate_all(),
            },
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "cache invalidation lagged; clearing the cache");
                cache.invalidate_all();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Arc<CachedRead> {
        Arc::new(CachedRead {
            body: Bytes::from_static(b"{}"),
            etag: HeaderValue::from_static("W/\"x\""),
            watermark: 10,
        })
    }

    #[test]
    fn a_change_to_the_owners_table_makes_older_entries_unreachable() {
        let cache = ReadCache::new();
        let key = cache.key("products", "alice", "list".into());
        cache.insert(key.clone(), entry());
        let other = cache.key("orders", "alice", "list".into());
        cache.insert(other.clone(), entry());

        cache.invalidate("products", "alice");

        assert!(
            cache
                .get(&cache.key("products", "alice", "list".into()), None)
                .is_none()
        );
        assert!(cache.get(&other, None).is_some(), "orders were not touched");
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
    }

    #[test]
    fn everything_clears_every_pair_and_a_token_past_the_entry_misses() {
        let cache = ReadCache::new();
        let key = cache.key("products", "bob", "get|1".into());
        cache.insert(key.clone(), entry());
        assert!(cache.get(&key, Some(9)).is_some());
        assert!(cache.get(&key, Some(10)).is_none());

        cache.invalidate_all();

        assert_ne!(cache.key("products", "bob", "get|1".into()), key);
    }

    #[test]
    fn past_the_pair_limit_every_pair_starts_over_and_invalidation_stays_exact() {
        let cache = ReadCache::with_pair_limit(2);
        let carol = || cache.key("products", "carol", "list".into());
        cache.insert(carol(), entry());
        cache.invalidate("products", "alice");
        cache.invalidate("products", "bob");
        cache.invalidate("products", "alice");
        assert!(
            cache.get(&carol(), None).is_some(),
            "two pairs: still within the limit"
        );

        cache.invalidate("orders", "dave");

        assert!(cache.lock().pairs.is_empty(), "the map started over");
        assert!(
            cache.get(&carol(), None).is_none(),
            "entries from before the start-over miss"
        );
        cache.insert(carol(), entry());
        assert!(cache.get(&carol(), None).is_some());
        cache.invalidate("products", "carol");
        assert!(
            cache.get(&carol(), None).is_none(),
            "a change after the start-over still invalidates"
        );
    }
}
