//! The binary's life as an operator sees it: starting (the port first, bad
//! entries costing only themselves), readiness, reloads under load and
//! while a program loads slowly, a watched directory that goes away and
//! comes back. Each test is named after a bug it guards against.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary::{embedded, priority_min_queries, promtool_check, sample_text, until, Exporter};
use crate::common::bpf_available;

const BIN: &str = env!("CARGO_BIN_EXE_bpf-exporter");

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A config directory holding the embedded syscalls.yaml.
fn with_syscalls() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "syscalls.yaml", embedded("syscalls"));
    dir
}

/// The value of the sample line `series` in a /metrics page.
fn value(page: &str, series: &str) -> Option<f64> {
    sample_text(page, series).and_then(|v| v.parse().ok())
}

/// Its log, kept in a file the test reads.
struct Logged {
    exporter: Exporter,
    log: tempfile::NamedTempFile,
}

impl Logged {
    fn start(args: &[&str], until_path: &str) -> Logged {
        let log = tempfile::NamedTempFile::new().unwrap();
        let exporter = Exporter::spawn_until(args, Stdio::from(log.reopen().unwrap()), until_path);
        Logged { exporter, log }
    }

    fn log(&self) -> String {
        let mut text = String::new();
        self.log.reopen().unwrap().read_to_string(&mut text).unwrap();
        text
    }
}

/// Used to: every program was loaded and attached before the port was
/// bound, so a taken port failed only after the whole attach.
#[test]
fn a_taken_port_fails_before_any_program_is_loaded() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["--web.listen-address", &address])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot listen on {address}")) && log.contains("already listens there"),
        "{log}"
    );
    assert!(
        !log.contains("msg=running") && !log.contains("attached"),
        "programs were loaded first:\n{log}"
    );
}

/// Used to: `/-/ready` answered 200 with no config running.
#[test]
fn ready_is_503_while_no_config_runs() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let xdp = embedded("xdp_packets").replace("interface: lo", "interface: nosuchif0");
    write(dir.path(), "xdp_packets.yaml", &xdp);
    let logged = Logged::start(
        &[
            "--config.dir",
            dir.path().to_str().unwrap(),
            "--web.enable-lifecycle",
        ],
        "/-/healthy",
    );
    let exporter = &logged.exporter;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let (status, _, body) = exporter.get("/-/ready", "");
        if !body.contains("starting") || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (status, body.as_str()),
        (503, "Not ready: 0 of 1 configs running\n")
    );
    // One config running is enough.
    write(dir.path(), "syscalls.yaml", embedded("syscalls"));
    let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(exporter.get("/-/ready", "").0, 200, "{}", logged.log());
}

/// Used to: a directory named `x.yaml`, a file that is not UTF-8 or a
/// dangling link in `--config.dir` stopped the exporter at start with exit 1.
#[test]
fn a_bad_entry_at_start_costs_only_itself() {
    if !bpf_available() {
        return;
    }
    let dir = with_syscalls();
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    std::fs::write(dir.path().join("latin1.yaml"), b"metrics: caf\xe9\n").unwrap();
    std::os::unix::fs::symlink("nowhere.yaml", dir.path().join("dangling.yaml")).unwrap();
    let exporter = Exporter::start_unlogged(&["--config.dir", dir.path().to_str().unwrap()]);
    let page = exporter.get("/metrics", "").2;
    assert!(page.contains("# TYPE ebpf_syscalls_total counter"), "{page}");
    for bad in ["sub", "latin1", "dangling"] {
        let series = format!("bpf_exporter_config_state{{config=\"{bad}\",state=\"invalid\"}}");
        assert_eq!(value(&page, &series), Some(1.0), "{bad}: {page}");
        let series = format!("bpf_exporter_config_failures{{config=\"{bad}\",reason=\"unreadable\"}}");
        assert_eq!(value(&page, &series), Some(1.0), "{bad}: {page}");
    }
    let status: serde_json::Value = serde_json::from_str(&exporter.get("/-/status", "").2).unwrap();
    let sub = status["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sub")
        .unwrap();
    assert!(
        sub["error"]
            .as_str()
            .unwrap()
            .contains("a directory, not a config file"),
        "{sub}"
    );
    promtool_check(&page);
}

