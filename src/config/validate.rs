//! Raw YAML → [`Config`], checked against the program's object.
//!
//! Every problem in a file is collected before reporting, so one run of
//! `--config.check` shows them all.

use std::cell::RefCell;

use serde_saphyr::{DefaultMessageFormatter, Location, MessageFormatter, Spanned};

use super::raw::{RawAttach, RawConfig, RawHistogram, RawLabel, RawMetric, RawUprobe, RawXdp};
use super::{
    AttachSpec, Config, ConfigError, ConfigErrors, GlobalSpec, HistogramSpec, LabelSpec, MetricSpec,
    MetricType, Source, XdpMode,
};
use crate::decoders::{self, DecoderOptions};
use crate::programs::{self, GlobalMeta, Hook, KeyField, KeyLayout, MapMeta, ObjectInfo};

/// Name of the label that splits per-CPU values by CPU, as in ebpf_exporter.
pub const CPU_LABEL: &str = "cpu";

/// Parses and validates one config; `prefix` is prepended to metric names.
pub fn parse(source: &Source, prefix: &str) -> Result<Config, ConfigErrors> {
    let file = source.origin.as_str();
    if source
        .text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ConfigErrors(vec![ConfigError::file_level(
            file,
            "the file is empty: a config needs at least a `metrics:` section with `counters:`",
        )]));
    }
    let raw = deserialize(file, &source.text).map_err(|e| ConfigErrors(vec![e]))?;

    let mut v = Validator {
        file,
        errors: Vec::new(),
    };
    let program = raw
        .program
        .as_ref()
        .map_or(source.name.clone(), |p| p.value.clone());
    let Some(embedded) = programs::find(&program) else {
        let message = format!(
            "no embedded program named {program:?} (embedded: {}); {}",
            programs::embedded_names().join(", "),
            if raw.program.is_some() {
                "name one of them in `program:`"
            } else {
                "name one of them in `program:`, or rename the file after one"
            }
        );
        let error = match &raw.program {
            Some(p) => ConfigError::at(file, p.referenced, "program", message),
            None => ConfigError::file_level(file, message),
        };
        return Err(ConfigErrors(vec![error]));
    };
    let info = programs::inspect(embedded.name, embedded.object)
        .map_err(|e| ConfigErrors(vec![ConfigError::file_level(file, format!("{e:#}"))]))?;

    let raw_metrics = &raw.metrics.value;
    let mut found: Vec<(String, Location, Option<MetricSpec>)> = Vec::new();
    for (i, m) in raw_metrics.counters.iter().enumerate() {
        let path = format!("metrics.counters[{i}]");
        let spec = v.metric(&path, MetricType::Counter, &Shape::of(m), &info, prefix);
        found.push((path, m.value.name.referenced, spec));
    }
    for (i, m) in raw_metrics.gauges.iter().enumerate() {
        let path = format!("metrics.gauges[{i}]");
        let spec = v.metric(&path, MetricType::Gauge, &Shape::of(m), &info, prefix);
        found.push((path, m.value.name.referenced, spec));
    }
    for (i, h) in raw_metrics.histograms.iter().enumerate() {
        let path = format!("metrics.histograms[{i}]");
        let spec = v.histogram(&path, h, &info, prefix);
        found.push((path, h.value.name.referenced, spec));
    }
    let mut metrics: Vec<MetricSpec> = Vec::new();
    for (path, location, spec) in found {
        let Some(spec) = spec else { continue };
        if metrics.iter().any(|m| m.name == spec.name) {
            v.error(
                location,
                &path,
                format!("metric {:?} is defined twice", spec.name),
            );
        } else {
            metrics.push(spec);
        }
    }
    if raw_metrics.counters.is_empty() && raw_metrics.gauges.is_empty() && raw_metrics.histograms.is_empty() {
        v.error(
            raw.metrics.referenced,
            "metrics",
            "no metrics defined: add `counters:`, `gauges:` or `histograms:` with one entry per map",
        );
    }

    let attach: Vec<AttachSpec> = raw
        .attach
        .iter()
        .enumerate()
        .filter_map(|(i, a)| v.attach(&format!("attach[{i}]"), a, &info))
        .collect();
    for prog in &info.programs {
        // An entry with errors of its own counts: those errors say what to fix.
        let listed = raw.attach.iter().any(|a| a.value.program.value == prog.name);
        if programs::needs_attach_entry(&prog.section) && !listed {
            let example = match Hook::of_section(&prog.section) {
                Some(Hook::Xdp) => "xdp: {interface: eth0}",
                _ => "uprobe: {binary: /usr/bin/bash, function: readline}",
            };
            v.errors.push(ConfigError::file_level(
                file,
                format!(
                    "program {:?} (SEC \"{}\") needs an attach entry saying where to attach, such as \
                     `attach: [{{program: {}, {example}}}]`",
                    prog.name, prog.section, prog.name
                ),
            ));
        }
    }

    if v.errors.is_empty() {
        Ok(Config {
            name: source.name.clone(),
            origin: source.origin.clone(),
            text: source.text.clone(),
            program,
            metrics,
            attach,
        })
    } else {
        Err(ConfigErrors(v.errors))
    }
}

