//! `cpu_budget`: the share of one CPU a config's programs may use, which
//! the fleet enforces ([`crate::programs::budget`]). Checked here; read
//! ahead of parsing too, since the start turns BPF statistics on for it
//! before it gives up the privilege that takes.

use serde_saphyr::Spanned;

use super::validate::Validator;
use super::Source;
use crate::programs::budget;

impl Validator<'_> {
    pub(super) fn cpu_budget(&mut self, raw: Option<&Spanned<f64>>) -> Option<f64> {
        let raw = raw?;
        match budget::check(raw.value) {
            Ok(share) => Some(share),
            Err(message) => {
                self.error(raw.referenced, "cpu_budget", message);
                None
            }
        }
    }
}

/// Whether `source` has a `cpu_budget:`, whatever else it says: read
/// without validating, so that asking costs no object read.
pub fn asks_for_cpu_budget(source: &Source) -> bool {
    #[derive(serde::Deserialize)]
    struct Keys {
        cpu_budget: Option<serde::de::IgnoredAny>,
    }
    serde_saphyr::from_str::<Keys>(&source.text).is_ok_and(|k| k.cpu_budget.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::config::validate::testing::{assert_error, source, SYSCALLS};

    #[test]
    fn a_budget_is_a_share_of_one_cpu_above_zero() {
        let config = parse(
            &source("syscalls", &format!("cpu_budget: 0.01\n{SYSCALLS}")),
            "ebpf_",
        )
        .unwrap();
        assert_eq!(config.cpu_budget, Some(0.01));
        assert_eq!(
            parse(&source("syscalls", SYSCALLS), "ebpf_").unwrap().cpu_budget,
            None
        );
        for bad in ["0", "-0.1", ".nan", ".inf"] {
            assert_error(
                "syscalls",
                &format!("{SYSCALLS}cpu_budget: {bad}\n"),
                "configs/syscalls.yaml:11:13: cpu_budget:",
                "is not a share of one CPU: give a number above 0",
            );
        }
        assert_error(
            "syscalls",
            &format!("{SYSCALLS}cpu_budget: 1%\n"),
            "configs/syscalls.yaml:11:13: cpu_budget:",
            "",
        );
    }

    #[test]
    fn a_config_of_pinned_maps_has_no_cpu_time_to_budget() {
        let text =
            "pinned:\n  drops_total: /sys/fs/bpf/fw/drops\ncpu_budget: 0.01\nmetrics:\n  counters:\n    \
                    - name: drops_total\n      help: Drops.\n";
        assert_error(
            "fw",
            text,
            "configs/fw.yaml:3:13: cpu_budget:",
            "a config of pinned maps runs no program, so there is no CPU time to budget",
        );
    }

    #[test]
    fn a_budget_is_seen_before_parsing_whatever_else_the_file_says() {
        let ask = |text: &str| asks_for_cpu_budget(&source("x", text));
        assert!(ask(
            "cpu_budget: 0.01\nmetrics: {counters: [{nonsense: 1}]}\nunknown: 3\n"
        ));
        assert!(ask("cpu_budget: lots\n"));
        assert!(!ask(SYSCALLS));
        // Not YAML at all: refused when parsed, budget or not.
        assert!(!ask("cpu_budget: [0.01\n"));
    }
}
