"""A tiny PyLate ColBERT model (`colbert-tiny`) with PyLate's own query and document vectors.

PyLate pins its own sentence-transformers (5.3) and transformers (<= 5.3), so it runs in a venv
of its own, not the one the other scripts use:

    python -m venv /tmp/pylate && /tmp/pylate/bin/pip install pylate==1.6.0
    /tmp/pylate/bin/python reference/make_colbert.py reference/models

The model: a random BERT (hidden 32, 4 heads, 2 layers, make_encoders.py's WordPiece tokenizer)
made a ColBERT model by PyLate (`pylate.models.ColBERT`: the `[Q] ` and `[D] ` prefix tokens added
to the vocabulary, a Dense projection to 24 features without bias), with `query_length` 16 and
`document_length` 40 so that both cutting (two long documents) and query expansion occur, and saved as PyLate saves
it. The golden holds, for the first texts as queries and as documents, the token ids PyLate's
`tokenize` gives and the vectors `encode(is_query=...)` returns (normalized, and for queries
unnormalized too), and the queries' vectors with `attend_to_expansion_tokens` set.
"""

import json
import sys
from pathlib import Path

import torch
from pylate import models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_encoders import cleanup, fast_tokenizer, texts, widen, wordpiece_tokenizer  # noqa: E402
from transformers import BertConfig, BertModel  # noqa: E402

QUERIES = 12
DOCUMENTS = 24


def vectors(model, ts, is_query, normalize=True):
    out = model.encode(ts, is_query=is_query, batch_size=8, normalize_embeddings=normalize, convert_to_numpy=False)
    return [v.tolist() for v in out]


def token_ids(model, ts, is_query):
    return [model.tokenize([t], is_query=is_query)["input_ids"][0].tolist() for t in ts]


@torch.no_grad()
def colbert_tiny(root):
    out_dir, hf_dir = root / "colbert-tiny", root / "_hf_colbert"
    tok = wordpiece_tokenizer()
    cfg = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    torch.manual_seed(21)
    bert = BertModel(cfg).eval()
    widen(bert, 41)
    bert.save_pretrained(hf_dir)
    fast_tokenizer(tok, 512).save_pretrained(hf_dir)
    torch.manual_seed(22)
    model = models.ColBERT(
        model_name_or_path=str(hf_dir), embedding_size=24, query_length=16, document_length=40, device="cpu"
    )
    # The prefix tokens' rows and the projection, drawn wide as the rest.
    widen(model, 42)
    model.eval()
    model.save(str(out_dir))
    (out_dir / "README.md").unlink()
    ts = texts()
    words = " ".join(ts).split()
    # Two documents longer than `document_length`, cut as PyLate cuts them.
    long = [" ".join(words[i : i + n]) for i, n in [(0, 60), (30, 90)]]
    queries, documents = ts[:QUERIES], ts[: DOCUMENTS - len(long)] + long
    attending = models.ColBERT(model_name_or_path=str(out_dir), attend_to_expansion_tokens=True, device="cpu")
    attending.eval()
    data = {
        "queries": {
            "texts": queries,
            "token_ids": token_ids(model, queries, True),
            "embeddings": vectors(model, queries, True),
            "embeddings_unnormalized": vectors(model, queries, True, normalize=False),
            "embeddings_attending_expansion": vectors(attending, queries, True),
        },
        "documents": {
            "texts": documents,
            "token_ids": token_ids(model, documents, False),
            "embeddings": vectors(model, documents, False),
        },
        "skiplist": sorted(set(model.skiplist)),
    }
    (out_dir / "golden.json").write_text(json.dumps(data))
    cleanup(root)


if __name__ == "__main__":
    colbert_tiny(Path(sys.argv[1] if len(sys.argv) > 1 else "reference/models"))
