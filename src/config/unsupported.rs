//! ebpf_exporter's config keys this exporter does not run, refused by name
//! with what to do instead: a config that loads must mean what its author
//! meant, so nothing is ignored quietly.
//!
//! `tracing` (ring-buffer events as OpenTelemetry spans) is refused for
//! good: this is a metrics exporter, and spans need a trace pipeline
//! (OTLP, a collector) that a host or DaemonSet exporter should not carry;
//! such a config keeps running on ebpf_exporter.

use super::raw::RawConfig;
use super::validate::Validator;

impl Validator<'_> {
    pub(super) fn unsupported(&mut self, raw: &RawConfig) {
        if let Some(tracing) = &raw.tracing {
            self.error(
                tracing.referenced,
                "tracing",
                "ebpf_exporter's tracing (ring-buffer events exported as OpenTelemetry spans) is not supported: \
                 this exporter exports metrics only; keep this config on ebpf_exporter, or remove `tracing:` \
                 to export its metrics here",
            );
        }
        for (i, counter) in raw.metrics.value.counters.iter().enumerate() {
            let c = &counter.value;
            let events = c.perf_event_array.as_ref().is_some_and(|p| p.value);
            if let Some(flush) = c.flush_interval.as_ref().filter(|_| !events) {
                self.error(
                    flush.referenced,
                    &format!("metrics.counters[{i}].flush_interval"),
                    "flush_interval is for event counters: add `perf_event_array: true`, or remove it",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::{errors, source, HISTOGRAM, SYSCALLS};

    /// ebpf_exporter's keys that run here, each used once (`kaddrs`, which
    /// needs an object with `kaddr_` constants, is in the integration
    /// tests of run-time objects).
    #[test]
    fn ebpf_exporter_keys_that_run_here_parse() {
        let counters = SYSCALLS.replace(
            "            - name: syscall\n",
            "            - name: static_map\n              static_map: {\"0\": read}\n              \
             allow_unknown: true\n            - name: regexp\n              regexps: [\"^read$\", \"^write$\"]\n",
        );
        for text in [counters, HISTOGRAM.to_string()] {
            crate::config::parse(&source("syscalls", &text), "ebpf_")
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
        for key in ["bucket_type", "bucket_min", "bucket_max", "bucket_multiplier"] {
            assert!(HISTOGRAM.contains(key), "{key}");
        }
    }

    /// The keys of ebpf_exporter's config schema that do not run here, or
    /// not as given: refused by name, at their place.
    #[test]
    fn ebpf_exporter_keys_not_run_here_are_refused_by_name() {
        let cases = [
            (
                format!("{SYSCALLS}tracing:\n  spans:\n    - ringbuf: events\n"),
                "tracing: ebpf_exporter's tracing",
            ),
            (
                format!("{SYSCALLS}cgroup_id_map:\n  name: cgroups\n  type: hash\n  regexps: [x]\n"),
                "cgroup_id_map.name: the program has no map \"cgroups\"",
            ),
            (
                SYSCALLS.replace(
                    "      help:",
                    "      perf_event_array: true\n      flush_interval: 1m\n      help:",
                ),
                "metrics.counters[0].perf_event_array: map \"syscalls_total\" is a Hash map; perf_event_array counters read a PERF_EVENT_ARRAY map",
            ),
            (
                SYSCALLS.replace("      help:", "      flush_interval: 1m\n      help:"),
                "metrics.counters[0].flush_interval: flush_interval is for event counters",
            ),
        ];
        for (text, needle) in cases {
            let errors = errors("syscalls", &text);
            assert!(errors.iter().any(|e| e.contains(needle)), "{needle}: {errors:?}");
        }
    }
}
