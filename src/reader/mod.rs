//! The background reader: every interval it reads each config's maps,
//! builds the metric families and publishes one immutable [`Snapshot`].
//! Scrapes never trigger or wait for a read.

pub mod cache;
pub mod maps;
pub mod rows;

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::metrics::{ConfigState, ConfigStatus, Family, MetricKind, Sample, Snapshot, SnapshotCell, Value};
use crate::programs::loader::Loaded;
use cache::LabelCache;
use maps::{GlobalVariable, KernelMap, MapSource, ReadMethod};

/// Prefix of the exporter's own metrics.
pub const SELF_PREFIX: &str = "bpf_exporter_";

/// One metric of a running config and what its reads have done so far.
struct MetricState {
    spec: usize,
    /// Identifies the metric in the label cache.
    id: u64,
    source: Box<dyn MapSource>,
    /// The last good family: kept when a read fails, so a transient error
    /// does not make series vanish.
    last: Option<Family>,
    read_errors: u64,
    /// Rows dropped, by the decoder that failed.
    decode_errors: BTreeMap<String, u64>,
    duration: Duration,
    entries: usize,
}

struct Target {
    config: Config,
    loaded: Loaded,
    metrics: Vec<MetricState>,
}

impl Target {
    fn metric_ids(&self) -> Vec<u64> {
        self.metrics.iter().map(|m| m.id).collect()
    }
}

/// Label sets kept by default, and how long a label set whose decoders'
/// answers can change is trusted (`--labels.cache-size`,
/// `--labels.refresh-interval`).
pub const DEFAULT_CACHE_SIZE: usize = 65_536;
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// Owns the loaded programs and their map handles. Dropping it detaches
/// every program.
pub struct Reader {
    targets: Vec<Target>,
    /// Configs that are not running, shown on `/` and in self-metrics.
    others: Vec<ConfigStatus>,
    last_cycle: Duration,
    /// Export each program's kernel run-time statistics (`--bpf.stats`).
    run_stats: bool,
    cache: LabelCache,
    next_id: u64,
    reloads: ReloadStats,
    /// The text of each config in `others`, so an unchanged broken config
    /// is not retried (and reported) on every reload.
    failed_texts: BTreeMap<String, String>,
}

/// Reload results, exported as Prometheus itself exports its own.
#[derive(Debug, Default)]
struct ReloadStats {
    /// `None` until the first reload: the start counts as successful.
    last_successful: Option<bool>,
    last_success: Option<SystemTime>,
    successes: u64,
    failures: u64,
}

impl ReloadStats {
    fn record(&mut self, successful: bool) {
        self.last_successful = Some(successful);
        if successful {
            self.successes += 1;
            self.last_success = Some(SystemTime::now());
        } else {
            self.failures += 1;
        }
    }
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            targets: Vec::new(),
            others: Vec::new(),
            last_cycle: Duration::ZERO,
            run_stats: false,
            cache: LabelCache::new(DEFAULT_CACHE_SIZE, DEFAULT_REFRESH),
            next_id: 0,
            failed_texts: BTreeMap::new(),
            reloads: ReloadStats {
                last_success: Some(SystemTime::now()),
                ..ReloadStats::default()
            },
        }
    }
}

impl Reader {
    pub fn new() -> Self {
        Reader::default()
    }

