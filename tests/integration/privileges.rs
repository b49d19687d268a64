//! The exporter as a non-root uid holding only the capabilities it is
//! granted (as systemd's AmbientCapabilities= grants them), started with
//! util-linux's `setpriv`: the default set attaches and counts exactly,
//! and what is missing is named with its fix. And the capabilities it
//! keeps of what it was given: what its configs need, on every thread.
//!
//! On this kernel tracefs is root's alone (mode 0700, event ids 0440), and
//! attaching a `tracepoint/` program reads its event id there; libbpf has
//! no other way to learn it. So the default set needs CAP_DAC_READ_SEARCH
//! beside CAP_BPF and CAP_PERFMON, unless tracefs is mounted readable by
//! the exporter's group, which a test cannot do without changing the
//! host's tracefs for everyone.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary::{answers_ok, embedded, Exporter, BIN};
use crate::common::bpf_available;

/// Capability numbers (linux/capability.h).
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Every thread of `pid` holds exactly `caps` as effective, permitted and
/// bounding sets, nothing inheritable or ambient, and cannot gain more.
fn assert_holds_exactly(pid: u32, caps: &[u32]) {
    let want = format!("{:016x}", caps.iter().fold(0u64, |m, c| m | 1 << c));
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().collect();
    assert!(tasks.len() > 1, "the exporter runs threads");
    for task in tasks {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {name} in {status}"))
                .to_string()
        };
        for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(field(set), want, "{set}\n{status}");
        }
        for set in ["CapInh:", "CapAmb:"] {
            assert_eq!(field(set), "0000000000000000", "{set}\n{status}");
        }
        assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    }
}

/// `/-/status`'s capabilities: each kept one with why, and the dropped.
fn kept_and_dropped(exporter: &Exporter) -> (Vec<(String, String)>, Vec<String>) {
    let status: serde_json::Value = serde_json::from_str(&exporter.get("/-/status", "").2).unwrap();
    let caps = &status["capabilities"];
    let kept = caps["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["capability"].as_str().unwrap().to_string(),
                n["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dropped = caps["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (kept, dropped)
}

fn names(kept: &[(String, String)]) -> Vec<&str> {
    kept.iter().map(|(c, _)| c.as_str()).collect()
}

/// `nobody`: no file of the build tree is its own.
const UID: &str = "65534";

/// A copy of the binary that `nobody` may run (the build tree's folders
/// need not be open to it).
fn runnable_copy() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("bpf-exporter");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin.to_str().unwrap().to_string())
}

/// `setpriv` arguments: uid and gid `nobody`, no groups, and exactly
/// `caps` (such as `+bpf,+perfmon`) in every set, ambient included so
/// they survive the exec.
fn as_nobody(caps: &str) -> Vec<String> {
    let caps = format!("-all,{caps}");
    vec![
        "setpriv".into(),
        format!("--reuid={UID}"),
        format!("--regid={UID}"),
        "--clear-groups".into(),
        format!("--inh-caps={caps}"),
        format!("--ambient-caps={caps}"),
        format!("--bounding-set={caps}"),
    ]
}

/// `--config.check` of `names` as `nobody` with `caps`: exit success and
/// the report.
fn check_as_nobody(caps: &str, names: &str) -> (bool, String) {
    let (_dir, bin) = runnable_copy();
    let wrapper = as_nobody(caps);
    let out = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .args([bin.as_str(), "--config.check", "--config.names", names])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn unprivileged_exporter_attaches_and_counts_the_default_set_exactly() {
    if !bpf_available() {
        return;
    }
    let (_dir, bin) = runnable_copy();
    let wrapper = as_nobody("+bpf,+perfmon,+dac_read_search");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let exporter = Exporter::spawn_binary(&bin, &wrapper, &[], Stdio::inherit(), |port| {
        answers_ok(port, "/-/ready")
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", exporter.pid())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Uid:", UID, UID, UID, UID]),
        "{status}"
    );
    // Nothing granted is unneeded here: root-owned tracefs asks for
    // CAP_DAC_READ_SEARCH, and it is kept for that.
    assert_holds_exactly(exporter.pid(), &[CAP_DAC_READ_SEARCH, CAP_PERFMON, CAP_BPF]);
    let (kept, _) = kept_and_dropped(&exporter);
    assert_eq!(names(&kept), ["CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH"]);
    assert!(
        kept[2].1.contains("tracefs") && kept[2].1.contains("syscalls"),
        "{kept:?}"
    );

    exporter.assert_default_set_counts_exactly();
    exporter.stop();
}

