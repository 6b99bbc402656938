//! What inspecting the model decided: backend and evidence, pooling, maximum input length.
//! Used by `serve` (before any weight is loaded) and by `validate-model`.

use tessera_core::{
    Chosen, ClassifierSpec, Finding, ImpliedPooling, ModelInspection, Pooling, PoolingFileError, Registry, Selection,
    Severity, SpladeSpec,
};

use crate::settings::Dtype;

/// What the user asked for that affects the plan.
#[derive(Debug, Clone)]
pub(crate) struct PlanRequest {
    pub(crate) pooling: Option<String>,
    pub(crate) backend: Option<String>,
    /// `--dtype`, or the device's default ([`crate::device::default_dtype`]).
    pub(crate) dtype: Dtype,
    pub(crate) max_batch_tokens: Option<usize>,
}

/// The decisions, ready to log, serve from `/info`, and act on.
#[derive(Debug, Clone)]
pub(crate) struct ServingPlan {
    pub(crate) chosen: Chosen,
    pub(crate) task: Task,
    pub(crate) max_input_length: usize,
    pub(crate) dtype: Dtype,
}

/// What the model's output is turned into, decided once from the weights and `--pooling`.
#[derive(Debug, Clone)]
pub(crate) enum Task {
    /// Sentence embeddings: pooling, then the sentence-transformers Dense modules; with a
    /// lexical layer (BGE-M3's `sparse_linear.pt`, gte-multilingual-base's token classifier),
    /// lexical weights on `/embed_sparse` as well; with BGE-M3's `colbert_linear.pt`, vectors
    /// per token on `/embed_multi_vector`.
    Embed {
        pooling: Pooling,
        source: String,
        lexical: Option<tessera_core::LexicalLayer>,
        multi_vector: Option<std::path::PathBuf>,
    },
    /// SPLADE vectors from the masked-LM head (`--pooling splade`).
    Splade(SpladeSpec),
    /// Sequence classification through the pooler and `classifier` (`/predict`, `/rerank`).
    Classify(ClassifierSpec),
    /// A PyLate ColBERT model: vectors per token through its Dense modules, on
    /// `/embed_multi_vector` only.
    MultiVector(tessera_core::inspection::ColbertSettings),
}

impl Task {
    /// How sentence vectors are pooled, for logs, `/info` and metrics.
    pub(crate) fn pooling_name(&self) -> String {
        match self {
            Task::Embed { pooling, .. } => pooling.to_string(),
            Task::Splade(_) => "splade".into(),
            Task::Classify(spec) => spec.pooling.to_string(),
            Task::MultiVector(_) => "none".into(),
        }
    }

    /// Where that decision came from.
    pub(crate) fn pooling_source(&self) -> String {
        match self {
            Task::Embed { source, .. } => source.clone(),
            Task::Splade(_) => "SPLADE on the masked-LM head (--pooling splade)".into(),
            Task::Classify(spec) => format!("the classification head: {}", spec.kind.describe()),
            Task::MultiVector(settings) => format!(
                "none: a PyLate ColBERT model, a vector per token ({})",
                settings.path.display()
            ),
        }
    }
}

/// The outcome of planning: every finding, the selection, and the plan when servable.
#[derive(Debug, Clone)]
pub(crate) struct PlanOutcome {
    pub(crate) findings: Vec<Finding>,
    pub(crate) selection: Option<Selection>,
    pub(crate) plan: Option<ServingPlan>,
}

impl PlanOutcome {
    pub(crate) fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Error)
    }
}

/// Inspects the model directory; with `deep`, also reads every weight once for NaN and infinity
/// (and, at float16, for values beyond its range), which `serve` always does: a non-finite
/// weight answers NaN for every text that reaches it.
/// `dense_path`: `--dense-path`.
pub(crate) fn inspect(root: &std::path::Path, deep: bool, dtype: Dtype, dense_path: Option<&str>) -> ModelInspection {
    let mut inspection = inspect_files(root, dense_path);
    if deep {
        scan(&mut inspection, dtype);
    }
    inspection
}

