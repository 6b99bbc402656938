"""A tiny pplx-embed-shaped checkpoint: a bidirectional Qwen3 (`model_type:
bidirectional_pplx_qwen3`, its own modeling code named in `auto_map`, `use_bidirectional_attention:
true`), mean pooling, and the int8 output its model card describes and TEI computes:
`round(127 * tanh(mean))`.

Run it in a venv outside the repository (torch, transformers, sentence-transformers, tokenizers):

    python reference/make_pplx.py reference/models

The model's own code is not available here, so the golden is transformers' `Qwen3Model` with
`is_causal: false` (what that code is described to be: Qwen3 attending both ways), mean-pooled
over each text alone, then quantized; `int8_before_rounding` keeps `127 * tanh(mean)` so that a
test can tell a rounding tie from an error.
"""

import json
import sys
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer, models
from transformers import Qwen3Model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_decoder_classifiers import SMALL_QWEN3  # noqa: E402
from make_encoders import run_builders, widen  # noqa: E402
from make_rotary_families import qwen3_config, qwen3_tokenizer, texts  # noqa: E402


@torch.no_grad()
def pplx_tiny(root):
    out_dir, hf_dir = root / "pplx-tiny", root / "_hf_pplx"
    tok, fast = qwen3_tokenizer()
    cfg = qwen3_config(tok, **SMALL_QWEN3)
    cfg.is_causal = False
    torch.manual_seed(13)
    model = Qwen3Model(cfg).eval()
    widen(model, 33)
    model.save_pretrained(hf_dir)
    fast.model_max_length = 1024
    fast.save_pretrained(hf_dir)
    word = models.Transformer(str(hf_dir), max_seq_length=1024)
    pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pool], device="cpu").save(str(out_dir))
    config = json.loads((out_dir / "config.json").read_text())
    config.pop("is_causal", None)
    config.update(
        model_type="bidirectional_pplx_qwen3",
        architectures=["PPLXQwen3Model"],
        auto_map={"AutoConfig": "configuration.PPLXQwen3Config", "AutoModel": "modeling.PPLXQwen3Model"},
        use_bidirectional_attention=True,
    )
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    ts = texts()
    ids = [fast(t, truncation=True, max_length=1024)["input_ids"] for t in ts]
    before, int8, normalized = [], [], []
    for e in ids:
        x = torch.tensor([e])
        mean = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0].mean(0)
        pre = 127.0 * torch.tanh(mean)
        before.append(pre.tolist())
        int8.append(torch.round(pre).tolist())
        normalized.append(torch.nn.functional.normalize(torch.round(pre), dim=-1).tolist())
    causal = []
    model.config.is_causal = True
    for e in ids:
        x = torch.tensor([e])
        mean = model(input_ids=x).last_hidden_state[0].mean(0)
        causal.append(torch.nn.functional.normalize(torch.round(127.0 * torch.tanh(mean)), dim=-1))
    worst = max((c - torch.tensor(n)).abs().max().item() for c, n in zip(causal, normalized))
    data = {
        "texts": ts,
        "token_ids": ids,
        "embeddings": normalized,
        "embeddings_int8": int8,
        "int8_before_rounding": before,
        "sensitivity_of_normalized_embeddings_to_bugs": {"causal": round(worst, 4)},
    }
    (out_dir / "golden.json").write_text(json.dumps(data))


BUILDERS = [pplx_tiny]

if __name__ == "__main__":
    run_builders(BUILDERS)
