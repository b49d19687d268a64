//! Reloads applied to running programs: what is unchanged keeps counting,
//! what changed is swapped, what is broken is refused and the running
//! version kept, what is gone is detached.

use std::path::Path;

use bpf_exporter::config::{Listing, Source};
use bpf_exporter::exporter::Exporter;
use bpf_exporter::metrics::{ConfigState, Reason, Snapshot};
use bpf_exporter::reload::trigger::Trigger;
use bpf_exporter::reload::ReloadOutcome;

use crate::common::*;

/// Each test counts its own syscall, one nothing else on a test machine
/// makes, so tests running at the same time cannot move each other's
/// counts. Queries about this process, harmless to repeat.
const UNCHANGED: (i64, &str) = (libc::SYS_sched_rr_get_interval, "sched_rr_get_interval");
const BROKEN: (i64, &str) = (libc::SYS_sched_getscheduler, "sched_getscheduler");
const CHANGED: (i64, &str) = (libc::SYS_getsid, "getsid");

fn embedded(name: &str) -> Source {
    embedded_sources(&[name.to_string()]).remove(0)
}

fn reload(exporter: &mut Exporter, sources: &[Source]) -> ReloadOutcome {
    exporter.reload(&Listing::from(sources.to_vec()))
}

fn calls((nr, _): (i64, &str), n: u64) {
    let mut interval = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    for _ in 0..n {
        // SAFETY: each of these takes a pid (0: this process) and at most
        // one pointer, to a timespec that outlives the call.
        unsafe { libc::syscall(nr, 0, &mut interval) };
    }
}

fn syscalls(snapshot: &Snapshot, (_, name): (i64, &str)) -> u64 {
    counter(snapshot, "ebpf_syscalls_total", &[("syscall", name)])
}

fn reloads(snapshot: &Snapshot, result: &str) -> u64 {
    counter(
        snapshot,
        "bpf_exporter_config_reloads_total",
        &[("result", result)],
    )
}

#[test]
fn an_unchanged_config_keeps_counting_through_a_reload() {
    if !bpf_available() {
        return;
    }
    let source = embedded("syscalls");
    let mut reader = start_sources(std::slice::from_ref(&source));
    let before = syscalls(&reader.read(), UNCHANGED);
    calls(UNCHANGED, 300);
    let outcome = reload(&mut reader, std::slice::from_ref(&source));
    assert_eq!(outcome.unchanged, ["syscalls"]);
    calls(UNCHANGED, 200);
    // The same maps, never reset: every call before and after the reload.
    let snapshot = reader.read();
    assert_eq!(syscalls(&snapshot, UNCHANGED) - before, 500);
    assert_eq!(
        gauge(&snapshot, "bpf_exporter_config_last_reload_successful", &[]),
        1.0
    );
    assert_eq!(reloads(&snapshot, "success"), 1);
}

#[test]
fn a_broken_change_is_refused_and_the_running_version_keeps_counting() {
    if !bpf_available() {
        return;
    }
    let source = embedded("syscalls");
    let mut reader = start_sources(std::slice::from_ref(&source));
    let before = syscalls(&reader.read(), BROKEN);
    let broken = Source {
        text: source.text.replace("size: 8", "size: eight"),
        ..source.clone()
    };
    let outcome = reload(&mut reader, &[broken]);
    assert!(
        outcome.changed.is_empty() && outcome.unchanged.is_empty(),
        "{outcome:?}"
    );
    let (name, reason) = &outcome.rejected[0];
    assert_eq!(name, "syscalls");
    assert!(
        reason.contains("embedded:configs/syscalls.yaml:") && reason.contains("labels[0].size"),
        "{reason}"
    );
    calls(BROKEN, 250);
    let snapshot = reader.read();
    assert_eq!(syscalls(&snapshot, BROKEN) - before, 250);
    assert_eq!(
        gauge(&snapshot, "bpf_exporter_config_last_reload_successful", &[]),
        0.0
    );
    assert_eq!(reloads(&snapshot, "failure"), 1);
    let state = gauge(
        &snapshot,
        "bpf_exporter_config_state",
        &[("config", "syscalls"), ("state", "running")],
    );
    assert_eq!(state, 1.0);
}

