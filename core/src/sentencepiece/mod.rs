//! Building the fast tokenizer in memory from a SentencePiece model (`sentencepiece.bpe.model`,
//! `spiece.model`, `spm.model`) when a model ships no tokenizer.json.
//!
//! A SentencePiece file alone does not say how a model used it: XLM-RoBERTa renumbers the
//! pieces to fairseq's layout and appends `<mask>` (CamemBERT to another fairseq layout), T5
//! appends its sentinel tokens, ALBERT
//! lower-cases and strips accents, DeBERTa-v2 collapses whitespace and may isolate punctuation, and each wraps inputs in different special tokens. So the
//! tokenizer is built for the class the model names (`tokenizer_class` in tokenizer_config.json,
//! else `model_type` in config.json, else the file name), exactly as transformers builds that
//! class from the same file, which is what sentence-transformers encodes with.

mod family;
mod proto;

use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::{json, Value};
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::precompiled::Precompiled;
use tokenizers::normalizers::{Lowercase, Replace, Sequence as NormalizerSequence, StripAccents, NFKD};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, Tokenizer};

pub use family::Family;
use family::Settings;
use proto::{ModelProto, ModelType, PieceType};

use crate::error::LoadError;

/// The SentencePiece files transformers' tokenizers read, in the order they are looked for.
pub const FILES: [&str; 3] = ["sentencepiece.bpe.model", "spiece.model", "spm.model"];

/// The first SentencePiece model file present in `root`.
pub fn find(root: &Path) -> Option<PathBuf> {
    FILES.iter().map(|f| root.join(f)).find(|p| p.is_file())
}

/// The fast tokenizer for `file`, a SentencePiece model in `root`, configured by
/// `root/tokenizer_config.json` (and `root/config.json` for the model family).
pub fn from_model(root: &Path, file: &Path) -> Result<(Tokenizer, Family), LoadError> {
    let broken = |message: String| LoadError::Tokenizer {
        file: file.to_path_buf(),
        message,
    };
    let settings = Settings::read(root, file)?;
    let bytes = std::fs::read(file).map_err(|e| broken(format!("cannot read it: {e}")))?;
    let proto = ModelProto::decode(bytes.as_slice())
        .map_err(|e| broken(format!("not a SentencePiece model (protobuf: {e})")))?;
    let tokenizer = build(&proto, &settings).map_err(broken)?;
    Ok((tokenizer, settings.family))
}

fn build(proto: &ModelProto, settings: &Settings) -> Result<Tokenizer, String> {
    let trainer = proto.trainer_spec.clone().unwrap_or_default();
    if trainer.model_type() != ModelType::Unigram {
        return Err(format!(
            "it is a {:?} model; {} models are Unigram, and only those are converted",
            trainer.model_type(),
            settings.family.class_name()
        ));
    }
    let (vocab, unk_id) = vocabulary(proto, settings)?;
    let vocab_len = vocab.len();
    let model = Unigram::from(vocab, Some(unk_id), false).map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(normalizer(proto, settings)?)
        .map_err(|e| e.to_string())?;
    if settings.family == Family::DebertaV2 {
        deberta_v2_splitting(&mut tokenizer, settings)?;
    } else {
        // Splitting on whitespace first is what removes SentencePiece's extra spaces; the
        // Metaspace step then marks each word's start with `▁` as the pieces expect.
        let scheme = if settings.add_prefix_space {
            PrependScheme::Always
        } else {
            PrependScheme::Never
        };
        tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            WhitespaceSplit.into(),
            Metaspace::new('▁', scheme, true).into(),
        ])));
        tokenizer.with_decoder(Some(MetaspaceDecoder::new('▁', scheme, true)));
    }
    add_tokens(&mut tokenizer, proto, settings, vocab_len)?;
    let processor = post_processor(&tokenizer, settings)?;
    tokenizer.with_post_processor(Some(processor));
    Ok(tokenizer)
}

