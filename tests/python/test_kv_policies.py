"""KV-cache policies (--kv) on the real SmolLM2-135M through the CLI: a window
longer than the text is the full cache, a window keeps generating past the
context in constant memory, and quantized caches stay close to f16."""
import json

import numpy as np
import pytest

from conftest import run_kvforge
from reference_models import kvforge_logits, kvforge_tokenize

PROMPT = "The history of the printing press begins"
F16_BYTES_PER_TOKEN = 30 * 3 * 64 * 2 * 2  # 23,040: 30 layers, 3 KV heads of 64, K and V, f16


def _greedy(kvforge_bin, model, tmp_path, n, *extra, prompt=PROMPT):
    out = tmp_path / "run.json"
    run_kvforge(kvforge_bin, "run", "-m", model, "-p", prompt, "-n", n, "--temp", "0", "--ignore-eos",
                "--json-out", out, *extra, timeout=1800)
    return json.loads(out.read_text())


def test_window_longer_than_the_text_equals_full(kvforge_bin, smollm2_gguf, tmp_path):
    full = _greedy(kvforge_bin, smollm2_gguf, tmp_path, 96)
    for kv in ("window:512", "window:100,sinks:4", "window:200,sinks:0"):
        win = _greedy(kvforge_bin, smollm2_gguf, tmp_path, 96, "--kv", kv)
        assert win["tokens"] == full["tokens"], kv


def test_window_generates_past_the_context_in_constant_memory(kvforge_bin, smollm2_gguf, tmp_path):
    full = _greedy(kvforge_bin, smollm2_gguf, tmp_path, 300, "-c", "128")
    assert full["stop_reason"] == "context full"
    assert len(full["prompt_tokens"]) + len(full["tokens"]) <= 129
    short = _greedy(kvforge_bin, smollm2_gguf, tmp_path, 100, "-c", "128", "--kv", "window:64,sinks:4")
    long = _greedy(kvforge_bin, smollm2_gguf, tmp_path, 300, "-c", "128", "--kv", "window:64,sinks:4")
    assert long["stop_reason"] == "length" and len(long["tokens"]) == 300
    # Constant memory: 68 cells whatever the length, all of them in use.
    assert long["kv_bytes"] == short["kv_bytes"] == 68 * F16_BYTES_PER_TOKEN
    assert long["kv_bytes_used"] == long["kv_bytes"]
    assert long["kv_bytes_per_token"] == F16_BYTES_PER_TOKEN
    # Until the ring wraps (68 tokens) the window is the full cache.
    n_same = 68 - len(long["prompt_tokens"])
    assert long["tokens"][:n_same] == full["tokens"][:n_same]


def test_context_shift_keeps_full_policy_going(kvforge_bin, smollm2_gguf, tmp_path):
    # -c 64: every shift keeps 4 + 30 tokens, so 150 new tokens need several shifts.
    r = _greedy(kvforge_bin, smollm2_gguf, tmp_path, 150, "-c", "64", "--context-shift")
    assert r["stop_reason"] == "length" and len(r["tokens"]) == 150
    assert r["n_shifts"] >= 3
    assert r["kv_bytes"] == 64 * F16_BYTES_PER_TOKEN
    # Before the first shift it is the plain full cache.
    plain = _greedy(kvforge_bin, smollm2_gguf, tmp_path, 150, "-c", "64")
    assert plain["stop_reason"] == "context full"
    assert r["tokens"][:len(plain["tokens"])] == plain["tokens"]


@pytest.mark.parametrize("kv,per_token", [("q8", 12240), ("q4", 6480), ("q4,hadamard", 6480),
                                          ("window:64+q8", 12240)])
def test_quantized_runs_complete_with_exact_bytes(kvforge_bin, smollm2_gguf, tmp_path, kv, per_token):
    r = _greedy(kvforge_bin, smollm2_gguf, tmp_path, 100, "--kv", kv)
    assert len(r["tokens"]) == 100 and r["stop_reason"] == "length"
    assert r["kv_bytes_per_token"] == per_token


def _common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_q8_greedy_agrees_with_f16(kvforge_bin, smollm2_gguf, tmp_path):
    # Criterion: q8 follows f16's greedy tokens for at least 4 tokens on every
    # prompt, and where it first leaves them f16 itself was on a near-tie: its
    # logit for its own token beats its logit for q8's token by less than 0.5.
    # q8 K/V rounding moves this model's logits by about 0.1 (measured: the
    # first divergences here sit at f16 margins of 0.05-0.12), so a confident
    # f16 decision (margin > 0.5) must never flip; which side of a real tie
    # each storage lands on is luck (f32 flips on "def quicksort(arr):" too).
    # The teacher-forced test below measures the quality loss properly.
    n = 16
    for prompt in (PROMPT, "def quicksort(arr):", "Paris is the capital of"):
        r16 = _greedy(kvforge_bin, smollm2_gguf, tmp_path, n, prompt=prompt)
        f16 = r16["tokens"]
        q8 = _greedy(kvforge_bin, smollm2_gguf, tmp_path, n, "--kv", "q8", prompt=prompt)["tokens"]
        agree = _common_prefix(q8, f16)
        assert agree >= 4, (prompt, q8, f16)
        if agree == n:
            continue
        logits = kvforge_logits(kvforge_bin, smollm2_gguf, r16["prompt_tokens"] + f16[:agree], tmp_path)[-1]
        margin = float(logits[f16[agree]] - logits[q8[agree]])
        assert 0 <= margin < 0.5, (prompt, agree, margin)


def test_quantized_logits_close_to_f16(kvforge_bin, smollm2_gguf, tmp_path):
    # Teacher-forced over one text: the top-1 token of q8 agrees with f16 at
    # >= 95% of positions, q4 at >= 75% (4-bit K/V is a real loss on a model
    # this small); the Hadamard rotation must not make q4 worse.
    text = ("The quick brown fox jumps over the lazy dog. Paris is the capital and most populous city of "
            "France. The printing press was invented by Johannes Gutenberg around 1440. ") * 3
    ids = kvforge_tokenize(kvforge_bin, smollm2_gguf, text)
    f16 = kvforge_logits(kvforge_bin, smollm2_gguf, ids, tmp_path)
    agree = {}
    for kv in ("q8", "q4", "q4,hadamard"):
        other = kvforge_logits(kvforge_bin, smollm2_gguf, ids, tmp_path, "--kv", kv)
        agree[kv] = float(np.mean(other.argmax(-1) == f16.argmax(-1)))
    print("top-1 agreement with f16:", agree)
    assert agree["q8"] >= 0.95
    assert agree["q4"] >= 0.75
    assert agree["q4,hadamard"] >= agree["q4"] - 0.02
