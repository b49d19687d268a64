//! `metrics:` entries → the map or global variable each one reads.
//!
//! A metric's name is also the name of what it reads in the object, so a
//! typo, or a map the reader cannot turn into samples, is refused here with
//! the names the object does have, instead of showing up as a metric that
//! never appears.

use serde_saphyr::{Location, Spanned};

use super::raw::{RawLabel, RawMetric, RawMetrics};
use super::validate::Validator;
use super::{EventSpec, GlobalSpec, MetricSpec, MetricType};
use crate::programs::{self, GlobalMeta, MapMeta, ObjectInfo};

/// The fields counters, gauges and histograms share.
pub(super) struct Shape<'r> {
    pub(super) name: &'r Spanned<String>,
    pub(super) help: &'r Spanned<String>,
    pub(super) labels: &'r [Spanned<RawLabel>],
    /// Where the metric's entry starts, for errors about it as a whole.
    pub(super) at: Location,
    /// `perf_event_array: true`: the map is an event stream, each event's
    /// bytes a label set counted once.
    pub(super) events: Option<&'r Spanned<bool>>,
    /// How often an event counter starts again from zero.
    pub(super) flush_interval: Option<&'r Spanned<String>>,
}

impl<'r> Shape<'r> {
    fn of(metric: &'r Spanned<RawMetric>) -> Self {
        Shape {
            name: &metric.value.name,
            help: &metric.value.help,
            labels: &metric.value.labels,
            at: metric.referenced,
            events: metric.value.perf_event_array.as_ref().filter(|e| e.value),
            flush_interval: metric.value.flush_interval.as_ref(),
        }
    }
}

impl Validator<'_> {
    /// Every counter, gauge and histogram, in that order, each name once.
    pub(super) fn metrics(
        &mut self,
        section: &Spanned<RawMetrics>,
        info: &ObjectInfo,
        prefix: &str,
    ) -> Vec<MetricSpec> {
        let raw_metrics = &section.value;
        let mut found: Vec<(String, Location, Option<MetricSpec>)> = Vec::new();
        let plain = [
            ("counters", MetricType::Counter, &raw_metrics.counters),
            ("gauges", MetricType::Gauge, &raw_metrics.gauges),
        ];
        for (key, kind, entries) in plain {
            for (i, m) in entries.iter().enumerate() {
                let path = format!("metrics.{key}[{i}]");
                let spec = self.metric(&path, kind.clone(), &Shape::of(m), info, prefix);
                found.push((path, m.value.name.referenced, spec));
            }
        }
        for (i, h) in raw_metrics.histograms.iter().enumerate() {
            let path = format!("metrics.histograms[{i}]");
            let spec = self.histogram(&path, h, info, prefix);
            found.push((path, h.value.name.referenced, spec));
        }
        let mut metrics: Vec<MetricSpec> = Vec::new();
        for (path, location, spec) in found {
            let Some(spec) = spec else { continue };
            if metrics.iter().any(|m| m.name == spec.name) {
                self.error(
                    location,
                    &path,
                    format!("metric {:?} is defined twice", spec.name),
                );
            } else {
                metrics.push(spec);
            }
        }
        if raw_metrics.counters.is_empty()
            && raw_metrics.gauges.is_empty()
            && raw_metrics.histograms.is_empty()
        {
            self.error(
                section.referenced,
                "metrics",
                "no metrics defined: add `counters:`, `gauges:` or `histograms:` with one entry per map",
            );
        }
        metrics
    }

    /// Validates what counters, gauges and histograms share: the name, the
    /// map or global variable read, and the labels.
    pub(super) fn metric(
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
            (Some(map), _) if shape.events.is_some() => self.check_event_map(path, shape, map),
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

        let flush_interval = shape
            .flush_interval
            .and_then(|f| match crate::cli::parse_duration(&f.value) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(f.referenced, &format!("{path}.flush_interval"), e);
                    None
                }
            });
        // An event has no key layout: its labels say their sizes.
        let (labels, cpu_label) = self.labels(path, shape, map.filter(|_| shape.events.is_none()));
        if let MetricType::Histogram(spec) = &kind {
            let key_labels = shape.labels.len() - usize::from(cpu_label.is_some());
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
            events: shape.events.map(|_| EventSpec { flush_interval }),
        })
    }

    /// An event stream: a perf event array, read as events arrive, each
    /// label's `size` given (events have no BTF layout to take it from).
    fn check_event_map(&mut self, path: &str, shape: &Shape<'_>, map: &MapMeta) {
        if !matches!(
            map.map_type,
            libbpf_rs::MapType::PerfEventArray | libbpf_rs::MapType::RingBuf
        ) {
            self.error(
                shape.events.map_or(shape.at, |e| e.referenced),
                &format!("{path}.perf_event_array"),
                format!(
                    "map {:?} is a {:?} map; perf_event_array counters read a PERF_EVENT_ARRAY map the \
                     program writes events to with bpf_perf_event_output (or a RINGBUF map, bpf_ringbuf_output)",
                    map.name, map.map_type
                ),
            );
        }
        for (j, label) in shape.labels.iter().enumerate() {
            if label.value.size.is_none() {
                self.error(
                    label.referenced,
                    &format!("{path}.labels[{j}].size"),
                    "an event's labels need `size`: the bytes of the event struct each label decodes",
                );
            }
        }
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
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::{assert_error, source, HISTOGRAM, SYSCALLS};
    use crate::config::{parse, MetricType};

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
}
