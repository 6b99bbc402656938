"""Tiny random ELECTRA models: BERT's encoder, told apart by `model_type: electra` and the
`electra.` prefix its task classes save under.

- `electra-tiny`: `ElectraModel` as ELECTRA-small is shaped, its embedding tables narrower than
  its layers (24 under 32): word, position and type rows summed, normed at 24, then projected
  by `embeddings_project` (with a bias); mean pooling, goldens from sentence-transformers.
- `electra-reranker-tiny`: `ElectraForSequenceClassification` with one output, as
  cross-encoder/ms-marco-electra-base ships (tables as wide as the layers, no projection): its
  head is `classifier.dense` with GELU, not RoBERTa's tanh, on the first token, then
  `classifier.out_proj`; logits from transformers.

Positions are counted from 0, as BERT's (RoBERTa counts them after `pad_token_id`).

Run it in a venv outside the repository (torch, transformers, sentence-transformers, tokenizers):

    python reference/make_electra.py reference/models [builder ...]
"""

import sys
from pathlib import Path

import torch
from transformers import ElectraConfig, ElectraForSequenceClassification, ElectraModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_encoders import (  # noqa: E402
    fast_tokenizer,
    golden,
    run_builders,
    save_classifier,
    save_st,
    widen,
    wordpiece_tokenizer,
)


def electra_config(tok, **extra):
    return ElectraConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tok.token_to_id("[PAD]"),
        **extra,
    )


def positions_after_padding(pad):
    """RoBERTa's position rows (`pad_token_id + 1 + i`), as ELECTRA was served before."""

    def run(model, ids):
        rows = model.config.max_position_embeddings
        positions = (torch.arange(ids.shape[1])[None] + pad + 1).clamp(max=rows - 1)
        return model(input_ids=ids, position_ids=positions, token_type_ids=torch.zeros_like(ids)).last_hidden_state

    return run


@torch.no_grad()
def electra_tiny(root):
    out_dir, hf_dir = root / "electra-tiny", root / "_hf_electra"
    tok = wordpiece_tokenizer()
    cfg = electra_config(tok, embedding_size=24)
    torch.manual_seed(21)
    model = ElectraModel(cfg).eval()
    widen(model, 41)
    model.save_pretrained(hf_dir)
    fast_tokenizer(tok, 128).save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 128, "mean")
    pad = tok.token_to_id("[PAD]")
    golden(out_dir, pad, {"positions_after_padding": positions_after_padding(pad)})


def electra_reranker_tiny(root):
    tok = wordpiece_tokenizer()
    cfg = electra_config(tok, embedding_size=32, num_labels=1)
    torch.manual_seed(22)
    model = ElectraForSequenceClassification(cfg).eval()
    widen(model, 42)
    save_classifier(model, tok, root / "electra-reranker-tiny", 128)


BUILDERS = [electra_tiny, electra_reranker_tiny]

if __name__ == "__main__":
    run_builders(BUILDERS)
