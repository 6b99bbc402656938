//! Which files of a repository serving reads, from the repository's file list. Nothing else is
//! downloaded (no ONNX exports, no second copy of the weights in another format).

use std::collections::BTreeSet;

use anyhow::{anyhow, bail};
use serde_json::Value;

/// Small files read at start-up, fetched when the repository has them.
const SMALL: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    // BGE-M3's lexical layer (a few KB), for /embed_sparse, and its multi-vector layer (4 MB,
    // against 2.2 GB of weights), for /embed_multi_vector.
    tessera_core::SPARSE_LINEAR,
    tessera_core::COLBERT_LINEAR,
];

/// The weights layout, in the order the loader prefers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Weights {
    Safetensors(String),
    ShardedSafetensors { index: String },
    PyTorch(String),
}

/// The small top-level files this repository has: [`SMALL`] and the SentencePiece models the
/// tokenizer can be built from (one list, so a file the builder reads is never left behind).
pub(super) fn small_files(siblings: &BTreeSet<String>) -> Vec<String> {
    SMALL
        .iter()
        .chain(tessera_core::sentencepiece::FILES.iter())
        .filter(|f| siblings.contains(**f))
        .map(|f| f.to_string())
        .collect()
}

/// Files of the sentence-transformers modules listed in modules.json (pooling and Dense configs,
/// Dense weights), which are small.
pub(super) fn module_files(modules: &Value, siblings: &BTreeSet<String>) -> Vec<String> {
    let mut files = Vec::new();
    // A first StaticEmbedding's vectors are the model's weights, fetched as such.
    let skip = usize::from(static_module_dir(modules).is_some());
    for module in modules.as_array().into_iter().flatten().skip(skip) {
        let Some(path) = module.get("path").and_then(Value::as_str) else {
            continue;
        };
        let path = path.trim_matches('/');
        if path.is_empty() || !is_safe(path) {
            continue;
        }
        let mut candidates = vec![format!("{path}/config.json")];
        let dense_weights = format!("{path}/model.safetensors");
        if siblings.contains(&dense_weights) {
            candidates.push(dense_weights);
        } else {
            candidates.push(format!("{path}/pytorch_model.bin"));
        }
        files.extend(candidates.into_iter().filter(|f| siblings.contains(f)));
    }
    files
}

/// The weights to fetch; an error when the repository has none the loader reads.
pub(super) fn weights(siblings: &BTreeSet<String>) -> anyhow::Result<Weights> {
    if siblings.contains("model.safetensors") {
        Ok(Weights::Safetensors("model.safetensors".into()))
    } else if siblings.contains("model.safetensors.index.json") {
        Ok(Weights::ShardedSafetensors {
            index: "model.safetensors.index.json".into(),
        })
    } else if siblings.contains("pytorch_model.bin") {
        Ok(Weights::PyTorch("pytorch_model.bin".into()))
    } else {
        bail!(
            "the repository has no weights tessera can load (model.safetensors, model.safetensors.index.json \
             or pytorch_model.bin); its files: {}",
            siblings.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
        )
    }
}

/// The directory of a `StaticEmbedding` that modules.json lists first (`""` at the root,
/// `0_StaticEmbedding` as sentence-transformers 3 and 4 saved it), by the reader's own rule:
/// such a model has no config.json, and its tokenizer.json and vectors are in that directory.
pub(super) fn static_module_dir(modules: &Value) -> Option<String> {
    let dir = tessera_validation::static_embedding_dir(modules)?;
    let dir = dir.to_str()?.trim_matches('/');
    Some(if dir == "." { "" } else { dir }.to_string())
}

/// The files of a static module in its own directory: its tokenizer.json and its vectors.
pub(super) fn static_module_files(dir: &str, siblings: &BTreeSet<String>) -> anyhow::Result<(String, Weights)> {
    let tokenizer = format!("{dir}/tokenizer.json");
    if !siblings.contains(&tokenizer) {
        bail!("modules.json puts the StaticEmbedding module in `{dir}`, which has no tokenizer.json");
    }
    let (safetensors, pickle) = (format!("{dir}/model.safetensors"), format!("{dir}/pytorch_model.bin"));
    let weights = if siblings.contains(&safetensors) {
        Weights::Safetensors(safetensors)
    } else if siblings.contains(&pickle) {
        Weights::PyTorch(pickle)
    } else {
        bail!("modules.json puts the StaticEmbedding module in `{dir}`, which has no model.safetensors or pytorch_model.bin");
    };
    Ok((tokenizer, weights))
}

/// The shard files a safetensors index names, each once.
pub(super) fn shards(index: &Value, siblings: &BTreeSet<String>) -> anyhow::Result<Vec<String>> {
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("model.safetensors.index.json has no `weight_map` object"))?;
    let shards: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
    shards
        .into_iter()
        .map(|shard| {
            if !is_safe(shard) {
                bail!("model.safetensors.index.json names the shard `{shard}`, which is not a file of the repository");
            }
            if !siblings.contains(shard) {
                bail!("model.safetensors.index.json names the shard `{shard}`, which the repository does not have");
            }
            Ok(shard.to_string())
        })
        .collect()
}

