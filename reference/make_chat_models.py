"""Models whose sentence-transformers 6 pipeline feeds texts through the tokenizer's chat template
(the `message` modality), with goldens from sentence-transformers itself:

- `qwen3-logit-reranker-tiny`: a `Qwen3ForCausalLM` with tied embeddings scored as Qwen3-Reranker
  is in sentence-transformers (`CrossEncoder` of a `text-generation` Transformer and a `LogitScore`
  module: logit("yes") - logit("no") at the last token), its pairs rendered as `query` and
  `document` messages through a chat template of Qwen3-Reranker's shape (judge prompt, default
  instruction, `<Query>:`/`<Document>:`, the assistant's empty think block); `max_seq_length` 320,
  so long pairs are truncated and get the template's tail written back (`restore_suffix`).
- `llama-logit-reranker-tiny`: a `LlamaForCausalLM` with its own `lm_head` and a `LogitScore`
  with only a true token (zerank-2's shape: the score is that token's logit), a structured-content
  template (`content[0].text`).
- `qwen3-chat-embedder-tiny`: a `Qwen3Model` saved by sentence-transformers 6 with the `message`
  modality (its tokenizer has a ChatML template): texts become `user` messages, prompts `system`
  ones; last-token pooling.
- `xlm-roberta-prompted-reranker-tiny`: `xlm-roberta-reranker-tiny` as a CrossEncoder with
  prompts and a default one, without a template: the prompt goes before a pair's first text.

Goldens hold the token ids sentence-transformers feeds the model (`Transformer.preprocess`, one
input at a time) and its outputs: pair scores without activation (`pair_logits`) for the rerankers,
normalized embeddings for the embedder.

Run it in a venv outside the repository (torch, transformers 5, sentence-transformers 6):

    python reference/make_chat_models.py reference/models
"""

import json
import sys
from pathlib import Path

import torch
from sentence_transformers import CrossEncoder, SentenceTransformer
from sentence_transformers.base.modules import Transformer
from sentence_transformers.cross_encoder.modules import LogitScore
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3ForCausalLM, Qwen3Model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_decoder_classifiers import SMALL_QWEN3  # noqa: E402
from make_decoders import llama_tokenizer  # noqa: E402
from make_encoders import PAIRS, cleanup, widen  # noqa: E402
from make_rotary_families import qwen3_config, qwen3_tokenizer, texts  # noqa: E402

# Qwen3-Reranker's prompt, as its model card builds it, written as a template over the pair's
# messages (a system message, when a prompt is given, replaces the default instruction).
RERANKER_TEMPLATE = """\
{%- set query = messages | selectattr("role", "eq", "query") | map(attribute="content") | first -%}
{%- set document = messages | selectattr("role", "eq", "document") | map(attribute="content") | first -%}
{%- set system = messages | selectattr("role", "eq", "system") | map(attribute="content") | list -%}
{%- set instruction = system[0] if system else "Given a web search query, retrieve relevant passages that answer the query" -%}
<|im_start|>system
Judge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>
<|im_start|>user
<Instruct>: {{ instruction }}
<Query>: {{ query.strip() }}
<Document>: {{ document }}<|im_end|>
<|im_start|>assistant
<think>

</think>

"""

# ChatML, as Qwen's tokenizers carry it.
CHATML_TEMPLATE = """\
{%- for message in messages %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Structured contents (`content[0].text`), the query and document in one user turn.
STRUCTURED_TEMPLATE = """\
{%- for message in messages -%}
[{{ message.role | upper }}] {{ message.content[0].text }}
{% endfor -%}
[SCORE]"""

# Long documents: past `max_seq_length` once rendered, so the tail restore is exercised.
LONG = " ".join(texts()[-1].split()[:60])
RERANK_PAIRS = PAIRS + [(PAIRS[0][0], LONG), (LONG, PAIRS[1][1])]


def with_yes_no(fast):
    """The tokenizer with `yes` and `no` as tokens of their own (Qwen's vocabulary has both)."""
    fast.add_tokens(["yes", "no"])
    return fast


@torch.no_grad()
def reranker_golden(out_dir, model):
    ids = [model[0].preprocess([pair])["input_ids"][0].tolist() for pair in RERANK_PAIRS]
    prompted = {
        name: [model.predict([pair], prompt_name=name, activation_fn=torch.nn.Identity())[0].item() for pair in PAIRS]
        for name in model.prompts
    }
    scores = [model.predict([pair], activation_fn=torch.nn.Identity())[0].item() for pair in RERANK_PAIRS]
    batched = model.predict(RERANK_PAIRS, activation_fn=torch.nn.Identity(), batch_size=8).tolist()
    assert max(abs(a - b) for a, b in zip(scores, batched)) < 1e-4
    data = {
        "pairs": RERANK_PAIRS,
        "pair_token_ids": ids,
        "pair_logits": [[s] for s in scores],
        "max_seq_length": model[0].max_seq_length,
        "truncated": [len(i) == model[0].max_seq_length for i in ids],
        # The first pairs scored with each prompt (a `system` message before the pair).
        "prompted_pair_logits": {name: {"prompt": model.prompts[name], "logits": [[s] for s in scores]} for name, scores in prompted.items()},
    }
    assert any(data["truncated"]), "no pair reaches max_seq_length"
    (out_dir / "golden.json").write_text(json.dumps(data))


def save_reranker(out_dir, hf_dir, fast, template, max_seq_length, true_token, false_token, prompts=None):
    fast.chat_template = template
    fast.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), transformer_task="text-generation", max_seq_length=max_seq_length)
    model = CrossEncoder(modules=[transformer, LogitScore(true_token, false_token)], device="cpu", prompts=prompts)
    model.save(str(out_dir))
    return CrossEncoder(str(out_dir), device="cpu")


