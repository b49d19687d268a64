//! The truth harness: a target process (`tests/target/truth_target.c`)
//! calls probe functions exactly when told, `tests/bpf/truth.bpf.c` records
//! each call through uprobes, and tests compare every exported series with
//! what they asked for. No ranges: a number is right or the test fails.
//! Decoders are checked the same way: a label value is exactly the text
//! expected for the bytes the kernel wrote.
//!
//! Each [`Truth`] has its own target process and its own loaded object,
//! attached with `pid:` set to that process, so tests running in parallel
//! never see each other's calls.
//!
//! ```ignore
//! let mut truth = Truth::start("metrics:\n  counters:\n    - name: truth_calls_total\n ...");
//! truth.run("observe 1 2 3");
//! let snapshot = truth.read();
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use bpf_exporter::config::{Listing, Source};
use bpf_exporter::exporter::Exporter;
use bpf_exporter::metrics::{Histogram, Snapshot, Value};
use bpf_exporter::reader::cache::LabelCache;
use bpf_exporter::reader::{Reader, DEFAULT_CACHE_SIZE, DEFAULT_REFRESH};
use bpf_exporter::reload::LoadSettings;

use crate::common::*;

/// The target binary, built by `build.rs`.
pub const TARGET: &str = env!("BPF_EXPORTER_TRUTH_TARGET");

/// A running target process, driven over its stdin.
pub struct Target {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: i32,
}

impl Target {
    /// Starts the target and waits until it is ready.
    pub fn spawn() -> Target {
        let mut child = Command::new(TARGET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {TARGET}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut target = Target {
            child,
            stdin,
            stdout,
            pid: 0,
        };
        let line = target.line();
        target.pid = line
            .strip_prefix("ready ")
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("truth_target said {line:?} instead of `ready <pid>`"));
        assert_eq!(target.pid as u32, target.child.id());
        target
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends one command and waits for its `ok`: once it returns, every
    /// probe call the command made has been recorded.
    pub fn run(&mut self, command: &str) {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("sending {command:?} to truth_target: {e}"));
        let line = self.line();
        assert_eq!(line, "ok", "truth_target answered {command:?} with {line:?}");
    }

    /// The next line of output; a target that died is reported with its
    /// stderr.
    fn line(&mut self) -> String {
        let mut line = String::new();
        if self.stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let mut stderr = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!(
                "truth_target exited ({:?}): {}",
                self.child.wait(),
                stderr.trim_end()
            );
        }
        line.trim_end().to_string()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every uprobe program of `truth.bpf.c` and the target function it
/// probes: each needs an attach entry. Adding a probe is a line here, a
/// `SEC("uprobe")` program and a `PROBE` function with its command.
pub const PROBES: &[(&str, &str)] = &[
    ("observe", "truth_observe"),
    ("gauge_set", "truth_gauge_set"),
    ("string_seen", "truth_string"),
    ("ip_seen", "truth_ip"),
];

/// A config for the `truth` program: `metrics` (a YAML `metrics:` section)
/// plus attach entries aiming every uprobe at the target process `pid`.
pub fn source(metrics: &str, pid: i32) -> Source {
    program_source("truth", PROBES, metrics, pid)
}

/// [`source`] for another embedded program whose uprobes, `probes`, probe
/// the target's functions.
pub fn program_source(name: &str, probes: &[(&str, &str)], metrics: &str, pid: i32) -> Source {
    let mut text = metrics.trim_end().to_string();
    text.push_str("\nattach:\n");
    for (program, function) in probes {
        text.push_str(&format!(
            "  - program: {program}\n    uprobe:\n      binary: {TARGET}\n      function: {function}\n      \
             pid: {pid}\n"
        ));
    }
    Source {
        name: name.into(),
        origin: format!("test:{name}-{pid}.yaml"),
        text,
        ..Default::default()
    }
}

/// A target process with the truth program attached to it and read by an
/// [`Exporter`].
pub struct Truth {
    reader: Exporter,
    pub target: Target,
}

impl Truth {
    /// Starts a target and loads the truth program with `metrics` for it;
    /// every program must attach.
    pub fn start(metrics: &str) -> Truth {
        Truth::start_with(metrics, Reader::default())
    }

    /// [`Truth::start`], read by `reader`.
    pub fn start_with(metrics: &str, reader: Reader) -> Truth {
        Truth::start_program("truth", PROBES, metrics, reader)
    }

    /// [`Truth::start_with`] for another embedded program (see
    /// [`program_source`]).
    pub fn start_program(name: &str, probes: &[(&str, &str)], metrics: &str, reader: Reader) -> Truth {
        let target = Target::spawn();
        let listing = Listing::from(vec![program_source(name, probes, metrics, target.pid())]);
        let (reader, _) = Exporter::start(&listing, LoadSettings::default(), reader);
        assert_all_good(&reader.statuses());
        Truth { reader, target }
    }

    /// Runs one target command (see `truth_target.c`) and waits for it.
    pub fn run(&mut self, command: &str) {
        self.target.run(command);
    }

