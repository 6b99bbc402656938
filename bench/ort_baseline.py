#!/usr/bin/env python3
"""ONNX Runtime baseline for `--dtype int8` (issue: quantized CPU inference).

Exports a BERT-style sentence-transformers model (all-MiniLM-L6-v2 by default) to ONNX, applies
ONNX Runtime's transformer graph optimizations (fused attention, LayerNorm, GELU), quantizes that
graph dynamically (int8 weights per output channel, activations per tensor at run time), and
encodes the load generator's corpus in-process with both graphs on N threads: embeddings/s for
batch sizes 1 and 32 over 32-input calls (as bench/st_baseline.py), the p50 latency of one
10-word input, and the int8 vectors' cosine to the fp32 graph's (mean pooling, normalized).
Not part of CI: it needs torch, transformers, onnx, onnxscript and onnxruntime.

  python3 bench/ort_baseline.py [--model DIR] [--threads 2] [--seconds 20] [--work DIR]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / ".." / ".." / "shared" / "bench"))
from loadgen import make_corpus  # noqa: E402  (same seeded corpus as the HTTP runs)


def export(model_dir: Path, work: Path) -> tuple[Path, dict[str, Path], int]:
    """The fp32 graph (optimized), its int8 variants, and the model's max_seq_length."""
    import json

    import onnxruntime.transformers.optimizer as optimizer
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoConfig, AutoModel

    work.mkdir(parents=True, exist_ok=True)
    raw, fp32 = work / "model.onnx", work / "model-opt.onnx"
    # Quantizing the optimized graph leaves the fused attention in fp32; quantizing the plain
    # export lets the session fuse around the int8 MatMuls. Both are measured: the best counts.
    int8 = {"int8 (optimized, then quantized)": work / "opt-int8.onnx", "int8 (quantized export)": work / "raw-int8.onnx"}
    config = AutoConfig.from_pretrained(model_dir)
    st = model_dir / "sentence_bert_config.json"
    max_len = json.loads(st.read_text()).get("max_seq_length", 512) if st.exists() else 512
    if not all(p.exists() for p in int8.values()):
        class Hidden(torch.nn.Module):
            """The encoder's last hidden state from positional inputs (forward's order varies)."""

            def __init__(self):
                super().__init__()
                self.model = AutoModel.from_pretrained(model_dir).eval()

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.model(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        model = Hidden().eval()
        ids = torch.ones(2, 8, dtype=torch.long)
        axes = {0: "batch", 1: "sequence"}
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(raw),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,
        )
        optimized = optimizer.optimize_model(
            str(raw),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
        )
        optimized.save_model_to_file(str(fp32))
        import onnx

        # The fused contrib ops (Attention, SkipLayerNormalization) have no inferred types.
        for source, target in zip((fp32, raw), int8.values()):
            quantize_dynamic(
                str(source),
                str(target),
                per_channel=True,
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    return fp32, int8, max_len


class Encoder:
    def __init__(self, path: Path, tokenizer, threads: int, max_len: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer, self.max_len = tokenizer, max_len

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_len,
                return_tensors="np",
            )
            feed = {k: v.astype(np.int64) for k, v in enc.items() if k in self.inputs}
            hidden = self.session.run(None, feed)[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out)


def throughput(encoder: Encoder, texts: list[str], batch_size: int, seconds: float) -> float:
    encoder.encode(texts[:64], batch_size)
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        chunk = [texts[(i + k) % len(texts)] for k in range(32)]
        encoder.encode(chunk, batch_size)
        done += len(chunk)
        i += 32
    return done / (time.perf_counter() - start)


def p50_ms(encoder: Encoder, texts: list[str], seconds: float) -> float:
    latencies, start, i = [], time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        encoder.encode([texts[i % len(texts)]], 1)
        latencies.append((time.perf_counter() - t) * 1e3)
        i += 1
    return statistics.median(latencies)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(HERE / ".." / ".." / "shared" / "models" / "all-MiniLM-L6-v2"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--work", default="/tmp/tessera-ort")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    model_dir = Path(args.model)
    fp32_path, int8_paths, max_len = export(model_dir, Path(args.work))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    mixed = [t for t, _ in make_corpus(2048, 8, 200, 1234)]
    short = [t for t, _ in make_corpus(2048, 10, 10, 1234)]
    paths = {"fp32": fp32_path, **int8_paths}
    encoders = {name: Encoder(path, tokenizer, args.threads, max_len) for name, path in paths.items()}

    # Quality: each int8 graph against the fp32 graph, texts alone and 32 at a time.
    sample = mixed[:256]
    reference = encoders["fp32"].encode(sample, 32)
    for name in int8_paths:
        for batch_size in (1, 32):
            cos = (encoders[name].encode(sample, batch_size) * reference).sum(1)
            print(f"{name} vs fp32 cosine, batch_size {batch_size:>2}: min {cos.min():.5f}  mean {cos.mean():.5f}")

    for name, encoder in encoders.items():
        for batch_size in (1, 32):
            rate = throughput(encoder, mixed, batch_size, args.seconds)
            print(f"{name}: mixed 8-200 words, batch_size {batch_size:>2}: {rate:7.1f} embeddings/s (threads {args.threads})")
        print(f"{name}: one 10-word input: p50 {p50_ms(encoder, short, args.seconds / 2):.2f} ms")


if __name__ == "__main__":
    main()
