//! Snapshot → Prometheus text 0.0.4 or OpenMetrics 1.0 text.
//!
//! Two encoders exist because scrapers differ: Prometheus itself prefers
//! OpenMetrics, while `curl`, older Prometheus servers and many other tools
//! only speak the classic text format. Which one a request gets is the HTTP
//! layer's choice (`server::negotiate`).
//!
//! * Text 0.0.4 is written by hand so that output matches what Go clients
//!   produce (float formatting, `le` labels, ordering) and counters stay exact
//!   `u64`s.
//! * OpenMetrics goes through `prometheus-client`, the reference Rust
//!   implementation, so the format's details (`_total` suffixes, `# EOF`) are
//!   not re-invented here. That crate appends `_total` to every counter
//!   sample, so a counter family is handed over with a trailing `_total`
//!   stripped from its name: `ebpf_syscalls_total` becomes
//!   `# TYPE ebpf_syscalls counter` with sample `ebpf_syscalls_total`. A
//!   counter configured *without* `_total` therefore gains the suffix in
//!   OpenMetrics (but not in text 0.0.4); OpenMetrics requires it.
//!
//! Samples whose value does not match their family's kind (a bug upstream)
//! are dropped rather than emitted, so a scrape never fails to parse, and
//! families without samples are omitted entirely, as Prometheus client
//! libraries do.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Family, MetricKind, Sample, Snapshot, Value};

/// An exposition format this exporter can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text004,
    /// OpenMetrics 1.0.0 text format.
    OpenMetrics,
}

impl Format {
    /// `Content-Type` to answer with; Prometheus picks its parser from it.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encodes `families` in `format`.
///
/// For OpenMetrics the families are copied once, because `prometheus-client`
/// only accepts `'static` collectors; [`encode_snapshot`] avoids that copy.
pub fn encode(families: &[Family], format: Format) -> String {
    match format {
        Format::Text004 => encode_text004(families),
        Format::OpenMetrics => encode_openmetrics(FamiliesCollector::Owned(families.to_vec())),
    }
}

/// Like [`encode`], sharing the snapshot instead of copying its families.
pub fn encode_snapshot(snapshot: &Arc<Snapshot>, format: Format) -> String {
    match format {
        Format::Text004 => encode_text004(&snapshot.families),
        Format::OpenMetrics => encode_openmetrics(FamiliesCollector::Shared(Arc::clone(snapshot))),
    }
}

fn value_matches(kind: MetricKind, value: &Value) -> bool {
    matches!(
        (kind, value),
        (MetricKind::Counter, Value::Counter(_) | Value::FloatCounter(_))
            | (MetricKind::Gauge, Value::Gauge(_))
            | (MetricKind::Histogram, Value::Histogram(_))
    )
}

fn exposed_samples(family: &Family) -> impl Iterator<Item = &Sample> {
    family
        .samples
        .iter()
        .filter(move |s| value_matches(family.kind, &s.value))
}

/// Finite bucket bounds only: `+Inf` is written from `count`, and a stray
/// non-finite bound would otherwise duplicate or corrupt it.
fn finite_buckets(buckets: &[(f64, u64)]) -> impl Iterator<Item = (f64, u64)> + '_ {
    buckets.iter().copied().filter(|(upper, _)| upper.is_finite())
}

// ---------------------------------------------------------------------------
// Text 0.0.4

