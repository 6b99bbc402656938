//! `tessera serve`: validate, load, start the model thread, serve HTTP, shut down cleanly.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use metrics_exporter_prometheus::PrometheusHandle;
use tessera_core::quant::Format;
use tessera_core::{
    ClassifierHead, EmbeddingHead, LexicalHead, LoadRequest, MultiVectorHead, SpladeHead, TextTokenizer,
    TruncationDirection,
};

use crate::backends;
use crate::device;
use crate::http::lifecycle::{Lifecycle, Phase};
use crate::http::{self, AppState, Info};
use crate::infer::{Infer, InferParts, Prompts, Serves};
use crate::metrics;
use crate::plan::{plan, PlanRequest, ServingPlan, Task};
use crate::queue::{Budget, Queue};
use crate::settings::{Dtype, Settings};
use crate::source::{self, HubOptions, Wanted};
use crate::worker::{self, Head, Worker};

/// Runs the server: resolve the model, plan, load, start the model thread, serve HTTP until a
/// signal, then finish what was accepted. Settings were checked by [`Settings::check`].
pub(crate) async fn run(settings: Settings, threads: usize) -> anyhow::Result<()> {
    let model_id = settings.model_id.clone().ok_or_else(|| {
        anyhow!("no model given: pass --model-id DIR or ORG/NAME (or set TESSERA_MODEL_ID, or TEI's MODEL_ID)")
    })?;
    // Listening comes first, so probes see the phases rather than a refused connection.
    let lifecycle = Lifecycle::new();
    let server = Listening::start(&settings, &lifecycle).await?;
    let model = resolve(&settings, &model_id, lifecycle.downloaded.clone()).await?;
    lifecycle.enter(Phase::Loading);
    let (device, device_name) = device::select();
    let planned = plan_model(&settings, &model.dir, &device, device_name)?;
    let loaded = load(&planned, &device)?;
    lifecycle.enter(Phase::Warming);
    let started = start(
        &settings,
        threads,
        &model_id,
        model.sha.clone(),
        planned,
        loaded,
        &device,
    )?;
    server.serve(&settings, &lifecycle, started).await
}

/// The model directory: a local one, or downloaded from the hub.
/// `bytes`: where the download's progress is counted (for `/health`).
async fn resolve(
    settings: &Settings,
    model_id: &str,
    bytes: Arc<source::Bytes>,
) -> anyhow::Result<source::ResolvedModel> {
    source::resolve(
        model_id,
        settings.revision.as_deref(),
        || {
            HubOptions::new(
                settings.hf_token.clone(),
                settings.huggingface_hub_cache.clone(),
                settings.hub_timeout,
            )
            .map(|options| options.reporting_to(bytes))
        },
        Wanted::Everything,
        settings.dense_path.as_deref(),
    )
    .await
}

/// What planning decided, with the inspection it decided from.
struct Planned {
    inspection: tessera_core::ModelInspection,
    plan: ServingPlan,
    /// Warnings for the log and `/info`.
    warnings: Vec<tessera_core::Finding>,
    compiled_backends: Vec<&'static str>,
}

/// Inspects the model (weights scanned), plans as `validate-model` does, and logs the decision;
/// a model that cannot be served is an error listing every finding, before anything loads.
fn plan_model(
    settings: &Settings,
    root: &std::path::Path,
    device: &candle_core::Device,
    device_name: &str,
) -> anyhow::Result<Planned> {
    let mut inspection = crate::plan::inspect_files(root, settings.dense_path.as_deref());
    let model_type = inspection.config.as_ref().and_then(|c| c.str("model_type"));
    let dtype = device::default_dtype(device, settings.dtype, model_type);
    crate::plan::scan(&mut inspection, dtype);
    let registry = backends::registry();
    let outcome = plan(
        &inspection,
        &registry,
        &PlanRequest {
            pooling: settings.pooling.clone(),
            backend: settings.backend.clone(),
            dtype,
            max_batch_tokens: Some(settings.max_batch_tokens),
        },
    );
    for finding in outcome
        .findings
        .iter()
        .filter(|f| f.severity != tessera_core::Severity::Error)
    {
        tracing::warn!("{finding}");
    }
    let Some(plan) = outcome.plan.clone() else {
        let errors: Vec<String> = outcome.errors().map(ToString::to_string).collect();
        bail!("{} cannot be served:\n  {}", root.display(), errors.join("\n  "));
    };
    tracing::info!(
        backend = plan.chosen.factory.name(),
        architecture = %plan.chosen.architecture,
        pooling = %plan.task.pooling_name(),
        pooling_source = %plan.task.pooling_source(),
        max_input_length = plan.max_input_length,
        dtype = plan.dtype.name(),
        device = device_name,
        "serving plan"
    );
    for evidence in &plan.chosen.evidence {
        tracing::info!(
            "evidence: {} `{}`: {}",
            format!("{:?}", evidence.source).to_lowercase(),
            evidence.subject,
            evidence.statement
        );
    }
    let warnings = outcome
        .findings
        .iter()
        .filter(|f| f.severity == tessera_core::Severity::Warning)
        .cloned()
        .collect();
    Ok(Planned {
        inspection,
        plan,
        warnings,
        compiled_backends: registry.names(),
    })
}

