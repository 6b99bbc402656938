"""Tiny random ModernBERT and Qwen3 checkpoints, saved as sentence-transformers folders, with
goldens from transformers' own model classes (`ModernBertModel`, `Qwen3Model`) through
sentence-transformers.

Run it in a venv outside the repository (torch, transformers, sentence-transformers, tokenizers):

    python reference/make_rotary_families.py reference/models [builder ...]

Shares the texts, tokenizer trainers and weight widening of `make_encoders.py`, and adds long texts
(up to ~300 tokens) so that ModernBERT's local windows and the kernels' key tiles both matter.
Each golden records how far a mistake moves the normalized vectors (`sensitivity_...`): a wrong
rotary base, a window off by one or ignored, a bidirectional mask on a decoder.
"""

import copy
import json
import sys
from pathlib import Path
from unittest import mock

import torch
from sentence_transformers import SentenceTransformer, models
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import (
    ModernBertConfig,
    ModernBertForMaskedLM,
    ModernBertForSequenceClassification,
    ModernBertModel,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_encoders import PAIRS, cleanup, corpus, golden as encoder_golden, texts as base_texts, widen  # noqa: E402

QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


def texts():
    words = " ".join(base_texts()).split()
    # Long inputs: past every window and several key tiles.
    long = [" ".join(words[i : i + n]) for i, n in [(0, 120), (40, 200), (7, 260)]]
    return base_texts() + long


def byte_bpe(specials, post_processor):
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = post_processor(tok)
    return tok


def modernbert_tokenizer():
    """ModernBERT's shape: byte-level BPE, [CLS] A [SEP]."""
    specials = ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"]

    def template(tok):
        ids = [(s, tok.token_to_id(s)) for s in ["[CLS]", "[SEP]"]]
        return processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=ids)

    tok = byte_bpe(specials, template)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_max_length=8192,
    )
    return tok, fast


def qwen3_tokenizer():
    """Qwen3-Embedding's shape: byte-level BPE that appends <|endoftext|>, padded on the left."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

    def template(tok):
        eos = ("<|endoftext|>", tok.token_to_id("<|endoftext|>"))
        return processors.TemplateProcessing(
            single="$A:0 <|endoftext|>:0", pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1", special_tokens=[eos]
        )

    tok = byte_bpe(specials, template)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=32768,
    )
    return tok, fast


def save_st(hf_dir, out_dir, max_seq_length, pooling, prompts=None, keep_checkpoint=False):
    word = models.Transformer(str(hf_dir), max_seq_length=max_seq_length)
    pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode=pooling)
    st = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu", prompts=prompts)
    st.save(str(out_dir))
    if keep_checkpoint:
        for name in ["model.safetensors", "config.json"]:
            (out_dir / name).write_bytes((hf_dir / name).read_bytes())


def rebuilt(model, strict=True, **changes):
    """The same weights in a model whose config differs by `changes` (with `strict=False`,
    parameters the changed model lacks are dropped)."""
    cfg = copy.deepcopy(model.config)
    for k, v in changes.items():
        setattr(cfg, k, v)
    other = type(model)(cfg).eval()
    other.load_state_dict(model.state_dict(), strict=strict)
    return other


def golden(out_dir, pooling, sensitivity, prompt_names=()):
    """make_encoders.py's goldens over these texts (the long ones included)."""
    encoder_golden(out_dir, None, sensitivity, texts_fn=texts, pooling=pooling, prompt_names=prompt_names)


def modernbert_config(tok, **extra):
    return ModernBertConfig(
        vocab_size=tok.get_vocab_size(),
        pad_token_id=tok.token_to_id("[PAD]"),
        cls_token_id=tok.token_to_id("[CLS]"),
        sep_token_id=tok.token_to_id("[SEP]"),
        bos_token_id=tok.token_to_id("[CLS]"),
        eos_token_id=tok.token_to_id("[SEP]"),
        max_position_embeddings=512,
        attn_implementation="sdpa",
        **extra,
    )


