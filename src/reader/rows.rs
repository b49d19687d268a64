//! Map entries → one metric family: split each key into labels, run the
//! decoder chains, sum or split per-CPU values, and sum rows whose decoded
//! labels are equal (two keys may decode to the same label set, such as two
//! unknown syscall numbers under a `static_map` without `allow_unknown`).
//!
//! A metric keeps what it learnt from one read to the next ([`MetricRows`]):
//! every key of the last read and the series it feeds, so a read decodes
//! only keys it has not seen, finds each key at its place in the last read
//! (or else by its raw bytes), adds its values into a flat table indexed by
//! series, and refills the samples of a family no longer published, which
//! keep their label sets. A
//! key that leaves the map is forgotten at the end of the read that no
//! longer finds it, and a series without keys leaves `/metrics` with it:
//! what is kept is what the map holds, so nothing needs evicting while the
//! map is read, and a million-key map is decoded once, not every read.
//!
//! The series limit (`series_limit`, `--metrics.series-limit`) caps the
//! series of a family: a label set past it is left out and counted once
//! for as long as its keys stay in the map, and comes in when room frees.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use foldhash::fast::RandomState;

use crate::config::{HistogramSpec, LabelSpec, MetricSpec, MetricType};
use crate::decoders::{decode_chain, DecodeError};
use crate::metrics::{Family, Histogram, MetricKind, Sample, Value};

use super::cache::LabelCache;
use super::maps::MapDump;

/// Why rows were left out of a family.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RowStats {
    /// Rows a decoder could not decode, by the decoder that failed.
    pub decode_errors: BTreeMap<String, u64>,
    /// Rows an allow-list (`regexp`) dropped on purpose.
    pub skipped: u64,
}

impl RowStats {
    fn error(&mut self, decoder: &str) {
        *self.decode_errors.entry(decoder.to_string()).or_default() += 1;
    }
}

/// A map key as a metric holds it: inline up to 16 bytes (a pid, an id, a
/// small struct: most keys), so a lookup compares bytes in the table
/// itself instead of following a pointer to them, a cache miss per key of
/// a big map.
enum RawKey {
    Inline(u8, [u8; 16]),
    Heap(Box<[u8]>),
}

impl RawKey {
    fn new(key: &[u8]) -> RawKey {
        if key.len() > 16 {
            return RawKey::Heap(key.into());
        }
        let mut bytes = [0; 16];
        bytes[..key.len()].copy_from_slice(key);
        RawKey::Inline(key.len() as u8, bytes)
    }

    fn bytes(&self) -> &[u8] {
        match self {
            RawKey::Inline(len, bytes) => &bytes[..*len as usize],
            RawKey::Heap(bytes) => bytes,
        }
    }

    /// Whether this is `key`: for an inline key a compare of two 16-byte
    /// words, not a call to memcmp.
    fn is(&self, key: &[u8]) -> bool {
        match self {
            RawKey::Inline(len, bytes) => {
                if key.len() != *len as usize {
                    return false;
                }
                let mut other = [0; 16];
                other[..key.len()].copy_from_slice(key);
                other == *bytes
            }
            RawKey::Heap(bytes) => **bytes == *key,
        }
    }
}

// Hashed and compared as the bytes, so the table is looked up by `&[u8]`.
impl std::hash::Hash for RawKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl PartialEq for RawKey {
    fn eq(&self, other: &RawKey) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for RawKey {}

impl std::borrow::Borrow<[u8]> for RawKey {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

/// What one key decoded to.
#[derive(Debug, Clone)]
enum Outcome {
    /// Feeds series `base` (and, split by CPU, the `width - 1` after it),
    /// at `slot` of its row of counts: 0 for a counter or gauge, the
    /// bucket's index for a histogram.
    Series { base: u32, slot: u32 },
    /// Its label set is past the series limit.
    Refused(Arc<[String]>),
    /// An allow-list left it out.
    Skip,
    /// This decoder could not decode it.
    Error(Arc<str>),
}

struct KeyEntry {
    key: RawKey,
    /// Its place in the dump of the read that last found it.
    place: u32,
    outcome: Outcome,
    /// When the key must be decoded again; `None` for keys whose decoders
    /// always give the same answer.
    expires: Option<Instant>,
    /// The read that last found the key.
    seen: u64,
}

/// One label set with keys in the map.
#[derive(Default)]
struct Series {
    labels: Arc<[String]>,
    /// Split by CPU: the label set with each CPU's name after it (`None`
    /// where the CPU's label did not decode).
    per_cpu: Vec<Option<Arc<[String]>>>,
    /// Keys that feed it; it goes with the last.
    keys: u32,
}

/// The label sets of a metric, each with its index into the count table.
#[derive(Default)]
struct SeriesSet {
    index: HashMap<Arc<[String]>, u32, RandomState>,
    series: Vec<Series>,
    /// Indices of series that went, for the next new one.
    free: Vec<u32>,
    /// Series that went since the order was last brought up to date: their
    /// places are taken again only after, so `order` never names a series
    /// that is not the one it sorted.
    gone: Vec<u32>,
    /// Live series in label order, brought up to date before a build.
    order: Vec<u32>,
    /// Series that came since: sorted on their own and merged in, so a
    /// read in which a few series of a million come and go costs a pass
    /// over the order, not a sort of it.
    added: Vec<u32>,
    /// Times `order` was rebuilt: families built in one epoch have the
    /// same samples in the same places.
    epoch: u64,
    /// Label sets left out by the limit, with their keys.
    refused: HashMap<Arc<[String]>, u32, RandomState>,
    /// Label sets (not counting a CPU split) the family may hold; 0: any.
    limit: usize,
    /// Label sets left out so far, each counted once while it stays.
    dropped: u64,
}

impl SeriesSet {
    fn has_room(&self) -> bool {
        self.limit == 0 || self.index.len() < self.limit
    }

