"""Tiny random NomicBERT and GTE checkpoints in both layouts they exist in, saved as
sentence-transformers folders, with goldens from the reference code of each layout:

- the original layout (remote code): NomicBERT's own modeling code
  (`src/contrastors/models/huggingface/modeling_hf_nomic_bert.py` and its configuration, from
  github.com/nomic-ai/contrastors: the code the hub checkpoints run; `model_type: nomic_bert` with
  GPT-2 keys, `n_embd`...), and GTE's (`modeling.py` of the hub's Alibaba-NLP/new-impl,
  `model_type: new`, its padded eager path kept as `modeling_new.py`), imported from a directory
  outside this repository (never copied into it);
- the transformers-native layout (`model_type: nomic_bert` / `gte` with `hidden_size`,
  `rope_parameters`): transformers' own `NomicBertModel` / `GteModel`. transformers saves these
  with the original tensor names (its conversion table reversed), so both layouts share names.

Each original-layout checkpoint is also run through the native class with the equivalent native
config (the native classes read only their own keys: a config with `n_embd: 48` would load as the
768-wide default), and the two references must agree before either is trusted; the agreement is
recorded in the golden (`references_agree_max_abs_diff`).

Dynamic NTK scaling makes the references' vectors depend on the padded length of the batch and on
what the model ran before (both cache their frequencies); tessera scales each sequence by its own
length, which is what a text gets run alone through a fresh model. So every golden here is taken
text by text, the rotary state reset before each forward.

Run it in a venv outside the repository (torch, transformers 5, sentence-transformers, einops):

    python reference/make_rotary_encoders.py reference/models ORIGINALS_DIR [builder ...]

where ORIGINALS_DIR holds `modeling_hf_nomic_bert.py`, `configuration_hf_nomic_bert.py`,
`modeling_new.py` and `xlm-roberta-flash-implementation/` (jina-embeddings-v3's remote code: the
hub's jinaai/xlm-roberta-flash-implementation, mirrored on GitHub in aoncevay/jina-wrapper).
"""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    GteConfig,
    GteForSequenceClassification,
    GteModel,
    JinaEmbeddingsV3Config,
    JinaEmbeddingsV3Model,
    NomicBertConfig,
    NomicBertModel,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_encoders import cleanup, fast_tokenizer, unigram_tokenizer, widen, wordpiece_tokenizer  # noqa: E402
from make_rotary_families import PAIRS, classifier_golden, save_st, texts  # noqa: E402

NOMIC_PROMPTS = {"search_query": "search_query: ", "search_document": "search_document: "}
MAX_LEN = 512
ORIGINAL = {}


def original_package():
    """The original modeling modules, loaded as a package from outside the repository."""
    if "package" not in ORIGINAL:
        src = Path(sys.argv[2])
        pkg = Path("/tmp/tessera_originals/originals")
        pkg.mkdir(parents=True, exist_ok=True)
        # Each builder imports only its own family's code: absent files fail there, not here.
        for name in ["modeling_hf_nomic_bert.py", "configuration_hf_nomic_bert.py", "modeling_new.py"]:
            if (src / name).exists():
                shutil.copy(src / name, pkg / name)
        jina = pkg / "jina"
        jina.mkdir(exist_ok=True)
        for name in (src / "xlm-roberta-flash-implementation").glob("*.py"):
            shutil.copy(name, jina / name.name)
        (jina / "__init__.py").write_text("")
        (pkg / "__init__.py").write_text("")
        sys.path.insert(0, str(pkg.parent))
        ORIGINAL["package"] = True


def original_jina():
    """jina-embeddings-v3's remote code (`xlm-roberta-flash-implementation`), with the
    transformers-4 names it imports put back."""
    original_package()
    import transformers
    import transformers.models.xlm_roberta.modeling_xlm_roberta as xlmr
    from unittest import mock

    # transformers 4's module-level helper, a static method of the embeddings in 5.
    xlmr.create_position_ids_from_input_ids = xlmr.XLMRobertaEmbeddings.create_position_ids_from_input_ids
    mod = importlib.import_module("originals.jina.modeling_lora")
    # Its model loads the tokenizer of `name_or_path` while being built; there is none here.
    ORIGINAL["jina_no_tokenizer"] = mock.patch.object(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: None)
    return mod


def original_gte():
    original_package()
    return importlib.import_module("originals.modeling_new")


