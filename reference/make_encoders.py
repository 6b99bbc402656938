"""Tiny random checkpoints of the encoder families, saved as sentence-transformers folders, with
goldens computed by transformers' own model classes and sentence-transformers.

Run it in a venv outside the repository (torch, transformers, sentence-transformers, tokenizers):

    python reference/make_encoders.py reference/models [builder ...]

Weights are drawn wide (std 0.3..0.5, LayerNorm gains around 1 with spread), not at the 0.02 default,
so that a wrong position offset or activation moves the output far past the tests' tolerance; each
golden records how far (`sensitivity`).
"""

import io
import json
import sys
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer, models
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram, WordPiece
from tokenizers.trainers import BpeTrainer, UnigramTrainer, WordPieceTrainer
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    XLMRobertaForSequenceClassification,
    DistilBertForMaskedLM,
    DistilBertModel,
    MPNetConfig,
    MPNetModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForMaskedLM,
    XLMRobertaConfig,
    XLMRobertaModel,
)

SHARED_TEXTS = Path(__file__).resolve().parents[2] / "shared/reference/golden_minilm.json"
EXTRA_TEXTS = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "El zorro marrón rápido salta sobre el perro perezoso.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "Быстрая коричневая лиса перепрыгивает через ленивую собаку.",
]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4: RoBERTa's order, pad = 1


def texts():
    base = json.loads(SHARED_TEXTS.read_text())["texts"]
    return base + EXTRA_TEXTS


def corpus():
    # Enough varied text that the tokenizers learn sub-words, not whole sentences.
    words = " ".join(texts()).split()
    return [" ".join(words[i : i + 12]) for i in range(0, len(words), 6)] * 4


def roberta_post_processor():
    return processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)


def unigram_tokenizer():
    """An XLM-R-shaped tokenizer: SentencePiece unigram with the metaspace pre-tokenizer."""
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = UnigramTrainer(vocab_size=700, special_tokens=SPECIALS, unk_token="<unk>")
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = roberta_post_processor()
    return tok


def byte_bpe_tokenizer():
    """A RoBERTa-shaped tokenizer: byte-level BPE."""
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=600, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = roberta_post_processor()
    return tok


