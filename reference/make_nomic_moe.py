"""A tiny random nomic-embed-text-v2-moe: NomicBERT in the original config layout (plain GELU
feed-forward with biases, rotary positions) whose layers 1, 3, ... (`moe_every_n_layers: 2`,
layer l is a mixture of experts when l % n == 1) route each token to its top `moe_top_k` of
`num_experts` experts. Saved in the hub checkpoint's layout (megablocks' names):

- `encoder.layers.L.mlp.router.layer.weight` `[num_experts, n_embd]`, no bias;
- `encoder.layers.L.mlp.experts.mlp.w1` and `.w2`, each `[num_experts * n_inner, n_embd]` with the
  expert axis outer: expert e's up-projection is `x @ w1[e].T`, its down-projection `h @ w2[e]`
  (w2 as stored, not transposed);
- `encoder.layers.L.mlp.experts.bias` `[n_embd]`, added once after the experts' weighted sum.

The reference: NomicBERT's original modeling code (as `make_rotary_encoders.py` uses it) with the
expert layers' feed-forward replaced by nomic's own `MoEBlock` (`src/contrastors/layers/moe.py`
of github.com/nomic-ai/contrastors, the training code's torch implementation: softmax over the
router's logits, the top-k experts' outputs weighted by their probabilities, not renormalised,
then the shared bias), its experts without biases as megablocks' are. The packed layout above is
how the hub checkpoint stores the same parameters (its remote code and the ports of it in TEI,
vLLM and llama.cpp all read it so).

Run it in a venv outside the repository (torch, transformers 5, sentence-transformers, einops):

    python reference/make_nomic_moe.py reference/models ORIGINALS_DIR CONTRASTORS_SRC

ORIGINALS_DIR as for `make_rotary_encoders.py`; CONTRASTORS_SRC: contrastors' `src` directory.
"""

import importlib.util
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_encoders import cleanup, widen  # noqa: E402
from make_rotary_encoders import MAX_LEN, NOMIC_PROMPTS, golden, hidden, nomic_original  # noqa: E402
from make_rotary_families import texts as golden_texts  # noqa: E402

EXPERTS, TOP_K, EVERY = 4, 2, 2
# While `recording`: the smallest gap between a token's k-th and next expert's probability.
ROUTING = {"margin": 1.0, "recording": False}


def contrastors_moe():
    """`contrastors.layers.moe` from CONTRASTORS_SRC, with the flash-attn imports it makes (unused
    by its plain torch path) stubbed."""
    for name, attrs in {
        "flash_attn": {},
        "flash_attn.bert_padding": {"index_first_axis": None, "pad_input": None, "unpad_input": None},
        "flash_attn.ops": {},
        "flash_attn.ops.activations": {"swiglu": None},
        "flash_attn.ops.fused_dense": {"FusedDense": None},
    }.items():
        sys.modules[name] = types.SimpleNamespace(**attrs)
    layers = Path(sys.argv[3]) / "contrastors" / "layers"
    for name in ["activations", "mlp", "moe"]:
        spec = importlib.util.spec_from_file_location(f"contrastors.layers.{name}", layers / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"contrastors.layers.{name}"] = module
        spec.loader.exec_module(module)
    return sys.modules["contrastors.layers.moe"]


class ExpertLayer(torch.nn.Module):
    """nomic's `MoEBlock` as the block's `mlp` (it also returns the router logits), recording how
    close each token's routing came to a tie."""

    def __init__(self, config):
        super().__init__()
        moe = contrastors_moe()
        self.block = moe.MoEBlock(
            types.SimpleNamespace(
                num_experts=EXPERTS,
                top_k=TOP_K,
                hidden_size=config.n_embd,
                n_embd=config.n_embd,
                n_inner=config.n_inner,
                activation_function=config.activation_function,
                # megablocks' experts, as the hub checkpoint stores them, have no biases of
                # their own: only the shared one.
                mlp_fc1_bias=False,
                mlp_fc2_bias=False,
            )
        )

    def forward(self, x):
        out, logits = self.block(x)
        if ROUTING["recording"]:
            top = logits.softmax(-1).topk(TOP_K + 1, dim=-1).values
            ROUTING["margin"] = min(ROUTING["margin"], (top[:, TOP_K - 1] - top[:, TOP_K]).min().item())
        return out


