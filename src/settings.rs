//! Flags resolved once into what each part of the exporter is built from,
//! so prefix, read method, directory and names are not threaded through
//! constructors one by one ([`crate::cli`] holds them as parsed).

use std::time::Duration;

use crate::cli::Args;
use crate::config::Selection;
use crate::programs::pin::PinDir;
use crate::reader::cache::LabelCache;
use crate::reader::Reader;
use crate::reload::LoadSettings;
use crate::server::ServerOptions;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Which configs run: read again on every reload.
    pub selection: Selection,
    pub load: LoadSettings,
    pub server: ServerOptions,
    /// `--config.check`: load, report, exit.
    pub check: bool,
    /// `--config.strict`: any failure at start is fatal, and ready means
    /// every config runs.
    pub strict: bool,
    pub read_interval: Duration,
    /// How often `--config.dir` is looked at without file events.
    pub check_interval: Duration,
    pub label_cache_size: usize,
    pub label_refresh: Duration,
    /// `--metrics.series-limit`.
    pub series_limit: usize,
    pub bpf_stats: bool,
    /// `--metrics.ebpf-exporter-self`.
    pub ebpf_exporter_self: bool,
    /// `--collector.host-bpf`.
    pub host_bpf: bool,
    /// `--capabilities.keep`.
    pub capabilities_keep: Vec<crate::privileges::KeepItem>,
    pub log_level: tracing::Level,
    pub log_format: crate::logging::LogFormat,
    pub log_timestamps: bool,
}

/// ebpf_exporter's `--web.listen-address` for socket activation: the first
/// socket systemd passes.
const SYSTEMD_FD: &str = "fd://0";

impl From<Args> for Settings {
    fn from(args: Args) -> Self {
        Settings {
            selection: Selection {
                dir: args.config_dir,
                names: args.config_names,
            },
            load: LoadSettings {
                prefix: args.metrics_prefix,
                method: args.read_method,
                btf: args.btf_path,
                pins: PinDir {
                    path: args.pin_dir,
                    check_only: args.config_check,
                },
                cpu_budget: args.cpu_budget,
                cpu_budget_window: args.cpu_budget_window,
            },
            server: ServerOptions {
                systemd_socket: args.systemd_socket || args.listen_address == SYSTEMD_FD,
                listen: args.listen_address,
                telemetry_path: args.telemetry_path,
                max_connections: args.max_connections,
                web_config: args.web_config_file,
                enable_lifecycle: args.enable_lifecycle,
                native_histograms: args.native_histograms,
            },
            check: args.config_check,
            strict: args.config_strict,
            read_interval: args.read_interval,
            check_interval: args.config_check_interval,
            label_cache_size: args.label_cache_size,
            label_refresh: args.label_refresh,
            series_limit: args.series_limit,
            bpf_stats: args.bpf_stats,
            ebpf_exporter_self: args.ebpf_exporter_self,
            host_bpf: args.host_bpf,
            capabilities_keep: args.capabilities_keep,
            log_level: if args.debug {
                tracing::Level::DEBUG
            } else {
                args.log_level
            },
            log_format: args.log_format,
            log_timestamps: !args.log_no_timestamps,
        }
    }
}

impl Settings {
    /// A reader with the configured label cache, exporting run-time
    /// statistics under `--bpf.stats` (and whenever the exporter turned
    /// them on, for a CPU budget).
    pub fn reader(&self) -> Reader {
        Reader::new(
            LabelCache::new(self.label_cache_size, self.label_refresh),
            self.bpf_stats,
        )
        .with_ebpf_exporter_self_metrics(self.ebpf_exporter_self)
        .with_host_bpf(self.host_bpf)
        .with_series_limit(self.series_limit)
    }
}
