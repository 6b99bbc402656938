"""Golden parity of a CUDA build of tessera, run by `scripts/gpu-check.sh run` on a GPU machine.

For each carried model: serve it with the flash backend (CUDA flash attention) in float32 and
float16, embed the golden texts, and compare with the goldens (sentence-transformers, float32 on
the CPU). The CUDA kernels compute attention in half precision even for float32 models, so the
bars are cosine similarity (>= 0.9999 for float32, >= 0.999 for float16) rather than the CPU's
1e-4 element bound. Prints one line per case and exits 1 if any case fails.

Usage: python3 gpu_parity.py TESSERA_BINARY MODELS_DIR (each model directory with its golden.json).
"""

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.load(response)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def check(binary, models, model, dtype, bar):
    golden = json.load(open(os.path.join(models, model, "golden.json")))
    port = free_port()
    log = open(f"/tmp/gpu-parity-{model}-{dtype}.log", "w")
    server = subprocess.Popen(
        [binary, "serve", "--model-id", os.path.join(models, model),
         "--port", str(port), "--hostname", "127.0.0.1", "--dtype", dtype, "--auto-truncate",
         "--max-client-batch-size", "64", "--prometheus-port", "0"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(600):
            if server.poll() is not None:
                raise RuntimeError(f"server exited with {server.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10):
                    break
            except OSError:
                time.sleep(0.1)
        info = get(port, "/info")
        vectors = post(port, "/embed", {"inputs": golden["texts"]})
        singles = [post(port, "/embed", {"inputs": text})[0] for text in golden["texts"][:8]]
    finally:
        server.terminate()
        server.wait(timeout=30)
    worst = min(cosine(g, w) for g, w in zip(vectors, golden["embeddings"]))
    worst_single = min(cosine(g, w) for g, w in zip(singles, golden["embeddings"]))
    # A CUDA build that could not open the GPU falls back to the CPU kernel: that is a failure here.
    on_gpu = info.get("attention_kernel") == "flash-cuda"
    ok = on_gpu and worst >= bar and worst_single >= bar
    print(f"{'ok  ' if ok else 'FAIL'} {model:<22} {dtype:<8} kernel {info.get('attention_kernel', '?')}: "
          f"worst cosine batched {worst:.6f}, single {worst_single:.6f} (bar {bar})", flush=True)
    return ok


def main():
    binary, models = sys.argv[1], sys.argv[2]
    results = []
    for model in sorted(os.listdir(models)):
        results.append(check(binary, models, model, "float32", 0.9999))
        results.append(check(binary, models, model, "float16", 0.999))
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