    /// Adds a loaded config; its maps are read from the next cycle on.
    pub fn add(&mut self, config: Config, loaded: Loaded, method: ReadMethod) -> Result<(), String> {
        let mut metrics = Vec::new();
        for (i, spec) in config.metrics.iter().enumerate() {
            let handle = loaded
                .map(&spec.map)
                .ok_or_else(|| format!("map {:?} is missing from the loaded object", spec.map))?;
            let source: Box<dyn MapSource> = match spec.global {
                Some(global) => {
                    GlobalVariable::new(handle, global).map(|g| Box::new(g) as Box<dyn MapSource>)
                }
                None => KernelMap::new(handle, method).map(|m| Box::new(m) as Box<dyn MapSource>),
            }
            .map_err(|e| format!("map {:?}: {e}", spec.map))?;
            metrics.push(MetricState::new(i, self.next_id, source));
            self.next_id += 1;
        }
        self.others.retain(|o| o.name != config.name);
        self.failed_texts.remove(&config.name);
        let target = Target {
            config,
            loaded,
            metrics,
        };
        // Replacing drops the old target only now, after the new one is
        // loaded and attached: make before break.
        match self
            .targets
            .iter_mut()
            .find(|t| t.config.name == target.config.name)
        {
            Some(old) => {
                let old = std::mem::replace(old, target);
                self.cache.forget(&old.metric_ids());
            }
            None => self.targets.push(target),
        }
        Ok(())
    }

    /// The YAML text of running config `name`.
    pub fn running_text(&self, name: &str) -> Option<&str> {
        self.targets
            .iter()
            .find(|t| t.config.name == name)
            .map(|t| t.config.text.as_str())
    }

    /// The YAML text config `name` was last tried with, running or not.
    pub fn known_text(&self, name: &str) -> Option<&str> {
        self.running_text(name)
            .or_else(|| self.failed_texts.get(name).map(String::as_str))
    }

