//! `attach:` entries → where programs whose `SEC()` alone does not say are
//! attached.
//!
//! An XDP program needs an interface, a uprobe a binary and a function, a
//! bare `SEC("perf_event")` program a perf event; without them loading
//! would fail far from the config. The entries are checked against the
//! object's programs here, and a program left without one is named with
//! an entry to copy.

use serde_saphyr::Spanned;

use super::raw::{RawAttach, RawPerfEvent, RawUprobe, RawXdp};
use super::validate::Validator;
use super::{AttachSpec, ConfigError, XdpMode};
use crate::programs::sections::PerfEvent;
use crate::programs::{self, Hook, ObjectInfo};

impl Validator<'_> {
    /// Every entry, checked, then every program that needs an entry and has
    /// none.
    pub(super) fn attach_entries(
        &mut self,
        entries: &[Spanned<RawAttach>],
        info: &ObjectInfo,
    ) -> Vec<AttachSpec> {
        let attach: Vec<AttachSpec> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.attach(&format!("attach[{i}]"), a, info))
            .collect();
        for prog in &info.programs {
            // An entry with errors of its own counts: those errors say what to fix.
            let listed = entries.iter().any(|a| a.value.program.value == prog.name);
            if programs::needs_attach_entry(&prog.section) && !listed {
                let example = match Hook::of_section(&prog.section) {
                    Some(Hook::Xdp) => "xdp: {interface: eth0}",
                    Some(Hook::PerfEvent) => "perf_event: {type: software, config: cpu-clock, frequency: 99}",
                    _ => "uprobe: {binary: /usr/bin/bash, function: readline}",
                };
                self.errors.push(ConfigError::file_level(
                    self.file,
                    format!(
                        "program {:?} (SEC \"{}\") needs an attach entry saying where to attach, such as \
                         `attach: [{{program: {}, {example}}}]`",
                        prog.name, prog.section, prog.name
                    ),
                ));
            }
        }
        attach
    }

    fn attach(&mut self, path: &str, attach: &Spanned<RawAttach>, info: &ObjectInfo) -> Option<AttachSpec> {
        let a = &attach.value;
        let before = self.errors.len();
        let program = info.programs.iter().find(|p| p.name == a.program.value);
        if program.is_none() {
            let known: Vec<&str> = info.programs.iter().map(|p| p.name.as_str()).collect();
            self.error(
                a.program.referenced,
                &format!("{path}.program"),
                format!(
                    "the object has no program {:?} (programs: {})",
                    a.program.value,
                    known.join(", ")
                ),
            );
        }
        let spec = match (&a.xdp, &a.uprobe, &a.perf_event) {
            (Some(xdp), None, None) => self.xdp(path, &a.program.value, xdp),
            (None, Some(uprobe), None) => self.uprobe(path, &a.program.value, uprobe),
            (None, None, Some(event)) => self.perf_event(path, &a.program.value, event),
            (None, None, None) => {
                self.error(
                    attach.referenced,
                    path,
                    "say how to attach: add `xdp: {interface: <name>}`, \
                     `uprobe: {binary: <absolute path>, function: <symbol>}` or \
                     `perf_event: {type: <type>, config: <event>, frequency: <per second>}`",
                );
                return None;
            }
            _ => {
                self.error(
                    attach.referenced,
                    path,
                    "give one of `xdp:`, `uprobe:` and `perf_event:` per entry; attach a program twice with \
                     two entries",
                );
                return None;
            }
        };
        if let (Some(program), Some(spec)) = (program, &spec) {
            let key = spec.key();
            if Hook::of_section(&program.section).map(Hook::key) != Some(key) {
                self.error(
                    attach.referenced,
                    &format!("{path}.{key}"),
                    format!(
                        "program {:?} is SEC \"{}\", which cannot attach as `{key}:`",
                        program.name, program.section
                    ),
                );
            }
        }
        spec.filter(|_| self.errors.len() == before)
    }

    fn xdp(&mut self, path: &str, program: &str, xdp: &Spanned<RawXdp>) -> Option<AttachSpec> {
        let before = self.errors.len();
        let interface = xdp.value.interface.value.clone();
        if interface.is_empty() || interface.len() >= 16 || interface.contains(['/', ' ']) {
            self.error(
                xdp.value.interface.referenced,
                &format!("{path}.xdp.interface"),
                format!("{interface:?} is not an interface name (at most 15 characters, no `/` or spaces)"),
            );
        }
        let mode = match &xdp.value.mode {
            None => XdpMode::Auto,
            Some(m) => XdpMode::parse(&m.value).unwrap_or_else(|| {
                self.error(
                    m.referenced,
                    &format!("{path}.xdp.mode"),
                    format!(
                        "unknown XDP mode {:?} (known: {})",
                        m.value,
                        XdpMode::NAMES.join(", ")
                    ),
                );
                XdpMode::Auto
            }),
        };
        (self.errors.len() == before).then(|| AttachSpec::Xdp {
            program: program.to_string(),
            interface,
            mode,
        })
    }

    fn uprobe(&mut self, path: &str, program: &str, uprobe: &Spanned<RawUprobe>) -> Option<AttachSpec> {
        let u = &uprobe.value;
        let before = self.errors.len();
        let binary = &u.binary.value;
        if !binary.starts_with('/') || binary.contains('\0') {
            self.error(
                u.binary.referenced,
                &format!("{path}.uprobe.binary"),
                format!(
                    "{binary:?} is not an absolute path: give the binary's full path, such as /usr/bin/bash"
                ),
            );
        }
        let function = &u.function.value;
        if function.trim().is_empty() || function.contains(['\0', ' ']) {
            self.error(
                u.function.referenced,
                &format!("{path}.uprobe.function"),
                format!("{function:?} is not a symbol name: give the function's name, such as `readline`"),
            );
        }
        let pid = u.pid.as_ref().and_then(|p| match i32::try_from(p.value) {
            Ok(pid) if pid > 0 => Some(pid),
            _ => {
                self.error(
                    p.referenced,
                    &format!("{path}.uprobe.pid"),
                    format!(
                        "pid {} is out of range (1 to {}); leave `pid:` out to probe every process",
                        p.value,
                        i32::MAX
                    ),
                );
                None
            }
        });
        (self.errors.len() == before).then(|| AttachSpec::Uprobe {
            program: program.to_string(),
            binary: binary.clone(),
            function: function.clone(),
            pid,
        })
    }

    fn perf_event(&mut self, path: &str, program: &str, event: &Spanned<RawPerfEvent>) -> Option<AttachSpec> {
        let e = &event.value;
        let kind = PerfEvent::kind(&e.kind.value)
            .map_err(|m| self.error(e.kind.referenced, &format!("{path}.perf_event.type"), m))
            .ok();
        // A config name means something only for a known type.
        let config = kind.and_then(|kind| {
            PerfEvent::config(kind, &e.config.value)
                .map_err(|m| self.error(e.config.referenced, &format!("{path}.perf_event.config"), m))
                .ok()
        });
        let value = |s: &Option<Spanned<u64>>| s.as_ref().map(|s| s.value);
        let sample = PerfEvent::sample(value(&e.frequency), value(&e.period))
            .map_err(|m| {
                // At the value at fault, else at the entry (neither given).
                let at = match (&e.frequency, &e.period) {
                    (Some(f), _) if f.value == 0 => Some(("frequency", f)),
                    (f, Some(p)) if p.value == 0 || f.is_some() => Some(("period", p)),
                    _ => None,
                };
                match at {
                    Some((key, s)) => self.error(s.referenced, &format!("{path}.perf_event.{key}"), m),
                    None => self.error(event.referenced, &format!("{path}.perf_event"), m),
                }
            })
            .ok();
        Some(AttachSpec::PerfEvent {
            program: program.to_string(),
            event: PerfEvent {
                kind: kind?,
                config: config?,
                sample: sample?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::{assert_error, errors, source};
    use crate::config::{parse, AttachSpec, Config};
    use crate::programs::sections::{PerfEvent, Sample};

    #[test]
    fn xdp_program_needs_an_attach_entry_and_a_known_mode() {
        let counters = "metrics:\n  counters:\n    - name: xdp_packets_total\n      help: Packets.\n";
        assert_error(
            "xdp_packets",
            counters,
            "configs/xdp_packets.yaml: ",
            "needs an attach entry",
        );
        let bad_mode = format!("{counters}attach:\n  - program: count_packets\n    xdp:\n      interface: lo\n      mode: turbo\n");
        assert_error(
            "xdp_packets",
            &bad_mode,
            "configs/xdp_packets.yaml:9:13: attach[0].xdp.mode:",
            "unknown XDP mode \"turbo\"",
        );
        let bad_prog = format!("{counters}attach:\n  - program: count\n    xdp:\n      interface: lo\n");
        assert_error(
            "xdp_packets",
            &bad_prog,
            "configs/xdp_packets.yaml:6:14: attach[0].program:",
            "no program \"count\" (programs: count_packets)",
        );
    }

    const TRUTH: &str = "metrics:
  counters:
    - name: truth_calls_total
      help: Calls.
attach:
  - program: observe
    uprobe:
      binary: /usr/bin/truth
      function: truth_observe
      pid: 42
  - program: gauge_set
    uprobe:
      binary: /usr/bin/truth
      function: truth_gauge_set
  - program: string_seen
    uprobe:
      binary: /usr/bin/truth
      function: truth_string
  - program: ip_seen
    uprobe:
      binary: /usr/bin/truth
      function: truth_ip
";

    #[test]
    fn uprobe_attach_entries_resolve_with_and_without_pid() {
        let config = parse(&source("truth", TRUTH), "ebpf_").unwrap();
        assert_eq!(
            config.attach,
            [
                AttachSpec::Uprobe {
                    program: "observe".into(),
                    binary: "/usr/bin/truth".into(),
                    function: "truth_observe".into(),
                    pid: Some(42),
                },
                AttachSpec::Uprobe {
                    program: "gauge_set".into(),
                    binary: "/usr/bin/truth".into(),
                    function: "truth_gauge_set".into(),
                    pid: None,
                },
                AttachSpec::Uprobe {
                    program: "string_seen".into(),
                    binary: "/usr/bin/truth".into(),
                    function: "truth_string".into(),
                    pid: None,
                },
                AttachSpec::Uprobe {
                    program: "ip_seen".into(),
                    binary: "/usr/bin/truth".into(),
                    function: "truth_ip".into(),
                    pid: None,
                },
            ]
        );
    }

    #[test]
    fn uprobe_program_needs_an_attach_entry() {
        let text = TRUTH.split("  - program: gauge_set").next().unwrap();
        assert_error(
            "truth",
            text,
            "configs/truth.yaml: ",
            "program \"gauge_set\" (SEC \"uprobe\") needs an attach entry saying where to attach, such as \
             `attach: [{program: gauge_set, uprobe: {binary: ",
        );
    }

    #[test]
    fn uprobe_binary_function_and_pid_are_checked_in_place() {
        assert_error(
            "truth",
            &TRUTH.replacen("binary: /usr/bin/truth", "binary: bin/truth", 1),
            "configs/truth.yaml:8:15: attach[0].uprobe.binary:",
            "\"bin/truth\" is not an absolute path",
        );
        assert_error(
            "truth",
            &TRUTH.replace("function: truth_gauge_set", "function: \"\""),
            "configs/truth.yaml:14:17: attach[1].uprobe.function:",
            "\"\" is not a symbol name",
        );
        // The entry is there, only wrong: no "needs an attach entry" on top.
        let errors = errors("truth", &TRUTH.replace("pid: 42", "pid: 0"));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        for pid in ["0", "-3", "4294967296"] {
            assert_error(
                "truth",
                &TRUTH.replace("pid: 42", &format!("pid: {pid}")),
                "configs/truth.yaml:10:12: attach[0].uprobe.pid:",
                &format!("pid {pid} is out of range (1 to 2147483647)"),
            );
        }
        assert_error(
            "truth",
            &TRUTH.replace("pid: 42", "pid: 42\n      offset: 4"),
            "configs/truth.yaml:11:7: attach[0].uprobe.offset:",
            "unknown field `offset`",
        );
        assert_error(
            "truth",
            &TRUTH.replace("      function: truth_observe\n", ""),
            "configs/truth.yaml:9:7: attach[0].uprobe:",
            "missing field `function`",
        );
    }

    const PERF_EVENT: &str = "metrics:
  counters:
    - name: cpu_samples_total
      help: Samples.
attach:
  - program: on_sample
    perf_event:
      type: 1
      config: 0
      frequency: 99
";

    #[test]
    fn perf_event_entries_take_numbers_or_perf_names() {
        let event = |config: &Config| match &config.attach[..] {
            [AttachSpec::PerfEvent { program, event }] if program == "on_sample" => *event,
            other => panic!("{other:?}"),
        };
        let config = parse(&source("perf_event_entry", PERF_EVENT), "ebpf_").unwrap();
        let cpu_clock = PerfEvent {
            kind: 1,
            config: 0,
            sample: Sample::Frequency(99),
        };
        assert_eq!(event(&config), cpu_clock);
        let named = PERF_EVENT
            .replace("type: 1", "type: software")
            .replace("config: 0", "config: cpu-clock");
        let config = parse(&source("perf_event_entry", &named), "ebpf_").unwrap();
        assert_eq!(event(&config), cpu_clock);
        let hardware = PERF_EVENT
            .replace("type: 1", "type: hardware")
            .replace("config: 0", "config: instructions")
            .replace("frequency: 99", "period: 100000");
        let config = parse(&source("perf_event_entry", &hardware), "ebpf_").unwrap();
        assert_eq!(
            event(&config),
            PerfEvent {
                kind: 0,
                config: 1,
                sample: Sample::Period(100000)
            }
        );
    }

    #[test]
    fn perf_event_program_needs_an_entry_with_an_example() {
        let text = PERF_EVENT.split("attach:").next().unwrap();
        assert_error(
            "perf_event_entry",
            text,
            "configs/perf_event_entry.yaml: ",
            "program \"on_sample\" (SEC \"perf_event\") needs an attach entry saying where to attach, such as \
             `attach: [{program: on_sample, perf_event: {type: software, config: cpu-clock, frequency: 99}}]`",
        );
    }

    #[test]
    fn perf_event_entry_errors_are_located_at_the_value_at_fault() {
        for (from, to, place, says) in [
            (
                "type: 1",
                "type: softwear",
                "8:13: attach[0].perf_event.type:",
                "unknown perf event type \"softwear\" (a number, or one of: hardware, software,",
            ),
            (
                "type: 1",
                "type: 4294967296",
                "8:13: attach[0].perf_event.type:",
                "type 4294967296 is too big",
            ),
            (
                "config: 0",
                "config: cpu-clok",
                "9:15: attach[0].perf_event.config:",
                "unknown software event \"cpu-clok\" (known: cpu-clock, task-clock,",
            ),
            (
                "frequency: 99",
                "frequency: 0",
                "10:18: attach[0].perf_event.frequency:",
                "frequency 0 would never sample",
            ),
            (
                "frequency: 99",
                "frequency: 99\n      period: 1000",
                "11:15: attach[0].perf_event.period:",
                "give one of frequency and period, not both",
            ),
            (
                "      frequency: 99\n",
                "",
                "8:7: attach[0].perf_event:",
                "frequency (or period) is missing",
            ),
            (
                "config: 0",
                "config: 0\n      pid: 3",
                "10:7: attach[0].perf_event.pid:",
                "unknown field `pid`",
            ),
        ] {
            assert_error(
                "perf_event_entry",
                &PERF_EVENT.replace(from, to),
                &format!("configs/perf_event_entry.yaml:{place}"),
                says,
            );
        }
        // A config name is read for a known type only, so a bad type is
        // the one error.
        let errors = errors(
            "perf_event_entry",
            &PERF_EVENT
                .replace("type: 1", "type: nope")
                .replace("config: 0", "config: nope"),
        );
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_error(
            "perf_event_entry",
            &PERF_EVENT
                .replace("type: 1", "type: 2")
                .replace("config: 0", "config: cpu-clock"),
            "configs/perf_event_entry.yaml:9:15: attach[0].perf_event.config:",
            "config \"cpu-clock\" is not a number (names are known for types hardware and software only)",
        );
        // The entry must match the section.
        assert_error(
            "truth",
            &TRUTH.replace(
                "    uprobe:\n      binary: /usr/bin/truth\n      function: truth_observe\n      pid: 42\n",
                "    perf_event: {type: 1, config: 0, frequency: 9}\n",
            ),
            "configs/truth.yaml:6:5: attach[0].perf_event:",
            "program \"observe\" is SEC \"uprobe\", which cannot attach as `perf_event:`",
        );
    }

    #[test]
    fn attach_entry_takes_exactly_one_hook_matching_the_section() {
        assert_error(
            "truth",
            &TRUTH.replace(
                "  - program: observe\n",
                "  - program: observe\n    xdp: {interface: lo}\n",
            ),
            "configs/truth.yaml:6:5: attach[0]:",
            "give one of `xdp:`, `uprobe:` and `perf_event:` per entry",
        );
        assert_error(
            "truth",
            &TRUTH.replace(
                "  - program: observe\n    uprobe:\n      binary: /usr/bin/truth\n      function: truth_observe\n      pid: 42\n",
                "  - program: observe\n",
            ),
            "configs/truth.yaml:6:5: attach[0]:",
            "say how to attach: add `xdp: {interface: <name>}`, `uprobe: ",
        );
        let counters = "metrics:\n  counters:\n    - name: xdp_packets_total\n      help: Packets.\n";
        let uprobe_on_xdp = format!(
            "{counters}attach:\n  - program: count_packets\n    uprobe: {{binary: /bin/sh, function: main}}\n"
        );
        assert_error(
            "xdp_packets",
            &uprobe_on_xdp,
            "configs/xdp_packets.yaml:6:5: attach[0].uprobe:",
            "program \"count_packets\" is SEC \"xdp\", which cannot attach as `uprobe:`",
        );
    }
}
