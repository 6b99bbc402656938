"""A tiny voyage-4-nano-shaped checkpoint: a bidirectional Qwen3 (its own modeling code named in
`auto_map`, `use_bidirectional_attention: true`) under `model.`, and beside it at the weights'
root `linear.weight`, a projection without bias that its code applies to every token's output
(48 -> 96 here; 1024 -> 2048 in voyage-4-nano), then mean pooling and normalization, with
voyage's query and document prompts.

Run it in a venv outside the repository (torch, transformers, sentence-transformers, tokenizers):

    python reference/make_voyage.py reference/models

The model's own code is not available here, so the golden is what it is described to do (its
model card, its ONNX export's pipeline, TEI's implementation): transformers' `Qwen3Model` with
`is_causal: false`, each token's last hidden state times `linear.weight`, mean-pooled over each
text alone, then L2-normalized. `embeddings_projected_tokens` keeps every token's projected
vector of the first text (what `/embed_all` returns).
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer, models
from transformers import Qwen3Model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_decoder_classifiers import SMALL_QWEN3  # noqa: E402
from make_encoders import run_builders, widen  # noqa: E402
from make_rotary_families import qwen3_config, qwen3_tokenizer, texts  # noqa: E402

PROMPTS = {
    "query": "Represent the query for retrieving supporting documents: ",
    "document": "Represent the document for retrieval: ",
}
WIDTH = 96


@torch.no_grad()
def voyage_tiny(root):
    out_dir, hf_dir = root / "voyage-tiny", root / "_hf_voyage"
    tok, fast = qwen3_tokenizer()
    cfg = qwen3_config(tok, **SMALL_QWEN3)
    cfg.is_causal = False
    torch.manual_seed(17)
    model = Qwen3Model(cfg).eval()
    widen(model, 37)
    g = torch.Generator().manual_seed(38)
    projection = 0.3 * torch.randn((WIDTH, cfg.hidden_size), generator=g)
    model.save_pretrained(hf_dir)
    fast.model_max_length = 1024
    fast.save_pretrained(hf_dir)
    word = models.Transformer(str(hf_dir), max_seq_length=1024)
    pool = models.Pooling(WIDTH, pooling_mode="mean")
    SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu", prompts=PROMPTS).save(str(out_dir))
    # The weights as voyage's model class saves them: the backbone under `model.`, the projection
    # at the root.
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors["linear.weight"] = projection.contiguous()
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((out_dir / "config.json").read_text())
    config.pop("is_causal", None)
    config.update(
        architectures=["VoyageQwen3BidirectionalEmbeddingModel"],
        auto_map={"AutoModel": "modeling_voyage.VoyageQwen3BidirectionalEmbeddingModel"},
        use_bidirectional_attention=True,
        num_labels=WIDTH,
    )
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))

    ts = texts()
    ids = [fast(t, truncation=True, max_length=1024)["input_ids"] for t in ts]

    def embed(e, causal=False):
        model.config.is_causal = causal
        x = torch.tensor([e])
        tokens = model(input_ids=x, attention_mask=None if causal else torch.ones_like(x)).last_hidden_state[0]
        return tokens @ projection.T

    raw = [embed(e).mean(0) for e in ids]
    normalized = [torch.nn.functional.normalize(r, dim=-1) for r in raw]
    query_ids = [fast(PROMPTS["query"] + t, truncation=True, max_length=1024)["input_ids"] for t in ts[:4]]
    queries = [torch.nn.functional.normalize(embed(e).mean(0), dim=-1).tolist() for e in query_ids]
    causal = [torch.nn.functional.normalize(embed(e, causal=True).mean(0), dim=-1) for e in ids]
    worst = max((c - n).abs().max().item() for c, n in zip(causal, normalized))
    data = {
        "texts": ts,
        "token_ids": ids,
        "embeddings": [n.tolist() for n in normalized],
        "embeddings_unnormalized": [r.tolist() for r in raw],
        "embeddings_query_prompt": queries,
        "embeddings_projected_tokens": embed(ids[0]).tolist(),
        "sensitivity_of_normalized_embeddings_to_bugs": {"causal": round(worst, 4)},
    }
    (out_dir / "golden.json").write_text(json.dumps(data))


BUILDERS = [voyage_tiny]

if __name__ == "__main__":
    run_builders(BUILDERS)
