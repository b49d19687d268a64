//! Scrapes over loopback, as a fleet of Prometheus servers makes them:
//! concurrent keep-alive clients against the exporter binary on the
//! default configs (text 0.0.4, gzipped OpenMetrics as Prometheus asks for
//! it, and protobuf), requests per second and latency percentiles; then one
//! scraper against a snapshot of 100k series, served in-process, each scrape
//! of a snapshot just published (so it pays the encoding, as a scrape does
//! when maps are read more often than they are scraped) and of one already
//! encoded. Needs root (the binary loads the default set): `sudo cargo
//! bench --bench scrape`; `BPF_EXPORTER_BIN=path` runs another build of the
//! binary instead (to compare two on the same machine).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bpf_exporter::metrics::{Family, MetricKind, Sample, Snapshot, SnapshotCell, Value};
use bpf_exporter::server::{self, ServerOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long each concurrent run lasts, after its warm-up.
const RUN: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(1);
/// Scrapes of the 100k-series snapshot, per format and case.
const LARGE_SCRAPES: usize = 21;
const LARGE_SERIES: usize = 100_000;

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// What a client asks for.
#[derive(Clone, Copy)]
struct Ask {
    name: &'static str,
    accept: Option<&'static str>,
    gzip: bool,
}

const TEXT: Ask = Ask {
    name: "text",
    accept: None,
    gzip: false,
};
const GZIP_OPENMETRICS: Ask = Ask {
    name: "gzip+OpenMetrics",
    accept: Some(OPENMETRICS),
    gzip: true,
};
const GZIP_PROTOBUF: Ask = Ask {
    name: "gzip+protobuf",
    accept: Some(PROTOBUF),
    gzip: true,
};

impl Ask {
    fn request(self) -> Vec<u8> {
        let mut req = String::from("GET /metrics HTTP/1.1\r\nHost: bench\r\n");
        if let Some(accept) = self.accept {
            req.push_str(&format!("Accept: {accept}\r\n"));
        }
        if self.gzip {
            req.push_str("Accept-Encoding: gzip\r\n");
        }
        req.push_str("\r\n");
        req.into_bytes()
    }
}

/// One keep-alive connection speaking just enough HTTP/1.1 for `/metrics`
/// (a Content-Length body).
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Client {
            stream,
            buf: Vec::with_capacity(1 << 16),
        }
    }

    /// Sends `request` and reads the whole answer: its body's length.
    async fn scrape(&mut self, request: &[u8]) -> usize {
        self.stream.write_all(request).await.expect("send");
        self.buf.clear();
        let (head, length) = loop {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the exporter closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).expect("an ASCII head");
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .expect("a Content-Length");
                break (end + 4, length);
            }
        };
        let mut missing = (head + length).saturating_sub(self.buf.len());
        let mut sink = vec![0u8; missing.min(1 << 20)];
        while missing > 0 {
            let want = missing.min(sink.len());
            let n = self.stream.read(&mut sink[..want]).await.expect("read");
            assert!(n > 0, "the exporter closed the connection mid-body");
            missing -= n;
        }
        length
    }
}