    pub fn read(&mut self) -> Snapshot {
        self.reader.read()
    }
}

/// The CPUs this process may run on: the ones `pinned` threads can use.
pub fn usable_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0, "sched_getaffinity: {}", std::io::Error::last_os_error());
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Every series of counter `name`, by label values.
fn counters(snapshot: &Snapshot, name: &str) -> BTreeMap<Vec<String>, u64> {
    series(snapshot, name)
        .into_iter()
        .map(|(labels, value)| match value {
            Value::Counter(v) => (labels, v),
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .collect()
}

/// The families exported from maps (the exporter's own are `bpf_exporter_*`).
fn family_names(snapshot: &Snapshot) -> Vec<&str> {
    snapshot
        .families
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| n.starts_with("ebpf_"))
        .collect()
}

fn label_names<'a>(snapshot: &'a Snapshot, name: &str) -> &'a [String] {
    &family(snapshot, name).label_names
}

const CALLS: &str = "metrics:
  counters:
    - name: truth_calls_total
      help: Calls of truth_observe, by argument.
      labels:
        - name: value
          size: 8
          decoders: [{name: uint}]
";

#[test]
fn truth_counter_counts_every_argument_exactly() {
    if !bpf_available() {
        return;
    }
    let mut truth = Truth::start(CALLS);
    let snapshot = truth.read();
    assert_eq!(family_names(&snapshot), ["ebpf_truth_calls_total"]);
    assert!(counters(&snapshot, "ebpf_truth_calls_total").is_empty());

    let values: Vec<u64> = [0, 0, 1, 2, 2, 2, 3, 4, 8, 1024, 12_345, 1 << 32, 1 << 63]
        .into_iter()
        .chain([u64::MAX - 1, u64::MAX, u64::MAX, 0])
        .chain((0..64).map(|i| 1u64 << i))
        .collect();
    // In several commands, so the counts also add up across them.
    for chunk in values.chunks(7) {
        let words: Vec<String> = chunk.iter().map(u64::to_string).collect();
        truth.run(&format!("observe {}", words.join(" ")));
    }
    let mut expected: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for v in &values {
        *expected.entry(vec![v.to_string()]).or_default() += 1;
    }

    let snapshot = truth.read();
    assert_eq!(label_names(&snapshot, "ebpf_truth_calls_total"), ["value"]);
    assert_eq!(counters(&snapshot, "ebpf_truth_calls_total"), expected);
    // Spot checks, written out.
    let count = |v: &str| counter(&snapshot, "ebpf_truth_calls_total", &[("value", v)]);
    assert_eq!(count("0"), 3);
    assert_eq!(count("2"), 4);
    assert_eq!(count("1"), 2);
    assert_eq!(count("18446744073709551615"), 2);
    assert_eq!(count("9223372036854775808"), 2);
    assert_eq!(count("12345"), 1);
    assert_eq!(
        counter_sum(&snapshot, "ebpf_truth_calls_total"),
        values.len() as u64
    );
}

/// The cardinality guard: a map holding more label sets than the config's
/// `series_limit` exports only that many, counts the others once each in
/// `bpf_exporter_series_dropped_total` and names the family in the
/// snapshot; the series it does export keep their exact counts, and those
/// left out come in once the program's keys leave the map.
#[test]
fn truth_series_limit_exports_that_many_series_exactly_and_counts_the_rest_once() {
    if !bpf_available() {
        return;
    }
    let mut truth = Truth::start(&format!("series_limit: 5\n{CALLS}"));
    // Value v is observed v times: 20 label sets, 210 calls.
    let values: Vec<String> = (1..=20u64)
        .flat_map(|v| std::iter::repeat_n(v.to_string(), v as usize))
        .collect();
    truth.run(&format!("observe {}", values.join(" ")));
    let dropped = |snapshot: &Snapshot| {
        counter(
            snapshot,
            "bpf_exporter_series_dropped_total",
            &[("config", "truth"), ("metric", "ebpf_truth_calls_total")],
        )
    };
    for _ in 0..2 {
        let snapshot = truth.read();
        let exported = counters(&snapshot, "ebpf_truth_calls_total");
        assert_eq!(exported.len(), 5, "{exported:?}");
        for (labels, count) in &exported {
            assert_eq!(
                labels[0].parse::<u64>().unwrap(),
                *count,
                "value v was observed v times"
            );
        }
        assert_eq!(
            dropped(&snapshot),
            15,
            "each label set left out counts once, however often it is read"
        );
        assert_eq!(snapshot.series_limited.len(), 1);
        assert_eq!(
            (
                snapshot.series_limited[0].limit,
                snapshot.series_limited[0].dropped
            ),
            (5, 15)
        );
    }
    // Under the limit nothing is left out.
    let mut truth = Truth::start(&format!("series_limit: 20\n{CALLS}"));
    truth.run(&format!("observe {}", values.join(" ")));
    let snapshot = truth.read();
    assert_eq!(counters(&snapshot, "ebpf_truth_calls_total").len(), 20);
    assert_eq!(counter_sum(&snapshot, "ebpf_truth_calls_total"), 210);
    assert_eq!(dropped(&snapshot), 0);
    assert!(snapshot.series_limited.is_empty());
}