#[test]
fn a_changed_config_is_swapped_and_a_removed_one_detached() {
    if !bpf_available() {
        return;
    }
    let source = embedded("syscalls");
    let mut reader = start_sources(std::slice::from_ref(&source));
    calls(CHANGED, 100);
    assert_eq!(syscalls(&reader.read(), CHANGED), 100);
    let changed = Source {
        text: source.text.replace(
            "help: System calls entered, by syscall name.",
            "help: Syscalls entered (reloaded).",
        ),
        ..source.clone()
    };
    assert_ne!(changed.text, source.text);
    let outcome = reload(&mut reader, &[changed, embedded("execs")]);
    assert_eq!(
        (outcome.changed.as_slice(), outcome.added.as_slice()),
        (&["syscalls".to_string()][..], &["execs".to_string()][..])
    );
    calls(CHANGED, 40);
    let snapshot = reader.read();
    let family = family(&snapshot, "ebpf_syscalls_total");
    assert_eq!(family.help, "Syscalls entered (reloaded).");
    // New maps: only the calls since the swap.
    assert_eq!(syscalls(&snapshot, CHANGED), 40);

    let outcome = reload(&mut reader, &[]);
    assert_eq!(outcome.removed.len(), 2, "{outcome:?}");
    let snapshot = reader.read();
    assert!(
        !snapshot.families.iter().any(|f| f.name.starts_with("ebpf_")),
        "series of removed configs are still exported"
    );
    assert!(snapshot.configs.is_empty(), "{:?}", snapshot.configs);
}

#[test]
fn a_changed_xdp_config_takes_over_the_interface() {
    if !bpf_available() {
        return;
    }
    // lo of a private network namespace, so the host's is left alone.
    private_loopback();
    let source = embedded("xdp_packets");
    let mut reader = start_sources(std::slice::from_ref(&source));
    let changed = Source {
        text: source
            .text
            .replace("help: Packets received on", "help: Reloaded, packets received on"),
        ..source.clone()
    };
    assert_ne!(changed.text, source.text);
    // One XDP program per interface and mode: the new one cannot attach
    // beside the old one, so the old one makes way.
    let outcome = reload(&mut reader, &[changed]);
    assert_eq!(outcome.changed, ["xdp_packets"], "{outcome:?}");
    let snapshot = reader.read();
    let family = family(&snapshot, "ebpf_xdp_packets_total");
    assert!(family.help.starts_with("Reloaded,"), "{}", family.help);
    let attached = gauge(
        &snapshot,
        "bpf_exporter_program_attached",
        &[("config", "xdp_packets"), ("program", "count_packets")],
    );
    assert_eq!(attached, 1.0);

    // A change that cannot attach at all is rolled back to the old version.
    let broken = Source {
        text: source.text.replace("interface: lo", "interface: nosuchif0"),
        ..source.clone()
    };
    let outcome = reload(&mut reader, &[broken]);
    assert_eq!(outcome.rejected.len(), 1, "{outcome:?}");
    assert!(outcome.rejected[0].1.contains("nosuchif0"), "{outcome:?}");
    let snapshot = reader.read();
    let attached = gauge(
        &snapshot,
        "bpf_exporter_program_attached",
        &[("config", "xdp_packets"), ("program", "count_packets")],
    );
    assert_eq!(attached, 1.0, "the previous version must be attached again");
}

#[test]
fn replaced_configs_leave_nothing_in_the_label_cache() {
    if !bpf_available() {
        return;
    }
    let source = embedded("syscalls");
    let other = Source {
        text: source
            .text
            .replace("help: System calls entered", "help: Syscalls entered"),
        ..source.clone()
    };
    let mut reader = start_sources(std::slice::from_ref(&source));
    for i in 0..200 {
        let next = if i % 2 == 0 { &other } else { &source };
        assert_eq!(
            reload(&mut reader, std::slice::from_ref(next)).changed,
            ["syscalls"]
        );
        reader.read();
    }
    let snapshot = reader.read();
    let entries = gauge(&snapshot, "bpf_exporter_label_cache_entries", &[]);
    let keys = gauge(
        &snapshot,
        "bpf_exporter_map_entries",
        &[("config", "syscalls"), ("map", "syscalls_total")],
    );
    // Only the running version's keys: none of the 200 replaced versions'.
    assert!(entries <= keys, "{entries} cached label sets for {keys} map keys");
}

