//! The metric model every layer agrees on: a [`Snapshot`] is an immutable set
//! of metric families plus the state of every config, published atomically by
//! the reader and served as is by the HTTP layer.

pub mod exposition;
pub mod host_bpf;
pub mod process;
pub mod protobuf;
pub mod self_metrics;

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
    pub label_values: std::sync::Arc<[String]>,
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

/// Where a config stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigState {
    /// Loaded, every program attached, maps read.
    Running,
    /// Loaded and read, but some of its programs are not attached: part of
    /// what it measures is missing.
    Degraded,
    /// The config itself was refused (YAML, validation, an unreadable file,
    /// a clash with another config); nothing was loaded.
    Invalid,
    /// The config is valid but its program failed to open, load or attach.
    Failed,
    /// It ran until its programs used more CPU than its budget allows
    /// (`cpu_budget`, `--bpf.cpu-budget`): they were detached and its
    /// series removed, until a changed file is loaded again.
    OverBudget,
}

impl ConfigState {
    pub const ALL: [ConfigState; 5] = [
        ConfigState::Running,
        ConfigState::Degraded,
        ConfigState::Invalid,
        ConfigState::Failed,
        ConfigState::OverBudget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConfigState::Running => "running",
            ConfigState::Degraded => "degraded",
            ConfigState::Invalid => "invalid",
            ConfigState::Failed => "failed",
            ConfigState::OverBudget => "over_budget",
        }
    }

    /// Its maps are read and exported (fully or in part).
    pub fn is_serving(self) -> bool {
        matches!(self, ConfigState::Running | ConfigState::Degraded)
    }
}

/// Why a config or a program is not running, as a kind: what the reload
/// decides from (an exclusive hook is worth a break-before-make, a verifier
/// refusal is not), and the `reason` label of the self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The config file could not be read (not UTF-8, a directory, …).
    Unreadable,
    /// The YAML or what it says was refused.
    Invalid,
    /// Its metric families are already another config's.
    Conflict,
    /// The verifier refused a program.
    VerifierRefused,
    /// This kernel lacks the hook: a tracepoint, a function, kprobes,
    /// trampolines, an interface or a binary to probe.
    HookMissing,
    /// The hook takes one program and another holds it (XDP on an
    /// interface, per mode).
    HookBusy,
    /// The exporter lacks a privilege loading or attaching needs.
    Permission,
    /// The object cannot serve the config (a map missing or of the wrong
    /// shape, an unreadable ELF).
    ObjectInvalid,
    /// Anything else the kernel or libbpf refused.
    Failed,
    /// Its programs used more CPU than the config's budget allows, so
    /// they were detached.
    OverBudget,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unreadable => "unreadable",
            Reason::Invalid => "invalid",
            Reason::Conflict => "conflict",
            Reason::VerifierRefused => "verifier_refused",
            Reason::HookMissing => "hook_missing",
            Reason::HookBusy => "hook_busy",
            Reason::Permission => "permission",
            Reason::ObjectInvalid => "object_invalid",
            Reason::Failed => "failed",
            Reason::OverBudget => "over_budget",
        }
    }

    /// Failures that depend on other configs (a metric name or an exclusive
    /// hook another config holds), so a reload that changes anything else
    /// tries them again.
    pub fn depends_on_others(self) -> bool {
        matches!(self, Reason::Conflict | Reason::HookBusy)
    }
}

/// A failure: its kind, and the message that names the place and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A BPF program (one `SEC()` function) inside a config's object.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProgramStatus {
    pub name: String,
    pub section: String,
    /// The kernel's id and tag of the loaded program (`bpftool prog`
    /// shows them); `None` for a program the kernel refused.
    pub id: Option<u32>,
    pub tag: Option<String>,
    pub attached: bool,
    pub reason: Option<Reason>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfigStatus {
    /// Config name: the YAML file stem.
    pub name: String,
    /// Where the config came from (`embedded:configs/x.yaml` or a path).
    pub source: String,
    /// Embedded program the config uses.
    pub program: String,
    pub state: ConfigState,
    /// Why the config is not running (for a degraded one, the first
    /// unattached program's reason).
    pub reason: Option<Reason>,
    pub error: Option<String>,
    /// A newer version of the file that a reload refused; what runs is the
    /// version before it.
    pub rejected: Option<String>,
    pub programs: Vec<ProgramStatus>,
    /// The share of one CPU its programs may use together, when a budget
    /// applies (`cpu_budget`, `--bpf.cpu-budget`).
    pub cpu_budget: Option<f64>,
}

impl ConfigStatus {
    /// Running with every program attached.
    pub fn is_good(&self) -> bool {
        self.state == ConfigState::Running
    }
}

/// Everything one read cycle produced. Scrapes clone an `Arc` of it and never
/// wait for, or observe, a read in progress.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Shared with the reader, which keeps each map's last family: a
    /// snapshot costs a pointer per family, not a copy of every sample.
    pub families: Vec<std::sync::Arc<Family>>,
    pub configs: Vec<ConfigStatus>,
    pub taken_at: SystemTime,
    /// Why `/-/ready` answers 503, or `None` when it answers 200 (the rule
    /// is [`crate::fleet::Fleet::readiness`]).
    pub not_ready: Option<String>,
    /// Families at their series limit, shown on `/` and in `/-/status`.
    pub series_limited: Vec<SeriesLimited>,
}

/// A family whose series limit left label sets out.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesLimited {
    pub config: String,
    pub metric: String,
    pub limit: usize,
    /// Label sets left out so far (`bpf_exporter_series_dropped_total`).
    pub dropped: u64,
}

impl Snapshot {
    pub fn is_ready(&self) -> bool {
        self.not_ready.is_none()
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            families: Vec::new(),
            configs: Vec::new(),
            taken_at: SystemTime::UNIX_EPOCH,
            not_ready: Some("starting: no snapshot published yet".to_string()),
            series_limited: Vec::new(),
        }
    }
}

/// The one place the newest snapshot lives. The reader stores, the HTTP layer
/// loads; both are lock-free, so a slow scrape never delays a read cycle.
#[derive(Debug, Default)]
pub struct SnapshotCell {
    current: arc_swap::ArcSwap<Snapshot>,
}

impl SnapshotCell {
    pub fn load(&self) -> std::sync::Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(std::sync::Arc::new(snapshot));
    }

    /// What `/-/ready` answers: the newest snapshot's readiness.
    pub fn is_ready(&self) -> bool {
        self.current.load().is_ready()
    }
}