/// The tokenizer, the backbone and the head, loaded for the plan.
struct Loaded {
    tokenizer: TextTokenizer,
    backend: Box<dyn tessera_core::Backend>,
    description: tessera_core::BackendDescription,
    head: Head,
    output_dim: usize,
    /// A PyLate ColBERT model's encoding of queries and documents.
    colbert: Option<tessera_core::ColbertEncoder>,
}

/// The format the linear layers are packed in after loading, where the dtype asks for one on
/// this device: int8 always (on the CPU), bfloat16 where the CPU multiplies bf16 natively.
fn packing(dtype: Dtype, device: &candle_core::Device) -> anyhow::Result<Option<Format>> {
    if device.is_cuda() {
        if dtype == Dtype::Int8 {
            anyhow::bail!("--dtype int8 runs on the CPU; on a GPU use float16 or bfloat16");
        }
        return Ok(None);
    }
    match (dtype, dtype.cpu_kernel()) {
        (Dtype::Int8, Some("portable")) => tracing::warn!(
            "this CPU has neither AVX512-VNNI, AVX-VNNI nor AVX2: int8 runs on a portable loop, about 20x slower \
             than float32; serve float32 here"
        ),
        (Dtype::Int8, Some("avx2")) => tracing::info!(
            "this CPU has AVX2 but no VNNI: int8 saves memory, with the same vectors, at about float32's speed"
        ),
        (Dtype::Bfloat16, _) if dtype.cpu_packing().is_none() => tracing::warn!(
            "this CPU has no AVX512_BF16: bfloat16 runs as candle's converted arithmetic, slower than float32 \
             (0.73x on a Zen 4 with the 4 x 32 mixed load); float32, or int8 where it has VNNI, is faster"
        ),
        _ => {}
    }
    Ok(dtype.cpu_packing())
}