    /// One more key of `labels`: its series, made if new and the limit
    /// allows.
    fn acquire(&mut self, labels: Arc<[String]>, cpus: Option<&[Option<String>]>, slot: u32) -> Outcome {
        if let Some(&base) = self.index.get(&labels) {
            self.series[base as usize].keys += 1;
            return Outcome::Series { base, slot };
        }
        if !self.has_room() {
            let keys = self.refused.entry(Arc::clone(&labels)).or_insert(0);
            if *keys == 0 {
                self.dropped += 1;
            }
            *keys += 1;
            return Outcome::Refused(labels);
        }
        let per_cpu = cpus.map_or_else(Vec::new, |names| {
            names
                .iter()
                .map(|name| {
                    name.as_ref()
                        .map(|n| labels.iter().chain([n]).cloned().collect::<Arc<[String]>>())
                })
                .collect()
        });
        let series = Series {
            labels: Arc::clone(&labels),
            per_cpu,
            keys: 1,
        };
        let base = put_in(&mut self.series, &mut self.free, series);
        self.index.insert(labels, base);
        self.added.push(base);
        Outcome::Series { base, slot }
    }

    /// One key less for what `outcome` counted in.
    fn release(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Series { base, .. } => {
                let series = &mut self.series[*base as usize];
                series.keys -= 1;
                if series.keys == 0 {
                    let gone = std::mem::take(series);
                    self.index.remove(&gone.labels);
                    self.gone.push(*base);
                }
            }
            Outcome::Refused(labels) => {
                if let Some(keys) = self.refused.get_mut(labels) {
                    *keys -= 1;
                    if *keys == 0 {
                        self.refused.remove(labels);
                    }
                }
            }
            Outcome::Skip | Outcome::Error(_) => {}
        }
    }

    /// Brings the label order up to date with the series that came and
    /// went since.
    fn sort(&mut self) {
        if self.added.is_empty() && self.gone.is_empty() {
            return;
        }
        let series = &self.series;
        let live = |base: &u32| series[*base as usize].keys > 0;
        let labels = |base: &u32| &series[*base as usize].labels;
        self.order.retain(live);
        let mut added = std::mem::take(&mut self.added);
        added.retain(live);
        added.sort_unstable_by(|a, b| labels(a).cmp(labels(b)));
        if !added.is_empty() {
            let mut merged = Vec::with_capacity(self.order.len() + added.len());
            let mut rest = &self.order[..];
            for base in added.drain(..) {
                let before = rest.partition_point(|b| labels(b) < labels(&base));
                merged.extend_from_slice(&rest[..before]);
                merged.push(base);
                rest = &rest[before..];
            }
            merged.extend_from_slice(rest);
            self.order = merged;
        }
        self.added = added;
        self.free.append(&mut self.gone);
        self.epoch += 1;
    }
}

/// A metric's keys and series across reads.
///
/// A map that did not change gives its keys in the same order as the read
/// before (a hash map's are in bucket order), so each key is first checked
/// against the entry that came next in the last read: a read of a steady
/// map walks the entries in order instead of hashing every key and landing
/// at random in a table far bigger than the caches. Where keys came or
/// went, the first key looked up by its bytes says where to carry on.
pub struct MetricRows {
    /// Raw key → its entry in `entries`.
    keys: HashMap<RawKey, u32, RandomState>,
    /// Held keys; `None` where one went, for the next new one.
    entries: Vec<Option<KeyEntry>>,
    /// Indices of `entries` that went.
    free: Vec<u32>,
    /// The entry of each place of the last read's dump (`u32::MAX`: none).
    places: Vec<u32>,
    set: SeriesSet,
    /// Values per entry of the map the keys came from, once read.
    values_per_entry: Option<usize>,
    /// Reads so far.
    generation: u64,
    /// Counts of the current read: `width * stride` per series.
    counts: Vec<u64>,
    /// Whether the limit was reported.
    reported: bool,
    /// The family of the last read, and of the one before, each with the
    /// epoch of its order. The older one is published no more by the time
    /// of the next read, so its samples are refilled in place: with the
    /// same order, each keeps its label set and only its value changes,
    /// rather than a million samples made and dropped every read.
    built: [Option<(Arc<Family>, u64)>; 2],
}

impl MetricRows {
    /// `limit`: label sets the family may hold (not counting a CPU split);
    /// 0 for any number.
    pub fn new(limit: usize) -> Self {
        MetricRows {
            keys: HashMap::default(),
            entries: Vec::new(),
            free: Vec::new(),
            places: Vec::new(),
            set: SeriesSet {
                limit,
                ..Default::default()
            },
            values_per_entry: None,
            generation: 0,
            counts: Vec::new(),
            reported: false,
            built: [None, None],
        }
    }

    /// Keys held decoded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Label sets the series limit has left out so far.
    pub fn series_dropped(&self) -> u64 {
        self.set.dropped
    }

    /// Label sets the family may hold; 0: any number.
    pub fn series_limit(&self) -> usize {
        self.set.limit
    }

    /// Gives `cache` back the keys held, when the metric goes.
    pub fn forget(&mut self, cache: &mut LabelCache) {
        cache.release(self.keys.len());
        let limit = self.set.limit;
        *self = MetricRows::new(limit);
    }

