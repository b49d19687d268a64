//! The exporter as a non-root uid holding only the capabilities it is
//! granted (as systemd's AmbientCapabilities= grants them), started with
//! util-linux's `setpriv`: the default set attaches and counts exactly,
//! and what is missing is named with its fix.
//!
//! On this kernel tracefs is root's alone (mode 0700, event ids 0440), and
//! attaching a `tracepoint/` program reads its event id there; libbpf has
//! no other way to learn it. So the default set needs CAP_DAC_READ_SEARCH
//! beside CAP_BPF and CAP_PERFMON, unless tracefs is mounted readable by
//! the exporter's group, which a test cannot do without changing the
//! host's tracefs for everyone.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::binary::{answers_ok, Exporter, BIN};
use crate::common::bpf_available;

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

    exporter.assert_default_set_counts_exactly();
    exporter.stop();
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
