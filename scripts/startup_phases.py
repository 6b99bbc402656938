#!/usr/bin/env python3
"""Times a tessera pod's start-up as deploy/kubernetes runs it: `tessera download` into an empty
cache (the init container), then `tessera serve` offline from it, with the time each lifecycle
phase begins read off the server's log as it is written. Prints a Markdown table of medians.

usage: startup_phases.py TESSERA_BINARY MODEL_ID RUNS   (HF_ENDPOINT names the hub to use)
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

MARKS = ["listening on", "phase: loading", "phase: warming", "phase: ready"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resident_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one_run(binary, model_id):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, HUGGINGFACE_HUB_CACHE=cache, NO_COLOR="1")
        start = time.monotonic()
        subprocess.run([binary, "download", model_id], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        download = time.monotonic() - start

        env["HF_HUB_OFFLINE"] = "1"
        args = [binary, "serve", "--model-id", model_id, "--hostname", "127.0.0.1",
                "--port", str(free_port()), "--prometheus-port", "0"]
        start = time.monotonic()
        server = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        seen = {}
        try:
            for line in server.stdout:
                for mark in MARKS:
                    if mark in line and mark not in seen:
                        seen[mark] = time.monotonic() - start
                if "phase: ready" in seen:
                    rss = resident_mib(server.pid)
                    break
        finally:
            server.terminate()
            server.wait(timeout=60)
        missing = [m for m in MARKS if m not in seen]
        if missing:
            sys.exit(f"the server never logged {missing}")
        return {
            "download (init container)": download,
            "process start to listening": seen["listening on"],
            "loading (weights read, model built)": seen["phase: warming"] - seen["phase: loading"],
            "warming (one warm-up pass)": seen["phase: ready"] - seen["phase: warming"],
            "serve start to ready": seen["phase: ready"],
        }, rss


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    binary, model_id, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    runs = [one_run(binary, model_id) for _ in range(runs)]
    results = [times for times, _ in runs]
    rss = [r for _, r in runs]
    print(f"| phase ({len(runs)} runs) | median | min | max |")
    print("| --- | --- | --- | --- |")
    for key in results[0]:
        values = [r[key] * 1000 for r in results]
        print(f"| {key} | {statistics.median(values):.0f} ms | {min(values):.0f} ms | {max(values):.0f} ms |")
    print(f"| resident memory when ready | {statistics.median(rss):.0f} MiB | {min(rss):.0f} MiB | {max(rss):.0f} MiB |")


if __name__ == "__main__":
    main()
