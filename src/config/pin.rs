//! `pin: true`: the maps a config's metrics read are pinned in bpffs, at
//! `<--bpf.pin-dir>/<config name>/<map name>`, so their values outlive the
//! exporter. Checked here: which maps those are, and that the config's
//! name can name a directory in bpffs. The pins themselves are looked at
//! when the config loads ([`crate::programs::pin`]).
//!
//! Only the maps metrics read are pinned: they hold what should survive.
//! A program's other maps (start timestamps, scratch space) are its own
//! business from one load to the next; global variables live in the
//! `.bss`/`.data` maps libbpf makes anew with each load; event streams
//! (`perf_event_array: true`) are counted by the exporter, not in a map.

use serde_saphyr::Spanned;

use super::raw::RawMetrics;
use super::validate::Validator;
use super::MetricSpec;
use crate::programs::{MapMeta, ObjectInfo};

impl Validator<'_> {
    /// The maps to pin: those `metrics` read, once each, as the object
    /// declares them; none without `pin: true`. `raw` is what `metrics`
    /// were resolved from.
    pub(super) fn pin(
        &mut self,
        pin: Option<&Spanned<bool>>,
        config_name: &str,
        raw: &RawMetrics,
        metrics: &[MetricSpec],
        info: &ObjectInfo,
    ) -> Vec<MapMeta> {
        let Some(pin) = pin.filter(|p| p.value) else {
            return Vec::new();
        };
        // bpffs refuses names with a dot (kernel/bpf/inode.c, bpf_lookup).
        if config_name.is_empty() || config_name.contains('.') {
            self.error(
                pin.referenced,
                "pin",
                format!(
                    "the config's name {config_name:?} cannot name its directory in bpffs, which refuses \
                     names with a `.`: rename the file (`_` for `.`)"
                ),
            );
        }
        let mut maps: Vec<MapMeta> = Vec::new();
        for spec in metrics
            .iter()
            .filter(|m| m.global.is_none() && m.events.is_none())
        {
            if let Some(map) = info
                .map(&spec.map)
                .filter(|m| !maps.iter().any(|p| p.name == m.name))
            {
                maps.push(map.clone());
            }
        }
        let every_metric_resolved =
            raw.counters.len() + raw.gauges.len() + raw.histograms.len() == metrics.len();
        if maps.is_empty() && every_metric_resolved {
            self.error(
                pin.referenced,
                "pin",
                "no metric of this config reads a map to pin (global variables live in the program's \
                 .bss/.data, made anew with each load; event streams are counted by the exporter): \
                 remove `pin`",
            );
        }
        maps
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::{assert_error, source, SYSCALLS};
    use crate::config::{parse, EMBEDDED_CONFIGS};
    use libbpf_rs::MapType;

    fn pin_maps(name: &str, text: &str) -> Vec<(String, MapType, u32, u32, u32)> {
        let config = parse(&source(name, text), "ebpf_").unwrap_or_else(|e| panic!("{e}"));
        config
            .pin_maps
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    m.map_type,
                    m.key_size,
                    m.value_size,
                    m.max_entries,
                )
            })
            .collect()
    }

    #[test]
    fn pin_true_pins_the_maps_the_metrics_read_as_the_object_declares_them() {
        let pinned = pin_maps("syscalls", &format!("pin: true\n{SYSCALLS}"));
        assert_eq!(
            pinned,
            [("syscalls_total".to_string(), MapType::Hash, 8, 8, 1024)]
        );
        for unpinned in [SYSCALLS.to_string(), format!("pin: false\n{SYSCALLS}")] {
            assert!(pin_maps("syscalls", &unpinned).is_empty(), "{unpinned}");
        }
    }

    /// syscall_latency keeps each thread's syscall start time in a map of
    /// its own: program state, which a new load starts without.
    #[test]
    fn a_program_s_other_maps_are_not_pinned() {
        let text = EMBEDDED_CONFIGS
            .iter()
            .find(|c| c.name == "syscall_latency")
            .unwrap()
            .text;
        let pinned = pin_maps("syscall_latency", &format!("pin: true\n{text}"));
        let names: Vec<&str> = pinned.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(names, ["syscall_latency_seconds"]);
    }

    #[test]
    fn a_config_name_bpffs_refuses_is_refused_at_pin() {
        assert_error(
            "my.syscalls",
            &format!("program: syscalls\npin: true\n{SYSCALLS}"),
            "configs/my.syscalls.yaml:2:6: pin:",
            "the config's name \"my.syscalls\" cannot name its directory in bpffs, which refuses names \
             with a `.`",
        );
    }

    #[test]
    fn pin_without_a_map_to_pin_is_refused() {
        // The test program's global variable, read as a gauge.
        let globals = "program: truth\npin: true\nmetrics:\n  gauges:\n    - name: truth_last_value\n      help: Last.\n";
        assert_error(
            "globals",
            globals,
            "configs/globals.yaml:2:6: pin:",
            "no metric of this config reads a map to pin",
        );
    }

    #[test]
    fn pin_is_a_boolean_and_not_for_a_config_of_pinned_maps() {
        assert_error(
            "syscalls",
            &format!("pin: sometimes\n{SYSCALLS}"),
            "configs/syscalls.yaml:1:6: pin:",
            "invalid boolean",
        );
        let pinned = "pin: true\npinned:\n  x_total: /sys/fs/bpf/x\nmetrics:\n  counters:\n    - name: x_total\n      help: X.\n";
        assert_error(
            "x",
            pinned,
            "configs/x.yaml:1:6: pin:",
            "a config of pinned maps runs no program and makes no map to pin: remove `pin`",
        );
    }
}