def packed(state, layers):
    """The expert layers' parameters under the hub checkpoint's names."""
    out = {}
    for name, tensor in state.items():
        if ".mlp.block." not in name:
            out[name] = tensor
    for l in layers:
        p = f"encoder.layers.{l}.mlp"
        out[f"{p}.router.layer.weight"] = state[f"{p}.block.router.router.weight"]
        out[f"{p}.experts.mlp.w1"] = torch.cat([state[f"{p}.block.experts.{e}.fc1.weight"] for e in range(EXPERTS)])
        out[f"{p}.experts.mlp.w2"] = torch.cat(
            [state[f"{p}.block.experts.{e}.fc2.weight"].t() for e in range(EXPERTS)]
        )
        out[f"{p}.experts.bias"] = state[f"{p}.block.bias"]
    return {k: v.contiguous() for k, v in out.items()}


def with_experts(model, layers, seed):
    for l in layers:
        model.encoder.layers[l].mlp = ExpertLayer(model.config)
    widen(model, seed)
    return model.eval()


def nomic_moe_tiny(root):
    """nomic-embed-text-v2-moe's shape: 4 layers (1 and 3 of 4 experts, top 2), plain GELU with
    biases everywhere, whole-head rotary base 10000, one token type, 4 heads of 8; mean pooling,
    its search prefixes as prompts."""
    seed = 41
    cfg = dict(
        n_embd=32,
        n_layer=4,
        n_head=4,
        n_inner=48,
        n_positions=2048,
        activation_function="gelu",
        rotary_emb_fraction=1.0,
        rotary_emb_base=10000,
        max_trained_positions=2048,
        qkv_proj_bias=True,
        mlp_fc1_bias=True,
        mlp_fc2_bias=True,
        layer_norm_epsilon=1e-5,
        type_vocab_size=1,
        num_experts=EXPERTS,
        moe_top_k=TOP_K,
        moe_every_n_layers=EVERY,
        moe_normalize_expert_weights=False,
        moe_impl="megablocks",
        ffn_div=1,
        num_shared_experts=0,
        expert_choice_router=False,
        router_aux_loss_coef=0.1,
    )
    out_dir, model, fast, _ = nomic_original(root, "nomic-moe-tiny", seed, False, **cfg)
    layers = [l for l in range(cfg["n_layer"]) if l % EVERY == 1]
    model = with_experts(model, layers, seed)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    save_file(packed(state, layers), out_dir / "model.safetensors", metadata={"format": "pt"})
    assert set(load_file(out_dir / "model.safetensors")) >= {f"encoder.layers.{layers[0]}.mlp.experts.mlp.w2"}

    def variant(change):
        def run(m, ids):
            other = with_experts(type(m)(m.config), layers, seed)
            other.load_state_dict(m.state_dict())
            for l in layers:
                change(other.encoder.layers[l].mlp.block)
            return hidden(other, ids)

        return run

    def renormalised(block):
        forward = block.forward

        def run(x, attention_mask=None):
            # The top-k probabilities divided by their sum (Mixtral's routing, not nomic's).
            logits = block.router(x.reshape(-1, x.shape[-1]))
            weights, experts = logits.softmax(-1).topk(TOP_K, dim=-1)
            scale = weights.sum(-1, keepdim=True)
            out = torch.zeros_like(x.reshape(-1, x.shape[-1]))
            for i, expert in enumerate(block.experts):
                rows, nth = torch.where(experts == i)
                out[rows] += (weights[rows, nth] / scale[rows, 0]).unsqueeze(-1) * expert(x.reshape(-1, x.shape[-1])[rows])
            return (out + block.bias).reshape(x.shape), logits

        block.forward = run
        return forward

    def top1(block):
        block.top_k = 1

    def no_bias(block):
        with torch.no_grad():
            block.bias.zero_()

    def transposed_down(block):
        # Reading w2 as `[n_inner, n_embd]` rows per expert the other way round.
        with torch.no_grad():
            for expert in block.experts:
                w = expert.fc2.weight
                w.copy_(w.t().contiguous().reshape(w.shape))

    sensitivity = {
        "top_1_instead_of_top_2": variant(top1),
        "weights_renormalised": variant(renormalised),
        "shared_bias_left_out": variant(no_bias),
        "down_projection_misread": variant(transposed_down),
    }
    golden(out_dir, model, fast, "mean", sensitivity, prompts=NOMIC_PROMPTS)
    ROUTING["recording"] = True
    for text in golden_texts():
        hidden(model, torch.tensor([fast(text, truncation=True, max_length=MAX_LEN)["input_ids"]]))
    ROUTING["recording"] = False
    margin = ROUTING["margin"]
    print(f"nomic-moe-tiny: closest routing margin {margin:.2e}")
    assert margin > 1e-4, "a token's routing is within rounding of a tie: pick another seed"


def main():
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    nomic_moe_tiny(root)
    cleanup(root)


if __name__ == "__main__":
    main()
