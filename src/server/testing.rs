//! What the server's tests share: a snapshot with awkward contents and a
//! real server on a loopback port, spoken to in raw HTTP/1.1 so that the
//! bytes on the wire, not a client library's reading of them, are checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::web::Web;
use super::{bind, serve, ReloadHook, ServerOptions};
use crate::metrics::{
    ConfigState, ConfigStatus, Family, MetricKind, ProgramStatus, Reason, Sample, SeriesLimited, Snapshot,
    SnapshotCell, Value,
};

pub(super) fn snapshot() -> Snapshot {
    Snapshot {
        families: vec![std::sync::Arc::new(Family {
            name: "ebpf_test_events_total".into(),
            help: "Events seen.".into(),
            kind: MetricKind::Counter,
            label_names: vec!["cpu".into()],
            samples: (0..64)
                .map(|cpu| Sample {
                    label_values: [cpu.to_string()].into(),
                    value: Value::Counter(cpu * 1000),
                })
                .collect(),
        })],
        configs: vec![
            ConfigStatus {
                name: "syscalls".into(),
                source: "embedded:configs/syscalls.yaml".into(),
                program: "syscalls".into(),
                state: ConfigState::Running,
                reason: None,
                error: None,
                rejected: None,
                programs: vec![ProgramStatus {
                    name: "count_enter".into(),
                    section: "tracepoint/raw_syscalls/sys_enter".into(),
                    attached: true,
                    ..ProgramStatus::default()
                }],
                cpu_budget: None,
            },
            ConfigStatus {
                name: "broken<script>".into(),
                source: "/etc/x & y.yaml".into(),
                program: "tcp".into(),
                state: ConfigState::Failed,
                reason: Some(Reason::HookMissing),
                error: Some("attach failed: \"<nope>\"".into()),
                rejected: None,
                programs: vec![ProgramStatus {
                    name: "kprobe_<x>".into(),
                    section: "kprobe/tcp_v4_connect".into(),
                    reason: Some(Reason::HookMissing),
                    error: Some("ENOENT <missing>".into()),
                    ..ProgramStatus::default()
                }],
                cpu_budget: None,
            },
        ],
        taken_at: SystemTime::now(),
        not_ready: None,
        series_limited: vec![SeriesLimited {
            config: "syscalls".into(),
            metric: "ebpf_syscalls_total".into(),
            limit: 10,
            dropped: 3,
        }],
    }
}

pub(super) struct TestServer {
    pub(super) addr: SocketAddr,
    pub(super) cell: Arc<SnapshotCell>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub(super) async fn start(publish: bool) -> TestServer {
        TestServer::start_with(publish, Web::default(), None).await
    }

    /// A server with the web configuration `web` and reload hook `reload`.
    pub(super) async fn start_with(publish: bool, web: Web, reload: Option<ReloadHook>) -> TestServer {
        let opts = ServerOptions {
            listen: "127.0.0.1:0".into(),
            ..ServerOptions::default()
        };
        let listener = bind(&opts).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let cell = Arc::new(SnapshotCell::default());
        if publish {
            cell.publish(snapshot());
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let web = Arc::new(arc_swap::ArcSwap::from_pointee(web));
        let task = tokio::spawn(serve(listener, opts, Arc::clone(&cell), web, reload, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            cell,
            stop: Some(stop),
            task,
        }
    }

    pub(super) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops")
            .expect("server task");
    }
}

pub(super) struct Reply {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(super) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }
}

/// Sends one raw HTTP/1.1 request and reads the reply to EOF.
/// `half_close` signals end of input, for requests the server would
/// otherwise keep waiting on.
pub(super) async fn raw(addr: SocketAddr, request: &str, half_close: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    if half_close {
        stream.shutdown().await.expect("half-close");
    }
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("reply in time")
        .expect("read reply");
    buf
}

pub(super) async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let reply = parse_reply(&raw(addr, &req, false).await);
    // HEAD announces the GET length without a body.
    if let (Some(len), false) = (reply.header("content-length"), method == "HEAD") {
        assert_eq!(
            len.parse::<usize>().ok(),
            Some(reply.body.len()),
            "Content-Length"
        );
    }
    reply
}

pub(super) fn parse_reply(buf: &[u8]) -> Reply {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = std::str::from_utf8(&buf[..split]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = buf[split + 4..].to_vec();
    Reply {
        status,
        headers,
        body,
    }
}