/// The model directory's files and weight headers, without reading the weights.
pub(crate) fn inspect_files(root: &std::path::Path, dense_path: Option<&str>) -> ModelInspection {
    let options = tessera_validation::ReadOptions {
        dense_path: dense_path.map(str::to_string),
    };
    tessera_validation::inspect_with(root, &options)
}

/// Reads every weight once for NaN and infinity (and, at float16, values beyond its range).
pub(crate) fn scan(inspection: &mut ModelInspection, dtype: Dtype) {
    if let Some(weights) = &inspection.weights {
        let started = std::time::Instant::now();
        let findings = tessera_validation::scan_weights(weights, dtype == Dtype::Float16);
        tracing::info!(
            "read {} weight tensors for NaN/infinity in {:.2?}",
            weights.tensors.len(),
            started.elapsed()
        );
        inspection.findings.extend(findings);
    }
}

pub(crate) fn plan(inspection: &ModelInspection, registry: &Registry, request: &PlanRequest) -> PlanOutcome {
    let mut findings = inspection.findings.clone();
    let selection = match registry.select(inspection, request.backend.as_deref()) {
        Ok(selection) => Some(selection),
        Err(e) => {
            findings.push(
                Finding::error("backend-unknown", e.to_string())
                    .about("--backend")
                    .fix(format!("pass one of: {}", registry.names().join(", "))),
            );
            None
        }
    };
    let chosen = selection.as_ref().and_then(|s| s.chosen.clone());
    match (&selection, &chosen) {
        (Some(_), Some(chosen)) => {
            // A backend's finding about a key or tensor an error already names is a consequence
            // of that error (a wrong `vocab_size` also mis-shapes the embedding table).
            for finding in &chosen.findings {
                let explained = finding.subject.is_some()
                    && findings
                        .iter()
                        .any(|f| f.severity == Severity::Error && f.subject == finding.subject);
                if !explained {
                    findings.push(finding.clone());
                }
            }
        }
        // A file that is missing or unreadable is the root cause: every backend declines for
        // it, and saying no backend exists would send the user looking for the wrong fix.
        (Some(_), None) if prerequisites_missing(inspection) => {}
        (Some(selection), None) => {
            for (_, reasons) in &selection.declined {
                for reason in reasons {
                    if !findings
                        .iter()
                        .any(|f| f.code == reason.code && f.subject == reason.subject)
                    {
                        findings.push(reason.clone());
                    }
                }
            }
            findings.push(selection.no_backend_finding());
        }
        (None, _) => {}
    }

    let implied = chosen.as_ref().and_then(|c| c.pooling);
    let task = choose_task(inspection, request.pooling.as_deref(), implied, &mut findings);
    check_chat_inputs(inspection, task.as_ref(), &mut findings);
    let positions = chosen.as_ref().and_then(|c| c.max_positions);
    let max_input_length = max_input_length(inspection, positions, request.max_batch_tokens, &mut findings);
    let dtype = request.dtype;

    let servable = !findings.iter().any(|f| f.severity == Severity::Error);
    let plan = match (chosen, task, servable) {
        (Some(chosen), Some(task), true) => Some(ServingPlan {
            chosen,
            task,
            max_input_length,
            dtype,
        }),
        _ => None,
    };
    PlanOutcome {
        findings,
        selection,
        plan,
    }
}

/// True when a file the architecture is decided from (config.json, the weights) is missing or
/// unreadable: the inspection already holds that error.
pub(crate) fn prerequisites_missing(inspection: &ModelInspection) -> bool {
    let config_needed = !inspection.sentence_transformers.static_embedding;
    (config_needed && inspection.config.is_none()) || inspection.weights.is_none()
}

