//! Snapshot → Prometheus protobuf exposition: length-delimited
//! `io.prometheus.client.MetricFamily` messages, the one format that carries
//! native histograms (Prometheus asks for it first when started with
//! `--enable-feature=native-histograms`).
//!
//! The messages are the parts of client_model's `metrics.proto` this
//! exporter fills, written as `prost` structs with the proto's field
//! numbers and types, so no protobuf compiler runs at build time. Fields
//! left at their defaults are not sent (proto3), which proto2 readers such
//! as client_golang read as the same defaults.
//!
//! Which samples are exposed follows the text encoders
//! ([`super::exposition`]): samples whose value does not match their
//! family's kind are dropped and families without samples are left out.
//! Family and sample names are those of text 0.0.4 (a counter keeps the
//! name it was configured with); label values go as they are, no escaping.
//!
//! Every histogram carries its classic buckets (cumulative counts, bounds as
//! configured, `+Inf` left to `sample_count`), so scrapers that ingest the
//! classic form see what the text formats show. With native histograms on,
//! a histogram whose buckets double (exp2) also carries its schema 0 form
//! (`native_buckets`): exact for powers of two, at the nearest power of two
//! for a decimal unit's bounds; any other stays classic only.

use std::borrow::Borrow;

use super::exposition::{exposed_samples, finite_buckets};
use super::{Family, Histogram, MetricKind, Sample, Value};

/// `Content-Type` of the delimited protobuf exposition.
pub const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// `io.prometheus.client.MetricFamily`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricFamily {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub help: String,
    #[prost(enumeration = "MetricType", tag = "3")]
    pub r#type: i32,
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
}

/// `io.prometheus.client.MetricType`, the kinds this exporter exposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 4,
}

/// `io.prometheus.client.Metric`: one series (one histogram, for a
/// histogram family).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Gauge>,
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Counter>,
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<ProtoHistogram>,
}

/// `io.prometheus.client.LabelPair`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `io.prometheus.client.Gauge`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gauge {
    #[prost(double, tag = "1")]
    pub value: f64,
}

/// `io.prometheus.client.Counter`. The format carries a double: `u64`
/// counters are exact up to 2^53, as in every scraper's storage.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Counter {
    #[prost(double, tag = "1")]
    pub value: f64,
}

/// `io.prometheus.client.Histogram`: the classic buckets, and the native
/// ones when the histogram has them (integer counts, deltas between
/// populated buckets).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoHistogram {
    #[prost(uint64, tag = "1")]
    pub sample_count: u64,
    #[prost(double, tag = "2")]
    pub sample_sum: f64,
    /// Classic buckets, increasing bounds; `+Inf` is `sample_count`.
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    /// Native bucket schema: always 0 here (bucket `i` holds
    /// (2^(i-1), 2^i]).
    #[prost(sint32, tag = "5")]
    pub schema: i32,
    /// The zero bucket holds the observations in [-threshold, threshold].
    #[prost(double, tag = "6")]
    pub zero_threshold: f64,
    #[prost(uint64, tag = "7")]
    pub zero_count: u64,
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    /// Each populated positive bucket's count, as the difference to the
    /// previous one's (the first one's to zero).
    #[prost(sint64, repeated, tag = "13")]
    pub positive_delta: Vec<i64>,
}

/// `io.prometheus.client.Bucket`: a classic bucket.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Bucket {
    #[prost(uint64, tag = "1")]
    pub cumulative_count: u64,
    #[prost(double, tag = "2")]
    pub upper_bound: f64,
}

/// `io.prometheus.client.BucketSpan`: `length` consecutive native buckets,
/// `offset` after the previous span (the first span's offset is its first
/// bucket's index).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// Encodes `families`, each a length-delimited `MetricFamily`; histograms
/// whose buckets allow it carry their native form when `native_histograms`.
///
/// A family's metrics are encoded one by one, each as its field of the
/// family message, from one `Metric` whose strings are refilled for every
/// sample: a family of 100k series costs no allocation per series, and the
/// family's length prefix comes from the bytes its metrics took.
pub fn encode<F: Borrow<Family>>(families: &[F], native_histograms: bool) -> Vec<u8> {
    use prost::Message as _;
    /// `MetricFamily.metric`.
    const METRIC_TAG: u32 = 4;
    let mut out = Vec::new();
    let mut metrics = Vec::new();
    let mut metric = Metric::default();
    for family in families {
        let family = family.borrow();
        metrics.clear();
        for sample in exposed_samples(family) {
            fill(&mut metric, family, sample, native_histograms);
            prost::encoding::message::encode(METRIC_TAG, &metric, &mut metrics);
        }
        if metrics.is_empty() {
            continue;
        }
        let kind = match family.kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        let header = MetricFamily {
            name: family.name.clone(),
            help: family.help.clone(),
            r#type: kind as i32,
            metric: Vec::new(),
        };
        let length = header.encoded_len() + metrics.len();
        prost::encode_length_delimiter(length, &mut out).expect("a Vec always has room");
        header.encode(&mut out).expect("a Vec always has room");
        out.extend_from_slice(&metrics);
    }
    out
}