#[test]
fn the_periodic_check_reloads_only_when_the_directory_changed() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("syscalls.yaml");
    std::fs::write(&path, embedded("syscalls").text).unwrap();
    let running = Threaded::start(dir.path());
    // What the periodic check (and the watcher) ask for: nothing changed yet.
    let outcome = running.reload(Trigger::Watch);
    assert!(!outcome.changed_anything(), "{outcome:?}");
    std::fs::write(
        &path,
        embedded("syscalls")
            .text
            .replace("help: System calls entered", "help: Polled"),
    )
    .unwrap();
    let outcome = running.reload(Trigger::Watch);
    assert_eq!(outcome.changed, ["syscalls"]);
    // The answer comes once a snapshot with the change is published.
    let snapshot = running.cell.load();
    let family = family(&snapshot, "ebpf_syscalls_total");
    assert!(family.help.starts_with("Polled"), "{}", family.help);
    let outcome = running.reload(Trigger::Watch);
    assert!(!outcome.changed_anything(), "the same files twice: {outcome:?}");
    // Only the look that found a change counts as a reload.
    running.reload(Trigger::Request);
    assert_eq!(reloads(&running.cell.load(), "success"), 2);
}

/// A version of syscalls.yaml that parses and loads, but none of whose
/// programs attach: the kernel lacks their hooks.
fn unattachable(source: &Source) -> Source {
    Source {
        text: "program: missing_hooks\nmetrics:\n  counters:\n    - name: missing_hooks_total\n      help: Never counted.\n"
            .into(),
        ..source.clone()
    }
}

const REFUSED: (i64, &str) = (libc::SYS_sched_get_priority_min, "sched_get_priority_min");

/// Used to: the running version was detached for any refused change and
/// rebuilt from its text into fresh maps, so every refused edit reset its
/// counters (a counter reset for Prometheus).
#[test]
fn a_refused_change_keeps_the_running_counters_without_a_reset() {
    if !bpf_available() {
        return;
    }
    let source = embedded("syscalls");
    let mut exporter = start_sources(std::slice::from_ref(&source));
    // Other tests' exporters count these calls too: they take turns.
    let _turn = crate::binary::priority_min_turn();
    let before = syscalls(&exporter.read(), REFUSED);
    calls(REFUSED, 300);
    assert_eq!(syscalls(&exporter.read(), REFUSED) - before, 300);
    let outcome = reload(&mut exporter, &[unattachable(&source)]);
    assert_eq!(outcome.kept, ["syscalls"], "{outcome}");
    assert!(outcome.rejected[0].1.contains("no_such_tracepoint"), "{outcome}");
    calls(REFUSED, 200);
    let snapshot = exporter.read();
    // Every call before and after the refused edit: the same maps.
    assert_eq!(syscalls(&snapshot, REFUSED) - before, 500);
    let attached = gauge(
        &snapshot,
        "bpf_exporter_program_attached",
        &[("config", "syscalls"), ("program", "sys_enter")],
    );
    assert_eq!(attached, 1.0);
    let status = &exporter.statuses()[0];
    assert_eq!(status.state, ConfigState::Running);
    assert!(
        status
            .rejected
            .as_deref()
            .is_some_and(|r| r.contains("no_such_tracepoint")),
        "{status:?}"
    );
    // The refused version is not tried again until the file changes.
    assert_eq!(
        reload(&mut exporter, &[unattachable(&source)]).unchanged,
        ["syscalls"]
    );
}

