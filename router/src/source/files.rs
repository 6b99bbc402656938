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
    for module in modules.as_array().into_iter().flatten() {
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
        ]);
        assert_eq!(
            small_files(&siblings),
            ["config.json", "tokenizer.json", "vocab.txt", "modules.json"]
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
