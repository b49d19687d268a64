//! Real programs, real kernel, exact numbers.

use crate::common::*;
use crate::workload::udp_round_trips;

/// Other tests make these calls too, each in its turn
/// ([`crate::binary::priority_min_turn`]).
fn sched_get_priority_min_calls(n: u64) {
    for _ in 0..n {
        // SAFETY: a query with no memory arguments.
        unsafe { libc::sched_get_priority_min(libc::SCHED_OTHER) };
    }
}

#[test]
fn syscalls_counts_each_call_of_a_syscall_exactly() {
    if !bpf_available() {
        return;
    }
    let mut reader = start(&["syscalls"]);
    let labels = [("syscall", "sched_get_priority_min")];
    let _turn = crate::binary::priority_min_turn();
    let before = counter(&reader.read(), "ebpf_syscalls_total", &labels);
    sched_get_priority_min_calls(1000);
    let after = counter(&reader.read(), "ebpf_syscalls_total", &labels);
    assert_eq!(after - before, 1000);
}

#[test]
fn execs_counts_each_exec_under_its_uid_exactly() {
    use std::os::unix::process::CommandExt;
    if !bpf_available() {
        return;
    }
    // A uid no account on a test machine uses.
    const UID: u32 = 54_321;
    let mut reader = start(&["execs"]);
    let labels = [("uid", "54321")];
    let before = counter(&reader.read(), "ebpf_execs_total", &labels);
    for _ in 0..25 {
        let status = std::process::Command::new("/bin/true")
            .uid(UID)
            .gid(UID)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let after = counter(&reader.read(), "ebpf_execs_total", &labels);
    assert_eq!(after - before, 25);
}

fn xdp_source(labels: &str) -> bpf_exporter::config::Source {
    bpf_exporter::config::Source {
        name: "xdp_packets".into(),
        origin: "test:xdp_packets.yaml".into(),
        text: format!(
            "metrics:\n  counters:\n    - name: xdp_packets_total\n      help: Packets.\n{labels}\
             attach:\n  - program: count_packets\n    xdp:\n      interface: lo\n      mode: generic\n"
        ),
        ..Default::default()
    }
}

#[test]
fn xdp_packets_counts_each_packet_per_cpu_and_summed() {
    if !bpf_available() {
        return;
    }
    std::thread::spawn(|| {
        private_loopback();
        // Split by CPU: the shipped config.
        let mut reader = start(&["xdp_packets"]);
        udp_round_trips(300);
        let snapshot = reader.read();
        let split = family(&snapshot, "ebpf_xdp_packets_total");
        assert_eq!(split.label_names, ["cpu"]);
        let cpus = libbpf_rs::num_possible_cpus().unwrap();
        assert_eq!(split.samples.len(), cpus, "one series per possible CPU");
        for (i, s) in split.samples.iter().enumerate() {
            assert_eq!(*s.label_values, [i.to_string()]);
        }
        assert_eq!(counter_sum(&snapshot, "ebpf_xdp_packets_total"), 300);
        drop(reader);

        // Summed: no labels.
        let mut reader = start_sources(&[xdp_source("")]);
        udp_round_trips(120);
        let snapshot = reader.read();
        assert_eq!(counter(&snapshot, "ebpf_xdp_packets_total", &[]), 120);
        assert_eq!(family(&snapshot, "ebpf_xdp_packets_total").samples.len(), 1);
    })
    .join()
    .unwrap();
}

#[test]
fn a_second_xdp_program_on_the_same_interface_fails_alone_and_says_why() {
    use bpf_exporter::exporter::Exporter;
    if !bpf_available() {
        return;
    }
    std::thread::spawn(|| {
        private_loopback();
        let _first = start_sources(&[xdp_source("")]);
        let (mut second, _) = Exporter::with_sources(&[xdp_source("")]);
        let statuses = second.statuses();
        let program = &statuses[0].programs[0];
        assert!(!program.attached);
        let error = program.error.as_deref().unwrap();
        assert!(error.contains("another XDP program is attached to lo"), "{error}");
        // The first one still counts.
        udp_round_trips(7);
        drop(second.read());
    })
    .join()
    .unwrap();
}

#[test]
fn a_failing_program_fails_alone() {
    if !bpf_available() {
        return;
    }
    let source = bpf_exporter::config::Source {
        name: "test_isolation".into(),
        origin: "test:test_isolation.yaml".into(),
        text: "metrics:\n  counters:\n    - name: isolation_events_total\n      help: getppid calls.\n"
            .into(),
        ..Default::default()
    };
    let (mut reader, _) = bpf_exporter::exporter::Exporter::with_sources(&[source]);
    let statuses = reader.statuses();
    let status = &statuses[0];
    // Some of its programs run: degraded, not running, and read.
    assert_eq!(
        status.state,
        bpf_exporter::metrics::ConfigState::Degraded,
        "{}",
        bpf_exporter::exporter::report(&statuses)
    );
    let program = |name: &str| status.programs.iter().find(|p| p.name == name).unwrap();

    assert!(program("works").attached);
    let rejected = program("rejected_by_verifier");
    assert!(!rejected.attached);
    let error = rejected.error.as_deref().unwrap();
    assert!(
        error.contains("the verifier rejected it") && error.contains("invalid mem access"),
        "{error}"
    );
    // Kernels without kprobes or trampolines refuse these; when they do,
    // the error says what is missing.
    for (name, hint) in [
        ("needs_kprobes", "kprobes are unavailable"),
        ("needs_trampolines", "refuses fentry/fexit/LSM"),
    ] {
        let p = program(name);
        if !p.attached {
            let error = p.error.as_deref().unwrap();
            assert!(error.contains(hint), "{name}: {error}");
        }
    }

    let before = counter(&reader.read(), "ebpf_isolation_events_total", &[]);
    for _ in 0..40 {
        // SAFETY: no arguments.
        unsafe { libc::getppid() };
    }
    // Other processes call getppid() too, rarely; the test's own calls
    // are all there.
    let delta = counter(&reader.read(), "ebpf_isolation_events_total", &[]) - before;
    assert!((40..40 + 10).contains(&delta), "delta {delta}");
}
