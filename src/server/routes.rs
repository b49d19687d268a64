//! Which path does what, and the responses. Every handler answers from the
//! newest published [`Snapshot`](crate::metrics::Snapshot) in memory;
//! nothing here touches BPF maps, so a burst of scrapes cannot slow down or
//! race with the reader. Only `POST /-/reload` does real work, and it runs
//! off the async threads.

use std::io::{self, Write as _};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::OnceCell;

use super::landing::landing_page;
use super::negotiate::{accepts_gzip, negotiate};
use super::Context;
use crate::metrics::exposition::{Exposition, Format};
use crate::metrics::{protobuf, Snapshot};

pub(super) type Resp = Response<Full<Bytes>>;

/// Prometheus's own reload endpoint, so the same tooling works.
const RELOAD_PATH: &str = "/-/reload";

/// Answers one request: authentication first (every path, as
/// exporter-toolkit does), then the route, then the configured headers.
pub(super) async fn route<B>(req: Request<B>, ctx: &Context) -> Resp {
    let web = ctx.web.load_full();
    let allowed = match &web.auth {
        None => true,
        Some(auth) => auth.allows(req.headers().get(header::AUTHORIZATION)).await,
    };
    let mut resp = if !allowed {
        let mut resp = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"bpf-exporter\", charset=\"UTF-8\""),
        );
        resp
    } else if req.uri().path() == RELOAD_PATH {
        handle_reload(req.method(), ctx).await
    } else {
        handle(&req, ctx).await
    };
    for (name, value) in &web.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

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
        return plain(
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled: start the exporter with --web.enable-lifecycle \
             (configs also reload on SIGHUP and when --config.dir changes)\n",
        );
    };
    match hook().await {
        Ok(summary) => response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            format!("{summary}\n").into(),
        ),
        Err(reasons) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{reasons}\n").into(),
        ),
    }
}

enum Route {
    Metrics,
    Landing,
    Healthy,
    Ready,
    Status,
}

/// Routes a request. Everything it needs is in memory; only a body not
/// encoded yet is waited for.
async fn handle<B>(req: &Request<B>, ctx: &Context) -> Resp {
    let path = req.uri().path();
    let route = if path == ctx.telemetry_path {
        Route::Metrics
    } else {
        match path {
            "/" => Route::Landing,
            "/-/healthy" => Route::Healthy,
            "/-/ready" => Route::Ready,
            "/-/status" => Route::Status,
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
        Route::Metrics => metrics(req, ctx).await,
        Route::Landing => {
            let snapshot = ctx.cell.load();
            let html = landing_page(&ctx.telemetry_path, &snapshot, crate::privileges::at_start());
            response(StatusCode::OK, "text/html; charset=utf-8", html.into())
        }
        Route::Healthy => plain(StatusCode::OK, "Healthy\n"),
        Route::Ready => match &ctx.cell.load().not_ready {
            None => plain(StatusCode::OK, "Ready\n"),
            Some(why) => response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("Not ready: {why}\n").into(),
            ),
        },
        Route::Status => response(
            StatusCode::OK,
            "application/json",
            status_json(&ctx.cell.load(), crate::privileges::at_start()).into(),
        ),
    }
}

/// `GET /-/status`: what `/` shows, for scripts and orchestration.
fn status_json(snapshot: &Snapshot, privileges: Option<&crate::privileges::Privileges>) -> String {
    let taken_at = snapshot
        .taken_at
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let status = serde_json::json!({
        "ready": snapshot.is_ready(),
        "not_ready": snapshot.not_ready,
        "snapshot_timestamp_seconds": taken_at,
        "configs": snapshot.configs,
        "series_limited": snapshot.series_limited,
        "capabilities": privileges,
    });
    let mut body = status.to_string();
    body.push('\n');
    body
}

