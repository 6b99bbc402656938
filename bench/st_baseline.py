#!/usr/bin/env python3
"""sentence-transformers baseline for the load benchmark (issue: flash backend figures).

Encodes the load generator's corpus in-process with torch on N threads and prints embeddings/s for
batch sizes 1 and 32, and the p50 latency of encoding one 10-word input. Not part of CI: it needs
torch (`pip install sentence-transformers`, about 3 GB with its CUDA wheels).

  python3 bench/st_baseline.py [--model DIR] [--threads 2] [--seconds 20]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / ".." / ".." / "shared" / "bench"))
from loadgen import make_corpus  # noqa: E402  (same seeded corpus as the HTTP runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(HERE / ".." / ".." / "shared" / "models" / "all-MiniLM-L6-v2"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model, device="cpu")
    mixed = [t for t, _ in make_corpus(2048, 8, 200, 1234)]
    short = [t for t, _ in make_corpus(2048, 10, 10, 1234)]

    for batch_size in (1, 32):
        model.encode(mixed[:64], batch_size=batch_size)
        done, start, i = 0, time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            chunk = [mixed[(i + k) % len(mixed)] for k in range(32)]
            model.encode(chunk, batch_size=batch_size)
            done += len(chunk)
            i += 32
        rate = done / (time.perf_counter() - start)
        print(f"mixed 8-200 words, batch_size {batch_size:>2}: {rate:7.1f} embeddings/s (torch threads {args.threads})")

    latencies = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < args.seconds / 2:
        t = time.perf_counter()
        model.encode([short[i % len(short)]], batch_size=1)
        latencies.append((time.perf_counter() - t) * 1e3)
        i += 1
    print(f"one 10-word input: p50 {statistics.median(latencies):.2f} ms over {len(latencies)} calls")


if __name__ == "__main__":
    main()
