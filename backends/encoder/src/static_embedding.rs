//! Static embedding models: sentence-transformers' `StaticEmbedding` (static-retrieval-mrl,
//! static-similarity-mrl) and model2vec's (potion-*, M2V_*): one learned vector per token id,
//! averaged over the text's tokens (an `EmbeddingBag` in mean mode); no transformer, no
//! positions, no config.json. Tokens are taken without special tokens, as the module tokenizes.
//!
//! Two tensor layouts, both beside `tokenizer.json` in the module's directory (the root, or
//! `0_StaticEmbedding/` as sentence-transformers 3 and 4 saved it): sentence-transformers'
//! `embedding.weight` `[vocab, dim]`, and model2vec's `embeddings` `[rows, dim]` with, in its
//! newer models, `mapping` `[vocab]` (the row of each token id) and `weights` `[vocab]` (a factor
//! per token id), folded at load into one row per token id as sentence-transformers folds them
//! (`StaticEmbedding._fold_model2vec_weights`: `embeddings[mapping[id]] * weights[id]`).
//!
//! Reference: sentence-transformers' `sentence_transformer/modules/static_embedding.py`.

use candle_core::{DType, Tensor};
use tessera_core::{
    Assessment, Backend, BackendDescription, BackendError, BackendFactory, Batch, Evidence, Finding, ImpliedPooling,
    LoadError, LoadRequest, ModelInspection, Pooling,
};

/// sentence-transformers' table.
const ST_TABLE: &str = "embedding.weight";
/// model2vec's table, its optional row of each token id and factor per token id.
const M2V_TABLE: &str = "embeddings";
const M2V_MAPPING: &str = "mapping";
const M2V_WEIGHTS: &str = "weights";

const FLOATS: &[&str] = &["F32", "F16", "BF16", "F64"];
// The integer types candle reads.
const INTEGERS: &[&str] = &["I64", "I32", "U32", "I16", "U8"];

/// The static embedding backend.
#[derive(Debug, Clone, Copy)]
pub struct StaticEmbeddingBackend;

/// What the weights hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    /// The stored table and its shape.
    name: &'static str,
    stored_rows: usize,
    dim: usize,
    /// model2vec's `mapping` (its length is the vocabulary) and `weights`.
    mapping: Option<usize>,
    weights: bool,
}

impl Table {
    /// Token ids the folded table has a row for.
    fn vocab(&self) -> usize {
        self.mapping.unwrap_or(self.stored_rows)
    }

    fn describe(&self) -> String {
        let mut parts = vec![format!("{} tokens x {}", self.vocab(), self.dim)];
        if self.mapping.is_some() {
            parts.push(format!("{} rows mapped", self.stored_rows));
        }
        if self.weights {
            parts.push("token weights".into());
        }
        format!("static-embedding ({})", parts.join(", "))
    }
}

fn invalid(inspection: &ModelInspection, tensor: &str, message: String) -> Box<Finding> {
    let file = inspection
        .weights
        .as_ref()
        .map(|w| w.display_file())
        .unwrap_or_else(|| inspection.root.join("model.safetensors"));
    Box::new(
        Finding::error("static-embedding-invalid", message)
            .in_file(file)
            .about(tensor.to_string())
            .fix("save the model again with sentence-transformers or model2vec (float32, float16 or bfloat16 vectors)"),
    )
}

/// Reads the table's layout from the weight headers; every tensor it names is checked for
/// rank, dtype and agreeing lengths, so that loading cannot fail on a shape.
fn table(inspection: &ModelInspection, evidence: &mut Vec<Evidence>) -> Result<Table, Box<Finding>> {
    let Some(weights) = &inspection.weights else {
        return Err(Box::new(
            Finding::error(
                "architecture-undecided",
                "the weights are missing or unreadable (see the weights finding)",
            )
            .fix("fix the weights finding first"),
        ));
    };
    let Some((name, info)) = [ST_TABLE, M2V_TABLE]
        .into_iter()
        .find_map(|name| weights.get(name).map(|info| (name, info)))
    else {
        return Err(invalid(
            inspection,
            ST_TABLE,
            format!("no token vectors: neither `{ST_TABLE}` (sentence-transformers) nor `{M2V_TABLE}` (model2vec) is in the weights"),
        ));
    };
    let &[stored_rows, dim] = info.shape.as_slice() else {
        return Err(invalid(
            inspection,
            name,
            format!("`{name}` is {:?}, not [tokens, dimensions]", info.shape),
        ));
    };
    if !FLOATS.contains(&info.dtype.as_str()) {
        return Err(invalid(
            inspection,
            name,
            format!(
                "`{name}` is stored as {} (a quantized model2vec export); tessera computes with floating-point vectors",
                info.dtype
            ),
        ));
    }
    evidence.push(Evidence::tensor(
        name,
        format!("{:?}: one vector per token", info.shape),
    ));
    let mapping = match weights.get(M2V_MAPPING) {
        Some(m) if name == M2V_TABLE => match (m.shape.as_slice(), INTEGERS.contains(&m.dtype.as_str())) {
            (&[vocab], true) => {
                evidence.push(Evidence::tensor(
                    M2V_MAPPING,
                    format!("{vocab} token ids mapped to the {stored_rows} rows"),
                ));
                Some(vocab)
            }
            _ => {
                return Err(invalid(
                    inspection,
                    M2V_MAPPING,
                    format!(
                        "`{M2V_MAPPING}` is {:?} {}, not one integer row index per token id",
                        m.shape, m.dtype
                    ),
                ))
            }
        },
        _ => None,
    };
    let vocab = mapping.unwrap_or(stored_rows);
    let token_weights = match weights.get(M2V_WEIGHTS) {
        Some(w) if name == M2V_TABLE => {
            if w.shape != [vocab] || !FLOATS.contains(&w.dtype.as_str()) {
                return Err(invalid(
                    inspection,
                    M2V_WEIGHTS,
                    format!(
                        "`{M2V_WEIGHTS}` is {:?} {}, not one floating-point factor per token id ({vocab})",
                        w.shape, w.dtype
                    ),
                ));
            }
            evidence.push(Evidence::tensor(
                M2V_WEIGHTS,
                "a factor per token id, folded into its vector",
            ));
            true
        }
        _ => false,
    };
    Ok(Table {
        name,
        stored_rows,
        dim,
        mapping,
        weights: token_weights,
    })
}

