//! `pin: true`: the exporter pins the maps a config's metrics read under
//! `--bpf.pin-dir` (here a bpffs of the test's own), so their counts go on
//! across a restart and a change of the config; a pin of another layout
//! refuses its config alone, naming the pin, the field and the fix.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::binary::{embedded, priority_min_queries, priority_min_turn, until, Exporter, BIN};
use crate::common::{bpf_available, bpftool, tool_available, Bpffs};

const PRIORITY_MIN: &str = r#"ebpf_syscalls_total{syscall="sched_get_priority_min"}"#;

/// `text` with `pin: true` first.
fn pinned(text: &str) -> String {
    format!("pin: true\n{text}")
}

/// An exporter on the configs of `dir`, pinning under `pin_dir`, its log
/// into `log`; changes apply on file events and `POST /-/reload`.
fn exporter(dir: &Path, pin_dir: &Path, log: &tempfile::NamedTempFile) -> Exporter {
    Exporter::spawn_until(
        &[
            "--config.dir",
            dir.to_str().unwrap(),
            "--config.check-interval",
            "1h",
            "--web.enable-lifecycle",
            "--bpf.pin-dir",
            pin_dir.to_str().unwrap(),
        ],
        Stdio::from(log.reopen().unwrap()),
        "/-/ready",
    )
}

/// Used to: every count started again from zero with each start of the
/// exporter (an upgrade, a restart after a crash).
#[test]
fn pinned_counters_survive_an_exporter_restart_and_a_change_of_their_config() {
    if !bpf_available() {
        return;
    }
    let bpffs = Bpffs::new();
    // Not there yet: the exporter makes it.
    let pin_dir = bpffs.path("bpf-exporter");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("syscalls.yaml");
    std::fs::write(&config, pinned(embedded("syscalls"))).unwrap();
    let pin = pin_dir.join("syscalls/syscalls_total");
    // Every exporter counts the machine's calls: the ones counted here
    // are this test's alone, from the first exporter to the last.
    let _turn = priority_min_turn();

    let first_log = tempfile::NamedTempFile::new().unwrap();
    let first = exporter(dir.path(), &pin_dir, &first_log);
    priority_min_queries(300);
    assert_eq!(first.sample_reaching(PRIORITY_MIN, 300), 300);
    // Pinned after the start-up dropped what the exporter does not need
    // (as root: all but CAP_BPF and CAP_PERFMON).
    let status: serde_json::Value = serde_json::from_str(&first.get("/-/status", "").2).unwrap();
    let dropped = status["capabilities"]["dropped"].to_string();
    assert!(
        dropped.contains("CAP_DAC_OVERRIDE") && dropped.contains("CAP_SYS_ADMIN"),
        "{status}"
    );
    first.stop();
    assert!(pin.exists(), "{} is not pinned", pin.display());

    let second_log = tempfile::NamedTempFile::new().unwrap();
    let second = exporter(dir.path(), &pin_dir, &second_log);
    assert_eq!(second.sample_reaching(PRIORITY_MIN, 300), 300);
    priority_min_queries(200);
    assert_eq!(second.sample_reaching(PRIORITY_MIN, 500), 500);

    // A new version of the config gets the map from its pin, and the old
    // one makes way first: calls made meanwhile count once, or not at all
    // between the old one's detach and the new one's attach, never twice.
    let text =
        pinned(embedded("syscalls")).replace("help: System calls entered, by syscall name.", "help: Pinned.");
    let stop = AtomicBool::new(false);
    let made = std::thread::scope(|scope| {
        let caller = scope.spawn(|| {
            let mut made = 0u64;
            while !stop.load(Ordering::Relaxed) {
                priority_min_queries(1);
                made += 1;
            }
            made
        });
        std::fs::write(&config, text).unwrap();
        until(&second, "the new version", |m| {
            m.contains("# HELP ebpf_syscalls_total Pinned.")
        });
        stop.store(true, Ordering::Relaxed);
        caller.join().unwrap()
    });
    // Two reads later, every call made is in.
    std::thread::sleep(Duration::from_millis(300));
    let counted = second.sample(PRIORITY_MIN) - 500;
    eprintln!("calls during the change of config: {made} made, {counted} counted");
    assert!(
        counted <= made && counted > 0,
        "{counted} of {made} calls counted"
    );
    priority_min_queries(100);
    assert_eq!(second.sample_reaching(PRIORITY_MIN, 600 + counted), 600 + counted);
    second.stop();

    let line = |log: &tempfile::NamedTempFile, what: &str| {
        let text = std::fs::read_to_string(log.path()).unwrap();
        text.lines()
            .any(|l| l.contains(what) && l.contains(&format!("path={}", pin.display())))
    };
    assert!(line(&first_log, "msg=\"pinned map created\""));
    assert!(!line(&first_log, "pinned map reused"));
    assert!(line(
        &second_log,
        "msg=\"pinned map reused: its values carry on\""
    ));
    assert!(!line(&second_log, "pinned map created"));
}

