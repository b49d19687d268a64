//! The YAML schema, mirrored field for field. Nothing here is interpreted:
//! [`super::validate`] turns these into resolved specs, and nothing after
//! validation looks at these types again.
//!
//! The `metrics` part is cloudflare/ebpf_exporter's schema, so its configs
//! load unchanged. Every struct refuses unknown fields so a typo is an error
//! instead of a silently ignored setting. No field may be called `value`:
//! that name is reserved by the span wrapper when building YAML paths.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Embedded program (file stem of `bpf/<program>.bpf.c`) to load.
    /// Defaults to the config's own file stem.
    pub program: Option<Spanned<String>>,
    /// A compiled object to run instead (`x.bpf.o`), relative to the
    /// config's directory.
    pub object: Option<Spanned<String>>,
    /// How the program's maps become metrics.
    pub metrics: Spanned<RawMetrics>,
    /// Where to attach programs whose `SEC()` alone does not say, such as XDP
    /// (which interface) or uprobes (which binary). Programs not listed here
    /// are attached from their `SEC()` name.
    #[serde(default)]
    pub attach: Vec<Spanned<RawAttach>>,
    /// ebpf_exporter's: kernel symbols whose addresses the program gets in
    /// `kaddr_<symbol>` before it loads.
    pub kaddrs: Option<Spanned<Vec<Spanned<String>>>>,
    /// Maps another program pinned in bpffs, by the name the metrics read
    /// them under (`drops_total: /sys/fs/bpf/fw/drops`); such a config runs
    /// no program.
    pub pinned: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// ebpf_exporter's: a map the exporter keeps filled with the ids of
    /// the cgroups whose path matches, for the program to filter on.
    pub cgroup_id_map: Option<Spanned<RawCgroupIdMap>>,
    /// Series each metric family of this config may have (0: any number);
    /// past it new label sets are left out and counted. Defaults to
    /// `--metrics.series-limit`.
    pub series_limit: Option<usize>,
    /// Pin the maps the metrics read in bpffs, at
    /// `<--bpf.pin-dir>/<config name>/<map name>`, so their values survive
    /// a restart or an upgrade of the exporter: a pinned map of the same
    /// layout is reused at load, one of another layout refuses the config.
    pub pin: Option<Spanned<bool>>,
    /// The share of one CPU the config's programs may use together
    /// (`0.01` is 1 % of one CPU), measured over `--bpf.cpu-budget-window`
    /// from the kernel's BPF statistics; above it they are detached and
    /// the config is `over_budget`. Overrides `--bpf.cpu-budget`.
    pub cpu_budget: Option<Spanned<f64>>,
    pub tracing: Option<Spanned<serde::de::IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Maps exported as Prometheus counters, one entry per map.
    #[serde(default)]
    pub counters: Vec<Spanned<RawMetric>>,
    /// Maps (or global variables) exported as Prometheus gauges.
    #[serde(default)]
    pub gauges: Vec<Spanned<RawMetric>>,
    /// Maps whose last key label is a bucket index, exported as Prometheus
    /// histograms.
    #[serde(default)]
    pub histograms: Vec<Spanned<RawHistogram>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCgroupIdMap {
    /// The map in the program.
    pub name: Spanned<String>,
    /// `hash` (u64 cgroup id → u64) or `cgrp_storage` (cgroup storage,
    /// u64 values).
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// A cgroup is in the map when its path (`/sys/fs/cgroup/…`) matches
    /// any of these.
    pub regexps: Spanned<Vec<Spanned<String>>>,
}

