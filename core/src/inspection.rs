//! What is known about a model directory before any weight is loaded.
//!
//! The `tessera-validation` crate fills a [`ModelInspection`]; backends read it to decide
//! whether they can serve the model ([`crate::BackendFactory::assess`]) and to load it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

/// How serious a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to change.
    Info,
    /// The model is served, but something should be checked.
    Warning,
    /// The model cannot be served as it is.
    Error,
}

/// One observation about a model, with a concrete fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// Stable kebab-case identifier (documented in `docs/model-support.md`).
    pub code: &'static str,
    /// The file concerned, relative to the model directory where possible.
    pub file: Option<PathBuf>,
    /// The key or tensor concerned.
    pub subject: Option<String>,
    /// One line on what is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl Finding {
    /// Starts a finding; add the file, subject and fix with the builder methods.
    pub fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity,
            code,
            file: None,
            subject: None,
            message: message.into(),
            fix: None,
        }
    }

    /// An error: the model cannot be served.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    /// A warning: served, but check this.
    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    /// Informational.
    pub fn info(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Info, code, message)
    }

    /// Names the file concerned.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Names the key or tensor concerned.
    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// States the fix.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{severity}[{}]", self.code)?;
        if let Some(file) = &self.file {
            write!(f, " {}", file.display())?;
        }
        if let Some(subject) = &self.subject {
            write!(f, " `{subject}`")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, " (fix: {fix})")?;
        }
        Ok(())
    }
}

/// Where a piece of evidence comes from, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceSource {
    /// A tensor name or shape in the weights.
    Tensor,
    /// A value in config.json.
    Config,
    /// A name (`_name_or_path`, `auto_map`, `architectures`): supporting evidence only.
    Name,
}

/// One fact a backend relied on to decide it can serve a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// What kind of fact it is.
    pub source: EvidenceSource,
    /// The key or tensor.
    pub subject: String,
    /// What it shows.
    pub statement: String,
}

impl Evidence {
    /// Evidence from the weights.
    pub fn tensor(subject: impl Into<String>, statement: impl Into<String>) -> Self {
        Self {
            source: EvidenceSource::Tensor,
            subject: subject.into(),
            statement: statement.into(),
        }
    }

    /// Evidence from config.json.
    pub fn config(subject: impl Into<String>, statement: impl Into<String>) -> Self {
        Self {
            source: EvidenceSource::Config,
            subject: subject.into(),
            statement: statement.into(),
        }
    }

    /// Supporting evidence from names.
    pub fn name(subject: impl Into<String>, statement: impl Into<String>) -> Self {
        Self {
            source: EvidenceSource::Name,
            subject: subject.into(),
            statement: statement.into(),
        }
    }
}

/// config.json, parsed leniently: every key is kept as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelConfig {
    /// Path of the file.
    pub path: PathBuf,
    /// All keys as found.
    pub values: Map<String, Value>,
}

impl ModelConfig {
    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    /// `key` as a string, if it is one.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// `key` as a non-negative integer, if it is one.
    pub fn usize(&self, key: &str) -> Option<usize> {
        self.get(key).and_then(Value::as_u64).map(|v| v as usize)
    }

    /// `key` as a positive integer, or the error naming the key and the fix.
    pub fn required_usize(&self, key: &str) -> Result<usize, crate::LoadError> {
        match self.get(key) {
            None => Err(crate::LoadError::MissingKey {
                file: self.path.clone(),
                key: key.to_string(),
                fix: format!("set `{key}` to the value the model was trained with"),
            }),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(n as usize),
                _ => Err(crate::LoadError::InvalidValue {
                    file: self.path.clone(),
                    key: key.to_string(),
                    value: v.to_string(),
                    reason: "must be a positive integer".into(),
                }),
            },
        }
    }

    /// `hidden_act` (default `gelu`, the exact form), or the error listing supported values.
    pub fn hidden_act(&self) -> Result<crate::HiddenAct, crate::LoadError> {
        self.activation("hidden_act")
    }

    /// The activation named by `key` (default `gelu`, the exact form), or the error listing
    /// supported values.
    pub fn activation(&self, key: &str) -> Result<crate::HiddenAct, crate::LoadError> {
        match self.get(key) {
            None => Ok(crate::HiddenAct::Gelu),
            Some(v) => v
                .as_str()
                .and_then(crate::HiddenAct::parse)
                .ok_or_else(|| crate::LoadError::UnsupportedValue {
                    file: self.path.clone(),
                    key: key.into(),
                    value: v.to_string(),
                    supported: crate::HiddenAct::supported_names(),
                }),
        }
    }

    /// `key` as a float, if it is a number.
    pub fn f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }
}

