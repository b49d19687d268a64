//! The real binary: flags, exit codes, `/metrics` over HTTP with the
//! numbers the kernel produced, and output that promtool accepts.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bpf_available, free_port, tcp_connect, tool_available};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_bpf-exporter");

pub(crate) struct Exporter {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for Exporter {
    /// A test that fails must not leave its exporter running (it would hold
    /// the test's output pipe open).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of embedded config `name`.
pub(crate) fn embedded(name: &str) -> &'static str {
    bpf_exporter::config::EMBEDDED_CONFIGS
        .iter()
        .find(|c| c.name == name)
        .unwrap()
        .text
}

/// HTTP to an exporter another handle owns.
struct Client {
    port: u16,
}

impl Client {
    fn get(&self, path: &str, headers: &str) -> (u16, String, String) {
        http(self.port, "GET", path, headers).unwrap_or_else(|| panic!("GET {path} failed"))
    }
}

/// Whether 127.0.0.1:`port` answers `GET path` with 200: the wait for a
/// server coming up.
pub(crate) fn answers_ok(port: u16, path: &str) -> bool {
    http(port, "GET", path, "").map(|r| r.0) == Some(200)
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: status, head and body (its
/// chunks joined, where the server sent it chunked, as Prometheus does).
pub(crate) fn http(port: u16, method: &str, path: &str, headers: &str) -> Option<(u16, String, String)> {
    let mut stream = tcp_connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..split]).ok()?;
    let body = &response[split + 4..];
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Some((status, head.to_string(), String::from_utf8(body).ok()?))
}

/// A chunked body's data (RFC 9112 section 7.1); `None` if it is cut short.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let end = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(data);
        }
        let rest = &body[end + 2..];
        data.extend_from_slice(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

impl Exporter {
    /// Runs on the configs of `dir`, with a periodic check so rare that
    /// only file events and explicit reloads (`POST /-/reload`, enabled)
    /// can apply a change.
    pub(crate) fn watching(dir: &std::path::Path) -> Exporter {
        Exporter::start(&[
            "--config.dir",
            dir.to_str().unwrap(),
            "--config.check-interval",
            "1h",
            "--web.enable-lifecycle",
        ])
    }

    pub(crate) fn start(args: &[&str]) -> Exporter {
        Exporter::spawn(args, Stdio::inherit())
    }

    /// Its log kept off the test's output: for an exporter meant to fail,
    /// whose errors would read as the test's own.
    pub(crate) fn start_unlogged(args: &[&str]) -> Exporter {
        Exporter::spawn(args, Stdio::null())
    }

    fn spawn(args: &[&str], log: Stdio) -> Exporter {
        Exporter::spawn_until(args, log, "/-/ready")
    }

    /// Started and answering `path` with 200 (`/-/healthy`: serving, ready
    /// or not), its log going to `log`.
    pub(crate) fn spawn_until(args: &[&str], log: Stdio, path: &str) -> Exporter {
        Exporter::spawn_answering(args, log, |port| answers_ok(port, path))
    }

    /// Started, on 127.0.0.1 and a free port, once `answers(port)` holds:
    /// for exporters not spoken to in plain HTTP.
    pub(crate) fn spawn_answering(args: &[&str], log: Stdio, answers: impl Fn(u16) -> bool) -> Exporter {
        Exporter::spawn_wrapped(&[], args, log, answers)
    }

    /// [`Exporter::spawn_answering`], run through `wrapper` (such as
    /// `prlimit --nofile=…`).
    pub(crate) fn spawn_wrapped(
        wrapper: &[&str],
        args: &[&str],
        log: Stdio,
        answers: impl Fn(u16) -> bool,
    ) -> Exporter {
        Exporter::spawn_binary(BIN, wrapper, args, log, answers)
    }

    /// [`Exporter::spawn_wrapped`] with the binary at `bin` (a copy that
    /// an unprivileged uid may run).
    pub(crate) fn spawn_binary(
        bin: &str,
        wrapper: &[&str],
        args: &[&str],
        log: Stdio,
        answers: impl Fn(u16) -> bool,
    ) -> Exporter {
        let port = free_port();
        let (program, wrapper_args) = match wrapper.split_first() {
            Some((program, rest)) => (*program, [rest, &[bin]].concat()),
            None => (bin, Vec::new()),
        };
        let child = Command::new(program)
            .args(wrapper_args)
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--maps.read-interval",
                "100ms",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let exporter = Exporter { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !answers(port) {
            assert!(Instant::now() < deadline, "exporter: not answering after 30s");
            std::thread::sleep(Duration::from_millis(50));
        }
        exporter
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn try_get(&self, path: &str, headers: &str) -> Option<(u16, String, String)> {
        self.request("GET", path, headers)
    }

    pub(crate) fn request(&self, method: &str, path: &str, headers: &str) -> Option<(u16, String, String)> {
        http(self.port, method, path, headers)
    }

    fn client(port: u16) -> Client {
        Client { port }
    }

    pub(crate) fn get(&self, path: &str, headers: &str) -> (u16, String, String) {
        self.try_get(path, headers)
            .unwrap_or_else(|| panic!("GET {path} failed"))
    }

    /// Value of the sample line starting with `series ` in /metrics.
    pub(crate) fn sample(&self, series: &str) -> u64 {
        let body = self.get("/metrics", "").2;
        sample_text(&body, series).map_or(0, |v| v.parse().unwrap())
    }

    /// [`Exporter::sample`] once it reaches `wanted`, or after 10 s
    /// whatever it is: reads run every 100 ms.
    pub(crate) fn sample_reaching(&self, series: &str, wanted: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = self.sample(series);
        while seen < wanted && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            seen = self.sample(series);
        }
        seen
    }

    /// Every default config running, and 500 `sched_get_priority_min`
    /// calls counted exactly: the default set works in this exporter.
    pub(crate) fn assert_default_set_counts_exactly(&self) {
        let body = self.get("/metrics", "").2;
        let defaults = bpf_exporter::config::EMBEDDED_CONFIGS
            .iter()
            .filter(|c| c.default);
        for config in defaults {
            let running = format!(
                r#"bpf_exporter_config_state{{config="{}",state="running"}} 1"#,
                config.name
            );
            assert!(body.contains(&running), "{} is not running:\n{body}", config.name);
        }
        assert_eq!(self.count_priority_min_queries(500, 500), 500);
    }

    /// What `n` `sched_get_priority_min` calls add to this exporter's
    /// count, read once it reaches `want`. Every exporter counts the
    /// machine's calls, so the tests that drive them take turns.
    pub(crate) fn count_priority_min_queries(&self, n: usize, want: u64) -> u64 {
        self.count_priority_min_queries_in(
            r#"ebpf_syscalls_total{syscall="sched_get_priority_min"}"#,
            n,
            want,
        )
    }

    /// [`Exporter::count_priority_min_queries`] as `series` counts them.
    pub(crate) fn count_priority_min_queries_in(&self, series: &str, n: usize, want: u64) -> u64 {
        self.count_priority_min_queries_holding(&priority_min_turn(), series, n, want)
    }

    /// [`Exporter::count_priority_min_queries_in`] for a test that holds
    /// the turn across more than one count.
    pub(crate) fn count_priority_min_queries_holding(
        &self,
        _turn: &PriorityMinTurn,
        series: &str,
        n: usize,
        want: u64,
    ) -> u64 {
        let before = self.sample(series);
        priority_min_queries(n);
        self.sample_reaching(series, before + want) - before
    }

    /// The `/-/status` entry of config `name`.
    pub(crate) fn config_status(&self, name: &str) -> serde_json::Value {
        let status: serde_json::Value = serde_json::from_str(&self.get("/-/status", "").2).unwrap();
        status["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .clone()
    }

    pub(crate) fn stop(mut self) {
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
    assert_eq!(exporter.count_priority_min_queries(500, 500), 500);

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

/// The value, as written, of the sample line `series` of a /metrics page.
pub(crate) fn sample_text<'a>(page: &'a str, series: &str) -> Option<&'a str> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

/// Held while a test drives `sched_get_priority_min` calls and counts them:
/// every exporter counts the machine's calls, so the tests take turns, in
/// this process (the mutex) and with test runs of other checkouts on the
/// same machine (an flock on a file every run shares).
pub(crate) struct PriorityMinTurn {
    _file: std::fs::File,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// The turn is given up once every exporter has read what the calls made
/// under it (test exporters read every 100 ms), so that none counts them
/// in the next test's turn.
impl Drop for PriorityMinTurn {
    fn drop(&mut self) {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

pub(crate) fn priority_min_turn() -> PriorityMinTurn {
    use std::os::fd::AsRawFd;
    static DRIVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let turn = DRIVING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = std::env::temp_dir().join("bpf-exporter-tests-priority-min.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: flock on an fd this function owns; released when it closes.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "flock {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    PriorityMinTurn {
        _file: file,
        _turn: turn,
    }
}

/// `n` `sched_get_priority_min` calls, counted by the syscalls config.
pub(crate) fn priority_min_queries(n: usize) {
    for _ in 0..n {
        // SAFETY: a query with no memory arguments.
        unsafe { libc::sched_get_priority_min(libc::SCHED_OTHER) };
    }
}

/// `promtool check metrics` accepts `body` without a word.
pub(crate) fn promtool_check(body: &str) {
    if !tool_available("promtool") {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("syscalls.yaml"),
        "metrics:\n  counters:\n    - name: syscalls_total\n      help: x\n      labels:\n        - name: syscall\n          size: 4\n          decoders:\n            - name: uintt\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config.check", "--config.dir"])
        .arg(dir)
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
    let n = bpf_exporter::config::EMBEDDED_CONFIGS
        .iter()
        .filter(|c| c.default)
        .count();
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
        // The log line quotes the message, and the name in it (logfmt).
        stderr.contains(r#"no config named \"sycalls\""#) && stderr.contains(&known.join(", ")),
        "{stderr}"
    );
}

/// Polls /metrics until `check` holds; returns how long that took.
pub(crate) fn until(exporter: &Exporter, what: &str, check: impl Fn(&str) -> bool) -> Duration {
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
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let syscalls = embedded("syscalls");
    let path = dir.join("syscalls.yaml");
    std::fs::write(&path, syscalls).unwrap();
    let exporter = Exporter::watching(dir);
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
    let successes = "bpf_exporter_config_reloads_total{result=\"success\"}";
    let before = exporter.sample(successes);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(exporter.child.id() as i32, libc::SIGHUP) };
    until(&exporter, "a SIGHUP reload", |m| {
        sample_text(m, successes).is_some_and(|v| v.parse::<u64>().unwrap() > before)
    });
    exporter.stop();
}

/// The exporter's open BPF objects by kind, all its fds, and its RSS in kB.
fn footprint(pid: u32) -> (BTreeMap<String, usize>, usize, u64) {
    let mut kinds = BTreeMap::new();
    let mut total = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        total += 1;
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(kind) = target.strip_prefix("anon_inode:") {
                if kind.starts_with("bpf") {
                    *kinds.entry(kind.to_string()).or_default() += 1;
                }
            }
        }
    }
    // No BPF object is pinned, so the kernel frees each one with its last
    // fd: the process's BPF fds are what the kernel holds for it.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    (kinds, total, rss)
}

#[test]
fn hundreds_of_reloads_under_scrapes_leak_nothing() {
    if !bpf_available() {
        return;
    }
    const RELOADS: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = embedded("syscalls");
    let versions = [
        text.to_string(),
        text.replace("help: System calls entered", "help: Syscalls entered"),
    ];
    let path = dir.join("syscalls.yaml");
    std::fs::write(&path, &versions[0]).unwrap();
    let exporter = Exporter::watching(dir);
    let pid = exporter.child.id();
    // One reload cycle first, so buffers that live for good are allocated.
    for version in versions.iter().rev() {
        std::fs::write(&path, version).unwrap();
        assert_eq!(exporter.request("POST", "/-/reload", "").unwrap().0, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (kinds_before, fds_before, rss_before) = footprint(pid);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let port = exporter.port;
    let (scrapes, reload_times) = std::thread::scope(|scope| {
        let scraper = scope.spawn(|| {
            let client = Exporter::client(port);
            let mut scrapes = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _, body) = client.get("/metrics", "");
                assert_eq!(status, 200);
                // Never a partial state: the family is there in every scrape,
                // with one of the two help texts, and the self-metrics end it.
                assert!(
                    body.contains("# HELP ebpf_syscalls_total System calls entered")
                        || body.contains("# HELP ebpf_syscalls_total Syscalls entered"),
                    "a scrape without the syscalls family"
                );
                assert!(body.contains("bpf_exporter_last_read_timestamp_seconds "));
                scrapes += 1;
            }
            scrapes
        });
        let mut times = Vec::new();
        for i in 0..RELOADS {
            std::fs::write(&path, &versions[(i + 1) % 2]).unwrap();
            let started = Instant::now();
            let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
            times.push(started.elapsed());
            assert_eq!(status, 200, "{body}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (scraper.join().unwrap(), times)
    });
    std::thread::sleep(Duration::from_millis(300));
    let (kinds_after, fds_after, rss_after) = footprint(pid);
    let mut sorted = reload_times.clone();
    sorted.sort();
    eprintln!(
        "{RELOADS} reloads under {scrapes} scrapes: reload median {:?}, worst {:?}; bpf fds {kinds_before:?} -> \
         {kinds_after:?}; fds {fds_before} -> {fds_after}; RSS {rss_before} kB -> {rss_after} kB",
        sorted[RELOADS / 2],
        sorted[RELOADS - 1]
    );
    assert!(scrapes > 0);
    assert_eq!(kinds_after, kinds_before, "BPF objects leaked");
    assert_eq!(fds_after, fds_before, "file descriptors leaked");
    // Allocator noise, not growth per reload: 300 leaked configs would be
    // tens of MB.
    assert!(
        rss_after < rss_before + 4096,
        "RSS grew from {rss_before} to {rss_after} kB"
    );
    exporter.stop();
}

#[test]
fn a_configmap_style_symlink_swap_applies() {
    if !bpf_available() {
        return;
    }
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = embedded("syscalls");
    // Kubernetes' layout: <name> -> ..data/<name>, ..data -> ..<timestamp>/.
    let publish = |generation: usize, help: &str| {
        let data = dir.join(format!("..gen_{generation}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(
            data.join("syscalls.yaml"),
            text.replace(
                "help: System calls entered, by syscall name.",
                &format!("help: {help}"),
            ),
        )
        .unwrap();
        symlink(data.file_name().unwrap(), dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    };
    publish(0, "Generation 0.");
    symlink("..data/syscalls.yaml", dir.join("syscalls.yaml")).unwrap();
    let exporter = Exporter::watching(dir);
    assert!(exporter
        .get("/metrics", "")
        .2
        .contains("# HELP ebpf_syscalls_total Generation 0."));
    let mut latencies = Vec::new();
    for generation in 1..=20 {
        publish(generation, &format!("Generation {generation}."));
        let wanted = format!("# HELP ebpf_syscalls_total Generation {generation}.");
        latencies.push(until(&exporter, &wanted, |m| m.contains(&wanted)));
    }
    latencies.sort();
    eprintln!(
        "ConfigMap swap to new metrics served: median {:?}, worst {:?} (20 swaps)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    exporter.stop();
}

/// Every line of the log is one record with `time`, `level` and `msg`, in
/// both formats, including a config's failure report, which spans lines.
#[test]
fn every_log_line_is_one_record_in_logfmt_and_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "metrics:\n  counters:\n    - name: x\n      tabel: y\n",
    )
    .unwrap();
    for format in ["logfmt", "json"] {
        let log = tempfile::NamedTempFile::new().unwrap();
        let exporter = Exporter::spawn_until(
            &[
                "--config.dir",
                dir.path().to_str().unwrap(),
                "--log.format",
                format,
            ],
            Stdio::from(log.reopen().unwrap()),
            "/-/healthy",
        );
        drop(exporter);
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.iter().any(|l| l.contains("tabel")),
            "{format}: the report is logged:\n{text}"
        );
        for line in lines {
            match format {
                "json" => {
                    let record: serde_json::Value =
                        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                    for key in ["time", "level", "msg"] {
                        assert!(record[key].is_string(), "{key} in {line}");
                    }
                }
                _ => assert!(
                    line.starts_with("time=20") && line.contains(" level=") && line.contains(" msg="),
                    "{line}"
                ),
            }
        }
    }
}

#[test]
fn version_names_the_build() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!("bpf-exporter {} (revision ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    assert!(text.contains(", rustc 1.") && text.contains("-linux-"), "{text}");
}
