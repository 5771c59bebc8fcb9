#!/usr/bin/env python3
"""kvforge vs llama.cpp, side by side in one run.

Same GGUF, same threads, same tests (pp N from an empty cache, or at depth D
with --pp-depth; tg N at depth D), same context size. kvforge runs as `kvforge bench -o jsonl`; llama.cpp
runs through llama-cpp-python's low-level API (llama_decode on a llama_batch,
no Python sampling loop) in a worker subprocess that mirrors kvforge bench:
one context, one warm-up, random token ids, prefill of the depth untimed,
pp timed as the N tokens after it, tg as N single-token llama_decode calls.

The machine is noisy, so the two engines alternate over several passes and
the report compares medians of the per-pass mean tokens/s. Also reported:
the measured memory bandwidth (`kvforge bench --bandwidth`), each engine's
share of it at tg depth 0, and each engine's peak resident memory (ru_maxrss
of its process, via wait4; for llama.cpp also without the Python interpreter
it runs in, measured just before the model is loaded).

    scripts/bench_vs_llamacpp.py [-m GGUF] [-t 2] [-p 128,512] [-n 128] [-d 0,512,2048] [--pp-depth 0,2048]
                                 [-r 3] [--passes 3] [--quick] [--json-out FILE]
                                 [--variants q4_k_m,q5_0,...|all]

--variants: -m requantized by llama.cpp's quantizer to each mix (cached in
~/.cache/kvforge/bench/), every variant run by both engines in every pass,
one table with a row per variant.

Run it with the venv's Python (llama-cpp-python, gguf).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "kvforge"


def int_list(s):
    return [int(x) for x in s.split(",") if x.strip() != ""]


# --------------------------------------------------------------------------
# llama.cpp worker (runs in its own process so its memory is measured alone)
# --------------------------------------------------------------------------

def load_llama_model(L, path):
    """llama.cpp's backend and the model, on the CPU (llama_cpp module L)."""
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        raise SystemExit("llama.cpp could not load " + path)
    return model


def new_llama_context(L, model, cp):
    """A context with the params cp, without perf counters: (ctx, n_vocab, its memory)."""
    cp.no_perf = True
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit("llama.cpp could not create a context")
    return ctx, L.llama_vocab_n_tokens(L.llama_model_get_vocab(model)), L.llama_get_memory(ctx)


def llama_worker(cfg):
    import random
    import resource

    import llama_cpp as L

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = load_llama_model(L, cfg["model"])
    cp = L.llama_context_default_params()
    cp.n_ctx = cfg["n_ctx"]
    cp.n_batch = cfg["n_batch"]
    cp.n_ubatch = cfg["n_batch"]
    cp.n_seq_max = 1
    cp.n_threads = cfg["threads"]
    cp.n_threads_batch = cfg["threads"]
    cp.flash_attn_type = {"auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                          "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED}[cfg["flash_attn"]]
    ctx, n_vocab, mem = new_llama_context(L, model, cp)
    n_batch = cfg["n_batch"]
    rng = random.Random(cfg["seed"])
    buf = (L.llama_token * n_batch)()

    def decode(tokens):
        # Chunks of n_batch tokens; positions follow the cache, only the last
        # token of each chunk produces logits (as llama-bench does).
        for i0 in range(0, len(tokens), n_batch):
            chunk = tokens[i0:i0 + n_batch]
            for j, t in enumerate(chunk):
                buf[j] = t
            rc = L.llama_decode(ctx, L.llama_batch_get_one(buf, len(chunk)))
            if rc != 0:
                raise SystemExit(f"llama_decode failed ({rc})")

    def rand_tokens(n):
        return [rng.randrange(n_vocab) for _ in range(n)]

    # Warm-up, once (as kvforge bench): one prefill batch and one decode step.
    # It leaves room for the decode step when the context is exactly pp long.
    warm = max(1, min(max([min(p, n_batch) for p in cfg["pp"]] + [1]), cfg["n_ctx"] - 1))
    decode(rand_tokens(warm))
    decode(rand_tokens(1))
    L.llama_memory_clear(mem, True)

    tests = [(p, 0, d) for d in cfg["pp_depths"] for p in cfg["pp"]] + \
        [(0, n, d) for d in cfg["depths"] for n in cfg["tg"]]
    for n_prompt, n_gen, depth in tests:
        samples = []
        for _ in range(cfg["reps"]):
            L.llama_memory_clear(mem, True)
            if n_gen == 0:
                if depth:
                    decode(rand_tokens(depth))
                toks = rand_tokens(n_prompt)
                t0 = time.perf_counter_ns()
                decode(toks)
                L.llama_synchronize(ctx)
                samples.append(time.perf_counter_ns() - t0)
            else:
                if depth:
                    decode(rand_tokens(depth))
                toks = rand_tokens(n_gen)
                t0 = time.perf_counter_ns()
                for t in toks:
                    buf[0] = t
                    rc = L.llama_decode(ctx, L.llama_batch_get_one(buf, 1))
                    if rc != 0:
                        raise SystemExit(f"llama_decode failed ({rc})")
                L.llama_synchronize(ctx)
                samples.append(time.perf_counter_ns() - t0)
        n = n_gen or n_prompt
        ts = [n * 1e9 / s for s in samples]
        print(json.dumps({"n_prompt": n_prompt, "n_gen": n_gen, "n_depth": depth, "n_threads": cfg["threads"],
                          "avg_ts": statistics.fmean(ts), "stddev_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0,
                          "samples_ts": ts, "model_size": L.llama_model_size(model),
                          "model_n_params": L.llama_model_n_params(model)}), flush=True)
    L.llama_free(ctx)
    L.llama_model_free(model)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss_bytes": peak, "baseline_rss_bytes": base_rss}), flush=True)


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------