/// The pieces with the family's renumbering, and the unknown piece's id.
fn vocabulary(proto: &ModelProto, settings: &Settings) -> Result<(Vec<(String, f64)>, usize), String> {
    let pieces = || {
        proto
            .pieces
            .iter()
            .map(|p| (p.piece().to_string(), f64::from(p.score())))
    };
    let spm_unk = proto.trainer_spec.as_ref().map_or(0, |t| t.unk_id());
    let spm_unk = usize::try_from(spm_unk)
        .ok()
        .filter(|&id| id < proto.pieces.len())
        .ok_or_else(|| {
            format!(
                "its unknown piece id {spm_unk} is outside its {} pieces",
                proto.pieces.len()
            )
        })?;
    let tokens = &settings.tokens;
    Ok(match settings.family {
        Family::XlmRoberta => {
            // fairseq's dictionary: <s> <pad> </s> <unk> first, SentencePiece's own first three
            // pieces (<unk> <s> </s>) dropped, so every other piece moves up by one.
            if let Some(i) = proto.pieces.iter().take(3).position(|p| p.kind() == PieceType::Normal) {
                return Err(format!(
                    "piece {i} (`{}`) is an ordinary piece, but XLM-RoBERTa's layout replaces the first three \
                     pieces (<unk> <s> </s>) with its own special tokens",
                    proto.pieces[i].piece()
                ));
            }
            let mut vocab: Vec<(String, f64)> = [&tokens.bos, &tokens.pad, &tokens.eos, &tokens.unk]
                .into_iter()
                .map(|t| (t.clone(), 0.0))
                .collect();
            vocab.extend(pieces().skip(3));
            vocab.push((tokens.mask.clone(), 0.0));
            (vocab, 3)
        }
        Family::Camembert => {
            // CamemBERT's fairseq dictionary: <s>NOTUSED <pad> </s>NOTUSED <unk> <unk>NOTUSED,
            // then every SentencePiece piece but its <unk> (so its <s> and </s> are 5 and 6).
            let mut vocab: Vec<(String, f64)> = vec![
                ("<s>NOTUSED".into(), 0.0),
                (tokens.pad.clone(), 0.0),
                ("</s>NOTUSED".into(), 0.0),
                (tokens.unk.clone(), 0.0),
                // Scored down so that the piece never wins over the <unk> above.
                ("<unk>NOTUSED".into(), -100.0),
            ];
            vocab.extend(pieces().skip(1));
            vocab.push((tokens.mask.clone(), 0.0));
            (vocab, 3)
        }
        Family::T5 => {
            let mut vocab: Vec<(String, f64)> = pieces().collect();
            vocab.extend((0..settings.extra_ids).rev().map(|i| (format!("<extra_id_{i}>"), 0.0)));
            (vocab, spm_unk)
        }
        Family::Albert | Family::DebertaV2 => (pieces().collect(), spm_unk),
    })
}

/// DeBERTa-v2's pre-tokenizer and decoder as transformers' `DebertaV2Tokenizer` sets them:
/// punctuation isolated (`split_by_punct`), then Metaspace splitting, the prefix `▁` on every
/// word (`add_prefix_space`) or on the first only.
fn deberta_v2_splitting(tokenizer: &mut Tokenizer, settings: &Settings) -> Result<(), String> {
    let scheme = if settings.add_prefix_space { "always" } else { "first" };
    let metaspace = json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": true});
    let mut steps = Vec::new();
    if settings.split_by_punct {
        steps.push(json!({"type": "Punctuation", "behavior": "Isolated"}));
    }
    steps.push(metaspace.clone());
    let pre_tokenizer = serde_json::from_value(json!({"type": "Sequence", "pretokenizers": steps}))
        .map_err(|e| format!("cannot build its pre-tokenizer: {e}"))?;
    let decoder = serde_json::from_value(metaspace).map_err(|e| format!("cannot build its decoder: {e}"))?;
    tokenizer.with_pre_tokenizer(Some::<tokenizers::PreTokenizerWrapper>(pre_tokenizer));
    tokenizer.with_decoder(Some::<tokenizers::DecoderWrapper>(decoder));
    Ok(())
}

fn normalizer(proto: &ModelProto, settings: &Settings) -> Result<Option<NormalizerWrapper>, String> {
    let charsmap = proto
        .normalizer_spec
        .as_ref()
        .map(|n| n.precompiled_charsmap())
        .unwrap_or_default();
    let precompiled = if charsmap.is_empty() {
        None
    } else {
        let map = Precompiled::from(charsmap)
            .map_err(|e| format!("its normalization rules (precompiled_charsmap) are unreadable: {e}"))?;
        Some(NormalizerWrapper::from(map))
    };
    if settings.family == Family::DebertaV2 {
        // transformers 5's `DebertaV2Tokenizer`: no precompiled rules, runs of whitespace and
        // line breaks to one space, NFC, trailing space stripped.
        let mut steps = Vec::new();
        if settings.lower_case {
            steps.push(json!({"type": "Lowercase"}));
        }
        steps.push(json!({"type": "Replace", "pattern": {"Regex": "\\s{2,}|[\\n\\r\\t]"}, "content": " "}));
        steps.push(json!({"type": "NFC"}));
        steps.push(json!({"type": "Strip", "strip_left": false, "strip_right": true}));
        return serde_json::from_value(json!({"type": "Sequence", "normalizers": steps}))
            .map(Some)
            .map_err(|e| format!("cannot build its normalizer: {e}"));
    }
    if settings.family != Family::Albert {
        return Ok(precompiled);
    }
    let replace = |from: &str| Replace::new(from, "\"").map(NormalizerWrapper::from);
    let mut steps = vec![
        replace("``").map_err(|e| e.to_string())?,
        replace("''").map_err(|e| e.to_string())?,
    ];
    if !settings.keep_accents {
        steps.push(NFKD.into());
        steps.push(StripAccents.into());
    }
    if settings.lower_case {
        steps.push(Lowercase.into());
    }
    steps.extend(precompiled);
    Ok(Some(NormalizerSequence::new(steps).into()))
}

