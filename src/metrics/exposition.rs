//! Snapshot → Prometheus text 0.0.4 or OpenMetrics 1.0 text, and which
//! [`Exposition`] a scrape gets (the protobuf one is [`super::protobuf`]).
//!
//! Two dialects exist because scrapers differ: Prometheus itself prefers
//! OpenMetrics, while `curl`, older Prometheus servers and many other tools
//! only speak the classic text format. Which one a request gets is the HTTP
//! layer's choice (`server::negotiate`). One encoder writes both, from the
//! snapshot's families as they are, because the two differ only in a few
//! spellings and everything else (which samples, series, label escaping,
//! exact `u64` counters) must not drift apart:
//!
//! * Text 0.0.4 matches what Go clients write: floats as Go's `%g`
//!   (`1e+06`, `+Inf`; sample values that are integers in full), `le` last
//!   among the labels, buckets before `_sum` and `_count`, HELP only when
//!   there is one, `"` in HELP left as is.
//! * OpenMetrics matches what `prometheus-client`, the reference Rust
//!   implementation, writes (a test holds the two to the same bytes):
//!   floats through `dtoa` as that crate does (`1000000.0`, `inf`), `le`
//!   first, `_sum` and `_count` before the buckets, cumulative counts that
//!   never decrease, HELP always and `"` in it escaped, `# EOF` last. A
//!   counter family is named without its `_total` and its samples with it:
//!   `ebpf_syscalls_total` becomes `# TYPE ebpf_syscalls counter` with
//!   sample `ebpf_syscalls_total`. A counter configured *without* `_total`
//!   therefore gains the suffix in OpenMetrics (but not in text 0.0.4);
//!   OpenMetrics requires it.
//!
//! Samples whose value does not match their family's kind (a bug upstream)
//! are dropped rather than emitted, so a scrape never fails to parse, and
//! families without samples are omitted entirely, as Prometheus client
//! libraries do.

use std::fmt::Write as _;

use super::{protobuf, Family, Histogram, MetricKind, Sample, Snapshot, Value};

/// What `/metrics` answers with: a text dialect, or the protobuf messages
/// that native histograms need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    Text(Format),
    Protobuf,
}

impl Exposition {
    /// `Content-Type` to answer with; Prometheus picks its parser from it.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Text(format) => format.content_type(),
            Exposition::Protobuf => protobuf::CONTENT_TYPE,
        }
    }

    /// `snapshot` as the telemetry path serves it; native histograms go in
    /// the protobuf only, and only when `native_histograms`.
    pub fn encode(self, snapshot: &Snapshot, native_histograms: bool) -> Vec<u8> {
        match self {
            Exposition::Text(format) => encode(&snapshot.families, format).into_bytes(),
            Exposition::Protobuf => protobuf::encode(&snapshot.families, native_histograms),
        }
    }
}

/// A text exposition format this exporter can produce.
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

