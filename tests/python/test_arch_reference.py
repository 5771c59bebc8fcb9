"""Llama 3.1+ rope scaling, Qwen3, SmolLM3, Phi-3 (also with LongRoPE), Gemma 2
and Gemma 3 with random weights
(arch_fixtures.py), each written once to GGUF and run by kvforge, by Hugging
Face transformers (same f32 weights) and by llama.cpp (same file).

The sliding-window architectures get a window of WINDOW = 8 tokens, far
shorter than the 40-token text, so the window layers (Gemma's interleaved
ones, all of Phi-3's) really drop old tokens in all three engines.

Tolerances (measured values are printed, pytest -s):
- transformers, kvforge with an f32 KV cache: both do f32 math in another
  order through 2-6 layers of width 64; logits span a few units (Gemma's are
  soft-capped to +-3): max |diff| <= 1e-4. A wrong RoPE pairing, norm shift,
  window edge or soft-cap moves logits by 1e-1 or more.
- llama.cpp, both with their default f16 KV cache and f32 weights: the f16
  rounding of K/V dominates (measured <= 5e-3): max |diff| <= 2e-2, and the
  same greedy continuation (16 tokens) from the same prompt. llama.cpp
  ignores Phi-3's sliding window ("Phi SWA is currently disabled" in its
  loader) while transformers applies it to every layer, as kvforge does; so
  Phi-3 meets llama.cpp without a window and transformers with one.
"""
import concurrent.futures
import functools
import json

import numpy as np
import pytest

from arch_fixtures import random_arch_model, write_arch_gguf
from conftest import run_kvforge
from reference_models import assert_logits_close, kvforge_logits

IDS = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 256, 3, 200, 255, 0, 17] * 2
ARCHS = ["llama3", "qwen3", "smollm3", "phi3", "gemma2", "gemma3"]
SLIDING = ["phi3", "gemma2", "gemma3"]
WINDOW = 8
N_GEN = 16


@functools.lru_cache(maxsize=None)
def _model(arch, window, tmp_dir):
    """(HF model, GGUF path) for arch with the given window (None: the arch's default)."""
    model = random_arch_model(arch, window=window)
    path = f"{tmp_dir}/{arch}-w{window}.gguf"
    write_arch_gguf(path, model, arch)
    return model, path


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("archs"))


def _window(arch):
    return WINDOW if arch in SLIDING else None


def _hf_logits(model, ids):
    import torch
    torch.set_num_threads(2)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_transformers(kvforge_bin, tmp_path, tmp_dir, arch):
    model, path = _model(arch, _window(arch), tmp_dir)
    ref = _hf_logits(model, IDS)
    ours = kvforge_logits(kvforge_bin, path, IDS, tmp_path, "--kv-type", "f32")
    assert_logits_close(f"{arch} vs transformers", ref, ours, 1e-4)


def _kvforge_greedy(kvforge_bin, path, tmp_path, prompt, *extra):
    out = tmp_path / "run.json"
    run_kvforge(kvforge_bin, "run", "-m", path, "-p", prompt, "-n", N_GEN, "--temp", 0, "--ignore-eos",
                "--json-out", out, *extra)
    return json.loads(out.read_text())


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_and_greedy_tokens_match_llama_cpp(kvforge_bin, tmp_path, tmp_dir, arch):
    from llama_cpp import Llama
    _, path = _model(arch, None if arch == "phi3" else _window(arch), tmp_dir)
    llm = Llama(model_path=path, n_ctx=128, n_threads=2, logits_all=True, verbose=False, n_batch=64)
    llm.eval(IDS)
    ref = np.array(llm.scores[:len(IDS)], dtype=np.float32)
    ours = kvforge_logits(kvforge_bin, path, IDS, tmp_path)
    diff = np.abs(ref - ours)
    print(f"\n[{arch} vs llama.cpp] max|diff|={diff.max():.2e} logit range={np.abs(ref).max():.2f}")
    assert diff.max() <= 2e-2

    run = _kvforge_greedy(kvforge_bin, path, tmp_path, "Hello, world! tiny tests talk")
    llm.reset()
    theirs = []
    for tok in llm.generate(run["prompt_tokens"], temp=0.0, top_k=1, reset=True):
        theirs.append(tok)
        if len(theirs) == N_GEN:
            break
    assert run["tokens"] == theirs