/// The histogram families of `families` that stay classic with native
/// histograms on: their buckets are not powers of two.
pub fn classic_only<F: Borrow<Family>>(families: &[F]) -> impl Iterator<Item = &Family> {
    families.iter().map(Borrow::borrow).filter(|family: &&Family| {
        family.kind == MetricKind::Histogram
            && exposed_samples(family).any(|sample| match &sample.value {
                Value::Histogram(h) => native_buckets(&proto_histogram(h, false)).is_none(),
                _ => false,
            })
    })
}

/// Makes `metric` the series of `sample`, reusing its label strings.
fn fill(metric: &mut Metric, family: &Family, sample: &Sample, native_histograms: bool) {
    let pairs = family.label_names.iter().zip(sample.label_values.iter());
    metric.label.resize_with(pairs.len(), LabelPair::default);
    for (label, (name, value)) in metric.label.iter_mut().zip(pairs) {
        label.name.clear();
        label.name.push_str(name);
        label.value.clear();
        label.value.push_str(value);
    }
    (metric.counter, metric.gauge, metric.histogram) = (None, None, None);
    match &sample.value {
        Value::Counter(v) => metric.counter = Some(Counter { value: *v as f64 }),
        Value::FloatCounter(v) => metric.counter = Some(Counter { value: *v }),
        Value::Gauge(v) => metric.gauge = Some(Gauge { value: *v }),
        Value::Histogram(h) => metric.histogram = Some(proto_histogram(h, native_histograms)),
    }
}

/// The classic buckets of `h` with cumulative counts that never decrease
/// (a decreasing count, bad input, shows as the running maximum, as in
/// OpenMetrics), a count no lower than the top bucket, and the native
/// buckets when asked for and exact.
fn proto_histogram(h: &Histogram, native: bool) -> ProtoHistogram {
    let mut shown = 0u64;
    let bucket: Vec<Bucket> = finite_buckets(&h.buckets)
        .map(|(upper_bound, cumulative)| {
            shown = shown.max(cumulative);
            Bucket {
                cumulative_count: shown,
                upper_bound,
            }
        })
        .collect();
    let mut out = ProtoHistogram {
        sample_count: shown.max(h.count),
        sample_sum: h.sum,
        bucket,
        ..ProtoHistogram::default()
    };
    if native {
        if let Some(buckets) = native_buckets(&out) {
            out.zero_threshold = buckets.zero_threshold;
            out.zero_count = buckets.zero_count;
            (out.positive_span, out.positive_delta) = spans(&buckets.positive);
        }
    }
    out
}

/// The schema 0 form of a classic histogram, bucket for bucket.
#[derive(Debug, PartialEq)]
struct NativeBuckets {
    zero_threshold: f64,
    zero_count: u64,
    /// (index, count) of each populated bucket, by increasing index.
    positive: Vec<(i32, u64)>,
}