/// serde stage, with the YAML path of the failure recorded on the way.
fn deserialize(file: &str, text: &str) -> Result<RawConfig, ConfigError> {
    let path = RefCell::new(String::new());
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            *path.borrow_mut() = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let inner = e.without_snippet();
        let message = DefaultMessageFormatter.format_message(inner).into_owned();
        let path = clean_path(&path.borrow());
        match e.location() {
            Some(location) => ConfigError::at(file, location, path, message),
            None => ConfigError {
                path,
                ..ConfigError::file_level(file, message)
            },
        }
    })
}

/// Drops the `.value` steps that span wrappers add and the `.` of the root.
fn clean_path(path: &str) -> String {
    let cleaned: Vec<&str> = path
        .split('.')
        .filter(|s| *s != "value" && !s.is_empty() && *s != "?")
        .collect();
    cleaned.join(".")
}

/// Bytes a label or its padding may span: far more than any key has, and
/// small enough that offsets never overflow.
const MAX_LABEL_BYTES: u64 = 4096;

/// More buckets than any histogram needs; a bound keeps a typo like
/// `bucket_max: 1000000` from exporting a million series.
const MAX_BUCKETS: usize = 4096;

/// Integers above 2^53 cannot be told apart as f64 (the type YAML gives).
const MAX_EXACT_KEY: f64 = 9_007_199_254_740_992.0;

/// Where one key label's bytes are.
struct Place {
    offset: usize,
    size: usize,
    /// Bytes skipped after it.
    padding: usize,
    /// Picked by field name rather than by position.
    by_name: bool,
}

/// Where in the key a byte falls, for messages: inside which field, or past
/// the last one.
fn whereabouts(field: Option<&KeyField>) -> String {
    field.map_or("past its last field".to_string(), |f| {
        format!(
            "inside field `{}` (bytes {}..{})",
            f.name,
            f.offset,
            f.offset + f.size
        )
    })
}

/// `struct key_t { pid: 0..4, comm: 4..20 }`, for messages.
fn describe(layout: &KeyLayout) -> String {
    let fields: Vec<String> = layout
        .fields
        .iter()
        .map(|f| format!("{}: {}..{}", f.name, f.offset, f.offset + f.size))
        .collect();
    format!("{} {{ {} }}", layout.type_name, fields.join(", "))
}

/// The fields counters, gauges and histograms share.
struct Shape<'r> {
    name: &'r Spanned<String>,
    help: &'r Spanned<String>,
    labels: &'r [Spanned<RawLabel>],
    /// Where the metric's entry starts, for errors about it as a whole.
    at: Location,
}

impl<'r> Shape<'r> {
    fn of(metric: &'r Spanned<RawMetric>) -> Self {
        Shape {
            name: &metric.value.name,
            help: &metric.value.help,
            labels: &metric.value.labels,
            at: metric.referenced,
        }
    }
}

