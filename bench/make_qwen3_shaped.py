"""A random model of Qwen3-Embedding-0.6B's shape, for speed and memory figures (not numbers):
28 layers of 1024, 16 query heads on 8 key/value heads of 128, SwiGLU 3072, vocabulary 151669,
bfloat16 weights as the real model ships them, last-token pooling. The tokenizer is
all-MiniLM-L6-v2's from ../shared (any tokenizer whose ids fit serves for timing).

    python bench/make_qwen3_shaped.py OUT_DIR        # then: MODEL=OUT_DIR bench/load.sh
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3Model

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
cfg = Qwen3Config(
    vocab_size=151669,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    tie_word_embeddings=True,
)
torch.manual_seed(0)
Qwen3Model(cfg).to(torch.bfloat16).save_pretrained(out)
shared = Path(__file__).resolve().parents[2] / "shared/models/all-MiniLM-L6-v2"
for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
    shutil.copy(shared / name, out / name)
(out / "1_Pooling").mkdir(exist_ok=True)
(out / "1_Pooling/config.json").write_text(json.dumps({"word_embedding_dimension": 1024, "pooling_mode_lasttoken": True}))
(out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8192, "do_lower_case": False}))
(out / "modules.json").write_text(json.dumps([
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]))
print(out)