#[test]
fn truth_pid_filter_ignores_calls_from_other_processes() {
    if !bpf_available() {
        return;
    }
    let mut truth = Truth::start(CALLS);
    let mut other = Target::spawn();
    other.run("observe 77 77");
    truth.run("observe 1");
    other.run("observe 1");
    let snapshot = truth.read();
    assert_eq!(
        counters(&snapshot, "ebpf_truth_calls_total"),
        BTreeMap::from([(vec!["1".to_string()], 1)])
    );
}

#[test]
fn truth_uprobe_that_cannot_attach_fails_its_program_alone_and_names_binary_and_function() {
    use bpf_exporter::exporter::report;
    if !bpf_available() {
        return;
    }
    let mut target = Target::spawn();
    let pid = target.pid();
    let mut missing_symbol = source(CALLS, pid);
    missing_symbol.text = missing_symbol
        .text
        .replace("function: truth_observe", "function: truth_nosuch");
    let mut missing_binary = source(CALLS, pid);
    missing_binary.text = missing_binary.text.replacen(
        &format!("binary: {TARGET}"),
        "binary: /nonexistent/truth_target",
        1,
    );
    // Apart: both export the same metric.
    let (mut reader, _) = Exporter::with_sources(&[missing_symbol]);
    let (mut other, _) = Exporter::with_sources(&[missing_binary]);
    let outcomes = [reader.statuses(), other.statuses()].concat();
    let status = |i: usize, name: &str| {
        outcomes[i]
            .programs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no program {name} in {}", report(&outcomes)))
            .clone()
    };
    for i in 0..2 {
        for (program, _) in PROBES.iter().filter(|(p, _)| *p != "observe") {
            assert!(status(i, program).attached, "{}", report(&outcomes));
        }
        assert!(!status(i, "observe").attached, "{}", report(&outcomes));
    }
    let error = status(0, "observe").error.unwrap();
    assert!(
        error.starts_with(&format!(
            "attaching a uprobe to truth_nosuch in {TARGET} (pid {pid}) failed: "
        )) && error.contains("has no function \"truth_nosuch\""),
        "{error}"
    );
    let error = status(1, "observe").error.unwrap();
    assert_eq!(
        error,
        format!(
            "attaching a uprobe to truth_observe in /nonexistent/truth_target (pid {pid}) failed: there is \
             no file /nonexistent/truth_target: fix attach.uprobe.binary"
        )
    );
    // The programs that attached still record.
    target.run("observe 5");
    target.run("gauge 3");
    drop(reader.read());
    drop(other.read());
}

/// `pinned` work for every usable CPU, a different call count on each.
fn pinned_on_every_cpu(value: u64) -> (String, BTreeMap<usize, u64>) {
    let mut command = String::from("pinned");
    let mut calls = BTreeMap::new();
    for (i, cpu) in usable_cpus().into_iter().enumerate() {
        let count = 100 + 37 * i as u64;
        command.push_str(&format!(" {cpu} {count} {value}"));
        calls.insert(cpu, count);
    }
    (command, calls)
}

#[test]
fn truth_percpu_counter_splits_by_cpu_exactly_and_sums_without_the_cpu_label() {
    if !bpf_available() {
        return;
    }
    let possible = libbpf_rs::num_possible_cpus().unwrap();
    let split = "metrics:
  counters:
    - name: truth_percpu_calls_total
      help: Calls of truth_observe, per CPU.
      labels:
        - name: cpu
          size: 2
          decoders: [{name: uint}]
";
    let mut truth = Truth::start(split);
    let (command, calls) = pinned_on_every_cpu(5);
    truth.run(&command);
    let snapshot = truth.read();
    assert_eq!(label_names(&snapshot, "ebpf_truth_percpu_calls_total"), ["cpu"]);
    let expected: BTreeMap<Vec<String>, u64> = (0..possible)
        .map(|cpu| (vec![cpu.to_string()], calls.get(&cpu).copied().unwrap_or(0)))
        .collect();
    assert_eq!(counters(&snapshot, "ebpf_truth_percpu_calls_total"), expected);
    // The first usable CPU made 100 calls.
    let first = calls.keys().next().unwrap().to_string();
    assert_eq!(
        counter(&snapshot, "ebpf_truth_percpu_calls_total", &[("cpu", &first)]),
        100
    );
    // A second round adds to each CPU's own count.
    truth.run(&command);
    let snapshot = truth.read();
    for (cpu, count) in &calls {
        let cpu = cpu.to_string();
        assert_eq!(
            counter(&snapshot, "ebpf_truth_percpu_calls_total", &[("cpu", &cpu)]),
            2 * count,
            "cpu {cpu}"
        );
    }

    let summed = split.split("      labels:").next().unwrap();
    let mut truth = Truth::start(summed);
    truth.run(&command);
    truth.run("observe 1 2 3");
    let snapshot = truth.read();
    assert!(label_names(&snapshot, "ebpf_truth_percpu_calls_total").is_empty());
    assert_eq!(
        counters(&snapshot, "ebpf_truth_percpu_calls_total"),
        BTreeMap::from([(vec![], calls.values().sum::<u64>() + 3)])
    );
}