/// Used to: the exporter kept every root capability for its whole life.
#[test]
fn a_root_exporter_keeps_only_cap_bpf_and_cap_perfmon_on_every_thread() {
    if !bpf_available() {
        return;
    }
    let exporter = Exporter::start(&[]);
    assert_holds_exactly(exporter.pid(), &[CAP_PERFMON, CAP_BPF]);
    let (kept, dropped) = kept_and_dropped(&exporter);
    assert_eq!(names(&kept), ["CAP_BPF", "CAP_PERFMON"]);
    for cap in [
        "CAP_SYS_ADMIN",
        "CAP_NET_ADMIN",
        "CAP_DAC_OVERRIDE",
        "CAP_SYSLOG",
        "CAP_SETPCAP",
    ] {
        assert!(dropped.iter().any(|d| d == cap), "{cap} not dropped: {dropped:?}");
    }
    let page = exporter.get("/", "").2;
    assert!(
        page.contains("<tr><td>CAP_BPF</td><td>loading programs and reading their maps</td></tr>"),
        "{page}"
    );
    assert!(page.contains("Dropped at start: CAP_CHOWN"), "{page}");
    exporter.assert_default_set_counts_exactly();
    exporter.stop();
}

#[test]
fn a_config_added_later_that_needs_a_dropped_capability_fails_alone_and_says_how_to_keep_it() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syscalls.yaml"), embedded("syscalls")).unwrap();
    let exporter = Exporter::watching(dir.path());
    assert_holds_exactly(exporter.pid(), &[CAP_PERFMON, CAP_BPF]);
    std::fs::write(dir.path().join("xdp_packets.yaml"), embedded("xdp_packets")).unwrap();
    let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    // A file event may have applied it first; either way it is reported.
    assert!(status == 500 || status == 200, "{status}: {body}");
    let xdp = exporter.config_status("xdp_packets");
    assert_eq!(xdp["state"], "failed", "{xdp}");
    let error = xdp.to_string();
    assert!(
        error.contains("the exporter dropped CAP_NET_ADMIN at start")
            && error.contains("--capabilities.keep=CAP_NET_ADMIN"),
        "{xdp}"
    );
    assert_eq!(exporter.config_status("syscalls")["state"], "running");
    assert_eq!(exporter.count_priority_min_queries(500, 500), 500);
    exporter.stop();
}

#[test]
fn capabilities_keep_holds_one_for_configs_added_later() {
    if !bpf_available() {
        return;
    }
    let exporter = Exporter::start(&["--config.names", "syscalls", "--capabilities.keep", "net_admin"]);
    assert_holds_exactly(exporter.pid(), &[CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF]);
    let (kept, _) = kept_and_dropped(&exporter);
    assert_eq!(
        kept[2],
        ("CAP_NET_ADMIN".to_string(), "--capabilities.keep".to_string())
    );
    exporter.stop();
}

