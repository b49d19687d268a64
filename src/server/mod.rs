//! HTTP: the telemetry path (default `/metrics`), a landing page at `/` and
//! its JSON twin `/-/status`, `/-/healthy` and `/-/ready` for
//! orchestrators, and `POST /-/reload`.
//!
//! This module owns the connections: accepting them, bounding how long a
//! client may hold one, and ending them gracefully on shutdown, so that
//! what each request gets (`routes`) can be written without thinking of
//! sockets. Binding (`listen`) is separate so that startup can fail on a
//! taken port before any BPF program is loaded.

mod connections;
mod landing;
mod listen;
mod negotiate;
mod routes;
#[cfg(test)]
mod testing;
pub mod web;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::metrics::SnapshotCell;
use connections::{Admitted, Connections};
pub use listen::{bind, port, raise_fd_limit};
pub use web::SharedWeb;

/// Where and what to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// `:PORT` (all interfaces), `HOST:PORT` or `[IPV6]:PORT`.
    pub listen: String,
    /// Listen on the socket systemd passes (socket activation) instead.
    pub systemd_socket: bool,
    /// Path metrics are served on; must start with `/`.
    pub telemetry_path: String,
    /// Open connections at most; beyond, the one idle longest is closed.
    pub max_connections: usize,
    /// exporter-toolkit web configuration (TLS, basic auth, headers).
    pub web_config: Option<PathBuf>,
    /// Whether `POST /-/reload` is served.
    pub enable_lifecycle: bool,
    /// Whether the protobuf exposition carries native histograms.
    pub native_histograms: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: ":9435".to_string(),
            systemd_socket: false,
            telemetry_path: "/metrics".to_string(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            web_config: None,
            enable_lifecycle: false,
            native_histograms: false,
        }
    }
}

/// Far above what scrapers and probes open (a few each), far below the
/// descriptors the exporter has once its limit is raised.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Requests are tiny; a client that has not sent its headers by then is
/// broken or hostile and only holds a task. Also how long an idle
/// keep-alive connection is kept.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS client that has not finished its handshake by then is not coming.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for in-flight responses before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often memory left by closed connections is given back.
const TRIM_INTERVAL: Duration = Duration::from_secs(5);

/// Runs a config reload for `POST /-/reload`: `Ok` with a summary when
/// every change applied, `Err` with the reasons when some were refused.
/// Asynchronous, so waiting requests hold no thread; requests that arrive
/// together are answered by one reload.
pub type ReloadHook =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// What every connection task needs.
struct Context {
    telemetry_path: String,
    cell: Arc<SnapshotCell>,
    /// `None` unless `--web.enable-lifecycle`.
    reload: Option<ReloadHook>,
    web: SharedWeb,
    bodies: routes::Bodies,
    native_histograms: bool,
}

/// Serves HTTP/1.1 (over TLS when the web configuration says so) on
/// `listener` until `shutdown` resolves, then stops accepting and gives
/// open connections `SHUTDOWN_GRACE` to finish their current response.
pub async fn serve(
    listener: TcpListener,
    opts: ServerOptions,
    cell: Arc<SnapshotCell>,
    web: SharedWeb,
    reload: Option<ReloadHook>,
    shutdown: impl Future<Output = ()>,
) {
    let ctx = Arc::new(Context {
        telemetry_path: opts.telemetry_path,
        cell,
        reload,
        web,
        bodies: routes::Bodies::default(),
        native_histograms: opts.native_histograms,
    });
    let connections = Connections::new(opts.max_connections);
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut trim = tokio::time::interval(TRIM_INTERVAL);
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
                let Some(admitted) = connections.admit() else {
                    tracing::debug!(%peer, "every connection is busy answering; closing the new one");
                    continue;
                };
                let tls = ctx.web.load().tls.clone();
                let connection = Connection {
                    ctx: Arc::clone(&ctx),
                    admitted: Arc::new(admitted),
                    builder: builder.clone(),
                    graceful: graceful.watcher(),
                };
                tokio::spawn(async move {
                    let result = match tls {
                        None => connection.serve(stream).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => connection.serve(stream).await,
                                Ok(Err(err)) => Err(format!("TLS handshake failed: {err}")),
                                Err(_) => Err("TLS handshake timed out".to_string()),
                            }
                        }
                    };
                    if let Err(err) = result {
                        tracing::debug!(%peer, "HTTP connection ended with an error: {err}");
                    }
                });
            }
            _ = trim.tick() => connections.trim(),
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

/// One accepted connection, plain or after its TLS handshake.
struct Connection {
    ctx: Arc<Context>,
    admitted: Arc<Admitted>,
    builder: http1::Builder,
    graceful: hyper_util::server::graceful::Watcher,
}

impl Connection {
    async fn serve(self, stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) -> Result<(), String> {
        let Connection {
            ctx,
            admitted,
            builder,
            graceful,
        } = self;
        let service = {
            let admitted = Arc::clone(&admitted);
            service_fn(move |req| {
                let (ctx, admitted) = (Arc::clone(&ctx), Arc::clone(&admitted));
                async move {
                    let _busy = admitted.busy();
                    Ok::<_, Infallible>(routes::route(req, &ctx).await)
                }
            })
        };
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::select! {
            result = conn => result.map_err(|e| e.to_string()),
            () = admitted.connection.evicted.notified() => {
                Err("closed to make room for a new connection".to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpStream;

    use super::testing::TestServer;

    #[tokio::test(flavor = "current_thread")]
    async fn shutdown_closes_listener() {
        let server = TestServer::start(true).await;
        let addr = server.addr;
        server.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