struct Validator<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, location: Location, path: &str, message: impl Into<String>) {
        self.errors
            .push(ConfigError::at(self.file, location, path, message));
    }

    /// Validates what counters, gauges and histograms share: the name, the
    /// map or global variable read, and the labels.
    fn metric(
        &mut self,
        path: &str,
        kind: MetricType,
        shape: &Shape<'_>,
        info: &ObjectInfo,
        prefix: &str,
    ) -> Option<MetricSpec> {
        let before = self.errors.len();
        let name = format!("{prefix}{}", shape.name.value);
        let name_path = format!("{path}.name");
        if !is_metric_name(&name) {
            self.error(
                shape.name.referenced,
                &name_path,
                format!(
                    "{name:?} is not a valid Prometheus metric name: use letters, digits, `_` and `:`, \
                     not starting with a digit"
                ),
            );
        }
        if shape.help.value.trim().is_empty() {
            self.error(
                shape.help.referenced,
                &format!("{path}.help"),
                "help is empty: say what the metric measures",
            );
        }
        let histogram = matches!(kind, MetricType::Histogram(_));
        let map = info.map(&shape.name.value);
        let global = match map {
            Some(_) => None,
            None => info.global(&shape.name.value).filter(|_| !histogram),
        };
        match (map, global) {
            (Some(map), _) => self.check_map(&name_path, shape.name.referenced, map),
            (None, Some(global)) => self.check_global(path, shape, global),
            (None, None) => {
                let known = |names: Vec<&str>| {
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                };
                let maps = known(
                    info.maps
                        .iter()
                        .map(|m| m.name.as_str())
                        .filter(|n| !n.contains('.'))
                        .collect(),
                );
                let message = if histogram {
                    format!(
                        "the program has no map named {:?} (maps: {maps}); a histogram's name is the name of the map it reads",
                        shape.name.value
                    )
                } else {
                    let globals = known(info.globals.iter().map(|g| g.name.as_str()).collect());
                    format!(
                        "the program has no map or global variable named {:?} (maps: {maps}; globals: {globals}); \
                         a metric's name is the name of the map or variable it reads",
                        shape.name.value
                    )
                };
                self.error(shape.name.referenced, &name_path, message);
            }
        }

        let percpu = map.is_some_and(|m| programs::is_percpu(m.map_type));
        let layout = map.and_then(|m| m.key.as_ref());
        let mut labels = Vec::new();
        let mut cpu_label = None;
        let mut offset = 0usize;
        let mut by_name = false;
        let count = shape.labels.len();
        for (j, label) in shape.labels.iter().enumerate() {
            let lpath = format!("{path}.labels[{j}]");
            let is_cpu = percpu && j + 1 == count && label.value.name.value == CPU_LABEL;
            if shape.labels[..j]
                .iter()
                .any(|l| l.value.name.value == label.value.name.value)
            {
                self.error(
                    label.value.name.referenced,
                    &format!("{lpath}.name"),
                    format!("label {:?} is defined twice", label.value.name.value),
                );
            }
            if is_cpu {
                // The CPU number takes no key bytes; ebpf_exporter's configs give 2.
                let size = label.value.size.as_ref().map_or(2, |s| s.value as usize);
                if !matches!(size, 1 | 2 | 4 | 8) {
                    self.error(label.referenced, &format!("{lpath}.size"), "the cpu label carries the CPU number: its size must be 1, 2, 4 or 8 (ebpf_exporter uses 2)");
                }
                cpu_label = self.label(&lpath, label, 0, size);
                continue;
            }
            let Some(place) = self.place(&lpath, label, offset, map, layout) else {
                continue;
            };
            by_name |= place.by_name;
            offset = place.offset + place.size + place.padding;
            if let Some(spec) = self.label(&lpath, label, place.offset, place.size) {
                labels.push(spec);
            }
        }
        if let Some(map) = map {
            let key_size = map.key_size as usize;
            // Labels picked by field name may leave fields out on purpose
            // (their rows are summed); otherwise they must cover the key.
            if !labels.is_empty() && !by_name && offset != key_size {
                self.error(
                    shape.at,
                    &format!("{path}.labels"),
                    format!(
                        "label sizes and padding add up to {offset} bytes but map {:?} has {key_size}-byte keys{}: \
                         make size + padding of the labels match the key struct{}",
                        map.name,
                        layout.map_or(String::new(), |l| format!(" ({})", describe(l))),
                        if percpu { " (a last label named `cpu` takes no key bytes)" } else { "" }
                    ),
                );
            }
        }
        if let MetricType::Histogram(spec) = &kind {
            let key_labels = count - usize::from(cpu_label.is_some());
            self.check_bucket_label(path, shape, key_labels, labels.last(), map, spec);
        }
        if self.errors.len() > before {
            return None;
        }
        Some(MetricSpec {
            kind,
            map: global.map_or(shape.name.value.clone(), |g| g.map.clone()),
            global: global.map(|g| GlobalSpec {
                offset: g.offset,
                size: g.size,
                signed: g.int_signed == Some(true),
            }),
            name,
            help: shape.help.value.clone(),
            labels,
            cpu_label,
        })
    }

    fn check_map(&mut self, path: &str, at: Location, map: &MapMeta) {
        if !programs::is_readable(map.map_type) {
            self.error(
                at,
                path,
                format!(
                    "map {:?} is a {:?} map; metrics read HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_HASH \
                     or LRU_PERCPU_HASH maps",
                    map.name, map.map_type
                ),
            );
        }
        if map.value_size != 8 {
            self.error(
                at,
                path,
                format!(
                    "map {:?} has {}-byte values; metrics need 64-bit (8-byte) values",
                    map.name, map.value_size
                ),
            );
        }
    }

    fn check_global(&mut self, path: &str, shape: &Shape<'_>, global: &GlobalMeta) {
        if global.int_signed.is_none() || !matches!(global.size, 1 | 2 | 4 | 8) {
            self.error(
                shape.name.referenced,
                &format!("{path}.name"),
                format!(
                    "global variable {:?} is not an integer of 1, 2, 4 or 8 bytes; metrics read integer globals",
                    global.name
                ),
            );
        }
        if let Some(label) = shape.labels.first() {
            self.error(
                label.referenced,
                &format!("{path}.labels"),
                format!(
                    "{:?} is a global variable, which has no key to take labels from: remove `labels`",
                    global.name
                ),
            );
        }
    }

    /// A histogram's last key label is its bucket index: it must exist,
    /// decode to an integer, and the map must have room for every bucket.
    fn check_bucket_label(
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
            let needed = spec.buckets.len() + 1;
            if (map.max_entries as usize) < needed {
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
            }
        }
    }

    fn histogram(
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
        };
        let spec = self.metric(path, kind, &shape, info, prefix);
        spec.filter(|_| valid)
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

    /// Where a key label's bytes are: `offset` onwards with its `size`, or
    /// the key field BTF names for it. The result is checked against the
    /// key's fields, so a config cannot drift from the C struct unnoticed.
    fn place(
        &mut self,
        path: &str,
        label: &Spanned<RawLabel>,
        offset: usize,
        map: Option<&MapMeta>,
        layout: Option<&KeyLayout>,
    ) -> Option<Place> {
        let l = &label.value;
        // Out-of-range numbers stop here, before any offset arithmetic.
        let mut in_range = true;
        if let Some(size) = l
            .size
            .as_ref()
            .filter(|s| s.value == 0 || s.value > MAX_LABEL_BYTES)
        {
            self.error(
                size.referenced,
                &format!("{path}.size"),
                format!(
                    "size {} is out of range: give the label's byte count in the key (1 to {MAX_LABEL_BYTES})",
                    size.value
                ),
            );
            in_range = false;
        }
        if let Some(padding) = l.padding.as_ref().filter(|p| p.value > MAX_LABEL_BYTES) {
            self.error(
                padding.referenced,
                &format!("{path}.padding"),
                format!(
                    "padding {} is out of range (0 to {MAX_LABEL_BYTES})",
                    padding.value
                ),
            );
            in_range = false;
        }
        if !in_range {
            return None;
        }
        let padding = l.padding.as_ref().map(|p| p.value as usize);
        let place = match (&l.size, layout) {
            (Some(size), _) => Place {
                offset,
                size: size.value as usize,
                padding: padding.unwrap_or(0),
                by_name: false,
            },
            (None, None) => {
                if map.is_some() {
                    self.error(
                        label.referenced,
                        &format!("{path}.size"),
                        "size is missing and the program's BTF does not describe this map's key: give `size`",
                    );
                }
                return None;
            }
            (None, Some(layout)) => {
                let named = layout.field_named(&l.name.value);
                let Some(field) = named.or_else(|| layout.field_at(offset)) else {
                    self.error(
                        label.referenced,
                        &format!("{path}.size"),
                        format!(
                            "size is missing and no field of the key is named {:?} or starts at byte {offset} \
                             ({}): give `size`, or name the label after a field",
                            l.name.value,
                            describe(layout)
                        ),
                    );
                    return None;
                };
                // Up to the next field (a struct hole) or the end of the key.
                let end = field.offset + field.size;
                let next = layout
                    .fields
                    .iter()
                    .map(|f| f.offset)
                    .filter(|&o| o >= end)
                    .min()
                    .unwrap_or_else(|| map.map_or(end, |m| m.key_size as usize).max(end));
                Place {
                    offset: field.offset,
                    size: field.size,
                    padding: padding.unwrap_or(next - end),
                    by_name: named.is_some(),
                }
            }
        };
        let at = l.size.as_ref().map_or(label.referenced, |s| s.referenced);
        if let Some(layout) = layout {
            let end = place.offset + place.size;
            if layout.field_at(place.offset).is_none() {
                let inside = layout.field_containing(place.offset);
                self.error(
                    at,
                    &format!("{path}.size"),
                    format!(
                        "label {:?} starts at byte {} of the key, {}: make size + padding of the labels \
                         before it match the key ({})",
                        l.name.value,
                        place.offset,
                        whereabouts(inside),
                        describe(layout)
                    ),
                );
            } else if !layout.fields.iter().any(|f| f.offset + f.size == end) {
                let inside = layout.field_containing(end.saturating_sub(1));
                self.error(
                    at,
                    &format!("{path}.size"),
                    format!(
                        "label {:?} covers bytes {}..{end} of the key, which ends {}: make its size match \
                         the key ({})",
                        l.name.value,
                        place.offset,
                        whereabouts(inside),
                        describe(layout)
                    ),
                );
            }
        }
        Some(place)
    }

    fn label(
        &mut self,
        path: &str,
        label: &Spanned<RawLabel>,
        offset: usize,
        size: usize,
    ) -> Option<LabelSpec> {
        let l = &label.value;
        let before = self.errors.len();
        if !is_label_name(&l.name.value) {
            self.error(
                l.name.referenced,
                &format!("{path}.name"),
                format!(
                    "{:?} is not a valid Prometheus label name: use letters, digits and `_`, not starting \
                     with a digit or `__`",
                    l.name.value
                ),
            );
        }
        if l.decoders.is_empty() {
            self.error(
                label.referenced,
                &format!("{path}.decoders"),
                "no decoders: add at least one, such as `decoders: [{name: uint}]`",
            );
        }
        let mut decoders = Vec::new();
        for (k, d) in l.decoders.iter().enumerate() {
            let options = DecoderOptions {
                static_map: d.value.static_map.clone(),
                regexps: d.value.regexps.clone(),
                allow_unknown: d.value.allow_unknown,
            };
            match decoders::configure(&d.value.name.value, &options) {
                Ok(decoder) => decoders.push(decoder),
                Err(message) => {
                    self.error(d.value.name.referenced, &format!("{path}.decoders[{k}]"), message)
                }
            }
        }
        (self.errors.len() == before).then(|| LabelSpec {
            name: l.name.value.clone(),
            offset,
            size,
            decoders,
        })
    }

    fn attach(&mut self, path: &str, attach: &Spanned<RawAttach>, info: &ObjectInfo) -> Option<AttachSpec> {
        let a = &attach.value;
        let before = self.errors.len();
        let program = info.programs.iter().find(|p| p.name == a.program.value);
        if program.is_none() {
            let known: Vec<&str> = info.programs.iter().map(|p| p.name.as_str()).collect();
            self.error(
                a.program.referenced,
                &format!("{path}.program"),
                format!(
                    "the object has no program {:?} (programs: {})",
                    a.program.value,
                    known.join(", ")
                ),
            );
        }
        let spec = match (&a.xdp, &a.uprobe) {
            (Some(xdp), None) => self.xdp(path, &a.program.value, xdp),
            (None, Some(uprobe)) => self.uprobe(path, &a.program.value, uprobe),
            (None, None) => {
                self.error(
                    attach.referenced,
                    path,
                    "say how to attach: add `xdp: {interface: <name>}` or \
                     `uprobe: {binary: <absolute path>, function: <symbol>}`",
                );
                return None;
            }
            (Some(_), Some(_)) => {
                self.error(
                    attach.referenced,
                    path,
                    "give one of `xdp:` and `uprobe:` per entry; attach a program twice with two entries",
                );
                return None;
            }
        };
        if let (Some(program), Some(spec)) = (program, &spec) {
            let key = spec.key();
            if Hook::of_section(&program.section).map(Hook::key) != Some(key) {
                self.error(
                    attach.referenced,
                    &format!("{path}.{key}"),
                    format!(
                        "program {:?} is SEC \"{}\", which cannot attach as `{key}:`",
                        program.name, program.section
                    ),
                );
            }
        }
        spec.filter(|_| self.errors.len() == before)
    }

    fn xdp(&mut self, path: &str, program: &str, xdp: &Spanned<RawXdp>) -> Option<AttachSpec> {
        let before = self.errors.len();
        let interface = xdp.value.interface.value.clone();
        if interface.is_empty() || interface.len() >= 16 || interface.contains(['/', ' ']) {
            self.error(
                xdp.value.interface.referenced,
                &format!("{path}.xdp.interface"),
                format!("{interface:?} is not an interface name (at most 15 characters, no `/` or spaces)"),
            );
        }
        let mode = match &xdp.value.mode {
            None => XdpMode::Auto,
            Some(m) => XdpMode::parse(&m.value).unwrap_or_else(|| {
                self.error(
                    m.referenced,
                    &format!("{path}.xdp.mode"),
                    format!(
                        "unknown XDP mode {:?} (known: {})",
                        m.value,
                        XdpMode::NAMES.join(", ")
                    ),
                );
                XdpMode::Auto
            }),
        };
        (self.errors.len() == before).then(|| AttachSpec::Xdp {
            program: program.to_string(),
            interface,
            mode,
        })
    }

    fn uprobe(&mut self, path: &str, program: &str, uprobe: &Spanned<RawUprobe>) -> Option<AttachSpec> {
        let u = &uprobe.value;
        let before = self.errors.len();
        let binary = &u.binary.value;
        if !binary.starts_with('/') || binary.contains('\0') {
            self.error(
                u.binary.referenced,
                &format!("{path}.uprobe.binary"),
                format!(
                    "{binary:?} is not an absolute path: give the binary's full path, such as /usr/bin/bash"
                ),
            );
        }
        let function = &u.function.value;
        if function.trim().is_empty() || function.contains(['\0', ' ']) {
            self.error(
                u.function.referenced,
                &format!("{path}.uprobe.function"),
                format!("{function:?} is not a symbol name: give the function's name, such as `readline`"),
            );
        }
        let pid = u.pid.as_ref().and_then(|p| match i32::try_from(p.value) {
            Ok(pid) if pid > 0 => Some(pid),
            _ => {
                self.error(
                    p.referenced,
                    &format!("{path}.uprobe.pid"),
                    format!(
                        "pid {} is out of range (1 to {}); leave `pid:` out to probe every process",
                        p.value,
                        i32::MAX
                    ),
                );
                None
            }
        });
        (self.errors.len() == before).then(|| AttachSpec::Uprobe {
            program: program.to_string(),
            binary: binary.clone(),
            function: function.clone(),
            pid,
        })
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EMBEDDED_CONFIGS;

    fn source(name: &str, text: &str) -> Source {
        Source {
            name: name.into(),
            origin: format!("configs/{name}.yaml"),
            text: text.into(),
        }
    }

    fn errors(name: &str, text: &str) -> Vec<String> {
        match parse(&source(name, text), "ebpf_") {
            Ok(_) => panic!("config was accepted:\n{text}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// Asserts one error whose text starts with `place` and contains `needle`.
    fn assert_error(name: &str, text: &str, place: &str, needle: &str) {
        let errors = errors(name, text);
        assert!(
            errors.iter().any(|e| e.starts_with(place) && e.contains(needle)),
            "no error at {place:?} containing {needle:?} in:\n{}",
            errors.join("\n")
        );
    }

    const SYSCALLS: &str = "metrics:
  counters:
    - name: syscalls_total
      help: Syscalls.
      labels:
        - name: syscall
          size: 8
          decoders:
            - name: uint
            - name: syscall
";

    #[test]
    fn shipped_configs_are_valid() {
        for embedded in EMBEDDED_CONFIGS {
            let src = Source {
                name: embedded.name.into(),
                origin: embedded.path.into(),
                text: embedded.text.into(),
            };
            if let Err(e) = parse(&src, "ebpf_") {
                panic!("{e}");
            }
        }
    }

    #[test]
    fn valid_config_resolves_offsets_names_and_program() {
        let config = parse(&source("syscalls", SYSCALLS), "ebpf_").unwrap();
        assert_eq!(config.program, "syscalls");
        let metric = &config.metrics[0];
        assert_eq!(
            (metric.name.as_str(), metric.map.as_str()),
            ("ebpf_syscalls_total", "syscalls_total")
        );
        assert_eq!((metric.labels[0].offset, metric.labels[0].size), (0, 8));
        assert!(metric.cpu_label.is_none());
    }

    #[test]
    fn unknown_key_is_refused_with_its_place() {
        let text = SYSCALLS.replace(
            "      help: Syscalls.\n",
            "      help: Syscalls.\n      tabel: x\n",
        );
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:5:7: metrics.counters[0].tabel:",
            "unknown field `tabel`",
        );
    }

    #[test]
    fn duplicate_key_is_refused() {
        let text = SYSCALLS.replace(
            "      help: Syscalls.\n",
            "      help: Syscalls.\n      help: Again.\n",
        );
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:5:7: metrics.counters[0]:",
            "duplicate mapping key: help",
        );
    }

    #[test]
    fn wrong_type_is_refused() {
        let text = SYSCALLS.replace("size: 8", "size: eight");
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:7:17: metrics.counters[0].labels[0].size:",
            "invalid u64",
        );
    }

    #[test]
    fn missing_help_is_refused() {
        let text = SYSCALLS.replace("      help: Syscalls.\n", "");
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:4:7: metrics.counters[0]:",
            "missing field `help`",
        );
    }

    #[test]
    fn counter_for_a_missing_map_is_refused() {
        let text = SYSCALLS.replace("name: syscalls_total", "name: sycalls_total");
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:3:13: metrics.counters[0].name:",
            "no map or global variable named \"sycalls_total\" (maps: syscalls_total; globals: none)",
        );
    }

    #[test]
    fn label_sizes_must_add_up_to_the_key_size() {
        let text = SYSCALLS.replace("size: 8", "size: 4");
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:3:7: metrics.counters[0].labels:",
            "add up to 4 bytes but map \"syscalls_total\" has 8-byte keys",
        );
        // Sizes that add up but split the u64 key are refused by its BTF.
        let padded = SYSCALLS.replace("size: 8", "size: 4\n          padding: 4");
        assert_error(
            "syscalls",
            &padded,
            "configs/syscalls.yaml:7:17: metrics.counters[0].labels[0].size:",
            "label \"syscall\" covers bytes 0..4 of the key, which ends inside field `u64` (bytes 0..8)",
        );
    }

    #[test]
    fn unknown_decoder_is_refused_with_the_known_ones() {
        let text = SYSCALLS.replace("            - name: syscall\n", "            - name: sycsall\n");
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:10:21: metrics.counters[0].labels[0].decoders[1]:",
            "unknown decoder \"sycsall\" (known: ",
        );
    }

    #[test]
    fn invalid_metric_and_label_names_are_refused() {
        assert_error(
            "syscalls",
            &SYSCALLS.replace("\n        - name: syscall\n", "\n        - name: 0day\n"),
            "configs/syscalls.yaml:6:17: metrics.counters[0].labels[0].name:",
            "not a valid Prometheus label name",
        );
        // The metric name is also the map name, so a bad one is both.
        assert_error(
            "syscalls",
            &SYSCALLS.replace("name: syscalls_total", "name: sys-calls"),
            "configs/syscalls.yaml:3:13: metrics.counters[0].name:",
            "not a valid Prometheus metric name",
        );
    }

    #[test]
    fn empty_file_and_non_yaml_are_refused() {
        assert_error("syscalls", "", "configs/syscalls.yaml:", "the file is empty");
        assert_error(
            "syscalls",
            "# only a comment\n\n",
            "configs/syscalls.yaml:",
            "the file is empty",
        );
        assert_error("syscalls", "metrics: [unclosed", "configs/syscalls.yaml:1:", "");
        assert_error("syscalls", "just a string", "configs/syscalls.yaml:1:1", "");
        assert_error(
            "syscalls",
            "metrics: 5\n",
            "configs/syscalls.yaml:1:10: metrics:",
            "",
        );
    }

    #[test]
    fn every_error_of_a_file_is_reported_at_once() {
        let text = SYSCALLS
            .replace("            - name: syscall\n", "            - name: nope\n")
            .replace("help: Syscalls.", "help: \" \"");
        let errors = errors("syscalls", &text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("help is empty") && errors[1].contains("unknown decoder \"nope\""));
    }

    #[test]
    fn unknown_program_names_the_embedded_ones() {
        assert_error(
            "nosuch",
            SYSCALLS,
            "configs/nosuch.yaml: ",
            "no embedded program named \"nosuch\"",
        );
        let named = format!("program: syscals\n{SYSCALLS}");
        assert_error(
            "x",
            &named,
            "configs/x.yaml:1:10: program:",
            "no embedded program named \"syscals\"",
        );
        let renamed = format!("program: syscalls\n{SYSCALLS}");
        assert_eq!(
            parse(&source("mine", &renamed), "ebpf_").unwrap().program,
            "syscalls"
        );
    }

    #[test]
    fn xdp_program_needs_an_attach_entry_and_a_known_mode() {
        let counters = "metrics:\n  counters:\n    - name: xdp_packets_total\n      help: Packets.\n";
        assert_error(
            "xdp_packets",
            counters,
            "configs/xdp_packets.yaml: ",
            "needs an attach entry",
        );
        let bad_mode = format!("{counters}attach:\n  - program: count_packets\n    xdp:\n      interface: lo\n      mode: turbo\n");
        assert_error(
            "xdp_packets",
            &bad_mode,
            "configs/xdp_packets.yaml:9:13: attach[0].xdp.mode:",
            "unknown XDP mode \"turbo\"",
        );
        let bad_prog = format!("{counters}attach:\n  - program: count\n    xdp:\n      interface: lo\n");
        assert_error(
            "xdp_packets",
            &bad_prog,
            "configs/xdp_packets.yaml:6:14: attach[0].program:",
            "no program \"count\" (programs: count_packets)",
        );
    }

    const TRUTH: &str = "metrics:
  counters:
    - name: truth_calls_total
      help: Calls.
