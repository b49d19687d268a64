//! Command-line flags, dotted as in Prometheus exporters
//! (`--web.listen-address`), parsed raw by clap and resolved once into [`crate::settings::Settings`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::reader::maps::ReadMethod;

/// What `--version` prints: the labels of `bpf_exporter_build_info`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("BPF_EXPORTER_REVISION"),
    ", rustc ",
    env!("BPF_EXPORTER_RUSTC"),
    ", ",
    env!("BPF_EXPORTER_TARGET"),
    ")"
);

/// ebpf_exporter keeps a cache of label sets its decoders skipped; here
/// every map key is held decoded while its map holds it, skipped ones
/// included, within one bound.
fn refuse_skip_cache_size(_: &str) -> Result<u64, String> {
    Err(
        "not a flag of bpf-exporter: every map key is held decoded while its map holds it, keys a \
         decoder skipped included; size it with --labels.cache-size (default 1048576)"
            .to_string(),
    )
}

#[derive(Debug, Parser)]
#[command(name = "bpf-exporter", version = VERSION, about = "Prometheus exporter for eBPF maps")]
pub struct Args {
    /// Directory of <name>.yaml configs; replaces the embedded default set.
    #[arg(long = "config.dir", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Comma-separated config names to run; `default` stands for the default
    /// set (configs/ when embedded, every config of --config.dir), so
    /// `default,syscall_latency` adds an opt-in config to it.
    #[arg(long = "config.names", value_name = "NAMES", value_delimiter = ',')]
    pub config_names: Option<Vec<String>>,

    /// Load and attach the selected configs, print a report, exit 0 only if
    /// all of them are good.
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Make any config or load/attach failure fatal instead of reporting it
    /// and running the rest.
    #[arg(long = "config.strict")]
    pub config_strict: bool,

    /// How often `--config.dir` is checked for changes even without file
    /// events (network filesystems send none); changes also apply on
    /// SIGHUP and `POST /-/reload`.
    #[arg(long = "config.check-interval", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub config_check_interval: Duration,

    /// Address to listen on for HTTP (`:9435` means every interface;
    /// `fd://0`, as in ebpf_exporter, is --web.systemd-socket).
    #[arg(long = "web.listen-address", value_name = "ADDR", default_value = ":9435")]
    pub listen_address: String,

    /// Listen on the socket systemd passes (socket activation, see
    /// packaging/systemd/) instead of --web.listen-address.
    #[arg(long = "web.systemd-socket")]
    pub systemd_socket: bool,

