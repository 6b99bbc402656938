//! Serving settings: defaults < TOML file < TEI's environment variables < `TESSERA_*` environment
//! < command-line flags.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use tessera_core::quant::Format as Packing;

/// The dtype to compute in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Dtype {
    /// 32-bit float (the CPU default).
    Float32,
    /// 16-bit float.
    Float16,
    /// bfloat16: on a CPU with AVX512_BF16, the linear layers in bf16 and everything else
    /// float32; elsewhere every weight in bf16.
    Bfloat16,
    /// Linear layers in int8 on the CPU (weights per output channel and block of 32 inputs,
    /// activations per block of each token row); everything else float32.
    Int8,
}

impl Dtype {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dtype::Float32 => "float32",
            Dtype::Float16 => "float16",
            Dtype::Bfloat16 => "bfloat16",
            Dtype::Int8 => "int8",
        }
    }

    /// The format a CPU packs this dtype's linear layers in: int8's, and bfloat16's where the
    /// CPU has AVX512_BF16 (elsewhere bfloat16 runs as candle's converted arithmetic).
    pub(crate) fn cpu_packing(self) -> Option<Packing> {
        match self {
            Dtype::Int8 => Some(Packing::Int8),
            Dtype::Bfloat16 if tessera_core::quant::bf16_native() => Some(Packing::Bf16),
            _ => None,
        }
    }

    /// What runs this dtype's products on this CPU: the packed format's kernel, candle's
    /// converted arithmetic for bfloat16 without AVX512_BF16, `None` for float32 and float16.
    pub(crate) fn cpu_kernel(self) -> Option<&'static str> {
        match (self, self.cpu_packing()) {
            (_, Some(format)) => Some(format.kernel()),
            (Dtype::Bfloat16, None) => Some("converted (no AVX512_BF16: slower than float32)"),
            _ => None,
        }
    }

    pub(crate) fn candle(self) -> candle_core::DType {
        match self {
            Dtype::Float32 => candle_core::DType::F32,
            Dtype::Float16 => candle_core::DType::F16,
            Dtype::Bfloat16 => candle_core::DType::BF16,
            // Loaded in f32, then each linear layer is quantized.
            Dtype::Int8 => candle_core::DType::F32,
        }
    }
}

/// Seconds the hub may stay silent before a request or download fails.
pub(crate) const DEFAULT_HUB_TIMEOUT_S: u64 = 60;

/// `--max-batch-tokens` when not given.
pub(crate) const DEFAULT_MAX_BATCH_TOKENS: usize = 16384;

/// The merged settings, with what to log once logging is set up (it is configured by them).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) settings: Settings,
    /// Problems with the sources that did not stop start-up.
    pub(crate) warnings: Vec<String>,
    /// TEI's environment variables that were read.
    pub(crate) tei_variables: Vec<&'static str>,
}

/// Everything `tessera serve` can be told, with TEI's names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Settings {
    pub(crate) model_id: Option<String>,
    pub(crate) revision: Option<String>,
    pub(crate) hf_token: Option<String>,
    pub(crate) huggingface_hub_cache: Option<PathBuf>,
    pub(crate) hub_timeout: u64,
    pub(crate) dtype: Option<Dtype>,
    pub(crate) pooling: Option<String>,
    pub(crate) backend: Option<String>,
    pub(crate) max_concurrent_requests: usize,
    pub(crate) max_batch_tokens: usize,
    pub(crate) max_batch_requests: Option<usize>,
    pub(crate) max_client_batch_size: usize,
    pub(crate) grpc_max_parallel_stream_requests: usize,
    pub(crate) auto_truncate: bool,
    pub(crate) default_prompt_name: Option<String>,
    pub(crate) default_prompt: Option<String>,
    pub(crate) hostname: String,
    pub(crate) port: u16,
    pub(crate) payload_limit: usize,
    pub(crate) api_key: Option<String>,
    pub(crate) json_output: bool,
    pub(crate) prometheus_port: u16,
    pub(crate) tokenization_workers: Option<usize>,
    pub(crate) served_model_name: Option<String>,
    pub(crate) shutdown_grace: u64,
    pub(crate) header_read_timeout: u64,
    pub(crate) body_read_timeout: u64,
    pub(crate) max_connections: usize,
    #[serde(deserialize_with = "one_or_many")]
    pub(crate) cors_allow_origin: Option<Vec<String>>,
    pub(crate) dense_path: Option<String>,
    pub(crate) uds_path: Option<String>,
    pub(crate) disable_spans: bool,
    pub(crate) otlp_endpoint: Option<String>,
    pub(crate) otlp_service_name: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model_id: None,
            revision: None,
            hf_token: None,
            huggingface_hub_cache: None,
            hub_timeout: DEFAULT_HUB_TIMEOUT_S,
            dtype: None,
            pooling: None,
            backend: None,
            max_concurrent_requests: 512,
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
            max_batch_requests: None,
            max_client_batch_size: 32,
            // TEI's (`GRPC_MAX_PARALLEL_STREAM_REQUESTS`).
            grpc_max_parallel_stream_requests: 1024,
            // TEI 1.9's default (it was false before).
            auto_truncate: true,
            default_prompt_name: None,
            default_prompt: None,
            hostname: "0.0.0.0".into(),
            port: 3000,
            payload_limit: 2_000_000,
            api_key: None,
            json_output: false,
            prometheus_port: 9000,
            tokenization_workers: None,
            served_model_name: None,
            shutdown_grace: 30,
            header_read_timeout: 30,
            body_read_timeout: 10,
            max_connections: 4096,
            cors_allow_origin: None,
            dense_path: None,
            uds_path: None,
            disable_spans: false,
            otlp_endpoint: None,
            // TEI's, so traces land where dashboards built for TEI look for them.
            otlp_service_name: "text-embeddings-inference.server".into(),
        }
    }
}