/// Used to: a copy of execs.yaml under another name was accepted, and the
/// page carried two `ebpf_execs_total` families that promtool rejects.
#[test]
fn two_configs_cannot_export_the_same_metric() {
    if !bpf_available() {
        return;
    }
    let execs = embedded("execs");
    let copy = Source {
        name: "execs_copy".into(),
        origin: "/etc/bpf-exporter/execs_copy.yaml".into(),
        text: format!("program: execs\n{}", execs.text),
        ..Default::default()
    };
    let (mut exporter, outcome) = Exporter::with_sources(&[execs.clone(), copy.clone()]);
    assert_eq!(outcome.added, ["execs"], "{outcome}");
    let (name, reason) = &outcome.rejected[0];
    assert_eq!(name, "execs_copy");
    assert!(
        reason.starts_with("/etc/bpf-exporter/execs_copy.yaml: metric \"ebpf_execs_total\" is already exported by config execs (embedded:configs/execs.yaml)"),
        "{reason}"
    );
    let snapshot = exporter.read();
    let families = snapshot
        .families
        .iter()
        .filter(|f| f.name == "ebpf_execs_total")
        .count();
    assert_eq!(families, 1);
    let status = exporter
        .statuses()
        .into_iter()
        .find(|s| s.name == "execs_copy")
        .unwrap();
    assert_eq!(
        (status.state, status.reason),
        (ConfigState::Invalid, Some(Reason::Conflict))
    );

    // Once the original goes, the copy comes up in the same reload.
    let outcome = reload(&mut exporter, std::slice::from_ref(&copy));
    assert_eq!(
        (outcome.removed.as_slice(), outcome.added.as_slice()),
        (&["execs".to_string()][..], &["execs_copy".to_string()][..]),
        "{outcome}"
    );
    assert!(outcome.is_successful(), "{outcome}");
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Used to: the watcher's reloads dropped every error reading the
/// directory, so the gauge stayed 1, nothing was logged, and while one bad
/// entry was there no other edit applied.
#[test]
fn watcher_triggered_failures_cost_only_the_bad_entry_and_are_reported() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = embedded("syscalls").text;
    write(dir.path(), "syscalls.yaml", &text);
    let running = Threaded::start(dir.path());
    let successful = || {
        gauge(
            &running.cell.load(),
            "bpf_exporter_config_last_reload_successful",
            &[],
        )
    };

    std::fs::create_dir(dir.path().join("broken.yaml")).unwrap();
    write(
        dir.path(),
        "syscalls.yaml",
        &text.replace("help: System calls entered", "help: Edited"),
    );
    let outcome = running.reload(Trigger::Watch);
    assert_eq!(outcome.changed, ["syscalls"], "the other edit applies: {outcome}");
    assert_eq!(outcome.rejected.len(), 1, "{outcome}");
    assert!(
        outcome.rejected[0]
            .1
            .contains("broken.yaml: a directory, not a config file"),
        "{outcome}"
    );
    assert_eq!(successful(), 0.0);
    assert!(family(&running.cell.load(), "ebpf_syscalls_total")
        .help
        .starts_with("Edited"));

    std::fs::remove_dir(dir.path().join("broken.yaml")).unwrap();
    let outcome = running.reload(Trigger::Watch);
    assert_eq!(outcome.removed, ["broken"], "{outcome}");
    assert_eq!(successful(), 1.0, "fixed: the next reload sets the gauge back");

    // The whole directory gone: a failed reload, and every config keeps
    // running (and counting) as it was.
    let path = dir.path().to_path_buf();
    std::fs::remove_dir_all(&path).unwrap();
    let failed = running.threads.reloader.reload(Trigger::Watch);
    let error = failed.as_ref().as_ref().unwrap_err();
    assert!(
        error.contains("cannot read the directory: it does not exist"),
        "{error}"
    );
    assert_eq!(successful(), 0.0);
    let before = syscalls(&running.cell.load(), UNCHANGED);
    calls(UNCHANGED, 40);
    std::fs::create_dir(&path).unwrap();
    write(
        &path,
        "syscalls.yaml",
        &text.replace("help: System calls entered", "help: Edited"),
    );
    let outcome = running.reload(Trigger::Watch);
    assert!(
        !outcome.changed_anything() && outcome.is_successful(),
        "{outcome}"
    );
    assert_eq!(successful(), 1.0);
    running.threads.reloader.reload(Trigger::Request);
    let snapshot = running.cell.load();
    // The same maps throughout (a full read after the forced reload).
    assert!(syscalls(&snapshot, UNCHANGED) >= before, "reset");
    assert_eq!(
        counter(
            &snapshot,
            "bpf_exporter_config_reloads_total",
            &[("result", "failure")]
        ),
        2
    );
}

/// Used to: an empty directory was an error, so deleting every config left
/// the last ones running. Now it means "run nothing".
#[test]
fn removing_every_config_runs_nothing_and_stays_ready() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "syscalls.yaml", &embedded("syscalls").text);
    let running = Threaded::start(dir.path());
    assert!(running
        .cell
        .load()
        .families
        .iter()
        .any(|f| f.name == "ebpf_syscalls_total"));
    std::fs::remove_file(dir.path().join("syscalls.yaml")).unwrap();
    let outcome = running.reload(Trigger::Watch);
    assert_eq!(outcome.removed, ["syscalls"]);
    let snapshot = running.cell.load();
    assert!(!snapshot.families.iter().any(|f| f.name.starts_with("ebpf_")));
    assert!(snapshot
        .families
        .iter()
        .any(|f| f.name == "bpf_exporter_config_reloads_total"));
    assert!(snapshot.configs.is_empty());
    assert_eq!(snapshot.not_ready, None);
    assert_eq!(
        gauge(&snapshot, "bpf_exporter_config_last_reload_successful", &[]),
        1.0
    );
}