def modernbert_sensitivity(local_attention, global_theta, local_theta):
    def with_config(**changes):
        return lambda model, ids: rebuilt(model, **changes)(input_ids=ids).last_hidden_state

    def swapped(model, ids):
        other = rebuilt(model)
        cfg = copy.deepcopy(model.config)
        cfg.rope_parameters = {
            "full_attention": {"rope_type": "default", "rope_theta": local_theta},
            "sliding_attention": {"rope_type": "default", "rope_theta": global_theta},
        }
        other = type(model)(cfg).eval()
        other.load_state_dict(model.state_dict())
        return other(input_ids=ids).last_hidden_state

    return {
        "window_ignored": with_config(local_attention=100000),
        "window_one_wider_each_side": with_config(local_attention=local_attention + 2),
        "rope_thetas_swapped": swapped,
    }


def modernbert_tiny(root):
    """`ModernBertModel` saved bare: no biases, 3 heads of 16, 4 layers with a global one every 3rd
    (0 and 3), local windows of 16 tokens (8 each side), mean pooling."""
    out_dir, hf_dir = root / "modernbert-tiny", root / "_hf_modernbert"
    tok, fast = modernbert_tokenizer()
    cfg = modernbert_config(
        tok,
        hidden_size=48,
        intermediate_size=40,
        num_hidden_layers=4,
        num_attention_heads=3,
        global_attn_every_n_layers=3,
        local_attention=16,
        global_rope_theta=160000.0,
        local_rope_theta=10000.0,
    )
    torch.manual_seed(0)
    model = ModernBertModel(cfg).eval()
    widen(model, 21)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 512, "mean")
    golden(out_dir, "mean", modernbert_sensitivity(16, 160000.0, 10000.0))


def modernbert_biased_mlm(root):
    """`ModernBertForMaskedLM` as saved (`model.` prefix, `head`, `decoder`): every bias on
    (norms, attention, MLP), 2 heads of 12, a global layer every 2nd, windows of 8 (4 each side),
    CLS pooling, other rope bases."""
    out_dir, hf_dir = root / "modernbert-biased-mlm", root / "_hf_modernbert_mlm"
    tok, fast = modernbert_tokenizer()
    cfg = modernbert_config(
        tok,
        hidden_size=24,
        intermediate_size=36,
        num_hidden_layers=3,
        num_attention_heads=2,
        global_attn_every_n_layers=2,
        local_attention=8,
        global_rope_theta=80000.0,
        local_rope_theta=5000.0,
        norm_bias=True,
        attention_bias=True,
        mlp_bias=True,
        hidden_activation="gelu",
    )
    torch.manual_seed(1)
    model = ModernBertForMaskedLM(cfg).eval()
    widen(model, 22)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 512, "cls", keep_checkpoint=True)
    golden(out_dir, "cls", modernbert_sensitivity(8, 80000.0, 5000.0))


@torch.no_grad()
def classifier_golden(out_dir, model, tok):
    """Logits of transformers' ModernBertForSequenceClassification for texts and pairs (the
    schema of make_encoders.py's classifier goldens)."""
    model.eval()
    ts = base_texts()[:12]
    singles = [tok(t, truncation=True, max_length=512, return_tensors="pt") for t in ts]
    pairs = [tok(q, p, truncation=True, max_length=512, return_tensors="pt") for q, p in PAIRS]

    def logit(enc):
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0].tolist()

    ids = lambda enc: enc["input_ids"][0].tolist()  # noqa: E731
    data = {
        "texts": ts,
        "token_ids": [ids(e) for e in singles],
        "logits": [logit(e) for e in singles],
        "pairs": PAIRS,
        "pair_token_ids": [ids(e) for e in pairs],
        "pair_logits": [logit(e) for e in pairs],
        "id2label": {str(k): v for k, v in model.config.id2label.items()},
    }
    (out_dir / "golden.json").write_text(json.dumps(data))


def modernbert_classifier(root, name, seed, **extra):
    out_dir = root / name
    tok, fast = modernbert_tokenizer()
    cfg = modernbert_config(
        tok,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=2,
        global_attn_every_n_layers=2,
        local_attention=8,
        **extra,
    )
    torch.manual_seed(seed)
    model = ModernBertForSequenceClassification(cfg).eval()
    widen(model, seed)
    model.save_pretrained(out_dir)
    fast.model_max_length = cfg.max_position_embeddings
    fast.save_pretrained(out_dir)
    classifier_golden(out_dir, model, fast)


