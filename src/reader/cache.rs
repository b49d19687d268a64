//! Decoded label sets, cached by raw map key, so a read cycle decodes only
//! the keys it has not seen: string building and table lookups cost far
//! more than a hash lookup, and most keys repeat from one read to the next.
//!
//! Unlike ebpf_exporter's per-decoder caches, this one is bounded (least
//! recently used entries go first, so a key churn of short-lived pids or
//! connections cannot grow it without limit) and entries whose decoders'
//! answers can change (a cgroup path, an interface name, a kernel symbol)
//! are decoded again once they are older than the refresh interval.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::decoders::DecodeError;

/// A decoded key: every key label's value, or why the row is dropped (and,
/// for an error, which decoder failed).
pub type Decoded = Result<Vec<String>, (String, DecodeError)>;

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
    /// `None` when caching is off (size 0).
    entries: Option<LruCache<Vec<u8>, Entry>>,
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
            entries: NonZeroUsize::new(capacity).map(LruCache::new),
            refresh,
            scratch: Vec::new(),
            stats: CacheStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, LruCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label set of `key` in metric `metric`, decoded by `decode` on a
    /// miss. `changes` says whether the answer may change over time.
    pub fn get_or_decode(
        &mut self,
        metric: u64,
        key: &[u8],
        changes: bool,
        decode: impl FnOnce() -> Decoded,
    ) -> Decoded {
        let Some(entries) = self.entries.as_mut() else {
            self.stats.misses += 1;
            return decode();
        };
        self.scratch.clear();
        self.scratch.extend_from_slice(&metric.to_ne_bytes());
        self.scratch.extend_from_slice(key);
        let now = Instant::now();
        if let Some(entry) = entries.get(self.scratch.as_slice()) {
            if entry.expires.map_or(true, |at| now < at) {
                self.stats.hits += 1;
                return entry.decoded.clone();
            }
            self.stats.refreshes += 1;
        }
        self.stats.misses += 1;
        let decoded = decode();
        let entry = Entry {
            decoded: decoded.clone(),
            expires: changes.then(|| now + self.refresh),
        };
        if let Some((old, _)) = entries.push(self.scratch.clone(), entry) {
            if old != self.scratch {
                self.stats.evictions += 1;
            }
        }
        decoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(value: &str) -> Decoded {
        Ok(vec![value.to_string()])
    }

    #[test]
    fn repeated_keys_are_decoded_once() {
        let mut cache = LabelCache::new(8, Duration::from_secs(60));
        let mut calls = 0;
        for _ in 0..3 {
            let got = cache.get_or_decode(1, b"k", false, || {
                calls += 1;
                decoded("v")
            });
            assert_eq!(got, decoded("v"));
        }
        assert_eq!(calls, 1);
        assert_eq!((cache.stats.hits, cache.stats.misses), (2, 1));
        // The same key bytes in another metric are another entry.
        let _ = cache.get_or_decode(2, b"k", false, || decoded("w"));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut cache = LabelCache::new(2, Duration::from_secs(60));
        let _ = cache.get_or_decode(1, b"a", false, || decoded("a"));
        let _ = cache.get_or_decode(1, b"b", false, || decoded("b"));
        let _ = cache.get_or_decode(1, b"a", false, || decoded("a")); // a is now newer than b
        let _ = cache.get_or_decode(1, b"c", false, || decoded("c")); // evicts b
        assert_eq!((cache.len(), cache.stats.evictions), (2, 1));
        let mut decoded_again = false;
        let _ = cache.get_or_decode(1, b"a", false, || {
            decoded_again = true;
            decoded("a")
        });
        assert!(!decoded_again, "a was used more recently than b and must stay");
    }

    #[test]
    fn answers_that_can_change_are_refreshed_after_the_interval() {
        let mut cache = LabelCache::new(8, Duration::ZERO);
        let _ = cache.get_or_decode(1, b"k", true, || decoded("old"));
        let got = cache.get_or_decode(1, b"k", true, || decoded("new"));
        assert_eq!(got, decoded("new"));
        assert_eq!(cache.stats.refreshes, 1);
        // Stable answers are kept whatever the interval.
        let _ = cache.get_or_decode(1, b"s", false, || decoded("stable"));
        assert_eq!(
            cache.get_or_decode(1, b"s", false, || decoded("other")),
            decoded("stable")
        );
    }

    #[test]
    fn size_zero_turns_caching_off() {
        let mut cache = LabelCache::new(0, Duration::from_secs(60));
        let _ = cache.get_or_decode(1, b"k", false, || decoded("a"));
        assert_eq!(cache.get_or_decode(1, b"k", false, || decoded("b")), decoded("b"));
        assert_eq!((cache.len(), cache.stats.hits, cache.stats.misses), (0, 0, 2));
    }

    #[test]
    fn errors_are_cached_with_their_decoder() {
        let mut cache = LabelCache::new(8, Duration::from_secs(60));
        let error = || Err(("uint".to_string(), DecodeError::Invalid("bad".into())));
        let _ = cache.get_or_decode(1, b"k", false, error);
        assert_eq!(cache.get_or_decode(1, b"k", false, || decoded("x")), error());
    }
}