fn load(planned: &Planned, device: &candle_core::Device) -> anyhow::Result<Loaded> {
    let Planned { inspection, plan, .. } = planned;
    let root = &inspection.root;
    let (tokenizer, source) = TextTokenizer::for_model(inspection, plan.max_input_length)?;
    if let Some(built) = source.built_from() {
        tracing::info!("no tokenizer.json: built {built}");
    }
    if let Some(chat) = tokenizer.chat() {
        tracing::info!(
            "inputs are rendered through the chat template of {} ({} messages), as sentence-transformers gives them",
            chat.template.path.display(),
            chat.format.name()
        );
    }
    let load_started = std::time::Instant::now();
    let packing = packing(plan.dtype, device)?;
    let request = LoadRequest {
        inspection,
        // Packed formats are made from the float32 weights.
        dtype: if packing.is_some() {
            candle_core::DType::F32
        } else {
            plan.dtype.candle()
        },
        device: device.clone(),
        kernel: None,
    };
    let mut backend = plan
        .chosen
        .factory
        .load(&request)
        .with_context(|| format!("loading {}", root.display()))?;
    if let Some(format) = packing {
        let (before, after) = backend
            .quantize(format)
            .with_context(|| format!("packing {} in {}", root.display(), format.name()))?;
        tracing::info!(
            "linear layers in {} ({} kernel): {:.1} MiB of weights instead of {:.1} MiB",
            format.name(),
            format.kernel(),
            after as f64 / (1 << 20) as f64,
            before as f64 / (1 << 20) as f64
        );
    }
    let description = backend.describe();
    let mut colbert = None;
    let (head, output_dim) = match &plan.task {
        Task::Embed {
            pooling,
            lexical,
            multi_vector,
            ..
        } => {
            let dense = EmbeddingHead::load(&inspection.sentence_transformers.dense, device)?
                .with_int8_output(tessera_core::int8_output(inspection.config.as_ref()));
            let dim = dense.output_dim(description.hidden_size);
            let unused = || tessera_core::unused_token_ids(root, |t| tokenizer.token_id(t));
            let lexical = match lexical {
                Some(tessera_core::LexicalLayer::File(file)) => {
                    Some(LexicalHead::load(file, description.hidden_size, unused())?)
                }
                Some(tessera_core::LexicalLayer::TokenClassifier) => Some(LexicalHead::load_token_classifier(
                    &request,
                    description.hidden_size,
                    unused(),
                )?),
                None => None,
            };
            let multi_vector = multi_vector
                .as_deref()
                .map(|file| MultiVectorHead::load(file, description.hidden_size))
                .transpose()?;
            (
                Head::Pooled {
                    pooling: *pooling,
                    dense,
                    lexical,
                    multi_vector,
                },
                dim,
            )
        }
        Task::Splade(spec) => (Head::Splade(SpladeHead::load(&request, spec)?), spec.vocab),
        Task::Classify(spec) => (Head::Classify(ClassifierHead::load(&request, spec)?), spec.labels.len()),
        Task::MultiVector(settings) => {
            let encoder = tessera_core::ColbertEncoder::load(inspection, settings, &tokenizer)?;
            let head = MultiVectorHead::pylate(settings, description.hidden_size, encoder.skiplist().to_vec())?;
            colbert = Some(encoder);
            let dim = settings
                .dense
                .last()
                .map_or(description.hidden_size, |d| d.out_features);
            (Head::MultiVector(head), dim)
        }
    };
    tracing::info!(
        "loaded {} ({}, kernel {}) in {:.2?}",
        description.architecture,
        description.backend,
        description.kernel,
        load_started.elapsed()
    );
    Ok(Loaded {
        tokenizer,
        backend,
        description,
        head,
        output_dim,
        colbert,
    })
}

/// A running model thread and the HTTP application over it.
struct Started {
    app: axum::Router,
    queue: Arc<Queue>,
    worker_thread: std::thread::JoinHandle<()>,
    /// The model thread's warm-up pass, awaited before the server reports ready.
    warmed: worker::WarmedUp,
    /// Whether the model thread runs (for `/health` and `/live`).
    healthy: Arc<AtomicBool>,
    metrics: PrometheusHandle,
}