    /// The family of `dump`, the map's entries now. Keys are held decoded
    /// while `cache` has room; `now` is taken once per read.
    pub fn family(
        &mut self,
        spec: &MetricSpec,
        dump: &MapDump,
        cache: &mut LabelCache,
        now: Instant,
    ) -> (Arc<Family>, RowStats) {
        if self.values_per_entry.is_some_and(|v| v != dump.values_per_entry) {
            self.forget(cache);
        }
        self.values_per_entry = Some(dump.values_per_entry);
        self.generation += 1;
        let generation = self.generation;
        let mut stats = RowStats::default();
        let histogram = match &spec.kind {
            MetricType::Histogram(h) => Some(h),
            _ => None,
        };
        // Per series: one count, or a histogram's buckets, overflow and sum.
        let stride = histogram.map_or(1, |h| h.buckets.len() + 2);
        // The CPU labels are the same for every row: decode them once.
        let cpu_names: Option<Vec<Option<String>>> = spec.cpu_label.as_ref().map(|label| {
            (0..dump.values_per_entry)
                .map(|cpu| decode_label(label, &(cpu as u64).to_le_bytes()[..label.size.min(8)]).ok())
                .collect()
        });
        let width = cpu_names.as_ref().map_or(1, Vec::len);
        let changes = spec.labels.iter().any(LabelSpec::answer_can_change);
        let expires = changes.then(|| now + cache.refresh());
        // Outcomes of keys not held (the cache was full): released after.
        let mut unheld = Vec::new();
        let mut seen = 0usize;
        let MetricRows {
            keys,
            entries,
            free,
            places,
            set,
            counts,
            ..
        } = self;
        counts.clear();
        let last = std::mem::take(places);
        places.reserve(dump.len());
        // Where in the last read's places the next key is looked for.
        let mut next = 0;
        for (key, values) in dump.entries() {
            let decode = |set: &mut SeriesSet| match decode_key(spec, key, histogram) {
                Ok((labels, slot)) => set.acquire(labels, cpu_names.as_deref(), slot),
                Err((_, DecodeError::Skip)) => Outcome::Skip,
                Err((decoder, DecodeError::Invalid(message))) => {
                    tracing::debug!(metric = %spec.name, "row dropped: {message}");
                    Outcome::Error(decoder.into())
                }
            };
            let expected = last.get(next).copied().filter(|&at| {
                entries
                    .get(at as usize)
                    .is_some_and(|e| e.as_ref().is_some_and(|e| e.key.is(key)))
            });
            let held = match expected {
                Some(at) => {
                    next += 1;
                    Some(at)
                }
                // Keys came or went before this one: carry on from where
                // this one was.
                None => keys.get(key).copied().inspect(|&at| {
                    if let Some(entry) = &entries[at as usize] {
                        next = entry.place as usize + 1;
                    }
                }),
            };
            let outcome = match held.and_then(|at| Some((at, entries[at as usize].as_mut()?))) {
                Some((_, entry)) if entry.seen == generation => {
                    // The kernel gave the same key twice (a hash map
                    // changing under a batch read): count it once.
                    places.push(u32::MAX);
                    continue;
                }
                Some((at, entry)) => {
                    entry.place = places.len() as u32;
                    places.push(at);
                    entry.seen = generation;
                    seen += 1;
                    let fresh = entry.expires.is_none_or(|at| now < at);
                    let retry = matches!(entry.outcome, Outcome::Refused(_)) && set.has_room();
                    if fresh && !retry {
                        cache.stats.hits += 1;
                    } else {
                        cache.stats.misses += 1;
                        cache.stats.refreshes += u64::from(!fresh);
                        let new = decode(set);
                        set.release(&std::mem::replace(&mut entry.outcome, new));
                        entry.expires = expires;
                    }
                    entry.outcome.clone()
                }
                None => {
                    cache.stats.misses += 1;
                    let outcome = decode(set);
                    if cache.admit() {
                        seen += 1;
                        let entry = KeyEntry {
                            key: RawKey::new(key),
                            place: places.len() as u32,
                            outcome: outcome.clone(),
                            expires,
                            seen: generation,
                        };
                        let at = put_in(entries, free, Some(entry));
                        keys.insert(RawKey::new(key), at);
                        places.push(at);
                    } else {
                        places.push(u32::MAX);
                        unheld.push(outcome.clone());
                    }
                    outcome
                }
            };
            match outcome {
                Outcome::Series { base, slot } => {
                    let table = Table {
                        width,
                        stride,
                        series: set.series.len(),
                    };
                    table.add(counts, base, slot, values, cpu_names.as_deref(), &mut stats);
                }
                Outcome::Refused(_) => {}
                Outcome::Skip => stats.skipped += 1,
                Outcome::Error(decoder) => stats.error(&decoder),
            }
        }
        // Keys the map no longer holds: forget them and their series.
        if seen < keys.len() {
            let before = keys.len();
            for (at, slot) in entries.iter_mut().enumerate() {
                if let Some(entry) = slot.take_if(|e| e.seen != generation) {
                    keys.remove(entry.key.bytes());
                    set.release(&entry.outcome);
                    free.push(at as u32);
                }
            }
            cache.stats.evictions += (before - keys.len()) as u64;
            cache.release(before - keys.len());
        }
        // Label sets the limit left out come in as soon as there is room,
        // in the read that made it rather than the next.
        if !set.refused.is_empty() && set.has_room() {
            for (key, values) in dump.entries() {
                let Some(entry) = keys.get(key).and_then(|&at| entries[at as usize].as_mut()) else {
                    continue;
                };
                if !matches!(entry.outcome, Outcome::Refused(_)) || !set.has_room() {
                    continue;
                }
                let Ok((labels, slot)) = decode_key(spec, key, histogram) else {
                    continue;
                };
                let new = set.acquire(labels, cpu_names.as_deref(), slot);
                set.release(&std::mem::replace(&mut entry.outcome, new.clone()));
                if let Outcome::Series { base, slot } = new {
                    let table = Table {
                        width,
                        stride,
                        series: set.series.len(),
                    };
                    table.add(counts, base, slot, values, cpu_names.as_deref(), &mut stats);
                }
            }
        }
        counts.resize(set.series.len() * width * stride, 0);
        let spare = self.built[1].take();
        let family = Arc::new(self.build(spec, width, stride, spare));
        self.built[1] = self.built[0].take();
        self.built[0] = Some((Arc::clone(&family), self.set.epoch));
        for outcome in &unheld {
            self.set.release(outcome);
        }
        if self.set.dropped > 0 && !self.reported {
            self.reported = true;
            tracing::warn!(
                metric = %spec.name,
                limit = self.set.limit,
                "the family reached its series limit: label sets past it are left out, and counted in \
                 bpf_exporter_series_dropped_total; raise series_limit in the config (or \
                 --metrics.series-limit) if the map is meant to be this large"
            );
        }
        (family, stats)
    }

