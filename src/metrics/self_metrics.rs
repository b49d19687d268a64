//! The exporter's own metrics (`bpf_exporter_*`): the state of every config
//! and program, how each map read went, the label cache, reloads, and the
//! kernel's run-time statistics of each program. Built from what the fleet
//! and the reader hand over, so every snapshot says how it was made.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::{ConfigState, ConfigStatus, Family, MetricKind, Sample, Value};
use crate::config::MetricSpec;
use crate::programs::stats::RunStats;
use crate::reader::cache::LabelCache;
use crate::reader::maps::ReadMethod;

/// Prefix of the exporter's own metrics.
pub const PREFIX: &str = "bpf_exporter_";

/// How the reads of one map have gone.
#[derive(Debug, Clone, PartialEq)]
pub struct MapStats {
    /// Entries found at the last read.
    pub entries: usize,
    /// The most the map can hold, for a hash map ([`MapSource::capacity`]).
    ///
    /// [`MapSource::capacity`]: crate::reader::maps::MapSource::capacity
    pub max_entries: Option<usize>,
    pub read_errors: u64,
    /// Rows dropped, by the decoder that failed.
    pub decode_errors: BTreeMap<String, u64>,
    /// How long the last read took, and how it was done.
    pub duration: Duration,
    pub method: ReadMethod,
    /// For an event stream: events lost so far.
    pub events_lost: Option<u64>,
    /// Label sets the family's series limit has left out so far.
    pub series_dropped: u64,
}

impl Default for MapStats {
    fn default() -> Self {
        MapStats {
            entries: 0,
            max_entries: None,
            read_errors: 0,
            decode_errors: BTreeMap::new(),
            duration: Duration::ZERO,
            method: ReadMethod::Batch,
            events_lost: None,
            series_dropped: 0,
        }
    }
}

/// Reload results, exported as Prometheus exports its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadStats {
    /// `None` until the first reload: the start counts as successful.
    pub last_successful: Option<bool>,
    pub last_success: SystemTime,
    pub successes: u64,
    pub failures: u64,
}

impl Default for ReloadStats {
    fn default() -> Self {
        ReloadStats {
            last_successful: None,
            last_success: SystemTime::now(),
            successes: 0,
            failures: 0,
        }
    }
}

impl ReloadStats {
    pub fn record(&mut self, successful: bool) {
        self.last_successful = Some(successful);
        if successful {
            self.successes += 1;
            self.last_success = SystemTime::now();
        } else {
            self.failures += 1;
        }
    }
}

/// One program's run-time totals.
pub struct RunTotals<'a> {
    pub config: &'a str,
    pub program: &'a str,
    pub stats: RunStats,
}

/// Everything the self-metrics are made of.
pub struct Inputs<'a> {
    pub configs: &'a [ConfigStatus],
    pub reloads: &'a ReloadStats,
    /// Config name, metric, and how its map reads went.
    pub maps: &'a [(&'a str, &'a MetricSpec, &'a MapStats)],
    /// Empty unless `--bpf.stats`.
    pub runs: &'a [RunTotals<'a>],
    pub cache: &'a LabelCache,
    pub last_cycle: Duration,
    pub last_read: SystemTime,
}

