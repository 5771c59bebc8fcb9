"""`kvforge bench` and scripts/bench_vs_llamacpp.py, with tiny settings: the
instruments work and print what they promise (the numbers themselves are not
checked -- timings on a shared machine are noise)."""
import json
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import REPO, run_kvforge

TINY = ["-p", "16", "-n", "4", "-d", "0,32", "-r", "1", "-t", "2", "--bw-size", "32"]

LLAMA_BENCH_FIELDS = {"n_prompt", "n_gen", "n_depth", "n_threads", "type_k", "type_v", "avg_ts", "stddev_ts",
                      "avg_ns", "samples_ts", "model_filename", "model_type", "model_size", "model_n_params"}
OUR_FIELDS = {"kv_policy", "bytes_per_token_weights", "bytes_per_token_cache", "bandwidth_gbs", "bandwidth_share",
              "peak_rss_bytes"}


def test_bench_jsonl_fields(kvforge_bin, smollm2_gguf, tmp_path):
    side = tmp_path / "bench.jsonl"
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, *TINY, "-o", "jsonl", "--json-out", side, timeout=120)
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(j["n_prompt"], j["n_gen"], j["n_depth"]) for j in lines] == [(16, 0, 0), (0, 4, 0), (0, 4, 32)]
    assert [json.loads(ln) for ln in side.read_text().splitlines()] == lines
    for j in lines:
        assert LLAMA_BENCH_FIELDS | OUR_FIELDS <= j.keys()
        assert j["n_threads"] == 2 and j["type_k"] == "f16" and j["kv_policy"] == "full+f16"
        assert j["avg_ts"] > 0 and len(j["samples_ts"]) == 1 and j["avg_ns"] > 0
        assert j["model_size"] > 50e6 and 100e6 < j["model_n_params"] < 200e6
        assert j["model_type"].startswith("llama ") and j["model_type"].endswith("Q4_1")
        assert j["bandwidth_gbs"] > 0
    pp, tg0, tg32 = lines
    assert pp["bandwidth_share"] is None and pp["bytes_per_token_cache"] == 0
    # SmolLM2-135M: 30 layers x 3 KV heads x 64 x (K+V) x f16 = 23,040 bytes per cached token.
    assert tg0["bytes_per_token_cache"] == 0 and tg32["bytes_per_token_cache"] == 32 * 23040
    assert 50e6 < tg0["bytes_per_token_weights"] <= tg0["model_size"]
    for j in (tg0, tg32):
        expect = j["avg_ts"] * (j["bytes_per_token_weights"] + j["bytes_per_token_cache"]) / (j["bandwidth_gbs"] * 1e9)
        assert j["bandwidth_share"] == pytest.approx(expect, rel=1e-6)


def test_bench_markdown(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, *TINY, timeout=120)
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[:7] == ["model", "size", "params", "backend", "threads", "test", "t/s"]
    assert "B/token" in header and "BW share" in header
    assert set(rows[1]) <= set("|-: ") and rows[1].count("|") == rows[0].count("|")
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in rows[2:]]
    assert [b[5] for b in body] == ["pp16", "tg4 @ d0", "tg4 @ d32"]
    for b in body:
        assert b[3] == "CPU" and b[4] == "2"
        assert re.fullmatch(r"[\d.]+ ± [\d.]+", b[6])
    assert re.fullmatch(r"[\d.]+%", body[1][-1])
    assert "memory bandwidth" in r.stdout and "peak RSS" in r.stdout


def test_bench_no_cache_and_speedup(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "-p", "0", "-n", "3", "-d", "8", "-r", "1", "-t", "2",
                    "--no-cache", "--bw-gbs", "10", "-o", "jsonl", timeout=120)
    (j,) = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert j["use_cache"] is False and j["test"] == "tg3 @ d8 (no cache)" and j["bandwidth_share"] is None
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "--cache-speedup", "6", "--speedup-prompt", "4",
                    "-t", "2", "--bw-gbs", "10", "-o", "jsonl", timeout=120)
    (j,) = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert j["test"] == "cache_speedup" and j["n_gen"] == 6 and j["identical"] is True
    assert j["speedup"] == pytest.approx(j["ts_cache"] / j["ts_no_cache"])


def test_bench_with_token_eviction(kvforge_bin, smollm2_gguf):
    """Eviction budgets and windows are larger than the one-token cache the
    byte count per token is taken from: bench must still run them, and an
    H2O cache of 16 tokens holds 16 of the 40 at depth 40."""
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "-p", "0", "-n", "2", "-d", "40", "-r", "1", "-t", "2",
                    "--bw-gbs", "10", "--kv", "h2o:16;snapkv:16,window:4;window:16", "-o", "jsonl", timeout=120)
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [j["kv_policy"].split("+")[0] for j in lines] == ["h2o:16,recent:8", "snapkv:16,window:4,pool:7",
                                                            "window:16,sinks:4"], lines
    h2o = lines[0]
    assert h2o["avg_ts"] > 0 and h2o["bytes_per_token_cache"] == 16 * 23040