def wordpiece_tokenizer(roberta_specials=False):
    """A BERT-shaped tokenizer: lowercasing WordPiece, [CLS] A [SEP] B [SEP]; with
    `roberta_specials`, MPNet's: <s> A </s></s> B </s>."""
    tok = Tokenizer(WordPiece(unk_token="<unk>" if roberta_specials else "[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=800, special_tokens=SPECIALS if roberta_specials else BERT_SPECIALS)
    tok.train_from_iterator(corpus(), trainer)
    if roberta_specials:
        tok.post_processor = roberta_post_processor()
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
    return tok


BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def fast_tokenizer(tok, max_len):
    if tok.token_to_id("[CLS]") is not None:
        # As BertTokenizerFast: segment ids go to the model.
        names = dict(
            cls_token="[CLS]",
            sep_token="[SEP]",
            unk_token="[UNK]",
            pad_token="[PAD]",
            mask_token="[MASK]",
            model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        )
    else:
        names = dict(
            bos_token="<s>",
            eos_token="</s>",
            sep_token="</s>",
            cls_token="<s>",
            unk_token="<unk>",
            pad_token="<pad>",
            mask_token="<mask>",
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_len, **names)


def widen(model, seed, keep=()):
    """Draws every weight wide, so mistakes show (except the parameters named in `keep`)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in keep):
                continue
            if "relative_attention_bias" in name:
                p.copy_(1.0 * torch.randn(p.shape, generator=g))
            elif "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif "embeddings" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def save_st(hf_dir, out_dir, max_seq_length, pooling, keep_checkpoint=False):
    """A sentence-transformers folder. With `keep_checkpoint`, the weights and config stay as the
    task model saved them (prefix and head included), as checkpoints on the hub often are."""
    word = models.Transformer(str(hf_dir), max_seq_length=max_seq_length)
    pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode=pooling)
    st = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu")
    st.save(str(out_dir))
    if keep_checkpoint:
        for name in ["model.safetensors", "config.json"]:
            (out_dir / name).write_bytes((hf_dir / name).read_bytes())


def pooled(h, pooling):
    """Sentence-transformers' pooling of a batch of hidden states without padding."""
    return {"lasttoken": lambda: h[:, -1], "cls": lambda: h[:, 0], "mean": lambda: h.mean(1)}[pooling]()


@torch.no_grad()
def golden(out_dir, pad_id, sensitivity_fns, texts_fn=None, pooling="mean", prompt_names=()):
    """Goldens from sentence-transformers (the folder's pooling + Normalize) and the raw model (mean
    and first token, unnormalized); `sensitivity_fns` record how far each mistake moves the
    normalized vectors; `prompt_names` add sentence-transformers' vectors with each prompt."""
    st = SentenceTransformer(str(out_dir), device="cpu")
    tok = st.tokenizer
    ts = (texts_fn or texts)()
    enc = [tok(t, truncation=True, max_length=st.max_seq_length) for t in ts]
    normalized = st.encode(ts, batch_size=8, convert_to_numpy=True, normalize_embeddings=False)
    model = st[0].auto_model.eval()
    mean, cls = [], []
    for e in enc:
        ids = torch.tensor([e["input_ids"]])
        h = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
        mean.append(h.mean(0).tolist())
        cls.append(h[0].tolist())
    sensitivity = {}
    for what, fn in sensitivity_fns.items():
        worst = 0.0
        for e, want in zip(enc, normalized):
            ids = torch.tensor([e["input_ids"]])
            got = torch.nn.functional.normalize(pooled(fn(model, ids), pooling), dim=-1)[0]
            worst = max(worst, (got - torch.tensor(want)).abs().max().item())
        sensitivity[what] = round(worst, 4)
    data = {
        "texts": ts,
        "token_ids": [e["input_ids"] for e in enc],
        "token_counts": [len(e["input_ids"]) for e in enc],
        "embeddings": normalized.tolist(),
        "embeddings_mean_unnormalized": mean,
        "embeddings_cls": cls,
        "pad_token_id": pad_id,
        "sensitivity_of_normalized_embeddings_to_bugs": sensitivity,
    }
    for name in prompt_names:
        data.setdefault("prompted", {})[name] = {
            "prompt": st.prompts[name],
            "embeddings": st.encode(ts[:12], prompt_name=name, batch_size=4, convert_to_numpy=True).tolist(),
        }
    (out_dir / "golden.json").write_text(json.dumps(data))


def positions_from_zero(model, ids):
    """The classic RoBERTa mistake: position rows 0..n-1 instead of padding_idx + 1 + i."""
    return model(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None]).last_hidden_state


def tanh_gelu(owners, attr):
    """Runs the model with the tanh GELU in place of the exact one (`owners(model)` hold `attr`)."""

    def run(model, ids):
        saved = [getattr(o, attr) for o in owners(model)]
        for o in owners(model):
            setattr(o, attr, torch.nn.GELU(approximate="tanh"))
        try:
            return model(input_ids=ids).last_hidden_state
        finally:
            for o, act in zip(owners(model), saved):
                setattr(o, attr, act)

    return run


SENSITIVITY = {
    "positions_from_zero": positions_from_zero,
    "tanh_gelu_instead_of_erf": tanh_gelu(lambda m: [l.intermediate for l in m.encoder.layer], "intermediate_act_fn"),
}
DISTILBERT_SENSITIVITY = {
    "tanh_gelu_instead_of_erf": tanh_gelu(lambda m: [l.ffn for l in m.transformer.layer], "activation"),
}


def xlm_roberta_tiny(root):
    """XLMRobertaModel saved bare (no prefix, with a pooler), SentencePiece unigram tokenizer."""
    hf_dir, out_dir = root / "_hf_xlm", root / "xlm-roberta-tiny"
    tok = unigram_tokenizer()
    cfg = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = XLMRobertaModel(cfg).eval()
    widen(model, 1)
    model.save_pretrained(hf_dir)
    fast_tokenizer(tok, 128).save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 128, "mean")
    golden(out_dir, 1, SENSITIVITY)


def roberta_mlm_tiny(root):
    """RobertaForMaskedLM (`roberta.` prefix, `lm_head.*`), byte-level BPE, 3 heads of width 16."""
    hf_dir, out_dir = root / "_hf_roberta", root / "roberta-mlm-tiny"
    tok = byte_bpe_tokenizer()
    cfg = RobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=96,
        max_position_embeddings=66,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        hidden_act="gelu",
    )
    torch.manual_seed(0)
    mlm = RobertaForMaskedLM(cfg).eval()
    widen(mlm, 2)
    mlm.save_pretrained(hf_dir)
    fast_tokenizer(tok, 64).save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 64, "mean", keep_checkpoint=True)
    golden(out_dir, 1, SENSITIVITY)