    /// Names of every config the reader knows, running or not.
    pub fn config_names(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|t| t.config.name.clone())
            .chain(self.others.iter().map(|o| o.name.clone()))
            .collect()
    }

    /// Detaches config `name` and forgets it: its series leave the next
    /// snapshot and its maps are freed.
    pub fn remove(&mut self, name: &str) {
        let ids: Vec<u64> = self
            .targets
            .iter()
            .filter(|t| t.config.name == name)
            .flat_map(Target::metric_ids)
            .collect();
        self.cache.forget(&ids);
        self.targets.retain(|t| t.config.name != name);
        self.others.retain(|o| o.name != name);
        self.failed_texts.remove(name);
    }

    /// Records the result of a reload for the reload self-metrics.
    pub fn record_reload(&mut self, successful: bool) {
        self.reloads.record(successful);
    }

    /// Replaces the label cache (and forgets what it held).
    pub fn set_label_cache(&mut self, cache: LabelCache) {
        self.cache = cache;
    }

    /// Adds `program_runs_total` and `program_run_time_seconds_total` to the
    /// self-metrics; the kernel counts only while statistics are enabled
    /// ([`crate::programs::stats::enable`]).
    pub fn export_run_stats(&mut self) {
        self.run_stats = true;
    }

    /// Records a config that could not be loaded from `text` (replacing
    /// what was known under its name).
    pub fn add_failed(&mut self, status: ConfigStatus, text: &str) {
        self.remove(&status.name);
        self.failed_texts.insert(status.name.clone(), text.to_string());
        self.others.push(status);
    }

    /// Reads every map once and returns the resulting snapshot.
    pub fn read(&mut self) -> Snapshot {
        let started = Instant::now();
        let mut families = Vec::new();
        for target in &mut self.targets {
            for metric in &mut target.metrics {
                let spec = &target.config.metrics[metric.spec];
                let t = Instant::now();
                match metric.source.read() {
                    Ok(dump) => {
                        let (family, stats) = rows::family(spec, &dump, &mut self.cache, metric.id);
                        metric.entries = dump.len();
                        for (decoder, n) in stats.decode_errors {
                            *metric.decode_errors.entry(decoder).or_default() += n;
                        }
                        metric.last = Some(family);
                    }
                    Err(e) => {
                        metric.read_errors += 1;
                        tracing::warn!(config = %target.config.name, map = %spec.map, "map read failed: {e}");
                    }
                }
                metric.duration = t.elapsed();
                families.extend(metric.last.clone());
            }
        }
        self.last_cycle = started.elapsed();
        let taken_at = SystemTime::now();
        let configs = self.statuses();
        families.extend(self.self_metrics(&configs, taken_at));
        Snapshot {
            families,
            configs,
            taken_at,
        }
    }

    pub fn statuses(&self) -> Vec<ConfigStatus> {
        let mut all: Vec<ConfigStatus> = self
            .targets
            .iter()
            .map(|t| t.loaded.status(&t.config))
            .chain(self.others.iter().cloned())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn self_metrics(&self, statuses: &[ConfigStatus], now: SystemTime) -> Vec<Family> {
        let mut state = Vec::new();
        let mut attached = Vec::new();
        for status in statuses {
            for s in [ConfigState::Running, ConfigState::Invalid, ConfigState::Failed] {
                state.push(gauge(
                    &[&status.name, s.as_str()],
                    f64::from(u8::from(status.state == s)),
                ));
            }
            for p in &status.programs {
                attached.push(gauge(&[&status.name, &p.name], f64::from(u8::from(p.attached))));
            }
        }
        let (mut duration, mut entries, mut read_errors, mut decode_errors) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for target in &self.targets {
            for m in &target.metrics {
                let spec = &target.config.metrics[m.spec];
                let name = target.config.name.as_str();
                duration.push(gauge(
                    &[name, &spec.map, m.source.method().as_str()],
                    m.duration.as_secs_f64(),
                ));
                entries.push(gauge(&[name, &spec.map], m.entries as f64));
                read_errors.push(counter(&[name, &spec.map], m.read_errors));
                for (decoder, n) in &m.decode_errors {
                    decode_errors.push(counter(&[name, &spec.name, decoder], *n));
                }
            }
        }
        let (mut runs, mut run_time) = (Vec::new(), Vec::new());
        for target in self.targets.iter().filter(|_| self.run_stats) {
            for (program, stats) in target.loaded.run_stats() {
                let labels = [target.config.name.as_str(), program.as_str()];
                runs.push(counter(&labels, stats.run_count));
                run_time.push(sample(
                    &labels,
                    Value::FloatCounter(stats.run_time_ns as f64 / 1e9),
                ));
            }
        }
        let cache = self.cache.stats;
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        };
        let reloads = &self.reloads;
        let timestamp = unix(now);
        vec![
            family("build_info", "Build information; always 1.", MetricKind::Gauge, &["version"], vec![gauge(&[env!("CARGO_PKG_VERSION")], 1.0)]),
            family("config_state", "State of each config: running, invalid (the YAML was refused) or failed (its program did not load or attach); 1 for the current state.", MetricKind::Gauge, &["config", "state"], state),
            family("program_attached", "Whether each BPF program of a config is attached (1) or not (0).", MetricKind::Gauge, &["config", "program"], attached),
            family("map_read_duration_seconds", "Time the last read of each map took, and how it was read (batch or per_key).", MetricKind::Gauge, &["config", "map", "method"], duration),
            family("map_entries", "Entries found in each map at the last read.", MetricKind::Gauge, &["config", "map"], entries),
            family("map_read_errors_total", "Failed reads of each map; the metric keeps its last good values meanwhile.", MetricKind::Counter, &["config", "map"], read_errors),
            family("decode_errors_total", "Map rows dropped because a label could not be decoded, by the decoder that failed.", MetricKind::Counter, &["config", "metric", "decoder"], decode_errors),
            family("label_cache_entries", "Decoded label sets held in the label cache.", MetricKind::Gauge, &[], vec![gauge(&[], self.cache.len() as f64)]),
            family("label_cache_hits_total", "Map keys whose labels came from the cache.", MetricKind::Counter, &[], vec![counter(&[], cache.hits)]),
            family("label_cache_misses_total", "Map keys decoded because the cache did not have them (or had them too long).", MetricKind::Counter, &[], vec![counter(&[], cache.misses)]),
            family("label_cache_evictions_total", "Label sets dropped from the full cache, least recently used first.", MetricKind::Counter, &[], vec![counter(&[], cache.evictions)]),
            family("label_cache_refreshes_total", "Label sets decoded again because their decoders' answers can change (cgroup, ifname, ksym) and they were older than the refresh interval.", MetricKind::Counter, &[], vec![counter(&[], cache.refreshes)]),
            family("program_runs_total", "Times each BPF program ran, from kernel statistics (--bpf.stats).", MetricKind::Counter, &["config", "program"], runs),
            family("program_run_time_seconds_total", "Time each BPF program spent running, from kernel statistics (--bpf.stats); divided by program_runs_total it is the cost per event.", MetricKind::Counter, &["config", "program"], run_time),
            family("config_last_reload_successful", "Whether the last config reload applied every change (1) or rejected some (0).", MetricKind::Gauge, &[], vec![gauge(&[], f64::from(u8::from(reloads.last_successful.unwrap_or(true))))]),
            family("config_last_reload_success_timestamp_seconds", "Unix time of the last reload that applied every change (or of the start).", MetricKind::Gauge, &[], vec![gauge(&[], reloads.last_success.map_or(0.0, unix))]),
            family("config_reloads_total", "Config reloads, by result: success (every change applied) or failure (some rejected; the previous versions keep running).", MetricKind::Counter, &["result"], vec![counter(&["success"], reloads.successes), counter(&["failure"], reloads.failures)]),
            family("read_cycle_duration_seconds", "Time the last read of all maps took.", MetricKind::Gauge, &[], vec![gauge(&[], self.last_cycle.as_secs_f64())]),
            family("last_read_timestamp_seconds", "Unix time of the last completed read cycle.", MetricKind::Gauge, &[], vec![gauge(&[], timestamp)]),
        ]
    }
}

