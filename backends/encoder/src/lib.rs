//! The BERT-shaped encoder families: BERT, RoBERTa (with XLM-RoBERTa and CamemBERT),
//! DistilBERT, MPNet and JinaBERT v2.
//!
//! A family is a small description ([`families`]): how it is recognised from the tensors and
//! config, and the [`EncoderSpec`] (tensor names, sizes, position scheme) it builds. The blocks
//! ([`blocks`]) are written once for all of them, with attention a swappable kernel so the flash
//! backend runs the same definitions unpadded. Each family registers as its own backend
//! ([`EncoderBackend`]), on the padded reference kernel unless given another.

mod alibi;
mod blocks;
mod experts;
pub mod families;
mod lora;
mod spec;
mod static_embedding;

use std::sync::Arc;

use candle_core::Tensor;
use tessera_core::{
    check_tensors, Assessment, Backend, BackendDescription, BackendError, BackendFactory, Batch, LoadError,
    LoadRequest, ModelInspection, PaddedAttention,
};

pub use alibi::alibi_slopes;
pub use blocks::Encoder;
pub use families::{
    Bert, Deberta, Decoder, DistilBert, Family, Gte, JinaBert, JinaV3, ModernBert, MpNet, NomicBert, Recognised,
    Roberta, T5,
};
pub use spec::{
    Adapters, AttentionBias, Biases, ConvActivation, Convolution, Dims, Disentangled, EncoderSpec, Experts, Extras,
    FeedForward, Half, LayerAttention, Names, Norm, NormKind, Placement, PositionTable, Positions, QkNorms, Qkv,
    Scales, BERT_NAMES, BERT_POSITION_TABLE, DEBERTA_NAMES, DECODER_NAMES, DISTILBERT_NAMES, GEMMA2_NAMES,
    GEMMA3_NAMES, GEMMA_PLACEMENT, GTE_NAMES, GTE_SEPARATE_NAMES, JINA_CODE_NAMES, JINA_GLU_NAMES, JINA_V3_NAMES,
    MODERNBERT_NAMES, MPNET_NAMES, NOMIC_EXPERTS, NOMIC_NAMES, NOMIC_PLAIN_NAMES, QWEN3_NAMES, T5_GATED_NAMES,
    T5_NAMES,
};
pub use static_embedding::StaticEmbeddingBackend;

/// Every family, in the order they are asked.
pub const FAMILIES: &[&dyn Family] = &[
    &JinaBert,
    &Bert,
    &Roberta,
    &DistilBert,
    &MpNet,
    &Deberta,
    &ModernBert,
    &Decoder::QWEN3,
    &Decoder::QWEN2,
    &Decoder::LLAMA,
    &Decoder::GEMMA2,
    &Decoder::GEMMA3,
    &NomicBert,
    &Gte,
    &JinaV3,
    &T5,
];

