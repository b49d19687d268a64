//! Dropping, at start, every capability the exporter does not need.
//!
//! Capabilities belong to threads and a new thread starts with its
//! creator's, so the drop happens before the first thread exists; done
//! later, the runtime's and the reader's threads would keep everything.
//! Hot reload still loads and attaches programs, so CAP_BPF and
//! CAP_PERFMON always stay; the others stay only when a config selected at
//! start needs them (or `--capabilities.keep` asks, for configs that will
//! come later). A config that needs a dropped capability then fails alone,
//! and its error says which capability and how to keep it.
//!
//! What the host asks for is found by trying rather than guessing: whether
//! tracefs opens without CAP_DAC_READ_SEARCH, whether kallsyms shows
//! addresses without CAP_SYSLOG. Root owns tracefs, so root keeps neither.

use std::str::FromStr;
use std::sync::OnceLock;

use caps::{CapSet, Capability, CapsHashSet};
use serde::Serialize;

use crate::config::{AttachSpec, Config, Listing};
use crate::programs::fs;
use crate::settings::Settings;

/// What the exporter kept and dropped at start, and why: logged, shown on
/// `/` and in `/-/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Privileges {
    pub kept: Vec<Need>,
    /// Needed by a config at start but not held: those configs will fail.
    pub missing: Vec<Need>,
    /// Held at start and given up for good.
    pub dropped: Vec<String>,
}

/// A capability and what it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Need {
    pub capability: String,
    pub reason: String,
}

/// Set once, before any thread starts, and never changed: capabilities are
/// the process's, so this is the one place that says what it holds.
static AT_START: OnceLock<Privileges> = OnceLock::new();

/// What the start-up kept and dropped; `None` when it did not drop
/// (`--config.check`, library use).
pub fn at_start() -> Option<&'static Privileges> {
    AT_START.get()
}

/// Whether the exporter held `cap` at start and dropped it.
pub fn dropped_at_start(cap: Capability) -> bool {
    at_start().is_some_and(|p| p.dropped.contains(&cap.to_string()))
}

/// One value of `--capabilities.keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepItem {
    /// Drop nothing.
    All,
    /// Keep only what the configs need: the default (ebpf_exporter's
    /// `none`, which dropped everything, would leave a reload unable to
    /// load programs).
    None,
    Capability(Capability),
}

impl FromStr for KeepItem {
    type Err = String;

    /// `all`, or a capability as `CAP_NET_ADMIN` or `net_admin`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(KeepItem::All);
        }
        if s.eq_ignore_ascii_case("none") {
            return Ok(KeepItem::None);
        }
        Capability::from_str(&caps::to_canonical(s.trim()))
            .map(KeepItem::Capability)
            .map_err(|_| {
                format!("unknown capability {s:?}: name one such as CAP_NET_ADMIN (or net_admin), or all, or none")
            })
    }
}

/// What the host asks for beyond CAP_BPF and CAP_PERFMON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Host {
    /// The kernel predates CAP_BPF (Linux 5.8): BPF needs CAP_SYS_ADMIN.
    pub without_cap_bpf: bool,
    /// A tracepoint's id in tracefs cannot be read without CAP_DAC_READ_SEARCH.
    pub tracefs_closed: bool,
    /// kallsyms hides addresses without CAP_SYSLOG (and shows them with it).
    pub kallsyms_needs_syslog: bool,
}

impl Host {
    /// Tries what `configs` will do. Mounts tracefs when a tracepoint
    /// config needs it and it is not mounted, while the exporter may still
    /// mount (a reload could not).
    pub fn probe(configs: &[Config]) -> Host {
        let tracepoint = configs
            .iter()
            .flat_map(|c| &c.sections)
            .find(|s| fs::needs_tracefs(s));
        let tracefs_closed = tracepoint.is_some_and(|section| {
            let Ok(root) = fs::ensure_tracefs() else {
                // Attaching will say why; no capability kept here helps.
                return false;
            };
            let id = fs::tracepoint_id_path(root, section);
            let readable =
                || !matches!(std::fs::read(&id), Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied);
            readable()
                && !without(
                    &[Capability::CAP_DAC_READ_SEARCH, Capability::CAP_DAC_OVERRIDE],
                    readable,
                )
        });
        let kallsyms_needs_syslog = configs.iter().any(uses_kallsyms) && {
            let shows = || crate::decoders::kallsyms_shows_addresses();
            shows() && !without(&[Capability::CAP_SYSLOG], shows)
        };
        Host {
            without_cap_bpf: !caps::runtime::thread_all_supported().contains(&Capability::CAP_BPF),
            tracefs_closed,
            kallsyms_needs_syslog,
        }
    }
}