def original_nomic():
    """NomicBERT's original modeling module."""
    if "nomic" not in ORIGINAL:
        original_package()
        mod = importlib.import_module("originals.modeling_hf_nomic_bert")
        # transformers 4's helper, gone from 5: the additive [batch, 1, 1, seq] padding mask.
        mod.NomicBertModel.get_extended_attention_mask = lambda self, mask, shape: (
            (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        )
        ORIGINAL["nomic"] = mod
    return ORIGINAL["nomic"]


def reset_rotary(model, _args=None, _kwargs=None):
    """Back to the frequencies a fresh model starts with (both references cache scaled ones)."""
    for m in model.modules():
        if hasattr(m, "original_inv_freq"):  # transformers' dynamic RoPE
            m.inv_freq = m.original_inv_freq.clone()
            m.max_seq_len_cached = m.original_max_seq_len
        if hasattr(m, "_seq_len_cached"):  # NomicBERT's original rotary
            m._seq_len_cached = 0
            m._cos_cached = m._sin_cached = None
            m.inv_freq = m._compute_inv_freq(device=m.inv_freq.device)


@torch.no_grad()
def hidden(model, ids):
    reset_rotary(model)
    return model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


def pooled(h, pooling):
    return {"cls": h[:, 0], "mean": h.mean(1)}[pooling]


@torch.no_grad()
def golden(out_dir, model, tok, pooling, sensitivity, prompts=None, agree=None):
    """make_encoders.py's golden keys, each text run alone through `model`."""
    ts = texts()
    enc = [tok(t, truncation=True, max_length=MAX_LEN)["input_ids"] for t in ts]

    def embed(ids, fn=hidden):
        h = fn(model, torch.tensor([ids]))
        return h[0], torch.nn.functional.normalize(pooled(h, pooling), dim=-1)[0]

    outputs = [embed(ids) for ids in enc]
    sensitivity_out = {}
    for what, fn in sensitivity.items():
        worst = max((embed(ids, fn)[1] - want).abs().max().item() for ids, (_, want) in zip(enc, outputs))
        sensitivity_out[what] = round(worst, 4)
    data = {
        "texts": ts,
        "token_ids": enc,
        "token_counts": [len(ids) for ids in enc],
        "embeddings": [n.tolist() for _, n in outputs],
        "embeddings_mean_unnormalized": [h.mean(0).tolist() for h, _ in outputs],
        "embeddings_cls": [h[0].tolist() for h, _ in outputs],
        "pad_token_id": tok.pad_token_id,
        "sensitivity_of_normalized_embeddings_to_bugs": sensitivity_out,
    }
    if agree is not None:
        data["references_agree_max_abs_diff"] = agree
    for name, prompt in (prompts or {}).items():
        data.setdefault("prompted", {})[name] = {
            "prompt": prompt,
            "embeddings": [
                embed(tok(prompt + t, truncation=True, max_length=MAX_LEN)["input_ids"])[1].tolist() for t in ts[:12]
            ],
        }
    (out_dir / "golden.json").write_text(json.dumps(data))


def rebuilt(model, **changes):
    """The same weights in a model whose config differs by `changes`."""
    cfg = type(model.config).from_dict({**model.config.to_dict(), **changes})
    other = type(model)(cfg).eval()
    other.load_state_dict(model.state_dict())
    return other


def with_config(**changes):
    return lambda model, ids: hidden(rebuilt(model, **changes), ids)


def swapped_gate(up, gate):
    """The feed-forward's two halves exchanged: which one is activated matters."""

    def run(model, ids):
        other = rebuilt(model)
        with torch.no_grad():
            for layer in other.modules():
                if hasattr(layer, up) and hasattr(layer, gate):
                    a, b = getattr(layer, up).weight, getattr(layer, gate).weight
                    tmp = a.clone()
                    a.copy_(b)
                    b.copy_(tmp)
        return hidden(other, ids)

    return run


def max_diff(a, b, tok):
    worst = 0.0
    for t in texts():
        ids = torch.tensor([tok(t, truncation=True, max_length=MAX_LEN)["input_ids"]])
        worst = max(worst, (hidden(a, ids) - hidden(b, ids)).abs().max().item())
    return worst


def nomic_original(root, name, seed, native_equivalent, **cfg):
    """A NomicBERT built and saved by the original code; `native_equivalent` also through
    transformers' class (whole-head rotation only: the native class has no rotary fraction)."""
    mod = original_nomic()
    out_dir, hf_dir, native_dir = root / name, root / f"_hf_{name}", root / f"_hf_{name}_native"
    tok = wordpiece_tokenizer()
    fast = fast_tokenizer(tok, MAX_LEN)
    # Dropouts 0 as the hub configs set them: the original passes `attn_pdrop` to SDPA even in
    # eval mode, so GPT-2's default 0.1 would drop attention at inference.
    config = mod.NomicBertConfig(
        vocab_size=tok.get_vocab_size(), pad_token_id=0, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, **cfg
    )
    torch.manual_seed(seed)
    model = mod.NomicBertModel(config).eval()
    widen(model, seed)
    model.save_pretrained(hf_dir)
    native_cfg = NomicBertConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.n_embd,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        # The gated feed-forward rounds `n_inner` up to a multiple of 256.
        intermediate_size=model.encoder.layers[0].mlp.fc2.in_features,
        hidden_act={"swiglu": "silu"}.get(config.activation_function, "gelu"),
        layer_norm_eps=config.layer_norm_epsilon,
        type_vocab_size=config.type_vocab_size,
        max_position_embeddings=config.max_trained_positions,
        rope_parameters=(
            {"rope_type": "dynamic", "factor": config.rotary_scaling_factor, "rope_theta": config.rotary_emb_base}
            if config.rotary_scaling_factor
            else {"rope_type": "default", "rope_theta": config.rotary_emb_base}
        ),
    )
    agree = None
    if native_equivalent:
        native = NomicBertModel.from_pretrained(hf_dir, config=native_cfg).eval()
        agree = max_diff(model, native, fast)
        assert agree < 1e-4, f"{name}: the original and native references disagree by {agree}"
    else:
        native = NomicBertModel(native_cfg).eval()
    native.save_pretrained(native_dir)
    fast.save_pretrained(native_dir)
    save_st(native_dir, out_dir, MAX_LEN, "mean", prompts=NOMIC_PROMPTS)
    for file in ["model.safetensors", "config.json"]:
        (out_dir / file).write_bytes((hf_dir / file).read_bytes())
    return out_dir, model, fast, agree


