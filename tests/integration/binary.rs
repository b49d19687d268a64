//! The real binary: flags, exit codes, `/metrics` over HTTP with the
//! numbers the kernel produced, and output that promtool accepts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::bpf_available;

const BIN: &str = env!("CARGO_BIN_EXE_bpf-exporter");

struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start(args: &[&str]) -> Exporter {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(BIN)
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--maps.read-interval",
                "100ms",
            ])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let exporter = Exporter { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while exporter.try_get("/-/ready", "").map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "exporter not ready after 30s");
            std::thread::sleep(Duration::from_millis(50));
        }
        exporter
    }

    fn try_get(&self, path: &str, headers: &str) -> Option<(u16, String, String)> {
        self.request("GET", path, headers)
    }

    fn request(&self, method: &str, path: &str, headers: &str) -> Option<(u16, String, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, head.to_string(), body.to_string()))
    }

    fn get(&self, path: &str, headers: &str) -> (u16, String, String) {
        self.try_get(path, headers)
            .unwrap_or_else(|| panic!("GET {path} failed"))
    }

    /// Value of the sample line starting with `series ` in /metrics.
    fn sample(&self, series: &str) -> u64 {
        let body = self.get("/metrics", "").2;
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0, |v| v.parse().unwrap())
    }

    fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exporter exited with {status}");
    }
}

#[test]
fn metrics_over_http_move_by_exactly_the_events_driven() {
    if !bpf_available() {
        return;
    }
    let exporter = Exporter::start(&["--config.names", "syscalls"]);
    let series = r#"ebpf_syscalls_total{syscall="sched_get_priority_min"}"#;
    let before = exporter.sample(series);
    for _ in 0..500 {
        // SAFETY: a query with no memory arguments.
        unsafe { libc::sched_get_priority_min(libc::SCHED_OTHER) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = exporter.sample(series);
    while after < before + 500 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = exporter.sample(series);
    }
    assert_eq!(after - before, 500);

    let (status, head, body) = exporter.get("/metrics", "");
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        body.contains(r#"bpf_exporter_program_attached{config="syscalls",program="sys_enter"} 1"#),
        "{body}"
    );
    assert!(body.contains(r#"bpf_exporter_config_state{config="syscalls",state="running"} 1"#));
    promtool_check(&body);

    let (_, head, body) = exporter.get(
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0\r\n",
    );
    assert!(
        head.contains("application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE ebpf_syscalls counter"));

    let (status, _, page) = exporter.get("/", "");
    assert_eq!(status, 200);
    assert!(page.contains("syscalls") && page.contains("sys_enter"));
    assert_eq!(exporter.get("/-/healthy", "").0, 200);
    exporter.stop();
}

fn promtool_check(body: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but promtool is not installed"
        );
        eprintln!("promtool not found; skipping the lint");
        return;
    };
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_check_reports_every_error_with_its_place_and_fails() {
    let dir = std::env::temp_dir().join(format!("bpf-exporter-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("syscalls.yaml"),
        "metrics:\n  counters:\n    - name: syscalls_total\n      help: x\n      labels:\n        - name: syscall\n          size: 4\n          decoders:\n            - name: uintt\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config.check", "--config.dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let file = dir.join("syscalls.yaml");
    assert!(
        stdout.contains(&format!(
            "{}:9:21: metrics.counters[0].labels[0].decoders[0]: unknown decoder \"uintt\"",
            file.display()
        )),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_check_passes_on_the_embedded_defaults() {
    if !bpf_available() {
        return;
    }
    let out = Command::new(BIN).arg("--config.check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = bpf_exporter::config::EMBEDDED_CONFIGS.len();
    assert!(stdout.contains(&format!("{n} of {n} configs good")), "{stdout}");
}

#[test]
fn unknown_config_name_is_an_error_listing_the_known_ones() {
    let out = Command::new(BIN)
        .args(["--config.check", "--config.names", "sycalls"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let known: Vec<&str> = bpf_exporter::config::EMBEDDED_CONFIGS
        .iter()
        .map(|c| c.name)
        .collect();
    assert!(
        stderr.contains("no config named \"sycalls\"") && stderr.contains(&known.join(", ")),
        "{stderr}"
    );
}

/// Polls /metrics until `check` holds; returns how long that took.
fn until(exporter: &Exporter, what: &str, check: impl Fn(&str) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check(&exporter.get("/metrics", "").2) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn config_changes_apply_while_running() {
    if !bpf_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("bpf-exporter-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let embedded = |name: &str| {
        bpf_exporter::config::EMBEDDED_CONFIGS
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .text
    };
    let syscalls = embedded("syscalls");
    let path = dir.join("syscalls.yaml");
    std::fs::write(&path, syscalls).unwrap();
    // A long safety-net interval: only file events may trigger here.
    let exporter = Exporter::start(&[
        "--config.dir",
        dir.to_str().unwrap(),
        "--config.check-interval",
        "1h",
    ]);
    assert!(exporter
        .get("/metrics", "")
        .2
        .contains("# TYPE ebpf_syscalls_total counter"));

    // An editor's save: a new file renamed over the old one.
    let edited = syscalls.replace("help: System calls entered, by syscall name.", "help: Reloaded.");
    std::fs::write(dir.join(".syscalls.yaml.swp"), &edited).unwrap();
    std::fs::rename(dir.join(".syscalls.yaml.swp"), &path).unwrap();
    let applied = until(&exporter, "the edited help", |m| {
        m.contains("# HELP ebpf_syscalls_total Reloaded.")
    });
    eprintln!("edit applied after {applied:?}");

    // A broken change is refused; the running version stays.
    std::fs::write(&path, edited.replace("size: 8", "size: eight")).unwrap();
    let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("syscalls.yaml:") && body.contains("labels[0].size"),
        "{body}"
    );
    let metrics = exporter.get("/metrics", "").2;
    assert!(
        metrics.contains("# HELP ebpf_syscalls_total Reloaded."),
        "{metrics}"
    );
    assert!(
        metrics.contains("bpf_exporter_config_last_reload_successful 0"),
        "{metrics}"
    );

    // Added and removed files.
    std::fs::write(&path, &edited).unwrap();
    std::fs::write(dir.join("execs.yaml"), embedded("execs")).unwrap();
    until(&exporter, "execs", |m| {
        m.contains("bpf_exporter_config_state{config=\"execs\",state=\"running\"} 1")
    });
    std::fs::remove_file(&path).unwrap();
    until(&exporter, "syscalls gone", |m| !m.contains("ebpf_syscalls_total"));

    // SIGHUP reloads (and does not end the process).
    let before = exporter.sample("bpf_exporter_config_reloads_total{result=\"success\"}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(exporter.child.id() as i32, libc::SIGHUP) };
    until(&exporter, "a SIGHUP reload", |m| {
        m.lines()
            .find_map(|l| l.strip_prefix("bpf_exporter_config_reloads_total{result=\"success\"} "))
            .is_some_and(|v| v.parse::<u64>().unwrap() > before)
    });
    exporter.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}