/// Installs the metrics, starts the model thread and builds the HTTP application.
fn start(
    settings: &Settings,
    threads: usize,
    model_id: &str,
    model_sha: Option<String>,
    planned: Planned,
    loaded: Loaded,
    device: &candle_core::Device,
) -> anyhow::Result<Started> {
    let Planned {
        inspection,
        plan,
        warnings,
        compiled_backends,
    } = planned;
    let Loaded {
        tokenizer,
        backend,
        description,
        head,
        output_dim,
        colbert,
    } = loaded;
    let tokenization_workers = settings.tokenization_workers.unwrap_or(threads).max(1);
    let budget = Budget {
        max_tokens: settings.max_batch_tokens,
        max_requests: settings.max_batch_requests.unwrap_or(usize::MAX),
        pads: description.pads,
    };
    tracing::info!(
        threads,
        tokenization_workers,
        max_batch_tokens = budget.max_tokens,
        pads = budget.pads,
        "compute"
    );

    let served_name = settings
        .served_model_name
        .clone()
        .unwrap_or_else(|| model_id.to_string());
    let metrics_handle = metrics::install(
        plan.max_input_length,
        &metrics::ModelInfo {
            model_id: served_name.clone(),
            backend: description.backend.into(),
            dtype: plan.dtype.name().into(),
            pooling: plan.task.pooling_name(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    )
    .context("cannot install the Prometheus recorder")?;

    // Before the model thread starts: a bad --default-prompt-name must not leave it running.
    let prompts = prompts(settings, &inspection.sentence_transformers, backend.adapters())?;
    let queue = Arc::new(Queue::default());
    let healthy = Arc::new(AtomicBool::new(true));
    let healthy_flag = healthy.clone();
    // A text every tokenizer encodes to a few tokens; a tokenizer that cannot only skips the
    // warm-up (its requests will say why).
    let warm_up = tokenizer
        .encode("tessera warm-up", Some(TruncationDirection::Right))
        .ok()
        .filter(|e| !e.ids.is_empty());
    let (worker_thread, warmed) = worker::spawn(
        Worker { backend, head, budget },
        queue.clone(),
        healthy.clone(),
        threads,
        warm_up,
    )?;
    let infer = Infer::new(InferParts {
        tokenizer,
        queue: queue.clone(),
        healthy,
        max_inflight_inputs: settings.max_concurrent_requests,
        tokenization_workers,
        vocab_size: description.vocab_size,
        empty_sequences: description.empty_sequences,
        include_prompt: include_prompt(&inspection),
        compute_type: if device.is_cuda() { "gpu" } else { "cpu" },
        max_client_batch_size: settings.max_client_batch_size,
        auto_truncate: settings.auto_truncate,
        prompts,
        serves: match &plan.task {
            Task::Embed {
                lexical, multi_vector, ..
            } => Serves::Embeddings {
                lexical: lexical.is_some(),
                multi_vector: multi_vector.is_some(),
            },
            Task::Splade(_) => Serves::Sparse,
            Task::Classify(spec) => Serves::Scores {
                labels: spec.labels.len(),
            },
            Task::MultiVector(_) => Serves::MultiVector,
        },
        colbert,
    });

    let info = Info {
        model_id: served_name,
        model_sha,
        model_dtype: plan.dtype.name().into(),
        model_type: http::info_model_type(&plan.task),
        max_concurrent_requests: settings.max_concurrent_requests,
        max_input_length: plan.max_input_length,
        max_batch_tokens: settings.max_batch_tokens,
        max_batch_requests: settings.max_batch_requests,
        max_client_batch_size: settings.max_client_batch_size,
        auto_truncate: settings.auto_truncate,
        tokenization_workers,
        version: env!("CARGO_PKG_VERSION"),
        sha: option_env!("TESSERA_GIT_SHA"),
        docker_label: None,
        backend: description.backend.into(),
        architecture: plan.chosen.architecture.clone(),
        attention_kernel: description.kernel.into(),
        evidence: plan.chosen.evidence.clone(),
        compiled_backends,
        pooling_source: plan.task.pooling_source(),
        hidden_size: description.hidden_size,
        embedding_dim: output_dim,
        warnings,
    };
    let state = AppState {
        infer,
        info: Arc::new(info),
        output_dim,
        task: Arc::new(plan.task),
        metrics: metrics_handle.clone(),
    };
    let grpc = crate::grpc::routes(
        state.clone(),
        settings.api_key.as_deref(),
        settings.grpc_max_parallel_stream_requests,
    )?;
    let app = http::app(
        state,
        settings.payload_limit,
        Duration::from_secs(settings.body_read_timeout),
        settings.api_key.as_deref(),
        settings.cors_allow_origin.as_deref(),
    )?
    // After the JSON API's layers: a gRPC stream may idle longer than --body-read-timeout, and
    // its messages are bounded by gRPC's own limit (4 MiB each), not --payload-limit.
    .merge(grpc);
    Ok(Started {
        app,
        queue,
        worker_thread,
        warmed,
        healthy: healthy_flag,
        metrics: metrics_handle,
    })
}

/// The HTTP server, answering from before the model loads ([`Lifecycle`]) until a signal.
struct Listening {
    server: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Receiver<bool>,
    ip: std::net::IpAddr,
}

impl Listening {
    /// Binds `--hostname:--port` and serves the lifecycle's routes; a signal moves it to draining
    /// and stops taking connections.
    async fn start(settings: &Settings, lifecycle: &Arc<Lifecycle>) -> anyhow::Result<Self> {
        let ip: std::net::IpAddr = settings
            .hostname
            .parse()
            .with_context(|| format!("--hostname `{}` is not an IP address", settings.hostname))?;
        let addr = SocketAddr::new(ip, settings.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!("listening on http://{local}");
        println!("tessera listening on http://{local}");
        // `stop`: the signal came (draining starts); the listener closes once drained.
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let limits = http::server::Limits {
            header_read: Duration::from_secs(settings.header_read_timeout),
            max_connections: settings.max_connections,
        };
        let draining = lifecycle.clone();
        let server = tokio::spawn(http::server::serve(listener, lifecycle.router(), limits, async move {
            shutdown_signal().await;
            draining.enter(Phase::Draining);
            let _ = stop_tx.send(true);
            draining.drained().await;
        }));
        Ok(Self { server, stop, ip })
    }

    /// Serves the model until a signal, then drains: accepted requests finish (within
    /// `--shutdown-grace`), then the model thread finishes what is queued.
    async fn serve(self, settings: &Settings, lifecycle: &Lifecycle, started: Started) -> anyhow::Result<()> {
        let Started {
            app,
            queue,
            worker_thread,
            warmed,
            healthy,
            metrics: metrics_handle,
        } = started;
        let Self { server, stop, ip } = self;
        spawn_upkeep(metrics_handle.clone(), stop.clone());
        if settings.prometheus_port != 0 {
            spawn_prometheus_listener(
                SocketAddr::new(ip, settings.prometheus_port),
                metrics_handle,
                stop.clone(),
            )
            .await;
        }
        match warmed.await {
            Ok(Ok(Some(took))) => tracing::info!("warm-up pass in {took:.2?}"),
            Ok(Ok(None)) => tracing::warn!("no warm-up pass: the tokenizer gave no tokens for a short text"),
            Ok(Err(why)) => bail!("the model failed its warm-up pass on a short input: {why}"),
            Err(_) => bail!("the model thread stopped before its warm-up pass"),
        }
        lifecycle.ready(app, healthy);
        let mut stopping = stop;
        let grace = Duration::from_secs(settings.shutdown_grace);
        let deadline = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            _ = server => {}
            () = deadline => {
                bail!("accepted requests did not finish within --shutdown-grace {}s; exiting anyway", grace.as_secs());
            }
        }
        tracing::info!("HTTP server stopped; finishing queued work");
        queue.close();
        tokio::task::spawn_blocking(move || worker_thread.join())
            .await?
            .map_err(|_| anyhow!("the model thread panicked"))?;
        Ok(())
    }
}

/// Keeps the recorder's histograms bounded (the exporter asks for periodic upkeep).
fn spawn_upkeep(handle: PrometheusHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => handle.run_upkeep(),
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
    });
}