/// The answer of `probe` with `caps` out of this thread's effective set
/// (put back after).
fn without(caps: &[Capability], probe: impl Fn() -> bool) -> bool {
    let Ok(effective) = caps::read(None, CapSet::Effective) else {
        return probe();
    };
    for cap in caps {
        let _ = caps::drop(None, CapSet::Effective, *cap);
    }
    let answer = probe();
    if let Err(e) = caps::set(None, CapSet::Effective, &effective) {
        tracing::warn!("cannot restore effective capabilities after a probe: {e}");
    }
    answer
}

fn uses_kallsyms(config: &Config) -> bool {
    !config.kaddrs.is_empty()
        || config
            .metrics
            .iter()
            .flat_map(|m| &m.labels)
            .flat_map(|l| &l.decoders)
            .any(|d| matches!(d.name, "ksym" | "kstack"))
}

/// A uprobe on one process (or inside another's root) is a perf event on
/// that process: the kernel asks for ptrace access, which a process of
/// another user grants only with CAP_SYS_PTRACE.
fn probes_other_processes(config: &Config) -> bool {
    config.attach.iter().any(|a| {
        matches!(a, AttachSpec::Uprobe { pid, binary, .. } if pid.is_some() || binary.starts_with("/proc/"))
    })
}

/// What `configs` on `host` need, each capability once with what for, in
/// the order to report them. `port` is the TCP port to bind, if any.
/// `extra` is what flags ask for, with why.
pub fn plan(configs: &[Config], host: &Host, port: Option<u16>, extra: &[(Capability, String)]) -> Vec<Need> {
    let mut needs: Vec<(Capability, String)> = vec![
        (
            Capability::CAP_BPF,
            "loading programs and reading their maps".to_string(),
        ),
        (
            Capability::CAP_PERFMON,
            "attaching tracing programs (tracepoints, uprobes, perf events)".to_string(),
        ),
    ];
    if host.without_cap_bpf {
        needs.push((
            Capability::CAP_SYS_ADMIN,
            "this kernel predates CAP_BPF (Linux 5.8): BPF needs CAP_SYS_ADMIN".to_string(),
        ));
    }
    let named = |pred: &dyn Fn(&Config) -> bool| -> Option<String> {
        let names: Vec<&str> = configs
            .iter()
            .filter(|c| pred(c))
            .map(|c| c.name.as_str())
            .collect();
        (!names.is_empty()).then(|| names.join(", "))
    };
    let network = |c: &Config| {
        c.attach.iter().any(|a| matches!(a, AttachSpec::Xdp { .. }))
            || c.sections
                .iter()
                .any(|s| super::needed_for(s).contains(&Capability::CAP_NET_ADMIN))
    };
    if let Some(names) = named(&network) {
        needs.push((
            Capability::CAP_NET_ADMIN,
            format!("attaching network programs (XDP, tc, cgroup sockets): {names}"),
        ));
    }
    if host.tracefs_closed {
        if let Some(names) = named(&|c| c.sections.iter().any(|s| fs::needs_tracefs(s))) {
            needs.push((
                Capability::CAP_DAC_READ_SEARCH,
                format!("reading tracepoint ids in tracefs, which only root may read: {names}"),
            ));
        }
    }
    if host.kallsyms_needs_syslog {
        if let Some(names) = named(&uses_kallsyms) {
            needs.push((
                Capability::CAP_SYSLOG,
                format!("kernel symbols in /proc/kallsyms (ksym and kstack labels, kaddrs): {names}"),
            ));
        }
    }
    if let Some(names) = named(&|c| c.sections.iter().any(|s| super::is_uprobe(s))) {
        needs.push((
            Capability::CAP_SYS_ADMIN,
            format!(
                "uprobes and USDT probes, whose perf events the kernel opens for CAP_SYS_ADMIN only: {names}"
            ),
        ));
    }
    if let Some(names) = named(&probes_other_processes) {
        needs.push((
            Capability::CAP_SYS_PTRACE,
            format!("uprobes on one process or in its /proc/PID/root: {names}"),
        ));
    }
    if let Some(port) = port.filter(|p| *p < 1024) {
        needs.push((
            Capability::CAP_NET_BIND_SERVICE,
            format!("listening on port {port}, below 1024"),
        ));
    }
    needs.extend(extra.iter().cloned());
    let mut out: Vec<Need> = Vec::new();
    for (cap, reason) in needs {
        let capability = cap.to_string();
        if !out.iter().any(|n| n.capability == capability) {
            out.push(Need { capability, reason });
        }
    }
    out
}