// ---------------------------------------------------------------------------
// Histograms and gauges.

/// A histogram's bucket bounds, from its config, as the exporter must expose
/// them: the reference the tests hold the exporter to.
#[derive(Debug, Clone, Copy)]
enum Buckets {
    /// `le = 2^i` for i in 0..=max.
    Exp2 { max: u32 },
    /// `le = 0`, then `le = 2^(i-1)` for i in 1..=max.
    Exp2Zero { max: u32 },
    /// `le = i` for i in 0..=max.
    Linear { max: u32 },
    /// `le = key` for each key.
    Fixed(&'static [u64]),
}

impl Buckets {
    fn bounds(self) -> Vec<u64> {
        match self {
            Buckets::Exp2 { max } => (0..=max).map(|i| 1 << i).collect(),
            Buckets::Exp2Zero { max } => (0..=max).map(|i| if i == 0 { 0 } else { 1 << (i - 1) }).collect(),
            Buckets::Linear { max } => (0..=max).map(u64::from).collect(),
            Buckets::Fixed(keys) => keys.to_vec(),
        }
    }

    /// What a Prometheus histogram of these bounds holds after observing
    /// `values`: each bucket counts the values at or below its bound, so a
    /// value above the top bound shows only in `+Inf` (`count`).
    fn model(self, values: &[u64]) -> Histogram {
        Histogram {
            buckets: self
                .bounds()
                .into_iter()
                .map(|le| (le as f64, values.iter().filter(|&&v| v <= le).count() as u64))
                .collect(),
            count: values.len() as u64,
            sum: values.iter().sum::<u64>() as f64,
        }
    }
}

const EXP2: Buckets = Buckets::Exp2 { max: 10 };
const EXP2ZERO: Buckets = Buckets::Exp2Zero { max: 10 };
const LINEAR: Buckets = Buckets::Linear { max: 20 };
const FIXED: Buckets = Buckets::Fixed(&[1, 5, 10, 50, 100]);

const HISTOGRAMS: &str = "metrics:
  histograms:
    - name: truth_exp2
      help: truth_observe arguments, exp2 buckets.
      bucket_type: exp2
      bucket_min: 0
      bucket_max: 10
      labels:
        - name: bucket
          size: 4
          decoders: [{name: uint}]
    - name: truth_exp2zero
      help: truth_observe arguments, exp2zero buckets.
      bucket_type: exp2zero
      bucket_min: 0
      bucket_max: 10
      labels:
        - name: bucket
          size: 4
          decoders: [{name: uint}]
    - name: truth_linear
      help: truth_observe arguments, linear buckets.
      bucket_type: linear
      bucket_min: 0
      bucket_max: 20
      labels:
        - name: bucket
          size: 4
          decoders: [{name: uint}]
    - name: truth_fixed
      help: truth_observe arguments, fixed buckets.
      bucket_type: fixed
      bucket_keys: [1, 5, 10, 50, 100]
      labels:
        - name: bucket
          size: 4
          decoders: [{name: uint}]
";

/// 0 to 5, every power of two up to 2^11, bucket edges of every type (and
/// one past them), values above every top bucket, and repeats. The sum is
/// exact in an f64.
fn histogram_values() -> Vec<u64> {
    let mut values = vec![0, 1, 2, 3, 4, 5, 0, 1, 1, 3];
    values.extend((0..=11).map(|i| 1u64 << i));
    values.extend([6, 9, 10, 11, 19, 20, 21, 49, 50, 51, 99, 100, 101]);
    values.extend([257, 511, 513, 1023, 1025, 5000, 1 << 40]);
    values
}

impl Buckets {
    /// The map slots `histogram.bpf.h` fills for `values`, by bucket key:
    /// each value's bucket (the first whose bound holds it; for `fixed`, the
    /// bound itself is the key), the sum at `max + 1`, values above the top
    /// bucket at `max + 2`.
    fn slots(self, values: &[u64]) -> BTreeMap<Vec<String>, u64> {
        let bounds = self.bounds();
        let keys: Vec<u64> = match self {
            Buckets::Fixed(keys) => keys.to_vec(),
            _ => (0..bounds.len() as u64).collect(),
        };
        let max = *keys.last().unwrap();
        let mut slots: BTreeMap<u64, u64> = BTreeMap::new();
        for &v in values {
            let key = bounds.iter().position(|&le| v <= le).map_or(max + 2, |i| keys[i]);
            *slots.entry(key).or_default() += 1;
            if v != 0 {
                *slots.entry(max + 1).or_default() += v;
            }
        }
        slots.into_iter().map(|(k, n)| (vec![k.to_string()], n)).collect()
    }
}

#[test]
fn truth_histogram_maps_hold_the_slots_histogram_bpf_h_documents() {
    if !bpf_available() {
        return;
    }
    // The histogram maps read as plain counters keyed by bucket: the raw
    // slots, before any histogram support turns them into buckets.
    let mut config = String::from("metrics:\n  counters:\n");
    for name in ["truth_exp2", "truth_exp2zero", "truth_linear", "truth_fixed"] {
        config.push_str(&format!(
            "    - name: {name}\n      help: Raw slots.\n      labels:\n        - name: bucket\n          \
             size: 4\n          decoders: [{{name: uint}}]\n"
        ));
    }
    let mut truth = Truth::start(&config);
    let values = histogram_values();
    let words: Vec<String> = values.iter().map(u64::to_string).collect();
    truth.run(&format!("observe {}", words.join(" ")));
    let snapshot = truth.read();
    for (name, buckets) in [
        ("ebpf_truth_exp2", EXP2),
        ("ebpf_truth_exp2zero", EXP2ZERO),
        ("ebpf_truth_linear", LINEAR),
        ("ebpf_truth_fixed", FIXED),
    ] {
        assert_eq!(counters(&snapshot, name), buckets.slots(&values), "{name}");
    }
    // Spot checks: exp2 bucket 2 holds (2, 4]: 3 3 4 4; bucket 11 holds
    // the sum; bucket 12 the four values above 1024.
    let slot = |name: &str, bucket: &str| counter(&snapshot, name, &[("bucket", bucket)]);
    assert_eq!(slot("ebpf_truth_exp2", "2"), 4);
    assert_eq!(slot("ebpf_truth_exp2", "11"), values.iter().sum::<u64>());
    assert_eq!(slot("ebpf_truth_exp2", "12"), 4);
    // exp2zero bucket 0 holds the two 0s only; fixed bucket 100 holds 64 51 99 100.
    assert_eq!(slot("ebpf_truth_exp2zero", "0"), 2);
    assert_eq!(slot("ebpf_truth_fixed", "100"), 4);
    assert_eq!(slot("ebpf_truth_fixed", "102"), 13);
}

// needs histograms/gauges from main
#[test]
fn truth_histograms_hold_every_bucket_count_and_sum_exactly() {
    if !bpf_available() {
        return;
    }
    let mut truth = Truth::start(HISTOGRAMS);
    let names = [
        ("ebpf_truth_exp2", EXP2),
        ("ebpf_truth_exp2zero", EXP2ZERO),
        ("ebpf_truth_linear", LINEAR),
        ("ebpf_truth_fixed", FIXED),
    ];
    let values = histogram_values();
    // Half, read, then the rest: buckets accumulate across reads.
    let (first, rest) = values.split_at(values.len() / 2);
    for (part, seen) in [(first, first.len()), (rest, values.len())] {
        let words: Vec<String> = part.iter().map(u64::to_string).collect();
        truth.run(&format!("observe {}", words.join(" ")));
        let snapshot = truth.read();
        for (name, buckets) in names {
            assert_eq!(
                histogram(&snapshot, name, &[]),
                buckets.model(&values[..seen]),
                "{name} after {seen} values"
            );
        }
    }

    // Spot checks, worked out by hand.
    let snapshot = truth.read();
    let all = histogram(&snapshot, "ebpf_truth_exp2", &[]);
    let count = values.len() as u64;
    let sum = values.iter().sum::<u64>() as f64;
    assert_eq!((all.count, all.sum), (count, sum));
    assert_eq!(all.buckets.len(), 11);
    let le = |h: &Histogram, bound: f64| h.buckets.iter().find(|b| b.0 == bound).unwrap().1;
    // 0 1 0 1 1 and 2^0: le=1; 2 and 2^1; 3 3 4 2^2.
    assert_eq!(le(&all, 1.0), 6);
    assert_eq!(le(&all, 2.0), 8);
    assert_eq!(le(&all, 4.0), 12);
    // Above 1024: 2048, 1025, 5000, 2^40. Above 512: those and 1024, 513, 1023.
    assert_eq!(le(&all, 1024.0), count - 4);
    let zero = histogram(&snapshot, "ebpf_truth_exp2zero", &[]);
    assert_eq!(zero.buckets[0], (0.0, 2));
    assert_eq!(zero.buckets[1], (1.0, 6));
    assert_eq!(zero.buckets[10], (512.0, count - 7));
    let linear = histogram(&snapshot, "ebpf_truth_linear", &[]);
    assert_eq!(linear.buckets[0], (0.0, 2));
    assert_eq!(linear.buckets[5], (5.0, 13));
    assert_eq!(linear.buckets[20], (20.0, 21));
    let fixed = histogram(&snapshot, "ebpf_truth_fixed", &[]);
    let fixed_buckets: Vec<(f64, u64)> = vec![(1.0, 6), (5.0, 13), (10.0, 17), (50.0, 25), (100.0, 29)];
    assert_eq!(fixed.buckets, fixed_buckets);
    assert_eq!(fixed.count, count);
}

// needs histograms/gauges from main
#[test]
fn truth_percpu_histogram_splits_by_cpu_exactly() {
    if !bpf_available() {
        return;
    }
    let possible = libbpf_rs::num_possible_cpus().unwrap();
    let config = "metrics:
  histograms:
    - name: truth_exp2_percpu
      help: truth_observe arguments per CPU, exp2 buckets.
      bucket_type: exp2
      bucket_min: 0
      bucket_max: 10
      labels:
        - name: bucket
          size: 4
          decoders: [{name: uint}]
        - name: cpu
          size: 2
          decoders: [{name: uint}]
";
    let mut truth = Truth::start(config);
    // Each usable CPU gets its own value, count, and one value above the top.
    let mut command = String::from("pinned");
    let mut per_cpu: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (i, cpu) in usable_cpus().into_iter().enumerate() {
        let (count, value) = (10 + 3 * i as u64, 3u64 << (2 * i));
        command.push_str(&format!(" {cpu} {count} {value} {cpu} 1 5000"));
        let values = per_cpu.entry(cpu).or_default();
        values.extend(std::iter::repeat_n(value, count as usize));
        values.push(5000);
    }
    truth.run(&command);
    let snapshot = truth.read();
    assert_eq!(label_names(&snapshot, "ebpf_truth_exp2_percpu"), ["cpu"]);
    for cpu in 0..possible {
        let values = per_cpu.get(&cpu).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            histogram(&snapshot, "ebpf_truth_exp2_percpu", &[("cpu", &cpu.to_string())]),
            EXP2.model(values),
            "cpu {cpu}"
        );
    }
    // The first usable CPU: ten 3s (le=4) and one 5000 (only in +Inf).
    let first = per_cpu.keys().next().unwrap().to_string();
    let cpu0 = histogram(&snapshot, "ebpf_truth_exp2_percpu", &[("cpu", &first)]);
    assert_eq!((cpu0.buckets[1], cpu0.buckets[2]), ((2.0, 0), (4.0, 10)));
    assert_eq!(
        (cpu0.buckets[10], cpu0.count, cpu0.sum),
        ((1024.0, 10), 11, 5030.0)
    );
}

