#!/usr/bin/env python3
"""Rotary position embeddings as transformers applies them (Qwen3's rotary module and
`apply_rotary_pos_emb`, the rotate-half layout Llama, Qwen and ModernBERT share), on queries of
packed sequences (positions restart at 0 in each), for several head sizes and bases. The input is
`x[t, h, d] = 2 sin(0.37 t + 1.3 h + 0.11 d)` (computed in f64, stored as f32), so the test
rebuilds it; outputs are kept for a sample of tokens, up to position 8191.

  python3 reference/make_rotary.py > reference/rotary/golden.json
"""
import json
import math
import sys

import torch
import transformers
from transformers import Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding, apply_rotary_pos_emb

HEADS = 2
cases = []
for head_dim, theta, lengths in ((16, 10000.0, (5, 37)), (64, 1000000.0, (3, 8192)), (32, 160000.0, (300,))):
    config = Qwen3Config(head_dim=head_dim, rope_theta=theta, hidden_size=head_dim * HEADS, num_attention_heads=HEADS)
    rotary = Qwen3RotaryEmbedding(config)
    total = sum(lengths)
    x = torch.tensor(
        [
            [[2 * math.sin(0.37 * t + 1.3 * h + 0.11 * d) for d in range(head_dim)] for h in range(HEADS)]
            for t in range(total)
        ],
        dtype=torch.float32,
    )
    outs, start = [], 0
    for n in lengths:
        cos, sin = rotary(x, torch.arange(n)[None, :])  # [1, n, head_dim]
        seq = x[start : start + n].transpose(0, 1)[None]  # [1, heads, n, head_dim]
        rotated, _ = apply_rotary_pos_emb(seq, seq, cos, sin)
        outs.append(rotated[0].transpose(0, 1))
        start += n
    out = torch.cat(outs)
    sample = sorted({t for t in (0, 1, 2, 3, 4, 5, 17, 41, 100, 1000, 4095, 8000, total - 1) if t < total})
    cases.append(
        {
            "head_dim": head_dim,
            "theta": theta,
            "lengths": list(lengths),
            "heads": HEADS,
            "tokens": sample,
            "output": [out[t].flatten().tolist() for t in sample],
        }
    )
json.dump({"transformers": transformers.__version__, "cases": cases}, sys.stdout)
print()
