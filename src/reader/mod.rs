//! The background reader: every interval it reads the maps of the running
//! configs, builds their metric families and publishes one immutable
//! [`Snapshot`]. Scrapes never trigger or wait for a read.
//!
//! The reader loads nothing and owns no program: what it reads arrives
//! whole, as one [`ReadSet`] swapped in between two reads, from the
//! [`crate::fleet`], which loads and attaches on its own thread. So a slow
//! verifier never delays a snapshot.

pub mod cache;
pub mod events;
pub mod maps;
pub mod rows;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::fleet::View;
use crate::metrics::self_metrics::{self, MapStats, RunTotals};
use crate::metrics::{Failure, Family, Reason, SeriesLimited, Snapshot, SnapshotCell};
use crate::programs::loader::Loaded;
use crate::programs::stats;
use cache::LabelCache;
use libbpf_rs::MapHandle;
use maps::{GlobalVariable, KernelMap, MapSource, ReadMethod};

/// Decoded keys held by default, how long a key whose decoders' answers
/// can change is trusted (`--labels.cache-size`,
/// `--labels.refresh-interval`), and the series a family may have unless
/// its config says (`--metrics.series-limit`). A million keys is a
/// million-entry map read in full each cycle, decoded once; the limit
/// keeps a map that grows with what unprivileged users do (pids, ports,
/// paths) from growing `/metrics` without bound.
pub const DEFAULT_CACHE_SIZE: usize = 1 << 20;
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
pub const DEFAULT_SERIES_LIMIT: usize = 10_000;

/// What the reader reads of one running config: its metric specs, a source
/// per metric, and its programs' fds for run-time statistics. It holds map
/// and program fds, not attachments: the fleet detaches a config the
/// moment it goes, and the maps are freed once the reader lets go too.
pub struct Target {
    /// Unique to one load of one config: a changed config is a new target.
    id: u64,
    config: Arc<Config>,
    /// One per `config.metrics`, in order. Locked by the reader only.
    sources: Vec<Mutex<Box<dyn MapSource>>>,
    programs: Vec<(String, OwnedFd)>,
}

impl Target {
    /// The map (or global variable) of every metric of `config` in `loaded`.
    pub fn new(id: u64, config: Arc<Config>, loaded: &Loaded, method: ReadMethod) -> Result<Target, Failure> {
        let mut target = Target::of_maps(id, config, |name| loaded.map(name), method)?;
        target.programs = loaded.program_fds();
        Ok(target)
    }

    /// As [`Target::new`], with each map found by `map` (by name), and no
    /// programs: what a bench reads without loading anything.
    pub fn of_maps(
        id: u64,
        config: Arc<Config>,
        map: impl Fn(&str) -> Option<MapHandle>,
        method: ReadMethod,
    ) -> Result<Target, Failure> {
        let mut sources = Vec::new();
        for spec in &config.metrics {
            let unusable =
                |e: String| Failure::new(Reason::ObjectInvalid, format!("map {:?}: {e}", spec.map));
            let handle = map(&spec.map).ok_or_else(|| unusable("missing from the loaded object".into()))?;
            let source: Box<dyn MapSource> = match (spec.global, spec.events) {
                (Some(global), _) => {
                    Box::new(GlobalVariable::new(handle, global).map_err(|e| unusable(e.to_string()))?)
                }
                (None, Some(events)) => {
                    let key_size = spec.labels.iter().map(|l| l.offset + l.size).max().unwrap_or(0);
                    Box::new(
                        events::EventCounts::new(&handle, key_size, events.flush_interval)
                            .map_err(|e| unusable(e.to_string()))?,
                    )
                }
                (None, None) => {
                    Box::new(KernelMap::new(handle, method).map_err(|e| unusable(e.to_string()))?)
                }
            };
            sources.push(source);
        }
        Ok(Target {
            id,
            config,
            sources: sources.into_iter().map(Mutex::new).collect(),
            programs: Vec::new(),
        })
    }
}

/// Everything the reader reads, and the state of every config to publish
/// beside it: handed over in one piece, so a snapshot never mixes two
/// generations.
#[derive(Clone, Default)]
pub struct ReadSet {
    /// In the order their families are published.
    pub targets: Vec<Arc<Target>>,
    pub view: Arc<View>,
}