/// A counter or a gauge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetric {
    /// Map name in the program (or, for a label-less metric, the name of a
    /// global variable), and the metric name after the prefix.
    pub name: Spanned<String>,
    /// Help text shown by Prometheus.
    pub help: Spanned<String>,
    /// How the map key becomes labels, in key order.
    #[serde(default)]
    pub labels: Vec<Spanned<RawLabel>>,
    /// ebpf_exporter's event counters: the map is a perf event array and
    /// each event's bytes are a label set, counted once.
    pub perf_event_array: Option<Spanned<bool>>,
    /// For event counters: start again from zero this often (`1m`), so
    /// label sets no longer seen go away.
    pub flush_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistogram {
    /// Map name in the program, and the metric name after the prefix.
    pub name: Spanned<String>,
    /// Help text shown by Prometheus.
    pub help: Spanned<String>,
    /// How bucket indexes become bounds: `exp2`, `exp2zero`, `linear` or
    /// `fixed`.
    pub bucket_type: Spanned<String>,
    /// First exported bucket index (default 0; not used by `fixed`).
    pub bucket_min: Option<Spanned<i64>>,
    /// Last exported bucket index; `bucket_max + 1` holds the sum (not used
    /// by `fixed`).
    pub bucket_max: Option<Spanned<i64>>,
    /// Scales bounds and sum into the exported unit, such as `0.000001` for
    /// microseconds recorded and seconds exported (default 1).
    pub bucket_multiplier: Option<Spanned<f64>>,
    /// `fixed` only: the bucket keys the program writes, each the upper
    /// bound of its bucket, in increasing order.
    pub bucket_keys: Option<Spanned<Vec<f64>>>,
    /// How the map key becomes labels, in key order; the last key label is
    /// the bucket index.
    #[serde(default)]
    pub labels: Vec<Spanned<RawLabel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLabel {
    /// Prometheus label name.
    pub name: Spanned<String>,
    /// Bytes of the key this label decodes. Without it, the label takes
    /// the key struct's field of the same name, or else the next field, as
    /// the program's BTF describes them, padding included.
    pub size: Option<Spanned<u64>>,
    /// Bytes skipped after this label (C struct padding).
    pub padding: Option<Spanned<u64>>,
    /// Decoders applied in order to the label's bytes.
    #[serde(default)]
    pub decoders: Vec<Spanned<RawDecoder>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecoder {
    /// Decoder name, one of [`crate::decoders::REGISTRY`].
    pub name: Spanned<String>,
    /// `static_map`: input value → label value.
    pub static_map: Option<BTreeMap<String, String>>,
    /// `regexp`: patterns; rows matching none are dropped.
    pub regexps: Option<Vec<String>>,
    /// `static_map`: keep values missing from the map instead of `unknown:…`.
    pub allow_unknown: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttach {
    /// BPF program (C function) name.
    pub program: Spanned<String>,
    /// Attach as XDP to an interface.
    pub xdp: Option<Spanned<RawXdp>>,
    /// Attach as a uprobe (or uretprobe, per the program's `SEC()`) to a
    /// function of a binary or library.
    pub uprobe: Option<Spanned<RawUprobe>>,
    /// Attach as a perf_event program run by a perf event opened on every
    /// CPU, as `SEC("perf_event/type=…,config=…,frequency=…")` says it.
    pub perf_event: Option<Spanned<RawPerfEvent>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawXdp {
    /// Interface name, such as `eth0` or `lo`.
    pub interface: Spanned<String>,
    /// `generic` (any driver, in the stack), `native` (in the driver),
    /// `offload` (on the NIC) or `auto` (native where supported). Default auto.
    pub mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUprobe {
    /// Absolute path of the ELF binary or shared library to probe.
    pub binary: Spanned<String>,
    /// Symbol name of the function, as in the ELF symbol table (libbpf
    /// resolves it to an offset).
    pub function: Spanned<String>,
    /// Probe only this process; every process that runs the binary when absent.
    pub pid: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPerfEvent {
    /// `perf_event_attr.type`: a number, or perf's name for it (`hardware`,
    /// `software`, `tracepoint`, `hw_cache`, `raw`, `breakpoint`).
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// `perf_event_attr.config`: a number (`0x` for hexadecimal), or for
    /// hardware and software events perf's name for it (`cpu-clock`,
    /// `cpu-cycles`, …).
    pub config: Spanned<String>,
    /// Samples per second; give this or `period`.
    pub frequency: Option<Spanned<u64>>,
    /// Events per sample; give this or `frequency`.
    pub period: Option<Spanned<u64>>,
}
