//! The HTTP listener. `axum::serve` sets no timeouts and accepts every connection; a server on
//! a network must bound both, or a few thousand silent connections exhaust its file descriptors
//! and memory and hold its shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// Connection limits of the main listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time to receive a request's complete headers, counted from the connection's opening, or
    /// from the end of the previous response on a kept-alive connection (so it also closes idle
    /// kept-alive connections).
    pub(crate) header_read: Duration,
    /// Open connections. At the cap, a new connection takes the place of the oldest one that
    /// owes no response (idle, or still sending headers); when no place frees within
    /// [`EVICTION_WAIT`], it is closed.
    pub(crate) max_connections: usize,
}

/// How long a connection accepted at the cap waits for the slot of the connection it evicted.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

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
    let open = Arc::new(Connections::default());
    let refused = Arc::new(AtomicU64::new(0));
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
        let _ = stream.set_nodelay(true);
        // Registered before the next accept, so that it can be evicted at once.
        let seat = slots
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|slot| Seat::new(slot, &open));
        if seat.is_none() {
            // At the cap, a connection that owes nothing makes room, so a stalled crowd cannot
            // keep out a health check or a real client. The new one waits for the freed slot
            // (or any other) for a moment, and is closed if none frees.
            open.evict_oldest_idle();
        }
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            header_read: limits.header_read,
            stop: stop_rx.clone(),
            open: open.clone(),
        };
        let (slots, refused) = (slots.clone(), refused.clone());
        let max = limits.max_connections;
        tokio::spawn(async move {
            let seat = match seat {
                Some(seat) => seat,
                None => match tokio::time::timeout(EVICTION_WAIT, slots.acquire_owned()).await {
                    Ok(Ok(slot)) => Seat::new(slot, &connection.open),
                    _ => return refuse(&refused, max),
                },
            };
            connection.serve(stream, seat).await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection task holds a slot until it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// A connection closed on accept: counted, and logged at powers of two so a flood cannot fill
/// the log.
fn refuse(refused: &AtomicU64, max: usize) {
    let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(
            "--max-connections {max} reached and no connection made room: closing new connections ({n} so far)"
        );
    }
    crate::metrics::connection_refused();
}

/// The open connections, oldest first, with what each owes and how to close it.
#[derive(Default)]
struct Connections {
    next: AtomicU64,
    by_age: Mutex<BTreeMap<u64, Registered>>,
}

struct Registered {
    owed: Arc<AtomicUsize>,
    evict: Arc<Notify>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Registered>> {
        // Each critical section is one insert, remove or scan: a poisoned map is consistent.
        self.by_age.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register(self: &Arc<Self>, owed: Arc<AtomicUsize>, evict: Arc<Notify>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Registered { owed, evict });
        Registration { id, open: self.clone() }
    }

    /// Tells the oldest connection that owes nothing to close, if there is one.
    fn evict_oldest_idle(&self) {
        let mut open = self.lock();
        let oldest = open
            .iter()
            .find(|(_, c)| c.owed.load(Ordering::SeqCst) == 0)
            .map(|(&id, _)| id);
        if let Some(connection) = oldest.and_then(|id| open.remove(&id)) {
            connection.evict.notify_one();
        }
    }
}

/// Removes a connection from [`Connections`] when its task ends.
struct Registration {
    id: u64,
    open: Arc<Connections>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.open.lock().remove(&self.id);
    }
}

/// What a connection task needs.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    header_read: Duration,
    stop: watch::Receiver<bool>,
    open: Arc<Connections>,
}

/// A connection's place: its slot under `--max-connections` and its entry among the open
/// connections, both given back when it ends.
struct Seat {
    _slot: OwnedSemaphorePermit,
    _registration: Registration,
    owed: Arc<AtomicUsize>,
    evict: Arc<Notify>,
}

impl Seat {
    fn new(slot: OwnedSemaphorePermit, open: &Arc<Connections>) -> Self {
        let owed = Arc::new(AtomicUsize::new(0));
        let evict = Arc::new(Notify::new());
        let registration = open.register(owed.clone(), evict.clone());
        Self {
            _slot: slot,
            _registration: registration,
            owed,
            evict,
        }
    }
}

impl Connection {
    async fn serve(self, stream: TcpStream, seat: Seat) {
        serve_connection(
            stream,
            self.builder,
            self.app,
            self.header_read,
            self.stop,
            seat.owed.clone(),
            &seat.evict,
        )
        .await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    header_read: Duration,
    mut stop: watch::Receiver<bool>,
    owed: Arc<AtomicUsize>,
    evict: &Notify,
) {
    // hyper's header timer starts once it knows the protocol, which it learns from the first
    // bytes: a connection that sends nothing is bounded here.
    tokio::select! {
        first = first_byte(&stream, header_read) => if !first { return },
        _ = stop.wait_for(|stop| *stop) => return,
        () = evict.notified() => return,
    }
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
        // Evicted for owing nothing; a request that slipped in since is still finished.
        () = evict.notified() => {}
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