/// One metric of a target and what its reads have done so far.
struct MetricState {
    /// Its keys and series, kept from one read to the next.
    rows: rows::MetricRows,
    /// The last good family: kept when a read fails, so a transient error
    /// does not make series vanish.
    last: Option<Arc<Family>>,
    stats: MapStats,
}

/// Reads the maps of a [`ReadSet`] into snapshots.
pub struct Reader {
    set: ReadSet,
    /// By target id and metric index.
    metrics: HashMap<(u64, usize), MetricState>,
    /// Series per family of configs without `series_limit`; 0: any.
    series_limit: usize,
    last_cycle: Duration,
    last_read: Option<SystemTime>,
    /// Export each program's kernel run-time statistics (`--bpf.stats`).
    run_stats: bool,
    /// Also export ebpf_exporter's self-metrics under its names.
    ebpf_exporter_self: bool,
    /// Also export every BPF program and map of the host.
    host_bpf: bool,
    cache: LabelCache,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new(LabelCache::new(DEFAULT_CACHE_SIZE, DEFAULT_REFRESH), false)
    }
}

impl Reader {
    /// `run_stats` adds `program_runs_total` and
    /// `program_run_time_seconds_total`; the kernel counts only while
    /// statistics are enabled ([`crate::programs::stats::enable`]). They
    /// are added anyway once the exporter keeps statistics on
    /// ([`crate::programs::stats::keep_enabled`], for a CPU budget).
    pub fn new(cache: LabelCache, run_stats: bool) -> Self {
        Reader {
            set: ReadSet::default(),
            metrics: HashMap::new(),
            series_limit: DEFAULT_SERIES_LIMIT,
            last_cycle: Duration::ZERO,
            last_read: None,
            run_stats,
            ebpf_exporter_self: false,
            host_bpf: false,
            cache,
        }
    }

    /// Series per family of configs that do not say (`--metrics.series-limit`).
    pub fn with_series_limit(mut self, limit: usize) -> Self {
        self.series_limit = limit;
        self
    }

    /// Adds every BPF program and map of the host (`--collector.host-bpf`).
    pub fn with_host_bpf(mut self, on: bool) -> Self {
        self.host_bpf = on;
        self
    }

    /// Adds ebpf_exporter's self-metrics (`--metrics.ebpf-exporter-self`).
    pub fn with_ebpf_exporter_self_metrics(mut self, on: bool) -> Self {
        self.ebpf_exporter_self = on;
        self
    }

    /// Reads `set` from now on. What the reader knew of targets that are
    /// still in it (last families, error counts, cached labels) is kept.
    pub fn swap(&mut self, set: ReadSet) {
        let kept: Vec<u64> = set.targets.iter().map(|t| t.id).collect();
        let cache = &mut self.cache;
        self.metrics.retain(|(target, _), m| {
            let keep = kept.contains(target);
            if !keep {
                m.rows.forget(cache);
            }
            keep
        });
        for target in &set.targets {
            let limit = target.config.series_limit.unwrap_or(self.series_limit);
            for i in 0..target.config.metrics.len() {
                self.metrics.entry((target.id, i)).or_insert_with(|| MetricState {
                    rows: rows::MetricRows::new(limit),
                    last: None,
                    stats: MapStats::default(),
                });
            }
        }
        self.set = set;
    }

    /// Reads every map once and returns the resulting snapshot.
    pub fn read(&mut self) -> Snapshot {
        let started = Instant::now();
        for target in self.set.targets.clone() {
            for i in 0..target.sources.len() {
                self.read_metric(&target, i);
            }
        }
        self.last_cycle = started.elapsed();
        self.last_read = Some(SystemTime::now());
        self.snapshot()
    }

    /// A snapshot after a swap: maps never read yet are read, the others
    /// keep the families of the last cycle. A reload costs the reads of
    /// what it added, not a whole cycle.
    pub fn refresh(&mut self) -> Snapshot {
        for target in self.set.targets.clone() {
            for i in 0..target.sources.len() {
                if self
                    .metrics
                    .get(&(target.id, i))
                    .is_some_and(|m| m.last.is_none())
                {
                    self.read_metric(&target, i);
                }
            }
        }
        self.snapshot()
    }