def nomic_tiny(root):
    """nomic-embed-text's shape in the original layout: SwiGLU `fc11`/`fc12`/`fc2` (`n_inner: 40`,
    which the code rounds up to 256), fused `Wqkv`, no biases, whole-head rotary with base 1000, dynamic NTK (factor 2) beyond 128 trained
    positions, 3 heads of 16; mean pooling, its search prefixes as prompts. Agrees with
    transformers' `NomicBertModel` on the same weights."""
    out_dir, model, fast, agree = nomic_original(
        root,
        "nomic-tiny",
        31,
        True,
        n_embd=48,
        n_layer=3,
        n_head=3,
        n_inner=40,
        n_positions=2048,
        activation_function="swiglu",
        rotary_emb_fraction=1.0,
        rotary_emb_base=1000,
        rotary_scaling_factor=2.0,
        max_trained_positions=128,
        qkv_proj_bias=False,
        mlp_fc1_bias=False,
        mlp_fc2_bias=False,
        layer_norm_epsilon=1e-12,
        type_vocab_size=2,
    )
    sensitivity = {
        "dynamic_ntk_ignored": with_config(rotary_scaling_factor=None),
        "rotary_base_10000": with_config(rotary_emb_base=10000),
        "gate_halves_swapped": swapped_gate("fc11", "fc12"),
    }
    golden(out_dir, model, fast, "mean", sensitivity, prompts=NOMIC_PROMPTS, agree=agree)


def nomic_partial_biased(root):
    """The original layout's other options: half of each 20-wide head rotated
    (`rotary_emb_fraction: 0.5`), every bias (`qkv_proj_bias`, `mlp_fc1_bias`, `mlp_fc2_bias`),
    GeGLU, one token type, no scaling (texts beyond the trained length stay plain)."""
    out_dir, model, fast, _ = nomic_original(
        root,
        "nomic-partial-biased",
        32,
        False,
        n_embd=40,
        n_layer=2,
        n_head=2,
        n_inner=56,
        n_positions=2048,
        activation_function="geglu",
        rotary_emb_fraction=0.5,
        rotary_emb_base=10000,
        max_trained_positions=128,
        qkv_proj_bias=True,
        mlp_fc1_bias=True,
        mlp_fc2_bias=True,
        layer_norm_epsilon=1e-5,
        type_vocab_size=1,
    )
    sensitivity = {
        "whole_heads_rotated": with_config(rotary_emb_fraction=1.0),
        "gate_halves_swapped": swapped_gate("fc11", "fc12"),
    }
    golden(out_dir, model, fast, "mean", sensitivity)