/// Whether the inputs go through the chat template (sentence-transformers' `message` modality),
/// and whether the template renders what the task gives it: a text as a `user` message, a
/// reranker's pair as `query` and `document` messages. A template that raises or drops a half of
/// the pair would fail or mis-score every request, so it is found here.
fn check_chat_inputs(inspection: &ModelInspection, task: Option<&Task>, findings: &mut Vec<Finding>) {
    use tessera_core::chat::Message;
    use tessera_core::inspection::InputModality;
    let chat = match tessera_core::ChatInputs::for_model(inspection) {
        Ok(Some(chat)) => chat,
        Ok(None) => return,
        Err(e) => {
            findings.push(
                Finding::error("chat-template-invalid", e.message.clone())
                    .in_file(&e.path)
                    .fix("repair the template (chat_template.jinja or tokenizer_config.json's `chat_template`)"),
            );
            return;
        }
    };
    let file = chat.template.path.clone();
    let pairs = matches!(task, Some(Task::Classify(spec)) if spec.labels.len() == 1);
    let explicit = matches!(inspection.sentence_transformers.inputs, InputModality::Messages(_));
    findings.push(
        Finding::info(
            "inputs-chat-rendered",
            format!(
                "inputs are rendered through the chat template ({} messages: a text as a `user` message after its prompt as a `system` one{}) and tokenized without special tokens, as sentence-transformers gives them {}",
                chat.format.name(),
                if pairs { ", a pair as `query` and `document` messages" } else { "" },
                if explicit { "(`modality_config.message`)" } else { "to a model saved without modules.json whose tokenizer has a template" },
            ),
        )
        .in_file(&file)
        .fix(match explicit {
            true => "none needed",
            false => "none if the model was trained on rendered inputs; to give texts as they are, add a sentence_bert_config.json whose `modality_config` has only `text`",
        }),
    );
    let text_failure = match task {
        Some(Task::Embed { .. }) => chat.render(&Message::text(None, "probe")).err(),
        _ => None,
    };
    if let Some(message) = text_failure {
        findings.push(
            Finding::error(
                "chat-template-invalid",
                format!("the chat template does not render a text as a `user` message: {message}"),
            )
            .in_file(&file)
            .fix("use a template that renders `user` messages, or save the model with text-only inputs"),
        );
    }
    match (&chat.pair_failure, pairs, explicit) {
        (Some(failure), true, true) => findings.push(
            Finding::error(
                "chat-template-drops-pair",
                format!("the chat template cannot carry a reranker's pair as `query` and `document` messages: {failure}"),
            )
            .in_file(&file)
            .fix("use a template that renders both roles, e.g. `<Query>: {{ messages | selectattr(\"role\", \"eq\", \"query\") | map(attribute=\"content\") | first }}`"),
        ),
        (Some(failure), true, false) => findings.push(
            Finding::warning(
                "chat-template-drops-pair",
                format!("the chat template cannot carry a pair as `query` and `document` messages ({failure}): pairs are tokenized with the tokenizer's pair template instead (sentence-transformers refuses such a model)"),
            )
            .in_file(&file)
            .fix("check that the model was trained on pairs tokenized so; otherwise save a template that renders both roles"),
        ),
        _ => {}
    }
}