    fn read_metric(&mut self, target: &Target, i: usize) {
        let spec = &target.config.metrics[i];
        let Some(state) = self.metrics.get_mut(&(target.id, i)) else {
            return;
        };
        let mut source = target.sources[i].lock().unwrap_or_else(PoisonError::into_inner);
        let t = Instant::now();
        match source.read() {
            Ok(dump) => {
                let (family, stats) = state.rows.family(spec, &dump, &mut self.cache, Instant::now());
                state.stats.entries = dump.len();
                state.stats.series_dropped = state.rows.series_dropped();
                for (decoder, n) in stats.decode_errors {
                    *state.stats.decode_errors.entry(decoder).or_default() += n;
                }
                state.last = Some(family);
                source.recycle(dump);
            }
            Err(e) => {
                state.stats.read_errors += 1;
                tracing::warn!(config = %target.config.name, map = %spec.map, "map read failed: {e}");
            }
        }
        state.stats.duration = t.elapsed();
        state.stats.method = source.method();
        state.stats.events_lost = source.lost();
        state.stats.max_entries = source.capacity();
    }

    fn snapshot(&self) -> Snapshot {
        let run_stats = self.run_stats || stats::kept_enabled();
        let mut families = Vec::new();
        let mut maps = Vec::new();
        let mut series_limited = Vec::new();
        let mut runs = Vec::new();
        for target in &self.set.targets {
            for (i, spec) in target.config.metrics.iter().enumerate() {
                let Some(state) = self.metrics.get(&(target.id, i)) else {
                    continue;
                };
                families.extend(state.last.clone());
                maps.push((target.config.name.as_str(), spec, &state.stats));
                if state.stats.series_dropped > 0 {
                    series_limited.push(SeriesLimited {
                        config: target.config.name.clone(),
                        metric: spec.name.clone(),
                        limit: state.rows.series_limit(),
                        dropped: state.stats.series_dropped,
                    });
                }
            }
            if run_stats {
                for (program, fd) in &target.programs {
                    if let Ok(stats) = stats::read(fd.as_fd()) {
                        runs.push(RunTotals {
                            config: &target.config.name,
                            program,
                            stats,
                        });
                    }
                }
            }
        }
        let taken_at = SystemTime::now();
        let view = &self.set.view;
        let inputs = self_metrics::Inputs {
            configs: &view.configs,
            reloads: &view.reloads,
            maps: &maps,
            runs: &runs,
            cache: &self.cache,
            last_cycle: self.last_cycle,
            last_read: self.last_read.unwrap_or(taken_at),
        };
        let mut own = self_metrics::families(&inputs);
        if self.ebpf_exporter_self {
            own.extend(self_metrics::ebpf_exporter_families(&inputs));
        }
        own.extend(crate::metrics::process::families());
        if self.host_bpf {
            own.extend(crate::metrics::host_bpf::families());
        }
        families.extend(own.into_iter().map(Arc::new));
        Snapshot {
            families,
            configs: view.configs.clone(),
            taken_at,
            not_ready: view.not_ready.clone(),
            series_limited,
        }
    }
}

/// A reader running on its own thread; dropping the handle stops it.
pub struct Running {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

enum Command {
    /// A new read set; a snapshot of it is published at once, then the
    /// sender is answered.
    Swap(ReadSet, mpsc::Sender<()>),
    Stop,
}

/// Publishes a first snapshot before it returns, then one per `interval`
/// from its own thread.
pub fn spawn(mut reader: Reader, cell: Arc<SnapshotCell>, interval: Duration) -> std::io::Result<Running> {
    let (commands, received) = mpsc::channel::<Command>();
    cell.publish(reader.read());
    let thread = std::thread::Builder::new()
        .name("map-reader".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            loop {
                if Instant::now() >= next {
                    cell.publish(reader.read());
                    next = Instant::now() + interval;
                }
                match received.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(Command::Swap(set, done)) => {
                        reader.swap(set);
                        cell.publish(reader.refresh());
                        let _ = done.send(());
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
    /// Hands the reader `set` and waits until a snapshot of it is
    /// published, so a caller told "done" is served the result; false if
    /// the reader has stopped.
    pub fn swap(&self, set: ReadSet) -> bool {
        let (done, published) = mpsc::channel();
        self.commands.send(Command::Swap(set, done)).is_ok() && published.recv().is_ok()
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
