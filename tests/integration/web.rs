//! The web endpoint as operators deploy it, against the real binary and
//! real clients: TLS, client certificates and basic authentication with
//! curl, a web configuration changed under a running exporter, slow and
//! idle clients, the open-files limit, memory after a burst of
//! connections, the lifecycle switch, and systemd's socket activation and
//! readiness protocol. (Prometheus scraping over TLS with basic auth is in
//! `prometheus.rs`, beside the other Prometheus tests.)

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary::{answers_ok, http, priority_min_queries, sample_text, Exporter};
use crate::common::{bpf_available, tool_available};

/// A CA, a server certificate for 127.0.0.1 and localhost signed by it, a
/// client certificate signed by it (naming itself `scraper.example`,
/// `prom@example.com`, `spiffe://example/prometheus` and `192.0.2.7`), a
/// "sibling" client certificate of the same CA naming `intruder.example`,
/// and a "stranger" client certificate signed by another CA; made with the
/// openssl CLI.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        assert!(tool_available("openssl"), "the TLS tests need openssl");
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("client.ext"),
            "subjectAltName=DNS:scraper.example,email:prom@example.com,URI:spiffe://example/prometheus,\
             IP:192.0.2.7\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sibling.ext"),
            "subjectAltName=DNS:intruder.example\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        for (name, subject) in [("ca", "/CN=test ca"), ("other-ca", "/CN=other ca")] {
            let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
            run(&[
                &["req", "-x509"],
                &ec[..],
                &["-days", "2", "-subj", subject, "-keyout", &key, "-out", &crt],
            ]
            .concat());
        }
        for (name, ca, ext) in [
            ("server", "ca", "server.ext"),
            ("client", "ca", "client.ext"),
            ("sibling", "ca", "sibling.ext"),
            ("stranger", "other-ca", "client.ext"),
        ] {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let subject = format!("/CN={name}");
            run(&[
                &["req"],
                &ec[..],
                &["-subj", &subject, "-keyout", &key, "-out", &csr],
            ]
            .concat());
            let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                &crt,
            ]);
        }
        Pki { dir }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

/// bcrypt of `password` at the lowest cost: what is tested is the check,
/// not the cost.
pub(crate) fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// A web configuration with TLS (client certificates required, from the
/// test CA), basic auth for alice:secret and one security header.
pub(crate) fn secured_web_config(pki: &Pki) -> String {
    format!(
        "\
tls_server_config:
  cert_file: {}
  key_file: {}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {}
basic_auth_users:
  alice: {}
http_server_config:
  headers:
    X-Frame-Options: deny
",
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt"),
        bcrypt_hash("secret"),
    )
}

/// What curl got: the HTTP status (`None` when there was no HTTP answer,
/// such as a refused handshake), the body and curl's error text.
struct Curl {
    status: Option<u16>,
    body: String,
    error: String,
}

fn curl(url: &str, args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", url])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Curl {
        status: code.trim().parse().ok().filter(|c| *c != 0),
        body: body.to_string(),
        error: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// curl with the CA and the certificate and key of `holder` (`client`,
/// `sibling`, `stranger`).
fn holding(pki: &Pki, holder: &str) -> Vec<String> {
    let (crt, key) = (format!("{holder}.crt"), format!("{holder}.key"));
    [
        "--cacert",
        &pki.path("ca.crt"),
        "--cert",
        &pki.path(&crt),
        "--key",
        &pki.path(&key),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// curl as the trusted client, with `extra` (such as alice's password).
fn trusted(pki: &Pki, extra: &[&str]) -> Vec<String> {
    let mut args = holding(pki, "client");
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn write(path: &Path, text: &str) {
    // Written aside and renamed, as editors and Kubernetes do.
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn log_file() -> (tempfile::NamedTempFile, Stdio) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let stdio = Stdio::from(log.reopen().unwrap());
    (log, stdio)
}

const SERIES: &str = r#"ebpf_syscalls_total{syscall="sched_get_priority_min"}"#;

/// Used to: `client_allowed_sans` was refused as not supported.
#[test]
fn client_allowed_sans_admit_only_certificates_carrying_a_listed_name() {
    if !bpf_available() || !tool_available("curl") {
        return;
    }
    let pki = Pki::new();
    let web = pki.path("web.yml");
    let (client, sibling) = (holding(&pki, "client"), holding(&pki, "sibling"));
    // Each kind of name the client's certificate carries, one at a time.
    for allowed in [
        "scraper.example",
        "prom@example.com",
        "spiffe://example/prometheus",
        "192.0.2.7",
    ] {
        std::fs::write(
            &web,
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: VerifyClientCertIfGiven\n  \
                 client_ca_file: {}\n  client_allowed_sans: [\"{allowed}\", other.example]\n",
                pki.path("server.crt"),
                pki.path("server.key"),
                pki.path("ca.crt")
            ),
        )
        .unwrap();
        let exporter = Exporter::spawn_answering(
            &["--config.names", "syscalls", "--web.config.file", &web],
            Stdio::inherit(),
            |port| curl(&format!("https://127.0.0.1:{port}/-/ready"), &refs(&client)).status == Some(200),
        );
        let url = format!("https://127.0.0.1:{}/metrics", exporter.port);
        let reply = curl(&url, &refs(&client));
        assert_eq!(reply.status, Some(200), "{allowed}: {}", reply.error);
        assert!(reply.body.contains("ebpf_syscalls_total"), "{allowed}");
        // Same CA, none of the names; and no certificate at all, which
        // VerifyClientCertIfGiven alone would let through.
        let refused = curl(&url, &refs(&sibling));
        assert_eq!(
            refused.status, None,
            "{allowed}: served to a certificate without the name"
        );
        let anonymous = curl(&url, &["--cacert", &pki.path("ca.crt")]);
        assert_eq!(anonymous.status, None, "{allowed}: served without a certificate");
        exporter.stop();
    }

    // Without client certificates there is nothing to check: refused at
    // start, with the place and the fix.
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_allowed_sans: [scraper.example]\n",
            pki.path("server.crt"),
            pki.path("server.key"),
        ),
    )
    .unwrap();
    let out = Command::new(crate::binary::BIN)
        .args(["--config.names", "syscalls", "--web.config.file", &web])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("{web}:4:24: tls_server_config.client_allowed_sans: client_allowed_sans needs client certificates"))
            && log.contains("RequireAndVerifyClientCert"),
        "{log}"
    );
}

