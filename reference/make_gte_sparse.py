"""A tiny gte-multilingual-base-shaped checkpoint: a GTE saved as a token classifier with one
output, as the hub's gte-multilingual-base is (`architectures: [NewForTokenClassification]`
without `id2label`, the encoder under `new.`, `classifier.weight` `[1, hidden]` and its bias,
no pooler). Its dense vector is the first token's, normalized (its sentence-transformers
config); its sparse output, which its own code (`GTEEmbedding`) computes, is
`relu(classifier(h))` over every token of the last hidden states, the largest per token,
leaving out the tokenizer's cls, eos, pad and unk tokens and weights that are not positive.
`GTEEmbedding` keys the weights by each token's decoded text; the golden keys them by token id
(as `/embed_sparse` returns them), and `lexical_weights_by_text` keeps its own keys.

Run it in a venv outside the repository (torch, transformers, sentence-transformers, tokenizers):

    python reference/make_gte_sparse.py reference/models

The reference is transformers' `GteForTokenClassification` (the native class of
`NewForTokenClassification`): its logits are `classifier(h)`.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer, models
from transformers import GteConfig, GteForTokenClassification

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_encoders import fast_tokenizer, run_builders, texts, unigram_tokenizer, widen  # noqa: E402


@torch.no_grad()
def gte_token_classifier_tiny(root):
    out_dir, hf_dir = root / "gte-token-classifier-tiny", root / "_hf_gte_token_classifier"
    tok = unigram_tokenizer()
    fast = fast_tokenizer(tok, 128)
    cfg = GteConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=40,
        type_vocab_size=1,
        max_position_embeddings=512,
        pad_token_id=tok.token_to_id("<pad>"),
        num_labels=1,
        rope_parameters={"rope_type": "default", "rope_theta": 160000.0},
    )
    torch.manual_seed(61)
    model = GteForTokenClassification(cfg).eval()
    widen(model, 62)
    # A bias near zero, so that relu keeps some tokens' weights and zeroes others.
    model.classifier.bias.fill_(0.05)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    word = models.Transformer(str(hf_dir), max_seq_length=128)
    pool = models.Pooling(cfg.hidden_size, pooling_mode="cls")
    SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu").save(str(out_dir))
    # The weights and config as the hub's checkpoint has them.
    saved = load_file(str(hf_dir / "model.safetensors"))  # transformers writes the original names
    tensors = {("new." + k.removeprefix("gte.") if k.startswith("gte.") else k): v for k, v in saved.items()}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((hf_dir / "config.json").read_text())
    config["architectures"] = ["NewForTokenClassification"]
    config.pop("id2label", None)
    config.pop("label2id", None)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))

    ts = texts()
    unused = {fast.cls_token_id, fast.eos_token_id, fast.pad_token_id, fast.unk_token_id}
    dense, by_id, by_text = [], [], []
    for t in ts:
        enc = fast(t, truncation=True, max_length=128, return_tensors="pt")
        out = model(**enc, output_hidden_states=True)
        h = out.hidden_states[-1][0]
        dense.append(torch.nn.functional.normalize(h[0], dim=-1).tolist())
        weights = torch.relu(out.logits[0, :, 0])
        ids_w, text_w = defaultdict(float), defaultdict(float)
        for idx, w in zip(enc["input_ids"][0].tolist(), weights.tolist()):
            if idx in unused or w <= 0:
                continue
            ids_w[str(idx)] = max(ids_w[str(idx)], w)
            token = fast.decode([idx])
            text_w[token] = max(text_w[token], w)
        by_id.append(dict(ids_w))
        by_text.append(dict(text_w))
    st = SentenceTransformer(str(out_dir), device="cpu")
    st_dense = st.encode(ts, convert_to_tensor=True)
    agree = (st_dense - torch.tensor(dense)).abs().max().item()
    assert agree < 1e-5, f"sentence-transformers and the token classifier's encoder disagree by {agree}"
    data = {
        "texts": ts,
        "embeddings": dense,
        "lexical_weights": by_id,
        "lexical_weights_by_text": by_text,
        "notes": [f"{sum(1 for w in by_id if not w)} of {len(ts)} texts have no positive lexical weight"],
    }
    (out_dir / "golden.json").write_text(json.dumps(data))


BUILDERS = [gte_token_classifier_tiny]

if __name__ == "__main__":
    run_builders(BUILDERS)
