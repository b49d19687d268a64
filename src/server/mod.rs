//! HTTP: the telemetry path (default `/metrics`), a landing page at `/`,
//! `/-/healthy` and `/-/ready` for orchestrators, and `POST /-/reload`.
//!
//! Requests only ever read the newest published [`Snapshot`]; nothing here
//! touches BPF maps, so a burst of scrapes cannot slow down or race with the
//! reader. Listen addresses follow Prometheus conventions (`:9435` means all
//! interfaces) so flags can be copied from other exporters.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::metrics::exposition::{self, parse_header_list};
use crate::metrics::{ConfigStatus, Snapshot, SnapshotCell};

/// Where and what to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// `:PORT` (all interfaces), `HOST:PORT` or `[IPV6]:PORT`.
    pub listen: String,
    /// Path metrics are served on; must start with `/`.
    pub telemetry_path: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: ":9435".to_string(),
            telemetry_path: "/metrics".to_string(),
        }
    }
}

/// Requests are tiny; a client that has not sent its headers by then is
/// broken or hostile and only holds a task.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for in-flight responses before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Opens the listening socket.
///
/// Separate from [`serve`] so that a taken port fails startup before BPF
/// programs are loaded, and so tests can bind port 0 and learn the port.
pub async fn bind(opts: &ServerOptions) -> anyhow::Result<TcpListener> {
    if !opts.telemetry_path.starts_with('/') {
        bail!(
            "telemetry path {:?} must start with '/'; fix --web.telemetry-path",
            opts.telemetry_path
        );
    }
    match parse_listen(&opts.listen)? {
        Listen::AllInterfaces(port) => {
            // Like Go's net.Listen(":port"): one dual-stack socket when the
            // host has IPv6, plain IPv4 otherwise.
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            match listen_on(v6, true) {
                Ok(listener) => Ok(listener),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    Err(bind_error(&opts.listen, v6, err))
                }
                Err(err) => {
                    tracing::debug!(%err, "no dual-stack socket; listening on IPv4 only");
                    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                    listen_on(v4, false).map_err(|err| bind_error(&opts.listen, v4, err))
                }
            }
        }
        Listen::Host(host, port) => {
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .with_context(|| {
                        format!(
                            "cannot resolve {host:?} from --web.listen-address {:?}; \
                             use an IP address or a resolvable host name",
                            opts.listen
                        )
                    })?
                    .collect(),
            };
            let mut last_err = None;
            for addr in addrs {
                match listen_on(addr, false) {
                    Ok(listener) => return Ok(listener),
                    Err(err) => last_err = Some(bind_error(&opts.listen, addr, err)),
                }
            }
            Err(last_err.unwrap_or_else(|| {
                anyhow!(
                    "{host:?} from --web.listen-address {:?} resolved to no address",
                    opts.listen
                )
            }))
        }
    }
}

#[derive(Debug, PartialEq)]
enum Listen {
    AllInterfaces(u16),
    /// Host name or IP address (IPv6 without brackets), and port.
    Host(String, u16),
}

fn parse_listen(listen: &str) -> anyhow::Result<Listen> {
    let usage = "use :PORT, HOST:PORT or [IPV6]:PORT with --web.listen-address";
    let Some((host, port)) = listen.trim().rsplit_once(':') else {
        bail!("listen address {listen:?} has no port; {usage}");
    };
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("listen address {listen:?} has an invalid port {port:?}; {usage}"))?;
    if host.is_empty() {
        return Ok(Listen::AllInterfaces(port));
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| anyhow!("listen address {listen:?}: {inner:?} is not an IPv6 address; {usage}"))?;
        return Ok(Listen::Host(ip.to_string(), port));
    }
    if host.contains([':', '[', ']']) {
        bail!("listen address {listen:?}: IPv6 addresses need brackets, e.g. [::1]:{port}; {usage}");
    }
    Ok(Listen::Host(host.to_string(), port))
}

