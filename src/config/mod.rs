//! Configs: where they come from ([`sources`](mod@sources): embedded or `--config.dir`),
//! and the resolved specs the rest of the exporter works from.
//!
//! Parsing is two-staged: [`raw`] mirrors the YAML, [`validate`] checks it
//! against the program's object and produces a [`Config`]. Errors carry
//! `file:line:column` and the YAML path ([`error`]).

pub mod error;
pub mod raw;
pub mod sources;
pub mod validate;

mod attach;
mod cgroup_id_map;
mod cpu_budget;
mod histogram;
mod kaddrs;
mod labels;
mod metric;
mod pin;
mod unsupported;
pub(crate) mod yaml;

use std::fmt;

use crate::decoders::Configured;
pub use cpu_budget::asks_for_cpu_budget;
pub use error::{ConfigError, ConfigErrors};
pub use sources::{
    sources, EmbeddedConfig, Listing, ObjectFile, Selection, Source, Unreadable, DEFAULT_SET,
    EMBEDDED_CONFIGS,
};
pub use validate::parse;

/// A validated config: everything needed to load its program and read its
/// maps, and nothing left to check.
#[derive(Debug)]
pub struct Config {
    pub name: String,
    pub origin: String,
    /// The YAML it was parsed from: a reload with the same text leaves the
    /// running config alone.
    pub text: String,
    /// What it runs, as `/` and the log name it: an embedded program's
    /// name, or an object file's path.
    pub program: String,
    pub object: crate::programs::ProgramObject,
    /// The `SEC()` of each program of the object, as validation read them:
    /// what loading and attaching will ask of the kernel.
    pub sections: Vec<String>,
    pub metrics: Vec<MetricSpec>,
    pub attach: Vec<AttachSpec>,
    /// Kernel symbols whose addresses are written into the program before
    /// it loads (ebpf_exporter's `kaddrs`).
    pub kaddrs: Vec<Kaddr>,
    /// ebpf_exporter's `cgroup_id_map`.
    pub cgroup_id_map: Option<CgroupIdMap>,
    /// Series per family, when the config sets its own limit (0: any).
    pub series_limit: Option<usize>,
    /// `pin: true`: the maps the metrics read, as the object declares
    /// them, to pin under `--bpf.pin-dir` ([`crate::programs::pin`]);
    /// empty without it.
    pub pin_maps: Vec<crate::programs::MapMeta>,
    /// `cpu_budget`: the share of one CPU the programs may use together.
    pub cpu_budget: Option<f64>,
}

/// A map the exporter keeps filled with the cgroups whose path matches.
#[derive(Debug, Clone)]
pub struct CgroupIdMap {
    pub map: String,
    pub kind: CgroupIdMapKind,
    pub regexps: Vec<regex::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupIdMapKind {
    /// Key: the cgroup id (u64); value: 1 (u64).
    Hash,
    /// Cgroup storage, set through a cgroup fd; value: 1 (u64).
    CgrpStorage,
}

/// `kaddrs` entry: the address of kernel symbol `symbol`, written into the
/// program's `const volatile u64 kaddr_<symbol>` (in `.rodata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kaddr {
    pub symbol: String,
    /// The map libbpf keeps `.rodata` in, and the variable's offset there.
    pub map: String,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricType {
    Counter,
    /// Values are read as signed 64-bit, so a per-CPU gauge that one CPU
    /// increments and another decrements sums to the right number.
    Gauge,
    Histogram(HistogramSpec),
}

/// How a histogram map's bucket keys become cumulative buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSpec {
    /// The exported buckets in increasing order: the bucket key the program
    /// writes and its upper bound (`le`) in the exported unit. A key below
    /// the first counts in the first bucket, a key between two listed ones
    /// in the next one up: both are at most that bucket's bound.
    pub buckets: Vec<(u64, f64)>,
    /// The key holding the sum of all values: the top key + 1. Any other key
    /// above the top holds overflow, which appears only in `+Inf`.
    pub sum_key: u64,
    /// Scales the sum into the exported unit (the bounds are already scaled).
    pub multiplier: f64,
}