attach:
  - program: observe
    uprobe:
      binary: /usr/bin/truth
      function: truth_observe
      pid: 42
  - program: gauge_set
    uprobe:
      binary: /usr/bin/truth
      function: truth_gauge_set
  - program: string_seen
    uprobe:
      binary: /usr/bin/truth
      function: truth_string
  - program: ip_seen
    uprobe:
      binary: /usr/bin/truth
      function: truth_ip
";

    #[test]
    fn uprobe_attach_entries_resolve_with_and_without_pid() {
        let config = parse(&source("truth", TRUTH), "ebpf_").unwrap();
        assert_eq!(
            config.attach,
            [
                AttachSpec::Uprobe {
                    program: "observe".into(),
                    binary: "/usr/bin/truth".into(),
                    function: "truth_observe".into(),
                    pid: Some(42),
                },
                AttachSpec::Uprobe {
                    program: "gauge_set".into(),
                    binary: "/usr/bin/truth".into(),
                    function: "truth_gauge_set".into(),
                    pid: None,
                },
                AttachSpec::Uprobe {
                    program: "string_seen".into(),
                    binary: "/usr/bin/truth".into(),
                    function: "truth_string".into(),
                    pid: None,
                },
                AttachSpec::Uprobe {
                    program: "ip_seen".into(),
                    binary: "/usr/bin/truth".into(),
                    function: "truth_ip".into(),
                    pid: None,
                },
            ]
        );
    }

    #[test]
    fn uprobe_program_needs_an_attach_entry() {
        let text = TRUTH.split("  - program: gauge_set").next().unwrap();
        assert_error(
            "truth",
            text,
            "configs/truth.yaml: ",
            "program \"gauge_set\" (SEC \"uprobe\") needs an attach entry saying where to attach, such as \
             `attach: [{program: gauge_set, uprobe: {binary: ",
        );
    }

    #[test]
    fn uprobe_binary_function_and_pid_are_checked_in_place() {
        assert_error(
            "truth",
            &TRUTH.replacen("binary: /usr/bin/truth", "binary: bin/truth", 1),
            "configs/truth.yaml:8:15: attach[0].uprobe.binary:",
            "\"bin/truth\" is not an absolute path",
        );
        assert_error(
            "truth",
            &TRUTH.replace("function: truth_gauge_set", "function: \"\""),
            "configs/truth.yaml:14:17: attach[1].uprobe.function:",
            "\"\" is not a symbol name",
        );
        // The entry is there, only wrong: no "needs an attach entry" on top.
        let errors = errors("truth", &TRUTH.replace("pid: 42", "pid: 0"));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        for pid in ["0", "-3", "4294967296"] {
            assert_error(
                "truth",
                &TRUTH.replace("pid: 42", &format!("pid: {pid}")),
                "configs/truth.yaml:10:12: attach[0].uprobe.pid:",
                &format!("pid {pid} is out of range (1 to 2147483647)"),
            );
        }
        assert_error(
            "truth",
            &TRUTH.replace("pid: 42", "pid: 42\n      offset: 4"),
            "configs/truth.yaml:11:7: attach[0].uprobe.offset:",
            "unknown field `offset`",
        );
        assert_error(
            "truth",
            &TRUTH.replace("      function: truth_observe\n", ""),
            "configs/truth.yaml:9:7: attach[0].uprobe:",
            "missing field `function`",
        );
    }

    #[test]
    fn attach_entry_takes_exactly_one_hook_matching_the_section() {
        assert_error(
            "truth",
            &TRUTH.replace(
                "  - program: observe\n",
                "  - program: observe\n    xdp: {interface: lo}\n",
            ),
            "configs/truth.yaml:6:5: attach[0]:",
            "give one of `xdp:` and `uprobe:` per entry",
        );
        assert_error(
            "truth",
            &TRUTH.replace(
                "  - program: observe\n    uprobe:\n      binary: /usr/bin/truth\n      function: truth_observe\n      pid: 42\n",
                "  - program: observe\n",
            ),
            "configs/truth.yaml:6:5: attach[0]:",
            "say how to attach: add `xdp: {interface: <name>}` or `uprobe: ",
        );
        let counters = "metrics:\n  counters:\n    - name: xdp_packets_total\n      help: Packets.\n";
        let uprobe_on_xdp = format!(
            "{counters}attach:\n  - program: count_packets\n    uprobe: {{binary: /bin/sh, function: main}}\n"
        );
        assert_error(
            "xdp_packets",
            &uprobe_on_xdp,
            "configs/xdp_packets.yaml:6:5: attach[0].uprobe:",
            "program \"count_packets\" is SEC \"xdp\", which cannot attach as `uprobe:`",
        );
    }

    #[test]
    fn cpu_label_takes_no_key_bytes_on_percpu_maps_only() {
        let config = parse(
            &source(
                "xdp_packets",
                EMBEDDED_CONFIGS
                    .iter()
                    .find(|c| c.name == "xdp_packets")
                    .unwrap()
                    .text,
            ),
            "ebpf_",
        )
        .unwrap();
        let metric = &config.metrics[0];
        assert!(metric.labels.is_empty());
        assert_eq!(metric.cpu_label.as_ref().unwrap().size, 2);
        // On a shared (non per-CPU) map, `cpu` is an ordinary key label.
        let text = SYSCALLS.replace("\n        - name: syscall\n", "\n        - name: cpu\n");
        let config = parse(&source("syscalls", &text), "ebpf_").unwrap();
        assert_eq!(config.metrics[0].labels[0].name, "cpu");
        assert!(config.metrics[0].cpu_label.is_none());
    }

    #[test]
    fn decoder_options_are_type_checked() {
        let text = SYSCALLS.replace(
            "            - name: syscall\n",
            "            - name: static_map\n              static_map: [1, 2]\n",
        );
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:11:",
            "metrics.counters[0].labels[0].decoders[1].static_map",
        );
        let text = SYSCALLS.replace(
            "            - name: syscall\n",
            "            - name: syscall\n              regexps: [x]\n",
        );
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:10:21: metrics.counters[0].labels[0].decoders[1]:",
            "regexps",
        );
    }

    #[test]
    fn no_input_panics() {
        let inputs = [
            "",
            "-",
            "---\n---\n",
            "metrics:",
            "metrics:\n  counters:\n",
            "metrics:\n  counters: [1]\n",
            "\u{0}",
            "&a [*a]",
            "metrics: &x {counters: *x}",
            "a: b: c",
        ];
        for input in inputs {
            let _ = parse(&source("syscalls", input), "ebpf_");
        }
    }

    /// A histogram over the syscalls program's u64-keyed map: enough to
    /// check every histogram setting without a dedicated object.
    const HISTOGRAM: &str = "metrics:
  histograms:
    - name: syscalls_total
      help: Buckets.
      bucket_type: exp2
      bucket_min: 2
      bucket_max: 4
      bucket_multiplier: 0.5
      labels:
        - name: bucket
          size: 8
          decoders: [{name: uint}]
