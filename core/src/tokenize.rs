//! Tokenization with sentence-transformers' truncation rules.
//!
//! A model's `tokenizer.json` may carry its own truncation and fixed padding (all-MiniLM-L6-v2
//! stores `truncation: 128` and `padding: Fixed(128)`); sentence-transformers ignores both and
//! truncates at `max_seq_length`. [`TextTokenizer`] does the same: it strips both settings and
//! truncates only when asked to, at the model's maximum input length.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::{Tokenizer, TruncationDirection as HfDirection, TruncationParams};

use crate::chat::{ChatTemplate, Message, MessageFormat};
use crate::error::LoadError;
use crate::inspection::InputModality;
use crate::sentencepiece::{self, Family};

/// Which end of an over-long input is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncationDirection {
    /// Keep the start of the input (sentence-transformers' behaviour).
    #[default]
    Right,
    /// Keep the end of the input.
    Left,
}

/// One tokenized input, ready to be batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids including special tokens.
    pub ids: Vec<u32>,
    /// Leading tokens left out of pooling (a prompt, with `include_prompt: false`).
    pub pool_skip: usize,
    /// Trailing tokens that attend but are never attended to (a ColBERT query's expansion
    /// tokens; see [`crate::SeqOffsets::with_query_only`]).
    pub query_only: usize,
    /// Segment ids, aligned with `ids`.
    pub type_ids: Vec<u32>,
    /// Characters of the original text (for `x-compute-characters`).
    pub chars: usize,
}

impl Encoded {
    /// Wraps token ids given by a client, used exactly as given.
    pub fn from_ids(ids: Vec<u32>) -> Self {
        let type_ids = vec![0; ids.len()];
        Self {
            ids,
            pool_skip: 0,
            query_only: 0,
            type_ids,
            chars: 0,
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Cuts the sequence to `max` tokens from the given direction.
    pub fn truncate(&mut self, max: usize, direction: TruncationDirection) {
        if self.ids.len() <= max {
            return;
        }
        match direction {
            TruncationDirection::Right => {
                self.ids.truncate(max);
                self.type_ids.truncate(max);
            }
            TruncationDirection::Left => {
                let cut = self.ids.len() - max;
                self.ids.drain(..cut);
                self.type_ids.drain(..cut);
            }
        }
    }
}

/// Why an input could not be tokenized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizeError {
    /// The input has more tokens than the model accepts and truncation was not requested.
    #[error("input must have at most {max} tokens, given {given}; pass `truncate: true` or start the server with --auto-truncate")]
    TooLong {
        /// The model's maximum input length.
        max: usize,
        /// Tokens in the input.
        given: usize,
    },
    /// The tokenizer itself failed.
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    /// The chat template did not render the input.
    #[error("{0}")]
    Template(String),
}

/// What a model whose texts go through its chat template needs to render them
/// (sentence-transformers' `message` modality).
#[derive(Debug)]
pub struct ChatInputs {
    /// The template.
    pub template: ChatTemplate,
    /// How message contents are written.
    pub format: MessageFormat,
    /// Template variables (`add_generation_prompt`...).
    pub variables: serde_json::Map<String, serde_json::Value>,
    /// Whether truncated inputs get the template's tail back (`restore_suffix`).
    pub restore_suffix: bool,
    /// Why the template cannot carry a reranker's pair as `query` and `document` messages (its
    /// render does not change with one of them, or it raises); `None` when it can.
    pub pair_failure: Option<String>,
}

impl ChatInputs {
    /// The chat rendering the model's sentence-transformers pipeline gives its texts, if any:
    /// with `modality_config.message` always (a missing template is an error), without
    /// modules.json when the tokenizer has a template (sentence-transformers 6 then infers the
    /// `message` modality), never for pipelines saved text-only.
    pub fn for_model(inspection: &crate::ModelInspection) -> Result<Option<Self>, crate::chat::ChatTemplateError> {
        let st = &inspection.sentence_transformers;
        let saved_format = match st.inputs {
            InputModality::Text => return Ok(None),
            InputModality::Messages(format) => format,
            InputModality::Unsaved => None,
        };
        let Some(template) = ChatTemplate::from_dir(&inspection.root)? else {
            return match st.inputs {
                InputModality::Messages(_) => Err(crate::chat::ChatTemplateError {
                    path: inspection.root.join(crate::chat::TEMPLATE_FILE),
                    message: "sentence_bert_config.json gives texts as chat messages (`modality_config.message`) but the model has no chat template".into(),
                }),
                _ => Ok(None),
            };
        };
        let model_type = inspection.config.as_ref().and_then(|c| c.str("model_type"));
        let format = saved_format.unwrap_or_else(|| MessageFormat::infer_for(model_type, template.source()));
        let mut chat = Self {
            template,
            format,
            variables: st.chat_template_kwargs.clone(),
            restore_suffix: st.restores_suffix(),
            pair_failure: None,
        };
        chat.pair_failure = chat.probe_pairs();
        Ok(Some(chat))
    }