def distilbert_config(tok, **extra):
    return DistilBertConfig(
        vocab_size=tok.get_vocab_size(),
        dim=48,
        n_layers=2,
        n_heads=6,
        hidden_dim=80,
        max_position_embeddings=128,
        activation="gelu",
        pad_token_id=0,
        **extra,
    )


def distilbert_tiny(root):
    """DistilBertModel saved bare, 6 heads of width 8, a learned position table."""
    hf_dir, out_dir = root / "_hf_distil", root / "distilbert-tiny"
    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    model = DistilBertModel(distilbert_config(tok)).eval()
    widen(model, 3)
    model.save_pretrained(hf_dir)
    fast_tokenizer(tok, 128).save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 128, "cls")
    golden(out_dir, 0, DISTILBERT_SENSITIVITY)


def distilbert_sinusoidal_mlm(root):
    """DistilBertForMaskedLM (`distilbert.` prefix) with `sinusoidal_pos_embds` and the table left
    out of the weights, as transformers then fills it at load."""
    from safetensors.torch import load_file, save_file

    hf_dir, out_dir = root / "_hf_distil_mlm", root / "distilbert-sinusoidal-mlm"
    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    mlm = DistilBertForMaskedLM(distilbert_config(tok, sinusoidal_pos_embds=True)).eval()
    widen(mlm, 4, keep=("position_embeddings",))
    mlm.save_pretrained(hf_dir)
    weights = load_file(hf_dir / "model.safetensors")
    del weights["distilbert.embeddings.position_embeddings.weight"]
    save_file(weights, hf_dir / "model.safetensors", metadata={"format": "pt"})
    fast_tokenizer(tok, 128).save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 128, "mean", keep_checkpoint=True)
    golden(out_dir, 0, DISTILBERT_SENSITIVITY)


def no_relative_bias(model, ids):
    saved = model.encoder.compute_position_bias
    model.encoder.compute_position_bias = lambda x, *a, **k: torch.zeros_like(saved(x))
    try:
        return model(input_ids=ids).last_hidden_state
    finally:
        model.encoder.compute_position_bias = saved


MPNET_SENSITIVITY = {
    "positions_from_zero": positions_from_zero,
    "no_relative_bias": no_relative_bias,
    "tanh_gelu_instead_of_erf": SENSITIVITY["tanh_gelu_instead_of_erf"],
}


def mpnet_tiny(root):
    """MPNetModel saved bare: 5 heads of 8, the relative bias drawn wide, inputs up to 256 tokens
    so that offsets reach the logarithmic buckets beyond 128."""
    hf_dir, out_dir = root / "_hf_mpnet", root / "mpnet-tiny"
    tok = wordpiece_tokenizer(roberta_specials=True)
    cfg = MPNetConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=40,
        num_hidden_layers=2,
        num_attention_heads=5,
        intermediate_size=72,
        max_position_embeddings=514,
        relative_attention_num_buckets=32,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = MPNetModel(cfg).eval()
    widen(model, 5)
    model.save_pretrained(hf_dir)
    fast_tokenizer(tok, 256).save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 256, "mean")
    golden(out_dir, 1, MPNET_SENSITIVITY)
    # transformers' bucket of every offset j - i a 1024-token input can hold, for the bucketing test.
    offsets = torch.arange(-1023, 1024)
    buckets = model.encoder.relative_position_bucket(offsets, num_buckets=32, max_distance=128)
    data = json.loads((out_dir / "golden.json").read_text())
    data["relative_buckets"] = {"first_offset": -1023, "buckets": buckets.tolist()}
    (out_dir / "golden.json").write_text(json.dumps(data))


PAIRS = [
    ("what is the capital of France?", "Paris is the capital and largest city of France."),
    ("what is the capital of France?", "The quick brown fox jumps over the lazy dog."),
    ("how do plants make food?", "Photosynthesis turns light, water and carbon dioxide into sugar."),
    ("how do plants make food?", "A man is playing a guitar."),
    ("Wie spät ist es?", "Es ist drei Uhr."),
    ("a", "b"),
]