/// The start-up's drop: what the configs of `listing` need on this host,
/// and what `--capabilities.keep` adds.
pub fn drop_unneeded(settings: &Settings, listing: &Listing) -> anyhow::Result<&'static Privileges> {
    // A config that does not parse needs nothing: loading it says why.
    let configs: Vec<Config> = listing
        .sources
        .iter()
        .filter_map(|s| crate::config::parse(s, &settings.load.prefix).ok())
        .collect();
    let host = Host::probe(&configs);
    let mut extra: Vec<(Capability, String)> = settings
        .capabilities_keep
        .iter()
        .filter_map(|k| match k {
            KeepItem::Capability(c) => Some((*c, "--capabilities.keep".to_string())),
            KeepItem::All | KeepItem::None => None,
        })
        .collect();
    if settings.host_bpf {
        extra.push((
            Capability::CAP_SYS_ADMIN,
            "--collector.host-bpf: listing every BPF program and map by id".to_string(),
        ));
    }
    let needs = plan(&configs, &host, crate::server::port(&settings.server), &extra);
    keep_only(needs, settings.capabilities_keep.contains(&KeepItem::All))
}

/// Keeps what `needs` names (everything under `keep_all`) and drops the
/// rest from every set for good, then records and logs the outcome. Must
/// run before any other thread starts.
fn keep_only(needs: Vec<Need>, keep_all: bool) -> anyhow::Result<&'static Privileges> {
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, Iterator::count);
    anyhow::ensure!(
        threads == 1,
        "capabilities must be dropped before any thread starts ({threads} threads run)"
    );
    let permitted = caps::read(None, CapSet::Permitted).unwrap_or_default();
    let held = |n: &Need| Capability::from_str(&n.capability).is_ok_and(|c| permitted.contains(&c));
    let (mut kept, missing): (Vec<Need>, Vec<Need>) = needs.into_iter().partition(held);
    let mut rest: Vec<Capability> = permitted
        .iter()
        .copied()
        .filter(|c| !kept.iter().any(|n| n.capability == c.to_string()))
        .collect();
    rest.sort_by_key(Capability::index);
    let dropped = if keep_all {
        kept.extend(rest.iter().map(|c| Need {
            capability: c.to_string(),
            reason: "--capabilities.keep=all".to_string(),
        }));
        Vec::new()
    } else {
        let keep: CapsHashSet = kept
            .iter()
            .filter_map(|n| Capability::from_str(&n.capability).ok())
            .collect();
        drop_all_but(&keep).map_err(|e| {
            anyhow::anyhow!(
                "cannot drop the capabilities the exporter does not need: {e}; \
                 start it with --capabilities.keep=all to run with all it holds"
            )
        })?;
        rest.iter().map(ToString::to_string).collect()
    };
    let privileges = AT_START.get_or_init(|| Privileges {
        kept,
        missing,
        dropped,
    });
    privileges.log();
    Ok(privileges)
}

