#!/usr/bin/env python3
"""Decode speed of a convert-mla model against its original, same run.

`kvforge bench -p 0 -n N -d 0,D` on the original (full f16 cache) and on the
converted model (latent cache), alternating over --passes passes (the
machine is noisy); reports the median tok/s of each at depth 0 and D, their
ratio, and the absorbed attention's arithmetic rate at depth D: per decoded
token, every layer and query head scores D latent rows (d_c + rope values)
and sums D value rows (d_c), 2 FLOP per multiply-add, over the time the
depth adds to a step (1/tok/s at D minus at 0; that time also reads the
cache).

    scripts/bench_mla_decode.py --original SmolLM2.gguf --mla smol-mla96.gguf
                                [-d 8192] [-n 32] [--passes 3] [-t T] [--kvforge build/kvforge]
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def bench(kvforge, model, depth, n, threads):
    cmd = [kvforge, "bench", "-m", model, "-p", "0", "-n", str(n), "-d", f"0,{depth}", "-r", "1", "-o", "jsonl",
           "--bw-gbs", "1"]
    if threads:
        cmd += ["-t", str(threads)]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["n_depth"]: r for r in rows}


def inspect(kvforge, model):
    meta = json.loads(subprocess.run([kvforge, "inspect", "--json", model], check=True, capture_output=True,
                                     text=True).stdout)["metadata"]
    return {k: v["value"] for k, v in meta.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original", required=True)
    ap.add_argument("--mla", required=True)
    ap.add_argument("--kvforge", default=str(REPO / "build" / "kvforge"))
    ap.add_argument("-d", "--depth", type=int, default=8192)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("-t", "--threads", type=int, default=0)
    a = ap.parse_args()
    ts = {"original": {0: [], a.depth: []}, "mla": {0: [], a.depth: []}}
    last = {}
    for _ in range(a.passes):
        for name, model in (("mla", a.mla), ("original", a.original)):
            r = bench(a.kvforge, model, a.depth, a.n, a.threads)
            last[name] = r
            for d in (0, a.depth):
                ts[name][d].append(r[d]["avg_ts"])
            print(f"{name}: " + ", ".join(f"d{d} {r[d]['avg_ts']:.2f} t/s" for d in (0, a.depth)), flush=True)
    med = {k: {d: statistics.median(v) for d, v in x.items()} for k, x in ts.items()}
    meta = inspect(a.kvforge, a.mla)
    arch = meta["general.architecture"]
    n_layer, n_head = meta[f"{arch}.block_count"], meta[f"{arch}.attention.head_count"]
    dc = meta["kvforge.mla.kv_lora_rank"]
    n_kv = meta[f"{arch}.attention.head_count_kv"]
    lat = dc + n_kv * meta["kvforge.mla.rope_dims"]
    flop = 2.0 * n_layer * n_head * a.depth * (lat + dc)
    extra_s = 1 / med["mla"][a.depth] - 1 / med["mla"][0]
    print(f"| model | KV B/token | tg{a.n} @ d0 (t/s) | tg{a.n} @ d{a.depth} (t/s) |")
    print("|---|---:|---:|---:|")
    for name in ("original", "mla"):
        r = last[name][a.depth]
        print(f"| {name} | {r['kv_bytes_per_token']:,} | {med[name][0]:.1f} | {med[name][a.depth]:.1f} |")
    print(f"\nlatent / original at depth {a.depth}: {med['mla'][a.depth] / med['original'][a.depth]:.2f}x "
          f"(medians of {a.passes} alternating passes; per-pass t/s: {json.dumps(ts)})")
    print(f"absorbed attention at depth {a.depth}: {flop / 1e9:.2f} GFLOP per token over the "
          f"{extra_s * 1e3:.1f} ms the depth adds: {flop / extra_s / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