";

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

    #[test]
    fn gauges_read_maps_and_are_checked_like_counters() {
        let gauge = SYSCALLS.replace("counters:", "gauges:");
        let config = parse(&source("syscalls", &gauge), "ebpf_").unwrap();
        assert_eq!(config.metrics[0].kind, MetricType::Gauge);
        assert!(config.metrics[0].global.is_none());
        assert_error(
            "syscalls",
            &gauge.replace("name: syscalls_total", "name: nope"),
            "configs/syscalls.yaml:3:13: metrics.gauges[0].name:",
            "no map or global variable named \"nope\"",
        );
    }

    #[test]
    fn the_same_metric_name_twice_across_kinds_is_refused() {
        let text = format!("{SYSCALLS}{}", &HISTOGRAM["metrics:\n".len()..]);
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:12:13: metrics.histograms[0]:",
            "metric \"ebpf_syscalls_total\" is defined twice",
        );
    }

    const LATENCY: &str = "metrics:
  histograms:
    - name: syscall_latency_seconds
      help: Latency.
      bucket_type: exp2
      bucket_max: 36
      labels:
        - name: syscall
          decoders: [{name: uint}]
        - name: bucket
          decoders: [{name: uint}]
";

    fn offsets(text: &str) -> Vec<(String, usize, usize)> {
        let config = parse(&source("syscall_latency", text), "ebpf_").unwrap_or_else(|e| panic!("{e}"));
        config.metrics[0]
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.offset, l.size))
            .collect()
    }

    #[test]
    fn labels_without_size_take_the_key_fields_from_btf() {
        // struct syscall_latency_key { u32 syscall; u32 bucket; }
        assert_eq!(
            offsets(LATENCY),
            [("syscall".into(), 0, 4), ("bucket".into(), 4, 4)]
        );
        // Not named after a field: the next field in order.
        assert_eq!(
            offsets(&LATENCY.replace("name: syscall\n", "name: nr\n")),
            [("nr".into(), 0, 4), ("bucket".into(), 4, 4)]
        );
        // By name, a field may be left out: its rows are summed.
        let bucket_only = LATENCY.replace(
            "        - name: syscall\n          decoders: [{name: uint}]\n",
            "",
        );
        assert_eq!(offsets(&bucket_only), [("bucket".into(), 4, 4)]);
    }

    #[test]
    fn label_sizes_are_checked_against_the_key_struct() {
        let text = LATENCY.replace(
            "        - name: syscall\n",
            "        - name: syscall\n          size: 2\n          padding: 2\n",
        );
        assert_error(
            "syscall_latency",
            &text,
            "configs/syscall_latency.yaml:9:17: metrics.histograms[0].labels[0].size:",
            "label \"syscall\" covers bytes 0..2 of the key, which ends inside field `syscall` (bytes 0..4): \
             make its size match the key (struct syscall_latency_key { syscall: 0..4, bucket: 4..8 })",
        );
        let text = LATENCY
            .replace(
                "        - name: syscall\n",
                "        - name: syscall\n          size: 2\n",
            )
            .replace(
                "        - name: bucket\n",
                "        - name: bucket\n          size: 4\n",
            );
        assert_error(
            "syscall_latency",
            &text,
            "configs/syscall_latency.yaml:12:17: metrics.histograms[0].labels[1].size:",
            "label \"bucket\" starts at byte 2 of the key, inside field `syscall` (bytes 0..4)",
        );
    }

    #[test]
    fn zero_and_huge_label_sizes_are_refused_without_overflow() {
        // Found by the config fuzz target: size 0 against a BTF-typed key
        // underflowed while naming the field the label ends in.
        for size in ["0", "18446744073709551615"] {
            assert_error(
                "syscalls",
                &SYSCALLS.replace("size: 8", &format!("size: {size}")),
                "configs/syscalls.yaml:7:17: metrics.counters[0].labels[0].size:",
                &format!("size {size} is out of range"),
            );
        }
        assert_error(
            "syscalls",
            &SYSCALLS.replace("size: 8", "size: 8\n          padding: 18446744073709551615"),
            "configs/syscalls.yaml:8:20: metrics.counters[0].labels[0].padding:",
            "padding 18446744073709551615 is out of range",
        );
    }
}
