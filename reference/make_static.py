"""Tiny static embedding models (token vectors averaged, no transformer) in the two layouts they
are published in, with goldens from sentence-transformers, the reference tessera serves them by:

- `static-tiny`: sentence-transformers' own `StaticEmbedding` (`embedding.weight`, as
  static-retrieval-mrl-en-v1 and static-similarity-mrl-multilingual-v1 ship), then `Normalize`,
  with a `query` prompt; an XLM-R-shaped tokenizer whose post-processor adds `<s>` and `</s>`,
  which the module must not add (`add_special_tokens=False`);
- `model2vec-tiny`: a model2vec `StaticModel` saved by model2vec itself (`embeddings`, with the
  newer `mapping` from token ids to fewer rows and a `weights` factor per token id, as the
  vocabulary-quantized potion models ship; `normalize: false`, so no `Normalize`), loaded by
  sentence-transformers from that folder.

The texts include the empty one and one of whitespace (no tokens: sentence-transformers'
`EmbeddingBag` gives zeros) and ones past 512 tokens (it never truncates).

Run it in a venv outside the repository (torch, sentence-transformers 6, model2vec):

    python reference/make_static.py reference/models
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from model2vec import StaticModel
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Normalize
from sentence_transformers.sentence_transformer.modules import StaticEmbedding

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_encoders import unigram_tokenizer  # noqa: E402
from make_rotary_families import texts  # noqa: E402


def all_texts():
    long = " ".join(["static vectors are averaged over every token"] * 120)
    return texts()[:16] + ["", "   ", long]


def golden(out_dir, extra=None):
    """sentence-transformers' vectors for the texts, and its token ids (no special tokens)."""
    model = SentenceTransformer(str(out_dir), device="cpu")
    ts = all_texts()
    module = model[0]
    ids = [e.ids for e in module.tokenizer.encode_batch(ts, add_special_tokens=False)]
    data = {
        "texts": ts,
        "token_ids": ids,
        "token_counts": [len(i) for i in ids],
        "embeddings": model.encode(ts, convert_to_numpy=True).tolist(),
        "normalized": any(type(m).__name__ == "Normalize" for m in model),
    }
    data.update(extra(model, ts) if extra else {})
    (out_dir / "golden.json").write_text(json.dumps(data))


def static_tiny(root):
    out_dir = root / "static-tiny"
    tok = unigram_tokenizer()
    torch.manual_seed(61)
    module = StaticEmbedding(tok, embedding_dim=24)
    model = SentenceTransformer(modules=[module, Normalize()], prompts={"query": "query: "})
    model.save(str(out_dir))

    def with_prompt(model, ts):
        return {
            "prompts": {"query": "query: "},
            "embeddings_query": model.encode(ts, prompt_name="query", convert_to_numpy=True).tolist(),
        }

    golden(out_dir, with_prompt)


def model2vec_tiny(root):
    out_dir = root / "model2vec-tiny"
    tok = unigram_tokenizer()
    vocab = tok.get_vocab_size()
    rng = np.random.default_rng(62)
    rows = 97
    model = StaticModel(
        vectors=rng.standard_normal((rows, 16)).astype(np.float32),
        tokenizer=tok,
        normalize=False,
        weights=rng.uniform(0.2, 2.0, vocab).astype(np.float32),
        token_mapping=rng.integers(0, rows, vocab).astype(np.int64),
    )
    model.save_pretrained(str(out_dir))
    golden(out_dir)


BUILDERS = [static_tiny, model2vec_tiny]


def main():
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    only = sys.argv[2:]
    for build in BUILDERS:
        if not only or build.__name__ in only:
            build(root)


if __name__ == "__main__":
    main()