def qwen3_logit_reranker_tiny(root):
    out_dir, hf_dir = root / "qwen3-logit-reranker-tiny", root / "_hf_qwen3_logit"
    tok, fast = qwen3_tokenizer()
    fast = with_yes_no(fast)
    cfg = qwen3_config(fast.backend_tokenizer, tie_word_embeddings=True, **SMALL_QWEN3)
    cfg.vocab_size = len(fast)
    torch.manual_seed(21)
    lm = Qwen3ForCausalLM(cfg).eval()
    widen(lm, 21)
    lm.save_pretrained(hf_dir)
    yes, no = fast.convert_tokens_to_ids("yes"), fast.convert_tokens_to_ids("no")
    # Qwen3-Reranker's instruction for a task, given as a prompt (rendered as the system message).
    prompts = {"code": "Given a code question, retrieve the snippet that answers it"}
    model = save_reranker(out_dir, hf_dir, fast, RERANKER_TEMPLATE, 320, yes, no, prompts)
    reranker_golden(out_dir, model)


def llama_logit_reranker_tiny(root):
    out_dir, hf_dir = root / "llama-logit-reranker-tiny", root / "_hf_llama_logit"
    tok, fast = llama_tokenizer()
    fast = with_yes_no(fast)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        **SMALL_QWEN3,
    )
    torch.manual_seed(22)
    lm = LlamaForCausalLM(cfg).eval()
    widen(lm, 22)
    lm.save_pretrained(hf_dir)
    model = save_reranker(out_dir, hf_dir, fast, STRUCTURED_TEMPLATE, 100, fast.convert_tokens_to_ids("yes"), None)
    reranker_golden(out_dir, model)


def qwen3_chat_embedder_tiny(root):
    out_dir, hf_dir = root / "qwen3-chat-embedder-tiny", root / "_hf_qwen3_chat"
    tok, fast = qwen3_tokenizer()
    torch.manual_seed(23)
    model = Qwen3Model(qwen3_config(tok, **SMALL_QWEN3)).eval()
    widen(model, 23)
    model.save_pretrained(hf_dir)
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=64)
    assert "message" in transformer.modality_config
    prompts = {"query": "Instruct: find the passage that answers the question", "document": ""}
    st = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken"), Normalize()],
        prompts=prompts,
        device="cpu",
    )
    st.save(str(out_dir))
    st = SentenceTransformer(str(out_dir), device="cpu")
    ts = texts()
    data = {
        "texts": ts,
        "token_ids": [st[0].preprocess([t])["input_ids"][0].tolist() for t in ts],
        "embeddings": st.encode(ts, batch_size=8).tolist(),
        "prompted": {
            name: {"prompt": prompt, "embeddings": st.encode(ts[:12], prompt_name=name, batch_size=4).tolist()}
            for name, prompt in prompts.items()
            if prompt
        },
        "max_seq_length": st.max_seq_length,
    }
    (out_dir / "golden.json").write_text(json.dumps(data))


def xlm_roberta_prompted_reranker_tiny(root):
    """The committed `xlm-roberta-reranker-tiny` saved as a sentence-transformers 6 CrossEncoder
    with prompts, `query` the default: text pairs (no chat template) get the prompt before their
    first text. Scores without activation, with the default prompt and with each named one."""
    out_dir = root / "xlm-roberta-prompted-reranker-tiny"
    prompts = {"query": "query: ", "none": ""}
    source = Path(__file__).resolve().parent / "models" / "xlm-roberta-reranker-tiny"
    CrossEncoder(str(source), device="cpu", prompts=prompts, default_prompt_name="query").save(str(out_dir))
    model = CrossEncoder(str(out_dir), device="cpu")

    def scores(**kwargs):
        return [[s] for s in model.predict(PAIRS, activation_fn=torch.nn.Identity(), **kwargs).tolist()]

    data = {
        "pairs": PAIRS,
        "pair_token_ids": [model[0].preprocess([pair])["input_ids"][0].tolist() for pair in PAIRS],
        "pair_logits": scores(),
        "prompted_pair_logits": {name: {"prompt": text, "logits": scores(prompt_name=name)} for name, text in prompts.items()},
    }
    assert data["pair_logits"] == data["prompted_pair_logits"]["query"]["logits"]
    assert data["pair_logits"] != data["prompted_pair_logits"]["none"]["logits"]
    (out_dir / "golden.json").write_text(json.dumps(data))


def main():
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    for build in [
        qwen3_logit_reranker_tiny,
        llama_logit_reranker_tiny,
        qwen3_chat_embedder_tiny,
        xlm_roberta_prompted_reranker_tiny,
    ]:
        build(root)
    cleanup(root)


if __name__ == "__main__":
    main()
