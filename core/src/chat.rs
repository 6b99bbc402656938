//! A checkpoint's chat template, rendered as transformers' `apply_chat_template` renders it, for
//! models whose sentence-transformers pipeline feeds texts as chat messages (the `message`
//! modality of sentence-transformers 6): a text becomes a `user` message (its prompt a `system`
//! message before it), a reranker's pair a `query` and a `document` message. The rendered string
//! is then tokenized without special tokens, as transformers does.
//!
//! Reference: transformers' `utils/chat_template_utils.py` (a sandboxed Jinja environment with
//! `trim_blocks`, `lstrip_blocks`, `raise_exception`, `strftime_now`, `tojson`; the tokenizer's
//! special tokens as variables) and sentence-transformers' `base/modality.py` (the messages).

use std::path::{Path, PathBuf};

use minijinja::value::Value as JinjaValue;
use minijinja::{Environment, Error as JinjaError, ErrorKind};
use serde_json::{Map, Value};

/// Where transformers 5 saves a tokenizer's template, beside `tokenizer_config.json`.
pub const TEMPLATE_FILE: &str = "chat_template.jinja";
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
const NAME: &str = "chat";

/// How message contents are written: a string (`flat`), or a list of typed parts
/// (`structured`: `[{"type": "text", "text": ...}]`), as the template expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// `{"role": ..., "content": "text"}`.
    Flat,
    /// `{"role": ..., "content": [{"type": "text", "text": "text"}]}`.
    Structured,
}

impl MessageFormat {
    /// As sentence-transformers' config names it.
    pub fn name(self) -> &'static str {
        match self {
            MessageFormat::Flat => "flat",
            MessageFormat::Structured => "structured",
        }
    }

    /// sentence-transformers' `auto`: flat for the model types it knows to be, else
    /// [`MessageFormat::infer`].
    pub fn infer_for(model_type: Option<&str>, template: &str) -> Self {
        const FLAT_MODEL_TYPES: [&str; 4] = ["apertus", "deepseek_v3", "gpt_oss", "seed_oss"];
        match model_type.is_some_and(|t| FLAT_MODEL_TYPES.contains(&t)) {
            true => MessageFormat::Flat,
            false => Self::infer(template),
        }
    }

    /// sentence-transformers' `auto` from the template: structured where it reads typed parts
    /// (`content[0]`, `.type`...), flat otherwise.
    pub fn infer(template: &str) -> Self {
        const STRUCTURED: [&str; 6] = [
            "content[0]",
            ".type",
            "'type'",
            "\"type\"",
            "item.type",
            "message.content[",
        ];
        match STRUCTURED.iter().any(|p| template.contains(p)) {
            true => MessageFormat::Structured,
            false => MessageFormat::Flat,
        }
    }
}

/// One message: a role (`system`, `user`, `query`, `document`) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The role.
    pub role: &'a str,
    /// The text.
    pub content: &'a str,
}

impl<'a> Message<'a> {
    fn new(role: &'a str, content: &'a str) -> Self {
        Self { role, content }
    }

    /// sentence-transformers' conversation for a text: its prompt as a `system` message, then
    /// the text as a `user` message.
    pub fn text(prompt: Option<&'a str>, text: &'a str) -> Vec<Self> {
        Self::after_prompt(prompt, [Self::new("user", text)])
    }

    /// sentence-transformers' conversation for a reranker's pair: its prompt as a `system`
    /// message, then a `query` and a `document` message.
    pub fn pair(prompt: Option<&'a str>, query: &'a str, document: &'a str) -> Vec<Self> {
        Self::after_prompt(prompt, [Self::new("query", query), Self::new("document", document)])
    }

    fn after_prompt<const N: usize>(prompt: Option<&'a str>, messages: [Self; N]) -> Vec<Self> {
        prompt
            .map(|p| Self::new("system", p))
            .into_iter()
            .chain(messages)
            .collect()
    }
}

/// A loaded template with the variables transformers gives it.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The template text (for `auto` format inference).
    source: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// The tokenizer's special tokens (`bos_token`, `eos_token`...) by name.
    special_tokens: Map<String, Value>,
}