/// `--prometheus-port`: a second listener serving only `/metrics`. A port that cannot be bound
/// is a warning, not a failure: `/metrics` on the main port serves the same exposition.
async fn spawn_prometheus_listener(
    addr: SocketAddr,
    handle: PrometheusHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!("Prometheus metrics on http://{addr}/metrics");
            tokio::spawn(async move {
                let app = http::metrics_app(handle);
                let shutdown = async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                };
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                    tracing::error!("Prometheus listener failed: {e}");
                }
            });
        }
        Err(e) => tracing::warn!(
            "cannot listen on {addr} for Prometheus ({e}); /metrics on the main port serves the same metrics"
        ),
    }
}

/// The pooling config's `include_prompt` (sentence-transformers' default: true).
fn include_prompt(inspection: &tessera_core::ModelInspection) -> bool {
    let file = inspection.sentence_transformers.pooling.as_ref();
    file.and_then(|f| f.values.get("include_prompt"))
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

fn prompts(
    settings: &Settings,
    st: &tessera_core::inspection::SentenceTransformers,
    tasks: &[String],
) -> anyhow::Result<Prompts> {
    let mut prompts = Prompts {
        named: st.prompts.clone(),
        default: None,
        tasks: tasks.to_vec(),
        default_task: None,
    };
    let default_name = settings
        .default_prompt_name
        .clone()
        .or_else(|| st.default_prompt_name.clone());
    // A default prompt named as a task adapter selects that adapter too (jina-embeddings-v3).
    prompts.default_task = default_name
        .as_ref()
        .and_then(|name| tasks.iter().position(|t| t == name));
    prompts.default = match (&settings.default_prompt, default_name) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(name)) => Some(
            prompts
                .resolve(Some(&name))
                .map_err(|e| anyhow!("--default-prompt-name: {e}"))?
                .unwrap_or_default(),
        ),
        (None, None) => None,
    };
    Ok(prompts)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received: no new connections, finishing accepted requests");
}
