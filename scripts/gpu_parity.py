"""Golden parity and throughput of tessera's CUDA builds, run by `scripts/gpu-check.sh run` on a
GPU machine (and runnable on a CPU build, to check this script itself).

For each binary and each carried model with a golden (`texts` and `embeddings`, from
sentence-transformers or the family's own code, float32 on the CPU): serve it in float32 and
float16, embed the golden texts batched and the first eight one by one, and compare. The bars are
cosine similarity, >= 0.9999 in float32 and >= 0.999 in float16 (flash attention computes in half
precision), and `/info` must report the attention kernel the binary is expected to use (a CUDA
build that could not open the GPU falls back to the CPU's kernel: a failure here). Then, in
float16: 4 clients sending 32 mixed-length inputs each for 20 s (embeddings per second), and one
8192-token input to the ALiBi model (seconds). Prints one line per case; exits 1 if any fails.

Usage: python3 gpu_parity.py MODELS_DIR BINARY=KERNEL [BINARY=KERNEL ...]
  e.g. tessera-cuda=per-sequence tessera-flash=flash-cuda (on a CPU build: tessera=tiled-cpu)
"""

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

# The model the throughput runs on, and the ALiBi model that takes an 8192-token input.
LOAD_MODEL = "bert-tiny"
LONG_MODEL = "jina-tiny"


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
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.load(response)


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.load(response)


def cosine(a, b):
    """1 for two zero vectors (a static model's empty text), 0 for one."""
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return dot / (na * nb)


class Served:
    """`tessera serve` on a free port until the block ends."""

    def __init__(self, binary, model_dir, dtype, extra=()):
        self.port = free_port()
        name = os.path.basename(model_dir)
        self.log = open(f"/tmp/gpu-parity-{os.path.basename(binary)}-{name}-{dtype}.log", "w")
        self.server = subprocess.Popen(
            [binary, "serve", "--model-id", model_dir, "--port", str(self.port),
             "--hostname", "127.0.0.1", "--dtype", dtype, "--auto-truncate",
             "--max-client-batch-size", "64", "--prometheus-port", "0", *extra],
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def __enter__(self):
        for _ in range(1200):
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited with {self.server.returncode} (log: {self.log.name})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=10):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server not ready in 120 s (log: {self.log.name})")

    def __exit__(self, *_):
        self.server.terminate()
        self.server.wait(timeout=60)


def parity(binary, kernel, model_dir, golden, dtype, bar):
    name = os.path.basename(model_dir)
    try:
        with Served(binary, model_dir, dtype) as s:
            info = get(s.port, "/info")
            # Goldens past a model's max_seq_length were cut by sentence-transformers, as here.
            vectors = post(s.port, "/embed", {"inputs": golden["texts"], "truncate": True})
            singles = [post(s.port, "/embed", {"inputs": t, "truncate": True})[0] for t in golden["texts"][:8]]
    except (RuntimeError, OSError) as e:
        print(f"FAIL {os.path.basename(binary):<14} {name:<28} {dtype:<8} {e}", flush=True)
        return False
    worst = min(cosine(g, w) for g, w in zip(vectors, golden["embeddings"]))
    worst_single = min(cosine(g, w) for g, w in zip(singles, golden["embeddings"]))
    got_kernel = info.get("attention_kernel", "?")
    # A static embedding model has no attention ("none"); every other must run the expected kernel.
    ok = got_kernel in (kernel, "none") and worst >= bar and worst_single >= bar
    print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(binary):<14} {name:<28} {dtype:<8} kernel {got_kernel}: "
          f"worst cosine batched {worst:.6f}, single {worst_single:.6f} (bar {bar})", flush=True)
    return ok


def throughput(binary, models):
    """4 clients x 32 mixed-length inputs for 20 s; one 8192-token input. Figures only."""
    texts = [" ".join(["word"] * (4 + (i * 37) % 200)) for i in range(32)]
    done = [0]
    lock = threading.Lock()
    with Served(binary, os.path.join(models, LOAD_MODEL), "float16") as s:
        stop = time.monotonic() + 20

        def client():
            while time.monotonic() < stop:
                post(s.port, "/embed", {"inputs": texts})
                with lock:
                    done[0] += len(texts)

        clients = [threading.Thread(target=client) for _ in range(4)]
        started = time.monotonic()
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        rate = done[0] / (time.monotonic() - started)
    print(f"     {os.path.basename(binary):<14} {LOAD_MODEL}: 4 x 32 mixed inputs, float16: {rate:.0f} embeddings/s",
          flush=True)
    with Served(binary, os.path.join(models, LONG_MODEL), "float16",
                ["--max-batch-tokens", "16384"]) as s:
        ids = [[101] + [1000 + i % 5000 for i in range(8190)] + [102]]
        post(s.port, "/embed", {"inputs": "warm up"})
        started = time.monotonic()
        post(s.port, "/embed", {"inputs": ids})
        print(f"     {os.path.basename(binary):<14} {LONG_MODEL}: one 8192-token input, float16: "
              f"{time.monotonic() - started:.3f} s", flush=True)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    models = sys.argv[1]
    binaries = [arg.split("=", 1) for arg in sys.argv[2:]]
    results = []
    for binary, kernel in binaries:
        for name in sorted(os.listdir(models)):
            path = os.path.join(models, name, "golden.json")
            if not os.path.isfile(path):
                continue
            golden = json.load(open(path))
            if "embeddings" not in golden or "texts" not in golden:
                continue
            results.append(parity(binary, kernel, os.path.join(models, name), golden, "float32", 0.9999))
            results.append(parity(binary, kernel, os.path.join(models, name), golden, "float16", 0.999))
    for binary, _ in binaries:
        throughput(binary, models)
    failed = results.count(False)
    print(f"{len(results) - failed} of {len(results)} parity cases passed", flush=True)
    sys.exit(0 if results and not failed else 1)


if __name__ == "__main__":
    main()
