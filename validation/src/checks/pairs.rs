//! The segment ids tokenizer.json gives a pair of texts against the model's token-type table: a
//! BERT pair template (`[CLS] A [SEP] B [SEP]`, B with segment id 1) on a model with one token
//! type has no row for B, so every pair a reranker or pair classifier scores would fail in the
//! model (transformers fails alike). Embedders never see pairs, so they are not checked.

use serde_json::Value;
use tessera_core::{Finding, ModelInspection};

const TOKEN_TYPES: &str = "embeddings.token_type_embeddings.weight";

pub(super) fn check(inspection: &ModelInspection, findings: &mut Vec<Finding>) {
    let Some(path) = &inspection.tokenizer.path else {
        return;
    };
    let Some((table, rows)) = token_type_rows(inspection) else {
        return;
    };
    let Some(tokenizer) = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    else {
        return;
    };
    let Some(segment) = pair_segment(&tokenizer["post_processor"]) else {
        return;
    };
    if (segment as usize) < rows {
        return;
    }
    if !is_classifier(inspection) {
        return;
    }
    let message = format!(
        "tokenizer.json gives the second text of a pair segment id {segment}, but `{table}` has {rows} row(s): every pair this classifier scores (/rerank, /predict with pairs) would fail in the model"
    );
    findings.push(
        Finding::error("pair-segment-beyond-token-types", message)
            .in_file(path)
            .about("post_processor")
            .fix("use the tokenizer saved with the model (an XLM-RoBERTa-style model gives both texts segment 0: set the pair template's type ids to 0)"),
    );
}

/// A sequence classifier, by its saved class or its head's tensors (the heads
/// `tessera_core::ClassifierSpec` reads).
fn is_classifier(inspection: &ModelInspection) -> bool {
    let saved_as = inspection
        .config
        .as_ref()
        .and_then(|c| c.get("architectures"))
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|v| v.as_str().is_some_and(|s| s.ends_with("ForSequenceClassification")))
        });
    let head = inspection.weights.as_ref().is_some_and(|w| {
        ["classifier.weight", "classifier.out_proj.weight", "score.weight"]
            .iter()
            .any(|name| w.get(name).is_some())
    });
    saved_as || head
}

/// The token-type table's name and rows, from the weight headers.
fn token_type_rows(inspection: &ModelInspection) -> Option<(String, usize)> {
    let weights = inspection.weights.as_ref()?;
    let prefix = weights.prefix_before(TOKEN_TYPES)?;
    let name = format!("{prefix}{TOKEN_TYPES}");
    let rows = weights.get(&name)?.shape.first().copied()?;
    Some((name, rows))
}

/// The highest segment id the post-processor gives a pair's tokens; `None` where it adds no
/// segment ids of its own (or is of a kind not read here).
fn pair_segment(processor: &Value) -> Option<u64> {
    match processor["type"].as_str()? {
        "TemplateProcessing" => processor["pair"]
            .as_array()?
            .iter()
            .filter_map(|piece| {
                let piece = piece.get("Sequence").or_else(|| piece.get("SpecialToken"))?;
                piece["type_id"].as_u64()
            })
            .max(),
        // `[CLS] A [SEP]` segment 0, `B [SEP]` segment 1.
        "BertProcessing" => Some(1),
        "Sequence" => processor["processors"]
            .as_array()?
            .iter()
            .filter_map(pair_segment)
            .max(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_pair_segment_is_read_from_each_processor_kind() {
        let bert = json!({"type": "TemplateProcessing", "pair": [
            {"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
            {"SpecialToken": {"id": "[SEP]", "type_id": 1}}]});
        assert_eq!(pair_segment(&bert), Some(1));
        let xlmr = json!({"type": "TemplateProcessing", "pair": [
            {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 0}}]});
        assert_eq!(pair_segment(&xlmr), Some(0));
        assert_eq!(pair_segment(&json!({"type": "BertProcessing"})), Some(1));
        assert_eq!(pair_segment(&json!({"type": "RobertaProcessing"})), None);
        let sequence = json!({"type": "Sequence", "processors": [{"type": "ByteLevel"}, bert]});
        assert_eq!(pair_segment(&sequence), Some(1));
        assert_eq!(pair_segment(&Value::Null), None);
    }
}