def test_bench_prefill_at_depth(kvforge_bin, smollm2_gguf):
    """--pp-depth: pp tests after an untimed prefill of D tokens, named as
    llama-bench names them; the context holds the deepest one (D + N)."""
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "-p", "8", "-n", "0", "--pp-depth", "0,24", "-r", "1",
                    "-t", "2", "--bw-gbs", "10", "-o", "jsonl", timeout=60)
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(j["test"], j["n_prompt"], j["n_gen"], j["n_depth"]) for j in lines] == [("pp8", 8, 0, 0),
                                                                                   ("pp8 @ d24", 8, 0, 24)]
    assert all(j["n_ctx"] == 32 and j["avg_ts"] > 0 and j["bandwidth_share"] is None for j in lines)
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "-p", "8", "--pp-depth", "-1", check=False)
    assert r.returncode != 0 and "pp-depth" in r.stderr


def test_bench_negative_token_counts_are_errors(kvforge_bin, smollm2_gguf):
    # They used to skip their tests silently and exit 0.
    for opt in ("-p", "-n", "-d", "--pp-depth"):
        r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, opt, "8,-5", "--bw-gbs", "10", check=False,
                        timeout=30)
        assert r.returncode != 0, (opt, r.stdout)
        assert "must be a token count >= 0, not -5" in r.stderr, (opt, r.stderr)
        assert r.stdout == "", (opt, r.stdout)


def test_bandwidth_probe(kvforge_bin):
    r = run_kvforge(kvforge_bin, "bench", "--bandwidth", "-t", "2", "--bw-size", "32", timeout=60)
    assert re.search(r"memory read bandwidth: [\d.]+ GB/s \(2 threads", r.stdout)
    r = run_kvforge(kvforge_bin, "bench", "--bandwidth", "-t", "1", "--bw-size", "32", "-o", "jsonl", timeout=60)
    j = json.loads(r.stdout)
    assert j["n_threads"] == 1 and j["bandwidth_gbs"] > 0.1


def test_bench_bad_output_format(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "-o", "csv", check=False)
    assert r.returncode == 1 and "md or jsonl" in r.stderr


def test_bench_vs_llamacpp_quick(kvforge_bin, smollm2_gguf):
    import llama_cpp  # noqa: F401  (the reference must be installed)
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_vs_llamacpp.py"), "--quick", "-t", "2",
                        "-m", str(smollm2_gguf), "--kvforge-bin", str(kvforge_bin)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {ln.split("|")[1].strip(): ln for ln in r.stdout.splitlines() if ln.startswith("| pp") or ln.startswith("| tg")}
    assert set(rows) == {"pp16", "pp16 @ d32", "tg4 @ d0", "tg4 @ d32"}
    for ln in rows.values():
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0
        assert re.fullmatch(r"[\d.]+x", cells[3])
    assert re.search(r"memory read bandwidth: [\d.]+ GB/s", r.stdout)
    assert re.search(r"kvforge [\d.]+%, llama.cpp [\d.]+% of it", r.stdout)
    assert re.search(r"peak RSS.*kvforge [\d.]+ MiB; llama.cpp [\d.]+ MiB", r.stdout)


def test_bench_parallel(kvforge_bin, smollm2_gguf):
    """--parallel: N sequences decoded together (sorted, 1 first), per depth;
    aggregate t/s and the speed-up over one sequence at the same depth."""
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "--parallel", "3,1", "-n", "3", "-d", "0,20", "-r", "2",
                    "-t", "2", "-o", "jsonl", timeout=120)
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(j["n_depth"], j["n_parallel"]) for j in lines] == [(0, 1), (0, 3), (20, 1), (20, 3)]
    for one, three in (lines[:2], lines[2:]):
        assert one["test"] == three["test"] == "tg_parallel" and one["n_gen"] == 3
        assert len(three["samples_ts"]) == 2 and three["avg_ts"] > 0
        assert one["speedup"] == 1.0 and three["speedup"] == pytest.approx(three["avg_ts"] / one["avg_ts"])
    md = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "--parallel", "2", "-n", "2", "-r", "1", "-t", "2",
                     timeout=120).stdout
    (row,) = [ln for ln in md.splitlines() if "tg2 x2 @ d0" in ln]
    assert row.rstrip().endswith("|  |")  # no 1-sequence run to compare with
    bad = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "--parallel", "8", "-b", "4", check=False)
    assert bad.returncode == 1 and "error: --parallel 8 needs a batch of at least 8 tokens (-b)" in bad.stderr


