#!/usr/bin/env python3
"""Load generator for `kvforge serve`: aggregate decode speed with 1, 2, 4, 8,
16 concurrent streams, and the time to first token of a request whose long
prefix is cached against a cold one.

    scripts/bench_serve.py [--bin build/kvforge] [-m MODEL] [--parallel 1,2,4,8,16]
                           [-n 64] [--prefix-tokens 1500] [-t THREADS] [--json-out FILE]

It starts the server itself on a free loopback port (--parallel = the
largest level) and prints a Markdown table. Greedy decoding with ignore_eos,
so every stream generates exactly -n tokens.

    scripts/bench_serve.py --vs-llamacpp [-m MODEL] [--parallel 1,2,4,8,16] [-n 64]
                           [-d 0] [-r 3] [--passes 3] [-t THREADS] [--json-out FILE]

Instead: the batched decode of the engines themselves, no HTTP. kvforge runs
`kvforge bench --parallel`; llama.cpp runs in a worker process through
llama-cpp-python's low-level API the same way: one sequence prefills -d
random tokens (untimed), the others share that prefix (llama_memory_seq_cp
in a unified KV cache; kvforge forks its blocks), then -n steps each decode
one random token of every sequence in one llama_decode with N sequence ids,
logits for all. The engines alternate over --passes passes (the machine is
noisy); the table compares medians of the per-pass aggregate tokens/s.
Run it with the venv's Python (llama-cpp-python).

    scripts/bench_serve.py --load 60 [--clients 64] [--warmup 10] [--parallel 8] [--queue 16]
                           [-m MODEL] [-t THREADS] [--json-out FILE]

Or: a load test. --clients streaming clients (random prompts, lengths and
sampling options; one request in 8 hangs up after its first token; a 429
or 503 is retried after its Retry-After) keep the server busy for --warmup
seconds, then for --load seconds. Prints the requests finished, refused
(429/503 with Retry-After) and failed (anything else: other statuses, error
events, broken streams), p50/p99 of the time to first token and of the
whole request, the server's resident memory before, after the warm-up,
after the load and 2 s and 10 s after it, and the machine's load average."""
import argparse
import concurrent.futures
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import time

import httpx

REPO = pathlib.Path(__file__).resolve().parents[1]


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


def llama_batched_worker(cfg):
    """llama.cpp's side of --vs-llamacpp; prints one JSON line per level."""
    import random

    import llama_cpp as L

    from bench_vs_llamacpp import load_llama_model, new_llama_context  # this script's folder is on sys.path

    model = load_llama_model(L, cfg["model"])
    max_seq, depth, n_gen = max(cfg["levels"]), cfg["depth"], cfg["n"]
    cp = L.llama_context_default_params()
    cp.n_ctx = depth + max_seq * (n_gen + 1) + 256
    cp.n_batch = cp.n_ubatch = max(512, max_seq)
    cp.n_seq_max = max_seq
    cp.kv_unified = True  # one cell pool: a copied prefix is shared, as kvforge's forked blocks
    cp.n_threads = cp.n_threads_batch = cfg["threads"]
    ctx, n_vocab, mem = new_llama_context(L, model, cp)
    rng = random.Random(cfg["seed"])
    batch = L.llama_batch_init(cp.n_batch, 0, max_seq)

    def decode(entries):  # [(token, pos, seq, logits)]
        batch.n_tokens = len(entries)
        for j, (tok, pos, seq, want) in enumerate(entries):
            batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = tok, pos, 1, want
            batch.seq_id[j][0] = seq
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise SystemExit(f"llama_decode failed ({rc})")

    def setup(n_seq):  # sequence 0 holds the depth, the others share it
        L.llama_memory_clear(mem, True)
        for i0 in range(0, depth, cp.n_batch):
            decode([(rng.randrange(n_vocab), p, 0, False) for p in range(i0, min(depth, i0 + cp.n_batch))])
        for s in range(1, n_seq):
            L.llama_memory_seq_cp(mem, 0, s, -1, -1)

    def steps(n_seq, g):
        t0 = time.perf_counter()
        for i in range(g):
            decode([(rng.randrange(n_vocab), depth + i, s, True) for s in range(n_seq)])
        L.llama_synchronize(ctx)
        return time.perf_counter() - t0

    setup(max_seq)
    steps(max_seq, 1)  # warm-up, as kvforge bench
    for n_seq in sorted(set(cfg["levels"])):
        ts = []
        for _ in range(cfg["reps"]):
            setup(n_seq)
            ts.append(n_seq * n_gen / steps(n_seq, n_gen))
        print(json.dumps({"n_parallel": n_seq, "avg_ts": statistics.fmean(ts)}), flush=True)
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