/// The native schema 0 buckets holding what the classic buckets of `h`
/// hold, one for one, or `None` when they do not double.
///
/// Schema 0 bucket `i` holds (2^(i-1), 2^i]. Classic buckets whose bounds
/// double from one to the next (exp2 buckets) are those buckets when the
/// bounds are powers of two (a power-of-two `bucket_multiplier`), and close
/// to them when the multiplier is a decimal unit: 1e-9 × 2^i is 2^(i-30)
/// × 1.074, 1e-6 × 2^i is 2^(i-20) × 1.049, 1e-3 × 2^i is 2^(i-10) × 1.024.
/// Such buckets become the native buckets of the nearest powers of two,
/// each holding exactly the observations of its classic bucket, placed that
/// factor low; bounds further than an eighth of a bucket (a factor of 1.09)
/// from a power of two stay classic. Prometheus's quantiles then move by
/// at most that factor, a small part of the factor of two between bounds.
/// The first classic bucket holds everything up to its bound (0 included,
/// and the keys below `bucket_min`), which is the zero bucket with that
/// bound as its threshold; a first bound of 0 (exp2zero) is folded into the
/// next one's zero bucket, since the zero bucket has one threshold. Values
/// above the top bound, counted only in `+Inf`, go in the bucket right above
/// it: native buckets add up to the count.
fn native_buckets(h: &ProtoHistogram) -> Option<NativeBuckets> {
    let start = usize::from(h.bucket.first()?.upper_bound == 0.0);
    let zero = h.bucket.get(start)?;
    let first = nearest_power_of_two(zero.upper_bound)?;
    let mut index = first;
    let mut below = zero.cumulative_count;
    let mut positive = Vec::new();
    for pair in h.bucket[start..].windows(2) {
        if pair[1].upper_bound != pair[0].upper_bound * 2.0 {
            return None;
        }
        index += 1;
        positive.push((index, pair[1].cumulative_count - below));
        below = pair[1].cumulative_count;
    }
    positive.push((index + 1, h.sample_count - below));
    positive.retain(|&(_, count)| count > 0);
    Some(NativeBuckets {
        zero_threshold: 2f64.powi(first),
        zero_count: zero.cumulative_count,
        positive,
    })
}

/// `k` where `v` is 2^k, or within an eighth of a bucket of it (a factor of
/// 2^(1/8)); a normal float: subnormal bounds, which no histogram has, stay
/// classic.
fn nearest_power_of_two(v: f64) -> Option<i32> {
    if !(v.is_normal() && v > 0.0) {
        return None;
    }
    let log = v.log2();
    let k = log.round();
    ((log - k).abs() <= 0.125).then_some(k as i32)
}