    /// sentence-transformers' probe: a pair rendered as is and with each half changed; a half
    /// whose change leaves the render as it was does not reach the model.
    fn probe_pairs(&self) -> Option<String> {
        let render = |query: &str, document: &str| self.render(&Message::pair(None, query, document));
        let renders = [("alpha", "bravo"), ("charlie", "bravo"), ("alpha", "foxtrot")].map(|(q, d)| render(q, d));
        let [base, query_changed, document_changed] = match renders {
            [Ok(a), Ok(b), Ok(c)] => [a, b, c],
            [Err(e), ..] | [_, Err(e), _] | [_, _, Err(e)] => return Some(format!("it raised: {e}")),
        };
        let dropped: Vec<&str> = [("query", query_changed), ("document", document_changed)]
            .into_iter()
            .filter(|(_, render)| *render == base)
            .map(|(role, _)| role)
            .collect();
        (!dropped.is_empty()).then(|| {
            format!(
                "the {} content does not reach the rendered input",
                dropped.join(" and ")
            )
        })
    }

    /// The messages, rendered.
    pub fn render(&self, messages: &[Message<'_>]) -> Result<String, TokenizeError> {
        self.template
            .render(messages, self.format, &self.variables)
            .map_err(TokenizeError::Template)
    }
}

/// Where a [`TextTokenizer`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerSource {
    /// The model's `tokenizer.json`.
    TokenizerJson,
    /// Built in memory from `vocab.txt` and `tokenizer_config.json` (WordPiece, as BertTokenizerFast).
    BuiltFromVocab,
    /// Built in memory from a SentencePiece model for the named tokenizer class.
    BuiltFromSentencePiece(Family),
}

impl TokenizerSource {
    /// What was built from which files, for the log and `validate-model`; `None` for tokenizer.json.
    pub fn built_from(&self) -> Option<String> {
        match self {
            TokenizerSource::TokenizerJson => None,
            TokenizerSource::BuiltFromVocab => {
                Some("the WordPiece tokenizer from vocab.txt and tokenizer_config.json".into())
            }
            TokenizerSource::BuiltFromSentencePiece(family) => Some(format!(
                "the {} tokenizer from its SentencePiece model and tokenizer_config.json",
                family.class_name()
            )),
        }
    }
}

/// A fast tokenizer built from the slow tokenizer's files, or why it could not be.
#[derive(Debug)]
pub struct SlowFilesBuild {
    /// The file it was built from (`vocab.txt`, the SentencePiece model).
    pub file: PathBuf,
    /// The tokenizer and how it was built.
    pub built: Result<(Tokenizer, TokenizerSource), LoadError>,
}

/// For a model directory without tokenizer.json: the fast tokenizer built from what the slow
/// tokenizer used (`vocab.txt`, else a SentencePiece model). `None` when the directory has neither.
pub fn build_from_slow_files(root: &Path) -> Option<SlowFilesBuild> {
    let vocab = root.join("vocab.txt");
    if vocab.is_file() {
        let built = crate::wordpiece::from_vocab(root).map(|t| (t, TokenizerSource::BuiltFromVocab));
        return Some(SlowFilesBuild { file: vocab, built });
    }
    let file = sentencepiece::find(root)?;
    let built =
        sentencepiece::from_model(root, &file).map(|(t, family)| (t, TokenizerSource::BuiltFromSentencePiece(family)));
    Some(SlowFilesBuild { file, built })
}

/// One token as `/tokenize` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Token id.
    pub id: u32,
    /// The text the token covers, or the token string for special tokens.
    pub text: String,
    /// Whether the tokenizer added it (`[CLS]`, `[SEP]`...).
    pub special: bool,
    /// Byte offset where the token starts in the input (absent for special tokens).
    pub start: Option<usize>,
    /// Byte offset where the token ends in the input (absent for special tokens).
    pub stop: Option<usize>,
}