/// One tensor as listed in a weights header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    /// Shape.
    pub shape: Vec<usize>,
    /// Data type as the file names it (`F32`, `F16`, `BF16`, `I64`...).
    pub dtype: String,
    /// The file that holds it.
    pub file: PathBuf,
    /// Where its data lies in that file (absolute byte offsets), for safetensors files.
    #[serde(skip)]
    pub bytes: Option<std::ops::Range<u64>>,
}

/// How the weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightsFormat {
    /// One `model.safetensors`.
    Safetensors,
    /// `model.safetensors.index.json` with shards.
    ShardedSafetensors,
    /// `pytorch_model.bin` (a PyTorch zip pickle).
    PyTorch,
}

/// The weights' files and the tensors their headers list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightsIndex {
    /// The storage format.
    pub format: WeightsFormat,
    /// Files to load, in order.
    pub files: Vec<PathBuf>,
    /// Every tensor by full name.
    pub tensors: BTreeMap<String, TensorInfo>,
}

/// Where PyTorch's `torch.nn.utils.parametrize` keeps a module's `weight` when it saves a
/// parametrized module: jina-embeddings-v3 saves every linear and embedding weight this way, its
/// LoRA adapters beside it (`parametrizations.weight.0.lora_A`). Its parametrization leaves the
/// weight as it is, so the stored tensor is the weight.
pub const PARAMETRIZED_WEIGHT: &str = "parametrizations.weight.original";

/// `x.weight` stored as a parametrized module's: `x.parametrizations.weight.original`.
pub fn parametrized(name: &str) -> Option<String> {
    name.strip_suffix(".weight")
        .map(|module| format!("{module}.{PARAMETRIZED_WEIGHT}"))
}

impl WeightsIndex {
    /// The tensor called exactly `name`.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// The tensor `name` stands for, as it is stored: `name` itself, or for a `weight` the
    /// parametrized module's ([`PARAMETRIZED_WEIGHT`]).
    pub fn resolve(&self, name: &str) -> Option<(String, &TensorInfo)> {
        self.get(name).map(|info| (name.to_string(), info)).or_else(|| {
            let stored = parametrized(name)?;
            let info = self.get(&stored)?;
            Some((stored, info))
        })
    }

    /// The weight-name prefix (`""`, `"bert."`...) in front of `suffix`, the shortest if several.
    pub fn prefix_before(&self, suffix: &str) -> Option<String> {
        self.tensors
            .keys()
            .filter_map(|name| name.strip_suffix(suffix))
            .min_by_key(|prefix| prefix.len())
            .map(str::to_string)
    }

    /// True when some tensor name ends with `suffix` (any prefix, any layer index).
    pub fn any_ends_with(&self, suffix: &str) -> bool {
        self.tensors.keys().any(|k| k.ends_with(suffix))
    }

    /// The file to name in messages: the single file, or the directory holding the shards.
    pub fn display_file(&self) -> PathBuf {
        match self.files.as_slice() {
            [one] => one.clone(),
            [first, ..] => first.parent().map(Path::to_path_buf).unwrap_or_default(),
            [] => PathBuf::new(),
        }
    }
}

/// The tokenizer files found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenizerInfo {
    /// Path of tokenizer.json when it exists.
    pub path: Option<PathBuf>,
    /// Vocabulary size including added tokens, when it parsed.
    pub vocab_size: Option<usize>,
    /// The highest token id the tokenizer can produce (vocabulary, added tokens and the special
    /// tokens its post-processor inserts), with that token, when it parsed. Not the same as
    /// `vocab_size - 1`: ids may have gaps.
    pub max_id: Option<(u32, String)>,
    /// tokenizer.json's own truncation length (`truncation.max_length`), where it sets one.
    pub truncation: Option<usize>,
    /// The highest segment (token type) id the tokenizer gives a pair's tokens: 1 with BERT's
    /// pair template (the second text), 0 with XLM-RoBERTa's.
    pub pair_segment: Option<u32>,
}

/// sentence-transformers `1_Pooling/config.json`, as found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolingFile {
    /// Path of the file.
    pub path: PathBuf,
    /// All keys as found.
    pub values: Map<String, Value>,
}