/// Spans and deltas of the populated buckets `positive`. A histogram with
/// none gets the no-op span that marks it native, as the format asks.
fn spans(positive: &[(i32, u64)]) -> (Vec<BucketSpan>, Vec<i64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::with_capacity(positive.len());
    let (mut next, mut previous) = (None, 0i64);
    for &(index, count) in positive {
        match (next, spans.last_mut()) {
            (Some(next), Some(span)) if next == index => span.length += 1,
            _ => spans.push(BucketSpan {
                offset: index - next.unwrap_or(0),
                length: 1,
            }),
        }
        next = Some(index + 1);
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        deltas.push(count - previous);
        previous = count;
    }
    if spans.is_empty() {
        spans.push(BucketSpan::default());
    }
    (spans, deltas)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn family(name: &str, kind: MetricKind, labels: &[&str], samples: Vec<(Vec<&str>, Value)>) -> Family {
        Family {
            name: name.to_string(),
            help: format!("{name} help, \"quoted\"\nand on two lines."),
            kind,
            label_names: labels.iter().map(|s| s.to_string()).collect(),
            samples: samples
                .into_iter()
                .map(|(values, value)| Sample {
                    label_values: values.into_iter().map(str::to_string).collect(),
                    value,
                })
                .collect(),
        }
    }

    fn histogram(buckets: &[(f64, u64)], count: u64, sum: f64) -> Value {
        Value::Histogram(Histogram {
            buckets: buckets.to_vec(),
            count,
            sum,
        })
    }

    /// A family `ebpf_x` of one label-less histogram.
    fn one_histogram(buckets: &[(f64, u64)], count: u64, sum: f64) -> Vec<Family> {
        vec![family(
            "ebpf_x",
            MetricKind::Histogram,
            &[],
            vec![(vec![], histogram(buckets, count, sum))],
        )]
    }

    /// Every message of a delimited body, in order.
    fn decode(mut body: &[u8]) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        while !body.is_empty() {
            families
                .push(MetricFamily::decode_length_delimited(&mut body).expect("a delimited MetricFamily"));
        }
        families
    }

    fn only_histogram(families: &[Family], native: bool) -> ProtoHistogram {
        let decoded = decode(&encode(families, native));
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].r#type, MetricType::Histogram as i32);
        decoded[0].metric[0].histogram.clone().expect("a histogram")
    }

    fn classic(bounds_and_counts: &[(f64, u64)]) -> Vec<Bucket> {
        bounds_and_counts
            .iter()
            .map(|&(upper_bound, cumulative_count)| Bucket {
                cumulative_count,
                upper_bound,
            })
            .collect()
    }

    fn span(offset: i32, length: u32) -> BucketSpan {
        BucketSpan { offset, length }
    }

    #[test]
    fn counters_gauges_and_labels_decode_back() {
        let families = vec![
            family(
                "ebpf_syscalls_total",
                MetricKind::Counter,
                &["syscall", "comm"],
                vec![
                    (vec!["read", "a\"b\\c\nd é"], Value::Counter(5)),
                    (vec!["write", ""], Value::Counter(u64::MAX)),
                ],
            ),
            family(
                "ebpf_busy_seconds_total",
                MetricKind::Counter,
                &[],
                vec![(vec![], Value::FloatCounter(0.25))],
            ),
            family(
                "ebpf_drops",
                MetricKind::Counter,
                &[],
                vec![(vec![], Value::Counter(0))],
            ),
            family(
                "ebpf_queue_depth",
                MetricKind::Gauge,
                &["queue"],
                vec![
                    (vec!["zero"], Value::Gauge(0.0)),
                    (vec!["nan"], Value::Gauge(f64::NAN)),
                    (vec!["low"], Value::Gauge(-3.5)),
                ],
            ),
        ];
        let decoded = decode(&encode(&families, false));
        let names: Vec<&str> = decoded.iter().map(|f| f.name.as_str()).collect();
        // Names as configured: no `_total` added or taken away.
        assert_eq!(
            names,
            [
                "ebpf_syscalls_total",
                "ebpf_busy_seconds_total",
                "ebpf_drops",
                "ebpf_queue_depth"
            ]
        );
        let syscalls = &decoded[0];
        assert_eq!(syscalls.help, families[0].help, "help goes as it is");
        assert_eq!(syscalls.r#type, MetricType::Counter as i32);
        assert_eq!(
            syscalls.metric[0].label,
            [
                LabelPair {
                    name: "syscall".into(),
                    value: "read".into()
                },
                LabelPair {
                    name: "comm".into(),
                    value: "a\"b\\c\nd é".into()
                },
            ]
        );
        assert_eq!(syscalls.metric[0].counter, Some(Counter { value: 5.0 }));
        assert_eq!(
            syscalls.metric[1].counter,
            Some(Counter {
                value: u64::MAX as f64
            })
        );
        assert_eq!(decoded[1].metric[0].counter, Some(Counter { value: 0.25 }));
        // A zero is sent as an empty message, which reads back as 0.
        assert_eq!(decoded[2].metric[0].counter, Some(Counter { value: 0.0 }));
        assert!(decoded[2].metric[0].label.is_empty());
        let depth = &decoded[3];
        assert_eq!(depth.r#type, MetricType::Gauge as i32);
        let values: Vec<f64> = depth
            .metric
            .iter()
            .map(|m| m.gauge.as_ref().unwrap().value)
            .collect();
        assert_eq!((values[0], values[2]), (0.0, -3.5));
        assert!(values[1].is_nan());
        assert!(depth
            .metric
            .iter()
            .all(|m| m.counter.is_none() && m.histogram.is_none()));
    }

    #[test]
    fn samples_and_families_the_text_formats_leave_out_are_left_out() {
        let families = vec![
            family("ebpf_empty_total", MetricKind::Counter, &[], vec![]),
            family(
                "ebpf_mixed_total",
                MetricKind::Counter,
                &["k"],
                vec![
                    (vec!["gauge"], Value::Gauge(1.0)),
                    (vec!["ok"], Value::Counter(2)),
                    (vec!["histogram"], histogram(&[], 0, 0.0)),
                ],
            ),
            family(
                "ebpf_only_wrong",
                MetricKind::Gauge,
                &[],
                vec![(vec![], Value::Counter(1))],
            ),
            family(
                "ebpf_uneven_total",
                MetricKind::Counter,
                &["a", "b"],
                vec![(vec!["only_a"], Value::Counter(1))],
            ),
        ];
        let decoded = decode(&encode(&families, true));
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].name, "ebpf_mixed_total");
        assert_eq!(decoded[0].metric.len(), 1);
        assert_eq!(decoded[0].metric[0].label[0].value, "ok");
        // Label names and values pair up as far as both go.
        assert_eq!(decoded[1].metric[0].label.len(), 1);
        assert!(encode::<Family>(&[], true).is_empty());
    }

    /// exp2 buckets 2^0 .. 2^4 of 1 unit, values 0 1 | 2 | 3 4 | 5 6 7 8 |
    /// 9..16 ×2 | and 3 above 16.
    fn exp2() -> Value {
        histogram(&[(1.0, 2), (2.0, 3), (4.0, 5), (8.0, 9), (16.0, 25)], 28, 400.0)
    }

    #[test]
    fn exp2_buckets_become_schema_0_one_for_one_beside_the_classic_ones() {
        let families = vec![family(
            "ebpf_x",
            MetricKind::Histogram,
            &[],
            vec![(vec![], exp2())],
        )];
        let h = only_histogram(&families, true);
        assert_eq!((h.sample_count, h.sample_sum), (28, 400.0));
        assert_eq!(
            h.bucket,
            classic(&[(1.0, 2), (2.0, 3), (4.0, 5), (8.0, 9), (16.0, 25)])
        );
        assert_eq!(h.schema, 0);
        // [0, 1]: the first bucket; then (1, 2] is index 1 … (8, 16] index
        // 4, and the 3 above 16 in (16, 32], index 5.
        assert_eq!((h.zero_threshold, h.zero_count), (1.0, 2));
        assert_eq!(h.positive_span, [span(1, 5)]);
        assert_eq!(h.positive_delta, [1, 1, 2, 12, -13]);
        let native: u64 = h.zero_count + 1 + 2 + 4 + 16 + 3;
        assert_eq!(native, h.sample_count);

        // Off: the same message without the native part.
        let classic_only = only_histogram(&families, false);
        assert_eq!(classic_only.bucket, h.bucket);
        assert_eq!(
            (
                classic_only.zero_threshold,
                classic_only.zero_count,
                classic_only.positive_span.len()
            ),
            (0.0, 0, 0)
        );
    }

    #[test]
    fn empty_buckets_are_left_out_between_spans() {
        // Multiplier 2^-10, bucket_min 3: 2^-7 .. 2^-2, with only the
        // buckets of 2^-6 and 2^-3 populated, nothing in the zero bucket,
        // nothing above.
        let unit = 2f64.powi(-10);
        let buckets: Vec<(f64, u64)> = [(3, 0), (4, 4), (5, 4), (6, 4), (7, 5), (8, 5)]
            .iter()
            .map(|&(i, c)| (unit * 2f64.powi(i), c))
            .collect();
        let families = vec![family(
            "ebpf_x_seconds",
            MetricKind::Histogram,
            &["op"],
            vec![(vec!["read"], histogram(&buckets, 5, 0.05))],
        )];
        let h = only_histogram(&families, true);
        assert_eq!((h.zero_threshold, h.zero_count), (unit * 8.0, 0));
        assert_eq!(h.positive_span, [span(-6, 1), span(2, 1)]);
        assert_eq!(h.positive_delta, [4, -3]);
    }

    #[test]
    fn exp2zero_folds_its_zero_bucket_into_the_next() {
        // le 0, 1, 2, 4: two zeros, one 1, one 2, two in (2, 4], one above.
        let families = one_histogram(&[(0.0, 2), (1.0, 3), (2.0, 4), (4.0, 6)], 7, 20.0);
        let h = only_histogram(&families, true);
        assert_eq!((h.zero_threshold, h.zero_count), (1.0, 3));
        assert_eq!(h.positive_span, [span(1, 3)]);
        assert_eq!(h.positive_delta, [1, 1, -1]);
        assert_eq!(h.bucket[0], classic(&[(0.0, 2)])[0]);
    }

    #[test]
    fn an_empty_native_histogram_carries_the_no_op_span() {
        let families = one_histogram(&[(1.0, 0), (2.0, 0)], 0, 0.0);
        let h = only_histogram(&families, true);
        assert_eq!((h.zero_threshold, h.zero_count), (1.0, 0));
        assert_eq!(h.positive_span, [span(0, 0)]);
        assert!(h.positive_delta.is_empty());
    }

    #[test]
    fn decimal_unit_exp2_buckets_become_the_native_buckets_of_the_nearest_powers_of_two() {
        // bucket_multiplier 1e-9 (ns to seconds), keys 10..=12: bounds
        // 1.024 µs, 2.048 µs, 4.096 µs, which are 2^-20, 2^-19, 2^-18
        // × 1.074. 2 observations in the first bucket, 3 in the second,
        // 0 in the third, 4 above it: 9 in all.
        for (multiplier, first) in [(1e-9, -20), (1e-6, -10), (1e-3, 0)] {
            let bound = |key: i32| multiplier * 2f64.powi(key);
            let families = one_histogram(&[(bound(10), 2), (bound(11), 5), (bound(12), 5)], 9, 1.0);
            let h = only_histogram(&families, true);
            assert_eq!(
                (h.zero_threshold, h.zero_count),
                (2f64.powi(first), 2),
                "{multiplier}"
            );
            // Index first+1 holds 3, first+3 (above the top) holds 4.
            assert_eq!(h.positive_span, [span(first + 1, 1), span(1, 1)], "{multiplier}");
            assert_eq!(h.positive_delta, [3, 1], "{multiplier}");
            assert_eq!(h.sample_count, 9);
            // The classic buckets keep their exact bounds.
            assert_eq!(h.bucket[1].upper_bound, bound(11));
            assert_eq!(classic_only(&families).count(), 0);
        }
    }

    #[test]
    fn buckets_that_are_not_powers_of_two_stay_classic() {
        let bounds = |multiplier: f64, i: i32| multiplier * 2f64.powi(i);
        let not_native = [
            // exp2 with bucket_multiplier 0.000003: 1.5 × 2^(i-18), half a
            // bucket from any power of two.
            vec![(bounds(3e-6, 0), 1), (bounds(3e-6, 1), 2), (bounds(3e-6, 2), 3)],
            // linear
            vec![(0.0, 1), (1.0, 2), (2.0, 3), (3.0, 4)],
            // powers of two that skip one
            vec![(1.0, 1), (4.0, 2)],
            // negative, subnormal, no buckets
            vec![(-1.0, 1), (-0.5, 2)],
            vec![(f64::MIN_POSITIVE / 2.0, 1)],
            vec![],
        ];
        for buckets in not_native {
            let families = one_histogram(&buckets, 5, 1.0);
            let h = only_histogram(&families, true);
            assert_eq!(h.bucket.len(), buckets.len(), "{buckets:?}");
            assert_eq!((h.zero_threshold, h.positive_span.len()), (0.0, 0), "{buckets:?}");
            assert_eq!(classic_only(&families).count(), 1, "{buckets:?}");
        }
        // Fixed keys that double: exact, so native. After a 0 key, the
        // zero bucket takes (0, 4] with [0, 0], as it does for exp2zero.
        for (buckets, zero, spans) in [
            // 1 in (1, 2], 1 above 4: buckets 1 and 3.
            (
                vec![(1.0, 1), (2.0, 2), (4.0, 2)],
                (1.0, 1),
                vec![span(1, 1), span(1, 1)],
            ),
            (vec![(0.0, 1), (4.0, 2), (8.0, 2)], (4.0, 2), vec![span(4, 1)]),
        ] {
            let fixed = one_histogram(&buckets, 3, 3.0);
            let h = only_histogram(&fixed, true);
            assert_eq!((h.zero_threshold, h.zero_count), zero, "{buckets:?}");
            assert_eq!(h.positive_span, spans, "{buckets:?}");
            assert_eq!(classic_only(&fixed).count(), 0);
        }
    }

    #[test]
    fn odd_counts_never_give_negative_buckets() {
        // A count decreasing along the buckets, a count below the top
        // bucket, and bounds that are not finite.
        let families = one_histogram(
            &[(1.0, 5), (2.0, 2), (f64::NAN, 9), (4.0, 8), (f64::INFINITY, 10)],
            6,
            f64::NAN,
        );
        let h = only_histogram(&families, true);
        assert_eq!(h.bucket, classic(&[(1.0, 5), (2.0, 5), (4.0, 8)]));
        assert_eq!(h.sample_count, 8);
        assert!(h.sample_sum.is_nan());
        assert_eq!((h.zero_threshold, h.zero_count), (1.0, 5));
        // (1, 2] empty; (2, 4] holds 3; nothing above 4.
        assert_eq!(h.positive_span, [span(2, 1)]);
        assert_eq!(h.positive_delta, [3]);
    }

    #[test]
    fn a_histogram_family_is_one_series_per_label_set() {
        let families = vec![family(
            "ebpf_x",
            MetricKind::Histogram,
            &["device", "operation"],
            vec![(vec!["sda", "read"], exp2()), (vec!["sda", "write"], exp2())],
        )];
        let decoded = decode(&encode(&families, true));
        assert_eq!(decoded[0].metric.len(), 2);
        assert_eq!(decoded[0].metric[1].label[1].value, "write");
    }
}
