//! The HTTP listener. `axum::serve` sets no timeouts and accepts every connection; a server on
//! a network must bound both, or a few thousand silent connections exhaust its file descriptors
//! and memory and hold its shutdown.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Connection limits of the main listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time to receive a request's complete headers, counted from the connection's opening, or
    /// from the end of the previous response on a kept-alive connection (so it also closes idle
    /// kept-alive connections).
    pub(crate) header_read: Duration,
    /// Open connections; more are closed as soon as they are accepted.
    pub(crate) max_connections: usize,
}

/// How often a draining connection checks whether it still owes a response.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, closes every
/// connection that owes no response (idle, or still sending headers) at once, and returns when
/// every request already accepted has been answered.
pub(crate) async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper's default, kept on purpose: end of input from the client cancels its request.
        // TCP cannot tell a client that half-closed and still reads from one that gave up,
        // and the queued inputs of clients that gave up must not reach the model.
        .header_read_timeout(limits.header_read);
    builder.http2().timer(TokioTimer::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refused = AtomicU64::new(0);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
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
            // Closed at once: an over-full server keeps its descriptors for the connections it
            // already serves.
            let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    "--max-connections {} reached: closing new connections ({n} so far)",
                    limits.max_connections
                );
            }
            crate::metrics::connection_refused();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let app = app.clone();
        let stop = stop_rx.clone();
        let header_read = limits.header_read;
        tokio::spawn(async move {
            serve_connection(stream, builder, app, header_read, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection task holds a slot until it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

async fn serve_connection(
    stream: TcpStream,
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    header_read: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // hyper's header timer starts once it knows the protocol, which it learns from the first
    // bytes: a connection that sends nothing is bounded here.
    tokio::select! {
        first = first_byte(&stream, header_read) => if !first { return },
        _ = stop.wait_for(|stop| *stop) => return,
    }
    let owed = Arc::new(AtomicUsize::new(0));
    let service = {
        let owed = owed.clone();
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let owes = Owes::new(owed.clone());
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(Body::new)).await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Owed { body, _owes: owes })))
            }
        })
    };
    let mut connection = pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
            return;
        }
        _ = stop.wait_for(|stop| *stop) => {}
    }
    // Draining: no new request on this connection; it ends once it owes nothing.
    connection.as_mut().graceful_shutdown();
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = tokio::time::sleep(DRAIN_POLL) => {
                if owed.load(Ordering::SeqCst) == 0 {
                    return;
                }
            }
        }
    }
}

/// Counts a request of this connection from the moment it is handed to the router until its
/// response body has been written (or dropped).
struct Owes(Arc<AtomicUsize>);

impl Owes {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Owes {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted until hyper is done with it.
struct Owed {
    body: Body,
    _owes: Owes,
}

impl http_body::Body for Owed {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
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
