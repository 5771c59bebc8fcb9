#!/usr/bin/env python3
"""Load generator for `kvforge serve`: aggregate decode speed with 1, 2, 4, 8,
16 concurrent streams, and the time to first token of a request whose long
prefix is cached against a cold one.

    scripts/bench_serve.py [--bin build/kvforge] [-m MODEL] [--parallel 1,2,4,8,16]
                           [-n 64] [--prefix-tokens 1500] [-t THREADS] [--json-out FILE]

It starts the server itself on a free loopback port (--parallel = the
largest level) and prints a Markdown table. Greedy decoding with ignore_eos,
so every stream generates exactly -n tokens."""
import argparse
import concurrent.futures
import json
import socket
import subprocess
import sys
import time

import httpx


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream(url, prompt, n):
    """Streams one completion; returns (ttft seconds, total seconds, tokens)."""
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif ttft is None:
                ttft = time.perf_counter() - t0
    return ttft, time.perf_counter() - t0, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/kvforge")
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("--parallel", default="1,2,4,8,16")
    ap.add_argument("-n", type=int, default=64, help="tokens per stream")
    ap.add_argument("--prefix-tokens", type=int, default=1500, help="length of the cached prefix (approximate)")
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    levels = [int(x) for x in a.parallel.split(",")]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [a.bin, "serve", "--port", str(port), "--parallel", str(max(levels)), "-c", "2048"]
    if a.model:
        cmd += ["-m", a.model]
    if a.threads:
        cmd += ["-t", str(a.threads)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                sys.exit("server failed: " + proc.stderr.read())
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                sys.exit("server did not start")
            time.sleep(0.2)
        stream(url, "Warm-up.", 4)
        results = {"decode": [], "ttft": {}}
        print("| streams | tokens | seconds | aggregate tok/s | per stream tok/s |")
        print("|---:|---:|---:|---:|---:|")
        for p in levels:
            prompts = [f"Story number {i}: once upon a time" for i in range(p)]
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(p) as ex:
                outs = list(ex.map(lambda q: stream(url, q, a.n), prompts))
            wall = time.perf_counter() - t0
            toks = sum(o[2] for o in outs)
            row = {"streams": p, "tokens": toks, "seconds": wall, "tok_s": toks / wall}
            results["decode"].append(row)
            print(f"| {p} | {toks} | {wall:.2f} | {toks / wall:.1f} | {toks / wall / p:.1f} |", flush=True)
        # Time to first token: a ~prefix-tokens shared prefix, cold then cached.
        prefix = " ".join(f"Fact {i}: the number {i} follows {i - 1}." for i in range(a.prefix_tokens // 12))
        cold, _, _ = stream(url, prefix + "\nQuestion A: what follows 3?", 1)
        warm, _, _ = stream(url, prefix + "\nQuestion B: what follows 7?", 1)
        results["ttft"] = {"cold_s": cold, "cached_s": warm, "ratio": warm / cold}
        print(f"\nTTFT with a cached prefix: {warm * 1000:.0f} ms vs cold {cold * 1000:.0f} ms "
              f"({100 * warm / cold:.1f} %)")
        if a.json_out:
            with open(a.json_out, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