/// `clients` connections scraping as fast as answers come for `RUN`:
/// requests per second, latency percentiles, the body size, and the CPU
/// time the exporter spent per scrape (what holds on a machine other work
/// shares, where rates and latencies move with its load).
fn concurrent(exporter: &Exporter, ask: Ask, clients: usize) {
    let port = exporter.port;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (latencies, body, cpu) = runtime.block_on(async {
        let mut connections = Vec::with_capacity(clients);
        for _ in 0..clients {
            connections.push(Client::connect(port).await);
        }
        let request = Arc::new(ask.request());
        let start = Instant::now() + WARM_UP;
        let end = start + RUN;
        let cpu_at_start = tokio::spawn({
            let pid = exporter.child.id();
            async move {
                tokio::time::sleep_until(start.into()).await;
                cpu_time(pid)
            }
        });
        let tasks: Vec<_> = connections
            .into_iter()
            .map(|mut client| {
                let request = Arc::clone(&request);
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut body = 0;
                    loop {
                        let sent = Instant::now();
                        if sent >= end {
                            break;
                        }
                        body = client.scrape(&request).await;
                        if sent >= start {
                            latencies.push(sent.elapsed());
                        }
                    }
                    (latencies, body)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut body = 0;
        for task in tasks {
            let (latencies, size) = task.await.expect("a client");
            all.extend(latencies);
            body = size;
        }
        let cpu = cpu_time(exporter.child.id()) - cpu_at_start.await.expect("the CPU time at start");
        (all, body, cpu)
    });
    let cpu_per_scrape = cpu / latencies.len() as u32;
    report(
        &format!("{clients:>5} clients, {:<16}", ask.name),
        latencies,
        Some(RUN),
        body,
    );
    println!("      exporter CPU {cpu_per_scrape:.1?} per scrape");
}

/// User and system time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the exporter's /proc stat");
    // After the command name in parentheses: state is field 3, utime and
    // stime fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 2..]
        .split(' ')
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

fn report(what: &str, mut latencies: Vec<Duration>, elapsed: Option<Duration>, body: usize) {
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let rate = elapsed.map_or(String::new(), |e| {
        format!("{:>8.0} req/s, ", latencies.len() as f64 / e.as_secs_f64())
    });
    println!(
        "{what} {rate}p50 {:>9.3?}, p99 {:>9.3?}, max {:>9.3?} ({} scrapes, body {} bytes)",
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1],
        latencies.len(),
        body
    );
}

/// The exporter binary on the embedded default configs; killed on drop.
struct Exporter {
    child: std::process::Child,
    port: u16,
}

impl Exporter {
    fn start() -> Exporter {
        let port = free_port();
        // BPF_EXPORTER_BIN compares another build on the same machine.
        let bin = std::env::var("BPF_EXPORTER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_bpf-exporter").to_string());
        let child = std::process::Command::new(bin)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .args(["--log.level", "warn"])
            .spawn()
            .expect("starting bpf-exporter");
        let exporter = Exporter { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(port) {
            assert!(
                Instant::now() < deadline,
                "bpf-exporter not ready after 60 s (run as root)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        exporter
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn ready(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut answer = String::new();
    stream
        .write_all(b"GET /-/ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut answer))
        .is_ok_and(|_| answer.starts_with("HTTP/1.1 200"))
}

/// 1,000 clients need more descriptors than the usual soft limit.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// `LARGE_SERIES` counters of two labels, as a map of connections or cgroups
/// gives them.
fn large_snapshot() -> Snapshot {
    let samples = (0..LARGE_SERIES)
        .map(|i| Sample {
            label_values: [
                format!("10.0.{}.{}", i / 256 % 256, i % 256),
                (i % 65536).to_string(),
            ]
            .into_iter()
            .collect(),
            value: Value::Counter(i as u64 * 7919),
        })
        .collect();
    Snapshot {
        families: vec![Arc::new(Family {
            name: "ebpf_bench_connections_total".into(),
            help: "Connections, by peer and port.".into(),
            kind: MetricKind::Counter,
            label_names: vec!["peer".into(), "port".into()],
            samples,
        })],
        taken_at: SystemTime::now(),
        not_ready: None,
        ..Snapshot::default()
    }
}

/// One scraper against a 100k-series snapshot served in-process, as the
/// binary serves it (one thread).
fn large() {
    let cell = Arc::new(SnapshotCell::default());
    let snapshot = large_snapshot();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let server_cell = Arc::clone(&cell);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let opts = ServerOptions {
                listen: "127.0.0.1:0".into(),
                ..ServerOptions::default()
            };
            let listener = server::bind(&opts).await.expect("bind");
            port_tx
                .send(listener.local_addr().expect("an address").port())
                .expect("the bench waits");
            let web = Arc::new(arc_swap::ArcSwap::from_pointee(server::web::Web::default()));
            server::serve(listener, opts, server_cell, web, None, std::future::pending()).await;
        });
    });
    let port = port_rx.recv().expect("the server's port");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut client = Client::connect(port).await;
        for ask in [TEXT, GZIP_OPENMETRICS, GZIP_PROTOBUF] {
            let request = ask.request();
            for fresh in [true, false] {
                let mut latencies = Vec::with_capacity(LARGE_SCRAPES);
                let mut body = 0;
                for _ in 0..LARGE_SCRAPES {
                    if fresh || latencies.is_empty() {
                        cell.publish(snapshot.clone());
                    }
                    let sent = Instant::now();
                    body = client.scrape(&request).await;
                    latencies.push(sent.elapsed());
                }
                let case = if fresh {
                    "new snapshot each"
                } else {
                    "same snapshot"
                };
                report(
                    &format!("{LARGE_SERIES} series, {:<16} {case:<17}", ask.name),
                    latencies,
                    None,
                    body,
                );
            }
        }
    });
}

/// `cargo bench --bench scrape -- concurrent` (or `large`) runs one part.
fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    raise_fd_limit();
    if run("concurrent") {
        let exporter = Exporter::start();
        println!("bpf-exporter on the default configs, 127.0.0.1:{}", exporter.port);
        for (ask, clients) in [
            (TEXT, 50),
            (GZIP_OPENMETRICS, 50),
            (GZIP_PROTOBUF, 50),
            (GZIP_OPENMETRICS, 1000),
        ] {
            concurrent(&exporter, ask, clients);
        }
    }
    if run("large") {
        large();
    }
}