/// Used to: libbpf refused the whole load with "Invalid argument", naming
/// neither the pin nor what differs.
#[test]
fn a_pin_of_another_layout_refuses_its_config_alone_naming_the_pin_and_the_field() {
    if !bpf_available() {
        return;
    }
    assert!(tool_available("bpftool"), "the pin tests need bpftool");
    let bpffs = Bpffs::new();
    let pin_dir = bpffs.path("pins");
    // What another version of execs left: 16 entries where this one has
    // 10240.
    std::fs::create_dir(&pin_dir).unwrap();
    std::fs::create_dir(pin_dir.join("execs")).unwrap();
    let execs_pin = pin_dir.join("execs/execs_total");
    bpftool(&[
        "map",
        "create",
        execs_pin.to_str().unwrap(),
        "type",
        "hash",
        "key",
        "4",
        "value",
        "8",
        "entries",
        "16",
        "name",
        "execs_total",
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("execs.yaml"), pinned(embedded("execs"))).unwrap();
    let config = dir.path().join("syscalls.yaml");
    std::fs::write(&config, pinned(embedded("syscalls"))).unwrap();
    let refusal = |error: &str, pin: &Path, field: &str| {
        let pin = pin.display();
        assert!(
            error.contains(&format!("the map pinned at {pin} does not match map "))
                && error.contains(field)
                && error.contains(&format!(
                    "`rm {pin}` (its values are lost) and restart the exporter"
                )),
            "{error}"
        );
    };

    // A check says so, and pins nothing.
    let out = Command::new(BIN)
        .args(["--config.check", "--config.dir"])
        .arg(dir.path())
        .arg("--bpf.pin-dir")
        .arg(&pin_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    refusal(&stdout, &execs_pin, "max_entries: pinned 16, program 10240");
    assert!(stdout.contains("1 of 2 configs good"), "{stdout}");
    assert!(
        !pin_dir.join("syscalls").exists(),
        "--config.check pinned syscalls"
    );

    let log = tempfile::NamedTempFile::new().unwrap();
    let exporter = exporter(dir.path(), &pin_dir, &log);
    let execs = exporter.config_status("execs");
    assert_eq!(execs["state"], "failed", "{execs}");
    refusal(
        execs["error"].as_str().unwrap(),
        &execs_pin,
        "map execs_total of execs (max_entries: pinned 16, program 10240)",
    );
    assert_eq!(exporter.config_status("syscalls")["state"], "running");
    assert_eq!(exporter.count_priority_min_queries(500, 500), 500);

    // Another program pinned a map of its own in syscalls' place: the next
    // version of syscalls is refused, and the running one keeps its map
    // and counts on.
    let syscalls_pin = pin_dir.join("syscalls/syscalls_total");
    std::fs::remove_file(&syscalls_pin).unwrap();
    bpftool(&[
        "map",
        "create",
        syscalls_pin.to_str().unwrap(),
        "type",
        "hash",
        "key",
        "8",
        "value",
        "4",
        "entries",
        "1024",
        "name",
        "syscalls_total",
    ]);
    std::fs::write(
        &config,
        pinned(embedded("syscalls")).replace("help: System calls entered, by syscall name.", "help: Pinned."),
    )
    .unwrap();
    let (code, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    // The file event may have applied it first; then this reload has
    // nothing new to refuse.
    assert!(code == 500 || body.contains("changed: none"), "{code}: {body}");
    let syscalls = exporter.config_status("syscalls");
    assert_eq!(syscalls["state"], "running", "{syscalls}");
    refusal(
        syscalls["rejected"].as_str().unwrap_or_default(),
        &syscalls_pin,
        "(value_size: pinned 4, program 8)",
    );
    let metrics = exporter.get("/metrics", "").2;
    assert!(
        metrics.contains("# HELP ebpf_syscalls_total System calls entered")
            && metrics.contains("bpf_exporter_config_last_reload_successful 0"),
        "{metrics}"
    );
    assert_eq!(exporter.count_priority_min_queries(300, 300), 300);
    exporter.stop();
}