/// The activation of a `Dense` module, as the module's config names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DenseModule {
    /// The module directory (e.g. `2_Dense`).
    pub dir: PathBuf,
    /// `in_features`.
    pub in_features: usize,
    /// `out_features`.
    pub out_features: usize,
    /// `bias`.
    pub bias: bool,
    /// `activation_function`, a Python path such as `torch.nn.modules.activation.Tanh`.
    pub activation: String,
}

/// The sentence-transformers files of a model directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SentenceTransformers {
    /// `modules.json` types in order (`sentence_transformers.models.Pooling`...).
    pub modules: Vec<String>,
    /// The pooling module's config, when present.
    pub pooling: Option<PoolingFile>,
    /// `max_seq_length` of `sentence_bert_config.json`, or (as sentence-transformers 6 reads it)
    /// `model_max_length` of `tokenizer_config.json`.
    pub max_seq_length: Option<usize>,
    /// Whether modules.json ends with a `Normalize` module.
    pub normalize: bool,
    /// Whether modules.json's first module is a `StaticEmbedding` (model2vec and
    /// sentence-transformers static models): a table of token vectors averaged, with no
    /// config.json and no transformer.
    pub static_embedding: bool,
    /// Where the first module keeps its own files (tokenizer.json and the weights), relative to
    /// the root: empty when at the root (a transformer; model2vec; sentence-transformers 5 and
    /// later), `0_StaticEmbedding` for a StaticEmbedding saved by sentence-transformers 3 and 4
    /// (static-retrieval-mrl-en-v1).
    pub module_dir: PathBuf,
    /// `Dense` modules in order.
    pub dense: Vec<DenseModule>,
    /// `config_sentence_transformers.json` `prompts`: name -> text prepended to the input.
    pub prompts: BTreeMap<String, String>,
    /// `config_sentence_transformers.json` `default_prompt_name`.
    pub default_prompt_name: Option<String>,
    /// How the pipeline feeds texts to the model (`modality_config`).
    pub inputs: InputModality,
    /// `processing_kwargs.chat_template` of sentence_bert_config.json: variables for the chat
    /// template (`add_generation_prompt`...), `restore_suffix` and size keys left out.
    pub chat_template_kwargs: Map<String, Value>,
    /// `processing_kwargs.chat_template.restore_suffix` as saved: whether a truncated rendered
    /// input gets the template's tail written back over its last tokens (see
    /// [`SentenceTransformers::restores_suffix`]).
    pub restore_suffix: Option<bool>,
    /// A causal language model's `LogitScore` module (a reranker): the score is
    /// `logit(true) - logit(false)` at the last token.
    pub logit_score: Option<LogitScore>,
    /// A PyLate ColBERT model: token vectors through its Dense modules, queries and documents
    /// encoded as its config says.
    pub colbert: Option<ColbertSettings>,
}

/// What a PyLate ColBERT model (modules.json: the transformer, then `pylate.models.Dense.Dense`
/// modules, no pooling) saves in `config_sentence_transformers.json`, with PyLate's defaults for
/// what it leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColbertSettings {
    /// `config_sentence_transformers.json`.
    pub path: PathBuf,
    /// `query_prefix`: a token inserted after the first (`[Q] ` by default; empty: none).
    pub query_prefix: String,
    /// `document_prefix` (`[D] ` by default).
    pub document_prefix: String,
    /// `query_length`: a query's tokens, prefix included (32 by default): longer ones are cut,
    /// shorter ones padded with the mask token when `do_query_expansion`.
    pub query_length: usize,
    /// `document_length`: a document's tokens, prefix included (180 by default): longer ones are cut.
    pub document_length: usize,
    /// `do_query_expansion` (true by default).
    pub query_expansion: bool,
    /// `attend_to_expansion_tokens` (false by default; false without expansion): whether the
    /// expansion tokens are keys too.
    pub attend_to_expansion: bool,
    /// `skiplist_words`: tokens whose vectors a document leaves out (ASCII punctuation by default).
    pub skiplist_words: Vec<String>,
    /// The Dense modules applied to every token, in order.
    pub dense: Vec<DenseModule>,
}

impl ColbertSettings {
    /// PyLate's default `skiplist_words`: Python's `string.punctuation`, one per character.
    pub const DEFAULT_SKIPLIST: &'static str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
}

impl SentenceTransformers {
    /// sentence-transformers restores the template's tail unless `restore_suffix` is false.
    pub fn restores_suffix(&self) -> bool {
        self.restore_suffix != Some(false)
    }
}

