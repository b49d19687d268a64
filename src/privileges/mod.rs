//! The Linux capabilities the exporter's programs need, which it keeps
//! ([`keep`]), and what to tell an operator whose exporter lacks one: the
//! kernel only answers EPERM, which names neither the capability nor the
//! fix.

mod keep;

use caps::{CapSet, Capability};

pub use keep::{at_start, drop_unneeded, plan, Host, KeepItem, Need, Privileges};

/// What loading and attaching a program of `section` needs: CAP_BPF for
/// the program and its maps, and CAP_PERFMON for tracing (perf events,
/// tracing helpers), CAP_SYS_ADMIN for uprobes and USDT probes, or
/// CAP_NET_ADMIN for network hooks.
pub fn needed_for(section: &str) -> [Capability; 2] {
    if is_uprobe(section) {
        return [Capability::CAP_BPF, Capability::CAP_SYS_ADMIN];
    }
    let network = [
        "xdp",
        "tc",
        "tcx/",
        "classifier",
        "cgroup_skb/",
        "cgroup/skb",
        "cgroup/sock",
        "sk_",
        "netkit/",
    ]
    .iter()
    .any(|p| section == p.trim_end_matches('/') || section.starts_with(p));
    if network {
        [Capability::CAP_BPF, Capability::CAP_NET_ADMIN]
    } else {
        [Capability::CAP_BPF, Capability::CAP_PERFMON]
    }
}

/// Sections whose programs attach through a uprobe perf event, which the
/// kernel opens for CAP_SYS_ADMIN only: `perf_uprobe_event_init()` of
/// kernel/events/core.c, which took CAP_PERFMON from Linux 5.8 until a 2025
/// fix (backported to the stable kernels) asked for CAP_SYS_ADMIN again.
pub fn is_uprobe(section: &str) -> bool {
    let kind = section.split('/').next().unwrap_or_default();
    ["uprobe", "uprobe.s", "uretprobe", "uretprobe.s", "usdt", "usdt.s"].contains(&kind)
}

/// Whether this thread holds `cap` in its effective set; a set that
/// cannot be read counts as held, so the kernel's own answer stands.
pub fn holds(cap: Capability) -> bool {
    caps::has_cap(None, CapSet::Effective, cap).unwrap_or(true)
}

/// Why the kernel refused a program of `section` with EPERM, and the fix:
/// the capabilities it needs that the exporter lacks, or, when it holds
/// them all, what else refuses.
pub fn permission_hint(section: &str) -> String {
    let needed = needed_for(section);
    let missing: Vec<Capability> = needed.iter().copied().filter(|c| !holds(*c)).collect();
    if let Some(note) = dropped_note(&missing) {
        return note;
    }
    if missing.is_empty() {
        return format!(
            ": the exporter holds {} and was still refused: kernels before 5.8 also need CAP_SYS_ADMIN, \
             and a lockdown or LSM policy (/sys/kernel/security/lockdown, SELinux, AppArmor) may forbid BPF",
            names(&needed)
        );
    }
    format!(
        ": the exporter lacks {}: grant {} (systemd: AmbientCapabilities={} with CapabilityBoundingSet= \
         the same; Kubernetes: securityContext.capabilities.add), or run it as root",
        names(&missing),
        names(&needed),
        needed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Why a uprobe was refused: a uprobe on one process (`pid`, or a path in
/// its `/proc/PID/root`) also needs ptrace access to that process, which
/// another user's process grants only with CAP_SYS_PTRACE.
pub fn uprobe_hint(section: &str, one_process: bool) -> String {
    if !one_process || !needed_for(section).iter().all(|c| holds(*c)) {
        return permission_hint(section);
    }
    dropped_note(&[Capability::CAP_SYS_PTRACE]).unwrap_or_else(|| {
        ": a uprobe on one process needs ptrace access to it: run the exporter as that process's user, \
         or grant it CAP_SYS_PTRACE"
            .to_string()
    })
}

/// The hint for a tracefs that is mounted but closed to the exporter: on
/// current kernels it is root's alone (mode 0700, files 0440), and
/// tracepoint attachment reads each event's id from it.
pub fn tracefs_hint(path: &str) -> String {
    if let Some(note) = dropped_note(&[Capability::CAP_DAC_READ_SEARCH]) {
        return format!("tracefs at {path} is readable only by root{note}");
    }
    format!(
        "tracefs is mounted at {path} but readable only by root, and attaching a tracepoint reads its \
         event id there: grant the exporter CAP_DAC_READ_SEARCH (systemd: add it to AmbientCapabilities=), \
         or mount tracefs with a group the exporter is in (`mount -o remount,gid=GID,mode=0750 {path}`), \
         or run it as root"
    )
}

/// When the exporter held every one of `missing` but dropped it at start
/// (no config then needed it), the hint says so and how to keep it; a
/// grant would not help, the exporter already has it.
fn dropped_note(missing: &[Capability]) -> Option<String> {
    if missing.is_empty() || !missing.iter().all(|c| keep::dropped_at_start(*c)) {
        return None;
    }
    let list = missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Some(format!(
        ": the exporter dropped {} at start, since no config selected then needed it: restart it \
         (it keeps what the configs at start need), or start it with --capabilities.keep={list} \
         to keep it for configs added later",
        names(missing),
    ))
}

fn names(caps: &[Capability]) -> String {
    let names: Vec<String> = caps.iter().map(ToString::to_string).collect();
    match names.as_slice() {
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_needs_perfmon_and_network_hooks_net_admin() {
        for section in [
            "tracepoint/raw_syscalls/sys_enter",
            "tp_btf/sched_wakeup",
            "perf_event",
            "raw_tp/x",
        ] {
            assert_eq!(
                needed_for(section),
                [Capability::CAP_BPF, Capability::CAP_PERFMON],
                "{section}"
            );
        }
        for section in [
            "xdp",
            "tc",
            "tcx/ingress",
            "classifier",
            "cgroup_skb/egress",
            "cgroup/skb",
        ] {
            assert_eq!(
                needed_for(section),
                [Capability::CAP_BPF, Capability::CAP_NET_ADMIN],
                "{section}"
            );
        }
    }

    /// Used to: uprobes counted as tracing, so the exporter dropped
    /// CAP_SYS_ADMIN at start and every uprobe failed with EACCES.
    #[test]
    fn uprobes_and_usdt_probes_need_sys_admin() {
        for section in [
            "uprobe",
            "uretprobe.s",
            "uprobe//proc/self/exe:post_attach_mark",
            "usdt/python3:python:function__entry",
        ] {
            assert_eq!(
                needed_for(section),
                [Capability::CAP_BPF, Capability::CAP_SYS_ADMIN],
                "{section}"
            );
        }
        assert!(!is_uprobe("uprobe.multi/x") && !is_uprobe("kprobe/do_exit"));
    }

    #[test]
    fn capabilities_are_named_as_a_list() {
        assert_eq!(names(&[Capability::CAP_BPF]), "CAP_BPF");
        assert_eq!(
            names(&[
                Capability::CAP_BPF,
                Capability::CAP_PERFMON,
                Capability::CAP_SYSLOG
            ]),
            "CAP_BPF, CAP_PERFMON and CAP_SYSLOG"
        );
    }
}
