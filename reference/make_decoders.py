"""Tiny random Qwen2, Mistral, Llama and EuroBERT embedders, saved as sentence-transformers
folders, with goldens from transformers' own model classes (`Qwen2Model`, `Qwen2ForCausalLM`,
`MistralModel`, `LlamaForCausalLM`, `EuroBertModel`) through sentence-transformers.

Run it in a venv outside the repository (torch, transformers, sentence-transformers, tokenizers):

    python reference/make_decoders.py reference/models [builder ...]

Shares the texts (up to ~890 tokens), tokenizers and goldens of `make_rotary_families.py`.
transformers' decoder classes attend causally unless `config.is_causal` is false, when they build
a bidirectional padding mask instead (`masking_utils.create_causal_mask`); the bidirectional model
(`is_causal: false`, as gte-Qwen2 is meant to attend) is golden through that.
"""

import json
import sys
from pathlib import Path

import torch
from tokenizers import processors
from sentence_transformers import SentenceTransformer, models
from transformers import (
    EuroBertConfig,
    EuroBertForMaskedLM,
    Gemma2Config,
    Gemma2Model,
    Gemma3TextConfig,
    Gemma3TextModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    MistralConfig,
    MistralModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Model,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_encoders import cleanup, widen  # noqa: E402
from make_rotary_families import QWEN3_PROMPTS, byte_bpe, golden, qwen3_tokenizer, rebuilt, save_st  # noqa: E402


def drawn_and_saved(model_class, cfg, seeds, fast, hf_dir, out_dir, pooling, **st):
    """`model_class(cfg)` drawn after `torch.manual_seed(seeds[0])` and widened with `seeds[1]`,
    saved with the tokenizer, then as a sentence-transformers folder (`save_st`'s `st` options)."""
    torch.manual_seed(seeds[0])
    model = model_class(cfg).eval()
    widen(model, seeds[1])
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 1024, pooling, **st)
    return model


def attending(causal):
    """The model on `ids` with `is_causal` set to `causal` for the call: transformers' decoder
    classes build a bidirectional padding mask when `config.is_causal` is false."""

    def run(model, ids):
        saved = getattr(model.config, "is_causal", True)
        model.config.is_causal = causal
        try:
            return model(input_ids=ids).last_hidden_state
        finally:
            model.config.is_causal = saved

    return run


def zeroed(name):
    """The same model with every parameter ending in `name` zeroed: how far leaving it out moves."""

    def run(model, ids):
        other = rebuilt(model)
        with torch.no_grad():
            for key, p in other.named_parameters():
                if key.endswith(name):
                    p.zero_()
        return other(input_ids=ids).last_hidden_state

    return run


def llama_tokenizer():
    """Llama/Mistral embedders' shape: byte-level BPE between `<s>` and `</s>` (e5-mistral's
    sentence-transformers tokenizer appends the `</s>` its last-token pooling reads), padded right."""
    specials = ["<unk>", "<s>", "</s>"]

    def template(tok):
        ids = [(s, tok.token_to_id(s)) for s in ["<s>", "</s>"]]
        return processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1", special_tokens=ids)

    tok = byte_bpe(specials, template)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>",
        model_max_length=4096,
    )
    return tok, fast


def qwen2_config(tok, **extra):
    eos = tok.token_to_id("<|endoftext|>")
    return Qwen2Config(
        vocab_size=tok.get_vocab_size(),
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        attn_implementation="sdpa",
        **extra,
    )


