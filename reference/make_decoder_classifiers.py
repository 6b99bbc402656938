"""Tiny random decoder classifiers (`Qwen3ForSequenceClassification`,
`LlamaForSequenceClassification`, `Gemma2ForSequenceClassification`) and EuroBERT's (`EuroBertForSequenceClassification`, Llama's
layers as an encoder, with its own head) with logits from transformers' own classes, in the classifier
golden schema of `make_encoders.py` (texts and query/passage pairs).

Run it in a venv outside the repository (torch, transformers, tokenizers):

    python reference/make_decoder_classifiers.py reference/models [builder ...]

transformers' decoder classifiers score the last token that is not `pad_token_id`: the Qwen
tokenizer appends `<|endoftext|>`, which is also its padding token, so the Qwen3 reranker's
logit is read at the token before it; the Llama classifier has no padding token and reads the
last token. EuroBERT's head (`dense`, GELU, `classifier`) reads every token and averages the
logits (`classifier_pooling: late`, the reranker) or reads the mean (`mean`, the classifier).
"""

import sys
from pathlib import Path

import torch
from transformers import (
    EuroBertForSequenceClassification,
    Gemma2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    Qwen3ForSequenceClassification,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_decoders import eurobert_config, gemma2_config, gemma_tokenizer, llama_tokenizer  # noqa: E402
from make_encoders import run_builders, widen  # noqa: E402
from make_rotary_families import classifier_golden, qwen3_config, qwen3_tokenizer  # noqa: E402


def save(model, fast, out_dir):
    """The checkpoint as `save_pretrained` writes it, its tokenizer, and transformers' logits."""
    model.save_pretrained(out_dir)
    fast.model_max_length = 1024
    fast.save_pretrained(out_dir)
    classifier_golden(out_dir, model, fast)


# A small Qwen3: 4 query heads on 2 key/value heads of 16 (make_pplx.py's too).
SMALL_QWEN3 = dict(
    hidden_size=48,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)


def qwen3_reranker_tiny(root):
    """A Qwen3-Reranker converted to sequence classification (one output, `score` without bias)."""
    out_dir = root / "qwen3-reranker-tiny"
    tok, fast = qwen3_tokenizer()
    cfg = qwen3_config(tok, num_labels=1, **SMALL_QWEN3)
    torch.manual_seed(11)
    model = Qwen3ForSequenceClassification(cfg).eval()
    widen(model, 31)
    save(model, fast, out_dir)


def llama_classifier_tiny(root):
    """`LlamaForSequenceClassification` with three named labels and no padding token."""
    out_dir = root / "llama-classifier-tiny"
    tok, fast = llama_tokenizer()
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"),
        pad_token_id=None,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
        attn_implementation="sdpa",
    )
    torch.manual_seed(12)
    model = LlamaForSequenceClassification(cfg).eval()
    widen(model, 32)
    save(model, fast, out_dir)


def gemma2_reranker_tiny(root):
    """`Gemma2ForSequenceClassification` with one output: make_decoders.py's gemma2-tiny shape
    (soft-capped scores at 3, a 20-token window on every other layer, eager attention), `score`
    on the last token that is not `<pad>` (the `<eos>` the tokenizer appends)."""
    out_dir = root / "gemma2-reranker-tiny"
    tok, fast = gemma_tokenizer()
    cfg = gemma2_config(tok, num_labels=1)
    torch.manual_seed(16)
    model = Gemma2ForSequenceClassification(cfg).eval()
    widen(model, 36)
    save(model, fast, out_dir)


def eurobert_classifier(root, name, seed, classifier_pooling, labels):
    out_dir = root / name
    tok, fast = llama_tokenizer()
    cfg = eurobert_config(
        tok,
        intermediate_size=64,
        classifier_pooling=classifier_pooling,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(seed)
    model = EuroBertForSequenceClassification(cfg).eval()
    widen(model, seed + 20)
    save(model, fast, out_dir)


def eurobert_reranker_tiny(root):
    """One output, the head on every token with the logits averaged (`late`, the default)."""
    eurobert_classifier(root, "eurobert-reranker-tiny", 13, "late", ["LABEL_0"])


def eurobert_classifier_tiny(root):
    """Three named labels, the head on the mean of the tokens (`classifier_pooling: mean`)."""
    eurobert_classifier(root, "eurobert-classifier-tiny", 14, "mean", ["negative", "neutral", "positive"])


def eurobert_bos_classifier_tiny(root):
    """Two labels, the head on the first token (`classifier_pooling: bos`)."""
    eurobert_classifier(root, "eurobert-bos-classifier-tiny", 15, "bos", ["LABEL_0", "LABEL_1"])


BUILDERS = [
    qwen3_reranker_tiny,
    llama_classifier_tiny,
    eurobert_reranker_tiny,
    eurobert_classifier_tiny,
    eurobert_bos_classifier_tiny,
    gemma2_reranker_tiny,
]


if __name__ == "__main__":
    run_builders(BUILDERS)
