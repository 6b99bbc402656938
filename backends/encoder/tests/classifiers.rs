//! Classification heads against transformers' own `*ForSequenceClassification` logits
//! (`reference/models/*-classifier-tiny`, `*-reranker-tiny`), for single texts and for query /
//! passage pairs encoded with the tokenizer's pair template, one by one and as one batch.

use serde_json::Value;
use tessera_core::testing::{load, reference_dir, Loaded};
use tessera_core::{Batch, ClassifierHead, ClassifierSpec, Encoded, HeadKind, LoadRequest};
use tessera_encoder::{
    EncoderBackend, BERT, DEBERTA, DISTILBERT, GEMMA2, GTE, JINA_V3, LLAMA, MODERNBERT, QWEN3, ROBERTA,
};

/// A reference classifier loaded as the server loads it: the backend, its detected head, and
/// the golden.
struct Classifier {
    model: &'static str,
    loaded: Loaded,
    spec: ClassifierSpec,
    head: ClassifierHead,
    golden: Value,
}

impl Classifier {
    fn load(model: &'static str, backend: &EncoderBackend) -> Self {
        let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models").join(model);
        let inspection = tessera_validation::inspect(&dir);
        let spec = ClassifierSpec::detect(&inspection)
            .expect("a classifier")
            .expect("a usable head");
        let golden = serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
        let request = LoadRequest {
            inspection: &inspection,
            dtype: candle_core::DType::F32,
            device: candle_core::Device::Cpu,
            kernel: None,
        };
        let head = ClassifierHead::load(&request, &spec).expect("head loads");
        Self {
            model,
            loaded: load(backend, &inspection),
            spec,
            head,
            golden,
        }
    }

    fn logits(&self, seqs: &[Encoded]) -> Vec<Vec<f32>> {
        let batch = Batch::from_sequences(seqs.iter().map(|e| (&e.ids[..], &e.type_ids[..])));
        let hidden = self.loaded.backend.forward(&batch).expect("forward");
        self.head.forward(&hidden, &batch).unwrap().to_vec2().unwrap()
    }

    /// `encoded` has the golden's `{key}token_ids`, and its logits, batched and one by one, are
    /// the golden's `{key}logits` within 1e-4.
    fn assert_matches(&self, key: &str, encoded: &[Encoded]) {
        let model = self.model;
        let want_ids: Vec<Vec<u32>> = serde_json::from_value(self.golden[format!("{key}token_ids")].clone()).unwrap();
        let want: Vec<Vec<f32>> = serde_json::from_value(self.golden[format!("{key}logits")].clone()).unwrap();
        for (i, e) in encoded.iter().enumerate() {
            assert_eq!(e.ids, want_ids[i], "{model}: {key}token ids {i}");
        }
        let batched = self.logits(encoded);
        for (i, e) in encoded.iter().enumerate() {
            let single = self.logits(std::slice::from_ref(e));
            for (got, what) in [(&batched[i], "batched"), (&single[0], "single")] {
                assert_eq!(got.len(), want[i].len());
                for (g, w) in got.iter().zip(&want[i]) {
                    assert!((g - w).abs() < 1e-4, "{model} {what} {key}{i}: {g} vs {w}");
                }
            }
        }
    }

    fn pairs(&self) -> Vec<(String, String)> {
        serde_json::from_value(self.golden["pairs"].clone()).unwrap()
    }
}