/// A list, or one string of comma-separated items as an environment variable gives it (TEI's
/// `CORS_ALLOW_ORIGIN=https://a.example`); an origin never holds a comma.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(
        Option::<OneOrMany>::deserialize(deserializer)?.map(|value| match value {
            OneOrMany::One(items) => items.split(',').map(|item| item.trim().to_string()).collect(),
            OneOrMany::Many(items) => items,
        }),
    )
}

/// Environment variables that configure tessera but are not settings keys.
const ENV_NOT_SETTINGS: &[&str] = &["config"];

/// The environment variables TEI reads its flags from (clap's `env`: the flag's name in upper
/// case), so that deployments written for TEI (`MODEL_ID`, `PORT`, `MAX_BATCH_TOKENS`...) keep
/// working. `HF_TOKEN` and `HUGGINGFACE_HUB_CACHE` are read by the hub client itself.
const TEI_ENV: &[(&str, &str)] = &[
    ("MODEL_ID", "model_id"),
    ("REVISION", "revision"),
    ("TOKENIZATION_WORKERS", "tokenization_workers"),
    ("DTYPE", "dtype"),
    ("SERVED_MODEL_NAME", "served_model_name"),
    ("POOLING", "pooling"),
    ("MAX_CONCURRENT_REQUESTS", "max_concurrent_requests"),
    ("MAX_BATCH_TOKENS", "max_batch_tokens"),
    ("MAX_BATCH_REQUESTS", "max_batch_requests"),
    ("MAX_CLIENT_BATCH_SIZE", "max_client_batch_size"),
    ("GRPC_MAX_PARALLEL_STREAM_REQUESTS", "grpc_max_parallel_stream_requests"),
    ("AUTO_TRUNCATE", "auto_truncate"),
    ("DEFAULT_PROMPT_NAME", "default_prompt_name"),
    ("DEFAULT_PROMPT", "default_prompt"),
    ("DENSE_PATH", "dense_path"),
    ("HF_API_TOKEN", "hf_token"),
    ("HOSTNAME", "hostname"),
    ("PORT", "port"),
    ("UDS_PATH", "uds_path"),
    ("PAYLOAD_LIMIT", "payload_limit"),
    ("API_KEY", "api_key"),
    ("JSON_OUTPUT", "json_output"),
    ("DISABLE_SPANS", "disable_spans"),
    ("OTLP_ENDPOINT", "otlp_endpoint"),
    ("OTLP_SERVICE_NAME", "otlp_service_name"),
    ("PROMETHEUS_PORT", "prometheus_port"),
    ("CORS_ALLOW_ORIGIN", "cors_allow_origin"),
];

/// Whether TEI's variable `name` counts. Docker and Kubernetes set `HOSTNAME` to the container's
/// name in every container; TEI then falls back to 0.0.0.0, and so does tessera: only an IP
/// address there is a listen address.
fn tei_env_applies(name: &str, value: &str) -> bool {
    name != "HOSTNAME" || value.parse::<std::net::IpAddr>().is_ok()
}

/// TEI's variables present in the environment that count, by name.
fn tei_env_in_use() -> Vec<&'static str> {
    TEI_ENV
        .iter()
        .filter(|(name, _)| std::env::var(name).is_ok_and(|value| tei_env_applies(name, &value)))
        .map(|(name, _)| *name)
        .collect()
}

/// TEI's variables `used` as a provider of settings keys.
fn tei_env(used: Vec<&'static str>) -> Env {
    Env::raw().filter_map(move |key| {
        let (_, setting) = TEI_ENV.iter().find(|(name, _)| used.contains(name) && key == *name)?;
        Some((*setting).into())
    })
}

