//! How many decoded keys the metrics may hold between reads, and what the
//! holding saved. Each metric keeps its own keys ([`super::rows::MetricRows`]);
//! this is the budget they share (`--labels.cache-size`), so a host full of
//! big maps cannot grow the exporter without limit: past it, new keys are
//! decoded on every read instead of once.
//!
//! A held key stays as long as its map holds it, and goes at the end of
//! the first read that no longer finds it. Nothing is evicted while it is
//! still read: an LRU sized below the map's key count misses on every key
//! of every read, costing more than no cache at all. Keys whose decoders'
//! answers can change (a cgroup path, an interface name, a kernel symbol)
//! are decoded again once they are older than the refresh interval.

use std::time::Duration;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Keys whose labels were held from an earlier read.
    pub hits: u64,
    /// Keys decoded: new ones, refreshed ones, and those not held.
    pub misses: u64,
    /// Held keys forgotten because their map no longer held them.
    pub evictions: u64,
    /// Keys decoded again because they were older than the refresh
    /// interval (counted as misses too).
    pub refreshes: u64,
}

pub struct LabelCache {
    capacity: usize,
    held: usize,
    refresh: Duration,
    pub stats: CacheStats,
}

impl LabelCache {
    /// Room for `capacity` keys in all; 0 holds none.
    pub fn new(capacity: usize, refresh: Duration) -> Self {
        LabelCache {
            capacity,
            held: 0,
            refresh,
            stats: CacheStats::default(),
        }
    }

    /// Keys held by every metric.
    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// How long a key whose decoders' answers can change is trusted.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// Takes room for one more key, if there is some.
    pub(super) fn admit(&mut self) -> bool {
        let room = self.held < self.capacity;
        self.held += usize::from(room);
        room
    }

    /// Gives back the room of `keys` keys.
    pub(super) fn release(&mut self, keys: usize) {
        self.held = self.held.saturating_sub(keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_up_to_the_capacity_and_given_back() {
        let mut cache = LabelCache::new(2, Duration::from_secs(60));
        assert!(cache.admit() && cache.admit());
        assert!(!cache.admit(), "full at its capacity");
        cache.release(1);
        assert!(cache.admit());
        assert_eq!(cache.len(), 2);
        assert!(
            !LabelCache::new(0, Duration::ZERO).admit(),
            "size 0 holds nothing"
        );
    }
}
