"""Tiny random T5 encoders (`T5EncoderModel`), saved as sentence-transformers folders, with
goldens from sentence-transformers.

- `t5-gated-tiny`: GTR-T5's shape: T5 v1.1's gated feed-forward (`gated-gelu`: `gelu_new(wi_0) *
  wi_1`), 4 heads of 12 (`d_kv` apart from `d_model / num_heads` = 8), mean pooling, a Dense
  layer without bias (32 -> 24, identity), Normalize.
- `t5-relu-tiny`: sentence-t5's original feed-forward (`relu`, `wi`, `wo`), 2 heads of 16, mean
  pooling, Normalize.

Both: a SentencePiece-shaped unigram tokenizer appending `</s>` as T5's does, pre-norm layers
with RMSNorms, no biases, relative position buckets from layer 0 added in every layer, scores
not divided by `sqrt(d_kv)`.

Run it in a venv outside the repository (torch, transformers, sentence-transformers, tokenizers):

    python reference/make_t5.py reference/models [builder ...]
"""

import sys
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer, models
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from tokenizers.trainers import UnigramTrainer
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_decoders import st_sensitivity  # noqa: E402
from make_encoders import corpus, golden, run_builders, widen  # noqa: E402

SPECIALS = ["<pad>", "</s>", "<unk>"]


def t5_tokenizer():
    """T5's shape: SentencePiece unigram (metaspace), `</s>` appended, `<pad>` 0."""
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(corpus(), UnigramTrainer(vocab_size=700, special_tokens=SPECIALS, unk_token="<unk>"))
    eos = ("</s>", tok.token_to_id("</s>"))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[eos])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", model_max_length=256
    )
    return tok, fast


def build(root, name, seed, dense, **config):
    out_dir, hf_dir = root / name, root / f"_hf_{name}"
    tok, fast = t5_tokenizer()
    cfg = T5Config(
        vocab_size=tok.get_vocab_size(),
        d_model=32,
        num_layers=2,
        d_ff=48,
        pad_token_id=tok.token_to_id("<pad>"),
        eos_token_id=tok.token_to_id("</s>"),
        **config,
    )
    torch.manual_seed(seed)
    model = T5EncoderModel(cfg).eval()
    widen(model, seed + 20)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    word = models.Transformer(str(hf_dir), max_seq_length=256)
    modules = [word, models.Pooling(32, pooling_mode="mean")]
    if dense:
        modules.append(models.Dense(32, dense, bias=False, activation_function=torch.nn.Identity()))
    SentenceTransformer(modules=modules + [models.Normalize()], device="cpu").save(str(out_dir))
    golden(out_dir, tok.token_to_id("<pad>"), {})

    def scores_scaled(auto_model):
        # Scores divided by sqrt(d_kv), as every other family's: the same as queries so scaled.
        with torch.no_grad():
            for block in auto_model.encoder.block:
                block.layer[0].SelfAttention.q.weight.mul_(cfg.d_kv**-0.5)

    st_sensitivity(out_dir, {"scores_divided_by_sqrt_dkv": scores_scaled})


def t5_gated_tiny(root):
    build(root, "t5-gated-tiny", 23, 24, num_heads=4, d_kv=12, feed_forward_proj="gated-gelu")


def t5_relu_tiny(root):
    build(root, "t5-relu-tiny", 24, None, num_heads=2, d_kv=16, feed_forward_proj="relu")


BUILDERS = [t5_gated_tiny, t5_relu_tiny]

if __name__ == "__main__":
    run_builders(BUILDERS)
