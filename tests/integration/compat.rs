//! Programs written for ebpf_exporter, as users bring them along:
//! `tests/bpf/ebpf-exporter-compat.bpf.c` has a `-` in its file name,
//! includes `<linux/errno.h>` and counts with the helpers of ebpf_exporter's
//! `maps.bpf.h`. Driven through the truth target's `truth_observe`, every
//! number must be the one ebpf_exporter's helpers give.

use std::collections::BTreeMap;

use bpf_exporter::metrics::{Histogram, Value};
use bpf_exporter::reader::Reader;

use crate::common::*;
use crate::truth::Truth;

/// The name `ebpf-exporter-compat.bpf.c` is embedded under.
const PROGRAM: &str = "ebpf_exporter_compat";
const PROBES: &[(&str, &str)] = &[("observe", "truth_observe")];
/// MAX_BUCKET of the program.
const MAX_BUCKET: u32 = 10;

fn start(metrics: &str) -> Truth {
    Truth::start_program(PROGRAM, PROBES, metrics, Reader::default())
}

/// Every value once, then again in a different order: ENOENT (2) once,
/// EINVAL (22) three times and last, values past the top bucket (2^10).
fn values() -> Vec<u64> {
    let mut values = vec![
        0,
        1,
        2,
        3,
        3,
        4,
        5,
        7,
        8,
        9,
        22,
        1000,
        1023,
        1024,
        1025,
        5000,
        1 << 40,
    ];
    values.extend([22, 22]);
    values
}

fn observe(truth: &mut Truth, values: &[u64]) {
    let words: Vec<String> = values.iter().map(u64::to_string).collect();
    truth.run(&format!("observe {}", words.join(" ")));
}

const COUNTERS: &str = "metrics:
  counters:
    - name: compat_calls_total
      help: Calls by argument, increment_map.
      labels:
        - name: value
          size: 8
          decoders: [{name: uint}]
    - name: compat_percpu_calls_total
      help: Calls by argument, increment_map_nosync on a per-CPU map.
      labels:
        - name: value
          size: 8
          decoders: [{name: uint}]
    - name: compat_errno_total
      help: Calls whose argument is ENOENT or EINVAL, lookup_or_zero_init_key.
      labels:
        - name: errno
          size: 4
          decoders: [{name: uint}, {name: errno}]
    - name: compat_observed_total
      help: Every call, read_array_ptr.
  gauges:
    - name: compat_last_count
      help: What increment_map returned last.
";

#[test]
fn ebpf_exporter_program_from_a_dashed_file_name_counts_every_call_with_its_helpers() {
    if !bpf_available() {
        return;
    }
    assert!(bpf_exporter::programs::find(PROGRAM).is_some());
    let mut truth = start(COUNTERS);
    let values = values();
    observe(&mut truth, &values);
    let snapshot = truth.read();

    let mut calls: BTreeMap<u64, u64> = BTreeMap::new();
    for v in &values {
        *calls.entry(*v).or_default() += 1;
    }
    for name in ["ebpf_compat_calls_total", "ebpf_compat_percpu_calls_total"] {
        let expected: BTreeMap<Vec<String>, Value> = calls
            .iter()
            .map(|(v, n)| (vec![v.to_string()], Value::Counter(*n)))
            .collect();
        assert_eq!(series(&snapshot, name), expected, "{name}");
    }
    // The values of <linux/errno.h>, named back by the errno decoder.
    let errno = |code: &str| counter(&snapshot, "ebpf_compat_errno_total", &[("errno", code)]);
    assert_eq!((errno("ENOENT"), errno("EINVAL")), (1, 3));
    assert_eq!(series(&snapshot, "ebpf_compat_errno_total").len(), 2);
    assert_eq!(
        counter(&snapshot, "ebpf_compat_observed_total", &[]),
        values.len() as u64
    );
    // increment_map returns the count after its add: the third 22.
    assert_eq!(gauge(&snapshot, "ebpf_compat_last_count", &[]), 3.0);

    observe(&mut truth, &[22]);
    assert_eq!(gauge(&truth.read(), "ebpf_compat_last_count", &[]), 4.0);
}