impl MetricState {
    fn new(spec: usize, id: u64, source: Box<dyn MapSource>) -> Self {
        MetricState {
            spec,
            id,
            source,
            last: None,
            read_errors: 0,
            decode_errors: BTreeMap::new(),
            duration: Duration::ZERO,
            entries: 0,
        }
    }
}

fn family(name: &str, help: &str, kind: MetricKind, labels: &[&str], samples: Vec<Sample>) -> Family {
    Family {
        name: format!("{SELF_PREFIX}{name}"),
        help: help.to_string(),
        kind,
        label_names: labels.iter().map(|l| l.to_string()).collect(),
        samples,
    }
}

fn sample(labels: &[&str], value: Value) -> Sample {
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

/// A reader running on its own thread; dropping the handle stops it and
/// detaches the programs.
pub struct Running {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// Work for the reader thread; what it returns runs after the snapshot that
/// follows is published (so a caller told "done" is served the result).
type Job = Box<dyn FnOnce(&mut Reader) -> Box<dyn FnOnce() + Send> + Send>;

enum Command {
    /// Runs on the reader thread between two reads; a snapshot follows at
    /// once so its effect is served without waiting for the next interval.
    Apply(Job),
    Stop,
}

/// Publishes a first snapshot at once, then one per `interval`.
pub fn spawn(mut reader: Reader, cell: Arc<SnapshotCell>, interval: Duration) -> std::io::Result<Running> {
    let (commands, received) = mpsc::channel::<Command>();
    let thread = std::thread::Builder::new()
        .name("map-reader".into())
        .spawn(move || {
            let mut next = Instant::now();
            loop {
                if Instant::now() >= next {
                    cell.publish(reader.read());
                    next = Instant::now() + interval;
                }
                match received.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(Command::Apply(job)) => {
                        let done = job(&mut reader);
                        cell.publish(reader.read());
                        next = Instant::now() + interval;
                        done();
                    }
                    Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        })?;
    Ok(Running {
        commands,
        thread: Some(thread),
    })
}

impl Running {
    /// Runs `job` on the reader thread, between reads, and waits for its
    /// result, which comes once a snapshot taken after `job` is published;
    /// `None` if the thread has stopped.
    pub fn with_reader<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Reader) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, result) = mpsc::channel();
        let job: Job = Box::new(move |reader| {
            let result = job(reader);
            Box::new(move || {
                let _ = reply.send(result);
            })
        });
        self.commands.send(Command::Apply(job)).ok()?;
        result.recv().ok()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
