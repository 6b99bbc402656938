//! Where the server is in its life, for probes: tessera listens as soon as it starts, and
//! answers `/health` (readiness, TEI's route) with 503 and the phase (`downloading`, `loading`,
//! `warming`) until the model serves, 200 while it does, and 503 `draining` from the moment a
//! shutdown signal arrives while accepted requests finish. `/live` (liveness) stays 200 in every
//! phase and fails only when the model thread has died. Every other route answers 503 with the
//! phase until the model is ready, then goes to the full API. Draining keeps the listener open
//! until the accepted requests are answered, so a load balancer still probing gets a 503 (and
//! retries elsewhere) rather than a refused connection.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tower::ServiceExt;

/// A phase of the server's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Fetching the model from the hub (or finding it in the cache).
    Downloading,
    /// Reading the weights, planning, building the model.
    Loading,
    /// Starting the model thread and the service around it.
    Warming,
    /// Serving.
    Ready,
    /// A shutdown signal arrived: accepted requests finish, nothing new is taken.
    Draining,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::Downloading,
        Phase::Loading,
        Phase::Warming,
        Phase::Ready,
        Phase::Draining,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::Downloading => "downloading",
            Phase::Loading => "loading",
            Phase::Warming => "warming",
            Phase::Ready => "ready",
            Phase::Draining => "draining",
        }
    }
}

/// The server's phase, and the full API once the model serves.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    phase: AtomicU8,
    app: OnceLock<(Router, Arc<AtomicBool>)>,
    /// Requests the full API is answering now.
    in_flight: AtomicUsize,
    /// The model download's bytes, reported while downloading.
    pub(crate) downloaded: Arc<crate::source::Bytes>,
}

impl Lifecycle {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: AtomicU8::new(Phase::Downloading as u8),
            app: OnceLock::new(),
            in_flight: AtomicUsize::new(0),
            downloaded: Arc::default(),
        })
    }

    pub(crate) fn phase(&self) -> Phase {
        Phase::ALL[usize::from(self.phase.load(Ordering::Acquire))]
    }

    /// Moves to `phase`; once draining, it stays draining.
    pub(crate) fn enter(&self, phase: Phase) {
        let _ = self.phase.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            (now != Phase::Draining as u8).then_some(phase as u8)
        });
        tracing::info!("phase: {}", phase.name());
    }

    /// The model serves: `app` answers every route, `healthy` says whether the model thread runs.
    pub(crate) fn ready(&self, app: Router, healthy: Arc<AtomicBool>) {
        let _ = self.app.set((app, healthy));
        self.enter(Phase::Ready);
    }

    /// Resolves once no accepted request is being answered (checked every 20 ms): what a drain
    /// waits for before the listener closes.
    pub(crate) async fn drained(&self) {
        while self.in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn model_thread_died(&self) -> bool {
        self.app
            .get()
            .is_some_and(|(_, healthy)| !healthy.load(Ordering::Acquire))
    }

    /// The router to listen with from the start.
    pub(crate) fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/health", get(health))
            .route("/live", get(live))
            .fallback(forward)
            .with_state(self.clone())
    }
}

/// TEI's error body plus `phase`.
fn body(phase: Phase, message: &str) -> serde_json::Value {
    json!({
        "error": message,
        "error_type": "Unhealthy",
        "code": "unhealthy",
        "phase": phase.name(),
    })
}

/// 503 with `body`.
fn unavailable_with(body: serde_json::Value) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// 503 with the phase.
fn unavailable(phase: Phase, message: &str) -> Response {
    unavailable_with(body(phase, message))
}

fn not_serving(phase: Phase) -> Response {
    match phase {
        Phase::Draining => unavailable(
            phase,
            "the server is shutting down: send the request to another replica",
        ),
        _ => unavailable(phase, "the model is not ready yet"),
    }
}

async fn health(State(lifecycle): State<Arc<Lifecycle>>) -> Response {
    match lifecycle.phase() {
        Phase::Ready if lifecycle.model_thread_died() => unavailable(Phase::Ready, "the model worker is not running"),
        Phase::Ready => StatusCode::OK.into_response(),
        Phase::Downloading => {
            let bytes = &lifecycle.downloaded;
            let mut body = body(Phase::Downloading, "the model is being downloaded");
            // The sizes of the files started so far: `total_bytes` grows as each file begins.
            body["downloaded_bytes"] = bytes.done.load(Ordering::Relaxed).into();
            body["total_bytes"] = bytes.total.load(Ordering::Relaxed).into();
            unavailable_with(body)
        }
        phase => not_serving(phase),
    }
}

async fn live(State(lifecycle): State<Arc<Lifecycle>>) -> Response {
    let phase = lifecycle.phase();
    match lifecycle.model_thread_died() {
        true => unavailable(phase, "the model thread has died: restart the process"),
        false => axum::Json(json!({"status": "alive", "phase": phase.name()})).into_response(),
    }
}

async fn forward(State(lifecycle): State<Arc<Lifecycle>>, request: Request) -> Response {
    match (lifecycle.phase(), lifecycle.app.get()) {
        (Phase::Ready, Some((app, _))) => {
            let _answering = InFlight::enter(&lifecycle);
            match app.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
        (phase, _) => not_serving(phase),
    }
}

/// One request being answered, counted for [`Lifecycle::drained`] until dropped (a client that
/// disconnects drops it too).
struct InFlight<'a>(&'a Lifecycle);

impl<'a> InFlight<'a> {
    fn enter(lifecycle: &'a Lifecycle) -> Self {
        lifecycle.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(lifecycle)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
