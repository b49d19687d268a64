//! The metric model every layer agrees on: a [`Snapshot`] is an immutable set
//! of metric families plus the state of every config, published atomically by
//! the reader and served as is by the HTTP layer.

pub mod exposition;

use std::time::SystemTime;

/// What Prometheus type a family is exposed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One value of a family, keyed by its label values.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Counters from BPF maps are u64 and exported exactly, never through f64.
    Counter(u64),
    /// A counter of a measured quantity, such as seconds spent.
    FloatCounter(f64),
    Gauge(f64),
    Histogram(Histogram),
}

/// A histogram as exposed: cumulative buckets with finite upper bounds in
/// increasing order. `+Inf` is not stored; it is `count`.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// One value per name in [`Family::label_names`], in the same order.
    pub label_values: Vec<String>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Full exported name, prefix included (`ebpf_syscalls_total`).
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub label_names: Vec<String>,
    pub samples: Vec<Sample>,
}

/// Where a config stands after loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigState {
    /// Loaded, attached and read.
    Running,
    /// The config file itself is invalid; nothing was loaded.
    Invalid,
    /// The config is valid but its program failed to open, load or attach.
    Failed,
}

impl ConfigState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigState::Running => "running",
            ConfigState::Invalid => "invalid",
            ConfigState::Failed => "failed",
        }
    }
}

/// A BPF program (one `SEC()` function) inside a config's object.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramStatus {
    pub name: String,
    pub section: String,
    pub attached: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigStatus {
    /// Config name: the YAML file stem.
    pub name: String,
    /// Where the config came from (`embedded:configs/x.yaml` or a path).
    pub source: String,
    /// Embedded program the config uses.
    pub program: String,
    pub state: ConfigState,
    pub error: Option<String>,
    pub programs: Vec<ProgramStatus>,
}

/// Everything one read cycle produced. Scrapes clone an `Arc` of it and never
/// wait for, or observe, a read in progress.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub families: Vec<Family>,
    pub configs: Vec<ConfigStatus>,
    pub taken_at: SystemTime,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            families: Vec::new(),
            configs: Vec::new(),
            taken_at: SystemTime::UNIX_EPOCH,
        }
    }
}

/// The one place the newest snapshot lives. The reader stores, the HTTP layer
/// loads; both are lock-free, so a slow scrape never delays a read cycle.
#[derive(Debug, Default)]
pub struct SnapshotCell {
    current: arc_swap::ArcSwap<Snapshot>,
    ready: std::sync::atomic::AtomicBool,
}

impl SnapshotCell {
    pub fn load(&self) -> std::sync::Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes a complete snapshot; the first one marks the exporter ready.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(std::sync::Arc::new(snapshot));
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// True once the configs were loaded and a first snapshot published.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }
}
