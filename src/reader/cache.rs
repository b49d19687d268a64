//! Decoded label sets, cached by raw map key, so a read cycle decodes only
//! the keys it has not seen: string building and table lookups cost far
//! more than a hash lookup, and most keys repeat from one read to the next.
//!
//! Unlike ebpf_exporter's per-decoder caches, this one is bounded (least
//! recently used entries go first, so a key churn of short-lived pids or
//! connections cannot grow it without limit) and entries whose decoders'
//! answers can change (a cgroup path, an interface name, a kernel symbol)
//! are decoded again once they are older than the refresh interval.
//!
//! Recency is kept in two generations rather than a linked list: a hit in
//! the current generation is one hash lookup, where moving a list node costs
//! several cache misses (measured: a linked-list LRU lookup was as slow as
//! decoding `uint` + `syscall`). When the current generation fills half the
//! capacity it becomes the previous one and the old previous one is
//! evicted; a hit in the previous generation moves the entry back. So
//! entries not used for a whole generation go first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::decoders::DecodeError;

/// A decoded key: the exported key labels' values and, for a histogram, the
/// bucket index (else 0); or why the row is dropped (and, for an error,
/// which decoder failed). Shared, so a hit costs no allocation.
pub type Decoded = Result<(Arc<[String]>, u64), (String, DecodeError)>;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Entries decoded again because they were older than the refresh
    /// interval (counted as misses too).
    pub refreshes: u64,
}

struct Entry {
    decoded: Decoded,
    /// When the entry must be decoded again; `None` for keys whose decoders
    /// always give the same answer.
    expires: Option<Instant>,
}

pub struct LabelCache {
    /// Entries per generation: half the capacity; 0 turns caching off.
    generation: usize,
    current: HashMap<Vec<u8>, Entry>,
    previous: HashMap<Vec<u8>, Entry>,
    refresh: Duration,
    /// Lookup key buffer (metric id, then the map key), reused so a hit
    /// allocates nothing for the key.
    scratch: Vec<u8>,
    pub stats: CacheStats,
}

