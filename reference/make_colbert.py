"""Tiny PyLate ColBERT models (`colbert-tiny` over BERT, `colbert-modernbert-tiny` over
ModernBERT) with PyLate's own query and document vectors.

PyLate pins its own sentence-transformers (5.3) and transformers (<= 5.3), so it runs in a venv
of its own, not the one the other scripts use:

    python -m venv /tmp/pylate && /tmp/pylate/bin/pip install pylate==1.6.0
    /tmp/pylate/bin/python reference/make_colbert.py reference/models [builder ...]

Each model: a random transformer (a BERT of hidden 32, 4 heads, 2 layers with make_encoders.py's
WordPiece tokenizer; a ModernBERT with local windows, make_rotary_families.py's) made a ColBERT model by PyLate (`pylate.models.ColBERT`: the `[Q] ` and `[D] ` prefix tokens added
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
from make_encoders import fast_tokenizer, run_builders, texts, widen, wordpiece_tokenizer  # noqa: E402
from make_rotary_families import modernbert_config, modernbert_tokenizer  # noqa: E402
from transformers import BertConfig, BertModel, ModernBertModel  # noqa: E402

QUERIES = 12
DOCUMENTS = 24


def vectors(model, ts, is_query, normalize=True):
    out = model.encode(ts, is_query=is_query, batch_size=8, normalize_embeddings=normalize, convert_to_numpy=False)
    return [v.tolist() for v in out]


def token_ids(model, ts, is_query):
    return [model.tokenize([t], is_query=is_query)["input_ids"][0].tolist() for t in ts]


def pylate_fixture(root, name, hf_dir, seed, radius=None):
    """The transformer saved in `hf_dir` made a PyLate ColBERT model (24 features, `query_length`
    16, `document_length` 40), saved as `name` with its golden. With a local window `radius`,
    queries so short that an expansion token's window holds none of their tokens are left out:
    such a row has no key, and what transformers computes for it depends on how its padding and
    window masks add up (published models' windows, 64 each side for GTE-ModernColBERT, reach
    every token of a 32-token query)."""
    out_dir = root / name
    torch.manual_seed(seed)
    model = models.ColBERT(
        model_name_or_path=str(hf_dir), embedding_size=24, query_length=16, document_length=40, device="cpu"
    )
    # The prefix tokens' rows and the projection, drawn wide as the rest.
    widen(model, seed + 20)
    model.eval()
    model.save(str(out_dir))
    (out_dir / "README.md").unlink()
    ts = texts()
    words = " ".join(ts).split()
    # Two documents longer than `document_length`, cut as PyLate cuts them.
    long = [" ".join(words[i : i + n]) for i, n in [(0, 60), (30, 90)]]
    documents = ts[: DOCUMENTS - len(long)] + long
    if radius is None:
        queries = ts[:QUERIES]
    else:
        length = {t: len(model.tokenize([t], is_query=False)["input_ids"][0]) for t in ts}
        reaching = [t for t in ts if length[t] + radius >= 16]
        # Expanded ones (shorter than 16 tokens) first, so that expansion occurs.
        queries = ([t for t in reaching if length[t] < 16] + [t for t in reaching if length[t] >= 16])[:QUERIES]
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


@torch.no_grad()
def colbert_tiny(root):
    """A BERT made a ColBERT model, as answerai-colbert-small is one."""
    hf_dir = root / "_hf_colbert"
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
    pylate_fixture(root, "colbert-tiny", hf_dir, 22)


@torch.no_grad()
def colbert_modernbert_tiny(root):
    """A ModernBERT made a ColBERT model, as GTE-ModernColBERT is one: 3 layers, the first and
    last global, local windows of 16 tokens (8 each side), so that an expansion token's window
    may hold few of the query's tokens."""
    hf_dir = root / "_hf_colbert_modernbert"
    tok, fast = modernbert_tokenizer()
    cfg = modernbert_config(
        tok,
        hidden_size=48,
        intermediate_size=40,
        num_hidden_layers=3,
        num_attention_heads=3,
        global_attn_every_n_layers=2,
        local_attention=16,
        global_rope_theta=160000.0,
        local_rope_theta=10000.0,
    )
    torch.manual_seed(23)
    bert = ModernBertModel(cfg).eval()
    widen(bert, 43)
    bert.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    pylate_fixture(root, "colbert-modernbert-tiny", hf_dir, 24, radius=8)


BUILDERS = [colbert_tiny, colbert_modernbert_tiny]


if __name__ == "__main__":
    run_builders(BUILDERS)