// needs histograms/gauges from main
#[test]
fn truth_gauges_read_a_map_and_program_globals() {
    if !bpf_available() {
        return;
    }
    let config = "metrics:
  gauges:
    - name: truth_gauge
      help: Last truth_gauge_set argument, from a map.
    - name: truth_last_value
      help: Last truth_gauge_set argument, from a .bss global.
    - name: truth_generation
      help: 7 plus the truth_gauge_set calls, from a .data global.
";
    let mut truth = Truth::start(config);
    let read = |truth: &mut Truth| {
        let snapshot = truth.read();
        [
            "ebpf_truth_gauge",
            "ebpf_truth_last_value",
            "ebpf_truth_generation",
        ]
        .map(|name| gauge(&snapshot, name, &[]))
    };
    assert_eq!(read(&mut truth), [0.0, 0.0, 7.0]);
    truth.run("gauge -5");
    assert_eq!(read(&mut truth), [-5.0, -5.0, 8.0]);
    truth.run("gauge 123456789");
    assert_eq!(read(&mut truth), [123_456_789.0, 123_456_789.0, 9.0]);
    truth.run(&format!("gauge {}", i64::MIN));
    truth.run(&format!("gauge {}", 1i64 << 53));
    assert_eq!(
        read(&mut truth),
        [9_007_199_254_740_992.0, 9_007_199_254_740_992.0, 11.0]
    );
    truth.run(&format!("gauge {}", i64::MIN));
    assert_eq!(read(&mut truth), [i64::MIN as f64, i64::MIN as f64, 12.0]);
}