/// A classification head in the weights decides the task; otherwise `--pooling splade` or the
/// pooling configuration does.
/// `implied`: the pooling the chosen architecture implies where the model configures none.
fn choose_task(
    inspection: &ModelInspection,
    pooling: Option<&str>,
    implied: Option<ImpliedPooling>,
    findings: &mut Vec<Finding>,
) -> Option<Task> {
    match ClassifierSpec::detect(inspection) {
        Some(Ok(spec)) => {
            if pooling.is_some() {
                findings.push(
                    Finding::warning(
                        "pooling-ignored-for-classifier",
                        "--pooling is ignored: the model is a classifier",
                    )
                    .about("--pooling")
                    .fix("leave out --pooling for *ForSequenceClassification models"),
                );
            }
            return Some(Task::Classify(spec));
        }
        Some(Err(finding)) => {
            findings.push(*finding);
            return None;
        }
        None => {}
    }
    if let Some(settings) = &inspection.sentence_transformers.colbert {
        if pooling.is_some() {
            findings.push(
                Finding::warning(
                    "pooling-ignored-for-colbert",
                    "--pooling is ignored: the model is a PyLate ColBERT model, which gives a vector per token",
                )
                .about("--pooling")
                .fix("leave out --pooling; ask /embed_multi_vector for the token vectors"),
            );
        }
        findings.push(
            Finding::info(
                "multi-vector-served",
                format!(
                    "a PyLate ColBERT model: /embed_multi_vector answers a vector per token ({} wide), queries (`is_query: true`) cut or padded to {} tokens with `{}` after the first, documents cut to {} with `{}`, as PyLate encodes them; it has no sentence vector for /embed",
                    settings.dense.last().map_or_else(|| "hidden-size".to_string(), |d| d.out_features.to_string()),
                    settings.query_length,
                    settings.query_prefix,
                    settings.document_length,
                    settings.document_prefix,
                ),
            )
            .in_file(&settings.path),
        );
        return Some(Task::MultiVector(settings.clone()));
    }
    if pooling.is_some_and(|p| p.eq_ignore_ascii_case("splade")) {
        return match SpladeSpec::detect(inspection) {
            Ok(spec) => Some(Task::Splade(spec)),
            Err(finding) => {
                findings.push(*finding);
                None
            }
        };
    }
    if tessera_core::int8_output(inspection.config.as_ref()) {
        findings.push(
            Finding::info(
                "embeddings-int8-quantized",
                format!("`model_type: {}`: the model's own code returns pooled vectors as int8 values, round(127 * tanh(x)), and so does tessera (before normalizing, which /embed does unless `normalize: false`)", tessera_core::PPLX_MODEL_TYPE),
            )
            .in_file(inspection.config_path())
            .about("model_type")
            .fix("none needed; pass `normalize: false` to get the int8 values themselves"),
        );
    }
    let lexical = tessera_core::lexical_layer(inspection);
    match &lexical {
        Some(tessera_core::LexicalLayer::File(file)) => findings.push(
            Finding::info(
                "lexical-weights-served",
                format!("`{}`: BGE-M3's lexical layer; /embed_sparse returns each text's lexical weights (token id -> weight), as FlagEmbedding's `BGEM3FlagModel` computes them, beside the dense vectors of /embed", tessera_core::SPARSE_LINEAR),
            )
            .in_file(file)
            .fix("none needed"),
        ),
        Some(tessera_core::LexicalLayer::TokenClassifier) => findings.push(
            Finding::info(
                "lexical-weights-served",
                "a token classifier with one output (`classifier`, config.json's `*ForTokenClassification`): gte-multilingual-base's sparse head; /embed_sparse returns each text's lexical weights (token id -> the largest relu(classifier(h)) of its tokens with that id, special tokens left out), as its own `GTEEmbedding` computes them, beside the dense vectors of /embed",
            )
            .in_file(inspection.weights.as_ref().map(|w| w.display_file()).unwrap_or_default())
            .about("classifier.weight")
            .fix("none needed"),
        ),
        None => {}
    }
    let multi_vector = tessera_core::multi_vector_layer(inspection);
    if let Some(file) = &multi_vector {
        findings.push(
            Finding::info(
                "multi-vector-served",
                format!("`{}`: BGE-M3's multi-vector (ColBERT) layer; /embed_multi_vector returns a vector for every token of each text but the first, as FlagEmbedding's `BGEM3FlagModel` computes them (`return_colbert_vecs`)", tessera_core::COLBERT_LINEAR),
            )
            .in_file(file)
            .fix("none needed"),
        );
    }
    choose_pooling(inspection, pooling, implied, findings).map(|(pooling, source)| Task::Embed {
        pooling,
        source,
        lexical,
        multi_vector,
    })
}