/// Encodes `families` (owned, or shared as a snapshot holds them) in
/// `format`.
pub fn encode<F: std::borrow::Borrow<Family>>(families: &[F], format: Format) -> String {
    // About what a series takes, so that a large page is not copied over
    // and over as it grows; a histogram's series are its buckets.
    let series: usize = families
        .iter()
        .flat_map(|f| &f.borrow().samples)
        .map(|s| match &s.value {
            Value::Histogram(h) => h.buckets.len() + 3,
            _ => 1,
        })
        .sum();
    let mut out = String::with_capacity(series * 80 + families.len() * 128);
    for family in families {
        write_family(&mut out, family.borrow(), format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn value_matches(kind: MetricKind, value: &Value) -> bool {
    matches!(
        (kind, value),
        (MetricKind::Counter, Value::Counter(_) | Value::FloatCounter(_))
            | (MetricKind::Gauge, Value::Gauge(_))
            | (MetricKind::Histogram, Value::Histogram(_))
    )
}

/// The samples of `family` that match its kind: what every format shows.
pub(super) fn exposed_samples(family: &Family) -> impl Iterator<Item = &Sample> {
    family
        .samples
        .iter()
        .filter(move |s| value_matches(family.kind, &s.value))
}

/// Finite bucket bounds only: `+Inf` is written from `count`, and a stray
/// non-finite bound would otherwise duplicate or corrupt it.
pub(super) fn finite_buckets(buckets: &[(f64, u64)]) -> impl Iterator<Item = (f64, u64)> + '_ {
    buckets.iter().copied().filter(|(upper, _)| upper.is_finite())
}

/// OpenMetrics counter families are named without the `_total` their
/// samples carry; a name that is nothing but `_total` is kept whole.
fn openmetrics_counter_name(name: &str) -> &str {
    match name.strip_suffix("_total") {
        Some(stripped) if !stripped.is_empty() => stripped,
        _ => name,
    }
}

fn write_family(out: &mut String, family: &Family, format: Format) {
    let mut samples = exposed_samples(family).peekable();
    if samples.peek().is_none() {
        return;
    }
    let openmetrics = format == Format::OpenMetrics;
    let (name, sample_suffix) = match (format, family.kind) {
        (Format::OpenMetrics, MetricKind::Counter) => (openmetrics_counter_name(&family.name), "_total"),
        _ => (family.name.as_str(), ""),
    };
    if openmetrics || !family.help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape_into(out, &family.help, openmetrics);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push_str(match family.kind {
        MetricKind::Counter => " counter\n",
        MetricKind::Gauge => " gauge\n",
        MetricKind::Histogram => " histogram\n",
    });
    let mut writer = SeriesWriter {
        out,
        format,
        name,
        label_names: &family.label_names,
    };
    for sample in samples {
        let labels = &sample.label_values;
        match &sample.value {
            Value::Counter(v) => {
                writer.series(sample_suffix, labels, None);
                writer.count(*v);
            }
            Value::Gauge(v) | Value::FloatCounter(v) => {
                writer.series(sample_suffix, labels, None);
                writer.value(*v);
            }
            Value::Histogram(h) => writer.histogram(labels, h),
        }
    }
}

/// Writes the sample lines of one family.
struct SeriesWriter<'a> {
    out: &'a mut String,
    format: Format,
    /// The name every series starts with, before its suffix.
    name: &'a str,
    label_names: &'a [String],
}

impl SeriesWriter<'_> {
    /// Writes `name{labels} `, up to the value.
    fn series(&mut self, suffix: &str, label_values: &[String], le: Option<&str>) {
        let out = &mut *self.out;
        out.push_str(self.name);
        out.push_str(suffix);
        let mut labels = self
            .label_names
            .iter()
            .map(String::as_str)
            .zip(label_values.iter().map(String::as_str))
            .peekable();
        if labels.peek().is_none() && le.is_none() {
            out.push(' ');
            return;
        }
        let le = le.map(|le| ("le", le));
        let (le_first, le_last) = match self.format {
            Format::Text004 => (None, le),
            Format::OpenMetrics => (le, None),
        };
        out.push('{');
        for (i, (label, value)) in le_first.into_iter().chain(labels).chain(le_last).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_into(out, value, true);
            out.push('"');
        }
        out.push_str("} ");
    }

    fn count(&mut self, v: u64) {
        self.out.push_str(itoa::Buffer::new().format(v));
        self.out.push('\n');
    }

    fn value(&mut self, v: f64) {
        match self.format {
            Format::Text004 => format_value(self.out, v),
            Format::OpenMetrics => openmetrics_float(self.out, v),
        }
        self.out.push('\n');
    }

    fn histogram(&mut self, label_values: &[String], h: &Histogram) {
        let openmetrics = self.format == Format::OpenMetrics;
        if openmetrics {
            self.sum_and_count(label_values, h);
        }
        let mut le = String::new();
        let mut shown = 0u64;
        for (upper, cumulative) in finite_buckets(&h.buckets) {
            // OpenMetrics counts must not decrease: a decreasing cumulative
            // count (bad input) shows as the running maximum there.
            shown = if openmetrics {
                shown.max(cumulative)
            } else {
                cumulative
            };
            le.clear();
            match self.format {
                Format::Text004 => format_go_float(&mut le, upper),
                Format::OpenMetrics => openmetrics_float(&mut le, upper),
            }
            self.series("_bucket", label_values, Some(&le));
            self.count(shown);
        }
        self.series("_bucket", label_values, Some("+Inf"));
        self.count(if openmetrics { shown.max(h.count) } else { h.count });
        if !openmetrics {
            self.sum_and_count(label_values, h);
        }
    }

    fn sum_and_count(&mut self, label_values: &[String], h: &Histogram) {
        self.series("_sum", label_values, None);
        self.value(h.sum);
        self.series("_count", label_values, None);
        self.count(h.count);
    }
}

