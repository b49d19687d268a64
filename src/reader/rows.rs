//! Map entries → one metric family: split each key into labels, run the
//! decoder chains, sum or split per-CPU values, and sum rows whose decoded
//! labels are equal (two keys may decode to the same label set, such as two
//! unknown syscall numbers under a `static_map` without `allow_unknown`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

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

/// `metric` identifies `spec` in `cache`, which holds decoded key labels
/// across reads.
pub fn family(spec: &MetricSpec, dump: &MapDump, cache: &mut LabelCache, metric: u64) -> (Family, RowStats) {
    let mut stats = RowStats::default();
    let changes = spec.labels.iter().any(LabelSpec::answer_can_change);
    let now = Instant::now();
    let histogram = match &spec.kind {
        MetricType::Histogram(h) => Some(h),
        _ => None,
    };
    let mut rows: BTreeMap<(Arc<[String]>, usize), Acc> = BTreeMap::new();
    // The CPU labels are the same for every row: decode them once.
    let cpu_values: Option<Vec<Option<String>>> = spec.cpu_label.as_ref().map(|label| {
        (0..dump.values_per_entry)
            .map(|cpu| decode_label(label, &(cpu as u64).to_le_bytes()[..label.size.min(8)]).ok())
            .collect()
    });
    for (key, values) in dump.entries() {
        let decoded = cache.get_or_decode(metric, key, changes, now, || {
            let mut labels = decode_key(spec, key)?;
            let bucket = match histogram {
                Some(_) => {
                    bucket_index(labels.pop().unwrap_or_default()).map_err(|e| ("bucket".into(), e))?
                }
                None => 0,
            };
            Ok((Arc::from(labels), bucket))
        });
        let (labels, bucket) = match decoded {
            Ok(decoded) => decoded,
            Err((_, DecodeError::Skip)) => {
                stats.skipped += 1;
                continue;
            }
            Err((decoder, DecodeError::Invalid(message))) => {
                tracing::debug!(metric = %spec.name, "row dropped: {message}");
                stats.error(&decoder);
                continue;
            }
        };
        match &cpu_values {
            Some(cpus) => {
                for (cpu, (value, name)) in values.iter().zip(cpus).enumerate() {
                    if name.is_none() {
                        stats.error("cpu");
                        continue;
                    }
                    add(
                        &mut rows,
                        (labels.clone(), cpu),
                        histogram.is_some(),
                        bucket,
                        *value,
                    );
                }
            }
            None => {
                let sum = values.iter().fold(0u64, |a, v| a.wrapping_add(*v));
                add(&mut rows, (labels, NO_CPU), histogram.is_some(), bucket, sum);
            }
        }
    }
    let label_names = spec.label_names();
    // A metric without labels has exactly one series, present from the
    // start: an empty map means zero, not "no data".
    if label_names.is_empty() && rows.is_empty() {
        let empty = if histogram.is_some() {
            Acc::Buckets(BTreeMap::new())
        } else {
            Acc::Value(0)
        };
        rows.insert((Arc::from([]), NO_CPU), empty);
    }
    let samples = rows
        .into_iter()
        .map(|((labels, cpu), acc)| {
            let mut label_values = labels.to_vec();
            if let Some(Some(name)) = cpu_values.as_ref().and_then(|c| c.get(cpu)) {
                label_values.push(name.clone());
            }
            let value = match (&spec.kind, acc) {
                (MetricType::Counter, Acc::Value(v)) => Value::Counter(v),
                (MetricType::Gauge, Acc::Value(v)) => Value::Gauge(v as i64 as f64),
                (MetricType::Histogram(h), Acc::Buckets(buckets)) => {
                    Value::Histogram(cumulative(h, &buckets))
                }
                (_, acc) => unreachable!("rows of one family all accumulate the same way: {acc:?}"),
            };
            Sample { label_values, value }
        })
        .collect();
    let kind = match spec.kind {
        MetricType::Counter => MetricKind::Counter,
        MetricType::Gauge => MetricKind::Gauge,
        MetricType::Histogram(_) => MetricKind::Histogram,
    };
    let family = Family {
        name: spec.name.clone(),
        help: spec.help.clone(),
        kind,
        label_names,
        samples,
    };
    (family, stats)
}

/// Every key label decoded, in key order.
fn decode_key(spec: &MetricSpec, key: &[u8]) -> Result<Vec<String>, (String, DecodeError)> {
    spec.labels
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
        .collect()
}

fn bucket_index(decoded: String) -> Result<u64, DecodeError> {
    decoded.parse().map_err(|_| {
        DecodeError::Invalid(format!(
            "bucket label decoded to {decoded:?}, not an integer bucket index"
        ))
    })
}

/// The CPU index of rows that are not split by CPU.
const NO_CPU: usize = usize::MAX;

/// What the rows of one label set add up to.
#[derive(Debug)]
enum Acc {
    Value(u64),
    /// A histogram's counts by bucket key.
    Buckets(BTreeMap<u64, u64>),
}

/// Map counts wrap like the u64 they are read from, never panic.
fn add(
    rows: &mut BTreeMap<(Arc<[String]>, usize), Acc>,
    key: (Arc<[String]>, usize),
    histogram: bool,
    bucket: u64,
    value: u64,
) {
    let acc = rows.entry(key).or_insert_with(|| {
        if histogram {
            Acc::Buckets(BTreeMap::new())
        } else {
            Acc::Value(0)
        }
    });
    let slot = match acc {
        Acc::Value(v) => v,
        Acc::Buckets(buckets) => buckets.entry(bucket).or_insert(0),
    };
    *slot = slot.wrapping_add(value);
}

/// Per-bucket counts → cumulative buckets. Buckets missing from the map
/// count zero; overflow (keys above the top other than the sum key) counts
/// only in `+Inf`, so `_count` = top bucket + overflow.
fn cumulative(spec: &HistogramSpec, counts: &BTreeMap<u64, u64>) -> Histogram {
    let mut per_bucket = vec![0u64; spec.buckets.len()];
    let mut overflow = 0u64;
    let mut sum = 0u64;
    for (&key, &count) in counts {
        if key == spec.sum_key {
            sum = count;
            continue;
        }
        // The first bucket whose key is at least this one holds it.
        match per_bucket.get_mut(spec.buckets.partition_point(|(k, _)| *k < key)) {
            Some(slot) => *slot = slot.wrapping_add(count),
            None => overflow = overflow.wrapping_add(count),
        }
    }
    let mut running = 0u64;
    let buckets = spec
        .buckets
        .iter()
        .zip(per_bucket)
        .map(|(&(_, le), n)| {
            running = running.wrapping_add(n);
            (le, running)
        })
        .collect();
    Histogram {
        buckets,
        count: running.wrapping_add(overflow),
        sum: sum as f64 * spec.multiplier,
    }
}

fn decode_label(label: &LabelSpec, bytes: &[u8]) -> Result<String, (String, DecodeError)> {
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

    /// One read through a fresh cache.
    fn read_family(spec: &MetricSpec, dump: &MapDump) -> (Family, RowStats) {
        super::family(spec, dump, &mut LabelCache::new(16, Duration::from_secs(60)), 0)
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
                Value::Counter(v) => (s.label_values.clone(), v),
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
                Value::Histogram(h) => (s.label_values.clone(), h.clone()),
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
}