/// A family registered as a backend.
#[derive(Debug, Clone, Copy)]
pub struct EncoderBackend(pub &'static dyn Family);

/// JinaBERT v2 on the padded reference kernel (`--backend jina-bert`).
pub const JINA_BERT: EncoderBackend = EncoderBackend(&JinaBert);
/// BERT on the padded reference kernel (`--backend bert`).
pub const BERT: EncoderBackend = EncoderBackend(&Bert);
/// RoBERTa, XLM-RoBERTa and CamemBERT on the padded reference kernel (`--backend roberta`).
pub const ROBERTA: EncoderBackend = EncoderBackend(&Roberta);
/// DistilBERT on the padded reference kernel (`--backend distilbert`).
pub const DISTILBERT: EncoderBackend = EncoderBackend(&DistilBert);
/// MPNet on the padded reference kernel (`--backend mpnet`).
pub const MPNET: EncoderBackend = EncoderBackend(&MpNet);
/// DeBERTa-v2/v3 on the padded reference kernel (`--backend deberta`).
pub const DEBERTA: EncoderBackend = EncoderBackend(&Deberta);
/// ModernBERT on the padded reference kernel (`--backend modernbert`).
pub const MODERNBERT: EncoderBackend = EncoderBackend(&ModernBert);
/// Qwen3 decoder embedders on the padded reference kernel (`--backend qwen3`).
pub const QWEN3: EncoderBackend = EncoderBackend(&Decoder::QWEN3);
/// Qwen2 decoder embedders (gte-Qwen2) on the padded reference kernel (`--backend qwen2`).
pub const QWEN2: EncoderBackend = EncoderBackend(&Decoder::QWEN2);
/// Llama and Mistral decoder embedders (e5-mistral) on the padded reference kernel
/// (`--backend llama`).
pub const LLAMA: EncoderBackend = EncoderBackend(&Decoder::LLAMA);
/// Gemma 2 decoder embedders (bge-multilingual-gemma2) on the padded reference kernel
/// (`--backend gemma2`).
pub const GEMMA2: EncoderBackend = EncoderBackend(&Decoder::GEMMA2);
/// Gemma 3 decoder embedders (EmbeddingGemma) on the padded reference kernel (`--backend gemma3`).
pub const GEMMA3: EncoderBackend = EncoderBackend(&Decoder::GEMMA3);
/// NomicBERT on the padded reference kernel (`--backend nomic-bert`).
pub const NOMIC_BERT: EncoderBackend = EncoderBackend(&NomicBert);
/// GTE ("new") on the padded reference kernel (`--backend gte`).
pub const GTE: EncoderBackend = EncoderBackend(&Gte);
/// jina-embeddings-v3 with its task adapters on the padded reference kernel (`--backend jina-v3`).
pub const JINA_V3: EncoderBackend = EncoderBackend(&JinaV3);
/// T5's encoder (sentence-t5, GTR-T5) on the padded reference kernel (`--backend t5`).
pub const T5_ENCODER: EncoderBackend = EncoderBackend(&T5);
/// Static embedding models (sentence-transformers' `StaticEmbedding`, model2vec).
pub const STATIC: StaticEmbeddingBackend = StaticEmbeddingBackend;

/// What `family` decides about the model, its tensors checked against the spec it built.
pub fn recognise(family: &dyn Family, inspection: &ModelInspection) -> Result<Recognised, Vec<tessera_core::Finding>> {
    let layout = inspection.layout(family.word_table()).map_err(|f| vec![*f])?;
    let mut recognised = family.recognise(&layout).map_err(|f| vec![*f])?;
    let spec = &recognised.spec;
    // The family is decided; what follows are defects of this checkpoint, reported against it
    // so the user learns what to fix rather than that nothing fits.
    recognised.findings.extend(check_tensors(
        layout.weights,
        &layout.prefix,
        spec.names.layers,
        spec.dims.layers.size(),
        |layers| spec.expected_tensors(layers),
    ));
    Ok(recognised)
}

impl BackendFactory for EncoderBackend {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn assess(&self, inspection: &ModelInspection) -> Assessment {
        match recognise(self.0, inspection) {
            Ok(r) => Assessment::Serves {
                architecture: r.spec.architecture.clone(),
                max_positions: Some(r.spec.max_input()),
                pooling: r.pooling,
                evidence: r.evidence,
                findings: r.findings,
            },
            Err(reasons) => Assessment::Declines { reasons },
        }
    }

    fn load(&self, request: &LoadRequest<'_>) -> Result<Box<dyn Backend>, LoadError> {
        // The same decision as `assess`, so the two cannot disagree.
        let layout = request
            .inspection
            .layout(self.0.word_table())
            .map_err(LoadError::Declined)?;
        let spec = self.0.recognise(&layout).map_err(LoadError::Declined)?.spec;
        let (vb, file) = request.var_builder()?;
        // At the weights' root, beside the backbone's prefix.
        let output_projection = match spec.extras.output_projection {
            Some((name, width)) => {
                let weight = vb
                    .pp(name)
                    .get((width.size(), spec.hidden_size()), "weight")
                    .and_then(|w| tessera_core::layers::Linear::new(w, None))
                    .map_err(|e| LoadError::from_candle(&file, e))?;
                Some(weight)
            }
            None => None,
        };
        let vb = match layout.prefix.trim_end_matches('.') {
            "" => vb,
            prefix => vb.pp(prefix),
        };
        let kernel = request
            .kernel
            .clone()
            .unwrap_or_else(|| Arc::new(PaddedAttention::default()));
        let model = Encoder::load(&vb, &spec, kernel).map_err(|e| LoadError::from_candle(&file, e))?;
        Ok(Box::new(EncoderRunner {
            backend: self.0.name(),
            model,
            output_projection,
        }))
    }
}

#[derive(Debug)]
struct EncoderRunner {
    backend: &'static str,
    model: Encoder,
    /// [`Extras::output_projection`], applied to every token the model returns.
    output_projection: Option<tessera_core::layers::Linear>,
}

impl Backend for EncoderRunner {
    fn forward(&self, batch: &Batch) -> Result<Tensor, BackendError> {
        let spec = self.model.spec();
        batch.check_ids(spec.dims.vocab.size(), spec.type_vocab_size().unwrap_or(usize::MAX))?;
        if batch.seqs.max_len() > spec.max_input() {
            return Err(BackendError::InvalidBatch(format!(
                "a sequence of {} tokens exceeds the {} positions the model supports",
                batch.seqs.max_len(),
                spec.max_input()
            )));
        }
        let tasks = self.adapters().len();
        if let Some(bad) = batch.tasks.iter().flatten().find(|&&t| t >= tasks) {
            return Err(BackendError::InvalidBatch(format!(
                "task adapter {bad} asked of a model with {tasks}"
            )));
        }
        let hidden = self.model.forward(batch)?;
        Ok(match &self.output_projection {
            Some(projection) => candle_core::Module::forward(projection, &hidden)?,
            None => hidden,
        })
    }

    fn adapters(&self) -> &[String] {
        self.model.spec().adapters.as_ref().map_or(&[], |a| &a.tasks)
    }

    fn quantize(&mut self, format: tessera_core::quant::Format) -> Result<(usize, usize), BackendError> {
        let (mut before, mut after) = self.model.quantize(format)?;
        if let Some(projection) = &mut self.output_projection {
            before += projection.weight_bytes();
            projection.quantize(format)?;
            after += projection.weight_bytes();
        }
        Ok((before, after))
    }

    fn describe(&self) -> BackendDescription {
        let spec = self.model.spec();
        BackendDescription {
            backend: self.backend,
            architecture: spec.architecture.clone(),
            kernel: self.model.kernel().name(),
            pads: self.model.kernel().pads(),
            hidden_size: spec.output_width(),
            vocab_size: spec.dims.vocab.size(),
            empty_sequences: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use candle_core::{DType, Device, Shape};
    use candle_nn::var_builder::SimpleBackend;
    use candle_nn::VarBuilder;
    use tessera_core::{Dim, HiddenAct};

    use super::*;

    /// Zeros of whatever shape is asked, remembering every name.
    #[derive(Clone, Default)]
    struct Recording(Arc<Mutex<BTreeSet<String>>>);

    impl SimpleBackend for Recording {
        fn get(
            &self,
            s: Shape,
            name: &str,
            _: candle_nn::Init,
            dtype: DType,
            dev: &Device,
        ) -> candle_core::Result<Tensor> {
            self.0.lock().unwrap().insert(name.to_string());
            Tensor::zeros(s, dtype, dev)
        }

        fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
            candle_core::bail!("unchecked load of {name}")
        }

        fn contains_tensor(&self, name: &str) -> bool {
            !name.ends_with(".gamma") && !name.ends_with(".beta")
        }
    }

    fn spec(names: Names, positions: Positions) -> EncoderSpec {
        EncoderSpec {
            architecture: "test".into(),
            names,
            dims: Dims {
                vocab: Dim::of("vocab_size", 11),
                hidden: Dim::of("hidden_size", 8),
                layers: Dim::of("num_hidden_layers", 2),
                heads: Dim::of("num_attention_heads", 2),
                kv_heads: Dim::of("num_attention_heads", 2),
                head_dim: Dim::of("num_attention_heads", 4),
                intermediate: Dim::of("intermediate_size", 12),
                positions: Dim::of("max_position_embeddings", 10),
                token_types: names.token_type_embeddings.map(|_| Dim::of("type_vocab_size", 2)),
            },
            positions,
            position_table: PositionTable::Weights,
            attention_bias: AttentionBias::None,
            feed_forward: FeedForward::Plain,
            act: HiddenAct::Gelu,
            norm: Norm::post(1e-12),
            biases: Biases::ALL,
            scales: crate::spec::Scales::NONE,
            extras: crate::spec::Extras::NONE,
            adapters: None,
            layer_attention: LayerAttention::bidirectional(2),
        }
    }

    #[test]
    fn loading_touches_exactly_the_tensors_validate_model_expects() {
        for spec in [
            spec(BERT_NAMES, Positions::Absolute),
            spec(BERT_NAMES, Positions::AfterPadding { padding_idx: 1 }),
            spec(DISTILBERT_NAMES, Positions::Absolute),
            EncoderSpec {
                position_table: PositionTable::Sinusoidal,
                ..spec(DISTILBERT_NAMES, Positions::Absolute)
            },
            EncoderSpec {
                attention_bias: AttentionBias::RelativeBuckets {
                    tensor: "encoder.relative_attention_bias",
                    buckets: Dim::of("relative_attention_num_buckets", 32),
                    max_distance: 128,
                },
                ..spec(MPNET_NAMES, Positions::AfterPadding { padding_idx: 1 })
            },
            EncoderSpec {
                position_table: PositionTable::Absent,
                attention_bias: AttentionBias::Alibi,
                feed_forward: FeedForward::Gated { activated: Half::First },
                ..spec(JINA_GLU_NAMES, Positions::Absolute)
            },
            EncoderSpec {
                position_table: PositionTable::Absent,
                attention_bias: AttentionBias::Alibi,
                feed_forward: FeedForward::Gated {
                    activated: Half::Second,
                },
                ..spec(JINA_CODE_NAMES, Positions::Absolute)
            },
            EncoderSpec {
                position_table: PositionTable::Absent,
                feed_forward: FeedForward::Gated { activated: Half::First },
                norm: Norm {
                    kind: NormKind::LayerNormWithoutBias,
                    placement: Placement::Pre {
                        first_attention_unnormed: true,
                    },
                    eps: 1e-5,
                },
                biases: Biases {
                    attention: false,
                    attention_output: false,
                    up: true,
                    down: false,
                },
                scales: crate::spec::Scales::NONE,

                adapters: None,
                layer_attention: vec![
                    LayerAttention {
                        mask: tessera_core::Mask::Window { radius: 2 },
                        rope: Some(tessera_core::rotary::Rope::plain(10_000.0, 4)),
                    };
                    2
                ],
                ..spec(MODERNBERT_NAMES, Positions::Absolute)
            },
            EncoderSpec {
                dims: Dims {
                    kv_heads: Dim::of("num_key_value_heads", 1),
                    head_dim: Dim::of("head_dim", 6),
                    ..spec(QWEN3_NAMES, Positions::Absolute).dims
                },
                position_table: PositionTable::Absent,
                feed_forward: FeedForward::Gated { activated: Half::First },
                norm: Norm {
                    kind: NormKind::Rms,
                    placement: Placement::Pre {
                        first_attention_unnormed: false,
                    },
                    eps: 1e-6,
                },
                biases: Biases {
                    attention: true,
                    attention_output: true,
                    up: false,
                    down: false,
                },
                scales: crate::spec::Scales::NONE,

                adapters: None,
                layer_attention: vec![
                    LayerAttention {
                        mask: tessera_core::Mask::Causal,
                        rope: Some(tessera_core::rotary::Rope::plain(1e6, 6)),
                    };
                    2
                ],
                ..spec(QWEN3_NAMES, Positions::Absolute)
            },
        ] {
            let recording = Recording::default();
            let vb = VarBuilder::from_backend(Box::new(recording.clone()), DType::F32, Device::Cpu);
            Encoder::load(&vb, &spec, Arc::new(PaddedAttention::default())).expect("loads");
            let loaded = recording.0.lock().unwrap().clone();
            let expected: BTreeSet<String> = spec.expected_tensors(2).into_iter().map(|t| t.name).collect();
            assert_eq!(loaded, expected, "{:?} {:?}", spec.names.layers, spec.position_table);
        }
    }
}