/// Why a template cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ChatTemplateError {
    /// The file holding the template.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl ChatTemplate {
    /// The template of the model in `root`: `chat_template.jinja`, else `tokenizer_config.json`'s
    /// `chat_template` (a string, or named templates of which `default` is taken); `None` when
    /// there is none.
    pub fn from_dir(root: &Path) -> Result<Option<Self>, ChatTemplateError> {
        let config_path = root.join(TOKENIZER_CONFIG);
        let config: Map<String, Value> = match std::fs::read(&config_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ChatTemplateError {
                path: config_path.clone(),
                message: format!("not valid JSON: {e}"),
            })?,
            Err(_) => Map::new(),
        };
        let file = root.join(TEMPLATE_FILE);
        let (source, path) = match std::fs::read_to_string(&file) {
            Ok(text) => (text, file),
            Err(_) => match named_default(config.get("chat_template")) {
                Some(text) => (text, config_path),
                None => return Ok(None),
            },
        };
        let special_tokens = special_tokens(&config);
        Self::new(source, path, special_tokens).map(Some)
    }

    /// Compiles `source` (read from `path`) with the tokenizer's `special_tokens`.
    pub fn new(source: String, path: PathBuf, special_tokens: Map<String, Value>) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| ChatTemplateError {
                path: path.clone(),
                message: e.to_string(),
            })?;
        env.set_syntax(syntax);
        // Python's string methods (`.strip()`, `.startswith()`...), which templates call.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", |_format: String| -> Result<String, JinjaError> {
            // The date would make the same text a different input from one day to the next.
            Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                "the template prints the current date (`strftime_now`), which tessera does not put in inputs",
            ))
        });
        env.add_template_owned(NAME, source.clone())
            .map_err(|e| ChatTemplateError {
                path: path.clone(),
                message: format!("the chat template does not compile: {e}"),
            })?;
        Ok(Self {
            env,
            source,
            path,
            special_tokens,
        })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `messages` rendered with `variables` (sentence-transformers' `chat_template` kwargs,
    /// `add_generation_prompt` false unless they set it).
    pub fn render(
        &self,
        messages: &[Message<'_>],
        format: MessageFormat,
        variables: &Map<String, Value>,
    ) -> Result<String, String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                let content = match format {
                    MessageFormat::Flat => Value::String(m.content.to_string()),
                    MessageFormat::Structured => serde_json::json!([{"type": "text", "text": m.content}]),
                };
                serde_json::json!({"role": m.role, "content": content})
            })
            .collect();
        let mut context = self.special_tokens.clone();
        context.insert("add_generation_prompt".into(), Value::Bool(false));
        for (key, value) in variables {
            context.insert(key.clone(), value.clone());
        }
        context.insert("messages".into(), Value::Array(messages));
        let template = self.env.get_template(NAME).map_err(|e| e.to_string())?;
        template
            .render(JinjaValue::from(minijinja::value::Serde(&context)))
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidOperation => format!("the chat template raised: {}", e.detail().unwrap_or("")),
                _ => format!("the chat template failed: {e}"),
            })
    }
}

/// `chat_template` as transformers reads it: a string, or `[{name, template}]` of which the one
/// named `default` is used.
fn named_default(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// The special tokens transformers passes to templates, as strings (`AddedToken` dicts give
/// their `content`).
fn special_tokens(config: &Map<String, Value>) -> Map<String, Value> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(Value::String(s.clone())),
        Value::Object(o) => o.get("content").cloned(),
        _ => None,
    };
    let mut out = Map::new();
    for name in [
        "bos_token",
        "eos_token",
        "unk_token",
        "sep_token",
        "pad_token",
        "cls_token",
        "mask_token",
    ] {
        if let Some(value) = config.get(name).and_then(text) {
            out.insert(name.into(), value);
        }
    }
    if let Some(Value::Array(extra)) = config.get("additional_special_tokens") {
        out.insert(
            "additional_special_tokens".into(),
            Value::Array(extra.iter().filter_map(text).collect()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(source: &str) -> ChatTemplate {
        let mut special = Map::new();
        special.insert("eos_token".into(), Value::String("</s>".into()));
        ChatTemplate::new(source.into(), "t.jinja".into(), special).unwrap()
    }

    #[test]
    fn renders_as_jinja2_with_transformers_settings() {
        // trim_blocks and lstrip_blocks; Python's strip; selectattr and map; a special token.
        let t = template(
            "{% for m in messages %}\n  <{{ m.role }}>{{ m.content.strip() }}\n{% endfor %}\n{{ messages | selectattr('role', 'eq', 'query') | map(attribute='content') | first }}{{ eos_token }}{% if add_generation_prompt %}!{% endif %}\n",
        );
        let messages = [
            Message {
                role: "query",
                content: " q ",
            },
            Message {
                role: "document",
                content: "d",
            },
        ];
        let out = t.render(&messages, MessageFormat::Flat, &Map::new()).unwrap();
        // As transformers' own environment renders it (jinja2 3.1).
        assert_eq!(out, "  <query>q\n  <document>d\n q </s>");
        let mut vars = Map::new();
        vars.insert("add_generation_prompt".into(), Value::Bool(true));
        assert!(t
            .render(&messages, MessageFormat::Flat, &vars)
            .unwrap()
            .ends_with("</s>!"));
    }

    #[test]
    fn structured_contents_are_typed_parts() {
        let t = template("{{ messages[0].content[0].type }}:{{ messages[0].content[0].text }}");
        let out = t
            .render(
                &[Message {
                    role: "user",
                    content: "x",
                }],
                MessageFormat::Structured,
                &Map::new(),
            )
            .unwrap();
        assert_eq!(out, "text:x");
        assert_eq!(MessageFormat::infer(t.source()), MessageFormat::Structured);
        assert_eq!(MessageFormat::infer("{{ m.content }}"), MessageFormat::Flat);
    }

    #[test]
    fn raise_exception_and_bad_syntax_are_errors_not_panics() {
        let t = template("{{ raise_exception('only user and assistant roles') }}");
        let err = t.render(&[], MessageFormat::Flat, &Map::new()).unwrap_err();
        assert!(err.contains("only user and assistant roles"), "{err}");
        assert!(ChatTemplate::new("{% for %}".into(), "t".into(), Map::new()).is_err());
    }

    #[test]
    fn the_default_of_named_templates_is_taken() {
        let named = serde_json::json!([{"name": "tool_use", "template": "a"}, {"name": "default", "template": "b"}]);
        assert_eq!(named_default(Some(&named)).as_deref(), Some("b"));
        assert_eq!(named_default(Some(&Value::String("c".into()))).as_deref(), Some("c"));
        assert_eq!(named_default(None), None);
    }
}
