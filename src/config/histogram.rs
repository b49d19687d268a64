//! `histograms:` entries → bucket keys and bounds, and the bucket label.
//!
//! The program writes bucket indexes and the exporter must know what bound
//! each one stands for: ebpf_exporter's bucket types are resolved here into
//! explicit (key, bound) pairs, checked against the map's room and its key,
//! so nothing after parsing needs to know about bucket types.

use serde_saphyr::Spanned;

use super::metric::Shape;
use super::raw::RawHistogram;
use super::validate::Validator;
use super::{HistogramSpec, LabelSpec, MetricSpec, MetricType};
use crate::programs::{MapMeta, ObjectInfo};

/// More buckets than any histogram needs; a bound keeps a typo like
/// `bucket_max: 1000000` from exporting a million series.
const MAX_BUCKETS: usize = 4096;

/// Integers above 2^53 cannot be told apart as f64 (the type YAML gives).
const MAX_EXACT_KEY: f64 = 9_007_199_254_740_992.0;

impl Validator<'_> {
    /// A `histograms:` entry: its buckets, then the checks every metric has;
    /// those run on bad buckets too, so every error of the entry is reported.
    pub(super) fn histogram(
        &mut self,
        path: &str,
        histogram: &Spanned<RawHistogram>,
        info: &ObjectInfo,
        prefix: &str,
    ) -> Option<MetricSpec> {
        let buckets = self.buckets(path, histogram);
        let placeholder = HistogramSpec {
            buckets: Vec::new(),
            sum_key: 0,
            multiplier: 1.0,
        };
        let valid = buckets.is_some();
        let kind = MetricType::Histogram(buckets.unwrap_or(placeholder));
        let shape = Shape {
            name: &histogram.value.name,
            help: &histogram.value.help,
            labels: &histogram.value.labels,
            at: histogram.referenced,
            events: None,
            flush_interval: None,
        };
        let spec = self.metric(path, kind, &shape, info, prefix);
        spec.filter(|_| valid)
    }

    /// A histogram's last key label is its bucket index: it must exist,
    /// decode to an integer, and the map must have room for every bucket.
    pub(super) fn check_bucket_label(
        &mut self,
        path: &str,
        shape: &Shape<'_>,
        key_labels: usize,
        resolved: Option<&LabelSpec>,
        map: Option<&MapMeta>,
        spec: &HistogramSpec,
    ) {
        let Some(bucket) = key_labels.checked_sub(1).map(|i| (i, &shape.labels[i])) else {
            self.error(
                shape.at,
                &format!("{path}.labels"),
                "a histogram needs its bucket index as the last key label, such as \
                 `- {name: bucket, size: 4, decoders: [{name: uint}]}`",
            );
            return;
        };
        let (i, label) = bucket;
        let ends_in_uint = label
            .value
            .decoders
            .last()
            .is_some_and(|d| d.value.name.value == "uint");
        if !ends_in_uint {
            self.error(
                label.referenced,
                &format!("{path}.labels[{i}].decoders"),
                format!(
                    "label {:?} is the bucket index (the last key label) and must decode to an integer: \
                     end its decoders with `{{name: uint}}`",
                    label.value.name.value
                ),
            );
        }
        if resolved.is_some_and(|b| b.size > 8) {
            self.error(
                label
                    .value
                    .size
                    .as_ref()
                    .map_or(label.referenced, |s| s.referenced),
                &format!("{path}.labels[{i}].size"),
                "the bucket index is an integer of at most 8 bytes",
            );
        }
        if let Some(map) = map {
            let entries = map.max_entries as usize;
            if entries < spec.buckets.len() {
                self.error(
                    shape.name.referenced,
                    &format!("{path}.name"),
                    format!(
                        "map {:?} holds {} entries but this histogram has {} buckets plus a sum slot: \
                         raise the map's max_entries or export fewer buckets",
                        map.name,
                        map.max_entries,
                        spec.buckets.len()
                    ),
                );
            } else if entries == spec.buckets.len() {
                // ebpf_exporter's programs often size the map for the
                // buckets alone, and it exports a sum of 0 then.
                tracing::warn!(
                    "{}:{}: {path}: map {:?} has room for the {} buckets but not the sum slot (key {}): \
                     the histogram's _sum stays 0; give the map one more entry and add each value \
                     at the sum key to export it",
                    self.file,
                    shape.name.referenced.line(),
                    map.name,
                    spec.buckets.len(),
                    spec.sum_key,
                );
            }
        }
    }

    /// Resolves the bucket settings into keys and bounds, with
    /// ebpf_exporter's meaning for each bucket type.
    fn buckets(&mut self, path: &str, histogram: &Spanned<RawHistogram>) -> Option<HistogramSpec> {
        let h = &histogram.value;
        let before = self.errors.len();
        let multiplier = match &h.bucket_multiplier {
            None => 1.0,
            Some(m) if m.value.is_finite() && m.value > 0.0 => m.value,
            Some(m) => {
                self.error(
                    m.referenced,
                    &format!("{path}.bucket_multiplier"),
                    format!(
                        "bucket_multiplier {} must be a positive number, such as 0.000001 to export \
                         microseconds as seconds",
                        m.value
                    ),
                );
                1.0
            }
        };
        let bucket_type = h.bucket_type.value.as_str();
        let keys: Vec<u64> = match bucket_type {
            "fixed" => self.fixed_keys(path, histogram),
            "exp2" | "exp2zero" | "linear" => {
                if let Some(keys) = &h.bucket_keys {
                    self.error(
                        keys.referenced,
                        &format!("{path}.bucket_keys"),
                        format!("bucket_keys are only used by `bucket_type: fixed`; remove them for {bucket_type}"),
                    );
                }
                self.index_range(path, histogram, bucket_type)
            }
            other => {
                self.error(
                    h.bucket_type.referenced,
                    &format!("{path}.bucket_type"),
                    format!("unknown bucket_type {other:?} (known: exp2, exp2zero, linear, fixed)"),
                );
                Vec::new()
            }
        };
        if self.errors.len() > before || keys.is_empty() {
            return None;
        }
        let bound = |key: u64| -> f64 {
            let key = key as f64;
            let unscaled = match bucket_type {
                "exp2" => key.exp2(),
                "exp2zero" if key == 0.0 => 0.0,
                "exp2zero" => (key - 1.0).exp2(),
                _ => key,
            };
            unscaled * multiplier
        };
        let sum_key = keys[keys.len() - 1] + 1;
        Some(HistogramSpec {
            buckets: keys.into_iter().map(|k| (k, bound(k))).collect(),
            sum_key,
            multiplier,
        })
    }

    /// `bucket_min..=bucket_max`, checked.
    fn index_range(&mut self, path: &str, histogram: &Spanned<RawHistogram>, bucket_type: &str) -> Vec<u64> {
        let h = &histogram.value;
        let Some(max) = &h.bucket_max else {
            self.error(
                histogram.referenced,
                &format!("{path}.bucket_max"),
                "bucket_max is missing: give the top bucket index, the max_bucket the program passes \
                 to its histogram helper",
            );
            return Vec::new();
        };
        let min = h.bucket_min.as_ref().map_or(0, |m| m.value);
        let min_at = h.bucket_min.as_ref().map_or(max.referenced, |m| m.referenced);
        if min < 0 {
            self.error(
                min_at,
                &format!("{path}.bucket_min"),
                format!("bucket_min {min} is negative: bucket indexes start at 0"),
            );
            return Vec::new();
        }
        if max.value < min {
            self.error(
                max.referenced,
                &format!("{path}.bucket_max"),
                format!(
                    "bucket_max {} is below bucket_min {min}: the top bucket must not be below the first",
                    max.value
                ),
            );
            return Vec::new();
        }
        // ceil(log2) of a u64 is at most 64; exp2zero shifts indexes by one.
        let top = match bucket_type {
            "exp2" => 64,
            "exp2zero" => 65,
            // Saturating: bucket_min may be anything up to i64::MAX.
            _ => min.saturating_add(MAX_BUCKETS as i64 - 1),
        };
        if max.value > top {
            self.error(
                max.referenced,
                &format!("{path}.bucket_max"),
                if bucket_type == "linear" {
                    format!("bucket_max {} gives more than {MAX_BUCKETS} buckets", max.value)
                } else {
                    format!("bucket_max {} is past the last {bucket_type} bucket a 64-bit value can reach ({top})", max.value)
                },
            );
            return Vec::new();
        }
        (min as u64..=max.value as u64).collect()
    }

    /// `bucket_keys` of a fixed histogram: integers, increasing.
    fn fixed_keys(&mut self, path: &str, histogram: &Spanned<RawHistogram>) -> Vec<u64> {
        let keys_path = format!("{path}.bucket_keys");
        let Some(keys) = &histogram.value.bucket_keys else {
            self.error(
                histogram.referenced,
                &keys_path,
                "`bucket_type: fixed` needs bucket_keys: the bucket keys the program writes, each the upper \
                 bound of its bucket, such as [1, 5, 10, 50]",
            );
            return Vec::new();
        };
        let mut out: Vec<u64> = Vec::new();
        for (i, &key) in keys.value.iter().enumerate() {
            // Keys are compared with the integer bucket label of the map.
            if !(key >= 0.0 && key.fract() == 0.0 && key < MAX_EXACT_KEY) {
                self.error(
                    keys.referenced,
                    &keys_path,
                    format!("bucket_keys[{i}] is {key}: bucket keys are whole numbers from 0 to 2^53"),
                );
                return Vec::new();
            }
            let key = key as u64;
            if out.last().is_some_and(|&last| key <= last) {
                self.error(
                    keys.referenced,
                    &keys_path,
                    format!("bucket_keys[{i}] ({key}) is not above the key before it: list the keys in increasing order"),
                );
                return Vec::new();
            }
            out.push(key);
        }
        if out.is_empty() {
            self.error(
                keys.referenced,
                &keys_path,
                "bucket_keys is empty: list at least one bucket key",
            );
        }
        if out.len() > MAX_BUCKETS {
            self.error(
                keys.referenced,
                &keys_path,
                format!("more than {MAX_BUCKETS} bucket keys"),
            );
            return Vec::new();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::{assert_error, source, HISTOGRAM};
    use crate::config::{parse, HistogramSpec, MetricType};

    fn histogram(text: &str) -> HistogramSpec {
        let config = parse(&source("syscalls", text), "ebpf_").unwrap_or_else(|e| panic!("{e}"));
        let metric = &config.metrics[0];
        assert!(
            metric.label_names().is_empty(),
            "the bucket label is not exported"
        );
        match &metric.kind {
            MetricType::Histogram(h) => h.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn histogram_bounds_follow_the_bucket_type() {
        let exp2 = histogram(HISTOGRAM);
        assert_eq!(exp2.buckets, [(2, 2.0), (3, 4.0), (4, 8.0)]);
        assert_eq!((exp2.sum_key, exp2.multiplier), (5, 0.5));
        let exp2zero = histogram(
            &HISTOGRAM
                .replace("exp2", "exp2zero")
                .replace("bucket_min: 2", "bucket_min: 0"),
        );
        assert_eq!(
            exp2zero.buckets,
            [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)]
        );
        let linear = histogram(&HISTOGRAM.replace("exp2", "linear"));
        assert_eq!(linear.buckets, [(2, 1.0), (3, 1.5), (4, 2.0)]);
        let fixed = histogram(&HISTOGRAM.replace("exp2", "fixed").replace(
            "      bucket_min: 2\n      bucket_max: 4\n",
            "      bucket_keys: [1, 5, 10]\n",
        ));
        assert_eq!(
            (fixed.buckets, fixed.sum_key),
            (vec![(1, 0.5), (5, 2.5), (10, 5.0)], 11)
        );
        // ebpf_exporter's defaults: bucket_min 0, multiplier 1.
        let defaults = histogram(
            &HISTOGRAM
                .replace("      bucket_min: 2\n", "")
                .replace("      bucket_multiplier: 0.5\n", ""),
        );
        assert_eq!(defaults.buckets[0], (0, 1.0));
        assert_eq!(defaults.multiplier, 1.0);
    }

    #[test]
    fn bad_histogram_settings_are_refused_with_their_place() {
        let place = "configs/syscalls.yaml";
        assert_error(
            "syscalls",
            &HISTOGRAM.replace("bucket_max: 4", "bucket_max: 1"),
            &format!("{place}:7:19: metrics.histograms[0].bucket_max:"),
            "bucket_max 1 is below bucket_min 2",
        );
        assert_error(
            "syscalls",
            &HISTOGRAM.replace("bucket_type: exp2", "bucket_type: fixed"),
            &format!("{place}:3:7: metrics.histograms[0].bucket_keys:"),
            "`bucket_type: fixed` needs bucket_keys",
        );
        assert_error(
            "syscalls",
            &HISTOGRAM.replace("bucket_type: exp2", "bucket_type: log2"),
            &format!("{place}:5:20: metrics.histograms[0].bucket_type:"),
            "unknown bucket_type \"log2\" (known: exp2, exp2zero, linear, fixed)",
        );
        for bad in ["0", "-1", ".nan"] {
            assert_error(
                "syscalls",
                &HISTOGRAM.replace("bucket_multiplier: 0.5", &format!("bucket_multiplier: {bad}")),
                &format!("{place}:8:26: metrics.histograms[0].bucket_multiplier:"),
                "must be a positive number",
            );
        }
        assert_error(
            "syscalls",
            &HISTOGRAM.replace(
                "decoders: [{name: uint}]",
                "decoders: [{name: uint}, {name: syscall}]",
            ),
            &format!("{place}:10:11: metrics.histograms[0].labels[0].decoders:"),
            "must decode to an integer",
        );
        assert_error(
            "syscalls",
            &HISTOGRAM.replace("exp2", "fixed").replace(
                "      bucket_min: 2\n      bucket_max: 4\n",
                "      bucket_keys: [1, 2.5]\n",
            ),
            &format!("{place}:6:20: metrics.histograms[0].bucket_keys:"),
            "bucket_keys[1] is 2.5",
        );
        assert_error(
            "syscalls",
            &HISTOGRAM.replace("exp2", "fixed").replace(
                "      bucket_min: 2\n      bucket_max: 4\n",
                "      bucket_keys: [5, 1]\n",
            ),
            &format!("{place}:6:20: metrics.histograms[0].bucket_keys:"),
            "increasing order",
        );
        // The map holds 1024 entries.
        assert_error(
            "syscalls",
            &HISTOGRAM
                .replace("exp2", "linear")
                .replace("bucket_max: 4", "bucket_max: 2000"),
            &format!("{place}:3:13: metrics.histograms[0].name:"),
            "holds 1024 entries but this histogram has 1999 buckets plus a sum slot",
        );
        // Room for the buckets but not the sum, as ebpf_exporter's programs
        // often size it: accepted, the sum stays 0.
        let exact = HISTOGRAM
            .replace("exp2", "linear")
            .replace("bucket_max: 4", "bucket_max: 1025");
        let config =
            crate::config::parse(&source("syscalls", &exact), "ebpf_").unwrap_or_else(|e| panic!("{e}"));
        let MetricType::Histogram(h) = &config.metrics[0].kind else {
            panic!("not a histogram");
        };
        assert_eq!((h.buckets.len(), h.sum_key), (1024, 1026));
        assert_error(
            "syscalls",
            &HISTOGRAM.replace("bucket_max: 4", "bucket_max: 70"),
            &format!("{place}:7:19: metrics.histograms[0].bucket_max:"),
            "past the last exp2 bucket a 64-bit value can reach (64)",
        );
        assert_error(
            "syscalls",
            &HISTOGRAM.replace("      bucket_max: 4\n", ""),
            &format!("{place}:3:7: metrics.histograms[0].bucket_max:"),
            "bucket_max is missing",
        );
        assert_error(
            "syscalls",
            &HISTOGRAM.replace(
                "bucket_type: exp2\n",
                "bucket_type: exp2\n      bucket_keys: [1]\n",
            ),
            &format!("{place}:6:20: metrics.histograms[0].bucket_keys:"),
            "only used by `bucket_type: fixed`",
        );
        let no_labels = &HISTOGRAM[..HISTOGRAM.find("      labels:").unwrap()];
        assert_error(
            "syscalls",
            no_labels,
            &format!("{place}:3:7: metrics.histograms[0].labels:"),
            "needs its bucket index as the last key label",
        );
    }

    #[test]
    fn linear_bucket_min_near_i64_max_does_not_overflow() {
        let top = i64::MAX;
        let linear = |min: i64, max: i64| {
            HISTOGRAM
                .replace("exp2", "linear")
                .replace("bucket_min: 2", &format!("bucket_min: {min}"))
                .replace("bucket_max: 4", &format!("bucket_max: {max}"))
        };
        let h = histogram(&linear(top - 1, top));
        assert_eq!(
            h.buckets.iter().map(|b| b.0).collect::<Vec<_>>(),
            [top as u64 - 1, top as u64]
        );
        assert_eq!(h.sum_key, top as u64 + 1);
        // A range wider than MAX_BUCKETS up there is still refused.
        assert_error(
            "syscalls",
            &linear(top - 5000, top),
            "configs/syscalls.yaml:7:19: metrics.histograms[0].bucket_max:",
            "gives more than 4096 buckets",
        );
    }
}