def modernbert_reranker_tiny(root):
    """`ModernBertForSequenceClassification` with one output, as gte-reranker-modernbert: the
    head on the mean of the tokens (`classifier_pooling: mean`), no biases."""
    modernbert_classifier(root, "modernbert-reranker-tiny", 25, num_labels=1, classifier_pooling="mean")


def modernbert_classifier_tiny(root):
    """`ModernBertForSequenceClassification` with three named labels on the first token, with
    the dense and norm biases and a SiLU head activation."""
    modernbert_classifier(
        root,
        "modernbert-classifier-tiny",
        26,
        num_labels=3,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
        classifier_pooling="cls",
        classifier_bias=True,
        norm_bias=True,
        classifier_activation="silu",
    )


def qwen3_sensitivity():
    def bidirectional(model, ids):
        import transformers.models.qwen3.modeling_qwen3 as q

        saved = [layer.self_attn.is_causal for layer in model.layers]
        for layer in model.layers:
            layer.self_attn.is_causal = False
        try:
            with mock.patch.object(q, "create_causal_mask", lambda **kw: None):
                return model(input_ids=ids).last_hidden_state
        finally:
            for layer, was in zip(model.layers, saved):
                layer.self_attn.is_causal = was

    def theta(value):
        def run(model, ids):
            cfg = copy.deepcopy(model.config)
            cfg.rope_parameters = {"rope_type": "default", "rope_theta": value}
            other = type(model)(cfg).eval()
            other.load_state_dict(model.state_dict())
            return other(input_ids=ids).last_hidden_state

        return run

    return {"bidirectional_instead_of_causal": bidirectional, "rope_theta_10000_instead_of_1e6": theta(10000.0)}


def qwen3_config(tok, **extra):
    eos = tok.token_to_id("<|endoftext|>")
    return Qwen3Config(
        vocab_size=tok.get_vocab_size(),
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        attn_implementation="sdpa",
        **extra,
    )


QWEN3_PROMPTS = {"query": QUERY_PROMPT, "document": ""}


def qwen3_tiny(root):
    """`Qwen3Model` saved bare (as Qwen3-Embedding ships): 4 query heads sharing 2 key/value heads,
    head_dim 24 (not hidden / heads = 16), SwiGLU, last-token pooling, the query prompt."""
    out_dir, hf_dir = root / "qwen3-tiny", root / "_hf_qwen3"
    tok, fast = qwen3_tokenizer()
    cfg = qwen3_config(
        tok,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        tie_word_embeddings=True,
    )
    torch.manual_seed(2)
    model = Qwen3Model(cfg).eval()
    widen(model, 23)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 1024, "lasttoken", prompts=QWEN3_PROMPTS)
    golden(out_dir, "lasttoken", qwen3_sensitivity(), prompt_names=["query"])


def qwen3_causal_lm_mqa(root):
    """`Qwen3ForCausalLM` as saved (`model.` prefix, `lm_head`): 3 query heads on one key/value
    head, attention biases, head_dim 16, last-token pooling."""
    out_dir, hf_dir = root / "qwen3-causal-lm-mqa", root / "_hf_qwen3_lm"
    tok, fast = qwen3_tokenizer()
    cfg = qwen3_config(
        tok,
        hidden_size=40,
        intermediate_size=56,
        num_hidden_layers=2,
        num_attention_heads=3,
        num_key_value_heads=1,
        head_dim=16,
        attention_bias=True,
        tie_word_embeddings=False,
    )
    torch.manual_seed(3)
    model = Qwen3ForCausalLM(cfg).eval()
    widen(model, 24)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 1024, "lasttoken", prompts=QWEN3_PROMPTS, keep_checkpoint=True)
    golden(out_dir, "lasttoken", qwen3_sensitivity())


BUILDERS = [
    modernbert_tiny,
    modernbert_biased_mlm,
    modernbert_reranker_tiny,
    modernbert_classifier_tiny,
    qwen3_tiny,
    qwen3_causal_lm_mqa,
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