    /// The samples of every live series, in label order, in the samples of
    /// `spare` (a family this metric built before) where nobody holds it.
    fn build(
        &mut self,
        spec: &MetricSpec,
        width: usize,
        stride: usize,
        spare: Option<(Arc<Family>, u64)>,
    ) -> Family {
        let label_names = spec.label_names();
        let MetricRows { set, counts, .. } = self;
        set.sort();
        let order = &set.order;
        let (mut samples, same_places) = match spare.and_then(|(f, epoch)| Some((Arc::into_inner(f)?, epoch)))
        {
            Some((family, epoch)) if epoch == set.epoch => (family.samples, true),
            Some((mut family, _)) => {
                family.samples.clear();
                (family.samples, false)
            }
            None => (Vec::with_capacity(order.len() * width), false),
        };
        let mut filled = 0;
        let mut put = |labels: &Arc<[String]>, row: &[u64]| {
            match samples.get_mut(filled) {
                Some(sample) if same_places => fill(&mut sample.value, &spec.kind, row),
                _ => {
                    samples.truncate(filled);
                    samples.push(Sample {
                        label_values: Arc::clone(labels),
                        value: value(&spec.kind, row),
                    });
                }
            }
            filled += 1;
        };
        for &base in order {
            let series = &set.series[base as usize];
            let row = base as usize * width * stride;
            if series.per_cpu.is_empty() {
                put(&series.labels, &counts[row..row + stride]);
                continue;
            }
            for (cpu, labels) in series.per_cpu.iter().enumerate() {
                if let Some(labels) = labels {
                    let at = row + cpu * stride;
                    put(labels, &counts[at..at + stride]);
                }
            }
        }
        samples.truncate(filled);
        // A metric without labels has exactly one series, present from the
        // start: an empty map means zero, not "no data".
        if label_names.is_empty() && samples.is_empty() {
            samples.push(Sample {
                label_values: Arc::from([]),
                value: value(&spec.kind, &vec![0; stride]),
            });
        }
        let kind = match spec.kind {
            MetricType::Counter => MetricKind::Counter,
            MetricType::Gauge => MetricKind::Gauge,
            MetricType::Histogram(_) => MetricKind::Histogram,
        };
        Family {
            name: spec.name.clone(),
            help: spec.help.clone(),
            kind,
            label_names,
            samples,
        }
    }
}

/// Puts `item` at an index of `items` that `free` says went, else at the
/// end; its index.
fn put_in<T>(items: &mut Vec<T>, free: &mut Vec<u32>, item: T) -> u32 {
    match free.pop() {
        Some(at) => {
            items[at as usize] = item;
            at
        }
        None => {
            items.push(item);
            (items.len() - 1) as u32
        }
    }
}

/// The value of a series whose row of counts is `row`.
fn value(kind: &MetricType, row: &[u64]) -> Value {
    match kind {
        MetricType::Counter => Value::Counter(row[0]),
        MetricType::Gauge => Value::Gauge(row[0] as i64 as f64),
        MetricType::Histogram(h) => Value::Histogram(cumulative(h, row)),
    }
}

/// `value` made the value of `row`, in place: a histogram keeps its
/// buckets' vector.
fn fill(value: &mut Value, kind: &MetricType, row: &[u64]) {
    match (value, kind) {
        (Value::Histogram(histogram), MetricType::Histogram(h))
            if histogram.buckets.len() == h.buckets.len() =>
        {
            accumulate(histogram, h, row)
        }
        (value, kind) => *value = self::value(kind, row),
    }
}

/// The shape of a read's count table: per series, `width` rows (one per
/// CPU when split by CPU) of `stride` counts.
struct Table {
    width: usize,
    stride: usize,
    /// Series that may have counts: the table grows to hold them.
    series: usize,
}

impl Table {
    /// Adds one entry's values at `slot` of series `base`'s rows: per CPU,
    /// or summed.
    fn add(
        &self,
        counts: &mut Vec<u64>,
        base: u32,
        slot: u32,
        values: &[u64],
        cpu_names: Option<&[Option<String>]>,
        stats: &mut RowStats,
    ) {
        let row = base as usize * self.width * self.stride;
        if counts.len() < row + self.width * self.stride {
            counts.resize(self.series * self.width * self.stride, 0);
        }
        let slot = slot as usize;
        match cpu_names {
            Some(names) => {
                for (cpu, (value, name)) in values.iter().zip(names).enumerate() {
                    if name.is_none() {
                        stats.error("cpu");
                        continue;
                    }
                    let count = &mut counts[row + cpu * self.stride + slot];
                    *count = count.wrapping_add(*value);
                }
            }
            None => {
                let sum = values.iter().fold(0u64, |a, v| a.wrapping_add(*v));
                let count = &mut counts[row + slot];
                *count = count.wrapping_add(sum);
            }
        }
    }
}

/// Every exported key label decoded, in key order, and the slot of the
/// key's count in its series' row: 0, or for a histogram the bucket's.
fn decode_key(
    spec: &MetricSpec,
    key: &[u8],
    histogram: Option<&HistogramSpec>,
) -> Result<(Arc<[String]>, u32), Failed> {
    let mut labels = spec
        .labels
        .iter()
        .map(|label| match key.get(label.offset..label.offset + label.size) {
            Some(bytes) => decode_label(label, bytes),
            None => Err((
                "key".to_string(),
                DecodeError::Invalid(format!(
                    "key of {} bytes has no bytes for label {}",
                    key.len(),
                    label.name
                )),
            )),
        })
        .collect::<Result<Vec<String>, _>>()?;
    let slot = match histogram {
        Some(h) => {
            let bucket = bucket_index(labels.pop().unwrap_or_default()).map_err(|e| ("bucket".into(), e))?;
            bucket_slot(h, bucket)
        }
        None => 0,
    };
    Ok((Arc::from(labels), slot))
}

fn bucket_index(decoded: String) -> Result<u64, DecodeError> {
    decoded.parse().map_err(|_| {
        DecodeError::Invalid(format!(
            "bucket label decoded to {decoded:?}, not an integer bucket index"
        ))
    })
}

/// Where a bucket key counts in a histogram's row: the first bucket whose
/// key is at least this one, else overflow (`buckets.len()`), and the sum
/// key last (`buckets.len() + 1`).
fn bucket_slot(spec: &HistogramSpec, key: u64) -> u32 {
    let slot = if key == spec.sum_key {
        spec.buckets.len() + 1
    } else {
        spec.buckets.partition_point(|(k, _)| *k < key)
    };
    slot as u32
}

/// A histogram's row (per-bucket counts, overflow, sum) → cumulative
/// buckets.
fn cumulative(spec: &HistogramSpec, row: &[u64]) -> Histogram {
    let mut histogram = Histogram {
        buckets: spec.buckets.iter().map(|&(_, le)| (le, 0)).collect(),
        count: 0,
        sum: 0.0,
    };
    accumulate(&mut histogram, spec, row);
    histogram
}

/// Fills `histogram`, which has `spec`'s buckets, from `row`. Overflow
/// counts only in `+Inf`, so `_count` = top bucket + overflow.
fn accumulate(histogram: &mut Histogram, spec: &HistogramSpec, row: &[u64]) {
    let n = spec.buckets.len();
    let mut running = 0u64;
    for ((bucket, &(_, le)), &count) in histogram.buckets.iter_mut().zip(&spec.buckets).zip(&row[..n]) {
        running = running.wrapping_add(count);
        *bucket = (le, running);
    }
    histogram.count = running.wrapping_add(row[n]);
    histogram.sum = row[n + 1] as f64 * spec.multiplier;
}

/// Why a key was not decoded, and by which decoder.
type Failed = (String, DecodeError);

fn decode_label(label: &LabelSpec, bytes: &[u8]) -> Result<String, Failed> {
    let decoded = decode_chain(&label.decoders, bytes).map_err(|(decoder, e)| (decoder.to_string(), e))?;
    String::from_utf8(decoded).map_err(|_| {
        let last = label.decoders.last().map_or("", |d| d.name);
        (
            last.to_string(),
            DecodeError::Invalid(format!(
                "label {} decoded to invalid UTF-8; end the chain with a text decoder",
                label.name
            )),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Source};
    use std::time::Duration;

    /// One read of a metric never read before.
    fn read_family(spec: &MetricSpec, dump: &MapDump) -> (Arc<Family>, RowStats) {
        MetricRows::new(0).family(spec, dump, &mut cache(16), Instant::now())
    }

    fn cache(size: usize) -> LabelCache {
        LabelCache::new(size, Duration::from_secs(60))
    }

    fn spec(program: &str, labels: &str) -> MetricSpec {
        let map = if program == "xdp_packets" {
            "xdp_packets_total"
        } else {
            "syscalls_total"
        };
        let attach = if program == "xdp_packets" {
            "attach:\n  - program: count_packets\n    xdp: {interface: lo}\n"
        } else {
            ""
        };
        let text = format!(
            "metrics:\n  counters:\n    - name: {map}\n      help: h\n      labels:\n{labels}{attach}"
        );
        let source = Source {
            name: program.into(),
            origin: "test.yaml".into(),
            text,
            ..Default::default()
        };
        parse(&source, "ebpf_")
            .unwrap_or_else(|e| panic!("{e}"))
            .metrics
            .remove(0)
    }

    fn dump(key_size: usize, cpus: usize, rows: &[(u64, &[u64])]) -> MapDump {
        let mut dump = MapDump::new(key_size, cpus);
        for (key, values) in rows {
            dump.push(&key.to_le_bytes()[..key_size], values);
        }
        dump
    }

    fn values(family: &Family) -> Vec<(Vec<String>, u64)> {
        family
            .samples
            .iter()
            .map(|s| match s.value {
                Value::Counter(v) => (s.label_values.to_vec(), v),
                ref v => panic!("{v:?}"),
            })
            .collect()
    }

    const SLOT: &str = "        - name: slot\n          size: 4\n          decoders: [{name: uint}]\n";
    const CPU: &str = "        - name: cpu\n          size: 2\n          decoders: [{name: uint}]\n";

    #[test]
    fn per_cpu_values_are_summed_without_a_cpu_label() {
        let (family, stats) = read_family(
            &spec("xdp_packets", SLOT),
            &dump(4, 3, &[(0, &[1, 2, 3]), (1, &[10, 0, 5])]),
        );
        assert_eq!(values(&family), [(vec!["0".into()], 6), (vec!["1".into()], 15)]);
        assert_eq!(stats, RowStats::default());
    }

    #[test]
    fn per_cpu_values_are_split_by_a_last_cpu_label() {
        let spec = spec("xdp_packets", &format!("{SLOT}{CPU}"));
        assert_eq!(spec.label_names(), ["slot", "cpu"]);
        let (family, _) = read_family(&spec, &dump(4, 3, &[(7, &[1, 2, 3])]));
        let expected: Vec<(Vec<String>, u64)> = (0..3)
            .map(|cpu| (vec!["7".to_string(), cpu.to_string()], cpu as u64 + 1))
            .collect();
        assert_eq!(values(&family), expected);
    }

    #[test]
    fn cpu_label_alone_splits_and_no_labels_sums_everything() {
        let (family, _) = read_family(&spec("xdp_packets", CPU), &dump(4, 2, &[(0, &[4, 6])]));
        assert_eq!(values(&family), [(vec!["0".into()], 4), (vec!["1".into()], 6)]);
        let text = "metrics:\n  counters:\n    - name: xdp_packets_total\n      help: h\nattach:\n  - program: count_packets\n    xdp: {interface: lo}\n";
        let source = Source {
            name: "xdp_packets".into(),
            origin: "t".into(),
            text: text.into(),
            ..Default::default()
        };
        let spec = parse(&source, "ebpf_").unwrap().metrics.remove(0);
        let (family, _) = read_family(&spec, &dump(4, 2, &[(0, &[4, 6])]));
        assert_eq!(values(&family), [(vec![], 10)]);
    }

    #[test]
    fn rows_with_equal_decoded_labels_are_summed() {
        let labels = "        - name: op\n          size: 8\n          decoders:\n            - name: uint\n            - name: static_map\n              static_map: {1: read, 2: read, 3: write}\n";
        let (family, _) = read_family(
            &spec("syscalls", labels),
            &dump(8, 1, &[(1, &[5]), (2, &[7]), (3, &[1])]),
        );
        assert_eq!(
            values(&family),
            [(vec!["read".into()], 12), (vec!["write".into()], 1)]
        );
    }

    #[test]
    fn allow_list_drops_rows_without_counting_errors() {
        let labels = "        - name: syscall\n          size: 8\n          decoders:\n            - name: uint\n            - name: syscall\n            - name: regexp\n              regexps: ['^read$']\n";
        let (family, stats) = read_family(&spec("syscalls", labels), &dump(8, 1, &[(0, &[3]), (1, &[4])]));
        assert_eq!(values(&family), [(vec!["read".into()], 3)]);
        assert_eq!(
            stats,
            RowStats {
                decode_errors: BTreeMap::new(),
                skipped: 1
            }
        );
    }

    #[test]
    fn undecodable_rows_are_dropped_and_counted() {
        // `string` refuses invalid UTF-8.
        let labels = "        - name: name\n          size: 8\n          decoders: [{name: string}]\n";
        let (family, stats) = read_family(
            &spec("syscalls", labels),
            &dump(8, 1, &[(0x6b6f, &[1]), (0xff, &[2])]),
        );
        assert_eq!(values(&family), [(vec!["ok".into()], 1)]);
        assert_eq!(stats.decode_errors, BTreeMap::from([("string".to_string(), 1)]));
    }

    /// A histogram over a key of `[u32 bucket]`, `bucket_keys` as given.
    fn histogram_spec(buckets: &[(u64, f64)], multiplier: f64, cpu: bool) -> MetricSpec {
        let uint = || vec![crate::decoders::configure("uint", &Default::default()).unwrap()];
        let label = |name: &str, size| LabelSpec {
            name: name.into(),
            offset: 0,
            size,
            decoders: uint(),
        };
        MetricSpec {
            kind: MetricType::Histogram(HistogramSpec {
                buckets: buckets.to_vec(),
                sum_key: buckets.last().unwrap().0 + 1,
                multiplier,
            }),
            map: "h".into(),
            global: None,
            name: "ebpf_h_seconds".into(),
            help: "h".into(),
            labels: vec![label("bucket", 4)],
            cpu_label: cpu.then(|| label("cpu", 2)),
            events: None,
        }
    }

    fn only_histogram(family: &Family) -> Histogram {
        assert_eq!(family.samples.len(), 1, "{family:?}");
        match &family.samples[0].value {
            Value::Histogram(h) => h.clone(),
            v => panic!("{v:?}"),
        }
    }

    /// exp2 keys 2..=4 (bounds 4, 8, 16), sum at 5, overflow at 6.
    const EXP2: &[(u64, f64)] = &[(2, 4.0), (3, 8.0), (4, 16.0)];

    #[test]
    fn histogram_buckets_are_cumulative_and_missing_ones_are_zero() {
        let (family, stats) = read_family(
            &histogram_spec(EXP2, 1.0, false),
            &dump(4, 1, &[(2, &[3]), (4, &[1]), (5, &[30])]),
        );
        assert_eq!(stats, RowStats::default());
        assert!(family.label_names.is_empty());
        assert_eq!(
            only_histogram(&family),
            Histogram {
                buckets: vec![(4.0, 3), (8.0, 3), (16.0, 4)],
                count: 4,
                sum: 30.0
            }
        );
    }

    #[test]
    fn overflow_counts_only_in_inf_and_keys_below_the_first_bucket_in_the_first() {
        // Key 6 is the overflow slot of histogram.bpf.h; key 0 is below bucket_min.
        let (family, _) = read_family(
            &histogram_spec(EXP2, 1.0, false),
            &dump(4, 1, &[(0, &[2]), (3, &[1]), (6, &[5])]),
        );
        let h = only_histogram(&family);
        assert_eq!(h.buckets, [(4.0, 2), (8.0, 3), (16.0, 3)]);
        assert_eq!(h.count, 8, "+Inf = top bucket + overflow");
    }

    #[test]
    fn anchor_layout_clamped_into_the_top_bucket_reads_unchanged() {
        // ebpf_exporter's helper clamps overflow into the top key and has no
        // overflow slot: +Inf equals the top bucket, as it always did.
        let (family, _) = read_family(
            &histogram_spec(EXP2, 0.5, false),
            &dump(4, 1, &[(2, &[1]), (4, &[9]), (5, &[100])]),
        );
        let h = only_histogram(&family);
        assert_eq!(h.buckets, [(4.0, 1), (8.0, 1), (16.0, 10)]);
        assert_eq!((h.count, h.sum), (10, 50.0));
    }

    #[test]
    fn fixed_keys_between_listed_ones_count_in_the_next_one_up() {
        let fixed = &[(1, 1.0), (5, 5.0), (10, 10.0)];
        let (family, _) = read_family(
            &histogram_spec(fixed, 1.0, false),
            &dump(4, 1, &[(1, &[1]), (3, &[2]), (10, &[4]), (11, &[40]), (12, &[8])]),
        );
        let h = only_histogram(&family);
        assert_eq!(h.buckets, [(1.0, 1), (5.0, 3), (10.0, 7)]);
        assert_eq!((h.count, h.sum), (15, 40.0));
    }

    #[test]
    fn per_cpu_histograms_split_by_cpu_or_sum() {
        let rows: &[(u64, &[u64])] = &[(2, &[1, 2]), (3, &[0, 4]), (5, &[3, 10])];
        let (family, _) = read_family(&histogram_spec(EXP2, 1.0, true), &dump(4, 2, rows));
        assert_eq!(family.label_names, ["cpu"]);
        let per_cpu: Vec<(Vec<String>, Histogram)> = family
            .samples
            .iter()
            .map(|s| match &s.value {
                Value::Histogram(h) => (s.label_values.to_vec(), h.clone()),
                v => panic!("{v:?}"),
            })
            .collect();
        assert_eq!(
            per_cpu,
            [
                (
                    vec!["0".to_string()],
                    Histogram {
                        buckets: vec![(4.0, 1), (8.0, 1), (16.0, 1)],
                        count: 1,
                        sum: 3.0
                    }
                ),
                (
                    vec!["1".to_string()],
                    Histogram {
                        buckets: vec![(4.0, 2), (8.0, 6), (16.0, 6)],
                        count: 6,
                        sum: 10.0
                    }
                ),
            ]
        );
        let (family, _) = read_family(&histogram_spec(EXP2, 1.0, false), &dump(4, 2, rows));
        let h = only_histogram(&family);
        assert_eq!((h.buckets[1], h.count, h.sum), ((8.0, 7), 7, 13.0));
    }

    #[test]
    fn an_empty_label_less_histogram_is_all_zero() {
        let (family, _) = read_family(&histogram_spec(EXP2, 1.0, false), &MapDump::new(4, 1));
        let h = only_histogram(&family);
        assert_eq!(
            (h.buckets, h.count, h.sum),
            (vec![(4.0, 0), (8.0, 0), (16.0, 0)], 0, 0.0)
        );
    }

    #[test]
    fn gauges_are_signed_and_per_cpu_parts_sum_through_wrapping() {
        let mut spec = histogram_spec(EXP2, 1.0, false);
        spec.kind = MetricType::Gauge;
        // One CPU incremented 5 times, another decremented twice: 3.
        let (family, _) = read_family(&spec, &dump(4, 2, &[(0, &[5, (-2i64) as u64])]));
        assert_eq!(family.kind, MetricKind::Gauge);
        assert_eq!(family.samples[0].value, Value::Gauge(3.0));
        let (family, _) = read_family(&spec, &dump(4, 1, &[(0, &[(-7i64) as u64])]));
        assert_eq!(family.samples[0].value, Value::Gauge(-7.0));
    }

    type Counts = Vec<(Vec<String>, u64)>;

    /// Reads `dumps` in turn as one metric, returning each family's
    /// counter values, the metric and the cache after.
    fn reads(
        spec: &MetricSpec,
        limit: usize,
        size: usize,
        dumps: &[MapDump],
    ) -> (Vec<Counts>, MetricRows, LabelCache) {
        let mut rows = MetricRows::new(limit);
        let mut cache = cache(size);
        let families = dumps
            .iter()
            .map(|d| values(&rows.family(spec, d, &mut cache, Instant::now()).0))
            .collect();
        (families, rows, cache)
    }

    #[test]
    fn keys_are_decoded_once_across_reads() {
        let d = dump(4, 1, &[(1, &[10]), (2, &[20])]);
        let (families, _, cache) = reads(&spec("xdp_packets", SLOT), 0, 16, &[d.clone(), d]);
        assert_eq!(families[0], families[1]);
        assert_eq!((cache.stats.misses, cache.stats.hits, cache.len()), (2, 2, 2));
    }

    #[test]
    fn keys_that_change_places_between_reads_keep_their_series_and_counts() {
        let counts = |rows: &[(u64, u64)]| {
            rows.iter()
                .map(|&(k, v)| (vec![k.to_string()], v))
                .collect::<Vec<_>>()
        };
        let reads_of: Vec<MapDump> = vec![
            dump(4, 1, &[(1, &[10]), (2, &[20]), (3, &[30])]),
            // Reordered, and 2's place taken by a new key.
            dump(4, 1, &[(3, &[31]), (4, &[40]), (1, &[11])]),
            // 2 back, in the place 4 had.
            dump(4, 1, &[(3, &[32]), (2, &[22]), (1, &[12]), (4, &[41])]),
            dump(4, 1, &[(3, &[33]), (2, &[23]), (1, &[13]), (4, &[42])]),
        ];
        let (families, rows, cache) = reads(&spec("xdp_packets", SLOT), 0, 16, &reads_of);
        assert_eq!(families[0], counts(&[(1, 10), (2, 20), (3, 30)]));
        assert_eq!(families[1], counts(&[(1, 11), (3, 31), (4, 40)]));
        assert_eq!(families[2], counts(&[(1, 12), (2, 22), (3, 32), (4, 41)]));
        assert_eq!(families[3], counts(&[(1, 13), (2, 23), (3, 33), (4, 42)]));
        // 1, 2, 3, then 4, then 2 again: five decodes; the rest were held.
        assert_eq!((cache.stats.misses, rows.len()), (5, 4));
    }

    #[test]
    fn series_that_come_and_go_keep_the_family_in_label_order_with_exact_counts() {
        let spec = spec("xdp_packets", SLOT);
        let mut rows = MetricRows::new(0);
        let mut cache = cache(1024);
        let mut state = 7u64;
        for read in 0..40u64 {
            // A pseudo-random third of 0..60 in the map, in a shuffled order.
            let mut keys: Vec<u64> = (0..60)
                .filter(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    state >> 62 == 0
                })
                .collect();
            let turn = (read as usize) % keys.len().max(1);
            keys.rotate_left(turn);
            let entries: Vec<(u64, Vec<u64>)> = keys.iter().map(|&k| (k, vec![k * 100 + read])).collect();
            let rows_of: Vec<(u64, &[u64])> = entries.iter().map(|(k, v)| (*k, &v[..])).collect();
            let family = rows
                .family(&spec, &dump(4, 1, &rows_of), &mut cache, Instant::now())
                .0;
            let mut expected: Vec<(Vec<String>, u64)> = keys
                .iter()
                .map(|&k| (vec![k.to_string()], k * 100 + read))
                .collect();
            expected.sort();
            assert_eq!(values(&family), expected, "read {read}");
        }
    }

    #[test]
    fn a_family_still_held_is_never_refilled_and_one_let_go_is_refilled_with_new_values() {
        let spec = spec("xdp_packets", SLOT);
        let mut rows = MetricRows::new(0);
        let mut cache = cache(16);
        let mut read = |values: [u64; 2]| {
            let d = dump(4, 1, &[(1, &[values[0]]), (2, &[values[1]])]);
            rows.family(&spec, &d, &mut cache, Instant::now()).0
        };
        let first = read([1, 2]);
        let second = read([3, 4]);
        // `first` is the spare now, but someone (a scrape) still holds it.
        let third = read([5, 6]);
        assert_eq!(values(&first), [(vec!["1".into()], 1), (vec!["2".into()], 2)]);
        assert_eq!(values(&third), [(vec!["1".into()], 5), (vec!["2".into()], 6)]);
        drop((first, second));
        // `second` was let go: its samples carry the fourth read's values.
        let fourth = read([7, 8]);
        assert_eq!(values(&fourth), [(vec!["1".into()], 7), (vec!["2".into()], 8)]);
        assert_eq!(values(&third), [(vec!["1".into()], 5), (vec!["2".into()], 6)]);
        // A new series changes the places: the refilled family is rebuilt.
        drop(third);
        let d = dump(4, 1, &[(1, &[9]), (0, &[1]), (2, &[10])]);
        let fifth = rows.family(&spec, &d, &mut cache, Instant::now()).0;
        assert_eq!(
            values(&fifth),
            [
                (vec!["0".into()], 1),
                (vec!["1".into()], 9),
                (vec!["2".into()], 10)
            ]
        );
    }

    #[test]
    fn a_key_that_leaves_the_map_leaves_the_family_and_the_cache() {
        let both = dump(4, 1, &[(1, &[10]), (2, &[20])]);
        let one = dump(4, 1, &[(2, &[21])]);
        let (families, rows, cache) = reads(&spec("xdp_packets", SLOT), 0, 16, &[both, one]);
        assert_eq!(families[1], [(vec!["2".to_string()], 21)]);
        assert_eq!((rows.len(), cache.len(), cache.stats.evictions), (1, 1, 1));
    }

    #[test]
    fn a_full_cache_decodes_the_keys_it_cannot_hold_on_every_read() {
        let d = dump(4, 1, &[(1, &[10]), (2, &[20]), (3, &[30])]);
        let (families, _, cache) = reads(&spec("xdp_packets", SLOT), 0, 2, &[d.clone(), d.clone()]);
        assert_eq!(families[0], families[1]);
        assert_eq!(families[1].len(), 3);
        assert_eq!((cache.len(), cache.stats.hits, cache.stats.misses), (2, 2, 4));
        let (families, _, cache) = reads(&spec("xdp_packets", SLOT), 0, 0, &[d.clone(), d]);
        assert_eq!(families[1].len(), 3);
        assert_eq!((cache.len(), cache.stats.misses), (0, 6), "size 0 holds nothing");
    }

    #[test]
    fn errors_are_held_with_their_decoder_and_counted_on_every_read() {
        // `string` refuses invalid UTF-8.
        let labels = "        - name: name\n          size: 8\n          decoders: [{name: string}]\n";
        let d = dump(8, 1, &[(0x656e6f, &[3]), (0xff, &[4])]);
        let mut rows = MetricRows::new(0);
        let mut cache = cache(16);
        let spec = spec("syscalls", labels);
        for _ in 0..2 {
            let (family, stats) = rows.family(&spec, &d, &mut cache, Instant::now());
            assert_eq!(values(&family), [(vec!["one".to_string()], 3)]);
            assert_eq!(stats.decode_errors, BTreeMap::from([("string".to_string(), 1)]));
        }
        assert_eq!(cache.stats.hits, 2);
    }

    #[test]
    fn answers_that_can_change_are_decoded_again_after_the_refresh_interval() {
        let labels = "        - name: function\n          size: 8\n          decoders: [{name: ksym}]\n";
        let spec = spec("syscalls", labels);
        let d = dump(8, 1, &[(1, &[3])]);
        let mut rows = MetricRows::new(0);
        let mut cache = LabelCache::new(16, Duration::ZERO);
        for _ in 0..2 {
            rows.family(&spec, &d, &mut cache, Instant::now());
        }
        assert_eq!((cache.stats.misses, cache.stats.refreshes), (2, 1));
    }

    #[test]
    fn the_series_limit_leaves_label_sets_out_counts_each_once_and_lets_them_in_when_room_frees() {
        let three = dump(4, 1, &[(1, &[10]), (2, &[20]), (3, &[30])]);
        let without_1 = dump(4, 1, &[(2, &[21]), (3, &[31])]);
        let (families, rows, _) = reads(
            &spec("xdp_packets", SLOT),
            2,
            16,
            &[three.clone(), three, without_1],
        );
        assert_eq!(
            families[0],
            [(vec!["1".to_string()], 10), (vec!["2".to_string()], 20)]
        );
        assert_eq!(families[1], families[0]);
        assert_eq!(
            families[2],
            [(vec!["2".to_string()], 21), (vec!["3".to_string()], 31)]
        );
        assert_eq!(rows.series_dropped(), 1, "key 3 counted once while it stayed");
    }

    #[test]
    fn the_series_limit_counts_histograms_not_buckets() {
        let mut spec = histogram_spec(EXP2, 1.0, false);
        let slot = LabelSpec {
            name: "slot".into(),
            offset: 0,
            size: 4,
            decoders: vec![crate::decoders::configure("uint", &Default::default()).unwrap()],
        };
        spec.labels[0].offset = 4;
        spec.labels.insert(0, slot);
        // Two label sets (slot 0 and 1) of three buckets each, limit 2.
        let mut d = MapDump::new(8, 1);
        for slot in 0..2u32 {
            for bucket in 2..5u32 {
                d.push(&[slot.to_le_bytes(), bucket.to_le_bytes()].concat(), &[1]);
            }
        }
        let mut rows = MetricRows::new(2);
        let (family, _) = rows.family(&spec, &d, &mut cache(16), Instant::now());
        assert_eq!(family.samples.len(), 2);
        assert_eq!(rows.series_dropped(), 0);
        assert_eq!(
            only_histogram(&Family {
                samples: family.samples[1..].to_vec(),
                ..Family::clone(&family)
            })
            .count,
            3
        );
    }

    #[test]
    fn a_key_the_kernel_gives_twice_in_one_read_counts_once() {
        let (families, _, _) = reads(
            &spec("xdp_packets", SLOT),
            0,
            16,
            &[dump(4, 1, &[(1, &[10]), (1, &[10])])],
        );
        assert_eq!(families[0], [(vec!["1".to_string()], 10)]);
    }

    #[test]
    fn keys_longer_than_sixteen_bytes_are_held_too() {
        let mut spec = histogram_spec(EXP2, 1.0, false);
        spec.kind = MetricType::Counter;
        spec.labels = vec![LabelSpec {
            name: "key".into(),
            offset: 0,
            size: 24,
            decoders: vec![crate::decoders::configure("hex", &Default::default()).unwrap()],
        }];
        let mut d = MapDump::new(24, 1);
        d.push(&[1; 24], &[5]);
        d.push(&[2; 24], &[6]);
        let (mut rows, mut cache) = (MetricRows::new(0), cache(16));
        for _ in 0..2 {
            let (family, _) = rows.family(&spec, &d, &mut cache, Instant::now());
            assert_eq!(
                values(&family),
                [(vec!["01".repeat(24)], 5), (vec!["02".repeat(24)], 6)]
            );
        }
        assert_eq!((cache.stats.misses, cache.stats.hits), (2, 2));
    }
}