/// Special tokens, SentencePiece's control and user-defined pieces, and any token
/// tokenizer_config.json declares, each matched whole in the input before segmentation.
fn add_tokens(
    tokenizer: &mut Tokenizer,
    proto: &ModelProto,
    settings: &Settings,
    vocab_len: usize,
) -> Result<(), String> {
    // Later sources override earlier ones for the same content; first appearance keeps its place.
    let mut ordered: Vec<AddedToken> = Vec::new();
    let mut add = |token: AddedToken| match ordered.iter_mut().find(|t| t.content == token.content) {
        Some(existing) => *existing = token,
        None => ordered.push(token),
    };
    // XLM-RoBERTa replaced SentencePiece's first three pieces with its own.
    let skip = match settings.family {
        Family::XlmRoberta => 3,
        // CamemBERT dropped only SentencePiece's <unk>.
        Family::Camembert => 1,
        Family::T5 | Family::Albert | Family::DebertaV2 => 0,
    };
    for piece in proto.pieces.iter().skip(skip) {
        match piece.kind() {
            PieceType::Control => add(AddedToken::from(piece.piece(), true).normalized(false)),
            PieceType::UserDefined => add(AddedToken::from(piece.piece(), false).normalized(false)),
            _ => {}
        }
    }
    for special in settings.special_tokens() {
        add(AddedToken::from(special, true).normalized(false));
    }
    for (_, token) in &settings.declared {
        add(token.clone());
    }
    // Tokens already in the vocabulary keep their ids; new ones are appended, declared ids first.
    let declared_id = |t: &AddedToken| {
        settings
            .declared
            .iter()
            .find(|(_, d)| d.content == t.content)
            .map_or(u32::MAX, |(id, _)| *id)
    };
    ordered.sort_by_key(declared_id);
    let (special, plain): (Vec<AddedToken>, Vec<AddedToken>) = ordered.into_iter().partition(|t| t.special);
    tokenizer.add_special_tokens(special).map_err(|e| e.to_string())?;
    tokenizer.add_tokens(plain).map_err(|e| e.to_string())?;
    for (id, token) in &settings.declared {
        let got = tokenizer.token_to_id(&token.content);
        if got != Some(*id) {
            return Err(format!(
                "tokenizer_config.json declares `{}` as token {id}, but with these {vocab_len} pieces it is {}",
                token.content,
                got.map_or("absent".to_string(), |g| g.to_string())
            ));
        }
    }
    Ok(())
}

/// The family's template: `<s> A </s>` (XLM-RoBERTa, CamemBERT), `A </s>` (T5), `[CLS] A [SEP]`
/// (ALBERT).
/// Built through serde so token strings are taken literally (the template mini-language would
/// misread a token containing `:`).
fn post_processor(tokenizer: &Tokenizer, settings: &Settings) -> Result<TemplateProcessing, String> {
    let t = &settings.tokens;
    let special = |token: &str, type_id: u32| json!({"SpecialToken": {"id": token, "type_id": type_id}});
    let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
    let (single, pair, used) = match settings.family {
        Family::XlmRoberta | Family::Camembert => (
            vec![special(&t.bos, 0), seq("A", 0), special(&t.eos, 0)],
            vec![
                special(&t.bos, 0),
                seq("A", 0),
                special(&t.eos, 0),
                special(&t.eos, 0),
                seq("B", 0),
                special(&t.eos, 0),
            ],
            vec![&t.bos, &t.eos],
        ),
        Family::T5 => (
            vec![seq("A", 0), special(&t.eos, 0)],
            vec![seq("A", 0), special(&t.eos, 0), seq("B", 0), special(&t.eos, 0)],
            vec![&t.eos],
        ),
        Family::Albert | Family::DebertaV2 => (
            vec![special(&t.cls, 0), seq("A", 0), special(&t.sep, 0)],
            vec![
                special(&t.cls, 0),
                seq("A", 0),
                special(&t.sep, 0),
                seq("B", 1),
                special(&t.sep, 1),
            ],
            vec![&t.cls, &t.sep],
        ),
    };
    let mut specials = serde_json::Map::new();
    for token in used {
        let id = tokenizer
            .token_to_id(token)
            .ok_or_else(|| format!("its special token `{token}` is not in the vocabulary"))?;
        specials.insert(token.clone(), json!({"id": token, "ids": [id], "tokens": [token]}));
    }
    let value = json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": Value::Object(specials)});
    serde_json::from_value(value).map_err(|e| format!("cannot build its template: {e}"))
}