pub fn families(inputs: &Inputs<'_>) -> Vec<Family> {
    let mut state = Vec::new();
    let mut attached = Vec::new();
    let mut failures = Vec::new();
    let mut budgets = Vec::new();
    for status in inputs.configs {
        if let Some(budget) = status.cpu_budget {
            budgets.push(gauge(&[&status.name], budget));
        }
        for s in ConfigState::ALL {
            state.push(gauge(
                &[&status.name, s.as_str()],
                f64::from(u8::from(status.state == s)),
            ));
        }
        let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
        if let Some(reason) = status.reason.filter(|_| !status.state.is_serving()) {
            *reasons.entry(reason.as_str()).or_default() += 1;
        }
        for p in &status.programs {
            attached.push(gauge(&[&status.name, &p.name], f64::from(u8::from(p.attached))));
            if let Some(reason) = p.reason.filter(|_| !p.attached && status.state.is_serving()) {
                *reasons.entry(reason.as_str()).or_default() += 1;
            }
        }
        for (reason, n) in reasons {
            failures.push(gauge(&[&status.name, reason], n as f64));
        }
    }
    let (
        mut duration,
        mut entries,
        mut max_entries,
        mut read_errors,
        mut decode_errors,
        mut lost,
        mut dropped,
    ) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (config, spec, m) in inputs.maps {
        duration.push(gauge(
            &[config, &spec.map, m.method.as_str()],
            m.duration.as_secs_f64(),
        ));
        entries.push(gauge(&[config, &spec.map], m.entries as f64));
        if let Some(n) = m.max_entries {
            max_entries.push(gauge(&[config, &spec.map], n as f64));
        }
        read_errors.push(counter(&[config, &spec.map], m.read_errors));
        if let Some(n) = m.events_lost {
            lost.push(counter(&[config, &spec.map], n));
        }
        dropped.push(counter(&[config, &spec.name], m.series_dropped));
        for (decoder, n) in &m.decode_errors {
            decode_errors.push(counter(&[config, &spec.name, decoder], *n));
        }
    }
    let (mut runs, mut run_time) = (Vec::new(), Vec::new());
    for r in inputs.runs {
        let labels = [r.config, r.program];
        runs.push(counter(&labels, r.stats.run_count));
        run_time.push(sample(
            &labels,
            Value::FloatCounter(r.stats.run_time_ns as f64 / 1e9),
        ));
    }
    let cache = inputs.cache.stats;
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let reloads = inputs.reloads;
    vec![
        family("build_info", "Build information; always 1.", MetricKind::Gauge, &["version", "revision", "rustc_version", "target"], vec![gauge(&[env!("CARGO_PKG_VERSION"), env!("BPF_EXPORTER_REVISION"), env!("BPF_EXPORTER_RUSTC"), env!("BPF_EXPORTER_TARGET")], 1.0)]),
        family("config_state", "State of each config: running (every program attached), degraded (some attached), invalid (the file was refused), failed (its program did not load or attach) or over_budget (detached for using more CPU than its budget); 1 for the current state.", MetricKind::Gauge, &["config", "state"], state),
        family("config_failures", "Why each config is not running, by kind: for an invalid or failed config its one reason, for a degraded one its unattached programs by reason.", MetricKind::Gauge, &["config", "reason"], failures),
        family("config_cpu_budget_ratio", "The share of one CPU each config's programs may use together (cpu_budget, --bpf.cpu-budget), measured over --bpf.cpu-budget-window; above it they are detached and the config is over_budget.", MetricKind::Gauge, &["config"], budgets),
        family("program_attached", "Whether each BPF program of a config is attached (1) or not (0).", MetricKind::Gauge, &["config", "program"], attached),
        family("map_read_duration_seconds", "Time the last read of each map took, and how it was read (batch, per_key, mmap or events).", MetricKind::Gauge, &["config", "map", "method"], duration),
        family("map_entries", "Entries found in each map at the last read.", MetricKind::Gauge, &["config", "map"], entries),
        family("map_max_entries", "Entries each hash map can hold (its max_entries): a full hash map refuses new keys, so their events go uncounted, and an LRU map evicts its oldest keys, whose series go away. Arrays, which always hold every entry, are left out.", MetricKind::Gauge, &["config", "map"], max_entries),
        family("map_read_errors_total", "Failed reads of each map; the metric keeps its last good values meanwhile.", MetricKind::Counter, &["config", "map"], read_errors),
        family("map_events_lost_total", "Events of an event counter's map (perf_event_array) the kernel dropped because its buffer was full: those events are not counted.", MetricKind::Counter, &["config", "map"], lost),
        family("decode_errors_total", "Map rows dropped because a label could not be decoded, by the decoder that failed.", MetricKind::Counter, &["config", "metric", "decoder"], decode_errors),
        family("series_dropped_total", "Label sets a family's series limit (series_limit, --metrics.series-limit) left out, each counted once while its keys stay in the map.", MetricKind::Counter, &["config", "metric"], dropped),
        family("label_cache_entries", "Map keys held decoded from one read to the next, in all metrics (at most --labels.cache-size).", MetricKind::Gauge, &[], vec![gauge(&[], inputs.cache.len() as f64)]),
        family("label_cache_hits_total", "Map keys whose labels were held from an earlier read.", MetricKind::Counter, &[], vec![counter(&[], cache.hits)]),
        family("label_cache_misses_total", "Map keys decoded: new keys, keys decoded again, and keys read while the cache was full.", MetricKind::Counter, &[], vec![counter(&[], cache.misses)]),
        family("label_cache_evictions_total", "Held keys forgotten because their map no longer held them.", MetricKind::Counter, &[], vec![counter(&[], cache.evictions)]),
        family("label_cache_refreshes_total", "Keys decoded again because their decoders' answers can change (cgroup, ifname, ksym) and they were older than the refresh interval.", MetricKind::Counter, &[], vec![counter(&[], cache.refreshes)]),
        family("program_runs_total", "Times each BPF program ran, from kernel statistics (--bpf.stats).", MetricKind::Counter, &["config", "program"], runs),
        family("program_run_time_seconds_total", "Time each BPF program spent running, from kernel statistics (--bpf.stats); divided by program_runs_total it is the cost per event.", MetricKind::Counter, &["config", "program"], run_time),
        family("config_last_reload_successful", "Whether the last config reload applied every change (1) or rejected some (0).", MetricKind::Gauge, &[], vec![gauge(&[], f64::from(u8::from(reloads.last_successful.unwrap_or(true))))]),
        family("config_last_reload_success_timestamp_seconds", "Unix time of the last reload that applied every change (or of the start).", MetricKind::Gauge, &[], vec![gauge(&[], unix(reloads.last_success))]),
        family("config_reloads_total", "Config reloads, by result: success (every change applied) or failure (some rejected; the previous versions keep running).", MetricKind::Counter, &["result"], vec![counter(&["success"], reloads.successes), counter(&["failure"], reloads.failures)]),
        family("read_cycle_duration_seconds", "Time the last read of all maps took.", MetricKind::Gauge, &[], vec![gauge(&[], inputs.last_cycle.as_secs_f64())]),
        family("last_read_timestamp_seconds", "Unix time of the last completed read cycle.", MetricKind::Gauge, &[], vec![gauge(&[], unix(inputs.last_read))]),
    ]
}