fn listen_on(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting the exporter must not fail on connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

fn bind_error(listen: &str, addr: SocketAddr, err: io::Error) -> anyhow::Error {
    let hint = match err.kind() {
        io::ErrorKind::AddrInUse => {
            "another process (perhaps another bpf-exporter) already listens there; \
             stop it or choose a free port with --web.listen-address"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need CAP_NET_BIND_SERVICE; \
             choose a higher port with --web.listen-address"
        }
        io::ErrorKind::AddrNotAvailable => {
            "no local interface has that address; use one that exists, \
             or :PORT for all interfaces, with --web.listen-address"
        }
        _ => "check --web.listen-address",
    };
    anyhow!("cannot listen on {addr} (--web.listen-address {listen:?}): {err}; {hint}")
}

/// Runs a config reload for `POST /-/reload`: `Ok` with a summary when
/// every change applied, `Err` with the reasons when some were refused.
/// Blocking; the server calls it off the async threads.
pub type ReloadHook = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// What every connection task needs.
struct Context {
    telemetry_path: String,
    cell: Arc<SnapshotCell>,
    reload: Option<ReloadHook>,
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then stops
/// accepting and gives open connections [`SHUTDOWN_GRACE`] to finish their
/// current response.
pub async fn serve(
    listener: TcpListener,
    opts: ServerOptions,
    cell: Arc<SnapshotCell>,
    reload: Option<ReloadHook>,
    shutdown: impl Future<Output = ()>,
) {
    let ctx = Arc::new(Context {
        telemetry_path: opts.telemetry_path,
        cell,
        reload,
    });
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // Typically EMFILE; retrying at once would spin.
                        tracing::warn!(%err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let ctx = Arc::clone(&ctx);
                let service = service_fn(move |req| {
                    let ctx = Arc::clone(&ctx);
                    async move {
                        if req.uri().path() == RELOAD_PATH {
                            return Ok::<_, Infallible>(handle_reload(req.method(), &ctx).await);
                        }
                        Ok::<_, Infallible>(handle(&req, &ctx))
                    }
                });
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(%peer, %err, "HTTP connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open after the shutdown grace period");
    }
}

type Resp = Response<Full<Bytes>>;

/// Prometheus's own reload endpoint, so the same tooling works.
const RELOAD_PATH: &str = "/-/reload";

/// `POST /-/reload`: 200 when every change applied, 500 with the reasons
/// when some were refused (the previous versions keep running).
async fn handle_reload(method: &Method, ctx: &Context) -> Resp {
    if method != Method::POST && method != Method::PUT {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed: use POST\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, PUT"));
        return resp;
    }
    let Some(hook) = ctx.reload.clone() else {
        return plain(StatusCode::NOT_FOUND, "Reloading is not enabled\n");
    };
    match tokio::task::spawn_blocking(move || hook()).await {
        Ok(Ok(summary)) => response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            format!("{summary}\n").into(),
        ),
        Ok(Err(reasons)) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{reasons}\n").into(),
        ),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "the reload did not finish\n"),
    }
}

enum Route {
    Metrics,
    Landing,
    Healthy,
    Ready,
}