/// Why another backend's model is not this one's.
fn not_static() -> Finding {
    Finding::error(
        "family-is-another",
        "not a static embedding model: modules.json does not start with a StaticEmbedding module",
    )
    .fix("serve it with the backend for its family")
}

impl BackendFactory for StaticEmbeddingBackend {
    fn name(&self) -> &'static str {
        "static"
    }

    fn assess(&self, inspection: &ModelInspection) -> Assessment {
        if !inspection.sentence_transformers.static_embedding {
            return Assessment::Declines {
                reasons: vec![not_static()],
            };
        }
        let mut evidence = vec![Evidence::name(
            "modules.json",
            "a StaticEmbedding module first: token vectors averaged",
        )];
        let table = match table(inspection, &mut evidence) {
            Ok(table) => table,
            Err(finding) => {
                return Assessment::Declines {
                    reasons: vec![*finding],
                }
            }
        };
        let mut findings = Vec::new();
        if let Some((max_id, token)) = &inspection.tokenizer.max_id {
            if *max_id as usize >= table.vocab() {
                findings.push(
                    Finding::error(
                        "tokenizer-id-beyond-embeddings",
                        format!(
                            "the tokenizer produces token id {max_id} (`{token}`) but the table has {} token vectors: a text with that token cannot be embedded",
                            table.vocab()
                        ),
                    )
                    .in_file(inspection.tokenizer.path.clone().unwrap_or_default())
                    .about(table.name)
                    .fix("use the tokenizer.json saved with these vectors"),
                );
            }
        }
        Assessment::Serves {
            architecture: table.describe(),
            evidence,
            findings,
            max_positions: None,
            pooling: Some(ImpliedPooling {
                pooling: Pooling::Mean,
                why: "a static embedding model: the mean of its token vectors, as sentence-transformers' StaticEmbedding computes it",
            }),
        }
    }

    fn load(&self, request: &LoadRequest<'_>) -> Result<Box<dyn Backend>, LoadError> {
        let inspection = request.inspection;
        if !inspection.sentence_transformers.static_embedding {
            return Err(LoadError::Declined(Box::new(not_static())));
        }
        let layout = table(inspection, &mut Vec::new()).map_err(LoadError::Declined)?;
        let (vb, file) = request.var_builder()?;
        let candle = |e| LoadError::from_candle(&file, e);
        let stored = vb
            .get_with_hints_dtype(
                (layout.stored_rows, layout.dim),
                layout.name,
                Default::default(),
                DType::F32,
            )
            .map_err(candle)?;
        let mut folded = stored;
        if let Some(vocab) = layout.mapping {
            let mapping = vb
                .get_with_hints_dtype(vocab, M2V_MAPPING, Default::default(), DType::I64)
                .map_err(candle)?;
            let rows: Vec<i64> = mapping.to_vec1().map_err(candle)?;
            if let Some(bad) = rows.iter().find(|&&r| r < 0 || r as usize >= layout.stored_rows) {
                return Err(LoadError::Declined(invalid(
                    inspection,
                    M2V_MAPPING,
                    format!("`{M2V_MAPPING}` names row {bad} of a {}-row table", layout.stored_rows),
                )));
            }
            let rows =
                Tensor::new(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), folded.device()).map_err(candle)?;
            folded = folded.index_select(&rows, 0).map_err(candle)?;
        }
        if layout.weights {
            let weights = vb
                .get_with_hints_dtype(layout.vocab(), M2V_WEIGHTS, Default::default(), DType::F32)
                .map_err(candle)?;
            folded = folded
                .broadcast_mul(&weights.unsqueeze(1).map_err(candle)?)
                .map_err(candle)?;
        }
        let vectors = folded.to_dtype(request.dtype).map_err(candle)?;
        Ok(Box::new(StaticEmbedding {
            architecture: layout.describe(),
            vectors,
        }))
    }
}

/// A loaded table of token vectors, one row per token id.
#[derive(Debug)]
struct StaticEmbedding {
    architecture: String,
    vectors: Tensor,
}

impl Backend for StaticEmbedding {
    /// Each token's vector, packed as the batch; the pooling (mean) averages them per text.
    fn forward(&self, batch: &Batch) -> Result<Tensor, BackendError> {
        let (vocab, _) = self.vectors.dims2()?;
        batch.check_ids(vocab, usize::MAX)?;
        let ids = Tensor::new(batch.input_ids.as_slice(), self.vectors.device())?;
        Ok(self.vectors.index_select(&ids, 0)?)
    }

    fn describe(&self) -> BackendDescription {
        let (vocab_size, hidden_size) = self.vectors.dims2().unwrap_or_default();
        BackendDescription {
            backend: "static",
            architecture: self.architecture.clone(),
            kernel: "none",
            pads: false,
            hidden_size,
            vocab_size,
            empty_sequences: true,
        }
    }
}