def run_measured(cmd):
    """Runs cmd (built by measured_cmd), returns (stdout, stderr)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    if p.returncode != 0:
        sys.stderr.write(err)
        raise SystemExit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}")
    return out, err


def measured_cmd(cmd):
    """Wraps cmd so that its own peak RSS is printed last on stderr
    (a tiny Python parent that wait4()s for it)."""
    code = ("import os,sys\n"
            "pid=os.fork()\n"
            "if pid==0:\n"
            "    os.execvp(sys.argv[1], sys.argv[1:])\n"
            "_,st,ru=os.wait4(pid,0)\n"
            "sys.stderr.write('\\n@@maxrss %d\\n' % (ru.ru_maxrss*1024))\n"
            "sys.exit(os.waitstatus_to_exitcode(st))\n")
    return [sys.executable, "-c", code, *map(str, cmd)]


def split_rss(err):
    for line in reversed(err.splitlines()):
        if line.startswith("@@maxrss "):
            return int(line.split()[1])
    return None


def model_positions(path):
    """(architecture, training context) from the GGUF metadata."""
    from gguf import GGUFReader
    r = GGUFReader(str(path))

    def val(key):
        f = r.fields.get(key)
        if f is None:
            return None
        v = f.parts[f.data[0]]
        return bytes(v).decode() if f.types and f.types[0].name == "STRING" else int(v[0])

    arch = val("general.architecture")
    return arch, val(f"{arch}.context_length")


# The quantized variants of issue 13 (llama.cpp mix names; "-pure": the main
# type wherever it fits), made from -m by llama.cpp's quantizer.
ALL_VARIANTS = ["q4_k_m", "q5_k_m", "q3_k_m", "q2_k", "iq4_xs", "q6_k", "q5_0", "q8_0"]


def variant_file(src, name):
    """src requantized to the mix `name`, cached in ~/.cache/kvforge/bench/."""
    from gguf_quantize import quantize_gguf
    mix, pure = (name[:-5], True) if name.endswith("-pure") else (name, False)
    dst = cache_dir() / "bench" / f"{src.stem}.{name}.gguf"
    if not dst.exists():
        print(f"quantizing {src.name} to {name} with llama.cpp -> {dst}", file=sys.stderr, flush=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".tmp")
        try:
            quantize_gguf(src, tmp, mix, pure)
        except (ValueError, RuntimeError) as e:
            raise SystemExit(f"error: variant {name}: {e}")
        tmp.rename(dst)
    return dst


def type_shares(path):
    """'TYPE pct%, ...' of the tensor bytes of a GGUF, largest first."""
    from gguf import GGUFReader
    size = {}
    for t in GGUFReader(str(path)).tensors:
        size[t.tensor_type.name] = size.get(t.tensor_type.name, 0) + int(t.n_bytes)
    total = sum(size.values())
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(size.items(), key=lambda kv: -kv[1]))


def run_kvforge_bench(a, model, pp, tg, depths, pp_depths, n_ctx, bw):
    """One `kvforge bench` run: ({(n_prompt, n_gen, n_depth): record}, peak RSS)."""
    cmd = [a.kvforge_bin, "bench", "-m", model, "-t", a.threads, "-p", ",".join(map(str, pp)) or "0",
           "-n", ",".join(map(str, tg)) or "0", "-d", ",".join(map(str, depths)) or "0",
           "--pp-depth", ",".join(map(str, pp_depths)) or "0",
           "-r", a.reps, "-b", a.batch, "-c", n_ctx, "--seed", a.seed, "--bw-gbs", f"{bw:.3f}", "-o", "jsonl"]
    out, err = run_measured(measured_cmd(cmd))
    recs = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    return {(r["n_prompt"], r["n_gen"], r["n_depth"]): r for r in recs}, split_rss(err)


def run_llama_bench(a, model, pp, tg, depths, pp_depths, n_ctx):
    """One llama.cpp worker run: (records by test, peak RSS, peak RSS without the interpreter)."""
    cfg = {"model": str(model), "threads": a.threads, "n_ctx": n_ctx, "n_batch": a.batch, "pp": pp,
           "tg": tg, "depths": depths, "pp_depths": pp_depths, "reps": a.reps, "seed": a.seed, "flash_attn": a.flash_attn}
    out, err = run_measured(measured_cmd([sys.executable, __file__, "--llama-worker", json.dumps(cfg)]))
    recs = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    tail = [r for r in recs if "peak_rss_bytes" in r][-1]
    return ({(r["n_prompt"], r["n_gen"], r["n_depth"]): r for r in recs if "avg_ts" in r}, split_rss(err),
            tail["peak_rss_bytes"] - tail["baseline_rss_bytes"])


def test_label(t):
    """llama-bench's test names: pp512, pp512 @ d2048, tg128 @ d0."""
    p, n, d = t
    if n == 0:
        return f"pp{p} @ d{d}" if d else f"pp{p}"
    return f"tg{n} @ d{d}"