def default_model(kvforge_bin):
    out = subprocess.run([kvforge_bin, "pull"], capture_output=True, text=True, check=True).stdout.strip()
    return out.splitlines()[-1]


def vs_llamacpp(a, levels):
    model = a.model or default_model(a.bin)
    threads = a.threads or os.cpu_count()
    ours_cmd = [a.bin, "bench", "-m", model, "--parallel", ",".join(map(str, levels)), "-n", str(a.n),
                "-d", str(a.depth), "-r", str(a.reps), "-t", str(threads), "-b", str(max(512, max(levels))),
                "-o", "jsonl"]
    cfg = {"model": model, "levels": levels, "n": a.n, "depth": a.depth, "reps": a.reps, "threads": threads,
           "seed": 1234}
    theirs_cmd = [sys.executable, __file__, "--llama-worker", json.dumps(cfg)]
    ours, theirs = {}, {}
    for p in range(a.passes):
        for name, cmd, into in (("kvforge", ours_cmd, ours), ("llama.cpp", theirs_cmd, theirs)):
            print(f"[bench_serve] pass {p + 1}/{a.passes}: {name}", file=sys.stderr, flush=True)
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{name} failed: {out.stderr.strip()}")
            for line in out.stdout.splitlines():
                j = json.loads(line)
                into.setdefault(j["n_parallel"], []).append(j["avg_ts"])
    print(f"Batched decode, {a.n} steps at depth {a.depth}, {threads} threads, median of {a.passes} passes "
          f"(mean of {a.reps} repetitions each)\n")
    print("| sequences | kvforge t/s | vs 1 | llama.cpp t/s | vs 1 | kvforge / llama.cpp |")
    print("|---:|---:|---:|---:|---:|---:|")
    rows = []
    k1, l1 = statistics.median(ours[min(levels)]), statistics.median(theirs[min(levels)])
    for n in sorted(set(levels)):
        k, l = statistics.median(ours[n]), statistics.median(theirs[n])
        rows.append({"sequences": n, "kvforge_tok_s": k, "llamacpp_tok_s": l, "ratio": k / l,
                     "kvforge_passes": ours[n], "llamacpp_passes": theirs[n]})
        print(f"| {n} | {k:.1f} | {k / k1:.2f}x | {l:.1f} | {l / l1:.2f}x | {k / l:.2f} |", flush=True)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"batched_decode": rows, "n": a.n, "depth": a.depth, "threads": threads}, f, indent=1)