    /// exporter-toolkit web configuration file: TLS, client certificates,
    /// basic authentication, response headers. Read again when it (or a
    /// file it names) changes, and on SIGHUP.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Serve `POST /-/reload` (off by default, as in Prometheus: it lets
    /// anyone who reaches the port make the exporter reload programs).
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Open HTTP connections at most; beyond it, the connection idle
    /// longest is closed to make room.
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = crate::server::DEFAULT_MAX_CONNECTIONS, value_parser = parse_positive)]
    pub max_connections: usize,

    /// Path under which metrics are served.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics")]
    pub telemetry_path: String,

    /// Prefix of every metric read from BPF maps.
    #[arg(long = "metrics.prefix", value_name = "PREFIX", default_value = "ebpf_")]
    pub metrics_prefix: String,

    /// How often maps are read in the background (e.g. 500ms, 5s, 1m).
    #[arg(long = "maps.read-interval", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub read_interval: Duration,

    /// How maps are read: `batch` (BPF_MAP_LOOKUP_BATCH, falling back to
    /// per-key where the kernel lacks it) or `per-key`. Arrays created
    /// BPF_F_MMAPABLE, and program globals, are read through their memory
    /// mapping whichever is chosen.
    #[arg(long = "maps.read-method", value_name = "METHOD", default_value = "batch", value_parser = parse_method)]
    pub read_method: ReadMethod,

    /// Map keys held decoded from one read to the next, in all maps (a key
    /// goes when its map no longer holds it); past it, new keys are decoded
    /// on every read. 0 decodes every key on every read.
    #[arg(long = "labels.cache-size", value_name = "ENTRIES", default_value_t = crate::reader::DEFAULT_CACHE_SIZE)]
    pub label_cache_size: usize,

    /// Series each metric family may have unless its config sets
    /// `series_limit`: label sets past it are left out, counted in
    /// bpf_exporter_series_dropped_total and reported once. 0: no limit.
    #[arg(long = "metrics.series-limit", value_name = "SERIES", default_value_t = crate::reader::DEFAULT_SERIES_LIMIT)]
    pub series_limit: usize,

    /// How long a cached label set is trusted when its decoders' answers can
    /// change (cgroup paths, interface names, kernel symbols).
    #[arg(long = "labels.refresh-interval", value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub label_refresh: Duration,

    /// Turn on the kernel's BPF run-time statistics while running and export
    /// each program's run count and run time (costs two clock reads per
    /// program run).
    #[arg(long = "bpf.stats")]
    pub bpf_stats: bool,

    /// Directory on a bpffs where configs with `pin: true` pin the maps
    /// their metrics read (DIR/<config>/<map>), so the values survive a
    /// restart or an upgrade of the exporter.
    #[arg(long = "bpf.pin-dir", value_name = "DIR", default_value = crate::programs::pin::DEFAULT_DIR)]
    pub pin_dir: PathBuf,
    /// The share of one CPU each config's programs may use together
    /// (0.01 is 1 % of one CPU), for configs without a `cpu_budget:` of
    /// their own; a config over its budget is detached and marked
    /// over_budget. Turns on BPF run-time statistics, which it is
    /// measured with. Off by default.
    #[arg(long = "bpf.cpu-budget", value_name = "SHARE", value_parser = parse_share)]
    pub cpu_budget: Option<f64>,

    /// The time CPU budgets are measured over: a config is over its
    /// budget once its programs ran longer than budget × window within
    /// one window.
    #[arg(long = "bpf.cpu-budget-window", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub cpu_budget_window: Duration,

    /// Capabilities to keep beyond what the configs selected at start need,
    /// comma-separated (CAP_NET_ADMIN or net_admin), or `all` to drop none.
    /// The rest are dropped at start for good, so a config added later
    /// that needs one (CAP_NET_ADMIN for XDP) must have it kept here.
    #[arg(long = "capabilities.keep", value_name = "CAPS", value_delimiter = ',')]
    pub capabilities_keep: Vec<crate::privileges::KeepItem>,

    /// Add native histograms to the protobuf exposition (what Prometheus
    /// asks for with --enable-feature=native-histograms), beside the
    /// classic buckets: one series per exp2 histogram (at the nearest
    /// powers of two for decimal units such as 1e-6). Such a Prometheus
    /// then keeps the native series instead of
    /// the `_bucket` ones, unless told to scrape both.
    #[arg(long = "metrics.native-histograms")]
    pub native_histograms: bool,

    /// Also export ebpf_exporter's own metrics under its names
    /// (ebpf_exporter_enabled_configs, ebpf_exporter_ebpf_program_info, …),
    /// for its alerts and dashboards; with --metrics.prefix=ebpf_exporter_
    /// every name matches ebpf_exporter's.
    #[arg(long = "metrics.ebpf-exporter-self")]
    pub ebpf_exporter_self: bool,

    /// Also export every BPF program and map on the host (bpf_host_*: what
    /// bpftool prog and map show); keeps CAP_SYS_ADMIN, which listing them
    /// needs.
    #[arg(long = "collector.host-bpf")]
    pub host_bpf: bool,

    /// Kernel BTF to relocate programs against (CO-RE), for kernels without
    /// /sys/kernel/btf/vmlinux (BTFHub files, `bpftool btf dump`).
    #[arg(long = "btf.path", value_name = "FILE")]
    pub btf_path: Option<PathBuf>,

    /// ebpf_exporter's flag: the same as --log.level=debug.
    #[arg(long = "debug")]
    pub debug: bool,

    /// Leave the time out of log lines (journald and most collectors add
    /// their own).
    #[arg(long = "log.no-timestamps")]
    pub log_no_timestamps: bool,

    /// ebpf_exporter's flag, refused with this exporter's equivalent.
    #[arg(long = "config.skip-cache-size", value_name = "N", hide = true, value_parser = refuse_skip_cache_size)]
    pub skip_cache_size: Option<u64>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info")]
    pub log_level: tracing::Level,

    /// Log line format: logfmt or json.
    #[arg(long = "log.format", value_name = "FORMAT", default_value = "logfmt")]
    pub log_format: crate::logging::LogFormat,
}

/// Prometheus-style durations: a whole number and a unit among ms, s, m, h.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms, 5s or 1m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    if d.is_zero() {
        return Err("the interval must be longer than zero".into());
    }
    Ok(d)
}

/// A CPU budget: a share of one CPU above 0, such as 0.01.
fn parse_share(s: &str) -> Result<f64, String> {
    let share: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number: give a share of one CPU, such as 0.01 for 1 %"))?;
    crate::programs::budget::check(share)
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?}: use a whole number above 0")),
    }
}

fn parse_method(s: &str) -> Result<ReadMethod, String> {
    match s {
        "batch" => Ok(ReadMethod::Batch),
        "per-key" => Ok(ReadMethod::PerKey),
        _ => Err(format!("{s:?}: use batch or per-key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_prometheus_flags() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "5", "s", "0s", "1.5s", "-1s", "5 s", "5d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn defaults_match_the_readme() {
        let args = Args::parse_from(["bpf-exporter"]);
        assert_eq!(args.listen_address, ":9435");
        assert_eq!(args.telemetry_path, "/metrics");
        assert_eq!(args.metrics_prefix, "ebpf_");
        assert_eq!(args.read_interval, Duration::from_secs(5));
        assert_eq!(args.label_refresh, crate::reader::DEFAULT_REFRESH);
        assert_eq!(args.pin_dir, PathBuf::from("/sys/fs/bpf/bpf-exporter"));
        assert_eq!(args.cpu_budget, None);
        assert_eq!(args.cpu_budget_window, crate::programs::budget::DEFAULT_WINDOW);
        assert!(args.config_dir.is_none() && args.config_names.is_none());
    }

    #[test]
    fn cpu_budgets_are_shares_of_one_cpu_above_zero() {
        let args = Args::parse_from([
            "bpf-exporter",
            "--bpf.cpu-budget=0.01",
            "--bpf.cpu-budget-window=1m",
        ]);
        assert_eq!(args.cpu_budget, Some(0.01));
        assert_eq!(args.cpu_budget_window, Duration::from_secs(60));
        for bad in ["0", "-1", "1%", "NaN", "inf"] {
            let flag = format!("--bpf.cpu-budget={bad}");
            assert!(Args::try_parse_from(["bpf-exporter", &flag]).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_names_split_on_commas() {
        let args = Args::parse_from(["bpf-exporter", "--config.names=syscalls,execs"]);
        assert_eq!(args.config_names.unwrap(), ["syscalls", "execs"]);
    }
}
