"""Tiny random DeBERTa-v2/v3 checkpoints with goldens from transformers' own classes
(`DebertaV2Model` through sentence-transformers, `DebertaV2ForSequenceClassification`).

Run it in a venv outside the repository (torch, transformers, sentence-transformers, tokenizers):

    python reference/make_deberta.py reference/models [builder ...]

Shares the texts (up to ~890 tokens) of `make_rotary_families.py` and the WordPiece tokenizer of
`make_encoders.py` ([CLS] A [SEP] B [SEP]). The relative-position settings are small (32 log
buckets, a maximum distance of 64) so that the texts reach the exact, the logarithmic and the
clamped offsets alike.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Model
from transformers.models.deberta_v2 import modeling_deberta_v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_encoders import run_builders, fast_tokenizer, save_classifier, widen, wordpiece_tokenizer  # noqa: E402
from make_rotary_families import golden, rebuilt, save_st  # noqa: E402


def deberta_config(tok, **extra):
    cfg = dict(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=512,
        type_vocab_size=0,
        relative_attention=True,
        position_buckets=32,
        max_relative_positions=64,
        pos_att_type=["p2c", "c2p"],
        share_att_key=True,
        norm_rel_ebd="layer_norm",
        position_biased_input=False,
        layer_norm_eps=1e-7,
        pad_token_id=0,
    )
    cfg.update(extra)
    return DebertaV2Config(**cfg)


def changed(**changes):
    """The same weights under a config that differs by `changes` (parameters it lacks dropped)."""
    return lambda model, ids: rebuilt(model, strict=False, **changes)(input_ids=ids).last_hidden_state


def unbucketed(model, ids):
    """Offsets used as they are, without the logarithmic buckets (then clamped to the span)."""
    saved = modeling_deberta_v2.make_log_bucket_position
    modeling_deberta_v2.make_log_bucket_position = lambda rel, bucket_size, max_position: rel
    try:
        return model(input_ids=ids).last_hidden_state
    finally:
        modeling_deberta_v2.make_log_bucket_position = saved


def deberta_v3_tiny(root):
    """DeBERTa-v3's layout: no position table, shared key/query projections for the relative
    embeddings (normed), both c2p and p2c, log buckets; mean pooling."""
    hf_dir, out_dir = root / "_hf_deberta_v3", root / "deberta-v3-tiny"
    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    model = DebertaV2Model(deberta_config(tok)).eval()
    widen(model, 21)
    model.save_pretrained(hf_dir)
    fast_tokenizer(tok, 512).save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 512, "mean")
    golden(
        out_dir,
        "mean",
        {
            "c2p_only": changed(pos_att_type=["c2p"]),
            "p2c_only": changed(pos_att_type=["p2c"]),
            "offsets_not_bucketed": unbucketed,
            "relative_embeddings_not_normed": changed(norm_rel_ebd="none"),
        },
    )
    # transformers' table row (bucket + span, clamped) of every offset i - j to 1023, for
    # DeBERTa-v3's own settings (256 buckets to 512) and this model's.
    offsets = torch.arange(-1023, 1024)
    data = json.loads((out_dir / "golden.json").read_text())
    data["relative_columns"] = {"first_offset": -1023}
    for name, buckets, max_position in [("v3", 256, 512), ("tiny", 32, 64)]:
        rel = modeling_deberta_v2.make_log_bucket_position(offsets, buckets, max_position).long()
        data["relative_columns"][name] = torch.clamp(rel + buckets, 0, 2 * buckets - 1).tolist()
    (out_dir / "golden.json").write_text(json.dumps(data))


def deberta_v2_p2c_absolute(root):
    """DeBERTa-v2's older layout: a position table added to the words, a separate `pos_query_proj`
    for the relative embeddings, p2c only (`pos_att_type` written as the string older configs
    have), offsets clamped at 48 without buckets, two token types; CLS pooling."""
    hf_dir, out_dir = root / "_hf_deberta_v2", root / "deberta-v2-p2c-absolute"
    tok = wordpiece_tokenizer()
    cfg = deberta_config(
        tok,
        hidden_size=30,
        num_attention_heads=3,
        intermediate_size=48,
        type_vocab_size=2,
        position_buckets=-1,
        max_relative_positions=48,
        pos_att_type=["p2c"],
        share_att_key=False,
        norm_rel_ebd="none",
        position_biased_input=True,
    )
    torch.manual_seed(0)
    model = DebertaV2Model(cfg).eval()
    widen(model, 22)
    model.save_pretrained(hf_dir)
    fast_tokenizer(tok, 512).save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 512, "cls")
    config = json.loads((out_dir / "config.json").read_text())
    config["pos_att_type"] = "p2c"
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    golden(
        out_dir,
        "cls",
        {
            "c2p_and_p2c": changed(pos_att_type=["p2c", "c2p"], share_att_key=True),
            "no_relative_attention": changed(relative_attention=False),
        },
    )


def deberta_v3_reranker_tiny(root):
    """DebertaV2ForSequenceClassification with one output, as mxbai-rerank-v1 ships: the
    `pooler.dense` (GELU) on the first token, then `classifier`."""
    tok = wordpiece_tokenizer()
    cfg = deberta_config(tok, num_labels=1)
    torch.manual_seed(0)
    model = DebertaV2ForSequenceClassification(cfg)
    widen(model, 23)
    save_classifier(model, tok, root / "deberta-v3-reranker-tiny", 512)


def deberta_v2_conv_projected(root):
    """deberta-v2-xlarge's extras: the convolution over the embeddings added after layer 0
    (`conv_kernel_size` 3, GELU) and embeddings narrower than the layers (`embedding_size` 24,
    projected by `embed_proj`), with both terms on separate projections; mean pooling."""
    hf_dir, out_dir = root / "_hf_deberta_conv", root / "deberta-v2-conv-projected"
    tok = wordpiece_tokenizer()
    cfg = deberta_config(
        tok,
        embedding_size=24,
        conv_kernel_size=3,
        conv_act="gelu",
        type_vocab_size=2,
        position_buckets=16,
        max_relative_positions=32,
        share_att_key=False,
        position_biased_input=True,
        num_hidden_layers=3,
    )
    torch.manual_seed(0)
    model = DebertaV2Model(cfg).eval()
    widen(model, 24)
    model.save_pretrained(hf_dir)
    fast_tokenizer(tok, 512).save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 512, "mean")
    golden(out_dir, "mean", {"no_convolution": changed(conv_kernel_size=0)})


BUILDERS = [deberta_v3_tiny, deberta_v2_p2c_absolute, deberta_v3_reranker_tiny, deberta_v2_conv_projected]


if __name__ == "__main__":
    run_builders(BUILDERS)