@pytest.mark.parametrize("arch", SLIDING)
def test_window_layers_exact(kvforge_bin, tmp_path, tmp_dir, arch):
    """A window at least as long as the text is the full cache (bit for bit);
    a short one gives the same bits for any batch split and with the cache
    off, and its layers allocate only their window."""
    full = kvforge_logits(kvforge_bin, _model(arch, 4096, tmp_dir)[1], IDS, tmp_path)
    exact = kvforge_logits(kvforge_bin, _model(arch, len(IDS), tmp_dir)[1], IDS, tmp_path)
    assert np.array_equal(full, exact)

    _, path = _model(arch, WINDOW, tmp_dir)
    short = kvforge_logits(kvforge_bin, path, IDS, tmp_path)
    assert not np.allclose(short, full, atol=1e-3)  # the window matters on this text
    for batch in (1, 7):
        assert np.array_equal(short, kvforge_logits(kvforge_bin, path, IDS, tmp_path, "-b", batch))

    prompt = "Hello, world! tiny tests talk"
    cached = _kvforge_greedy(kvforge_bin, path, tmp_path, prompt, "-c", 256)
    assert cached["tokens"] == _kvforge_greedy(kvforge_bin, path, tmp_path, prompt, "-c", 256, "--no-cache")["tokens"]
    wide = _kvforge_greedy(kvforge_bin, _model(arch, 4096, tmp_dir)[1], tmp_path, prompt, "-c", 256)
    n_layer = _model(arch, WINDOW, tmp_dir)[0].config.num_hidden_layers
    n_sliding = {"phi3": n_layer, "gemma2": (n_layer + 1) // 2, "gemma3": n_layer - n_layer // 6}[arch]
    cells = n_sliding * WINDOW + (n_layer - n_sliding) * 256
    assert cached["kv_bytes"] * (n_layer * 256) == wide["kv_bytes"] * cells


def test_soft_capped_attention_refuses_quantized_kv(kvforge_bin, tmp_dir):
    """Gemma 2's capped scores have an f16/f32 kernel only: a quantized KV
    cache is one clear error, not a silently uncapped model."""
    _, path = _model("gemma2", WINDOW, tmp_dir)
    r = run_kvforge(kvforge_bin, "logits", "-m", path, "--tokens", json.dumps(IDS[:4]), "-o", "/dev/null",
                    "--kv-type", "q8", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error:")
    assert "soft-caps attention" in r.stderr


@pytest.mark.parametrize("n_tok, ctx", [(40, 256), (300, 512)])
def test_phi3_longrope_short_and_long_factors(kvforge_bin, tmp_path, tmp_dir, n_tok, ctx):
    """LongRoPE rotates with its short factors within the original context
    (256) and with the long ones beyond it. transformers switches by the
    text's length, llama.cpp and kvforge by the context size (-c), so each
    case makes the three agree: 40 tokens at -c 256, 300 tokens at -c 512.
    Tolerances as above."""
    from llama_cpp import Llama
    model, path = _model("phi3-longrope", None, tmp_dir)
    ids = (IDS * 8)[:n_tok]
    ours = kvforge_logits(kvforge_bin, path, ids, tmp_path, "--kv-type", "f32", "-c", ctx)
    assert_logits_close(f"phi3 LongRoPE {n_tok} tokens vs transformers", _hf_logits(model, ids), ours, 1e-4)
    llm = Llama(model_path=path, n_ctx=ctx, n_threads=2, logits_all=True, verbose=False, n_batch=512)
    llm.eval(ids)
    ref = np.array(llm.scores[:len(ids)], dtype=np.float32)
    ours = kvforge_logits(kvforge_bin, path, ids, tmp_path, "-c", ctx)
    print(f"\n[phi3 LongRoPE {n_tok} tokens vs llama.cpp] max|diff|={np.abs(ref - ours).max():.2e}")
    assert np.abs(ref - ours).max() <= 2e-2


def test_serve_keeps_window_layers(kvforge_bin, tmp_dir):
    """`kvforge serve` keeps a model's own sliding-window layers per sequence
    (Gemma 3: five local layers of window 8, then a global one): concurrent
    greedy requests, well past the window, give the text each gives alone
    and `kvforge run`'s."""
    from test_serve import N_CTX, Server, greedy
    _, path = _model("gemma3", WINDOW, tmp_dir)
    prompts = ["Hello, world! tiny tests talk", "abc def ghi jkl"]
    s = Server(kvforge_bin, path, "--parallel", 2)
    try:
        c = s.client()
        solo = [greedy(c, p, n=N_GEN, ignore_eos=True) for p in prompts]
        with concurrent.futures.ThreadPoolExecutor(len(prompts)) as ex:
            assert list(ex.map(lambda p: greedy(c, p, n=N_GEN, ignore_eos=True), prompts)) == solo
        cli = run_kvforge(kvforge_bin, "run", "-m", path, "-p", prompts[0], "--temp", "0", "-n", N_GEN,
                          "--ignore-eos", "-c", N_CTX, "-t", "2").stdout
        assert solo[0] + "\n" == cli
    finally:
        assert s.stop() == 0, s.proc.stderr.read()