fn header_str<B>(req: &Request<B>, name: header::HeaderName) -> Option<&str> {
    // A non-ASCII header value is treated as absent: its meaning is unknown.
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn metrics<B>(req: &Request<B>, ctx: &Context) -> Resp {
    let exposition = negotiate(header_str(req, header::ACCEPT));
    let gzip = accepts_gzip(header_str(req, header::ACCEPT_ENCODING));
    let body = ctx
        .bodies
        .get(ctx.cell.load(), exposition, gzip, ctx.native_histograms)
        .await;
    let (body, gzipped) = match body {
        Ok(body) => body,
        Err(err) => {
            tracing::error!("encoding /metrics failed: {err}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "Encoding the metrics failed\n");
        }
    };
    let mut resp = response(StatusCode::OK, exposition.content_type(), body);
    if gzipped {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    // Caches must not serve one client's format or encoding to another.
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    resp
}

/// The bodies of the newest snapshot, each encoded (and compressed) once,
/// on first demand: a thousand scrapers of one snapshot cost one encoding
/// and one gzip, not a thousand. Encoding, compressing and freeing the
/// previous snapshot run on the blocking pool, so the thread that serves
/// every connection stays free for the rest (health probes, scrapes of
/// bodies already made) while a large snapshot is encoded; scrapes that
/// need the body being made wait for that one encoding.
#[derive(Default)]
pub(super) struct Bodies {
    current: std::sync::Mutex<Option<Arc<Cached>>>,
    /// Histogram families already logged as staying classic.
    told_classic: std::sync::Mutex<std::collections::HashSet<String>>,
}

struct Cached {
    snapshot: Arc<Snapshot>,
    /// By exposition ([`slot`]).
    plain: [OnceCell<Bytes>; 3],
    /// The same, gzipped; `None` where gzip failed (answered plain).
    gzipped: [OnceCell<Option<Bytes>>; 3],
}

fn slot(exposition: Exposition) -> usize {
    match exposition {
        Exposition::Text(Format::Text004) => 0,
        Exposition::Text(Format::OpenMetrics) => 1,
        Exposition::Protobuf => 2,
    }
}

impl Bodies {
    /// The body for `snapshot` in `exposition`, gzipped if `gzip` and gzip
    /// worked (the flag says which); with native histograms in the
    /// protobuf if `native_histograms`. An error only if encoding panicked.
    async fn get(
        &self,
        snapshot: Arc<Snapshot>,
        exposition: Exposition,
        gzip: bool,
        native_histograms: bool,
    ) -> Result<(Bytes, bool), String> {
        let cached = self.cached(snapshot);
        let i = slot(exposition);
        let plain = cached.plain[i]
            .get_or_try_init(|| async {
                if native_histograms && exposition == Exposition::Protobuf {
                    self.tell_classic_only(&cached.snapshot);
                }
                let snapshot = Arc::clone(&cached.snapshot);
                off_thread(move || Bytes::from(exposition.encode(&snapshot, native_histograms))).await
            })
            .await?
            .clone();
        if !gzip {
            return Ok((plain, false));
        }
        let gzipped = cached.gzipped[i]
            .get_or_try_init(|| {
                let plain = plain.clone();
                off_thread(move || match compress(&plain) {
                    Ok(compressed) => Some(Bytes::from(compressed)),
                    Err(err) => {
                        tracing::warn!(%err, "gzip failed; answering uncompressed");
                        None
                    }
                })
            })
            .await?;
        Ok(match gzipped {
            Some(gzipped) => (gzipped.clone(), true),
            None => (plain, false),
        })
    }

    /// The bodies of `snapshot`, made anew when it is not the one they are
    /// of; the previous one is freed on the blocking pool (a large
    /// snapshot takes a while to free).
    fn cached(&self, snapshot: Arc<Snapshot>) -> Arc<Cached> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*current {
            Some(cached) if Arc::ptr_eq(&cached.snapshot, &snapshot) => Arc::clone(cached),
            _ => {
                let cached = Arc::new(Cached {
                    snapshot,
                    plain: Default::default(),
                    gzipped: Default::default(),
                });
                if let Some(previous) = current.replace(Arc::clone(&cached)) {
                    tokio::task::spawn_blocking(move || drop(previous));
                }
                cached
            }
        }
    }

    /// Logs, once per family, each histogram family that stays classic
    /// with native histograms on, and why.
    fn tell_classic_only(&self, snapshot: &Snapshot) {
        let mut told = self
            .told_classic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for family in protobuf::classic_only(&snapshot.families) {
            if told.insert(family.name.clone()) {
                tracing::info!(
                    metric = %family.name,
                    "native histograms: this histogram stays classic, its bucket bounds do not double \
                     near powers of two (bucket_type exp2 with a power-of-two or decimal-unit \
                     bucket_multiplier, such as 1e-6, makes them so)"
                );
            }
        }
    }
}

/// Runs `work` on the blocking pool; an error if it panicked.
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| err.to_string())
}

fn compress(data: &[u8]) -> io::Result<Vec<u8>> {
    // The fastest level: on exposition text it compresses within a tenth of
    // the default level's size, five times faster (7 MB of 100k series:
    // 25 against 143 ms).
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
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

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use crate::metrics::{exposition, protobuf};
    use crate::server::testing::{parse_reply, raw, request, snapshot, TestServer};

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

        // Prometheus with native histograms asks for protobuf first.
        let proto = request(
            server.addr,
            "GET",
            "/metrics",
            &[(
                "Accept",
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            )],
        )
        .await;
        assert_eq!(proto.status, 200);
        assert_eq!(
            proto.header("content-type"),
            Some("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited")
        );
        assert_eq!(proto.body, protobuf::encode(&snapshot().families, false));

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
    async fn status_is_json_for_scripts() {
        let server = TestServer::start(false).await;
        server.cell.publish(snapshot());
        let status = request(server.addr, "GET", "/-/status", &[]).await;
        assert_eq!(status.status, 200);
        assert_eq!(status.header("content-type"), Some("application/json"));
        let json: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
        assert_eq!(json["ready"], true);
        assert_eq!(json["not_ready"], serde_json::Value::Null);
        let configs = json["configs"].as_array().unwrap();
        assert_eq!(configs[0]["name"], "syscalls");
        assert_eq!(configs[0]["state"], "running");
        assert_eq!(configs[1]["state"], "failed");
        assert_eq!(configs[1]["reason"], "hook_missing");
        assert_eq!(configs[1]["programs"][0]["attached"], false);
        assert_eq!(configs[1]["programs"][0]["reason"], "hook_missing");
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
            (503, "Not ready: starting: no snapshot published yet\n")
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
    async fn landing_page_is_html() {
        let server = TestServer::start(true).await;
        let page = request(server.addr, "GET", "/", &[]).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
        let html = page.text();
        assert!(html.contains("<title>bpf-exporter</title>"));
        assert!(html.contains("<td>syscalls</td>"));
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reload_is_refused_unless_the_lifecycle_api_is_enabled() {
        let server = TestServer::start(true).await;
        let get = request(server.addr, "GET", "/-/reload", &[]).await;
        assert_eq!(get.status, 405);
        assert_eq!(get.header("allow"), Some("POST, PUT"));
        let post = request(server.addr, "POST", "/-/reload", &[("Content-Length", "0")]).await;
        assert_eq!(post.status, 403);
        assert!(post.text().contains("--web.enable-lifecycle"), "{}", post.text());
        server.shutdown().await;
    }
}