WORDS = ("cache kernel token river mountain story engine paper garden signal window music planet market "
         "teacher bridge number answer question winter").split()


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def load_phase(url, clients, seconds, seed):
    """clients threads send random streamed requests for `seconds`; returns one record per request."""
    import random
    deadline = time.monotonic() + seconds

    def one(h, rng):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60)))
        body = {"prompt": f"Write about {words}.", "max_tokens": rng.randint(4, 48), "stream": True,
                "temperature": rng.choice([0, 0.7, 1.0]), "top_p": rng.choice([1.0, 0.9]),
                "top_k": rng.choice([0, 40]), "seed": rng.randrange(1 << 30)}
        rec = {"status": None, "ttft": None, "seconds": None, "error": None, "hung_up": rng.random() < 1 / 8}
        t0 = time.perf_counter()
        try:
            with h.stream("POST", url + "/v1/completions", json=body) as r:
                rec["status"] = r.status_code
                if r.status_code != 200:
                    r.read()
                    retry = r.headers.get("Retry-After")
                    if r.status_code in (429, 503) and retry:
                        time.sleep(float(retry) * rng.uniform(0.5, 1.5))
                    else:
                        rec["error"] = f"HTTP {r.status_code} without Retry-After"
                    return rec
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        break
                    event = json.loads(line[6:])
                    if "error" in event:
                        rec["error"] = event["error"]["message"]
                        return rec
                    if rec["ttft"] is None:
                        rec["ttft"] = time.perf_counter() - t0
                    if rec["hung_up"]:
                        return rec  # leaving the block closes the connection
                else:
                    rec["error"] = "stream ended without [DONE]"
                    return rec
                rec["seconds"] = time.perf_counter() - t0
        except httpx.HTTPError as e:
            rec["error"] = f"{type(e).__name__}: {e}"
        return rec

    def client(k):
        rng = random.Random(seed * 1000 + k)
        with httpx.Client(timeout=120) as h:
            recs = []
            while time.monotonic() < deadline:
                recs.append(one(h, rng))
            return recs

    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        return [rec for recs in ex.map(client, range(clients)) for rec in recs]


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def load_test(url, pid, a):
    rss_start = rss_bytes(pid)
    load_phase(url, a.clients, a.warmup, seed=1)
    rss_warm = rss_bytes(pid)
    t0 = time.perf_counter()
    recs = load_phase(url, a.clients, a.load, seed=2)
    wall = time.perf_counter() - t0
    rss_after = rss_bytes(pid)
    time.sleep(2)
    rss_idle = rss_bytes(pid)
    time.sleep(8)
    rss_idle_10 = rss_bytes(pid)
    failed = [r for r in recs if r["error"] is not None]
    refused = [r for r in recs if r["status"] in (429, 503) and r["error"] is None]
    full = [r for r in recs if r["seconds"] is not None]
    ttft = [r["ttft"] for r in recs if r["ttft"] is not None and r["error"] is None]
    lat = [r["seconds"] for r in full]
    res = {"clients": a.clients, "seconds": wall, "finished": len(full),
           "hung_up": sum(r["hung_up"] and r["ttft"] is not None and r["error"] is None for r in recs),
           "refused": len(refused), "failed": len(failed), "errors": sorted({r["error"] for r in failed})[:10],
           "ttft_p50": percentile(ttft, 0.5), "ttft_p99": percentile(ttft, 0.99),
           "latency_p50": percentile(lat, 0.5), "latency_p99": percentile(lat, 0.99),
           "rss_start": rss_start, "rss_after_warmup": rss_warm, "rss_after_load": rss_after, "rss_idle": rss_idle,
           "rss_idle_10s": rss_idle_10, "loadavg": os.getloadavg()}
    mib = 1 << 20
    print(f"{a.clients} clients for {wall:.0f} s: {len(full)} requests finished, {res['hung_up']} hung up early, "
          f"{len(refused)} refused (429/503 with Retry-After), {len(failed)} failed")
    for e in res["errors"]:
        print("  failure:", e)
    print(f"time to first token p50 {res['ttft_p50']:.2f} s, p99 {res['ttft_p99']:.2f} s; "
          f"whole request p50 {res['latency_p50']:.2f} s, p99 {res['latency_p99']:.2f} s")
    print(f"server RSS: {rss_start / mib:.1f} MiB before, {rss_warm / mib:.1f} MiB after the warm-up, "
          f"{rss_after / mib:.1f} MiB after the load, {rss_idle / mib:.1f} MiB 2 s and {rss_idle_10 / mib:.1f} MiB "
          f"10 s later")
    print("machine load average (1, 5, 15 min): {:.1f} {:.1f} {:.1f}".format(*res["loadavg"]), flush=True)
    return res


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--llama-worker":
        return llama_batched_worker(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(REPO / "build" / "kvforge"))
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("--parallel", default="1,2,4,8,16")
    ap.add_argument("-n", type=int, default=64, help="tokens per stream")
    ap.add_argument("--prefix-tokens", type=int, default=1500, help="length of the cached prefix (approximate)")
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("--json-out")
    ap.add_argument("--vs-llamacpp", action="store_true", help="batched decode of kvforge vs llama.cpp, no server")
    ap.add_argument("-d", "--depth", type=int, default=0, help="--vs-llamacpp: prefilled tokens shared by all")
    ap.add_argument("-r", "--reps", type=int, default=3, help="--vs-llamacpp: repetitions per pass")
    ap.add_argument("--passes", type=int, default=3, help="--vs-llamacpp: alternating passes per engine")
    ap.add_argument("--load", type=float, default=0, help="a load test of this many seconds instead")
    ap.add_argument("--clients", type=int, default=64, help="--load: concurrent streaming clients")
    ap.add_argument("--warmup", type=float, default=10, help="--load: seconds of load before measuring")
    ap.add_argument("--queue", type=int, default=16, help="--load: the server's --queue")
    a = ap.parse_args()
    levels = [int(x) for x in a.parallel.split(",")]
    if a.vs_llamacpp:
        return vs_llamacpp(a, levels)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [a.bin, "serve", "--port", str(port), "--parallel", str(max(levels)), "-c", "2048"]
    if a.load > 0:
        cmd += ["--queue", str(a.queue)]
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
        if a.load > 0:
            res = load_test(url, proc.pid, a)
            if a.json_out:
                with open(a.json_out, "w") as f:
                    json.dump({"load": res}, f, indent=1)
            return
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
        results["loadavg"] = os.getloadavg()
        print("machine load average (1, 5, 15 min): {:.1f} {:.1f} {:.1f}".format(*results["loadavg"]))
        if a.json_out:
            with open(a.json_out, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