/// The settings keys, for filtering the environment.
fn known_keys() -> Vec<String> {
    match serde_json::to_value(Settings::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

impl Settings {
    /// Merges defaults, the TOML file, TEI's variables, `TESSERA_*` variables and the flags
    /// given, and returns them with what to log once logging is set up ([`Loaded`]).
    ///
    /// `flags` holds only what the user passed (clap defaults would override env and file).
    pub(crate) fn load(config_file: Option<&Path>, flags: &impl Serialize) -> Result<Loaded, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(Box::new(figment::Error::from(format!(
                    "configuration file {} does not exist",
                    path.display()
                ))));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let known = known_keys();
        let tei_variables = tei_env_in_use();
        let mut warnings = Vec::new();
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if let Some(name) = key.strip_prefix("TESSERA_") {
                let name = name.to_ascii_lowercase();
                if !known.contains(&name) && !ENV_NOT_SETTINGS.contains(&name.as_str()) {
                    warnings.push(format!(
                        "ignoring environment variable {key}: `{name}` is not a tessera setting"
                    ));
                }
            }
        }
        let env = Env::prefixed("TESSERA_")
            .split("__")
            .filter(move |key| known.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)));
        figment
            .merge(tei_env(tei_variables.clone()))
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract()
            .map(|settings| Loaded {
                settings,
                warnings,
                tei_variables,
            })
            .map_err(Box::new)
    }

    /// Checks values and combinations no type can express; the error names the flags.
    pub(crate) fn check(&self) -> Result<(), String> {
        let at_least_one = [
            ("--max-batch-tokens", Some(self.max_batch_tokens)),
            ("--max-concurrent-requests", Some(self.max_concurrent_requests)),
            ("--max-client-batch-size", Some(self.max_client_batch_size)),
            (
                "--grpc-max-parallel-stream-requests",
                Some(self.grpc_max_parallel_stream_requests),
            ),
            ("--max-batch-requests", self.max_batch_requests),
            ("--max-connections", Some(self.max_connections)),
            ("--tokenization-workers", self.tokenization_workers),
            ("--header-read-timeout", Some(self.header_read_timeout as usize)),
            ("--body-read-timeout", Some(self.body_read_timeout as usize)),
        ];
        if let Some((flag, _)) = at_least_one.iter().find(|(_, value)| *value == Some(0)) {
            return Err(format!("{flag} must be at least 1"));
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err("--api-key is empty: pass a non-empty key or leave the flag out".into());
        }
        // Admission counts inputs: a request of more inputs than can ever be in flight would be
        // told to retry (429) forever.
        if self.max_concurrent_requests < self.max_client_batch_size {
            return Err(format!(
                "--max-concurrent-requests {} is below --max-client-batch-size {}: a request of {} inputs could never be admitted; raise --max-concurrent-requests or lower --max-client-batch-size",
                self.max_concurrent_requests, self.max_client_batch_size, self.max_client_batch_size
            ));
        }
        Ok(())
    }

    /// The config file to read: `--config`, else `TESSERA_CONFIG`.
    pub(crate) fn config_file(flag: Option<&PathBuf>) -> Option<PathBuf> {
        flag.cloned()
            .or_else(|| std::env::var_os("TESSERA_CONFIG").map(PathBuf::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    }

    #[test]
    fn precedence_is_flag_then_file_then_default() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "port = 4000\nmax_batch_tokens = 100").unwrap();
        let s = Settings::load(Some(file.path()), &Flags::default()).unwrap().settings;
        assert_eq!((s.port, s.max_batch_tokens, s.max_client_batch_size), (4000, 100, 32));
        let s = Settings::load(Some(file.path()), &Flags { port: Some(5000) })
            .unwrap()
            .settings;
        assert_eq!(s.port, 5000);
    }

    #[test]
    fn unknown_file_keys_are_errors_naming_the_key() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "max_batch_tokenz = 100").unwrap();
        let err = Settings::load(Some(file.path()), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_batch_tokenz"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_key_and_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "port = \"abc\"").unwrap();
        let err = Settings::load(Some(file.path()), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn a_request_that_could_never_be_admitted_is_refused_at_start_up() {
        let settings = Settings {
            max_concurrent_requests: 8,
            max_client_batch_size: 32,
            ..Settings::default()
        };
        let err = settings.check().unwrap_err();
        assert!(
            err.contains("--max-concurrent-requests 8") && err.contains("--max-client-batch-size 32"),
            "{err}"
        );
        assert!(Settings::default().check().is_ok());
    }

    #[test]
    fn zero_limits_name_their_flag() {
        let settings = Settings {
            header_read_timeout: 0,
            ..Settings::default()
        };
        assert_eq!(
            settings.check().unwrap_err(),
            "--header-read-timeout must be at least 1"
        );
        let settings = Settings {
            grpc_max_parallel_stream_requests: 0,
            ..Settings::default()
        };
        assert_eq!(
            settings.check().unwrap_err(),
            "--grpc-max-parallel-stream-requests must be at least 1"
        );
    }
}
