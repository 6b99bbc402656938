//! Which tokenizer class a SentencePiece model belongs to, and that class's settings from
//! tokenizer_config.json (special token strings, prefix space, lower-casing, sentinel count).

use std::path::Path;

use serde_json::Value;
use tokenizers::AddedToken;

use crate::error::LoadError;

/// The tokenizer classes whose SentencePiece conversion tessera knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `XLMRobertaTokenizer` (multilingual-e5, bge-m3, paraphrase-multilingual-*).
    XlmRoberta,
    /// `CamembertTokenizer` (CamemBERT and its sentence-transformers fine-tunes).
    Camembert,
    /// `T5Tokenizer` (sentence-t5, GTR, mT5).
    T5,
    /// `AlbertTokenizer`.
    Albert,
    /// `DebertaV2Tokenizer` (DeBERTa-v2/v3's `spm.model`).
    DebertaV2,
}

impl Family {
    /// transformers' class name.
    pub fn class_name(self) -> &'static str {
        match self {
            Family::XlmRoberta => "XLMRobertaTokenizer",
            Family::Camembert => "CamembertTokenizer",
            Family::T5 => "T5Tokenizer",
            Family::Albert => "AlbertTokenizer",
            Family::DebertaV2 => "DebertaV2Tokenizer",
        }
    }

    fn from_class(name: &str) -> Option<Self> {
        match name.strip_suffix("Fast").unwrap_or(name) {
            "XLMRobertaTokenizer" => Some(Family::XlmRoberta),
            "CamembertTokenizer" => Some(Family::Camembert),
            "T5Tokenizer" | "MT5Tokenizer" => Some(Family::T5),
            "AlbertTokenizer" => Some(Family::Albert),
            "DebertaV2Tokenizer" => Some(Family::DebertaV2),
            _ => None,
        }
    }

    fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "xlm-roberta" | "xlm_roberta" => Some(Family::XlmRoberta),
            "camembert" => Some(Family::Camembert),
            "t5" | "mt5" | "umt5" => Some(Family::T5),
            "albert" => Some(Family::Albert),
            "deberta-v2" => Some(Family::DebertaV2),
            _ => None,
        }
    }
}

/// tokenizer_config.json's keys for [`Tokens`], in field order.
const TOKEN_KEYS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "pad_token",
    "mask_token",
    "cls_token",
    "sep_token",
];

/// The special token strings, with the family's defaults where tokenizer_config.json is silent.
#[derive(Debug, Clone)]
pub(super) struct Tokens {
    pub bos: String,
    pub eos: String,
    pub unk: String,
    pub pad: String,
    pub mask: String,
    pub cls: String,
    pub sep: String,
}

/// How to build the tokenizer for one model directory.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub family: Family,
    pub tokens: Tokens,
    pub add_prefix_space: bool,
    pub lower_case: bool,
    pub keep_accents: bool,
    /// DeBERTa's `split_by_punct`: punctuation split off before the pieces.
    pub split_by_punct: bool,
    pub extra_ids: usize,
    /// `added_tokens_decoder`: tokens the saved tokenizer had, by id.
    pub declared: Vec<(u32, AddedToken)>,
}

impl Settings {
    pub(super) fn read(root: &Path, model_file: &Path) -> Result<Self, LoadError> {
        let config_path = root.join("tokenizer_config.json");
        let config = read_json(&config_path)?;
        let family = family(root, &config, model_file)?;
        let text = |key: &str, default: &str| token_text(config.get(key)).unwrap_or_else(|| default.to_string());
        let flag = |key: &str, default: bool| config.get(key).and_then(Value::as_bool).unwrap_or(default);
        // bos, eos, unk, pad, mask, cls, sep as transformers' classes default them.
        let defaults = match family {
            Family::Albert => ["[CLS]", "[SEP]", "<unk>", "<pad>", "[MASK]", "[CLS]", "[SEP]"],
            Family::DebertaV2 => ["[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]", "[CLS]", "[SEP]"],
            Family::XlmRoberta | Family::Camembert | Family::T5 => {
                ["<s>", "</s>", "<unk>", "<pad>", "<mask>", "<s>", "</s>"]
            }
        };
        let [bos, eos, unk, pad, mask, cls, sep] = std::array::from_fn(|i| text(TOKEN_KEYS[i], defaults[i]));
        let tokens = Tokens {
            bos,
            eos,
            unk,
            pad,
            mask,
            cls,
            sep,
        };
        let extra_ids = match config.get("extra_ids") {
            None | Some(Value::Null) => 100,
            Some(v) => v
                .as_u64()
                .filter(|&n| n <= 10_000)
                .ok_or_else(|| LoadError::Tokenizer {
                    file: config_path.clone(),
                    message: format!("`extra_ids` must be a count of sentinel tokens, found {v}"),
                })? as usize,
        };
        Ok(Settings {
            family,
            tokens,
            add_prefix_space: flag("add_prefix_space", true),
            // ALBERT's class lower-cases by default, DeBERTa's does not.
            lower_case: flag("do_lower_case", family != Family::DebertaV2),
            keep_accents: flag("keep_accents", false),
            split_by_punct: flag("split_by_punct", false),
            extra_ids,
            declared: declared_tokens(&config, &config_path)?,
        })
    }

