//! The HTTP listener. `axum::serve` sets no timeouts and accepts every connection; a server on
//! a network must bound both, or a few thousand silent connections exhaust its file descriptors
//! and memory and hold its shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Connection limits of the main listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time to receive a request's complete headers, counted from the connection's first byte
    /// wait, or from the end of the previous response on a kept-alive connection (so it also
    /// closes idle kept-alive connections).
    pub(crate) header_read: Duration,
    /// Open connections; more are closed as soon as they are accepted.
    pub(crate) max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, closes idle and
/// half-sent connections at once, and returns when every request already being handled has
/// been answered.
pub(crate) async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        // A client may close its sending side after the request and still read the answer.
        .half_close(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refused = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once: an over-full server must keep its descriptors for the
            // connections it already serves (and for a fresh /health once they drain).
            if refused.fetch_add(1, Ordering::Relaxed).is_power_of_two() {
                tracing::warn!(
                    "--max-connections {} reached: closing new connections ({} so far)",
                    limits.max_connections,
                    refused.load(Ordering::Relaxed)
                );
            }
            crate::metrics::connection_refused();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let mut stop = stop_rx.clone();
        let header_read = limits.header_read;
        tokio::spawn(async move {
            let _slot = slot;
            // hyper's header timer starts once it knows the protocol, which it learns from the
            // first bytes: a connection that sends nothing is bounded here.
            tokio::select! {
                first = first_byte(&stream, header_read) => if !first { return },
                _ = stop.wait_for(|stop| *stop) => return,
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    graceful.shutdown().await;
}

/// True when the client sent a byte within `limit` (it is left unread for hyper).
async fn first_byte(stream: &TcpStream, limit: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(limit, stream.peek(&mut byte)).await, Ok(Ok(n)) if n > 0)
}

/// Per-connection accept errors are the client's; running out of descriptors is ours, and
/// retrying at once would spin, so it waits a little.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!("accept error: {e} (see --max-connections and the open-file limit)");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