#[test]
fn tls_client_certificates_and_basic_auth_admit_only_the_configured_client() {
    if !bpf_available() || !tool_available("curl") {
        return;
    }
    let pki = Pki::new();
    let web = pki.path("web.yml");
    std::fs::write(&web, secured_web_config(&pki)).unwrap();
    let ok = trusted(&pki, &["-u", "alice:secret"]);
    let exporter = Exporter::spawn_answering(
        &["--config.names", "syscalls", "--web.config.file", &web],
        Stdio::inherit(),
        |port| curl(&format!("https://127.0.0.1:{port}/-/ready"), &refs(&ok)).status == Some(200),
    );
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", exporter.port);
    let count = || -> u64 {
        let reply = curl(&url("/metrics"), &refs(&ok));
        assert_eq!(reply.status, Some(200), "{}", reply.error);
        sample_text(&reply.body, SERIES).map_or(0, |v| v.parse().unwrap())
    };

    // Exact counts, over TLS.
    let turn = crate::binary::priority_min_turn();
    let before = count();
    priority_min_queries(300);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = count();
    while now < before + 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        now = count();
    }
    assert_eq!(now - before, 300);
    drop(turn);
    let page = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", &url("/-/healthy")])
        .args(refs(&ok))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&page.stdout).to_ascii_lowercase();
    assert!(head.contains("x-frame-options: deny"), "{head}");

    // Wrong password, unknown user, no password: 401 asking for basic auth.
    for creds in [&["-u", "alice:Secret"][..], &["-u", "bob:secret"], &[]] {
        let reply = curl(&url("/metrics"), &refs(&trusted(&pki, creds)));
        assert_eq!(reply.status, Some(401), "{creds:?}: {}", reply.error);
        assert!(!reply.body.contains("ebpf_"), "{creds:?}");
    }
    // Health and reload are behind the same authentication.
    let reply = curl(&url("/-/healthy"), &refs(&trusted(&pki, &[])));
    assert_eq!(reply.status, Some(401));
    let reply = curl(&url("/-/reload"), &refs(&trusted(&pki, &["-X", "POST"])));
    assert_eq!(reply.status, Some(401));

    // No client certificate, or one from another CA: no HTTP at all.
    let anonymous = curl(
        &url("/metrics"),
        &["--cacert", &pki.path("ca.crt"), "-u", "alice:secret"],
    );
    assert_eq!(anonymous.status, None, "served without a client certificate");
    let mut stranger = holding(&pki, "stranger");
    stranger.extend(["-u".to_string(), "alice:secret".to_string()]);
    let stranger = curl(&url("/metrics"), &refs(&stranger));
    assert_eq!(stranger.status, None, "served to an untrusted client certificate");
    // Plain HTTP to the TLS port gets no metrics.
    assert_ne!(http(exporter.port, "GET", "/metrics", "").map(|r| r.0), Some(200));
    exporter.stop();
}