/// A global variable of the program (`.bss` or `.data`), read from the map
/// libbpf keeps the section in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalSpec {
    /// Byte offset of the variable in the section.
    pub offset: usize,
    /// 1, 2, 4 or 8 bytes.
    pub size: usize,
    pub signed: bool,
}

/// One map (or global variable) exported as one metric family.
#[derive(Debug)]
pub struct MetricSpec {
    pub kind: MetricType,
    /// Map name in the object; for a global variable, its section's map.
    pub map: String,
    /// Set when the metric reads a global variable rather than a whole map.
    pub global: Option<GlobalSpec>,
    /// Exported name, prefix included.
    pub name: String,
    pub help: String,
    /// Labels decoded from the key, in key order. For a histogram the last
    /// one is the bucket index, which is not exported as a label.
    pub labels: Vec<LabelSpec>,
    /// Per-CPU maps only: a last label named `cpu` splits values by CPU
    /// instead of summing them. Its bytes are the CPU number, not key bytes.
    pub cpu_label: Option<LabelSpec>,
    /// Set when the map is an event stream counted as events arrive
    /// (`perf_event_array: true`); the labels then decode each event.
    pub events: Option<EventSpec>,
}

/// An event counter's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    /// Counts start again from zero this often.
    pub flush_interval: Option<std::time::Duration>,
}

impl MetricSpec {
    /// Labels exported on every series: key labels (without a histogram's
    /// bucket), then `cpu` if split.
    pub fn label_names(&self) -> Vec<String> {
        self.exported_key_labels()
            .iter()
            .chain(self.cpu_label.as_ref())
            .map(|l| l.name.clone())
            .collect()
    }

    fn exported_key_labels(&self) -> &[LabelSpec] {
        match self.kind {
            MetricType::Histogram(_) => &self.labels[..self.labels.len().saturating_sub(1)],
            _ => &self.labels,
        }
    }
}

#[derive(Debug)]
pub struct LabelSpec {
    pub name: String,
    /// Offset of the label's bytes in the key.
    pub offset: usize,
    pub size: usize,
    pub decoders: Vec<Configured>,
}

impl LabelSpec {
    /// Whether a decoded value of this label may change over time.
    pub fn answer_can_change(&self) -> bool {
        self.decoders.iter().any(|d| d.decoder.answer_can_change())
    }
}

/// An explicit attach point for one BPF program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachSpec {
    Xdp {
        program: String,
        interface: String,
        mode: XdpMode,
    },
    /// A uprobe, or a uretprobe when the program's section says so.
    Uprobe {
        program: String,
        /// Absolute path of the ELF binary or library.
        binary: String,
        /// Symbol name, resolved by libbpf.
        function: String,
        /// Only this process; every process when `None`.
        pid: Option<i32>,
    },
    /// A perf event opened on every CPU, running the program.
    PerfEvent {
        program: String,
        event: crate::programs::sections::PerfEvent,
    },
}

impl AttachSpec {
    pub fn program(&self) -> &str {
        match self {
            AttachSpec::Xdp { program, .. }
            | AttachSpec::Uprobe { program, .. }
            | AttachSpec::PerfEvent { program, .. } => program,
        }
    }

    /// The entry's key in the config: `xdp`, `uprobe` or `perf_event`.
    pub fn key(&self) -> &'static str {
        match self {
            AttachSpec::Xdp { .. } => "xdp",
            AttachSpec::Uprobe { .. } => "uprobe",
            AttachSpec::PerfEvent { .. } => "perf_event",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    Auto,
    Generic,
    Native,
    Offload,
}

impl XdpMode {
    pub const NAMES: &'static [&'static str] = &["auto", "generic", "native", "offload"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => XdpMode::Auto,
            "generic" => XdpMode::Generic,
            "native" => XdpMode::Native,
            "offload" => XdpMode::Offload,
            _ => return None,
        })
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Generic => "generic",
            XdpMode::Native => "native",
            XdpMode::Offload => "offload",
        })
    }
}