/// Escapes `\` and newline, plus `"` when `quote` (label values; and HELP in
/// OpenMetrics). Text 0.0.4 HELP must not escape `"`: parsers would keep the
/// backslash.
/// Runs without any of them are copied whole: label values rarely have one.
fn escape_into(out: &mut String, s: &str, quote: bool) {
    let mut rest = s;
    while let Some(at) = rest
        .bytes()
        .position(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        // The three are ASCII, so `at` and `at + 1` are char boundaries.
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            _ => "\\\"",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// Floats as prometheus-client writes them, values and bounds alike
/// (`0.0`, `1000000.0`, `1e-7`, `NaN`, `inf`): `dtoa`'s Grisu2 digits. They
/// round-trip but are not always the shortest (`0.1 + 0.2` gives
/// `0.30000000000000007`, not `…04`), so Rust's own formatting would change
/// the output.
fn openmetrics_float(out: &mut String, v: f64) {
    out.push_str(dtoa::Buffer::new().format(v));
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
        out.push_str(itoa::Buffer::new().format(v as i64));
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

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
    fn each_exposition_encodes_the_snapshot_with_its_encoder() {
        let snapshot = Arc::new(Snapshot {
            families: fixture().into_iter().map(Arc::new).collect(),
            ..Snapshot::default()
        });
        for format in [Format::Text004, Format::OpenMetrics] {
            let exposition = Exposition::Text(format);
            assert_eq!(exposition.content_type(), format.content_type());
            for native in [false, true] {
                assert_eq!(
                    exposition.encode(&snapshot, native),
                    encode(&fixture(), format).into_bytes()
                );
            }
        }
        assert_eq!(Exposition::Protobuf.content_type(), protobuf::CONTENT_TYPE);
        for native in [false, true] {
            assert_eq!(
                Exposition::Protobuf.encode(&snapshot, native),
                protobuf::encode(&fixture(), native)
            );
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
        let dir = tempfile::tempdir().expect("create temp dir");
        let input = dir.path().join("input.om");
        std::fs::write(&input, &with_timestamps).expect("write input");
        let output = dir.path().join("blocks");
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

    /// prometheus-client's OpenMetrics for `families`: what our encoder must
    /// write to the byte. Which samples are exposed, under which family name
    /// and with which bucket bounds is this module's policy, so the oracle
    /// asks the code under test; names, HELP, label order, floats and bucket
    /// accumulation are the crate's.
    fn reference_openmetrics(families: &[Family]) -> String {
        use prometheus_client::collector::Collector;
        use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
        use prometheus_client::metrics::MetricType;
        use prometheus_client::registry::Registry;

        /// A `Collector` must be `'static`, hence owned families.
        #[derive(Debug)]
        struct Families(Vec<Family>);

        impl Collector for Families {
            fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
                for family in &self.0 {
                    if exposed_samples(family).next().is_none() {
                        continue;
                    }
                    // The crate appends `_total` to counter samples itself.
                    let (name, metric_type) = match family.kind {
                        MetricKind::Counter => (openmetrics_counter_name(&family.name), MetricType::Counter),
                        MetricKind::Gauge => (family.name.as_str(), MetricType::Gauge),
                        MetricKind::Histogram => (family.name.as_str(), MetricType::Histogram),
                    };
                    // The crate writes HELP verbatim.
                    let help = family
                        .help
                        .replace('\\', "\\\\")
                        .replace('\n', "\\n")
                        .replace('"', "\\\"");
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
                            encode_value(&mut metric, &sample.value)?;
                        } else {
                            encode_value(&mut metric.encode_family(&labels)?, &sample.value)?;
                        }
                    }
                }
                Ok(())
            }
        }

        fn encode_value(metric: &mut MetricEncoder, value: &Value) -> std::fmt::Result {
            match value {
                Value::Counter(v) => metric.encode_counter::<NoLabelSet, u64, u64>(v, None),
                Value::FloatCounter(v) => metric.encode_counter::<NoLabelSet, f64, f64>(v, None),
                Value::Gauge(v) => metric.encode_gauge(v),
                Value::Histogram(h) => {
                    // The crate takes per-bucket counts and accumulates them;
                    // ours are cumulative, and may decrease in bad input.
                    let mut per_bucket = Vec::new();
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

        let mut registry = Registry::default();
        registry.register_collector(Box::new(Families(families.to_vec())));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encoding into a String");
        out
    }

    /// Floats that take every branch of the float printer: special values,
    /// both signs of zero, the edges of plain and exponent notation, and
    /// fractions that print with many digits.
    const ODD_FLOATS: &[f64] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.25,
        0.1 + 0.2,
        1e6,
        123_456_789.5,
        1e15,
        9_007_199_254_740_993.0,
        1e20,
        1e21,
        1e22,
        1e-5,
        1e-6,
        1e-7,
        2.5e-7,
        -12.5,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];

    /// Values as the reader makes them (counts times a unit, `i as f64 *
    /// 1e-9`) and arbitrary bit patterns, where float printers most often
    /// disagree on the last digit.
    fn many_floats() -> Vec<f64> {
        let mut bits = 0x9e37_79b9_7f4a_7c15u64;
        let arbitrary = std::iter::from_fn(move || {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            Some(f64::from_bits(bits))
        });
        (0..2000u32)
            .map(|i| f64::from(i) * 1e-9)
            .chain((0..2000u32).map(|i| f64::from(i * 37) * 0.000001))
            .chain(arbitrary.filter(|v| v.is_finite()).take(2000))
            .collect()
    }

    fn varied_families() -> Vec<Family> {
        let histogram = |buckets: Vec<(f64, u64)>, count: u64, sum: f64| {
            Value::Histogram(Histogram { buckets, count, sum })
        };
        let exp2 = |unit: f64, max: u32| -> Vec<(f64, u64)> {
            (0..=max)
                .map(|i| (2f64.powi(i as i32) * unit, u64::from(i) * 3))
                .collect()
        };
        vec![
            family(
                "ebpf_a_total",
                "Plain counter.",
                MetricKind::Counter,
                &[],
                vec![sample(&[], Value::Counter(0))],
            ),
            family(
                "ebpf_b_total",
                "Counter, \"quoted\" \\ and\nnewline.",
                MetricKind::Counter,
                &["syscall", "comm"],
                vec![
                    sample(&["read", "a\"b\\c\nd"], Value::Counter(u64::MAX)),
                    sample(&["write", ""], Value::Counter(1)),
                    sample(&["openat", "é ✓ {x=\"1\"}"], Value::Counter(42)),
                ],
            ),
            family(
                "ebpf_drops",
                "Counter without the suffix.",
                MetricKind::Counter,
                &["reason"],
                vec![sample(&["x"], Value::Counter(3))],
            ),
            family(
                "_total",
                "Nothing but the suffix.",
                MetricKind::Counter,
                &[],
                vec![sample(&[], Value::Counter(7))],
            ),
            family(
                "ebpf_busy_seconds_total",
                "",
                MetricKind::Counter,
                &["n"],
                ODD_FLOATS
                    .iter()
                    .enumerate()
                    .map(|(i, v)| sample(&[&i.to_string()], Value::FloatCounter(*v)))
                    .collect(),
            ),
            family(
                "ebpf_depth",
                "Gauge.",
                MetricKind::Gauge,
                &["n"],
                ODD_FLOATS
                    .iter()
                    .copied()
                    .chain(many_floats())
                    .enumerate()
                    .map(|(i, v)| sample(&[&i.to_string()], Value::Gauge(v)))
                    .collect(),
            ),
            family(
                "ebpf_unlabelled",
                "Gauge without labels.",
                MetricKind::Gauge,
                &[],
                vec![sample(&[], Value::Gauge(-3.0))],
            ),
            family(
                "ebpf_latency_seconds",
                "Histogram with labels.",
                MetricKind::Histogram,
                &["device", "operation"],
                vec![
                    sample(&["sda", "read"], histogram(exp2(1e-6, 26), 80, 1234.0 * 1e-6)),
                    sample(&["sda", "write"], histogram(exp2(1e-9, 36), 200, 0.1 + 0.2)),
                    sample(&["nvme0n1", "\"odd\""], histogram(vec![], 0, 0.0)),
                ],
            ),
            family(
                "ebpf_wait_seconds",
                "Histogram without labels, odd buckets.",
                MetricKind::Histogram,
                &[],
                vec![
                    // Decreasing counts, a count below the top bucket, and
                    // bounds that are not finite.
                    sample(
                        &[],
                        histogram(
                            vec![
                                (0.001, 5),
                                (0.5, 2),
                                (f64::NAN, 9),
                                (1.0, 8),
                                (1e21, 9),
                                (f64::INFINITY, 10),
                            ],
                            6,
                            f64::NAN,
                        ),
                    ),
                    sample(&[], histogram(vec![(1.0, 1)], 1, f64::INFINITY)),
                ],
            ),
            family(
                "ebpf_empty_total",
                "No samples.",
                MetricKind::Counter,
                &[],
                vec![],
            ),
            family("ebpf_empty", "No samples.", MetricKind::Gauge, &["x"], vec![]),
            family(
                "ebpf_empty_seconds",
                "No samples.",
                MetricKind::Histogram,
                &[],
                vec![],
            ),
            family(
                "ebpf_mixed_total",
                "Counter with samples of other kinds.",
                MetricKind::Counter,
                &["k"],
                vec![
                    sample(&["gauge"], Value::Gauge(1.0)),
                    sample(&["ok"], Value::Counter(2)),
                    sample(&["histogram"], histogram(vec![], 0, 0.0)),
                ],
            ),
            family(
                "ebpf_only_wrong",
                "Gauge with only a counter sample.",
                MetricKind::Gauge,
                &[],
                vec![sample(&[], Value::Counter(1))],
            ),
            family(
                "ebpf_wrong_seconds",
                "Histogram with a gauge sample.",
                MetricKind::Histogram,
                &[],
                vec![
                    sample(&[], Value::Gauge(1.0)),
                    sample(&[], histogram(vec![(2.0, 1)], 1, 2.0)),
                ],
            ),
            family(
                "ebpf_uneven_total",
                "Label names and values of different lengths.",
                MetricKind::Counter,
                &["a", "b"],
                vec![
                    sample(&["only_a"], Value::Counter(1)),
                    sample(&[], Value::Counter(2)),
                    sample(&["x", "y", "z"], Value::Counter(3)),
                ],
            ),
            family(
                "ebpf_no_names",
                "Values without label names.",
                MetricKind::Gauge,
                &[],
                vec![sample(&["stray"], Value::Gauge(4.0))],
            ),
        ]
    }

    /// Our OpenMetrics against prometheus-client's, line by line so that a
    /// difference is easy to find.
    #[test]
    fn openmetrics_matches_prometheus_client() {
        let families = varied_families();
        let ours = encode(&families, Format::OpenMetrics);
        let reference = reference_openmetrics(&families);
        for (i, (a, b)) in ours.lines().zip(reference.lines()).enumerate() {
            assert_eq!(a, b, "line {}", i + 1);
        }
        assert_eq!(ours.lines().count(), reference.lines().count());
        assert_eq!(ours, reference);
        // The fixture of the golden tests too, and nothing at all.
        assert_eq!(
            encode(&fixture(), Format::OpenMetrics),
            reference_openmetrics(&fixture())
        );
        assert_eq!(
            encode::<Family>(&[], Format::OpenMetrics),
            reference_openmetrics(&[])
        );
    }
}