/// A repository-relative file name that cannot escape the snapshot directory.
pub(super) fn is_safe(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(files: &[&str]) -> BTreeSet<String> {
        files.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn every_sentencepiece_model_the_tokenizer_builder_reads_is_fetched() {
        let siblings = set(&[
            "config.json",
            "spm.model",
            "spiece.model",
            "sentencepiece.bpe.model",
            "README.md",
        ]);
        let chosen = small_files(&siblings);
        for file in tessera_core::sentencepiece::FILES {
            assert!(chosen.iter().any(|c| c == file), "{file} not fetched: {chosen:?}");
        }
        assert!(!chosen.iter().any(|c| c == "README.md"));
    }

    #[test]
    fn only_what_serving_reads_is_chosen() {
        let siblings = set(&[
            "config.json",
            "tokenizer.json",
            "vocab.txt",
            "modules.json",
            "1_Pooling/config.json",
            "2_Dense/config.json",
            "2_Dense/model.safetensors",
            "2_Dense/pytorch_model.bin",
            "model.safetensors",
            "pytorch_model.bin",
            "onnx/model.onnx",
            "README.md",
            "sparse_linear.pt",
            "colbert_linear.pt",
        ]);
        assert_eq!(
            small_files(&siblings),
            [
                "config.json",
                "tokenizer.json",
                "vocab.txt",
                "modules.json",
                "sparse_linear.pt",
                "colbert_linear.pt"
            ]
        );
        let modules = json!([
            {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
            {"idx": 3, "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"},
            {"idx": 4, "path": "../../etc", "type": "x"}
        ]);
        assert_eq!(
            module_files(&modules, &siblings),
            [
                "1_Pooling/config.json",
                "2_Dense/config.json",
                "2_Dense/model.safetensors"
            ]
        );
        assert_eq!(
            weights(&siblings).unwrap(),
            Weights::Safetensors("model.safetensors".into())
        );
    }

    #[test]
    fn a_static_module_first_is_found_and_its_files_are_the_model() {
        let modules = json!([
            {"idx": 0, "path": "0_StaticEmbedding", "type": "sentence_transformers.models.StaticEmbedding"},
            {"idx": 1, "path": "1_Normalize", "type": "sentence_transformers.models.Normalize"}
        ]);
        assert_eq!(static_module_dir(&modules).as_deref(), Some("0_StaticEmbedding"));
        let root = json!([{"idx": 0, "path": ".", "type":
            "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding"}]);
        assert_eq!(static_module_dir(&root).as_deref(), Some(""));
        let outside = json!([{"idx": 0, "path": "../x", "type": "sentence_transformers.models.StaticEmbedding"}]);
        assert_eq!(static_module_dir(&outside), None);
        let second = json!([{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "path": "1_StaticEmbedding", "type": "sentence_transformers.models.StaticEmbedding"}]);
        assert_eq!(static_module_dir(&second), None);

        let siblings = set(&[
            "modules.json",
            "0_StaticEmbedding/tokenizer.json",
            "0_StaticEmbedding/model.safetensors",
        ]);
        assert_eq!(
            static_module_files("0_StaticEmbedding", &siblings).unwrap(),
            (
                "0_StaticEmbedding/tokenizer.json".to_string(),
                Weights::Safetensors("0_StaticEmbedding/model.safetensors".into())
            )
        );
        // The vectors are the weights, not a module file fetched whole by a preflight.
        assert!(module_files(&modules, &siblings).is_empty());
        let err = static_module_files("0_StaticEmbedding", &set(&["0_StaticEmbedding/tokenizer.json"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.safetensors"), "{err}");
    }

    #[test]
    fn weights_fall_back_in_the_loader_order() {
        let sharded = set(&["model.safetensors.index.json", "pytorch_model.bin"]);
        assert!(matches!(weights(&sharded).unwrap(), Weights::ShardedSafetensors { .. }));
        assert!(matches!(
            weights(&set(&["pytorch_model.bin"])).unwrap(),
            Weights::PyTorch(_)
        ));
        let err = weights(&set(&["config.json", "model.onnx"])).unwrap_err().to_string();
        assert!(err.contains("model.onnx"), "{err}");
    }

    #[test]
    fn shards_must_be_safe_and_present() {
        let siblings = set(&["a.safetensors", "b.safetensors"]);
        let index = json!({"weight_map": {"x": "a.safetensors", "y": "b.safetensors", "z": "a.safetensors"}});
        assert_eq!(shards(&index, &siblings).unwrap(), ["a.safetensors", "b.safetensors"]);
        let bad = json!({"weight_map": {"x": "../../x.safetensors"}});
        assert!(shards(&bad, &siblings).is_err());
        let missing = json!({"weight_map": {"x": "c.safetensors"}});
        assert!(shards(&missing, &siblings)
            .unwrap_err()
            .to_string()
            .contains("c.safetensors"));
        assert!(shards(&json!({}), &siblings).is_err());
    }
}