/// ebpf_exporter's own metrics under its names and labels
/// (`--metrics.ebpf-exporter-self`), beside ours, so that its alerts and
/// dashboards keep working: programs are known by their kernel id there.
/// `ebpf_program_run_time_seconds` has no `_total`, so it is typed a gauge
/// here (an OpenMetrics counter must end in `_total`); `rate()` reads it
/// the same.
pub fn ebpf_exporter_families(inputs: &Inputs<'_>) -> Vec<Family> {
    let (mut enabled, mut info, mut attached) = (Vec::new(), Vec::new(), Vec::new());
    for status in inputs.configs.iter().filter(|s| s.state.is_serving()) {
        enabled.push(gauge(&[&status.name], 1.0));
        for p in &status.programs {
            let (Some(id), Some(tag)) = (p.id, &p.tag) else {
                continue;
            };
            let id = id.to_string();
            info.push(gauge(&[&status.name, &p.name, tag, &id], 1.0));
            attached.push(gauge(&[&id], f64::from(u8::from(p.attached))));
        }
    }
    let mut decode_errors: BTreeMap<&str, u64> =
        inputs.configs.iter().map(|c| (c.name.as_str(), 0)).collect();
    for (config, _, m) in inputs.maps {
        *decode_errors.entry(config).or_default() += m.decode_errors.values().sum::<u64>();
    }
    let id_of = |config: &str, program: &str| {
        inputs
            .configs
            .iter()
            .filter(|c| c.name == config)
            .flat_map(|c| &c.programs)
            .find(|p| p.name == program)
            .and_then(|p| p.id)
    };
    let (mut run_time, mut run_count) = (Vec::new(), Vec::new());
    for r in inputs.runs {
        let Some(id) = id_of(r.config, r.program) else {
            continue;
        };
        let id = id.to_string();
        run_time.push(gauge(&[&id], r.stats.run_time_ns as f64 / 1e9));
        run_count.push(counter(&[&id], r.stats.run_count));
    }
    let named = |name: &str, help: &str, kind, labels: &[&str], samples| {
        named_family(
            &format!("{EBPF_EXPORTER_PREFIX}{name}"),
            help,
            kind,
            labels,
            samples,
        )
    };
    vec![
        named(
            "enabled_configs",
            "The set of enabled configs",
            MetricKind::Gauge,
            &["name"],
            enabled,
        ),
        named(
            "ebpf_program_info",
            "Info about ebpf programs",
            MetricKind::Gauge,
            &["config", "program", "tag", "id"],
            info,
        ),
        named(
            "ebpf_program_attached",
            "Whether a program is attached",
            MetricKind::Gauge,
            &["id"],
            attached,
        ),
        named(
            "ebpf_program_run_time_seconds",
            "How long has the program been executing",
            MetricKind::Gauge,
            &["id"],
            run_time,
        ),
        named(
            "ebpf_program_run_count_total",
            "How many times has the program been executed",
            MetricKind::Counter,
            &["id"],
            run_count,
        ),
        named(
            "decoder_errors_total",
            "How many times has decoders encountered errors",
            MetricKind::Counter,
            &["config"],
            decode_errors
                .into_iter()
                .map(|(config, n)| counter(&[config], n))
                .collect(),
        ),
    ]
}

/// Prefix of ebpf_exporter's own metrics.
const EBPF_EXPORTER_PREFIX: &str = "ebpf_exporter_";

fn family(name: &str, help: &str, kind: MetricKind, labels: &[&str], samples: Vec<Sample>) -> Family {
    named_family(&format!("{PREFIX}{name}"), help, kind, labels, samples)
}

pub(super) fn named_family(
    name: &str,
    help: &str,
    kind: MetricKind,
    labels: &[&str],
    samples: Vec<Sample>,
) -> Family {
    Family {
        name: name.to_string(),
        help: help.to_string(),
        kind,
        label_names: labels.iter().map(|l| l.to_string()).collect(),
        samples,
    }
}

pub(super) fn sample(labels: &[&str], value: Value) -> Sample {
    Sample {
        label_values: labels.iter().map(|l| l.to_string()).collect(),
        value,
    }
}

fn gauge(labels: &[&str], value: f64) -> Sample {
    sample(labels, Value::Gauge(value))
}

fn counter(labels: &[&str], value: u64) -> Sample {
    sample(labels, Value::Counter(value))
}