/// Encodes in the Prometheus text format 0.0.4.
pub fn encode_text004(families: &[Family]) -> String {
    let mut out = String::with_capacity(families.len() * 256);
    for family in families {
        if exposed_samples(family).next().is_none() {
            continue;
        }
        if !family.help.is_empty() {
            out.push_str("# HELP ");
            out.push_str(&family.name);
            out.push(' ');
            escape_into(&mut out, &family.help, false);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(&family.name);
        out.push_str(match family.kind {
            MetricKind::Counter => " counter\n",
            MetricKind::Gauge => " gauge\n",
            MetricKind::Histogram => " histogram\n",
        });
        for sample in exposed_samples(family) {
            match &sample.value {
                Value::Counter(v) => {
                    write_series(&mut out, &family.name, "", family, sample, None);
                    let _ = writeln!(out, " {v}");
                }
                Value::Gauge(v) | Value::FloatCounter(v) => {
                    write_series(&mut out, &family.name, "", family, sample, None);
                    out.push(' ');
                    format_value(&mut out, *v);
                    out.push('\n');
                }
                Value::Histogram(h) => {
                    let mut le = String::new();
                    for (upper, cumulative) in finite_buckets(&h.buckets) {
                        le.clear();
                        format_go_float(&mut le, upper);
                        write_series(&mut out, &family.name, "_bucket", family, sample, Some(&le));
                        let _ = writeln!(out, " {cumulative}");
                    }
                    write_series(&mut out, &family.name, "_bucket", family, sample, Some("+Inf"));
                    let _ = writeln!(out, " {}", h.count);
                    write_series(&mut out, &family.name, "_sum", family, sample, None);
                    out.push(' ');
                    format_value(&mut out, h.sum);
                    out.push('\n');
                    write_series(&mut out, &family.name, "_count", family, sample, None);
                    let _ = writeln!(out, " {}", h.count);
                }
            }
        }
    }
    out
}

/// Writes `name{labels}` without the value.
fn write_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    family: &Family,
    sample: &Sample,
    le: Option<&str>,
) {
    out.push_str(name);
    out.push_str(suffix);
    let has_labels = !family.label_names.is_empty() && !sample.label_values.is_empty();
    if !has_labels && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (label, value) in family.label_names.iter().zip(&sample.label_values) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(label);
        out.push_str("=\"");
        escape_into(out, value, true);
        out.push('"');
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        out.push_str("le=\"");
        out.push_str(le);
        out.push('"');
    }
    out.push('}');
}

/// Escapes `\` and newline, plus `"` when `quote` (label values; and HELP in
/// OpenMetrics). Text 0.0.4 HELP must not escape `"`: parsers would keep the
/// backslash.
fn escape_into(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Sample values: like Go clients (`NaN`, `+Inf`, `-Inf`, shortest
/// round-trip digits), except that integral values below 2^53 are printed in
/// full (`1000000`, where Go would print `1e+06`): gauges read from BPF maps
/// are mostly integers, and exact digits are easier on humans. Both spellings
/// parse to the same float.
fn format_value(out: &mut String, v: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.is_finite() && v.trunc() == v && v.abs() < EXACT {
        // `as` is exact here; -0.0 becomes 0 as in Go clients.
        let _ = write!(out, "{}", v as i64);
    } else {
        format_go_float(out, v);
    }
}

/// `strconv.FormatFloat(v, 'g', -1, 64)` with Prometheus' spellings of the
/// special values: what Go clients write for `le` bounds, so series keep the
/// same label values whichever exporter produced them.
fn format_go_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        out.push('0');
        return;
    }
    if v < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` yields the shortest digits that round-trip, like Go's
    // precision -1: "d[.ddd]e<exp>".
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..6).contains(&exp) {
        // %e: d[.ddd]e±XX with at least two exponent digits.
        let (first, rest) = digits.split_at(digits.len().min(1));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", exp.unsigned_abs());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
}

// ---------------------------------------------------------------------------
// OpenMetrics via prometheus-client

/// The families as a `prometheus-client` collector. `Collector` must be
/// `'static`, hence owned or shared data rather than a borrow.
#[derive(Debug)]
enum FamiliesCollector {
    Owned(Vec<Family>),
    Shared(Arc<Snapshot>),
}

impl FamiliesCollector {
    fn families(&self) -> &[Family] {
        match self {
            FamiliesCollector::Owned(f) => f,
            FamiliesCollector::Shared(s) => &s.families,
        }
    }
}

impl Collector for FamiliesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut help = String::new();
        for family in self.families() {
            if exposed_samples(family).next().is_none() {
                continue;
            }
            let (name, metric_type) = match family.kind {
                MetricKind::Counter => (openmetrics_counter_name(&family.name), MetricType::Counter),
                MetricKind::Gauge => (family.name.as_str(), MetricType::Gauge),
                MetricKind::Histogram => (family.name.as_str(), MetricType::Histogram),
            };
            // prometheus-client writes HELP verbatim; OpenMetrics wants `\`,
            // newline and `"` escaped.
            help.clear();
            escape_into(&mut help, &family.help, true);
            let mut metric = encoder.encode_descriptor(name, &help, None, metric_type)?;
            for sample in exposed_samples(family) {
                let labels: Vec<(&str, &str)> = family
                    .label_names
                    .iter()
                    .map(String::as_str)
                    .zip(sample.label_values.iter().map(String::as_str))
                    .collect();
                if labels.is_empty() {
                    // An empty label set would be written as `name{}`.
                    encode_om_value(&mut metric, &sample.value)?;
                } else {
                    encode_om_value(&mut metric.encode_family(&labels)?, &sample.value)?;
                }
            }
        }
        Ok(())
    }
}