#[test]
fn a_changed_web_config_applies_and_a_broken_one_keeps_the_running_one() {
    if !tool_available("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let users = |password: &str| format!("basic_auth_users:\n  alice: {}\n", bcrypt_hash(password));
    write(&web, &users("first"));
    let (log, stdio) = log_file();
    let exporter = Exporter::spawn_answering(
        &[
            "--config.dir",
            dir.path().to_str().unwrap(),
            "--web.config.file",
            web.to_str().unwrap(),
        ],
        stdio,
        |port| {
            curl(
                &format!("http://127.0.0.1:{port}/-/healthy"),
                &["-u", "alice:first"],
            )
            .status
                == Some(200)
        },
    );
    let status = |password: &str| {
        curl(
            &format!("http://127.0.0.1:{}/-/healthy", exporter.port),
            &["-u", &format!("alice:{password}")],
        )
        .status
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "gave up waiting: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    write(&web, &users("second"));
    wait_for("the new password", &|| status("second") == Some(200));
    assert_eq!(status("first"), Some(401));

    // A broken file: refused with its place, the running one stays.
    write(&web, "basic_auth_users:\n  alice: second\n");
    wait_for("the refusal in the log", &|| {
        std::fs::read_to_string(log.path())
            .unwrap()
            .contains("web configuration refused")
    });
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        text.contains("web.yml:2:10: basic_auth_users.alice: not a bcrypt hash"),
        "{text}"
    );
    assert_eq!(status("second"), Some(200));

    // SIGHUP reads it again even when nothing changed on disk.
    write(&web, &users("third"));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(exporter.pid() as i32, libc::SIGHUP) };
    wait_for("the third password", &|| status("third") == Some(200));
    exporter.stop();
}

#[test]
fn a_broken_web_config_at_start_is_fatal_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bpf-exporter"))
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.config.file",
            web.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web.yml:2:14: tls_server_config.cert_file: cannot read"),
        "{err}"
    );
}

#[test]
fn the_lifecycle_api_is_off_unless_enabled() {
    if !bpf_available() {
        return;
    }
    let exporter = Exporter::start(&["--config.names", "syscalls"]);
    let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--web.enable-lifecycle"), "{body}");
    exporter.stop();
    let exporter = Exporter::start(&["--config.names", "syscalls", "--web.enable-lifecycle"]);
    let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    assert_eq!(status, 200, "{body}");
    exporter.stop();
}

/// The slowest of the scrapes made while `during` runs, one every 100 ms;
/// each must be a 200.
fn slowest_scrape(port: u16, during: impl FnOnce() + Send) -> Duration {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let scraper = scope.spawn(|| {
            let mut slowest = Duration::ZERO;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let reply = http(port, "GET", "/metrics", "");
                assert_eq!(reply.map(|r| r.0), Some(200), "a normal scrape failed");
                slowest = slowest.max(started.elapsed());
                std::thread::sleep(Duration::from_millis(100));
            }
            slowest
        });
        during();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        scraper.join().unwrap()
    })
}

/// What the README promises for a normal scrape under a slow-client flood:
/// well inside a kubelet probe's 1 s timeout.
const SCRAPE_BOUND: Duration = Duration::from_millis(500);