/// How the last read of each map of the `truth` config was done, by map.
fn read_methods(snapshot: &Snapshot) -> BTreeMap<String, String> {
    series(snapshot, "bpf_exporter_map_read_duration_seconds")
        .into_keys()
        .filter_map(|labels| match &labels[..] {
            [config, map, method] if config == "truth" => Some((map.clone(), method.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn truth_mmapable_array_and_globals_read_through_their_mappings_exactly() {
    if !bpf_available() {
        return;
    }
    let config = "metrics:
  counters:
    - name: truth_slot_calls_total
      help: Calls of truth_observe, by argument modulo 4, from a BPF_F_MMAPABLE array.
      labels:
        - name: slot
          size: 4
          decoders: [{name: uint}]
    - name: truth_calls_total
      help: Calls of truth_observe, by argument, from a hash.
      labels:
        - name: value
          size: 8
          decoders: [{name: uint}]
  gauges:
    - name: truth_gauge
      help: Last truth_gauge_set argument, from a plain array.
    - name: truth_last_value
      help: Last truth_gauge_set argument, from a .bss global.
    - name: truth_generation
      help: 7 plus the truth_gauge_set calls, from a .data global.
";
    let mut truth = Truth::start(config);
    let slots = |snapshot: &Snapshot| by_label(snapshot, "ebpf_truth_slot_calls_total");
    let snapshot = truth.read();
    assert_eq!(
        slots(&snapshot),
        expect(&[("0", 0), ("1", 0), ("2", 0), ("3", 0)])
    );
    let methods = read_methods(&snapshot);
    assert_eq!(
        methods,
        [
            ("truth.bss", "mmap"),
            ("truth.data", "mmap"),
            ("truth_calls_total", "batch"),
            ("truth_gauge", "batch"),
            ("truth_slot_calls_total", "mmap"),
        ]
        .map(|(map, method)| (map.to_string(), method.to_string()))
        .into(),
        "an array created BPF_F_MMAPABLE and the global sections are mapped; the plain array and the hash are not"
    );

    let values: Vec<String> = (1..=10).map(|v| v.to_string()).collect();
    truth.run(&format!("observe {}", values.join(" ")));
    truth.run("gauge -5");
    let snapshot = truth.read();
    assert_eq!(
        slots(&snapshot),
        expect(&[("0", 2), ("1", 3), ("2", 3), ("3", 2)])
    );
    assert_eq!(counter_sum(&snapshot, "ebpf_truth_calls_total"), 10);
    let gauges = |snapshot: &Snapshot| {
        [
            "ebpf_truth_gauge",
            "ebpf_truth_last_value",
            "ebpf_truth_generation",
        ]
        .map(|name| gauge(snapshot, name, &[]))
    };
    assert_eq!(gauges(&snapshot), [-5.0, -5.0, 8.0]);

    truth.run("observe 5 7 1000003");
    truth.run(&format!("gauge {}", i64::MIN));
    let snapshot = truth.read();
    assert_eq!(
        slots(&snapshot),
        expect(&[("0", 2), ("1", 4), ("2", 3), ("3", 4)])
    );
    assert_eq!(gauges(&snapshot), [i64::MIN as f64, i64::MIN as f64, 9.0]);
    assert_eq!(
        read_methods(&snapshot),
        methods,
        "the method holds from one read to the next"
    );
}

#[test]
fn truth_run_stats_count_every_probe_run_exactly() {
    if !bpf_available() {
        return;
    }
    // Counting starts with statistics on, so the probes' runs since load
    // are exactly the calls made here.
    let _stats = bpf_exporter::programs::stats::enable().expect("enabling BPF statistics");
    let run_stats = Reader::new(LabelCache::new(DEFAULT_CACHE_SIZE, DEFAULT_REFRESH), true);
    let mut truth = Truth::start_with(CALLS, run_stats);
    let values: Vec<String> = (0..250).map(|v| v.to_string()).collect();
    truth.run(&format!("observe {}", values.join(" ")));
    truth.run("gauge 3");
    let snapshot = truth.read();
    let runs = |program| {
        counter(
            &snapshot,
            "bpf_exporter_program_runs_total",
            &[("config", "truth"), ("program", program)],
        )
    };
    assert_eq!((runs("observe"), runs("gauge_set")), (250, 1));
    let run_time = series(&snapshot, "bpf_exporter_program_run_time_seconds_total");
    let observe_time = match run_time.get(&vec!["truth".to_string(), "observe".to_string()]) {
        Some(Value::FloatCounter(seconds)) => *seconds,
        other => panic!("no run time for observe: {other:?}"),
    };
    assert!(observe_time > 0.0, "{observe_time}");
}

// ---------------------------------------------------------------------------
// Decoders, over keys the kernel wrote.

/// Counter `name` by its one label, the label's value given as written.
fn by_label(snapshot: &Snapshot, name: &str) -> BTreeMap<String, u64> {
    counters(snapshot, name)
        .into_iter()
        .map(|(mut labels, n)| {
            assert_eq!(labels.len(), 1, "{name}: {labels:?}");
            (labels.remove(0), n)
        })
        .collect()
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|&(label, n)| (label.to_string(), n)).collect()
}

#[test]
fn truth_string_and_inet_ip_decoders_give_exact_label_values() {
    if !bpf_available() {
        return;
    }
    let config = "metrics:
  counters:
    - name: truth_strings_total
      help: truth_string calls, by text.
      labels:
        - name: text
          size: 16
          decoders: [{name: string}]
    - name: truth_ipv4_total
      help: truth_ip calls with IPv4 addresses, by address.
      labels:
        - name: address
          size: 4
          decoders: [{name: inet_ip}]
    - name: truth_ipv6_total
      help: truth_ip calls with IPv6 addresses, by address.
      labels:
        - name: address
          size: 16
          decoders: [{name: inet_ip}]
";
    let mut truth = Truth::start(config);
    // bpf_probe_read_user_str keeps 15 bytes and the NUL of a 16-byte key.
    truth.run("string bash sh bash héllo fifteen_bytes__ sixteen_bytes___ abcdefghijklmnopqrstuvwxyz x");
    truth.run("ip4 1.2.3.4 127.0.0.1 0.0.0.0 255.255.255.255 10.0.0.1 1.2.3.4");
    truth.run(
        "ip6 ::1 :: 2400:cb00:4:1024::a29e:fd8f ::ffff:192.0.2.128 fe80::1 2001:DB8:0:0:1:0:0:1 ::1 \
         ::ffff:1.2.3.4 ::192.0.2.128",
    );
    let snapshot = truth.read();
    assert_eq!(
        by_label(&snapshot, "ebpf_truth_strings_total"),
        expect(&[
            ("bash", 2),
            ("sh", 1),
            ("héllo", 1),
            ("fifteen_bytes__", 1),
            ("sixteen_bytes__", 1),
            ("abcdefghijklmno", 1),
            ("x", 1),
        ])
    );
    assert_eq!(
        by_label(&snapshot, "ebpf_truth_ipv4_total"),
        expect(&[
            ("1.2.3.4", 2),
            ("127.0.0.1", 1),
            ("0.0.0.0", 1),
            ("255.255.255.255", 1),
            ("10.0.0.1", 1),
        ])
    );
    // IPv4-mapped addresses print as IPv4, as ebpf_exporter prints them; the
    // deprecated IPv4-compatible form is plain IPv6.
    assert_eq!(
        by_label(&snapshot, "ebpf_truth_ipv6_total"),
        expect(&[
            ("::1", 2),
            ("::", 1),
            ("2400:cb00:4:1024::a29e:fd8f", 1),
            ("192.0.2.128", 1),
            ("fe80::1", 1),
            ("2001:db8::1:0:0:1", 1),
            ("1.2.3.4", 1),
            ("::c000:280", 1),
        ])
    );
}

/// The address of a kernel text symbol that is the only name at its
/// address, from /proc/kallsyms; `None` when addresses are hidden
/// (`kptr_restrict`).
fn kernel_function() -> Option<(String, u64)> {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").expect("reading /proc/kallsyms");
    let mut names_at: BTreeMap<u64, Vec<(&str, &str)>> = BTreeMap::new();
    for line in kallsyms.lines() {
        let mut fields = line.splitn(3, ' ');
        if let (Some(address), Some(kind), Some(name)) = (fields.next(), fields.next(), fields.next()) {
            let address = u64::from_str_radix(address, 16).expect("kallsyms address");
            names_at.entry(address).or_default().push((kind, name));
        }
    }
    let candidates = [
        "do_sys_openat2",
        "vfs_read",
        "vfs_write",
        "do_nanosleep",
        "schedule",
    ];
    let found = candidates.iter().find_map(|&want| {
        names_at.iter().find_map(|(&address, names)| match names[..] {
            [("T" | "t", name)] if name == want => Some((name.to_string(), address)),
            _ => None,
        })
    });
    match found {
        Some((_, 0)) => None,
        Some(found) => Some(found),
        None => panic!("none of {candidates:?} is alone at its address in /proc/kallsyms"),
    }
}

#[test]
fn truth_ksym_decoder_names_a_kernel_function() {
    if !bpf_available() {
        return;
    }
    let Some((function, address)) = kernel_function() else {
        eprintln!("skipping: /proc/kallsyms hides addresses (kptr_restrict)");
        return;
    };
    let config = "metrics:
  counters:
    - name: truth_calls_total
      help: Calls of truth_observe, by the kernel function the argument points into.
      labels:
        - name: function
          size: 8
          decoders: [{name: ksym}]
";
    let mut truth = Truth::start(config);
    // The function's address, an address inside it, and one below every
    // kernel symbol.
    truth.run(&format!("observe {address} {} {address} 1", address + 1));
    let snapshot = truth.read();
    assert_eq!(
        by_label(&snapshot, "ebpf_truth_calls_total"),
        expect(&[(&function, 3), ("unknown_addr:0x1", 1)])
    );
}

#[test]
fn truth_cgroup_decoder_names_the_targets_cgroup_under_the_cgroup2_mount() {
    if !bpf_available() {
        return;
    }
    let config = "metrics:
  counters:
    - name: truth_cgroup_calls_total
      help: Calls of truth_observe, by the caller's cgroup.
      labels:
        - name: cgroup
          size: 8
          decoders: [{name: uint}, {name: cgroup}]
";
    // The cgroup2 mount (on hybrid hosts not /sys/fs/cgroup itself) and the
    // target's place in it.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some(mount) = mountinfo
        .lines()
        .filter_map(|l| l.split_once(" - "))
        .find(|(_, right)| right.starts_with("cgroup2 "))
        .and_then(|(left, _)| left.split(' ').nth(4))
    else {
        eprintln!("skipping: no cgroup2 filesystem is mounted");
        return;
    };
    let mut truth = Truth::start(config);
    truth.run("observe 1 2 3");
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", truth.target.pid())).unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    let path = match own {
        "/" => mount.to_string(),
        _ => format!("{mount}{own}"),
    };
    let snapshot = truth.read();
    assert_eq!(
        by_label(&snapshot, "ebpf_truth_cgroup_calls_total"),
        expect(&[(&path, 3)])
    );
}