def nomic_plain_absolute(root):
    """The original layout's plain feed-forward (`activation_function: gelu_new`: `mlp.fc1`,
    `mlp.fc2`, the exact GELU whatever GELU is named) and absolute positions
    (`rotary_emb_fraction: 0`: a learned table of `n_positions` rows), 4 heads of 8."""
    out_dir, model, fast, _ = nomic_original(
        root,
        "nomic-plain-absolute",
        34,
        False,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=48,
        n_positions=MAX_LEN,
        activation_function="gelu_new",
        rotary_emb_fraction=0.0,
        max_trained_positions=128,
        qkv_proj_bias=True,
        mlp_fc1_bias=True,
        mlp_fc2_bias=True,
        layer_norm_epsilon=1e-12,
        type_vocab_size=2,
    )
    sensitivity = {"position_table_ignored": without_positions}
    golden(out_dir, model, fast, "mean", sensitivity)


def without_positions(model, ids):
    other = rebuilt(model)
    with torch.no_grad():
        other.embeddings.position_embeddings.weight.zero_()
    return hidden(other, ids)


def nomic_native(root):
    """transformers' `NomicBertModel` with its own config keys (`hidden_size`, `rope_parameters`
    with dynamic scaling from `max_position_embeddings: 100`), 2 heads of 20, saved as transformers
    saves it (original tensor names)."""
    out_dir, hf_dir = root / "nomic-native", root / "_hf_nomic_native"
    tok = wordpiece_tokenizer()
    fast = fast_tokenizer(tok, MAX_LEN)
    cfg = NomicBertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=40,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=36,
        max_position_embeddings=100,
        rope_parameters={"rope_type": "dynamic", "factor": 3.0, "rope_theta": 1000.0},
    )
    torch.manual_seed(33)
    model = NomicBertModel(cfg).eval()
    widen(model, 33)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, MAX_LEN, "mean", prompts=NOMIC_PROMPTS)
    plain = {"rope_type": "default", "rope_theta": 1000.0}
    sensitivity = {
        "dynamic_ntk_ignored": with_config(rope_parameters=plain),
        "gate_halves_swapped": swapped_gate("up_proj", "gate_proj"),
    }
    golden(out_dir, model, fast, "mean", sensitivity, prompts=NOMIC_PROMPTS)


def swapped_halves(name):
    """The two halves of one up-and-gate projection exchanged."""

    def run(model, ids):
        other = rebuilt(model)
        with torch.no_grad():
            for module in other.modules():
                if hasattr(module, name):
                    w = getattr(module, name).weight
                    half = w.shape[0] // 2
                    w.copy_(torch.cat([w[half:], w[:half]]))
        return hidden(other, ids)

    return run


def gte_original(root, name, seed, native_check, **cfg):
    """A GTE built by the remote code; `native_check`: transformers' `GteModel` on the same
    weights must agree once the scaling it lacks (fixed NTK) is taken off both."""
    mod = original_gte()
    out_dir, hf_dir, native_dir = root / name, root / f"_hf_{name}", root / f"_hf_{name}_native"
    tok = wordpiece_tokenizer()
    fast = fast_tokenizer(tok, MAX_LEN)
    hub_scaling = json.loads(json.dumps(cfg.get("rope_scaling")))  # transformers 5 adds keys to it
    config = mod.NewConfig(vocab_size=tok.get_vocab_size(), pad_token_id=0, hidden_dropout_prob=0.0, **cfg)
    torch.manual_seed(seed)
    model = mod.NewModel(config).eval()
    widen(model, seed)
    model.save_pretrained(hf_dir)
    # As the hub's checkpoints have it (transformers 4): `rope_theta` and `rope_scaling`, where
    # transformers 5 would write `rope_parameters`.
    saved = json.loads((hf_dir / "config.json").read_text())
    saved.pop("rope_parameters", None)
    saved["rope_scaling"] = hub_scaling
    saved["rope_theta"] = config.rope_theta
    (hf_dir / "config.json").write_text(json.dumps(saved, indent=2))
    native_cfg = GteConfig(
        vocab_size=config.vocab_size,
        pad_token_id=0,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps,
        type_vocab_size=config.type_vocab_size,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
    )
    agree = None
    if native_check:
        native = GteModel.from_pretrained(hf_dir, config=native_cfg).eval()
        agree = max_diff(rebuilt(model, **unscaled(model)), native, fast)
        assert agree < 1e-4, f"{name}: the original and native references disagree by {agree}"
    else:
        native = GteModel(native_cfg).eval()
    native.save_pretrained(native_dir)
    fast.save_pretrained(native_dir)
    save_st(native_dir, out_dir, MAX_LEN, "cls")
    for file in ["model.safetensors", "config.json"]:
        (out_dir / file).write_bytes((hf_dir / file).read_bytes())
    return out_dir, model, fast, agree