    /// The special tokens this family marks as such (never split, skipped when decoding).
    pub(super) fn special_tokens(&self) -> Vec<String> {
        let t = &self.tokens;
        let mut out = match self.family {
            Family::XlmRoberta | Family::Camembert => vec![&t.bos, &t.pad, &t.eos, &t.unk, &t.mask, &t.cls, &t.sep],
            Family::T5 => vec![&t.pad, &t.eos, &t.unk],
            Family::Albert => vec![&t.pad, &t.unk, &t.cls, &t.sep, &t.mask, &t.bos, &t.eos],
            Family::DebertaV2 => vec![&t.pad, &t.unk, &t.bos, &t.eos, &t.sep, &t.cls, &t.mask],
        }
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
        if self.family == Family::T5 {
            out.extend((0..self.extra_ids).map(|i| format!("<extra_id_{i}>")));
        }
        out
    }
}

fn read_json(path: &Path) -> Result<Value, LoadError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LoadError::json(path, &e)),
        Err(_) => Ok(Value::Null),
    }
}

fn family(root: &Path, config: &Value, model_file: &Path) -> Result<Family, LoadError> {
    let unknown = |message: String| LoadError::Tokenizer {
        file: model_file.to_path_buf(),
        message,
    };
    if let Some(class) = config.get("tokenizer_class").and_then(Value::as_str) {
        return Family::from_class(class).ok_or_else(|| {
            unknown(format!(
                "tokenizer_config.json names `{class}`, whose SentencePiece conversion tessera does not know \
                 (it knows XLMRobertaTokenizer, CamembertTokenizer, T5Tokenizer, AlbertTokenizer, DebertaV2Tokenizer); save tokenizer.json with \
                 `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`"
            ))
        });
    }
    let model_config = read_json(&root.join("config.json"))?;
    if let Some(model_type) = model_config.get("model_type").and_then(Value::as_str) {
        if let Some(family) = Family::from_model_type(model_type) {
            return Ok(family);
        }
    }
    // transformers names XLM-RoBERTa's file so; T5's and ALBERT's share `spiece.model`.
    if model_file.file_name().is_some_and(|n| n == "sentencepiece.bpe.model") {
        return Ok(Family::XlmRoberta);
    }
    Err(unknown(
        "cannot tell which tokenizer class uses it: set `tokenizer_class` in tokenizer_config.json \
         (XLMRobertaTokenizer, CamembertTokenizer, T5Tokenizer, AlbertTokenizer or DebertaV2Tokenizer), or save tokenizer.json with \
         `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`"
            .into(),
    ))
}

/// A token as tokenizer_config.json writes it: a string, or an AddedToken object with `content`.
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn declared_tokens(config: &Value, path: &Path) -> Result<Vec<(u32, AddedToken)>, LoadError> {
    let Some(entries) = config.get("added_tokens_decoder").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(entries.len());
    for (id, entry) in entries {
        let bad = |what: &str| LoadError::Tokenizer {
            file: path.to_path_buf(),
            message: format!("`added_tokens_decoder` entry `{id}`: {what}"),
        };
        let id: u32 = id.parse().map_err(|_| bad("the key must be a token id"))?;
        let content = token_text(Some(entry)).ok_or_else(|| bad("it has no `content` string"))?;
        let flag = |key: &str, default: bool| entry.get(key).and_then(Value::as_bool).unwrap_or(default);
        let special = flag("special", false);
        let token = AddedToken::from(content, special)
            .single_word(flag("single_word", false))
            .lstrip(flag("lstrip", false))
            .rstrip(flag("rstrip", false))
            .normalized(flag("normalized", !special));
        out.push((id, token));
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}