/// prometheus-client appends `_total` to counter samples itself.
fn openmetrics_counter_name(name: &str) -> &str {
    match name.strip_suffix("_total") {
        Some(stripped) if !stripped.is_empty() => stripped,
        _ => name,
    }
}

fn encode_om_value(metric: &mut MetricEncoder, value: &Value) -> Result<(), std::fmt::Error> {
    match value {
        Value::Counter(v) => metric.encode_counter::<NoLabelSet, u64, u64>(v, None),
        Value::FloatCounter(v) => metric.encode_counter::<NoLabelSet, f64, f64>(v, None),
        Value::Gauge(v) => metric.encode_gauge(v),
        Value::Histogram(h) => {
            // prometheus-client takes per-bucket counts and accumulates them
            // itself; ours are cumulative. A decreasing cumulative count (bad
            // input) becomes 0 rather than underflowing, i.e. the output is
            // the running maximum.
            let mut per_bucket = Vec::with_capacity(h.buckets.len() + 1);
            let mut previous = 0u64;
            for (upper, cumulative) in finite_buckets(&h.buckets) {
                per_bucket.push((upper, cumulative.saturating_sub(previous)));
                previous = previous.max(cumulative);
            }
            per_bucket.push((f64::INFINITY, h.count.saturating_sub(previous)));
            metric.encode_histogram::<NoLabelSet>(h.sum, h.count, &per_bucket, None)
        }
    }
}

fn encode_openmetrics(collector: FamiliesCollector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        // Writing to a String cannot fail and nothing we pass is rejected;
        // still, never hand out a truncated exposition.
        tracing::error!(%err, "OpenMetrics encoding failed");
        out.clear();
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Histogram;

    fn sample(labels: &[&str], value: Value) -> Sample {
        Sample {
            label_values: labels.iter().map(|s| s.to_string()).collect(),
            value,
        }
    }

    fn family(name: &str, help: &str, kind: MetricKind, labels: &[&str], samples: Vec<Sample>) -> Family {
        Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            label_names: labels.iter().map(|s| s.to_string()).collect(),
            samples,
        }
    }

    /// Lint-clean names so that promtool has nothing to complain about.
    fn fixture() -> Vec<Family> {
        vec![
            family(
                "ebpf_test_events_total",
                "Events seen.",
                MetricKind::Counter,
                &[],
                vec![sample(&[], Value::Counter(u64::MAX))],
            ),
            family(
                "ebpf_test_syscalls_total",
                "Syscalls by name, with a \\ and a\nnewline in \"help\".",
                MetricKind::Counter,
                &["syscall", "comm"],
                vec![
                    sample(&["read", "a\"b\\c\nd"], Value::Counter(5)),
                    sample(&["write", "x"], Value::Counter(0)),
                ],
            ),
            family(
                "ebpf_test_busy_seconds_total",
                "Time busy.",
                MetricKind::Counter,
                &[],
                vec![sample(&[], Value::FloatCounter(0.25))],
            ),
            family(
                "ebpf_test_empty_total",
                "Never printed: no samples.",
                MetricKind::Counter,
                &[],
                vec![],
            ),
            family(
                "ebpf_test_queue_depth",
                "Queue depth.",
                MetricKind::Gauge,
                &["queue"],
                vec![
                    sample(&["zero"], Value::Gauge(0.0)),
                    sample(&["half"], Value::Gauge(1.5)),
                    sample(&["nan"], Value::Gauge(f64::NAN)),
                    sample(&["inf"], Value::Gauge(f64::INFINITY)),
                    sample(&["big"], Value::Gauge(1e6)),
                ],
            ),
            family(
                "ebpf_test_latency_seconds",
                "Latency.",
                MetricKind::Histogram,
                &["op"],
                vec![sample(
                    &["read"],
                    Value::Histogram(Histogram {
                        buckets: vec![(0.001, 2), (1.0, 5), (1e6, 7)],
                        count: 9,
                        sum: 12.25,
                    }),
                )],
            ),
        ]
    }

    const GOLDEN_TEXT: &str = r#"# HELP ebpf_test_events_total Events seen.