@torch.no_grad()
def classifier_golden(out_dir, model, tok):
    """Logits from transformers' own *ForSequenceClassification for single texts and pairs."""
    model.eval()
    ts = texts()[:12]
    singles = [tok(t, truncation=True, max_length=tok.model_max_length, return_tensors="pt") for t in ts]
    pairs = [tok(q, p, truncation=True, max_length=tok.model_max_length, return_tensors="pt") for q, p in PAIRS]
    # Everything the tokenizer returns (token type ids of pairs included) goes to the model.
    def logit(enc):
        if model.config.model_type == "distilbert":
            enc = {k: v for k, v in enc.items() if k != "token_type_ids"}
        return model(**enc).logits[0].tolist()

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


def save_classifier(model, tok, out_dir, max_len):
    model.save_pretrained(out_dir)
    fast = fast_tokenizer(tok, max_len)
    fast.save_pretrained(out_dir)
    classifier_golden(out_dir, model, fast)


def xlm_roberta_reranker_tiny(root):
    """XLMRobertaForSequenceClassification with one output (a reranker, as bge-reranker)."""
    tok = unigram_tokenizer()
    cfg = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
    )
    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(cfg)
    widen(model, 6)
    save_classifier(model, tok, root / "xlm-roberta-reranker-tiny", 128)


def bert_classifier_tiny(root):
    """BertForSequenceClassification with three named labels (`bert.` prefix and pooler)."""
    tok = wordpiece_tokenizer()
    cfg = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    widen(model, 7)
    save_classifier(model, tok, root / "bert-classifier-tiny", 128)


def distilbert_classifier_tiny(root):
    """DistilBertForSequenceClassification with two outputs (`pre_classifier`, ReLU)."""
    tok = wordpiece_tokenizer()
    cfg = distilbert_config(tok, num_labels=2)
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(cfg)
    widen(model, 8)
    save_classifier(model, tok, root / "distilbert-classifier-tiny", 128)


def camembert_tiny(root):
    """A CamemBERT checkpoint as older ones ship: `sentencepiece.bpe.model` and no tokenizer.json,
    so the server must build CamembertTokenizer's layout itself."""
    import sentencepiece as spm
    from transformers import AutoTokenizer, CamembertConfig, CamembertModel

    hf_dir, out_dir = root / "_hf_camembert", root / "camembert-tiny"
    hf_dir.mkdir(parents=True, exist_ok=True)
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()),
        model_writer=model_file,
        model_type="unigram",
        vocab_size=500,
        hard_vocab_limit=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
    )
    (hf_dir / "sentencepiece.bpe.model").write_bytes(model_file.getvalue())
    (hf_dir / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CamembertTokenizer", "model_max_length": 128})
    )
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    cfg = CamembertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=5,
        eos_token_id=6,
    )
    torch.manual_seed(0)
    model = CamembertModel(cfg).eval()
    widen(model, 9)
    model.save_pretrained(hf_dir)
    save_st(hf_dir, out_dir, 128, "mean")
    for name in ["tokenizer.json", "special_tokens_map.json"]:
        (out_dir / name).unlink(missing_ok=True)
    (out_dir / "sentencepiece.bpe.model").write_bytes(model_file.getvalue())
    (out_dir / "tokenizer_config.json").write_text((hf_dir / "tokenizer_config.json").read_text())
    golden(out_dir, 1, SENSITIVITY)


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "reference/models")
    root.mkdir(parents=True, exist_ok=True)
    only = sys.argv[2:]  # model builders to run (all when none), e.g. camembert_tiny
    if only:
        for name in only:
            globals()[name](root)
        cleanup(root)
        return
    xlm_roberta_tiny(root)
    roberta_mlm_tiny(root)
    distilbert_tiny(root)
    distilbert_sinusoidal_mlm(root)
    mpnet_tiny(root)
    xlm_roberta_reranker_tiny(root)
    bert_classifier_tiny(root)
    distilbert_classifier_tiny(root)
    camembert_tiny(root)
    cleanup(root)


def run_builders(builders):
    """The `main` of the smaller generator scripts: `script.py ROOT [builder ...]` runs the named
    builders (all when none) into ROOT."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "reference/models")
    root.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[2:])
    for builder in builders:
        if not only or builder.__name__ in only:
            builder(root)
    cleanup(root)


def cleanup(root):
    for tmp in root.glob("_hf_*"):
        for f in sorted(tmp.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        tmp.rmdir()


if __name__ == "__main__":
    main()