fn choose_pooling(
    inspection: &ModelInspection,
    flag: Option<&str>,
    implied: Option<ImpliedPooling>,
    findings: &mut Vec<Finding>,
) -> Option<(Pooling, String)> {
    if let Some(flag) = flag {
        return match flag.parse::<Pooling>() {
            Ok(p) => Some((p, "--pooling".into())),
            Err(e) => {
                findings.push(
                    Finding::error("pooling-invalid", e)
                        .about("--pooling")
                        .fix(format!("pass one of: {}, splade", Pooling::supported_names())),
                );
                None
            }
        };
    }
    if let Some(file) = &inspection.sentence_transformers.pooling {
        return match Pooling::from_file(file) {
            Ok(p) => Some((p, file.path.display().to_string())),
            Err(e) => {
                let code = match e {
                    PoolingFileError::NoMode => "pooling-config-no-mode",
                    PoolingFileError::Several { .. } => "pooling-config-several-modes",
                    _ => "pooling-mode-unknown",
                };
                findings.push(
                    Finding::error(code, format!("the pooling config is unusable: {e}"))
                        .in_file(&file.path)
                        .about("pooling_mode_*")
                        .fix(format!(
                            "set exactly one pooling_mode_* key to true, or pass --pooling ({})",
                            Pooling::supported_names()
                        )),
                );
                None
            }
        };
    }
    if let Some(config) = &inspection.config {
        if let Some(name) = config.str("emb_pooler") {
            return match name.parse::<Pooling>() {
                Ok(p) => Some((p, format!("{} emb_pooler", config.path.display()))),
                Err(e) => {
                    findings.push(
                        Finding::error("pooling-mode-unknown", e)
                            .in_file(&config.path)
                            .about("emb_pooler")
                            .fix("pass --pooling"),
                    );
                    None
                }
            };
        }
    }
    if let Some(ImpliedPooling { pooling, why }) = implied {
        findings.push(
            Finding::info(
                "pooling-implied-by-architecture",
                format!("no 1_Pooling/config.json: pooled by {pooling}, as the architecture implies ({why})"),
            )
            .in_file(inspection.root.join("1_Pooling/config.json"))
            .fix("add the sentence-transformers pooling config, or pass --pooling, to pool otherwise"),
        );
        return Some((pooling, format!("the architecture ({why})")));
    }
    findings.push(
        Finding::error(
            "pooling-not-configured",
            "no pooling is configured: the model has no 1_Pooling/config.json",
        )
        .in_file(inspection.root.join("1_Pooling/config.json"))
        .fix(format!(
            "pass --pooling (one of: {}) or add the sentence-transformers pooling config",
            Pooling::supported_names()
        )),
    );
    None
}