def qwen2_tiny(root):
    """`Qwen2Model` saved bare (as Qwen2-based embedders ship): 4 query heads on 2 key/value heads
    of 12, Q/K/V biases and none on the output, causal, last-token pooling, the query prompt."""
    out_dir, hf_dir = root / "qwen2-tiny", root / "_hf_qwen2"
    tok, fast = qwen3_tokenizer()
    cfg = qwen2_config(
        tok,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    drawn_and_saved(Qwen2Model, cfg, (5, 25), fast, hf_dir, out_dir, "lasttoken", prompts=QWEN3_PROMPTS)
    golden(
        out_dir,
        "lasttoken",
        {
            "bidirectional_instead_of_causal": attending(causal=False),
            "qkv_biases_left_out": zeroed("_proj.bias"),
        },
        prompt_names=["query"],
    )


def qwen2_bidirectional_lm(root):
    """`Qwen2ForCausalLM` as saved (`model.` prefix, `lm_head`) with `is_causal: false`, as
    gte-Qwen2 is meant to attend: 3 query heads on one key/value head, `head_dim` 16 with
    `hidden_size` 40, last-token pooling."""
    out_dir, hf_dir = root / "qwen2-bidirectional-lm", root / "_hf_qwen2_lm"
    tok, fast = qwen3_tokenizer()
    cfg = qwen2_config(
        tok,
        hidden_size=40,
        intermediate_size=56,
        num_hidden_layers=2,
        num_attention_heads=3,
        num_key_value_heads=1,
        head_dim=16,
        tie_word_embeddings=False,
        is_causal=False,
    )
    drawn_and_saved(
        Qwen2ForCausalLM, cfg, (6, 26), fast, hf_dir, out_dir, "lasttoken", prompts=QWEN3_PROMPTS, keep_checkpoint=True
    )
    golden(out_dir, "lasttoken", {"causal_instead_of_bidirectional": attending(causal=True)})


def mistral_window(root):
    """`MistralModel` saved bare (as e5-mistral ships): 4 query heads on one key/value head of 16,
    a causal sliding window of 20 tokens (the long texts run far past it), last-token pooling."""
    out_dir, hf_dir = root / "mistral-window", root / "_hf_mistral"
    tok, fast = llama_tokenizer()
    cfg = MistralConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        sliding_window=20,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"),
        pad_token_id=tok.token_to_id("</s>"),
        attn_implementation="sdpa",
    )
    model = drawn_and_saved(MistralModel, cfg, (7, 27), fast, hf_dir, out_dir, "lasttoken")

    def no_window(model, ids):
        return rebuilt(model, sliding_window=None)(input_ids=ids).last_hidden_state

    golden(out_dir, "lasttoken", {"window_ignored": no_window})


def llama_biased_lm(root):
    """`LlamaForCausalLM` as saved (`model.` prefix, `lm_head`) with `attention_bias` (Q, K, V and
    output) and `mlp_bias`: 3 heads of 24 with `hidden_size` 48, mean pooling."""
    out_dir, hf_dir = root / "llama-biased-lm", root / "_hf_llama_lm"
    tok, fast = llama_tokenizer()
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=3,
        num_key_value_heads=3,
        head_dim=24,
        attention_bias=True,
        mlp_bias=True,
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"),
        pad_token_id=tok.token_to_id("</s>"),
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    drawn_and_saved(LlamaForCausalLM, cfg, (8, 28), fast, hf_dir, out_dir, "mean", keep_checkpoint=True)
    golden(
        out_dir,
        "mean",
        {"output_bias_left_out": zeroed("o_proj.bias"), "mlp_biases_left_out": zeroed("mlp.down_proj.bias")},
    )


def eurobert_config(tok, **extra):
    """A small EuroBERT: 4 query heads on 2 key/value heads of 12, rope base 250000, the Llama
    tokenizer's ids."""
    return EuroBertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 250000.0},
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"),
        pad_token_id=tok.token_to_id("</s>"),
        mask_token_id=tok.token_to_id("<unk>"),
        attn_implementation="sdpa",
        **extra,
    )