# TYPE ebpf_test_events_total counter
ebpf_test_events_total 18446744073709551615
# HELP ebpf_test_syscalls_total Syscalls by name, with a \\ and a\nnewline in "help".
# TYPE ebpf_test_syscalls_total counter
ebpf_test_syscalls_total{syscall="read",comm="a\"b\\c\nd"} 5
ebpf_test_syscalls_total{syscall="write",comm="x"} 0
# HELP ebpf_test_busy_seconds_total Time busy.
# TYPE ebpf_test_busy_seconds_total counter
ebpf_test_busy_seconds_total 0.25
# HELP ebpf_test_queue_depth Queue depth.
# TYPE ebpf_test_queue_depth gauge
ebpf_test_queue_depth{queue="zero"} 0
ebpf_test_queue_depth{queue="half"} 1.5
ebpf_test_queue_depth{queue="nan"} NaN
ebpf_test_queue_depth{queue="inf"} +Inf
ebpf_test_queue_depth{queue="big"} 1000000
# HELP ebpf_test_latency_seconds Latency.
# TYPE ebpf_test_latency_seconds histogram
ebpf_test_latency_seconds_bucket{op="read",le="0.001"} 2
ebpf_test_latency_seconds_bucket{op="read",le="1"} 5
ebpf_test_latency_seconds_bucket{op="read",le="1e+06"} 7
ebpf_test_latency_seconds_bucket{op="read",le="+Inf"} 9
ebpf_test_latency_seconds_sum{op="read"} 12.25
ebpf_test_latency_seconds_count{op="read"} 9
"#;

    const GOLDEN_OPENMETRICS: &str = r#"# HELP ebpf_test_events Events seen.
