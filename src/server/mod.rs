//! HTTP: the telemetry path (default `/metrics`), a landing page at `/` and
//! its JSON twin `/-/status`, `/-/healthy` and `/-/ready` for
//! orchestrators, and `POST /-/reload`.
//!
//! This module owns the connections: accepting them, bounding how long a
//! client may hold one, and ending them gracefully on shutdown, so that
//! what each request gets (`routes`) can be written without thinking of
//! sockets. Binding (`listen`) is separate so that startup can fail on a
//! taken port before any BPF program is loaded.

mod landing;
mod listen;
mod negotiate;
mod routes;
#[cfg(test)]
mod testing;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::metrics::SnapshotCell;
pub use listen::bind;

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
    reload: Option<ReloadHook>,
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then stops
/// accepting and gives open connections `SHUTDOWN_GRACE` to finish their
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
                    async move { Ok::<_, Infallible>(routes::route(req, &ctx).await) }
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