impl LabelCache {
    /// A cache of at most `capacity` label sets; 0 turns caching off.
    pub fn new(capacity: usize, refresh: Duration) -> Self {
        LabelCache {
            generation: capacity.div_ceil(2),
            current: HashMap::new(),
            previous: HashMap::new(),
            refresh,
            scratch: Vec::new(),
            stats: CacheStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label set of `key` in metric `metric`, decoded by `decode` on a
    /// miss. `changes` says whether the answer may change over time; `now`
    /// is taken once per read, not per key.
    pub fn get_or_decode(
        &mut self,
        metric: u64,
        key: &[u8],
        changes: bool,
        now: Instant,
        decode: impl FnOnce() -> Decoded,
    ) -> Decoded {
        if self.generation == 0 {
            self.stats.misses += 1;
            return decode();
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&metric.to_ne_bytes());
        self.scratch.extend_from_slice(key);
        let fresh = |entry: &Entry| entry.expires.is_none_or(|at| now < at);
        let stale = if let Some(entry) = self.current.get(self.scratch.as_slice()) {
            if fresh(entry) {
                self.stats.hits += 1;
                return entry.decoded.clone();
            }
            true
        } else if let Some((k, entry)) = self.previous.remove_entry(self.scratch.as_slice()) {
            if fresh(&entry) {
                self.stats.hits += 1;
                let decoded = entry.decoded.clone();
                self.insert(k, entry);
                return decoded;
            }
            true
        } else {
            false
        };
        self.stats.refreshes += u64::from(stale);
        self.stats.misses += 1;
        let decoded = decode();
        let entry = Entry {
            decoded: decoded.clone(),
            expires: changes.then(|| now + self.refresh),
        };
        self.insert(self.scratch.clone(), entry);
        decoded
    }

    /// Drops every entry of these metrics (their config was replaced or
    /// removed), so reloads do not fill the cache with dead entries.
    pub fn forget(&mut self, metrics: &[u64]) {
        let dead = |key: &Vec<u8>| {
            key.get(..8)
                .and_then(|id| id.try_into().ok())
                .is_some_and(|id| metrics.contains(&u64::from_ne_bytes(id)))
        };
        self.current.retain(|key, _| !dead(key));
        self.previous.retain(|key, _| !dead(key));
    }

    fn insert(&mut self, key: Vec<u8>, entry: Entry) {
        if self.current.len() >= self.generation && !self.current.contains_key(&key) {
            self.stats.evictions += self.previous.len() as u64;
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(value: &str) -> Decoded {
        Ok((Arc::from([value.to_string()]), 0))
    }

    #[test]
    fn repeated_keys_are_decoded_once() {
        let mut cache = LabelCache::new(8, Duration::from_secs(60));
        let mut calls = 0;
        for _ in 0..3 {
            let got = cache.get_or_decode(1, b"k", false, Instant::now(), || {
                calls += 1;
                decoded("v")
            });
            assert_eq!(got, decoded("v"));
        }
        assert_eq!(calls, 1);
        assert_eq!((cache.stats.hits, cache.stats.misses), (2, 1));
        // The same key bytes in another metric are another entry.
        let _ = cache.get_or_decode(2, b"k", false, Instant::now(), || decoded("w"));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut cache = LabelCache::new(2, Duration::from_secs(60));
        let _ = cache.get_or_decode(1, b"a", false, Instant::now(), || decoded("a"));
        let _ = cache.get_or_decode(1, b"b", false, Instant::now(), || decoded("b"));
        let _ = cache.get_or_decode(1, b"a", false, Instant::now(), || decoded("a")); // a is now newer than b
        let _ = cache.get_or_decode(1, b"c", false, Instant::now(), || decoded("c")); // evicts b
        assert_eq!((cache.len(), cache.stats.evictions), (2, 1));
        let mut decoded_again = false;
        let _ = cache.get_or_decode(1, b"a", false, Instant::now(), || {
            decoded_again = true;
            decoded("a")
        });
        assert!(!decoded_again, "a was used more recently than b and must stay");
    }

    #[test]
    fn answers_that_can_change_are_refreshed_after_the_interval() {
        let mut cache = LabelCache::new(8, Duration::ZERO);
        let _ = cache.get_or_decode(1, b"k", true, Instant::now(), || decoded("old"));
        let got = cache.get_or_decode(1, b"k", true, Instant::now(), || decoded("new"));
        assert_eq!(got, decoded("new"));
        assert_eq!(cache.stats.refreshes, 1);
        // Stable answers are kept whatever the interval.
        let _ = cache.get_or_decode(1, b"s", false, Instant::now(), || decoded("stable"));
        assert_eq!(
            cache.get_or_decode(1, b"s", false, Instant::now(), || decoded("other")),
            decoded("stable")
        );
    }

    #[test]
    fn forgotten_metrics_leave_the_cache() {
        let mut cache = LabelCache::new(8, Duration::from_secs(60));
        let _ = cache.get_or_decode(1, b"a", false, Instant::now(), || decoded("a"));
        let _ = cache.get_or_decode(2, b"a", false, Instant::now(), || decoded("b"));
        cache.forget(&[1]);
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.get_or_decode(2, b"a", false, Instant::now(), || decoded("x")),
            decoded("b")
        );
    }

    #[test]
    fn size_zero_turns_caching_off() {
        let mut cache = LabelCache::new(0, Duration::from_secs(60));
        let _ = cache.get_or_decode(1, b"k", false, Instant::now(), || decoded("a"));
        assert_eq!(
            cache.get_or_decode(1, b"k", false, Instant::now(), || decoded("b")),
            decoded("b")
        );
        assert_eq!((cache.len(), cache.stats.hits, cache.stats.misses), (0, 0, 2));
    }

    #[test]
    fn errors_are_cached_with_their_decoder() {
        let mut cache = LabelCache::new(8, Duration::from_secs(60));
        let error = || Err(("uint".to_string(), DecodeError::Invalid("bad".into())));
        let _ = cache.get_or_decode(1, b"k", false, Instant::now(), error);
        assert_eq!(
            cache.get_or_decode(1, b"k", false, Instant::now(), || decoded("x")),
            error()
        );
    }
}