def eurobert_mlm(root):
    """`EuroBertForMaskedLM` as saved (`model.` prefix, `lm_head`): Llama's layers as a
    bidirectional encoder, 4 query heads on 2 key/value heads of 12, mean pooling (what
    sentence-transformers gives EuroBERT's fine-tunes). Its tensors are a `LlamaModel`'s; only
    `model_type: eurobert` says it attends both ways, so `causal` records how far attending as a
    Llama would move the vectors."""
    out_dir, hf_dir = root / "eurobert-mlm", root / "_hf_eurobert"
    tok, fast = llama_tokenizer()
    cfg = eurobert_config(tok, intermediate_size=80, head_dim=12)
    model = drawn_and_saved(EuroBertForMaskedLM, cfg, (9, 29), fast, hf_dir, out_dir, "mean", keep_checkpoint=True)
    llama = LlamaConfig(**{k: v for k, v in cfg.to_dict().items() if k not in ("model_type", "architectures")})

    def causal(model, ids):
        other = LlamaModel(llama).eval()
        other.load_state_dict(model.state_dict())
        return other(input_ids=ids).last_hidden_state

    golden(out_dir, "mean", {"causal": causal})


def llama3_rope(original):
    """Llama 3.1's RoPE scaling (factor 8, low/high frequency factors 1 and 4, base 500000) from
    an original length of `original` tokens."""
    return {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": original,
    }


def llama3_scaled(root):
    """`LlamaModel` with Llama 3.1's RoPE scaling (`rope_type: llama3`, factor 8, low/high
    frequency factors 1 and 4, an original length of 32 tokens so that every kind of frequency
    occurs: kept, divided by the factor, and blended), 4 query heads on 2 key/value heads of 16,
    last-token pooling."""
    out_dir, hf_dir = root / "llama3-scaled", root / "_hf_llama3"
    tok, fast = llama_tokenizer()
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_parameters=llama3_rope(32),
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"),
        pad_token_id=tok.token_to_id("</s>"),
        attn_implementation="sdpa",
    )
    model = drawn_and_saved(LlamaModel, cfg, (11, 31), fast, hf_dir, out_dir, "lasttoken")

    def unscaled(model, ids):
        return rebuilt(model, rope_parameters={"rope_type": "default", "rope_theta": 500000.0})(
            input_ids=ids
        ).last_hidden_state

    golden(out_dir, "lasttoken", {"llama3_scaling_ignored": unscaled})


def gemma_tokenizer():
    """EmbeddingGemma's shape: `<bos> A <eos>`."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]

    def template(tok):
        ids = [(s, tok.token_to_id(s)) for s in ["<bos>", "<eos>"]]
        return processors.TemplateProcessing(
            single="<bos> $A <eos>", pair="<bos> $A <eos> $B:1 <eos>:1", special_tokens=ids
        )

    tok = byte_bpe(specials, template)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=2048,
    )
    return tok, fast


GEMMA_PROMPTS = {"query": "task: search result | query: ", "document": "title: none | text: "}


def embedding_gemma(root):
    """`Gemma3TextModel` as EmbeddingGemma ships it: bidirectional attention
    (`use_bidirectional_attention`), sliding layers seeing `sliding_window / 2` tokens each side
    (window 24 over texts up to 890 tokens) with rope base 10000 and a full layer with base 1e6,
    norms around both blocks, `query_pre_attn_scalar` 24 apart from `head_dim` 16, the embedding
    scaled by sqrt(hidden), then mean pooling, two Dense layers without bias (48 -> 96 -> 48) and
    Normalize, with EmbeddingGemma's query prompt."""
    out_dir, hf_dir = root / "embedding-gemma-tiny", root / "_hf_gemma"
    tok, fast = gemma_tokenizer()
    cfg = Gemma3TextConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=24,
        max_position_embeddings=1024,
        sliding_window=24,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        use_bidirectional_attention=True,
        pad_token_id=tok.token_to_id("<pad>"),
        bos_token_id=tok.token_to_id("<bos>"),
        eos_token_id=tok.token_to_id("<eos>"),
        attn_implementation="sdpa",
    )
    torch.manual_seed(9)
    model = Gemma3TextModel(cfg).eval()
    widen(model, 29)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    word = models.Transformer(str(hf_dir), max_seq_length=1024)
    pool = models.Pooling(48, pooling_mode="mean")
    torch.manual_seed(10)
    up = models.Dense(48, 96, bias=False, activation_function=torch.nn.Identity())
    down = models.Dense(96, 48, bias=False, activation_function=torch.nn.Identity())
    st = SentenceTransformer(
        modules=[word, pool, up, down, models.Normalize()], device="cpu", prompts=GEMMA_PROMPTS
    )
    st.save(str(out_dir))

    golden(out_dir, "mean", {}, prompt_names=["query"])
    # Through the Dense layers too (the shared goldens pool the raw output): how far each
    # mistake moves sentence-transformers' own vectors.
    with torch.no_grad():
        st_sensitivity(
            out_dir,
            {
                "causal_instead_of_bidirectional": lambda m: setattr(m.config, "use_bidirectional_attention", False),
                "norm_weight_without_its_offset_of_one": lambda m: [
                    p.sub_(1.0) for k, p in m.named_parameters() if k.endswith("norm.weight")
                ],
            },
        )