/// Leaves this thread `keep` (as far as it holds it) in the permitted and
/// effective sets, nothing inheritable or ambient, and nothing else in the
/// bounding set, with no way to gain more (no_new_privs).
fn drop_all_but(keep: &CapsHashSet) -> Result<(), caps::errors::CapsError> {
    // Only while CAP_SETPCAP is still held.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)? {
        for cap in caps::read(None, CapSet::Bounding)? {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    let permitted = caps::read(None, CapSet::Permitted)?;
    let kept: CapsHashSet = permitted.intersection(keep).copied().collect();
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        tracing::warn!("cannot set no_new_privs: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

impl Privileges {
    fn log(&self) {
        for n in &self.kept {
            tracing::info!(capability = %n.capability, reason = %n.reason, "capability kept");
        }
        for n in &self.missing {
            tracing::warn!(
                capability = %n.capability,
                reason = %n.reason,
                "capability needed but not held: grant it (systemd: AmbientCapabilities=; \
                 Kubernetes: securityContext.capabilities.add), or what needs it fails"
            );
        }
        if !self.dropped.is_empty() {
            tracing::info!(
                dropped = %self.dropped.join(","),
                "capabilities dropped: keep one for configs added later with --capabilities.keep"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, EMBEDDED_CONFIGS};

    fn embedded(name: &str) -> Config {
        let e = EMBEDDED_CONFIGS
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no embedded config {name}"));
        parse(&crate::config::validate::testing::source(e.name, e.text), "ebpf_").unwrap()
    }

    fn caps(needs: &[Need]) -> Vec<&str> {
        needs.iter().map(|n| n.capability.as_str()).collect()
    }

    #[test]
    fn tracing_configs_keep_bpf_and_perfmon_only_when_the_host_asks_nothing_more() {
        let configs = [embedded("syscalls"), embedded("timers")];
        let needs = plan(&configs, &Host::default(), Some(9435), &[]);
        assert_eq!(caps(&needs), ["CAP_BPF", "CAP_PERFMON"]);
    }

    #[test]
    fn each_further_capability_names_the_configs_that_need_it() {
        let configs = [embedded("syscalls"), embedded("timers"), embedded("xdp_packets")];
        let host = Host {
            without_cap_bpf: true,
            tracefs_closed: true,
            kallsyms_needs_syslog: true,
        };
        let keep = |c| (c, "--capabilities.keep".to_string());
        let needs = plan(
            &configs,
            &host,
            Some(80),
            &[keep(Capability::CAP_BPF), keep(Capability::CAP_KILL)],
        );
        assert_eq!(
            caps(&needs),
            [
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_SYS_ADMIN",
                "CAP_NET_ADMIN",
                "CAP_DAC_READ_SEARCH",
                "CAP_SYSLOG",
                "CAP_NET_BIND_SERVICE",
                "CAP_KILL"
            ]
        );
        let reason = |cap: &str| &needs.iter().find(|n| n.capability == cap).unwrap().reason;
        assert!(reason("CAP_NET_ADMIN").ends_with(": xdp_packets"));
        assert!(reason("CAP_DAC_READ_SEARCH").ends_with(": syscalls, timers"));
        assert!(reason("CAP_SYSLOG").ends_with(": timers"));
        assert_eq!(reason("CAP_KILL"), "--capabilities.keep");
    }

    /// Used to: a config of uprobes kept CAP_PERFMON only, which the
    /// kernel no longer takes for uprobes, so each one failed with EACCES.
    #[test]
    fn uprobe_configs_keep_sys_admin() {
        let text = "metrics:\n  counters:\n    - name: truth_calls_total\n      help: Calls.\nattach:\n"
            .to_string()
            + &["observe", "gauge_set", "string_seen", "ip_seen"]
                .map(|p| format!("  - {{program: {p}, uprobe: {{binary: /usr/bin/truth, function: f}}}}\n"))
                .concat();
        let truth = parse(&crate::config::validate::testing::source("truth", &text), "ebpf_").unwrap();
        let needs = plan(&[embedded("syscalls"), truth], &Host::default(), None, &[]);
        assert_eq!(caps(&needs), ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"]);
        assert!(needs[2].reason.ends_with(": truth"), "{needs:?}");
    }

    #[test]
    fn keep_flag_takes_names_in_either_form_or_all() {
        assert_eq!("all".parse(), Ok(KeepItem::All));
        assert_eq!("none".parse(), Ok(KeepItem::None));
        assert_eq!(
            "cap_syslog".parse(),
            Ok(KeepItem::Capability(Capability::CAP_SYSLOG))
        );
        assert_eq!(
            "net_admin".parse(),
            Ok(KeepItem::Capability(Capability::CAP_NET_ADMIN))
        );
        assert_eq!(
            "CAP_SYSLOG".parse(),
            Ok(KeepItem::Capability(Capability::CAP_SYSLOG))
        );
        let err = "net_admn".parse::<KeepItem>().unwrap_err();
        assert!(err.contains("unknown capability \"net_admn\""), "{err}");
    }
}