# TYPE ebpf_test_events counter
ebpf_test_events_total 18446744073709551615
# HELP ebpf_test_syscalls Syscalls by name, with a \\ and a\nnewline in \"help\".
# TYPE ebpf_test_syscalls counter
ebpf_test_syscalls_total{syscall="read",comm="a\"b\\c\nd"} 5
ebpf_test_syscalls_total{syscall="write",comm="x"} 0
# HELP ebpf_test_busy_seconds Time busy.
# TYPE ebpf_test_busy_seconds counter
ebpf_test_busy_seconds_total 0.25
# HELP ebpf_test_queue_depth Queue depth.
# TYPE ebpf_test_queue_depth gauge
ebpf_test_queue_depth{queue="zero"} 0.0
ebpf_test_queue_depth{queue="half"} 1.5
ebpf_test_queue_depth{queue="nan"} NaN
ebpf_test_queue_depth{queue="inf"} inf
ebpf_test_queue_depth{queue="big"} 1000000.0
# HELP ebpf_test_latency_seconds Latency.
# TYPE ebpf_test_latency_seconds histogram
ebpf_test_latency_seconds_sum{op="read"} 12.25
ebpf_test_latency_seconds_count{op="read"} 9
ebpf_test_latency_seconds_bucket{le="0.001",op="read"} 2
ebpf_test_latency_seconds_bucket{le="1.0",op="read"} 5
ebpf_test_latency_seconds_bucket{le="1000000.0",op="read"} 7
ebpf_test_latency_seconds_bucket{le="+Inf",op="read"} 9
# EOF
"#;

    #[test]
    fn text004_golden() {
        assert_eq!(encode(&fixture(), Format::Text004), GOLDEN_TEXT);
    }

    #[test]
    fn openmetrics_golden() {
        assert_eq!(encode(&fixture(), Format::OpenMetrics), GOLDEN_OPENMETRICS);
    }

    #[test]
    fn snapshot_encoding_matches_slice_encoding() {
        let snapshot = Arc::new(Snapshot {
            families: fixture(),
            ..Snapshot::default()
        });
        for format in [Format::Text004, Format::OpenMetrics] {
            assert_eq!(encode_snapshot(&snapshot, format), encode(&fixture(), format));
        }
    }

    #[test]
    fn counter_without_total_suffix_gains_it_in_openmetrics_only() {
        let families = vec![family(
            "ebpf_test_drops",
            "Drops.",
            MetricKind::Counter,
            &[],
            vec![sample(&[], Value::Counter(3))],
        )];
        assert_eq!(
            encode(&families, Format::Text004),
            "# HELP ebpf_test_drops Drops.\n# TYPE ebpf_test_drops counter\nebpf_test_drops 3\n"
        );
        assert_eq!(
            encode(&families, Format::OpenMetrics),
            "# HELP ebpf_test_drops Drops.\n# TYPE ebpf_test_drops counter\nebpf_test_drops_total 3\n# EOF\n"
        );
    }

    #[test]
    fn mismatched_samples_and_infinite_bounds_are_dropped() {
        let families = vec![
            family(
                "ebpf_test_odd_total",
                "",
                MetricKind::Counter,
                &[],
                vec![sample(&[], Value::Gauge(1.0))],
            ),
            family(
                "ebpf_test_h_seconds",
                "",
                MetricKind::Histogram,
                &[],
                vec![sample(
                    &[],
                    Value::Histogram(Histogram {
                        buckets: vec![(1.0, 3), (2.0, 1), (f64::INFINITY, 4)],
                        count: 4,
                        sum: 2.0,
                    }),
                )],
            ),
        ];
        assert_eq!(
            encode(&families, Format::Text004),
            "# TYPE ebpf_test_h_seconds histogram\n\
             ebpf_test_h_seconds_bucket{le=\"1\"} 3\n\
             ebpf_test_h_seconds_bucket{le=\"2\"} 1\n\
             ebpf_test_h_seconds_bucket{le=\"+Inf\"} 4\n\
             ebpf_test_h_seconds_sum 2\n\
             ebpf_test_h_seconds_count 4\n"
        );
        // The decreasing bucket is clamped instead of wrapping around.
        let om = encode(&families, Format::OpenMetrics);
        assert!(om.contains("ebpf_test_h_seconds_bucket{le=\"2.0\"} 3\n"), "{om}");
        assert!(om.contains("ebpf_test_h_seconds_bucket{le=\"+Inf\"} 4\n"), "{om}");
        assert!(!om.contains("ebpf_test_odd"), "{om}");
    }

    #[test]
    fn go_float_formatting() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (2.0, "2"),
            (0.001, "0.001"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.25, "0.25"),
            (1024.0, "1024"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (2.5e-7, "2.5e-07"),
            (1e100, "1e+100"),
            (-12.5, "-12.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            let mut got = String::new();
            format_go_float(&mut got, *v);
            assert_eq!(got, *want, "formatting {v:e}");
            assert!(
                got.parse::<f64>().ok() == Some(*v) || v.is_nan() || v.is_infinite() || *v == 0.0,
                "{got} does not round-trip"
            );
        }
        let mut got = String::new();
        format_value(&mut got, 1e15);
        assert_eq!(got, "1000000000000000");
        got.clear();
        format_value(&mut got, 1e20);
        assert_eq!(got, "1e+20");
        got.clear();
        format_value(&mut got, -3.0);
        assert_eq!(got, "-3");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::Text004.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }

    /// Runs `promtool` with `args`, feeding `input` on stdin; `None` when
    /// promtool is not installed and that is acceptable here.
    fn promtool(args: &[&str], input: &str) -> Option<std::process::Output> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let child = Command::new("promtool")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "promtool is required on CI (Debian/Ubuntu package `prometheus`)"
                );
                eprintln!("note: promtool not on PATH; skipping exposition validation");
                return None;
            }
            Err(err) => panic!("cannot run promtool: {err}"),
        };
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(input.as_bytes()).expect("write to promtool");
        drop(stdin);
        Some(child.wait_with_output().expect("wait for promtool"))
    }

    /// `promtool check metrics` parses text 0.0.4 and lints it.
    #[test]
    fn promtool_accepts_text004() {
        let text = encode(&fixture(), Format::Text004);
        let Some(out) = promtool(&["check", "metrics"], &text) else {
            return;
        };
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics failed:\nstdout: {}\nstderr: {}\ninput:\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }

    /// `promtool check metrics` only understands text 0.0.4, so OpenMetrics
    /// is validated through the backfill importer, which runs Prometheus'
    /// strict OpenMetrics parser. The importer insists on timestamps, so one
    /// is appended to every sample line first.
    #[test]
    fn promtool_accepts_openmetrics() {
        let om = encode(&fixture(), Format::OpenMetrics);
        let with_timestamps: String = om
            .lines()
            .map(|line| {
                if line.starts_with('#') {
                    format!("{line}\n")
                } else {
                    format!("{line} 1700000000\n")
                }
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("bpf-exporter-om-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let input = dir.join("input.om");
        std::fs::write(&input, &with_timestamps).expect("write input");
        let output = dir.join("blocks");
        let result = promtool(
            &[
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                input.to_str().expect("utf-8 temp path"),
                output.to_str().expect("utf-8 temp path"),
            ],
            "",
        );
        let _ = std::fs::remove_dir_all(&dir);
        let Some(out) = result else {
            return;
        };
        assert!(
            out.status.success(),
            "promtool rejected OpenMetrics:\nstdout: {}\nstderr: {}\ninput:\n{with_timestamps}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
}
