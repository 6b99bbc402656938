//! Command-line interface. Every serve flag is optional here: what the user did not pass must not
//! override the environment or the config file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::settings::Dtype;

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "A text-embedding inference server with TEI's HTTP API",
    arg_required_else_help = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// TEI's router takes its flags without a subcommand (`text-embeddings-router --model-id X`, the
/// arguments a TEI container is given): a command line that starts with a flag other than help
/// or version is `serve`'s.
pub(crate) fn serve_by_default(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let first = args.get(1).and_then(|a| a.to_str());
    if first.is_some_and(|a| a.starts_with('-') && !matches!(a, "-h" | "--help" | "-V" | "--version")) {
        args.insert(1, "serve".into());
    }
    args
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve a model over HTTP.
    Serve(Box<ServeArgs>),
    /// Check a model directory and report what tessera would do with it, without serving.
    ValidateModel(ValidateArgs),
    /// Fetch what serving a hub model needs into the hub cache and exit, printing the snapshot
    /// directory (for init containers and images; `serve` then runs with HF_HUB_OFFLINE=1).
    Download(DownloadArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DownloadArgs {
    /// The hub model id (ORG/NAME).
    pub(crate) model: String,
    /// Hub revision: a branch, tag, commit sha or `refs/pr/N` [default: main].
    #[arg(long)]
    pub(crate) revision: Option<String>,
    /// A Dense module directory `serve --dense-path` will read, fetched too.
    #[arg(long, value_name = "DIR")]
    pub(crate) dense_path: Option<String>,
    #[command(flatten)]
    pub(crate) hub: HubArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The model: a local directory or a hub id (ORG/NAME). For hub ids only the small files and the
    /// safetensors headers are downloaded.
    pub(crate) model: String,
    /// Hub revision: a branch, tag, commit sha or `refs/pr/N` [default: main].
    #[arg(long)]
    pub(crate) revision: Option<String>,
    #[command(flatten)]
    pub(crate) hub: HubArgs,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Compute dtype to plan for; with --deep, float16 also checks that every weight fits its range.
    #[arg(long, value_enum)]
    pub(crate) dtype: Option<Dtype>,
    /// Also read every weight value (as `serve` does at load): NaN or infinity refuses the model.
    /// For a hub id this downloads the weights.
    #[arg(long)]
    pub(crate) deep: bool,
    /// Pooling to check instead of the model's pooling config.
    #[arg(long)]
    pub(crate) pooling: Option<String>,
    /// Backend to force.
    #[arg(long)]
    pub(crate) backend: Option<String>,
    /// Dense module directory to check instead of the one modules.json lists (as `serve --dense-path`).
    #[arg(long, value_name = "DIR")]
    pub(crate) dense_path: Option<String>,
}

/// Where hub models come from; shared by `serve` and `validate-model`.
#[derive(Debug, Default, Args, Serialize)]
pub(crate) struct HubArgs {
    /// Token for private or gated hub models. Env: HF_TOKEN [default: the token file of `hf auth login`].
    #[arg(long, alias = "hf-api-token")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hf_token: Option<String>,

    /// Hub cache directory. Env: HUGGINGFACE_HUB_CACHE [default: $HF_HOME/hub or ~/.cache/huggingface/hub].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) huggingface_hub_cache: Option<PathBuf>,

    /// Seconds without an answer or data from the hub before a request or download fails [default: 60].
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hub_timeout: Option<u64>,
}

impl HubArgs {
    /// The hub client's options these flags (and the environment) give.
    pub(crate) fn options(&self) -> anyhow::Result<crate::source::HubOptions> {
        crate::source::HubOptions::new(
            self.hf_token.clone(),
            self.huggingface_hub_cache.clone(),
            self.hub_timeout.unwrap_or(crate::settings::DEFAULT_HUB_TIMEOUT_S),
        )
    }
}

/// Flags of `tessera serve`.
#[derive(Debug, Args, Serialize)]
#[command(after_help = "Every flag can also be set as a TESSERA_<NAME> environment variable \
(e.g. TESSERA_MAX_BATCH_TOKENS=8192) or as a key in a TOML file given with --config \
(e.g. max_batch_tokens = 8192). Precedence: flag > environment > config file > default.")]
pub(crate) struct ServeArgs {
    /// TOML file with settings (keys are the flag names with underscores). Env: TESSERA_CONFIG.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,

    /// The model: a local directory, or a Hugging Face Hub id (ORG/NAME) downloaded into the hub cache.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) model_id: Option<String>,

    /// Hub revision: a branch, tag, commit sha or `refs/pr/N` [default: main].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) revision: Option<String>,

    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) hub: HubArgs,

    /// Compute dtype [default: float32 on the CPU; float16 on a GPU, bfloat16 for Gemma 3].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dtype: Option<Dtype>,

    /// Pooling, overriding 1_Pooling/config.json: cls, mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pooling: Option<String>,

    /// Force a backend by name instead of choosing from evidence.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) backend: Option<String>,

    /// Inputs in flight before new requests get 429 [default: 512].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_concurrent_requests: Option<usize>,

    /// Token budget of one batch; padded backends count padding [default: 16384].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_batch_tokens: Option<usize>,

    /// Most inputs in one batch [default: no limit].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_batch_requests: Option<usize>,

    /// Most inputs in one client request [default: 32].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_client_batch_size: Option<usize>,

    /// Messages of one gRPC stream answered at once [default: 1024].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) grpc_max_parallel_stream_requests: Option<usize>,

    /// Truncate over-long inputs instead of rejecting them [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) auto_truncate: Option<bool>,

    /// Prompt from config_sentence_transformers.json applied when a request names none.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) default_prompt_name: Option<String>,

    /// Prompt text applied when a request names none.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) default_prompt: Option<String>,

    /// Address to listen on [default: 0.0.0.0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hostname: Option<String>,

    /// Port to listen on [default: 3000].
    #[arg(short, long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) port: Option<u16>,

    /// Largest request body in bytes [default: 2000000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) payload_limit: Option<usize>,

    /// Bearer token required on inference routes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) api_key: Option<String>,

    /// Log as JSON lines [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) json_output: Option<bool>,

    /// Port of the separate Prometheus listener; 0 turns it off (`/metrics` on the main port stays) [default: 9000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prometheus_port: Option<u16>,

    /// Threads that tokenize [default: the CPUs available to the process].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tokenization_workers: Option<usize>,

    /// Seconds to finish accepted requests after SIGTERM/SIGINT before exiting anyway [default: 30].
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shutdown_grace: Option<u64>,

    /// Seconds a client may take to send a request's headers, counted from the connection's
    /// opening or, on a kept-alive connection, from the previous response: it also closes idle
    /// connections [default: 30].
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) header_read_timeout: Option<u64>,

    /// Seconds a client may take to send a request's body before it gets 408 [default: 10].
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body_read_timeout: Option<u64>,

    /// Open client connections; at the cap a new connection replaces the oldest one that owes no
    /// response, or is closed when none makes room within 1 s [default: 4096].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_connections: Option<usize>,

    /// Origins allowed to call the API from a browser (repeat the flag; `*` allows any).
    #[arg(long, value_name = "ORIGIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cors_allow_origin: Option<Vec<String>>,

    /// Model name reported to clients [default: the model id].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) served_model_name: Option<String>,

    /// Directory of the Dense module to load instead of the one modules.json lists (models that
    /// ship one per output size, `2_Dense_256`, `2_Dense_1024`...); the model must list exactly one.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dense_path: Option<String>,

    /// Accepted for TEI's command lines; unused (TEI's Python backends talk over this socket,
    /// tessera has none).
    #[arg(long, hide = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uds_path: Option<String>,

    /// Leave the request spans out of JSON log lines [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) disable_spans: Option<bool>,

    /// OpenTelemetry collector to send request traces to, as OTLP over gRPC
    /// (e.g. `http://localhost:4317`).
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) otlp_endpoint: Option<String>,

    /// `service.name` of the traces [default: text-embeddings-inference.server].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) otlp_service_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> Vec<std::ffi::OsString> {
        line.iter().map(Into::into).collect()
    }

    #[test]
    fn a_tei_command_line_is_serve() {
        let tei = args(&["tessera", "--model-id", "BAAI/bge-small-en-v1.5", "--port", "80"]);
        assert_eq!(
            serve_by_default(tei),
            args(&[
                "tessera",
                "serve",
                "--model-id",
                "BAAI/bge-small-en-v1.5",
                "--port",
                "80"
            ])
        );
        for line in [
            &["tessera", "validate-model", "x"][..],
            &["tessera", "--help"],
            &["tessera", "-V"],
            &["tessera"],
        ] {
            assert_eq!(serve_by_default(args(line)), args(line));
        }
    }
}
