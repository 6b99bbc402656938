"""Tiny checkpoints of NVIDIA's bidirectional Llama (`model_type: llama_bidirec`): the embedder
(`LlamaBidirectionalModel`: llama-embed-nemotron-8b, llama-nemotron-embed-1b-v2) and the reranker
(`LlamaBidirectionalForSequenceClassification`: llama-nemotron-rerank-1b-v2), saved as
`save_pretrained` writes them with the config NVIDIA's code reads (`pooling`, `temperature`, its
classes named in `auto_map`, no `is_causal`).

Run it in a venv outside the repository (torch, transformers, tokenizers):

    python reference/make_llama_bidirec.py reference/models [builder ...]

NVIDIA's modeling code is not available here; what it computes is public and small: Llama's
layers, each with `is_causal = False` and a padding-only mask, then the last hidden states pooled
by the config's `pooling` (`avg`: the mean over the attention mask), and for the reranker `score`
on that, divided by `temperature`. The goldens are transformers' `LlamaModel` with
`config.is_causal = False` (transformers then builds that padding-only mask,
`masking_utils.create_causal_mask`), pooled and scored as that code does.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForSequenceClassification, LlamaModel
from transformers.modeling_outputs import SequenceClassifierOutput

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_decoders import llama3_rope, llama_tokenizer  # noqa: E402
from make_encoders import run_builders, widen  # noqa: E402
from make_rotary_families import classifier_golden, texts  # noqa: E402

NVIDIA_CODE = "llama_bidirectional_model"


def nvidia_config(tok, **extra):
    """Llama 3.2's shape at toy size: 4 query heads on 2 key/value heads of 12, Llama 3.1's RoPE
    scaling (as llama-nemotron-embed-1b-v2 has), bidirectional."""
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_parameters=llama3_rope(64),
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"),
        pad_token_id=tok.token_to_id("</s>"),
        attn_implementation="sdpa",
        **extra,
    )
    cfg.is_causal = False
    return cfg


def as_nvidia_saves(out_dir, architecture, **keys):
    """config.json as NVIDIA's checkpoints have it: their model_type and classes, their keys."""
    path = out_dir / "config.json"
    config = json.loads(path.read_text())
    config.pop("is_causal", None)
    config.update(
        model_type="llama_bidirec",
        architectures=[architecture],
        auto_map={
            "AutoConfig": f"{NVIDIA_CODE}.LlamaBidirectionalConfig",
            "AutoModel": f"{NVIDIA_CODE}.LlamaBidirectionalModel",
            "AutoModelForSequenceClassification": f"{NVIDIA_CODE}.LlamaBidirectionalForSequenceClassification",
        },
        **keys,
    )
    path.write_text(json.dumps(config, indent=2))


def drawn_and_saved(model_class, cfg, seeds, fast, out_dir):
    """`model_class(cfg)` drawn after `torch.manual_seed(seeds[0])`, widened with `seeds[1]`,
    saved with the tokenizer."""
    torch.manual_seed(seeds[0])
    model = model_class(cfg).eval()
    widen(model, seeds[1])
    model.save_pretrained(out_dir)
    fast.model_max_length = 1024
    fast.save_pretrained(out_dir)
    return model


def mean_over_mask(hidden, mask):
    m = mask[..., None].to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


@torch.no_grad()
def llama_bidirec_tiny(root):
    """The embedder, bare (no sentence-transformers files: its config's `pooling: avg` is the
    pooling), with a golden of the mean over each text's tokens."""
    out_dir = root / "llama-bidirec-tiny"
    tok, fast = llama_tokenizer()
    model = drawn_and_saved(LlamaModel, nvidia_config(tok), (17, 37), fast, out_dir)
    as_nvidia_saves(out_dir, "LlamaBidirectionalModel", pooling="avg", temperature=1.0)
    ts = texts()
    ids = [fast(t, truncation=True, max_length=1024)["input_ids"] for t in ts]

    def pooled(causal, last=False):
        model.config.is_causal = causal
        try:
            out = []
            for e in ids:
                x = torch.tensor([e])
                h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
                out.append(h[0, -1] if last else mean_over_mask(h, torch.ones_like(x))[0])
            return out
        finally:
            model.config.is_causal = False

    mean = pooled(causal=False)
    normalized = [torch.nn.functional.normalize(v, dim=-1) for v in mean]

    def moved(vectors):
        return round(max((torch.nn.functional.normalize(v, dim=-1) - n).abs().max().item() for v, n in zip(vectors, normalized)), 4)

    data = {
        "texts": ts,
        "token_ids": ids,
        "embeddings": [v.tolist() for v in normalized],
        "embeddings_mean_unnormalized": [v.tolist() for v in mean],
        "sensitivity_of_normalized_embeddings_to_bugs": {
            "causal_instead_of_bidirectional": moved(pooled(causal=True)),
            "last_token_instead_of_mean": moved(pooled(causal=False, last=True)),
        },
    }
    (out_dir / "golden.json").write_text(json.dumps(data))


# The reranker's `temperature`, kept out of the in-memory config, which transformers 5 would
# take for a generation parameter and refuse to save.
TEMPERATURE = 0.25


class NvidiaScorer(LlamaForSequenceClassification):
    """`LlamaBidirectionalForSequenceClassification` as NVIDIA's code computes it: the
    bidirectional model's last hidden states averaged over the attention mask (`pooling: avg`),
    `score`, divided by `temperature`."""

    def forward(self, input_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return SequenceClassifierOutput(logits=self.score(mean_over_mask(hidden, attention_mask)) / TEMPERATURE)


@torch.no_grad()
def llama_bidirec_reranker_tiny(root):
    """The reranker: one output, `temperature` 0.25 (so that leaving the division out shows)."""
    out_dir = root / "llama-bidirec-reranker-tiny"
    tok, fast = llama_tokenizer()
    model = drawn_and_saved(NvidiaScorer, nvidia_config(tok, num_labels=1), (18, 38), fast, out_dir)
    as_nvidia_saves(out_dir, "LlamaBidirectionalForSequenceClassification", pooling="avg", temperature=TEMPERATURE)
    classifier_golden(out_dir, model, fast)


BUILDERS = [llama_bidirec_tiny, llama_bidirec_reranker_tiny]

if __name__ == "__main__":
    run_builders(BUILDERS)