/// Hundreds of clients that send their headers a byte at a time (bounded:
/// 600 connections, 6 s, loopback), more than `--web.max-connections`:
/// the slow ones are closed to make room, reconnect, and normal scrapes
/// go on.
#[test]
fn slow_clients_do_not_delay_a_normal_scrape() {
    if !bpf_available() {
        return;
    }
    const SLOW: usize = 600;
    let exporter = Exporter::start(&["--config.names", "syscalls", "--web.max-connections", "200"]);
    let port = exporter.port;
    let mut reconnects = 0;
    let slowest = slowest_scrape(port, || {
        let connect = || {
            let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_nonblocking(true).unwrap();
            stream
        };
        let mut slow: Vec<TcpStream> = (0..SLOW).map(|_| connect()).collect();
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < Duration::from_secs(6) {
            let byte = &request[sent % request.len()..][..1];
            for stream in &mut slow {
                if matches!(stream.write(byte), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock) {
                    *stream = connect();
                    reconnects += 1;
                }
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    eprintln!("slowest normal scrape among {SLOW} slow clients: {slowest:?} ({reconnects} reconnects)");
    assert!(slowest < SCRAPE_BOUND, "a normal scrape took {slowest:?}");
    assert!(reconnects > 0, "the cap of 200 closed no slow client");
    // And it still counts exactly.
    assert_eq!(exporter.count_priority_min_queries(100, 100), 100);
    exporter.stop();
}

/// Raises this process's soft open-files limit to `n` (the test opens
/// thousands of connections).
fn allow_open_files(n: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    let ok = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && (limit.rlim_cur >= n || {
                limit.rlim_cur = n;
                limit.rlim_max = limit.rlim_max.max(n);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
            })
    };
    assert!(
        ok,
        "cannot raise this test's open-files limit to {n}: {}",
        std::io::Error::last_os_error()
    );
}

fn limits(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap()
}

/// Used to: under systemd's default soft limit of 1024 descriptors, ~940
/// idle connections took every one and scrapes timed out for ~25 s.
#[test]
fn idle_connections_past_the_soft_fd_limit_do_not_starve_scrapes() {
    if !bpf_available() || !tool_available("prlimit") {
        return;
    }
    allow_open_files(8192);
    let exporter = Exporter::spawn_wrapped(
        &["prlimit", "--nofile=1024:8192", "--"],
        &["--config.names", "syscalls"],
        Stdio::inherit(),
        |port| answers_ok(port, "/-/ready"),
    );
    let line = limits(exporter.pid())
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    assert!(
        line.split_whitespace().filter(|w| *w == "8192").count() == 2,
        "{line}"
    );
    let idle: Vec<TcpStream> = (0..1500)
        .map(|_| TcpStream::connect(("127.0.0.1", exporter.port)).unwrap())
        .collect();
    let started = Instant::now();
    let reply = http(exporter.port, "GET", "/metrics", "");
    assert_eq!(reply.map(|r| r.0), Some(200));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    exporter.stop();
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One keep-alive request on a new connection, its answer read, the
/// connection left open.
fn kept_alive(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 4096];
    let n = stream.read(&mut head).unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    stream
}

/// Used to: 5,000 connections left 83 MB resident for good (9 MB fresh).
#[test]
fn memory_of_a_burst_of_connections_is_given_back() {
    if !bpf_available() {
        return;
    }
    const CONNECTIONS: usize = 5000;
    allow_open_files(16384);
    let exporter = Exporter::start(&["--config.names", "syscalls", "--web.max-connections", "10000"]);
    for _ in 0..20 {
        drop(kept_alive(exporter.port));
    }
    let fresh = resident_kib(exporter.pid());
    let burst: Vec<TcpStream> = (0..CONNECTIONS).map(|_| kept_alive(exporter.port)).collect();
    let during = resident_kib(exporter.pid());
    drop(burst);
    // Closed connections are trimmed within 5 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut after = resident_kib(exporter.pid());
    while after > fresh + 8 * 1024 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        after = resident_kib(exporter.pid());
    }
    eprintln!("resident: {fresh} KiB fresh, {during} KiB with {CONNECTIONS} connections, {after} KiB after");
    assert!(
        after <= fresh + 8 * 1024,
        "{after} KiB after the burst, {fresh} KiB fresh"
    );
    exporter.stop();
}

/// A datagram socket standing in for systemd's notification socket.
struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).to_string()
    }
}

/// Under `systemd-socket-activate` (systemd's own tool for the protocol):
/// the exporter serves on the socket it is passed, says READY=1 only once
/// the first snapshot (with the programs' counts) is published, and
/// STOPPING=1 when told to stop.
#[test]
fn systemd_socket_activation_and_readiness_notification() {
    socket_activated("--web.systemd-socket");
}

/// ebpf_exporter's spelling of socket activation.
#[test]
fn listen_address_fd_0_is_socket_activation() {
    socket_activated("--web.listen-address=fd://0");
}

fn socket_activated(flag: &str) {
    if !bpf_available() || !tool_available("systemd-socket-activate") {
        return;
    }
    let notify = NotifySocket::new();
    let port = crate::common::free_port();
    let mut child = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}")])
        .args(["-E", &format!("NOTIFY_SOCKET={}", notify.path.display())])
        .args([
            env!("CARGO_BIN_EXE_bpf-exporter"),
            flag,
            "--config.names",
            "syscalls",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(&mut child);
    // systemd-socket-activate starts the exporter on the first connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            break stream;
        }
        assert!(
            Instant::now() < deadline,
            "systemd-socket-activate is not listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(first);
    let ready = notify.next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS=1 of 1 configs running"), "{ready:?}");
    let (status, _, body) = http(port, "GET", "/metrics", "").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"bpf_exporter_config_state{config="syscalls",state="running"} 1"#),
        "{body}"
    );
    assert!(
        body.contains("ebpf_syscalls_total{"),
        "READY=1 before the first snapshot:\n{body}"
    );
    // SAFETY: signalling our own child (systemd-socket-activate execs the exporter).
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let stopping = notify.next();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
}