/// How sentence-transformers gives texts to the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum InputModality {
    /// As plain text: `modality_config` without `message`, or a modules.json from before
    /// sentence-transformers 6 (which reads it so).
    Text,
    /// Through the chat template (`modality_config.message`), in the format saved (`None`:
    /// `auto`, inferred from the template).
    Messages(Option<crate::chat::MessageFormat>),
    /// No modules.json: sentence-transformers 6 then uses the chat template when the tokenizer
    /// has one, plain text otherwise.
    #[default]
    Unsaved,
}

/// sentence-transformers' `LogitScore` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogitScore {
    /// `true_token_id`: the token whose logit is the score.
    pub true_token: u32,
    /// `false_token_id`: the token whose logit is subtracted, if any.
    pub false_token: Option<u32>,
}

/// Everything read from a model directory without loading weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelInspection {
    /// The model directory.
    pub root: PathBuf,
    /// config.json, when it parsed.
    pub config: Option<ModelConfig>,
    /// Tokenizer files.
    pub tokenizer: TokenizerInfo,
    /// sentence-transformers files.
    pub sentence_transformers: SentenceTransformers,
    /// Weight headers, when readable.
    pub weights: Option<WeightsIndex>,
    /// What reading the files found (not the backends' assessments).
    pub findings: Vec<Finding>,
}

/// What every BERT-family assessment starts from: the config, the weights, and the prefix in
/// front of `embeddings.word_embeddings.weight`.
#[derive(Debug, Clone)]
pub struct EncoderLayout<'a> {
    /// config.json.
    pub config: &'a ModelConfig,
    /// The weight headers.
    pub weights: &'a WeightsIndex,
    /// The weight-name prefix (`""`, `"bert."`...).
    pub prefix: String,
    /// The word table (with `.weight`, without the prefix) the prefix was found before.
    pub word_table: &'static str,
}

impl EncoderLayout<'_> {
    /// The finding for a `hidden_size` the word embeddings contradict, checked before anything
    /// is derived from it (head width, expected shapes): a wrong width is the root cause, not
    /// the head count it no longer divides.
    pub fn hidden_size_contradicted(&self) -> Option<Finding> {
        let name = format!("{}{}", self.prefix, self.word_table);
        let width = *self.weights.get(&name)?.shape.get(1)?;
        let configured = self.config.usize("hidden_size")?;
        (configured != width).then(|| {
            Finding::error(
                "tensor-shape-mismatch",
                format!("config.json says `hidden_size: {configured}` but the weights say {width}: `{name}` is {width} wide"),
            )
            .in_file("config.json")
            .about("hidden_size")
            .fix(format!("set `hidden_size` to {width} in config.json"))
        })
    }
}

/// The tensor every BERT-family checkpoint has.
pub const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

impl ModelInspection {
    /// The directory of the first module's tokenizer.json and weights.
    pub fn module_files_dir(&self) -> PathBuf {
        self.root.join(&self.sentence_transformers.module_dir)
    }

    /// The config, weights and prefix of a BERT-family encoder, or why there is none.
    pub fn encoder_layout(&self) -> Result<EncoderLayout<'_>, Box<Finding>> {
        self.layout(WORD_EMBEDDINGS)
    }

    /// The config, weights and prefix of a model whose word table is `word_table` (with
    /// `.weight`, without prefix), or why there is none.
    pub fn layout(&self, word_table: &'static str) -> Result<EncoderLayout<'_>, Box<Finding>> {
        let Some(config) = &self.config else {
            return Err(Box::new(
                Finding::error(
                    "architecture-undecided",
                    "the architecture cannot be decided without a readable config.json",
                )
                .in_file(self.config_path())
                .fix("fix the finding about config.json first"),
            ));
        };
        let Some(weights) = &self.weights else {
            return Err(Box::new(
                Finding::error(
                    "architecture-undecided",
                    "the architecture cannot be decided without readable weights",
                )
                .in_file(self.root.join("model.safetensors"))
                .fix("fix the finding about the weights first"),
            ));
        };
        let stored = parametrized(word_table);
        let prefix = weights
            .prefix_before(word_table)
            .or_else(|| stored.and_then(|s| weights.prefix_before(&s)));
        let Some(prefix) = prefix else {
            return Err(Box::new(
                Finding::error(
                    "architecture-unknown",
                    format!("no `{word_table}` tensor, the word table of this family"),
                )
                .in_file(weights.display_file())
                .about(word_table)
                .fix("check that the model is one of the families tessera serves (docs/model-support.md) and that its weights are complete"),
            ));
        };
        Ok(EncoderLayout {
            config,
            weights,
            prefix,
            word_table,
        })
    }

    /// Path of config.json.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// True when any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}