def unscaled(model):
    """Config changes that take GTE's NTK scaling off (transformers 5 keeps it in
    `rope_parameters` unless that is replaced too)."""
    return dict(rope_scaling=None, rope_parameters={"rope_type": "default", "rope_theta": model.config.rope_theta})


def gte_original_ntk(root):
    """gte-base-en-v1.5's shape in the remote code's layout: `model_type: new`, fixed NTK scaling
    (`rope_scaling: {type: ntk, factor: 2}`, on at every length), base 5e5, no token types, its
    runtime switches present; 4 heads of 12; CLS pooling. Agrees with `GteModel` without the NTK."""
    out_dir, model, fast, agree = gte_original(
        root,
        "gte-original-ntk",
        43,
        True,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=40,
        hidden_act="gelu",
        max_position_embeddings=MAX_LEN,
        type_vocab_size=0,
        rope_theta=500000.0,
        rope_scaling={"type": "ntk", "factor": 2.0},
        unpad_inputs=False,
        use_memory_efficient_attention=False,
    )
    sensitivity = {
        "ntk_ignored": lambda model, ids: hidden(rebuilt(model, **unscaled(model)), ids),
        "gate_halves_swapped": swapped_halves("up_gate_proj"),
    }
    golden(out_dir, model, fast, "cls", sensitivity, agree=agree)


def gte_original_mixed_separate(root):
    """The remote code's other options: mixed NTK (`mixed_b: 1.5`, factor 3), separate q/k/v
    projections (`pack_qkv: false`), one token type, SiLU, 2 heads of 20, the default base."""
    out_dir, model, fast, _ = gte_original(
        root,
        "gte-original-mixed-separate",
        44,
        False,
        hidden_size=40,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=52,
        hidden_act="silu",
        max_position_embeddings=MAX_LEN,
        type_vocab_size=1,
        pack_qkv=False,
        rope_scaling={"type": "ntk", "factor": 3.0, "mixed_b": 1.5},
    )
    sensitivity = {
        "mixed_b_ignored": lambda model, ids: hidden(
            rebuilt(model, rope_scaling=None, rope_parameters={"rope_type": "ntk", "factor": 3.0, "rope_theta": 10000.0}),
            ids,
        ),
        "gate_halves_swapped": swapped_halves("up_gate_proj"),
    }
    golden(out_dir, model, fast, "cls", sensitivity)