def compare(m, tests):
    """Rows comparing the medians of the per-pass means of model state m."""
    med = statistics.median
    rows = []
    for t in tests:
        k = [run[t]["avg_ts"] for run in m["kvf_runs"] if t in run]
        ll = [run[t]["avg_ts"] for run in m["llm_runs"] if t in run]
        if k and ll:
            rows.append({"test": test_label(t), "n_prompt": t[0], "n_gen": t[1], "n_depth": t[2],
                         "kvforge_ts": med(k), "llama_cpp_ts": med(ll), "ratio": med(k) / med(ll),
                         "kvforge_passes": k, "llama_cpp_passes": ll})
    return rows


def report_one(a, m, tests, n_ctx, bw, bw_runs):
    """The table of one model, its bandwidth shares and peak RSS."""
    model = m["path"]
    first = next(iter(m["kvf_runs"][0].values()), {})
    w_bytes = first.get("bytes_per_token_weights")
    kv_bpt = first.get("kv_bytes_per_token")
    print(f"## kvforge vs llama.cpp: {first.get('model_type', model.name)}\n")
    print(f"model `{model}`, {a.threads} threads, context {n_ctx} tokens, n_batch = n_ubatch = {a.batch}, "
          f"KV cache f16 (both), llama.cpp flash_attn {a.flash_attn}, {a.reps} reps x {a.passes} alternating passes, "
          f"medians of the per-pass means\n")
    print("| test | kvforge t/s | llama.cpp t/s | ratio | kvforge per pass | llama.cpp per pass |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    results = compare(m, tests)
    for row in results:
        print(f"| {row['test']} | {row['kvforge_ts']:.2f} | {row['llama_cpp_ts']:.2f} | {row['ratio']:.2f}x | "
              f"{', '.join(f'{x:.1f}' for x in row['kvforge_passes'])} | "
              f"{', '.join(f'{x:.1f}' for x in row['llama_cpp_passes'])} |")
    print(f"\nmemory read bandwidth: {bw:.1f} GB/s ({a.threads} threads; passes: "
          f"{', '.join(f'{x:.1f}' for x in bw_runs)})")
    if w_bytes:
        print(f"bytes read per decoded token: weights {w_bytes / 1e6:.1f} MB + KV cache {kv_bpt} B/token x depth")
        tg0 = [r for r in results if r["n_gen"] and r["n_depth"] == 0]
        if tg0:
            r = tg0[0]
            ceiling = bw * 1e9 / w_bytes
            print(f"bandwidth ceiling at depth 0: {ceiling:.0f} tok/s; {r['test']}: kvforge "
                  f"{100 * r['kvforge_ts'] / ceiling:.1f}%, llama.cpp {100 * r['llama_cpp_ts'] / ceiling:.1f}% "
                  f"of it")
            r["kvforge_bw_share"] = r["kvforge_ts"] / ceiling
            r["llama_cpp_bw_share"] = r["llama_cpp_ts"] / ceiling
    rss = m["rss"]

    def mib(x):
        return f"{x / 2**20:.1f} MiB" if x else "n/a"
    print(f"\npeak RSS, same context of {n_ctx} tokens (max over passes): kvforge {mib(max(rss['kvforge']))}; "
          f"llama.cpp {mib(max(rss['llama.cpp']))} including the Python interpreter, "
          f"{mib(max(rss['llama.cpp (net)']))} without it")
    return results


def report_variants(a, models, tests, n_ctx, bw, bw_runs):
    """One table: a row per variant, kvforge / llama.cpp / ratio per test."""
    print(f"## kvforge vs llama.cpp: quantized variants of {pathlib.Path(a.model).name}\n")
    print(f"{a.threads} threads, context {n_ctx} tokens, n_batch = n_ubatch = {a.batch}, KV cache f16 (both), "
          f"llama.cpp flash_attn {a.flash_attn}, {a.reps} reps x {a.passes} alternating passes, medians of the "
          f"per-pass means (t/s: kvforge / llama.cpp = ratio)\n")
    print("| variant | MiB | " + " | ".join(test_label(t) for t in tests) + " |")
    print("| --- | ---: |" + " ---: |" * len(tests))
    results = {}
    for m in models:
        rows = compare(m, tests)
        results[m["label"]] = rows
        cells = [f"{r['kvforge_ts']:.1f} / {r['llama_cpp_ts']:.1f} = **{r['ratio']:.2f}x**" for r in rows]
        print(f"| {m['label']} | {m['path'].stat().st_size / 2**20:.0f} | " + " | ".join(cells) + " |")
    print("\nper pass (kvforge / llama.cpp t/s):")
    for m in models:
        for r in results[m["label"]]:
            print(f"  {m['label']:>10} {r['test']:>14}: " + ", ".join(f"{k:.1f}" for k in r["kvforge_passes"]) +
                  " / " + ", ".join(f"{x:.1f}" for x in r["llama_cpp_passes"]))
    print("\ntensor bytes by type:")
    for m in models:
        print(f"  {m['label']:>10}: {type_shares(m['path'])}")
    print(f"\nmemory read bandwidth: {bw:.1f} GB/s ({a.threads} threads; passes: "
          f"{', '.join(f'{x:.1f}' for x in bw_runs)})")
    return results


def main():
    ap = argparse.ArgumentParser(description="kvforge vs llama.cpp, same GGUF, threads and tests")
    ap.add_argument("-m", "--model", default=str(cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--variants", help="instead of -m itself: -m requantized by llama.cpp to each of these mixes "
                    "(comma-separated, e.g. q4_k_m,q5_0; a '-pure' suffix: the main type wherever it fits; 'all': "
                    + ",".join(ALL_VARIANTS) + "), cached in ~/.cache/kvforge/bench/; one table")
    ap.add_argument("-t", "--threads", type=int, default=None, help="threads for both (default: kvforge's default)")
    ap.add_argument("-p", "--n-prompt", type=int_list, default=[512])
    ap.add_argument("-n", "--n-gen", type=int_list, default=[128])
    ap.add_argument("-d", "--n-depth", type=int_list, default=[0, 512, 2048], help="depths of the tg tests")
    ap.add_argument("--pp-depth", type=int_list, default=[0],
                    help="depths of the pp tests: D tokens prefilled untimed, then the pp tokens timed (ppN @ dD)")
    ap.add_argument("-r", "--reps", type=int, default=3, help="repetitions per test within a pass")
    ap.add_argument("--passes", type=int, default=3, help="alternating passes (kvforge, llama.cpp, ...)")
    ap.add_argument("-b", "--batch", type=int, default=512, help="n_batch = n_ubatch for both")
    ap.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto",
                    help="llama.cpp flash attention (llama.cpp's default: auto)")
    ap.add_argument("--kvforge-bin", default=str(REPO / "build" / "kvforge"))
    ap.add_argument("--bw-size", type=int, default=1024, help="bandwidth probe buffer, MiB")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--quick", action="store_true",
                    help="tiny smoke run: -p 16 -n 4 -d 0,32 --pp-depth 0,32 -r 1 --passes 2")
    ap.add_argument("--json-out", help="write all raw results to this JSON file")
    ap.add_argument("--llama-worker", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.llama_worker:
        llama_worker(json.loads(a.llama_worker))
        return
    if a.quick:
        a.n_prompt, a.n_gen, a.n_depth, a.reps, a.passes, a.bw_size = [16], [4], [0, 32], 1, 2, 64
        a.pp_depth = [0, 32]
    model = pathlib.Path(a.model)
    if not model.exists():
        raise SystemExit(f"model not found: {model}")
    if a.variants:
        names = ALL_VARIANTS if a.variants == "all" else [v.strip().lower() for v in a.variants.split(",") if v.strip()]
        paths = [(v, variant_file(model, v)) for v in names]
    else:
        paths = [(model.name, model)]
    models = [{"label": label, "path": p, "kvf_runs": [], "llm_runs": [],
               "rss": {"kvforge": [], "llama.cpp": [], "llama.cpp (net)": []}} for label, p in paths]
    a.kvforge_bin = pathlib.Path(a.kvforge_bin)
    if a.threads is None:
        out = subprocess.run([str(a.kvforge_bin), "sysinfo"], capture_output=True, text=True, check=True).stdout
        a.threads = int([ln.split()[1] for ln in out.splitlines() if ln.startswith("threads:")][0])

    # Tests that fit: learned positions (GPT-2) cap the context.
    arch, n_ctx_train = model_positions(model)
    limit = n_ctx_train if arch == "gpt2" and n_ctx_train else None
    depths = [d for d in a.n_depth if limit is None or d + max(a.n_gen) <= limit]
    pp = [p for p in a.n_prompt if p > 0 and (limit is None or p <= limit)]
    pp_depths = [d for d in a.pp_depth if limit is None or d + max(pp, default=0) <= limit]
    tg = [n for n in a.n_gen if n > 0]
    for d in sorted(set(a.n_depth) - set(depths)) + sorted(set(a.pp_depth) - set(pp_depths)):
        print(f"note: depth {d} skipped: {arch} has {n_ctx_train} learned positions", file=sys.stderr)
    n_ctx = max([*[d + p for d in pp_depths for p in pp], *[d + n for d in depths for n in tg], 1])
    tests = [(p, 0, d) for d in pp_depths for p in pp] + [(0, n, d) for d in depths for n in tg]

    def report():
        bw = statistics.median(bw_runs)
        if a.variants:
            results = report_variants(a, models, tests, n_ctx, bw, bw_runs)
        else:
            results = report_one(a, models[0], tests, n_ctx, bw, bw_runs)
        print(f"machine load (1-minute load average at the start of each pass; {os.cpu_count()} CPUs): "
              f"{', '.join(f'{x:.2f}' for x in loads)}")
        print(f"\n({time.time() - t_start:.0f} s)")
        if a.json_out:
            pathlib.Path(a.json_out).write_text(json.dumps({
                "model": str(model), "threads": a.threads, "n_ctx": n_ctx, "bandwidth_gbs": bw,
                "bandwidth_passes": bw_runs, "load_average_passes": loads, "tests": results,
                "variants": {m["label"]: str(m["path"]) for m in models} if a.variants else None,
                "peak_rss_bytes": {m["label"]: m["rss"] for m in models} if a.variants else models[0]["rss"],
                "kvforge_raw": {m["label"]: [list(r.values()) for r in m["kvf_runs"]] for m in models},
                "llama_cpp_raw": {m["label"]: [list(r.values()) for r in m["llm_runs"]] for m in models}}, indent=1))
        sys.stdout.flush()

    bw_runs, loads = [], []
    t_start = time.time()
    for i in range(a.passes):
        out = subprocess.run([str(a.kvforge_bin), "bench", "--bandwidth", "-t", str(a.threads), "--bw-size",
                              str(a.bw_size), "-o", "jsonl"], capture_output=True, text=True, check=True).stdout
        bw = json.loads(out.splitlines()[-1])["bandwidth_gbs"]
        bw_runs.append(bw)
        loads.append(os.getloadavg()[0])
        order = ["kvforge", "llama.cpp"] if i % 2 == 0 else ["llama.cpp", "kvforge"]
        for m in models:
            for engine in order:
                print(f"[pass {i + 1}/{a.passes}] {m['label']}: {engine} ...", file=sys.stderr, flush=True)
                if engine == "kvforge":
                    recs, peak = run_kvforge_bench(a, m["path"], pp, tg, depths, pp_depths, n_ctx, bw)
                    m["kvf_runs"].append(recs)
                    m["rss"]["kvforge"].append(peak)
                else:
                    recs, peak, net = run_llama_bench(a, m["path"], pp, tg, depths, pp_depths, n_ctx)
                    m["llm_runs"].append(recs)
                    m["rss"]["llama.cpp"].append(peak)
                    m["rss"]["llama.cpp (net)"].append(net)
        if a.variants and i + 1 < a.passes:  # long runs: the table so far after every pass
            print(f"### after pass {i + 1} of {a.passes}\n")
            report()
    report()



if __name__ == "__main__":
    main()