/// Used to: a copy of a config under another name (`program: execs`) was
/// accepted, and the page had two `ebpf_execs_total` families.
#[test]
fn a_copy_of_a_config_is_refused_naming_both_files_and_the_page_stays_valid() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "execs.yaml", embedded("execs"));
    write(
        dir.path(),
        "execs_copy.yaml",
        &format!("program: execs\n{}", embedded("execs")),
    );
    let exporter = Exporter::start_unlogged(&["--config.dir", dir.path().to_str().unwrap()]);
    for _ in 0..3 {
        assert!(Command::new("/bin/true").status().unwrap().success());
    }
    until(&exporter, "an exec counted", |p| p.contains("ebpf_execs_total{"));
    let page = exporter.get("/metrics", "").2;
    assert_eq!(
        page.matches("# TYPE ebpf_execs_total counter").count(),
        1,
        "{page}"
    );
    promtool_check(&page);
    let status: serde_json::Value = serde_json::from_str(&exporter.get("/-/status", "").2).unwrap();
    let copy = status["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "execs_copy")
        .unwrap();
    let error = copy["error"].as_str().unwrap();
    let (copy_path, original) = (dir.path().join("execs_copy.yaml"), dir.path().join("execs.yaml"));
    assert!(
        error.contains(&copy_path.display().to_string()) && error.contains(&original.display().to_string()),
        "{error}"
    );
    assert_eq!(copy["reason"], "conflict");
}

/// Used to: reloads the watcher started dropped every error reading the
/// directory: no log line, the gauge stayed 1, and while the bad entry was
/// there no other edit applied.
#[test]
fn watcher_triggered_failures_are_logged_and_set_the_gauge() {
    if !bpf_available() {
        return;
    }
    let dir = with_syscalls();
    let path = dir.path().to_str().unwrap();
    let logged = Logged::start(
        &["--config.dir", path, "--config.check-interval", "1h"],
        "/-/ready",
    );
    let exporter = &logged.exporter;
    let gauge = "bpf_exporter_config_last_reload_successful";

    std::fs::create_dir(dir.path().join("broken.yaml")).unwrap();
    write(dir.path(), "execs.yaml", embedded("execs"));
    until(exporter, "the gauge at 0", |p| value(p, gauge) == Some(0.0));
    until(exporter, "execs added beside the bad entry", |p| {
        p.contains("bpf_exporter_config_state{config=\"execs\",state=\"running\"} 1")
    });
    let log = logged.log();
    assert!(
        log.contains("broken.yaml: a directory, not a config file"),
        "{log}"
    );

    std::fs::remove_dir(dir.path().join("broken.yaml")).unwrap();
    until(exporter, "the gauge back at 1", |p| value(p, gauge) == Some(1.0));
}

/// Used to: a deleted `--config.dir` stopped the watching (only the
/// periodic check noticed anything), silently.
#[test]
fn a_deleted_and_recreated_config_dir_is_watched_again() {
    if !bpf_available() {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("configs");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "syscalls.yaml", embedded("syscalls"));
    let logged = Logged::start(
        &[
            "--config.dir",
            dir.to_str().unwrap(),
            "--config.check-interval",
            "1h",
        ],
        "/-/ready",
    );
    let exporter = &logged.exporter;
    let gauge = "bpf_exporter_config_last_reload_successful";
    std::fs::remove_dir_all(&dir).unwrap();
    until(exporter, "the missing directory reported", |p| {
        value(p, gauge) == Some(0.0)
    });
    assert!(logged.log().contains("does not exist"), "{}", logged.log());
    // Every config keeps running meanwhile.
    assert!(exporter
        .get("/metrics", "")
        .2
        .contains("# TYPE ebpf_syscalls_total counter"));

    std::fs::create_dir(&dir).unwrap();
    let edited =
        embedded("syscalls").replace("help: System calls entered, by syscall name.", "help: Recreated.");
    write(&dir, "syscalls.yaml", &edited);
    until(exporter, "the recreated directory's config", |p| {
        p.contains("# HELP ebpf_syscalls_total Recreated.") && value(p, gauge) == Some(1.0)
    });
}

/// Threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Used to: 1000 concurrent `POST /-/reload` made 514 threads, and each
/// reload forced a full map read and a log line.
#[test]
fn a_storm_of_reloads_coalesces_into_a_few() {
    if !bpf_available() {
        return;
    }
    const REQUESTS: usize = 200;
    let dir = with_syscalls();
    let logged = Logged::start(
        &[
            "--config.dir",
            dir.path().to_str().unwrap(),
            "--web.enable-lifecycle",
        ],
        "/-/ready",
    );
    let exporter = &logged.exporter;
    let reloads = |page: &str| value(page, "bpf_exporter_config_reloads_total{result=\"success\"}").unwrap();
    let before = reloads(&exporter.get("/metrics", "").2);
    let idle_threads = threads(exporter.pid());
    let started = Instant::now();
    let (worst, most_threads) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..REQUESTS)
            .map(|_| {
                scope.spawn(|| {
                    let t = Instant::now();
                    let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
                    assert_eq!(status, 200, "{body}");
                    t.elapsed()
                })
            })
            .collect();
        let mut most = 0;
        while clients.iter().any(|c| !c.is_finished()) {
            most = most.max(threads(exporter.pid()));
            std::thread::sleep(Duration::from_millis(5));
        }
        let worst = clients.into_iter().map(|c| c.join().unwrap()).max().unwrap();
        (worst, most)
    });
    let done = reloads(&exporter.get("/metrics", "").2) - before;
    let lines = logged
        .log()
        .lines()
        .filter(|l| l.contains("configs reloaded"))
        .count();
    eprintln!(
        "{REQUESTS} concurrent reloads in {:?}: {done} reloads ran, slowest answer {worst:?}, threads {idle_threads} -> \
         {most_threads} at most, {lines} reload log lines",
        started.elapsed()
    );
    // Each reload answers every request that arrived before it started.
    assert!(
        done >= 1.0 && done <= (REQUESTS / 2) as f64,
        "{done} reloads for {REQUESTS} requests"
    );
    assert!(
        most_threads <= idle_threads + 8,
        "threads {idle_threads} -> {most_threads}"
    );
    assert_eq!(lines, 0, "a reload that changes nothing logs nothing at info");
}

/// Used to: programs were loaded and verified on the map-reader thread, so
/// while a reload loaded a slow program no snapshot was published for any
/// config.
#[test]
fn snapshots_keep_coming_while_a_reload_loads_a_slow_program() {
    if !bpf_available() {
        return;
    }
    let dir = with_syscalls();
    let exporter = Exporter::watching(dir.path());
    write(
        dir.path(),
        "slow.yaml",
        "program: slow_verifier\nmetrics:\n  counters:\n    - name: slow_verifier_events_total\n      help: getppid calls.\n",
    );
    let (took, reads) = std::thread::scope(|scope| {
        let reload = scope.spawn(|| {
            let started = Instant::now();
            let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
            assert_eq!(status, 200, "{body}");
            started.elapsed()
        });
        let mut reads = std::collections::BTreeSet::new();
        while !reload.is_finished() {
            let page = exporter.get("/metrics", "").2;
            if let Some(t) = value(&page, "bpf_exporter_last_read_timestamp_seconds") {
                reads.insert(t.to_bits());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (reload.join().unwrap(), reads.len())
    });
    eprintln!(
        "a reload loading slow_verifier took {took:?}; {reads} read cycles served meanwhile (every 100 ms)"
    );
    assert!(
        took >= Duration::from_millis(800),
        "the load was not slow ({took:?}): the test proves nothing"
    );
    assert!(reads >= 4, "{reads} read cycles in {took:?}");
    assert!(exporter
        .get("/metrics", "")
        .2
        .contains("# TYPE ebpf_slow_verifier_events_total counter"));
}

/// Used to: a refused change of a running config detached it and rebuilt
/// it from its text into fresh maps, so its counters restarted at zero.
#[test]
fn a_refused_edit_leaves_the_counters_growing() {
    if !bpf_available() {
        return;
    }
    let dir = with_syscalls();
    let exporter = Exporter::watching(dir.path());
    let series = r#"ebpf_syscalls_total{syscall="sched_get_priority_min"}"#;
    let _turn = crate::binary::priority_min_turn();
    let before = exporter.sample(series);
    priority_min_queries(300);
    assert_eq!(exporter.sample_reaching(series, before + 300) - before, 300);
    // Loads, but none of its programs attach: refused.
    write(
        dir.path(),
        "syscalls.yaml",
        "program: missing_hooks\nmetrics:\n  counters:\n    - name: missing_hooks_total\n      help: Never counted.\n",
    );
    let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    assert_eq!(status, 500, "{body}");
    priority_min_queries(200);
    assert_eq!(
        exporter.sample_reaching(series, before + 500) - before,
        500,
        "the counter was reset by the refused edit"
    );
}