def test_bench_op_times(kvforge_bin, smollm2_gguf):
    """--op-times: per-op time of decode steps; the rows add up to the step,
    and the bytes per op are the model's matrices by role and the KV rows read."""
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "--op-times", "-n", "3", "-d", "0,16", "-r", "1",
                    "-t", "2", "--bw-gbs", "10", "-o", "jsonl", timeout=120)
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(j["test"], j["n_depth"], j["n_gen"], j["n_threads"]) for j in lines] == [
        ("op_times", 0, 3, 2), ("op_times", 16, 3, 2)]
    for j in lines:
        ops = {o["op"]: o for o in j["ops"]}
        assert sum(o["ms_per_token"] for o in j["ops"]) == pytest.approx(j["ms_per_token"], rel=1e-6)
        assert sum(o["share"] for o in j["ops"]) == pytest.approx(1.0, rel=1e-6)
        assert ops["norms"]["calls_per_token"] == 61 and ops["matmul Q/K/V"]["calls_per_token"] == 30
        assert ops["pool hand-off + wait"]["calls_per_token"] > 0
        # Q4_1: 20 bytes per 32 weights; Q, K, V are 576x576, 192x576 and 192x576, in 30 layers.
        assert ops["matmul Q/K/V"]["bytes_per_token"] == 30 * (576 + 2 * 192) * 576 // 32 * 20
        assert ops["matmul ffn gate+up"]["bytes_per_token"] == 30 * 2 * 1536 * 576 // 32 * 20
        assert ops["matmul attn output"]["gbs"] > 0 and j["bandwidth_gbs"] == 10
    # step i at depth 16 reads 16 + i + 1 cached tokens of 23,040 bytes: 18 on average
    assert {o["op"]: o for o in lines[1]["ops"]}["attention"]["bytes_per_token"] == 18 * 23040
    md = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "--op-times", "-n", "2", "-r", "1", "-t", "1",
                     "--bw-gbs", "10", timeout=120).stdout
    assert re.search(r"op times, tg2 @ d0, 1 threads: [\d.]+ ms/token .* of the 10.0 GB/s bandwidth", md)
    assert "| matmul output head |" in md and "pool hand-off" not in md  # one thread: no pool jobs
    # With --parallel: the batched steps' table, per step, after the speeds.
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "--op-times", "--parallel", "1,2", "-n", "2", "-r", "1",
                    "-t", "2", "-o", "jsonl", timeout=120)
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(j["test"], j["n_parallel"]) for j in lines] == [
        ("tg_parallel", 1), ("tg_parallel", 2), ("op_times", 1), ("op_times", 2)]
    for j in lines[2:]:
        ops = {o["op"]: o for o in j["ops"]}
        assert sum(o["ms_per_token"] for o in j["ops"]) == pytest.approx(j["ms_per_token"], rel=1e-6)
        assert ops["matmul Q/K/V"]["calls_per_token"] == 30  # one matmul per layer for all sequences
        assert ops["KV cache write"]["calls_per_token"] == 30 * j["n_parallel"]  # a write per layer and sequence
        # steps 1 and 2 read 1 and 2 cached rows of each sequence: 1.5 per step on average
        assert ops["attention"]["bytes_per_token"] == 1.5 * j["n_parallel"] * 23040
    md = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "--op-times", "--parallel", "2", "-n", "2", "-r", "1",
                     "-t", "1", timeout=120).stdout
    assert re.search(r"op times, tg2 x2 @ d0, 1 threads: [\d.]+ ms/step \([\d.]+ t/s, all sequences\)", md)
    assert "| op | calls/step | ms/step | % of step | MB/step | GB/s |" in md
    # -n 0: the prefills of -p instead, every row per prompt token; a 32-token
    # prompt is one forward pass, so each matmul's bytes are shared by 32 tokens.
    r = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "--op-times", "-n", "0", "-p", "32", "-r", "1",
                    "-t", "2", "-o", "jsonl", timeout=120)
    [j] = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert (j["test"], j["n_prompt"], j["n_gen"], j["n_depth"]) == ("op_times", 32, 0, 0)
    ops = {o["op"]: o for o in j["ops"]}
    assert sum(o["ms_per_token"] for o in j["ops"]) == pytest.approx(j["ms_per_token"], rel=1e-6)
    assert ops["matmul Q/K/V"]["calls_per_token"] == pytest.approx(30 / 32)
    assert ops["matmul Q/K/V"]["bytes_per_token"] == 30 * (576 + 2 * 192) * 576 // 32 * 20 // 32
    none = run_kvforge(kvforge_bin, "bench", "-m", smollm2_gguf, "--op-times", "-n", "0", "-p", "0", check=False)
    assert none.returncode == 1 and \
        "error: --op-times times decode steps (-n > 0) or, with -n 0, prefills (-p > 0)" in none.stderr