def gte_native(root, name, seed, **extra):
    out_dir, hf_dir = root / name, root / f"_hf_{name}"
    tok = wordpiece_tokenizer()
    fast = fast_tokenizer(tok, MAX_LEN)
    cfg = GteConfig(
        vocab_size=tok.get_vocab_size(),
        pad_token_id=0,
        num_hidden_layers=2,
        num_attention_heads=3,
        max_position_embeddings=MAX_LEN,
        **extra,
    )
    torch.manual_seed(seed)
    model = GteModel(cfg).eval()
    widen(model, seed)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, MAX_LEN, "cls")
    theta = model.config.rope_parameters["rope_theta"]
    sensitivity = {
        "rotary_base_10000": with_config(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "gate_halves_swapped": swapped_gate("up_proj", "gate_proj"),
    }
    assert theta != 10000.0
    golden(out_dir, model, fast, "cls", sensitivity)


def gte_native_tiny(root):
    """transformers' `GteModel` (gte-multilingual-base's shape): biased attention, GeGLU with a
    biased down-projection, one token type, the class's default base (160000, absent from the
    config); CLS pooling."""
    gte_native(root, "gte-native-tiny", 41, hidden_size=48, intermediate_size=40, hidden_act="gelu")


def gte_native_no_token_types(root):
    """gte-base-en-v1.5's shape: `type_vocab_size: 0` (no token-type table), SiLU, base 5e5."""
    gte_native(
        root,
        "gte-native-no-token-types",
        42,
        hidden_size=36,
        intermediate_size=44,
        hidden_act="silu",
        type_vocab_size=0,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    )


def gte_reranker_tiny(root):
    """transformers' `GteForSequenceClassification` with one output (gte-multilingual-reranker-
    base's head: the pooler, tanh of a dense layer on the first token, then `classifier`), saved as
    transformers saves it (`gte.` prefix); biased attention, GeGLU, one token type, the default
    base; the classifier golden schema."""
    out_dir = root / "gte-reranker-tiny"
    # XLM-R's tokenizer, as the multilingual GTE models ship: one segment id for both texts.
    tok = unigram_tokenizer()
    fast = fast_tokenizer(tok, MAX_LEN)
    cfg = GteConfig(
        vocab_size=tok.get_vocab_size(),
        pad_token_id=1,
        num_hidden_layers=2,
        num_attention_heads=3,
        max_position_embeddings=MAX_LEN,
        hidden_size=48,
        intermediate_size=40,
        hidden_act="gelu",
        num_labels=1,
    )
    torch.manual_seed(43)
    model = GteForSequenceClassification(cfg).eval()
    widen(model, 43)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    classifier_golden(out_dir, model, fast)


JINA_INSTRUCTIONS = {
    "retrieval.query": "Represent the query for retrieving evidence documents: ",
    "retrieval.passage": "Represent the document for retrieval: ",
    "separation": "",
    "classification": "",
    "text-matching": "",
}


@torch.no_grad()
def jina_embed(model, tok, text, task=None):
    """XLMRobertaLoRA.encode for one text: the task's instruction prepended and its adapter on
    (`adapter_mask`); no task: neither. Mean pooling, normalized; and the hidden states."""
    tasks = list(JINA_INSTRUCTIONS)
    ids = torch.tensor([tok((JINA_INSTRUCTIONS[task] if task else "") + text, truncation=True, max_length=MAX_LEN)["input_ids"]])
    extra = {"adapter_mask": torch.tensor([tasks.index(task)], dtype=torch.int32)} if task else {}
    h = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra)[0]
    return h[0], torch.nn.functional.normalize(h.mean(1), dim=-1)[0], ids[0].tolist()


def jina_body(tok):
    """The sizes both jina fixtures share: an XLM-R body of 2 layers, 3 heads of 16."""
    return dict(
        vocab_size=tok.get_vocab_size(),
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=64,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )


def save_remote_checkpoint(hf_dir, out_dir, fast):
    """The remote code's weights and config as saved, with the fast tokenizer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in ["model.safetensors", "config.json"]:
        (out_dir / file).write_bytes((hf_dir / file).read_bytes())
    fast.save_pretrained(out_dir)


def jina_v3_tiny(root):
    """jina-embeddings-v3's shape in its remote code: `XLMRobertaLoRA` (`roberta.` prefix, every
    linear and embedding weight parametrized as `parametrizations.weight.original` with
    `lora_A`/`lora_B` for five tasks of rank 4, alpha 1), rotary positions with base 20000 (no
    position table), post-norm `mixer.Wqkv`/`mixer.out_proj`/`mlp.fc1`/`mlp.fc2`, `emb_ln`;
    3 heads of 16; mean pooling; the tasks' instructions as prompts. Goldens without a task
    (adapters off) and with each task (its instruction and adapter); transformers'
    `JinaEmbeddingsV3Model` agrees with the remote code on the base weights."""
    mod = original_jina()
    out_dir, hf_dir, native_dir = root / "jina-v3-tiny", root / "_hf_jina_v3", root / "_hf_jina_v3_native"
    tok = unigram_tokenizer()
    fast = fast_tokenizer(tok, MAX_LEN)
    common = jina_body(tok)
    with ORIGINAL["jina_no_tokenizer"]:
        config = mod.XLMRobertaFlashConfig(
            max_position_embeddings=8194,
            position_embedding_type="rotary",
            rotary_emb_base=20000.0,
            lora_adaptations=list(JINA_INSTRUCTIONS),
            task_instructions=JINA_INSTRUCTIONS,
            lora_rank=4,
            lora_alpha=1,
            use_flash_attn=False,
            load_trained_adapters=True,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            matryoshka_dimensions=[8, 16, 32, 48],
            **common,
        )
        torch.manual_seed(51)
        model = mod.XLMRobertaLoRA(config).eval()
    widen(model, 51)
    model.save_pretrained(hf_dir)
    # The base weights alone, named as a plain checkpoint, through transformers' native class.
    base = {
        k.removeprefix("roberta.").replace(".parametrizations.weight.original", ".weight"): v
        for k, v in load_file(hf_dir / "model.safetensors").items()
        if "lora_" not in k
    }
    native_dir.mkdir(parents=True, exist_ok=True)
    save_file(base, native_dir / "model.safetensors")
    native_cfg = JinaEmbeddingsV3Config(
        max_position_embeddings=8194,
        rope_parameters={"rope_type": "default", "rope_theta": 20000.0},
        hidden_act="gelu",
        **common,
    )
    native_cfg.save_pretrained(native_dir)
    native = JinaEmbeddingsV3Model.from_pretrained(native_dir, config=native_cfg).eval()
    agree = 0.0
    for t in texts():
        ids = torch.tensor([fast(t, truncation=True, max_length=MAX_LEN)["input_ids"]])
        with torch.no_grad():
            a = model(input_ids=ids, attention_mask=torch.ones_like(ids))[0]
            b = native(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        agree = max(agree, (a - b).abs().max().item())
    assert agree < 1e-4, f"jina-v3: the remote code and transformers' class disagree by {agree}"

    # The folder as the hub's: custom Transformer module, mean pooling, Normalize, prompts.
    save_remote_checkpoint(hf_dir, out_dir, fast)
    (out_dir / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "transformer", "path": "", "type": "custom_st.Transformer", "kwargs": ["task"]},
        {"idx": 1, "name": "pooler", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "normalizer", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2))
    (out_dir / "1_Pooling").mkdir(exist_ok=True)
    (out_dir / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 48, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    (out_dir / "2_Normalize").mkdir(exist_ok=True)
    (out_dir / "config_sentence_transformers.json").write_text(json.dumps({"prompts": JINA_INSTRUCTIONS, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))

    ts = texts()
    base_out = [jina_embed(model, fast, t) for t in ts]
    data = {
        "texts": ts,
        "token_ids": [ids for _, _, ids in base_out],
        "token_counts": [len(ids) for _, _, ids in base_out],
        "embeddings": [n.tolist() for _, n, _ in base_out],
        "embeddings_mean_unnormalized": [h.mean(0).tolist() for h, _, _ in base_out],
        "embeddings_cls": [h[0].tolist() for h, _, _ in base_out],
        "pad_token_id": 1,
        "references_agree_max_abs_diff": agree,
        "tasks": {},
    }
    worst_off, worst_other = 0.0, 0.0
    for i, task in enumerate(JINA_INSTRUCTIONS):
        vectors = [jina_embed(model, fast, t, task)[1] for t in ts[:12]]
        data["tasks"][task] = {"prompt": JINA_INSTRUCTIONS[task], "embeddings": [v.tolist() for v in vectors]}
        other = list(JINA_INSTRUCTIONS)[(i + 1) % len(JINA_INSTRUCTIONS)]
        for t, want in zip(ts[:12], vectors):
            ids = torch.tensor([fast(JINA_INSTRUCTIONS[task] + t, truncation=True, max_length=MAX_LEN)["input_ids"]])
            with torch.no_grad():
                off = model(input_ids=ids, attention_mask=torch.ones_like(ids))[0]
                wrong = model(input_ids=ids, attention_mask=torch.ones_like(ids), adapter_mask=torch.tensor([list(JINA_INSTRUCTIONS).index(other)], dtype=torch.int32))[0]
            norm = lambda h: torch.nn.functional.normalize(h.mean(1), dim=-1)[0]
            worst_off = max(worst_off, (norm(off) - want).abs().max().item())
            worst_other = max(worst_other, (norm(wrong) - want).abs().max().item())
    data["sensitivity_of_normalized_embeddings_to_bugs"] = {
        "adapter_off": round(worst_off, 4),
        "another_tasks_adapter": round(worst_other, 4),
    }
    (out_dir / "golden.json").write_text(json.dumps(data))


def jina_v3_native(root):
    """transformers' `JinaEmbeddingsV3Model` with its own config keys (`rope_parameters`, base
    20000), saved as transformers saves it (the remote code's tensor names, no adapters);
    4 heads of 10, tanh GELU; mean pooling."""
    out_dir, hf_dir = root / "jina-v3-native", root / "_hf_jina_v3_native_only"
    tok = unigram_tokenizer()
    fast = fast_tokenizer(tok, MAX_LEN)
    cfg = JinaEmbeddingsV3Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=56,
        hidden_act="gelu_pytorch_tanh",
        type_vocab_size=1,
        pad_token_id=1,
        max_position_embeddings=8194,
        rope_parameters={"rope_type": "default", "rope_theta": 20000.0},
    )
    torch.manual_seed(52)
    model = JinaEmbeddingsV3Model(cfg).eval()
    widen(model, 52)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, MAX_LEN, "mean")
    sensitivity = {"rotary_base_10000": with_config(rope_parameters={"rope_type": "default", "rope_theta": 10000.0})}
    golden(out_dir, model, fast, "mean", sensitivity)


def flash_to_transformers(state):
    """The remote code's tensor names back to transformers' XLM-RoBERTa ones (the inverse of its
    `convert_roberta_weights_to_flash.py`): `Wqkv` split in three, `layers` to `layer`..."""
    names = {
        "mixer.out_proj": "attention.output.dense",
        "norm1": "attention.output.LayerNorm",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
        "norm2": "output.LayerNorm",
    }
    out = {}
    for k, v in state.items():
        k = k.replace("roberta.emb_ln.", "roberta.embeddings.LayerNorm.").replace("encoder.layers.", "encoder.layer.")
        if ".mixer.Wqkv." in k:
            for part, name in zip(v.chunk(3, dim=0), ["query", "key", "value"]):
                out[k.replace("mixer.Wqkv", f"attention.self.{name}")] = part
            continue
        for flash, hf in names.items():
            k = k.replace(f".{flash}.", f".{hf}.")
        out[k] = v
    return out


def jina_reranker_v2_tiny(root):
    """jina-reranker-v2-base-multilingual's shape in its remote code (`xlm-roberta-flash-
    implementation`'s `XLMRobertaForSequenceClassification`, `roberta.` prefix): the fused
    `mixer.Wqkv` layout with a position table (`position_embedding_type: absolute`, rows counted
    after `pad_token_id` as XLM-RoBERTa counts them), one token type, `emb_ln`, and RoBERTa's
    classification head (`classifier.dense`, tanh, `classifier.out_proj`) with one output;
    3 heads of 16. transformers' `XLMRobertaForSequenceClassification`, given the same weights
    under its names, must agree with the remote code."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    original_jina()
    mod = importlib.import_module("originals.jina.modeling_xlm_roberta")
    cfg_mod = importlib.import_module("originals.jina.configuration_xlm_roberta")
    out_dir, hf_dir = root / "jina-reranker-v2-tiny", root / "_hf_jina_reranker_v2"
    tok = unigram_tokenizer()
    fast = fast_tokenizer(tok, MAX_LEN)
    common = dict(
        jina_body(tok),
        max_position_embeddings=MAX_LEN + 2,
        hidden_act="gelu",
        num_labels=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with ORIGINAL["jina_no_tokenizer"]:
        config = cfg_mod.XLMRobertaFlashConfig(position_embedding_type="absolute", use_flash_attn=False, **common)
        torch.manual_seed(53)
        model = mod.XLMRobertaForSequenceClassification(config).eval()
    widen(model, 53)
    model.save_pretrained(hf_dir)
    reference = XLMRobertaForSequenceClassification(XLMRobertaConfig(**common)).eval()
    missing, unexpected = reference.load_state_dict(flash_to_transformers(model.state_dict()), strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    agree = 0.0
    for q, p in PAIRS:
        enc = fast(q, p, truncation=True, max_length=MAX_LEN, return_tensors="pt")
        with torch.no_grad():
            a = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            b = reference(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        agree = max(agree, (a - b).abs().max().item())
    assert agree < 1e-4, f"jina-reranker-v2: the remote code and transformers' class disagree by {agree}"
    save_remote_checkpoint(hf_dir, out_dir, fast)
    classifier_golden(out_dir, model, fast)
    golden = json.loads((out_dir / "golden.json").read_text())
    golden["references_agree_max_abs_diff"] = agree
    (out_dir / "golden.json").write_text(json.dumps(golden))


BUILDERS = [
    nomic_tiny,
    nomic_partial_biased,
    nomic_plain_absolute,
    nomic_native,
    gte_original_ntk,
    gte_original_mixed_separate,
    gte_native_tiny,
    gte_native_no_token_types,
    gte_reranker_tiny,
    jina_v3_tiny,
    jina_v3_native,
    jina_reranker_v2_tiny,
]


def main():
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    only = sys.argv[3:]
    for build in BUILDERS:
        if not only or build.__name__ in only:
            build(root)
    cleanup(root)


if __name__ == "__main__":
    main()
