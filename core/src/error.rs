//! Errors that name the file and the key or tensor they concern.

use std::path::PathBuf;

/// Why a model could not be loaded or served.
///
/// Every variant carries the file it concerns, and where it applies the key or tensor, so the
/// message tells the user what to change. [`LoadError::code`] is a stable identifier that is
/// part of tessera's public interface (see `docs/model-support.md`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file the model needs is absent.
    #[error("{file}: {what} is missing; {fix}")]
    MissingFile {
        /// The path that was looked for.
        file: PathBuf,
        /// What the file holds.
        what: &'static str,
        /// How to fix it.
        fix: String,
    },
    /// A file exists but could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON or does not have the expected shape.
    #[error("{file}: invalid JSON at line {line}, column {column}: {message}")]
    InvalidJson {
        /// The file.
        file: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde_json reported.
        message: String,
    },
    /// A required key is absent.
    #[error("{file}: required key `{key}` is missing; {fix}")]
    MissingKey {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// How to fix it.
        fix: String,
    },
    /// A key has a value tessera cannot use.
    #[error("{file}: `{key}` = {value} is invalid: {reason}")]
    InvalidValue {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// The value found, as JSON.
        value: String,
        /// Why it is invalid and what would be valid.
        reason: String,
    },
    /// A key has a value that is valid for the format but not supported here.
    #[error("{file}: `{key}` = {value} is not supported (supported: {supported})")]
    UnsupportedValue {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// The value found.
        value: String,
        /// The supported values.
        supported: String,
    },
    /// `hidden_size` is not a multiple of `num_attention_heads`.
    #[error("{file}: hidden_size {hidden} is not divisible by num_attention_heads {heads}")]
    HeadsNotDividingHidden {
        /// config.json.
        file: PathBuf,
        /// `hidden_size`.
        hidden: usize,
        /// `num_attention_heads`.
        heads: usize,
    },
    /// A tensor the architecture needs is not in the weights.
    #[error("{file}: tensor `{name}` is missing")]
    MissingTensor {
        /// The weights file (or directory for sharded weights).
        file: PathBuf,
        /// The full tensor name.
        name: String,
    },
    /// A tensor has the wrong shape for the configuration.
    #[error("{file}: tensor `{name}` has shape {got:?}, expected {expected:?} from config.json")]
    TensorShape {
        /// The weights file.
        file: PathBuf,
        /// The tensor name.
        name: String,
        /// The shape config.json implies.
        expected: Vec<usize>,
        /// The shape in the file.
        got: Vec<usize>,
    },
    /// The weights could not be read (truncated, corrupt, unsupported dtype).
    #[error("{file}: cannot read weights: {source}")]
    Weights {
        /// The weights file.
        file: PathBuf,
        /// What candle reported.
        #[source]
        source: candle_core::Error,
    },
    /// tokenizer.json could not be loaded.
    #[error("{file}: cannot load tokenizer: {message}")]
    Tokenizer {
        /// The tokenizer file.
        file: PathBuf,
        /// What the tokenizers crate reported.
        message: String,
    },
    /// The backend's own assessment refuses the model (load repeats the decision assess made).
    #[error("{}", .0.message)]
    Declined(Box<crate::Finding>),
}