/// A fast tokenizer with the model's maximum input length.
///
/// Cheap to clone: the three configured tokenizers are shared.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    untruncated: Arc<Tokenizer>,
    right: Arc<Tokenizer>,
    left: Arc<Tokenizer>,
    max_input_length: usize,
    chat: Option<Arc<ChatInputs>>,
    /// Whether the post-processor's special tokens are added (not for static embedding models).
    special_tokens: bool,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, dropping its own padding and truncation.
    pub fn from_file(path: &Path, max_input_length: usize) -> Result<Self, LoadError> {
        if !path.is_file() {
            return Err(LoadError::MissingFile {
                file: path.to_path_buf(),
                what: "the fast tokenizer (tokenizer.json)",
                fix: "save it with `AutoTokenizer.from_pretrained(...).save_pretrained(dir)`".into(),
            });
        }
        let tokenizer = Tokenizer::from_file(path).map_err(|e| LoadError::Tokenizer {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::new(tokenizer, max_input_length).map_err(|message| LoadError::Tokenizer {
            file: path.to_path_buf(),
            message,
        })
    }

    /// Loads the model directory's tokenizer: `tokenizer.json`, or, when a model ships only what
    /// the slow tokenizer used (`vocab.txt`, a SentencePiece model), one built in memory.
    /// Returns which it was.
    pub fn from_dir(root: &Path, max_input_length: usize) -> Result<(Self, TokenizerSource), LoadError> {
        let json = root.join("tokenizer.json");
        let slow = if json.is_file() {
            None
        } else {
            build_from_slow_files(root)
        };
        let Some(SlowFilesBuild { file, built }) = slow else {
            return Ok((
                Self::from_file(&json, max_input_length)?,
                TokenizerSource::TokenizerJson,
            ));
        };
        let (tokenizer, source) = built?;
        let configured =
            Self::new(tokenizer, max_input_length).map_err(|message| LoadError::Tokenizer { file, message })?;
        Ok((configured, source))
    }

    /// The tokenizer as the model's sentence-transformers pipeline uses it: [`Self::from_dir`]'s,
    /// through the chat template where inputs go through one ([`ChatInputs::for_model`]), and
    /// without special tokens for a static embedding model. Returns where it came from.
    pub fn for_model(
        inspection: &crate::ModelInspection,
        max_input_length: usize,
    ) -> Result<(Self, TokenizerSource), LoadError> {
        let (mut tokenizer, source) = Self::from_dir(&inspection.module_files_dir(), max_input_length)?;
        if inspection.sentence_transformers.static_embedding {
            tokenizer = tokenizer.without_special_tokens();
        }
        let chat = ChatInputs::for_model(inspection).map_err(|e| LoadError::Tokenizer {
            file: e.path,
            message: e.message,
        })?;
        if let Some(chat) = chat {
            tokenizer = tokenizer.with_chat(chat);
        }
        Ok((tokenizer, source))
    }

    /// Configures an already loaded tokenizer.
    pub fn new(mut tokenizer: Tokenizer, max_input_length: usize) -> Result<Self, String> {
        tokenizer.with_padding(None);
        let untruncated = with_truncation(&tokenizer, None)?;
        let right = with_truncation(&tokenizer, Some((max_input_length, HfDirection::Right)))?;
        let left = with_truncation(&tokenizer, Some((max_input_length, HfDirection::Left)))?;
        Ok(Self {
            untruncated: Arc::new(untruncated),
            right: Arc::new(right),
            left: Arc::new(left),
            max_input_length,
            chat: None,
            special_tokens: true,
        })
    }

    /// The same tokenizer truncating at `max_input_length` tokens.
    pub fn with_max_input_length(&self, max_input_length: usize) -> Result<Self, String> {
        Ok(Self {
            chat: self.chat.clone(),
            special_tokens: self.special_tokens,
            ..Self::new((*self.untruncated).clone(), max_input_length)?
        })
    }

    /// The id of `token` in the vocabulary (added tokens included).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.untruncated.token_to_id(token)
    }

    /// Encodes without the special tokens the post-processor adds, as sentence-transformers'
    /// `StaticEmbedding` tokenizes (`add_special_tokens=False`); `/tokenize` shows none either.
    pub fn without_special_tokens(mut self) -> Self {
        self.special_tokens = false;
        self
    }

    /// Texts and pairs rendered through `chat` before tokenizing.
    pub fn with_chat(mut self, chat: ChatInputs) -> Self {
        self.chat = Some(Arc::new(chat));
        self
    }

    /// The chat rendering inputs go through, if the model's pipeline uses one.
    pub fn chat(&self) -> Option<&ChatInputs> {
        self.chat.as_deref()
    }

    /// A text as the model's sentence-transformers pipeline gives it: through the chat template
    /// as a `user` message after its prompt as a `system` one (the `message` modality), else
    /// the prompt put before the text.
    pub fn encode_input(
        &self,
        text: &str,
        prompt: Option<&str>,
        truncate: Option<TruncationDirection>,
    ) -> Result<Encoded, TokenizeError> {
        match (self.chat(), prompt) {
            (Some(_), _) => self.encode_messages(&Message::text(prompt, text), truncate),
            (None, Some(prompt)) => self.encode(&format!("{prompt}{text}"), truncate),
            (None, None) => self.encode(text, truncate),
        }
    }

    /// A pair as a CrossEncoder gives it: through the chat template as `query` and `document`
    /// messages after the prompt as a `system` one, where the template carries a pair; else the
    /// tokenizer's pair template with the prompt put before the first text.
    pub fn encode_input_pair(
        &self,
        first: &str,
        second: &str,
        prompt: Option<&str>,
        truncate: Option<TruncationDirection>,
    ) -> Result<Encoded, TokenizeError> {
        match (self.chat(), prompt) {
            (Some(chat), _) if chat.pair_failure.is_none() => {
                self.encode_messages(&Message::pair(prompt, first, second), truncate)
            }
            (_, Some(prompt)) => self.encode_pair(&format!("{prompt}{first}"), second, truncate),
            (_, None) => self.encode_pair(first, second, truncate),
        }
    }

    /// `messages` rendered through the chat template and tokenized without special tokens, as
    /// transformers' `apply_chat_template` does. An over-long render is rejected, or truncated
    /// with the template's tail written back over its last tokens (sentence-transformers'
    /// `restore_suffix`: causal rerankers and last-token pooling read the final position).
    pub fn encode_messages(
        &self,
        messages: &[Message<'_>],
        truncate: Option<TruncationDirection>,
    ) -> Result<Encoded, TokenizeError> {
        let Some(chat) = self.chat.as_deref() else {
            return Err(TokenizeError::Template("the model has no chat template".into()));
        };
        let chars = messages.iter().map(|m| m.content.chars().count()).sum();
        let ids = self.plain_ids(&chat.render(messages)?)?;
        let mut encoded = Encoded {
            type_ids: vec![0; ids.len()],
            ids,
            pool_skip: 0,
            query_only: 0,
            chars,
        };
        let max = self.max_input_length;
        if encoded.len() <= max {
            return Ok(encoded);
        }
        let Some(direction) = truncate else {
            return Err(TokenizeError::TooLong {
                max,
                given: encoded.len(),
            });
        };
        encoded.truncate(max, direction);
        if direction == TruncationDirection::Right && chat.restore_suffix {
            let suffix = self.template_suffix(chat, messages)?;
            let keep = suffix.len().min(max);
            encoded.ids[max - keep..].copy_from_slice(&suffix[suffix.len() - keep..]);
        }
        Ok(encoded)
    }

    /// Token ids of `text` without special tokens.
    fn plain_ids(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        self.untruncated
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))
    }

    /// The template's tail after the last message content, as sentence-transformers derives
    /// it: the conversation rendered twice with every non-system content replaced by a
    /// different filler; the tokens both renders end with. Empty when the renders never differ.
    fn template_suffix(&self, chat: &ChatInputs, messages: &[Message<'_>]) -> Result<Vec<u32>, TokenizeError> {
        let render = |filler: &'static str| {
            let skeleton: Vec<Message<'_>> = messages
                .iter()
                .map(|m| Message {
                    role: m.role,
                    content: if m.role == "system" { m.content } else { filler },
                })
                .collect();
            self.plain_ids(&chat.render(&skeleton)?)
        };
        let (first, second) = (render("0")?, render("1 2 3 4")?);
        let common = first
            .iter()
            .rev()
            .zip(second.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        Ok(match common > 0 && common < first.len().min(second.len()) {
            true => first[first.len() - common..].to_vec(),
            false => Vec::new(),
        })
    }

    /// The most tokens (special tokens included) one input may have.
    pub fn max_input_length(&self) -> usize {
        self.max_input_length
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.untruncated.get_vocab_size(true)
    }

    /// Tokenizes `text` with special tokens. Over-long inputs are truncated when `truncate`
    /// names a direction and rejected otherwise.
    pub fn encode(&self, text: &str, truncate: Option<TruncationDirection>) -> Result<Encoded, TokenizeError> {
        let full = self.encode_with(&self.untruncated, text)?;
        if full.ids.len() <= self.max_input_length {
            return Ok(full);
        }
        match truncate {
            None => Err(TokenizeError::TooLong {
                max: self.max_input_length,
                given: full.ids.len(),
            }),
            Some(TruncationDirection::Right) => self.encode_with(&self.right, text),
            Some(TruncationDirection::Left) => self.encode_with(&self.left, text),
        }
    }

    /// Tokenizes a text pair (`[CLS] a [SEP] b [SEP]`, segment ids 0 then 1), as rerankers and
    /// pair classifiers take it. Over-long pairs are cut longest-first when truncating.
    pub fn encode_pair(
        &self,
        first: &str,
        second: &str,
        truncate: Option<TruncationDirection>,
    ) -> Result<Encoded, TokenizeError> {
        let chars = first.chars().count() + second.chars().count();
        let encode = |tokenizer: &Tokenizer| {
            tokenizer
                .encode((first, second), self.special_tokens)
                .map(|e| Encoded {
                    ids: e.get_ids().to_vec(),
                    pool_skip: 0,
                    query_only: 0,
                    type_ids: e.get_type_ids().to_vec(),
                    chars,
                })
                .map_err(|e| TokenizeError::Tokenizer(e.to_string()))
        };
        let full = encode(&self.untruncated)?;
        if full.ids.len() <= self.max_input_length {
            return Ok(full);
        }
        match truncate {
            None => Err(TokenizeError::TooLong {
                max: self.max_input_length,
                given: full.ids.len(),
            }),
            Some(TruncationDirection::Right) => encode(&self.right),
            Some(TruncationDirection::Left) => encode(&self.left),
        }
    }

    fn encode_with(&self, tokenizer: &Tokenizer, text: &str) -> Result<Encoded, TokenizeError> {
        let encoding = tokenizer
            .encode(text, self.special_tokens)
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            pool_skip: 0,
            query_only: 0,
            type_ids: encoding.get_type_ids().to_vec(),
            chars: text.chars().count(),
        })
    }

    /// Splits `text` into tokens with their offsets, as `/tokenize` reports them.
    pub fn tokens(&self, text: &str, add_special_tokens: bool) -> Result<Vec<Token>, TokenizeError> {
        let encoding = self
            .untruncated
            .encode(text, add_special_tokens && self.special_tokens)
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        let tokens = encoding
            .get_ids()
            .iter()
            .zip(encoding.get_tokens())
            .zip(encoding.get_offsets())
            .zip(encoding.get_special_tokens_mask())
            .map(|(((&id, token), &(start, stop)), &special)| {
                if special == 1 {
                    Token {
                        id,
                        text: token.clone(),
                        special: true,
                        start: None,
                        stop: None,
                    }
                } else {
                    let text = text.get(start..stop).unwrap_or(token).to_string();
                    Token {
                        id,
                        text,
                        special: false,
                        start: Some(start),
                        stop: Some(stop),
                    }
                }
            })
            .collect();
        Ok(tokens)
    }

    /// How many leading tokens a prompt occupies once encoded with special tokens, excluding its
    /// trailing `[SEP]` (sentence-transformers' `prompt_length`): [CLS] plus the prompt's tokens;
    /// without special tokens, the prompt's tokens alone.
    pub fn prompt_length(&self, prompt: &str) -> Result<usize, TokenizeError> {
        let encoding = self
            .untruncated
            .encode(prompt, self.special_tokens)
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        let len = encoding.get_ids().len();
        Ok(if self.special_tokens {
            len.saturating_sub(1)
        } else {
            len
        })
    }

    /// Turns token ids back into text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizeError> {
        self.untruncated
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))
    }
}

fn with_truncation(base: &Tokenizer, truncation: Option<(usize, HfDirection)>) -> Result<Tokenizer, String> {
    let mut tokenizer = base.clone();
    let params = truncation.map(|(max_length, direction)| TruncationParams {
        max_length,
        direction,
        ..TruncationParams::default()
    });
    tokenizer.with_truncation(params).map_err(|e| e.to_string())?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_requested_end() {
        let mut e = Encoded::from_ids(vec![1, 2, 3, 4]);
        e.truncate(2, TruncationDirection::Left);
        assert_eq!(e.ids, vec![3, 4]);
        let mut e = Encoded::from_ids(vec![1, 2, 3, 4]);
        e.truncate(3, TruncationDirection::Right);
        assert_eq!(e.ids, vec![1, 2, 3]);
        assert_eq!(e.type_ids.len(), 3);
    }
}
