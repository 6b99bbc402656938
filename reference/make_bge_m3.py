"""A tiny BGE-M3-shaped checkpoint: `xlm-roberta-tiny` (made by make_encoders.py) with CLS pooling
and normalization, as bge-m3 is configured, and beside it FlagEmbedding's two extra layers,
`sparse_linear.pt` (hidden -> 1, the lexical weights) and `colbert_linear.pt` (hidden -> hidden,
the multi-vector output), saved as FlagEmbedding saves them.

Run it in a venv outside the repository (torch, transformers, sentence-transformers,
FlagEmbedding), after make_encoders.py:

    python reference/make_bge_m3.py reference/models

The golden is FlagEmbedding's own `BGEM3FlagModel.encode(..., return_dense=True,
return_sparse=True, return_colbert_vecs=True)` on the folder: `embeddings` its dense vectors,
`lexical_weights` its `{token id: weight}` dicts (cls, eos, pad and unk left out, weights > 0, the
largest per id), `colbert_vecs` its normalized vectors of every token but the first.
"""

import json
import shutil
import sys
import types
from pathlib import Path

import torch

# FlagEmbedding's package import also loads its decoder rerankers, which import a transformers 4
# module that transformers 5 removed; they are not used here, so that module is stood in for.
def _unused(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return object


_stand_in = types.ModuleType("transformers.modeling_attn_mask_utils")
_stand_in.__getattr__ = _unused
sys.modules.setdefault("transformers.modeling_attn_mask_utils", _stand_in)
from FlagEmbedding import BGEM3FlagModel  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_encoders import run_builders  # noqa: E402


@torch.no_grad()
def bge_m3_tiny(root):
    source, out_dir = root / "xlm-roberta-tiny", root / "bge-m3-tiny"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(source, out_dir)
    golden_source = json.loads((source / "golden.json").read_text())
    (out_dir / "golden.json").unlink()
    pooling = json.loads((out_dir / "1_Pooling" / "config.json").read_text())
    pooling.pop("pooling_mode", None)
    for key in list(pooling):
        if key.startswith("pooling_mode"):
            pooling[key] = False
    pooling["pooling_mode_cls_token"] = True
    (out_dir / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    hidden = json.loads((out_dir / "config.json").read_text())["hidden_size"]
    g = torch.Generator().manual_seed(71)
    sparse = torch.nn.Linear(hidden, 1)
    # Wide, with a bias near zero, so that relu keeps some tokens' weights and zeroes others.
    sparse.weight.copy_(0.4 * torch.randn(sparse.weight.shape, generator=g))
    sparse.bias.copy_(torch.tensor([0.05]))
    colbert = torch.nn.Linear(hidden, hidden)
    colbert.weight.copy_(0.3 * torch.randn(colbert.weight.shape, generator=g))
    colbert.bias.copy_(0.3 * torch.randn(colbert.bias.shape, generator=g))
    torch.save(sparse.state_dict(), out_dir / "sparse_linear.pt")
    torch.save(colbert.state_dict(), out_dir / "colbert_linear.pt")

    texts = golden_source["texts"]
    model = BGEM3FlagModel(str(out_dir), use_fp16=False, devices="cpu")
    out = model.encode(
        texts, return_dense=True, return_sparse=True, return_colbert_vecs=True, max_length=128, batch_size=4
    )
    lexical = [{k: float(v) for k, v in weights.items()} for weights in out["lexical_weights"]]
    empty = sum(1 for w in lexical if not w)
    data = {
        "texts": texts,
        "embeddings": out["dense_vecs"].tolist(),
        "lexical_weights": lexical,
        "colbert_vecs": [v.tolist() for v in out["colbert_vecs"]],
        "notes": [f"{empty} of {len(texts)} texts have no positive lexical weight"],
    }
    (out_dir / "golden.json").write_text(json.dumps(data))


BUILDERS = [bge_m3_tiny]

if __name__ == "__main__":
    run_builders(BUILDERS)