/// Routes a request. Synchronous: everything it needs is in memory.
fn handle<B>(req: &Request<B>, ctx: &Context) -> Resp {
    let path = req.uri().path();
    let route = if path == ctx.telemetry_path {
        Route::Metrics
    } else {
        match path {
            "/" => Route::Landing,
            "/-/healthy" => Route::Healthy,
            "/-/ready" => Route::Ready,
            _ => return plain(StatusCode::NOT_FOUND, "Not Found\n"),
        }
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match route {
        Route::Metrics => metrics(req, ctx),
        Route::Landing => {
            let snapshot = ctx.cell.load();
            let html = landing_page(&ctx.telemetry_path, &snapshot, ctx.cell.is_ready());
            response(StatusCode::OK, "text/html; charset=utf-8", html.into())
        }
        Route::Healthy => plain(StatusCode::OK, "Healthy\n"),
        Route::Ready if ctx.cell.is_ready() => plain(StatusCode::OK, "Ready\n"),
        Route::Ready => plain(StatusCode::SERVICE_UNAVAILABLE, "Not ready\n"),
    }
}

fn header_str<B>(req: &Request<B>, name: header::HeaderName) -> Option<&str> {
    // A non-ASCII header value is treated as absent: its meaning is unknown.
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn metrics<B>(req: &Request<B>, ctx: &Context) -> Resp {
    let format = exposition::negotiate(header_str(req, header::ACCEPT));
    let body = exposition::encode_snapshot(&ctx.cell.load(), format);
    let mut resp = if accepts_gzip(header_str(req, header::ACCEPT_ENCODING)) {
        match gzip(body.as_bytes()) {
            Ok(compressed) => {
                let mut resp = response(StatusCode::OK, format.content_type(), compressed.into());
                resp.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                resp
            }
            Err(err) => {
                tracing::warn!(%err, "gzip failed; answering uncompressed");
                response(StatusCode::OK, format.content_type(), body.into())
            }
        }
    } else {
        response(StatusCode::OK, format.content_type(), body.into())
    };
    // Caches must not serve one client's format or encoding to another.
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    resp
}

/// True when the client accepts gzip with q > 0, explicitly or via `*`.
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(header) = accept_encoding else {
        return false;
    };
    let mut gzip_q = None;
    let mut any_q = None;
    for item in parse_header_list(header) {
        if item.value.eq_ignore_ascii_case("gzip") || item.value.eq_ignore_ascii_case("x-gzip") {
            gzip_q = Some(gzip_q.map_or(item.q, |q: f32| q.max(item.q)));
        } else if item.value == "*" {
            any_q = Some(any_q.map_or(item.q, |q: f32| q.max(item.q)));
        }
    }
    gzip_q.or(any_q).is_some_and(|q| q > 0.0)
}

fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn plain(status: StatusCode, body: &'static str) -> Resp {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

/// Escapes text for HTML element content and quoted attribute values.
fn html_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    html_escape(&mut out, s);
    out
}

/// The page a human sees when opening the exporter in a browser: mostly to
/// answer "why is metric X missing?" via each config's and program's error.
fn landing_page(telemetry_path: &str, snapshot: &Snapshot, ready: bool) -> String {
    let mut html = String::with_capacity(2048);
    // Relative link, so the page keeps working behind a path-prefixing proxy.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>bpf-exporter</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; }}\n\
         table {{ border-collapse: collapse; margin-bottom: 1em; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}\n\
         .running {{ color: #060; }} .failed, .invalid, .error {{ color: #a00; }}\n\
         </style>\n</head>\n<body>\n<h1>bpf-exporter</h1>\n\
         <p>Prometheus exporter that turns eBPF maps into metrics. Version {}.</p>\n\
         <p><a href=\".{}\">Metrics</a></p>\n",
        esc(env!("CARGO_PKG_VERSION")),
        esc(telemetry_path),
    );
    if ready {
        let age = SystemTime::now()
            .duration_since(snapshot.taken_at)
            .map(|d| format!("{:.1} s ago", d.as_secs_f64()))
            .unwrap_or_else(|_| "just now".to_string());
        let _ = writeln!(html, "<p>Last snapshot taken {}.</p>", esc(&age));
    } else {
        html.push_str("<p class=\"error\">Not ready: no snapshot published yet.</p>\n");
    }
    html.push_str("<h2>Configs</h2>\n");
    if snapshot.configs.is_empty() {
        html.push_str("<p>No configs loaded.</p>\n");
    } else {
        html.push_str(
            "<table>\n<thead><tr><th>Name</th><th>Source</th><th>Program</th>\
             <th>State</th><th>Error</th><th>BPF programs</th></tr></thead>\n<tbody>\n",
        );
        for config in &snapshot.configs {
            config_row(&mut html, config);
        }
        html.push_str("</tbody>\n</table>\n");
    }
    html.push_str("</body>\n</html>\n");
    html
}

fn config_row(html: &mut String, config: &ConfigStatus) {
    let state = config.state.as_str();
    let _ = write!(
        html,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{state}\">{state}</td><td class=\"error\">{}</td><td>",
        esc(&config.name),
        esc(&config.source),
        esc(&config.program),
        esc(config.error.as_deref().unwrap_or("")),
    );
    if config.programs.is_empty() {
        html.push_str("none");
    } else {
        html.push_str(
            "<table><thead><tr><th>Name</th><th>Section</th><th>Attached</th><th>Error</th></tr></thead><tbody>",
        );
        for program in &config.programs {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"error\">{}</td></tr>",
                esc(&program.name),
                esc(&program.section),
                if program.attached { "yes" } else { "no" },
                esc(program.error.as_deref().unwrap_or("")),
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</td></tr>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ConfigState, Family, MetricKind, ProgramStatus, Sample, Value};
    use std::io::Read as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    fn snapshot() -> Snapshot {
        Snapshot {
            families: vec![Family {
                name: "ebpf_test_events_total".into(),
                help: "Events seen.".into(),
                kind: MetricKind::Counter,
                label_names: vec!["cpu".into()],
                samples: (0..64)
                    .map(|cpu| Sample {
                        label_values: vec![cpu.to_string()],
                        value: Value::Counter(cpu * 1000),
                    })
                    .collect(),
            }],
            configs: vec![
                ConfigStatus {
                    name: "syscalls".into(),
                    source: "embedded:configs/syscalls.yaml".into(),
                    program: "syscalls".into(),
                    state: ConfigState::Running,
                    error: None,
                    programs: vec![ProgramStatus {
                        name: "count_enter".into(),
                        section: "tracepoint/raw_syscalls/sys_enter".into(),
                        attached: true,
                        error: None,
                    }],
                },
                ConfigStatus {
                    name: "broken<script>".into(),
                    source: "/etc/x & y.yaml".into(),
                    program: "tcp".into(),
                    state: ConfigState::Failed,
                    error: Some("attach failed: \"<nope>\"".into()),
                    programs: vec![ProgramStatus {
                        name: "kprobe_<x>".into(),
                        section: "kprobe/tcp_v4_connect".into(),
                        attached: false,
                        error: Some("ENOENT <missing>".into()),
                    }],
                },
            ],
            taken_at: SystemTime::now(),
        }
    }

    struct TestServer {
        addr: SocketAddr,
        cell: Arc<SnapshotCell>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl TestServer {
        async fn start(publish: bool) -> TestServer {
            let opts = ServerOptions {
                listen: "127.0.0.1:0".into(),
                telemetry_path: "/metrics".into(),
            };
            let listener = bind(&opts).await.expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let cell = Arc::new(SnapshotCell::default());
            if publish {
                cell.publish(snapshot());
            }
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, opts, Arc::clone(&cell), None, async {
                let _ = stopped.await;
            }));
            TestServer {
                addr,
                cell,
                stop: Some(stop),
                task,
            }
        }

        async fn shutdown(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            tokio::time::timeout(Duration::from_secs(10), &mut self.task)
                .await
                .expect("server stops")
                .expect("server task");
        }
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn text(&self) -> String {
            String::from_utf8(self.body.clone()).expect("utf-8 body")
        }
    }

    /// Sends one raw HTTP/1.1 request and reads the reply to EOF.
    /// `half_close` signals end of input, for requests the server would
    /// otherwise keep waiting on.
    async fn raw(addr: SocketAddr, request: &str, half_close: bool) -> Vec<u8> {
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

    async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
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

    fn parse_reply(buf: &[u8]) -> Reply {
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

    #[tokio::test(flavor = "current_thread")]
    async fn metrics_content_types() {
        let server = TestServer::start(true).await;
        let expected_text = exposition::encode(&snapshot().families, exposition::Format::Text004);

        let plain = request(server.addr, "GET", "/metrics", &[]).await;
        assert_eq!(plain.status, 200);
        assert_eq!(
            plain.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(plain.header("content-encoding"), None);
        assert!(plain.header("vary").unwrap_or("").contains("Accept-Encoding"));
        assert_eq!(plain.text(), expected_text);

        let om = request(
            server.addr,
            "GET",
            "/metrics",
            &[(
                "Accept",
                "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            )],
        )
        .await;
        assert_eq!(om.status, 200);
        assert_eq!(
            om.header("content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        assert!(om.text().contains("ebpf_test_events_total{cpu=\"3\"} 3000\n"));
        assert!(om.text().ends_with("# EOF\n"));

        // HEAD: same headers, no body.
        let head = request(server.addr, "HEAD", "/metrics", &[]).await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length").and_then(|l| l.parse().ok()),
            Some(expected_text.len())
        );
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn gzip_round_trip() {
        let server = TestServer::start(true).await;
        let plain = request(server.addr, "GET", "/metrics", &[]).await;
        let gz = request(
            server.addr,
            "GET",
            "/metrics",
            &[("Accept-Encoding", "deflate, gzip;q=0.8")],
        )
        .await;
        assert_eq!(gz.status, 200);
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        assert!(gz.header("vary").unwrap_or("").contains("Accept-Encoding"));
        assert!(gz.body.len() < plain.body.len());
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(gz.body.as_slice())
            .read_to_end(&mut decoded)
            .expect("valid gzip");
        assert_eq!(decoded, plain.body);

        let refused = request(
            server.addr,
            "GET",
            "/metrics",
            &[("Accept-Encoding", "gzip;q=0, identity")],
        )
        .await;
        assert_eq!(refused.header("content-encoding"), None);
        assert_eq!(refused.body, plain.body);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn health_and_readiness() {
        let server = TestServer::start(false).await;
        let healthy = request(server.addr, "GET", "/-/healthy", &[]).await;
        assert_eq!((healthy.status, healthy.text().as_str()), (200, "Healthy\n"));

        let not_ready = request(server.addr, "GET", "/-/ready", &[]).await;
        assert_eq!(
            (not_ready.status, not_ready.text().as_str()),
            (503, "Not ready\n")
        );

        // Metrics are served (empty) even before the first snapshot.
        let empty = request(server.addr, "GET", "/metrics", &[]).await;
        assert_eq!((empty.status, empty.body.len()), (200, 0));

        server.cell.publish(snapshot());
        let ready = request(server.addr, "GET", "/-/ready", &[]).await;
        assert_eq!((ready.status, ready.text().as_str()), (200, "Ready\n"));
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn errors() {
        let server = TestServer::start(true).await;
        let missing = request(server.addr, "GET", "/nope", &[]).await;
        assert_eq!(missing.status, 404);
        let missing = request(server.addr, "GET", "/metrics/", &[]).await;
        assert_eq!(missing.status, 404);

        let post = request(server.addr, "POST", "/metrics", &[("Content-Length", "0")]).await;
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));

        // Garbage must get an HTTP error or a closed connection, and leave
        // the server serving.
        for junk in [
            "\r\n\r\n",
            "GET\r\n\r\n",
            "GET /metrics HTTP/9.9\r\n\r\n",
            "GET /\u{0}\u{1} HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: \u{ff};q=nan,,\r\nAccept-Encoding: ;;;q=-1,gzip;q=2\r\nConnection: close\r\n\r\n",
        ] {
            let reply = raw(server.addr, junk, true).await;
            if !reply.is_empty() {
                let status = parse_reply(&reply).status;
                assert!(status == 200 || status >= 400, "{junk:?} → {status}");
            }
        }
        // Nonsense negotiation headers fall back to the defaults.
        let odd = request(
            server.addr,
            "GET",
            "/metrics",
            &[
                ("Accept", "\u{ff};q=nan,,application/openmetrics-text;q=1.5"),
                ("Accept-Encoding", ";;;q=-1,gzip;q=2"),
            ],
        )
        .await;
        assert_eq!(odd.status, 200);
        assert_eq!(
            odd.header("content-type"),
            Some(exposition::Format::Text004.content_type())
        );
        assert_eq!(odd.header("content-encoding"), None);

        let still = request(server.addr, "GET", "/-/healthy", &[]).await;
        assert_eq!(still.status, 200);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn landing_page_lists_configs_escaped() {
        let server = TestServer::start(true).await;
        let page = request(server.addr, "GET", "/", &[]).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
        let html = page.text();
        assert!(html.contains("<title>bpf-exporter</title>"));
        assert!(html.contains("href=\"./metrics\""));
        assert!(html.contains("<td>syscalls</td>"));
        assert!(html.contains("tracepoint/raw_syscalls/sys_enter"));
        assert!(html.contains("<td>yes</td>"));
        assert!(html.contains("broken&lt;script&gt;"));
        assert!(html.contains("/etc/x &amp; y.yaml"));
        assert!(html.contains("attach failed: &quot;&lt;nope&gt;&quot;"));
        assert!(html.contains("kprobe_&lt;x&gt;"));
        assert!(html.contains("ENOENT &lt;missing&gt;"));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<nope>"));
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn shutdown_closes_listener() {
        let server = TestServer::start(true).await;
        let addr = server.addr;
        server.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bind_errors_name_address_and_flag() {
        let first = bind(&ServerOptions {
            listen: "127.0.0.1:0".into(),
            ..ServerOptions::default()
        })
        .await
        .expect("bind");
        let taken = first.local_addr().expect("addr").to_string();
        let err = bind(&ServerOptions {
            listen: taken.clone(),
            ..ServerOptions::default()
        })
        .await
        .expect_err("port is taken")
        .to_string();
        assert!(err.contains(&taken), "{err}");
        assert!(err.contains("--web.listen-address"), "{err}");
        assert!(err.contains("already listens"), "{err}");

        let err = bind(&ServerOptions {
            listen: "127.0.0.1:0".into(),
            telemetry_path: "metrics".into(),
        })
        .await
        .expect_err("relative telemetry path")
        .to_string();
        assert!(err.contains("--web.telemetry-path"), "{err}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn ipv6_loopback_when_available() {
        match bind(&ServerOptions {
            listen: "[::1]:0".into(),
            ..ServerOptions::default()
        })
        .await
        {
            Ok(listener) => assert!(listener.local_addr().expect("addr").is_ipv6()),
            Err(err) => eprintln!("note: no IPv6 loopback here: {err}"),
        }
    }

    #[test]
    fn listen_address_parsing() {
        assert_eq!(parse_listen(":9435").unwrap(), Listen::AllInterfaces(9435));
        assert_eq!(
            parse_listen("127.0.0.1:80").unwrap(),
            Listen::Host("127.0.0.1".into(), 80)
        );
        assert_eq!(
            parse_listen("[::1]:9435").unwrap(),
            Listen::Host("::1".into(), 9435)
        );
        assert_eq!(
            parse_listen("localhost:1").unwrap(),
            Listen::Host("localhost".into(), 1)
        );
        for bad in [
            "",
            "9435",
            ":",
            ":99999",
            "host:port",
            "::1:9435",
            "[::1:9435",
            "[nope]:1",
        ] {
            let err = parse_listen(bad).expect_err(bad).to_string();
            assert!(err.contains("--web.listen-address"), "{bad}: {err}");
        }
    }

    #[test]
    fn gzip_negotiation() {
        assert!(!accepts_gzip(None));
        assert!(!accepts_gzip(Some("")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("GZIP;q=0.1")));
        assert!(accepts_gzip(Some("x-gzip")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("gzip;q=0.0, *")));
        assert!(!accepts_gzip(Some("gzip;q=bogus")));
    }

    #[test]
    fn all_interfaces_bind_is_dual_stack_or_ipv4() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = bind(&ServerOptions {
                listen: ":0".into(),
                ..ServerOptions::default()
            })
            .await
            .expect("bind all interfaces");
            let port = listener.local_addr().expect("addr").port();
            // Reachable over IPv4 either way, and over IPv6 when dual-stack.
            let conn = TcpStream::connect(("127.0.0.1", port)).await;
            assert!(conn.is_ok(), "{conn:?}");
            if listener.local_addr().expect("addr").is_ipv6() {
                let conn = TcpStream::connect(("::1", port)).await;
                assert!(conn.is_ok(), "{conn:?}");
            }
        });
    }
}