/// The longest input served: sentence-transformers' `max_seq_length`, capped by what the chosen
/// backend's position scheme supports (`positions`) and by `--max-batch-tokens`.
fn max_input_length(
    inspection: &ModelInspection,
    positions: Option<usize>,
    max_batch_tokens: Option<usize>,
    findings: &mut Vec<Finding>,
) -> usize {
    let st = inspection.sentence_transformers.max_seq_length;
    let mut max = match (st, positions) {
        (Some(st), Some(positions)) if st > positions => {
            findings.push(
                Finding::warning(
                    "max-seq-length-exceeds-positions",
                    format!("max_seq_length {st} is above the {positions} positions the model supports; inputs are capped at {positions}"),
                )
                .in_file(inspection.root.join("sentence_bert_config.json"))
                .about("max_seq_length")
                .fix(format!("set `max_seq_length` to at most {positions}")),
            );
            positions
        }
        (Some(st), _) => st,
        (None, Some(positions)) => positions,
        // Neither bounds it (a static embedding model: no positions, and sentence-transformers
        // never truncates it): as long as a batch holds.
        (None, None) => max_batch_tokens.unwrap_or(crate::settings::DEFAULT_MAX_BATCH_TOKENS),
    };
    if let Some(budget) = max_batch_tokens {
        if max > budget {
            findings.push(
                Finding::warning(
                    "max-input-above-batch-tokens",
                    format!("the model accepts {max} tokens but --max-batch-tokens is {budget}; inputs are capped at {budget}"),
                )
                .about("--max-batch-tokens")
                .fix(format!("raise --max-batch-tokens to {max} to accept the longest inputs")),
            );
            max = budget;
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::inspection::{ModelConfig, WeightsFormat, WeightsIndex};
    use tessera_core::{Assessment, Backend, BackendFactory, LoadError, LoadRequest};

    /// A backend that serves every model with the given findings, or declines.
    #[derive(Debug)]
    struct Stub {
        serves: bool,
        findings: Vec<Finding>,
    }

    impl BackendFactory for Stub {
        fn name(&self) -> &'static str {
            "stub"
        }

        fn assess(&self, _: &ModelInspection) -> Assessment {
            if self.serves {
                Assessment::Serves {
                    architecture: "stub".into(),
                    evidence: Vec::new(),
                    findings: self.findings.clone(),
                    max_positions: Some(512),
                    pooling: None,
                }
            } else {
                Assessment::Declines {
                    reasons: vec![Finding::error("architecture-undecided", "cannot look")],
                }
            }
        }

        fn load(&self, _: &LoadRequest<'_>) -> Result<Box<dyn Backend>, LoadError> {
            unreachable!("planning never loads")
        }
    }

    fn registry(stub: Stub) -> Registry {
        Registry::new(&[Box::leak(Box::new(stub))])
    }

    fn inspection(config: serde_json::Value, max_seq_length: Option<usize>) -> ModelInspection {
        let mut inspection = ModelInspection {
            config: Some(ModelConfig {
                path: "config.json".into(),
                values: config.as_object().cloned().unwrap_or_default(),
            }),
            weights: Some(WeightsIndex {
                format: WeightsFormat::Safetensors,
                files: Vec::new(),
                tensors: Default::default(),
            }),
            ..ModelInspection::default()
        };
        inspection.sentence_transformers.max_seq_length = max_seq_length;
        inspection
    }

    fn request(max_batch_tokens: Option<usize>) -> PlanRequest {
        PlanRequest {
            pooling: Some("mean".into()),
            backend: None,
            dtype: Dtype::Float32,
            max_batch_tokens,
        }
    }

    fn serving() -> Registry {
        registry(Stub {
            serves: true,
            findings: Vec::new(),
        })
    }

    #[test]
    fn the_max_input_length_is_the_models_capped_by_positions_and_budget() {
        // The backend's bound decides, not the config key (RoBERTa's 514 rows hold 512 inputs).
        let positions = serde_json::json!({"max_position_embeddings": 514});
        for (st, budget, want) in [
            (Some(256), None, 256),
            (Some(1024), None, 512),
            (None, None, 512),
            (Some(256), Some(128), 128),
        ] {
            let outcome = plan(&inspection(positions.clone(), st), &serving(), &request(budget));
            assert_eq!(
                outcome.plan.map(|p| p.max_input_length),
                Some(want),
                "{st:?} {budget:?}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_the_only_error_not_a_missing_backend() {
        let mut missing = inspection(serde_json::json!({}), None);
        missing.config = None;
        missing
            .findings
            .push(Finding::error("config-missing", "config.json is missing"));
        let declining = registry(Stub {
            serves: false,
            findings: Vec::new(),
        });
        let outcome = plan(&missing, &declining, &request(None));
        let codes: Vec<&str> = outcome.errors().map(|f| f.code).collect();
        assert_eq!(codes, vec!["config-missing"]);
        assert!(outcome.plan.is_none());
    }

    #[test]
    fn a_backend_finding_about_a_key_an_error_names_is_folded_into_it() {
        let mut model = inspection(serde_json::json!({"vocab_size": 10}), None);
        model
            .findings
            .push(Finding::error("vocab-smaller-than-embeddings", "rows").about("vocab_size"));
        let consequence = Finding::error("tensor-shape-mismatch", "shape").about("vocab_size");
        let other = Finding::warning("tensor-unexpected", "extra").about("pooler.dense.weight");
        let backend = registry(Stub {
            serves: true,
            findings: vec![consequence, other],
        });
        let outcome = plan(&model, &backend, &request(None));
        let codes: Vec<&str> = outcome.findings.iter().map(|f| f.code).collect();
        assert_eq!(codes, vec!["vocab-smaller-than-embeddings", "tensor-unexpected"]);
    }

    #[test]
    fn pooling_comes_from_the_flag_or_is_an_error_naming_it() {
        let model = inspection(serde_json::json!({}), None);
        let outcome = plan(&model, &serving(), &request(None));
        assert_eq!(outcome.plan.map(|p| p.task.pooling_name()), Some("mean".to_string()));
        let unset = PlanRequest {
            pooling: None,
            ..request(None)
        };
        let outcome = plan(&model, &serving(), &unset);
        let finding = outcome.errors().next().expect("an error");
        assert_eq!(finding.code, "pooling-not-configured");
        assert!(finding.fix.as_deref().unwrap_or_default().contains("--pooling"));
    }
}