fn check(model: &'static str, backend: &EncoderBackend, kind: HeadKind) {
    let classifier = Classifier::load(model, backend);
    assert_eq!(classifier.spec.kind, kind, "{model}");
    let labels: Vec<String> = (0..classifier.spec.labels.len())
        .map(|i| {
            classifier.golden["id2label"][i.to_string()]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(classifier.spec.labels, labels, "{model}: id2label");
    let tokenizer = &classifier.loaded.tokenizer;
    let texts: Vec<String> = serde_json::from_value(classifier.golden["texts"].clone()).unwrap();
    let singles: Vec<Encoded> = texts
        .iter()
        .map(|t| tokenizer.encode_input(t, None, Some(Default::default())).unwrap())
        .collect();
    classifier.assert_matches("", &singles);
    let pairs: Vec<Encoded> = classifier
        .pairs()
        .iter()
        .map(|(q, p)| {
            tokenizer
                .encode_input_pair(q, p, None, Some(Default::default()))
                .unwrap()
        })
        .collect();
    classifier.assert_matches("pair_", &pairs);
}

#[test]
fn an_xlm_roberta_reranker_scores_pairs_as_transformers() {
    check("xlm-roberta-reranker-tiny", &ROBERTA, HeadKind::DenseOutProj);
}

#[test]
fn a_bert_classifier_scores_as_transformers() {
    check("bert-classifier-tiny", &BERT, HeadKind::Pooler);
}

#[test]
fn a_distilbert_classifier_scores_as_transformers() {
    check("distilbert-classifier-tiny", &DISTILBERT, HeadKind::PreClassifier);
}

#[test]
fn a_modernbert_reranker_scores_pairs_on_the_mean_as_transformers() {
    check("modernbert-reranker-tiny", &MODERNBERT, HeadKind::PredictionHead);
}

#[test]
fn a_modernbert_classifier_with_biases_scores_on_the_first_token_as_transformers() {
    check("modernbert-classifier-tiny", &MODERNBERT, HeadKind::PredictionHead);
}

/// gte-multilingual-reranker-base's head on GTE's rotary blocks.
#[test]
fn a_gte_reranker_scores_pairs_with_its_pooler_as_transformers() {
    check("gte-reranker-tiny", &GTE, HeadKind::Pooler);
}

/// jina-reranker-v2's remote-code layout (fused `mixer.Wqkv`, a position table counted after
/// the padding row) with RoBERTa's head.
#[test]
fn a_jina_reranker_v2_scores_pairs_as_its_remote_code() {
    check("jina-reranker-v2-tiny", &JINA_V3, HeadKind::DenseOutProj);
}

#[test]
fn a_deberta_v3_reranker_scores_pairs_with_its_context_pooler_as_transformers() {
    check("deberta-v3-reranker-tiny", &DEBERTA, HeadKind::ContextPooler);
}

/// The Qwen tokenizer appends `<|endoftext|>`, its padding token: transformers reads the logit at
/// the token before it.
#[test]
fn a_qwen3_reranker_scores_pairs_at_its_last_token_that_is_not_padding_as_transformers() {
    check("qwen3-reranker-tiny", &QWEN3, HeadKind::Score);
}

#[test]
fn a_llama_classifier_without_a_padding_token_scores_its_last_token_as_transformers() {
    check("llama-classifier-tiny", &LLAMA, HeadKind::Score);
}

/// Gemma 2's backbone (soft-capped scores, windows on every other layer) under a decoder's `score`.
#[test]
fn a_gemma2_reranker_scores_pairs_at_its_last_token_as_transformers() {
    check("gemma2-reranker-tiny", &GEMMA2, HeadKind::Score);
}

/// NVIDIA's bidirectional Llama reranker (llama-nemotron-rerank): `score` on the mean of every
/// token (its config's `pooling: avg`, the padding id included), the logit divided by its
/// `temperature` (0.25 here).
#[test]
fn an_nvidia_bidirectional_llama_reranker_scores_the_mean_over_its_temperature_as_its_code() {
    check("llama-bidirec-reranker-tiny", &LLAMA, HeadKind::Score);
    let spec = Classifier::load("llama-bidirec-reranker-tiny", &LLAMA).spec;
    assert_eq!(spec.pooling, tessera_core::Pooling::Mean);
    assert_eq!(spec.temperature, Some(0.25));
    assert_eq!(spec.pad_token, None);
}

/// ELECTRA's head is RoBERTa's tensors with GELU in place of tanh (cross-encoder/ms-marco-electra-base).
#[test]
fn an_electra_reranker_scores_with_gelu_as_transformers() {
    check("electra-reranker-tiny", &BERT, HeadKind::DenseOutProjGelu);
}

/// EuroBERT's head (`dense`, GELU, `classifier` at the root, beside `model.`): on every token
/// with the logits averaged (`classifier_pooling: late`), on the mean of the tokens, and on the
/// first (`bos`).
#[test]
fn eurobert_heads_score_late_on_the_mean_and_on_the_first_token_as_transformers() {
    for model in [
        "eurobert-reranker-tiny",
        "eurobert-classifier-tiny",
        "eurobert-bos-classifier-tiny",
    ] {
        check(model, &LLAMA, HeadKind::DenseGelu);
    }
    let late = Classifier::load("eurobert-reranker-tiny", &LLAMA);
    assert!(late.spec.late && late.spec.pooling == tessera_core::Pooling::Mean);
}

/// A causal language model scored by sentence-transformers' `LogitScore` (Qwen3-Reranker as
/// sentence-transformers runs it): each pair rendered through the chat template as `query` and
/// `document` messages (the template's tail written back over pairs cut at `max_seq_length`),
/// then the true token's logit less the false token's at the last token.
fn check_logit_reranker(model: &'static str, backend: &EncoderBackend, tied: bool) {
    let classifier = Classifier::load(model, backend);
    assert!(
        matches!(classifier.spec.kind, HeadKind::LogitScore { tied: t, .. } if t == tied),
        "{model}: {:?}",
        classifier.spec.kind
    );
    let pairs: Vec<Encoded> = classifier
        .pairs()
        .iter()
        .map(|(q, d)| {
            classifier
                .loaded
                .tokenizer
                .encode_input_pair(q, d, None, Some(Default::default()))
                .unwrap()
        })
        .collect();
    classifier.assert_matches("pair_", &pairs);
}

/// Tied word embeddings, a true and a false token, a flat template.
#[test]
fn a_qwen3_causal_reranker_scores_pairs_as_sentence_transformers_logit_score() {
    check_logit_reranker("qwen3-logit-reranker-tiny", &QWEN3, true);
}

/// Its own `lm_head`, a true token alone, a structured template.
#[test]
fn a_llama_causal_reranker_with_a_true_token_alone_scores_its_logit() {
    check_logit_reranker("llama-logit-reranker-tiny", &LLAMA, false);
}