impl LoadError {
    /// A stable, kebab-case identifier for the kind of failure.
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::MissingFile { .. } => "file-missing",
            LoadError::Io { .. } => "file-unreadable",
            LoadError::InvalidJson { .. } => "invalid-json",
            LoadError::MissingKey { .. } => "config-key-missing",
            LoadError::InvalidValue { .. } => "config-value-invalid",
            LoadError::UnsupportedValue { key, .. } => match key.as_str() {
                "hidden_act" => "hidden-act-unsupported",
                "position_embedding_type" => "position-type-unsupported",
                "feed_forward_type" => "feed-forward-type-unsupported",
                "activation_function" => "dense-activation-unsupported",
                _ => "config-value-unsupported",
            },
            LoadError::HeadsNotDividingHidden { .. } => "heads-not-dividing-hidden",
            LoadError::MissingTensor { .. } => "tensor-missing",
            LoadError::TensorShape { .. } => "tensor-shape-mismatch",
            LoadError::Weights { .. } => "weights-unreadable",
            LoadError::Tokenizer { .. } => "tokenizer-unparsable",
            LoadError::Declined(finding) => finding.code,
        }
    }

    /// Turns a serde_json error on `file` into [`LoadError::InvalidJson`], keeping line and column.
    pub fn json(file: impl Into<PathBuf>, err: &serde_json::Error) -> Self {
        LoadError::InvalidJson {
            file: file.into(),
            line: err.line(),
            column: err.column(),
            message: err.to_string(),
        }
    }

    /// The key or tensor the error concerns, when there is one.
    pub fn subject(&self) -> Option<&str> {
        match self {
            LoadError::MissingKey { key, .. }
            | LoadError::InvalidValue { key, .. }
            | LoadError::UnsupportedValue { key, .. } => Some(key),
            LoadError::HeadsNotDividingHidden { .. } => Some("num_attention_heads"),
            LoadError::MissingTensor { name, .. } | LoadError::TensorShape { name, .. } => Some(name),
            LoadError::Declined(finding) => finding.subject.as_deref(),
            _ => None,
        }
    }

    /// The file the error concerns, when there is one.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            LoadError::MissingFile { file, .. }
            | LoadError::Io { file, .. }
            | LoadError::InvalidJson { file, .. }
            | LoadError::MissingKey { file, .. }
            | LoadError::InvalidValue { file, .. }
            | LoadError::UnsupportedValue { file, .. }
            | LoadError::HeadsNotDividingHidden { file, .. }
            | LoadError::MissingTensor { file, .. }
            | LoadError::TensorShape { file, .. }
            | LoadError::Weights { file, .. }
            | LoadError::Tokenizer { file, .. } => Some(file),
            LoadError::Declined(finding) => finding.file.as_deref(),
        }
    }

    /// This error as a [`crate::Finding`] (severity error), keeping its code, file and subject.
    pub fn to_finding(&self) -> crate::Finding {
        if let LoadError::Declined(finding) = self {
            return (**finding).clone();
        }
        let mut finding = crate::Finding::error(self.code(), self.to_string());
        if let Some(file) = self.file() {
            finding = finding.in_file(file);
        }
        if let Some(subject) = self.subject() {
            finding = finding.about(subject);
        }
        let fix = match self {
            LoadError::MissingKey { fix, .. } | LoadError::MissingFile { fix, .. } => Some(fix.clone()),
            LoadError::UnsupportedValue { key, supported, .. } => Some(format!("set `{key}` to one of: {supported}")),
            LoadError::HeadsNotDividingHidden { hidden, .. } => Some(format!(
                "set `num_attention_heads` to a divisor of {hidden} (as trained)"
            )),
            LoadError::InvalidValue { key, file, .. } => Some(format!(
                "correct `{key}` in {}",
                file.file_name()
                    .map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned())
            )),
            _ => None,
        };
        match fix {
            Some(fix) => finding.fix(fix),
            None => finding,
        }
    }

    /// Maps candle's errors about named tensors to [`LoadError::MissingTensor`] and
    /// [`LoadError::TensorShape`]; everything else stays a [`LoadError::Weights`] with its source.
    pub fn from_candle(file: impl Into<PathBuf>, err: candle_core::Error) -> Self {
        let file = file.into();
        match err {
            candle_core::Error::CannotFindTensor { path } => LoadError::MissingTensor { file, name: path },
            candle_core::Error::WithBacktrace { inner, .. } => LoadError::from_candle(file, *inner),
            candle_core::Error::Context { inner, .. } => LoadError::from_candle(file, *inner),
            candle_core::Error::WithPath { inner, .. } => LoadError::from_candle(file, *inner),
            candle_core::Error::UnexpectedShape { msg, expected, got } => LoadError::TensorShape {
                file,
                name: msg.strip_prefix("shape mismatch for ").unwrap_or(&msg).to_string(),
                expected: expected.dims().to_vec(),
                got: got.dims().to_vec(),
            },
            other => LoadError::Weights { file, source: other },
        }
    }
}

/// A failure while running a batch through a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// A tensor operation failed.
    #[error("model forward failed: {0}")]
    Forward(#[from] candle_core::Error),
    /// The batch is not something this model can run (e.g. a token id outside the vocabulary).
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// The backend cannot do what was asked (e.g. int8 weights).
    #[error("{0}")]
    Unsupported(String),
}
