//! Serving settings: defaults < TOML file < `TESSERA_*` environment < command-line flags.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The dtype to compute in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Dtype {
    /// 32-bit float (the CPU default).
    Float32,
    /// 16-bit float.
    Float16,
    /// bfloat16.
    Bfloat16,
}

impl Dtype {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dtype::Float32 => "float32",
            Dtype::Float16 => "float16",
            Dtype::Bfloat16 => "bfloat16",
        }
    }

    pub(crate) fn candle(self) -> candle_core::DType {
        match self {
            Dtype::Float32 => candle_core::DType::F32,
            Dtype::Float16 => candle_core::DType::F16,
            Dtype::Bfloat16 => candle_core::DType::BF16,
        }
    }
}

/// Seconds the hub may stay silent before a request or download fails.
pub(crate) const DEFAULT_HUB_TIMEOUT_S: u64 = 60;

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
    pub(crate) cors_allow_origin: Option<Vec<String>>,
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
            max_batch_tokens: 16384,
            max_batch_requests: None,
            max_client_batch_size: 32,
            auto_truncate: false,
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
            cors_allow_origin: None,
        }
    }
}

/// Environment variables that configure tessera but are not settings keys.
const ENV_NOT_SETTINGS: &[&str] = &["config"];

/// The settings keys, for filtering the environment.
fn known_keys() -> Vec<String> {
    match serde_json::to_value(Settings::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

impl Settings {
    /// Merges defaults, the TOML file, `TESSERA_*` variables and the flags given.
    ///
    /// `flags` holds only what the user passed (clap defaults would override env and file).
    pub(crate) fn load(config_file: Option<&Path>, flags: &impl Serialize) -> Result<Settings, Box<figment::Error>> {
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
        for (key, _) in std::env::vars() {
            if let Some(name) = key.strip_prefix("TESSERA_") {
                let name = name.to_ascii_lowercase();
                if !known.contains(&name) && !ENV_NOT_SETTINGS.contains(&name.as_str()) {
                    tracing::warn!("ignoring environment variable {key}: `{name}` is not a tessera setting");
                }
            }
        }
        let env = Env::prefixed("TESSERA_")
            .split("__")
            .filter(move |key| known.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)));
        figment
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)
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
        let s = Settings::load(Some(file.path()), &Flags::default()).unwrap();
        assert_eq!((s.port, s.max_batch_tokens, s.max_client_batch_size), (4000, 100, 32));
        let s = Settings::load(Some(file.path()), &Flags { port: Some(5000) }).unwrap();
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
}