def gemma2_config(tok, **extra):
    """gemma2-tiny's shape (see `gemma2_tiny`), in eager attention: the one transformers soft-caps in."""
    return Gemma2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=20,
        max_position_embeddings=1024,
        sliding_window=20,
        attn_logit_softcapping=3.0,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        pad_token_id=tok.token_to_id("<pad>"),
        bos_token_id=tok.token_to_id("<bos>"),
        eos_token_id=tok.token_to_id("<eos>"),
        attn_implementation="eager",
        **extra,
    )


def gemma2_tiny(root):
    """`Gemma2Model` as bge-multilingual-gemma2 ships it: causal, the even layers within a sliding
    window (20 tokens here, over texts up to 890) and the odd ones full, one rope base, scores
    scaled by `query_pre_attn_scalar` (20, apart from `head_dim` 16) then soft-capped
    (`attn_logit_softcapping` 3, within the scores' spread so that leaving it out shows; the
    model's is 50 on its own wider scores), norms around both blocks, the embedding scaled by
    sqrt(hidden), last-token pooling. Eager attention: the one transformers soft-caps in."""
    out_dir, hf_dir = root / "gemma2-tiny", root / "_hf_gemma2"
    tok, fast = gemma_tokenizer()
    cfg = gemma2_config(tok)
    model = drawn_and_saved(Gemma2Model, cfg, (12, 33), fast, hf_dir, out_dir, "lasttoken")

    def with_config(**changes):
        return lambda model, ids: rebuilt(model, **changes)(input_ids=ids).last_hidden_state

    golden(
        out_dir,
        "lasttoken",
        {
            "softcap_ignored": with_config(attn_logit_softcapping=None),
            "window_on_every_layer": with_config(layer_types=["sliding_attention"] * 4),
            "scaled_by_head_dim": with_config(query_pre_attn_scalar=16),
        },
    )


def st_sensitivity(out_dir, mutations):
    """`golden.json`'s sensitivities, each from sentence-transformers with `mutate(auto_model)`."""
    path = out_dir / "golden.json"
    data = json.loads(path.read_text())
    want = torch.tensor(data["embeddings"])
    found = {}
    for what, mutate in mutations.items():
        st = SentenceTransformer(str(out_dir), device="cpu")
        mutate(st[0].auto_model)
        got = st.encode(data["texts"], batch_size=1, convert_to_tensor=True)
        found[what] = round((got - want).abs().max().item(), 4)
    data["sensitivity_of_normalized_embeddings_to_bugs"] = found
    path.write_text(json.dumps(data))


BUILDERS = [
    qwen2_tiny,
    qwen2_bidirectional_lm,
    mistral_window,
    llama_biased_lm,
    embedding_gemma,
    gemma2_tiny,
    llama3_scaled,
    eurobert_mlm,
]


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "reference/models")
    root.mkdir(parents=True, exist_ok=True)
    only = sys.argv[2:]
    for build in BUILDERS:
        if not only or build.__name__ in only:
            build(root)
    cleanup(root)


if __name__ == "__main__":
    main()
