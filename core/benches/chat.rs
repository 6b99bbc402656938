//! `cargo bench -p tessera-core --bench chat`
//!
//! What giving texts through a chat template costs per input (sentence-transformers' `message`
//! modality), against tokenizing the text as it is: the same 200 texts (12 to 90 words) through
//! the tokenizer and template of `reference/models/qwen3-chat-embedder-tiny` (ChatML, a query
//! prompt as the system message) and of `qwen3-logit-reranker-tiny` (Qwen3-Reranker's template, a
//! pair per input), in alternated rounds; the median per input is reported with its ratio.

use std::path::Path;
use std::time::{Duration, Instant};

use tessera_core::chat::Message;
use tessera_core::{ChatInputs, TextTokenizer, TruncationDirection};

fn tokenizer(model: &Path) -> TextTokenizer {
    let inspection = inspection(model);
    let (tokenizer, _) = TextTokenizer::from_dir(model, 4096).expect("tokenizer");
    let chat = ChatInputs::for_model(&inspection)
        .expect("template")
        .expect("a chat model");
    tokenizer.with_chat(chat)
}

/// What `ChatInputs::for_model` reads: the saved modality and template variables.
fn inspection(model: &Path) -> tessera_core::ModelInspection {
    let mut inspection = tessera_core::ModelInspection {
        root: model.to_path_buf(),
        ..Default::default()
    };
    inspection.sentence_transformers.inputs =
        tessera_core::inspection::InputModality::Messages(Some(tessera_core::chat::MessageFormat::Flat));
    inspection
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reference/models");
    let words: Vec<String> = (0..4000).map(|i| format!("word{}", i % 97)).collect();
    let texts: Vec<String> = (0..200).map(|i| words[i..i + 12 + (i * 7) % 79].join(" ")).collect();
    let embedder = tokenizer(&root.join("qwen3-chat-embedder-tiny"));
    let reranker = tokenizer(&root.join("qwen3-logit-reranker-tiny"));
    let right = Some(TruncationDirection::Right);
    let prompt = Some("Instruct: find the passage that answers the question");
    type Run<'a> = (&'a str, Box<dyn Fn(&str) + 'a>);
    let runs: Vec<Run<'_>> = vec![
        (
            "text as it is",
            Box::new(|t: &str| drop(embedder.encode(t, right).unwrap())),
        ),
        (
            "text as messages",
            Box::new(|t: &str| drop(embedder.encode_messages(&Message::text(prompt, t), right).unwrap())),
        ),
        (
            "pair as it is",
            Box::new(|t: &str| drop(reranker.encode_pair("what is a word?", t, right).unwrap())),
        ),
        (
            "pair as messages",
            Box::new(|t: &str| {
                drop(
                    reranker
                        .encode_messages(&Message::pair(None, "what is a word?", t), right)
                        .unwrap(),
                )
            }),
        ),
    ];
    let rounds = 15;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); runs.len()];
    for round in 0..rounds {
        for k in 0..runs.len() {
            let r = (k + round) % runs.len();
            let started = Instant::now();
            texts.iter().for_each(|t| (runs[r].1)(t));
            times[r].push(started.elapsed() / texts.len() as u32);
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    println!("200 texts of 12 to 90 words, median per input over {rounds} alternated rounds");
    for (i, ((name, _), m)) in runs.iter().zip(&medians).enumerate() {
        let base = medians[i - i % 2];
        println!(
            "{name:>17}: {:>7.1} us ({:.2}x as it is)",
            m.as_secs_f64() * 1e6,
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
}