/// Used to: without CAP_SYSLOG, `ksym` labels were raw kernel addresses
/// (`unknown_addr:0xffff…`), which give away the kernel's layout to anyone
/// who may scrape.
#[test]
fn hidden_kallsyms_gives_a_placeholder_label_not_raw_kernel_addresses() {
    if !bpf_available() {
        return;
    }
    let (_dir, bin) = runnable_copy();
    // `series`: how many `ebpf_timer_starts_total` series to wait for.
    let run = |caps: &str, holds: &[u32], series: usize| {
        let log = tempfile::NamedTempFile::new().unwrap();
        let wrapper = as_nobody(caps);
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        let exporter = Exporter::spawn_binary(
            &bin,
            &wrapper,
            &["--config.names", "timers"],
            Stdio::from(log.reopen().unwrap()),
            |port| answers_ok(port, "/-/ready"),
        );
        assert_holds_exactly(exporter.pid(), holds);
        // Kernel timers start all the time; wait for them to be counted.
        let deadline = Instant::now() + Duration::from_secs(10);
        let body = loop {
            let body = exporter.get("/metrics", "").2;
            let counted = body
                .lines()
                .filter(|l| l.starts_with("ebpf_timer_starts_total{"))
                .count();
            if counted >= series || Instant::now() > deadline {
                break body;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let (kept, _) = kept_and_dropped(&exporter);
        exporter.stop();
        let mut text = String::new();
        log.reopen().unwrap().read_to_string(&mut text).unwrap();
        (
            body,
            names(&kept).iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            text,
        )
    };
    let hidden = Command::new(&as_nobody("+dac_read_search")[0])
        .args(&as_nobody("+dac_read_search")[1..])
        .args(["head", "-1", "/proc/kallsyms"])
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&hidden.stdout);
    assert!(
        first.starts_with("0000000000000000"),
        "this host shows kernel addresses to any user (kernel.perf_event_paranoid <= 1?): {first}"
    );

    let (body, kept, log) = run(
        "+bpf,+perfmon,+dac_read_search",
        &[CAP_DAC_READ_SEARCH, CAP_PERFMON, CAP_BPF],
        1,
    );
    let starts: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("ebpf_timer_starts_total{"))
        .collect();
    assert_eq!(
        starts
            .iter()
            .map(|l| l.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        [r#"ebpf_timer_starts_total{function="unknown_addr:hidden"}"#],
        "{body}"
    );
    assert!(!body.contains("unknown_addr:0x"), "{body}");
    assert_eq!(log.matches("hides kernel addresses").count(), 1, "{log}");
    assert!(!kept.contains(&"CAP_SYSLOG".to_string()), "{kept:?}");

    // Granted CAP_SYSLOG, it keeps it (the probe sees it matters), and
    // timers are counted by function name.
    let (body, kept, log) = run(
        "+bpf,+perfmon,+dac_read_search,+syslog",
        &[CAP_DAC_READ_SEARCH, CAP_SYSLOG, CAP_PERFMON, CAP_BPF],
        2,
    );
    assert!(kept.contains(&"CAP_SYSLOG".to_string()), "{kept:?}");
    assert!(
        !body.contains("unknown_addr:hidden") && !log.contains("hides kernel addresses"),
        "{body}"
    );
    assert!(
        body.lines()
            .filter(|l| l.starts_with("ebpf_timer_starts_total{function="))
            .count()
            > 1,
        "{body}"
    );
}

#[test]
fn a_tracefs_closed_to_the_exporter_asks_for_cap_dac_read_search_not_a_mount() {
    if !bpf_available() {
        return;
    }
    let (ok, report) = check_as_nobody("+bpf,+perfmon", "syscalls");
    assert!(!ok, "{report}");
    assert!(report.contains("readable only by root"), "{report}");
    assert!(
        report.contains("grant the exporter CAP_DAC_READ_SEARCH"),
        "{report}"
    );
    assert!(!report.contains("not mounted"), "{report}");
}

#[test]
fn without_cap_bpf_the_failure_names_it_and_the_fix_not_a_raw_eperm() {
    if !bpf_available() {
        return;
    }
    let (ok, report) = check_as_nobody("+perfmon,+dac_read_search", "syscalls,biolatency");
    assert!(!ok, "{report}");
    assert!(
        report.ends_with(
            "0 of 2 configs good
"
        ),
        "{report}"
    );
    for block in report.split("FAILED ").skip(1) {
        assert!(
            block.contains("the exporter lacks CAP_BPF: grant CAP_BPF and CAP_PERFMON"),
            "{block}"
        );
    }
}