/// floor(log2(v)), 0 for 0: ebpf_exporter's log2l().
fn log2l(v: u64) -> u32 {
    v.checked_ilog2().unwrap_or(0)
}

/// What a histogram of ebpf_exporter's helpers exports after `values`:
/// value v counted in bucket `bucket(v)`, clamped to the top one, whose
/// bound is `le(i)`; the count and sum of every value.
fn model(values: &[u64], bucket: fn(u64) -> u32, le: fn(u32) -> f64) -> Histogram {
    let buckets: Vec<u32> = values.iter().map(|&v| bucket(v).min(MAX_BUCKET)).collect();
    Histogram {
        buckets: (0..=MAX_BUCKET)
            .map(|i| (le(i), buckets.iter().filter(|&&b| b <= i).count() as u64))
            .collect(),
        count: values.len() as u64,
        sum: values.iter().sum::<u64>() as f64,
    }
}

fn exp2(v: u64) -> u32 {
    log2l(v)
}

fn exp2zero(v: u64) -> u32 {
    if v == 0 {
        0
    } else {
        log2l(v) + 1
    }
}

fn exp2_le(i: u32) -> f64 {
    2f64.powi(i as i32)
}

fn exp2zero_le(i: u32) -> f64 {
    if i == 0 {
        0.0
    } else {
        exp2_le(i - 1)
    }
}

#[test]
fn ebpf_exporter_histogram_helpers_floor_and_clamp_as_there() {
    if !bpf_available() {
        return;
    }
    let mut config = String::from("metrics:\n  histograms:\n");
    for (name, kind) in [
        ("compat_exp2", "exp2"),
        ("compat_exp2_nosync", "exp2"),
        ("compat_exp2zero", "exp2zero"),
        ("compat_exp2zero_nosync", "exp2zero"),
    ] {
        config.push_str(&format!(
            "    - name: {name}\n      help: truth_observe arguments.\n      bucket_type: {kind}\n      \
             bucket_max: {MAX_BUCKET}\n      labels:\n        - name: bucket\n          size: 4\n          \
             decoders: [{{name: uint}}]\n"
        ));
    }
    let mut truth = start(&config);
    let values = values();
    // In two commands, read between them: the counts add up.
    let (first, rest) = values.split_at(7);
    for (part, seen) in [(first, first.len()), (rest, values.len())] {
        observe(&mut truth, part);
        let snapshot = truth.read();
        for (name, bucket, le) in [
            (
                "ebpf_compat_exp2",
                exp2 as fn(u64) -> u32,
                exp2_le as fn(u32) -> f64,
            ),
            ("ebpf_compat_exp2_nosync", exp2, exp2_le),
            ("ebpf_compat_exp2zero", exp2zero, exp2zero_le),
            ("ebpf_compat_exp2zero_nosync", exp2zero, exp2zero_le),
        ] {
            assert_eq!(
                histogram(&snapshot, name, &[]),
                model(&values[..seen], bucket, le),
                "{name} after {seen} values"
            );
        }
    }

    // Worked out by hand: floor, so 3 3 and 2 are under le="2" with 0 1
    // (ebpf_exporter's bucketing; histogram.bpf.h would count 3 under 4),
    // and the values above 1024 are clamped into it: it holds them all.
    let snapshot = truth.read();
    let exp2 = histogram(&snapshot, "ebpf_compat_exp2", &[]);
    let le = |h: &Histogram, bound: f64| h.buckets.iter().find(|b| b.0 == bound).unwrap().1;
    assert_eq!(le(&exp2, 1.0), 2);
    assert_eq!(le(&exp2, 2.0), 5);
    assert_eq!(le(&exp2, 1024.0), values.len() as u64);
    assert_eq!(exp2.sum, values.iter().sum::<u64>() as f64);
    let zero = histogram(&snapshot, "ebpf_compat_exp2zero", &[]);
    assert_eq!(zero.buckets[0], (0.0, 1));
    assert_eq!(zero.buckets[1], (1.0, 2));
    assert_eq!(zero.buckets[2], (2.0, 5));
}
